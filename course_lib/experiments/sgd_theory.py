r"""Stochastic gradient descent and its learning rate (Deep Learning book §8.3.1): chapter 9.

SGD (the book's Algorithm 8.1) replaces the gradient of the cost by the gradient of the loss
on a minibatch of B examples, and steps against it with a learning rate ε_k:

.. math::

    g_k = \frac1B \sum_{i \in \text{batch}_k} \nabla_\theta L(f(x^{(i)};\theta_k), y^{(i)}),
    \qquad \theta_{k+1} = \theta_k - \epsilon_k\, g_k .

Everything here is measured on one problem whose distribution is known, a *noisy linear
regression* (:class:`NoisyLinearRegression`): x ~ N(0, Σ), y = xᵀθ* + σξ, and the squared
error (torch's ``MSELoss``).  Its expected cost is a quadratic with a known minimizer θ*,
Hessian H = 2Σ and known noise, so the quantities SGD theory talks about (the noise floor of a
constant step, the expected learning curve under any schedule, the largest stable ε) have
exact values to measure against.

==========================  ===================================================================
``NoisyLinearRegression``   the problem: sampling, excess risk, and the exact theory of SGD on
                            it: expected learning curve, noise floor, stability limit
``LeastSquares``            the same model fitted to a finite training set of m examples
``minibatch_sgd``           SGD on a training set for many ε at once, batches drawn as
                            :func:`course_lib.train.train` draws them; B = m is batch GD
``compare_algorithms``      batch GD, SGD, minibatch SGD with a grid of ε (the learning-rate
                            sweep); ``Comparison.run`` picks each one's best ε for a target
``stream_sgd``              SGD on fresh examples (on the expected cost), many runs and
                            schedules at once
``inverse_time_lr``,        ε_k = ε₀ / (1 + k/τ)^p (p = 0: constant); the book's linear decay;
``linear_decay_lr``,        what is left of Σε_k after a number of steps
``lr_tail_sum``
``schedule_experiment``     constant against decaying steps (the Robbins–Monro conditions)
``noise_floor_experiment``  the floor of constant-step SGD against ε and B
``stability_check``         just below and above the mean-square stability limit
``widget_run``              the chapter's widget (a 2-D problem), ``plot_widget_run`` draws it
``network_noise_floor``     the floor on a real network (an MLP on MNIST-1D) against ε and B,
                            from a minimum found by ``minimize_training_loss``, with tr C from
                            ``gradient_noise_trace``; ``SideBySideMLP`` trains the copies
``plot_...``                the chapter's figures
==========================  ===================================================================

The chapter's settings are module constants (``PROBLEM``, ``COMPARE``, ``SCHEDULES``,
``FLOOR``, ``STABILITY``, ``NETWORK``, ``WIDGET``), so ``chapters/09_sgd_and_learning_rates.ipynb`` and
``tests/test_ch09_sgd.py`` run the same experiments.  The two SGD loops here are vectorized fast paths (NumPy, float64);
the tests check them step for step against :class:`course_lib.optim.SGD` in
:func:`course_lib.train.train`.

References: Robbins & Monro (1951), *A stochastic approximation method*, Ann. Math. Stat.;
Bottou, Curtis & Nocedal (2018), *Optimization methods for large-scale machine learning*,
SIAM Review 60(2), §4 (constant and diminishing steps); Goodfellow, Bengio & Courville (2016),
*Deep Learning*, §8.3.1; Mandt, Hoffman & Blei (2017), *Stochastic gradient descent as
approximate Bayesian inference*, JMLR 18 (the stationary spread HS + SH = εC/B).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.optimize import brentq
from scipy.special import zeta

from course_lib.landscapes import Quadratic
from course_lib.experiments.minibatch import largest_stable_lr
from course_lib.utils import shared_result

__all__ = [
    "NoisyLinearRegression", "LeastSquares", "flops_per_update", "minibatch_sgd",
    "steps_to_stay_below", "MethodRun", "Comparison", "compare_algorithms",
    "inverse_time_lr", "lr_tail_sum", "linear_decay_lr", "stream_sgd",
    "ScheduleResult", "schedule_experiment", "FloorResult", "noise_floor_experiment",
    "StabilityCheck", "stability_check", "WidgetRun", "widget_run", "plot_widget_run",
    "loglog_slope", "SCHEDULE_POWERS", "LINEAR_LABEL",
    "minimize_training_loss", "gradient_noise_trace", "SideBySideMLP", "summed_cross_entropy",
    "NetworkFloorResult", "network_noise_floor", "DECAY_LABEL",
    "plot_comparison", "plot_schedules", "plot_noise_floor", "plot_lr_sweep", "plot_network_floor",
    "PROBLEM", "COMPARE", "SCHEDULES", "FLOOR", "STABILITY", "NETWORK", "WIDGET",
]

# ---- the chapter's settings (notebook and tests import these) ----------------------------
#: the noisy linear regression: d = 10, eigenvalues σ_j² of Σ spread evenly in [0.1, 1] (κ = 10),
#: θ* = (1, …, 1), noise σ = 1
PROBLEM = dict(dim=10, condition_number=10.0, scale=0.1, noise_std=1.0)
#: sections 1, 2 and 5: a training set of n examples; each method (B = n is batch GD)
#: runs `epochs` passes with every ε = r · 2/λ_max(H) for the ratios r = 2^((k + ½)/4) (so that
#: r = 1 falls between two of them), then gets its best ε for each target precision (a fraction
#: of J(θ₀) − J*)
COMPARE = dict(n=1000, batch_sizes=(1000, 1, 32), epochs=20, targets=(1e-2, 1e-3), data_seed=0,
               seed=0, ratios=tuple(2.0 ** ((k + 0.5) / 4) for k in range(-64, 4)))
#: section 3: ε₀, τ (of 1/(1 + k/τ)), τ_linear (of the book's linear decay), steps, runs and B
#: of the schedules (SGD on fresh examples, θ₀ = 0)
SCHEDULES = dict(lr0=0.05, tau=100.0, tau_linear=2000, steps=10000, n_runs=32, batch_size=1,
                 record_every=10, seed=1)
#: section 4: the noise floor of constant-step SGD, started at θ*, averaged over
#: steps burn_in…steps and over n_runs runs; and the mean-square stability limit, checked at
#: factors × the limit
FLOOR = dict(lrs=(0.0025, 0.005, 0.01, 0.02, 0.04), batch_sizes=(1, 4), steps=6000,
             burn_in=3000, n_runs=32, seed=2)
STABILITY = dict(batch_sizes=(1, 4), factors=(0.8, 1.25), steps=2000, n_runs=32, seed=3)
#: section 6, the widget: a 2-D problem, so that a run can be drawn on the contours of J
WIDGET = dict(problem=dict(dim=2, condition_number=5.0, scale=0.2, noise_std=1.0), steps=500,
              tau=50.0, n_runs=16, seed=0)

# ---- argument checks: ValueError naming the argument and its value ----------------------------

def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_pos_int(name: str, value) -> None:
    _check(name, value, _is_int(value) and value >= 1, "an int >= 1")


def _check_positive(name: str, value) -> None:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    _check(name, value, ok and math.isfinite(value) and value > 0, "a finite number > 0")


def _lr_array(name: str, lrs) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(lrs, dtype=float))
    _check(name, lrs, arr.ndim == 1 and arr.size > 0 and bool(np.all(np.isfinite(arr) & (arr > 0))),
           "a non-empty sequence of finite numbers > 0")
    return arr


def loglog_slope(x, y) -> float:
    """The least-squares slope of log y against log x (1 for y ∝ x)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    _check("x", x.tolist(), x.shape == y.shape and x.ndim == 1 and len(x) >= 2
           and bool(np.all(x > 0) and np.all(y > 0)), "positive 1-D arrays of equal length >= 2")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


# ---------------------------------------------------------------------------------------------
# The problem: a noisy linear regression with a known distribution

