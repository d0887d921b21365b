"""The Captum adapter of notebook 05: forwards that match the model, baselines, interventions, completeness.

The wrapper is tested on a tiny random BERT (fast) and once on the offline MiniLM with a
fixed note (the real tokenizer's offsets).
"""
import copy
import types

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients, LayerIntegratedGradients

from visfuse_utils import data, interpret, models
from visfuse_utils.attribution_scores import words_in_spans
from visfuse_utils.synthscan import make_synthscan

from conftest import make_batch


def test_merge_word_pieces_sums_pieces_and_skips_specials():
    text = "grown rapidly"
    # [CLS] grown rapid ##ly [SEP]
    word_ids = [None, 0, 1, 1, None]
    offsets = [(0, 0), (0, 5), (6, 11), (11, 13), (0, 0)]
    words, spans, scores = interpret.merge_word_pieces(np.array([9.0, 1.0, 2.0, 0.5, 9.0]), word_ids, offsets, text)
    assert words == ["grown", "rapidly"] and spans == [(0, 5), (6, 13)]
    np.testing.assert_allclose(scores, [1.0, 2.5])


# ------------------------------------------------------------------ the wrapper on a tiny BERT
@pytest.mark.parametrize("kind", ["late", "concat", "gated", "token"])
def test_forwards_match_the_model(kind, tiny_fusion):
    model, ex = tiny_fusion(kind)
    batch = make_batch()
    with torch.no_grad():
        ref = model(batch)
        images, ids, mask = batch["image"], batch["input_ids"], batch["attention_mask"]
        feats = ex.text_features(ids, mask)
        assert (feats is None) == (kind == "token")  # token fusion mixes the scan into BERT: nothing to cache
        torch.testing.assert_close(ex.image_forward(images, ids, mask, feats), ref)
        torch.testing.assert_close(ex.text_forward(ids, images, mask), ref)
        torch.testing.assert_close(ex.embedding_forward(ex.word_embeddings(ids), images, mask), ref)
    assert not ex.word_embeddings._forward_hooks, "embedding_forward removes its hook"


@pytest.mark.parametrize("kind", ["concat", "token"])
def test_intervene_replaces_or_deletes_tokens(kind, tiny_fusion):
    """Replacing = the model on the edited ids; deleted tokens are invisible, whatever their id."""
    model, ex = tiny_fusion(kind)
    batch = make_batch()
    images, ids, mask = batch["image"], batch["input_ids"], batch["attention_mask"]
    flags = torch.zeros_like(ids, dtype=torch.bool)
    flags[:, 2] = True
    with torch.no_grad():
        edited = ids.clone()
        edited[:, 2] = 7
        torch.testing.assert_close(ex.intervene(images, ids, mask, flags, 7), model({**batch, "input_ids": edited}))
        torch.testing.assert_close(ex.intervene(images, ids, mask, torch.zeros_like(flags)), model(batch))
        deleted = ex.intervene(images, ids, mask, flags)
        other_id = ids.clone()
        other_id[:, 2] = 9
        torch.testing.assert_close(ex.intervene(images, other_id, mask, flags), deleted)
        assert not torch.allclose(deleted, model(batch)), "deleting a word changes the prediction"


@pytest.mark.parametrize("kind", ["concat", "token"])
def test_float_mask_is_token_presence(kind, tiny_fusion):
    """Presence 1/0 = the 0/1 mask; near 0 a word is as good as deleted; in between it is neither."""
    model, ex = tiny_fusion(kind)
    batch = make_batch()
    images, ids, mask = batch["image"], batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        ref = model(batch)
        torch.testing.assert_close(ex.presence_forward(mask.float(), ids, images), ref)
        flags = torch.zeros_like(mask, dtype=torch.bool)
        flags[:, 3] = True
        deleted = ex.intervene(images, ids, mask, flags)
        fade = lambda p: ex.presence_forward(mask.float().masked_fill(flags, p), ids, images)
        torch.testing.assert_close(fade(0.0), deleted)
        torch.testing.assert_close(fade(1e-6), deleted, atol=1e-4, rtol=0)
        half = fade(0.5)
        assert not torch.allclose(half, deleted) and not torch.allclose(half, ref)


