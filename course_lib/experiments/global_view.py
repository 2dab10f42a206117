r"""The global view of the loss landscape: chapter 22.

Chapters 4 and 5 looked at one point of the landscape at a time (a minimum, a saddle).  This
chapter measures properties of the *whole* set of solutions that training finds, on MNIST-1D
(Greydanus, 2020) with small MLPs:

==================================  ===========================================================
``interpolation_sweep``             training loss and accuracy against the width: where the net
                                    starts to fit (interpolate) its training set, with the true
                                    and with shuffled labels (Zhang et al., 2017)
``interpolation_path``              the cost along the straight line (1 − a) θ_A + a θ_B
``loss_barrier``                    max along that line minus the mean of its ends
``weight_matching``                 permute B's hidden units to look like A's (Ainsworth et
                                    al., 2023), via chapter 4's ``permute_hidden_units``
``mode_connectivity``               barriers between solutions from different seeds, and
                                    between two children spawned from a shared checkpoint
                                    after k epochs (Frankle et al., 2020)
``lottery_tickets``                 iterative magnitude pruning with rewinding, against a
                                    random re-initialization with the same mask (Frankle &
                                    Carbin, 2019; Frankle et al., 2020); pruning is torch's
                                    ``torch.nn.utils.prune``
``NTKMLP``, ``lazy_training``       a one-hidden-layer net in the NTK parameterization; how far
                                    θ and the empirical NTK move in training, against the width
                                    (Jacot et al., 2018; Lee et al., 2019; Chizat et al., 2019)
``empirical_ntk``                   K(x, x') = ⟨∂f₀(x)/∂θ, ∂f₀(x')/∂θ⟩ on a probe set
``filter_normalized_direction``     a random direction scaled row by row to θ (Li et al., 2018)
``loss_surface``                    J on a 2-D plane through θ spanned by two such directions
``sgd_vs_svrg_run``,                SGD against SVRG (Johnson & Zhang, 2013) with a constant ε
``variance_reduction``              on a strongly convex least-squares finite sum
==================================  ===========================================================

The chapter's settings are module constants (``DATA``, ``WIDTH_SWEEP``, ``LMC``, ``LOTTERY``,
``NTK``, ``SLICE``, ``SVRG``), so ``chapters/22_the_global_view.ipynb`` and
``tests/test_ch22_global_view.py`` run the same experiments.

References: Zhang, Bengio, Hardt, Recht & Vinyals (2017), *Understanding deep learning requires
rethinking generalization*, ICLR; Garipov, Izmailov, Podoprikhin, Vetrov & Wilson (2018), *Loss
surfaces, mode connectivity, and fast ensembling of DNNs*, NeurIPS; Draxler, Veschgini,
Salmhofer & Hamprecht (2018), *Essentially no barriers in neural network energy landscape*,
ICML; Frankle & Carbin (2019), *The lottery ticket hypothesis*, ICLR; Frankle, Dziugaite, Roy &
Carbin (2020), *Linear mode connectivity and the lottery ticket hypothesis*, ICML; Ainsworth,
Hayase & Srinivasa (2023), *Git Re-Basin*, ICLR; Jacot, Gabriel & Hongler (2018), *Neural
tangent kernel*, NeurIPS; Lee et al. (2019), *Wide neural networks of any depth evolve as linear
models under gradient descent*, NeurIPS; Chizat, Oyallon & Bach (2019), *On lazy training in
differentiable programming*, NeurIPS; Li, Xu, Taylor, Studer & Goldstein (2018), *Visualizing
the loss landscape of neural nets*, NeurIPS; Johnson & Zhang (2013), *Accelerating stochastic
gradient descent using predictive variance reduction*, NeurIPS.
"""
from __future__ import annotations

import copy
import math
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from course_lib.data import mnist1d
from course_lib.models import mlp
from course_lib.train import train
from course_lib.utils import shared_result, single_thread

#: the data of every experiment: MNIST-1D, 3200 training and 800 test signals of length 40
DATA = dict(num_samples=4000, seed=0)


def _data():
    return mnist1d(DATA["num_samples"], seed=DATA["seed"])


def _net(hidden: Sequence[int], seed: int) -> nn.Sequential:
    return mlp(40, tuple(hidden), 10, generator=torch.Generator().manual_seed(seed))


def _sgd(model, lr, momentum):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)


