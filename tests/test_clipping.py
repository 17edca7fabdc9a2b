"""In-kernel clipping (grad_clip, cell_clip) against fastrnn.reference, which clamps each step's
pre-activation gradients with a tensor hook and the cell state with torch.clamp: outputs and every
gradient, every cell, packed and bidirectional stacks, projection, dropout; clip values small
enough that clamping happens at most steps (counted in the reference); off is bitwise off."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, config_ids
from module_helpers import op_args, stack_args
from test_rnn_stack import assert_matches_reference, outputs_and_grads

GRAD_CLIP, CELL_CLIP = 0.05, 0.15


def _cases():
    for mode in CELL_NAMES:
        options = [dict(grad_clip=GRAD_CLIP)]
        if mode == "lstm":
            options += [dict(cell_clip=CELL_CLIP), dict(grad_clip=GRAD_CLIP, cell_clip=CELL_CLIP)]
        for option in options:
            yield mode, dict(num_layers=2, bidirectional=True, packed=True, **option)
            yield mode, dict(num_layers=2, masks=True, bidirectional=False, **option)
            yield mode, dict(num_layers=1, bidirectional=False, T=1, B=1, **option)
        if mode == "lstm":
            yield mode, dict(num_layers=2, bidirectional=True, proj_size=3,
                             grad_clip=GRAD_CLIP, cell_clip=CELL_CLIP)


def split(config):
    options = {k: config.pop(k) for k in ("grad_clip", "cell_clip") if k in config}
    return config, options


class ClampCounter:
    """Counts the reference's steps (per layer and direction) in which clamping happens."""

    def __init__(self, monkeypatch):
        self.grad_steps = self.grad_clamped = self.cell_steps = self.cell_clamped = 0
        clip_grad, clip_cell = fastrnn.reference._clip_grad, fastrnn.reference._clip_cell

        def counting_clip_grad(pre, grad_clip):
            if grad_clip is not None and pre.requires_grad:
                pre.register_hook(self._count_grad(grad_clip))  # sees the unclamped gradient
            return clip_grad(pre, grad_clip)

        def counting_clip_cell(c, cell_clip):
            if cell_clip is not None:
                self.cell_steps += 1
                self.cell_clamped += bool((c.abs() > cell_clip).any())
            return clip_cell(c, cell_clip)

        monkeypatch.setattr(fastrnn.reference, "_clip_grad", counting_clip_grad)
        monkeypatch.setattr(fastrnn.reference, "_clip_cell", counting_clip_cell)

    def _count_grad(self, grad_clip):
        def hook(grad):
            self.grad_steps += 1
            self.grad_clamped += bool((grad.abs() > grad_clip).any())
        return hook


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(_cases()), ids=config_ids)
def test_clipping_matches_reference(mode, config, dtype, monkeypatch):
    config, options = split(dict(config))
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    counter = ClampCounter(monkeypatch)
    assert_matches_reference(args, kwargs | options)
    # the clamps were active: at most steps in backward, and in forward for the cell state
    if "grad_clip" in options:
        assert counter.grad_clamped > 0.5 * counter.grad_steps > 0
    if "cell_clip" in options:
        assert counter.cell_clamped > 0.5 * counter.cell_steps > 0


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_clipping_changes_the_result(mode):
    # a clip that clamps must change gradients (cell_clip also outputs), else the test above
    # could pass with the options ignored
    args, kwargs = stack_args(mode, num_layers=2, dtype=torch.float64)
    plain = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    options = dict(grad_clip=GRAD_CLIP, cell_clip=CELL_CLIP) if mode == "lstm" else \
        dict(grad_clip=GRAD_CLIP)
    clipped = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs | options)
    assert any(not torch.equal(a, b) for a, b in zip(plain[1], clipped[1]))
    if mode == "lstm":
        assert not torch.equal(plain[0][2], clipped[0][2])  # c_n


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode", CELL_NAMES)
def test_clip_beyond_every_value_is_bitwise_off(mode, dtype):
    # the clamps run on every call; at a limit no value reaches they must change no bit
    args, kwargs = stack_args(mode, num_layers=2, packed=True, dtype=dtype)
    plain = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    options = dict(grad_clip=1e30, cell_clip=1e30) if mode == "lstm" else dict(grad_clip=1e30)
    huge = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs | options)
    for a, b in zip([*plain[0], *plain[1]], [*huge[0], *huge[1]]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", ["lstm"])
def test_cell_clip_gradcheck(mode):
    # cell_clip is a function of the inputs (grad_clip is not a gradient), so gradcheck holds
    args, kwargs = stack_args(mode, T=4, B=2, I=3, H=3, num_layers=1, bidirectional=True)
    _, input, batch_sizes, h0, c0, weights = args

    def fn(input, h0, c0, *weights):
        return fastrnn.functional.rnn_stack(mode, input, batch_sizes, h0, c0, list(weights),
                                            cell_clip=0.3, **kwargs)[:3]

    assert torch.autograd.gradcheck(fn, (input, h0, c0, *weights))


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_opcheck_with_options(mode):
    args, kwargs = stack_args(mode, T=3, B=2, I=5, H=4, num_layers=2, bidirectional=True,
                              packed=True)
    options = (GRAD_CLIP, CELL_CLIP if mode == "lstm" else None)
    results = torch.library.opcheck(torch.ops.fastrnn.rnn.default,
                                    (*op_args(args, kwargs, True), *options))
    assert all(result == "SUCCESS" for result in results.values()), results


@pytest.mark.parametrize("name,value", [("grad_clip", 0.0), ("grad_clip", -1.0),
                                        ("grad_clip", float("nan")), ("cell_clip", 0.0)])
def test_bad_option_values(name, value):
    args, kwargs = stack_args("lstm", num_layers=1)
    with pytest.raises(ValueError, match=name):
        fastrnn.functional.rnn_stack(*args, **kwargs, **{name: value})
    with pytest.raises(ValueError, match=name):
        fastrnn.LSTM(5, 7, **{name: value})


def test_cell_clip_is_lstm_only():
    args, kwargs = stack_args("gru", num_layers=1)
    with pytest.raises(ValueError, match="cell_clip is only for mode 'lstm'"):
        fastrnn.functional.rnn_stack(*args, **kwargs, cell_clip=1.0)
    with pytest.raises(TypeError, match="cell_clip"):
        fastrnn.GRU(5, 7, cell_clip=1.0)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_modules_take_and_show_the_options(cls):
    options = dict(grad_clip=0.5, cell_clip=2.0) if "LSTM" in cls else dict(grad_clip=0.5)
    module = getattr(fastrnn, cls)(5, 7, **options)
    for name, value in options.items():
        assert getattr(module, name) == value and f"{name}={value}" in repr(module)
    assert set(module.state_dict()) == set(getattr(torch.nn, cls)(5, 7).state_dict())
    # torch.nn has no such option: a call that would fall back to it refuses
    with pytest.raises(RuntimeError, match="grad_clip( and cell_clip)? needs? fastrnn's kernels"):
        with pytest.warns(UserWarning, match="runs torch.nn's implementation"):
            module.to("meta")(torch.randn(3, 5, device="meta"))


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_module_options_match_reference(cls):
    mode = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn_tanh"}[cls]
    options = dict(grad_clip=GRAD_CLIP, cell_clip=CELL_CLIP) if cls == "LSTM" else \
        dict(grad_clip=GRAD_CLIP)
    torch.manual_seed(0)
    module = getattr(fastrnn, cls)(5, 7, num_layers=2, bidirectional=True, **options).double()
    x = torch.randn(6, 3, 5, dtype=torch.float64, requires_grad=True)
    output, _ = module(x)
    output.sin().sum().backward()
    weights = [w.detach().requires_grad_() for w in module._flat_weights]
    x_ref = x.detach().requires_grad_()
    expected, _, _ = fastrnn.reference.rnn_stack(
        mode, x_ref, None, None, None, weights, has_bias=True, num_layers=2, bidirectional=True,
        **options)
    expected.sin().sum().backward()
    torch.testing.assert_close(output, expected, atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-13, rtol=1e-13)
    for w, w_ref in zip(module._flat_weights, weights):
        torch.testing.assert_close(w.grad, w_ref.grad, atol=1e-13, rtol=1e-13)


def test_revert_says_it_drops_the_options():
    model = torch.nn.Sequential(fastrnn.LSTM(5, 7, grad_clip=1.0))
    with pytest.warns(UserWarning, match="0 loses grad_clip"):
        fastrnn.revert(model)
    assert type(model[0]) is torch.nn.LSTM
