r"""Adaptive learning rates: AdaGrad, RMSProp (plain and centered) and AdaDelta, measured.

The Deep Learning book (Goodfellow, Bengio & Courville, 2016, §8.5.1–8.5.2) presents three
rules that give every parameter its own learning rate, read off the history of its own
gradient.  The update rules themselves live in :mod:`course_lib.optim`; this module holds the
experiments of chapter 11, which *read the rates out of the optimizers' state* while they run:

.. math::

    \text{AdaGrad:}\ \ \eta_{t,i} = \frac{\epsilon}{\delta + \sqrt{r_{t,i}}},\ \
    r_t = \sum_{k \le t} g_k^2 ; \qquad
    \text{RMSProp:}\ \ r_t = \rho\, r_{t-1} + (1-\rho)\, g_t^2 ; \qquad
    \text{AdaDelta:}\ \ \eta_{t,i} = \epsilon\,\frac{\sqrt{u_{t-1,i} + \delta}}{\sqrt{r_{t,i} + \delta}} .

Each step moves coordinate i by η_{t,i} g_{t,i}: η_t is the *effective learning rate* of that
coordinate at step t.

Contents:

- :func:`effective_lr`: η_t of the step an optimizer just took, read from its state.
- :class:`NoisyQuadratic`, :class:`SparseRegression`: two stochastic problems with a known
  expected cost (a noisy axis-aligned quadratic or tilted plane; online linear regression whose
  features are rarely nonzero).
- :func:`run_with_rates`, :func:`run_phases`, :func:`race`: run optimizers on such a problem
  (or on any :class:`~course_lib.landscapes.Landscape`, or on several in turn) and record the
  path, gradients, costs, η_t and the final state (:class:`RateRun`).
- :func:`log_log_slope`, :func:`steps_to_reach`, :func:`preconditioned_condition_number`:
  summaries of runs.
- :func:`switch_experiment`: AdaGrad's shrinking rate against RMSProp's level one, and what
  happens when the minimum moves.
- :func:`centered_vs_plain`: mean step of plain and centered RMSProp on a noisy slope, against
  the signal-to-noise ratio.
- :func:`state_in_units`, :func:`unit_step_ratio`, :func:`unit_exponents`: how a step scales
  when the parameters are measured in other units (θ′ = cθ).
- :func:`sparse_experiment`: AdaGrad against SGD on rare and frequent features.
- :func:`explorer_run`, :func:`rate_explorer`: the chapter's widget (optimizer, ε, ρ → path
  and η_t).
- The settings of chapter 11 (``SCALED``, ``SWITCH``, ``CENTERED``, ``UNITS``, ``SPARSE``, …)
  in one place, so that the notebook and its tests use the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from course_lib.landscapes import Landscape, Quadratic
from course_lib.optim import SGD, Adadelta, Adagrad, RMSprop

__all__ = [
    "effective_lr", "NoisyQuadratic", "SparseRegression", "RateRun", "run_phases",
    "run_with_rates", "race", "log_log_slope", "steps_to_reach", "switch_experiment",
    "centered_vs_plain", "UNIT_POWERS", "state_in_units", "unit_step_ratio", "unit_exponents",
    "sparse_experiment", "preconditioned_condition_number", "OPTIMIZER_CHOICES",
    "explorer_run", "rate_explorer",
]


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


# ----------------------------------------------------------------------------------------
# The effective learning rate, read from an optimizer's state
# ----------------------------------------------------------------------------------------
def _rule(optimizer: torch.optim.Optimizer) -> str:
    """'SGD', 'Adagrad', 'RMSprop' or 'Adadelta', for ours and for torch.optim's classes."""
    for name, ours in (("SGD", SGD), ("Adagrad", Adagrad), ("RMSprop", RMSprop),
                       ("Adadelta", Adadelta)):
        if isinstance(optimizer, (ours, getattr(torch.optim, name))):
            return name
    raise ValueError(f"Invalid optimizer: {type(optimizer).__name__} (expected SGD, Adagrad, "
                     "RMSprop or Adadelta, from course_lib.optim or torch.optim)")


def effective_lr(optimizer: torch.optim.Optimizer, theta: torch.Tensor, *,
                 acc_delta_before: torch.Tensor | None = None) -> torch.Tensor:
    r"""η_t, the per-coordinate learning rate of the step ``optimizer`` just took on ``theta``.

    Read from the optimizer's state *after* ``optimizer.step()``; the step moved θ by
    −η_t ⊙ g_t (with momentum, η_t ⊙ g_t is what enters the momentum buffer).

    =========  ===============================================================================
    SGD        η = ε (the same for every coordinate)
    AdaGrad    η = ε_t / (√r_t + δ), r_t = the sum of all squared gradients so far, and
               ε_t = ε / (1 + (t − 1)·lr_decay)
    RMSProp    η = ε / (√r_t + δ), r_t the moving average of g²; centered: ε / (√(r_t − ḡ_t²) + δ)
    AdaDelta   η = ε √(u_{t−1} + δ) / √(r_t + δ): u_{t−1} is the average of the squared steps
               *before* this step, so pass ``acc_delta_before`` (a copy of
               ``optimizer.state[theta]['acc_delta']`` taken before the step; zeros at t = 1)
    =========  ===============================================================================

    Works for the classes of :mod:`course_lib.optim` and their ``torch.optim`` namesakes (the
    state slots have the same names).  Returns a new tensor shaped like ``theta``.
    """
    rule = _rule(optimizer)
    group = next((g for g in optimizer.param_groups if any(p is theta for p in g["params"])), None)
    _check("theta", "a tensor", group is not None, "a parameter of this optimizer")
    lr = group["lr"]
    if rule == "SGD":
        return torch.full_like(theta, lr).detach()
    state = optimizer.state[theta]
    _check("optimizer", rule, bool(state), "an optimizer that has taken a step on theta")
    if rule == "Adagrad":
        t = int(state["step"])
        lr_t = lr / (1 + (t - 1) * group["lr_decay"])
        return lr_t / (state["sum"].sqrt() + group["eps"])
    if rule == "RMSprop":
        r = state["square_avg"]
        if group["centered"]:
            r = r - state["grad_avg"] ** 2
        return lr / (r.sqrt() + group["eps"])
    # Adadelta
    _check("acc_delta_before", acc_delta_before, acc_delta_before is not None,
           "the state's 'acc_delta' copied before the step (AdaDelta needs u_{t-1})")
    eps = group["eps"]
    return lr * (acc_delta_before + eps).sqrt() / (state["square_avg"] + eps).sqrt()


# ----------------------------------------------------------------------------------------
# Two stochastic problems with a known expected cost
# ----------------------------------------------------------------------------------------
class NoisyQuadratic(Landscape):
    r"""An axis-aligned quadratic (or a tilted plane) seen through noisy gradients.

    .. math::

        J(\theta) = \tfrac12 \sum_i h_i (\theta_i - \theta^*_i)^2 + \sum_i m_i \theta_i,
        \qquad g = \nabla J(\theta) + \sigma \odot \xi, \quad \xi \sim \mathcal N(0, I),

    a stand-in for a minibatch gradient whose noise has standard deviation σ_i per coordinate.

    Arguments and symbols: ``curvature`` → h ≥ 0 (the diagonal of H), ``noise`` → σ ≥ 0,
    ``slope`` → m (a constant part of the gradient: with h = 0 the cost is a tilted plane and
    E[g] = m everywhere), ``center`` → θ* (zeros by default), ``start`` → θ₀ (ones by default).
    Each may be a number (the same for every coordinate) or a sequence; ``dim`` → n.

    :meth:`stochastic_grad` draws g with a ``torch.Generator``; :meth:`value`, :meth:`grad`,
    :meth:`hessian` are the expected cost and its derivatives.
    """

    def __init__(self, curvature=1.0, noise=1.0, slope=0.0, center=0.0, start=1.0,
                 dim: int = 2) -> None:
        _check("dim", dim, _is_int(dim) and dim >= 1, "an int >= 1")
        self.dim = dim
        super().__init__()
        vec = {}
        for name, value in (("curvature", curvature), ("noise", noise), ("slope", slope),
                            ("center", center), ("start", start)):
            v = _f64(value)
            _check(name, value, v.dim() == 0 or tuple(v.shape) == (dim,),
                   f"a number or a sequence of length dim = {dim}")
            _check(name, value, bool(torch.isfinite(v).all()), "finite numbers")
            vec[name] = v.expand(dim).clone()
        _check("curvature", curvature, bool((vec["curvature"] >= 0).all()), "values >= 0")
        _check("noise", noise, bool((vec["noise"] >= 0).all()), "values >= 0")
        self.h, self.sigma, self.m = vec["curvature"], vec["noise"], vec["slope"]
        self.center, self.start = vec["center"], vec["start"]
        if bool((self.m == 0).all()) and bool((self.h > 0).all()):
            self.minimizers = self.center.reshape(1, dim).clone()
        self.min_value = 0.0
        self.name = "noisy quadratic"
        if dim == 2:
            cx, cy = self.center.tolist()
            self.bounds = ((cx - 2.0, cx + 2.0), (cy - 2.0, cy + 2.0))

    def value(self, theta):
        d = theta - self.center.to(theta)
        return 0.5 * (self.h.to(theta) * d**2).sum(-1) + (self.m.to(theta) * theta).sum(-1)

    def grad(self, theta):
        return self.h.to(theta) * (theta - self.center.to(theta)) + self.m.to(theta)

    def hessian(self, theta):
        return torch.diag(self.h).to(theta).expand(*theta.shape[:-1], self.dim, self.dim)

    def stochastic_grad(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """g = ∇J(θ) + σ ⊙ ξ for one θ of shape (n,)."""
        xi = torch.randn(self.dim, generator=generator, dtype=torch.float64)
        return self.grad(theta) + self.sigma * xi

    def _repr_args(self):
        return {"curvature": self.h.tolist(), "noise": self.sigma.tolist(),
                "slope": self.m.tolist(), "dim": self.dim}


class SparseRegression(Landscape):
    r"""Online least squares whose features are 0 or 1, some of them rarely 1.

    Each example has features x_i ~ Bernoulli(p_i), independent, and a target
    y = xᵀw* + ν with ν ~ N(0, σ²).  The cost of the weights w is the expected squared error

    .. math::

        J(w) = \tfrac12\, \mathbb E\big[(x^\top w - y)^2\big]
             = \tfrac12 (w - w^*)^\top C (w - w^*) + \tfrac12 \sigma^2, \qquad
        C = \mathbb E[x x^\top] = \mathrm{diag}(p - p^2) + p p^\top,

    and a minibatch of B fresh examples gives the unbiased gradient
    g = Xᵀ(Xw − y)/B.  A feature that is 0 contributes 0 to g: a *rare* feature gets a nonzero
    gradient only in the few minibatches where it appears (Duchi, Hazan & Singer, 2011, the
    case AdaGrad was designed for).

    Arguments and symbols: ``frequencies`` → p ∈ (0, 1]ⁿ, ``weights`` → w* (ones by default),
    ``noise`` → σ ≥ 0, ``batch_size`` → B.  The start is w₀ = 0.
    """

    def __init__(self, frequencies, weights=1.0, noise: float = 0.1, batch_size: int = 10) -> None:
        p = _f64(frequencies).reshape(-1)
        _check("frequencies", frequencies, p.numel() >= 1 and bool(((p > 0) & (p <= 1)).all()),
               "a sequence of probabilities in (0, 1]")
        self.dim = p.numel()
        super().__init__()
        w = _f64(weights)
        _check("weights", weights, w.dim() == 0 or tuple(w.shape) == (self.dim,),
               f"a number or a sequence of length {self.dim}")
        _check("noise", noise, noise >= 0, ">= 0")
        _check("batch_size", batch_size, _is_int(batch_size) and batch_size >= 1, "an int >= 1")
        self.p, self.w_star = p, w.expand(self.dim).clone()
        self.noise, self.batch_size = float(noise), int(batch_size)
        self.C = torch.diag(p - p**2) + torch.outer(p, p)  # E[x xᵀ]
        self.minimizers = self.w_star.reshape(1, -1).clone()
        self.min_value = 0.5 * self.noise**2
        self.start = torch.zeros(self.dim, dtype=torch.float64)
        self.name = "sparse regression"

    def value(self, theta):
        d = theta - self.w_star.to(theta)
        return 0.5 * ((d @ self.C.to(theta)) * d).sum(-1) + self.min_value

    def grad(self, theta):
        return (theta - self.w_star.to(theta)) @ self.C.to(theta)

    def hessian(self, theta):
        return self.C.to(theta).expand(*theta.shape[:-1], self.dim, self.dim)

    def sample(self, n: int, generator: torch.Generator):
        """n fresh examples: X (n, d) of 0/1 features and y (n,)."""
        X = (torch.rand(n, self.dim, generator=generator, dtype=torch.float64) < self.p).double()
        y = X @ self.w_star + self.noise * torch.randn(n, generator=generator, dtype=torch.float64)
        return X, y

    def stochastic_grad(self, theta: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """g = Xᵀ(Xw − y)/B on a fresh minibatch of B examples."""
        X, y = self.sample(self.batch_size, generator)
        return X.T @ (X @ theta - y) / self.batch_size

    def _repr_args(self):
        return {"frequencies": self.p.tolist(), "noise": self.noise,
                "batch_size": self.batch_size}


# ----------------------------------------------------------------------------------------
# Running an optimizer and recording its effective learning rates
# ----------------------------------------------------------------------------------------
@dataclass
class RateRun:
    """The record of :func:`run_with_rates` (or :func:`run_phases`).

    Attributes:
        path: (T + 1, n) the iterates θ₀ … θ_T.
        losses: (T + 1,) the (expected) cost J(θ_t); in a run of several phases, the cost of
            the phase that step t belongs to (θ₀ is measured with the first phase's cost).
        grads: (T, n) the gradients g_1 … g_T the steps used (noisy ones on a stochastic problem).
        rates: (T, n) η_1 … η_T, the per-coordinate effective learning rates
            (:func:`effective_lr`).
        state: the optimizer's state for θ at the end (a dict of copies).
        name: a label.
    """

    path: np.ndarray
    losses: np.ndarray
    grads: np.ndarray
    rates: np.ndarray
    state: dict
    name: str = ""

    @property
    def steps(self) -> np.ndarray:
        """(T, n) the moves θ_t − θ_{t−1}."""
        return np.diff(self.path, axis=0)


def run_phases(phases, optimizer: Callable, *, start=None, seed: int = 0, name: str = "",
               **hyper) -> RateRun:
    r"""Run one optimizer through several problems in turn; record η_t at every step.

    ``phases`` is a sequence of ``(problem, steps)``: the optimizer (and its state) carries on
    from one problem to the next, as when training enters a new region of the landscape.
    The other arguments are those of :func:`run_with_rates`; ``start`` defaults to the first
    problem's start, and all problems must have the same dimension.
    """
    phases = list(phases)
    _check("phases", phases, len(phases) >= 1, "a non-empty sequence of (problem, steps)")
    for problem, steps in phases:
        _check("problem", problem, isinstance(problem, Landscape), "a Landscape")
        _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
        _check("problem", problem, problem.dim == phases[0][0].dim,
               f"problems of one dimension ({phases[0][0].dim})")
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    first = phases[0][0]
    theta0 = first.start if start is None else _f64(start)
    _check("start", start, tuple(theta0.shape) == (first.dim,), f"{first.dim} numbers")
    theta = torch.nn.Parameter(theta0.detach().clone().to(torch.float64))
    opt = optimizer([theta], **hyper)
    rule = _rule(opt)
    gen = torch.Generator().manual_seed(seed)
    total, n = sum(s for _, s in phases), first.dim
    path, grads, rates = np.empty((total + 1, n)), np.empty((total, n)), np.empty((total, n))
    losses = np.empty(total + 1)
    path[0] = theta0.numpy()
    t = 0
    with torch.no_grad():
        losses[0] = first.value(theta).item()
        for problem, steps in phases:
            noisy = hasattr(problem, "stochastic_grad")
            for _ in range(steps):
                g = problem.stochastic_grad(theta, gen) if noisy else problem.grad(theta)
                theta.grad = g
                u_before = None
                if rule == "Adadelta":  # η_t needs u_{t-1}, the average before this step
                    state = opt.state[theta]
                    u_before = state["acc_delta"].clone() if state else torch.zeros_like(theta)
                opt.step()
                grads[t] = g.numpy()
                rates[t] = effective_lr(opt, theta, acc_delta_before=u_before).numpy()
                path[t + 1] = theta.numpy()
                t += 1
            start_t = t - steps
            losses[start_t + 1: t + 1] = problem.value(torch.from_numpy(path[start_t + 1: t + 1])).numpy()
    state = {k: (v.clone() if isinstance(v, torch.Tensor) else v)
             for k, v in opt.state[theta].items()}
    return RateRun(path, losses, grads, rates, state, name)


def run_with_rates(problem: Landscape, optimizer: Callable, steps: int, *, start=None,
                   seed: int = 0, name: str = "", **hyper) -> RateRun:
    r"""Run ``optimizer`` on ``problem`` for ``steps`` updates; record η_t at every step.

    Arguments:
        problem: a :class:`~course_lib.landscapes.Landscape`.  If it has a
            ``stochastic_grad(θ, generator)`` method (:class:`NoisyQuadratic`,
            :class:`SparseRegression`) each step uses a fresh noisy gradient drawn from a
            generator seeded with ``seed``; otherwise the exact gradient ``problem.grad``.
        optimizer: a class or factory called as ``optimizer([θ], **hyper)``: SGD, Adagrad,
            RMSprop or Adadelta from :mod:`course_lib.optim` (or ``torch.optim``).
        steps: T ≥ 1.
        start: θ₀ (default ``problem.start``).
        seed: the seed of the gradient noise.  The noise of :class:`NoisyQuadratic` and the
            examples of :class:`SparseRegression` do not depend on θ, so runs with the same
            seed see the same noise, whatever the optimizer.
        name: a label stored in the record.
        **hyper: passed to ``optimizer`` (``lr``, ``alpha``, ``rho``, ``centered``, …).

    The gradient is written into θ.grad by hand (no autograd), then ``optimizer.step()``.
    """
    return run_phases([(problem, steps)], optimizer, start=start, seed=seed, name=name, **hyper)


# ----------------------------------------------------------------------------------------
# Summaries
# ----------------------------------------------------------------------------------------
def log_log_slope(t, y, t_min: float | None = None) -> float:
    """The least-squares slope of log y against log t, over t ≥ ``t_min`` (all t if None):
    the exponent a in y ∝ t^a."""
    t, y = np.asarray(t, dtype=float), np.asarray(y, dtype=float)
    _check("t", "shape", t.shape == y.shape and t.ndim == 1, "a 1-D array shaped like y")
    keep = t >= t_min if t_min is not None else np.ones_like(t, dtype=bool)
    _check("t_min", t_min, keep.sum() >= 2 and (t[keep] > 0).all() and (y[keep] > 0).all(),
           "a value leaving at least two points with t > 0 and y > 0")
    return float(np.polyfit(np.log(t[keep]), np.log(y[keep]), 1)[0])


def steps_to_reach(losses, threshold: float, after: int = 0) -> int | None:
    """The number of steps after step ``after`` until the cost first falls below ``threshold``
    (None if it never does)."""
    losses = np.asarray(losses, dtype=float)
    _check("after", after, _is_int(after) and 0 <= after < len(losses), "an index into losses")
    hits = np.flatnonzero(losses[after:] < threshold)
    return int(hits[0]) if hits.size else None


def race(problem: Landscape, optimizers: Mapping[str, tuple[Callable, dict]], steps: int, *,
         start=None, seed: int = 0) -> dict[str, RateRun]:
    """:func:`run_with_rates` for each entry ``label → (optimizer, hyperparameters)``, all with
    the same start and the same noise seed."""
    return {label: run_with_rates(problem, opt, steps, start=start, seed=seed, name=label, **hp)
            for label, (opt, hp) in optimizers.items()}


# ----------------------------------------------------------------------------------------
# AdaGrad's shrinking rate, RMSProp's level one, and a minimum that moves
# ----------------------------------------------------------------------------------------
def switch_experiment(before: Landscape, after: Landscape, steps: tuple[int, int],
                      optimizers: Mapping[str, tuple[Callable, dict]], *, fit_from: int = 100,
                      level_from: int = 500, tol: float = 0.05, seed: int = 0) -> dict:
    r"""Each optimizer runs ``steps[0]`` steps on ``before``, then ``steps[1]`` on ``after``.

    On a noisy problem whose gradient keeps a roughly constant size, AdaGrad's sum grows like
    r_t ≈ t E[g²], so its effective rate falls like ε/√(t E[g²]) ∝ t^{−1/2}; RMSProp's moving
    average settles at E[g²] and its rate at ε/√E[g²].  When the minimum then moves (the
    second problem), the method with the larger remaining rate gets there first.

    Returns a dict; each entry maps an optimizer's label to:

    - ``'runs'``: the :class:`RateRun` (:func:`run_phases`; T₁ = ``steps[0]``);
    - ``'slope'``: (n,) the exponent a of η_t ∝ t^a, fitted over ``fit_from`` ≤ t ≤ T₁;
    - ``'late_slope'``: (n,) the same over ``level_from`` ≤ t ≤ T₁;
    - ``'level'``: (n,) the mean η_t over ``level_from`` < t ≤ T₁;
    - ``'rms_grad'``: (n,) the root mean square of g over the same steps;
    - ``'floor'``: the mean cost over the last quarter of the first phase;
    - ``'recovery'``: the number of steps after the switch until J < ``tol`` (None if never).
    """
    _check("steps", steps, len(steps) == 2 and all(_is_int(s) and s >= 1 for s in steps),
           "a pair of ints >= 1")
    t1 = steps[0]
    _check("fit_from", fit_from, _is_int(fit_from) and 1 <= fit_from < t1, f"an int in [1, {t1})")
    _check("level_from", level_from, _is_int(level_from) and 0 <= level_from < t1,
           f"an int in [0, {t1})")
    out = {key: {} for key in ("runs", "slope", "late_slope", "level", "rms_grad", "floor",
                               "recovery")}
    t = np.arange(1, t1 + 1)
    for label, (opt, hyper) in optimizers.items():
        run = run_phases([(before, steps[0]), (after, steps[1])], opt, seed=seed, name=label,
                         **hyper)
        eta = run.rates[:t1]
        out["runs"][label] = run
        out["slope"][label] = np.array([log_log_slope(t, e, fit_from) for e in eta.T])
        out["late_slope"][label] = np.array([log_log_slope(t, e, level_from) for e in eta.T])
        out["level"][label] = eta[level_from:].mean(0)
        out["rms_grad"][label] = np.sqrt((run.grads[level_from:t1] ** 2).mean(0))
        out["floor"][label] = float(run.losses[t1 - t1 // 4: t1 + 1].mean())
        hit = steps_to_reach(run.losses, tol, after=t1 + 1)  # J(θ_t) under `after`, t > T₁
        out["recovery"][label] = None if hit is None else hit + 1
    return out


# ----------------------------------------------------------------------------------------
# Centered RMSProp on a noisy slope
# ----------------------------------------------------------------------------------------
def centered_vs_plain(snrs, *, lr: float = 0.01, alpha: float = 0.99, noise: float = 1.0,
                      steps: int = 2000, burn_in: int = 500, seed: int = 0) -> dict[str, np.ndarray]:
    r"""Mean step of plain and centered RMSProp down a noisy tilted plane, per SNR μ/σ.

    The gradient is g = μ + σξ with a constant mean μ (a tilted plane: :class:`NoisyQuadratic`
    with curvature 0, one coordinate per SNR, all run at once since RMSProp treats coordinates
    independently).  Plain RMSProp divides by √E[g²] = √(μ² + σ²), centered RMSProp by an
    estimate of the standard deviation √(E[g²] − E[g]²) = σ, so once the moving averages have
    settled the mean step downhill is

    .. math::

        \text{plain: } \epsilon\,\frac{\mu}{\sqrt{\mu^2 + \sigma^2}} < \epsilon, \qquad
        \text{centered: } \epsilon\,\frac{\mu}{\sigma} .

    Arguments: ``snrs`` → the values of μ/σ ≥ 0; ``lr`` → ε; ``alpha`` → ρ; ``noise`` → σ > 0;
    ``steps``; ``burn_in``, the first steps left out of the averages (the moving averages start
    at 0); ``seed`` of the noise (both runs see the same noise).

    Returns arrays over ``snrs``: ``'snr'``; ``'plain'`` and ``'centered'``, the measured mean
    step downhill (−Δθ averaged over the steps after ``burn_in``); ``'plain_rate'`` and
    ``'centered_rate'``, the mean η_t over the same steps; ``'plain_theory'`` and
    ``'centered_theory'``, the two formulas above.
    """
    snrs = np.asarray(snrs, dtype=float)
    _check("snrs", snrs.tolist(), snrs.ndim == 1 and snrs.size >= 1 and bool((snrs >= 0).all()),
           "a 1-D sequence of numbers >= 0")
    _check("noise", noise, noise > 0, "> 0")
    _check("steps", steps, _is_int(steps) and steps >= 2, "an int >= 2")
    _check("burn_in", burn_in, _is_int(burn_in) and 0 <= burn_in < steps, "an int in [0, steps)")
    plane = NoisyQuadratic(curvature=0.0, noise=noise, slope=snrs * noise, start=0.0,
                           dim=len(snrs))
    out = {"snr": snrs}
    for kind, centered in (("plain", False), ("centered", True)):
        run = run_with_rates(plane, RMSprop, steps, seed=seed, lr=lr, alpha=alpha,
                             centered=centered)
        out[kind] = -run.steps[burn_in:].mean(0)
        out[f"{kind}_rate"] = run.rates[burn_in:].mean(0)
    out["plain_theory"] = lr * snrs / np.sqrt(snrs**2 + 1)
    out["centered_theory"] = lr * snrs
    return out


# ----------------------------------------------------------------------------------------
# Units: how a step scales when θ is measured in other units
# ----------------------------------------------------------------------------------------
#: how each state slot changes when θ is measured in units θ′ = cθ: the factor is c**power
#: (g′ = g/c, so an average of g² scales by c⁻², of g by c⁻¹, of Δθ² by c²)
UNIT_POWERS = {"sum": -2, "square_avg": -2, "grad_avg": -1, "acc_delta": 2}


def state_in_units(state: dict, c: float) -> dict:
    """A copy of an AdaGrad / RMSProp / AdaDelta state (``optimizer.state[θ]``) as if every
    gradient and step had been measured in units θ′ = cθ (see ``UNIT_POWERS``).  States with a
    momentum buffer are refused (its units depend on the rule)."""
    _check("c", c, isinstance(c, (int, float)) and c > 0 and math.isfinite(c), "a number > 0")
    unknown = sorted(set(state) - set(UNIT_POWERS) - {"step"})
    _check("state", unknown, not unknown, "slots among 'step', " + ", ".join(UNIT_POWERS))
    return {k: (v.clone() * c ** UNIT_POWERS[k] if k in UNIT_POWERS else v)
            for k, v in state.items()}


def unit_step_ratio(optimizer: Callable, state: dict, g, c: float, **hyper) -> float:
    r"""‖the next step in units θ′ = cθ‖ / ‖the next step in units θ‖.

    Measuring the parameters in other units, θ′ = cθ, turns the cost into J′(θ′) = J(θ′/c),
    so the gradient becomes g′ = g/c.  A step with the units of θ (Zeiler, 2012, §3.2; like
    Newton's step H⁻¹g) becomes c times as long.  We make one step of ``optimizer`` (SGD,
    Adagrad, RMSprop or Adadelta, without momentum, with hyperparameters ``hyper``) from
    ``state`` with gradient ``g``, and one from :func:`state_in_units(state, c)` with gradient
    g/c, and return the ratio of their lengths.  Expected (while δ is negligible): SGD 1/c,
    AdaGrad and RMSProp 1, AdaDelta c.  An empty ``state`` means a fresh optimizer (t = 1).
    """
    g = _f64(g) if not isinstance(g, torch.Tensor) else g.detach().to(torch.float64)
    moves = []
    for factor, st in ((1.0, state), (c, state_in_units(state, c))):
        theta = torch.nn.Parameter(torch.zeros_like(g))
        opt = optimizer([theta], **hyper)
        if st:
            opt.state[theta] = {k: (v.clone() if isinstance(v, torch.Tensor) else v)
                                for k, v in st.items()}
        theta.grad = g / factor
        with torch.no_grad():
            opt.step()
        moves.append(theta.detach().norm().item())
    return moves[1] / moves[0]


def unit_exponents(cs, ratios: Mapping[str, np.ndarray]) -> dict[str, float]:
    """For each label, the exponent a in ratio ∝ c^a (a log–log fit over ``cs``): −1 for SGD,
    0 for AdaGrad and RMSProp, +1 for AdaDelta."""
    return {label: log_log_slope(cs, r) for label, r in ratios.items()}


# ----------------------------------------------------------------------------------------
# Sparse features
# ----------------------------------------------------------------------------------------
def sparse_experiment(problem: SparseRegression, optimizers: Mapping[str, tuple[Callable, dict]],
                      steps: int, rare, *, seed: int = 0) -> dict:
    r"""Optimizers on :class:`SparseRegression`: who learns the weights of the rare features?

    ``rare`` lists the indices of the rare features; the others are the frequent ones.
    ``optimizers`` maps a label to ``(optimizer, hyperparameters)``; every run sees the same
    minibatches (``seed``).  Returns a dict with, for each label:

    - ``'runs'``: the :class:`RateRun`;
    - ``'rare_error'``, ``'frequent_error'``: (T + 1,) the root mean square of w_t − w* over the
      rare (frequent) features;
    - ``'rate_ratio'``: mean η_T over the rare features / mean η_T over the frequent ones (the
      last step's effective learning rates);
    - ``'recent_rate_ratio'``: the same ratio for AdaGrad's rate computed from the gradients of
      the second half of the run only, ε/√(Σ_{t > T/2} g_t²) (what AdaGrad would use had it
      started at T/2; for SGD simply 1).
    """
    mask = np.zeros(problem.dim, dtype=bool)
    idx = np.asarray(rare)
    _check("rare", rare, idx.ndim == 1 and idx.size >= 1 and np.issubdtype(idx.dtype, np.integer)
           and bool(((idx >= 0) & (idx < problem.dim)).all()), f"indices in [0, {problem.dim})")
    mask[idx] = True
    _check("rare", rare, 0 < mask.sum() < problem.dim, "a proper subset of the features")
    runs = race(problem, optimizers, steps, seed=seed)
    w_star = problem.w_star.numpy()
    out = {"runs": runs, "rare_error": {}, "frequent_error": {}, "rate_ratio": {},
           "recent_rate_ratio": {}}
    for label, run in runs.items():
        sq = (run.path - w_star) ** 2
        out["rare_error"][label] = np.sqrt(sq[:, mask].mean(1))
        out["frequent_error"][label] = np.sqrt(sq[:, ~mask].mean(1))
        eta = run.rates[-1]
        out["rate_ratio"][label] = float(eta[mask].mean() / eta[~mask].mean())
        if "sum" in run.state:  # AdaGrad
            recent = 1 / np.sqrt((run.grads[steps // 2:] ** 2).sum(0))
            out["recent_rate_ratio"][label] = float(recent[mask].mean() / recent[~mask].mean())
        else:
            out["recent_rate_ratio"][label] = out["rate_ratio"][label]
    return out


def preconditioned_condition_number(H, rates) -> float:
    r"""κ(diag(η)^{1/2} H diag(η)^{1/2}): the condition number that the update θ ← θ − η ⊙ g
    sees on a quadratic with Hessian H (positive definite) and per-coordinate rates η > 0.

    Near θ*, the update is θ − θ* ← (I − diag(η) H)(θ − θ*), and diag(η) H has the same
    eigenvalues as diag(η)^{1/2} H diag(η)^{1/2}.  With η = ε for every coordinate this is
    κ(H); rates ηᵢ ∝ 1/Hᵢᵢ bring a diagonal H down to κ = 1.
    """
    H = _f64(H) if not isinstance(H, torch.Tensor) else H.detach().to(torch.float64)
    eta = _f64(rates).reshape(-1)
    _check("H", tuple(H.shape), H.dim() == 2 and H.shape[0] == H.shape[1] == eta.numel(),
           f"a square matrix of side len(rates) = {eta.numel()}")
    _check("rates", rates, bool((eta > 0).all()), "positive numbers")
    d = eta.sqrt()
    lam = torch.linalg.eigvalsh(d[:, None] * H * d[None, :])
    _check("H", "its eigenvalues", bool(lam[0] > 0), "a positive definite matrix")
    return float(lam[-1] / lam[0])


# ----------------------------------------------------------------------------------------
# The widget
# ----------------------------------------------------------------------------------------
#: optimizer label in the widget → (class, name of its ρ argument or None)
OPTIMIZER_CHOICES = {"SGD": (SGD, None), "AdaGrad": (Adagrad, None),
                     "RMSProp": (RMSprop, "alpha"), "RMSProp (centered)": (RMSprop, "alpha"),
                     "AdaDelta": (Adadelta, "rho")}


def explorer_run(optimizer: str, lr: float, rho: float, landscape: Landscape, steps: int):
    """The run the widget draws: ``optimizer`` (a key of ``OPTIMIZER_CHOICES``) with ε = lr
    and ρ = rho (ignored by SGD and AdaGrad) on ``landscape``."""
    _check("optimizer", optimizer, optimizer in OPTIMIZER_CHOICES,
           f"one of {list(OPTIMIZER_CHOICES)}")
    cls, rho_name = OPTIMIZER_CHOICES[optimizer]
    hyper = {"lr": lr}
    if rho_name is not None:
        hyper[rho_name] = rho
    if optimizer.endswith("(centered)"):
        hyper["centered"] = True
    return run_with_rates(landscape, cls, steps, name=optimizer, **hyper)


def rate_explorer(landscape: Landscape | None = None, steps: int = 100):
    """Controls (optimizer, ε, ρ) over two panels: the path on the contours of ``landscape``
    (default: the chapter's badly scaled quadratic) and η_t of each coordinate."""
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_trajectories
    from course_lib.widgets import interactive_plot

    J = landscape if landscape is not None else Quadratic(**SCALED["quadratic"])

    def draw(optimizer, lr, rho):
        run = explorer_run(optimizer, lr, rho, J, steps)
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.3))
        end = (f"J after {steps} steps = {run.losses[-1]:.2g}" if np.isfinite(run.losses[-1])
               else "diverged")
        plot_trajectories(J, {optimizer: run.path}, ax=ax1, title=f"{optimizer}, ε = {lr:.3g}: {end}")
        t = np.arange(1, steps + 1)
        for i in range(J.dim):
            ax2.loglog(t, run.rates[:, i], label=rf"$\eta_{{t,{i + 1}}}$ (coordinate {i + 1})")
        ax2.set(xlabel="step t", ylabel=r"effective learning rate $\eta_t$",
                title="Per-coordinate effective learning rate")
        ax2.legend(fontsize="small")
        return run

    return interactive_plot(
        draw,
        optimizer=W.Dropdown(options=list(OPTIMIZER_CHOICES), value="RMSProp",
                             description="optimizer"),
        lr=W.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.25,
                            description="ε (lr)", continuous_update=False),
        rho=W.FloatSlider(value=0.9, min=0.5, max=0.999, step=0.01, description="ρ",
                          continuous_update=False, readout_format=".3f"),
    )


# ----------------------------------------------------------------------------------------
# The settings of chapter 11 (notebook and tests read them from here)
# ----------------------------------------------------------------------------------------
SEED = 0
#: section 2: a badly scaled quadratic, axis-aligned and rotated by 45°, and the three runs
SCALED = {"quadratic": dict(condition_number=100.0, angle=0.0),
          "rotated": dict(condition_number=100.0, angle=math.pi / 4),
          "steps": 100,
          "optimizers": {"SGD": (SGD, dict(lr=0.019)),          # 1.9/λ_max: near its limit
                         "AdaGrad": (Adagrad, dict(lr=0.5)),
                         "RMSProp": (RMSprop, dict(lr=0.03, alpha=0.99))}}
#: section 3: a noisy quadratic whose minimum moves from 0 to (2, 2) after 2000 steps
SWITCH = {"before": dict(curvature=1.0, noise=(0.1, 1.0), start=(1.0, 1.0)),
          "after": dict(curvature=1.0, noise=(0.1, 1.0), center=(2.0, 2.0)),
          "steps": (2000, 2000),
          # the same first step: ε_RMSProp/√(1 − ρ) = ε_AdaGrad
          "optimizers": {"AdaGrad": (Adagrad, dict(lr=0.1)),
                         "RMSProp": (RMSprop, dict(lr=0.01, alpha=0.99))},
          "fit_from": 100,      # fit η_t ∝ t^a over 100 ≤ t ≤ 2000 (the first phase)
          "level_from": 500,    # RMSProp's level: the mean η_t over 500 < t ≤ 2000
          "tol": 0.05}          # "recovered": J below this after the switch
#: section 4: plain against centered RMSProp on a noisy slope
CENTERED = dict(snrs=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0), lr=0.01, alpha=0.99, noise=1.0,
                steps=2000, burn_in=500)
NOISELESS_STEPS = 1000  #: centered RMSProp on a slope without noise: η after this many steps
#: section 5: warm each optimizer on SWITCH["before"], then compare steps in units θ′ = cθ
UNITS = {"steps": 500, "cs": tuple(float(c) for c in np.logspace(-2, 2, 9)),
         "optimizers": {"SGD": (SGD, dict(lr=0.1)), "AdaGrad": (Adagrad, dict(lr=0.1)),
                        "RMSProp": (RMSprop, dict(lr=0.01, alpha=0.99)),
                        "AdaDelta": (Adadelta, dict(lr=1.0, rho=0.9))}}
#: section 6: online regression with 10 frequent (p = 0.5) and 10 rare (p = 0.01) features
SPARSE = {"problem": dict(frequencies=(0.5,) * 10 + (0.01,) * 10, weights=1.0, noise=0.1,
                          batch_size=10),
          "rare": tuple(range(10, 20)), "steps": 500, "tol": 0.1,
          "optimizers": {"SGD": (SGD, dict(lr=0.6)), "AdaGrad": (Adagrad, dict(lr=0.5))}}
