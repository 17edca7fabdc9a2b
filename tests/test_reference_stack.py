"""fastrnn.reference.rnn_stack and the reference cells, the ground truth of the module tests,
against torch.nn (the same weights copied in) without fastrnn's kernels involved: every module
configuration, packed input, the dropout masks between layers."""

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
from helpers import DTYPES
from module_helpers import (CELL_CONFIGS, INPUT_KINDS, Config, assert_same, covering_subset,
                            full_product, outputs_and_grads, run, torch_nn_module)
from tolerances import assert_close

FULL = full_product()
COVERING = covering_subset()


def test_full_product_has_every_combination():
    assert len(FULL) == len(set(FULL)) == 5 * 3 * 2 * 2 * 2 * len(INPUT_KINDS) * 2


def test_covering_subset_covers_every_value_for_every_cell():
    for cell, proj in CELL_CONFIGS:
        configs = [c for c in COVERING if (c.cell, c.proj) == (cell, proj)]
        assert {(c.num_layers, c.input) for c in configs} == {
            (n, kind) for n in (1, 2, 3) for kind in INPUT_KINDS}
        for option in ("bidirectional", "batch_first", "bias", "hx"):
            assert {getattr(c, option) for c in configs} == {False, True}, (cell, option)


@pytest.mark.parametrize("config", FULL, ids=lambda c: c.id)
def test_reference_matches_torch_nn_float64(config):
    assert_same(run("reference", config, torch.float64), run("torch.nn", config, torch.float64))


@pytest.mark.parametrize("config", COVERING, ids=lambda c: c.id)
def test_reference_matches_torch_nn_float32(config):
    assert_same(run("reference", config, torch.float32), run("torch.nn", config, torch.float32))


def test_flat_weight_names_are_torch_nns():
    for config in FULL:
        if config.input == "padded" and config.hx and not config.batch_first:
            assert config.flat_weight_names() == config.make(torch.nn)._flat_weights_names


CELLS = {"lstm": (torch.nn.LSTMCell, fastrnn.reference.lstm_cell),
         "gru": (torch.nn.GRUCell, fastrnn.reference.gru_cell),
         "rnn_tanh": (torch.nn.RNNCell, fastrnn.reference.rnn_cell),
         "rnn_relu": (torch.nn.RNNCell, fastrnn.reference.rnn_cell)}


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("cell", list(CELLS))
def test_reference_cells_match_torch_nn_cells(cell, dtype, bias):
    nn_class, step = CELLS[cell]
    kwargs = {"nonlinearity": cell.removeprefix("rnn_")} if cell.startswith("rnn") else {}
    module = nn_class(5, 7, bias=bias, dtype=dtype, **kwargs)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=gen, dtype=dtype, requires_grad=True)
    state = [torch.randn(3, 7, generator=gen, dtype=dtype, requires_grad=True)
             for _ in range(2 if cell == "lstm" else 1)]
    params = dict(module.named_parameters())
    leaves = {"input": x, **{f"state{k}": s for k, s in enumerate(state)}, **params}
    expected = module(x, tuple(state) if cell == "lstm" else state[0])
    weights = (params["weight_ih"], params["weight_hh"], params.get("bias_ih"),
               params.get("bias_hh"))
    actual = step(x, *state, *weights, **kwargs)
    names = ("h", "c") if cell == "lstm" else ("h",)
    expected = expected if cell == "lstm" else (expected,)
    actual = actual if cell == "lstm" else (actual,)
    assert_same(outputs_and_grads(dict(zip(names, actual)), leaves),
                outputs_and_grads(dict(zip(names, expected)), leaves))


