"""Per-section study and run times of the notebooks, for the module plan in docs/teaching.md.

``python tests/lesson_times.py cold|warm [build] [NN ...]`` reads the executed notebooks of a full ``make run``
(papermill records each cell's duration; ``NN ...`` limits it to those notebooks, e.g. one that changed), stores
the run seconds of every section under that label in docs/lesson_times.json, and rewrites the table in
docs/teaching.md between its markers. ``cold`` is a first run (every model trains); ``warm``
a run after it (the artifact store returns the models), which is what a class sees after ``make run`` the day before.

Reading time is an estimate from counts, stated in the table: prose at ``WORDS_PER_MIN`` and code at
``CODE_LINES_PER_MIN``. ``tests/test_lesson_times.py`` checks that the table matches the committed notebooks' text.
"""
from __future__ import annotations

import json
import math
import os
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
    """The notebook cut at every ``## `` heading line; each section's prose words, code lines and cell durations.

    A heading may sit inside a markdown cell: the words before it count for the section before.
    """
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = [{"section": "Frame: title, setup, parameters", "words": 0, "code_lines": 0, "durations": []}]
    for cell in cells:
        text = "".join(cell["source"])
        if cell["cell_type"] == "code":
            out[-1]["code_lines"] += len(text.splitlines())
            out[-1]["durations"].append(cell.get("metadata", {}).get("papermill", {}).get("duration"))
            continue
        for line in TIME.sub("", text).splitlines():
            if line.startswith("## "):
                out.append({"section": line[3:].strip(), "words": 0, "code_lines": 0, "durations": []})
            out[-1]["words"] += len(line.split())
    return out


def optional(s: dict) -> bool:
    """Whether a section is an optional extra after the main path (not counted in the notebook's reading time)."""
    return s["section"].startswith("Going further")


def reading_minutes(s: dict) -> float:
    return s["words"] / WORDS_PER_MIN + s["code_lines"] / CODE_LINES_PER_MIN


def reading_total(path: Path, extras: bool = False) -> int:
    """Minutes of reading, rounded up to five: the lesson, or (``extras``) its optional *Going further* part."""
    return 5 * math.ceil(sum(reading_minutes(s) for s in sections(path) if optional(s) == extras) / 5)


def run_minutes(seconds: float) -> str:
    return "under a minute" if seconds < 60 else f"about {round(seconds / 60)} minute{'s' if seconds >= 90 else ''}"


def time_line(path: Path, store: dict) -> str:
    """The notebook header's time sentence, from the counts and the stored run seconds."""
    cold, warm = (sum(section_seconds(path, store, label) or [0]) for label in ("cold", "warm"))
    extra = reading_total(path, extras=True)
    text = f"*Time:* about {reading_total(path)} minutes of reading" + (
        f" (and about {extra} for the optional *Going further*); " if extra else "; ")
    if abs(cold - warm) < 30:
        text += f"the cells run in {run_minutes(max(cold, warm))} on a 2-core CPU (full profile)."
    else:
        text += (f"the cells run in {run_minutes(cold)} on a 2-core CPU the first time `make run` goes through the "
                 f"series (full profile, every model trains) and in {run_minutes(warm)} once the artifact store "
                 "holds the models.")
    return text + " Per section: `docs/teaching.md`."


def notebooks(root: Path = ROOT) -> list[Path]:
    return sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def record(label: str, build: Path, only: list[str] | None = None) -> dict:
    """Store every code cell's run seconds of the executed notebooks under ``label`` (sections are summed later)."""
    store = json.loads(STORE.read_text()) if STORE.exists() else {}
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    store.setdefault("machines", {})[label] = (f"{os.cpu_count()}-core {platform.machine()} CPU, {device}, "
                                               f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for path in notebooks():
        if only and path.stem[:2] not in only:
            continue
        executed = build / "notebooks" / path.name
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        seconds = [c.get("metadata", {}).get("papermill", {}).get("duration") for c in code]
        if None in seconds:
            raise SystemExit(f"{executed}: a cell without a papermill duration; run `make run` first")
        store.setdefault("seconds", {}).setdefault(path.stem, {})[label] = [round(x, 2) for x in seconds]
    STORE.write_text(json.dumps(store, indent=1, ensure_ascii=False) + "\n")
    return store


def section_seconds(path: Path, store: dict, label: str) -> list[float] | None:
    """Run seconds per section of ``path`` from the stored per-cell times, or None when they were not measured."""
    cells = store.get("seconds", {}).get(path.stem, {}).get(label)
    parts = sections(path)
    if cells is None or len(cells) != sum(len(s["durations"]) for s in parts):
        return None
    out, k = [], 0
    for s in parts:
        out.append(sum(cells[k:k + len(s["durations"])]))
        k += len(s["durations"])
    return out


def table(store: dict) -> str:
    """The Markdown table: per notebook and section, reading minutes and run seconds (cold, warm)."""
    runs = store.get("machines", {})
    machines = (next(iter(runs.values())) if len(set(runs.values())) == 1
                else "; ".join(f"{k}: {v}" for k, v in runs.items()))
    lines = [f"Reading: prose at {WORDS_PER_MIN} words and code at {CODE_LINES_PER_MIN} lines a minute, counted from "
             "the notebooks. Run: seconds of the full profile, measured by papermill, cold (every model trains) and "
             f"warm (the store returns them), on {machines}.", "",
             "| notebook | section | reading (min) | run cold (s) | run warm (s) |", "|---|---|---:|---:|---:|"]
    for path in notebooks():
        runs = {label: section_seconds(path, store, label) for label in ("cold", "warm")}
        parts = sections(path)
        for k, s in enumerate(parts):
            shown = ["" if runs[label] is None else f"{runs[label][k]:.0f}" for label in ("cold", "warm")]
            lines.append(f"| {path.stem[:2]} | {s['section']} | {reading_minutes(s):.0f} | {shown[0]} | {shown[1]} |")
        totals = ["" if runs[label] is None else f"{sum(runs[label]):.0f}" for label in ("cold", "warm")]
        label = "total, without *Going further*" if any(optional(s) for s in parts) else "total"
        lines.append(f"| **{path.stem[:2]}** | **{label}** | **{reading_total(path)}** | **{totals[0]}** | "
                     f"**{totals[1]}** |")
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
        record(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "build", sys.argv[3:] or None)
    render()
