"""Chapter 4 (local minima): the library against references, and every number the chapter prints.

References: explicit permutation matrices, math.factorial, run_optimizer / torch.optim.SGD
start by start, course_lib.train.train run by run, torch.autograd.functional.hessian, closed forms on the
tilted double well.  The chapter's measurements use the settings of course_lib.experiments.local_minima
(TASK, SEEDS, TRAINING, ...), so notebook and tests run the same experiments.
"""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from course_lib import seed_everything  # noqa: E402
from course_lib.landscapes import LocalMinima, Saddle, run_optimizer  # noqa: E402
from course_lib.experiments.local_minima import (  # noqa: E402
    BASIN_LR, CRITICAL_RATIO, GLOBAL, LOCAL, NEITHER, SEEDS, SMALL_HIDDEN, TASK, TILT,
    TRAINING, WIDE_HIDDEN, _stacked_forward, basin_explorer, count_permutation_symmetries,
    critical_runs, dead_units, gd_basins, inspect_end_point, log10_permutation_symmetries,
    max_output_difference, parameter_distance, permute_hidden_units, plot_basins,
    random_unit_permutations, rescale_hidden_units, stationarity_ratio, summarize_losses,
    teacher_student_task, train_from_many_seeds, where_it_ends,
    LONG_STEPS, classify_ends)
from course_lib.models import mlp  # noqa: E402
from course_lib.optim import SGD, Adam  # noqa: E402
from course_lib.train import train  # noqa: E402


def approx3(x):
    """Equal to a number printed with 3 significant digits."""
    return pytest.approx(x, rel=6e-3)


# ------------------------------------------------------------------------------------------
# 1. Weight-space symmetry
# ------------------------------------------------------------------------------------------
def small_net(activation="relu", seed=1, hidden=(5, 4)):
    return mlp(3, hidden, 2, activation, generator=torch.Generator().manual_seed(seed)).double()


def test_permutation_matches_permutation_matrices():
    net = small_net()
    perms = [torch.tensor([2, 0, 4, 1, 3]), torch.tensor([3, 1, 0, 2])]
    out = permute_hidden_units(net, perms)
    P1 = torch.eye(5, dtype=torch.float64)[perms[0]]  # (P x)_i = x_{π(i)}
    P2 = torch.eye(4, dtype=torch.float64)[perms[1]]
    torch.testing.assert_close(out[0].weight, P1 @ net[0].weight, rtol=0, atol=0)
    torch.testing.assert_close(out[0].bias, P1 @ net[0].bias, rtol=0, atol=0)
    torch.testing.assert_close(out[2].weight, P2 @ net[2].weight @ P1.T, rtol=0, atol=0)
    torch.testing.assert_close(out[4].weight, net[4].weight @ P2.T, rtol=0, atol=0)
    torch.testing.assert_close(out[4].bias, net[4].bias, rtol=0, atol=0)
    X = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert max_output_difference(net, out, X) < 1e-13
    assert parameter_distance(net, out) > 0.5
    # the inverse permutation restores θ bit for bit; the original is untouched
    inverse = [torch.argsort(p) for p in perms]
    back = permute_hidden_units(out, inverse)
    assert parameter_distance(back, net) == 0.0
    assert out is not net and out[0].weight.data_ptr() != net[0].weight.data_ptr()


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_permutation_symmetry_holds_for_every_activation(activation):
    net = small_net(activation)
    gen = torch.Generator().manual_seed(3)
    out = permute_hidden_units(net, random_unit_permutations(net, gen))
    X = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    assert max_output_difference(net, out, X) < 1e-13


