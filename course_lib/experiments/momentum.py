r"""Momentum and Nesterov's accelerated gradient (Deep Learning book §8.3.2–8.3.3): the
experiments of chapter 10.

The heavy ball (Polyak, 1964) keeps a *velocity* v, an exponentially decaying sum of past
gradients; Nesterov's method (1983; in this form Sutskever et al., 2013) evaluates the
gradient after a look-ahead step along v:

.. math::

    \text{heavy ball:}\quad v \leftarrow \alpha v - \epsilon \nabla J(\theta), \qquad
    \text{Nesterov:}\quad v \leftarrow \alpha v - \epsilon \nabla J(\theta + \alpha v), \qquad
    \theta \leftarrow \theta + v .

torch (and :class:`course_lib.optim.SGD`) writes the same methods with a buffer
b ← αb + g, θ ← θ − εb, and for Nesterov θ ← θ − ε(g + αb) on the look-ahead point
φ = θ + αv.  This module holds both forms as small reference functions, and the measurements
of the chapter:

================================  ========================================================
function                          what it does or measures
================================  ========================================================
:func:`canyon`                    the 2-D ill-conditioned quadratic of the chapter (λ_max = 1)
:func:`velocity_form_path`        the lecture form (v ← αv − ε∇J(θ [+ αv]); θ ← θ + v)
:func:`buffer_form_path`          torch's form (b ← αb + g; θ ← θ − εb or θ − ε(g + αb))
:func:`compare_forms`             both forms, course_lib.optim.SGD and torch.optim.SGD
:func:`terminal_velocity`         step length under a constant gradient → ε‖g‖/(1 − α)
:func:`convergence_factor`        r per step on a quadratic: the spectral radius of the iteration matrix
:func:`tuned_hyperparameters`     ε and α of the tuned GD, heavy ball and Nesterov
:func:`conjugate_gradient`        conjugate gradients for H x = b (Hestenes & Stiefel, 1952)
:func:`steps_to_accuracy`         steps until ‖θ_t − θ*‖ ≤ tol·‖θ₀ − θ*‖, any method
:func:`rate_sweep`                those steps on quadratics of growing κ (≈ κ against ≈ √κ)
:func:`explorer_figure`           the figure of the chapter's widget (α, ε, κ → paths)
:func:`iteration_matrix`          the 2×2 matrix M_λ that advances one eigen-mode
:func:`mode_factors`              each mode's contraction factor r(M_λ), its spectral radius
:func:`mode_regimes`              each mode monotone, oscillating or sign-flipping
:func:`mode_errors`               each mode's measured |e_t|
:func:`modes_figure`              the eigen-mode widget (α, ε, κ → r(M_λ) and |e_t|)
================================  ========================================================

The chapter's settings are module constants (``FIG85``, ``TERMINAL_ALPHAS``, ``RATE_KAPPAS``,
…), so the notebook and ``tests/test_ch10_momentum.py`` run the same experiments.

References: Goodfellow, Bengio & Courville (2016), *Deep Learning*, §8.3.2–8.3.3 and
Figure 8.5; Polyak (1964), *Some methods of speeding up the convergence of iteration
methods*, USSR Comput. Math. & Math. Phys. 4(5); Nesterov (1983), *A method for solving the
convex programming problem with convergence rate O(1/k²)*, Soviet Math. Dokl. 27;
Sutskever, Martens, Dahl & Hinton (2013), *On the importance of initialization and momentum
in deep learning*, ICML; Hestenes & Stiefel (1952), *Methods of conjugate gradients for
solving linear systems*, J. Res. NBS 49(6); Nocedal & Wright (2006), *Numerical
Optimization*, §5.1; Goh (2017), *Why momentum really works*, Distill.
"""
from __future__ import annotations

import math
from typing import Callable, Iterator, NamedTuple

import numpy as np
import torch

from course_lib.landscapes import Landscape, Quadratic, run_optimizer
from course_lib.optim import SGD
from course_lib.utils import shared_result

__all__ = [
    "FIG85", "FORMS", "TERMINAL_ALPHAS", "TERMINAL_STEPS", "HEATMAP_KAPPA", "HEATMAP_ALPHAS",
    "HEATMAP_LRS", "EXPLORER", "RATE_KAPPAS", "RATE_DIM", "RATE_TOL", "RATE_SPECTRUM", "METHODS",
    "METHOD_LABELS",
    "canyon", "LinearSlope", "VelocityPath", "velocity_form_path", "buffer_form_path",
    "FormComparison", "compare_forms", "TerminalVelocity", "terminal_velocity",
    "convergence_factor", "tuned_hyperparameters", "spectrum", "CGResult",
    "conjugate_gradient", "error_norms", "steps_to_accuracy", "RateSweep", "rate_sweep",
    "explorer_figure", "FINE_LRS", "FINE_ALPHAS", "plot_tuning_grid", "plot_beyond_quadratics",
    "plot_effective_step", "TUNINGS", "GRID", "LESSARD", "NET", "TuningGrid", "tuning_grid",
    "lessard_grad", "lessard_value", "BeyondQuadratics", "beyond_quadratics",
    "EffectiveStepRuns", "effective_step_experiment",
    "MODES", "REGIMES", "REGIME_COLORS", "iteration_matrix", "mode_factors", "mode_regimes",
    "mode_errors", "ModeAnalysis", "mode_analysis", "plot_mode_factors", "plot_mode_errors",
    "modes_figure", "plot_terminal_velocity", "plot_factor_map", "plot_rate_sweep",
]

# ---- the chapter's settings (notebook and tests import these) ---------------------------
#: the book's Figure 8.5: GD and heavy ball with the same ε on a narrow canyon (λ_max = 1)
FIG85 = dict(condition_number=50.0, angle=-0.2, lr=1.7, momentum=0.5, steps=30)
#: the two update forms are compared here, heavy ball and Nesterov
FORMS = dict(lr=0.5, momentum=0.9, steps=200)
TERMINAL_ALPHAS = (0.0, 0.5, 0.9, 0.99)  #: α of the constant-gradient runs
TERMINAL_STEPS = 1000                    #: their length: α^T ≤ 0.99¹⁰⁰⁰ ≈ 4·10⁻⁵
#: the map of the heavy ball's convergence factor r over (α, ε) for one κ (λ_max = 1)
HEATMAP_KAPPA = 100.0
HEATMAP_ALPHAS = np.linspace(0.0, 0.99, 199)
HEATMAP_LRS = np.linspace(0.01, 4.0, 200)
#: the sweep: condition numbers, dimension, accuracy and spectrum of its quadratics
RATE_KAPPAS = (10, 30, 100, 300, 1000, 3000, 10000)
RATE_DIM = 1000
RATE_TOL = 1e-6
RATE_SPECTRUM = "chebyshev"
#: the widget's start values
EXPLORER = dict(condition_number=100.0, lr=1.0, momentum=0.7, steps=60)
#: the eigen-mode widget's start values: the canyon in ``dim`` dimensions (eigenvalues evenly
#: spaced in [1/κ, 1]), ``points`` values of λ for the curves r(M_λ)
MODES = dict(condition_number=100.0, lr=1.0, momentum=0.7, steps=100, dim=3, points=400)
METHODS = ("gd", "heavy_ball", "nesterov", "cg")
METHOD_LABELS = {"gd": "gradient descent", "heavy_ball": "heavy ball (Polyak)",
                 "nesterov": "Nesterov", "cg": "conjugate gradients",
                 "nesterov_quadratic": "Nesterov, quadratic-optimal"}
#: every tuning :func:`tuned_hyperparameters` knows (METHODS plus Nesterov's best on quadratics)
TUNINGS = METHODS + ("nesterov_quadratic",)
#: the measured tuning grid: steps to TOL on a Chebyshev spectrum of κ = 100, n eigenvalues
GRID = dict(condition_number=100.0, dim=50, tol=1e-6, max_steps=400,
            lrs=np.round(np.linspace(0.1, 4.0, 40), 6), alphas=np.round(np.linspace(0.0, 0.95, 39), 6))
#: the fine (ε, α) grid on which r is minimised by brute force (κ = HEATMAP_KAPPA, λ_max = 1)
FINE_LRS = np.round(np.linspace(1.0, 2.0, 1001), 6)
FINE_ALPHAS = np.round(np.linspace(0.5, 0.95, 901), 6)
#: beyond quadratics: the 1-D counterexample of Lessard, Recht & Packard (2016), μ = 1, L = 25
LESSARD = dict(mu=1.0, L=25.0, starts=np.round(np.linspace(-10.0, 10.0, 201), 6), steps=300,
               tol=1e-6, example_start=3.3)
#: the network: SGD with momentum at a fixed effective step ε/(1 − α) on MNIST-1D (float64)
NET = dict(hidden=(64,), num_samples=5000, epochs=3, batch_size=32, seeds=(0, 1, 2),
           effective_lrs=(0.03, 0.3, 1.0, 3.0), alphas=(0.0, 0.9))


# ---- argument checks: ValueError naming the argument and the value -----------------------
def _check_number(name: str, value, low: float = -math.inf, high: float = math.inf,
                  low_open: bool = False, high_open: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
    if not ok:
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"Invalid {name}: {value!r} (expected a number in {lo}{low:g}, "
                         f"{high:g}{hi})")
    return value


