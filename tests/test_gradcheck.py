"""torch.autograd.gradcheck of fastrnn.functional in float64: finite differences against the
analytic backward, for every input that is present (and with undefined output gradients)."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, NAMES, make_problem


def check(problem):
    present = [name for name in NAMES if getattr(problem, name) is not None]

    def fn(*tensors):
        kwargs = dict.fromkeys(NAMES) | dict(zip(present, tensors))
        return problem.cell.call(fastrnn.functional, **kwargs)

    inputs = tuple(getattr(problem, name) for name in present)
    assert all(t.dtype == torch.float64 and t.requires_grad for t in inputs)
    assert torch.autograd.gradcheck(fn, inputs, check_undefined_grad=True)


@pytest.mark.parametrize("h0", [True, False], ids=["h0", "no_h0"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("T", [1, 3])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_gradcheck(cell, T, bias, h0):
    check(make_problem(cell, T, 2, 3, 4, torch.float64, bias=bias, h0=h0, seed=T))


@pytest.mark.parametrize("layout", ["transposed", "every_other"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_gradcheck_non_contiguous(cell, layout):
    check(make_problem(cell, 3, 2, 3, 4, torch.float64, layout=layout))


@pytest.mark.parametrize("h0,c0", [(True, False), (False, True)], ids=["h0_only", "c0_only"])
def test_gradcheck_lstm_one_initial_state(h0, c0):
    check(make_problem("lstm", 3, 2, 3, 4, torch.float64, h0=h0, c0=c0))
