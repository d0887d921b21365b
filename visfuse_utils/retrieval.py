"""Contrastive image–text alignment (CLIP-style), retrieval metrics and zero-shot prompts (notebook 06).

Two towers map a scan and a caption into one shared space where a matching pair has a
high cosine similarity: the image tower is ``models.SmallCNN`` with a projection head,
the text tower a BERT-family encoder (``models.TextEncoder``, kept frozen here so its
caption features are computed once) with a small MLP head. ``train.fit`` trains it on the
model's own objective, the symmetric InfoNCE loss of ``losses.info_nce`` with a learned,
clamped temperature (``recipes.contrastive``). Once aligned,
the same space answers free-text queries (text -> image), finds captions for a scan
(image -> text) and classifies by prompts without any labels (zero-shot).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import MultimodalData, make_loader
from .features import encode_texts
from .losses import info_nce


# ------------------------------------------------------------------------------- model
class ContrastiveModel(nn.Module):
    """Image tower + text tower projected into one ``dim``-dimensional unit sphere, with a learned temperature.

    Image tower: the CNN's feature map, averaged over a ``grid`` x ``grid`` grid of regions
    (not over the whole scan: captions say *where* a lesion is, and a global average
    forgets where), then a linear projection. Text tower: the frozen ``text_encoder``'s
    mean-pooled features, then a two-layer MLP (the only trainable part of that tower).
    The similarity ``logit_scale * cos(image, text)`` has ``logit_scale = 1 / temperature``
    learned as a log, clamped to [1, 100] as in CLIP so it can neither vanish nor explode.
    """

    INIT_TEMPERATURE = 0.07  # CLIP's starting value

    def __init__(self, image_encoder: nn.Module, text_encoder: nn.Module, dim: int = 64, grid: int = 3,
                 text_hidden: int = 256, init_temperature: float = INIT_TEMPERATURE):
        super().__init__()
        self.image_encoder = image_encoder
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.image_head = nn.Linear(image_encoder.map_channels * grid * grid, dim)
        self.text_encoder = text_encoder
        for p in self.text_encoder.parameters():  # locked text tower: its features are cached once
            p.requires_grad_(False)
        self.text_head = nn.Sequential(nn.Linear(text_encoder.out_dim, text_hidden), nn.GELU(),
                                       nn.Linear(text_hidden, dim))
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / init_temperature)))

    @property
    def logit_scale(self) -> torch.Tensor:
        """1 / temperature, clamped to [1, 100]."""
        return self.log_scale.clamp(0.0, math.log(100.0)).exp()

    def train(self, mode: bool = True) -> ContrastiveModel:
        super().train(mode)
        self.text_encoder.eval()  # frozen: dropout stays off
        return self

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (B x C x H x W) -> unit vectors in the shared space."""
        regions = self.pool(self.image_encoder.feature_map(images)).flatten(1)
        return F.normalize(self.image_head(regions), dim=1)

    def embed_text_features(self, features: torch.Tensor) -> torch.Tensor:
        """Cached text-encoder features (B x hidden) -> unit vectors in the shared space."""
        return F.normalize(self.text_head(features), dim=1)

    def objective(self, batch: dict) -> torch.Tensor:
        """Symmetric InfoNCE over a batch of scans and their captions' cached ``text_features``:
        every other pair of the batch is a negative (``train.fit`` trains on this, not on labels)."""
        img = self.embed_images(batch["image"])
        txt = self.embed_text_features(batch["text_features"])
        return info_nce(img, txt, 1 / self.logit_scale)

    @torch.no_grad()
    def embed_texts(self, texts: list[str], tokenizer) -> torch.Tensor:
        """Free texts (queries, prompts) -> unit vectors in the shared space."""
        device = self.log_scale.device
        feats = encode_texts(self.text_encoder, tokenizer, list(texts), device=device).to(device)
        return self.embed_text_features(feats)


@torch.no_grad()
def image_embeddings(model: ContrastiveModel, data: MultimodalData, batch_size: int = 256,
                     device="cpu") -> torch.Tensor:
    """Unit image vectors of every scan in ``data``, in order (eval mode)."""
    model.eval()
    loader = make_loader(data, None, batch_size=batch_size, device=device)
    return torch.cat([model.embed_images(b["image"].to(device)) for b in loader])


