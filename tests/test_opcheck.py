"""torch.library.opcheck of the ops torch.ops.fastrnn.rnn, rnn_backward and cell: schema, fake
(meta) kernels, autograd registration and AOT dispatch, against the real CPU kernels, for one
layer and for stacks (layers, directions, projection, packed input, dropout masks), and for the
cell op's one step."""

import pytest
import torch

from helpers import CELL_NAMES, config_ids
from module_helpers import op_args, stack_args

SIZES = dict(T=3, B=2, I=5, H=4)


def opcheck(op, args):
    results = torch.library.opcheck(op, args)
    assert results and all(result == "SUCCESS" for result in results.values()), results


def rnn_args(mode, training=True, requires_grad=None, num_layers=1, bidirectional=False,
             **config):
    """Arguments of torch.ops.fastrnn.rnn (float64), leaves requiring grad (by default) when
    training. Packed input needs hx (fastrnn.functional.rnn_stack passes zeros for None)."""
    requires_grad = training if requires_grad is None else requires_grad
    args, kwargs = stack_args(mode, **SIZES, num_layers=num_layers, bidirectional=bidirectional,
                              requires_grad=requires_grad, **config)
    return op_args(args, kwargs, training)


def _stack_cases():
    for mode in CELL_NAMES:
        proj = 2 if mode == "lstm" else 0
        yield mode, dict(num_layers=2, bidirectional=True, proj_size=proj)
        yield mode, dict(num_layers=3, packed=True, masks=True)
        yield mode, dict(num_layers=2, bidirectional=True, packed=True, proj_size=proj,
                         bias=False)
        yield mode, dict(transposed=True)


@pytest.mark.parametrize("hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_rnn_one_layer(mode, training, bias, hx):
    opcheck(torch.ops.fastrnn.rnn.default,
            rnn_args(mode, bias=bias, hx=hx, training=training))


@pytest.mark.parametrize("mode,config", list(_stack_cases()), ids=config_ids)
def test_opcheck_rnn_stack(mode, config):
    opcheck(torch.ops.fastrnn.rnn.default, rnn_args(mode, **config))


def backward_args(mode, used, **config):
    """The arguments forward's autograd passes to the backward op, for the outputs in used."""
    args = rnn_args(mode, requires_grad=False, **config)
    output, h_n, c_n, reserve = torch.ops.fastrnn.rnn(*args)
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(t.shape, generator=gen, dtype=t.dtype) if name in used else None
             for name, t in (("output", output), ("h_n", h_n), ("c_n", c_n))]
    if mode != "lstm":
        grads[2] = None
    return (mode, *grads, *args[1:-1], output, reserve)


def _backward_cases():
    for mode in CELL_NAMES:
        outputs = ("output", "h_n", "c_n") if mode == "lstm" else ("output", "h_n")
        proj = 2 if mode == "lstm" else 0
        yield mode, outputs, {}
        yield mode, ("h_n",), dict(bias=False, hx=False)  # grad_output and grad_c_n None
        yield mode, outputs, dict(num_layers=2, bidirectional=True, proj_size=proj,
                                  packed=True, masks=True)


@pytest.mark.parametrize("mode,used,config", list(_backward_cases()),
                         ids=lambda v: "+".join(v) if isinstance(v, tuple) else config_ids(v))
def test_opcheck_rnn_backward(mode, used, config):
    opcheck(torch.ops.fastrnn.rnn_backward.default, backward_args(mode, used, **config))


