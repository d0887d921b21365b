"""Figures that more than one notebook draws (seaborn / matplotlib), each with title and axis labels."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns


def live_widgets() -> bool:
    """Whether ipywidgets can draw here: a live front end (Colab, or a kernel a Jupyter server started, which sets
    ``JPY_SESSION_NAME``). papermill and nbval run kernels without one, so notebooks take their plain path there."""
    import importlib.util
    import os
    import sys

    if importlib.util.find_spec("ipywidgets") is None:
        return False
    return "google.colab" in sys.modules or "JPY_SESSION_NAME" in os.environ


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
    """Train/val loss and val accuracy per epoch for one or more ``train.History`` objects (one legend, outside)."""
    import pandas as pd

    frames = [h.as_frame().assign(run=name) for name, h in histories.items()]
    df = pd.concat(frames, ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    sns.lineplot(df[df.metric == "loss"], x="epoch", y="value", hue="run", style="split", marker="o", ax=axes[0])
    axes[0].set(title=f"{title}: loss", ylabel="cross-entropy")
    sns.lineplot(df[df.metric == "accuracy"], x="epoch", y="value", hue="run", marker="o", ax=axes[1], legend=False)
    axes[1].set(title=f"{title}: validation accuracy", ylabel="accuracy")
    for ax in axes:
        ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.0, 0.95), frameon=False, fontsize=8)
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


def results_bar(table, metric: str = "accuracy", oracle: dict | None = None, groups: dict | None = None,
                n_test: int | None = None, title: str | None = None, sort: bool = True, ax=None):
    """Sorted horizontal bars of one metric per model, coloured by group, oracle bands shaded.

    ``table``: DataFrame with a ``model`` column, ``metric`` and optionally ``{metric}_std`` (drawn as the
    seed spread; none where it is missing: a single run). ``sort=False`` keeps the table's order.
    ``groups``: model -> group name ("unimodal", "fusion", ...). ``oracle``: name -> ceiling,
    drawn as a line in a band of +-1.96 standard errors of a rate measured on ``n_test`` samples. Legends
    sit outside the axes, so nothing covers a bar.
    """
    t = (table.sort_values(metric) if sort else table.iloc[::-1]).reset_index(drop=True)
    ax = ax or plt.subplots(figsize=(8.5, 0.34 * len(t) + 1.4))[1]
    names = list(dict.fromkeys((groups or {}).get(m, "model") for m in t["model"]))
    colour = dict(zip(names, sns.color_palette("deep", len(names))))
    kinds = [(groups or {}).get(m, "model") for m in t["model"]]
    err = t[f"{metric}_std"].fillna(0).to_numpy() if f"{metric}_std" in t else None
    ax.barh(np.arange(len(t)), t[metric], xerr=err, color=[colour[k] for k in kinds], capsize=3,
            error_kw={"lw": 1})
    for y, v in enumerate(t[metric]):  # inside the bar's end, clear of error bars and oracle lines
        ax.text(v - 0.012, y, f"{v:.3f}", va="center", ha="right", fontsize=8, color="white", fontweight="bold")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[k]) for k in names] if groups else []
    labels = list(names) if groups else []
    for (name, value), shade in zip((oracle or {}).items(), sns.color_palette("Greys", len(oracle or {}) + 2)[2:]):
        if n_test:
            half = 1.96 * np.sqrt(value * (1 - value) / n_test)
            ax.axvspan(value - half, value + half, color=shade, alpha=0.25, lw=0)
        handles.append(ax.axvline(value, ls="--", lw=1.2, color=shade))
        labels.append(f"{name} ({value:.3f})" + (", band ±1.96 se" if n_test else ""))
    ax.set_yticks(np.arange(len(t)), t["model"], fontsize=9)
    ax.set(title=title or f"{metric} by model", xlabel=metric, xlim=(0, 1.08))
    if handles:
        ax.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
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


# ---------------------------------------------------------------- fusion diagrams (notebook 04)
def _box(ax, x, y, text, colour, w=0.4, h=0.12):
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.01", fc=colour, ec="black",
                                lw=0.8))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end):
    ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "lw": 0.9})


def fusion_diagram():
    """The four fusions of notebook 04 side by side: where scan and note meet, drawn from boxes and arrows."""
    img_c, txt_c, fuse_c, out_c = "#cfe2f3", "#fce5cd", "#d9ead3", "#eeeeee"
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    meet = {"late": ("image head\n+ text head", "average of\nthe two logits"),
            "concat": ("[h_img ; h_txt]", "MLP head"),
            "gated": ("g·h_img +\n(1 − g)·h_txt", "MLP head")}
    for ax, (name, (fuse, head)) in zip(axes, meet.items()):
        _box(ax, 0.25, 0.85, "scan", img_c)
        _box(ax, 0.75, 0.85, "note", txt_c)
        _box(ax, 0.25, 0.62, "CNN\n→ h_img", img_c)
        _box(ax, 0.75, 0.62, "BERT\n→ h_txt", txt_c)
        _box(ax, 0.5, 0.37, fuse, fuse_c, w=0.6, h=0.14)
        _box(ax, 0.5, 0.12, f"{head}\n→ class logits", out_c, w=0.6, h=0.14)
        for x in (0.25, 0.75):
            _arrow(ax, (x, 0.79), (x, 0.68))
            _arrow(ax, (x, 0.56), (0.5 + (x - 0.5) * 0.5, 0.44))
        _arrow(ax, (0.5, 0.3), (0.5, 0.19))
        ax.set_title(f"{name} fusion", fontsize=10)
    ax = axes[3]
    _box(ax, 0.25, 0.85, "scan", img_c)
    _box(ax, 0.75, 0.85, "note", txt_c)
    _box(ax, 0.25, 0.62, "CNN map →\nregion tokens", img_c)
    _box(ax, 0.75, 0.62, "word\npieces", txt_c)
    _box(ax, 0.5, 0.37, "BERT over one sequence:\nwords attend to regions", fuse_c, w=0.8, h=0.14)
    _box(ax, 0.5, 0.12, "pool → MLP head\n→ class logits", out_c, w=0.6, h=0.14)
    for x in (0.25, 0.75):
        _arrow(ax, (x, 0.79), (x, 0.68))
        _arrow(ax, (x, 0.56), (0.5 + (x - 0.5) * 0.5, 0.44))
    _arrow(ax, (0.5, 0.3), (0.5, 0.19))
    ax.set_title("token fusion (MMBT-style)", fontsize=10)
    for ax in axes:
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.axis("off")
    fig.suptitle("Where the scan and the note meet: late, concatenation, gated and token fusion")
    fig.tight_layout()
    return fig


def token_sequence(tokens: list[str], kinds: list[str], title: str = "Token fusion's input sequence"):
    """One row of cells, one per input token, coloured by kind ("special", "image", "segment", "word")."""
    colours = {"special": "#eeeeee", "image": "#cfe2f3", "word": "#fce5cd", "segment": "#d9ead3"}
    fig, ax = plt.subplots(figsize=(min(13, 0.55 * len(tokens) + 1), 1.3))
    for i, (tok, kind) in enumerate(zip(tokens, kinds)):
        ax.add_patch(plt.Rectangle((i, 0), 0.95, 1, fc=colours.get(kind, "white"), ec="black", lw=0.6))
        ax.text(i + 0.47, 0.5, tok, ha="center", va="center", fontsize=7, rotation=90 if len(tok) > 4 else 0)
    handles = [plt.Rectangle((0, 0), 1, 1, fc=c, ec="black", lw=0.6) for c in colours.values()]
    ax.legend(handles, list(colours), fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.1), frameon=False)
    ax.set(xlim=(0, len(tokens)), ylim=(0, 1), title=title)
    ax.axis("off")
    fig.tight_layout()
    return fig


def latent_accuracy(correct: dict[str, np.ndarray], grade: np.ndarray, risk: np.ndarray,
                    title: str = "Test accuracy in each cell of the label rule"):
    """Per model, a 3 x 3 heatmap of accuracy by lesion grade (rows) and affirmed risk cues (columns)."""
    fig, axes = plt.subplots(1, len(correct), figsize=(3.1 * len(correct), 3.0), squeeze=False)
    for ax, (name, ok) in zip(axes[0], correct.items()):
        cells = np.array([[ok[(grade == a) & (risk == b)].mean() if ((grade == a) & (risk == b)).any() else np.nan
                           for b in range(3)] for a in range(3)])
        sns.heatmap(cells, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="RdYlGn", cbar=False, ax=ax,
                    xticklabels=[0, 1, 2], yticklabels=["none", "smooth", "irregular"])
        ax.set(title=name, xlabel="risk cues b", ylabel="lesion grade a" if ax is axes[0][0] else "")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- notebooks 05 and 06
def interpolation_strip(images: np.ndarray, alphas: np.ndarray, probs: np.ndarray, label: str,
                        title: str = "Integrated Gradients walks from the baseline to the scan"):
    """Scans along IG's straight path (alpha 0 = baseline, 1 = the scan) with the model's probability of ``label``."""
    fig, axes = plt.subplots(1, len(images), figsize=(1.6 * len(images), 2.1))
    for ax, img, a, p in zip(axes, images, alphas, probs):
        ax.imshow(img, cmap="gray", vmin=-2, vmax=2)
        ax.set_title(f"α = {a:.2f}\nP({label}) = {p:.2f}", fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def similarity_matrix(sim: np.ndarray, row_labels: list[str], title: str = "Cosine similarity of one batch"):
    """Captions (rows) x scans (columns) of one batch; a trained model lights up the diagonal (the true pairs)."""
    fig, ax = plt.subplots(figsize=(0.42 * sim.shape[1] + 3.5, 0.42 * sim.shape[0] + 1.2))
    sns.heatmap(sim, cmap="viridis", ax=ax, xticklabels=range(1, sim.shape[1] + 1), yticklabels=row_labels,
                cbar_kws={"label": "cosine similarity"})
    ax.set(title=title, xlabel="scan", ylabel="caption")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig
