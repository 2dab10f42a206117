r"""Long-term dependencies: why gradients vanish or explode through many steps (DL book §8.2.5, §10.7).

A recurrent network applies the same map at every step, so its backward pass multiplies the
gradient by (nearly) the same matrix again and again.  Writing W = V diag(λ) V⁻¹,

.. math::

    W^t = V \operatorname{diag}(\lambda)^t V^{-1},

so the component along the eigenvector v_i is scaled by λ_i^t: it explodes when |λ_i| > 1 and
vanishes when |λ_i| < 1.  This module holds the chapter's experiments as functions; the
notebook plots what they return and ``tests/test_ch07_long_term.py`` asserts the same numbers.

==========================================  ==============================================
function                                    what it computes / measures
==========================================  ==============================================
:func:`matrix_with_eigenvalues`,            a matrix with chosen eigenvalues; W^t by the
:func:`eigen_power`, :func:`power_iterates`, eigendecomposition; ‖W^t v‖ along directions;
:func:`power_norms`, :func:`log_slope`,     the per-step rate ln(growth) by a fit; how
:func:`angle_to_direction`,                 W^t x lines up with the top eigenvector
:func:`plot_power_norms`,
:func:`plot_circle_images`
:func:`make_rnn`, :func:`rnn_states`,       ‖∂L/∂h_0‖ of a vanilla RNN (linear or tanh)
:func:`state_gradient_norms`,               against T, measured with autograd; its rate
:func:`rnn_gradient_experiment`,            compared with ln r(W); tanh saturation
:func:`rnn_gradient_rates`,
:func:`mean_tanh_derivative`
:func:`backprop_norms`,                     deep linear feed-forward nets, one matrix shared
:func:`compare_shared_independent`,         by all layers or a new one per layer: the log
:func:`log_norm_step_stats`,                gradient norm as a random walk (Sussillo, 2014)
:func:`power_law_exponent`
:func:`plot_rnn_gradients`,                 the chapter's figures (the widget draws with
:func:`draw_rnn_gradients`,                 :func:`draw_rnn_gradients`)
:func:`plot_depth_comparison`,
:func:`plot_rate_vs_radius`
==========================================  ==============================================

The module-level constants (``EIGENVALUES``, ``RADII``, ``FEEDFORWARD``, …) are the settings
the chapter uses; the notebook and the tests both import them, so the two cannot drift apart.

References: Goodfellow, Bengio & Courville (2016), *Deep Learning*, MIT Press, §8.2.5 and
§10.7; Bengio, Simard & Frasconi (1994), *Learning long-term dependencies with gradient
descent is difficult*, IEEE Trans. Neural Networks 5(2); Pascanu, Mikolov & Bengio (2013),
*On the difficulty of training recurrent neural networks*, ICML; Sussillo (2014), *Random
walks: training very deep nonlinear feed-forward networks with smart initialization*,
arXiv:1412.6558.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from course_lib.models import VanillaRNN
from course_lib.utils import single_thread
from course_lib.utils import shared_result

__all__ = [
    "matrix_with_eigenvalues", "eigen_power", "power_iterates", "power_norms",
    "angle_to_direction", "log_slope", "plot_power_norms", "plot_circle_images",
    "make_rnn", "rnn_states", "state_gradient_norms", "mean_tanh_derivative",
    "RNNGradients", "rnn_gradient_experiment", "rnn_gradient_rates", "plot_rnn_gradients",
    "draw_rnn_gradients",
    "backprop_norms", "log_norm_step_stats", "DepthComparison", "compare_shared_independent",
    "power_law_exponent", "plot_depth_comparison", "plot_rate_vs_radius",
    "LAGS", "LATCH", "latching_task", "latch_gradient_terms", "LatchRun", "train_latching",
    "LatchingExperiment", "latching_experiment", "plot_latching",
]

# ------------------------------------------------------------------------------------------
# The chapter's settings (imported by the notebook and by the tests)
# ------------------------------------------------------------------------------------------
#: W^t: eigenvalues of the 3×3 example (|λ| > 1, = 1, < 1; the sign does not matter), steps
EIGENVALUES = (1.1, 1.0, -0.8)
EIGEN_SEED = 0
POWER_STEPS = 60
#: the 2×2 example whose unit circle we map with W^t
EIGENVALUES_2D = (1.1, 0.6)
EIGEN_SEED_2D = 1  # eigenvectors 61° apart: not orthogonal, yet easy to see
#: the vanilla RNN: spectral radii, sizes, longest T, and the first T of the rate fit
RADII = (0.9, 1.0, 1.1)
RNN = dict(input_size=1, hidden_size=16, batch=16, seed=0)
T_MAX = 60
FIT_FROM = 20
#: deep linear feed-forward nets: width n, depth, number of random nets, seed
FEEDFORWARD = dict(width=32, depth=64, trials=400, seed=0)


# ------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"Invalid {name}: {value!r} (expected an int >= {low})")
    return int(value)


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not value > 0 or not math.isfinite(value):
        raise ValueError(f"Invalid {name}: {value!r} (expected a finite number > 0)")
    return float(value)


def _square(name: str, W) -> torch.Tensor:
    W = torch.as_tensor(W, dtype=torch.float64) if not isinstance(W, torch.Tensor) \
        else W.detach().to(torch.float64)
    if W.ndim != 2 or W.shape[0] != W.shape[1]:
        raise ValueError(f"Invalid {name}: shape {tuple(W.shape)} (expected a square matrix)")
    return W


# ------------------------------------------------------------------------------------------
# Matrix powers: W^t = V diag(λ)^t V⁻¹
# ------------------------------------------------------------------------------------------
def matrix_with_eigenvalues(eigenvalues: Sequence[float], seed: int = EIGEN_SEED):
    r"""A real matrix W = V diag(λ) V⁻¹ with the given real eigenvalues λ and random eigenvectors.

    The columns of V (the eigenvectors v_i) are Gaussian, scaled to unit length and, in
    general, *not* orthogonal (W is not symmetric).  Returns ``(W, V)``, float64 tensors of
    shape (n, n), so that ``W @ V[:, i] == eigenvalues[i] * V[:, i]``.
    """
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64))
    if lam.ndim != 1 or lam.numel() < 1 or not torch.isfinite(lam).all():
        raise ValueError(f"Invalid eigenvalues: {eigenvalues!r} (expected a non-empty list of "
                         "finite real numbers)")
    seed = _check_int("seed", seed, 0)
    n = lam.numel()
    gen = torch.Generator().manual_seed(seed)
    V = torch.randn(n, n, dtype=torch.float64, generator=gen)
    V = V / V.norm(dim=0)  # unit eigenvectors (columns)
    W = V @ torch.diag(lam) @ torch.linalg.inv(V)
    return W, V


def eigen_power(V, eigenvalues: Sequence[float], t: int) -> torch.Tensor:
    r"""W^t computed from the eigendecomposition: V diag(λ)^t V⁻¹ (DL book eq. 8.12)."""
    V = _square("V", V)
    lam = torch.as_tensor(np.asarray(eigenvalues, dtype=np.float64))
    if lam.shape != (V.shape[0],):
        raise ValueError(f"Invalid eigenvalues: {len(lam)} values for a {V.shape[0]}×"
                         f"{V.shape[0]} V")
    t = _check_int("t", t, 0)
    return V @ torch.diag(lam ** t) @ torch.linalg.inv(V)


def power_iterates(W, x, steps: int) -> torch.Tensor:
    """x, Wx, W²x, …, W^steps x by repeated multiplication.

    ``x`` has shape (n,) or (k, n) (k vectors as rows); the result has shape
    (steps + 1, *x.shape), float64.
    """
    W = _square("W", W)
    steps = _check_int("steps", steps, 0)
    x = torch.as_tensor(x, dtype=torch.float64)
    if x.ndim not in (1, 2) or x.shape[-1] != W.shape[0]:
        raise ValueError(f"Invalid x: shape {tuple(x.shape)} (expected ({W.shape[0]},) or "
                         f"(k, {W.shape[0]}))")
    out = [x]
    for _ in range(steps):
        out.append(out[-1] @ W.T)  # rows: W x for each vector x
    return torch.stack(out)


def power_norms(W, x, steps: int) -> np.ndarray:
    """‖W^t x‖ for t = 0, …, steps: shape (steps + 1,) or (steps + 1, k) for k vectors x."""
    return power_iterates(W, x, steps).norm(dim=-1).numpy()


def angle_to_direction(X, v) -> np.ndarray:
    """The angle in degrees (0 to 90) between each row of X (k, n) and the line through v (n,).

    W^t x lines up with the eigenvector of the largest |λ|: this angle goes to 0.
    """
    X = torch.as_tensor(X, dtype=torch.float64)
    v = torch.as_tensor(v, dtype=torch.float64)
    if X.ndim != 2 or v.shape != (X.shape[1],):
        raise ValueError(f"Invalid X, v: shapes {tuple(X.shape)}, {tuple(v.shape)} "
                         "(expected (k, n) and (n,))")
    cos = (X @ v).abs() / (X.norm(dim=1) * v.norm())
    return torch.rad2deg(torch.arccos(cos.clamp(max=1.0))).numpy()


def log_slope(values, start: int = 0, t=None) -> np.ndarray | float:
    r"""The per-step rate a of exponential growth, values ≈ C e^{a t}: least-squares slope of
    ln(values) against t, using the entries from index ``start`` on.

    ``values`` has shape (T,) or (T, k) (one fit per column); ``t`` defaults to 0, 1, …, T−1.
    e^a is the growth factor per step: for ‖W^t v_i‖ it is |λ_i|, for a linear RNN's gradient
    the spectral radius r(W) (so a = ln r(W)).  Returns a float for 1-D input, else an array of k rates.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim not in (1, 2):
        raise ValueError(f"Invalid values: shape {y.shape} (expected (T,) or (T, k))")
    if not (np.isfinite(y).all() and (y > 0).all()):
        raise ValueError("Invalid values: expected finite numbers > 0 (their log is fitted)")
    start = _check_int("start", start, 0)
    t = np.arange(len(y), dtype=np.float64) if t is None else np.asarray(t, dtype=np.float64)
    if t.shape != (len(y),):
        raise ValueError(f"Invalid t: shape {t.shape} (expected ({len(y)},))")
    if len(y) - start < 2:
        raise ValueError(f"Invalid start: {start} leaves {len(y) - start} points (need >= 2)")
    slope = np.polyfit(t[start:], np.log(y[start:]), 1)[0]
    return float(slope) if y.ndim == 1 else slope


