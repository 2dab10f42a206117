r"""Data-parallel and large-batch training: chapter 21.

N workers hold copies of θ; each computes the gradient on its shard of the global batch of B
examples, an all-reduce averages the N gradients, and every copy takes the same step.  The
chapter measures what that buys and what it costs:

=================================  ===============================================================
``DDPConfig``, ``DDP``             the two-process experiment: MNIST-1D MLP, global batch, steps
``global_batches``                 the shards each rank trains on (torch's DistributedSampler)
``ddp_worker``                     what each spawned process runs (DDP, manual all-reduce, a
                                   byte-counting communication hook, timings)
``single_process_run``             the same steps in one process on the whole global batch
``ddp_experiment``                 launch the workers (:func:`course_lib.distributed.launch`)
                                   and compare → :class:`DDPResult`
``ring_allreduce_bytes``           bytes each worker sends in a ring all-reduce: 2(N−1)/N · M
``allreduce_time``                 the cost model 2(N−1)·a + 2(N−1)/N · M / bandwidth
``plot_sync_cost``                 measured all-reduce times against the model; compute vs
                                   communication per step
``scaling_rule_check``             the linear scaling rule's ε against the tuned ε of chapter 2
``LARGE``, ``large_batch_grid``    SGD, Adam, LARS and LAMB at B = 512, each tuned on a grid
``plot_time_to_target``            the chapter's widget: steps S(B) = S_min(1 + B_crit/B) and the
                                   time to a target with N workers under the cost model
=================================  ===============================================================

References: Goyal et al. (2017), *Accurate, large minibatch SGD: training ImageNet in 1 hour*;
McCandlish, Kaplan, Amodei et al. (2018), *An empirical model of large-batch training*;
You, Gitman & Ginsburg (2017), *Large batch training of convolutional networks*; You et al.
(2020), *Large batch optimization for deep learning: training BERT in 76 minutes*, ICLR;
Li et al. (2020), *PyTorch Distributed: experiences on accelerating data parallel training*,
VLDB; Shallue et al. (2019), *Measuring the effects of data parallelism on neural network
training*, JMLR; Patarasuk & Yuan (2009), *Bandwidth optimal all-reduce algorithms for
clusters of workstations*, JPDC.
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from course_lib.distributed import launch
from course_lib.experiments import minibatch as mb
from course_lib.experiments.schedules import linear_scaling_rule
from course_lib.models import mlp
from course_lib.optim import SGD, Adam
from course_lib.optim.lamb import LAMB
from course_lib.optim.lars import LARS
from course_lib.train import TrainingDiverged, train
from course_lib.utils import shared_result

__all__ = [
    "DDPConfig", "DDP", "global_batches", "ddp_worker", "single_process_run", "DDPResult",
    "ddp_experiment", "ring_allreduce_bytes", "allreduce_time", "plot_sync_cost",
    "scaling_rule_check", "ScalingRuleRow", "RULE_WARMUP", "LargeBatchConfig", "LARGE", "LARGE_GRIDS",
    "LargeBatchGrid", "large_batch_grid", "plot_large_batch", "plot_time_to_target",
    "ALLREDUCE_SIZES", "seeds_overlap", "critical_batch_study", "fit_allreduce",
]

_CE = nn.CrossEntropyLoss()


class DDPConfig(NamedTuple):
    """The two-process experiment: the MLP of chapter 2 (40 → 64 → 10, P = 3274) on MNIST-1D,
    ``steps`` SGD steps (ε, momentum α) on global batches of B examples split over the ranks."""
    world_size: int = 2
    global_batch: int = 128   # B; each of the N ranks gets B / N examples per step
    steps: int = 5
    lr: float = 0.1           # ε
    momentum: float = 0.9     # α
    seed: int = 0
    timing_steps: int = 15    # steps timed (float32) for the compute / communication split
    timing_hidden: tuple = (64, 2048)  # hidden widths timed: the chapter's MLP and a wider one


#: the chapter's data-parallel experiment
DDP = DDPConfig()
#: message sizes (float32 numbers) whose all-reduce the workers time
ALLREDUCE_SIZES = (2 ** 8, 2 ** 11, 2 ** 14, 2 ** 17, 2 ** 20)


def _data(dtype=torch.float64):
    data = mb.mnist1d(5000, seed=0)
    X, y = data.train
    return X.to(dtype), y


def _model(config: DDPConfig, hidden=(64,), dtype=torch.float64) -> nn.Module:
    """θ₀ of :func:`~course_lib.experiments.minibatch.mnist1d_mlp` (the same draw), without
    generating its data set again in each worker (a second of CPU per process)."""
    return mlp(40, tuple(hidden), 10, generator=torch.Generator().manual_seed(config.seed)).to(dtype)


def global_batches(config: DDPConfig = DDP, n: int = 4000) -> list[list[list[int]]]:
    """``batches[t][r]``: the example indices rank r trains on at step t.

    Each rank draws its shard of the shuffled training set with torch's
    ``DistributedSampler`` (the same permutation on every rank, seeded by ``config.seed``;
    rank r takes every N-th index from r), then cuts it into per-step batches of B / N.  The
    global batch of step t is the union of the ranks' batches.
    """
    N, B = config.world_size, config.global_batch
    if B % N:
        raise ValueError(f"Invalid global_batch: {B} (expected a multiple of world_size {N})")
    b = B // N
    shards = [list(DistributedSampler(range(n), num_replicas=N, rank=r, shuffle=True,
                                      seed=config.seed)) for r in range(N)]
    return [[shard[t * b:(t + 1) * b] for shard in shards] for t in range(config.steps)]


def _flat(model: nn.Module) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy().copy()


def single_process_run(config: DDPConfig = DDP, data=None) -> np.ndarray:
    """θ (flattened, float64) after ``config.steps`` SGD steps in one process, each on the whole
    global batch (the union of the ranks' batches of :func:`global_batches`).  ``data``: the
    training (X float64, y) of MNIST-1D, made here if None."""
    X, y = _data() if data is None else data
    model = _model(config)
    opt = SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    for shards in global_batches(config):
        idx = [i for shard in shards for i in shard]
        opt.zero_grad()
        _CE(model(X[idx]), y[idx]).backward()
        opt.step()
    return _flat(model)


def _counting_hook(state: dict, bucket):
    """A DDP communication hook doing what DDP's default does (average the bucket over the
    ranks with one all-reduce), and counting the bytes and buckets it all-reduces."""
    buf = bucket.buffer()
    state["bytes"] += buf.numel() * buf.element_size()
    state["buckets"] += 1
    buf.div_(dist.get_world_size())
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])


def _train_shards(config, rank, X, y, mode: str, dtype=torch.float64):
    """``config.steps`` steps on this rank's shards: ``mode`` "ddp" (DDP's built-in reducer),
    "hook" (DDP with :func:`_counting_hook`) or "manual" (no DDP; all_reduce each gradient and
    divide by N).  Returns (θ flattened, hook state)."""
    model = _model(config, dtype=dtype)
    state = {"bytes": 0, "buckets": 0}
    net = model
    if mode in ("ddp", "hook"):
        net = DistributedDataParallel(model)
        if mode == "hook":
            net.register_comm_hook(state, _counting_hook)
    opt = SGD(model.parameters(), lr=config.lr, momentum=config.momentum)
    N = dist.get_world_size()
    for shards in global_batches(config):
        idx = shards[rank]
        opt.zero_grad()
        _CE(net(X[idx]), y[idx]).backward()
        if mode == "manual":
            for p in model.parameters():
                dist.all_reduce(p.grad)  # sum over ranks ...
                p.grad /= N              # ... then the mean
        opt.step()
    return _flat(model), state


def _timings(config: DDPConfig, rank: int, X: torch.Tensor, y: torch.Tensor) -> dict:
    """Wall-clock seconds (medians over steps, float32): per hidden width, the forward and
    backward pass without synchronization (``no_sync``) and the whole DDP step with it; and
    the all-reduce of each message size of ALLREDUCE_SIZES."""
    X = X.float()
    b = config.global_batch // config.world_size
    out = {"hidden": {}, "allreduce": {}}
    for hidden in config.timing_hidden:
        model = _model(config, (hidden,), torch.float32)
        net = DistributedDataParallel(model)
        params = sum(p.numel() for p in model.parameters())
        times = {"compute": [], "step": []}
        for t in range(config.timing_steps + 2):
            idx = slice((t * b) % 3000, (t * b) % 3000 + b)
            for kind in ("compute", "step"):
                dist.barrier()
                start = time.perf_counter()
                if kind == "compute":
                    with net.no_sync():
                        _CE(net(X[idx]), y[idx]).backward()
                else:
                    _CE(net(X[idx]), y[idx]).backward()
                if t >= 2:  # the first steps build DDP's buckets
                    times[kind].append(time.perf_counter() - start)
                model.zero_grad()
        out["hidden"][hidden] = {"params": params, **{k: float(np.median(v)) for k, v in times.items()}}
    for size in ALLREDUCE_SIZES:
        x = torch.ones(size)
        times = []
        for _ in range(7):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(x)
            times.append(time.perf_counter() - start)
        out["allreduce"][size] = float(np.median(times[2:]))
    return out


def ddp_worker(rank: int, world_size: int, config: DDPConfig, X: torch.Tensor, y: torch.Tensor) -> dict:
    """What each process of :func:`ddp_experiment` runs (in a process group of ``world_size``),
    on the MNIST-1D training set (X float64, y): the three kinds of training of
    :func:`_train_shards` in float64, the counting hook once in float32 (4-byte gradients), and
    the timings."""
    out = {}
    for mode in ("ddp", "manual", "hook"):
        out[mode], state = _train_shards(config, rank, X, y, mode)  # state: the hook's
    out["bytes_float64"], out["buckets"] = state["bytes"], state["buckets"]
    _, state32 = _train_shards(config, rank, X.float(), y, "hook", torch.float32)
    out["bytes_float32"] = state32["bytes"]
    out["timings"] = _timings(config, rank, X, y)
    return out


class DDPResult(NamedTuple):
    """``single``: θ after the steps in one process; ``ddp``, ``manual``: rank 0's θ under DDP
    and under the manual all-reduce; ``ranks_agree``: every rank ended with bitwise the same θ
    (all three ways); ``hook``: rank 0's θ under DDP with the counting hook; ``n_params`` P; ``bytes_float64``, ``bytes_float32``: bytes the counting hook
    all-reduced over all steps, per rank; ``buckets``: all-reduce calls it made; ``timings``:
    rank 0's (machine-dependent: only for figures)."""
    config: DDPConfig
    single: np.ndarray
    ddp: np.ndarray
    manual: np.ndarray
    ranks_agree: bool
    hook: np.ndarray
    n_params: int
    bytes_float64: int
    bytes_float32: int
    buckets: int
    timings: dict

    @property
    def ddp_vs_single(self) -> float:
        """max |θ_DDP − θ_single|."""
        return float(np.max(np.abs(self.ddp - self.single)))

    @property
    def manual_vs_ddp(self) -> float:
        """max |θ_manual − θ_DDP|."""
        return float(np.max(np.abs(self.manual - self.ddp)))

    @property
    def hook_vs_ddp(self) -> float:
        """max |θ_hook − θ_DDP|: the counting hook must average as DDP does (0: bitwise)."""
        return float(np.max(np.abs(self.hook - self.ddp)))


