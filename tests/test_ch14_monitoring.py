"""Chapter 14 (choosing and monitoring an optimizer): course_lib.experiments.monitoring against hand
computations, closed forms (the stability limit 2/λ_max of gradient descent on a quadratic,
SGD's first step ε‖g‖), constructed histories of each kind, then every number the chapter
notebook prints or states.

The chapter's experiments run here with the module constants the notebook uses
(``mon.SWEEP_LRS``, ``mon.RANGE_TEST``, ``mon.EXAMPLE_LRS``, ``mon.OVERFIT``, ...).
"""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pytest
import torch

from course_lib import monitoring as mon
from course_lib.optim import SGD, Adam
from course_lib.train import History, train

matplotlib.use("Agg")


# ======================================================================================
# Helpers: histories built by hand
# ======================================================================================
def make_history(losses, val=None, train_losses=None, stop_reason="completed", grad_norms=None):
    """A History with the given per-step losses (and per-epoch losses, if given)."""
    h = History()
    n = len(losses)
    grad_norms = [1.0] * n if grad_norms is None else grad_norms
    for t, (loss, g) in enumerate(zip(losses, grad_norms), 1):
        h._add(h.steps, step=t, epoch=1, loss=float(loss), grad_norm=float(g), lr=0.1)
    if val is not None:
        train_losses = val if train_losses is None else train_losses
        for e, (v, tl) in enumerate(zip(val, train_losses), 1):
            h._add(h.epochs, epoch=e, step=e, train_loss=float(tl), train_accuracy=math.nan,
                   val_loss=float(v), val_accuracy=math.nan)
    h.stop_reason = stop_reason
    return h


RNG = np.random.default_rng(0)
NOISE = 0.02 * RNG.standard_normal(200)


# ======================================================================================
# Unit tests of the library functions
# ======================================================================================
def test_make_optimizer_names_and_errors():
    p = [torch.nn.Parameter(torch.zeros(3))]
    adam = mon.make_optimizer("Adam", p, 1e-3)
    mom = mon.make_optimizer("Momentum", p, 0.1)
    sgd = mon.make_optimizer("SGD", p, 0.1)
    assert isinstance(adam, Adam) and adam.param_groups[0]["betas"] == (0.9, 0.999)
    assert isinstance(mom, SGD) and mom.param_groups[0]["momentum"] == 0.9
    assert isinstance(sgd, SGD) and sgd.param_groups[0]["momentum"] == 0.0
    with pytest.raises(ValueError, match="Invalid name"):
        mon.make_optimizer("Lion", p, 0.1)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="Invalid lr"):
            mon.make_optimizer("Adam", p, bad)


def test_make_model_is_reproducible_and_validated():
    a, b = mon.make_model(), mon.make_model()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = mon.make_model(seed=1)
    assert not torch.equal(next(a.parameters()), next(c.parameters()))
    assert sum(p.numel() for p in a.parameters()) == 40 * 64 + 64 + 3 * (64 * 64 + 64) + 64 * 10 + 10
    with pytest.raises(ValueError, match="Invalid seed"):
        mon.make_model(seed=-1)


def test_update_ratio_of_one_sgd_step_by_hand():
    """θ = (3, 4), ‖θ‖ = 5; J = g·θ with g = (1, 2): one SGD step moves θ by ε‖g‖ = ε√5."""
    for cls in (SGD, torch.optim.SGD):
        theta = torch.nn.Parameter(torch.tensor([3.0, 4.0], dtype=torch.float64))
        opt = cls([theta], lr=0.01)
        monitor = mon.UpdateRatioMonitor(opt)
        for _ in range(2):
            opt.zero_grad()
            (theta @ torch.tensor([1.0, 2.0], dtype=torch.float64)).backward()
            opt.step()
        assert len(monitor.ratios) == 2
        assert monitor.ratios[0] == pytest.approx(0.01 * math.sqrt(5) / 5, rel=1e-12)
        # second step: same Δθ, from θ₁ = θ₀ − ε g
        theta1 = torch.tensor([3.0, 4.0], dtype=torch.float64) - 0.01 * torch.tensor([1.0, 2.0], dtype=torch.float64)
        assert monitor.ratios[1] == pytest.approx(0.01 * math.sqrt(5) / float(theta1.norm()), rel=1e-12)
        monitor.remove()
        opt.step()  # no longer recorded
        assert len(monitor.ratios) == 2
    with pytest.raises(ValueError, match="Invalid optimizer"):
        mon.UpdateRatioMonitor("sgd")


def test_update_ratio_over_several_tensors_matches_flattened_norms():
    model = torch.nn.Linear(5, 3)
    opt = Adam(model.parameters(), lr=0.05)
    monitor = mon.UpdateRatioMonitor(opt)
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    model(torch.randn(8, 5, generator=torch.Generator().manual_seed(0))).pow(2).mean().backward()
    opt.step()
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert monitor.ratios[0] == pytest.approx(float((after - before).norm() / before.norm()), rel=1e-5)


