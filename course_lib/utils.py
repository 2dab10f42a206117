"""Small helpers shared by every module: seeding and device choice."""
from __future__ import annotations

import contextlib
import os
import random

import numpy as np
import torch


def seed_everything(seed: int = 0) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch Generator seeded alike.

    Runs on the CPU are then bit-for-bit repeatable.  On a GPU some kernels stay
    nondeterministic: wrap the run in :func:`deterministic` (or pass ``deterministic=True`` to
    ``train``) for bit-for-bit repeats there too.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Invalid seed: {seed!r} (expected a non-negative int)")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device asked for (checked to exist here), else the best one there is: cuda > mps > cpu.

    The course's device policy: the chapters' experiments are small and pin the CPU (faster
    there for tiny tensors, and the same numbers on every machine); ``train`` trains where the
    model is.  To train on the best device there is: ``model.to(get_device())``.
    """
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Invalid device: {device} (CUDA is not available here)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"Invalid device: {device} (MPS is not available here)")
        return device
    return _best_available()


def _best_available() -> torch.device:
    """cuda > mps > cpu.  (The test suite replaces this to catch code that relies on it.)"""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@contextlib.contextmanager
def deterministic():
    """Inside the ``with`` block, torch runs only deterministic kernels (then restores the settings).

    On the CPU the course's runs are deterministic anyway.  On CUDA some kernels (atomic adds in
    backward passes, cuDNN's autotuned convolutions, cuBLAS with a large workspace) make two
    identical runs differ in the last bits, and chaotic training amplifies that.  This sets
    ``torch.use_deterministic_algorithms(True)`` (an op with no deterministic kernel then raises
    a RuntimeError naming it), turns cuDNN's benchmark off and asks for deterministic cuDNN, and
    sets ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` when it is unset, as cuBLAS requires: that variable
    is read when CUDA starts, so set it before the first CUDA call of the process (or export it)
    to be sure.  Deterministic kernels can be slower.
    """
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2:]


@contextlib.contextmanager
def single_thread():
    """Run torch on one CPU thread inside the ``with`` block, then restore the setting.

    For loops over tiny tensors: waking a thread pool costs more than it saves (on a busy
    2-core machine two threads measured 20-40x slower), and results no longer depend on the
    machine's thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