def _layer_by_layer(config, module, x, lengths, masks):
    """torch.nn, one single-layer module per layer with the layer's weights, the mask multiplied
    into the output (padded, or the packed data) between layers; returns the last output and
    the final states of every layer."""
    output = pack_padded_sequence(x, lengths) if lengths is not None else x
    states = []
    for layer in range(config.num_layers):
        if layer > 0:
            if lengths is None:
                output = output * masks[layer - 1]
            else:
                output = PackedSequence(output.data * masks[layer - 1], output.batch_sizes)
        single = torch.nn.LSTM(output.data.shape[-1], config.H, bidirectional=config.bidirectional,
                               proj_size=config.proj_size, dtype=x.dtype) if config.is_lstm else (
            torch.nn.GRU(output.data.shape[-1], config.H, bidirectional=config.bidirectional,
                         dtype=x.dtype))
        with torch.no_grad():
            for name, param in single.named_parameters():
                param.copy_(getattr(module, name.replace("_l0", f"_l{layer}")))
        output, state = single(output)
        states.append(state)
    return output if lengths is None else output.data, states


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("cell,proj", [("lstm", True), ("gru", False)])
def test_reference_dropout_masks_between_layers(cell, proj, packed):
    """rnn_stack with dropout_masks gives what single-layer torch.nn modules give with the masks
    multiplied into each layer's output before the next layer."""
    config = Config(cell, num_layers=3, bidirectional=True, proj=proj)
    T, B, I = config.sizes.T, config.sizes.B, config.sizes.I
    module = torch_nn_module(config, torch.float64)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(T, B, I, generator=gen, dtype=torch.float64)
    lengths = torch.tensor(sorted(config.sizes.lengths, reverse=True)) if packed else None
    rows = (int(lengths.sum()),) if packed else (T, B)
    masks = (torch.rand(2, *rows, config.D * config.P, generator=gen, dtype=torch.float64) < 0.6)
    masks = masks.double() / 0.6
    expected_output, states = _layer_by_layer(config, module, x, lengths, masks)

    data = pack_padded_sequence(x, lengths) if packed else None
    output, h_n, c_n = fastrnn.reference.rnn_stack(
        cell, data.data if packed else x, data.batch_sizes if packed else None, None, None,
        module._flat_weights, has_bias=True, num_layers=3, bidirectional=True,
        proj_size=config.proj_size, dropout_masks=masks)
    assert_close(output, expected_output, "output", "output")
    expected_h_n = torch.cat([s[0] if config.is_lstm else s for s in states])
    assert_close(h_n, expected_h_n, "output", "h_n")
    if config.is_lstm:
        assert_close(c_n, torch.cat([s[1] for s in states]), "output", "c_n")
    # and the masks matter: without them the output differs
    unmasked, _, _ = fastrnn.reference.rnn_stack(
        cell, data.data if packed else x, data.batch_sizes if packed else None, None, None,
        module._flat_weights, has_bias=True, num_layers=3, bidirectional=True,
        proj_size=config.proj_size)
    assert not torch.allclose(unmasked, output)


def test_reference_c_n_is_empty_for_cells_without_cell_state():
    for cell in ("gru", "rnn_tanh", "rnn_relu"):
        config = Config(cell, num_layers=2)
        module = torch_nn_module(config, torch.float32)
        _, h_n, c_n = fastrnn.reference.rnn_stack(
            cell, torch.randn(3, 2, config.sizes.I), None, None, None, module._flat_weights,
            has_bias=True, num_layers=2, bidirectional=False)
        assert h_n.shape == (2, 2, config.H) and c_n.shape == (0,)


@pytest.mark.parametrize("mode,proj_size,message", [
    ("LSTM", 0, "mode must be one of 'lstm', 'gru', 'rnn_tanh', 'rnn_relu', got 'LSTM'"),
    ("gru", 2, "proj_size is only for mode 'lstm', not 'gru'"),
])
def test_reference_rejects_bad_mode(mode, proj_size, message):
    with pytest.raises(ValueError, match=message):
        fastrnn.reference.rnn_stack(mode, torch.randn(3, 2, 4), None, None, None,
                                    [torch.randn(12, 4), torch.randn(12, 4)], has_bias=False,
                                    num_layers=1, bidirectional=False, proj_size=proj_size)