class NoisyLinearRegression:
    r"""x ~ N(0, Σ), y = xᵀθ* + σξ with ξ ~ N(0, 1); the loss is the squared error (xᵀθ − y)².

    Σ = diag(σ₁², …, σ_d²) with the σ_j² spread evenly from ``scale`` to κ·``scale``.  The expected cost
    and its Hessian are

    .. math::

        J(\theta) = (\theta - \theta^*)^\top \Sigma\, (\theta - \theta^*) + \sigma^2,
        \qquad H = 2\Sigma, \qquad J^* = \sigma^2,

    so the excess risk J − J* = ½ eᵀHe (e = θ − θ*) is the
    :class:`~course_lib.landscapes.Quadratic` ``landscape`` (used for contour plots).  Gradient
    descent on J is stable for ε < 2/λ_max(H) = 1/σ²_max (``lr_limit``).

    Arguments and symbols: ``dim`` → d; ``condition_number`` → κ = σ²_max/σ²_min;
    ``scale`` → σ²_min; ``noise_std`` → σ; ``theta_star`` → θ* (default all ones).
    """

    def __init__(self, dim: int = 10, condition_number: float = 10.0, scale: float = 0.1,
                 noise_std: float = 1.0, theta_star=None) -> None:
        _check("dim", dim, _is_int(dim) and dim >= 2, "an int >= 2")
        _check("condition_number", condition_number,
               isinstance(condition_number, (int, float)) and condition_number >= 1, ">= 1")
        _check_positive("scale", scale)
        _check("noise_std", noise_std,
               isinstance(noise_std, (int, float)) and noise_std >= 0, ">= 0")
        self.dim, self.noise_std = int(dim), float(noise_std)
        self.variances = scale * np.linspace(1.0, condition_number, dim)  # σ_j², the eigenvalues of Σ
        self.theta_star = (np.ones(dim) if theta_star is None
                           else np.asarray(theta_star, dtype=float).reshape(-1))
        _check("theta_star", theta_star, self.theta_star.shape == (dim,), f"{dim} numbers")
        self.H = np.diag(2 * self.variances)
        self.lr_limit = 1.0 / self.variances[-1]  # 2 / λ_max(H)
        self.landscape = Quadratic(condition_number, dim=dim, scale=2 * scale,
                                   center=torch.from_numpy(self.theta_star.copy()))
        self.landscape.name = "excess risk J − J*"

    def __repr__(self) -> str:
        kappa = self.variances[-1] / self.variances[0]
        return (f"NoisyLinearRegression(dim={self.dim}, condition_number={kappa:g}, "
                f"scale={self.variances[0]:g}, noise_std={self.noise_std:g})")

    @property
    def min_value(self) -> float:
        """J* = σ², the risk of θ* (the noise no model can predict)."""
        return self.noise_std ** 2

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(X, y): n examples, float64 arrays of shape (n, d) and (n,).

        Draws, in this order, an (n, d) and an (n,) block of standard normals from ``rng``
        (so drawing n = R·B at once equals drawing R batches of B one after the other).
        """
        _check_pos_int("n", n)
        _check("rng", type(rng).__name__, isinstance(rng, np.random.Generator),
               "a numpy.random.Generator")
        X = rng.standard_normal((n, self.dim)) * np.sqrt(self.variances)
        xi = rng.standard_normal(n)
        return X, X @ self.theta_star + self.noise_std * xi

    def excess_risk(self, theta) -> np.ndarray:
        """J(θ) − J* = (θ − θ*)ᵀΣ(θ − θ*) for θ of shape (..., d)."""
        e = np.asarray(theta, dtype=float) - self.theta_star
        return (self.variances * e * e).sum(-1)

    # -- exact theory of SGD on this problem ---------------------------------------------------
    def _c(self, lr: float, batch_size: int) -> float:
        """c(ε, B) = (ε/B) Σ_j σ_j² / (1 − εσ_j²(1 + 1/B)); inf where a denominator is ≤ 0."""
        denom = 1 - lr * self.variances * (1 + 1 / batch_size)
        if np.any(denom <= 0):
            return math.inf
        return float(lr / batch_size * (self.variances / denom).sum())

    def noise_floor(self, lr: float, batch_size: int = 1) -> float:
        r"""The stationary E[J(θ)] − J* of SGD with a constant ε and B fresh examples per step.

        With e = θ − θ* and q_j = E[e_j²], one step gives exactly (Gaussian x, so
        E[xxᵀ M xxᵀ] = 2ΣMΣ + tr(ΣM)Σ):

        .. math::

            q_j \leftarrow (1 - 2\epsilon\sigma_j^2)^2 q_j + \frac{4\epsilon^2}{B}
                \big(\sigma_j^4 q_j + \sigma_j^2 (s + \sigma^2)\big),
            \qquad s = \textstyle\sum_k \sigma_k^2 q_k .

        Its fixed point has s = σ² c / (1 − c), c = (ε/B) Σ_j σ_j² / (1 − εσ_j²(1 + 1/B)):
        for small ε, s ≈ ε σ² tr(Σ) / B, linear in ε and in 1/B.  Returns inf beyond the
        mean-square stability limit (:meth:`stable_lr_limit`).
        """
        _check_positive("lr", lr)
        _check_pos_int("batch_size", batch_size)
        c = self._c(lr, batch_size)
        return math.inf if c >= 1 else self.noise_std ** 2 * c / (1 - c)

    def stable_lr_limit(self, batch_size: int = 1) -> float:
        """The largest ε at which SGD with B fresh examples per step is mean-square stable.

        The recursion of :meth:`noise_floor` is a nonnegative linear map of (q_j) plus a
        constant: it stays bounded iff εσ_j²(1 + 1/B) < 1 for all j and c(ε, B) < 1.  c grows
        from 0 to ∞ on (0, 1/(σ²_max(1 + 1/B))), so the limit is its root c = 1.  It tends to
        2/λ_max(H) as B → ∞ (gradient descent on J).
        """
        _check_pos_int("batch_size", batch_size)
        top = 1.0 / (self.variances[-1] * (1 + 1 / batch_size))
        return float(brentq(lambda lr: self._c(lr, batch_size) - 1 if lr < top else 1.0,
                            1e-12, top * (1 - 1e-12), xtol=1e-14, rtol=1e-12))

    def expected_excess_risk(self, lrs, batch_size: int = 1, theta0=None) -> np.ndarray:
        """E[J(θ_k)] − J* for k = 0 … T, exactly, for SGD with step ε_k = lrs[k] and B fresh
        examples per step from θ₀ (default 0): iterates the recursion of :meth:`noise_floor`
        (a diagonal one, so cheap).  ``lrs``: a schedule (T,), giving T + 1 values, or several
        (S, T), giving (S, T + 1)."""
        sched = np.asarray(lrs, dtype=float)
        _check("lrs", np.shape(lrs), sched.ndim in (1, 2) and sched.shape[-1] >= 1
               and bool(np.all(np.isfinite(sched) & (sched > 0))),
               "a schedule (T,) or schedules (S, T) of finite numbers > 0")
        _check_pos_int("batch_size", batch_size)
        S = sched.reshape(-1, sched.shape[-1])  # (S, T)
        start = np.zeros(self.dim) if theta0 is None else np.asarray(theta0, dtype=float)
        e0 = start - self.theta_star
        m = np.tile(e0 ** 2, (len(S), 1))  # (S, d): q_j = E[e_j²]
        out = np.empty((len(S), S.shape[1] + 1))
        out[:, 0] = m @ self.variances
        s2, B, var = self.noise_std ** 2, batch_size, self.variances
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(S.shape[1]):
                lr = S[:, k, None]
                noise = var ** 2 * m + var * (out[:, k, None] + s2)
                m = (1 - 2 * lr * var) ** 2 * m + 4 * lr * lr / B * noise
                out[:, k + 1] = m @ var
        return out[0] if sched.ndim == 1 else out


# ---------------------------------------------------------------------------------------------
# A finite training set: empirical risk minimization, GD and minibatch SGD

class LeastSquares:
    r"""The empirical cost of a training set (X, y) of m examples:  J_m(θ) = (1/m) ‖Xθ − y‖².

    ``n`` = m, ``dim`` = d; ``theta_hat`` its minimizer θ̂ (least squares), ``min_value`` =
    J_m(θ̂), ``H`` = 2XᵀX/m its Hessian (``eigenvalues`` ascending) and ``lr_limit`` =
    2/λ_max(H), the largest stable step of gradient descent.
    """

    def __init__(self, X, y) -> None:
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float).reshape(-1)
        _check("X", X.shape, X.ndim == 2 and len(X) == len(y) and len(X) >= X.shape[1],
               f"a 2-D array with as many rows as y ({len(y)}) and at least as many as columns")
        self.X, self.y = X, y
        self.n, self.dim = X.shape
        self.theta_hat = np.linalg.lstsq(X, y, rcond=None)[0]
        self.min_value = float(np.mean((X @ self.theta_hat - y) ** 2))
        self.H = 2 * X.T @ X / self.n
        self.eigenvalues = np.linalg.eigvalsh(self.H)
        self.lr_limit = float(2 / self.eigenvalues[-1])

    def excess(self, theta) -> np.ndarray:
        """J_m(θ) − J_m(θ̂) = ½ (θ − θ̂)ᵀ H (θ − θ̂) for θ of shape (..., d) (J_m is quadratic)."""
        e = np.asarray(theta, dtype=float) - self.theta_hat
        return 0.5 * ((e @ self.H) * e).sum(-1)


def flops_per_update(batch_size: int, dim: int) -> int:
    """Floating-point operations of the gradient of a minibatch for a linear model: 4·B·d.

    The forward product X_Bθ and the backward product X_Bᵀr each take B·d multiply-adds
    (2·B·d flops); element-wise work (residual, scaling, the update itself, O(B + d)) is not
    counted, as in torch's ``FlopCounterMode``, which the tests compare with.
    """
    _check_pos_int("batch_size", batch_size)
    _check_pos_int("dim", dim)
    return 4 * batch_size * dim


def minibatch_sgd(problem: LeastSquares, batch_size: int, lrs, epochs: int,
                  seed: int = 0) -> np.ndarray:
    r"""J_m(θ_t) − J_m(θ̂) after every update t = 0 … T of minibatch SGD from θ₀ = 0, one row
    per ε in ``lrs``.

    .. math::  \theta \leftarrow \theta - \epsilon\, \frac{2}{|b|} X_b^\top (X_b\theta - y_b)

    Each epoch draws a permutation from ``torch.Generator().manual_seed(seed)`` and cuts it into
    batches of B (the last may be smaller): exactly as :func:`course_lib.train.train` with
    ``MSELoss`` on ``nn.Linear(d, 1, bias=False)`` and :class:`course_lib.optim.SGD` (the tests
    check this).  B = m is batch gradient descent.  All ε run together on the same batches.
    Returns an (L, T + 1) array, T = epochs · ⌈m/B⌉; inf where a run overflowed.
    """
    _check("problem", type(problem).__name__, isinstance(problem, LeastSquares), "a LeastSquares")
    _check_pos_int("batch_size", batch_size)
    _check("batch_size", batch_size, batch_size <= problem.n, f"<= m = {problem.n}")
    _check_pos_int("epochs", epochs)
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    lrs = _lr_array("lrs", lrs)[:, None]  # (L, 1)
    X, y = problem.X, problem.y
    theta = np.zeros((len(lrs), problem.dim))
    gen = torch.Generator().manual_seed(seed)
    out = [problem.excess(theta)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(epochs):
            order = torch.randperm(problem.n, generator=gen).numpy()
            for start in range(0, problem.n, batch_size):
                idx = order[start:start + batch_size]
                Xb, yb = X[idx], y[idx]
                r = theta @ Xb.T - yb  # (L, b) residuals
                theta = theta - lrs * (2.0 / len(idx)) * (r @ Xb)
                out.append(problem.excess(theta))
    J = np.stack(out, axis=1)
    return np.where(np.isfinite(J), J, np.inf)


def steps_to_stay_below(curve, target: float) -> float:
    """The first index t from which ``curve[t:]`` stays ≤ ``target`` (inf if its last value is
    above).  For a noisy learning curve this is when a precision is *reached for good*, not
    touched once by a lucky fluctuation."""
    curve = np.asarray(curve, dtype=float)
    _check("curve", curve.shape, curve.ndim == 1 and len(curve) > 0, "a non-empty 1-D array")
    above = np.flatnonzero(~(curve <= target))  # nan counts as above
    if len(above) == 0:
        return 0.0
    return math.inf if above[-1] == len(curve) - 1 else float(above[-1] + 1)


class MethodRun(NamedTuple):
    """One method of a :class:`Comparison` at the ε it was given for one target.

    ``lr``: the chosen ε (the one of the grid that brings J − J* below the target for good in
    the fewest updates, hence examples; ties: the lower final J − J*); ``examples``, ``excess``:
    its learning curve from θ₀ (examples processed, J − J*); ``updates_needed``,
    ``examples_needed`` to reach the target for good (inf if never); ``final``: J − J* averaged
    over the last epoch's updates; ``raised_fraction``: the fraction of its updates that raised
    J; costs: ``flops_per_update``, ``updates_per_epoch``.
    """
    name: str
    batch_size: int
    lr: float
    examples: np.ndarray
    excess: np.ndarray
    updates_needed: float
    examples_needed: float
    final: float
    raised_fraction: float
    flops_per_update: int
    updates_per_epoch: int

    @property
    def flops_needed(self) -> float:
        """Floating-point operations to reach the target: 4d per example processed."""
        return self.examples_needed * self.flops_per_update / self.batch_size


class Comparison(NamedTuple):
    """What :func:`compare_algorithms` measured.

    ``problem`` (the :class:`LeastSquares`), ``lrs`` the grid of ε (= ``ratios`` · 2/λ_max(H)),
    ``initial`` = J(θ₀) − J*, ``batch_sizes``: name → B (names "batch GD", "SGD",
    "minibatch SGD"), ``curves``: name → (L, T + 1) array of J − J* after each update, one row
    per ε.
    """
    problem: LeastSquares
    lrs: np.ndarray
    ratios: np.ndarray
    initial: float
    batch_sizes: dict
    curves: dict

    def _name(self, name: str) -> str:
        _check("name", name, name in self.curves, f"one of {tuple(self.curves)}")
        return name

    def examples(self, name: str) -> np.ndarray:
        """Examples processed after 0, 1, …, T updates of method ``name``."""
        B, n = self.batch_sizes[self._name(name)], self.problem.n
        epochs = (self.curves[name].shape[1] - 1) // math.ceil(n / B)
        batch = np.array([min(B, n - s) for s in range(0, n, B)] * epochs, dtype=float)
        return np.concatenate([[0.0], np.cumsum(batch)])

    def final_sweep(self, name: str) -> np.ndarray:
        """Per ε of the grid: J − J* averaged over the last epoch's updates (inf if diverged)."""
        per_epoch = math.ceil(self.problem.n / self.batch_sizes[self._name(name)])
        final = self.curves[name][:, -per_epoch:].mean(axis=1)
        return np.where(np.isfinite(final), final, np.inf)

    def largest_stable(self, name: str) -> float:
        """The largest ε of the grid whose run did not end above J(θ₀) − J*."""
        return largest_stable_lr(self.lrs, self.curves[self._name(name)][:, -1], self.initial,
                                 blowup=1.0)

    def run(self, name: str, target: float) -> MethodRun:
        """Method ``name`` at its best ε for reaching J − J* ≤ target · (J(θ₀) − J*)."""
        _check("target", target, isinstance(target, float) and 0 < target < 1, "a float in (0, 1)")
        J, B = self.curves[self._name(name)], self.batch_sizes[name]
        final = self.final_sweep(name)
        updates = np.array([steps_to_stay_below(j, target * self.initial) for j in J])
        best = int(np.lexsort((final, updates))[0])  # fewest updates, then lowest final
        u, ex = updates[best], self.examples(name)
        return MethodRun(name, B, float(self.lrs[best]), ex, J[best], u,
                         float(ex[int(u)]) if math.isfinite(u) else math.inf, float(final[best]),
                         float(np.mean(np.diff(J[best]) > 0)),  # updates that raised J
                         flops_per_update(B, self.problem.dim), math.ceil(self.problem.n / B))

    def table(self, target: float) -> list[tuple[str, dict]]:
        """The pros-and-cons table, measured: (criterion, {method: value}) rows, every method at
        its best ε for ``target`` (see :meth:`run`)."""
        runs = [self.run(name, target) for name in self.curves]
        rows = [("examples per update", [r.batch_size for r in runs]),
                ("FLOPs per update", [r.flops_per_update for r in runs]),
                ("examples to target", [r.examples_needed for r in runs]),
                ("updates to target", [r.updates_needed for r in runs]),
                ("FLOPs to target", [r.flops_needed for r in runs]),
                ("fraction of updates that raised J", [r.raised_fraction for r in runs]),
                ("J − J* at the end (last epoch)", [r.final for r in runs])]
        return [(label, {r.name: float(v) for r, v in zip(runs, values)}) for label, values in rows]


