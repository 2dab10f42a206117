r"""K-FAC: natural-gradient steps with a Kronecker-factored Fisher (Martens & Grosse, 2015).

For a linear layer s = W ā (ā = [a; 1] the layer's input with a 1 appended for the bias, s its
output, the *pre-activation*) the gradient of one example's log-likelihood is
∇_W log p = g āᵀ with g = ∂ log p / ∂s.  The layer's block of the Fisher
F = E[vec(g āᵀ) vec(g āᵀ)ᵀ] = E[(ā āᵀ) ⊗ (g gᵀ)] is approximated by a Kronecker product
of two small matrices,

.. math::

    F_\text{layer} \approx A \otimes G, \qquad A = \mathbb E[\bar a \bar a^\top], \quad
    G = \mathbb E[g g^\top],

and the blocks of different layers are dropped (block-diagonal).  Since
(A ⊗ G)⁻¹ vec(V) = vec(G⁻¹ V A⁻¹), the natural-gradient step of a layer costs two small
inverses instead of one of size (d_in + 1)·d_out:

.. math::

    \Delta [W\ b] = -\epsilon\, (G + \tfrac{\sqrt\lambda}{\pi} I)^{-1}\,
        \nabla_{[W\ b]} J\, (A + \pi\sqrt\lambda\, I)^{-1},
    \qquad \pi^2 = \frac{\operatorname{tr}(A)/(d_\text{in}+1)}{\operatorname{tr}(G)/d_\text{out}},

with the damping λ split between the factors as in Martens & Grosse (2015, §6.3, "factored
Tikhonov damping"; π balances the two factors' scales).

Symbols: ε the learning rate (``lr``), λ the damping (``damping``), ρ the decay of the factors'
moving averages (``factor_decay``), α momentum (``momentum``).

The interface
-------------
``KFAC(model, lr=..., damping=..., update_interval=..., ...)`` is a ``torch.optim.Optimizer``
over the weights and biases of ``layers`` (default: every ``nn.Linear`` of ``model``; the model
must output class scores for ``nn.CrossEntropyLoss``).  Use it as any optimizer
(``loss.backward(); opt.step()``, also in ``course_lib.train``).  It registers a forward
pre-hook on ``model`` (to remember the last input batch X) and, on each layer, a forward hook
(to record ā) and a hook on the layer's output (to record g); they record only while the
optimizer estimates the factors.  Every ``update_interval`` steps (and at the first step),
``step`` runs its own *Fisher pass*: a forward pass on the remembered X, labels drawn from the
model's own predictive distribution y ~ p_θ(y|x) (``fisher="true"``, one draw per example;
``fisher="empirical"`` uses the training labels instead, which the caller passes with
``set_labels``), a backward pass of the summed log-loss, and then A and G are averaged into
their moving averages and the damped factors are inverted.  Call :meth:`remove_hooks` when done.

Cost per step, in passes over the batch: the usual forward + backward (by the caller), plus one
forward + backward every ``update_interval`` steps, plus per layer two (d+1)³- and d_out³-sized
inversions every ``update_interval`` steps and two matrix products d_out·(d_in+1)·(d_in+1+d_out)
every step.

References: Amari (1998), *Natural gradient works efficiently in learning*; Martens & Grosse
(2015), *Optimizing neural networks with Kronecker-factored approximate curvature*, ICML.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from course_lib.optim._base import check_lr, check_nonnegative, check_unit_interval

__all__ = ["KFAC", "kfac_factors", "kfac_update", "damped_inverses"]


def _with_ones(a: torch.Tensor) -> torch.Tensor:
    """ā = [a, 1]: the layer input with a column of ones for the bias."""
    return torch.cat([a, torch.ones_like(a[:, :1])], dim=1)


def kfac_factors(a: torch.Tensor, g: torch.Tensor, bias: bool = True,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A = mean(ā āᵀ) and G = mean(g gᵀ) over the rows of ``a`` (N, d_in) and ``g`` (M, d_out).

    ``g`` holds per-example gradients of log p with respect to the layer's output; it may have
    more rows than ``a`` (several label draws per example) with ``weights`` (M,) summing to N's
    number of examples, e.g. p(y=c|x) per (example, class) when the expectation over y is exact.
    """
    abar = _with_ones(a) if bias else a
    A = abar.T @ abar / a.shape[0]
    if weights is None:
        G = g.T @ g / g.shape[0]
    else:
        G = (g * weights[:, None]).T @ g / weights.sum()
    return A, G


