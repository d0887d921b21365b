"""The slice of `make byo-check` that `make test` runs: notebooks 01-06 on a binary and a 10-class RGB dataset."""
import json
import re

import pytest

from byo_check import NOTEBOOKS, ROOT, SLICE, report, run

FOLDER = ROOT / "build" / "byo"


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("shape", SLICE)
def test_notebook_runs_on_a_user_dataset_of_this_shape(shape, notebook, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", "")  # restored afterwards; run() points it at the dataset's build folder
    ok, seconds, error = run(shape, notebook, FOLDER)
    assert ok, f"{notebook} on the {shape} dataset: {error}"


@pytest.mark.slow
@pytest.mark.parametrize("shape", SLICE)
def test_the_report_shows_every_notebook_run_on_a_user_dataset(shape, monkeypatch):
    """After the runs above (or now, for any missing), one report holds the six notebooks' tables and their classes."""
    monkeypatch.setenv("VISFUSE_BUILD", "")
    build = FOLDER / shape / "build"
    for notebook in NOTEBOOKS:
        if not (build / "results" / f"{notebook}.json").is_file():
            assert run(shape, notebook, FOLDER)[0], f"{notebook} on {shape}"
    page = report(shape, FOLDER).read_text(encoding="utf-8")
    assert all(f"<h2>{notebook}</h2>" in page for notebook in NOTEBOOKS)
    fusion = json.loads((build / "results" / "04_fusion.json").read_text())
    assert "concat fusion" in fusion["models"] and "balanced_accuracy" in fusion["models"]["concat fusion"]
    for notebook in NOTEBOOKS:  # the time table: each notebook ran, with no error output
        assert re.search(rf"<td>{notebook}</td><td>\d+</td><td>0</td>", page), notebook


@pytest.mark.slow
def test_notebook_07_refuses_a_user_dataset_and_says_why(monkeypatch):
    """07 scores every written word against SynthScan's captions: on a CSV it stops at once, naming the fix."""
    monkeypatch.setenv("VISFUSE_BUILD", "")
    ok, seconds, error = run("binary", "07_report_generation", FOLDER)
    assert not ok and "DataError" in error and "notebook 07 checks generated reports against SynthScan" in error, error