def plot_power_norms(eig_norms, x_norms, eigenvalues=EIGENVALUES, ax=None):
    """‖W^t v‖ against t on a log scale: one curve per eigenvector (the columns of
    ``eig_norms``, labelled with ``eigenvalues``) and, dashed, the generic x = (1, 1, 1)
    (``x_norms``), as measured by :func:`power_norms`.  Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    eig_norms = np.asarray(eig_norms)
    t = np.arange(len(eig_norms))
    for lam, col in zip(eigenvalues, eig_norms.T):
        ax.plot(t, col, label=f"eigenvector, λ = {lam:+}")
    ax.plot(t, x_norms, "k--", label="generic x = (1, 1, 1)")
    ax.set_yscale("log")
    ax.set_xlabel("number of multiplications t")
    ax.set_ylabel("‖Wᵗ x‖")
    ax.legend(fontsize="small")
    return ax


def plot_circle_images(images, V, eigenvalues=EIGENVALUES_2D, steps=(0, 2, 5, 10), ax=None):
    """The images W^t(unit circle) of :func:`power_iterates` (``images`` (T + 1, k, 2)) for
    the t in ``steps``, and the eigenvectors (columns of ``V``) as lines through 0, solid for
    the first, dashed for the second.  Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5))
    for t in steps:
        ax.plot(images[t, :, 0], images[t, :, 1], label=f"Wᵗ (unit circle), t = {t}")
    for i, (lam, ls) in enumerate(zip(eigenvalues, ("-", "--"))):
        v = 3 * V[:, i]
        ax.plot([-v[0], v[0]], [-v[1], v[1]], "k" + ls, lw=1, label=f"eigenvector v{i + 1}, λ = {lam}")
    ax.set_aspect("equal")
    ax.set_xlabel("first coordinate")
    ax.set_ylabel("second coordinate")
    ax.legend(fontsize="small", loc="lower right")
    return ax


