r"""Inexact gradients, local versus global structure, and the limits of optimization
(Deep Learning book §8.2.6–8.2.8).

Four groups of tools, one per question of chapter 8:

1. **Noisy and biased gradients** (§8.2.6).  :func:`noisy_sgd` runs SGD on a landscape with
   the estimate ĝ = ∇J(θ) + b + σξ (ξ ~ N(0, I)), many runs side by side.  On a quadratic
   the outcome is known in closed form: :func:`predicted_noise_floor` (the excess cost
   where constant-ε SGD settles) and :func:`biased_fixed_point` (where a biased estimate
   ends up).
2. **A cost with no minimum** (§8.2.7).  :func:`logistic_regression_gd` trains logistic
   regression on separable data, where the loss tends to 0 only as ‖w‖ → ∞ (Soudry et al.,
   2018): ‖w_t‖ grows like ‖ŵ‖ ln t, with ŵ the hard-margin direction of
   :func:`max_margin_vector`.  :func:`fit_gaussian_precision` fits a Gaussian model
   N(y; f(x), β⁻¹) with a learnable precision β: when f can fit the data exactly, the
   negative log-likelihood decreases without bound.
3. **The wrong side of a mountain** (§8.2.7, Figure 8.4).  :class:`Mountain` is a bowl with
   a hill between some starts and the minimum; :func:`descend_from` runs gradient descent
   from many starts at once and measures how long each path is and when it arrives.
4. **Limits of optimization in practice** (§8.2.8).  :func:`width_sweep` trains MLPs of
   several widths on n-bit parity from many seeds and counts how often training fits every
   example; :func:`parity_network` builds by hand a network of width n that fits it exactly.
5. **A real biased gradient** (§8.2.6 on a real network, with chapter 7's latching task).
   :class:`TruncatedRNN` cuts back-propagation through time after the last k steps;
   :func:`gradient_agreement` compares the truncated gradient ĝ_k with the full one, and
   :func:`truncation_experiment` trains with ĝ_k (``TBPTT``, ``TBPTT_CHECKS``).

The settings the chapter uses are the module constants (``NOISE``, ``NOISE_STDS``, ``BIAS``,
``LR_DECAY``, ``SEPARABLE``, ``LOGISTIC``, ``GAUSSIAN``, ``MOUNTAIN``, ``DESCENT``,
``PARITY``, ``DECAY_RUNS``, ``TBPTT``), so that the notebook and ``tests/test_ch08_inexact.py`` run the very same
experiments.

References: Goodfellow, Bengio & Courville (2016), *Deep Learning*, §8.2.6–8.2.8 and §8.3.1;
Robbins & Monro (1951), *Ann. Math. Stat.*; Soudry, Hoffer, Nacson, Gunasekar & Srebro (2018),
*The implicit bias of gradient descent on separable data*, JMLR; Goodfellow, Vinyals & Saxe
(2015), *Qualitatively characterizing neural network optimization problems*, ICLR;
Blum & Rivest (1992), *Training a 3-node neural network is NP-complete*, Neural Networks;
Minsky & Papert (1969), *Perceptrons*; Williams & Peng (1990), *An efficient gradient-based
algorithm for on-line training of recurrent network trajectories*, Neural Computation.
"""
from __future__ import annotations

import itertools
import math
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from course_lib.data import (GaussianClassificationTask, PolynomialRegressionTask,
                             polynomial_features)
from course_lib.landscapes import Landscape, Quadratic
from course_lib.models import mlp
from course_lib.optim import Adam, sgd_update
from course_lib.utils import single_thread

__all__ = [
    "NOISE", "NOISE_STDS", "BIAS", "LR_DECAY", "SEPARABLE", "LOGISTIC", "GAUSSIAN", "MOUNTAIN",
    "DESCENT", "PARITY",
    "NoisyRuns", "noisy_sgd", "noise_floor", "predicted_noise_floor", "biased_fixed_point",
    "predicted_bias_excess", "draw_noisy_sgd",
    "separable_data", "max_margin_vector", "LogisticRuns", "logistic_regression_gd",
    "norm_slope", "loss_exponent", "cosine", "gaussian_nll", "nll_floor", "GaussianFit",
    "fit_gaussian_precision",
    "Mountain", "Descents", "descend_from", "path_length", "start_on_circle", "start_grid",
    "SideComparison", "compare_sides", "ShadowEscape", "shadow_escape",
    "draw_mountain_descent",
    "parity_task", "parity_network", "sign_accuracy", "WidthSweep", "width_sweep",
    "DECAY_RUNS", "plot_noise", "plot_biased_ends", "plot_logistic", "plot_gaussian_fits",
    "plot_shadow_map", "plot_width_sweep",
    "TBPTT", "TBPTT_CHECKS", "TBPTT_SUCCESS", "TruncatedRNN", "truncated_gradient",
    "gradient_agreement", "train_truncated", "TruncationExperiment", "truncation_experiment",
    "plot_truncation",
]

# ----------------------------------------------------------------------------------------
# The chapter's settings: one place for the notebook and the tests
# ----------------------------------------------------------------------------------------
#: noisy SGD on a 2-D quadratic with κ = 10: ε, number of updates, runs side by side
NOISE = dict(condition_number=10.0, angle=math.pi / 6, lr=0.05, steps=600, runs=200, seed=0)
#: the noise levels σ of the sweep
NOISE_STDS = (0.0, 0.5, 1.0, 2.0, 4.0)
#: ‖b‖, the size of the constant bias of the biased estimate
BIAS = 0.5
#: τ of the decaying learning rate ε_t = ε / (1 + t/τ)
LR_DECAY = 20.0
#: runs of the constant-ε / decaying-ε comparison at the last step (a single-step ensemble
#: mean: 2000 runs put its sampling error near 2 %, where 200 runs left it near 7 %)
DECAY_RUNS = 2000
#: separable two-class data: class means, number of examples, seed
SEPARABLE = dict(mean0=(-2.0, -1.0), mean1=(2.0, 1.0), n=40, seed=0)
#: full-batch gradient descent for logistic regression: ε, T, and the weight decays λ compared
LOGISTIC = dict(lr=1.0, steps=20_000, weight_decays=(0.0, 0.01))
#: Gaussian model with learnable precision: data, polynomial degrees compared, Adam's ε and T
GAUSSIAN = dict(n=8, noise_std=0.3, seed=0, degrees=(1, 7), lr=0.01, steps=1000)
#: the mountain landscape
MOUNTAIN = dict(height=3.0, width=1.0, distance=2.5)
#: gradient descent on it: ε, T, the starts' distance from θ*, and "arrived" = J − J* < tol
DESCENT = dict(lr=0.2, steps=1500, radius=6.0, tol=1e-3)
#: the capacity experiment: n-bit parity, hidden widths, seeds, Adam's ε and T
PARITY = dict(n_bits=4, widths=(2, 4, 6, 8, 16, 32), seeds=tuple(range(12)), lr=0.03,
              steps=500)


def _check_positive(name: str, value, integer: bool = False) -> None:
    ok = (isinstance(value, (int, np.integer)) and not isinstance(value, bool) if integer
          else isinstance(value, (int, float, np.floating, np.integer))
          and not isinstance(value, bool) and math.isfinite(value))
    if not ok or value <= 0:
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"Invalid {name}: {value!r} (expected {kind} > 0)")


def _check_nonnegative(name: str, value) -> None:
    if (not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool)
            or not math.isfinite(value) or value < 0):
        raise ValueError(f"Invalid {name}: {value!r} (expected a finite number >= 0)")


# ----------------------------------------------------------------------------------------
# 1. Noisy and biased gradient estimates (§8.2.6)
# ----------------------------------------------------------------------------------------
class NoisyRuns(NamedTuple):
    """R runs of SGD with an inexact gradient, side by side.

    Attributes:
        path: (T + 1, R, n) the iterates θ_t of every run.
        losses: (T + 1, R) J(θ_t).
        lrs: (T,) the learning rate ε_t of update t (t = 1 … T).
        min_value: J* of the landscape, so that ``losses - min_value`` is the excess cost.
    """
    path: np.ndarray
    losses: np.ndarray
    lrs: np.ndarray
    min_value: float