@torch.no_grad()
def evaluate_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, error rate) of ``model`` on (X, y)."""
    out = model(X)
    return (float(nn.functional.cross_entropy(out, y)),
            float((out.argmax(1) != y).double().mean()))


def _median(x) -> float:
    return float(np.median(np.asarray(x, dtype=float)))


# ----------------------------------------------------------------------------------------
# 22.1 Over-parameterization and interpolation
# ----------------------------------------------------------------------------------------
#: one hidden layer of each width, trained on the first n_train training signals, full batch,
#: Adam with ε = lr for `steps` updates, squared error on one-hot targets (chapter 4's
#: ``train_from_many_seeds``: the seeds side by side); with the true and with shuffled labels
WIDTH_SWEEP = dict(widths=(4, 8, 16, 32, 64, 128), seeds=(0, 1, 2), n_train=256, steps=400,
                   lr=0.01)
#: a run "interpolates" its training set when it classifies every training example right
INTERPOLATES = 1.0


class WidthSweep(NamedTuple):
    widths: np.ndarray         # (W,)
    params: np.ndarray         # (W,) number of parameters
    seeds: np.ndarray          # (S,)
    train_loss: dict           # labels ("true", "shuffled") -> (W, S) final training loss
    train_accuracy: dict       # same keys -> (W, S)
    test_accuracy: np.ndarray  # (W, S) with the true labels

    def threshold(self, labels: str = "true") -> int:
        """The smallest width whose median run classifies every training example right."""
        med = np.median(self.train_accuracy[labels], axis=1)
        ok = np.nonzero(med >= INTERPOLATES)[0]
        return int(self.widths[ok[0]]) if len(ok) else -1


@shared_result
def interpolation_sweep(widths: Sequence[int] = WIDTH_SWEEP["widths"],
                        seeds: Sequence[int] = WIDTH_SWEEP["seeds"]) -> WidthSweep:
    """Train ``mlp(40, (width,), 10)`` on m = ``n_train`` MNIST-1D signals for the whole
    budget, for each width and seed, with the true labels and with the labels shuffled (a
    permutation drawn once, seed 0): which widths fit their training set exactly?"""
    from course_lib.experiments.local_minima import train_from_many_seeds
    from course_lib.optim import Adam

    data = _data()
    m = WIDTH_SWEEP["n_train"]
    X, y = data.X_train[:m], data.y_train[:m]
    shuffled = y[torch.randperm(m, generator=torch.Generator().manual_seed(0))]
    loss = {"true": [], "shuffled": []}
    acc = {"true": [], "shuffled": []}
    test, params = [], []
    with single_thread():
        for w in widths:
            params.append(sum(p.numel() for p in _net((w,), 0).parameters()))
            for labels, target in (("true", y), ("shuffled", shuffled)):
                runs = train_from_many_seeds(X, nn.functional.one_hot(target, 10).float(), (w,),
                                             seeds=seeds, steps=WIDTH_SWEEP["steps"],
                                             optimizer=Adam, lr=WIDTH_SWEEP["lr"])
                nets = [runs.model(i) for i in range(len(seeds))]
                loss[labels].append(runs.final_losses)
                acc[labels].append([1 - evaluate_loss(n, X, target)[1] for n in nets])
                if labels == "true":
                    test.append([1 - evaluate_loss(n, *data.test)[1] for n in nets])
    return WidthSweep(np.array(widths), np.array(params), np.array(seeds),
                      {k: np.array(v) for k, v in loss.items()},
                      {k: np.array(v) for k, v in acc.items()}, np.array(test))


def plot_interpolation(sweep: WidthSweep, ax=None):
    """Median training loss (left) and training/test accuracy (right) against the width."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    w = sweep.widths
    for labels, c in (("true", "C0"), ("shuffled", "C3")):
        ax[0].loglog(w, np.median(sweep.train_loss[labels], axis=1), "o-", c=c,
                     label=f"{labels} labels")
        ax[1].semilogx(w, np.median(sweep.train_accuracy[labels], axis=1), "o-", c=c,
                       label=f"train, {labels} labels")
    ax[1].semilogx(w, np.median(sweep.test_accuracy, axis=1), "s--", c="C0", label="test, true labels")
    ax[1].axhline(0.1, c="gray", lw=0.8, ls=":")
    m = WIDTH_SWEEP["n_train"]
    for a in ax:
        a.set_xlabel("hidden width")
    ax[0].set_ylabel("final training MSE (median)")
    ax[1].set_ylabel("accuracy (median)")
    ax[0].legend(fontsize=8)
    ax[1].legend(fontsize=8)
    ax[0].set_title(f"wide nets drive the loss on m = {m} to ~0")
    ax[1].set_title("…even with shuffled labels")
    plt.tight_layout()
    return ax


# ----------------------------------------------------------------------------------------
# 22.2 Linear mode connectivity and loss barriers
# ----------------------------------------------------------------------------------------
#: the networks of sections 22.2-22.5: two hidden layers of 128 units, SGD with momentum,
#: minibatch 128 (25 updates per epoch), `epochs` epochs; the path between two networks is
#: evaluated at `points` equally spaced a ∈ [0, 1]
LMC = dict(hidden=(128, 128), epochs=10, batch_size=128, lr=0.05, momentum=0.9,
           seeds=(0, 1, 2), points=21)
#: the split epochs k: the two children share the parent's first k epochs (the early
#: checkpoint of :func:`trained_network` is k = 1)
SPLITS = (0, 1)


def _blend(model_a: nn.Module, model_b: nn.Module, a: float) -> nn.Module:
    out = copy.deepcopy(model_a)
    sb = model_b.state_dict()
    out.load_state_dict({k: (1 - a) * v + a * sb[k] for k, v in model_a.state_dict().items()})
    return out


