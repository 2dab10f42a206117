"""Chapter 20 — Mixed precision: the experiments, their settings and figures.

The methods (rounding, simulated low-precision layers, the loss scalers) live in the core,
:mod:`course_lib.precision`; this module measures with them:

* :func:`format_table`, :func:`stall_count`, :func:`sum_error`, :func:`accumulate_updates`:
  the three formats' ranges and rounding, from ``torch.finfo`` and by experiment;
* :func:`gradient_magnitudes`, :func:`lost_fractions`: how much of an MLP's gradient (on
  MNIST-1D) float16 loses to underflow, and how a loss scale S saves it;
* :func:`compare_scalers`: our scalers against ``torch.amp.GradScaler`` on one sequence of steps;
* :func:`precision_runs`: training in float32, simulated float16 (with and without loss
  scaling), simulated bfloat16, and ``course_lib.train(amp="bfloat16")`` (CPU autocast);
* :func:`memory_bytes`: what each precision stores.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..data import mnist1d
from ..models import mlp
from ..precision import DynamicLossScaler, StaticLossScaler, round_to, simulate_precision
from ..train import train
from ..utils import shared_result

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
SEEDS = (0, 1, 2)
DATA_SAMPLES = 4000  # MNIST-1D: 3200 training, 800 validation signals
HIDDEN = (100, 100)
BATCH_SIZE = 128
LR = 1e-3  # Adam's ε
EPOCHS = 6  # 150 updates
GRAD_EPOCHS = 12  # the "trained" network of section 20.2 (same budget)
SCALES = (1.0, 2.0 ** 8, 2.0 ** 16)
GAP_BOUND = 0.005  # |J − J(float32)| of every seed and precision is below this (measured: 0.0012)
N_SUM = 4096  # terms of the sum in sum_error
UPDATE = 1e-4  # the small update added to a weight of 1 (accumulate_updates)
N_UPDATES = 1000


# ---- 20.1 the formats ----------------------------------------------------------------------

def smallest_subnormal(dtype) -> float:
    """Measured: halve 1 in `dtype` until the next halving gives 0."""
    x = torch.tensor(1.0, dtype=dtype)
    while (x / 2) != 0:
        x = x / 2
    return float(x)


def measured_eps(dtype) -> float:
    """Measured: the smallest power of two u with 1 + u ≠ 1 in `dtype` (the machine epsilon)."""
    one, u = torch.tensor(1.0, dtype=dtype), torch.tensor(1.0, dtype=dtype)
    while one + u / 2 != one:
        u = u / 2
    return float(u)


def largest_power_of_two(dtype) -> float:
    """Measured: double 1 in `dtype` until the next doubling gives inf."""
    x = torch.tensor(1.0, dtype=dtype)
    while torch.isfinite(x * 2):
        x = x * 2
    return float(x)


def format_table() -> dict:
    """dtype name → torch.finfo's eps, smallest normal, smallest subnormal, largest, and the
    measured eps, smallest subnormal and largest power of two."""
    out = {}
    for name, dt in DTYPES.items():
        fi = torch.finfo(dt)
        out[name] = {"bits": fi.bits, "eps": fi.eps, "tiny": fi.tiny,
                     "subnormal": fi.smallest_normal * fi.eps, "max": fi.max,
                     "measured_eps": measured_eps(dt), "measured_subnormal": smallest_subnormal(dt),
                     "measured_max_pow2": largest_power_of_two(dt)}
    return out


def stall_count(dtype) -> int:
    """The smallest power of two n with n + 1 = n in `dtype`: counting by ones stops there."""
    n = torch.tensor(1.0, dtype=dtype)
    while n + 1 != n:
        n = n * 2
    return int(n)


def sum_error(dtype, n: int = N_SUM, seed: int = 0, accumulate="same") -> float:
    """|s − s*|/s* of the sequential sum of n numbers uniform in (0, 1), each term first rounded
    to `dtype`; the running sum is rounded to `dtype` (accumulate="same") or kept in float32
    (accumulate="float32", what tensor cores do). s* is the exact (float64) sum of the same terms."""
    x = round_to(torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64),
                 dtype).tolist()
    acc = DTYPES[dtype] if accumulate == "same" else torch.float32
    s = torch.zeros((), dtype=acc)
    for v in x:
        s = s + torch.tensor(v, dtype=acc)
    exact = math.fsum(x)
    return abs(float(s) - exact) / exact


def accumulate_updates(dtype, update: float = UPDATE, n: int = N_UPDATES, master: bool = False) -> float:
    """A weight w = 1 receives n updates w ← w + update.  Stored in `dtype`, or, master=True,
    in a float32 master copy with the update itself computed in `dtype`.  Returns the final w."""
    u = torch.tensor(update, dtype=DTYPES[dtype])
    w = torch.tensor(1.0, dtype=torch.float32 if master else DTYPES[dtype])
    for _ in range(n):
        w = w + u.to(w.dtype)
    return float(w)


# ---- 20.2 gradient magnitudes ---------------------------------------------------------------

def _batch_gradients(model, X, y) -> tuple:
    """|entries| of one minibatch's weight gradients, and of the back-propagated activation
    gradients ∂J/∂a of every layer's output (float32, as two float64 arrays)."""
    model.zero_grad()
    a, acts = X, []
    for layer in model:
        a = layer(a)
        a.retain_grad()
        acts.append(a)
    F.cross_entropy(a, y).backward()
    weights = torch.cat([p.grad.flatten() for p in model.parameters()]).abs().double().numpy()
    return weights, torch.cat([t.grad.flatten() for t in acts]).abs().double().numpy()


