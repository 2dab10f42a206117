"""Grading a class: collect the submissions, run one job per (student, chapter), merge, report."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import unicodedata
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import sandbox
from .release import CODE_STUB, SOLUTIONS, GradingError, _nbgrader, assignments

JUNK = {"__MACOSX", "__pycache__", ".ipynb_checkpoints", ".DS_Store", "Thumbs.db"}
EXPORT_FIELDS = ["assignment", "duedate", "timestamp", "student_id", "last_name", "first_name", "email",
                 "raw_score", "late_submission_penalty", "score", "max_score"]
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@+-]{0,63}$")
_TEMPLATE_CONFIG = """\
# nbgrader course kept by `make grade`: formgrader and `nbgrader export` work here (run them in
# this folder).  Do not run `nbgrader autograde` here: it would run student code unsandboxed;
# regrade with `make grade` instead.  After manual grading, rewrite ../scores.csv (and the
# feedback) from this gradebook: `make grade-export OUT=<the folder above this one>` (the old
# ones are kept in OUT/previous/).
import sys as _sys
if any(a in ("autograde", "generate_assignment", "assign") for a in _sys.argv[1:2]):
    raise SystemExit("regrade with `make grade` (sandboxed), not nbgrader autograde")
c = get_config()
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
"""


@dataclass
class Submission:
    student: str                 # the folder name, literally
    assignment: str
    folder: Path | None          # None: not submitted
    problem: str = ""            # why it cannot be graded; empty when it can
    student_id: str = ""         # the id used in nbgrader's gradebook
    notes: list[str] = field(default_factory=list)


def student_id(folder_name: str) -> str:
    """The folder name if it is a plain id, else a readable ASCII form plus a short hash."""
    if _SAFE_ID.match(folder_name):
        return folder_name
    ascii_part = unicodedata.normalize("NFKD", folder_name).encode("ascii", "ignore").decode()
    ascii_part = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", ascii_part).strip("._-")[:40] or "student"
    return f"{ascii_part}-{hashlib.sha256(folder_name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def _is_junk(path: Path) -> bool:
    return path.name in JUNK or path.name.startswith(".")


def collect_submissions(folder: Path, source: Path = SOLUTIONS, *, roster: list[str] | None = None,
                        chapters: list[str] | None = None, notes: list[str] | None = None) -> list[Submission]:
    """One entry per (student, chapter) expected or found in ``folder/<student>/<chNN>/``.

    Students: the roster if given (plus any other folder, noted), else the folders.  Chapters:
    ``chapters`` if given, else every known chapter someone submitted.  Folder names are taken
    literally; junk (``__MACOSX``, dot-folders, files) is skipped with a note.
    """
    known = assignments(source)
    notes = notes if notes is not None else []
    folder = Path(folder)
    if not str(folder) or not folder.is_dir():
        raise GradingError(f"submissions folder not found: {folder}")
    unknown = sorted(set(chapters or []) - set(known))
    if unknown:
        raise GradingError(f"unknown chapter(s) {', '.join(unknown)} (known: {', '.join(known)})")
    found: dict[str, dict[str, Path]] = {}
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if _is_junk(entry) or not entry.is_dir() or entry.is_symlink():
            notes.append(f"skipped {entry.name!r} in the submissions folder: not a student folder")
            continue
        found[entry.name] = {}
        for chapter in sorted(entry.iterdir(), key=lambda p: p.name):
            if _is_junk(chapter) or not chapter.is_dir() or chapter.is_symlink():
                notes.append(f"skipped {entry.name}/{chapter.name!r}: not a chapter folder")
                continue
            found[entry.name][chapter.name] = chapter
    students = list(roster) if roster is not None else sorted(found)
    if roster is not None:
        for name in sorted(set(found) - set(roster)):
            notes.append(f"folder {name!r} is not on the roster: graded anyway")
            students.append(name)
    if not students:
        raise GradingError(f"no submissions in {folder} (expected <student>/<chNN>/<notebook>.ipynb)")
    expected = sorted(chapters) if chapters else sorted({c for chs in found.values() for c in chs if c in known})
    subs: list[Submission] = []
    for name in students:
        chs = found.get(name, {})
        if name in found and not chs and not expected:
            subs.append(Submission(name, "?", None, "no chapter folder (expected <student>/<chNN>/<notebook>.ipynb)"))
        for chapter in sorted(set(expected) | set(chs)):
            sub = Submission(name, chapter, chs.get(chapter))
            if chapter not in known:
                sub.problem = f"unknown chapter {chapter!r} (known: {', '.join(known)})"
            elif sub.folder is None:
                sub.problem = "not submitted"
            subs.append(sub)
    # ids: literal folder names, made safe for nbgrader; look-alike names are flagged
    groups: dict[str, list[str]] = {}
    for name in students:
        groups.setdefault(unicodedata.normalize("NFKC", name).casefold(), []).append(name)
    ids = {}
    for name in students:
        ids[name] = student_id(name)
    for sub in subs:
        sub.student_id = ids[sub.student]
        twins = [n for n in groups[unicodedata.normalize("NFKC", sub.student).casefold()] if n != sub.student]
        if twins:
            sub.notes.append(f"warning: folder name {ascii(sub.student)} looks the same as "
                             f"{', '.join(ascii(t) for t in twins)} (Unicode normalization or case): check the ids")
    return subs


def _template(source: Path, chapters: list[str], where: Path) -> Path:
    """An nbgrader course with the chapters generated: source/, release/, gradebook.db."""
    course = where / "course"
    (course / "source").mkdir(parents=True)
    for ch in chapters:
        shutil.copytree(source / ch, course / "source" / ch,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    (course / "nbgrader_config.py").write_text(
        f"c = get_config()\nc.ClearSolutions.code_stub = {{'python': {CODE_STUB!r}}}\n")
    for ch in chapters:
        _nbgrader(course, "generate_assignment", ch)
    (course / "nbgrader_config.py").write_text(_TEMPLATE_CONFIG.format(stub=CODE_STUB))
    return course


def _scripts_on_path() -> None:
    """nbgrader calls the `alembic` script by name: put this environment's scripts on PATH."""
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = f"{scripts}{os.pathsep}{os.environ.get('PATH', '')}"


