r"""Nonlinear conjugate gradients (Nocedal & Wright, 2006, §5.2).

Linear CG minimises a quadratic with directions d_k = −g_k + β_k d_{k−1} that are conjugate
(d_iᵀH d_j = 0) and exact steps along them.  Nonlinear CG keeps the recipe for any J: the same
direction update, a line search for the step, and a β that needs only gradients:

.. math::

    \beta^\mathrm{FR}_k = \frac{g_k^\top g_k}{g_{k-1}^\top g_{k-1}}, \qquad
    \beta^\mathrm{PR+}_k = \max\Bigl(0,\ \frac{g_k^\top (g_k - g_{k-1})}{g_{k-1}^\top g_{k-1}}\Bigr)

(Fletcher–Reeves; Polak–Ribière, clipped at 0, N&W eq. 5.45).  On a quadratic with exact line
searches both equal linear CG's β (then g_kᵀg_{k−1} = 0), so the iterates are linear CG's.
Elsewhere PR+ restarts by itself (β = 0 makes d = −g) when the new gradient has little to do
with the old one; FR does not, and can crawl.

:class:`NonlinearCG` takes one iteration per ``step(closure)``: the direction, then torch's
strong Wolfe line search (the one ``torch.optim.LBFGS`` and our :class:`~course_lib.optim.
lbfgs.LBFGS` use) from the initial step t₀ = t_{k−1}·g_{k−1}ᵀd_{k−1} / g_kᵀd_k (N&W eq. 3.60),
with c₂ = 0.1: CG needs a more exact line search than a quasi-Newton method (c₂ = 0.9) for its
directions to stay descent directions.  Memory: two vectors (d and the previous g), against
L-BFGS's 2ℓ.  Like LBFGS it is not in ``OPTIMIZERS``: its ``step`` needs a closure.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch.optim.lbfgs import _strong_wolfe  # torch's line search (Nocedal & Wright Alg. 3.5)

from course_lib.optim._base import FlatClosureOptimizer, check_lr

__all__ = ["NonlinearCG", "BETAS"]

BETAS = ("PR+", "FR")


class NonlinearCG(FlatClosureOptimizer):
    r"""Nonlinear conjugate gradients, one iteration per ``step(closure)``.

    Arguments:
        lr: scales the very first trial step, t₀ = min(1, 1/‖g‖₁)·lr (the first direction −g has
            no natural length); later trial steps come from the previous step (eq. 3.60).
        beta: ``"PR+"`` (default) or ``"FR"``, the formulas above.
        c2: the strong Wolfe curvature constant, |g(θ + t d)ᵀd| ≤ c₂|gᵀd|, 0 < c₂ < 1 (the
            sufficient-decrease constant is c₁ = min(10⁻⁴, c₂/2)); a tiny c₂ asks for an
            exact line search.
        max_ls: the most evaluations of the closure one line search may take.
        restart: also restart (d = −g) every ``restart`` iterations; None never.

    Whenever d is not a descent direction (gᵀd ≥ 0) the iteration restarts from −g.  Only one
    parameter group; the parameters are treated as one flat vector θ.  ``state[...]`` counts
    ``func_evals`` (closure calls) and ``restarts``.
    """

    def __init__(self, params, lr: float = 1.0, beta: str = "PR+", c2: float = 0.1,
                 max_ls: int = 25, restart: int | None = None) -> None:
        check_lr(lr)
        if beta not in BETAS:
            raise ValueError(f"Invalid beta: {beta!r} (expected one of {BETAS})")
        if not 0 < c2 < 1:
            raise ValueError(f"Invalid c2: {c2} (the strong Wolfe conditions need 0 < c2 < 1)")
        if not isinstance(max_ls, int) or max_ls < 1:
            raise ValueError(f"Invalid max_ls: {max_ls} (expected an int >= 1)")
        if restart is not None and (not isinstance(restart, int) or restart < 1):
            raise ValueError(f"Invalid restart: {restart} (expected None or an int >= 1)")
        super().__init__(params, dict(lr=lr, beta=beta, c2=c2, max_ls=max_ls, restart=restart))

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """One iteration; ``closure`` zeroes the gradients, evaluates J, calls ``backward`` and
        returns J.  Returns J before the step."""
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        state.setdefault("restarts", 0)

        first_loss = closure()
        state["func_evals"] += 1
        loss = float(first_loss.detach())
        g = self._flat_grad()
        gg = g @ g
        if gg == 0:
            return first_loss
        d_prev, g_prev, t_prev, slope_prev = (state.get(k) for k in ("d", "g", "t", "slope"))
        k = state["n_iter"]
        restart = group["restart"]
        if d_prev is None or (restart is not None and k % restart == 0):
            d, t = -g, min(1.0, 1.0 / float(g.abs().sum())) * group["lr"]
        else:
            if group["beta"] == "FR":
                beta = gg / (g_prev @ g_prev)
            else:
                beta = torch.clamp((g @ (g - g_prev)) / (g_prev @ g_prev), min=0.0)
            d = -g + beta * d_prev
            slope = g @ d
            if slope >= 0:  # not a descent direction: start again from −g
                d = -g
                state["restarts"] += 1
            t = float(t_prev * slope_prev / (g @ d))
        slope = g @ d
        theta = self._get()
        _, _, t, n_evals = _strong_wolfe(
            lambda x, t_, d_: self._evaluate_at(closure, x, t_, d_),
            theta, t, d, loss, g, slope, c1=min(1e-4, group["c2"] / 2), c2=group["c2"],
            max_ls=group["max_ls"])
        self._add(t, d)
        state["func_evals"] += n_evals
        state["n_iter"] = k + 1
        state.update(d=d, g=g, t=t, slope=slope)
        return first_loss
