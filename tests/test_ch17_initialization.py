"""Chapter 17 (initialization): course_lib.experiments.initialization against closed forms and
torch, and every number and claim of chapters/17_initialization.ipynb, measured by the same
calls with the same (default) arguments (shared with the notebook through shared_result) or read
from its stored output (stored.py; nbval re-executes the notebook in the same suite)."""
import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.experiments import initialization as init
from course_lib.experiments.schedules import chapter_model, he_normal_
from course_lib.models import mlp, small_cnn
from stored import stored_numbers, stored_text

CH = "17_initialization"


def printed(marker: str) -> str:
    """The stored text of the cell with ``marker``, without the figures' "<Figure …>" reprs."""
    return re.sub(r"<Figure [^>]*>", "", stored_text(CH, marker))


# ---------------------------------------------------------------------------------------------
# the initializations are torch.nn.init's, with the σ_w² the chapter states

@pytest.mark.parametrize("scheme", ["default", "lecun", "xavier", "he", "orthogonal", "gaussian"])
def test_sigma_w2_matches_the_drawn_weights(scheme):
    layer = nn.Linear(400, 400, dtype=torch.float64)
    init.init_(nn.Sequential(layer), scheme, gain=1.3, generator=torch.Generator().manual_seed(0))
    measured = 400 * float(layer.weight.detach().var())
    # 160 000 draws: the relative sampling error of a variance is √(2/160 000) ≈ 0.4 %
    assert measured == pytest.approx(init.sigma_w2(scheme, 400, 400, gain=1.3), rel=0.02)
    b = layer.bias.detach()
    bias = float(b.var()) if scheme == "default" else float(b.abs().max())
    assert bias == pytest.approx(init.sigma_b2(scheme, 400), rel=0.3, abs=1e-15)


