r"""Local minima (Deep Learning book §8.2.2): symmetries, basins of attraction, and how good
the minima that training finds are.

Three groups of tools, one per question of the chapter:

1. **Weight-space symmetry.**  Swapping two hidden units of an MLP (their incoming weights,
   bias and outgoing weights together) leaves the function unchanged, so every minimum comes
   with at least ∏ₗ nₗ! equivalent copies; ReLU units can also be rescaled, incoming weights
   and bias by c > 0, outgoing weights by 1/c.  :func:`permute_hidden_units`,
   :func:`rescale_hidden_units`, :func:`count_permutation_symmetries`.
2. **Basins of attraction.**  Which minimum gradient descent reaches depends on where it
   starts (and on its step size): :func:`gd_basins` runs GD from every point of a grid at once
   on a :class:`~course_lib.landscapes.Landscape` and labels where each run ends.
3. **How good are the minima training finds?**  :func:`train_from_many_seeds` trains many
   copies of one MLP, one per initialisation seed, side by side (full batch);
   :func:`inspect_end_point` asks whether a run ended at a critical point at all (gradient
   norm, Hessian eigenvalues, dead units).

The settings the chapter uses are the module constants ``TASK``, ``SMALL_HIDDEN``,
``WIDE_HIDDEN``, ``SEEDS``, ``TRAINING``, ``TILT`` and ``BASIN_LR``, so that the notebook and
``tests/test_ch04_local_minima.py`` run the very same experiments.

References: Goodfellow, Bengio & Courville (2016), *Deep Learning*, §8.2.2; Dauphin et al.
(2014), NeurIPS; Choromanska et al. (2015), AISTATS; Goodfellow, Vinyals & Saxe (2015), ICLR;
Safran & Shamir (2018), ICML; Dinh, Pascanu, Bengio & Bengio (2017), ICML.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from course_lib.curvature import hessian_matrix
from course_lib.landscapes import Landscape, LocalMinima, run_optimizer
from course_lib.models import mlp
from course_lib.optim import SGD
from course_lib.utils import single_thread
from course_lib.utils import shared_result

__all__ = [
    "TASK", "SMALL_HIDDEN", "WIDE_HIDDEN", "SEEDS", "TRAINING", "CRITICAL_RATIO", "TILT",
    "BASIN_LR",
    "permute_hidden_units", "random_unit_permutations", "rescale_hidden_units",
    "max_output_difference", "parameter_distance", "count_permutation_symmetries",
    "log10_permutation_symmetries",
    "Basins", "gd_basins", "plot_basins", "basin_explorer", "where_it_ends",
    "TeacherStudentTask", "teacher_student_task", "SeedRuns", "train_from_many_seeds",
    "LossSummary", "summarize_losses", "stationarity_ratio", "critical_runs", "dead_units",
    "EndPoint", "inspect_end_point", "LONG_STEPS", "SADDLE_CURVATURE", "EndClasses",
    "classify_ends",
]

# ----------------------------------------------------------------------------------------
# The chapter's settings: one place for the notebook and the tests
# ----------------------------------------------------------------------------------------
#: the regression task: 200 points in 2-D, labelled by a teacher ReLU net with 4 hidden units
TASK = dict(n_samples=200, in_features=2, teacher_hidden=4, seed=0)
#: a student exactly as wide as the teacher (it *can* reach zero loss), and a wide one
SMALL_HIDDEN, WIDE_HIDDEN = (4,), (32,)
#: the initialisation seeds of the many-runs experiment
SEEDS = tuple(range(30))
#: full-batch heavy-ball gradient descent: ε, α, number of updates
TRAINING = dict(steps=1000, lr=0.05, momentum=0.9)
#: a run "ended at a critical point" if ‖g_T‖ / mean_t ‖g_t‖ is below this
CRITICAL_RATIO = 1e-6
#: the tilt a of the double well J(x, y) = (x² − 1)² + a x + y², and GD's default ε on it
TILT, BASIN_LR = 0.5, 0.05


# ----------------------------------------------------------------------------------------
# 1. Weight-space symmetry
# ----------------------------------------------------------------------------------------
def _linear_layers(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers of an MLP built like :func:`course_lib.models.mlp`:
    ``Sequential(Linear, act, Linear, act, …, Linear)`` with element-wise activations."""
    if not isinstance(model, nn.Sequential) or len(model) % 2 != 1:
        raise ValueError(f"Invalid model: {type(model).__name__} (expected an nn.Sequential "
                         "Linear, activation, …, Linear as built by course_lib.models.mlp)")
    linears = list(model[0::2])
    if not all(isinstance(layer, nn.Linear) for layer in linears):
        raise ValueError("Invalid model: every even position must hold an nn.Linear "
                         "(expected Linear, activation, …, Linear)")
    return linears


