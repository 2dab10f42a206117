"""AdaGrad: per-coordinate learning rates from the sum of all past squared gradients."""
from __future__ import annotations

import torch

from course_lib.optim._base import FirstOrderOptimizer, check_eps, check_lr, check_nonnegative

__all__ = ["Adagrad", "adagrad_update"]


def adagrad_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    maximize: bool = False,
) -> None:
    r"""One AdaGrad step on the tensor ``theta``, in place.

    .. math::

        g &\leftarrow g + \lambda\theta \\
        r &\leftarrow r + g \odot g \\
        \theta &\leftarrow \theta - \frac{\epsilon}{1 + (t-1)\,\eta}\;
                 \frac{g}{\sqrt{r} + \delta}

    Arguments and symbols:

    - ``lr`` → ε, the global learning rate.
    - ``lr_decay`` → η, divides ε by 1 + (t − 1)η at step t.
    - ``weight_decay`` → λ, adds λθ to g.
    - ``initial_accumulator_value`` → r₀, the starting value of the sum.
    - ``eps`` → δ, keeps the division finite where r = 0.
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state['sum']`` → r, the running sum of squared gradients; ``state['step']`` → t.

    Reference: Duchi, Hazan & Singer (2011), *Adaptive subgradient methods for online
    learning and stochastic optimization*, JMLR 12.

    Conventions that differ between sources:

    - δ sits *outside* the root, √r + δ (as in torch); the Deep Learning book (Alg. 8.4)
      writes δ + √r too, some texts write √(r + δ).
    - ``lr_decay`` is not in Duchi et al.; it comes from Lua Torch and torch.optim keeps it.
      The decay uses t − 1, so the first step has the full ε.
    - t is incremented *before* it is used: the first update has t = 1.

    Example (the first step moves every coordinate by about ε, whatever the size of g):

    >>> theta, state = torch.zeros(2), {}
    >>> adagrad_update(theta, torch.tensor([10.0, 0.1]), state, lr=0.5)
    >>> theta
    tensor([-0.5000, -0.5000])
    """
    if not state:
        state["step"] = 0
        state["sum"] = torch.full_like(theta, initial_accumulator_value)  # r₀
    state["step"] += 1
    t, r = state["step"], state["sum"]

    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(theta, alpha=weight_decay)

    lr_t = lr / (1 + (t - 1) * lr_decay)  # ε / (1 + (t − 1)η)
    r.addcmul_(g, g)  # r ← r + g ⊙ g
    theta.addcdiv_(g, r.sqrt().add_(eps), value=-lr_t)  # θ ← θ − ε_t g / (√r + δ)


class Adagrad(FirstOrderOptimizer):
    """AdaGrad, as ``torch.optim.Adagrad``; the math is :func:`adagrad_update`."""

    update = staticmethod(adagrad_update)

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_nonnegative("lr_decay", lr_decay)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("initial_accumulator_value", initial_accumulator_value)
        check_eps(eps)
        defaults = dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                        initial_accumulator_value=initial_accumulator_value, eps=eps,
                        maximize=maximize)
        super().__init__(params, defaults)
