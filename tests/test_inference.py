"""The inference path (no graph recorded, nothing saved) gives what the training path gives."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, make_problem, without_grad
from module_helpers import op_args, stack_args


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


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_op_training_flag_changes_only_reserve(mode, dtype, bias, packed):
    """The op with training=False returns the same outputs and an empty reserve; with training
    it returns the reserve of N rows: S*H saved values per layer and direction, and the output
    of every layer but the last."""
    L, D, T, B, I, H = 2, 2, 17, 3, 7, 32
    args, kwargs = stack_args(mode, T, B, I, H, num_layers=L, bidirectional=True, bias=bias,
                              packed=packed, dtype=dtype, requires_grad=False)
    N = args[1].shape[0] if packed else T * B
    out_t, h_t, c_t, reserve_t = torch.ops.fastrnn.rnn(*op_args(args, kwargs, True))
    out_i, h_i, c_i, reserve_i = torch.ops.fastrnn.rnn(*op_args(args, kwargs, False))
    assert torch.equal(out_t, out_i) and torch.equal(h_t, h_i) and torch.equal(c_t, c_i)
    assert reserve_i.shape == (0,)
    saved_per_unit = fastrnn._C.cell_shape(mode)[1]
    assert reserve_t.shape == (N, L * D * saved_per_unit * H + (L - 1) * D * H)
    assert c_t.shape == ((L * D, B, H) if mode == "lstm" else (0,))

