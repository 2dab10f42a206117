r"""BFGS and L-BFGS written from the equations (Nocedal & Wright, 2006, ch. 6–7).

A quasi-Newton method keeps an approximation of the *inverse* Hessian built only from
gradients: after a step s = θ_{k+1} − θ_k that changed the gradient by y = g_{k+1} − g_k it
asks for the secant equation H_{k+1}^{-1} y = s.  BFGS's update is the closest symmetric
matrix that satisfies it (Nocedal & Wright eq. 6.17), with ρ = 1 / (yᵀs):

.. math::

    H^{-1}_{k+1} = (I - \rho\, s y^\top)\, H^{-1}_k\, (I - \rho\, y s^\top) + \rho\, s s^\top .

L-BFGS never forms the matrix: it keeps the last ℓ pairs (s_i, y_i) (``history_size``) and
applies the update ℓ times to H₀⁻¹ = γI, γ = sᵀy / yᵀy of the newest pair, inside the
*two-loop recursion* (Nocedal & Wright, Algorithm 7.4), O(ℓP) work and memory.

- :func:`bfgs_inverse_update` — one dense BFGS update (O(P²): small problems only).
- :func:`lbfgs_direction` — the two-loop recursion, d = −H⁻¹g from the stored pairs.
- :class:`LBFGS` — a ``torch.optim.Optimizer`` with the constructor of ``torch.optim.LBFGS``
  whose ``step(closure)`` takes the same iterates (same step-size rule, same stopping tests,
  same pair-skipping rule yᵀs ≤ 10⁻¹⁰); the strong Wolfe line search is torch's own
  (``line_search_fn="strong_wolfe"``), the rest is ours.

It is not in ``OPTIMIZERS``: its ``step`` needs a closure (it evaluates J several times per
step), which the first-order shell does not.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.optim.lbfgs import _strong_wolfe  # torch's line search (Nocedal & Wright Alg. 3.5)

from course_lib.optim._base import FlatClosureOptimizer, check_lr

__all__ = ["LBFGS", "lbfgs_direction", "bfgs_inverse_update", "CURVATURE_THRESHOLD"]

#: a pair (s, y) with yᵀs at or below this is skipped (torch's rule): BFGS needs yᵀs > 0
CURVATURE_THRESHOLD = 1e-10


def bfgs_inverse_update(H_inv: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""The BFGS update of an inverse-Hessian approximation (Nocedal & Wright eq. 6.17).

    .. math::

        H^{-1} \leftarrow (I - \rho s y^\top) H^{-1} (I - \rho y s^\top) + \rho s s^\top,
        \qquad \rho = 1 / (y^\top s).

    The result satisfies the secant equation H⁻¹y = s and stays symmetric positive definite
    when H⁻¹ was and yᵀs > 0.  Returns a new (P, P) matrix; raises if yᵀs ≤ 0.
    """
    ys = float(y @ s)
    if not ys > 0:
        raise ValueError(f"Invalid pair: yᵀs = {ys:.3g} ≤ 0 (BFGS needs positive curvature)")
    rho = 1.0 / ys
    V = torch.eye(len(s), dtype=s.dtype, device=s.device) - rho * torch.outer(y, s)
    return V.T @ H_inv @ V + rho * torch.outer(s, s)


def lbfgs_direction(g: torch.Tensor, s_history: Sequence[torch.Tensor],
                    y_history: Sequence[torch.Tensor], gamma: float = 1.0) -> torch.Tensor:
    r"""The L-BFGS direction d = −H⁻¹g by the two-loop recursion (Nocedal & Wright Alg. 7.4).

    With pairs (s_i, y_i), i = 1 … ℓ, oldest first, and ρ_i = 1 / (y_iᵀs_i)::

        q ← −g
        for i = ℓ … 1:   a_i ← ρ_i s_iᵀq;   q ← q − a_i y_i
        r ← γ q                                   (H₀⁻¹ = γI)
        for i = 1 … ℓ:   b ← ρ_i y_iᵀr;     r ← r + (a_i − b) s_i
        return r

    which equals −H⁻¹g for the matrix that ℓ BFGS updates (:func:`bfgs_inverse_update`) make
    of γI, at a cost of 4ℓP multiply-adds instead of P².
    """
    rho = [1.0 / y.dot(s) for s, y in zip(s_history, y_history)]
    a = [None] * len(rho)
    q = g.neg()
    for i in reversed(range(len(rho))):
        a[i] = (s_history[i] @ q) * rho[i]
        q.add_(y_history[i], alpha=-a[i])         # q ← q − a_i y_i
    r = q * gamma
    for i in range(len(rho)):
        b = (y_history[i] @ r) * rho[i]
        r.add_(s_history[i], alpha=a[i] - b)      # r ← r + (a_i − b) s_i
    return r


