"""Structure of the course notebooks: linked from the index, the chapter pattern, clean outputs.

nbval re-executes every notebook and compares its outputs (see pyproject.toml); these checks
cover what nbval does not: links, the parts every chapter must have, and leaks in outputs.
"""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted(p for p in (ROOT / "chapters").glob("[0-9][0-9]_*.ipynb")
                  if not p.name.startswith("00_"))
INDEX = ROOT / "chapters" / "00_index.ipynb"
LEAK = re.compile(r"(/root/|/work/|/tmp/|/home/\w+|0x[0-9a-f]{8,}|\d\d:\d\d:\d\d)")


def _text(nb, cell_type):
    return "\n".join(c.source for c in nb.cells if c.cell_type == cell_type)


def _links(nb):
    return re.findall(r"\]\(([^)#\s]+\.ipynb)\)", _text(nb, "markdown"))


def test_index_links_every_chapter_and_every_link_resolves():
    index = nbformat.read(INDEX, as_version=4)
    links = _links(index)
    for link in links:
        assert (INDEX.parent / link).exists(), f"the index links to a missing file: {link}"
    missing = sorted(p.name for p in CHAPTERS if p.name not in links)
    assert not missing, f"chapters not linked from the index: {missing}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_follows_the_pattern(path):
    nb = nbformat.read(path, as_version=4)
    md, code = _text(nb, "markdown"), _text(nb, "code")
    num = path.name[:2]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# "), "title"
    assert "After this chapter you can" in md
    assert re.search(r"^#+ .*Summary", md, re.M), "a Summary section"
    assert f"../exercises/ch{num}/ch{num}_exercises.ipynb" in md, "a link to the exercises"
    assert (ROOT / "exercises" / f"ch{num}" / f"ch{num}_exercises.ipynb").exists()
    assert "course_lib" in code, "chapters use the library"
    assert re.search(r"widgets|interactive_plot|trajectory_explorer", code), "an interactive control"
    for link in _links(nb):
        assert (path.parent / link).exists(), f"broken link {link}"
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "no stored figure: was the notebook executed with the inline backend?"


@pytest.mark.parametrize("path", sorted((ROOT / "chapters").glob("*.ipynb"))
                         + sorted((ROOT / "solutions").rglob("*.ipynb")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_stored_executed_without_leaks(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        assert cell.execution_count is not None, f"cell {i} not executed: run `make notebooks`"
        for out in cell.outputs:
            assert out.output_type != "error", f"cell {i} stored an error"
            text = out.get("text", "") + str(out.get("data", {}).get("text/plain", ""))
            assert not LEAK.search(text), f"cell {i} output shows a path, address or time: {text[:200]}"
