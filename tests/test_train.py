"""The training loop against hand-written PyTorch loops: same seed, same batch order, same bits."""
import math
import re

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course_lib.train import EarlyStopping, History, TrainingDiverged, evaluate, train

N, D, C, BS = 300, 10, 3, 32  # 10 minibatches per epoch, the last one of 12


def make_data(seed=0, n=N):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, D, generator=g)
    y = (X @ torch.randn(D, C, generator=g)).argmax(1)  # a linear teacher
    return X, y


def make_model(seed=0, dropout=0.2):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, C))
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(-0.3, 0.3, generator=g)
    return model


def adam(model, lr=1e-2):
    return torch.optim.Adam(model.parameters(), lr=lr)


loss_fn = nn.CrossEntropyLoss()


def reference_loop(model, opt, X, y, epochs, seed=0, clip=None, scheduler=None):
    """What a student would write: randperm from a seeded generator, index, step."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout
    losses, norms, correct = [], [], []
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).split(BS):
            out = model(X[idx])
            loss = loss_fn(out, y[idx])
            opt.zero_grad()
            loss.backward()
            params = list(model.parameters())
            if clip is None:
                norms.append(torch.nn.utils.get_total_norm([p.grad for p in params]).item())
            elif clip[0] == "norm":
                norms.append(torch.nn.utils.clip_grad_norm_(params, clip[1]).item())
            else:
                norms.append(torch.nn.utils.get_total_norm([p.grad for p in params]).item())
                torch.nn.utils.clip_grad_value_(params, clip[1])
            opt.step()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.item())
            correct.append((out.argmax(1) == y[idx]).sum().item())
    return losses, norms, correct


def assert_same_params(a, b):
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


def assert_same_history(h1, h2):
    a, b = h1.to_numpy(), h2.to_numpy()
    for table in a:
        for k in a[table]:
            np.testing.assert_array_equal(a[table][k], b[table][k], err_msg=f"{table}.{k}")
    assert (h1.best_epoch, h1.stopped_early, h1.stop_reason) == (h2.best_epoch, h2.stopped_early, h2.stop_reason)


def test_field_names_are_the_documented_ones():
    h = History()
    assert tuple(h.steps) == ("step", "epoch", "loss", "grad_norm", "lr")
    assert tuple(h.epochs) == ("epoch", "step", "train_loss", "train_accuracy", "val_loss", "val_accuracy")


def test_matches_hand_written_loop_bit_for_bit():
    X, y = make_data()
    model, ref = make_model(), make_model()
    hist = train(model, loss_fn, adam(model), (X, y), epochs=3, batch_size=BS, seed=5, device="cpu")
    losses, norms, correct = reference_loop(ref, adam(ref), X, y, epochs=3, seed=5)
    assert_same_params(model, ref)
    assert hist.steps["loss"] == losses
    np.testing.assert_allclose(hist.steps["grad_norm"], norms, rtol=1e-6)
    assert hist.steps["step"] == list(range(1, 31)) and hist.steps["epoch"] == [1] * 10 + [2] * 10 + [3] * 10
    assert hist.steps["lr"] == [1e-2] * 30
    assert hist.epochs["step"] == [10, 20, 30]
    assert hist.epochs["train_loss"] == [sum(losses[i:i + 10]) / 10 for i in (0, 10, 20)]
    assert hist.epochs["train_accuracy"] == [sum(correct[i:i + 10]) / N for i in (0, 10, 20)]
    assert all(math.isnan(v) for v in hist.epochs["val_loss"])
    assert hist.stop_reason == "completed 3 epochs" and not hist.stopped_early and hist.best_epoch is None
    assert model.training


def test_two_identical_calls_are_bit_identical():
    X, y = make_data()
    runs = []
    for _ in range(2):
        model = make_model()
        hist = train(model, loss_fn, adam(model), (X, y), epochs=2, batch_size=BS, val_data=make_data(1, 90))
        runs.append((model, hist))
    assert_same_params(runs[0][0], runs[1][0])
    assert_same_history(runs[0][1], runs[1][1])


def test_dataloader_matches_hand_written_dataloader_loop():
    X, y = make_data()
    model, ref = make_model(), make_model()
    loader = DataLoader(TensorDataset(X, y), batch_size=BS, shuffle=True)
    hist = train(model, loss_fn, adam(model), loader, epochs=2, seed=4)
    torch.manual_seed(4)  # train() seeds torch's global RNG; the loader shuffles with it
    opt, losses = adam(ref), []
    for _ in range(2):
        for xb, yb in loader:
            loss = loss_fn(ref(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert_same_params(model, ref)
    assert hist.steps["loss"] == losses


@pytest.mark.parametrize("clip", [("norm", 0.5), ("value", 0.05)])
def test_clipping_matches_torch_and_records_norm_before_clipping(clip):
    X, y = make_data()
    model, ref = make_model(), make_model()
    kwargs = {"clip_grad_norm": clip[1]} if clip[0] == "norm" else {"clip_grad_value": clip[1]}
    hist = train(model, loss_fn, adam(model), (X, y), epochs=2, batch_size=BS, **kwargs)
    _, norms, _ = reference_loop(ref, adam(ref), X, y, epochs=2, clip=clip)
    assert_same_params(model, ref)
    np.testing.assert_allclose(hist.steps["grad_norm"], norms, rtol=1e-6)
    assert max(hist.steps["grad_norm"]) > 0.5  # so the clipping did bite


def test_scheduler_per_step_and_per_epoch():
    X, y = make_data()
    model, ref = make_model(), make_model()
    opt = adam(model)
    hist = train(model, loss_fn, opt, (X, y), epochs=2, batch_size=BS,
                 scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.5))
    ref_opt = adam(ref)
    reference_loop(ref, ref_opt, X, y, epochs=2, scheduler=torch.optim.lr_scheduler.StepLR(ref_opt, 4, 0.5))
    assert_same_params(model, ref)
    assert hist.steps["lr"] == [1e-2 * 0.5 ** (t // 4) for t in range(20)]  # lr used by step t+1
    model = make_model()
    opt = adam(model)
    hist = train(model, loss_fn, opt, (X, y), epochs=3, batch_size=BS, scheduler_interval="epoch",
                 scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1))
    assert hist.steps["lr"] == pytest.approx([1e-2] * 10 + [1e-3] * 10 + [1e-4] * 10, rel=1e-12)


def test_reduce_lr_on_plateau_is_stepped_with_val_loss():
    X, y = make_data()
    model = make_model()
    opt = adam(model, lr=0.5)  # too large: the validation loss stalls
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    hist = train(model, loss_fn, opt, (X, y), epochs=5, batch_size=BS, val_data=make_data(1, 90), scheduler=plateau)
    # replay the rule on the recorded validation losses
    shadow = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
    ref = torch.optim.lr_scheduler.ReduceLROnPlateau(shadow, factor=0.5, patience=0)
    expected = []
    for val_loss in hist.epochs["val_loss"][:-1]:
        ref.step(val_loss)
        expected.append(shadow.param_groups[0]["lr"])
    first_lr_of_epoch = hist.steps["lr"][10::10]
    assert first_lr_of_epoch == expected and min(expected) < 0.5  # it did reduce


def anti_val_data():
    """Validation labels shifted by one class: the better the fit, the worse the val loss."""
    X, y = make_data(1, 90)
    return X, (y + 1) % C


def test_early_stopping_equals_training_for_best_epoch_epochs():
    X, y = make_data()
    model = make_model()
    stop = EarlyStopping(patience=2)
    hist = train(model, loss_fn, adam(model), (X, y), epochs=20, batch_size=BS, val_data=anti_val_data(),
                 early_stopping=stop)
    val = hist.epochs["val_loss"]
    best = int(np.argmin(val)) + 1
    assert hist.stopped_early and hist.best_epoch == best and len(val) == best + 2 < 20
    assert re.fullmatch(rf"early stopping: val_loss did not improve for 2 epochs \(best .* at epoch {best}\)",
                        hist.stop_reason)
    again = make_model()  # the same run, stopped at the best epoch by hand
    train(again, loss_fn, adam(again), (X, y), epochs=best, batch_size=BS)
    assert_same_params(model, again)
    last = make_model()  # restore_best=False keeps the last parameters
    train(last, loss_fn, adam(last), (X, y), epochs=20, batch_size=BS, val_data=anti_val_data(),
          early_stopping=EarlyStopping(patience=2, restore_best=False))
    again = make_model()
    train(again, loss_fn, adam(again), (X, y), epochs=best + 2, batch_size=BS)
    assert_same_params(last, again)


def test_early_stopping_max_mode_with_min_delta_replays_the_rule():
    X, y = make_data()
    model = make_model()
    hist = train(model, loss_fn, adam(model, 3e-3), (X, y), epochs=12, batch_size=BS, val_data=make_data(1, 90),
                 early_stopping=EarlyStopping(patience=2, monitor="train_accuracy", mode="max", min_delta=0.06))
    best, best_epoch, bad = None, None, 0
    for epoch, acc in enumerate(hist.epochs["train_accuracy"], 1):
        if best is None or acc > best + 0.06:
            best, best_epoch, bad = acc, epoch, 0
        else:
            bad += 1
        if bad == 2:
            break
    assert hist.best_epoch == best_epoch and len(hist.epochs["epoch"]) == epoch < 12
    assert hist.stopped_early and bad == 2


def test_divergence_stops_before_the_bad_update():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(256, 4, generator=g) * 10
    y = X @ torch.randn(4, 1, generator=g)

    def run(model, **kwargs):  # ε = 10 is far beyond 2/λ_max: the loss explodes
        train(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=10.0), (X, y), epochs=50,
              batch_size=BS, metrics=(), **kwargs)
        return model

    def fresh():
        model = nn.Linear(4, 1)
        with torch.no_grad():
            model.weight.fill_(0.1)
            model.bias.zero_()
        return model
    model = fresh()
    with pytest.raises(TrainingDiverged) as info:
        run(model)
    err = info.value
    assert isinstance(err, FloatingPointError)
    t = int(re.search(r"became (nan|inf) at step (\d+) \(epoch \d+, lr=10\)", str(err)).group(2))
    assert f"last good step, {t - 1}" in str(err) and t > 2
    assert len(err.history.steps["loss"]) == t - 1 and all(map(math.isfinite, err.history.steps["loss"]))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert_same_params(model, run(fresh(), max_steps=t - 1))  # exactly the parameters after step t-1


def test_eval_every_records_validation_between_epochs():
    X, y = make_data()
    val = make_data(1, 90)
    model = make_model()
    hist = train(model, loss_fn, adam(model), (X, y), epochs=2, batch_size=BS, val_data=val, eval_every=4)
    assert hist.evals["step"] == [4, 8, 10, 12, 16, 20]  # every 4 steps and at each epoch's end
    assert hist.epochs["val_loss"] == [hist.evals["val_loss"][2], hist.evals["val_loss"][5]]
    short = make_model()
    train(short, loss_fn, adam(short), (X, y), epochs=2, batch_size=BS, max_steps=8)
    ref = evaluate(short, loss_fn, val)
    assert (hist.evals["val_loss"][1], hist.evals["val_accuracy"][1]) == (ref["loss"], ref["accuracy"])


def test_evaluate_against_a_full_batch_computation():
    X, y = make_data()
    model = make_model()
    model.train()
    result = evaluate(model, loss_fn, (X, y), batch_size=7)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        out = model(X)
    assert result["loss"] == pytest.approx(loss_fn(out, y).item(), rel=1e-5)
    assert result["accuracy"] == (out.argmax(1) == y).sum().item() / N
    evaluate(model, loss_fn, DataLoader(TensorDataset(X, y), batch_size=50))
    assert not model.training
    # one logit per example, labels in {0, 1}: class 1 iff the logit is > 0
    logit = nn.Linear(D, 1)
    yb = (X[:, :1] > 0).float()
    acc = evaluate(logit, nn.BCEWithLogitsLoss(), (X, yb))["accuracy"]
    with torch.no_grad():
        assert acc == ((logit(X) > 0).float() == yb).sum().item() / N


def test_regression_without_metrics():
    X, y = make_data()
    target = X[:, :2].sum(1, keepdim=True)
    model = nn.Linear(D, 1)
    hist = train(model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.05), (X, target), epochs=3,
                 metrics=(), val_data=(X, target))
    assert all(math.isnan(v) for v in hist.epochs["train_accuracy"] + hist.epochs["val_accuracy"])
    assert hist.epochs["val_loss"][-1] == pytest.approx(evaluate(model, nn.MSELoss(), (X, target), metrics=())["loss"])
    assert hist.best_epoch == 3 and hist.epochs["val_loss"][-1] < hist.epochs["val_loss"][0] / 2


# ---- checkpoints

def full_run(tmp_path=None, **kwargs):
    """Adam + a step schedule + dropout + validation + early stopping: every piece of state."""
    X, y = make_data()
    model = make_model(seed=kwargs.pop("init_seed", 0))
    opt = adam(model)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.7)
    data = kwargs.pop("data", (X, y))
    stop = EarlyStopping(patience=10, restore_best=kwargs.pop("restore_best", False))
    hist = train(model, loss_fn, opt, data, epochs=4, batch_size=BS, val_data=make_data(1, 90), scheduler=sched,
                 early_stopping=stop, eval_every=6, **kwargs)
    return model, hist


@pytest.mark.parametrize("restore_best", [False, True])
def test_resume_after_max_steps_is_bit_identical(tmp_path, restore_best):
    path = tmp_path / "run.pt"
    model, hist = full_run(restore_best=restore_best)
    _, partial = full_run(checkpoint_path=path, checkpoint_every=5, max_steps=23, restore_best=restore_best)
    assert partial.stop_reason == "max_steps=23 reached" and len(partial.epochs["epoch"]) == 2  # mid-epoch 3
    # another θ₀, to show that the checkpoint replaces it
    resumed, rhist = full_run(checkpoint_path=path, resume=True, init_seed=99, restore_best=restore_best)
    assert_same_params(resumed, model)
    assert_same_history(rhist, hist)
    again, ahist = full_run(checkpoint_path=path, resume=True, restore_best=restore_best)  # nothing left to do
    assert_same_params(again, model)
    assert_same_history(ahist, hist)


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    path = tmp_path / "run.pt"
    model, hist = full_run()
    calls = {"n": 0}

    def crashing_loss(out, y):
        calls["n"] += torch.is_grad_enabled()  # count training steps, not validation batches
        if calls["n"] == 37:
            raise KeyboardInterrupt  # the student pressed stop during step 37
        return loss_fn(out, y)
    with pytest.raises(KeyboardInterrupt):
        X, y = make_data()
        m = make_model()
        opt = adam(m)
        train(m, crashing_loss, opt, (X, y), epochs=4, batch_size=BS, val_data=make_data(1, 90),
              scheduler=torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.7),
              early_stopping=EarlyStopping(patience=10), eval_every=6, checkpoint_path=path, checkpoint_every=10)
    assert torch.load(path, weights_only=True)["loop"]["step"] == 30
    resumed, rhist = full_run(checkpoint_path=path, resume=True)  # continues from step 30
    assert_same_params(resumed, model)
    assert_same_history(rhist, hist)


def test_resume_with_a_shuffling_dataloader(tmp_path):
    path = tmp_path / "run.pt"
    loader = DataLoader(TensorDataset(*make_data()), batch_size=BS, shuffle=True)
    model, hist = full_run(data=loader)
    full_run(data=loader, checkpoint_path=path, max_steps=14)
    resumed, rhist = full_run(data=loader, checkpoint_path=path, resume=True)
    assert_same_params(resumed, model)
    assert_same_history(rhist, hist)


def test_checkpoint_is_never_overwritten_silently(tmp_path):
    path = tmp_path / "run.pt"
    full_run(checkpoint_path=path, max_steps=3)
    with pytest.raises(FileExistsError, match="resume=True.*overwrite=True"):
        full_run(checkpoint_path=path)
    _, hist = full_run(checkpoint_path=path, overwrite=True, max_steps=5)
    assert len(hist.steps["step"]) == 5
    with pytest.raises(ValueError, match="batch_size"):
        X, y = make_data()
        m = make_model()
        train(m, loss_fn, adam(m), (X, y), batch_size=16, checkpoint_path=path, resume=True)


# ---- amp, progress, validation

def test_amp_on_cpu_warns_and_trains_in_float32():
    X, y = make_data()
    model, ref = make_model(), make_model()
    with pytest.warns(UserWarning, match="amp=True needs CUDA"):
        train(model, loss_fn, adam(model), (X, y), epochs=1, batch_size=BS, amp=True, device="cpu")
    train(ref, loss_fn, adam(ref), (X, y), epochs=1, batch_size=BS, device="cpu")
    assert_same_params(model, ref)


def test_progress_bar_has_no_rates_or_times(capsys, monkeypatch):
    # tqdm.auto picks its widget bar when the process hosts an IPython shell (an earlier test in
    # the same worker may have made one); the text bar is the one whose format is checked here
    import tqdm.auto
    import tqdm.std
    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.std.tqdm)
    X, y = make_data()
    model = make_model()
    train(model, loss_fn, adam(model), (X, y), epochs=2, batch_size=BS, progress=True)
    err = capsys.readouterr().err
    final = err.replace("\r", "\n").strip().splitlines()[-1]
    assert re.fullmatch(r"epoch 2/2 100%\|█+\| 20/20", final.strip()), final
    assert not re.search(r"it/s|s/it|\d\d:\d\d", err)


X0, Y0 = make_data(n=20)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), r"Invalid epochs: 0"),
    (dict(epochs=1.5), r"Invalid epochs: 1.5"),
    (dict(batch_size=0), r"Invalid batch_size: 0"),
    (dict(max_steps=0), r"Invalid max_steps: 0"),
    (dict(seed=-1), r"Invalid seed: -1"),
    (dict(clip_grad_norm=0), r"Invalid clip_grad_norm: 0"),
    (dict(clip_grad_value=-1.0), r"Invalid clip_grad_value: -1.0"),
    (dict(clip_grad_norm=1.0, clip_grad_value=1.0), r"Invalid clip_grad_value: 1.0 \(expected None when"),
    (dict(scheduler_interval="batch"), r"Invalid scheduler_interval: 'batch'"),
    (dict(metrics=("f1",)), r"Invalid metrics: \('f1',\)"),
    (dict(eval_every=5), r"Invalid eval_every: 5 \(expected None without val_data"),
    (dict(checkpoint_every=5), r"Invalid checkpoint_every"),
    (dict(early_stopping=EarlyStopping()), r"Invalid early_stopping.monitor: 'val_loss'"),
    (dict(early_stopping=EarlyStopping(monitor="train_accuracy"), metrics=()), r"Invalid early_stopping.monitor"),
    (dict(train_data=(X0, Y0[:19])), r"Invalid train_data: .*20 rows.*19"),
    (dict(train_data=(X0[:0], Y0[:0])), r"Invalid train_data: 'an empty dataset'"),
    (dict(val_data=(X0, Y0[:3])), r"Invalid val_data"),
    (dict(train_data=DataLoader(TensorDataset(X0[:0], Y0[:0]))), r"Invalid train_data: 'an empty DataLoader'"),
])
def test_bad_arguments_are_named(kwargs, match):
    model = make_model()
    kwargs.setdefault("train_data", (X0, Y0))
    with pytest.raises(ValueError, match=match):
        train(model, loss_fn, adam(model), kwargs.pop("train_data"), **kwargs)


@pytest.mark.parametrize("kwargs, match", [(dict(patience=0), "patience"), (dict(monitor="loss"), "monitor"),
                                           (dict(mode="best"), "mode"), (dict(min_delta=-1), "min_delta")])
def test_bad_early_stopping_is_named(kwargs, match):
    with pytest.raises(ValueError, match=f"Invalid {match}"):
        EarlyStopping(**kwargs)


# ---- the non-finite check on the device (fused optimizers), the device policy, determinism

def fused(model, kind="adam"):
    if kind == "adam":
        return torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=True)


@pytest.fixture
def check_on_device(monkeypatch):
    """On the CPU the host checks every step (a read costs nothing there); take the GPU's path."""
    import sys  # (the package re-exports the function train under the module's name)
    monkeypatch.setattr(sys.modules["course_lib.train"], "_SYNC_IS_FREE", ())


