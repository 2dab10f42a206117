"""Exercise feedback (course_lib.checks): "✓ passed", and failures that say what to do."""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from course_lib.checks import PASSED, SelfCheckFailed, self_check

ROOT = Path(__file__).resolve().parent.parent
# chapters whose solutions use self_check (12-14 follow when their authors have converted them)
CONVERTED = [f"ch{n:02d}" for n in range(1, 15)]


def test_passing_checks_print_passed(capsys):
    with self_check("Exercise 1"):
        assert 1 + 1 == 2, "arithmetic"
    assert capsys.readouterr().out.strip() == PASSED.format(exercise="Exercise 1")
    assert PASSED.startswith("✓ ") and "passed" in PASSED


def test_stub_says_the_exercise_is_not_done(capsys):
    def taylor_change(g, H, lr):
        raise NotImplementedError()

    with pytest.raises(SelfCheckFailed) as err:
        with self_check("Exercise 1"):
            taylor_change(1, 2, 3)
    text = str(err.value)
    assert text.startswith("✗ Exercise 1 is not done yet") and "`taylor_change`" in text
    assert "the `raise NotImplementedError(...)` line" in text and "run that cell again" in text
    assert capsys.readouterr().out == "", "no ✓ when a check did not run through"
    assert isinstance(err.value, AssertionError), "nbgrader grades it as a failed test"


def test_failed_assert_names_the_check_and_what_to_do():
    with pytest.raises(SelfCheckFailed) as err:
        with self_check("Exercise 2"):
            got = 3
            assert got == 2, f"gd_steps gave {got}, course_lib counts 2"
    text = str(err.value)
    assert text.startswith("✗ Exercise 2: a self-check failed: gd_steps gave 3, course_lib counts 2")
    assert "the check: assert got == 2" in text  # the failing line, from the traceback
    assert "Fix your code in the exercise's cell above" in text


def test_other_errors_keep_their_traceback():
    with pytest.raises(SelfCheckFailed) as err:
        with self_check("Exercise 3"):
            1 / 0
    assert "ZeroDivisionError" in str(err.value)
    assert isinstance(err.value.__cause__, ZeroDivisionError)


def _graded_cells(path):
    nb = nbformat.read(path, as_version=4)
    return nb, [c for c in nb.cells if c.cell_type == "code"
                and c.metadata.get("nbgrader", {}).get("grade")]


@pytest.mark.parametrize("chapter", CONVERTED)
def test_every_self_check_cell_uses_self_check(chapter):
    """Each graded cell is one `with self_check("Exercise N")` block whose asserts have a
    message, in solutions/ and in the released exercises/, and passes in the stored solution."""
    for folder in ("solutions", "exercises"):
        path = ROOT / folder / chapter / f"{chapter}_exercises.ipynb"
        nb, cells = _graded_cells(path)
        assert "from course_lib.checks import self_check" in "\n".join(
            c.source for c in nb.cells if c.cell_type == "code"), path
        for cell in cells:
            n = re.fullmatch(r"ex(\d+)-tests", cell.metadata.nbgrader.grade_id).group(1)
            tree = ast.parse(cell.source)
            assert len(tree.body) == 1 and isinstance(tree.body[0], ast.With), (
                f"{path.name} {cell.metadata.nbgrader.grade_id}: one `with self_check(...)` block")
            assert ast.unparse(tree.body[0].items[0].context_expr) == f"self_check('Exercise {n}')"
            visible = ast.parse(cell.source.split("### BEGIN HIDDEN TESTS")[0] + "\n    pass")
            asserts = [a for a in ast.walk(visible) if isinstance(a, ast.Assert)]
            assert asserts and all(a.msg is not None for a in asserts), (
                f"{path.name} {cell.metadata.nbgrader.grade_id}: every visible assert says what is wrong")
            assert "raises-exception" in cell.metadata.get("tags", []), "Run All goes on"
            if folder == "solutions":
                out = "".join(o.get("text", "") for o in cell.outputs)
                assert out.strip().splitlines()[-1] == PASSED.format(exercise=f"Exercise {n}"), out
