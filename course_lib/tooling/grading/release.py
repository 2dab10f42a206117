"""Release: generate the student versions in exercises/ from solutions/ with nbgrader."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]  # the repository (this file: course_lib/tooling/grading/release.py)
SOLUTIONS = ROOT / "solutions"
EXERCISES = ROOT / "exercises"
_CONFIG = """\
c = get_config()
c.CourseDirectory.root = {root!r}
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
c.CourseDirectory.db_url = "sqlite:///" + {db!r}
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
"""
# What a student finds in place of the solution code (issue 10: a message that says what to do)
CODE_STUB = ("# YOUR CODE HERE\n"
             'raise NotImplementedError("not done yet: replace this line with your code, run this cell, '
             'then the self-check below")')


class GradingError(RuntimeError):
    """A problem with the exercises or the submissions, stated for the instructor."""


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
        _CONFIG.format(root=str(course), db=str(course / "gradebook.db"), stub=CODE_STUB))
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


