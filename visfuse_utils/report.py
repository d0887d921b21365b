"""``python -m visfuse_utils.report build``: one HTML page from a ``make run``.

Every results file (``results`` schema) is shown the same way: its models table, each of its
other tables, its claims, and the figures of its notebook's cells tagged ``report``. The
comparison chart plots test accuracy of every model of every notebook that reports one. The
page ends with the profile, device, versions and the time each executed notebook took.
"""
from __future__ import annotations

import base64
import html
import io
import json
import sys
from pathlib import Path

import pandas as pd

from .metrics import table as metrics_table
from .results import load_results


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


def comparison_chart(records: list[dict]) -> str | None:
    """Base64 PNG of test accuracy for every model of every notebook that reports one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"{name} ({rec['notebook'][:2]})", float(m["accuracy"])) for rec in records
            for name, m in rec["models"].items() if isinstance(m.get("accuracy"), (int, float))]
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


def _html_table(rows: dict[str, dict], index_name: str = "model") -> str:
    frame = metrics_table(rows, index_name)
    whole = [c for c in frame.columns if c.startswith("n_") or c.endswith("_seconds")]
    fmt = {c: (lambda v: "–" if v != v or v is None else f"{v:,.0f}") for c in whole}
    return frame.to_html(formatters=fmt, float_format=lambda v: f"{v:.3f}", na_rep="–")


def _claims(claims: list[dict]) -> str:
    items = "".join(f"<li>{'held' if c.get('held') else '<b>did not hold</b>'}: {html.escape(str(c.get('text')))}</li>"
                    for c in claims)
    return f"<h3>Claims checked on this run</h3><ul>{items}</ul>" if claims else ""


def build_report(build: Path) -> Path:
    """Write ``build/report.html`` and return its path."""
    from . import __version__

    results_dir, nb_dir = build / "results", build / "notebooks"
    records = [load_results(p) for p in sorted(results_dir.glob("*.json"))]
    parts = ["<html><head><meta charset='utf-8'><title>VisFuse report</title><style>"
             "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}img{max-width:100%}</style></head><body>",
             "<h1>VisFuse: results of a course run</h1>"]
    chart = comparison_chart(records)
    if chart:
        parts.append(f"<h2>Comparison</h2><img src='data:image/png;base64,{chart}'>")
    for rec in records:
        parts.append(f"<h2>{html.escape(rec['notebook'])}</h2>")
        if rec["models"]:
            parts.append(_html_table(rec["models"]))
        for title, rows in rec["tables"].items():
            parts.append(f"<h3>{html.escape(title)}</h3>" + _html_table(rows, index_name=""))
        parts.append(_claims(rec["claims"]))
        nb = nb_dir / f"{rec['notebook']}.ipynb"
        if nb.exists():
            parts += [f"<img src='data:image/png;base64,{fig}'>" for fig in notebook_summary(nb)["figures"]]
    metas = [rec["meta"] for rec in records]
    run = [("profile", metas[0]["profile"] if metas else "?"), ("device", metas[0]["device"] if metas else "?"),
           ("visfuse_utils", __version__), *_versions().items()]
    parts.append("<h2>Run</h2><table>" + "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in run) + "</table>")
    rows = []
    for nb in sorted(nb_dir.glob("*.ipynb")):
        info = notebook_summary(nb)
        seconds = "" if info["duration"] is None else f"{info['duration']:.0f}"
        rows.append(f"<tr><td>{html.escape(nb.stem)}</td><td>{seconds}</td><td>{info['errors']}</td></tr>")
    parts.append("<h3>Time per notebook</h3><table><tr><th>notebook</th><th>seconds</th><th>errors</th></tr>"
                 + "".join(rows) + "</table></body></html>")
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