# ------------------------------------------------------------------------------------------
# A vanilla RNN: ‖∂L/∂h_0‖ against T
# ------------------------------------------------------------------------------------------
_ACTIVATIONS = ("tanh", "linear")


def _check_activation(activation: str) -> str:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"Invalid activation: {activation!r} (expected one of {_ACTIVATIONS})")
    return activation


def make_rnn(radius: float, input_size: int = RNN["input_size"],
             hidden_size: int = RNN["hidden_size"], batch: int = RNN["batch"],
             steps: int = T_MAX, seed: int = RNN["seed"]):
    """A float64 :class:`~course_lib.models.VanillaRNN` with spectral radius r(W) = ``radius``
    and one output, and a batch of inputs x ~ N(0, 1) of shape (batch, steps, input_size).

    The same ``seed`` gives the same W up to its scale for every ``radius`` (and the same x),
    so that a comparison across r(W) changes nothing else.  Returns ``(rnn, x)``.
    """
    radius = _check_positive("radius", radius)
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("batch", batch), ("steps", steps)):
        _check_int(name, value, 1)
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    rnn = VanillaRNN(input_size, hidden_size, out_features=1, generator=gen).double()
    rnn.set_spectral_radius(radius)
    x = torch.randn(batch, steps, input_size, dtype=torch.float64, generator=gen)
    return rnn, x


def rnn_states(rnn: VanillaRNN, x: torch.Tensor, h0: torch.Tensor | None = None,
               activation: str = "tanh") -> list[torch.Tensor]:
    r"""[h_0, h_1, …, h_T] of the RNN on x (N, T, input_size).

    ``"tanh"`` is the model's own recurrence h_t = tanh(W h_{t−1} + U x_t + b); ``"linear"``
    drops the tanh, h_t = W h_{t−1} + U x_t + b, whose Jacobian ∂h_t/∂h_{t−1} = W is the
    same at every step, so ∂h_T/∂h_0 = W^T exactly.
    """
    if _check_activation(activation) == "tanh":
        return rnn.states(x, h0)
    h = x.new_zeros(x.shape[0], rnn.W.shape[0]) if h0 is None else h0  # (N, H)
    hs = [h]
    for t in range(x.shape[1]):
        h = h @ rnn.W.T + x[:, t] @ rnn.U.T + rnn.b
        hs.append(h)
    return hs


