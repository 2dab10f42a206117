"""Chapter 6: the one-unit RNN's cliff and gradient clipping (course_lib.experiments.cliffs).

Unit tests against references (autograd, a plain loop, closed forms, torch's clipping), then
every number that chapters/06_cliffs_and_exploding_gradients.ipynb prints or states, computed
with the same functions and the same settings (the constants of course_lib.experiments.cliffs).
"""
import math

import numpy as np
import pytest
import torch

import course_lib.experiments.cliffs as cl
from stored import stored_text
from course_lib.experiments.cliffs import (RNNCliff, angle_between, catapult_census, clip_gradient,
                               compare_clipping, growth_factor, single_step, step_lengths,
                               steepest_slope, threshold_sweep, wall_slopes)

J = RNNCliff(cl.CHAPTER_T)
LOW_POINTS = [(0.4, -1.5), (1.3, 0.2), (2.7, -0.4), (3.9, -1.9), (1.0, 0.9)]


def f64(x):
    return torch.tensor(x, dtype=torch.float64)


# ------------------------------------------------------------------ the landscape itself
@pytest.mark.parametrize("args", [(20, 0.5, 0.7), (5, -0.3, 0.2), (1, 0.0, -0.5), (12, 0.9, 0.0)])
def test_grad_and_hessian_match_autograd(args):
    L = RNNCliff(*args)
    theta = f64(LOW_POINTS).requires_grad_()
    (g_auto,) = torch.autograd.grad(L(theta).sum(), theta)
    torch.testing.assert_close(L.grad(theta.detach()), g_auto, rtol=1e-10, atol=1e-12)
    H = L.hessian(theta.detach())
    assert H.shape == (len(LOW_POINTS), 2, 2)
    for point, H_i in zip(theta.detach(), H):
        H_auto = torch.autograd.functional.hessian(L.value, point)
        torch.testing.assert_close(H_i, H_auto, rtol=1e-9, atol=1e-12)


def test_value_and_states_are_the_recurrence():
    w, b = 1.7, -0.3
    h, hs = 0.5, [0.5]
    for _ in range(cl.CHAPTER_T):
        h = math.tanh(w * h + b)
        hs.append(h)
    assert J([w, b]).item() == pytest.approx(0.5 * (h - 0.7) ** 2, rel=1e-13)
    states = J.states([w, b])
    assert states.shape == (cl.CHAPTER_T + 1,)
    np.testing.assert_allclose(states.numpy(), hs, rtol=1e-13)
    X, Y, Z = J.mesh(resolution=5)  # broadcasting over a meshgrid
    assert Z.shape == (5, 5) and Z[2, 3] == pytest.approx(J([X[2, 3], Y[2, 3]]).item(), rel=1e-14)


def test_the_wall_in_closed_form_and_at_finite_T():
    for w in (1.5, 2.0, 3.0):
        b_star = J.wall_limit(w)
        assert math.tanh(w * 0.5 + b_star) == pytest.approx(0.5, abs=1e-15)  # h0 is a fixed point
        assert J.wall_growth(w) == pytest.approx(w * 0.75)
        b_T = J.wall_b(w)
        assert abs(J.states([w, b_T])[-1].item()) < 1e-6  # h_T crosses 0 there
        assert J.states([w, b_T - 1e-6])[-1].item() < 0 < J.states([w, b_T + 1e-6])[-1].item()
    # the crossing tends to b*(w) as T grows
    gaps = [abs(RNNCliff(T).wall_b(2.0) - J.wall_limit(2.0)) for T in (5, 10, 20, 40)]
    assert all(a > b for a, b in zip(gaps, gaps[1:])) and gaps[-1] < 1e-7


def test_wall_slope_grows_like_the_product_of_factors():
    slopes = wall_slopes(cl.WALL_TS, w=cl.WALL_W)
    # the chapter's table (T = 10 ... 30)
    np.testing.assert_allclose(slopes, [168.0, 1.39e3, 1.08e4, 8.22e4, 6.24e5], rtol=5e-3)
    rate = growth_factor(cl.WALL_TS, slopes)
    assert rate == pytest.approx(1.51, abs=5e-3)
    assert rate == pytest.approx(J.wall_growth(cl.WALL_W), rel=0.015)
    # at w = 3 the factor is 2.25; last ratio even closer to the asymptote
    slopes3 = wall_slopes(cl.WALL_TS, w=3.0)
    assert growth_factor(cl.WALL_TS, slopes3) == pytest.approx(2.25, rel=0.01)
    assert (slopes[-1] / slopes[-2]) ** (1 / 5) == pytest.approx(1.5, rel=1e-3)