def _method_name(batch_size: int, n: int) -> str:
    if batch_size == n:
        return "batch GD"
    return "SGD" if batch_size == 1 else "minibatch SGD"


@shared_result
def compare_algorithms(n: int = COMPARE["n"], batch_sizes=COMPARE["batch_sizes"],
                       epochs: int = COMPARE["epochs"], ratios=COMPARE["ratios"],
                       data_seed: int = COMPARE["data_seed"], seed: int = COMPARE["seed"],
                       problem_kw: dict | None = None) -> Comparison:
    """Batch GD (B = n), SGD (B = 1) and minibatch SGD on one training set, same example budget.

    The training set: n examples of :class:`NoisyLinearRegression` (``problem_kw``, default
    ``PROBLEM``) drawn with ``np.random.default_rng(data_seed)``.  Each B runs
    :func:`minibatch_sgd` for ``epochs`` passes from θ₀ = 0 with every ε = r · 2/λ_max(H),
    r in ``ratios`` (the learning-rate sweep); :meth:`Comparison.run` then picks each method's
    best ε for a target precision.
    """
    _check_pos_int("n", n)
    _check_pos_int("epochs", epochs)
    sizes = tuple(batch_sizes)
    _check("batch_sizes", batch_sizes,
           len(sizes) > 0 and all(_is_int(b) and 1 <= b <= n for b in sizes)
           and len({_method_name(b, n) for b in sizes}) == len(sizes),
           f"ints in 1..n = {n}, at most one each of n (GD), 1 (SGD) and another size (minibatch)")
    ratios = _lr_array("ratios", ratios)
    prob = NoisyLinearRegression(**(PROBLEM if problem_kw is None else problem_kw))
    ls = LeastSquares(*prob.sample(n, np.random.default_rng(data_seed)))
    lrs = ratios * ls.lr_limit
    names = {_method_name(B, n): B for B in sizes}
    curves = {name: minibatch_sgd(ls, B, lrs, epochs, seed) for name, B in names.items()}
    return Comparison(ls, lrs, ratios, float(ls.excess(np.zeros(ls.dim))), names, curves)


