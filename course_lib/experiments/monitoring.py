r"""Choosing and monitoring an optimizer: the experiments of chapter 14.

Practical methodology (Goodfellow, Bengio & Courville, 2016, *Deep Learning*, §11.4; Bengio,
2012, *Practical recommendations for gradient-based training of deep architectures*) in
measurements on MNIST-1D:

=================================  ============================================================
name                               what it does or measures
=================================  ============================================================
:func:`mnist1d_splits`             the chapter's data: training, validation and test sets
:func:`make_model`                 the chapter's network (a ReLU MLP, the same θ₀ every time)
:func:`make_optimizer`             "Adam", "Momentum" (SGD, α = 0.9) or "SGD" by name
:class:`UpdateRatioMonitor`        records ‖Δθ‖/‖θ‖ at every step of any torch optimizer
:func:`train_run`                  one training run, divergence caught, update ratios recorded
:func:`good_lr_band`               the learning rates whose final loss is near the best one
:func:`lr_sweep`                   :func:`train_run` over a grid of ε (with the band above)
:func:`lr_range_test`              Smith's (2017) range test: ε grows exponentially in one run
:func:`diagnose`                   "diverging", "stalling", "overfitting" or "healthy"
:func:`health_signals`             median gradient norm and update ratio of a run
:func:`first_spike`                the first loss spike of a run, and how much ‖g‖ grew there
:func:`dead_units`                 the fraction of ReLU units that never fire, per layer
:func:`dead_unit_table`            dead units per layer at θ₀ and after a sweep's runs (seed medians)
:func:`param_norm`                 ‖θ‖₂ of a model
:func:`plot_lr_sweeps`, …          the figures of sections 14.1–14.4 (:func:`plot_range_tests`,
                                   :func:`plot_example_runs`, :func:`plot_overfitting`)
:func:`explorer_figure`            the widget's figure: ε → curves, signals and diagnosis
:func:`log_runs`                   three runs logged to TensorBoard (ε too small, good, too large)
:func:`read_scalars`               a logged run's scalars, read back from its event files
:func:`layer_update_ratios`        the logged update ratio of each layer, step by step
:func:`layer_ratio_figure`         section 14.6's figure: per-layer update ratios of three runs
=================================  ============================================================

The chapter's settings are module constants (``HIDDEN``, ``EPOCHS``, ``SWEEP_LRS``,
``RANGE_TEST``, ``EXAMPLE_LRS``, ``OVERFIT``, ...), so that the notebook and
``tests/test_ch14_monitoring.py`` run the same experiments.

References: Goodfellow, Bengio & Courville (2016), *Deep Learning*, MIT Press, §11.4–11.5 and
§8.5; Bengio (2012), *Practical recommendations for gradient-based training of deep
architectures*, in *Neural Networks: Tricks of the Trade*, 2nd ed., Springer; Smith (2017),
*Cyclical learning rates for training neural networks*, WACV; Kingma & Ba (2015), *Adam: a
method for stochastic optimization*, ICLR; Wilson et al. (2017), *The marginal value of
adaptive gradient methods in machine learning*, NeurIPS; Karpathy (2016), *CS231n:
Convolutional neural networks for visual recognition*, Stanford course notes (the
update-to-parameter ratio).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from course_lib.data import mnist1d, train_val_split
from course_lib.models import mlp
from course_lib.optim import SGD, Adam
from course_lib.train import History, TrainingDiverged, train, update_norms
from course_lib.utils import shared_result

__all__ = [
    "OPTIMIZER_NAMES", "mnist1d_splits", "make_model", "make_optimizer", "UpdateRatioMonitor",
    "Run", "train_run", "good_lr_band", "Sweep", "lr_sweep", "RangeTest", "lr_range_test",
    "LABELS", "Diagnosis", "diagnose", "health_signals", "first_spike", "dead_units",
    "param_norm", "dead_unit_table", "explorer_figure", "layer_ratio_figure", "log_runs", "run_name", "read_scalars", "layer_update_ratios",
    "plot_lr_sweeps", "plot_range_tests", "plot_example_runs", "plot_overfitting",
]

# --- the chapter's settings ----------------------------------------------------------------------
DATA = {"num_samples": 4000, "seed": 0, "val_fraction": 0.2}  # 2560 train, 640 val, 800 test
HIDDEN = (64, 64, 64, 64)  # four ReLU layers: at θ₀ the loss sits on a plateau, ‖g‖ is small
MODEL_SEED = 0  # the same θ₀ for every run
#: float64: cheap for this network, and a run at a large ε amplifies the last bits of float32
#: into visible differences between CPUs
DTYPE = torch.float64
BATCH = 64
EPOCHS = 4  # 40 steps per epoch: 160 steps per run
MOMENTUM = 0.9  # α of "Momentum"
OPTIMIZER_NAMES = ("Adam", "Momentum", "SGD")

#: the sweep's grid: ε = 10^(k/2), half a decade apart, from 3.16·10⁻⁴ to 3.16
SWEEP_LRS = tuple(float(f"{10 ** (k / 2):.3g}") for k in range(-7, 2))
BAND_TOLERANCE = 0.2  # "good": a final validation loss within 20 % of the sweep's best
#: the sweep trains every ε with each of these seeds (θ₀ and batch order) and judges it by the
#: median final validation loss: one seed is one sample, and its ranking of close ε is noise
SWEEP_SEEDS = (0, 1, 2)

#: dead units after Adam at these ε (three of its good band), against θ₀
DEAD_UNIT_LRS = (1e-3, 3.16e-3, 1e-2)
#: the longer check of the sweep (4 × the steps), on the part of the grid around each band
LONG_EPOCHS = 16
LONG_LRS = {"Adam": (1e-4, 3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1),
            "Momentum": (3.16e-3, 1e-2, 3.16e-2, 0.1, 0.316)}

#: the range test of the chapter
RANGE_TEST = {"lr_min": 1e-5, "lr_max": 10.0, "steps": 160, "batch_size": BATCH,
              "smoothing": 0.9, "stop_factor": 4.0, "seed": 0}

#: three runs of one optimizer on the same model: ε too small, good, too large
EXAMPLE_OPTIMIZER = "Momentum"
EXAMPLE_LRS = {"too small": 1e-3, "good": 0.1, "too large": 3.16}

#: where section 14.6 logs its runs for TensorBoard: relative to the notebook's folder (and
#: git-ignored); one sub-directory per run, named by :func:`run_name`
TB_LOGDIR = "runs/ch14"
RULE_OF_THUMB = 1e-3  # a healthy update ratio ‖Δθ‖/‖θ‖ per step (Karpathy, 2016)

#: a run that overfits: the same network on 300 examples, trained for 30 epochs
OVERFIT = {"optimizer": "Adam", "lr": 3e-3, "n_train": 300, "epochs": 30, "batch_size": 50}


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _is_positive(x) -> bool:
    return isinstance(x, (int, float, np.floating)) and not isinstance(x, bool) and x > 0 \
        and math.isfinite(x)


# --- data, model, optimizers ---------------------------------------------------------------------
def mnist1d_splits(num_samples: int = DATA["num_samples"], seed: int = DATA["seed"],
                   val_fraction: float = DATA["val_fraction"]) -> dict[str, tuple]:
    """MNIST-1D as {"train": (X, y), "val": (X, y), "test": (X, y)}.

    The validation set (a random ``val_fraction`` of the training signals) is what we tune ε
    and monitor training on; the test set stays untouched until the end (§11.4 of the book).
    """
    data = mnist1d(num_samples, seed=seed)
    train_set, val_set = train_val_split(data.X_train, data.y_train, val_fraction, seed=seed)
    return {name: (X.to(DTYPE), y) for name, (X, y) in
            (("train", train_set), ("val", val_set), ("test", data.test))}


def make_model(hidden: tuple[int, ...] = HIDDEN, seed: int = MODEL_SEED) -> torch.nn.Module:
    """The chapter's network: ``mlp(40, hidden, 10)`` (ReLU) in ``DTYPE`` on the CPU, θ₀ drawn
    from a generator seeded with ``seed``, so that every run of a figure starts from the same
    θ₀."""
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    return mlp(40, tuple(hidden), 10,
               generator=torch.Generator().manual_seed(int(seed))).to(DTYPE)


def make_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    """``"Adam"`` (β₁ = 0.9, β₂ = 0.999), ``"Momentum"`` (SGD with α = 0.9) or ``"SGD"``
    (plain), from :mod:`course_lib.optim`, with learning rate ε = ``lr``."""
    _check("name", name, name in OPTIMIZER_NAMES, f"one of {OPTIMIZER_NAMES}")
    _check("lr", lr, _is_positive(lr), "a finite number > 0")
    if name == "Adam":
        return Adam(params, lr=lr)
    return SGD(params, lr=lr, momentum=MOMENTUM if name == "Momentum" else 0.0)


# --- the update-to-parameter ratio ---------------------------------------------------------------
class UpdateRatioMonitor:
    r"""Record the relative size of every update of ``optimizer``:

    .. math:: r_t = \frac{\lVert \theta_t - \theta_{t-1} \rVert_2}{\lVert \theta_{t-1} \rVert_2}

    over all its parameters together (one number per step, in ``ratios``), from the per-tensor
    norms of :func:`course_lib.train.update_norms` (which ``train(..., tensorboard=...)`` logs
    per tensor, as ``update_ratio/<name>``).  It hooks into
    ``optimizer.step`` (``register_step_pre_hook`` / ``register_step_post_hook``), so it works
    with any ``torch.optim.Optimizer`` and any training loop; ``remove()`` detaches it.  A rule
    of thumb (Karpathy's CS231n notes) puts healthy values near 10⁻³: far below, the weights
    hardly move; near 1, every step rewrites them.
    """

    def __init__(self, optimizer: torch.optim.Optimizer):
        _check("optimizer", type(optimizer).__name__,
               isinstance(optimizer, torch.optim.Optimizer), "a torch.optim.Optimizer")
        self.optimizer = optimizer
        self.ratios: list[float] = []
        self._before: list[torch.Tensor] = []
        self._handles = [optimizer.register_step_pre_hook(self._pre),
                         optimizer.register_step_post_hook(self._post)]

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def _pre(self, optimizer, args, kwargs) -> None:
        self._before = [p.detach().clone() for p in self._params()]

    @torch.no_grad()
    def _post(self, optimizer, args, kwargs) -> None:
        deltas, thetas = update_norms(self._before, self._params())  # ‖Δθᵢ‖, ‖θᵢ‖ per tensor
        # ‖Δθ‖² and ‖θ‖² summed over tensors; one host sync per step
        step_sq, theta_sq = torch.stack([torch.stack(deltas).square().sum(),
                                         torch.stack(thetas).square().sum()]).tolist()
        self.ratios.append(math.sqrt(step_sq / theta_sq) if theta_sq > 0 else math.inf)

    def remove(self) -> None:
        """Stop recording (the ratios so far stay)."""
        for h in self._handles:
            h.remove()
        self._handles = []


# --- one run, and a sweep ------------------------------------------------------------------------
@dataclass
class Run:
    """One training run on MNIST-1D.

    Attributes:
        optimizer, lr: what ran (ε = lr).
        history: the :class:`~course_lib.train.History`; for a run that diverged, the records
            up to the last finite step, with ``stop_reason`` starting with "diverged".
        update_ratios: ‖Δθ‖/‖θ‖ at every step (an array, one entry per step of history).
        diverged: True if the loss or the gradient became nan/inf.
        model: the trained network (its last finite parameters, if it diverged).
    """
    optimizer: str
    lr: float
    history: History
    update_ratios: np.ndarray
    diverged: bool = False
    model: torch.nn.Module | None = None

    @property
    def final_val_loss(self) -> float:
        """The validation loss after the last epoch; inf if the run diverged."""
        if self.diverged or not self.history.epochs["val_loss"]:
            return math.inf
        return float(self.history.epochs["val_loss"][-1])


def train_run(optimizer: str, lr: float, *, epochs: int = EPOCHS, hidden=HIDDEN,
              batch_size: int = BATCH, n_train: int | None = None, splits: dict | None = None,
              seed: int = 0, model_seed: int = MODEL_SEED, tensorboard=None) -> Run:
    """Train a fresh :func:`make_model` ``(hidden)`` with ``optimizer`` at ε = ``lr`` by
    :func:`course_lib.train.train` (cross-entropy, validation every epoch), recording the
    update ratios with an :class:`UpdateRatioMonitor`.

    ``n_train`` keeps only the first that many training examples (to make a run overfit);
    ``splits`` defaults to :func:`mnist1d_splits` ``()``; ``seed`` fixes the batch order and
    ``model_seed`` the initial parameters θ₀.
    A divergence is caught: the Run then has ``diverged=True``.  ``tensorboard`` (a log
    directory) is passed on to :func:`~course_lib.train.train`, which then logs the run there.
    """
    _check("epochs", epochs, _is_int(epochs) and epochs >= 1, "an int >= 1")
    splits = mnist1d_splits() if splits is None else splits
    X, y = splits["train"]
    if n_train is not None:
        _check("n_train", n_train, _is_int(n_train) and 1 <= n_train <= len(X),
               f"None or an int in [1, {len(X)}]")
        X, y = X[:n_train], y[:n_train]
    model = make_model(hidden, model_seed)
    opt = make_optimizer(optimizer, model.parameters(), lr)
    monitor = UpdateRatioMonitor(opt)
    diverged = False
    try:
        hist = train(model, torch.nn.CrossEntropyLoss(), opt, (X, y), epochs=epochs,
                     batch_size=batch_size, val_data=splits["val"], seed=seed, device="cpu",
                     tensorboard=tensorboard)
    except TrainingDiverged as err:
        hist, diverged = err.history, True
        hist.stop_reason = f"diverged: {err}"
    monitor.remove()
    return Run(optimizer, float(lr), hist, np.asarray(monitor.ratios), diverged, model)


def good_lr_band(lrs, losses, tolerance: float = BAND_TOLERANCE) -> tuple[float, ...]:
    """The learning rates whose loss is at most (1 + tolerance) × the least loss, in order.

    A non-finite loss (a diverged run) never counts.  Example: losses (2.3, 1.2, 1.0, 1.1, inf)
    with tolerance 0.2 keep the 2nd, 3rd and 4th ε.
    """
    lrs = np.asarray(lrs, dtype=float)
    losses = np.asarray(losses, dtype=float)
    _check("lrs", lrs.shape, lrs.ndim == 1 and len(lrs) >= 1, "a 1-D sequence of learning rates")
    _check("losses", losses.shape, losses.shape == lrs.shape, f"one loss per lr, shape {lrs.shape}")
    _check("tolerance", tolerance, isinstance(tolerance, (int, float)) and tolerance >= 0, ">= 0")
    finite = np.isfinite(losses)
    if not finite.any():
        return ()
    best = losses[finite].min()
    good = finite & (losses <= (1 + tolerance) * best)
    return tuple(float(lr) for lr, ok in zip(lrs, good) if ok)


@dataclass
class Sweep:
    """One optimizer trained at every ε of a grid, with one or more seeds (:func:`lr_sweep`).

    ``seed_runs[k][i]`` is the run with the k-th seed at the i-th ε; ``runs`` are those of the
    first seed (for curves and for looking inside a trained network).  An ε is judged by the
    median of its final validation losses over the seeds.
    """
    optimizer: str
    seed_runs: list[list[Run]] = field(default_factory=list)
    seeds: tuple[int, ...] = ()  # the k of seed_runs[k]'s runs (θ₀ and batch order)

    @property
    def runs(self) -> list[Run]:
        return self.seed_runs[0]

    @property
    def lrs(self) -> np.ndarray:
        return np.array([r.lr for r in self.runs])

    @property
    def seed_val_losses(self) -> np.ndarray:
        """(number of seeds, number of ε): final validation losses, inf where diverged."""
        return np.array([[r.final_val_loss for r in runs] for runs in self.seed_runs])

    @property
    def final_val_losses(self) -> np.ndarray:
        """One per ε: the median over the seeds (inf where most runs diverged)."""
        return np.median(self.seed_val_losses, axis=0)

    @property
    def best_index(self) -> int:
        return int(np.argmin(self.final_val_losses))

    @property
    def best_lr(self) -> float:
        """The ε of least median final validation loss."""
        return float(self.lrs[self.best_index])

    @property
    def best(self) -> Run:
        """The first seed's run at :attr:`best_lr`."""
        return self.runs[self.best_index]

    def band(self, tolerance: float = BAND_TOLERANCE) -> tuple[float, ...]:
        """:func:`good_lr_band` of the median losses."""
        return good_lr_band(self.lrs, self.final_val_losses, tolerance)

    def seed_bands(self, tolerance: float = BAND_TOLERANCE) -> list[tuple[float, ...]]:
        """:func:`good_lr_band` of each seed alone: how much one sweep's answer moves."""
        return [good_lr_band(self.lrs, losses, tolerance) for losses in self.seed_val_losses]

    def band_decades(self, tolerance: float = BAND_TOLERANCE) -> float:
        """log₁₀(largest good ε / smallest good ε): the width of the good band, in decades."""
        band = self.band(tolerance)
        return math.log10(max(band) / min(band)) if band else math.nan


@shared_result
def lr_sweep(optimizer: str, lrs=SWEEP_LRS, seeds=(0,), **kwargs) -> Sweep:
    """:func:`train_run` ``(optimizer, lr, seed=k, model_seed=k, **kwargs)`` for every ε in
    ``lrs`` and every k in ``seeds`` (each seed draws its own θ₀ and batch order)."""
    lrs = tuple(lrs)
    _check("lrs", lrs, len(lrs) >= 1 and all(_is_positive(lr) for lr in lrs),
           "a non-empty sequence of learning rates > 0")
    seeds = tuple(seeds)
    _check("seeds", seeds, len(seeds) >= 1 and all(_is_int(k) and k >= 0 for k in seeds),
           "a non-empty sequence of ints >= 0")
    return Sweep(optimizer, [[train_run(optimizer, lr, seed=k, model_seed=k, **kwargs)
                              for lr in lrs] for k in seeds], seeds)


# --- the learning-rate range test ----------------------------------------------------------------
@dataclass
class RangeTest:
    """The result of :func:`lr_range_test`.

    Attributes:
        lrs, losses, smoothed: per step taken: ε, the minibatch loss, its smoothed value.
        diverged: True if the test stopped early (the smoothed loss exceeded ``stop_factor``
            × its minimum, or the loss became nan/inf).
        min_lr: the ε at which the smoothed loss was least.
        steepest_lr: the ε (before ``min_lr``) at which the smoothed loss fell fastest per
            unit of log ε.
        suggested_lr: ``min_lr / 10``: a tenth of the ε where the loss stops falling, a safe
            distance below the edge of divergence.
    """
    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    diverged: bool
    min_lr: float
    steepest_lr: float
    suggested_lr: float


def lr_range_test(model_factory: Callable[[], torch.nn.Module], loss_fn: Callable,
                  optimizer_factory: Callable, data: tuple[torch.Tensor, torch.Tensor],
                  lr_min: float = 1e-6, lr_max: float = 10.0, steps: int = 100, *,
                  batch_size: int = 64, smoothing: float = 0.98, stop_factor: float = 4.0,
                  seed: int = 0) -> RangeTest:
    r"""Smith's (2017) learning-rate range test: one short run in which ε grows exponentially,

    .. math:: \epsilon_i = \epsilon_{\min}\,(\epsilon_{\max}/\epsilon_{\min})^{i/(n-1)},
              \qquad i = 0, \dots, n-1 ,

    recording the minibatch loss J_i of each step and its bias-corrected moving average
    :math:`\bar J_i = a_i / (1 - \rho^{i+1})`, :math:`a_i = \rho a_{i-1} + (1-\rho) J_i`.
    The loss first barely moves (ε too small), then falls, then turns up and explodes (ε too
    large).  The test stops as soon as :math:`\bar J_i > ` ``stop_factor`` × min :math:`\bar J`
    or J_i is nan/inf (that step is not taken and not recorded).

    Arguments:
        model_factory: ``() -> model``, a fresh model (the test trains it: use a copy).
        loss_fn: ``loss_fn(model(X), y)``, averaged over the minibatch.
        optimizer_factory: ``(params, lr) -> optimizer``; its ε is overwritten at every step.
        data: ``(X, y)``; minibatches of ``batch_size`` are drawn without replacement, epoch
            after epoch, in an order fixed by ``seed``.
        lr_min, lr_max, steps: the range of ε and the number of steps n.
        smoothing: the decay rate ρ of the moving average (0 = no smoothing).
        stop_factor: how far above its minimum the smoothed loss may rise before we stop.

    Returns a :class:`RangeTest`; its ``suggested_lr`` is a tenth of ``min_lr``.
    """
    _check("lr_min", lr_min, _is_positive(lr_min), "a finite number > 0")
    _check("lr_max", lr_max, _is_positive(lr_max) and lr_max > lr_min,
           f"a finite number > lr_min = {lr_min}")
    _check("steps", steps, _is_int(steps) and steps >= 2, "an int >= 2")
    _check("batch_size", batch_size, _is_int(batch_size) and batch_size >= 1, "an int >= 1")
    _check("smoothing", smoothing, isinstance(smoothing, (int, float)) and 0 <= smoothing < 1,
           "a number in [0, 1)")
    _check("stop_factor", stop_factor, _is_positive(stop_factor) and stop_factor > 1,
           "a number > 1")
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    _check("data", type(data).__name__, isinstance(data, (tuple, list)) and len(data) == 2
           and all(torch.is_tensor(t) for t in data) and len(data[0]) == len(data[1]) > 0,
           "a tuple (X, y) of tensors with as many rows in X as in y")
    X, y = data
    model = model_factory()
    optimizer = optimizer_factory(model.parameters(), lr_min)
    gen = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    growth = (lr_max / lr_min) ** (1 / (steps - 1))  # ε_{i+1} / ε_i
    lrs, losses, smoothed = [], [], []
    avg, best, diverged = 0.0, math.inf, False
    model.train()
    for i in range(steps):
        lr = lr_min * growth ** i
        for group in optimizer.param_groups:
            group["lr"] = lr
        if not batches:  # a new pass over the data, in a fresh random order
            batches = list(torch.randperm(len(X), generator=gen).split(batch_size))[::-1]
        idx = batches.pop()
        loss = loss_fn(model(X[idx]), y[idx])
        J = float(loss.detach())
        if not math.isfinite(J):
            diverged = True
            break
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        avg = smoothing * avg + (1 - smoothing) * J
        J_bar = avg / (1 - smoothing ** (i + 1))  # bias correction, as in Adam
        lrs.append(lr)
        losses.append(J)
        smoothed.append(J_bar)
        best = min(best, J_bar)
        if J_bar > stop_factor * best:
            diverged = True
            break
    lrs, losses, smoothed = np.array(lrs), np.array(losses), np.array(smoothed)
    if len(lrs) == 0:
        raise ValueError(f"Invalid lr_min: {lr_min} (the loss was not finite at the first step)")
    i_min = int(np.argmin(smoothed))
    # fastest fall per unit of log ε, among the steps up to the minimum
    if i_min >= 2:
        slope = np.gradient(smoothed[: i_min + 1], np.log(lrs[: i_min + 1]))
        i_steep = int(np.argmin(slope))
    else:
        i_steep = i_min
    return RangeTest(lrs, losses, smoothed, diverged, float(lrs[i_min]), float(lrs[i_steep]),
                     float(lrs[i_min]) / 10)


# --- diagnosis -----------------------------------------------------------------------------------
LABELS = ("diverging", "stalling", "overfitting", "healthy")


@dataclass
class Diagnosis:
    """``label`` (one of :data:`LABELS`) and ``reason``, a sentence with the numbers behind it."""
    label: str
    reason: str

    def __str__(self) -> str:
        return f"{self.label}: {self.reason}"


def _finite(values) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def diagnose(history: History, *, window: int = 10, min_progress: float = 0.1,
             blowup: float = 2.0, overfit_tolerance: float = 0.1, patience: int = 2) -> Diagnosis:
    r"""Classify a training run from its History, by these rules, checked in this order.

    Let :math:`J_0` be the loss of the first minibatch (at θ₀, before any update),
    :math:`J_{\text{end}}` the mean minibatch loss of the last ``window`` steps and
    :math:`J_{\text{low}}` the least mean over ``window`` consecutive steps.

    1. **diverging** if the loss or the gradient norm became nan/inf (``stop_reason``
       starting with "diverged", as :func:`train_run` sets it, or a non-finite record), or if
       some minibatch loss exceeded ``blowup`` :math:`\times J_0` (the loss jumped far above
       where it started, even if it came back), or if
       :math:`J_{\text{end}} >` ``blowup`` :math:`\times J_{\text{low}}` (it fell, then rose);
    2. **stalling** if the loss fell by less than a fraction ``min_progress`` of where it
       started: :math:`J_0 - J_{\text{end}} <` ``min_progress`` :math:`\times J_0`;
    3. **overfitting** (needs a validation loss per epoch) if the least validation loss came
       at least ``patience`` epochs before the last, the last one exceeds it by more than a
       fraction ``overfit_tolerance``, and the training loss kept falling meanwhile (lower in
       the last epoch than in the best-validation one);
    4. **healthy** otherwise.

    These are rules of thumb for runs like the chapter's (a fixed budget, a loss that starts
    well above its floor): a fine-tuning run that starts near its optimum would be called
    stalling, and a single freak minibatch can trigger rule 1.
    """
    _check("history", type(history).__name__, isinstance(history, History), "a course_lib History")
    _check("window", window, _is_int(window) and window >= 1, "an int >= 1")
    _check("patience", patience, _is_int(patience) and patience >= 1, "an int >= 1")
    for name, v in (("min_progress", min_progress), ("overfit_tolerance", overfit_tolerance)):
        _check(name, v, isinstance(v, (int, float)) and v >= 0, "a number >= 0")
    _check("blowup", blowup, isinstance(blowup, (int, float)) and blowup > 1, "a number > 1")
    loss = _finite(history.steps["loss"])
    gnorm = _finite(history.steps["grad_norm"])
    if history.stop_reason.startswith("diverged") or not np.all(np.isfinite(loss)) \
            or not np.all(np.isfinite(gnorm)):
        return Diagnosis("diverging", "the loss or the gradient became nan/inf"
                         + (f" after {len(loss)} steps" if len(loss) else " at the first step"))
    _check("history", f"{len(loss)} steps", len(loss) >= window,
           f"at least window = {window} recorded steps")
    J_0, J_end = loss[0], loss[-window:].mean()
    J_low = np.convolve(loss, np.ones(window) / window, mode="valid").min()
    peak = int(np.argmax(loss))
    if loss[peak] > blowup * J_0:
        return Diagnosis("diverging", f"the loss jumped from {J_0:.3g} to {loss[peak]:.3g} "
                         f"at step {peak + 1}")
    if J_end > blowup * J_low:
        return Diagnosis("diverging", f"the loss fell to {J_low:.3g}, then rose to {J_end:.3g}")
    if J_0 - J_end < min_progress * J_0:
        return Diagnosis("stalling", f"the loss went only from {J_0:.3g} to {J_end:.3g}")
    val = _finite(history.epochs["val_loss"])
    train_loss = _finite(history.epochs["train_loss"])
    if len(val) > patience and np.all(np.isfinite(val)):
        best = int(np.argmin(val))
        if best <= len(val) - 1 - patience and val[-1] > (1 + overfit_tolerance) * val[best] \
                and train_loss[-1] < train_loss[best]:
            return Diagnosis("overfitting", f"the validation loss rose from {val[best]:.3g} "
                             f"(epoch {best + 1}) to {val[-1]:.3g} while the training loss fell "
                             f"from {train_loss[best]:.3g} to {train_loss[-1]:.3g}")
    return Diagnosis("healthy", f"the loss fell from {J_0:.3g} to {J_end:.3g}")


@torch.no_grad()
def dead_units(model: torch.nn.Module, X: torch.Tensor) -> list[float]:
    """For each ``nn.ReLU`` of a ``nn.Sequential`` model, the fraction of its units that output
    0 on every example of ``X``: "dead" units, which pass no gradient and so never recover."""
    _check("model", type(model).__name__, isinstance(model, torch.nn.Sequential),
           "an nn.Sequential")
    _check("X", tuple(getattr(X, "shape", ())), torch.is_tensor(X) and X.ndim == 2 and len(X) > 0,
           "a non-empty 2-D tensor")
    was_training = model.training
    model.eval()
    fractions, h = [], X
    for layer in model:
        h = layer(h)
        if isinstance(layer, torch.nn.ReLU):
            fractions.append(float((h > 0).sum(0).eq(0).float().mean()))
    model.train(was_training)
    return fractions


def dead_unit_table(sweep: "Sweep", X: torch.Tensor, lrs) -> dict[str, np.ndarray]:
    """Dead units per hidden layer (:func:`dead_units` on ``X``), the median over the sweep's
    seeds: at θ₀ (each seed's :func:`make_model`) and after training at each ε of ``lrs``
    (which must be on the sweep's grid).  Returns {"θ₀": fractions, "ε = <lr>": fractions}."""
    grid = [float(lr) for lr in sweep.lrs]
    _check("lrs", lrs, all(float(lr) in grid for lr in lrs), f"values on the sweep's grid {grid}")
    _check("sweep", "seeds", len(sweep.seeds) == len(sweep.seed_runs), "a Sweep from lr_sweep")
    table = {"θ₀": np.median([dead_units(make_model(seed=k), X) for k in sweep.seeds], axis=0)}
    for lr in lrs:
        i = grid.index(float(lr))
        table[f"ε = {lr:g}"] = np.median([dead_units(runs[i].model, X) for runs in sweep.seed_runs],
                                         axis=0)
    return table


def param_norm(model: torch.nn.Module) -> float:
    """‖θ‖₂ over all parameters of ``model``."""
    return math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))