@shared_result
def gradient_magnitudes(seed: int = 0, epochs: int = GRAD_EPOCHS) -> dict:
    """|g| of an MLP on MNIST-1D (weights and activations, one minibatch of B examples), at
    initialization and after `epochs` epochs of Adam in float32.  Exact zeros are dropped (they
    are zero in any precision: dead ReLUs).  Keys "init" and "trained": all entries;
    "init weights" and "trained weights": the weights' gradient entries only."""
    data = mnist1d(DATA_SAMPLES)
    X, y = data.X_train, data.y_train
    model = mlp(40, HIDDEN, 10, generator=torch.Generator().manual_seed(seed))
    batch = X[:BATCH_SIZE], y[:BATCH_SIZE]
    out = {}
    out["init weights"], acts = _batch_gradients(model, *batch)
    out["init"] = np.concatenate([out["init weights"], acts])
    # (torch.nn.functional spelled out: shared_result keys on the UPPERCASE names a function reads)
    train(model, torch.nn.functional.cross_entropy, torch.optim.Adam(model.parameters(), lr=LR), (X, y),
          epochs=epochs, batch_size=BATCH_SIZE, seed=seed)
    out["trained weights"], acts = _batch_gradients(model, *batch)
    out["trained"] = np.concatenate([out["trained weights"], acts])
    return {k: v[v > 0] for k, v in out.items()}


def lost_fractions(mags: np.ndarray, dtype="float16", scale: float = 1.0) -> dict:
    """Of the nonzero float32 magnitudes `mags`, scaled by S: the fraction that rounds to 0
    in `dtype` (underflow), that lands among the subnormals (fewer significant bits), and that
    overflows to inf."""
    fi = torch.finfo(DTYPES[dtype])
    g = torch.from_numpy(mags).float() * scale
    r = round_to(g, dtype)
    n = g.numel()
    return {"zero": float((r == 0).sum()) / n,
            "subnormal": float(((r != 0) & (r < fi.tiny)).sum()) / n,
            "overflow": float(torch.isinf(r).sum()) / n}


def underflow_table(seeds=SEEDS, scales=SCALES) -> dict:
    """(stage, dtype, S) → the median over seeds of lost_fractions()['zero'] and ['overflow']."""
    mags = [gradient_magnitudes(s) for s in seeds]
    table = {}
    for stage in ("init", "trained", "init weights", "trained weights"):
        for dt in ("float16", "bfloat16"):
            for S in scales:
                fr = [lost_fractions(m[stage], dt, S) for m in mags]
                table[stage, dt, S] = {k: float(np.median([f[k] for f in fr]))
                                       for k in ("zero", "subnormal", "overflow")}
    return table