def test_growth_factor_of_an_exact_geometric_sequence():
    T = np.arange(3, 9)
    assert growth_factor(T, 7.0 * 1.3**T) == pytest.approx(1.3, rel=1e-12)


def test_shelf_basin_and_factors_of_section_1():
    assert J(cl.START).item() == pytest.approx(1.43, abs=5e-3)
    assert J([3.0, 0.0]).item() == pytest.approx(0.0435, abs=5e-4)
    assert [J.wall_growth(w) for w in (1.0, 2.0, 4.0)] == pytest.approx([0.75, 1.5, 3.0])


# ------------------------------------------------------------------ clipping
def test_clip_gradient_is_torch_clipping_on_a_copy():
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        g = 10 * torch.randn(7, generator=gen, dtype=torch.float64)
        before = g.clone()
        by_norm = clip_gradient(g, max_norm=1.5)
        torch.testing.assert_close(by_norm, g * 1.5 / (g.norm() + 1e-6), rtol=1e-14, atol=0)
        torch.testing.assert_close(clip_gradient(g, max_value=0.7), g.clamp(-0.7, 0.7))
        torch.testing.assert_close(g, before, rtol=0, atol=0)  # the input is untouched
    small = f64([0.1, -0.2])
    torch.testing.assert_close(clip_gradient(small, max_norm=1.0), small)  # below c: unchanged
    torch.testing.assert_close(clip_gradient(small, max_value=1.0), small)


def test_angle_between_known_angles():
    assert angle_between([1, 0], [0, 3]) == pytest.approx(90)
    assert angle_between([1, 0], [-2, 0]) == pytest.approx(180)
    assert angle_between([1, 1], [5, 0]) == pytest.approx(45)
    assert angle_between([1, 2, 3], [2, 4, 6]) == pytest.approx(0, abs=1e-6)


def test_norm_clipping_keeps_the_direction_value_clipping_turns_it():
    """Section 4: the gradient at the point on the wall's face."""
    g = J.grad(f64(cl.NEAR_WALL))
    assert g.tolist() == pytest.approx([-7.23, -14.5], rel=5e-3)
    assert g.norm().item() == pytest.approx(16.2, rel=5e-3)
    g_norm = clip_gradient(g, max_norm=cl.MAX_NORM)
    g_value = clip_gradient(g, max_value=cl.MAX_VALUE)
    assert g_norm.norm().item() == pytest.approx(cl.MAX_NORM, rel=1e-6)
    assert angle_between(g, g_norm) < 1e-5                      # prints as 0.00 degrees
    assert g_value.tolist() == [-cl.MAX_VALUE, -cl.MAX_VALUE]   # both components clamped
    angle = angle_between(g, g_value)
    assert angle == pytest.approx(18.6, abs=0.05) and angle > 10
    assert angle == pytest.approx(angle_between(g, torch.sign(g)), abs=1e-9)
    # the closed form: g ∝ (h0, 1) on the wall, so the angle to the diagonal is ≈ 18.43°
    assert angle == pytest.approx(math.degrees(math.acos(1.5 / math.sqrt(2.5))), abs=0.3)


# ------------------------------------------------------------------ the catapult
def test_one_step_on_the_face_is_a_catapult():
    """Section 3."""
    plain = single_step(J, cl.NEAR_WALL, cl.LR)
    clipped = single_step(J, cl.NEAR_WALL, cl.LR, max_norm=cl.MAX_NORM)
    assert plain["loss_before"] == pytest.approx(0.024, abs=5e-4)
    assert plain["grad_norm"] == pytest.approx(16.2, rel=5e-3)
    assert plain["step_length"] == pytest.approx(cl.LR * plain["grad_norm"], rel=1e-12)
    assert plain["step_length"] == pytest.approx(1.62, rel=5e-3)
    np.testing.assert_allclose(plain["theta_after"], [2.22, 1.25], atol=5e-3)
    assert plain["loss_after"] == pytest.approx(0.0444, abs=5e-4)
    assert plain["loss_after"] / plain["loss_before"] == pytest.approx(1.85, abs=0.01)
    assert clipped["step_length"] == pytest.approx(cl.LR * cl.MAX_NORM, rel=1e-6)
    np.testing.assert_allclose(clipped["theta_after"], [1.54, -0.111], atol=5e-3)
    assert clipped["loss_after"] == pytest.approx(0.00706, abs=5e-5)
    assert clipped["loss_after"] / clipped["loss_before"] == pytest.approx(0.29, abs=0.01)
    assert plain["step_length"] / clipped["step_length"] == pytest.approx(16.2, rel=5e-3)
    # the gradient is 70 times smaller 0.01 further up the slope
    w0, b0 = cl.NEAR_WALL
    far = [J.grad(f64([w0, b0 + db])).norm().item() for db in (0.01, 0.05)]
    assert far == pytest.approx([0.22, 0.0812], rel=5e-3)
    assert plain["grad_norm"] / far[0] > 70


