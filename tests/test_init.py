"""fastrnn.init: the values each initialisation writes, in every layer and direction, on torch.nn's
and fastrnn's modules and cells, with proj_size; the parameters stay the same tensors; bad
modules and arguments raise."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import fastrnn
from fastrnn import init

LIBRARIES = {"torch.nn": nn, "fastrnn": fastrnn}
I, H, P = 3, 6, 2


def make(library: str, cls: str, dtype=torch.float64, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    return getattr(LIBRARIES[library], cls)(I, H, dtype=dtype, **kwargs)


def weight_sets(module: nn.Module) -> list[dict[str, torch.Tensor | None]]:
    """Each layer and direction's parameters by their short name, found by name in
    named_parameters (the test's own way, independent of fastrnn.init's)."""
    params = dict(module.named_parameters())
    if isinstance(module, nn.RNNBase):
        suffixes = [f"_l{layer}{d}" for layer in range(module.num_layers)
                    for d in (("", "_reverse") if module.bidirectional else ("",))]
    else:
        suffixes = [""]
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
    return [{n: params.get(n + s) for n in names} for s in suffixes]


def snapshot(module: nn.Module):
    """(the parameters as objects, their data pointers, copies of their values)."""
    params = dict(module.named_parameters())
    return params, {k: p.data_ptr() for k, p in params.items()}, \
        {k: p.detach().clone() for k, p in params.items()}


def assert_same_tensors(module: nn.Module, before) -> None:
    params, ptrs, _ = before
    after = dict(module.named_parameters())
    assert after.keys() == params.keys()
    for name, p in after.items():
        assert p is params[name] and p.data_ptr() == ptrs[name], name
        assert p.is_leaf and p.requires_grad and p.grad_fn is None, name


STACKS = [dict(num_layers=2, bidirectional=True), dict(num_layers=3), dict()]
STACK_IDS = ["2layers-bidir", "3layers", "1layer"]


# ---------------------------------------------------------------------------------- irnn_

@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("stack", STACKS, ids=STACK_IDS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_irnn_sets_identity_and_zero_biases(library, stack, bias, scale):
    module = make(library, "RNN", nonlinearity="relu", bias=bias, **stack)
    before = snapshot(module)
    assert init.irnn_(module, scale=scale) is module
    assert_same_tensors(module, before)
    sets = weight_sets(module)
    assert len(sets) == stack.get("num_layers", 1) * (2 if stack.get("bidirectional") else 1)
    for w in sets:
        assert torch.equal(w["weight_hh"], scale * torch.eye(H, dtype=torch.float64))
        if bias:
            assert torch.equal(w["bias_ih"], torch.zeros(H, dtype=torch.float64))
            assert torch.equal(w["bias_hh"], torch.zeros(H, dtype=torch.float64))
        else:
            assert w["bias_ih"] is None and w["bias_hh"] is None
    for name, p in module.named_parameters():  # W_ih keeps its value
        if name.startswith("weight_ih"):
            assert torch.equal(p, before[2][name])


@pytest.mark.parametrize("library", LIBRARIES)
def test_irnn_cell(library):
    cell = make(library, "RNNCell", nonlinearity="relu")
    before = snapshot(cell)
    init.irnn_(cell, 2.0)
    assert_same_tensors(cell, before)
    assert torch.equal(cell.weight_hh, 2 * torch.eye(H, dtype=torch.float64))
    assert not cell.bias_ih.any() and not cell.bias_hh.any()
    assert torch.equal(cell.weight_ih, before[2]["weight_ih"])


def test_irnn_relu_rnn_carries_its_state_unchanged():
    """The point of IRNN: with zero input a non-negative state passes through every step as is
    (in both directions)."""
    rnn = fastrnn.RNN(I, H, nonlinearity="relu", bidirectional=True, dtype=torch.float64)
    init.irnn_(rnn)
    h0 = torch.rand(2, 4, H, dtype=torch.float64)
    output, h_n = rnn(torch.zeros(7, 4, I, dtype=torch.float64), h0)
    assert torch.equal(h_n, h0)
    assert torch.equal(output, torch.cat([h0[0], h0[1]], dim=-1).expand(7, 4, 2 * H))


@pytest.mark.parametrize("module, match", [
    (nn.RNN(I, H), "build it with nonlinearity='relu'"),
    (fastrnn.RNNCell(I, H), "build it with nonlinearity='relu'"),
    (nn.LSTM(I, H), "an LSTM .*not IRNN"),
    (fastrnn.LSTM(I, H, proj_size=P), "an LSTM .*not IRNN"),
    (nn.GRUCell(I, H), "a GRU .*not IRNN"),
], ids=["tanh-RNN", "tanh-RNNCell", "LSTM", "LSTM-proj", "GRUCell"])
def test_irnn_refuses_other_cells(module, match):
    before = snapshot(module)
    with pytest.raises(ValueError, match=match):
        init.irnn_(module)
    for name, p in module.named_parameters():  # untouched
        assert torch.equal(p, before[2][name])


# ---------------------------------------------------------------------------- orthogonal_

def assert_orthonormal_columns(matrix: torch.Tensor, gain: float) -> None:
    cols = matrix.size(1)
    gram = matrix.T @ matrix
    torch.testing.assert_close(gram, gain ** 2 * torch.eye(cols, dtype=matrix.dtype),
                               rtol=0, atol=1e-12)


CONFIGS = [("LSTM", {}), ("LSTM", dict(proj_size=P)), ("GRU", {}),
           ("RNN", dict(nonlinearity="tanh")), ("RNN", dict(nonlinearity="relu"))]
CONFIG_IDS = ["LSTM", "LSTM-proj", "GRU", "RNN-tanh", "RNN-relu"]
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("cls, kwargs", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("gain", [1.0, 1.5])
def test_orthogonal_every_gate_block(library, cls, kwargs, gain):
    module = make(library, cls, num_layers=2, bidirectional=True, **kwargs)
    before = snapshot(module)
    assert init.orthogonal_(module, gain=gain) is module
    assert_same_tensors(module, before)
    proj = kwargs.get("proj_size", 0)
    for w in weight_sets(module):
        blocks = w["weight_hh"].split(H)
        assert len(blocks) == GATES[cls]
        for block in blocks:
            assert block.shape == (H, proj or H)
            assert_orthonormal_columns(block, gain)  # square: also B B^T = gain^2 I
            if not proj:
                assert_orthonormal_columns(block.T, gain)
        for a, b in zip(blocks, blocks[1:]):  # drawn independently
            assert not torch.allclose(a, b)
        if proj:
            assert w["weight_hr"].shape == (proj, H)
            assert_orthonormal_columns(w["weight_hr"].T, 1.0)  # rows orthonormal, no gain
        else:
            assert w["weight_hr"] is None
    changed = {name for name, p in module.named_parameters() if not torch.equal(p, before[2][name])}
    assert changed == {name for name in before[0] if "weight_hh" in name or "weight_hr" in name}


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("cls", ["LSTMCell", "GRUCell", "RNNCell"])
def test_orthogonal_cells(library, cls):
    cell = make(library, cls)
    before = snapshot(cell)
    init.orthogonal_(cell)
    assert_same_tensors(cell, before)
    blocks = cell.weight_hh.split(H)
    assert len(blocks) == GATES[cls[:-4]]
    for block in blocks:
        assert_orthonormal_columns(block, 1.0)
        assert_orthonormal_columns(block.T, 1.0)
    for name in ("weight_ih", "bias_ih", "bias_hh"):
        assert torch.equal(getattr(cell, name), before[2][name])


def test_orthogonal_generator_reproduces_and_float32_works():
    a, b = (fastrnn.LSTM(I, H, num_layers=2, proj_size=P) for _ in range(2))
    init.orthogonal_(a, generator=torch.Generator().manual_seed(3))
    init.orthogonal_(b, generator=torch.Generator().manual_seed(3))
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        if "weight_hh" in name or "weight_hr" in name:
            assert torch.equal(p, q), name
    gram = a.weight_hh_l1[:H].T @ a.weight_hh_l1[:H]
    torch.testing.assert_close(gram, torch.eye(P), rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- forget_bias_

@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kwargs", [dict(num_layers=2, bidirectional=True),
                                    dict(num_layers=2, bidirectional=True, proj_size=P)],
                         ids=["plain", "proj"])
@pytest.mark.parametrize("value", [1.0, -0.5])
def test_forget_bias(library, kwargs, value):
    module = make(library, "LSTM", **kwargs)
    before = snapshot(module)
    assert init.forget_bias_(module, value) is module
    assert_same_tensors(module, before)
    names = [n for n in before[0] if n.startswith("bias_ih")]
    assert len(names) == 4
    for name in names:
        hh = name.replace("bias_ih", "bias_hh")
        b_ih, b_hh = getattr(module, name), getattr(module, hh)
        assert torch.equal(b_ih[H:2 * H], torch.full((H,), value, dtype=torch.float64))
        assert not b_hh[H:2 * H].any()
        for gate in (slice(0, H), slice(2 * H, 4 * H)):  # i, g, o keep their values
            assert torch.equal(b_ih[gate], before[2][name][gate])
            assert torch.equal(b_hh[gate], before[2][hh][gate])
    for name, p in module.named_parameters():
        if "weight" in name:
            assert torch.equal(p, before[2][name])


@pytest.mark.parametrize("library", LIBRARIES)
def test_forget_bias_cell(library):
    cell = make(library, "LSTMCell")
    before = snapshot(cell)
    init.forget_bias_(cell)
    assert_same_tensors(cell, before)
    assert torch.equal(cell.bias_ih[H:2 * H] + cell.bias_hh[H:2 * H],
                       torch.ones(H, dtype=torch.float64))
    assert torch.equal(cell.bias_ih[:H], before[2]["bias_ih"][:H])


# -------------------------------------------------------------------------------- chrono_

@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kwargs", [dict(num_layers=2, bidirectional=True),
                                    dict(num_layers=2, bidirectional=True, proj_size=P)],
                         ids=["plain", "proj"])
def test_chrono(library, kwargs):
    t_max = 50
    module = make(library, "LSTM", **kwargs)
    before = snapshot(module)
    assert init.chrono_(module, t_max) is module
    assert_same_tensors(module, before)
    drawn = []
    for name in [n for n in before[0] if n.startswith("bias_ih")]:
        hh = name.replace("bias_ih", "bias_hh")
        b_ih, b_hh = getattr(module, name), getattr(module, hh)
        b_i, b_f = b_ih[:H], b_ih[H:2 * H]
        assert torch.equal(b_i, -b_f)
        assert (b_f >= 0).all() and (b_f <= math.log(t_max - 1)).all()
        assert not b_hh[:2 * H].any()
        assert torch.equal(b_ih[2 * H:], before[2][name][2 * H:])  # g, o keep their values
        assert torch.equal(b_hh[2 * H:], before[2][hh][2 * H:])
        drawn.append(b_f)
    assert len(drawn) == 4
    for a, b in zip(drawn, drawn[1:]):  # each layer and direction drawn on its own
        assert not torch.equal(a, b)


def test_chrono_distribution_and_generator():
    """exp(b_f) is uniform on [1, t_max - 1]: with 4000 seeded draws its mean and spread sit
    within 5 standard errors of the uniform's, and a seeded generator reproduces the draw."""
    t_max, units = 101, 4000
    cell = nn.LSTMCell(1, units, dtype=torch.float64)
    init.chrono_(cell, t_max, generator=torch.Generator().manual_seed(0))
    u = cell.bias_ih[units:2 * units].exp()
    lo, hi = 1, t_max - 1
    std = (hi - lo) / math.sqrt(12)
    assert u.min() >= lo and u.max() <= hi
    assert abs(u.mean().item() - (lo + hi) / 2) < 5 * std / math.sqrt(units)
    assert abs(u.std().item() - std) < 0.05 * std
    again = fastrnn.LSTMCell(1, units, dtype=torch.float64)
    init.chrono_(again, t_max, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.bias_ih[:2 * units], cell.bias_ih[:2 * units])


