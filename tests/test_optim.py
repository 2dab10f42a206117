"""course_lib.optim against its reference, torch.optim, in float64 (table-driven).

Every optimizer runs side by side with its torch.optim namesake on the same random problems
(same minibatches), for a sweep of hyperparameters that turns every flag on and off;
parameters and state must agree to 1e-10 relative.  Then: identities between rules,
state_dict round trips, LR schedulers, the constructor signatures, and a table of invalid
arguments with their messages.
"""
from __future__ import annotations

import copy
import doctest
import inspect
import io
import math
import re
import warnings

import pytest
import torch

import course_lib
from course_lib import optim as co
from course_lib.optim import OPTIMIZERS, TORCH_EQUIVALENT

RTOL, ATOL = 1e-10, 1e-14
STEPS = 100


@pytest.fixture(autouse=True)
def float64_default():
    # torch.optim keeps scalar state (NAdam's mu_product) in the *default* dtype; float64
    # makes its reference numbers as precise as ours.  Restored after each test.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


# --- problems ------------------------------------------------------------------------------------

class Problem:
    """A random regression problem: a loss of a list of float64 parameter tensors."""

    def __init__(self, kind: str, seed: int = 0, n: int = 64, batch: int = 16):
        gen = torch.Generator().manual_seed(seed)
        self.kind = kind
        if kind == "lsq":  # least squares, w of shape (5,) and a 0-dim bias
            self.X = torch.randn(n, 5, generator=gen, dtype=torch.float64)
            w_true = torch.randn(5, generator=gen, dtype=torch.float64)
            self.y = self.X @ w_true + 0.1 * torch.randn(n, generator=gen, dtype=torch.float64)
            self.init = [torch.randn(5, generator=gen, dtype=torch.float64),
                         torch.tensor(0.5, dtype=torch.float64)]
        elif kind == "mlp":  # 4 -> 6 -> 3 tanh MLP, plus one parameter the loss never uses
            self.X = torch.randn(n, 4, generator=gen, dtype=torch.float64)
            self.y = torch.randn(n, 3, generator=gen, dtype=torch.float64)
            shapes = [(6, 4), (6,), (3, 6), (3,), (2, 2)]
            self.init = [0.5 * torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
        else:
            raise ValueError(kind)
        # the same minibatches for every optimizer that runs on this problem
        self.batches = [torch.randint(0, n, (batch,), generator=gen) for _ in range(STEPS)]

    def params(self) -> list[torch.Tensor]:
        return [p.clone().requires_grad_() for p in self.init]

    def loss(self, params, idx) -> torch.Tensor:
        X, y = self.X[idx], self.y[idx]
        if self.kind == "lsq":
            w, b = params
            return ((X @ w + b - y) ** 2).mean()
        W1, b1, W2, b2, _unused = params
        return ((torch.tanh(X @ W1.T + b1) @ W2.T + b2 - y) ** 2).mean()

    def groups(self, params, lr):
        """lsq: one group.  mlp: two groups, the second with half the learning rate."""
        if self.kind == "lsq":
            return params
        return [{"params": [params[0], params[1], params[4]]},
                {"params": [params[2], params[3]], "lr": 0.5 * lr}]


PROBLEMS = {kind: Problem(kind) for kind in ("lsq", "mlp")}


def default_of(name: str, arg: str):
    return inspect.signature(OPTIMIZERS[name]).parameters[arg].default


def train_step(problem, params, opt, idx, sign=1.0):
    opt.zero_grad()
    (sign * problem.loss(params, idx)).backward()
    opt.step()


def assert_same(ours, ref, ours_params, ref_params, rtol=RTOL, atol=ATOL):
    """Parameters and state (same keys, same values) agree."""
    for p, q in zip(ours_params, ref_params, strict=True):
        torch.testing.assert_close(p, q, rtol=rtol, atol=atol)
        if q.grad is None:  # never updated: ours keeps no state (torch's Adagrad does)
            assert not ours.state[p]
            continue
        mine, theirs = ours.state[p], ref.state[q]
        assert set(mine) == set(theirs)
        for key, value in mine.items():
            expected = theirs[key]
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(value, expected, rtol=rtol, atol=atol)
            else:  # scalar state: ours a Python number, torch's a 0-dim tensor
                assert value == pytest.approx(float(expected), rel=rtol), key


# --- 1. side by side with torch.optim -------------------------------------------------------------

SWEEP = {
    "SGD": [
        dict(lr=0.05),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.5),
        dict(lr=0.05, momentum=0.9, nesterov=True),
        dict(lr=0.05, weight_decay=0.1),
        dict(lr=0.02, momentum=0.5, dampening=0.1, weight_decay=0.1),
        dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True),
        dict(lr=0.05, maximize=True),
    ],
    "Adagrad": [
        dict(lr=0.1),
        dict(lr=0.1, lr_decay=0.05),
        dict(lr=0.1, weight_decay=0.1),
        dict(lr=0.1, initial_accumulator_value=0.5),
        dict(lr=0.1, eps=1e-3, maximize=True),
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1,
             maximize=True),
    ],
    "RMSprop": [
        dict(),
        dict(lr=0.005, alpha=0.9),
        dict(lr=0.005, centered=True),
        dict(lr=0.002, momentum=0.9),
        dict(lr=0.002, momentum=0.5, centered=True, weight_decay=0.1),
        dict(lr=0.01, eps=1e-3, weight_decay=0.1),
        dict(lr=0.002, momentum=0.9, centered=True, maximize=True),
    ],
    "Adadelta": [
        dict(),
        dict(rho=0.5),
        dict(lr=0.5, eps=1e-4),
        dict(weight_decay=0.1),
        dict(lr=2.0, rho=0.95, weight_decay=0.05, maximize=True),
    ],
    "Adam": [
        dict(lr=0.01),
        dict(lr=0.01, amsgrad=True),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, betas=(0.0, 0.99)),
        dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True),
    ],
    "AdamW": [
        dict(lr=0.01),
        dict(lr=0.01, weight_decay=0.0),
        dict(lr=0.01, weight_decay=0.5, amsgrad=True),
        dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, maximize=True),
    ],
    "NAdam": [
        dict(lr=0.01),
        dict(lr=0.01, momentum_decay=0.05),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.01, betas=(0.5, 0.9), eps=1e-4),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True, maximize=True),
    ],
}
CASES = [(name, kwargs) for name, sweep in SWEEP.items() for kwargs in sweep]


