"""Shared test set-up.

Unit tests draw without a screen.  (Only this process: notebook kernels started by nbval keep
their inline backend, so stored figures stay figures.)
"""
import matplotlib
import pytest

from course_lib.utils import single_thread

matplotlib.use("Agg")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every test module runs torch on one thread, as the notebooks do (`make test` and
    `course_lib.notebooks execute` set OMP_NUM_THREADS=1): the chapters' measured numbers are
    asserted with the same rounding as the stored outputs, and tiny tensors run faster."""
    with single_thread():
        yield
