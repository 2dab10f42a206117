r"""Normalization and skip connections: chapter 18.

==================================  ===========================================================
``batch_norm``                      batch normalization from its equations (Ioffe & Szegedy,
                                    2015), train mode (batch statistics, running averages
                                    updated) and eval mode (running statistics)
``layer_norm``                      layer normalization from its equations (Ba et al., 2016)
``weight_norm_weight``              w = g v / ‖v‖ per output unit (Salimans & Kingma, 2016)
``bn_mismatch``                     train-mode BN outputs vs those with the exact training-set
                                    statistics, on MNIST-1D, per batch size B (medians over
                                    seeds); ``bn_mismatch_predicted`` its first-order theory
``batch_dependence``                how much one example's output moves when the rest of its
                                    batch is replaced: BN, LN, weight norm
``scale_invariance``                L(cW) = L(W), ⟨∇L, W⟩ = 0, c‖∇L(cW)‖ = ‖∇L(W)‖ for a
                                    weight followed by BN (float64)
``equilibrium_run``                 SGD + weight decay on a BN network: ‖W‖_t, its angular
                                    step and the predicted equilibrium, step by step
``equilibrium_experiment``          the same from a small and a large ‖W₀‖, several seeds
``init_gradient_norms``             ‖∂J/∂W_l‖ per layer at θ₀ of a deep plain/residual network,
                                    with and without normalization (median over seeds)
``depth_training``                  each architecture of ``ARCHS`` trained on its grid of ε,
                                    several seeds → medians and the best ε
``plot_*``                          the chapter's figures; ``plot_gradient_flow`` is its widget
==================================  ===========================================================

Settings are module constants, so ``chapters/18_normalization_and_skip_connections.ipynb`` and
``tests/test_ch18_normalization.py`` run the same experiments.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from course_lib.data import mnist1d
from course_lib.models import DeepMLP
from course_lib.train import evaluate, train
from course_lib.utils import shared_result

# ---- settings
MISMATCH_BATCH_SIZES = (2, 8, 32, 128, 512)
MISMATCH_SEEDS = (0, 1, 2)
EQ_LR, EQ_WD, EQ_STEPS, EQ_BATCH = 0.2, 0.02, 600, 128  # ε, λ, updates, B of section 18.3
EQ_SCALES = (0.25, 4.0)  # ‖W₀‖ multiplied by these: start below and above the equilibrium
EQ_SEEDS = (0, 1, 2)
EQ_AVG = 100  # the trailing window (updates) over which E‖g̃‖² is averaged
DEPTH, WIDTH = 50, 32
ARCHS = {  # name -> (residual, norm)
    "plain": (False, "none"),
    "plain + BN": (False, "batch"),
    "residual": (True, "none"),
    "residual + BN": (True, "batch"),
}
DEPTH_LRS = {  # each architecture's grid of ε (SGD, α = 0.9); the best must be inside (for
    # those that train)
    "plain": (0.003, 0.01, 0.03),
    "plain + BN": (0.001, 0.003, 0.01),
    "residual": (0.001, 0.003, 0.01),
    "residual + BN": (0.003, 0.01, 0.03, 0.1),
}
DEPTH_SEEDS = (0, 1, 2)
DEPTH_STEPS, DEPTH_BATCH, DEPTH_MOMENTUM = 40, 128, 0.9
TRAINED_ARCHS = ("plain + BN", "residual", "residual + BN")  # "plain": its θ₀ gradients suffice
EVAL_EXAMPLES = 1000  # the cost after training is measured on the first 1000 training examples
TRAINS_BELOW = 2.2  # a best median cost above this (chance is ln 10 ≈ 2.30): "does not train"
GRAD_SEEDS = (0, 1, 2)
GRAD_EXAMPLES = 512


# ---- 18.1-18.2: the normalizations from their equations
def batch_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
               running_mean: torch.Tensor, running_var: torch.Tensor, *, training: bool,
               momentum: float = 0.1, eps: float = 1e-5) -> torch.Tensor:
    """Batch normalization of x (B, D), feature by feature (Ioffe & Szegedy, 2015, Alg. 1).

    training=True:  x̄ = mean over the batch, var = biased variance over the batch,
                    y = γ (x − x̄) / √(var + δ) + β, and the running averages move
                    toward the batch's: r ← (1 − momentum) r + momentum · stat (the variance
                    in its unbiased form, B/(B−1) var), in place, as ``nn.BatchNorm1d`` does.
    training=False: the same with the running mean and variance instead of x̄, var.
    """
    if training:
        mean = x.mean(0)
        var = x.var(0, unbiased=False)
        with torch.no_grad():
            n = x.shape[0]
            running_mean.mul_(1 - momentum).add_(momentum * mean)
            running_var.mul_(1 - momentum).add_(momentum * var * n / max(n - 1, 1))
    else:
        mean, var = running_mean, running_var
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def layer_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
               eps: float = 1e-5) -> torch.Tensor:
    """Layer normalization of x (B, D): each example over its own D features (Ba et al., 2016)."""
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    return gamma * (x - mean) / torch.sqrt(var + eps) + beta


def weight_norm_weight(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Weight normalization: row j of the weight is g_j v_j / ‖v_j‖ (Salimans & Kingma, 2016)."""
    return g.reshape(-1, 1) * v / v.norm(dim=1, keepdim=True)


