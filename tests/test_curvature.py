"""Curvature tools against explicit Hessians (autograd), eigvalsh and exact variances."""
import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from course_lib.curvature import (flatten_grad, gradient_curvature, hessian_matrix,
                                  hessian_spectrum_density, hvp, lanczos, lanczos_eigenvalues,
                                  lanczos_quadrature, make_hvp, minibatch_gradient_noise,
                                  power_iteration, top_eigenvalue)
from course_lib.landscapes import Quadratic

F64 = torch.float64


@pytest.fixture
def problem():
    """A tiny tanh network (P = 26) on random regression data, in float64."""
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
                                torch.nn.Linear(4, 2)).double()
    X = torch.randn(16, 3, generator=gen, dtype=F64)
    y = torch.randn(16, 2, generator=gen, dtype=F64)
    loss_fn = torch.nn.MSELoss()
    return model, X, y, loss_fn


def explicit_hessian(model, X, y, loss_fn):
    """The reference: torch.autograd.functional.hessian of the loss as a function of the
    flat parameter vector."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of(flat):
        chunks = torch.split(flat, [math.prod(s) for s in shapes])
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        return loss_fn(functional_call(model, params, (X,)), y)

    return torch.autograd.functional.hessian(loss_of, flat0)


def quadratic_loss(J, theta0=None):
    theta = torch.nn.Parameter((J.start if theta0 is None else theta0).clone())
    return J(theta), [theta]


def test_flatten_grad(problem):
    model, X, y, loss_fn = problem
    loss_fn(model(X), y).backward()
    expected = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(flatten_grad(model), expected, rtol=0, atol=0)


def test_hvp_equals_explicit_hessian_times_v(problem):
    model, X, y, loss_fn = problem
    H = explicit_hessian(model, X, y, loss_fn)
    P = H.shape[0]
    assert P == 26
    v = torch.randn(P, generator=torch.Generator().manual_seed(1), dtype=F64)
    loss = loss_fn(model(X), y)
    torch.testing.assert_close(hvp(loss, model, v), H @ v, rtol=1e-10, atol=1e-10)
    # a closure works as well as a loss tensor, and one graph serves many products
    matvec = make_hvp(lambda: loss_fn(model(X), y), model.parameters())
    for _ in range(3):
        v = torch.randn(P, dtype=F64)
        torch.testing.assert_close(matvec(v), H @ v, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(hessian_matrix(loss_fn(model(X), y), model), H,
                               rtol=1e-10, atol=1e-10)


def test_hvp_on_a_quadratic_landscape():
    J = Quadratic(condition_number=30, dim=5, seed=2)
    loss, params = quadratic_loss(J)
    v = torch.arange(1.0, 6.0, dtype=F64)
    torch.testing.assert_close(hvp(loss, params, v), J.H @ v, rtol=1e-12, atol=1e-12)


def test_hvp_of_a_linear_loss_is_zero():
    theta = torch.nn.Parameter(torch.ones(3, dtype=F64))
    loss = (torch.tensor([1.0, 2.0, 3.0], dtype=F64) * theta).sum()
    torch.testing.assert_close(hvp(loss, [theta], torch.ones(3, dtype=F64)),
                               torch.zeros(3, dtype=F64))


def test_power_iteration_on_a_known_spectrum():
    J = Quadratic(condition_number=50, dim=10, seed=0)  # λ = 1, …, 50 evenly spaced
    loss, params = quadratic_loss(J)
    lam, v = top_eigenvalue(loss, params, iters=2000, tol=1e-14,
                            generator=torch.Generator().manual_seed(0))
    assert lam == pytest.approx(50.0, rel=1e-10)
    top_vector = J.R[:, -1]
    assert abs(float(v @ top_vector)) == pytest.approx(1.0, abs=1e-6)
    # a negative dominant eigenvalue is returned with its sign
    lam_neg, _ = power_iteration(lambda u: -(J.H @ u), torch.ones(10, dtype=F64), 2000, 1e-14)
    assert lam_neg == pytest.approx(-50.0, rel=1e-10)


def test_top_eigenvalue_of_a_network(problem):
    model, X, y, loss_fn = problem
    eig = torch.linalg.eigvalsh(explicit_hessian(model, X, y, loss_fn))
    dominant = eig[eig.abs().argmax()].item()
    lam, v = top_eigenvalue(loss_fn(model(X), y), model, iters=3000, tol=1e-13,
                            generator=torch.Generator().manual_seed(0))
    assert lam == pytest.approx(dominant, rel=1e-8)
    H = explicit_hessian(model, X, y, loss_fn)
    assert (H @ v - lam * v).norm().item() < 1e-3 * abs(lam)


def test_lanczos_recovers_the_spectrum(problem):
    model, X, y, loss_fn = problem
    eig = torch.linalg.eigvalsh(explicit_hessian(model, X, y, loss_fn))
    P = len(eig)
    gen = torch.Generator().manual_seed(0)
    ritz = lanczos_eigenvalues(loss_fn(model(X), y), model, k=P, generator=gen)
    torch.testing.assert_close(ritz, eig, rtol=1e-8, atol=1e-10)
    # with k < P: the Ritz values interlace (Cauchy), the extremes converge first
    ritz = lanczos_eigenvalues(loss_fn(model(X), y), model, k=14, generator=gen)
    assert ritz.min() >= eig.min() - 1e-12 and ritz.max() <= eig.max() + 1e-12
    assert ritz.max().item() == pytest.approx(eig.max().item(), rel=1e-6)


def test_lanczos_stops_on_an_invariant_subspace():
    """Three distinct eigenvalues: the Krylov space has dimension 3, so Lanczos stops
    after 3 steps with the exact eigenvalues."""
    lam = torch.tensor([1.0, 1.0, 1.0, 4.0, 4.0, 9.0, 9.0, 9.0, 9.0], dtype=F64)
    alpha, beta, Q = lanczos(lambda v: lam * v, torch.ones(9, dtype=F64), k=9)
    assert len(alpha) == 3 and len(beta) == 2 and Q.shape == (3, 9)
    torch.testing.assert_close(Q @ Q.T, torch.eye(3, dtype=F64))
    T = torch.diag(alpha) + torch.diag(beta, 1) + torch.diag(beta, -1)
    torch.testing.assert_close(torch.linalg.eigvalsh(T),
                               torch.tensor([1.0, 4.0, 9.0], dtype=F64))


def test_lanczos_quadrature_is_exact_for_low_degree_polynomials():
    """Gauss quadrature with k nodes integrates polynomials of degree < 2k exactly."""
    J = Quadratic(condition_number=20, dim=20, seed=4)
    v = torch.randn(20, generator=torch.Generator().manual_seed(5), dtype=F64)
    k = 4
    nodes, weights = lanczos_quadrature(lambda u: J.H @ u, v, k)
    assert weights.sum().item() == pytest.approx(1.0, rel=1e-12)
    Hm_v = v.clone()
    for m in range(2 * k):
        moment = (v @ Hm_v / (v @ v)).item()  # vᵀHᵐv / vᵀv
        assert (weights * nodes**m).sum().item() == pytest.approx(moment, rel=1e-9)
        Hm_v = J.H @ Hm_v


def test_spectrum_density_of_a_diagonal_hessian():
    """For diagonal H and Rademacher probes every weight is exactly 1/P, so the estimate
    equals the smoothed true density (1/P) Σ N(t; λ_i, σ²)."""
    J = Quadratic(condition_number=10, dim=8)  # H = diag(1, …, 10)
    loss, params = quadratic_loss(J)
    grid = np.linspace(-2, 13, 601)
    sigma = 0.3
    t, density = hessian_spectrum_density(loss, params, k=8, n_vectors=3, grid=grid,
                                          sigma=sigma, generator=torch.Generator().manual_seed(0))
    lam = J.eigenvalues.numpy()
    expected = np.exp(-0.5 * ((grid[:, None] - lam) / sigma) ** 2).mean(1) / (
        sigma * math.sqrt(2 * math.pi))
    np.testing.assert_allclose(density, expected, rtol=1e-8, atol=1e-10)
    assert np.trapezoid(density, t) == pytest.approx(1.0, abs=1e-6)


def test_gradient_curvature_on_a_quadratic_is_exact():
    """On a quadratic the second-order Taylor model is the function itself."""
    J = Quadratic(condition_number=15, angle=0.7)
    theta = J.start
    loss, params = quadratic_loss(J, theta)
    gc = gradient_curvature(loss, params)
    g = J.grad(theta)
    assert gc.grad_norm_sq == pytest.approx((g @ g).item(), rel=1e-13)
    assert gc.gHg == pytest.approx((g @ J.H @ g).item(), rel=1e-13)
    for lr in [0.01, 0.1, 0.3]:
        actual = (J(theta - lr * g) - J(theta)).item()
        assert gc.predicted_change(lr) == pytest.approx(actual, rel=1e-12)
    # ε* = gᵀg / gᵀHg minimises J along −g
    best = J(theta - gc.optimal_lr * g).item()
    assert all(best <= J(theta - lr * g).item() for lr in gc.optimal_lr * np.array([0.9, 1.1]))


def test_gradient_curvature_taylor_error_is_third_order(problem):
    model, X, y, loss_fn = problem
    gc = gradient_curvature(loss_fn(model(X), y), model)
    loss_fn(model(X), y).backward()
    g = flatten_grad(model)
    assert gc.grad_norm_sq == pytest.approx((g @ g).item(), rel=1e-12)
    H = explicit_hessian(model, X, y, loss_fn)
    assert gc.gHg == pytest.approx((g @ H @ g).item(), rel=1e-10)

    def actual_change(lr):
        with torch.no_grad():
            before = loss_fn(model(X), y).item()
            params = list(model.parameters())
            saved = [p.clone() for p in params]
            torch.nn.utils.vector_to_parameters(
                torch.nn.utils.parameters_to_vector(params) - lr * g, params)
            after = loss_fn(model(X), y).item()
            for p, s in zip(params, saved):
                p.copy_(s)
        return after - before

    errors = [abs(actual_change(lr) - gc.predicted_change(lr)) for lr in (0.04, 0.02)]
    assert 5 < errors[0] / errors[1] < 11  # halving ε divides an O(ε³) error by ≈ 8


@pytest.fixture
def regression():
    gen = torch.Generator().manual_seed(0)
    N, d = 200, 4
    X = torch.randn(N, d, generator=gen, dtype=F64)
    y = X @ torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=F64)[:, None] + 0.5 * torch.randn(
        N, 1, generator=gen, dtype=F64)
    model = torch.nn.Linear(d, 1).double()
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    # exact per-example gradients of ℓ_i = (wᵀx_i + b − y_i)²: g_i = 2 r_i (x_i, 1)
    r = (model(X) - y).detach()
    G = 2 * r * torch.cat([X, torch.ones(N, 1, dtype=F64)], dim=1)
    trace_sigma = ((G - G.mean(0)) ** 2).sum(1).mean().item()  # tr Σ with 1/N
    return model, X, y, trace_sigma


def test_minibatch_gradient_noise_follows_sigma_over_sqrt_n(regression):
    model, X, y, trace_sigma = regression
    batch_sizes = [1, 4, 16, 64]
    noise = minibatch_gradient_noise(model, torch.nn.MSELoss(), X, y, batch_sizes,
                                     n_batches=300, generator=torch.Generator().manual_seed(1))
    expected = trace_sigma / np.array(batch_sizes)
    np.testing.assert_allclose(noise.sq_error, expected, rtol=0.15)
    np.testing.assert_allclose(noise.std_error, np.sqrt(noise.sq_error))
    assert noise.slope() == pytest.approx(-0.5, abs=0.05)


def test_minibatch_noise_without_replacement_has_the_finite_population_correction(regression):
    model, X, y, trace_sigma = regression
    N = len(X)
    batch_sizes = [10, 100, 190, N]
    noise = minibatch_gradient_noise(model, torch.nn.MSELoss(), X, y, batch_sizes,
                                     n_batches=200, generator=torch.Generator().manual_seed(2),
                                     replacement=False)
    B = np.array(batch_sizes)
    expected = trace_sigma / B * (N - B) / (N - 1)
    np.testing.assert_allclose(noise.sq_error[:-1], expected[:-1], rtol=0.15)
    assert noise.sq_error[-1] < 1e-20  # the whole data set: no noise at all
    with pytest.raises(ValueError, match="Invalid batch size"):
        minibatch_gradient_noise(model, torch.nn.MSELoss(), X, y, [N + 1], replacement=False)
