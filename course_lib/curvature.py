r"""Curvature of a real network's cost: Hessian-vector products and what they buy.

The Hessian H = ∇²J(θ) of a network with P parameters has P² entries, far too many to
store.  But a product Hv costs about two backward passes (Pearlmutter, 1994, *Fast exact
multiplication by the Hessian*): differentiate the scalar gᵀv, with g = ∇J built by
``torch.autograd.grad(..., create_graph=True)``:

.. math::

    H v = \nabla_\theta \big( \nabla_\theta J(\theta)^\top v \big).

With Hv alone we get the dominant eigenvalue (power iteration), the extreme eigenvalues
(Lanczos), a smoothed eigenvalue density (stochastic Lanczos quadrature) and the
second-order quantities of Deep Learning book §8.2.1 (gᵀHg).

Conventions:

- ``loss`` is a scalar tensor whose graph reaches ``params`` (call it right after the
  forward pass), or a zero-argument callable that returns one.
- ``params`` is an ``nn.Module`` (its parameters that require grad) or an iterable of
  tensors.  Vectors such as v and Hv are *flat*: shape (P,), in the order of ``params``.
- Use float64 when comparing against an explicit Hessian.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch

__all__ = [
    "flatten_grad", "make_hvp", "hvp", "hessian_matrix", "power_iteration", "top_eigenvalue",
    "lanczos", "lanczos_eigenvalues", "lanczos_quadrature", "hessian_spectrum_density",
    "GradientCurvature", "gradient_curvature", "GradientNoise", "minibatch_gradient_noise",
]

MatVec = Callable[[torch.Tensor], torch.Tensor]


def _params(params) -> list[torch.Tensor]:
    if isinstance(params, torch.nn.Module):
        return [p for p in params.parameters() if p.requires_grad]
    return list(params)


def _loss(loss) -> torch.Tensor:
    return loss() if callable(loss) else loss


def _flat(tensors, params) -> torch.Tensor:
    """Concatenate per-parameter tensors into one (P,) vector; None (unused) counts as 0."""
    return torch.cat([(torch.zeros_like(p) if t is None else t).reshape(-1)
                      for t, p in zip(tensors, params)])


def flatten_grad(params) -> torch.Tensor:
    """The ``.grad`` of every parameter, concatenated into one (P,) vector (0 where None)."""
    params = _params(params)
    return _flat([p.grad for p in params], params)


def make_hvp(loss, params) -> MatVec:
    r"""Return the function v ↦ Hv for the Hessian of ``loss`` at the current ``params``.

    The gradient g = ∇J is built once with ``create_graph=True``; each call then runs one
    backward pass through it, ∇(gᵀv), keeping the graph for the next call (Pearlmutter,
    1994).  v and Hv are flat (P,) vectors.
    """
    params = _params(params)
    grads = torch.autograd.grad(_loss(loss), params, create_graph=True, allow_unused=True)
    g = _flat(grads, params)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        if not g.requires_grad:  # the loss is linear in θ: H = 0
            return torch.zeros_like(v)
        Hv = torch.autograd.grad(g, params, grad_outputs=v.to(g), retain_graph=True,
                                 allow_unused=True)
        return _flat(Hv, params).detach()

    return matvec


def hvp(loss, params, v: torch.Tensor) -> torch.Tensor:
    """One Hessian-vector product Hv (flat (P,) vectors); see :func:`make_hvp`."""
    return make_hvp(loss, params)(v)


def hessian_matrix(loss, params) -> torch.Tensor:
    """The full (P, P) Hessian, one HVP per column: H e_i.  Only for tiny models."""
    params = _params(params)
    matvec = make_hvp(loss, params)
    P = sum(p.numel() for p in params)
    eye = torch.eye(P, dtype=params[0].dtype, device=params[0].device)
    H = torch.stack([matvec(e) for e in eye], dim=1)
    return (H + H.T) / 2  # symmetric up to rounding; make it exactly so


def _random_vector(n: int, like: torch.Tensor, generator: torch.Generator | None):
    v = torch.randn(n, generator=generator, dtype=torch.float64).to(like)
    return v / v.norm()


def power_iteration(matvec: MatVec, v0: torch.Tensor, iters: int = 100,
                    tol: float = 1e-10) -> tuple[float, torch.Tensor]:
    r"""The dominant eigenpair (largest |λ|) of a symmetric operator, by power iteration.

    .. math::

        v \leftarrow H v / \|H v\|, \qquad \lambda = v^\top H v \ \ (\text{Rayleigh quotient})

    Stops when λ changes by less than ``tol``·|λ| or after ``iters`` products.  The error
    shrinks like (λ₂/λ₁)^{2k} for the eigenvalue, (λ₂/λ₁)^k for the vector, so a small gap
    needs many iterations; with λ₁ = −λ₂ it does not converge (use :func:`lanczos`).
    Returns (λ, v) with λ signed.
    """
    v = v0 / v0.norm()
    lam = math.nan
    for _ in range(iters):
        w = matvec(v)
        lam_new = float(v @ w)
        norm = w.norm()
        if norm == 0:  # v is in the null space: H v = 0
            return 0.0, v
        v = w / norm
        if abs(lam_new - lam) <= tol * abs(lam_new):
            return lam_new, v
        lam = lam_new
    return lam, v


def top_eigenvalue(loss, params, iters: int = 100, tol: float = 1e-10,
                   generator: torch.Generator | None = None) -> tuple[float, torch.Tensor]:
    """The Hessian eigenvalue of largest magnitude and its (P,) eigenvector, by
    :func:`power_iteration` on HVPs from a random start (drawn with ``generator``)."""
    params = _params(params)
    matvec = make_hvp(loss, params)
    P = sum(p.numel() for p in params)
    return power_iteration(matvec, _random_vector(P, params[0], generator), iters, tol)


def lanczos(matvec: MatVec, v0: torch.Tensor, k: int):
    r"""k steps of the Lanczos process with full reorthogonalisation.

    Builds an orthonormal basis Q = [q₁ … q_m] of the Krylov space span{v₀, Hv₀, …} in which
    H is tridiagonal, T = QᵀHQ with diagonal α and off-diagonal β:

    .. math::

        \beta_j q_{j+1} = H q_j - \alpha_j q_j - \beta_{j-1} q_{j-1}, \qquad
        \alpha_j = q_j^\top H q_j.

    In floating point the q's lose orthogonality as Ritz values converge, so each new
    vector is orthogonalised against all previous ones (twice: "twice is enough", Giraud
    et al., 2005).  Stops early (m < k) if β vanishes: the Krylov space is invariant and
    the eigenvalues of T are exact eigenvalues of H.

    Returns (alpha (m,), beta (m − 1,), Q (m, n)).  The eigenvalues of T (Ritz values)
    approximate the extreme eigenvalues of H first (Lanczos, 1950; Golub & Van Loan §10.1).
    """
    n = v0.numel()
    k = min(k, n)
    Q = torch.zeros(k, n, dtype=v0.dtype, device=v0.device)
    q = v0 / v0.norm()
    alpha, beta = [], []
    scale = 0.0
    for j in range(k):
        Q[j] = q
        w = matvec(q)
        a = w @ q
        alpha.append(a)
        for _ in range(2):  # full reorthogonalisation (also removes α q and β q_prev)
            w = w - Q[: j + 1].T @ (Q[: j + 1] @ w)
        b = w.norm()
        scale = max(scale, abs(float(a)), float(b))
        if j == k - 1 or b <= 1e-12 * scale:
            Q = Q[: j + 1]
            break
        beta.append(b)
        q = w / b
    return torch.stack(alpha), torch.stack(beta) if beta else v0.new_zeros(0), Q


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    return torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)


def lanczos_eigenvalues(loss, params, k: int = 20,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Ritz values (ascending) of k Lanczos steps on the Hessian, from a random start.

    The largest and smallest are accurate estimates of λ_max and λ_min long before
    k reaches P; with k = P (and no early stop) they are all eigenvalues of H.
    """
    params = _params(params)
    P = sum(p.numel() for p in params)
    alpha, beta, _ = lanczos(make_hvp(loss, params), _random_vector(P, params[0], generator), k)
    return torch.linalg.eigvalsh(_tridiagonal(alpha, beta))


