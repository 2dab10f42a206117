r"""Ill-conditioning of the Hessian (Deep Learning book §8.2.1): the experiments of chapter 3.

A gradient step θ ← θ − εg changes the cost, to second order, by

.. math::

    J(\theta - \epsilon g) - J(\theta) \approx \tfrac12 \epsilon^2\, g^\top H g
        - \epsilon\, g^\top g ,

so the step helps only while ½ε²gᵀHg < εgᵀg.  When H is ill-conditioned (κ = λ_max/λ_min
large) the learning rate must stay below 2/λ_max, and then the flat directions, with
curvature λ_min, need about κ steps to make progress.  This module measures these facts:

================================  ========================================================
function                          what it measures
================================  ========================================================
:func:`taylor_check`              predicted (Taylor) against actual change of J along −g
:func:`taylor_check_landscape`    the same at a point of a toy landscape
:func:`gd_losses`                 J(θ_t) − J* of gradient descent, many ε at once
:func:`largest_stable_lr`         the largest ε for which gradient descent does not blow
                                  up, by bisection (theory: 2/λ_max)
:func:`stability_wall`            J(θ_T)/J(θ₀) against ε/(2/λ_max), for several κ
:func:`iterations_to_tolerance`   steps until ‖θ_t − θ*‖ ≤ tol·‖θ₀ − θ*‖
:func:`conditioning_sweep`        both, on quadratics of growing κ (steps grow like κ)
:func:`train_with_curvature`      ‖g‖, gᵀHg and the loss at checkpoints along training
:func:`figure_8_1_run`            the chapter's setting of the book's Figure 8.1
:func:`figure_8_1_seeds`          the same run from several θ₀ / batch orders
:func:`figure_8_1_summary`        medians over those runs of the numbers the chapter prints
:func:`newton_cost`               entries, memory and flops of one Newton step, P parameters
================================  ========================================================

The chapter's settings are module constants (``SWEEP_KAPPAS``, ``FIG81``, …), so the notebook
and ``tests/test_ch03_conditioning.py`` run the same experiments.

References: Goodfellow, Bengio & Courville (2016), *Deep Learning*, §4.3.1 and §8.2.1;
Nocedal & Wright (2006), *Numerical Optimization*, §3.3 (rate of steepest descent on a
quadratic); Cohen et al. (2021), *Gradient descent on neural networks typically occurs at the
edge of stability*, ICLR (the curvature grows during training).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch

from course_lib.curvature import GradientCurvature, gradient_curvature
from course_lib.landscapes import Landscape, Quadratic
from course_lib.utils import shared_result

__all__ = ["plot_taylor_check", "plot_stability_wall", "plot_conditioning_sweep", 
    "TaylorCheck", "taylor_check", "gd_losses", "largest_stable_lr", "iterations_to_tolerance",
    "ConditioningSweep", "conditioning_sweep", "CurvatureLog", "train_with_curvature",
    "Figure81Run", "figure_8_1_run", "figure_8_1_seeds", "Figure81Summary", "figure_8_1_summary",
    "NewtonCost", "newton_cost", "FIG81_SEEDS", "EOS", "EdgeRun", "edge_of_stability_run", "plot_edge_of_stability",
    "plot_figure_8_1",
    "taylor_check_landscape", "stability_wall",
    "TAYLOR_QUADRATIC", "TAYLOR_LRS", "WALL_KAPPAS", "WALL_STEPS", "WALL_RATIOS",
    "SWEEP_KAPPAS", "SWEEP_DIM", "SWEEP_TOL", "SWEEP_SEED", "STABILITY_STEPS", "FIG81",
]

# ---- the chapter's settings (notebook and tests import these) ---------------------------
#: the 2-D quadratic of the Taylor-model figure (κ = 10, axes rotated by 0.5 rad)
TAYLOR_QUADRATIC = dict(condition_number=10.0, angle=0.5)
TAYLOR_LRS = np.linspace(0.0, 0.3, 61)  #: the step sizes ε tried there
#: the "wall" figure: J(θ_T)/J(θ₀) after WALL_STEPS steps against ε/(2/λ_max), per κ
WALL_KAPPAS = (10, 100, 1000)
WALL_STEPS = 200
WALL_RATIOS = np.linspace(0.5, 1.5, 201)
#: condition numbers of the sweep (quadratics with eigenvalues spread evenly in [1, κ])
SWEEP_KAPPAS = (10, 20, 50, 100, 200, 500, 1000)
SWEEP_DIM = 10          #: n, the dimension of the sweep's quadratics
SWEEP_TOL = 1e-3        #: "a fixed accuracy": ‖θ_t − θ*‖ ≤ tol·‖θ₀ − θ*‖
SWEEP_SEED = 0          #: seed of the quadratics' random rotation
STABILITY_STEPS = 1000  #: gradient-descent steps per stability test of the bisection
#: the chapter's version of Figure 8.1: an MLP on MNIST-1D trained with plain SGD
FIG81 = dict(num_samples=4000, hidden=(100, 100), lr=0.1, batch_size=64, epochs=20,
             measure_every=2, seed=0)
#: seeds (θ₀ and batch order) of the repeated Figure 8.1 run.  What a run ends with is one
#: sample of a noisy SGD path: the last bits of the arithmetic (another CPU's kernels) move
#: gᵀHg at the end by a few %, another seed by a factor 3.  The chapter prints medians over
#: these seeds, at the precision that spread allows.
FIG81_SEEDS = (0, 1, 2, 3, 4)


def _check_positive(name: str, value, integer: bool = False) -> None:
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok or value <= 0:
        kind = "an int >= 1" if integer else "a finite number > 0"
        raise ValueError(f"Invalid {name}: {value!r} (expected {kind})")


def _lrs(lrs, allow_zero: bool = False) -> np.ndarray:
    """The learning rates as a 1-D float64 array, validated."""
    arr = np.atleast_1d(np.asarray(lrs, dtype=np.float64))
    low_ok = (arr >= 0) if allow_zero else (arr > 0)
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)) or not np.all(low_ok):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"Invalid lrs: {lrs!r} (expected a non-empty 1-D list of finite "
                         f"learning rates {bound})")
    return arr


def _start(landscape: Landscape, start) -> torch.Tensor:
    theta0 = landscape.start if start is None else start
    theta0 = torch.as_tensor(np.asarray(theta0, dtype=np.float64)).reshape(-1)
    if theta0.numel() != landscape.dim:
        raise ValueError(f"Invalid start: {theta0.numel()} numbers (expected "
                         f"dim = {landscape.dim})")
    return theta0


# ----------------------------------------------------------------------------------------
# 1. The second-order Taylor model of a gradient step
# ----------------------------------------------------------------------------------------
class TaylorCheck(NamedTuple):
    r"""Predicted and actual change of J along the step −εg, one entry per ε.

    Fields: ``lrs`` (m,) the ε; ``predicted`` (m,) ½ε²gᵀHg − εgᵀg; ``actual`` (m,)
    J(θ − εg) − J(θ); ``curvature`` the :class:`~course_lib.curvature.GradientCurvature`
    (gᵀg and gᵀHg) at θ.
    """

    lrs: np.ndarray
    predicted: np.ndarray
    actual: np.ndarray
    curvature: GradientCurvature

    @property
    def optimal_lr(self) -> float:
        """ε* = gᵀg / gᵀHg, where the quadratic model is lowest (inf if gᵀHg ≤ 0)."""
        return self.curvature.optimal_lr

    @property
    def critical_lr(self) -> float:
        """2ε* = 2gᵀg / gᵀHg: beyond it the model predicts that the step *raises* J."""
        return 2 * self.curvature.optimal_lr

    @property
    def max_relative_error(self) -> float:
        """max |actual − predicted| / max |predicted|: 0 for an exact quadratic."""
        return float(np.max(np.abs(self.actual - self.predicted))
                     / max(np.max(np.abs(self.predicted)), 1e-300))


def taylor_check(loss: Callable[[], torch.Tensor], params, lrs) -> TaylorCheck:
    r"""Compare the Taylor prediction ½ε²gᵀHg − εgᵀg with J(θ − εg) − J(θ) for each ε.

    Arguments:
        loss: a zero-argument callable returning J at the current ``params`` (a scalar
            tensor; it is called once for g and gᵀHg, then once per ε).
        params: an ``nn.Module`` or a list of tensors that require grad: θ.  They are moved
            to θ − εg for each evaluation and restored afterwards.
        lrs: the step sizes ε ≥ 0 to try.

    On a quadratic the prediction is exact (up to rounding); on a network it holds for
    small ε only.  For a :class:`~course_lib.landscapes.Landscape` J and a point θ::

        theta = torch.tensor(point, dtype=torch.float64, requires_grad=True)
        taylor_check(lambda: J(theta), [theta], lrs)
    """
    if not callable(loss):
        raise ValueError(f"Invalid loss: {loss!r} (expected a zero-argument callable)")
    lrs = _lrs(lrs, allow_zero=True)
    params = ([p for p in params.parameters() if p.requires_grad]
              if isinstance(params, torch.nn.Module) else list(params))
    if not params or not all(isinstance(p, torch.Tensor) and p.requires_grad for p in params):
        raise ValueError("Invalid params: expected an nn.Module or a non-empty list of tensors "
                         "that require grad")
    curv = gradient_curvature(loss, params)
    grads = torch.autograd.grad(loss(), params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, params)]
    saved = [p.detach().clone() for p in params]
    actual = []
    with torch.no_grad():
        J0 = float(loss())
        try:
            for lr in lrs:
                for p, p0, g in zip(params, saved, grads):
                    p.copy_(p0 - lr * g)  # θ − εg
                actual.append(float(loss()) - J0)
        finally:
            for p, p0 in zip(params, saved):
                p.copy_(p0)
    predicted = np.array([curv.predicted_change(float(lr)) for lr in lrs])
    return TaylorCheck(lrs, predicted, np.array(actual), curv)


def taylor_check_landscape(landscape: Landscape, lrs, theta=None) -> TaylorCheck:
    """:func:`taylor_check` at the point ``theta`` (default ``landscape.start``) of a
    :class:`~course_lib.landscapes.Landscape`, in float64."""
    if not isinstance(landscape, Landscape):
        raise ValueError(f"Invalid landscape: {landscape!r} (expected a Landscape)")
    point = _start(landscape, theta).clone().requires_grad_()
    return taylor_check(lambda: landscape(point), [point], lrs)


# ----------------------------------------------------------------------------------------
# 2. Gradient descent on a landscape: stability and speed
# ----------------------------------------------------------------------------------------
def _numpy_functions(landscape: Landscape, fast: bool = True):
    """(value, grad) of J − J* as NumPy functions of θ with shape (..., n).

    The generic path wraps the landscape's torch functions.  A :class:`Quadratic` gets a fast
    path (the same formulas on NumPy arrays, ~10× faster per step for small n), because the
    bisection of :func:`largest_stable_lr` runs tens of thousands of steps; the test file
    checks that both paths agree.
    """
    if fast and isinstance(landscape, Quadratic):
        H, center = landscape.H.numpy(), landscape.center.numpy()

        def value(theta):
            d = theta - center
            return 0.5 * ((d @ H) * d).sum(-1)

        def grad(theta):
            return (theta - center) @ H  # H symmetric
        return value, grad

    def value(theta):
        with torch.no_grad():
            return (landscape.value(torch.from_numpy(theta)) - landscape.min_value).numpy()

    def grad(theta):
        with torch.no_grad():
            return landscape.grad(torch.from_numpy(theta)).numpy()
    return value, grad


def gd_losses(landscape: Landscape, lrs, steps: int, start=None, every: int = 1,
              fast: bool = True) -> np.ndarray:
    r"""J(θ_t) − J* for gradient descent θ_{t+1} = θ_t − ε∇J(θ_t), for every ε at once.

    The runs are batched: θ has shape (m, n), one row per learning rate (the landscapes
    broadcast over leading dimensions), all from ``start`` (default ``landscape.start``).
    Returns an (m, steps // every + 1) float64 array: J at t = 0, every, 2·every, …, steps
    (``every`` must divide ``steps``).  A diverging run gives inf or nan entries.
    ``fast=False`` uses the landscape's torch functions even for a :class:`Quadratic`.
    ``tests/test_ch03_conditioning.py`` checks this against :func:`run_optimizer` with
    ``course_lib.optim.SGD``.
    """
    if not isinstance(landscape, Landscape):
        raise ValueError(f"Invalid landscape: {landscape!r} (expected a Landscape)")
    _check_positive("steps", steps, integer=True)
    _check_positive("every", every, integer=True)
    if steps % every:
        raise ValueError(f"Invalid every: {every} (expected a divisor of steps = {steps})")
    value, grad = _numpy_functions(landscape, fast)
    eps = _lrs(lrs)[:, None]  # (m, 1)
    theta = np.tile(_start(landscape, start).numpy(), (len(eps), 1))  # (m, n)
    out = np.empty((len(eps), steps // every + 1))
    with np.errstate(over="ignore", invalid="ignore"):
        out[:, 0] = value(theta)
        for t in range(1, steps + 1):
            theta = theta - eps * grad(theta)
            if t % every == 0:
                out[:, t // every] = value(theta)
    return out


def largest_stable_lr(landscape: Landscape, steps: int = STABILITY_STEPS, rel_tol: float = 1e-4,
                      start=None, lr_limit: float = 1e6) -> float:
    r"""The largest ε for which gradient descent does not blow up, found by bisection.

    A learning rate counts as *stable* when J(θ_T) − J* ≤ J(θ₀) − J* after T = ``steps``
    steps of :func:`gd_losses`.  The search doubles ε from 1 (or halves it) to bracket the
    boundary, then bisects until the bracket is narrower than ``rel_tol`` times its upper
    end, and returns the largest stable ε found.

    Theory for a quadratic with top eigenvalue λ_max: the error along that eigenvector is
    multiplied by (1 − ελ_max) each step, so the boundary is exactly ε = 2/λ_max.  Just above
    it the growth is slow, so the measured value can exceed 2/λ_max, relatively, by up to
    ln(J₀ / (½λ_max c²)) / (4T)  (c the start's component along the top eigenvector).
    """
    _check_positive("steps", steps, integer=True)
    _check_positive("rel_tol", rel_tol)
    _check_positive("lr_limit", lr_limit)
    if rel_tol >= 1:
        raise ValueError(f"Invalid rel_tol: {rel_tol!r} (expected 0 < rel_tol < 1)")

    def stable(lr: float) -> bool:
        J = gd_losses(landscape, [lr], steps, start, every=steps)[0]  # J₀ and J_T only
        return bool(J[-1] <= J[0])  # nan (overflow) counts as unstable

    lo, hi = 0.0, 1.0
    if stable(hi):  # bracket from above: double until unstable
        while stable(2 * hi):
            hi *= 2
            if hi > lr_limit:
                raise ValueError(f"No unstable learning rate below lr_limit={lr_limit}: is J "
                                 "bounded below with positive curvature?")
        lo, hi = hi, 2 * hi
    else:  # bracket from below: halve until stable
        while not stable(hi / 2):
            hi /= 2
            if hi < 1e-300:
                raise ValueError("No stable learning rate found: is the start finite?")
        lo = hi / 2
    while hi - lo > rel_tol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return lo


@shared_result
def stability_wall(kappas=WALL_KAPPAS, ratios=WALL_RATIOS, steps: int = WALL_STEPS,
                   dim: int = SWEEP_DIM, seed: int = SWEEP_SEED) -> np.ndarray:
    r"""J(θ_T)/J(θ₀) after T = ``steps`` steps of gradient descent with ε = r·2/λ_max.

    One row per κ (``Quadratic(condition_number=κ, dim=dim, seed=seed)``), one column per
    ratio r in ``ratios``.  Theory: below r = 1 every run shrinks the cost, above it the top
    eigen-direction grows like |1 − ελ_max|^T = (2r − 1)^T, whatever κ is.
    """
    ratios = _lrs(ratios)
    rows = []
    for kappa in kappas:
        J = Quadratic(condition_number=float(kappa), dim=dim, seed=seed)
        losses = gd_losses(J, ratios * 2.0 / float(J.eigenvalues.max()), steps, every=steps)
        with np.errstate(over="ignore", invalid="ignore"):
            rows.append(losses[:, -1] / losses[:, 0])
    return np.array(rows)


def iterations_to_tolerance(landscape: Landscape, lr: float, tol: float = SWEEP_TOL,
                            max_steps: int = 1_000_000, start=None) -> int | None:
    r"""The first t with ‖θ_t − θ*‖ ≤ tol·‖θ₀ − θ*‖ under gradient descent with step ε.

    θ* is the landscape's minimizer (the nearest one, if it lists several).  Returns None if
    gradient descent does not get there within ``max_steps`` steps (or diverges).  For a
    quadratic and ε = 1/λ_max the error along the flattest direction shrinks by (1 − 1/κ)
    per step, so t ≈ κ·ln(1/tol) for large κ: linear in κ.
    """
    _check_positive("lr", lr)
    _check_positive("tol", tol)
    _check_positive("max_steps", max_steps, integer=True)
    if tol >= 1:
        raise ValueError(f"Invalid tol: {tol!r} (expected 0 < tol < 1)")
    if len(landscape.minimizers) == 0:
        raise ValueError(f"Invalid landscape: {landscape!r} lists no minimizer to measure "
                         "the error against")
    _, grad = _numpy_functions(landscape)
    theta = _start(landscape, start).numpy()
    minimizers = landscape.minimizers.numpy()  # (k, n)
    error = lambda th: float(np.min(np.linalg.norm(th - minimizers, axis=1)))  # noqa: E731
    target = tol * error(theta)
    if target == 0:
        return 0
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, max_steps + 1):
            theta = theta - lr * grad(theta)
            e = error(theta)
            if e <= target:
                return t
            if not math.isfinite(e):
                return None
    return None


class ConditioningSweep(NamedTuple):
    r"""Gradient descent on quadratics of growing κ (one entry per κ, NumPy arrays).

    ``kappas``; ``lambda_max`` the top eigenvalue; ``stable_lr`` the measured largest stable
    ε (:func:`largest_stable_lr`); ``stable_lr_theory`` = 2/λ_max; ``iterations`` the steps
    to reach ``tol`` with ε = 1/λ_max (:func:`iterations_to_tolerance`);
    ``iterations_theory`` = κ·ln(1/tol); ``tol``.
    """

    kappas: np.ndarray
    lambda_max: np.ndarray
    stable_lr: np.ndarray
    stable_lr_theory: np.ndarray
    iterations: np.ndarray
    iterations_theory: np.ndarray
    tol: float

    def slope(self) -> float:
        """Least-squares slope of log(iterations) against log(κ): 1 for linear growth."""
        return float(np.polyfit(np.log(self.kappas), np.log(self.iterations), 1)[0])


@shared_result
def conditioning_sweep(kappas=SWEEP_KAPPAS, dim: int = SWEEP_DIM, tol: float = SWEEP_TOL,
                       seed: int = SWEEP_SEED, steps: int = STABILITY_STEPS) -> ConditioningSweep:
    r"""For each κ: the largest stable ε by bisection, and the iterations to reach ``tol``.

    Each landscape is ``Quadratic(condition_number=κ, dim=dim, seed=seed)``: eigenvalues
    spread evenly over [1, κ] in a random basis, started from its default ``start``.
    The iterations use ε = 1/λ_max, half the largest stable step.
    """
    kappas = np.asarray(kappas, dtype=np.float64)
    if kappas.ndim != 1 or kappas.size < 2 or not np.all(kappas >= 1):
        raise ValueError(f"Invalid kappas: {kappas.tolist()!r} (expected at least two "
                         "condition numbers >= 1)")
    rows = []
    for kappa in kappas:
        J = Quadratic(condition_number=float(kappa), dim=dim, seed=seed)
        lam_max = float(J.eigenvalues.max())
        its = iterations_to_tolerance(J, 1.0 / lam_max, tol)
        rows.append((lam_max, largest_stable_lr(J, steps), 2.0 / lam_max,
                     np.nan if its is None else its, kappa * math.log(1 / tol)))
    cols = [np.array(c) for c in zip(*rows)]
    return ConditioningSweep(kappas, *cols, tol)


# ----------------------------------------------------------------------------------------
# 3. The book's Figure 8.1 on a real network: curvature along g grows during training
# ----------------------------------------------------------------------------------------
class CurvatureLog(NamedTuple):
    r"""Full-batch measurements at checkpoints along training (index 0: initialization).

    Fields (NumPy arrays of length K unless said): ``epoch`` epochs done; ``loss`` J(θ) on
    the whole training set; ``grad_norm`` ‖g‖ of that full-batch loss; ``gHg`` gᵀHg (one
    Hessian-vector product); ``minibatch_grad_norm`` (T,) ‖g‖ of every training step's
    minibatch, as the training loop recorded it; ``lr`` ε; ``n_params`` P.
    """

    epoch: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    gHg: np.ndarray
    minibatch_grad_norm: np.ndarray
    lr: float
    n_params: int

    @property
    def curvature_along_g(self) -> np.ndarray:
        """gᵀHg / gᵀg: the curvature of J along the gradient direction."""
        return self.gHg / self.grad_norm**2

    @property
    def optimal_lr(self) -> np.ndarray:
        """ε* = gᵀg / gᵀHg at each checkpoint (the best step along −g, Taylor model)."""
        return self.grad_norm**2 / self.gHg

    @property
    def second_to_first_order(self) -> np.ndarray:
        """(½ε²gᵀHg) / (εgᵀg) = ½ε·gᵀHg/gᵀg at the training ε: above 1 the step raises J."""
        return 0.5 * self.lr * self.curvature_along_g


def train_with_curvature(model: torch.nn.Module, loss_fn: Callable, optimizer,
                         train_data: tuple[torch.Tensor, torch.Tensor], *, epochs: int,
                         measure_every: int = 1, batch_size: int = 64,
                         seed: int = 0) -> CurvatureLog:
    r"""Train with :func:`course_lib.train.train` and measure J, ‖g‖ and gᵀHg on the whole
    training set before training and every ``measure_every`` epochs.

    Training runs in chunks of ``measure_every`` epochs; chunk k shuffles with seed
    ``seed + k`` (so every epoch has its own order, and the run is repeatable).  The
    optimizer keeps its state across chunks.  Training runs on the CPU (the measurements are
    cheap there and bit-for-bit repeatable).  gᵀHg comes from
    :func:`course_lib.curvature.gradient_curvature` (one gradient and one Hessian-vector
    product, Pearlmutter 1994).
    """
    from course_lib.train import train  # imported here: train pulls in the whole loop

    _check_positive("epochs", epochs, integer=True)
    _check_positive("measure_every", measure_every, integer=True)
    if epochs % measure_every:
        raise ValueError(f"Invalid measure_every: {measure_every} (expected a divisor of "
                         f"epochs = {epochs})")
    if not (isinstance(train_data, (tuple, list)) and len(train_data) == 2):
        raise ValueError("Invalid train_data: expected a tuple (X, y) of tensors")
    X, y = train_data
    params = [p for p in model.parameters() if p.requires_grad]
    rows, mb = [], []

    def measure(done: int):
        curv = gradient_curvature(lambda: loss_fn(model(X), y), params)
        with torch.no_grad():
            J = float(loss_fn(model(X), y))
        rows.append((done, J, math.sqrt(curv.grad_norm_sq), curv.gHg))

    measure(0)
    for k in range(epochs // measure_every):
        hist = train(model, loss_fn, optimizer, (X, y), epochs=measure_every,
                     batch_size=batch_size, seed=seed + k, metrics=(), device="cpu")
        mb += hist.steps["grad_norm"]
        measure((k + 1) * measure_every)
    epoch, loss, grad_norm, gHg = (np.array(c) for c in zip(*rows))
    return CurvatureLog(epoch.astype(int), loss, grad_norm, gHg, np.array(mb),
                        float(optimizer.param_groups[0]["lr"]), sum(p.numel() for p in params))


class Figure81Run(NamedTuple):
    """What :func:`figure_8_1_run` returns: the ``log``, the trained ``model`` and the
    training data ``train_data`` = (X, y) (to probe the final Hessian further)."""

    log: CurvatureLog
    model: torch.nn.Module
    train_data: tuple[torch.Tensor, torch.Tensor]

    def loss(self) -> torch.Tensor:
        """J(θ): the cross-entropy of ``model`` on the whole training set, now (a closure for
        :func:`taylor_check` and the tools of :mod:`course_lib.curvature`)."""
        X, y = self.train_data
        return torch.nn.functional.cross_entropy(self.model(X), y)


def figure_8_1_run(num_samples: int = FIG81["num_samples"], hidden=FIG81["hidden"],
                   lr: float = FIG81["lr"], batch_size: int = FIG81["batch_size"],
                   epochs: int = FIG81["epochs"], measure_every: int = FIG81["measure_every"],
                   seed: int = FIG81["seed"]) -> Figure81Run:
    r"""The chapter's version of the Deep Learning book's Figure 8.1.

    An MLP (``course_lib.models.mlp``, ReLU, widths ``hidden``) on the MNIST-1D training set
    (``num_samples`` signals, 80 % for training), cross-entropy loss, plain SGD
    (``course_lib.optim.SGD``, ε = ``lr``, no momentum) from θ₀ drawn with ``seed``;
    :func:`train_with_curvature` measures J, ‖g‖ and gᵀHg every ``measure_every`` epochs.
    """
    from course_lib.data import mnist1d
    from course_lib.models import mlp
    from course_lib.optim import SGD

    data = mnist1d(num_samples)
    X, y = data.train
    model = mlp(X.shape[1], tuple(hidden), 10, generator=torch.Generator().manual_seed(seed))
    optimizer = SGD(model.parameters(), lr=lr)
    log = train_with_curvature(model, torch.nn.CrossEntropyLoss(), optimizer, (X, y),
                               epochs=epochs, measure_every=measure_every,
                               batch_size=batch_size, seed=seed)
    return Figure81Run(log, model, (X, y))


@shared_result
def figure_8_1_seeds(seeds=FIG81_SEEDS, **kwargs) -> dict[int, Figure81Run]:
    """:func:`figure_8_1_run` for each seed (θ₀ and batch order), other settings as
    ``kwargs``: seed → Figure81Run."""
    seeds = tuple(seeds)
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                            for s in seeds):
        raise ValueError(f"Invalid seeds: {seeds!r} (expected a non-empty sequence of ints >= 0)")
    return {s: figure_8_1_run(seed=s, **kwargs) for s in seeds}


class Figure81Summary(NamedTuple):
    """Medians over seeds of what the runs of :func:`figure_8_1_seeds` end with (``*_end``:
    at the last checkpoint; ``minibatch_end``: mean ‖g‖ of the last 50 minibatches), the
    least growth of gᵀHg and of gᵀHg/gᵀg from θ₀ to the end, and the largest and median final
    ratio ½ε gᵀHg/gᵀg over all seeds and checkpoints."""
    loss_end: float
    grad_norm_end: float
    minibatch_end: float
    gHg_end: float
    curvature_end: float
    optimal_lr_end: float
    min_gHg_growth: float
    min_curvature_growth: float
    max_ratio: float
    ratio_end: float
    n_seeds: int


def figure_8_1_summary(runs: dict[int, Figure81Run]) -> Figure81Summary:
    """Summarize :func:`figure_8_1_seeds`: medians of the final values over the seeds."""
    logs = [r.log for r in runs.values()]
    if not logs:
        raise ValueError("Invalid runs: expected at least one run")
    med = lambda f: float(np.median([f(g) for g in logs]))  # noqa: E731
    return Figure81Summary(
        loss_end=med(lambda g: g.loss[-1]), grad_norm_end=med(lambda g: g.grad_norm[-1]),
        minibatch_end=med(lambda g: g.minibatch_grad_norm[-50:].mean()),
        gHg_end=med(lambda g: g.gHg[-1]), curvature_end=med(lambda g: g.curvature_along_g[-1]),
        optimal_lr_end=med(lambda g: g.optimal_lr[-1]),
        min_gHg_growth=float(min(g.gHg[-1] / g.gHg[0] for g in logs)),
        min_curvature_growth=float(min(g.curvature_along_g[-1] / g.curvature_along_g[0]
                                       for g in logs)),
        max_ratio=float(max(g.second_to_first_order.max() for g in logs)),
        ratio_end=med(lambda g: g.second_to_first_order[-1]), n_seeds=len(logs))


# ----------------------------------------------------------------------------------------
# 4. What one Newton step would cost
# ----------------------------------------------------------------------------------------
class NewtonCost(NamedTuple):
    r"""The price of one exact Newton step θ ← θ − H⁻¹g for P parameters.

    ``n_params`` P; ``hessian_entries`` P²; ``memory_bytes`` P²·(bytes per entry) to store
    H; ``flops`` ≈ ⅔P³, an LU factorisation to solve Hd = g (Golub & Van Loan, *Matrix
    Computations*, 4th ed., §3.2; a Cholesky factorisation, ⅓P³, needs H positive definite,
    which a network's Hessian is not in general).
    """

    n_params: int
    hessian_entries: int
    memory_bytes: int
    flops: float


def newton_cost(n_params: int, bytes_per_entry: int = 4) -> NewtonCost:
    """Storage and arithmetic of one Newton step (float32: 4 bytes per entry)."""
    _check_positive("n_params", n_params, integer=True)
    _check_positive("bytes_per_entry", bytes_per_entry, integer=True)
    entries = n_params * n_params
    return NewtonCost(n_params, entries, entries * bytes_per_entry, 2.0 / 3.0 * float(n_params) ** 3)


# ----------------------------------------------------------------------------------------
# Ill-conditioning that bites: full-batch gradient descent with ε near 2/λ_max on the network

#: the edge-of-stability runs: the notebook runs `steps` (seed 0); the oscillating phase lies in
#: the first `window` steps, which the tests re-run on `seeds` (a prefix: the runs are deterministic)
EOS = dict(num_samples=1000, hidden=(100, 100), lrs=(0.1, 1.0, 3.0), steps=400, window=200, seeds=(0, 1, 2))


class EdgeRun(NamedTuple):
    """Full-batch gradient descent on an MLP, measured at every step t = 0..steps-1: ``loss``
    J(θ_t) and ``ratio`` ½ε gᵀHg/gᵀg (above 1 the Taylor model says the step raises J); the
    last entry of ``loss`` is J(θ_steps).  ``lam_start`` / ``lam_end``: λ_max(H) at θ₀ and at
    the end (power iteration)."""
    lr: float
    loss: np.ndarray
    ratio: np.ndarray
    lam_start: float
    lam_end: float

    @property
    def rises(self) -> np.ndarray:
        """Whether step t raised J: J(θ_{t+1}) > J(θ_t)."""
        return np.diff(self.loss) > 0

    def rise_fraction(self, crossed: bool) -> float:
        """Among the steps whose ratio was above 1 (crossed=True) or ≤ 1, the fraction that
        raised J (nan if there was no such step)."""
        sel = (self.ratio > 1) if crossed else (self.ratio <= 1)
        return float(self.rises[sel].mean()) if sel.any() else math.nan


@shared_result
def edge_of_stability_run(lr: float, steps: int = EOS["steps"], seed: int = 0,
                          num_samples: int = EOS["num_samples"], hidden=EOS["hidden"]) -> EdgeRun:
    """Gradient descent θ ← θ − ε∇J(θ) on the full MNIST-1D training set (``num_samples``
    signals, 80 % for training), the MLP of :func:`figure_8_1_run` from θ₀ drawn with ``seed``;
    gᵀHg and gᵀg by :func:`course_lib.curvature.gradient_curvature` at every step."""
    from course_lib.curvature import top_eigenvalue
    from course_lib.data import mnist1d
    from course_lib.models import mlp

    _check_positive("lr", lr)
    _check_positive("steps", steps, integer=True)
    X, y = mnist1d(num_samples).train
    model = mlp(X.shape[1], tuple(hidden), 10, generator=torch.Generator().manual_seed(seed))
    params = [p for p in model.parameters() if p.requires_grad]
    loss = lambda: torch.nn.functional.cross_entropy(model(X), y)  # noqa: E731
    lam_start = top_eigenvalue(loss, params, iters=100)[0]
    losses, ratios = [], []
    for _ in range(steps):
        curv = gradient_curvature(loss, params)
        ratios.append(0.5 * lr * curv.gHg / curv.grad_norm_sq)
        J = loss()
        losses.append(float(J.detach()))
        grads = torch.autograd.grad(J, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    with torch.no_grad():
        losses.append(float(loss()))
    lam_end = top_eigenvalue(loss, params, iters=100)[0]
    return EdgeRun(float(lr), np.array(losses), np.array(ratios), float(lam_start), float(lam_end))


def plot_edge_of_stability(runs, axes=None):
    """For runs of :func:`edge_of_stability_run`: J(θ_t) (left) and the ratio ½ε gᵀHg/gᵀg
    (right, log scale, with the line ratio = 1) against the step.  Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4), layout="constrained")
    for r in runs:
        axes[0].plot(np.arange(len(r.loss)), r.loss, lw=1, label=f"ε = {r.lr:g}")
        axes[1].semilogy(np.arange(len(r.ratio)), r.ratio, lw=1, label=f"ε = {r.lr:g}")
    axes[1].axhline(1.0, color="black", ls="--", lw=1, label="ratio = 1: the step raises J (Taylor)")
    axes[0].set(xlabel="step t (full batch)", ylabel=r"training loss $J(\theta_t)$")
    axes[1].set(xlabel="step t (full batch)", ylabel=r"$\frac{1}{2}\epsilon\, g^\top H g / g^\top g$")
    for ax in axes:
        ax.legend(fontsize="small")
    return axes


def plot_figure_8_1(log, axes=None):
    """Figure 8.1 of the DL book for one run of :func:`figure_8_1_run` (its ``log``): the
    training loss (left); the minibatch gradient norm at every step and the full-batch one at
    the checkpoints (middle); gᵀHg and the curvature along g, gᵀHg/gᵀg (right, log scale),
    all against the epoch.  Returns the Figure."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    else:
        fig = axes[0].figure
    mb = log.minibatch_grad_norm
    steps_per_epoch = len(mb) / log.epoch[-1]
    axes[0].plot(log.epoch, log.loss, "o-")
    axes[0].set_ylabel(r"training loss $J(\theta)$ (cross-entropy)")
    axes[0].set_title("The loss falls ...")
    axes[1].plot(np.arange(1, len(mb) + 1) / steps_per_epoch, mb, lw=0.5, alpha=0.5,
                 label=r"minibatch $\|g\|$, every step")
    axes[1].plot(log.epoch, log.grad_norm, "o-", label=r"full-batch $\|g\|$")
    axes[1].set_ylabel(r"gradient norm $\|g\|$")
    axes[1].set_title("... while the gradient norm grows ...")
    axes[1].legend(fontsize="small")
    axes[2].semilogy(log.epoch, log.gHg, "o-", label=r"$g^\top H g$")
    axes[2].semilogy(log.epoch, log.curvature_along_g, "s--", label=r"$g^\top H g / g^\top g$")
    axes[2].set_ylabel("curvature (log scale)")
    axes[2].set_title(rf"... and $g^\top Hg$ grows {log.gHg[-1] / log.gHg[0]:.0f}-fold")
    axes[2].legend(fontsize="small")
    for ax in axes:
        ax.set_xlabel("epoch")
    return fig


# ----------------------------------------------------------------------------- the chapter's figures
def plot_taylor_check(tc: TaylorCheck, on_network: bool = False, ax=None):
    """Figures of §3.1 and §3.5: the change of the cost predicted by the second-order Taylor model
    against the measured change, over the learning rates of ``tc`` (:func:`taylor_check`); with
    ``on_network`` the labels of the trained-MLP version."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    if on_network:
        ax.plot(tc.lrs, tc.predicted, lw=4, alpha=0.4, label="Taylor model")
        ax.plot(tc.lrs, tc.actual, "ko--", ms=4, label="measured on the network")
        ax.axvline(tc.critical_lr, color="tab:red", ls=":", label=r"$2\epsilon^*$")
        ax.set_ylabel(r"$J(\theta-\epsilon g) - J(\theta)$")
        ax.set_title("On the trained MLP the quadratic model predicts the step well")
    else:
        ax.plot(tc.lrs, tc.predicted, lw=4, alpha=0.4,
                label=r"Taylor: $\frac{1}{2}\epsilon^2 g^\top Hg - \epsilon g^\top g$")
        ax.plot(tc.lrs, tc.actual, "k--", label=r"measured: $J(\theta-\epsilon g) - J(\theta)$")
        ax.axvline(tc.optimal_lr, color="tab:green", ls=":", label=rf"$\epsilon^* = {tc.optimal_lr:.3g}$")
        ax.axvline(tc.critical_lr, color="tab:red", ls=":", label=rf"$2\epsilon^* = {tc.critical_lr:.3g}$")
        ax.set_ylabel(r"change of the cost $J$")
        ax.set_title(r"On a quadratic the model is exact: best step at $\epsilon^*$, harmful beyond $2\epsilon^*$")
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel(r"learning rate $\epsilon$")
    ax.legend(fontsize="small")
    return ax


def plot_stability_wall(wall, kappas=WALL_KAPPAS, ratios=WALL_RATIOS, steps: int = WALL_STEPS, ax=None):
    """Figure of §3.2: J(θ_steps)/J(θ₀) against ε in units of 2/λ_max, one line per κ
    (``wall`` from :func:`stability_wall`)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for kappa, row in zip(kappas, wall):
        ax.semilogy(ratios, row, label=rf"$\kappa = {kappa}$")
    ax.axvline(1.0, color="gray", ls=":")
    ax.set_xlabel(r"learning rate in units of the limit, $\epsilon\,/\,(2/\lambda_{\max})$")
    ax.set_ylabel(rf"$J(\theta_{{{steps}}})\,/\,J(\theta_0)$")
    ax.set_title(r"Whatever $\kappa$, the cost explodes once $\epsilon > 2/\lambda_{\max}$")
    ax.legend()
    return ax


def plot_conditioning_sweep(sweep: ConditioningSweep, ax=None):
    """Figure of §3.3: gradient-descent steps to the tolerance against κ, with κ ln(1/tol)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ax.loglog(sweep.kappas, sweep.iterations, "o-", label="measured")
    ax.loglog(sweep.kappas, sweep.iterations_theory, "k--",
              label=r"$\kappa\,\ln(1/\mathrm{tol})$ (flattest direction only)")
    ax.set_xlabel(r"condition number $\kappa$")
    ax.set_ylabel("gradient-descent steps to reach tol")
    ax.set_title(rf"Steps grow linearly in $\kappa$ (log-log slope {sweep.slope():.2f})")
    ax.legend()
    return ax