# ---------------------------------------------------------------------------------------------
# Fresh examples at every step: SGD on the expected cost, with a schedule

def inverse_time_lr(lr0: float, steps: int, tau: float = 1.0, power: float = 1.0) -> np.ndarray:
    r"""The steps ε_k = ε₀ / (1 + k/τ)^p for k = 0 … steps − 1 (p = 0: a constant ε₀).

    Robbins & Monro's conditions Σ ε_k = ∞, Σ ε_k² < ∞ hold for ½ < p ≤ 1; p = 0 breaks the
    second, p > 1 the first.  The same ε_k as ``torch.optim.lr_scheduler.LambdaLR`` with
    ``lambda k: (1 + k/τ)**-p`` stepped after every update (the tests check it).
    """
    _check_positive("lr0", lr0)
    _check_pos_int("steps", steps)
    _check_positive("tau", tau)
    _check("power", power, isinstance(power, (int, float)) and power >= 0, ">= 0")
    return lr0 / (1 + np.arange(steps) / tau) ** power


def lr_tail_sum(lr0: float, tau: float, power: float, start: int) -> float:
    r"""Σ_{k ≥ start} ε₀ / (1 + k/τ)^p: what is left of the total step length after ``start``
    steps of :func:`inverse_time_lr`.  Finite only for p > 1, where it equals
    ε₀ τ^p ζ(p, τ + start) (Hurwitz's zeta function); inf for p ≤ 1."""
    _check_positive("lr0", lr0)
    _check_positive("tau", tau)
    _check("power", power, isinstance(power, (int, float)) and power >= 0, ">= 0")
    _check("start", start, _is_int(start) and start >= 0, "an int >= 0")
    if power <= 1:
        return math.inf
    return float(lr0 * tau ** power * zeta(power, tau + start))


def linear_decay_lr(lr0: float, steps: int, tau: int, final_ratio: float = 0.01) -> np.ndarray:
    r"""The Deep Learning book's schedule (§8.3.1): ε_k = (1 − α)ε₀ + αε_τ with α = k/τ, linear
    from ε₀ to ε_τ = ``final_ratio`` · ε₀ at k = τ, then constant.  Σε_k = ∞ but Σε_k² = ∞ too:
    after τ it is constant-step SGD at ε_τ, with that step's (lower) noise floor."""
    _check_positive("lr0", lr0)
    _check_pos_int("steps", steps)
    _check_pos_int("tau", tau)
    _check("final_ratio", final_ratio, isinstance(final_ratio, float) and 0 < final_ratio <= 1,
           "a float in (0, 1]")
    alpha = np.minimum(np.arange(steps) / tau, 1.0)
    return (1 - alpha) * lr0 + alpha * final_ratio * lr0


def stream_sgd(problem: NoisyLinearRegression, lrs, batch_size: int = 1, n_runs: int = 1,
               seed: int = 0, theta0=None, record_every: int = 1, return_paths: bool = False):
    """SGD on fresh examples: each step draws B new examples per run.  Many schedules at once.

    ``lrs``: a schedule (T,) or several (S, T), ε_k for k = 0 … T − 1.  ``n_runs`` independent
    runs per schedule; all schedules see the same examples (common random numbers, so their
    differences are not noise).  Step k draws R·B examples with ``problem.sample`` from
    ``np.random.default_rng(seed)``; run r gets rows r·B … r·B + B − 1.
    Returns the excess risk J(θ_k) − J*, shape (S, R, T/record_every + 1) (k = 0, every, …, T;
    ``record_every`` must divide T), and with ``return_paths`` also θ_k, shape (S, R, ·, d).
    inf where a run overflowed.
    """
    _check("problem", type(problem).__name__, isinstance(problem, NoisyLinearRegression),
           "a NoisyLinearRegression")
    sched = np.asarray(lrs, dtype=float)
    sched = sched[None] if sched.ndim == 1 else sched
    _check("lrs", np.shape(lrs), sched.ndim == 2 and sched.shape[1] >= 1
           and bool(np.all(np.isfinite(sched) & (sched > 0))),
           "a schedule (T,) or schedules (S, T) of finite numbers > 0")
    for name, v in (("batch_size", batch_size), ("n_runs", n_runs), ("record_every", record_every)):
        _check_pos_int(name, v)
    S, T = sched.shape
    _check("record_every", record_every, T % record_every == 0, f"a divisor of T = {T}")
    rng = np.random.default_rng(seed)
    start = np.zeros(problem.dim) if theta0 is None else np.asarray(theta0, dtype=float)
    theta = np.tile(start, (S, n_runs, 1))  # (S, R, d)
    rec, paths = [problem.excess_risk(theta)], [theta]
    B = batch_size
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(T):
            X, y = problem.sample(n_runs * B, rng)
            X, y = X.reshape(n_runs, B, -1), y.reshape(n_runs, B)
            r = (theta[:, :, None, :] @ X.transpose(0, 2, 1))[:, :, 0, :] - y  # residuals (S, R, B)
            g = (2.0 / B) * (r[:, :, None, :] @ X)[:, :, 0, :]  # (S, R, d)
            theta = theta - sched[:, k, None, None] * g
            if (k + 1) % record_every == 0:
                rec.append(problem.excess_risk(theta))
                if return_paths:
                    paths.append(theta)
    excess = np.stack(rec, axis=-1)
    excess = np.where(np.isfinite(excess), excess, np.inf)
    return (excess, np.stack(paths, axis=2)) if return_paths else excess


