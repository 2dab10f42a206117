"""The exercise pipeline: release (solutions -> exercises), the up-to-date check, grading."""
import csv
import json
from pathlib import Path

import nbformat
import pytest

from course_lib import grading
from course_lib.notebooks import from_percent, to_percent

ROOT = Path(__file__).resolve().parent.parent

# A one-exercise chapter in the course's authoring format: a function to write, a visible
# self-check and a hidden test.
TINY = '''\
# %% [markdown]
# Write `double(x)`.
# %% solution id=double-code
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
# %% tests id=double-tests points=3
assert double(1) == 2, "double(1) should be 2"
### BEGIN HIDDEN TESTS
assert double(-4) == -8
### END HIDDEN TESTS
'''


@pytest.fixture
def course(tmp_path):
    source = tmp_path / "solutions"
    (source / "ch99").mkdir(parents=True)
    nbformat.write(from_percent(TINY), source / "ch99" / "ch99_exercises.ipynb")
    return source


def _code(nb_path):
    return "\n".join(c.source for c in nbformat.read(nb_path, as_version=4).cells
                     if c.cell_type == "code")


def test_release_strips_solutions_and_hidden_tests_keeps_self_checks(course, tmp_path):
    target = tmp_path / "exercises"
    assert grading.release(course, target) == ["ch99"]
    code = _code(target / "ch99" / "ch99_exercises.ipynb")
    assert "return 2 * x" not in code and "double(-4)" not in code
    assert "raise NotImplementedError()" in code
    assert 'assert double(1) == 2' in code
    assert grading.stale_exercises(course, target) == []
    # editing the source makes the generated version stale, and the check says which file
    nb_path = course / "ch99" / "ch99_exercises.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[0].source = "Write `double(x)` carefully."
    nbformat.write(nb, nb_path)
    assert grading.stale_exercises(course, target) == ["out of date: ch99/ch99_exercises.ipynb"]


def _submit(root, student, nb=None, raw=None):
    folder = root / student / "ch99"
    folder.mkdir(parents=True)
    if raw is not None:
        (folder / "ch99_exercises.ipynb").write_text(raw)
    else:
        nbformat.write(nb, folder / "ch99_exercises.ipynb")


def test_grade_writes_scores_and_feedback(course, tmp_path):
    released = tmp_path / "exercises"
    grading.release(course, released)
    student_nb = nbformat.read(released / "ch99" / "ch99_exercises.ipynb", as_version=4)
    subs = tmp_path / "submitted"
    right = nbformat.read(released / "ch99" / "ch99_exercises.ipynb", as_version=4)
    right.cells[1].source = "def double(x):\n    return x + x"
    wrong = nbformat.read(released / "ch99" / "ch99_exercises.ipynb", as_version=4)
    wrong.cells[1].source = "def double(x):\n    return 2 * x if x > 0 else 0"  # fails hidden test
    _submit(subs, "alice", right)
    _submit(subs, "bob", wrong)
    _submit(subs, "carol", student_nb)                      # handed in the stub
    _submit(subs, "dave", raw="{ this is not json")          # malformed file
    out = tmp_path / "grades"
    scores = grading.grade(subs, out, source=course)
    rows = {r["student"]: r for r in csv.DictReader(open(scores))}
    assert float(rows["alice"]["score"]) == 3.0 and float(rows["alice"]["max_score"]) == 3.0
    assert float(rows["bob"]["score"]) == 0.0 and rows["bob"]["status"] == "graded"
    assert float(rows["carol"]["score"]) == 0.0
    assert rows["dave"]["status"].startswith("not graded: ch99_exercises.ipynb is not a valid")
    assert (out / "feedback" / "alice" / "ch99" / "ch99_exercises.html").exists()
    # a second run refuses to overwrite the grades it wrote
    with pytest.raises(grading.GradingError, match="not empty"):
        grading.grade(subs, out, source=course)


def test_grade_reports_bad_layout(course, tmp_path):
    with pytest.raises(grading.GradingError, match="submissions folder not found"):
        grading.collect_submissions(tmp_path / "nowhere", course)
    subs = tmp_path / "submitted"
    (subs / "erin" / "ch42").mkdir(parents=True)
    (subs / "frank").mkdir(parents=True)
    found = {s.student: s.problem for s in grading.collect_submissions(subs, course)}
    assert found["erin"].startswith("unknown chapter 'ch42'")
    assert found["frank"].startswith("no chapter folder")


def test_percent_format_round_trip_and_errors():
    nb = from_percent(TINY)
    assert [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells] == [
        None, "double-code", "double-tests"]
    assert nb.cells[2].metadata.nbgrader.points == 3.0
    assert to_percent(from_percent(to_percent(nb))) == to_percent(nb)
    with pytest.raises(ValueError, match="needs points"):
        from_percent("# %% tests id=t\nassert True\n")
    with pytest.raises(ValueError, match="Duplicate grade id"):
        from_percent("# %% solution id=a\nx=1\n# %% solution id=a\ny=1\n")


def test_exercises_folder_is_up_to_date():
    """exercises/ must be exactly what `make exercises` generates from solutions/."""
    problems = grading.stale_exercises()
    assert problems == [], "run `make exercises`:\n" + "\n".join(problems)


def test_every_chapter_has_graded_exercises_and_student_versions():
    chapters = sorted(p.stem[:2] for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    for num in chapters:
        if num == "00":
            continue
        nbs = list((ROOT / "solutions" / f"ch{num}").glob("*.ipynb"))
        assert nbs, f"chapter {num} has no exercises in solutions/ch{num}/"
        meta = [c.metadata.get("nbgrader", {}) for nb in nbs
                for c in nbformat.read(nb, as_version=4).cells]
        assert any(m.get("grade") and m.get("points", 0) > 0 for m in meta), num
        for nb in nbs:
            student = ROOT / "exercises" / f"ch{num}" / nb.name
            text = student.read_text()
            assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
            assert "NotImplementedError" in text
