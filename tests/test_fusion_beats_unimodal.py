"""The headline cannot silently regress: on SynthScan, fusion beats both unimodal models.

Reduced size and a fixed seed keep this within the CI budget: two experts (a CNN and the
offline MiniLM, fine-tuned briefly), then a concatenation head on their frozen features,
exactly the recipe of notebook 04.
"""
import copy

import pytest
import torch

import visfuse_utils as vf
from visfuse_utils import data, models, text, train


@pytest.mark.slow
def test_concat_fusion_beats_both_experts():
    vf.set_seed(0)
    d = data.make_synthscan(600, seed=0, image_size=32)
    tr, va, te = data.split(d, seed=0)
    tok, hf, _ = text.load_text_model()
    loaders = {k: data.make_loader(s, tok, 32, shuffle=k == "train") for k, s in (("train", tr), ("val", va), ("test", te))}

    image_expert = models.ImageClassifier(models.SmallCNN(), 3)
    train.fit(image_expert, loaders["train"], loaders["val"], epochs=10, lr=3e-3, patience=4, progress=False)
    vf.set_seed(0)
    text_expert = models.TextClassifier(models.TextEncoder(copy.deepcopy(hf)), 3)
    train.fit(text_expert, loaders["train"], loaders["val"], epochs=2, lr=1e-4, progress=False,
              param_groups=[{"params": text_expert.encoder.parameters(), "lr": 1e-4},
                            {"params": text_expert.head.parameters(), "lr": 2e-3}])

    fusion = models.build_fusion_model("concat", copy.deepcopy(hf), 3)
    fusion.image_encoder.load_state_dict(image_expert.encoder.state_dict())
    fusion.text_encoder.load_state_dict(text_expert.encoder.state_dict())
    for p in [*fusion.image_encoder.parameters(), *fusion.text_encoder.parameters()]:
        p.requires_grad_(False)
    feats = train.cache_features(fusion, loaders)
    vf.set_seed(0)
    train.fit(fusion, feats["train"], feats["val"], epochs=40, lr=2e-3, patience=6, progress=False)

    acc = {"image": train.evaluate(image_expert, loaders["test"])["accuracy"],
           "text": train.evaluate(text_expert, loaders["test"])["accuracy"],
           "fusion": train.evaluate(fusion, feats["test"])["accuracy"]}
    print(acc)
    assert acc["fusion"] >= max(acc["image"], acc["text"]) + 0.10, acc
    # raw inputs through the frozen encoders give the same answer as the cached features
    with torch.no_grad():
        assert abs(train.evaluate(fusion, loaders["test"])["accuracy"] - acc["fusion"]) < 1e-9