@shared_result
def ddp_experiment(config: DDPConfig = DDP, timeout: float = 300.0) -> DDPResult:
    """Launch ``config.world_size`` gloo processes running :func:`ddp_worker`, and compare their
    θ with :func:`single_process_run`.  Costs the start of the processes (seconds)."""
    data = _data()
    results = launch(ddp_worker, config.world_size, (config, *data), device="cpu", timeout=timeout)
    r0 = results[0]
    agree = all(np.array_equal(r[k], r0[k]) for r in results for k in ("ddp", "manual", "hook"))
    return DDPResult(config, single_process_run(config, data), r0["ddp"], r0["manual"], bool(agree),
                     r0["hook"],
                     int(r0["ddp"].size), int(r0["bytes_float64"]), int(r0["bytes_float32"]),
                     int(r0["buckets"]), r0["timings"])


# ---------------------------------------------------------------------------------------------
# What synchronization costs

def ring_allreduce_bytes(message_bytes: float, workers: int) -> float:
    """Bytes each of N workers sends (and receives) in a ring all-reduce of M bytes:
    a reduce-scatter and an all-gather, each N − 1 steps of M / N bytes: 2(N − 1)/N · M."""
    if workers < 1:
        raise ValueError(f"Invalid workers: {workers!r} (expected >= 1)")
    return 2 * (workers - 1) / workers * message_bytes


