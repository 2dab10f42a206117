r"""Natural gradient and K-FAC: chapter 16 of the course.

The Fisher information matrix of a model p_θ(y|x),

.. math::

    F(\theta) = \mathbb E_{x}\,\mathbb E_{y \sim p_\theta(y|x)}
        \big[\nabla_\theta \log p_\theta(y|x)\, \nabla_\theta \log p_\theta(y|x)^\top\big],

is the metric of the natural gradient F⁻¹g (Amari, 1998).  This module holds the chapter's
experiments; K-FAC itself, as an optimizer, lives in :mod:`course_lib.optim.kfac`.

Contents:

- The Fisher of a small network, exactly: :func:`exact_fisher` (enumerating the classes),
  :func:`empirical_fisher`, :func:`gauss_newton` (Jᵀ H_z J with H_z from
  ``course_lib.curvature.hessian_matrix``), :func:`fisher_identities` (F = GN ≠ H ≠ EF).
- Reparameterization: 2-D logistic regression (:func:`logistic_task`, :func:`logistic_parts`),
  :func:`reparameterized_paths` (GD and natural gradient in the parameterization w = Dφ),
  :func:`invariance`, and the figure :func:`plot_paths` (the interactive figure).
- Empirical vs true Fisher (Kunstner et al., 2019) on linear regression:
  :func:`regression_task`, :func:`preconditioned_descent`, :func:`empirical_vs_true`,
  :func:`plot_vector_fields`.
- The natural gradient exactly on softmax regression of MNIST-1D: :func:`softmax_fisher`,
  :func:`natural_gradient_descent`, :func:`ngd_vs_gd`.
- K-FAC: :func:`kfac_block_errors` (A ⊗ G against the exact Fisher blocks of a tiny net),
  :func:`kfac_vs_adam` (an MLP on MNIST-1D, both tuned, medians over seeds),
  :func:`plot_kfac_vs_adam`.
- Adam as a diagonal approximation: :func:`adam_vs_fisher_diagonal`.

Symbols: θ parameters, g the gradient of the cost J, ε the learning rate, λ the damping added
to F (F + λI), H the Hessian, GN the Gauss–Newton matrix, EF the empirical Fisher.
"""
from __future__ import annotations

import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev

from course_lib import curvature
from course_lib.data import mnist1d
from course_lib.models import mlp
from course_lib.optim import Adam
from course_lib.optim.kfac import KFAC, kfac_factors
from course_lib.train import train
from course_lib.utils import shared_result

# ----------------------------------------------------------------------------------------------
# 16.1 The Fisher of a small network, exactly

TINY = dict(n=8, d_in=3, hidden=4, classes=3, seed=0)


def tiny_problem(n=TINY["n"], d_in=TINY["d_in"], hidden=TINY["hidden"], classes=TINY["classes"],
                 seed=TINY["seed"]):
    """A tanh MLP d_in → hidden → classes in float64, with n random inputs and labels."""
    gen = torch.Generator().manual_seed(seed)
    model = mlp(d_in, (hidden,) if hidden else (), classes, "tanh", generator=gen).double()
    X = torch.randn(n, d_in, generator=gen, dtype=torch.float64)
    y = torch.randint(0, classes, (n,), generator=gen)
    return model, X, y


def _params(model):
    return [p for p in model.parameters() if p.requires_grad]


def _flat_grad(scalar, params):
    return torch.cat([t.reshape(-1) for t in torch.autograd.grad(scalar, params, retain_graph=True)])


def per_example_log_grads(model, X, labels):
    """(N, P): ∇_θ log p_θ(labels_i | x_i) for each example, flat in the order of parameters()."""
    params = _params(model)
    logp = torch.log_softmax(model(X), dim=1)
    return torch.stack([_flat_grad(logp[i, labels[i]], params) for i in range(X.shape[0])])


def exact_fisher(model, X):
    """F = (1/N) Σ_i Σ_c p_θ(c|x_i) ∇log p_c ∇log p_cᵀ: the expectation over y done exactly."""
    params = _params(model)
    logp = torch.log_softmax(model(X), dim=1)
    p = logp.detach().exp()
    F = 0
    for i in range(X.shape[0]):
        for c in range(logp.shape[1]):
            v = _flat_grad(logp[i, c], params)
            F = F + p[i, c] * torch.outer(v, v)
    return F / X.shape[0]