def check_against_torch(seed: int = 0) -> dict:
    """max |ours − torch| in float64 on 64 MNIST-1D inputs: BN in train mode (outputs and the
    updated running statistics, after three batches), BN in eval mode, LN, and weight norm's
    weight (``torch.nn.utils.parametrizations.weight_norm``, dim 0)."""
    x = _features()
    torch.manual_seed(seed)
    bn = nn.BatchNorm1d(40).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    gamma, beta = bn.weight.detach(), bn.bias.detach()
    rm, rv = torch.zeros(40, dtype=torch.float64), torch.ones(40, dtype=torch.float64)
    diffs = {"batch norm, train": 0.0, "running statistics": 0.0}
    with torch.no_grad():
        for k in range(3):
            xb = x[64 * k:64 * (k + 1)]
            ours = batch_norm(xb, gamma, beta, rm, rv, training=True)
            diffs["batch norm, train"] = max(diffs["batch norm, train"],
                                             float((ours - bn.train()(xb)).abs().max()))
        diffs["running statistics"] = float(max((rm - bn.running_mean).abs().max(),
                                                (rv - bn.running_var).abs().max()))
        xb = x[192:256]
        diffs["batch norm, eval"] = float((batch_norm(xb, gamma, beta, rm, rv, training=False)
                                           - bn.eval()(xb)).abs().max())
        ln = nn.LayerNorm(40).double()
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-0.5, 0.5)
        diffs["layer norm"] = float((layer_norm(xb, ln.weight, ln.bias) - ln(xb)).abs().max())
        wn = nn.utils.parametrizations.weight_norm(nn.Linear(40, 16).double())
        g = wn.parametrizations.weight.original0
        v = wn.parametrizations.weight.original1
        g.mul_(2.0)
        diffs["weight norm"] = float((weight_norm_weight(g, v) - wn.weight).abs().max())
    return diffs


def _features(seed: int = 0) -> torch.Tensor:
    """MNIST-1D training inputs (4000, 40), float64, the data the BN experiments normalize."""
    return mnist1d(seed=seed).X_train.double()


