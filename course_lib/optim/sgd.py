"""Stochastic gradient descent, with optional (Polyak or Nesterov) momentum."""
from __future__ import annotations

import torch

from course_lib.optim._base import FirstOrderOptimizer, check_lr, check_nonnegative

__all__ = ["SGD", "sgd_update"]


def sgd_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
) -> None:
    r"""One SGD step on the tensor ``theta``, in place.

    .. math::

        g &\leftarrow g + \lambda\theta \\
        b &\leftarrow \begin{cases} g & t = 1 \\ \alpha b + (1-\tau)\, g & t > 1 \end{cases} \\
        \theta &\leftarrow \theta - \epsilon\, d, \qquad
        d = \begin{cases} g & \alpha = 0 \\ b & \text{(Polyak / heavy ball)} \\
                          g + \alpha b & \text{(Nesterov)} \end{cases}

    Arguments and symbols:

    - ``lr`` → ε, the learning rate.
    - ``momentum`` → α; 0 gives plain SGD and keeps no state.
    - ``dampening`` → τ, scales the new gradient in the buffer by (1 − τ).
    - ``weight_decay`` → λ, adds λθ to g (the gradient of λ‖θ‖²/2).
    - ``nesterov`` → use Nesterov's momentum (needs α > 0 and τ = 0).
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state['momentum_buffer']`` → b (only when α ≠ 0).

    References: Robbins & Monro (1951), *A stochastic approximation method*; Polyak (1964),
    *Some methods of speeding up the convergence of iteration methods*; Nesterov (1983);
    Sutskever, Martens, Dahl & Hinton (2013), *On the importance of initialization and
    momentum in deep learning*.

    Conventions that differ between sources:

    - The Deep Learning book (Alg. 8.2) keeps a *velocity* v ← αv − εg, θ ← θ + v, from
      v₀ = 0.  torch (and we) keep b ← αb + (1 − τ)g, θ ← θ − εb.  With a constant ε and
      τ = 0 the two give the same trajectory (v = −εb); they differ when ε changes (in the
      book a new ε only scales the new gradient, here it scales the whole buffer).
    - The buffer starts at b₁ = g₁, not at (1 − τ)g₁: dampening is skipped on the first step
      (torch's convention; with τ = 0 this is what b₀ = 0 would give anyway).
    - Nesterov: the book (Alg. 8.3) and Sutskever et al. evaluate the gradient at the
      look-ahead point θ + αv, which does not fit a loop that computes g at the current
      parameters.  torch (and we) store the look-ahead point itself as the parameters,
      φ = θ + αv, and step along g + αb (Bengio, Boulanger-Lewandowski & Pascanu, 2013): the
      same method, written in φ (``tests/test_optim.py`` checks the two agree).

    Example (one step of plain SGD on a single tensor):

    >>> theta, state = torch.tensor([1.0, -2.0]), {}
    >>> sgd_update(theta, torch.tensor([0.5, 0.5]), state, lr=0.1)
    >>> theta
    tensor([ 0.9500, -2.0500])
    """
    if maximize:
        g = -g
    if weight_decay != 0:
        g = g.add(theta, alpha=weight_decay)  # a new tensor: never modify the caller's .grad

    d = g  # the direction of the step
    if momentum != 0:
        if "momentum_buffer" not in state:
            b = state["momentum_buffer"] = g.detach().clone()  # b₁ = g₁, undamped
        else:
            b = state["momentum_buffer"]
            b.mul_(momentum).add_(g, alpha=1 - dampening)  # b ← αb + (1 − τ)g
        d = g.add(b, alpha=momentum) if nesterov else b

    theta.add_(d, alpha=-lr)  # θ ← θ − εd


class SGD(FirstOrderOptimizer):
    """SGD with optional momentum, as ``torch.optim.SGD``; the math is :func:`sgd_update`."""

    update = staticmethod(sgd_update)

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        check_lr(lr)
        check_nonnegative("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError(
                "Nesterov momentum requires a momentum and zero dampening "
                f"(got momentum={momentum}, dampening={dampening})"
            )
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay, nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)
