"""Notebooks open clean: stored metadata is what JupyterLab writes on opening (course_lib.tooling.notebooks).

What JupyterLab 4.6 rewrites was measured in the browser (tests/test_browser_lab.py opens and
saves every notebook): ``kernelspec`` from the kernel spec and ``language_info`` from the
kernel's info reply, nothing else.  Here: the rule matches the installed kernel, every stored
notebook follows it, and the students' lab keeps a stored Python version on save.
"""
import json
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from course_lib.tooling import notebooks

ROOT = Path(__file__).resolve().parent.parent
STORED = sorted([*(ROOT / "chapters").glob("*.ipynb"), *(ROOT / "solutions").rglob("*.ipynb"),
                 *(ROOT / "exercises").rglob("*.ipynb")])
STORED = [p for p in STORED if ".ipynb_checkpoints" not in p.parts]


def test_rule_is_what_the_kernel_reports():
    """kernelspec and language_info as JupyterLab fills them in from the installed kernel."""
    from ipykernel.ipkernel import IPythonKernel
    from jupyter_client.kernelspec import KernelSpecManager

    reported = dict(IPythonKernel.language_info)
    assert reported.pop("version") == sys.version.split()[0]
    assert {k: v for k, v in notebooks.LANGUAGE_INFO.items() if k != "version"} == reported
    spec = KernelSpecManager().get_kernel_spec("python3")
    assert notebooks.KERNEL == {"display_name": spec.display_name, "language": spec.language,
                                "name": "python3"}
    major_minor = tuple(int(x) for x in notebooks.PYTHON_VERSION.split(".")[:2])
    assert (3, 11) <= major_minor <= (3, 13), "the reference Python is a supported one"


@pytest.mark.parametrize("path", STORED, ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_notebook_follows_the_rule(path, tmp_path):
    """Re-applying the rule changes no byte (fix: `python -m course_lib.tooling.notebooks metadata`)."""
    copy = tmp_path / path.name
    shutil.copy(path, copy)
    assert not notebooks.apply_metadata(copy), (
        f"{path.relative_to(ROOT)}: metadata differ from the rule; run "
        f"`python -m course_lib.tooling.notebooks metadata {path.relative_to(ROOT)}`")


def test_apply_metadata_rewrites_only_metadata(tmp_path):
    src = ROOT / "solutions" / "ch03" / "ch03_exercises.ipynb"
    nb = nbformat.read(src, as_version=4)
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["widgets"] = {"state": {}}
    graded = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    graded[0].metadata.pop("tags", None)
    graded[0].metadata.nbgrader.points = 3.0  # JupyterLab would save it as 3
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    assert notebooks.apply_metadata(path)
    again = nbformat.read(path, as_version=4)
    assert again.metadata.language_info == notebooks.LANGUAGE_INFO
    assert "widgets" not in again.metadata
    assert [c.source for c in again.cells] == [c.source for c in nb.cells]
    assert [c.get("outputs") for c in again.cells] == [c.get("outputs") for c in nb.cells]
    assert "raises-exception" in again.cells[nb.cells.index(graded[0])].metadata.tags
    assert '"points": 3,' in path.read_text() and '"points": 3.0' not in path.read_text()
    assert not notebooks.apply_metadata(path), "idempotent"


def test_metadata_command_and_authoring_use_the_rule(tmp_path, capsys):
    nb = notebooks.from_percent("# %%\nx = 1\n# %% tests id=t points=1\nassert x == 1\n")
    assert nb.metadata.language_info == notebooks.LANGUAGE_INFO
    assert nb.metadata.kernelspec == notebooks.KERNEL
    assert nb.cells[1].metadata.tags == ["raises-exception"]
    stale = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")])
    nbformat.write(stale, tmp_path / "a.ipynb")
    assert notebooks.main(["metadata", str(tmp_path)]) == 0
    assert "1 of 1 notebooks changed" in capsys.readouterr().out
    assert nbformat.read(tmp_path / "a.ipynb", as_version=4).metadata.language_info[
        "version"] == notebooks.PYTHON_VERSION


class _Contents:
    def __init__(self, root):
        self.root_dir = str(root)


def _model(version, **extra):
    info = dict(notebooks.LANGUAGE_INFO, version=version, **extra)
    return {"type": "notebook", "content": {"metadata": {"language_info": info}, "cells": []}}


def test_students_lab_keeps_the_stored_python_version_on_save(tmp_path):
    stored = nbformat.v4.new_notebook()
    notebooks._clean(stored)
    nbformat.write(stored, tmp_path / "nb.ipynb")
    model = _model("3.12.4")  # a student's kernel reports another Python
    notebooks.keep_stored_python_version(model, "/nb.ipynb", _Contents(tmp_path))
    assert model["content"]["metadata"]["language_info"]["version"] == notebooks.PYTHON_VERSION
    # any other difference is the student's change and is saved as it is
    model = _model("3.12.4", mimetype="text/x-other")
    notebooks.keep_stored_python_version(model, "nb.ipynb", _Contents(tmp_path))
    assert model["content"]["metadata"]["language_info"]["version"] == "3.12.4"
    model = _model("3.12.4")  # a new notebook: nothing stored to keep
    notebooks.keep_stored_python_version(model, "new.ipynb", _Contents(tmp_path))
    assert model["content"]["metadata"]["language_info"]["version"] == "3.12.4"


def test_students_lab_config_installs_the_hook():
    from traitlets.utils.importstring import import_item

    config = json.loads((ROOT / "course_lib" / "tooling" / "lab_config" / "jupyter_server_config.json")
                        .read_text())
    hook = config["ContentsManager"]["pre_save_hook"]
    assert import_item(hook) is notebooks.keep_stored_python_version
