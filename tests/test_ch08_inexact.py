"""Chapter 8: inexact gradients, costs without a minimum, the mountain, limits of optimization.

Two kinds of tests: the library functions of ``course_lib.experiments.inexact`` against references
(torch.optim, autograd, closed forms, scipy), and every number the chapter prints or states,
computed with the same functions and the same arguments (the module constants) as the notebook.
"""
import functools
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_lib import inexact as ix
from course_lib import long_term as lt
from course_lib.landscapes import Quadratic, check_grad, run_optimizer
from course_lib.widgets import interactive_plot
from stored import stored_text

CHAPTER = "08_inexact"

# ----------------------------------------------------------------------------------------
# the chapter's experiments, run once
# ----------------------------------------------------------------------------------------
LR, STEPS = ix.NOISE["lr"], ix.NOISE["steps"]


@pytest.fixture(scope="module")
def quad():
    return Quadratic(ix.NOISE["condition_number"], ix.NOISE["angle"])


@pytest.fixture(scope="module")
def noise_runs(quad):
    return {sd: ix.noisy_sgd(quad, LR, STEPS, noise_std=sd, runs=ix.NOISE["runs"],
                             seed=ix.NOISE["seed"]) for sd in ix.NOISE_STDS}


@pytest.fixture(scope="module")
def logit():
    X, s = ix.separable_data()
    return X, s, ix.max_margin_vector(X, s), ix.logistic_regression_gd(X, s)


@pytest.fixture(scope="module")
def fits():
    return {d: ix.fit_gaussian_precision(d) for d in ix.GAUSSIAN["degrees"]}


@pytest.fixture(scope="module")
def mountain():
    return ix.Mountain()


@pytest.fixture(scope="module")
def grid(mountain):
    gx, gy = ix.start_grid(mountain, 41)
    return gx, gy, ix.descend_from(mountain, np.stack([gx.ravel(), gy.ravel()], axis=1))


# ----------------------------------------------------------------------------------------
# 1. noisy and biased gradients: the library
# ----------------------------------------------------------------------------------------
def test_noisy_sgd_without_noise_or_bias_is_torch_sgd(quad):
    ours = ix.noisy_sgd(quad, 0.05, 40)
    ref = run_optimizer(quad, torch.optim.SGD, steps=40, lr=0.05)
    np.testing.assert_allclose(ours.path[:, 0], ref.path, rtol=0, atol=1e-14)
    np.testing.assert_allclose(ours.losses[:, 0], ref.losses, rtol=1e-13, atol=1e-15)


def test_noisy_sgd_uses_the_schedule_and_the_bias(quad):
    runs = ix.noisy_sgd(quad, lambda t: 0.1 / t, 5, bias=[1.0, -2.0])
    np.testing.assert_allclose(runs.lrs, [0.1, 0.05, 0.1 / 3, 0.025, 0.02])
    theta = quad.start.clone()  # the same update written out: θ ← θ − ε_t (∇J(θ) + b)
    for eps in runs.lrs:
        theta = theta - eps * (quad.grad(theta) + torch.tensor([1.0, -2.0], dtype=torch.float64))
    np.testing.assert_allclose(runs.path[-1, 0], theta.numpy(), atol=1e-14)


def test_noisy_sgd_runs_differ_only_in_their_noise(quad):
    runs = ix.noisy_sgd(quad, 0.05, 30, noise_std=1.0, runs=4, seed=3)
    again = ix.noisy_sgd(quad, 0.05, 30, noise_std=1.0, runs=4, seed=3)
    np.testing.assert_array_equal(runs.path, again.path)
    assert np.all(runs.path[0] == runs.path[0, 0])  # one shared start
    assert np.ptp(runs.path[-1, :, 0]) > 0.01  # … and different ends


def test_predicted_noise_floor_matches_the_lyapunov_equation(quad):
    # Reference: the stationary covariance S of e_t = A e_{t-1} + εσ ξ_t, A = I − εH, solves
    # S = A S Aᵀ + ε²σ² I (scipy's discrete Lyapunov solver); then E[J] − J* = ½ tr(H S).
    from scipy.linalg import solve_discrete_lyapunov

    for eps, sigma in [(0.05, 1.0), (0.15, 0.3), (0.01, 4.0)]:
        H = quad.H.numpy()
        A = np.eye(2) - eps * H
        S = solve_discrete_lyapunov(A, eps**2 * sigma**2 * np.eye(2))
        assert ix.predicted_noise_floor(H, eps, sigma) == pytest.approx(0.5 * np.trace(H @ S),
                                                                        rel=1e-10)