class ScheduleResult(NamedTuple):
    """What :func:`schedule_experiment` measured, per schedule (rows, in ``labels`` order).

    ``steps``: the recorded k; ``measured``: mean over the runs of J(θ_k) − J*; ``expected``:
    the exact E[J(θ_k)] − J*; ``lrs``: the schedules (S, T); ``floors``: the noise floor of the
    step a schedule ends with if it ends constant (nan for the decaying ones); ``sum_lr``,
    ``sum_lr_sq``: Σε_k and Σε_k² over the T steps.
    """
    labels: tuple
    steps: np.ndarray
    measured: np.ndarray
    expected: np.ndarray
    lrs: np.ndarray
    floors: np.ndarray
    sum_lr: np.ndarray
    sum_lr_sq: np.ndarray

    def _index(self, label: str, k: int) -> tuple[int, int]:
        _check("label", label, label in self.labels, f"one of {self.labels}")
        _check("k", k, k in self.steps, "a recorded step")
        return self.labels.index(label), int(np.flatnonzero(self.steps == k)[0])

    def at(self, label: str, k: int, which: str = "measured") -> float:
        """The measured (or expected) excess risk of schedule ``label`` at recorded step k."""
        i, j = self._index(label, k)
        return float(getattr(self, which)[i, j])

    def window(self, label: str, start: int, stop: int, which: str = "measured") -> float:
        """The mean of the measured (or expected) excess risk over recorded steps start…stop."""
        i, j0 = self._index(label, start)
        _, j1 = self._index(label, stop)
        return float(getattr(self, which)[i, j0:j1 + 1].mean())


#: the schedules of the chapter's widget: ε_k = ε₀ / (1 + k/τ)^p
SCHEDULE_POWERS = {"constant": 0.0, "1/(1+k/τ)": 1.0, "1/(1+k/τ)²": 2.0}
#: the book's linear decay (to ε₀/100 at k = τ_lin, then constant), for schedule_experiment
LINEAR_LABEL = "linear, then ε₀/100"


@shared_result
def schedule_experiment(lr0: float = SCHEDULES["lr0"], tau: float = SCHEDULES["tau"],
                        tau_linear: int = SCHEDULES["tau_linear"],
                        steps: int = SCHEDULES["steps"], n_runs: int = SCHEDULES["n_runs"],
                        batch_size: int = SCHEDULES["batch_size"],
                        record_every: int = SCHEDULES["record_every"],
                        seed: int = SCHEDULES["seed"],
                        problem_kw: dict | None = None) -> ScheduleResult:
    """Constant ε₀ against ε₀/(1 + k/τ), ε₀/(1 + k/τ)² and the book's linear decay (to ε₀/100 at
    k = ``tau_linear``): SGD on fresh examples from θ₀ = 0, all schedules on the same examples
    (:func:`stream_sgd`); the exact expectation from
    :meth:`NoisyLinearRegression.expected_excess_risk`.
    """
    prob = NoisyLinearRegression(**(PROBLEM if problem_kw is None else problem_kw))
    labels = (*SCHEDULE_POWERS, LINEAR_LABEL)
    lrs = np.stack([inverse_time_lr(lr0, steps, tau, p) for p in SCHEDULE_POWERS.values()]
                   + [linear_decay_lr(lr0, steps, tau_linear)])
    excess = stream_sgd(prob, lrs, batch_size, n_runs, seed, record_every=record_every)
    expected = prob.expected_excess_risk(lrs, batch_size)[:, ::record_every]
    floors = np.array([prob.noise_floor(lr0, batch_size), math.nan, math.nan,
                       prob.noise_floor(0.01 * lr0, batch_size)])
    return ScheduleResult(labels, np.arange(0, steps + 1, record_every), excess.mean(axis=1),
                          expected, lrs, floors, lrs.sum(axis=1), (lrs ** 2).sum(axis=1))


class FloorResult(NamedTuple):
    """What :func:`noise_floor_experiment` measured: ``measured[b, l]`` the mean of J − J* over
    steps burn_in…T and over the runs, for batch_sizes[b], lrs[l]; ``expected`` the same window
    of the exact expectation; ``predicted`` the stationary floor (closed form);
    ``small_lr_slope[b]``: σ² tr(Σ)/B, the floor's slope in ε at ε → 0."""
    lrs: np.ndarray
    batch_sizes: np.ndarray
    measured: np.ndarray
    expected: np.ndarray
    predicted: np.ndarray
    small_lr_slope: np.ndarray

    def slope(self, which: str = "measured", b: int = 0) -> float:
        """Fitted slope of log(floor) against log(ε) for batch_sizes[b] (1: linear in ε)."""
        return loglog_slope(self.lrs, getattr(self, which)[b])


@shared_result
def noise_floor_experiment(lrs=FLOOR["lrs"], batch_sizes=FLOOR["batch_sizes"],
                           steps: int = FLOOR["steps"], burn_in: int = FLOOR["burn_in"],
                           n_runs: int = FLOOR["n_runs"], seed: int = FLOOR["seed"],
                           problem_kw: dict | None = None) -> FloorResult:
    """The level at which constant-step SGD on fresh examples stalls, against ε and B.

    Runs start at θ* (so they rise to the floor instead of falling to it) and are averaged
    over steps ``burn_in`` … ``steps`` and over ``n_runs`` runs; every ε of a batch size sees
    the same examples.
    """
    lrs = _lr_array("lrs", lrs)
    sizes = tuple(batch_sizes)
    _check("batch_sizes", batch_sizes, len(sizes) > 0 and all(_is_int(b) and b >= 1 for b in sizes),
           "a non-empty sequence of ints >= 1")
    _check_pos_int("steps", steps)
    _check("burn_in", burn_in, _is_int(burn_in) and 0 <= burn_in < steps, f"an int in [0, {steps})")
    prob = NoisyLinearRegression(**(PROBLEM if problem_kw is None else problem_kw))
    sched = np.repeat(lrs[:, None], steps, axis=1)
    measured, expected, predicted = [], [], []
    for i, B in enumerate(sizes):
        excess = stream_sgd(prob, sched, B, n_runs, seed + i, theta0=prob.theta_star)
        measured.append(excess[:, :, burn_in:].mean(axis=(1, 2)))
        exact = prob.expected_excess_risk(sched, B, prob.theta_star)  # (L, T + 1)
        expected.append(exact[:, burn_in:].mean(axis=1))
        predicted.append([prob.noise_floor(lr, B) for lr in lrs])
    small = prob.noise_std ** 2 * prob.variances.sum() / np.array(sizes, dtype=float)
    return FloorResult(lrs, np.array(sizes), np.array(measured), np.array(expected),
                       np.array(predicted), small)


class StabilityCheck(NamedTuple):
    """``limit[b]``: the mean-square limit ε_ms of batch_sizes[b]; ``lrs[b, f]`` = factors[f] ×
    limit[b]; ``final[b, f]``: mean over the runs of J(θ_T) − J* (inf if overflowed);
    ``floor[b, f]``: the predicted stationary value (inf beyond the limit); ``initial``:
    J(θ₀) − J*."""
    batch_sizes: np.ndarray
    factors: np.ndarray
    limit: np.ndarray
    lrs: np.ndarray
    final: np.ndarray
    floor: np.ndarray
    initial: float


