"""Bad input raises a clear exception: ValueError for shapes and sizes, TypeError for dtypes,
RuntimeError for devices, each message naming the problem."""

import re

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, CELLS, make_problem, without_grad

T, B, I, H = 3, 2, 5, 4


def raises(exception, message):
    """pytest.raises for the exception type with a message containing `message` verbatim."""
    return pytest.raises(exception, match=re.escape(message))


def args(cell="lstm", **changes):
    """Valid arguments of cell.call (an LSTM by default), with some replaced."""
    problem = make_problem(cell, T, B, I, H, torch.float32)
    return problem.tensors() | changes


def call(cell="lstm", **changes):
    return CELLS[cell].call(fastrnn.functional, **args(cell, **changes))


@pytest.mark.parametrize("shape", [(B, I), (1, T, B, I)], ids=["2d", "4d"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_input_of_wrong_rank(cell, shape):
    with raises(ValueError, f"input must be 3-D [T, B, I], got {len(shape)}-D"):
        call(cell, input=torch.randn(shape))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_input_features_differ_from_weight_ih(cell):
    with raises(ValueError, f"input has I = {I + 1} features but weight_ih expects {I}"):
        call(cell, input=torch.randn(T, B, I + 1))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_h0_hidden_size_differs_from_weight_hh(cell):
    with raises(ValueError, f"h0 must have shape [{B}, {H}], got [{B}, {H + 1}]"):
        call(cell, h0=torch.randn(B, H + 1))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_weight_ih_rows_differ_from_weight_hh(cell):
    G = CELLS[cell].gates
    with raises(ValueError, f"weight_ih must have shape [G*H, I] = [{G * H}, {I}]"):
        call(cell, weight_ih=torch.randn(G * (H + 1), I))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_weight_hh_not_square_per_gate(cell):
    G = CELLS[cell].gates
    with raises(ValueError, f"weight_hh must have shape [{G * (H + 1)}, {H + 1}]"):
        call(cell, weight_hh=torch.randn(G * H, H + 1))


@pytest.mark.parametrize("name", ["weight_ih", "weight_hh", "h0", "c0", "bias_ih", "bias_hh"])
def test_dtype_differs_from_input(name):
    tensor = args()[name].detach().double()
    with raises(TypeError, f"{name} has dtype Double but input has dtype Float"):
        call(**{name: tensor})


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.float16, torch.bfloat16],
                         ids=str)
def test_input_of_unsupported_dtype(dtype):
    kwargs = {n: t.detach().to(dtype) for n, t in args().items()}
    with raises(TypeError, "input must be float32 or float64, got"):
        call(**kwargs)


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (1, B, H), (B * H,)],
                         ids=["hidden", "batch", "3d", "1d"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_h0_of_wrong_shape(cell, shape):
    with raises(ValueError, f"h0 must have shape [{B}, {H}], got"):
        call(cell, h0=torch.randn(shape))


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (1, B, H)],
                         ids=["hidden", "batch", "3d"])
def test_c0_of_wrong_shape(shape):
    with raises(ValueError, f"c0 must have shape [{B}, {H}], got"):
        call("lstm", c0=torch.randn(shape))


