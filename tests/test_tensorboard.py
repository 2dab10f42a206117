"""train(tensorboard=...): the event files read back with TensorBoard's own reader.

Scalars are stored as float32, so a logged value must equal float32(the History's value) exactly.
"""
import sys
import time

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from course_lib.train import EarlyStopping, TrainingDiverged, train, update_norms

train_module = sys.modules["course_lib.train"]  # (the package re-exports the function under its name)

N, D, C, BS = 300, 10, 3, 32  # 10 minibatches per epoch, the last one of 12
STEP_TAGS = {"steps/loss": "loss", "steps/grad_norm": "grad_norm", "steps/lr": "lr"}
EVAL_TAGS = {"evals/val_loss": "val_loss", "evals/val_accuracy": "val_accuracy"}
EPOCH_TAGS = {"epochs/train_loss": "train_loss", "epochs/train_accuracy": "train_accuracy"}
loss_fn = nn.CrossEntropyLoss()


def make_data(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, D, generator=g)
    return X, (X @ torch.randn(D, C, generator=g)).argmax(1)


def make_model(seed=0):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, C))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.3, 0.3, generator=g)
    return model


PARAM_NAMES = [name for name, _ in make_model().named_parameters()]  # 0.weight, 0.bias, 3.weight, 3.bias


def run(epochs=3, **kwargs):
    """Adam with a step schedule (so ε changes), validation every epoch and every 6 steps."""
    X, y = make_data()
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.7)
    kwargs.setdefault("val_data", make_data(1, 90))
    if kwargs["val_data"] is not None:
        kwargs.setdefault("eval_every", 6)
    hist = train(model, kwargs.pop("loss_fn", loss_fn), opt, (X, y), epochs=epochs, batch_size=BS,
                 scheduler=sched, **kwargs)
    return model, hist


def read(logdir) -> EventAccumulator:
    events = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "histograms": 0})  # 0: keep all
    events.Reload()
    return events


def scalars(events, tag) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in events.Scalars(tag)]


def as_logged(steps, values) -> list[tuple[int, float]]:
    """What the event file should hold: the History's values rounded to float32."""
    return [(int(s), float(np.float32(v))) for s, v in zip(steps, values)]


def assert_scalars_are_the_history(events, hist):
    for tags, table in ((STEP_TAGS, hist.steps), (EVAL_TAGS, hist.evals), (EPOCH_TAGS, hist.epochs)):
        for tag, field in tags.items():
            assert scalars(events, tag) == as_logged(table["step"], table[field]), tag


def assert_same(model_a, hist_a, model_b, hist_b):
    for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
        assert torch.equal(p, q)
    a, b = hist_a.to_numpy(), hist_b.to_numpy()
    for table in a:
        for k in a[table]:
            np.testing.assert_array_equal(a[table][k], b[table][k], err_msg=f"{table}.{k}")


# ---- what is logged

def test_scalars_equal_the_history_step_by_step(tmp_path, capsys):
    _, hist = run(tensorboard=tmp_path / "run")
    events = read(tmp_path / "run")
    assert set(events.Tags()["scalars"]) == {*STEP_TAGS, *EVAL_TAGS, *EPOCH_TAGS,
                                             *(f"update_ratio/{n}" for n in PARAM_NAMES)}
    assert_scalars_are_the_history(events, hist)
    assert len(events.Scalars("steps/loss")) == 30 and len(set(hist.steps["lr"])) == 5  # ε varied
    # validations every 6 steps and at each epoch's end (10, 20, 30), once per step
    assert [e.step for e in events.Scalars("evals/val_loss")] == [6, 10, 12, 18, 20, 24, 30]
    assert capsys.readouterr() == ("", "")  # nothing printed: no paths, no times


def update_ratio_recorder(opt):
    """‖θ_t − θ_{t−1}‖/‖θ_{t−1}‖ per tensor at every step, in float64, from the optimizer's hooks."""
    rows, before = [], []
    params = [p for group in opt.param_groups for p in group["params"]]

    def pre(*_):
        before[:] = [p.detach().double().clone() for p in params]

    def post(*_):
        rows.append([float((p.detach().double() - b).norm() / b.norm()) for p, b in zip(params, before)])
    opt.register_step_pre_hook(pre)
    opt.register_step_post_hook(post)
    return rows