def test_good_lr_band_by_hand():
    lrs = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    assert mon.good_lr_band(lrs, (2.3, 1.2, 1.0, 1.1, math.inf), 0.2) == (1e-2, 1e-1, 1.0)
    assert mon.good_lr_band(lrs, (2.3, 1.2, 1.0, 1.1, math.inf), 0.0) == (1e-1,)
    assert mon.good_lr_band(lrs, (2.3, 1.2, 1.0, 1.1, math.nan), 1.5) == (1e-3, 1e-2, 1e-1, 1.0)
    assert mon.good_lr_band(lrs, [math.inf] * 5) == ()
    with pytest.raises(ValueError, match="Invalid losses"):
        mon.good_lr_band(lrs, (1.0, 2.0))
    with pytest.raises(ValueError, match="Invalid tolerance"):
        mon.good_lr_band(lrs, (1.0,) * 5, -0.1)


def _least_squares(n=64, d=5, seed=0):
    """X with known singular values, y = X w* + noise; MSE cost, full batch."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, d, generator=g))
    X = Q * torch.tensor([8.0, 4.0, 2.0, 1.0, 0.5])  # orthogonal columns, scaled
    y = X @ torch.randn(d, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    # MSELoss (mean over n): J(w) = (1/n)‖Xw − y‖², H = (2/n) XᵀX
    lam_max = float(torch.linalg.eigvalsh(2 / n * X.T @ X).max())
    return X, y, lam_max


def _linear_factory(d=5):
    def factory():
        torch.manual_seed(0)
        return torch.nn.Linear(d, 1, bias=False)
    return factory


def test_range_test_stops_just_past_the_stability_limit_of_gradient_descent():
    """Full-batch GD on a quadratic: the loss cannot rise while ε < 2/λ_max (every mode
    contracts), and grows like |1 − ελ_max|^t once ε is past it."""
    X, y, lam_max = _least_squares()
    limit = 2 / lam_max
    rt = mon.lr_range_test(_linear_factory(), torch.nn.MSELoss(), lambda p, lr: torch.optim.SGD(p, lr=lr),
                           (X, y), lr_min=limit / 1000, lr_max=limit * 100, steps=300,
                           batch_size=len(X), smoothing=0.0, stop_factor=4.0)
    assert rt.diverged
    assert rt.lrs[-1] > limit  # it never stops before the limit ...
    # ... and soon after it: the top mode, shrunk to rounding level below the limit, must grow
    # back by |1 − ελ_max| > 1 per step before the loss shows it (here within a factor 4 of ε)
    assert rt.lrs[-1] < 4 * limit
    assert np.all(np.diff(rt.losses[rt.lrs < limit]) <= 1e-12)  # monotone below the limit
    assert rt.min_lr <= rt.lrs[-1] and rt.suggested_lr == pytest.approx(rt.min_lr / 10)


def test_range_test_schedule_and_smoothing():
    X, y, lam_max = _least_squares()
    kw = dict(lr_min=1e-4, lr_max=1e-2, steps=50, batch_size=16, stop_factor=1e9)
    rt = mon.lr_range_test(_linear_factory(), torch.nn.MSELoss(), lambda p, lr: SGD(p, lr=lr),
                           (X, y), smoothing=0.8, **kw)
    assert len(rt.lrs) == 50 and not rt.diverged
    np.testing.assert_allclose(rt.lrs, np.geomspace(1e-4, 1e-2, 50), rtol=1e-12)
    # bias-corrected moving average, written out
    avg, expected = 0.0, []
    for i, J in enumerate(rt.losses):
        avg = 0.8 * avg + 0.2 * J
        expected.append(avg / (1 - 0.8 ** (i + 1)))
    np.testing.assert_allclose(rt.smoothed, expected, rtol=1e-12)
    # no smoothing: the raw losses; and the run is repeatable
    raw = mon.lr_range_test(_linear_factory(), torch.nn.MSELoss(), lambda p, lr: SGD(p, lr=lr),
                            (X, y), smoothing=0.0, **kw)
    np.testing.assert_array_equal(raw.smoothed, raw.losses)
    np.testing.assert_array_equal(raw.losses, rt.losses)
    # the first loss is that of θ₀ on the first minibatch of the seeded order
    idx = torch.randperm(len(X), generator=torch.Generator().manual_seed(0))[:16]
    model = _linear_factory()()
    with torch.no_grad():
        assert rt.losses[0] == pytest.approx(float(torch.nn.MSELoss()(model(X[idx]), y[idx])), rel=1e-6)
    # the optimizer really used the scheduled ε at every step
    seen = []

    class Recording(SGD):
        def step(self, closure=None):
            seen.append(self.param_groups[0]["lr"])
            return super().step(closure)
    mon.lr_range_test(_linear_factory(), torch.nn.MSELoss(), lambda p, lr: Recording(p, lr=lr),
                      (X, y), **kw)
    np.testing.assert_allclose(seen, rt.lrs, rtol=1e-12)


def test_range_test_against_a_hand_written_loop():
    """Minibatch SGD on least squares in float64, written out: w ← w − ε_i ∇J_B(w)."""
    X, y, _ = _least_squares()
    X, y = X.double(), y.double()
    factory = lambda: _linear_factory()().double()  # noqa: E731
    rt = mon.lr_range_test(factory, torch.nn.MSELoss(), lambda p, lr: SGD(p, lr=lr), (X, y),
                           1e-3, 1e-1, 30, batch_size=16, smoothing=0.0, stop_factor=1e9, seed=3)
    w = factory().weight.detach().clone().T  # (d, 1)
    gen = torch.Generator().manual_seed(3)
    losses, order = [], []
    for i in range(30):
        if not order:
            order = list(torch.randperm(len(X), generator=gen).split(16))
        idx = order.pop(0)
        r = X[idx] @ w - y[idx]
        losses.append(float((r ** 2).mean()))
        w = w - rt.lrs[i] * 2 * X[idx].T @ r / len(idx)  # ∇ of the mean squared error
    np.testing.assert_allclose(rt.losses, losses, rtol=1e-10)


def test_range_test_stops_on_a_nan_loss():
    X, y, _ = _least_squares()
    calls = []

    def loss_fn(out, target):
        calls.append(1)
        loss = torch.nn.functional.mse_loss(out, target)
        return loss * math.nan if len(calls) == 5 else loss
    rt = mon.lr_range_test(_linear_factory(), loss_fn, lambda p, lr: SGD(p, lr=lr), (X, y),
                           1e-4, 1e-3, 20, smoothing=0.0)
    assert rt.diverged and len(rt.lrs) == 4 and np.all(np.isfinite(rt.losses))


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr_min=0.0), "Invalid lr_min"),
    (dict(lr_min=1e-2, lr_max=1e-3), "Invalid lr_max"),
    (dict(steps=1), "Invalid steps"),
    (dict(steps=10.0), "Invalid steps"),
    (dict(smoothing=1.0), "Invalid smoothing"),
    (dict(stop_factor=1.0), "Invalid stop_factor"),
    (dict(batch_size=0), "Invalid batch_size"),
    (dict(seed=-1), "Invalid seed"),
])
def test_range_test_validates_its_arguments(kwargs, match):
    X, y, _ = _least_squares()
    args = dict(lr_min=1e-4, lr_max=1e-2, steps=10) | kwargs
    with pytest.raises(ValueError, match=match):
        mon.lr_range_test(_linear_factory(), torch.nn.MSELoss(), lambda p, lr: SGD(p, lr=lr),
                          (X, y), **args)
    with pytest.raises(ValueError, match="Invalid data"):
        mon.lr_range_test(_linear_factory(), torch.nn.MSELoss(), lambda p, lr: SGD(p, lr=lr),
                          (X, y[:-1]), 1e-4, 1e-2, 10)


# --- diagnose on constructed runs --------------------------------------------------------------
def test_diagnose_healthy_run():
    losses = np.linspace(2.3, 1.0, 200) + NOISE
    h = make_history(losses, val=[2.0, 1.6, 1.3, 1.2], train_losses=[2.1, 1.7, 1.4, 1.1])
    d = mon.diagnose(h)
    assert d.label == "healthy" and "fell from 2.3" in d.reason


def test_diagnose_stalling_run():
    d = mon.diagnose(make_history(2.3 + NOISE))
    assert d.label == "stalling"
    # 9 % progress stalls, 11 % does not
    assert mon.diagnose(make_history(np.linspace(2.3, 2.3 * 0.91, 200))).label == "stalling"
    assert mon.diagnose(make_history(np.linspace(2.3, 2.3 * 0.89, 200))).label == "healthy"


def test_diagnose_diverging_runs_of_three_kinds():
    nan_run = make_history([2.3, 2.5, 3.0], stop_reason="diverged: loss became nan at step 4")
    assert mon.diagnose(nan_run).label == "diverging"
    assert mon.diagnose(make_history([2.3] * 20 + [math.inf], stop_reason="")).label == "diverging"
    spike = np.linspace(2.3, 1.0, 200) + NOISE
    spike[5] = 5.0  # > 2 J₀ once, then recovers
    d = mon.diagnose(make_history(spike))
    assert d.label == "diverging" and "step 6" in d.reason
    rebound = np.concatenate([np.linspace(2.3, 0.5, 100), np.linspace(0.5, 1.5, 100)])
    d = mon.diagnose(make_history(rebound))
    assert d.label == "diverging" and "then rose" in d.reason
    # a loss that rises a little (below both thresholds) and never fell: stalling, not diverging
    assert mon.diagnose(make_history(np.linspace(2.3, 2.4, 200))).label == "stalling"


def test_diagnose_overfitting_run_and_its_conditions():
    losses = np.linspace(2.3, 0.2, 200) + NOISE
    val = [2.0, 1.7, 1.6, 1.7, 1.9, 2.2]
    tr = [2.0, 1.5, 1.1, 0.8, 0.5, 0.3]
    d = mon.diagnose(make_history(losses, val=val, train_losses=tr))
    assert d.label == "overfitting" and "epoch 3" in d.reason
    # the minimum only one epoch back (patience 2): not yet
    assert mon.diagnose(make_history(losses, val=[2.0, 1.8, 1.7, 1.6, 1.5, 1.9], train_losses=tr)).label == "healthy"
    # a rise below 10 %: healthy
    assert mon.diagnose(make_history(losses, val=[2.0, 1.7, 1.6, 1.65, 1.68, 1.7], train_losses=tr)).label == "healthy"
    # the training loss rose too: not overfitting (the optimizer went astray, it did not overfit)
    assert mon.diagnose(make_history(losses, val=val, train_losses=[2.0, 1.5, 1.1, 1.2, 1.3, 1.4])).label == "healthy"


def test_diagnose_validates():
    with pytest.raises(ValueError, match="Invalid history"):
        mon.diagnose({"loss": [1.0]})
    with pytest.raises(ValueError, match="Invalid history"):
        mon.diagnose(make_history([2.3] * 5))  # fewer steps than the window
    with pytest.raises(ValueError, match="Invalid blowup"):
        mon.diagnose(make_history([2.3] * 20), blowup=1.0)
    with pytest.raises(ValueError, match="Invalid window"):
        mon.diagnose(make_history([2.3] * 20), window=0)
    assert set(mon.LABELS) == {"diverging", "stalling", "overfitting", "healthy"}


def test_first_spike_by_hand():
    h = make_history([2.0, 2.2, 3.9, 4.4, 9.0], grad_norms=[0.5, 0.5, 1.0, 25.0, 100.0])
    assert mon.first_spike(h) == {"step": 4, "loss_factor": 2.2, "grad_norm_factor": 50.0}
    assert mon.first_spike(h, factor=4.0)["step"] == 5
    assert mon.first_spike(make_history([2.0, 1.0, 0.5])) is None


def test_dead_units_and_param_norm():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2),
                                torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.copy_(torch.tensor([-1.0, -1.0, 1.0, 1.0]))  # units 1, 2 never fire
        model[2].weight.fill_(1.0)
        model[2].bias.fill_(0.0)
    X = torch.randn(10, 3)
    assert mon.dead_units(model, X) == [0.5, 0.0]
    expected = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in model.parameters()))
    assert mon.param_norm(model) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="Invalid X"):
        mon.dead_units(model, torch.randn(3))


def test_train_run_records_and_validates():
    run = mon.train_run("Momentum", 3.16, epochs=1)
    assert run.diverged and run.history.stop_reason.startswith("diverged")
    assert run.final_val_loss == math.inf
    assert len(run.update_ratios) == len(run.history.steps["step"])
    with pytest.raises(ValueError, match="Invalid n_train"):
        mon.train_run("Adam", 1e-3, n_train=0)
    with pytest.raises(ValueError, match="Invalid epochs"):
        mon.train_run("Adam", 1e-3, epochs=0)
    with pytest.raises(ValueError, match="Invalid lrs"):
        mon.lr_sweep("Adam", lrs=())


def test_train_run_matches_a_plain_train_call():
    """train_run is course_lib.train.train with a monitor attached: same history."""
    splits = mon.mnist1d_splits()
    run = mon.train_run("Adam", 1e-2, epochs=1)
    model = mon.make_model()
    hist = train(model, torch.nn.CrossEntropyLoss(), mon.make_optimizer("Adam", model.parameters(), 1e-2),
                 splits["train"], epochs=1, batch_size=mon.BATCH, val_data=splits["val"], seed=0,
                 device="cpu")
    assert hist.steps["loss"] == run.history.steps["loss"]
    assert hist.epochs["val_loss"] == run.history.epochs["val_loss"]


def test_explorer_figure_titles_the_diagnosis():
    import matplotlib.pyplot as plt
    run = mon.explorer_figure(lr=3.16, optimizer="Momentum", epochs=1)
    fig = plt.gcf()
    assert "diverging" in fig._suptitle.get_text() and run.diverged
    plt.close(fig)


# ======================================================================================
# The chapter's numbers
# ======================================================================================
@pytest.fixture(scope="module")
def sweeps():
    return {name: mon.lr_sweep(name, seeds=mon.SWEEP_SEEDS) for name in ("Adam", "Momentum")}


def _range_tests(seed):
    splits = mon.mnist1d_splits()
    return {name: mon.lr_range_test(lambda: mon.make_model(seed=seed), torch.nn.CrossEntropyLoss(),
                                    lambda p, lr, name=name: mon.make_optimizer(name, p, lr),
                                    splits["train"], **{**mon.RANGE_TEST, "seed": seed})
            for name in ("Adam", "Momentum")}


@pytest.fixture(scope="module")
def range_seeds():
    return {k: _range_tests(k) for k in mon.SWEEP_SEEDS}


@pytest.fixture(scope="module")
def range_tests(range_seeds):
    return range_seeds[mon.SWEEP_SEEDS[0]]


@pytest.fixture(scope="module")
def examples():
    return {kind: mon.train_run(mon.EXAMPLE_OPTIMIZER, lr) for kind, lr in mon.EXAMPLE_LRS.items()}


def test_chapter_data_and_model():
    s = mon.mnist1d_splits()
    assert (len(s["train"][0]), len(s["val"][0]), len(s["test"][0])) == (2560, 640, 800)
    assert len(mon.SWEEP_LRS) == 9 and mon.SWEEP_LRS[0] == 3.16e-4 and mon.SWEEP_LRS[-1] == 3.16


def test_lr_sweep_runs_every_seed():
    sweep = mon.lr_sweep("Adam", lrs=(1e-3, 1e-2), seeds=(0, 1), epochs=1)
    assert sweep.seed_val_losses.shape == (2, 2)
    np.testing.assert_allclose(sweep.final_val_losses, np.median(sweep.seed_val_losses, axis=0))
    assert sweep.runs is sweep.seed_runs[0]
    assert sweep.seed_runs[1][0].history.steps["loss"][0] != sweep.runs[0].history.steps["loss"][0]
    with pytest.raises(ValueError, match="Invalid seeds"):
        mon.lr_sweep("Adam", seeds=())


def test_chapter_adam_has_the_wider_band(sweeps):
    """Medians over seeds 0, 1, 2 (float64).  Measured: the bands and counts are the same with
    ATEN_CPU_CAPABILITY=default, avx2 and native, and with seeds 3, 4, 5 (except: 30 %
    gives Adam 6 and 10 % gives momentum 2 there, and Adam's best ε is 0.00316, a near tie
    with 0.01).  Single float32 runs flipped the 30 % count of momentum between CPUs."""
    adam, mom = sweeps["Adam"], sweeps["Momentum"]
    assert adam.best_lr == 0.01 and adam.final_val_losses.min() == pytest.approx(1.403, abs=0.004)
    assert mom.best_lr == 0.1 and mom.final_val_losses.min() == pytest.approx(1.511, abs=0.004)
    assert adam.band() == (0.001, 0.00316, 0.01, 0.0316)
    assert mom.band() == (0.0316, 0.1, 0.316)
    assert adam.band_decades() == pytest.approx(1.5, abs=0.01)
    assert mom.band_decades() == pytest.approx(1.0, abs=0.01)
    counts = {tol: (len(adam.band(tol)), len(mom.band(tol))) for tol in (0.1, 0.2, 0.3)}
    assert counts == {0.1: (3, 1), 0.2: (4, 3), 0.3: (5, 3)}
    assert all(a > m for a, m in counts.values())  # "whatever tolerance we choose"
    # 30 % is the last tolerance below chance level: 1.3 × best < ln 10 for both
    assert 1.3 * max(adam.final_val_losses.min(), mom.final_val_losses.min()) < math.log(10)
    assert 1e-3 in adam.band()  # Adam's default ε is good
    assert mom.runs[-1].diverged and not any(r.diverged for r in adam.runs)  # "missing point"
    # momentum (seed 0): stalls up to 0.01, moves from 0.0316, jumps at 1, nan at 3.16
    labels = dict(zip(mon.SWEEP_LRS, (mon.diagnose(r.history).label for r in mom.runs)))
    assert [labels[lr] for lr in (3.16e-4, 0.001, 0.00316, 0.01)] == ["stalling"] * 4
    # at ε = 1 the run jumps (native, avx2) or becomes nan after 48 steps (default kernels)
    assert labels[0.0316] == "healthy" and labels[1.0] == labels[3.16] == "diverging"


def test_chapter_step_sizes_at_the_same_lr(sweeps):
    i3 = list(mon.SWEEP_LRS).index(1e-3)
    adam = np.median(sweeps["Adam"].runs[i3].update_ratios)
    mom = np.median(sweeps["Momentum"].runs[i3].update_ratios)
    assert adam == pytest.approx(4.85e-3, rel=0.01) and mom == pytest.approx(5.48e-5, rel=0.01)
    assert 85 < adam / mom < 93  # printed "89 times" (2 significant digits)
    assert sweeps["Momentum"].runs[0].history.steps["grad_norm"][0] == pytest.approx(0.139, rel=0.01)
    # SGD's ratios grow ∝ ε below its band (steps εg): a slope of 1 on the log-log plot
    ratios = [np.median(r.update_ratios) for r in sweeps["Momentum"].runs[:4]]
    slope = np.polyfit(np.log10(mon.SWEEP_LRS[:4]), np.log10(ratios), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.1)


def test_chapter_adam_at_large_lr_kills_the_last_layer(sweeps):
    X_val = mon.mnist1d_splits()["val"][0]
    i_good, i_huge = list(mon.SWEEP_LRS).index(1e-2), list(mon.SWEEP_LRS).index(1.0)
    good, huge = sweeps["Adam"].runs[i_good], sweeps["Adam"].runs[i_huge]
    theta0 = mon.param_norm(mon.make_model())
    assert theta0 == pytest.approx(9.51, rel=0.01)
    assert mon.param_norm(huge.model) > 50 * theta0 and mon.param_norm(good.model) < 2 * theta0
    assert mon.dead_units(huge.model, X_val)[-1] == 1.0  # "every unit of the last hidden layer"
    # printed for seed 0: 0 %, 34 %, 41 %, 34 % (the same on every kernel set)
    np.testing.assert_allclose(mon.dead_units(good.model, X_val), [0, 0.34, 0.41, 0.34], atol=0.01)
    # "a third or more ... varies from seed to seed": seeds 0-5 gave means of 0.17-0.61
    for runs in sweeps["Adam"].seed_runs:
        dead = mon.dead_units(runs[i_good].model, X_val)
        assert 0.15 < max(dead[1:]) and max(dead[1:]) < 0.7
    assert huge.final_val_loss == pytest.approx(math.log(10), abs=0.15)  # chance level


def test_chapter_range_test(sweeps, range_seeds):
    """Seed 0: min at ε = 0.0499 (Adam), 0.521 (momentum); seeds 1, 2: 0.0385, 0.0323 and
    0.569, 0.521; the same with default, avx2 and native kernels.  Whether Adam's test stops
    early is NOT portable (seed 2: stops at step 127 with default kernels, runs to the end
    with the others), so nothing is asserted about it."""
    expected = {0: (0.0499, 0.521), 1: (0.0385, 0.569), 2: (0.0323, 0.521)}
    for k, (adam_lr, mom_lr) in expected.items():
        adam, mom = range_seeds[k]["Adam"], range_seeds[k]["Momentum"]
        assert adam.min_lr == pytest.approx(adam_lr, rel=0.02), k
        assert mom.min_lr == pytest.approx(mom_lr, rel=0.02), k
        assert adam.suggested_lr == pytest.approx(adam.min_lr / 10, rel=1e-12)
        for name, rt in range_seeds[k].items():
            band = sweeps[name].band()
            assert min(band) <= rt.suggested_lr <= max(band), (k, name)  # "falls inside the band"
    assert range_seeds[0]["Adam"].smoothed.min() == pytest.approx(1.90, abs=0.004)
    assert range_seeds[0]["Momentum"].diverged  # the loss explodes


def test_chapter_suggested_lr_trains_as_well_as_the_sweep(sweeps, range_tests):
    for name, rt in range_tests.items():
        run = mon.train_run(name, rt.suggested_lr)
        assert mon.diagnose(run.history).label == "healthy"
        # printed ratio 0.98 for both (same on every kernel set)
        assert run.final_val_loss / sweeps[name].best.final_val_loss == pytest.approx(0.98, abs=0.004)
    n_sweep = len(mon.SWEEP_LRS) * len(sweeps["Adam"].runs[0].history.steps["step"])
    assert n_sweep == 9 * mon.RANGE_TEST["steps"] == 1440  # "a ninth of its cost"


def test_chapter_three_runs_are_diagnosed_right(examples):
    labels = {kind: mon.diagnose(run.history).label for kind, run in examples.items()}
    assert labels == {"too small": "stalling", "good": "healthy", "too large": "diverging"}
    steps = {kind: len(run.history.steps["step"]) for kind, run in examples.items()}
    assert steps["too small"] == steps["good"] == 160
    assert 15 <= steps["too large"] <= 40 and examples["too large"].diverged


def test_chapter_health_signals(examples):
    theta0 = mon.param_norm(mon.make_model())
    for kind, run in examples.items():
        # SGD's first step is ε g₁ (the momentum buffer starts at g₁): ratio ε‖g₁‖/‖θ₀‖
        g1 = run.history.steps["grad_norm"][0]
        assert run.update_ratios[0] == pytest.approx(run.lr * g1 / theta0, rel=1e-4), kind
    s = {kind: mon.health_signals(run) for kind, run in examples.items()}
    assert s["too small"]["update_ratio"] < 1e-4  # "near 10⁻⁴"
    assert 5e-3 < s["good"]["update_ratio"] < 3e-2  # "near 10⁻²"
    # "a fifth of ‖θ‖": 0.19097 on every kernel set (float64; it was 0.164 in float32)
    assert s["too large"]["update_ratio"] == pytest.approx(1 / 5, rel=0.1)
    assert s["too small"]["grad_norm"] == pytest.approx(0.16, rel=0.05)
    assert s["too large"]["max_grad_norm"] > 1e6
    spike = mon.first_spike(examples["too large"].history)
    # a divergence amplifies rounding differences: on another CPU the exact step may move
    assert 10 <= spike["step"] <= 40
    assert spike["loss_factor"] == pytest.approx(2.5, abs=0.2)  # "only doubled"
    assert 50 < spike["grad_norm_factor"] < 200  # "about a hundredfold"
    assert 1 <= len(examples["too large"].history.steps["step"]) + 1 - spike["step"] <= 10  # "a few steps"


def test_chapter_overfitting_run():
    o = mon.OVERFIT
    run = mon.train_run(o["optimizer"], o["lr"], n_train=o["n_train"], epochs=o["epochs"],
                        batch_size=o["batch_size"])
    d = mon.diagnose(run.history)
    assert d.label == "overfitting"
    ep, best = run.history.epochs, run.history.best_epoch
    assert best == 6
    assert ep["val_loss"][best - 1] == pytest.approx(1.8, abs=0.05)
    assert ep["val_loss"][-1] == pytest.approx(4.9, abs=0.2)
    assert 2.5 < ep["val_loss"][-1] / ep["val_loss"][best - 1] < 3.0  # "nearly triples"
    assert abs(ep["val_accuracy"][-1] - ep["val_accuracy"][best - 1]) < 0.02  # "hardly moves"
    assert ep["train_loss"][-1] < 0.1


# ======================================================================================
# Issue 8 and 10: dead units, the longer sweep, TensorBoard, the widget's width
# ======================================================================================
def test_update_ratio_monitor_uses_train_update_norms(monkeypatch):
    """One home per concept: the monitor's per-tensor norms are course_lib.train.update_norms."""
    calls = []
    real = mon.update_norms
    monkeypatch.setattr(mon, "update_norms", lambda b, a: calls.append(1) or real(b, a))
    model = torch.nn.Linear(3, 2)
    opt = SGD(model.parameters(), lr=0.1)
    monitor = mon.UpdateRatioMonitor(opt)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    expected = math.sqrt(sum(float((p.detach() - b).pow(2).sum()) for p, b in zip(model.parameters(), before))
                         / sum(float(b.pow(2).sum()) for b in before))
    assert calls == [1] and monitor.ratios == [pytest.approx(expected, rel=1e-6)]


