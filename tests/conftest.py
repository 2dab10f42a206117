"""Shared test set-up.

Unit tests draw without a screen.  (Only this process: notebook kernels started by nbval keep
their inline backend, so stored figures stay figures.)
"""
import os
import shutil
import tempfile

import matplotlib
import torch
import pytest

from course_lib.utils import SHARED_RESULTS_ENV, single_thread

matplotlib.use("Agg")
_CREATED = []


def pytest_configure(config):
    """One folder per test run where `course_lib.utils.shared_result` keeps the expensive
    experiments a chapter and its tests both run: whichever runs first computes, the other
    loads (see its docstring).  Set here, in the first pytest process, before xdist starts its
    workers and nbval its kernels, which all inherit it."""
    if not os.environ.get(SHARED_RESULTS_ENV):
        os.environ[SHARED_RESULTS_ENV] = tempfile.mkdtemp(prefix="course-lib-shared-")
        _CREATED.append(os.environ[SHARED_RESULTS_ENV])


def pytest_unconfigure(config):
    for folder in _CREATED:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Every test module runs torch on one thread, as the notebooks do (`make test` and
    `course_lib.tooling.notebooks execute` set OMP_NUM_THREADS=1): the chapters' measured numbers are
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