def interpolation_path(model_a: nn.Module, model_b: nn.Module, X: torch.Tensor,
                       y: torch.Tensor, points: int = LMC["points"]) -> tuple[np.ndarray, np.ndarray]:
    """(a, J(a)): the mean cross-entropy on (X, y) of θ(a) = (1 − a) θ_A + a θ_B at ``points``
    equally spaced a from 0 to 1 (a = 0 is A, a = 1 is B)."""
    alphas = np.linspace(0.0, 1.0, points)
    return alphas, np.array([evaluate_loss(_blend(model_a, model_b, float(a)), X, y)[0]
                             for a in alphas])


def loss_barrier(path_losses, alphas=None) -> float:
    """How far the straight path climbs above its ends.

    Without ``alphas``: max_a J(θ(a)) − ½ (J(θ_A) + J(θ_B)), the definition of Frankle et al.
    (2020).  With ``alphas`` (the a of each entry): max_a [J(θ(a)) − ((1 − a) J(θ_A) + a J(θ_B))],
    the height above the chord between the ends, the definition of Entezari et al. (2022) and
    Ainsworth et al. (2023).  The two agree when J(θ_A) = J(θ_B) and differ by at most
    ½ |J(θ_A) − J(θ_B)| otherwise."""
    J = np.asarray(path_losses, dtype=float)
    if alphas is None:
        return float(J.max() - 0.5 * (J[0] + J[-1]))
    a = np.asarray(alphas, dtype=float)
    if a.shape != J.shape:
        raise ValueError(f"Invalid alphas: shape {a.shape} (expected {J.shape})")
    return float(np.max(J - ((1 - a) * J[0] + a * J[-1])))


def _linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


@torch.no_grad()
def max_param_difference(model_a: nn.Module, model_b: nn.Module) -> float:
    """max |θ_A − θ_B| over all entries (same architecture)."""
    return max(float((p - q).abs().max()) for p, q in zip(model_a.parameters(),
                                                            model_b.parameters()))


@torch.no_grad()
def weight_matching(model_a: nn.Module, model_b: nn.Module, iterations: int = 20) -> nn.Module:
    r"""A copy of B with its hidden units permuted to match A's weights (Ainsworth et al., 2023).

    For hidden layer l it chooses the permutation π_l that maximizes
    ⟨W_l^A, P_l W_l^B P_{l−1}ᵀ⟩ + ⟨b_l^A, P_l b_l^B⟩ + ⟨W_{l+1}^A, P_{l+1} W_{l+1}^B P_lᵀ⟩
    with the other layers' permutations fixed (a linear assignment problem, solved by
    ``scipy.optimize.linear_sum_assignment``), layer after layer, until no π changes.  The
    result computes the same function as B (chapter 4's ``permute_hidden_units``)."""
    from scipy.optimize import linear_sum_assignment

    from course_lib.experiments.local_minima import permute_hidden_units
    la, lb = _linears(model_a), _linears(model_b)
    n_hidden = len(la) - 1
    perms = [torch.arange(la[l].out_features) for l in range(n_hidden)]
    for _ in range(iterations):
        changed = False
        for l in range(n_hidden):
            Wb = lb[l].weight if l == 0 else lb[l].weight[:, perms[l - 1]]
            C = la[l].weight.double() @ Wb.double().T + torch.outer(la[l].bias.double(),
                                                                    lb[l].bias.double())
            Wnext = lb[l + 1].weight if l + 1 == n_hidden else lb[l + 1].weight[perms[l + 1]]
            C += la[l + 1].weight.double().T @ Wnext.double()
            _, col = linear_sum_assignment(C.numpy(), maximize=True)
            new = torch.as_tensor(col, dtype=torch.long)
            if not torch.equal(new, perms[l]):
                perms[l], changed = new, True
        if not changed:
            break
    return permute_hidden_units(model_b, perms)


def _train_more(model, opt_state, epochs, seed):
    """Train ``model`` for ``epochs`` epochs with batch order ``seed``, starting from the
    optimizer state ``opt_state`` (None: a fresh one); return the new optimizer state."""
    cfg = LMC
    opt = _sgd(model, cfg["lr"], cfg["momentum"])
    if opt_state is not None:
        opt.load_state_dict(opt_state)
    if epochs > 0:
        train(model, nn.CrossEntropyLoss(), opt, _data().train, epochs=epochs,
              batch_size=cfg["batch_size"], seed=seed, metrics=())
    return opt.state_dict()


_TRAINED: dict = {}


def trained_network(seed: int) -> tuple[nn.Module, dict, nn.Module]:
    """Network A of seed s: θ₀ from seed s, one epoch with batch order s (the early checkpoint
    θ₁ and its optimizer state), then ``epochs`` − 1 more with order s + 1.  Returns copies of
    (θ₁'s network, its optimizer state, the final network); computed once per session."""
    if seed not in _TRAINED:
        with single_thread():
            net = _net(LMC["hidden"], seed)
            state = _train_more(net, None, 1, seed)
            early = copy.deepcopy(net)
            _train_more(net, state, LMC["epochs"] - 1, seed + 1)
        _TRAINED[seed] = (early, state, net)
    early, state, net = _TRAINED[seed]
    return copy.deepcopy(early), copy.deepcopy(state), copy.deepcopy(net)


