"""Notebooks as source files: deterministic execution in place, and a plain-text authoring format.

Maintainers run ``python -m course_lib.notebooks execute PATH...`` (``make notebooks``) after a
change; the stored outputs are what nbval compares in ``make test``.  Execution is made
repeatable: the kernel starts in the notebook's folder with a fixed environment (fixed hash
seed, one thread per kernel as under ``make test``, where two kernels share two cores), cell
timings are not recorded and volatile metadata is dropped.

Authoring: ``python -m course_lib.notebooks build SCRIPT.py NOTEBOOK.ipynb`` turns a "percent"
script into a notebook, and ``export NOTEBOOK.ipynb`` prints one back as a script.  Cells start
with a marker line::

    # %% [markdown]                    a markdown cell (each line after it starts with "# ")
    # %%                               a code cell
    # %% solution id=ex1-code          nbgrader: code the student writes (### BEGIN/END SOLUTION)
    # %% tests id=ex1-tests points=2   nbgrader: autograded tests (### BEGIN/END HIDDEN TESTS)
    # %% [markdown] answer id=ex2 points=1  nbgrader: a free-text answer, graded by hand

The ``id`` is nbgrader's ``grade_id``; it must be unique in the notebook.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import nbformat

KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
TIMEOUT_S = 300
_MARKER = re.compile(r"^# %%(?: \[(markdown)\])?(?: (solution|tests|answer))?((?: \w+=[\w.-]+)*)\s*$")


# --------------------------------------------------------------------------- authoring
def _nbgrader_meta(kind: str, attrs: dict[str, str]) -> dict:
    if "id" not in attrs:
        raise ValueError(f"Invalid cell marker: a {kind!r} cell needs id=...")
    graded = kind in ("tests", "answer")
    meta = {"grade": graded, "grade_id": attrs["id"], "locked": kind == "tests",
            "schema_version": 3, "solution": kind in ("solution", "answer"), "task": False}
    if graded:
        if "points" not in attrs:
            raise ValueError(f"Invalid cell marker: graded cell {attrs['id']!r} needs points=...")
        meta["points"] = float(attrs["points"])
    return meta


def from_percent(text: str) -> nbformat.NotebookNode:
    """Parse the percent format described in the module docstring into a notebook."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": KERNEL,
                                            "language_info": {"name": "python"}})
    cells: list[tuple[str, str | None, dict, list[str]]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("# %%"):
            m = _MARKER.match(line)
            if not m:
                raise ValueError(f"Invalid cell marker on line {lineno}: {line!r}")
            attrs = dict(a.split("=", 1) for a in m.group(3).split())
            cells.append(("markdown" if m.group(1) else "code", m.group(2), attrs, []))
        elif not cells:
            if line.strip():
                raise ValueError(f"Text before the first cell marker on line {lineno}: {line!r}")
        else:
            cells[-1][3].append(line)
    ids = set()
    for cell_type, kind, attrs, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        if cell_type == "markdown":
            src = "\n".join(re.sub(r"^# ?", "", ln) for ln in lines)
            cell = nbformat.v4.new_markdown_cell(src)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
        if kind:
            cell.metadata["nbgrader"] = _nbgrader_meta(kind, attrs)
            if attrs["id"] in ids:
                raise ValueError(f"Duplicate grade id: {attrs['id']!r}")
            ids.add(attrs["id"])
        nb.cells.append(cell)
    _stable_ids(nb)
    return nb


def to_percent(nb: nbformat.NotebookNode) -> str:
    """The inverse of :func:`from_percent` (outputs are dropped)."""
    out = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        head = "# %%" + (" [markdown]" if cell.cell_type == "markdown" else "")
        if meta:
            kind = ("answer" if cell.cell_type == "markdown" else "tests" if meta.get("grade")
                    else "solution")
            head += f" {kind} id={meta['grade_id']}"
            if meta.get("grade"):
                head += f" points={meta['points']:g}"
        src = cell.source
        if cell.cell_type == "markdown":
            src = "\n".join(("# " + ln).rstrip() for ln in src.splitlines())
        out.append(f"{head}\n{src}\n")
    return "\n".join(out)


def _stable_ids(nb: nbformat.NotebookNode) -> None:
    """Give cells ids derived from their position, so re-saving a notebook changes nothing."""
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"


# --------------------------------------------------------------------------- execution
def _clean(nb: nbformat.NotebookNode) -> None:
    """Drop metadata that differs from run to run."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
    nb.metadata.pop("widgets", None)  # widget state holds random model ids
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    _stable_ids(nb)


# The environment every notebook runs in, here and under nbval (the Makefile's test target sets
# the same).  One thread: results of parallel reductions can depend on the thread count.
# No MPLBACKEND: the kernel's inline backend must store the figures.
KERNEL_ENV = {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def execute(path: str | Path, timeout: int = TIMEOUT_S) -> nbformat.NotebookNode:
    """Execute one notebook in its own folder and write it back with its outputs."""
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent.resolve())}})
    os.environ.update(KERNEL_ENV)  # the kernel inherits this process's environment
    client.execute()
    _clean(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return nb


def _notebooks(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        elif p.suffix == ".ipynb" and p.exists():
            found.append(p)
        else:
            raise SystemExit(f"error: not a notebook or folder: {p}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="execute notebooks in place, storing their outputs")
    ex.add_argument("paths", nargs="+")
    bd = sub.add_parser("build", help="percent script -> notebook (not executed)")
    bd.add_argument("script")
    bd.add_argument("notebook")
    bd.add_argument("--force", action="store_true", help="overwrite an existing notebook")
    xp = sub.add_parser("export", help="notebook -> percent script on stdout")
    xp.add_argument("notebook")
    args = parser.parse_args(argv)

    if args.cmd == "execute":
        import time
        for nb_path in _notebooks(args.paths):
            t0 = time.perf_counter()
            execute(nb_path)
            print(f"executed {nb_path} in {time.perf_counter() - t0:.1f} s")
    elif args.cmd == "build":
        target = Path(args.notebook)
        if target.exists() and not args.force:
            raise SystemExit(f"error: {target} exists; pass --force to overwrite it")
        nb = from_percent(Path(args.script).read_text())
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(f"wrote {target} ({len(nb.cells)} cells)")
    else:
        sys.stdout.write(to_percent(nbformat.read(args.notebook, as_version=4)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