def stability_check(batch_sizes=STABILITY["batch_sizes"], factors=STABILITY["factors"],
                    steps: int = STABILITY["steps"], n_runs: int = STABILITY["n_runs"],
                    seed: int = STABILITY["seed"],
                    problem_kw: dict | None = None) -> StabilityCheck:
    """Constant-step SGD on fresh examples from θ₀ = 0 just below and above the mean-square
    limit :meth:`NoisyLinearRegression.stable_lr_limit` of each B: bounded, then diverging."""
    sizes = tuple(batch_sizes)
    _check("batch_sizes", batch_sizes, len(sizes) > 0 and all(_is_int(b) and b >= 1 for b in sizes),
           "a non-empty sequence of ints >= 1")
    factors = _lr_array("factors", factors)
    _check_pos_int("steps", steps)
    prob = NoisyLinearRegression(**(PROBLEM if problem_kw is None else problem_kw))
    limit = np.array([prob.stable_lr_limit(B) for B in sizes])
    lrs = limit[:, None] * factors[None, :]
    final = np.stack([stream_sgd(prob, np.repeat(row[:, None], steps, axis=1), B, n_runs,
                                 seed + i, record_every=steps)[:, :, -1].mean(axis=1)
                      for i, (B, row) in enumerate(zip(sizes, lrs))])
    floor = np.array([[prob.noise_floor(lr, B) for lr in row] for B, row in zip(sizes, lrs)])
    return StabilityCheck(np.array(sizes), factors, limit, lrs, final, floor,
                          float(prob.excess_risk(np.zeros(prob.dim))))


# ---------------------------------------------------------------------------------------------
# The widget: one schedule on a 2-D problem

class WidgetRun(NamedTuple):
    """What :func:`widget_run` computed: the 2-D ``problem``, ``path`` (T + 1, 2) of the first
    run, ``mean`` the mean J − J* over the runs at k = 0 … T, ``expected`` the exact
    expectation, ``floor`` the noise floor of a constant ε (inf if unstable), ``lrs`` (T,)."""
    problem: NoisyLinearRegression
    lr: float
    schedule: str
    batch_size: int
    path: np.ndarray
    mean: np.ndarray
    expected: np.ndarray
    floor: float
    lrs: np.ndarray


def widget_run(lr: float, schedule: str = "constant", batch_size: int = 1,
               steps: int = WIDGET["steps"], tau: float = WIDGET["tau"],
               n_runs: int = WIDGET["n_runs"], seed: int = WIDGET["seed"]) -> WidgetRun:
    """SGD on fresh examples of the 2-D problem ``WIDGET["problem"]`` from θ₀ = 0 with
    ε_k = lr / (1 + k/τ)^p, p from ``SCHEDULE_POWERS[schedule]``."""
    _check("schedule", schedule, schedule in SCHEDULE_POWERS, f"one of {tuple(SCHEDULE_POWERS)}")
    prob = NoisyLinearRegression(**WIDGET["problem"])
    lrs = inverse_time_lr(lr, steps, tau, SCHEDULE_POWERS[schedule])
    excess, paths = stream_sgd(prob, lrs, batch_size, n_runs, seed, return_paths=True)
    return WidgetRun(prob, float(lr), schedule, int(batch_size), paths[0, 0],
                     excess[0].mean(axis=0), prob.expected_excess_risk(lrs, batch_size),
                     prob.noise_floor(lr, batch_size), lrs)


def plot_widget_run(run: WidgetRun, axes=None):
    """Left: the first run's path on the contours of J − J*; right: the mean J − J* over the
    runs against the step, with its exact expectation and (constant ε) the noise floor."""
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_trajectories

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    ax1, ax2 = axes
    finite = np.all(np.isfinite(run.path), axis=1)
    plot_trajectories(run.problem.landscape, {"one SGD run": run.path[finite]}, ax=ax1,
                      title=f"ε₀ = {run.lr:.3g}, {run.schedule}, B = {run.batch_size}")
    k = np.arange(len(run.mean))
    ok = np.isfinite(run.mean) & (run.mean > 0)
    ax2.loglog(k[ok][1:], run.mean[ok][1:], label=f"measured (mean of {WIDGET['n_runs']} runs)")
    ok = np.isfinite(run.expected) & (run.expected > 0) & (run.expected < 1e6)
    ax2.loglog(k[ok][1:], run.expected[ok][1:], "k--", lw=1, label="exact expectation")
    if run.schedule == "constant" and math.isfinite(run.floor):
        ax2.axhline(run.floor, color="tab:red", ls=":", label=f"noise floor {run.floor:.3g}")
    ax2.set_xlabel("step k")
    ax2.set_ylabel(r"excess risk $J(\theta_k) - J^*$")
    last = run.mean[-1]
    ax2.set_title("Diverged" if not np.isfinite(last) or last > 1e6
                  else f"After {len(k) - 1} steps: J − J* = {last:.3g}")
    ax2.legend(fontsize="small")
    return axes
# ---------------------------------------------------------------------------------------------
# A real network: the noise floor of an MLP on MNIST-1D

#: section 9.5: an MLP 40 → 8 → 10 (tanh, float64) on m = 2000 MNIST-1D training examples.
#: Each seed (initialization and batch orders) first finds a minimum θ̂ of the training loss J_m
#: (``lbfgs_iters`` full-batch L-BFGS steps), then runs SGD from θ̂ with every ε of ``lrs`` at
#: once (a copy each, same batches) and with ε₀/(1 + k/τ) (ε₀ the largest ε, τ in steps), for
#: ``steps`` steps per batch size; J_m on all m examples is evaluated every ``eval_every`` steps,
#: and a floor is its mean over the last ``window`` steps
NETWORK = dict(num_samples=2500, hidden=(8,), activation="tanh", lbfgs_iters=300,
               lrs=(0.00625, 0.0125, 0.025, 0.05, 0.1), batch_sizes=(4, 16), seeds=(0, 1, 2),
               steps=800, window=400, eval_every=25, tau=100.0)


def minimize_training_loss(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor,
                           iters: int) -> float:
    """Run ``iters`` full-batch L-BFGS steps (``torch.optim.LBFGS``, strong Wolfe line search)
    on the mean cross-entropy of ``model`` on (X, y), in place; return the final loss."""
    _check_pos_int("iters", iters)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=iters, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                            tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(X), y)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model(X), y))


def gradient_noise_trace(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    r"""tr C, C the covariance over the m examples of the per-example gradients
    ∇_θ L(f(x⁽ⁱ⁾; θ), y⁽ⁱ⁾) of the cross-entropy (``torch.func.vmap``).  A minibatch of B
    examples has gradient covariance ≈ C/B, so near a minimum constant-ε SGD settles at
    E[J] − J_min ≈ ε tr C / (4B) (section 9.4, for small ε)."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def one(p, x, t):
        return torch.nn.functional.cross_entropy(functional_call(model, p, (x[None],)), t[None])

    grads = vmap(grad(one), in_dims=(None, 0, 0))(params, X, y)
    flat = torch.cat([g.reshape(len(X), -1) for g in grads.values()], dim=1)
    return float((flat - flat.mean(0)).pow(2).sum(1).mean())


class SideBySideMLP(torch.nn.Module):
    """K copies of one :func:`course_lib.models.mlp` trained side by side as one module.

    ``forward(x)`` returns the K copies' scores, shape (K, N, classes); each copy's weights are
    their own tensors (``copies[k]``), so that an optimizer can give each copy its own ε (one
    parameter group per copy) and :func:`course_lib.train.train` trains all K on the same
    minibatches in one loop.  With :func:`summed_cross_entropy` as the loss, copy k receives
    exactly the gradient it would receive if trained alone (the tests check this).
    """

    def __init__(self, template: torch.nn.Module, copies: int) -> None:
        super().__init__()
        _check_pos_int("copies", copies)
        if isinstance(template, SideBySideMLP):  # copies of its first copy
            tensors, self.activation = list(template.copies[0]), template.activation
        else:
            children = list(template.children())
            layers = children[::2]
            acts = {type(m) for m in children[1::2]}
            _check("template", type(template).__name__,
                   len(layers) >= 1 and all(isinstance(m, torch.nn.Linear) for m in layers)
                   and len(acts) <= 1 and not acts & {torch.nn.Linear},
                   "an mlp(...): Linear layers with one kind of activation between them, "
                   "or a SideBySideMLP")
            tensors = [t for m in layers for t in (m.weight.T, m.bias)]
            self.activation = children[1] if len(children) > 1 else torch.nn.Identity()
        self.copies = torch.nn.ModuleList(
            torch.nn.ParameterList(torch.nn.Parameter(t.detach().clone()) for t in tensors)
            for _ in range(copies))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n_layers = len(self.copies[0]) // 2
        h = x.expand(len(self.copies), *x.shape)  # (K, N, d)
        for i in range(n_layers):
            W = torch.stack([c[2 * i] for c in self.copies])  # (K, d_in, d_out)
            b = torch.stack([c[2 * i + 1] for c in self.copies])  # (K, d_out)
            h = torch.baddbmm(b[:, None, :], h, W)
            if i < n_layers - 1:
                h = self.activation(h)
        return h

    def losses(self, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        """Each copy's mean cross-entropy on (X, y), shape (K,)."""
        with torch.no_grad():
            out = self(X)
            ce = torch.nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                   y.repeat(len(out)), reduction="none")
            return ce.reshape(len(out), -1).mean(1).numpy()