class Connectivity(NamedTuple):
    seeds: np.ndarray               # (S,)
    splits: np.ndarray              # (K,) the split epochs k
    alphas: np.ndarray              # (P,)
    different: np.ndarray           # (S, P) training loss along the path, different inits
    aligned: np.ndarray             # (S, P) the same after weight matching
    children: np.ndarray            # (S, K, P) two children split after k epochs
    end_loss: np.ndarray            # (S,) mean training loss of the ends (different inits)
    test_error: np.ndarray          # (S,) test error of the seed's first network

    def barriers(self, chord: bool = False) -> dict:
        """'different', 'aligned': (S,) barriers; 'children': (S, K).  ``chord``: above the
        chord between the ends (Entezari et al., 2022), else above their mean (Frankle et al.,
        2020); see :func:`loss_barrier`."""
        al = self.alphas if chord else None
        return {"different": np.array([loss_barrier(p, al) for p in self.different]),
                "aligned": np.array([loss_barrier(p, al) for p in self.aligned]),
                "children": np.array([[loss_barrier(p, al) for p in row]
                                      for row in self.children])}


@shared_result
def mode_connectivity(seeds: Sequence[int] = LMC["seeds"]) -> Connectivity:
    """For each seed s: network A (:func:`trained_network`); network B, θ₀ from seed s + 100
    and its own batch order, the same budget; B aligned to A by weight matching; and the
    children: A and a sibling that shares A's first k epochs (k = 0: only θ₀; k = 1: θ₁ and
    the optimizer state) and then trains the remaining epochs with the batch order s + 1000.
    Losses along the paths on the training set."""
    cfg, data = LMC, _data()
    X, y = data.train
    diff, aligned, children, ends, err = [], [], [], [], []
    E = cfg["epochs"]
    with single_thread():
        for s in seeds:
            early, state, a = trained_network(s)
            b = _net(cfg["hidden"], s + 100)
            _train_more(b, None, E, s + 100)
            diff.append(interpolation_path(a, b, X, y)[1])
            aligned.append(interpolation_path(a, weight_matching(a, b), X, y)[1])
            ends.append(0.5 * (diff[-1][0] + diff[-1][-1]))
            err.append(evaluate_loss(a, *data.test)[1])
            row = []
            for k in SPLITS:
                kid = _net(cfg["hidden"], s) if k == 0 else early
                _train_more(kid, None if k == 0 else state, E - k, s + 1000)
                row.append(interpolation_path(a, kid, X, y)[1])
            children.append(row)
    return Connectivity(np.array(seeds), np.array(SPLITS), np.linspace(0, 1, cfg["points"]),
                        np.array(diff), np.array(aligned), np.array(children), np.array(ends),
                        np.array(err))


PAIRS = ("different inits", "different inits, weight-matched", "siblings, split at epoch 0",
         "siblings, split at epoch 1")


def _pair_paths(conn: Connectivity, pair: str) -> np.ndarray:
    if pair not in PAIRS:
        raise ValueError(f"Invalid pair: {pair!r} (expected one of {PAIRS})")
    i = PAIRS.index(pair)
    return [conn.different, conn.aligned, conn.children[:, 0], conn.children[:, 1]][i]


def plot_connectivity(conn: Connectivity, ax=None):
    """The median training loss along the straight path for each kind of pair (legend: the
    median barrier)."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    for pair, style in zip(PAIRS, ("C3-", "C1--", "C0-", "C2-.")):
        paths = _pair_paths(conn, pair)
        med = _median([loss_barrier(p) for p in paths])
        ax.plot(conn.alphas, np.median(paths, 0), style, lw=2, label=f"{pair} (barrier {med:.2g})")
    ax.set_xlabel("a  (θ = (1 − a) θ_A + a θ_B)")
    ax.set_ylabel("training loss (median over seeds)")
    ax.legend(fontsize=8)
    ax.set_title("a barrier between seeds; none between siblings")
    return ax


def plot_path(conn: Connectivity, pair: str = PAIRS[0], seed: int = 0, a: float = 0.5):
    """The widget's figure: one seed's path for one kind of pair, its barrier marked, and the
    point θ(a) on it."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 3.8))
    i = list(conn.seeds).index(seed)
    J = _pair_paths(conn, pair)[i]
    al = conn.alphas
    for other in PAIRS:
        ax.plot(al, _pair_paths(conn, other)[i], c="0.85", lw=1)
    ax.plot(al, J, "C0o-", lw=2, ms=3)
    ends = 0.5 * (J[0] + J[-1])
    top = int(np.argmax(J))
    ax.hlines(ends, 0, 1, colors="k", linestyles=":", label="mean of the ends")
    ax.annotate("", (al[top], J[top]), (al[top], ends),
                arrowprops=dict(arrowstyle="<->", color="C3"))
    ax.text(al[top] + 0.02, 0.5 * (J[top] + ends), f"barrier {loss_barrier(J):.3g}", color="C3")
    Ja = float(np.interp(a, al, J))
    ax.plot([a], [Ja], "C1*", ms=14, label=f"θ(a = {a:.2f}): loss {Ja:.3g}")
    ax.set_ylim(0, 1.05 * max(_pair_paths(conn, PAIRS[0]).max(), 1.0))
    ax.set_xlabel("a  (θ = (1 − a) θ_A + a θ_B)")
    ax.set_ylabel("training loss")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{pair}, seed {seed}")
    return fig


