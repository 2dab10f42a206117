"""The package's layout (issue 11): a light top-level import, chapters and tooling in their own folders."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_course_lib_loads_only_the_core():
    code = ("import sys, course_lib; "
            "print(sorted(m for m in sys.modules if m.startswith('course_lib')));"
            "print('matplotlib' in sys.modules, 'ipywidgets' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.splitlines()
    loaded = eval(out[0])
    assert not [m for m in loaded if m.startswith(("course_lib.experiments", "course_lib.tooling"))]
    assert "course_lib.plots" not in loaded and "course_lib.widgets" not in loaded
    assert out[1] == "False False"


def test_chapter_modules_and_names_load_on_first_use():
    import course_lib
    from course_lib import erm
    assert erm.__name__ == "course_lib.experiments.erm"
    assert course_lib.empirical_risk is erm.empirical_risk
    assert callable(course_lib.train)  # the training loop, not the module of the same name
    assert {"erm", "plots", "widgets", "empirical_risk"} <= set(dir(course_lib))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        course_lib.no_such_name  # noqa: B018


def test_tree_separates_core_experiments_and_tooling():
    lib = ROOT / "course_lib"
    flat = sorted(p.stem for p in lib.glob("*.py") if p.stem != "__init__")
    assert len(flat) <= 12, flat  # the core only
    assert (lib / "experiments" / "erm.py").exists() and (lib / "tooling" / "grading").is_dir()
