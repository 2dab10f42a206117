"""How much does course_lib.train cost over the fastest loop one could write by hand?

MNIST-1D (4000 training signals), MLP 40-256-256-10, Adam (ε = 1e-3), minibatches of 64, a few
epochs, three loops with the same work per step:
  (a) course_lib.train.train, progress off (it also records loss, ‖g‖, lr and train accuracy,
      and checks every step for nan/inf);
  (b) a minimal loop over in-memory tensors: randperm + indexing, nothing recorded (the limit);
  (c) the tutorial loop: DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True) with the
      default num_workers=0 and default collate;
  (d) the same with num_workers=2, as in PyTorch's CIFAR-10 tutorial (for information);
  (e) with --tensorboard: (a) logging to TensorBoard (train(..., tensorboard=a temporary
      directory)), to measure what logging costs; (a) itself does not log.
Each is run `--repeats` times, interleaved; we report the median wall time, and the median CPU
time of this process (time.process_time: less sensitive to other jobs on a shared machine, but
blind to DataLoader worker processes).  Targets on the CPU: train/minimal ≤ 1.10 and
DataLoader(c)/train ≥ 2.

    python benchmarks/bench_train.py [--device cuda] [--threads 1] [--epochs 5] [--repeats 5]
                                     [--tensorboard]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's course_lib, however installed
from course_lib import get_device  # noqa: E402
from course_lib.data import mnist1d  # noqa: E402
from course_lib.models import mlp  # noqa: E402
from course_lib.train import train  # noqa: E402


HIDDEN = (256, 256)  # set from --hidden
OPTIMIZER = "adam"   # set from --optimizer
FUSED = None         # set from --fused: torch.optim's fused kernels (one launch per step on CUDA)


def setup(device):
    """A fresh model and optimizer from the same θ₀ every time."""
    model = mlp(40, HIDDEN, 10, generator=torch.Generator().manual_seed(0)).to(device)
    opt = (torch.optim.Adam(model.parameters(), lr=1e-3, fused=FUSED) if OPTIMIZER == "adam"
           else torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=FUSED))
    return model, opt, torch.nn.CrossEntropyLoss()


def run_course_lib(X, y, epochs, device):
    model, opt, loss_fn = setup(device)
    train(model, loss_fn, opt, (X, y), epochs=epochs, batch_size=64, device=device)


def run_course_lib_tensorboard(X, y, epochs, device):
    model, opt, loss_fn = setup(device)
    with tempfile.TemporaryDirectory() as logdir:
        train(model, loss_fn, opt, (X, y), epochs=epochs, batch_size=64, device=device,
              tensorboard=logdir)


def run_minimal(X, y, epochs, device):
    model, opt, loss_fn = setup(device)
    X, y = X.to(device), y.to(device)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(X), generator=gen).to(device).split(64):
            loss = loss_fn(model(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()


def run_dataloader(X, y, epochs, device, num_workers=0):
    model, opt, loss_fn = setup(device)
    loader = DataLoader(TensorDataset(X, y), batch_size=64, shuffle=True, num_workers=num_workers)
    for _ in range(epochs):
        for xb, yb in loader:
            xb, yb = xb.to(device), yb.to(device)
            loss = loss_fn(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()


def timed(fn, *args, device):
    """(wall seconds, CPU seconds of this process) for one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    fn(*args, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize()  # the GPU has finished too
    return time.perf_counter() - wall, time.process_time() - cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best there is)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--hidden", default="256,256",
                        help="hidden widths of the MLP (MNIST-1D paper's MLP: 100,100)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam",
                        help="torch.optim.Adam(lr=1e-3) or SGD(lr=0.05, momentum=0.9)")
    parser.add_argument("--fused", action="store_true",
                        help="fused=True: torch's fused optimizer step; train() then checks for "
                             "nan/inf on the device instead of syncing with the host every step")
    parser.add_argument("--host-check", action="store_true",
                        help="with --fused on a GPU: make train() read loss and norms on the host "
                             "every step anyway (what it does with any other optimizer), to "
                             "measure what the device-side check saves")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also time course_lib.train logging to TensorBoard (a temporary directory)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.host_check:
        sys.modules["course_lib.train"]._SYNC_IS_FREE = ("cpu", "cuda", "mps")
    global HIDDEN, OPTIMIZER, FUSED
    HIDDEN = tuple(int(h) for h in args.hidden.split(","))
    OPTIMIZER = args.optimizer
    FUSED = True if args.fused else None
    torch.set_num_threads(args.threads)
    device = get_device(args.device)
    data = mnist1d(num_samples=5000)  # 4000 train, 1000 test
    X, y = data.X_train, data.y_train
    runs = {"course_lib.train": run_course_lib, "minimal loop": run_minimal,
            "DataLoader": run_dataloader,
            "DataLoader, 2 workers": lambda *a, device: run_dataloader(*a, device=device, num_workers=2)}
    if args.tensorboard:
        runs["train + TensorBoard"] = run_course_lib_tensorboard
    for fn in runs.values():  # warm up: allocator, kernels, lazy imports
        fn(X[:256], y[:256], 1, device=device)
    times = {name: [] for name in runs}
    for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits all three
        for name, fn in runs.items():
            times[name].append(timed(fn, X, y, args.epochs, device=device))
    wall = {name: statistics.median(t[0] for t in ts) for name, ts in times.items()}
    cpu = {name: statistics.median(t[1] for t in ts) for name, ts in times.items()}
    steps = args.epochs * -(-len(X) // 64)
    print(f"MLP 40-{'-'.join(map(str, HIDDEN))}-10, {OPTIMIZER}{' (fused)' if FUSED else ''}"
          f"{', host check every step' if args.host_check else ''}, "
          f"torch {torch.__version__}, device {device}, {torch.get_num_threads()} thread(s), "
          f"{args.epochs} epochs x {steps // args.epochs} steps, medians of {args.repeats}")
    print(f"{'loop':<23}{'wall s':>8}{'ms/step':>9}{'/ train':>9}{'CPU s':>8}{'/ train':>9}")
    for name in runs:
        print(f"{name:<23}{wall[name]:>8.3f}{1e3 * wall[name] / steps:>9.3f}"
              f"{wall[name] / wall['course_lib.train']:>9.2f}{cpu[name]:>8.3f}"
              f"{cpu[name] / cpu['course_lib.train']:>9.2f}")
    for label, num, den, target, ok in (("train / minimal", "course_lib.train", "minimal loop", "<= 1.10",
                                         lambda r: r <= 1.10),
                                        ("DataLoader / train", "DataLoader", "course_lib.train", ">= 2",
                                         lambda r: r >= 2)):
        r_wall, r_cpu = wall[num] / wall[den], cpu[num] / cpu[den]
        print(f"{label:<19}= {r_wall:.3f} wall, {r_cpu:.3f} CPU   (target {target}: "
              f"{'met' if ok(r_wall) else 'NOT met'} by wall time, {'met' if ok(r_cpu) else 'NOT met'} by CPU time)")
    if args.tensorboard:
        num, den = "train + TensorBoard", "course_lib.train"
        print(f"{'TensorBoard / train':<19}= {wall[num] / wall[den]:.3f} wall, {cpu[num] / cpu[den]:.3f} CPU"
              "   (what logging every step costs; no target)")


if __name__ == "__main__":
    main()
