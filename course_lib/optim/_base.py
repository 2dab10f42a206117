"""The thin stateful shell shared by every optimizer, and the argument checks.

Each rule in this package is a *pure update function* that changes ONE tensor in place::

    rule_update(theta, g, state, *, lr, ..., maximize) -> None

``theta`` is the parameter θ, ``g`` its gradient g, ``state`` a dict holding what the rule
remembers between steps for this tensor (``'step'``, ``'exp_avg'``, ...).  An empty ``state``
means "first step": the function fills it in.

:class:`FirstOrderOptimizer` turns such a function into a ``torch.optim.Optimizer`` (so
``zero_grad``, ``state_dict``, ``param_groups``, LR schedulers and hooks all work): it only
validates, keeps one ``state`` dict per parameter and calls the function.  No math lives here.
"""
from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import torch

__all__ = [
    "FirstOrderOptimizer",
    "FlatClosureOptimizer",
    "check_lr",
    "check_eps",
    "check_nonnegative",
    "check_unit_interval",
    "check_betas",
]


# --- argument checks: one message per argument, naming the argument and the value --------------
# `not (0.0 <= x)` (rather than `x < 0`) also rejects NaN.

def check_lr(lr: float) -> None:
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")


def check_eps(eps: float) -> None:
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")


def check_nonnegative(name: str, value: float) -> None:
    """For weight_decay, momentum, lr_decay, initial_accumulator_value, momentum_decay."""
    if not 0.0 <= value:
        raise ValueError(f"Invalid {name} value: {value}")


def check_unit_interval(name: str, value: float) -> None:
    """A decay rate ρ of a moving average must lie in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"Invalid {name} value: {value}")


def check_betas(betas: tuple[float, float]) -> None:
    """Adam's β₁, β₂ lie in [0, 1): at β = 1 the bias correction 1 − βᵗ divides by zero."""
    for index, beta in enumerate(betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"Invalid beta parameter at index {index}: {beta}")


# --- the shell ---------------------------------------------------------------------------------

class FirstOrderOptimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` whose step calls the pure function ``update`` on each tensor.

    A subclass sets ``update = staticmethod(rule_update)``, validates its arguments and calls
    ``super().__init__(params, defaults)``.  The keys of ``defaults`` are exactly the keyword
    arguments of ``rule_update``: every param group carries them, and each step reads them
    afresh, so changing ``group["lr"]`` (as an LR scheduler does) changes the next step.
    """

    update: Callable[..., None]

    @torch.no_grad()  # the update itself must not be recorded by autograd
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one update of every parameter that has a gradient.

        closure: optional function that re-evaluates the model and returns the loss
        (needed by methods that look at the loss several times per step); its value is
        returned, as in ``torch.optim``.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        self._refuse_unsupported()
        for group in self.param_groups:
            hyperparameters = {name: group[name] for name in self.hyperparameter_names()}
            for theta in group["params"]:
                if theta.grad is not None:
                    type(self).update(theta, theta.grad, self.state[theta], **hyperparameters)
        return loss

    @classmethod
    def hyperparameter_names(cls) -> tuple[str, ...]:
        """The keyword arguments of the rule (``lr``, ``betas``, ...): what a group carries.

        A group may carry more (a state_dict saved by torch.optim adds ``foreach`` and
        friends); only these reach the update.
        """
        return _keyword_names(cls.update)

    def _refuse_unsupported(self) -> None:
        """Raise before touching anything, so that a failed step changes nothing.

        Sparse gradients would need their own code path.  torch.optim treats a complex θ as
        its real and imaginary parts; our rules would square g where they need |g|².
        """
        name = type(self).__name__
        for group in self.param_groups:
            for theta in group["params"]:
                if theta.grad is None:
                    continue
                if theta.grad.is_sparse:
                    raise RuntimeError(f"{name} does not support sparse gradients "
                                       "(use a dense embedding, or torch.optim.SparseAdam)")
                if theta.is_complex():
                    raise RuntimeError(f"{name} does not support complex parameters")

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Called by load_state_dict.  We keep scalars of the state ('step' t, NAdam's
        # 'mu_product') as Python numbers; torch.optim keeps them as 0-dim tensors.  Converting
        # here lets a state_dict saved by a torch.optim optimizer be loaded into ours.
        super().__setstate__(state)
        for per_param in self.state.values():
            if isinstance(per_param.get("step"), torch.Tensor):
                per_param["step"] = int(per_param["step"].item())
            if isinstance(per_param.get("mu_product"), torch.Tensor):
                per_param["mu_product"] = per_param["mu_product"].item()


@functools.cache  # inspect.signature costs ~30 µs: look once per rule, not once per step
def _keyword_names(rule: Callable[..., None]) -> tuple[str, ...]:
    parameters = inspect.signature(rule).parameters.values()
    return tuple(p.name for p in parameters if p.kind is p.KEYWORD_ONLY)


class FlatClosureOptimizer(torch.optim.Optimizer):
    """The shell of the methods whose ``step(closure)`` evaluates J several times (L-BFGS,
    nonlinear CG): one parameter group, whose parameters are treated as one flat vector θ.
    It only moves θ and reads g; the methods' math lives in their subclasses."""

    def __init__(self, params, defaults: dict) -> None:
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError(f"{type(self).__name__} doesn't support per-parameter options "
                             "(parameter groups)")
        self._params = self.param_groups[0]["params"]

    def _flat_grad(self) -> torch.Tensor:
        """g as one vector (zeros for a parameter without a gradient)."""
        return torch.cat([torch.zeros_like(p).reshape(-1) if p.grad is None
                          else p.grad.reshape(-1) for p in self._params])

    def _add(self, t: float, d: torch.Tensor) -> None:
        """θ ← θ + t d."""
        offset = 0
        for p in self._params:
            n = p.numel()
            p.add_(d[offset:offset + n].view_as(p), alpha=t)
            offset += n

    def _get(self) -> list[torch.Tensor]:
        return [p.clone(memory_format=torch.contiguous_format) for p in self._params]

    def _set(self, values: list[torch.Tensor]) -> None:
        for p, v in zip(self._params, values):
            p.copy_(v)

    def _evaluate_at(self, closure, theta, t, d):
        """J and g at θ + t d, leaving θ unchanged (for a line search)."""
        self._add(t, d)
        loss = float(closure().detach())
        g = self._flat_grad()
        self._set(theta)
        return loss, g