def state_gradient_norms(rnn: VanillaRNN, x: torch.Tensor, activation: str = "tanh") -> np.ndarray:
    r"""‖∂L_T/∂h_0‖ for T = 1, …, x.shape[1], per sequence, measured with autograd.

    The loss at step T is the linear read-out L_T = Σ_n V h_T^{(n)} (summed over the N
    sequences of the batch), so ∂L_T/∂h_T = Vᵀ is the same for every T and every change
    with T comes from the T Jacobians:

    .. math::

        \frac{\partial L_T}{\partial h_0} = J_1^\top J_2^\top \cdots J_T^\top V^\top,
        \qquad J_t = \frac{\partial h_t}{\partial h_{t-1}}
        = \operatorname{diag}(1 - h_t^2)\, W \ \text{(tanh)}, \quad = W \ \text{(linear)}.

    Returns an array of shape (T, N): row T−1 holds the N norms for horizon T.
    """
    if rnn.V is None:
        raise ValueError("Invalid rnn: it needs a read-out (out_features) to define the loss")
    if x.ndim != 3 or x.shape[2] != rnn.U.shape[1]:
        raise ValueError(f"Invalid x: shape {tuple(x.shape)} (expected (N, T, "
                         f"{rnn.U.shape[1]}))")
    h0 = x.new_zeros(x.shape[0], rnn.W.shape[0]).requires_grad_(True)
    hs = rnn_states(rnn, x, h0, activation)
    norms = []
    for T in range(1, len(hs)):
        loss = (hs[T] @ rnn.V.T).sum()
        (g0,) = torch.autograd.grad(loss, h0, retain_graph=True)  # (N, H): one row per sequence
        norms.append(g0.norm(dim=1))
    return torch.stack(norms).detach().numpy()


@torch.no_grad()
def mean_tanh_derivative(rnn: VanillaRNN, x: torch.Tensor, start: int = FIT_FROM) -> float:
    """The average of tanh′(a_t) = 1 − h_t² over units, sequences and steps t > ``start``.

    1 means the units work in their linear range; near 0 they are saturated and each
    Jacobian diag(1 − h_t²) W shrinks the gradient.
    """
    start = _check_int("start", start, 0)
    hs = rnn.states(x)
    if start >= len(hs) - 1:
        raise ValueError(f"Invalid start: {start} (the sequences have {len(hs) - 1} steps)")
    s = torch.stack([1 - h ** 2 for h in hs[start + 1:]])
    return s.mean().item()


class RNNGradients(NamedTuple):
    """One measurement of ‖∂L_T/∂h_0‖ against T."""
    radius: float         #: the spectral radius r(W)
    activation: str       #: "linear" or "tanh"
    T: np.ndarray         #: horizons 1, …, T_max
    norms: np.ndarray     #: (T_max, N): ‖∂L_T/∂h_0‖ per sequence
    rate: float           #: fitted slope of the mean ln-norm per step, for T ≥ fit_from
    mean_derivative: float  #: mean tanh′ = 1 − h² (1.0 for the linear RNN)

    @property
    def log_radius(self) -> float:
        """ln r(W), the rate a linear RNN's gradient has."""
        return math.log(self.radius)


def rnn_gradient_experiment(radius: float, activation: str = "tanh", steps: int = T_MAX,
                            fit_from: int = FIT_FROM, **rnn_kw) -> RNNGradients:
    """Build the RNN of :func:`make_rnn` with spectral radius r(W) = ``radius``, measure
    ‖∂L_T/∂h_0‖ for T = 1..``steps`` and fit its rate of growth (per step, natural log)
    from T = ``fit_from`` on (the first steps are a transient: the other eigenvalues
    have not died out yet)."""
    _check_activation(activation)
    steps = _check_int("steps", steps, 3)
    fit_from = _check_int("fit_from", fit_from, 1)
    if fit_from > steps - 2:
        raise ValueError(f"Invalid fit_from: {fit_from} (expected <= steps - 2 = {steps - 2})")
    rnn, x = make_rnn(radius, steps=steps, **rnn_kw)
    norms = state_gradient_norms(rnn, x, activation)
    T = np.arange(1, steps + 1)
    rate = float(np.mean(log_slope(norms, start=fit_from - 1, t=T)))  # = slope of mean ln-norm
    s = mean_tanh_derivative(rnn, x, fit_from) if activation == "tanh" else 1.0
    return RNNGradients(float(radius), activation, T, norms, rate, s)


@shared_result
def rnn_gradient_rates(radii: Sequence[float] = RADII, activations=_ACTIVATIONS,
                       **kw) -> dict[tuple[float, str], RNNGradients]:
    """:func:`rnn_gradient_experiment` for every (r(W), activation): the chapter's main table."""
    return {(r, act): rnn_gradient_experiment(r, act, **kw)
            for r in radii for act in activations}


