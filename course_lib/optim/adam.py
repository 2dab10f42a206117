"""Adam (with the AMSGrad variant) and AdamW, its version with decoupled weight decay."""
from __future__ import annotations

import torch

from course_lib.optim._base import (
    FirstOrderOptimizer,
    check_betas,
    check_eps,
    check_lr,
    check_nonnegative,
)

__all__ = ["Adam", "AdamW", "adam_update"]


def adam_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> None:
    r"""One Adam (or AMSGrad, or AdamW) step on the tensor ``theta``, in place.

    .. math::

        g &\leftarrow g + \lambda\theta
            \quad\text{(L2 penalty)} \qquad\text{or}\qquad
            \theta \leftarrow (1 - \epsilon\lambda)\,\theta \quad\text{(decoupled, AdamW)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\, g \\
        v &\leftarrow \beta_2 v + (1-\beta_2)\, g \odot g \\
        v_{\max} &\leftarrow \max(v_{\max}, v)
            \quad\text{(AMSGrad: use } v_{\max} \text{ instead of } v \text{ below)} \\
        \hat m &= m / (1-\beta_1^t), \qquad \hat v = v / (1-\beta_2^t) \\
        \theta &\leftarrow \theta - \epsilon\, \hat m / (\sqrt{\hat v} + \delta)

    Arguments and symbols:

    - ``lr`` → ε, the learning rate (Kingma & Ba call it α).
    - ``betas`` → (β₁, β₂), decay rates of the first and second moment estimates.
    - ``eps`` → δ (Kingma & Ba call it ε).
    - ``weight_decay`` → λ.
    - ``amsgrad`` → divide by the running maximum of v (Reddi et al.).
    - ``decoupled_weight_decay`` → shrink θ directly instead of adding λθ to g (AdamW).
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state``: ``'step'`` → t, ``'exp_avg'`` → m, ``'exp_avg_sq'`` → v,
      ``'max_exp_avg_sq'`` → v_max (AMSGrad only).

    References: Kingma & Ba (2015), *Adam: a method for stochastic optimization*, ICLR,
    Algorithm 1; Reddi, Kale & Kumar (2018), *On the convergence of Adam and beyond*, ICLR
    (AMSGrad); Loshchilov & Hutter (2019), *Decoupled weight decay regularization*, ICLR
    (AdamW).

    Conventions that differ between sources:

    - t is incremented *before* it is used: the first update has t = 1, so 1 − β₁ᵗ > 0.
    - δ sits *outside* the root, √v̂ + δ, and is added to the bias-corrected v̂ (Kingma &
      Ba, torch).  Some libraries add δ to √v before the correction, which is a larger δ.
    - AMSGrad: Reddi et al. (Alg. 2) use no bias correction at all; torch (and we) keep
      Adam's corrections, taking the maximum of the *uncorrected* v and dividing it by
      1 − β₂ᵗ.
    - AdamW: Loshchilov & Hutter shrink θ by η_t λ with a schedule multiplier η_t separate
      from the learning rate; torch (and we) shrink by ελ, so a learning-rate schedule also
      schedules the decay.  Decay is applied to θ *before* the gradient step.

    Example (the first Adam step moves every coordinate by about ε, whatever the size of g):

    >>> theta, state = torch.zeros(2), {}
    >>> adam_update(theta, torch.tensor([100.0, -0.001]), state, lr=0.1)
    >>> theta
    tensor([-0.1000,  0.1000])
    """
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(theta)  # m₀ = 0
        state["exp_avg_sq"] = torch.zeros_like(theta)  # v₀ = 0
        if amsgrad:
            state["max_exp_avg_sq"] = torch.zeros_like(theta)  # v_max,0 = 0
    state["step"] += 1
    t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]

    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled_weight_decay:
            theta.mul_(1 - lr * weight_decay)  # θ ← (1 − ελ)θ, outside the moments
        else:
            g = g.add(theta, alpha=weight_decay)  # g ← g + λθ, goes through m and v

    m.lerp_(g, 1 - beta1)  # m ← β₁m + (1 − β₁)g
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v ← β₂v + (1 − β₂) g ⊙ g
    if amsgrad:  # normalise by the largest v so far: the effective step never grows
        v_max = state["max_exp_avg_sq"]
        torch.maximum(v_max, v, out=v_max)  # v_max ← max(v_max, v)
        v = v_max  # used in place of v below

    # Bias correction: m and v start at 0, so early on they underestimate E[g] and E[g²]
    # by the factors 1 − β₁ᵗ and 1 − β₂ᵗ.  (torch folds 1/(1 − β₁ᵗ) into the step size and
    # divides √v by √(1 − β₂ᵗ): the same numbers up to rounding, ~1e-14 apart after 100 steps.)
    m_hat = m / (1 - beta1**t)  # m̂
    v_hat = v / (1 - beta2**t)  # v̂
    theta.addcdiv_(m_hat, v_hat.sqrt().add_(eps), value=-lr)  # θ ← θ − ε m̂ / (√v̂ + δ)


class Adam(FirstOrderOptimizer):
    """Adam / AMSGrad, as ``torch.optim.Adam``; the math is :func:`adam_update`."""

    update = staticmethod(adam_update)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        check_lr(lr)
        check_eps(eps)
        check_betas(betas)
        check_nonnegative("weight_decay", weight_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        amsgrad=amsgrad, maximize=maximize,
                        decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)


class AdamW(Adam):
    """AdamW: Adam with decoupled weight decay (default λ = 0.01), as ``torch.optim.AdamW``."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad,
                         maximize=maximize, decoupled_weight_decay=True)
