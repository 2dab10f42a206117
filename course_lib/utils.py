"""Small helpers shared by every module: seeding, device choice, threads, and results shared
between a notebook and its tests."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import os
import pickle
import random
import types
from pathlib import Path

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


# --- one computation shared by a notebook and its tests ------------------------------------------
SHARED_RESULTS_ENV = "COURSE_LIB_SHARED_RESULTS"
_SIMPLE = (type(None), bool, int, float, str)


def _canonical(value):
    """A stable text for simple arguments; TypeError for anything else (then nothing is shared)."""
    if isinstance(value, _SIMPLE):
        return repr(value)
    if isinstance(value, (np.integer, np.floating)):
        return repr(value.item())
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}({','.join(_canonical(v) for v in value)})"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ",".join(f"{k!r}:{_canonical(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return f"array({value.dtype},{value.shape},{hashlib.sha256(value.tobytes()).hexdigest()})"
    if isinstance(value, (type, types.FunctionType)):
        if "<" in value.__qualname__:  # a lambda or a local function: its name says too little
            raise TypeError(f"not shareable: {value.__qualname__}")
        return f"{value.__module__}.{value.__qualname__}"
    if (hasattr(value, "__dict__") and not callable(value)
            and not isinstance(value, (types.ModuleType, torch.nn.Module))):
        return f"{type(value).__module__}.{type(value).__qualname__}{_canonical(vars(value))}"
    raise TypeError(f"not shareable: {type(value).__name__}")


@functools.lru_cache(maxsize=1)
def _library_digest() -> str:
    """A digest of course_lib's source: a change to any module invalidates every shared result."""
    h = hashlib.sha256(torch.__version__.encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


_GENERATORS = {  # name: (get state, set state, (owner, name of its seeding function))
    "random": (random.getstate, random.setstate, (random, "seed")),
    "numpy": (np.random.get_state, np.random.set_state, (np.random, "seed")),
    "torch": (torch.get_rng_state, torch.set_rng_state, (torch, "manual_seed")),
}


def _digest(state) -> str:
    """Of a generator's state (torch's is a tensor, whose pickle is not byte-stable)."""
    if isinstance(state, torch.Tensor):
        state = state.numpy()
    if isinstance(state, np.ndarray):
        return hashlib.sha256(state.tobytes()).hexdigest()
    if isinstance(state, tuple):
        return hashlib.sha256("".join(_digest(x) for x in state).encode()).hexdigest()
    return hashlib.sha256(repr(state).encode()).hexdigest()


@contextlib.contextmanager
def _watch_global_rngs(record: dict):
    """Record, per global generator, whether the call leaves it untouched, reseeds it before
    drawing from it (then what follows does not depend on the caller's state), or draws from the
    caller's state (then the result may depend on it)."""
    entry = {g: _digest(get()) for g, (get, _, _) in _GENERATORS.items()}
    first_seed = {}
    originals = {}
    for g, (get, _, (owner, name)) in _GENERATORS.items():
        original = getattr(owner, name)
        originals[g] = (owner, name, original)

        def seeding(*args, _g=g, _get=get, _original=original, **kwargs):
            first_seed.setdefault(_g, _digest(_get()) == entry[_g])
            return _original(*args, **kwargs)
        setattr(owner, name, seeding)
    try:
        yield
    finally:
        for owner, name, original in originals.values():
            setattr(owner, name, original)
        for g, (get, _, _) in _GENERATORS.items():
            state = get()
            if _digest(state) == entry[g]:
                record[g] = ("untouched", None, None)
            elif first_seed.get(g):
                record[g] = ("reseeded", None, state)
            else:
                record[g] = ("drawn", entry[g], state)


def _replay_global_rngs(record: dict) -> bool:
    """Leave every global generator as the computation left it, if that does not depend on the
    caller's state; False (compute instead) when it does and the caller's state differs."""
    for g, (kind, entry, _) in record.items():
        if kind == "drawn" and _digest(_GENERATORS[g][0]()) != entry:
            return False
    for g, (kind, _, state) in record.items():
        if kind != "untouched":
            _GENERATORS[g][1](state)
    return True


def _load(path: Path):
    try:
        return pickle.loads(path.read_bytes())
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, ValueError):
        return None


def shared_result(fn):
    """Decorator for an expensive experiment that a chapter and its tests both run.

    It changes nothing unless the environment variable ``COURSE_LIB_SHARED_RESULTS`` names a
    folder, which only the test suite sets (``tests/conftest.py``, a new empty folder per run).
    Then the first call with given arguments — in the notebook's kernel under nbval or in a test
    — computes as usual and stores the result; a later call with the same arguments, the same
    ``course_lib`` source, torch version, kernel set and thread count loads it instead of
    computing it again.  So each experiment runs once per test run, on the machine under test,
    and both the stored notebook (nbval) and the tests' assertions check that one computation.

    Global random generators (``random``, NumPy's, torch's) come out as if the function had run:
    a generator the function reseeds before drawing from it, or never touches, is independent of
    the caller; one it draws from without reseeding first makes the result depend on the
    caller's state, so a later call shares the result only when that state is the same.

    Calls whose arguments are not plain numbers, strings, arrays, tensors, named functions or
    classes, or tuples, lists, dicts and plain objects of them (a lambda, a module, an
    ``nn.Module`` is not), or whose result cannot be pickled, are simply computed.  The uppercase
    module constants the function reads are part of the key.
    """
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        folder = os.environ.get(SHARED_RESULTS_ENV)
        if not folder:
            return fn(*args, **kwargs)
        try:
            inner = inspect.unwrap(fn)  # through functools.wraps / lru_cache to the code
            constants = {n: inner.__globals__[n] for n in inner.__code__.co_names
                         if n.isupper() and n in inner.__globals__}
            key = hashlib.sha256("|".join([
                _library_digest(), fn.__module__, fn.__qualname__, _canonical(list(args)),
                _canonical(kwargs), _canonical(constants),
                os.environ.get("ATEN_CPU_CAPABILITY", ""), str(torch.get_num_threads()),
                str(torch.get_default_dtype())]).encode()
            ).hexdigest()
        except (TypeError, AttributeError):
            return fn(*args, **kwargs)
        path = Path(folder) / f"{fn.__qualname__}-{key[:24]}.pkl"
        stored = _load(path)
        if stored is not None:
            if _replay_global_rngs(stored[1]):
                return stored[0]
            # computed from another caller's random state: one file per such state
            drawn = sorted(g for g, (kind, _, _) in stored[1].items() if kind == "drawn")
            states = "".join(_digest(_GENERATORS[g][0]()) for g in drawn)
            path = path.with_name(f"{path.stem}-{hashlib.sha256(states.encode()).hexdigest()[:16]}.pkl")
            stored = _load(path)
            if stored is not None and _replay_global_rngs(stored[1]):
                return stored[0]
        record = {}
        with _watch_global_rngs(record):
            result = fn(*args, **kwargs)
        try:
            data = pickle.dumps((result, record))
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except (OSError, pickle.PicklingError, TypeError, AttributeError):
            pass
        return result
    return wrapper
