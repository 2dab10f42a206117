"""Mixed precision: rounding to float16/bfloat16, simulated low-precision layers, loss scalers.

    q = round_to(x, torch.float16)         # x rounded to float16, kept as float32
    scaler = DynamicLossScaler()           # the protocol of torch.amp.GradScaler:
    scaler.scale(loss).backward()          #   J·S backpropagated
    scaler.unscale_(optimizer)             #   g ← g/S, and: is any entry inf/nan?
    scaler.step(optimizer)                 #   the update, skipped if so
    scaler.update()                        #   S halves after a skipped step, doubles after
                                           #   `growth_interval` good steps in a row

``StaticLossScaler(S)`` keeps S fixed (a skipped step leaves it unchanged).  Both follow
torch.amp.GradScaler step for step: on the same gradients they give the same scales, skip the
same steps and leave the same parameters (tests/test_ch20_mixed_precision.py checks it).
The parameters the optimizer updates are the float32 *master weights*; only the arithmetic of
the forward and backward passes is done in low precision.

:func:`simulate_precision` wraps an ``nn.Sequential`` of Linear layers and element-wise
activations so that every input, weight, output and every gradient flowing back through them is
rounded to float16 (or bfloat16), with float32 accumulation inside the matrix products: what
autocast does on a GPU's tensor cores, but on any CPU and bit-reproducible.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["round_to", "RoundTo", "simulate_precision", "StaticLossScaler", "DynamicLossScaler",
           "LOW_PRECISION"]

LOW_PRECISION = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def _dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        if dtype not in LOW_PRECISION:
            raise ValueError(f"Invalid dtype: {dtype!r} (expected one of {sorted(LOW_PRECISION)})")
        return LOW_PRECISION[dtype]
    return dtype


def round_to(x: torch.Tensor, dtype) -> torch.Tensor:
    """x rounded (to nearest, ties to even) to `dtype` and converted back to x's dtype.

    Values beyond the format's largest become ±inf, values below half its smallest subnormal 0.
    """
    return x.to(_dtype(dtype)).to(x.dtype)


class RoundTo(torch.autograd.Function):
    """Identity that rounds to `dtype` on the way forward *and* the gradient on the way back."""

    @staticmethod
    def forward(ctx, x, dtype):
        ctx.dtype = dtype
        return round_to(x, dtype)

    @staticmethod
    def backward(ctx, grad):
        return round_to(grad, ctx.dtype), None


class _Simulated(nn.Module):
    def __init__(self, model: nn.Sequential, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x):
        q = lambda t: RoundTo.apply(t, self.dtype)  # noqa: E731
        x = q(x)
        for layer in self.model:
            if isinstance(layer, nn.Linear):  # low-precision operands, float32 accumulation
                b = None if layer.bias is None else q(layer.bias)
                x = q(nn.functional.linear(x, q(layer.weight), b))
            else:  # element-wise: exact on low-precision values up to the final rounding
                x = q(layer(x))
        return x


def simulate_precision(model: nn.Sequential, dtype="float16") -> nn.Module:
    """A module computing `model`'s forward and backward passes in simulated `dtype`.

    The parameters stay `model`'s own float32 tensors (the master weights): an optimizer built on
    ``model.parameters()`` updates them in float32.  Each Linear layer's input, weight, bias and
    output, each activation's output and every gradient through them are rounded to `dtype`; the
    products inside a matrix multiplication are accumulated in float32.  The loss (computed by
    the caller on the returned float32 logits) stays float32, as under torch.autocast.
    """
    dtype = _dtype(dtype)
    if not isinstance(model, nn.Sequential):
        raise TypeError(f"Invalid model: {type(model).__name__} (expected an nn.Sequential)")
    return _Simulated(model, dtype)


class _LossScaler:
    """What the static and the dynamic scaler share: the GradScaler protocol."""

    def __init__(self, scale: float):
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"Invalid scale: {scale!r} (expected a finite number > 0)")
        self._scale = float(torch.tensor(scale, dtype=torch.float32))  # as GradScaler stores it
        self._unscaled = False
        self._found_inf = False
        self.skipped = 0  # the number of steps skipped so far

    def get_scale(self) -> float:
        return self._scale

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """J·S: backpropagate this instead of J."""
        return loss * self._scale

    def unscale_(self, optimizer: torch.optim.Optimizer) -> bool:
        """Divide every gradient by S (in place); return whether any entry is inf or nan."""
        if self._unscaled:
            raise RuntimeError("unscale_() has already been called on this optimizer since the last update().")
        inv = float(torch.tensor(1.0 / self._scale, dtype=torch.float32))  # GradScaler's float32 1/S
        found = False
        with torch.no_grad():
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(inv)
                        found = found or not bool(torch.isfinite(p.grad).all())
        self._unscaled, self._found_inf = True, found
        return found

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """optimizer.step() unless a gradient is inf/nan; return whether the step was taken."""
        if not self._unscaled:
            self.unscale_(optimizer)
        if self._found_inf:
            self.skipped += 1
            return False
        optimizer.step()
        return True

    def update(self):
        """Adjust S after the step (the dynamic rule; the static scaler keeps S) and reset."""
        if not self._unscaled:
            raise RuntimeError("update() needs a step() (or unscale_()) since the last update()")
        self._update(self._found_inf)
        self._unscaled, self._found_inf = False, False

    def _update(self, found_inf: bool):
        pass

    def state_dict(self) -> dict:
        return {"scale": self._scale, "skipped": self.skipped}

    def load_state_dict(self, state: dict):
        self._scale, self.skipped = state["scale"], state["skipped"]


class StaticLossScaler(_LossScaler):
    """A fixed loss scale S; a step with an inf/nan gradient is skipped, S stays."""

    def __init__(self, scale: float = 2.0 ** 10):
        super().__init__(scale)


class DynamicLossScaler(_LossScaler):
    """Dynamic loss scaling (Micikevicius et al., 2018), with torch.amp.GradScaler's defaults.

    After a step with an inf/nan gradient (skipped): S ← S·backoff_factor.  After
    `growth_interval` good steps in a row: S ← S·growth_factor.
    """

    def __init__(self, init_scale: float = 2.0 ** 16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000):
        super().__init__(init_scale)
        if not growth_factor > 1:
            raise ValueError(f"Invalid growth_factor: {growth_factor!r} (expected > 1)")
        if not 0 < backoff_factor < 1:
            raise ValueError(f"Invalid backoff_factor: {backoff_factor!r} (expected in (0, 1))")
        if not (isinstance(growth_interval, int) and growth_interval >= 1):
            raise ValueError(f"Invalid growth_interval: {growth_interval!r} (expected an int >= 1)")
        self.growth_factor, self.backoff_factor = growth_factor, backoff_factor
        self.growth_interval = growth_interval
        self._growth_tracker = 0  # good steps in a row since the last change of S

    def _update(self, found_inf: bool):
        # as torch's _amp_update_scale_: the product in double, S stored as float32
        f32 = lambda v: float(torch.tensor(v, dtype=torch.float32))  # noqa: E731
        if found_inf:
            self._scale, self._growth_tracker = f32(self._scale * self.backoff_factor), 0
            return
        self._growth_tracker += 1
        if self._growth_tracker == self.growth_interval:
            grown = f32(self._scale * self.growth_factor)
            if math.isfinite(grown):
                self._scale = grown
            self._growth_tracker = 0

    def state_dict(self) -> dict:
        return super().state_dict() | {"growth_tracker": self._growth_tracker}

    def load_state_dict(self, state: dict):
        super().load_state_dict(state)
        self._growth_tracker = state["growth_tracker"]