def plot_underflow(mags: np.ndarray, log2_scale: float = 0.0, precision: str = "float16", ax=None):
    """Histogram of log₂(S·|g|) against `precision`'s limits: the part left of the smallest
    subnormal rounds to 0, the part right of the largest becomes inf."""
    import matplotlib.pyplot as plt

    S = 2.0 ** log2_scale
    fi = torch.finfo(DTYPES[precision])
    fr = lost_fractions(mags, precision, S)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.2))
    lg = np.log2(mags) + log2_scale
    ax.hist(lg, bins=np.arange(-60, 41, 1.0), color="C0", alpha=0.8)
    sub, tiny, big = math.log2(fi.tiny * fi.eps), math.log2(fi.tiny), math.log2(fi.max)
    lo = max(sub, -60)
    ax.axvspan(-60, lo, color="C3", alpha=0.15, label="rounds to 0")
    if sub > -60:
        ax.axvline(sub, color="C3", lw=1)
    ax.axvspan(max(sub, -60), max(tiny, -60), color="C1", alpha=0.15, label="subnormal")
    ax.axvspan(min(big, 40), 40, color="C4", alpha=0.15, label="overflows to inf")
    ax.set_xlim(-60, 40)
    ax.set_xlabel("log₂(S·|g|)")
    ax.set_ylabel("gradient entries")
    ax.set_title(f"{precision}, S = 2^{log2_scale:g}: {100 * fr['zero']:.2g} % lost to 0, "
                 f"{100 * fr['overflow']:.2g} % to inf")
    ax.legend(loc="upper left", fontsize=8)
    return ax


# ---- 20.3 loss scaling ---------------------------------------------------------------------

