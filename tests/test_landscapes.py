"""Landscapes against autograd, scipy and closed forms; run_optimizer against hand recursions."""
import functools
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize
import torch

from course_lib.landscapes import (Beale, Cliff, LocalMinima, Plateau, Quadratic, Rosenbrock,
                                   Saddle, check_grad, newton_path, newton_step, run_optimizer)

LANDSCAPES = [
    Quadratic(), Quadratic(condition_number=25, angle=0.4, scale=0.5, center=[0.3, -0.2]),
    Quadratic(condition_number=40, dim=7, seed=3), Rosenbrock(), Rosenbrock(a=0.5, b=10),
    Beale(), Saddle(), Plateau(), Plateau(width=0.5), Cliff(), Cliff(height=3, steepness=5),
    LocalMinima(), LocalMinima(tilt=1.2),
]
IDS = [repr(J) for J in LANDSCAPES]


def random_points(J, n=6, seed=0):
    """n points in the landscape's window (first two coordinates), float64."""
    gen = torch.Generator().manual_seed(seed)
    u = torch.rand(n, J.dim, generator=gen, dtype=torch.float64)
    (x0, x1), (y0, y1) = J.bounds
    lo = torch.full((J.dim,), -2.0, dtype=torch.float64)
    hi = torch.full((J.dim,), 2.0, dtype=torch.float64)
    lo[:2], hi[:2] = torch.tensor([x0, y0]), torch.tensor([x1, y1])
    return lo + (hi - lo) * u