# ----------------------------------------------------------------------------------------
# 22.3 The lottery ticket hypothesis
# ----------------------------------------------------------------------------------------
#: iterative magnitude pruning of the networks of section 22.2 (same training), weights of
#: every layer pruned together (global magnitude), biases kept; after each round the kept
#: weights are rewound to θ₁, their values after the first epoch of the dense run A
LOTTERY = dict(sparsities=(0.5, 0.8, 0.95), seeds=(0, 1, 2))


class Lottery(NamedTuple):
    sparsities: np.ndarray   # (R,) fraction of weights removed after round r
    seeds: np.ndarray        # (S,)
    dense: np.ndarray        # (S,) test error of the dense network
    ticket: np.ndarray       # (S, R) test error of the pruned net, rewound and retrained
    random: np.ndarray       # (S, R) same mask, a fresh random θ₀ (seed s + 500), retrained


def _weights(model):
    return [(m, "weight") for m in _linears(model)]


def sparsity(model: nn.Module) -> float:
    """The fraction of the Linear layers' weights that are zero (biases not counted)."""
    ws = [m.weight for m in _linears(model)]
    return float(sum((w == 0).sum() for w in ws) / sum(w.numel() for w in ws))


def prune_globally(model: nn.Module, target: float) -> nn.Module:
    """Prune ``model`` in place to the fraction ``target`` of zero weights over all its Linear
    layers together: remove the smallest |θ| among the surviving weights
    (``torch.nn.utils.prune.global_unstructured`` with ``L1Unstructured``; on a second call the
    masks combine, so the kept weights are always a subset of the previous ones)."""
    if not 0 <= target < 1:
        raise ValueError(f"Invalid target: {target!r} (expected 0 <= target < 1)")
    ws = [m.weight for m in _linears(model)]
    total = sum(w.numel() for w in ws)
    pruned = int(sum(int((m.weight_mask == 0).sum()) for m in _linears(model)
                     if hasattr(m, "weight_mask")))
    amount = round(target * total) - pruned  # weights to remove now, an exact count
    if amount < 0:
        raise ValueError(f"Invalid target: {target} (already {pruned / total:.3g} pruned)")
    # the scores from weight_orig ⊙ mask: the attribute `weight` of a pruned module is only
    # refreshed by a forward pass, so it may be one optimizer step old
    scores = {(m, "weight"): (m.weight_orig * m.weight_mask if hasattr(m, "weight_orig")
                              else m.weight).detach().abs() for m in _linears(model)}
    prune.global_unstructured(_weights(model), pruning_method=prune.L1Unstructured, amount=amount,
                              importance_scores=scores)
    return model


@torch.no_grad()
def _load_weights(model, source):
    """Copy ``source``'s parameters into ``model`` (into weight_orig where it is pruned)."""
    for m, src in zip(_linears(model), _linears(source)):
        w = m.weight_orig if hasattr(m, "weight_orig") else m.weight
        w.copy_(src.weight_orig if hasattr(src, "weight_orig") else src.weight)
        m.bias.copy_(src.bias)


def random_reinit_with_mask(pruned: nn.Module, seed: int) -> nn.Module:
    """The lottery control: a fresh network of the same architecture (θ₀ from ``seed``) with
    ``pruned``'s masks applied (``torch.nn.utils.prune.custom_from_mask``)."""
    lin = _linears(pruned)
    ctrl = mlp(lin[0].in_features, tuple(m.out_features for m in lin[:-1]), lin[-1].out_features,
               generator=torch.Generator().manual_seed(seed))
    for m, mt in zip(_linears(ctrl), _linears(pruned)):
        prune.custom_from_mask(m, "weight", mt.weight_mask.clone())
    return ctrl


@shared_result
def lottery_tickets(seeds: Sequence[int] = LOTTERY["seeds"],
                    sparsities: Sequence[float] = LOTTERY["sparsities"]) -> Lottery:
    """Iterative magnitude pruning with rewinding.  For each seed: take the dense run A; for each target sparsity in turn prune the
    smallest-magnitude surviving weights of all layers together until that fraction is gone
    (``prune.global_unstructured``), rewind the survivors to θ₁ (after epoch 1 of the dense run
    A of :func:`trained_network`) and train the remaining epochs again, with A's batch order.  The control: the same mask on a fresh θ₀, trained the same way."""
    cfg, data = LMC, _data()
    E = cfg["epochs"]
    dense, ticket, random = [], [], []
    with single_thread():
        for s in seeds:
            early, _, net = trained_network(s)
            dense.append(evaluate_loss(net, *data.test)[1])
            row_t, row_r = [], []
            for target in sparsities:
                prune_globally(net, target)
                _load_weights(net, early)  # rewind the survivors to θ₁ (the mask stays)
                _train_more(net, None, E - 1, s + 1)
                row_t.append(evaluate_loss(net, *data.test)[1])
                ctrl = random_reinit_with_mask(net, s + 500)
                _train_more(ctrl, None, E, s)
                row_r.append(evaluate_loss(ctrl, *data.test)[1])
            ticket.append(row_t)
            random.append(row_r)
    return Lottery(np.array(sparsities), np.array(seeds), np.array(dense), np.array(ticket),
                   np.array(random))


