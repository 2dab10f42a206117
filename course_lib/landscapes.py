r"""Toy objectives J(θ) for watching optimizers move, with their value, gradient and Hessian.

Every landscape is a small object in the spirit of scipy.optimize's ``rosen`` /
``rosen_der`` / ``rosen_hess``: three pure functions of θ that broadcast over leading
dimensions, so one call evaluates a whole meshgrid for a contour plot::

    J = Rosenbrock()
    X, Y = torch.meshgrid(torch.linspace(-2, 2, 200), torch.linspace(-1, 3, 200), indexing="xy")
    Z = J(torch.stack([X, Y], dim=-1))          # shape (200, 200)

=================  =========================================  ===============================
method/attribute   shape                                      meaning
=================  =========================================  ===============================
``J(θ)``           (..., n) → (...)                           the cost J(θ), differentiable
``J.grad(θ)``      (..., n) → (..., n)                        ∇J(θ), written out by hand
``J.hessian(θ)``   (..., n) → (..., n, n)                     H(θ) = ∇²J(θ), by hand
``minimizers``     (k, n)                                     the global minimizers θ*
``min_value``      float                                      J(θ*)
``saddles``        (k, n)                                     known saddle points
``bounds``         ((x_min, x_max), (y_min, y_max))           default plotting window
``start``          (n,)                                       a start that shows the point
=================  =========================================  ===============================

``J(θ)`` is made of torch operations only, so any ``torch.optim`` optimizer (or ours in
``course_lib.optim``) can minimise it: see :func:`run_optimizer`.  The hand-written gradients
and Hessians are checked against autograd in ``tests/test_landscapes.py``.

Reference: Goodfellow, Bengio & Courville (2016), *Deep Learning*, §8.2 (ill conditioning,
local minima, plateaus and saddle points, cliffs).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

__all__ = [
    "Landscape", "Quadratic", "Rosenbrock", "Beale", "Saddle", "Plateau", "Cliff",
    "LocalMinima", "Trajectory", "run_optimizer", "newton_step", "newton_path", "check_grad",
]

Bounds = tuple[tuple[float, float], tuple[float, float]]


def _as_tensor(theta) -> torch.Tensor:
    """θ as a tensor: tensors pass through untouched (autograd keeps working), anything else
    (list, tuple, NumPy array) becomes float64."""
    if isinstance(theta, torch.Tensor):
        return theta
    return torch.as_tensor(np.asarray(theta, dtype=np.float64))


def _points(rows, dim: int) -> torch.Tensor:
    """A (k, dim) float64 tensor of points; an empty list gives shape (0, dim)."""
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, dim)


def _matrix(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    """Stack nested lists of (...)-shaped entries into a (..., n, n) tensor."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