@pytest.fixture(scope="module")
def runs():
    return compare_clipping(J, cl.START, cl.LR, cl.STEPS, max_norm=cl.MAX_NORM,
                            max_value=cl.MAX_VALUE)


def test_same_start_with_and_without_clipping(runs):
    """Section 5."""
    assert list(runs) == ["no clipping", "clip by norm (c = 1)", "clip by value (c = 0.5)"]
    plain, by_norm, by_value = runs.values()
    for traj in runs.values():
        assert traj.steps == cl.STEPS and not traj.diverged
        assert int(step_lengths(traj).argmax()) + 1 == 64  # all meet the wall at step 64
    jumps = step_lengths(plain)
    assert jumps.max() == pytest.approx(21.6, rel=5e-3)
    k = int(jumps.argmax())
    assert plain.losses[k] == pytest.approx(0.161, abs=1e-3)
    assert plain.grad_norms[k] == pytest.approx(216, rel=5e-3)
    np.testing.assert_allclose(plain.final, [10.9, 19.2], atol=0.05)
    assert plain.losses[-1] == pytest.approx(0.5 * (1 - 0.7) ** 2, rel=1e-12)
    assert plain.grad_norms[-1] == 0.0 and J.states(plain.final)[-1].item() == 1.0
    # clipping by norm: steps bounded by εc, converged in the ravine
    assert step_lengths(by_norm).max() <= cl.LR * cl.MAX_NORM * (1 + 1e-12)
    assert step_lengths(by_norm).max() == pytest.approx(0.1, rel=1e-6)
    assert by_norm.losses[-1] < 1e-8 and by_norm.grad_norms[-1] < 1e-6
    np.testing.assert_allclose(by_norm.final, [1.52, -0.197], atol=5e-3)
    # clipping by value: steps bounded by εc√2 (the diagonal), converged too
    assert step_lengths(by_value).max() == pytest.approx(cl.LR * cl.MAX_VALUE * math.sqrt(2), rel=1e-9)
    assert by_value.losses[-1] < 1e-8
    assert by_value.grad_norms[-1] == pytest.approx(6.67e-5, rel=5e-3)
    np.testing.assert_allclose(by_value.final, [1.55, -0.214], atol=5e-3)


def test_census_of_sixteen_runs():
    """Section 6, on the stored output (nbval re-runs the census: ~32 runs).  Run longer (300
    and 1000 steps, reviewer's check) the clipped runs all reach the ravine (16 of 16) while no
    catapulted plain run recovers: their gradient is exactly zero."""
    text = stored_text("06_cliffs", "catapult_census(")
    assert "no clipping  :  9 of 16 runs catapulted,  5 of 16 reached J < 0.01" in text
    assert "clip by norm :  0 of 16 runs catapulted, 13 of 16 reached J < 0.01" in text


def test_census_runs_longer_clipped_all_arrive():
    """The prose's "the other three clipped runs have not finished crossing the shelf": the
    three stragglers (smallest ε) arrive within 300 steps."""
    starts = cl.census_starts(J)
    census = catapult_census(J, starts, [cl.CENSUS_LRS[0]], 300, cl.MAX_NORM)
    assert census["clip by norm"] == {"runs": 4, "catapulted": 0, "reached": 4}


def test_threshold_sweep(runs):
    """Section 7."""
    sweep = threshold_sweep(J, cl.START, cl.LR, cl.STEPS, cl.THRESHOLDS)
    # torch divides by ||g|| + 1e-6, hence the 1e-4 for c = 0.01
    np.testing.assert_allclose(sweep["max_step"], cl.LR * np.array(cl.THRESHOLDS), rtol=1e-4)
    final = dict(zip(cl.THRESHOLDS, sweep["final_loss"]))
    assert final[0.01] == pytest.approx(1.42, abs=5e-3) and final[0.03] == pytest.approx(1.41, abs=5e-3)
    assert all(final[c] < 1e-8 for c in (0.1, 0.3, 1.0))
    assert final[3.0] == pytest.approx(1.18e-6, rel=0.02)
    assert final[10.0] == pytest.approx(0.0416, abs=5e-4)
    assert final[30.0] == pytest.approx(0.045, abs=5e-4) and final[100.0] == pytest.approx(0.045, abs=5e-4)
    assert sweep["losses"].shape == (len(cl.THRESHOLDS), cl.STEPS + 1)
    assert list(sweep["reach_step"][:2]) == [-1, -1] and all(sweep["reach_step"][2:5] > 0)
    plain = runs["no clipping"]
    k = int(step_lengths(plain).argmax())
    assert np.median(plain.grad_norms[:k]) == pytest.approx(0.08, abs=0.005)


