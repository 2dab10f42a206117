"""Command line: ``python -m course_lib.tooling.grading release | check | grade | export``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __doc__ as DOC
from .grade import export, grade
from .release import SOLUTIONS, GradingError, release, stale_exercises
from .sandbox import Limits


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.tooling.grading", description=DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    rl = sub.add_parser("release", help="regenerate exercises/ from solutions/")
    rl.add_argument("chapters", nargs="*", help="only these (e.g. ch03); default: all")
    sub.add_parser("check", help="fail if exercises/ is out of date")
    ex = sub.add_parser("export", help="after manual grading (formgrader): rewrite OUT/scores.csv and "
                        "OUT/feedback from the gradebook in OUT/course; the old ones go to OUT/previous/N/")
    ex.add_argument("out", help="the folder `grade` wrote (OUT)")
    ex.add_argument("--no-feedback", action="store_true", help="rewrite only scores.csv")
    gr = sub.add_parser("grade", help="grade a folder SUBMISSIONS/<student>/<chNN>/<notebook>.ipynb")
    gr.add_argument("submissions", help="the submissions folder (required)")
    gr.add_argument("--out", required=True, help="output folder (new or empty)")
    gr.add_argument("--force", action="store_true", help="write into a non-empty --out folder")
    gr.add_argument("--source", type=Path, default=SOLUTIONS, help="the solutions folder (default: solutions/)")
    gr.add_argument("-j", "--jobs", type=_positive(int), default=1, help="notebooks graded at once (default 1)")
    gr.add_argument("--roster", type=Path, help="file with one student folder name per line: "
                    "every student on it gets a row per chapter, submitted or not")
    gr.add_argument("--chapters", nargs="+", metavar="chNN", help="chapters expected (default: those submitted)")
    d = Limits()
    gr.add_argument("--cell-timeout", type=_positive(float), default=d.cell_timeout,
                    help=f"wall-clock seconds per cell (default {d.cell_timeout:g})")
    gr.add_argument("--notebook-timeout", type=_positive(float), default=d.notebook_timeout,
                    help=f"wall-clock and CPU seconds per notebook run (default {d.notebook_timeout:g})")
    gr.add_argument("--memory-mb", type=_positive(int), default=d.memory_mb,
                    help=f"address space per process, MiB (default {d.memory_mb})")
    gr.add_argument("--max-output-kb", type=_positive(int), default=d.max_output_bytes // 1024,
                    help=f"outputs kept per notebook, KiB (default {d.max_output_bytes // 1024})")
    gr.add_argument("--no-sandbox", action="store_true",
                    help="run student code WITHOUT the sandbox, with your rights (trusted notebooks only)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "release":
            print("released:", ", ".join(release(names=args.chapters or None)) or "nothing")
        elif args.cmd == "export":
            if not args.out.strip():
                raise GradingError("usage: make grade-export OUT=folder")
            path = export(Path(args.out), feedback=not args.no_feedback)
            print(f"scores rewritten from the gradebook: {path} (the previous ones are in "
                  f"{Path(args.out) / 'previous'})")
            with open(path, encoding="utf-8") as fh:
                waiting = sum("awaiting manual grading" in line for line in fh)
            if waiting:
                print(f"{waiting} row(s) still awaiting manual grading (see their status)")
        elif args.cmd == "check":
            problems = stale_exercises()
            for p in problems:
                print(p)
            if problems:
                print("exercises/ is out of date: run `make exercises`")
                return 1
            print("exercises/ is up to date")
        else:
            if not args.submissions.strip() or not args.out.strip():
                raise GradingError("usage: make grade SUBMISSIONS=folder OUT=folder (both required)")
            roster = None
            if args.roster:
                try:
                    lines = args.roster.read_text(encoding="utf-8").splitlines()
                except (OSError, UnicodeDecodeError) as err:
                    raise GradingError(f"cannot read the roster {args.roster}: {err}") from None
                roster = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
                if len(set(roster)) != len(roster):
                    raise GradingError(f"the roster {args.roster} lists a name twice")
            limits = Limits(args.cell_timeout, args.notebook_timeout, args.memory_mb, args.max_output_kb * 1024)
            if args.no_sandbox:
                print("WARNING: --no-sandbox: student code runs with your rights, unconfined", file=sys.stderr)
            path = grade(Path(args.submissions), Path(args.out), force=args.force, jobs=args.jobs,
                         limits=limits, roster=roster, source=args.source, chapters=args.chapters, no_sandbox=args.no_sandbox)
            print(f"scores written to {path}; feedback in {Path(args.out) / 'feedback'}; "
                  f"nbgrader course (formgrader, export) in {Path(args.out) / 'course'}")
            notes = (Path(args.out) / "notes.txt").read_text()
            if notes:
                print(notes, end="")
    except GradingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
