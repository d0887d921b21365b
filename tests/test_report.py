"""The run report shows every results file the same way: tables, claims, tagged figures and timings."""
import json

from visfuse_utils import report, results

META = {"profile": "full", "data": "synthscan", "seed": 0, "device": "cpu"}


def test_report_from_a_fake_run(tmp_path, monkeypatch):
    monkeypatch.setenv("VISFUSE_BUILD", str(tmp_path))
    results.save_results("04_fusion", {"concat fusion": {"accuracy": 0.93, "n_params": 10},
                                       "CNN (image only)": {"accuracy": 0.55}}, meta=META,
                         claims=[{"text": "fusion beats both unimodal models", "held": True}])
    results.save_results("05_interpretability", {"explained model": {"accuracy": 0.97}}, meta=META,
                         tables={"attribution scores": {"IG (black)": {"mask_mass": 0.616, "chance": 0.069}}})
    results.save_results("06_language_queries", {}, meta=META,
                         tables={"retrieval": {"contrastive": {"t2i_R@10": 0.573, "t2i_median_rank": 8.0}}})
    (tmp_path / "notebooks").mkdir()
    png = "iVBORw0KGgo="  # any base64 payload: the report embeds, it does not decode
    nb = {"metadata": {"papermill": {"duration": 12.5}}, "cells": [
        {"cell_type": "code", "metadata": {"tags": ["report"]}, "outputs": [{"output_type": "display_data",
                                                                             "data": {"image/png": png}}]},
        {"cell_type": "code", "metadata": {},
         "outputs": [{"output_type": "display_data", "data": {"image/png": "X"}}]}]}
    (tmp_path / "notebooks" / "04_fusion.ipynb").write_text(json.dumps(nb))
    out = report.build_report(tmp_path)
    page = out.read_text()
    assert out == tmp_path / "report.html"
    assert "concat fusion" in page and "0.930" in page
    assert "t2i_R@10" in page and "0.573" in page  # notebook 06's retrieval metrics
    assert "mask_mass" in page and "0.616" in page  # notebook 05's attribution scores
    assert "held: fusion beats both unimodal models" in page
    assert page.count(png) == 1 and "base64,X'" not in page  # only the tagged figure
    assert "<td>04_fusion</td><td>12</td><td>0</td>" in page  # 12.5 s, rounded
    assert page.count("data:image/png;base64,") == 2  # the comparison chart and the tagged figure
    assert "explained model (05)" not in page  # chart labels are inside the PNG, not the page
    assert ">full<" in page and ">cpu<" in page