def bn_mismatch(batch_sizes=MISMATCH_BATCH_SIZES, seeds=MISMATCH_SEEDS) -> dict:
    """Root-mean-square difference between BN's train-mode and eval-mode outputs, per B.

    The running statistics are the exact population mean and (unbiased) variance of the 4000
    training inputs, what the running averages estimate; train mode uses each batch's own.
    For each seed the training set is shuffled and cut into batches of B; the RMS difference is
    taken over all outputs of all batches.  Returns {B: median over seeds}.
    """
    x = _features()
    out = {}
    for b in batch_sizes:
        values = []
        for seed in seeds:
            perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
            xs = x[perm][: len(x) // b * b].reshape(-1, b, x.shape[1])  # (batches, B, D)
            mean, var = xs.mean(1, keepdim=True), xs.var(1, unbiased=False, keepdim=True)
            train_out = (xs - mean) / torch.sqrt(var + 1e-5)
            eval_out = (xs - x.mean(0)) / torch.sqrt(x.var(0) + 1e-5)
            values.append(float(((train_out - eval_out) ** 2).mean().sqrt()))
        out[b] = float(np.median(values))
    return out


def bn_mismatch_predicted(batch_sizes=MISMATCH_BATCH_SIZES) -> dict:
    """√B · RMS(train − eval) predicted to first order in the batch statistics' errors.

    Per feature, in units of the population's standard deviation σ, with a = (x̄_B − μ)/σ and
    s = √var_B / σ, one example's difference is (z − a)/s − z; its mean square over the batch is
    exactly (1 − s)² + a².  Drawing the batch without replacement from the m training inputs,
    E a² = (1/B)(m − B)/(m − 1), and E(1 − s)² ≈ Var(s²)/4 ≈ (kurt − 1)/(4B) (kurt the feature's
    kurtosis, 3 for a Gaussian; the same finite-population factor applied).  So
    B · MS ≈ (1 + (kurt − 1)/4)(m − B)/(m − 1), averaged over the features: {B: √ of that}."""
    x = _features()
    z = (x - x.mean(0)) / x.std(0, unbiased=False)
    per_feature = float((1 + ((z ** 4).mean(0) - 1) / 4).mean())
    m = len(x)
    return {b: math.sqrt(per_feature * (m - b) / (m - 1)) for b in batch_sizes}


def batch_dependence(batch_size: int = 8, seed: int = 0) -> dict:
    """Largest change of example 0's output when the other B − 1 examples of its batch are
    replaced by others, for a layer Linear → BN (train mode), Linear → LN and a weight-normed
    Linear (float64, same Linear).  BN's is order 1; LN's and weight norm's are exactly 0."""
    x = _features()
    first = x[:1]
    rest_a, rest_b = x[1:batch_size], x[batch_size:2 * batch_size - 1]
    torch.manual_seed(seed)
    lin = nn.Linear(40, 16).double()
    layers = {
        "batch norm": nn.Sequential(lin, nn.BatchNorm1d(16).double()),
        "layer norm": nn.Sequential(lin, nn.LayerNorm(16).double()),
        "weight norm": nn.utils.parametrizations.weight_norm(nn.Linear(40, 16).double()),
    }
    out = {}
    for name, layer in layers.items():
        layer.train()
        with torch.no_grad():
            ya = layer(torch.cat([first, rest_a]))[0]
            yb = layer(torch.cat([first, rest_b]))[0]
        out[name] = float((ya - yb).abs().max())
    return out


# ---- 18.3: scale invariance and the effective learning rate
def _bn_net(seed: int, width: int = 32) -> nn.Sequential:
    """Linear(40, width, no bias) → BN → ReLU → Linear(width, 10): W = net[0].weight is
    scale-invariant (BN in train mode removes any scale of its input)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(40, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
                         nn.Linear(width, 10))


def scale_invariance(c: float = 3.0, seed: int = 0) -> dict:
    """For W followed by BN, in float64 on one batch of 256: J(cW)/J(W) − 1,
    ⟨∇J(W), W⟩ / (‖∇J‖‖W‖) (the cosine, 0 if ∇J ⟂ W), and c‖∇J(cW)‖ / ‖∇J(W)‖ − 1."""
    split = mnist1d()
    x, y = split.X_train[:256].double(), split.y_train[:256]
    net = _bn_net(seed).double().train()
    w = net[0].weight

    def loss_grad(scale):
        with torch.no_grad():
            net[0].weight.copy_(w0 * scale)
        loss = F.cross_entropy(net(x), y)
        (grad,) = torch.autograd.grad(loss, w)
        return float(loss.detach()), grad

    w0 = w.detach().clone()
    l1, g1 = loss_grad(1.0)
    lc, gc = loss_grad(c)
    return {"loss_ratio_minus_1": lc / l1 - 1,
            "cosine": float((g1 * w0).sum() / (g1.norm() * w0.norm())),
            "grad_ratio_minus_1": float(c * gc.norm() / g1.norm()) - 1}


@dataclass
class EquilibriumRun:
    """Per update t = 1..T: ‖W_t‖, the angle (radians) between W_{t−1} and W_t, ‖g̃_t‖² =
    ‖∇_W J‖²‖W‖² (the gradient at W/‖W‖), the predicted equilibrium norm
    (ε Ḡ_t / (2λ − ελ²))^{1/4} with Ḡ_t the mean of ‖g̃‖² over the last ``EQ_AVG`` updates,
    and the minibatch loss."""
    norm: np.ndarray
    angle: np.ndarray
    g_tilde_sq: np.ndarray
    predicted_norm: np.ndarray
    loss: np.ndarray


def equilibrium_run(scale: float, seed: int, lr: float = EQ_LR, weight_decay: float = EQ_WD,
                    steps: int = EQ_STEPS, batch_size: int = EQ_BATCH) -> EquilibriumRun:
    """SGD (no momentum) with weight decay on the BN network of :func:`_bn_net`, ‖W₀‖ × scale.

    Our own loop, because the quantities of interest are read between the steps.  The update
    is W ← W − ε(∇J + λW); since ∇J ⟂ W, ‖W_{t+1}‖² = (1 − ελ)²‖W_t‖² + ε²‖g̃_t‖²/‖W_t‖²,
    whose fixed point is ‖W‖⁴ = ε‖g̃‖² / (2λ − ελ²).
    """
    split = mnist1d()
    x_all, y_all = split.X_train, split.y_train
    net = _bn_net(seed)
    with torch.no_grad():
        net[0].weight.mul_(scale)
    w = net[0].weight
    params = list(net.parameters())
    gen = torch.Generator().manual_seed(seed)
    norms, angles, gts, losses = [], [], [], []
    perm = torch.randperm(len(x_all), generator=gen)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > len(x_all):
            perm, pos = torch.randperm(len(x_all), generator=gen), 0
        idx = perm[pos:pos + batch_size]
        pos += batch_size
        loss = F.cross_entropy(net(x_all[idx]), y_all[idx])
        for p in params:
            p.grad = None
        loss.backward()
        before = w.detach().clone()
        gts.append(float(w.grad.norm() ** 2 * before.norm() ** 2))
        with torch.no_grad():  # torch.optim.SGD's step (no momentum), the same two operations:
            for p in params:   # written out, it spares the solutions torch.optim's import (1 s)
                p.add_(p.grad.add(p, alpha=weight_decay), alpha=-lr)
        after = w.detach()
        cos = float((before * after).sum() / (before.norm() * after.norm()))
        angles.append(math.acos(min(1.0, cos)))
        norms.append(float(after.norm()))
        losses.append(loss.item())
    gts = np.array(gts)
    avg = np.array([gts[max(0, t + 1 - EQ_AVG):t + 1].mean() for t in range(len(gts))])
    denominator = 2 * weight_decay - lr * weight_decay ** 2
    predicted = (lr * avg / denominator) ** 0.25 if denominator > 0 else np.full_like(avg, np.nan)
    return EquilibriumRun(np.array(norms), np.array(angles), gts, predicted, np.array(losses))


@shared_result
def equilibrium_experiment(scales=EQ_SCALES, seeds=EQ_SEEDS, steps: int = EQ_STEPS) -> dict:
    """{scale: [EquilibriumRun per seed]} and, per start (scale), medians over seeds of: ‖W‖ /
    predicted norm and the RMS angular step / √(2ελ) (the equilibrium angular step, Li & Arora,
    2020), both over the last ``EQ_AVG`` updates; the first angular step; the final ‖W‖; and
    ln(‖W_1‖ / predicted final norm) / (ελ), the number of updates that shrinking by (1 − ελ)
    per update alone needs to bring ‖W‖ down to the equilibrium (meaningful for a start above it).

    The ratios are reported per start, not pooled: a start below the equilibrium reaches it
    within a few hundred updates, one far above it only after about the last number of updates,
    and a median over both kinds of run would describe neither."""
    runs = {s: [equilibrium_run(s, seed, steps=steps) for seed in seeds] for s in scales}
    tail = slice(-EQ_AVG, None)

    def per_start(f):
        return {s: float(np.median([f(r) for r in rs])) for s, rs in runs.items()}

    return {"runs": runs,
            "norm_ratio": per_start(lambda r: np.mean(r.norm[tail] / r.predicted_norm[tail])),
            "angle_ratio": per_start(lambda r: np.sqrt(np.mean(r.angle[tail] ** 2))
                                     / math.sqrt(2 * EQ_LR * EQ_WD)),
            "first_angle": per_start(lambda r: r.angle[0]),
            "final_norm": per_start(lambda r: r.norm[-1]),
            "shrink_updates": per_start(lambda r: math.log(r.norm[0] / r.predicted_norm[-1])
                                        / (EQ_LR * EQ_WD))}


# ---- 18.4: depth, skips and normalization
def deep_net(arch: str, seed: int, depth: int = DEPTH, width: int = WIDTH,
             branch_scale: float = 1.0) -> DeepMLP:
    """The chapter's deep network of architecture ``arch`` (a key of ``ARCHS`` or residual/norm
    given as a tuple), θ₀ drawn from ``seed``, in float64: a 50-layer network amplifies the last
    bits of float32 rounding (which differ between CPU kernel sets) into visible differences of
    its training loss, float64's last bits stay invisible."""
    residual, norm = ARCHS[arch] if isinstance(arch, str) else arch
    return DeepMLP(40, width, depth, 10, residual=residual, norm=norm, branch_scale=branch_scale,
                   generator=torch.Generator().manual_seed(seed)).double()


