"""Chapter 7 (long-term dependencies): every number the notebook prints, and course_lib.experiments.long_term
against references (matrix powers, hand-written BPTT, closed forms of χ² statistics)."""
import math

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_lib import long_term as lt  # noqa: E402
from course_lib.models import VanillaRNN  # noqa: E402

EULER_GAMMA = 0.5772156649015329


# ------------------------------------------------------------------------------------------
# The chapter's numbers (same functions, same arguments as the notebook)
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rnn_runs():
    return lt.rnn_gradient_rates(lt.RADII)


@pytest.fixture(scope="module")
def depth_cmp():
    return lt.compare_shared_independent()


def test_chapter_matrix_powers():
    W, V = lt.matrix_with_eigenvalues(lt.EIGENVALUES, seed=lt.EIGEN_SEED)
    eig = sorted(np.linalg.eigvals(W.numpy()).real, key=abs, reverse=True)
    np.testing.assert_allclose(eig, lt.EIGENVALUES, atol=1e-10)
    assert torch.allclose(lt.eigen_power(V, lt.EIGENVALUES, 30), torch.linalg.matrix_power(W, 30),
                          rtol=1e-9, atol=0)
    # growth factor along each eigenvector = |λ| (notebook: 1.1, 1, 0.8)
    factors = np.exp(lt.log_slope(lt.power_norms(W, V.T, lt.POWER_STEPS)))
    np.testing.assert_allclose(factors, np.abs(lt.EIGENVALUES), rtol=1e-8)
    # a generic vector ends up growing with the largest |λ| (notebook: 1.1, measured 1.0998)
    generic = lt.power_norms(W, torch.ones(3), lt.POWER_STEPS)
    assert abs(math.exp(lt.log_slope(generic, start=20)) - 1.1) < 1e-3


def test_chapter_forgetting_angles():
    W2, V2 = lt.matrix_with_eigenvalues(lt.EIGENVALUES_2D, seed=lt.EIGEN_SEED_2D)
    phi = torch.linspace(0, 2 * math.pi, 201, dtype=torch.float64)
    circle = torch.stack([phi.cos(), phi.sin()], dim=1)
    images = lt.power_iterates(W2, circle, 30)
    med = [np.median(lt.angle_to_direction(images[t], V2[:, 0])) for t in (0, 10, 30)]
    assert abs(med[0] - 44.9) < 0.5      # notebook: 44.9° (points spread around the circle)
    assert 0.05 < med[1] < 0.2           # notebook: 0.117°
    assert med[2] < 1e-4                 # notebook: 0°
    # the rate of alignment is (λ2/λ1)^t: the angle shrinks by about 0.6/1.1 per step
    ratio = np.median(lt.angle_to_direction(images[11], V2[:, 0])) / med[1]
    assert abs(ratio - 0.6 / 1.1) < 0.02


def test_chapter_linear_rnn_rate_is_log_radius(rnn_runs):
    for radius in lt.RADII:  # notebook: -0.105, 0, 0.0953
        assert abs(rnn_runs[radius, "linear"].rate - math.log(radius)) < 1e-4


def test_chapter_tanh_rnn_rates_and_saturation(rnn_runs):
    expected = {0.9: (-0.152, 0.952), 1.0: (-0.0657, 0.943), 1.1: (-0.0502, 0.913)}
    for radius, (rate, s) in expected.items():
        run = rnn_runs[radius, "tanh"]
        assert abs(run.rate - rate) < 0.005, (radius, run.rate)
        assert abs(run.mean_derivative - s) < 0.005, (radius, run.mean_derivative)
        assert run.rate < math.log(radius) - 0.04  # saturation: below the linear rate
        assert run.rate < 0  # in these networks the gradient vanishes for all three radii
    s = [rnn_runs[radius, "tanh"].mean_derivative for radius in lt.RADII]
    assert s[0] > s[1] > s[2]  # a larger W saturates more


def test_chapter_autograd_equals_matrix_power(rnn_runs):
    rnn, _ = lt.make_rnn(1.1)
    by_hand = (torch.linalg.matrix_power(rnn.W.detach().T, lt.T_MAX) @ rnn.V.detach().T).norm()
    np.testing.assert_allclose(rnn_runs[1.1, "linear"].norms[-1], by_hand.item(), rtol=1e-10)
    assert abs(0.9 ** 60 - 0.0018) < 1e-4 and abs(1.1 ** 60 - 304) < 1


