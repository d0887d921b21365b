"""Retrieval (notebook 06): InfoNCE by hand, ranks with ties, chance levels, the model's shapes."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from visfuse_utils import losses, models, recipes, retrieval
from visfuse_utils.features import encode_texts
from visfuse_utils.synthscan import make_synthscan


def test_info_nce_matches_hand_computation():
    # Two pairs, 2-d embeddings already of unit length: cosines are easy to write down.
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    tau = 0.5
    # sim[i, j] = cos(img_i, txt_j) / tau
    s = [[0.6 / tau, 0.0 / tau], [0.8 / tau, 1.0 / tau]]
    # image -> text: each row is a softmax over the texts; text -> image: over the images (columns of s).
    i2t = [-(s[i][i] - math.log(sum(math.exp(v) for v in s[i]))) for i in range(2)]
    t2i = [-(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(2)))) for j in range(2)]
    expected = (sum(i2t) / 2 + sum(t2i) / 2) / 2
    assert losses.info_nce(img, txt, tau).item() == pytest.approx(expected, rel=1e-6)
    # Scaling the embeddings changes nothing (they are normalised inside).
    assert losses.info_nce(3 * img, 0.5 * txt, tau).item() == pytest.approx(expected, rel=1e-6)


def test_info_nce_is_low_for_aligned_pairs_and_symmetric():
    emb = torch.nn.functional.normalize(torch.randn(8, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    aligned = losses.info_nce(emb, emb, 0.05).item()
    shuffled = losses.info_nce(emb, emb.roll(1, dims=0), 0.05).item()
    assert aligned < 0.1 < math.log(8) < shuffled
    a, b = torch.randn(5, 4), torch.randn(5, 4)
    assert losses.info_nce(a, b, 0.1).item() == pytest.approx(losses.info_nce(b, a, 0.1).item(), rel=1e-6)


def test_recall_and_median_rank_with_known_ranks():
    # Row i's positive is column i; its rank is 1, 3, 2 and 4 in rows 0..3.
    sim = np.array([[0.9, 0.1, 0.2, 0.3],
                    [0.8, 0.5, 0.7, 0.1],
                    [0.1, 0.6, 0.4, 0.2],
                    [0.5, 0.4, 0.3, 0.2]])
    above, ties = retrieval.retrieval_ranks(sim)
    assert above.tolist() == [0, 2, 1, 3] and ties.tolist() == [0, 0, 0, 0]
    assert retrieval.recall_at_k(sim, 1) == pytest.approx(1 / 4)
    assert retrieval.recall_at_k(sim, 2) == pytest.approx(2 / 4)
    assert retrieval.recall_at_k(sim, 3) == pytest.approx(3 / 4)
    assert retrieval.recall_at_k(sim, 4) == pytest.approx(1.0)
    assert retrieval.median_rank(sim) == pytest.approx(2.5)  # ranks 1, 3, 2, 4
    m = retrieval.retrieval_metrics(sim, ks=(1, 2))
    assert m == pytest.approx({"R@1": 0.25, "R@2": 0.5, "median_rank": 2.5})


def test_ties_are_broken_at_random_in_expectation():
    # Row 0: the positive ties with two others at the top -> expected rank 2, P(top-1) = 1/3.
    sim = np.array([[1.0, 1.0, 1.0, 0.0],
                    [0.0, 1.0, 0.0, 0.0],
                    [0.0, 0.0, 1.0, 0.0],
                    [0.0, 0.0, 0.0, 1.0]])
    above, ties = retrieval.retrieval_ranks(sim)
    assert above.tolist() == [0, 0, 0, 0] and ties.tolist() == [2, 0, 0, 0]
    assert retrieval.recall_at_k(sim, 1) == pytest.approx((1 / 3 + 3) / 4)
    assert retrieval.recall_at_k(sim, 2) == pytest.approx((2 / 3 + 3) / 4)
    assert retrieval.recall_at_k(sim, 3) == pytest.approx(1.0)


def test_caption_equivalent_relevance():
    captions = ["no lesion", "lesion top left", "no lesion"]
    rel = retrieval.same_text(captions, captions)
    assert rel.tolist() == [[True, False, True], [False, True, False], [True, False, True]]
    # Query 0 ranks item 2 (same caption) first and itself last: strict rank 3, equivalent rank 1.
    sim = np.array([[0.1, 0.5, 0.9], [0.0, 1.0, 0.0], [0.2, 0.1, 0.8]])
    assert retrieval.recall_at_k(sim, 1) == pytest.approx(2 / 3)
    assert retrieval.recall_at_k(sim, 1, rel) == pytest.approx(1.0)


def test_chance_metrics_match_formulas_and_simulation():
    n = 20
    strict = retrieval.chance_metrics(np.eye(n, dtype=bool), ks=(1, 5))
    assert strict == pytest.approx({"R@1": 1 / n, "R@5": 5 / n, "median_rank": (n + 1) / 2})
    rel = retrieval.same_text(["a"] * 4 + [str(i) for i in range(16)], ["a"] * 4 + [str(i) for i in range(16)])
    chance = retrieval.chance_metrics(rel, ks=(5,))
    rng = np.random.default_rng(0)
    sims = [retrieval.recall_at_k(rng.random((n, n)), 5, rel) for _ in range(400)]
    assert chance["R@5"] == pytest.approx(np.mean(sims), abs=0.02)


def test_pixels_to_words_ranks_by_what_it_can_see():
    # Bright top half <-> 'top', bright bottom half <-> 'bottom': a linear map learns it.
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 30, (40, 1, 16, 16)).astype(np.uint8)
    imgs[0::2, :, :8] += 200  # even scans bright on top
    imgs[1::2, :, 8:] += 200  # odd scans bright at the bottom
    caps = ["bright top", "bright bottom"] * 20
    base = retrieval.PixelsToWords(grid=4, alpha=1.0).fit(imgs, caps)
    sim = base.similarity(["bright top", "bright bottom"], imgs)
    assert (sim[0, ::2].min() > sim[0, 1::2].max()) and (sim[1, 1::2].min() > sim[1, ::2].max())
    # one-letter captions (a user's one-word notes) are words too, and colour scans work as grey ones do
    short = retrieval.PixelsToWords(grid=4, alpha=1.0).fit(np.repeat(imgs, 3, axis=1), ["a", "b"] * 20)
    sim = short.similarity(["a", "b"], np.repeat(imgs, 3, axis=1))
    assert (sim[0, ::2].min() > sim[0, 1::2].max()) and (sim[1, 1::2].min() > sim[1, ::2].max())


class _FakeTextEncoder(nn.Module):
    """A stand-in for models.TextEncoder: an embedding bag, out_dim 12."""

    def __init__(self):
        super().__init__()
        self.emb = nn.EmbeddingBag(100, 12, mode="sum")
        self.out_dim = 12

    def forward(self, input_ids, attention_mask):
        return self.emb(input_ids, per_sample_weights=attention_mask.float())


def _fake_tokenizer(texts, **kwargs):
    ids = [[hash(w) % 100 for w in t.split()] for t in texts]
    longest = max(map(len, ids))
    return {"input_ids": torch.tensor([i + [0] * (longest - len(i)) for i in ids]),
            "attention_mask": torch.tensor([[1] * len(i) + [0] * (longest - len(i)) for i in ids])}


def test_contrastive_model_shapes_temperature_and_frozen_text_tower():
    model = retrieval.ContrastiveModel(models.SmallCNN(width=4), _FakeTextEncoder(), dim=8, grid=2)
    img = model.embed_images(torch.randn(3, 1, 32, 32))
    assert img.shape == (3, 8) and torch.allclose(img.norm(dim=1), torch.ones(3))
    feats = encode_texts(model.text_encoder, _fake_tokenizer, ["a b", "c", "a b"])
    assert feats.shape == (3, 12) and torch.equal(feats[0], feats[2])
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert model.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        model.log_scale.fill_(10.0)
    assert model.logit_scale.item() == pytest.approx(100.0, rel=1e-5)  # clamped like CLIP
    classes = retrieval.class_embeddings(model, _fake_tokenizer, {"x": ["a b", "c"], "y": ["d"]})
    assert classes.shape == (2, 8) and torch.allclose(classes.norm(dim=1), torch.ones(2))
    probs = retrieval.zero_shot_probs(model, img.detach(), classes)
    assert probs.shape == (3, 2) and np.allclose(probs.sum(1), 1.0)


def test_the_objective_is_symmetric_info_nce_of_the_batch():
    torch.manual_seed(0)
    model = retrieval.ContrastiveModel(models.SmallCNN(width=4), _FakeTextEncoder(), dim=8, grid=2)
    batch = {"image": torch.randn(5, 1, 16, 16), "text_features": torch.randn(5, 12)}
    expected = losses.info_nce(model.embed_images(batch["image"]), model.embed_text_features(batch["text_features"]),
                               1 / model.logit_scale)
    torch.testing.assert_close(model.objective(batch), expected)


def test_contrastive_recipe_trains_through_fit_keeps_the_best_epoch_and_is_reused(tiny_bert, tmp_path, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path))
    d = make_synthscan(60, seed=0, image_size=16)
    train_set, val_set = d.subset(range(40)), d.subset(range(40, 60))
    kw = dict(text_model="tiny", seed=0, epochs=3, batch_size=16, dim=8, grid=2, width=4, progress=False)
    model, art = recipes.contrastive(train_set, val_set, _fake_tokenizer, tiny_bert, **kw)
    hist = art.history()
    assert len(hist.train_loss) == len(hist.val["temperature"]) == len(hist.val["R@10"]) == 3
    best = max(range(3), key=hist.val["R@10"].__getitem__)
    assert hist.best_epoch == best and all(np.isfinite(hist.train_loss))
    feats = encode_texts(model.text_encoder, _fake_tokenizer, val_set.captions)
    sim = retrieval.text_image_similarity(model, val_set, feats)
    assert sim.shape == (20, 20) and retrieval.recall_at_k(sim, 10) == pytest.approx(hist.val["R@10"][best])
    again, art2 = recipes.contrastive(train_set, val_set, _fake_tokenizer, tiny_bert, **kw)
    assert art2.reused and not any(p.requires_grad for p in again.text_encoder.parameters())
    saved = torch.load(tmp_path / "artifacts" / f"contrastive-{art.key}.pt", weights_only=True)
    assert not any(k.startswith("text_encoder.") and "weight" in k for k in saved)  # the frozen tower is not stored


def test_phrase_share_and_attribute_agreement_known_answers():
    captions = ["a ruler", "no ruler here", "plain", "plain", "a ruler and hair"]
    share = retrieval.phrase_share(np.array([0, 4]), captions, "ruler")
    assert share["top-k share"] == 1.0 and share["base rate"] == pytest.approx(0.6)
    assert share["p (chance)"] == pytest.approx(0.36)  # P(both of 2 draws at rate 0.6)
    import pandas as pd

    attrs = pd.DataFrame({"border": ["smooth", "smooth", "irregular", None]})
    perfect = np.array([[9, 8, 0, 0], [8, 9, 0, 0], [0, 0, 9, 0], [0, 0, 0, 9]], float)
    assert retrieval.attribute_agreement(perfect, attrs, k=2)["border"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert retrieval.attribute_base_rates(attrs)["border"] == pytest.approx((0.5 + 0.5 + 0.25) / 3)
