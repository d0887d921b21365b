"""Tidy executed notebooks before they are committed (``make publish``).

Drops volatile papermill metadata, and fails if an output shows an error, a claim that did not
hold or a machine path, so what readers see on GitHub is clean and reproducible.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

MACHINE_PATH = re.compile(r"/(work|tmp|root|home|Users|content)/[\w.-]+/")


def clean(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = []
    nb["metadata"].pop("papermill", None)
    for cell in nb["cells"]:
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{path}: error output {out.get('ename')}")
            shown = "".join(out.get("data", {}).get("text/markdown", ""))
            if shown.startswith("✘"):
                problems.append(f"{path}: a claim did not hold: {shown[:120]}")
            text = json.dumps(out.get("text", "")) + json.dumps(out.get("data", {}).get("text/plain", ""))
            text += json.dumps(out.get("data", {}).get("text/html", ""))
            if MACHINE_PATH.search(text):
                problems.append(f"{path}: an output shows a machine path: {MACHINE_PATH.search(text).group(0)}")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return problems


if __name__ == "__main__":
    issues = [p for arg in sys.argv[1:] for p in clean(Path(arg))]
    for line in issues:
        print(line)
    sys.exit(1 if issues else 0)