def noisy_sgd(landscape: Landscape, lr: float | Callable[[int], float], steps: int, *,
              noise_std: float = 0.0, bias=None, runs: int = 1, start=None,
              seed: int = 0) -> NoisyRuns:
    r"""SGD with the inexact gradient ĝ = ∇J(θ) + b + σξ, R runs at once.

    .. math::

        \hat g_t = \nabla J(\theta_{t-1}) + b + \sigma \xi_t, \quad
        \xi_t \sim \mathcal N(0, I), \qquad
        \theta_t = \theta_{t-1} - \epsilon_t \hat g_t

    The noise stands for the sampling error of a minibatch gradient (zero mean, variance
    σ² per coordinate); the bias b for an estimator that is systematically off (Deep Learning
    book §8.2.6).  The R runs share θ₀ and differ in their noise only; each is what a single
    run would be, since the update acts row by row (``sgd_update`` on an (R, n) tensor).

    Arguments and symbols:
        landscape: J, with its hand-written, batched ``grad``.
        lr: ε, a number, or a function t ↦ ε_t of the step t = 1, 2, … (a schedule).
        steps: T.
        noise_std: σ ≥ 0.
        bias: b, an (n,) vector (default 0).
        runs: R.
        start: θ₀ (default ``landscape.start``).
        seed: seeds the generator of ξ.
    """
    _check_positive("steps", steps, integer=True)
    _check_positive("runs", runs, integer=True)
    _check_nonnegative("noise_std", noise_std)
    schedule = lr if callable(lr) else None
    if schedule is None:
        _check_positive("lr", lr)
    n = landscape.dim
    b = torch.zeros(n, dtype=torch.float64) if bias is None else torch.as_tensor(
        np.asarray(bias, dtype=np.float64))
    if b.shape != (n,) or not torch.isfinite(b).all():
        raise ValueError(f"Invalid bias: {np.asarray(bias).tolist()} (expected {n} finite numbers)")
    theta0 = (landscape.start if start is None
              else torch.as_tensor(np.asarray(start, dtype=np.float64)))
    theta = theta0.to(torch.float64).reshape(1, n).repeat(runs, 1)  # (R, n)
    gen = torch.Generator().manual_seed(seed)
    path, lrs, state = [theta.clone()], [], {}
    with single_thread(), torch.no_grad():
        for t in range(1, steps + 1):
            eps_t = float(schedule(t)) if schedule is not None else float(lr)
            if not eps_t > 0:
                raise ValueError(f"Invalid lr: the schedule gave ε_{t} = {eps_t} (expected > 0)")
            g = landscape.grad(theta) + b
            if noise_std > 0:
                g = g + noise_std * torch.randn(runs, n, generator=gen, dtype=torch.float64)
            sgd_update(theta, g, state, lr=eps_t)  # θ ← θ − ε_t ĝ, in place
            path.append(theta.clone())
            lrs.append(eps_t)
        P = torch.stack(path)  # (T + 1, R, n)
        losses = landscape.value(P)
    return NoisyRuns(P.numpy(), losses.numpy(), np.array(lrs), float(landscape.min_value))


def noise_floor(runs: NoisyRuns, tail: float = 0.5) -> float:
    """The measured excess cost E[J(θ_t)] − J* where SGD has settled: the mean over the last
    ``tail`` fraction of the steps and over all runs (a time and ensemble average)."""
    if not 0 < tail <= 1:
        raise ValueError(f"Invalid tail: {tail!r} (expected 0 < tail <= 1)")
    T = runs.losses.shape[0] - 1
    first = T - max(1, int(round(tail * T))) + 1
    return float(runs.losses[first:].mean() - runs.min_value)


def _h_matrix(H) -> torch.Tensor:
    H = torch.as_tensor(np.asarray(H, dtype=np.float64))
    if H.ndim != 2 or H.shape[0] != H.shape[1] or not torch.allclose(H, H.T):
        raise ValueError(f"Invalid H: shape {tuple(H.shape)} (expected a symmetric square matrix)")
    return H


def predicted_noise_floor(H, lr: float, noise_std: float) -> float:
    r"""E[J(θ)] − J* of constant-ε SGD with isotropic noise, once it has settled, on
    J = ½(θ − θ*)ᵀH(θ − θ*).

    Along an eigenvector of H (eigenvalue λ) the component z_t of θ_t − θ* obeys
    z_t = (1 − ελ) z_{t−1} − εσξ_t, whose stationary variance s² solves s² = (1 − ελ)² s² + ε²σ²,
    so s² = εσ² / (λ(2 − ελ)).  Each direction contributes ½ λ s²:

    .. math::

        \mathbb E[J] - J^* = \frac{\epsilon\sigma^2}{2} \sum_i \frac{1}{2 - \epsilon\lambda_i}
        \qquad (0 < \epsilon\lambda_i < 2).

    The floor grows linearly with the variance σ² and with ε, which is why SGD needs a
    decaying learning rate to converge (Deep Learning book §8.3.1).
    """
    H = _h_matrix(H)
    _check_positive("lr", lr)
    _check_nonnegative("noise_std", noise_std)
    lam = torch.linalg.eigvalsh(H)
    if not ((lam > 0) & (lr * lam < 2)).all():
        raise ValueError(f"Invalid lr: {lr} (the formula needs 0 < ελ < 2 for every eigenvalue "
                         f"λ of H, here λ in [{lam.min().item():.3g}, {lam.max().item():.3g}])")
    return float(0.5 * lr * noise_std**2 * (1.0 / (2.0 - lr * lam)).sum())


def biased_fixed_point(H, center, bias) -> np.ndarray:
    r"""Where gradient descent with the biased estimate ĝ = ∇J + b stops, on
    J = ½(θ − θ*)ᵀH(θ − θ*): the point where ĝ = H(θ − θ*) + b = 0,

    .. math::

        \theta_\infty = \theta^* - H^{-1} b .

    H⁻¹ amplifies the part of b along flat directions (small eigenvalues) most.
    """
    H = _h_matrix(H)
    c = torch.as_tensor(np.asarray(center, dtype=np.float64)).reshape(-1)
    b = torch.as_tensor(np.asarray(bias, dtype=np.float64)).reshape(-1)
    if c.shape != (H.shape[0],) or b.shape != (H.shape[0],):
        raise ValueError(f"Invalid center/bias: shapes {tuple(c.shape)}, {tuple(b.shape)} "
                         f"(expected ({H.shape[0]},) each)")
    return (c - torch.linalg.solve(H, b)).numpy()


def predicted_bias_excess(H, bias) -> float:
    r"""J(θ_∞) − J* at the biased fixed point: ½ (H⁻¹b)ᵀ H (H⁻¹b) = ½ bᵀH⁻¹b."""
    H = _h_matrix(H)
    b = torch.as_tensor(np.asarray(bias, dtype=np.float64)).reshape(-1)
    return float(0.5 * b @ torch.linalg.solve(H, b))


def draw_noisy_sgd(noise_std: float, bias: float, steps: int = 300) -> NoisyRuns:
    """The figure of the chapter's noise widget: 50 runs of SGD with noise σ = ``noise_std``
    and a bias of size ``bias`` along the flattest direction, on the quadratic of ``NOISE``.
    Draws three of the runs on the contours, the predicted fixed point θ* − H⁻¹b (✚), and in
    the title the measured excess cost (:func:`noise_floor`) against the prediction
    (:func:`predicted_noise_floor` + :func:`predicted_bias_excess`; for this linear update the
    two add up).  Returns the runs.  Use with ``course_lib.widgets.interactive_plot``."""
    import matplotlib.pyplot as plt

    from course_lib.plots import contour

    _check_nonnegative("bias", bias)
    J = Quadratic(NOISE["condition_number"], NOISE["angle"])
    b = bias * J.R[:, 0]  # along the eigenvector of the smallest eigenvalue
    runs = noisy_sgd(J, NOISE["lr"], steps, noise_std=noise_std, bias=b.numpy(), runs=50,
                     seed=NOISE["seed"])
    fig, ax = plt.subplots(figsize=(6, 4.8))
    contour(J, ax=ax)
    for r in range(3):
        ax.plot(runs.path[:, r, 0], runs.path[:, r, 1], lw=0.8, label=f"run {r + 1}")
    ax.scatter(*biased_fixed_point(J.H, J.center, b), marker="P", s=150, color="white",
               edgecolor="black", zorder=6, label=r"predicted $\theta^* - H^{-1}b$")
    ax.legend(loc="lower right", fontsize="small")
    pred = predicted_noise_floor(J.H, NOISE["lr"], noise_std) + predicted_bias_excess(J.H, b)
    ax.set_title(f"σ = {noise_std:.2g}, ‖b‖ = {bias:.2g}: excess cost "
                 f"{noise_floor(runs):.2g} over 50 runs (predicted {pred:.2g})",
                 fontsize="medium")
    return runs


