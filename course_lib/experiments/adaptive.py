r"""Adaptive learning rates: AdaGrad, RMSProp (plain and centered) and AdaDelta, measured.

The Deep Learning book (Goodfellow, Bengio & Courville, 2016, §8.5.1–8.5.2) presents three
rules that give every parameter its own learning rate, read off the history of its own
gradient.  The update rules themselves live in :mod:`course_lib.optim`; this module holds the
experiments of chapter 11, which *read the rates out of the optimizers' state* while they run:

.. math::

    \text{AdaGrad:}\ \ \epsilon_{t,i} = \frac{\epsilon}{\delta + \sqrt{r_{t,i}}},\ \
    r_t = \sum_{k \le t} g_k^2 ; \qquad
    \text{RMSProp:}\ \ r_t = \rho\, r_{t-1} + (1-\rho)\, g_t^2 ; \qquad
    \text{AdaDelta:}\ \ \epsilon_{t,i} = \epsilon\,\frac{\sqrt{u_{t-1,i} + \delta}}{\sqrt{r_{t,i} + \delta}} .

Each step moves coordinate i by ε_{t,i} g_{t,i}: ε_{t,i} is the *effective learning rate* of that
coordinate at step t (ε without a subscript is the global learning rate, torch's ``lr``; ε_t is
the vector of the ε_{t,i}).

Contents:

- :func:`effective_lr`: ε_t of the step an optimizer just took, read from its state.
- :class:`NoisyQuadratic`, :class:`SparseRegression`: two stochastic problems with a known
  expected cost (a noisy axis-aligned quadratic or tilted plane; online linear regression whose
  features are rarely nonzero).
- :func:`run_with_rates`, :func:`run_phases`, :func:`race`: run optimizers on such a problem
  (or on any :class:`~course_lib.landscapes.Landscape`, or on several in turn) and record the
  path, gradients, costs, ε_t and the final state (:class:`RateRun`).
- :func:`log_log_slope`, :func:`steps_to_reach`, :func:`preconditioned_condition_number`:
  summaries of runs.
- :func:`switch_experiment`: AdaGrad's shrinking rate against RMSProp's level one, and what
  happens when the minimum moves.
- :func:`centered_vs_plain`: mean step of plain and centered RMSProp on a noisy slope, against
  the signal-to-noise ratio.
- :func:`state_in_units`, :func:`unit_step_ratio`, :func:`unit_exponents`: how a step scales
  when the parameters are measured in other units (θ′ = cθ).
- :func:`sparse_experiment`: AdaGrad against SGD on rare and frequent features.
- :func:`tune_lr`, :func:`tuned_rotated`, :func:`tuned_sparse`, :func:`switch_replicates`: a
  skeptic's checks (each method's ε tuned on a grid; the spread over noise draws).
- :func:`network_run`, :func:`network_experiment`, :func:`layer_rate_quantiles`: AdaGrad against
  RMSProp on the MNIST-1D MLP, trained by :func:`course_lib.train.train`, with the quantiles of
  ε_{t,i} per layer over training (does AdaGrad stall on a real network?); :func:`tuned_index`
  (a grid's tuned point, robust to near-ties), :func:`rank_at` (which method is ahead at an
  epoch, and whether their seeds separate) and :func:`network_report` (what the chapter prints,
  at the precision that holds on every CPU).
- :func:`plot_scaled`, :func:`plot_switch`, :func:`plot_centered`, :func:`plot_units`,
  :func:`plot_network`: the chapter's figures.
- :func:`explorer_run`, :func:`rate_explorer`: the chapter's widget (optimizer, ε, ρ, rotation
  angle → path, ε_t per coordinate, and the condition number the update sees).
- The settings of chapter 11 (``SCALED``, ``SWITCH``, ``CENTERED``, ``UNITS``, ``SPARSE``,
  ``NETWORK``, …)
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
from course_lib.utils import shared_result

__all__ = [
    "effective_lr", "NoisyQuadratic", "SparseRegression", "RateRun", "run_phases",
    "run_with_rates", "race", "log_log_slope", "steps_to_reach", "switch_experiment",
    "centered_vs_plain", "UNIT_POWERS", "state_in_units", "unit_step_ratio", "unit_exponents",
    "sparse_experiment", "preconditioned_condition_number", "OPTIMIZER_CHOICES",
    "explorer_run", "rate_explorer", "tune_lr", "switch_replicates", "layer_parameters",
    "layer_rate_quantiles", "NetworkRun", "network_run", "tuned_index", "network_experiment",
    "rank_at", "network_report", "plot_network",
    "plot_scaled", "plot_switch", "plot_centered", "plot_units", "sparse_score", "tuned_rotated",
    "tuned_sparse",
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
    r"""ε_t, the per-coordinate learning rate of the step ``optimizer`` just took on ``theta``.

    Read from the optimizer's state *after* ``optimizer.step()``; the step moved θ by
    −ε_t ⊙ g_t (with momentum, ε_t ⊙ g_t is what enters the momentum buffer).

    =========  ===============================================================================
    SGD        ε_t = ε (the same for every coordinate)
    AdaGrad    ε_t = ε′ / (√r_t + δ), r_t = the sum of all squared gradients so far, and
               ε′ = ε / (1 + (t − 1)·lr_decay)
    RMSProp    ε_t = ε / (√r_t + δ), r_t the moving average of g²; centered: ε / (√(r_t − ḡ_t²) + δ)
    AdaDelta   ε_t = ε √(u_{t−1} + δ) / √(r_t + δ): u_{t−1} is the average of the squared steps
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
        rates: (T, n) ε_1 … ε_T, the per-coordinate effective learning rates
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
    r"""Run one optimizer through several problems in turn; record ε_t at every step.

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
                if rule == "Adadelta":  # ε_t needs u_{t-1}, the average before this step
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
    r"""Run ``optimizer`` on ``problem`` for ``steps`` updates; record ε_t at every step.

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


