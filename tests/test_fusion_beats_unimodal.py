"""The headline cannot silently regress: on SynthScan, fusion beats both unimodal models.

Reduced size and a fixed seed keep this within the CI budget: the course's recipes for the two
experts (a CNN and the offline MiniLM, fine-tuned briefly), then a concatenation head on their
frozen features, exactly as notebook 04 builds it.
"""
import pytest
import torch

import visfuse_utils as vf
from visfuse_utils import data, metrics, models, pretrained, recipes, train
from visfuse_utils.synthscan import make_synthscan


@pytest.mark.slow
def test_concat_fusion_beats_both_experts(tmp_path, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path))
    tr, va, te = data.split(make_synthscan(600, seed=0, image_size=32), seed=0)
    tok, hf, _ = pretrained.load_text_model()
    image, image_art = recipes.image_expert(tr, va, seed=0, epochs=10, progress=False)
    text, text_art = recipes.text_expert(tr, va, tok, hf, text_model="default", seed=0, epochs=2, lr=1e-4,
                                         head_lr=2e-3, progress=False)
    ex = recipes.Experts(image, text, image_art, text_art)
    feats = recipes.expert_features(ex, {"train": tr, "val": va, "test": te}, tok)
    fusion, _ = recipes.fusion("concat", ex, tr, va, tok, hf, profile=vf.get_profile("full"), seed=0,
                               features=feats, progress=False)
    loaders = {"image": data.make_loader(te, None, 64), "text": data.make_loader(te, tok, 64)}
    acc = {"image": train.evaluate(image, loaders["image"])["accuracy"],
           "text": train.evaluate(text, loaders["text"])["accuracy"],
           "fusion": train.evaluate(fusion, feats["test"].without("images").batches())["accuracy"]}
    print(acc)
    assert acc["fusion"] >= max(acc["image"], acc["text"]) + 0.10, acc
    # raw inputs through the frozen encoders give the same answer as the cached features
    assert abs(train.evaluate(fusion, loaders["text"])["accuracy"] - acc["fusion"]) < 1e-9


@pytest.fixture(scope="module")
def consistency_features():
    """SynthScan under the consistency rule at notebook 04's size, through frozen EfficientNet-Lite0 and MiniLM."""
    tr, va, te = data.split(data.load_data("synthscan", n=2000, seed=0, image_size=64, rule="consistency"), seed=0)
    tok, hf, _ = pretrained.load_text_model()
    effnet = pretrained.load_image_encoder(1)
    feats = recipes.frozen_features({"train": tr, "val": va, "test": te}, tok, hf, effnet)
    return feats, effnet, tok, hf, te


@pytest.mark.slow
def test_the_consistency_rule_needs_a_fusion_that_multiplies(consistency_features):
    """Issue 19's lesson: late fusion within 5 points of chance, bilinear fusion at least 15 above both modalities."""
    feats, effnet, tok, hf, te = consistency_features
    chance = metrics.majority_rate(te.labels)
    acc = {}
    for kind in ("image", "text", "late", "bilinear"):
        model, _ = recipes.frozen_fusion(kind, feats, effnet, hf, tok, 2, seed=0, epochs=40)
        acc[kind] = train.evaluate(model, feats["test"].without("images").batches(256))["accuracy"]
    print(acc, chance)
    assert acc["late"] <= chance + 0.05
    assert acc["bilinear"] >= max(acc["image"], acc["text"]) + 0.15


@pytest.mark.slow
def test_frozen_fusion_heads_read_only_what_they_are_given(consistency_features):
    feats, effnet, tok, hf, te = consistency_features
    with pytest.raises(ValueError, match="kind must be 'image', 'text' or one of"):
        recipes.frozen_fusion("token", feats, effnet, hf, tok, 2, seed=0, epochs=1)
    model, _ = recipes.frozen_fusion("image", feats, effnet, hf, tok, 2, seed=0, epochs=1)
    batch = next(iter(feats["test"].without("images").batches(8)))
    other = {**batch, "text_features": torch.randn_like(batch["text_features"])}
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(batch), model(other))  # the image head ignores the note
    assert all(not p.requires_grad for p in (*model.image_encoder.parameters(), *model.text_encoder.parameters()))
    swapped = recipes.frozen_features({"test": te}, tok, hf, models.SmallCNN(1), text_from=feats)["test"]
    assert torch.equal(swapped.text_features, feats["test"].text_features) and swapped.image_maps is None
    assert swapped.image_features.shape == (len(te), 128)
