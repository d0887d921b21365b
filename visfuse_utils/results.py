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


def results_dir() -> Path:
    """``results/`` inside ``visfuse_utils.build_dir()``."""
    from . import build_dir

    return build_dir() / "results"


def save_results(notebook: str, models: dict[str, dict], *, meta: dict, tables: dict[str, dict] | None = None,
                 claims: list[dict] | None = None) -> Path:
    """Write one notebook's results (see the module docstring) and return the file's path.

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
    folder = results_dir()
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
