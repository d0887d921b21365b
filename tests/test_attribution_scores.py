"""Notebook 05's judges of attributions: localisation scores with known answers, exact modality Shapley
values (checked against Captum's), and the sanity checks."""
import numpy as np
import pytest
import torch
from captum.attr import ShapleyValues

from visfuse_utils import attribution_scores as S
from visfuse_utils import models

from conftest import make_batch


# ------------------------------------------------------------------ localization: known answers
def test_mask_mass_fraction_known_answers():
    mask = np.zeros((4, 4), bool)
    mask[:2, :2] = True  # a quarter of the image
    inside = np.where(mask, 1.0, 0.0)
    assert S.mask_mass_fraction(inside, mask) == 1.0
    assert S.mask_mass_fraction(1.0 - inside, mask) == 0.0
    assert S.mask_mass_fraction(np.ones((4, 4)), mask) == pytest.approx(0.25)  # uniform map = chance
    half = inside * 3.0 + (1 - inside) * 1.0  # 4 px x 3 inside, 12 px x 1 outside
    assert S.mask_mass_fraction(half, mask) == pytest.approx(0.5)
    negative_outside = np.where(mask, 2.0, -5.0)  # negative attribution is not mass
    assert S.mask_mass_fraction(negative_outside, mask) == 1.0
    assert np.isnan(S.mask_mass_fraction(-np.ones((4, 4)), mask))


def test_pointing_game_known_answers():
    mask = np.zeros((5, 5), bool)
    mask[1:3, 1:3] = True
    attr = np.zeros((5, 5))
    attr[2, 2] = 1.0
    assert S.pointing_game(attr, mask) == 1.0
    attr[4, 4] = 2.0
    assert S.pointing_game(attr, mask) == 0.0


def test_span_mass_fraction_known_answers():
    text = "Age 40. Lump grew fast. Likes tea."
    words = text.replace(".", " .").split()
    spans, pos = [], 0
    for w in words:
        start = text.index(w, pos)
        spans.append((start, start + len(w)))
        pos = start + len(w)
    evidence = [(8, 23)]  # "Lump grew fast."
    inside = S.words_in_spans(spans, evidence)
    assert [w for w, i in zip(words, inside) if i] == ["Lump", "grew", "fast", "."]
    scores = np.where(inside, 1.0, 0.0)
    assert S.span_mass_fraction(scores, spans, evidence) == 1.0
    assert S.span_mass_fraction(np.ones(len(words)), spans, evidence) == pytest.approx(inside.mean())
    scores = np.where(inside, 1.0, -1.0)  # negatives outside do not count
    assert S.span_mass_fraction(scores, spans, evidence) == 1.0
    scores = np.where(inside, 0.0, 2.0)
    assert S.span_mass_fraction(scores, spans, evidence) == 0.0


def test_rank_correlation_and_perturbation():
    a = np.arange(10.0)
    assert S.rank_correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert S.rank_correlation(a, -a) == pytest.approx(1.0)  # absolute values: sign flips are the same map
    assert np.isnan(S.rank_correlation(a, np.zeros(10)))
    x = torch.ones(3, 4)
    noise, perturbed = S.gaussian_perturbation(0.1)(x)
    assert torch.allclose(perturbed + noise, x)


def test_modality_shapley_exact_efficient_and_equal_to_captum(tiny_fusion):
    model, ex = tiny_fusion("concat")
    batch = make_batch(n=4)
    images, ids, mask = batch["image"], batch["input_ids"], batch["attention_mask"]
    values = S.modality_values(ex, images, ids, mask)
    target = values["both"].argmax(1)
    phi_img, phi_txt = S.modality_shapley(values, target)
    v = {k: p.gather(1, target[:, None]).squeeze(1).numpy() for k, p in values.items()}
    np.testing.assert_allclose(phi_img + phi_txt, v["both"] - v["none"], atol=1e-6)  # efficiency

    # The empty note [CLS] [SEP] gives what drop_modalities' padded empty note gives.
    dropped = models.drop_modalities(dict(batch), p=0.0, sep_id=ex.sep_id)
    dropped["input_ids"][:, 1:], dropped["attention_mask"][:, 2:] = 0, 0
    dropped["input_ids"][:, 1] = ex.sep_id
    with torch.no_grad():
        padded = torch.softmax(model(dropped), 1)
    torch.testing.assert_close(padded, values["image"], atol=1e-5, rtol=1e-4)

    # Captum's ShapleyValues with one feature group per modality agrees.
    def prob(img, i, m):
        return torch.softmax(ex.image_forward(img, i, m), 1)
    groups = (torch.zeros_like(images, dtype=torch.long), torch.ones_like(ids), torch.ones_like(mask))
    baselines = (ex.blank_images(images), dropped["input_ids"], dropped["attention_mask"])
    sv = ShapleyValues(prob).attribute((images, ids, mask), target=target, feature_mask=groups, baselines=baselines)
    np.testing.assert_allclose(sv[0].flatten(1)[:, 0].numpy(), phi_img, atol=1e-5)
    np.testing.assert_allclose(sv[1][:, 0].numpy(), phi_txt, atol=1e-5)


def test_randomized_copy_changes_every_layer_and_keeps_the_original(tiny_fusion):
    model, _ = tiny_fusion("token")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rand = S.randomized_copy(model, seed=1)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), "the trained model is untouched"
    originals = dict(model.named_modules())
    kinds = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.Embedding)
    layers = [n for n, m in rand.named_modules() if isinstance(m, kinds)]
    assert len(layers) > 10
    for name in layers:
        assert not torch.equal(dict(rand.named_modules())[name].weight, originals[name].weight), name
    assert not torch.equal(rand.fusion.image_pos, model.fusion.image_pos)
    assert not rand.training