def summed_cross_entropy(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_k (mean cross-entropy of copy k on the minibatch), for scores (K, N, classes): the sum
    of the K copies' costs, so each copy gets its own gradient, unscaled."""
    K = scores.shape[0]
    return torch.nn.functional.cross_entropy(scores.reshape(-1, scores.shape[-1]),
                                             y.repeat(K)) * K


class NetworkFloorResult(NamedTuple):
    """What :func:`network_noise_floor` measured, for seeds[s], batch_sizes[b] and copy k: the
    constant ε = lrs[k] for k < L, then (k = L) the decaying ε₀/(1 + k/τ), ε₀ = lrs[-1].

    ``steps`` (T,): when J_m was evaluated (SGD steps from θ̂); ``curves[s, b, k]`` (T,): the
    training loss J_m(θ) on all m examples then; ``start[s]`` = J_m(θ̂) of the L-BFGS minimum;
    ``trace[s]``: tr C there (:func:`gradient_noise_trace`); ``floor[s, b, k]``: the mean of the
    curve over the window (the last ``window`` steps); ``drift[s, b, k]``: the mean over the
    window's second half minus the mean over its first half (near 0 once the loss has levelled).
    """
    lrs: np.ndarray
    batch_sizes: np.ndarray
    seeds: np.ndarray
    steps: np.ndarray
    curves: np.ndarray
    start: np.ndarray
    trace: np.ndarray
    floor: np.ndarray
    drift: np.ndarray
    window: int

    @property
    def excess(self) -> np.ndarray:
        """(S, B, K): floor − J_m(θ̂), how far above its minimum SGD keeps the loss."""
        return self.floor - self.start[:, None, None]

    @property
    def predicted(self) -> np.ndarray:
        """(S, B, L): the small-ε prediction ε tr C / (4B) for each constant ε."""
        return (self.trace[:, None, None] * self.lrs[None, None, :]
                / (4 * self.batch_sizes[None, :, None]))

    def median_excess(self) -> np.ndarray:
        """(B, K): the median over the seeds of :attr:`excess`."""
        return np.median(self.excess, axis=0)

    def ratio(self) -> np.ndarray:
        """(B, L): the median over the seeds of measured excess / predicted (1: theory holds)."""
        return np.median(self.excess[:, :, :len(self.lrs)] / self.predicted, axis=0)

    def drift_fraction(self) -> np.ndarray:
        """(B, K): the median over the seeds of |drift| / excess: how much the loss still moved
        within the window, relative to the floor's height above J_m(θ̂)."""
        return np.median(np.abs(self.drift) / self.excess, axis=0)

    def exponents(self) -> tuple[float, float]:
        """(p, q) of the least-squares fit log excess = a + p log ε − q log B over the median
        floors of all constant ε and B (theory, for small ε: p = q = 1, the floor ∝ ε/B)."""
        L = len(self.lrs)
        eps, B = np.meshgrid(self.lrs, self.batch_sizes)
        A = np.stack([np.ones(eps.size), np.log(eps).ravel(), -np.log(B).ravel()], axis=1)
        coef = np.linalg.lstsq(A, np.log(self.median_excess()[:, :L]).ravel(), rcond=None)[0]
        return float(coef[1]), float(coef[2])

    def final_excess(self) -> np.ndarray:
        """(B, K): the median over the seeds of the last J_m − J_m(θ̂) of each run."""
        return np.median(self.curves[..., -1] - self.start[:, None, None], axis=0)


DECAY_LABEL = "ε₀/(1 + k/τ)"


def network_noise_floor(num_samples: int = NETWORK["num_samples"], hidden=NETWORK["hidden"],
                        activation: str = NETWORK["activation"],
                        lbfgs_iters: int = NETWORK["lbfgs_iters"], lrs=NETWORK["lrs"],
                        batch_sizes=NETWORK["batch_sizes"], seeds=NETWORK["seeds"],
                        steps: int = NETWORK["steps"], window: int = NETWORK["window"],
                        eval_every: int = NETWORK["eval_every"],
                        tau: float = NETWORK["tau"]) -> NetworkFloorResult:
    """The noise floor of constant-ε SGD on a real network, against ε and B (see ``NETWORK``).

    Per seed: an :func:`course_lib.models.mlp` initialized with that seed is brought to a
    minimum θ̂ of the training loss J_m by :func:`minimize_training_loss`; tr C is measured there
    (:func:`gradient_noise_trace`).  Then, for each B, SGD runs ``steps`` steps from θ̂ with
    every constant ε of ``lrs`` and with ε₀/(1 + k/τ), all through
    :func:`course_lib.train.train` with :class:`course_lib.optim.SGD` on the CPU in float64.
    The runs of one seed and B are copies side by side (:class:`SideBySideMLP`, one parameter
    group per ε, the decaying one driven by a ``LambdaLR``), so they see the same minibatches.
    Training proceeds in chunks of ``eval_every`` steps, one ``train`` call each (``max_steps``:
    its batches are the first of a fresh random order, without replacement within a chunk), and
    J_m on all m examples is evaluated after each chunk.  Floors are window means (see
    :class:`NetworkFloorResult`).
    """
    from course_lib.data import mnist1d
    from course_lib.models import mlp
    from course_lib.optim import SGD
    from course_lib.train import train

    lrs = _lr_array("lrs", lrs)
    sizes = tuple(int(b) for b in batch_sizes)
    for name, v in (("steps", steps), ("window", window), ("eval_every", eval_every)):
        _check_pos_int(name, v)
    _check("window", window, 2 * eval_every <= window <= steps and window % eval_every == 0
           and steps % eval_every == 0,
           f"<= steps = {steps}, >= 2 evaluations, and both multiples of eval_every")
    X, y = mnist1d(num_samples, seed=0).train
    X = X.double()
    m = len(X)
    curves, start, trace = [], [], []
    for seed in seeds:
        net = mlp(X.shape[1], tuple(hidden), 10, activation=activation,
                  generator=torch.Generator().manual_seed(seed)).double()
        start.append(minimize_training_loss(net, X, y, lbfgs_iters))
        trace.append(gradient_noise_trace(net, X, y))
        warm = SideBySideMLP(net, 1)
        per_size = []
        for b, B in enumerate(sizes):
            K = len(lrs) + 1
            model = SideBySideMLP(warm, K)
            opt = SGD([{"params": list(c.parameters()), "lr": float(lr)}
                       for c, lr in zip(model.copies, [*lrs, lrs[-1]])], lr=float(lrs[0]))
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, [lambda k: 1.0] * len(lrs) + [lambda k: 1.0 / (1.0 + k / tau)])
            _check("eval_every", eval_every, eval_every <= math.ceil(m / B),
                   f"<= the steps of one epoch of B = {B}")
            rows = []
            for j in range(steps // eval_every):
                train(model, summed_cross_entropy, opt, (X, y), epochs=1, max_steps=eval_every,
                      batch_size=B, scheduler=sched, metrics=(),
                      seed=1000 * (seed + 1) + 100 * b + j)
                rows.append(model.losses(X, y))
            per_size.append(np.array(rows).T)
        curves.append(per_size)
    curves = np.array(curves)
    T = curves.shape[-1]
    t = np.arange(1, T + 1) * eval_every
    w = window // eval_every
    win = curves[..., T - w:]
    floor = win.mean(-1)
    drift = win[..., w // 2:].mean(-1) - win[..., :w // 2].mean(-1)
    return NetworkFloorResult(lrs, np.array(sizes), np.array(seeds), t, curves, np.array(start),
                              np.array(trace), floor, drift, int(window))


# ---------------------------------------------------------------------------------------------
# The chapter's figures

def plot_comparison(runs: dict, cmp: Comparison, target: float, axes=None):
    """Section 9.2: the learning curves of each method at its best ε (``runs``: name →
    :class:`MethodRun`), against examples processed (left) and updates (right)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1, ax2 = axes
    for r in runs.values():
        label = f"{r.name} (B = {r.batch_size}, ε = {r.lr:.2g})"
        ax1.loglog(r.examples[1:], r.excess[1:], label=label, lw=1)
        ax2.loglog(np.arange(1, len(r.excess)), r.excess[1:], label=label, lw=1)
    for ax, xlabel in ((ax1, "examples processed"), (ax2, "updates (sequential steps)")):
        ax.axhline(target * cmp.initial, color="gray", ls=":", label="target")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(r"$J_m(\theta) - J_m(\hat\theta)$")
        ax.legend(fontsize="small")
    ax1.set_title("Per example, SGD and minibatches are cheapest")
    ax2.set_title("Per update, large batches are cheapest")
    ax1.figure.tight_layout()
    return axes


def plot_schedules(sched: ScheduleResult, ax=None):
    """Section 9.3: measured (solid) and exact (dashed) excess risk of each schedule, the noise
    floor of the constant step and a 1/k guide."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.6))
    k, T = sched.steps[1:], sched.steps[-1]
    for i, label in enumerate(sched.labels):
        (line,) = ax.loglog(k, sched.measured[i, 1:], lw=1, label=label)
        ax.loglog(k, sched.expected[i, 1:], "--", color=line.get_color(), lw=1)
    ax.axhline(sched.floors[0], color="gray", ls=":", label="noise floor of constant ε₀")
    ax.loglog(k, sched.expected[1, -1] * T / k, color="black", lw=0.8, alpha=0.5, label="∝ 1/k")
    ax.set_xlabel("step k (one fresh example per step)")
    ax.set_ylabel(rf"excess risk $J(\theta_k) - J^*$ (mean of {SCHEDULES['n_runs']} runs)")
    ax.set_ylim(1e-3, 10)
    ax.set_title("A constant step stalls at its noise floor; ε₀/(1 + k/τ) keeps converging")
    ax.legend(fontsize="small", title="solid: measured, dashed: exact", title_fontsize="small")
    return ax


def plot_noise_floor(floor: FloorResult, problem: NoisyLinearRegression, ax=None):
    """Section 9.4: measured floors against ε for each B, the exact stationary value σ²c/(1 − c),
    its small-ε line and the mean-square stability limits (dashed verticals)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.6))
    for b, B in enumerate(floor.batch_sizes):
        limit = problem.stable_lr_limit(int(B))
        grid = np.geomspace(1e-3, limit * 0.999, 200)
        (line,) = ax.loglog(floor.lrs, floor.measured[b], "o", label=f"measured, B = {B}")
        ax.loglog(grid, [problem.noise_floor(x, int(B)) for x in grid], "-", color=line.get_color(),
                  label=f"predicted σ²c/(1 − c), B = {B}")
        ax.loglog(grid, floor.small_lr_slope[b] * grid, ":", color=line.get_color(),
                  label=f"linear: ε σ² tr Σ / {B}")
        ax.axvline(limit, color=line.get_color(), ls="--", lw=0.8)
    ax.set_ylim(1e-3, 1e2)
    ax.set_xlabel("constant learning rate ε")
    ax.set_ylabel(r"noise floor $\mathbb{E}[J(\theta)] - J^*$")
    ax.set_title(f"The floor grows like ε (fitted slope {floor.slope():.2f}) and falls like 1/B")
    ax.legend(fontsize="small")
    return ax


def plot_lr_sweep(cmp: Comparison, ax=None):
    """Section 9.6: J_m − J_m* after the budget against ε/(2/λ_max), one curve per method
    (diverged runs drawn at 10³)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.6))
    for name in cmp.curves:
        final = cmp.final_sweep(name)
        shown = np.where(np.isfinite(final), np.minimum(final, 1e3), 1e3)
        ax.loglog(cmp.ratios, shown, "o-", ms=3, lw=1, label=f"{name} (B = {cmp.batch_sizes[name]})")
    ax.axvline(1.0, color="black", ls="--", lw=0.8, label=r"$\epsilon = 2/\lambda_{\max}$")
    ax.axhline(cmp.initial, color="gray", ls=":", label=r"$J_m(\theta_0) - J_m^*$ (no progress)")
    ax.set_xlabel(r"learning rate ε in units of $2/\lambda_{\max}(H)$")
    ax.set_ylabel(r"$J_m - J_m^*$ after 20 epochs (diverged runs at $10^3$)")
    ax.set_title("Too small is slow, too large diverges; GD's wall is 2/λ_max, SGD's is lower")
    ax.legend(fontsize="small")
    return ax