@torch.no_grad()
def text_image_similarity(model: ContrastiveModel, data: MultimodalData, text_features: torch.Tensor,
                          device="cpu") -> np.ndarray:
    """Cosine similarities, captions (rows) x scans (columns); transpose for image -> text.

    Identical captions get bit-identical rows (each distinct feature row is embedded once),
    so the metrics see their ties exactly.
    """
    images = image_embeddings(model, data, device=device)
    model.eval()
    distinct, where = torch.unique(text_features.to(device), dim=0, return_inverse=True)
    texts = model.embed_text_features(distinct)[where]
    return (texts @ images.T).cpu().numpy()


# ------------------------------------------------------------------------------ metrics
def retrieval_ranks(sim: np.ndarray, relevant: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: how many irrelevant items score *above* its best relevant item, and how many *tie* with it.

    ``relevant[i, j]`` says whether item j is a correct answer to query i; by default only
    j = i is (the pair itself). Ties are broken at random, so the best relevant item's
    expected rank is ``1 + above + ties / 2`` (see ``recall_at_k`` and ``median_rank``).
    """
    sim = np.asarray(sim, dtype=np.float64)
    if relevant is None:
        if sim.shape[0] != sim.shape[1]:
            raise ValueError(f"without `relevant`, sim must be square (row i pairs with column i), got {sim.shape}")
        relevant = np.eye(len(sim), dtype=bool)
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.shape != sim.shape or not relevant.any(axis=1).all():
        raise ValueError("relevant must have sim's shape and at least one relevant item per row")
    best = np.where(relevant, sim, -np.inf).max(axis=1, keepdims=True)
    above = ((sim > best) & ~relevant).sum(axis=1)
    ties = ((sim == best) & ~relevant).sum(axis=1)
    return above, ties


def recall_at_k(sim: np.ndarray, k: int, relevant: np.ndarray | None = None) -> float:
    """Share of queries with a relevant item in the top ``k``, in expectation over random tie-breaking.

    With ``a`` irrelevant items above and ``t`` tied, the relevant item lands uniformly in
    positions a+1 ... a+t+1, so P(rank <= k) = clip((k - a) / (t + 1), 0, 1).
    """
    above, ties = retrieval_ranks(sim, relevant)
    return float(np.clip((k - above) / (ties + 1), 0.0, 1.0).mean())


def median_rank(sim: np.ndarray, relevant: np.ndarray | None = None) -> float:
    """Median over queries of the (expected) rank of the best relevant item; 1 is perfect."""
    above, ties = retrieval_ranks(sim, relevant)
    return float(np.median(1 + above + ties / 2))


def retrieval_metrics(sim: np.ndarray, relevant: np.ndarray | None = None, ks=(1, 5, 10)) -> dict[str, float]:
    """``R@k`` for each k and ``median_rank``, as one dict."""
    out = {f"R@{k}": recall_at_k(sim, k, relevant) for k in ks}
    out["median_rank"] = median_rank(sim, relevant)
    return out


def chance_metrics(relevant: np.ndarray, ks=(1, 5, 10)) -> dict[str, float]:
    """What a random ranking scores on average: the 'random' row of a retrieval table.

    With m relevant items among n, P(none in the top k) = prod_{j<k} (n - m - j) / (n - j),
    and the first relevant item's expected rank is (n + 1) / (m + 1). For m = 1 these are
    R@k = k / n and rank (n + 1) / 2.
    """
    relevant = np.asarray(relevant, dtype=bool)
    n, m = relevant.shape[1], relevant.sum(axis=1)
    out = {}
    for k in ks:
        j = np.arange(min(k, n))
        miss = np.prod(np.clip((n - m[:, None] - j) / (n - j), 0.0, None), axis=1)
        out[f"R@{k}"] = float((1 - miss).mean())
    out["median_rank"] = float(np.median((n + 1) / (m + 1)))
    return out


def same_text(queries: list[str], items: list[str]) -> np.ndarray:
    """``M[i, j]`` is True when item j's caption is exactly query i's caption (caption-equivalent relevance)."""
    ids = {t: k for k, t in enumerate(sorted(set(queries) | set(items)))}
    q = np.array([ids[t] for t in queries])
    g = np.array([ids[t] for t in items])
    return q[:, None] == g[None, :]


def phrase_share(top: np.ndarray, captions: list[str], phrase: str) -> dict[str, float]:
    """For the items ranked ``top`` (indices): the share whose caption contains ``phrase``, the share among all
    items (the rate a random list would have), and the binomial probability of at least that many by chance."""
    from scipy.stats import binom

    hits = int(sum(phrase in captions[i] for i in top))
    base = float(np.mean([phrase in c for c in captions]))
    return {"top-k share": hits / len(top), "base rate": base, "p (chance)": float(binom.sf(hits - 1, len(top), base))}


def attribute_agreement(sim: np.ndarray, attributes, k: int = 10) -> dict[str, float]:
    """Per attribute (a DataFrame column, one row per item and query): over the queries that name a value, the mean
    share of their top-``k`` items that name the same value. ``sim`` is queries x items over the same list."""
    top = np.argsort(-np.asarray(sim), axis=1, kind="stable")[:, :k]
    return _same_value_share(attributes, lambda i: top[i])


def attribute_base_rates(attributes) -> dict[str, float]:
    """What ``attribute_agreement`` scores for a random ranking: the same share over all items instead of a top k."""
    return _same_value_share(attributes, lambda i: slice(None))


def _same_value_share(attributes, neighbours) -> dict[str, float]:
    out = {}
    for name in attributes.columns:
        v = attributes[name].to_numpy(dtype=object)
        named = np.flatnonzero(attributes[name].notna())
        out[name] = float(np.mean([np.mean(v[neighbours(i)] == v[i]) for i in named])) if len(named) else float("nan")
    return out


# ------------------------------------------------------------------------ bag of words
class PixelsToWords:
    """Bag-of-words baseline: ridge regression from downsampled pixels to a caption's TF-IDF vector.

    The classic pre-deep-learning recipe for cross-modal retrieval (a linear map between
    hand-made features of each modality, as in CCA): it sees which words occur, not their
    order, and only linear functions of the raw pixels, so it can learn 'bright blob top
    left' or 'ruler at the bottom' but hardly 'irregular border'. Ranking is by cosine
    between a query's TF-IDF vector and the vector predicted from each scan.
    """

    def __init__(self, grid: int = 16, alpha: float = 10.0):
        self.grid, self.alpha = grid, alpha

    def _pixels(self, images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(images)).float() / 255.0
        return F.adaptive_avg_pool2d(x, self.grid).flatten(1).numpy()

    def fit(self, images: np.ndarray, captions: list[str]) -> PixelsToWords:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import Ridge

        # every word counts, one-letter ones too (scikit-learn's default pattern drops them: a caption "a" is empty)
        self.vectorizer = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b").fit(captions)
        self.ridge = Ridge(alpha=self.alpha).fit(self._pixels(images), self.vectorizer.transform(captions).toarray())
        return self

    def similarity(self, queries: list[str], images: np.ndarray) -> np.ndarray:
        """Cosine similarities, queries (rows) x scans (columns)."""
        q = self.vectorizer.transform(queries).toarray()
        p = self.ridge.predict(self._pixels(images))
        q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-12
        p /= np.linalg.norm(p, axis=1, keepdims=True) + 1e-12
        return q @ p.T


# ---------------------------------------------------------------------------- zero-shot
def class_embeddings(model: ContrastiveModel, tokenizer, prompts: dict[str, list[str]]) -> torch.Tensor:
    """One unit vector per class: the renormalised mean of its prompts' embeddings (prompt ensembling)."""
    rows = [F.normalize(model.embed_texts(list(p), tokenizer).mean(0), dim=0) for p in prompts.values()]
    return torch.stack(rows)


@torch.no_grad()
def zero_shot_probs(model: ContrastiveModel, image_emb: torch.Tensor, class_emb: torch.Tensor) -> np.ndarray:
    """Class probabilities softmax(logit_scale * cos(image, class prompt)); no label was ever used."""
    return torch.softmax(model.logit_scale * image_emb @ class_emb.T, dim=1).cpu().numpy()