@pytest.mark.parametrize("kind", ["adam", "sgd"])
def test_device_side_check_matches_a_hand_written_loop(kind, check_on_device):
    """With a fused optimizer the check runs on the device; the updates and records are unchanged."""
    X, y = make_data()
    model, ref = make_model(), make_model()
    opt = fused(model, kind)
    hist = train(model, loss_fn, opt, (X, y), epochs=3, batch_size=BS, seed=5)
    losses, norms, correct = reference_loop(ref, fused(ref, kind), X, y, epochs=3, seed=5)
    assert_same_params(model, ref)
    assert hist.steps["loss"] == losses and hist.steps["step"] == list(range(1, 31))
    np.testing.assert_allclose(hist.steps["grad_norm"], norms, rtol=1e-6)
    assert hist.epochs["train_accuracy"] == [sum(correct[i:i + 10]) / N for i in (0, 10, 20)]
    assert not hasattr(opt, "found_inf") and not hasattr(opt, "grad_scale")  # nothing left behind


def test_device_side_check_reads_rarely_but_stops_before_the_bad_update(check_on_device):
    """A nan loss at step t: no update from step t on, the error names t, ε and the epoch, and the
    parameters and optimizer state are exactly those after step t-1, although the host only reads
    the values every _READ_EVERY steps."""
    from course_lib.train import _READ_EVERY
    X, y = make_data(n=2000)  # 63 steps an epoch: the nan comes between two reads
    t_bad = 40
    order = torch.randperm(len(X), generator=torch.Generator().manual_seed(3)).split(BS)
    X[order[t_bad - 1][0]] = float("nan")  # one example of step t_bad's batch

    def run(max_steps=None):
        model = make_model(dropout=0.0)
        opt = fused(model)
        train(model, loss_fn, opt, (X, y), epochs=2, batch_size=BS, seed=3, max_steps=max_steps)
        return model, opt
    assert _READ_EVERY > t_bad  # the first read comes after the bad step
    model = make_model(dropout=0.0)
    opt = fused(model)
    with pytest.raises(TrainingDiverged) as info:
        train(model, loss_fn, opt, (X, y), epochs=2, batch_size=BS, seed=3)
    err = info.value
    assert re.search(rf"loss became nan at step {t_bad} \(epoch 1, lr=0.01\)", str(err))
    assert f"last good step, {t_bad - 1}" in str(err)
    assert err.history.steps["step"] == list(range(1, t_bad))
    good, good_opt = run(max_steps=t_bad - 1)
    assert_same_params(model, good)
    for p, q in zip(model.parameters(), good.parameters()):
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(opt.state[p][key], good_opt.state[q][key]), key
    assert not hasattr(opt, "found_inf")
    p0 = next(model.parameters()).detach().clone()  # the optimizer still works afterwards
    model(torch.randn(4, D)).sum().backward()
    opt.step()
    assert not torch.equal(p0, next(model.parameters()))