def plot_network_floor(result: NetworkFloorResult, axes=None):
    """Section 9.5.  Left: J_m − J_m(θ̂) against the step for the smallest B (median over the
    seeds), each constant ε and the decaying schedule, the averaging window shaded.  Right: the
    median excess of every constant ε and B against ε/B, with the prediction ε tr C/(4B)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    ax1, ax2 = axes
    L, B0 = len(result.lrs), int(result.batch_sizes[0])
    med = np.median(result.curves[:, 0] - result.start[:, None, None], axis=0)  # (K, T)
    for k in range(L + 1):
        label = f"ε = {result.lrs[k]:g}" if k < L else f"{DECAY_LABEL}, ε₀ = {result.lrs[-1]:g}"
        style = dict(color="black", lw=1.5) if k == L else dict(lw=1)
        ax1.semilogy(result.steps, np.maximum(med[k], 1e-5), label=label, **style)
    ax1.axvspan(result.steps[-1] - result.window, result.steps[-1], color="gray", alpha=0.15,
                label="window of the floor")
    ax1.set_xlabel("SGD step from the minimum θ̂")
    ax1.set_ylabel(r"$J_m(\theta) - J_m(\hat\theta)$ (median of seeds)")
    ax1.set_title(f"B = {B0}: each constant ε levels off; the decaying ε comes back down")
    ax1.legend(fontsize="small")
    x = result.lrs[None, :] / result.batch_sizes[:, None]
    excess = result.median_excess()[:, :L]
    for b, B in enumerate(result.batch_sizes):
        ax2.loglog(x[b], excess[b], "o", label=f"measured, B = {B}")
    grid = np.geomspace(x.min(), x.max(), 50)
    ax2.loglog(grid, grid * np.median(result.trace) / 4, "k--", lw=1,
               label="predicted ε tr C / (4B)")
    ax2.set_xlabel("ε / B")
    ax2.set_ylabel(r"floor $-\ J_m(\hat\theta)$ (median of seeds)")
    ax2.set_title("The floor of the network is set by ε/B")
    ax2.legend(fontsize="small")
    ax1.figure.tight_layout()
    return axes
