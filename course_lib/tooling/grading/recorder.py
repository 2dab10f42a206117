"""Records, inside the student's kernel, what the student's answers returned to the tests.

Installed by :mod:`course_lib.tooling.grading.runner` before the first cell.  Before each *trusted* cell
(a test cell, or an instructor's cell left unchanged; recognised by the SHA-256 of its source)
the answer functions (the names the exercise's solution cells define) are wrapped; every call
the trusted cell makes to them is written to a JSON-lines log: the encoded result or exception,
the arguments it changed in place, the random-number states it moved, the calls it made to
function arguments (callbacks) and, for tensors that need it, their Jacobian with respect to the
arguments that require grad.  Non-function answers (a number computed at the top level of a
solution cell) are snapshotted.

Nothing here is trusted: the student's code runs in this process and may change or bypass all
of it.  It exists so that honest work can be *replayed* in the judge
(:mod:`course_lib.tooling.grading.judge`), which re-runs the trusted test code in a clean process and
accepts only values that pass the tests there.  A forged log can only contain values; a value
passes only if it is right.
"""
from __future__ import annotations

import functools
import hashlib
import json
import random
import types

import numpy as np

try:
    from .codec import encode
except ImportError:  # loaded as a plain module in the kernel, without the course_lib package
    from codec import encode  # type: ignore[no-redef]

MAX_JACOBIAN_ROWS = 64
_CALLBACK_TYPES = (types.FunctionType, types.MethodType, functools.partial, types.LambdaType)