def first_spike(history: History, factor: float = 2.0) -> dict | None:
    """The first step whose minibatch loss exceeds ``factor`` × the first one, J₀ (the rule
    1 of :func:`diagnose`), with how much the loss and the gradient norm had grown there:
    {"step": t (counted from 1), "loss_factor": J_t / J₀,
    "grad_norm_factor": ‖g_t‖ / ‖g₁‖}.
    None if the loss never got there."""
    _check("history", type(history).__name__, isinstance(history, History), "a course_lib History")
    _check("factor", factor, _is_positive(factor) and factor > 1, "a number > 1")
    loss = _finite(history.steps["loss"])
    g = _finite(history.steps["grad_norm"])
    above = np.flatnonzero(loss > factor * loss[0]) if len(loss) else []
    if len(above) == 0:
        return None
    t = int(above[0])
    return {"step": int(history.steps["step"][t]), "loss_factor": float(loss[t] / loss[0]),
            "grad_norm_factor": float(g[t] / g[0])}


def health_signals(run: Run) -> dict[str, float]:
    """The gradient norm ‖g‖ and the update ratio ‖Δθ‖/‖θ‖ of ``run``, summarised:
    {"grad_norm": median, "max_grad_norm": largest, "update_ratio": median,
    "max_update_ratio": largest}, over all its recorded steps (nan for a run of no step)."""
    _check("run", type(run).__name__, isinstance(run, Run), "a Run (from train_run)")
    g = _finite(run.history.steps["grad_norm"])
    r = np.asarray(run.update_ratios, dtype=float)

    def summary(x, f):
        return float(f(x)) if len(x) else math.nan
    return {"grad_norm": summary(g, np.median), "max_grad_norm": summary(g, np.max),
            "update_ratio": summary(r, np.median), "max_update_ratio": summary(r, np.max)}