def _check_int(name: str, value, low: int = 1) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
        raise ValueError(f"Invalid {name}: {value!r} (expected an int >= {low})")
    return int(value)


def _check_lr(lr) -> float:
    return _check_number("lr", lr, 0.0, low_open=True)


def _check_momentum(momentum) -> float:
    return _check_number("momentum", momentum, 0.0, 1.0, high_open=True)


def _check_method(method: str) -> str:
    if method not in TUNINGS:
        raise ValueError(f"Invalid method: {method!r} (expected one of {', '.join(TUNINGS)})")
    return method


# ----------------------------------------------------------------------------------------
# 1. The chapter's landscapes
# ----------------------------------------------------------------------------------------
def canyon(condition_number: float = FIG85["condition_number"], angle: float = FIG85["angle"],
           dim: int = 2) -> Quadratic:
    r"""The quadratic ½θᵀHθ with eigenvalues from 1/κ to λ_max = 1, axes rotated by ``angle``.

    A :class:`~course_lib.landscapes.Quadratic` with ``scale = 1/κ``, so that the largest
    eigenvalue is 1 whatever κ is: a learning rate ε is then also ελ_max (gradient descent is
    stable for ε < 2, the heavy ball for ε < 2(1 + α)).  For κ ≫ 1 it is a long, narrow
    canyon, as in the Deep Learning book's Figure 8.5.
    """
    kappa = _check_number("condition_number", condition_number, 1.0)
    return Quadratic(condition_number=kappa, angle=angle, dim=dim, scale=1.0 / kappa)


class LinearSlope(Landscape):
    r"""A plane J(θ) = cᵀθ: the gradient is the constant c everywhere (no minimum).

    The setting of the Deep Learning book's terminal-velocity argument (§8.3.2): under a
    constant gradient the heavy ball's steps grow to ε‖c‖/(1 − α).
    """

    name = "linear slope"
    min_value = -math.inf

    def __init__(self, slope=(1.0, 0.0)) -> None:
        c = torch.as_tensor(np.asarray(slope, dtype=np.float64)).reshape(-1)
        if c.numel() < 1 or not bool(torch.isfinite(c).all()):
            raise ValueError(f"Invalid slope: {slope!r} (expected a non-empty vector of "
                             "finite numbers)")
        self.dim = c.numel()
        super().__init__()
        self.slope = c

    def value(self, theta):
        return theta @ self.slope.to(theta)

    def grad(self, theta):
        return self.slope.to(theta).expand(theta.shape)

    def hessian(self, theta):
        return torch.zeros(*theta.shape, self.dim, dtype=theta.dtype, device=theta.device)

    def _repr_args(self):
        return {"slope": self.slope.tolist()}


# ----------------------------------------------------------------------------------------
# 2. The two ways of writing momentum
# ----------------------------------------------------------------------------------------
def _velocity_iterates(grad: Callable, theta0, lr: float, momentum: float,
                       nesterov: bool) -> Iterator[tuple]:
    """Yield (θ_t, v_t) for t = 0, 1, … of the lecture form (v₀ = 0), forever.

    Written with ``+``, ``-`` and ``*`` only, so θ may be a torch tensor or a NumPy array.
    """
    theta, v = theta0, 0 * theta0
    yield theta, v
    while True:
        if nesterov:
            g = grad(theta + momentum * v)  # the gradient after the look-ahead step αv
        else:
            g = grad(theta)
        v = momentum * v - lr * g  # v ← αv − εg  (the velocity)
        theta = theta + v          # θ ← θ + v
        yield theta, v


class VelocityPath(NamedTuple):
    """The lecture form's record: ``theta`` (T + 1, n) the iterates θ_t, ``v`` (T + 1, n) the
    velocities v_t (v₀ = 0), ``momentum`` α."""

    theta: np.ndarray
    v: np.ndarray
    momentum: float

    @property
    def look_ahead(self) -> np.ndarray:
        """(T + 1, n) the points θ_t + αv_t where Nesterov evaluates the gradient: the
        parameters that torch's form of Nesterov stores."""
        return self.theta + self.momentum * self.v


def _theta0(theta0) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(theta0, dtype=np.float64)).reshape(-1)
    if t.numel() == 0 or not bool(torch.isfinite(t).all()):
        raise ValueError(f"Invalid theta0: {theta0!r} (expected a vector of finite numbers)")
    return t


def velocity_form_path(grad: Callable, theta0, lr: float, momentum: float, steps: int,
                       nesterov: bool = False) -> VelocityPath:
    r"""Momentum as the Deep Learning book writes it (Algorithms 8.2 and 8.3), from v₀ = 0:

    .. math::

        v \leftarrow \alpha v - \epsilon\, \nabla J(\theta)
        \quad\text{(heavy ball)}\qquad\text{or}\qquad
        v \leftarrow \alpha v - \epsilon\, \nabla J(\theta + \alpha v)
        \quad\text{(Nesterov)}, \qquad \theta \leftarrow \theta + v .

    Arguments and symbols: ``grad`` → θ ↦ ∇J(θ) (e.g. ``landscape.grad``), called with a
    float64 tensor; ``theta0`` → θ₀; ``lr`` → ε; ``momentum`` → α ∈ [0, 1); ``steps`` → T.
    """
    if not callable(grad):
        raise ValueError(f"Invalid grad: {grad!r} (expected a function θ ↦ ∇J(θ))")
    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    steps = _check_int("steps", steps)
    it = _velocity_iterates(grad, _theta0(theta0), lr, momentum, bool(nesterov))
    thetas, vs = zip(*(next(it) for _ in range(steps + 1)))
    return VelocityPath(torch.stack(thetas).numpy(), torch.stack(vs).numpy(), momentum)


def buffer_form_path(grad: Callable, theta0, lr: float, momentum: float, steps: int,
                     nesterov: bool = False) -> np.ndarray:
    r"""Momentum as torch writes it (``torch.optim.SGD``, no dampening), from b₀ = 0:

    .. math::

        b \leftarrow \alpha b + g, \qquad
        \theta \leftarrow \theta - \epsilon\, b \quad\text{(heavy ball)}\qquad\text{or}\qquad
        \theta \leftarrow \theta - \epsilon\,(g + \alpha b) \quad\text{(Nesterov)},

    with g = ∇J(θ) at the current parameters.  (torch starts with b₁ = g₁, which is what
    b₀ = 0 gives.)  With a constant ε the heavy ball's θ_t equal the lecture form's, since
    v = −εb; Nesterov's parameters are the lecture form's look-ahead points θ_t + αv_t.
    Returns the (T + 1, n) iterates.
    """
    if not callable(grad):
        raise ValueError(f"Invalid grad: {grad!r} (expected a function θ ↦ ∇J(θ))")
    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    steps = _check_int("steps", steps)
    theta = _theta0(theta0)
    b = torch.zeros_like(theta)
    path = [theta]
    for _ in range(steps):
        g = grad(theta)
        b = momentum * b + g                       # b ← αb + g
        d = g + momentum * b if nesterov else b    # the direction of the step
        theta = theta - lr * d                     # θ ← θ − εd
        path.append(theta)
    return torch.stack(path).numpy()


class FormComparison(NamedTuple):
    r"""One method, four implementations, on one landscape (all (T + 1, n) iterates).

    ``velocity`` the lecture form's parameters (θ_t for the heavy ball, the look-ahead
    θ_t + αv_t for Nesterov, which is what the others store); ``buffer`` torch's form
    (:func:`buffer_form_path`); ``course_sgd`` :class:`course_lib.optim.SGD`; ``torch_sgd``
    ``torch.optim.SGD``, both run by :func:`~course_lib.landscapes.run_optimizer`.
    """

    velocity: np.ndarray
    buffer: np.ndarray
    course_sgd: np.ndarray
    torch_sgd: np.ndarray

    @property
    def max_difference(self) -> float:
        """The largest |difference| of any coordinate at any step between any two of them."""
        paths = np.stack([self.velocity, self.buffer, self.course_sgd, self.torch_sgd])
        return float(np.max(paths.max(axis=0) - paths.min(axis=0)))


def compare_forms(landscape: Landscape, lr: float = FORMS["lr"],
                  momentum: float = FORMS["momentum"], steps: int = FORMS["steps"],
                  nesterov: bool = False, start=None) -> FormComparison:
    """Run the heavy ball (or Nesterov) in its four implementations from ``start`` (default
    ``landscape.start``), in float64.  The lecture and torch forms are the same method, so
    every path agrees up to rounding (``max_difference`` ~ 10⁻¹⁵)."""
    if not isinstance(landscape, Landscape):
        raise ValueError(f"Invalid landscape: {landscape!r} (expected a Landscape)")
    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    if nesterov and momentum == 0:
        raise ValueError("Invalid momentum: 0.0 (Nesterov needs momentum > 0)")
    theta0 = _theta0(landscape.start if start is None else start)
    vel = velocity_form_path(landscape.grad, theta0, lr, momentum, steps, nesterov)
    buf = buffer_form_path(landscape.grad, theta0, lr, momentum, steps, nesterov)
    hyper = dict(lr=lr, momentum=momentum, nesterov=bool(nesterov))
    ours = run_optimizer(landscape, SGD, theta0, steps, max_loss=math.inf, **hyper)
    theirs = run_optimizer(landscape, torch.optim.SGD, theta0, steps, max_loss=math.inf,
                           **hyper)
    if ours.diverged or theirs.diverged:
        raise ValueError(f"Invalid settings: lr={lr}, momentum={momentum} diverge on "
                         f"{landscape!r}; compare the forms where the runs stay finite")
    return FormComparison(vel.look_ahead if nesterov else vel.theta, buf, ours.path,
                          theirs.path)


