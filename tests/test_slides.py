"""`make slides`: a deck per notebook, built from the committed outputs, with its key figures on the slides.

The browser check (`tests/make_slides.py build/slides --check`, headless Chromium) needs reveal.js installed offline
and is run by hand (docs/teaching.md); this test checks what the decks contain.
"""
import re
import shutil
from pathlib import Path

import pytest

import make_slides

ROOT = Path(__file__).resolve().parent.parent
MAIN = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    return make_slides.build(tmp_path_factory.mktemp("slides"))


def test_one_deck_per_notebook_with_its_figures_and_no_skipped_code(decks):
    assert [d.name for d in decks] == [f"{p.stem}.slides.html" for p in MAIN]
    for deck in decks:
        html = deck.read_text(encoding="utf-8")
        assert "Reveal.initialize" in html, deck.name
        assert len(re.findall(r'<img[^>]*\ssrc="data:image/png', html)) >= 2, f"{deck.name}: its figures are missing"
        assert "import visfuse_utils" not in html, f"{deck.name}: the imports cell reached a slide"


def test_offline_decks_point_at_the_local_copies(tmp_path, monkeypatch):
    modules = tmp_path / "node_modules"
    for need in ("reveal.js/dist/reveal.js", "requirejs/require.js", "mathjax/MathJax.js"):
        (modules / need).parent.mkdir(parents=True, exist_ok=True)
        (modules / need).write_text("")
    monkeypatch.setenv("SLIDES_OFFLINE", str(modules))
    html = make_slides.build(tmp_path / "out", MAIN[:1])[0].read_text(encoding="utf-8")
    assert "../node_modules/reveal.js/dist/reveal.js" in html and "../node_modules/requirejs/require.js" in html
    shutil.rmtree(modules / "mathjax")
    with pytest.raises(SystemExit, match="mathjax/MathJax.js is missing"):
        make_slides.build(tmp_path / "out", MAIN[:1])
