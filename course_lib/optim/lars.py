"""LARS: SGD with momentum and a layer-wise trust ratio (You, Gitman & Ginsburg, 2017)."""
from __future__ import annotations

import torch

from course_lib.optim._base import FirstOrderOptimizer, check_lr, check_nonnegative

__all__ = ["LARS", "lars_update", "trust_ratio"]


def trust_ratio(theta_norm: torch.Tensor, update_norm: torch.Tensor) -> torch.Tensor:
    """‖θ‖ / ‖update‖ for one layer, and 1 where either norm is 0.

    At θ = 0 (a bias initialized to zero) the ratio would freeze the layer forever, and at a zero
    update it would divide by zero; both papers' reference implementations fall back to 1 there,
    and so do we.
    """
    ok = (theta_norm > 0) & (update_norm > 0)
    return torch.where(ok, theta_norm / torch.where(ok, update_norm, torch.ones_like(update_norm)),
                       torch.ones_like(theta_norm))


def lars_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1.0,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    trust_coefficient: float = 0.001,
    maximize: bool = False,
) -> None:
    r"""One LARS step on the tensor ``theta`` (one layer's weights or biases), in place.

    .. math::

        \epsilon_\ell &= \epsilon\, c\, \frac{\|\theta\|}{\|g\| + \lambda \|\theta\|}
            \qquad\text{(the layer's local learning rate)} \\
        b &\leftarrow \alpha b + \epsilon_\ell\, (g + \lambda\theta) \\
        \theta &\leftarrow \theta - b

    Arguments and symbols (You et al., 2017, Algorithm 1, in the course's notation):

    - ``lr`` → ε, the global learning rate (the paper's γ_t; a schedule changes it).
    - ``trust_coefficient`` → c (the paper's η), how far one step may move θ relative to ‖θ‖:
      without momentum and weight decay each step has length exactly ε c ‖θ‖.
    - ``momentum`` → α (the paper's m); ``weight_decay`` → λ (the paper's β).
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state``: ``'momentum_buffer'`` → b, ``'trust_ratio'`` → ‖θ‖ / (‖g‖ + λ‖θ‖) of this step
      (1 where θ or the update is 0, see :func:`trust_ratio`), kept for inspection.

    Each tensor is its own "layer": the shell applies the rule to every parameter, biases
    included (the paper does; many implementations exempt biases and normalization layers by
    putting them in a param group with ``trust_coefficient`` handled by plain SGD instead).

    Reference: You, Gitman & Ginsburg (2017), *Large batch training of convolutional networks*,
    arXiv:1708.03888.
    """
    if maximize:
        g = -g
    theta_norm = torch.linalg.vector_norm(theta)
    ratio = trust_ratio(theta_norm, torch.linalg.vector_norm(g) + weight_decay * theta_norm)
    d = g.add(theta, alpha=weight_decay) if weight_decay != 0 else g.clone()
    d.mul_(lr * trust_coefficient * ratio)
    if "momentum_buffer" in state:
        d = state["momentum_buffer"].mul_(momentum).add_(d)
    state["momentum_buffer"] = d
    state["trust_ratio"] = float(ratio)
    state["step"] = state.get("step", 0) + 1
    theta.sub_(d)


class LARS(FirstOrderOptimizer):
    """Layer-wise adaptive rate scaling: :func:`lars_update` on every parameter tensor.

    ``LARS(params, lr=1.0, momentum=0.9, weight_decay=0, trust_coefficient=0.001)``.  torch has
    no LARS; ``tests/test_ch21_data_parallel.py`` checks ours against a hand computation.
    """

    update = staticmethod(lars_update)

    def __init__(self, params, lr: float = 1.0, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, *, maximize: bool = False):
        check_lr(lr)
        check_nonnegative("momentum", momentum)
        check_nonnegative("weight_decay", weight_decay)
        check_nonnegative("trust_coefficient", trust_coefficient)
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                      trust_coefficient=trust_coefficient, maximize=maximize))
