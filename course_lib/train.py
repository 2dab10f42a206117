"""THE training loop of the course: one function for every chapter, on CPU and GPU alike.

    hist = train(model, loss_fn, optimizer, (X, y), epochs=10, val_data=(X_val, y_val))

Contract
* A *step* t (counted from 1) is one minibatch: J = loss_fn(model(X), y), backward, optional
  clipping, ``optimizer.step()``, then ``scheduler.step()`` if scheduler_interval="step".
  loss_fn must average over the minibatch (torch's default reduction="mean").
* Data: a tuple of tensors (X, y) is moved to the device once; each epoch draws a permutation
  from a torch.Generator seeded with `seed` and cuts it into minibatches (the last may be
  smaller).  Anything else is taken as an iterable of (X, y) batches (a DataLoader), as given.
* History: ``hist.steps`` (step, epoch, loss, grad_norm, lr) per step and ``hist.epochs``
  (epoch, step, train_loss, train_accuracy, val_loss, val_accuracy) per epoch, as lists
  (``hist.to_numpy()`` for arrays); ``hist.evals`` holds every validation (each epoch, and every
  `eval_every` steps).  grad_norm is ‖g‖₂ over all parameters *before* clipping; lr is the ε
  of parameter group 0 used for that step; train_loss is the mean of the epoch's minibatch
  losses, train_accuracy the fraction of its examples classified right while training.
  Missing values are nan.  Epochs cut short by max_steps are not recorded.
* Device: training runs where the model's parameters are, unless `device=` says otherwise (then
  the model is moved there); the data are moved to that device.  So a chapter experiment that
  builds its model on the CPU trains on the CPU on every machine, and a student who wants the
  GPU writes ``model.to(get_device())`` (or passes ``device="cuda"``).
* Determinism: on the CPU two identical calls give bit-identical parameters and history (a fresh
  run also seeds torch's global RNG, which dropout uses, with `seed`).  On CUDA some kernels are
  nondeterministic; ``deterministic=True`` trains under :func:`course_lib.utils.deterministic`
  (torch.use_deterministic_algorithms and what it needs), and then two calls agree bit for bit.
* Divergence: loss and gradient norm are checked for every step, and no update is ever made from
  a step where either is nan/inf: TrainingDiverged is raised, naming the step and ε, with the
  parameters and the optimizer's state those of the last good step and ``err.history`` the
  records up to it.  How: with an optimizer that can skip a step on the device (torch's
  ``fused=True`` Adam, AdamW, SGD, Adagrad: the ``found_inf`` protocol of GradScaler) on a GPU
  the check runs on the device, a bad step and every step after it are skipped there, and the
  host reads the values every few steps (no host sync per step, which is what costs on a GPU):
  the error then comes up to that many steps late, with the parameters and optimizer state still
  those of the last good step (only a scheduler has stepped on).  Otherwise (any other
  optimizer, or on the CPU where reading a value costs nothing) the host reads loss and norms
  before every update.
* Checkpoints (every `checkpoint_every` steps and at the end) hold everything the loop needs;
  ``resume=True`` continues bit-identically from one.  With a DataLoader this holds when its
  batches draw nothing from torch's global RNG beyond its shuffling (no random augmentation).
* amp=True (or "float16"): float16 autocast + GradScaler on CUDA; elsewhere a warning and float32,
  so the same notebook runs on a laptop.  amp="bfloat16": bfloat16 autocast on any device (CPU
  included), without loss scaling (bfloat16 has float32's range); the parameters, their gradients
  and the optimizer's state stay float32 (chapter 20).
* TensorBoard: ``tensorboard=`` a log directory (train opens a SummaryWriter there and closes it
  at the end) or a ``torch.utils.tensorboard.SummaryWriter`` (used, flushed, left open).  Every
  value on the step axis t; the scalars are the History's, written when the host reads them
  (no extra host sync, and nothing from a step that diverged):

  =============================  ===============================================================
  tag                            what, when
  =============================  ===============================================================
  ``steps/loss``                 J of step t's minibatch (``hist.steps``), every step
  ``steps/grad_norm``            ‖g‖₂ before clipping, every step
  ``steps/lr``                   ε of parameter group 0, every step
  ``update_ratio/<name>``        ‖Δθ‖₂/‖θ‖₂ of parameter tensor <name> at step t, with
                                 Δθ = θ_t − θ_{t−1} and θ = θ_{t−1} (:func:`update_norms`); every
                                 step, except where θ_{t−1} = 0 (the ratio is undefined there)
  ``evals/val_loss``             every validation (``hist.evals``: each epoch, every `eval_every`
  ``evals/val_accuracy``         steps), at the step it came after
  ``epochs/train_loss``          each recorded epoch (``hist.epochs``), at its last step
  ``epochs/train_accuracy``
  ``weights/<name>``             a histogram of each parameter tensor (30 equal bins from its min
                                 to its max): θ₀ at step 0 (fresh runs), then at the last step
                                 of each recorded epoch
  =============================  ===============================================================

  <name> is the parameter's name in ``model.named_parameters()`` ("0.weight"); a nan (an
  accuracy without metrics) is not written.  Logging costs a copy of θ per step (for Δθ), two
  events per step, and a histogram per tensor per epoch; without ``tensorboard`` the loop does
  no extra work (benchmarks/bench_train.py --tensorboard measures both).  A run resumed from a
  checkpoint of step T continues the curves: train opens the writer with ``purge_step=T``, so
  TensorBoard drops what the interrupted run wrote from step T on, and writes step T's records
  again (so each step appears once).  A SummaryWriter of your own is used as you opened it.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from course_lib.utils import deterministic as deterministic_algorithms
from course_lib.utils import get_device

METRICS = ("accuracy",)
_TENSORBOARD_EXPECTED = ("None, a log directory (a str or os.PathLike) or a "
                         "torch.utils.tensorboard.SummaryWriter")
_MONITORS = ("val_loss", "val_accuracy", "train_loss", "train_accuracy")
_BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}"  # no rates, no times
_READ_EVERY = 64  # steps between host reads when the non-finite check runs on the device
_SYNC_IS_FREE = ("cpu",)  # devices where reading a value costs no wait: the host checks every step


class TrainingDiverged(FloatingPointError):
    """The loss or gradient norm became nan/inf; no update was made. ``.history``: the records."""

    def __init__(self, message: str, history: "History | None" = None):  # default: picklable
        super().__init__(message)
        self.history = history


@dataclass
class EarlyStopping:
    """Stop when `monitor` has not improved by more than `min_delta` for `patience` epochs."""
    patience: int = 5
    monitor: str = "val_loss"
    mode: str = "min"
    min_delta: float = 0.0
    restore_best: bool = True  # end with the parameters of the best epoch

    def __post_init__(self):
        _check("patience", self.patience, _is_int(self.patience) and self.patience >= 1, "an int >= 1")
        _check("monitor", self.monitor, self.monitor in _MONITORS, f"one of {_MONITORS}")
        _check("mode", self.mode, self.mode in ("min", "max"), "'min' or 'max'")
        _check("min_delta", self.min_delta, self.min_delta >= 0, ">= 0")

    def improved(self, value: float, best: float | None) -> bool:
        if best is None:
            return True
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta


class History:
    """What happened during training, as dicts of lists (field names are part of the API)."""
    STEP_FIELDS = ("step", "epoch", "loss", "grad_norm", "lr")
    EPOCH_FIELDS = ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy")
    EVAL_FIELDS = ("step", "epoch", "val_loss", "val_accuracy")

    def __init__(self):
        self.steps = {k: [] for k in self.STEP_FIELDS}
        self.epochs = {k: [] for k in self.EPOCH_FIELDS}
        self.evals = {k: [] for k in self.EVAL_FIELDS}
        self.best_epoch: int | None = None
        self.stopped_early = False
        self.stop_reason = ""

    @staticmethod
    def _add(table: dict, **row):
        for k, v in row.items():
            table[k].append(v)

    def to_numpy(self) -> dict:
        """{"steps": {field: array}, "epochs": {...}, "evals": {...}}."""
        return {name: {k: np.asarray(v) for k, v in getattr(self, name).items()}
                for name in ("steps", "epochs", "evals")}

    def state_dict(self) -> dict:
        return copy.deepcopy(self.__dict__)

    def load_state_dict(self, state: dict):
        self.__dict__.update(copy.deepcopy(state))

    def __repr__(self):
        n, e = len(self.steps["step"]), len(self.epochs["epoch"])
        return f"History({n} steps, {e} epochs, best_epoch={self.best_epoch}, {self.stop_reason!r})"


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check(name: str, value, ok: bool, expected: str):
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _prepare(data, name: str, device: torch.device):
    """A tuple (X, y) of tensors, validated and moved to `device`; any other iterable as is."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(torch.is_tensor(t) for t in data):
        X, y = data
        _check(name, f"X with {len(X)} rows, y with {len(y)}", len(X) == len(y),
               "as many rows in X as in y")
        _check(name, "an empty dataset", len(X) > 0, "at least one example")
        return X.to(device), y.to(device)
    _check(name, type(data).__name__, hasattr(data, "__iter__"),
           "a tuple (X, y) of tensors or a DataLoader")
    _check(name, "an empty DataLoader", not hasattr(data, "__len__") or len(data) > 0,
           "at least one batch")
    return data