class Landscape:
    """Base class: a cost J(θ) on ℝⁿ with its gradient, Hessian and critical points.

    Subclasses implement :meth:`value`, :meth:`grad` and :meth:`hessian` for θ of shape
    (..., n) and set the attributes below in ``__init__``.

    Attributes:
        name: a human-readable title for plots.
        dim: n, the number of parameters.
        minimizers: (k, n) global minimizers θ*.
        min_value: J(θ*), the global minimum.
        local_minimizers: (k, n) minimizers that are *not* global (empty if none).
        saddles: (k, n) known saddle points (empty if none).
        bounds: ((x_min, x_max), (y_min, y_max)), the default plotting window (first two
            coordinates).
        start: (n,) a start point that shows what the landscape is for.
    """

    name: str = "landscape"
    dim: int = 2
    min_value: float = 0.0
    bounds: Bounds = ((-2.0, 2.0), (-2.0, 2.0))

    def __init__(self) -> None:
        self.minimizers = _points([], self.dim)
        self.local_minimizers = _points([], self.dim)
        self.saddles = _points([], self.dim)
        self.start = torch.zeros(self.dim, dtype=torch.float64)

    # --- the three functions a subclass writes -----------------------------------------
    def value(self, theta: torch.Tensor) -> torch.Tensor:
        """J(θ) for θ of shape (..., n); returns shape (...)."""
        raise NotImplementedError

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        """∇J(θ) for θ of shape (..., n); returns shape (..., n)."""
        raise NotImplementedError

    def hessian(self, theta: torch.Tensor) -> torch.Tensor:
        """H(θ) = ∇²J(θ) for θ of shape (..., n); returns shape (..., n, n)."""
        raise NotImplementedError

    # --- shared conveniences ------------------------------------------------------------
    def __call__(self, theta) -> torch.Tensor:
        return self.value(_as_tensor(theta))

    @property
    def critical_points(self) -> dict[str, torch.Tensor]:
        """The known critical points (∇J = 0) by kind: global minima, local minima, saddles."""
        return {"global minimum": self.minimizers, "local minimum": self.local_minimizers,
                "saddle": self.saddles}

    def mesh(self, resolution: int = 200, bounds: Bounds | None = None):
        """(X, Y, Z) NumPy arrays of shape (resolution, resolution) over ``bounds``, for
        ``contour``/``plot_surface``: Z[i, j] = J(X[i, j], Y[i, j])."""
        if self.dim != 2:
            raise ValueError(f"mesh needs a 2-D landscape, not dim={self.dim}")
        (x0, x1), (y0, y1) = bounds if bounds is not None else self.bounds
        x = torch.linspace(x0, x1, resolution, dtype=torch.float64)
        y = torch.linspace(y0, y1, resolution, dtype=torch.float64)
        X, Y = torch.meshgrid(x, y, indexing="xy")
        with torch.no_grad():
            Z = self.value(torch.stack([X, Y], dim=-1))
        return X.numpy(), Y.numpy(), Z.numpy()

    def _repr_args(self) -> dict:
        return {}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args().items())
        return f"{type(self).__name__}({args})"