class TerminalVelocity(NamedTuple):
    r"""Heavy-ball steps under a constant gradient g, in units of a plain gradient step ε‖g‖.

    ``step_lengths`` (T,) ‖θ_t − θ_{t−1}‖ / (ε‖g‖) for t = 1 … T, measured with
    :class:`course_lib.optim.SGD`; ``theory`` (T,) (1 − α^t)/(1 − α), the geometric sum
    1 + α + … + α^{t−1}; ``momentum`` α.
    """

    step_lengths: np.ndarray
    theory: np.ndarray
    momentum: float

    @property
    def terminal(self) -> float:
        """1/(1 − α): the limit of the step length, the momentum's speed-up factor."""
        return 1.0 / (1.0 - self.momentum)

    @property
    def measured_terminal(self) -> float:
        """The last measured step length (→ 1/(1 − α) as T grows)."""
        return float(self.step_lengths[-1])


def terminal_velocity(momentum: float, steps: int = TERMINAL_STEPS, lr: float = 0.01,
                      slope=(3.0, 4.0)) -> TerminalVelocity:
    r"""Run :class:`course_lib.optim.SGD` with momentum α on the plane J(θ) = cᵀθ
    (:class:`LinearSlope`, ``slope`` → c) from θ₀ = 0 for T = ``steps`` steps.

    With g = c at every step the velocity is v_t = −ε(1 + α + … + α^{t−1})c, so each step
    is (1 − α^t)/(1 − α) times a plain gradient step and tends to ε‖g‖/(1 − α) (Deep
    Learning book, eq. 8.17): momentum α = 0.9 multiplies the step by 10.
    """
    momentum = _check_momentum(momentum)
    steps, lr = _check_int("steps", steps), _check_lr(lr)
    J = LinearSlope(slope)
    traj = run_optimizer(J, SGD, torch.zeros(J.dim, dtype=torch.float64), steps,
                         max_loss=math.inf, lr=lr, momentum=momentum)
    lengths = np.linalg.norm(np.diff(traj.path, axis=0), axis=1) / (lr * float(J.slope.norm()))
    t = np.arange(1, steps + 1)
    return TerminalVelocity(lengths, (1.0 - momentum**t) / (1.0 - momentum), momentum)


# ----------------------------------------------------------------------------------------
# 3. Rates on a quadratic: closed forms
# ----------------------------------------------------------------------------------------
def _mode_roots(eigenvalues, lr, momentum, nesterov: bool):
    """(z₁, z₂, λ): the two roots of each mode's characteristic polynomial z² − s z + p, for
    every eigenvalue (last axis) and every broadcast (ε, α); checks the arguments."""
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"Invalid eigenvalues: {eigenvalues!r} (expected positive numbers)")
    eps, alpha = np.broadcast_arrays(np.asarray(lr, dtype=np.float64),
                                     np.asarray(momentum, dtype=np.float64))
    if not np.all(np.isfinite(eps)) or np.any(eps <= 0):
        raise ValueError(f"Invalid lr: {lr!r} (expected numbers > 0)")
    if not np.all(np.isfinite(alpha)) or np.any(alpha < 0) or np.any(alpha >= 1):
        raise ValueError(f"Invalid momentum: {momentum!r} (expected numbers in [0, 1))")
    e, a = eps[..., None], alpha[..., None]  # (..., 1) against lam (n,)
    if nesterov:
        s, p = (1 + a) * (1 - e * lam), a * (1 - e * lam)
    else:
        s, p = 1 + a - e * lam, a + 0 * lam
    root = np.sqrt((s * s - 4 * p).astype(complex))
    return (s + root) / 2, (s - root) / 2, lam


def iteration_matrix(eigenvalue: float, lr: float, momentum: float,
                     nesterov: bool = False) -> np.ndarray:
    r"""The 2×2 matrix M that advances one eigen-mode: (e_{t+1}, e_t) = M (e_t, e_{t−1}).

    .. math::

        M_{\text{heavy ball}} = \begin{pmatrix} 1 + \alpha - \epsilon\lambda & -\alpha \\ 1 & 0
        \end{pmatrix}, \qquad
        M_{\text{Nesterov}} = \begin{pmatrix} (1 + \alpha)(1 - \epsilon\lambda) &
        -\alpha(1 - \epsilon\lambda) \\ 1 & 0 \end{pmatrix} .

    Its eigenvalues are the roots z₁, z₂ of :func:`convergence_factor`, and its spectral
    radius r(M) = max |z| is the mode's contraction factor (:func:`mode_factors`).
    """
    lam = _check_number("eigenvalue", eigenvalue, 0.0, low_open=True)
    lr, a = _check_lr(lr), _check_momentum(momentum)
    if nesterov:
        u = 1.0 - lr * lam
        return np.array([[(1.0 + a) * u, -a * u], [1.0, 0.0]])
    return np.array([[1.0 + a - lr * lam, -a], [1.0, 0.0]])


def mode_factors(eigenvalues, lr, momentum=0.0, nesterov: bool = False) -> np.ndarray:
    r"""The contraction factor of every eigen-mode: r(M_λ) = max(|z₁|, |z₂|) for each λ.

    The spectral radius of the mode's :func:`iteration_matrix`; its error shrinks like r^t
    (like t·r^t at a double root).  :func:`convergence_factor` is the largest of them.
    Arguments as for :func:`convergence_factor`; the result has shape (..., n): the broadcast
    shape of (ε, α) followed by the n eigenvalues.
    """
    z1, z2, _ = _mode_roots(eigenvalues, lr, momentum, nesterov)
    return np.maximum(np.abs(z1), np.abs(z2))


#: the three ways an eigen-mode can behave (:func:`mode_regimes`)
REGIMES = ("monotone", "oscillating", "sign-flipping")


def mode_regimes(eigenvalues, lr, momentum=0.0, nesterov: bool = False,
                 tol: float = 1e-12) -> np.ndarray:
    r"""Per eigenvalue, the index into :data:`REGIMES` of how the mode's error behaves:

    - 0 ``"monotone"``: real roots, the dominant one positive: e_t keeps its sign and decays
      (or grows) like r^t;
    - 1 ``"oscillating"``: complex roots z = r e^{±iω}: e_t rings, a damped cosine under the
      envelope r^t (for the heavy ball r = √α there, whatever λ is);
    - 2 ``"sign-flipping"``: real roots, the dominant one negative: e_t changes sign at every
      step (gradient descent's zigzag for ελ > 1).

    A discriminant within ``tol`` of 0 (a double root) counts as real.  Arguments as for
    :func:`mode_factors`.
    """
    z1, z2, _ = _mode_roots(eigenvalues, lr, momentum, nesterov)
    complex_ = np.abs(z1.imag) > tol
    dominant = np.where(np.abs(z1) >= np.abs(z2), z1.real, z2.real)
    return np.where(complex_, 1, np.where(dominant < 0, 2, 0))


def convergence_factor(eigenvalues, lr, momentum=0.0, nesterov: bool = False):
    r"""r, the factor by which the error shrinks per step in the long run, on a quadratic:
    the spectral radius of the iteration matrix.

    Along an eigenvector of H with eigenvalue λ both methods are a linear recursion of
    order two in the error e_t = θ_t − θ*:

    .. math::

        \text{heavy ball:}\; e_{t+1} = (1 + \alpha - \epsilon\lambda)\, e_t - \alpha\, e_{t-1},
        \qquad
        \text{Nesterov:}\; e_{t+1} = (1 + \alpha)(1 - \epsilon\lambda)\, e_t
                                    - \alpha (1 - \epsilon\lambda)\, e_{t-1},

    so e_t is a combination of z₁ᵗ and z₂ᵗ, the roots of z² − s z + p = 0 (s and p the two
    coefficients), the eigenvalues of the mode's 2×2 :func:`iteration_matrix` M_λ.  r is the
    largest |z| over both roots and all eigenvalues, max_λ r(M_λ) (:func:`mode_factors`): the
    spectral radius of the whole iteration matrix; the method converges iff r < 1.  α = 0
    gives gradient descent, r = max |1 − ελ|.

    Arguments: ``eigenvalues`` (n,) of H; ``lr`` → ε and ``momentum`` → α, numbers or arrays
    that broadcast against each other (the result has their broadcast shape, a float if
    both are numbers).  For the tuned values of :func:`tuned_hyperparameters`: heavy ball
    r = (√κ − 1)/(√κ + 1), Nesterov r = 1 − 1/√κ, gradient descent r = (κ − 1)/(κ + 1).
    """
    r = mode_factors(eigenvalues, lr, momentum, nesterov).max(axis=-1)
    return float(r) if r.ndim == 0 else r


