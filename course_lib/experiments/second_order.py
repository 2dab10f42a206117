r"""Chapter 15 — Second-order methods: Newton, Hessian-free, BFGS / L-BFGS, and the Hessian of a
real network (Goodfellow et al., 2016, §8.6; Nocedal & Wright, 2006).

What lives elsewhere and is imported here (one home per concept):

- ``landscapes.newton_step`` / ``newton_path`` — (damped, saddle-free) Newton steps on toy J;
- ``experiments.conditioning.newton_cost`` — memory and flops of one Newton step;
- ``experiments.saddles.saddle_methods`` — Newton is attracted to a saddle, saddle-free is not;
- ``experiments.momentum.conjugate_gradient`` — linear CG (on a matrix or on v ↦ Hv);
- ``curvature.make_hvp`` / ``lanczos_eigenvalues`` / ``hessian_spectrum_density`` — HVPs;
- ``optim.lbfgs`` — our L-BFGS (checked against ``torch.optim.LBFGS``) and the BFGS update;
- ``optim.ncg`` — our nonlinear CG (checked against linear CG on a quadratic).

Settings are the UPPERCASE constants below; every experiment that costs more than a second
is a :func:`~course_lib.utils.shared_result`.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from course_lib.curvature import (hessian_matrix, hessian_spectrum_density, lanczos_eigenvalues,
                                  make_hvp)
from course_lib.data import mnist1d
from course_lib.experiments.conditioning import newton_cost
from course_lib.experiments.momentum import conjugate_gradient, error_norms, steps_to_accuracy
from course_lib.landscapes import Landscape, Quadratic, Rosenbrock, newton_step
from course_lib.models import mlp
from course_lib.optim import SGD, Adam
from course_lib.optim.lbfgs import LBFGS, bfgs_inverse_update, lbfgs_direction
from course_lib.optim.ncg import NonlinearCG
from course_lib.utils import shared_result

__all__ = [
    "NEWTON_SIZES", "newton_costs", "newton_errors", "convergence_orders",
    "levenberg_marquardt_path", "damping_comparison",
    "SOFTMAX", "softmax_problem", "newton_cg", "hessian_free_run", "hessian_free_check",
    "lbfgs_run", "ncg_run", "closure_run", "ncg_matches_linear_cg", "CD", "coordinate_descent",
    "coordinate_descent_race", "scipy_cg_mlp", "torch_agreement", "median_steps", "best_of_grid", "softmax_newton", "two_loop_check", "barzilai_borwein",
    "QUAD", "quadratic_race", "MLP", "mlp_problem", "mlp_race",
    "SPECTRUM", "hessian_spectrum", "GN", "gauss_newton_vs_hessian",
    "MEMORIES", "memory_sweep", "plot_newton_errors", "plot_race", "plot_spectrum", "explorer_figure",
]

# ----------------------------------------------------------------------------------------
# 15.1 Newton's method
# ----------------------------------------------------------------------------------------
NEWTON_SIZES = (10_000, 1_000_000, 100_000_000)  #: P of a small MLP, a ResNet-ish, an LLM-ish net
NEWTON_STEPS = 8            #: Newton steps on Rosenbrock from its usual start (−1.2, 1)
ERROR_FLOOR = 1e-12         #: errors below this are rounding, not convergence
DAMPINGS = (0.01, 1.0, 100.0)  #: fixed damping α of (H + αI)⁻¹g
LM_START = 1.0              #: Levenberg–Marquardt's initial α
DAMPING_TOL = 1e-10         #: "converged": J(θ) ≤ this
DAMPING_MAX_STEPS = 5000


def newton_costs(sizes=NEWTON_SIZES) -> list:
    """:func:`~course_lib.experiments.conditioning.newton_cost` (float32) for each P."""
    return [newton_cost(int(P)) for P in sizes]


def newton_errors(landscape: Landscape | None = None, start=None,
                  steps: int = NEWTON_STEPS) -> np.ndarray:
    """‖θ_t − θ*‖ along ``steps`` pure Newton steps (default: Rosenbrock from (−1.2, 1))."""
    J = Rosenbrock() if landscape is None else landscape
    theta = (J.start if start is None else torch.as_tensor(start)).to(torch.float64)
    star = J.minimizers[0].to(torch.float64)
    errors = [float((theta - star).norm())]
    for _ in range(steps):
        theta = newton_step(J, theta)
        errors.append(float((theta - star).norm()))
    return np.array(errors)


def convergence_orders(errors, floor: float = ERROR_FLOOR) -> np.ndarray:
    r"""The measured order q_t = log(e_{t+1}/e_t) / log(e_t/e_{t−1}) for every t where all three
    errors lie above ``floor``: q = 1 for linear, q = 2 for quadratic convergence
    (e_{t+1} ≈ C e_t^q)."""
    e = np.asarray(errors, dtype=float)
    out = []
    for t in range(1, len(e) - 1):
        if min(e[t - 1], e[t], e[t + 1]) > floor and e[t] != e[t - 1]:
            out.append(math.log(e[t + 1] / e[t]) / math.log(e[t] / e[t - 1]))
    return np.array(out)


class DampedRun(NamedTuple):
    """``losses`` J(θ_t); ``steps`` to J ≤ DAMPING_TOL (None if never); ``increases`` how many
    accepted steps raised J; ``dampings`` the α used at each step."""

    losses: np.ndarray
    steps: int | None
    increases: int
    dampings: np.ndarray


def _damped_record(losses, dampings) -> DampedRun:
    losses = np.array(losses)
    hit = np.flatnonzero(losses <= DAMPING_TOL)
    return DampedRun(losses, int(hit[0]) if hit.size else None,
                     int((np.diff(losses) > 0).sum()), np.array(dampings))


def levenberg_marquardt_path(landscape: Landscape | None = None, start=None,
                             damping: float = LM_START, adaptive: bool = True,
                             max_steps: int = DAMPING_MAX_STEPS) -> DampedRun:
    r"""Damped Newton θ ← θ − (H + αI)⁻¹g, stopped at J ≤ ``DAMPING_TOL``.

    With ``adaptive`` (Levenberg, 1944; Marquardt, 1963, in the trust-region spirit of
    Nocedal & Wright §10.3): a step that lowers J is taken and α ← α/10 (trust the quadratic
    model more); one that does not is refused and α ← 10α (closer to a short gradient step,
    ≈ g/α).  Without, α stays fixed.  Default: Rosenbrock from (−1.2, 1).
    """
    J = Rosenbrock() if landscape is None else landscape
    theta = (J.start if start is None else torch.as_tensor(start)).to(torch.float64)
    losses, dampings = [float(J.value(theta))], []
    while len(dampings) < max_steps and losses[-1] > DAMPING_TOL:
        trial = newton_step(J, theta, damping=damping)
        value = float(J.value(trial))
        if adaptive and not value < losses[-1]:
            damping *= 10.0  # refused: θ stays, the step is counted
            dampings.append(damping)
            losses.append(losses[-1])
            continue
        dampings.append(damping)
        theta = trial
        losses.append(value)
        if adaptive:
            damping /= 10.0
    return _damped_record(losses, dampings)


def damping_comparison(dampings=DAMPINGS) -> dict[str, DampedRun]:
    """Pure Newton, fixed damping α for each of ``dampings``, and adaptive LM on Rosenbrock."""
    runs = {"Newton (α = 0)": levenberg_marquardt_path(damping=0.0, adaptive=False)}
    for a in dampings:
        runs[f"damped, α = {a:g}"] = levenberg_marquardt_path(damping=a, adaptive=False)
    runs["Levenberg–Marquardt (adaptive α)"] = levenberg_marquardt_path()
    return runs


# ----------------------------------------------------------------------------------------
# 15.2 Hessian-free Newton: conjugate gradients on Hessian-vector products
# ----------------------------------------------------------------------------------------
#: L2-regularised softmax regression on MNIST-1D, float64: convex, H positive definite
SOFTMAX = dict(num_samples=1000, weight_decay=1e-3, grad_tol=1e-10, max_outer=30)
SOFTMAX_NEWTON_STEPS = 9


class SoftmaxProblem(NamedTuple):
    X: torch.Tensor
    y: torch.Tensor
    weight_decay: float

    @property
    def n_params(self) -> int:
        return self.X.shape[1] * 10 + 10

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the linear scores + λ‖θ‖²/2 (θ = [W, b] flat; the bias is
        decayed too, or adding a constant to every score would be a flat direction)."""
        d = self.X.shape[1]
        W, b = theta[: d * 10].view(d, 10), theta[d * 10:]
        return (F.cross_entropy(self.X @ W + b, self.y)
                + 0.5 * self.weight_decay * (theta * theta).sum())

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        r"""H in closed form: with x̃ = [x, 1] and p the softmax of example n's scores,
        H = (1/N) Σ_n x̃x̃ᵀ ⊗ (diag p − ppᵀ) + λI (θ = [W; b] is the (d+1, 10) matrix
        [W; bᵀ] flattened by rows)."""
        d = self.X.shape[1]
        W, b = theta[: d * 10].view(d, 10), theta[d * 10:]
        p = torch.softmax(self.X @ W + b, dim=1)
        A = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        Xt = torch.cat([self.X, torch.ones(len(self.X), 1, dtype=self.X.dtype)], dim=1)
        H = torch.einsum("ni,nj,nkl->ikjl", Xt, Xt, A).reshape(self.n_params, self.n_params)
        return H / len(self.X) + self.weight_decay * torch.eye(self.n_params, dtype=H.dtype)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.func.grad(self.loss)(theta)