# --- TensorBoard: the monitoring workflow of section 14.6 -----------------------------------------
def log_runs(logdir: str = TB_LOGDIR, optimizer: str = EXAMPLE_OPTIMIZER,
             lrs: dict[str, float] | None = None, **kwargs) -> dict[str, Run]:
    """Train one :func:`train_run` per entry of ``lrs`` (default :data:`EXAMPLE_LRS`: ε too
    small, good, too large) and log each to TensorBoard, in ``logdir/<run name>``
    (:func:`run_name`), as ``train(..., tensorboard=...)`` does: loss, ‖g‖, ε, validation,
    update ratio per parameter tensor, weight histograms.

    A run's directory is emptied first, so that running the cell again gives the same event
    files (TensorBoard would otherwise show both runs, one after the other).  Returns
    {kind: Run}; logging changes nothing in the runs (``tests/test_tensorboard.py``).
    """
    import shutil

    _check("logdir", logdir, isinstance(logdir, (str, os.PathLike)) and os.fspath(logdir) != "",
           "a directory path")
    lrs = dict(EXAMPLE_LRS if lrs is None else lrs)
    runs = {}
    for kind, lr in lrs.items():
        path = os.path.join(os.fspath(logdir), run_name(optimizer, lr))
        if os.path.isdir(path):
            shutil.rmtree(path)
        runs[kind] = train_run(optimizer, lr, tensorboard=path, **kwargs)
    return runs


