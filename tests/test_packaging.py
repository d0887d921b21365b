"""environment.yml and pyproject.toml list the same packages with the same ranges; torch is never pinned."""
import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parent.parent


def _pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"]) | set(project["optional-dependencies"]["dev"])


def _environment():
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    specs = [line.strip()[2:].strip() for line in lines[start + 1:] if line.strip().startswith("- ")]
    return {s for s in specs if s != "-e ."}


def test_same_packages_and_ranges():
    assert _pyproject() == _environment()


def test_no_exact_pins():
    for spec in _pyproject():
        assert "==" not in spec, f"{spec}: use a range so Colab keeps its preinstalled stack"
        assert re.match(r"^[A-Za-z0-9_.-]+(\[.*\])?\s*(>=|~=|<|<=|>|!=)", spec), f"{spec} has no version range"