def plot_rnn_gradients(results: Sequence[RNNGradients], ax=None, reference: bool = True):
    """The geometric mean over sequences of ‖∂L_T/∂h_0‖ against T, on a log scale, one curve
    per measurement; with ``reference``, the line r(W)^T (scaled to the curve at T = 1) that a
    linear RNN follows.  Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, r in enumerate(results):
        c = colors[i % len(colors)]
        geo = np.exp(np.log(r.norms).mean(axis=1))
        ls = "-" if r.activation == "linear" else "--"
        ax.plot(r.T, geo, ls, color=c,
                label=f"{r.activation}, r(W) = {r.radius:.3g}: rate {r.rate:+.3f} / step")
        if reference:
            ax.plot(r.T, geo[0] * r.radius ** (r.T - 1.0), ":", color=c, lw=1, alpha=0.7)
    ax.set_yscale("log")
    ax.set_xlabel("horizon T (time steps between h₀ and the loss)")
    ax.set_ylabel("‖∂L/∂h₀‖ (geometric mean over sequences)")
    ax.legend(fontsize="small")
    return ax


def draw_rnn_gradients(radius: float = 1.1, T: int = T_MAX):
    """The widget's figure: linear and tanh RNN with spectral radius r(W) = ``radius``, horizons up to
    ``T``; the title gives the two measured growth factors per step.  Returns the results."""
    fit_from = min(FIT_FROM, max(1, T // 3))
    runs = [rnn_gradient_experiment(radius, act, steps=T, fit_from=fit_from)
            for act in ("linear", "tanh")]
    ax = plot_rnn_gradients(runs)
    lin, tanh = runs
    ax.set_title(f"r(W) = {radius:.3g}: linear ×{math.exp(lin.rate):.3g} per step (r(W)), "
                 f"tanh ×{math.exp(tanh.rate):.3g} per step")
    return runs


# ------------------------------------------------------------------------------------------
# Deep feed-forward nets: one matrix shared by every layer, or a new one per layer
# ------------------------------------------------------------------------------------------
def _backprop(width: int, depth: int, trials: int, shared: bool, scale: float, seed: int):
    """log₁₀ norms as in :func:`backprop_norms`, and the first layer's matrices (trials, n, n)."""
    n = _check_int("width", width, 1)
    depth = _check_int("depth", depth, 1)
    trials = _check_int("trials", trials, 1)
    scale = _check_positive("scale", scale)
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    std = scale / math.sqrt(n)
    u = torch.randn(trials, n, dtype=torch.float64, generator=gen)
    u = u / u.norm(dim=1, keepdim=True)
    h = torch.randn(trials, n, dtype=torch.float64, generator=gen).requires_grad_(True)
    hs = [h]
    with single_thread():
        W = W_first = None
        for _ in range(depth):  # `trials` networks at once: h (trials, n), W (trials, n, n)
            if W is None or not shared:  # shared: draw once and reuse in every layer
                W = torch.randn(trials, n, n, dtype=torch.float64, generator=gen) * std
                W_first = W if W_first is None else W_first
            hs.append(torch.bmm(W, hs[-1].unsqueeze(-1)).squeeze(-1))
        loss = (hs[-1] * u).sum()
        grads = torch.autograd.grad(loss, hs)  # ∂L/∂h_l for l = 0..depth
    norms = torch.stack([g.norm(dim=1) for g in reversed(grads)], dim=1)  # column d: d layers
    return norms.log10().numpy(), W_first


def backprop_norms(width: int = FEEDFORWARD["width"], depth: int = FEEDFORWARD["depth"],
                   trials: int = FEEDFORWARD["trials"], shared: bool = False,
                   scale: float = 1.0, seed: int = FEEDFORWARD["seed"]) -> np.ndarray:
    r"""log₁₀ of the gradient norm after back-propagating through d = 0, 1, …, depth layers of
    random deep linear networks, measured with autograd.

    Each of ``trials`` networks maps h_0 → h_1 → … → h_depth with h_l = W_l h_{l−1}, W_l
    (n × n, n = ``width``) with entries N(0, scale²/n), so that E‖W_l z‖² = scale²‖z‖²; the
    loss is L = uᵀ h_depth with a random unit vector u.  With ``shared=True`` all layers use
    the same matrix, W_l = W, as a recurrent net unrolled in time does; otherwise each layer
    draws its own.  ∂L/∂h_{depth−d} = W_{depth−d+1}ᵀ ⋯ W_depthᵀ u, so entry [k, d] is
    log₁₀‖∂L/∂h_{depth−d}‖ of network k (entry [k, 0] is log₁₀‖u‖ = 0).

    Returns an array of shape (trials, depth + 1).
    """
    return _backprop(width, depth, trials, shared, scale, seed)[0]


