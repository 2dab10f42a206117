r"""Cliffs and exploding gradients: a two-parameter recurrent network, and gradient clipping.

The Deep Learning book (Goodfellow, Bengio & Courville, 2016, §8.2.4 and §10.11.1) explains
cliffs as the result of multiplying many factors together, and shows them on a recurrent
network.  We use the smallest such network (after Pascanu, Mikolov & Bengio, 2013, *On the
difficulty of training recurrent neural networks*, ICML): one tanh unit, run for T steps,

.. math::

    h_t = \tanh(w\,h_{t-1} + b), \quad t = 1, \dots, T, \qquad
    J(w, b) = \tfrac12 (h_T - y)^2 .

Its gradient contains the product of T Jacobians ∂h_t/∂h_{t−1} = w(1 − h_t²); where the
state sits on the unstable fixed point of the map h ↦ tanh(wh + b), each factor is larger
than 1 and the slope grows geometrically with T: a wall in the (w, b) plane.

Contents:

- :class:`RNNCliff`: that cost as a :class:`~course_lib.landscapes.Landscape` (value,
  hand-written gradient and Hessian by forward-mode recursions, the wall in closed form).
- :func:`wall_slopes`, :func:`growth_factor`: the gradient norm on the wall for several T
  (it explodes geometrically) and its growth factor per time step.
- :func:`clip_gradient`, :func:`angle_between`: the two kinds of clipping, done by
  ``torch.nn.utils.clip_grad_norm_`` / ``clip_grad_value_``, and what they do to g's
  direction.
- :func:`single_step`, :func:`compare_clipping`, :func:`step_lengths`,
  :func:`catapult_census`: gradient descent with and without clipping from the same start
  (through :func:`~course_lib.landscapes.run_optimizer`), one run or many;
  :func:`threshold_sweep`: the same run for several clipping thresholds.
- :func:`steepest_slope`: the steepest point of a vertical cut, wherever it is (the wall
  grows geometrically with T for w > 4/3, like a power of T for 1 < w < 4/3, not for w ≤ 1).
- A real network (section 6.8): :func:`train_rnn_clipped`, :func:`rnn_clipping_experiment`,
  :func:`rnn_clipping_summary`, :func:`plot_rnn_clipping`: a vanilla RNN on the latching task
  of chapter 7, trained through ``course_lib.train`` with and without global-norm clipping,
  the threshold c chosen from the observed gradient norms; :func:`clip_check_on_rnn`: our
  :func:`clip_gradient` against ``clip_grad_norm_`` on that network's gradient.
- :func:`plot_clip_vectors`: the figure of section 6.4.
- The settings of chapter 6 (``START``, ``LR``, ``MAX_NORM``, …, ``RNN_TASK``, ``RNN_LRS``,
  :func:`census_starts`), so that the notebook and its tests use the same numbers.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from course_lib.landscapes import Landscape, Trajectory, run_optimizer
from course_lib.optim import SGD

__all__ = ["plot_cliff", "plot_wall_growth", "plot_clipping_runs", "plot_threshold_sweep", "RNNCliff", "wall_slopes", "steepest_slope", "growth_factor", "clip_gradient", "angle_between",
           "step_lengths", "single_step", "compare_clipping", "catapult_census", "threshold_sweep",
           "census_starts", "train_rnn_clipped", "rnn_clipping_experiment",
           "rnn_clipping_summary", "clip_check_on_rnn", "plot_rnn_clipping", "plot_clip_vectors"]


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


# ----------------------------------------------------------------------------------------
# The landscape
# ----------------------------------------------------------------------------------------
class RNNCliff(Landscape):
    r"""The squared error of a one-unit tanh RNN after T steps, as a function of θ = (w, b).

    .. math::

        h_t = \tanh(a_t), \quad a_t = w\,h_{t-1} + b \quad (t = 1..T), \qquad
        J(w, b) = \tfrac12 (h_T - y)^2 .

    Arguments and symbols: ``time_steps`` → T ≥ 1, ``h0`` → h₀ ∈ (−1, 1) the initial state,
    ``target`` → y ∈ (−1, 1).

    Derivatives (forward mode: carry ∂h_t/∂θ and ∂²h_t/∂θ² along with h_t).  With
    s_t = 1 − h_t² = tanh′(a_t) and tanh″(a_t) = −2 h_t s_t:

    .. math::

        \frac{\partial a_t}{\partial w} = h_{t-1} + w \frac{\partial h_{t-1}}{\partial w},
        \qquad \frac{\partial a_t}{\partial b} = 1 + w \frac{\partial h_{t-1}}{\partial b},
        \qquad \nabla h_t = s_t \nabla a_t,

        \nabla^2 h_t = s_t \nabla^2 a_t - 2 h_t s_t\, \nabla a_t \nabla a_t^\top, \quad
        \nabla^2 a_t = \begin{pmatrix} 2\,\partial_w h_{t-1} + w\,\partial_{ww} h_{t-1} &
        \partial_b h_{t-1} + w\,\partial_{wb} h_{t-1} \\ \cdot & w\,\partial_{bb} h_{t-1}
        \end{pmatrix},

    and ∇J = (h_T − y)∇h_T,  H = ∇h_T∇h_Tᵀ + (h_T − y)∇²h_T.

    The wall.  Unrolling ∂a_t/∂b shows products of the factors w·s_k = ∂h_k/∂h_{k−1}.  If
    b = b*(w) with

    .. math::  b^*(w) = \operatorname{artanh}(h_0) - w\,h_0 ,

    then h₀ is a fixed point of h ↦ tanh(wh + b): the state stays at h₀ for ever, and every
    factor equals w(1 − h₀²).  When that is > 1 the fixed point is unstable, a tiny change of
    (w, b) sends h_T to one of two far-apart stable states, and the slope on the line b*(w)
    grows like [w(1 − h₀²)]^T: the cliff (see :meth:`wall_growth`).  For finite T the wall is
    where h_T crosses 0 (:meth:`wall_b`), which tends to b*(w) as T grows.

    The minimum J = 0 is attained on a whole curve (h_T = y), so ``minimizers`` is empty
    and ``min_value`` is 0.
    """

    name = "one-unit RNN"
    bounds = ((0.0, 4.0), (-2.0, 1.0))

    def __init__(self, time_steps: int = 20, h0: float = 0.5, target: float = 0.7) -> None:
        _check("time_steps", time_steps, _is_int(time_steps) and time_steps >= 1, "an int >= 1")
        _check("h0", h0, -1 < h0 < 1, "a number in (-1, 1)")
        _check("target", target, -1 < target < 1, "a number in (-1, 1)")
        super().__init__()
        self.time_steps, self.h0, self.target = int(time_steps), float(h0), float(target)
        self.min_value = 0.0
        self.start = torch.tensor([2.0, -0.7], dtype=torch.float64)  # on the shelf
        self.name = f"one-unit RNN, T = {self.time_steps}"

    # --- forward pass -----------------------------------------------------------------
    def states(self, theta) -> torch.Tensor:
        """h₀, h₁, …, h_T for θ of shape (..., 2); returns shape (T + 1, ...)."""
        theta = torch.as_tensor(theta, dtype=torch.float64)
        w, b = theta[..., 0], theta[..., 1]
        h = torch.full_like(w, self.h0)
        hs = [h]
        for _ in range(self.time_steps):
            h = torch.tanh(w * h + b)
            hs.append(h)
        return torch.stack(hs)

    def value(self, theta):
        w, b = theta[..., 0], theta[..., 1]
        h = torch.full_like(w, self.h0)
        for _ in range(self.time_steps):
            h = torch.tanh(w * h + b)
        return 0.5 * (h - self.target) ** 2

    def _forward_mode(self, theta, second: bool):
        """h_T, ∇h_T = (h_w, h_b) and, if ``second``, (h_ww, h_wb, h_bb)."""
        w, b = theta[..., 0], theta[..., 1]
        h = torch.full_like(w, self.h0)
        zero = torch.zeros_like(w)
        hw, hb, hww, hwb, hbb = zero, zero, zero, zero, zero  # h₀ does not depend on θ
        for _ in range(self.time_steps):
            aw, ab = h + w * hw, 1 + w * hb  # ∇a_t, from h_{t−1} and its derivatives
            if second:
                aww, awb, abb = 2 * hw + w * hww, hb + w * hwb, w * hbb
            h = torch.tanh(w * h + b)
            s = 1 - h**2  # tanh′(a_t)
            if second:
                c = -2 * h * s  # tanh″(a_t)
                hww, hwb, hbb = s * aww + c * aw * aw, s * awb + c * aw * ab, s * abb + c * ab * ab
            hw, hb = s * aw, s * ab
        return h, (hw, hb), (hww, hwb, hbb)

    def grad(self, theta):
        h, (hw, hb), _ = self._forward_mode(theta, second=False)
        r = h - self.target
        return torch.stack([r * hw, r * hb], dim=-1)

    def hessian(self, theta):
        h, (hw, hb), (hww, hwb, hbb) = self._forward_mode(theta, second=True)
        r = h - self.target
        H_ww, H_wb, H_bb = hw * hw + r * hww, hw * hb + r * hwb, hb * hb + r * hbb
        return torch.stack([torch.stack([H_ww, H_wb], dim=-1),
                            torch.stack([H_wb, H_bb], dim=-1)], dim=-2)  # (..., 2, 2)

    # --- the wall ---------------------------------------------------------------------
    def wall_limit(self, w) -> np.ndarray | float:
        """b*(w) = artanh(h₀) − w h₀: the wall as T → ∞ (h₀ is then a fixed point)."""
        return math.atanh(self.h0) - np.asarray(w, dtype=float) * self.h0

    def wall_growth(self, w: float) -> float:
        """w(1 − h₀²): the factor by which the slope on the wall grows per time step."""
        return float(w) * (1 - self.h0**2)

    def wall_b(self, w: float, tol: float = 1e-13) -> float:
        """The b at which h_T crosses 0 for this w (w > 0), found by bisection.

        For w > 0, h_T is increasing in b (each step is an increasing function of b and of
        h_{t−1}), so the crossing is unique; it lies in [−w − 20, w + 20] because there
        |w h + b| > 19 for every |h| ≤ 1.
        """
        _check("w", w, w > 0, "a number > 0")
        lo, hi = -w - 20.0, w + 20.0
        while hi - lo > tol:
            mid = 0.5 * (lo + hi)
            h_T = self.states(torch.tensor([w, mid], dtype=torch.float64))[-1].item()
            lo, hi = (lo, mid) if h_T > 0 else (mid, hi)
        return 0.5 * (lo + hi)

    def _repr_args(self):
        return {"time_steps": self.time_steps, "h0": self.h0, "target": self.target}


def wall_slopes(time_steps, w: float = 2.0, h0: float = 0.5, target: float = 0.7) -> np.ndarray:
    r"""‖∇J‖ at the wall (where h_T = 0, see :meth:`RNNCliff.wall_b`) for each T.

    Returns an array of the same length as ``time_steps``.  The slope grows like
    [w(1 − h₀²)]^T (for the defaults 1.5^T); :func:`growth_factor` measures the factor.
    """
    time_steps = list(time_steps)
    _check("time_steps", time_steps, len(time_steps) > 0 and all(
        _is_int(T) and T >= 1 for T in time_steps), "a non-empty list of ints >= 1")
    _check("w", w, w > 0, "a number > 0")
    out = []
    for T in time_steps:
        J = RNNCliff(T, h0, target)
        theta = torch.tensor([w, J.wall_b(w)], dtype=torch.float64)
        out.append(J.grad(theta).norm().item())
    return np.array(out)


def steepest_slope(w: float, time_steps: int, h0: float = 0.5, target: float = 0.7,
                   b_range=(-2.0, 1.0), points: int = 2001, zooms: int = 8) -> float:
    """The largest ‖∇J‖ on the vertical line w = const, b in ``b_range``, of
    :class:`RNNCliff` with T = ``time_steps``: the steepness of the step between shelf and
    basin wherever it lies (on the wall b*(w) for w > 4/3; where a fixed point of
    h ↦ tanh(wh + b) disappears for 1 < w < 4/3; nowhere steep for w ≤ 1).

    A grid of ``points`` values of b, refined ``zooms`` times around its largest value (each
    zoom shrinks the interval about 500-fold, so walls far thinner than the first grid are
    found).
    """
    _check("time_steps", time_steps, _is_int(time_steps) and time_steps >= 1, "an int >= 1")
    _check("points", points, _is_int(points) and points >= 5, "an int >= 5")
    J = RNNCliff(time_steps, h0, target)
    lo, hi = float(b_range[0]), float(b_range[1])
    _check("b_range", b_range, lo < hi, "(low, high) with low < high")
    best = 0.0
    for _ in range(zooms + 1):
        b = torch.linspace(lo, hi, points, dtype=torch.float64)
        norms = J.grad(torch.stack([torch.full_like(b, float(w)), b], dim=-1)).norm(dim=-1)
        i = int(norms.argmax())
        best = max(best, norms[i].item())
        lo, hi = b[max(i - 2, 0)].item(), b[min(i + 2, points - 1)].item()
    return best


# ----------------------------------------------------------------------------------------
# Clipping
# ----------------------------------------------------------------------------------------
def clip_gradient(g, max_norm: float | None = None, max_value: float | None = None) -> torch.Tensor:
    r"""A clipped copy of the gradient g (which is left unchanged).

    By norm (Pascanu et al., 2013): :math:`g \leftarrow g \cdot \min(1, c / \lVert g\rVert)`,
    the direction is kept.  By value (Mikolov, 2012): each component is clamped to [−c, c],
    which turns g towards the diagonal when its components differ.  Both are done by torch
    (``clip_grad_norm_`` / ``clip_grad_value_``) on a copy; give exactly one of the two.
    (torch's norm clipping divides by ‖g‖ + 10⁻⁶, so the clipped norm is c up to ~10⁻⁶ c/‖g‖.)
    """
    _check("max_norm", max_norm, max_norm is None or max_norm > 0, "None or a number > 0")
    _check("max_value", max_value, max_value is None or max_value > 0, "None or a number > 0")
    if (max_norm is None) == (max_value is None):
        raise ValueError(f"Invalid max_norm={max_norm!r}, max_value={max_value!r} "
                         "(expected exactly one of them)")
    p = torch.nn.Parameter(torch.zeros_like(torch.as_tensor(g, dtype=torch.float64)))
    p.grad = torch.as_tensor(g, dtype=torch.float64).detach().clone()
    if max_norm is not None:
        torch.nn.utils.clip_grad_norm_([p], max_norm)
    else:
        torch.nn.utils.clip_grad_value_([p], max_value)
    return p.grad


def angle_between(u, v) -> float:
    """The angle between two non-zero vectors, in degrees (0 = same direction)."""
    u = torch.as_tensor(u, dtype=torch.float64).reshape(-1)
    v = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
    _check("u", u.tolist(), u.shape == v.shape and u.norm() > 0, "a non-zero vector shaped like v")
    _check("v", v.tolist(), v.norm() > 0, "a non-zero vector")
    cos = torch.dot(u, v) / (u.norm() * v.norm())
    return math.degrees(math.acos(max(-1.0, min(1.0, cos.item()))))


# ----------------------------------------------------------------------------------------
# Gradient descent with and without clipping
# ----------------------------------------------------------------------------------------
def step_lengths(traj: Trajectory) -> np.ndarray:
    """‖θ_{t+1} − θ_t‖ for each recorded update of a trajectory (length T)."""
    return np.linalg.norm(np.diff(traj.path, axis=0), axis=1)


def single_step(landscape: Landscape, theta, lr: float, max_norm: float | None = None,
                max_value: float | None = None) -> dict:
    """One step θ ← θ − ε·clip(g) (plain SGD, ``course_lib.optim.SGD``), measured.

    Returns a dict with ``theta_before``, ``theta_after`` (arrays), ``loss_before``,
    ``loss_after``, ``grad_norm`` (of g before clipping) and ``step_length`` ‖Δθ‖.
    """
    _check("lr", lr, lr > 0, "a number > 0")
    traj = run_optimizer(landscape, SGD, theta, steps=1, lr=lr, clip_grad_norm=max_norm,
                         clip_grad_value=max_value, max_loss=math.inf)
    if traj.steps != 1:
        raise FloatingPointError(f"the step from {theta!r} with lr={lr!r} left the finite numbers")
    return {"theta_before": traj.path[0], "theta_after": traj.path[1],
            "loss_before": float(traj.losses[0]), "loss_after": float(traj.losses[1]),
            "grad_norm": float(traj.grad_norms[0]), "step_length": float(step_lengths(traj)[0])}


def compare_clipping(landscape: Landscape, start, lr: float, steps: int,
                     max_norm: float | None = None, max_value: float | None = None) -> dict:
    """Gradient descent (``course_lib.optim.SGD``, learning rate ε = ``lr``) from the same
    ``start``: without clipping, and with each clipping that is given.

    Returns label → :class:`~course_lib.landscapes.Trajectory`, labels "no clipping",
    "clip by norm (c = …)", "clip by value (c = …)".
    """
    _check("lr", lr, lr > 0, "a number > 0")
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    runs = {"no clipping": run_optimizer(landscape, SGD, start, steps, lr=lr,
                                         max_loss=math.inf, name="no clipping")}
    if max_norm is not None:
        _check("max_norm", max_norm, max_norm > 0, "None or a number > 0")
        label = f"clip by norm (c = {max_norm:g})"
        runs[label] = run_optimizer(landscape, SGD, start, steps, lr=lr, clip_grad_norm=max_norm,
                                    max_loss=math.inf, name=label)
    if max_value is not None:
        _check("max_value", max_value, max_value > 0, "None or a number > 0")
        label = f"clip by value (c = {max_value:g})"
        runs[label] = run_optimizer(landscape, SGD, start, steps, lr=lr,
                                    clip_grad_value=max_value, max_loss=math.inf, name=label)
    return runs


def catapult_census(landscape: Landscape, starts, lrs, steps: int, max_norm: float,
                    jump: float = 1.0, good_loss: float = 1e-2) -> dict:
    """Run gradient descent from every start with every learning rate, with and without
    clipping by norm, and count what happens.

    A run is *catapulted* if one of its steps is longer than ``jump``; it *reached* the goal
    if its final loss is below ``good_loss``.  Returns
    ``{"no clipping": counts, "clip by norm": counts}`` with counts =
    ``{"runs": n, "catapulted": k, "reached": m}``, and under ``"runs"`` the list of
    ``(start, lr, label, max_step, final_loss)`` for every run.
    """
    starts = [tuple(float(v) for v in s) for s in starts]
    lrs = [float(lr) for lr in lrs]
    _check("starts", starts, len(starts) > 0, "a non-empty list of points")
    _check("lrs", lrs, len(lrs) > 0 and all(lr > 0 for lr in lrs), "a non-empty list of numbers > 0")
    _check("max_norm", max_norm, max_norm > 0, "a number > 0")
    _check("jump", jump, jump > 0, "a number > 0")
    counts = {key: {"runs": 0, "catapulted": 0, "reached": 0}
              for key in ("no clipping", "clip by norm")}
    records = []
    for start in starts:
        for lr in lrs:
            runs = compare_clipping(landscape, start, lr, steps, max_norm=max_norm)
            for key, traj in zip(counts, runs.values()):
                longest = float(step_lengths(traj).max())
                final = float(traj.losses[-1])
                counts[key]["runs"] += 1
                counts[key]["catapulted"] += int(longest > jump)
                counts[key]["reached"] += int(final < good_loss)
                records.append((start, lr, key, longest, final))
    return {**counts, "runs": records}


def threshold_sweep(landscape: Landscape, start, lr: float, steps: int, thresholds,
                    good_loss: float = 1e-2) -> dict:
    """Gradient descent clipped by norm at each threshold c in ``thresholds``, same start.

    Returns a dict of arrays, one entry per threshold: ``threshold``, ``max_step`` (the
    longest step ‖θ_{t+1} − θ_t‖, at most εc), ``final_loss``, ``reach_step`` (the first t
    with J(θ_t) < ``good_loss``, −1 if never) and ``losses`` (shape (thresholds, steps + 1):
    J(θ_t) for t = 0..steps, so that a shorter budget can be read off the same runs).
    """
    thresholds = [float(c) for c in thresholds]
    _check("thresholds", thresholds, len(thresholds) > 0 and all(c > 0 for c in thresholds),
           "a non-empty list of numbers > 0")
    max_step, losses = [], []
    for c in thresholds:
        traj = compare_clipping(landscape, start, lr, steps, max_norm=c)[f"clip by norm (c = {c:g})"]
        max_step.append(float(step_lengths(traj).max()))
        losses.append(np.asarray(traj.losses, dtype=float))
    losses = np.array(losses)
    below = losses < good_loss
    reach = np.where(below.any(axis=1), below.argmax(axis=1), -1)
    return {"threshold": np.array(thresholds), "max_step": np.array(max_step),
            "final_loss": losses[:, -1], "reach_step": reach, "losses": losses}


def growth_factor(time_steps, values) -> float:
    """The factor per time step of a geometric growth: exp of the slope of a least-squares
    line through (T, log value)."""
    T = np.asarray(time_steps, dtype=float)
    v = np.asarray(values, dtype=float)
    _check("values", values, v.shape == T.shape and v.size >= 2 and bool(np.all(v > 0)),
           "positive numbers, one per time step, at least two")
    return float(np.exp(np.polyfit(T, np.log(v), 1)[0]))


# ----------------------------------------------------------------------------------------
# The settings of chapter 6 (the notebook and tests/test_ch06_cliffs.py both import them)
# ----------------------------------------------------------------------------------------
CHAPTER_T = 20                       # T of the landscape the optimizers run on
WALL_W = 2.0                         # the w at which the wall's slope is measured against T
WALL_TS = (10, 15, 20, 25, 30)       # the T's of that measurement
NEAR_WALL = (1.5, -0.201)            # θ = (w, b) on the lower part of the wall's face
START = (2.0, -0.7)                  # θ₀ on the high shelf, for the runs with and without clipping
LR = 0.1                             # ε
STEPS = 100
SWEEP_STEPS = 1000                   # the threshold sweep runs 10 times longer (is small c slow or stuck?)
MAX_NORM = 1.0                       # c for clipping by norm
MAX_VALUE = 0.5                      # c for clipping by value
THRESHOLDS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)  # c for the sweep
CENSUS_WS = (1.8, 2.0, 2.2, 2.4)     # starts (w, b*(w) − 0.2): 0.2 below the wall, on the shelf
CENSUS_DEPTH = 0.2
CENSUS_LRS = (0.1, 0.2, 0.3, 0.5)
STEEPEST_WS = (0.9, 1.2, 2.0)        # the w's of the steepest-slope comparison (section 6.2)
STEEPEST_TS = (10, 20, 40)
ZOOM = ((1.2, 2.2), (-0.8, 0.2))     # a window around the runs
WIDE = ((0.0, 14.0), (-2.0, 22.0))   # a window that shows where a catapulted run lands


def census_starts(landscape: "RNNCliff | None" = None) -> list[tuple[float, float]]:
    """The starts of the chapter's census: (w, b*(w) − ``CENSUS_DEPTH``) for w in
    ``CENSUS_WS``."""
    J = landscape if landscape is not None else RNNCliff(CHAPTER_T)
    return [(w, float(J.wall_limit(w)) - CENSUS_DEPTH) for w in CENSUS_WS]


# ----------------------------------------------------------------------------------------
# A real network: global-norm clipping on a vanilla RNN trained on the latching task
# ----------------------------------------------------------------------------------------
#: the RNN experiment (section 6.8): the latching task of chapter 7 (course_lib.experiments.long_term) at
#: lag ``lag``, a float64 VanillaRNN with W rescaled to spectral radius ``radius`` at the start,
#: SGD with momentum α through course_lib.train, ``steps`` minibatches of ``batch_size``.
RNN_TASK = dict(lag=20, hidden_size=16, radius=1.0, n_train=2048, n_test=1024, steps=300,
                batch_size=32, momentum=0.9)
RNN_LRS = (0.1, 0.03)          # ε: the chapter's, and a second one, three times smaller
RNN_SEEDS = (0, 1, 2, 3, 4)    # θ₀, data and batch order
RNN_TINY = 0.01                # the far too small threshold, as a fraction of c (run at RNN_LRS[0] only)
RNN_SPIKE = 10.0               # a spike: ‖g‖ above this multiple of the median ‖g‖ of the run
RNN_JUMP = 1.0                 # a loss jump: the minibatch loss rises by more than this in one step


def train_rnn_clipped(lr: float, seed: int, max_norm: float | None = None, **settings) -> dict:
    """Train the RNN of ``RNN_TASK`` on the latching task once, clipped by global norm at
    ``max_norm`` (``None``: not clipped) through :func:`course_lib.train.train`.

    Returns a dict: ``grad_norm`` and ``loss`` (arrays, one entry per step; ‖g‖ before
    clipping, the minibatch loss), ``test_loss`` and ``test_accuracy`` of the final network
    on fresh sequences, and ``radius`` r(W) at the end.
    """
    from course_lib.experiments.long_term import latching_task
    from course_lib.models import VanillaRNN
    from course_lib.optim import SGD
    from course_lib.train import evaluate, train
    from course_lib.utils import single_thread
    s = {**RNN_TASK, **settings}
    _check("lr", lr, lr > 0, "a number > 0")
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    _check("max_norm", max_norm, max_norm is None or max_norm > 0, "None or a number > 0")
    X, y = latching_task(s["lag"], s["n_train"], 1000 + seed)
    Xt, yt = latching_task(s["lag"], s["n_test"], 2000 + seed)
    rnn = VanillaRNN(1, s["hidden_size"], 2, generator=torch.Generator().manual_seed(seed)).double()
    rnn.set_spectral_radius(s["radius"])
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = SGD(rnn.parameters(), lr=lr, momentum=s["momentum"])
    with single_thread():
        hist = train(rnn, loss_fn, opt, (X, y), epochs=10 ** 6, max_steps=s["steps"],
                     batch_size=s["batch_size"], seed=seed, clip_grad_norm=max_norm)
        test = evaluate(rnn, loss_fn, (Xt, yt))
    return {"grad_norm": np.asarray(hist.steps["grad_norm"], dtype=float),
            "loss": np.asarray(hist.steps["loss"], dtype=float),
            "test_loss": float(test["loss"]), "test_accuracy": float(test["accuracy"]),
            "radius": rnn.spectral_radius()}


RNN_TYPICAL_STEPS = 100        # the threshold c: median ‖g‖ of the unclipped runs over these first steps
RNN_LEARNED = 0.9              # a run "learned" the task if its test accuracy exceeds this
RNN_VARIANTS = ("no clipping", "clip at c", "clip at c/100")


def rnn_clipping_experiment(lrs=RNN_LRS, seeds=RNN_SEEDS, tiny_at: float = RNN_LRS[0],
                            **settings) -> dict:
    """For each learning rate ε: train the RNN of ``RNN_TASK`` unclipped with every seed;
    take as threshold c the median ‖g‖ of those runs over their first ``RNN_TYPICAL_STEPS``
    steps (pooled over seeds: the typical norm while learning, Pascanu et al.'s advice); then
    train again clipped by global norm at c, and (for ε = ``tiny_at`` only) at the far too
    small ``RNN_TINY``·c.

    Returns ``{lr: {"threshold": c, "runs": {variant: [run per seed]}}}`` with the variants
    ``RNN_VARIANTS`` and each run a :func:`train_rnn_clipped` dict.
    """
    lrs, seeds = [float(lr) for lr in lrs], [int(s) for s in seeds]
    _check("lrs", lrs, len(lrs) > 0 and all(lr > 0 for lr in lrs), "a non-empty list of numbers > 0")
    _check("seeds", seeds, len(seeds) > 0, "a non-empty list of ints >= 0")
    out = {}
    for lr in lrs:
        plain = [train_rnn_clipped(lr, s, **settings) for s in seeds]
        c = float(np.median([r["grad_norm"][:RNN_TYPICAL_STEPS] for r in plain]))
        out[lr] = {"threshold": c, "runs": {
            RNN_VARIANTS[0]: plain,
            RNN_VARIANTS[1]: [train_rnn_clipped(lr, s, max_norm=c, **settings) for s in seeds]}}
        if lr == tiny_at:  # what a far too small threshold does: once is enough
            out[lr]["runs"][RNN_VARIANTS[2]] = [
                train_rnn_clipped(lr, s, max_norm=RNN_TINY * c, **settings) for s in seeds]
    return out


def rnn_clipping_summary(exp: dict) -> list[dict]:
    """One row per (ε, variant) of :func:`rnn_clipping_experiment`, over the seeds:
    ``lr``, ``variant``, ``threshold`` (None unclipped), ``max_grad`` (median over seeds of the
    largest ‖g‖ of a run), ``spike_ratio`` (median over seeds of largest ‖g‖ / median ‖g‖),
    ``max_rise`` (median over seeds of the largest one-step rise of the minibatch loss),
    ``jumps`` (number of steps, all seeds together, where the loss rose by more than
    ``RNN_JUMP``), ``median_loss`` / ``worst_loss`` (median / largest test loss over seeds),
    ``learned`` (seeds with test accuracy > ``RNN_LEARNED``) and ``seeds``."""
    rows = []
    for lr, e in exp.items():
        for i, (variant, runs) in enumerate(e["runs"].items()):
            rises = [np.diff(r["loss"]) for r in runs]
            rows.append({
                "lr": lr, "variant": variant,
                "threshold": (None, e["threshold"], RNN_TINY * e["threshold"])[i],
                "max_grad": float(np.median([r["grad_norm"].max() for r in runs])),
                "spike_ratio": float(np.median([r["grad_norm"].max() / np.median(r["grad_norm"])
                                                for r in runs])),
                "max_rise": float(np.median([d.max() for d in rises])),
                "jumps": int(sum((d > RNN_JUMP).sum() for d in rises)),
                "median_loss": float(np.median([r["test_loss"] for r in runs])),
                "worst_loss": float(max(r["test_loss"] for r in runs)),
                "learned": int(sum(r["test_accuracy"] > RNN_LEARNED for r in runs)),
                "seeds": len(runs)})
    return rows


def clip_check_on_rnn(max_norm: float = 1.0, radius: float = 3.0, seed: int = 0) -> dict:
    """Our :func:`clip_gradient` against ``torch.nn.utils.clip_grad_norm_`` on the gradient of a
    real network: a float64 RNN of ``RNN_TASK`` with W at spectral radius ``radius`` (> 1:
    large gradients), one minibatch of the latching task.  The network's gradient is a list
    of tensors (W, U, b, V, c); clip_grad_norm_ clips them jointly by their *global* norm,
    ‖g‖ = (Σ_tensors ‖g_k‖²)^½, which is clip_gradient on all of them flattened into one vector.

    Returns ``grad_norm`` (‖g‖ before), ``clipped_norm`` (after), ``max_abs_diff`` (the largest
    difference between the two clipped gradients) and ``per_tensor_angle`` (degrees: the
    largest angle between the global-norm clipped g and g, 0: the direction is kept).
    """
    from course_lib.experiments.long_term import latching_task
    from course_lib.models import VanillaRNN
    X, y = latching_task(RNN_TASK["lag"], RNN_TASK["batch_size"], 3000 + seed)
    rnn = VanillaRNN(1, RNN_TASK["hidden_size"], 2,
                     generator=torch.Generator().manual_seed(seed)).double()
    rnn.set_spectral_radius(radius)
    torch.nn.functional.cross_entropy(rnn(X), y).backward()
    params = list(rnn.parameters())
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    ours = clip_gradient(flat, max_norm=max_norm)
    before = torch.nn.utils.clip_grad_norm_(params, max_norm).item()  # in place; returns ‖g‖
    theirs = torch.cat([p.grad.reshape(-1) for p in params])
    return {"grad_norm": float(before), "clipped_norm": float(theirs.norm()),
            "max_abs_diff": float((ours - theirs).abs().max()),
            "angle": angle_between(flat, theirs)}


def plot_rnn_clipping(exp: dict, lr: float | None = None, seed: int | None = None, axes=None):
    """Left: ‖g‖ per step of one seed at ε = ``lr`` (default: the first), unclipped and clipped
    at c (the dotted line); default seed: the unclipped run with the largest ‖g‖.  Middle:
    the minibatch losses of the same runs.  Right: the final test loss of every seed, per
    variant and ε, with the medians.  Returns the three Axes."""
    import matplotlib.pyplot as plt
    lr = next(iter(exp)) if lr is None else lr
    e = exp[lr]
    plain = e["runs"][RNN_VARIANTS[0]]
    j = int(np.argmax([r["grad_norm"].max() for r in plain])) if seed is None else seed
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    ax, bx, cx = axes
    for k, variant in enumerate(RNN_VARIANTS[:2]):
        r = e["runs"][variant][j]
        t = np.arange(1, len(r["loss"]) + 1)
        ax.semilogy(t, r["grad_norm"], color=f"C{k}", lw=0.9, label=variant)
        bx.plot(t, r["loss"], color=f"C{k}", lw=0.9, label=variant)
    ax.axhline(e["threshold"], color="k", ls=":", lw=1, label=f"c = {e['threshold']:.2g}")
    ax.set(xlabel="step t", ylabel=r"$\|g\|$ before clipping",
           title=f"ε = {lr:g}, seed {RNN_SEEDS[j] if seed is None else seed}: spikes of the gradient norm")
    bx.set(xlabel="step t", ylabel="minibatch loss", title="… and the jumps of the loss they cause")
    ax.legend(fontsize="small")
    bx.legend(fontsize="small")
    for i, (lr_i, e_i) in enumerate(exp.items()):
        for k, variant in enumerate(e_i["runs"]):
            x = 3 * i + k
            losses = [max(r["test_loss"], 1e-8) for r in e_i["runs"][variant]]
            cx.semilogy(np.full(len(losses), x) + np.linspace(-0.15, 0.15, len(losses)), losses,
                        "o", color=f"C{k}", ms=4, alpha=0.7,
                        label=variant if i == 0 else None)
            cx.plot([x - 0.3, x + 0.3], [np.median(losses)] * 2, color="k", lw=2)
    cx.set_xticks([3 * i + 1 for i in range(len(exp))], [f"ε = {lr_i:g}" for lr_i in exp])
    cx.set(ylabel="test loss after training (floored at 1e-8)",
           title="Final loss per seed (bars: medians)")
    cx.legend(fontsize="small")
    return axes


def plot_clip_vectors(g, g_norm, g_value, max_norm: float, max_value: float, ax=None):
    """Section 6.4's figure: the ball ‖g‖ ≤ c and the box |g_i| ≤ c, the direction of g, and
    g clipped by norm and by value (arrows).  Returns the Axes."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    t = np.linspace(0, 2 * np.pi, 200)
    c, v = max_norm, max_value
    g = torch.as_tensor(g, dtype=torch.float64)
    ax.plot(c * np.cos(t), c * np.sin(t), color="tab:blue", lw=0.8, label=rf"$\|g\| \leq {c:g}$")
    ax.plot([-v, v, v, -v, -v], [-v, -v, v, v, -v], color="tab:orange", lw=0.8,
            label=rf"$|g_i| \leq {v:g}$")
    ax.plot([0, 1.4 * g[0] / g.norm()], [0, 1.4 * g[1] / g.norm()], "k--", label="direction of $g$")
    for vec, color, label in [(g_norm, "tab:blue", "clipped by norm"),
                              (g_value, "tab:orange", "clipped by value")]:
        ax.annotate("", xy=torch.as_tensor(vec).tolist(), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=color, lw=2))
        ax.plot([], [], color=color, lw=2, label=label)
    ax.set(xlim=(-1.5, 0.5), ylim=(-1.5, 0.5), aspect="equal", xlabel=r"$g_w$", ylabel=r"$g_b$",
           title=f"Norm clipping keeps the direction;\nvalue clipping turns it by "
                 f"{angle_between(g, g_value):.0f}°")
    ax.legend(loc="upper left", fontsize="small")
    return ax


# ----------------------------------------------------------------------------- the chapter's figures
def plot_cliff(J: RNNCliff, fig=None):
    """Figure of §6.1: the cost's contours with the wall b*(w) (left) and the same cost as a
    surface (right)."""
    import matplotlib.pyplot as plt

    from course_lib.plots import contour, surface3d

    fig = fig or plt.figure(figsize=(12, 4.3))
    w_line = np.linspace(*J.bounds[0], 50)
    ax = fig.add_subplot(1, 2, 1)
    contour(J, ax=ax)
    ax.plot(w_line, J.wall_limit(w_line), "r--", lw=1, label=r"$b^*(w) = \mathrm{artanh}(h_0) - w h_0$")
    ax.set(xlabel="recurrent weight $w$", ylabel="bias $b$",
           title="A straight wall separates a high shelf from a low basin")
    ax.legend(loc="lower left", fontsize="small")
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    surface3d(J, ax=ax3, resolution=120)
    ax3.set(xlabel="$w$", ylabel="$b$", title="The same cost as a surface: a cliff")
    ax3.view_init(elev=30, azim=-120)
    return fig


def plot_wall_growth(J: RNNCliff, ts, slopes, w: float, lengths=(3, 5, 10, 20), axes=None):
    """Figure of §6.2: the cost across the wall along b at weight ``w`` for several sequence
    lengths (left) and the measured gradient norm on the wall against T (``slopes`` from
    :func:`wall_slopes`) with the growth [w(1 − h₀²)]^T (right)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax1, ax2 = axes
    b = np.linspace(-1.0, 0.0, 801)
    for T in lengths:
        ax1.plot(b, RNNCliff(T)(np.stack([np.full_like(b, w), b], axis=-1)).numpy(), label=f"T = {T}")
    ax1.set(xlabel="bias $b$", ylabel=rf"$J(w = {w:g}, b)$", title="The longer the sequence, the sharper the step")
    ax1.legend()
    Ts, slopes = np.asarray(ts), np.asarray(slopes)
    growth = J.wall_growth(w)
    ax2.semilogy(Ts, slopes, "o", label=r"measured $\|\nabla J\|$ on the wall")
    ax2.semilogy(Ts, slopes[-1] * growth ** (Ts - Ts[-1]), "--",
                 label=rf"$\propto [w(1-h_0^2)]^T = {growth:.2g}^T$")
    ax2.set(xlabel="sequence length $T$", ylabel=r"gradient norm on the wall",
            title=f"The slope on the wall grows like ${growth:.2g}^T$")
    ax2.legend()
    return axes


def plot_clipping_runs(J: RNNCliff, runs: dict, zoom, wide, axes=None):
    """Figure of §6.4: the runs of :func:`compare_clipping` near the wall (bounds ``zoom``), in a
    wide view (``wide``), and their costs."""
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_losses, plot_trajectories

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    plot_trajectories(J, runs, ax=axes[0], contour_kw={"bounds": zoom},
                      title="Clipped runs stay on the wall and reach the ravine")
    plot_trajectories(J, runs, ax=axes[1], contour_kw={"bounds": wide},
                      title="The plain run is thrown far out, to a flat region")
    stall = float(runs["no clipping"].losses[-1])
    plot_losses(runs, ax=axes[2], log_y=True, y_label=r"$J(\theta_t)$",
                title=f"Without clipping the loss stalls at {stall:.2g}")
    axes[2].set_ylim(1e-12, 10)
    for ax in axes[:2]:
        ax.set(xlabel="recurrent weight $w$", ylabel="bias $b$")
    return axes


def plot_threshold_sweep(sweep: dict, lr: float, typical: float, axes=None):
    """Figure of §6.5: final cost (left) and longest step with its bound εc (right) against the
    clipping threshold c (``sweep`` from :func:`threshold_sweep`); ``typical`` the median ‖g‖
    before the wall."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    ax1, ax2 = axes
    ax1.loglog(sweep["threshold"], np.maximum(sweep["final_loss"], 1e-16), "o-")
    ax1.axvline(typical, color="gray", ls=":", label=f"median ||g|| before the wall ({typical:.2g})")
    ax1.set(xlabel="clipping threshold $c$", ylabel="final cost $J(\\theta_{100})$ (floored at 1e-16)",
            title="Too small a threshold slows, too large lets the catapult through")
    ax1.legend(fontsize="small")
    ax2.loglog(sweep["threshold"], sweep["max_step"], "o-", label="longest step")
    ax2.loglog(sweep["threshold"], lr * np.asarray(sweep["threshold"]), "--", label=r"bound $\epsilon c$")
    ax2.set(xlabel="clipping threshold $c$", ylabel=r"longest step $\|\theta_{t+1} - \theta_t\|$",
            title=r"The longest step equals $\epsilon c$")
    ax2.legend(fontsize="small")
    return axes
