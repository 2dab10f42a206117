"""Learning vs pure optimization (Deep Learning book, §8.1): the experiments of chapter 1.

Machine learning minimizes a cost it can compute as a stand-in for one it cannot.  With a
loss L, a model f(x; θ) and the data-generating distribution p_data,

    risk             J*(θ) = E_{(x,y)~p_data} L(f(x;θ), y)             (DL book, eq. 8.2)
    empirical risk   J(θ)  = (1/m) Σ_{i=1..m} L(f(x⁽ⁱ⁾;θ), y⁽ⁱ⁾)        (DL book, eq. 8.3)

The tasks of :mod:`course_lib.data` know p_data, so here J* is computed (quadrature, closed
form), never estimated.  The module has four parts, in the order of the chapter:

1. Risk vs empirical risk for polynomial regression: :func:`fit_polynomial` (empirical risk
   minimization for the squared loss, solved exactly), :func:`risk_vs_degree` (training risk
   falls with capacity, the risk does not), :func:`risk_vs_n` (the empirical risk of a fixed
   model concentrates around its risk like 1/√m; that of the fitted model is biased low).
2. Linear classifiers θ = (w, b) with scores s = w·x + b, batched over θ: the 0-1 loss
   (:func:`zero_one_loss`, zero gradient almost everywhere) and its surrogate, the logistic
   negative log-likelihood (:func:`logistic_loss`); :func:`finite_difference_gradient`,
   :func:`autograd_gradient`, :func:`nonzero_gradient_fraction`, :func:`losses_along_line`.
3. :func:`train_logistic_regression`: full-batch gradient descent (``course_lib.SGD``) on the
   NLL, recording the training NLL, the training 0-1 loss and the true 0-1 risk at every step;
   :func:`separation_study` repeats it over training sets, on a task with a gap between the
   classes (:func:`separable_task`) and on one without (:func:`overlapping_task`).
4. :func:`early_stopping_experiment`: an MLP on a small MNIST-1D subset trained by
   ``course_lib.train`` with and without ``EarlyStopping``; :func:`full_gradient_norm`;
   :func:`stopping_epochs` (the rule on a recorded curve) and :func:`early_stopping_study`
   (stopping on the validation NLL vs on the validation 0-1 error, over seeds).

The settings the chapter uses are the module constants below; the notebook and
``tests/test_ch01_erm.py`` both read them, so the numbers in the text and in the tests agree.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from course_lib.data import (GaussianClassificationTask, PolynomialRegressionTask, mnist1d,
                             polynomial_features)
from course_lib.models import mlp
from course_lib.optim import SGD, Adam
from course_lib.train import EarlyStopping, train
from course_lib.utils import shared_result

__all__ = [
    # 1. risk and empirical risk
    "squared_error", "empirical_risk", "PolynomialModel", "fit_polynomial", "training_sample",
    "RiskSweep", "risk_vs_degree", "risk_vs_n", "loss_std", "plot_polynomial_fit",
    # 2. the 0-1 loss and its surrogate
    "linear_scores", "margins", "zero_one_loss", "logistic_loss", "linear_classifier_losses",
    "finite_difference_gradient", "autograd_gradient", "nonzero_gradient_fraction",
    "gradient_study", "losses_along_line",
    # 3. minimizing the surrogate
    "separable_task", "overlapping_task", "classification_sample", "LogisticRun",
    "train_logistic_regression", "separation_study", "plot_linear_classifiers",
    # 4. early stopping
    "full_gradient_norm", "EarlyStoppingResult", "early_stopping_experiment",
    "stopping_epochs", "early_stopping_study", "heldout_error_after", "plot_early_stopping",
    # figures
    "plot_risk_vs_degree", "plot_risk_vs_n", "plot_zero_one_gradient", "plot_logistic_run",
]

# ---------------------------------------------------------------------------------------------
# The chapter's settings (read by the notebook and by tests/test_ch01_erm.py)

SEED = 0
POLY_NOISE_STD = 0.3            # σ of y = sin(πx) + ξ; the Bayes risk is σ² = 0.09
POLY_N = 20                     # training points in the degree sweep
POLY_DEGREES = tuple(range(13))  # capacities 0..12
POLY_REPEATS = 30               # training sets summarized (median) in the degree sweep
POLY_FIXED_DEGREE = 3           # the "fixed model" whose empirical risk we sample as m grows
POLY_NS = (10, 20, 50, 100, 200, 500, 1000, 2000)
POLY_N_REPEATS = 100            # fresh samples per m
# Gauss-Legendre nodes for the true risk: exact for polynomial integrands of degree < 80, so for
# (f̂ - f)² with f̂ of degree ≤ 12 and f = sin(πx) the error is at rounding level (tested), and
# 40 nodes cost a fraction of the default 100 (numpy recomputes the nodes at every call).
POLY_QUAD_NODES = 40

SEP_N = 100                     # training points of the 2-D separable classification task
SEP_STEPS = 1000                # full-batch gradient descent steps on the NLL
SEP_LR = 1.0                    # ε
SEP_SEEDS = tuple(range(10))    # training sets of the robustness check
OVERLAP_DIM = 10                # the counterexample: overlapping classes in 10 dimensions ...
OVERLAP_N = 15                  # ... and too few points, so the training sets are separable
FD_STEPS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)  # finite-difference steps h
FD_POINTS = 2000                # random θ at which gradients are checked

ES_N = 1000                     # MNIST-1D examples: half to train, half to validate
ES_HIDDEN = (128,)
ES_LR = 3e-3                    # Adam's ε
ES_PATIENCE = 50                # epochs without improvement before stopping
ES_EPOCHS = 400                 # the run without early stopping (the validation error has
                                # levelled off by then in every seed of ES_SEEDS)
ES_MONITOR = "val_accuracy"     # the chapter stops on the 0-1 error, the loss we care about
ES_SEEDS = tuple(range(5))      # data sets and initializations of the robustness check
ES_TEST_N = 1000                # fresh MNIST-1D examples that judge both rules (chose nothing)
ES_TEST_SEED = 1000             # the test set of seed s is drawn with seed ES_TEST_SEED + s


def _check(name: str, value, ok: bool, expected: str):
    if not ok:
        raise ValueError(f"Invalid {name}: {value!r} (expected {expected})")


def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _generator(seed) -> torch.Generator:
    _check("seed", seed, _is_int(seed) and seed >= 0, "an int >= 0")
    return torch.Generator().manual_seed(int(seed))


# ---------------------------------------------------------------------------------------------
# 1. Risk and empirical risk: polynomial regression on y = f(x) + ξ

def squared_error(prediction: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L(ŷ, y) = (ŷ - y)², elementwise."""
    return (prediction - y) ** 2


