"""The slice of `make byo-check` that `make test` runs: notebooks 02-06 on a binary and a 10-class RGB dataset."""
import pytest

from byo_check import NOTEBOOKS, ROOT, SLICE, run


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS)
@pytest.mark.parametrize("shape", SLICE)
def test_notebook_runs_on_a_user_dataset_of_this_shape(shape, notebook, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", "")  # restored afterwards; run() points it at the dataset's build folder
    ok, seconds, error = run(shape, notebook, ROOT / "build" / "byo")
    assert ok, f"{notebook} on the {shape} dataset: {error}"