def _hidden_layer(linears: list[nn.Linear], layer: int) -> int:
    if not isinstance(layer, int) or not 0 <= layer < len(linears) - 1:
        raise ValueError(f"Invalid layer: {layer!r} (expected a hidden layer index in "
                         f"0..{len(linears) - 2})")
    return layer


def random_unit_permutations(model: nn.Module,
                             generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """One random permutation π_l of the units of each hidden layer l (drawn with ``generator``)."""
    linears = _linear_layers(model)
    return [torch.randperm(layer.out_features, generator=generator) for layer in linears[:-1]]


@torch.no_grad()
def permute_hidden_units(model: nn.Module, perms: Sequence[torch.Tensor]) -> nn.Module:
    r"""A copy of ``model`` whose hidden units are reordered, layer by layer.

    For hidden layer l with permutation π (unit i of the copy is unit π(i) of the original):

    .. math::

        W_l \leftarrow W_l[\pi, :], \qquad b_l \leftarrow b_l[\pi], \qquad
        W_{l+1} \leftarrow W_{l+1}[:, \pi].

    Each unit moves with its incoming weights, its bias and its outgoing weights, so the
    network computes *exactly* the same function whatever the (element-wise) activation:
    f(x; θ) = f(x; πθ) (up to the rounding of a re-ordered sum).  ``perms`` holds one
    permutation per hidden layer (a LongTensor of 0..n_l − 1).
    """
    linears = _linear_layers(model)
    if len(perms) != len(linears) - 1:
        raise ValueError(f"Invalid perms: {len(perms)} permutations for {len(linears) - 1} "
                         "hidden layers (expected one per hidden layer)")
    out = copy.deepcopy(model)
    new = _linear_layers(out)
    for l, pi in enumerate(perms):
        pi = torch.as_tensor(pi, dtype=torch.long)
        n = linears[l].out_features
        if pi.shape != (n,) or not torch.equal(torch.sort(pi).values, torch.arange(n)):
            raise ValueError(f"Invalid perms[{l}]: {pi.tolist()} (expected a permutation of "
                             f"0..{n - 1})")
        new[l].weight.copy_(new[l].weight[pi])
        new[l].bias.copy_(new[l].bias[pi])
        new[l + 1].weight.copy_(new[l + 1].weight[:, pi])
    return out


@torch.no_grad()
def rescale_hidden_units(model: nn.Module, layer: int, scale) -> nn.Module:
    r"""A copy of ``model`` with the units of hidden layer ``layer`` rescaled.

    .. math::

        W_l \leftarrow \mathrm{diag}(c)\, W_l, \qquad b_l \leftarrow c \odot b_l,
        \qquad W_{l+1} \leftarrow W_{l+1}\, \mathrm{diag}(c)^{-1}.

    ``scale`` → c, a nonzero number or one per unit.  The function is unchanged when the
    activation σ satisfies σ(cz) = cσ(z): for ReLU with every c > 0 (positive homogeneity),
    for tanh only with c = ±1, for most others never.  Deep Learning book §8.2.2: a ReLU
    network's minimum is therefore a whole continuum of equally good parameters.
    """
    linears = _linear_layers(model)
    layer = _hidden_layer(linears, layer)
    n = linears[layer].out_features
    alpha = torch.as_tensor(scale, dtype=linears[layer].weight.dtype)
    if alpha.ndim == 0:
        alpha = alpha.expand(n)
    if alpha.shape != (n,):
        raise ValueError(f"Invalid scale: shape {tuple(alpha.shape)} (expected a number or "
                         f"({n},), one per unit)")
    if not torch.isfinite(alpha).all() or (alpha == 0).any():
        raise ValueError(f"Invalid scale: {alpha.tolist()} (expected finite nonzero values)")
    out = copy.deepcopy(model)
    new = _linear_layers(out)
    new[layer].weight.mul_(alpha[:, None])  # row i: the incoming weights of unit i
    new[layer].bias.mul_(alpha)
    new[layer + 1].weight.div_(alpha[None, :])  # column i: its outgoing weights
    return out


@torch.no_grad()
def max_output_difference(model_a: nn.Module, model_b: nn.Module, X: torch.Tensor) -> float:
    """max |f_a(x) − f_b(x)| over the rows x of X (and the outputs)."""
    return float((model_a(X) - model_b(X)).abs().max())


@torch.no_grad()
def parameter_distance(model_a: nn.Module, model_b: nn.Module) -> float:
    """‖θ_a − θ_b‖₂ over all parameters (the two models must have the same shapes)."""
    a = nn.utils.parameters_to_vector(model_a.parameters())
    b = nn.utils.parameters_to_vector(model_b.parameters())
    if a.shape != b.shape:
        raise ValueError(f"Invalid models: {a.numel()} and {b.numel()} parameters "
                         "(expected the same architecture)")
    return float((a - b).norm())


def _check_hidden(hidden) -> tuple[int, ...]:
    hidden = tuple(hidden)
    if any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in hidden):
        raise ValueError(f"Invalid hidden: {hidden!r} (expected a tuple of ints >= 1)")
    return hidden


