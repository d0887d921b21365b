"""Captum for the fusion models: the one adapter between Captum and a ``FusionClassifier`` (notebook 05).

``FusionExplainer`` gives Captum plain-tensor forward functions (Captum cannot pass a batch
dict), the text baselines, token-to-word merging with the fast tokenizer's offsets, an
``internal_batch_size`` sized by device, and the note's pooled features so that image methods
skip a BERT pass per step when the fusion allows it. Interventions on the note (``intervene``,
``baseline_token_check``) ask whether a baseline token is as good as a deleted word.
``attribution_scores`` judges what comes out.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import BLANK_PIXEL, MAX_LENGTH


def default_internal_batch_size(device) -> int:
    """How many interpolation steps Captum sends through the model at once.

    Bounds memory: IG with 50 steps on a batch would otherwise run 50 x batch inputs in one
    pass. 64 keeps BERT-base with a 96-token note (plus 16 image tokens in token fusion)
    well inside a 16 GB GPU; on the CPU, where memory is rarely the limit, 32.
    """
    return 64 if torch.device(device).type == "cuda" else 32


@dataclass
class TextAttribution:
    """One note's attribution, merged from word pieces to words."""

    text: str
    words: list[str]
    word_spans: list[tuple[int, int]]  # character spans of the words in ``text``
    scores: np.ndarray  # one score per word
    delta: float = float("nan")  # IG completeness gap: sum of attributions - (f(x) - f(baseline))
    token_attr: torch.Tensor | None = None  # 1 x tokens x hidden (embedding methods) or x 1 (presence), for infidelity