def softmax_problem(num_samples: int = SOFTMAX["num_samples"],
                    weight_decay: float = SOFTMAX["weight_decay"]) -> SoftmaxProblem:
    """MNIST-1D training set (float64) and the weight decay λ of the softmax regression."""
    data = mnist1d(num_samples)
    return SoftmaxProblem(data.X_train.double(), data.y_train, float(weight_decay))


class NewtonCGRun(NamedTuple):
    """Per outer iteration: ``grad_norms`` ‖g‖ (one more than iterations), ``cg_steps`` the
    HVPs CG used; ``grad_evals`` gradients computed in all (line search included)."""

    grad_norms: np.ndarray
    cg_steps: np.ndarray
    grad_evals: int

    @property
    def hvps(self) -> int:
        return int(self.cg_steps.sum())


def newton_cg(loss: Callable[[torch.Tensor], torch.Tensor], theta0: torch.Tensor,
              grad_tol: float = SOFTMAX["grad_tol"], max_outer: int = SOFTMAX["max_outer"],
              forcing: Callable[[float], float] | None = None) -> NewtonCGRun:
    r"""Truncated (Hessian-free) Newton: solve H d = −g by conjugate gradients on HVPs,
    stopped at ‖Hd + g‖ ≤ η‖g‖ with η = min(0.5, √‖g‖) (Nocedal & Wright Alg. 7.1, a
    superlinear forcing sequence), then θ ← θ + t d with t from backtracking (halve until J
    decreases by ≥ 10⁻⁴·t·|gᵀd|).  Needs H positive definite (a convex J), as CG does;
    Martens (2010) uses the Gauss–Newton matrix with damping to get there on networks.
    """
    forcing = forcing or (lambda gn: min(0.5, math.sqrt(gn)))
    theta = theta0.detach().clone().to(torch.float64)
    norms, cg_steps, evals = [], [], 0
    for _ in range(max_outer + 1):
        th = theta.clone().requires_grad_(True)
        value = loss(th)
        matvec = make_hvp(value, [th])
        g = torch.autograd.grad(value, th, retain_graph=True)[0].detach()
        evals += 1
        gn = float(g.norm())
        norms.append(gn)
        if gn <= grad_tol or len(cg_steps) == max_outer:
            break
        res = conjugate_gradient(lambda v: matvec(torch.from_numpy(v)).numpy(), -g.numpy(),
                                 tol=forcing(gn))
        d = torch.from_numpy(res.x)
        cg_steps.append(res.iterations)
        t, slope, J0 = 1.0, float(g @ d), float(value.detach())
        while True:
            evals += 1
            if float(loss(theta + t * d)) <= J0 + 1e-4 * t * slope or t < 1e-10:
                break
            t /= 2
        theta = theta + t * d
    return NewtonCGRun(np.array(norms), np.array(cg_steps, dtype=int), evals)


