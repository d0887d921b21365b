"""The student twins: generated, never edited; every TODO raises until filled; the check cells tell right from wrong."""
import json
import types
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from nbclient import NotebookClient

from visfuse_utils import teaching

import student_twins

ROOT = Path(__file__).resolve().parent.parent
MAIN = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted((ROOT / "notebooks" / "student").glob("*.ipynb"))


def cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_every_main_notebook_has_a_twin_with_two_to_four_cells_to_write():
    assert [p.name for p in TWINS] == [p.name for p in MAIN]
    for path in TWINS:
        todo = [c for c in cells(path) if "student" in c.get("metadata", {}).get("tags", [])]
        assert 2 <= len(todo) <= 4, f"{path.name}: {len(todo)} cells to write"
        first = "".join(cells(path)[0]["source"])
        assert f"notebooks/student/{path.name}" in first, "the Colab badge opens the twin"
        shown = [c for c in cells(path) if c["cell_type"] == "code" and c["outputs"]]
        assert not shown, "a twin ships without outputs: its predict-first questions come before the results"


def test_the_committed_twins_are_what_the_script_writes(tmp_path):
    written = student_twins.main(tmp_path)
    assert [p.name for p in written] == [p.name for p in TWINS]
    for new in written:
        committed = ROOT / "notebooks" / "student" / new.name
        assert new.read_text() == committed.read_text(), f"{new.name} drifted: run `make twins` and commit the result"


@pytest.mark.parametrize("path", TWINS, ids=lambda p: p.name)
def test_every_cell_to_write_raises_until_filled(path):
    """Each function a student must write raises NotImplementedError, whatever its arguments; no solution is left."""
    for cell in cells(path):
        if "student" not in cell.get("metadata", {}).get("tags", []):
            continue
        source = "".join(cell["source"])
        assert "NotImplementedError" in source and "BEGIN SOLUTION" not in source and "END SOLUTION" not in source
        namespace = {"np": np, "torch": torch, "F": torch.nn.functional, "nn": torch.nn}
        exec(compile(source, f"{path.name}:student", "exec"), namespace)
        functions = [v for k, v in namespace.items() if isinstance(v, types.FunctionType) and not k.startswith("_")]
        assert functions, "a cell to write defines the function the student writes"
        for fn in functions:
            with pytest.raises(NotImplementedError):
                fn(*([None] * fn.__code__.co_argcount))


def filled(path):
    """The twin with each cell to write filled by the course notebook's own code (matched by cell id)."""
    reference = {c["id"]: c["source"] for c in cells(ROOT / "notebooks" / path.name)}
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if "student" in cell.get("metadata", {}).get("tags", []):
            cell["source"] = reference[cell["id"]]
    return nbformat.reads(json.dumps(nb), as_version=4)


@pytest.mark.parametrize("path", TWINS, ids=lambda p: p.name)
def test_a_twin_filled_with_the_reference_runs_to_the_end_and_every_check_agrees(path):
    """The smoke profile (conftest) runs the whole twin; each check cell must accept the reference code."""
    nb = filled(path)
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    calls = sum("".join(c["source"]).count("teaching.check(") for c in nb.cells if c.cell_type == "code")
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert calls >= 2 and printed.count("✔ Your function agrees") == calls, printed[-2000:]


def test_strip_solutions_keeps_the_frame_and_says_what_to_write():
    source = ("def dice(p, g):\n    \"\"\"Dice.\"\"\"\n    # BEGIN SOLUTION: 2|P and G| / (|P| + |G|)\n"
              "    inter = (p & g).sum()\n    return 2 * inter / (p.sum() + g.sum())\n    # END SOLUTION\n")
    out = student_twins.strip_solutions(source)
    assert out == 'def dice(p, g):\n    """Dice."""\n    raise NotImplementedError("2|P and G| / (|P| + |G|)")\n'
    with pytest.raises(ValueError, match="without END"):
        student_twins.strip_solutions("# BEGIN SOLUTION: x\ny = 1\n")


def test_check_accepts_the_reference_and_shows_a_wrong_answer(capsys):
    make = lambda rng: (torch.from_numpy(rng.normal(size=(4, 3))),)
    teaching.check(lambda z: torch.softmax(z, 1), lambda z: torch.softmax(z, 1), make, seed=0)
    assert "✔" in capsys.readouterr().out
    teaching.check(lambda z: torch.softmax(z, 0), lambda z: torch.softmax(z, 1), make, seed=0)
    out = capsys.readouterr().out
    assert "disagrees" in out and "expected" in out and "✔" not in out

    def todo(z):
        raise NotImplementedError("write me")

    teaching.check(todo, lambda z: z, make)
    assert "Not written yet" in capsys.readouterr().out