def mode_errors(eigenvalues, lr: float, momentum: float, steps: int,
                nesterov: bool = False) -> np.ndarray:
    r"""|e_t| of every eigen-mode on H = diag(``eigenvalues``), from e₀ = 1 and v₀ = 0, for
    t = 0 … T: the lecture form of :func:`velocity_form_path` run on all modes at once (each
    mode is its own 1-D problem).  Returns a (T + 1, n) array; the long-run slope of column
    i on a log scale is ln r(M_{λ_i}) (:func:`mode_factors`).
    """
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"Invalid eigenvalues: {eigenvalues!r} (expected positive numbers)")
    path = velocity_form_path(lambda e: torch.as_tensor(lam) * e, np.ones(lam.size), lr,
                              momentum, steps, nesterov)
    return np.abs(path.theta)


def tuned_hyperparameters(method: str, lam_min: float, lam_max: float) -> dict:
    r"""The classical tuned ε (``lr``) and α (``momentum``) for H with eigenvalues in
    [λ_min, λ_max], κ = λ_max/λ_min:

    - ``"gd"``: ε = 2/(λ_min + λ_max), α = 0 (the best fixed step; r = (κ − 1)/(κ + 1));
    - ``"heavy_ball"``: ε = 4/(√λ_max + √λ_min)², α = ((√κ − 1)/(√κ + 1))² (Polyak, 1964;
      r = (√κ − 1)/(√κ + 1), the best over all (ε, α));
    - ``"nesterov"``: ε = 1/λ_max, α = (√κ − 1)/(√κ + 1) (Nesterov's constant momentum for
      strongly convex functions; r = 1 − 1/√κ on a quadratic, and a guarantee
      J(θ_t) − J* ≤ (1 − 1/√κ)^t (J(θ₀) − J* + μ‖θ₀ − θ*‖²/2) on every μ-strongly convex,
      L-smooth J: Nesterov, 2004, Theorem 2.2.3);
    - ``"nesterov_quadratic"``: ε = 4/(3λ_max + λ_min), α = (√(3κ+1) − 2)/(√(3κ+1) + 2), the
      best (ε, α) for Nesterov on a quadratic (Lessard, Recht & Packard, 2016):
      r = 1 − 2/√(3κ + 1);
    - ``"cg"``: no hyperparameters (an empty dict).
    """
    _check_method(method)
    lo = _check_number("lam_min", lam_min, 0.0, low_open=True)
    hi = _check_number("lam_max", lam_max, lo)
    q = (math.sqrt(hi) - math.sqrt(lo)) / (math.sqrt(hi) + math.sqrt(lo))  # (√κ−1)/(√κ+1)
    if method == "gd":
        return dict(lr=2.0 / (lo + hi), momentum=0.0)
    if method == "heavy_ball":
        return dict(lr=4.0 / (math.sqrt(hi) + math.sqrt(lo)) ** 2, momentum=q * q)
    if method == "nesterov":
        return dict(lr=1.0 / hi, momentum=q)
    if method == "nesterov_quadratic":
        r = math.sqrt(3.0 * hi / lo + 1.0)
        return dict(lr=4.0 / (3.0 * hi + lo), momentum=(r - 2.0) / (r + 2.0))
    return {}


def spectrum(condition_number: float, dim: int, kind: str = RATE_SPECTRUM) -> np.ndarray:
    r"""n eigenvalues in [1, κ], ascending, both ends included.

    - ``"uniform"``: evenly spaced, as in :class:`~course_lib.landscapes.Quadratic`.
    - ``"chebyshev"``: at the Chebyshev points 1 + (κ − 1)(1 − cos(πi/(n − 1)))/2, crowded
      at both ends.  This is the spectrum on which the √κ bound of conjugate gradients is
      sharp; on an evenly spaced one CG isolates the few smallest eigenvalues early and then
      speeds up (it converges superlinearly).
    """
    kappa = _check_number("condition_number", condition_number, 1.0)
    dim = _check_int("dim", dim, low=2)
    if kind == "uniform":
        return np.linspace(1.0, kappa, dim)
    if kind == "chebyshev":
        lam = 1.0 + (kappa - 1.0) * (1.0 - np.cos(np.pi * np.arange(dim) / (dim - 1))) / 2.0
        lam[0], lam[-1] = 1.0, kappa  # exact ends despite rounding
        return lam
    raise ValueError(f"Invalid kind: {kind!r} (expected 'uniform' or 'chebyshev')")


# ----------------------------------------------------------------------------------------
# 4. Conjugate gradients
# ----------------------------------------------------------------------------------------
def _as_matvec(H):
    """(matvec, H) for an (n, n) matrix, or an (n,) vector of eigenvalues (H diagonal);
    H comes back as a float64 NumPy array."""
    if isinstance(H, torch.Tensor):
        H = H.detach().cpu().numpy()
    H = np.asarray(H, dtype=np.float64)
    if H.ndim == 1 and H.size > 0:
        return (lambda x: H * x), H
    if H.ndim == 2 and H.shape[0] == H.shape[1] and H.size > 0:
        return (lambda x: H @ x), H
    raise ValueError(f"Invalid H: shape {H.shape} (expected an (n, n) matrix or the (n,) "
                     "eigenvalues of a diagonal one)")


def _vector(name: str, x, n: int) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if x.size != n or not np.all(np.isfinite(x)):
        raise ValueError(f"Invalid {name}: {x.size} numbers (expected {n} finite ones)")
    return x


def _cg_iterates(matvec: Callable, b: np.ndarray, x0: np.ndarray) -> Iterator[tuple]:
    """Yield (x_t, b − Hx_t) (the residual, −g_t) for t = 0, 1, …; stop when it is 0 exactly."""
    x = x0.copy()
    r = b - matvec(x)
    p = r.copy()       # the first search direction: the steepest descent direction
    rr = float(r @ r)
    yield x, r
    while rr > 0:
        Hp = matvec(p)
        pHp = float(p @ Hp)
        if not pHp > 0:
            raise ValueError(f"Invalid H: pᵀHp = {pHp:.3g} ≤ 0 (conjugate gradients needs "
                             "H symmetric positive definite)")
        step = rr / pHp              # exact line search along p
        x = x + step * p
        r = r - step * Hp
        rr_new = float(r @ r)
        p = r + (rr_new / rr) * p    # next direction: H-conjugate to all previous ones
        rr = rr_new
        yield x, r


class CGResult(NamedTuple):
    """``x`` the solution; ``iterations`` the steps taken; ``residual_norms``
    (iterations + 1,) ‖b − Hx_t‖; ``converged`` whether ‖b − Hx‖ ≤ tol·‖b‖ was reached."""

    x: np.ndarray
    iterations: int
    residual_norms: np.ndarray
    converged: bool


def conjugate_gradient(H, b, x0=None, tol: float = 1e-10, max_iter: int | None = None
                       ) -> CGResult:
    r"""Solve H x = b for a symmetric positive definite H by conjugate gradients, i.e.
    minimise the quadratic ½xᵀHx − bᵀx (Hestenes & Stiefel, 1952; Nocedal & Wright, 2006,
    Algorithm 5.2; Deep Learning book §8.6.2):

    .. math::

        g_0 = Hx_0 - b,\; p_0 = -g_0;\qquad
        a_t = \frac{g_t^\top g_t}{p_t^\top H p_t},\;
        x_{t+1} = x_t + a_t p_t,\; g_{t+1} = g_t + a_t H p_t,\;
        p_{t+1} = -g_{t+1} + \frac{g_{t+1}^\top g_{t+1}}{g_t^\top g_t}\, p_t ,

    with g_t the gradient of the quadratic at x_t (the negative residual b − Hx_t).

    Each direction is H-conjugate to the previous ones, so in exact arithmetic CG ends after
    at most n steps; after t steps the error in the H-norm is at most
    2((√κ − 1)/(√κ + 1))ᵗ times the initial one.

    Arguments: ``H`` an (n, n) matrix or the (n,) eigenvalues of a diagonal one (NumPy or
    torch), or a function v ↦ Hv on (n,) NumPy arrays (H is then never formed); ``b`` (n,);
    ``x0`` the start (zeros by default); stop when ‖b − Hx‖ ≤ ``tol``·‖b‖ or after
    ``max_iter`` steps (default 10n).  Returns NumPy arrays.
    """
    if callable(H):  # v ↦ Hv, e.g. Hessian-vector products (Hessian-free Newton, ch. 15)
        matvec, n = H, np.asarray(b).size
    else:
        matvec, H = _as_matvec(H)
        n = len(H)
    b = _vector("b", b, n)
    x0 = np.zeros(n) if x0 is None else _vector("x0", x0, n)
    tol = _check_number("tol", tol, 0.0)
    max_iter = 10 * n if max_iter is None else _check_int("max_iter", max_iter, low=0)
    target = tol * float(np.linalg.norm(b))
    norms = []
    for t, (x, r) in enumerate(_cg_iterates(matvec, b, x0)):
        norms.append(float(np.linalg.norm(r)))
        if norms[-1] <= target or t == max_iter:
            break
    return CGResult(x, t, np.array(norms), norms[-1] <= target)