def plot_lottery(lot: Lottery, ax=None):
    """Median test error against the sparsity: rewound tickets, random re-inits, dense."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    x = 100 * lot.sparsities
    for arr, style, label in ((lot.ticket, "o-C0", "pruned, rewound to epoch 1 (ticket)"),
                              (lot.random, "s--C3", "same mask, random re-init")):
        med = np.median(arr, 0)
        ax.plot(x, 100 * med, style, label=label)
        ax.fill_between(x, 100 * arr.min(0), 100 * arr.max(0), color=style[-2:], alpha=0.15)
    ax.axhline(100 * np.median(lot.dense), c="k", ls=":", label="dense")
    ax.set_xlabel("weights removed (%)")
    ax.set_ylabel("test error (%)")
    ax.legend(fontsize=8)
    ax.set_title("winning tickets: the mask alone is not enough")
    return ax


# ----------------------------------------------------------------------------------------
# 22.4 The neural tangent kernel regime
# ----------------------------------------------------------------------------------------
#: one hidden layer of each width in the NTK parameterization, full-batch gradient descent with
#: ε = lr for `steps` steps on n_train signals; the NTK of output 0 on the first n_probe
NTK = dict(widths=(32, 128, 512, 2048), seeds=(0, 1, 2), n_train=128, steps=100, lr=10.0,
           n_probe=32)


class NTKMLP(nn.Module):
    r"""f(x) = W₂ σ(W₁ x / √d + b₁) / √n + b₂ with every entry of W₁, W₂ drawn from N(0, 1),
    b₁ = b₂ = 0 at the start: the NTK parameterization of Jacot et al. (2018).  The forward
    pass equals a standard-parameterized net with weights W/√fan_in, but the *gradient* with
    respect to W is √fan_in times smaller, so a fixed ε moves each weight less as n grows."""

    def __init__(self, in_features: int, width: int, out_features: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W1 = nn.Parameter(torch.randn(width, in_features, generator=g))
        self.b1 = nn.Parameter(torch.zeros(width))
        self.W2 = nn.Parameter(torch.randn(out_features, width, generator=g))
        self.b2 = nn.Parameter(torch.zeros(out_features))

    def forward(self, x):
        h = torch.relu(x @ self.W1.T / math.sqrt(self.W1.shape[1]) + self.b1)
        return h @ self.W2.T / math.sqrt(self.W2.shape[1]) + self.b2


def empirical_ntk(model: nn.Module, X: torch.Tensor) -> torch.Tensor:
    """K (N, N) with K_ij = ⟨∂f₀(x_i)/∂θ, ∂f₀(x_j)/∂θ⟩ (output 0), in float64."""
    params = [p for p in model.parameters()]
    rows = []
    for x in X:
        out = model(x[None])[0, 0]
        g = torch.autograd.grad(out, params)
        rows.append(torch.cat([t.reshape(-1) for t in g]).double())
    J = torch.stack(rows)
    return J @ J.T


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()]).double()


class Laziness(NamedTuple):
    widths: np.ndarray       # (W,)
    seeds: np.ndarray        # (S,)
    weight_change: np.ndarray  # (W, S) ‖θ_T − θ₀‖ / ‖θ₀‖
    kernel_change: np.ndarray  # (W, S) ‖K_T − K₀‖_F / ‖K₀‖_F
    train_loss: np.ndarray     # (W, S) final training loss

    def slope(self, what: str = "weight_change") -> float:
        """The slope of log(median) against log(width): −½ for the NTK theory's n^(−1/2)."""
        med = np.median(getattr(self, what), axis=1)
        return float(np.polyfit(np.log(self.widths), np.log(med), 1)[0])

    def local_slopes(self, what: str = "weight_change") -> np.ndarray:
        """(W − 1,) the slopes of log(median) against log(width) between neighbouring widths."""
        med = np.median(getattr(self, what), axis=1)
        return np.diff(np.log(med)) / np.diff(np.log(self.widths))


@shared_result
def lazy_training(widths: Sequence[int] = NTK["widths"],
                  seeds: Sequence[int] = NTK["seeds"]) -> Laziness:
    """Train :class:`NTKMLP` of each width from each seed by full-batch gradient descent with
    the same ε; record how far θ and the empirical NTK moved, relative to their start."""
    data = _data()
    X, y = data.X_train[:NTK["n_train"]], data.y_train[:NTK["n_train"]]
    probe = X[:NTK["n_probe"]]
    dw, dk, loss = [], [], []
    with single_thread():
        for w in widths:
            row_w, row_k, row_l = [], [], []
            for s in seeds:
                net = NTKMLP(40, w, 10, seed=s)
                th0, K0 = _flat(net), empirical_ntk(net, probe)
                opt = torch.optim.SGD(net.parameters(), lr=NTK["lr"])
                train(net, nn.CrossEntropyLoss(), opt, (X, y), epochs=NTK["steps"],
                      batch_size=len(X), seed=s, metrics=())
                row_w.append(float((_flat(net) - th0).norm() / th0.norm()))
                row_k.append(float((empirical_ntk(net, probe) - K0).norm() / K0.norm()))
                row_l.append(evaluate_loss(net, X, y)[0])
            dw.append(row_w)
            dk.append(row_k)
            loss.append(row_l)
    return Laziness(np.array(widths), np.array(seeds), np.array(dw), np.array(dk), np.array(loss))