def damped_inverses(A: torch.Tensor, G: torch.Tensor,
                    damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A + π√λ I)⁻¹ and (G + √λ/π I)⁻¹, π² = (tr A / dim A) / (tr G / dim G) (factored damping)."""
    pi = torch.sqrt((torch.trace(A) / A.shape[0]) / (torch.trace(G) / G.shape[0]).clamp_min(1e-30))
    root = damping ** 0.5
    eye_a = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    eye_g = torch.eye(G.shape[0], dtype=G.dtype, device=G.device)
    return (torch.linalg.inv(A + pi * root * eye_a),
            torch.linalg.inv(G + root / pi.clamp_min(1e-30) * eye_g))


def kfac_update(weight: torch.Tensor, bias: torch.Tensor | None, state: dict, *, lr: float,
                momentum: float = 0.0) -> None:
    """One K-FAC step on a layer, in place: [W b] ← [W b] − ε G⁻¹ ∇[W b] A⁻¹ (with momentum α).

    ``state`` holds ``'A_inv'`` and ``'G_inv'`` (the damped inverses); the gradients are read from
    ``weight.grad`` and ``bias.grad``.  With momentum, the preconditioned direction d is averaged
    as v ← α v + d, and the step is −ε v (as torch's SGD does with g).
    """
    grad = weight.grad if bias is None else torch.cat([weight.grad, bias.grad[:, None]], dim=1)
    direction = state["G_inv"] @ grad @ state["A_inv"]
    if momentum:
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = direction.clone()
        else:
            buf.mul_(momentum).add_(direction)
        direction = buf
    if bias is None:
        weight.add_(direction, alpha=-lr)
    else:
        weight.add_(direction[:, :-1], alpha=-lr)
        bias.add_(direction[:, -1], alpha=-lr)


class KFAC(torch.optim.Optimizer):
    """K-FAC for the ``nn.Linear`` layers of a classifier (the interface: module docstring).

    Args:
        model: the network; its output are class scores (logits).
        lr: ε.  damping: λ (added to the Fisher, split between the factors).
        update_interval: steps between two re-estimations of A, G and their inverses (≥ 1).
        factor_decay: ρ, the moving average A ← ρA + (1 − ρ)A_batch (0: the last batch only).
        momentum: α, on the preconditioned direction.
        layers: the ``nn.Linear`` modules to precondition (default: all of ``model``'s).
        fisher: ``"true"`` (labels drawn from the model) or ``"empirical"`` (the training labels,
            given with :meth:`set_labels` before each step that estimates the factors).
        generator: the random generator for the label draws (default: a fresh one seeded 0).

    Attributes: ``steps`` (t), ``fisher_passes`` (extra forward + backward passes so far).
    """

    def __init__(self, model: nn.Module, lr: float = 0.1, damping: float = 1e-3,
                 update_interval: int = 10, factor_decay: float = 0.95, momentum: float = 0.0,
                 layers: Iterable[nn.Linear] | None = None, fisher: str = "true",
                 generator: torch.Generator | None = None) -> None:
        check_lr(lr)
        check_nonnegative("damping", damping)
        check_nonnegative("momentum", momentum)
        check_unit_interval("factor_decay", factor_decay)
        if not isinstance(update_interval, int) or update_interval < 1:
            raise ValueError(f"Invalid update_interval: {update_interval!r} (expected an int >= 1)")
        if fisher not in ("true", "empirical"):
            raise ValueError(f"Invalid fisher: {fisher!r} (expected 'true' or 'empirical')")
        self.model = model
        self.layers = [m for m in model.modules() if isinstance(m, nn.Linear)] \
            if layers is None else list(layers)
        if not self.layers or not all(isinstance(m, nn.Linear) for m in self.layers):
            raise ValueError("layers must be a non-empty list of nn.Linear modules")
        params = [p for m in self.layers for p in (m.weight, m.bias) if p is not None]
        super().__init__(params, dict(lr=lr, damping=damping, momentum=momentum))
        self.update_interval = update_interval
        self.factor_decay = factor_decay
        self.fisher = fisher
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.steps = 0
        self.fisher_passes = 0
        self._labels: torch.Tensor | None = None
        self._X: torch.Tensor | None = None
        self._recording = False
        self._a: dict[nn.Linear, torch.Tensor] = {}
        self._s: dict[nn.Linear, torch.Tensor] = {}
        self._handles = [model.register_forward_pre_hook(self._remember_input)]
        for layer in self.layers:
            self._handles.append(layer.register_forward_hook(self._record))

    # -- hooks --------------------------------------------------------------------------------
    def _remember_input(self, module, inputs):
        if not self._recording:
            self._X = inputs[0].detach()

    def _record(self, layer, inputs, output):
        if self._recording:
            self._a[layer] = inputs[0].detach()
            self._s[layer] = output  # its gradient g is taken in the Fisher pass

    def remove_hooks(self) -> None:
        """Detach the optimizer from the model (no further factor updates are possible)."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def set_labels(self, y: torch.Tensor) -> None:
        """The training labels of the current batch (only for ``fisher="empirical"``)."""
        self._labels = y

    # -- the Fisher pass ----------------------------------------------------------------------
    @torch.enable_grad()
    def _estimate_factors(self) -> None:
        if self._X is None:
            raise RuntimeError("KFAC.step() before any forward pass of the model")
        self._recording = True
        try:
            logits = self.model(self._X)
        finally:
            self._recording = False
        if self.fisher == "true":
            probs = torch.softmax(logits.detach().double(), dim=1)
            if not torch.isfinite(probs).all():
                raise FloatingPointError("the model's outputs are not finite: the run diverged")
            y = torch.multinomial(probs.cpu(), 1, generator=self.generator)[:, 0].to(logits.device)
        else:
            if self._labels is None:
                raise RuntimeError("fisher='empirical' needs set_labels(y) before step()")
            y = self._labels
        loss = nn.functional.cross_entropy(logits, y, reduction="sum")  # per-example g, unscaled
        outputs = [self._s[layer] for layer in self.layers]
        grads = torch.autograd.grad(loss, outputs)
        self.fisher_passes += 1
        for layer, g in zip(self.layers, grads):
            A, G = kfac_factors(self._a[layer], g.detach(), bias=layer.bias is not None)
            state = self.state[layer.weight]
            if "A" in state:
                state["A"].lerp_(A, 1 - self.factor_decay)
                state["G"].lerp_(G, 1 - self.factor_decay)
            else:
                state["A"], state["G"] = A, G
        self._a.clear()
        self._s.clear()

    @torch.no_grad()
    def step(self, closure=None):
        """One K-FAC step on every layer (re-estimating the factors first when it is due).

        Raises FloatingPointError (before changing any parameter) when the factors are not
        finite or their damped versions cannot be inverted: the run has diverged."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.steps % self.update_interval == 0:
            self._estimate_factors()
            for group in self.param_groups:
                for layer in self.layers:
                    state = self.state[layer.weight]
                    if not (torch.isfinite(state["A"]).all() and torch.isfinite(state["G"]).all()):
                        raise FloatingPointError("K-FAC's factors are not finite: the run diverged")
                    try:
                        state["A_inv"], state["G_inv"] = damped_inverses(state["A"], state["G"],
                                                                         group["damping"])
                    except torch.linalg.LinAlgError as error:  # overflow in float32
                        raise FloatingPointError("K-FAC's damped factors are singular: the run "
                                                 "diverged") from error
        self.steps += 1
        group = self.param_groups[0]
        for layer in self.layers:
            if layer.weight.grad is None:
                continue
            kfac_update(layer.weight, layer.bias, self.state[layer.weight], lr=group["lr"],
                        momentum=group["momentum"])
        return loss