def test_rescaling_is_a_symmetry_of_relu_only():
    alpha = torch.tensor([0.3, 2.0, 5.0, 0.7, 1.5], dtype=torch.float64)
    X = torch.randn(60, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    relu = small_net("relu")
    out = rescale_hidden_units(relu, 0, alpha)
    torch.testing.assert_close(out[0].weight, alpha[:, None] * relu[0].weight)
    torch.testing.assert_close(out[2].weight, relu[2].weight / alpha)
    assert max_output_difference(relu, out, X) < 1e-12
    assert parameter_distance(relu, out) > 0.5
    tanh = small_net("tanh")
    assert max_output_difference(tanh, rescale_hidden_units(tanh, 0, alpha), X) > 1e-2
    assert max_output_difference(tanh, rescale_hidden_units(tanh, 1, -1.0), X) < 1e-13  # odd
    sigmoid = small_net("sigmoid")
    assert max_output_difference(sigmoid, rescale_hidden_units(sigmoid, 0, -1.0), X) > 1e-2


def test_counting_symmetries():
    assert count_permutation_symmetries((3,)) == 6
    assert count_permutation_symmetries((4, 4)) == 576
    assert count_permutation_symmetries(()) == 1
    assert count_permutation_symmetries((100,) * 3) == math.factorial(100) ** 3
    for hidden in [(1,), (7, 3), (10, 20, 30), (64, 64)]:
        exact = count_permutation_symmetries(hidden)
        assert log10_permutation_symmetries(hidden) == pytest.approx(
            math.log10(exact) if exact < 1e300 else len(str(exact)) - 1, abs=1.0)
    assert log10_permutation_symmetries((10, 20, 30)) == pytest.approx(
        math.log10(math.factorial(10) * math.factorial(20) * math.factorial(30)), rel=1e-12)


def test_chapter_symmetry_numbers():
    """The cells of section 1, with the notebook's generator sequence."""
    gen = seed_everything(0)
    net = mlp(4, (8, 8), 3, activation="relu", generator=gen).double()
    X_probe = torch.randn(256, 4, generator=gen, dtype=torch.float64)
    perms = random_unit_permutations(net, generator=gen)
    permuted = permute_hidden_units(net, perms)
    assert perms[0].tolist() == [4, 3, 5, 6, 7, 0, 1, 2]
    assert parameter_distance(net, permuted) == approx3(3.78)
    assert max_output_difference(net, permuted, X_probe) < 1e-12

    alpha = torch.exp(torch.empty(8, dtype=torch.float64).uniform_(-1.6, 1.6, generator=gen))
    assert [round(a, 2) for a in alpha.tolist()] == [0.62, 1.35, 4.48, 2.35, 1.21, 0.25,
                                                     3.12, 0.76]
    rescaled = rescale_hidden_units(net, 0, alpha)
    assert parameter_distance(net, rescaled) == approx3(3.13)
    assert max_output_difference(net, rescaled, X_probe) < 1e-12
    tanh_net = mlp(4, (8, 8), 3, activation="tanh", generator=gen).double()
    assert max_output_difference(tanh_net, rescale_hidden_units(tanh_net, 0, alpha),
                                 X_probe) == pytest.approx(0.16, rel=0.04)
    assert max_output_difference(tanh_net, rescale_hidden_units(tanh_net, 0, -1.0),
                                 X_probe) < 1e-12

    assert count_permutation_symmetries((8, 8)) == 1_625_702_400
    big = str(count_permutation_symmetries((100, 100, 100)))
    assert len(big) == 474 and big[:6] == "812851"
    assert log10_permutation_symmetries((1000,) * 3) > 7000  # the figure's title


@pytest.mark.parametrize("call, match", [
    (lambda: permute_hidden_units(nn.Linear(2, 2), []), "Invalid model"),
    (lambda: permute_hidden_units(nn.Sequential(nn.ReLU(), nn.ReLU(), nn.ReLU()), []),
     "Invalid model"),
    (lambda: permute_hidden_units(small_net(), [torch.arange(5)]), "Invalid perms"),
    (lambda: permute_hidden_units(small_net(), [torch.tensor([0, 0, 1, 2, 3]),
                                                torch.arange(4)]), r"Invalid perms\[0\]"),
    (lambda: permute_hidden_units(small_net(), [torch.arange(5), torch.arange(5)]),
     r"Invalid perms\[1\]"),
    (lambda: rescale_hidden_units(small_net(), 0, 0.0), "Invalid scale"),
    (lambda: rescale_hidden_units(small_net(), 0, float("nan")), "Invalid scale"),
    (lambda: rescale_hidden_units(small_net(), 0, torch.ones(3)), "Invalid scale"),
    (lambda: rescale_hidden_units(small_net(), 2, 1.0), "Invalid layer"),
    (lambda: count_permutation_symmetries((3, 0)), "Invalid hidden"),
    (lambda: log10_permutation_symmetries((2.5,)), "Invalid hidden"),
    (lambda: parameter_distance(small_net(), small_net(hidden=(5, 3))), "Invalid models"),
])
def test_symmetry_tools_reject_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ------------------------------------------------------------------------------------------
# 2. Basins of attraction
# ------------------------------------------------------------------------------------------
J = LocalMinima(TILT)


@pytest.mark.parametrize("lr, momentum", [(BASIN_LR, 0.0), (BASIN_LR, 0.9), (0.15, 0.0)])
def test_gd_basins_matches_run_optimizer_start_by_start(lr, momentum):
    b = gd_basins(J, lr, steps=60, momentum=momentum, resolution=5)
    for i, j in [(0, 0), (1, 3), (2, 2), (4, 1), (3, 4)]:
        start = [b.x[j], b.y[i]]
        ours = run_optimizer(J, SGD, start, 60, lr=lr, momentum=momentum)
        ref = run_optimizer(J, torch.optim.SGD, start, 60, lr=lr, momentum=momentum)
        np.testing.assert_allclose(b.final[i, j], ours.final, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(b.final[i, j], ref.final, rtol=1e-12, atol=1e-12)


def test_small_steps_split_the_window_at_the_saddle():
    """Gradient flow cannot cross the saddle's stable manifold θ₁ = x₂: with small ε the
    bad basin is exactly the grid columns right of the saddle."""
    b = gd_basins(J, lr=BASIN_LR, steps=300, momentum=0.0, resolution=101)
    x2 = J.saddles[0, 0].item()
    right = b.x > x2
    assert (b.label[:, right] == LOCAL).all() and (b.label[:, ~right] == GLOBAL).all()
    assert b.fraction_bad == right.mean()
    (lo, hi), _ = J.bounds
    assert abs(b.fraction_bad - (hi - x2) / (hi - lo)) <= 1 / 101


def test_basin_labels_and_where_it_ends():
    b = gd_basins(J, lr=BASIN_LR, steps=300, resolution=11)
    assert b.fraction_global + b.fraction_bad + b.fraction(NEITHER) == pytest.approx(1.0)
    assert where_it_ends(J, J.minimizers[0].numpy()) == "the global minimum"
    assert where_it_ends(J, J.local_minimizers[0].numpy()) == "the bad local minimum"
    assert where_it_ends(J, J.saddles[0].numpy()) == "no minimum"
    # a run that is stopped early ends nowhere; a diverging one too
    assert gd_basins(J, lr=1e-4, steps=2, resolution=11).fraction(NEITHER) == 1.0
    assert gd_basins(J, lr=5.0, steps=50, resolution=11).fraction(NEITHER) > 0.9
    # a landscape with two global minima and no local one
    s = gd_basins(Saddle(), lr=0.05, steps=400, resolution=20)
    assert s.fraction_bad == 0.0 and s.fraction_global == 1.0  # no start on the x-axis


def test_chapter_basin_numbers():
    crit = {k: [tuple(round(v, 3) for v in p.tolist()) for p in pts]
            for k, pts in J.critical_points.items()}
    assert crit == {"global minimum": [(-1.057, 0.0)], "local minimum": [(0.930, 0.0)],
                    "saddle": [(0.127, 0.0)]}
    assert J(J.minimizers[0]).item() == approx3(-0.515)
    assert J(J.local_minimizers[0]).item() == approx3(0.483)
    assert J(J.saddles[0]).item() == approx3(1.032)
    assert (J(J.saddles[0]) - J(J.local_minimizers[0])).item() == approx3(0.548)
    (lo, hi), _ = J.bounds
    assert (hi - J.saddles[0, 0].item()) / (hi - lo) == approx3(0.468)
    expected = {(BASIN_LR, 0.0): (0.465, 0.535), (BASIN_LR, 0.9): (0.386, 0.614),
                (0.15, 0.0): (0.436, 0.564)}
    for (lr, mom), (bad, good) in expected.items():
        b = gd_basins(J, lr=lr, steps=300, momentum=mom, resolution=101)
        assert (b.fraction_bad, b.fraction_global) == (approx3(bad), approx3(good))
    # the prose: momentum and large steps shrink the bad basin, but it stays large
    assert 0.3 < expected[(BASIN_LR, 0.9)][0] < expected[(0.15, 0.0)][0] < expected[
        (BASIN_LR, 0.0)][0]


def test_plot_basins_and_explorer():
    b = gd_basins(J, resolution=21, steps=100)
    assert b.fraction_bad == 10 / 21  # the columns θ₁ = 0.2, 0.4, …, 2 lie right of the saddle
    ax = plot_basins(J, b)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "start → the bad local minimum (48%)" in labels
    assert ax.get_title() == "GD basins, ε = 0.05, α = 0"
    assert not any("no minimum" in t for t in labels)  # 0 % entries are left out
    plt.close("all")
    w = basin_explorer(J, steps=200, resolution=21)
    assert repr(w) == "InteractivePlot(controls: x_start, y_start, lr, momentum)"
    assert "ends in the bad local minimum" in w.figure.axes[0].get_title()
    w.controls["x_start"].value = -1.5
    assert "ends in the global minimum" in w.figure.axes[0].get_title()
    w.controls["lr"].value = 10 ** -0.7
    w.controls["x_start"].value = 2.0
    assert "diverges" in w.figure.axes[0].get_title()
    plt.close("all")


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=0.0), "Invalid lr"), (dict(lr=float("inf")), "Invalid lr"),
    (dict(steps=0), "Invalid steps"), (dict(steps=2.5), "Invalid steps"),
    (dict(momentum=1.0), "Invalid momentum"), (dict(momentum=-0.1), "Invalid momentum"),
    (dict(resolution=0), "Invalid resolution"), (dict(tol=-1.0), "Invalid tol"),
])
def test_gd_basins_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        gd_basins(J, **kwargs)


