"""'Change DATA and run' is proven, not promised: notebooks 02–05 on the shipped CSV example.

Runs each notebook through papermill with ``DATA`` pointing at data/examples/examples.csv
(real images bundled with scikit-image, see data/examples/README.md) in the smoke profile.
"""
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "data" / "examples" / "examples.csv"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["02_image_baselines", "03_text_baseline", "04_fusion", "05_interpretability"])
def test_notebook_runs_on_user_csv(name, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path / "build"))
    src = ROOT / "notebooks" / f"{name}.ipynb"
    if not src.exists():
        pytest.fail(f"{src.name} is missing")
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(src), str(out), parameters={"DATA": str(EXAMPLE), "PROFILE": "smoke"},
                        cwd=str(src.parent), kernel_name="python3", progress_bar=False)
    saved = json.loads((tmp_path / "build" / "results" / f"{name}.json").read_text())
    assert saved["models"], "the notebook wrote its results"
    assert saved["meta"].get("data") not in (None, "synthscan"), "the results say they come from the CSV"