def count_permutation_symmetries(hidden: Sequence[int]) -> int:
    r"""∏ₗ nₗ!: how many parameter vectors the permutations of hidden units map one θ to.

    For m layers of n units this is (n!)^m, an exact (arbitrary-precision) integer.  They
    are all distinct when the units of each layer differ, which is the generic case.
    """
    return math.prod(math.factorial(n) for n in _check_hidden(hidden))


def log10_permutation_symmetries(hidden: Sequence[int]) -> float:
    """log₁₀ ∏ₗ nₗ!, from log Γ(n + 1): usable for widths whose factorial has millions of digits."""
    return sum(math.lgamma(n + 1) for n in _check_hidden(hidden)) / math.log(10)


# ----------------------------------------------------------------------------------------
# 2. Basins of attraction on a 2-D landscape
# ----------------------------------------------------------------------------------------
#: codes of Basins.label
GLOBAL, LOCAL, NEITHER = 0, 1, -1
_ENDS = {GLOBAL: "the global minimum", LOCAL: "the bad local minimum", NEITHER: "no minimum"}


@dataclass(frozen=True)
class Basins:
    """Where gradient descent ends from each start of a grid.

    Attributes:
        x, y: (R,) the grid's coordinates; start (i, j) is (x[j], y[i]).
        final: (R, R, 2) the last iterate of each run.
        label: (R, R) ints: 0 = ended at a global minimizer, 1 = at a local (not global)
            minimizer, −1 = neither (not yet converged, stuck elsewhere, or diverged).
        lr, momentum, steps: ε, α and the number of updates.
    """

    x: np.ndarray
    y: np.ndarray
    final: np.ndarray
    label: np.ndarray
    lr: float
    momentum: float
    steps: int

    def fraction(self, code: int) -> float:
        """The fraction of starts with label ``code`` (GLOBAL, LOCAL or NEITHER)."""
        return float((self.label == code).mean())

    @property
    def fraction_bad(self) -> float:
        """The fraction of starts from which GD ends in a local, not global, minimum."""
        return self.fraction(LOCAL)

    @property
    def fraction_global(self) -> float:
        return self.fraction(GLOBAL)


def _check_positive(name: str, value, integer: bool = False):
    ok = (isinstance(value, int) and not isinstance(value, bool)) if integer else \
        isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value <= 0:
        kind = "an int >= 1" if integer else "a finite number > 0"
        raise ValueError(f"Invalid {name}: {value!r} (expected {kind})")


def _check_momentum(momentum) -> None:
    if not isinstance(momentum, (int, float)) or not 0 <= momentum < 1:
        raise ValueError(f"Invalid momentum: {momentum!r} (expected 0 <= momentum < 1)")


def _classify(landscape: Landscape, points: torch.Tensor, tol: float) -> torch.Tensor:
    """Label each (…, 2) point: GLOBAL / LOCAL if within ``tol`` of such a minimizer."""
    label = torch.full(points.shape[:-1], NEITHER, dtype=torch.long)
    for code, minimizers in ((LOCAL, landscape.local_minimizers),
                             (GLOBAL, landscape.minimizers)):
        for m in minimizers:
            near = (points - m.to(points)).norm(dim=-1) <= tol
            label[near] = code
    return label


def where_it_ends(landscape: Landscape, point, tol: float = 1e-3) -> str:
    """'the global minimum', 'the bad local minimum' or 'no minimum' for a final iterate."""
    p = torch.as_tensor(np.asarray(point, dtype=np.float64))
    return _ENDS[int(_classify(landscape, p, tol))]