def test_update_ratios_per_tensor_and_weight_histograms_per_epoch(tmp_path):
    X, y = make_data()
    model = make_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    expected = update_ratio_recorder(opt)
    hist = train(model, loss_fn, opt, (X, y), epochs=3, batch_size=BS, tensorboard=str(tmp_path))
    events = read(tmp_path)
    expected = np.array(expected)  # (steps, tensors)
    assert expected.shape == (30, 4)
    for i, name in enumerate(PARAM_NAMES):
        logged = events.Scalars(f"update_ratio/{name}")
        assert [e.step for e in logged] == list(range(1, 31))
        # float32 norms against float64 ones, stored as float32: ≈ 1e-7 apart here
        np.testing.assert_allclose([e.value for e in logged], expected[:, i], rtol=1e-5)
    assert set(events.Tags()["histograms"]) == {f"weights/{n}" for n in PARAM_NAMES}
    for name, p in model.named_parameters():
        histograms = events.Histograms(f"weights/{name}")
        assert [h.step for h in histograms] == [0, *hist.epochs["step"]] == [0, 10, 20, 30]  # θ₀, epochs
        final = histograms[-1].histogram_value
        assert final.num == sum(final.bucket) == p.numel()
        assert (final.min, final.max) == (p.min().item(), p.max().item())
        assert len(final.bucket_limit) == 30 and final.bucket_limit[-1] == final.max
        # the counts are those of 30 equal bins from min to max (numpy may put a value that
        # sits on an edge in the other bin: allow a difference of one per bin)
        counts, _ = np.histogram(p.detach().double().numpy(), bins=30, range=(final.min, final.max))
        assert np.abs(np.array(final.bucket) - counts).max() <= 1
        assert final.sum == pytest.approx(p.sum().item(), rel=1e-5, abs=1e-6)
    first = events.Histograms("weights/0.weight")[0].histogram_value  # θ₀ ~ U(-0.3, 0.3)
    assert first.min >= -0.3 and first.max <= 0.3 and first.num == 160


def test_update_norms_per_tensor():
    before = [torch.tensor([3.0, 4.0]), torch.zeros(3)]
    after = [torch.tensor([3.0, 4.5]), torch.tensor([0.0, 2.0, 0.0])]
    deltas, thetas = update_norms(before, after)
    assert [float(d) for d in deltas] == [0.5, 2.0] and [float(t) for t in thetas] == [5.0, 0.0]


def test_a_zero_tensor_has_no_ratio_until_it_moves(tmp_path):
    X, y = make_data()
    model = make_model()
    with torch.no_grad():
        model[3].bias.zero_()  # θ_0 = 0: the ratio of step 1 is undefined
    train(model, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1), (X, y), epochs=1,
          batch_size=BS, tensorboard=tmp_path)
    events = read(tmp_path)
    assert [e.step for e in events.Scalars("update_ratio/3.bias")] == list(range(2, 11))
    assert [e.step for e in events.Scalars("update_ratio/3.weight")] == list(range(1, 11))


def test_regression_without_validation_logs_no_accuracy(tmp_path):
    X, _ = make_data()
    target = X.sum(1, keepdim=True)
    model = nn.Linear(D, 1)
    hist = train(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.05), (X, target),
                 epochs=2, batch_size=BS, metrics=(), tensorboard=tmp_path)
    events = read(tmp_path)
    assert set(events.Tags()["scalars"]) == {*STEP_TAGS, "epochs/train_loss",
                                             "update_ratio/weight", "update_ratio/bias"}
    assert scalars(events, "epochs/train_loss") == as_logged(hist.epochs["step"], hist.epochs["train_loss"])


# ---- logging changes nothing, and costs nothing when off

def test_logging_changes_neither_parameters_nor_history(tmp_path):
    plain = run()
    assert_same(*plain, *run(tensorboard=tmp_path / "dir"))
    writer = SummaryWriter(str(tmp_path / "own"))
    assert_same(*plain, *run(tensorboard=writer))
    writer.add_scalar("mine/after_training", 1.0, 0)  # a writer passed in is left open ...
    writer.close()
    events = read(tmp_path / "own")
    assert_scalars_are_the_history(events, plain[1])  # ... and was flushed
    assert "mine/after_training" in events.Tags()["scalars"]


def test_without_tensorboard_the_loop_does_no_extra_work(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("logging work with tensorboard=None")
    monkeypatch.setattr(train_module, "update_norms", forbidden)
    monkeypatch.setattr(train_module, "_TensorBoardLog", forbidden)
    monkeypatch.setattr(torch.Tensor, "clone", forbidden)  # no copy of θ per step
    run(epochs=1, val_data=None)


# ---- divergence, resume

def nan_at_step(bad):
    calls = {"n": 0}

    def loss(out, y):
        calls["n"] += torch.is_grad_enabled()  # training steps, not validation batches
        return loss_fn(out, y) * (float("nan") if calls["n"] == bad else 1.0)
    return loss


@pytest.mark.parametrize("check", ["host", "device"])
def test_divergence_logs_the_recorded_steps_only(tmp_path, monkeypatch, check):
    """A nan loss at step 7: steps 1-6 are logged, nothing of step 7 on.  With the device-side
    check the host reads at the end of epoch 1 (step 10); steps 7-10 were skipped on the device
    and their (zero) updates must not be logged either."""
    X, y = make_data()
    model = make_model()
    if check == "device":  # the GPU's path, on the CPU
        monkeypatch.setattr(train_module, "_SYNC_IS_FREE", ())
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=True)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with pytest.raises(TrainingDiverged, match="step 7") as err:
        train(model, nan_at_step(7), opt, (X, y), epochs=2, batch_size=BS, tensorboard=tmp_path)
    events = read(tmp_path)  # the writer was closed: everything is on disk
    assert scalars(events, "steps/loss") == as_logged(err.value.history.steps["step"],
                                                      err.value.history.steps["loss"])
    for name in PARAM_NAMES:
        logged = events.Scalars(f"update_ratio/{name}")
        assert [e.step for e in logged] == [1, 2, 3, 4, 5, 6] and all(e.value > 0 for e in logged)
    assert [h.step for h in events.Histograms("weights/0.weight")] == [0]