def test_dead_unit_table_validates_and_uses_the_seeds():
    sweep = mon.lr_sweep("Adam", lrs=(1e-3,), seeds=(4,), epochs=1)
    assert sweep.seeds == (4,)
    X = mon.mnist1d_splits()["val"][0]
    table = mon.dead_unit_table(sweep, X, (1e-3,))
    assert list(table) == ["θ₀", "ε = 0.001"]
    np.testing.assert_array_equal(table["θ₀"], mon.dead_units(mon.make_model(seed=4), X))
    with pytest.raises(ValueError, match="Invalid lrs"):
        mon.dead_unit_table(sweep, X, (1e-2,))


def test_chapter_dead_units_are_a_warning_sign(sweeps):
    """Printed (median of seeds 0-2, per hidden layer): θ₀ 0, 0, 5, 17 %; ε = 1e-3: 0, 2, 12,
    27 %; 3.16e-3: 0, 3, 22, 30 %; 1e-2: 0, 34, 38, 48 %; the same with default, avx2 and
    native kernels (float64 runs, dead-unit counts are integers out of 64)."""
    table = mon.dead_unit_table(sweeps["Adam"], mon.mnist1d_splits()["val"][0], mon.DEAD_UNIT_LRS)
    expected = {"θ₀": [0, 0, 0.05, 0.17], "ε = 0.001": [0, 0.02, 0.12, 0.27],
                "ε = 0.00316": [0, 0.03, 0.22, 0.30], "ε = 0.01": [0, 0.34, 0.38, 0.48]}
    assert list(table) == list(expected)
    for label, fractions in expected.items():
        np.testing.assert_allclose(table[label], fractions, atol=0.01, err_msg=label)
    theta0, smaller, best = table["θ₀"], table["ε = 0.00316"], table["ε = 0.01"]
    assert 0.02 <= theta0[2] <= 0.08 and 1 / 7 < theta0[3] < 1 / 5  # "a few percent", "about a sixth"
    assert all(1 / 3 - 0.01 <= d <= 0.5 for d in best[1:])  # "a third to a half"
    assert smaller[1] <= best[1] / 10 + 0.01 and all(smaller[1:] < best[1:])  # "a tenth ... fewer"
    losses = sweeps["Adam"].final_val_losses
    i, j = list(mon.SWEEP_LRS).index(3.16e-3), list(mon.SWEEP_LRS).index(1e-2)
    assert losses[j] == losses.min() and losses[i] < 1.02 * losses[j]  # "within 2 %" (1.421 vs 1.403)