def case_id(case):
    name, kwargs = case
    return name + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


def test_sweep_covers_every_optimizer_and_flag():
    assert set(SWEEP) == set(OPTIMIZERS)
    for name, sweep in SWEEP.items():
        swept = {arg for kwargs in sweep for arg in kwargs}
        args = set(inspect.signature(OPTIMIZERS[name]).parameters) - {"params"}
        assert args <= swept | {"lr"}, (name, args - swept)


@pytest.mark.parametrize("kind", ["lsq", "mlp"])
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_torch(case, kind):
    name, kwargs = case
    problem = PROBLEMS[kind]
    lr = kwargs.get("lr", default_of(name, "lr"))
    ours_params, ref_params = problem.params(), problem.params()
    ours = OPTIMIZERS[name](problem.groups(ours_params, lr), **kwargs)
    ref = TORCH_EQUIVALENT[name](problem.groups(ref_params, lr), **kwargs)
    # maximize=True ascends, so ascend −J: the trajectory stays as tame as the descent on J
    sign = -1.0 if kwargs.get("maximize") else 1.0
    for t, idx in enumerate(problem.batches, start=1):
        ours.zero_grad()
        ref.zero_grad()
        # one backward pass for both copies (their parameters are disjoint, so each copy's
        # gradient is exactly that of its own loss)
        (sign * (problem.loss(ours_params, idx) + problem.loss(ref_params, idx))).backward()
        ours.step()
        ref.step()
        if t % 25 == 0:
            assert_same(ours, ref, ours_params, ref_params)
    moved = max((p - p0).abs().max().item() for p, p0 in zip(ours_params, problem.init))
    assert moved > 1e-2  # the comparison is not trivial


# --- 2. the pure functions, one tensor at a time -------------------------------------------------

