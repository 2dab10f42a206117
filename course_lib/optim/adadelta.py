"""AdaDelta: RMSProp whose step size comes from a moving average of past steps."""
from __future__ import annotations

import torch

from course_lib.optim._base import (
    FirstOrderOptimizer,
    check_eps,
    check_lr,
    check_nonnegative,
    check_unit_interval,
)

__all__ = ["Adadelta", "adadelta_update"]


def adadelta_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    r"""One AdaDelta step on the tensor ``theta``, in place.

    .. math::

        g &\leftarrow g + \lambda\theta \\
        r &\leftarrow \rho\, r + (1-\rho)\, g \odot g \\
        \Delta\theta &= \frac{\sqrt{u + \delta}}{\sqrt{r + \delta}} \odot g \\
        u &\leftarrow \rho\, u + (1-\rho)\, \Delta\theta \odot \Delta\theta \\
        \theta &\leftarrow \theta - \epsilon\, \Delta\theta

    Arguments and symbols:

    - ``lr`` → ε, a factor on the step (Zeiler's method has none: ε = 1, the default).
    - ``rho`` → ρ, the decay rate of both moving averages.
    - ``eps`` → δ; here it also sets the size of the very first steps, √δ / √(r + δ).
    - ``weight_decay`` → λ, adds λθ to g.
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state``: ``'square_avg'`` → r = E[g²], ``'acc_delta'`` → u = E[Δθ²],
      ``'step'`` → t (counted, not used).

    Reference: Zeiler (2012), *ADADELTA: an adaptive learning rate method*,
    arXiv:1212.5701, Algorithm 1.

    Conventions that differ between sources:

    - δ sits *inside* both roots, RMS[y] = √(E[y²] + δ), as in Zeiler's paper (and unlike
      torch's RMSprop/Adam, where it is outside).
    - u is updated with the step *before* it is multiplied by ε, so ε rescales the moves
      without changing what the method remembers.
    - Zeiler writes the step as Δx = −(RMS[Δx]/RMS[g]) g and adds it; we keep Δθ without the
      sign and subtract, like torch.

    Example (the first step is √δ / √((1 − ρ)g² + δ) ⊙ g, tiny: AdaDelta starts slowly):

    >>> theta, state = torch.zeros(1, dtype=torch.float64), {}
    >>> adadelta_update(theta, torch.tensor([1.0], dtype=torch.float64), state)
    >>> round(theta.item(), 6)
    -0.003162
    """
    if not state:
        state["step"] = 0
        state["square_avg"] = torch.zeros_like(theta)  # r₀ = 0
        state["acc_delta"] = torch.zeros_like(theta)  # u₀ = 0
    state["step"] += 1
    r, u = state["square_avg"], state["acc_delta"]

    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(theta, alpha=weight_decay)

    r.mul_(rho).addcmul_(g, g, value=1 - rho)  # r ← ρr + (1 − ρ) g ⊙ g
    rms_g = r.add(eps).sqrt_()  # RMS[g] = √(r + δ)
    rms_delta = u.add(eps).sqrt_()  # RMS[Δθ] of the previous steps = √(u + δ)
    delta = rms_delta.div_(rms_g).mul_(g)  # Δθ = RMS[Δθ] / RMS[g] ⊙ g
    u.mul_(rho).addcmul_(delta, delta, value=1 - rho)  # u ← ρu + (1 − ρ) Δθ ⊙ Δθ
    theta.add_(delta, alpha=-lr)  # θ ← θ − εΔθ


class Adadelta(FirstOrderOptimizer):
    """AdaDelta, as ``torch.optim.Adadelta``; the math is :func:`adadelta_update`."""

    update = staticmethod(adadelta_update)

    def __init__(
        self,
        params,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_unit_interval("rho", rho)
        check_eps(eps)
        check_nonnegative("weight_decay", weight_decay)
        defaults = dict(lr=lr, rho=rho, eps=eps, weight_decay=weight_decay,
                        maximize=maximize)
        super().__init__(params, defaults)