def test_chapter_independent_layers_are_a_random_walk(depth_cmp):
    m, sd = lt.log_norm_step_stats(depth_cmp.width)
    assert abs(m - (-0.0158)) < 1e-4 and abs(sd - 0.127) < 1e-3  # theory as printed
    steps = np.diff(depth_cmp.independent, axis=1) * math.log(10)
    se = sd / math.sqrt(steps.size)
    assert abs(steps.mean() - m) < 4 * se          # notebook: -0.016 vs -0.0158
    assert abs(steps.std() / sd - 1) < 0.03        # notebook: 0.128 vs 0.127
    d = depth_cmp.depths[-1]
    mean_d, sd_d = d * m / math.log(10), math.sqrt(d) * sd / math.log(10)  # -0.439, 0.441
    assert abs(depth_cmp.mean("independent")[-1] - mean_d) < 0.1      # notebook: -0.445
    assert abs(depth_cmp.std("independent")[-1] / sd_d - 1) < 0.15    # notebook: 0.443
    assert 0.4 < depth_cmp.spread_exponent("independent") < 0.6      # notebook: 0.469
    assert depth_cmp.fraction_within("independent") > 0.85           # notebook: 90%


def test_chapter_shared_matrix_fans_out(depth_cmp):
    assert abs(depth_cmp.mean("shared")[-1] - 1.16) < 0.1            # notebook: 1.16
    assert abs(depth_cmp.std("shared")[-1] - 2.02) < 0.15            # notebook: 2.02
    assert depth_cmp.std("shared")[-1] > 4 * depth_cmp.std("independent")[-1]
    assert 0.95 < depth_cmp.spread_exponent("shared") < 1.2          # notebook: 1.08
    assert depth_cmp.fraction_within("shared") < 0.5                 # notebook: 38%
    rates, log_radius = depth_cmp.rate_vs_radius()
    assert np.corrcoef(rates, log_radius)[0, 1] > 0.99                   # notebook: 0.995
    assert np.median(np.abs(rates - log_radius)) < 0.002                 # notebook: 0.0009
    assert abs(depth_cmp.shared_radius.mean() - 1.07) < 0.02             # notebook: 1.07
    assert depth_cmp.shared_radius.min() < 1 < depth_cmp.shared_radius.max()  # 0.897 … 1.36
    assert abs((depth_cmp.shared_radius > 1).mean() - 0.78) < 0.03        # notebook: 78%


