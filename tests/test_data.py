"""Data: offline generation, closed-form / quadrature true risks against Monte Carlo, IDX files."""
import gzip
import math
import os
import random
import socket

import numpy as np
import pytest
import torch

from course_lib import data
from course_lib.data import (GaussianClassificationTask, PolynomialRegressionTask, Split, digits,
                             load_idx, load_mnist_folder, mnist1d, polynomial_features,
                             train_val_split)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here fails if anything tries to open a connection."""
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ---- MNIST-1D and digits

def test_mnist1d_default_shapes_and_labels():
    split = mnist1d()
    assert isinstance(split, Split)
    assert split.X_train.shape == (4000, 40) and split.X_test.shape == (1000, 40)
    assert split.X_train.dtype == torch.float32 and split.y_train.dtype == torch.int64
    assert set(split.y_train.tolist()) == set(range(10))
    assert torch.bincount(torch.cat([split.y_train, split.y_test])).tolist() == [500] * 10
    X_all = torch.cat([split.X_train, split.X_test])
    assert abs(X_all.mean().item()) < 1e-5 and abs(X_all.std().item() - 1) < 1e-3  # standardized


def test_mnist1d_is_mnist1d_make_dataset_offline_and_writes_nothing(tmp_path, monkeypatch):
    from mnist1d.data import get_dataset_args, make_dataset
    monkeypatch.chdir(tmp_path)
    data._mnist1d_arrays.cache_clear()
    random.seed(123)
    np.random.seed(123)
    py_state, np_state = random.getstate(), np.random.get_state()[1].copy()
    split = mnist1d(num_samples=200, seed=7, train_split=0.75)
    assert os.listdir(tmp_path) == []  # no pickle, no download
    assert random.getstate() == py_state  # mnist1d reseeds the global RNGs: we restore them
    assert np.array_equal(np.random.get_state()[1], np_state)
    args = get_dataset_args()
    args.num_samples, args.seed, args.train_split = 200, 7, 0.75
    ref = make_dataset(args)
    assert np.array_equal(split.X_train.numpy(), ref["x"].astype(np.float32))
    assert np.array_equal(split.y_test.numpy(), ref["y_test"])
    assert split.X_train.shape == (150, 40)


def test_mnist1d_is_deterministic_cached_and_returns_copies():
    a = mnist1d(num_samples=100, seed=1)
    a.X_train.zero_()  # the cache must not see this
    b, c = mnist1d(num_samples=100, seed=1), mnist1d(num_samples=100, seed=2)
    assert b.X_train.abs().sum() > 0
    assert not torch.equal(b.X_train, c.X_train)
    assert data._mnist1d_arrays.cache_info().hits >= 1


@pytest.mark.parametrize("kwargs, match", [(dict(num_samples=105), "num_samples"),
                                           (dict(num_samples=0), "num_samples"),
                                           (dict(train_split=1.0), "train_split")])
def test_mnist1d_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mnist1d(**kwargs)


def test_digits_scaled_and_split():
    from sklearn.datasets import load_digits
    split = digits(seed=0, test_fraction=0.25)
    assert split.X_train.shape == (1348, 64) and split.X_test.shape == (449, 64)
    X_all = torch.cat([split.X_train, split.X_test])
    assert X_all.min() == 0 and X_all.max() == 1
    ref = torch.tensor(load_digits().data / 16, dtype=torch.float32)  # same rows, shuffled
    assert torch.equal(torch.sort(X_all.sum(1)).values, torch.sort(ref.sum(1)).values)
    assert torch.equal(digits(seed=0).X_test, split.X_test)


def test_train_val_split_is_a_partition():
    X, y = torch.arange(50.0).reshape(25, 2), torch.arange(25)
    (X_tr, y_tr), (X_val, y_val) = train_val_split(X, y, val_fraction=0.2, seed=3)
    assert len(X_val) == 5 and len(X_tr) == 20
    assert sorted(torch.cat([y_tr, y_val]).tolist()) == list(range(25))
    assert torch.equal(X_tr[:, 0], 2.0 * y_tr)  # rows stay paired
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(X, y, val_fraction=0.0)


# ---- synthetic tasks: the true risk

def test_polynomial_task_true_risk_in_closed_form():
    task = PolynomialRegressionTask(noise_std=0.3)
    assert task.true_risk(task.f) == pytest.approx(0.09, abs=1e-15)
    # E[sin²(πx)] = 1/2 and E[x sin(πx)] = 1/π for x ~ U[-1, 1]
    a, b = 0.2, 0.7
    exact = 0.09 + a ** 2 + b ** 2 / 3 - 2 * b / math.pi + 0.5
    assert task.true_risk(lambda x: a + b * x) == pytest.approx(exact, rel=1e-13)


def test_polynomial_task_true_risk_against_monte_carlo():
    task = PolynomialRegressionTask(noise_std=0.5)
    x, y = task.sample(400_000, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (400_000, 1) and x.min() >= -1 and x.max() <= 1
    w = torch.tensor([0.1, 0.9, 0.0, -0.8], dtype=torch.float64)
    predict = lambda x: polynomial_features(x, 3) @ w  # noqa: E731
    sq = (predict(x.double()) - y.double().reshape(-1)) ** 2
    se = sq.std().item() / math.sqrt(len(sq))
    assert abs(sq.mean().item() - task.true_risk(predict)) < 4 * se


def test_polynomial_features_and_least_squares_fit():
    x = torch.tensor([[-1.0], [0.5], [2.0]], dtype=torch.float64)
    assert torch.equal(polynomial_features(x, 2), torch.tensor([[1, -1, 1], [1, 0.5, 0.25], [1, 2, 4.0]]).double())
    task = PolynomialRegressionTask(noise_std=0.1)
    x, y = task.sample(2000, torch.Generator().manual_seed(1))
    w = torch.linalg.lstsq(polynomial_features(x.double(), 5), y.double()).solution
    risk = task.true_risk(lambda x: polynomial_features(x, 5) @ w)
    assert task.bayes_risk < risk < task.bayes_risk + 0.002  # close to, never below, σ²


def gaussian_task():
    return GaussianClassificationTask(mean0=[0.0, 0.0], mean1=[1.5, 0.5],
                                      cov=[[1.0, 0.3], [0.3, 0.5]], prior1=0.3)


def test_gaussian_task_risks_against_monte_carlo():
    task = gaussian_task()
    X, y = task.sample(1_000_000, torch.Generator().manual_seed(0))
    assert X.shape == (1_000_000, 2) and y.shape == (1_000_000, 1)
    assert abs(y.mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 1e6)
    X, y = X.double(), y.double().reshape(-1)
    for w, b in ((np.array([1.0, -0.5]), -0.4), (np.array([0.3, 2.0]), 0.2)):
        s = X @ torch.from_numpy(w) + b
        wrong = ((s > 0).double() != y).double()
        se = math.sqrt(wrong.mean().item() * (1 - wrong.mean().item()) / len(y))
        assert abs(wrong.mean().item() - task.true_zero_one_risk(w, b)) < 4 * se
        nll = torch.nn.functional.binary_cross_entropy_with_logits(s, y, reduction="none")
        se = nll.std().item() / math.sqrt(len(y))
        assert abs(nll.mean().item() - task.true_nll_risk(w, b)) < 4 * se


def test_gaussian_task_nll_risk_against_adaptive_quadrature():
    from scipy.integrate import quad
    from scipy.stats import norm
    task = gaussian_task()
    w, b = np.array([3.0, -4.0]), 0.5  # a large score variance: the softplus looks like a kink
    m, v = task.mu @ w + b, w @ task.cov @ w
    exact = sum(p * quad(lambda s: np.logaddexp(0, sign * s) * norm.pdf(s, mk, math.sqrt(v)), -np.inf, np.inf,
                         epsabs=1e-12, epsrel=1e-12)[0]
                for p, mk, sign in zip(task.prior, m, (1, -1)))
    assert task.true_nll_risk(w, b) == pytest.approx(exact, rel=1e-6)


def test_bayes_error_closed_form_and_optimality():
    # equal priors, identity covariance: Bayes error Φ(-Δ/2), Δ = ‖μ₁ - μ₀‖
    task = GaussianClassificationTask([0.0, 0.0, 0.0], [2.0, 0.0, 0.0])
    assert task.bayes_error() == pytest.approx(0.5 * math.erfc(1 / math.sqrt(2)), rel=1e-14)
    task = gaussian_task()
    w, b = task.bayes_classifier()
    best = task.bayes_error()
    rng = np.random.default_rng(0)
    for _ in range(50):  # no perturbed linear rule does better
        assert task.true_zero_one_risk(w + 0.1 * rng.normal(size=2), b + 0.1 * rng.normal()) >= best
    assert task.true_zero_one_risk(np.zeros(2), 1.0) == pytest.approx(0.7)  # always says 1
    assert task.true_zero_one_risk(torch.tensor([[1.0, -0.5]]), torch.tensor([-0.4])) == \
        pytest.approx(task.true_zero_one_risk(np.array([1.0, -0.5]), -0.4))  # nn.Linear's shapes


# ---- IDX files

def write_idx(path, array, code):
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[code]
    payload = bytes([0, 0, code, array.ndim]) + b"".join(n.to_bytes(4, "big") for n in array.shape)
    payload += np.ascontiguousarray(array, dtype=dtype).tobytes()
    with (gzip.open if str(path).endswith(".gz") else open)(path, "wb") as f:
        f.write(payload)


@pytest.mark.parametrize("code, dtype", [(0x08, np.uint8), (0x09, np.int8), (0x0B, np.int16),
                                         (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_load_idx_round_trip(tmp_path, code, dtype, suffix):
    rng = np.random.default_rng(0)
    array = rng.normal(size=(3, 4, 5)) * 50
    if np.issubdtype(dtype, np.integer):
        array = np.clip(array, np.iinfo(dtype).min, np.iinfo(dtype).max)
    array = array.astype(dtype)
    write_idx(tmp_path / f"a.idx{suffix}", array, code)
    back = load_idx(tmp_path / f"a.idx{suffix}")
    assert back.dtype == dtype and back.dtype.isnative and back.shape == (3, 4, 5)
    assert np.array_equal(back, array)


def test_load_idx_rejects_malformed_files(tmp_path):
    write_idx(tmp_path / "ok", np.zeros((2, 3), np.uint8), 0x08)
    good = (tmp_path / "ok").read_bytes()
    cases = {"magic": b"\x01" + good[1:], "dtype": good[:2] + b"\x07" + good[3:],
             "short": good[:-1], "long": good + b"\0", "header": good[:6]}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(ValueError, match="Malformed IDX file"):
            load_idx(tmp_path / name)
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match="Malformed IDX file"):
        load_idx(tmp_path / "bad.gz")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_idx(tmp_path / "missing")


def test_load_mnist_folder(tmp_path):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)).astype(np.uint8),
              "t10k": rng.integers(0, 256, (3, 28, 28)).astype(np.uint8)}
    labels = {"train": np.array([0, 1, 2, 3, 9], np.uint8), "t10k": np.array([4, 5, 6], np.uint8)}
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", images["train"], 0x08)
    write_idx(tmp_path / "train-labels-idx1-ubyte", labels["train"], 0x08)  # gzipped or not
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images["t10k"], 0x08)
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte.*download.*fashion-mnist"):
        load_mnist_folder(tmp_path, kind="fashion")
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels["t10k"], 0x08)
    split = load_mnist_folder(tmp_path)
    assert split.X_train.shape == (5, 784) and split.X_test.shape == (3, 784)
    assert split.X_train.dtype == torch.float32 and split.y_test.dtype == torch.int64
    assert torch.equal(split.X_train, torch.tensor(images["train"].reshape(5, -1) / 255, dtype=torch.float32))
    assert split.y_train.tolist() == [0, 1, 2, 3, 9]
    assert load_mnist_folder(tmp_path, flatten=False).X_test.shape == (3, 28, 28)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", labels["t10k"][:2], 0x08)
    with pytest.raises(ValueError, match="Malformed mnist t10k"):
        load_mnist_folder(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        load_mnist_folder(tmp_path, kind="cifar")
