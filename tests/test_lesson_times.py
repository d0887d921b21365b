"""docs/teaching.md's table of times and each notebook's time sentence agree with the notebooks and the measured run."""
import json

import pytest

import lesson_times

STORE = json.loads(lesson_times.STORE.read_text()) if lesson_times.STORE.exists() else {}


def test_the_times_were_measured_for_every_section_of_the_current_notebooks():
    for path in lesson_times.notebooks():
        for label in ("cold", "warm"):
            assert lesson_times.section_seconds(path, STORE, label) is not None, (
                f"{path.name}: no {label} times for its current cells; `make run` then `make times RUN={label}`")


def test_the_table_in_teaching_md_is_the_one_computed_now():
    doc = lesson_times.DOC.read_text(encoding="utf-8")
    shown = doc.split(lesson_times.BEGIN, 1)[1].split(lesson_times.END, 1)[0].strip()
    assert shown == lesson_times.table(STORE), "run `python tests/lesson_times.py` (make publish does)"


@pytest.mark.parametrize("path", lesson_times.notebooks(), ids=lambda p: p.name)
def test_each_notebook_header_states_the_measured_times(path):
    first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
    assert lesson_times.time_line(path, STORE) in first, "run `python tests/lesson_times.py` (make publish does)"


def test_reading_time_counts_prose_and_code():
    section = {"words": 240, "code_lines": 20}
    expected = 240 / lesson_times.WORDS_PER_MIN + 20 / lesson_times.CODE_LINES_PER_MIN
    assert lesson_times.reading_minutes(section) == expected
    assert lesson_times.run_minutes(30) == "under a minute" and lesson_times.run_minutes(150) == "about 2 minutes"