def tune_lr(problem: Landscape, grids: Mapping[str, tuple[Callable, dict, tuple]], steps: int,
            score: Callable[[RateRun], float], seeds=(0,)) -> dict:
    """Tune ε on a grid: for each label → ``(optimizer, other hyperparameters, ε grid)``, run
    :func:`run_with_rates` with every ε and seed and score each run with ``score(run)``
    (lower is better; inf for a run that fails).  Returns, per label, ``'scores'``
    (len(grid),) the median over seeds, ``'best'`` the ε with the lowest median and
    ``'interior'`` whether it lies inside the grid (not at an edge)."""
    out = {}
    for label, (opt, hyper, grid) in grids.items():
        med = np.array([np.median([score(run_with_rates(problem, opt, steps, seed=s, lr=lr,
                                                        **hyper)) for s in seeds])
                        for lr in grid])
        med = np.where(np.isfinite(med), med, np.inf)
        k = int(np.argmin(med))
        out[label] = {"scores": med, "best": grid[k], "interior": 0 < k < len(grid) - 1}
    return out


def tuned_rotated(settings: Mapping | None = None) -> dict:
    """Section 11.2's skeptic check: :func:`tune_lr` of each optimizer of ``SCALED`` on the
    rotated bowl over its ε grid ``SCALED["grids"]`` (score: J after ``SCALED["steps"]``)."""
    S = SCALED if settings is None else settings
    grids = {name: (opt, {k: v for k, v in hp.items() if k != "lr"}, S["grids"][name])
             for name, (opt, hp) in S["optimizers"].items()}
    return tune_lr(Quadratic(**S["rotated"]), grids, S["steps"], lambda run: run.losses[-1])


def tuned_sparse(settings: Mapping | None = None) -> dict:
    """Section 11.6's tuning: :func:`tune_lr` of SGD and AdaGrad on ``SPARSE``'s problem over
    ``SPARSE["grids"]`` and ``SPARSE["seeds"]``, scored by :func:`sparse_score` (the median
    number of steps until the rare weights' error is below ``SPARSE["tol"]``)."""
    S = SPARSE if settings is None else settings
    problem = SparseRegression(**S["problem"])
    grids = {name: (opt, {k: v for k, v in hp.items() if k != "lr"}, S["grids"][name])
             for name, (opt, hp) in S["optimizers"].items()}
    return tune_lr(problem, grids, S["steps"], sparse_score(problem, S["rare"], S["tol"]),
                   seeds=S["seeds"])


# ----------------------------------------------------------------------------------------
# AdaGrad's shrinking rate, RMSProp's level one, and a minimum that moves
# ----------------------------------------------------------------------------------------
@shared_result
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
    - ``'slope'``: (n,) the exponent a of ε_t ∝ t^a, fitted over ``fit_from`` ≤ t ≤ T₁;
    - ``'late_slope'``: (n,) the same over ``level_from`` ≤ t ≤ T₁;
    - ``'level'``: (n,) the mean ε_t over ``level_from`` < t ≤ T₁;
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


