"""Exercises: release student versions from ``solutions/`` and grade submissions, with nbgrader.

``solutions/chNN/*.ipynb`` is the single source of every exercise.  Its cells carry nbgrader
metadata (write them with the percent format of :mod:`course_lib.notebooks`):

* solution cells: the code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  ``raise NotImplementedError()`` in the student version;
* test cells: plain ``assert`` lines stay in the student version as self-checks, the lines
  between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed and only run
  when the instructor grades.

Commands (``python -m course_lib.grading ...``; the Makefile wraps the first and the last)::

    release [chNN ...]       regenerate exercises/ from solutions/ (default: all chapters)
    check                    exit 1 if exercises/ is not what `release` would write
    grade SUBMISSIONS --out DIR [--force]
                             autograde SUBMISSIONS/<student>/<chNN>/<notebook>.ipynb and write
                             DIR/scores.csv (one row per student and chapter) and
                             DIR/feedback/<student>/<chNN>/<notebook>.html

nbgrader keeps its gradebook in a throw-away course folder, so nothing here writes a
database into the repository.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
_CONFIG = """\
c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
c.Execute.timeout = 300
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE\\nraise NotImplementedError()"}}
"""


class GradingError(RuntimeError):
    """A problem with the exercises or the submissions, stated for the instructor."""


# --------------------------------------------------------------------------- helpers
def assignments(source: Path = SOLUTIONS) -> list[str]:
    """The chapter folders of ``source`` that hold at least one notebook."""
    if not source.is_dir():
        raise GradingError(f"no solutions folder at {source}")
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def _course(tmp: Path, source: Path) -> Path:
    """A throw-away nbgrader course folder with a copy of ``source`` as its solutions."""
    course = tmp / "course"
    shutil.copytree(source, course / "solutions",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (course / "nbgrader_config.py").write_text(
        _CONFIG.format(root=str(course), db=str(course / "gradebook.db")))
    return course


def _nbgrader(course: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "nbgrader", *args, "--force", "--log-level=WARN"]
    # nbgrader calls the `alembic` script by name: put this environment's scripts on PATH
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    done = subprocess.run(cmd, cwd=course, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise GradingError(f"`nbgrader {' '.join(args)}` failed:\n{done.stdout}{done.stderr}")


def _normalise(nb_path: Path) -> dict:
    """A notebook as JSON, minus what nbgrader may write differently from run to run."""
    nb = json.loads(nb_path.read_text())
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _release_into(target: Path, source: Path, names: list[str] | None = None) -> list[str]:
    """Generate the student versions of ``names`` (default: all) and replace them in ``target``."""
    known = assignments(source)
    unknown = sorted(set(names or []) - set(known))
    if unknown:
        raise GradingError(f"no exercises for {', '.join(unknown)} in {source}")
    everything = names is None
    names = known if everything else sorted(names)
    with tempfile.TemporaryDirectory() as tmp:
        course = _course(Path(tmp), source)
        for name in names:
            _nbgrader(course, "generate_assignment", name)
        (course / "exercises").mkdir(exist_ok=True)  # a course with no exercises yet
        if everything and target.exists():
            shutil.rmtree(target)  # also drops chapters that left solutions/
        for name in names:
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(course / "exercises" / name, target / name)
    return names


# --------------------------------------------------------------------------- release / check
def release(source: Path = SOLUTIONS, target: Path = EXERCISES,
            names: list[str] | None = None) -> list[str]:
    """Regenerate ``target`` (exercises/) from ``source`` (solutions/); returns the chapters.

    ``names`` limits it to some chapters (e.g. ``["ch03"]``); by default all are regenerated
    and folders without a source are removed.  exercises/ is generated: never edit it by hand.
    """
    return _release_into(target, source, names)


def stale_exercises(source: Path = SOLUTIONS, target: Path = EXERCISES) -> list[str]:
    """Files of ``target`` that differ from a fresh release (empty when up to date)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "exercises"
        _release_into(fresh, source)
        want = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        have = {p.relative_to(target) for p in target.rglob("*") if p.is_file()
                and ".ipynb_checkpoints" not in p.parts} if target.exists() else set()
        problems = [f"missing: {p}" for p in sorted(want - have)]
        problems += [f"not generated from solutions/: {p}" for p in sorted(have - want)]
        for rel in sorted(want & have):
            same = (_normalise(fresh / rel) == _normalise(target / rel) if rel.suffix == ".ipynb"
                    else (fresh / rel).read_bytes() == (target / rel).read_bytes())
            if not same:
                problems.append(f"out of date: {rel}")
    return problems


# --------------------------------------------------------------------------- grading
@dataclass
class Submission:
    student: str
    assignment: str
    folder: Path
    problem: str = ""  # why it cannot be graded; empty when it can


