"""A real chapter graded end to end in the sandbox: its solution, its blank exercise, a partial one.

Chapter 6 (one of the quickest to run).  The judge replays the student's values against the
chapter's real hidden tests, so this checks that honest work keeps its points under the
tamper-resistant checks, not only the tiny fixture chapter of test_grading_attacks.py.
"""
import csv
import os

import nbformat
import pytest

from course_lib.tooling import grading
from course_lib.tooling.grading import sandbox

CHAPTER, NOTEBOOK = "ch06", "ch06_exercises.ipynb"
WHY = sandbox.check()
if WHY and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the sandboxed grading tests, but: {WHY}")


@pytest.mark.skipif(bool(WHY), reason=f"no sandbox here: {WHY}")
def test_real_chapter_solution_blank_and_partial(tmp_path):
    subs = tmp_path / "subs"
    solution = nbformat.read(grading.SOLUTIONS / CHAPTER / NOTEBOOK, as_version=4)
    blank = nbformat.read(grading.EXERCISES / CHAPTER / NOTEBOOK, as_version=4)
    partial = nbformat.read(grading.SOLUTIONS / CHAPTER / NOTEBOOK, as_version=4)
    first = next(i for i, c in enumerate(partial.cells) if c.metadata.get("nbgrader", {}).get("solution"))
    partial.cells[first] = blank.cells[first]          # exercise 1 handed in as the stub
    for who, nb in (("solution", solution), ("blank", blank), ("partial", partial)):
        (subs / who / CHAPTER).mkdir(parents=True)
        nbformat.write(nb, subs / who / CHAPTER / NOTEBOOK)
    scores = grading.grade(subs, tmp_path / "out", jobs=2,
                           limits=grading.Limits(cell_timeout=120, notebook_timeout=300))
    rows = {r["folder"]: r for r in csv.DictReader(open(scores, encoding="utf-8"))}
    # 10 autograded points, and 7 for the written answers (ex4-predict, ex4-interpret,
    # ex5-written), graded by hand: empty until then, or 0 when left as released
    manual = ["ex4-predict", "ex4-interpret", "ex5-written"]
    assert (rows["solution"]["score"], rows["solution"]["max_score"]) == ("10", "17")
    # (the solution notebook carries the hidden tests: its test cells are "restored" too)
    assert rows["solution"]["status"].endswith("; awaiting manual grading: " + ", ".join(manual))
    assert all(rows["solution"][f"{CHAPTER}/{g}"] == "" for g in manual)
    assert rows["blank"]["score"] == "0" and rows["blank"]["status"] == "graded"
    assert all(rows["blank"][f"{CHAPTER}/{g}"] == "0" for g in manual)
    assert rows["partial"]["score"] == "7"
    assert rows["partial"][f"{CHAPTER}/ex1-tests"] == "0" and rows["partial"][f"{CHAPTER}/ex2-tests"] == "3"