# ----------------------------------------------------------------------------------------
# 2. Costs with no minimum (§8.2.7)
# ----------------------------------------------------------------------------------------
def separable_data(mean0=SEPARABLE["mean0"], mean1=SEPARABLE["mean1"], n: int = SEPARABLE["n"],
                   seed: int = SEPARABLE["seed"]):
    """Two Gaussian classes drawn with ``course_lib.data.GaussianClassificationTask``:
    X (n, 2) and labels s (n,) in {−1, +1}, float64.  Raises ValueError if the sample is not
    linearly separable (checked with :func:`max_margin_vector`)."""
    _check_positive("n", n, integer=True)
    task = GaussianClassificationTask(mean0, mean1)
    X, y = task.sample(n, torch.Generator().manual_seed(seed))
    X, s = X.double(), 2 * y.double().reshape(-1) - 1
    max_margin_vector(X, s)  # raises if not separable
    return X, s


def _augment(X: torch.Tensor) -> torch.Tensor:
    """x̃ = (x, 1): the bias becomes a weight like the others (a homogeneous linear model)."""
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)


def _check_labels(X, s) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or len(X) != len(s) or len(X) == 0:
        raise ValueError(f"Invalid data: X {X.shape}, s {s.shape} (expected (N, d) and (N,))")
    if not np.isin(s, (-1.0, 1.0)).all():
        raise ValueError("Invalid s: labels must be -1 or +1")
    return X, s


def max_margin_vector(X, s) -> np.ndarray:
    r"""The hard-margin vector ŵ of the augmented data x̃ = (x, 1):

    .. math::

        \hat w = \arg\min_w \|w\|^2 \quad\text{s.t.}\quad s_i\, w^\top \tilde x_i \ge 1
        \ \text{for all } i,

    solved with scipy's SLSQP.  ‖ŵ‖ is 1 over the largest margin.  Soudry et al. (2018)
    proved that gradient descent on the logistic loss of separable data satisfies
    w_t = ŵ ln t + O(ln ln t).  Raises ValueError if no such w exists (not separable).
    """
    from scipy.optimize import minimize

    X, s = _check_labels(X, s)
    Z = s[:, None] * np.c_[X, np.ones(len(X))]  # row i: s_i x̃_i
    w0 = np.linalg.lstsq(Z, np.ones(len(Z)), rcond=None)[0]
    res = minimize(lambda w: 0.5 * w @ w, w0, jac=lambda w: w, method="SLSQP",
                   constraints=[{"type": "ineq", "fun": lambda w: Z @ w - 1, "jac": lambda w: Z}],
                   options={"ftol": 1e-14, "maxiter": 500})
    if not res.success or (Z @ res.x).min() < 1 - 1e-6:
        raise ValueError("Invalid data: the two classes are not linearly separable")
    return res.x


class LogisticRuns(NamedTuple):
    """Gradient descent on logistic regression, one run per weight decay λ.

    Attributes:
        steps: (K,) the steps t at which the run was recorded (log-spaced, t = 0 … T).
        weight_decays: (L,) the λ of each run.
        losses: (K, L) the mean logistic loss (1/N) Σ log(1 + e^{−s_i wᵀx̃_i}) (without λ).
        norms: (K, L) ‖w_t‖.
        weights: (K, L, d + 1) w_t.
        grad_norms: (K, L) ‖∇(loss + ½λ‖w‖²)‖ at w_t.
    """
    steps: np.ndarray
    weight_decays: np.ndarray
    losses: np.ndarray
    norms: np.ndarray
    weights: np.ndarray
    grad_norms: np.ndarray


