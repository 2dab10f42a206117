r"""Adam and its family: moments and bias correction, decoupled weight decay, AMSGrad, NAdam.

Chapter 12 of the course (Deep Learning book, Goodfellow, Bengio & Courville, 2016, §8.5.3;
Kingma & Ba, 2015; Loshchilov & Hutter, 2019; Reddi, Kale & Kumar, 2018; Dozat, 2016).
The update rules themselves live in :mod:`course_lib.optim`; this module holds the
experiments that take them apart.

Contents:

- Moments and bias correction: :func:`adam_update_uncorrected` and
  :class:`AdamNoBiasCorrection` (Adam without the corrections 1/(1 − βᵗ), the variant the
  chapter compares with), :func:`bias_correction_factor` (its closed-form step ratio
  (1 − β₁ᵗ)/√(1 − β₂ᵗ)), :func:`first_steps` (measured step lengths on a constant gradient),
  :func:`noisy_gradients` and :func:`moment_traces` (s, r, ŝ, r̂ along a gradient sequence),
  :func:`noisy_adam_steps` (Adam's step on a noisy scalar gradient, Monte-Carlo over many
  streams: its mean approaches ε·ḡ/(√(ḡ² + σ²) + δ)) and :func:`plot_bias_and_snr` (the
  chapter's widget: q_t and that step for sliders β₁, β₂, δ, ḡ/σ),
  :func:`bias_correction_training` (the first minibatch losses of a network with and without
  the correction); :data:`ADAM_FAMILY`, factories taking β₁ and β₂ as separate keywords (for
  the widgets).
- Weight decay: :func:`scaled_logistic_task` (logistic regression whose features have very
  different scales), :func:`fit_logistic` (Adam + L2, AdamW or plain Adam, full batch),
  :func:`l2_minimizer` (Newton's method on the L2-penalised cost, the reference),
  :func:`adamw_fixed_point` (where full-batch AdamW stops: the minimizer of J on the box
  |θ_i| ≤ 1/λ), :func:`fixed_point_of` and :func:`stationarity` (how far a fit is from its
  method's fixed point), :func:`weight_decay_experiment`, and :func:`weight_decay_network`
  (Adam + L2 against AdamW on the MNIST-1D MLP, with minibatches).
- AMSGrad: the online problem of Reddi et al. (2018, §3) on which Adam converges to the
  *worst* point, :func:`online_gradient`, :func:`online_counterexample`,
  :func:`average_regret`, :func:`final_x_vs_beta2`.
- NAdam: :func:`nadam_momentum_schedule`, the momentum coefficients α_t that
  ``course_lib.optim.nadam_update`` uses (closed form, checked against its state).
- The settings of the chapter (``BIAS_BETAS``, ``WD_*``, ``ONLINE_*``), so that the notebook
  and its tests use the same numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from course_lib.optim import Adam, AdamW, NAdam, adam_update
from course_lib.optim._base import (FirstOrderOptimizer, check_betas, check_eps, check_lr,
                                    check_nonnegative)
from course_lib.utils import shared_result

__all__ = [
    "adam_update_uncorrected", "AdamNoBiasCorrection", "bias_correction_factor", "first_steps",
    "noisy_gradients", "moment_traces", "NoisyAdamSteps", "noisy_adam_steps", "plot_bias_and_snr",
    "bias_correction_training", "ADAM_FAMILY", "plot_moment_traces", "plot_bias_correction_ratio",
    "plot_weight_decay_network", "plot_online_counterexample", "plot_weight_decay_fits",
    "adam_with_betas", "amsgrad_with_betas", "nadam_with_betas", "uncorrected_with_betas",
    "ScaledLogisticTask", "WeightDecayFit", "scaled_logistic_task", "logistic_cost",
    "fit_logistic", "l2_minimizer", "adamw_fixed_point", "stationarity", "fixed_point_of",
    "weight_decay_experiment", "weight_decay_network",
    "OnlineRun", "online_gradient", "online_counterexample", "average_regret",
    "final_x_vs_beta2", "nadam_momentum_schedule",
]

# --- the settings of chapter 12 -----------------------------------------------------------------
#: (β₁, β₂) pairs of the bias-correction figure: the default, shorter memories for r (with
#: (1 − β₁)² < 1 − β₂ at (0.9, 0.95): the first step too small), β₁ = β₂
BIAS_BETAS = ((0.9, 0.999), (0.9, 0.99), (0.9, 0.95), (0.9, 0.9))
BIAS_STEPS = 200  # steps shown in the bias-correction figure
BIAS_TRAIN_LRS = (3e-3, 3e-2)  # ε of the network trained with and without the correction
BIAS_TRAIN_STEPS = 30
#: the noisy-gradient widget: Monte-Carlo draws of the gradient stream g_t ~ N(ḡ, σ²) (scaled so
#: that ḡ² + σ² = 1), their seed, and its initial frame (β₁, β₂, δ, signal-to-noise ratio ḡ/σ)
SNR_DRAWS, SNR_SEED = 4000, 0
SNR_WIDGET = dict(beta1=0.9, beta2=0.999, delta=1e-8, snr=1.0)

WD_SCALES = tuple(float(s) for s in np.logspace(-2, 2, 9))  # feature scales s_i, 10⁻² … 10²
WD_N_TRAIN, WD_N_TEST, WD_SEED = 1000, 4000, 0
#: the peak ε and the full-batch steps of every fit; ε decays to 0 along a half cosine, so that
#: the fits converge (at a constant ε Adam ends in a cycle whose phase depends on the last bits)
WD_LR, WD_STEPS = 0.3, 6000
#: the λ sweep.  Not 10⁻² or 10⁻¹: their walls 1/λ = 100 and 10 would nearly touch the
#: unpenalized weights 1/s_i (101.8, 10.4), a near-tie that AdamW approaches very slowly
WD_LAMBDAS = (1e-3, 2e-2, 2e-1)
WD_LAMBDA = 2e-2  # the λ of the per-feature figure

#: the minibatch demo: the chapter's MNIST-1D MLP at ε = 0.01 (the lower end of Adam's grid in
#: the grand comparison: at its tuned 0.03 one batch order is chaotic), the same λ grid for both
#: forms of decay, three batch orders
WD_NET_LR, WD_NET_LAMBDAS, WD_NET_SEEDS = 0.01, (1e-2, 1e-1, 1.0), (0, 1, 2)

ONLINE_C = 3.0  # the rare large gradient C (> 2)
ONLINE_BETAS = (0.0, 1.0 / (1.0 + ONLINE_C**2))  # Reddi et al.'s β₁ = 0, β₂ = 1/(1 + C²)
ONLINE_LR = 0.5  # α in the step size α/√t
ONLINE_STEPS = 600  # 200 periods of 3 rounds
ONLINE_BETA2S = (0.1, 0.3, 0.5, 0.7, 0.9, 0.99)  # the β₂ sweep


def _check(name: str, value, ok: bool, expected: str) -> None:
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _check_betas(betas) -> tuple[float, float]:
    _check("betas", betas, isinstance(betas, (tuple, list)) and len(betas) == 2,
           "a pair (beta1, beta2)")
    check_betas(tuple(betas))
    return float(betas[0]), float(betas[1])


# =============================================================================================
# Moments and bias correction
# =============================================================================================
def adam_update_uncorrected(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    r"""One step of Adam *without* bias correction, on ``theta`` in place.

    .. math::

        s \leftarrow \beta_1 s + (1-\beta_1)\, g, \qquad
        r \leftarrow \beta_2 r + (1-\beta_2)\, g \odot g, \qquad
        \theta \leftarrow \theta - \epsilon\, s / (\sqrt{r} + \delta)

    Compare :func:`course_lib.optim.adam_update`, which divides s by 1 − β₁ᵗ and r by
    1 − β₂ᵗ.  For a constant gradient (and δ → 0) this step is Adam's times
    (1 − β₁ᵗ)/√(1 − β₂ᵗ) (:func:`bias_correction_factor`).  With β₁ = 0 it is exactly
    RMSProp with ρ = β₂ (``course_lib.optim.rmsprop_update``).

    Arguments and symbols as in ``adam_update``: ``lr`` → ε, ``betas`` → (β₁, β₂),
    ``eps`` → δ, ``weight_decay`` → λ (an L2 term λθ added to g); ``state``: ``'step'`` → t,
    ``'exp_avg'`` → s, ``'exp_avg_sq'`` → r (the DL book's Algorithm 8.7).
    """
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(theta)  # s₀ = 0
        state["exp_avg_sq"] = torch.zeros_like(theta)  # r₀ = 0
    state["step"] += 1
    s, r = state["exp_avg"], state["exp_avg_sq"]
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(theta, alpha=weight_decay)  # g ← g + λθ
    s.lerp_(g, 1 - beta1)  # s ← β₁s + (1 − β₁)g
    r.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # r ← β₂r + (1 − β₂) g ⊙ g
    theta.addcdiv_(s, r.sqrt().add_(eps), value=-lr)  # θ ← θ − ε s / (√r + δ): no 1 − βᵗ


class AdamNoBiasCorrection(FirstOrderOptimizer):
    """Adam without bias correction (a teaching variant); the math is
    :func:`adam_update_uncorrected`.  Same constructor as ``Adam`` minus ``amsgrad``."""

    update = staticmethod(adam_update_uncorrected)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, *, maximize: bool = False) -> None:
        check_lr(lr)
        check_eps(eps)
        check_betas(betas)
        check_nonnegative("weight_decay", weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)


def bias_correction_factor(t, betas: tuple[float, float] = (0.9, 0.999)) -> np.ndarray:
    r"""q_t = (1 − β₁ᵗ) / √(1 − β₂ᵗ): the uncorrected step divided by the corrected one.

    Without correction s is too small by the factor 1 − β₁ᵗ and √r by √(1 − β₂ᵗ); the step
    s/√r is off by their ratio.  q_t > 1 (steps too large) whenever β₂ is closer to 1 than
    β₁ is in the sense (1 − β₁ᵗ)² > 1 − β₂ᵗ; q_t = √(1 − βᵗ) < 1 (steps too small) when
    β₁ = β₂ = β.  ``t`` is a step number ≥ 1 or an array of them.
    """
    beta1, beta2 = _check_betas(betas)
    t = np.asarray(t, dtype=float)
    _check("t", t.tolist() if t.ndim else float(t), bool(np.all(t >= 1)), "step numbers >= 1")
    return (1 - beta1**t) / np.sqrt(1 - beta2**t)


def first_steps(steps: int = BIAS_STEPS, betas: tuple[float, float] = (0.9, 0.999),
                lr: float = 1e-3, g: float = 1.0, eps: float = 1e-8,
                bias_correction: bool = True) -> np.ndarray:
    """Step lengths |θ_t − θ_{t−1}|, t = 1..``steps``, of Adam fed the same gradient ``g``
    every step: ``adam_update`` (``bias_correction=True``) or :func:`adam_update_uncorrected`.

    With correction, every step has length ε·|g|/(|g| + δ) ≈ ε, whatever the scale of g
    (Kingma & Ba, 2015, §2.1).  Runs in float64 on one scalar parameter.
    """
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    _check("lr", lr, lr > 0, "a number > 0")
    _check("g", g, math.isfinite(g) and g != 0, "a finite nonzero number")
    betas = _check_betas(betas)
    check_eps(eps)
    rule = adam_update if bias_correction else adam_update_uncorrected
    theta = torch.zeros(1, dtype=torch.float64)
    grad = torch.full((1,), float(g), dtype=torch.float64)
    state: dict = {}
    lengths = np.empty(steps)
    for t in range(steps):
        before = theta.item()
        rule(theta, grad, state, lr=lr, betas=betas, eps=eps)
        lengths[t] = abs(theta.item() - before)
    return lengths


def noisy_gradients(steps: int, mean: float = 1.0, std: float = 2.0, seed: int = 0) -> np.ndarray:
    """g_t = mean + std·ξ_t with ξ_t ~ N(0, 1) i.i.d., t = 1..steps (float64, seeded): a
    stream whose true moments are E[g] = mean and E[g²] = mean² + std²."""
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    _check("std", std, std >= 0, ">= 0")
    gen = torch.Generator().manual_seed(seed)
    return (mean + std * torch.randn(steps, generator=gen, dtype=torch.float64)).numpy()


def moment_traces(gradients, betas: tuple[float, float] = (0.9, 0.999)) -> dict[str, np.ndarray]:
    """Feed ``gradients`` (a 1-D sequence g_1..g_T) to ``adam_update`` on one scalar and read
    its state after every step.

    Returns arrays of length T: ``s``, ``r`` (the raw moving averages of g and g², the DL
    book's s and r, Algorithm 8.7; Kingma & Ba's m and v; torch's ``exp_avg`` and
    ``exp_avg_sq``), ``s_hat`` = s/(1 − β₁ᵗ) and ``r_hat`` = r/(1 − β₂ᵗ) (the corrected
    estimates of E[g] and E[g²]) and ``t``.
    """
    g = np.asarray(gradients, dtype=float)
    _check("gradients", g.shape, g.ndim == 1 and g.size >= 1, "a non-empty 1-D sequence")
    beta1, beta2 = _check_betas(betas)
    theta, state = torch.zeros(1, dtype=torch.float64), {}
    s, r = np.empty(g.size), np.empty(g.size)
    for i, g_t in enumerate(g):
        adam_update(theta, torch.full((1,), g_t, dtype=torch.float64), state, lr=1e-3,
                    betas=(beta1, beta2))
        s[i], r[i] = state["exp_avg"].item(), state["exp_avg_sq"].item()
    t = np.arange(1, g.size + 1)
    return {"t": t, "s": s, "r": r, "s_hat": s / (1 - beta1**t), "r_hat": r / (1 - beta2**t)}


@dataclass
class NoisyAdamSteps:
    """Adam's steps on ``draws`` independent streams g_t ~ N(ḡ, σ²), t = 1..T, in units of ε
    (the update is θ ← θ − ε·step; positive = along −ḡ).  Arrays over t: ``mean`` and ``std``
    (across streams) of the corrected step ŝ/(√r̂ + δ), ``mean_uncorrected`` and
    ``std_uncorrected`` of s/(√r + δ); ``per_stream`` the corrected steps of every stream over
    the last quarter of the run, averaged over t (one number per stream, i.i.d. across
    streams: :meth:`tail_mean` and :meth:`tail_se` use it)."""

    t: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    mean_uncorrected: np.ndarray
    std_uncorrected: np.ndarray
    per_stream: np.ndarray
    grad_mean: float  # ḡ
    grad_std: float  # σ
    betas: tuple[float, float]
    delta: float

    @property
    def predicted(self) -> float:
        """ε·ḡ/(√(ḡ² + σ²) + δ) in units of ε: E[ŝ] = ḡ over √E[r̂] + δ (both expectations are
        exact at every t, thanks to the correction); the mean step approaches it once r̂ has
        averaged many gradients (its own spread then vanishes)."""
        return self.grad_mean / (math.hypot(self.grad_mean, self.grad_std) + self.delta)

    @property
    def first_step(self) -> float:
        """E[step₁] exactly, for δ = 0: ŝ₁/√r̂₁ = g₁/|g₁| = sign(g₁), whose mean is
        2Φ(ḡ/σ) − 1 = erf(ḡ/(σ√2))."""
        return math.erf(self.grad_mean / (self.grad_std * math.sqrt(2.0)))

    def tail_mean(self) -> float:
        """The mean corrected step over the last quarter of the run (the steady step)."""
        return float(self.per_stream.mean())

    def tail_se(self) -> float:
        """The Monte-Carlo standard error of :meth:`tail_mean`."""
        return float(self.per_stream.std(ddof=1) / math.sqrt(self.per_stream.size))


def noisy_adam_steps(snr: float = 1.0, betas: tuple[float, float] = (0.9, 0.999),
                     delta: float = 1e-8, steps: int = BIAS_STEPS, draws: int = SNR_DRAWS,
                     seed: int = SNR_SEED, scale: float = 1.0) -> NoisyAdamSteps:
    r"""Adam on ``draws`` independent scalar gradient streams g_t = ḡ + σξ_t, ξ_t ~ N(0, 1),
    with signal-to-noise ratio ḡ/σ = ``snr`` and ḡ² + σ² = ``scale``² (E[g²] fixed, so that
    δ is measured against a fixed gradient size): the steps ŝ/(√r̂ + δ), with and without bias
    correction, vectorised over the streams (float64, NumPy's seeded generator).

    The moments follow the rule of ``course_lib.optim.adam_update`` (s ← β₁s + (1 − β₁)g,
    r ← β₂r + (1 − β₂)g², ŝ = s/(1 − β₁ᵗ), r̂ = r/(1 − β₂ᵗ)); the tests check one stream
    against it.  Returns a :class:`NoisyAdamSteps`.
    """
    _check("snr", snr, math.isfinite(snr) and snr >= 0, "a finite number >= 0")
    _check("steps", steps, _is_int(steps) and steps >= 4, "an int >= 4")
    _check("draws", draws, _is_int(draws) and draws >= 2, "an int >= 2")
    _check("scale", scale, scale > 0, "a number > 0")
    _check("delta", delta, delta >= 0, ">= 0")
    beta1, beta2 = _check_betas(betas)
    grad_mean = scale * snr / math.sqrt(1.0 + snr**2)
    grad_std = scale / math.sqrt(1.0 + snr**2)
    rng = np.random.default_rng(seed)
    s, r = np.zeros(draws), np.zeros(draws)
    out = {k: np.empty(steps) for k in ("mean", "std", "mean_u", "std_u")}
    tail_from = steps - steps // 4
    tail = np.zeros(draws)
    for i in range(steps):
        t = i + 1
        g = grad_mean + grad_std * rng.standard_normal(draws)
        s = beta1 * s + (1 - beta1) * g
        r = beta2 * r + (1 - beta2) * g * g
        step = (s / (1 - beta1**t)) / (np.sqrt(r / (1 - beta2**t)) + delta)
        raw = s / (np.sqrt(r) + delta)
        out["mean"][i], out["std"][i] = step.mean(), step.std()
        out["mean_u"][i], out["std_u"][i] = raw.mean(), raw.std()
        if i >= tail_from:
            tail += step
    return NoisyAdamSteps(np.arange(1, steps + 1), out["mean"], out["std"], out["mean_u"],
                          out["std_u"], tail / (steps - tail_from), grad_mean, grad_std,
                          (beta1, beta2), float(delta))


def plot_bias_and_snr(beta1: float = 0.9, beta2: float = 0.999, delta: float = 1e-8,
                      snr: float = 1.0, steps: int = BIAS_STEPS, draws: int = SNR_DRAWS,
                      axes=None) -> NoisyAdamSteps:
    """The chapter's bias-correction widget.  Left: q_t = (1 − β₁ᵗ)/√(1 − β₂ᵗ)
    (:func:`bias_correction_factor`, the uncorrected step over the corrected one) against the
    corrected 1, shaded where q_t > 1.  Right: :func:`noisy_adam_steps` for the signal-to-noise
    ratio ``snr``: Adam's mean step ± one standard deviation across streams, the exact first
    step and the steady step ε·ḡ/(√(ḡ² + σ²) + δ).  Every argument
    but ``axes`` (two Axes) can be a control of :func:`course_lib.widgets.interactive_plot`.
    Returns the Monte-Carlo result."""
    import matplotlib.pyplot as plt

    betas = (beta1, beta2)
    run = noisy_adam_steps(snr, betas, delta, steps, draws)
    if axes is None:  # 11.4 x 4.2 in at the notebook's 80 dpi: 912 px, inside the lab's column
        _, axes = plt.subplots(1, 2, figsize=(11.4, 4.2))
    a, b = axes
    t = run.t
    q = bias_correction_factor(t, betas)
    a.plot(t, q, color="tab:orange", label=r"without correction: $q_t$")
    a.axhline(1.0, color="tab:blue", label="with correction: 1")
    a.fill_between(t, 1.0, q, where=q > 1, color="tab:red", alpha=0.25, label=r"$q_t > 1$: too large")
    a.fill_between(t, q, 1.0, where=q < 1, color="tab:gray", alpha=0.2, label=r"$q_t < 1$: too small")
    a.set(xscale="log", xlabel="step $t$", ylabel="uncorrected step / corrected step")
    over = np.flatnonzero(q > 1)
    where = (f"> 1 for t = {over[0] + 1}–{over[-1] + 1}, largest {q.max():.3g}" if over.size
             else f"≤ 1 up to t = {steps}")
    a.set_title(f"$q_1$ = {q[0]:.3g}; $q_t$ {where}", fontsize="medium")
    a.legend(fontsize="small")
    b.plot(t, run.mean, color="tab:blue", label="Adam: mean step / ε")
    b.fill_between(t, run.mean - run.std, run.mean + run.std, color="tab:blue", alpha=0.2,
                   label="± one standard deviation across streams")
    b.axhline(run.predicted, color="k", ls=":",
              label=r"$\bar g/(\sqrt{\bar g^2+\sigma^2}+\delta)$")
    b.axhline(1.0, color="0.6", lw=0.8, label="ε: the step on a constant gradient")
    b.axhline(0.0, color="0.6", lw=0.8)
    if delta < 1e-6:  # δ ≪ |g|: the first step is sign(g₁)
        b.plot([1], [run.first_step], "k+", ms=10, mew=2,
               label=r"exact at $t = 1$: erf$(\bar g/\sigma\sqrt{2})$")
    b.set_ylim(-0.6, 1.6)
    b.set(xscale="log", xlabel="step $t$", ylabel=r"step along $-\bar g$, in units of ε")
    b.set_title(f"ḡ/σ = {snr:.3g}: steady step {run.mean[-1]:.3g}ε ≈ {run.predicted:.3g}ε "
                f"(spread ± {run.std[-1]:.2g}ε)", fontsize="medium")
    b.legend(fontsize="x-small", loc="upper right", ncol=2)
    b.figure.suptitle(f"β₁ = {beta1:g}, β₂ = {beta2:g}, δ = {delta:g}; "
                      f"{draws} gradient streams with E[g²] = 1")
    b.figure.tight_layout()
    return run


def bias_correction_training(lr: float, splits: dict, steps: int = 30, model: str = "mlp",
                             betas: tuple[float, float] = (0.9, 0.999)) -> dict[str, np.ndarray]:
    """The first ``steps`` minibatch losses of the chapter's MNIST-1D ``model`` trained with
    Adam and with :class:`AdamNoBiasCorrection`, both at ε = ``lr``, from the same θ₀ and on
    the same minibatches (``course_lib.train.train``, batch 128, seed 0).

    Returns {"Adam": losses, "no bias correction": losses}, each of length ``steps``.
    ``splits`` is :func:`course_lib.experiments.comparison.mnist1d_splits`'s dict (float64 by default:
    the blow-up at a large ε amplifies rounding, and float64 keeps it the same on every CPU).
    """
    from course_lib.experiments.comparison import NET_BATCH, make_model
    from course_lib.train import train

    _check("lr", lr, lr > 0, "a number > 0")
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    betas = _check_betas(betas)
    out = {}
    for label, cls in (("Adam", Adam), ("no bias correction", AdamNoBiasCorrection)):
        net = make_model(model, splits["train"][0].dtype)
        hist = train(net, torch.nn.CrossEntropyLoss(), cls(net.parameters(), lr=lr, betas=betas),
                     splits["train"], epochs=math.ceil(steps * NET_BATCH / len(splits["train"][0])),
                     max_steps=steps, batch_size=NET_BATCH, seed=0, device="cpu")
        out[label] = np.array(hist.steps["loss"])
    return out


# --- the family with (β₁, β₂) as separate keywords, for widgets ----------------------------------
def adam_with_betas(params, lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.999):
    """``Adam(params, lr, betas=(beta1, beta2))``: β₁ and β₂ as two keywords, so that
    ``course_lib.widgets.trajectory_explorer`` can give each its own slider."""
    return Adam(params, lr=lr, betas=(beta1, beta2))


def amsgrad_with_betas(params, lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.999):
    """``Adam(params, lr, betas=(beta1, beta2), amsgrad=True)``."""
    return Adam(params, lr=lr, betas=(beta1, beta2), amsgrad=True)


def nadam_with_betas(params, lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.999):
    """``NAdam(params, lr, betas=(beta1, beta2))``."""
    return NAdam(params, lr=lr, betas=(beta1, beta2))


def uncorrected_with_betas(params, lr: float = 0.1, beta1: float = 0.9, beta2: float = 0.999):
    """``AdamNoBiasCorrection(params, lr, betas=(beta1, beta2))``."""
    return AdamNoBiasCorrection(params, lr=lr, betas=(beta1, beta2))


#: label → optimizer factory taking (params, lr, beta1, beta2)
ADAM_FAMILY = {"Adam": adam_with_betas, "AMSGrad": amsgrad_with_betas, "NAdam": nadam_with_betas,
               "Adam without bias correction": uncorrected_with_betas}


# =============================================================================================
# L2 regularisation versus decoupled weight decay
# =============================================================================================
@dataclass
class ScaledLogisticTask:
    """Binary labels from a logistic model in standardized features z, observed as x = s ⊙ z.

    Every z_i carries the same information (w*_i = 1), but feature i is multiplied by the
    scale s_i, so a model needs the weight θ_i = w*_i / s_i to use it.
    Tensors are float64: X (N, d), y (N,) in {0, 1}.
    """
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    scales: torch.Tensor
    w_star: torch.Tensor

    def accuracy(self, theta: torch.Tensor) -> float:
        """Fraction of test examples with [x·θ > 0] = y."""
        with torch.no_grad():
            return ((self.X_test @ theta > 0).double() == self.y_test).double().mean().item()


def scaled_logistic_task(scales=WD_SCALES, n_train: int = WD_N_TRAIN, n_test: int = WD_N_TEST,
                         seed: int = WD_SEED) -> ScaledLogisticTask:
    """z ~ N(0, I_d), y ~ Bernoulli(σ(z·w*)) with w* = (1, …, 1), x = s ⊙ z (no intercept)."""
    s = torch.as_tensor(np.asarray(scales, dtype=float))
    _check("scales", tuple(s.shape), s.ndim == 1 and s.numel() >= 1 and bool((s > 0).all()),
           "a non-empty 1-D sequence of numbers > 0")
    for name, n in (("n_train", n_train), ("n_test", n_test)):
        _check(name, n, _is_int(n) and n >= 1, "an int >= 1")
    gen = torch.Generator().manual_seed(seed)
    n, d = n_train + n_test, s.numel()
    w_star = torch.ones(d, dtype=torch.float64)
    Z = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (torch.rand(n, generator=gen, dtype=torch.float64) < torch.sigmoid(Z @ w_star)).double()
    X = Z * s
    return ScaledLogisticTask(X[:n_train], y[:n_train], X[n_train:], y[n_train:], s, w_star)


def logistic_cost(theta: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """J(θ) = mean over examples of −log σ((2y − 1) x·θ), the logistic negative log-likelihood."""
    return torch.nn.functional.binary_cross_entropy_with_logits(X @ theta, y)


#: the methods :func:`fit_logistic` knows
WD_METHODS = ("Adam + L2", "AdamW", "Adam")


@dataclass
class WeightDecayFit:
    """The result of one :func:`fit_logistic` run (θ as a float64 tensor)."""
    method: str
    weight_decay: float
    theta: torch.Tensor
    train_cost: float  # J(θ) on the training set, without any penalty
    test_accuracy: float

    @property
    def norm(self) -> float:
        """‖θ‖₂."""
        return self.theta.norm().item()

    def effective_weights(self, scales: torch.Tensor) -> torch.Tensor:
        """|θ_i|·s_i: the weight each standardized feature z_i gets (1 for w*)."""
        return self.theta.abs() * scales


def fit_logistic(task: ScaledLogisticTask, method: str, weight_decay: float = WD_LAMBDA,
                 lr: float = WD_LR, steps: int = WD_STEPS) -> WeightDecayFit:
    r"""Full-batch logistic regression from θ₀ = 0 with one of :data:`WD_METHODS`:

    - ``"Adam + L2"``: ``course_lib.optim.Adam(weight_decay=λ)``, i.e. g ← ∇J + λθ, then
      Adam: the penalty's gradient is divided by √r̂ like the rest of g;
    - ``"AdamW"``: ``course_lib.optim.AdamW(weight_decay=λ)``, θ ← (1 − ελ)θ and then Adam on
      ∇J alone (Loshchilov & Hutter, 2019);
    - ``"Adam"``: no regularization (λ ignored).

    The learning rate of step t (counted from 0) is ε_t = ``lr``·½(1 + cos(πt/``steps``)):
    it decays to 0, so that the run settles instead of ending in the cycle that Adam keeps
    at a constant ε.  ∇J = Xᵀ(σ(Xθ) − y)/N in closed form (float64).
    """
    _check("method", method, method in WD_METHODS, f"one of {WD_METHODS}")
    _check("weight_decay", weight_decay, weight_decay >= 0, ">= 0")
    _check("lr", lr, lr > 0, "a number > 0")
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    X, y = task.X_train, task.y_train
    theta = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    if method == "Adam + L2":
        opt = Adam([theta], lr=lr, weight_decay=weight_decay)
    elif method == "AdamW":
        opt = AdamW([theta], lr=lr, weight_decay=weight_decay)
    else:
        opt = Adam([theta], lr=lr)
    group = opt.param_groups[0]
    for t in range(steps):
        group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * t / steps))
        with torch.no_grad():
            theta.grad = X.T @ (torch.sigmoid(X @ theta) - y) / len(y)  # ∇J
        opt.step()
    theta = theta.detach()
    with torch.no_grad():
        cost = logistic_cost(theta, X, y).item()
    return WeightDecayFit(method, float(weight_decay if method != "Adam" else 0.0), theta, cost,
                          task.accuracy(theta))


def l2_minimizer(task: ScaledLogisticTask, weight_decay: float, tol: float = 1e-12,
                 max_iter: int = 100) -> torch.Tensor:
    r"""argmin_θ J(θ) + (λ/2)‖θ‖² on the training set, by Newton's method (float64).

    The cost is strictly convex for λ > 0; its gradient and Hessian are
    ∇ = Xᵀ(σ(Xθ) − y)/N + λθ and H = Xᵀ diag(σ(1 − σ)) X / N + λI.  Stops when the Newton
    decrement is below ``tol`` (quadratic convergence: a handful of steps).  This is the
    point where Adam + L2 must stop if it converges, since there ∇J + λθ = 0.
    """
    _check("weight_decay", weight_decay, weight_decay > 0, "> 0 (the penalty makes it unique)")
    X, y = task.X_train, task.y_train
    n, d = X.shape
    theta = torch.zeros(d, dtype=torch.float64)
    eye = torch.eye(d, dtype=torch.float64)
    for _ in range(max_iter):
        p = torch.sigmoid(X @ theta)
        grad = X.T @ (p - y) / n + weight_decay * theta
        H = (X.T * (p * (1 - p))) @ X / n + weight_decay * eye
        step = torch.linalg.solve(H, grad)
        theta = theta - step
        if (grad @ step).item() < tol:  # Newton decrement² = gᵀH⁻¹g
            return theta
    raise RuntimeError(f"Newton's method did not converge in {max_iter} iterations")


def adamw_fixed_point(task: ScaledLogisticTask, weight_decay: float, tol: float = 1e-13,
                      max_iter: int = 200) -> torch.Tensor:
    r"""Where full-batch AdamW stops: argmin J(θ) subject to |θ_i| ≤ 1/λ for every i.

    A fixed point of AdamW has ελθ_i = −ε ŝ_i/(√r̂_i + δ).  With a steady full-batch
    gradient, ŝ_i → ∇_i J and √r̂_i → |∇_i J|, so the right side is −sign(∇_i J) (up to δ)
    unless ∇_i J → 0: either |θ_i| = 1/λ with the gradient pushing outwards, or ∇_i J = 0
    with |θ_i| < 1/λ.  These are the optimality conditions of J on the box
    |θ_i| ≤ 1/λ (Xie & Li, 2024): inside the box there is no penalty at all.

    Solved by a projected Newton method (float64): the coordinates on the wall whose gradient
    pushes outwards are held, Newton's step on the others, projected back onto the box with
    backtracking, until the iterate moves by less than ``tol``.
    """
    _check("weight_decay", weight_decay, weight_decay > 0, "> 0 (the box is |θ_i| ≤ 1/λ)")
    X, y = task.X_train, task.y_train
    n, d = X.shape
    wall = 1.0 / weight_decay
    theta = torch.zeros(d, dtype=torch.float64)
    for _ in range(max_iter):
        p = torch.sigmoid(X @ theta)
        grad = X.T @ (p - y) / n
        H = (X.T * (p * (1 - p))) @ X / n
        held = (theta.abs() >= wall) & (torch.sign(theta) * grad < 0)  # on the wall, pushed out
        free = ~held
        step = torch.zeros(d, dtype=torch.float64)
        step[free] = torch.linalg.solve(H[free][:, free], grad[free])
        cost, t = logistic_cost(theta, X, y).item(), 1.0
        while True:  # backtracking on the projected step
            new = (theta - t * step).clamp(-wall, wall)
            if logistic_cost(new, X, y).item() <= cost or t < 1e-10:
                break
            t /= 2
        if (new - theta).abs().max().item() < tol:
            return new
        theta = new
    raise RuntimeError(f"projected Newton did not converge in {max_iter} iterations")


def stationarity(task: ScaledLogisticTask, method: str, theta: torch.Tensor,
                 weight_decay: float = 0.0) -> float:
    r"""How far θ is from being a fixed point of ``method`` (one of :data:`WD_METHODS`), as the
    largest entry of the residual of its optimality condition:

    - ``"Adam"``: |∇J|; ``"Adam + L2"``: |∇J + λθ|;
    - ``"AdamW"``: the projected gradient of J on the box |θ_i| ≤ 1/λ
      (:func:`adamw_fixed_point`): |∇_i J| inside the box, and on (or beyond) its wall only the
      part of ∇_i J that points inwards.
    """
    _check("method", method, method in WD_METHODS, f"one of {WD_METHODS}")
    X, y = task.X_train, task.y_train
    grad = X.T @ (torch.sigmoid(X @ theta) - y) / len(y)
    if method == "Adam + L2":
        grad = grad + weight_decay * theta
    elif method == "AdamW":
        on_wall = theta.abs() >= (1.0 / weight_decay) * (1 - 1e-9)
        grad = torch.where(on_wall, (torch.sign(theta) * grad).clamp(min=0), grad)
    return grad.abs().max().item()


def fixed_point_of(task: ScaledLogisticTask, method: str, weight_decay: float = 0.0,
                   lambda_free: float = 1e-9) -> torch.Tensor:
    """The point where full-batch ``method`` must stop: :func:`l2_minimizer` for "Adam + L2",
    :func:`adamw_fixed_point` for "AdamW", and for "Adam" the unpenalized minimizer (the box
    of ``adamw_fixed_point`` with λ = ``lambda_free``, wide enough never to bind here)."""
    _check("method", method, method in WD_METHODS, f"one of {WD_METHODS}")
    if method == "Adam + L2":
        return l2_minimizer(task, weight_decay)
    return adamw_fixed_point(task, weight_decay if method == "AdamW" else lambda_free)


@shared_result
def weight_decay_experiment(task: ScaledLogisticTask, lambdas=WD_LAMBDAS, lr: float = WD_LR,
                            steps: int = WD_STEPS) -> dict:
    """Every (method, λ) of the chapter: ``{("Adam", 0.0): fit, ("Adam + L2", λ): fit,
    ("AdamW", λ): fit, ...}`` for λ in ``lambdas``, all from θ₀ = 0 with the same ε."""
    lambdas = tuple(float(lam) for lam in lambdas)
    _check("lambdas", lambdas, len(lambdas) >= 1 and all(lam > 0 for lam in lambdas),
           "a non-empty sequence of numbers > 0")
    fits = {("Adam", 0.0): fit_logistic(task, "Adam", 0.0, lr, steps)}
    for lam in lambdas:
        for method in ("Adam + L2", "AdamW"):
            fits[(method, lam)] = fit_logistic(task, method, lam, lr, steps)
    return fits


@shared_result
def weight_decay_network(splits: dict, lambdas=WD_NET_LAMBDAS, lr: float = WD_NET_LR,
                         seeds=WD_NET_SEEDS, model: str = "mlp") -> dict:
    """The chapter's MNIST-1D ``model`` trained with plain Adam, with Adam + L2
    (``Adam(weight_decay=λ)``) and with AdamW (``AdamW(weight_decay=λ)``) for each λ in
    ``lambdas``, all at ε = ``lr``, from the same θ₀, once per batch order in ``seeds``
    (``course_lib.train.train``, minibatches of 128, the epochs of the grand comparison, CPU).

    Returns ``{("Adam", 0.0): r, ("Adam + L2", λ): r, ("AdamW", λ): r, ...}`` where ``r`` is
    {"test_accuracy": (len(seeds),), "norm": (len(seeds),) the final ‖θ‖₂ over all parameters}.
    ``torch.optim.AdamW`` (and ours) shrink θ by the factor 1 − ελ per step: the decay is
    coupled to ε, whereas Adam + L2's λθ enters g and is divided by √r̂.
    """
    from course_lib.experiments.comparison import NET_BATCH, NET_EPOCHS, make_model
    from course_lib.train import evaluate, train

    _check("lr", lr, lr > 0, "a number > 0")
    lambdas = tuple(float(lam) for lam in lambdas)
    _check("lambdas", lambdas, len(lambdas) >= 1 and all(lam > 0 for lam in lambdas),
           "a non-empty sequence of numbers > 0")
    seeds = tuple(seeds)
    _check("seeds", seeds, len(seeds) >= 1 and all(_is_int(s) and s >= 0 for s in seeds),
           "a non-empty sequence of ints >= 0")
    loss_fn = torch.nn.CrossEntropyLoss()

    def runs(method: str, lam: float) -> dict[str, np.ndarray]:
        accs, norms = [], []
        for seed in seeds:
            net = make_model(model, splits["train"][0].dtype)
            cls = AdamW if method == "AdamW" else Adam
            opt = cls(net.parameters(), lr=lr, weight_decay=lam)
            train(net, loss_fn, opt, splits["train"], epochs=NET_EPOCHS[model],
                  batch_size=NET_BATCH, seed=seed, device="cpu")
            accs.append(evaluate(net, loss_fn, splits["test"])["accuracy"])
            norms.append(torch.cat([p.detach().flatten() for p in net.parameters()]).norm().item())
        return {"test_accuracy": np.array(accs), "norm": np.array(norms)}

    out = {("Adam", 0.0): runs("Adam", 0.0)}
    for lam in lambdas:
        for method in ("Adam + L2", "AdamW"):
            out[(method, lam)] = runs(method, lam)
    return out


# =============================================================================================
# AMSGrad: the online problem where Adam fails (Reddi, Kale & Kumar, 2018, §3)
# =============================================================================================
def online_gradient(t: int, C: float = ONLINE_C, period: int = 3) -> float:
    """∇f_t for the linear losses f_t(x) = C·x if t mod period = 1, −x otherwise (t ≥ 1)."""
    _check("t", t, _is_int(t) and t >= 1, "an int >= 1")
    return C if t % period == 1 else -1.0


@dataclass
class OnlineRun:
    """One run on the online problem.

    Attributes:
        x: (T + 1,) the points x_1 … x_{T+1} played (x_1 = x0; x_{t+1} after seeing f_t).
        effective_lr: (T,) ε_t/(√r̂_t + δ), the factor multiplying ŝ in step t
            (r̂ from r_max, the running maximum of r, for AMSGrad).
        amsgrad: which rule ran.
        C, period: the problem.
    """
    x: np.ndarray
    effective_lr: np.ndarray
    amsgrad: bool
    C: float
    period: int

    @property
    def final_x(self) -> float:
        """The mean of the last ``period`` points played: where the run settles."""
        return float(self.x[-self.period:].mean())

    def average_regret(self) -> np.ndarray:
        """R_t/t for t = 1..T (see :func:`average_regret`)."""
        return average_regret(self.x[:-1], self.C, self.period)


def online_counterexample(amsgrad: bool, C: float = ONLINE_C,
                          betas: tuple[float, float] = ONLINE_BETAS, lr: float = ONLINE_LR,
                          steps: int = ONLINE_STEPS, x0: float = 0.0, eps: float = 1e-8,
                          period: int = 3) -> OnlineRun:
    r"""Projected Adam or AMSGrad on the online problem of Reddi et al. (2018, §3).

    The feasible set is [−1, 1]; the losses are linear, f_t(x) = C·x when t mod 3 = 1 and
    −x otherwise, with C > 2.  Over each period of three rounds the total is (C − 2)x, so the
    best fixed point is x = −1 and x = +1 the worst.  Each round:
    ``course_lib.optim.Adam(amsgrad=...)`` takes a step with the step size ε_t = α/√t (a
    ``LambdaLR`` schedule, as in the paper's Theorem 1), then x is projected back onto
    [−1, 1] (in one dimension every projection of the paper is this clamp).

    With β₁ = 0 and β₂ = 1/(1 + C²) Adam converges to +1: the large gradient C is forgotten
    within a round or two, so the two steps of size ≈ ε_t in the direction −∇ = +1 beat the one
    damped step against it.  AMSGrad divides by the largest r seen, which remembers C, and
    converges to −1.  Our Adam keeps Kingma & Ba's bias correction, which the paper drops;
    with β₂ = 0.1 it changes r̂ by a factor 1/(1 − 0.1ᵗ) that is 1 after three rounds.
    """
    _check("C", C, C > 2, "> 2 (otherwise x = +1 is not the worst point)")
    _check("lr", lr, lr > 0, "a number > 0")
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    _check("x0", x0, -1 <= x0 <= 1, "a point of [-1, 1]")
    _check("period", period, _is_int(period) and period >= 2, "an int >= 2")
    betas = _check_betas(betas)
    x = torch.nn.Parameter(torch.tensor([float(x0)], dtype=torch.float64))
    opt = Adam([x], lr=lr, betas=betas, eps=eps, amsgrad=amsgrad)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / math.sqrt(k + 1))  # ε/√t
    xs, eff = [float(x0)], []
    for t in range(1, steps + 1):
        lr_t = opt.param_groups[0]["lr"]
        x.grad = torch.tensor([online_gradient(t, C, period)], dtype=torch.float64)
        opt.step()
        schedule.step()
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)  # projection onto the feasible set [-1, 1]
        state = opt.state[x]
        r = state["max_exp_avg_sq"] if amsgrad else state["exp_avg_sq"]
        r_hat = r.item() / (1 - betas[1] ** t)
        eff.append(lr_t / (math.sqrt(r_hat) + eps))
        xs.append(x.item())
    return OnlineRun(np.array(xs), np.array(eff), bool(amsgrad), float(C), period)


def average_regret(xs, C: float = ONLINE_C, period: int = 3) -> np.ndarray:
    r"""R_t/t for t = 1..T, where x_t = ``xs[t-1]`` is the point played in round t and

    .. math::

        R_t = \sum_{k=1}^{t} f_k(x_k) - \min_{x \in [-1, 1]} \sum_{k=1}^{t} f_k(x),
        \qquad f_k(x) = g_k\,x,

    so that min_x Σ g_k x = −|Σ g_k| (the best fixed point is −sign(Σ g_k)).  An algorithm
    whose R_t/t does not tend to 0 has not learned the best point.
    """
    xs = np.asarray(xs, dtype=float)
    _check("xs", xs.shape, xs.ndim == 1 and xs.size >= 1, "a non-empty 1-D sequence")
    g = np.array([online_gradient(t, C, period) for t in range(1, xs.size + 1)])
    t = np.arange(1, xs.size + 1)
    return (np.cumsum(g * xs) + np.abs(np.cumsum(g))) / t


def final_x_vs_beta2(beta2s=ONLINE_BETA2S, amsgrad: bool = False, **kwargs) -> np.ndarray:
    """Where the online run settles (:attr:`OnlineRun.final_x`) for each β₂ in ``beta2s``
    (β₁ = 0; other keywords go to :func:`online_counterexample`)."""
    return np.array([online_counterexample(amsgrad, betas=(0.0, b2), **kwargs).final_x
                     for b2 in beta2s])


# =============================================================================================
# NAdam
# =============================================================================================
def nadam_momentum_schedule(t, beta1: float = 0.9, momentum_decay: float = 4e-3) -> np.ndarray:
    r"""α_t = β₁ (1 − ½·0.96^{tψ}), the momentum coefficient NAdam uses at step t.

    This is the schedule of Dozat (2016) as torch and ``course_lib.optim.nadam_update``
    implement it (ψ = ``momentum_decay``; the tests check it against the products
    ∏_{i≤t} α_i that ``nadam_update`` keeps in its state).  α_t starts near β₁/2 and creeps
    towards β₁: 0.96^{tψ} halves only after t = ln 2/(ψ ln(1/0.96)) ≈ 4240 steps for ψ = 0.004.
    ``t`` is a step number ≥ 1 or an array of them.
    """
    _check("beta1", beta1, 0 <= beta1 < 1, "a number in [0, 1)")
    _check("momentum_decay", momentum_decay, momentum_decay >= 0, ">= 0")
    t = np.asarray(t, dtype=float)
    _check("t", t.tolist() if t.ndim else float(t), bool(np.all(t >= 1)), "step numbers >= 1")
    return beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))


# ----------------------------------------------------------------------------- the chapter's figures
def plot_moment_traces(gradients, traces: dict, running_g2, axes=None):
    """Figure of §12.1: the raw and corrected first moments s, ŝ against the gradients (left) and
    the second moments r, r̂ against the running mean of g² (right), for
    ``traces = moment_traces(gradients, (0.9, 0.999))`` of gradients with E[g] = 1, E[g²] = 5."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 4))
    a1, a2 = axes
    t = traces["t"]
    a1.plot(t, gradients, ".", color="0.75", ms=3, label="gradient $g_t$")
    a1.plot(t, traces["s"], label="raw $s$")
    a1.plot(t, traces["s_hat"], label=r"corrected $\hat s$")
    a1.axhline(1.0, color="k", ls=":", label=r"$\mathbb{E}[g] = 1$")
    a1.set(xscale="log", xlabel="step $t$", ylabel="first moment", ylim=(-3, 5),
           title=r"$\hat s$ estimates E[g] from step 1; raw $s$ starts at 0")
    a1.legend(fontsize="small")
    a2.plot(t, traces["r"], label="raw $r$")
    a2.plot(t, traces["r_hat"], label=r"corrected $\hat r$")
    a2.plot(t, running_g2, "k--", lw=1, label=r"running mean of $g^2$")
    a2.axhline(5.0, color="k", ls=":", label=r"$\mathbb{E}[g^2] = 5$")
    a2.set(xscale="log", yscale="log", xlabel="step $t$", ylabel="second moment",
           title=r"Raw $r$ is too small by $1-\beta_2^t$ ($\beta_2 = 0.999$)")
    a2.legend(fontsize="small")
    return axes


def plot_weight_decay_network(results: dict, axes=None):
    """Figure of §12.3's network demo: median test accuracy (left) and median ‖θ‖₂ (right) against
    λ for Adam + L2 and AdamW, with Adam without decay dashed; ``results`` from
    :func:`weight_decay_network`."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    a1, a2 = axes
    for method, style in (("Adam + L2", "o-"), ("AdamW", "s-")):
        lams = [lam for (m, lam) in results if m == method]
        for ax, key in ((a1, "test_accuracy"), (a2, "norm")):
            ax.plot(lams, [np.median(results[(method, lam)][key]) for lam in lams], style, label=method)
    for ax, key, ylabel in ((a1, "test_accuracy", "test accuracy (median of 3)"),
                            (a2, "norm", r"$\|\theta\|_2$ (median of 3)")):
        ax.axhline(np.median(results[("Adam", 0.0)][key]), color="k", ls="--", lw=1,
                   label="Adam, no decay")
        ax.set(xscale="log", xlabel="weight decay λ", ylabel=ylabel)
        ax.legend(fontsize="small")
    a2.set(yscale="log")
    a1.figure.suptitle("MLP on MNIST-1D: the same λ shrinks the weights far more as an L2 term in Adam")
    return axes


def plot_online_counterexample(runs: dict, beta2s, settle: dict, axes=None):
    """Figure of §12.4: x_t (left), the average regret R_T/T (middle) and where the run settles
    against β₂ (right) for ``runs = {"Adam": ..., "AMSGrad": ...}`` of
    :func:`online_counterexample` and ``settle`` of :func:`final_x_vs_beta2`."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(16, 4))
    for name, run in runs.items():
        axes[0].plot(np.arange(1, len(run.x) + 1), run.x, label=name, lw=1)
        axes[1].plot(np.arange(1, len(run.x)), run.average_regret(), label=name)
        axes[2].plot(beta2s, settle[name], "o-", label=name)
    axes[0].set(xlabel="round $t$", ylabel="$x_t$", ylim=(-1.1, 1.1),
                title="Adam → worst point +1, AMSGrad → best −1")
    axes[1].set(xlabel="round $T$", ylabel="average regret $R_T/T$", xscale="log",
                title="Adam's average regret does not vanish")
    axes[2].axhline(0, color="k", lw=0.8)
    axes[2].set(xlabel=r"$\beta_2$ (with $\beta_1 = 0$)", ylabel="x where the run settles",
                title="Adam fails only when r forgets fast")
    for ax in axes:
        ax.legend(fontsize="small")
    return axes


def plot_bias_correction_ratio(betas_list=BIAS_BETAS, steps: int = BIAS_STEPS, ax=None) -> dict:
    """Figure of §12.2: the measured ratio of the uncorrected to the corrected step on a constant
    gradient (circles, :func:`first_steps`) against q_t = (1 − β₁ᵗ)/√(1 − β₂ᵗ) (lines,
    :func:`bias_correction_factor`), for each (β₁, β₂) in ``betas_list``.  Returns
    {betas: (measured, predicted)} over t = 1..``steps``."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.2))
    t = np.arange(1, steps + 1)
    out = {}
    for betas in betas_list:
        measured = (first_steps(steps, betas, bias_correction=False) / first_steps(steps, betas))
        predicted = bias_correction_factor(t, betas)
        line, = ax.plot(t, predicted, label=fr"$(1-\beta_1^t)/\sqrt{{1-\beta_2^t}}$, $\beta$ = {betas}")
        ax.plot(t[::8], measured[::8], "o", ms=4, color=line.get_color(), mfc="none")
        out[tuple(betas)] = (measured, predicted)
    ax.axhline(1.0, color="k", lw=0.8)
    largest = max(m.max() for m, _ in out.values())
    ax.set(xscale="log", yscale="log", xlabel="step $t$", ylabel="uncorrected step / corrected step",
           title=f"Without correction the early steps are up to {largest:.2g}× too large (β₂ = 0.999)")
    ax.plot([], [], "ko", mfc="none", label="measured (circles)")
    ax.legend(fontsize="small")
    return out


def plot_weight_decay_fits(task: ScaledLogisticTask, fits: dict, minimizers: dict,
                           lam: float = WD_LAMBDA, lambdas=WD_LAMBDAS, axes=None):
    """Figure of §12.3: the effective weights |θᵢ|sᵢ against the feature scale for Adam + L2,
    AdamW (at ``lam``) and Adam without decay, with the L2 minimizer (left), and the test accuracy
    against λ (right); ``fits`` from :func:`weight_decay_experiment`, ``minimizers`` λ → θ of
    :func:`l2_minimizer`."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    a1, a2 = axes
    scales = task.scales.numpy()
    for key, style in ((("Adam + L2", lam), "o-"), (("AdamW", lam), "s-"), (("Adam", 0.0), "^--")):
        label = f"{key[0]}, λ = {key[1]:g}" if key[1] else "Adam, no decay"
        a1.plot(scales, fits[key].effective_weights(task.scales).numpy(), style, label=label)
    a1.plot(scales, (minimizers[lam].abs() * task.scales).numpy(), "k+", ms=12, mew=2,
            label=f"minimizer of J + λ‖θ‖²/2, λ = {lam:g}")
    a1.axhline(1.0, color="k", ls=":", lw=1)
    a1.set(xscale="log", xlabel="feature scale $s_i$", ylabel=r"effective weight $|\theta_i|\,s_i$",
           title="Adam + L2 discards small-scale features; AdamW keeps them")
    a1.legend(fontsize="small")
    lams = np.array(lambdas)
    for method, style in (("Adam + L2", "o-"), ("AdamW", "s-")):
        a2.plot(lams, [fits[(method, lam_)].test_accuracy for lam_ in lambdas], style, label=method)
    a2.axhline(fits[("Adam", 0.0)].test_accuracy, color="k", ls="--", lw=1, label="Adam, no decay")
    a2.set(xscale="log", xlabel="weight decay λ", ylabel="test accuracy",
           title="AdamW is more accurate at every λ of the sweep")
    a2.legend(fontsize="small")
    return axes
