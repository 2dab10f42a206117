"""Self-checks in the exercises: a clear "✓ passed", and failures that say what to do.

Every graded test cell of ``solutions/chNN`` (and so of the student's ``exercises/chNN``) is one
block::

    with self_check("Exercise 2"):
        assert gd_steps(H, theta0, lr) == expected, f"gd_steps gave {got}, course_lib counts {expected}"
        ...

When the block runs through, it prints ``✓ Exercise 2: self-checks passed …``.  When it fails
it raises :class:`SelfCheckFailed` (an ``AssertionError``, so nbgrader grades it as a failure)
whose message names the exercise, the check that failed and what to do next:

* the exercise is not written yet (a ``NotImplementedError`` from the stub): which function
  still raises it, and to write it and run its cell before this one;
* a check failed: the ``assert`` line, its message, and to fix the code and run both cells;
* the student's code raised another error: the error (its traceback stays attached).

Cells with these blocks carry the ``raises-exception`` tag (``course_lib.tooling.notebooks`` adds it), so
*Run All* goes on to the next exercise after a failed self-check.
"""
from __future__ import annotations

import linecache
import traceback
from contextlib import contextmanager

__all__ = ["SelfCheckFailed", "self_check", "PASSED"]

PASSED = "✓ {exercise}: self-checks passed (your instructor's grader runs further, hidden tests)"
_RERUN = "then run that cell again, and this one."


class SelfCheckFailed(AssertionError):
    """A self-check did not pass; the message says why and what to do."""


def _failing_line(err: BaseException) -> str:
    """The source line where ``err`` was raised (the failing ``assert``)."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return (last.line or linecache.getline(last.filename, last.lineno or 0)).strip()


def _stub_name(err: BaseException) -> str:
    """The function whose body still raises ``NotImplementedError`` (the innermost frame)."""
    frames = traceback.extract_tb(err.__traceback__)
    return frames[-1].name if frames and frames[-1].name != "<module>" else ""


@contextmanager
def self_check(exercise: str):
    """Run one exercise's self-checks; print ✓ when they pass, explain when they do not."""
    try:
        yield
    except NotImplementedError as err:
        where = f"`{_stub_name(err)}`" if _stub_name(err) else "your code"
        raise SelfCheckFailed(
            f"✗ {exercise} is not done yet: {where} still raises NotImplementedError. Replace "
            f"the `raise NotImplementedError(...)` line in the exercise's cell above by your code, "
            f"{_RERUN}") from None
    except AssertionError as err:
        check = _failing_line(err)
        message = str(err).strip()
        raise SelfCheckFailed(
            f"✗ {exercise}: a self-check failed"
            + (f": {message}" if message else "")
            + (f"\n  the check: {check}" if check else "")
            + f"\n  Fix your code in the exercise's cell above, {_RERUN}") from None
    except Exception as err:
        raise SelfCheckFailed(
            f"✗ {exercise}: your code raised {type(err).__name__}: {err}\n  (the traceback "
            f"above shows where). Fix your code in the exercise's cell above, {_RERUN}") from err
    print(PASSED.format(exercise=exercise))
