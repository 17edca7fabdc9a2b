"""Gradient flow through time, recorded inside the backward kernel (norms_probe, the modules'
record_grad_norms) against the norms of dL/dh_t and dL/dc_t taken by hooks on every step of
fastrnn.reference."""

import pytest
import torch

import fastrnn
from helpers import CELL_NAMES, config_ids
from module_helpers import op_args, stack_args
from test_rnn_stack import in_float64


def _cases():
    for mode in CELL_NAMES:
        yield mode, dict(num_layers=2, bidirectional=True, packed=True)
        yield mode, dict(num_layers=2, bidirectional=False, masks=True, grad_clip=0.05)
        yield mode, dict(num_layers=1, bidirectional=False, T=1, B=1)
    yield "lstm", dict(num_layers=2, bidirectional=True, proj_size=3, cell_clip=0.15)
    # units in three blocks of 64: every thread of the team sums its own share
    yield "gru", dict(num_layers=1, bidirectional=True, T=4, B=3, H=130, packed=True)
    yield "lstm", dict(num_layers=1, bidirectional=False, T=4, B=3, H=130, proj_size=70)
    # float32 on 2 threads or more: the steps shared by rows (each thread sums its own rows)
    yield "gru", dict(num_layers=1, bidirectional=True, T=6, B=13, H=40, packed=True)
    yield "lstm", dict(num_layers=1, bidirectional=False, T=6, B=13, H=40, proj_size=20)


def steps_of(args):
    _, input, batch_sizes, *_ = args
    return input.shape[0] if batch_sizes is None else batch_sizes.shape[0]


def reference_norms(args, kwargs, upstream_seed, monkeypatch):
    """[2, L*D, T] norms of the total dL/dh_t and dL/dc_t of every step of the reference, taken
    by hooks on each step's new state; the reference computes in float64."""
    mode = args[0]
    T = steps_of(args)
    D = 2 if kwargs["bidirectional"] else 1
    norms = torch.zeros(2, kwargs["num_layers"] * D, T, dtype=torch.float64)
    calls = []
    step = fastrnn.reference._step

    def hooked_step(*step_args, **step_kwargs):
        new = step(*step_args, **step_kwargs)
        k, i = divmod(len(calls), T)  # calls run layer by layer, direction by direction
        t = T - 1 - i if k % D == 1 else i
        calls.append((k, t))
        for which, state in enumerate(new):
            def hook(grad, which=which, k=k, t=t):
                norms[which, k, t] = grad.norm()
            state.register_hook(hook)
        return new

    monkeypatch.setattr(fastrnn.reference, "_step", hooked_step)
    outputs = fastrnn.reference.rnn_stack(*args, **kwargs)
    backward(mode, outputs, upstream_seed)
    assert len(calls) == norms.shape[1] * T
    return norms


def backward(mode, outputs, seed):
    output, h_n, c_n = outputs
    used = [output, h_n] + ([c_n] if mode == "lstm" else [])
    gen = torch.Generator().manual_seed(seed)
    torch.autograd.backward(used, [torch.randn(o.shape, generator=gen, dtype=torch.float64)
                                   .to(o.dtype) for o in used])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("mode,config", list(_cases()), ids=config_ids)
def test_recorded_norms_match_reference_hooks(mode, config, dtype, monkeypatch):
    config = dict(config)
    options = {k: config.pop(k) for k in ("grad_clip", "cell_clip") if k in config}
    args, kwargs = stack_args(mode, dtype=dtype, **config)
    T = steps_of(args)
    D = 2 if kwargs["bidirectional"] else 1
    probe = torch.zeros(2, kwargs["num_layers"] * D, T, requires_grad=True)
    backward(mode, fastrnn.functional.rnn_stack(*args, **kwargs, **options, norms_probe=probe), 1)

    ref_args, ref_kwargs = in_float64(args, kwargs)
    expected = reference_norms(ref_args, ref_kwargs | options, 1, monkeypatch)
    if mode != "lstm":
        expected[1] = 0
    assert probe.grad.dtype == torch.float32 and (expected[0] > 0).all()
    tol = 2e-5 if dtype == torch.float32 else 1e-6  # the norms are float32 either way
    torch.testing.assert_close(probe.grad, expected.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "RNN"])
def test_module_records_grad_norms(cls):
    torch.manual_seed(0)
    module = getattr(fastrnn, cls)(5, 7, num_layers=2, bidirectional=True,
                                   record_grad_norms=True)
    assert module.grad_norms is None and module.cell_grad_norms is None
    output, _ = module(torch.randn(9, 3, 5))
    output.square().sum().backward()
    assert module.grad_norms.shape == (4, 9) and (module.grad_norms > 0).all()
    if cls == "LSTM":
        assert module.cell_grad_norms.shape == (4, 9) and (module.cell_grad_norms > 0).all()
    else:
        assert module.cell_grad_norms is None
    # the loss reaches each step from its own output and from the later steps: the norm of the
    # last step of the forward direction is that of its output's gradient alone (2 * output)
    last = output[-1, :, :7]
    torch.testing.assert_close(module.grad_norms[2, -1], (2 * last).norm().detach(),
                               rtol=1e-5, atol=1e-6)


def test_recording_changes_no_result():
    args, kwargs = stack_args("lstm", num_layers=2, packed=True, dtype=torch.float32)
    probe = torch.zeros(2, 4, steps_of(args), requires_grad=True)
    results = []
    for extra in ({}, {"norms_probe": probe}):
        leaves = [t for t in (args[1], args[3], args[4], *args[5])]
        outputs = fastrnn.functional.rnn_stack(*args, **kwargs, **extra)
        grads = torch.autograd.grad(outputs[0].sum(), leaves)
        results.append([o.detach() for o in outputs] + list(grads))
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("shape,dtype", [((2, 4, 5), torch.float32), ((2, 4, 6), torch.float64),
                                         ((1, 4, 6), torch.float32)])
def test_bad_probe(shape, dtype):
    args, kwargs = stack_args("gru", T=6, num_layers=2)
    with pytest.raises((ValueError, TypeError), match="norms_probe"):
        fastrnn.functional.rnn_stack(*args, **kwargs,
                                     norms_probe=torch.zeros(shape, dtype=dtype))


def test_opcheck_with_probe():
    args, kwargs = stack_args("lstm", T=3, B=2, I=5, H=4, num_layers=2, bidirectional=True)
    probe = torch.zeros(2, 4, 3, requires_grad=True)
    results = torch.library.opcheck(torch.ops.fastrnn.rnn.default,
                                    op_args(args, kwargs, True), {"norms_probe": probe})
    assert all(result == "SUCCESS" for result in results.values()), results


def test_record_refuses_fallback():
    module = fastrnn.GRU(5, 7, record_grad_norms=True).to("meta")
    with pytest.raises(RuntimeError, match="record_grad_norms needs fastrnn's kernels"):
        with pytest.warns(UserWarning):
            module(torch.randn(3, 2, 5, device="meta"))