def test_biased_fixed_point_is_where_the_estimate_vanishes(quad):
    b = np.array([0.3, -0.7])
    theta = ix.biased_fixed_point(quad.H, quad.center, b)
    np.testing.assert_allclose(quad.grad(torch.tensor(theta)).numpy() + b, 0, atol=1e-14)
    excess = quad(theta).item() - quad.min_value
    assert ix.predicted_bias_excess(quad.H, b) == pytest.approx(excess, rel=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda J: ix.noisy_sgd(J, -0.1, 10), "Invalid lr"),
    (lambda J: ix.noisy_sgd(J, 0.1, 0), "Invalid steps"),
    (lambda J: ix.noisy_sgd(J, 0.1, 10, runs=0), "Invalid runs"),
    (lambda J: ix.noisy_sgd(J, 0.1, 10, noise_std=-1.0), "Invalid noise_std"),
    (lambda J: ix.noisy_sgd(J, 0.1, 10, bias=[1.0, 2.0, 3.0]), "Invalid bias"),
    (lambda J: ix.noisy_sgd(J, lambda t: 0.0, 10), "Invalid lr"),
    (lambda J: ix.predicted_noise_floor(J.H, 0.5, 1.0), "Invalid lr"),
    (lambda J: ix.predicted_noise_floor(np.ones((2, 3)), 0.1, 1.0), "Invalid H"),
    (lambda J: ix.biased_fixed_point(J.H, [0.0], [1.0, 1.0]), "Invalid center/bias"),
])
def test_noise_functions_reject_bad_input(quad, call, message):
    with pytest.raises(ValueError, match=message):
        call(quad)


# ----------------------------------------------------------------------------------------
# 1. the chapter's numbers
# ----------------------------------------------------------------------------------------
def test_noise_floor_grows_with_the_variance_as_predicted(quad, noise_runs):
    measured = [ix.noise_floor(noise_runs[sd]) for sd in ix.NOISE_STDS]
    predicted = [ix.predicted_noise_floor(quad.H, LR, sd) for sd in ix.NOISE_STDS]
    assert measured[0] < 1e-12  # no noise: it converges
    for m, p in zip(measured[1:], predicted[1:]):
        assert m == pytest.approx(p, rel=0.01)  # "to well within a percent"
    assert np.all(np.diff(measured) > 0)
    assert measured[-1] / measured[-2] == pytest.approx(4.0, rel=0.05)  # 4× the variance
    assert predicted[2] == pytest.approx(0.0295, abs=5e-5)


def test_decaying_lr_sinks_below_the_floor_with_a_lag(quad):
    constant = ix.noisy_sgd(quad, LR, STEPS, noise_std=1.0, runs=ix.DECAY_RUNS,
                            seed=ix.NOISE["seed"])
    decayed = ix.noisy_sgd(quad, lambda t: LR / (1 + t / ix.LR_DECAY), STEPS, noise_std=1.0,
                           runs=ix.DECAY_RUNS, seed=ix.NOISE["seed"])
    const = constant.losses[-1].mean() - quad.min_value
    final = decayed.losses[-1].mean() - quad.min_value
    floor = ix.predicted_noise_floor(quad.H, LR, 1.0)
    now = ix.predicted_noise_floor(quad.H, decayed.lrs[-1], 1.0)
    # Seeds 0-3 (2000 runs each): const 0.0292-0.0296, final 0.00150-0.00160, ratio 18.5-19.4,
    # final / floor of the final ε_t 1.86-1.97 (and 1.54 after 6000 steps: it keeps lagging).
    assert const == pytest.approx(floor, rel=0.03)  # the last step sits on the floor
    assert 15 < const / final < 22
    assert 1.7 < final / now < 2.2  # "about twice above"
    assert (f"{const:.2g}", f"{final:.2g}", f"{const / final:.0f}", f"{final / now:.1f}") == \
        ("0.029", "0.0016", "18", "2.0")


def test_bias_moves_the_end_point_by_H_inverse_b(quad):
    ends = {}
    for name, direction in [("flat", quad.R[:, 0]), ("steep", quad.R[:, 1])]:
        b = (ix.BIAS * direction).numpy()
        run = ix.noisy_sgd(quad, LR, STEPS, bias=b)
        target = ix.biased_fixed_point(quad.H, quad.center, b)
        np.testing.assert_allclose(run.path[-1, 0], target, atol=1e-10)
        ends[name] = np.linalg.norm(target - quad.center.numpy())
        assert run.losses[-1, 0] - quad.min_value == pytest.approx(
            ix.predicted_bias_excess(quad.H, b), rel=1e-8)
    assert ends["flat"] == pytest.approx(0.5) and ends["steep"] == pytest.approx(0.05)
    assert ends["flat"] / ends["steep"] == pytest.approx(quad.condition_number)
    b_flat = (ix.BIAS * quad.R[:, 0]).numpy()
    noisy = ix.noisy_sgd(quad, LR, STEPS, bias=b_flat, noise_std=1.0, runs=ix.NOISE["runs"],
                         seed=ix.NOISE["seed"])
    mean_end = noisy.path[STEPS // 2:].mean(axis=(0, 1))
    np.testing.assert_allclose(mean_end, ix.biased_fixed_point(quad.H, quad.center, b_flat),
                               atol=0.01)


def test_noise_widget_draws_and_measures(quad):
    widget = interactive_plot(functools.partial(ix.draw_noisy_sgd, steps=300),
                              noise_std=(0.0, 4.0, 0.25), bias=(0.0, 1.0, 0.1))
    assert repr(widget) == "InteractivePlot(controls: noise_std, bias)"
    assert widget.image.value[:4] == b"\x89PNG"
    sigma, bias = widget.values["noise_std"], widget.values["bias"]
    b = bias * quad.R[:, 0]
    predicted = ix.predicted_noise_floor(quad.H, LR, sigma) + ix.predicted_bias_excess(quad.H, b)
    assert ix.noise_floor(widget.result) == pytest.approx(predicted, rel=0.15)
    assert f"(predicted {predicted:.2g})" in widget.figure.axes[0].get_title()
    with pytest.raises(ValueError, match="Invalid bias"):
        ix.draw_noisy_sgd(1.0, -0.5)


# ----------------------------------------------------------------------------------------
# 2. costs with no minimum: the library
# ----------------------------------------------------------------------------------------
def test_max_margin_vector_satisfies_the_kkt_conditions(logit):
    # Reference: at the optimum of min ½‖w‖² s.t. Zw ≥ 1, w = Zᵀα with α ≥ 0 supported on the
    # active constraints (Z_i w = 1).  Find α by non-negative least squares.
    from scipy.optimize import nnls

    X, s, w_hat, _ = logit
    Z = s.numpy()[:, None] * np.c_[X.numpy(), np.ones(len(X))]
    margins = Z @ w_hat
    assert margins.min() == pytest.approx(1.0, abs=1e-7)
    active = margins < 1 + 1e-6
    alpha, residual = nnls(Z[active].T, w_hat)
    assert residual < 1e-6 and 2 <= active.sum() <= 4


def test_max_margin_vector_rejects_overlapping_classes():
    X = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, 0.0], [2.0, 0.0]], dtype=torch.float64)
    s = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    with pytest.raises(ValueError, match="not linearly separable"):
        ix.max_margin_vector(X, s)
    with pytest.raises(ValueError, match="Invalid s"):
        ix.max_margin_vector(X, torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_logistic_regression_gd_is_torch_sgd_on_bce_with_weight_decay(logit):
    X, s, _, _ = logit
    runs = ix.logistic_regression_gd(X, s, lr=0.5, steps=30, weight_decays=(0.0, 0.1))
    for j, lam in enumerate((0.0, 0.1)):
        model = torch.nn.Linear(2, 1).double()
        torch.nn.init.zeros_(model.weight)
        torch.nn.init.zeros_(model.bias)
        opt = torch.optim.SGD(model.parameters(), lr=0.5, weight_decay=lam)
        y01 = (s.reshape(-1, 1) + 1) / 2
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.binary_cross_entropy_with_logits(model(X), y01).backward()
            opt.step()
        w_ref = torch.cat([model.weight.detach().reshape(-1), model.bias.detach()]).numpy()
        assert runs.steps[-1] == 30
        np.testing.assert_allclose(runs.weights[-1, j], w_ref, rtol=1e-11, atol=1e-13)


def test_logistic_records_include_every_power_of_ten(logit):
    steps = logit[3].steps
    assert {0, 1, 10, 100, 1000, 10_000, 20_000} <= set(steps.tolist())
    assert np.all(np.diff(steps) > 0)


def test_gaussian_nll_is_torch_gaussian_nll_loss():
    gen = torch.Generator().manual_seed(0)
    r = torch.randn(20, generator=gen, dtype=torch.float64)
    for log_beta in (-2.0, 0.0, 3.0):
        lb = torch.tensor(log_beta, dtype=torch.float64)
        ref = torch.nn.GaussianNLLLoss(full=True)(r, torch.zeros_like(r),
                                                  torch.full_like(r, math.exp(-log_beta)))
        assert ix.gaussian_nll(r, lb).item() == pytest.approx(ref.item(), rel=1e-12)


def test_nll_floor_is_the_minimum_over_beta():
    from scipy.optimize import minimize_scalar

    for mse in (0.01, 0.275, 3.0):
        r = torch.full((4,), math.sqrt(mse), dtype=torch.float64)
        best = minimize_scalar(lambda lb: ix.gaussian_nll(r, torch.tensor(lb)).item(),
                               bounds=(-10, 10), method="bounded", options={"xatol": 1e-10})
        assert ix.nll_floor(mse) == pytest.approx(best.fun, abs=1e-9)
        assert math.exp(best.x) == pytest.approx(1 / mse, rel=1e-4)
    with pytest.raises(ValueError, match="Invalid mse"):
        ix.nll_floor(0.0)


def test_helpers_fit_known_laws():
    t = np.array([1.0, 10.0, 100.0, 1000.0])
    assert ix.norm_slope(t, 2.5 * np.log(t) + 1, t_min=1) == pytest.approx(2.5)
    assert ix.loss_exponent(t, 3 / t, t_min=10) == pytest.approx(-1.0)
    assert ix.cosine([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    with pytest.raises(ValueError, match="Invalid t_min"):
        ix.norm_slope(t, t, t_min=500)
    with pytest.raises(ValueError, match="Invalid vectors"):
        ix.cosine([0, 0], [1, 1])
    with pytest.raises(ValueError, match="Invalid degree"):
        ix.fit_gaussian_precision(8, n=8)


# ----------------------------------------------------------------------------------------
# 2. the chapter's numbers
# ----------------------------------------------------------------------------------------
def test_separable_logistic_loss_falls_while_the_norm_grows_like_log_t(logit):
    _, _, w_hat, runs = logit
    norm_hat = np.linalg.norm(w_hat)
    assert norm_hat == pytest.approx(3.23, abs=0.005)
    assert np.all(np.diff(runs.losses[:, 0]) < 0)  # monotone: the loss falls
    assert np.all(np.diff(runs.norms[:, 0]) > 0)  # … and ‖w‖ grows, at every record
    slope = ix.norm_slope(runs.steps, runs.norms[:, 0], t_min=10_000)
    assert slope == pytest.approx(3.14, abs=0.005)
    assert abs(slope - norm_hat) / norm_hat < 0.05  # d‖w‖/d ln t → ‖ŵ‖
    assert ix.norm_slope(runs.steps, runs.norms[:, 0], t_min=1000) < slope  # approaching
    exponent = ix.loss_exponent(runs.steps, runs.losses[:, 0], t_min=1000)
    assert -1.0 < exponent < -0.85  # printed −0.89
    assert ix.cosine(runs.weights[-1, 0], w_hat) > 0.9998
    at = {int(t): k for k, t in enumerate(runs.steps)}
    for t, loss, norm in [(10, 0.0678, 1.86), (100, 0.026, 3.6), (1000, 0.00716, 7.33),
                          (10_000, 0.00101, 13.7), (20_000, 0.000514, 15.9)]:
        assert runs.losses[at[t], 0] == pytest.approx(loss, rel=5e-3)
        assert runs.norms[at[t], 0] == pytest.approx(norm, rel=5e-3)


def test_weight_decay_gives_the_logistic_loss_a_minimum(logit):
    runs = logit[3]
    assert runs.norms[-1, 1] == pytest.approx(2.5, abs=0.005)
    assert runs.norms[-1, 1] == pytest.approx(runs.norms[-2, 1], rel=1e-12)  # it stopped
    assert runs.grad_norms[-1, 1] < 1e-12


def test_gaussian_precision_nll_has_a_floor_only_without_interpolation(fits):
    line, interp = fits[1], fits[7]
    assert line.best_mse == pytest.approx(0.275, abs=5e-4)
    assert ix.nll_floor(line.best_mse) == pytest.approx(0.7728, abs=5e-5)
    assert line.nll[-1] == pytest.approx(ix.nll_floor(line.best_mse), abs=1e-8)
    assert line.beta[-1] == pytest.approx(1 / line.best_mse, rel=1e-5)
    assert interp.best_mse < 1e-20
    assert np.all(np.diff(interp.nll[::100]) < 0)  # lower at every 100th step
    # Past step ~500 Adam's jitter of the fit makes the NLL chaotic.  Measured: the default /
    # avx2 / avx512 kernels and 12 runs from θ₀ perturbed by ≤ 1e-12 give the NLL at step 800
    # in [-3.232, -3.203] and at step 1000 in [-4.13, -3.94]; ln β at 1000 in [10.186, 10.197];
    # ½β·MSE at 1000 in [0.05, 0.24]; the NLL up to step 600 agrees to 1e-3.
    assert interp.nll[-1] < -3.8 and interp.nll[200] == pytest.approx(-0.189, abs=5e-3)
    assert interp.beta[-1] > 2e4 and np.all(np.diff(interp.beta[::100]) > 0)
    log_beta = np.log(interp.beta)
    assert log_beta[-1] == pytest.approx(10.19, abs=0.03)
    rate = (log_beta[-1] - log_beta[-501]) / 500 / ix.GAUSSIAN["lr"]
    assert 0.95 < rate <= 1.0  # ln β rises by ≈ ε per step (measured 0.976-0.978)
    exact_fit = 0.5 * (math.log(2 * math.pi) - log_beta)
    assert np.all(interp.nll[200:] - exact_fit[200:] > 0)
    assert 0 < interp.nll[-1] - exact_fit[-1] < 0.5
    per_step = (interp.nll[-1] - interp.nll[-501]) / 500
    assert -ix.GAUSSIAN["lr"] / 2 < per_step < -0.0042  # measured -0.00478 to -0.00441
    # the printed strings
    assert [f"{interp.nll[t]:+.1f}" for t in (0, 200, 400, 600, 800)] == \
        ["+1.2", "-0.2", "-1.2", "-2.2", "-3.2"]
    assert [f"{log_beta[t]:4.1f}" for t in (0, 200, 400, 600, 800, 1000)] == \
        [" 0.0", " 2.2", " 4.3", " 6.3", " 8.3", "10.2"]
    assert (f"{exact_fit[-1]:.1f}", f"{rate:.1f}") == ("-4.2", "1.0")


def test_torch_gaussian_nll_loss_clamps_the_variance():
    r = torch.zeros(8, dtype=torch.float64)
    ours = ix.gaussian_nll(r, torch.tensor(math.log(1e12), dtype=torch.float64)).item()
    clamped = torch.nn.GaussianNLLLoss(full=True)(r, r, torch.full_like(r, 1e-12)).item()
    assert ours == pytest.approx(-12.9, abs=0.05) and clamped == pytest.approx(-5.99, abs=0.005)


# ----------------------------------------------------------------------------------------
# 3. the mountain: the library
# ----------------------------------------------------------------------------------------
def test_mountain_gradient_and_hessian_match_autograd(mountain):
    gen = torch.Generator().manual_seed(0)
    points = torch.rand(8, 2, generator=gen, dtype=torch.float64) * 10 - 5
    for p in points:
        assert check_grad(mountain, mountain.grad, p) < 1e-7
        H_auto = torch.autograd.functional.hessian(mountain, p)
        torch.testing.assert_close(mountain.hessian(p), H_auto, rtol=1e-10, atol=1e-12)
    batched = mountain.hessian(points)
    torch.testing.assert_close(batched[3], mountain.hessian(points[3]))


def test_mountain_critical_points(mountain):
    for point, signs in [(mountain.minimizers[0], (1, 1)), (mountain.saddles[0], (-1, 1)),
                         (mountain.peak, (-1, -1))]:
        assert mountain.grad(point).norm() < 1e-12
        lam = torch.linalg.eigvalsh(mountain.hessian(point))
        assert tuple(torch.sign(lam).tolist()) == signs
    np.testing.assert_allclose(mountain.minimizers[0].numpy(), [0.211, 0.0], atol=5e-4)
    np.testing.assert_allclose(mountain.saddles[0].numpy(), [-4.371, 0.0], atol=5e-4)
    np.testing.assert_allclose(mountain.peak.numpy(), [-2.832, 0.0], atol=5e-4)
    assert mountain.min_value == pytest.approx(0.0981, abs=5e-5)
    lam = torch.linalg.eigvalsh(mountain.hessian(mountain.saddles[0]))
    assert lam[0].item() == pytest.approx(-0.298, abs=5e-4)
    # the minimum is global: lower than J on a fine grid of the window
    _, _, Z = mountain.mesh(200)
    assert Z.min() >= mountain.min_value - 1e-12


def test_descend_from_is_torch_sgd_from_each_start(mountain):
    starts = np.stack([ix.start_on_circle(mountain, a) for a in (0, 100, 170)])
    runs = ix.descend_from(mountain, starts, lr=0.2, steps=200, keep_paths=True)
    for i, start in enumerate(starts):
        ref = run_optimizer(mountain, torch.optim.SGD, start, 200, lr=0.2)
        np.testing.assert_allclose(runs.paths[:, i], ref.path, atol=1e-12)
        assert runs.lengths[i] == pytest.approx(ix.path_length(ref), rel=1e-12)
        assert runs.arrivals[i] == ref.first_step_below(mountain.min_value + ix.DESCENT["tol"])


def test_start_on_circle_and_path_length(mountain):
    for a in (0, 37.5, 90, 180):
        d = ix.start_on_circle(mountain, a) - mountain.minimizers[0].numpy()
        assert np.linalg.norm(d) == pytest.approx(ix.DESCENT["radius"])
    assert ix.start_on_circle(mountain, 180)[1] == 0.0  # exactly in the shadow
    assert ix.path_length([[0, 0], [3, 4], [3, 0]]) == pytest.approx(9.0)
    with pytest.raises(ValueError, match="Invalid path"):
        ix.path_length([1.0, 2.0])
    with pytest.raises(ValueError, match="Invalid height"):
        ix.Mountain(height=-1.0)
    with pytest.raises(ValueError, match="Invalid lr"):
        ix.descend_from(mountain, [[0.0, 0.0]], lr=0.0)
    with pytest.raises(ValueError, match="Invalid half_angle"):
        ix.compare_sides(ix.descend_from(mountain, [[1.0, 0.0]], steps=1), mountain,
                         half_angle=120)


def test_mountain_figure_reports_the_detour(mountain):
    traj = ix.draw_mountain_descent(170.0, mountain)
    fig = plt.gcf()
    assert ix.path_length(traj) / ix.DESCENT["radius"] == pytest.approx(1.24, abs=5e-3)
    assert "1.24× the straight line, arrives at step 69" in fig.axes[0].get_title()
    plt.close(fig)


# ----------------------------------------------------------------------------------------
# 3. the chapter's numbers
# ----------------------------------------------------------------------------------------
def test_from_behind_the_path_is_longer_or_never_arrives(mountain):
    angles = (0, 170, 180)
    runs = ix.descend_from(mountain, np.stack([ix.start_on_circle(mountain, a) for a in angles]))
    ratio = runs.lengths / ix.DESCENT["radius"]
    assert ratio[0] == pytest.approx(1.0, abs=5e-3)  # the good start goes straight in
    assert ratio[1] == pytest.approx(1.24, abs=5e-3)  # "about a quarter longer"
    assert runs.arrivals.tolist() == [40, 69, -1]
    assert runs.excess[0] < 1e-3 and runs.excess[1] < 1e-3
    assert runs.excess[2] == pytest.approx(3.91, abs=5e-3)  # stuck at the saddle
    np.testing.assert_allclose(runs.finals[2], mountain.saddles[0].numpy(), atol=1e-8)


def test_shadow_map(mountain, grid):
    gx, gy, runs = grid
    sides = ix.compare_sides(runs, mountain, r_min=4.0, r_max=7.0, half_angle=20.0)
    assert (sides.median_front, sides.median_behind) == (38.0, 66.0)
    assert (sides.n_front, sides.n_behind) == (130, 131)
    assert (sides.never_front, sides.never_behind) == (0, 9)
    never = runs.arrivals < 0
    assert never.sum() == 12
    assert np.all(gy.ravel()[never] == 0) and np.all(gx.ravel()[never] < mountain.peak[0].item())


def test_escape_time_grows_like_log_one_over_delta(mountain):
    esc = ix.shadow_escape(mountain, 10.0 ** -np.arange(2, 10))
    assert np.all(np.diff(esc.arrivals) > 0)
    assert esc.predicted_slope == pytest.approx(17.3, abs=0.05)
    assert esc.measured_slope == pytest.approx(esc.predicted_slope, rel=0.01)


# ----------------------------------------------------------------------------------------
# 4. limits of optimization: the library and the chapter's numbers
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_bits", [1, 2, 3, 4, 5, 6])
def test_parity_network_fits_parity_exactly(n_bits):
    X, Y = ix.parity_task(n_bits)
    assert X.shape == (2**n_bits, n_bits)
    odd = ((X > 0).sum(dim=1) % 2 == 1).reshape(-1, 1)
    assert torch.equal(Y == 1, odd)
    net = ix.parity_network(n_bits)
    assert net[0].out_features == n_bits  # width n
    with torch.no_grad():
        assert torch.equal(net(X), Y)  # exactly: small integers throughout
    assert ix.sign_accuracy(net, X, Y) == 1.0


def test_width_sweep_validates_widths():
    with pytest.raises(ValueError, match="Invalid widths"):
        ix.width_sweep(widths=(0, 4))
    with pytest.raises(ValueError, match="Invalid n_bits"):
        ix.parity_task(0)


def test_wider_networks_fit_parity_from_more_seeds():
    # the notebook's width sweep (about 2 s), read from its stored output (nbval proves it fresh)
    rows = [line.split() for line in stored_text(CHAPTER, "sweep = ix.width_sweep()").splitlines()[1:]]
    widths = [int(r[0]) for r in rows]
    success = np.array([float(r[1]) for r in rows])
    accuracy = np.array([float(r[2]) for r in rows])
    assert widths == [2, 4, 6, 8, 16, 32]
    assert success[0] == 0.0  # the smallest width never fits it
    assert success[1] == pytest.approx(1 / 12, abs=5e-4)  # width 4 can, but finds it once in 12
    assert success[4] == 1.0 and success[5] == 1.0  # from width 16 on, always
    assert np.all(np.diff(success) >= 0)  # more width, more success
    np.testing.assert_allclose(success, [0, 1 / 12, 8 / 12, 10 / 12, 1, 1], atol=5e-4)
    np.testing.assert_allclose(accuracy, [0.755, 0.76, 0.958, 0.979, 1.0, 1.0], atol=5e-4)


def test_width_four_fails_from_other_seeds_too():
    # "from 24 other seeds width 4 succeeds twice".  Measured as well (not asserted, slow):
    # width 16 fits from 24 of 24 of these seeds; 3000 steps instead of 500 leave width 4 at
    # 1 of 12 (the failed runs stall at squared errors 0.125-0.875); Adam's ε = 0.01 for 1500
    # steps gives 1 of 12.
    more = ix.width_sweep(widths=(4,), seeds=range(12, 36))
    assert round(more.success[0] * 24) == 2


# ----------------------------------------------------------------------------------------
# 5. truncated BPTT: the library
# ----------------------------------------------------------------------------------------
def _small_rnn(lag=6, n=64, seed=0):
    from course_lib.models import VanillaRNN

    X, y = lt.latching_task(lag, n, seed)
    rnn = VanillaRNN(1, 8, 2, generator=torch.Generator().manual_seed(seed)).double()
    return rnn, X, y


def test_truncated_rnn_keeps_the_forward_pass_and_cuts_the_backward_pass():
    rnn, X, y = _small_rnn()
    T = X.shape[1]
    for k in (1, 3, T, T + 4):
        torch.testing.assert_close(ix.TruncatedRNN(rnn, k)(X), rnn(X), rtol=0, atol=0)
    full = torch.autograd.grad(torch.nn.functional.cross_entropy(rnn(X), y), list(rnn.parameters()))
    full = torch.cat([g.reshape(-1) for g in full])
    torch.testing.assert_close(ix.truncated_gradient(rnn, X, y, T), full)
    torch.testing.assert_close(ix.truncated_gradient(rnn, X, y, T + 4), full)
    # Reference: the chain rule splits g into ĝ_k plus the paths through h_{T−k},
    # g = ĝ_k + (∂L/∂h_{T−k})ᵀ ∂h_{T−k}/∂θ; compute the second term with autograd.
    params = list(rnn.parameters())
    for k in (1, 2, 4):
        hs = rnn.states(X)
        loss = torch.nn.functional.cross_entropy(hs[-1] @ rnn.V.T + rnn.c, y)
        (dh,) = torch.autograd.grad(loss, hs[T - k], retain_graph=True)
        through = torch.autograd.grad(hs[T - k], params, grad_outputs=dh, allow_unused=True)
        through = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                             for p, g in zip(params, through)])
        torch.testing.assert_close(ix.truncated_gradient(rnn, X, y, k), full - through,
                                   rtol=1e-10, atol=1e-13)
    cos, ratio = ix.gradient_agreement(rnn, X, y, (1, T))
    assert cos[1] == pytest.approx(1.0) and ratio[1] == pytest.approx(1.0)
    assert cos[0] < 1.0


def test_full_truncation_is_chapter_7s_training():
    # k = T trains exactly as long_term.train_latching (chapter 7), bit for bit
    acc, _ = ix.train_truncated(5, 5, seed=0, lr=0.1)
    assert acc == lt.train_latching(5, 0, lr=0.1).accuracy


def test_truncation_functions_reject_bad_input():
    rnn, X, y = _small_rnn()
    with pytest.raises(ValueError, match="Invalid k"):
        ix.TruncatedRNN(rnn, 0)
    with pytest.raises(ValueError, match="Invalid truncations"):
        ix.truncation_experiment(6, truncations=(1, 2), seeds=(0,))
    with pytest.raises(ValueError, match="Invalid lag"):
        ix.train_truncated(0, 1, 0)


def test_plot_truncation_draws_every_experiment():
    K, S = 3, 2
    ones = np.ones((K, S))
    fake = ix.TruncationExperiment(4, 0.1, np.array([1, 2, 4]), np.arange(S),
                                   np.array([[0.5, 0.5], [0.5, 1.0], [1.0, 1.0]]),
                                   ones, ones, ones, ones)
    ax, bx = ix.plot_truncation(fake, [fake])
    assert len(ax.lines) == 4 and len(bx.lines) == 2 * (S + 1) + 1
    assert fake.successes().tolist() == [0, 1, 2]
    plt.close(ax.figure)


# ----------------------------------------------------------------------------------------
# 5. truncated BPTT: the chapter's numbers (read from the stored notebook: about 14 s to run)
# ----------------------------------------------------------------------------------------
def test_truncated_gradient_looks_exact_but_only_the_full_one_learns():
    text = stored_text(CHAPTER, "trunc = ix.truncation_experiment(**ix.TBPTT)")
    rows = {int(r[0]): [float(v) for v in r[1:8]] + [int(r[8]), int(r[10])]
            for r in (line.split() for line in text.splitlines()[3:])}
    assert sorted(rows) == list(ix.TBPTT["truncations"]) and ix.TBPTT["lag"] == 10
    cos_i, cos_t, ratio_i, ratio_t, median, low, high, ok, seeds = zip(*(rows[k] for k in sorted(rows)))
    assert cos_i[0] > 0.95  # "the median cosine of the 1-step gradient is above 0.95" (0.969)
    for k in range(1, 5):  # "from k = 2 on … above 0.98, before and after training"
        assert min(cos_i[k], cos_t[k], ratio_i[k], ratio_t[k]) > 0.98
    assert (median[-1], low[-1], ok[-1]) == (1.0, 1.0, seeds[-1])  # full: every seed learns
    assert max(median[:-1]) < 0.6  # truncated: the median stays near chance
    assert max(ok[:-1]) <= 2  # at most 2 seeds of 5 for any k < T
    assert sum(ok[:-1]) == 5
    assert ok[3] < ok[2]  # "which seeds learn is not monotone in k" (0, 2, 2, 1 of 5)


def test_truncation_fails_at_a_second_lag_and_learning_rate():
    text = stored_text(CHAPTER, "checks = [ix.truncation_experiment(")
    import re
    found = re.findall(r"T = +(\d+), ε = ([\d.]+): full gradient (\d+) of (\d+) seeds learn; "
                       r"truncated \(k < T\): (\d+) of (\d+) runs, median accuracy ([\d.]+)", text)
    assert [(int(T), float(e)) for T, e, *_ in found] == [(10, 0.1), *ix.TBPTT_CHECKS]
    for _, _, full, seeds, trunc, runs, median in found:
        assert full == seeds == "5"  # the full gradient learns from every seed
        assert int(trunc) / int(runs) <= 0.3  # measured 5/20, 4/15, 2/15 (9 seeds: 21-29 %)
        assert float(median) < 0.6


def test_more_steps_do_not_close_the_gap():
    # "ix.train_truncated(10, 5, seed=4, steps=600) learns where 150 steps did not, while
    # seed 0 stays at chance" (with 600 steps, k = 1, 2, 5, 9 learn from 2, 2, 3, 3 seeds of 5)
    assert ix.train_truncated(10, 5, seed=4, steps=600)[0] > 0.9
    assert ix.train_truncated(10, 5, seed=4)[0] < 0.6
    assert ix.train_truncated(10, 5, seed=0, steps=600)[0] < 0.6


def test_after_training_the_agreement_depends_on_the_seed():
    # "for seed 5, ix.gradient_agreement of ix.train_truncated(10, 10, seed=5) gives a 1-step
    # cosine of about 0.4" (measured 0.402; seeds 5-9 after training: 0.40, 1.00, 0.73, 0.57,
    # 0.99), while the untrained network's stays above 0.9 (0.93-0.97)
    rnn, _, (Xt, yt) = ix._latch_setup(10, 5)
    cos0, _ = ix.gradient_agreement(rnn, Xt, yt, (1,))
    acc, trained = ix.train_truncated(10, 10, seed=5)
    cos, _ = ix.gradient_agreement(trained, Xt, yt, (1,))
    assert acc > 0.9 and cos0[0] > 0.9 and 0.3 < cos[0] < 0.5


def test_a_truncation_close_to_the_lag_learns_from_some_other_seeds():
    # "ix.train_truncated(10, 9, seed) for seeds 5 to 9 learns from three" (accuracies 0.50,
    # 1.00, 0.48, 1.00, 1.00)
    accs = [ix.train_truncated(10, 9, seed=s)[0] for s in range(5, 10)]
    assert sum(a > ix.TBPTT_SUCCESS for a in accs) == 3


def test_one_step_short_of_the_lag_drops_only_the_step_1_terms_of_u_and_b():
    # "ĝ_{T-1} drops only the step-1 terms of U and b: W, V and c get their exact gradient"
    rnn, _, (Xt, yt) = ix._latch_setup(10, 0)
    full = ix.truncated_gradient(rnn, Xt, yt, 10)
    cut = ix.truncated_gradient(rnn, Xt, yt, 9)
    names = [n for n, _ in rnn.named_parameters()]
    sizes = [p.numel() for _, p in rnn.named_parameters()]
    for name, f, c in zip(names, full.split(sizes), cut.split(sizes)):
        if name in ("U", "b"):
            assert not torch.allclose(f, c)
        else:
            torch.testing.assert_close(f, c)