@pytest.mark.parametrize("name", ["bias_ih", "bias_hh"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bias_of_wrong_shape(cell, name):
    GH = CELLS[cell].gates * H
    with raises(ValueError, f"{name} must have shape [{GH}], got [{GH + 1}]"):
        call(cell, **{name: torch.randn(GH + 1)})
    with raises(ValueError, f"{name} must have shape [{GH}], got [1, {GH}]"):
        call(cell, **{name: torch.randn(1, GH)})


@pytest.mark.parametrize("missing", ["bias_ih", "bias_hh"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_only_one_bias(cell, missing):
    with raises(ValueError, "give both bias_ih and bias_hh or neither"):
        call(cell, **{missing: None})


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_zero_time_steps(cell):
    with raises(ValueError, "input must have at least one time step (T >= 1), got T = 0"):
        call(cell, input=torch.randn(0, B, I))


@pytest.mark.parametrize("dim", [1, 2], ids=["batch", "features"])
def test_zero_batch_or_features(dim):
    shape = [T, B, I]
    shape[dim] = 0
    kwargs = args(input=torch.randn(shape), h0=None, c0=None)
    if dim == 2:
        kwargs["weight_ih"] = torch.randn(4 * H, 0)
    with raises(ValueError, "batch, input and hidden sizes must be >= 1"):
        CELLS["lstm"].call(fastrnn.functional, **kwargs)


@pytest.mark.parametrize("nonlinearity", ["sigmoid", "Tanh", ""])
def test_unknown_nonlinearity(nonlinearity):
    kwargs = args("rnn_tanh")
    kwargs.pop("c0")
    with raises(ValueError, f"nonlinearity must be 'tanh' or 'relu', got '{nonlinearity}'"):
        fastrnn.functional.rnn(**kwargs, nonlinearity=nonlinearity)
    with raises(ValueError, f"nonlinearity must be 'tanh' or 'relu', got '{nonlinearity}'"):
        fastrnn.reference.rnn(**kwargs, nonlinearity=nonlinearity)


@pytest.mark.parametrize("mode", ["LSTM", "rnn", "relu", ""])
def test_unknown_mode_to_the_op(mode):
    problem = make_problem("lstm", T, B, I, H, requires_grad=False)
    expected = f"mode must be one of 'lstm', 'gru', 'rnn_tanh', 'rnn_relu', got '{mode}'"
    with raises(ValueError, expected):
        torch.ops.fastrnn.forward(mode, *problem.args(), False)


@pytest.mark.parametrize("mode", ["gru", "rnn_tanh", "rnn_relu"])
def test_c0_given_to_a_cell_without_cell_state(mode):
    problem = without_grad(make_problem(mode, T, B, I, H))
    with raises(ValueError, f"c0 is only for mode 'lstm', not '{mode}'"):
        torch.ops.fastrnn.forward(mode, *problem.args()[:2], torch.zeros(B, H),
                                  *problem.args()[3:], False)


@pytest.mark.parametrize("on_meta", ["input", "h0", "c0", "weight_ih", "weight_hh", "bias_ih"])
def test_tensors_on_different_devices(on_meta):
    tensor = args()[on_meta].detach().to("meta")
    with raises(RuntimeError, "all tensors must be on one device, got cpu, meta"):
        call(**{on_meta: tensor})


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_backward_after_inference_forward(mode):
    p = make_problem(mode, T, B, I, H)
    output, h_n, _, _ = torch.ops.fastrnn.forward(mode, *p.args(), False)
    assert output.requires_grad
    with raises(RuntimeError, "backward through a forward that ran with training=False"):
        (output.sum() + h_n.sum()).backward()


@pytest.mark.parametrize("mode", ["lstm", "gru"])
def test_backward_op_without_saved_tensors(mode):
    """The backward op refuses a `saved` from a forward with training=False (for cells that
    save)."""
    p = without_grad(make_problem(mode, T, B, I, H))
    output, _, _, saved = torch.ops.fastrnn.forward(mode, *p.args(), False)
    assert saved.numel() == 0
    with raises(ValueError, "backward needs the tensors saved by a forward with training=True"):
        torch.ops.fastrnn.backward(mode, torch.ones_like(output), None, None, p.input, p.h0, p.c0,
                                   p.weight_ih, p.weight_hh, True, output, saved)


@pytest.mark.parametrize("name,shape", [("grad_output", (T, B, H + 1)), ("grad_h_n", (B + 1, H)),
                                        ("grad_c_n", (B, H, 1))])
def test_backward_op_gradient_of_wrong_shape(name, shape):
    p = without_grad(make_problem("lstm", T, B, I, H))
    output, _, _, saved = torch.ops.fastrnn.forward("lstm", *p.args(), True)
    grads = {"grad_output": None, "grad_h_n": None, "grad_c_n": None}
    grads[name] = torch.ones(shape, dtype=p.input.dtype)
    with raises(ValueError, f"{name} must have shape"):
        torch.ops.fastrnn.backward("lstm", *grads.values(), p.input, p.h0, p.c0, p.weight_ih,
                                   p.weight_hh, True, output, saved)