# ------------------------------------------------------------------------------------------
# 3. Many seeds: the training of stacked networks against one-at-a-time training
# ------------------------------------------------------------------------------------------
def test_teacher_student_task():
    task = teacher_student_task(**TASK)
    assert task.X.shape == (200, 2) and task.y.shape == (200, 1)
    assert task.X.dtype == torch.float64
    assert abs(task.y.mean().item()) < 1e-12
    assert task.y.var(unbiased=False).item() == pytest.approx(1.0, rel=1e-12)
    with torch.no_grad():
        assert ((task.teacher(task.X) - task.y) ** 2).mean().item() < 1e-28
    again = teacher_student_task(**TASK)
    assert torch.equal(task.X, again.X) and torch.equal(task.y, again.y)
    f32 = teacher_student_task(**TASK, dtype=torch.float32)
    assert f32.X.dtype == f32.y.dtype == torch.float32
    with pytest.raises(ValueError, match="Invalid teacher_hidden"):
        teacher_student_task(teacher_hidden=0)
    with pytest.raises(ValueError, match="Invalid seed"):
        teacher_student_task(seed=-1)


def test_stacked_forward_matches_each_mlp():
    X = torch.randn(30, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    nets = [small_net("tanh", seed=s) for s in (4, 5, 6)]
    stacked = [torch.stack([n.state_dict()[k] for n in nets]) for k in nets[0].state_dict()]
    out = _stacked_forward(stacked, nn.Tanh(), X)
    for i, n in enumerate(nets):
        torch.testing.assert_close(out[i], n(X), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("optimizer, hyper", [(SGD, dict(lr=0.05, momentum=0.9)),
                                              (Adam, dict(lr=0.01))])
def test_many_seeds_equals_one_run_at_a_time(optimizer, hyper):
    """Stacking is exact: each run follows the path course_lib.train.train gives it alone."""
    task = teacher_student_task(n_samples=40, in_features=2, teacher_hidden=3, seed=1)
    steps, seeds = 25, [3, 7]
    runs = train_from_many_seeds(task.X, task.y, (3,), seeds, steps, optimizer, **hyper)
    assert runs.losses.shape == runs.grad_norms.shape == (steps + 1, 2)
    for i, seed in enumerate(seeds):
        model = mlp(2, (3,), 1, generator=torch.Generator().manual_seed(seed)).double()
        hist = train(model, nn.functional.mse_loss, optimizer(model.parameters(), **hyper),
                     (task.X, task.y), epochs=steps, batch_size=len(task.X), metrics=(),
                     device="cpu")
        np.testing.assert_allclose(runs.losses[:steps, i], hist.steps["loss"], rtol=1e-10)
        np.testing.assert_allclose(runs.grad_norms[:steps, i], hist.steps["grad_norm"],
                                   rtol=1e-8)
        for (name, p), q in zip(runs.model(i).named_parameters(), model.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)
        with torch.no_grad():
            final = nn.functional.mse_loss(model(task.X), task.y).item()
        assert runs.final_losses[i] == pytest.approx(final, rel=1e-10)


def test_stationarity_ratio_dead_units_and_summaries():
    assert stationarity_ratio(np.ones(5)) == pytest.approx(1.0)
    assert stationarity_ratio([3.0, 1.0, 0.0, 0.0]) == 0.0
    np.testing.assert_allclose(stationarity_ratio([[4.0, 1.0], [2.0, 1.0], [0.0, 1.0]]),
                               [0.0, 1.0])
    np.testing.assert_allclose(stationarity_ratio([2.0, 1.0]), 1 / 1.5)
    for bad in ([1.0], [[1.0, np.nan], [1.0, 1.0]], [1.0, -1.0], np.ones((2, 2, 2))):
        with pytest.raises(ValueError, match="Invalid grad_norms"):
            stationarity_ratio(bad)
    net = small_net("relu", hidden=(5, 4))
    with torch.no_grad():
        net[0].bias[[1, 3]] = -100.0  # units 1 and 3 of layer 1: off for every input
        net[2].bias[0] = -100.0
    X = torch.randn(100, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert dead_units(net, X) == [2, 1]
    assert dead_units(small_net("relu"), X) == [0, 0]
    s = summarize_losses([1.0, 2.0, 3.0, 4.0, 5.0])
    assert (s.median, s.min, s.max) == (3.0, 1.0, 5.0)
    assert s.spread == pytest.approx(np.quantile([1, 2, 3, 4, 5], 0.9) - 1.4)
    with pytest.raises(ValueError, match="Invalid losses"):
        summarize_losses([])


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden=(0,)), "Invalid hidden"), (dict(seeds=[]), "Invalid seeds"),
    (dict(seeds=[-1]), "Invalid seeds"), (dict(steps=0), "Invalid steps"),
    (dict(y=torch.zeros(5, 1)), "Invalid data"),
])
def test_many_seeds_rejects_bad_input(kwargs, match):
    args = dict(X=torch.zeros(4, 2), y=torch.zeros(4, 1), hidden=(3,), seeds=[0], steps=2)
    with pytest.raises(ValueError, match=match):
        train_from_many_seeds(**{**args, **kwargs}, lr=0.1)


