"""LAMB: Adam's direction with a layer-wise trust ratio (You et al., 2020)."""
from __future__ import annotations

import torch

from course_lib.optim._base import (
    FirstOrderOptimizer,
    check_betas,
    check_eps,
    check_lr,
    check_nonnegative,
)
from course_lib.optim.lars import trust_ratio

__all__ = ["LAMB", "lamb_update"]


def lamb_update(
    theta: torch.Tensor,
    g: torch.Tensor,
    state: dict,
    *,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> None:
    r"""One LAMB step on the tensor ``theta`` (one layer's weights or biases), in place.

    .. math::

        s &\leftarrow \beta_1 s + (1-\beta_1)\, g, \qquad
        r \leftarrow \beta_2 r + (1-\beta_2)\, g \odot g \\
        \hat s &= s / (1-\beta_1^t), \qquad \hat r = r / (1-\beta_2^t) \\
        u &= \hat s / (\sqrt{\hat r} + \delta) + \lambda\theta
            \qquad\text{(AdamW's direction)} \\
        \theta &\leftarrow \theta - \epsilon\, \frac{\|\theta\|}{\|u\|}\, u

    so every step moves each layer by exactly ε‖θ‖ (relative step ε), whatever the scale of its
    gradients.  Arguments and symbols (You et al., 2020, Algorithm 2, with φ the identity; the
    moments are named s, r as in the DL book's Algorithm 8.7):

    - ``lr`` → ε (the paper's η_t); ``betas`` → (β₁, β₂); ``eps`` → δ; ``weight_decay`` → λ.
    - ``maximize`` → ascend J instead of descending (g ← −g).
    - ``state``: ``'step'`` → t, ``'exp_avg'`` → s, ``'exp_avg_sq'`` → r,
      ``'trust_ratio'`` → ‖θ‖/‖u‖ of this step (1 where θ or u is 0, see
      :func:`course_lib.optim.lars.trust_ratio`), kept for inspection.

    Reference: You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh (2020),
    *Large batch optimization for deep learning: training BERT in 76 minutes*, ICLR.
    """
    if maximize:
        g = -g
    beta1, beta2 = betas
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(theta)
        state["exp_avg_sq"] = torch.zeros_like(theta)
    state["step"] += 1
    t = state["step"]
    s, r = state["exp_avg"], state["exp_avg_sq"]
    s.mul_(beta1).add_(g, alpha=1 - beta1)
    r.mul_(beta2).addcmul_(g, g, value=1 - beta2)
    u = (s / (1 - beta1 ** t)) / ((r / (1 - beta2 ** t)).sqrt() + eps)
    if weight_decay != 0:
        u.add_(theta, alpha=weight_decay)
    ratio = trust_ratio(torch.linalg.vector_norm(theta), torch.linalg.vector_norm(u))
    state["trust_ratio"] = float(ratio)
    theta.sub_(u.mul_(lr * ratio))


class LAMB(FirstOrderOptimizer):
    """Layer-wise adaptive moments for batch training: :func:`lamb_update` on every tensor.

    ``LAMB(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-6, weight_decay=0)``.  torch has no
    LAMB; ``tests/test_ch21_data_parallel.py`` checks ours against a hand computation.
    """

    update = staticmethod(lamb_update)

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-6, weight_decay: float = 0.0, *, maximize: bool = False):
        check_lr(lr)
        check_eps(eps)
        check_betas(betas)
        check_nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, maximize=maximize))
