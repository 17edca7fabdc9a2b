"""The inference path (no graph recorded, nothing saved) gives what the training path gives."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, make_problem, without_grad


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode],
                         ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_inference_matches_training(cell, dtype, layout, context):
    problem = make_problem(cell, 17, 3, 7, 32, dtype, layout=layout)
    trained = problem.cell.call(fastrnn.functional, *problem.args())
    assert all(o.grad_fn is not None for o in trained)
    with context():
        inferred = problem.cell.call(fastrnn.functional, *problem.args())
    assert len(inferred) == len(trained)
    for a, b in zip(inferred, trained):
        assert a.grad_fn is None
        assert torch.equal(a, b.detach())


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_no_grad_inputs_run_inference(cell):
    """Inputs that require no grad record no graph, even with grad mode on."""
    problem = without_grad(make_problem(cell, 5, 3, 7, 32))
    outputs = problem.cell.call(fastrnn.functional, *problem.args())
    assert all(o.grad_fn is None and not o.requires_grad for o in outputs)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_op_training_flag_changes_only_saved(mode, dtype, bias):
    """The op with training=False returns the same outputs and an empty `saved`."""
    p = without_grad(make_problem(mode, 17, 3, 7, 32, dtype, bias=bias))
    args = (mode, *p.args())
    out_t, h_t, c_t, saved_t = torch.ops.fastrnn.forward(*args, True)
    out_i, h_i, c_i, saved_i = torch.ops.fastrnn.forward(*args, False)
    assert torch.equal(out_t, out_i) and torch.equal(h_t, h_i) and torch.equal(c_t, c_i)
    assert saved_i.numel() == 0
    _, saved_per_unit = fastrnn._C.cell_shape(mode)
    assert saved_t.shape == ((17, 3, saved_per_unit * 32) if saved_per_unit else (0,))
    assert c_t.shape == ((3, 32) if mode == "lstm" else (0,))