class FusionExplainer:
    """Captum's view of a ``FusionClassifier``: tensors in, class logits out.

    Captum calls ``forward_func(*inputs, *additional_forward_args)`` and repeats every
    tensor argument along the batch for its steps or perturbations. The model takes a
    batch dict, so the forwards below rebuild it; ``image_forward`` puts the scan first
    (for image methods), ``text_forward`` the token ids (for ``LayerIntegratedGradients``
    on ``word_embeddings``), ``embedding_forward`` the word embeddings themselves (for
    perturbation metrics in embedding space), ``presence_forward`` each token's presence (a
    soft attention mask, for IG along the path on which the words are deleted). The
    attention mask always travels along, so padding never receives attribution.
    """

    def __init__(self, model: nn.Module, tokenizer, max_length: int = MAX_LENGTH,
                 internal_batch_size: int | None = None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.device = next(model.parameters()).device
        self.internal_batch_size = internal_batch_size or default_internal_batch_size(self.device)
        self.word_embeddings: nn.Embedding = model.text_encoder.encoder.get_input_embeddings()
        self.blank_value = BLANK_PIXEL
        self.cls_id, self.sep_id = model.cls_id, model.sep_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.baseline_id = self.pad_id  # "no word" in ``text_baseline``; ``baseline_token_check`` tests the choice

    # ------------------------------------------------------------------ forwards
    def image_forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      text_features: torch.Tensor | None = None) -> torch.Tensor:
        """Logits, scan first. With ``text_features`` (see ``text_features``) BERT is skipped."""
        batch = {"image": images, "input_ids": input_ids, "attention_mask": attention_mask}
        if text_features is not None:
            batch["text_features"] = text_features
        return self.model(batch)

    def text_forward(self, input_ids: torch.Tensor, images: torch.Tensor,
                     attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits, token ids first: the forward for Captum's layer methods on ``word_embeddings``."""
        return self.image_forward(images, input_ids, attention_mask)

    def presence_forward(self, presence: torch.Tensor, input_ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Logits, token presence first (B x T floats in [0, 1], see ``models.TextEncoder``): the
        forward for Integrated Gradients along the path on which words fade out of the note."""
        return self.image_forward(images, input_ids, presence)

    def presence_baseline(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Presence 1 for ``[CLS]``/``[SEP]``, 0 for every word and pad: the note with its words deleted
        (the frame stays where it was, so only ``[SEP]``'s position differs from the empty note)."""
        frame = (input_ids == self.cls_id) | (input_ids == self.sep_id)
        return (frame & attention_mask.bool()).float()

    def embedding_forward(self, word_embeds: torch.Tensor, images: torch.Tensor,
                          attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits from word embeddings: a hook swaps them in wherever the fusion looks tokens up."""
        ids = torch.full(word_embeds.shape[:2], self.pad_id, dtype=torch.long, device=word_embeds.device)
        handle = self.word_embeddings.register_forward_hook(lambda module, inputs, output: word_embeds)
        try:
            return self.image_forward(images, ids, attention_mask)
        finally:
            handle.remove()

    @torch.no_grad()
    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor | None:
        """The pooled note features, for image methods to skip BERT at every step; None when the fusion mixes
        the scan into BERT (token fusion) or the text encoder still trains (its features would go stale)."""
        if getattr(self.model.fusion, "needs_encoders", False) or \
                any(p.requires_grad for p in self.model.text_encoder.parameters()):
            return None
        return self.model.text_encoder(input_ids, attention_mask)

    # ------------------------------------------------------------------ inputs
    def encode(self, texts: list[str]):
        """Fast-tokenizer encoding (ids, mask, offsets) with the dataset's truncation."""
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True,
                              return_offsets_mapping=True, return_tensors="pt")

    def text_baseline(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[CLS] [PAD] ... [PAD] [SEP]``: the note's length and frame, every word replaced by
        ``baseline_id`` ([PAD] unless set otherwise)."""
        keep = (input_ids == self.cls_id) | (input_ids == self.sep_id)
        return torch.where(keep, input_ids, torch.full_like(input_ids, self.baseline_id))

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  tokens: torch.Tensor, replace_id: int | None = None) -> torch.Tensor:
        """Logits with the flagged ``tokens`` (B x T, bool) replaced by ``replace_id``, or deleted when None.

        Deleting sets their attention mask to 0: neither BERT's attention nor the mean pooling
        sees them, and the other tokens keep their positions. Comparing the two tells whether an
        attribution reflects what the model reads or what the baseline token does to it.
        """
        tokens = tokens.to(input_ids.device).bool()
        if replace_id is None:
            attention_mask = attention_mask.masked_fill(tokens, 0)
        else:
            input_ids = input_ids.masked_fill(tokens, replace_id)
        return self.image_forward(images, input_ids, attention_mask)

    def empty_notes(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` empty notes, ``[CLS] [SEP]``: what the tokenizer gives for "" and what
        ``models.drop_modalities`` leaves unmasked."""
        ids = torch.tensor([[self.cls_id, self.sep_id]] * n, device=self.device)
        return ids, torch.ones_like(ids)

    def blank_images(self, images: torch.Tensor) -> torch.Tensor:
        """Black scans, ``data.BLANK_PIXEL`` everywhere: the missing scan of notebook 04."""
        return torch.full_like(images, self.blank_value)

    # ------------------------------------------------------------------ text methods
    def explain_texts(self, texts: list[str], images: torch.Tensor, targets: list[int],
                      method: str = "lig", n_steps: int = 50, batch_size: int = 8,
                      progress: bool = True) -> list[TextAttribution]:
        """Word attributions of each note towards its target class.

        ``method``: ``"lig"`` (``LayerIntegratedGradients`` on ``word_embeddings``, baseline
        ``text_baseline``), ``"grad_x_input"`` (``LayerGradientXActivation``, its one-step
        cousin) or ``"presence"`` (``IntegratedGradients`` over each token's presence, from
        ``presence_baseline`` to the note: words fade out instead of turning into a baseline
        token). Token scores are summed over the embedding dimension, then over the word
        pieces of each word (``word_ids``). Notes of similar length are batched together;
        padding gets no attribution (the attention mask hides it, and the baseline keeps it).
        """
        from captum.attr import IntegratedGradients, LayerGradientXActivation, LayerIntegratedGradients
        from tqdm.auto import tqdm

        if method == "lig":
            explainer = LayerIntegratedGradients(self.text_forward, self.word_embeddings)
        elif method == "grad_x_input":
            explainer = LayerGradientXActivation(self.text_forward, self.word_embeddings)
        elif method == "presence":
            explainer = IntegratedGradients(self.presence_forward)
        else:
            raise ValueError(f"method must be 'lig', 'grad_x_input' or 'presence', got {method!r}")
        tokens = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        lengths = [len(ids) for ids in tokens]
        order = np.argsort(lengths, kind="stable")
        out: list[TextAttribution | None] = [None] * len(texts)
        bar = tqdm(total=len(texts), desc=method, leave=False, disable=not progress)
        for start in range(0, len(texts), batch_size):
            chunk = [int(k) for k in order[start:start + batch_size]]
            enc = self.encode([texts[k] for k in chunk])
            ids, mask = enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device)
            args = (images[chunk].to(self.device), mask)
            target = torch.as_tensor([int(targets[k]) for k in chunk], device=self.device)
            deltas = [float("nan")] * len(chunk)
            if method == "lig":
                attr, d = explainer.attribute(ids, baselines=self.text_baseline(ids), target=target,
                                              additional_forward_args=args, n_steps=n_steps,
                                              internal_batch_size=max(self.internal_batch_size, len(chunk)),
                                              return_convergence_delta=True)
                deltas = d.tolist()
            elif method == "presence":
                attr, d = explainer.attribute(mask.float(), baselines=self.presence_baseline(ids, mask), target=target,
                                              additional_forward_args=(ids, args[0]), n_steps=n_steps,
                                              internal_batch_size=max(self.internal_batch_size, len(chunk)),
                                              return_convergence_delta=True)
                attr, deltas = attr.unsqueeze(-1), d.tolist()  # one 'dimension' per token
            else:
                attr = explainer.attribute(ids, target=target, additional_forward_args=args)
            attr = attr.detach().cpu()
            for j, k in enumerate(chunk):
                n = int(mask[j].sum())
                words, spans, scores = merge_word_pieces(attr[j, :n].sum(-1).numpy(), enc.word_ids(j)[:n],
                                                         enc["offset_mapping"][j, :n].tolist(), texts[k])
                out[k] = TextAttribution(texts[k], words, spans, scores, deltas[j], attr[j:j + 1, :n].clone())
            bar.update(len(chunk))
        bar.close()
        return out


def merge_word_pieces(token_scores: np.ndarray, word_ids: list[int | None], offsets: list[tuple[int, int]],
                      text: str) -> tuple[list[str], list[tuple[int, int]], np.ndarray]:
    """Sum word-piece scores into words; special tokens (``word_id`` None) are dropped.

    Returns the words, their character spans in ``text`` (from the fast tokenizer's offsets)
    and one score per word.
    """
    spans: dict[int, list[int]] = {}
    sums: dict[int, float] = {}
    for score, wid, (start, end) in zip(token_scores, word_ids, offsets):
        if wid is None:
            continue
        if wid not in spans:
            spans[wid], sums[wid] = [start, end], 0.0
        spans[wid][1] = end
        sums[wid] += float(score)
    order = sorted(spans)
    word_spans = [(spans[w][0], spans[w][1]) for w in order]
    return [text[s:e] for s, e in word_spans], word_spans, np.array([sums[w] for w in order])


def baseline_token_check(explainer: FusionExplainer, images: torch.Tensor, input_ids: torch.Tensor,
                         attention_mask: torch.Tensor, candidates: dict[str, int], repeats: int = 2,
                         seed: int = 0) -> dict[str, float]:
    """How far replacing a word piece by each candidate token is from deleting it.

    Integrated Gradients fades every token into the baseline token, so that token should act
    like an absent word. In each of ``repeats`` rounds one random word piece per note (never
    [CLS], [SEP] or padding) is replaced by each candidate and, separately, deleted
    (``FusionExplainer.intervene``). Returns, per candidate, the mean |logit difference| between
    the two over notes, rounds and classes: 0 means the candidate is as good as absent.
    """
    images, input_ids, attention_mask = (t.to(explainer.device) for t in (images, input_ids, attention_mask))
    words = attention_mask.bool() & (input_ids != explainer.cls_id) & (input_ids != explainer.sep_id)
    gen = torch.Generator().manual_seed(seed)
    gaps: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        pick = torch.rand(words.shape, generator=gen).to(words.device).masked_fill(~words, -1.0).argmax(1)
        flags = torch.zeros_like(words)
        flags[torch.arange(len(flags)), pick] = True
        flags &= words  # a note without words loses nothing
        deleted = explainer.intervene(images, input_ids, attention_mask, flags)
        for name, token_id in candidates.items():
            replaced = explainer.intervene(images, input_ids, attention_mask, flags, token_id)
            gaps[name].append((replaced - deleted).abs().mean().item())
    return {name: float(np.mean(v)) for name, v in gaps.items()}


def tokens_in_spans(offsets: torch.Tensor, spans: list[list[tuple[int, int]]]) -> torch.Tensor:
    """B x T flags: tokens whose characters lie inside one of their note's character ``spans``.

    ``offsets`` is the fast tokenizer's ``offset_mapping`` (B x T x 2); special tokens and
    padding, offset (0, 0), are never flagged.
    """
    start, end = offsets[..., 0], offsets[..., 1]
    flags = torch.zeros(start.shape, dtype=torch.bool)
    for i, note_spans in enumerate(spans):
        for s, e in note_spans:
            flags[i] |= (start[i] >= s) & (end[i] <= e) & (end[i] > start[i])
    return flags
