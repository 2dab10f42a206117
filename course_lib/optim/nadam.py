"""NAdam: Adam with Nesterov momentum (Dozat, 2016)."""
from __future__ import annotations

import torch

from course_lib.optim._base import (
    FirstOrderOptimizer,
    check_betas,
    check_eps,
    check_lr,
    check_nonnegative,
)

__all__ = ["NAdam", "nadam_update"]


def nadam_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
) -> None:
    r"""One NAdam step on the tensor ``theta``, in place.

    .. math::

        g &\leftarrow g + \lambda\theta
            \quad\text{or, decoupled,}\quad \theta \leftarrow (1 - \epsilon\lambda)\,\theta \\
        \mu_t &= \beta_1 \left(1 - \tfrac12\, 0.96^{\,t\psi}\right)
            \qquad \text{(momentum schedule)} \\
        m &\leftarrow \beta_1 m + (1-\beta_1)\, g, \qquad
        v \leftarrow \beta_2 v + (1-\beta_2)\, g \odot g, \qquad
        \hat v = v / (1 - \beta_2^t) \\
        \theta &\leftarrow \theta
            - \epsilon\, \frac{1-\mu_t}{1-\prod_{i=1}^{t}\mu_i}\, \frac{g}{\sqrt{\hat v}+\delta}
            - \epsilon\, \frac{\mu_{t+1}}{1-\prod_{i=1}^{t+1}\mu_i}\, \frac{m}{\sqrt{\hat v}+\delta}

    The last line is Adam's step with a Nesterov look-ahead: the new gradient enters with
    weight 1 − μ_t, the momentum m with the *next* step's coefficient μ_{t+1}.

    Arguments and symbols:

    - ``lr`` → ε, the learning rate.
    - ``betas`` → (β₁, β₂); β₁ is also the limit of the momentum schedule μ_t.
    - ``eps`` → δ.
    - ``weight_decay`` → λ.
    - ``momentum_decay`` → ψ, how fast μ_t warms up (Dozat's 1/250 = 0.004).
    - ``decoupled_weight_decay`` → shrink θ directly, as AdamW does ("NAdamW").
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state``: ``'step'`` → t, ``'exp_avg'`` → m, ``'exp_avg_sq'`` → v,
      ``'mu_product'`` → ∏_{i≤t} μ_i.

    Reference: Dozat (2016), *Incorporating Nesterov momentum into Adam*, ICLR workshop.

    Conventions that differ between sources:

    - t is incremented before it is used (first update: t = 1); μ_t uses that t.
    - m is *not* divided by 1 − β₁ᵗ: the products of μ play the role of the bias correction.
    - δ sits outside the root, √v̂ + δ, after the bias correction of v (as torch).
    - torch keeps ∏μ in a 0-dim tensor of dtype float32 unless the default dtype is float64;
      we keep a Python float (float64).  The two agree to the last bit when
      ``torch.set_default_dtype(torch.float64)``; otherwise ours is the more precise.

    Example (first step: ε from the gradient term, plus a look-ahead share of m):

    >>> theta, state = torch.zeros(2), {}
    >>> nadam_update(theta, torch.tensor([1.0, -1.0]), state, lr=0.1)
    >>> theta
    tensor([-0.1056,  0.1056])
    >>> state["step"], round(state["mu_product"], 4)
    (1, 0.4501)
    """
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["mu_product"] = 1.0  # empty product
        state["exp_avg"] = torch.zeros_like(theta)  # m₀ = 0
        state["exp_avg_sq"] = torch.zeros_like(theta)  # v₀ = 0
    state["step"] += 1
    t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]

    if maximize:
        g = -g
    if weight_decay != 0:
        if decoupled_weight_decay:
            theta.mul_(1 - lr * weight_decay)  # θ ← (1 − ελ)θ
        else:
            g = g.add(theta, alpha=weight_decay)  # g ← g + λθ

    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))  # μ_t
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))  # μ_{t+1}
    mu_product = state["mu_product"] = state["mu_product"] * mu  # ∏_{i≤t} μ_i
    mu_product_next = mu_product * mu_next  # ∏_{i≤t+1} μ_i

    m.lerp_(g, 1 - beta1)  # m ← β₁m + (1 − β₁)g
    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)  # v ← β₂v + (1 − β₂) g ⊙ g
    v_hat = v.div(1 - beta2**t)  # v̂ = v / (1 − β₂ᵗ)
    denom = v_hat.sqrt_().add_(eps)  # √v̂ + δ

    theta.addcdiv_(g, denom, value=-lr * (1.0 - mu) / (1.0 - mu_product))
    theta.addcdiv_(m, denom, value=-lr * mu_next / (1.0 - mu_product_next))


class NAdam(FirstOrderOptimizer):
    """NAdam, as ``torch.optim.NAdam``; the math is :func:`nadam_update`."""

    update = staticmethod(nadam_update)

    def __init__(
        self,
        params,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        decoupled_weight_decay: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_eps(eps)
        check_betas(betas)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("momentum_decay", momentum_decay)
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                        momentum_decay=momentum_decay,
                        decoupled_weight_decay=decoupled_weight_decay, maximize=maximize)
        super().__init__(params, defaults)