def switch_replicates(steps: tuple[int, int], replicates: int, settings: Mapping | None = None,
                      seed: int = 0) -> dict:
    r""":func:`switch_experiment`'s floor and recovery for ``replicates`` independent noise
    draws at once.

    AdaGrad and RMSProp act on each coordinate separately and the noisy quadratic is separable,
    so ``replicates`` copies of the 2-parameter problem of ``settings`` (default ``SWITCH``),
    stacked into one problem of 2 × ``replicates`` coordinates, run as that many independent
    runs with their own noise.  Returns, per optimizer label, arrays over the replicates:
    ``'recovery'`` (steps after the switch until that copy's J < tol; −1 if never) and
    ``'floor'`` (its mean J over the last quarter of the first phase); ``'ratio'``: AdaGrad's
    recovery / RMSProp's, and ``'floor_ratio'``: RMSProp's floor / AdaGrad's, per replicate.
    """
    S = SWITCH if settings is None else settings
    _check("replicates", replicates, _is_int(replicates) and replicates >= 1, "an int >= 1")
    _check("steps", steps, len(steps) == 2 and all(_is_int(s) and s >= 1 for s in steps),
           "a pair of ints >= 1")
    n = 2 * replicates

    def tiled(spec):
        out = {}
        for key, v in spec.items():
            v = np.broadcast_to(np.asarray(v, dtype=float), (2,))
            out[key] = tuple(np.tile(v, replicates))
        return out

    before = NoisyQuadratic(**tiled(S["before"]), dim=n)
    after = NoisyQuadratic(**tiled(S["after"]), dim=n)
    t1 = steps[0]
    out = {}
    for label, (opt, hyper) in S["optimizers"].items():
        run = run_phases([(before, steps[0]), (after, steps[1])], opt, seed=seed, **hyper)
        centers = np.where(np.arange(len(run.path))[:, None] <= t1, before.center.numpy(),
                           after.center.numpy())
        J = 0.5 * (before.h.numpy() * (run.path - centers) ** 2).reshape(len(run.path),
                                                                         replicates, 2).sum(-1)
        floor = J[t1 - t1 // 4: t1 + 1].mean(0)
        rec = np.array([(lambda h: -1 if h is None else h + 1)(
            steps_to_reach(J[:, k], S["tol"], after=t1 + 1)) for k in range(replicates)])
        out[label] = {"recovery": rec, "floor": floor}
    out["ratio"] = out["AdaGrad"]["recovery"] / out["RMSProp"]["recovery"]
    out["floor_ratio"] = out["RMSProp"]["floor"] / out["AdaGrad"]["floor"]
    return out


# ----------------------------------------------------------------------------------------
# Centered RMSProp on a noisy slope
# ----------------------------------------------------------------------------------------
@shared_result
def centered_vs_plain(snrs, *, lr: float = 0.01, alpha: float = 0.99, noise: float = 1.0,
                      steps: int = 2000, burn_in: int = 500, replicates: int = 1,
                      seed: int = 0) -> dict[str, np.ndarray]:
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
    at 0); ``replicates``, independent copies of each slope (more coordinates of the same run),
    whose means are averaged; ``seed`` of the noise (both runs see the same noise).

    Returns arrays over ``snrs``: ``'snr'``; ``'plain'`` and ``'centered'``, the measured mean
    step downhill (−Δθ averaged over the steps after ``burn_in``); ``'plain_rate'`` and
    ``'centered_rate'``, the mean ε_t over the same steps; ``'plain_theory'`` and
    ``'centered_theory'``, the two formulas above.
    """
    snrs = np.asarray(snrs, dtype=float)
    _check("snrs", snrs.tolist(), snrs.ndim == 1 and snrs.size >= 1 and bool((snrs >= 0).all()),
           "a 1-D sequence of numbers >= 0")
    _check("noise", noise, noise > 0, "> 0")
    _check("steps", steps, _is_int(steps) and steps >= 2, "an int >= 2")
    _check("burn_in", burn_in, _is_int(burn_in) and 0 <= burn_in < steps, "an int in [0, steps)")
    _check("replicates", replicates, _is_int(replicates) and replicates >= 1, "an int >= 1")
    plane = NoisyQuadratic(curvature=0.0, noise=noise, slope=np.tile(snrs, replicates) * noise,
                           start=0.0, dim=len(snrs) * replicates)
    out = {"snr": snrs}
    for kind, centered in (("plain", False), ("centered", True)):
        run = run_with_rates(plane, RMSprop, steps, seed=seed, lr=lr, alpha=alpha,
                             centered=centered)
        out[kind] = -run.steps[burn_in:].mean(0).reshape(replicates, -1).mean(0)
        out[f"{kind}_rate"] = run.rates[burn_in:].mean(0).reshape(replicates, -1).mean(0)
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
@shared_result
def sparse_experiment(problem: SparseRegression, optimizers: Mapping[str, tuple[Callable, dict]],
                      steps: int, rare, *, seed: int = 0) -> dict:
    r"""Optimizers on :class:`SparseRegression`: who learns the weights of the rare features?

    ``rare`` lists the indices of the rare features; the others are the frequent ones.
    ``optimizers`` maps a label to ``(optimizer, hyperparameters)``; every run sees the same
    minibatches (``seed``).  Returns a dict with, for each label:

    - ``'runs'``: the :class:`RateRun`;
    - ``'rare_error'``, ``'frequent_error'``: (T + 1,) the root mean square of w_t − w* over the
      rare (frequent) features;
    - ``'rate_ratio'``: mean ε_T over the rare features / mean ε_T over the frequent ones (the
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


def sparse_score(problem: SparseRegression, rare, tol: float) -> Callable[[RateRun], float]:
    """A score for :func:`tune_lr` on :class:`SparseRegression`: the number of steps until the
    root mean square error of the ``rare`` weights falls below ``tol`` (inf if never)."""
    mask = np.zeros(problem.dim, dtype=bool)
    mask[np.asarray(rare)] = True
    w_star = problem.w_star.numpy()

    def score(run: RateRun) -> float:
        err = np.sqrt(((run.path - w_star)[:, mask] ** 2).mean(1))
        hit = steps_to_reach(err, tol)
        return math.inf if hit is None else float(hit)
    return score


def preconditioned_condition_number(H, rates) -> float:
    r"""κ(diag(ε_t)^{1/2} H diag(ε_t)^{1/2}): the condition number that the update θ ← θ − ε_t ⊙ g
    sees on a quadratic with Hessian H (positive definite) and per-coordinate rates ε_t > 0.

    Near θ*, the update is θ − θ* ← (I − diag(ε_t) H)(θ − θ*), and diag(ε_t) H has the same
    eigenvalues as diag(ε_t)^{1/2} H diag(ε_t)^{1/2}.  With ε_t = ε for every coordinate this is
    κ(H); rates ε_{t,i} ∝ 1/Hᵢᵢ bring a diagonal H down to κ = 1.
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


def plot_scaled(bowls: Mapping, races: Mapping, kappa_eff: Mapping, axes=None):
    """Section 11.2's figure: the paths of :func:`race` on each bowl of ``bowls`` (label →
    Quadratic), titled with AdaGrad's preconditioned condition number ``kappa_eff``."""
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_trajectories

    if axes is None:
        _, axes = plt.subplots(1, len(bowls), figsize=(12, 4.8))
    for k, (ax, (key, runs)) in enumerate(zip(axes, races.items())):
        plot_trajectories(bowls[key], {name: run.path for name, run in runs.items()}, ax=ax)
        k_ada = kappa_eff[key]["AdaGrad"]
        ax.set_title(f"{key.capitalize()} bowl: diag(ε_t) turns κ = 100 into {k_ada:.2g}"
                     if k == 0 else f"{key.capitalize()}: κ stays {k_ada:.3g}, SGD ends lowest")
    return axes


