"""Launch N worker processes that form a torch.distributed group, from Python or a notebook.

``torchrun`` (or ``python -m torch.distributed.run``) starts one process per GPU from the shell
and hands each its rank through environment variables.  A notebook wants the same from a
function call, and wants it safe: a worker that hangs or fails must not hang the kernel.
:func:`launch` does that with ``torch.multiprocessing``'s *spawn* start method:

==========================  ================================================================
``backend_for``             the one place the backend is chosen: ``"nccl"`` on CUDA, ``"gloo"``
                            on the CPU
``free_port``               a TCP port nobody listens on (for ``MASTER_PORT``)
``launch``                  run ``fn(rank, world_size, *args)`` in ``world_size`` processes
                            with a process group already initialized; returns the list of their
                            results (rank order), raises if one fails or all have not answered
                            within ``timeout`` seconds
==========================  ================================================================

Spawn starts fresh interpreters that import ``fn`` by name, so ``fn`` must live in an importable
module (``course_lib``), not in a notebook cell.  Each worker sees the environment torchrun would
set (``MASTER_ADDR=127.0.0.1``, ``MASTER_PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
runs with one thread, like the course's kernels.

References: Li et al. (2020), *PyTorch Distributed: experiences on accelerating data parallel
training*, VLDB; the torch.distributed documentation ("Writing distributed applications").
"""
from __future__ import annotations

import datetime
import os
import queue as queue_module
import socket
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["backend_for", "free_port", "launch", "WorkerError", "MASTER_ADDR"]

#: every worker of :func:`launch` runs on this machine
MASTER_ADDR = "127.0.0.1"


class WorkerError(RuntimeError):
    """A worker of :func:`launch` raised; the message holds its rank and traceback."""


def backend_for(device: str | torch.device = "cpu") -> str:
    """The collective-communication backend for tensors on ``device``.

    NCCL (NVIDIA's collective library) moves CUDA tensors GPU to GPU, over NVLink inside a
    machine and InfiniBand or TCP between machines; gloo works on CPU tensors (and, slowly,
    CUDA ones) everywhere.  So: ``"nccl"`` for a CUDA device when torch was built with NCCL,
    ``"gloo"`` otherwise.
    """
    device = torch.device(device)
    if device.type == "cuda" and dist.is_nccl_available():
        return "nccl"
    return "gloo"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((MASTER_ADDR, 0))
        return s.getsockname()[1]


def _worker(fn, rank: int, world_size: int, port: int, backend: str, timeout: float, args, results):
    """Body of each spawned process: join the group, run ``fn``, report to the parent."""
    os.environ.update(MASTER_ADDR=MASTER_ADDR, MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    try:
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=timeout))
        try:
            results.put((rank, True, fn(rank, world_size, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException:  # report everything, the parent decides
        results.put((rank, False, traceback.format_exc()))


def launch(fn: Callable[..., Any], world_size: int = 2, args: tuple = (), *,
           device: str | torch.device = "cpu", timeout: float = 120.0) -> list:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` new processes, each a member of one
    process group (backend :func:`backend_for` ``(device)``), and return their results by rank.

    ``fn`` and ``args`` must be picklable (``fn`` a module-level function of an importable
    module) and so must the results (use plain numbers, NumPy arrays or CPU tensors).
    Raises :class:`WorkerError` with the worker's traceback if one raises, and
    ``TimeoutError`` if the results are not all in after ``timeout`` seconds; either way every
    worker is stopped before this function returns, so nothing is left running.
    """
    if not (isinstance(world_size, int) and world_size >= 1):
        raise ValueError(f"Invalid world_size: {world_size!r} (expected an int >= 1)")
    if not timeout > 0:
        raise ValueError(f"Invalid timeout: {timeout!r} (expected a number > 0)")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port, backend = free_port(), backend_for(device)
    procs = [ctx.Process(target=_worker, daemon=True,
                         args=(fn, rank, world_size, port, backend, timeout, args, results))
             for rank in range(world_size)]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    deadline = time.monotonic() + timeout
    try:
        while len(out) < world_size:
            try:
                rank, ok, value = results.get(timeout=max(0.01, min(1.0, deadline - time.monotonic())))
            except queue_module.Empty:
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"{world_size - len(out)} of {world_size} workers did not "
                                       f"answer within {timeout} s") from None
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead and results.empty():
                    time.sleep(0.2)  # let a last message through the pipe
                    if results.empty():
                        raise WorkerError(f"a worker died with exit code {dead[0].exitcode}")
                continue
            if not ok:
                raise WorkerError(f"worker {rank} of {world_size} failed:\n{value}")
            out[rank] = value
    finally:
        for p in procs:
            p.join(timeout=max(0.0, min(10.0, deadline - time.monotonic())))
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(5)
        results.close()
    return [out[r] for r in range(world_size)]
