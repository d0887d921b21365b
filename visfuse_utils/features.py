"""The feature cache: frozen encoders run once, and heads train on their vectors (taught in notebook 03).

A frozen encoder gives the same vector for a sample in every epoch, so computing it once and
training a head on the stored vectors costs one pass instead of one per epoch. ``cache_features``
does that for every split and also stores what a *blank scan* and an *empty note* look like to
the encoders, which modality dropout and the missing-modality tests need. It never changes the
model it reads. Notebooks 03-06 and ``interpret`` use this one cache.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from .data import BLANK_PIXEL, MAX_LENGTH
from .models import masked_mean


@dataclass
class FeatureSet:
    """One split's cached features, in the split's order, plus the features of a blank scan and an empty note.

    ``image_features`` / ``text_features`` are N x d (None when that encoder was not cached);
    ``images`` holds the normalised scans too, for an image encoder that still trains
    (``keep_images``); ``blank`` maps ``"image"`` / ``"text"`` to 1 x d features. With ``maps=True``
    ``image_maps`` (N x C x h x w) and ``token_states`` (N x T x H, zero-padded, ``token_mask`` N x T)
    keep what cross-attention reads, so it too trains on frozen encoders without running them.
    """

    labels: torch.Tensor
    index: torch.Tensor
    image_features: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    images: torch.Tensor | None = None
    image_maps: torch.Tensor | None = None
    token_states: torch.Tensor | None = None
    token_mask: torch.Tensor | None = None
    blank: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def columns(self) -> dict[str, torch.Tensor]:
        """The per-sample tensors a batch is sliced from."""
        cols = {"image_features": self.image_features, "text_features": self.text_features, "image": self.images,
                "image_map": self.image_maps, "token_states": self.token_states, "attention_mask": self.token_mask,
                "label": self.labels, "index": self.index}
        return {k: v for k, v in cols.items() if v is not None}

    def batches(self, batch_size: int = 128, shuffle: bool = False, seed: int = 0) -> FeatureBatches:
        """Mini-batches as the batch dicts every model of the course takes (a new order per epoch if shuffled)."""
        return FeatureBatches(self, batch_size, shuffle, seed)

    def without(self, *columns: str) -> FeatureSet:
        """A view without some columns: ``without("images")`` for heads on frozen features,
        ``without("image_features")`` for a CNN that trains on the kept scans."""
        return replace(self, **{c: None for c in columns})

    def with_missing(self, modality: str) -> FeatureSet:
        """A copy in which every sample's ``"image"`` or ``"text"`` features are those of a blank scan / empty note."""
        if modality not in ("image", "text"):
            raise ValueError(f"modality must be 'image' or 'text', got {modality!r}")
        key = f"{modality}_features"
        if getattr(self, key) is None or modality not in self.blank:
            raise ValueError(f"this cache holds no {key} to replace; cache both encoders first")
        return replace(self, **{key: self.blank[modality].expand_as(getattr(self, key)).clone()})


class FeatureBatches:
    """Batches sliced straight from a ``FeatureSet``'s tensors (no per-item collation); ``len`` is the batch count."""

    def __init__(self, features: FeatureSet, batch_size: int, shuffle: bool, seed: int):
        self.features, self.batch_size, self.shuffle = features, batch_size, shuffle
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.features) // self.batch_size)

    def __iter__(self):
        cols, n = self.features.columns(), len(self.features)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        blanks = {f"blank_{k}_features": v for k, v in self.features.blank.items()}
        for start in range(0, n, self.batch_size):
            pick = order[start:start + self.batch_size]
            yield {**{k: v[pick] for k, v in cols.items()}, **blanks}