# ------------------------------------------------------------------------------------------
# The chapter's measurements (sections 3 and 4)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chapter_runs():
    task = teacher_student_task(**TASK)
    runs = {name: train_from_many_seeds(task.X, task.y, hidden, SEEDS, TRAINING["steps"],
                                        lr=TRAINING["lr"], momentum=TRAINING["momentum"])
            for name, hidden in (("small", SMALL_HIDDEN), ("wide", WIDE_HIDDEN))}
    return task, runs


def test_chapter_final_loss_distributions(chapter_runs):
    _, runs = chapter_runs
    small, wide = (summarize_losses(runs[k].final_losses) for k in ("small", "wide"))
    assert (small.median, small.q10, small.q90, small.max) == (
        approx3(0.0587), approx3(0.00184), approx3(0.0716), approx3(0.837))
    assert (wide.median, wide.q10, wide.q90, wide.max) == (
        approx3(8.18e-05), approx3(4.87e-05), approx3(0.000161), approx3(0.000249))
    # the finding: wide ≪ small in median and in spread
    assert small.median / wide.median == pytest.approx(718, rel=0.01)
    assert small.spread / wide.spread == pytest.approx(621, rel=0.01)
    assert small.median / wide.median > 100 and small.spread / wide.spread > 100
    assert int((runs["small"].final_losses > wide.max).sum()) == 29