@torch.no_grad()
def gd_basins(landscape: Landscape, lr: float = BASIN_LR, steps: int = 300,
              momentum: float = 0.0, resolution: int = 101, bounds=None,
              tol: float = 1e-3) -> Basins:
    r"""Run gradient descent from every start of a ``resolution``² grid, all at once.

    The update is torch's SGD (heavy ball when α > 0, buffer started at b₁ = g₁):

    .. math::

        b \leftarrow \alpha b + \nabla J(\theta), \qquad \theta \leftarrow \theta - \epsilon b,

    applied to all starts as one (R², 2) tensor with the landscape's hand-written gradient
    (the same iterates as :func:`~course_lib.landscapes.run_optimizer` with
    ``course_lib.optim.SGD``, start by start; the tests check it).  A run "ends at" a
    minimizer if its last iterate lies within ``tol`` of it.

    Arguments and symbols: ``lr`` → ε, ``momentum`` → α, ``steps`` → the number of updates;
    ``bounds`` defaults to ``landscape.bounds``.
    """
    if landscape.dim != 2:
        raise ValueError(f"Invalid landscape: dim={landscape.dim} (expected a 2-D landscape)")
    _check_positive("lr", lr)
    _check_positive("steps", steps, integer=True)
    _check_positive("resolution", resolution, integer=True)
    _check_positive("tol", tol)
    _check_momentum(momentum)
    (x0, x1), (y0, y1) = bounds if bounds is not None else landscape.bounds
    x = torch.linspace(x0, x1, resolution, dtype=torch.float64)
    y = torch.linspace(y0, y1, resolution, dtype=torch.float64)
    X, Y = torch.meshgrid(x, y, indexing="xy")
    theta = torch.stack([X, Y], dim=-1).reshape(-1, 2)  # (R², 2), one row per start
    buf = None
    with single_thread():
        for _ in range(steps):
            g = landscape.grad(theta)
            buf = g if buf is None or momentum == 0 else momentum * buf + g
            theta = theta - lr * buf
    theta = theta.reshape(resolution, resolution, 2)
    return Basins(x.numpy(), y.numpy(), theta.numpy(), _classify(landscape, theta, tol).numpy(),
                  float(lr), float(momentum), steps)


_BASIN_COLOURS = {NEITHER: "#bbbbbb", GLOBAL: "#9ecae1", LOCAL: "#fdae6b"}


def plot_basins(landscape: Landscape, basins: Basins, ax=None, title: str | None = None):
    """The grid of starts coloured by where GD ends (blue: global minimum, orange: the bad
    local minimum, grey: neither), under the landscape's contour lines and critical points."""
    import matplotlib.pyplot as plt  # here, not at import: `import course_lib` stays light
    from matplotlib.colors import ListedColormap

    from course_lib.plots import contour

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    # labels −1, 0, 1 → colours 0, 1, 2
    cmap = ListedColormap([_BASIN_COLOURS[c] for c in (NEITHER, GLOBAL, LOCAL)])
    ax.pcolormesh(basins.x, basins.y, basins.label + 1, cmap=cmap, vmin=-0.5, vmax=2.5,
                  shading="nearest")
    bounds = ((basins.x[0], basins.x[-1]), (basins.y[0], basins.y[-1]))
    contour(landscape, ax=ax, filled=False, levels=15, bounds=bounds)
    for code in (GLOBAL, LOCAL, NEITHER):  # legend entries for the colours
        if code == NEITHER and basins.fraction(code) == 0:
            continue
        ax.fill_between([], [], color=_BASIN_COLOURS[code],
                        label=f"start → {_ENDS[code]} ({basins.fraction(code):.0%})")
    ax.set_xlabel(r"$\theta_1$ (start)")
    ax.set_ylabel(r"$\theta_2$ (start)")
    ax.set_title(title if title is not None else
                 f"GD basins, ε = {basins.lr:g}, α = {basins.momentum:g}")
    ax.legend(loc="lower left", fontsize="small", framealpha=0.9)
    return ax