def lanczos_quadrature(matvec: MatVec, v: torch.Tensor, k: int):
    r"""Gauss quadrature nodes and weights for the spectral measure of H seen from v.

    With T = VΘVᵀ from k Lanczos steps started at v, the nodes are the Ritz values θ_j and
    the weights τ_j = (first component of the j-th eigenvector of T)²; then

    .. math::

        \frac{v^\top f(H) v}{v^\top v} \approx \sum_j \tau_j f(\theta_j),

    exactly for every polynomial f of degree < 2k (Golub & Meurant, 2010).  The weights
    sum to 1.  Returns (nodes (m,), weights (m,)).
    """
    alpha, beta, _ = lanczos(matvec, v, k)
    nodes, vecs = torch.linalg.eigh(_tridiagonal(alpha, beta))
    return nodes, vecs[0] ** 2


def hessian_spectrum_density(loss, params, k: int = 30, n_vectors: int = 5,
                             grid: np.ndarray | None = None, sigma: float | None = None,
                             generator: torch.Generator | None = None):
    r"""A smoothed density of the Hessian's eigenvalues, by stochastic Lanczos quadrature.

    .. math::

        \rho(t) = \frac1P \sum_{i=1}^{P} \mathcal N(t;\ \lambda_i, \sigma^2)
        \approx \frac1{n_v} \sum_{v} \sum_j \tau_j^{(v)}\, \mathcal N(t;\ \theta_j^{(v)}, \sigma^2)

    averaged over ``n_vectors`` Rademacher vectors v (entries ±1), each giving the nodes
    and weights of :func:`lanczos_quadrature` (Lin, Saad & Yang, 2016; Ghorbani, Krishnan
    & Xiao, 2019).  ``grid`` defaults to 400 points spanning the Ritz values with a margin;
    ``sigma`` defaults to 1 % of that span.

    Returns (grid, density) as NumPy arrays; the density integrates to ≈ 1.
    """
    params = _params(params)
    matvec = make_hvp(loss, params)
    P = sum(p.numel() for p in params)
    nodes, weights = [], []
    for _ in range(n_vectors):
        v = torch.randint(0, 2, (P,), generator=generator).to(params[0]) * 2 - 1
        t, w = lanczos_quadrature(matvec, v, k)
        nodes.append(t.cpu().numpy())
        weights.append(w.cpu().numpy() / n_vectors)
    nodes, weights = np.concatenate(nodes), np.concatenate(weights)
    lo, hi = nodes.min(), nodes.max()
    span = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0))
    if sigma is None:
        sigma = 0.01 * span
    if grid is None:
        grid = np.linspace(lo - 0.1 * span - 5 * sigma, hi + 0.1 * span + 5 * sigma, 400)
    gauss = np.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2)
    density = gauss @ weights / (sigma * math.sqrt(2 * math.pi))
    return grid, density