def _model_device(model) -> torch.device:
    """Where the model's parameters (else buffers) live; the CPU for a model without either."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def _epoch_batches(data, batch_size: int, shuffle: bool, gen: torch.Generator, skip: int = 0):
    """The minibatches of one epoch from batch number `skip` on; the order is drawn now."""
    if isinstance(data, tuple):
        X, y = data
        order = torch.randperm(len(X), generator=gen) if shuffle else torch.arange(len(X))
        return ((X[i], y[i]) for i in order.to(X.device).split(batch_size)[skip:])
    batches = iter(data)  # a DataLoader shuffles by itself
    for _ in range(skip):  # now, not lazily: the loader draws its shuffling seed on the first batch
        next(batches, None)
    return batches


def _predict(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The predicted class, shaped like y: argmax of scores (N, C), or [logit > 0] for one logit."""
    if out.ndim > 1 and out.shape[-1] > 1:
        return out.argmax(-1)
    return (out.reshape(y.shape) > 0).to(y.dtype)


def _rng_state(gen: torch.Generator, device: torch.device) -> dict:
    cuda = torch.cuda.get_rng_state_all() if device.type == "cuda" else []
    return {"batch_order": gen.get_state(), "torch": torch.get_rng_state(), "cuda": cuda}


def _set_rng_state(gen: torch.Generator, state: dict):
    gen.set_state(state["batch_order"])
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])