def test_training_runs_where_the_model_is():
    """The device policy: no device= means the model's device, whatever get_device() would pick.
    (conftest makes get_device()'s automatic choice the meta device for every test, so any code
    that trains on the automatic device instead of where its data and model are fails loudly.)"""
    import course_lib.utils as utils
    assert utils.get_device() == torch.device("meta")  # the guard of conftest is on
    X, y = make_data()
    model = make_model()
    hist = train(model, loss_fn, adam(model), (X, y), epochs=1, batch_size=BS)
    assert all(p.device.type == "cpu" for p in model.parameters()) and len(hist.steps["loss"]) == 10
    assert 0 <= evaluate(model, loss_fn, (X, y))["accuracy"] <= 1
    with pytest.raises(Exception):  # what the guard catches: training on the automatic device
        train(make_model(), loss_fn, adam(model), (X, y), epochs=1, batch_size=BS, device=utils.get_device())


def test_deterministic_restores_torch_settings():
    from course_lib.utils import deterministic
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic():
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert torch.are_deterministic_algorithms_enabled() == before
    X, y = make_data()
    a, b = make_model(), make_model()
    train(a, loss_fn, adam(a), (X, y), epochs=1, batch_size=BS, deterministic=True)
    train(b, loss_fn, adam(b), (X, y), epochs=1, batch_size=BS)
    assert_same_params(a, b)
    assert torch.are_deterministic_algorithms_enabled() == before
    with pytest.raises(ValueError, match="Invalid deterministic"):
        train(a, loss_fn, adam(a), (X, y), deterministic="yes")


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@cuda
def test_cuda_model_trains_on_cuda_with_cpu_data():
    X, y = make_data()
    model = make_model().cuda()
    hist = train(model, loss_fn, adam(model), (X, y), epochs=2, batch_size=BS)
    assert next(model.parameters()).is_cuda and all(map(math.isfinite, hist.steps["loss"]))
    assert 0 <= evaluate(model, loss_fn, (X, y))["accuracy"] <= 1


@cuda
def test_cuda_deterministic_training_is_bit_identical():
    """A small CNN on CUDA, trained twice with deterministic=True: the same bits."""
    from course_lib.models import small_cnn
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(512, 40, generator=g), torch.randint(0, 10, (512,), generator=g)

    def run():
        torch.manual_seed(0)
        model = small_cnn().cuda()
        train(model, loss_fn, torch.optim.Adam(model.parameters(), lr=1e-3), (X, y), epochs=3,
              batch_size=64, deterministic=True)
        return model
    assert_same_params(run(), run())


@cuda
def test_cuda_device_side_check_stops_before_the_bad_update():
    X, y = make_data()
    X[5] = float("inf")
    model = make_model(dropout=0.0).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    with pytest.raises(TrainingDiverged, match="at step 1 "):
        train(model, loss_fn, opt, (X, y), epochs=1, batch_size=BS, shuffle=False)
    assert all(torch.isfinite(p).all() for p in model.parameters())
