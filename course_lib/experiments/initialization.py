"""Chapter 17 (initialization): how the scale of the initial weights sets the size of the
activations and of the back-propagated gradients through depth, and what that does to training.

Every initialization here is one of ``torch.nn.init``'s (we choose, we do not re-implement).  Symbols: d the
depth (number of Linear layers), n the width, σ_w² = n_in Var(W_ij), e_l the back-propagated error
(δ is kept for the small constant, g for a gradient estimate):

=================  ====================================================  ==================
scheme             torch call on a (n_out × n_in) weight                 σ_w² = n_in Var(W)
=================  ====================================================  ==================
``default``        ``kaiming_uniform_(a=√5)``: nn.Linear's U(±1/√n_in)    1/3
``lecun``          ``kaiming_normal_(nonlinearity="linear")``             1
``xavier``         ``xavier_normal_()`` (Glorot & Bengio, 2010)           2 n_in/(n_in+n_out)
``he``             ``kaiming_normal_(nonlinearity="relu")``               2
``orthogonal``     ``orthogonal_(gain=g)`` (Saxe et al., 2014)            g² (square W)
``gaussian``       ``normal_(0, σ_w/√n_in)``: any σ_w                     σ_w²
=================  ====================================================  ==================

Biases start at 0, except for ``default``, which keeps nn.Linear's U(±1/√n_in) bias too.

The network of sections 17.1–17.3 is ``course_lib.mlp`` with square hidden layers: z_1 = W_1 x,
h_l = f(z_l), z_{l+1} = W_{l+1} h_l, …, z_d = W_d h_{d−1} (no f after the last layer).  Its
mean-field prediction (infinite width; Poole et al., 2016; Schoenholz et al., 2017):
q_l = E[z_l²] obeys q_1 = σ_w² q_0 and q_{l+1} = σ_w² E_{z∼N(0,q_l)}[f(z)²], and the
back-propagated e_l = ∂(v·z_d)/∂z_l, v ∼ N(0, I), has q̃_l = E[e_l²] with q̃_d = 1 and
q̃_l = σ_w² E_{z∼N(0,q_l)}[f'(z)²] q̃_{l+1}.  Per layer: forward χ_fwd = q_{l+1}/q_l and
backward χ_bwd = q̃_l/q̃_{l+1}; for f = identity both are σ_w², for ReLU both σ_w²/2, for tanh
they depend on q (computed by Gauss–Hermite quadrature).
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from course_lib.data import mnist1d
from course_lib.models import mlp
from course_lib.optim import SGD
from course_lib.train import TrainingDiverged, evaluate, train
from course_lib.utils import shared_result

SCHEMES = ("default", "lecun", "xavier", "he", "orthogonal", "gaussian")
ACTIVATIONS = ("linear", "tanh", "relu")
_MODEL_ACTIVATION = {"linear": "identity", "tanh": "tanh", "relu": "relu"}

#: the deep MLP of sections 17.1-17.2: d linear layers of width n, a batch of Gaussian inputs
DEPTH = 50
WIDTH = 100
BATCH = 128
SEEDS = (0, 1, 2)
TABLE_SCHEMES = ("default", "lecun", "xavier", "he", "orthogonal")

#: section 17.3: input-output Jacobians of deep nets of width 100
JAC_DEPTH = 50
JAC_WIDTH = 100
TANH_GAINS = (1.01, 1.05, 1.1, 1.3, 5 / 3)

#: section 17.4: a 50-layer ReLU MLP on MNIST-1D
NET_DEPTH = 50
NET_WIDTH = 32
NET_SAMPLES = 2000  # 1600 training, 400 validation signals
NET_EPOCHS = 6
NET_BATCH = 128
NET_MOMENTUM = 0.9
NET_LRS = (0.003, 0.01, 0.03)
#: the inits that train also get ε = 0.001, so that their best ε lies inside the grid (orthogonal's
#: best is 0.003 or 0.01 depending on the CPU's kernels; 0.001 is worse on every kernel set)
WORKING_LRS = (0.001,) + NET_LRS
NET_SEEDS = (0, 1, 2)
NET_INITS = ("default", "he", "orthogonal", "too large")

_QUAD = np.polynomial.hermite_e.hermegauss(101)  # nodes, weights for E over N(0, 1)


def _check(name, value, ok, expected):
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def sigma_w2(scheme: str, n_in: int, n_out: int, gain: float = 1.0) -> float:
    """σ_w² = n_in · Var(W_ij) of ``scheme`` for an (n_out × n_in) weight; ``gain`` is σ_w for
    ``gaussian`` and the gain of ``orthogonal``.  (Orthogonal: exact for a square W.)"""
    _check("scheme", scheme, scheme in SCHEMES, f"one of {SCHEMES}")
    return {"default": 1 / 3, "lecun": 1.0, "xavier": 2 * n_in / (n_in + n_out), "he": 2.0,
            "orthogonal": gain ** 2, "gaussian": gain ** 2}[scheme]


@torch.no_grad()
def initialize_(model: nn.Module, scheme: str, gain: float = 1.0,
                generator: torch.Generator | None = None) -> nn.Module:
    """Re-initialize every nn.Linear and nn.Conv1d of ``model`` in place with ``torch.nn.init``
    (the table of the module docstring; n_in = fan_in = ``weight[0].numel()``), drawing from
    ``generator``; biases 0 except for ``default``.  Returns the model.

    The course's one home for these schemes: chapter 13's ``schedules.he_normal_`` is
    ``initialize_(model, "he", generator=…)``."""
    _check("scheme", scheme, scheme in SCHEMES, f"one of {SCHEMES}")
    init = nn.init
    for layer in model.modules():
        if not isinstance(layer, (nn.Linear, nn.Conv1d)):
            continue
        w = layer.weight
        fan_in = w[0].numel()
        if scheme == "default":
            if generator is None:
                layer.reset_parameters()
            else:  # reset_parameters cannot take a generator: its two calls, with one
                init.kaiming_uniform_(w, a=math.sqrt(5), generator=generator)
                if layer.bias is not None:
                    bound = 1 / math.sqrt(fan_in)
                    init.uniform_(layer.bias, -bound, bound, generator=generator)
            continue
        if scheme == "lecun":
            init.kaiming_normal_(w, nonlinearity="linear", generator=generator)
        elif scheme == "xavier":
            init.xavier_normal_(w, generator=generator)
        elif scheme == "he":
            init.kaiming_normal_(w, nonlinearity="relu", generator=generator)
        elif scheme == "orthogonal":
            init.orthogonal_(w, gain=gain, generator=generator)
        else:
            init.normal_(w, 0.0, gain / math.sqrt(fan_in), generator=generator)
        if layer.bias is not None:
            init.zeros_(layer.bias)
    return model


#: the earlier name of :func:`initialize_` (kept importable)
init_ = initialize_


def deep_mlp(activation: str, scheme: str, gain: float = 1.0, depth: int = DEPTH,
             width: int = WIDTH, seed: int = 0, dtype=torch.float64) -> nn.Sequential:
    """``course_lib.mlp`` with ``depth`` square Linear layers of ``width`` (depth − 1 hidden
    activations), initialized by :func:`initialize_` from a generator seeded with ``seed``."""
    _check("activation", activation, activation in ACTIVATIONS, f"one of {ACTIVATIONS}")
    _check("depth", depth, isinstance(depth, int) and depth >= 2, "an int >= 2")
    gen = torch.Generator().manual_seed(seed)
    model = mlp(width, (width,) * (depth - 1), width, _MODEL_ACTIVATION[activation], generator=gen)
    return initialize_(model.to(dtype), scheme, gain, gen)


class Profile(NamedTuple):
    """Per layer l = 1..d: ``forward`` q_l = mean of z_l² over units and inputs, ``backward``
    q̃_l = mean of e_l² (e_d = v ∼ N(0, I)).  Arrays of shape (d,)."""
    forward: np.ndarray
    backward: np.ndarray


def measure_profile(model: nn.Sequential, batch: int = BATCH, seed: int = 0) -> Profile:
    """Push ``batch`` inputs x ∼ N(0, I) through ``model`` and back-propagate v ∼ N(0, I) from
    the output: the second moments of the pre-activations z_l and of e_l = ∂(v·z_d)/∂z_l."""
    layers = list(model)
    first = layers[0]
    gen = torch.Generator().manual_seed(10_000 + seed)
    dtype = first.weight.dtype
    x = torch.randn(batch, first.in_features, generator=gen, dtype=dtype)
    zs, h = [], x
    for layer in layers:
        h = layer(h)
        if isinstance(layer, nn.Linear):
            h.retain_grad()
            zs.append(h)
    v = torch.randn(h.shape, generator=gen, dtype=dtype)
    (h * v).sum().backward()
    fwd = np.array([float(z.detach().pow(2).mean()) for z in zs])
    bwd = np.array([float(z.grad.pow(2).mean()) for z in zs])
    return Profile(fwd, bwd)


@functools.lru_cache(maxsize=256)
def _measured(activation: str, scheme: str, seed: int) -> Profile:
    """:func:`measure_profile` of the DEPTH × WIDTH network (cached: the table and the profile
    figure share their runs)."""
    return measure_profile(deep_mlp(activation, scheme, seed=seed), seed=seed)


def _expect(fn, q: float) -> float:
    """E_{z∼N(0,q)}[fn(z)] by 101-point Gauss–Hermite quadrature (float64)."""
    nodes, weights = _QUAD
    return float(np.sum(weights * fn(math.sqrt(q) * nodes)) / math.sqrt(2 * math.pi))


def _moments(activation: str, q: float) -> tuple[float, float]:
    """(E[f(z)²], E[f'(z)²]) for z ∼ N(0, q): closed forms for linear and ReLU."""
    if activation == "linear":
        return q, 1.0
    if activation == "relu":
        return q / 2, 0.5
    return (_expect(lambda z: np.tanh(z) ** 2, q),
            _expect(lambda z: (1 - np.tanh(z) ** 2) ** 2, q))


def variance_map(activation: str, q: float, s_w2: float, s_b2: float = 0.0) -> float:
    """One layer of the forward recursion: q ↦ σ_w² E_{z∼N(0,q)}[f(z)²] + σ_b²."""
    _check("activation", activation, activation in ACTIVATIONS, f"one of {ACTIVATIONS}")
    return s_w2 * _moments(activation, q)[0] + s_b2


def sigma_b2(scheme: str, n_in: int) -> float:
    """σ_b² = Var(b): 1/(3 n_in) for ``default`` (nn.Linear's U(±1/√n_in) bias), else 0."""
    _check("scheme", scheme, scheme in SCHEMES, f"one of {SCHEMES}")
    return 1 / (3 * n_in) if scheme == "default" else 0.0


def predicted_profile(activation: str, s_w2: float, depth: int = DEPTH, q0: float = 1.0,
                      s_b2: float = 0.0) -> Profile:
    """The mean-field recursions of the module docstring, with a bias of variance σ_b² added to
    every z_l (q_{l+1} = σ_w² E[f(z_l)²] + σ_b²): q_l and q̃_l for l = 1..d."""
    _check("activation", activation, activation in ACTIVATIONS, f"one of {ACTIVATIONS}")
    q = [s_w2 * q0 + s_b2]
    slopes = []
    for _ in range(depth - 1):
        slopes.append(chi(activation, math.sqrt(s_w2), q[-1]))
        q.append(variance_map(activation, q[-1], s_w2, s_b2))
    g = [1.0]
    for s in reversed(slopes):
        g.append(s * g[-1])
    return Profile(np.array(q), np.array(g[::-1]))


def per_layer_factors(profile: Profile) -> tuple[float, float]:
    """(χ_fwd, χ_bwd): the geometric means over the depth of q_{l+1}/q_l and q̃_l/q̃_{l+1}."""
    n = len(profile.forward) - 1
    return ((profile.forward[-1] / profile.forward[0]) ** (1 / n),
            (profile.backward[0] / profile.backward[-1]) ** (1 / n))


class FactorRow(NamedTuple):
    """One (scheme, activation): σ_w², predicted and measured χ_fwd and χ_bwd (measured: per
    seed, and their median)."""
    scheme: str
    activation: str
    s_w2: float
    predicted: tuple
    measured: np.ndarray  # (seeds, 2)

    @property
    def median(self) -> np.ndarray:
        return np.median(self.measured, axis=0)


@shared_result
def factor_table(schemes=TABLE_SCHEMES, activations=ACTIVATIONS, seeds=SEEDS) -> list[FactorRow]:
    """For every scheme × activation: the per-layer factors of the DEPTH × WIDTH MLP, predicted
    (mean field) and measured (:func:`measure_profile`, one network per seed)."""
    rows = []
    for act in activations:
        for scheme in schemes:
            s2 = sigma_w2(scheme, WIDTH, WIDTH)
            pred = per_layer_factors(predicted_profile(act, s2, s_b2=sigma_b2(scheme, WIDTH)))
            meas = np.array([per_layer_factors(_measured(act, scheme, s)) for s in seeds])
            rows.append(FactorRow(scheme, act, s2, pred, meas))
    return rows


@shared_result
def profiles(activation: str = "relu", schemes=("default", "lecun", "he"), seeds=SEEDS) -> dict:
    """scheme → (measured Profile per seed, predicted Profile) for the DEPTH × WIDTH MLP."""
    out = {}
    for scheme in schemes:
        meas = [_measured(activation, scheme, s) for s in seeds]
        out[scheme] = (meas, predicted_profile(activation, sigma_w2(scheme, WIDTH, WIDTH),
                                               s_b2=sigma_b2(scheme, WIDTH)))
    return out


def plot_profiles(result: dict, activation: str = "relu", axes=None):
    """Forward q_l and backward q̃_l (log scale) of :func:`profiles`: each seed thin, the
    prediction dashed."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for i, (scheme, (meas, pred)) in enumerate(result.items()):
        color = f"C{i}"
        layers = np.arange(1, len(pred.forward) + 1)
        for k, (ax, name) in enumerate(zip(axes, ("forward", "backward"))):
            for j, m in enumerate(meas):
                ax.plot(layers, m[k], color=color, lw=1, alpha=0.7,
                        label=f"{scheme} (σ_w² = {sigma_w2(scheme, WIDTH, WIDTH):.2g})" if j == 0 else None)
            ax.plot(layers, pred[k], color=color, ls="--", lw=1.5)
    axes[0].set_ylabel("second moment (log scale)")
    axes[0].set_title("forward: q_l = E[z_l²]")
    axes[1].set_title("backward: q̃_l = E[e_l²]")
    for ax in axes:
        ax.set_yscale("log")
        ax.set_xlabel("layer l")
    axes[0].legend(fontsize="small")
    axes[0].figure.suptitle(f"{activation}, width {WIDTH}: measured (solid, {len(meas)} seeds) "
                            "and predicted (dashed)")
    axes[0].figure.tight_layout()
    return axes


def plot_explorer(activation: str = "tanh", sigma_w: float = 1.0, depth: int = 50,
                  weights: str = "gaussian", width: int = 100, batch: int = 128, seed: int = 0,
                  ax=None) -> Profile:
    """The chapter's widget: q_l and q̃_l of one network (``weights`` "gaussian" N(0, σ_w²/n) or
    "orthogonal" with gain σ_w) against the mean-field prediction.  Returns the measurement."""
    import matplotlib.pyplot as plt

    scheme = "gaussian" if weights == "gaussian" else "orthogonal"
    meas = measure_profile(deep_mlp(activation, scheme, sigma_w, depth, width, seed), batch, seed)
    pred = predicted_profile(activation, sigma_w ** 2, depth)
    if ax is None:
        _, ax = plt.subplots(figsize=(8.5, 4.2))
    layers = np.arange(1, depth + 1)
    ax.plot(layers, meas.forward, color="tab:blue", label="forward q_l = E[z_l²], measured")
    ax.plot(layers, pred.forward, color="tab:blue", ls="--", label="forward, predicted")
    ax.plot(layers, meas.backward, color="tab:red", label="backward q̃_l = E[e_l²], measured")
    ax.plot(layers, pred.backward, color="tab:red", ls="--", label="backward, predicted")
    ax.set_yscale("log")
    lo = min(meas.forward.min(), meas.backward.min(), pred.forward.min(), pred.backward.min())
    hi = max(meas.forward.max(), meas.backward.max(), pred.forward.max(), pred.backward.max())
    ax.set_ylim(max(lo / 3, 1e-40), min(hi * 3, 1e40))
    ax.set_xlabel("layer l")
    ax.set_ylabel("second moment (log scale)")
    ax.legend(fontsize="small", loc="best")
    fwd, bwd = per_layer_factors(pred)
    ax.set_title(f"{activation}, {weights} σ_w = {sigma_w:.2f}, width {width}: predicted per "
                 f"layer ×{fwd:.3g} forward, ×{bwd:.3g} backward", fontsize="medium")
    ax.figure.tight_layout()
    return meas


# ---------------------------------------------------------------------------------------------
# 17.3 dynamical isometry

def jacobian(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The input-output Jacobian ∂z_d/∂x at one input x (shape (n,)): W_d D_{d−1} W_{d−1} … D_1 W_1
    with D_l = diag f'(z_l), multiplied out layer by layer (checked against torch.func.jacrev in
    the tests)."""
    J = torch.eye(x.numel(), dtype=x.dtype)
    h = x
    for layer in model:
        if isinstance(layer, nn.Linear):
            J = layer.weight @ J
            h = layer(h)
        elif isinstance(layer, nn.ReLU):
            J = (h > 0).to(J.dtype)[:, None] * J
            h = layer(h)
        elif isinstance(layer, nn.Tanh):
            h = layer(h)
            J = (1 - h ** 2)[:, None] * J
        else:
            h = layer(h)
    return J


def fixed_point_q(gain: float, iterations: int = 2000) -> float:
    """The fixed point q* > 0 of the tanh variance map q ↦ gain² E_{z∼N(0,q)}[tanh(z)²] (no bias),
    by iterating it from q = 1; 0 for gain ≤ 1, where q_l → 0."""
    if gain <= 1:
        return 0.0
    q = 1.0
    for _ in range(iterations):
        q = variance_map("tanh", q, gain ** 2)
    return q


def chi(activation: str, gain: float, q: float) -> float:
    """χ = σ_w² E_{z∼N(0,q)}[f'(z)²]: the mean squared singular value of one layer's Jacobian
    D W at variance q (the backward factor per layer)."""
    return gain ** 2 * _moments(activation, q)[1]


@torch.no_grad()
def jacobian_singular_values(activation: str, scheme: str, gain: float = 1.0,
                             depth: int = JAC_DEPTH, width: int = JAC_WIDTH,
                             seed: int = 0) -> np.ndarray:
    """Singular values (descending) of the input–output Jacobian of :func:`deep_mlp` at one
    input x ∼ N(0, q₀ I), float64: q₀ = 1, except for tanh with gain > 1, where q₀ = q*/gain²
    with q* the fixed point (:func:`fixed_point_q`), so that already z_1 = W_1 x has variance q*
    and every layer sees the same variance."""
    model = deep_mlp(activation, scheme, gain, depth, width, seed)
    q0 = fixed_point_q(gain) / gain ** 2 if activation == "tanh" and gain > 1 else 1.0
    x = torch.randn(width, generator=torch.Generator().manual_seed(20_000 + seed), dtype=torch.float64)
    return torch.linalg.svdvals(jacobian(model, math.sqrt(q0) * x)).numpy()


def spread(s: np.ndarray) -> tuple[float, float, float]:
    """(largest singular value, median singular value, fraction of them in [1/2, 2]).

    Not the smallest: in a deep Gaussian product it lies far below s_max times float64's
    precision, where no SVD resolves it."""
    s = np.asarray(s)
    return float(s.max()), float(np.median(s)), float(np.mean((s >= 0.5) & (s <= 2.0)))


def fmt_sv(x: float) -> str:
    """A singular value for print: 2 significant digits, or "0" below 1e-12 (numerically zero:
    an SVD resolves only down to ~1e-16 × s_max, and such digits differ between machines)."""
    return "0" if x < 1e-12 else f"{x:.2g}"


#: the six cases of section 17.3's table
ISO_CASES = (("linear", "gaussian", 1.0), ("linear", "orthogonal", 1.0),
             ("tanh", "gaussian", 1.05), ("tanh", "orthogonal", 1.05),
             ("relu", "gaussian", math.sqrt(2)), ("relu", "orthogonal", math.sqrt(2)))


@shared_result
def isometry(seeds=SEEDS) -> dict:
    """(activation, scheme, gain) → singular values per seed, for the nets of section 17.3:
    linear (gain 1) and tanh (gain 1.05) with Gaussian and orthogonal weights, ReLU with He and
    orthogonal gain √2, and tanh-orthogonal at each gain of TANH_GAINS."""
    cases = list(ISO_CASES) + [("tanh", "orthogonal", g) for g in TANH_GAINS if g != 1.05]
    return {c: [jacobian_singular_values(*c, seed=s) for s in seeds] for c in cases}


def plot_isometry(result: dict, ax=None):
    """Sorted singular values (log scale) of the first seed of each case with gain 1 (√2 ReLU)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.8))
    for (act, scheme, gain), svs in result.items():
        if (act, gain) not in (("linear", 1.0), ("tanh", 1.05), ("relu", math.sqrt(2))):
            continue
        s = svs[0]
        ax.plot(np.arange(1, len(s) + 1), s, ls="-" if scheme == "orthogonal" else "--",
                label=f"{act}, {scheme} (σ_w = {gain:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("index i (descending)")
    ax.set_ylabel("singular value s_i of ∂z_d/∂x")
    ax.legend(fontsize="small", ncol=2)
    ax.set_title(f"depth {JAC_DEPTH}, width {JAC_WIDTH}: only orthogonal linear and tanh stay "
                 "near 1", fontsize="medium")
    ax.figure.tight_layout()
    return ax


# ---------------------------------------------------------------------------------------------
# 17.4 a real network

def net_model(init: str, seed: int = 0) -> nn.Sequential:
    """The 50-layer ReLU MLP of section 17.4 (40 → NET_WIDTH × 49 → 10), float32, initialized by
    ``init``: a scheme of :func:`initialize_` (orthogonal with gain √2), or "too large" (Gaussian
    σ_w = 2, twice He's standard deviation)."""
    gen = torch.Generator().manual_seed(seed)
    model = mlp(40, (NET_WIDTH,) * (NET_DEPTH - 1), 10, "relu", generator=gen)
    if init == "too large":
        return initialize_(model, "gaussian", 2.0, gen)
    return initialize_(model, init, math.sqrt(2) if init == "orthogonal" else 1.0, gen)


def net_run(init: str, lr: float, seed: int = 0, epochs: int = NET_EPOCHS) -> float:
    """Train :func:`net_model` in float64 with SGD (momentum NET_MOMENTUM) for ``epochs`` on
    MNIST-1D; the final cost on the whole training set (inf if training diverged)."""
    data = mnist1d(NET_SAMPLES, seed=0)
    X, y = data.X_train.double(), data.y_train
    model = net_model(init, seed).double()  # float64: the printed losses are the same on any CPU
    loss_fn = nn.CrossEntropyLoss()
    try:
        train(model, loss_fn, SGD(model.parameters(), lr=lr, momentum=NET_MOMENTUM), (X, y),
              epochs=epochs, batch_size=NET_BATCH, seed=seed, device="cpu")
    except TrainingDiverged:
        return math.inf
    loss = evaluate(model, loss_fn, (X, y))["loss"]
    return loss if math.isfinite(loss) else math.inf


@shared_result
def net_experiment(inits=NET_INITS, lrs=NET_LRS, seeds=NET_SEEDS) -> dict:
    """init → array (len(lrs), len(seeds)) of final training losses."""
    return {i: np.array([[net_run(i, lr, s) for s in seeds] for lr in lrs]) for i in inits}


class NetSummary(NamedTuple):
    """One init of :func:`net_experiment`: the median over seeds of the final loss at each ε,
    the best ε (lowest median) and its index in the grid, and the per-seed losses there."""
    medians: np.ndarray
    best_lr: float
    best_index: int
    best_losses: np.ndarray


def net_summary(result: dict, lrs=NET_LRS) -> dict[str, NetSummary]:
    """init → NetSummary of :func:`net_experiment`'s result (inf counts as worst)."""
    out = {}
    for init, losses in result.items():
        med = np.median(losses, axis=1)
        i = int(np.argmin(med)) if np.isfinite(med).any() else 0
        out[init] = NetSummary(med, lrs[i], i, losses[i])
    return out


# ---------------------------------------------------------------------------------------------
# text for the notebook

def format_table(rows) -> str:
    """:func:`factor_table` as text: per activation and scheme, σ_w², and χ_fwd, χ_bwd predicted
    and measured (median over seeds), 3 significant digits."""
    lines = [f"{'activation':10s} {'scheme':11s} {'σ_w²':>5s}   {'χ_fwd pred':>10s} {'measured':>8s}"
             f"   {'χ_bwd pred':>10s} {'measured':>8s}"]
    for r in rows:
        m = r.median
        lines.append(f"{r.activation:10s} {r.scheme:11s} {r.s_w2:5.3g}   {r.predicted[0]:10.3g} "
                     f"{m[0]:8.3g}   {r.predicted[1]:10.3g} {m[1]:8.3g}")
    return "\n".join(lines)


def format_isometry(result: dict, cases=ISO_CASES) -> str:
    """:func:`isometry` as text: per case of ``cases`` the medians over seeds of s_max, the median s and the
    fraction of singular values in [1/2, 2]."""
    lines = [f"{'activation':10s} {'weights':11s} {'σ_w':>5s}  {'s_max':>6s} {'median s':>9s} "
             f"{'in [1/2, 2]':>11s}"]
    for act, scheme, gain in cases:
        svs = result[(act, scheme, gain)]
        smax, smed, frac = np.median(np.array([spread(s) for s in svs]), axis=0)
        lines.append(f"{act:10s} {scheme:11s} {gain:5.3g}  {fmt_sv(smax):>6s} {fmt_sv(smed):>9s} "
                     f"{frac:11.2f}")
    return "\n".join(lines)


#: a run "trained" when its final loss is this far below ln 10 (the cost of a uniform guess);
#: "at chance" when within AT_CHANCE of it
TRAINED_MARGIN = 0.02
AT_CHANCE = 0.01


def format_net(result: dict, lrs=NET_LRS) -> str:
    """:func:`net_experiment`'s result in words that hold on every CPU: the runs of a 50-layer
    net amplify last-bit differences of the kernels into the second digit of the final loss, so
    we print only what survives that (the losses themselves: :func:`plot_net`)."""
    ln10 = math.log(10)
    lines = []
    for name, losses in result.items():
        if np.isinf(losses).all():
            lines.append(f"{name}: diverged at every ε and seed")
        elif (np.abs(losses - ln10) < AT_CHANCE).all():
            lines.append(f"{name}: at chance (final loss within {AT_CHANCE} of ln 10) at every ε and seed")
        else:
            k = int((losses[list(lrs).index(0.01)] < ln10 - TRAINED_MARGIN).sum())
            ends = [abs(float(np.median(losses[i])) - ln10) < 0.05 for i in (0, -1)]
            lines.append(f"{name}: at ε = 0.01, {k} of {losses.shape[1]} seeds end more than "
                         f"{TRAINED_MARGIN} below ln 10; at the grid's ends, ε = {lrs[0]:g} and "
                         f"{lrs[-1]:g}, the median ends "
                         f"{'within' if all(ends) else 'not always within'} 0.05 of ln 10")
    return "\n".join(lines)


def plot_net(results, ax=None):
    """Final training loss against ε for each init: every seed (dots) and the median (line);
    diverged runs are drawn at the top of the axes.  ``results``: pairs (result of
    :func:`net_experiment`, its grid of ε)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3.6))
    top = 2.45
    i = 0
    for result, lrs in results:
        for name, losses in result.items():
            shown = np.where(np.isfinite(losses), losses, top)
            for j in range(losses.shape[1]):
                ax.scatter(lrs, shown[:, j], color=f"C{i}", s=14, alpha=0.6)
            ax.plot(lrs, np.median(shown, axis=1), color=f"C{i}", marker="o",
                    label=name + (" (diverged: drawn at the top)" if np.isinf(losses).all() else ""))
            i += 1
    ax.axhline(math.log(10), color="gray", ls=":", label="ln 10: a uniform guess")
    ax.set_xscale("log")
    ax.set_ylim(1.8, top + 0.03)
    ax.set_xlabel("learning rate ε")
    ax.set_ylabel("final training loss")
    ax.legend(fontsize="small", loc="lower left")
    ax.set_title(f"{NET_DEPTH}-layer ReLU MLP, MNIST-1D, {NET_EPOCHS} epochs: only He and "
                 "orthogonal train", fontsize="medium")
    ax.figure.tight_layout()
    return ax