def basin_explorer(landscape: Landscape | None = None, steps: int = 300,
                   resolution: int = 81):
    """A widget: pick a start (θ₁, θ₂), ε and α; see the basins and the path GD takes.

    The title states where the run ends.  Returns a
    :class:`~course_lib.widgets.InteractivePlot`; its ``result`` is the last Trajectory.
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from course_lib.widgets import interactive_plot

    J = landscape if landscape is not None else LocalMinima(TILT)
    (x0, x1), (y0, y1) = J.bounds

    def draw(x_start, y_start, lr, momentum):
        basins = gd_basins(J, lr, steps, momentum, resolution)
        run = run_optimizer(J, SGD, [x_start, y_start], steps, lr=lr, momentum=momentum)
        fig, ax = plt.subplots(figsize=(6, 4.8))
        plot_basins(J, basins, ax=ax)
        path = run.path
        ax.plot(path[:, 0], path[:, 1], "k.-", lw=1, ms=3, label="GD path")
        ax.plot(*path[0], "ko", mfc="white", ms=8)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        end = "diverges" if run.diverged else f"ends in {where_it_ends(J, run.final)}"
        ax.set_title(f"From ({x_start:.2f}, {y_start:.2f}), GD {end}\n"
                     f"(ε = {lr:.3g}, α = {momentum:.2f}, {steps} steps)", fontsize="medium")
        return run

    slider = dict(continuous_update=False)
    return interactive_plot(
        draw,
        x_start=W.FloatSlider(value=0.5, min=x0, max=x1, step=0.05, description="θ₁ start",
                              **slider),
        y_start=W.FloatSlider(value=1.0, min=y0, max=y1, step=0.05, description="θ₂ start",
                              **slider),
        lr=W.FloatLogSlider(value=BASIN_LR, base=10, min=-2.5, max=-0.7, step=0.05,
                            description="ε", **slider),
        momentum=W.FloatSlider(value=0.0, min=0.0, max=0.95, step=0.05, description="α",
                               **slider),
    )


# ----------------------------------------------------------------------------------------
# 3. Many initialisations: how good are the minima training finds?
# ----------------------------------------------------------------------------------------
class TeacherStudentTask(NamedTuple):
    """X (N, d), y (N, 1) and the teacher network that labels them exactly: y = teacher(X)."""
    X: torch.Tensor
    y: torch.Tensor
    teacher: nn.Sequential


@torch.no_grad()
def teacher_student_task(n_samples: int = 200, in_features: int = 2, teacher_hidden: int = 4,
                         seed: int = 0, dtype: torch.dtype = torch.float64) -> TeacherStudentTask:
    r"""A regression task whose global minimum is known: zero loss for a student as wide as
    the teacher.

    x ~ N(0, I_d); the teacher is a one-hidden-layer ReLU MLP with ``teacher_hidden`` units
    whose weights and biases are drawn from U(−1, 1).  Its outputs are standardised (mean 0,
    variance 1 over the sample), which only rescales and shifts its output layer, so
    ``teacher`` (the standardised network, returned) still fits the labels exactly.  The mean
    squared error of the best *constant* prediction is therefore exactly 1: a loss reads as
    the fraction of the label variance left unexplained.
    """
    for name, v in (("n_samples", n_samples), ("in_features", in_features),
                    ("teacher_hidden", teacher_hidden)):
        _check_positive(name, v, integer=True)
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"Invalid seed: {seed!r} (expected an int >= 0)")
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n_samples, in_features, generator=gen, dtype=torch.float64)
    teacher = mlp(in_features, (teacher_hidden,), 1, generator=gen).double()
    for p in teacher.parameters():
        p.uniform_(-1.0, 1.0, generator=gen)
    out = teacher(X)
    mean, std = out.mean(), out.std(unbiased=False)
    teacher[-1].weight.div_(std)  # (f − mean)/std is again a network of the same shape
    teacher[-1].bias.sub_(mean).div_(std)
    teacher = teacher.to(dtype)
    X = X.to(dtype)
    return TeacherStudentTask(X, teacher(X), teacher)


@dataclass(frozen=True)
class SeedRuns:
    """S training runs of one architecture, one per initialisation seed.

    Attributes:
        hidden, activation, in_features, out_features: the architecture (as for ``mlp``).
        seeds: (S,) the seeds; run i started from ``mlp(..., generator=manual_seed(seeds[i]))``.
        losses: (T + 1, S) J(θ_t) for t = 0 … T (row t: before update t + 1; last row: final).
        grad_norms: (T + 1, S) ‖∇J(θ_t)‖₂ at the same points.
        params: name → (S, …) tensor, the final parameters of every run, stacked.
    """

    hidden: tuple
    activation: str
    in_features: int
    out_features: int
    seeds: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    params: dict

    @property
    def final_losses(self) -> np.ndarray:
        """(S,) J(θ_T) of every run."""
        return self.losses[-1]

    def model(self, i: int) -> nn.Sequential:
        """Run i's final network as an ordinary ``nn.Sequential``."""
        if not isinstance(i, (int, np.integer)) or not 0 <= i < len(self.seeds):
            raise ValueError(f"Invalid run index: {i!r} (expected 0..{len(self.seeds) - 1})")
        dtype = next(iter(self.params.values())).dtype
        net = mlp(self.in_features, self.hidden, self.out_features, self.activation,
                  generator=torch.Generator()).to(dtype)  # a generator: global RNG untouched
        net.load_state_dict({name: p[i] for name, p in self.params.items()})
        return net