# ----------------------------------------------------------------------------------------
# 5. Steps to a fixed accuracy, and the sweep over κ
# ----------------------------------------------------------------------------------------
def _error_iterates(method: str, H, e0, lr, momentum) -> tuple[Iterator[np.ndarray], int]:
    """Errors e_t = θ_t − θ* of ``method`` on J(θ) = ½(θ − θ*)ᵀH(θ − θ*), t = 0, 1, ….

    Every method here only ever uses H through products Hx (∇J = He), so it commutes with a
    rotation of the axes: run in the eigenbasis (H given by its eigenvalues) it gives the
    same ‖e_t‖ as in any rotated basis.
    """
    _check_method(method)
    matvec, H = _as_matvec(H)
    n = len(H)
    e0 = _vector("e0", e0, n)
    if method == "cg":  # minimise ½eᵀHe: solve He = 0 from e₀
        return (x for x, _ in _cg_iterates(matvec, np.zeros(n), e0)), n
    if lr is None or momentum is None:
        lam = H if H.ndim == 1 else np.linalg.eigvalsh(H)
        tuned = tuned_hyperparameters(method, float(lam.min()), float(lam.max()))
        lr = tuned["lr"] if lr is None else lr
        momentum = tuned["momentum"] if momentum is None else momentum
    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    if method == "gd" and momentum != 0:
        raise ValueError(f"Invalid momentum: {momentum!r} (gradient descent has none)")
    its = _velocity_iterates(matvec, e0, lr, momentum, nesterov=method.startswith("nesterov"))
    return (e for e, _ in its), n


def error_norms(method: str, H, e0, steps: int, lr: float | None = None,
                momentum: float | None = None) -> np.ndarray:
    r"""‖θ_t − θ*‖ for t = 0 … T on the quadratic ½(θ − θ*)ᵀH(θ − θ*) from θ₀ − θ* = ``e0``.

    ``method`` one of :data:`METHODS`: ``"gd"``, ``"heavy_ball"``, ``"nesterov"`` (the
    lecture forms of :func:`velocity_form_path`) or ``"cg"``; ``H`` an (n, n) matrix or the
    (n,) eigenvalues of a diagonal one; ``lr`` → ε and ``momentum`` → α default to
    :func:`tuned_hyperparameters`.  CG ends early if it hits the solution exactly.
    """
    steps = _check_int("steps", steps, low=0)
    it, _ = _error_iterates(method, H, e0, lr, momentum)
    out = []
    for t, e in enumerate(it):
        out.append(float(np.linalg.norm(e)))
        if t == steps:
            break
    return np.array(out)


def steps_to_accuracy(method: str, H, e0, tol: float = RATE_TOL, max_steps: int = 1_000_000,
                      lr: float | None = None, momentum: float | None = None) -> int | None:
    r"""The first t with ‖θ_t − θ*‖ ≤ tol·‖θ₀ − θ*‖ (arguments as in :func:`error_norms`).

    Returns None if that does not happen within ``max_steps`` steps or the run diverges.
    """
    tol = _check_number("tol", tol, 0.0, 1.0, low_open=True, high_open=True)
    max_steps = _check_int("max_steps", max_steps)
    it, _ = _error_iterates(method, H, e0, lr, momentum)
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging run ends as None
        return _first_below(it, tol, max_steps)


def _first_below(it: Iterator[np.ndarray], tol: float, max_steps: int) -> int | None:
    """The first t with ‖e_t‖ ≤ tol·‖e₀‖ along the errors ``it``; None past max_steps or
    once ‖e_t‖ is not finite."""
    target = None
    for t, e in enumerate(it):
        sq = float(e @ e)
        if target is None:
            target = tol * tol * sq  # compare squared norms: no square root per step
            if target == 0:
                return 0
        elif sq <= target:
            return t
        elif not math.isfinite(sq) or t >= max_steps:
            return None
    return None


class RateSweep(NamedTuple):
    r"""Steps to accuracy ``tol`` on quadratics of growing κ (NumPy arrays, one entry per κ).

    ``kappas``; ``steps`` method → measured steps (:func:`steps_to_accuracy`);
    ``predicted`` method → ln(1/tol)/(−ln r) with r from :func:`convergence_factor` (for CG
    the textbook bound ln(2√κ/tol)/(−ln r), r = (√κ − 1)/(√κ + 1)); ``dim``; ``tol``;
    ``kind`` the spectrum.
    """

    kappas: np.ndarray
    steps: dict
    predicted: dict
    dim: int
    tol: float
    kind: str

    def slope(self, method: str) -> float:
        """Least-squares slope of log(steps) against log(κ): 1 for ∝ κ, 0.5 for ∝ √κ."""
        return float(np.polyfit(np.log(self.kappas), np.log(self.steps[method]), 1)[0])

    def slopes(self) -> dict:
        """method → :meth:`slope`."""
        return {m: self.slope(m) for m in self.steps}


@shared_result
def rate_sweep(kappas=RATE_KAPPAS, dim: int = RATE_DIM, tol: float = RATE_TOL,
               kind: str = RATE_SPECTRUM, methods=METHODS) -> RateSweep:
    r"""For each κ: the steps each method needs to shrink the error by ``tol``.

    The quadratic has H = diag(:func:`spectrum` (κ, dim, kind)) (eigenvalues in [1, κ]; a
    rotation would change no count, see :func:`steps_to_accuracy`), θ* = 0 and θ₀ = (1, …, 1),
    the same error along every eigenvector.  GD, heavy ball and Nesterov use
    :func:`tuned_hyperparameters`.  Theory: GD needs ≈ (κ/2) ln(1/tol) steps, the heavy ball
    ≈ (√κ/2) ln(1/tol), Nesterov ≈ √κ ln(1/tol), CG at most ≈ (√κ/2) ln(2√κ/tol).
    """
    kappas = np.asarray(kappas, dtype=np.float64)
    if kappas.ndim != 1 or kappas.size < 2 or not np.all(np.isfinite(kappas)) or np.any(
            kappas < 1):
        raise ValueError(f"Invalid kappas: {kappas.tolist()!r} (expected at least two "
                         "condition numbers >= 1)")
    methods = tuple(_check_method(m) for m in methods)
    tol = _check_number("tol", tol, 0.0, 1.0, low_open=True, high_open=True)
    steps = {m: [] for m in methods}
    predicted = {m: [] for m in methods}
    e0 = np.ones(_check_int("dim", dim, low=2))
    for kappa in kappas:
        lam = spectrum(float(kappa), dim, kind)
        for m in methods:
            t = steps_to_accuracy(m, lam, e0, tol)
            steps[m].append(np.nan if t is None else t)
            q = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
            if m == "cg":
                predicted[m].append(math.log(2 * math.sqrt(kappa) / tol) / -math.log(q))
            else:
                r = convergence_factor(lam, **tuned_hyperparameters(m, 1.0, float(kappa)),
                                       nesterov=m.startswith("nesterov"))
                predicted[m].append(math.log(1 / tol) / -math.log(r))
    return RateSweep(kappas, {m: np.array(v) for m, v in steps.items()},
                     {m: np.array(v) for m, v in predicted.items()}, dim, tol, kind)


# ----------------------------------------------------------------------------------------
# 6. The figure of the chapter's widget
# ----------------------------------------------------------------------------------------
def explorer_figure(condition_number: float = EXPLORER["condition_number"],
                    lr: float = EXPLORER["lr"], momentum: float = EXPLORER["momentum"],
                    steps: int = EXPLORER["steps"], angle: float = FIG85["angle"]):
    r"""Gradient descent, heavy ball and Nesterov with the same ε (and α) on :func:`canyon`
    (κ): paths on the contours (left) and J(θ_t) on a log scale (right), each with a dotted
    line of the predicted slope r^{2t} (J is quadratic in the error) through its last point.
    The title gives each method's convergence factor r (:func:`convergence_factor`) and the best possible
    (√κ − 1)/(√κ + 1).

    Meant for :func:`course_lib.widgets.interactive_plot`, in the spirit of Goh (2017).
    Returns the dict label → :class:`~course_lib.landscapes.Trajectory`.
    """
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_losses, plot_trajectories

    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    J = canyon(condition_number, angle)
    lam = J.eigenvalues.numpy()
    settings = {"gradient descent": (0.0, False), "heavy ball": (momentum, False),
                "Nesterov": (momentum, True)}
    runs, factors = {}, {}
    for label, (alpha, nesterov) in settings.items():
        nesterov = nesterov and alpha > 0  # Nesterov with α = 0 is gradient descent
        runs[label] = run_optimizer(J, SGD, steps=steps, lr=lr, momentum=alpha,
                                    nesterov=nesterov)
        factors[label] = convergence_factor(lam, lr, alpha, nesterov=nesterov)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    plot_trajectories(J, runs, ax=ax1, title=rf"$\kappa$ = {J.condition_number:.3g}, "
                      rf"$\epsilon$ = {lr:.3g}, $\alpha$ = {momentum:.3g}")
    plot_losses(runs, ax=ax2, y_label=r"$J(\theta_t) - J^*$")
    for i, (label, r) in enumerate(factors.items()):
        losses = runs[label].losses
        if r < 1 and not runs[label].diverged and losses[-1] > 0:
            t = np.arange(len(losses))  # the slope r² per step, through the last point
            ax2.plot(t, losses[-1] * r ** (2.0 * (t - t[-1])), ls=":", lw=1, color=f"C{i}")
    ax2.set_ylim(max(1e-16, ax2.get_ylim()[0]), None)
    best = (math.sqrt(J.condition_number) - 1) / (math.sqrt(J.condition_number) + 1)
    ax2.set_title("convergence factor r per step: " + ", ".join(f"{k} {v:.3g}" for k, v in factors.items())
                  + f"\n(best possible {best:.3g}; dotted: slope $r^{{2t}}$)", fontsize=9)
    fig.tight_layout()
    return runs