def test_init_is_torch_nn_init_draw_for_draw():
    def draw(fn, **kw):
        w = torch.empty(30, 20)
        return fn(w, generator=torch.Generator().manual_seed(5), **kw)

    cases = {"lecun": draw(nn.init.kaiming_normal_, nonlinearity="linear"),
             "xavier": draw(nn.init.xavier_normal_),
             "he": draw(nn.init.kaiming_normal_, nonlinearity="relu"),
             "orthogonal": draw(nn.init.orthogonal_, gain=2.0)}
    for scheme, expected in cases.items():
        layer = nn.Linear(20, 30)
        init.init_(nn.Sequential(layer), scheme, gain=2.0, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(layer.weight, expected, rtol=0, atol=0)
        assert not layer.bias.any()


def test_default_with_a_generator_is_nn_linears_default():
    torch.manual_seed(3)
    reference = nn.Linear(20, 30)
    layer = nn.Linear(20, 30)
    torch.manual_seed(3)
    init.init_(nn.Sequential(layer), "default")  # no generator: reset_parameters, the global RNG
    torch.testing.assert_close(layer.weight, reference.weight, rtol=0, atol=0)
    torch.testing.assert_close(layer.bias, reference.bias, rtol=0, atol=0)
    # with a generator: kaiming_uniform_(a=√5) is U(±1/√n_in), the draws of course_lib.models
    a = mlp(20, (), 30, generator=torch.Generator().manual_seed(1))[0]
    b = init.init_(mlp(20, (), 30), "default", generator=torch.Generator().manual_seed(1))[0]
    torch.testing.assert_close(a.weight, b.weight)
    torch.testing.assert_close(a.bias, b.bias)


def test_he_equals_schedules_he_normal():
    """One concept, one home: chapter 13's he_normal_ is initialize_(…, "he")."""
    a = he_normal_(mlp(40, (32, 32), 10), torch.Generator().manual_seed(2))
    b = init.initialize_(mlp(40, (32, 32), 10), "he", generator=torch.Generator().manual_seed(2))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert init.init_ is init.initialize_  # the earlier name stays importable


def test_chapter_13_he_model_unchanged():
    """he_normal_ now calls torch's kaiming_normal_: chapter 13's CNN gets the same draws, bit for
    bit, as its earlier N(0, 2/fan_in) (fan_in 5, 80, 320 for its Conv1d and Linear layers)."""
    for seed in (0, 1, 2):
        model = chapter_model(seed, "he")
        gen = torch.Generator().manual_seed(seed)
        ref = small_cnn(generator=gen)
        with torch.no_grad():
            for layer in ref.modules():
                if isinstance(layer, (nn.Linear, nn.Conv1d)):
                    layer.weight.normal_(0.0, math.sqrt(2.0 / layer.weight[0].numel()), generator=gen)
                    layer.bias.zero_()
        for p, q in zip(model.parameters(), ref.parameters()):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_initialize_conv1d():
    conv = nn.Conv1d(20, 30, 5, dtype=torch.float64)
    init.initialize_(conv, "gaussian", gain=1.5, generator=torch.Generator().manual_seed(0))
    assert 100 * float(conv.weight.detach().var()) == pytest.approx(1.5 ** 2, rel=0.05)  # 3000 draws: ±3 %
    assert not conv.bias.any()


def test_orthogonal_square_weights_preserve_norms():
    net = init.deep_mlp("linear", "orthogonal", depth=10, width=20)
    x = torch.randn(5, 20, dtype=torch.float64)
    torch.testing.assert_close(net(x).norm(dim=1), x.norm(dim=1), rtol=1e-12, atol=0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="scheme"):
        init.sigma_w2("glorot", 3, 3)
    with pytest.raises(ValueError, match="activation"):
        init.deep_mlp("gelu", "he")
    with pytest.raises(ValueError, match="depth"):
        init.deep_mlp("relu", "he", depth=1)


# ---------------------------------------------------------------------------------------------
# the mean-field recursion against closed forms

def test_closed_forms_linear_and_relu():
    for s2 in (0.5, 1.0, 2.0, 3.0):
        assert init.per_layer_factors(init.predicted_profile("linear", s2)) == pytest.approx((s2, s2), rel=1e-12)
        assert init.per_layer_factors(init.predicted_profile("relu", s2)) == pytest.approx((s2 / 2, s2 / 2), rel=1e-12)


def test_gauss_hermite_against_closed_forms_and_monte_carlo():
    # E[relu(z)²] = q/2 by quadrature too (a kink: 101 nodes still give 3 digits)
    assert init._expect(lambda z: np.maximum(z, 0) ** 2, 2.0) == pytest.approx(1.0, rel=1e-3)
    # E[z²] = q, E[z⁴] = 3q² exactly (polynomials)
    assert init._expect(lambda z: z ** 4, 0.7) == pytest.approx(3 * 0.49, rel=1e-12)
    z = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mc = float(torch.tanh(z * math.sqrt(0.8)).pow(2).mean())
    assert init.variance_map("tanh", 0.8, 1.0) == pytest.approx(mc, abs=2e-3)  # MC error ≈ 3e-4


def test_tanh_fixed_point_and_chi():
    assert init.fixed_point_q(1.0) == 0.0 and init.fixed_point_q(0.9) == 0.0
    for g in (1.05, 1.3, 5 / 3):
        q = init.fixed_point_q(g)
        assert init.variance_map("tanh", q, g * g) == pytest.approx(q, rel=1e-10)
    # small q*: q* ≈ (1 − 1/σ_w²)/2 from tanh² ≈ z² − 2z⁴/3·…; χ(q*) → 1 as σ_w → 1⁺
    assert init.fixed_point_q(1.01) == pytest.approx((1 - 1 / 1.01 ** 2) / 2, rel=0.05)
    assert init.chi("tanh", 1.01, init.fixed_point_q(1.01)) == pytest.approx(1.0, abs=1e-3)


def test_bias_floor_prediction():
    """ReLU, σ_w² = 1/3, σ_b² = 1/(3n): q settles at σ_b²/(1 − σ_w²/2) = 1.2 σ_b²."""
    p = init.predicted_profile("relu", 1 / 3, depth=200, s_b2=1 / 300)
    assert p.forward[-1] == pytest.approx(1.2 / 300, rel=1e-9)


# ---------------------------------------------------------------------------------------------
# the Jacobian

def test_jacobian_against_torch_func():
    for act in init.ACTIVATIONS:
        net = init.deep_mlp(act, "gaussian", 1.2, depth=6, width=7, seed=1)
        x = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(init.jacobian(net, x), torch.func.jacrev(net)(x), rtol=1e-12, atol=1e-14)


def test_spread_and_fmt():
    assert init.spread(np.array([4.0, 1.0, 0.6, 0.1])) == (4.0, 0.8, 0.5)
    assert init.fmt_sv(3e-16) == "0" and init.fmt_sv(2.83e-8) == "2.8e-08" and init.fmt_sv(1.0) == "1"


# ---------------------------------------------------------------------------------------------
# section 17.1: the printed per-layer factors (profiles, shared with the notebook)

def test_section_1_profiles():
    prof = init.profiles("relu")
    text = printed("init.profiles(")
    for scheme, (meas, pred) in prof.items():
        measured = np.median([init.per_layer_factors(m) for m in meas], axis=0)
        line = [ln for ln in text.splitlines() if ln.startswith(scheme)][0]
        assert f"measured {measured[0]:.3g};" in line and f"measured {measured[1]:.3g}" in line
        # measured within 3 % of predicted (seeds scatter ±4 % at width 100; the medians: ≤ 2 %)
        np.testing.assert_allclose(measured, init.per_layer_factors(pred), rtol=0.03)
    assert init.per_layer_factors(prof["lecun"][1]) == pytest.approx((0.5, 0.5))
    assert init.per_layer_factors(prof["he"][1]) == pytest.approx((1.0, 1.0))
    assert init.per_layer_factors(prof["default"][1])[1] == pytest.approx(1 / 6)
    # the curves over 50 layers span up to 38 orders of magnitude (default backward: 6^-49 ≈ 7e-39;
    # lecun forward: 2^-49 ≈ 1.8e-15)
    lecun = prof["lecun"][0][0]
    assert 1e-17 < lecun.forward[-1] / lecun.forward[0] < 1e-13
    for m in prof["default"][0]:  # seeds: 7e-40, 4e-39, 2.5e-38
        assert 1e-41 < m.backward[0] / m.backward[-1] < 1e-36
    # the default's forward level is the bias floor: the prediction with σ_b² agrees per layer
    default_meas, default_pred = prof["default"]
    # (one layer's level scatters by ~15 %: only n = 100 biases; its mean over layers 11-50 by ~3 %)
    level = np.median([m.forward[10:].mean() for m in default_meas])
    assert level == pytest.approx(default_pred.forward[10:].mean(), rel=0.06)


# ---------------------------------------------------------------------------------------------
# section 17.2: the table

def test_section_2_table():
    rows = init.factor_table()
    assert init.format_table(rows) + "\n" == stored_text(CH, "init.factor_table(")
    by = {(r.activation, r.scheme): r for r in rows}
    for r in rows:
        # every row within 3 % of the prediction (largest: ReLU orthogonal forward, 3.0 %)
        np.testing.assert_allclose(r.median, r.predicted, rtol=0.031)
    # orthogonal + linear: exactly 1; the Gaussian rows scatter ~1 % from seed to seed
    np.testing.assert_allclose(by["linear", "orthogonal"].measured, 1.0, rtol=1e-10)
    assert 0.003 < np.ptp(by["linear", "lecun"].measured[:, 0]) < 0.03
    # Glorot = LeCun for square layers, draw for draw
    np.testing.assert_array_equal(by["relu", "xavier"].measured, by["relu", "lecun"].measured)
    # only He is stable for ReLU
    for scheme in ("default", "lecun", "xavier", "orthogonal"):
        assert by["relu", scheme].predicted[1] <= 0.5
    # tanh: σ_w² = 1 shrinks by about 9 % per layer; He: forward ≈ 0.98, backward > 1 (chaotic)
    assert 0.08 < 1 - by["tanh", "lecun"].median[0] < 0.1
    assert 0.97 < by["tanh", "he"].median[0] < 0.99 and by["tanh", "he"].median[1] > 1.05
    # the default: backward 1/6 (ReLU), ≈ 1/3 (linear, tanh); forward ≈ 0.91, the bias floor
    assert by["relu", "default"].predicted[1] == pytest.approx(1 / 6)
    for act in init.ACTIVATIONS:
        assert 0.9 < by[act, "default"].median[0] < 0.92
    # every ReLU row's forward factor lies below its prediction (finite width: at width 100 He's
    # median over 9 seeds is 0.966 forward, at width 300 0.996; the prose's Jensen argument)
    for scheme in init.TABLE_SCHEMES:
        assert by["relu", scheme].median[0] < by["relu", scheme].predicted[0]
    # the ReLU rows' seeds scatter by up to ±4 %
    assert np.ptp(by["relu", "he"].measured[:, 0]) < 0.09


# ---------------------------------------------------------------------------------------------
# section 17.3: dynamical isometry

def _med(iso, case):
    return np.median([init.spread(s) for s in iso[case]], axis=0)


def test_section_3_isometry():
    iso = init.isometry()
    assert init.format_isometry(iso) + "\n" == printed("init.isometry(")
    lin_o = _med(iso, ("linear", "orthogonal", 1.0))
    np.testing.assert_allclose(lin_o, (1.0, 1.0, 1.0), rtol=1e-10)
    lin_g = _med(iso, ("linear", "gaussian", 1.0))
    # a few directions amplified several times, the median shrunk by ~1e-7, a few % near 1
    assert 3 < lin_g[0] < 20 and 1e-9 < lin_g[1] < 1e-6 and lin_g[2] < 0.1
    tanh_o, tanh_g = _med(iso, ("tanh", "orthogonal", 1.05)), _med(iso, ("tanh", "gaussian", 1.05))
    assert tanh_o[2] > 0.7 and tanh_g[2] < 0.1 and tanh_g[1] < 1e-6
    for scheme in ("gaussian", "orthogonal"):
        relu = _med(iso, ("relu", scheme, math.sqrt(2)))
        assert relu[1] < 1e-12 and relu[2] < 0.1  # median singular value numerically 0


def test_section_3_tanh_gain_sweep():
    iso = init.isometry()
    text = stored_text(CH, "for gain in init.TANH_GAINS")
    fracs, medians = [], []
    for gain in init.TANH_GAINS:
        q = init.fixed_point_q(gain)
        smax, smed, frac = _med(iso, ("tanh", "orthogonal", gain))
        assert (f"σ_w = {gain:.3g}: q* = {q:.2g}, χ(q*) = {init.chi('tanh', gain, q):.3g};  s_max "
                f"{init.fmt_sv(smax)}, median s {init.fmt_sv(smed)}, in [1/2, 2]: {frac:.2f}") in text
        fracs.append(frac)
        medians.append(smed)
        assert init.chi("tanh", gain, q) >= 1.0  # slightly above 1 for every gain > 1
    # the closer σ_w is to 1, the nearer isometry; 5/3: far from it, χ = 1.2
    assert all(a > b for a, b in zip(fracs, fracs[1:]))
    assert fracs[0] > 0.95 and fracs[-1] < 0.1
    assert init.chi("tanh", 5 / 3, init.fixed_point_q(5 / 3)) == pytest.approx(1.21, abs=0.01)
    # torch's 5/3 keeps about unit variance (q* ≈ 1.2), the prose's "forward criterion"
    assert 1.1 < init.fixed_point_q(5 / 3) < 1.3


# ---------------------------------------------------------------------------------------------
# section 17.4: the 50-layer network

def test_section_4_model_and_budget():
    model = init.net_model("he")
    assert sum(p.numel() for p in model.parameters()) == 52330
    assert sum(isinstance(m, nn.Linear) for m in model) == 50
    steps_per_epoch = math.ceil(int(0.8 * init.NET_SAMPLES) / init.NET_BATCH)
    assert steps_per_epoch * init.NET_EPOCHS == 78


def test_section_4_trains_by_init_alone():
    """Only claims that survive the kernel sets: the losses move by up to 0.05 between
    ATEN_CPU_CAPABILITY=default and native (measured), so margins here are >= 0.05 (or 0.02 for
    the seeds' count, whose largest loss was 2.23 native and 2.20 under default, vs 2.28)."""
    failing = stored_text(CH, 'inits=("default", "too large")')
    working = stored_text(CH, 'inits=("he", "orthogonal")')
    assert "too large: diverged at every ε and seed" in failing
    assert "default: at chance (final loss within 0.01 of ln 10) at every ε and seed" in failing
    for name in ("he", "orthogonal"):
        assert (f"{name}: at ε = 0.01, 3 of 3 seeds end more than 0.02 below ln 10; at the grid's "
                "ends, ε = 0.001 and 0.03, the median ends within 0.05 of ln 10") in working
    # the same result (shared with the notebook in the suite), medians at ε = 0.001, 0.003, 0.01,
    # 0.03.  He: native 2.296, 2.24, 2.08, 2.30; default kernels 2.296, 2.25, 2.04, 2.30: the
    # best ε is 0.01, inside the grid by a clear margin.  Orthogonal: native 2.279, 2.24, 2.08,
    # 2.30; default 2.282, 2.16, 2.13, 2.28: 0.003 or 0.01 (not settled), inside the grid.
    res = init.net_experiment(inits=("he", "orthogonal"), lrs=init.WORKING_LRS)
    he = np.median(res["he"], axis=1)
    assert int(np.argmin(he)) == 2
    assert he[1] - he[2] > 0.05 and he[3] - he[2] > 0.1 and he[0] - he[2] > 0.1
    orth = np.median(res["orthogonal"], axis=1)
    assert min(orth[1:3]) < min(orth[0], orth[3]) - 0.1
    # the seeds scatter more than the two inits differ at ε = 0.01 (native: ptp 0.06 and 0.29,
    # medians 2.08 and 2.08; default kernels: ptp 0.02 and 0.29, medians 2.04 and 2.13): no ranking
    spread = max(np.ptp(res["he"][2]), np.ptp(res["orthogonal"][2]))
    assert spread > abs(np.median(res["he"][2]) - np.median(res["orthogonal"][2])) and spread > 0.2


def test_net_summary_logic():
    res = {"a": np.array([[2.0, 2.2, 2.1], [1.0, 1.1, 0.9], [math.inf, 2.3, math.inf]])}
    s = init.net_summary(res, lrs=(0.1, 0.2, 0.3))["a"]
    assert s.best_lr == 0.2 and s.best_index == 1
    np.testing.assert_array_equal(s.medians, [2.1, 1.0, math.inf])


# ---------------------------------------------------------------------------------------------
# the widget and the exercise's measurement

def test_widget_function_draws_and_matches_the_prediction():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    meas = init.plot_explorer("linear", 1.0, 20, "orthogonal")
    plt.close("all")
    np.testing.assert_allclose(meas.forward, meas.forward[0], rtol=1e-10)  # exactly flat


def test_exercise_3_width_dependence():
    """The solutions' predict-then-measure cell: narrow He-ReLU nets shrink (medians 0.83,
    0.92, 0.97 at n = 10, 30, 100 over 5 seeds); printed with 2 digits."""
    med, ranges = [], []
    for n in (10, 30, 100):
        f = [init.per_layer_factors(init.measure_profile(init.deep_mlp("relu", "he", width=n, seed=s), seed=s))[0]
             for s in range(5)]
        med.append(np.median(f))
        ranges.append(f"{min(f):.2f} to {max(f):.2f}")
    assert med[0] < med[1] < med[2] < 1
    np.testing.assert_allclose(med, [0.83, 0.92, 0.97], atol=0.006)  # float64: kernel spread ~1e-14
    assert ranges == ["0.59 to 0.95", "0.88 to 1.02", "0.95 to 1.02"]  # as the model answer says


def test_default_stays_at_chance_with_more_updates():
    """The prose: the default's failure does not depend on the budget.  With 24 epochs (312
    updates) instead of 6 it still ends within 0.01 of ln 10 (measured at ε = 0.01, 0.03, 0.1,
    seeds 0-2, native and default kernels: 2.3024-2.3028).  Here, within the test budget, one
    run with twice the updates at the largest ε (~2.5 s CPU)."""
    loss = init.net_run("default", 0.1, seed=1, epochs=2 * init.NET_EPOCHS)
    assert abs(loss - math.log(10)) < init.AT_CHANCE
