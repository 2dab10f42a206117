"""Trusted notebook handling: the judge's plan, repairing a submission, merging outputs back.

All of it is JSON manipulation in the grader's own process; nothing here executes student code.
"""
from __future__ import annotations

import ast
import copy
import json
from collections import Counter

import nbformat

from .recorder import key_of

MAX_NOTEBOOK_BYTES = 50 * 2**20
_KEEP_MIME = ("text/plain", "image/png")
_META_KEYS = ("grade", "solution", "locked", "task", "grade_id", "points")


class InvalidNotebook(ValueError):
    pass


def nbgrader_meta(cell) -> dict | None:
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) and isinstance(meta.get("grade_id"), str) else None


def role(cell) -> str | None:
    meta = nbgrader_meta(cell)
    if meta is None:
        return None
    if meta.get("solution") and cell.cell_type == "code":
        return "solution"
    if meta.get("solution"):
        return "answer"
    if meta.get("grade") and cell.cell_type == "code":
        return "test"
    return "locked"  # task cells and other read-only instructor cells


# --------------------------------------------------------------------------- the plan
def bound_names(source: str) -> tuple[list[str], str]:
    """Names a solution cell binds at top level (not its imports), and its import statements."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return [], ""
    names: list[str] = []
    imports: list[str] = []

    def add(name):
        if name not in names:
            names.append(name)

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            add(node.name)
            return
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in tree.body:
        if isinstance(stmt, (ast.Import, ast.ImportFrom)):
            imports.append(ast.get_source_segment(source, stmt) or "")
        else:
            visit(stmt)
    return names, "\n".join(imports)


def plan(source_nb) -> dict:
    """What the judge runs: the code cells of the trusted notebook, in order."""
    cells, seen = [], Counter()
    trusted: dict[str, list[str]] = {}
    all_names: list[str] = []
    for cell in source_nb.cells:
        if cell.cell_type != "code":
            continue
        kind = role(cell)
        if kind == "solution":
            names, imports = bound_names(cell.source)
            all_names += [n for n in names if n not in all_names]
            cells.append({"kind": "solution", "grade_id": nbgrader_meta(cell)["grade_id"],
                          "names": names, "imports": imports})
            continue
        sha = key_of(cell.source)
        key = f"{sha}#{seen[sha]}"
        seen[sha] += 1
        trusted.setdefault(sha, []).append(key)
        entry = {"kind": "test" if kind == "test" else "code", "source": cell.source, "key": key}
        if kind == "test":
            entry["grade_id"] = nbgrader_meta(cell)["grade_id"]
        cells.append(entry)
    return {"cells": cells, "trusted": trusted, "names": all_names}


# --------------------------------------------------------------------------- repairing
def read_submission(path) -> nbformat.NotebookNode:
    if path.is_symlink() or not path.is_file():
        raise InvalidNotebook(f"{path.name} is a symbolic link or not a regular file")
    size = path.stat().st_size
    if size > MAX_NOTEBOOK_BYTES:
        raise InvalidNotebook(f"{path.name} is {size} bytes (more than {MAX_NOTEBOOK_BYTES})")
    try:
        nb = nbformat.reads(path.read_bytes().decode("utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as err:  # noqa: BLE001 - any parse or schema error
        raise InvalidNotebook(f"{path.name} is not a valid notebook ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
    return nb


def _plain(cell):
    if cell.cell_type == "code":
        return nbformat.v4.new_code_cell(cell.source)
    if cell.cell_type == "markdown":
        return nbformat.v4.new_markdown_cell(cell.source)
    return nbformat.v4.new_raw_cell(cell.source)


def _graded(template, source: str | None = None):
    new = copy.deepcopy(template)
    new.pop("id", None)
    if new.cell_type == "code":
        new.outputs, new.execution_count = [], None
    if source is not None:
        new.source = source
    return new


def repair(student, source_nb, release_nb) -> tuple[nbformat.NotebookNode, list[str]]:
    """The notebook to run: the student's cells, with every graded cell put right.

    Test and other read-only cells are the instructor's (hidden tests included), wherever the
    student moved, edited, renamed, duplicated or deleted them; answer cells (code, or written
    markdown answers graded by hand) keep the student's source under the instructor's metadata,
    so edited points, grade flags or checksums change nothing; cells that claim a grade id the exercise does not
    have (or claim one twice) become ordinary cells.  Returns the notebook and notes.
    """
    src = {nbgrader_meta(c)["grade_id"]: c for c in source_nb.cells if nbgrader_meta(c)}
    rel = {nbgrader_meta(c)["grade_id"]: c for c in release_nb.cells if nbgrader_meta(c)}
    order = [nbgrader_meta(c)["grade_id"] for c in source_nb.cells if nbgrader_meta(c)]
    roles = {gid: role(src[gid]) for gid in order}
    notes: list[str] = []
    out: list = []          # cells, or ("slot", gid, student_cell) for read-only cells
    placed: dict[str, int] = {}
    for cell in student.cells:
        meta = nbgrader_meta(cell)
        gid = meta["grade_id"] if meta else None
        kind = roles.get(gid)
        if kind in ("solution", "answer") and gid not in placed and cell.cell_type == src[gid].cell_type:
            if any(meta.get(k) != rel[gid].metadata.nbgrader.get(k) for k in _META_KEYS):
                notes.append(f"metadata of {gid} restored")
            placed[gid] = len(out)
            out.append(_graded(rel[gid], cell.source))
        elif kind == "answer" and gid not in placed and cell.cell_type in ("code", "raw"):
            # a written answer whose cell type was changed (``y`` in Jupyter): keep the text
            notes.append(f"answer cell {gid} was a {cell.cell_type} cell: graded as markdown")
            placed[gid] = len(out)
            out.append(_graded(rel[gid], cell.source))
        elif kind in ("test", "locked"):
            out.append(("slot", gid, cell))
        elif meta is not None:
            why = "a second copy of" if gid in placed else \
                "not a graded cell of this exercise:" if kind is None else "the wrong kind of cell for"
            notes.append(f"cell marked {gid!r} ({why} {gid!r}) graded as an ordinary cell")
            out.append(_plain(cell))
        else:
            out.append(_plain(cell))
    # read-only cells: the first copy after their answer cell (else the first copy) is replaced
    # by the instructor's version; other copies become ordinary cells, or go if unchanged
    for gid in order:
        if roles[gid] not in ("test", "locked"):
            continue
        slots = [i for i, c in enumerate(out) if isinstance(c, tuple) and c[1] == gid]
        if not slots:
            continue
        anchor = _anchor(gid, order, roles, placed)
        chosen = next((i for i in slots if anchor is None or i > anchor), slots[0])
        for i in slots:
            _, _, cell = out[i]
            changed = cell.source != rel[gid].source or cell.cell_type != rel[gid].cell_type or \
                any(nbgrader_meta(cell).get(k) != rel[gid].metadata.nbgrader.get(k) for k in _META_KEYS)
            if i == chosen:
                if changed:
                    notes.append(f"tampered test cell {gid}: restored")
                out[i] = _graded(src[gid])
                placed[gid] = i
            elif changed:
                notes.append(f"changed copy of test cell {gid} graded as an ordinary cell")
                out[i] = _plain(cell)
            else:
                out[i] = None
    out = [c for c in out if c is not None]
    placed = {nbgrader_meta(c)["grade_id"]: i for i, c in enumerate(out) if nbgrader_meta(c)}
    # graded cells that are missing go back after the graded cell before them
    for n, gid in enumerate(order):
        if gid in placed:
            continue
        before = [placed[g] for g in order[:n] if g in placed]
        at = max(before) + 1 if before else _first_code(out)
        template = src[gid] if roles[gid] in ("test", "locked") else rel[gid]
        out.insert(at, _graded(template))
        notes.append(f"missing cell {gid}: restored")
        placed = {nbgrader_meta(c)["grade_id"]: i for i, c in enumerate(out) if nbgrader_meta(c)}
    nb = nbformat.v4.new_notebook(metadata=copy.deepcopy(source_nb.metadata), cells=out)
    return nb, notes


def _anchor(gid, order, roles, placed):
    """Where the answer cell that precedes ``gid`` in the exercise landed."""
    for g in reversed(order[:order.index(gid)]):
        if roles[g] in ("solution", "answer"):
            return placed.get(g)
    return None


def _first_code(cells) -> int:
    """After the instructor's set-up cell(s) at the top: before the first graded cell."""
    for i, c in enumerate(cells):
        if nbgrader_meta(c):
            return i
    return len(cells)


