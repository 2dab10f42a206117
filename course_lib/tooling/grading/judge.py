"""The judge: re-runs the trusted test code in a clean interpreter, on the student's values.

``python -m course_lib.tooling.grading.judge PLAN LOG VERDICT`` (run in the sandbox, with no access to
the student's files other than the log).  PLAN is the exercise notebook from ``solutions/``
(hidden tests included) reduced to its code cells; LOG is what
:mod:`course_lib.tooling.grading.recorder` wrote in the student's kernel.

No student code runs here.  The instructor's cells run in order in a fresh IPython shell;
solution cells are not run: the names they define are bound to *replayers*, which return, call
by call, the values recorded in the student's process (decoded by :mod:`.codec` into exact
built-in, numpy and torch types), re-apply the in-place changes and random-state moves the
student's code made, call the test's own callbacks with the recorded arguments, and route
gradients through recorded Jacobians.  So every ``assert`` of a test cell is evaluated by the
real ``np.allclose``, ``math.isclose``, ``AssertionError``... on plain values: patched
functions, ``str``/``float`` subclasses, input transformers or an edited ``sys.modules`` in the
student's kernel do not exist here.  A test cell passes when it runs without an exception.
"""
from __future__ import annotations

import builtins
import functools
import json
import sys
import traceback

if __package__:
    from .codec import Unavailable, decode
else:  # run as a script (fast start, without importing the course_lib package first)
    from codec import Unavailable, decode  # type: ignore[no-redef]
    del sys.path[0]  # the trusted cells must not import this folder's modules by accident

MAX_LOG_BYTES = 1 << 30


class Replay:
    def __init__(self, groups: dict[str, dict]):
        self.groups = groups
        self.queue: list | None = None
        self.key = None

    def begin(self, key):
        group = self.groups.get(key)
        self.key = key
        self.queue = list(group["calls"]) if group else None

    def next_call(self, name):
        if self.queue is None:
            raise AssertionError(
                f"grader: `{name}(...)` has no recorded result: in the student's notebook this "
                "cell did not run to the end (see the output above)")
        if not self.queue:
            raise AssertionError(
                f"grader: `{name}(...)` has no recorded result: the student's notebook stopped "
                "calling it earlier in this cell (an error, a timeout or changed code)")
        call = self.queue.pop(0)
        if not isinstance(call, dict) or call.get("fn") != name:
            self.queue = []
            raise AssertionError(f"grader: the recorded calls do not match the tests here "
                                 f"(expected `{name}`, recorded `{call.get('fn') if isinstance(call, dict) else '?'}`)")
        return call

    def replayer(self, name):
        replay = self

        def answer(*args, **kwargs):
            call = replay.next_call(name)
            args = list(args)
            for pos, enc_args, enc_kwargs in call.get("cb", []):
                target = _slot(args, kwargs, pos)
                if callable(target):
                    try:
                        a, k = decode(enc_args), decode(enc_kwargs)
                        target(*a, **{str(key): v for key, v in k.items()})
                    except Exception:  # noqa: BLE001 - only the callback's side effects matter
                        pass
            for pos, enc in call.get("mut", []):
                _apply(_slot(args, kwargs, pos), decode(enc))
            for which, enc in call.get("rng", {}).items():
                _set_rng(which, decode(enc))
            if call.get("exc"):
                ename, message = call["exc"]
                cls = getattr(builtins, str(ename), None)
                if isinstance(cls, type) and issubclass(cls, Exception):
                    raise cls(message)
                raise RuntimeError(f"{ename}: {message}")
            result = decode(call["res"])
            return _with_gradients(result, call.get("grad", []), args, kwargs)

        answer.__name__ = answer.__qualname__ = name
        return answer


def _slot(args, kwargs, pos):
    if isinstance(pos, int):
        return args[pos] if 0 <= pos < len(args) else None
    return kwargs.get(pos)


def _apply(target, value):
    """Repeat an in-place change the student's code made to an argument."""
    import numpy as np
    import torch
    try:
        if isinstance(target, torch.Generator) and isinstance(value, torch.Tensor):
            target.set_state(value)
        elif isinstance(target, torch.Tensor) and isinstance(value, torch.Tensor):
            with torch.no_grad():
                if target.shape == value.shape:
                    target.copy_(value)
        elif isinstance(target, np.random.Generator) and isinstance(value, dict):
            target.bit_generator.state = value
        elif isinstance(target, np.ndarray) and isinstance(value, np.ndarray):
            if target.shape == value.shape:
                target[...] = value
        elif isinstance(target, list) and isinstance(value, list):
            target[:] = value
        elif isinstance(target, dict) and isinstance(value, dict):
            target.clear()
            target.update(value)
    except Exception:  # noqa: BLE001 - a change that cannot be repeated is left out
        pass