# ------------------------------------------------------------------------------------------
# Matrix powers and fits against references
# ------------------------------------------------------------------------------------------
def test_matrix_with_eigenvalues_has_them():
    lam = (2.0, -0.5, 0.25, 1.0)
    W, V = lt.matrix_with_eigenvalues(lam, seed=4)
    assert torch.allclose(W @ V, V * torch.tensor(lam, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(V.norm(dim=0), torch.ones(4, dtype=torch.float64))
    assert not torch.allclose(W, W.T)  # non-symmetric in general
    W2, _ = lt.matrix_with_eigenvalues(lam, seed=4)
    assert torch.equal(W, W2)


@pytest.mark.parametrize("t", [0, 1, 7, 25])
def test_eigen_power_matches_matrix_power(t):
    lam = (1.3, 0.5, -0.9)
    W, V = lt.matrix_with_eigenvalues(lam, seed=2)
    assert torch.allclose(lt.eigen_power(V, lam, t), torch.linalg.matrix_power(W, t),
                          rtol=1e-9, atol=1e-9)


def test_power_iterates_and_norms_of_a_scaled_rotation():
    c, s = math.cos(0.3), math.sin(0.3)
    W = 0.9 * torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # normal: ‖W^t x‖ = 0.9^t‖x‖
    X = torch.tensor([[1.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    it = lt.power_iterates(W, X, 10)
    assert it.shape == (11, 2, 2)
    assert torch.allclose(it[10], X @ torch.linalg.matrix_power(W, 10).T)
    norms = lt.power_norms(W, X, 10)
    np.testing.assert_allclose(norms, 0.9 ** np.arange(11)[:, None] * np.array([1.0, 5.0]))
    assert lt.power_norms(W, X[0], 3).shape == (4,)


def test_log_slope_recovers_exponential_rates():
    t = np.arange(30)
    assert abs(lt.log_slope(2.0 * 1.05 ** t) - math.log(1.05)) < 1e-12
    both = np.stack([1.05 ** t, 0.5 * 0.8 ** t], axis=1)
    np.testing.assert_allclose(lt.log_slope(both), np.log([1.05, 0.8]), atol=1e-12)
    # `start` skips a transient; `t` gives the abscissae
    y = np.concatenate([[100.0, 50.0], 3.0 ** np.arange(2, 12)])
    assert abs(lt.log_slope(y, start=2) - math.log(3)) < 1e-12
    assert abs(lt.log_slope(2.0 ** t, t=2 * t) - math.log(2) / 2) < 1e-12


def test_angle_to_direction_known_angles():
    X = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0], [-3.0, 0.0]], dtype=torch.float64)
    np.testing.assert_allclose(lt.angle_to_direction(X, torch.tensor([2.0, 0.0])),
                               [0, 45, 90, 0], atol=1e-6)


def test_power_law_exponent():
    x = np.arange(1, 50)
    assert abs(lt.power_law_exponent(x, 3 * x ** 0.5) - 0.5) < 1e-12


# ------------------------------------------------------------------------------------------
# The RNN measurements against matrix powers and hand-written BPTT
# ------------------------------------------------------------------------------------------
def test_make_rnn_sets_the_radius_and_keeps_everything_else():
    a, xa = lt.make_rnn(0.9)
    b, xb = lt.make_rnn(1.1)
    assert abs(a.spectral_radius() - 0.9) < 1e-12 and abs(b.spectral_radius() - 1.1) < 1e-12
    assert torch.allclose(a.W * (1.1 / 0.9), b.W) and torch.equal(a.U, b.U)
    assert torch.equal(xa, xb) and xa.dtype == torch.float64
    assert xa.shape == (lt.RNN["batch"], lt.T_MAX, lt.RNN["input_size"])


def test_rnn_states_linear_and_tanh():
    rnn, x = lt.make_rnn(1.0, batch=3, steps=5)
    assert all(torch.equal(p, q) for p, q in zip(lt.rnn_states(rnn, x), rnn.states(x)))
    h = torch.zeros(3, 16, dtype=torch.float64)
    hs = lt.rnn_states(rnn, x, activation="linear")
    for t in range(5):
        h = h @ rnn.W.T + x[:, t] @ rnn.U.T + rnn.b
        assert torch.allclose(hs[t + 1], h)


def test_linear_gradient_norms_are_matrix_powers_for_every_T():
    rnn, x = lt.make_rnn(1.05, batch=2, steps=12, seed=7)
    norms = lt.state_gradient_norms(rnn, x, "linear")
    W, v = rnn.W.detach(), rnn.V.detach()[0]
    ref = [(torch.linalg.matrix_power(W.T, T) @ v).norm().item() for T in range(1, 13)]
    np.testing.assert_allclose(norms, np.array(ref)[:, None].repeat(2, axis=1), rtol=1e-12)


def test_tanh_gradient_norms_match_hand_written_bptt():
    rnn, x = lt.make_rnn(1.2, batch=2, steps=15, seed=1)
    norms = lt.state_gradient_norms(rnn, x, "tanh")
    hs = [h.detach() for h in rnn.states(x)]
    W, v = rnn.W.detach(), rnn.V.detach()[0]
    for T in (1, 6, 15):
        g = v.expand(2, -1)
        for t in range(T, 0, -1):
            g = ((1 - hs[t] ** 2) * g) @ W  # J_tᵀ g = Wᵀ diag(1 − h_t²) g, rows as examples
        np.testing.assert_allclose(norms[T - 1], g.norm(dim=1).numpy(), rtol=1e-12)


def test_orthogonal_recurrence_gives_exactly_log_radius():
    rnn, x = lt.make_rnn(1.0, batch=2, steps=30, seed=2)
    Q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        rnn.W.copy_(0.93 * Q)
    norms = lt.state_gradient_norms(rnn, x, "linear")
    np.testing.assert_allclose(lt.log_slope(norms), math.log(0.93), atol=1e-12)


def test_mean_tanh_derivative_by_hand():
    rnn, x = lt.make_rnn(1.1, batch=4, steps=30)
    hs = rnn.states(x)
    ref = torch.stack([1 - h ** 2 for h in hs[11:]]).mean().item()
    assert abs(lt.mean_tanh_derivative(rnn, x, start=10) - ref) < 1e-14
    assert 0 < ref < 1


def test_rnn_gradient_experiment_fields():
    r = lt.rnn_gradient_experiment(0.8, "linear", steps=30, fit_from=5)
    assert r.norms.shape == (30, lt.RNN["batch"]) and list(r.T) == list(range(1, 31))
    assert r.mean_derivative == 1.0 and abs(r.log_radius - math.log(0.8)) < 1e-15
    assert abs(r.rate - math.log(0.8)) < 5e-3


def test_draw_rnn_gradients_draws_both_and_titles_the_rates():
    runs = lt.draw_rnn_gradients(radius=2.0, T=20)
    fig = plt.gcf()
    title = fig.axes[0].get_title()
    assert [r.activation for r in runs] == ["linear", "tanh"]
    assert f"×{math.exp(runs[0].rate):.3g}" in title and "r(W) = 2" in title
    assert abs(runs[0].rate - math.log(2.0)) < 5e-3 and runs[1].rate < math.log(2.0)
    plt.close(fig)


# ------------------------------------------------------------------------------------------
# Deep feed-forward nets against closed forms
# ------------------------------------------------------------------------------------------
def test_log_norm_step_stats_closed_forms():
    m, sd = lt.log_norm_step_stats(2)  # χ²₂/2 ~ Exp(1): E ln = −γ, Var ln = π²/6
    assert abs(m + EULER_GAMMA / 2) < 1e-12
    assert abs(sd - math.pi / math.sqrt(6) / 2) < 1e-8  # torch's trigamma: ~1e-10 accurate
    m3, _ = lt.log_norm_step_stats(2, scale=3.0)
    assert abs(m3 - (m + math.log(3))) < 1e-12
    # Monte Carlo for n = 32
    rng = np.random.default_rng(0)
    samples = 0.5 * np.log(rng.chisquare(32, 200_000) / 32)
    m32, sd32 = lt.log_norm_step_stats(32)
    assert abs(samples.mean() - m32) < 4 * sd32 / math.sqrt(samples.size)
    assert abs(samples.std() / sd32 - 1) < 0.01


def test_backprop_norms_scalar_shared_network_is_a_power():
    logs, w = lt._backprop(width=1, depth=10, trials=5, shared=True, scale=1.0, seed=3)
    expected = np.arange(11)[None, :] * np.log10(np.abs(w.reshape(5, 1).numpy()))
    np.testing.assert_allclose(logs, expected, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_backprop_norms_scale_shifts_by_depth_times_log_scale(shared):
    a = lt.backprop_norms(width=8, depth=12, trials=6, shared=shared, scale=1.0, seed=5)
    b = lt.backprop_norms(width=8, depth=12, trials=6, shared=shared, scale=2.0, seed=5)
    assert a.shape == (6, 13) and np.allclose(a[:, 0], 0, atol=1e-12)  # log10 of a unit norm
    np.testing.assert_allclose(b - a, np.tile(np.arange(13) * math.log10(2), (6, 1)), atol=1e-10)


# ------------------------------------------------------------------------------------------
# Input validation: one clear message per argument
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda: lt.matrix_with_eigenvalues([]), "Invalid eigenvalues"),
    (lambda: lt.matrix_with_eigenvalues([1.0, float("nan")]), "Invalid eigenvalues"),
    (lambda: lt.matrix_with_eigenvalues([1.0], seed=-1), "Invalid seed"),
    (lambda: lt.eigen_power(torch.eye(2), [1.0, 2.0, 3.0], 2), "Invalid eigenvalues"),
    (lambda: lt.eigen_power(torch.eye(2), [1.0, 2.0], -1), "Invalid t"),
    (lambda: lt.power_iterates(torch.ones(2, 3), torch.ones(2), 3), "Invalid W"),
    (lambda: lt.power_iterates(torch.eye(2), torch.ones(3), 3), "Invalid x"),
    (lambda: lt.power_iterates(torch.eye(2), torch.ones(2), 2.5), "Invalid steps"),
    (lambda: lt.log_slope([1.0, -1.0, 2.0]), "Invalid values"),
    (lambda: lt.log_slope([1.0, 2.0, 3.0], start=2), "Invalid start"),
    (lambda: lt.log_slope([1.0, 2.0], t=[0.0]), "Invalid t"),
    (lambda: lt.angle_to_direction(torch.ones(3, 2), torch.ones(3)), "Invalid X, v"),
    (lambda: lt.make_rnn(0.0), "Invalid radius"),
    (lambda: lt.make_rnn(-1.0), "Invalid radius"),
    (lambda: lt.make_rnn(1.0, hidden_size=0), "Invalid hidden_size"),
    (lambda: lt.rnn_gradient_experiment(1.0, "relu"), "Invalid activation"),
    (lambda: lt.rnn_gradient_experiment(1.0, steps=10, fit_from=9), "Invalid fit_from"),
    (lambda: lt.state_gradient_norms(VanillaRNN(1, 4), torch.zeros(1, 3, 1)), "Invalid rnn"),
    (lambda: lt.state_gradient_norms(VanillaRNN(1, 4, 1), torch.zeros(1, 3, 2)), "Invalid x"),
    (lambda: lt.backprop_norms(width=0), "Invalid width"),
    (lambda: lt.backprop_norms(depth=0), "Invalid depth"),
    (lambda: lt.backprop_norms(scale=0.0), "Invalid scale"),
    (lambda: lt.log_norm_step_stats(32, scale=-1.0), "Invalid scale"),
    (lambda: lt.power_law_exponent([1.0, 2.0], [1.0]), "Invalid x, y"),
])
def test_invalid_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_depth_comparison_rejects_unknown_series():
    cmp = lt.compare_shared_independent(width=4, depth=3, trials=2)
    with pytest.raises(ValueError, match="Invalid which"):
        cmp.mean("recurrent")