def plot_switch(sw: dict, settings: Mapping | None = None, axes=None):
    """Section 11.3's figure from :func:`switch_experiment`'s result: ε_{t,i} of both
    coordinates before the switch (log–log, with AdaGrad's ε/√t) and the cost J(θ_t)."""
    import matplotlib.pyplot as plt

    S = SWITCH if settings is None else settings
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    ax1, ax2 = axes
    T1 = S["steps"][0]
    t = np.arange(1, sum(S["steps"]) + 1)
    speedup = sw["recovery"]["AdaGrad"] / sw["recovery"]["RMSProp"]
    for (name, run), color in zip(sw["runs"].items(), ("C0", "C1")):
        for i, style in ((0, ":"), (1, "-")):
            ax1.loglog(t[:T1], run.rates[:T1, i], style, color=color, lw=1,
                       label=f"{name}, coordinate {i + 1}")
        ax2.semilogy(np.arange(len(run.losses)), run.losses, color=color, lw=0.8, label=name)
    lr_ada = S["optimizers"]["AdaGrad"][1]["lr"]
    ax1.loglog(t[:T1], lr_ada / np.sqrt(t[:T1] * 1.0), "k--", lw=1,
               label=r"$\epsilon/\sqrt{t\,\sigma_2^2}$ (AdaGrad, coordinate 2)")
    ax1.set(xlabel="step t", ylabel=r"effective learning rate $\epsilon_{t,i}$",
            title="AdaGrad's rate keeps falling like $t^{-1/2}$; RMSProp's levels off")
    ax1.legend(fontsize="small")
    ax2.axvline(T1, color="gray", ls="--", lw=1, label="the minimum moves")
    ax2.axhline(S["tol"], color="k", ls=":", lw=1, label=f"J = {S['tol']:g}")
    ax2.set(xlabel="step t", ylabel=r"$J(\theta_t)$ (expected cost)",
            title=f"After the move, RMSProp gets back {speedup:.1f}× faster")
    ax2.legend(fontsize="small")
    return axes


def plot_centered(C: dict, lr: float, ax=None):
    """Section 11.4's figure: the measured mean step of plain and centered RMSProp
    (:func:`centered_vs_plain`) against μ/σ, with the two formulas and ε = ``lr``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.3))
    snr = np.linspace(0, C["snr"][-1], 100)
    ax.plot(snr, lr * snr / np.sqrt(snr**2 + 1), "C0--", lw=1,
            label=r"$\epsilon\mu/\sqrt{\mu^2+\sigma^2}$")
    ax.plot(snr, lr * snr, "C1--", lw=1, label=r"$\epsilon\mu/\sigma$")
    ax.plot(C["snr"], C["plain"], "C0o", label="plain RMSProp (measured)")
    ax.plot(C["snr"], C["centered"], "C1s", label="centered RMSProp (measured)")
    ax.axhline(lr, color="gray", ls=":", lw=1, label=r"$\epsilon$")
    ax.set(xlabel=r"signal-to-noise ratio $\mu/\sigma$",
           ylabel=r"mean step downhill ($\theta$ units)",
           title="Centered RMSProp's step grows with μ/σ;\nplain RMSProp's saturates at ε")
    ax.legend(fontsize="small")
    return ax


def plot_units(cs, ratios: Mapping, fresh: Mapping, steps: int, axes=None):
    """Section 11.5's figure: step length in units θ′ = cθ over step length in units θ
    (:func:`unit_step_ratio`) against c, after ``steps`` steps (``ratios``) and for a fresh
    state (``fresh``)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, data in zip(axes, (ratios, fresh)):
        for (name, r), marker in zip(data.items(), "osD^"):
            ax.loglog(cs, r, marker + "-", ms=5,
                      label=name + (" (under RMSProp)" if name == "AdaGrad" else ""))
        ax.loglog(cs, cs, "k:", lw=1, label="c (units of θ)")
        ax.set(xlabel=r"unit change $c$ ($\theta' = c\,\theta$)",
               ylabel="step length in new units / old units")
        ax.legend(fontsize="small")
    axes[0].set_title(f"After {steps} steps: AdaDelta's step scales like c for c ≥ 1,\n"
                      "SGD's like 1/c, AdaGrad's and RMSProp's not at all")
    axes[1].set_title("Fresh state: u = 0, so δ alone sets AdaDelta's first step")
    return axes


# ----------------------------------------------------------------------------------------
# A real network: AdaGrad and RMSProp on the MNIST-1D MLP
# ----------------------------------------------------------------------------------------
NETWORK_METHODS = {"AdaGrad": Adagrad, "RMSProp": RMSprop}
QUANTILES = (0.1, 0.5, 0.9)  #: the spread of ε_{t,i} over a layer's parameters: 10 %, median, 90 %


