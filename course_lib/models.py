"""Small models used across the course: an MLP, a 1-D CNN for MNIST-1D, a vanilla RNN.

Every constructor takes an optional ``generator``: with one, the initial parameters are drawn
from it (so a figure can compare two optimizers from the *same* θ₀ without touching the global
RNG); without one they come from torch's global RNG, exactly as ``torch.nn`` would draw them.
Either way the distribution is torch's default, U(-1/√fan_in, 1/√fan_in).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU,
               "identity": nn.Identity}


@torch.no_grad()
def _build(layers: Callable[[], list[nn.Module]], generator: torch.Generator | None) -> nn.Sequential:
    """nn.Sequential(*layers()), its Linear/Conv1d layers drawn from `generator` if one is given.

    torch's default (kaiming_uniform_ with a=√5) is U(-1/√fan_in, 1/√fan_in) for weight and bias;
    we redraw it here only because ``reset_parameters`` cannot take a generator, and fork the
    global RNG meanwhile so that building the layers leaves it as it was.
    """
    if generator is None:
        return nn.Sequential(*layers())
    with torch.random.fork_rng(devices=[]):
        model = nn.Sequential(*layers())
    for layer in model.modules():
        if isinstance(layer, (nn.Linear, nn.Conv1d)):
            fan_in = layer.weight[0].numel()  # in_features, or in_channels * kernel_size
            bound = 1 / math.sqrt(fan_in)
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.uniform_(-bound, bound, generator=generator)
    return model


def _activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"Invalid activation: {name!r} (expected one of {sorted(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


def mlp(in_features: int, hidden: tuple[int, ...] = (100,), out_features: int = 10,
        activation: str = "relu", *, generator: torch.Generator | None = None) -> nn.Sequential:
    """A fully connected network: (N, in_features) -> (N, out_features) scores (no softmax).

    ``hidden=(256, 256)`` gives Linear(in, 256) act Linear(256, 256) act Linear(256, out);
    ``hidden=()`` gives a linear model.
    """
    for name, value in (("in_features", in_features), ("out_features", out_features)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (expected an int >= 1)")
    if any(not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"Invalid hidden: {hidden!r} (expected a tuple of ints >= 1)")
    _activation(activation)  # validate before building anything
    widths = [in_features, *hidden]

    def layers():
        out: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:]):
            out += [nn.Linear(fan_in, fan_out), _activation(activation)]
        return out + [nn.Linear(widths[-1], out_features)]
    return _build(layers, generator)


def _conv_length(length: int, kernel_size: int, stride: int, padding: int) -> int:
    return (length + 2 * padding - kernel_size) // stride + 1


def small_cnn(in_length: int = 40, channels: tuple[int, ...] = (16, 32), n_classes: int = 10,
              kernel_size: int = 5, *, generator: torch.Generator | None = None) -> nn.Sequential:
    """A 1-D CNN for MNIST-1D: (N, in_length) signals -> (N, n_classes) scores.

    Each conv layer halves the length (stride 2, "same" padding) and is followed by a ReLU;
    a linear layer reads the flattened features.  With the defaults: 40 -> 20 -> 10 positions.
    """
    if not channels:
        raise ValueError(f"Invalid channels: {channels!r} (expected at least one layer)")
    length = in_length  # after the conv layers: ⌈L/2⌉ each, for an odd kernel_size
    for _ in channels:
        length = _conv_length(length, kernel_size, 2, kernel_size // 2)

    def layers():
        out: list[nn.Module] = [nn.Unflatten(1, (1, in_length))]  # (N, L) -> (N, 1, L)
        for c_in, c_out in zip((1, *channels[:-1]), channels):
            out += [nn.Conv1d(c_in, c_out, kernel_size, stride=2, padding=kernel_size // 2),
                    nn.ReLU()]
        # (N, C, length) -> (N, C * length) -> scores
        return out + [nn.Flatten(), nn.Linear(channels[-1] * length, n_classes)]
    return _build(layers, generator)


class VanillaRNN(nn.Module):
    """A tanh RNN written out step by step (Deep Learning book, eqs. 10.8-10.10):

        h_t = tanh(W h_{t-1} + U x_t + b),   t = 1..T,      o = V h_T + c

    Input x has shape (N, T, input_size).  ``states(x, h0)`` returns the list [h_0, h_1, ..., h_T]
    of (N, hidden_size) tensors, each a node of the autograd graph, so ∂L/∂h_t can be taken with
    ``torch.autograd.grad(loss, hs[t])``.  ``forward`` returns o (or h_T when out_features is None).
    Parameters are drawn like ``torch.nn.RNN``: U(-1/√hidden_size, 1/√hidden_size).
    """

    def __init__(self, input_size: int, hidden_size: int, out_features: int | None = None, *,
                 generator: torch.Generator | None = None):
        super().__init__()
        H, D = hidden_size, input_size
        self.W = nn.Parameter(torch.empty(H, H))  # hidden-to-hidden
        self.U = nn.Parameter(torch.empty(H, D))  # input-to-hidden
        self.b = nn.Parameter(torch.empty(H))
        self.V = nn.Parameter(torch.empty(out_features, H)) if out_features else None
        self.c = nn.Parameter(torch.empty(out_features)) if out_features else None
        bound = 1 / math.sqrt(H)
        with torch.no_grad():
            for p in self.parameters():
                p.uniform_(-bound, bound, generator=generator)

    def states(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> list[torch.Tensor]:
        """[h_0, ..., h_T] for x of shape (N, T, input_size); h_0 defaults to zeros."""
        h = x.new_zeros(x.shape[0], self.W.shape[0]) if h0 is None else h0  # (N, H)
        hs = [h]
        for t in range(x.shape[1]):
            h = torch.tanh(h @ self.W.T + x[:, t] @ self.U.T + self.b)  # rows are examples
            hs.append(h)
        return hs

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
        h_T = self.states(x, h0)[-1]
        return h_T if self.V is None else h_T @ self.V.T + self.c  # (N, out_features)

    def spectral_radius(self) -> float:
        """max |λ| over the eigenvalues λ of W: > 1 lets gradients explode, < 1 makes them vanish."""
        return torch.linalg.eigvals(self.W.detach().double()).abs().max().item()

    @torch.no_grad()
    def set_spectral_radius(self, rho: float) -> "VanillaRNN":
        """Rescale W so that its spectral radius is `rho` (eigenvectors unchanged)."""
        if rho < 0:
            raise ValueError(f"Invalid rho: {rho} (expected >= 0)")
        self.W.mul_(rho / self.spectral_radius())
        return self


NORMS = {"none": None, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}


class DeepMLP(nn.Module):
    """A deep fully connected network of identical blocks, with or without skips and normalization.

        h_0 = W_in x + b_in,
        h_l = s · h_{l-1} + f_l(h_{l-1}),  f_l(h) = W_l ReLU(N_l(h)) + b_l,   l = 1..depth,
        o   = W_out h_depth + b_out

    with s = 1 for ``residual=True`` (He et al., 2016; the "pre-activation" block of their
    follow-up, one linear layer per branch) and s = 0 for a plain network; N_l is the identity
    (``norm="none"``), ``nn.BatchNorm1d`` or ``nn.LayerNorm``; ``branch_scale`` multiplies the
    branch f_l.  Plain and residual networks have exactly the same parameters: only the skip
    differs.  ``blocks[l - 1].linear`` is W_l.  Linear layers are drawn as in :func:`mlp`.
    """

    def __init__(self, in_features: int, width: int, depth: int, out_features: int = 10, *,
                 residual: bool = False, norm: str = "none", branch_scale: float = 1.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        if norm not in NORMS:
            raise ValueError(f"Invalid norm: {norm!r} (expected one of {sorted(NORMS)})")
        if not isinstance(depth, int) or depth < 0:
            raise ValueError(f"Invalid depth: {depth!r} (expected an int >= 0)")
        self.residual, self.norm, self.branch_scale = bool(residual), norm, float(branch_scale)
        with torch.random.fork_rng(devices=[], enabled=generator is not None):
            self.inp = nn.Linear(in_features, width)
            self.blocks = nn.ModuleList()
            for _ in range(depth):
                block = nn.Module()
                block.norm = NORMS[norm](width) if NORMS[norm] else nn.Identity()
                block.linear = nn.Linear(width, width)
                self.blocks.append(block)
            self.out = nn.Linear(width, out_features)
        if generator is not None:
            with torch.no_grad():
                for layer in self.modules():
                    if isinstance(layer, nn.Linear):
                        bound = 1 / math.sqrt(layer.in_features)
                        layer.weight.uniform_(-bound, bound, generator=generator)
                        layer.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.inp(x)
        for block in self.blocks:
            branch = self.branch_scale * block.linear(torch.relu(block.norm(h)))
            h = h + branch if self.residual else branch
        return self.out(h)


def residual_mlp(in_features: int, width: int, depth: int, out_features: int = 10, *,
                 norm: str = "none", branch_scale: float = 1.0,
                 generator: torch.Generator | None = None) -> DeepMLP:
    """A :class:`DeepMLP` with skips: h_l = h_{l-1} + branch_scale · W_l ReLU(N_l(h_{l-1})) + …"""
    return DeepMLP(in_features, width, depth, out_features, residual=True, norm=norm,
                   branch_scale=branch_scale, generator=generator)
