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
    nondeterministic; we do not force ``torch.use_deterministic_algorithms`` because it
    makes several of them refuse to run.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Invalid seed: {seed!r} (expected a non-negative int)")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    return torch.Generator().manual_seed(seed)


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to train on: the one asked for, else cuda > mps > cpu."""
    if device is not None:
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Invalid device: {device} (CUDA is not available here)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError(f"Invalid device: {device} (MPS is not available here)")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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
