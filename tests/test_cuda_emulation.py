"""The CUDA drivers and kernel bodies (csrc/cuda/driver.h, kernels.cuh), run on the CPU under
host emulation (fastrnn.cuda_emulation()), against fastrnn.reference and the CPU drivers: every
cell and option, packed, bidirectional, dropout, projection, clipping, recorded norms, gradcheck
in float64 and opcheck; each test proves from the emulator's counts that the emulated path ran."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, DTYPES, config_ids
from module_helpers import op_args, stack_args
from test_clipping import _cases as clipping_cases
from test_grad_norms import _cases as norms_cases
from test_grad_norms import test_recorded_norms_match_reference_hooks as check_norms
from test_rnn_stack import _cases as stack_cases
from test_rnn_stack import assert_matches_reference, gradcheck_args, outputs_and_grads


def emulated(fn, *args, **kwargs):
    """fn(*args, **kwargs) under cuda_emulation(); asserts kernels and GEMMs ran there."""
    with fastrnn.cuda_emulation() as stats:
        result = fn(*args, **kwargs)
    assert stats.launches > 0 and stats.gemms > 0, stats
    return result


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(stack_cases()), ids=config_ids)
def test_emulated_stack_matches_reference(mode, config, dtype):
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    emulated(assert_matches_reference, args, kwargs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("mode,config", list(clipping_cases()), ids=config_ids)
def test_emulated_clipping_matches_reference(mode, config, dtype):
    config = dict(config)
    options = {k: config.pop(k) for k in ("grad_clip", "cell_clip") if k in config}
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    emulated(assert_matches_reference, args, kwargs | options)


@pytest.mark.parametrize("mode,config", list(norms_cases()), ids=config_ids)
def test_emulated_grad_norms_match_reference(mode, config, monkeypatch):
    emulated(check_norms, mode, config, torch.float32, monkeypatch)


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_emulated_matches_cpu_drivers(mode):
    # same values, both drivers in float64: equal to rounding (another order of sums)
    args, kwargs = stack_args(mode, num_layers=2, packed=True, masks=True,
                              proj_size=3 if mode == "lstm" else 0)
    cpu = outputs_and_grads(fastrnn.functional.rnn_stack, args, kwargs)
    gpu = emulated(outputs_and_grads, fastrnn.functional.rnn_stack, args, kwargs)
    for a, b in zip([*cpu[0], *cpu[1]], [*gpu[0], *gpu[1]]):
        torch.testing.assert_close(a, b, atol=1e-13, rtol=1e-13)


@pytest.mark.parametrize("mode,config", [
    ("lstm", dict(packed=True, proj_size=2, masks=True)),
    ("gru", dict(num_layers=2, bidirectional=True)),
    ("rnn_tanh", dict(packed=True, hx=False)),
    ("rnn_relu", dict(bias=False, num_layers=1)),
], ids=config_ids)
def test_emulated_gradcheck(mode, config):
    args, kwargs = stack_args(mode, T=3, B=2, I=3, H=3, **config)
    assert emulated(torch.autograd.gradcheck, *gradcheck_args(args, kwargs))


@pytest.mark.parametrize("mode", CELL_NAMES)
def test_emulated_opcheck(mode):
    args, kwargs = stack_args(mode, T=3, B=2, I=5, H=4, num_layers=2, bidirectional=True,
                              packed=True)
    results = emulated(torch.library.opcheck, torch.ops.fastrnn.rnn.default,
                       op_args(args, kwargs, True))
    assert all(result == "SUCCESS" for result in results.values()), results


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"])
def test_emulated_modules_match_torch_nn(cls):
    torch.manual_seed(0)
    kwargs = {} if "Cell" in cls else dict(num_layers=2, bidirectional=True, batch_first=True)
    ours = getattr(fastrnn, cls)(5, 7, **kwargs).double()
    theirs = getattr(torch.nn, cls)(5, 7, **kwargs).double()
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 5, dtype=torch.float64) if "Cell" in cls else \
        torch.randn(3, 4, 5, dtype=torch.float64)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()

    def first(out):
        return out[0] if isinstance(out, tuple) else out

    out = first(emulated(ours, x1))
    expected = first(theirs(x2))
    torch.testing.assert_close(out, expected, atol=1e-13, rtol=1e-13)
    emulated(lambda: out.square().sum().backward())
    expected.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-13, rtol=1e-13)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-13, rtol=1e-13, msg=name)


def test_emulation_is_off_outside_the_block():
    x = torch.randn(3, 2, 4)
    with fastrnn.cuda_emulation():
        pass
    with fastrnn.cuda_emulation() as stats:
        pass
    fastrnn.LSTM(4, 5)(x)
    assert stats.launches == 0 and not fastrnn._C._cuda_emulation()