def log_norm_step_stats(width: int, scale: float = 1.0) -> tuple[float, float]:
    r"""Mean and standard deviation of ln(‖W z‖/‖z‖) for one random layer W (entries
    N(0, scale²/n)) and any fixed z ≠ 0, in closed form.

    ‖Wz‖²/‖z‖² = scale²·χ²_n / n whatever z is (rotation invariance), and
    E ln χ²_n = ψ(n/2) + ln 2, Var ln χ²_n = ψ′(n/2) (ψ the digamma function), so

    .. math::

        \mathbb E \ln\frac{\|Wz\|}{\|z\|} = \ln s + \tfrac12\big(\psi(n/2) + \ln(2/n)\big),
        \qquad \operatorname{sd} = \tfrac12\sqrt{\psi'(n/2)} .

    With a new W per layer these steps are independent: ln‖∂L/∂h‖ is a random walk whose
    mean moves by the first number per layer and whose spread grows like √depth.
    """
    n = _check_int("width", width, 1)
    scale = _check_positive("scale", scale)
    half_n = torch.tensor(n / 2, dtype=torch.float64)
    mean = math.log(scale) + 0.5 * (torch.special.digamma(half_n).item() + math.log(2 / n))
    sd = 0.5 * math.sqrt(torch.special.polygamma(1, half_n).item())
    return mean, sd


def power_law_exponent(x, y) -> float:
    """The slope of ln y against ln x (least squares): y ∝ x^slope."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2 or (x <= 0).any() or (y <= 0).any():
        raise ValueError("Invalid x, y: expected two 1-D arrays of the same length >= 2, "
                         "entries > 0")
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


class DepthComparison(NamedTuple):
    """log₁₀ gradient norms through depth, for shared and independent weights."""
    depths: np.ndarray        #: 0, 1, …, depth
    shared: np.ndarray        #: (trials, depth + 1) from :func:`backprop_norms` (shared=True)
    independent: np.ndarray   #: (trials, depth + 1), a new matrix per layer
    shared_radius: np.ndarray  #: (trials,) the spectral radius r(W) of each shared matrix
    width: int                #: n, the width of every layer

    def _get(self, which: str) -> np.ndarray:
        if which not in ("shared", "independent"):
            raise ValueError(f"Invalid which: {which!r} (expected 'shared' or 'independent')")
        return getattr(self, which)

    def mean(self, which: str) -> np.ndarray:
        """The mean over networks of log₁₀‖∂L/∂h‖ at each depth."""
        return self._get(which).mean(axis=0)

    def std(self, which: str) -> np.ndarray:
        """The spread (standard deviation over networks) of log₁₀‖∂L/∂h‖ at each depth."""
        return self._get(which).std(axis=0)

    def fraction_within(self, which: str, decades: float = 1.0) -> float:
        """The fraction of networks whose gradient at the full depth is within a factor
        10^decades of where it started (|log₁₀ ratio| ≤ decades)."""
        return float((np.abs(self._get(which)[:, -1]) <= decades).mean())

    def spread_exponent(self, which: str, from_depth: int = 4) -> float:
        """How the spread grows with depth: std ∝ depth^exponent (0.5 for a random walk,
        1 when every layer multiplies by the same random factor)."""
        d = self.depths[from_depth:]
        return power_law_exponent(d, self.std(which)[from_depth:])

    def rate_vs_radius(self, from_depth: int = 32) -> tuple[np.ndarray, np.ndarray]:
        """Per shared network: its measured growth rate (slope of ln‖∂L/∂h‖ per layer, from
        ``from_depth`` on) and ln r(W).  The two agree: each shared net has its own rate."""
        rates = log_slope(10.0 ** self.shared.T, start=from_depth)  # one fit per network
        return rates, np.log(self.shared_radius)


@shared_result
def compare_shared_independent(**kw) -> DepthComparison:
    """:func:`backprop_norms` with ``shared=True`` and ``shared=False``, same settings
    (keywords as for :func:`backprop_norms`), and r(W) of every shared matrix."""
    kw = {**FEEDFORWARD, "scale": 1.0, **kw}
    shared, W = _backprop(shared=True, **kw)
    independent, _ = _backprop(shared=False, **kw)
    radius = torch.linalg.eigvals(W).abs().amax(dim=-1).numpy()
    return DepthComparison(np.arange(shared.shape[1]), shared, independent, radius, kw["width"])


def plot_rate_vs_radius(cmp: DepthComparison, ax=None):
    """Per shared-weight network: the measured growth rate of ln‖∂L/∂h‖ per layer against
    ln r(W) (:meth:`DepthComparison.rate_vs_radius`), with the diagonal rate = ln r(W) dotted.
    Returns the Axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    rates, log_radius = cmp.rate_vs_radius()
    ax.scatter(log_radius, rates, s=10)
    lim = [log_radius.min(), log_radius.max()]
    ax.plot(lim, lim, "k:", label="rate = ln r(W)")
    ax.set_xlabel("ln r(W) of the shared matrix")
    ax.set_ylabel("measured rate of ln‖∂L/∂h‖ per layer")
    ax.legend()
    return ax