# ----------------------------------------------------------------------------------------
# 6b. The eigen-modes' contraction factors (the chapter's second widget, after Goh, 2017)
# ----------------------------------------------------------------------------------------
class ModeAnalysis(NamedTuple):
    r"""One method's eigen-modes on a quadratic with eigenvalues ``eigenvalues`` (n,).

    ``factors`` (n,) r(M_λ) of each mode (:func:`mode_factors`); ``regimes`` (n,) indices
    into :data:`REGIMES`; ``errors`` (T + 1, n) the measured |e_t| of each mode
    (:func:`mode_errors`); ``lr`` ε, ``momentum`` α, ``nesterov``.
    """

    eigenvalues: np.ndarray
    factors: np.ndarray
    regimes: np.ndarray
    errors: np.ndarray
    lr: float
    momentum: float
    nesterov: bool

    @property
    def convergence_factor(self) -> float:
        """r = the worst mode's factor (the spectral radius of the whole iteration matrix)."""
        return float(self.factors.max())

    @property
    def worst(self) -> int:
        """The index of the slowest mode (the first of several equal ones)."""
        return int(np.argmax(self.factors))

    def measured_factors(self, window: int = 20) -> np.ndarray:
        r"""(n,) each mode's measured factor per step over the second half of the run: the
        ratio of the largest |e_t| in the last ``window`` steps to the largest in the
        ``window`` steps from T/2, to the power 1/(T/2).  (A window, because an oscillating
        mode passes near 0; at a double root the t in t·r^t adds a factor 2^{2/T}.)"""
        T = len(self.errors) - 1
        half = T // 2
        late = self.errors[T - window + 1:].max(axis=0)
        mid = self.errors[half - window + 1: half + 1].max(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (late / mid) ** (1.0 / (T - half))


def mode_analysis(eigenvalues, lr: float, momentum: float, steps: int = MODES["steps"],
                  nesterov: bool = False) -> ModeAnalysis:
    """The factors, regimes and measured errors of every eigen-mode (see :class:`ModeAnalysis`)."""
    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    lam = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        errors = mode_errors(lam, lr, momentum, steps, nesterov)
    return ModeAnalysis(lam, mode_factors(lam, lr, momentum, nesterov),
                        mode_regimes(lam, lr, momentum, nesterov), errors, lr, momentum,
                        bool(nesterov))


#: background colours of the three regimes in :func:`plot_mode_factors`
REGIME_COLORS = {"monotone": "#deebf7", "oscillating": "#fde0c5", "sign-flipping": "#e0e0e0"}


def plot_mode_factors(analysis: ModeAnalysis, ax=None, points: int = MODES["points"]):
    r"""r(M_λ) of one method against λ across [λ_min, λ_max] of ``analysis`` (log axis).

    The background shows each λ's regime (:func:`mode_regimes`: monotone, oscillating with
    complex roots, sign-flipping); the dotted line is the optimal tuning's flat level
    (√κ − 1)/(√κ + 1), which no (ε, α) beats for the worst mode; the dashed line r = 1 (above
    it a mode diverges); the dots are the quadratic's own eigenvalues, the slowest one ringed
    (its factor is the convergence factor r).  Returns the Axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    lam = analysis.eigenvalues
    lo, hi = float(lam.min()), float(lam.max())
    grid = np.geomspace(lo, hi, points) if hi > lo else np.array([lo])
    kw = dict(lr=analysis.lr, momentum=analysis.momentum, nesterov=analysis.nesterov)
    r, regime = mode_factors(grid, **kw), mode_regimes(grid, **kw)
    edges = np.sqrt(grid[1:] * grid[:-1]) if grid.size > 1 else np.array([])
    edges = np.concatenate([[lo], edges, [hi]])
    start = 0
    for i in range(1, grid.size + 1):  # one span per run of equal regimes
        if i == grid.size or regime[i] != regime[start]:
            ax.axvspan(edges[start], edges[i], color=REGIME_COLORS[REGIMES[regime[start]]], lw=0)
            start = i
    ax.plot(grid, r, "k", lw=1.5, label=r"$r(M_\lambda)$ of each mode")
    kappa = hi / lo
    best = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    ax.axhline(best, color="k", ls=":", lw=1,
               label=rf"optimal tuning: $(\sqrt{{\kappa}}-1)/(\sqrt{{\kappa}}+1)$ = {best:.3g}")
    ax.axhline(1.0, color="r", ls="--", lw=0.8, label="r = 1 (diverges above)")
    for i, (l, f) in enumerate(zip(lam, analysis.factors)):
        ax.plot(l, f, "o", color=f"C{i}", ms=7, zorder=3)
    w = analysis.worst
    ax.plot(lam[w], analysis.factors[w], "o", mfc="none", mec="r", ms=15, mew=2, zorder=4,
            label=rf"slowest mode: r = {analysis.convergence_factor:.3g}")
    ax.set_xscale("log")
    ax.set_xlim(lo, hi) if hi > lo else ax.set_xlim(lo / 2, hi * 2)  # κ = 1: a single λ
    ax.set_ylim(0, min(max(1.1, 1.05 * float(r.max())), 2.0))
    ax.set_xlabel(r"eigenvalue $\lambda$ of $H$")
    ax.set_ylabel(r"contraction factor $r(M_\lambda)$ per step")
    handles, _ = ax.get_legend_handles_labels()
    handles += [Patch(color=c, label=f"{name} mode") for name, c in REGIME_COLORS.items()]
    ax.legend(handles=handles, fontsize=7, loc="lower left")
    return ax


def plot_mode_errors(analysis: ModeAnalysis, ax=None):
    r"""|e_t| of each eigen-mode of ``analysis`` (log scale, colours as in
    :func:`plot_mode_factors`) with the predicted slope r^t dotted: C·r^t with C the smallest
    constant that keeps the measured curve below it.  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    t = np.arange(len(analysis.errors))
    floor, lowest = 1e-16, np.inf
    for i, (lam, r) in enumerate(zip(analysis.eigenvalues, analysis.factors)):
        e = analysis.errors[:, i]
        ok = np.isfinite(e)
        worst = i == analysis.worst
        ax.semilogy(t[ok], np.maximum(e[ok], floor), color=f"C{i}", lw=2.4 if worst else 1.2,
                    label=rf"$\lambda$ = {lam:.3g}: r = {r:.3g}" + (" (slowest)" if worst else ""))
        if r > 0:
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                scale = np.max(np.where(ok, e / r ** t, 0.0))
                line = np.clip(scale * r ** t, floor, 1e300)
            ax.semilogy(t, line, ":", color=f"C{i}", lw=1)
            lowest = min(lowest, float(line[-1]))
    ax.plot([], [], "k:", lw=1, label=r"predicted slope $r^t$")
    ax.set_ylim(max(floor, 0.01 * lowest) if np.isfinite(lowest) else floor, None)
    ax.set_xlabel("step t")
    ax.set_ylabel(r"error of the mode $|e_t|$ ($e_0 = 1$)")
    ax.legend(fontsize=7, loc="lower left")
    return ax


def modes_figure(condition_number: float = MODES["condition_number"], lr: float = MODES["lr"],
                 momentum: float = MODES["momentum"], steps: int = MODES["steps"],
                 dim: int = MODES["dim"]) -> dict:
    r"""The eigen-mode view of momentum (after Goh, 2017): on :func:`canyon` (κ) in ``dim``
    dimensions (eigenvalues evenly spaced in [1/κ, 1]), for the heavy ball (left) and
    Nesterov (right) with the same ε and α: the contraction factor r(M_λ) of every mode
    across [1/κ, 1] (:func:`plot_mode_factors`, top) and each of the canyon's modes' error
    |e_t| with its predicted slope r^t (:func:`plot_mode_errors`, bottom).

    Meant for :func:`course_lib.widgets.interactive_plot` with sliders for κ, ε and α.
    Returns the dict method label → :class:`ModeAnalysis`.
    """
    import matplotlib.pyplot as plt

    lr, momentum = _check_lr(lr), _check_momentum(momentum)
    lam = canyon(condition_number, dim=_check_int("dim", dim, 2)).eigenvalues.numpy()
    result = {label: mode_analysis(lam, lr, momentum, steps, nesterov)
              for label, nesterov in (("heavy ball", False), ("Nesterov", True))}
    fig, axes = plt.subplots(2, 2, figsize=(10.5, 6.3))
    for j, (label, a) in enumerate(result.items()):
        plot_mode_factors(a, axes[0, j])
        axes[0, j].set_title(rf"{label}, $\kappa$ = {lam[-1] / lam[0]:.3g}, $\epsilon$ = {lr:.3g}, "
                             rf"$\alpha$ = {momentum:.3g}: r = {a.convergence_factor:.3g}",
                             fontsize=10)
        plot_mode_errors(a, axes[1, j])
        axes[1, j].set_title(f"{label}: each mode decays like its own $r^t$", fontsize=10)
    fig.tight_layout()
    return result


# ----------------------------------------------------------------------------------------
# 7. A fair comparison: both methods at their best, found on a measured grid
# ----------------------------------------------------------------------------------------
class TuningGrid(NamedTuple):
    """Measured steps to ``tol`` on the grid ``lrs`` × ``alphas`` (nan: not within
    ``max_steps``, or diverged): ``steps[method]`` has shape (len(alphas), len(lrs))."""
    lrs: np.ndarray
    alphas: np.ndarray
    steps: dict
    condition_number: float
    tol: float

    def best(self, method: str) -> tuple[float, float, int]:
        """(ε, α, steps) of the grid point with the fewest steps (the first in row order)."""
        s = np.where(np.isnan(self.steps[method]), np.inf, self.steps[method])
        i, j = np.unravel_index(np.argmin(s), s.shape)
        return float(self.lrs[j]), float(self.alphas[i]), int(s[i, j])

    def best_is_interior(self, method: str) -> bool:
        """True if the best point lies off the grid's edges (so the grid is wide enough)."""
        eps, alpha, _ = self.best(method)
        return (self.lrs[0] < eps < self.lrs[-1]) and (self.alphas[0] < alpha < self.alphas[-1])


def _grid_first_below(lam: np.ndarray, lr: np.ndarray, alpha: np.ndarray, nesterov: bool,
                      tol: float, max_steps: int) -> np.ndarray:
    """Steps until ‖e_t‖ ≤ tol‖e₀‖ for every (ε, α) at once, from e₀ = (1, …, 1) on
    H = diag(lam); the lecture form of :func:`velocity_form_path`, vectorised over the grid."""
    e = np.ones((lr.size, lam.size))
    v = np.zeros_like(e)
    eps, a = lr.reshape(-1, 1), alpha.reshape(-1, 1)
    target = tol * tol * lam.size
    out = np.full(lr.size, np.nan)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(1, max_steps + 1):
            g = lam * (e + a * v) if nesterov else lam * e
            v = a * v - eps * g
            e = e + v
            sq = np.einsum("gn,gn->g", e, e)
            out[np.isnan(out) & (sq <= target)] = t
            if not np.isnan(out).any():
                break
    return out


@shared_result
def tuning_grid(condition_number: float = GRID["condition_number"], dim: int = GRID["dim"],
                tol: float = GRID["tol"], max_steps: int = GRID["max_steps"],
                lrs=GRID["lrs"], alphas=GRID["alphas"],
                methods=("heavy_ball", "nesterov")) -> TuningGrid:
    r"""The steps each method needs to shrink the error by ``tol`` on a quadratic with a
    Chebyshev spectrum in [1/κ, 1] (λ_max = 1, so ε is in units of 1/λ_max), for every
    (ε, α) of the grid: the tuning a practitioner would find by search, to set against the
    closed forms of :func:`tuned_hyperparameters`."""
    kappa = _check_number("condition_number", condition_number, 1.0, low_open=True)
    lam = spectrum(kappa, _check_int("dim", dim, 2)) / kappa
    lrs, alphas = np.asarray(lrs, dtype=np.float64), np.asarray(alphas, dtype=np.float64)
    E, A = np.meshgrid(lrs, alphas)  # (len(alphas), len(lrs))
    steps = {m: _grid_first_below(lam, E.ravel(), A.ravel(), m.startswith("nesterov"),
                                  tol, _check_int("max_steps", max_steps)).reshape(E.shape)
             for m in methods}
    return TuningGrid(lrs, alphas, steps, kappa, tol)


# ----------------------------------------------------------------------------------------
# 8. Beyond quadratics: where the heavy ball fails and Nesterov's guarantee holds
# ----------------------------------------------------------------------------------------
def lessard_grad(x, mu: float = LESSARD["mu"], L: float = LESSARD["L"]):
    r"""∇J of the piecewise quadratic of Lessard, Recht & Packard (2016, §4.6), for μ = 1 and
    L = 25 (elementwise, so x may hold many 1-D problems at once):

    .. math::  J'(x) = 25x \;(x < 1), \quad x + 24 \;(1 \le x < 2), \quad 25x - 24 \;(x \ge 2).

    J is μ-strongly convex and L-smooth (J'' ∈ {1, 25}), with its minimum at x* = 0.  The
    general form: L x, μx + (L − μ), L x − (L − μ) on the same pieces."""
    x = torch.as_tensor(x, dtype=torch.float64)
    return torch.where(x < 1, L * x, torch.where(x < 2, mu * x + (L - mu), L * x - (L - mu)))


def lessard_value(x, mu: float = LESSARD["mu"], L: float = LESSARD["L"]):
    """J of :func:`lessard_grad` (continuous, J(0) = 0 is the minimum)."""
    x = np.asarray(x, dtype=np.float64)
    d = L - mu
    return np.where(x < 1, L * x ** 2 / 2,
                    np.where(x < 2, mu * x ** 2 / 2 + d * x - d / 2,
                             L * x ** 2 / 2 - d * x + 3 * d / 2))


class BeyondQuadratics(NamedTuple):
    """Heavy ball and Nesterov, each with its classical tuning for [μ, L], from every start
    on the counterexample: ``paths[method]`` (steps + 1, starts) the iterates θ_t."""
    starts: np.ndarray
    paths: dict
    tunings: dict
    tol: float

    def converged(self, method: str) -> np.ndarray:
        """Per start: |θ_T| ≤ tol (θ* = 0)."""
        return np.abs(self.paths[method][-1]) <= self.tol

    def cycle(self, method: str = "heavy_ball", period: int = 3) -> np.ndarray:
        """The last ``period`` iterates of the first start that did not converge, sorted."""
        bad = np.flatnonzero(~self.converged(method))
        return np.sort(self.paths[method][-period:, bad[0]]) if bad.size else np.array([])

    def bound_ratio(self, method: str = "nesterov") -> float:
        r"""max over starts and t ≥ 1 of [J(θ_t) − J*] / [(1 − 1/√κ)^t (J(θ₀) − J* + μ‖θ₀‖²/2)]:
        at most 1 where Nesterov's guarantee (2004, Theorem 2.2.3) holds (t = 0 is left out:
        there the ratio is below 1 for any method)."""
        mu, L = LESSARD["mu"], LESSARD["L"]
        gap = lessard_value(self.paths[method])
        t = np.arange(len(gap))[:, None]
        bound = (1 - math.sqrt(mu / L)) ** t * (lessard_value(self.starts) + mu * self.starts ** 2 / 2)
        keep = self.starts != 0  # from θ₀ = θ* both sides are 0
        return float(np.max(gap[1:, keep] / bound[1:, keep]))


@shared_result
def beyond_quadratics(starts=LESSARD["starts"], steps: int = LESSARD["steps"],
                      tol: float = LESSARD["tol"]) -> BeyondQuadratics:
    """Run the heavy ball with Polyak's quadratic-optimal (ε, α) and Nesterov with
    ε = 1/L, α = (√κ − 1)/(√κ + 1) on :func:`lessard_grad`, from every start (v₀ = 0)."""
    mu, L = LESSARD["mu"], LESSARD["L"]
    starts = np.asarray(starts, dtype=np.float64)
    tunings = {m: tuned_hyperparameters(m, mu, L) for m in ("heavy_ball", "nesterov")}
    paths = {m: velocity_form_path(lessard_grad, starts, steps=steps, nesterov=(m == "nesterov"),
                                   **h).theta for m, h in tunings.items()}
    return BeyondQuadratics(starts, paths, tunings, float(tol))


# ----------------------------------------------------------------------------------------
# 9. A real network: momentum at a fixed effective step ε/(1 − α)
# ----------------------------------------------------------------------------------------
class EffectiveStepRuns(NamedTuple):
    """``train_loss`` and ``test_accuracy`` of shape (len(effective_lrs), len(alphas),
    len(seeds)) after the same number of steps; inf where a run diverged."""
    effective_lrs: tuple
    alphas: tuple
    seeds: tuple
    train_loss: np.ndarray
    test_accuracy: np.ndarray

    def median_loss(self) -> np.ndarray:
        """(effective_lrs, alphas) medians over seeds."""
        return np.median(self.train_loss, axis=-1)

    def best_effective_lr(self) -> dict:
        """α → the effective step with the lowest median loss."""
        m = self.median_loss()
        return {a: self.effective_lrs[int(np.argmin(m[:, j]))] for j, a in enumerate(self.alphas)}


@shared_result
def effective_step_experiment(**settings) -> EffectiveStepRuns:
    r"""An MLP (40 → 64 → 10, float64) on MNIST-1D trained with :func:`course_lib.train.train`
    by SGD with momentum α and ε = ε_eff (1 − α), for every effective step ε_eff of
    ``NET["effective_lrs"]``, α of ``NET["alphas"]`` and seed (θ₀ and batch order); each run
    has the same minibatch size and number of epochs.  Records the final cost on the whole
    training set and the test accuracy."""
    from course_lib.data import mnist1d
    from course_lib.models import mlp
    from course_lib.train import TrainingDiverged, evaluate, train
    from course_lib.utils import single_thread

    s = {**NET, **settings}
    data = mnist1d(s["num_samples"], seed=0)
    train_set = (data.X_train.double(), data.y_train)
    test_set = (data.X_test.double(), data.y_test)
    shape = (len(s["effective_lrs"]), len(s["alphas"]), len(s["seeds"]))
    loss, acc = np.full(shape, np.inf), np.full(shape, np.nan)
    loss_fn = torch.nn.CrossEntropyLoss()
    with single_thread():
        for i, eff in enumerate(s["effective_lrs"]):
            for j, alpha in enumerate(s["alphas"]):
                for k, seed in enumerate(s["seeds"]):
                    model = mlp(40, tuple(s["hidden"]), 10,
                                generator=torch.Generator().manual_seed(seed)).double()
                    opt = SGD(model.parameters(), lr=eff * (1 - alpha), momentum=alpha)
                    try:
                        train(model, loss_fn, opt, train_set, epochs=s["epochs"],
                              batch_size=s["batch_size"], seed=seed)
                    except TrainingDiverged:
                        continue
                    final = evaluate(model, loss_fn, train_set)["loss"]
                    if math.isfinite(final):
                        loss[i, j, k] = final
                        acc[i, j, k] = evaluate(model, loss_fn, test_set)["accuracy"]
    return EffectiveStepRuns(tuple(s["effective_lrs"]), tuple(s["alphas"]), tuple(s["seeds"]),
                             loss, acc)


# ----------------------------------------------------------------------------------------
# 10. Figures of sections 10.4, 10.6 and 10.7
# ----------------------------------------------------------------------------------------
def plot_terminal_velocity(terminal: dict, ax=None):
    """Measured step lengths (in units of ε‖g‖) against t on log-log axes, one curve per α of
    ``terminal`` (α → :class:`TerminalVelocity`), with the theory (1 − α^t)/(1 − α) dotted and
    the limit 1/(1 − α) dashed.  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for i, (a, tv) in enumerate(terminal.items()):
        t = np.arange(1, len(tv.step_lengths) + 1)
        ax.loglog(t, tv.step_lengths, color=f"C{i}", lw=3, alpha=0.4, label=rf"measured, $\alpha$ = {a}")
        ax.loglog(t, tv.theory, "k:", lw=1)
        ax.axhline(tv.terminal, color=f"C{i}", lw=0.8, ls="--")
    ax.plot([], [], "k:", label=r"theory $(1-\alpha^t)/(1-\alpha)$")
    ax.set_xlabel("step $t$")
    ax.set_ylabel(r"step length $\|\theta_t - \theta_{t-1}\|\ /\ \epsilon\|g\|$")
    ax.legend(fontsize="small")
    return ax


def plot_factor_map(lrs, alphas, factors, tuned: dict, ax=None,
                    levels=(0.85, 0.9, 0.95, 0.99)):
    r"""The heavy ball's convergence factor r over the grid ``lrs`` × ``alphas`` (``factors``
    of shape (len(alphas), len(lrs)); white where r ≥ 1), with level lines, the optimum
    (ε*, α*) (a star) and the best gradient descent (a dot) from ``tuned`` (method →
    :func:`tuned_hyperparameters` for ``"heavy_ball"`` and ``"gd"``, with the key
    ``"r"`` added: their factors).  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    shown = np.where(factors < 1, factors, np.nan)
    mesh = ax.pcolormesh(lrs, alphas, shown, cmap="viridis_r", shading="auto")
    lines = ax.contour(lrs, alphas, factors, levels=list(levels), colors="white", linewidths=0.7)
    ax.clabel(lines, fontsize=7)
    ax.figure.colorbar(mesh, ax=ax, label=r"convergence factor $r$ per step")
    hb, gd = tuned["heavy_ball"], tuned["gd"]
    ax.plot(hb["lr"], hb["momentum"], "r*", ms=14,
            label=rf"$(\epsilon^*, \alpha^*)$: $r$ = {hb['r']:.3f}")
    ax.plot(gd["lr"], 0, "ko", ms=7, label=rf"best gradient descent: $r$ = {gd['r']:.3f}")
    ax.set_xlabel(r"learning rate $\epsilon$ (in units of $1/\lambda_{\max}$)")
    ax.set_ylabel(r"momentum $\alpha$")
    ax.legend(loc="lower left", fontsize="small")
    return ax