@torch.no_grad()
def update_norms(before, after) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """For each parameter tensor i: ‖θᵢ,ₜ − θᵢ,ₜ₋₁‖₂ and ‖θᵢ,ₜ₋₁‖₂, from the tensors before and
    after an update (two equally long lists), as two lists of 0-d tensors on their device:
    nothing is read to the host, so a caller can fold them into a read it makes anyway.  Their
    ratio is the update-to-parameter ratio (Karpathy's CS231n notes; chapter 14)."""
    return torch._foreach_norm(torch._foreach_sub(list(after), list(before))), \
        torch._foreach_norm(list(before))


def _check_tensorboard(tensorboard):
    """None, a directory path, or a SummaryWriter (imported only when one may be given)."""
    if tensorboard is None:
        return
    if isinstance(tensorboard, (str, os.PathLike)):
        path = os.fspath(tensorboard)
        _check("tensorboard", tensorboard, isinstance(path, str) and path != "",
               _TENSORBOARD_EXPECTED)
        _check("tensorboard", tensorboard, not os.path.exists(path) or os.path.isdir(path),
               "a directory for the event files, not a file")
        return
    from torch.utils.tensorboard import SummaryWriter
    _check("tensorboard", tensorboard, isinstance(tensorboard, SummaryWriter), _TENSORBOARD_EXPECTED)


