"""``make twins``: write the student versions of notebooks 01-06 into ``notebooks/student/``.

A main notebook marks the student's parts: in a code cell tagged ``student``, the lines between
``# BEGIN SOLUTION: <what to write>`` and ``# END SOLUTION`` become ``raise NotImplementedError("<what to write>")``
(at the block's indentation); the cell after it calls ``teaching.check`` and tells the student whether their version
agrees with the reference on fresh inputs. A cell whose metadata holds ``"predict": "..."`` gets that question before
it, as a markdown cell, in the twin only. Outputs are dropped, the title says "student version", and the Colab badge
points at the twin. Never edit the twins by hand: ``tests/test_student_twins.py`` checks they equal what this writes.
"""
from __future__ import annotations

import copy
import json
import re
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = re.compile(r"^(?P<indent>\s*)# BEGIN SOLUTION: (?P<hint>.+)$")
END = re.compile(r"^\s*# END SOLUTION\s*$")
LINE = 120  # ruff's line length (pyproject.toml)
INTRO = ("*Student version.* Cells marked ✍ are yours to write: replace the `raise NotImplementedError(...)` with "
         "your code, then run the check cell after it. Questions marked 🤔 ask for a prediction: write it down "
         "before running the cells below them. The cells come without outputs, so that your predictions come before "
         "the results; the course notebook `{name}` holds the worked version with its outputs.")


def strip_solutions(source: str) -> str:
    """The cell's source with each solution block replaced by a ``raise NotImplementedError`` saying what to write."""
    out, inside = [], False
    for line in source.splitlines():
        begin = BEGIN.match(line)
        if begin:
            if inside:
                raise ValueError(f"nested BEGIN SOLUTION: {line!r}")
            inside = True
            hint, indent = begin["hint"].strip().replace('"', "'"), begin["indent"]
            line = f'{indent}raise NotImplementedError("{hint}")'
            if len(line) <= LINE:
                out.append(line)
            else:  # adjacent string literals, so that the twin passes the line-length lint
                chunks = textwrap.wrap(hint, LINE - len(indent) - 8, drop_whitespace=False)
                out += [f"{indent}raise NotImplementedError("] + [f'{indent}    "{c}"' for c in chunks] + [f"{indent})"]
        elif END.match(line):
            if not inside:
                raise ValueError("END SOLUTION without BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("BEGIN SOLUTION without END SOLUTION")
    return "\n".join(out) + ("\n" if source.endswith("\n") else "")


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def twin(notebook: dict, name: str) -> dict:
    """The student version of one notebook (a dict in nbformat 4)."""
    nb = copy.deepcopy(notebook)
    nb["metadata"].pop("papermill", None)
    cells = []
    for k, cell in enumerate(nb["cells"]):
        cell.setdefault("metadata", {})
        tags = cell["metadata"].get("tags", [])
        question = cell["metadata"].pop("predict", None)
        if question:
            cells.append({"cell_type": "markdown", "id": f"{cell.get('id', k)}-q"[:64], "metadata": {},
                          "source": _lines(f"🤔 **Predict first.** {question}")})
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            for key in ("execution", "papermill"):
                cell["metadata"].pop(key, None)
            if "student" in tags:
                cell["source"] = _lines("# ✍ Yours to write.\n" + strip_solutions("".join(cell["source"])))
        cells.append(cell)
    first = "".join(cells[0]["source"])
    first = re.sub(r"^(# .+)$", r"\1 (student version)", first, count=1, flags=re.M)
    first = first.replace(f"blob/main/notebooks/{name}", f"blob/main/notebooks/student/{name}")
    cells[0]["source"] = _lines(first)
    cells.insert(1, {"cell_type": "markdown", "id": "student-intro", "metadata": {},
                     "source": _lines(INTRO.format(name=f"notebooks/{name}"))})
    nb["cells"] = cells
    return nb


def main(out_dir: Path = ROOT / "notebooks" / "student") -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        if not any("student" in c.get("metadata", {}).get("tags", []) for c in nb["cells"]):
            continue
        target = out_dir / path.name
        target.write_text(json.dumps(twin(nb, path.name), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


if __name__ == "__main__":
    for p in main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "notebooks" / "student"):
        print("wrote", p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
