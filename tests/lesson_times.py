"""Per-section study and run times of notebooks 01-06, for the module plan in docs/teaching.md.

``python tests/lesson_times.py cold|warm [build]`` reads the executed notebooks of a full ``make run`` (papermill
records each cell's duration), stores the run seconds of every section under that label in docs/lesson_times.json,
and rewrites the table in docs/teaching.md between its markers. ``cold`` is a first run (every model trains); ``warm``
a run after it (the artifact store returns the models), which is what a class sees after ``make run`` the day before.

Reading time is an estimate from counts, stated in the table: prose at ``WORDS_PER_MIN`` and code at
``CODE_LINES_PER_MIN``. ``tests/test_lesson_times.py`` checks that the table matches the committed notebooks' text.
"""
from __future__ import annotations

import json
import math
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "teaching.md"
STORE = ROOT / "docs" / "lesson_times.json"
BEGIN, END = "<!-- lesson-times:begin -->", "<!-- lesson-times:end -->"
WORDS_PER_MIN, CODE_LINES_PER_MIN = 120, 10
TIME = re.compile(r"\*Time:\*.*?(?=\n\n|$)", re.S)  # the header's time sentence, written here, not counted


def sections(path: Path) -> list[dict]:
    """The notebook cut at each markdown cell opening with a ``## `` heading; prose words and code lines of each."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = [{"section": "Frame: title, setup, parameters", "cells": []}]
    for cell in cells:
        text = "".join(cell["source"])
        heading = re.match(r"## (.+)", text) if cell["cell_type"] == "markdown" else None
        if heading:
            out.append({"section": heading.group(1).strip(), "cells": []})
        out[-1]["cells"].append(cell)
    for s in out:
        cells_ = s.pop("cells")
        prose = [TIME.sub("", "".join(c["source"])) for c in cells_ if c["cell_type"] == "markdown"]
        s["words"] = sum(len(text.split()) for text in prose)
        s["code_lines"] = sum(len("".join(c["source"]).splitlines()) for c in cells_ if c["cell_type"] == "code")
        s["durations"] = [c.get("metadata", {}).get("papermill", {}).get("duration") for c in cells_
                          if c["cell_type"] == "code"]
    return out


def reading_minutes(s: dict) -> float:
    return s["words"] / WORDS_PER_MIN + s["code_lines"] / CODE_LINES_PER_MIN


def reading_total(path: Path) -> int:
    """The notebook's reading time in minutes, rounded up to five."""
    return 5 * math.ceil(sum(reading_minutes(s) for s in sections(path)) / 5)


def run_minutes(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60)} minute{'s' if seconds >= 90 else ''}"


def time_line(path: Path, store: dict) -> str:
    """The notebook header's time sentence, from the counts and the stored run seconds."""
    runs = store.get("seconds", {}).get(path.stem, {})
    cold, warm = (sum(runs.get(label, {}).values()) for label in ("cold", "warm"))
    text = f"*Time:* about {reading_total(path)} minutes of reading; "
    if abs(cold - warm) < 30:
        text += f"the cells run in {run_minutes(max(cold, warm))} on a 2-core CPU (full profile)."
    else:
        text += (f"the cells run in {run_minutes(cold)} on a 2-core CPU the first time `make run` goes through the "
                 f"series (full profile, every model trains) and in {run_minutes(warm)} once the artifact store "
                 "holds the models.")
    return text + " Per section: `docs/teaching.md`."


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))[:6]


def record(label: str, build: Path) -> dict:
    """Store the run seconds of every section of the executed notebooks under ``label``."""
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    import torch

    store.setdefault("machines", {})[label] = (f"{platform.machine()}, {torch.get_num_threads()} torch threads, "
                                               f"torch {torch.__version__}")
    for path in notebooks():
        executed = build / "notebooks" / path.name
        runs = {s["section"]: round(sum(d or 0 for d in s["durations"]), 1) for s in sections(executed)}
        if not any(runs.values()):
            raise SystemExit(f"{executed}: no papermill durations; run `make run` first")
        store.setdefault("seconds", {}).setdefault(path.stem, {})[label] = runs
    STORE.write_text(json.dumps(store, indent=1, ensure_ascii=False) + "\n")
    return store


def table(store: dict) -> str:
    """The Markdown table: per notebook and section, reading minutes and run seconds (cold, warm)."""
    machines = "; ".join(f"{k}: {v}" for k, v in store.get("machines", {}).items())
    lines = [f"Reading: prose at {WORDS_PER_MIN} words and code at {CODE_LINES_PER_MIN} lines a minute, counted from "
             "the notebooks. Run: seconds of the full profile, measured by papermill, cold (every model trains) and "
             f"warm (the store returns them), on {machines}.", "",
             "| notebook | section | reading (min) | run cold (s) | run warm (s) |", "|---|---|---:|---:|---:|"]
    for path in notebooks():
        seconds = store.get("seconds", {}).get(path.stem, {})
        total_read = 0.0
        totals = {"cold": 0.0, "warm": 0.0}
        for s in sections(path):
            read = reading_minutes(s)
            total_read += read
            cells = []
            for label in ("cold", "warm"):
                value = seconds.get(label, {}).get(s["section"])
                totals[label] += value or 0
                cells.append("" if value is None else f"{value:.0f}")
            lines.append(f"| {path.stem[:2]} | {s['section']} | {read:.0f} | {cells[0]} | {cells[1]} |")
        lines.append(f"| **{path.stem[:2]}** | **total** | **{reading_total(path)}** | "
                     f"**{totals['cold']:.0f}** | **{totals['warm']:.0f}** |")
    return "\n".join(lines)


def render() -> None:
    """Rewrite the table in docs/teaching.md and the time sentence in each notebook's first cell."""
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    for path in notebooks():
        nb = json.loads(path.read_text(encoding="utf-8"))
        first = "".join(nb["cells"][0]["source"])
        new = TIME.sub(time_line(path, store).replace("\\", "\\\\"), first, count=1)
        if new != first:
            nb["cells"][0]["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    doc = DOC.read_text(encoding="utf-8")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{table(store)}\n{END}{tail}", encoding="utf-8")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        record(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "build")
    render()
