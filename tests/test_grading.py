"""The exercise pipeline: release (solutions -> exercises), the up-to-date check, grading."""
from pathlib import Path

import nbformat
import pytest

from course_lib.tooling import grading
from course_lib.tooling.grading import cli as _cli  # noqa: F401 - grading.cli in the tests
from course_lib.tooling.notebooks import from_percent, to_percent

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
    assert 'raise NotImplementedError("not done yet: replace this line with your code' in code
    assert 'assert double(1) == 2' in code
    assert grading.stale_exercises(course, target) == []
    # editing the source makes the generated version stale, and the check says which file
    nb_path = course / "ch99" / "ch99_exercises.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[0].source = "Write `double(x)` carefully."
    nbformat.write(nb, nb_path)
    assert grading.stale_exercises(course, target) == ["out of date: ch99/ch99_exercises.ipynb"]


# Grading itself (honest work, every attack of issue 9, the sandbox) is tested on a class of
# submissions in tests/test_grading_attacks.py; a real chapter end to end in
# tests/test_grading_chapter.py.


def test_grade_reports_bad_layout(course, tmp_path):
    with pytest.raises(grading.GradingError, match="submissions folder not found"):
        grading.collect_submissions(tmp_path / "nowhere", course)
    subs = tmp_path / "submitted"
    (subs / "erin" / "ch42").mkdir(parents=True)
    (subs / "frank").mkdir(parents=True)
    found = {s.student: s.problem for s in grading.collect_submissions(subs, course)}
    assert found["erin"].startswith("unknown chapter 'ch42'")
    assert found["frank"].startswith("no chapter folder")
    # with a chapter expected, frank gets a row for it; a roster adds students without folders
    (subs / "erin" / "ch99").mkdir()
    found = {(s.student, s.assignment): s.problem
             for s in grading.collect_submissions(subs, course, roster=["erin", "frank", "gina"])}
    assert found[("frank", "ch99")] == found[("gina", "ch99")] == "not submitted"
    assert found[("erin", "ch99")] == ""
    with pytest.raises(grading.GradingError, match="unknown chapter"):
        grading.collect_submissions(subs, course, chapters=["ch07"])


def test_grade_refuses_bad_arguments(course, tmp_path):
    subs = tmp_path / "subs"
    (subs / "a" / "ch99").mkdir(parents=True)
    with pytest.raises(grading.GradingError, match="choose an output folder"):
        grading.grade(subs, Path(""), source=course)
    with pytest.raises(grading.GradingError, match="must be outside SUBMISSIONS"):
        grading.grade(subs, subs / "out", source=course)
    (tmp_path / "file").write_text("x")
    with pytest.raises(grading.GradingError, match="is a file"):
        grading.grade(subs, tmp_path / "file", source=course)
    # the command line: SUBMISSIONS is required, and an empty one is refused (not `.`)
    assert grading.cli.main(["grade", "", "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit):
        grading.cli.main(["grade", "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit):
        grading.cli.main(["grade", str(subs), "--out", str(tmp_path / "o"), "--cell-timeout", "0"])


def test_no_sandbox_means_no_grading_unless_asked(course, tmp_path, monkeypatch):
    from course_lib.tooling.grading import sandbox
    monkeypatch.setattr(sandbox, "check", lambda: "bubblewrap (bwrap) is not installed")
    subs = tmp_path / "subs"
    (subs / "a" / "ch99").mkdir(parents=True)
    with pytest.raises(grading.GradingError, match="no sandbox for student code: bubblewrap.*--no-sandbox"):
        grading.grade(subs, tmp_path / "out", source=course)
    assert not (tmp_path / "out").exists()


def test_student_ids_are_literal_and_safe():
    assert grading.student_id("alice_1") == "alice_1"
    weird = grading.student_id("Smith, J [42]")
    assert weird.startswith("Smith_J_42-") and "[" not in weird
    nfc, nfd = "Zo\u00eb", "Zoe\u0308"
    assert grading.student_id(nfc) != grading.student_id(nfd)
    assert grading.student_id(".x").startswith("x-")


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


def test_grading_without_the_sandbox_when_asked(course, tmp_path):
    """--no-sandbox: the same pipeline (judge included) with the instructor's rights."""
    released = tmp_path / "exercises"
    grading.release(course, released)
    subs = tmp_path / "subs"
    for who, code in (("right", "def double(x):\n    return x + x"),
                      ("cheat", "class F(int):\n    def __eq__(self, o):\n        return True\n"
                                "def double(x):\n    return F(0)")):
        nb = nbformat.read(released / "ch99" / "ch99_exercises.ipynb", as_version=4)
        nb.cells[1].source = code
        (subs / who / "ch99").mkdir(parents=True)
        nbformat.write(nb, subs / who / "ch99" / "ch99_exercises.ipynb")
    scores = grading.grade(subs, tmp_path / "out", source=course, no_sandbox=True, jobs=2,
                           limits=grading.Limits(cell_timeout=30, notebook_timeout=60))
    import csv
    rows = {r["folder"]: r for r in csv.DictReader(open(scores, encoding="utf-8"))}
    assert (rows["right"]["score"], rows["cheat"]["score"]) == ("3", "0")