@torch.no_grad()
def cache_features(loaders: dict, image_encoder: nn.Module | None = None, text_encoder: nn.Module | None = None,
                   *, empty_note: list[int] | None = None, keep_images: bool = False, maps: bool = False,
                   device="cpu") -> dict[str, FeatureSet]:
    """Run frozen encoders once over every split's loader: ``{split: FeatureSet}``.

    ``loaders`` are unshuffled ``data.make_loader`` loaders (or ``FeatureSet.batches``: text
    features already there are kept, so the costly text encoder runs once). ``empty_note`` is
    ``data.empty_note(tokenizer)``, needed to compute the empty note's features.
    ``keep_images=True`` also keeps the scans, for an image encoder that still trains (train it on
    ``without("image_features")``). ``maps=True`` also keeps the image encoder's last feature map and
    the text encoder's token states (``interaction.CrossAttentionFusion`` reads them). The encoders are put
    in eval mode; nothing else about them changes.
    """
    device = torch.device(device)
    encoders = [e for e in (image_encoder, text_encoder) if e is not None]
    for enc in encoders:
        enc.to(device).eval()
    out = {}
    for split, loader in loaders.items():
        rows: dict[str, list] = {"image_features": [], "text_features": [], "image": [], "label": [], "index": [],
                                 "image_map": [], "token_states": [], "attention_mask": []}
        for batch in loader:
            batch = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in batch.items()}
            if keep_images:
                rows["image"].append(batch["image"].cpu())
            if "image_features" in batch:
                rows["image_features"].append(batch["image_features"].cpu())
            elif image_encoder is not None:
                rows["image_features"].append(image_encoder(batch["image"]).float().cpu())
            states = None
            if maps:  # token states once: the pooled text features are their masked mean (TextEncoder.forward)
                rows["image_map"].append(image_encoder.feature_map(batch["image"]).float().cpu())
                states = text_encoder.token_states(batch["input_ids"], batch["attention_mask"]).float()
                rows["token_states"].append(states.cpu())
                rows["attention_mask"].append(batch["attention_mask"].cpu())
            if "text_features" in batch:
                rows["text_features"].append(batch["text_features"].cpu())
            elif text_encoder is not None:
                pooled = masked_mean(states, batch["attention_mask"]) if states is not None else \
                    text_encoder(batch["input_ids"], batch["attention_mask"]).float()
                rows["text_features"].append(pooled.cpu())
            rows["label"].append(batch["label"].cpu())
            rows["index"].append(batch["index"].cpu())
        cat = {k: torch.cat(_pad(v) if k in ("token_states", "attention_mask") else v) if v else None
               for k, v in rows.items()}
        out[split] = FeatureSet(labels=cat["label"], index=cat["index"], image_features=cat["image_features"],
                                text_features=cat["text_features"], images=cat["image"], image_maps=cat["image_map"],
                                token_states=cat["token_states"], token_mask=cat["attention_mask"])
    first = next(iter(out.values()), None)
    source = getattr(next(iter(loaders.values()), None), "features", None)  # FeatureBatches: keep its blanks
    blank = dict(source.blank) if isinstance(source, FeatureSet) else {}
    if image_encoder is not None and first is not None:
        shape = first.images.shape[1:] if first.images is not None else _image_shape(loaders)
        blank["image"] = image_encoder(torch.full((1, *shape), BLANK_PIXEL, device=device)).float().cpu()
    if text_encoder is not None:
        if empty_note is None:
            raise ValueError("cache_features needs empty_note=data.empty_note(tokenizer) to cache a text encoder")
        ids = torch.tensor([empty_note], device=device)
        blank["text"] = text_encoder(ids, torch.ones_like(ids)).float().cpu()
    for fs in out.values():
        fs.blank = dict(blank)
    return out


def _pad(chunks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Batches padded with zeros along dimension 1 to the longest (each batch's notes were padded to its own)."""
    longest = max(c.shape[1] for c in chunks)
    return [nn.functional.pad(c, (0, 0) * (c.dim() - 2) + (0, longest - c.shape[1])) for c in chunks]


def probe_accuracy(train_x, train_y, test_x, test_y) -> float:
    """Test accuracy of a linear probe (standardised features, logistic regression) fitted on frozen features:
    how much of ``*_y`` the features already hold, with no network trained (Alain & Bengio 2016)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(probe.fit(np.asarray(train_x), np.asarray(train_y)).score(np.asarray(test_x), np.asarray(test_y)))


def _image_shape(loaders: dict) -> tuple[int, ...]:
    batch = next(iter(next(iter(loaders.values()))))
    if "image" not in batch:
        raise ValueError("the loaders hold no scans, so a blank scan's features cannot be computed")
    return tuple(batch["image"].shape[1:])


@torch.no_grad()
def encode_texts(text_encoder: nn.Module, tokenizer, texts: list[str], batch_size: int = 128,
                 device="cpu") -> torch.Tensor:
    """Frozen text features of free texts (queries, prompts, captions), N x d; each distinct text is encoded once.

    Captions repeat a lot ('No focal lesion is visible.'), so encoding the distinct ones and
    copying is several times cheaper than encoding every row.
    """
    device = torch.device(device)
    text_encoder.to(device).eval()
    distinct = sorted(set(texts))
    where = {t: i for i, t in enumerate(distinct)}
    chunks = []
    for i in range(0, len(distinct), batch_size):
        enc = tokenizer(distinct[i:i + batch_size], padding=True, truncation=True, max_length=MAX_LENGTH,
                        return_tensors="pt")
        chunks.append(text_encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device)).float())
    feats = torch.cat(chunks)
    return feats[torch.tensor([where[t] for t in texts], device=device)].cpu()