def empirical_fisher(model, X, y):
    """EF = (1/N) Σ_i ∇log p(y_i|x_i) ∇log p(y_i|x_i)ᵀ, with the observed labels y_i."""
    G = per_example_log_grads(model, X, y)
    return G.T @ G / X.shape[0]


def _loss_fn(z, y):
    return nn.functional.cross_entropy(z, y)


def gauss_newton(model, X, y):
    """GN = Jᵀ H_z J: J = ∂z/∂θ (N·C × P), H_z the Hessian of the mean log-loss in the scores z.

    H_z comes from ``course_lib.curvature.hessian_matrix`` (it does not depend on y for the
    softmax log-loss: diag(p) − ppᵀ per example, over N).
    """
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    values = tuple(p.detach() for p in _params(model))

    def scores(*theta):
        return functional_call(model, dict(zip(names, theta)), (X,))
    jac = jacrev(scores, argnums=tuple(range(len(values))))(*values)
    J = torch.cat([j.reshape(X.shape[0] * j.shape[1], -1) for j in jac], dim=1)
    z = scores(*values).detach().requires_grad_(True)
    Hz = curvature.hessian_matrix(_loss_fn(z, y), [z])
    return J.T @ Hz @ J


def hessian(model, X, y):
    """The Hessian of the mean log-loss, by ``course_lib.curvature.hessian_matrix``."""
    return curvature.hessian_matrix(_loss_fn(model(X), y), model)


def _rel(A, B):
    return float(torch.linalg.norm(A - B) / torch.linalg.norm(B))


@shared_result
def fisher_identities(**kw):
    """Relative Frobenius distances on the tiny net: F vs GN, H vs GN, EF vs F; and P."""
    model, X, y = tiny_problem(**kw)
    F, GN, H, EF = exact_fisher(model, X), gauss_newton(model, X, y), hessian(model, X, y), \
        empirical_fisher(model, X, y)
    return dict(P=F.shape[0], fisher_vs_gn=_rel(F, GN), hessian_vs_gn=_rel(H, GN),
                empirical_vs_fisher=_rel(EF, F))


# ----------------------------------------------------------------------------------------------
# 16.2 Reparameterization: 2-D logistic regression, p(y=1|x) = σ(wᵀx)

LOGISTIC = dict(n=200, seed=0, scales=(1.0, 3.0), shift=0.4)
W0 = (-2.0, 1.5)  # the starting point of every path of the section
SCALE = 0.2  # the rescaled parameterization w = Dφ, D = diag(1, SCALE)
PATH_LR = 0.5
PATH_STEPS = 30


def logistic_task(n=LOGISTIC["n"], seed=LOGISTIC["seed"], scales=LOGISTIC["scales"],
                  shift=LOGISTIC["shift"]):
    """Two overlapping Gaussian classes in 2-D (labels 0/1), features of different scales, float64."""
    gen = torch.Generator().manual_seed(seed)
    y = (torch.arange(n) % 2).double()
    X = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    X[:, 0] += shift * (2 * y - 1)
    X[:, 1] += shift * (2 * y - 1)
    X = X * torch.tensor(scales, dtype=torch.float64) / torch.tensor(scales).max()
    return X, y


def logistic_parts(w, X, y):
    """J(w) (mean log-loss), g = ∇J and F (= H here, the canonical link) at w, all float64."""
    w = torch.as_tensor(w, dtype=torch.float64)
    z = X @ w
    p = torch.sigmoid(z)
    J = float(nn.functional.binary_cross_entropy_with_logits(z, y))
    g = X.T @ (p - y) / X.shape[0]
    F = (X * (p * (1 - p))[:, None]).T @ X / X.shape[0]
    return J, g, F


def reparameterized_paths(scale=SCALE, damping=0.0, lr=PATH_LR, steps=PATH_STEPS, w0=W0,
                          task=None):
    """GD and natural-gradient paths computed in φ with w = Dφ, D = diag(1, scale), mapped to w.

    GD in φ: φ ← φ − ε Dᵀg_w; natural gradient: φ ← φ − ε (DᵀF_wD + λI)⁻¹ Dᵀg_w.  Returns
    {"gd": (steps+1, 2), "natural": (steps+1, 2)} arrays of w.
    """
    X, y = logistic_task() if task is None else task
    D = torch.diag(torch.tensor([1.0, scale], dtype=torch.float64))
    out = {}
    for kind in ("gd", "natural"):
        phi = torch.linalg.solve(D, torch.tensor(w0, dtype=torch.float64))
        path = [D @ phi]
        for _ in range(steps):
            _, g, F = logistic_parts(D @ phi, X, y)
            g_phi = D.T @ g
            if kind == "gd":
                phi = phi - lr * g_phi
            else:
                phi = phi - lr * torch.linalg.solve(D.T @ F @ D + damping * torch.eye(2, dtype=F.dtype),
                                                    g_phi)
            path.append(D @ phi)
        out[kind] = torch.stack(path).numpy()
    return out


