"""Chapter 15 (second-order methods): course_lib.optim.lbfgs against torch.optim.LBFGS and the
dense BFGS update, and every number and claim of chapters/15_second_order_methods.ipynb, measured
by the same calls with the same (default) arguments (the expensive ones are shared_result: the
notebook's run under nbval computes them once)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.experiments import saddles
from course_lib.experiments import second_order as so
from course_lib.experiments.momentum import conjugate_gradient
from course_lib.models import mlp
from course_lib.landscapes import Quadratic, Rosenbrock
from course_lib.optim.lbfgs import LBFGS, bfgs_inverse_update, lbfgs_direction
from course_lib.optim.ncg import NonlinearCG


# ---------------------------------------------------------------------------------------------
# our L-BFGS against torch's

@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_same_iterates_as_torch_on_rosenbrock(line_search):
    # the chapter's check: bit-for-bit equal iterates (measured difference 0 with both)
    assert so.torch_agreement()[str(line_search)] == 0.0


@pytest.mark.parametrize("line_search", [None, "strong_wolfe"])
def test_lbfgs_same_iterates_as_torch_on_a_network(line_search):
    """Several parameter tensors, several iterations per step(), memory smaller than the run."""
    torch.manual_seed(0)
    X, y = torch.randn(64, 5, dtype=torch.float64), torch.randint(0, 3, (64,))
    thetas = []
    for cls in (LBFGS, torch.optim.LBFGS):
        model = mlp(5, (7,), 3, activation="tanh", generator=torch.Generator().manual_seed(1)).double()
        opt = cls(model.parameters(), lr=0.5 if line_search is None else 1.0, max_iter=6,
                  history_size=3, line_search_fn=line_search)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(X), y)
            loss.backward()
            return loss
        path = []
        for _ in range(4):
            opt.step(closure)
            path.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())
        thetas.append(torch.stack(path))
        evals = opt.state[next(iter(model.parameters()))]["func_evals"]
        thetas.append(torch.tensor(float(evals)))
    torch.testing.assert_close(thetas[0], thetas[2], rtol=1e-13, atol=1e-15)  # measured: equal
    assert thetas[1] == thetas[3]


def test_lbfgs_argument_checks():
    p = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(ValueError, match="line_search_fn"):
        LBFGS(p, line_search_fn="armijo")
    with pytest.raises(ValueError, match="history_size"):
        LBFGS(p, history_size=0)
    with pytest.raises(ValueError, match="learning rate"):
        LBFGS(p, lr=-1.0)


def test_two_loop_equals_dense_bfgs():
    assert so.two_loop_check() < 1e-12  # measured 6e-16 (printed as 6e-16 … 1e-15 is fine)


def test_bfgs_update_satisfies_the_secant_equation_and_stays_spd():
    gen = torch.Generator().manual_seed(3)
    A = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    H = A @ A.T + torch.eye(6, dtype=torch.float64)
    B = torch.eye(6, dtype=torch.float64)
    for _ in range(4):
        s = torch.randn(6, generator=gen, dtype=torch.float64)
        y = H @ s
        B = bfgs_inverse_update(B, s, y)
        torch.testing.assert_close(B @ y, s, rtol=1e-10, atol=1e-12)
        assert torch.linalg.eigvalsh(B).min() > 0
    with pytest.raises(ValueError, match="positive curvature"):
        bfgs_inverse_update(B, s, -y)


def test_lbfgs_direction_without_pairs_is_scaled_steepest_descent():
    g = torch.tensor([1.0, -2.0], dtype=torch.float64)
    torch.testing.assert_close(lbfgs_direction(g, [], [], 0.5), -0.5 * g)


def test_conjugate_gradient_accepts_a_matvec():
    H = np.diag(np.arange(1.0, 11.0))
    b = np.ones(10)
    a = conjugate_gradient(H, b)
    m = conjugate_gradient(lambda v: H @ v, b)
    np.testing.assert_array_equal(a.x, m.x)
    assert a.iterations == m.iterations == 10


# ---------------------------------------------------------------------------------------------
# 15.1 Newton

def test_newton_costs():
    c = so.newton_costs()
    assert [x.memory_bytes for x in c] == [4 * 10**8, 4 * 10**12, 4 * 10**16]
    assert c[-1].flops == pytest.approx(2 / 3 * 1e24)


def test_softmax_hessian_closed_form_matches_autograd():
    p = so.softmax_problem()
    p = so.SoftmaxProblem(p.X[:50], p.y[:50], p.weight_decay)
    theta = 0.1 * torch.randn(p.n_params, generator=torch.Generator().manual_seed(0),
                              dtype=torch.float64)
    torch.testing.assert_close(p.hessian(theta), torch.func.hessian(p.loss)(theta),
                               rtol=1e-10, atol=1e-13)  # measured 1e-16


def test_newton_converges_quadratically():
    norms = so.softmax_newton()
    orders = so.convergence_orders(norms)
    # printed: 0.7 1.3 1.3 1.7 2.0 2.0; the last two are 1.98 and 2.03 (spread across kernels < 1e-3)
    assert len(orders) == 6
    assert orders[0] < 1.5 and np.all(orders[-2:] > 1.9) and np.all(orders[-2:] < 2.1)
    assert norms[-2] < 1e-15 and 1e-3 < norms[4] < 1e-2  # prose: from 5e-3 … to rounding
    ratios = norms[1:4] / norms[:3]
    assert np.all((ratios > 0.2) & (ratios < 0.5))  # "shrinks by a factor 2–4 per step"


def test_newton_sits_on_the_saddle_saddle_free_escapes_faster():
    runs = saddles.saddle_methods()
    assert np.linalg.norm(runs["Newton"].final) == 0.0
    near = {k: saddles.steps_within(r, (0.0, 0.0), 0.5) for k, r in runs.items()}
    assert near["saddle-free Newton"] < near["gradient descent"] < near["Newton"]
    assert np.linalg.norm(runs["gradient descent"].final) > 1
    assert np.linalg.norm(runs["saddle-free Newton"].final) > 1


def test_damping_comparison():
    runs = so.damping_comparison()
    got = {k: (r.steps, r.increases) for k, r in runs.items()}
    assert got["Newton (α = 0)"] == (5, 2)
    assert got["damped, α = 0.01"][1] > 0
    assert got["damped, α = 100"][0] > 1000 and got["damped, α = 100"][1] == 0
    lm = got["Levenberg–Marquardt (adaptive α)"]
    assert lm[1] == 0 and 10 < lm[0] < 100  # "tens of steps"


# ---------------------------------------------------------------------------------------------
# 15.2 Hessian-free

def test_hessian_free_check():
    c = so.hessian_free_check()
    assert c["n_params"] == 410
    assert c["rel_difference"] < 1e-8   # printed 3e-10
    assert c["cg_hvps"] == 61           # printed; CG on a κ ≈ 983 system
    assert round(c["condition_number"]) == 983
    assert c["cg_bound"] == 372 and c["cg_hvps"] < c["cg_bound"] / 5   # "six times better"
    assert c["n_at_weight_decay"] == 41 == c["n_params"] - 41 * 9      # the data span 369 dims


def test_hessian_free_run():
    hf = so.hessian_free_run()
    assert hf.grad_norms[-1] < 1e-10
    assert hf.cg_steps[0] == 1 and hf.cg_steps[-1] > 100
    assert np.all(np.diff(hf.cg_steps) > 0)  # the inner work grows as the tolerance tightens
    assert hf.hvps == hf.cg_steps.sum()


# ---------------------------------------------------------------------------------------------
# 15.4 races

def test_quadratic_race():
    q = so.quadratic_race()
    for name in ("GD", "Adam"):
        keys = sorted(q[name]["grid"])
        assert keys[0] < q[name]["best"] < keys[-1], name  # best inside the grid
    steps = {k: v["steps"] for k, v in q.items()}
    assert steps["GD"] > 2000
    assert 6 < steps["GD"] / steps["Adam"] < 10           # "about eight times fewer"
    assert steps["CG (Hessian-free)"] < steps["L-BFGS"] < steps["Barzilai–Borwein"] < steps["Adam"]
    assert steps["CG (Hessian-free)"] == 47 and steps["L-BFGS"] == 60
    assert q["L-BFGS"]["evals"] == 63
    # BB: the median over five rotation seeds (per seed 157 147 120 99 128, exact arithmetic in
    # the eigenbasis: the same on every kernel set)
    assert q["Barzilai–Borwein"]["per_seed"] == [157, 147, 120, 99, 128]
    assert steps["Barzilai–Borwein"] == 128


def test_mlp_race():
    race = so.mlp_race()
    gd, adam = so.best_of_grid(race["GD"]), so.best_of_grid(race["Adam"])
    assert gd[2] and adam[2]  # each best inside its grid
    # "ε = 30 fails on some seeds": GD's best is just below the edge of stability (reviewer's
    # check, six seeds: medians 190–270 steps for every ε in 3, 5, 10, 15, 20; ε = 30 fails on
    # 3 of 6, ε = 50 on all; targets 0.03 / 0.003 keep the order L-BFGS < Adam < GD)
    # at ε = 30 seeds 0–2 give [None, 248, 432] natively and with avx2, [634, 373, 205] with
    # ATEN_CPU_CAPABILITY=default: chaotic; only "slower than at ε = 10" holds everywhere
    assert so.median_steps(race["GD"][30.0]) > 300 and gd[0] == 10.0
    lb = race["L-BFGS"]
    assert all(s is not None for s in lb["steps"])
    med = so.median_steps(lb["steps"])
    assert adam[1] < gd[1]
    assert med < 0.6 * adam[1]                            # "about half Adam's iterations"
    assert so.median_steps(lb["evals"]) <= 1.2 * med      # about one gradient per iteration
    for losses, norms in zip(lb["losses"], lb["theta_norms"]):
        # per-iteration factor in windows 0–10 … 30–40: measured 0.88–0.89, 0.57–0.66,
        # 0.52–0.55, 0.50–0.54: improves once, then stays (linear, not superlinear)
        f = (losses[10:41:10] / losses[0:31:10]) ** 0.1
        assert 0.8 < f[0] < 0.95 and 0.5 < f[1] < 0.75
        assert np.all((f[2:] > 0.45) & (f[2:] < 0.6)) and abs(f[3] - f[2]) < 0.1  # printed
        assert 3 < norms[0] < 5 and 50 < norms[20] < 90 and norms[40] > 200  # ‖θ‖ grows
        # (‖θ_40‖ measured 205.5–235.2 across kernel sets)

    # nonlinear CG (ours, PR+, c₂ = 0.1): "22 iterations, two gradients each", per seed
    # [23, 22, 22] and [43, 44, 42]; SciPy's CG on the same problems [33, 30, 27]: "27 to 33"
    ncg = race["nonlinear CG"]
    assert ncg["steps"] == [23, 22, 22] and so.median_steps(ncg["steps"]) == 22
    assert so.median_steps(ncg["evals"]) == 43
    assert all(1.7 < e / s < 2.1 for e, s in zip(ncg["evals"], ncg["steps"]))  # two gradients
    assert med <= so.median_steps(ncg["steps"]) <= 1.3 * med  # close to L-BFGS in iterations
    # c₂ = 0.9: "about three times the iterations and twice the gradients" (medians 67 / 86
    # natively, 64 / 89 with ATEN_CPU_CAPABILITY=default, vs 22 / 43; printed as 3× and 2×)
    loose = race["nonlinear CG, c2 = 0.9"]
    assert 2.5 <= so.median_steps(loose["steps"]) / so.median_steps(ncg["steps"]) < 3.5
    assert 1.5 <= so.median_steps(loose["evals"]) / so.median_steps(ncg["evals"]) < 2.5
    assert all(e / s < 1.5 for e, s in zip(loose["evals"], loose["steps"]))  # fewer per iteration
    sp = so.scipy_cg_mlp()
    assert (min(sp["steps"]), max(sp["steps"])) == (27, 33)       # "27 to 33 iterations"
    assert (min(sp["evals"]), max(sp["evals"])) == (65, 79)       # "65 to 79 gradients"
    # the trusted implementation of the same method needs a similar number of iterations
    assert all(ours <= theirs <= 2 * ours for ours, theirs in zip(ncg["steps"], sp["steps"]))


# ---------------------------------------------------------------------------------------------
# nonlinear CG (ours) and coordinate descent

def test_ncg_is_linear_cg_on_a_quadratic_with_exact_line_search():
    check = so.ncg_matches_linear_cg()
    assert check["CG"]["steps"] == 47
    for beta in ("PR+", "FR"):
        assert check[beta]["max_difference"] < 1e-10, beta  # iterates; measured 9e-14
        assert check[beta]["steps"] == 47
        assert 1.8 * 47 <= check[beta]["evals"] <= 2.2 * 47  # "about two gradients per iteration"


@pytest.mark.parametrize("beta", ["PR+", "FR"])
def test_ncg_finite_termination_on_a_small_quadratic(beta):
    """Exact arithmetic would end in n steps; in float64 the error after n = 8 is at rounding
    level, and the directions are H-conjugate (a wrong β or sign breaks both)."""
    J = Quadratic(50.0, dim=8, seed=3)
    theta = torch.nn.Parameter(J.start.clone())
    opt = NonlinearCG([theta], beta=beta, c2=1e-10)

    def closure():
        opt.zero_grad()
        value = J(theta)
        value.backward()
        return value

    directions = []
    for _ in range(8):
        opt.step(closure)
        directions.append(opt.state[theta]["d"].clone())
    err = float((theta.detach() - J.minimizers[0]).norm() / (J.start - J.minimizers[0]).norm())
    assert err < 1e-9
    D = torch.stack(directions[:6])
    conj = D @ J.H @ D.T
    off = conj - torch.diag(torch.diagonal(conj))
    assert float(off.abs().max() / torch.diagonal(conj).abs().min()) < 1e-6


def test_ncg_restart_every_step_steps_along_minus_the_gradient():
    J = Rosenbrock()
    theta = torch.nn.Parameter(J.start.clone().double())
    opt = NonlinearCG([theta], restart=1, c2=1e-8)

    def closure():
        opt.zero_grad()
        value = J(theta)
        value.backward()
        return value

    for _ in range(5):
        closure()
        g = theta.grad.clone()
        opt.step(closure)
        assert torch.allclose(opt.state[theta]["d"], -g)


def test_ncg_reaches_rosenbrocks_minimum():
    run = so.ncg_run(Rosenbrock(), Rosenbrock().start, 300, grad_tol=1e-8)
    assert run.grad_norms[-1] <= 1e-8 and np.allclose(run.path[-1], [1.0, 1.0], atol=1e-6)
    assert len(run.losses) < 100


@pytest.mark.parametrize("kwargs, message", [
    (dict(beta="HS"), "Invalid beta"), (dict(c2=1.0), "Invalid c2"), (dict(c2=0.0), "Invalid c2"),
    (dict(max_ls=0), "Invalid max_ls"), (dict(restart=0), "Invalid restart"),
    (dict(lr=-1.0), "Invalid learning rate")])
def test_ncg_argument_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NonlinearCG([torch.nn.Parameter(torch.zeros(2))], **kwargs)


def test_coordinate_step_zeroes_its_partial_derivative():
    J = Quadratic(30.0, dim=5, seed=1)
    H, e0 = J.H.numpy(), (J.start - J.minimizers[0]).numpy()
    # one cyclic epoch = 5 exact coordinate steps; after it, coordinate n's partial is 0
    e = e0.copy()
    for i in range(5):
        e[i] -= (H @ e)[i] / H[i, i]
        assert abs((H @ e)[i]) < 1e-12
    assert np.isclose(so.coordinate_descent(H, e0, 1)[-1], np.linalg.norm(e))
    with pytest.raises(ValueError, match="Invalid order"):
        so.coordinate_descent(H, e0, 1, order="greedy")
    with pytest.raises(ValueError, match="positive diagonal"):
        so.coordinate_descent(-H, e0, 1)


def test_coordinate_descent_race():
    cd = so.coordinate_descent_race()
    rot, axis = cd["rotated"], cd["axis-aligned"]
    assert rot["cyclic"] == [1531]                                 # "about 1500 epochs"
    assert np.median(rot["shuffled"]) == 1741 and (min(rot["shuffled"]), max(rot["shuffled"])) == (1540, 1884)
    assert np.median(rot["random"]) == 3107 and (min(rot["random"]), max(rot["random"])) == (1653, 3693)
    # "the random order is slower than tuned GD (median 3107 epochs) and the most variable"
    assert np.median(rot["random"]) > so.quadratic_race()["GD"]["steps"] == 2698
    assert np.ptp(rot["random"]) > np.ptp(rot["shuffled"])
    assert axis["cyclic"] == [1] and axis["shuffled"] == [1] * 5   # "one epoch"
    assert sorted(axis["random"]) == [4, 5, 5, 5, 6]
    coupon = sum(1 / k for k in range(1, so.QUAD["dim"] + 1))     # n·H_n draws: "≈ 5.2n"
    assert round(coupon, 1) == 5.2 and abs(np.mean(axis["random"]) - coupon) < 1
    # six rotations: "1.4 to 2.4 times fewer than tuned GD", "about thirty times CG's"
    r = cd["rotations"]
    gd_over_cd = [v["GD"] / v["cyclic"] for v in r.values()]
    cd_over_cg = [v["cyclic"] / v["CG"] for v in r.values()]
    assert (round(min(gd_over_cd), 1), round(max(gd_over_cd), 1)) == (1.4, 2.4)
    assert 25 < min(cd_over_cg) and max(cd_over_cg) < 40
    assert r[0] == dict(cyclic=1531, GD=2698, CG=47)              # rotation 0 is the race's
    # "its steps 1/H_ii (1/584 to 1/405) are about tuned GD's ε = 1/556"
    d, lam = cd["diagonal"], cd["eigenvalues"]
    eps_gd = so.quadratic_race()["GD"]["best"] * 2 / (lam.min() + lam.max())
    assert (round(d.max()), round(d.min()), round(1 / eps_gd)) == (584, 405, 556)
    assert d.min() < 1 / eps_gd < d.max()


# ---------------------------------------------------------------------------------------------
# 15.5 the spectrum, Gauss–Newton

def test_hessian_spectrum():
    spec = so.hessian_spectrum()
    init, trained = spec["init"]["ritz"], spec["trained"]["ritz"]
    assert init[0] < -0.4 and abs(init[0]) > 0.7 * init[-1]   # "roughly symmetric"
    assert abs(trained[0]) < 0.05                              # negative ones all but gone
    assert trained[-1] > 2 * init[-1]                          # the top grew
    top = trained[::-1][:5]
    assert np.all(top[:-1] / top[1:] < 1.5)  # no clear gap (measured ≤ 1.36 across kernel sets)
    for s in spec.values():
        assert float(np.sum((s["density"][1:] + s["density"][:-1]) / 2 * np.diff(s["grid"]))) == pytest.approx(1.0, abs=0.05)


def test_gauss_newton_vs_hessian():
    gn = so.gauss_newton_vs_hessian()
    for r in gn.values():
        assert r["G_min"] >= -1e-12 and r["H_min"] < 0
        assert r["n_params"] == 418
    assert 0.7 < gn["init"]["residual"] < 0.9       # printed 0.8 (0.8333 on every kernel set)
    assert 0.07 < gn["trained"]["residual"] < 0.09  # printed 0.08 (0.0782 … 0.0783)
    assert 0.35 < gn["trained"]["loss"] < 0.45      # "J ≈ 0.4"


def test_explorer_figure_fast_and_ordered():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    steps = so.explorer_figure(ax=ax)
    plt.close(fig)
    gd, cg, lb = steps.values()
    assert cg < lb < gd


def test_memory_sweep_of_the_exercises():
    sweep = so.memory_sweep()  # printed by solutions/ch15 exercise 3; same on every kernel set
    assert sweep["CG"] == 38
    assert {m: sweep[m] for m in so.MEMORIES} == {5: (93, 97), 10: (53, 59), 20: (50, 54), 50: (42, 45)}


@pytest.mark.parametrize("cls", [LBFGS, NonlinearCG])
def test_closure_optimizers_take_one_parameter_group(cls):
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))]},
              {"params": [torch.nn.Parameter(torch.zeros(3))]}]
    with pytest.raises(ValueError, match=f"{cls.__name__} doesn't support per-parameter options"):
        cls(groups)