@shared_result
def softmax_newton(problem: SoftmaxProblem | None = None, steps: int = SOFTMAX_NEWTON_STEPS
                   ) -> np.ndarray:
    """‖g_t‖ along pure Newton steps θ ← θ − H⁻¹g (full Hessian, unit steps) from θ = 0."""
    p = softmax_problem() if problem is None else problem
    theta = torch.zeros(p.n_params, dtype=torch.float64)
    norms = []
    for _ in range(steps + 1):
        g = p.grad(theta)
        norms.append(float(g.norm()))
        theta = theta - torch.linalg.solve(p.hessian(theta), g)
    return np.array(norms)


@shared_result
def hessian_free_run() -> NewtonCGRun:
    """:func:`newton_cg` on the softmax regression from θ = 0 (the chapter's run)."""
    p = softmax_problem()
    return newton_cg(p.loss, torch.zeros(p.n_params, dtype=torch.float64))


@shared_result
def hessian_free_check(problem: SoftmaxProblem | None = None) -> dict:
    r"""One Newton step on the softmax regression at θ = 0, two ways: solving with the full
    (P, P) Hessian, and CG on HVPs without it.  Returns P, the HVPs CG needed for a relative
    residual of 10⁻¹⁰, and the relative difference of the two steps."""
    p = softmax_problem() if problem is None else problem
    th = torch.zeros(p.n_params, dtype=torch.float64, requires_grad=True)
    H = p.hessian(th.detach())
    g = torch.autograd.grad(p.loss(th), th)[0]
    exact = torch.linalg.solve(H, -g)
    matvec = make_hvp(p.loss(th), [th])
    res = conjugate_gradient(lambda v: matvec(torch.from_numpy(v)).numpy(), -g.numpy(), tol=1e-10)
    eig = torch.linalg.eigvalsh(H)
    kappa = float(eig[-1] / eig[0])
    rate = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    return dict(n_params=p.n_params, cg_hvps=res.iterations,
                cg_bound=math.ceil(math.log(2 / 1e-10) / -math.log(rate)),  # 2·rate^k ≤ 1e-10
                n_at_weight_decay=int((eig - p.weight_decay).abs().le(1e-9).sum()),
                rel_difference=float(np.linalg.norm(res.x - exact.numpy()) / exact.norm()),
                condition_number=float(eig[-1] / eig[0]))


# ----------------------------------------------------------------------------------------
# 15.3 L-BFGS: ours against torch's; Barzilai–Borwein
# ----------------------------------------------------------------------------------------
class QuasiNewtonRun(NamedTuple):
    """Per iteration t = 0, 1, …: ``losses`` J(θ_t), ``grad_norms`` ‖g_t‖, ``evals`` the
    (J, g) evaluations at distinct points used so far; ``path`` θ_t (float64, (T+1, P))."""

    losses: np.ndarray
    grad_norms: np.ndarray
    evals: np.ndarray
    path: np.ndarray


def lbfgs_run(loss: Callable[[torch.Tensor], torch.Tensor], theta0, iterations: int,
              history_size: int = 10, line_search: str | None = "strong_wolfe",
              optimizer=LBFGS, lr: float = 1.0, grad_tol: float = 0.0) -> QuasiNewtonRun:
    """``iterations`` L-BFGS iterations (one ``step`` with ``max_iter=1`` each) of ``optimizer``
    (ours or ``torch.optim.LBFGS``) on θ ↦ ``loss(θ)`` from ``theta0`` (flat, float64).
    Stops early when ‖g‖ ≤ ``grad_tol``.  Repeated evaluations at the same θ are served from a
    cache and not counted."""
    return closure_run(loss, theta0, iterations, lambda params: optimizer(
        params, lr=lr, max_iter=1, max_eval=25, history_size=history_size,
        line_search_fn=line_search, tolerance_grad=0.0, tolerance_change=0.0), grad_tol)


def ncg_run(loss: Callable[[torch.Tensor], torch.Tensor], theta0, iterations: int,
            beta: str = "PR+", c2: float = 0.1, grad_tol: float = 0.0) -> QuasiNewtonRun:
    """``iterations`` iterations of our :class:`~course_lib.optim.ncg.NonlinearCG` on
    θ ↦ ``loss(θ)`` from ``theta0``, as :func:`lbfgs_run`."""
    return closure_run(loss, theta0, iterations,
                       lambda params: NonlinearCG(params, beta=beta, c2=c2), grad_tol)


def closure_run(loss: Callable[[torch.Tensor], torch.Tensor], theta0, iterations: int,
                make_optimizer: Callable, grad_tol: float = 0.0) -> QuasiNewtonRun:
    """``iterations`` steps of ``make_optimizer([θ])`` (a closure-taking optimizer, one
    iteration per ``step``) on θ ↦ ``loss(θ)`` from ``theta0`` (flat, float64), recording J,
    ‖g‖, the gradient evaluations so far and θ at each iterate.  Stops early when ‖g‖ ≤
    ``grad_tol``, J is not finite or θ stops moving.  Repeated evaluations at the same θ are
    served from a cache and not counted."""
    theta = torch.nn.Parameter(torch.as_tensor(theta0, dtype=torch.float64).detach().clone())
    opt = make_optimizer([theta])
    cache = {"theta": None, "value": None, "grad": None, "evals": 0}

    def closure():
        if cache["theta"] is not None and torch.equal(cache["theta"], theta.detach()):
            theta.grad = cache["grad"].clone()
            return cache["value"].clone()
        opt.zero_grad()
        value = loss(theta)
        value.backward()
        cache.update(theta=theta.detach().clone(), value=value.detach(),
                     grad=theta.grad.detach().clone(), evals=cache["evals"] + 1)
        return value

    losses, norms, evals, path = [], [], [], []
    for t in range(iterations + 1):
        value = closure()
        losses.append(float(value.detach()))
        norms.append(float(theta.grad.norm()))
        evals.append(cache["evals"])
        path.append(theta.detach().clone().numpy())
        if (t == iterations or norms[-1] <= grad_tol or not math.isfinite(losses[-1])
                or (t > 0 and np.array_equal(path[-1], path[-2]))):  # stalled at rounding level
            break
        opt.step(closure)
    return QuasiNewtonRun(np.array(losses), np.array(norms), np.array(evals), np.array(path))