def allreduce_time(message_bytes: float, workers: int, bandwidth: float, latency: float) -> float:
    """Seconds for a ring all-reduce under the cost model 2(N − 1)·a + 2(N − 1)/N · M / bw:
    2(N − 1) messages of latency a each, and :func:`ring_allreduce_bytes` at ``bandwidth``
    bytes per second.  0 for one worker."""
    return 2 * (workers - 1) * latency + ring_allreduce_bytes(message_bytes, workers) / bandwidth


def fit_allreduce(timings: dict, workers: int) -> tuple[float, float]:
    """(latency a, bandwidth) of :func:`allreduce_time` fitted (least squares) to measured
    all-reduce times {float32 count: seconds}."""
    sizes = np.array(sorted(timings), dtype=float)
    t = np.array([timings[s] for s in sorted(timings)])
    A = np.stack([np.full_like(sizes, 2 * (workers - 1)), ring_allreduce_bytes(4 * sizes, workers)], 1)
    (a, inv_bw), *_ = np.linalg.lstsq(A, t, rcond=None)
    return float(max(a, 0.0)), float(1 / max(inv_bw, 1e-30))


def plot_sync_cost(result: DDPResult, axes=None):
    """Left: the measured all-reduce time against message size, with the fitted cost model.
    Right: per hidden width, one step's compute (forward + backward, no synchronization) and the
    rest of the DDP step (the communication DDP could not hide behind backward).  Timings are
    rank 0's on this machine."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    N = result.config.world_size
    ar = result.timings["allreduce"]
    sizes = np.array(sorted(ar), dtype=float)
    a, bw = fit_allreduce(ar, N)
    axes[0].loglog(4 * sizes, [ar[s] * 1e3 for s in sorted(ar)], "o", label="measured (median)")
    grid = np.geomspace(4 * sizes[0], 4 * sizes[-1], 50)
    axes[0].loglog(grid, [allreduce_time(m, N, bw, a) * 1e3 for m in grid], "-",
                   label=f"2(N−1)a + 2(N−1)/N·M/bw\na = {a * 1e6:.0f} µs, bw = {bw / 1e9:.2g} GB/s")
    axes[0].set(xlabel="message size M (bytes)", ylabel="all-reduce time (ms)",
                title=f"all-reduce, N = {N} gloo processes")
    axes[0].legend(fontsize="small")
    names = [f"P = {v['params']:,}" for v in result.timings["hidden"].values()]
    comp = np.array([v["compute"] for v in result.timings["hidden"].values()]) * 1e3
    step = np.array([v["step"] for v in result.timings["hidden"].values()]) * 1e3
    axes[1].bar(names, comp, label="compute (no_sync)")
    axes[1].bar(names, np.maximum(step - comp, 0), bottom=comp, label="communication (the rest)")
    axes[1].set(ylabel="ms per step (rank 0)", title=f"one step, B/N = {result.config.global_batch // N}")
    axes[1].legend(fontsize="small")
    return axes


# ---------------------------------------------------------------------------------------------
# Large batches: the linear scaling rule against tuning, critical batch size

def critical_batch_study():
    """Chapter 2's study (:func:`course_lib.experiments.minibatch.batch_size_study` with its
    default arguments, B = 16 … 4000: the same call as chapter 2's, so the suite's
    ``shared_result`` computes it once for both chapters), McCandlish et al.'s model fitted to
    its steps (:func:`~course_lib.experiments.minibatch.fit_critical_batch`, the fit chapter 2
    prints) and the simple noise scale B_simple = tr Σ / ‖∇J‖² at θ₀
    (:func:`~course_lib.experiments.minibatch.gradient_noise_experiment`, chapter 2's call).
    Returns (study, fit, B_simple)."""
    study = mb.batch_size_study()
    noise = mb.gradient_noise_experiment()
    return study, mb.fit_critical_batch(study.batch_sizes, study.steps_needed), \
        float(noise.trace_cov / noise.grad_norm ** 2)


class ScalingRuleRow(NamedTuple):
    """One B: the tuned ε of chapter 2 and its steps to the target; the ε the linear scaling
    rule predicts from the smallest B, and the steps at that ε (inf: never reached, diverged),
    without and with Goyal et al.'s linear warm-up over ``RULE_WARMUP`` steps."""
    batch_size: int
    tuned_lr: float
    tuned_steps: float
    rule_lr: float
    rule_steps: float
    rule_warmup_steps: float


#: the warm-up given to the linear scaling rule's ε: linear from the small batch's ε₀ to ε over
#: this many steps (schedules.warmup_then, as Goyal et al.), a sixth of the budget at B = 256.  Checked in review: 5 and 20 steps
#: do not rescue ε = 6.4 at B = 256 either (no seed of 0-4 reached J ≤ 1.6 within 120 steps).
RULE_WARMUP = 10


def _steps_with_warmup(batch_size: int, lr: float, warmup: int, start_factor: float) -> float:
    """Steps for the median cost over chapter 2's seeds (``TUNE_SEEDS``) to reach its target,
    SGD at ε after a linear warm-up from ``start_factor`` · ε, in chapter 2's budget (as
    :func:`minibatch.tune_lr`)."""
    from course_lib.experiments.schedules import warmup_then

    steps = max(mb.TUNE_EXAMPLES, mb.TUNE_STEPS_MIN * batch_size) // batch_size
    curves = []
    for seed in mb.TUNE_SEEDS:
        model, data = mb.mnist1d_mlp(seed=seed)
        X, y = data.train
        opt = SGD(model.parameters(), lr=lr)
        with torch.no_grad():
            J0 = float(_CE(model(X), y))
        try:
            hist = train(model, _CE, opt, (X, y), epochs=steps * batch_size // len(X) + 1,
                         max_steps=steps, batch_size=batch_size, val_data=(X, y),
                         eval_every=max(1, steps // 64), seed=seed, scheduler=warmup_then(None, warmup, start_factor)(opt))
        except TrainingDiverged as err:
            hist = err.history
        ev = hist.to_numpy()["evals"]
        curves.append((np.concatenate([[0], ev["step"]]), np.concatenate([[J0], ev["val_loss"]])))
    n = min(len(c[1]) for c in curves)  # a diverged run ends where it diverged
    median = np.median(np.stack([c[1][:n] for c in curves]), axis=0)
    hit = np.nonzero(median <= mb.TUNE_TARGET)[0]
    return float(curves[0][0][hit[0]]) if len(hit) else math.inf


@shared_result
def scaling_rule_check(batch_sizes=(16, 64, 256)) -> list[ScalingRuleRow]:
    """Goyal et al.'s rule ε = ε₀ B / B₀ from B₀ = the first of ``batch_sizes`` at its tuned
    ε₀ (``minibatch.TUNED_LRS``), against the tuned ε of each B; steps measured as in
    :func:`course_lib.experiments.minibatch.tune_lr` (median curve over its seeds, constant ε, no
    warm-up; and with a warm-up of ``RULE_WARMUP`` steps).  The tuned ε's steps are those of
    chapter 2's study (the same runs: ``tune_lr`` at the tuned ε gives the same numbers)."""
    study = mb.batch_size_study()
    tuned_steps = dict(zip(study.batch_sizes.tolist(), study.steps_needed.tolist()))
    B0 = batch_sizes[0]
    eps0 = mb.TUNED_LRS[B0]
    rows = []
    for B in batch_sizes:
        rule = linear_scaling_rule(eps0, B0, B)
        tuned = mb.TUNED_LRS[B]
        if rule == tuned:
            s_rule = s_warm = tuned_steps[B]
        else:
            s_rule = float(mb.tune_lr(B, lrs=(rule,))[0])
            s_warm = _steps_with_warmup(B, rule, RULE_WARMUP, B0 / B)
        rows.append(ScalingRuleRow(B, tuned, float(tuned_steps[B]), rule, s_rule, s_warm))
    return rows


class LargeBatchConfig(NamedTuple):
    """The optimizer comparison at a large batch: the MLP of chapter 2, B examples per step,
    ``steps`` steps, training cost J on the 4000 training examples at the end, median over
    ``seeds``."""
    batch_size: int = 512     # about 6 times the critical batch of section 21.3
    steps: int = 30
    seeds: tuple = (0, 1, 2)


#: the chapter's large-batch comparison
LARGE = LargeBatchConfig()
#: each optimizer's ε grid: three values a factor 2 apart with the tuned best in the middle
#: (tests check it).  Found on finer grids (median final J over the seeds, B = 512, 30 steps):
#: SGD 0.4/0.566/0.8/1.13/1.6/2.26 → 1.41/1.34/1.28/1.37/1.66/41; Adam
#: 0.01/0.0141/0.02/0.0283/0.04/0.0566/0.08 → 1.57/1.51/1.42/1.36/1.26/1.23/1.26; LARS
#: 10/14.1/20/28.3/40/56.6/80 → 1.66/1.61/1.53/1.46/1.34/1.36/1.41; LAMB
#: 0.025/0.05/0.0707/0.1/0.141/0.2 → 1.75/1.58/1.47/1.54/1.65/2.01.
#: Not tuned: SGD's momentum α = 0.9, Adam's and LAMB's defaults, LARS with α = 0.9 and trust
#: coefficient c = 0.001 (You et al., 2017).
LARGE_GRIDS = {
    "SGD": (0.4, 0.8, 1.6),
    "Adam": (0.0283, 0.0566, 0.113),
    "LARS": (20.0, 40.0, 80.0),
    "LAMB": (0.0354, 0.0707, 0.141),
}


def _make_optimizer(name: str, params, lr: float):
    if name == "SGD":
        return SGD(params, lr=lr, momentum=0.9)
    if name == "Adam":
        return Adam(params, lr=lr)
    if name == "LARS":
        return LARS(params, lr=lr, momentum=0.9)
    if name == "LAMB":
        return LAMB(params, lr=lr)
    raise ValueError(f"Invalid optimizer: {name!r} (expected one of {sorted(LARGE_GRIDS)})")


def _final_cost(name: str, lr: float, config: LargeBatchConfig, seed: int) -> float:
    model, data = mb.mnist1d_mlp(seed=seed)
    X, y = data.train
    opt = _make_optimizer(name, model.parameters(), lr)
    try:
        train(model, _CE, opt, (X, y), epochs=math.ceil(config.steps * config.batch_size / len(X)),
              max_steps=config.steps, batch_size=config.batch_size, seed=seed)
    except TrainingDiverged:
        return math.inf
    with torch.no_grad():
        J = float(_CE(model(X), y))
    return J if math.isfinite(J) else math.inf


class LargeBatchGrid(NamedTuple):
    """``costs[name]``: array (len(grid), len(seeds)) of final training costs J; ``grids``."""
    config: LargeBatchConfig
    grids: dict
    costs: dict

    def median(self, name: str) -> np.ndarray:
        return np.median(self.costs[name], axis=1)

    def best(self, name: str) -> int:
        """Index of the ε with the least median J."""
        return int(np.argmin(self.median(name)))

    def best_lr(self, name: str) -> float:
        return float(self.grids[name][self.best(name)])

    def best_cost(self, name: str) -> float:
        return float(self.median(name)[self.best(name)])

    def seed_range(self, name: str) -> tuple[float, float]:
        """(min, max) over seeds of J at the best ε."""
        row = self.costs[name][self.best(name)]
        return float(np.min(row)), float(np.max(row))


def seeds_overlap(grid: "LargeBatchGrid", a: str, b: str) -> bool:
    """Whether the seeds' ranges of J at the best ε of ``a`` and ``b`` overlap."""
    (lo_a, hi_a), (lo_b, hi_b) = grid.seed_range(a), grid.seed_range(b)
    return lo_a <= hi_b and lo_b <= hi_a


@shared_result
def large_batch_grid(config: LargeBatchConfig = LARGE, grids=None) -> LargeBatchGrid:
    """Each optimizer of ``grids`` (default ``LARGE_GRIDS``) at each ε of its grid, from each
    seed: the training cost after ``config.steps`` steps with B = ``config.batch_size``."""
    grids = dict(LARGE_GRIDS if grids is None else grids)
    costs = {name: np.array([[_final_cost(name, lr, config, s) for s in config.seeds] for lr in lrs])
             for name, lrs in grids.items()}
    return LargeBatchGrid(config, grids, costs)


def plot_large_batch(grid: LargeBatchGrid, ax=None):
    """Median final cost against ε (relative to each optimizer's best ε), one line per
    optimizer; the seeds' range as a bar at each point."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8), layout="constrained")
    for name, lrs in grid.grids.items():
        rel = np.asarray(lrs) / grid.best_lr(name)
        med = grid.median(name)
        lo, hi = grid.costs[name].min(1), grid.costs[name].max(1)
        ok = np.isfinite(med)
        ax.errorbar(rel[ok], med[ok], yerr=[(med - lo)[ok], (np.where(np.isfinite(hi), hi, med) - med)[ok]],
                    marker="o", capsize=3, label=f"{name} (best ε = {grid.best_lr(name):g})")
    ax.set(xscale="log", xlabel="ε / best ε", ylabel=f"training cost J after {grid.config.steps} steps",
           title=f"B = {grid.config.batch_size}: every optimizer tuned on its grid")
    ax.legend(fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------------
# The widget: steps, batch size, workers, and the network

def plot_time_to_target(workers: int = 8, per_worker_batch: int = 16, bandwidth_gbps: float = 10.0,
                        params_millions: float = 1.0, *, min_steps: float = 28.6,
                        critical_batch: float = 82.0, measured=None, example_us: float = 50.0,
                        latency_us: float = 50.0):
    """Two panels for a job of N = ``workers`` workers with b = ``per_worker_batch`` examples each
    (B = N b).  Left: McCandlish et al.'s steps to the target S(B) = S_min (1 + B_crit / B) (the
    fit of chapter 2's measurement, ``measured`` = (B, steps) drawn as points), and the current B.
    Right: the time to the target against N at this b: S(N b) · (b · ``example_us`` of compute
    per step + one all-reduce of 4P bytes under :func:`allreduce_time` with ``bandwidth_gbps``
    GB/s and ``latency_us``), split into compute and communication.  The compute cost per example
    and the latency are illustrative constants, not measurements."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), layout="constrained")
    B_grid = np.geomspace(1, 1e5, 200)
    axes[0].loglog(B_grid, min_steps * (1 + critical_batch / B_grid), "-",
                   label="S(B) = S_min(1 + B_crit/B)")
    if measured is not None:
        axes[0].loglog(*measured, "o", color="k", label="measured (ch. 2, MNIST-1D)")
    B = workers * per_worker_batch
    S = min_steps * (1 + critical_batch / B)
    axes[0].axvline(critical_batch, color="gray", ls=":", lw=1)
    axes[0].plot([B], [S], "*", ms=14, color="C3", label=f"B = N b = {B}: {S:.0f} steps")
    axes[0].set(xlabel="batch size B", ylabel="steps to the target", ylim=(min_steps / 2, min_steps * 300),
                title="fewer steps, until B ≫ B_crit")
    axes[0].legend(fontsize="small", loc="upper right")
    Ns = np.unique(np.round(np.geomspace(1, 1024, 41)).astype(int))
    steps = min_steps * (1 + critical_batch / (Ns * per_worker_batch))
    compute = steps * per_worker_batch * example_us * 1e-6
    comm = steps * np.array([allreduce_time(4e6 * params_millions, n, bandwidth_gbps * 1e9,
                                            latency_us * 1e-6) for n in Ns])
    axes[1].loglog(Ns, compute + comm, "-", color="k", label="total")
    axes[1].loglog(Ns, compute, "--", label="compute")
    axes[1].loglog(Ns, np.maximum(comm, 1e-9), ":", label="all-reduce")
    here = min_steps * (1 + critical_batch / B)
    total = here * (per_worker_batch * example_us * 1e-6 + allreduce_time(
        4e6 * params_millions, workers, bandwidth_gbps * 1e9, latency_us * 1e-6))
    axes[1].plot([workers], [total], "*", ms=14, color="C3", label=f"N = {workers}: {total:.3g} s")
    axes[1].set(xlabel="workers N", ylabel="time to the target (s)",
                ylim=(max(1e-4, 0.3 * np.min(compute + comm)), 3 * np.max(compute + comm)),
                title=f"b = {per_worker_batch} per worker, P = {params_millions:g} M, {bandwidth_gbps:g} GB/s")
    axes[1].legend(fontsize="small")
    return fig
