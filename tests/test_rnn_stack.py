"""fastrnn.functional.rnn_stack (the op torch.ops.fastrnn.rnn) against
fastrnn.reference.rnn_stack on the contract of docs/stack-op.md: padded and packed input, hx and
cx in the packed order, dropout masks, every gradient; gradcheck in float64; inference and
retain_graph."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, config_ids
from module_helpers import stack_args
from tolerances import assert_close

def in_float64(args, kwargs):
    """The same values in float64 (new leaves), for a reference computed in float64."""
    def up(t):
        return None if t is None or not t.is_floating_point() else (
            t.detach().double().requires_grad_(t.requires_grad))
    mode, input, batch_sizes, h0, c0, weights = args
    masks = kwargs["dropout_masks"]
    return ((mode, up(input), batch_sizes, up(h0), up(c0), [up(w) for w in weights]),
            kwargs | {"dropout_masks": None if masks is None else masks.double()})


def named_leaves(args):
    """(name, tensor) of rnn_stack's args that require grad, in order: input, h0, c0, weight k."""
    _, input, _, h0, c0, weights = args
    named = [("input", input), ("h0", h0), ("c0", c0)]
    named += [(f"weight {k}", w) for k, w in enumerate(weights)]
    return [(name, t) for name, t in named if t is not None and t.requires_grad]


def leaves(args):
    return [t for _, t in named_leaves(args)]


def leaf_names(args):
    return [name for name, _ in named_leaves(args)]


def outputs_and_grads(fn, args, kwargs, seed=1):
    output, h_n, c_n = fn(*args, **kwargs)
    outputs = [output, h_n] + ([c_n] if args[0] == "lstm" else [])
    gen = torch.Generator().manual_seed(seed)
    upstream = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(o.dtype)
                for o in outputs]
    grads = torch.autograd.grad(outputs, leaves(args), upstream)
    return [o.detach() for o in outputs], grads


def assert_matches_reference(args, kwargs, what=""):
    """fastrnn's outputs and gradients for stack_args' (args, kwargs), in their dtype, against the
    reference computed in float64 from the same values."""
    dtype = args[1].dtype
    outputs, grads = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    expected_outputs, expected_grads = outputs_and_grads(fastrnn.reference.rnn_stack,
                                                         *in_float64(args, kwargs))
    for k, (value, expected) in enumerate(zip(outputs, expected_outputs)):
        assert value.shape == expected.shape and value.dtype == dtype
        assert_close(value, expected.to(dtype), "output", f"{what}output {k}")
    for k, (grad, expected) in enumerate(zip(grads, expected_grads)):
        assert_close(grad, expected.to(dtype), "grad", f"{what}gradient of leaf {k}")


def _cases():
    for mode in CELL_NAMES:
        proj = 3 if mode == "lstm" else 0
        yield mode, dict()
        yield mode, dict(packed=True, proj_size=proj)
        yield mode, dict(num_layers=3, packed=True, masks=True, hx=False, bias=False)
        yield mode, dict(num_layers=3, bidirectional=False, masks=True, proj_size=proj)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(_cases()), ids=config_ids)
def test_rnn_stack_matches_reference(mode, config, dtype):
    """fastrnn in dtype against the reference computed in float64 from the same values."""
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    assert_matches_reference(args, kwargs)
    if mode != "lstm":
        assert fastrnn.functional.rnn_stack(*args, **kwargs)[2].shape == (0,)


def _frozen_cases():
    for mode in CELL_NAMES:
        yield mode, dict(T=1, num_layers=1, bidirectional=False)  # no recurrent product left
        yield mode, dict(packed=True, proj_size=3 if mode == "lstm" else 0)
    yield "gru", dict(B=17, H=40, dtype=torch.float32)  # dL/dx inside the steps
    yield "lstm", dict(T=1, B=17, H=40, num_layers=1, dtype=torch.float32)


@pytest.mark.parametrize("frozen", [("input",), ("h0",), ("input", "h0", "c0")],
                         ids="+".join)
@pytest.mark.parametrize("mode,config", list(_frozen_cases()), ids=config_ids)
def test_rnn_stack_gradients_of_some_leaves(mode, config, frozen):
    """With the input or h0 not requiring grad, backward skips what only their gradients need
    (dL/dx of layer 0; the last step's dL/dh_{t-1}, at T = 1 the whole recurrent product): the
    other leaves' gradients are bitwise those of a backward that computes every gradient."""
    args, kwargs = stack_args(mode, **config)
    _, everything = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    expected = dict(zip(leaf_names(args), everything))
    named = dict(zip(("input", "h0", "c0"), args[1:2] + args[3:5]))
    some = list(args)
    for k, name in ((1, "input"), (3, "h0"), (4, "c0")):
        if name in frozen and named[name] is not None:
            some[k] = named[name].detach()
    _, grads = outputs_and_grads(fastrnn.functional.rnn_stack, tuple(some), kwargs)
    names = leaf_names(some)
    assert not set(names) & set(frozen) and "weight 0" in names
    for name, grad in zip(names, grads):
        assert torch.equal(grad, expected[name]), f"gradient of {name}"