def test_presence_ig_is_complete_on_a_tiny_model(tiny_fusion):
    """IG over presence, from the frame-only note: attributions add up to f(note) - f(words deleted)."""
    model, ex = tiny_fusion("concat")
    batch = make_batch()
    images, ids, mask = batch["image"], batch["input_ids"], batch["attention_mask"]
    inner = ids[:, 1:-1]
    inner[(inner == model.cls_id) | (inner == model.sep_id)] = 7  # random words that happen to be [CLS]/[SEP]
    base = ex.presence_baseline(ids, mask)
    assert base.sum(1).tolist() == [1.0] + [2.0] * 5  # [CLS] and [SEP]; note 0's [SEP] lies in its padding
    attr, delta = IntegratedGradients(ex.presence_forward).attribute(
        mask.float(), baselines=base, target=2, additional_forward_args=(ids, images), n_steps=256,
        return_convergence_delta=True)
    with torch.no_grad():
        change = ex.presence_forward(mask.float(), ids, images)[:, 2] - ex.presence_forward(base, ids, images)[:, 2]
    torch.testing.assert_close(attr.sum(1), change, atol=0.02 * change.abs().max().item(), rtol=0)
    assert (attr[mask == 0] == 0).all() and (attr[base == 1] == 0).all(), "pads and the frame get nothing"