def plot_laziness(lazy: Laziness, ax=None):
    """Median relative change of θ and of the empirical NTK against the width (log-log)."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    w = lazy.widths
    for what, style, label in (("weight_change", "o-C0", "‖θ_T − θ₀‖ / ‖θ₀‖"),
                               ("kernel_change", "s-C2", "‖K_T − K₀‖_F / ‖K₀‖_F")):
        med = np.median(getattr(lazy, what), 1)
        ax.loglog(w, med, style, label=f"{label} (slope {lazy.slope(what):.2f})")
    ref = np.median(lazy.weight_change, 1)[0] * (w / w[0]) ** -0.5
    ax.loglog(w, ref, "k:", label="∝ width^(−1/2)")
    ax.set_xlabel("hidden width n")
    ax.set_ylabel("relative change in training")
    ax.legend(fontsize=8)
    ax.set_title("wide nets train lazily: θ and the NTK barely move")
    return ax


# ----------------------------------------------------------------------------------------
# 22.5 Loss-surface slices with filter normalization
# ----------------------------------------------------------------------------------------
#: a (points × points) grid on [−span, span]² around network A of section 22.2, seed 0
SLICE = dict(span=1.0, points=15, seed=0)


def filter_normalized_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """A Gaussian direction d, one tensor per parameter, with each row ("filter") of a weight
    matrix rescaled to the norm of the same row of θ (Li et al., 2018); biases get d = 0."""
    out = []
    for name, p in model.named_parameters():
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype)
        if p.ndim >= 2:
            d = d * (p.detach().norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True))
        else:
            d = torch.zeros_like(p)
        out.append(d)
    return out


@torch.no_grad()
def loss_surface(model: nn.Module, X: torch.Tensor, y: torch.Tensor, d1, d2,
                 span: float = SLICE["span"], points: int = SLICE["points"]) -> tuple:
    """(s, t, J) with J[i, j] the loss at θ + s_j d1 + t_i d2 on (X, y)."""
    grid = np.linspace(-span, span, points)
    net = copy.deepcopy(model)
    base = [p.detach().clone() for p in model.parameters()]
    J = np.empty((points, points))
    for i, t in enumerate(grid):
        for j, s in enumerate(grid):
            for p, b, u, v in zip(net.parameters(), base, d1, d2):
                p.copy_(b + s * u + t * v)
            J[i, j] = evaluate_loss(net, X, y)[0]
    return grid, grid, J


@shared_result
def filter_normalized_slice(seed: int = SLICE["seed"]):
    """The loss surface around network A of section 22.2 (seed ``seed``) on the training set,
    and the same for the test set: (s, t, J_train, J_test)."""
    cfg, data = LMC, _data()
    with single_thread():
        net = trained_network(seed)[2]
        g = torch.Generator().manual_seed(1000 + seed)
        d1 = filter_normalized_direction(net, g)
        d2 = filter_normalized_direction(net, g)
        s, t, Jtr = loss_surface(net, *data.train, d1, d2)
        _, _, Jte = loss_surface(net, *data.test, d1, d2)
    return s, t, Jtr, Jte


def plot_slice(result, ax=None):
    """Contours of the training and the test loss on the filter-normalized plane."""
    import matplotlib.pyplot as plt
    s, t, Jtr, Jte = result
    if ax is None:
        _, ax = plt.subplots(1, 2, figsize=(8.5, 3.6))
    levels = np.linspace(0, max(Jtr.max(), Jte.max()), 16)
    for a, J, name in ((ax[0], Jtr, "training"), (ax[1], Jte, "test")):
        cs = a.contourf(s, t, J, levels=levels, cmap="viridis")
        a.plot(0, 0, "r*", ms=10)
        a.set_xlabel("s (along d₁)")
        a.set_ylabel("t (along d₂)")
        a.set_title(f"{name} loss, θ + s d₁ + t d₂")
    plt.colorbar(cs, ax=ax, label="cross-entropy")
    return ax


# ----------------------------------------------------------------------------------------
# 22.6 Variance reduction: SVRG against SGD on a strongly convex finite sum
# ----------------------------------------------------------------------------------------
#: least squares J(θ) = (1/m) Σ (x_iᵀθ − y_i)² with m Gaussian rows x_i ∈ R^d and noisy
#: targets (so that the individual gradients do not vanish at the minimum); both methods take
#: single-example steps with the same constant ε = lr_factor / L_max, L_max = max_i 2‖x_i‖²
#: the largest smoothness constant of the terms; SVRG refreshes its snapshot every
#: `inner` = 2m steps (Johnson & Zhang, 2013, option I); the budget is counted in gradients of
#: single terms, `passes` · m of them
SVRG = dict(m=200, d=10, noise=0.5, lr_factors=(0.05, 0.1, 0.2, 0.4), passes=30, seeds=(0, 1, 2))


def _svrg_problem(seed: int):
    from course_lib.experiments.sgd_theory import LeastSquares
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((SVRG["m"], SVRG["d"]))
    y = X @ rng.standard_normal(SVRG["d"]) + SVRG["noise"] * rng.standard_normal(SVRG["m"])
    return LeastSquares(X, y)


def sgd_vs_svrg_run(problem, lr, passes: int, seed: int = 0,
                    theta0=None) -> tuple[np.ndarray, np.ndarray]:
    r"""(J(θ) − J(θ̂) for SGD, the same for SVRG), each recorded every m single-term gradients
    (one pass's worth), from θ₀ (default 0), with i drawn uniformly with replacement (NumPy,
    ``seed``; the same draws for both methods and every ε).  ``lr``: one ε or several (then
    each result has a leading axis, one row per ε, all run together).

    SGD:  θ ← θ − ε ∇f_i(θ).   SVRG: every 2m steps a snapshot θ̃ and its full gradient
    μ = ∇J(θ̃) (m gradients), then θ ← θ − ε (∇f_i(θ) − ∇f_i(θ̃) + μ) (2 gradients a step)."""
    X, y, m = problem.X, problem.y, problem.n
    lrs = np.atleast_1d(np.asarray(lr, dtype=float))[:, None]  # (L, 1)
    grad_i = lambda th, i: 2.0 * (th @ X[i] - y[i])[:, None] * X[i]  # (L, d)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, m, size=passes * m)
    start = np.zeros(problem.dim) if theta0 is None else np.asarray(theta0, dtype=float)
    th = np.tile(start, (len(lrs), 1))
    sgd = [problem.excess(th)]
    for t, i in enumerate(idx):
        th = th - lrs * grad_i(th, i)
        if (t + 1) % m == 0:
            sgd.append(problem.excess(th))
    th = np.tile(start, (len(lrs), 1))
    svrg, used, k, inner = [problem.excess(th)], 0, 0, 2 * m
    while used < passes * m:
        snap = th.copy()
        mu = 2.0 * (snap @ X.T - y) @ X / m  # (L, d)
        used += m
        svrg.append(problem.excess(th))
        for _ in range(inner):
            if used >= passes * m:
                break
            i = idx[k]
            k += 1
            th = th - lrs * (grad_i(th, i) - grad_i(snap, i) + mu)
            used += 2
            if used % m == 0:
                svrg.append(problem.excess(th))
    sgd, svrg = np.stack(sgd, -1), np.stack(svrg[:passes + 1], -1)
    return (sgd, svrg) if np.ndim(lr) else (sgd[0], svrg[0])


class VarianceReduction(NamedTuple):
    lr_factors: np.ndarray   # (L,) ε · L_max
    seeds: np.ndarray        # (S,)
    sgd: np.ndarray          # (L, S, P + 1) excess cost after each pass's worth of gradients
    svrg: np.ndarray         # (L, S, P + 1)

    def final(self, method: str) -> np.ndarray:
        """(L,) the median over seeds of the excess cost at the end of the budget."""
        return np.median(getattr(self, method)[:, :, -1], axis=1)

    def rate(self, lr_index: int) -> float:
        """SVRG's median contraction factor per pass over the second half of the budget."""
        J = np.median(self.svrg[lr_index], axis=0)
        h = len(J) // 2
        return float((J[-1] / J[h]) ** (1 / (len(J) - 1 - h)))


