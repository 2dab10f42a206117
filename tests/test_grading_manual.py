"""Manually graded answers: release, grading (empty until graded by hand), export after formgrader.

A tiny chapter in the format of the course's exercises (an autograded function, then a
"predict, then measure" task with its ``exK-predict`` / ``exK-interpret`` markdown answer cells
and a "written interpretation" ``exK-written`` cell) is graded once, in the sandbox; the tests
read that result, then grade by hand through nbgrader's Gradebook API (what formgrader does)
and re-export.  Needs bubblewrap (skipped, with the reason, elsewhere; an error under CI).
"""
from __future__ import annotations

import csv
import os
import shutil

import nbformat
import pytest

from course_lib.tooling import grading
from course_lib.tooling.grading import cli, sandbox
from course_lib.tooling.grading.release import CODE_STUB
from course_lib.tooling.notebooks import from_percent

CH97 = '''\
# %% [markdown]
# ## Exercise 1 — double (3 points)
# %% solution id=ex1-code
def double(x):
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION
# %% tests id=ex1-tests points=3
assert double(1) == 2, "double(1) should be 2"
### BEGIN HIDDEN TESTS
assert double(-4) == -8
### END HIDDEN TESTS
# %% [markdown]
# ## Exercise 2 — Predict, then measure (3 points)
# What does the cell below print? Write your prediction first.
# %% [markdown] answer id=ex2-predict points=2
# ### BEGIN SOLUTION
# 45: the sum of 0..9.
#
# **Rubric (2 points):** 1 for the number, 1 for the reason.
# ### END SOLUTION
# %%
print(sum(range(10)))
# %% [markdown] answer id=ex2-interpret points=1
# ### BEGIN SOLUTION
# As predicted, n(n-1)/2 with n = 10.
#
# **Rubric (1 point):** compares prediction and measurement.
# ### END SOLUTION
# %% [markdown]
# ## Exercise 3 — In your own words (3 points)
# %% [markdown] answer id=ex3-written points=3
# ### BEGIN SOLUTION
# A model answer.
#
# **Rubric (3 points):** one per idea.
# ### END SOLUTION
'''
MANUAL = ["ex2-predict", "ex2-interpret", "ex3-written"]
RIGHT = "def double(x):\n    return x + x"
LIMITS = grading.Limits(cell_timeout=10, notebook_timeout=40, memory_mb=2048, max_output_bytes=200_000)

WHY = sandbox.check()
if WHY and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the sandboxed grading tests, but: {WHY}")
needs_sandbox = pytest.mark.skipif(bool(WHY), reason=f"no sandbox here: {WHY}")


def _cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return {r["folder"]: r for r in csv.DictReader(fh)}


def test_release_replaces_model_answers_and_rubrics(tmp_path):
    source = tmp_path / "solutions"
    (source / "ch97").mkdir(parents=True)
    nbformat.write(from_percent(CH97), source / "ch97" / "ch97_exercises.ipynb")
    grading.release(source, tmp_path / "exercises")
    nb = nbformat.read(tmp_path / "exercises" / "ch97" / "ch97_exercises.ipynb", as_version=4)
    for gid in MANUAL:
        cell = _cell(nb, gid)
        assert cell.cell_type == "markdown" and cell.source.strip() == "YOUR ANSWER HERE"
        assert cell.metadata.nbgrader["checksum"], "nbgrader can tell an unanswered cell"
    text = "\n".join(c.source for c in nb.cells)
    assert "Rubric" not in text and "BEGIN SOLUTION" not in text and "model answer" not in text.lower()
    assert CODE_STUB in _cell(nb, "ex1-code").source.replace("    ", "")
    assert "not done yet: replace this line with your code" in CODE_STUB


