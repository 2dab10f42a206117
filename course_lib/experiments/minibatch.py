r"""Batch and minibatch algorithms (Deep Learning book §8.1.3): the experiments of chapter 2.

The cost is an average over the m training examples, so its gradient is an average too:

.. math::

    J(\theta) = \frac1m \sum_{i=1}^m L(f(x^{(i)};\theta), y^{(i)}), \qquad
    \nabla_\theta J = \frac1m \sum_{i=1}^m g_i = \mathbb{E}_{i}\,[g_i].

A minibatch of B examples drawn at random gives an unbiased estimate g of it, whose error
shrinks only like σ/√B.  Each function below measures one consequence of that, with the
setting of the chapter as its defaults, so the notebook and ``tests/test_ch02_minibatch.py``
call the same code with the same arguments:

=================================  ==========================================================
``gradient_noise_experiment``      standard error of g against B on an MLP on MNIST-1D
``redundancy_experiment``          copies of a few examples: SGD needs far fewer examples
``time_per_update``,               wall-clock time of one update, bytes of activations,
``activation_bytes``               against B
``stability_experiment``           the largest stable learning rate ε grows with B
                                   (measured, and predicted by ``critical_lr``)
``ordering_experiment``            sorted-by-class minibatches against shuffled ones
``generalization_experiment``      single-pass SGD on fresh samples lowers the true risk;
                                   epochs over a small sample open a train–test gap
``gradient_bias``                  fresh-sample gradients estimate ∇J* without bias
``loss_vs_examples``               loss against examples seen (the chapter's widget)
=================================  ==========================================================

Training always goes through :func:`course_lib.train.train`; the one exception is
:func:`sgd_least_squares`, a vectorized SGD for many learning rates at once on a linear
least-squares problem, tested step for step against ``train``.
"""
from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple

import numpy as np
import scipy.sparse.linalg as sla
import torch
from torch import nn

from course_lib.curvature import GradientNoise, minibatch_gradient_noise
from course_lib.data import GaussianClassificationTask, mnist1d
from course_lib.models import mlp
from course_lib.optim import SGD
from course_lib.train import TrainingDiverged, evaluate, train
from course_lib.utils import shared_result

__all__ = [
    "mnist1d_mlp", "per_example_gradients", "gradient_moments",
    "NoiseResult", "gradient_noise_experiment",
    "redundant_dataset", "examples_to_reach", "RedundancyResult", "redundancy_experiment",
    "time_per_update", "activation_bytes",
    "least_squares_data", "sgd_least_squares", "critical_lr", "largest_stable_lr",
    "StabilityResult", "stability_experiment", "plot_stability_map",
    "tune_lr", "BatchSizeStudy", "batch_size_study", "plot_batch_size_study",
    "CriticalBatchFit", "fit_critical_batch",
    "OrderingRun", "ordering_experiment",
    "gaussian_task", "FreshSamples", "GeneralizationResult", "generalization_experiment",
    "true_risk_gradient", "GradientBias", "gradient_bias",
    "loss_vs_examples", "plot_gradient_noise", "plot_redundancy", "plot_time_per_update",
    "plot_activation_memory", "plot_ordering", "plot_generalization", "plot_loss_vs_examples",
    "NOISE_BATCH_SIZES", "TIMING_BATCH_SIZES", "STABILITY_BATCH_SIZES", "STABILITY_LRS",
]

#: batch sizes of the σ/√B experiment (with replacement, so B may exceed the 4000 examples)
NOISE_BATCH_SIZES = (1, 10, 100, 1000, 10000)
#: powers of two, and 1.5 × a power of two, for the timing sweep
TIMING_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
                      2048, 4096)
#: batch sizes of the stability experiment (divisors of its N = 1024 examples)
STABILITY_BATCH_SIZES = (1, 4, 16, 64, 256, 1024)
#: learning rates ε of the stability experiment: 2^-4 ... 2^1 in steps of 2^(1/4)
STABILITY_LRS = tuple(2.0 ** (k / 4) for k in range(-32, 5))  # 2⁻⁸ .. 2, steps of 2^¼
STABILITY_STEPS = 400           # SGD steps per run
STABILITY_SEEDS = tuple(range(5))  # batch orders; the map shows the median over them
STABILITY_BLOWUP = 10.0         # "diverged": median final cost > 10 × the initial cost

_CE = nn.CrossEntropyLoss()


def _check(name: str, value, ok: bool, expected: str):
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_pos_int(name: str, value):
    _check(name, value, _is_int(value) and value >= 1, "an int >= 1")


def _check_batch_sizes(batch_sizes) -> tuple[int, ...]:
    sizes = tuple(batch_sizes)
    _check("batch_sizes", batch_sizes, len(sizes) > 0 and all(_is_int(b) and b >= 1 for b in sizes),
           "a non-empty sequence of ints >= 1")
    return sizes


def _full_loss(model, loss_fn, X, y) -> float:
    """loss_fn on the whole of (X, y): the cost J(θ) itself (works for regression targets too)."""
    with torch.no_grad():
        return float(loss_fn(model(X), y))


# ---------------------------------------------------------------------------------------------
# The cost is an average, its gradient an expectation

def mnist1d_mlp(hidden: tuple[int, ...] = (64,), num_samples: int = 5000, seed: int = 0):
    """The chapter's real problem: (MLP 40 → hidden → 10 drawn from ``seed``, MNIST-1D Split).

    With the defaults: 4000 training and 1000 test signals, P = 3274 parameters.
    """
    data = mnist1d(num_samples, seed=seed)
    model = mlp(data.X_train.shape[1], hidden, 10, generator=torch.Generator().manual_seed(seed))
    return model, data


