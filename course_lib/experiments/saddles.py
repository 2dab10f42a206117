r"""Saddle points, plateaus and the census of critical points (Deep Learning book §8.2.3).

A critical point θ (∇J(θ) = 0) is classified by the eigenvalues of its Hessian H: all
positive, a minimum; all negative, a maximum; both signs, a saddle.  Its *index* is the
fraction of negative eigenvalues, the share of directions in which J goes down.

This module holds the chapter's experiments as functions, so that the notebook plots what
they return and ``tests/test_ch05_saddles.py`` asserts the same numbers:

==========================================  ==============================================
function                                    what it measures
==========================================  ==============================================
:func:`hessian_index`,                      the index of H, and minimum / maximum / saddle
:func:`classify_critical_point`
:func:`minima_fraction_by_dimension`        P(H ≻ 0) for random symmetric (GOE) Hessians
:class:`RandomField`,                       critical points of a random smooth function,
:func:`find_critical_points`                their cost J and index
:class:`DeepLinearNetwork`,                 the exact critical points of a linear network
:func:`census`                              (Baldi & Hornik, 1989), cost and index
:func:`gradient_descent`,                   gradient descent / Newton / saddle-free Newton
:func:`saddle_methods`,                     near a saddle; the time gradient descent spends
:func:`escape_steps`                        there
:func:`plateau_escape_steps`,               steps lost on a plateau, measured and predicted
:func:`plateau_time_estimate`,
:func:`plateau_lengths`
==========================================  ==============================================

The module-level constants (``GOE_DIMS``, ``SADDLE_START``, …) are the settings the chapter
uses; the notebook and the tests both import them, so the two cannot drift apart.

References: Dauphin, Pascanu, Gulcehre, Cho, Ganguli & Bengio (2014), *Identifying and
attacking the saddle point problem in high-dimensional non-convex optimization*, NeurIPS;
Baldi & Hornik (1989), *Neural networks and principal component analysis: learning from
examples without local minima*, Neural Networks 2(1); Saxe, McClelland & Ganguli (2014),
*Exact solutions to the nonlinear dynamics of learning in deep linear neural networks*,
ICLR (arXiv:1312.6120, 2013); Bray & Dean (2007), *Statistics of critical points of
Gaussian fields on large-dimensional spaces*, Phys. Rev. Lett. 98; Dean & Majumdar (2006),
*Large deviations of extreme eigenvalues of random matrices*, Phys. Rev. Lett. 97;
Dumitriu & Edelman (2002), *Matrix models for beta ensembles*, J. Math. Phys. 43.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

from course_lib.landscapes import Landscape, Plateau, Saddle, Trajectory, newton_path
from course_lib.utils import shared_result

__all__ = [
    "hessian_index", "classify_critical_point", "goe_matrices", "fraction_positive_definite",
    "MinimaCensus", "minima_fraction_by_dimension", "RandomField", "CriticalPoints", "census",
    "find_critical_points", "DeepLinearNetwork", "gradient_descent", "distance_to",
    "steps_within", "saddle_methods", "EscapeTimes", "escape_steps", "predicted_escape_slope",
    "plateau_escape_steps", "plateau_time_estimate", "plateau_lengths",
    "WhitenedData", "whitened_mnist1d", "linear_mlp", "half_squared_error", "escape_threshold",
    "deep_escape_step", "DeepEscape", "predicted_deep_escape", "deep_escape_times",
    "CurvatureProbe", "probe_curvature", "DeepCurve", "deep_learning_curve",
    "deep_plateau_probes", "plot_deep_linear", "plot_saddle_views", "plot_minima_census",
    "plot_field_critical_points", "plot_index_vs_cost", "plot_linear_census", "plot_saddle_runs",
    "plot_escape_times", "plot_plateau", "plot_linear_stages",
]

# ------------------------------------------------------------------------------------------
# The chapter's settings (imported by the notebook and by the tests)
# ------------------------------------------------------------------------------------------
#: dimensions n and Monte Carlo sample sizes for P(a random Hessian is positive definite)
GOE_DIMS = tuple(range(1, 8))
GOE_SAMPLES = 20_000
DIRECT_DIMS = (1, 2, 3, 4, 5)
DIRECT_SAMPLES = 100_000
#: the saddle J = x² − y² + y⁴/4: start close to its stable manifold (the x-axis), ε, steps
SADDLE_START = (1.5, 1e-3)
SADDLE_LR = 0.1
SADDLE_STEPS = 60
SADDLE_RADIUS = 0.5
SADDLE_NOISE = 1e-3  # σ of the gradient noise that pushes gradient descent off the saddle
ESCAPE_PERTURBATIONS = tuple(10.0 ** -k for k in range(2, 11))
#: the random smooth function whose critical points we classify
FIELD_2D = dict(dim=2, features=60, length_scale=1.0, seed=5)
FIELD_2D_BOX = (-3.0, 3.0)
FIELD_2D_STARTS = 1000
FIELD = dict(dim=4, features=100, length_scale=1.0, seed=0)
FIELD_BOX = (-2.0, 2.0)
FIELD_STARTS = 1500
#: the deep linear network: target singular values s_i, hidden width p, GD from a small start
LINEAR_NET = dict(singular_values=(3.0, 1.5, 0.75, 0.3), hidden=2)
LINEAR_INIT_SCALE = 1e-4
LINEAR_LR = 0.02
LINEAR_STEPS = 800
#: the plateau J = tanh(‖θ‖²/w²): start radii, ε, the loss that counts as "off the plateau"
PLATEAU_RADII = (1.6, 1.8, 2.0, 2.2, 2.4, 2.6)
PLATEAU_LR = 0.5
PLATEAU_THRESHOLD = 0.5
PLATEAU_MAX_STEPS = 8_000


# ------------------------------------------------------------------------------------------
# Input checks
# ------------------------------------------------------------------------------------------
def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"Invalid {name}: {value!r} (expected an int >= {low})")
    return int(value)


def _check_positive(name: str, value) -> float:
    if not isinstance(value, (int, float, np.floating, np.integer)) or not value > 0:
        raise ValueError(f"Invalid {name}: {value!r} (expected a number > 0)")
    return float(value)


def _as_float64(x) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


# ------------------------------------------------------------------------------------------
# What kind of critical point is it?
# ------------------------------------------------------------------------------------------
def _signs(H, tol: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(number of eigenvalues < −cut, number > +cut) with cut = tol·max|λ|, per matrix."""
    H = _as_float64(H)
    if H.ndim < 2 or H.shape[-1] != H.shape[-2]:
        raise ValueError(f"Invalid H: shape {tuple(H.shape)} (expected (..., n, n))")
    if not tol >= 0:
        raise ValueError(f"Invalid tol: {tol!r} (expected >= 0)")
    lam = torch.linalg.eigvalsh((H + H.mT) / 2)
    cut = tol * lam.abs().amax(-1, keepdim=True)
    return (lam < -cut).sum(-1), (lam > cut).sum(-1)


def hessian_index(H, tol: float = 1e-8):
    r"""The index of a critical point: the fraction of negative eigenvalues of H.

    .. math::

        \mathrm{index}(H) = \frac{\#\{i : \lambda_i(H) < 0\}}{n}

    0 at a minimum, 1 at a maximum, in between at a saddle.  Eigenvalues with
    |λ| ≤ ``tol``·max|λ| count as zero (flat directions, e.g. symmetries of a network).

    Arguments: ``H`` (n, n) or a batch (..., n, n), symmetric (tensor or array).
    Returns a float for one matrix, a NumPy array (...) for a batch.
    """
    neg, _ = _signs(H, tol)
    index = neg.to(torch.float64) / _as_float64(H).shape[-1]
    return float(index) if index.ndim == 0 else index.numpy()


def classify_critical_point(H, tol: float = 1e-8) -> str:
    """'minimum' (all λ > 0), 'maximum' (all λ < 0), 'saddle' (both signs) or 'degenerate'
    (some λ ≈ 0 and one sign only: the second-order test cannot decide).  ``H`` is (n, n);
    ``tol`` as in :func:`hessian_index`."""
    H = _as_float64(H)
    if H.ndim != 2:
        raise ValueError(f"Invalid H: shape {tuple(H.shape)} (expected one (n, n) matrix)")
    neg, pos = (int(c) for c in _signs(H, tol))
    n = H.shape[-1]
    if neg and pos:
        return "saddle"
    if pos == n:
        return "minimum"
    if neg == n:
        return "maximum"
    return "degenerate"