class LBFGS(FlatClosureOptimizer):
    r"""L-BFGS with the constructor and the iterates of ``torch.optim.LBFGS``.

    One ``step(closure)`` runs up to ``max_iter`` iterations k = 1, 2, …:

    1. store the pair s = θ_k − θ_{k−1}, y = g_k − g_{k−1} if yᵀs > 10⁻¹⁰ (forget the oldest
       beyond ``history_size`` ℓ pairs) and set γ = sᵀy / yᵀy;
    2. d = :func:`lbfgs_direction` (−g at the very first iteration);
    3. step length t: ``lr`` (at the very first iteration min(1, 1/‖g‖₁)·``lr``, since then
       d = −g has no scale), or the strong Wolfe line search started there;
    4. θ ← θ + t d, then re-evaluate J and g.

    It stops early when max|g| ≤ ``tolerance_grad``, when |J| or max|t d| changes by less than
    ``tolerance_change``, when d is not a descent direction, or after ``max_eval`` evaluations.
    Only one parameter group; the parameters are treated as one flat vector θ.

    The attribute ``state[...]["func_evals"]`` counts evaluations of the closure (each gives J
    and g: one forward and one backward pass).
    """

    def __init__(self, params, lr: float = 1.0, max_iter: int = 20, max_eval: int | None = None,
                 tolerance_grad: float = 1e-7, tolerance_change: float = 1e-9,
                 history_size: int = 100, line_search_fn: str | None = None) -> None:
        check_lr(lr)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        if line_search_fn not in (None, "strong_wolfe"):
            raise ValueError(f"Invalid line_search_fn: {line_search_fn!r} "
                             "(expected None or 'strong_wolfe')")
        if not isinstance(history_size, int) or history_size < 1:
            raise ValueError(f"Invalid history_size: {history_size} (expected an int >= 1)")
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval,
                        tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
                        history_size=history_size, line_search_fn=line_search_fn)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Run up to ``max_iter`` L-BFGS iterations; ``closure`` zeroes the gradients,
        evaluates J, calls ``backward`` and returns J.  Returns J at the start of the step."""
        closure = torch.enable_grad()(closure)
        group = self.param_groups[0]
        lr, max_iter, max_eval = group["lr"], group["max_iter"], group["max_eval"]
        tol_grad, tol_change = group["tolerance_grad"], group["tolerance_change"]
        memory, line_search = group["history_size"], group["line_search_fn"]

        state = self.state[self._params[0]]
        state.setdefault("func_evals", 0)
        state.setdefault("n_iter", 0)
        state.setdefault("s", [])
        state.setdefault("y", [])

        first_loss = closure()
        loss = float(first_loss.detach())
        evals = 1
        state["func_evals"] += 1
        g = self._flat_grad()
        if g.abs().max() <= tol_grad:
            return first_loss

        d, t = state.get("d"), state.get("t")
        gamma = state.get("gamma", 1.0)
        g_prev, loss_prev = state.get("g_prev"), state.get("loss_prev")
        S, Y = state["s"], state["y"]

        for k in range(1, max_iter + 1):
            state["n_iter"] += 1
            if state["n_iter"] == 1:
                d = -g
            else:
                y, s = g - g_prev, d * t
                ys = y @ s
                if ys > CURVATURE_THRESHOLD:
                    if len(S) == memory:
                        S.pop(0), Y.pop(0)
                    S.append(s), Y.append(y)
                    gamma = ys / (y @ y)
                d = lbfgs_direction(g, S, Y, gamma)
            g_prev, loss_prev = g.clone(), loss

            t = (min(1.0, 1.0 / g.abs().sum()) * lr) if state["n_iter"] == 1 else lr
            slope = g @ d  # directional derivative gᵀd: must be negative
            if slope > -tol_change:
                break

            n_evals = 0
            if line_search is not None:
                theta0 = self._get()
                loss, g, t, n_evals = _strong_wolfe(
                    lambda x, t_, d_: self._evaluate_at(closure, x, t_, d_),
                    theta0, t, d, loss, g, slope, max_ls=max_eval - evals)
                self._add(t, d)
                converged = g.abs().max() <= tol_grad
            else:
                self._add(t, d)
                converged = False
                if k != max_iter:
                    with torch.enable_grad():
                        loss = float(closure().detach())
                    g = self._flat_grad()
                    converged = g.abs().max() <= tol_grad
                    n_evals = 1
            evals += n_evals
            state["func_evals"] += n_evals

            if k == max_iter or evals >= max_eval or converged:
                break
            if (d * t).abs().max() <= tol_change or abs(loss - loss_prev) < tol_change:
                break

        state.update(d=d, t=t, gamma=gamma, g_prev=g_prev, loss_prev=loss_prev)
        return first_loss