UPDATES = {
    "SGD": co.sgd_update, "Adagrad": co.adagrad_update, "RMSprop": co.rmsprop_update,
    "Adadelta": co.adadelta_update, "Adam": co.adam_update, "AdamW": co.adam_update,
    "NAdam": co.nadam_update,
}


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_pure_function_on_one_tensor(case):
    """rule_update(theta, g, state, **kwargs) alone reproduces torch on a single tensor."""
    name, kwargs = case
    fn_kwargs = dict(kwargs)
    if name == "AdamW":  # the pure function is Adam's; AdamW is its decoupled setting
        fn_kwargs.setdefault("weight_decay", 1e-2)
        fn_kwargs["decoupled_weight_decay"] = True
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(3, 2, generator=gen)
    p = theta.clone().requires_grad_()
    ref = TORCH_EQUIVALENT[name]([p], **kwargs)
    state: dict = {}
    for _ in range(5):
        g = torch.randn(3, 2, generator=gen)
        g_before = g.clone()
        UPDATES[name](theta, g, state, **fn_kwargs)
        assert torch.equal(g, g_before)  # the caller's gradient is never modified
        p.grad = g.clone()
        ref.step()
        torch.testing.assert_close(theta, p.detach(), rtol=RTOL, atol=ATOL)
    assert set(state) == set(ref.state[p])
    assert state.get("step", 5) == 5


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pure_function_defaults_match_the_class(name):
    cls_params = inspect.signature(OPTIMIZERS[name]).parameters
    fn_params = inspect.signature(UPDATES[name]).parameters
    for arg, p in cls_params.items():
        if arg == "params" or (name == "AdamW" and arg == "weight_decay"):
            continue  # AdamW's λ = 0.01 default is the class's, the function is Adam's
        assert fn_params[arg].default == p.default, arg


@pytest.mark.parametrize("module", ["sgd", "adagrad", "rmsprop", "adadelta", "adam", "nadam"])
def test_docstring_examples_run(module):
    mod = getattr(co, module)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the examples print float32 tensors
    try:
        result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    finally:
        torch.set_default_dtype(previous)
    assert result.attempted > 0 and result.failed == 0


def test_docstrings_map_arguments_to_symbols_and_cite():
    for name, fn in UPDATES.items():
        doc = fn.__doc__
        assert ".. math::" in doc and "Reference" in doc, name
        for arg in inspect.signature(OPTIMIZERS[name]).parameters:
            if arg != "params":
                assert f"``{arg}``" in doc, (name, arg)


# --- 3. identities between rules ------------------------------------------------------------------

def run(name, kwargs, kind="lsq", steps=STEPS, on_step=None):
    """Train with our optimizer; return the parameters and the optimizer."""
    problem = PROBLEMS[kind]
    params = problem.params()
    opt = OPTIMIZERS[name](params, **kwargs)
    for t, idx in enumerate(problem.batches[:steps], start=1):
        if on_step is not None:
            on_step(opt, t)
        train_step(problem, params, opt, idx)
    return params, opt


def test_sgd_momentum_zero_is_plain_gradient_descent():
    problem = PROBLEMS["lsq"]
    params, _ = run("SGD", dict(lr=0.05, momentum=0.0, dampening=0.3))
    theta = problem.params()
    for idx in problem.batches:  # θ ← θ − εg, by hand
        g = torch.autograd.grad(problem.loss(theta, idx), theta)
        theta = [(p - 0.05 * gp).detach().requires_grad_() for p, gp in zip(theta, g)]
    for p, q in zip(params, theta):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)


def test_heavy_ball_equals_the_books_velocity_form():
    """DL book Alg. 8.2: v ← αv − εg, θ ← θ + v, v₀ = 0 (constant ε, no dampening)."""
    problem, alpha, lr = PROBLEMS["lsq"], 0.9, 0.02
    params, _ = run("SGD", dict(lr=lr, momentum=alpha))
    theta = problem.params()
    v = [torch.zeros_like(p) for p in theta]
    for idx in problem.batches:
        g = torch.autograd.grad(problem.loss(theta, idx), theta)
        v = [alpha * vi - lr * gi for vi, gi in zip(v, g)]
        theta = [(p + vi).detach().requires_grad_() for p, vi in zip(theta, v)]
    for p, q in zip(params, theta):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_nesterov_is_the_look_ahead_form_reparametrized():
    """Sutskever et al.: v ← αv − ε∇J(θ + αv), θ ← θ + v.  Ours (torch's form) tracks the
    look-ahead point φ = θ + αv, so its parameters equal θ + αv at every step."""
    problem, alpha, lr = PROBLEMS["lsq"], 0.9, 0.02
    params, _ = run("SGD", dict(lr=lr, momentum=alpha, nesterov=True))
    theta = problem.params()
    v = [torch.zeros_like(p) for p in theta]
    for idx in problem.batches:
        look_ahead = [(p + alpha * vi).detach().requires_grad_() for p, vi in zip(theta, v)]
        g = torch.autograd.grad(problem.loss(look_ahead, idx), look_ahead)
        v = [alpha * vi - lr * gi for vi, gi in zip(v, g)]
        theta = [(p + vi).detach() for p, vi in zip(theta, v)]
    for p, q, vi in zip(params, theta, v):
        torch.testing.assert_close(p, q + alpha * vi, rtol=1e-10, atol=1e-12)