# ------------------------------------------------------------------------------------------
# Section 7.4: learning across a lag (the latching task)
# ------------------------------------------------------------------------------------------
def test_latching_task():
    X, y = lt.latching_task(7, 50, seed=3)
    assert X.shape == (50, 7, 1) and X.dtype == torch.float64 and y.shape == (50,)
    assert torch.equal(X[:, 0, 0], 2.0 * y - 1)  # the label sits in the first input
    X2, y2 = lt.latching_task(7, 50, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    assert X[:, 1:].std().item() == pytest.approx(lt.LATCH["noise"], rel=0.2)
    with pytest.raises(ValueError, match="Invalid lag"):
        lt.latching_task(0, 5, 0)
    with pytest.raises(ValueError, match="Invalid noise"):
        lt.latching_task(3, 5, 0, noise=-1.0)


def test_latch_gradient_terms_by_hand():
    """∂L/∂h_t by autograd against a hand-written backward pass through the Jacobians."""
    gen = torch.Generator().manual_seed(0)
    rnn = VanillaRNN(1, 5, 2, generator=gen).double()
    X, y = lt.latching_task(6, 8, seed=1)
    states, terms = lt.latch_gradient_terms(rnn, X, y)
    hs = [h.detach() for h in rnn.states(X)]
    with torch.no_grad():
        p = torch.softmax(hs[-1] @ rnn.V.T + rnn.c, dim=1)
        g = (p - torch.nn.functional.one_hot(y, 2)) @ rnn.V / len(y)  # ∂L/∂h_T
        by_hand, u_terms = [], []
        for t in range(6, 0, -1):
            by_hand.append(g.norm().item())
            delta = (1 - hs[t] ** 2) * g
            u_terms.append((delta.T @ X[:, t - 1]).norm().item())
            g = delta @ rnn.W  # ∂L/∂h_{t-1}
    np.testing.assert_allclose(states, by_hand[::-1], rtol=1e-10)
    np.testing.assert_allclose(terms, u_terms[::-1], rtol=1e-10)


@pytest.fixture(scope="module")
def latch():
    return lt.latching_experiment()


def test_latching_numbers(latch):
    """Section 7.4: learned at lags 5 and 10 (all seeds), chance from 20 on (no seed above 0.6).
    Accuracies printed at 1 decimal; across kernel sets (native, default, avx2) the accuracies
    moved by at most 0.002 (measured when written)."""
    acc = latch.accuracy()
    assert latch.lags == (5, 10, 20, 50, 100)
    assert np.all(acc[:2] > 0.99)
    assert np.all(np.abs(acc[2:] - 0.5) < 0.05)  # chance: 0.47 … 0.53 measured
    assert list(latch.successes()) == [3, 3, 0, 0, 0]
    np.testing.assert_allclose(latch.median_accuracy()[:2], 1.0, atol=0.005)
    np.testing.assert_allclose(latch.median_accuracy()[2:], 0.5, atol=0.04)


def test_latching_gradient_ratios(latch):
    """The far-to-near ratios of the initial nets (1 significant digit in the notebook; no
    training involved, so they agree across kernel sets to ~1e-12 relative)."""
    h = latch.median_far_to_near("initial", 0)
    u = latch.median_far_to_near("initial", 1)
    np.testing.assert_allclose(h, [0.076, 2.3e-3, 7.07e-6, 3.16e-13, 1.95e-25], rtol=0.02)
    np.testing.assert_allclose(u, [2.76, 0.182, 1.56e-3, 9.24e-11, 2.26e-23], rtol=0.02)
    assert np.all(np.diff(np.log(h)) < 0) and np.all(np.diff(np.log(u)) < 0)
    # prose: "within a factor of 20 at lag 5", "1e-3 to 1e-5 at lag 20", "below 1e-20 at lag 100"
    assert h[0] > 1 / 20 and u[0] > 1 / 20
    assert 1e-6 < min(h[2], u[2]) and max(h[2], u[2]) < 1e-2
    assert max(h[-1], u[-1]) < 1e-20
    # right panel: ‖∂L/∂h_t‖ falls by more than a decade per 10 steps back at lag 100,
    # before and after training
    for r in latch.runs[-1]:
        for which in ("initial", "trained"):
            s = getattr(r, which)[0]
            assert math.log10(s[-1] / s[0]) / (len(s) - 1) * 10 > 1


def test_plot_latching(latch):
    ax, bx = lt.plot_latching(latch)
    assert ax.get_xscale() == "log" and bx.get_yscale() == "log"
    plt.close("all")


def test_plots_draw_what_they_are_given(depth_cmp):
    """The figures moved out of the notebook: one curve per eigenvector (+ the generic x), one
    curve per t of the unit circle's images (+ two eigenvector lines), one dot per shared net."""
    Wm, V = lt.matrix_with_eigenvalues(lt.EIGENVALUES, seed=lt.EIGEN_SEED)
    eig_norms = lt.power_norms(Wm, V.T, 10)
    ax = lt.plot_power_norms(eig_norms, lt.power_norms(Wm, torch.ones(3), 10))
    assert len(ax.lines) == 4 and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[0].get_ydata(), eig_norms[:, 0])
    W2, V2 = lt.matrix_with_eigenvalues(lt.EIGENVALUES_2D, seed=lt.EIGEN_SEED_2D)
    circle = torch.stack([torch.linspace(0, 6.3, 50, dtype=torch.float64).cos(),
                          torch.linspace(0, 6.3, 50, dtype=torch.float64).sin()], dim=1)
    ax = lt.plot_circle_images(lt.power_iterates(W2, circle, 10), V2)
    assert len(ax.lines) == 4 + 2
    ax = lt.plot_rate_vs_radius(depth_cmp)
    rates, log_radius = depth_cmp.rate_vs_radius()
    np.testing.assert_array_equal(ax.collections[0].get_offsets()[:, 1], rates)
    assert ax.get_xlabel() == "ln r(W) of the shared matrix"
    plt.close("all")