def run_name(optimizer: str, lr: float) -> str:
    """The directory of a logged run: ``"Momentum_lr=0.1"`` (what TensorBoard lists as its name)."""
    return f"{optimizer}_lr={lr:g}"


def read_scalars(run_dir) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar of a run's event files, read back with TensorBoard's ``EventAccumulator``
    (all events, none sampled away): {tag: (steps, values)}; values are float32, as stored."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _check("run_dir", run_dir, os.path.isdir(os.fspath(run_dir)), "a directory of event files")
    events = EventAccumulator(os.fspath(run_dir), size_guidance={"scalars": 0})  # 0: keep all
    events.Reload()
    return {tag: (np.array([e.step for e in events.Scalars(tag)]),
                  np.array([e.value for e in events.Scalars(tag)], dtype=float))
            for tag in events.Tags()["scalars"]}


def layer_update_ratios(run_dir) -> dict[str, np.ndarray]:
    """The logged update ratio ‖Δθ‖/‖θ‖ of each layer's weight matrix, step by step:
    {"layer 1": ratios, ...} in the order of the network (biases left out), read from the
    ``update_ratio/<k>.weight`` tags of :func:`read_scalars`."""
    scalars = read_scalars(run_dir)
    tags = sorted((t for t in scalars if t.startswith("update_ratio/") and t.endswith(".weight")),
                  key=lambda t: int(t.split("/")[1].split(".")[0]))
    return {f"layer {i + 1}": scalars[t][1] for i, t in enumerate(tags)}


