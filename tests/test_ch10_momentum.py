"""Chapter 10 (momentum and Nesterov): course_lib.momentum against torch.optim.SGD, closed
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
