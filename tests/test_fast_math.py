"""Accuracy of the CPU float activations (csrc/cells/fast_math.h), measured through the kernels.

An RNN-tanh layer with I = H = 1, weight_ih = 1 and nothing else outputs tanh(x); an LSTM layer
whose g and o gates saturate at 1 and whose c0 is 0 leaves c_n = sigmoid(x). Each is compared
with float64 on a dense grid, in units in the last place of the float32 result. The bounds are
those stated in fast_math.h; FASTRNN_CPU_ISA runs the same check on the other instruction sets.
"""

import os
import subprocess
import sys

import pytest
import torch

import fastrnn

GRID = torch.cat([torch.linspace(-100, 100, 400_001),
                  torch.logspace(-30, 0, 20_001), -torch.logspace(-30, 0, 20_001)])


def ulp_error(actual: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """|actual - exact| in ulps of the float32 result, where that result is a normal float."""
    rounded = exact.float().abs()
    ulp = (torch.nextafter(rounded, torch.tensor(float("inf"))) - rounded).double()
    normal = rounded >= torch.finfo(torch.float32).tiny
    return ((actual.double() - exact).abs() / ulp)[normal]


def tanh_through_rnn(x: torch.Tensor) -> torch.Tensor:
    one = torch.ones(1, 1)
    output, _ = fastrnn.functional.rnn(x.view(1, -1, 1), None, one, torch.zeros(1, 1))
    return output.view(-1)


def sigmoid_through_lstm(x: torch.Tensor) -> torch.Tensor:
    # rows i, f, g, o of weight_ih: i sees x, g and o get +50 from the bias (tanh, sigmoid = 1)
    weight_ih = torch.tensor([[1.0], [0.0], [0.0], [0.0]])
    bias = torch.tensor([0.0, 0.0, 50.0, 50.0])
    _, _, c_n = fastrnn.functional.lstm(x.view(1, -1, 1), None, None, weight_ih,
                                        torch.zeros(4, 1), bias, torch.zeros(4))
    return c_n.view(-1)


def test_tanh_within_bound():
    assert ulp_error(tanh_through_rnn(GRID), torch.tanh(GRID.double())).max() <= 2.5


def test_sigmoid_within_bound():
    exact = torch.sigmoid(GRID.double())
    assert ulp_error(sigmoid_through_lstm(GRID), exact).max() <= 3.0


def test_special_values():
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e30, -1e30])
    t = tanh_through_rnn(special)
    assert torch.isnan(t[0]) and t[1] == 1 and t[2] == -1 and t[3] == 0 and t[5] == 1
    assert t[6] == -1
    # (+-inf cannot reach the LSTM's i gate alone: 0 * inf in the other rows' products is NaN)
    s = sigmoid_through_lstm(torch.tensor([float("nan"), 0.0, 1e30, -1e30]))
    assert torch.isnan(s[0]) and s[1] == 0.5 and s[2] == 1 and 0 <= s[3] < 1e-38


ISAS = ["avx512", "avx2", "baseline"]


@pytest.mark.parametrize("isa", ISAS)
def test_every_instruction_set(isa):
    """The same checks, and a parity check against torch.nn, on each instruction set this CPU
    has (a higher one than the CPU's is refused with a clear error)."""
    order = {name: i for i, name in enumerate(ISAS)}
    if order[isa] < order[fastrnn._C.cpu_isa()]:
        env = {**os.environ, "FASTRNN_CPU_ISA": isa}
        run = subprocess.run([sys.executable, "-c", "import torch, fastrnn; "
                              "fastrnn.functional.rnn(torch.ones(1, 1, 1), None, torch.ones(1, 1),"
                              " torch.ones(1, 1))"], env=env, capture_output=True, text=True)
        assert run.returncode != 0 and "not supported by this CPU" in run.stderr
        return
    code = f"""
import sys, torch
sys.path.insert(0, {os.path.dirname(__file__)!r})
import fastrnn, test_fast_math as t
assert fastrnn._C.cpu_isa() == {isa!r}, fastrnn._C.cpu_isa()
t.test_tanh_within_bound(); t.test_sigmoid_within_bound(); t.test_special_values()
torch.manual_seed(0)
m = torch.nn.LSTM(7, 33, num_layers=2, bidirectional=True)
x = torch.randn(9, 5, 7)
want, (wh, wc) = m(x)
got, gh, gc = fastrnn.functional.rnn_stack("lstm", x, None, None, None, m._flat_weights,
                                           has_bias=True, num_layers=2, bidirectional=True)
for a, b in ((got, want), (gh, wh), (gc, wc)):
    torch.testing.assert_close(a, b, atol=2e-6, rtol=2e-6)
"""
    env = {**os.environ, "FASTRNN_CPU_ISA": isa}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