@pytest.fixture(scope="module")
def long_sweeps():
    return {name: mon.lr_sweep(name, mon.LONG_LRS[name], seeds=mon.SWEEP_SEEDS, epochs=mon.LONG_EPOCHS)
            for name in ("Adam", "Momentum")}


def test_chapter_start_with_adam_survives_longer_runs(long_sweeps):
    """640 steps, seeds 0-2, medians.  Measured native / ATEN_CPU_CAPABILITY=default: Adam
    1.691, 1.390, 1.2965, 1.3389, 1.5080, 1.467 / 1.431 (ε = 0.0316, the only one that moves),
    2.073 / 2.079; momentum 2.193, 1.389, 1.344, 1.392, 2.318 / 2.305."""
    adam, mom = long_sweeps["Adam"], long_sweeps["Momentum"]
    assert adam.best_lr == 1e-3 and adam.final_val_losses.min() == pytest.approx(1.2965, abs=0.003)
    assert mom.best_lr == 0.0316 and mom.final_val_losses.min() == pytest.approx(1.344, abs=0.003)
    for s in (adam, mom):  # interior bests, and bands with a grid point outside at both ends
        assert 0 < s.best_index < len(s.lrs) - 1
        assert min(s.band()) > s.lrs[0] and max(s.band()) < s.lrs[-1]
    assert adam.band() == (3.16e-4, 1e-3, 3.16e-3, 1e-2, 3.16e-2)  # "two decades"
    assert mom.band() == (0.01, 0.0316, 0.1)  # "one decade", half a decade below the short run's
    assert adam.band_decades() == pytest.approx(2.0, abs=0.01) and mom.band_decades() == pytest.approx(1.0, abs=0.01)
    # at 10 %: "about even (three each, Adam's next one just outside)": 1.467 / 1.431 against 1.426
    assert len(mom.band(0.1)) == 3 and len(adam.band(0.1)) in (3, 4)
    assert 1e-3 in adam.band()  # the default lands in the band again
    assert abs(adam.final_val_losses.min() - mom.final_val_losses.min()) < 0.06  # "close"
    # dead units: ε = 3.16e-3 beats the short run's best 1e-2 when run longer, "1.34 against 1.51"
    la = dict(zip(adam.lrs, adam.final_val_losses))
    assert la[3.16e-3] == pytest.approx(1.339, abs=0.005) and la[1e-2] == pytest.approx(1.508, abs=0.005)
    assert f"{la[1e-3]:.2f}" == "1.30"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    logdir = tmp_path_factory.mktemp("tb") / "runs" / "ch14"
    return logdir, mon.log_runs(logdir)


