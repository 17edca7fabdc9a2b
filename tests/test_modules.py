"""fastrnn.RNN, LSTM, GRU and the cells as drop-in replacements of torch.nn's: outputs, final
states and the gradients of input, initial states and every parameter against torch.nn's
modules with the same weights, in every configuration; dropout; state dicts; repr; eval mode;
bad input raising what torch.nn raises."""

import re
import warnings
from dataclasses import replace

import pytest
import torch

import fastrnn
from helpers import DTYPES
from module_helpers import (CELL_CONFIGS, EDGE, Config, assert_same, call, covering_subset,
                            dropout_masks, fastrnn_module, full_product, make_inputs,
                            outputs_and_grads, run, torch_nn_module)

CLASSES = ("RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell")


def test_fastrnn_modules_are_torch_nn_modules():
    for name in CLASSES:
        assert issubclass(getattr(fastrnn, name), torch.nn.Module), name


# Parity with torch.nn: the whole product of options in float64 at tiny sizes, a covering subset
# (every value of every option for every cell) at larger sizes in float32, compared with both
# torch.nn and the reference.

@pytest.mark.parametrize("config", full_product(), ids=lambda c: c.id)
def test_parity_float64(config):
    assert_same(run("fastrnn", config, torch.float64), run("torch.nn", config, torch.float64))


@pytest.mark.parametrize("config", covering_subset(), ids=lambda c: c.id)
def test_parity_float32(config):
    result = run("fastrnn", config, torch.float32)
    for baseline in ("torch.nn", "reference"):
        assert_same(result, run(baseline, config, torch.float32), f"vs {baseline}: ")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", [
    Config(cell, 2, bidirectional=True, proj=proj, input=input, sizes=sizes)
    for cell, proj in CELL_CONFIGS for sizes in EDGE for input in ("padded", "packed_unsorted")
], ids=lambda c: f"{c.id},T={c.sizes.T},B={c.sizes.B},I={c.sizes.I},H={c.sizes.H}")
def test_parity_edge_sizes(config, dtype):
    assert_same(run("fastrnn", config, dtype), run("torch.nn", config, dtype))


CELL_CLASSES = {"lstm": "LSTMCell", "gru": "GRUCell", "rnn_tanh": "RNNCell",
                "rnn_relu": "RNNCell"}


def _cell_run(namespace, cell, dtype, bias, hx, unbatched):
    kwargs = {"nonlinearity": cell.removeprefix("rnn_")} if cell.startswith("rnn_") else {}
    module = getattr(torch.nn, CELL_CLASSES[cell])(5, 7, bias=bias, dtype=dtype, **kwargs)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in module.parameters():
            param.uniform_(-0.4, 0.4, generator=gen)
    if namespace is fastrnn:
        state_dict = module.state_dict()
        module = getattr(fastrnn, CELL_CLASSES[cell])(5, 7, bias=bias, dtype=dtype, **kwargs)
        module.load_state_dict(state_dict)
    batch = () if unbatched else (3,)
    leaves = {"input": torch.randn(*batch, 5, generator=gen, dtype=dtype).requires_grad_()}
    if hx:
        leaves["h0"] = torch.randn(*batch, 7, generator=gen, dtype=dtype).requires_grad_()
        if cell == "lstm":
            leaves["c0"] = torch.randn(*batch, 7, generator=gen, dtype=dtype).requires_grad_()
    state = (leaves["h0"], leaves["c0"]) if hx and cell == "lstm" else leaves.get("h0")
    result = module(leaves["input"], state)
    outputs = dict(zip(("h", "c"), result)) if cell == "lstm" else {"h": result}
    for value in outputs.values():
        assert value.shape == (*batch, 7)
    return outputs_and_grads(outputs, leaves | dict(module.named_parameters()))


@pytest.mark.parametrize("unbatched", [False, True], ids=["batched", "unbatched"])
@pytest.mark.parametrize("hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", list(CELL_CLASSES))
def test_parity_cells(cell, dtype, bias, hx, unbatched):
    assert_same(_cell_run(fastrnn, cell, dtype, bias, hx, unbatched),
                _cell_run(torch.nn, cell, dtype, bias, hx, unbatched))


