"""docs/references.md and the notebooks' References sections agree: every entry is cited where it says, and every
reference a notebook cites is listed."""
import json
import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "references.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SOLUTIONS = sorted((ROOT / "notebooks" / "solutions").glob("*.ipynb"))
ENTRY = re.compile(r"^\*\*(?P<key>.+?) \(?(?P<year>\d{4}|undated)\)?\*\*(?P<body>.*)Cited in: (?P<where>[^.]+)\.\s*$")


def plain(text: str) -> str:
    """Accents and line breaks removed, so that 'Spärck' matches 'Sparck'."""
    text = unicodedata.normalize("NFKD", text)
    return re.sub(r"\s+", " ", "".join(ch for ch in text if not unicodedata.combining(ch)))


def entries() -> list[dict]:
    bullets = re.split(r"\n- ", "\n" + DOC.read_text(encoding="utf-8"))[1:]
    parsed = []
    for bullet in bullets:
        bullet = re.split(r"\n\n", bullet)[0]
        m = ENTRY.match(re.sub(r"\s+", " ", bullet))
        assert m, f"docs/references.md: entry not in the form '**Name YEAR** ... Cited in: NN.': {bullet[:80]!r}"
        parsed.append({"key": plain(m["key"].replace(" et al.", "")), "year": m["year"],
                       "where": {w.strip() for w in m["where"].split(",")}})
    return parsed


def label(path: Path) -> str:
    return f"solutions {path.name[:2]}" if path.parent.name == "solutions" else path.name[:2]


def cited(path: Path) -> list[str]:
    """The bullets of the notebook's References section, accents removed."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = next(("".join(c["source"]) for c in cells if c["cell_type"] == "markdown"
                 and "## References" in "".join(c["source"])), "")
    section = text.split("## References", 1)[-1] if text else ""
    return [plain(b) for b in re.split(r"\n\* ", "\n" + section)[1:]]


def test_every_notebook_ends_with_references():
    for path in NOTEBOOKS:
        assert cited(path), f"{path.name} has no References section with bullets"


def test_every_entry_is_cited_where_it_says():
    labels = {label(p): p for p in NOTEBOOKS + SOLUTIONS}
    for entry in entries():
        assert entry["where"] <= labels.keys(), f"{entry['key']}: unknown notebooks {entry['where'] - labels.keys()}"
        for where in entry["where"]:
            assert any(entry["key"] in b and entry["year"] in b for b in cited(labels[where])), (
                f"docs/references.md says {entry['key']} {entry['year']} is cited in {where}; its References "
                "section does not cite it")


@pytest.mark.parametrize("path", NOTEBOOKS + SOLUTIONS, ids=lambda p: label(p))
def test_every_reference_a_notebook_cites_is_listed(path):
    listed = entries()
    for bullet in cited(path):
        year = re.search(r"\((\d{4}|undated)\)|\b(\d{4})\b", bullet)
        assert year, f"{path.name}: a reference without a year: {bullet[:80]!r}"
        first = year.group(1) or year.group(2)
        prefix = bullet[:year.start()]
        assert any(e["year"] == first and e["key"] in prefix and label(path) in e["where"] for e in listed), (
            f"{path.name} cites {prefix.strip()} ({first}); list it in docs/references.md, 'Cited in: {label(path)}'")