def empirical_risk(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                   y: torch.Tensor, loss: Callable = squared_error) -> float:
    """J(θ) = (1/m) Σᵢ L(f(x⁽ⁱ⁾), y⁽ⁱ⁾): the mean loss of `predict` over the sample (x, y).

    `predict` maps x (m, ...) to predictions with y's number of elements; both are
    compared as flat float64 vectors.
    """
    _check("x", tuple(x.shape), len(x) == len(y) and len(x) > 0,
           f"as many rows as y ({len(y)}), at least one")
    pred = torch.as_tensor(predict(x)).double().reshape(-1)
    target = torch.as_tensor(y).double().reshape(-1)
    _check("predict", f"{pred.numel()} predictions", pred.numel() == target.numel(),
           f"one prediction per target ({target.numel()})")
    return float(loss(pred, target).mean())


@dataclass(frozen=True)
class PolynomialModel:
    """f(x; θ) = Σ_k θ_k x^k, a callable predictor (float64 in, float64 out, shape (N, 1))."""
    coef: torch.Tensor  # θ, float64 (degree + 1,)

    @property
    def degree(self) -> int:
        return len(self.coef) - 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return polynomial_features(torch.as_tensor(x).double(), self.degree) @ self.coef.reshape(-1, 1)


def fit_polynomial(x: torch.Tensor, y: torch.Tensor, degree: int) -> PolynomialModel:
    """The empirical risk minimizer for the squared loss among polynomials of `degree`.

    argmin_θ (1/m) Σᵢ (Σ_k θ_k xᵢ^k - yᵢ)² is a linear least-squares problem, solved exactly
    (SVD, float64).  With more coefficients than points (degree + 1 > m) the minimizer is not
    unique: we return the one of least norm, an interpolant.
    """
    _check("degree", degree, _is_int(degree) and degree >= 0, "an int >= 0")
    _check("x", tuple(x.shape), len(x) == len(y) and len(x) > 0,
           f"as many rows as y ({len(y)}), at least one")
    A = polynomial_features(torch.as_tensor(x).double().reshape(-1), int(degree))  # (m, degree+1)
    b = torch.as_tensor(y).double().reshape(-1, 1)
    coef = torch.linalg.lstsq(A, b, driver="gelsd").solution.reshape(-1)
    return PolynomialModel(coef)


def training_sample(task: PolynomialRegressionTask, n: int = POLY_N, seed: int = SEED):
    """The first training set that :func:`risk_vs_degree` draws with this seed: (x, y), (n, 1) each."""
    _check("n", n, _is_int(n) and n >= 1, "an int >= 1")
    return task.sample(n, _generator(seed))


@dataclass(frozen=True)
class RiskSweep:
    """Training risk J(θ̂) and risk J*(θ̂) of fitted models; rows are training sets."""
    values: np.ndarray      # the swept setting: degrees (risk_vs_degree) or sizes m (risk_vs_n)
    train_risk: np.ndarray  # (repeats, len(values))
    true_risk: np.ndarray   # (repeats, len(values))

    @property
    def median_true_risk(self) -> np.ndarray:
        return np.median(self.true_risk, axis=0)

    @property
    def best_degree(self) -> int:
        """The value (degree) at which the median risk is least."""
        return int(self.values[int(np.argmin(self.median_true_risk))])


@shared_result
def risk_vs_degree(task: PolynomialRegressionTask, n: int = POLY_N,
                   degrees: Sequence[int] = POLY_DEGREES, repeats: int = POLY_REPEATS,
                   seed: int = SEED) -> RiskSweep:
    """Fit every degree to each of `repeats` training sets of `n` points; row r uses the
    r-th sample drawn from one generator seeded with `seed` (row 0 is the sample the chapter
    plots).  The training risks of one row never increase with the degree: the polynomials of
    degree k are among those of degree k + 1 and the fit is exact."""
    _check("n", n, _is_int(n) and n >= 1, "an int >= 1")
    _check("repeats", repeats, _is_int(repeats) and repeats >= 1, "an int >= 1")
    _check("degrees", degrees, len(degrees) > 0 and all(_is_int(d) and d >= 0 for d in degrees),
           "a non-empty sequence of ints >= 0")
    gen = _generator(seed)
    train, true = np.empty((repeats, len(degrees))), np.empty((repeats, len(degrees)))
    for r in range(repeats):
        x, y = task.sample(n, gen)
        for j, degree in enumerate(degrees):
            model = fit_polynomial(x, y, degree)
            train[r, j] = empirical_risk(model, x, y)
            true[r, j] = task.true_risk(model, n_nodes=POLY_QUAD_NODES)
    return RiskSweep(np.asarray(degrees), train, true)