@shared_result
def variance_reduction(lr_factors=SVRG["lr_factors"], seeds=SVRG["seeds"]) -> VarianceReduction:
    """SGD and SVRG at each constant ε = factor / L_max, on one problem per seed."""
    sgd, svrg = [], []
    for s in seeds:
        p = _svrg_problem(s)
        lmax = float(2 * (p.X ** 2).sum(1).max())
        a, b = sgd_vs_svrg_run(p, np.asarray(lr_factors, dtype=float) / lmax, SVRG["passes"],
                               seed=s)
        sgd.append(a)
        svrg.append(b)
    sgd, svrg = np.array(sgd).transpose(1, 0, 2), np.array(svrg).transpose(1, 0, 2)
    return VarianceReduction(np.array(lr_factors), np.array(seeds), sgd, svrg)


def plot_variance_reduction(vr: VarianceReduction, ax=None):
    """Median excess cost against the gradients used (in passes over the m terms), SGD dashed
    and SVRG solid, one colour per ε."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.6))
    x = np.arange(vr.sgd.shape[-1])
    for k, f in enumerate(vr.lr_factors):
        ax.semilogy(x, np.median(vr.sgd[k], 0), "--", c=f"C{k}", lw=1.2)
        ax.semilogy(x, np.median(vr.svrg[k], 0), "-", c=f"C{k}", lw=2, label=f"ε = {f:g} / L_max")
    ax.plot([], [], "k--", lw=1.2, label="SGD (dashed)")
    ax.plot([], [], "k-", lw=2, label="SVRG (solid)")
    ax.set_xlabel("gradients of single terms used / m  (passes)")
    ax.set_ylabel("J(θ) − J(θ̂)  (median of 3 problems)")
    ax.legend(fontsize=8, ncol=2)
    ax.set_title("constant ε: SGD stalls at a noise floor, SVRG converges linearly")
    return ax