def test_chapter_critical_point_check(chapter_runs):
    task, runs = chapter_runs
    small = runs["small"]
    r_small, r_wide = (stationarity_ratio(runs[k].grad_norms) for k in ("small", "wide"))
    at_critical = critical_runs(small, CRITICAL_RATIO)
    moving = np.setdiff1d(np.arange(len(SEEDS)), at_critical)
    assert [SEEDS[i] for i in at_critical] == [2, 11, 12, 13, 18, 23]
    # a wide gap around the threshold: the classification is not a matter of rounding
    assert r_small[at_critical].max() < CRITICAL_RATIO / 20
    assert r_small[moving].min() > CRITICAL_RATIO * 20
    assert (r_small[moving].min(), r_small[moving].max()) == (
        pytest.approx(2.3e-05, rel=0.03), pytest.approx(0.42, rel=0.03))
    assert (r_wide.min(), r_wide.max()) == (pytest.approx(0.011, rel=0.05),
                                            pytest.approx(0.031, rel=0.05))
    assert int(at_critical[np.argmax(small.final_losses[at_critical])]) == 18

    expected = {2: (0.0734, 8, 1), 11: (0.00193, 7, 0), 12: (0.00193, 7, 0),
                13: (0.00193, 7, 0), 18: (0.837, 14, 3), 23: (0.00193, 7, 0)}
    for i in at_critical:
        e = inspect_end_point(small, int(i), task.X, task.y)
        loss, flat, dead = expected[SEEDS[i]]
        assert e.loss == approx3(loss) and e.dead == [dead]
        assert e.lambda_min >= -1e-8 * e.lambda_max  # positive semidefinite: a minimum
        assert e.flat_directions() == flat >= 4  # ≥ one flat direction per ReLU unit
        assert e.loss > 5 * runs["wide"].final_losses.max()  # and a bad one
    # no end point has a clearly negative eigenvalue: λ_min/λ_max in [-7.3e-5, 5.5e-9]
    ends = classify_ends(small, task.X, task.y)
    assert ends.negative.sum() == 0 and ends.critical.sum() == 6
    assert ends.curvature.min() == pytest.approx(-7.3e-5, rel=0.05) and ends.curvature.max() < 1e-7
    # what the old threshold −1e-8·λ_max called "clearly negative": flatness at the 1e-5 level
    assert (ends.curvature[moving] < -1e-8).sum() == 18