def test_chapter_tensorboard_runs_are_the_examples(logged, examples):
    logdir, runs = logged
    assert sorted(p.name for p in logdir.iterdir()) == ["Momentum_lr=0.001", "Momentum_lr=0.1",
                                                         "Momentum_lr=3.16"]
    for kind, run in runs.items():
        assert run.history.steps["loss"] == examples[kind].history.steps["loss"], kind
        scalars = mon.read_scalars(logdir / mon.run_name("Momentum", run.lr))
        steps, losses = scalars["steps/loss"]
        np.testing.assert_array_equal(steps, run.history.steps["step"])
        with np.errstate(over="ignore"):  # the diverging run's last losses overflow float32 (inf)
            np.testing.assert_array_equal(losses, np.float32(run.history.steps["loss"]))
        ratios = mon.layer_update_ratios(logdir / mon.run_name("Momentum", run.lr))
        assert list(ratios) == [f"layer {k}" for k in range(1, 6)]
        assert all(len(r) == len(steps) for r in ratios.values())


def test_log_runs_again_gives_the_same_event_files(tmp_path):
    for _ in range(2):
        mon.log_runs(tmp_path, lrs={"good": 0.1}, epochs=1)
    (run_dir,) = tmp_path.iterdir()
    assert len(list(run_dir.iterdir())) == 1  # one event file: the earlier one was removed
    assert len(mon.read_scalars(run_dir)["steps/loss"][0]) == 40
    with pytest.raises(ValueError, match="Invalid run_dir"):
        mon.read_scalars(tmp_path / "nothing")