def layer_ratio_figure(ratios: dict[str, dict[str, np.ndarray]], focus: str = "good"):
    """Section 14.6's figure, from {run label: :func:`layer_update_ratios`}: left, each run's
    median update ratio per layer against the 10⁻³ rule of thumb; right, the ratio of every
    layer step by step in the run ``focus``.  Returns the figure."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.9))
    for i, (label, layers) in enumerate(ratios.items()):
        ax1.semilogy(range(1, len(layers) + 1), [np.median(r) for r in layers.values()], "o-",
                     color=f"C{i}", label=label)
    for ax in (ax1, ax2):
        ax.axhline(RULE_OF_THUMB, color="k", ls=":", lw=1, label="10⁻³ (rule of thumb)")
    layers = list(next(iter(ratios.values())))
    ax1.set_xticks(range(1, len(layers) + 1), [name.split()[-1] for name in layers])
    ax1.set_xlabel("layer (its weight matrix; the last is the output layer)")
    ax1.set_ylabel("median update ratio ‖Δθ‖/‖θ‖")
    ax1.set_title("Per layer: every layer too slow, or too fast")
    ax1.legend(fontsize="small")
    for k, (name, r) in enumerate(ratios[focus].items()):
        ax2.semilogy(np.arange(1, len(r) + 1), r, lw=0.8, color=plt.cm.viridis(k / len(ratios[focus])),
                     label=name)
    ax2.set_xlabel("step")
    ax2.set_ylabel("update ratio ‖Δθ‖/‖θ‖")
    ax2.set_title(f"The {focus} run: all layers move alike")
    ax2.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    return fig


# --- figures of sections 14.1–14.5 ---------------------------------------------------------------
def plot_lr_sweeps(sweeps: dict, median_ratio: dict, step_gain: float, axes=None):
    """Section 14.1's figure from {name: :class:`Sweep`}: left, each optimizer's median final
    validation loss against ε with its good band shaded (±¼ decade) and the chance level
    ln 10; right, the median update ratio of each run (``median_ratio``: name → array over
    ε), titled with ``step_gain``, Adam's ratio over momentum's at ε = 10⁻³.  Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    ax1, ax2 = axes
    for i, (name, s) in enumerate(sweeps.items()):
        losses = np.where(np.isfinite(s.final_val_losses), s.final_val_losses, np.nan)
        ax1.semilogx(s.lrs, losses, "o-", color=f"C{i}", label=name)
        band = s.band()
        ax1.axvspan(min(band) / 10 ** 0.25, max(band) * 10 ** 0.25, color=f"C{i}", alpha=0.12)
        ax2.loglog(s.lrs, median_ratio[name], "o-", color=f"C{i}", label=name)
    ax1.axhline(np.log(10), color="k", ls=":", lw=1, label="chance level, ln 10")
    ax1.set_xlabel(r"learning rate $\epsilon$")
    ax1.set_ylabel("final validation loss, median of 3 seeds (nats)")
    ax1.set_title(f"Good ε span {sweeps['Adam'].band_decades():.2g} decades for Adam, "
                  f"{sweeps['Momentum'].band_decades():.2g} for momentum\n"
                  "(shaded: within 20 % of the best;\ndiverged runs not shown)", fontsize=10)
    ax1.legend(loc="center", bbox_to_anchor=(0.3, 0.6))
    ax2.set_xlabel(r"learning rate $\epsilon$")
    ax2.set_ylabel(r"median update ratio $\|\Delta\theta\|\,/\,\|\theta\|$")
    ax2.set_title(f"At ε = 10⁻³ Adam's steps are {step_gain:.2g}x\nmomentum's (seed 0)", fontsize=10)
    ax2.legend()
    return axes