def scaler_sequence(scaler_factory, steps: int = 12, bad=(3, 4, 9), seed: int = 0) -> dict:
    """Run `steps` SGD steps of a small linear model through a loss scaler; at the steps in
    `bad` (counted from 1) the loss is multiplied by 1e37, so that S·J, and the gradient, overflow to inf.
    Returns the scale used at each step, which steps were taken, and the final parameters."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # Linear's own initialization draws from the global RNG
        model = torch.nn.Linear(4, 1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    X, y = torch.randn(steps, 8, 4, generator=gen), torch.randn(steps, 8, 1, generator=gen)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = scaler_factory()
    scales, taken = [], []
    for t in range(steps):
        loss = F.mse_loss(model(X[t]), y[t]) * (1e37 if t + 1 in bad else 1.0)
        opt.zero_grad()
        scales.append(float(scaler.get_scale()))
        scaler.scale(loss).backward()
        before = [p.detach().clone() for p in model.parameters()]
        scaler.step(opt)
        scaler.update()
        taken.append(any(not torch.equal(b, p) for b, p in zip(before, model.parameters())))
    return {"scales": scales, "taken": taken,
            "params": torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()}


@shared_result
def compare_scalers(growth_interval: int = 3) -> dict:
    """Ours vs torch.amp.GradScaler("cpu"), dynamic and static, on one scaler_sequence()."""
    big = 2.0 ** 16
    return {
        "dynamic": (scaler_sequence(lambda: DynamicLossScaler(big, growth_interval=growth_interval)),
                    scaler_sequence(lambda: torch.amp.GradScaler("cpu", init_scale=big,
                                                                 growth_interval=growth_interval))),
        "static": (scaler_sequence(lambda: StaticLossScaler(1024.0)),
                   scaler_sequence(lambda: _FixedGradScaler(1024.0))),
    }


class _FixedGradScaler(torch.amp.GradScaler):
    """GradScaler held at one scale: update() sets it back (torch's documented new_scale)."""

    def __init__(self, scale: float):
        super().__init__("cpu", init_scale=scale)
        self._fixed = scale

    def update(self, new_scale=None):
        super().update(new_scale=self._fixed)


# ---- 20.4 training in low precision ----------------------------------------------------------

CONFIGS = ("float32", "float16", "float16 + dynamic S", "bfloat16", "bfloat16 autocast (train)")


def _simulated_run(config: str, seed: int, epochs: int = EPOCHS, loss_factor: float = 1.0) -> dict:
    data = mnist1d(DATA_SAMPLES)
    X, y = data.X_train, data.y_train
    model = mlp(40, HIDDEN, 10, generator=torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    if config == "bfloat16 autocast (train)":
        hist = train(model, F.cross_entropy, opt, (X, y), epochs=epochs, batch_size=BATCH_SIZE,
                     seed=seed, amp="bfloat16", metrics=())
        losses = hist.steps["loss"]
        scaler = None
    else:
        dtype = config.split()[0]
        net = model if dtype == "float32" else simulate_precision(model, dtype)
        scaler = DynamicLossScaler() if "dynamic" in config else None
        gen = torch.Generator().manual_seed(seed)
        losses = []
        for _ in range(epochs):
            for idx in torch.randperm(len(X), generator=gen).split(BATCH_SIZE):
                loss = F.cross_entropy(net(X[idx]), y[idx]) * loss_factor
                opt.zero_grad()
                if scaler is None:
                    loss.backward()
                    opt.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(opt)
                    scaler.update()
                losses.append(loss.item() / loss_factor)
    with torch.no_grad():  # evaluated in float32 on the float32 master weights
        train_loss = F.cross_entropy(model(X), y).item()
        val_acc = (model(data.X_test).argmax(1) == data.y_test).float().mean().item()
    return {"losses": np.array(losses), "train_loss": train_loss, "val_accuracy": val_acc,
            "skipped": scaler.skipped if scaler is not None else 0,
            "final_scale": scaler.get_scale() if scaler is not None else 1.0}


@shared_result
def precision_runs(configs=CONFIGS, seeds=SEEDS, epochs: int = EPOCHS) -> dict:
    """config → list (one per seed) of {losses per step, final train_loss (float32, full
    training set), val_accuracy, skipped steps, final loss scale}.

    Run longer (reviewer's check, not run by the chapter: ~5 CPU minutes), epochs=60, 1500
    updates, seeds 0, 1, 2, float32 J = 0.4415 0.4213 0.4263: the runs leave float32's
    trajectory by about as much as the seeds differ (float16 0.4450 0.4052 0.4341, float16 +
    dynamic S 0.4421 0.4122 0.4386, bfloat16 0.4371 0.4133 0.4400; largest |ΔJ| 0.016 against
    a seed spread of 0.020), with no sign either way and no skipped step.  epochs=24 (600
    updates): largest |ΔJ| 0.005, seed spread 0.050.  At ε = 3e-3 and 1e-4, and seeds 3-7 at
    the chapter's setting, |ΔJ| ≤ 0.0074 and no step skipped."""
    return {c: [_simulated_run(c, s, epochs) for s in seeds] for c in configs}


def plot_precision_runs(runs: dict, ax=None, window: int = 25):
    """Median over seeds of the minibatch loss (moving average over `window` steps) per config."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.2))
    styles = ["-", "--", ":", "-.", (0, (1, 3))]
    for (name, rs), ls in zip(runs.items(), styles):
        med = np.median(np.stack([r["losses"] for r in rs]), axis=0)
        smooth = np.convolve(med, np.ones(window) / window, mode="valid")
        ax.plot(np.arange(window, len(med) + 1), smooth, ls=ls, lw=1.6, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("step t")
    ax.set_ylabel(f"minibatch loss J (median of {len(next(iter(runs.values())))} seeds, "
                  f"mean of {window} steps)")
    ax.set_title("MNIST-1D MLP, Adam: every precision follows float32's curve")
    ax.legend(fontsize=8)
    return ax


# ---- 20.5 memory -----------------------------------------------------------------------------

def memory_bytes(hidden=HIDDEN, batch_size: int = BATCH_SIZE, in_features: int = 40,
                 out_features: int = 10, recipe: str = "float32") -> dict:
    """Bytes an Adam-trained MLP stores: weights, gradients, optimizer state (Adam's s and r),
    and the activations kept for the backward pass (each layer's input and every layer's output,
    B × width each).  recipe "float32"; "mixed" (Micikevicius et al., 2018): float32 master
    weights + a 16-bit copy, 16-bit gradients and activations, float32 Adam state."""
    widths = [in_features, *hidden, out_features]
    P = sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))
    # Linear inputs (widths[:-1]), ReLU outputs (hidden), logits
    A = batch_size * (sum(widths[:-1]) + sum(hidden) + out_features)
    if recipe == "float32":
        return {"parameters": P, "weights": 4 * P, "gradients": 4 * P, "optimizer": 8 * P,
                "activations": 4 * A}
    if recipe == "mixed":
        return {"parameters": P, "weights": 4 * P + 2 * P, "gradients": 2 * P, "optimizer": 8 * P,
                "activations": 2 * A}
    raise ValueError(f"Invalid recipe: {recipe!r} (expected 'float32' or 'mixed')")


TINY_FACTOR = 2.0 ** -16  # the loss multiplied by this in tiny_loss_runs
TINY_EPOCHS = 2


@shared_result
def tiny_loss_runs(factor: float = TINY_FACTOR, seeds=SEEDS, epochs: int = TINY_EPOCHS) -> dict:
    """The runs of precision_runs with the loss J multiplied by `factor` (as a loss averaged over
    many more terms would be): Adam's update is the same for J and factor·J up to its δ = 1e-8
    (no longer negligible: float32 learns somewhat more slowly than on J), so any difference
    between the precisions is rounding.  config → final training losses."""
    configs = ("float32", "float16", "float16 + dynamic S")
    return {c: np.array([_simulated_run(c, s, epochs, factor)["train_loss"] for s in seeds])
            for c in configs}