def test_adam_with_beta1_zero_is_rmsprop_up_to_the_bias_correction_of_v():
    """β₁ = 0, δ = 0: Adam's step is ε g √(1 − ρᵗ) / √v; RMSProp's is ε g / √v.  So Adam with
    the learning rate ε_t = ε / √(1 − ρᵗ) is RMSProp exactly."""
    rho, lr = 0.9, 0.01
    rms, _ = run("RMSprop", dict(lr=lr, alpha=rho, eps=0.0))

    def undo_bias_correction(opt, t):
        opt.param_groups[0]["lr"] = lr / math.sqrt(1 - rho**t)

    adam, _ = run("Adam", dict(lr=lr, betas=(0.0, rho), eps=0.0), on_step=undo_bias_correction)
    for p, q in zip(adam, rms):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adamw_without_weight_decay_is_adam(amsgrad):
    kwargs = dict(lr=0.01, amsgrad=amsgrad)
    adamw, _ = run("AdamW", dict(kwargs, weight_decay=0.0), kind="mlp")
    adam, _ = run("Adam", kwargs, kind="mlp")
    for p, q in zip(adamw, adam):
        assert torch.equal(p, q)
    # and AdamW is Adam with decoupled weight decay
    adamw, _ = run("AdamW", dict(kwargs, weight_decay=0.1), kind="mlp")
    decoupled, _ = run("Adam", dict(kwargs, weight_decay=0.1, decoupled_weight_decay=True),
                       kind="mlp")
    for p, q in zip(adamw, decoupled):
        assert torch.equal(p, q)


# --- 4. state_dict, schedulers, closure, the torch.optim interface -------------------------------