def plot_range_tests(range_tests: dict, sweeps: dict, smoothing: float, axes=None):
    """Section 14.2's figure: per optimizer ({name: :class:`RangeTest`}) the minibatch loss and
    its smoothed curve (decay rate ρ = ``smoothing``) against the growing ε, the good band of
    the sweep ({name: :class:`Sweep`}) shaded and the suggested ε dashed.  Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, (i, (name, r)) in zip(axes, enumerate(range_tests.items())):
        ax.semilogx(r.lrs, r.losses, color=f"C{i}", alpha=0.3, lw=0.8, label="minibatch loss")
        ax.semilogx(r.lrs, r.smoothed, color=f"C{i}", lw=2, label=rf"smoothed, $\rho$ = {smoothing}")
        band = sweeps[name].band()
        ax.axvspan(min(band), max(band), color="0.6", alpha=0.25, label="good ε of the sweep")
        ax.axvline(r.suggested_lr, color="k", ls="--", lw=1, label=f"suggested ε = {r.suggested_lr:.2g}")
        ax.set_ylim(1.5, 6)
        ax.set_xlabel(r"learning rate $\epsilon$ (growing at every step)")
        ax.set_title(f"{name}: the suggestion lands\nin the sweep's good band")
        ax.legend(fontsize="small", loc="upper left")
    axes[0].set_ylabel("training loss (nats)")
    return axes


def plot_example_runs(examples: dict, spike: dict, axes=None):
    """Section 14.3's figure from {kind: :class:`Run`}: minibatch loss, gradient norm and update
    ratio step by step, the first loss spike of the diverging run (``spike``, from
    :func:`first_spike`) dotted and the 10⁻³ rule of thumb.  Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(11, 3.9))
    for i, (kind, run) in enumerate(examples.items()):
        label = f"ε = {run.lr:.3g} ({kind})"
        h = run.history.steps
        axes[0].plot(h["step"], h["loss"], color=f"C{i}", lw=0.8, label=label)
        axes[1].semilogy(h["step"], h["grad_norm"], color=f"C{i}", lw=0.8, label=label)
        axes[2].semilogy(h["step"], run.update_ratios, color=f"C{i}", lw=0.8, label=label)
    axes[1].axvline(spike["step"], color="k", ls=":", lw=1)
    axes[0].set_ylim(0.8, 4)
    axes[0].set_ylabel("training loss, minibatch (nats)")
    axes[0].set_title("Loss: flat, falling, or exploding")
    axes[1].set_ylabel(r"gradient norm $\|g\|$")
    axes[1].set_title(f"At the first spike (dotted) ‖g‖ grew {spike['grad_norm_factor']:.2g}-fold,\n"
                      f"the loss {spike['loss_factor']:.2g}-fold")
    axes[2].axhline(1e-3, color="k", ls=":", lw=1)
    axes[2].set_ylabel(r"update ratio $\|\Delta\theta\|\,/\,\|\theta\|$")
    axes[2].set_title("Update ratios differ by orders of magnitude")
    for ax in axes:
        ax.set_xlabel("step")
        ax.legend(fontsize="small")
    return axes