def plot_rate_sweep(sweep: RateSweep, ax=None, methods=METHODS):
    r"""Measured steps to ``sweep.tol`` against κ on log-log axes, one curve per method with
    its fitted slope in the legend, and the predictions ln(1/tol)/(−ln r) dotted (CG: its
    bound).  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.8))
    slopes = sweep.slopes()
    for i, m in enumerate(methods):
        ax.loglog(sweep.kappas, sweep.steps[m], "o-", color=f"C{i}",
                  label=f"{METHOD_LABELS[m]} (slope {slopes[m]:.2f})")
        ax.loglog(sweep.kappas, sweep.predicted[m], ":", color=f"C{i}", lw=1.2)
    ax.plot([], [], "k:", label=r"predicted $\ln(1/\mathrm{tol})/(-\ln r)$ (CG: its bound)")
    ax.set_xlabel(r"condition number $\kappa$")
    ax.set_ylabel(rf"steps to shrink the error by $10^{{{round(math.log10(sweep.tol))}}}$")
    ax.legend(fontsize="small")
    return ax


def plot_tuning_grid(grid: TuningGrid, axes=None):
    """One panel per method: measured steps to tol over (ε, α) (log colour; white: not within
    the budget), the searched best (circle) and the closed-form tuning (star).  Returns axes."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    methods = list(grid.steps)
    if axes is None:
        _, axes = plt.subplots(1, len(methods), figsize=(6 * len(methods), 4.3), sharey=True)
    lo = 1.0 / grid.condition_number
    closed = {"heavy_ball": "heavy_ball", "nesterov": "nesterov_quadratic"}
    vmin = min(np.nanmin(grid.steps[m]) for m in methods)
    vmax = max(np.nanmax(grid.steps[m]) for m in methods)
    for ax, m in zip(axes, methods):
        mesh = ax.pcolormesh(grid.lrs, grid.alphas, grid.steps[m], shading="auto",
                             cmap="viridis", norm=LogNorm(vmin, vmax))
        eps_b, alpha_b, n_b = grid.best(m)
        ax.plot(eps_b, alpha_b, "o", mfc="none", mec="r", ms=11, mew=2,
                label=f"searched best: {n_b} steps")
        h = tuned_hyperparameters(closed[m], lo, 1.0)
        ax.plot(h["lr"], h["momentum"], "r*", ms=10,
                label=f"closed form ({METHOD_LABELS[closed[m]]})")
        ax.set_xlabel(r"learning rate $\epsilon$ (units of $1/\lambda_{\max}$)")
        ax.set_title(METHOD_LABELS[m])
        ax.legend(loc="lower left", fontsize="small")
    axes[0].set_ylabel(r"momentum $\alpha$")
    axes[-1].figure.colorbar(mesh, ax=list(axes), label=f"steps to shrink the error by {grid.tol:g}")
    return axes