def test_chrono_t_max_two_gives_zero_biases():
    cell = fastrnn.LSTMCell(I, H)
    init.chrono_(cell, 2)
    assert not cell.bias_ih[:2 * H].any() and not cell.bias_hh[:2 * H].any()


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("fn", [init.forget_bias_, lambda m: init.chrono_(m, 10)],
                         ids=["forget_bias_", "chrono_"])
@pytest.mark.parametrize("module, error, match", [
    (nn.LSTM(I, H, bias=False), ValueError, "bias=False"),
    (fastrnn.LSTMCell(I, H, bias=False), ValueError, "bias=False"),
    (nn.GRU(I, H), ValueError, "needs an LSTM or LSTMCell.*a GRU"),
    (fastrnn.GRUCell(I, H), ValueError, "needs an LSTM or LSTMCell.*a GRU"),
    (fastrnn.RNN(I, H), ValueError, "needs an LSTM or LSTMCell.*a tanh RNN"),
    (nn.Linear(I, H), TypeError, "expected an RNN, LSTM, GRU.*got Linear"),
], ids=["LSTM-nobias", "LSTMCell-nobias", "GRU", "GRUCell", "RNN", "Linear"])
def test_lstm_bias_inits_refuse(fn, module, error, match):
    with pytest.raises(error, match=match):
        fn(module)