def key_of(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


class Recorder:
    def __init__(self, shell, log_path: str, trusted: dict[str, list[str]], names: list[str]):
        self.shell = shell
        self.log = open(log_path, "a", encoding="utf-8")
        self.trusted = trusted        # sha256(source) -> keys of its occurrences, in order
        self.names = list(names)      # the answer names of the exercise
        self.seen: dict[str, int] = {}
        self.group: dict | None = None
        self.active: dict | None = None   # the call being recorded

    # -- IPython events
    def pre_run_cell(self, info):
        sha = key_of(info.raw_cell or "")
        self.group = None
        keys = self.trusted.get(sha)
        if not keys:
            return
        n = self.seen.get(sha, 0)
        self.seen[sha] = n + 1
        if n >= len(keys):
            return
        self.group = {"key": keys[n], "snap": self._snapshot(), "calls": []}

    def post_run_cell(self, result):
        if self.group is not None:
            self.log.write(json.dumps(self.group) + "\n")
            self.log.flush()
        self.group = None

    # -- answers
    def _snapshot(self) -> dict:
        ns, snap = self.shell.user_ns, {}
        for name in self.names:
            if name not in ns:
                continue
            value = ns[name]
            if isinstance(value, types.ModuleType):
                snap[name] = ["m", str(getattr(value, "__name__", ""))]
            elif callable(value):
                if not getattr(value, "__grader_wrapped__", False):
                    ns[name] = self._wrap(name, value)
                snap[name] = ["fn"]
            else:
                snap[name] = encode(value)
        return snap

    def _wrap(self, name, fn):
        rec = self

        def wrapper(*args, **kwargs):
            if rec.group is None or rec.active is not None:
                return fn(*args, **kwargs)
            return rec._call(name, fn, list(args), dict(kwargs))

        try:
            functools.update_wrapper(wrapper, fn)
        except Exception:  # noqa: BLE001 - a callable object without the usual attributes
            pass
        wrapper.__grader_wrapped__ = True
        return wrapper

    def _call(self, name, fn, args, kwargs):
        call = {"fn": name, "cb": [], "mut": [], "rng": {}, "grad": []}
        slots = [(i, v) for i, v in enumerate(args)] + list(kwargs.items())
        for pos, value in slots:
            if isinstance(value, _CALLBACK_TYPES) and not getattr(value, "__grader_wrapped__", False):
                _put(args, kwargs, pos, self._callback(call, pos, value))
        before = {pos: _state(value) for pos, value in slots}
        rng_before = _rng_tokens()
        self.active = call
        try:
            result = fn(*args, **kwargs)
        except Exception as err:
            call["exc"] = [type(err).__name__, str(err)[:2000]]
            raise
        else:
            call["res"] = encode(result)
            self._gradients(call, result, slots)
            return result
        finally:
            self.active = None
            for pos, value in slots:
                after = _state(value)
                if after is not None and not _same(before[pos], after):
                    call["mut"].append([pos, encode(_plain_state(value))])
            for which, token in _rng_tokens().items():
                if not _same(rng_before[which], token):
                    call["rng"][which] = encode(_rng_state(which))
            if self.group is not None:
                self.group["calls"].append(call)

    def _callback(self, call, pos, cb):
        rec = self

        def proxy(*a, **k):
            if rec.active is call:
                call["cb"].append([pos, encode(list(a)), encode(dict(k))])
            return cb(*a, **k)

        proxy.__grader_wrapped__ = True
        try:
            functools.update_wrapper(proxy, cb)
        except Exception:  # noqa: BLE001
            pass
        return proxy

    @staticmethod
    def _gradients(call, result, slots):
        import sys
        torch = sys.modules.get("torch")
        if torch is None:
            return
        leaves = [(pos, v) for pos, v in slots if isinstance(v, torch.Tensor) and v.requires_grad]
        if not leaves:
            return
        outs = [(None, result)] if isinstance(result, torch.Tensor) else \
            list(enumerate(result)) if isinstance(result, tuple) else []
        for index, out in outs:
            if not isinstance(out, torch.Tensor) or out.grad_fn is None or \
                    out.numel() > MAX_JACOBIAN_ROWS or not out.is_floating_point():
                continue
            try:
                rows = [torch.autograd.grad(o, [v for _, v in leaves], retain_graph=True,
                                            allow_unused=True) for o in out.reshape(-1)]
            except Exception:  # noqa: BLE001 - not differentiable: the judge's backward fails
                continue
            for k, (pos, leaf) in enumerate(leaves):
                jac = torch.stack([r[k] if r[k] is not None else torch.zeros_like(leaf)
                                   for r in rows]).detach()
                call["grad"].append([index, pos, encode(jac)])


def _put(args, kwargs, pos, value):
    if isinstance(pos, int):
        args[pos] = value
    else:
        kwargs[pos] = value


def _state(value):
    """A cheap token that changes when ``value`` is changed in place (None: not tracked)."""
    import sys
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return ("t", value._version, value.data_ptr(), tuple(value.shape))
        if isinstance(value, torch.Generator):
            return ("g", value.get_state())
    if isinstance(value, np.ndarray):
        return ("a", value.shape, value.dtype.str, value.tobytes())
    if isinstance(value, np.random.Generator):
        return ("G", json.dumps(encode(value.bit_generator.state)))
    if isinstance(value, list):
        return ("l", [(id(v), _state(v)) for v in value])
    if isinstance(value, dict):
        return ("d", [(k, id(v), _state(v)) for k, v in value.items()])
    return None


def _plain_state(value):
    import sys
    torch = sys.modules.get("torch")
    if torch is not None:
        if isinstance(value, torch.Tensor):
            return value.detach().clone()
        if isinstance(value, torch.Generator):
            return value.get_state()
    if isinstance(value, np.random.Generator):
        return value.bit_generator.state
    return value


def _same(a, b):
    try:
        return _same_unchecked(a, b)
    except Exception:  # noqa: BLE001 - cannot tell: treat as changed
        return False


def _same_unchecked(a, b):
    import sys
    torch = sys.modules.get("torch")
    if type(a) is not type(b):
        return False
    if torch is not None and isinstance(a, torch.Tensor):
        return a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, tuple) and a and a[0] == "g":
        return bool(torch.equal(a[1], b[1]))
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.tobytes() == b.tobytes()
    return a == b


def _rng_tokens() -> dict:
    import sys
    tokens = {"py": random.getstate(), "np": json.dumps(encode(np.random.get_state(legacy=False)))}
    torch = sys.modules.get("torch")
    if torch is not None:
        tokens["torch"] = ("g", torch.get_rng_state())
    return tokens


def _rng_state(which):
    import sys
    if which == "py":
        return random.getstate()
    if which == "np":
        return np.random.get_state(legacy=False)
    return sys.modules["torch"].get_rng_state()


def install(shell, log_path: str, trusted: dict[str, list[str]], names: list[str]) -> Recorder:
    rec = Recorder(shell, log_path, trusted, names)
    shell.events.register("pre_run_cell", rec.pre_run_cell)
    shell.events.register("post_run_cell", rec.post_run_cell)
    return rec