# ------------------------------------------------------------------------------------------
# Random Hessians: how rare is "all eigenvalues positive"?
# ------------------------------------------------------------------------------------------
def goe_matrices(n: int, samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""``samples`` random symmetric n × n matrices from the Gaussian orthogonal ensemble.

    A = (G + Gᵀ)/2 with G_ij ~ N(0, 1) i.i.d.: A_ii ~ N(0, 1), A_ij ~ N(0, ½), density
    ∝ exp(−tr A²/2), invariant under rotations A → QAQᵀ.  Returns (samples, n, n) float64.
    """
    n, samples = _check_int("n", n, 1), _check_int("samples", samples, 1)
    G = torch.randn(samples, n, n, generator=generator, dtype=torch.float64)
    return (G + G.mT) / 2


def _chi(df: int, samples: int, gen: torch.Generator) -> torch.Tensor:
    """Samples of a χ variable with ``df`` degrees of freedom: the norm of a Gaussian vector."""
    return torch.randn(samples, df, generator=gen, dtype=torch.float64).norm(dim=-1)


def fraction_positive_definite(n: int, samples: int, seed: int = 0,
                               method: str = "sequential") -> tuple[float, float]:
    r"""P(A ≻ 0) for a GOE matrix A (:func:`goe_matrices`): (estimate, standard error).

    ``method="direct"`` draws ``samples`` matrices and counts those with a Cholesky
    factorisation (A ≻ 0).  Unbiased, but hopeless once P ≲ 10/``samples``: at n = 6 it
    would need millions of draws.

    ``method="sequential"`` reaches tiny probabilities with few samples.  The eigenvalues of
    a GOE matrix have the same law as those of the tridiagonal matrix with diagonal
    a_k ~ N(0, 1) and off-diagonal b_k ~ χ_{n−k}/√2 (Dumitriu & Edelman, 2002).  T ≻ 0
    iff every pivot of its LDLᵀ factorisation is positive,

    .. math::

        d_1 = a_1 > 0, \qquad d_k = a_k - b_{k-1}^2 / d_{k-1} > 0,

    i.e. a_k > t_k = b_{k−1}²/d_{k−1}.  Instead of waiting for all n events by chance, we
    draw each a_k from N(0, 1) *conditioned* on a_k > t_k and multiply a weight by the
    probability of that event, w = Π_k P(a_k > t_k) = Π_k Φ(−t_k).  Then E[w] = P(T ≻ 0)
    exactly (sequential importance sampling, the idea of the GHK simulator: Geweke, 1991;
    Keane, 1994).  For n = 1 every weight is ½: no noise at all.
    """
    n, samples = _check_int("n", n, 1), _check_int("samples", samples, 2)
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    if method == "direct":
        hits, done = 0, 0
        while done < samples:  # chunks of 50 000 keep the memory small
            k = min(50_000, samples - done)
            A = goe_matrices(n, k, gen)
            hits += int((torch.linalg.cholesky_ex(A).info == 0).sum())
            done += k
        p = hits / samples
        return p, math.sqrt(p * (1 - p) / samples)
    if method != "sequential":
        raise ValueError(f"Invalid method: {method!r} (expected 'direct' or 'sequential')")
    w = torch.ones(samples, dtype=torch.float64)
    d = None
    for k in range(n):  # pivot k of the LDLᵀ factorisation (0-based)
        t = (torch.zeros(samples, dtype=torch.float64) if k == 0
             else (_chi(n - k, samples, gen) / math.sqrt(2)) ** 2 / d)
        tail = torch.special.ndtr(-t)  # P(a_k > t_k), a_k ~ N(0, 1)
        u = torch.rand(samples, generator=gen, dtype=torch.float64).clamp_min(1e-300)
        a = -torch.special.ndtri(u * tail)  # inverse CDF: a_k ~ N(0, 1) given a_k > t_k
        w = w * tail
        d = a - t  # > 0 by construction
    return float(w.mean()), float(w.std() / math.sqrt(samples))


class MinimaCensus(NamedTuple):
    """P(a random n × n Hessian has only positive eigenvalues), for several n.

    Attributes: ``dims`` (k,), ``p_min`` (k,) the probabilities, ``stderr`` (k,) their
    standard errors.  Maxima are exactly as likely as minima (A → −A); the rest are saddles.
    """

    dims: np.ndarray
    p_min: np.ndarray
    stderr: np.ndarray

    @property
    def saddles_per_minimum(self) -> np.ndarray:
        """(1 − 2p)/p: saddles per minimum, P(saddle)/P(minimum)."""
        return (1 - 2 * self.p_min) / self.p_min

    @property
    def log_slope(self) -> float:
        """The least-squares slope of ln P against n (negative: exponential decay)."""
        return float(np.polyfit(self.dims, np.log(self.p_min), 1)[0])


@shared_result
def minima_fraction_by_dimension(dims: Sequence[int] = GOE_DIMS, samples: int = GOE_SAMPLES,
                                 seed: int = 0, method: str = "sequential") -> MinimaCensus:
    """:func:`fraction_positive_definite` for each n in ``dims`` (seed ``seed + n``)."""
    dims = [_check_int("dims entry", n, 1) for n in dims]
    if not dims:
        raise ValueError("Invalid dims: empty")
    est = [fraction_positive_definite(n, samples, seed + n, method) for n in dims]
    return MinimaCensus(np.array(dims), np.array([e[0] for e in est]),
                        np.array([e[1] for e in est]))


# ------------------------------------------------------------------------------------------
# A random smooth function and its critical points
# ------------------------------------------------------------------------------------------
class RandomField(Landscape):
    r"""A random smooth function on ℝⁿ: a sum of M random cosines (random Fourier features).

    .. math::

        J(\theta) = \sqrt{2/M}\, \sum_{m=1}^{M} a_m \cos(w_m^\top\theta + b_m), \qquad
        a_m \sim N(0, 1),\ w_m \sim N(0, I/\ell^2),\ b_m \sim U[0, 2\pi).

    For large M it is a sample of a Gaussian process with covariance
    exp(−‖θ − θ'‖²/2ℓ²) (Rahimi & Recht, 2007): a landscape full of hills, valleys and
    passes, the kind of function Bray & Dean (2007) and Dauphin et al. (2014) use to think
    about high-dimensional error surfaces.  ∇J = −√(2/M) Σ a_m sin(·) w_m and
    H = −√(2/M) Σ a_m cos(·) w_m w_mᵀ.  Its critical points are not known in closed form;
    :func:`find_critical_points` finds them.

    Arguments and symbols: ``dim`` → n, ``features`` → M, ``length_scale`` → ℓ, ``seed``.
    """

    name = "random field"

    def __init__(self, dim: int = 2, features: int = 60, length_scale: float = 1.0,
                 seed: int = 0) -> None:
        self.dim = _check_int("dim", dim, 1)
        super().__init__()
        self.features = _check_int("features", features, 1)
        self.length_scale = _check_positive("length_scale", length_scale)
        self.seed = _check_int("seed", seed, 0)
        gen = torch.Generator().manual_seed(seed)
        self.a = torch.randn(features, generator=gen, dtype=torch.float64)
        self.w = torch.randn(features, dim, generator=gen, dtype=torch.float64) / length_scale
        self.b = 2 * math.pi * torch.rand(features, generator=gen, dtype=torch.float64)
        self.c = math.sqrt(2.0 / features)
        self.bounds = ((-3.0 * length_scale, 3.0 * length_scale),) * 2
        self.min_value = -math.inf  # unknown; plots then use linear contour levels

    def _phase(self, theta):
        return theta @ self.w.T.to(theta) + self.b.to(theta)  # (..., M)

    def value(self, theta):
        return self.c * (self.a.to(theta) * torch.cos(self._phase(theta))).sum(-1)

    def grad(self, theta):
        return -self.c * (self.a.to(theta) * torch.sin(self._phase(theta))) @ self.w.to(theta)

    def hessian(self, theta):
        coef = -self.c * self.a.to(theta) * torch.cos(self._phase(theta))  # (..., M)
        w = self.w.to(theta)
        return torch.einsum("...m,mi,mj->...ij", coef, w, w)

    def _repr_args(self):
        return {"dim": self.dim, "features": self.features,
                "length_scale": self.length_scale, "seed": self.seed}


@dataclass
class CriticalPoints:
    """Critical points of a landscape with their cost and Hessian index.

    Attributes:
        points: (m, n) the critical points, sorted by cost.
        values: (m,) J at each.
        n_negative: (m,) the number of negative Hessian eigenvalues.
        dim: n.
        labels: optional names of the points (e.g. the subsets of a linear network).
    """

    points: np.ndarray
    values: np.ndarray
    n_negative: np.ndarray
    dim: int
    labels: list | None = None

    @property
    def index(self) -> np.ndarray:
        """(m,) the fraction of negative eigenvalues at each point."""
        return self.n_negative / self.dim

    @property
    def correlation(self) -> float:
        """Pearson's correlation between the cost J and the index."""
        return float(np.corrcoef(self.values, self.index)[0, 1])

    def counts(self) -> np.ndarray:
        """(n + 1,) how many points have 0, 1, …, n negative eigenvalues."""
        return np.bincount(self.n_negative, minlength=self.dim + 1)

    def mean_value_by_count(self) -> np.ndarray:
        """(n + 1,) the mean cost of the points with k negative eigenvalues (NaN if none)."""
        return np.array([self.values[self.n_negative == k].mean()
                         if (self.n_negative == k).any() else np.nan
                         for k in range(self.dim + 1)])

    def __len__(self) -> int:
        return len(self.values)


def census(landscape: Landscape, points, labels: list | None = None,
           tol: float = 1e-8) -> CriticalPoints:
    """Cost and number of negative Hessian eigenvalues (|λ| ≤ ``tol``·max|λ| counts as
    zero) at the given critical points (m, n), sorted by cost."""
    pts = _as_float64(points).reshape(-1, landscape.dim)
    values = landscape.value(pts)
    neg, _ = _signs(landscape.hessian(pts), tol)
    order = torch.argsort(values, stable=True)
    return CriticalPoints(pts[order].numpy(), values[order].numpy(),
                          neg[order].numpy().astype(int), landscape.dim,
                          None if labels is None else [labels[i] for i in order.tolist()])


@shared_result
def find_critical_points(landscape: Landscape, starts=FIELD_STARTS, box=FIELD_BOX,
                         iters: int = 25, tol: float = 1e-9, max_step: float = 0.5,
                         merge_tol: float = 1e-6, seed: int = 0) -> CriticalPoints:
    r"""Critical points of every kind, by Newton's method on ∇J = 0 from many starts.

    .. math::

        \theta \leftarrow \theta - H(\theta)^{-1} \nabla J(\theta)

    Newton's step goes to the critical point of the local quadratic model *whatever its
    kind* (the flaw that makes it a poor minimiser is what we want here), so from starts
    spread over the box it finds minima, saddles and maxima alike.  All starts run in one
    batch; a step longer than ``max_step`` is shortened to that length (a singular H would
    otherwise throw a start far away).  After ``iters`` steps we keep the points inside
    ``box`` with ‖∇J‖ < ``tol``, merge those closer than ``merge_tol`` and classify them
    with :func:`census`.

    Arguments: ``starts`` an int (that many uniform starts in the box, drawn with ``seed``)
    or (k, n) start points; ``box`` = (low, high) for every coordinate.
    """
    low, high = (float(b) for b in box)
    if not low < high:
        raise ValueError(f"Invalid box: {box!r} (expected (low, high) with low < high)")
    _check_int("iters", iters, 1)
    _check_positive("tol", tol)
    _check_positive("max_step", max_step)
    if isinstance(starts, (int, np.integer)):
        k = _check_int("starts", starts, 1)
        gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        theta = low + (high - low) * torch.rand(k, landscape.dim, generator=gen,
                                                dtype=torch.float64)
    else:
        theta = _as_float64(starts).reshape(-1, landscape.dim).clone()
    for _ in range(iters):
        g, H = landscape.grad(theta), landscape.hessian(theta)
        step, info = torch.linalg.solve_ex(H, g.unsqueeze(-1))
        step = step.squeeze(-1)
        ok = (info == 0) & torch.isfinite(step).all(-1)
        step = torch.where(ok.unsqueeze(-1), step, torch.zeros_like(step))
        length = step.norm(dim=-1, keepdim=True)
        step = step * torch.clamp(max_step / length.clamp_min(1e-300), max=1.0)
        theta = theta - step
    g = landscape.grad(theta)
    keep = ((g.norm(dim=-1) < tol) & (theta >= low).all(-1) & (theta <= high).all(-1)
            & torch.isfinite(theta).all(-1))
    found = theta[keep]
    # merge duplicates: walk through the points in a fixed order (by cost), keep the first of
    # each cluster; NumPy, because this loop is short per point but runs thousands of times
    found = found[torch.argsort(landscape.value(found), stable=True)].numpy()
    unique = np.empty_like(found)
    m = 0
    for p in found:
        if m == 0 or np.sqrt(((unique[:m] - p) ** 2).sum(-1)).min() > merge_tol:
            unique[m] = p
            m += 1
    return census(landscape, unique[:m])


# ------------------------------------------------------------------------------------------
# A deep linear network: critical points known exactly
# ------------------------------------------------------------------------------------------
class DeepLinearNetwork(Landscape):
    r"""The cost of a two-layer linear network ŷ = W₂W₁x as a landscape (Baldi & Hornik, 1989).

    .. math::

        J(W_1, W_2) = \tfrac12 \| W_2 W_1 - M \|_F^2, \qquad M = \mathrm{diag}(s_1, \dots, s_n),

    the expected squared error for whitened inputs (E[xxᵀ] = I) and targets y = Mx (rotate
    inputs and outputs to make any M diagonal).  W₁ is p × n, W₂ is n × p, p < n hidden
    units; θ = (vec W₁, vec W₂) row by row, of dimension 2pn.

    Critical points (Baldi & Hornik, 1989): W₂W₁ = Σ_{i∈S} s_i e_i e_iᵀ for any set S of at
    most p of the n modes, at cost ½ Σ_{i∉S} s_i².  The only minima are the sets of the p
    largest s_i (global, cost ½ Σ_{i>p} s_i²); every other critical point is a saddle, and
    leaving out a larger s_i costs more *and* opens more directions of descent.  From a small
    random start, gradient descent visits the saddles S = ∅, {1}, {1, 2}, … in turn and
    stalls on a plateau near each (Saxe, McClelland & Ganguli, 2014).

    ∇_{W₁}J = W₂ᵀR, ∇_{W₂}J = RW₁ᵀ with R = W₂W₁ − M; the Hessian blocks are
    ∂²J/∂W₁∂W₁ = (W₂ᵀW₂) ⊗ I, ∂²J/∂W₂∂W₂ = I ⊗ (W₁W₁ᵀ),
    ∂²J/∂(W₁)_{aj}∂(W₂)_{ib} = [a = b] R_{ij} + (W₂)_{ia}(W₁)_{bj}.

    Arguments and symbols: ``singular_values`` → s₁ > s₂ > … > s_n > 0, ``hidden`` → p.
    """

    name = "deep linear network"

    def __init__(self, singular_values: Sequence[float] = (3.0, 1.5, 0.75, 0.3),
                 hidden: int = 2) -> None:
        s = [float(v) for v in singular_values]
        if len(s) < 2 or any(v <= 0 for v in s) or any(a <= b for a, b in zip(s, s[1:])):
            raise ValueError(f"Invalid singular_values: {tuple(singular_values)!r} (expected at "
                             "least two, positive and strictly decreasing)")
        self.n = len(s)
        self.hidden = _check_int("hidden", hidden, 1)
        if hidden >= self.n:
            raise ValueError(f"Invalid hidden: {hidden} (expected < {self.n}, the number of "
                             "singular values, so that the network is a bottleneck)")
        self.dim = 2 * self.hidden * self.n
        super().__init__()
        self.s = torch.tensor(s, dtype=torch.float64)
        self.M = torch.diag(self.s)
        best = tuple(range(self.hidden))
        self.minimizers = self.critical_point(best).reshape(1, -1)
        self.min_value = self.cost(best)
        self.subsets = [S for k in range(self.hidden + 1)
                        for S in itertools.combinations(range(self.n), k)]
        self.saddles = torch.stack([self.critical_point(S) for S in self.subsets if S != best])
        self.start = self.random_start()

    def split(self, theta):
        """θ (..., 2pn) → (W₁ (..., p, n), W₂ (..., n, p))."""
        p, n = self.hidden, self.n
        return (theta[..., : p * n].reshape(*theta.shape[:-1], p, n),
                theta[..., p * n:].reshape(*theta.shape[:-1], n, p))

    def _residual(self, theta):
        W1, W2 = self.split(theta)
        return W1, W2, W2 @ W1 - self.M.to(theta)

    def value(self, theta):
        return 0.5 * (self._residual(theta)[2] ** 2).sum((-2, -1))

    def grad(self, theta):
        W1, W2, R = self._residual(theta)
        return torch.cat([(W2.mT @ R).flatten(-2), (R @ W1.mT).flatten(-2)], dim=-1)

    def hessian(self, theta):
        W1, W2, R = self._residual(theta)
        p, n, batch = self.hidden, self.n, theta.shape[:-1]
        I_n = torch.eye(n, dtype=theta.dtype)
        I_p = torch.eye(p, dtype=theta.dtype)
        H11 = torch.einsum("...ab,jk->...ajbk", W2.mT @ W2, I_n).reshape(*batch, p * n, p * n)
        H22 = torch.einsum("il,...ab->...ialb", I_n, W1 @ W1.mT).reshape(*batch, n * p, n * p)
        H12 = (torch.einsum("ab,...ij->...ajib", I_p, R)
               + torch.einsum("...ia,...bj->...ajib", W2, W1)).reshape(*batch, p * n, n * p)
        return torch.cat([torch.cat([H11, H12], -1), torch.cat([H12.mT, H22], -1)], -2)

    def critical_point(self, subset: Sequence[int]) -> torch.Tensor:
        """θ with W₂W₁ = Σ_{i∈S} s_i e_i e_iᵀ: hidden unit k carries mode S[k] with weight
        √s on both layers (balanced); the other hidden units are zero."""
        subset = tuple(subset)
        if len(subset) > self.hidden or len(set(subset)) != len(subset) or any(
                not 0 <= i < self.n for i in subset):
            raise ValueError(f"Invalid subset: {subset!r} (expected at most {self.hidden} "
                             f"distinct modes in 0..{self.n - 1})")
        W1 = torch.zeros(self.hidden, self.n, dtype=torch.float64)
        W2 = torch.zeros(self.n, self.hidden, dtype=torch.float64)
        for k, i in enumerate(subset):
            W1[k, i] = W2[i, k] = math.sqrt(self.s[i])
        return torch.cat([W1.flatten(), W2.flatten()])

    def cost(self, subset: Sequence[int]) -> float:
        """½ Σ_{i∉S} s_i², the cost at the critical point of the modes S."""
        left_out = [i for i in range(self.n) if i not in set(subset)]
        return 0.5 * float((self.s[left_out] ** 2).sum())

    def critical_points(self, tol: float = 1e-8) -> CriticalPoints:
        """:func:`census` of all critical points W₂W₁ = Σ_{i∈S} s_i e_i e_iᵀ, |S| ≤ p, labelled
        by S (modes numbered from 1, "∅" for none)."""
        pts = torch.stack([self.critical_point(S) for S in self.subsets])
        labels = ["{" + ", ".join(str(i + 1) for i in S) + "}" if S else "∅" for S in self.subsets]
        return census(self, pts, labels, tol)

    def random_start(self, scale: float = LINEAR_INIT_SCALE, seed: int = 0) -> torch.Tensor:
        """θ₀ with i.i.d. N(0, scale²) entries: a small random initialisation."""
        _check_positive("scale", scale)
        gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
        return scale * torch.randn(self.dim, generator=gen, dtype=torch.float64)

    def _repr_args(self):
        return {"singular_values": tuple(self.s.tolist()), "hidden": self.hidden}


# ------------------------------------------------------------------------------------------
# Optimizers near a saddle
# ------------------------------------------------------------------------------------------
def gradient_descent(landscape: Landscape, starts, steps: int, lr: float, noise: float = 0.0,
                     seed: int = 0):
    r"""Gradient descent θ ← θ − ε(∇J(θ) + σξ_t) from many starts at once.

    With σ = ``noise`` = 0 (the default) this is plain gradient descent, the same iterates as
    ``run_optimizer(landscape, SGD, start, steps, lr=lr)`` (checked in the tests), but all
    starts move in one batch using the landscape's hand-written gradient: hundreds of times
    faster than the autograd loop when thousands of steps are needed (plateaus).  With σ > 0,
    ξ_t ~ N(0, I) is fresh Gaussian noise at every step (drawn with ``seed``), a stand-in for
    the noise of minibatch gradients.  No divergence check: use a stable ε.

    Arguments: ``starts`` (n,) for one run or (k, n) for k runs; ``steps`` → T; ``lr`` → ε;
    ``noise`` → σ ≥ 0.  The recorded losses and gradient norms are those of J itself.
    Returns a :class:`~course_lib.landscapes.Trajectory`, or a list of k of them.
    """
    steps = _check_int("steps", steps, 0)
    lr = _check_positive("lr", lr)
    if not (isinstance(noise, (int, float)) and noise >= 0):
        raise ValueError(f"Invalid noise: {noise!r} (expected a number >= 0)")
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    theta = _as_float64(starts)
    single = theta.ndim == 1
    theta = theta.reshape(-1, landscape.dim).clone()
    path = torch.empty(steps + 1, *theta.shape, dtype=torch.float64)
    path[0] = theta
    for t in range(steps):
        g = landscape.grad(theta)
        if noise > 0:
            g = g + noise * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
        theta = theta - lr * g
        path[t + 1] = theta
    losses = landscape.value(path).T.numpy()  # (k, T + 1)
    grad_norms = landscape.grad(path).norm(dim=-1).T.numpy()
    name = "gradient descent" if noise == 0 else f"gradient descent, noise σ = {noise:g}"
    runs = [Trajectory(path[:, i].numpy(), losses[i], grad_norms[i], np.full(steps, lr),
                       False, name) for i in range(theta.shape[0])]
    return runs[0] if single else runs


def distance_to(traj: Trajectory, point) -> np.ndarray:
    """(T + 1,) the distance ‖θ_t − point‖ of every iterate."""
    return np.linalg.norm(np.asarray(traj.path) - np.asarray(point, dtype=float), axis=-1)


def steps_within(traj: Trajectory, point, radius: float) -> int:
    """How many iterates lie within ``radius`` of ``point``: the time spent near it."""
    return int((distance_to(traj, point) < _check_positive("radius", radius)).sum())


@shared_result
def saddle_methods(start=SADDLE_START, steps: int = SADDLE_STEPS, lr: float = SADDLE_LR,
                   landscape: Landscape | None = None) -> dict[str, Trajectory]:
    r"""Gradient descent, Newton and saddle-free Newton from the same start.

    On :class:`~course_lib.landscapes.Saddle` (the default) from a start near the x-axis:

    - gradient descent (ε = ``lr``) is pulled in along x (curvature +2) and pushed out along
      y (curvature −2): it slows down near the saddle, then escapes;
    - Newton, θ ← θ − H⁻¹g, jumps to the critical point of the local quadratic model: the
      saddle itself, where it stays;
    - saddle-free Newton, θ ← θ − |H|⁻¹g, flips the negative curvature and goes downhill.

    Returns label → :class:`~course_lib.landscapes.Trajectory` (``steps`` updates each).
    """
    J = Saddle() if landscape is None else landscape
    start = _as_float64(start)
    return {"gradient descent": gradient_descent(J, start, steps, lr),
            "Newton": newton_path(J, start, steps),
            "saddle-free Newton": newton_path(J, start, steps, saddle_free=True)}


class EscapeTimes(NamedTuple):
    """Time gradient descent spends near a saddle, against the start's distance v₀ from the
    stable manifold.

    Attributes: ``perturbations`` (k,) the v₀'s, ``steps`` (k,) iterates within the radius,
    ``slope`` the least-squares slope of steps against ln(1/v₀), ``predicted_slope``
    1/ln(1 + ε|λ_min|) (:func:`predicted_escape_slope`).
    """

    perturbations: np.ndarray
    steps: np.ndarray
    slope: float
    predicted_slope: float


def escape_steps(perturbations: Sequence[float] = ESCAPE_PERTURBATIONS, lr: float = SADDLE_LR,
                 x0: float = SADDLE_START[0], radius: float = SADDLE_RADIUS,
                 max_steps: int = 400) -> EscapeTimes:
    """Steps gradient descent spends within ``radius`` of the saddle of
    :class:`~course_lib.landscapes.Saddle`, started at (x0, v₀) for each v₀ in
    ``perturbations`` (the distance from the stable manifold y = 0), with ε = ``lr`` and at
    most ``max_steps`` steps; the slope is fitted over all v₀'s."""
    offsets = np.array([_check_positive("perturbation", d) for d in perturbations])
    if len(offsets) < 2:
        raise ValueError(f"Invalid perturbations: {tuple(perturbations)!r} (expected >= 2)")
    J = Saddle()
    saddle = J.saddles[0]
    starts = torch.tensor([[x0, d] for d in offsets], dtype=torch.float64)
    runs = gradient_descent(J, starts, _check_int("max_steps", max_steps, 1), lr)
    steps = np.array([steps_within(r, saddle.numpy(), radius) for r in runs])
    slope = float(np.polyfit(np.log(1 / offsets), steps, 1)[0])
    return EscapeTimes(offsets, steps, slope, predicted_escape_slope(J, saddle, lr))


def predicted_escape_slope(landscape: Landscape, saddle, lr: float) -> float:
    r"""Extra steps per factor e of smaller perturbation v₀: 1 / ln(1 + ε|λ_min|).

    Near a saddle, gradient descent multiplies the component along the eigenvector of the
    negative eigenvalue λ_min by (1 − ελ_min) = 1 + ε|λ_min| per step, so leaving a ball
    from a distance v₀ takes ln(r/v₀)/ln(1 + ε|λ_min|) steps: linear in ln(1/v₀).
    """
    lam_min = float(torch.linalg.eigvalsh(landscape.hessian(_as_float64(saddle)))[0])
    if lam_min >= 0:
        raise ValueError(f"Invalid saddle: {saddle!r} has no negative curvature "
                         f"(λ_min = {lam_min:.3g})")
    return 1.0 / math.log(1 + _check_positive("lr", lr) * abs(lam_min))


# ------------------------------------------------------------------------------------------
# Plateaus
# ------------------------------------------------------------------------------------------
def plateau_escape_steps(radii: Sequence[float] = PLATEAU_RADII, lr: float = PLATEAU_LR,
                         threshold: float = PLATEAU_THRESHOLD, width: float = 1.0,
                         max_steps: int = PLATEAU_MAX_STEPS) -> np.ndarray:
    """Steps of gradient descent on :class:`~course_lib.landscapes.Plateau` from (r, 0)
    until J < ``threshold`` (the loss that counts as "off the plateau"), for each r in
    ``radii``; ``max_steps`` + 1 where it never gets there."""
    radii = [_check_positive("radius", r) for r in radii]
    J = Plateau(width)
    starts = torch.tensor([[r, 0.0] for r in radii], dtype=torch.float64)
    runs = gradient_descent(J, starts, _check_int("max_steps", max_steps, 1), lr)
    return np.array([max_steps + 1 if (t := r.first_step_below(threshold)) is None else t
                     for r in runs])


def plateau_time_estimate(radius: float, lr: float = PLATEAU_LR,
                          threshold: float = PLATEAU_THRESHOLD, width: float = 1.0) -> float:
    r"""Predicted steps to get off the plateau J = tanh(r²/w²) from radius r (gradient flow).

    Gradient descent with a small step moves the radius at speed ε ∂J/∂r per step, with
    ∂J/∂r = sech²(r²/w²)·2r/w², so the number of steps from r to the radius r* where
    J = ``threshold`` is

    .. math::

        T(r) \approx \frac{1}{\epsilon} \int_{r^*}^{r} \frac{d\rho}{\partial J/\partial\rho}
            = \frac{w^2}{2\epsilon} \int_{r^*}^{r} \frac{\cosh^2(\rho^2/w^2)}{\rho}\, d\rho,

    which grows like e^{2r²/w²}: each step outward multiplies the waiting time.
    """
    from scipy.integrate import quad

    r, w = _check_positive("radius", radius), _check_positive("width", width)
    if not 0 < threshold < 1:
        raise ValueError(f"Invalid threshold: {threshold!r} (expected 0 < threshold < 1)")
    r_star = w * math.sqrt(math.atanh(threshold))
    if r <= r_star:
        return 0.0
    integral, _ = quad(lambda rho: math.cosh(rho**2 / w**2) ** 2 / rho, r_star, r)
    return w**2 / (2 * _check_positive("lr", lr)) * integral


def plateau_lengths(losses, levels: Sequence[float], rel_tol: float = 0.02) -> np.ndarray:
    """For each level, how many steps t have |J_t − level| ≤ ``rel_tol``·level: the time a
    learning curve spends on the plateau at that height (e.g. the cost of a saddle)."""
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 1:
        raise ValueError(f"Invalid losses: shape {losses.shape} (expected 1-D)")
    _check_positive("rel_tol", rel_tol)
    return np.array([int((np.abs(losses - lv) <= rel_tol * abs(lv)).sum()) for lv in levels])


# ------------------------------------------------------------------------------------------
# A real network: plateaus and saddle escape in a deep linear MLP on MNIST-1D
# ------------------------------------------------------------------------------------------
#: MNIST-1D (``num_samples`` signals, the training part), centered and PCA-whitened to
#: ``components`` inputs; targets are centered one-hot vectors (10 outputs)
DEEP_DATA = dict(num_samples=2000, seed=0, components=16)
DEEP_WIDTH = 16           # units per hidden layer
DEEP_LR = 1.0             # ε of full-batch gradient descent
DEEP_SEEDS = (0, 1, 2)    # initialisations per setting; we report medians
#: initial scales σ per depth (number of weight matrices): W_l has N(0, σ²/fan_in) entries
DEEP_SCALES = {2: (1e-1, 1e-2, 1e-3, 1e-4, 1e-5), 3: (0.1, 0.05, 0.025, 0.0125)}
DEEP_MAX_STEPS = 3000     # a run that has not escaped by then counts as not escaped
DEEP_CHUNK = 25           # escape runs are trained in chunks and stopped once they escape
#: the learning curve of the section's figure: depth, σ, seed, steps, and the steps at which
#: we measure the gradient and the Hessian (on the two plateaus and at the end)
DEEP_CURVE = dict(depth=2, scale=1e-3, seed=0, steps=600)
DEEP_PROBES = (5, 60, 600)
#: depth 3: the Hessian halfway through the plateau, for the two largest scales
DEEP_PLATEAU_FRACTION = 0.5
DEEP_LANCZOS = 40         # Lanczos steps for λ_min and λ_max (P = 416 parameters at depth 2)


class WhitenedData(NamedTuple):
    """Inputs X (N, k) with mean 0 and covariance I, targets Y (N, 10) with mean 0, and the
    singular values s (descending) of the input–output correlation Σ_yx = E[y xᵀ]."""

    X: torch.Tensor
    Y: torch.Tensor
    s: np.ndarray

    @property
    def cost_at_zero(self) -> float:
        """J(0) = ½ E‖y‖²: the loss of the network that outputs 0 (the saddle θ = 0)."""
        return 0.5 * float((self.Y ** 2).sum(1).mean())

    def cost_after(self, modes: int) -> float:
        """½E‖y‖² − ½Σ_{a≤modes} s_a²: the loss once the ``modes`` strongest modes are learned
        (the cost of the critical point that keeps them, as in Baldi & Hornik, 1989)."""
        return self.cost_at_zero - 0.5 * float((self.s[:modes] ** 2).sum())


def whitened_mnist1d(num_samples: int = DEEP_DATA["num_samples"], seed: int = DEEP_DATA["seed"],
                     components: int = DEEP_DATA["components"]) -> WhitenedData:
    r"""MNIST-1D's training signals, centered and PCA-whitened, with centered one-hot targets.

    With whitened inputs, E[xxᵀ] = I, the cost of a linear network f(x) = W x is
    ½E‖y − Wx‖² = ½E‖y‖² − tr(Σ_yx Wᵀ) + ½‖W‖_F², so its landscape depends on the data only
    through Σ_yx = E[y xᵀ] = U diag(s) Vᵀ: the setting of Saxe, McClelland & Ganguli (2014).
    float64.
    """
    from course_lib.data import mnist1d

    k = _check_int("components", components, 1)
    data = mnist1d(num_samples, seed=seed)
    X = data.X_train.to(torch.float64)
    X = X - X.mean(0)
    _, S, Vt = torch.linalg.svd(X, full_matrices=False)
    if k > len(S):
        raise ValueError(f"Invalid components: {k} (expected <= {len(S)})")
    X = X @ Vt[:k].T / (S[:k] / math.sqrt(len(X)))
    Y = torch.nn.functional.one_hot(data.y_train, 10).to(torch.float64)
    Y = Y - Y.mean(0)
    s = torch.linalg.svdvals(Y.T @ X / len(X)).numpy()
    return WhitenedData(X, Y, s)


def linear_mlp(in_features: int, width: int, out_features: int, depth: int, scale: float,
               seed: int = 0) -> torch.nn.Sequential:
    """A deep linear network without biases, f(x) = W_depth ⋯ W₂W₁x, float64, on the CPU:
    ``depth`` weight matrices, ``width`` units per hidden layer, entries of W_l drawn
    N(0, scale²/fan_in) with ``seed`` (scale = 1 is LeCun's initialisation)."""
    depth = _check_int("depth", depth, 1)
    scale = _check_positive("scale", scale)
    gen = torch.Generator().manual_seed(_check_int("seed", seed, 0))
    widths = [in_features] + [width] * (depth - 1) + [out_features]
    layers = []
    for fan_in, fan_out in zip(widths[:-1], widths[1:]):
        layer = torch.nn.Linear(fan_in, fan_out, bias=False, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(scale * torch.randn(fan_out, fan_in, generator=gen,
                                                   dtype=torch.float64) / math.sqrt(fan_in))
        layers.append(layer)
    return torch.nn.Sequential(*layers)


def half_squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """J = ½ · mean over examples of ‖f(x) − y‖² (the cost of Saxe et al., 2014)."""
    return 0.5 * ((out - target) ** 2).sum(-1).mean()


def _train_gd(model, data: WhitenedData, steps: int, lr: float):
    """``steps`` full-batch gradient descent steps through :func:`course_lib.train.train`;
    returns its per-step losses and gradient norms (J and ‖g‖ before each update).  Plain
    gradient descent keeps no state, so consecutive calls continue one run exactly."""
    from course_lib.train import train

    hist = train(model, half_squared_error, torch.optim.SGD(model.parameters(), lr=lr),
                 (data.X, data.Y), epochs=steps, max_steps=steps, batch_size=len(data.X),
                 shuffle=False, metrics=())
    return np.asarray(hist.steps["loss"]), np.asarray(hist.steps["grad_norm"])


def escape_threshold(data: WhitenedData) -> float:
    """The loss that counts as "escaped from θ = 0": half of the strongest mode's share of the
    loss learned, J(0) − s₁²/4."""
    return data.cost_at_zero - 0.25 * float(data.s[0]) ** 2


def deep_escape_step(data: WhitenedData, depth: int, scale: float, seed: int = 0,
                     lr: float = DEEP_LR, width: int = DEEP_WIDTH,
                     max_steps: int = DEEP_MAX_STEPS, chunk: int = DEEP_CHUNK) -> int:
    """The first step t at which J(θ_t) < :func:`escape_threshold` for gradient descent from
    ``linear_mlp(..., depth, scale, seed)``; ``max_steps`` + 1 if it never gets there.  Trained
    in chunks of ``chunk`` steps, stopped once escaped."""
    model = linear_mlp(data.X.shape[1], width, data.Y.shape[1], depth, scale, seed)
    threshold, done = escape_threshold(data), 0
    while done < max_steps:
        losses, _ = _train_gd(model, data, min(chunk, max_steps - done), lr)
        below = np.flatnonzero(losses < threshold)
        if len(below):
            return done + int(below[0])
        done += len(losses)
    return max_steps + 1


class DeepEscape(NamedTuple):
    """Escape times of a deep linear network from the plateau at θ = 0.

    Attributes: ``depth``, ``scales`` (k,) the initial scales σ, ``steps`` (k, seeds) the escape
    step of every run, ``median`` (k,), ``fitted`` the least-squares slope of the medians
    (against ln(1/σ) at depth 2, of ln T against ln(1/σ) at depth ≥ 3), ``predicted`` the
    slope the theory gives (:func:`predicted_deep_escape`)."""

    depth: int
    scales: np.ndarray
    steps: np.ndarray
    median: np.ndarray
    fitted: float
    predicted: float


def predicted_deep_escape(depth: int, s1: float, lr: float = DEEP_LR) -> float:
    r"""The escape-time law near θ = 0, as a slope.

    Depth 2 (one hidden layer): at θ = 0 the Hessian has eigenvalues ±s_a, so the component
    along the eigenvector of λ_min = −s₁ grows by (1 + εs₁) per step (section 5.4): the time
    grows like ln(1/σ)/ln(1 + εs₁).  Returns that slope, 1/ln(1 + εs₁) steps per unit of ln(1/σ).

    Depth N ≥ 3: J is a polynomial whose terms in θ have degrees 0, N and 2N, so near 0 the
    gradient of the degree-N term, O(‖θ‖^{N−1}), drives the motion and the Hessian vanishes at
    0.  Writing θ = σφ, dφ/dt = σ^{N−2}·F(φ): the time to leave scales like σ^{−(N−2)}.  Returns
    N − 2, the slope of ln T against ln(1/σ) (Saxe et al., 2014, find the same 1/σ^{N−2} law
    for balanced starts)."""
    depth = _check_int("depth", depth, 2)
    if depth == 2:
        return 1.0 / math.log(1.0 + _check_positive("lr", lr) * _check_positive("s1", s1))
    return float(depth - 2)


def deep_escape_times(data: WhitenedData | None = None, depth: int = 2,
                      scales: Sequence[float] | None = None, seeds: Sequence[int] = DEEP_SEEDS,
                      lr: float = DEEP_LR) -> DeepEscape:
    """:func:`deep_escape_step` for every σ in ``scales`` (default ``DEEP_SCALES[depth]``) and
    every seed; medians over the seeds and the fitted slope (see :class:`DeepEscape`)."""
    data = whitened_mnist1d() if data is None else data
    depth = _check_int("depth", depth, 2)
    scales = np.array(DEEP_SCALES[depth] if scales is None else scales, dtype=float)
    if len(scales) < 2:
        raise ValueError(f"Invalid scales: {tuple(scales)!r} (expected >= 2)")
    steps = np.array([[deep_escape_step(data, depth, float(sc), int(sd), lr) for sd in seeds]
                      for sc in scales])
    median = np.median(steps, axis=1)
    x = np.log(1 / scales)
    fitted = float(np.polyfit(x, median if depth == 2 else np.log(median), 1)[0])
    return DeepEscape(depth, scales, steps, median, fitted,
                      predicted_deep_escape(depth, float(data.s[0]), lr))


class CurvatureProbe(NamedTuple):
    """Loss, gradient norm and extreme Hessian eigenvalues of a network at one step."""

    step: int
    loss: float
    grad_norm: float
    lambda_min: float
    lambda_max: float


def probe_curvature(model, data: WhitenedData, step: int, k: int = DEEP_LANCZOS,
                    seed: int = 0) -> CurvatureProbe:
    """J, ‖∇J‖ and λ_min, λ_max of the Hessian of J at the model's current θ: the extreme Ritz
    values of ``k`` Lanczos steps (:func:`course_lib.curvature.lanczos_eigenvalues`)."""
    from course_lib.curvature import flatten_grad, lanczos_eigenvalues

    params = list(model.parameters())

    def loss():
        return half_squared_error(model(data.X), data.Y)

    model.zero_grad()
    J = loss()
    J.backward()
    g = float(flatten_grad(params).norm())
    model.zero_grad()
    J = float(J.detach())
    ritz = lanczos_eigenvalues(loss, params, k, generator=torch.Generator().manual_seed(seed))
    return CurvatureProbe(int(step), J, g, float(ritz[0]), float(ritz[-1]))


class DeepCurve(NamedTuple):
    """One learning curve: ``losses`` and ``grad_norms`` (T + 1,) at θ_0 … θ_T, and the
    :class:`CurvatureProbe` at each probed step."""

    losses: np.ndarray
    grad_norms: np.ndarray
    probes: list


def deep_learning_curve(data: WhitenedData | None = None, depth: int = DEEP_CURVE["depth"],
                        scale: float = DEEP_CURVE["scale"], seed: int = DEEP_CURVE["seed"],
                        steps: int = DEEP_CURVE["steps"], probes: Sequence[int] = DEEP_PROBES,
                        lr: float = DEEP_LR, width: int = DEEP_WIDTH) -> DeepCurve:
    """Gradient descent on the deep linear network for ``steps`` steps, stopping at each step
    in ``probes`` (≤ ``steps``) to measure the gradient and the Hessian (:func:`probe_curvature`)."""
    data = whitened_mnist1d() if data is None else data
    probes = sorted(_check_int("probe", p, 0) for p in probes)
    steps = _check_int("steps", steps, 1)
    if probes and probes[-1] > steps:
        raise ValueError(f"Invalid probes: {tuple(probes)!r} (expected <= steps = {steps})")
    model = linear_mlp(data.X.shape[1], width, data.Y.shape[1], depth, scale, seed)
    losses, norms, found, done = [], [], [], 0
    for stop in [*probes, steps]:
        if stop > done:
            l, g = _train_gd(model, data, stop - done, lr)
            losses.append(l)
            norms.append(g)
            done = stop
        if len(found) < len(probes):
            found.append(probe_curvature(model, data, stop))
    last = probe_curvature(model, data, steps) if not probes or probes[-1] != steps else found[-1]
    losses = np.concatenate([*losses, [last.loss]])
    norms = np.concatenate([*norms, [last.grad_norm]])
    return DeepCurve(losses, norms, found)


def deep_plateau_probes(data: WhitenedData | None = None, depth: int = 3,
                        scales: Sequence[float] | None = None, seed: int = 0,
                        fraction: float = DEEP_PLATEAU_FRACTION,
                        lr: float = DEEP_LR) -> list[CurvatureProbe]:
    """For each σ in ``scales`` (default the two largest of ``DEEP_SCALES[depth]``): the
    :class:`CurvatureProbe` of the run of ``seed`` at ``fraction`` of its escape step, i.e. in
    the middle of its plateau at θ ≈ 0."""
    data = whitened_mnist1d() if data is None else data
    scales = DEEP_SCALES[depth][:2] if scales is None else scales
    if not 0 < fraction < 1:
        raise ValueError(f"Invalid fraction: {fraction!r} (expected 0 < fraction < 1)")
    out = []
    for sc in scales:
        at = int(fraction * deep_escape_step(data, depth, float(sc), seed, lr))
        out.append(deep_learning_curve(data, depth, float(sc), seed, max(at, 1), (max(at, 1),),
                                       lr).probes[0])
    return out


def plot_deep_linear(curve: DeepCurve, data: WhitenedData, escapes: Sequence[DeepEscape],
                     axes=None):
    """The section's figure: the learning curve J_t − J_min with the costs of the saddles
    θ = 0 and "mode 1 learned", the gradient norm with the probes' λ_min, and the median
    escape step against σ for each depth in ``escapes`` with the predicted law."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ax1, ax2, ax3 = axes
    j_min = data.cost_after(len(data.s))
    ax1.semilogy(curve.losses - j_min, color="black", label=r"$J(\theta_t) - J_{\min}$")
    for level, label, color in ((data.cost_at_zero, r"saddle $\theta = 0$", "tab:red"),
                                (data.cost_after(1), "saddle: mode 1 learned", "tab:orange")):
        ax1.axhline(level - j_min, ls="--", color=color, label=label)
    ax1.set(xlabel="step t", ylabel=r"$J(\theta_t) - J_{\min}$",
            title="MNIST-1D, linear net: the loss rests at each saddle")
    ax1.legend(fontsize="small")
    ax2.semilogy(curve.grad_norms, color="tab:blue", label=r"$\|g_t\|$")
    for p in curve.probes:
        ax2.plot(p.step, p.grad_norm, "o", color="tab:red")
        text = f"λ_min = {p.lambda_min:.2g}" if abs(p.lambda_min) > 1e-6 else "λ_min ≈ 0"
        ax2.annotate(text, (p.step, p.grad_norm),
                     textcoords="offset points", xytext=(4, 6), fontsize="small")
    ax2.set(xlabel="step t", ylabel=r"gradient norm $\|g_t\|$",
            title="Small gradient, clearly negative curvature")
    ax2.legend(fontsize="small")
    for e, marker in zip(escapes, "os^"):
        line, = ax3.loglog(e.scales, e.median, marker, ms=8, label=f"depth {e.depth}: median")
        if e.depth == 2:  # T = c + ln(1/σ)/ln(1 + εs₁)
            x = np.log(1 / e.scales)
            fit = e.median.mean() + e.predicted * (x - x.mean())
            law = r"$\ln(1/\sigma)/\ln(1+\epsilon s_1)$"
        else:  # T ∝ σ^{-(N-2)}
            fit = np.exp(np.log(e.median).mean()
                         + e.predicted * np.log(1 / e.scales) - e.predicted
                         * np.log(1 / e.scales).mean())
            law = rf"$\sigma^{{-{e.predicted:g}}}$"
        ax3.loglog(e.scales, fit, "--", color=line.get_color(), label=f"depth {e.depth}: {law}")
    ax3.invert_xaxis()
    ax3.set(xlabel=r"initial scale $\sigma$", ylabel="steps to escape from θ ≈ 0",
            title="Escape time: log law at depth 2, power law at depth 3")
    ax3.legend(fontsize="small")
    return axes



# ------------------------------------------------------------------------------------------
# The chapter's figures (the notebook computes, these functions draw)
# ------------------------------------------------------------------------------------------
def plot_saddle_views(J: Landscape, fig=None):
    """Section 5.1: the surface, the contour map and two cuts through the saddle at 0."""
    import matplotlib.pyplot as plt

    from course_lib import plots

    fig = plt.figure(figsize=(15, 4.3)) if fig is None else fig
    ax = fig.add_subplot(1, 3, 1, projection="3d")
    plots.surface3d(J, ax=ax, resolution=50)
    ax.set_title(r"$J = \theta_1^2 - \theta_2^2 + \theta_2^4/4$")
    ax = plots.contour(J, ax=fig.add_subplot(1, 3, 2))
    ax.legend(loc="lower right", fontsize="small")
    ax.set_title("Contours: the saddle sits between two minima")
    ax = fig.add_subplot(1, 3, 3)
    t = np.linspace(-2, 2, 201)
    zero = np.zeros_like(t)
    ax.plot(t, J(np.stack([t, zero], -1)).numpy(), label=r"along $\theta_1$ ($\theta_2 = 0$)")
    ax.plot(t, J(np.stack([zero, t], -1)).numpy(), label=r"along $\theta_2$ ($\theta_1 = 0$)")
    ax.plot([0], [0], "X", color="tab:red", ms=10, mec="black", label="saddle")
    ax.set_xlabel("coordinate along the cut (parameter units)")
    ax.set_ylabel(r"$J$")
    ax.set_title("Through the saddle: a minimum one way, a maximum the other")
    ax.legend(fontsize="small")
    return fig


def plot_minima_census(census: MinimaCensus, direct: MinimaCensus, axes=None):
    """Section 5.2: P(minimum) against n (both estimators, 2⁻ⁿ, the exponential fit) and the
    number of saddles per minimum."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.3))
    ax1, ax2 = axes
    n = census.dims
    ax1.errorbar(direct.dims, direct.p_min, yerr=direct.stderr, fmt="s", ms=8, mfc="none",
                 label=r"GOE, direct Monte Carlo ($10^5$ draws)")
    ax1.errorbar(n, census.p_min, yerr=census.stderr, fmt="o-", label="GOE, sequential sampling")
    ax1.plot(n, 0.5**n, "k--", label=r"independent signs: $2^{-n}$")
    intercept = np.log(census.p_min).mean() - census.log_slope * n.mean()
    ax1.plot(n, np.exp(intercept + census.log_slope * n), ":", color="tab:gray",
             label=f"exponential fit, slope {census.log_slope:.2f} per dimension")
    ax1.set_yscale("log")
    ax1.set_xlabel("dimension n")
    ax1.set_ylabel("P(all eigenvalues > 0)")
    ax1.set_title("Minima become rare faster than $2^{-n}$")
    ax1.legend(fontsize="small")
    ax2.semilogy(n[1:], census.saddles_per_minimum[1:], "o-", label="GOE")  # n = 1: no saddles
    ax2.semilogy(n[1:], 2.0 ** n[1:] - 2, "k--", label=r"independent signs: $2^n - 2$")
    ax2.set_xlabel("dimension n")
    ax2.set_ylabel("saddles per minimum")
    ax2.set_title("Saddles outnumber minima by more than $2^n$")
    ax2.legend(fontsize="small")
    return axes


def plot_field_critical_points(field: Landscape, cp: CriticalPoints, ax=None):
    """Section 5.3: the contour map of a 2-D random field with its critical points by kind."""
    import matplotlib.pyplot as plt

    from course_lib import plots

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5))
    plots.contour(field, ax=ax, log_levels=False, critical_points=False, levels=25)
    styles = [("minimum", plots.CRITICAL_STYLE["local minimum"]),
              ("saddle", plots.CRITICAL_STYLE["saddle"]),
              ("maximum", dict(marker="^", s=120, color="tab:orange", edgecolor="black",
                               zorder=5))]
    for k, (kind, style) in enumerate(styles):
        pts = cp.points[cp.n_negative == k]
        ax.scatter(pts[:, 0], pts[:, 1], label=f"{kind} ({len(pts)})", **style)
    ax.set_title("A random landscape: about as many saddles as minima and maxima together")
    ax.legend(loc="lower left", fontsize="small", framealpha=0.9)
    return ax


def plot_index_vs_cost(cp: CriticalPoints, ax=None):
    """Section 5.3: cost against index of every critical point, and the mean cost per index."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.5))
    ax.scatter(cp.index, cp.values, s=18, alpha=0.6, label="critical points")
    ks = np.arange(cp.dim + 1)
    ax.plot(ks / cp.dim, cp.mean_value_by_count(), "o-", color="black", ms=8,
            label="mean cost at each index")
    ax.set_xlabel("index (fraction of negative Hessian eigenvalues)")
    ax.set_ylabel(r"cost $J(\theta)$")
    ax.set_title(f"Higher cost, more directions of descent (correlation {cp.correlation:.2f})")
    ax.legend(fontsize="small")
    return ax


def plot_linear_census(cp: CriticalPoints, ax=None):
    """Section 5.3: cost against index of the linear network's critical points, labelled by S."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(cp.index, cp.values, "o", ms=8)
    for label, x, y in zip(cp.labels, cp.index, cp.values):
        pair = "," in label  # two modes kept: label below the point, else above
        ax.annotate(f"S = {label}", (x, y), textcoords="offset points",
                    xytext=(4, -13 if pair else 5), fontsize="small")
    ax.set_xlabel("index (fraction of negative Hessian eigenvalues)")
    ax.set_ylabel(r"cost $J$ at the critical point")
    ax.set_xlim(-0.05, 0.7)
    ax.set_ylim(0, 6.6)
    ax.set_title("Linear network: one minimum (the global one); the rest are saddles")
    return ax


def plot_saddle_runs(J: Landscape, runs: dict, saddle, axes=None):
    """Section 5.4: the paths of the three methods, their distance to the saddle, and the
    gradient norm and loss of gradient descent."""
    import matplotlib.pyplot as plt

    from course_lib import plots

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    plots.plot_trajectories(J, runs, ax=axes[0],
                            title="Newton stops at the saddle; the others escape")
    for label, run in runs.items():
        axes[1].semilogy(np.maximum(distance_to(run, saddle), 1e-17), label=label)
    axes[1].axhline(SADDLE_RADIUS, color="gray", ls=":", label=f"radius {SADDLE_RADIUS:g}")
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel(r"distance $\|\theta_t - \theta_{\rm saddle}\|$ (0 shown as $10^{-17}$)")
    axes[1].set_title("Distance to the saddle")
    axes[1].legend(fontsize="small")
    gd = runs["gradient descent"]
    axes[2].semilogy(gd.grad_norms, label=r"$\|\nabla J(\theta_t)\|$")
    axes[2].plot(gd.losses - J.min_value, label=r"$J(\theta_t) - J^*$")
    axes[2].set_xlabel("step t")
    axes[2].set_ylabel("value")
    axes[2].set_title("Gradient descent: the gradient all but vanishes near the saddle")
    axes[2].legend(fontsize="small")
    return axes


def plot_escape_times(esc: EscapeTimes, ax=None):
    """Section 5.4: steps near the saddle against the start's distance v₀ from the stable
    manifold, with the predicted slope."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.3))
    ax.semilogx(esc.perturbations, esc.steps, "o", label="measured")
    x = np.log(1 / esc.perturbations)
    ax.semilogx(esc.perturbations, esc.steps.mean() + esc.predicted_slope * (x - x.mean()), "--",
                label=r"slope $1/\ln(1 + \epsilon|\lambda_{\min}|)$")
    ax.invert_xaxis()
    ax.set_xlabel(r"distance $v_0$ of the start from the stable manifold")
    ax.set_ylabel(f"steps within {SADDLE_RADIUS:g} of the saddle")
    ax.set_title(f"Escape time grows like ln(1/v₀): "
                 f"{esc.slope * math.log(10):.3g} steps per decade")
    ax.legend(fontsize="small")
    return ax


def plot_plateau(curves: dict, radii, measured, predicted, axes=None):
    """Section 5.5: loss and gradient norm of gradient descent on the plateau from the starts
    in ``curves`` (radius → Trajectory), and the steps to get off it against the start radius."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4.3))
    ax1, ax2, ax3 = axes
    for r, run in curves.items():
        ax1.plot(run.losses, label=f"start at r = {r}")
        ax2.semilogy(run.grad_norms, label=f"start at r = {r}")
    ax1.set(xlabel="step t", ylabel=r"$J(\theta_t)$",
            title="On the plateau the loss does not move…")
    ax2.set(xlabel="step t", ylabel=r"$\|\nabla J(\theta_t)\|$", ylim=(1e-5, 3),
            title="…because the gradient is tiny")
    ax3.semilogy(radii, measured, "o", ms=8, label="gradient descent, measured")
    ax3.semilogy(radii, predicted, "--", label="gradient-flow estimate T(r)")
    ax3.set(xlabel="start radius r", ylabel=f"steps until J < {PLATEAU_THRESHOLD:g}",
            title=r"Time on the plateau grows like $e^{2r^2}$")
    for ax in axes:
        ax.legend(fontsize="small")
    return axes


def plot_linear_stages(run: Trajectory, stages: dict, axes=None):
    """Section 5.6: the learning curve of the linear network with the costs of its critical
    points (``stages``: label → cost), and its gradient norm."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(13, 4.3))
    ax1, ax2 = axes
    ax1.plot(run.losses, color="black", label="gradient descent")
    for (label, cost), color in zip(stages.items(), ["tab:red", "tab:orange", "tab:green"]):
        ax1.axhline(cost, ls="--", color=color, label=f"cost of the critical point {label}")
    ax1.set(xlabel="step t", ylabel=r"$J(\theta_t)$",
            title="Learning in stages: the loss rests at the cost of each saddle")
    ax1.legend(fontsize="small")
    ax2.semilogy(run.grad_norms)
    ax2.set(xlabel="step t", ylabel=r"$\|\nabla J(\theta_t)\|$",
            title="The gradient is small on every plateau")
    return axes