class _TensorBoardLog:
    """What train() writes to TensorBoard (tags in the module docstring).  It only writes values
    the loop has already brought to the host, and the weights once per epoch."""
    _BINS = 30  # of a weight histogram (TensorBoard shows 30)

    def __init__(self, target, named_params, purge_step: int | None):
        from tensorboard.compat.proto.summary_pb2 import Summary
        from torch.utils.tensorboard import SummaryWriter
        self.Summary = Summary
        self.owned = not isinstance(target, SummaryWriter)
        self.writer = SummaryWriter(os.fspath(target), purge_step=purge_step) if self.owned else target
        self.named_params = named_params
        self.last_updates = None  # (step, norms) last logged: a checkpoint keeps it, to replay()

    def _scalars(self, step: int, values):
        """(tag, value) pairs of one step as one event, nan left out: add_scalar writes an
        event per value, and each costs (a pure-Python checksum, the writer's thread)."""
        summary = self.Summary(value=[self.Summary.Value(tag=tag, simple_value=value)
                                      for tag, value in values if not math.isnan(value)])
        if summary.value:
            self.writer._get_file_writer().add_summary(summary, step)  # what add_scalar does

    def step(self, step: int, loss: float, grad_norm: float, lr: float):
        self._scalars(step, (("steps/loss", loss), ("steps/grad_norm", grad_norm), ("steps/lr", lr)))

    def updates(self, step: int, norms: list[float]):
        """norms: ‖Δθᵢ‖ of every tensor, then ‖θᵢ‖ of every tensor (update_norms' order)."""
        n = len(self.named_params)
        self._scalars(step, [(f"update_ratio/{name}", delta / theta) for (name, _), delta, theta
                             in zip(self.named_params, norms[:n], norms[n:]) if theta > 0])
        self.last_updates = (step, list(norms))

    def evaluation(self, step: int, val_loss: float, val_accuracy: float):
        self._scalars(step, (("evals/val_loss", val_loss), ("evals/val_accuracy", val_accuracy)))

    def epoch(self, row: dict):
        self._scalars(row["step"], (("epochs/train_loss", row["train_loss"]),
                                    ("epochs/train_accuracy", row["train_accuracy"])))
        self.weights(row["step"])

    def replay(self, hist: History, step: int, last_updates):
        """Write the records of `step` (a checkpoint's) again, from its History and the update
        norms it kept: a resumed run's writer drops everything from that step on."""
        last = {name: {k: v[-1] for k, v in table.items()} if table["step"] else None
                for name, table in (("steps", hist.steps), ("evals", hist.evals),
                                    ("epochs", hist.epochs))}
        if last["steps"] and last["steps"]["step"] == step:
            self.step(step, last["steps"]["loss"], last["steps"]["grad_norm"], last["steps"]["lr"])
        if last_updates is not None and last_updates[0] == step:
            self.updates(*last_updates)
        if last["evals"] and last["evals"]["step"] == step:
            self.evaluation(step, last["evals"]["val_loss"], last["evals"]["val_accuracy"])
        if last["epochs"] and last["epochs"]["step"] == step:
            self.epoch(last["epochs"])

    def weights(self, step: int):
        """A histogram of each parameter tensor, in _BINS equal bins from its min to its max,
        counted where the tensor lives (add_histogram would copy it to the host for numpy, and
        torch.histc has no deterministic CUDA kernel); one small read per tensor."""
        for name, p in self.named_params:
            x = p.detach().double().flatten()
            lo, hi = x.min(), x.max()
            scale = self._BINS / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)  # lo = hi: one bin
            counts = torch.bincount(((x - lo) * scale).long().clamp_(0, self._BINS - 1),
                                    minlength=self._BINS)
            lo, hi, total, squares, *counts = torch.cat(
                [torch.stack([lo, hi, x.sum(), x.square().sum()]), counts.double()]).tolist()
            limits = [lo + (hi - lo) * (k + 1) / self._BINS for k in range(self._BINS)]
            if hi == lo:
                limits, counts = [hi], [float(x.numel())]
            self.writer.add_histogram_raw(f"weights/{name}", lo, hi, x.numel(), total, squares,
                                          limits, counts, global_step=step)

    def close(self):
        if self.owned:
            self.writer.close()
        else:
            self.writer.flush()


@torch.no_grad()
def evaluate(model, loss_fn, data, *, batch_size: int = 1024, metrics=METRICS, device=None) -> dict:
    """{"loss": mean loss, "accuracy": fraction right} of `model` on `data`, in eval mode.

    The model's train/eval mode is restored afterwards; `device` defaults to the model's.
    """
    _check("batch_size", batch_size, _is_int(batch_size) and batch_size >= 1, "an int >= 1")
    _check("metrics", tuple(metrics), set(metrics) <= set(METRICS), f"a subset of {METRICS}")
    device = _model_device(model) if device is None else get_device(device)
    data = _prepare(data, "data", device)
    if isinstance(data, tuple):
        data = zip(data[0].split(batch_size), data[1].split(batch_size))
    was_training = model.training
    model.eval()
    loss_sum, correct, n = torch.zeros((), device=device), torch.zeros((), device=device), 0
    try:
        for X, y in data:
            X, y = X.to(device), y.to(device)
            out = model(X)
            loss_sum += loss_fn(out, y).float() * len(y)  # loss_fn averages: undo it
            correct += (_predict(out, y) == y).sum()
            n += len(y)
    finally:
        model.train(was_training)
    result = {"loss": loss_sum.item() / n}
    if "accuracy" in metrics:
        result["accuracy"] = correct.item() / n
    return result


