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
"""

import torch

TOLERANCES = {
    torch.float32: {"output": 2e-6, "grad": 2e-5},
    torch.float64: {"output": 1e-14, "grad": 5e-14},
}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, kind: str, what: str = "") -> None:
    """assert_close with the tolerance of expected's dtype for kind ("output" or "grad")."""
    tol = TOLERANCES[expected.dtype][kind]
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol,
                               msg=lambda message: f"{what}: {message}")
