"""torch.library.opcheck of the ops: schema, fake (meta) kernels, autograd registration and
AOT dispatch, against the real CPU kernels."""

import pytest
import torch

from helpers import CELL_NAMES, make_problem, random_upstream, without_grad


def opcheck(op, args):
    results = torch.library.opcheck(op, args)
    assert results and all(result == "SUCCESS" for result in results.values()), results


def forward_args(mode, bias, h0, training, layout="contiguous"):
    problem = make_problem(mode, 3, 2, 5, 4, torch.float64, bias=bias, h0=h0, layout=layout,
                           requires_grad=training)
    return (mode, *problem.args(), training)


@pytest.mark.parametrize("h0", [True, False], ids=["h0", "no_h0"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_forward(mode, training, bias, h0):
    opcheck(torch.ops.fastrnn.forward.default, forward_args(mode, bias, h0, training))


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_forward_non_contiguous(mode):
    opcheck(torch.ops.fastrnn.forward.default,
            forward_args(mode, True, True, True, layout="transposed"))


def backward_args(mode, bias, h0, used):
    """The arguments forward's autograd passes to the backward op, for the outputs in used."""
    problem = without_grad(make_problem(mode, 3, 2, 5, 4, torch.float64, bias=bias, h0=h0))
    output, _, _, saved = torch.ops.fastrnn.forward(mode, *problem.args(), True)
    upstream = random_upstream(problem, used)
    grads = [upstream.get(name) for name in ("output", "h_n", "c_n")]
    return (mode, *grads, problem.input, problem.h0, problem.c0, problem.weight_ih,
            problem.weight_hh, bias, output, saved)


def _backward_cases():
    for mode in CELL_NAMES:
        outputs = ("output", "h_n", "c_n") if mode == "lstm" else ("output", "h_n")
        yield mode, True, True, outputs
        yield mode, False, False, outputs
        yield mode, True, True, ("h_n",)  # grad_output and grad_c_n None


@pytest.mark.parametrize("mode,bias,h0,used", list(_backward_cases()),
                         ids=lambda v: "+".join(v) if isinstance(v, tuple) else str(v))
def test_opcheck_backward(mode, bias, h0, used):
    opcheck(torch.ops.fastrnn.backward.default, backward_args(mode, bias, h0, used))