def test_small_threshold_slows_it_does_not_stop():
    """Section 7's prose (reviewer's rerun, 10x longer): c = 0.03 arrives by step 250 (at 220),
    c = 0.01 by step 700 (at 659); c = 10 is catapulted yet finds its way back (at 427, "about
    430"); c = 30 stays stranded where the gradient is below 1e-4."""
    sweep = threshold_sweep(J, cl.START, cl.LR, 700, (0.01, 0.03))
    assert list(sweep["reach_step"]) == [659, 220]
    back = threshold_sweep(J, cl.START, cl.LR, 450, (10.0,))
    assert back["max_step"][0] == pytest.approx(1.0, rel=1e-6)
    assert back["reach_step"][0] == 427
    stranded = compare_clipping(J, cl.START, cl.LR, cl.STEPS, max_norm=30.0)["clip by norm (c = 30)"]
    assert stranded.losses[-1] == pytest.approx(0.045, abs=5e-4)
    assert stranded.grad_norms[-1] < 1e-4  # stranded on the flat far side (reviewer: still 0.045 at 1000)


def test_steepest_slope_geometric_polynomial_or_bounded():
    """Section 2 (and the corrected claim of section 1 about 1 < w < 4/3)."""
    s = {w: [steepest_slope(w, T) for T in cl.STEEPEST_TS] for w in cl.STEEPEST_WS}
    np.testing.assert_allclose(s[0.9], [5.31, 6.76, 7.34], rtol=5e-3)      # bounded
    np.testing.assert_allclose(s[1.2], [18.7, 71.4, 355], rtol=5e-3)       # polynomial
    assert 4.5 <= s[1.2][2] / s[1.2][1] <= 6 and 3.5 <= s[1.2][1] / s[1.2][0] <= 6
    np.testing.assert_allclose(s[2.0], [287, 1.92e4, 6.42e7], rtol=5e-3)   # geometric
    assert s[2.0][2] / s[2.0][1] > 1000
    # at T = 20 the steepest point at w = 2 is on the wall of section 6.2, a little steeper
    # than where h_T crosses 0 (1.92e4 against 1.08e4)
    assert wall_slopes([20])[0] < s[2.0][1] < 2 * wall_slopes([20])[0]
    assert steepest_slope(0.9, 80) < 8                                      # still bounded


# ------------------------------------------------------------------ the RNN (section 8)
def test_clip_gradient_is_global_norm_clipping_on_the_rnn():
    check = cl.clip_check_on_rnn()
    assert check["grad_norm"] == pytest.approx(2.68, rel=5e-3)
    assert check["clipped_norm"] == pytest.approx(1.0, rel=1e-5)
    assert check["max_abs_diff"] < 1e-12 and check["angle"] < 1e-4
    text = stored_text("06_cliffs", "clip_check_on_rnn(")
    assert "agrees to 1e-12: True" in text and "(angle < 1e-4 degrees): True" in text


def test_train_rnn_clipped_records_and_bounds_the_step():
    r = cl.train_rnn_clipped(cl.RNN_LRS[0], 0, max_norm=0.05, steps=20)
    assert r["grad_norm"].shape == r["loss"].shape == (20,)
    assert 0.3 < r["test_loss"] < 1.0 and 0 <= r["test_accuracy"] <= 1
    with pytest.raises(ValueError, match="Invalid max_norm"):
        cl.train_rnn_clipped(0.1, 0, max_norm=0.0)


def test_rnn_clipping_stored_numbers():
    """Section 8, on the stored output (nbval re-runs the 25 trainings, ~25 s).  The unclipped
    runs at eps = 0.1 are chaotic: under ATEN_CPU_CAPABILITY=default one more seed fails (learned
    3 of 5, 6 loss jumps, worst 0.78) than natively and under avx2 (4 of 5, 4 jumps, worst 0.70),
    so the notebook prints only what holds under all three; the clipped rows were identical."""
    text = stored_text("06_cliffs", "rnn_clipping_summary(")
    lines = [ln for ln in text.splitlines() if ln.startswith("eps")]
    assert len(lines) == 5
    plain1, clip1, tiny1, plain2, clip2 = lines
    for ln in (plain1, plain2):
        assert ln.endswith("largest ||g|| > 0.78: True, loss jumps > 1: " + ("True" if ln is plain1 else "False")
                           + ", every seed learned: False, worst test loss < 0.1: False")
    for ln in (clip1, clip2):
        assert ln.endswith("loss jumps > 1: False, every seed learned: True, worst test loss < 0.1: True")
    assert "every seed learned: False" in tiny1 and "loss jumps > 1: False" in tiny1