def loss_std(task: PolynomialRegressionTask, predict: Callable, n_nodes: int = POLY_QUAD_NODES) -> float:
    """The standard deviation of the squared loss L = (f̂(x) - y)² under p_data, by quadrature.

    With e(x) = f̂(x) - f(x) and y = f(x) + ξ, ξ ~ N(0, σ²):  E[L | x] = e² + σ² and
    E[L² | x] = e⁴ + 6e²σ² + 3σ⁴, so Var L = ½∫(e⁴ + 6e²σ² + 3σ⁴)dx - (J*)².  The empirical
    risk of a fixed model on m fresh points then has standard deviation loss_std / √m.
    """
    nodes, weights = np.polynomial.legendre.leggauss(n_nodes)  # ∫_{-1}^{1} g ≈ Σ wᵢ g(xᵢ)
    x = torch.tensor(nodes, dtype=torch.float64).reshape(-1, 1)
    with torch.no_grad():
        e = (torch.as_tensor(predict(x)).double().reshape(-1) - task.f(x).reshape(-1)).numpy()
    s2 = task.noise_std ** 2
    second = 0.5 * np.dot(weights, e ** 4 + 6 * e ** 2 * s2 + 3 * s2 ** 2)  # E[L²]
    first = 0.5 * np.dot(weights, e ** 2) + s2                             # E[L] = J*
    return float(math.sqrt(max(second - first ** 2, 0.0)))


@shared_result
def risk_vs_n(task: PolynomialRegressionTask, model: Callable, ns: Sequence[int] = POLY_NS,
              repeats: int = POLY_N_REPEATS, degree: int = POLY_FIXED_DEGREE,
              seed: int = SEED + 1) -> tuple[RiskSweep, RiskSweep]:
    """Two views of the empirical risk on `repeats` fresh samples of each size m in `ns`.

    Returns (fixed, fitted):
      fixed:  the empirical risk of the given `model` (chosen before seeing the sample) in
              ``train_risk``, its risk in ``true_risk`` (the same number in every cell);
      fitted: the model of `degree` fitted to each sample: its training risk and its risk.
    Both use the same samples.  The first is unbiased, E J = J*; the second is not.  The
    default seed differs from that of :func:`training_sample`, so that a model fitted to the
    chapter's training set is evaluated on fresh points.
    """
    _check("repeats", repeats, _is_int(repeats) and repeats >= 2, "an int >= 2")
    _check("ns", ns, len(ns) > 0 and all(_is_int(m) and m >= 1 for m in ns),
           "a non-empty sequence of ints >= 1")
    gen = _generator(seed)
    risk = task.true_risk(model, n_nodes=POLY_QUAD_NODES)
    shape = (repeats, len(ns))
    fixed_emp, fit_train, fit_true = np.empty(shape), np.empty(shape), np.empty(shape)
    for j, m in enumerate(ns):
        for r in range(repeats):
            x, y = task.sample(m, gen)
            fixed_emp[r, j] = empirical_risk(model, x, y)
            fitted = fit_polynomial(x, y, degree)
            fit_train[r, j] = empirical_risk(fitted, x, y)
            fit_true[r, j] = task.true_risk(fitted, n_nodes=POLY_QUAD_NODES)
    values = np.asarray(ns)
    return (RiskSweep(values, fixed_emp, np.full(shape, risk)),
            RiskSweep(values, fit_train, fit_true))


def plot_polynomial_fit(task: PolynomialRegressionTask, x: torch.Tensor, y: torch.Tensor,
                        model: PolynomialModel, ax=None, ylim=(-2.0, 2.0)):
    """The training points, the true regression function f and the fitted polynomial; the
    title gives the training risk J, the risk J* and the Bayes risk σ².  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4))
    grid = torch.linspace(-1, 1, 400, dtype=torch.float64).reshape(-1, 1)
    with torch.no_grad():
        ax.plot(grid, task.f(grid), color="black", lw=1.5, ls="--", label=r"$f(x) = E[y \mid x]$")
        ax.plot(grid, model(grid), color="tab:red", lw=2, label=f"fit, degree {model.degree}")
    ax.scatter(x.reshape(-1), y.reshape(-1), s=18, color="tab:blue", zorder=3,
               label=f"training set, m = {len(x)}")
    ax.set_ylim(*ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    J, J_star = empirical_risk(model, x, y), task.true_risk(model, n_nodes=POLY_QUAD_NODES)
    ax.set_title(f"training risk J = {J:.3g},  risk J* = {J_star:.3g}  (Bayes {task.bayes_risk:.3g})",
                 fontsize="medium")
    ax.legend(fontsize="small", loc="lower left")
    return ax


# ---------------------------------------------------------------------------------------------
# 2. Linear classifiers: the 0-1 loss and its surrogate.  θ = (w₁..w_d, b) is a vector of
#    length d + 1, or a batch of them, shape (..., d + 1); every function below broadcasts.

def linear_scores(theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """s = Xw + b for θ = (w, b): θ of shape (..., d + 1), X (m, d) → scores (..., m)."""
    _check("theta", tuple(theta.shape), theta.shape[-1] == X.shape[-1] + 1,
           f"a last dimension of d + 1 = {X.shape[-1] + 1}")
    return theta[..., :-1] @ X.T.to(theta.dtype) + theta[..., -1:]


def margins(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The margin ỹs with ỹ = 2y - 1 ∈ {-1, +1} for labels y ∈ {0, 1}: positive iff ŷ = [s > 0]
    is right (ỹs = 0, a point on the boundary, counts as an error for y = 1 only)."""
    y = torch.as_tensor(y).reshape(-1).to(scores.dtype)
    _check("y", tuple(y.shape), y.shape[-1] == scores.shape[-1],
           f"one label per score ({scores.shape[-1]})")
    return (2 * y - 1) * scores


