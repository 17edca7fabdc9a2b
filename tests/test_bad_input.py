"""Bad input raises a clear exception: ValueError for shapes and sizes, TypeError for dtypes,
RuntimeError for devices, each message naming the problem."""

import re
import subprocess
import sys
import textwrap

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, CELLS, make_problem, without_grad
from module_helpers import stack_args

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
    with raises(ValueError, f"input has I = {I + 1} features but weight_ih_l0 expects {I}"):
        call(cell, input=torch.randn(T, B, I + 1))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_h0_hidden_size_differs_from_weight_hh(cell):
    with raises(ValueError, f"h0 must have shape [B, H] = [{B}, {H}], got [{B}, {H + 1}]"):
        call(cell, h0=torch.randn(B, H + 1))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_weight_ih_rows_differ_from_weight_hh(cell):
    G = CELLS[cell].gates
    with raises(ValueError, f"weight_ih_l0 must have shape [G*H, I] = [{G * H}, {I}]"):
        call(cell, weight_ih=torch.randn(G * (H + 1), I))


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_weight_hh_not_square_per_gate(cell):
    """weight_hh [G*H, H + 1] with weight_ih, h0 (and c0) of hidden size H: weight_hh is the
    odd one out and is named."""
    G = CELLS[cell].gates
    with raises(ValueError, f"weight_hh_l0 must have shape [{G * H}, {H}], got [{G * H}, {H + 1}]"):
        call(cell, weight_hh=torch.randn(G * H, H + 1))


# the op's names of the tensors of a one-layer call
OP_NAMES = {"weight_ih": "weight_ih_l0", "weight_hh": "weight_hh_l0", "bias_ih": "bias_ih_l0",
            "bias_hh": "bias_hh_l0", "h0": "hx", "c0": "cx"}


@pytest.mark.parametrize("name", ["weight_ih", "weight_hh", "h0", "c0", "bias_ih", "bias_hh"])
def test_dtype_differs_from_input(name):
    tensor = args()[name].detach().double()
    with raises(TypeError, f"{OP_NAMES[name]} has dtype Double but input has dtype Float"):
        call(**{name: tensor})


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.complex64, torch.float8_e4m3fn],
                         ids=str)
