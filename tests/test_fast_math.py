"""Accuracy of the CPU activations (csrc/cells/fast_math.h), measured through the kernels.

An RNN-tanh layer with I = H = 1, weight_ih = 1 and nothing else outputs tanh(x); an LSTM layer
whose g and o gates saturate at 1 and whose c0 is 0 leaves c_n = sigmoid(x). float32 results are
compared with float64 on a dense grid, in units in the last place of the float32 result; float64
results with a reference carrying at least 11 more bits (numpy's long double where it is x87
extended or quad precision, else mpmath at 80 bits), in ulps of the float64 result. The bounds
are those stated in fast_math.h; FASTRNN_CPU_ISA runs the same checks on the other instruction
sets.
"""

import os
import subprocess
import sys

import mpmath
import numpy as np
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
    one = torch.ones(1, 1, dtype=x.dtype)
    output, _ = fastrnn.functional.rnn(x.view(1, -1, 1), None, one, torch.zeros_like(one))
    return output.view(-1)


def sigmoid_through_lstm(x: torch.Tensor) -> torch.Tensor:
    # rows i, f, g, o of weight_ih: i sees x, g and o get +50 from the bias (tanh, sigmoid = 1)
    weight_ih = torch.tensor([[1.0], [0.0], [0.0], [0.0]], dtype=x.dtype)
    bias = torch.tensor([0.0, 0.0, 50.0, 50.0], dtype=x.dtype)
    _, _, c_n = fastrnn.functional.lstm(x.view(1, -1, 1), None, None, weight_ih,
                                        torch.zeros_like(weight_ih), bias, torch.zeros_like(bias))
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


# float64: the float32 grid's range at the same density, the whole range where exp(-x) stays
# finite (sigmoid's results reach the subnormals near -709), |x| from the smallest subnormal to 1
GRID64 = torch.cat([torch.linspace(-100, 100, 400_001, dtype=torch.float64),
                    torch.linspace(-709.7, 709.7, 100_001, dtype=torch.float64),
                    torch.logspace(-323, 0, 20_001, dtype=torch.float64),
                    -torch.logspace(-323, 0, 20_001, dtype=torch.float64)])
# numpy's long double: x87 extended (64-bit significand) on x86-64, quad precision elsewhere on
# Linux; plain double on some platforms, which then take mpmath (slower: every 16th point)
LONG_DOUBLE = np.finfo(np.longdouble).nmant >= 63
EXACT = {"tanh": (np.tanh, mpmath.tanh),
         "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), lambda x: 1 / (1 + mpmath.exp(-x)))}


def ulp_error64(actual: torch.Tensor, x: torch.Tensor, name: str) -> np.ndarray:
    """|actual - name(x)| for float64 x in ulps of the float64 result: the spacing of doubles at
    the exactly rounded result (a subnormal's included), the reference exact to 11+ more bits."""
    got, xs = actual.numpy(), x.numpy()
    if LONG_DOUBLE:
        exact = EXACT[name][0](xs.astype(np.longdouble))
        return np.asarray(np.abs(got.astype(np.longdouble) - exact)
                          / np.spacing(np.abs(exact.astype(np.float64))), dtype=np.float64)
    errors = []
    with mpmath.workprec(80):
        for a, v in zip(got[::16], xs[::16]):
            exact = EXACT[name][1](mpmath.mpf(float(v)))
            errors.append(float(abs(mpmath.mpf(float(a)) - exact)
                                / np.spacing(abs(float(exact)))))
    return np.array(errors)


# Measured on GRID64 (the largest of the AVX-512, AVX2 and baseline builds; fast_math.h)
TANH64_ULP, SIGMOID64_ULP = 2.25, 2.5


def test_tanh_float64_within_bound():
    assert ulp_error64(tanh_through_rnn(GRID64), GRID64, "tanh").max() <= TANH64_ULP


def test_sigmoid_float64_within_bound():
    assert ulp_error64(sigmoid_through_lstm(GRID64), GRID64, "sigmoid").max() <= SIGMOID64_ULP


def test_special_values_float64():
    inf, nan = float("inf"), float("nan")
    special = torch.tensor([nan, inf, -inf, 0.0, -0.0, 1e300, -1e300, 20.0, 1e-310, -5e-324],
                           dtype=torch.float64)
    t = tanh_through_rnn(special)
    assert torch.isnan(t[0]) and t[1] == 1 and t[2] == -1 and t[5] == 1 and t[6] == -1
    assert t[3] == 0 and t[4] == 0  # (-0 reaches tanh as -0 + W_hh h = +0)
    assert t[7] == 1  # tanh(20) = 1 - 8.5e-18 rounds to 1
    assert t[8] == 1e-310 and t[9] == -5e-324  # tanh(x) = x exactly for subnormal x
    s = sigmoid_through_lstm(torch.tensor([nan, 0.0, 1e300, -1e300, 710.0, 36.8, -709.0, -709.5,
                                           -709.8, -745.2], dtype=torch.float64))
    assert torch.isnan(s[0]) and s[1] == 0.5 and s[2] == 1 and s[3] == 0 and s[4] == 1
    assert s[5] == 1  # 1 / (1 + 1.0e-16) rounds to 1
    # near exp's overflow: a normal, then a subnormal result; past ln(DBL_MAX) exp(-x) is inf and
    # sigmoid 0, as torch's float64 sigmoid
    assert s[6] == torch.sigmoid(torch.tensor(-709.0, dtype=torch.float64))
    assert 0 < s[7] < torch.finfo(torch.float64).tiny
    assert s[8] == 0 and s[9] == 0


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
t.test_tanh_float64_within_bound(); t.test_sigmoid_float64_within_bound()
t.test_special_values_float64()
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