def _stacked_forward(tensors: list[torch.Tensor], act: nn.Module,
                     X: torch.Tensor) -> torch.Tensor:
    """The outputs (S, N, out) of S MLPs at once.  ``tensors`` are the stacked parameters
    [W₁ (S, n₁, d), b₁ (S, n₁), W₂ (S, n₂, n₁), b₂, …] in ``mlp``'s order; each layer is
    h ← σ(h Wᵀ + b), batched over the S networks (no σ after the last layer)."""
    h = X.expand(tensors[0].shape[0], *X.shape)  # (S, N, d), no copy
    n_layers = len(tensors) // 2
    for l in range(n_layers):
        W, b = tensors[2 * l], tensors[2 * l + 1]
        h = torch.baddbmm(b[:, None, :], h, W.transpose(1, 2))  # b + h Wᵀ, per network
        if l < n_layers - 1:
            h = act(h)
    return h


@shared_result
def train_from_many_seeds(X: torch.Tensor, y: torch.Tensor, hidden: Sequence[int],
                          seeds: Sequence[int] = SEEDS, steps: int = TRAINING["steps"],
                          optimizer: Callable = SGD, activation: str = "relu",
                          **hyper) -> SeedRuns:
    r"""Train one MLP from each seed's initialisation, full batch, with the mean squared error.

    The S networks are trained *side by side*: their parameters are stacked into tensors of
    shape (S, …) and evaluated with batched matrix products (``torch.baddbmm``), one call
    per layer for all S networks.  This is exact, not an
    approximation: the summed cost Σᵢ Jᵢ(θ⁽ⁱ⁾) has ∂/∂θ⁽ⁱ⁾ = ∇Jᵢ(θ⁽ⁱ⁾), and the optimizers of
    ``course_lib.optim`` act element by element, so run i follows exactly the path that
    ``course_lib.train.train`` would give it alone (the tests check this).  Do not pass an
    optimizer that couples coordinates (L-BFGS, gradient clipping).

    Arguments:
        X, y: the training set (N, d) and targets (N, out); the models take X's dtype.
        hidden: the hidden widths, as for :func:`course_lib.models.mlp`.
        seeds: one run per seed; the initial θ is ``mlp(..., generator=manual_seed(seed))``.
        steps: T, the number of full-batch updates.
        optimizer: a ``torch.optim``-style class, called as ``optimizer(params, **hyper)``
            (default heavy-ball SGD; pass e.g. ``lr=0.05, momentum=0.9``).
    """
    hidden = _check_hidden(hidden)
    if not (torch.is_tensor(X) and torch.is_tensor(y) and X.ndim == 2 and y.ndim == 2
            and len(X) == len(y) and len(X) > 0):
        raise ValueError(f"Invalid data: X {tuple(getattr(X, 'shape', ()))}, y "
                         f"{tuple(getattr(y, 'shape', ()))} (expected tensors (N, d) and (N, out))")
    seeds = list(seeds)
    if not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ValueError(f"Invalid seeds: {seeds!r} (expected a non-empty sequence of ints >= 0)")
    _check_positive("steps", steps, integer=True)
    S, (d, out) = len(seeds), (X.shape[1], y.shape[1])
    models = [mlp(d, hidden, out, activation, generator=torch.Generator().manual_seed(s))
              .to(X.dtype) for s in seeds]
    # name -> (S, ...) tensor: entry i is run i's parameter, as in models[i].state_dict()
    params = {name: torch.stack([m.state_dict()[name] for m in models]).requires_grad_()
              for name in models[0].state_dict()}
    act = models[0][1]  # the element-wise activation module
    tensors = list(params.values())
    opt = optimizer(tensors, **hyper)
    losses, grad_norms = [], []
    with single_thread():
        for t in range(steps + 1):
            for p in tensors:
                p.grad = None
            J = ((_stacked_forward(tensors, act, X) - y) ** 2).mean(dim=(1, 2))  # (S,)
            J.sum().backward()  # ∂(Σᵢ Jᵢ)/∂θ⁽ⁱ⁾ = ∇Jᵢ(θ⁽ⁱ⁾): the runs do not interact
            sq = sum((p.grad.reshape(S, -1) ** 2).sum(dim=1) for p in tensors)
            losses.append(J.detach())
            grad_norms.append(sq.sqrt())
            if t < steps:
                opt.step()
    return SeedRuns(hidden, activation, d, out, np.array(seeds),
                    torch.stack(losses).cpu().numpy(), torch.stack(grad_norms).cpu().numpy(),
                    {name: p.detach() for name, p in params.items()})


class LossSummary(NamedTuple):
    """Median and spread of final losses: q10, q90 are the 10 % and 90 % quantiles."""
    median: float
    q10: float
    q90: float
    min: float
    max: float

    @property
    def spread(self) -> float:
        """q90 − q10, the width of the middle 80 % of the runs."""
        return self.q90 - self.q10


