"""Every notebook keeps the course frame, and its Colab setup cell works without a network.

The Colab branch is exercised with a stand-in ``google.colab`` module and a dry-run
installer that records the pip command instead of running it.
"""
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
ALL = NOTEBOOKS + SOLUTIONS


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    return "".join(cell["source"])


def setup_cell(path):
    return next(source(c) for c in cells(path) if c["cell_type"] == "code" and "google.colab" in source(c))


def test_the_course_numbers_its_notebooks_from_01_without_gaps():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert len(names) >= 6 and names == [f"{i:02d}" for i in range(1, len(names) + 1)]


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_models_are_reused_through_the_store_only(path):
    """No notebook finds another's model through checkpoint files or results files, or patches blank features."""
    code = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "code")
    for plumbing in ("blank_features", "load_checkpoint(", "save_checkpoint(", "_meta.json", '/ "checkpoints"'):
        assert plumbing not in code, f"{path.name} uses {plumbing!r}; reuse models through visfuse_utils.recipes/store"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_frame(path):
    cs = cells(path)
    first = source(cs[0])
    assert cs[0]["cell_type"] == "markdown" and first.startswith("# ")
    assert "colab-badge.svg" in first and path.name in first, "Open-in-Colab badge pointing at this notebook"
    assert "minute" in first, "estimated time on a CPU and on a Colab GPU"
    tagged = [c for c in cs if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "PROFILE" in source(tagged[0]) and "SEED" in source(tagged[0])
    code = "\n".join(source(c) for c in cs if c["cell_type"] == "code")
    assert "describe_run(" in code, "print the device, profile and version once"
    assert "trust_remote_code=True" not in code
    if path in NOTEBOOKS:
        md = "\n".join(source(c) for c in cs if c["cell_type"] == "markdown")
        assert "## Summary" in md and "## Exercises" in md
        assert f'save_results("{path.stem}"' in code, "results go to build/results/<notebook>.json"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.name)
def test_colab_setup_cell(path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    code = setup_cell(path)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(code, f"{path.name}:setup", "exec"), {})
    assert calls == [], "outside Colab the setup cell does nothing"
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(code, f"{path.name}:setup", "exec"), {})
    assert len(calls) == 1
    cmd = " ".join(calls[0])
    assert "pip install" in cmd and "captum" in cmd and "visfuse" in cmd
    assert not any(arg.split("[")[0].split(">")[0].split("=")[0] in ("torch", "torchvision") for arg in calls[0]), \
        "never reinstall torch on Colab"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_have_their_solutions_notebook(path):
    md = "\n".join(source(c) for c in cells(path) if c["cell_type"] == "markdown")
    solutions = ROOT / "notebooks" / "solutions" / f"{path.stem[:2]}_solutions.ipynb"
    assert f"notebooks/solutions/{solutions.name}" in md, "the exercises point at their solutions"
    assert solutions.is_file(), f"{solutions.name} is missing"
    heading = source(cells(solutions)[0])
    assert heading.startswith(f"# {path.stem[:2]} · Solutions")
