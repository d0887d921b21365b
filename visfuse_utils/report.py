"""``python -m visfuse_utils.report build``: one HTML page from a ``make run``.

Gathers every notebook's ``results/*.json`` into tables, draws the comparison chart,
embeds the figures of cells tagged ``report``, and records the profile, device,
versions and the time each executed notebook took (from papermill's metadata).
"""
from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

import pandas as pd

METRIC_COLUMNS = ["accuracy", "accuracy_std", "macro_f1", "auroc", "ece", "n_params", "train_seconds"]


def notebook_summary(path: Path) -> dict:
    """Duration, errors and the figures of ``report``-tagged cells of one executed notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    duration = nb.get("metadata", {}).get("papermill", {}).get("duration")
    figures, errors = [], 0
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            errors += out.get("output_type") == "error"
            if "report" in cell.get("metadata", {}).get("tags", []) and "image/png" in out.get("data", {}):
                figures.append(out["data"]["image/png"])
    return {"duration": duration, "figures": figures, "errors": errors}


def results_table(path: Path) -> tuple[pd.DataFrame, dict]:
    """A results file as a table (model x metric) and its run metadata."""
    saved = json.loads(path.read_text())
    table = pd.DataFrame(saved["models"]).T
    return table[[c for c in METRIC_COLUMNS if c in table]], saved.get("meta", {})


def comparison_chart(results_dir: Path) -> str | None:
    """Base64 PNG of test accuracy for every model of every notebook (02–04) that has results."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for path in sorted(results_dir.glob("0[2-4]_*.json")):
        table, _ = results_table(path)
        if "accuracy" in table:
            rows += [(f"{name} ({path.stem[:2]})", float(row["accuracy"])) for name, row in table.iterrows()]
    if not rows:
        return None
    df = pd.DataFrame(rows, columns=["model", "accuracy"]).sort_values("accuracy")
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(df) + 1))
    ax.barh(df["model"], df["accuracy"], color="tab:blue")
    ax.set(title="Test accuracy across the course", xlabel="accuracy", xlim=(0, 1))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def build_report(build: Path) -> Path:
    """Write ``build/report.html`` and return its path."""
    from . import __version__

    results_dir, nb_dir = build / "results", build / "notebooks"
    parts = ["<html><head><meta charset='utf-8'><title>VisFuse report</title><style>"
             "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>",
             "<h1>VisFuse: results of a course run</h1>"]
    meta_rows, timing = [], []
    for nb in sorted(nb_dir.glob("*.ipynb")):
        info = notebook_summary(nb)
        timing.append((nb.stem, info["duration"], info["errors"]))
    chart = comparison_chart(results_dir)
    if chart:
        parts.append(f"<h2>Comparison</h2><img src='data:image/png;base64,{chart}'>")
    for path in sorted(results_dir.glob("*.json")):
        table, meta = results_table(path)
        meta_rows.append(meta)
        parts.append(f"<h2>{html.escape(path.stem)}</h2>")
        whole = [c for c in table.columns if c.startswith("n_") or c.endswith("_seconds")]
        counts = {c: (lambda v: "–" if v != v else f"{v:,.0f}") for c in whole}
        parts.append(table.to_html(formatters=counts, float_format=lambda v: f"{v:.3f}", na_rep="–"))
        nb = nb_dir / f"{path.stem}.ipynb"
        if nb.exists():
            parts += [f"<img src='data:image/png;base64,{fig}'>" for fig in notebook_summary(nb)["figures"]]
    run = next((m for m in meta_rows if m.get("profile")), {})
    versions = _versions()
    parts.append("<h2>Run</h2><table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in
        [("profile", run.get("profile", "?")), ("device", next((m["device"] for m in meta_rows if "device" in m), "?")),
         ("visfuse_utils", __version__), *versions.items()]) + "</table>")
    parts.append("<h3>Time per notebook</h3><table><tr><th>notebook</th><th>seconds</th><th>errors</th></tr>" + "".join(
        f"<tr><td>{html.escape(n)}</td><td>{'' if d is None else f'{d:.0f}'}</td><td>{e}</td></tr>"
        for n, d, e in timing) + "</table></body></html>")
    out = build / "report.html"
    out.write_text("\n".join(parts), encoding="utf-8")
    return out


def _versions() -> dict:
    import platform

    out = {"python": platform.python_version()}
    for mod in ("torch", "transformers", "captum", "sklearn"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = "not installed"
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "build")
    print(f"report: {build_report(target)}")