def test_input_of_unsupported_dtype(dtype):
    kwargs = {n: t.detach().to(dtype) for n, t in args().items()}
    with raises(TypeError, "input must be float32, float64, bfloat16 or float16, got"):
        call(**kwargs)


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (1, B, H), (B * H,)],
                         ids=["hidden", "batch", "3d", "1d"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_h0_of_wrong_shape(cell, shape):
    with raises(ValueError, f"h0 must have shape [B, H] = [{B}, {H}], got"):
        call(cell, h0=torch.randn(shape))


@pytest.mark.parametrize("shape", [(B, H + 1), (B + 1, H), (1, B, H)],
                         ids=["hidden", "batch", "3d"])
def test_c0_of_wrong_shape(shape):
    with raises(ValueError, f"c0 must have shape [B, H] = [{B}, {H}], got"):
        call("lstm", c0=torch.randn(shape))


@pytest.mark.parametrize("name", ["bias_ih", "bias_hh"])
@pytest.mark.parametrize("cell", CELL_NAMES)
def test_bias_of_wrong_shape(cell, name):
    GH = CELLS[cell].gates * H
    with raises(ValueError, f"{name}_l0 must have shape [{GH}], got [{GH + 1}]"):
        call(cell, **{name: torch.randn(GH + 1)})
    with raises(ValueError, f"{name}_l0 must have shape [{GH}], got [1, {GH}]"):
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


def op_args(cell="lstm", training=False, **changes):
    """Valid arguments of torch.ops.fastrnn.rnn for a one-layer call of the cell (float64),
    with some replaced."""
    p = without_grad(make_problem(cell, T, B, I, H))
    weights = [p.weight_ih, p.weight_hh, p.bias_ih, p.bias_hh]
    args = dict(mode=cell, input=p.input, batch_sizes=None, hx=p.h0.unsqueeze(0),
                cx=p.c0.unsqueeze(0) if p.c0 is not None else None, weights=weights,
                has_bias=True, num_layers=1, bidirectional=False, proj_size=0,
                dropout_masks=None, training=training)
    return args | changes


@pytest.mark.parametrize("mode", ["LSTM", "rnn", "relu", ""])
def test_unknown_mode_to_the_op(mode):
    expected = f"mode must be one of 'lstm', 'gru', 'rnn_tanh', 'rnn_relu', got '{mode}'"
    with raises(ValueError, expected):
        torch.ops.fastrnn.rnn(*op_args(mode=mode).values())


@pytest.mark.parametrize("mode", ["gru", "rnn_tanh", "rnn_relu"])
def test_c0_given_to_a_cell_without_cell_state(mode):
    with raises(ValueError, f"cx (c0) is only for mode 'lstm', not '{mode}'"):
        torch.ops.fastrnn.rnn(*op_args(mode, cx=torch.zeros(1, B, H)).values())


@pytest.mark.parametrize("on_meta", ["input", "h0", "c0", "weight_ih", "weight_hh", "bias_ih"])
def test_tensors_on_different_devices(on_meta):
    tensor = args()[on_meta].detach().to("meta")
    with raises(RuntimeError, "all tensors must be on one device, got cpu, meta"):
        call(**{on_meta: tensor})


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_backward_after_inference_forward(mode):
    p = make_problem(mode, T, B, I, H)
    output, h_n, _, _ = torch.ops.fastrnn.rnn(
        *op_args(mode, input=p.input, weights=[p.weight_ih, p.weight_hh, p.bias_ih,
                                               p.bias_hh]).values())
    assert output.requires_grad
    with raises(RuntimeError, "backward through a forward that ran with training=False"):
        (output.sum() + h_n.sum()).backward()


def backward_args(mode="lstm", training=True, **grads):
    """Arguments of torch.ops.fastrnn.rnn_backward after a forward (training or not), with the
    gradients given (the others None)."""
    grads = {name: g.double() for name, g in grads.items()}
    args = op_args(mode, training=training)
    output, _, _, reserve = torch.ops.fastrnn.rnn(*args.values())
    forward_args = [v for k, v in args.items() if k not in ("mode", "training")]
    return (mode, grads.get("grad_output"), grads.get("grad_h_n"), grads.get("grad_c_n"),
            *forward_args, output, reserve)


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_backward_op_without_reserve(mode):
    """The backward op refuses the empty reserve of a forward with training=False."""
    args = backward_args(mode, training=False, grad_output=torch.ones(T, B, H))
    assert args[-1].numel() == 0
    with raises(ValueError, "backward needs the reserve of a forward with training=True"):
        torch.ops.fastrnn.rnn_backward(*args)


@pytest.mark.parametrize("name,shape", [("grad_output", (T, B, H + 1)),
                                        ("grad_h_n", (1, B + 1, H)), ("grad_c_n", (B, H))])
def test_backward_op_gradient_of_wrong_shape(name, shape):
    with raises(ValueError, f"{name} must have shape"):
        torch.ops.fastrnn.rnn_backward(*backward_args(**{name: torch.ones(shape)}))


# The stack (fastrnn.functional.rnn_stack, docs/stack-op.md): what a one-layer call cannot get
# wrong. A bidirectional two-layer LSTM with a projection P = 3, T, B, I, H as above.
L, D, P = 2, 2, 3


POSITIONAL = ("mode", "input", "batch_sizes", "hx", "cx", "weights")


def valid_stack_args():
    args, kwargs = stack_args("lstm", T, B, I, H, num_layers=L, bidirectional=True, proj_size=P,
                              dtype=torch.float32, requires_grad=False)
    return dict(zip(POSITIONAL, args)) | kwargs


def stack(**changes):
    """rnn_stack on valid arguments (padded input) with some replaced."""
    args = valid_stack_args() | changes
    positional = [args.pop(name) for name in POSITIONAL]
    return fastrnn.functional.rnn_stack(*positional, **args)


def with_weight(index, tensor):
    weights = valid_stack_args()["weights"]
    weights[index] = tensor
    return weights


def test_stack_arguments_are_valid():
    output, h_n, c_n = stack()
    assert output.shape == (T, B, D * P) and h_n.shape == (L * D, B, P)
    assert c_n.shape == (L * D, B, H)


@pytest.mark.parametrize("changes,exception,message", [
    (dict(hx=torch.randn(L * D, B, H)), ValueError, f"hx must have shape [{L * D}, {B}, {P}]"),
    (dict(hx=torch.randn(L, B, P)), ValueError, f"hx must have shape [{L * D}, {B}, {P}]"),
    (dict(cx=torch.randn(L * D, B, P)), ValueError, f"cx must have shape [{L * D}, {B}, {H}]"),
    (dict(hx=torch.randn(L * D, B, P, dtype=torch.float64)), TypeError,
     "hx has dtype Double but input has dtype Float"),
    (dict(weights=valid_stack_args()["weights"][:-1]), ValueError,
     "expected 20 weight tensors (5 for each of 2 layers x 2 directions), got 19"),
    (dict(has_bias=False), ValueError, "expected 12 weight tensors"),
    (dict(num_layers=0), ValueError, "num_layers must be >= 1, got 0"),
    (dict(proj_size=-1), ValueError, "proj_size must be >= 0, got -1"),
    (dict(mode="gru"), ValueError, "proj_size is only for mode 'lstm', not 'gru'"),
    (dict(weights=with_weight(5, torch.randn(4 * H, D * H))), ValueError,
     f"input has I = {I} features but weight_ih_l0_reverse expects {D * H}"),
    (dict(weights=with_weight(10, torch.randn(4 * H, D * H))), ValueError,
     f"weight_ih_l1 must have D*P = {D * P} columns (layer 0's output), got {D * H}"),
    (dict(weights=with_weight(11, torch.randn(4 * H, H))), ValueError,
     f"weight_hh_l1 must have shape [{4 * H}, {P}], got [{4 * H}, {H}]"),
    (dict(weights=with_weight(19, torch.randn(H, P))), ValueError,
     f"weight_hr_l1_reverse must have shape [{P}, {H}], got [{H}, {P}]"),
    (dict(dropout_masks=torch.ones(L - 1, T, B, D * H)), ValueError,
     f"dropout_masks must have shape [{L - 1}, {T}, {B}, {D * P}]"),
    (dict(dropout_masks=torch.ones(L - 1, T, B, D * P, dtype=torch.float64)), TypeError,
     "dropout_masks has dtype Double but input has dtype Float"),
], ids=["hx_hidden_not_proj", "hx_directions", "cx_proj_not_hidden", "hx_dtype",
        "weight_missing", "bias_flag", "zero_layers", "negative_proj", "proj_for_gru",
        "weight_ih_reverse", "weight_ih_layer1", "weight_hh_layer1", "weight_hr_reverse",
        "dropout_masks_shape", "dropout_masks_dtype"])
def test_stack_bad_arguments(changes, exception, message):
    with raises(exception, message):
        stack(**changes)


def test_stack_proj_not_smaller_than_hidden():
    with raises(ValueError, f"proj_size ({H}) must be smaller than the hidden size ({H})"):
        stack(proj_size=H)


def test_stack_dropout_masks_need_two_layers():
    module = torch.nn.GRU(I, H)
    with raises(ValueError, "dropout_masks need num_layers > 1"):
        fastrnn.functional.rnn_stack("gru", torch.randn(T, B, I), None, None, None,
                                     [w.detach() for w in module._flat_weights], has_bias=True,
                                     num_layers=1, bidirectional=False,
                                     dropout_masks=torch.ones(0, T, B, H))


N_PACKED = 5  # batch_sizes [2, 2, 1]


@pytest.mark.parametrize("batch_sizes,input_shape,message", [
    (torch.tensor([2, 1, 2]), (N_PACKED, I), "batch_sizes must be >= 1 and non-increasing"),
    (torch.tensor([0, 0, 0]), (0, I), "batch_sizes must be >= 1 and non-increasing"),
    (torch.tensor([2, 2, 1]), (N_PACKED + 1, I),
     f"packed input has {N_PACKED + 1} rows but batch_sizes sum to {N_PACKED}"),
    (torch.tensor([2, 2, 1], dtype=torch.int32), (N_PACKED, I),
     "batch_sizes must be a 1-D int64 CPU tensor"),
    (torch.tensor([[2, 2, 1]]), (N_PACKED, I), "batch_sizes must be a 1-D int64 CPU tensor"),
    (torch.tensor([2, 2, 1]), (N_PACKED, 1, I), "packed input must be 2-D [N, I]"),
], ids=["increasing", "zero", "sum", "int32", "2d", "input_3d"])
def test_stack_bad_packed_input(batch_sizes, input_shape, message):
    with raises(ValueError, message):
        stack(input=torch.randn(input_shape), batch_sizes=batch_sizes,
              hx=torch.randn(L * D, 2, P), cx=torch.randn(L * D, 2, H))


# Issue 16: hostile sizes, mixed devices, the fakes' checks, and the messages. Each call that
# crashed the interpreter runs in a subprocess, so a crash is a failure rather than the end of
# the test run.

HUGE = 2**62 + 1  # L * D * weights per layer wraps around int64 to a small number


def raised_in_subprocess(code: str) -> str:
    """Runs `code` (which must raise) in a fresh interpreter; returns 'Type: message'."""
    program = ("import sys, torch, fastrnn\ntry:\n" + textwrap.indent(code, "    ") +
               "\nexcept Exception as e:\n    print(f'{type(e).__name__}: {e}'.splitlines()[0])"
               "\n    sys.exit(0)\nprint('no exception')")
    run = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert run.returncode == 0, f"crashed (exit {run.returncode}): {run.stderr[-2000:]}"
    return run.stdout.strip()


HUGE_LAYER_CALLS = {
    "module": "m = fastrnn.LSTM(5, 6); m.num_layers = {L}; m(torch.randn(4, 3, 5))",
    "module_packed": "m = fastrnn.GRU(5, 6, bidirectional=True); m.num_layers = {L}\n"
                     "x = torch.nn.utils.rnn.pack_sequence([torch.randn(3, 5), torch.randn(2, 5)])"
                     "\nm(x)",
    "op": "w = [p.detach() for p in torch.nn.LSTM(5, 6)._flat_weights]\n"
          "torch.ops.fastrnn.rnn('lstm', torch.randn(4, 3, 5), None, None, None, w, True, {L}, "
          "False, 0, None, False)",
    "rnn_backward": "w = [p.detach() for p in torch.nn.GRU(5, 6)._flat_weights]\n"
                    "x = torch.randn(4, 3, 5)\n"
                    "torch.ops.fastrnn.rnn_backward('gru', torch.ones(4, 3, 6), None, None, x, "
                    "None, None, None, w, True, {L}, False, 0, None, torch.ones(4, 3, 6), "
                    "torch.ones(12, 24))",
    "rnn_stack": "w = [p.detach() for p in torch.nn.RNN(5, 6)._flat_weights]\n"
                 "fastrnn.functional.rnn_stack('rnn_tanh', torch.randn(4, 3, 5), None, None, "
                 "None, w, has_bias=True, num_layers={L}, bidirectional=False)",
    "meta": "w = [p.detach().to('meta') for p in torch.nn.LSTM(5, 6)._flat_weights]\n"
            "torch.ops.fastrnn.rnn('lstm', torch.randn(4, 3, 5, device='meta'), None, None, "
            "None, w, True, {L}, True, 0, None, True)",
}


@pytest.mark.parametrize("path,L", [(path, HUGE) for path in HUGE_LAYER_CALLS] +
                         [("op", 2**63 - 1), ("op", 2**61 + 1)])
def test_huge_num_layers_raises(path, L):
    """The weight count L x D x per-layer is computed without overflow on every path. (A module
    without hx may fail first allocating h0 of L*D layers, as torch.nn's does.)"""
    result = raised_in_subprocess(HUGE_LAYER_CALLS[path].format(L=L))
    expected = ("ValueError: fastrnn: expected over 2^63 weight tensors",)
    if path == "module_packed":
        expected += ("RuntimeError: numel: integer multiplication overflow",)
    assert result.startswith(expected), result


@pytest.mark.parametrize("shape", [(2**30, 2**30, 1), (3, 2**40, 5), (2**33, 1, 5)],
                         ids=["TxB", "B", "T"])
def test_huge_sizes_on_meta(shape):
    """Sizes only a meta tensor can have are refused by the fake's checks, as the CPU kernel's
    would (the BLAS indexes with 32 bits), rather than returning shapes."""
    weights = [args()[name].detach().to("meta") for name in ("weight_ih", "weight_hh")]
    with raises(ValueError, "exceed the 32-bit index range of the BLAS"):
        torch.ops.fastrnn.rnn("lstm", torch.empty(shape, device="meta"), None, None, None,
                              weights, False, 1, False, 0, None, False)


def test_huge_batch_sizes_sum():
    """batch_sizes whose sum overflows int64."""
    w = [p.detach() for p in torch.nn.LSTM(I, H)._flat_weights]
    with raises(ValueError, "rows but batch_sizes sum to"):
        torch.ops.fastrnn.rnn("lstm", torch.randn(5, I), torch.tensor([2**62] * 4),
                              torch.zeros(1, 2, H), None, w, True, 1, False, 0, None, False)


@pytest.mark.parametrize("name", ["batch_sizes", "input", "hx", "cx", "weight", "dropout_masks",
                                  "norms_probe"])
def test_one_tensor_on_another_device_raises(name):
    """A meta tensor among CPU ones dispatches to the fake kernel, which must raise rather than
    return uninitialised CPU tensors; batch_sizes belongs on the CPU."""
    args, kwargs = stack_args("lstm", T=3, B=2, I=I, H=H, num_layers=2, bidirectional=False,
                              packed=True, masks=True, requires_grad=False)
    mode, input, batch_sizes, hx, cx, weights = args
    tensors = dict(input=input, batch_sizes=batch_sizes, hx=hx, cx=cx,
                   dropout_masks=kwargs["dropout_masks"],
                   norms_probe=torch.zeros(2, 2, 3))
    if name == "weight":
        weights = [w.to("meta") if k == 5 else w for k, w in enumerate(weights)]
    else:
        tensors[name] = tensors[name].to("meta")
    message = "batch_sizes must be on the CPU" if name == "batch_sizes" else \
        "all tensors must be on one device, got cpu, meta"
    with raises(RuntimeError, message):
        torch.ops.fastrnn.rnn(mode, tensors["input"], tensors["batch_sizes"], tensors["hx"],
                              tensors["cx"], weights, True, 2, False, 0,
                              tensors["dropout_masks"], True, norms_probe=tensors["norms_probe"])


@pytest.mark.parametrize("name", ["output", "reserve", "grad_output", "grad_h_n"])
def test_backward_tensor_on_another_device_raises(name):
    args = list(backward_args("gru", grad_output=torch.ones(T, B, H),
                              grad_h_n=torch.ones(1, B, H)))
    index = {"grad_output": 1, "grad_h_n": 2, "output": -2, "reserve": -1}[name]
    args[index] = args[index].to("meta")
    with raises(RuntimeError, "all tensors must be on one device, got cpu, meta"):
        torch.ops.fastrnn.rnn_backward(*args)


def meta_op_args(**changes):
    return {k: v.to("meta") if isinstance(v, torch.Tensor) else
            [w.to("meta") for w in v] if k == "weights" else v
            for k, v in op_args(**changes).items()}


@pytest.mark.parametrize("changes,exception,message", [
    (dict(num_layers=5), ValueError,
     "expected 20 weight tensors (4 for each of 5 layers x 1 directions), got 4"),
    (dict(input=torch.randn(T, B, I + 2)), ValueError,
     f"input has I = {I + 2} features but weight_ih_l0 expects {I}"),
    (dict(weights=[]), ValueError, "expected 4 weight tensors"),
    (dict(hx=torch.randn(1, B + 1, H, dtype=torch.float64)), ValueError,
     f"hx must have shape [1, {B}, {H}]"),
    (dict(mode="gru", cx=None), ValueError, "weight_hh_l0 must be 2-D [G*H, P] with G = 3"),
    (dict(proj_size=-1), ValueError, "proj_size must be >= 0"),
    (dict(input=torch.randn(T, B, I).int()), TypeError,
     "input must be float32, float64, bfloat16 or float16"),
], ids=["layers", "input_width", "no_weights", "hx", "mode", "proj", "dtype"])
def test_fake_kernel_runs_the_checks(changes, exception, message):
    """All-meta calls go to the fake kernel: it raises what the CPU kernel raises."""
    with raises(exception, message):
        torch.ops.fastrnn.rnn(*op_args(**changes).values())
    with raises(exception, message):
        torch.ops.fastrnn.rnn(*meta_op_args(**changes).values())


def test_fake_backward_runs_the_checks():
    args = [a.to("meta") if isinstance(a, torch.Tensor) else
            [w.to("meta") for w in a] if isinstance(a, list) else a
            for a in backward_args(grad_output=torch.ones(T, B, H + 1))]
    with raises(ValueError, "grad_output must have shape"):
        torch.ops.fastrnn.rnn_backward(*args)


def test_fake_kernel_checks_the_options():
    with raises(ValueError, "grad_clip must be > 0"):
        torch.ops.fastrnn.rnn(*meta_op_args().values(), grad_clip=-1.0)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_weight_hh_with_wrong_rows_is_named(cell):
    """weight_hh [G*(H+1), H]: weight_hh is named, with the H of weight_ih, hx and c0."""
    G = CELLS[cell].gates
    with raises(ValueError, f"weight_hh_l0 must have shape [{G * H}, {H}], "
                            f"got [{G * (H + 1)}, {H}]"):
        call(cell, weight_hh=torch.randn(G * (H + 1), H))


@pytest.mark.parametrize("hx,exception", [((torch.zeros(1, B, H),) * 3, RuntimeError),
                                          ((torch.zeros(1, B, H),), IndexError),
                                          (torch.zeros(1, B, H), IndexError)],
                         ids=["3-tuple", "1-tuple", "tensor"])
def test_lstm_hx_not_a_pair(hx, exception):
    """The exception type torch.nn raises, with a message that says what is wrong."""
    with raises(exception, "LSTM: hx must be a tuple (h_0, c_0) of two tensors, got a"):
        fastrnn.LSTM(I, H)(torch.randn(T, B, I), hx)


def test_gru_hx_not_a_tensor():
    with raises(TypeError, "GRU: hx must be tensors, got a tuple"):
        fastrnn.GRU(I, H)(torch.randn(T, B, I), (torch.zeros(1, B, H),))


def test_two_dimensional_batch_sizes_without_hx():
    with raises(ValueError, "batch_sizes must be a 1-D int64 CPU tensor, got Long of shape [1, 3]"):
        stack(input=torch.randn(N_PACKED, I), batch_sizes=torch.tensor([[2, 2, 1]]), hx=None,
              cx=None)


@pytest.mark.parametrize("function", ["convert", "revert"])
@pytest.mark.parametrize("value", [None, "model", torch.zeros(2)], ids=["None", "str", "tensor"])
def test_convert_of_a_non_module(function, value):
    with raises(TypeError, f"fastrnn.{function} takes a torch.nn.Module, got"):
        getattr(fastrnn, function)(value)
