"""One (student, chapter): ``python -m course_lib.tooling.grading.job JOBDIR``, in its own process.

JOBDIR/request.json says what to grade; the job works only in JOBDIR (a private copy of the
chapter's nbgrader course, with its own gradebook) and writes JOBDIR/result.json.  Steps, for
each notebook of the chapter:

1. read and validate the submission, and :func:`~.notebook.repair` its graded cells;
2. run it in the sandbox (:mod:`.runner`, with :mod:`.recorder` in the kernel);
3. run the judge in a second sandbox (:mod:`.judge`) on the recorded values;
4. merge the filtered outputs and the judge's verdicts (:func:`~.notebook.merge`);

then ``nbgrader autograde`` (without its execution step: scores come from the verdicts) and
``generate_feedback`` in JOBDIR.  Anything a notebook does can only change this job's result.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import nbformat

from . import notebook as nbtools
from . import sandbox

MAX_RUN_JSON = 256 * 2**20
STARTUP_S = 90   # kernel and interpreter start-up, on top of the notebook limit


def _owned_file(path: Path, sandboxed: bool) -> Path:
    path.write_bytes(b"")
    if sandboxed and os.geteuid() == 0:
        os.chown(path, sandbox.NOBODY, sandbox.NOBODY)
    path.chmod(0o600)
    return path


def _read_json(path: Path, limit: int):
    try:
        if path.stat().st_size > limit:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None


def grade_notebook(nb, source_nb, workdir: Path, limits: sandbox.Limits, sandboxed: bool):
    """Run, judge and merge one repaired notebook; returns (notebook, status)."""
    workdir.mkdir(parents=True)
    work = workdir / "work"
    work.mkdir()
    the_plan = nbtools.plan(source_nb)
    nbformat.write(nb, workdir / "in.ipynb")
    (workdir / "boot.json").write_text(json.dumps({"trusted": the_plan["trusted"], "names": the_plan["names"]}))
    (workdir / "plan.json").write_text(json.dumps(the_plan))
    for name in ("in.ipynb", "boot.json", "plan.json"):
        (workdir / name).chmod(0o644)
    out = _owned_file(workdir / "out.json", sandboxed)
    log = _owned_file(workdir / "record.jsonl", sandboxed)
    verdict = _owned_file(workdir / "verdict.json", sandboxed)
    py = sys.executable
    if sandboxed:
        at = lambda name: f"/grading/{name}"  # noqa: E731
        ro = [(workdir / "in.ipynb", at("in.ipynb")), (workdir / "boot.json", at("boot.json"))]
        rw = [(out, at("out.json")), (log, at("record.jsonl"))]
        cwd = None
    else:
        at = lambda name: str(workdir / name)  # noqa: E731
        ro, rw, cwd = [], [], work
        if os.geteuid() == 0:
            work.chmod(0o777)
    wall = limits.notebook_timeout + STARTUP_S
    here = str(Path(__file__).resolve().parent)
    ran = sandbox.run([py, f"{here}/runner.py", at("in.ipynb"), at("boot.json"),
                       at("out.json"), at("record.jsonl"), f"--cell-timeout={limits.cell_timeout:g}",
                       f"--notebook-timeout={limits.notebook_timeout:g}",
                       f"--max-output-bytes={limits.max_output_bytes}"],
                      limits, wall=wall, sandboxed=sandboxed, ro=ro, rw=rw, cwd=cwd)
    run = _read_json(out, MAX_RUN_JSON)
    if not isinstance(run, dict):
        run = {}
    status = str(run.get("status") or "")[:400]
    if ran.killed:
        status = f"timeout after {limits.notebook_timeout:g} s (notebook); the sandbox was stopped"
    elif not run:
        status = f"kernel died: the notebook run ended without a result (exit status {ran.returncode})"
    if sandboxed:
        ro = [(workdir / "plan.json", at("plan.json")), (log, at("record.jsonl"))]
        rw = [(verdict, at("verdict.json"))]
    judged = sandbox.run([py, f"{here}/judge.py", at("plan.json"), at("record.jsonl"),
                          at("verdict.json")], limits, wall=wall, sandboxed=sandboxed, ro=ro, rw=rw, cwd=cwd)
    verdicts = _read_json(verdict, 64 * 2**20)
    if judged.killed or judged.returncode != 0 or not isinstance(verdicts, dict):
        raise RuntimeError(f"the judge failed (exit status {judged.returncode}"
                           f"{', timed out' if judged.killed else ''}): {judged.stderr.strip()[-600:]}")
    return nbtools.merge(nb, run, verdicts, limits.max_output_bytes), status


def run_job(jobdir: Path) -> dict:
    req = json.loads((jobdir / "request.json").read_text())
    sid, chapter, folder = req["student_id"], req["assignment"], Path(req["folder"])
    limits = sandbox.Limits(**req["limits"])
    course = jobdir / "course"
    shutil.copytree(req["template"], course, ignore=shutil.ignore_patterns("submitted", "autograded", "feedback"))
    submitted = course / "submitted" / sid / chapter
    submitted.mkdir(parents=True)
    statuses, notes = [], []
    for name in req["notebooks"]:
        path = folder / name
        if not path.is_file():
            return {"graded": False, "status": f"not graded: missing notebook {name}"}
        try:
            student = nbtools.read_submission(path)
        except nbtools.InvalidNotebook as err:
            return {"graded": False, "status": f"not graded: invalid notebook: {err}"}
        source_nb = nbformat.read(course / "source" / chapter / name, as_version=4)
        release_nb = nbformat.read(course / "release" / chapter / name, as_version=4)
        nb, fixed = nbtools.repair(student, source_nb, release_nb)
        notes += fixed
        merged, status = grade_notebook(nb, source_nb, jobdir / "run" / Path(name).stem, limits,
                                        req["sandboxed"])
        if status:
            statuses.append(status if len(req["notebooks"]) == 1 else f"{name}: {status}")
        nbformat.write(merged, submitted / name)
    _nbgrader(course, chapter, sid)
    status = "; ".join(statuses + sorted(set(notes), key=notes.index))
    return {"graded": True, "status": status}


def _nbgrader(course: Path, chapter: str, sid: str) -> None:
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, DeduplicateIds,
                                        OverwriteCells, OverwriteKernelspec, SaveAutoGrades)
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    config.Autograde.sanitize_preprocessors = [DeduplicateIds, OverwriteKernelspec, OverwriteCells,
                                               CheckCellMetadata]
    config.Autograde.autograde_preprocessors = [SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for step, done in (("autograde", api.autograde(chapter, sid, force=True, create=True)),
                       ("generate_feedback", api.generate_feedback(chapter, sid, force=True))):
        if not done.get("success"):
            raise RuntimeError(f"nbgrader {step} failed: {done.get('error') or ''} {done.get('log') or ''}"[-1500:])


def main(argv: list[str] | None = None) -> int:
    jobdir = Path((argv or sys.argv[1:])[0])
    try:
        result = run_job(jobdir)
    except Exception as err:  # noqa: BLE001 - reported in this row only
        result = {"graded": False, "status": f"grading error: {type(err).__name__}: {str(err)[:1500]}"}
    (jobdir / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