# ----------------------------------------------------------------------------------------
# Deep Learning book §8.2.1: is the step −εg going to reduce the cost?
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GradientCurvature:
    r"""The two numbers that decide a gradient step's fate (Deep Learning book eq. 8.10):

    .. math::

        J(\theta - \epsilon g) \approx J(\theta) - \epsilon\, g^\top g
            + \tfrac12 \epsilon^2\, g^\top H g.

    Attributes: ``grad_norm_sq`` = ‖g‖² = gᵀg, ``gHg`` = gᵀHg.
    """

    grad_norm_sq: float
    gHg: float

    def predicted_change(self, lr: float) -> float:
        """½ε²gᵀHg − εgᵀg: the second-order Taylor prediction of J(θ − εg) − J(θ)."""
        return 0.5 * lr**2 * self.gHg - lr * self.grad_norm_sq

    @property
    def optimal_lr(self) -> float:
        """ε* = gᵀg / gᵀHg, the step that minimises the quadratic model (eq. 4.10);
        ``inf`` when gᵀHg ≤ 0 (the model decreases without bound along −g)."""
        return self.grad_norm_sq / self.gHg if self.gHg > 0 else math.inf


def gradient_curvature(loss, params) -> GradientCurvature:
    """‖g‖² and gᵀHg at the current parameters, with one gradient and one HVP."""
    params = _params(params)
    loss = _loss(loss)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    g = _flat(grads, params)
    if g.requires_grad:
        Hg = _flat(torch.autograd.grad(g, params, grad_outputs=g.detach(), allow_unused=True),
                   params)
    else:  # loss linear in θ
        Hg = torch.zeros_like(g)
    g = g.detach()
    return GradientCurvature(float(g @ g), float(g @ Hg))