def layer_parameters(model: torch.nn.Module) -> dict[str, list[torch.nn.Parameter]]:
    """The trainable parameters of ``model`` grouped by the module that owns them (a Linear
    layer's weight and bias together), as ``{"layer 1": [...], "layer 2": [...], ...}``."""
    groups: dict[str, list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(name.rpartition(".")[0], []).append(p)
    return {f"layer {k + 1}": ps for k, ps in enumerate(groups.values())}


def layer_rate_quantiles(optimizer: torch.optim.Optimizer, model: torch.nn.Module,
                         quantiles=QUANTILES) -> np.ndarray:
    """(n_layers, len(quantiles)): quantiles of the effective learning rates ε_{t,i}
    (:func:`effective_lr`, AdaGrad or RMSProp) over the parameters of each layer."""
    out = []
    for params in layer_parameters(model).values():
        eff = torch.cat([effective_lr(optimizer, p).detach().reshape(-1) for p in params])
        out.append(np.quantile(eff.numpy(), quantiles))
    return np.array(out)


@dataclass
class NetworkRun:
    """One training run of :func:`network_run`, which can be continued.

    Attributes:
        method, lr, seed: AdaGrad or RMSProp, its ε, the seed of the batch order.
        epochs: (R,) the epochs after which we recorded; ``steps``: (R,) the step t there.
        loss: (R,) the training loss (the whole training set) then.
        rates: (R, n_layers, 3) the 10 %, 50 % and 90 % quantiles of ε_{t,i} over each
            layer's parameters (:func:`layer_rate_quantiles`).
        model, optimizer: where the run stands (to continue it).
    """

    method: str
    lr: float
    seed: int
    epochs: np.ndarray
    steps: np.ndarray
    loss: np.ndarray
    rates: np.ndarray
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer


def network_run(method: str, lr: float, seed: int, epochs: int, *, splits: dict | None = None,
                run: NetworkRun | None = None, settings: Mapping | None = None) -> NetworkRun:
    r"""Train the chapter's MNIST-1D MLP with AdaGrad or RMSProp (``course_lib.optim``) through
    :func:`course_lib.train.train`, recording the training loss and the quantiles of ε_{t,i}
    per layer at the epochs ``settings["record"]`` (up to ``epochs``, which must be one of them).

    ``run`` continues an earlier run (same method, ε, seed) to ``epochs``: training goes in
    chunks between the recording epochs, each chunk with a batch order seeded from ``seed``
    and its first epoch, so a continued run is the same as one run straight to ``epochs``.
    ``splits``: :func:`course_lib.experiments.comparison.mnist1d_splits` (float64 by default); the model
    is :func:`course_lib.experiments.comparison.make_model` ("mlp", 40-100-10, the same θ₀ each time),
    built and trained on the CPU.  ``settings`` defaults to ``NETWORK``.
    """
    from course_lib.experiments.comparison import make_model, mnist1d_splits
    from course_lib.train import evaluate, train

    S = NETWORK if settings is None else settings
    _check("method", method, method in NETWORK_METHODS, f"one of {list(NETWORK_METHODS)}")
    _check("lr", lr, lr > 0, "a number > 0")
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    _check("epochs", epochs, epochs in S["record"], f"one of the recording epochs {S['record']}")
    splits = mnist1d_splits() if splits is None else splits
    X, y = splits["train"]
    loss_fn = torch.nn.CrossEntropyLoss()
    if run is None:
        model = make_model("mlp", X.dtype)
        hyper = {"alpha": S["alpha"]} if method == "RMSProp" else {}
        opt = NETWORK_METHODS[method](model.parameters(), lr=lr, **hyper)
        run = NetworkRun(method, lr, seed, np.zeros(0, int), np.zeros(0, int), np.zeros(0),
                         np.zeros((0, 0, len(QUANTILES))), model, opt)
    else:
        _check("run", (run.method, run.lr, run.seed), (run.method, run.lr, run.seed) ==
               (method, lr, seed), "a run of the same method, ε and seed")
    done = int(run.epochs[-1]) if len(run.epochs) else 0
    per_epoch = math.ceil(len(X) / S["batch_size"])
    epochs_, loss, rates = list(run.epochs), list(run.loss), list(run.rates)
    for end in (e for e in S["record"] if done < e <= epochs):
        train(run.model, loss_fn, run.optimizer, (X, y), epochs=end - done,
              batch_size=S["batch_size"], seed=seed * 100_003 + done, device="cpu")
        epochs_.append(end)
        loss.append(evaluate(run.model, loss_fn, (X, y), metrics=())["loss"])
        rates.append(layer_rate_quantiles(run.optimizer, run.model))
        done = end
    run.epochs = np.array(epochs_)
    run.steps = run.epochs * per_epoch
    run.loss, run.rates = np.array(loss), np.array(rates)
    return run


def tuned_index(losses) -> int:
    """The tuned point of a grid from ``losses`` (len(grid), n_seeds), the grid in increasing
    order: the *first* (smallest ε) whose median over the seeds is within the seed range of the
    lowest median, i.e. not above the worst seed of the grid point with the lowest median.

    A plain argmin of the medians is decided by the last bits when two grid points' medians
    differ by less than the seeds scatter (the CPU's rounding then picks the winner); among
    such ties this rule takes the smaller, more cautious ε, so the choice is the same on every
    CPU unless the margin itself is that small."""
    losses = np.asarray(losses, dtype=float)
    _check("losses", losses.shape, losses.ndim == 2 and losses.size > 0,
           "a non-empty array (len(grid), n_seeds)")
    med = np.median(losses, 1)
    lowest = int(np.argmin(med))
    return int(np.flatnonzero(med <= losses[lowest].max())[0])


def network_experiment(settings: Mapping | None = None) -> dict:
    r"""AdaGrad against RMSProp on the MNIST-1D MLP: tune ε, then watch ε_{t,i} and the loss.

    1. For each method and each ε of ``settings["grid"][method]``, one run per seed of
       ``settings["seeds"]`` to ``settings["epochs"]`` (T); the tuned ε is the smallest one
       whose median over seeds of the training loss at T is within the seed range of the
       lowest median (:func:`tuned_index`; it must not be at the grid's edge).
    2. The tuned runs continue to ``settings["long_epochs"]`` (a run several times longer:
       does the conclusion survive?).

    Returns a dict:

    - ``'grid'``: method → (len(grid),) median training loss at T; ``'grid_seeds'``: method →
      (len(grid), n_seeds) the training loss of each seed at T; ``'grid_lrs'``: the grids;
    - ``'best'``: method → the tuned ε; ``'interior'``: method → whether it is inside the grid;
    - ``'grid_slope'``: method → (len(grid), n_layers) the exponent a of the median
      ε_{t,i} ∝ t^a, fitted over ``fit_from`` ≤ epoch ≤ T, for each ε of the grid;
    - ``'runs'``: method → the tuned :class:`NetworkRun` of each seed (to the long horizon);
    - ``'steps'``, ``'epochs'``: (R,) the recording points; ``'loss'``: method → (R,) the
      median over seeds of the training loss; ``'rates'``: method → (R, n_layers, 3) the
      median over seeds of the 10 %, 50 %, 90 % quantiles of ε_{t,i};
    - ``'slope'``, ``'late_slope'``: method → (n_layers,) the exponent of the median ε_{t,i}
      over ``fit_from`` ≤ epoch ≤ T, and over T ≤ epoch ≤ the long horizon;
    - ``'loss_slope'``, ``'late_loss_slope'``: method → the same fits for the training loss;
    - ``'loss_at_T'``, ``'loss_at_end'``: method → median training loss at T and at the end.
    """
    from course_lib.experiments.comparison import mnist1d_splits

    S = NETWORK if settings is None else settings
    T, T_long = S["epochs"], S["long_epochs"]
    _check("settings", (T, T_long), T in S["record"] and T_long in S["record"] and T < T_long,
           "epochs < long_epochs, both among the recording epochs")
    splits = mnist1d_splits()
    out = {k: {} for k in ("grid", "grid_seeds", "grid_lrs", "best", "interior", "grid_slope",
                           "runs", "loss", "rates", "slope", "late_slope", "loss_slope", "late_loss_slope",
                           "loss_at_T", "loss_at_end")}

    def slope(epochs, y, lo, hi):
        keep = (epochs >= lo) & (epochs <= hi)
        return log_log_slope(epochs[keep], y[keep])

    for method, lrs in S["grid"].items():
        runs = {lr: [network_run(method, lr, s, T, splits=splits, settings=S) for s in S["seeds"]]
                for lr in lrs}
        per_seed = np.array([[r.loss[-1] for r in runs[lr]] for lr in lrs])
        final = np.median(per_seed, 1)
        k = tuned_index(per_seed)
        out["grid"][method], out["grid_lrs"][method] = final, tuple(lrs)
        out["grid_seeds"][method] = per_seed
        out["best"][method], out["interior"][method] = lrs[k], 0 < k < len(lrs) - 1
        ep = runs[lrs[0]][0].epochs
        out["grid_slope"][method] = np.array([
            [slope(ep, np.median([r.rates[:, j, 1] for r in runs[lr]], 0), S["fit_from"], T)
             for j in range(runs[lr][0].rates.shape[1])] for lr in lrs])
        tuned = [network_run(method, lrs[k], r.seed, T_long, splits=splits, run=r, settings=S)
                 for r in runs[lrs[k]]]
        out["runs"][method] = tuned
        ep = tuned[0].epochs
        out["epochs"], out["steps"] = ep, tuned[0].steps
        loss = np.median([r.loss for r in tuned], 0)
        rates = np.median([r.rates for r in tuned], 0)
        out["loss"][method], out["rates"][method] = loss, rates
        out["slope"][method] = np.array([slope(ep, rates[:, j, 1], S["fit_from"], T)
                                         for j in range(rates.shape[1])])
        out["late_slope"][method] = np.array([slope(ep, rates[:, j, 1], T, T_long)
                                              for j in range(rates.shape[1])])
        out["loss_slope"][method] = slope(ep, loss, S["fit_from"], T)
        out["late_loss_slope"][method] = slope(ep, loss, T, T_long)
        out["loss_at_T"][method] = float(loss[list(ep).index(T)])
        out["loss_at_end"][method] = float(loss[-1])
    return out


def rank_at(result: dict, epoch: int) -> dict:
    """Which method of :func:`network_experiment`'s ``result`` has the lower median training
    loss after ``epoch`` epochs: ``{'lower': method, 'higher': method, 'ratio': the higher
    median / the lower one, 'separated': whether every seed of the lower one is below every
    seed of the higher one}``."""
    epochs = list(result["epochs"])
    _check("epoch", epoch, epoch in epochs, f"one of the recorded epochs {epochs}")
    seeds = {m: np.array([r.loss[epochs.index(epoch)] for r in runs])
             for m, runs in result["runs"].items()}
    lower, higher = sorted(seeds, key=lambda m: np.median(seeds[m]))
    return {"lower": lower, "higher": higher,
            "ratio": float(np.median(seeds[higher]) / np.median(seeds[lower])),
            "separated": bool(seeds[lower].max() < seeds[higher].min())}


def _halves(x: float) -> str:
    """x rounded to the nearest multiple of 1/2, written as 0, -1/2, -1, -3/2, ..."""
    k = int(round(2 * x))
    if k == 0:
        return "0"
    sign = "-" if k < 0 else "+"
    return f"{sign}{abs(k) // 2}" if k % 2 == 0 else f"{sign}{abs(k)}/2"


def network_report(result: dict, settings: Mapping | None = None) -> str:
    """The lines the chapter prints about :func:`network_experiment`'s ``result``, each number at
    the precision that held under every kernel set we measured (native, and
    ``ATEN_CPU_CAPABILITY=default`` / ``avx2``; the trainings are chaotic, so most numbers move
    in their second digit):

    - the tuned ε of each method (:func:`tuned_index`) and whether it is inside its grid;
    - the median ε_{t,i} of each layer after the first, the T-th and the last epoch, to one
      significant digit;
    - AdaGrad's exponents a of ε_{t,i} ∝ t^a, to one decimal (they moved by < 0.01);
    - the training loss after the first epoch, to one significant digit;
    - the loss exponents b, to the nearest 1/2 (they moved by up to 0.2 over epochs T to the end);
    - which method is ahead after T and after the last epoch (:func:`rank_at`): at T with
      whether the seeds separate, at the end with the ratio of the medians to one digit (the
      seeds did not separate on every kernel set)."""
    S = NETWORK if settings is None else settings
    T, T_long, lo = S["epochs"], S["long_epochs"], S["fit_from"]
    ep = list(result["epochs"])
    one = lambda x: f"{x:.1g}"                          # noqa: E731
    dec = lambda x: f"{round(float(x), 1) + 0.0:.1f}"   # noqa: E731  (no "-0.0")
    pair = lambda xs, f: "(" + ", ".join(f(x) for x in xs) + ")"  # noqa: E731
    lines = []
    for method, lrs in result["grid_lrs"].items():
        lines.append(f"{method}: tuned eps = {result['best'][method]:g} of "
                     f"{', '.join(f'{lr:g}' for lr in lrs)} (inside the grid: "
                     f"{result['interior'][method]})")
    lines.append(f"median eps_t,i (layer 1, layer 2) after epochs 1, {T}, {T_long}:")
    for method, rates in result["rates"].items():
        lines.append(f"   {method}: " + ", ".join(pair(rates[ep.index(e), :, 1], one)
                                                 for e in (1, T, T_long)))
    grid = "; ".join(f"{lr:g}: {pair(a, dec)}" for lr, a in
                     zip(result["grid_lrs"]["AdaGrad"], result["grid_slope"]["AdaGrad"]))
    lines.append(f"AdaGrad's exponent a of eps_t,i ~ t^a (layer 1, layer 2) over epochs {lo}-{T} "
                 f"for eps = {grid}")
    lines.append(f"   at the tuned eps over epochs {T}-{T_long}: "
                 f"{pair(result['late_slope']['AdaGrad'], dec)}")
    lines.append("training loss after epoch 1: " + ", ".join(
        f"{m} {one(loss[ep.index(1)])}" for m, loss in result["loss"].items()))
    lines.append("exponent b of the training loss ~ t^b, to the nearest 1/2: " + "; ".join(
        f"{m} {_halves(result['loss_slope'][m])} over epochs {lo}-{T}, "
        f"{_halves(result['late_loss_slope'][m])} over {T}-{T_long}" for m in result["loss"]))
    r = rank_at(result, T)
    lines.append(f"lower median training loss after {T} epochs: {r['lower']} "
                 f"(every seed below every seed of {r['higher']}: {r['separated']})")
    r = rank_at(result, T_long)
    lines.append(f"lower median training loss after {T_long} epochs: {r['lower']} "
                 f"({r['higher']}'s is {one(r['ratio'])} times as high)")
    return "\n".join(lines)


def plot_network(result: dict, axes=None):
    """The three panels of the network experiment (:func:`network_experiment`'s ``result``):
    the median and 10–90 % spread of ε_{t,i} per layer against the step t, the training loss
    (median over seeds, and each seed thin), and AdaGrad's fitted decay exponent for each ε of
    its grid.  Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax1, ax2, ax3 = axes
    t, T = result["steps"], result["steps"][list(result["epochs"]).index(NETWORK["epochs"])]
    for (method, rates), color in zip(result["rates"].items(), ("C0", "C1")):
        for j, style in enumerate(("-", "--")):
            ax1.loglog(t, rates[:, j, 1], style, color=color,
                       label=f"{method} (ε = {result['best'][method]:g}), layer {j + 1}")
            ax1.fill_between(t, rates[:, j, 0], rates[:, j, 2], color=color, alpha=0.12, lw=0)
        ax2.loglog(t, result["loss"][method], color=color, lw=2,
                   label=f"{method}, median of {len(result['runs'][method])} seeds")
        for run in result["runs"][method]:
            ax2.loglog(run.steps, run.loss, color=color, lw=0.6, alpha=0.5)
    a0 = result["rates"]["AdaGrad"][0, 0, 1]
    ax1.loglog(t, a0 * np.sqrt(t[0] / t), "k:", lw=1, label=r"$\propto t^{-1/2}$")
    ax1.set(xlabel="step t", ylabel=r"effective learning rate $\epsilon_{t,i}$",
            title="Tuned AdaGrad's rates hardly shrink;\nRMSProp's fall, then rise")
    ax1.legend(fontsize="x-small")
    for ax in (ax1, ax2):
        ax.axvline(T, color="gray", ls="--", lw=1)
    ax2.set(xlabel="step t", ylabel="training loss",
            title="No stall: AdaGrad's loss keeps falling\nover a 5× longer run")
    ax2.legend(fontsize="small")
    lrs = result["grid_lrs"]["AdaGrad"]
    for j, marker in enumerate("os"):
        ax3.semilogx(lrs, result["grid_slope"]["AdaGrad"][:, j], marker + "-", color="C0",
                     label=f"layer {j + 1}")
    ax3.axhline(-0.5, color="k", ls=":", lw=1, label=r"$-1/2$")
    ax3.axhline(0.0, color="gray", lw=0.5)
    ax3.axvline(result["best"]["AdaGrad"], color="C0", ls="--", lw=1, label="tuned ε")
    ax3.set(xlabel="AdaGrad's ε", ylabel=r"exponent $a$ of median $\epsilon_{t,i} \propto t^a$",
            title=r"$t^{-1/2}$ only at a small ε," + "\nwhere the gradients keep their size")
    ax3.legend(fontsize="small")
    return axes


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
    """Controls (optimizer, ε, ρ, and the angle by which the bowl is rotated) over three panels:
    the path on the contours, ε_{t,i} of each coordinate against t (with the stability limits
    2/H_ii of plain gradient descent on each axis), and the condition number that the update
    sees, κ(diag(ε_t)^{1/2} H diag(ε_t)^{1/2}) (:func:`preconditioned_condition_number`),
    against κ(H).  By default the bowl is the chapter's κ = 100 quadratic, rotated by ``angle``
    degrees (0: axis-aligned); a ``landscape`` with a Hessian replaces it (the angle is then
    ignored)."""
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_trajectories
    from course_lib.widgets import interactive_plot

    def draw(optimizer, lr, rho, angle):
        J = landscape if landscape is not None else Quadratic(
            **{**SCALED["quadratic"], "angle": math.radians(angle)})
        run = explorer_run(optimizer, lr, rho, J, steps)
        H = J.hessian(torch.from_numpy(run.path[0])).numpy()
        fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(11, 3.6))
        ok = np.isfinite(run.losses[-1])
        end = f"J after {steps} steps = {run.losses[-1]:.2g}" if ok else "diverged"
        plot_trajectories(J, {optimizer: run.path}, ax=ax1, title=f"{optimizer}, ε = {lr:.3g}: {end}")
        t = np.arange(1, steps + 1)
        for i in range(J.dim):
            ax2.loglog(t, run.rates[:, i], color=f"C{i}",
                       label=rf"$\epsilon_{{t,{i + 1}}}$ (coordinate {i + 1})")
            ax2.axhline(2 / H[i, i], color=f"C{i}", ls=":", lw=1,
                        label=f"2/H_{i + 1}{i + 1} = {2 / H[i, i]:.3g}")
        ax2.set(xlabel="step t", ylabel=r"effective learning rate $\epsilon_{t,i}$",
                title="Per-coordinate effective learning rate")
        ax2.legend(fontsize="small")
        kappa_H = float(np.linalg.cond(H))
        finite = np.isfinite(run.rates).all(1) & (run.rates > 0).all(1)
        kappa = np.array([preconditioned_condition_number(H, r) if f else np.nan
                          for r, f in zip(run.rates, finite)])
        ax3.semilogy(t, kappa, color="C2", label=r"κ of diag($\epsilon_t$) H")
        ax3.axhline(kappa_H, color="gray", ls="--", lw=1, label=f"κ(H) = {kappa_H:.3g}")
        ax3.set_ylim(0.8, 2 * kappa_H)
        ax3.set(xlabel="step t", ylabel="condition number the update sees",
                title=(f"κ seen by the update: {kappa[-1]:.3g} at t = {steps}"
                       if np.isfinite(kappa[-1]) else "κ seen by the update"))
        ax3.legend(fontsize="small")
        fig.tight_layout()
        return run

    return interactive_plot(
        draw,
        optimizer=W.Dropdown(options=list(OPTIMIZER_CHOICES), value="RMSProp",
                             description="optimizer"),
        lr=W.FloatLogSlider(value=0.05, base=10, min=-3, max=0, step=0.25,
                            description="ε (lr)", continuous_update=False),
        rho=W.FloatSlider(value=0.9, min=0.5, max=0.999, step=0.01, description="ρ",
                          continuous_update=False, readout_format=".3f"),
        angle=W.FloatSlider(value=0.0, min=0.0, max=45.0, step=5.0, description="angle (°)",
                            continuous_update=False),
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
                         "RMSProp": (RMSprop, dict(lr=0.03, alpha=0.99))},
          # a skeptic's check on the rotated bowl: each method's ε tuned (final J after `steps`)
          "grids": {"SGD": (0.015, 0.019, 0.021), "AdaGrad": (1.0, 2.0, 5.0),
                    "RMSProp": (0.1, 0.2, 0.3)}}
#: section 3: a noisy quadratic whose minimum moves from 0 to (2, 2) after 2000 steps
SWITCH = {"before": dict(curvature=1.0, noise=(0.1, 1.0), start=(1.0, 1.0)),
          "after": dict(curvature=1.0, noise=(0.1, 1.0), center=(2.0, 2.0)),
          "steps": (2000, 2000),
          # the same first step: ε_RMSProp/√(1 − ρ) = ε_AdaGrad
          "optimizers": {"AdaGrad": (Adagrad, dict(lr=0.1)),
                         "RMSProp": (RMSprop, dict(lr=0.01, alpha=0.99))},
          "fit_from": 100,      # fit ε_t ∝ t^a over 100 ≤ t ≤ 2000 (the first phase)
          "level_from": 500,    # RMSProp's level: the mean ε_t over 500 < t ≤ 2000
          "tol": 0.05,          # "recovered": J below this after the switch
          "replicates": 15}     # independent noise draws for the spread (switch_replicates)
#: section 4: plain against centered RMSProp on a noisy slope
CENTERED = dict(snrs=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0), lr=0.01, alpha=0.99, noise=1.0,
                steps=2000, burn_in=500, replicates=8)
NOISELESS_STEPS = 1000  #: centered RMSProp on a slope without noise: ε_t after this many steps
#: section 5: warm each optimizer on SWITCH["before"], then compare steps in units θ′ = cθ
UNITS = {"steps": 500, "cs": tuple(float(c) for c in np.logspace(-2, 2, 9)),
         "optimizers": {"SGD": (SGD, dict(lr=0.1)), "AdaGrad": (Adagrad, dict(lr=0.1)),
                        "RMSProp": (RMSprop, dict(lr=0.01, alpha=0.99)),
                        "AdaDelta": (Adadelta, dict(lr=1.0, rho=0.9))}}
#: section 6: online regression with 10 frequent (p = 0.5) and 10 rare (p = 0.01) features
SPARSE = {"problem": dict(frequencies=(0.5,) * 10 + (0.01,) * 10, weights=1.0, noise=0.1,
                          batch_size=10),
          "rare": tuple(range(10, 20)), "steps": 500, "tol": 0.1,
          "optimizers": {"SGD": (SGD, dict(lr=0.6)), "AdaGrad": (Adagrad, dict(lr=1.0))},
          # ε tuned by the median (over seeds) number of steps until the rare weights' error < tol
          "grids": {"SGD": (0.5, 0.6, 0.7), "AdaGrad": (0.5, 1.0, 2.0)}, "seeds": (0, 1, 2)}
#: section 7: AdaGrad and RMSProp on the MNIST-1D MLP (course_lib.experiments.comparison's "mlp", 2560
#: training signals, minibatches of 128: 20 steps per epoch); ε tuned by the median training
#: loss at `epochs` over `seeds`, then the tuned runs go on to `long_epochs`
NETWORK = {"grid": {"AdaGrad": (0.1, 0.3, 1.0, 3.0), "RMSProp": (3e-3, 1e-2, 3e-2)},
           "alpha": 0.99, "seeds": (0, 1, 2), "batch_size": 128,
           "record": (1, 2, 3, 4, 6, 8, 12, 16, 20, 30, 40, 60, 80, 100),
           "epochs": 20, "long_epochs": 100, "fit_from": 4}
