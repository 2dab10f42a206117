"""Read a number a chapter printed, from its stored (executed) notebook.

Why this is a real test: nbval re-executes every notebook under chapters/ in the same suite and
fails when a fresh output differs from the stored one, so a claim asserted here on the stored text
holds for the fresh computation too, on this machine and under every forced kernel set of
`make test-kernels`.  It spares the suite a second run of an experiment that takes many seconds.
Only cells that nbval compares are accepted (no nbval-skip / nbval-ignore-output / raises-exception).

    from stored import stored_text, stored_numbers
    text = stored_text("13_learning_rate_schedules", "compare_tuned(")
"""
from __future__ import annotations

import json
import re
from pathlib import Path

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
_NOT_COMPARED = {"nbval-skip", "nbval-ignore-output", "raises-exception"}
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def _notebook(chapter: str) -> dict:
    matches = sorted(CHAPTERS.glob(f"{chapter}*.ipynb"))
    if len(matches) != 1:
        raise LookupError(f"{chapter!r} names {len(matches)} notebooks under chapters/, need one")
    return json.loads(matches[0].read_text(encoding="utf-8"))


def stored_text(chapter: str, marker: str) -> str:
    """The stored stream and text/plain output of the one code cell of ``chapters/<chapter>*.ipynb``
    whose source contains ``marker`` (LookupError if none or several do, ValueError if nbval does
    not compare that cell, so the stored text could be stale)."""
    cells = [c for c in _notebook(chapter)["cells"]
             if c["cell_type"] == "code" and marker in "".join(c["source"])]
    if len(cells) != 1:
        raise LookupError(f"{len(cells)} code cells of {chapter} contain {marker!r}, need one")
    cell = cells[0]
    tags = set(cell.get("metadata", {}).get("tags", []))
    source = "".join(cell["source"])
    if tags & _NOT_COMPARED or re.search(r"#\s*(NBVAL_SKIP|NBVAL_IGNORE_OUTPUT)", source):
        raise ValueError(f"nbval does not compare the cell with {marker!r} in {chapter}")
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append("".join(out["text"]))
        elif "data" in out and "text/plain" in out["data"]:
            parts.append("".join(out["data"]["text/plain"]))
    return "".join(parts)


def stored_numbers(text: str, after: str) -> list[float]:
    """The numbers on the first line of ``text`` that contains ``after``, read after it."""
    for line in text.splitlines():
        if after in line:
            return [float(x) for x in _NUMBER.findall(line.split(after, 1)[1])]
    raise LookupError(f"no line contains {after!r}")