def plot_beyond_quadratics(bq: BeyondQuadratics, axes=None, start: float = LESSARD["example_start"],
                           steps: int = 40):
    """Left: J with the heavy ball's 3-cycle on it.  Right: |θ_t − θ*| of both methods from
    ``start`` (first ``steps`` steps), log scale.  Returns the two Axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    ax, bx = axes
    x = np.linspace(-3, 4, 701)
    ax.plot(x, lessard_value(x), "k", lw=1, label="J (curvature 25, 1, 25 on three pieces)")
    cyc = bq.cycle()
    ax.plot(cyc, lessard_value(cyc), "o", color="C0", ms=8, label="heavy ball's 3-cycle")
    for xb in (1, 2):
        ax.axvline(xb, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel(r"$\theta$")
    ax.set_ylabel(r"$J(\theta)$")
    ax.set_title("A smooth, strongly convex J (Lessard et al., 2016)")
    ax.legend(fontsize="small")
    k = int(np.argmin(np.abs(bq.starts - start)))
    t = np.arange(steps + 1)
    for i, m in enumerate(("heavy_ball", "nesterov")):
        err = np.abs(bq.paths[m][: steps + 1, k])
        bx.semilogy(t, np.maximum(err, 1e-300), "o-", ms=3, color=f"C{i}",
                    label=f"{METHOD_LABELS[m]}, ε = {bq.tunings[m]['lr']:.3g}, α = {bq.tunings[m]['momentum']:.3g}")
    bx.set_ylim(1e-8, 20)
    bx.set_xlabel("step t")
    bx.set_ylabel(r"$|\theta_t - \theta^*|$")
    bx.set_title(rf"From $\theta_0$ = {bq.starts[k]:g}: the heavy ball cycles, Nesterov converges")
    bx.legend(fontsize="small")
    return ax, bx


def plot_effective_step(runs: EffectiveStepRuns, ax=None):
    """Median (and each seed's) final training cost against ε/(1 − α), one curve per α;
    diverged runs are left out.  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    eff = np.asarray(runs.effective_lrs)
    med = runs.median_loss()
    for j, a in enumerate(runs.alphas):
        c = f"C{j}"
        for k in range(len(runs.seeds)):
            ax.plot(eff, runs.train_loss[:, j, k], ".", color=c, alpha=0.4)
        ok = np.isfinite(med[:, j])
        ax.plot(eff[ok], med[ok, j], "o-", color=c,
                label=rf"$\alpha$ = {a} ($\epsilon$ = {1 - a:g} × effective step), median")
    ax.set_xscale("log")
    ax.set_xlabel(r"effective step $\epsilon/(1-\alpha)$")
    ax.set_ylabel("training cost after the same number of steps")
    ax.legend(fontsize="small")
    return ax
