"""``make slides``: one reveal.js deck per notebook, from the committed full-run outputs, into ``build/slides/``.

A cell tagged ``slide`` starts a slide; one tagged ``subslide`` continues it below (reveal's vertical slides). Every
other cell is left out. A code cell shows only its outputs (the figure, the table), unless it is also tagged
``slide-code`` (the idea itself, a few lines). Decks load reveal.js, require.js and MathJax from their CDNs. To present
offline, ``npm install reveal.js@4.0.2 requirejs mathjax@2.7.7`` in a folder and set ``SLIDES_OFFLINE`` to its
``node_modules``: the decks then load those copies by relative path.
"""
from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def slide_notebook(nb: dict) -> dict:
    """A copy of ``nb`` with reveal's slide types set from the ``slide`` / ``subslide`` tags and code inputs hidden."""
    nb = copy.deepcopy(nb)
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        kind = "slide" if "slide" in tags else "subslide" if "subslide" in tags else "skip"
        cell.setdefault("metadata", {})["slideshow"] = {"slide_type": kind}
        if cell["cell_type"] == "code" and "slide-code" not in tags:
            cell["transient"] = {"remove_source": True}
    return nb


def build(out_dir: Path, notebooks: list[Path] | None = None) -> list[Path]:
    import nbformat
    from nbconvert import SlidesExporter

    exporter = SlidesExporter()
    out_dir.mkdir(parents=True, exist_ok=True)
    if os.environ.get("SLIDES_OFFLINE"):
        modules = Path(os.environ["SLIDES_OFFLINE"]).resolve()
        for need in ("reveal.js/dist/reveal.js", "requirejs/require.js", "mathjax/MathJax.js"):
            if not (modules / need).exists():
                raise SystemExit(f"SLIDES_OFFLINE={modules}: {need} is missing; "
                                 "npm install reveal.js@4.0.2 requirejs mathjax@2.7.7 there")
        rel = Path(os.path.relpath(modules, out_dir.resolve())).as_posix()
        exporter.reveal_url_prefix = f"{rel}/reveal.js"
        exporter.require_js_url = f"{rel}/requirejs/require.js"
        exporter.mathjax_url = f"{rel}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    written = []
    for path in notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.reads(json.dumps(slide_notebook(json.loads(path.read_text(encoding="utf-8")))), as_version=4)
        body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
        target = out_dir / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def check(deck: Path, browser: str = "chromium") -> tuple[int, int]:
    """Open ``deck`` in headless Chromium; return (slides, figures) once reveal.js is ready, else raise.

    Needs the decks built with ``SLIDES_OFFLINE`` when the machine cannot reach the CDNs.
    """
    import re
    import subprocess

    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=10000", "--dump-dom", deck.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    if not re.search(r'<div class="reveal[^"]*\bready\b', dom):
        raise SystemExit(f"{deck.name}: reveal.js did not start in {browser} (offline? build with SLIDES_OFFLINE)")
    slides, figures = dom.count("<section"), len(re.findall(r'<img[^>]*\ssrc="data:image/png', dom))
    if figures == 0:
        raise SystemExit(f"{deck.name}: no figure on any slide (are the committed notebooks executed?)")
    return slides, figures


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--check"]
    for p in build(Path(args[0]) if args else ROOT / "build" / "slides"):
        note = "" if "--check" not in sys.argv else " (opens in Chromium: {} slides, {} figures)".format(*check(p))
        print("wrote", p.relative_to(ROOT) if p.is_relative_to(ROOT) else p, note)