def logistic_regression_gd(X, s, lr: float = LOGISTIC["lr"], steps: int = LOGISTIC["steps"],
                           weight_decays: Sequence[float] = LOGISTIC["weight_decays"],
                           n_records: int = 80) -> LogisticRuns:
    r"""Full-batch gradient descent from w = 0 on the logistic loss plus ½λ‖w‖²:

    .. math::

        J(w) = \frac1N \sum_i \log\big(1 + e^{-s_i w^\top \tilde x_i}\big)
               + \frac{\lambda}{2}\|w\|^2, \qquad
        w \leftarrow w - \epsilon \nabla J(w),

    with x̃ = (x, 1).  On separable data and λ = 0 the loss has no minimizer: it only tends to
    0 as ‖w‖ → ∞ along ŵ.  Any λ > 0 makes J strictly convex with a unique minimizer.  All
    runs go side by side (one (L, d + 1) array); NumPy, not torch, because per-step overhead
    dominates on 40 × 3 numbers.  Records about ``n_records`` log-spaced steps, every power of
    10 and the last step among them.

    Arguments and symbols: ``lr`` → ε, ``weight_decays`` → the λ's, ``steps`` → T.
    """
    X, s = _check_labels(X, s)
    _check_positive("lr", lr)
    _check_positive("steps", steps, integer=True)
    _check_positive("n_records", n_records, integer=True)
    lam = np.asarray(weight_decays, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.isfinite(lam).all() or (lam < 0).any():
        raise ValueError(f"Invalid weight_decays: {list(weight_decays)!r} (expected numbers >= 0)")
    Z = s[:, None] * np.c_[X, np.ones(len(X))]  # (N, d + 1), row i = s_i x̃_i
    N = len(Z)
    W = np.zeros((lam.size, Z.shape[1]))  # (L, d + 1), one row per λ
    decades = 10 ** np.arange(int(math.log10(steps)) + 1)  # 1, 10, 100, … ≤ T: always recorded
    record = set(np.unique(np.r_[0, decades, np.round(np.geomspace(1, steps, n_records))])
                 .astype(int).tolist())
    rec: dict[str, list] = {"t": [], "loss": [], "norm": [], "w": [], "grad": []}

    def grad_and_loss(W):
        M = Z @ W.T  # (N, L) margins s_i wᵀx̃_i
        p = 0.5 * (1 - np.tanh(M / 2))  # σ(−m), computed without overflow
        G = -(p.T @ Z) / N + lam[:, None] * W  # (L, d + 1)
        return G, np.logaddexp(0.0, -M).mean(axis=0)

    for t in range(steps + 1):
        G, loss = grad_and_loss(W)
        if t in record:
            rec["t"].append(t)
            rec["loss"].append(loss)
            rec["norm"].append(np.linalg.norm(W, axis=1))
            rec["w"].append(W.copy())
            rec["grad"].append(np.linalg.norm(G, axis=1))
        if t < steps:
            W = W - lr * G
    return LogisticRuns(np.array(rec["t"]), lam, np.array(rec["loss"]), np.array(rec["norm"]),
                        np.array(rec["w"]), np.array(rec["grad"]))


def norm_slope(steps, norms, t_min: float) -> float:
    """d‖w‖ / d ln t, fitted by least squares on the records with t ≥ ``t_min``.
    For logistic regression on separable data it tends to ‖ŵ‖ (Soudry et al., 2018)."""
    steps, norms = np.asarray(steps, dtype=np.float64), np.asarray(norms, dtype=np.float64)
    keep = steps >= t_min
    if keep.sum() < 2 or t_min <= 0:
        raise ValueError(f"Invalid t_min: {t_min!r} (expected > 0, leaving at least 2 records)")
    return float(np.polyfit(np.log(steps[keep]), norms[keep], 1)[0])


def loss_exponent(steps, losses, t_min: float) -> float:
    """The exponent p of losses ∝ t^p, fitted on a log-log scale to the records with
    t ≥ ``t_min``.  Logistic regression on separable data has p → −1 (Soudry et al., 2018)."""
    steps, losses = np.asarray(steps, dtype=np.float64), np.asarray(losses, dtype=np.float64)
    keep = steps >= t_min
    if keep.sum() < 2 or t_min <= 0:
        raise ValueError(f"Invalid t_min: {t_min!r} (expected > 0, leaving at least 2 records)")
    if (losses[keep] <= 0).any():
        raise ValueError("Invalid losses: a log-log fit needs positive values")
    return float(np.polyfit(np.log(steps[keep]), np.log(losses[keep]), 1)[0])


def cosine(a, b) -> float:
    """cos ∠(a, b) = aᵀb / (‖a‖‖b‖)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if a.shape != b.shape or na == 0 or nb == 0:
        raise ValueError(f"Invalid vectors: shapes {a.shape}, {b.shape} (expected equal shapes, "
                         "both nonzero)")
    return float(a @ b / (na * nb))


def gaussian_nll(residuals: torch.Tensor, log_beta: torch.Tensor) -> torch.Tensor:
    r"""The mean negative log-likelihood of residuals r_i = f(x_i) − y_i under
    N(y; f(x), β⁻¹), with s = ln β (so β > 0 whatever s):

    .. math::

        \mathrm{NLL} = \frac1N \sum_i -\log \mathcal N(y_i; f(x_i), \beta^{-1})
        = \tfrac12\big(\beta\,\overline{r^2} - \ln\beta + \ln 2\pi\big).

    Equal to ``torch.nn.GaussianNLLLoss(full=True)`` with variance 1/β (which, unlike this
    function, clamps the variance at its ``eps`` to stop exactly the divergence shown in
    the chapter).
    """
    return 0.5 * (torch.exp(log_beta) * (residuals**2).mean() - log_beta + math.log(2 * math.pi))


def nll_floor(mse: float) -> float:
    r"""min over β of the Gaussian NLL for a fixed fit with mean squared error r̄² (``mse``):
    β = 1/r̄² and NLL = ½(1 + ln(2π r̄²)).  It tends to −∞ as r̄² → 0."""
    _check_positive("mse", mse)
    return 0.5 * (1.0 + math.log(2 * math.pi * mse))


class GaussianFit(NamedTuple):
    """One joint fit of f and β.  Arrays of length T + 1 (t = 0 … T): ``nll``, ``beta``,
    ``mse``; ``degree`` the polynomial degree; ``best_mse`` the least MSE the model can
    reach on the data (least squares)."""
    degree: int
    nll: np.ndarray
    beta: np.ndarray
    mse: np.ndarray
    best_mse: float


def _gaussian_data(n: int, noise_std: float, seed: int):
    x, y = PolynomialRegressionTask(noise_std=noise_std).sample(
        n, torch.Generator().manual_seed(seed))
    return x.double().reshape(-1), y.double().reshape(-1)


def fit_gaussian_precision(degree: int, n: int = GAUSSIAN["n"],
                           noise_std: float = GAUSSIAN["noise_std"], seed: int = GAUSSIAN["seed"],
                           lr: float = GAUSSIAN["lr"],
                           steps: int = GAUSSIAN["steps"]) -> GaussianFit:
    r"""Fit p(y | x) = N(y; f(x), β⁻¹) to n noisy samples of sin(πx) by Adam on
    :func:`gaussian_nll`, learning the polynomial f of the given degree and s = ln β jointly
    (from f = 0, β = 1).

    The polynomials are written in a basis that is orthonormal on the training inputs
    (Q of the QR factorisation of the Vandermonde matrix, scaled by √n), so that
    ill-conditioning does not slow the fit; the function class is unchanged.  With
    degree = n − 1, f can pass through every point (least-squares MSE 0): then the NLL has no
    minimum and Adam drives β up and the NLL down for as long as it runs.  With a lower degree
    the MSE cannot drop below ``best_mse`` > 0 and the NLL converges to
    :func:`nll_floor` (``best_mse``).

    Arguments and symbols: ``lr`` → ε (Adam's), ``steps`` → T.
    """
    _check_positive("degree", degree, integer=True)
    _check_positive("n", n, integer=True)
    _check_positive("lr", lr)
    _check_positive("steps", steps, integer=True)
    if degree > n - 1:
        raise ValueError(f"Invalid degree: {degree} (expected <= n - 1 = {n - 1})")
    x, y = _gaussian_data(n, noise_std, seed)
    Q, _ = torch.linalg.qr(polynomial_features(x, degree))  # (n, degree + 1), orthonormal columns
    Phi = Q * math.sqrt(n)  # features with unit mean square
    best = float(((Q @ (Q.T @ y) - y) ** 2).mean())  # least squares: project y on span(Q)
    w = torch.zeros(degree + 1, dtype=torch.float64, requires_grad=True)
    log_beta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = Adam([w, log_beta], lr=lr)
    nll, beta, mse = [], [], []
    with single_thread():
        for t in range(steps + 1):
            opt.zero_grad()
            r = Phi @ w - y
            J = gaussian_nll(r, log_beta)
            nll.append(J.item())
            beta.append(log_beta.exp().item())
            mse.append((r.detach() ** 2).mean().item())
            if t < steps:
                J.backward()
                opt.step()
    return GaussianFit(degree, np.array(nll), np.array(beta), np.array(mse), best)


# ----------------------------------------------------------------------------------------
# 3. The wrong side of a mountain (§8.2.7, Figure 8.4)
# ----------------------------------------------------------------------------------------
class Mountain(Landscape):
    r"""A bowl with a mountain between some starts and the minimum.

    .. math::

        J(\theta) = \sqrt{1 + \|\theta\|^2} - 1
                    + h \exp\!\Big(-\frac{\|\theta - c\|^2}{2 w^2}\Big),
        \qquad c = (-d, 0)

    The bowl √(1 + ‖θ‖²) − 1 pulls towards the origin with a force of at most 1, so near
    the mountain its slope dominates: on the mountain's back, between the summit and the
    saddle behind it, the way down points *away* from the minimum.  Gradient descent from there walks round the mountain, and a
    start exactly in its shadow (θ₂ = 0, θ₁ < −d) ends at a saddle on its back, where the
    two pulls cancel (Deep Learning book §8.2.7, Figure 8.4; Goodfellow, Vinyals & Saxe,
    2015, saw such arcs in real training runs).

    With q = √(1 + ‖θ‖²), e = h exp(−‖θ − c‖²/(2w²)) and u = θ − c:
    ∇J = θ/q − (e/w²) u,  H = I/q − θθᵀ/q³ + (e/w²)(uuᵀ/w² − I).

    The minimizer (just right of the origin), the saddle behind the mountain and its summit
    ``peak`` (a maximum) are found by Newton's method when the object is built.

    Arguments and symbols: ``height`` → h, ``width`` → w, ``distance`` → d.
    """

    name = "mountain"
    bounds = ((-7.0, 7.0), (-5.0, 5.0))

    def __init__(self, height: float = MOUNTAIN["height"], width: float = MOUNTAIN["width"],
                 distance: float = MOUNTAIN["distance"]) -> None:
        for arg, v in (("height", height), ("width", width), ("distance", distance)):
            _check_positive(arg, v)
        super().__init__()
        self.height, self.width, self.distance = float(height), float(width), float(distance)
        self.center = torch.tensor([-self.distance, 0.0], dtype=torch.float64)
        minimizer = self._newton([0.5, 0.0])
        saddle = self._newton([-self.distance - 2.0 * self.width, 0.0])
        self.peak = self._newton([-self.distance, 0.0])
        if not (torch.linalg.eigvalsh(self.hessian(minimizer)) > 0).all():
            raise ValueError(f"Invalid mountain: height={height}, width={width}, "
                             f"distance={distance} (the minimum moved; make it smaller)")
        self.minimizers = minimizer.reshape(1, 2)
        lam = torch.linalg.eigvalsh(self.hessian(saddle))
        self.saddles = (saddle.reshape(1, 2) if lam[0] < 0 < lam[1]
                        else torch.zeros(0, 2, dtype=torch.float64))
        self.min_value = self.value(minimizer).item()
        self.start = torch.tensor([-self.distance - 3.0, 0.5], dtype=torch.float64)

    def _newton(self, guess, iters: int = 100) -> torch.Tensor:
        """A critical point near ``guess`` (Newton's method on ∇J = 0, steps capped at 0.5)."""
        theta = torch.tensor(guess, dtype=torch.float64)
        for _ in range(iters):
            step = torch.linalg.solve(self.hessian(theta), self.grad(theta))
            if step.norm() > 0.5:
                step = step * (0.5 / step.norm())
            theta = theta - step
            if step.norm() < 1e-15:
                break
        return theta

    def _bump(self, theta):
        u = theta - self.center.to(theta)
        e = self.height * torch.exp(-(u**2).sum(-1) / (2 * self.width**2))
        return u, e

    def value(self, theta):
        _, e = self._bump(theta)
        return torch.sqrt(1 + (theta**2).sum(-1)) - 1 + e

    def grad(self, theta):
        u, e = self._bump(theta)
        q = torch.sqrt(1 + (theta**2).sum(-1, keepdim=True))
        return theta / q - (e[..., None] / self.width**2) * u

    def hessian(self, theta):
        u, e = self._bump(theta)
        q = torch.sqrt(1 + (theta**2).sum(-1))[..., None, None]
        eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
        outer = theta[..., :, None] * theta[..., None, :]
        uu = u[..., :, None] * u[..., None, :]
        k = (e / self.width**2)[..., None, None]
        return eye / q - outer / q**3 + k * (uu / self.width**2 - eye)

    def _repr_args(self):
        return {"height": self.height, "width": self.width, "distance": self.distance}


def start_on_circle(landscape: Landscape, angle_deg: float, radius: float = DESCENT["radius"]):
    """θ* + r (cos a, sin a): a start at distance r from the minimizer, at angle a (degrees;
    0 = the side away from the mountain, 180 = straight behind it)."""
    _check_positive("radius", radius)
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    if angle_deg % 90 == 0:  # exact axes: 180° must lie *exactly* in the mountain's shadow
        c, s = round(c), round(s)
    theta_star = landscape.minimizers[0].numpy()
    return theta_star + radius * np.array([c, s], dtype=np.float64)


def path_length(path) -> float:
    """Σ_t ‖θ_{t+1} − θ_t‖ of an (N, n) path (or a Trajectory's ``path``)."""
    P = np.asarray(getattr(path, "path", path), dtype=np.float64)
    if P.ndim != 2 or len(P) < 1:
        raise ValueError(f"Invalid path: shape {P.shape} (expected (N, n))")
    return float(np.linalg.norm(np.diff(P, axis=0), axis=1).sum())


class Descents(NamedTuple):
    """Gradient descent from K starts at once.

    Attributes:
        starts, finals: (K, n) θ₀ and θ_T.
        lengths: (K,) path lengths Σ‖θ_{t+1} − θ_t‖.
        arrivals: (K,) the first t with J(θ_t) − J* < tol, or −1 if never within T steps.
        excess: (K,) J(θ_T) − J*.
        paths: (T + 1, K, n) every iterate if ``keep_paths``, else None.
    """
    starts: np.ndarray
    finals: np.ndarray
    lengths: np.ndarray
    arrivals: np.ndarray
    excess: np.ndarray
    paths: np.ndarray | None = None


def descend_from(landscape: Landscape, starts, lr: float = DESCENT["lr"],
                 steps: int = DESCENT["steps"], tol: float = DESCENT["tol"],
                 keep_paths: bool = False) -> Descents:
    """Plain gradient descent θ ← θ − ε∇J(θ) from every row of ``starts`` (K, n) at once,
    with the landscape's batched ``grad``; measures path length and arrival time (the same
    iterates as ``run_optimizer(landscape, SGD, start, steps, lr=ε)`` for each start)."""
    _check_positive("lr", lr)
    _check_positive("steps", steps, integer=True)
    _check_positive("tol", tol)
    theta = torch.as_tensor(np.asarray(starts, dtype=np.float64)).reshape(-1, landscape.dim).clone()
    theta0 = theta.clone()
    K = len(theta)
    length = torch.zeros(K, dtype=torch.float64)
    arrival = torch.full((K,), -1, dtype=torch.long)
    state: dict = {}
    paths = [theta0.clone()] if keep_paths else None
    with single_thread(), torch.no_grad():
        for t in range(steps + 1):
            newly = (arrival < 0) & (landscape.value(theta) - landscape.min_value < tol)
            arrival[newly] = t
            if t == steps:
                break
            before = theta.clone()
            sgd_update(theta, landscape.grad(theta), state, lr=lr)
            length += (theta - before).norm(dim=1)
            if keep_paths:
                paths.append(theta.clone())
        excess = landscape.value(theta) - landscape.min_value
    return Descents(theta0.numpy(), theta.numpy(), length.numpy(), arrival.numpy(), excess.numpy(),
                    torch.stack(paths).numpy() if keep_paths else None)


def start_grid(landscape: Landscape, resolution: int = 41) -> tuple[np.ndarray, np.ndarray]:
    """(Θ₁, Θ₂), a ``resolution`` × ``resolution`` meshgrid over ``landscape.bounds``; with an
    odd resolution and symmetric bounds in θ₂ the middle row lies exactly on θ₂ = 0."""
    _check_positive("resolution", resolution, integer=True)
    (x0, x1), (y0, y1) = landscape.bounds
    return np.meshgrid(np.linspace(x0, x1, resolution), np.linspace(y0, y1, resolution))


class SideComparison(NamedTuple):
    """Arrival steps of grid starts at a similar distance r from θ* (r_min ≤ r ≤ r_max), in
    front of the mountain (within ``half_angle`` of 0°) and behind it (within ``half_angle``
    of 180°).  Medians over the starts that arrive; ``never`` counts those that do not."""
    median_front: float
    median_behind: float
    n_front: int
    n_behind: int
    never_front: int
    never_behind: int


def compare_sides(descents: Descents, landscape: Landscape, r_min: float = 4.0,
                  r_max: float = 7.0, half_angle: float = 30.0) -> SideComparison:
    """Split the starts of ``descents`` by where they lie around θ*
    (see :class:`SideComparison`)."""
    if not 0 <= r_min < r_max:
        raise ValueError(f"Invalid r_min, r_max: {r_min!r}, {r_max!r} "
                         "(expected 0 <= r_min < r_max)")
    if not 0 < half_angle <= 90:
        raise ValueError(f"Invalid half_angle: {half_angle!r} (expected 0 < half_angle <= 90)")
    d = descents.starts - landscape.minimizers[0].numpy()
    r = np.linalg.norm(d, axis=1)
    angle = np.degrees(np.abs(np.arctan2(d[:, 1], d[:, 0])))  # 0 in front … 180 behind
    ring = (r >= r_min) & (r <= r_max)
    front, behind = ring & (angle <= half_angle), ring & (angle >= 180 - half_angle)
    arr = descents.arrivals

    def median(mask):
        ok = mask & (arr >= 0)
        return float(np.median(arr[ok])) if ok.any() else math.nan

    return SideComparison(median(front), median(behind), int(front.sum()), int(behind.sum()),
                          int((front & (arr < 0)).sum()), int((behind & (arr < 0)).sum()))


class ShadowEscape(NamedTuple):
    """Starts straight behind the mountain, offset sideways by Δθ₂: ``offsets``, ``arrivals``
    (steps until arrival), ``lam_minus`` the negative Hessian eigenvalue λ₋ at the saddle,
    ``measured_slope`` = d(arrival)/d ln(1/Δθ₂) fitted, ``predicted_slope`` = 1/ln(1 + ε|λ₋|)."""
    offsets: np.ndarray
    arrivals: np.ndarray
    lam_minus: float
    measured_slope: float
    predicted_slope: float


def shadow_escape(landscape: Mountain, offsets, lr: float = DESCENT["lr"], steps: int = 3000,
                  radius: float = DESCENT["radius"]) -> ShadowEscape:
    r"""Gradient descent from (θ₁, Δθ₂) with θ₁ straight behind the mountain at distance
    ``radius`` from θ*, for each sideways offset Δθ₂ > 0.

    Near the saddle the sideways offset grows by the factor 1 + ε|λ₋| per step, so escaping
    takes ≈ ln(c/Δθ₂) / ln(1 + ε|λ₋|) steps: a delay linear in ln(1/Δθ₂), without upper bound.
    """
    offsets = np.asarray(offsets, dtype=np.float64).ravel()
    if offsets.size < 2 or not (offsets > 0).all():
        raise ValueError(f"Invalid offsets: {offsets.tolist()} (expected at least 2 numbers > 0)")
    if landscape.saddles.shape[0] != 1:
        raise ValueError("Invalid landscape: expected one saddle behind the mountain")
    x_behind = start_on_circle(landscape, 180.0, radius)[0]
    runs = descend_from(landscape, np.stack([np.full_like(offsets, x_behind), offsets], axis=1),
                        lr=lr, steps=steps)
    if (runs.arrivals < 0).any():
        raise ValueError(f"Invalid steps: {steps} (some starts had not arrived; use more steps)")
    lam_minus = torch.linalg.eigvalsh(landscape.hessian(landscape.saddles[0]))[0].item()
    measured = float(np.polyfit(np.log(1 / offsets), runs.arrivals, 1)[0])
    return ShadowEscape(offsets, runs.arrivals, lam_minus, measured,
                        1 / math.log(1 + lr * abs(lam_minus)))


def draw_mountain_descent(angle: float, landscape: Mountain | None = None):
    """The figure of the chapter's mountain widget: gradient descent (``DESCENT``'s ε and T,
    with ``course_lib.optim.SGD``) from the start at ``angle`` degrees on the circle of radius
    ``DESCENT['radius']`` around θ* (0° in front of the mountain, 180° straight behind it).
    The title gives the path length relative to the straight line and the arrival step.
    Returns the Trajectory.  Use with ``course_lib.widgets.interactive_plot``."""
    import matplotlib.pyplot as plt

    from course_lib.landscapes import run_optimizer
    from course_lib.optim import SGD
    from course_lib.plots import plot_trajectories

    J = landscape if landscape is not None else Mountain()
    traj = run_optimizer(J, SGD, start_on_circle(J, angle), DESCENT["steps"], lr=DESCENT["lr"],
                         name=f"start at {angle:g}°")
    arrived = traj.first_step_below(J.min_value + DESCENT["tol"])
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    plot_trajectories(J, {f"GD from {angle:g}°": traj}, ax=ax)
    when = f"arrives at step {arrived}" if arrived is not None else "never arrives"
    ax.set_title(f"path {path_length(traj) / DESCENT['radius']:.2f}× the straight line, {when}",
                 fontsize="medium")
    return traj


# ----------------------------------------------------------------------------------------
# 4. Limits of optimization in practice (§8.2.8)
# ----------------------------------------------------------------------------------------
def parity_task(n_bits: int = PARITY["n_bits"]):
    """All 2ⁿ inputs x ∈ {−1, +1}ⁿ (float64, (2ⁿ, n)) and the parity of their +1 entries as
    a target in {−1, +1} ((2ⁿ, 1)): +1 for an odd count.  Parity is the classic function a
    single layer cannot represent (Minsky & Papert, 1969); every input bit matters."""
    _check_positive("n_bits", n_bits, integer=True)
    X = torch.tensor(list(itertools.product((-1.0, 1.0), repeat=n_bits)), dtype=torch.float64)
    odd = ((X > 0).sum(dim=1) % 2).double()
    return X, (2 * odd - 1).reshape(-1, 1)


@torch.no_grad()
def parity_network(n_bits: int = PARITY["n_bits"]) -> nn.Sequential:
    r"""An MLP with n ReLU units (``mlp(n, (n,), 1)``) that computes n-bit parity *exactly*.

    With u = Σ_i x_i ∈ {−n, −n + 2, …, n}, the target is a zigzag in u: −1, +1, −1, … at
    u_k = 2k − n.  The piecewise-linear interpolant of the zigzag is

    .. math::

        f(u) = -2 + \mathrm{ReLU}(u + n + 1) + \sum_{j=1}^{n-1} 2(-1)^j\, \mathrm{ReLU}(u - u_j),

    slope +1 before u₁, each kink flipping the slope's sign: n units suffice.  So a width-n
    network has a global minimum of the squared error at exactly 0.
    """
    _check_positive("n_bits", n_bits, integer=True)
    net = mlp(n_bits, (n_bits,), 1, "relu", generator=torch.Generator()).double()
    first, last = net[0], net[2]
    first.weight.fill_(1.0)  # every unit sees u = Σ x_i
    kinks = torch.tensor([2.0 * j - n_bits for j in range(1, n_bits)], dtype=torch.float64)
    first.bias.copy_(torch.cat([torch.tensor([n_bits + 1.0], dtype=torch.float64), -kinks]))
    signs = torch.tensor([2.0 * (-1) ** j for j in range(1, n_bits)], dtype=torch.float64)
    last.weight.copy_(torch.cat([torch.ones(1, dtype=torch.float64), signs]).reshape(1, -1))
    last.bias.fill_(-2.0)
    return net


@torch.no_grad()
def sign_accuracy(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> float:
    """The fraction of examples with sign(f(x)) = y, for targets y ∈ {−1, +1}."""
    return float((torch.sign(model(X)) == Y).double().mean())


class WidthSweep(NamedTuple):
    """Training runs per width.  ``widths`` (W,), ``seeds`` (S,), ``accuracies`` (W, S)
    training sign accuracies, ``final_losses`` (W, S) final mean squared errors,
    ``success`` (W,) the fraction of seeds that fit every example."""
    widths: np.ndarray
    seeds: np.ndarray
    accuracies: np.ndarray
    final_losses: np.ndarray
    success: np.ndarray


def width_sweep(widths: Sequence[int] = PARITY["widths"], seeds: Sequence[int] = PARITY["seeds"],
                n_bits: int = PARITY["n_bits"], steps: int = PARITY["steps"],
                lr: float = PARITY["lr"]) -> WidthSweep:
    """Train ``mlp(n_bits, (width,), 1)`` on n-bit parity (squared error on ±1 targets, Adam,
    full batch) from every seed, for every width; a run *succeeds* if its signs match all
    2ⁿ targets.  The seeds of one width train side by side with
    :func:`course_lib.experiments.local_minima.train_from_many_seeds` (exactly as separate runs)."""
    from course_lib.experiments.local_minima import train_from_many_seeds

    widths = list(widths)
    if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"Invalid widths: {widths!r} (expected ints >= 1)")
    X, Y = parity_task(n_bits)
    acc, loss = [], []
    for width in widths:
        runs = train_from_many_seeds(X, Y, (width,), seeds=seeds, steps=steps, optimizer=Adam,
                                     lr=lr)
        acc.append([sign_accuracy(runs.model(i), X, Y) for i in range(len(runs.seeds))])
        loss.append(runs.final_losses)
    acc = np.array(acc)
    return WidthSweep(np.array(widths), np.array(list(seeds)), acc, np.array(loss),
                      (acc == 1.0).mean(axis=1))


# ----------------------------------------------------------------------------------------
# 5. A real biased gradient: truncated back-propagation through time (§8.2.6 and chapter 7)
# ----------------------------------------------------------------------------------------
#: truncated BPTT on chapter 7's latching task (``course_lib.experiments.long_term``): the lag T, the
#: truncations k compared, ε of SGD with momentum, the seeds; the rest (16 tanh units, the
#: distractor noise, data sizes, minibatch 32, 150 steps, momentum 0.9) is chapter 7's ``LATCH``
TBPTT = dict(lag=10, truncations=(1, 2, 5, 9, 10), lr=0.1, seeds=(0, 1, 2, 3, 4))
#: the same comparison at a second lag and at a second learning rate: (lag T, ε); the
#: truncations there are 1, T/2 and T
TBPTT_CHECKS = ((8, 0.1), (10, 0.2))
#: a run counts as a success when its test accuracy exceeds this (chance: 1/2)
TBPTT_SUCCESS = 0.9


class TruncatedRNN(nn.Module):
    r"""A :class:`~course_lib.models.VanillaRNN` whose backward pass stops k steps before
    the loss (truncated back-propagation through time, Williams & Peng, 1990).

    The forward pass is the RNN's own, h_t = tanh(W h_{t−1} + U x_t + b), o = V h_T + c, so
    the loss is unchanged; only h_{T−k} is detached from the graph, so the gradient keeps the
    terms of the last k steps and drops every path through h_{T−k}:

    .. math::

        \hat g_k = \sum_{t = T-k+1}^{T} \frac{\partial L}{\partial h_t}
        \frac{\partial^+ h_t}{\partial \theta},

    where ∂⁺ is the derivative of step t alone.  For k ≥ T it is the full gradient (h_0 = 0
    does not depend on θ).  The parameters are those of ``rnn`` (shared, not copied).
    """

    def __init__(self, rnn, k: int) -> None:
        _check_positive("k", k, integer=True)
        super().__init__()
        self.rnn, self.k = rnn, int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        cut = max(T - self.k, 0)
        h = None
        if cut > 0:
            with torch.no_grad():
                h = self.rnn.states(x[:, :cut])[-1]
        h_T = self.rnn.states(x[:, cut:], h)[-1]
        return h_T @ self.rnn.V.T + self.rnn.c


def truncated_gradient(rnn, X: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """ĝ_k of the mean cross-entropy of ``rnn`` on (X, y), as one flat vector over all the
    parameters (see :class:`TruncatedRNN`); k ≥ T gives the full gradient."""
    with single_thread():
        loss = nn.functional.cross_entropy(TruncatedRNN(rnn, k)(X), y)
        grads = torch.autograd.grad(loss, list(rnn.parameters()))
    return torch.cat([g.reshape(-1) for g in grads]).detach()


def gradient_agreement(rnn, X: torch.Tensor, y: torch.Tensor,
                       truncations: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """For each k: cos ∠(ĝ_k, g) and ‖ĝ_k‖/‖g‖, with g the full gradient (BPTT through all
    T steps), both on (X, y)."""
    full = truncated_gradient(rnn, X, y, X.shape[1])
    cos, ratio = [], []
    for k in truncations:
        g = truncated_gradient(rnn, X, y, k)
        cos.append(float(g @ full / (g.norm() * full.norm())))
        ratio.append(float(g.norm() / full.norm()))
    return np.array(cos), np.array(ratio)


def _latch_setup(lag: int, seed: int):
    """Chapter 7's data and initial network for one seed (as ``long_term.train_latching``)."""
    from course_lib.experiments.long_term import LATCH, latching_task
    from course_lib.models import VanillaRNN

    X, y = latching_task(lag, LATCH["n_train"], 1000 + seed, LATCH["noise"])
    Xt, yt = latching_task(lag, LATCH["n_test"], 2000 + seed, LATCH["noise"])
    rnn = VanillaRNN(1, LATCH["hidden_size"], 2,
                     generator=torch.Generator().manual_seed(seed)).double()
    return rnn, (X, y), (Xt, yt)


def train_truncated(lag: int, k: int, seed: int, lr: float = TBPTT["lr"],
                    steps: int | None = None):
    """Train chapter 7's latching RNN at ``lag`` with the k-step truncated gradient, through
    :func:`course_lib.train.train` (SGD with momentum, the budget of ``long_term.LATCH``
    unless ``steps`` is given).  With k ≥ lag it is exactly
    ``long_term.train_latching(lag, seed, lr=lr)``.  Returns (test accuracy, trained RNN)."""
    from course_lib.experiments.long_term import LATCH
    from course_lib.optim import SGD
    from course_lib.train import evaluate, train

    _check_positive("lag", lag, integer=True)
    _check_positive("lr", lr)
    rnn, train_data, test_data = _latch_setup(lag, seed)
    loss_fn = nn.CrossEntropyLoss()
    opt = SGD(rnn.parameters(), lr=lr, momentum=LATCH["momentum"])
    with single_thread():
        train(TruncatedRNN(rnn, k), loss_fn, opt, train_data, epochs=10 ** 6,
              max_steps=LATCH["steps"] if steps is None else steps,
              batch_size=LATCH["batch_size"], seed=seed)
        acc = evaluate(rnn, loss_fn, test_data)["accuracy"]
    return float(acc), rnn


class TruncationExperiment(NamedTuple):
    """Truncated BPTT at one lag T and learning rate ε, K truncations × S seeds.

    Attributes:
        lag, lr: T and ε.
        truncations: (K,) the k's.  seeds: (S,).
        accuracy: (K, S) test accuracy after training with ĝ_k.
        cos_init, ratio_init: (K, S) cos ∠(ĝ_k, g) and ‖ĝ_k‖/‖g‖ of the initial network.
        cos_trained, ratio_trained: (K, S) the same for the network trained with the full
            gradient (k = T), on the same test sequences.
    """
    lag: int
    lr: float
    truncations: np.ndarray
    seeds: np.ndarray
    accuracy: np.ndarray
    cos_init: np.ndarray
    ratio_init: np.ndarray
    cos_trained: np.ndarray
    ratio_trained: np.ndarray

    def successes(self, threshold: float = TBPTT_SUCCESS) -> np.ndarray:
        """(K,) how many seeds exceed ``threshold`` test accuracy, per truncation."""
        return (self.accuracy > threshold).sum(axis=1)

    def median(self, name: str) -> np.ndarray:
        """(K,) the median over seeds of the attribute ``name`` (e.g. ``"cos_init"``)."""
        return np.median(getattr(self, name), axis=1)


def truncation_experiment(lag: int = TBPTT["lag"], truncations: Sequence[int] | None = None,
                          seeds: Sequence[int] = TBPTT["seeds"],
                          lr: float = TBPTT["lr"]) -> TruncationExperiment:
    """For every seed and truncation k: the bias of ĝ_k against the full gradient
    (:func:`gradient_agreement` on the test sequences, before training and after training
    with the full gradient) and the test accuracy after training with ĝ_k
    (:func:`train_truncated`).  Default truncations: 1, T/2 and T (the chapter's main
    comparison is ``truncation_experiment(**TBPTT)``)."""
    _check_positive("lag", lag, integer=True)
    if truncations is None:
        truncations = tuple(sorted({1, max(lag // 2, 1), lag}))
    ks = [int(k) for k in truncations]
    if not ks or any(k < 1 for k in ks) or lag not in ks:
        raise ValueError(f"Invalid truncations: {list(truncations)!r} (expected ints >= 1, "
                         f"including the lag {lag}, the full gradient)")
    seeds = [int(s) for s in seeds]
    shape = (len(ks), len(seeds))
    acc, ci, ri, ct, rt = (np.zeros(shape) for _ in range(5))
    for j, seed in enumerate(seeds):
        rnn, _, (Xt, yt) = _latch_setup(lag, seed)
        ci[:, j], ri[:, j] = gradient_agreement(rnn, Xt, yt, ks)
        for i, k in enumerate(ks):
            acc[i, j], trained = train_truncated(lag, k, seed, lr)
            if k == lag:
                ct[:, j], rt[:, j] = gradient_agreement(trained, Xt, yt, ks)
    return TruncationExperiment(int(lag), float(lr), np.array(ks), np.array(seeds), acc,
                                ci, ri, ct, rt)


def plot_truncation(main: TruncationExperiment, checks: Sequence[TruncationExperiment] = (),
                    axes=None):
    """Left: the median over seeds of cos ∠(ĝ_k, g) and ‖ĝ_k‖/‖g‖ against k, for the initial
    and the trained network of ``main``.  Right: test accuracy against k/T, every seed (dots)
    and the median (line), for ``main`` and each of ``checks``, with chance at 1/2.
    Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12.5, 4.3))
    ax, bx = axes
    k = main.truncations
    for which, ls in (("init", "--"), ("trained", "-")):
        state = "initial net" if which == "init" else "trained net (full BPTT)"
        ax.plot(k, main.median(f"cos_{which}"), "o" + ls, color="C0",
                label=f"cos ∠(ĝ_k, g), {state}")
        ax.plot(k, main.median(f"ratio_{which}"), "s" + ls, color="C1", ms=4,
                label=f"‖ĝ_k‖ / ‖g‖, {state}")
    ax.set(xlabel=f"truncation k (steps back-propagated; lag T = {main.lag})",
           ylabel=f"median over {len(main.seeds)} seeds", xticks=k)
    ax.legend(fontsize="x-small")
    for n, exp in enumerate((main, *checks)):
        x = exp.truncations / exp.lag
        color = f"C{n + 2}"
        for j in range(len(exp.seeds)):
            bx.plot(x + 0.012 * (n - 1), exp.accuracy[:, j], "o", color=color, ms=3, alpha=0.5)
        bx.plot(x, np.median(exp.accuracy, axis=1), "-", color=color, lw=2,
                label=f"T = {exp.lag}, ε = {exp.lr:g}: median of {len(exp.seeds)} seeds")
    bx.axhline(0.5, color="gray", ls=":", label="chance")
    bx.set(xlabel="truncation k / lag T", ylabel="test accuracy")
    bx.legend(fontsize="x-small")
    return ax, bx


# ----------------------------------------------------------------------------------------
# The chapter's figures
# ----------------------------------------------------------------------------------------
def plot_noise(J, noise_runs: dict, decayed: NoisyRuns, constant: NoisyRuns, lr: float,
               axes=None):
    """Left: the measured noise floor (:func:`noise_floor` of ``noise_runs``, keyed by σ)
    against σ², with :func:`predicted_noise_floor`.  Right: the mean excess cost of the
    ``constant``-ε runs and of the ``decayed`` ones against t, with the predicted floor of
    σ = 1.  Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    a1, a2 = axes
    stds = [sd for sd in noise_runs if sd > 0]
    var = np.array(stds) ** 2
    a1.loglog(var, [noise_floor(noise_runs[sd]) for sd in stds], "o", ms=8,
              label=f"measured ({noise_runs[stds[0]].losses.shape[1]} runs)")
    a1.loglog(var, [predicted_noise_floor(J.H, lr, sd) for sd in stds], "-", label="predicted")
    a1.set_xlabel(r"gradient noise variance $\sigma^2$")
    a1.set_ylabel(r"$\mathbb{E}[J(\theta)] - J^*$ where SGD settles")
    a1.set_title("The error floor grows like the variance $\\sigma^2$", fontsize="medium")
    a1.legend()
    t = np.arange(decayed.losses.shape[0])
    for label, r in [(r"constant $\epsilon$", constant),
                     (r"$\epsilon_t = \epsilon/(1+t/\tau)$", decayed)]:
        a2.semilogy(t, r.losses.mean(axis=1) - J.min_value, label=label)
    a2.axhline(predicted_noise_floor(J.H, lr, 1.0), color="gray", ls="--", lw=1,
               label="predicted floor (constant ε)")
    a2.set_xlabel("step t")
    a2.set_ylabel(rf"$\mathbb{{E}}[J(\theta_t)] - J^*$ (mean of {decayed.losses.shape[1]} runs)")
    a2.set_title("σ = 1: a decaying learning rate sinks below the floor", fontsize="medium")
    a2.legend()
    return a1, a2


def plot_biased_ends(J, biased: dict, ax=None):
    """The deterministic runs with a bias (``biased``: name → (NoisyRuns, predicted end)) on
    the contours of J, with the predicted end points θ* − H⁻¹b (✚).  Returns the Axes."""
    import matplotlib.pyplot as plt

    from course_lib.plots import contour

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5))
    contour(J, ax=ax, bounds=((-2.0, 1.0), (-1.0, 1.5)))
    for name, (run, target) in biased.items():
        ax.plot(run.path[:, 0, 0], run.path[:, 0, 1], marker="o", ms=2, lw=1.2,
                label=f"bias along the {name} direction")
        ax.scatter(*target, marker="P", s=160, color="white", edgecolor="black", zorder=6)
    ax.scatter([], [], marker="P", s=100, color="white", edgecolor="black",
               label=r"predicted $\theta^* - H^{-1}b$")
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("The same ‖b‖ shifts the end point 10× more\nalong the flat direction",
                 fontsize="medium")
    return ax


def plot_logistic(X, s, w_hat, logit: LogisticRuns, axes=None):
    """Logistic regression on separable data: the loss and ‖w_t‖ against t for every λ of
    ``logit`` (with ‖ŵ‖ ln t + const), and the data with the decision boundaries of GD
    (λ = 0 and the second λ) and of the hard-margin ŵ.  Returns the three Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    X, s = np.asarray(X), np.asarray(s)
    ts = np.maximum(logit.steps, 1)
    for j, lam in enumerate(logit.weight_decays):
        axes[0].loglog(ts, logit.losses[:, j], label=f"λ = {lam:g}")
        axes[1].semilogx(ts, logit.norms[:, j], label=f"λ = {lam:g}")
    line_t = ts[ts >= 100]
    offset = logit.norms[-1, 0] - np.linalg.norm(w_hat) * np.log(ts[-1])
    axes[1].semilogx(line_t, np.linalg.norm(w_hat) * np.log(line_t) + offset, "k--", lw=1,
                     label=r"$\|\hat w\| \ln t$ + const")
    axes[0].set(xlabel="step t", ylabel="mean logistic loss",
                title="λ = 0: the loss keeps falling towards 0")
    axes[1].set(xlabel="step t (log scale)", ylabel=r"$\|w_t\|$",
                title=r"λ = 0: $\|w\|$ grows like $\|\hat w\|\,\ln t$, without bound")
    for ax in axes[:2]:
        ax.legend()
        ax.title.set_fontsize("medium")
    ax = axes[2]
    ax.scatter(X[:, 0], X[:, 1], c=s, cmap="coolwarm", edgecolor="black", s=30)
    xx = np.linspace(X[:, 0].min() - 0.5, X[:, 0].max() + 0.5, 2)
    T = int(logit.steps[-1])
    for w, label, style in [(logit.weights[-1, 0], f"GD, λ = 0, t = {T:,}".replace(",", " "), "-"),
                            (w_hat, "hard-margin ŵ", "--"),
                            (logit.weights[-1, 1], f"GD, λ = {logit.weight_decays[1]:g}", ":")]:
        ax.plot(xx, -(w[0] * xx + w[2]) / w[1], style, lw=1.5, label=label)
    ax.set(xlabel=r"$x_1$", ylabel=r"$x_2$", ylim=(X[:, 1].min() - 1, X[:, 1].max() + 1),
           title="the boundary of GD approaches the max-margin one")
    ax.title.set_fontsize("medium")
    ax.legend(fontsize="small")
    return axes


def plot_gaussian_fits(fits: dict, axes=None):
    """The NLL and the precision β against Adam's step for every fit of ``fits`` (degree →
    :class:`GaussianFit`), with the NLL floor of the lowest degree.  Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    a1, a2 = axes
    for d, fit in fits.items():
        a1.plot(fit.nll, label=f"degree {d}")
        a2.semilogy(fit.beta, label=f"degree {d}")
    low = fits[min(fits)]
    a1.axhline(nll_floor(low.best_mse), color="gray", ls="--", lw=1,
               label=rf"degree {low.degree}: $\frac{{1}}{{2}}(1 + \ln 2\pi \overline{{r^2}}_{{\min}})$")
    a1.set(xlabel="Adam step", ylabel="negative log-likelihood (nats per example)",
           title="A model that can interpolate drives the NLL down without end")
    a2.set(xlabel="Adam step", ylabel=r"precision $\beta$ (log scale)",
           title=r"… by raising the precision $\beta$ without bound")
    for ax in (a1, a2):
        ax.legend()
        ax.title.set_fontsize("medium")
    return a1, a2


def plot_shadow_map(M: Mountain, gx, gy, grid: Descents, esc: ShadowEscape, axes=None):
    """Left: the arrival step of gradient descent from every start of the grid (gx, gy)
    (white: never).  Right: the arrival step against the sideways offset Δθ₂ of a start
    straight behind the mountain, with the predicted slope 1/ln(1 + ε|λ₋|).
    Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1.3, 1]})
    a1, a2 = axes
    never = grid.arrivals < 0
    arrive = np.where(never, np.nan, grid.arrivals).reshape(gx.shape)  # NaN (white): never
    im = a1.pcolormesh(gx, gy, arrive, cmap="magma_r", shading="auto")
    a1.figure.colorbar(im, ax=a1, label="steps until J − J* < 10⁻³")
    a1.contour(*M.mesh(150), levels=12, colors="white", linewidths=0.4, alpha=0.5)
    a1.scatter(*M.minimizers[0].numpy(), marker="*", s=200, color="gold", edgecolor="black")
    a1.set(xlabel=r"$\theta_1$ of the start", ylabel=r"$\theta_2$ of the start",
           title="Starts in the mountain's shadow arrive last (white: never)")
    a2.semilogx(esc.offsets, esc.arrivals, "o", ms=7, label="measured")
    line_fit = esc.arrivals[0] + esc.predicted_slope * np.log(esc.offsets[0] / esc.offsets)
    a2.semilogx(esc.offsets, line_fit, "-", label=r"slope $1/\ln(1+\epsilon|\lambda_-|)$")
    a2.invert_xaxis()
    a2.set(xlabel=r"sideways offset $\Delta\theta_2$ of a start straight behind",
           ylabel="steps until arrival",
           title=r"The delay grows like $\ln(1/\Delta\theta_2)$: no upper bound")
    for ax in (a1, a2):
        ax.title.set_fontsize("medium")
    a2.legend()
    return a1, a2


def plot_width_sweep(sweep: WidthSweep, axes=None):
    """Left: the fraction of seeds that fit every example against the width (log scale).
    Right: the final squared error of every run.  Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    a1, a2 = axes
    a1.plot(sweep.widths, sweep.success, "o-")
    a1.axvline(4, color="gray", ls="--", lw=1, label="width 4 can fit it exactly")
    a1.set_xscale("log", base=2)
    a1.set(xlabel="hidden units",
           ylabel=f"fraction of {len(sweep.seeds)} seeds that fit all 16 examples",
           ylim=(-0.05, 1.05), title="Training finds a solution far more often in wider networks")
    a1.legend()
    for i, w in enumerate(sweep.widths):
        a2.scatter(np.full(len(sweep.seeds), w), np.maximum(sweep.final_losses[i], 1e-12),
                   alpha=0.6)
    a2.set_xscale("log", base=2)
    a2.set_yscale("log")
    a2.set(xlabel="hidden units", ylabel="final squared error (floored at 1e-12)",
           title="At width 4 most runs stall at a high loss, although 0 is reachable")
    for ax in (a1, a2):
        ax.title.set_fontsize("medium")
    return a1, a2
