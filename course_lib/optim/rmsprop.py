"""RMSProp: AdaGrad with an exponentially decaying average instead of a sum."""
from __future__ import annotations

import torch

from course_lib.optim._base import (
    FirstOrderOptimizer,
    check_eps,
    check_lr,
    check_nonnegative,
    check_unit_interval,
)

__all__ = ["RMSprop", "rmsprop_update"]


def rmsprop_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    maximize: bool = False,
) -> None:
    r"""One RMSProp step on the tensor ``theta``, in place.

    .. math::

        g &\leftarrow g + \lambda\theta \\
        r &\leftarrow \rho\, r + (1-\rho)\, g \odot g \\
        \bar g &\leftarrow \rho\, \bar g + (1-\rho)\, g
            \qquad \text{(centered only)} \\
        s &= \sqrt{r - \bar g \odot \bar g} + \delta
            \quad\text{(centered)}, \qquad s = \sqrt{r} + \delta \quad\text{(otherwise)} \\
        \theta &\leftarrow \theta - \epsilon\, g / s
            \qquad \text{(no momentum)} \\
        b &\leftarrow \alpha b + g / s, \quad \theta \leftarrow \theta - \epsilon\, b
            \qquad \text{(momentum)}

    Arguments and symbols:

    - ``lr`` → ε, the learning rate.
    - ``alpha`` → ρ, the decay rate of the moving averages (torch's name; the book's ρ).
    - ``eps`` → δ.
    - ``weight_decay`` → λ, adds λθ to g.
    - ``momentum`` → α.
    - ``centered`` → divide by an estimate of the *variance* r − ḡ² instead of the raw second
      moment r.
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state``: ``'square_avg'`` → r, ``'grad_avg'`` → ḡ (centered only),
      ``'momentum_buffer'`` → b (momentum > 0 only), ``'step'`` → t (counted, not used).

    References: Hinton, Srivastava & Swersky (2012), *Neural Networks for Machine Learning*,
    lecture 6e (RMSProp, unpublished slides); Graves (2013), *Generating sequences with
    recurrent neural networks*, eqs. 38–41 (the centered variant with momentum).

    Conventions that differ between sources:

    - δ sits *outside* the root, √r + δ, as in torch.  The Deep Learning book (Alg. 8.5),
      Graves (2013) and TensorFlow's ApplyRMSProp put it inside, √(r + δ).  The two differ only where r is
      about δ² or smaller (a coordinate whose gradient has been ~0 for a long time).
    - The momentum buffer b starts at 0 (unlike SGD's b₁ = g₁) and accumulates the already
      *scaled* step g/s; the book's Alg. 8.6 applies momentum the same way, v ← αv − εg/s.
    - r starts at 0, and there is no bias correction (compare Adam): the first steps are
      larger than later ones by about 1/√(1 − ρ).

    Example (first step from r = 0: the step is ε/√(1 − ρ) for every coordinate):

    >>> theta, state = torch.zeros(2), {}
    >>> rmsprop_update(theta, torch.tensor([4.0, -0.01]), state, lr=0.01, alpha=0.99)
    >>> theta
    tensor([-0.1000,  0.1000])
    """
    if not state:
        state["step"] = 0
        state["square_avg"] = torch.zeros_like(theta)  # r₀ = 0
        if momentum > 0:
            state["momentum_buffer"] = torch.zeros_like(theta)  # b₀ = 0
        if centered:
            state["grad_avg"] = torch.zeros_like(theta)  # ḡ₀ = 0
    state["step"] += 1
    r = state["square_avg"]

    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(theta, alpha=weight_decay)

    r.mul_(alpha).addcmul_(g, g, value=1 - alpha)  # r ← ρr + (1 − ρ) g ⊙ g
    if centered:
        g_bar = state["grad_avg"]
        g_bar.lerp_(g, 1 - alpha)  # ḡ ← ρḡ + (1 − ρ) g
        s = r.addcmul(g_bar, g_bar, value=-1).sqrt_().add_(eps)  # √(r − ḡ²) + δ
    else:
        s = r.sqrt().add_(eps)  # √r + δ

    if momentum > 0:
        b = state["momentum_buffer"]
        b.mul_(momentum).addcdiv_(g, s)  # b ← αb + g/s
        theta.add_(b, alpha=-lr)  # θ ← θ − εb
    else:
        theta.addcdiv_(g, s, value=-lr)  # θ ← θ − εg/s


class RMSprop(FirstOrderOptimizer):
    """RMSProp, as ``torch.optim.RMSprop``; the math is :func:`rmsprop_update`."""

    update = staticmethod(rmsprop_update)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_eps(eps)
        check_nonnegative("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        # torch only checks alpha >= 0; alpha > 1 makes r negative and the step NaN.
        check_unit_interval("alpha", alpha)
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                        momentum=momentum, centered=centered, maximize=maximize)
        super().__init__(params, defaults)