class _BagOfWords(torch.nn.Module):
    """Sum of word embeddings over the attention mask, plus the scan's mean: deleting a token
    is *exactly* replacing it by token 0, whose embedding is zero."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(120, 4)
        with torch.no_grad():
            self.emb.weight[0] = 0.0
        self.head = torch.nn.Linear(4, 3)
        self.text_encoder = types.SimpleNamespace(encoder=types.SimpleNamespace(get_input_embeddings=lambda: self.emb))
        self.cls_id, self.sep_id = 101 % 120, 102 % 120

    def forward(self, batch):
        words = (self.emb(batch["input_ids"]) * batch["attention_mask"][..., None]).sum(1)
        return self.head(words) + batch["image"].mean((1, 2, 3))[:, None]


def test_baseline_token_check_known_answers():
    ex = interpret.FusionExplainer(_BagOfWords(), types.SimpleNamespace(pad_token_id=0))
    batch = make_batch()
    batch["input_ids"][1, 1:] = 102 % 120  # a note with no words loses nothing and counts 0
    args = (batch["image"], batch["input_ids"], batch["attention_mask"])
    gaps = interpret.baseline_token_check(ex, *args, {"zero": 0, "other": 7}, repeats=3)
    assert gaps["zero"] == pytest.approx(0.0, abs=1e-7) and gaps["other"] > 0.01
    assert interpret.baseline_token_check(ex, *args, {"other": 7}, repeats=3)["other"] == gaps["other"]


def test_tokens_in_spans_known_answer():
    # "[CLS] The lump grew . [SEP] [PAD]" with character offsets into "The lump grew."
    offsets = torch.tensor([[[0, 0], [0, 3], [4, 8], [9, 13], [13, 14], [0, 0], [0, 0]]])
    flags = interpret.tokens_in_spans(offsets, [[(4, 13)]])
    assert flags.tolist() == [[False, False, True, True, False, False, False]]
    assert not interpret.tokens_in_spans(offsets, [[]]).any()


@pytest.mark.parametrize("kind", ["concat", "token"])
def test_lig_on_word_embeddings_shapes_and_completeness(kind, tiny_fusion):
    """Tokens x hidden for both kinds (no shift by image tokens), complete, and equal to IG on embeddings."""
    model, ex = tiny_fusion(kind)
    batch = make_batch(n=3)
    ids, mask, images = batch["input_ids"], batch["attention_mask"], batch["image"]
    base = ex.text_baseline(ids)
    assert (base[:, 0] == ex.cls_id).all() and (base[:, -1] == ex.sep_id).all() and (base[:, 1:-1] == 0).all()
    lig = LayerIntegratedGradients(ex.text_forward, ex.word_embeddings)
    attr, delta = lig.attribute(ids, baselines=base, target=2, additional_forward_args=(images, mask), n_steps=64,
                                internal_batch_size=ex.internal_batch_size, return_convergence_delta=True)
    assert attr.shape == (3, ids.shape[1], 32)
    with torch.no_grad():
        gap = ex.text_forward(ids, images, mask)[:, 2] - ex.text_forward(base, images, mask)[:, 2]
    assert (delta.abs() <= 0.02 * gap.abs().max() + 1e-5).all()
    emb, base_emb = ex.word_embeddings(ids).detach(), ex.word_embeddings(base).detach()
    ig = IntegratedGradients(ex.embedding_forward).attribute(emb, baselines=base_emb, target=2,
                                                             additional_forward_args=(images, mask), n_steps=64)
    torch.testing.assert_close(ig, attr, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", ["concat", "token"])
def test_image_ig_with_cached_text_is_complete(kind, tiny_fusion):
    model, ex = tiny_fusion(kind)
    batch = make_batch(n=4)
    args = (batch["input_ids"], batch["attention_mask"], ex.text_features(batch["input_ids"], batch["attention_mask"]))
    attr, delta = IntegratedGradients(ex.image_forward).attribute(
        batch["image"], baselines=ex.blank_value, target=0, additional_forward_args=args, n_steps=256,
        internal_batch_size=ex.internal_batch_size, return_convergence_delta=True)
    assert attr.shape == batch["image"].shape
    with torch.no_grad():
        blank = ex.blank_images(batch["image"])
        gap = ex.image_forward(batch["image"], *args)[:, 0] - ex.image_forward(blank, *args)[:, 0]
    # ReLU and max-pooling put kinks on the path (a channel's maximum jumps from one position to another),
    # so the quadrature converges slowly: 256 steps for 3 % (128 leave 3.3 % on this random model).
    assert (delta.abs() <= 0.03 * gap.abs().max()).all()


# ------------------------------------------------------------------ the wrapper on the offline MiniLM
@pytest.fixture(scope="module")
def minilm():
    from visfuse_utils.pretrained import load_text_model

    tokenizer, encoder, _ = load_text_model()
    return tokenizer, encoder


NOTE = "58-year-old woman referred for imaging. The lump has grown rapidly over the past 4 months. Non-smoker."


@pytest.mark.parametrize("kind", ["concat", "token"])
def test_explain_texts_on_minilm_fixed_input(kind, minilm):
    tokenizer, encoder = minilm
    assert tokenizer.is_fast, "offsets and word_ids need the fast tokenizer"
    torch.manual_seed(0)
    model = models.build_fusion_model(kind, copy.deepcopy(encoder), n_classes=3, cls_id=tokenizer.cls_token_id,
                                      sep_id=tokenizer.sep_token_id).eval()
    ex = interpret.FusionExplainer(model, tokenizer, internal_batch_size=16)
    scan = make_synthscan(1, seed=3, image_size=32)
    image = data.MultimodalDataset(scan)[0]["image"][None]
    (lig,) = ex.explain_texts([NOTE], image, [2], "lig", n_steps=16, progress=False)
    (gxi,) = ex.explain_texts([NOTE], image, [2], "grad_x_input", progress=False)
    # Words come back whole, in order, at their character spans.
    assert lig.words[:6] == ["58", "-", "year", "-", "old", "woman"]
    assert all(NOTE[s:e] == w for w, (s, e) in zip(lig.words, lig.word_spans))
    assert "rapidly" in lig.words and "smoker" in lig.words
    assert lig.words == gxi.words and len(lig.scores) == len(lig.words)
    n_tokens = len(tokenizer(NOTE)["input_ids"])
    assert lig.token_attr.shape == (1, n_tokens, encoder.config.hidden_size)
    # Word scores are the token scores summed (specials carry none: the baseline keeps them).
    assert lig.scores.sum() == pytest.approx(lig.token_attr.sum().item(), rel=1e-4, abs=1e-6)
    # delta is Captum's completeness gap: sum of attributions minus the logit change note -> baseline note.
    enc = ex.encode([NOTE])
    with torch.no_grad():
        change = (ex.text_forward(enc["input_ids"], image, enc["attention_mask"])[0, 2]
                  - ex.text_forward(ex.text_baseline(enc["input_ids"]), image, enc["attention_mask"])[0, 2]).item()
    assert lig.scores.sum() - lig.delta == pytest.approx(change, abs=1e-5)
    # IG over word presence: the same words; complete towards the note with its words deleted.
    (pres,) = ex.explain_texts([NOTE], image, [2], "presence", n_steps=32, progress=False)
    assert pres.words == lig.words and pres.token_attr.shape == (1, n_tokens, 1)
    words_only = enc["attention_mask"].bool() & ~ex.presence_baseline(enc["input_ids"], enc["attention_mask"]).bool()
    with torch.no_grad():
        deleted = ex.intervene(image, enc["input_ids"], enc["attention_mask"], words_only)[0, 2]
        change = ex.text_forward(enc["input_ids"], image, enc["attention_mask"])[0, 2] - deleted
    assert pres.scores.sum() - pres.delta == pytest.approx(change.item(), abs=1e-5)
    evidence = [(NOTE.index("The lump"), NOTE.index(" Non-smoker"))]
    inside = words_in_spans(lig.word_spans, evidence)
    assert lig.words[int(np.argmax(inside))] == "The" and inside.sum() == 11


def test_explain_texts_batching_changes_nothing(minilm):
    """Padding to a common length leaves every note's word scores and completeness gap as they were."""
    tokenizer, encoder = minilm
    torch.manual_seed(0)
    model = models.build_fusion_model("concat", copy.deepcopy(encoder), n_classes=3, cls_id=tokenizer.cls_token_id,
                                      sep_id=tokenizer.sep_token_id).eval()
    ex = interpret.FusionExplainer(model, tokenizer)
    scans = make_synthscan(3, seed=5, image_size=32)
    images = torch.stack([data.MultimodalDataset(scans)[i]["image"] for i in range(3)])
    notes = [NOTE, scans.texts[0], scans.texts[1]]
    together = ex.explain_texts(notes, images, [0, 1, 2], "lig", n_steps=4, batch_size=3, progress=False)
    alone = ex.explain_texts(notes, images, [0, 1, 2], "lig", n_steps=4, batch_size=1, progress=False)
    for a, b in zip(together, alone):
        assert a.words == b.words
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
        assert a.delta == pytest.approx(b.delta, abs=1e-5)