def _set_rng(which, state):
    import random
    import numpy as np
    import torch
    try:
        if which == "py":
            random.setstate(state)
        elif which == "np":
            np.random.set_state(state)
        elif which == "torch":
            torch.set_rng_state(state)
    except Exception:  # noqa: BLE001
        pass


def _with_gradients(result, grads, args, kwargs):
    """Attach the recorded Jacobians, so that ``.backward()`` reaches the test's tensors."""
    if not grads:
        return result
    import torch

    def attach(index, value):
        mine = [(_slot(args, kwargs, pos), decode(jac)) for i, pos, jac in grads if i == index]
        mine = [(leaf, jac) for leaf, jac in mine
                if isinstance(leaf, torch.Tensor) and leaf.requires_grad and isinstance(jac, torch.Tensor)
                and jac.shape[0] == value.numel() and tuple(jac.shape[1:]) == tuple(leaf.shape)]
        if not mine or not isinstance(value, torch.Tensor):
            return value
        return _replayed().apply(value.detach(), [j for _, j in mine], *[leaf for leaf, _ in mine])

    if isinstance(result, tuple):
        return tuple(attach(i, v) for i, v in enumerate(result))
    return attach(None, result)


@functools.lru_cache(maxsize=None)
def _replayed():
    import torch

    class Replayed(torch.autograd.Function):
        @staticmethod
        def forward(ctx, value, jacobians, *leaves):
            ctx.jacobians = jacobians
            ctx.shapes = [leaf.shape for leaf in leaves]
            return value.clone()

        @staticmethod
        def backward(ctx, grad_output):
            flat = grad_output.reshape(-1).to(ctx.jacobians[0].dtype)
            grads = [(flat @ jac.reshape(jac.shape[0], -1)).reshape(shape)
                     for jac, shape in zip(ctx.jacobians, ctx.shapes)]
            return (None, None, *grads)

    return Replayed


# --------------------------------------------------------------------------- running
def read_log(path: str, keys: set[str]) -> dict[str, dict]:
    """The first complete record of each trusted cell; anything malformed ends the log."""
    groups: dict[str, dict] = {}
    with open(path, "rb") as fh:
        data = fh.read(MAX_LOG_BYTES)
    for line in data.splitlines():
        try:
            group = json.loads(line)
        except (ValueError, RecursionError):
            break
        if not isinstance(group, dict) or not isinstance(group.get("calls"), list) \
                or not isinstance(group.get("snap"), dict):
            break
        key = group.get("key")
        if key in keys and key not in groups:
            groups[key] = group
    return groups


def _error_summary(err: BaseException, filename: str) -> dict:
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == filename]
    where = f"line {frames[-1].lineno}: {frames[-1].line}" if frames and frames[-1].line else ""
    evalue = str(err)
    return {"ename": type(err).__name__, "evalue": evalue[:4000], "where": where}


def judge(plan: dict, log_path: str) -> dict:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    keys = {c["key"] for c in plan["cells"] if c.get("key")}
    replay = Replay(read_log(log_path, keys))
    ns = shell.user_ns
    pending: list[str] = []
    verdicts = {}
    for number, cell in enumerate(plan["cells"]):
        if cell["kind"] == "solution":
            pending += cell["names"]
            if cell.get("imports"):  # the solution's own imports: trusted code, run here
                with capture_output(display=True):
                    try:
                        exec(compile(cell["imports"], f"<cell {number}>", "exec"), ns)  # noqa: S102
                    except Exception:  # noqa: BLE001
                        pass
            continue
        group = replay.groups.get(cell["key"])
        if group is not None and pending:
            for name in pending:
                enc = group["snap"].get(name)
                if enc is None:
                    ns.pop(name, None)
                elif enc == ["fn"]:
                    ns[name] = replay.replayer(name)
                elif isinstance(enc, list) and enc[:1] == ["m"]:
                    pass  # a module: the instructor's cells import what the tests use
                else:
                    try:
                        value = decode(enc)
                    except Exception as err:  # noqa: BLE001 - a malformed value
                        value = Unavailable(f"malformed value: {err}")
                    ns[name] = value
            pending = []
        replay.begin(cell["key"])
        filename = f"<cell {number}>"
        error = None
        with capture_output(display=True):
            try:
                code = compile(shell.transform_cell(cell["source"]), filename, "exec")
                exec(code, ns)  # noqa: S102 - the instructor's own test code
            except Exception as err:  # noqa: BLE001 - a failing test
                error = _error_summary(err, filename)
        if cell["kind"] == "test":
            verdicts[cell["grade_id"]] = {"passed": error is None, "error": error}
    return verdicts


def main(argv: list[str] | None = None) -> int:
    plan_path, log_path, out_path = (argv or sys.argv[1:])[:3]
    with open(plan_path, encoding="utf-8") as fh:
        plan = json.load(fh)
    verdicts = judge(plan, log_path)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump(verdicts, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
