"""Notebooks as source files: deterministic execution in place, and a plain-text authoring format.

Maintainers run ``python -m course_lib.tooling.notebooks execute PATH...`` (``make notebooks``) after a
change; the stored outputs are what nbval compares in ``make test``.  Execution is made
repeatable: the kernel starts in the notebook's folder with a fixed environment (fixed hash
seed, one thread per kernel as under ``make test``, where two kernels share two cores), cell
timings are not recorded and volatile metadata is dropped.

Metadata: every stored notebook (chapters/, solutions/, exercises/) carries the metadata
JupyterLab writes on opening it (see ``LANGUAGE_INFO`` below), so opening and saving an untouched
notebook changes nothing; ``execute``, ``build`` and ``grading release`` apply that rule, and
``python -m course_lib.tooling.notebooks metadata PATH...`` re-applies it alone (no execution).

Authoring: ``python -m course_lib.tooling.notebooks build SCRIPT.py NOTEBOOK.ipynb`` turns a "percent"
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
import json
import os
import re
import sys
from pathlib import Path

import nbformat

# What JupyterLab writes into a notebook's metadata when it opens it (measured with JupyterLab
# 4.6 and ipykernel 7: ``kernelspec`` from the kernel spec, ``language_info`` from the kernel's
# info reply; nothing else).  Stored notebooks carry exactly this, so opening one does not mark
# it modified and saving it untouched changes no byte.  ``language_info.version`` is the only
# field that depends on the machine (the kernel reports its Python, ``sys.version``): we store
# the course's reference Python, and the students' lab keeps a stored version on save
# (:func:`keep_stored_python_version`), so on any other Python a save still changes nothing.
# Re-apply after editing this rule: ``python -m course_lib.tooling.notebooks metadata chapters solutions
# exercises`` (no execution).
KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
PYTHON_VERSION = "3.11.7"  # the reference Python of the stored notebooks (the maintainers' venv)
LANGUAGE_INFO = {
    "codemirror_mode": {"name": "ipython", "version": 3},
    "file_extension": ".py",
    "mimetype": "text/x-python",
    "name": "python",
    "nbconvert_exporter": "python",
    "pygments_lexer": "ipython3",
    "version": PYTHON_VERSION,
}
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
    nb = nbformat.v4.new_notebook()
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
    _clean(nb)
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


# --------------------------------------------------------------------------- metadata
def _clean(nb: nbformat.NotebookNode) -> None:
    """THE rule for stored notebooks' metadata: drop what differs from run to run, store what
    JupyterLab would write on opening (``KERNEL``, ``LANGUAGE_INFO``), tag self-check cells."""
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("collapsed", None)
        cell.metadata.pop("scrolled", None)
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            # an exercise's self-checks (course_lib.checks): Run All goes on after a failure
            tags = cell.metadata.setdefault("tags", [])
            if "raises-exception" not in tags:
                tags.append("raises-exception")
    for cell in nb.cells:  # JupyterLab saves JSON through JavaScript: 3.0 comes back as 3
        cell.metadata = _js_numbers(cell.metadata)
    nb.metadata.pop("widgets", None)  # widget state holds random model ids
    nb.metadata["kernelspec"] = dict(KERNEL)
    nb.metadata["language_info"] = {k: (dict(v) if isinstance(v, dict) else v)
                                    for k, v in LANGUAGE_INFO.items()}
    nb.nbformat, nb.nbformat_minor = 4, 5  # what JupyterLab 4 saves
    _stable_ids(nb)


def _js_numbers(value):
    """``value`` with every integral float as an int, as a JavaScript JSON round trip writes it
    (nbgrader's ``"points": 3.0`` would otherwise become ``3`` at a student's first save)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return type(value)((k, _js_numbers(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_js_numbers(v) for v in value]
    return value


def apply_metadata(path: str | Path) -> bool:
    """Rewrite one stored notebook's metadata by :func:`_clean`, outputs untouched (no kernel).

    Returns whether the file changed.  ``course_lib.tooling.grading`` calls it on every released
    exercise, so exercises/ follows the same rule as solutions/.
    """
    path = Path(path)
    before = path.read_bytes()
    nb = nbformat.read(path, as_version=4)
    _clean(nb)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path.read_bytes() != before


def keep_stored_python_version(model: dict, path: str, contents_manager, **kwargs) -> None:
    """Jupyter server pre-save hook (the students' lab, ``course_lib/tooling/lab_config``): when a
    notebook's ``language_info`` differs from the one stored on disk only by the kernel's Python
    version, keep the stored one.  A student whose Python is not the reference one then still
    saves an untouched notebook byte for byte as it was (no ``git pull`` conflict)."""
    if model.get("type") != "notebook" or not isinstance(model.get("content"), dict):
        return
    new = model["content"].get("metadata", {}).get("language_info")
    target = Path(contents_manager.root_dir) / path.strip("/")
    if not isinstance(new, dict) or not target.is_file():
        return
    try:
        old = json.loads(target.read_text(encoding="utf-8")).get("metadata", {}).get("language_info")
    except (OSError, ValueError):
        return
    if (isinstance(old, dict) and "version" in old and old != new
            and {k: v for k, v in old.items() if k != "version"}
            == {k: v for k, v in new.items() if k != "version"}):
        new["version"] = old["version"]


# --------------------------------------------------------------------------- execution


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
    parser = argparse.ArgumentParser(prog="python -m course_lib.tooling.notebooks", description=__doc__,
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
    md = sub.add_parser("metadata", help="rewrite stored notebooks' metadata by the rule above "
                                         "(no execution, outputs untouched)")
    md.add_argument("paths", nargs="+")
    args = parser.parse_args(argv)

    if args.cmd == "execute":
        import time
        for nb_path in _notebooks(args.paths):
            t0 = time.perf_counter()
            execute(nb_path)
            print(f"executed {nb_path} in {time.perf_counter() - t0:.1f} s")
    elif args.cmd == "metadata":
        paths = _notebooks(args.paths)
        changed = [p for p in paths if apply_metadata(p)]
        for p in changed:
            print(f"rewrote the metadata of {p}")
        print(f"{len(changed)} of {len(paths)} notebooks changed")
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
