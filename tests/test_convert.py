"""fastrnn.convert on a model nesting torch.nn's recurrent modules and cells inside nn.Sequential
and a custom module: same outputs and gradients as the original, and an optimizer created before
the conversion still trains the converted model."""

import copy

import pytest
import torch
from torch import nn

import fastrnn
from helpers import DTYPES
from tolerances import assert_close

RECURRENT = {nn.RNN: fastrnn.RNN, nn.LSTM: fastrnn.LSTM, nn.GRU: fastrnn.GRU,
             nn.RNNCell: fastrnn.RNNCell, nn.LSTMCell: fastrnn.LSTMCell,
             nn.GRUCell: fastrnn.GRUCell}


class Encoder(nn.Module):
    """A custom module: a bidirectional LSTM with a projection over a batch-first input, a GRU and
    a ReLU RNN over its output, then three cells (in an nn.Sequential) unrolled on the result."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 6)
        self.lstm = nn.LSTM(6, 8, num_layers=2, bidirectional=True, batch_first=True,
                            proj_size=3)
        self.gru = nn.GRU(6, 5)
        self.rnn = nn.RNN(5, 5, nonlinearity="relu", num_layers=2)
        self.cells = nn.Sequential(nn.LSTMCell(5, 7), nn.RNNCell(7, 4), nn.GRUCell(4, 4))

    def forward(self, x):
        out, _ = self.lstm(torch.tanh(self.embed(x)))  # [B, T, 2 * 3]
        out, h_gru = self.gru(out.transpose(0, 1))  # [T, B, 5]
        out, _ = self.rnn(out, h_gru.expand(2, -1, -1).contiguous())
        lstm_cell, rnn_cell, gru_cell = self.cells
        state = h_rnn = h = None
        for x_t in out:
            state = lstm_cell(x_t, state)
            h_rnn = rnn_cell(state[0], h_rnn)
            h = gru_cell(h_rnn, h)
        return h


def make_model(dtype):
    torch.manual_seed(0)
    return nn.Sequential(Encoder(), nn.Tanh(), nn.Linear(4, 2)).to(dtype)


def recurrent_types(model):
    return [type(m) for m in model.modules() if isinstance(m, tuple(RECURRENT))]


def test_convert_swaps_every_recurrent_module_in_place():
    model = make_model(torch.float32)
    params = [id(p) for p in model.parameters()]
    names = [name for name, _ in model.named_parameters()]
    before = recurrent_types(model)
    assert sorted(t.__name__ for t in before) == sorted(t.__name__ for t in RECURRENT)
    assert fastrnn.convert(model, inplace=True) is model
    assert recurrent_types(model) == [RECURRENT[t] for t in before]
    assert [id(p) for p in model.parameters()] == params  # the same Parameter objects
    assert [name for name, _ in model.named_parameters()] == names


def test_convert_not_in_place_leaves_the_model():
    model = make_model(torch.float32)
    before = recurrent_types(model)
    converted = fastrnn.convert(model, inplace=False)
    assert converted is not model and recurrent_types(model) == before
    assert recurrent_types(converted) == [RECURRENT[t] for t in before]


def _outputs_and_grads(model, x):
    out = model(x)
    grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
                                 .view_as(out)).sum(), [x, *model.parameters()])
    return out.detach(), grads


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_converted_model_matches_original(dtype):
    original = make_model(dtype)
    converted = fastrnn.convert(copy.deepcopy(original), inplace=True)
    x = torch.randn(3, 6, 4, dtype=dtype, requires_grad=True)
    expected_out, expected_grads = _outputs_and_grads(original, x)
    out, grads = _outputs_and_grads(converted, x)
    assert_close(out, expected_out, "output", "output")
    names = ["input"] + [name for name, _ in original.named_parameters()]
    assert len(grads) == len(names)
    for name, grad, expected in zip(names, grads, expected_grads):
        assert_close(grad, expected, "grad", f"grad of {name}")


def test_optimizer_created_before_convert_trains_converted_model():
    """The same training (SGD with momentum, 5 steps) of the converted model, through an
    optimizer made before the conversion, and of an unconverted copy: parameters change, and
    the same way."""
    model = make_model(torch.float64)
    baseline = copy.deepcopy(model)
    initial = [p.detach().clone() for p in model.parameters()]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
                  for m in (model, baseline)]
    fastrnn.convert(model, inplace=True)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(3, 6, 4, generator=gen, dtype=torch.float64)
        target = torch.randn(3, 2, generator=gen, dtype=torch.float64)
        for m, optimizer in zip((model, baseline), optimizers):
            optimizer.zero_grad()
            torch.nn.functional.mse_loss(m(x), target).backward()
            optimizer.step()
    for (name, p), p0, p_base in zip(model.named_parameters(), initial, baseline.parameters()):
        assert not torch.equal(p.detach(), p0), f"{name} did not change"
        assert_close(p.detach(), p_base.detach(), "grad", name)
