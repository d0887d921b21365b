"""The run report gathers results, tagged figures and timings into one HTML page."""
import json

from visfuse_utils import report


def test_report_from_a_fake_run(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "results" / "04_fusion.json").write_text(json.dumps({
        "models": {"concat fusion": {"accuracy": 0.93, "n_params": 10}, "CNN (image only)": {"accuracy": 0.55}},
        "meta": {"profile": "full", "device": "cpu"}}))
    png = "iVBORw0KGgo="  # any base64 payload: the report embeds, it does not decode
    nb = {"metadata": {"papermill": {"duration": 12.5}}, "cells": [
        {"cell_type": "code", "metadata": {"tags": ["report"]}, "outputs": [{"output_type": "display_data",
                                                                             "data": {"image/png": png}}]},
        {"cell_type": "code", "metadata": {}, "outputs": [{"output_type": "display_data", "data": {"image/png": "X"}}]}]}
    (tmp_path / "notebooks" / "04_fusion.ipynb").write_text(json.dumps(nb))
    out = report.build_report(tmp_path)
    page = out.read_text()
    assert out == tmp_path / "report.html"
    assert "concat fusion" in page and "0.930" in page
    assert page.count(png) == 1 and "base64,X'" not in page  # only the tagged figure
    assert "<td>04_fusion</td><td>12</td><td>0</td>" in page  # 12.5 s, rounded
    assert page.count("data:image/png;base64,") == 2  # the comparison chart and the tagged figure
    assert ">full<" in page and ">cpu<" in page