@pytest.mark.parametrize("config", [
    Config("lstm", 2, bidirectional=True, proj=True),
    Config("gru", 3, batch_first=True, input="packed_unsorted"),
    Config("rnn_relu", 2, input="unbatched", hx=False),
], ids=lambda c: c.id)
def test_backward_in_eval_mode(config):
    """eval() only switches dropout off: backward still works, and matches torch.nn's."""
    config = replace(config, dropout=0.5)
    results = {}
    for impl, make in (("fastrnn", fastrnn_module), ("torch.nn", torch_nn_module)):
        module = make(config, torch.float64).eval()
        inputs = make_inputs(config, torch.float64)
        outputs = call(impl, module, config, inputs)
        leaves = inputs.leaves() | dict(module.named_parameters())
        results[impl] = outputs_and_grads(outputs, leaves)
    assert_same(results["fastrnn"], results["torch.nn"])


# Dropout between layers in training: fastrnn's module against the reference applying the masks
# the module draws (module_helpers.dropout_masks), the mean scale of the masks, eval mode.

DROPOUT_CONFIGS = [
    Config("lstm", 3, bidirectional=True, proj=True, dropout=0.4),
    Config("lstm", 2, batch_first=True, input="packed_unsorted", dropout=0.5),
    Config("gru", 3, bidirectional=True, input="packed_sorted", hx=False, dropout=0.3),
    Config("gru", 2, batch_first=True, input="unbatched", dropout=0.5),
    Config("rnn_tanh", 2, bidirectional=True, batch_first=True, dropout=0.5),
    Config("rnn_relu", 3, input="packed_sorted_not_enforced", bias=False, dropout=0.2),
]


def _mask_rows(config, inputs):
    if config.packed:
        return (sum(inputs.lengths),)
    return (config.sizes.T, 1 if config.input == "unbatched" else config.sizes.B)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("config", DROPOUT_CONFIGS, ids=lambda c: c.id)
def test_dropout_matches_reference_with_the_same_masks(config, dtype):
    module = fastrnn_module(config, dtype).train()
    inputs = make_inputs(config, dtype)
    leaves = inputs.leaves() | dict(module.named_parameters())
    torch.manual_seed(1234)
    result = outputs_and_grads(call("fastrnn", module, config, inputs), leaves)
    torch.manual_seed(1234)
    masks = dropout_masks(config, _mask_rows(config, inputs), dtype)
    assert (masks == 0).any() and (masks != 0).any()
    expected = outputs_and_grads(call("reference", module, config, inputs, masks), leaves)
    assert_same(result, expected)
    # another seed, other masks: another output
    torch.manual_seed(4321)
    other = call("fastrnn", module, config, inputs)["output"]
    assert not torch.allclose(other, result[0]["output"])


def _identity_relu_rnn(p, size):
    """A 2-layer ReLU RNN whose output is its input times the dropout mask: W_ih = identity,
    W_hh = 0, no bias, on positive input."""
    module = fastrnn.RNN(size, size, num_layers=2, nonlinearity="relu", bias=False, dropout=p,
                         dtype=torch.float64)
    with torch.no_grad():
        for name, param in module.named_parameters():
            identity = name.startswith("weight_ih")
            param.copy_(torch.eye(size) if identity else torch.zeros(size, size))
    return module