def test_chapter_long_runs_stay_in_flat_bad_regions(chapter_runs):
    # identical counts under the native, default and avx2 kernel sets
    task, runs = chapter_runs
    small = runs["small"]
    long_runs = train_from_many_seeds(task.X, task.y, SMALL_HIDDEN, SEEDS, LONG_STEPS,
                                      lr=TRAINING["lr"], momentum=TRAINING["momentum"])
    ends = classify_ends(long_runs, task.X, task.y)
    before, after = small.final_losses, long_runs.final_losses
    assert np.median(before) == approx3(0.0587) and np.median(after) == approx3(0.0586)
    assert ends.critical.sum() == 17 and ends.negative.sum() == 0  # 6 -> 17 at a critical point
    assert ends.curvature.min() == pytest.approx(-7.1e-5, rel=0.05) and ends.curvature.max() <= 1e-7
    unchanged, high = after > 0.95 * before, before > 0.01
    assert unchanged.sum() == 26 and (unchanged & high).sum() == 19 and high.sum() == 21
    assert (after < 0.5 * before).sum() == 4  # "only a few runs found a way down"
    assert (ends.dead > 0).sum() == 9
    # the runs that still fail the critical-point test bounce in place: the gradient has not
    # shrunk (r: one at 0.004, the other 12 in 0.24-1.4) while the loss moved by < 3.3e-4 over
    # the last 10 000 steps (same counts under native, default and avx2)
    moving = ~ends.critical
    r_long = stationarity_ratio(long_runs.grad_norms)
    mid = long_runs.losses[LONG_STEPS // 2]
    drift = np.abs(after - mid) / mid
    assert moving.sum() == 13 and (r_long[moving] > 0.1).sum() == 12
    assert (drift[moving] < 1e-3).sum() == 13


def test_inspect_end_point_against_autograd_hessian(chapter_runs):
    task, runs = chapter_runs
    e = inspect_end_point(runs["small"], 5, task.X, task.y)
    model = runs["small"].model(5)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss(theta):
        chunks = torch.split(theta, [math.prod(s) for s in shapes])
        params = {n: c.reshape(s) for n, c, s in zip(names, chunks, shapes)}
        out = torch.func.functional_call(model, params, (task.X,))
        return ((out - task.y) ** 2).mean()

    H = torch.autograd.functional.hessian(loss, flat)
    np.testing.assert_allclose(e.eigenvalues, torch.linalg.eigvalsh(H).numpy(), atol=1e-10)
    (g,) = torch.autograd.grad(loss(flat.requires_grad_()), flat)
    assert e.grad_norm == pytest.approx(g.norm().item(), rel=1e-8)
    with pytest.raises(ValueError, match="Invalid run"):
        inspect_end_point(runs["wide"], 0, task.X, task.y, max_params=50)
    with pytest.raises(ValueError, match="Invalid run index"):
        runs["small"].model(30)


def test_exercise_5_spare_units_unstick_the_small_student(chapter_runs):
    # solutions/ch04, exercise 5 prints these (identical under native, default and avx2)
    task, runs = chapter_runs
    counts = {4: int((runs["small"].final_losses > 0.01).sum())}
    for width in (6, 8):
        r = train_from_many_seeds(task.X, task.y, (width,), SEEDS, TRAINING["steps"],
                                  lr=TRAINING["lr"], momentum=TRAINING["momentum"])
        counts[width] = int((r.final_losses > 0.01).sum())
    assert counts == {4: 21, 6: 10, 8: 2}


def test_chapter_plots(chapter_runs):
    from course_lib.experiments.local_minima import plot_final_losses, plot_stationarity, plot_symmetry_counts

    _, runs = chapter_runs
    ax = plot_symmetry_counts(max_width=50)
    assert len(ax.lines) == 3 and ax.get_xlabel() == "units per hidden layer n"
    ax = plot_final_losses(runs)
    assert ax.get_xscale() == "log" and ax.get_legend().get_texts()[0].get_text() == "small (30 seeds)"
    ratios = {k: stationarity_ratio(r.grad_norms) for k, r in runs.items()}
    axes = plot_stationarity({"small 0": runs["small"].grad_norms[:, 0]}, runs, ratios)
    assert [t.get_text() for t in axes[1].get_legend().get_texts()][-1] == "r = 1e-6"
    plt.close("all")
