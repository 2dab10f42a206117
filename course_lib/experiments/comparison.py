r"""Comparing optimizers fairly: learning-rate sweeps on toy landscapes and on MNIST-1D.

Chapter 12 of the course ends with every optimizer of :mod:`course_lib.optim` on the same
problems, each with its own learning rate ε picked by a small sweep, because comparing
optimizers at one shared ε mostly compares how well that ε suits each of them (Wilson et
al., 2017, *The marginal value of adaptive gradient methods in machine learning*, NeurIPS;
Schmidt, Schneider & Hennig, 2021, *Descending through a crowded valley*, ICML).

Contents:

- :func:`make_optimizer`, :data:`COMPARED`: the contestants by name (the classes of
  ``course_lib.optim.OPTIMIZERS`` plus SGD with momentum and Adam's AMSGrad variant).
- Landscapes: :data:`LANDSCAPES`, :func:`make_landscape`, :func:`sweep_landscape` (every ε
  of a grid through :func:`~course_lib.landscapes.run_optimizer`, scored by the mean
  log-suboptimality, so that speed counts and ties at machine precision do not),
  :func:`compare_on_landscape`, :func:`race` (the widget's figure).
- MNIST-1D: :func:`mnist1d_splits`, :func:`make_model`, :func:`train_run` (one run of
  :func:`course_lib.train.train`), :func:`sweep_network`, :func:`compare_on_mnist1d`,
  :func:`seed_spread` (the same setting with other batch orders: the noise of one run).
- :func:`results_table`, :func:`format_gap`: the summary as text, rounded, from the
  measurements.
- The settings of the chapter (``LANDSCAPE_*``, ``NET_*``): grids of three learning rates per
  optimizer, centered on the best of a wide exploration (so that the chosen ε is never at the
  edge of its grid), so that the notebook and its tests run the same sweeps.

Portability: the landscapes run in float64; the networks too (``NET_DTYPE``), on the CPU, and
every setting of a network is trained with several batch orders (``NET_SEEDS``) and judged by
the median over them, because single float32 runs at a large ε amplify the last bits of the
CPU's kernels into differences of several points of accuracy.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import torch

from course_lib.data import mnist1d, train_val_split
from course_lib.landscapes import (Beale, Landscape, Quadratic, Rosenbrock, Saddle, Trajectory,
                                   run_optimizer)
from course_lib.models import mlp, small_cnn
from course_lib.optim import OPTIMIZERS, SGD, Adam
from course_lib.train import History, TrainingDiverged, evaluate, train
from course_lib.utils import shared_result

__all__ = [
    "COMPARED", "make_optimizer", "LANDSCAPES", "make_landscape", "LandscapeSweep",
    "sweep_landscape", "compare_on_landscape", "race", "mnist1d_splits", "TrainingRun",
    "NetworkSweep", "make_model", "train_run", "sweep_network", "compare_on_mnist1d",
    "seed_spread", "results_table", "format_gap", "suboptimality_score",
    "plot_landscape_comparison", "plot_network_comparison",
]

# --- the contestants ---------------------------------------------------------------------------
#: every optimizer of the comparison, in the order of the tables
COMPARED = ("SGD", "Momentum", "Adagrad", "RMSprop", "Adadelta", "Adam", "AMSGrad", "AdamW",
            "NAdam")
MOMENTUM = 0.9  # α of "Momentum" (SGD with Polyak's heavy ball)


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """The optimizer called ``name`` (one of :data:`COMPARED`) on ``params`` with ε = ``lr``,
    every other hyperparameter at its default (AdamW: λ = 0.01, torch's default).

    ``"Momentum"`` is ``SGD(momentum=0.9)``, ``"AMSGrad"`` is ``Adam(amsgrad=True)``; the
    others are ``course_lib.optim.OPTIMIZERS[name]``.
    """
    _check("name", name, name in COMPARED, f"one of {COMPARED}")
    _check("lr", lr, isinstance(lr, (int, float)) and lr > 0, "a number > 0")
    if name == "Momentum":
        return SGD(params, lr=lr, momentum=MOMENTUM)
    if name == "AMSGrad":
        return Adam(params, lr=lr, amsgrad=True)
    return OPTIMIZERS[name](params, lr=lr)


def _factory(name: str) -> Callable:
    """``make_optimizer`` for ``name`` with the signature run_optimizer expects."""
    return lambda params, lr: make_optimizer(name, params, lr)


# --- landscapes ----------------------------------------------------------------------------------
#: name → (factory, start or None for the landscape's own start)
LANDSCAPES: dict[str, tuple[Callable[[], Landscape], tuple | None]] = {
    "Rosenbrock": (Rosenbrock, None),
    "Beale": (Beale, None),
    # rotated by 30°, so that no axis is an eigenvector (per-coordinate scaling cannot simply
    # undo the conditioning), and moved off the origin, so that AdamW's decay towards 0 does
    # not help
    "quadratic": (lambda: Quadratic(condition_number=50, angle=math.pi / 6, center=(0.5, -0.5)),
                  None),
    # starting 0.01 from the saddle's stable manifold (the x axis): the escape is the test
    "saddle": (Saddle, (1.5, 0.01)),
}
LANDSCAPE_STEPS = 150
LANDSCAPE_FLOOR = 1e-10  # J − J* below this counts as solved (its digits are rounding noise)
LANDSCAPE_TARGET = 1e-3  # "steps to J − J* < 10⁻³" in the table


def _grid(exponent: float) -> tuple[float, float, float]:
    """(10^(e − ½), 10^e, 10^(e + ½)) rounded to 3 significant digits: e = −0.5 gives
    (0.1, 0.316, 1)."""
    return tuple(float(f"{10 ** (exponent + k):.3g}") for k in (-0.5, 0.0, 0.5))


#: landscape → optimizer → log₁₀ of the middle of its grid: the best ε of a sweep from 10⁻⁵ to
#: 10³, half a decade apart, so that the chosen ε is never at the edge of its grid (a best at the
#: edge would not be a best; where the next ε up diverges, that ε is the top of the grid)
LANDSCAPE_LR_EXPONENTS: dict[str, dict[str, float]] = {
    "Rosenbrock": {"SGD": -2.5, "Momentum": -2.5, "Adagrad": 0.5, "RMSprop": -0.5,
                   "Adadelta": 1.5, "Adam": 0, "AMSGrad": 0, "AdamW": 0, "NAdam": -0.5},
    "Beale": {"SGD": -1.5, "Momentum": -2.5, "Adagrad": 0, "RMSprop": -1, "Adadelta": 2,
              "Adam": -0.5, "AMSGrad": -0.5, "AdamW": 0, "NAdam": 0.5},
    "quadratic": {"SGD": -1.5, "Momentum": -2, "Adagrad": 0.5, "RMSprop": -0.5, "Adadelta": 1.5,
                  "Adam": 0, "AMSGrad": 0, "AdamW": 0, "NAdam": -0.5},
    "saddle": {"SGD": -0.5, "Momentum": -0.5, "Adagrad": 0, "RMSprop": -1, "Adadelta": 1.5,
               "Adam": 0, "AMSGrad": 0, "AdamW": 0, "NAdam": -1},
}
#: Where the top of a half-decade grid diverged, "the best" was only the largest stable ε of
#: the grid: the score kept improving towards the edge of stability.  These sweeps get finer
#: grids, found by scanning up to the first diverging ε, on which the best has a finite,
#: worse neighbour on each side (chapter 12, issue 8).  Near the edge some scores are rugged
#: (Momentum on the saddle, Adadelta on Beale), so a finer scan can find a slightly better ε.
LANDSCAPE_FINE_LRS: dict[tuple[str, str], tuple[float, float, float]] = {
    ("Rosenbrock", "SGD"): (0.00506, 0.00548, 0.00592),  # 0.00641 diverges
    ("Rosenbrock", "Momentum"): (0.00271, 0.00293, 0.00317),  # 0.00343 diverges
    ("Beale", "SGD"): (0.0335, 0.0343, 0.0351),  # 0.0355 diverges
    ("Beale", "Momentum"): (0.00299, 0.0034, 0.00387),
    ("Beale", "Adadelta"): (31.6, 56.2, 100.0),  # 316 diverges
    ("quadratic", "SGD"): (0.0351, 0.0365, 0.0379),  # 2/λ_max = 0.04
    ("saddle", "Momentum"): (0.1, 0.316, 0.426),  # 0.46 diverges
}
#: landscape → optimizer → three learning rates ε, half a decade apart (finer where
#: :data:`LANDSCAPE_FINE_LRS` says)
LANDSCAPE_LRS = {land: {name: LANDSCAPE_FINE_LRS.get((land, name), _grid(e))
                        for name, e in row.items()}
                 for land, row in LANDSCAPE_LR_EXPONENTS.items()}


def make_landscape(problem: str) -> Landscape:
    """A fresh landscape of :data:`LANDSCAPES` by name, its ``start`` set to the chapter's θ₀
    (so that ``run_optimizer`` and the widgets start there by default).  (The argument is
    not called ``landscape`` so that it can be a control of ``trajectory_explorer``.)"""
    _check("problem", problem, problem in LANDSCAPES, f"one of {tuple(LANDSCAPES)}")
    factory, start = LANDSCAPES[problem]
    J = factory()
    if start is not None:
        J.start = torch.tensor(start, dtype=torch.float64)
    return J


def suboptimality_score(traj: Trajectory, min_value: float,
                        floor: float = LANDSCAPE_FLOOR) -> float:
    """The mean over t of log₁₀ max(J(θ_t) − J*, floor): lower is better, +inf if the run
    diverged.  A mean over the whole run rewards getting there early, not only the end point,
    and the floor makes runs that both reached machine precision tie instead of being
    ordered by rounding noise."""
    if traj.diverged:
        return math.inf
    gap = np.maximum(traj.losses - min_value, floor)
    return float(np.mean(np.log10(gap)))


@dataclass
class LandscapeSweep:
    """One optimizer on one landscape, for every ε of its grid.

    Attributes:
        optimizer, landscape: the names.
        lrs: the grid; ``runs`` one Trajectory per ε; ``scores`` their
            :func:`suboptimality_score`.
        min_value: J* of the landscape.
    """
    optimizer: str
    landscape: str
    lrs: tuple[float, ...]
    runs: list[Trajectory]
    scores: np.ndarray
    min_value: float

    @property
    def best_index(self) -> int:
        """Index of the best ε (the first of equal scores)."""
        return int(np.argmin(self.scores))

    @property
    def best_lr(self) -> float:
        return self.lrs[self.best_index]

    @property
    def best(self) -> Trajectory:
        return self.runs[self.best_index]

    @property
    def final_gap(self) -> float:
        """J(θ_T) − J* of the best run (inf if every ε diverged)."""
        return math.inf if self.best.diverged else float(self.best.losses[-1] - self.min_value)

    def steps_to(self, target: float = LANDSCAPE_TARGET) -> int | None:
        """The first t with J(θ_t) − J* < target in the best run, or None."""
        return self.best.first_step_below(self.min_value + target)


def sweep_landscape(landscape: str, optimizer: str, lrs=None,
                    steps: int = LANDSCAPE_STEPS) -> LandscapeSweep:
    """Run ``optimizer`` on ``landscape`` (names from :data:`LANDSCAPES`, :data:`COMPARED`)
    from its start for ``steps`` updates, once per ε in ``lrs`` (default: the chapter's grid
    ``LANDSCAPE_LRS[landscape][optimizer]``)."""
    _check("landscape", landscape, landscape in LANDSCAPES, f"one of {tuple(LANDSCAPES)}")
    J = make_landscape(landscape)
    _check("optimizer", optimizer, optimizer in COMPARED, f"one of {COMPARED}")
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    lrs = tuple(LANDSCAPE_LRS[landscape][optimizer] if lrs is None else lrs)
    _check("lrs", lrs, len(lrs) >= 1 and all(lr > 0 for lr in lrs), "learning rates > 0")
    runs = [run_optimizer(J, _factory(optimizer), J.start, steps, lr=lr, name=optimizer)
            for lr in lrs]
    scores = np.array([suboptimality_score(r, J.min_value) for r in runs])
    return LandscapeSweep(optimizer, landscape, lrs, runs, scores, J.min_value)


@shared_result
def compare_on_landscape(landscape: str, optimizers=COMPARED,
                         steps: int = LANDSCAPE_STEPS) -> dict[str, LandscapeSweep]:
    """:func:`sweep_landscape` for every optimizer: name → LandscapeSweep."""
    return {name: sweep_landscape(landscape, name, steps=steps) for name in optimizers}


def race(landscape: str, optimizers, lr_scale: float = 1.0, steps: int = LANDSCAPE_STEPS,
         tuned: Mapping[str, Mapping[str, float]] | None = None, ax=None):
    """Draw the chosen optimizers on ``landscape``, each at ``lr_scale`` times its tuned ε.

    ``tuned[landscape][name]`` gives the tuned ε (e.g. the ``best_lr`` of the chapter's
    sweeps); without it, the middle of the chapter's grid.  Returns the dict
    label → Trajectory.  This is the figure of the chapter's widget.
    """
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_trajectories

    _check("landscape", landscape, landscape in LANDSCAPES, f"one of {tuple(LANDSCAPES)}")
    J = make_landscape(landscape)
    optimizers = tuple(optimizers)
    for name in optimizers:
        _check("optimizers", name, name in COMPARED, f"names from {COMPARED}")
    _check("lr_scale", lr_scale, lr_scale > 0, "a number > 0")
    runs = {}
    for name in optimizers:
        lr = (tuned[landscape][name] if tuned is not None
              else LANDSCAPE_LRS[landscape][name][1]) * lr_scale
        runs[f"{name}, ε = {lr:.3g}"] = run_optimizer(J, _factory(name), J.start, steps, lr=lr)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.8))
    plot_trajectories(J, runs, ax=ax, title=f"{J.name}: {steps} steps at {lr_scale:.3g} × the "
                      "tuned ε")
    return runs


# --- MNIST-1D ------------------------------------------------------------------------------------
NET_SAMPLES, NET_DATA_SEED = 4000, 0  # MNIST-1D: 3200 training + 800 test signals
NET_VAL_FRACTION = 0.2  # of the training signals, held out to pick ε
NET_BATCH = 128
NET_EPOCHS = {"mlp": 5, "cnn": 4}
NET_MODEL_SEED = 0  # the same θ₀ for every run of a model
NET_DTYPE = torch.float64  # cheap for these small models, and far less sensitive to the CPU
NET_SEEDS = (0, 1, 2)  # batch orders: every (optimizer, ε) is trained once with each
#: model → optimizer → three learning rates ε (about half a decade apart), the best (by median
#: validation loss) in the middle
NET_LRS: dict[str, dict[str, tuple[float, float, float]]] = {
    "mlp": {"SGD": (0.3, 1.0, 3.0), "Momentum": (0.1, 0.3, 1.0), "Adagrad": (0.03, 0.1, 0.3),
            "RMSprop": (3e-3, 1e-2, 3e-2), "Adadelta": (1.0, 3.0, 10.0),
            "Adam": (0.01, 0.03, 0.1), "AMSGrad": (0.01, 0.03, 0.1),
            "AdamW": (0.01, 0.03, 0.1), "NAdam": (0.01, 0.03, 0.1)},
    "cnn": {"SGD": (0.03, 0.1, 0.3), "Momentum": (0.1, 0.3, 1.0), "Adagrad": (0.01, 0.03, 0.1),
            "RMSprop": (1e-3, 3e-3, 1e-2), "Adadelta": (3.0, 10.0, 30.0),
            "Adam": (3e-3, 1e-2, 3e-2), "AMSGrad": (3e-3, 1e-2, 3e-2),
            "AdamW": (3e-3, 1e-2, 3e-2), "NAdam": (3e-3, 1e-2, 3e-2)},
}
NET_SPREAD_SEEDS = (1, 2)  # other batch orders than 0, for :func:`seed_spread`


def mnist1d_splits(num_samples: int = NET_SAMPLES, seed: int = NET_DATA_SEED,
                   val_fraction: float = NET_VAL_FRACTION,
                   dtype: torch.dtype = NET_DTYPE) -> dict[str, tuple]:
    """MNIST-1D as {"train": (X, y), "val": (X, y), "test": (X, y)}, the signals X in
    ``dtype``: the validation set picks ε, the test set is only looked at for the chosen
    runs."""
    data = mnist1d(num_samples, seed=seed)
    train_set, val_set = train_val_split(data.X_train, data.y_train, val_fraction, seed=seed)
    return {name: (X.to(dtype), y) for name, (X, y) in
            (("train", train_set), ("val", val_set), ("test", data.test))}


def make_model(model: str, dtype: torch.dtype = NET_DTYPE) -> torch.nn.Module:
    """A fresh "mlp" (40-100-10, ReLU) or "cnn" (``small_cnn`` with 16 and 32 channels),
    drawn from a generator seeded with ``NET_MODEL_SEED`` (the same θ₀ every time), its
    parameters in ``dtype``, on the CPU."""
    _check("model", model, model in NET_EPOCHS, f"one of {tuple(NET_EPOCHS)}")
    gen = torch.Generator().manual_seed(NET_MODEL_SEED)
    if model == "mlp":
        net = mlp(40, (100,), 10, generator=gen)
    else:
        net = small_cnn(40, (16, 32), 10, generator=gen)
    return net.to(dtype)


@dataclass
class TrainingRun:
    """One training run on MNIST-1D.

    Attributes:
        optimizer, lr, model: what ran.
        history: the :class:`~course_lib.train.History` (per step and per epoch).
        val_loss: the validation loss after the last epoch (inf if the run diverged).
        test_loss, test_accuracy: on the test set after the last epoch (nan if diverged).
        seconds: wall-clock time of the training (varies from run to run: plot it, never
            print it).
        diverged: True if training stopped on a non-finite loss.
        seed: the batch order.
    """
    optimizer: str
    lr: float
    model: str
    history: History
    val_loss: float
    test_loss: float
    test_accuracy: float
    seconds: float
    diverged: bool = False
    seed: int = 0


def train_run(model: str, optimizer: str, lr: float, splits: dict,
              epochs: int | None = None, batch_size: int = NET_BATCH,
              seed: int = 0) -> TrainingRun:
    """Train a fresh ``model`` ("mlp": 40-100-10 ReLU, "cnn": ``small_cnn`` with 16 and 32
    channels; the same θ₀ every time, in the dtype of ``splits``) with ``optimizer`` at
    ε = ``lr`` on ``splits["train"]`` by :func:`course_lib.train.train` on the CPU
    (cross-entropy, minibatches of ``batch_size``, batch order from ``seed``), validating on
    ``splits["val"]`` every epoch, then evaluate on ``splits["test"]``."""
    _check("model", model, model in NET_EPOCHS, f"one of {tuple(NET_EPOCHS)}")
    epochs = NET_EPOCHS[model] if epochs is None else epochs
    net = make_model(model, splits["train"][0].dtype)
    opt = make_optimizer(optimizer, net.parameters(), lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    try:
        hist = train(net, loss_fn, opt, splits["train"], epochs=epochs, batch_size=batch_size,
                     val_data=splits["val"], seed=seed, device="cpu")
    except TrainingDiverged as err:
        return TrainingRun(optimizer, lr, model, err.history, math.inf, math.nan, math.nan,
                           time.perf_counter() - start, diverged=True, seed=seed)
    seconds = time.perf_counter() - start
    test = evaluate(net, loss_fn, splits["test"])
    return TrainingRun(optimizer, lr, model, hist, hist.epochs["val_loss"][-1], test["loss"],
                       test["accuracy"], seconds, seed=seed)


@dataclass
class NetworkSweep:
    """One optimizer on one network for every ε of its grid and every batch order.

    ``runs[i][k]`` is the run at ε = ``lrs[i]`` with batch order ``seeds[k]``.  The best ε is
    the one of least *median* validation loss over the batch orders (a diverged run counts
    as inf), so that one lucky or unlucky order cannot pick it.
    """
    optimizer: str
    model: str
    runs: list[list[TrainingRun]] = field(default_factory=list)

    @property
    def lrs(self) -> tuple[float, ...]:
        return tuple(row[0].lr for row in self.runs)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.seed for r in self.runs[0])

    @property
    def val_losses(self) -> np.ndarray:
        """(number of ε, number of seeds): final validation losses, inf where diverged."""
        return np.array([[r.val_loss for r in row] for row in self.runs])

    @property
    def median_val_losses(self) -> np.ndarray:
        return np.median(self.val_losses, axis=1)

    @property
    def best_index(self) -> int:
        """Index of the ε of least median validation loss (the first of equals)."""
        return int(np.argmin(self.median_val_losses))

    @property
    def best_lr(self) -> float:
        return self.lrs[self.best_index]

    @property
    def best_runs(self) -> list[TrainingRun]:
        """The runs at the best ε, one per batch order."""
        return self.runs[self.best_index]

    @property
    def best(self) -> TrainingRun:
        """The run at the best ε with the first batch order (for curves)."""
        return self.best_runs[0]

    @property
    def test_accuracies(self) -> np.ndarray:
        """Test accuracies at the best ε, one per batch order (nan where diverged)."""
        return np.array([r.test_accuracy for r in self.best_runs])

    @property
    def test_accuracy(self) -> float:
        """The median test accuracy at the best ε over the batch orders."""
        return float(np.median(self.test_accuracies))

    @property
    def at_edge(self) -> bool:
        """True if the best ε is the smallest or the largest of the grid."""
        return len(self.lrs) > 1 and self.best_index in (0, len(self.lrs) - 1)


def sweep_network(model: str, optimizer: str, splits: dict, lrs=None,
                  epochs: int | None = None, seeds=NET_SEEDS) -> NetworkSweep:
    """:func:`train_run` once per ε in ``lrs`` (default ``NET_LRS[model][optimizer]``) and
    batch order in ``seeds``."""
    _check("model", model, model in NET_EPOCHS, f"one of {tuple(NET_EPOCHS)}")
    _check("optimizer", optimizer, optimizer in COMPARED, f"one of {COMPARED}")
    lrs = tuple(NET_LRS[model][optimizer] if lrs is None else lrs)
    _check("lrs", lrs, len(lrs) >= 1 and all(lr > 0 for lr in lrs), "learning rates > 0")
    seeds = _check_seeds(seeds)
    return NetworkSweep(optimizer, model,
                        [[train_run(model, optimizer, lr, splits, epochs, seed=s) for s in seeds]
                         for lr in lrs])


@shared_result
def compare_on_mnist1d(model: str, splits: dict, optimizers=COMPARED,
                       epochs: int | None = None, seeds=NET_SEEDS) -> dict[str, NetworkSweep]:
    """:func:`sweep_network` for every optimizer: name → NetworkSweep."""
    return {name: sweep_network(model, name, splits, epochs=epochs, seeds=seeds)
            for name in optimizers}


def _check_seeds(seeds) -> tuple[int, ...]:
    seeds = tuple(seeds)
    _check("seeds", seeds, len(seeds) >= 1 and all(_is_int(s) and s >= 0 for s in seeds),
           "a non-empty sequence of ints >= 0")
    return seeds


def seed_spread(model: str, optimizer: str, lr: float, splits: dict,
                seeds=NET_SPREAD_SEEDS, epochs: int | None = None) -> np.ndarray:
    """Test accuracies of one setting trained with the batch orders ``seeds`` (``seed`` of
    :func:`train_run`; θ₀ stays the same): the run-to-run noise that a comparison of single
    runs has to beat."""
    seeds = _check_seeds(seeds)
    return np.array([train_run(model, optimizer, lr, splits, epochs, seed=s).test_accuracy
                     for s in seeds])


# --- the summary table ---------------------------------------------------------------------------
def format_gap(x: float, coarse: bool = False) -> str:
    """A suboptimality J − J* for printing: 2 significant digits, "< 1e-10" below
    ``LANDSCAPE_FLOOR`` (those digits are rounding noise), "diverged" if not finite.

    ``coarse=True`` (the summary table) prints values from 0.1 up with 1 significant digit: a
    run that far from the minimum has not converged and may be chaotic (Adadelta's tuned run
    on the quadratic ends at 0.6446 or 0.6463 depending on the CPU's kernels, while every
    other run of the table agrees to 2e-10)."""
    if not math.isfinite(x):
        return "diverged"
    if x < LANDSCAPE_FLOOR:
        return f"< {LANDSCAPE_FLOOR:.0e}"
    if coarse and x >= 0.1:
        return f"{float(f'{x:.1g}'):g}"
    return f"{x:.2g}"


def results_table(landscapes: Mapping[str, Mapping[str, LandscapeSweep]] | None = None,
                  networks: Mapping[str, Mapping[str, NetworkSweep]] | None = None) -> str:
    """The comparison as a text table, one row per optimizer, rounded so that it prints the
    same on every run: for each landscape the tuned ε and the final J − J*; for each network
    the tuned ε and the median test accuracy over the batch orders at that ε, to 2 decimals
    (the spread across CPUs and batch orders allows no more)."""
    landscapes, networks = landscapes or {}, networks or {}
    _check("landscapes/networks", "nothing", bool(landscapes or networks), "at least one result")
    names = list(next(iter({**landscapes, **networks}.values())))
    header = ["optimizer"]
    for land in landscapes:
        header += [f"{land}: ε", "J - J*"]
    for model in networks:
        header += [f"{model}: ε", "test acc"]
    rows = [header]
    for name in names:
        row = [name]
        for sweeps in landscapes.values():
            s = sweeps[name]
            row += [f"{s.best_lr:.3g}", format_gap(s.final_gap, coarse=True)]
        for sweeps in networks.values():
            sweep = sweeps[name]
            acc = sweep.test_accuracy
            row += [f"{sweep.best_lr:.3g}", "diverged" if math.isnan(acc) else f"{acc:.2f}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the chapter's figures
def plot_landscape_comparison(results: Mapping[str, Mapping[str, LandscapeSweep]],
                              shown=("SGD", "Momentum", "Adagrad", "RMSprop", "Adadelta", "Adam", "NAdam"),
                              axes=None):
    """Figure of §12.6.1: on each toy landscape, the path of each optimizer in ``shown`` at its
    tuned ε (``results`` from :func:`compare_on_landscape` per landscape), one legend below."""
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_trajectories

    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(10, 8.2))
    axes = np.asarray(axes)
    for ax, (land, sweeps) in zip(axes.flat, results.items()):
        plot_trajectories(make_landscape(land), {name: sweeps[name].best for name in shown},
                          ax=ax, legend=False, title=f"{land}: {LANDSCAPE_STEPS} steps, tuned ε",
                          contour_kw={"resolution": 100, "levels": 15})
    fig = axes.flat[0].figure
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=8, fontsize="small")
    fig.suptitle("Momentum gets closest on Rosenbrock; Adagrad and RMSprop leave the saddle first")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return axes


def plot_network_comparison(results: Mapping[str, Mapping[str, NetworkSweep]], axes=None):
    """Figure of §12.6.2: per model (rows), the training loss and validation accuracy per epoch of
    each optimizer's best run (order 0), and its test accuracy (median, range over the orders);
    ``results`` = {model: :func:`compare_on_mnist1d`}."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for row, (model, sweeps) in zip(axes, results.items()):
        for name, s in sweeps.items():
            epochs = s.best.history.epochs
            row[0].plot(epochs["epoch"], epochs["train_loss"], label=name)
            row[1].plot(epochs["epoch"], epochs["val_accuracy"], label=name)
        names = list(sweeps)
        med = np.array([sweeps[n].test_accuracy for n in names])
        lo = med - np.array([sweeps[n].test_accuracies.min() for n in names])
        hi = np.array([sweeps[n].test_accuracies.max() for n in names]) - med
        row[2].barh(names, med, xerr=(lo, hi), color="tab:blue", ecolor="k", capsize=2)
        row[0].set(xlabel="epoch", ylabel="training loss (mean over the epoch)", yscale="log",
                   title=f"{model.upper()}: training loss, tuned ε, order 0")
        row[1].set(xlabel="epoch", ylabel="validation accuracy",
                   title=f"{model.upper()}: validation accuracy, order 0")
        row[2].set(xlabel="test accuracy", xlim=(0, 1),
                   title=f"{model.upper()}: test accuracy (median, range of 3 orders)")
        row[2].invert_yaxis()
        row[0].legend(fontsize="x-small", ncol=2)
    fig = axes[0][0].figure
    fig.suptitle("On the CNN tuned SGD with momentum beats every adaptive method; "
                 "on the MLP the differences are small")
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return axes
