"""Every tolerance of the comparisons in the tests, per dtype, in one place.

The kernels compute the same equations as fastrnn.reference and torch.nn in a different order,
so they agree to rounding. Comparisons use atol = rtol = tol, i.e. |a - b| <= tol * (1 + |b|).
Largest max |a - b| / (1 + |b|) measured over the cases of test_parity_sizes and
test_parity_non_contiguous (helpers.run on every cell, size and layout; CPU, OpenBLAS, torch 2.13):

                     fastrnn vs reference   fastrnn vs torch.nn   reference vs torch.nn
    float32 outputs        5.0e-7                 5.0e-7                4.2e-7
    float32 gradients      8.6e-6                 6.3e-6                5.8e-6
    float64 outputs        2.2e-15                2.2e-15               4.8e-16
    float64 gradients      1.3e-14                1.1e-14               1.2e-14

The largest gradient errors are those of weight_ih at T = 17, B = 8, H = 129 (sums over T * B
rows), where fastrnn's error is the size of torch.nn's own. The tolerances leave a margin of 2x
to 5x over these.

The stacks and modules (test_modules: the full product of options in float64 at tiny sizes and
the covering subset in float32; test_reference_stack; test_rnn_stack, whose reference runs in
float64 on the same values), measured the same way:

                     fastrnn vs reference   fastrnn vs torch.nn   reference vs torch.nn
    float32 outputs        3.2e-7                 3.2e-7                2.2e-7
    float32 gradients      2.7e-6                 2.8e-6                1.6e-6
    float64 outputs        3.8e-16                3.2e-16               4.0e-16
    float64 gradients      2.3e-15                1.9e-15               1.6e-15

(largest: three-layer bidirectional tanh RNNs). fastrnn float32 against the float64 reference:
outputs 1.4e-7, gradients 8.5e-7; a float32 reference of a ReLU RNN whose outputs reach 16
errs by 2.1e-6 itself, hence the float64 reference there. convert() (float32): 3.4e-8 and
2.4e-8; DDP parameters after 4 SGD steps (float64): 4.4e-17.
"""

import torch

TOLERANCES = {
    torch.float32: {"output": 2e-6, "grad": 2e-5},
    torch.float64: {"output": 1e-14, "grad": 5e-14},
}


def relative_error(actual: torch.Tensor, exact: torch.Tensor) -> float:
    """max |actual - exact| / max |exact|, in float64 (0 for an exact zero result)."""
    exact = exact.double()
    scale = exact.abs().max().item() if exact.numel() else 0.0
    diff = (actual.double() - exact).abs().max().item() if exact.numel() else 0.0
    return diff / scale if scale > 0 else diff


def half_budget(baseline_error: float, dtype: torch.dtype) -> float:
    """The largest relative_error a bfloat16/float16 result of fastrnn may have (issue 19): twice
    the baseline's (torch.nn in the same dtype, both against float64 on the same rounded
    values), but never below one rounding of the dtype (its unit roundoff, eps / 2), which any
    result stored in it may carry.

    Measured (tests/test_half.py, CPU, torch 2.13): fastrnn's error over torch.nn's stays below
    1 in every case; e.g. bfloat16 LSTM 0.80, GRU 0.60, RNN 0.47, LSTM with projection 0.35."""
    return max(2 * baseline_error, torch.finfo(dtype).eps / 2)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, kind: str, what: str = "") -> None:
    """assert_close with the tolerance of expected's dtype for kind ("output" or "grad")."""
    tol = TOLERANCES[expected.dtype][kind]
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol,
                               msg=lambda message: f"{what}: {message}")
