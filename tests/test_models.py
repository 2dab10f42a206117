"""Models: shapes, parameter counts, seeding, and the RNN against torch.nn.RNN and a hand unroll."""
import numpy as np
import pytest
import torch
from torch import nn

from course_lib.models import VanillaRNN, mlp, small_cnn


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_mlp_shapes_and_parameter_count():
    model = mlp(40, (256, 256), 10)
    assert model(torch.zeros(7, 40)).shape == (7, 10)
    assert n_params(model) == (40 * 256 + 256) + (256 * 256 + 256) + (256 * 10 + 10)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    linear = mlp(3, (), 2)  # no hidden layer: a linear model
    assert len(linear) == 1 and n_params(linear) == 3 * 2 + 2
    assert isinstance(mlp(4, (5,), 1, activation="tanh")[1], nn.Tanh)


def test_mlp_without_generator_draws_like_torch_nn():
    torch.manual_seed(3)
    ours = mlp(5, (8,), 2)
    torch.manual_seed(3)
    ref = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    for p, q in zip(ours.parameters(), ref.parameters(), strict=True):
        assert torch.equal(p, q)


def test_generator_fixes_theta0_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = mlp(5, (8,), 2, generator=torch.Generator().manual_seed(1))
    b = mlp(5, (8,), 2, generator=torch.Generator().manual_seed(1))
    c = small_cnn(generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    # torch's default distribution: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    big = mlp(400, (), 300, generator=torch.Generator().manual_seed(0))
    w = big[0].weight
    assert w.abs().max() <= 1 / 20 and w.abs().max() > 0.99 / 20
    assert abs(w.var().item() - (1 / 20) ** 2 / 3) < 0.02 * (1 / 20) ** 2 / 3
    assert c[1].weight.abs().max() <= 1 / np.sqrt(1 * 5)


def test_small_cnn_shapes_and_parameter_count():
    model = small_cnn(40, (16, 32), 10, kernel_size=5)
    assert model(torch.zeros(3, 40)).shape == (3, 10)
    # conv1: 1->16 (k=5), conv2: 16->32 (k=5), lengths 40 -> 20 -> 10, then Linear(32*10, 10)
    assert n_params(model) == (16 * 1 * 5 + 16) + (32 * 16 * 5 + 32) + (32 * 10 * 10 + 10)
    assert small_cnn(33, (4,), 3, kernel_size=3)(torch.zeros(2, 33)).shape == (2, 3)
    assert small_cnn(2, (4, 4, 4))(torch.zeros(2, 2)).shape == (2, 10)  # lengths 2 -> 1 -> 1 -> 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(in_features=0, out_features=2), "in_features"),
    (dict(in_features=2, out_features=2, hidden=(3, 0)), "hidden"),
    (dict(in_features=2, out_features=2, activation="swish"), "activation"),
])
def test_mlp_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mlp(**kwargs)


def make_rnn(D=3, H=5, O=2, seed=0):
    return VanillaRNN(D, H, O, generator=torch.Generator().manual_seed(seed)).double()


def test_rnn_matches_torch_rnn_with_copied_weights():
    rnn = make_rnn()
    ref = nn.RNN(3, 5, nonlinearity="tanh", batch_first=True).double()
    with torch.no_grad():
        ref.weight_hh_l0.copy_(rnn.W)
        ref.weight_ih_l0.copy_(rnn.U)
        ref.bias_ih_l0.copy_(rnn.b)
        ref.bias_hh_l0.zero_()
    x = torch.randn(4, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h0 = torch.randn(4, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    hs = rnn.states(x, h0)
    out, h_n = ref(x, h0[None])
    assert len(hs) == 8 and torch.equal(hs[0], h0)
    torch.testing.assert_close(torch.stack(hs[1:], dim=1), out, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rnn(x, h0), h_n[0] @ rnn.V.T + rnn.c, rtol=1e-12, atol=1e-12)


def test_rnn_matches_a_hand_unroll_in_numpy():
    rnn = make_rnn()
    x = np.random.default_rng(0).normal(size=(2, 4, 3))
    W, U, b, V, c = (p.detach().numpy() for p in (rnn.W, rnn.U, rnn.b, rnn.V, rnn.c))
    h = np.zeros((2, 5))
    for t in range(4):
        h = np.tanh(h @ W.T + x[:, t] @ U.T + b)
    np.testing.assert_allclose(rnn(torch.from_numpy(x)).detach().numpy(), h @ V.T + c, rtol=1e-12)
    assert VanillaRNN(3, 5)(torch.zeros(2, 4, 3)).shape == (2, 5)  # no readout: h_T


def test_rnn_gradient_wrt_h0_is_backprop_through_time():
    """∂L/∂h_0 by autograd equals g_{t-1} = Wᵀ (g_t ⊙ (1 - h_t²)) run back from g_T = ∂L/∂h_T."""
    rnn = make_rnn(H=4)
    x = torch.randn(1, 6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h0 = torch.zeros(1, 4, dtype=torch.float64, requires_grad=True)
    hs = rnn.states(x, h0)
    loss = hs[-1].sum()
    (grad_h0,) = torch.autograd.grad(loss, h0)
    g = torch.ones(1, 4, dtype=torch.float64)
    for h in reversed(hs[1:]):
        g = (g * (1 - h.detach() ** 2)) @ rnn.W.detach()
    torch.testing.assert_close(grad_h0, g, rtol=1e-12, atol=1e-14)


def test_set_spectral_radius():
    rnn = VanillaRNN(2, 16, generator=torch.Generator().manual_seed(0))
    W_before = rnn.W.detach().clone()
    for rho in (0.5, 1.0, 1.5):
        rnn.set_spectral_radius(rho)
        assert abs(rnn.spectral_radius() - rho) < 1e-5
        eig = np.linalg.eigvals(rnn.W.detach().double().numpy())
        assert abs(np.abs(eig).max() - rho) < 1e-5
    ratio = rnn.W.detach() / W_before  # a pure rescaling
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))