def collect_submissions(folder: Path, source: Path = SOLUTIONS) -> list[Submission]:
    """Read ``folder/<student>/<chNN>/*.ipynb``; malformed entries are kept with a reason.

    ``source`` is the solutions folder: it says which chapters and notebooks to expect.
    """
    known = assignments(source)
    if not folder.is_dir():
        raise GradingError(f"submissions folder not found: {folder}")
    found = []
    for student_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        chapters = sorted(p for p in student_dir.iterdir() if p.is_dir())
        if not chapters:
            found.append(Submission(student_dir.name, "?", student_dir,
                                    "no chapter folder (expected <student>/<chNN>/<notebook>.ipynb)"))
        for chapter in chapters:
            sub = Submission(student_dir.name, chapter.name, chapter)
            if chapter.name not in known:
                sub.problem = f"unknown chapter {chapter.name!r} (known: {', '.join(known)})"
            else:
                for name in sorted(p.name for p in (source / chapter.name).glob("*.ipynb")):
                    nb = chapter / name
                    if not nb.exists():
                        sub.problem = f"missing notebook {name}"
                        break
                    try:
                        nbformat.validate(nbformat.read(nb, as_version=4))
                    except Exception as err:  # noqa: BLE001 - any parse error means malformed
                        sub.problem = f"{name} is not a valid notebook ({type(err).__name__})"
                        break
            found.append(sub)
    if not found:
        raise GradingError(f"no submissions in {folder} (expected <student>/<chNN>/<notebook>.ipynb)")
    return found


def grade(submissions: Path, out: Path, *, source: Path = SOLUTIONS, force: bool = False) -> Path:
    """Autograde every submission; write ``out/scores.csv`` and ``out/feedback/``.

    Submissions that cannot be graded (unknown chapter, missing or broken notebook) get a row
    with their problem in the ``status`` column instead of stopping the whole class's grading.
    """
    if out.exists() and any(out.iterdir()) and not force:
        raise GradingError(f"output folder {out} is not empty; choose another or pass --force")
    subs = collect_submissions(Path(submissions), source)
    with tempfile.TemporaryDirectory() as tmp:
        course = _course(Path(tmp), source)
        for name in sorted({s.assignment for s in subs if not s.problem}):
            _nbgrader(course, "generate_assignment", name)
            for s in subs:
                if s.assignment == name and not s.problem:
                    shutil.copytree(s.folder, course / "submitted" / s.student / name,
                                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
            _nbgrader(course, "autograde", name)
            _nbgrader(course, "generate_feedback", name)
        rows = _scores(course, subs)
        out.mkdir(parents=True, exist_ok=True)
        if (course / "feedback").exists():
            shutil.copytree(course / "feedback", out / "feedback", dirs_exist_ok=True)
    fields = ["student", "assignment", "score", "max_score", "status", "details"]
    with open(out / "scores.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return out / "scores.csv"


def _scores(course: Path, subs: list[Submission]) -> list[dict]:
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for s in subs:
            row = {"student": s.student, "assignment": s.assignment, "score": 0.0,
                   "max_score": "", "status": f"not graded: {s.problem}" if s.problem else "graded",
                   "details": ""}
            if not s.problem:
                sub = gb.find_submission(s.assignment, s.student)
                row["score"], row["max_score"] = round(sub.score, 2), round(sub.max_score, 2)
                parts = []
                for nb in sub.notebooks:
                    for g in sorted(nb.grades, key=lambda g: g.name):
                        parts.append(f"{g.name}={g.score:g}/{g.max_score:g}")
                    if nb.needs_manual_grade:
                        row["status"] = "graded; free-text answers need manual grading"
                row["details"] = " ".join(parts)
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- command line
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.grading", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rl = sub.add_parser("release", help="regenerate exercises/ from solutions/")
    rl.add_argument("chapters", nargs="*", help="only these (e.g. ch03); default: all")
    sub.add_parser("check", help="fail if exercises/ is out of date")
    gr = sub.add_parser("grade", help="autograde a folder of submissions")
    gr.add_argument("submissions", type=Path)
    gr.add_argument("--out", type=Path, required=True)
    gr.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "release":
            print("released:", ", ".join(release(names=args.chapters or None)) or "nothing")
        elif args.cmd == "check":
            problems = stale_exercises()
            for p in problems:
                print(p)
            if problems:
                print("exercises/ is out of date: run `make exercises`")
                return 1
            print("exercises/ is up to date")
        else:
            if not str(args.submissions) or not str(args.out) or str(args.out) == ".":
                raise GradingError("usage: make grade SUBMISSIONS=folder OUT=folder")
            path = grade(args.submissions, args.out, force=args.force)
            print(f"scores written to {path}; feedback in {args.out / 'feedback'}")
    except GradingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
