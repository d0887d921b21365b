"""What a notebook records, in one schema: ``build/results/NN_name.json``, which the report reads.

::

    {"schema": 1, "notebook": "04_fusion",
     "models": {model: {metric: value}},         accuracy, macro_f1, auroc, ece, n_params, train_seconds...
     "tables": {title: {row: {column: value}}},  any other results: attribution scores, retrieval metrics...
     "claims": [{"text": ..., "held": true}],    sentences of the prose, checked on this run
     "meta": {"profile", "data", "seed", "device", ...}}

The report shows every part of every file the same way, so a notebook adds a result by
adding a table, never by teaching the report about itself.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

SCHEMA = 1
REQUIRED_META = ("profile", "data", "seed", "device")


class ClaimError(AssertionError):
    """A sentence of the lesson no longer holds for this run's numbers."""


class Claims:
    """The result sentences a notebook states, each checked against this run's numbers.

    ``claim(condition, sentence)`` shows the sentence (as Markdown, marked held or not) and records it
    for the results file. In the ``full`` profile on SynthScan, whose numbers the text discusses, a claim
    that does not hold stops the run with ``ClaimError``; in ``smoke`` (tiny data, one epoch), ``large`` (a
    GPU run the text was not written from) and on a user's ``data`` it is only reported.
    """

    def __init__(self, profile: str, data: str = "synthscan"):
        self.strict = profile == "full" and str(data).lower() == "synthscan"
        self.why = ("the text was written from SynthScan, not from your data" if profile == "full"
                    else "on this run's profile")
        self.records: list[dict] = []

    def __call__(self, condition, sentence: str) -> None:
        held = bool(condition)
        self.records.append({"text": sentence, "held": held})
        mark = "✔" if held else ("✘ **does not hold**" if self.strict else f"✘ *does not hold: {self.why}*")
        _show_markdown(f"{mark} {sentence}")
        if not held and self.strict:
            raise ClaimError(f"This sentence of the lesson does not hold for this run: {sentence!r}. Re-read the "
                             "numbers above and correct the text (or the code) before publishing.")


def _show_markdown(text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text)


def results_dir() -> Path:
    """``results/`` inside ``visfuse_utils.build_dir()``."""
    from . import build_dir

    return build_dir() / "results"


def save_results(notebook: str, models: dict[str, dict], *, meta: dict, tables: dict[str, dict] | None = None,
                 claims: list[dict] | None = None, folder: str | Path | None = None) -> Path:
    """Write one notebook's results (see the module docstring) to ``folder`` (default ``results_dir()``).

    ``models`` and each table map a row name to ``{column: number}``; ``meta`` must name the
    profile, data, seed and device of the run.
    """
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise ValueError(f"meta must record {', '.join(REQUIRED_META)}; missing {', '.join(missing)}")
    for title, rows in {"models": models, **(tables or {})}.items():
        bad = [r for r, cols in rows.items() if not isinstance(cols, dict)]
        if bad:
            raise ValueError(f"{title}: each row must map column names to values; rows {bad} do not")
    record = {"schema": SCHEMA, "notebook": notebook, "models": models, "tables": tables or {},
              "claims": claims or [], "meta": meta}
    folder = Path(folder) if folder is not None else results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{notebook}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_clean(record), indent=2, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)
    return path


def load_results(path_or_notebook: str | Path) -> dict:
    """A results file as a dict (``"04_fusion"`` or a path); files of another schema are refused."""
    path = Path(path_or_notebook)
    if path.suffix != ".json":
        path = results_dir() / f"{path_or_notebook}.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    if record.get("schema") != SCHEMA:
        raise ValueError(f"{path} has results schema {record.get('schema')!r}, not {SCHEMA}; re-run its notebook")
    return record


def _clean(x):
    """JSON-ready: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if x is None or isinstance(x, str):
        return x
    return str(x)
