"""Test-wide settings: the smoke profile, a separate build folder, and no hub downloads."""
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("VISFUSE_PROFILE", "smoke")
os.environ.setdefault("VISFUSE_BUILD", str(ROOT / "build" / "test"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

# The student twins stop at their cells to write; tests/test_student_twins.py fills and runs them instead.
collect_ignore = ["notebooks/student"]