# ----------------------------------------------------------------------------------------
# Deep Learning book §8.1.3: the standard error of a minibatch gradient falls like 1/√B
# ----------------------------------------------------------------------------------------
class GradientNoise(NamedTuple):
    r"""Minibatch gradient error against the full-batch gradient, per batch size.

    Fields (NumPy arrays, one entry per batch size B):
    ``batch_sizes``; ``sq_error`` = mean over draws of ‖ĝ_B − g‖²;
    ``std_error`` = √sq_error.  For B examples drawn with replacement
    E‖ĝ_B − g‖² = tr(Σ)/B, Σ the covariance of per-example gradients, so the standard error
    is √(tr Σ)/√B: the σ/√n law.
    """

    batch_sizes: np.ndarray
    sq_error: np.ndarray
    std_error: np.ndarray

    def slope(self) -> float:
        """Least-squares slope of log(std_error) against log(B); −1/2 for the σ/√n law."""
        return float(np.polyfit(np.log(self.batch_sizes), np.log(self.std_error), 1)[0])


def minibatch_gradient_noise(model: torch.nn.Module, loss_fn: Callable, X: torch.Tensor,
                             y: torch.Tensor, batch_sizes, n_batches: int = 50,
                             generator: torch.Generator | None = None,
                             replacement: bool = True) -> GradientNoise:
    r"""Estimate E‖ĝ_B − g‖² for each batch size B by drawing ``n_batches`` minibatches.

    g is the gradient of ``loss_fn(model(X), y)`` over the whole data set (a mean loss),
    ĝ_B that of ``loss_fn(model(X[idx]), y[idx])`` on B random indices, drawn with
    ``generator``.  With ``replacement=True`` (i.i.d. examples, the textbook setting) the
    expectation is tr(Σ)/B; without replacement (a shuffled epoch) it is
    tr(Σ)/B · (N − B)/(N − 1), the finite-population correction, zero at B = N.
    Σ = (1/N) Σᵢ (gᵢ − g)(gᵢ − g)ᵀ over the N per-example gradients.

    Deep Learning book §8.1.3: the standard error of the mean is σ/√n, so 100× more
    examples buy only 10× less noise.
    """
    params = _params(model)
    N = len(X)

    def gradient(idx=None) -> torch.Tensor:
        Xb, yb = (X, y) if idx is None else (X[idx], y[idx])
        return _flat(torch.autograd.grad(loss_fn(model(Xb), yb), params, allow_unused=True),
                     params)

    g_full = gradient()
    sq = []
    for B in batch_sizes:
        if not replacement and B > N:
            raise ValueError(f"Invalid batch size: {B} (more than N = {N} without replacement)")
        errs = []
        for _ in range(n_batches):
            idx = (torch.randint(0, N, (B,), generator=generator) if replacement
                   else torch.randperm(N, generator=generator)[:B])
            errs.append(float(((gradient(idx) - g_full) ** 2).sum()))
        sq.append(np.mean(errs))
    sq = np.array(sq)
    return GradientNoise(np.asarray(batch_sizes), sq, np.sqrt(sq))
