"""Is an attribution right? Scores against ground truth, exact modality shares, and sanity checks (notebook 05).

* Localisation against SynthScan's truth: ``mask_mass_fraction`` and ``pointing_game`` against
  lesion masks, ``span_mass_fraction`` against the evidence spans of a note; each with its
  chance level.
* Exact two-player Shapley values of the scan and the note (``modality_values``,
  ``modality_shapley``).
* Sanity checks: model-parameter randomisation (Adebayo et al., 2018) with rank
  correlations, and the Gaussian perturbation for Captum's ``infidelity``.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from .interpret import FusionExplainer


# ---------------------------------------------------------------------- localization
def mask_mass_fraction(attr: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive attribution that lies inside the mask (nan when nothing is positive).

    A map that ignores the lesion scores the mask's area fraction on average: that is chance.
    """
    pos = np.clip(np.asarray(attr, dtype=np.float64), 0, None)
    total = pos.sum()
    return float(pos[np.asarray(mask, bool)].sum() / total) if total > 0 else float("nan")


def pointing_game(attr: np.ndarray, mask: np.ndarray) -> float:
    """1.0 when the map's maximum falls inside the mask, else 0.0 (chance: the mask's area fraction)."""
    attr = np.asarray(attr)
    return float(np.asarray(mask, bool).flat[int(np.argmax(attr))])


def words_in_spans(word_spans: list[tuple[int, int]], evidence_spans: list[tuple[int, int]]) -> np.ndarray:
    """For each word, whether its character span overlaps an evidence span."""
    return np.array([any(s < e2 and s2 < e for s2, e2 in evidence_spans) for s, e in word_spans], bool)


def span_mass_fraction(word_attr: np.ndarray, word_spans: list[tuple[int, int]],
                       evidence_spans: list[tuple[int, int]]) -> float:
    """Share of the positive word attribution on evidence words (chance: ``words_in_spans(...).mean()``)."""
    pos = np.clip(np.asarray(word_attr, dtype=np.float64), 0, None)
    total = pos.sum()
    return float(pos[words_in_spans(word_spans, evidence_spans)].sum() / total) if total > 0 else float("nan")


# ---------------------------------------------------------------------- modality shares
@torch.no_grad()
def modality_values(explainer: FusionExplainer, images: torch.Tensor, input_ids: torch.Tensor,
                    attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Class probabilities for the four coalitions of {scan, note}: 4 forward passes per sample.

    Keys: ``"both"``, ``"image"`` (note emptied), ``"text"`` (scan blanked), ``"none"``.
    The note's features are computed once for the full and once for the empty note.
    """
    images, input_ids, attention_mask = (t.to(explainer.device) for t in (images, input_ids, attention_mask))
    empty_ids, empty_mask = explainer.empty_notes(len(images))
    blank = explainer.blank_images(images)
    full_txt = explainer.text_features(input_ids, attention_mask)
    empty_txt = explainer.text_features(empty_ids, empty_mask)

    def prob(img, ids, mask, feats):
        return torch.softmax(explainer.image_forward(img, ids, mask, feats).float(), 1).cpu()

    return {"both": prob(images, input_ids, attention_mask, full_txt),
            "image": prob(images, empty_ids, empty_mask, empty_txt),
            "text": prob(blank, input_ids, attention_mask, full_txt),
            "none": prob(blank, empty_ids, empty_mask, empty_txt)}


def modality_shapley(values: dict[str, torch.Tensor], target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Exact Shapley values of the two modalities for the probability of ``target``.

    With two players the Shapley value averages a player's marginal contribution over the
    two orders: phi_image = ((v(I) - v(0)) + (v(IT) - v(T))) / 2, likewise for the text;
    phi_image + phi_text = v(IT) - v(0) (efficiency).
    """
    idx = torch.as_tensor(target).long().view(-1, 1)
    v = {k: p.gather(1, idx).squeeze(1).numpy().astype(np.float64) for k, p in values.items()}
    phi_image = 0.5 * ((v["image"] - v["none"]) + (v["both"] - v["text"]))
    phi_text = 0.5 * ((v["text"] - v["none"]) + (v["both"] - v["image"]))
    return phi_image, phi_text


# ---------------------------------------------------------------------- sanity checks
def randomized_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A copy of ``model`` with every layer re-initialised (head, fusion, both encoders).

    Adebayo et al. (2018): a method whose maps survive this unchanged explains the input,
    not the model.
    """
    torch.manual_seed(seed)
    clone = copy.deepcopy(model)
    for module in clone.modules():
        if hasattr(module, "reset_parameters") and module is not clone:
            module.reset_parameters()
    if hasattr(clone.fusion, "image_pos"):
        nn.init.normal_(clone.fusion.image_pos, std=0.02)
    return clone.eval()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two attributions' absolute values (flattened)."""
    from scipy.stats import spearmanr

    a, b = np.abs(np.ravel(a)), np.abs(np.ravel(b))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def gaussian_perturbation(std: float):
    """A perturbation for ``captum.metrics.infidelity``: Gaussian noise I, input x - I."""
    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(inputs) * std
        return noise, inputs - noise
    return perturb