AGREEMENT = dict(iterations=40, history_size=5)


def torch_agreement(iterations: int = AGREEMENT["iterations"],
                    history_size: int = AGREEMENT["history_size"]) -> dict[str, float]:
    """Max |θ_ours − θ_torch| over all iterates on Rosenbrock from (−1.2, 1), for each line
    search (None: unit steps with lr = 0.5; strong Wolfe: lr = 1)."""
    J = Rosenbrock()
    out = {}
    for ls, lr in ((None, 0.5), ("strong_wolfe", 1.0)):
        a = lbfgs_run(J, J.start, iterations, history_size, ls, LBFGS, lr)
        b = lbfgs_run(J, J.start, iterations, history_size, ls, torch.optim.LBFGS, lr)
        out[str(ls)] = float(np.abs(a.path - b.path).max()) if a.path.shape == b.path.shape \
            else math.inf
    return out


def two_loop_check(dim: int = 20, pairs: int = 6, seed: int = 0) -> float:
    """Relative difference between the two-loop direction and −H⁻¹g with H⁻¹ built by
    ``pairs`` dense BFGS updates of γI (random pairs with yᵀs > 0, float64)."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(dim, dim, generator=gen, dtype=torch.float64)
    H = A @ A.T + dim * torch.eye(dim, dtype=torch.float64)  # SPD: yᵀs = sᵀHs > 0
    S = [torch.randn(dim, generator=gen, dtype=torch.float64) for _ in range(pairs)]
    Y = [H @ s for s in S]
    g = torch.randn(dim, generator=gen, dtype=torch.float64)
    gamma = float(S[-1] @ Y[-1] / (Y[-1] @ Y[-1]))
    H_inv = gamma * torch.eye(dim, dtype=torch.float64)
    for s, y in zip(S, Y):
        H_inv = bfgs_inverse_update(H_inv, s, y)
    dense = -H_inv @ g
    return float((lbfgs_direction(g, S, Y, gamma) - dense).norm() / dense.norm())


def barzilai_borwein(H, e0, tol: float, max_steps: int = 100_000) -> int | None:
    r"""Gradient descent with the Barzilai & Borwein (1988) step ε_k = sᵀs / sᵀy on
    J(θ) = ½ eᵀHe (e = θ − θ*): steps until ‖e_t‖ ≤ tol·‖e_0‖ (None if never).  ``H`` an
    (n, n) matrix or the (n,) eigenvalues of a diagonal one; the first step uses the exact
    line search ε₀ = gᵀg / gᵀHg."""
    H = np.asarray(H, dtype=np.float64)
    matvec = (lambda v: H * v) if H.ndim == 1 else (lambda v: H @ v)
    e = np.asarray(e0, dtype=np.float64).copy()
    g = matvec(e)
    lr = float(g @ g / (g @ matvec(g)))
    target = tol * np.linalg.norm(e)
    for t in range(1, max_steps + 1):
        e_new = e - lr * g
        g_new = matvec(e_new)
        s, y = e_new - e, g_new - g
        e, g = e_new, g_new
        if np.linalg.norm(e) <= target:
            return t
        lr = float(s @ s / (s @ y))
    return None


# ----------------------------------------------------------------------------------------
# 15.4 Iterations to a tolerance: GD, Adam, CG, BB, L-BFGS
# ----------------------------------------------------------------------------------------
#: the ill-conditioned quadratic: κ = 10³, n = 100, a random rotation; "converged" at
#: ‖θ − θ*‖ ≤ tol·‖θ₀ − θ*‖
QUAD = dict(condition_number=1000.0, dim=100, seed=0, tol=1e-4, max_steps=20_000,
            adam_max_steps=4000, lbfgs_max_steps=300,
            gd_factors=(0.8, 0.9, 1.0, 1.05), adam_lrs=(0.3, 1.0, 3.0),
            history_size=10, bb_seeds=(0, 1, 2, 3, 4))


def _quadratic() -> Quadratic:
    return Quadratic(QUAD["condition_number"], dim=QUAD["dim"], seed=QUAD["seed"])


def _steps_to(errors, tol) -> int | None:
    hit = np.flatnonzero(np.asarray(errors) <= tol * errors[0])
    return int(hit[0]) if hit.size else None


def _first_order_errors(J: Quadratic, opt_cls, lr: float, steps: int, tol: float,
                        **hyper) -> np.ndarray:
    theta = torch.nn.Parameter(J.start.clone())
    opt = opt_cls([theta], lr=lr, **hyper)
    star = J.minimizers[0]
    errors = [float((theta.detach() - star).norm())]
    for _ in range(steps):
        opt.zero_grad()
        theta.grad = J.grad(theta.detach())
        opt.step()
        errors.append(float((theta.detach() - star).norm()))
        if errors[-1] <= tol * errors[0] or not math.isfinite(errors[-1]):
            break
    return np.array(errors)


@shared_result
def quadratic_race() -> dict:
    r"""Iterations (and gradient evaluations / HVPs) to ‖θ − θ*‖ ≤ tol‖θ₀ − θ*‖ on ``QUAD``'s
    quadratic: GD with ε = f·2/(λ_min + λ_max) for f in ``gd_factors``, Adam for each of
    ``adam_lrs`` (β = (0.9, 0.999)), Barzilai–Borwein, CG (= one Hessian-free Newton step),
    L-BFGS (ours, strong Wolfe, ℓ = ``history_size``).  Returns name → dict with ``steps``
    (best of the grid for GD and Adam), ``evals``, ``grid`` (value → steps) and ``errors``."""
    J = _quadratic()
    tol, cap = QUAD["tol"], QUAD["max_steps"]
    lam = J.eigenvalues.numpy()
    e0 = (J.start - J.minimizers[0]).numpy()
    out = {}
    grid = {f: steps_to_accuracy("gd", J.H.numpy(), e0, tol, cap, lr=f * 2 / (lam[0] + lam[-1]),
                                 momentum=0.0) for f in QUAD["gd_factors"]}
    best = min((f for f in grid if grid[f] is not None), key=grid.get)
    errors = error_norms("gd", J.H.numpy(), e0, grid[best], lr=best * 2 / (lam[0] + lam[-1]),
                         momentum=0.0)
    out["GD"] = dict(steps=grid[best], evals=grid[best], grid=grid, best=best, errors=errors)
    grid, best = {}, None
    for lr in QUAD["adam_lrs"]:
        errors = _first_order_errors(J, Adam, lr, QUAD["adam_max_steps"], tol)
        grid[lr] = _steps_to(errors, tol)
        if grid[lr] is not None and (best is None or grid[lr] < grid[best]):
            best = lr
    errors = _first_order_errors(J, Adam, best, QUAD["adam_max_steps"], tol)
    out["Adam"] = dict(steps=grid[best], evals=grid[best], grid=grid, best=best, errors=errors)
    # BB is not monotone and amplifies rounding: run it in H's eigenbasis (GD-type methods
    # commute with the rotation), where H is diagonal and each product is exact per entry
    # BB's count depends on the start's eigen-coordinates: the median over QUAD["bb_seeds"]
    # (rotations and starts of the same spectrum; measured 99–157 over seeds 0–4)
    per_seed = []
    for seed in QUAD["bb_seeds"]:
        Js = Quadratic(QUAD["condition_number"], dim=QUAD["dim"], seed=seed)
        per_seed.append(barzilai_borwein(Js.eigenvalues.numpy(),
                                         Js.R.T.numpy() @ (Js.start - Js.minimizers[0]).numpy(),
                                         tol))
    bb = int(np.median(per_seed))
    out["Barzilai–Borwein"] = dict(steps=bb, evals=bb, per_seed=per_seed)
    cg_err = np.asarray(error_norms("cg", J.H.numpy(), e0, cap))
    out["CG (Hessian-free)"] = dict(steps=_steps_to(cg_err, tol), evals=_steps_to(cg_err, tol),
                                    errors=cg_err)
    run = lbfgs_run(J, J.start, QUAD["lbfgs_max_steps"], QUAD["history_size"])
    err = np.linalg.norm(run.path - J.minimizers[0].numpy(), axis=1)
    steps = _steps_to(err, tol)
    out["L-BFGS"] = dict(steps=steps, evals=int(run.evals[steps]), errors=err)
    return out


def ncg_matches_linear_cg(iterations: int | None = None) -> dict:
    """Nonlinear CG (ours, PR+ and FR) with an exact line search (strong Wolfe, c₂ = 10⁻¹⁰) on
    ``QUAD``'s quadratic against linear CG (:func:`~course_lib.experiments.momentum.
    conjugate_gradient` from the same θ₀): the largest ‖θ_t − θ_t^CG‖ / ‖θ₀ − θ*‖ over the
    iterates until linear CG reaches ``QUAD['tol']`` (or ``iterations``), and each one's
    iterations and gradient evaluations to that tolerance.  Equal up to rounding: on a
    quadratic with exact steps both β formulas are linear CG's."""
    J = _quadratic()
    H, start, opt = J.H.numpy(), J.start.numpy(), J.minimizers[0].numpy()
    e0 = start - opt
    cg = np.asarray(error_norms("cg", H, e0, 4 * QUAD["dim"]))
    n = iterations if iterations is not None else _steps_to(cg, QUAD["tol"])
    cg_iterates = [conjugate_gradient(H, H @ opt, x0=start, tol=1e-300, max_iter=t).x
                   for t in range(n + 1)]
    out = {"CG": dict(steps=_steps_to(cg, QUAD["tol"]))}
    for beta in ("PR+", "FR"):
        run = ncg_run(J, J.start, n + 5, beta=beta, c2=1e-10)
        m = min(n + 1, len(run.path))
        diff = max(np.linalg.norm(run.path[t] - cg_iterates[t]) for t in range(m))
        err = np.linalg.norm(run.path - opt, axis=1)
        steps = _steps_to(err, QUAD["tol"])
        out[beta] = dict(max_difference=float(diff / np.linalg.norm(e0)), steps=steps,
                         evals=None if steps is None else int(run.evals[steps]))
    return out


# Coordinate descent (Wright, 2015; Sun's overview §7): one coordinate at a time, exactly
#: epochs: one epoch is n coordinate steps, about the cost of one gradient of a dense quadratic
CD = dict(orders=("cyclic", "shuffled", "random"), seeds=(0, 1, 2, 3, 4), max_epochs=10_000,
          rotation_seeds=(0, 1, 2, 3, 4, 5))


def coordinate_descent(H, e0, max_epochs: int, order: str = "cyclic", seed: int = 0,
                       tol: float | None = None) -> np.ndarray:
    r"""Exact coordinate minimisation of J = ½ eᵀHe, e = θ − θ* (H symmetric positive
    definite): step i sets ∂J/∂e_i = (He)_i to 0, e_i ← e_i − (He)_i / H_ii, and updates
    r = He with one column of H (O(n) per step).  ``order`` per epoch of n steps: ``"cyclic"``
    (1, …, n: Gauss–Seidel), ``"shuffled"`` (a new permutation each epoch) or ``"random"`` (n
    draws with replacement; Nesterov, 2012).  Returns ‖e‖ after each epoch (from e₀), stopping
    once ‖e‖ ≤ ``tol``·‖e₀‖."""
    if order not in CD["orders"]:
        raise ValueError(f"Invalid order: {order!r} (expected one of {CD['orders']})")
    H = np.asarray(H, dtype=np.float64)
    diag = np.diag(H)
    if np.any(diag <= 0):
        raise ValueError("Invalid H: coordinate descent needs a positive diagonal")
    e = np.array(e0, dtype=np.float64)
    r = H @ e
    rng = np.random.default_rng(seed)
    n = len(e)
    norms = [float(np.linalg.norm(e))]
    for _ in range(max_epochs):
        if order == "cyclic":
            idx = range(n)
        elif order == "shuffled":
            idx = rng.permutation(n)
        else:
            idx = rng.integers(0, n, n)
        for i in idx:
            delta = r[i] / diag[i]
            e[i] -= delta
            r -= delta * H[:, i]
        norms.append(float(np.linalg.norm(e)))
        if tol is not None and norms[-1] <= tol * norms[0]:
            break
    return np.array(norms)


@shared_result
def coordinate_descent_race() -> dict:
    """Epochs of :func:`coordinate_descent` to ``QUAD['tol']`` on ``QUAD``'s quadratic (rotated)
    and on the same spectrum in its eigenbasis (axis-aligned): order → epochs per seed (None:
    not reached in ``CD['max_epochs']``); under "rotations", for each of ``CD['rotation_seeds']``
    (other rotations and starts, same spectrum) cyclic CD's epochs, tuned GD's iterations (best
    of ``QUAD['gd_factors']``) and CG's; and the diagonal of the rotated H."""
    J = _quadratic()
    problems = {"rotated": (J.H.numpy(), (J.start - J.minimizers[0]).numpy()),
                "axis-aligned": (np.diag(J.eigenvalues.numpy()),
                                 J.R.T.numpy() @ (J.start - J.minimizers[0]).numpy())}
    out = {}
    for name, (H, e0) in problems.items():
        out[name] = {}
        for order in CD["orders"]:
            seeds = CD["seeds"] if order != "cyclic" else CD["seeds"][:1]
            out[name][order] = [_steps_to(coordinate_descent(H, e0, CD["max_epochs"], order, s,
                                                             QUAD["tol"]), QUAD["tol"])
                                for s in seeds]
    out["rotations"] = {}  # rotation seed → cyclic CD epochs, tuned GD iterations, CG's
    for seed in CD["rotation_seeds"]:
        Js = Quadratic(QUAD["condition_number"], dim=QUAD["dim"], seed=seed)
        H, e0 = Js.H.numpy(), (Js.start - Js.minimizers[0]).numpy()
        lam = Js.eigenvalues.numpy()
        gd = [steps_to_accuracy("gd", H, e0, QUAD["tol"], QUAD["max_steps"],
                                lr=f * 2 / (lam[0] + lam[-1]), momentum=0.0)
              for f in QUAD["gd_factors"]]
        out["rotations"][seed] = dict(
            cyclic=_steps_to(coordinate_descent(H, e0, CD["max_epochs"], "cyclic",
                                                tol=QUAD["tol"]), QUAD["tol"]),
            GD=min(g for g in gd if g is not None),
            CG=steps_to_accuracy("cg", H, e0, QUAD["tol"], QUAD["max_steps"]))
    out["diagonal"] = np.diag(J.H.numpy()).copy()
    out["eigenvalues"] = J.eigenvalues.numpy().copy()
    return out


#: the small MLP on MNIST-1D, full batch, float64
MLP = dict(num_samples=320, hidden=(32,), seeds=(0, 1, 2), target=0.01, max_steps=1000,
           sgd_lrs=(3.0, 10.0, 30.0), adam_lrs=(0.03, 0.1, 0.3), history_size=10,
           lbfgs_max_steps=300)


def mlp_problem(seed: int, num_samples: int | None = None):
    """(model, loss function of the model) on the MNIST-1D training subset, float64."""
    data = mnist1d(num_samples or MLP["num_samples"])
    X, y = data.X_train.double(), data.y_train
    model = mlp(40, MLP["hidden"], 10, activation="tanh",
                generator=torch.Generator().manual_seed(seed)).double()
    return model, (lambda: F.cross_entropy(model(X), y))


def _flat_loss(model, num_samples: int | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """θ (flat) ↦ J(θ) through torch.func.functional_call (the model's own θ untouched)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    data = mnist1d(num_samples or MLP["num_samples"])
    X, y = data.X_train.double(), data.y_train

    def f(theta):
        parts = torch.split(theta, sizes)
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        return F.cross_entropy(torch.func.functional_call(model, params, (X,)), y)
    return f


def _first_order_mlp(seed: int, opt_cls, lr: float) -> int | None:
    model, loss = mlp_problem(seed)
    opt = opt_cls(model.parameters(), lr=lr)
    for t in range(MLP["max_steps"] + 1):
        opt.zero_grad()
        value = loss()
        if float(value.detach()) <= MLP["target"]:
            return t
        if not math.isfinite(float(value.detach())):
            return None
        value.backward()
        opt.step()
    return None


@shared_result
def _to_target(run: QuasiNewtonRun) -> tuple[int | None, int | None]:
    """The first iteration with a loss ≤ ``MLP['target']`` and the gradient evaluations spent
    by then; (None, None) if never."""
    hit = np.flatnonzero(run.losses <= MLP["target"])
    return (int(hit[0]), int(run.evals[hit[0]])) if hit.size else (None, None)


def mlp_race() -> dict:
    r"""Full-batch steps to a training loss ≤ ``MLP['target']`` for each seed: GD and Adam on
    their learning-rate grids, L-BFGS (ours, strong Wolfe) and nonlinear CG (ours, PR+, strong
    Wolfe with c₂ = 0.1) with their gradient evaluations.  Returns {"GD": {lr: [steps per
    seed]}, "Adam": {...}, "L-BFGS": {"steps": [...], "evals": [...], "grad_norms", "losses",
    "theta_norms": [array per seed]}, "nonlinear CG": {"steps", "evals"}, "nonlinear CG, c2 =
    0.9": the same with a loose line search} (None: not reached)."""
    out = {"GD": {}, "Adam": {}}
    for name, cls, lrs in (("GD", SGD, MLP["sgd_lrs"]), ("Adam", Adam, MLP["adam_lrs"])):
        for lr in lrs:
            out[name][lr] = [_first_order_mlp(s, cls, lr) for s in MLP["seeds"]]
    steps, evals, norms, losses, theta_norms = [], [], [], [], []
    for s in MLP["seeds"]:
        model, _ = mlp_problem(s)
        theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
        run = lbfgs_run(_flat_loss(model), theta0, MLP["lbfgs_max_steps"],
                        MLP["history_size"])
        step, n_evals = _to_target(run)
        steps.append(step)
        evals.append(n_evals)
        norms.append(run.grad_norms)
        losses.append(run.losses)
        theta_norms.append(np.linalg.norm(run.path, axis=1))
    out["L-BFGS"] = dict(steps=steps, evals=evals, grad_norms=norms, losses=losses,
                         theta_norms=theta_norms)
    for name, c2 in (("nonlinear CG", 0.1), ("nonlinear CG, c2 = 0.9", 0.9)):
        steps, evals = [], []
        for s in MLP["seeds"]:
            model, _ = mlp_problem(s)
            theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
            run = ncg_run(_flat_loss(model), theta0, MLP["lbfgs_max_steps"], c2=c2)
            step, n_evals = _to_target(run)
            steps.append(step)
            evals.append(n_evals)
        out[name] = dict(steps=steps, evals=evals)
    return out


def scipy_cg_mlp() -> dict:
    """Iterations ("steps") and gradient evaluations ("evals") of SciPy's nonlinear CG (``scipy.optimize.minimize(method="CG")``: PR+ with
    its own Wolfe line search, c₂ = 0.4) to a training loss ≤ ``MLP['target']`` on each seed's
    MLP problem, as in :func:`mlp_race` (None: not within ``MLP['lbfgs_max_steps']``): the
    trusted implementation to compare ours with."""
    from scipy.optimize import minimize

    steps, evals = [], []
    for s in MLP["seeds"]:
        model, _ = mlp_problem(s)
        loss = _flat_loss(model)
        theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach().double()

        def value_and_grad(x):
            theta = torch.tensor(x, dtype=torch.float64, requires_grad=True)
            value = loss(theta)
            value.backward()
            return float(value.detach()), theta.grad.numpy().copy()

        seen, counted = [], []

        def callback(intermediate_result):
            seen.append(intermediate_result.fun)
            counted.append(calls[0])
            if intermediate_result.fun <= MLP["target"]:
                raise StopIteration

        calls = [0]

        def counting(x):
            calls[0] += 1
            return value_and_grad(x)

        minimize(counting, theta0.numpy(), jac=True, method="CG", callback=callback,
                 options=dict(maxiter=MLP["lbfgs_max_steps"], gtol=0.0))
        hit = np.flatnonzero(np.asarray(seen) <= MLP["target"])
        steps.append(int(hit[0]) + 1 if hit.size else None)
        evals.append(int(counted[hit[0]]) if hit.size else None)
    return {"steps": steps, "evals": evals}


def median_steps(values) -> float:
    """Median of steps over seeds, a run that never got there counting as ∞."""
    return float(np.median([math.inf if v is None else v for v in values]))


def best_of_grid(grid: dict) -> tuple[float, float, bool]:
    """(best value, its median steps, whether it lies inside the grid) for a grid
    value → steps per seed, by the median over seeds."""
    keys = sorted(grid)
    med = [median_steps(grid[k]) for k in keys]
    i = int(np.argmin(med))
    return keys[i], med[i], 0 < i < len(keys) - 1


# ----------------------------------------------------------------------------------------
# 15.5 The Hessian of a real network; Gauss–Newton against the Hessian
# ----------------------------------------------------------------------------------------
SPECTRUM = dict(num_samples=4000, seed=0, lanczos_steps=40, train_steps=100)
GN = dict(num_samples=200, hidden=(8,), seed=0, train_steps=40)  # longer runs are chaotic


@shared_result
def hessian_spectrum() -> dict:
    """Top Ritz values (Lanczos, ``lanczos_steps``) and a spectral density of the MLP's Hessian
    at initialisation and after ``train_steps`` L-BFGS iterations (seed ``SPECTRUM['seed']``)."""
    model, _ = mlp_problem(SPECTRUM["seed"], SPECTRUM["num_samples"])
    f = _flat_loss(model, SPECTRUM["num_samples"])
    theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    run = lbfgs_run(f, theta0, SPECTRUM["train_steps"], MLP["history_size"])
    out = {}
    for label, theta in (("init", theta0), ("trained", torch.from_numpy(run.path[-1]))):
        th = theta.clone().requires_grad_(True)
        ritz = lanczos_eigenvalues(lambda: f(th), [th], k=SPECTRUM["lanczos_steps"],
                                   generator=torch.Generator().manual_seed(0))
        grid, density = hessian_spectrum_density(lambda: f(th), [th], k=SPECTRUM["lanczos_steps"],
                                                 n_vectors=3,
                                                 generator=torch.Generator().manual_seed(1))
        out[label] = dict(ritz=ritz.numpy(), grid=grid, density=density,
                          loss=float(f(th).detach()))
    return out


@shared_result
def gauss_newton_vs_hessian() -> dict:
    r"""Full Hessian H and Gauss–Newton matrix G = (1/N) Σ J_iᵀ (diag p_i − p_i p_iᵀ) J_i (J_i the
    Jacobian of example i's scores) of a tiny MLP with cross-entropy, at init and after GN-sized
    training; returns λ_min, λ_max of each and ‖H − G‖/‖H‖ (Frobenius)."""
    data = mnist1d(1000)
    X, y = data.X_train[: GN["num_samples"]].double(), data.y_train[: GN["num_samples"]]
    model = mlp(40, GN["hidden"], 10, activation="tanh",
                generator=torch.Generator().manual_seed(GN["seed"])).double()
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]

    def scores(theta):
        parts = torch.split(theta, sizes)
        return torch.func.functional_call(model, {n: t.view(s) for n, t, s in
                                                  zip(names, parts, shapes)}, (X,))

    def f(theta):
        return F.cross_entropy(scores(theta), y)

    theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    run = lbfgs_run(f, theta0, GN["train_steps"], 10)
    out = {}
    for label, theta in (("init", theta0), ("trained", torch.from_numpy(run.path[-1]))):
        th = theta.clone().requires_grad_(True)
        H = hessian_matrix(lambda: f(th), [th])
        Jac = torch.func.jacrev(scores)(theta)             # (N, 10, P)
        p = torch.softmax(scores(theta), dim=1)              # (N, 10)
        HL = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        G = torch.einsum("nkp,nkl,nlq->pq", Jac, HL, Jac) / len(X)
        G = (G + G.T) / 2
        eh, eg = torch.linalg.eigvalsh(H), torch.linalg.eigvalsh(G)
        out[label] = dict(loss=float(f(theta)), H_min=float(eh[0]), H_max=float(eh[-1]),
                          G_min=float(eg[0]), G_max=float(eg[-1]),
                          residual=float((H - G).norm() / H.norm()), n_params=len(theta))
    return out


# ----------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------
def plot_newton_errors(errors, runs: dict, axes=None):
    """Left: Newton's error per step on Rosenbrock (log scale); right: J(θ_t) of the damped
    runs of :func:`damping_comparison`."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    a, b = axes
    a.semilogy(np.maximum(errors, 1e-17), "o-")
    a.set_xlabel("Newton step t")
    a.set_ylabel("‖θ_t − θ*‖")
    a.set_title("Newton on Rosenbrock: the error squares")
    for name, run in runs.items():
        b.semilogy(np.maximum(run.losses, 1e-17), label=name)
    b.set_xscale("symlog", linthresh=10)
    b.set_xlabel("step")
    b.set_ylabel("J(θ_t)")
    b.set_title("fixed damping is slow; adaptive is fast")
    b.legend(fontsize=7)
    plt.tight_layout()
    return axes


def plot_race(quad: dict, mlp_runs: dict, axes=None):
    """Left: error against iteration on the κ = 10³ quadratic; right: L-BFGS's ‖g‖ per
    iteration on the MLP (each seed)."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    a, b = axes
    for name, r in quad.items():
        if "errors" in r:
            e = np.asarray(r["errors"])
            a.semilogy(e / e[0], label=name)
    a.set_xscale("log")
    a.axhline(QUAD["tol"], color="gray", ls=":")
    a.set_xlabel("iteration")
    a.set_ylabel("‖θ_t − θ*‖ / ‖θ₀ − θ*‖")
    a.set_title(f"quadratic, κ = {QUAD['condition_number']:g}")
    a.legend(fontsize=7)
    for seed, g in zip(MLP["seeds"], mlp_runs["L-BFGS"]["grad_norms"]):
        b.semilogy(g, label=f"seed {seed}")
    b.set_xlabel("L-BFGS iteration")
    b.set_ylabel("‖g‖")
    b.set_title("L-BFGS on the MLP (full batch)")
    b.legend(fontsize=7)
    plt.tight_layout()
    return axes


def plot_spectrum(spec: dict, axes=None):
    """Spectral density (log scale) at init and after training, with the top Ritz values."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, label in zip(axes, ("init", "trained")):
        s = spec[label]
        ax.semilogy(s["grid"], np.maximum(s["density"], 1e-8))
        for r in s["ritz"][-10:]:
            ax.axvline(r, color="tab:red", lw=0.6, alpha=0.6)
        ax.set_ylim(1e-6, None)
        ax.set_xlabel("eigenvalue of H")
        ax.set_ylabel("density")
        ax.set_title(f"{label}: J = {s['loss']:.2g}; red: top 10 Ritz values")
    plt.tight_layout()
    return axes


MEMORIES = (5, 10, 20, 50)  #: ℓ of the exercise's sweep (ℓ = 1, 2 are erratic: chaotic runs)


@shared_result
def memory_sweep(memories=MEMORIES) -> dict:
    """Iterations and gradient evaluations of L-BFGS (ours, strong Wolfe) to ‖θ − θ*‖ ≤
    10⁻⁶‖θ₀ − θ*‖ on the widget's quadratic (n = 50, κ = 10³) for each memory ℓ, and CG's
    iterations there (key "CG")."""
    J = Quadratic(1000.0, dim=EXPLORER["dim"], seed=0)
    out = {"CG": steps_to_accuracy("cg", J.H.numpy(), (J.start - J.minimizers[0]).numpy(),
                                   EXPLORER["tol"])}
    for memory in memories:
        run = lbfgs_run(J, J.start, 500, int(memory))
        errors = np.linalg.norm(run.path - J.minimizers[0].numpy(), axis=1)
        first = _steps_to(errors, EXPLORER["tol"])
        out[memory] = (first, int(run.evals[first]))
    return out


EXPLORER = dict(log_kappa=3.0, history_size=5, dim=50, tol=1e-6, max_steps=20_000)


def explorer_figure(log_kappa: float = EXPLORER["log_kappa"],
                    history_size: int = EXPLORER["history_size"], ax=None):
    """Error per iteration on an n = 50 quadratic with κ = 10^log_kappa: GD at its best fixed
    ε = 2/(λ_min + λ_max), CG, and L-BFGS (ours, strong Wolfe) with memory ℓ =
    ``history_size``.  The drawing function of the chapter's widget; returns the iterations
    each needed to 10⁻⁶."""
    import matplotlib.pyplot as plt
    J = Quadratic(10.0 ** log_kappa, dim=EXPLORER["dim"], seed=0)
    lam = J.eigenvalues.numpy()
    e0 = (J.start - J.minimizers[0]).numpy()
    tol, cap = EXPLORER["tol"], EXPLORER["max_steps"]
    errs = {"GD, best ε": np.asarray(error_norms("gd", J.H.numpy(), e0, cap,
                                                 lr=2 / (lam[0] + lam[-1]))),
            "CG": np.asarray(error_norms("cg", J.H.numpy(), e0, min(cap, 4 * EXPLORER["dim"])))}
    run = lbfgs_run(J, J.start, 400, int(history_size),
                    grad_tol=1e-10 * float(J.grad(J.start).norm()))
    errs[f"L-BFGS, ℓ = {int(history_size)}"] = np.linalg.norm(
        run.path - J.minimizers[0].numpy(), axis=1)
    if ax is None:
        _, ax = plt.subplots(figsize=(7.5, 4.2))
    steps = {}
    for name, e in errs.items():
        e = e / e[0]
        steps[name] = _steps_to(e, tol)
        reached = (f"{steps[name]} iterations" if steps[name] is not None
                   else f"not within {len(e) - 1} iterations")
        ax.semilogy(np.maximum(e, 1e-16), label=f"{name}: {reached}")
    ax.axhline(tol, color="gray", ls=":")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("iteration")
    ax.set_ylabel("‖θ_t − θ*‖ / ‖θ₀ − θ*‖")
    ax.set_title(f"κ = {10 ** log_kappa:.3g}, n = {EXPLORER['dim']}: iterations to 10⁻⁶")
    ax.legend(fontsize=8)
    return steps