def summarize_losses(losses) -> LossSummary:
    """Median, 10 %/90 % quantiles, min and max of a 1-D array of final losses."""
    x = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"Invalid losses: shape {x.shape} (expected a non-empty 1-D array "
                         "of finite values)")
    q10, med, q90 = np.quantile(x, [0.1, 0.5, 0.9])
    return LossSummary(float(med), float(q10), float(q90), float(x.min()), float(x.max()))


def stationarity_ratio(grad_norms) -> np.ndarray:
    r"""‖g_T‖ / mean_t ‖g_t‖: the final gradient norm against its typical size during training.

    ``grad_norms`` is (T + 1,) for one run or (T + 1, S) for S runs (time along axis 0).
    Deep Learning book §8.2.2: if the gradient norm does not shrink to an insignificant size,
    the run did not end at a critical point, so neither a local minimum nor any other
    critical point can be what stopped it.  A ratio near 1 means "still moving"; a tiny one
    (≲ 10⁻⁶) means the run sits at a critical point.  The mean, not the median, is the
    typical size: a run that converges early spends most steps at ‖g‖ ≈ 0.
    """
    g = np.asarray(grad_norms, dtype=float)
    if g.ndim not in (1, 2) or g.shape[0] < 2:
        raise ValueError(f"Invalid grad_norms: shape {g.shape} (expected (T + 1,) or "
                         "(T + 1, S) with T >= 1)")
    if not np.isfinite(g).all() or (g < 0).any():
        raise ValueError("Invalid grad_norms: expected finite values >= 0")
    mean = g.mean(axis=0)
    return np.divide(g[-1], mean, out=np.zeros_like(mean), where=mean > 0)


def critical_runs(runs: SeedRuns, threshold: float = CRITICAL_RATIO) -> np.ndarray:
    """Indices of the runs whose :func:`stationarity_ratio` is below ``threshold``."""
    _check_positive("threshold", threshold)
    return np.flatnonzero(stationarity_ratio(runs.grad_norms) < threshold)


@torch.no_grad()
def dead_units(model: nn.Module, X: torch.Tensor) -> list[int]:
    """How many units of each hidden layer are *dead* on X: pre-activation ≤ 0 for every row.

    A dead ReLU unit outputs 0 on all the data, so its incoming weights and bias get zero
    gradient and never change again: a flat direction of J, and a unit lost to the network.
    """
    linears = _linear_layers(model)
    counts, h = [], X
    for l, layer in enumerate(linears[:-1]):
        z = layer(h)
        counts.append(int((z <= 0).all(dim=0).sum()))
        h = model[2 * l + 1](z)
    return counts


@dataclass(frozen=True)
class EndPoint:
    """Where one run ended: its loss, gradient, curvature and dead units.

    ``eigenvalues`` are those of the Hessian H of the training loss (ascending).  At a
    critical point (ratio ≲ 10⁻⁶) with λ_min ≥ −tol it is a local minimum (possibly with flat
    directions, λ ≈ 0); λ_min clearly < 0 means a saddle or a point still on its way down.
    """

    loss: float
    grad_norm: float
    ratio: float
    eigenvalues: np.ndarray
    dead: list

    @property
    def lambda_min(self) -> float:
        return float(self.eigenvalues[0])

    @property
    def lambda_max(self) -> float:
        return float(self.eigenvalues[-1])

    def flat_directions(self, tol: float = 1e-8) -> int:
        """The number of Hessian eigenvalues with |λ| ≤ tol·λ_max."""
        return int((np.abs(self.eigenvalues) <= tol * abs(self.lambda_max)).sum())


def inspect_end_point(runs: SeedRuns, i: int, X: torch.Tensor, y: torch.Tensor,
                      max_params: int = 2000) -> EndPoint:
    """Loss, ‖g_T‖, :func:`stationarity_ratio`, Hessian eigenvalues (explicit Hessian, one
    HVP per column, so at most ``max_params`` parameters) and :func:`dead_units` of run i."""
    model = runs.model(i)
    P = sum(p.numel() for p in model.parameters())
    if P > max_params:
        raise ValueError(f"Invalid run: {P} parameters (the explicit Hessian is limited to "
                         f"max_params = {max_params})")

    def loss():
        return ((model(X) - y) ** 2).mean()

    with single_thread():
        H = hessian_matrix(loss, model)
    return EndPoint(float(runs.final_losses[i]), float(runs.grad_norms[-1, i]),
                    float(stationarity_ratio(runs.grad_norms[:, i])),
                    torch.linalg.eigvalsh(H).cpu().numpy(), dead_units(model, X))