def layer_gradient_norms(model: DeepMLP, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """‖∂J/∂W_l‖ (Frobenius) of each block's weight, l = 1..depth, on (x, y), train mode."""
    model.train()
    loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(loss, [b.linear.weight for b in model.blocks])
    return np.array([float(g.norm()) for g in grads])


def init_gradient_norms(archs=tuple(ARCHS), seeds=GRAD_SEEDS, depth: int = DEPTH) -> dict:
    """{arch: median over seeds of ‖∂J/∂W_l‖, l = 1..depth} at θ₀, on ``GRAD_EXAMPLES`` examples."""
    split = mnist1d()
    x, y = split.X_train[:GRAD_EXAMPLES].double(), split.y_train[:GRAD_EXAMPLES]
    return {a: np.median([layer_gradient_norms(deep_net(a, s, depth), x, y) for s in seeds], axis=0)
            for a in archs}


def train_deep(arch: str, lr: float, seed: int, steps: int = DEPTH_STEPS) -> float:
    """Train the deep network with SGD (momentum ``DEPTH_MOMENTUM``) for ``steps`` updates of
    B = ``DEPTH_BATCH`` (float64); return the cost on the first ``EVAL_EXAMPLES`` training
    examples afterwards (eval mode; inf if it diverged)."""
    split = mnist1d()
    data = (split.X_train.double(), split.y_train)
    model = deep_net(arch, seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=DEPTH_MOMENTUM, foreach=True)
    try:
        train(model, nn.CrossEntropyLoss(), opt, data, epochs=10 ** 6, max_steps=steps,
              batch_size=DEPTH_BATCH, seed=seed)
    except FloatingPointError:
        return math.inf
    subset = (data[0][:EVAL_EXAMPLES], data[1][:EVAL_EXAMPLES])
    loss = evaluate(model, nn.CrossEntropyLoss(), subset)["loss"]
    return loss if math.isfinite(loss) else math.inf


@shared_result
def depth_training(archs=TRAINED_ARCHS, seeds=DEPTH_SEEDS, steps: int = DEPTH_STEPS) -> dict:
    """Each architecture on its grid ``DEPTH_LRS``, ``steps`` updates per run: {arch:
    {"losses": {ε: [per seed]}, "medians": {ε: median}, "best_lr": ε with the least median,
    "best": that median, "scatter": max − min over the seeds at the best ε, "near_best": the ε
    whose medians exceed the best by at most that scatter (tied with it: the seeds could
    reorder them), "best_inside": whether no tied ε is at the grid's edge, "trains": whether the
    best median is below ``TRAINS_BELOW``}}."""
    out = {}
    for arch in archs:
        grid = DEPTH_LRS[arch]
        losses = {lr: [train_deep(arch, lr, s, steps) for s in seeds] for lr in grid}
        medians = {lr: float(np.median(v)) for lr, v in losses.items()}
        best = min(grid, key=lambda lr: medians[lr])
        scatter = float(np.ptp(losses[best]))
        near = [lr for lr in grid if medians[lr] - medians[best] <= scatter]
        out[arch] = {"losses": losses, "medians": medians, "best_lr": best,
                     "best": medians[best], "scatter": scatter, "near_best": near,
                     "best_inside": grid[0] not in near and grid[-1] not in near,
                     "trains": medians[best] < TRAINS_BELOW}
    return out


# ---- figures
def plot_mismatch(mismatch: dict, ax=None):
    """RMS train/eval difference of BN's output against B, with the 1/√B slope."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    bs = np.array(list(mismatch))
    vals = np.array(list(mismatch.values()))
    ax.loglog(bs, vals, "o-", label="measured (median of seeds)")
    ax.loglog(bs, vals[-1] * np.sqrt(bs[-1] / bs), "k--", lw=1, label="∝ 1/√B")
    ax.set_xlabel("batch size B")
    ax.set_ylabel("RMS of train-mode − eval-mode output")
    ax.set_title("BN's train and eval outputs differ by ≈ 1/√B")
    ax.legend()
    return ax


def plot_equilibrium(result: dict, axes=None):
    """‖W_t‖ with its predicted equilibrium, and the angular step with √(2ελ)."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for (scale, runs), color in zip(result["runs"].items(), ("C0", "C1")):
        t = np.arange(1, len(runs[0].norm) + 1)
        axes[0].plot(t, np.median([r.norm for r in runs], 0), color=color,
                     label=f"‖W‖, start × {scale:g}")
        axes[0].plot(t, np.median([r.predicted_norm for r in runs], 0), color=color, ls=":",
                     label="predicted (ε Ḡ / 2λ)^¼")
        axes[1].semilogy(t, np.median([r.angle for r in runs], 0), color=color,
                         label=f"start × {scale:g}")
    axes[1].axhline(math.sqrt(2 * EQ_LR * EQ_WD), color="k", ls="--", lw=1, label="√(2ελ)")
    axes[0].set_xlabel("update t")
    axes[0].set_ylabel("‖W_t‖")
    axes[0].set_title("the norm forgets its start")
    axes[1].set_xlabel("update t")
    axes[1].set_ylabel("angle between W_{t-1} and W_t (rad)")
    axes[1].set_title("the angular step settles at √(2ελ)")
    for ax in axes:
        ax.legend(fontsize=8)
    return axes


def plot_gradient_norms(norms: dict, ax=None):
    """‖∂J/∂W_l‖ against the layer l, one line per architecture (log scale)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    for arch, g in norms.items():
        ax.semilogy(np.arange(1, len(g) + 1), np.maximum(g, 1e-30), label=arch)
    ax.set_xlabel("layer l (1 = next to the input)")
    ax.set_ylabel("‖∂J/∂W_l‖ at θ₀")
    ax.legend(fontsize=8)
    return ax


def plot_gradient_flow(depth: int = 50, branch_scale: float = 1.0, residual: bool = True,
                       norm: str = "batch"):
    """The chapter's widget: per-layer gradient norms at θ₀ of one network (seed 0), with the
    plain network of the same depth and norm for reference."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4))
    split = mnist1d()
    x, y = split.X_train[:256].double(), split.y_train[:256]
    ours = layer_gradient_norms(deep_net((residual, norm), 0, depth, branch_scale=branch_scale),
                                x, y)
    ax.semilogy(np.arange(1, depth + 1), np.maximum(ours, 1e-30), "o-", ms=3,
                label=f"{'residual' if residual else 'plain'}, norm={norm}, scale {branch_scale:g}")
    if residual:
        ref = layer_gradient_norms(deep_net((False, norm), 0, depth), x, y)
        ax.semilogy(np.arange(1, depth + 1), np.maximum(ref, 1e-30), color="0.6",
                    label=f"plain, norm={norm}")
    ax.set_xlabel("layer l (1 = next to the input)")
    ax.set_ylabel("‖∂J/∂W_l‖ at θ₀")
    ratio = ours[0] / ours[-1]
    ax.set_title(f"first/last layer gradient ratio: {ratio:.2g}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
