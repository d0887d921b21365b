"""Figures that more than one notebook draws (seaborn / matplotlib), each with title and axis labels."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def confusion_matrix(labels: np.ndarray, probs_or_pred: np.ndarray, class_names: list[str],
                     title: str = "Confusion matrix", ax=None):
    """Row-normalised confusion matrix: each row says where the samples of one true class went."""
    from sklearn.metrics import confusion_matrix as cm

    pred = probs_or_pred.argmax(1) if np.ndim(probs_or_pred) == 2 else np.asarray(probs_or_pred)
    mat = cm(labels, pred, labels=np.arange(len(class_names)), normalize="true")
    ax = ax or plt.subplots(figsize=(3.6, 3.2))[1]
    sns.heatmap(mat, annot=True, fmt=".2f", cmap="Blues", vmin=0, vmax=1, cbar=False,
                xticklabels=class_names, yticklabels=class_names, ax=ax)
    ax.set(title=title, xlabel="predicted", ylabel="true")
    return ax


def reliability_diagram(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10,
                        title: str = "Reliability", ax=None):
    """Accuracy against confidence per bin; a calibrated model follows the diagonal."""
    conf = probs.max(1)
    correct = probs.argmax(1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    centers = (edges[:-1] + edges[1:]) / 2
    acc = np.array([correct[idx == b].mean() if (idx == b).any() else np.nan for b in range(n_bins)])
    ax = ax or plt.subplots(figsize=(3.4, 3.2))[1]
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    ax.bar(centers, acc, width=1 / n_bins, edgecolor="black", alpha=0.7, label="accuracy in bin")
    ax.set(title=title, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    return ax


def learning_curves(histories: dict, title: str = "Learning curves"):
    """Train/val loss and val accuracy per epoch for one or more ``train.History`` objects."""
    import pandas as pd

    frames = [h.as_frame().assign(model=name) for name, h in histories.items()]
    df = pd.concat(frames, ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    sns.lineplot(df[df.metric == "loss"], x="epoch", y="value", hue="model", style="split", marker="o", ax=axes[0])
    axes[0].set(title=f"{title}: loss", ylabel="cross-entropy")
    sns.lineplot(df[df.metric == "accuracy"], x="epoch", y="value", hue="model", marker="o", ax=axes[1])
    axes[1].set(title=f"{title}: validation accuracy", ylabel="accuracy")
    fig.tight_layout()
    return fig


def scan_grid(images: np.ndarray, titles: list[str] | None = None, masks: np.ndarray | None = None,
              ncols: int = 6, size: float = 1.8, suptitle: str | None = None):
    """A grid of scans (N x C x H x W uint8), with optional lesion outlines and titles."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        img = images[k]
        ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
        if masks is not None and masks[k].any():
            ax.contour(masks[k], levels=[0.5], colors="tab:red", linewidths=0.8)
        if titles is not None:
            ax.set_title(titles[k], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def results_bar(table, metric: str = "accuracy", oracle: dict | None = None, title: str | None = None, ax=None):
    """Bar chart of one metric per model (``table``: DataFrame with columns model, metric[, metric_std])."""
    ax = ax or plt.subplots(figsize=(7, 3.2))[1]
    order = table.sort_values(metric)["model"]
    sns.barplot(table, x="model", y=metric, order=order, color="tab:blue", ax=ax)
    if f"{metric}_std" in table:
        t = table.set_index("model").loc[order]
        ax.errorbar(np.arange(len(t)), t[metric], yerr=t[f"{metric}_std"].fillna(0), fmt="none", color="black",
                    capsize=3)
    for name, value in (oracle or {}).items():
        ax.axhline(value, ls="--", lw=1, color="grey")
        ax.text(len(order) - 0.5, value, f" {name}", va="bottom", ha="right", fontsize=8, color="grey")
    ax.set(title=title or f"{metric} by model", xlabel="", ylabel=metric, ylim=(0, 1.02))
    ax.tick_params(axis="x", rotation=30)
    return ax


# ---------------------------------------------------------------- attributions (notebook 05)
def show_attribution(ax, image: np.ndarray, attr: np.ndarray, mask: np.ndarray | None = None,
                     title: str = "", alpha: float = 0.55):
    """A scan (C x H x W uint8) in grey, the positive attribution as a heat map, the lesion outlined.

    The heat saturates at the 99th percentile of the positive values, so one extreme pixel
    does not leave the rest of the map invisible.
    """
    ax.imshow(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
    pos = np.clip(attr, 0, None)
    top = np.percentile(pos[pos > 0], 99) if (pos > 0).any() else 1.0
    ax.imshow(np.ma.masked_less_equal(pos / top, 0.05), cmap="inferno", vmin=0, vmax=1, alpha=alpha)
    if mask is not None and mask.any():
        ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.9)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def highlight_note(ax, attribution, evidence_spans: list[tuple[int, int]] | None = None,
                   title: str = "", fontsize: float = 8.5):
    """The note as text, each word on a green (for) or red (against) background; evidence underlined.

    Words are laid out in inches from the axes' top-left corner and wrapped at its width
    (call ``fig.tight_layout()`` before this, so the width is final).
    """
    from matplotlib.transforms import ScaledTranslation

    from .attribution_scores import words_in_spans

    scores = attribution.scores
    top = float(np.abs(scores).max()) if len(scores) and np.abs(scores).max() > 0 else 1.0
    evidence = (words_in_spans(attribution.word_spans, evidence_spans) if evidence_spans is not None
                else np.zeros(len(scores), bool))
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    width = ax.get_window_extent(renderer).width / fig.dpi  # inches
    line_h, space = 2.0 * fontsize / 72, 0.5 * fontsize / 72
    at = lambda x, y: ax.transAxes + ScaledTranslation(x, -y, fig.dpi_scale_trans)
    x, y, prev_end = 0.0, line_h / 2, None
    for word, (s, e), score, ev in zip(attribution.words, attribution.word_spans, scores, evidence):
        if prev_end is not None and s > prev_end:
            x += space
        strength = min(1.0, abs(score) / top)
        color = (0.1, 0.65, 0.2, strength) if score > 0 else (0.85, 0.15, 0.1, strength)
        t = ax.text(0, 1, word, transform=at(x, y), fontsize=fontsize, va="center", ha="left",
                    bbox=dict(boxstyle="square,pad=0.1", fc=color, ec="none"))
        w = t.get_window_extent(renderer).width / fig.dpi
        if x + w > width - 0.05 and x > 0:
            x, y = 0.0, y + line_h
            t.set_transform(at(x, y))
        if ev:
            ax.annotate("", xy=(0, 1), xycoords=at(x + w, y + 0.4 * line_h), xytext=(0, 1),
                        textcoords=at(x, y + 0.4 * line_h),
                        arrowprops=dict(arrowstyle="-", color="tab:blue", lw=1.2, shrinkA=0, shrinkB=0))
        x, prev_end = x + w, e
    return ax