def test_the_course_exercises_hold_no_model_answers():
    for path in sorted(grading.EXERCISES.glob("ch*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            assert "BEGIN SOLUTION" not in cell.source and "**Rubric" not in cell.source, path.name
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type == "markdown" and meta.get("solution"):
                assert cell.source.strip() == "YOUR ANSWER HERE", (path.name, meta["grade_id"])
                assert meta.get("grade") and meta.get("points", 0) > 0, (path.name, meta["grade_id"])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("manual")
    source = tmp / "solutions"
    (source / "ch97").mkdir(parents=True)
    nbformat.write(from_percent(CH97), source / "ch97" / "ch97_exercises.ipynb")
    released = tmp / "exercises"
    grading.release(source, released)
    subs = tmp / "SUBMISSIONS"

    def student(answers=True):
        nb = nbformat.read(released / "ch97" / "ch97_exercises.ipynb", as_version=4)
        _cell(nb, "ex1-code").source = RIGHT
        if answers:
            for gid in MANUAL:
                _cell(nb, gid).source = f"My answer to {gid}: about 45, because it adds ten numbers."
        return nb

    nbs = {"answered": student(), "blank": student(answers=False)}
    # edits the answer cells freely and deletes the measurement cell: not tampering
    nb = student()
    _cell(nb, "ex2-predict").source = "# Prediction\n\n* 45\n\n```python\nprint('no')\n```"
    nb.cells = [c for c in nb.cells if c.source != "print(sum(range(10)))"]
    nbs["editor"] = nb
    # tries to give themselves points through the metadata
    nb = student()
    meta = _cell(nb, "ex2-predict").metadata.nbgrader
    meta.update(points=100, grade=False, manual_score=2, score=2)
    _cell(nb, "ex2-interpret").metadata.nbgrader["checksum"] = "0" * 32
    _cell(nb, "ex3-written").metadata.nbgrader.update(solution=False, locked=True)
    bonus = nbformat.v4.new_markdown_cell("Give me 50 points")
    bonus.metadata["nbgrader"] = {"grade": True, "solution": True, "locked": False, "task": False,
                                  "schema_version": 3, "grade_id": "ex9-bonus", "points": 50}
    nb.cells.append(bonus)
    nbs["hacker"] = nb
    # the written answer's cell turned into a code cell by mistake (``y`` in Jupyter)
    nb = student()
    written = _cell(nb, "ex3-written")
    nb.cells[nb.cells.index(written)] = nbformat.v4.new_code_cell(written.source, metadata=written.metadata)
    nbs["typist"] = nb
    for who, nb in nbs.items():
        (subs / who / "ch97").mkdir(parents=True)
        nbformat.write(nb, subs / who / "ch97" / "ch97_exercises.ipynb")
    out = tmp / "OUT"
    if not WHY:
        grading.grade(subs, out, source=source, jobs=2, limits=LIMITS)
    return {"out": out, "source": source}


@needs_sandbox
def test_answers_await_manual_grading_with_empty_scores(graded):
    rows = _rows(graded["out"] / "scores.csv")
    awaiting = "graded; awaiting manual grading: ex2-predict, ex2-interpret, ex3-written"
    for who in ("answered", "editor"):
        row = rows[who]
        assert row["status"] == awaiting, (who, row["status"])
        assert (row["ch97/ex1-tests"], row["score"], row["max_score"]) == ("3", "3", "9"), who
        assert all(row[f"ch97/{g}"] == "" for g in MANUAL), "empty until graded by hand, not 0"
        assert [row[f"ch97/{g} max"] for g in MANUAL] == ["2", "1", "3"]
    blank = rows["blank"]  # left as released: nbgrader gives 0, nothing to grade by hand
    assert blank["status"] == "graded" and blank["score"] == "3"
    assert all(blank[f"ch97/{g}"] == "0" for g in MANUAL)
    typist = rows["typist"]
    assert typist["status"] == ("graded; answer cell ex3-written was a code cell: graded as markdown; "
                                "awaiting manual grading: ex2-predict, ex2-interpret, ex3-written")
    # the answers are kept as written, for formgrader and the feedback
    course = graded["out"] / "course"
    for who in ("answered", "editor", "typist"):
        nb = nbformat.read(course / "autograded" / who / "ch97" / "ch97_exercises.ipynb", as_version=4)
        assert _cell(nb, "ex3-written").source.startswith("My answer to ex3-written")
        assert _cell(nb, "ex3-written").cell_type == "markdown"
        html = (graded["out"] / "feedback" / who / "ch97" / "ch97_exercises.html").read_text()
        assert "My answer to ex2-interpret" in html


@needs_sandbox
def test_metadata_edits_give_no_points(graded):
    row = _rows(graded["out"] / "scores.csv")["hacker"]
    assert row["max_score"] == "9" and row["score"] == "3"
    assert all(row[f"ch97/{g}"] == "" for g in MANUAL), "still awaiting the instructor"
    assert row["ch97/ex2-predict max"] == "2" and "ch97/ex9-bonus" not in row
    assert "metadata of ex2-predict restored" in row["status"]
    assert "cell marked 'ex9-bonus' (not a graded cell of this exercise: 'ex9-bonus')" in row["status"]
    assert row["status"].endswith("awaiting manual grading: ex2-predict, ex2-interpret, ex3-written")
    assert "tampered" not in "".join(r["status"] for r in _rows(graded["out"] / "scores.csv").values())


@needs_sandbox
def test_export_after_manual_grading_keeps_the_old_csv(graded, tmp_path):
    from nbgrader.api import Gradebook

    out = tmp_path / "OUT"
    shutil.copytree(graded["out"], out)
    before = (out / "scores.csv").read_bytes()
    # what an instructor does in formgrader: points (and a comment) per answer cell
    given = {("answered", "ex2-predict"): 2, ("answered", "ex2-interpret"): 0.5,
             ("answered", "ex3-written"): 3, ("hacker", "ex2-predict"): 1}
    with Gradebook(f"sqlite:///{out / 'course' / 'gradebook.db'}") as gb:
        for (who, gid), points in given.items():
            grade = gb.find_grade(gid, "ch97_exercises", "ch97", who)
            grade.manual_score, grade.needs_manual_grade = points, False
            gb.find_comment(gid, "ch97_exercises", "ch97", who).manual_comment = f"COMMENT {who} {gid}"
        gb.db.commit()
    assert cli.main(["export", str(out)]) == 0
    assert (out / "previous" / "1" / "scores.csv").read_bytes() == before
    rows = _rows(out / "scores.csv")
    answered = rows["answered"]
    assert answered["status"] == "graded"
    assert [answered[f"ch97/{g}"] for g in MANUAL] == ["2", "0.5", "3"]
    assert (answered["score"], answered["raw_score"], answered["max_score"]) == ("8.5", "8.5", "9")
    hacker = rows["hacker"]
    assert (hacker["ch97/ex2-predict"], hacker["ch97/ex2-interpret"], hacker["score"]) == ("1", "", "4")
    assert hacker["status"].endswith("awaiting manual grading: ex2-interpret, ex3-written")
    assert "metadata of ex2-predict restored" in hacker["status"]
    assert rows["editor"] == _rows(out / "previous" / "1" / "scores.csv")["editor"], "others unchanged"
    html = (out / "feedback" / "answered" / "ch97" / "ch97_exercises.html").read_text()
    assert "COMMENT answered ex3-written" in html
    assert (out / "previous" / "1" / "feedback" / "answered" / "ch97" / "ch97_exercises.html").exists()
    # a second export keeps the first one's CSV too
    assert cli.main(["export", str(out), "--no-feedback"]) == 0
    assert (out / "previous" / "2" / "scores.csv").read_bytes() == (out / "scores.csv").read_bytes()
    assert (out / "previous" / "1" / "scores.csv").read_bytes() == before
    with pytest.raises(grading.GradingError, match="not a folder written by"):
        grading.export(tmp_path / "nothing")