def test_benchmark_ig_reports_rates(minilm):
    from bench import benchmark_ig

    tokenizer, encoder = minilm
    model = models.build_fusion_model("concat", copy.deepcopy(encoder), n_classes=3, cls_id=tokenizer.cls_token_id,
                                      sep_id=tokenizer.sep_token_id)
    rates = benchmark_ig(model, tokenizer, make_synthscan(2, seed=0, image_size=32), n=2, n_steps=4)
    assert rates["image_ig_per_s"] > 0 and rates["text_lig_per_s"] > 0 and rates["text_presence_ig_per_s"] > 0
    assert rates["n_steps"] == 4


def test_internal_batch_size_bounds_memory_not_the_result(tiny_fusion):
    """Captum's internal batching splits the interpolation steps into chunks; the attributions stay the same."""
    model, ex = tiny_fusion("concat")
    batch = make_batch(n=3)
    args = (batch["input_ids"], batch["attention_mask"], ex.text_features(batch["input_ids"], batch["attention_mask"]))
    ig = IntegratedGradients(ex.image_forward)
    runs = [ig.attribute(batch["image"], baselines=ex.blank_value, target=1, additional_forward_args=args,
                         n_steps=20, internal_batch_size=size) for size in (7, 60)]
    torch.testing.assert_close(runs[0], runs[1], atol=1e-6, rtol=1e-5)
    assert interpret.default_internal_batch_size("cuda") >= interpret.default_internal_batch_size("cpu") >= 1
