"""Exercises: release student versions from ``solutions/`` and grade a class safely, with nbgrader.

``solutions/chNN/*.ipynb`` is the single source of every exercise.  Its cells carry nbgrader
metadata (write them with the percent format of :mod:`course_lib.tooling.notebooks`):

* solution cells: the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  ``raise NotImplementedError()`` in the student version;
* test cells: plain ``assert`` lines stay in the student version as self-checks, the lines
  between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed and only run
  when the instructor grades.

* answer cells (markdown, ``grade`` and ``solution``; ids ``exK-predict``, ``exK-interpret``,
  ``exK-written``): the model answer and its rubric between ``### BEGIN SOLUTION`` and
  ``### END SOLUTION`` become ``YOUR ANSWER HERE``; graded by hand (formgrader).

Commands: ``python -m course_lib.tooling.grading release | check | grade | export`` (see ``--help``).

How grading works (design)
--------------------------
*Isolation.*  Every (student, chapter) is one job (:mod:`.job`), in its own process and its own
private copy of an nbgrader course with its own gradebook; jobs run in parallel (``-j N``).
Whatever a notebook does, it can only change its own row.  At the end the jobs' gradebooks are
merged into one nbgrader course kept in ``OUT/course`` (formgrader, ``nbgrader export``).

*Repair.*  Before running, the submission's graded cells are put right from the instructor's
copy (:func:`.notebook.repair`): test cells restored wherever they were edited, moved, renamed,
duplicated or deleted; answer cells keep the student's code or text under the instructor's
metadata (so a student cannot change their points or mark an answer as graded).

*Manual grading.*  Written answers are not run and not judged: the CSV leaves their points
empty and the status lists them ("awaiting manual grading: ex5-predict, …") until an instructor
grades them in formgrader (``OUT/course``); :func:`.grade.export` then rewrites the CSV and the
feedback from the gradebook, keeping the previous ones in ``OUT/previous/N/``.

*Sandbox* (:mod:`.sandbox`).  The student's notebook runs in a Jupyter kernel inside bubblewrap,
as ``nobody``, without network, with a read-only view of the Python environment and
``course_lib`` only, a private ``/tmp``, and limits on memory, CPU time, wall time per cell and
per notebook, file size, processes and output bytes.  No sandbox, no grading, unless the
instructor passes ``--no-sandbox`` knowingly.

*Tamper-resistant checks* (:mod:`.recorder`, :mod:`.judge`, :mod:`.codec`).  The test code
runs twice.  In the student's kernel the answers' results are recorded, call by call, as plain
data; then a *judge*, a fresh interpreter in a second sandbox that never runs student code,
runs the instructor's cells again with the answer functions replaced by replays of those
records, and its verdict alone decides the points.  Patching ``np.allclose`` or
``AssertionError``, ``str``/``float`` subclasses, input transformers, ``sys.modules`` edits or
forged records in the student's process cannot pass a test: the judge only sees values, decoded
into exact built-in, numpy and torch types, and checks them with its own, untouched libraries.
A warning never costs points (stderr in a test cell is ordinary text; only the judge's verdict
counts).  Limitation: the exercises' answers must be functions that return such values (or such
values themselves); side effects are replayed only on their arguments (tensors, arrays,
generators, lists, dicts), on the global random generators and through callback arguments.
"""
from .grade import Submission, collect_submissions, export, grade, student_id
from .release import (EXERCISES, ROOT, SOLUTIONS, GradingError, assignments, release,
                      stale_exercises)
from .sandbox import Limits

__all__ = ["EXERCISES", "ROOT", "SOLUTIONS", "GradingError", "Limits", "Submission", "assignments",
           "collect_submissions", "export", "grade", "release", "stale_exercises", "student_id"]