def _job_entry(jobdir: str) -> None:
    os.setsid()
    fd = os.open(os.path.join(jobdir, "stderr.txt"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    os.dup2(fd, 1)
    from . import job
    job.main([jobdir])
    os._exit(0)


def _result(jobdir: Path) -> dict:
    try:
        return json.loads((jobdir / "result.json").read_text())
    except (OSError, ValueError):
        return {"graded": False, "status": "grading error: the job ended without a result"}


def _run_jobs(jobs_in: list[tuple[int, Path]], walls: dict[int, float], workers: int) -> dict[int, dict]:
    """Each job in its own process, forked from this one (its imports are done), ``workers`` at once."""
    import multiprocessing

    import nbgrader.apps  # noqa: F401 - imported once here rather than in every job
    import nbgrader.preprocessors  # noqa: F401

    from . import job  # noqa: F401
    ctx = multiprocessing.get_context("fork")
    pending, running, results = list(jobs_in), {}, {}
    while pending or running:
        while pending and len(running) < workers:
            n, jobdir = pending.pop(0)
            proc = ctx.Process(target=_job_entry, args=(str(jobdir),), daemon=False)
            proc.start()
            running[n] = (proc, time.monotonic(), jobdir)
        time.sleep(0.05)
        for n, (proc, started, jobdir) in list(running.items()):
            if not proc.is_alive():
                proc.join()
                results[n] = _result(jobdir)
                del running[n]
            elif time.monotonic() - started > walls[n]:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.join()
                results[n] = {"graded": False, "status": f"grading error: the job took more than {walls[n]:g} s"}
                del running[n]
    return results


def _merge(master_db: Path, job_db: Path, chapter: str, sid: str) -> None:
    from nbgrader.api import Gradebook

    with warnings.catch_warnings(), Gradebook(f"sqlite:///{job_db}") as jg, \
            Gradebook(f"sqlite:///{master_db}") as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes from nbgrader's add_submission
        sub = jg.find_submission(chapter, sid)
        gb.update_or_create_student(sid)
        gb.add_submission(chapter, sid, timestamp=sub.timestamp)
        for nb in sub.notebooks:
            mnb = gb.find_submission_notebook(nb.name, chapter, sid)
            mnb.flagged = nb.flagged
            mnb.late_submission_penalty = nb.late_submission_penalty
            for g in nb.grades:
                mg = gb.find_grade(g.name, nb.name, chapter, sid)
                mg.auto_score, mg.manual_score, mg.extra_credit = g.auto_score, g.manual_score, g.extra_credit
                mg.needs_manual_grade = g.needs_manual_grade
            for c in nb.comments:
                mc = gb.find_comment(c.name, nb.name, chapter, sid)
                mc.auto_comment, mc.manual_comment = c.auto_comment, c.manual_comment
        gb.db.commit()


def grade(submissions: Path, out: Path, *, source: Path = SOLUTIONS, force: bool = False,
          jobs: int = 1, limits: sandbox.Limits | None = None, roster: list[str] | None = None,
          chapters: list[str] | None = None, no_sandbox: bool = False) -> Path:
    """Grade every submission; write ``out/scores.csv``, ``out/feedback/`` and ``out/course/``.

    Always writes the CSV once the submissions are read: a notebook that cannot be graded, or
    whose job fails, gets a row that says why.
    """
    limits = limits or sandbox.Limits()
    _scripts_on_path()
    submissions, out = Path(submissions), Path(out)
    if not str(out) or str(out) == ".":
        raise GradingError("choose an output folder (OUT=...)")
    if out.exists() and not out.is_dir():
        raise GradingError(f"output {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()) and not force:
        raise GradingError(f"output folder {out} is not empty; choose another or pass --force")
    for inside, name in ((submissions, "SUBMISSIONS"), (source, "the solutions")):
        if out.resolve() == inside.resolve() or inside.resolve() in out.resolve().parents or \
                out.resolve() in inside.resolve().parents:
            raise GradingError(f"OUT ({out}) must be outside {name} ({inside}) and not contain it")
    if not no_sandbox:
        why = sandbox.check()
        if why:
            raise GradingError(f"no sandbox for student code: {why}.  Install bubblewrap (Debian/Ubuntu: "
                               "apt-get install bubblewrap), or pass --no-sandbox to run student code "
                               "with your own rights (only for notebooks you trust)")
    notes: list[str] = []
    subs = collect_submissions(submissions, source, roster=roster, chapters=chapters, notes=notes)
    gradable = [s for s in subs if not s.problem]
    results: dict[int, dict] = {}
    kept = out / "course"
    try:
        with tempfile.TemporaryDirectory(prefix="grading-") as tmp:
            if os.environ.get("COURSE_GRADING_KEEP"):  # debugging: keep the jobs' folders
                tmp = tempfile.mkdtemp(prefix="grading-kept-")
            tmp = Path(tmp)
            tmp.chmod(0o700)
            names = sorted({s.assignment for s in gradable})
            template = _template(source, names, tmp / "template")
            jobs_in = []
            for n, s in enumerate(gradable):
                jobdir = tmp / "jobs" / f"{n:05d}"
                jobdir.mkdir(parents=True)
                (jobdir / "request.json").write_text(json.dumps({
                    "student_id": s.student_id, "assignment": s.assignment, "folder": str(s.folder.resolve()),
                    "template": str(template), "limits": asdict(limits), "sandboxed": not no_sandbox,
                    "notebooks": sorted(p.name for p in (source / s.assignment).glob("*.ipynb"))}))
                jobs_in.append((n, jobdir))
            per_nb = 2 * (limits.notebook_timeout + 90)
            walls = {n: per_nb * len(list((source / gradable[n].assignment).glob("*.ipynb"))) + 300
                     for n, _ in jobs_in}
            results = _run_jobs(jobs_in, walls, max(1, jobs))
            out.mkdir(parents=True, exist_ok=True)
            kept = out / "course"
            if kept.exists():
                shutil.rmtree(kept)
            shutil.copytree(template, kept)
            for n, s in enumerate(gradable):
                result, jobdir = results[n], tmp / "jobs" / f"{n:05d}"
                if not result.get("graded"):
                    continue
                try:
                    _merge(kept / "gradebook.db", jobdir / "course" / "gradebook.db", s.assignment, s.student_id)
                    for part in ("autograded", "feedback"):
                        shutil.copytree(jobdir / "course" / part / s.student_id / s.assignment,
                                        kept / part / s.student_id / s.assignment)
                    handed_in = kept / "submitted" / s.student_id / s.assignment
                    handed_in.mkdir(parents=True)
                    for nb_path in sorted((source / s.assignment).glob("*.ipynb")):
                        theirs = s.folder / nb_path.name  # only the notebooks: a record of what was graded
                        if theirs.is_file() and not theirs.is_symlink():
                            shutil.copyfile(theirs, handed_in / nb_path.name)
                    shutil.copytree(jobdir / "course" / "feedback" / s.student_id / s.assignment,
                                    out / "feedback" / s.student_id / s.assignment, dirs_exist_ok=True)
                except Exception as err:  # noqa: BLE001 - this row only
                    result.update(graded=False, status=f"grading error: keeping the grades failed: {err}")

    except Exception as err:  # noqa: BLE001 - the CSV is still written, with the reason
        for n in range(len(gradable)):
            results[n] = {"graded": False, "status": f"grading error: {type(err).__name__}: {err}"[:2000]}
        out.mkdir(parents=True, exist_ok=True)
    rows = _rows(kept / "gradebook.db", subs, gradable, results, source)
    path = out / "scores.csv"
    _write_csv(path, rows, source, sorted({s.assignment for s in subs if s.assignment in assignments(source)}))
    (out / "notes.txt").write_text("".join(f"{n}\n" for n in notes))
    return path


def _tests(source: Path, chapter: str) -> list[tuple[str, str, float]]:
    """(notebook, grade id, points) of every graded cell of a chapter, in order."""
    import nbformat
    cells = []
    for nb_path in sorted((source / chapter).glob("*.ipynb")):
        for c in nbformat.read(nb_path, as_version=4).cells:
            meta = c.metadata.get("nbgrader", {})
            if meta.get("grade"):
                cells.append((nb_path.stem, meta["grade_id"], float(meta.get("points", 0))))
    return cells


def _column(chapter: str, nb: str, gid: str, multi: bool) -> str:
    return f"{chapter}/{nb}/{gid}" if multi else f"{chapter}/{gid}"


AWAITING = "awaiting manual grading: "


def _fill_scores(row: dict, gb, chapter: str, sid: str, multi: bool) -> list[str] | None:
    """Put the gradebook's points of one submission into ``row``; returns the grade ids that
    still await manual grading (None when the gradebook has no such submission).

    A cell graded by hand (formgrader) has a manual score; an answer cell that nobody graded yet
    has neither a manual nor an automatic score and gets an EMPTY cell in the CSV, not 0.  (An
    answer left exactly as released gets 0 automatically from nbgrader: nothing to grade.)
    ``score`` is nbgrader's total, which counts ungraded cells as 0: the status says which.
    """
    from nbgrader.api import MissingEntry

    try:
        sub = gb.find_submission(chapter, sid)
    except MissingEntry:
        return None
    row.update(raw_score=_num(sub.score + (sub.late_submission_penalty or 0)),
               score=_num(sub.score), max_score=_num(sub.max_score),
               late_submission_penalty=_num(sub.late_submission_penalty or 0),
               timestamp=str(sub.timestamp or ""))
    pending = []
    for nb in sub.notebooks:
        for g in nb.grades:
            col = _column(chapter, nb.name, g.name, multi)
            if g.manual_score is None and g.auto_score is None:
                row[col] = ""
                pending.append(g.name)
            else:
                row[col] = _num(g.score)
    return pending


def _with_pending(status: str, pending: list[str]) -> str:
    """``status`` with its "awaiting manual grading: …" part (re)written for ``pending``."""
    parts = [p for p in status.split("; ") if p and not p.startswith(AWAITING)]
    if pending:
        parts.append(AWAITING + ", ".join(pending))
    return "; ".join(parts)


def _rows(db: Path, subs, gradable, results, source) -> list[dict]:
    from nbgrader.api import Gradebook

    index = {id(s): n for n, s in enumerate(gradable)}
    rows = []
    if not db.exists():
        db = Path(tempfile.mkdtemp()) / "empty.db"  # nothing was graded: an empty gradebook
    with Gradebook(f"sqlite:///{db}") as gb:
        for s in sorted(subs, key=lambda s: (s.student, s.assignment)):
            known = s.assignment in assignments(source)
            tests = _tests(source, s.assignment) if known else []
            multi = len({t[0] for t in tests}) > 1
            row = {k: "" for k in EXPORT_FIELDS}
            row.update(assignment=s.assignment, student_id=s.student_id, folder=s.student)
            row["max_score"] = _num(sum(p for _, _, p in tests)) if tests else ""
            for nb, gid, pts in tests:
                row[_column(s.assignment, nb, gid, multi) + " max"] = _num(pts)
            result = results.get(index.get(id(s), -1), {}) if not s.problem else {}
            status = s.problem if s.problem == "not submitted" else \
                f"not graded: {s.problem}" if s.problem else result.get("status", "")
            pending = None
            if result.get("graded"):
                pending = _fill_scores(row, gb, s.assignment, s.student_id, multi)
                if pending is not None:
                    status = "graded" + (f"; {status}" if status else "")
            row["status"] = _with_pending("; ".join([status] + s.notes), pending or [])
            rows.append(row)
    return rows


def export(out: Path, *, feedback: bool = True) -> Path:
    """Rewrite ``out/scores.csv`` from the gradebook in ``out/course`` (after manual grading).

    The grades an instructor entered in formgrader (or directly in the gradebook) replace the
    empty cells; totals and statuses follow.  Rows that were not graded keep what grading
    wrote.  Nothing is lost: the current ``scores.csv`` (and ``feedback/``, when ``feedback``
    regenerates it with the manual points and comments) first move to ``out/previous/N/``,
    N = 1, 2, … the first free number.  Runs no student code.
    """
    from nbgrader.api import Gradebook

    out = Path(out)
    course, path = out / "course", out / "scores.csv"
    if not (course / "gradebook.db").is_file() or not path.is_file():
        raise GradingError(f"{out} is not a folder written by `make grade` "
                           "(expected scores.csv and course/gradebook.db)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = list(reader.fieldnames or []), list(reader)
    source = course / "source"
    chapters = assignments(source) if source.is_dir() else []
    graded = [r for r in rows
              if r.get("status", "").startswith("graded") and r.get("assignment") in chapters]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for row in graded:
            multi = len({t[0] for t in _tests(source, row["assignment"])}) > 1
            pending = _fill_scores(row, gb, row["assignment"], row["student_id"], multi)
            if pending is not None:
                row["status"] = _with_pending(row["status"], pending)
    n = 1
    while (out / "previous" / str(n)).exists():
        n += 1
    keep = out / "previous" / str(n)
    keep.mkdir(parents=True)
    shutil.move(str(path), keep / "scores.csv")
    if feedback:
        fresh = _feedback(course, [(r["assignment"], r["student_id"]) for r in graded])
        if (out / "feedback").exists():
            shutil.copytree(out / "feedback", keep / "feedback")
        for chapter, sid in fresh:
            shutil.copytree(course / "feedback" / sid / chapter, out / "feedback" / sid / chapter,
                            dirs_exist_ok=True)
    _write_rows(path, fields, rows)
    return path


def _feedback(course: Path, todo: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """nbgrader's feedback pages regenerated from the gradebook (no code runs); those done."""
    _scripts_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    done = []
    for chapter, sid in todo:
        if api.generate_feedback(chapter, sid, force=True).get("success"):
            done.append((chapter, sid))
    return done


def _num(x) -> str:
    return f"{float(x):g}"


def _write_csv(path: Path, rows: list[dict], source: Path, chapters: list[str]) -> None:
    fields = EXPORT_FIELDS + ["folder", "status"]
    for ch in chapters:
        tests = _tests(source, ch)
        multi = len({t[0] for t in tests}) > 1
        for nb, gid, _ in tests:
            col = _column(ch, nb, gid, multi)
            fields += [col, col + " max"]
    _write_rows(path, fields, rows)


def _write_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)