@pytest.mark.parametrize("p", [0.2, 0.5, 0.8])
def test_dropout_mask_mean_scale(p):
    """In training each element of the layer-0 output is kept with probability 1 - p and scaled
    by 1 / (1 - p), so the mean scale is 1; in eval the module is the identity."""
    module = _identity_relu_rnn(p, 16).train()
    x = torch.ones(50, 25, 16, dtype=torch.float64)
    torch.manual_seed(0)
    scale, _ = module(x)
    n = scale.numel()
    kept = scale != 0
    assert torch.equal(scale[kept], torch.full_like(scale[kept], 1 / (1 - p)))
    sigma = (p * (1 - p) / n) ** 0.5  # of the fraction dropped
    assert abs(1 - kept.double().mean().item() - p) < 5 * sigma
    assert abs(scale.mean().item() - 1) < 5 * sigma / (1 - p)
    output, _ = module.eval()(x)
    assert torch.equal(output, x)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_dropout_is_identity_in_eval(cell):
    """In eval a module with dropout gives exactly what it gives with dropout = 0."""
    config = Config(cell, 3, bidirectional=True, dropout=0.5)
    module = fastrnn_module(config, torch.float32).eval()
    inputs = make_inputs(config, torch.float32)
    torch.manual_seed(0)
    with_dropout = call("fastrnn", module, config, inputs)
    module.dropout = 0.0
    without = call("fastrnn", module, config, inputs)
    for name, value in with_dropout.items():
        assert torch.equal(value, without[name]), name


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_relu"])
def test_dropout_one_drops_everything_like_torch_nn(cell):
    """dropout = 1 zeroes every layer's output before the next, deterministically."""
    config = Config(cell, 3, bidirectional=True, dropout=1.0)
    results = {}
    for impl, make in (("fastrnn", fastrnn_module), ("torch.nn", torch_nn_module)):
        module = make(config, torch.float64).train()
        inputs = make_inputs(config, torch.float64)
        outputs = call(impl, module, config, inputs)
        leaves = inputs.leaves() | dict(module.named_parameters())
        results[impl] = outputs_and_grads(outputs, leaves)
    assert_same(results["fastrnn"], results["torch.nn"])


# State dicts, repr (torch.nn's, the class name prefixed with fastrnn.)

STATE_DICT_CONFIGS = [Config("lstm", 3, bidirectional=True, proj=True),
                      Config("lstm", 1, bias=False), Config("gru", 2, bidirectional=True),
                      Config("rnn_tanh", 2, bias=False), Config("rnn_relu", 1, bidirectional=True)]


@pytest.mark.parametrize("config", STATE_DICT_CONFIGS, ids=lambda c: c.id)
def test_state_dict_round_trip(config):
    """torch.nn -> fastrnn -> torch.nn through strict load_state_dict: same keys, same order,
    same values."""
    original = torch_nn_module(config, torch.float32)
    fast = config.make(fastrnn, torch.float32)
    fast.load_state_dict(original.state_dict(), strict=True)
    assert list(fast.state_dict()) == list(original.state_dict())
    back = config.make(torch.nn, torch.float32)
    back.load_state_dict(fast.state_dict(), strict=True)
    for (name, value), (name_back, value_back) in zip(original.state_dict().items(),
                                                       back.state_dict().items()):
        assert name == name_back and torch.equal(value, value_back), name


@pytest.mark.parametrize("cls,args,kwargs", [
    ("LSTMCell", (5, 7), {}), ("GRUCell", (5, 7), {"bias": False}),
    ("RNNCell", (5, 7), {"nonlinearity": "relu"}),
])
def test_cell_state_dict_round_trip(cls, args, kwargs):
    original = getattr(torch.nn, cls)(*args, **kwargs)
    fast = getattr(fastrnn, cls)(*args, **kwargs)
    fast.load_state_dict(original.state_dict(), strict=True)
    back = getattr(torch.nn, cls)(*args, **kwargs)
    back.load_state_dict(fast.state_dict(), strict=True)
    for name, value in original.state_dict().items():
        assert torch.equal(back.state_dict()[name], value), name