def train(model, loss_fn, optimizer, train_data, *, epochs=1, max_steps=None, batch_size=64,
          val_data=None, scheduler=None, scheduler_interval="step", clip_grad_norm=None,
          clip_grad_value=None, early_stopping=None, metrics=METRICS, device=None, amp=False,
          seed=0, shuffle=True, progress=False, eval_every=None, checkpoint_path=None,
          checkpoint_every=None, resume=False, overwrite=False, deterministic=False,
          tensorboard=None) -> History:
    """Train `model` in place; return its History.  The contract is in the module docstring.

    train_data, val_data  (X, y) tensors, or a DataLoader of (X, y) batches
    epochs, max_steps     passes over train_data, and an optional cap on the number of steps
    scheduler             stepped after every step, or every epoch (scheduler_interval="epoch");
                          ReduceLROnPlateau: every epoch, with val_loss (train_loss without val_data)
    clip_grad_norm=c      rescale g so that ‖g‖₂ ≤ c;  clip_grad_value=c: clamp each entry to [-c, c]
    early_stopping        an EarlyStopping, checked at the end of each epoch
    metrics               ("accuracy",) for classifiers, () for regression
    device                where to train; default: where the model's parameters are
    amp                   True/"float16": float16 autocast + loss scaling, on CUDA only (a warning
                          and float32 elsewhere); "bfloat16": bfloat16 autocast on any device
    deterministic         bit-identical repeats on CUDA too (torch.use_deterministic_algorithms)
    seed, shuffle         the batch order (and torch's global RNG, at the start of a fresh run)
    progress              a tqdm bar without rates or times, so stored outputs stay deterministic
    eval_every            also validate every that many steps (into hist.evals)
    checkpoint_path, checkpoint_every, resume, overwrite
                          save every that many steps and at the end; resume=True continues from
                          the file if there is one (else starts afresh); an existing file is never
                          overwritten unless overwrite=True.
    tensorboard           log to TensorBoard: a log directory, or a SummaryWriter (what is logged:
                          the module docstring); None: no logging, and no extra work
    """
    # ---- validate everything first, naming the argument
    for name, v in (("epochs", epochs), ("batch_size", batch_size)):
        _check(name, v, _is_int(v) and v >= 1, "an int >= 1")
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    for name, v in (("max_steps", max_steps), ("eval_every", eval_every),
                    ("checkpoint_every", checkpoint_every)):
        _check(name, v, v is None or (_is_int(v) and v >= 1), "None or an int >= 1")
    for name, v in (("clip_grad_norm", clip_grad_norm), ("clip_grad_value", clip_grad_value)):
        _check(name, v, v is None or v > 0, "None or a number > 0")
    _check("clip_grad_value", clip_grad_value, clip_grad_norm is None or clip_grad_value is None,
           "None when clip_grad_norm is given: choose one kind of clipping")
    _check("scheduler_interval", scheduler_interval, scheduler_interval in ("step", "epoch"),
           "'step' or 'epoch'")
    metrics = tuple(metrics)
    _check("metrics", metrics, set(metrics) <= set(METRICS), f"a subset of {METRICS}")
    _check("eval_every", eval_every, eval_every is None or val_data is not None, "None without val_data")
    _check("checkpoint_every", checkpoint_every, checkpoint_every is None or checkpoint_path,
           "None without checkpoint_path")
    _check("resume", resume, not resume or checkpoint_path, "False without checkpoint_path")
    es_cfg = early_stopping
    if es_cfg is not None:
        _check("early_stopping", es_cfg, isinstance(es_cfg, EarlyStopping), "an EarlyStopping or None")
        monitor = es_cfg.monitor
        _check("early_stopping.monitor", monitor, val_data is not None or monitor.startswith("train"),
               "a train_* monitor without val_data")
        _check("early_stopping.monitor", monitor, "accuracy" in metrics or monitor.endswith("loss"),
               "a *_loss monitor without metrics=('accuracy',)")

    _check("deterministic", deterministic, isinstance(deterministic, bool), "True or False")
    _check_tensorboard(tensorboard)

    # ---- set up: device, data, RNG, amp
    device = _model_device(model) if device is None else get_device(device)
    _check("amp", amp, isinstance(amp, bool) or (isinstance(amp, str) and amp in ("float16", "bfloat16")),
           "False, True, 'float16' or 'bfloat16'")
    amp_dtype = torch.bfloat16 if amp == "bfloat16" else torch.float16
    use_amp = bool(amp) and amp != "bfloat16" and device.type == "cuda"  # float16 + GradScaler
    if amp and amp != "bfloat16" and not use_amp:
        warnings.warn(f"amp={amp!r} needs CUDA; training in float32 on {device.type}", stacklevel=2)
    model.to(device)
    train_set = _prepare(train_data, "train_data", device)
    val_set = None if val_data is None else _prepare(val_data, "val_data", device)
    in_memory = isinstance(train_set, tuple)
    if in_memory:
        n_batches = math.ceil(len(train_set[0]) / batch_size)
    else:
        n_batches = len(train_set) if hasattr(train_set, "__len__") else None
    named_params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named_params]
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    gen = torch.Generator().manual_seed(seed)  # the batch order, and nothing else
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)  # a no-op when disabled
    # the non-finite check on the device (no host sync per step) needs an optimizer that can skip
    # a step there: GradScaler's found_inf protocol (torch's fused optimizers); amp has its own
    on_device_check = (getattr(optimizer, "_step_supports_amp_scaling", False) and not use_amp
                       and device.type not in _SYNC_IS_FREE)
    if on_device_check:  # skip: 1.0 once a step was bad; one: the (un)scale factor GradScaler would use
        skip, one = torch.zeros((), device=device), torch.ones((), device=device)
    pending = []  # (step, epoch, lr, [loss, ‖g_1‖, ‖g_2‖, ...]) of steps not yet read by the host
    pending_updates = []  # TensorBoard only: (step, [‖Δθ_1‖, ..., ‖θ_1‖, ...]), read with `pending`
    tb = None  # the TensorBoard log, opened once we know the first step
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if use_amp or amp == "bfloat16"
                else contextlib.nullcontext())
    hist = History()
    # counters, this epoch's running sums, RNG states at the epoch start: all a resume needs
    loop = {"step": 0, "epoch": 0, "batch": 0, "correct": 0, "seen": 0, "rng_epoch": None}
    outs, targets = [], []  # this epoch's outputs, compared with the labels only when needed
    es = {"best": None, "best_epoch": None, "bad": 0, "best_state": None}
    config = {"seed": seed, "batch_size": batch_size, "shuffle": shuffle}

    def count_correct():
        """Fold the outputs seen since the last call into loop["correct"] (a host sync)."""
        if outs:
            y = torch.cat(targets)
            loop["correct"] += int((_predict(torch.cat(outs), y) == y).sum())
            outs.clear()
            targets.clear()

    def read_steps():
        """Bring the pending steps' loss and norms to the host (one sync), check, record them
        (and log them, with the update norms of the steps recorded, if logging)."""
        if not pending and not pending_updates:
            return
        chunks = [values for *_, values in pending]
        if tb is not None:
            chunks += [values for _, values in pending_updates]
        flat = torch.stack([v for values in chunks for v in values]).tolist()  # one sync
        ends = list(itertools.accumulate(len(values) for values in chunks))
        rows = [flat[end - len(values):end] for end, values in zip(ends, chunks)]
        diverged = None
        for (step, epoch, lr, _), (loss_v, *norms_v) in zip(pending, rows):
            norm_v = math.hypot(*norms_v)  # ‖g‖₂ = √(Σ_i ‖g_i‖²), finite iff every ‖g_i‖ is
            if not (math.isfinite(loss_v) and (use_amp or math.isfinite(norm_v))):  # amp skips inf g
                what, v = ("loss", loss_v) if not math.isfinite(loss_v) else ("gradient norm", norm_v)
                diverged = TrainingDiverged(
                    f"{what} became {v} at step {step} (epoch {epoch}, lr={lr:g}); no update was "
                    f"made: the parameters are those of the last good step, {step - 1}", hist)
                break
            hist._add(hist.steps, step=step, epoch=epoch, loss=loss_v, grad_norm=norm_v, lr=lr)
            if tb is not None:
                tb.step(step, loss_v, norm_v, lr)
        if tb is not None:  # the updates of recorded steps (a skipped one after a bad step is not)
            last = hist.steps["step"][-1] if hist.steps["step"] else 0
            for (step, _), norms_v in zip(pending_updates, rows[len(pending):]):
                if step <= last:
                    tb.updates(step, norms_v)
        pending.clear()
        pending_updates.clear()
        if diverged is not None:
            raise diverged

    def save_checkpoint():
        read_steps()
        count_correct()
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict() if scheduler is not None else None,
                 "scaler": scaler.state_dict(), "loop": loop, "rng": _rng_state(gen, device),
                 "history": hist.state_dict(), "early_stopping": es, "config": config}
        if tb is not None:
            state["tensorboard"] = {"last_updates": tb.last_updates}
        torch.save(state, f"{checkpoint_path}.tmp")
        os.replace(f"{checkpoint_path}.tmp", checkpoint_path)  # never leave a half-written file

    def validate() -> tuple[float, float]:
        """(val_loss, val_accuracy) now, recorded in hist.evals (once per step)."""
        if not hist.evals["step"] or hist.evals["step"][-1] != loop["step"]:
            val = evaluate(model, loss_fn, val_set, metrics=metrics, device=device)
            hist._add(hist.evals, step=loop["step"], epoch=loop["epoch"] + 1,
                      val_loss=val["loss"], val_accuracy=val.get("accuracy", math.nan))
            if tb is not None:
                tb.evaluation(loop["step"], hist.evals["val_loss"][-1], hist.evals["val_accuracy"][-1])
        return hist.evals["val_loss"][-1], hist.evals["val_accuracy"][-1]

    def end_epoch():
        """Record the epoch, step an epoch scheduler, decide on early stopping."""
        _check("train_data", "no batches", loop["batch"] > 0, "at least one batch per epoch")
        read_steps()
        losses = hist.steps["loss"][-loop["batch"]:]
        val_loss, val_acc = validate() if val_set is not None else (math.nan, math.nan)
        count_correct()
        row = {"epoch": loop["epoch"] + 1, "step": loop["step"],
               "train_loss": sum(losses) / len(losses),
               "train_accuracy": loop["correct"] / loop["seen"] if metrics else math.nan,
               "val_loss": val_loss, "val_accuracy": val_acc}
        hist._add(hist.epochs, **row)
        if tb is not None:
            tb.epoch(row)
        loop.update(epoch=loop["epoch"] + 1, batch=0, correct=0, seen=0)
        if plateau:
            scheduler.step(row["val_loss"] if val_set is not None else row["train_loss"])
        elif scheduler is not None and scheduler_interval == "epoch":
            scheduler.step()
        if es_cfg is None:
            return
        if es_cfg.improved(row[es_cfg.monitor], es["best"]):
            es.update(best=row[es_cfg.monitor], best_epoch=row["epoch"], bad=0)
            if es_cfg.restore_best:
                es["best_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            es["bad"] += 1
        if es["bad"] >= es_cfg.patience and loop["epoch"] < epochs:
            hist.stopped_early = True
            hist.stop_reason = (f"early stopping: {es_cfg.monitor} did not improve for {es['bad']} "
                                f"epochs (best {es['best']:.4g} at epoch {es['best_epoch']})")

    # ---- start afresh, or continue from a checkpoint
    resumed, logged = False, None
    if checkpoint_path is not None and os.path.exists(checkpoint_path) and resume:
        # to the CPU: RNG states must live there; load_state_dict copies the rest onto the device
        ckpt = torch.load(checkpoint_path, map_location="cpu", weights_only=True)
        for key, value in config.items():
            saved = ckpt["config"][key]
            _check(key, value, saved == value, f"{saved!r}, as in {checkpoint_path}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        loop, es = ckpt["loop"], ckpt["early_stopping"]
        hist.load_state_dict(ckpt["history"])
        _set_rng_state(gen, ckpt["rng"])
        resumed, logged = True, ckpt.get("tensorboard")
        if not hist.stopped_early:
            hist.stop_reason = ""
    else:
        if checkpoint_path is not None and os.path.exists(checkpoint_path) and not overwrite:
            raise FileExistsError(f"{checkpoint_path} exists: pass resume=True to continue from it, "
                                  "or overwrite=True to start afresh")
        torch.manual_seed(seed)  # dropout and friends

    bar = None
    if progress:
        from tqdm.auto import tqdm
        total = epochs * n_batches if n_batches else None
        if max_steps is not None:
            total = max_steps if total is None else min(total, max_steps)
        bar = tqdm(total=total, initial=loop["step"], bar_format=_BAR_FORMAT, desc="train")

    # ---- the loop
    settings = contextlib.ExitStack()  # undone in `finally`, whatever happens
    if tensorboard is not None:
        # resumed at step T: TensorBoard drops what an interrupted run wrote from T on, and we
        # write T's records again (some, like an epoch's end, may come after the checkpoint)
        tb = _TensorBoardLog(tensorboard, named_params, loop["step"] if resumed else None)
        settings.callback(tb.close)
        if resumed:
            tb.replay(hist, loop["step"], logged and logged["last_updates"])
        else:
            tb.weights(0)  # θ₀
    if deterministic:
        settings.enter_context(deterministic_algorithms())
    if on_device_check:
        settings.callback(lambda: [optimizer.__dict__.pop(k, None) for k in ("found_inf", "grad_scale")])
    model.train()
    try:
        while loop["epoch"] < epochs and not hist.stop_reason:
            if max_steps is not None and loop["step"] >= max_steps:
                hist.stop_reason = f"max_steps={max_steps} reached"
                break
            if loop["batch"] == 0:  # a new epoch: remember the RNGs, to replay its order on resume
                loop["rng_epoch"] = _rng_state(gen, device)
                batches = _epoch_batches(train_set, batch_size, shuffle, gen)
            else:  # resuming mid-epoch: draw the epoch's order again, skip the batches done
                now = _rng_state(gen, device)
                _set_rng_state(gen, loop["rng_epoch"])
                batches = _epoch_batches(train_set, batch_size, shuffle, gen, skip=loop["batch"])
                _set_rng_state(gen, now)
            if bar is not None:
                bar.set_description_str(f"epoch {loop['epoch'] + 1}/{epochs}")
            for X, y in batches:
                if not in_memory:  # (in-memory batches are on the device already)
                    X, y = X.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast:
                    out = model(X)
                    loss = loss_fn(out, y)
                optimizer.zero_grad(set_to_none=True)
                if use_amp:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)  # so that grad_norm is that of the true g
                else:
                    loss.backward()
                grads = [p.grad for p in params if p.grad is not None]
                if not grads:
                    raise RuntimeError("no parameter of the model got a gradient: does the loss depend on it?")
                # ‖g_i‖ per tensor: torch.nn.utils.get_total_norm's first step, minus its Python overhead
                norms = torch._foreach_norm(grads)
                values = [loss.detach(), *norms]  # 0-d tensors, stacked when the host reads them
                pending.append((loop["step"] + 1, loop["epoch"] + 1,
                                float(optimizer.param_groups[0]["lr"]), values))
                if on_device_check:  # skip this step and all later ones on the device once one is bad
                    # the host's test (in read_steps), on the device: are the loss and every ‖g_i‖
                    # finite? One kernel; it sets skip to 1.0 if not, and never back to 0.
                    torch._amp_foreach_non_finite_check_and_unscale_(values, skip, one)
                    optimizer.found_inf, optimizer.grad_scale = skip, None
                else:
                    read_steps()  # the one host sync per step: is it safe to update?
                if clip_grad_norm is not None:  # exactly as torch.nn.utils.clip_grad_norm_
                    total = torch.linalg.vector_norm(torch.stack(norms))
                    torch.nn.utils.clip_grads_with_norm_(params, clip_grad_norm, total)
                if clip_grad_value is not None:
                    torch.nn.utils.clip_grad_value_(params, clip_grad_value)
                if tb is not None:  # θ_{t-1}, for the update ratios
                    before = [p.detach().clone() for p in params]
                if use_amp:
                    scaler.step(optimizer)  # skips the step if g has an inf (scale too large)
                    scaler.update()
                else:
                    optimizer.step()
                if tb is not None:  # read with the next steps' values, and logged then
                    deltas, thetas = update_norms(before, params)
                    pending_updates.append((loop["step"] + 1, [*deltas, *thetas]))
                if scheduler is not None and scheduler_interval == "step" and not plateau:
                    scheduler.step()
                if metrics:  # kept for train_accuracy: one comparison per epoch, not per step
                    outs.append(out.detach())
                    targets.append(y)
                loop.update(step=loop["step"] + 1, batch=loop["batch"] + 1, seen=loop["seen"] + len(y))
                if len(pending) >= _READ_EVERY:
                    read_steps()
                if bar is not None:
                    bar.update()
                if eval_every is not None and loop["step"] % eval_every == 0:
                    read_steps()
                    validate()
                if checkpoint_every is not None and loop["step"] % checkpoint_every == 0:
                    save_checkpoint()
                if max_steps is not None and loop["step"] >= max_steps and loop["batch"] != n_batches:
                    break  # stopped mid-epoch: the epoch is not recorded
            else:  # (for-else) the epoch ran to its end
                end_epoch()
        read_steps()
    finally:
        settings.close()
        if bar is not None:
            bar.close()

    # ---- wrap up
    if not hist.stop_reason:
        hist.stop_reason = f"completed {epochs} epochs"
    if es_cfg is not None:
        hist.best_epoch = es["best_epoch"]
    else:  # the epoch of least validation loss, if any
        finite = [(v, e) for v, e in zip(hist.epochs["val_loss"], hist.epochs["epoch"]) if math.isfinite(v)]
        hist.best_epoch = min(finite)[1] if finite else None
    if checkpoint_path is not None:
        save_checkpoint()  # before restoring the best epoch: a resume continues from here
    if es_cfg is not None and es_cfg.restore_best and es["best_state"] is not None:
        model.load_state_dict(es["best_state"])
    return hist
