"""SGD with decoupled weight decay (SGDW, Loshchilov & Hutter, 2019)."""
from __future__ import annotations

import torch

from course_lib.optim._base import FirstOrderOptimizer, check_lr, check_nonnegative

__all__ = ["SGDW", "sgdw_update"]


def sgdw_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
) -> None:
    r"""One SGDW step on the tensor ``theta``, in place: the decay acts on θ, outside the momentum.

    .. math::

        \theta &\leftarrow (1 - \epsilon\lambda)\,\theta \\
        b &\leftarrow \begin{cases} g & t = 1 \\ \alpha b + g & t > 1 \end{cases} \\
        \theta &\leftarrow \theta - \epsilon\, b \quad (\alpha > 0), \qquad
        \theta \leftarrow \theta - \epsilon\, g \quad (\alpha = 0)

    Arguments and symbols: ``lr`` → ε, ``momentum`` → α, ``weight_decay`` → λ,
    ``state['momentum_buffer']`` → b (only when α ≠ 0).

    Without momentum this is SGD on J + λ‖θ‖²/2 (``SGD(weight_decay=λ)``): θ − ε(g + λθ) =
    (1 − ελ)θ − εg, the same iterates up to rounding.  With momentum the two differ: SGD's λθ
    enters b and is amplified by 1/(1 − α) like the gradient, SGDW's decay is not.

    Convention: Loshchilov & Hutter (2019, Alg. 1) shrink θ by η_t λ with a schedule multiplier
    η_t separate from ε; like ``torch.optim.AdamW`` (and our AdamW) we shrink by ελ, so λ has the
    same meaning as in ``SGD(weight_decay=λ)``.

    References: Loshchilov & Hutter (2019), *Decoupled weight decay regularization*, ICLR.
    """
    theta.mul_(1 - lr * weight_decay)  # θ ← (1 − ελ)θ
    d = g
    if momentum != 0:
        if "momentum_buffer" not in state:
            d = state["momentum_buffer"] = g.detach().clone()  # b₁ = g₁
        else:
            d = state["momentum_buffer"]
            d.mul_(momentum).add_(g)  # b ← αb + g
    theta.add_(d, alpha=-lr)  # θ ← θ − εd


class SGDW(FirstOrderOptimizer):
    """SGD with decoupled weight decay; the math is :func:`sgdw_update` (torch has no SGDW)."""

    update = staticmethod(sgdw_update)

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0, weight_decay: float = 0) -> None:
        check_lr(lr)
        check_nonnegative("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