@pytest.mark.parametrize("cls,args,kwargs", [
    ("LSTM", (10, 20), {}),
    ("LSTM", (10, 20), {"num_layers": 2, "bias": False, "batch_first": True, "dropout": 0.5,
                        "bidirectional": True, "proj_size": 5}),
    ("GRU", (3, 4), {"num_layers": 3, "bidirectional": True}),
    ("RNN", (3, 4), {"nonlinearity": "relu", "batch_first": True}),
    ("RNN", (3, 4), {"nonlinearity": "tanh", "bias": False}),
    ("LSTMCell", (3, 4), {}), ("GRUCell", (3, 4), {"bias": False}),
    ("RNNCell", (3, 4), {"nonlinearity": "relu"}),
])
def test_repr_is_torch_nns_under_fastrnns_name(cls, args, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout with one layer
        assert repr(getattr(fastrnn, cls)(*args, **kwargs)) == \
            "fastrnn." + repr(getattr(torch.nn, cls)(*args, **kwargs))


# Bad input: the exception torch.nn raises, of the same type (or a subclass of it).

def _x(*shape, dtype=torch.float32):
    return torch.randn(*shape, dtype=dtype)


BAD_CALLS = {
    # (constructor, call) of the module on bad input; ns is torch.nn or fastrnn
    "input_4d": lambda ns: ns.LSTM(3, 4)(_x(1, 5, 2, 3)),
    "input_1d": lambda ns: ns.GRU(3, 4)(_x(3)),
    "input_features": lambda ns: ns.LSTM(3, 4, num_layers=2)(_x(5, 2, 4)),
    "input_features_packed": lambda ns: ns.LSTM(3, 4)(
        torch.nn.utils.rnn.pack_padded_sequence(_x(5, 2, 4), [5, 3])),
    "input_features_with_hx": lambda ns: ns.RNN(3, 4)(_x(5, 2, 4), _x(1, 2, 4)),
    "input_dtype": lambda ns: ns.LSTM(3, 4)(_x(5, 2, 3, dtype=torch.float64)),
    "input_int": lambda ns: ns.GRU(3, 4)(torch.ones(5, 2, 3, dtype=torch.int64)),
    "zero_time_steps": lambda ns: ns.LSTM(3, 4)(_x(0, 2, 3)),
    "hx_batch": lambda ns: ns.LSTM(3, 4, num_layers=2)(_x(5, 2, 3), (_x(2, 3, 4), _x(2, 3, 4))),
    "hx_layers": lambda ns: ns.LSTM(3, 4, num_layers=2)(_x(5, 2, 3), (_x(1, 2, 4), _x(1, 2, 4))),
    "hx_directions": lambda ns: ns.GRU(3, 4, bidirectional=True)(_x(5, 2, 3), _x(1, 2, 4)),
    "hx_hidden": lambda ns: ns.GRU(3, 4)(_x(5, 2, 3), _x(1, 2, 5)),
    "hx_proj": lambda ns: ns.LSTM(3, 4, proj_size=2)(_x(5, 2, 3), (_x(1, 2, 4), _x(1, 2, 4))),
    "cx_hidden": lambda ns: ns.LSTM(3, 4)(_x(5, 2, 3), (_x(1, 2, 4), _x(1, 2, 5))),
    "hx_2d_for_batched": lambda ns: ns.LSTM(3, 4)(_x(5, 2, 3), (_x(2, 4), _x(2, 4))),
    "hx_3d_for_unbatched": lambda ns: ns.RNN(3, 4)(_x(5, 3), _x(1, 1, 4)),
    "lstm_hx_not_a_tuple": lambda ns: ns.LSTM(3, 4)(_x(5, 2, 3), _x(1, 2, 4)),
    "packed_hx_batch": lambda ns: ns.GRU(3, 4)(
        torch.nn.utils.rnn.pack_padded_sequence(_x(5, 2, 3), [5, 3]), _x(1, 3, 4)),
    "proj_not_smaller": lambda ns: ns.LSTM(3, 4, proj_size=4),
    "proj_negative": lambda ns: ns.LSTM(3, 4, proj_size=-1),
    "proj_for_gru": lambda ns: ns.GRU(3, 4, proj_size=2),
    "proj_for_rnn": lambda ns: ns.RNN(3, 4, proj_size=2),
    "dropout_above_one": lambda ns: ns.LSTM(3, 4, num_layers=2, dropout=1.5),
    "dropout_bool": lambda ns: ns.GRU(3, 4, num_layers=2, dropout=True),
    "zero_layers": lambda ns: ns.LSTM(3, 4, num_layers=0),
    "zero_hidden": lambda ns: ns.GRU(3, 0),
    "float_hidden": lambda ns: ns.RNN(3, 4.0),
    "unknown_nonlinearity": lambda ns: ns.RNN(3, 4, nonlinearity="sigmoid"),
    "cell_input_3d": lambda ns: ns.LSTMCell(3, 4)(_x(1, 2, 3)),
    "cell_input_0d": lambda ns: ns.GRUCell(3, 4)(torch.tensor(1.0)),
    "cell_input_features": lambda ns: ns.RNNCell(3, 4)(_x(2, 4)),
    "cell_hx_batch": lambda ns: ns.LSTMCell(3, 4)(_x(2, 3), (_x(3, 4), _x(3, 4))),
    "cell_hx_hidden": lambda ns: ns.GRUCell(3, 4)(_x(2, 3), _x(2, 5)),
    "cell_hx_3d": lambda ns: ns.RNNCell(3, 4)(_x(2, 3), _x(1, 2, 4)),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_input_raises_like_torch_nn(case):
    with pytest.raises(Exception) as expected:
        BAD_CALLS[case](torch.nn)
    with pytest.raises(type(expected.value)):
        BAD_CALLS[case](fastrnn)


def test_dropout_with_one_layer_warns_like_torch_nn():
    for namespace in (torch.nn, fastrnn):
        with pytest.warns(UserWarning, match=re.escape("non-zero dropout expects num_layers")):
            namespace.LSTM(3, 4, dropout=0.5)


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode],
                         ids=["no_grad", "inference_mode"])