def zero_one_loss(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The fraction misclassified by ŷ = [s > 0] (the convention of course_lib.train and of
    ``GaussianClassificationTask``), averaged over the last dimension.

    Written with differentiable operations, ŷ = max(sign(s), 0), so that autograd *can* run
    through it: it returns the derivative of a step function, which is 0 wherever it exists.
    """
    y = torch.as_tensor(y).reshape(-1).to(scores.dtype)
    _check("y", tuple(y.shape), y.shape[-1] == scores.shape[-1],
           f"one label per score ({scores.shape[-1]})")
    y_hat = torch.sign(scores).clamp(min=0)  # 1 if s > 0 else 0
    return (y_hat - y).abs().mean(-1)


def logistic_loss(margin: torch.Tensor) -> torch.Tensor:
    """The negative log-likelihood of the logistic model, -log σ(ỹs) = log(1 + e^{-ỹs}), of the
    margins ỹs, averaged over the last dimension.  Equal to ``BCEWithLogitsLoss`` of the scores
    for labels y ∈ {0, 1}.

    Computed by torch's softplus(-ỹs), which never exponentiates a large positive number (above
    a threshold it returns its argument), so a margin of -1000 gives 1000, not inf.
    """
    return torch.nn.functional.softplus(-margin).mean(-1)


def linear_classifier_losses(X: torch.Tensor, y: torch.Tensor) -> dict[str, Callable]:
    """{"0-1 loss": θ ↦ J₀₁(θ), "NLL": θ ↦ J_NLL(θ)} on the sample (X, y), each taking θ of
    shape (..., d + 1) (float64 recommended) and returning (...,)."""
    X, y = X.double(), torch.as_tensor(y).double().reshape(-1)
    return {"0-1 loss": lambda theta: zero_one_loss(linear_scores(theta, X), y),
            "NLL": lambda theta: logistic_loss(margins(linear_scores(theta, X), y))}


def finite_difference_gradient(fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                               h: float) -> torch.Tensor:
    """Central differences (fn(θ + h eⱼ) - fn(θ - h eⱼ)) / 2h for every coordinate j.

    fn maps a batch of parameter vectors (B, P) to values (B,); theta is (P,) or (B, P)
    and the result has its shape.  Use float64: with float32 the rounding error of fn is
    divided by 2h.
    """
    _check("h", h, h > 0, "a number > 0")
    thetas = theta.reshape(-1, theta.shape[-1])
    grad = torch.empty_like(thetas)
    with torch.no_grad():
        for j in range(thetas.shape[1]):
            step = torch.zeros_like(thetas)
            step[:, j] = h
            grad[:, j] = (fn(thetas + step) - fn(thetas - step)) / (2 * h)
    return grad.reshape(theta.shape)


def autograd_gradient(fn: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    """∇fn at θ by autograd, for θ of shape (P,) or a batch (B, P) (the rows are independent,
    so the gradient of the sum gives every row's gradient at once)."""
    theta = theta.detach().clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(fn(theta).sum(), theta)
    return grad


def nonzero_gradient_fraction(fn: Callable, thetas: torch.Tensor, hs: Sequence[float]) -> np.ndarray:
    """For each step h: the fraction of the rows of `thetas` (B, P) at which the central
    finite-difference gradient of fn has a non-zero entry.

    For a piecewise constant fn (the 0-1 loss) a difference is non-zero only when θ lies within
    h of a jump, a set whose size shrinks like h: the derivative is zero almost everywhere.
    """
    _check("thetas", tuple(thetas.shape), thetas.ndim == 2, "a (B, P) batch of parameter vectors")
    return np.array([(finite_difference_gradient(fn, thetas, h) != 0).any(-1).double().mean().item()
                     for h in hs])


@shared_result
def gradient_study(X: torch.Tensor, y: torch.Tensor, hs: Sequence[float] = FD_STEPS,
                   n_points: int = FD_POINTS, seed: int = SEED) -> dict[str, dict]:
    """Gradients of the 0-1 loss and of the NLL of a linear classifier on (X, y), at `n_points`
    parameter vectors θ ~ N(0, I) (float64, drawn from a generator seeded with `seed`).

    Returns, per loss name: ``autograd_nonzero`` (the fraction of the θ at which autograd's
    gradient has a non-zero entry) and ``fd_nonzero`` (the same for central differences, one
    entry per h in `hs`).
    """
    _check("n_points", n_points, _is_int(n_points) and n_points >= 1, "an int >= 1")
    thetas = torch.randn(n_points, X.shape[1] + 1, generator=_generator(seed), dtype=torch.float64)
    out = {}
    for name, fn in linear_classifier_losses(X, y).items():
        auto = (autograd_gradient(fn, thetas) != 0).any(-1).double().mean().item()
        out[name] = {"autograd_nonzero": auto, "fd_nonzero": nonzero_gradient_fraction(fn, thetas, hs)}
    return out


def losses_along_line(losses: Mapping[str, Callable], theta_a: torch.Tensor,
                      theta_b: torch.Tensor, ts) -> dict[str, np.ndarray]:
    """name → fn(θ_a + t (θ_b - θ_a)) for every t in ts (each fn takes a (B, P) batch)."""
    ts = torch.as_tensor(np.asarray(ts, dtype=np.float64))
    line = theta_a.double() + ts.reshape(-1, 1) * (theta_b.double() - theta_a.double())  # (T, P)
    with torch.no_grad():
        return {name: fn(line).numpy() for name, fn in losses.items()}


# ---------------------------------------------------------------------------------------------
# 3. Minimizing the surrogate on separable data

def separable_task() -> GaussianClassificationTask:
    """The chapter's 2-D task: class means (∓1, 0), unit variances, correlation 0.97.

    The classes overlap only in the far tails (Bayes error ≈ 2e-5), so 100 points are almost
    always linearly separable, and the mean difference (the direction the first gradient steps
    take) is far from the best direction Σ⁻¹(x̄₁ - x̄₀) (x̄_y: the class means): the training error reaches 0 with a
    poor boundary, and gradient descent on the NLL then keeps improving it.
    """
    return GaussianClassificationTask([-1.0, 0.0], [1.0, 0.0], [[1.0, 0.97], [0.97, 1.0]])


def overlapping_task(dim: int = OVERLAP_DIM) -> GaussianClassificationTask:
    """The counterexample: class means (∓1, 0, ..., 0) in `dim` dimensions, identity covariance.

    The classes overlap heavily (Bayes error Φ(-1) ≈ 0.16), yet OVERLAP_N = 15 points in 10
    dimensions are usually linearly separable: the separation is an accident of the sample,
    and pushing the margins further fits noise.
    """
    _check("dim", dim, _is_int(dim) and dim >= 1, "an int >= 1")
    mean = np.zeros(dim)
    mean[0] = 1.0
    return GaussianClassificationTask(-mean, mean)


def classification_sample(task: GaussianClassificationTask, n: int = SEP_N, seed: int = SEED):
    """(X, y): n points of `task` drawn from a generator seeded with `seed`."""
    _check("n", n, _is_int(n) and n >= 1, "an int >= 1")
    return task.sample(n, _generator(seed))


@dataclass(frozen=True)
class LogisticRun:
    """Gradient descent on the NLL of a linear classifier; index t = 0..T is θ_t."""
    thetas: np.ndarray       # (T + 1, d + 1): θ_t = (w, b)
    nll: np.ndarray          # training NLL J(θ_t)
    train_error: np.ndarray  # training 0-1 loss
    true_error: np.ndarray   # true 0-1 risk (closed form), nan without a task

    @property
    def steps(self) -> np.ndarray:
        return np.arange(len(self.nll))

    @property
    def first_zero_error_step(self) -> int | None:
        """The first t with training 0-1 loss 0 (None if never)."""
        hits = np.flatnonzero(self.train_error == 0)
        return int(hits[0]) if len(hits) else None


def train_logistic_regression(X: torch.Tensor, y: torch.Tensor, *, steps: int = SEP_STEPS,
                              lr: float = SEP_LR, task: GaussianClassificationTask | None = None,
                              theta0: torch.Tensor | None = None) -> LogisticRun:
    """Full-batch gradient descent θ ← θ - ε∇J(θ) on the logistic NLL of s = w·x + b.

    The update is ``course_lib.SGD`` (no momentum) on the float64 vector θ = (w, b), from
    θ₀ = 0 unless `theta0` is given.  Records, at every θ_t: the training NLL, the training
    0-1 loss and, if `task` is given, the true 0-1 risk ``task.true_zero_one_risk``.
    """
    _check("steps", steps, _is_int(steps) and steps >= 1, "an int >= 1")
    _check("lr", lr, lr > 0, "a number > 0")
    _check("X", tuple(X.shape), X.ndim == 2 and len(X) == len(y), f"(m, d) with m = len(y) = {len(y)}")
    X = X.double()
    y = torch.as_tensor(y).double().reshape(-1)
    theta = torch.zeros(X.shape[1] + 1, dtype=torch.float64) if theta0 is None else theta0.double().clone()
    theta.requires_grad_(True)
    opt = SGD([theta], lr=lr)
    thetas, nll, err = [], [], []
    for t in range(steps + 1):
        s = linear_scores(theta, X)
        loss = logistic_loss(margins(s, y))
        thetas.append(theta.detach().clone())
        nll.append(loss.item())
        err.append(zero_one_loss(s.detach(), y).item())
        if t == steps:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    thetas = torch.stack(thetas).numpy()
    true = (np.array([task.true_zero_one_risk(th[:-1], th[-1]) for th in thetas])
            if task is not None else np.full(len(thetas), np.nan))
    return LogisticRun(thetas, np.array(nll), np.array(err), true)


@shared_result
def separation_study(task: GaussianClassificationTask, seeds: Sequence[int] = SEP_SEEDS,
                     n: int = SEP_N, steps: int = SEP_STEPS, lr: float = SEP_LR) -> dict:
    """Gradient descent on the NLL for the training set of each seed; returns arrays over seeds:
    ``first_zero_step`` (-1 if the training error never reaches 0), ``true_error_at_zero`` (nan
    then), ``true_error_end`` (after `steps`) and ``nll_end``; and under ``runs`` the list of
    :class:`LogisticRun` themselves."""
    rows, runs = [], []
    for seed in seeds:
        run = train_logistic_regression(*classification_sample(task, n, seed), steps=steps, lr=lr, task=task)
        runs.append(run)
        k = run.first_zero_error_step
        rows.append((-1 if k is None else k, np.nan if k is None else run.true_error[k],
                     run.true_error[-1], run.nll[-1]))
    cols = list(zip(*rows))
    return {"seed": np.asarray(seeds), "first_zero_step": np.asarray(cols[0]),
            "true_error_at_zero": np.asarray(cols[1]), "true_error_end": np.asarray(cols[2]),
            "nll_end": np.asarray(cols[3]), "runs": runs}


def plot_linear_classifiers(task: GaussianClassificationTask, X: torch.Tensor, y: torch.Tensor,
                            thetas: Mapping[str, np.ndarray], ax=None):
    """The 2-D training points by class, the Bayes decision boundary, and the boundary
    w·x + b = 0 of every θ = (w₁, w₂, b) in `thetas` (label → θ), labelled with its true
    0-1 risk.  Returns the Axes."""
    import matplotlib.pyplot as plt

    _check("X", tuple(X.shape), X.ndim == 2 and X.shape[1] == 2, "2-D points, shape (m, 2)")
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    X, y = X.numpy(), np.asarray(y).reshape(-1)
    for k, marker in ((0, "o"), (1, "^")):
        ax.scatter(*X[y == k].T, s=16, marker=marker, alpha=0.7, label=f"class {k}")
    lo, hi = X[:, 0].min() - 0.5, X[:, 0].max() + 0.5
    ax.set_xlim(lo, hi)
    ax.set_ylim(X[:, 1].min() - 0.5, X[:, 1].max() + 0.5)
    x1 = np.linspace(lo, hi, 2)
    w_star, b_star = task.bayes_classifier()
    lines = {f"Bayes rule (error {task.bayes_error():.2g})": (np.append(w_star, b_star), "k--")}
    for label, theta in thetas.items():
        theta = np.asarray(theta, dtype=float)
        err = task.true_zero_one_risk(theta[:-1], theta[-1])
        lines[f"{label} (error {err:.2g})"] = (theta, "-")
    for label, ((w1, w2, b), style) in lines.items():
        ax.plot(x1, -(w1 * x1 + b) / w2, style, lw=2, label=label)  # w₁x₁ + w₂x₂ + b = 0
    ax.set_xlabel(r"$x_1$")
    ax.set_ylabel(r"$x_2$")
    ax.legend(fontsize="small", loc="upper left")
    return ax


# ---------------------------------------------------------------------------------------------
# 4. Early stopping halts far from a critical point

def full_gradient_norm(model: torch.nn.Module, loss_fn: Callable, X: torch.Tensor,
                       y: torch.Tensor) -> float:
    """‖∇_θ J(θ)‖₂ of the loss on the whole set (X, y), over all trainable parameters.

    The model's gradients are left as they were (computed with torch.autograd.grad).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model(X), y), params)
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


@dataclass
class EarlyStoppingResult:
    """Two identical runs (same seed, same θ₀), one with early stopping, one without."""
    stopped: object          # course_lib.train.History of the run with EarlyStopping
    full: object             # History of the run for all ES_EPOCHS epochs
    model: torch.nn.Module   # the early-stopped model, with the parameters of the best epoch
    train_data: tuple
    val_data: tuple

    @property
    def best_epoch(self) -> int:
        return self.stopped.best_epoch

    @property
    def stop_epoch(self) -> int:
        return self.stopped.epochs["epoch"][-1]

    @property
    def grad_norms(self) -> np.ndarray:
        """‖∇J(θ_t)‖ of the full run at θ_0, θ_1, ... (full batch: one step per epoch)."""
        return np.asarray(self.full.steps["grad_norm"])

    @property
    def grad_norm_at_best(self) -> float:
        """‖∇J‖ of the training loss at the parameters early stopping returns."""
        return full_gradient_norm(self.model, torch.nn.CrossEntropyLoss(), *self.train_data)


def stopping_epochs(values: Sequence[float], patience: int, mode: str = "min") -> tuple[int, int]:
    """(stop epoch, best epoch) of early stopping on a recorded curve, epochs counted from 1.

    The rule of ``course_lib.train.EarlyStopping`` (min_delta = 0): an epoch improves if its
    value is strictly better than the best so far; stop after `patience` epochs without
    improvement; if that never happens, the stop epoch is the last one.
    """
    rule = EarlyStopping(patience=patience, mode=mode)  # checks patience and mode
    best, best_epoch, bad = None, None, 0
    for epoch, v in enumerate(values, 1):
        if rule.improved(v, best):
            best, best_epoch, bad = v, epoch, 0
        else:
            bad += 1
            if bad >= patience:
                return epoch, best_epoch
    return len(values), best_epoch


@shared_result
def early_stopping_experiment(n: int = ES_N, hidden: tuple[int, ...] = ES_HIDDEN, lr: float = ES_LR,
                              patience: int = ES_PATIENCE, epochs: int = ES_EPOCHS,
                              seed: int = SEED, monitor: str = "val_loss") -> EarlyStoppingResult:
    """An MLP that overfits: n MNIST-1D examples, half for training, half for validation.

    Full-batch Adam (``course_lib.Adam``, ε = lr), so each epoch is one step and the recorded
    gradient norm is that of the training loss J itself, not of a minibatch estimate.  One run
    uses ``EarlyStopping(patience)`` on `monitor` ("val_loss", the cross-entropy, or
    "val_accuracy", i.e. the 0-1 error; the chapter uses ES_MONITOR), restoring the best epoch's
    parameters; the other, identical up to the stop, runs all `epochs`.
    """
    _check("n", n, _is_int(n) and n >= 20 and n % 10 == 0, "a multiple of 10, >= 20")
    _check("patience", patience, _is_int(patience) and 1 <= patience < epochs, f"an int in [1, epochs={epochs})")
    _check("monitor", monitor, monitor in ("val_loss", "val_accuracy"), "'val_loss' or 'val_accuracy'")
    mode = "min" if monitor == "val_loss" else "max"
    stopped, model, train_data, val_data = _es_run(n, hidden, lr, epochs, seed,
                                                   EarlyStopping(patience=patience, monitor=monitor, mode=mode))
    full = _es_run(n, hidden, lr, epochs, seed, None)[0]
    return EarlyStoppingResult(stopped, full, model, train_data, val_data)


def _es_run(n, hidden, lr, epochs, seed, early_stopping):
    """One full-batch Adam run of the early-stopping experiment: (History, model, train, val)."""
    split = mnist1d(num_samples=n, seed=seed, train_split=0.5)
    model = mlp(40, hidden, 10, generator=_generator(seed))
    hist = train(model, torch.nn.CrossEntropyLoss(), Adam(model.parameters(), lr=lr), split.train,
                 epochs=epochs, batch_size=len(split.train[0]), val_data=split.test,
                 early_stopping=early_stopping, seed=seed, device="cpu")
    return hist, model, split.train, split.test


def heldout_error_after(epochs: int, n: int = ES_N, hidden: tuple[int, ...] = ES_HIDDEN,
                     lr: float = ES_LR, seed: int = SEED, test_n: int = ES_TEST_N) -> float:
    """The 0-1 error, on `test_n` fresh MNIST-1D examples (drawn with seed ES_TEST_SEED + seed,
    so they play no part in training or in choosing the epoch), of the model of
    :func:`early_stopping_experiment` after `epochs` full-batch steps (the run is deterministic,
    so these are the parameters of that epoch of the full run)."""
    _check("epochs", epochs, _is_int(epochs) and epochs >= 1, "an int >= 1")
    model = _es_run(n, hidden, lr, int(epochs), seed, None)[1]
    test = mnist1d(num_samples=test_n, seed=ES_TEST_SEED + seed, train_split=0.5)
    X = torch.cat([test.train[0], test.test[0]])
    y = torch.cat([test.train[1], test.test[1]])
    with torch.no_grad():
        return float((model(X).argmax(-1) != y).double().mean())


def early_stopping_study(seeds: Sequence[int] = ES_SEEDS, n: int = ES_N,
                         hidden: tuple[int, ...] = ES_HIDDEN, lr: float = ES_LR,
                         patience: int = ES_PATIENCE, epochs: int = ES_EPOCHS,
                         test_n: int = ES_TEST_N) -> dict:
    """Stopping on the validation NLL vs on the validation 0-1 error, one full run per seed.

    Each seed draws its own MNIST-1D subset and θ₀ and trains for `epochs` full-batch steps
    (no early stopping); both rules are applied to the recorded curves with :func:`stopping_epochs`
    (the runs with ``EarlyStopping`` are identical up to the stop, as the tests check).  Returns
    arrays over seeds: "nll_best" / "err_best" (the epoch each rule returns), "err_at_nll_best",
    "err_at_err_best" (validation 0-1 error there), "err_min" and "err_end" (least and last
    validation error of the full run), "grad_at_err_best" and "grad_end" (‖∇J‖ / ‖∇J(θ₀)‖ at
    the epoch the error rule returns and after the last step), and "test_at_nll_best" /
    "test_at_err_best": the 0-1 error of the two returned models on `test_n` fresh examples
    (:func:`heldout_error_after`).  The validation error at the error rule's epoch is optimistic,
    since that rule chose the epoch on it; the test errors are not.
    """
    _check("patience", patience, _is_int(patience) and 1 <= patience < epochs, f"an int in [1, epochs={epochs})")
    rows = []
    for seed in seeds:
        full = _es_run(n, hidden, lr, epochs, seed, None)[0]
        ep = full.to_numpy()["epochs"]
        err = 1.0 - ep["val_accuracy"]
        g = np.asarray(full.steps["grad_norm"])
        _, nll_best = stopping_epochs(ep["val_loss"], patience)
        _, err_best = stopping_epochs(err, patience)
        # g[t] is ‖∇J(θ_t)‖; after epoch e the parameters are θ_e (the last one is not recorded)
        g_err = g[err_best] if err_best < len(g) else math.nan
        tests = [heldout_error_after(e, n, hidden, lr, seed, test_n) for e in (nll_best, err_best)]
        rows.append(dict(nll_best=nll_best, err_best=err_best, err_at_nll_best=err[nll_best - 1],
                         err_at_err_best=err[err_best - 1], err_min=err.min(), err_end=err[-1],
                         grad_at_err_best=g_err / g[0], grad_end=g[-1] / g[0],
                         test_at_nll_best=tests[0], test_at_err_best=tests[1]))
    return {k: np.array([r[k] for r in rows]) for k in rows[0]} | {"seeds": np.array(seeds)}


def plot_early_stopping(es: EarlyStoppingResult, patience: int = ES_PATIENCE):
    """Three panels of the full run: the NLL (training and validation), the validation 0-1
    error, and ‖∇J(θ_t)‖; dashed lines mark the epoch that stopping on the validation NLL would
    return and the epoch that stopping on the validation error returns.  Returns the Figure."""
    import matplotlib.pyplot as plt

    ep = es.full.to_numpy()["epochs"]
    g = es.grad_norms
    _, nll_best = stopping_epochs(ep["val_loss"], patience)
    err_best = es.best_epoch
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), layout="constrained")
    axes[0].semilogy(ep["epoch"], ep["train_loss"], label="training NLL")
    axes[0].semilogy(ep["epoch"], ep["val_loss"], label="validation NLL")
    axes[0].set(ylabel="cross-entropy (the surrogate)", title="the validation NLL turns up early")
    axes[1].plot(ep["epoch"], 1 - ep["train_accuracy"], label="training 0-1 error")
    axes[1].plot(ep["epoch"], 1 - ep["val_accuracy"], label="validation 0-1 error")
    axes[1].set(ylabel="0-1 error (the loss we care about)",
                title="the validation error keeps falling, then levels off")
    axes[2].semilogy(np.arange(len(g)), g, label=r"$\|\nabla J(\theta_t)\|$ (training NLL)")
    axes[2].set(ylabel="gradient norm", title="the gradient is still large at the returned epoch")
    for ax in axes:
        ax.axvline(nll_best, color="tab:gray", ls="--", label=f"least validation NLL: epoch {nll_best}")
        ax.axvline(err_best, color="tab:green", ls="--", label=f"least validation error: epoch {err_best} (returned)")
        ax.axvline(es.stop_epoch, color="tab:red", ls=":", label=f"stopped at epoch {es.stop_epoch}")
        ax.set_xlabel("epoch (= full-batch step)")
        ax.legend(fontsize="small")
    return fig


# ---------------------------------------------------------------------------------------------
# The chapter's larger figures (the notebook calls these; each returns the Figure)

def plot_risk_vs_degree(task: PolynomialRegressionTask, sweep: RiskSweep):
    """Training risk and risk against the degree: for the first training set (left) and as
    medians with 25-75 % bands over all of them (right), with the Bayes risk σ²."""
    import matplotlib.pyplot as plt

    deg = sweep.values
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True, layout="constrained")
    axes[0].plot(deg, sweep.train_risk[0], "o-", label="training risk $J$")
    axes[0].plot(deg, sweep.true_risk[0], "s-", label="risk $J^*$")
    axes[0].set_title("the training set above")
    for q, name in ((sweep.train_risk, "training risk $J$"), (sweep.true_risk, "risk $J^*$")):
        lo, med, hi = np.percentile(q, [25, 50, 75], axis=0)
        axes[1].plot(deg, med, "o-", label=f"{name}, median")
        axes[1].fill_between(deg, lo, hi, alpha=0.25)
    axes[1].set_title(f"{sweep.train_risk.shape[0]} training sets (band: 25–75 %)")
    for ax in axes:
        ax.axhline(task.bayes_risk, color="black", ls=":", label=r"Bayes risk $\sigma^2$")
        ax.set_yscale("log")
        ax.set_xlabel("polynomial degree (capacity)")
        ax.legend(fontsize="small")
    axes[0].set_ylabel("mean squared error")
    return fig


def plot_risk_vs_n(fixed: RiskSweep, refit: RiskSweep, sigma_L: float):
    """Left: the mean empirical risk of the fixed model (± 1 std) against m, its risk J*, and the
    refitted model's mean training risk and risk.  Right: the spread of the fixed model's
    empirical risk against σ_L/√m (log-log)."""
    import matplotlib.pyplot as plt

    ms = fixed.values
    J_star = fixed.true_risk[0, 0]
    spread = fixed.train_risk.std(axis=0, ddof=1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax = axes[0]
    mean = fixed.train_risk.mean(axis=0)
    ax.plot(ms, mean, "o-", label="fixed cubic: mean empirical risk")
    ax.fill_between(ms, mean - spread, mean + spread, alpha=0.25, label="fixed cubic: ± 1 std")
    ax.axhline(J_star, color="black", ls="--", label=f"fixed cubic: risk $J^*$ = {J_star:.3g}")
    ax.plot(ms, refit.train_risk.mean(axis=0), "v-", label="refitted cubic: mean training risk")
    ax.plot(ms, refit.true_risk.mean(axis=0), "^-", label="refitted cubic: mean risk")
    ax.set_xscale("log")
    ax.set_xlabel("sample size m")
    ax.set_ylabel("mean squared error")
    ax.set_title("refitted: biased low; fixed: unbiased")
    ax.legend(fontsize="small")
    ax = axes[1]
    ax.loglog(ms, spread, "o", label=f"measured ({fixed.train_risk.shape[0]} samples per m)")
    ax.loglog(ms, sigma_L / np.sqrt(ms), "-", label=r"$\sigma_L/\sqrt{m}$ (quadrature)")
    ax.set_xlabel("sample size m")
    ax.set_ylabel("std of the empirical risk")
    ax.set_title("spread of J around J* of the fixed cubic")
    ax.legend(fontsize="small")
    return fig


def plot_zero_one_gradient(study: dict, hs: Sequence[float], ts: np.ndarray, along: Mapping[str, np.ndarray],
                           n_points: int = FD_POINTS):
    """Left: the fraction of θ where finite differences of the 0-1 loss are non-zero against h
    (with a line ∝ h), autograd's count in the title.  Right: the 0-1 loss (a staircase) and
    NLL / log 2 along the line θ_a + t(θ_b − θ_a)."""
    import matplotlib.pyplot as plt

    hs = np.asarray(hs)
    fd = np.array(study["0-1 loss"]["fd_nonzero"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    h_ok = fd > 0
    axes[0].loglog(hs[h_ok], fd[h_ok], "o-", label="0-1 loss, finite differences")
    c = fd[2] / hs[2]  # through the point at h = 1e-3
    axes[0].loglog(hs, c * hs, "k:", label="∝ h (reference)")
    axes[0].set_xlabel("finite-difference step h")
    axes[0].set_ylabel("fraction of θ with a non-zero gradient")
    n_auto = round(study["0-1 loss"]["autograd_nonzero"] * n_points)
    axes[0].set_title(f"autograd: {n_auto} of {n_points} gradients non-zero")
    axes[0].legend(fontsize="small")
    axes[1].plot(ts, along["0-1 loss"], drawstyle="steps-post", label="0-1 loss")
    axes[1].plot(ts, along["NLL"] / np.log(2), label="NLL / log 2")
    axes[1].set_xlabel(r"t along $\theta_a + t(\theta_b - \theta_a)$")
    axes[1].set_ylabel("training loss")
    axes[1].set_title("flat steps vs a smooth curve")
    axes[1].legend(fontsize="small")
    return fig


def plot_logistic_run(run: LogisticRun, bayes_error: float):
    """The training NLL, the training 0-1 loss and the true 0-1 risk of one run of
    :func:`train_logistic_regression` against the step (log-log), with the Bayes error and the
    step at which the training error first reaches 0.  Returns the Figure."""
    import matplotlib.pyplot as plt

    k = run.first_zero_error_step
    t = run.steps + 1  # log axis: step t is plotted at t + 1
    fig, ax = plt.subplots(figsize=(9, 4.2), layout="constrained")
    ax.loglog(t, run.nll, label="training NLL")
    ax.loglog(t, run.train_error, drawstyle="steps-post", label="training 0-1 loss")
    ax.loglog(t, run.true_error, label="true 0-1 risk (closed form)")
    ax.axhline(bayes_error, color="black", ls=":", label="Bayes error")
    ax.axvline(k + 1, color="gray", ls="--", label=f"training error reaches 0 (step {k})")
    ax.set_xlabel("gradient descent step t + 1")
    ax.set_ylabel("loss / error")
    ax.set_title(f"After the training error reaches 0, the true error keeps falling "
                 f"({run.true_error[k]:.2g} → {run.true_error[-1]:.2g})", fontsize="medium")
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig
