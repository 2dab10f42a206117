"""Shared test set-up.

Unit tests draw without a screen.  (Only this process: notebook kernels started by nbval keep
their inline backend, so stored figures stay figures.)
"""
import matplotlib
import torch
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


@pytest.fixture(autouse=True)
def automatic_device_is_not_the_cpu(monkeypatch):
    """The device policy's guard, on a CPU-only machine: get_device()'s automatic choice becomes
    the meta device (tensors without data) for every test.  Library code that trains or computes
    on the automatic device, while its data stay on the CPU, then fails here as it would on a
    student's GPU machine ("Expected all tensors to be on the same device")."""
    monkeypatch.setattr("course_lib.utils._best_available", lambda: torch.device("meta"))