def test_chapter_per_layer_update_ratios(logged):
    """Printed medians (float64 runs): too small 2.1e-5, 3e-5, 3.4e-5, 3.7e-5, 1.3e-4; good
    0.019, 0.014, 0.011, 0.010, 0.020; too large 0.12, 0.15, 0.20, 0.22, 0.26, the same with
    default, avx2 and native kernels (the too-large run stops after 29 steps on each)."""
    logdir, runs = logged
    med = {kind: np.array([np.median(r) for r in mon.layer_update_ratios(
        logdir / mon.run_name("Momentum", run.lr)).values()]) for kind, run in runs.items()}
    np.testing.assert_allclose(med["too small"], [2.1e-5, 3.0e-5, 3.4e-5, 3.7e-5, 1.3e-4], rtol=0.03)
    np.testing.assert_allclose(med["good"], [0.0186, 0.0140, 0.0110, 0.0104, 0.0202], rtol=0.02)
    np.testing.assert_allclose(med["too large"], [0.122, 0.149, 0.196, 0.218, 0.256], rtol=0.03)
    rule = mon.RULE_OF_THUMB
    small = med["too small"]
    assert 7 <= rule / small.max() and rule / small.min() <= 50 and small.argmax() == 4  # "7 to 50 times slower, the output layer fastest"
    assert med["good"].max() / med["good"].min() < 2  # "within a factor of two"
    assert 10 <= med["good"].min() / rule and med["good"].max() / rule <= 21  # "ten to twenty times above"
    assert 0.1 <= med["too large"].min() and med["too large"].max() <= 0.26  # "a tenth to a quarter"


