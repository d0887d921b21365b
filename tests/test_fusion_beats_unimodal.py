"""The headline cannot silently regress: on SynthScan, fusion beats both unimodal models.

Reduced size and a fixed seed keep this within the CI budget: the course's recipes for the two
experts (a CNN and the offline MiniLM, fine-tuned briefly), then a concatenation head on their
frozen features, exactly as notebook 04 builds it.
"""
import pytest

import visfuse_utils as vf
from visfuse_utils import data, pretrained, recipes, train
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