def test_resume_after_a_crash_logs_every_step_once(tmp_path):
    """Checkpoints every 10 steps (= each epoch's last step, before its end is recorded); the
    student stops the run during step 37; the resumed run continues from step 30 into the same
    directory.  TensorBoard then shows the uninterrupted run's records, each step once."""
    logdir, path = tmp_path / "log", tmp_path / "run.pt"
    model, hist = run(epochs=4, early_stopping=EarlyStopping(patience=10))
    calls = {"n": 0}

    def crashing_loss(out, y):
        calls["n"] += torch.is_grad_enabled()
        if calls["n"] == 37:
            raise KeyboardInterrupt
        return loss_fn(out, y)
    with pytest.raises(KeyboardInterrupt):
        run(epochs=4, early_stopping=EarlyStopping(patience=10), loss_fn=crashing_loss,
            checkpoint_path=path, checkpoint_every=10, tensorboard=logdir)
    assert torch.load(path, weights_only=True)["loop"]["step"] == 30
    assert scalars(read(logdir), "steps/loss")[-1][0] == 36  # the interrupted run got that far
    # TensorBoard reads a directory's event files in name order, and the name starts with the
    # time in whole seconds: a second file opened within the same second may sort first
    start = int(time.time())
    while int(time.time()) == start:
        time.sleep(0.05)
    resumed, rhist = run(epochs=4, early_stopping=EarlyStopping(patience=10), checkpoint_path=path,
                         resume=True, tensorboard=logdir)
    assert_same(resumed, rhist, model, hist)
    events = read(logdir)
    assert_scalars_are_the_history(events, hist)
    for name in PARAM_NAMES:
        assert [e.step for e in events.Scalars(f"update_ratio/{name}")] == list(range(1, 41))
        assert [h.step for h in events.Histograms(f"weights/{name}")] == [0, 10, 20, 30, 40]


# ---- bad arguments

@pytest.mark.parametrize("value, match", [
    (42, r"Invalid tensorboard: 42 \(expected None, a log directory"),
    ("", r"Invalid tensorboard: '' \(expected None, a log directory"),
    (True, r"Invalid tensorboard: True"),
    ("FILE", r"Invalid tensorboard: .*a directory for the event files, not a file"),
])
def test_bad_tensorboard_argument_is_named(tmp_path, value, match):
    if value == "FILE":
        value = tmp_path / "events.txt"
        value.write_text("not a directory")
    files = sorted(tmp_path.iterdir())
    model = make_model()
    theta = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=match):
        train(model, loss_fn, torch.optim.SGD(model.parameters(), lr=0.1), make_data(),
              batch_size=BS, tensorboard=value)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), theta))  # nothing trained
    assert sorted(tmp_path.iterdir()) == files  # nothing written


# ---- CUDA (skipped without a GPU)

@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_logging_with_the_device_side_check_and_deterministic_kernels(tmp_path):
    """On CUDA with a fused optimizer the host reads every 64 steps; the log is still the History,
    step by step, and the histograms are counted on the device in deterministic mode."""
    X, y = make_data()

    def cuda_run(**kwargs):
        model = make_model().cuda()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
        hist = train(model, loss_fn, opt, (X, y), epochs=8, batch_size=BS, val_data=make_data(1, 90),
                     deterministic=True, **kwargs)
        return model, hist
    plain = cuda_run()
    model, hist = cuda_run(tensorboard=tmp_path)
    assert_same(*plain, model, hist)
    events = read(tmp_path)
    assert_scalars_are_the_history(events, hist)
    for name, p in model.named_parameters():
        assert [e.step for e in events.Scalars(f"update_ratio/{name}")] == list(range(1, 81))
        final = events.Histograms(f"weights/{name}")[-1].histogram_value
        assert final.num == p.numel() and sum(final.bucket) == p.numel()