# --------------------------------------------------------------------------- outputs
def clean_outputs(outputs, *, test: bool, budget: list[int]) -> list:
    """Outputs from the sandbox, reduced to plain text and PNG images within the byte budget.

    In test cells, errors and return values from the student's process are dropped (the judge
    decides) and stderr (warnings) becomes ordinary text, so that it never costs points.
    """
    kept = []
    if not isinstance(outputs, list):
        return kept
    for out in outputs:
        if not isinstance(out, dict):
            continue
        kind = out.get("output_type")
        new = None
        if kind == "stream" and isinstance(out.get("text"), (str, list)):
            text = out["text"] if isinstance(out["text"], str) else "".join(map(str, out["text"]))
            name = "stderr" if out.get("name") == "stderr" and not test else "stdout"
            new = nbformat.v4.new_output("stream", name=name, text=text)
        elif kind in ("display_data", "execute_result") and isinstance(out.get("data"), dict):
            data = {k: v for k, v in out["data"].items() if k in _KEEP_MIME and isinstance(v, (str, list))}
            data = {k: v if isinstance(v, str) else "".join(map(str, v)) for k, v in data.items()}
            if data:
                new = nbformat.v4.new_output("display_data", data=data)
        elif kind == "error" and not test:
            tb = out.get("traceback")
            new = nbformat.v4.new_output("error", ename=str(out.get("ename", ""))[:200],
                                         evalue=str(out.get("evalue", ""))[:4000],
                                         traceback=[str(t) for t in tb][:200] if isinstance(tb, list) else [])
        if new is None:
            continue
        size = len(json.dumps(new, ensure_ascii=False).encode())
        if size > budget[0]:
            kept.append(nbformat.v4.new_output(
                "stream", name="stdout", text=f"[{size} bytes of output not kept: over the output limit]\n"))
            budget[0] = 0
            continue
        budget[0] -= size
        kept.append(new)
    return kept


def merge(nb, run: dict, verdicts: dict, max_bytes: int) -> nbformat.NotebookNode:
    """``nb`` (the repaired notebook) with the sandbox's outputs and the judge's verdicts."""
    budget = [max_bytes]
    outputs = run.get("outputs") if isinstance(run.get("outputs"), dict) else {}
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        test = role(cell) == "test"
        cell.outputs = clean_outputs(outputs.get(str(index), []), test=test, budget=budget)
        if test:
            gid = nbgrader_meta(cell)["grade_id"]
            verdict = verdicts.get(gid) if isinstance(verdicts, dict) else None
            if not verdict or not verdict.get("passed"):
                err = (verdict or {}).get("error") or {"ename": "GradingError", "evalue":
                                                        "the grader could not check this cell", "where": ""}
                cell.outputs.append(nbformat.v4.new_output(
                    "error", ename=str(err.get("ename")), evalue=str(err.get("evalue")),
                    traceback=[f"{err.get('ename')}: {err.get('evalue')}"] +
                              ([f"(hidden or visible test, {err['where']})"] if err.get("where") else [])))
    nbformat.validate(nb)
    return nb