def per_example_gradients(model: nn.Module, loss_fn, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The gradients g_i of the loss on each example alone: a tensor (N, P).

    Row i is ∇θ loss_fn(model(x_i), y_i), flattened in the order of ``model.parameters()``
    (the order of :func:`course_lib.curvature.flatten_grad`), for a model whose parameters all
    sit in ``nn.Linear`` layers (an MLP).  One forward and one backward pass for the whole
    batch, with the trick of Goodfellow (2015, arXiv:1510.01799, *Efficient per-example gradient
    computations*): a Linear layer z = W a + b gets, from example i, the gradient
    ∂L_i/∂W = e_i a_iᵀ and ∂L_i/∂b = e_i, with e_i = ∂L_i/∂z_i (the backpropagated error).  Since loss_fn averages over the
    batch, e_i = N ∂J/∂z_i.
    """
    _check("X", f"{len(X)} rows for {len(y)} targets", len(X) == len(y), "as many rows as y")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    in_linear = {id(p) for m in linears for p in m.parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    _check("model", type(model).__name__, all(id(p) in in_linear for p in params),
           "a model whose trainable parameters all belong to nn.Linear layers")
    seen = {}  # layer -> (its input a, its output z) on this batch

    def keep(module, inputs, output):
        seen[module] = (inputs[0].detach(), output)

    handles = [m.register_forward_hook(keep) for m in linears]
    try:
        loss = loss_fn(model(X), y)
    finally:
        for h in handles:
            h.remove()
    used = [m for m in linears if m in seen]
    deltas = torch.autograd.grad(loss, [seen[m][1] for m in used])  # ∂J/∂z, (N, out) each
    per_param = {}
    for m, d in zip(used, deltas):
        a, d = seen[m][0], d * len(X)  # e_i = N ∂J/∂z_i
        per_param[id(m.weight)] = (d[:, :, None] * a[:, None, :]).reshape(len(X), -1)  # e_i a_iᵀ
        if m.bias is not None:
            per_param[id(m.bias)] = d
    return torch.cat([per_param[id(p)] if id(p) in per_param else p.new_zeros(len(X), p.numel())
                      for p in params], dim=1)


class GradientMoments(NamedTuple):
    """``mean``: ḡ = (1/N) Σ g_i (flat, float64); ``trace_cov``: tr Σ = (1/N) Σ ‖g_i − ḡ‖²."""
    mean: torch.Tensor
    trace_cov: float


def gradient_moments(model: nn.Module, loss_fn, X: torch.Tensor, y: torch.Tensor,
                     chunk_size: int = 1000) -> GradientMoments:
    """Mean and total variance of the per-example gradients, ``chunk_size`` examples at a time.

    tr Σ is what sets the minibatch error: with B examples drawn with replacement,
    E‖g_B − ∇J‖² = tr Σ / B.  Sums are accumulated in float64 (tr Σ = mean ‖g_i‖² − ‖ḡ‖²).
    """
    _check_pos_int("chunk_size", chunk_size)
    total, sq = None, 0.0
    for Xc, yc in zip(X.split(chunk_size), y.split(chunk_size)):
        G = per_example_gradients(model, loss_fn, Xc, yc).double()  # (chunk, P)
        total = G.sum(0) if total is None else total + G.sum(0)
        sq += float((G ** 2).sum())
    mean = total / len(X)
    return GradientMoments(mean, sq / len(X) - float(mean @ mean))


class NoiseResult(NamedTuple):
    """What :func:`gradient_noise_experiment` measured.

    ``noise``: the :class:`~course_lib.curvature.GradientNoise` (batch_sizes, sq_error,
    std_error; ``noise.slope()``); ``trace_cov``: tr Σ; ``predicted_std``: √(tr Σ / B);
    ``mean_vs_full``: ‖ḡ − ∇J‖ / ‖∇J‖, the mean of the per-example gradients against the
    gradient of the averaged loss (zero up to rounding); ``grad_norm``: ‖∇J‖, for scale.
    """
    noise: GradientNoise
    trace_cov: float
    predicted_std: np.ndarray
    mean_vs_full: float
    grad_norm: float

    def error_ratio(self, small: int, large: int) -> float:
        """std_error at B = small over std_error at B = large: √(large/small) by the σ/√n law."""
        sizes = list(self.noise.batch_sizes)
        for name, b in (("small", small), ("large", large)):
            _check(name, b, b in sizes, f"one of the measured batch sizes {sizes}")
        return float(self.noise.std_error[sizes.index(small)] / self.noise.std_error[sizes.index(large)])


@shared_result
def gradient_noise_experiment(batch_sizes=NOISE_BATCH_SIZES, n_batches: int = 30,
                              hidden: tuple[int, ...] = (64,), seed: int = 0) -> NoiseResult:
    """The standard error of the minibatch gradient against B, at θ₀ of :func:`mnist1d_mlp`.

    For each B, ``n_batches`` minibatches of B examples drawn with replacement from the 4000
    training examples (i.i.d. draws from the training distribution);
    ‖g_B − ∇J‖ is averaged over them in square.  The prediction √(tr Σ / B) uses the exact tr Σ
    from all per-example gradients.
    """
    sizes = _check_batch_sizes(batch_sizes)
    _check_pos_int("n_batches", n_batches)
    model, data = mnist1d_mlp(hidden, seed=seed)
    X, y = data.train
    noise = minibatch_gradient_noise(model, _CE, X, y, sizes, n_batches=n_batches,
                                     generator=torch.Generator().manual_seed(seed + 1))
    moments = gradient_moments(model, _CE, X, y)
    model.zero_grad()
    _CE(model(X), y).backward()
    full = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
    mean_vs_full = float((moments.mean - full).norm() / full.norm())
    predicted = np.sqrt(moments.trace_cov / np.asarray(sizes, dtype=float))
    return NoiseResult(noise, moments.trace_cov, predicted, mean_vs_full, float(full.norm()))


# ---------------------------------------------------------------------------------------------
# Redundancy: a data set of copies of a few examples

def redundant_dataset(X: torch.Tensor, y: torch.Tensor, per_class: int, copies: int):
    """The first ``per_class`` examples of each class, each repeated ``copies`` times.

    Returns (X_redundant, y_redundant, X_distinct, y_distinct); the redundant set is the
    distinct set tiled ``copies`` times (so N = copies × k, k = per_class × number of classes).
    """
    _check_pos_int("per_class", per_class)
    _check_pos_int("copies", copies)
    classes = torch.unique(y)
    picked = []
    for c in classes:
        where = torch.nonzero(y == c)[:, 0]
        _check("per_class", per_class, len(where) >= per_class,
               f"at most {len(where)}, the examples of class {int(c)}")
        picked.append(where[:per_class])
    idx = torch.cat(picked)
    Xd, yd = X[idx], y[idx]
    return Xd.repeat(copies, *([1] * (X.ndim - 1))), yd.repeat(copies), Xd, yd


def examples_to_reach(examples, losses, target: float) -> float:
    """The number of examples processed when ``losses`` first falls to ``target`` (inf if never)."""
    examples, losses = np.asarray(examples, dtype=float), np.asarray(losses, dtype=float)
    _check("losses", f"{losses.shape} against examples {examples.shape}",
           losses.shape == examples.shape and losses.ndim == 1, "a 1-D array shaped like examples")
    hit = np.nonzero(losses <= target)[0]
    return float(examples[hit[0]]) if len(hit) else math.inf


class RedundancyResult(NamedTuple):
    """``gd`` and ``sgd``: (examples processed, cost J on the whole redundant set) as arrays,
    from θ₀ (0 examples) on; ``exact_batch_error``: ‖g_batch − ∇J‖/‖∇J‖ for a batch holding one
    copy of each distinct example; ``random_batch_error``: the same for a random batch of the
    same size; ``n_examples``: N; ``batch_size``: B of SGD; ``target``: the loss to reach."""
    gd: tuple[np.ndarray, np.ndarray]
    sgd: tuple[np.ndarray, np.ndarray]
    exact_batch_error: float
    random_batch_error: float
    n_examples: int
    batch_size: int
    target: float

    def examples_needed(self) -> tuple[float, float]:
        """(examples GD needs, examples SGD needs) to bring J down to ``target``."""
        return examples_to_reach(*self.gd, self.target), examples_to_reach(*self.sgd, self.target)

    def ratio(self) -> float:
        """How many times more examples full-batch GD processes than SGD to reach ``target``."""
        gd, sgd = self.examples_needed()
        return gd / sgd


def _flat_grad(model, loss_fn, X, y) -> torch.Tensor:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(model(X), y), params)])


@shared_result
def redundancy_experiment(per_class: int = 2, copies: int = 100, batch_size: int = 20,
                          lr: float = 0.1, steps: int = 80, eval_every: int = 2,
                          target: float = 0.5, seed: int = 0) -> RedundancyResult:
    """Full-batch GD against minibatch SGD (same ε, same θ₀) on a highly redundant data set.

    The data: ``per_class`` MNIST-1D examples of each of the 10 classes, each copied
    ``copies`` times (N = 2000 with the defaults).  GD makes ``steps`` updates on all N
    examples; SGD ``steps`` updates on ``batch_size`` examples, the cost being evaluated on all
    N every ``eval_every`` steps.  Both through :func:`course_lib.train.train`.
    """
    for name, v in (("steps", steps), ("eval_every", eval_every), ("batch_size", batch_size)):
        _check_pos_int(name, v)
    _check("lr", lr, lr > 0, "> 0")
    model0, data = mnist1d_mlp(seed=seed)
    Xr, yr, Xd, yd = redundant_dataset(*data.train, per_class, copies)
    N = len(Xr)
    _check("batch_size", batch_size, batch_size <= N, f"<= N = {N}")

    # one copy of each distinct example: exactly the full gradient; a random batch: not
    g_full = _flat_grad(model0, _CE, Xr, yr)
    g_exact = _flat_grad(model0, _CE, Xd, yd)
    rand = torch.randperm(N, generator=torch.Generator().manual_seed(seed))[:len(Xd)]
    g_rand = _flat_grad(model0, _CE, Xr[rand], yr[rand])
    exact_err = float((g_exact - g_full).norm() / g_full.norm())
    rand_err = float((g_rand - g_full).norm() / g_full.norm())

    J0 = _full_loss(model0, _CE, Xr, yr)
    curves = {}
    for name, B, every in (("gd", N, 1), ("sgd", batch_size, eval_every)):
        model = mnist1d_mlp(seed=seed)[0]
        hist = train(model, _CE, SGD(model.parameters(), lr=lr), (Xr, yr), epochs=steps * B // N + 1,
                     max_steps=steps, batch_size=B, val_data=(Xr, yr), eval_every=every, seed=seed)
        ev = hist.to_numpy()["evals"]
        curves[name] = (np.concatenate([[0.0], ev["step"] * float(B)]),
                        np.concatenate([[J0], ev["val_loss"]]))
    return RedundancyResult(curves["gd"], curves["sgd"], exact_err, rand_err, N, batch_size, target)


# ---------------------------------------------------------------------------------------------
# What a minibatch costs: time per update and memory against B

def time_per_update(model: nn.Module, loss_fn, X: torch.Tensor, y: torch.Tensor, batch_sizes,
                    repeats: int = 10, lr: float = 0.01, device=None) -> np.ndarray:
    """Median wall-clock seconds of one update (forward, backward, SGD step) for each B.

    The B examples are the first B rows of (X, y), cycled if B > len(X).  One warm-up
    update precedes the ``repeats`` timed ones; on CUDA the device is synchronized around each.
    The model is trained a little in the process.  Hardware dependent: plot it, never assert it.
    """
    sizes = _check_batch_sizes(batch_sizes)
    _check_pos_int("repeats", repeats)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    X, y = X.to(device), y.to(device)
    opt = SGD(model.parameters(), lr=lr)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    out = []
    for B in sizes:
        rows = torch.arange(B, device=device) % len(X)
        Xb, yb = X[rows], y[rows]
        times = []
        for r in range(repeats + 1):
            sync()
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss_fn(model(Xb), yb).backward()
            opt.step()
            sync()
            if r > 0:  # the first one warms up caches and allocators
                times.append(time.perf_counter() - t0)
        out.append(float(np.median(times)))
    return np.array(out)


def activation_bytes(model: nn.Module, X: torch.Tensor) -> int:
    """Bytes of the activations a forward pass on the batch X creates: the input plus the
    output of every leaf module (what autograd keeps, or nearly, for the backward pass).

    Computed from tensor sizes (numel × element size), so deterministic.  Linear in the batch
    size, unlike the parameters' bytes, which do not depend on it.
    """
    _check("X", tuple(X.shape), X.ndim >= 1 and len(X) >= 1, "a batch of at least one example")
    total = [X.numel() * X.element_size()]

    def hook(module, inputs, output):
        total[0] += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(X)
    finally:
        for h in handles:
            h.remove()
    return total[0]


# ---------------------------------------------------------------------------------------------
# Small batches need small learning rates: linear least squares, where stability is exact

def least_squares_data(n: int = 1024, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y): the first n MNIST-1D training signals (float64, (n, 40)) and one-hot targets (n, 10).

    Fitting Y by a linear model with the mean squared error is a quadratic problem on real data.
    """
    _check("n", n, _is_int(n) and 1 <= n <= 4000, "an int in 1..4000")
    data = mnist1d(5000, seed=seed)
    return data.X_train[:n].double(), nn.functional.one_hot(data.y_train[:n], 10).double()


def _with_bias(X: torch.Tensor) -> torch.Tensor:
    return torch.cat([X, torch.ones(len(X), 1, dtype=X.dtype)], dim=1)  # x̃ = (x, 1)


def sgd_least_squares(X: torch.Tensor, Y: torch.Tensor, batch_size: int, lrs, steps: int,
                      seed: int = 0) -> np.ndarray:
    r"""The cost after ``steps`` SGD steps from Θ₀ = 0, one run per learning rate in ``lrs``.

    J(Θ) = (1/(N C)) ‖X̃Θ − Y‖²_F (torch's MSELoss on a Linear layer: Θ stacks the weight and the
    bias; C = number of outputs).  All runs see the same minibatches, drawn exactly as
    :func:`course_lib.train.train` draws them with this ``seed`` (a fresh permutation per
    epoch, cut into batches), and update together as one tensor (L, D+1, C):

    .. math::  \Theta \leftarrow \Theta - \epsilon\, \frac{2}{BC} \tilde X_B^\top (\tilde X_B \Theta - Y_B).

    A vectorized fast path: ``tests/test_ch02_minibatch.py`` checks it against ``train``.
    Returns the L final costs (inf where the run overflowed).
    """
    _check_pos_int("batch_size", batch_size)
    _check_pos_int("steps", steps)
    lrs = torch.as_tensor(np.asarray(lrs, dtype=float), dtype=torch.float64)
    _check("lrs", lrs.tolist(), lrs.ndim == 1 and len(lrs) > 0 and bool((lrs > 0).all()),
           "a non-empty sequence of numbers > 0")
    Xt, Y = _with_bias(X.double()), Y.double()
    N, C = Y.shape
    Theta = torch.zeros(len(lrs), Xt.shape[1], C, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    t = 0
    while t < steps:
        for idx in torch.randperm(N, generator=gen).split(batch_size):  # one epoch
            Xb, Yb = Xt[idx], Y[idx]
            G = 2.0 / (len(idx) * C) * (Xb.T @ (Xb @ Theta - Yb))  # (L, D+1, C)
            Theta = Theta - lrs[:, None, None] * G
            t += 1
            if t == steps:
                break
    J = ((Xt @ Theta - Y) ** 2).mean(dim=(1, 2)).numpy()
    return np.where(np.isfinite(J), J, np.inf)


def critical_lr(X: torch.Tensor, batch_size: int, n_outputs: int = 10) -> float:
    r"""The largest ε at which SGD on :func:`sgd_least_squares`'s problem is mean-square stable.

    Per output, the minibatch Hessian is H_B = (1/B) Σ_{i∈batch} h_i with h_i = (2/C) x̃_i x̃_iᵀ,
    and the error e = θ − θ* evolves as e ← (I − εH_B) e + noise.  Its second moment M = E[eeᵀ]
    stays bounded iff the linear map

    .. math::  T(M) = \mathbb{E}[(I-\epsilon H_B) M (I-\epsilon H_B)]
               = M - \epsilon(HM + MH) + \epsilon^2\, \mathbb{E}[H_B M H_B]

    has spectral radius < 1 (successive batches treated as independent).  For B examples
    drawn without replacement from N, E[H_B M H_B] = HMH + f (S(M) − HMH) with
    S(M) = (1/N) Σ h_i M h_i and f = (N − B) / (B (N − 1)).  T is symmetric and maps positive
    semidefinite M to positive semidefinite ones, so the condition is ε Q ≺ A with
    A(M) = HM + MH, Q(M) = E[H_B M H_B]:  ε_crit = 1 / λ_max(A^{-1/2} Q A^{-1/2}).
    At B = N this is 2/λ_max(H), the stability limit of gradient descent; small B give less.
    (A generalization of Ma, Bassily & Belkin, 2018, ICML, *The power of interpolation*.)
    """
    _check_pos_int("batch_size", batch_size)
    _check_pos_int("n_outputs", n_outputs)
    Xt = _with_bias(X.double()).numpy()
    N, D = Xt.shape
    _check("batch_size", batch_size, batch_size <= N, f"<= N = {N}")
    c = 2.0 / n_outputs
    lam, U = np.linalg.eigh(c * Xt.T @ Xt / N)  # H = U diag(λ) Uᵀ; work in its eigenbasis
    _check("X", "a rank-deficient design", lam[0] > 1e-12 * lam[-1], "H positive definite")
    Z = Xt @ U  # rows z_i = Uᵀ x̃_i, so h_i = c z_i z_iᵀ
    f = (N - batch_size) / (batch_size * (N - 1)) if N > 1 else 0.0
    s = 1.0 / np.sqrt(lam[:, None] + lam[None, :])  # A^{-1/2}: A(M)_jk = (λ_j + λ_k) M_jk

    def matvec(v):
        M = s * v.reshape(D, D)
        HMH = lam[:, None] * M * lam[None, :]
        q = np.einsum("nj,jk,nk->n", Z, M, Z)  # z_iᵀ M z_i
        SM = c * c * (Z.T * q) @ Z / N  # (1/N) Σ h_i M h_i
        return (s * ((1 - f) * HMH + f * SM)).reshape(-1)

    op = sla.LinearOperator((D * D, D * D), matvec=matvec, dtype=np.float64)
    top = sla.eigsh(op, k=1, which="LA", v0=np.ones(D * D), return_eigenvectors=False)[0]
    return float(1.0 / top)


def largest_stable_lr(lrs, final_losses, initial_loss: float, blowup: float = 10.0) -> float:
    """The largest ε in ``lrs`` whose run ended with a cost ≤ blowup × the initial cost
    (nan if none did).  ``lrs`` and ``final_losses`` are parallel sequences."""
    lrs, final = np.asarray(lrs, dtype=float), np.asarray(final_losses, dtype=float)
    _check("final_losses", final.shape, final.shape == lrs.shape, f"the shape of lrs, {lrs.shape}")
    _check("blowup", blowup, blowup >= 1, ">= 1")
    ok = np.isfinite(final) & (final <= blowup * initial_loss)
    return float(lrs[ok].max()) if ok.any() else math.nan


class StabilityResult(NamedTuple):
    """``final_losses[b, l]``: the median over ``seeds`` of the cost after ``steps`` steps at
    batch_sizes[b], lrs[l]; ``initial_loss``: J(Θ₀ = 0); ``optimal_loss``: J* = min J (least
    squares); ``largest_stable``: per B, the largest ε whose median final cost is ≤ ``blowup`` ×
    the initial cost; ``predicted``: per B, the mean-square limit :func:`critical_lr`."""
    batch_sizes: np.ndarray
    lrs: np.ndarray
    final_losses: np.ndarray
    initial_loss: float
    largest_stable: np.ndarray
    predicted: np.ndarray
    steps: int
    blowup: float
    optimal_loss: float = math.nan
    seeds: tuple = (0,)

    def best_lr(self, b: int) -> float:
        """The ε of the grid with the least median final cost at batch_sizes[b]."""
        return float(self.lrs[int(np.argmin(self.final_losses[b]))])


@shared_result
def stability_experiment(batch_sizes=STABILITY_BATCH_SIZES, lrs=STABILITY_LRS,
                         steps: int = STABILITY_STEPS, blowup: float = STABILITY_BLOWUP,
                         n: int = 1024, seed: int = 0, seeds=STABILITY_SEEDS) -> StabilityResult:
    """For each B, SGD with every ε of ``lrs`` for ``steps`` steps on linear least squares
    (:func:`least_squares_data`, drawn with ``seed``), once per batch order in ``seeds``; a
    (B, ε) counts as stable if the median final cost is at most ``blowup`` × the initial cost.
    Also the mean-square prediction :func:`critical_lr` and the optimal cost J*."""
    sizes = _check_batch_sizes(batch_sizes)
    _check("seeds", seeds, len(seeds) >= 1 and all(_is_int(s) and s >= 0 for s in seeds),
           "a non-empty sequence of ints >= 0")
    X, Y = least_squares_data(n, seed)
    final = np.stack([np.median(np.stack([sgd_least_squares(X, Y, B, lrs, steps, s) for s in seeds]), axis=0)
                      for B in sizes])
    J0 = float((Y ** 2).mean())  # Θ₀ = 0 predicts 0
    Xt = _with_bias(X.double())
    Theta = torch.linalg.lstsq(Xt, Y.double()).solution
    J_star = float(((Xt @ Theta - Y) ** 2).mean())
    largest = np.array([largest_stable_lr(lrs, f, J0, blowup) for f in final])
    predicted = np.array([critical_lr(X, B, Y.shape[1]) for B in sizes])
    return StabilityResult(np.array(sizes), np.asarray(lrs, dtype=float), final, J0, largest,
                           predicted, steps, blowup, J_star, tuple(seeds))


def plot_stability_map(stab: StabilityResult, ax=None):
    """The median final cost over the (B, ε) grid as a colour map, relative to J(Θ₀): blue where
    SGD lowered the cost (darkest at J*), white where it ended where it started, red where it
    raised it, saturated at ``blowup`` ×; the measured and predicted limits on top.  Returns ax."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import TwoSlopeNorm

    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 5))
    ratio = np.log10(stab.final_losses / stab.initial_loss)
    lo, hi = math.log10(stab.optimal_loss / stab.initial_loss), math.log10(stab.blowup)
    step = np.log2(stab.lrs[1] / stab.lrs[0])
    mesh = ax.pcolormesh(np.arange(len(stab.batch_sizes) + 1) - 0.5,
                         np.log2(stab.lrs[0]) - step / 2 + np.arange(len(stab.lrs) + 1) * step,
                         np.clip(ratio, lo, hi).T, cmap="RdBu_r", norm=TwoSlopeNorm(0.0, lo, hi))
    cb = ax.figure.colorbar(mesh, ax=ax)
    cb.set_label(r"$\log_{10}$ (median final cost / initial cost)")
    x = np.arange(len(stab.batch_sizes))
    ax.plot(x, np.log2(stab.largest_stable), "ko", label="largest stable ε (measured)")
    ax.plot(x, np.log2(stab.predicted), "y-", lw=2, label=r"$\epsilon_\mathrm{crit}(B)$ (mean-square limit)")
    ax.plot(x, np.log2([stab.best_lr(b) for b in range(len(x))]), "g^",
            label="least median final cost")
    ax.set_xticks(x, [str(b) for b in stab.batch_sizes])
    ax.set_xlabel("batch size B")
    ax.set_ylabel(r"$\log_2$ learning rate ε")
    ax.legend(loc="lower right", fontsize="small")
    return ax


# ---------------------------------------------------------------------------------------------
# Minibatches must be random

class OrderingRun(NamedTuple):
    """One run of :func:`ordering_experiment`: ``step_losses`` (the minibatch loss per step),
    ``epoch_losses`` (J on the whole training set after each epoch), ``test_loss`` at the end."""
    step_losses: np.ndarray
    epoch_losses: np.ndarray
    test_loss: float


@shared_result
def ordering_experiment(epochs: int = 5, batch_size: int = 64, lr: float = 0.1,
                        seed: int = 0) -> dict[str, OrderingRun]:
    """The same SGD (same θ₀, ε, B) on MNIST-1D with three orders of the examples:

    * ``"sorted by class"``: all 0s, then all 1s, …, the same every epoch;
    * ``"shuffled once"``: one random permutation, then the same order every epoch;
    * ``"reshuffled every epoch"``: a fresh permutation each epoch (``train``'s default).
    """
    _check_pos_int("epochs", epochs)
    _check_pos_int("batch_size", batch_size)
    _, data = mnist1d_mlp(seed=seed)
    X, y = data.train
    by_class = torch.argsort(y, stable=True)
    once = torch.randperm(len(X), generator=torch.Generator().manual_seed(seed + 1))
    setups = {"sorted by class": ((X[by_class], y[by_class]), False),
              "shuffled once": ((X[once], y[once]), False),
              "reshuffled every epoch": ((X, y), True)}
    runs = {}
    for label, (train_set, shuffle) in setups.items():
        model = mnist1d_mlp(seed=seed)[0]
        hist = train(model, _CE, SGD(model.parameters(), lr=lr), train_set, epochs=epochs,
                     batch_size=batch_size, shuffle=shuffle, val_data=(X, y), seed=seed)
        h = hist.to_numpy()
        runs[label] = OrderingRun(h["steps"]["loss"], h["epochs"]["val_loss"],
                                  evaluate(model, _CE, data.test)["loss"])
    return runs


# ---------------------------------------------------------------------------------------------
# Single-pass SGD follows the gradient of the generalization error

def gaussian_task(dim: int = 20, separation: float = 2.0) -> GaussianClassificationTask:
    """Two equally likely Gaussian classes N(∓x̄, I) in ``dim`` dimensions, ‖2x̄‖ = separation.

    The true risk of any linear classifier is known in closed form (see
    :class:`course_lib.data.GaussianClassificationTask`); logistic regression contains the
    Bayes classifier, so the least logistic risk is that of ``task.bayes_classifier()``.
    """
    _check_pos_int("dim", dim)
    _check("separation", separation, separation > 0, "> 0")
    mu = np.full(dim, separation / (2 * math.sqrt(dim)))
    return GaussianClassificationTask(-mu, mu)


class FreshSamples:
    """An iterable of ``n_batches`` minibatches of ``batch_size`` new examples from ``task``.

    Each pass draws new ones (from ``generator``, which advances), so ``train`` on it sees
    every example once: a stream from p_data, not a fixed training set.
    """

    def __init__(self, task, batch_size: int, n_batches: int, generator: torch.Generator):
        _check_pos_int("batch_size", batch_size)
        _check_pos_int("n_batches", n_batches)
        self.task, self.batch_size, self.n_batches, self.generator = task, batch_size, n_batches, generator

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self):
        for _ in range(self.n_batches):
            yield self.task.sample(self.batch_size, self.generator)


def _linear_params(model: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    _check("model", type(model).__name__, len(linear) == 1 and linear[0].out_features == 1,
           "a model with a single nn.Linear(d, 1) layer")
    return linear[0].weight.detach()[0], linear[0].bias.detach()[0]


def _true_risk(task, model) -> float:
    return task.true_nll_risk(*_linear_params(model))


class GeneralizationResult(NamedTuple):
    """Risk curves at ``steps`` (0 = θ₀), for SGD on a stream (``stream_*``) and on a fixed
    sample of n_train examples (``fixed_*``).  ``*_true``: the true logistic risk J*(θ);
    ``stream_batch``: mean minibatch loss since the previous checkpoint (each batch fresh);
    ``fixed_train``: the cost on the fixed sample.  ``min_risk``: the least true risk."""
    steps: np.ndarray
    stream_true: np.ndarray
    stream_batch: np.ndarray
    fixed_true: np.ndarray
    fixed_train: np.ndarray
    min_risk: float
    n_train: int


@shared_result
def generalization_experiment(n_train: int = 40, batch_size: int = 10, lr: float = 0.1,
                              steps: int = 500, n_checkpoints: int = 25, dim: int = 20,
                              seed: int = 0, return_models: bool = False):
    """Logistic regression on :func:`gaussian_task` trained by SGD two ways, same θ₀, ε, B:

    * a stream: every step sees ``batch_size`` new examples (``steps × batch_size`` in all);
    * a fixed sample of ``n_train`` examples, visited for as many steps (many epochs).

    Training goes through ``train`` in ``n_checkpoints`` chunks; after each, the true risk is
    computed exactly.  With ``return_models=True`` also returns (stream model, fixed model,
    (X_fixed, y_fixed)).
    """
    for name, v in (("n_train", n_train), ("batch_size", batch_size), ("steps", steps),
                    ("n_checkpoints", n_checkpoints)):
        _check_pos_int(name, v)
    _check("steps", steps, steps % n_checkpoints == 0, f"a multiple of n_checkpoints = {n_checkpoints}")
    _check("steps", steps, (steps // n_checkpoints) * batch_size % n_train == 0,
           "such that each chunk of steps // n_checkpoints steps is a whole number of epochs")
    task = gaussian_task(dim)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    X_fix, y_fix = task.sample(n_train, gen)
    stream = FreshSamples(task, batch_size, steps // n_checkpoints, gen)
    models = [mlp(dim, (), 1, generator=torch.Generator().manual_seed(seed)) for _ in range(2)]
    opts = [SGD(m.parameters(), lr=lr) for m in models]
    r0 = _true_risk(task, models[0])
    rows = [(0, r0, math.nan, r0, _full_loss(models[1], loss_fn, X_fix, y_fix))]
    epochs_per_chunk = (steps // n_checkpoints) * batch_size // n_train
    for k in range(1, n_checkpoints + 1):
        hist = train(models[0], loss_fn, opts[0], stream, epochs=1, metrics=(), seed=seed)
        train(models[1], loss_fn, opts[1], (X_fix, y_fix), epochs=epochs_per_chunk,
              batch_size=batch_size, metrics=(), seed=seed + k)  # a new order for each chunk
        rows.append((k * (steps // n_checkpoints), _true_risk(task, models[0]),
                     float(np.mean(hist.steps["loss"])), _true_risk(task, models[1]),
                     _full_loss(models[1], loss_fn, X_fix, y_fix)))
    cols = [np.array(c) for c in zip(*rows)]
    result = GeneralizationResult(cols[0], cols[1], cols[2], cols[3], cols[4],
                                  task.true_nll_risk(*task.bayes_classifier()), n_train)
    return (result, models[0], models[1], (X_fix, y_fix)) if return_models else result


def true_risk_gradient(task, model: nn.Module, h: float = 1e-5) -> np.ndarray:
    """∇J*(θ) of the true logistic risk at the linear model's θ = (w, b), by central differences
    (J* is computed by quadrature, smooth in θ).  Flat, in the order (w, b)."""
    _check("h", h, h > 0, "> 0")
    w, b = _linear_params(model)
    theta = np.concatenate([w.double().numpy(), [float(b)]])
    out = np.empty_like(theta)
    for j in range(len(theta)):
        e = np.zeros_like(theta)
        e[j] = h
        out[j] = (task.true_nll_risk(theta[:-1] + e[:-1], theta[-1] + e[-1])
                  - task.true_nll_risk(theta[:-1] - e[:-1], theta[-1] - e[-1])) / (2 * h)
    return out


class GradientBias(NamedTuple):
    """Relative errors ‖ĝ − ∇J*‖/‖∇J*‖ of two gradient estimates at one θ: from fresh samples
    (``fresh``: the mean of n_fresh / batch_size minibatch gradients) and from the fixed
    training sample (``reused``)."""
    fresh: float
    reused: float


def gradient_bias(task, model: nn.Module, X_train: torch.Tensor, y_train: torch.Tensor,
                  n_fresh: int = 100_000, seed: int = 1) -> GradientBias:
    """Compare, at the model's θ, the gradient of the loss on fresh samples and on (X_train,
    y_train) with the true ∇J*.  The average of many minibatch gradients equals the gradient of
    the mean loss over all their examples, so one pass over n_fresh new examples gives it."""
    _check_pos_int("n_fresh", n_fresh)
    loss_fn = nn.BCEWithLogitsLoss()
    ref = true_risk_gradient(task, model)
    model64 = mlp(len(ref) - 1, (), 1).double()
    model64.load_state_dict(model.state_dict())

    def grad_on(X, y):
        return _flat_grad(model64, loss_fn, X.double(), y.double()).numpy()

    X_new, y_new = task.sample(n_fresh, torch.Generator().manual_seed(seed))
    norm = np.linalg.norm(ref)
    return GradientBias(float(np.linalg.norm(grad_on(X_new, y_new) - ref) / norm),
                        float(np.linalg.norm(grad_on(X_train, y_train) - ref) / norm))


# ---------------------------------------------------------------------------------------------
# The widget: loss against examples seen

@functools.lru_cache(maxsize=32)
def loss_vs_examples(batch_size: int, lr: float, examples: int = 16000, n_points: int = 16,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(examples seen, cost J on the 4000 MNIST-1D training examples) for SGD with this B and ε,
    from θ₀ of :func:`mnist1d_mlp`, until ``examples`` examples have been processed.

    J is evaluated at about ``n_points`` evenly spaced steps (and at θ₀).  Cached: the arrays
    returned are read-only.  A run that diverges ends where it diverged.
    """
    _check_pos_int("batch_size", batch_size)
    _check_pos_int("examples", examples)
    _check_pos_int("n_points", n_points)
    _check("lr", lr, lr > 0, "> 0")
    model, data = mnist1d_mlp(seed=seed)
    X, y = data.train
    _check("batch_size", batch_size, batch_size <= len(X), f"<= {len(X)}")
    steps = max(1, examples // batch_size)
    J0 = _full_loss(model, _CE, X, y)
    try:
        hist = train(model, _CE, SGD(model.parameters(), lr=lr), (X, y),
                     epochs=steps * batch_size // len(X) + 1, max_steps=steps, batch_size=batch_size,
                     val_data=(X, y), eval_every=max(1, steps // n_points), seed=seed)
    except TrainingDiverged as err:
        hist = err.history
    ev = hist.to_numpy()["evals"]
    seen = np.concatenate([[0.0], ev["step"] * float(batch_size)])
    loss = np.concatenate([[J0], ev["val_loss"]])
    for a in (seen, loss):
        a.setflags(write=False)
    return seen, loss


# ---------------------------------------------------------------------------------------------
# Batch size at a tuned learning rate: examples and steps to a target cost

TUNE_BATCH_SIZES = (16, 64, 256, 1024, 4000)
TUNE_LRS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4)  # the grid ε is tuned on (factors of 2)
TUNE_SEEDS = (0, 1, 2)          # θ₀ and batch order; costs are medians over them
TUNE_EXAMPLES = 16000           # the budget: four epochs of the 4000 training examples
TUNE_TARGET = 1.6               # "reached": cost J ≤ 1.6 (J(θ₀) ≈ 2.3)
TUNE_STEPS_MIN = 60             # the study gives each B at least this many steps (B = 1024: 61 440 examples)
# The ε of TUNE_LRS with the fewest steps for the median cost to reach TUNE_TARGET, per B, found
# by tune_lr over the whole grid (tests/test_ch02_minibatch.py checks each against its two grid
# neighbours; each is interior to the grid).  The full grid's steps (inf: not reached):
#   B = 16: 645, 375, 240, 180 (0.4), 255, inf ...;  B = 64: inf, inf, 162, 96, 66 (0.8), 72, inf, inf
#   B = 256: ... inf, 47, 33 (1.6), 36, inf;  B = 1024: ... inf, 40, 33, 31 (3.2), inf (a near-tie)
#   B = 4000: ... inf, 38, 32 (1.6), 37, inf
TUNED_LRS = {16: 0.4, 64: 0.8, 256: 1.6, 1024: 3.2, 4000: 1.6}


def _median_curve(batch_size: int, lr: float, seeds, examples: int, n_points: int):
    """(examples seen, median cost over ``seeds``) of :func:`loss_vs_examples` runs, cut to the
    shortest run (a diverged run ends where it diverged)."""
    runs = [loss_vs_examples(batch_size, float(lr), examples=examples, n_points=n_points, seed=s) for s in seeds]
    n = min(len(r[1]) for r in runs)
    return runs[0][0][:n], np.median(np.stack([r[1][:n] for r in runs]), axis=0)


def tune_lr(batch_size: int, lrs=TUNE_LRS, seeds=TUNE_SEEDS, examples: int = TUNE_EXAMPLES,
            target: float = TUNE_TARGET, min_steps: int = TUNE_STEPS_MIN, n_points: int = 64) -> np.ndarray:
    """For each ε in ``lrs``: the steps the median cost over ``seeds`` needs to reach ``target``
    (inf if not within max(``examples``, ``min_steps`` × B) examples).  This is the quantity
    :func:`batch_size_study` reports, so ε is tuned for it; the runs are the study's (cached)."""
    budget = max(examples, min_steps * batch_size)
    return np.array([examples_to_reach(*_median_curve(batch_size, lr, seeds, budget, n_points), target)
                     / batch_size for lr in lrs])


class BatchSizeStudy(NamedTuple):
    """Per B of ``batch_sizes`` at its tuned ε (``lrs``): ``curves[b]`` = (examples seen, median
    cost over ``seeds``), run for max(``examples``, ``min_steps`` × B) examples; ``final`` the
    median cost after ``examples`` examples (the tuning budget); ``examples_needed`` and
    ``steps_needed``: to bring the median cost to ``target`` (inf if never)."""
    batch_sizes: np.ndarray
    lrs: np.ndarray
    curves: list
    final: np.ndarray
    examples_needed: np.ndarray
    steps_needed: np.ndarray
    target: float
    seeds: tuple


@shared_result
def batch_size_study(batch_sizes=TUNE_BATCH_SIZES, lrs=None, seeds=TUNE_SEEDS,
                     examples: int = TUNE_EXAMPLES, target: float = TUNE_TARGET,
                     min_steps: int = TUNE_STEPS_MIN, n_points: int = 64) -> BatchSizeStudy:
    """SGD on the MNIST-1D MLP of :func:`loss_vs_examples` with each B at its tuned ε
    (``TUNED_LRS`` unless ``lrs`` is given: the fewest steps to ``target``, :func:`tune_lr`),
    median cost over ``seeds`` against examples seen."""
    sizes = _check_batch_sizes(batch_sizes)
    lrs = np.array([TUNED_LRS[b] for b in sizes] if lrs is None else lrs, dtype=float)
    curves, final, E, S = [], [], [], []
    for B, lr in zip(sizes, lrs):
        seen, loss = _median_curve(B, lr, seeds, max(examples, min_steps * B), n_points)
        curves.append((seen, loss))
        final.append(np.median([loss_vs_examples(B, float(lr), examples=examples, seed=s)[1][-1]
                                for s in seeds]))
        E.append(examples_to_reach(seen, loss, target))
        S.append(E[-1] / B)
    return BatchSizeStudy(np.array(sizes), lrs, curves, np.array(final), np.array(E), np.array(S),
                          target, tuple(seeds))


class CriticalBatchFit(NamedTuple):
    """McCandlish et al. (2018)'s model S = S_min (1 + B_crit / B) fitted to measured steps:
    ``min_steps`` S_min, ``critical_batch`` B_crit (then E = E_min (1 + B / B_crit) with
    E_min = S_min B_crit), ``max_rel_error`` the largest |fitted − measured| / measured."""
    min_steps: float
    critical_batch: float
    max_rel_error: float


def fit_critical_batch(batch_sizes, steps) -> CriticalBatchFit:
    """Least squares on log S of S = S_min (1 + B_crit / B) over the (B, steps) pairs (finite
    steps only; at least 3)."""
    from scipy.optimize import least_squares

    B, S = np.asarray(batch_sizes, dtype=float), np.asarray(steps, dtype=float)
    ok = np.isfinite(S)
    _check("steps", steps, ok.sum() >= 3 and bool(np.all(S[ok] > 0)), "at least 3 finite values > 0")
    B, S = B[ok], S[ok]

    def residual(p):
        return p[0] + np.log1p(np.exp(p[1]) / B) - np.log(S)

    p = least_squares(residual, [np.log(S.min()), np.log(np.median(B))]).x
    fitted = np.exp(p[0]) * (1 + np.exp(p[1]) / B)
    return CriticalBatchFit(float(np.exp(p[0])), float(np.exp(p[1])), float(np.max(np.abs(fitted / S - 1))))


def plot_batch_size_study(study: BatchSizeStudy, axes=None):
    """The median cost against examples seen (left) and against steps (right), one curve per B
    at its tuned ε, with the target as a dotted line.  Returns the axes."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4.2), layout="constrained")
    for B, lr, (seen, loss) in zip(study.batch_sizes, study.lrs, study.curves):
        axes[0].plot(seen, loss, "-", lw=1.5, label=f"B = {B}, ε = {lr:g}")
        axes[1].plot(seen / B, loss, "-", lw=1.5, label=f"B = {B}, ε = {lr:g}")
    axes[0].set(xscale="log", xlabel="examples seen", ylabel="cost J on the 4000 training examples")
    axes[1].set(xscale="log", xlabel="steps")
    for ax in axes:
        ax.axhline(study.target, color="gray", ls=":", lw=1)
        ax.legend(fontsize="small")
    return axes


# ----------------------------------------------------------------------------- the chapter's figures
def plot_gradient_noise(result, ax=None):
    """Figure of §2.2: the measured standard error of the minibatch gradient against B with the
    prediction √(tr Σ / B), and ‖∇J‖ for scale; ``result`` from :func:`gradient_noise_experiment`."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    B = result.noise.batch_sizes
    ax.loglog(B, result.noise.std_error, "o", label="measured (30 minibatches per B)")
    ax.loglog(B, result.predicted_std, "-", label=r"predicted $\sqrt{\mathrm{tr}\,\Sigma / B}$")
    ax.axhline(result.grad_norm, color="gray", ls=":", label=r"$\|\nabla J\|$ for scale")
    ax.set_xlabel("batch size B (examples)")
    ax.set_ylabel(r"standard error $\sqrt{\mathbb{E}\|g - \nabla J\|^2}$")
    ax.set_title(f"Error falls like 1/√B (fitted slope {result.noise.slope():.2f})")
    ax.legend()
    return ax


def plot_redundancy(result, ax=None):
    """Figure of §2.3: the cost against examples processed for full-batch GD and minibatch SGD on
    redundant data; ``result`` from :func:`redundancy_experiment`."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    for label, (seen, loss) in (("full-batch GD (B = 2000)", result.gd), ("minibatch SGD (B = 20)", result.sgd)):
        ax.plot(seen[1:], loss[1:], label=label)
    ax.axhline(result.target, color="gray", ls=":", label=f"target J = {result.target}")
    ax.set_xscale("log")
    ax.set_xlabel("examples processed (gradient computations)")
    ax.set_ylabel("cost J on all 2000 examples")
    ax.set_title(f"On redundant data SGD needs {result.ratio():.0f}× fewer examples")
    ax.legend()
    return ax


def plot_time_per_update(sizes, seconds, axes=None) -> int:
    """Figure of §2.4: time per update (left) and per example (right) against B, powers of two
    and 1.5 × powers of two apart; ``seconds`` from :func:`time_per_update`.  Returns the knee:
    the smallest B whose update costs more than twice the smallest B's."""
    import matplotlib.pyplot as plt

    sizes, seconds = np.asarray(sizes), np.asarray(seconds)
    pow2 = (sizes & (sizes - 1)) == 0
    slow = seconds > 2 * seconds[0]
    knee = int(sizes[np.argmax(slow)] if slow.any() else sizes[-1])
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1, ax2 = axes
    for ax, y, unit in ((ax1, seconds * 1e3, "ms per update"), (ax2, seconds / sizes * 1e6, "µs per example")):
        ax.loglog(sizes[pow2], y[pow2], "o-", label="B a power of two")
        ax.loglog(sizes[~pow2], y[~pow2], "s", label="B = 1.5 × a power of two")
        ax.set_xlabel("batch size B")
        ax.set_ylabel(unit)
        ax.legend()
    ax1.loglog(sizes, seconds[-1] * 1e3 * sizes / sizes[-1], "k:", label="proportional to B")
    ax1.legend()
    ax1.set_title(f"Below B ≈ {knee}, an update costs about the same time")
    ax2.set_title("Per example, larger batches are cheaper, up to a point")
    ax1.figure.tight_layout()
    return knee


def plot_activation_memory(batch_sizes, bytes_per_example: int, param_bytes: int, ax=None):
    """Figure of §2.4: activation memory (B × ``bytes_per_example``, :func:`activation_bytes`)
    and parameter memory against B."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.2))
    b = np.asarray(batch_sizes)
    ax.loglog(b, b * bytes_per_example, "o-", label="activations (input + every layer's output)")
    ax.loglog(b, np.full(len(b), param_bytes), "--", label="parameters")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("memory (bytes, float32)")
    ax.set_title("Activation memory grows linearly with B; parameters do not")
    ax.legend()
    return ax


def plot_ordering(orders: dict, steps_per_epoch: int = 63, axes=None):
    """Figure of §2.6: minibatch losses over two epochs (left) and the full cost per epoch
    (right) for sorted and reshuffled data; ``orders`` from :func:`ordering_experiment`."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax1, ax2 = axes
    for label in ("sorted by class", "reshuffled every epoch"):
        ax1.plot(np.arange(1, 2 * steps_per_epoch + 1), orders[label].step_losses[:2 * steps_per_epoch], label=label)
    ax1.set_xlabel(f"step (two epochs of {steps_per_epoch} minibatches)")
    ax1.set_ylabel("minibatch loss")
    ax1.set_title("Sorted minibatches look easy, one class at a time")
    ax1.legend()
    for label, run in orders.items():
        ax2.plot(np.arange(1, len(run.epoch_losses) + 1), run.epoch_losses, "o-", label=label)
    ax2.set_xticks(range(1, len(run.epoch_losses) + 1))
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("cost J on all 4000 training examples")
    ax2.set_title("Trained on sorted data, the model does not learn")
    ax2.legend()
    ax1.figure.tight_layout()
    return axes


def plot_generalization(result, ax=None):
    """Figure of §2.7: true risk and training cost along SGD on a stream of fresh examples and on
    a fixed training set; ``result`` from :func:`generalization_experiment`."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.4))
    ax.plot(result.steps, result.stream_true, "C0-", label="stream: true risk J*")
    ax.plot(result.steps[1:], result.stream_batch[1:], "C0:", label="stream: minibatch loss (fresh data)")
    ax.plot(result.steps, result.fixed_true, "C1-", label=f"fixed {result.n_train} examples: true risk J*")
    ax.plot(result.steps, result.fixed_train, "C1--", label=f"fixed {result.n_train} examples: training cost")
    ax.axhline(result.min_risk, color="gray", ls=":", label="least possible true risk")
    ax.set_xlabel("SGD step (B = 10)")
    ax.set_ylabel("logistic loss (nats)")
    ax.set_title("Fresh examples drive the true risk down; reused ones open a gap")
    ax.legend(fontsize="small")
    return ax


def plot_loss_vs_examples(batch_size: int, lr: float, reference=(64, 0.1), ax=None):
    """The chapter's widget: the cost against examples seen for minibatch SGD with
    (``batch_size``, ``lr``), against the reference (B, ε) = ``reference`` in gray
    (:func:`loss_vs_examples`)."""
    import matplotlib.pyplot as plt

    ref_seen, ref_loss = loss_vs_examples(*reference)
    seen, loss = loss_vs_examples(batch_size, lr)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4.2))
    ax.plot(ref_seen, ref_loss, color="gray", label=f"B = {reference[0]}, ε = {reference[1]:g}")
    ax.plot(seen, loss, "o-", ms=3, label=f"B = {batch_size}, ε = {lr:.3g}")
    ax.set_xlabel("examples seen")
    ax.set_ylabel("cost J on the 4000 training examples")
    ax.set_ylim(0, 4)
    ax.set_title(f"After {seen[-1]:.0f} examples: J = {loss[-1]:.3g}")
    ax.legend()
    return ax