def plot_overfitting(run: Run, ax=None):
    """Section 14.4's figure: training and validation loss per epoch (log scale) with the epoch
    of least validation loss dotted.  Returns the Axes."""
    import matplotlib.pyplot as plt

    from course_lib.plots import plot_history

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    best = run.history.best_epoch
    plot_history(run.history, keys=("train_loss", "val_loss"), per="epoch", ax=ax, log_y=True)
    ax.axvline(best, color="k", ls=":", lw=1, label=f"least validation loss (epoch {best})")
    ax.set_ylabel("loss (nats)")
    ax.set_title(f"Overfitting: after epoch {best} the validation loss rises\n"
                 "while the training loss keeps falling")
    ax.legend(fontsize="small")
    return ax


# --- the widget's figure -------------------------------------------------------------------------
def explorer_figure(lr: float = 0.1, optimizer: str = EXAMPLE_OPTIMIZER, epochs: int = EPOCHS):
    """Train at ε = ``lr`` and draw loss, gradient norm and update ratio, titled with the
    diagnosis.  Returns the :class:`Run`."""
    import matplotlib.pyplot as plt

    run = train_run(optimizer, lr, epochs=epochs)
    d = diagnose(run.history)
    steps = np.asarray(run.history.steps["step"])
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.6))
    ax = axes[0]
    ax.plot(steps, run.history.steps["loss"], lw=0.8, label="training loss (minibatch)")
    ep = run.history.epochs
    if ep["step"]:
        ax.plot(ep["step"], ep["val_loss"], "o-", ms=4, label="validation loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.legend(fontsize="small")
    axes[1].semilogy(steps, run.history.steps["grad_norm"], lw=0.8)
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("gradient norm ‖g‖")
    axes[2].semilogy(np.arange(1, len(run.update_ratios) + 1), run.update_ratios, lw=0.8)
    axes[2].axhline(1e-3, color="k", ls=":", lw=1, label="10⁻³ (rule of thumb)")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("update ratio ‖Δθ‖ / ‖θ‖")
    axes[2].legend(fontsize="small")
    fig.suptitle(f"{optimizer}, ε = {lr:.3g}: diagnosed {d.label}\n({d.reason})")
    fig.tight_layout()
    return run