@pytest.mark.parametrize("config", [Config("lstm", 2, bidirectional=True, proj=True,
                                           input="packed_unsorted"),
                                    Config("gru", 3, batch_first=True, input="unbatched"),
                                    Config("rnn_tanh", 2, bidirectional=True, hx=False)],
                         ids=lambda c: c.id)
def test_inference_matches_training(config, context):
    """Under no_grad / inference_mode the module records no graph and gives the same outputs."""
    module = fastrnn_module(config, torch.float32)
    inputs = make_inputs(config, torch.float32)
    trained = call("fastrnn", module, config, inputs)
    with context():
        inferred = call("fastrnn", module, config, inputs)
    for name, value in inferred.items():
        assert value.grad_fn is None and torch.equal(value, trained[name].detach()), name


# Issue 16: valid input that was refused.

@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("name", ["RNN", "LSTM", "GRU"])
def test_packed_batch_sizes_ending_in_zeros(name, bidirectional):
    """A PackedSequence whose batch_sizes end in zeros (steps with no rows), which torch.nn
    accepts: outputs, states and gradients as torch.nn's."""
    torch.manual_seed(0)
    fast = getattr(fastrnn, name)(5, 6, num_layers=2, bidirectional=bidirectional,
                                  dtype=torch.float64)
    ref = getattr(torch.nn, name)(5, 6, num_layers=2, bidirectional=bidirectional,
                                  dtype=torch.float64)
    ref.load_state_dict(fast.state_dict())
    data = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    packed = torch.nn.utils.rnn.PackedSequence(data, torch.tensor([3, 2, 0, 0]))
    results = []
    for module in (fast, ref):
        output, hidden = module(packed)
        outputs = [output.data, *(hidden if isinstance(hidden, tuple) else (hidden,))]
        grads = torch.autograd.grad(sum((o * o).sum() for o in outputs),
                                    [data, *module.parameters()])
        results.append((outputs, grads))
    for a, b in zip(results[0][0] + list(results[0][1]), results[1][0] + list(results[1][1])):
        torch.testing.assert_close(a, b, atol=1e-14, rtol=1e-14)


@pytest.mark.parametrize("input_size,hidden_size", [(0, 4), (3, 0), (0, 0)])
@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells_with_a_zero_size(name, input_size, hidden_size):
    """Cells with input_size or hidden_size 0 run as torch.nn's do (torch.nn's implementation:
    there is nothing for the kernels to compute)."""
    torch.manual_seed(0)
    fast = getattr(fastrnn, name)(input_size, hidden_size)
    ref = getattr(torch.nn, name)(input_size, hidden_size)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(3, input_size)
    want, got = ref(x), fast(x)
    for a, b in zip(got if isinstance(got, tuple) else (got,),
                    want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["LSTMCell", "GRUCell", "RNNCell"])
def test_cells_under_a_torch_function_mode_call_the_op_through_torch_ops(name):
    """The cells' fast path calls the cell op through the extension, which __torch_function__
    modes cannot see; under such a mode the cells take the checked path, where the mode sees
    torch.ops.fastrnn.rnn, and the results are the fast path's."""
    from torch.overrides import TorchFunctionMode

    class Log(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    cell = getattr(fastrnn, name)(3, 4)
    x = torch.randn(2, 3)
    expected = cell(x)
    with Log() as log:
        out = cell(x)
    assert any("fastrnn.rnn" in n for n in log.names), log.names
    for a, b in zip(out if isinstance(out, tuple) else (out,),
                    expected if isinstance(expected, tuple) else (expected,)):
        assert torch.equal(a, b)
