"""The slice of `make byo-check` that `make test` runs: notebooks 01-06 on a binary and a 10-class RGB dataset."""
import json
import re

import pytest

from visfuse_utils import data, pretrained, recipes, train

from byo_check import NOTEBOOKS, ROOT, SLICE, build, report, run

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


@pytest.mark.slow
def test_on_a_claims_csv_the_recommended_fusion_beats_either_modality_by_10_points():
    """Issue 19 on real photos: the note claims what the photo shows, the label says whether that is true (neither
    alone says anything). The README's recommendation, bilinear fusion on frozen pretrained encoders (notebook 04's
    section 8 on a CSV), must beat the better single modality by at least 10 points."""
    d = data.load_data(str(build("claims", FOLDER / "claims")), n=0, seed=0, image_size=64, channels=3)
    tr, va, te = data.split(d, seed=0)
    tok, hf, _ = pretrained.load_text_model()
    effnet = pretrained.load_image_encoder(3)
    feats = recipes.frozen_features({"train": tr, "val": va, "test": te}, tok, hf, effnet)
    acc = {}
    for kind in ("image", "text", "bilinear"):
        model, _ = recipes.frozen_fusion(kind, feats, effnet, hf, tok, len(d.class_names), seed=0, epochs=40)
        acc[kind] = train.evaluate(model, feats["test"].without("images").batches(256))["accuracy"]
    print(acc)
    assert acc["bilinear"] >= max(acc["image"], acc["text"]) + 0.10, acc