@pytest.mark.parametrize("wanted", [(False, True), (True, False), (False, False)],
                         ids=["no_grad_input", "no_grad_hx", "neither"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_rnn_backward_some_gradients(mode, wanted):
    """input_needs_grad / hx_needs_grad false: that gradient comes back empty, the others as
    with both true."""
    outputs = ("output", "h_n", "c_n") if mode == "lstm" else ("output", "h_n")
    args = backward_args(mode, outputs, num_layers=2, bidirectional=True, packed=True)
    opcheck(torch.ops.fastrnn.rnn_backward.default, (*args, *wanted))
    every = torch.ops.fastrnn.rnn_backward(*args)
    some = torch.ops.fastrnn.rnn_backward(*args, *wanted)
    for k, want in zip((0, 1), wanted):
        assert some[k].shape == (every[k].shape if want else (0,))
        if want:
            assert torch.equal(some[k], every[k])
    assert torch.equal(some[2], every[2])
    for grad, expected in zip(some[3], every[3]):
        assert torch.equal(grad, expected)


def cell_args(mode, training=True, bias=True, hx=True, B=3, I=5, H=4):  # noqa: E741
    """Arguments of torch.ops.fastrnn.cell (float64), leaves requiring grad when training."""
    gen = torch.Generator().manual_seed(0)
    G = {"lstm": 4, "gru": 3}.get(mode, 1)

    def leaf(*shape):
        return torch.randn(shape, generator=gen, dtype=torch.float64).requires_grad_(training)
    weights = [leaf(G * H, I), leaf(G * H, H)] + ([leaf(G * H), leaf(G * H)] if bias else [])
    h0 = leaf(B, H) if hx else None
    c0 = leaf(B, H) if hx and mode == "lstm" else None
    return (mode, leaf(B, I), h0, c0, weights, bias, training)


@pytest.mark.parametrize("hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_cell(mode, training, bias, hx):
    opcheck(torch.ops.fastrnn.cell.default, cell_args(mode, training, bias, hx))


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_cell_options(mode):
    options = {"grad_clip": 0.05}
    if mode == "lstm":
        options["cell_clip"] = 0.5
    results = torch.library.opcheck(torch.ops.fastrnn.cell.default, cell_args(mode), options)
    assert all(result == "SUCCESS" for result in results.values()), results


@pytest.mark.parametrize("hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_cell_op_is_the_stack_op_on_one_step(mode, hx):
    """The cell op is the stack op on [1, B, .] views: the same h, c and every gradient, bit for
    bit, with clipping on so that the options reach the kernel too."""
    options = {"grad_clip": 0.05, **({"cell_clip": 0.5} if mode == "lstm" else {})}
    args = cell_args(mode, hx=hx)
    _, x, h0, c0, weights, bias, _ = args
    h, c, _ = torch.ops.fastrnn.cell(*args, **options)
    step = [t if t is None else t.unsqueeze(0) for t in (x, h0, c0)]
    _, h_n, c_n, _ = torch.ops.fastrnn.rnn(mode, step[0], None, step[1], step[2], weights, bias,
                                          1, False, 0, None, True, **options)
    assert torch.equal(h, h_n[0])
    if mode == "lstm":
        assert torch.equal(c, c_n[0])
    leaves = [t for t in (x, h0, c0, *weights) if t is not None]
    gen = torch.Generator().manual_seed(2)
    dh = torch.randn(h.shape, generator=gen, dtype=h.dtype)
    dc = torch.randn(h.shape, generator=gen, dtype=h.dtype)
    ours = torch.autograd.grad((h * dh).sum() + ((c * dc).sum() if mode == "lstm" else 0),
                               leaves)
    stack = torch.autograd.grad((h_n[0] * dh).sum()
                                + ((c_n[0] * dc).sum() if mode == "lstm" else 0), leaves)
    for a, b in zip(ours, stack):
        assert torch.equal(a, b)


@pytest.mark.parametrize("bad", ["input", "hx", "cx"])
def test_cell_op_rejects_a_step_that_is_not_2d(bad):
    mode, x, h0, c0, weights, bias, training = cell_args("lstm", training=False)
    tensors = {"input": x, "hx": h0, "cx": c0}
    tensors[bad] = tensors[bad].unsqueeze(0)
    with pytest.raises(ValueError, match=f"cell op's {bad} must be .* \\(2-D\\), got 3-D"):
        torch.ops.fastrnn.cell(mode, tensors["input"], tensors["hx"], tensors["cx"], weights,
                               bias, training)