def invariance(scale=SCALE, damping=0.0):
    """Largest distance (in w) between the paths of the plain (D = I) and the rescaled one."""
    a, b = reparameterized_paths(1.0, damping), reparameterized_paths(scale, damping)
    return {k: float(np.abs(a[k] - b[k]).max()) for k in a}


def _logistic_grid(X, y, lim=((-3, 3), (-3, 3)), n=60):
    w1, w2 = np.meshgrid(np.linspace(*lim[0], n), np.linspace(*lim[1], n))
    W = torch.tensor(np.stack([w1.ravel(), w2.ravel()], 1))
    Z = nn.functional.binary_cross_entropy_with_logits(
        X @ W.T, y[:, None].expand(-1, W.shape[0]), reduction="none").mean(0)
    return w1, w2, Z.reshape(n, n).numpy()


def _ellipse(F, center, radius):
    """Points of {w : (w − center)ᵀ F (w − center) = radius²}."""
    t = np.linspace(0, 2 * np.pi, 100)
    evals, evecs = np.linalg.eigh(np.asarray(F))
    circle = np.stack([np.cos(t), np.sin(t)])
    return (evecs @ (circle * (radius / np.sqrt(evals))[:, None])).T + np.asarray(center)


def plot_paths(scale=1.0, damping=0.0, lr=PATH_LR, steps=PATH_STEPS, ax=None):
    """Both paths of :func:`reparameterized_paths` on the contours of J(w), and the Fisher ellipse
    at the start w₀ (the unit ball of the metric, scaled): the natural step points where that
    ellipse is short."""
    task = logistic_task()
    paths = reparameterized_paths(scale, damping, lr, steps, task=task)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 5.2))
    w1, w2, Z = _logistic_grid(*task)
    ax.contour(w1, w2, Z, levels=np.quantile(Z, np.linspace(0.01, 0.9, 14)), colors="0.75",
               linewidths=0.8)
    for kind, color, label in (("gd", "C0", "gradient descent"), ("natural", "C3", "natural gradient")):
        p = paths[kind]
        ax.plot(p[:, 0], p[:, 1], "o-", color=color, ms=3, lw=1.2, label=label)
    _, _, F = logistic_parts(W0, *task)
    e = _ellipse(F.numpy(), W0, 0.25)
    ax.plot(e[:, 0], e[:, 1], "k--", lw=1, label="Fisher ellipse at w₀")
    ax.set(xlim=(-3, 3), ylim=(-3, 3), xlabel="w₁", ylabel="w₂", aspect="equal",
           title=f"w = diag(1, {scale:g})·φ, λ = {damping:g}, ε = {lr:g}")
    ax.legend(loc="lower right", fontsize=8)
    return ax


# ----------------------------------------------------------------------------------------------
# 16.3 Empirical vs true Fisher: linear regression, model y ~ N(xᵀθ, 1)

REGRESSION = dict(n=100, seed=0, noise=0.5, theta_star=(1.0, -1.0), scales=(1.0, 0.3))
THETA0 = (6.0, 4.0)  # far from θ* (distance 7)
TOL = 1e-8  # J − J* below which a run counts as converged
LR_GRID = tuple(float(x) for x in 2.0 ** np.arange(-3, 3))  # 1/8 … 4
MAX_ITERS = 2000


def regression_task(n=REGRESSION["n"], seed=REGRESSION["seed"], noise=REGRESSION["noise"],
                    theta_star=REGRESSION["theta_star"], scales=REGRESSION["scales"]):
    """X (n, 2) with correlated features of different scales, y = Xθ* + noise·ξ, float64."""
    gen = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, 2, generator=gen, dtype=torch.float64)
    X = torch.stack([Z[:, 0], 0.6 * Z[:, 0] + 0.8 * Z[:, 1]], 1) * torch.tensor(scales, dtype=torch.float64)
    y = X @ torch.tensor(theta_star, dtype=torch.float64) + noise * torch.randn(n, generator=gen,
                                                                                  dtype=torch.float64)
    return X, y