# ---------------------------------------------------------------------------------------------
# Stuck, and where: the ends after a 20 times longer run, classified by a meaningful threshold

LONG_STEPS = 20 * TRAINING["steps"]  #: the skeptic's check: the same runs, 20 times longer
SADDLE_CURVATURE = 1e-3  #: "clearly negative": λ_min < −1e-3·λ_max.  Along such a direction
# gradient descent with momentum escapes like exp(ε|λ|t/(1−α)); the old threshold, 1e-8·λ_max,
# counted directions flatter than rounding-level curvature as "negative".


class EndClasses(NamedTuple):
    """Per run (arrays over the S runs): ``critical`` (stationarity ratio < threshold),
    ``curvature`` λ_min/λ_max of the Hessian at the end, ``negative`` (λ_min/λ_max <
    −``SADDLE_CURVATURE``), ``dead`` units of the hidden layer."""
    critical: np.ndarray
    curvature: np.ndarray
    negative: np.ndarray
    dead: np.ndarray


def classify_ends(runs: "SeedRuns", X: torch.Tensor, y: torch.Tensor,
                  threshold: float = CRITICAL_RATIO, curvature: float = SADDLE_CURVATURE) -> EndClasses:
    """Where each run ended: at a critical point or not (:func:`stationarity_ratio`), and with a
    clearly negative Hessian eigenvalue or not (:func:`inspect_end_point`)."""
    _check_positive("curvature", curvature)
    ends = [inspect_end_point(runs, i, X, y) for i in range(len(runs.seeds))]
    rel = np.array([e.lambda_min / e.lambda_max for e in ends])
    crit = stationarity_ratio(runs.grad_norms) < threshold
    return EndClasses(crit, rel, rel < -curvature, np.array([e.dead[0] for e in ends]))



# ---------------------------------------------------------------------------------------------
# The chapter's longer figures (the notebook computes, these functions draw)

def plot_symmetry_counts(max_width: int = 1000, layers: Sequence[int] = (1, 2, 3), ax=None):
    """Section 4.1: log₁₀ of the number (n!)^m of equivalent parameter vectors against the
    width n, for m hidden layers in ``layers``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    widths = np.arange(1, max_width + 1)
    for m in layers:
        ax.plot(widths, [log10_permutation_symmetries((int(n),) * m) for n in widths],
                label=f"m = {m} hidden layers")
    ax.set_xlabel("units per hidden layer n")
    ax.set_ylabel(r"$\log_{10}$ (number of equivalent parameter vectors)")
    ax.set_title("Each minimum has $(n!)^m$ copies: over $10^{7000}$ for 3 layers of 1000 units",
                 fontsize="medium")
    ax.legend()
    return ax


def plot_final_losses(runs: dict, ax=None):
    """Section 4.3: histograms (log bins) of the final losses of each group of runs."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    bins = np.logspace(-6, 0, 37)
    for name, r in runs.items():
        ax.hist(r.final_losses, bins=bins, alpha=0.6, label=f"{name} ({len(r.seeds)} seeds)")
    ax.axvline(1.0, color="gray", ls=":", label="predict the mean (loss 1)")
    ax.set_xscale("log")
    ax.set_xlabel("final training loss (MSE, fraction of label variance)")
    ax.set_ylabel("number of runs")
    ax.set_title("Wide nets' final losses cluster near 0; small nets' scatter over decades")
    ax.legend(loc="upper left", fontsize="small")  # where "best" puts it, without its timing
    return ax


def plot_stationarity(curves: dict, runs: dict, ratios: dict, threshold: float = CRITICAL_RATIO,
                      axes=None):
    """Section 4.4: gradient-norm curves (``curves``: label → (T + 1,) array), and final loss
    against the stationarity ratio r of every run (``runs``/``ratios``: name → SeedRuns/array)."""
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_losses

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    plot_losses(curves, ax=axes[0], x_label="step t", y_label=r"gradient norm $\|g_t\|$",
                title="Only the stuck run's gradient vanishes (to rounding)")
    for name, r in runs.items():
        axes[1].scatter(np.maximum(ratios[name], 1e-17), r.final_losses, label=name, alpha=0.7)
    axes[1].axvline(threshold, color="gray", ls=":",
                    label="r = " + f"{threshold:.0e}".replace("e-0", "e-"))
    axes[1].set(xscale="log", yscale="log", xlabel=r"$r = \|g_T\| / \mathrm{mean}_t \|g_t\|$",
                ylabel="final training loss",
                title="High-loss small runs: a few at critical points, most still moving")
    axes[1].legend(fontsize="small")
    return axes
