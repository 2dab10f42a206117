"""Chapter 10 (momentum and Nesterov): course_lib.experiments.momentum against torch.optim.SGD, closed
forms, the eigenvalues of the iteration matrix, torch.linalg.solve and scipy's CG, then every
number the chapter notebook prints or states.

The chapter's experiments run here with the same module constants the notebook uses
(``mom.FIG85``, ``mom.TERMINAL_ALPHAS``, ``mom.RATE_KAPPAS``, ...).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg
import torch

from course_lib import conditioning
from course_lib import momentum as mom
from course_lib.landscapes import Quadratic, Rosenbrock, check_grad, run_optimizer
from course_lib.optim import SGD

F64 = torch.float64


@pytest.fixture(scope="module")
def sweep():
    return mom.rate_sweep()  # the notebook's sweep: κ = 10 … 10⁴, n = 1000, tol = 10⁻⁶


# ======================================================================================
# Unit tests of the library functions
# ======================================================================================
def test_canyon_has_top_eigenvalue_one():
    J = mom.canyon(40.0, angle=0.3)
    np.testing.assert_allclose(J.eigenvalues.numpy(), [1 / 40, 1.0], rtol=1e-15)
    np.testing.assert_allclose(torch.linalg.eigvalsh(J.H).numpy(), [1 / 40, 1.0], rtol=1e-12)
    assert isinstance(J, Quadratic) and J.dim == 2


def test_linear_slope_has_a_constant_gradient():
    J = mom.LinearSlope([3.0, -4.0, 1.0])
    theta = torch.tensor([[0.5, 2.0, -1.0], [10.0, 0.0, 3.0]], dtype=F64)
    torch.testing.assert_close(J.grad(theta), torch.tensor([[3.0, -4.0, 1.0]] * 2, dtype=F64))
    assert torch.equal(J.hessian(theta), torch.zeros(2, 3, 3, dtype=F64))
    assert check_grad(J, J.grad, torch.tensor([0.3, -0.2, 0.1], dtype=F64)) < 1e-8
    with pytest.raises(ValueError, match="Invalid slope"):
        mom.LinearSlope([])


def test_velocity_form_by_hand_for_two_steps():
    """J = ½θᵀHθ: write the first two steps of both methods out."""
    J = mom.canyon(10.0, angle=0.4)
    H, th0, lr, a = J.H, J.start, 0.7, 0.6
    hb = mom.velocity_form_path(J.grad, th0, lr, a, 2)
    v1 = -lr * H @ th0
    th1 = th0 + v1
    v2 = a * v1 - lr * H @ th1
    np.testing.assert_allclose(hb.theta, torch.stack([th0, th1, th1 + v2]).numpy(), atol=1e-15)
    np.testing.assert_allclose(hb.v[0], [0.0, 0.0])
    ne = mom.velocity_form_path(J.grad, th0, lr, a, 2, nesterov=True)
    w2 = a * v1 - lr * H @ (th1 + a * v1)  # the gradient at the look-ahead point
    np.testing.assert_allclose(ne.theta[2], (th1 + w2).numpy(), atol=1e-15)
    np.testing.assert_allclose(ne.look_ahead, ne.theta + a * ne.v, atol=0)


def test_zero_momentum_is_gradient_descent_in_closed_form():
    J = mom.canyon(20.0, angle=0.2)
    lr, steps = 1.5, 25
    path = mom.velocity_form_path(J.grad, J.start, lr, 0.0, steps).theta
    M = torch.eye(2, dtype=F64) - lr * J.H
    expected = torch.stack([torch.linalg.matrix_power(M, t) @ J.start for t in range(steps + 1)])
    np.testing.assert_allclose(path, expected.numpy(), atol=1e-13)
    np.testing.assert_allclose(mom.buffer_form_path(J.grad, J.start, lr, 0.0, steps), path,
                               atol=1e-15)


@pytest.mark.parametrize("nesterov", [False, True], ids=["heavy_ball", "nesterov"])
@pytest.mark.parametrize("where", ["canyon", "rosenbrock", "rotated10d"])
def test_lecture_and_torch_forms_agree(nesterov, where):
    landscape, kw = {
        "canyon": (mom.canyon(), {}),  # the notebook's settings (mom.FORMS)
        "rosenbrock": (Rosenbrock(), dict(lr=1e-3)),  # the notebook's second landscape
        "rotated10d": (Quadratic(condition_number=30, dim=10, seed=4), dict(lr=0.03,
                                                                            momentum=0.8)),
    }[where]
    c = mom.compare_forms(landscape, nesterov=nesterov, **kw)
    assert c.velocity.shape == (mom.FORMS["steps"] + 1, landscape.dim)
    assert c.max_difference < 1e-12
    # the test can fail: Nesterov's lecture-form θ_t are NOT torch's parameters
    if nesterov:
        vel = mom.velocity_form_path(landscape.grad, landscape.start, kw.get("lr", 0.5),
                                     kw.get("momentum", 0.9), 50, nesterov=True)
        assert np.max(np.abs(vel.theta - c.torch_sgd[:51])) > 1e-6


def test_forms_differ_for_the_heavy_ball_when_momentum_differs():
    J = mom.canyon()
    a = mom.velocity_form_path(J.grad, J.start, 0.5, 0.9, 20).theta
    b = mom.buffer_form_path(J.grad, J.start, 0.5, 0.89, 20)
    assert np.max(np.abs(a - b)) > 1e-3


def test_compare_forms_refuses_divergent_settings():
    with pytest.raises(ValueError, match="diverge"):
        mom.compare_forms(mom.canyon(), lr=5.0, momentum=0.1, steps=2000)


@pytest.mark.parametrize("alpha", mom.TERMINAL_ALPHAS)
def test_terminal_velocity(alpha):
    tv = mom.terminal_velocity(alpha)
    assert tv.step_lengths.shape == (mom.TERMINAL_STEPS,)
    np.testing.assert_allclose(tv.step_lengths, tv.theory, rtol=1e-10)
    assert tv.step_lengths[0] == pytest.approx(1.0, rel=1e-12)
    assert tv.terminal == pytest.approx(1 / (1 - alpha))
    expected = (1 - alpha**mom.TERMINAL_STEPS) / (1 - alpha)
    assert tv.measured_terminal == pytest.approx(expected, rel=1e-10)
    assert tv.measured_terminal == pytest.approx(tv.terminal, rel=5e-5)


def test_convergence_factor_matches_the_iteration_matrix():
    rng = np.random.default_rng(0)
    for _ in range(50):
        lam, lr, a = rng.uniform(0.01, 1), rng.uniform(0.05, 5), rng.uniform(0, 0.99)
        T_hb = np.array([[1 + a - lr * lam, -a], [1, 0]])
        T_ne = np.array([[(1 + a) * (1 - lr * lam), -a * (1 - lr * lam)], [1, 0]])
        for T, nesterov in ((T_hb, False), (T_ne, True)):
            expected = np.abs(np.linalg.eigvals(T)).max()
            got = mom.convergence_factor([lam], lr, a, nesterov=nesterov)
            assert got == pytest.approx(expected, rel=1e-6, abs=1e-7)


def test_convergence_factor_is_the_measured_decay():
    """Distinct real roots: the error ratio over the second half of a run equals ρ."""
    lam = np.array([0.02, 1.0])
    e0 = np.ones(2)
    for method, lr, a in [("gd", 1.0, 0.0), ("heavy_ball", 1.0, 0.3), ("nesterov", 0.8, 0.5)]:
        rho = mom.convergence_factor(lam, lr, a, nesterov=(method == "nesterov"))
        e = mom.error_norms(method, lam, e0, 600, lr=lr, momentum=a)
        assert (e[-1] / e[300]) ** (1 / 300) == pytest.approx(rho, rel=1e-3)


def test_convergence_factor_broadcasts_and_validates():
    rho = mom.convergence_factor([0.1, 1.0], np.linspace(0.1, 1, 5)[None, :],
                                 np.linspace(0, 0.9, 4)[:, None])
    assert rho.shape == (4, 5)
    assert isinstance(mom.convergence_factor([1.0], 0.5, 0.5), float)
    assert mom.convergence_factor([0.5, 2.0], 0.5, 0.0) == pytest.approx(0.75)  # max|1 − ελ|
    for kwargs, word in [(dict(eigenvalues=[-1.0], lr=0.1), "eigenvalues"),
                         (dict(eigenvalues=[1.0], lr=0.0), "lr"),
                         (dict(eigenvalues=[1.0], lr=0.1, momentum=1.0), "momentum")]:
        with pytest.raises(ValueError, match=f"Invalid {word}"):
            mom.convergence_factor(**kwargs)


@pytest.mark.parametrize("kappa", [4.0, 100.0, 1e4])
def test_tuned_rates_in_closed_form(kappa):
    lam = mom.spectrum(kappa, 50, "uniform") / kappa  # λ_max = 1
    q = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    cases = {"gd": ((kappa - 1) / (kappa + 1), 1e-12), "heavy_ball": (q, 1e-7),  # double root
             "nesterov": (1 - 1 / math.sqrt(kappa), 1e-7)}
    for m, (expected, rel) in cases.items():
        h = mom.tuned_hyperparameters(m, lam.min(), lam.max())
        assert mom.convergence_factor(lam, **h, nesterov=(m == "nesterov")) == pytest.approx(
            expected, rel=rel)
    hb = mom.tuned_hyperparameters("heavy_ball", 1 / kappa, 1.0)
    assert hb["momentum"] == pytest.approx(q * q)
    assert hb["lr"] == pytest.approx(4 / (1 + 1 / math.sqrt(kappa)) ** 2)
    assert mom.tuned_hyperparameters("cg", 1.0, kappa) == {}


def test_heavy_ball_is_stable_below_two_one_plus_alpha():
    lam = np.array([0.01, 1.0])
    for a in (0.0, 0.3, 0.6, 0.9):
        edge = 2 * (1 + a)
        assert mom.convergence_factor(lam, 0.99 * edge, a) < 1
        assert mom.convergence_factor(lam, 1.01 * edge, a) > 1


def test_spectrum():
    np.testing.assert_allclose(mom.spectrum(300.0, 17, "uniform"),
                               Quadratic(condition_number=300, dim=17).eigenvalues.numpy(),
                               rtol=1e-14)
    lam = mom.spectrum(1e4, 1000, "chebyshev")
    assert lam[0] == 1.0 and lam[-1] == 1e4 and np.all(np.diff(lam) > 0)
    # crowded at both ends: the first gap is tiny next to the middle ones
    assert lam[1] - lam[0] < 1e-2 * (lam[501] - lam[500])
    with pytest.raises(ValueError, match="Invalid kind"):
        mom.spectrum(10.0, 5, "log")


def test_conjugate_gradient_against_torch_and_scipy():
    Q = Quadratic(condition_number=1000, dim=60, seed=1)
    b = torch.linspace(-1, 2, 60, dtype=F64)
    res = mom.conjugate_gradient(Q.H, b, tol=1e-12)
    x_torch = torch.linalg.solve(Q.H, b).numpy()
    x_scipy, info = scipy.sparse.linalg.cg(Q.H.numpy(), b.numpy(), rtol=1e-12, atol=0.0,
                                           maxiter=1000)
    assert info == 0 and res.converged
    np.testing.assert_allclose(res.x, x_torch, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(res.x, x_scipy, rtol=1e-9, atol=1e-11)
    assert res.residual_norms[0] == pytest.approx(float(b.norm()))
    assert res.residual_norms[-1] <= 1e-12 * float(b.norm())
    assert len(res.residual_norms) == res.iterations + 1
    # a start x0 and a diagonal H given by its eigenvalues
    lam = np.array([1.0, 2.0, 5.0, 9.0])
    res = mom.conjugate_gradient(lam, [1.0, 1.0, 1.0, 1.0], x0=[3.0, 0.0, 0.0, -1.0])
    np.testing.assert_allclose(res.x, 1 / lam, rtol=1e-10)


def test_conjugate_gradient_steps_at_most_the_distinct_eigenvalues():
    lam = np.repeat([1.0, 4.0, 30.0], [5, 7, 3])
    R = Quadratic(condition_number=2.0, dim=15, seed=8).R.numpy()  # a random rotation
    res = mom.conjugate_gradient(R @ np.diag(lam) @ R.T, np.ones(15), tol=1e-10)
    assert res.converged and res.iterations == 3


def test_conjugate_gradient_validates():
    with pytest.raises(ValueError, match="positive definite"):
        mom.conjugate_gradient(np.diag([1.0, -1.0]), [1.0, 1.0])
    with pytest.raises(ValueError, match="Invalid b"):
        mom.conjugate_gradient(np.eye(3), [1.0, 2.0])
    with pytest.raises(ValueError, match="Invalid H"):
        mom.conjugate_gradient(np.ones((2, 3)), [1.0, 2.0])
    res = mom.conjugate_gradient(np.diag(np.arange(1.0, 11.0)), np.ones(10), max_iter=3)
    assert res.iterations == 3 and not res.converged


@pytest.mark.parametrize("method", mom.METHODS)
def test_steps_are_the_same_in_any_rotated_basis(method):
    J = Quadratic(condition_number=200, dim=40, seed=3)
    e0 = (J.start - J.center).numpy()
    rotated = mom.steps_to_accuracy(method, J.H, e0, tol=1e-6)
    eigenbasis = mom.steps_to_accuracy(method, J.eigenvalues, J.R.T.numpy() @ e0, tol=1e-6)
    assert rotated is not None and abs(rotated - eigenbasis) <= 1


def test_steps_to_accuracy_against_closed_form_and_chapter_3():
    # one eigenvalue: e_t = (1 − ελ)^t e₀, so t = ⌈ln tol / ln|1 − ελ|⌉
    t = mom.steps_to_accuracy("gd", [2.0], [1.0], tol=1e-4, lr=0.05)
    assert t == math.ceil(math.log(1e-4) / math.log(0.9))
    # gradient descent counted by chapter 3's function, on a rotated quadratic
    J = Quadratic(condition_number=50, dim=10, seed=0)
    mine = mom.steps_to_accuracy("gd", J.H, (J.start - J.center).numpy(), 1e-3, lr=1 / 50)
    assert mine == conditioning.iterations_to_tolerance(J, 1 / 50, 1e-3)
    # diverging or too slow: None
    assert mom.steps_to_accuracy("gd", [1.0], [1.0], lr=2.5) is None
    assert mom.steps_to_accuracy("heavy_ball", [1.0, 100.0], [1.0, 1.0], max_steps=3) is None
    assert mom.steps_to_accuracy("cg", [1.0, 100.0], [0.0, 0.0]) == 0


def test_error_norms():
    lam, e0 = np.array([0.5, 3.0]), np.array([1.0, -2.0])
    e = mom.error_norms("gd", lam, e0, 10, lr=0.2, momentum=0.0)
    expected = [np.linalg.norm((1 - 0.2 * lam) ** t * e0) for t in range(11)]
    np.testing.assert_allclose(e, expected, rtol=1e-13)
    cg = mom.error_norms("cg", lam, e0, 10)  # two eigenvalues: exact after two steps
    assert cg[1] > 0.1 and cg[2] < 1e-14 * cg[0]
    with pytest.raises(ValueError, match="Invalid method"):
        mom.error_norms("adam", lam, e0, 10)
    with pytest.raises(ValueError, match="gradient descent has none"):
        mom.error_norms("gd", lam, e0, 10, lr=0.1, momentum=0.5)


@pytest.mark.parametrize("call, word", [
    (lambda: mom.canyon(0.5), "condition_number"),
    (lambda: mom.velocity_form_path(lambda t: t, [1.0], -0.1, 0.5, 3), "lr"),
    (lambda: mom.velocity_form_path(lambda t: t, [1.0], 0.1, 1.0, 3), "momentum"),
    (lambda: mom.velocity_form_path(lambda t: t, [1.0], 0.1, 0.5, 0), "steps"),
    (lambda: mom.velocity_form_path("grad", [1.0], 0.1, 0.5, 3), "grad"),
    (lambda: mom.buffer_form_path(lambda t: t, [float("nan")], 0.1, 0.5, 3), "theta0"),
    (lambda: mom.compare_forms("J"), "landscape"),
    (lambda: mom.compare_forms(mom.canyon(), momentum=0.0, nesterov=True), "momentum"),
    (lambda: mom.terminal_velocity(-0.1), "momentum"),
    (lambda: mom.tuned_hyperparameters("gd", 0.0, 1.0), "lam_min"),
    (lambda: mom.tuned_hyperparameters("gd", 2.0, 1.0), "lam_max"),
    (lambda: mom.steps_to_accuracy("gd", [1.0], [1.0], tol=1.5), "tol"),
    (lambda: mom.steps_to_accuracy("gd", [1.0], [1.0, 2.0]), "e0"),
    (lambda: mom.rate_sweep(kappas=[10]), "kappas"),
    (lambda: mom.rate_sweep(kappas=[10, 100], methods=("newton",)), "method"),
    (lambda: mom.explorer_figure(lr=0.0), "lr"),
])
def test_invalid_arguments_are_named(call, word):
    with pytest.raises(ValueError, match=f"Invalid {word}"):
        call()


def test_explorer_figure_draws_and_reports_the_runs():
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    h = mom.tuned_hyperparameters("heavy_ball", 0.01, 1.0)
    runs = mom.explorer_figure(condition_number=100, steps=80, **h)
    new = [n for n in plt.get_fignums() if n not in before]
    assert len(new) == 1 and len(plt.figure(new[0]).axes) == 2
    title = plt.figure(new[0]).axes[1].get_title()
    assert "heavy ball 0.818" in title and "best possible 0.818" in title
    assert set(runs) == {"gradient descent", "heavy ball", "Nesterov"}
    assert runs["gradient descent"].diverged  # ε* ≈ 3.3 > 2: gradient descent blows up
    assert runs["heavy ball"].losses[-1] < 1e-6 * runs["heavy ball"].losses[0]
    plt.close(new[0])
    runs = mom.explorer_figure(momentum=0.0, steps=5)  # α = 0: Nesterov falls back to GD
    np.testing.assert_allclose(runs["Nesterov"].path, runs["gradient descent"].path)
    plt.close("all")


# ======================================================================================
# Every number of the chapter notebook (same functions, same arguments)
# ======================================================================================
def test_figure_8_5_numbers():
    f = mom.FIG85
    J = mom.canyon(f["condition_number"], f["angle"])
    gd = run_optimizer(J, SGD, steps=f["steps"], lr=f["lr"])
    hb = run_optimizer(J, SGD, steps=f["steps"], lr=f["lr"], momentum=f["momentum"])
    assert gd.losses[-1] == pytest.approx(0.00349, rel=2e-3)
    assert hb.losses[-1] == pytest.approx(0.000339, rel=2e-3)
    assert gd.losses[-1] / hb.losses[-1] == pytest.approx(10.3, abs=0.05)  # title: "10x"


def test_heatmap_numbers():
    lam = mom.canyon(mom.HEATMAP_KAPPA).eigenvalues.numpy()
    rho = mom.convergence_factor(lam, mom.HEATMAP_LRS[None, :], mom.HEATMAP_ALPHAS[:, None])
    i, j = np.unravel_index(np.argmin(rho), rho.shape)
    assert rho.min() == pytest.approx(0.8185, abs=5e-5)
    assert mom.HEATMAP_LRS[j] == pytest.approx(3.3, abs=0.005)
    assert mom.HEATMAP_ALPHAS[i] == pytest.approx(0.67, abs=0.005)
    tuned = {m: mom.tuned_hyperparameters(m, lam.min(), lam.max())
             for m in ("gd", "heavy_ball", "nesterov")}
    assert tuned["heavy_ball"]["lr"] == pytest.approx(3.306, abs=5e-4)  # "more than three times"
    assert tuned["heavy_ball"]["momentum"] == pytest.approx(0.6694, abs=5e-5)
    rates = {m: mom.convergence_factor(lam, **h, nesterov=(m == "nesterov"))
             for m, h in tuned.items()}
    assert rates["gd"] == pytest.approx(0.9802, abs=5e-5)
    assert rates["heavy_ball"] == pytest.approx(0.8182, abs=5e-5)
    assert rates["nesterov"] == pytest.approx(0.9000, abs=5e-5)
    efold = {m: -1 / math.log(r) for m, r in rates.items()}  # "about 50, 5 and 10 steps"
    assert efold["gd"] == pytest.approx(50, abs=0.5)
    assert efold["heavy_ball"] == pytest.approx(4.98, abs=0.005)
    assert efold["nesterov"] == pytest.approx(9.49, abs=0.005)
    assert np.all(rho >= rates["heavy_ball"] - 1e-7)  # nothing on the grid beats (ε*, α*)


def test_steep_direction_numbers():
    """Heavy ball against Nesterov along the steepest direction, ελ = 1, α = 0.7."""
    hb = mom.convergence_factor([1.0], 1.0, 0.7)
    ne = mom.convergence_factor([1.0], 1.0, 0.7, nesterov=True)
    assert hb == pytest.approx(math.sqrt(0.7), rel=1e-12) and f"{hb:.3g}" == "0.837"
    assert ne == 0.0
    # on the widget's start values (ε = 1/λ_max, α = 0.7) the heavy ball keeps zigzagging
    # across the canyon; Nesterov's iterates sit at the bottom of the steep direction from
    # step 2 on (step 1 still carries the look-ahead αv of torch's form)
    import matplotlib.pyplot as plt

    runs = mom.explorer_figure()
    plt.close("all")
    R = mom.canyon(mom.EXPLORER["condition_number"]).R.numpy()
    across = {k: np.abs(r.path @ R[:, 1]) for k, r in runs.items()}  # steep coordinate
    assert across["Nesterov"][2:].max() < 1e-12
    assert across["heavy ball"][2:12].min() < 0.05 < across["heavy ball"][8:12].max()


def test_cg_check_numbers():
    Q = Quadratic(condition_number=100, dim=50, seed=0)
    b = torch.ones(50, dtype=F64)
    cg = mom.conjugate_gradient(Q.H, b, tol=1e-12)
    x_ref = torch.linalg.solve(Q.H, b).numpy()
    assert cg.iterations == 46
    assert np.max(np.abs(cg.x - x_ref)) < 1e-10 * np.max(np.abs(x_ref))


def test_rate_sweep_numbers(sweep):
    expected = {"gd": [63, 184, 598, 1755, 5715, 16801, 54873],
                "heavy_ball": [24, 44, 82, 145, 270, 478, 894],
                "nesterov": [39, 71, 134, 232, 421, 723, 1305],
                "cg": [22, 39, 70, 119, 213, 362, 646]}
    for m, counts in expected.items():
        np.testing.assert_allclose(sweep.steps[m], counts, rtol=0.01, atol=1)
    slopes = sweep.slopes()
    # the printed slopes, and the theory's exponents 1 and 1/2 with tolerances
    for m, printed in dict(gd=0.98, heavy_ball=0.52, nesterov=0.51, cg=0.49).items():
        assert slopes[m] == pytest.approx(printed, abs=0.005)
    assert 0.93 <= slopes["gd"] <= 1.05
    for m in ("heavy_ball", "nesterov", "cg"):
        assert 0.44 <= slopes[m] <= 0.56
    # the prose on the predictions ln(1/tol)/(−ln ρ)
    assert np.all(sweep.steps["gd"] < sweep.predicted["gd"])
    assert np.all(sweep.steps["heavy_ball"] > sweep.predicted["heavy_ball"])
    assert np.all(sweep.steps["cg"] <= sweep.predicted["cg"])
    np.testing.assert_allclose(sweep.steps["nesterov"], sweep.predicted["nesterov"], rtol=0.1)
    # the asymptotic formulas of the docstring: (κ/2) ln(1/tol) and (√κ/2) ln(1/tol)
    k = sweep.kappas[-1]
    assert sweep.predicted["gd"][-1] == pytest.approx(k / 2 * math.log(1e6), rel=1e-3)
    assert sweep.predicted["heavy_ball"][-1] == pytest.approx(math.sqrt(k) / 2 * math.log(1e6),
                                                              rel=1e-3)


def test_cg_on_an_evenly_spaced_spectrum_beats_the_bound():
    uniform = mom.rate_sweep(kind="uniform", methods=("cg",))
    np.testing.assert_allclose(uniform.steps["cg"], [22, 37, 67, 106, 145, 165, 178], atol=1)
    assert uniform.slope("cg") == pytest.approx(0.31, abs=0.005)
    assert uniform.slope("cg") < 0.4


# ------------------------------------------------------------------------------------------
# Nesterov's tuning, the fair comparison, beyond quadratics, the network (sections 10.4, 10.6, 10.7)
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_nesterov_quadratic_optimal_tuning(kappa):
    """Closed form (Lessard et al., 2016) = the brute-force best ρ over (ε, α); the classical
    tuning puts λ_min exactly at the double root (ρ = 1 − 1/√κ)."""
    lam = np.array([1 / kappa, 1.0])
    h = mom.tuned_hyperparameters("nesterov_quadratic", 1 / kappa, 1.0)
    r = math.sqrt(3 * kappa + 1)
    assert h["lr"] == pytest.approx(4 / (3 + 1 / kappa))
    assert h["momentum"] == pytest.approx((r - 2) / (r + 2))
    rho = mom.convergence_factor(lam, **h, nesterov=True)
    assert rho == pytest.approx(1 - 2 / r, rel=1e-7)
    E, A = np.linspace(0.5, 2.0, 601), np.linspace(0.0, 0.99, 397)
    grid = mom.convergence_factor(lam, E[None, :], A[:, None], nesterov=True)
    assert grid.min() >= rho - 1e-7  # nothing on a grid beats it
    assert grid.min() == pytest.approx(rho, abs=2e-3)
    c = mom.tuned_hyperparameters("nesterov", 1 / kappa, 1.0)
    u = 1 - c["lr"] / kappa  # 1 − ελ_min
    assert (1 + c["momentum"]) ** 2 * u == pytest.approx(4 * c["momentum"])  # double root
    # and the quadratic-optimal Nesterov runs through the same machinery as the others
    e0 = np.ones(20)
    lam20 = mom.spectrum(kappa, 20) / kappa
    assert mom.steps_to_accuracy("nesterov_quadratic", lam20, e0, 1e-6) < \
        mom.steps_to_accuracy("nesterov", lam20, e0, 1e-6)


def test_nesterov_tuning_numbers():
    """Section 10.4's printed lines for Nesterov (κ = 100); pure closed forms and a fixed grid
    in float64 NumPy: identical under every kernel set."""
    lam = mom.canyon(mom.HEATMAP_KAPPA).eigenvalues.numpy()
    nq = mom.tuned_hyperparameters("nesterov_quadratic", lam.min(), lam.max())
    assert nq["lr"] == pytest.approx(1.329, abs=5e-4)
    assert nq["momentum"] == pytest.approx(0.7933, abs=5e-5)
    rho = mom.convergence_factor(lam, **nq, nesterov=True)
    assert rho == pytest.approx(0.8847, abs=5e-5)
    assert -1 / math.log(rho) == pytest.approx(8.16, abs=0.005)
    fine = mom.convergence_factor(lam, mom.FINE_LRS[None, :], mom.FINE_ALPHAS[:, None], nesterov=True)
    i, j = np.unravel_index(np.argmin(fine), fine.shape)
    assert fine.min() == pytest.approx(0.8849, abs=5e-5)
    assert mom.FINE_LRS[j] == pytest.approx(1.328, abs=5e-4)
    assert mom.FINE_ALPHAS[i] == pytest.approx(0.793, abs=5e-4)


def test_tuning_grid_numbers():
    """Measured steps over (ε, α): both bests inside the grid, next to the closed forms, and
    the fair ratio 1.44 (integers from float64 NumPy: the same under every kernel set)."""
    grid = mom.tuning_grid()
    assert grid.best("heavy_ball") == (3.2, 0.675, 75)
    assert grid.best("nesterov") == (1.3, 0.8, 108)
    assert grid.best_is_interior("heavy_ball") and grid.best_is_interior("nesterov")
    assert grid.best("nesterov")[2] / grid.best("heavy_ball")[2] == pytest.approx(1.44, abs=0.005)
    # a near-tie would make the best fragile: the runner-up values are distinct enough to matter
    # less than the grid spacing (the best is unique up to neighbours of the same count)
    for m in grid.steps:
        s = grid.steps[m]
        eps_b, alpha_b, n_b = grid.best(m)
        ties = np.argwhere(s == n_b)
        assert np.all(np.abs(grid.lrs[ties[:, 1]] - eps_b) <= 0.2)
        assert np.all(np.abs(grid.alphas[ties[:, 0]] - alpha_b) <= 0.05)
    # the vectorised grid agrees with steps_to_accuracy on single points
    lam = mom.spectrum(100.0, mom.GRID["dim"]) / 100.0
    e0 = np.ones(mom.GRID["dim"])
    for m, (e, a) in {"heavy_ball": (3.2, 0.675), "nesterov": (1.3, 0.8)}.items():
        i, j = np.argmin(np.abs(grid.alphas - a)), np.argmin(np.abs(grid.lrs - e))
        assert grid.steps[m][i, j] == mom.steps_to_accuracy(m, lam, e0, 1e-6, lr=e, momentum=a)


def test_lessard_function_is_smooth_and_strongly_convex():
    x = np.linspace(-3, 5, 80001)
    v, g = mom.lessard_value(x), mom.lessard_grad(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.gradient(v, x)[1:-1], g[1:-1], atol=1e-3)  # J' is J's slope
    slopes = np.diff(g) / np.diff(x)
    assert slopes.min() >= 1 - 1e-9 and slopes.max() <= 25 + 1e-9  # μ = 1, L = 25
    assert mom.lessard_value(0.0) == 0 and v.min() >= 0


def test_beyond_quadratics_numbers():
    """Section 10.6: the heavy ball cycles from 21 of 201 starts, Nesterov converges from all,
    within its bound (exact float64 arithmetic on scalars: no kernel dependence)."""
    bq = mom.beyond_quadratics()
    assert bq.converged("heavy_ball").sum() == 180
    assert bq.converged("nesterov").sum() == 201
    np.testing.assert_allclose(bq.cycle(), [-1.802, 0.647, 2.116], atol=5e-4)
    assert bq.bound_ratio("nesterov") == pytest.approx(0.36, abs=0.005)
    # prose: on this J, ε = 1/L is a Newton step on the steep piece: θ* exactly from step 7 on
    p = bq.paths["nesterov"]
    assert np.all(p[7:] == 0) and not np.all(p[6] == 0)
    assert bq.bound_ratio("nesterov") <= 1
    assert bq.bound_ratio("heavy_ball") > 1e10  # the cycle never shrinks
    # the cycle is a real 3-cycle of the heavy ball map: one more period returns to it
    k = np.flatnonzero(~bq.converged("heavy_ball"))[0]
    p = bq.paths["heavy_ball"][:, k]
    np.testing.assert_allclose(p[-3:], p[-6:-3], atol=1e-9)
    assert mom.tuned_hyperparameters("heavy_ball", 1.0, 25.0) == pytest.approx(
        dict(lr=1 / 9, momentum=4 / 9))


@pytest.fixture(scope="module")
def effective_runs():
    return mom.effective_step_experiment()


def test_effective_step_numbers(effective_runs):
    """Section 10.7's table: medians over 3 seeds at 2 decimals for ε_eff ≤ 1.  Spread across
    kernel sets (native, default, avx2): below 1e-6 on those medians; at ε_eff = 3 the momentum
    runs are chaotic (median 2.08 native and avx2, 2.16 with default kernels), printed to one digit.
    Across seeds the costs spread by up to 0.09, which is why the prose says "nearly the same"."""
    med = effective_runs.median_loss()
    expected = np.array([[1.77, 1.78], [1.23, 1.24], [1.17, 1.19]])
    np.testing.assert_allclose(med[:3], expected, atol=0.006)
    assert 1.5 <= med[3, 1] < 2.5  # printed as "2"
    assert 0.25 <= np.median(effective_runs.test_accuracy[3, 1]) < 0.35  # printed as "0.3"
    assert np.all(np.isinf(effective_runs.train_loss[-1, 0]))  # SGD diverged at ε_eff = 3
    assert effective_runs.best_effective_lr() == {0.0: 1.0, 0.9: 1.0}  # same best, inside the grid
    # "nearly the same cost": the two α differ by less than the seeds' spread, for ε_eff ≤ 1
    spread = np.ptp(effective_runs.train_loss[:3], axis=-1).max()
    assert np.max(np.abs(med[:3, 0] - med[:3, 1])) < spread
    # at the same ε (0.03), α = 0.9 (ε_eff = 0.3) is far better than SGD (ε_eff = 0.03)
    assert med[1, 1] < med[0, 0] - 0.4


@pytest.mark.parametrize("method", ["heavy_ball", "nesterov"])
def test_vectorised_grid_counts_the_same_steps_as_steps_to_accuracy(method):
    """tuning_grid's vectorised loop (one array for the whole (ε, α) grid) against the
    one-run reference steps_to_accuracy, at grid points that converge and one that does not."""
    lam = mom.spectrum(100.0, 20) / 100.0
    lrs, alphas = np.array([0.5, 1.0, 1.3, 3.0, 4.5]), np.array([0.3, 0.8, 0.79, 0.5, 0.95])
    grid = mom._grid_first_below(lam, lrs, alphas, method == "nesterov", 1e-6, 2000)
    for k, (lr, a) in enumerate(zip(lrs, alphas)):
        ref = mom.steps_to_accuracy(method, lam, np.ones(lam.size), tol=1e-6, max_steps=2000,
                                    lr=float(lr), momentum=float(a))
        assert (np.isnan(grid[k]) and ref is None) or grid[k] == ref, (lr, a, grid[k], ref)


# ======================================================================================
# The eigen-mode view (section 10.4's second widget, after Goh, 2017)
# ======================================================================================
def test_mode_factors_are_the_spectral_radii_of_the_iteration_matrices():
    rng = np.random.default_rng(1)
    for _ in range(40):
        lam, lr, a = rng.uniform(0.01, 1), rng.uniform(0.05, 5), rng.uniform(0, 0.99)
        for nesterov in (False, True):
            M = mom.iteration_matrix(lam, lr, a, nesterov)
            z = np.linalg.eigvals(M)
            assert mom.mode_factors([lam], lr, a, nesterov)[0] == pytest.approx(
                np.abs(z).max(), rel=1e-6, abs=1e-7)
            # regime: complex roots ⇔ oscillating; else the sign of the dominant root
            regime = mom.mode_regimes([lam], lr, a, nesterov)[0]
            dominant = z[np.argmax(np.abs(z))]
            if abs(z[0].imag) > 1e-9:
                assert mom.REGIMES[regime] == "oscillating"
            elif abs(z[0] - z[1]) > 1e-6:  # away from a double root
                assert mom.REGIMES[regime] == ("sign-flipping" if dominant.real < 0 else "monotone")
    lam = np.geomspace(0.01, 1, 50)
    assert mom.convergence_factor(lam, 1.3, 0.6) == mom.mode_factors(lam, 1.3, 0.6).max()
    assert mom.mode_factors(lam, np.array([1.0, 2.0]), 0.5).shape == (2, 50)


@pytest.mark.parametrize("kappa", [4.0, 100.0, 1e3])
def test_at_polyaks_tuning_every_mode_has_the_same_factor(kappa):
    """The widget's claim: at (ε*, α*) the curve r(M_λ) is flat at (√κ − 1)/(√κ + 1) on all of
    [1/κ, 1] (complex roots inside, double roots at both ends); the spread is rounding (~1e-16,
    the double roots' square root of a ~1e-16 discriminant gives up to ~1e-8 at the ends)."""
    h = mom.tuned_hyperparameters("heavy_ball", 1 / kappa, 1.0)
    r = mom.mode_factors(np.geomspace(1 / kappa, 1, mom.MODES["points"]), **h)
    q = (math.sqrt(kappa) - 1) / (math.sqrt(kappa) + 1)
    np.testing.assert_allclose(r, q, rtol=1e-7)
    regimes = mom.mode_regimes(np.geomspace(1 / kappa, 1, mom.MODES["points"])[1:-1], **h)
    assert np.all(regimes == mom.REGIMES.index("oscillating"))
    # away from the optimum some mode is slower than the flat level
    for lr, a in ((0.9 * h["lr"], h["momentum"]), (h["lr"], 0.9 * h["momentum"]),
                  (h["lr"], min(0.99, 1.1 * h["momentum"]))):
        assert mom.mode_factors([1 / kappa, 1.0], lr, a).max() > q + 1e-4


def test_measured_mode_decay_matches_the_factor():
    """Each mode's |e_t| (lecture form of the method, run per mode) decays at r(M_λ): distinct
    roots, 600 steps; the windowed ratio is within 0.5 % (measured spread up to 0.2 %, from the
    oscillation's phase inside the 20-step windows)."""
    lam = mom.canyon(100, dim=5).eigenvalues.numpy()
    for lr, a in ((1.0, 0.7), (0.5, 0.3), (1.5, 0.8)):
        for nesterov in (False, True):
            an = mom.mode_analysis(lam, lr, a, steps=600, nesterov=nesterov)
            z = np.linalg.eigvals(np.stack([mom.iteration_matrix(l, lr, a, nesterov) for l in lam]))
            distinct = np.abs(z[:, 0] - z[:, 1]) > 1e-3
            keep = distinct & (an.factors > 0.3)  # faster modes underflow toward 1e-300
            np.testing.assert_allclose(an.measured_factors()[keep], an.factors[keep], rtol=5e-3)
    # the errors are those of the lecture form on H = diag(λ)
    e = mom.mode_errors(lam, 1.0, 0.7, 30, nesterov=True)
    ref = np.abs(mom.velocity_form_path(lambda t: torch.as_tensor(lam) * t, np.ones(5), 1.0, 0.7,
                                        30, nesterov=True).theta)
    np.testing.assert_array_equal(e, ref)


def test_modes_figure_draws_and_returns_both_methods():
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    res = mom.modes_figure()
    new = [n for n in plt.get_fignums() if n not in before]
    assert len(new) == 1 and len(plt.figure(new[0]).axes) == 4
    titles = [ax.get_title() for ax in plt.figure(new[0]).axes]
    assert set(res) == {"heavy ball", "Nesterov"}
    for ax_title, (name, a) in zip(titles[:2], res.items()):  # top row: the factors
        assert f"r = {a.convergence_factor:.3g}" in ax_title and a.errors.shape == (
            mom.MODES["steps"] + 1, mom.MODES["dim"])
    plt.close("all")
    import warnings
    with warnings.catch_warnings():  # the κ slider's low end, κ = 1: one λ, no singular axis
        warnings.simplefilter("error")
        res = mom.modes_figure(condition_number=1.0)
    assert res["heavy ball"].factors.max() == pytest.approx(math.sqrt(0.7))
    plt.close("all")
    with pytest.raises(ValueError, match="Invalid lr"):
        mom.modes_figure(lr=0.0)


def test_modes_prose_and_printed_numbers():
    """Section 10.4's widget text and the cell after it (cheap: computed here again)."""
    m = mom.MODES
    lam3 = mom.canyon(m["condition_number"], dim=m["dim"]).eigenvalues.numpy()
    hb = mom.mode_analysis(lam3, m["lr"], m["momentum"], steps=400)
    ne = mom.mode_analysis(lam3, m["lr"], m["momentum"], steps=400, nesterov=True)
    # "every heavy-ball mode above λ ≈ 0.03 oscillates at √α ≈ 0.84": the edge (1 − √α)²/ε
    edge = (1 - math.sqrt(m["momentum"])) ** 2 / m["lr"]
    assert f"{edge:.1g}" == "0.03"
    grid = np.geomspace(1 / m["condition_number"], 1, m["points"])
    reg = mom.mode_regimes(grid, m["lr"], m["momentum"])
    assert np.all(reg[grid > edge * 1.01] == 1) and np.all(reg[grid < edge * 0.99] == 0)
    np.testing.assert_allclose(mom.mode_factors(grid[grid > edge * 1.01], m["lr"], m["momentum"]),
                               math.sqrt(m["momentum"]), rtol=1e-12)
    # "Nesterov's factor falls to 0 at λ = 1"; the slowest mode λ = 1/κ is monotone for both
    assert ne.factors[-1] == 0.0
    assert hb.worst == ne.worst == 0 and hb.regimes[0] == ne.regimes[0] == 0
    # the printed table; measured/predicted − 1 is at most 0.32 % over settings we tried
    # (windows of 20–60 steps, runs of 300–600 steps): the printed claim is "within 0.5 %"
    assert [f"{f:.3f}" for f in hb.factors] == ["0.963", "0.837", "0.837"]
    assert [f"{f:.3f}" for f in ne.factors] == ["0.964", "0.589", "0.000"]
    for a in (hb, ne):
        ok = a.factors > 0
        assert np.max(np.abs(a.measured_factors()[ok] / a.factors[ok] - 1)) < 0.005
    assert ne.errors[1:, -1].max() == 0.0  # the mode with r = 0 is solved in one step
    # "raise α and the oscillating region spreads over the whole spectrum at the level √α"
    reg = mom.mode_regimes(grid, m["lr"], 0.9)
    assert np.all(reg == 1)
    np.testing.assert_allclose(mom.mode_factors(grid, m["lr"], 0.9), math.sqrt(0.9), rtol=1e-12)
    # "… once (1 − √α)² < 1/κ, i.e. α > 0.81" (at ε = 1)
    edge_alpha = (1 - math.sqrt(1 / m["condition_number"] * m["lr"])) ** 2
    assert f"{edge_alpha:.2g}" == "0.81"
    assert np.any(mom.mode_regimes(grid, m["lr"], 0.8) == 0)
    assert np.all(mom.mode_regimes(grid, m["lr"], 0.82) == 1)
    # "Nesterov's spreads too, but its level √(α(1 − ελ)) falls with λ, to 0 at λ = 1/ε"
    inner = grid[grid < 1 / m["lr"] * (1 - 1e-9)]
    assert np.all(mom.mode_regimes(inner, m["lr"], 0.9, nesterov=True) == 1)
    np.testing.assert_allclose(mom.mode_factors(inner, m["lr"], 0.9, nesterov=True),
                               np.sqrt(0.9 * (1 - m["lr"] * inner)), rtol=1e-9)
    assert mom.mode_factors([1 / m["lr"]], m["lr"], 0.9, nesterov=True)[0] == 0.0
    # "Nesterov with the same ε diverges" at Polyak's tuning
    opt = mom.tuned_hyperparameters("heavy_ball", 1 / m["condition_number"], 1.0)
    assert mom.convergence_factor(lam3, **opt, nesterov=True) > 1


def test_moved_figures_draw_what_they_are_given():
    import matplotlib.pyplot as plt

    terminal = {a: mom.terminal_velocity(a, steps=20) for a in (0.0, 0.9)}
    ax = mom.plot_terminal_velocity(terminal)
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), terminal[0.0].step_lengths)
    lam = np.array([0.01, 1.0])
    lrs, alphas = np.linspace(0.1, 4, 9), np.linspace(0, 0.9, 7)
    r = mom.convergence_factor(lam, lrs[None, :], alphas[:, None])
    tuned = {m: {**mom.tuned_hyperparameters(m, 0.01, 1.0)} for m in ("heavy_ball", "gd")}
    for m in tuned:
        tuned[m]["r"] = mom.convergence_factor(lam, tuned[m]["lr"], tuned[m]["momentum"])
    ax = mom.plot_factor_map(lrs, alphas, r, tuned)
    assert "r$ = 0.818" in ax.get_legend().get_texts()[0].get_text()
    sweep = mom.rate_sweep(kappas=(10, 30), dim=20)
    ax = mom.plot_rate_sweep(sweep)
    assert ax.get_ylabel() == "steps to shrink the error by $10^{-6}$" and len(ax.lines) == 9
    plt.close("all")
