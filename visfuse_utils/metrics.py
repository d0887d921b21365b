"""Evaluation shared by every notebook (``results`` writes the numbers to disk).

Accuracy and macro-F1 judge the hard decisions, balanced accuracy (the mean recall over
classes) the same decisions when one class dominates, one-vs-rest AUROC the ranking, and the
expected calibration error (ECE) whether the confidence can be believed. The majority class's
share is the chance level to beat; a paired bootstrap says whether one model beats another on
the same test samples.
"""
from __future__ import annotations

import numpy as np


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    """ECE: the confidence-weighted gap between accuracy and confidence over equal-width bins."""
    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            ece += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(ece)


def classification_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """accuracy, balanced_accuracy, macro_f1, auroc (binary, or one-vs-rest macro) and ece from probabilities."""
    from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

    labels = np.asarray(labels)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or len(probs) != len(labels):
        raise ValueError(f"probs must be N x classes for N={len(labels)} labels, got shape {probs.shape}")
    pred = probs.argmax(axis=1)
    n_classes = probs.shape[1]
    present = np.unique(labels)
    if len(present) < 2:
        auroc = float("nan")  # undefined with one class present
    elif n_classes == 2:
        auroc = float(roc_auc_score(labels, probs[:, 1]))
    else:
        norm = probs / probs.sum(axis=1, keepdims=True)
        auroc = float(roc_auc_score(labels, norm, multi_class="ovr", average="macro", labels=np.arange(n_classes)))
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "balanced_accuracy": float(recall_score(labels, pred, average="macro", labels=present, zero_division=0)),
        "macro_f1": float(f1_score(labels, pred, average="macro", labels=np.arange(n_classes), zero_division=0)),
        "auroc": auroc,
        "ece": expected_calibration_error(labels, probs),
    }


def majority_rate(labels: np.ndarray) -> float:
    """The share of the most frequent class: the accuracy of always answering it, chance for an imbalanced set."""
    counts = np.bincount(np.asarray(labels))
    return float(counts.max() / counts.sum())


def paired_bootstrap(score_a: np.ndarray, score_b: np.ndarray, n_resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``score_a - score_b`` per test sample and its 95 % paired bootstrap interval: (mean, low, high).

    The scores are per-sample (1 right, 0 wrong, or a mean over seeds); both models are resampled on the same
    samples, so the interval reflects only which samples the test split happened to hold.
    """
    a, b = np.asarray(score_a, dtype=np.float64), np.asarray(score_b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"score_a and score_b must be equal-length 1-D arrays, got {np.shape(score_a)} and "
                         f"{np.shape(score_b)}")
    diff = a - b
    resamples = np.random.default_rng(seed).integers(0, len(diff), (n_resamples, len(diff)))
    low, high = np.percentile(diff[resamples].mean(axis=1), [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def mean_std(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean and standard deviation over seeds: ``{"accuracy": m, "accuracy_std": s, ...}``."""
    out: dict[str, float] = {}
    for key in runs[0]:
        vals = np.array([r[key] for r in runs], dtype=np.float64)
        out[key] = float(vals.mean())
        if len(runs) > 1 and key not in ("n_params",):
            out[f"{key}_std"] = float(vals.std(ddof=1))
    out["n_seeds"] = len(runs)
    return out


METRIC_COLUMNS = ["accuracy", "accuracy_std", "balanced_accuracy", "macro_f1", "auroc", "ece", "n_params",
                  "train_seconds"]


def table(results: dict[str, dict], index_name: str = "model"):
    """``{row: {column: value}}`` as a DataFrame, one row per model (or method), the course's metric columns first."""
    import pandas as pd

    frame = pd.DataFrame.from_dict(results, orient="index")
    first = [c for c in METRIC_COLUMNS if c in frame]
    return frame[first + [c for c in frame.columns if c not in first]].rename_axis(index_name)