class Quadratic(Landscape):
    r"""An ill-conditioned quadratic bowl (Deep Learning book §8.2.1, §4.3.1).

    .. math::

        J(\theta) = \tfrac12 (\theta - \theta^*)^\top H (\theta - \theta^*), \qquad
        H = R\, \mathrm{diag}(\lambda_1, \dots, \lambda_n)\, R^\top,

    with eigenvalues spread evenly from λ₁ = ``scale`` to λₙ = κ·``scale``, so the
    condition number λₙ/λ₁ is κ.  Gradient descent converges for ε < 2/λₙ and then needs
    about κ steps per e-fold of error along the flattest direction.

    Arguments and symbols:

    - ``condition_number`` → κ ≥ 1.
    - ``angle`` → rotation R of the first two axes, in radians (R = I for 0).
    - ``dim`` → n ≥ 2 (use n > 2 to measure iterations against κ).
    - ``scale`` → λ₁, the smallest eigenvalue.
    - ``center`` → θ*, the minimizer (zeros by default).
    - ``seed`` → if given (n > 2 only, instead of ``angle``), R is a random orthogonal
      matrix drawn with this seed.

    Extra attributes: ``eigenvalues`` (n,) ascending and ``H`` (n, n).
    """

    def __init__(self, condition_number: float = 10.0, angle: float = 0.0, dim: int = 2,
                 scale: float = 1.0, center=None, seed: int | None = None) -> None:
        if condition_number < 1:
            raise ValueError(f"Invalid condition number: {condition_number} (expected >= 1)")
        if not isinstance(dim, int) or dim < 2:
            raise ValueError(f"Invalid dim: {dim} (expected an int >= 2)")
        if scale <= 0:
            raise ValueError(f"Invalid scale: {scale} (expected > 0)")
        if seed is not None and angle != 0.0:
            raise ValueError("Give either angle (a rotation of the first two axes) or seed "
                             "(a random rotation), not both")
        self.dim = dim
        super().__init__()
        self.condition_number, self.angle, self.scale, self.seed = (
            float(condition_number), float(angle), float(scale), seed)
        self.eigenvalues = scale * torch.linspace(1.0, condition_number, dim,
                                                  dtype=torch.float64)
        if seed is not None:
            # Haar-random orthogonal matrix: QR of a Gaussian matrix, signs fixed by diag(R).
            gen = torch.Generator().manual_seed(seed)
            Q, Rq = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=torch.float64))
            R = Q * torch.sign(torch.diagonal(Rq))
        else:
            R = torch.eye(dim, dtype=torch.float64)
            c, s = math.cos(angle), math.sin(angle)
            R[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        self.R = R
        self.H = R @ torch.diag(self.eigenvalues) @ R.T
        self.H = (self.H + self.H.T) / 2  # exactly symmetric despite rounding
        self.center = (torch.zeros(dim, dtype=torch.float64) if center is None
                       else _as_tensor(center).to(torch.float64).reshape(dim))
        self.minimizers = self.center.reshape(1, dim).clone()
        self.min_value = 0.0
        offset = torch.ones(dim, dtype=torch.float64)
        offset[:2] = torch.tensor([-1.5, 1.0])
        self.start = self.center + offset
        cx, cy = self.center[0].item(), self.center[1].item()
        self.bounds = ((cx - 2.0, cx + 2.0), (cy - 2.0, cy + 2.0))
        self.name = f"quadratic, κ = {condition_number:g}"

    def value(self, theta):
        d = theta - self.center.to(theta)
        return 0.5 * ((d @ self.H.to(theta)) * d).sum(-1)

    def grad(self, theta):
        return (theta - self.center.to(theta)) @ self.H.to(theta)  # H symmetric

    def hessian(self, theta):
        return self.H.to(theta).expand(*theta.shape[:-1], self.dim, self.dim)

    def _repr_args(self):
        args = {"condition_number": self.condition_number, "angle": self.angle,
                "dim": self.dim, "scale": self.scale}
        if self.seed is not None:
            args["seed"] = self.seed
        return args


class Rosenbrock(Landscape):
    r"""Rosenbrock's banana valley (Rosenbrock, 1960, *Comput. J.* 3:175).

    .. math::

        J(x, y) = (a - x)^2 + b\,(y - x^2)^2

    A curved, narrow valley along y = x²; the single minimizer θ* = (a, a²) with J = 0.
    The Hessian there has condition number ≈ 2500 for (a, b) = (1, 100): gradient descent
    crawls along the valley floor.

    ∇J = (−2(a − x) − 4bx(y − x²),  2b(y − x²)),
    H = [[2 − 4b(y − x²) + 8bx², −4bx], [−4bx, 2b]].
    """

    name = "Rosenbrock"
    bounds = ((-2.0, 2.0), (-1.0, 3.0))

    def __init__(self, a: float = 1.0, b: float = 100.0) -> None:
        super().__init__()
        self.a, self.b = float(a), float(b)
        self.minimizers = _points([[a, a * a]], 2)
        self.start = torch.tensor([-1.2, 1.0], dtype=torch.float64)

    def value(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def grad(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        r = y - x**2
        return torch.stack([-2 * (self.a - x) - 4 * self.b * x * r, 2 * self.b * r], dim=-1)

    def hessian(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        hxx = 2 - 4 * self.b * (y - x**2) + 8 * self.b * x**2
        hxy = -4 * self.b * x
        hyy = torch.full_like(x, 2 * self.b)
        return _matrix([[hxx, hxy], [hxy, hyy]])

    def _repr_args(self):
        return {"a": self.a, "b": self.b}


class Beale(Landscape):
    r"""Beale's function (Beale, 1958): a sum of three squared residuals.

    .. math::

        J(x, y) = \sum_{k=1}^{3} r_k^2, \qquad r_k = c_k - x + x y^k, \quad
        c = (1.5,\ 2.25,\ 2.625)

    Global minimizer (3, 0.5) with J = 0.  Known saddles: (0, 1) with
    H = [[0, 27.75], [27.75, 0]] (J = 14.203125), and (0.1005…, −2.6445…) (J ≈ 9.8645), found
    by Newton's method from many starts in [−4.5, 4.5]².  Flat plateaus near y = ±1 and
    walls growing like y⁶ make it hard for plain gradient descent.

    With ∇r_k = (y^k − 1, k x y^{k−1}):  ∇J = 2 Σ r_k ∇r_k,
    H = 2 Σ (∇r_k ∇r_kᵀ + r_k ∇²r_k), ∇²r_k = [[0, k y^{k−1}], [k y^{k−1}, k(k−1) x y^{k−2}]].
    """

    name = "Beale"
    bounds = ((-4.5, 4.5), (-4.5, 4.5))
    c = (1.5, 2.25, 2.625)

    def __init__(self) -> None:
        super().__init__()
        self.minimizers = _points([[3.0, 0.5]], 2)
        self.saddles = _points([[0.0, 1.0], [0.10053793732415837, -2.644513585023125]], 2)
        self.start = torch.tensor([1.0, 1.5], dtype=torch.float64)

    def _residuals(self, theta):
        """Yield (r_k, ∂r_k/∂x, ∂r_k/∂y, ∂²r_k/∂x∂y, ∂²r_k/∂y²) for k = 1, 2, 3."""
        x, y = theta[..., 0], theta[..., 1]
        for k, c in enumerate(self.c, start=1):
            r = c - x + x * y**k
            yield (r, y**k - 1, k * x * y ** (k - 1), k * y ** (k - 1),
                   k * (k - 1) * x * y ** (k - 2) if k > 1 else torch.zeros_like(x))

    def value(self, theta):
        return sum(r**2 for r, *_ in self._residuals(theta))

    def grad(self, theta):
        return sum(2 * r[..., None] * torch.stack([rx, ry], dim=-1)
                   for r, rx, ry, _, _ in self._residuals(theta))

    def hessian(self, theta):
        hxx = hxy = hyy = 0.0
        for r, rx, ry, rxy, ryy in self._residuals(theta):
            # Gauss–Newton part ∇r∇rᵀ plus the residual-weighted curvature r∇²r (∂²r/∂x² = 0)
            hxx = hxx + 2 * rx * rx
            hxy = hxy + 2 * (rx * ry + r * rxy)
            hyy = hyy + 2 * (ry * ry + r * ryy)
        return _matrix([[hxx, hxy], [hxy, hyy]])


class Saddle(Landscape):
    r"""A saddle at the origin whose escape directions lead to two minima.

    .. math::

        J(x, y) = x^2 - y^2 + \tfrac14 y^4

    Critical points (∇J = (2x, −2y + y³) = 0):

    - saddle (0, 0), J = 0, H = diag(2, −2): curving up along x, down along y;
    - global minimizers (0, ±√2), J = −1, H = diag(2, 4).

    Near the origin it is the textbook saddle x² − y²; the quartic term bounds it from below
    so that escaping the saddle ends somewhere.  Gradient descent started close to the
    x-axis (the saddle's stable manifold) lingers near the saddle; Newton's method is
    *attracted* to it, saddle-free Newton escapes (Dauphin et al., 2014; see
    :func:`newton_path`).
    """

    name = "saddle"
    min_value = -1.0
    bounds = ((-2.0, 2.0), (-2.0, 2.0))

    def __init__(self) -> None:
        super().__init__()
        r2 = math.sqrt(2.0)
        self.minimizers = _points([[0.0, r2], [0.0, -r2]], 2)
        self.saddles = _points([[0.0, 0.0]], 2)
        self.start = torch.tensor([1.5, 0.1], dtype=torch.float64)

    def value(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return x**2 - y**2 + 0.25 * y**4

    def grad(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return torch.stack([2 * x, -2 * y + y**3], dim=-1)

    def hessian(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        zero = torch.zeros_like(x)
        return _matrix([[zero + 2, zero], [zero, -2 + 3 * y**2]])


class Plateau(Landscape):
    r"""A bowl surrounded by a broad plateau where the gradient all but vanishes.

    .. math::

        J(\theta) = \tanh(q), \qquad q = \|\theta\|^2 / w^2

    The single minimizer is θ* = 0 (J = 0).  Far from it tanh saturates at 1 and
    ∇J = sech²(q)·2θ/w² decays like 8 e^{−2q}‖θ‖/w²: at ‖θ‖ = 2.7w it is ~10⁻⁵, so plain
    gradient descent does not move, while methods that divide by a running gradient scale
    (RMSProp, Adam) take steps of size ≈ ε regardless.  (Saturating units create such
    plateaus in neural networks; Deep Learning book §8.2.3, §6.3.)

    H = sech²(q)·(2/w²) I − 2 tanh(q) sech²(q)·(2θ/w²)(2θ/w²)ᵀ.

    Arguments and symbols: ``width`` → w, the radius of the bowl.
    """

    name = "plateau"

    def __init__(self, width: float = 1.0) -> None:
        if width <= 0:
            raise ValueError(f"Invalid width: {width} (expected > 0)")
        super().__init__()
        self.width = float(width)
        self.minimizers = _points([[0.0, 0.0]], 2)
        self.start = torch.tensor([-2.5 * width, 1.0 * width], dtype=torch.float64)
        self.bounds = ((-4.0 * width, 4.0 * width), (-4.0 * width, 4.0 * width))

    def value(self, theta):
        return torch.tanh((theta**2).sum(-1) / self.width**2)

    def grad(self, theta):
        q = (theta**2).sum(-1, keepdim=True) / self.width**2
        return (1 - torch.tanh(q) ** 2) * 2 * theta / self.width**2

    def hessian(self, theta):
        q = (theta**2).sum(-1)[..., None, None] / self.width**2
        t = torch.tanh(q)
        sech2 = 1 - t**2
        dq = 2 * theta / self.width**2  # ∇q, shape (..., n)
        eye = torch.eye(theta.shape[-1], dtype=theta.dtype, device=theta.device)
        outer = dq[..., :, None] * dq[..., None, :]  # ∇q ∇qᵀ
        return sech2 * (2 / self.width**2) * eye - 2 * t * sech2 * outer

    def _repr_args(self):
        return {"width": self.width}


class Cliff(Landscape):
    r"""A gentle bowl with a cliff: the cost drops by ``height`` over a distance ~1/s.

    .. math::

        J(x, y) = \tfrac12\big((x - 1)^2 + y^2\big) + h\,\sigma\!\big(-s\,x\big), \qquad
        \sigma(u) = 1 / (1 + e^{-u})

    Left of the wall (x < 0) the parameters sit on a high shelf; the bowl pulls them to the
    right, over the cliff at x = 0, where the slope h·s/4 is orders of magnitude steeper
    than anywhere else (a gradient of 100 against ~1 for the defaults).  A gradient step
    that lands on the cliff face is catapulted far away; clipping the gradient norm keeps
    the step small (Deep Learning book §8.2.4 and §10.11.1; Pascanu, Mikolov & Bengio,
    2013).

    With p = σ(s x):  ∂J/∂x = (x − 1) − h s p(1 − p),  ∂²J/∂x² = 1 − h s² p(1 − p)(1 − 2p),
    ∂J/∂y = y,  ∂²J/∂y² = 1.

    The single minimizer is (x*, 0) with x* = 1 + h s p(1 − p) (≈ 1 + 10⁻¹⁴ for the defaults),
    found to machine precision by Newton's method on ∂J/∂x = 0 when the object is built.

    Arguments and symbols: ``height`` → h, ``steepness`` → s.
    """

    name = "cliff"
    bounds = ((-3.0, 3.0), (-2.0, 2.0))

    def __init__(self, height: float = 10.0, steepness: float = 40.0) -> None:
        if height <= 0 or steepness <= 0:
            raise ValueError(f"Invalid cliff: height={height}, steepness={steepness} "
                             "(expected both > 0)")
        super().__init__()
        self.height, self.steepness = float(height), float(steepness)
        x = torch.tensor(1.0, dtype=torch.float64)
        for _ in range(50):  # Newton on the 1-D stationarity equation ∂J/∂x = 0
            x = x - self._dx(x) / self._dxx(x)
        self.minimizers = torch.stack([x, torch.zeros_like(x)]).reshape(1, 2)
        self.min_value = self.value(self.minimizers[0]).item()
        self.start = torch.tensor([-2.0, 1.0], dtype=torch.float64)

    def _dx(self, x):
        p = torch.sigmoid(self.steepness * x)
        return (x - 1) - self.height * self.steepness * p * (1 - p)

    def _dxx(self, x):
        p = torch.sigmoid(self.steepness * x)
        return 1 - self.height * self.steepness**2 * p * (1 - p) * (1 - 2 * p)

    def value(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return 0.5 * ((x - 1) ** 2 + y**2) + self.height * torch.sigmoid(-self.steepness * x)

    def grad(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return torch.stack([self._dx(x), y], dim=-1)

    def hessian(self, theta):
        x = theta[..., 0]
        zero = torch.zeros_like(x)
        return _matrix([[self._dxx(x), zero], [zero, zero + 1]])

    def _repr_args(self):
        return {"height": self.height, "steepness": self.steepness}


class LocalMinima(Landscape):
    r"""A tilted double well: a bad local minimum and a good global one.

    .. math::

        J(x, y) = (x^2 - 1)^2 + a\,x + y^2

    For 0 < a < 8/√27 ≈ 1.54, ∂J/∂x = 4x³ − 4x + a = 0 has three real roots
    x₁ < x₂ < x₃: the global minimizer (x₁, 0) (left well, lowered by the tilt), a saddle
    (x₂, 0) and the local minimizer (x₃, 0).  They are the roots of the cubic, polished by
    Newton's method.  Gradient descent from the right (the default start) ends in the bad
    well; the barrier between the wells is J(x₂, 0) − J(x₃, 0).

    ∇J = (4x³ − 4x + a, 2y),  H = diag(12x² − 4, 2).

    Arguments and symbols: ``tilt`` → a.
    """

    name = "local minima"
    bounds = ((-2.0, 2.0), (-1.5, 1.5))

    def __init__(self, tilt: float = 0.5) -> None:
        if not 0 < tilt < 8 / math.sqrt(27):
            raise ValueError(f"Invalid tilt: {tilt} (expected 0 < tilt < {8 / math.sqrt(27):.4f}"
                             " for two wells)")
        super().__init__()
        self.tilt = float(tilt)
        roots = np.sort(np.roots([4.0, 0.0, -4.0, tilt]).real)
        xs = torch.tensor(roots, dtype=torch.float64)
        for _ in range(5):  # polish: Newton on 4x³ − 4x + a = 0
            xs = xs - (4 * xs**3 - 4 * xs + tilt) / (12 * xs**2 - 4)
        x1, x2, x3 = xs.tolist()
        self.minimizers = _points([[x1, 0.0]], 2)
        self.saddles = _points([[x2, 0.0]], 2)
        self.local_minimizers = _points([[x3, 0.0]], 2)
        self.min_value = self.value(self.minimizers[0]).item()
        self.start = torch.tensor([1.8, 1.0], dtype=torch.float64)

    def value(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return (x**2 - 1) ** 2 + self.tilt * x + y**2

    def grad(self, theta):
        x, y = theta[..., 0], theta[..., 1]
        return torch.stack([4 * x**3 - 4 * x + self.tilt, 2 * y], dim=-1)

    def hessian(self, theta):
        x = theta[..., 0]
        zero = torch.zeros_like(x)
        return _matrix([[12 * x**2 - 4, zero], [zero, zero + 2]])

    def _repr_args(self):
        return {"tilt": self.tilt}


# ----------------------------------------------------------------------------------------
# Running optimizers on a landscape
# ----------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """The record of one run on a landscape.

    Attributes:
        path: (T + 1, n) the iterates θ₀ … θ_T (only finite ones).
        losses: (T + 1,) J(θ_t).
        grad_norms: (T + 1,) ‖∇J(θ_t)‖ (before any clipping).
        lrs: (T,) the learning rate ε used for the update θ_t → θ_{t+1} (1 for Newton).
        diverged: True if the run stopped early because an iterate, its loss or its
            gradient became non-finite, or the loss exceeded ``max_loss``.
        name: an optional label for plots.
    """

    path: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    lrs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    diverged: bool = False
    name: str = ""

    @property
    def steps(self) -> int:
        """T, the number of updates recorded."""
        return len(self.path) - 1

    @property
    def final(self) -> np.ndarray:
        """θ_T, the last finite iterate."""
        return self.path[-1]

    def first_step_below(self, threshold: float) -> int | None:
        """The first t with J(θ_t) < threshold, or None if the run never gets there."""
        hits = np.flatnonzero(self.losses < threshold)
        return int(hits[0]) if hits.size else None


def _record(theta, loss, g, path: list, losses: list, grad_norms: list,
            max_loss: float) -> bool:
    """Append iterate θ, J(θ) and ‖g‖ to the record if they are finite.  Returns False when
    the run has diverged (something non-finite, or J(θ) > max_loss), True to go on."""
    finite = bool(torch.isfinite(loss) and torch.isfinite(theta).all()
                  and torch.isfinite(g).all())
    if finite:
        path.append(theta.clone().numpy())
        losses.append(loss.item())
        grad_norms.append(g.norm().item())
    return finite and loss.item() <= max_loss


def run_optimizer(landscape: Landscape, optimizer: Callable, start=None, steps: int = 100, *,
                  clip_grad_norm: float | None = None, clip_grad_value: float | None = None,
                  scheduler: Callable | None = None, max_loss: float = 1e10,
                  name: str = "", **hyper) -> Trajectory:
    r"""Minimise ``landscape`` from ``start`` with a torch optimizer; record the path.

    Each step is the usual training-loop body on a single float64 parameter θ::

        optimizer.zero_grad(); loss = J(θ); loss.backward(); [clip]; optimizer.step()

    Arguments:
        landscape: the cost J.
        optimizer: an optimizer class or factory called as ``optimizer([θ], **hyper)``,
            e.g. ``torch.optim.SGD`` or ``course_lib.optim.Adam`` with ``lr=0.1``, or
            ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9)``.
            ``torch.optim.LBFGS`` is given the closure it needs.
        start: θ₀ (default ``landscape.start``).
        steps: T, the number of updates.
        clip_grad_norm: if set, rescale g to norm ≤ this before each step
            (``torch.nn.utils.clip_grad_norm_``; Pascanu et al., 2013).
        clip_grad_value: if set, clamp each component of g to [−c, c].
        scheduler: optional factory ``scheduler(optimizer)`` returning a
            ``torch.optim.lr_scheduler`` object, stepped after every update.
        max_loss: a loss above this counts as divergence (use ``math.inf`` to stop only on
            non-finite values).
        name: label stored in the trajectory.
        **hyper: passed to ``optimizer`` (``lr``, ``momentum``, ``betas``, …).

    Returns:
        a :class:`Trajectory` with T + 1 points, or fewer if the run diverged (then
        ``diverged`` is True and the path holds the finite iterates only).
    """
    theta0 = landscape.start if start is None else _as_tensor(start)
    theta = torch.nn.Parameter(theta0.detach().clone().to(torch.float64).reshape(landscape.dim))
    opt = optimizer([theta], **hyper)
    sched = scheduler(opt) if scheduler is not None else None
    needs_closure = isinstance(opt, torch.optim.LBFGS)
    if needs_closure and (clip_grad_norm is not None or clip_grad_value is not None):
        raise ValueError("Gradient clipping is not supported with LBFGS")

    def closure():
        opt.zero_grad()
        loss = landscape(theta)
        loss.backward()
        return loss

    path, losses, grad_norms, lrs = [], [], [], []
    diverged = False
    for t in range(steps + 1):
        loss = closure()
        if not _record(theta.detach(), loss, theta.grad, path, losses, grad_norms, max_loss):
            diverged = True
            break
        if t == steps:
            break
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([theta], clip_grad_norm)
        if clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_([theta], clip_grad_value)
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step(closure) if needs_closure else opt.step()
        if sched is not None:
            sched.step()
    lrs = lrs[: max(len(path) - 1, 0)]  # a non-finite last iterate is not recorded
    return Trajectory(np.array(path).reshape(-1, landscape.dim), np.array(losses),
                      np.array(grad_norms), np.array(lrs), diverged, name)


def newton_step(landscape: Landscape, theta, damping: float = 0.0,
                saddle_free: bool = False) -> torch.Tensor:
    r"""One step of Newton's method, or of saddle-free Newton.

    .. math::

        \theta \leftarrow \theta - (H + \alpha I)^{-1} g
        \qquad\text{or, saddle-free,}\qquad
        \theta \leftarrow \theta - (|H| + \alpha I)^{-1} g,

    where H = Q Λ Qᵀ and |H| = Q |Λ| Qᵀ takes absolute eigenvalues (Dauphin et al., 2014,
    *Identifying and attacking the saddle point problem in high-dimensional non-convex
    optimization*).  Newton's step jumps to the critical point of the local quadratic model,
    whatever its kind, so it is attracted to saddles; with |H| every direction of negative
    curvature is walked *downhill*.

    Arguments and symbols: ``damping`` → α ≥ 0, the regularisation of the Deep Learning
    book's eq. (8.28) (not the momentum α); ``theta`` (n,).
    """
    theta = _as_tensor(theta).to(torch.float64)
    g = landscape.grad(theta)
    lam, Q = torch.linalg.eigh(landscape.hessian(theta))  # H = Q diag(λ) Qᵀ
    if saddle_free:
        lam = lam.abs()
    # (H + αI)⁻¹ g in the eigenbasis: divide each component of Qᵀg by λ_i + α
    return theta - Q @ ((Q.T @ g) / (lam + damping))


def newton_path(landscape: Landscape, start=None, steps: int = 20, damping: float = 0.0,
                saddle_free: bool = False, max_loss: float = 1e10) -> Trajectory:
    """Iterate :func:`newton_step` ``steps`` times from ``start`` (default
    ``landscape.start``); same record and divergence rule as :func:`run_optimizer`
    (a singular H gives a non-finite step and ends the run as diverged)."""
    theta = (landscape.start if start is None else _as_tensor(start)).to(torch.float64)
    path, losses, grad_norms = [], [], []
    diverged = False
    for t in range(steps + 1):
        loss, g = landscape.value(theta), landscape.grad(theta)
        if not _record(theta, loss, g, path, losses, grad_norms, max_loss):
            diverged = True
            break
        if t == steps:
            break
        theta = newton_step(landscape, theta, damping, saddle_free)
    name = "saddle-free Newton" if saddle_free else "Newton"
    return Trajectory(np.array(path).reshape(-1, landscape.dim), np.array(losses),
                      np.array(grad_norms), np.ones(max(len(path) - 1, 0)), diverged, name)


def check_grad(f: Callable, grad: Callable, theta, eps: float = 1e-6) -> float:
    r"""‖grad(θ) − ĝ‖₂, where ĝ is the central finite-difference gradient of f at θ.

    .. math::

        \hat g_i = \frac{f(\theta + \epsilon_{\rm fd} e_i) - f(\theta - \epsilon_{\rm fd} e_i)}
                        {2\epsilon_{\rm fd}}

    The error of ĝ is O(ε_fd²) (scipy.optimize.check_grad uses forward differences, O(ε_fd));
    with ε_fd = 10⁻⁶ in float64 a correct gradient gives ~10⁻⁸ or less relative to ‖g‖.
    ``f`` and ``grad`` are called with a float64 tensor if ``theta`` is a tensor, else
    with a NumPy array.
    """
    as_numpy = not isinstance(theta, torch.Tensor)
    theta = _as_tensor(theta).detach().to(torch.float64).reshape(-1)
    wrap = (lambda t: t.numpy()) if as_numpy else (lambda t: t)
    fd = torch.zeros_like(theta)
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = eps
        fd[i] = (float(f(wrap(theta + e))) - float(f(wrap(theta - e)))) / (2 * eps)
    g = _as_tensor(grad(wrap(theta.clone()))).detach().to(torch.float64).reshape(-1)
    return float((g - fd).norm())