def regression_parts(theta, X, y):
    """J = mean ½(xᵀθ − y)², g, the Fisher F = XᵀX/N (= H) and the empirical Fisher mean r²xxᵀ."""
    r = X @ theta - y
    J = float(0.5 * (r ** 2).mean())
    g = X.T @ r / X.shape[0]
    F = X.T @ X / X.shape[0]
    EF = (X * (r ** 2)[:, None]).T @ X / X.shape[0]
    return J, g, F, EF


def preconditioned_descent(kind, lr, task=None, theta0=THETA0, max_iters=MAX_ITERS, tol=TOL):
    """θ ← θ − ε P⁻¹g with P = I ("gd"), F ("fisher") or EF ("empirical"); the iterations until
    J − J* ≤ tol (None if not within max_iters or if it diverged) and the path (≤ 200 points)."""
    X, y = regression_task() if task is None else task
    theta_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    J_star = regression_parts(theta_star, X, y)[0]
    theta = torch.tensor(theta0, dtype=torch.float64)
    path = [theta.numpy().copy()]
    for t in range(1, max_iters + 1):
        J, g, F, EF = regression_parts(theta, X, y)
        P = {"gd": torch.eye(2, dtype=g.dtype), "fisher": F, "empirical": EF}[kind]
        theta = theta - lr * torch.linalg.solve(P, g)
        if t < 200:
            path.append(theta.numpy().copy())
        J = regression_parts(theta, X, y)[0]
        if not math.isfinite(J) or J > 1e12:
            return None, np.array(path)
        if J - J_star <= tol:
            return t, np.array(path)
    return None, np.array(path)


@shared_result
def empirical_vs_true():
    """Iterations to J − J* ≤ TOL for each preconditioner and each ε of LR_GRID (None: not
    converged in MAX_ITERS), the best ε and its count; and the EF at θ* against F (EF ≈ σ²F)."""
    task = regression_task()
    X, y = task
    out = {}
    for kind in ("gd", "fisher", "empirical"):
        iters = [preconditioned_descent(kind, lr, task)[0] for lr in LR_GRID]
        ok = [(n, i) for i, n in enumerate(iters) if n is not None]
        n_best, i_best = min(ok)
        out[kind] = dict(iters=iters, best_lr=LR_GRID[i_best], best_index=i_best, best_iters=n_best)
    theta_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0]
    _, _, F, EF = regression_parts(theta_star, X, y)
    out["ef_over_f_at_optimum"] = torch.linalg.eigvals(torch.linalg.solve(F, EF)).real.sort().values.tolist()
    far = torch.tensor(THETA0, dtype=torch.float64)
    _, g, F, EF = regression_parts(far, X, y)
    out["step_far"] = {k: float(torch.linalg.norm(torch.linalg.solve(P, g)))
                       for k, P in (("fisher", F), ("empirical", EF))}
    out["distance_far"] = float(torch.linalg.norm(far - theta_star))
    return out


def plot_vector_fields(axes=None, n=13):
    """−F⁻¹g and −EF⁻¹g on a grid around θ*, both drawn at a quarter of their length."""
    X, y = regression_task()
    theta_star = torch.linalg.lstsq(X, y[:, None]).solution[:, 0].numpy()
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    t1, t2 = np.meshgrid(np.linspace(-3, 5, n), np.linspace(-5, 3, n))
    for ax, kind, title in ((axes[0], "fisher", "true Fisher: −F⁻¹g points at θ*"),
                            (axes[1], "empirical", "empirical Fisher: −EF⁻¹g is distorted")):
        U = np.zeros_like(t1)
        V = np.zeros_like(t1)
        for i in np.ndindex(t1.shape):
            _, g, F, EF = regression_parts(torch.tensor([t1[i], t2[i]]), X, y)
            d = -torch.linalg.solve(F if kind == "fisher" else EF, g).numpy()
            U[i], V[i] = d
        ax.quiver(t1, t2, U, V, angles="xy", scale_units="xy", scale=4, width=0.004,
                  color="C3" if kind == "fisher" else "C1")
        ax.plot(*theta_star, "k*", ms=12, label="θ*")
        ax.set(xlabel="θ₁", ylabel="θ₂", title=title, aspect="equal", xlim=(-3.5, 5.5), ylim=(-5.5, 3.5))
        ax.legend(loc="lower right")
    return axes


# ----------------------------------------------------------------------------------------------
# 16.4 The natural gradient exactly: softmax regression on MNIST-1D

SOFTMAX = dict(num_samples=4000, n_train=500, damping=1e-4, tol=1e-2)
NGD_LR_GRID = (0.25, 0.5, 1.0, 1.5)
GD_LR_GRID = (1.0, 2.0, 2.5, 4.0, 8.0, 16.0)  # 2.5: GD's best is its stability limit
NGD_REF_ITERS = 15
NGD_MAX_ITERS = 100
GD_MAX_ITERS = 4000


def softmax_task(num_samples=SOFTMAX["num_samples"], n_train=SOFTMAX["n_train"]):
    """The first n_train MNIST-1D training examples, in float64, with a column of ones appended."""
    data = mnist1d(num_samples)
    X = data.X_train[:n_train].double()
    return torch.cat([X, torch.ones(n_train, 1, dtype=torch.float64)], 1), data.y_train[:n_train]


def softmax_parts(W, X, y, fisher=True):
    """J (mean log-loss), g = ∇J (C, d) and the Fisher F ((C·d)², row-major in W) at W (C, d).

    F = (1/N) Σ_i (diag p_i − p_i p_iᵀ) ⊗ x_i x_iᵀ; it is singular (adding the same vector to
    every class's row changes nothing), hence the damping.
    """
    z = X @ W.T
    p = torch.softmax(z, 1)
    J = float(nn.functional.cross_entropy(z, y))
    R = p.clone()
    R[torch.arange(len(y)), y] -= 1
    g = R.T @ X / X.shape[0]
    if not fisher:
        return J, g, None
    M = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]  # (N, C, C)
    C, d = W.shape
    F = torch.einsum("icd,ij,ik->cjdk", M, X, X).reshape(C * d, C * d) / X.shape[0]
    return J, g, F


def natural_gradient_descent(lr, damping=SOFTMAX["damping"], iters=NGD_MAX_ITERS, task=None,
                             natural=True, target=None):
    """Full-batch W ← W − ε (F + λI)⁻¹g (natural) or W ← W − εg from W = 0; the losses J_0, J_1, …
    (up to J_iters, or until J ≤ target, or until J exceeds J_0: diverged)."""
    X, y = softmax_task() if task is None else task
    C, d = 10, X.shape[1]
    W = torch.zeros(C, d, dtype=torch.float64)
    losses = []
    for _ in range(iters):
        J, g, F = softmax_parts(W, X, y, fisher=natural)
        losses.append(J)
        if not math.isfinite(J) or J > losses[0] or (target is not None and J <= target):
            return np.array(losses)
        if natural:
            step = torch.linalg.solve(F + damping * torch.eye(C * d, dtype=F.dtype), g.reshape(-1))
            W = W - lr * step.reshape(C, d)
        else:
            W = W - lr * g
    losses.append(softmax_parts(W, X, y, fisher=False)[0])
    return np.array(losses)


def _iters_to(losses, target):
    hit = np.nonzero(losses <= target)[0]
    return int(hit[0]) if len(hit) else None


@shared_result
def ngd_vs_gd():
    """Iterations to J − J* ≤ tol for the natural gradient (each ε of NGD_LR_GRID) and GD (each ε
    of GD_LR_GRID); J* from NGD_REF_ITERS natural steps with ε = 1 (J stops changing after ~10)."""
    task = softmax_task()
    ref = natural_gradient_descent(1.0, iters=NGD_REF_ITERS, task=task)
    J_star = float(ref.min())
    target = J_star + SOFTMAX["tol"]
    out = {"J_star": J_star}
    for kind, grid, iters in (("natural", NGD_LR_GRID, NGD_MAX_ITERS), ("gd", GD_LR_GRID, GD_MAX_ITERS)):
        counts = [_iters_to(natural_gradient_descent(lr, iters=iters, task=task, natural=kind == "natural",
                                                     target=target), target) for lr in grid]
        ok = [(n, i) for i, n in enumerate(counts) if n is not None]
        n_best, i_best = min(ok)
        out[kind] = dict(iters=counts, best_lr=grid[i_best], best_index=i_best, best_iters=n_best)
    return out


# ----------------------------------------------------------------------------------------------
# 16.5 K-FAC

def _layer_outputs(model, X):
    """Scores, and per nn.Linear layer its input a and output s (kept in the graph)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    record = {}
    handles = [m.register_forward_hook(lambda m, i, o: record.__setitem__(m, (i[0].detach(), o)))
               for m in layers]
    try:
        z = model(X)
    finally:
        for h in handles:
            h.remove()
    return z, layers, [record[m][0] for m in layers], [record[m][1] for m in layers]


def exact_kfac_factors(model, X):
    """Per nn.Linear layer (A, G) with the expectation over y ~ p_θ(y|x) done exactly:
    G = (1/N) Σ_i Σ_c p(c|x_i) g_ic g_icᵀ, g_ic = ∂ log p(c|x_i)/∂s_i."""
    z, layers, acts, outs = _layer_outputs(model, X)
    logp = torch.log_softmax(z, 1)
    p = logp.detach().exp()
    N, C = p.shape
    gs = [[] for _ in layers]
    ws = []
    for c in range(C):
        grads = torch.autograd.grad(logp[:, c].sum(), outs, retain_graph=True)
        for lst, g in zip(gs, grads):
            lst.append(g)
        ws.append(p[:, c])
    w = torch.cat(ws)
    return [kfac_factors(a, torch.cat(g), bias=layer.bias is not None, weights=w)
            for layer, a, g in zip(layers, acts, gs)]


def _wtilde_order(layer, offset):
    """Indices into the flat parameter vector that list [W b] row by row (row-major W̃)."""
    out, inp = layer.weight.shape
    idx = []
    for o in range(out):
        idx += [offset + o * inp + j for j in range(inp)]
        idx.append(offset + out * inp + o)
    return torch.tensor(idx)


@shared_result
def kfac_block_errors(n=TINY["n"], hidden=TINY["hidden"], seed=TINY["seed"]):
    """‖F_block − G ⊗ A‖ / ‖F_block‖ per layer of the tiny net (exact expectations over y), and
    the error of the whole block-diagonal K-FAC matrix against F (cross-layer blocks dropped)."""
    model, X, _ = tiny_problem(n=n, hidden=hidden, seed=seed)
    F = exact_fisher(model, X)
    factors = exact_kfac_factors(model, X)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    K = torch.zeros_like(F)
    errors, offset = [], 0
    order = []
    for layer, (A, G) in zip(layers, factors):
        idx = _wtilde_order(layer, offset)
        block = F[idx][:, idx]
        approx = torch.kron(G, A)
        errors.append(_rel(approx, block))
        K[idx[:, None], idx[None, :]] = approx
        order.append(idx)
        offset += layer.weight.numel() + layer.bias.numel()
    return dict(layers=errors, whole=_rel(K, F))


# The MNIST-1D comparison: an MLP 40-100-100-10 (ReLU), minibatches of 100, EPOCHS epochs
KFAC_RUN = dict(num_samples=5000, hidden=(100, 100), batch_size=100, epochs=10,
                damping=0.03, update_interval=10, factor_decay=0.95)
SEEDS = (0, 1, 2)
ADAM_LR_GRID = (3e-3, 1e-2, 3e-2)
KFAC_LR_GRID = (0.03, 0.1, 0.3)


def _run(method, lr, seed, epochs=None, damping=None):
    cfg = KFAC_RUN
    data = mnist1d(cfg["num_samples"])
    # float64: the runs amplify last-bit differences between CPU kernels, and the chapter prints
    # two digits of medians over seeds
    model = mlp(40, cfg["hidden"], 10, generator=torch.Generator().manual_seed(seed)).double()
    if method == "adam":
        opt = Adam(model.parameters(), lr=lr)
    else:
        opt = KFAC(model, lr=lr, damping=cfg["damping"] if damping is None else damping, update_interval=cfg["update_interval"],
                   factor_decay=cfg["factor_decay"], generator=torch.Generator().manual_seed(seed))
    epochs = epochs or cfg["epochs"]
    start = time.process_time()
    try:
        hist = train(model, nn.CrossEntropyLoss(), opt, (data.X_train.double(), data.y_train),
                     epochs=epochs, batch_size=cfg["batch_size"], seed=seed,
                     val_data=(data.X_test.double(), data.y_test))
    except FloatingPointError:  # TrainingDiverged, or K-FAC's factors overflowed
        return dict(train_loss=np.full(epochs, np.inf), val_accuracy=np.zeros(epochs), steps=0,
                    fisher_passes=0, seconds=math.nan)
    finally:
        if method == "kfac":
            opt.remove_hooks()
    seconds = time.process_time() - start
    e = hist.epochs
    return dict(train_loss=np.array(e["train_loss"]), val_accuracy=np.array(e["val_accuracy"]),
                steps=int(e["step"][-1]), fisher_passes=getattr(opt, "fisher_passes", 0),
                seconds=seconds)


@shared_result
def kfac_vs_adam():
    """Each method at each ε of its grid on each seed; the best ε by the median (over SEEDS) final
    training loss; the median curves at the best ε; and the count of passes per step."""
    out = {}
    for method, grid in (("adam", ADAM_LR_GRID), ("kfac", KFAC_LR_GRID)):
        runs = {lr: [_run(method, lr, s) for s in SEEDS] for lr in grid}
        finals = [float(np.median([r["train_loss"][-1] for r in runs[lr]])) for lr in grid]
        finals = [f if math.isfinite(f) else math.inf for f in finals]
        i = int(np.argmin(finals))
        best = runs[grid[i]]
        out[method] = dict(
            grid=grid, finals=finals, best_index=i, best_lr=grid[i],
            train_loss=np.median([r["train_loss"] for r in best], 0),
            val_accuracy=np.median([r["val_accuracy"] for r in best], 0),
            seconds_per_epoch=float(np.median([r["seconds"] for r in best])) / KFAC_RUN["epochs"],
            steps=best[0]["steps"], fisher_passes=best[0]["fisher_passes"])
    return out


def plot_kfac_vs_adam(result, axes=None):
    """Median training loss of the tuned runs per epoch (left) and per CPU second (right)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for method, color, name in (("adam", "C0", "Adam"), ("kfac", "C3", "K-FAC")):
        r = result[method]
        epochs = np.arange(1, len(r["train_loss"]) + 1)
        label = f"{name}, ε = {r['best_lr']:g}"
        axes[0].plot(epochs, r["train_loss"], "o-", color=color, ms=3, label=label)
        axes[1].plot(epochs * r["seconds_per_epoch"], r["train_loss"], "o-", color=color, ms=3, label=label)
    axes[0].set(xlabel="epoch", ylabel="training loss (median of 3 seeds)",
                title="K-FAC needs fewer epochs than Adam")
    axes[1].set(xlabel="CPU seconds (this machine)", ylabel="training loss",
                title="per second (machine-dependent)")
    for ax in axes:
        ax.set_yscale("log")
        ax.legend()
    return axes


def kfac_step_cost(widths=(40, *KFAC_RUN["hidden"], 10), batch_size=KFAC_RUN["batch_size"],
                   update_interval=KFAC_RUN["update_interval"]):
    """Multiply-adds per step, counted: the forward + backward pass (≈ 3·B·P), K-FAC's two
    products G⁻¹∇A⁻¹ per layer, and its factor work (A, G, one extra forward + backward, and
    inversions ≈ d³ each) spread over ``update_interval`` steps.  Also the size of the exact
    Fisher (P²) that K-FAC never forms, and of the factors it stores."""
    dims = [(i + 1, o) for i, o in zip(widths[:-1], widths[1:])]  # (d_in + 1, d_out)
    P = sum(i * o for i, o in dims)
    pass_cost = 3 * batch_size * P
    products = sum(o * i * (i + o) for i, o in dims)
    factors = sum(batch_size * (i * i + o * o) + i ** 3 + o ** 3 for i, o in dims)
    return dict(P=P, fisher_entries=P * P, factor_entries=sum(i * i + o * o for i, o in dims),
                pass_cost=pass_cost, kfac_products=products,
                kfac_factor_work_per_step=(factors + pass_cost) / update_interval)


@shared_result
def kfac_damping_sweep(dampings=(1e-3, 3e-2, 1.0), lr=0.1, epochs=3, seeds=SEEDS):
    """K-FAC's median (over seeds) training loss after ``epochs`` epochs on the chapter's MLP, per
    damping λ (inf: diverged on at least half the seeds)."""
    return {lam: float(np.median([_run("kfac", lr, s, epochs=epochs, damping=lam)["train_loss"][-1]
                                  for s in seeds])) for lam in dampings}


# ----------------------------------------------------------------------------------------------
# 16.6 Adam as a diagonal approximation

ADAM_DIAG = dict(lr=1e-2, epochs=(2, 5), n_fisher=200)  # measured after 2, then after 5 epochs


def _per_example_grads(model, X, labels):
    """(N, P) per-example gradients of log p(labels|x), by torch.func.vmap."""
    from torch.func import grad, vmap
    names = [n for n, _ in model.named_parameters()]
    theta = {n: p.detach() for n, p in model.named_parameters()}

    def logp(params, x, c):
        z = functional_call(model, params, (x[None],))
        return (torch.log_softmax(z, 1)[0] * c).sum()  # c: the label, one-hot
    onehot = nn.functional.one_hot(labels, 10).to(X.dtype)
    grads = vmap(grad(logp), in_dims=(None, 0, 0))(theta, X, onehot)
    return torch.cat([grads[n].reshape(X.shape[0], -1) for n in names], 1)


def _spearman(a, b):
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def _adam_diagonals(model, opt, data):
    """Adam's bias-corrected r̂ and diag F, diag EF (float64, on n_fisher training examples) at the
    model's current θ, over the parameters where none of the three is exactly zero."""
    beta2 = opt.param_groups[0]["betas"][1]
    v_hat = torch.cat([(opt.state[p]["exp_avg_sq"] / (1 - beta2 ** opt.state[p]["step"])).reshape(-1)
                       for p in model.parameters()]).double()
    X = data.X_train[:ADAM_DIAG["n_fisher"]].double()
    y = data.y_train[:ADAM_DIAG["n_fisher"]]
    p = torch.softmax(model(X), 1).detach()
    diag_F = sum((p[:, c:c + 1] * _per_example_grads(model, X, torch.full_like(y, c)) ** 2).mean(0)
                 for c in range(10))
    diag_EF = (_per_example_grads(model, X, y) ** 2).mean(0)
    keep = (diag_F > 0) & (diag_EF > 0) & (v_hat > 0)  # dead units give exact zeros
    return v_hat[keep].numpy(), diag_F[keep].numpy(), diag_EF[keep].numpy()


@shared_result
def adam_vs_fisher_diagonal(seeds=SEEDS):
    """Adam on the chapter's MLP, measured after each number of epochs in ADAM_DIAG["epochs"]
    (one run per seed, continued): Adam's r̂ (an EMA of squared minibatch gradients, β₂ = 0.999)
    against diag(F) (labels from the model, exact over the classes) and diag(EF) (observed
    labels) at the current θ, on n_fisher training examples, in float64.  Per seed: Spearman rank
    correlations over the parameters, the median of B·r̂ / diag(EF) and of diag(EF)/diag(F), and
    the 95th/5th-percentile range (in decades) of √r̂ and of diag(F); medians over seeds, as
    {epochs: {name: value}}."""
    cfg = KFAC_RUN
    data = mnist1d(cfg["num_samples"])
    rows = {e: [] for e in ADAM_DIAG["epochs"]}
    for seed in seeds:
        # float64: after 200 steps a float32 run depends on the CPU's kernels in the 2nd digit (and
        # after 400 steps, seed 1 even in float64)
        model = mlp(40, cfg["hidden"], 10, generator=torch.Generator().manual_seed(seed)).double()
        opt = Adam(model.parameters(), lr=ADAM_DIAG["lr"])
        done = 0
        for epochs in ADAM_DIAG["epochs"]:
            # continue the same run (Adam's state carries over; a new batch order per leg)
            train(model, nn.CrossEntropyLoss(), opt, (data.X_train.double(), data.y_train),
                  epochs=epochs - done, batch_size=cfg["batch_size"], seed=seed + 1000 * done)
            done = epochs
            v, f, ef = _adam_diagonals(model, opt, data)
            rows[epochs].append(dict(
                rank_v_F=_spearman(v, f), rank_v_EF=_spearman(v, ef), rank_EF_F=_spearman(ef, f),
                ratio_B_v_EF=float(np.median(cfg["batch_size"] * v / ef)),
                ratio_EF_F=float(np.median(ef / f)),
                spread_sqrt=float(np.log10(np.quantile(np.sqrt(v), 0.95) / np.quantile(np.sqrt(v), 0.05))),
                spread_F=float(np.log10(np.quantile(f, 0.95) / np.quantile(f, 0.05)))))
    return {e: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for e, rs in rows.items()}