FULL_STATE = {  # one setting per optimizer that fills every state slot it has
    "SGD": dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.1),
    "Adagrad": dict(lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1),
    "RMSprop": dict(lr=0.002, momentum=0.9, centered=True),
    "Adadelta": dict(rho=0.9, weight_decay=0.1),
    "Adam": dict(lr=0.01, amsgrad=True, weight_decay=0.1),
    "AdamW": dict(lr=0.01, amsgrad=True),
    "NAdam": dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_state_dict_round_trip_mid_run(name):
    problem, kwargs, half = PROBLEMS["mlp"], FULL_STATE[name], STEPS // 2
    lr = kwargs.get("lr", default_of(name, "lr"))
    params = problem.params()
    opt = OPTIMIZERS[name](problem.groups(params, lr), **kwargs)
    for idx in problem.batches[:half]:
        train_step(problem, params, opt, idx)
    buffer = io.BytesIO()  # through torch.save / torch.load, as a checkpoint would go
    torch.save({"params": [p.detach().clone() for p in params], "opt": opt.state_dict()},
               buffer)
    for idx in problem.batches[half:]:
        train_step(problem, params, opt, idx)

    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    resumed = [p.clone().requires_grad_() for p in checkpoint["params"]]
    opt2 = OPTIMIZERS[name](problem.groups(resumed, 123.0), **kwargs)  # lr overwritten by load
    opt2.load_state_dict(checkpoint["opt"])
    for idx in problem.batches[half:]:
        train_step(problem, resumed, opt2, idx)
    assert_same(opt2, opt, resumed, params, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_load_a_torch_optim_state_dict(name):
    """A checkpoint written by torch.optim resumes in ours (scalars arrive as tensors)."""
    problem, kwargs, half = PROBLEMS["mlp"], FULL_STATE[name], STEPS // 2
    lr = kwargs.get("lr", default_of(name, "lr"))
    ref_params = problem.params()
    ref = TORCH_EQUIVALENT[name](problem.groups(ref_params, lr), **kwargs)
    for idx in problem.batches[:half]:
        train_step(problem, ref_params, ref, idx)
    ours_params = [p.detach().clone().requires_grad_() for p in ref_params]
    ours = OPTIMIZERS[name](problem.groups(ours_params, lr), **kwargs)
    ours.load_state_dict(copy.deepcopy(ref.state_dict()))  # state_dict() shares tensors
    if name == "Adagrad":  # torch fills Adagrad's state for every parameter up front
        ours.state.pop(ours_params[4])
    for idx in problem.batches[half:]:
        train_step(problem, ours_params, ours, idx)
        train_step(problem, ref_params, ref, idx)
    assert_same(ours, ref, ours_params, ref_params)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_lr_scheduler_drives_ours_like_torch(name):
    problem, kwargs = PROBLEMS["mlp"], FULL_STATE[name]
    lr = kwargs.get("lr", default_of(name, "lr"))
    runs = []
    for cls in (OPTIMIZERS[name], TORCH_EQUIVALENT[name]):
        params = problem.params()
        opt = cls(problem.groups(params, lr), **kwargs)
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=20, gamma=0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "lr_scheduler.step() before optimizer.step()"
            for idx in problem.batches:
                train_step(problem, params, opt, idx)
                scheduler.step()
        assert opt.param_groups[1]["lr"] == pytest.approx(0.5 * lr * 0.5**5)
        runs.append((opt, params))
    (ours, ours_params), (ref, ref_params) = runs
    assert_same(ours, ref, ours_params, ref_params)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_step_with_closure(name):
    problem, kwargs = PROBLEMS["lsq"], FULL_STATE[name]
    runs = []
    for cls in (OPTIMIZERS[name], TORCH_EQUIVALENT[name]):
        params = problem.params()
        opt = cls(params, **kwargs)
        for idx in problem.batches[:10]:
            def closure():
                opt.zero_grad()
                loss = problem.loss(params, idx)
                loss.backward()
                return loss

            loss = opt.step(closure)
            assert loss.requires_grad  # the closure ran with autograd on
        runs.append((opt, params))
    (ours, ours_params), (ref, ref_params) = runs
    assert_same(ours, ref, ours_params, ref_params)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_sparse_gradients_are_refused(name):
    embedding = torch.nn.Embedding(5, 3, sparse=True)
    dense = torch.nn.Parameter(torch.ones(2))
    opt = OPTIMIZERS[name]([{"params": [dense]}, {"params": embedding.parameters()}])
    before = [dense.detach().clone(), embedding.weight.detach().clone()]
    (embedding(torch.tensor([1, 2])).sum() + dense.sum()).backward()
    with pytest.raises(RuntimeError, match=f"{name} does not support sparse gradients"):
        opt.step()
    assert torch.equal(dense, before[0]) and torch.equal(embedding.weight, before[1])
    assert not opt.state  # nothing was updated before the refusal


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_complex_parameters_are_refused(name):
    z = torch.nn.Parameter(torch.ones(2, dtype=torch.complex128))
    opt = OPTIMIZERS[name]([z])
    z.grad = torch.ones_like(z)
    with pytest.raises(RuntimeError, match=f"{name} does not support complex parameters"):
        opt.step()
    assert torch.equal(z, torch.ones_like(z))


OMITTED = {"foreach", "fused", "capturable", "differentiable"}  # torch's implementation flags


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_constructor_signature_is_torchs(name):
    ours = inspect.signature(OPTIMIZERS[name]).parameters
    theirs = {k: p for k, p in inspect.signature(TORCH_EQUIVALENT[name]).parameters.items()
              if k not in OMITTED}
    assert list(ours) == list(theirs)  # same names, same order
    for arg, p in ours.items():
        assert p.default == theirs[arg].default, arg
    positional = [k for k, p in ours.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == [k for k, p in theirs.items() if p.kind is p.POSITIONAL_OR_KEYWORD
                          ][: len(positional)]
    assert ours["maximize"].kind is inspect.Parameter.KEYWORD_ONLY


def test_registries_and_top_level_exports():
    assert list(OPTIMIZERS) == ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "NAdam"]
    for name, cls in OPTIMIZERS.items():
        assert issubclass(cls, torch.optim.Optimizer) and cls.__name__ == name
        assert TORCH_EQUIVALENT[name] is getattr(torch.optim, name)
        assert getattr(course_lib, name) is cls
    assert course_lib.OPTIMIZERS is OPTIMIZERS


# --- 5. invalid arguments -----------------------------------------------------------------------

INVALID = [
    # (optimizer, kwargs, message; torch raises ValueError too unless marked ours-only)
    ("SGD", dict(lr=-1.0), "Invalid learning rate: -1.0"),
    ("SGD", dict(lr=float("nan")), "Invalid learning rate: nan"),  # ours only
    ("SGD", dict(momentum=-0.5), "Invalid momentum value: -0.5"),
    ("SGD", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("SGD", dict(nesterov=True), "Nesterov momentum requires a momentum and zero dampening "
                                 "(got momentum=0, dampening=0)"),
    ("SGD", dict(nesterov=True, momentum=0.9, dampening=0.1),
     "Nesterov momentum requires a momentum and zero dampening "
     "(got momentum=0.9, dampening=0.1)"),
    ("Adagrad", dict(lr=-0.01), "Invalid learning rate: -0.01"),
    ("Adagrad", dict(lr_decay=-0.001), "Invalid lr_decay value: -0.001"),
    ("Adagrad", dict(weight_decay=-1.0), "Invalid weight_decay value: -1.0"),
    ("Adagrad", dict(initial_accumulator_value=-0.1),
     "Invalid initial_accumulator_value value: -0.1"),
    ("Adagrad", dict(eps=-1e-10), "Invalid epsilon value: -1e-10"),
    ("RMSprop", dict(lr=-0.01), "Invalid learning rate: -0.01"),
    ("RMSprop", dict(alpha=-0.1), "Invalid alpha value: -0.1"),
    ("RMSprop", dict(alpha=1.5), "Invalid alpha value: 1.5"),  # ours only
    ("RMSprop", dict(eps=-1e-08), "Invalid epsilon value: -1e-08"),
    ("RMSprop", dict(momentum=-0.9), "Invalid momentum value: -0.9"),
    ("RMSprop", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("Adadelta", dict(lr=-1.0), "Invalid learning rate: -1.0"),
    ("Adadelta", dict(rho=1.1), "Invalid rho value: 1.1"),
    ("Adadelta", dict(rho=-0.1), "Invalid rho value: -0.1"),
    ("Adadelta", dict(eps=-1e-06), "Invalid epsilon value: -1e-06"),
    ("Adadelta", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("Adam", dict(lr=-0.001), "Invalid learning rate: -0.001"),
    ("Adam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    ("Adam", dict(betas=(-0.1, 0.999)), "Invalid beta parameter at index 0: -0.1"),
    ("Adam", dict(betas=(0.9, 1.0)), "Invalid beta parameter at index 1: 1.0"),
    ("Adam", dict(betas=(0.9, -0.5)), "Invalid beta parameter at index 1: -0.5"),
    ("Adam", dict(eps=-1e-08), "Invalid epsilon value: -1e-08"),
    ("Adam", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("AdamW", dict(lr=-0.001), "Invalid learning rate: -0.001"),
    ("AdamW", dict(betas=(0.9, 1.5)), "Invalid beta parameter at index 1: 1.5"),
    ("AdamW", dict(weight_decay=-0.01), "Invalid weight_decay value: -0.01"),
    ("NAdam", dict(lr=-0.002), "Invalid learning rate: -0.002"),
    ("NAdam", dict(betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    ("NAdam", dict(eps=-1e-08), "Invalid epsilon value: -1e-08"),
    ("NAdam", dict(weight_decay=-0.1), "Invalid weight_decay value: -0.1"),
    ("NAdam", dict(momentum_decay=-0.004), "Invalid momentum_decay value: -0.004"),
]
# stricter than torch: SGD checks `lr < 0` (NaN passes), RMSprop only `alpha >= 0`
OURS_ONLY = {("SGD", "Invalid learning rate: nan"), ("RMSprop", "Invalid alpha value: 1.5")}


@pytest.mark.parametrize("name, kwargs, message", INVALID,
                         ids=[f"{n}-{m}" for n, _, m in INVALID])
def test_invalid_hyperparameters(name, kwargs, message):
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=re.escape(message)):
        OPTIMIZERS[name](params, **kwargs)
    # the message names the argument (or torch's words for it) and the value
    arg = list(kwargs)[-1]
    words = {"lr": "learning rate", "eps": "epsilon", "betas": "beta", "nesterov": "Nesterov"}
    assert words.get(arg, arg) in message
    if (name, message) not in OURS_ONLY:
        with pytest.raises(ValueError):  # the reference refuses it as well
            TORCH_EQUIVALENT[name](params, **kwargs)