@pytest.mark.parametrize("J", LANDSCAPES, ids=IDS)
def test_grad_matches_autograd(J):
    theta = random_points(J).requires_grad_()
    (g_auto,) = torch.autograd.grad(J(theta).sum(), theta)  # rows are independent
    g = J.grad(theta.detach())
    assert g.shape == theta.shape
    torch.testing.assert_close(g, g_auto, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("J", LANDSCAPES, ids=IDS)
def test_hessian_matches_autograd(J):
    points = random_points(J, n=3, seed=1)
    H = J.hessian(points)
    assert H.shape == (3, J.dim, J.dim)
    for theta, H_i in zip(points, H):
        H_auto = torch.autograd.functional.hessian(J.value, theta)
        torch.testing.assert_close(H_i, H_auto, rtol=1e-10, atol=1e-9)


@pytest.mark.parametrize("J", [J for J in LANDSCAPES if J.dim == 2], ids=lambda J: repr(J))
def test_value_broadcasts_over_a_meshgrid(J):
    X, Y, Z = J.mesh(resolution=7)
    assert X.shape == Y.shape == Z.shape == (7, 7)
    for i, j in [(0, 0), (3, 5), (6, 2)]:
        point = torch.tensor([X[i, j], Y[i, j]], dtype=torch.float64)
        assert Z[i, j] == pytest.approx(J(point).item(), rel=1e-14, abs=1e-14)
    grid = torch.stack([torch.as_tensor(X), torch.as_tensor(Y)], dim=-1)
    assert J.grad(grid).shape == (7, 7, 2) and J.hessian(grid).shape == (7, 7, 2, 2)
    # lists and NumPy arrays are accepted too
    assert J([X[1, 1], Y[1, 1]]).item() == pytest.approx(Z[1, 1], rel=1e-14, abs=1e-14)


@pytest.mark.parametrize("J", LANDSCAPES, ids=IDS)
def test_critical_points(J):
    """∇J = 0 at every listed point; minima have H ⪰ 0 and saddles mixed curvature;
    J(θ*) = min_value and nothing on a grid of the window is lower."""
    assert len(J.minimizers) >= 1
    for kind, points in J.critical_points.items():
        assert points.shape[1:] == (J.dim,)
        for p in points:
            assert J.grad(p).norm().item() < 1e-10, (kind, p)
            eig = torch.linalg.eigvalsh(J.hessian(p))
            if kind == "saddle":
                assert eig.min() < -1e-6 and eig.max() > 1e-6
            else:
                assert eig.min() > 0
    for p in J.minimizers:
        assert J(p).item() == pytest.approx(J.min_value, abs=1e-14)
    for p in J.local_minimizers:
        assert J(p).item() > J.min_value + 1e-3
    if J.dim == 2:
        assert J.mesh(resolution=101)[2].min() >= J.min_value - 1e-12


def test_rosenbrock_is_scipys():
    J = Rosenbrock()
    for p in random_points(J, n=4, seed=2):
        x = p.numpy()
        assert J(p).item() == pytest.approx(scipy.optimize.rosen(x), rel=1e-14)
        np.testing.assert_allclose(J.grad(p).numpy(), scipy.optimize.rosen_der(x), rtol=1e-13)
        np.testing.assert_allclose(J.hessian(p).numpy(), scipy.optimize.rosen_hess(x), rtol=1e-13)


def test_closed_form_values():
    assert Beale()([3.0, 0.5]).item() == 0.0
    assert Beale()([0.0, 1.0]).item() == 14.203125  # 1.5² + 2.25² + 2.625²
    torch.testing.assert_close(Beale().hessian(torch.tensor([0.0, 1.0], dtype=torch.float64)),
                               torch.tensor([[0.0, 27.75], [27.75, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(Saddle().hessian(torch.zeros(2, dtype=torch.float64)),
                               torch.diag(torch.tensor([2.0, -2.0], dtype=torch.float64)))
    assert Saddle().min_value == -1.0 and Saddle()([0.0, math.sqrt(2)]).item() == pytest.approx(-1)
    J = LocalMinima(tilt=0.5)
    xs = torch.cat([J.minimizers, J.saddles, J.local_minimizers])[:, 0]
    torch.testing.assert_close(4 * xs**3 - 4 * xs + 0.5, torch.zeros(3, dtype=torch.float64),
                               atol=1e-14, rtol=0)
    assert xs[0] < xs[1] < xs[2]


def test_quadratic_spectrum_and_rotation():
    J = Quadratic(condition_number=20, angle=0.3, scale=2.0)
    lam = torch.linalg.eigvalsh(J.H)
    torch.testing.assert_close(lam, torch.tensor([2.0, 40.0], dtype=torch.float64))
    assert (lam[-1] / lam[0]).item() == pytest.approx(20)
    # the steep eigenvector is the y-axis rotated by the angle: (−sin, cos)
    v = torch.tensor([-math.sin(0.3), math.cos(0.3)], dtype=torch.float64)
    torch.testing.assert_close(J.H @ v, 40.0 * v)
    d = torch.tensor([0.7, -1.1], dtype=torch.float64)
    assert J(d).item() == pytest.approx((0.5 * d @ J.H @ d).item(), rel=1e-14)

    Jn = Quadratic(condition_number=100, dim=12, seed=0)
    torch.testing.assert_close(Jn.R.T @ Jn.R, torch.eye(12, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.eigvalsh(Jn.H),
                               torch.linspace(1, 100, 12, dtype=torch.float64))
    assert Jn.start.shape == (12,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(condition_number=0.5), "Invalid condition number: 0.5"),
    (dict(dim=1), "Invalid dim: 1"),
    (dict(scale=0.0), "Invalid scale: 0.0"),
    (dict(dim=3, seed=0, angle=0.1), "either angle"),
])
def test_quadratic_invalid_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Quadratic(**kwargs)


def test_invalid_landscape_arguments():
    with pytest.raises(ValueError, match="Invalid width"):
        Plateau(width=0)
    with pytest.raises(ValueError, match="Invalid cliff"):
        Cliff(height=-1)
    with pytest.raises(ValueError, match="Invalid tilt"):
        LocalMinima(tilt=2.0)


def test_plateau_gradient_vanishes_far_away():
    J = Plateau()
    far = J.grad(J.start).norm().item()
    near = J.grad(torch.tensor([0.5, 0.0], dtype=torch.float64)).norm().item()
    q = (J.start**2).sum().item()
    assert far == pytest.approx((1 - math.tanh(q) ** 2) * 2 * J.start.norm().item(), rel=1e-12)
    assert far < 1e-4 and near > 0.5  # four orders of magnitude


def test_cliff_gradient_is_orders_of_magnitude_steeper():
    J = Cliff()  # h = 10, s = 40: slope h·s/4 = 100 on the cliff
    at_cliff = J.grad(torch.tensor([0.0, 0.0], dtype=torch.float64))
    assert at_cliff[0].item() == pytest.approx(-1 - 100, rel=1e-12)
    X, Y, _ = J.mesh(resolution=121)
    grid = torch.stack([torch.as_tensor(X), torch.as_tensor(Y)], -1)
    off_cliff = grid[..., 0].abs() > 0.3
    assert J.grad(grid).norm(dim=-1)[off_cliff].max().item() < 5


# ----------------------------------------------------------------------------------------
# run_optimizer
# ----------------------------------------------------------------------------------------
def test_sgd_on_quadratic_follows_the_closed_form():
    """θ_t = (I − εH)^t θ₀ for plain gradient descent on ½θᵀHθ."""
    J = Quadratic(condition_number=10, angle=0.5)
    lr, T = 0.15, 30
    tr = run_optimizer(J, torch.optim.SGD, steps=T, lr=lr)
    M = torch.eye(2, dtype=torch.float64) - lr * J.H
    expected = torch.stack([torch.linalg.matrix_power(M, t) @ J.start for t in range(T + 1)])
    np.testing.assert_allclose(tr.path, expected.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(tr.losses, J(expected).numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(tr.grad_norms, J.grad(expected).norm(dim=-1).numpy(),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(tr.lrs, np.full(T, lr))
    assert tr.steps == T and not tr.diverged
    np.testing.assert_array_equal(tr.final, tr.path[-1])


def test_momentum_matches_the_heavy_ball_recursion():
    J = Rosenbrock()
    lr, alpha, T = 1e-3, 0.9, 25
    tr = run_optimizer(J, functools.partial(torch.optim.SGD, momentum=alpha), steps=T, lr=lr)
    theta, b = J.start.clone(), None
    for t in range(T):
        g = J.grad(theta)
        b = g if b is None else alpha * b + g  # torch's buffer starts at g₁
        theta = theta - lr * b
        np.testing.assert_allclose(tr.path[t + 1], theta.numpy(), rtol=1e-12)


def test_our_optimizers_run_like_torchs():
    optim = pytest.importorskip("course_lib.optim")
    J = Beale()
    ours = run_optimizer(J, optim.Adam, steps=40, lr=0.05)
    ref = run_optimizer(J, torch.optim.Adam, steps=40, lr=0.05)
    np.testing.assert_allclose(ours.path, ref.path, rtol=1e-12, atol=1e-14)


def test_divergence_is_recorded_not_raised():
    J = Quadratic(condition_number=10)
    tr = run_optimizer(J, torch.optim.SGD, steps=500, lr=0.25)  # ε > 2/λ_max = 0.2
    assert tr.diverged and tr.steps < 500
    assert tr.losses[-1] > 1e10 and np.isfinite(tr.path).all()
    assert len(tr.losses) == len(tr.grad_norms) == len(tr.path) == len(tr.lrs) + 1

    tr = run_optimizer(Rosenbrock(), torch.optim.SGD, steps=100, lr=0.1, max_loss=math.inf)
    assert tr.diverged and np.isfinite(tr.path).all() and np.isfinite(tr.losses).all()
    assert tr.steps < 100 and len(tr.lrs) == tr.steps


def test_gradient_clipping_tames_the_cliff():
    J = Cliff()
    lr = 0.1
    free = run_optimizer(J, torch.optim.SGD, steps=60, lr=lr)
    clipped = run_optimizer(J, torch.optim.SGD, steps=60, lr=lr, clip_grad_norm=1.0)
    by_value = run_optimizer(J, torch.optim.SGD, steps=60, lr=lr, clip_grad_value=0.5)
    step = lambda tr: np.linalg.norm(np.diff(tr.path, axis=0), axis=1)  # noqa: E731
    assert step(free).max() > 5  # catapulted off the window
    assert step(clipped).max() <= lr * 1.0 + 1e-12
    assert np.abs(np.diff(by_value.path, axis=0)).max() <= lr * 0.5 + 1e-12
    # the recorded gradient norms are the raw ones, before clipping
    np.testing.assert_allclose(clipped.grad_norms,
                               J.grad(torch.as_tensor(clipped.path)).norm(dim=-1).numpy(),
                               rtol=1e-12)
    assert np.linalg.norm(clipped.final - J.minimizers[0].numpy()) < 0.05


def test_scheduler_and_first_step_below():
    J = Quadratic(condition_number=4)
    sched = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=5, gamma=0.5)
    tr = run_optimizer(J, torch.optim.SGD, steps=12, lr=0.2, scheduler=sched)
    np.testing.assert_allclose(tr.lrs, [0.2] * 5 + [0.1] * 5 + [0.05] * 2)
    t = tr.first_step_below(0.1)
    assert t is not None and tr.losses[t] < 0.1 <= tr.losses[t - 1]
    assert tr.first_step_below(-1.0) is None


def test_lbfgs_gets_its_closure():
    J = Rosenbrock()
    tr = run_optimizer(J, torch.optim.LBFGS, steps=10, lr=1, line_search_fn="strong_wolfe",
                       tolerance_grad=1e-12, tolerance_change=1e-15)
    np.testing.assert_allclose(tr.final, [1.0, 1.0], atol=1e-7)
    with pytest.raises(ValueError, match="clipping"):
        run_optimizer(J, torch.optim.LBFGS, steps=2, clip_grad_norm=1.0)


# ----------------------------------------------------------------------------------------
# Newton and saddle-free Newton
# ----------------------------------------------------------------------------------------
def test_newton_solves_a_quadratic_in_one_step():
    J = Quadratic(condition_number=1000, dim=6, seed=1, center=torch.arange(6.0))
    theta = newton_step(J, J.start)
    torch.testing.assert_close(theta, J.minimizers[0], rtol=0, atol=1e-12)


def test_newton_step_matches_linear_solves():
    J = Beale()
    theta = torch.tensor([0.5, 1.7], dtype=torch.float64)
    g, H = J.grad(theta), J.hessian(theta)
    I = torch.eye(2, dtype=torch.float64)
    torch.testing.assert_close(newton_step(J, theta, damping=0.3),
                               theta - torch.linalg.solve(H + 0.3 * I, g))
    abs_H = torch.as_tensor(scipy.linalg.sqrtm((H @ H).numpy()).real)  # |H| = (H²)^{1/2}
    torch.testing.assert_close(newton_step(J, theta, saddle_free=True),
                               theta - torch.linalg.solve(abs_H, g))


def test_newton_is_attracted_to_the_saddle_saddle_free_newton_escapes():
    J = Saddle()
    newton = newton_path(J, steps=10)
    sfn = newton_path(J, steps=10, saddle_free=True)
    np.testing.assert_allclose(newton.final, J.saddles[0].numpy(), atol=1e-12)
    np.testing.assert_allclose(sfn.final, [0.0, math.sqrt(2)], atol=1e-12)
    assert sfn.losses[-1] == pytest.approx(J.min_value) and newton.losses[-1] == 0.0
    assert newton.name == "Newton" and sfn.name == "saddle-free Newton"
    # gradient descent from the same start also escapes, but slowly
    gd = run_optimizer(J, torch.optim.SGD, steps=10, lr=0.1)
    assert abs(gd.final[1]) < 1.0


def test_newton_on_a_singular_hessian_diverges_cleanly():
    J = LocalMinima()
    x = 1 / math.sqrt(3)  # H = diag(12x² − 4, 2) is singular (to rounding)
    tr = newton_path(J, start=[x, 0.5], steps=5)
    # the first step is astronomically long: the run stops, flagged, with finite records
    assert tr.diverged and tr.steps <= 1 and np.isfinite(tr.path).all()
    assert tr.losses[-1] > 1e10 or tr.steps == 0


# ----------------------------------------------------------------------------------------
# check_grad
# ----------------------------------------------------------------------------------------
def test_check_grad():
    J = Rosenbrock()
    theta = torch.tensor([-0.7, 0.4], dtype=torch.float64)
    assert check_grad(J, J.grad, theta) < 1e-6
    assert check_grad(J, lambda t: 1.01 * J.grad(t), theta) > 0.1
    # NumPy functions work too, and agree with scipy's forward-difference check
    x = np.array([-0.7, 0.4])
    ours = check_grad(scipy.optimize.rosen, scipy.optimize.rosen_der, x)
    assert ours < 1e-6 < scipy.optimize.check_grad(scipy.optimize.rosen,
                                                   scipy.optimize.rosen_der, x)
    wrong = lambda x: scipy.optimize.rosen_der(x) + np.array([0.0, 0.3])  # noqa: E731
    assert check_grad(scipy.optimize.rosen, wrong, x) == pytest.approx(0.3, rel=1e-5)