# ------------------------------------------------------------------ clear errors
@pytest.mark.parametrize("call, name", [
    (lambda: RNNCliff(0), "time_steps"),
    (lambda: RNNCliff(2.5), "time_steps"),
    (lambda: RNNCliff(10, h0=1.0), "h0"),
    (lambda: RNNCliff(10, target=-1.5), "target"),
    (lambda: J.wall_b(0.0), "w"),
    (lambda: wall_slopes([]), "time_steps"),
    (lambda: wall_slopes([5, 0]), "time_steps"),
    (lambda: clip_gradient([1.0, 2.0]), "max_norm"),
    (lambda: clip_gradient([1.0, 2.0], max_norm=1.0, max_value=1.0), "max_norm"),
    (lambda: clip_gradient([1.0, 2.0], max_norm=-1.0), "max_norm"),
    (lambda: clip_gradient([1.0, 2.0], max_value=0.0), "max_value"),
    (lambda: angle_between([0.0, 0.0], [1.0, 0.0]), "u"),
    (lambda: angle_between([1.0, 0.0], [0.0, 0.0]), "v"),
    (lambda: single_step(J, cl.START, lr=0.0), "lr"),
    (lambda: compare_clipping(J, cl.START, 0.1, 0), "steps"),
    (lambda: compare_clipping(J, cl.START, 0.1, 5, max_norm=0.0), "max_norm"),
    (lambda: catapult_census(J, [], [0.1], 5, 1.0), "starts"),
    (lambda: catapult_census(J, [cl.START], [-0.1], 5, 1.0), "lrs"),
    (lambda: threshold_sweep(J, cl.START, 0.1, 5, [1.0, -1.0]), "thresholds"),
    (lambda: growth_factor([1, 2], [1.0, -1.0]), "values"),
    (lambda: steepest_slope(1.0, 0), "time_steps"),
    (lambda: cl.train_rnn_clipped(-0.1, 0), "lr"),
    (lambda: cl.rnn_clipping_experiment(lrs=[]), "lrs"),
])
def test_invalid_arguments_are_named(call, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        call()


def test_the_widget_hint_a_learning_rate_that_crosses_unharmed():
    """Section 9: from the chapter's start, ε = 10^-0.5 ≈ 0.32 (a slider position) crosses the
    wall without a catapult, with or without clipping."""
    for traj in compare_clipping(J, cl.START, 10**-0.5, cl.STEPS, max_norm=cl.MAX_NORM).values():
        assert step_lengths(traj).max() < 0.2 and traj.losses[-1] < 1e-3


def test_rnn_clipping_ranking_depends_on_the_seeds():
    """Section 8's caveat (review rerun of rnn_clipping_experiment(seeds=range(5, 10)), ~4 min:
    at eps = 0.1 every unclipped run learned, clipped at c = 0.0148 seed 6 stayed at chance,
    acc 0.504).  Here, cheaply: c from the first 100 steps of seeds 5-9 is about five times
    smaller than the chapter's (0.0148 vs 0.078; 0.014834 under default kernels), and seed 6
    learns unclipped but not clipped at that c.  Also rerun for the prose: steps=900 (seeds 0-4:
    every run learns either way, unclipped 4 loss jumps, clipped 0) and lag=30 (learned 2/5
    unclipped, 3/5 clipped; 3 vs 0 loss jumps)."""
    c = float(np.median([cl.train_rnn_clipped(cl.RNN_LRS[0], s, steps=cl.RNN_TYPICAL_STEPS)["grad_norm"]
                         for s in range(5, 10)]))
    assert c == pytest.approx(0.0148, rel=0.01)
    text = stored_text("06_cliffs", "rnn_clipping_summary(")
    assert "(c = 0.078)" in text  # the chapter's c at eps = 0.1, seeds 0-4
    plain = cl.train_rnn_clipped(cl.RNN_LRS[0], 6)
    clipped = cl.train_rnn_clipped(cl.RNN_LRS[0], 6, max_norm=c)
    assert plain["test_accuracy"] > cl.RNN_LEARNED and clipped["test_accuracy"] < 0.6
