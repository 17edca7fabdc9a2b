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