@pytest.mark.parametrize("call, error, match", [
    (lambda: init.irnn_(nn.Linear(2, 2)), TypeError, "irnn_: expected an RNN"),
    (lambda: init.orthogonal_(torch.zeros(4, 4)), TypeError, "orthogonal_: expected an RNN"),
    (lambda: init.irnn_(nn.RNN(2, 2, nonlinearity="relu"), "1"), TypeError,
     "scale must be a real number"),
    (lambda: init.irnn_(nn.RNN(2, 2, nonlinearity="relu"), float("nan")), ValueError,
     "scale must be finite"),
    (lambda: init.orthogonal_(nn.GRU(2, 2), gain=True), TypeError, "gain must be a real number"),
    (lambda: init.orthogonal_(nn.GRU(2, 2), generator=0), TypeError, "torch.Generator"),
    (lambda: init.forget_bias_(nn.LSTM(2, 2), float("inf")), ValueError, "value must be finite"),
    (lambda: init.chrono_(nn.LSTM(2, 2), 1.5), ValueError, "t_max must be at least 2"),
    (lambda: init.chrono_(nn.LSTM(2, 2), None), TypeError, "t_max must be a real number"),
    (lambda: init.chrono_(nn.LSTM(2, 2), 5, generator="seed"), TypeError, "torch.Generator"),
], ids=["irnn-Linear", "orthogonal-tensor", "scale-str", "scale-nan", "gain-bool",
        "orthogonal-generator", "value-inf", "t_max-small", "t_max-None", "chrono-generator"])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_optimizer_keeps_training_initialised_parameters():
    """An optimizer made before the initialisation holds, and steps, the initialised tensors."""
    lstm = fastrnn.LSTM(I, H, num_layers=2)
    optimizer = torch.optim.SGD(lstm.parameters(), lr=0.1)
    init.orthogonal_(lstm)
    init.chrono_(lstm, 20)
    params = list(lstm.parameters())
    assert all(p is q for p, q in zip(optimizer.param_groups[0]["params"], params, strict=True))
    initialised = [p.detach().clone() for p in params]
    output, _ = lstm(torch.randn(5, 2, I))
    output.sum().backward()
    optimizer.step()
    for p, value in zip(params, initialised):
        assert p.grad is not None and not torch.equal(p.detach(), value)