@pytest.mark.parametrize("mode,config", [
    ("lstm", dict(packed=True, proj_size=2, masks=True)),
    ("gru", dict(num_layers=3, bidirectional=False, masks=True)),
    ("rnn_tanh", dict(packed=True, hx=False)),
    ("rnn_relu", dict(bias=False)),
], ids=config_ids)
def test_rnn_stack_gradcheck(mode, config):
    args, kwargs = stack_args(mode, T=4, B=3, I=3, H=4, **config)
    assert torch.autograd.gradcheck(*gradcheck_args(args, kwargs), check_undefined_grad=True)


def gradcheck_args(args, kwargs):
    """(fn, leaves) for gradcheck of rnn_stack on stack_args' (args, kwargs)."""
    mode = args[0]
    has_h0, has_c0 = args[3] is not None, args[4] is not None

    def fn(*ts):
        ts = list(ts)
        input = ts.pop(0)
        h0 = ts.pop(0) if has_h0 else None
        c0 = ts.pop(0) if has_c0 else None
        output, h_n, c_n = fastrnn.functional.rnn_stack(mode, input, args[2], h0, c0, ts,
                                                        **kwargs)
        return (output, h_n, c_n) if mode == "lstm" else (output, h_n)

    return fn, tuple(leaves(args))


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode],
                         ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_rnn_stack_inference_matches_training(mode, context):
    args, kwargs = stack_args(mode, packed=True, masks=True, num_layers=3, dtype=torch.float32)
    trained = fastrnn.functional.rnn_stack(*args, **kwargs)
    with context():
        inferred = fastrnn.functional.rnn_stack(*args, **kwargs)
    for a, b in zip(inferred, trained):
        assert a.grad_fn is None and torch.equal(a, b.detach())


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_rnn_stack_retain_graph_backward_twice(mode):
    args, kwargs = stack_args(mode, packed=True, masks=True, num_layers=2)
    output, h_n, c_n = fastrnn.functional.rnn_stack(*args, **kwargs)
    loss = output.square().sum() + h_n.sum() + (c_n.sum() if mode == "lstm" else 0)
    first = torch.autograd.grad(loss, leaves(args), retain_graph=True)
    second = torch.autograd.grad(loss, leaves(args))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_rnn_stack_packed_final_states_at_each_sequence_end():
    """Packed input of sorted lengths gives, per sequence, what that sequence alone gives."""
    args, kwargs = stack_args("lstm", packed=True, proj_size=3)
    mode, input, batch_sizes, h0, c0, weights = args
    output, h_n, c_n = fastrnn.functional.rnn_stack(*args, **kwargs)
    offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), batch_sizes]), 0)
    for b in range(int(batch_sizes[0])):
        steps = [t for t in range(len(batch_sizes)) if batch_sizes[t] > b]
        alone = torch.stack([input[offsets[t] + b] for t in steps]).unsqueeze(1)
        expected = fastrnn.functional.rnn_stack(
            mode, alone, None, h0[:, b:b + 1], c0[:, b:b + 1], weights, **kwargs)
        rows = torch.stack([offsets[t] + b for t in steps])
        assert_close(output[rows], expected[0][:, 0], "output", f"output of sequence {b}")
        assert_close(h_n[:, b], expected[1][:, 0], "output", f"h_n of sequence {b}")
        assert_close(c_n[:, b], expected[2][:, 0], "output", f"c_n of sequence {b}")


@pytest.mark.parametrize("T", [1, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16],
                         ids=["float32", "float64", "bfloat16"])
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_rnn_stack_without_hx_is_with_zeros(mode, dtype, T):
    """Without hx the kernels skip the first step's W_hh h0 (zero), and at T = 1 the whole
    recurrent product and its rows of dW_hh: the outputs, states and gradients are those of
    explicit zero states, bit for bit, except dW_hh, whose sum then has fewer rows (the BLAS may
    block it differently): within float32's tolerance (bfloat16 sums in float32)."""
    args, kwargs = stack_args(mode, T=T, H=70, hx=False, dtype=dtype)
    name, input, batch_sizes, _, _, weights = args
    zeros = torch.zeros(4, input.shape[1], 70, dtype=dtype)  # 2 layers x 2 directions
    zeros_args = (name, input, batch_sizes, zeros, zeros.clone() if mode == "lstm" else None,
                  weights)
    outputs, grads = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    zero_outputs, zero_grads = outputs_and_grads(fastrnn.functional.rnn_stack, zeros_args, kwargs)
    for value, expected in zip(outputs, zero_outputs, strict=True):
        assert torch.equal(value, expected)
    names = ["input"] + [("w_ih", "w_hh", "b_ih", "b_hh")[k % 4] for k in range(len(weights))]
    for name, grad, expected in zip(names, grads, zero_grads, strict=True):
        if name == "w_hh":
            tol = 5e-14 if dtype == torch.float64 else 2e-5
            torch.testing.assert_close(grad.double(), expected.double(), atol=tol, rtol=tol)
        else:
            assert torch.equal(grad, expected), name