def test_explorer_widget_fits_the_notebook_column():
    """Issue 10: the widget's figure was 1032 px wide (figsize 13 in at 80 px/in); the browser
    test finds a 1366x768 window's notebook column narrower.  Other chapters' 11-in figures
    (≈ 880 px) pass; the worst-case title (diverging) must not widen it."""
    import ipywidgets as W
    from course_lib.widgets import interactive_plot
    w = interactive_plot(mon.explorer_figure, lr=W.FloatLogSlider(value=3.16, base=10, min=-4, max=0.5),
                         optimizer=W.Dropdown(options=["Momentum", "Adam"], value="Momentum"))
    width, height = w.css_size
    assert width <= 880 and height <= 330, w.css_size


def test_exercise_4_numbers():
    """solutions/ch14 exercise 4 prints (same on default, avx2, native): median update ratio
    0.00049 and 0.016, median |g| 0.16 and 0.855 (0.85485), factors 33 and 5.4."""
    s = {lr: mon.health_signals(mon.train_run("Momentum", lr)) for lr in (0.01, 0.1)}
    assert s[0.1]["update_ratio"] / s[0.01]["update_ratio"] == pytest.approx(33.0, abs=0.3)
    assert s[0.1]["grad_norm"] / s[0.01]["grad_norm"] == pytest.approx(5.35, abs=0.03)
    assert f"{s[0.01]['grad_norm']:.3g}" == "0.16" and f"{s[0.1]['grad_norm']:.3g}" == "0.855"
