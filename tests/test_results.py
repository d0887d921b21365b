"""The results schema: what every notebook writes and the report reads."""
import json

import numpy as np
import pytest

from visfuse_utils import results as R

META = {"profile": "smoke", "data": "synthscan", "seed": 0, "device": "cpu"}


def test_save_and_load_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path))
    path = R.save_results("99_test", {"model": {"accuracy": np.float32(0.5), "n_params": np.int64(7)}}, meta=META,
                          tables={"scores": {"IG": {"in mask": 0.8, "ratio": float("nan")}}},
                          claims=[{"text": "IG beats chance", "held": np.bool_(True)}])
    assert path == tmp_path / "results" / "99_test.json"
    saved = json.loads(path.read_text())  # strict JSON: NaN became null
    assert saved["models"]["model"] == {"accuracy": 0.5, "n_params": 7}
    assert saved["tables"]["scores"]["IG"]["ratio"] is None and saved["claims"][0]["held"] is True
    assert R.load_results("99_test") == saved == R.load_results(path)


def test_meta_must_describe_the_run_and_rows_must_be_dicts(tmp_path, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path))
    with pytest.raises(ValueError, match="device"):
        R.save_results("99_test", {}, meta={"profile": "smoke", "data": "x", "seed": 0})
    with pytest.raises(ValueError, match="rows"):
        R.save_results("99_test", {"model": 0.5}, meta=META)


def test_another_schema_is_refused(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"models": {}, "meta": {}}))
    with pytest.raises(ValueError, match="schema"):
        R.load_results(path)


def test_claims_are_recorded_and_stop_only_a_full_run(capsys):
    smoke = R.Claims("smoke")
    smoke(1 < 2, "one is less than two")
    smoke(2 < 1, "two is less than one")  # reported, not raised
    assert smoke.records == [{"text": "one is less than two", "held": True},
                             {"text": "two is less than one", "held": False}]
    out = capsys.readouterr().out
    assert "✔ one is less than two" in out and "does not hold" in out
    full = R.Claims("full")
    full(True, "fine")
    with pytest.raises(R.ClaimError, match="two is less than one"):
        full(2 < 1, "two is less than one")
    assert [r["held"] for r in full.records] == [True, False]  # the failed claim is recorded before the stop
    yours = R.Claims("full", "my_data/labels.csv")  # the lesson's sentences were not written from a user's data
    yours(2 < 1, "two is less than one")
    assert yours.records[-1]["held"] is False
    assert "does not hold: the text was written from SynthScan, not from your data" in capsys.readouterr().out
