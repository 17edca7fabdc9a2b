"""The CPU kernels' scratch buffers kept between calls (csrc/cpu/scratch.h): bounded, emptied by
fastrnn.empty_cache(), and a reused buffer, holding another call's values, changes no result."""

import torch

import fastrnn
from fastrnn import _C


def _train(module, x):
    x = x.detach().requires_grad_()
    out, _ = module(x)
    out.sum().backward()
    grads = [x.grad] + [p.grad for p in module.parameters()]
    module.zero_grad()
    return out.detach(), grads


def test_large_buffers_are_kept_bounded_and_emptied():
    torch.manual_seed(0)
    fastrnn.empty_cache()
    assert _C.cpu_cached_bytes() == 0
    _train(fastrnn.LSTM(64, 128), torch.randn(50, 16, 64))  # gates of 800 rows: 1.6 MiB
    kept = _C.cpu_cached_bytes()
    assert 256 << 10 <= kept <= 256 << 20
    fastrnn.empty_cache()
    assert _C.cpu_cached_bytes() == 0


def test_reused_buffers_change_no_result():
    """A GRU's call whose buffers come from the cache, filled by an LSTM's and a larger GRU's
    calls before it, gives bitwise what it gives on fresh memory."""
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16):
        gru = fastrnn.GRU(48, 96).to(dtype)
        x = torch.randn(40, 12, 48, dtype=dtype)
        fastrnn.empty_cache()
        fresh_out, fresh_grads = _train(gru, x)
        for _ in range(2):
            _train(fastrnn.LSTM(64, 128).to(dtype), torch.randn(50, 16, 64, dtype=dtype) * 50)
            _train(fastrnn.GRU(48, 96).to(dtype), torch.randn(41, 12, 48, dtype=dtype) * 50)
            assert _C.cpu_cached_bytes() > 0
            out, grads = _train(gru, x)
            assert torch.equal(out, fresh_out)
            for a, b in zip(grads, fresh_grads):
                assert torch.equal(a, b)



def test_reserve_lives_with_its_graph():
    """A training call's reserve, large enough to come from the kept buffers, stays intact while
    its graph lives, with other calls taking and returning buffers in between (two backwards
    through one graph agree bitwise), and is kept for later calls once backward frees it."""
    torch.manual_seed(0)
    lstm = fastrnn.LSTM(64, 128)
    x = torch.randn(50, 16, 64, requires_grad=True)  # reserve 800 x 640 floats: 2 MiB
    fastrnn.empty_cache()
    out, _ = lstm(x)
    loss = (out * torch.randn_like(out)).sum()
    first = torch.autograd.grad(loss, [x, *lstm.parameters()], retain_graph=True)
    for _ in range(2):
        _train(fastrnn.LSTM(64, 128), torch.randn(50, 16, 64) * 50)
        _train(fastrnn.GRU(64, 128), torch.randn(60, 16, 64) * 50)
    kept = _C.cpu_cached_bytes()
    second = torch.autograd.grad(loss, [x, *lstm.parameters()])  # frees what forward saved
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    assert _C.cpu_cached_bytes() >= kept + 800 * 640 * 4