def plot_depth_comparison(cmp: DepthComparison, axes=None):
    """Left: mean ± one standard deviation of log₁₀‖∂L/∂h‖ over the networks against depth,
    with the random-walk prediction for independent layers.  Right: the spread against
    depth on log-log axes.  Returns the two Axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4))
    ax, bx = axes
    d = cmp.depths
    m, sd = log_norm_step_stats(cmp.width)
    for which, label in (("shared", "one matrix shared by all layers"),
                         ("independent", "a new matrix per layer")):
        mu, s = cmp.mean(which), cmp.std(which)
        (line,) = ax.plot(d, mu, label=f"{label}: mean")
        ax.fill_between(d, mu - s, mu + s, color=line.get_color(), alpha=0.2,
                        label=f"{label}: ± 1 sd")
        bx.loglog(d[1:], s[1:], "o", ms=3, color=line.get_color(), label=label)
    ln10 = math.log(10)
    ax.plot(d, d * m / ln10, "k:", lw=1.2, label="random walk (theory): mean ± sd")
    ax.plot(d, d * m / ln10 + np.sqrt(d) * sd / ln10, "k:", lw=0.8)
    ax.plot(d, d * m / ln10 - np.sqrt(d) * sd / ln10, "k:", lw=0.8)
    bx.loglog(d[1:], np.sqrt(d[1:]) * sd / ln10, "k:", label="∝ √depth (theory)")
    ax.set_xlabel("layers back-propagated through")
    ax.set_ylabel("log₁₀ ‖∂L/∂h‖ (start: 0)")
    ax.legend(fontsize="x-small")
    bx.set_xlabel("layers back-propagated through")
    bx.set_ylabel("sd of log₁₀ ‖∂L/∂h‖ over networks")
    bx.legend(fontsize="small")
    return ax, bx


# ------------------------------------------------------------------------------------------
# Learning across a lag: a vanilla RNN trained to remember its first input
# ------------------------------------------------------------------------------------------
#: the lags of the learning experiment (steps between the informative input and the loss)
LAGS = (5, 10, 20, 50, 100)
#: its settings: RNN width, noise of the distractor inputs, data sizes, the training budget
#: (SGD with momentum through course_lib.train, float64), and the seeds (model and data)
LATCH = dict(hidden_size=16, noise=0.5, n_train=2048, n_test=1024, steps=150, batch_size=32,
             lr=0.1, momentum=0.9, seeds=(0, 1, 2))


def latching_task(lag: int, n: int, seed: int, noise: float = LATCH["noise"]):
    r"""The "remember the first input" task (a one-symbol copy task, the latching problem of
    Bengio, Simard & Frasconi, 1994): sequences of ``lag`` scalar inputs; x_1 = ±1 carries
    the label y ∈ {0, 1} (x_1 = 2y − 1), x_2, …, x_lag ~ N(0, noise²) are distractors.  The
    network reads its output after the last input, so the information sits ``lag`` steps
    before the loss.  Chance is 1/2.  Returns float64 ``(X (n, lag, 1), y (n,))``."""
    lag, n = _check_int("lag", lag, 1), _check_int("n", n, 1)
    noise = float(noise)
    if not (noise >= 0 and math.isfinite(noise)):
        raise ValueError(f"Invalid noise: {noise!r} (expected a finite number >= 0)")
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    y = torch.randint(0, 2, (n,), generator=gen)
    X = noise * torch.randn(n, lag, 1, dtype=torch.float64, generator=gen)
    X[:, 0, 0] = 2.0 * y - 1.0
    return X, y


def latch_gradient_terms(rnn: VanillaRNN, X: torch.Tensor, y: torch.Tensor):
    r"""Where the gradient of the cross-entropy L (mean over the batch) comes from in time.

    Returns ``(state_norms, input_terms)``, two arrays of length T = lag:

    - ``state_norms[t-1]`` = ‖∂L/∂h_t‖ (Frobenius norm over the batch), t = 1..T: how much of
      the error signal that enters at h_T is still there t steps from the start;
    - ``input_terms[t-1]`` = ‖e_t x_tᵀ‖ with e_t = ∂L/∂a_t = (1 − h_t²) ⊙ ∂L/∂h_t: the
      contribution of step t to ∂L/∂U (∂L/∂U = Σ_t e_t x_tᵀ).  Only the term of t = 1 carries
      the label; the others are driven by the distractors.
    """
    if rnn.V is None:
        raise ValueError("Invalid rnn: it needs a read-out (out_features) to define the loss")
    with single_thread():
        hs = rnn.states(X)
        loss = torch.nn.functional.cross_entropy(hs[-1] @ rnn.V.T + rnn.c, y)
        grads = torch.stack(torch.autograd.grad(loss, hs[1:]))  # (T, N, H): ∂L/∂h_t
        delta = (1 - torch.stack(hs[1:]).detach() ** 2) * grads    # (T, N, H): ∂L/∂a_t
        terms = torch.einsum("tnh,nti->thi", delta, X)              # (T, H, input): e_t x_tᵀ
        state_norms = grads.flatten(1).norm(dim=1).numpy()
        input_terms = terms.flatten(1).norm(dim=1).numpy()
    return state_norms, input_terms


class LatchRun(NamedTuple):
    """One trained RNN on the latching task."""
    lag: int
    seed: int
    accuracy: float          #: on fresh test sequences (chance: 0.5)
    train_loss: np.ndarray   #: the loss of every training step
    initial: tuple           #: :func:`latch_gradient_terms` of the initial network, on the test set
    trained: tuple           #: the same for the trained network

    @staticmethod
    def far_to_near(terms) -> float:
        """‖term of step 1‖ / ‖term of step T‖: the far-back term against the most recent one."""
        return float(terms[0] / terms[-1])


def train_latching(lag: int, seed: int, **settings) -> LatchRun:
    """Train a float64 :class:`~course_lib.models.VanillaRNN` (one input, 2 outputs) on
    :func:`latching_task` with ``lag`` through :func:`course_lib.train.train` (SGD with
    momentum, cross-entropy, the budget of ``LATCH``); ``seed`` draws θ₀, the data and the
    batch order.  Measures test accuracy and :func:`latch_gradient_terms` before and after."""
    from course_lib.optim import SGD
    from course_lib.train import evaluate, train
    s = {**LATCH, **settings}
    seed = _check_int("seed", seed, 0)
    X, y = latching_task(lag, s["n_train"], 1000 + seed, s["noise"])
    Xt, yt = latching_task(lag, s["n_test"], 2000 + seed, s["noise"])
    rnn = VanillaRNN(1, s["hidden_size"], 2, generator=torch.Generator().manual_seed(seed)).double()
    initial = latch_gradient_terms(rnn, Xt, yt)
    loss_fn = torch.nn.CrossEntropyLoss()
    opt = SGD(rnn.parameters(), lr=s["lr"], momentum=s["momentum"])
    with single_thread():
        hist = train(rnn, loss_fn, opt, (X, y), epochs=10 ** 6, max_steps=s["steps"],
                     batch_size=s["batch_size"], seed=seed)
        acc = evaluate(rnn, loss_fn, (Xt, yt))["accuracy"]
    losses = np.asarray(hist.steps["loss"], dtype=np.float64)
    return LatchRun(int(lag), seed, float(acc), losses, initial, latch_gradient_terms(rnn, Xt, yt))


class LatchingExperiment(NamedTuple):
    """:func:`train_latching` for every lag and seed: ``runs[i][j]`` is lag i, seed j."""
    lags: tuple
    seeds: tuple
    runs: list

    def accuracy(self) -> np.ndarray:
        """(lags, seeds) test accuracies."""
        return np.array([[r.accuracy for r in row] for row in self.runs])

    def median_accuracy(self) -> np.ndarray:
        return np.median(self.accuracy(), axis=1)

    def successes(self, threshold: float = 0.9) -> np.ndarray:
        """Per lag, the number of seeds whose test accuracy exceeds ``threshold``."""
        return (self.accuracy() > threshold).sum(axis=1)

    def median_far_to_near(self, which: str = "initial", kind: int = 0) -> np.ndarray:
        """Per lag, the median over seeds of ‖term at step 1‖/‖term at step T‖ of the
        ``initial`` or ``trained`` net; ``kind`` 0: ‖∂L/∂h_t‖, 1: the ∂L/∂U terms."""
        return np.array([np.median([LatchRun.far_to_near(getattr(r, which)[kind]) for r in row])
                         for row in self.runs])


@shared_result
def latching_experiment(lags: Sequence[int] = LAGS, seeds: Sequence[int] = LATCH["seeds"],
                        **settings) -> LatchingExperiment:
    """The chapter's learning experiment: a vanilla RNN trained on the latching task at every
    lag, with every seed, on the same budget."""
    runs = [[train_latching(lag, seed, **settings) for seed in seeds] for lag in lags]
    return LatchingExperiment(tuple(lags), tuple(seeds), runs)


def plot_latching(exp: LatchingExperiment, axes=None):
    """Left: test accuracy against lag (each seed, and the median) with chance at 1/2.
    Right: ‖∂L/∂h_t‖ against the distance T − t from the loss, for the longest lag, initial
    and trained net of every seed (normalised by the value at t = T).  Returns the two Axes."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    ax, bx = axes
    acc = exp.accuracy()
    for j, seed in enumerate(exp.seeds):
        ax.plot(exp.lags, acc[:, j], "o", color="0.6", ms=4, label="one seed" if j == 0 else None)
    ax.plot(exp.lags, np.median(acc, axis=1), "k-", lw=2, label=f"median of {len(exp.seeds)} seeds")
    ax.axhline(0.5, color="C3", ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("lag T (steps between the informative input and the loss)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize="small")
    for which, ls in (("initial", "--"), ("trained", "-")):
        for j, r in enumerate(exp.runs[-1]):
            s = getattr(r, which)[0]
            dist = np.arange(len(s))[::-1]  # T − t for t = 1..T
            bx.semilogy(dist, s / s[-1], ls, color=f"C{j}", lw=1,
                        label=f"{which}, seed {r.seed}")
    bx.set_xlabel("distance T − t from the loss (steps)")
    bx.set_ylabel("‖∂L/∂h_t‖ / ‖∂L/∂h_T‖")
    bx.legend(fontsize="x-small", ncol=2)
    return ax, bx
