"""``fastrnn.cuda_emulation()``: run the CUDA drivers and kernel bodies on the CPU.

The CUDA build's drivers (``csrc/cuda/driver.h``) and kernels (``csrc/cuda/kernels.cuh``) are
written against an execution interface that a host emulator also implements
(``csrc/cuda/emulator.cpp``: real block barriers, exact-size shared memory, cuBLAS's
column-major GEMM). Inside ``with fastrnn.cuda_emulation() as stats:`` fastrnn's ops on CPU
tensors run that code instead of the CPU drivers, so the tests check what the GPU runs on
machines without one; after the block, ``stats`` says what ran.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from . import _C


@dataclass
class EmulationStats:
    """What the emulated calls of a ``cuda_emulation()`` block did (filled when it ends)."""

    launches: int = 0         # kernel launches
    synced_launches: int = 0  # of those, kernels whose blocks synchronise (reductions)
    gemms: int = 0            # GEMM calls, cuBLAS's convention


@contextlib.contextmanager
def cuda_emulation():
    """Run fastrnn's ops on CPU tensors through the CUDA drivers under host emulation.

    Slow (one host thread per emulated thread where kernels synchronise): for tests on small
    shapes. Process-wide while the block runs; yields an ``EmulationStats`` filled at its end.

    Example::

        with fastrnn.cuda_emulation() as stats:
            out, _ = fastrnn.LSTM(8, 16)(torch.randn(5, 2, 8))
        assert stats.launches > 0
    """
    stats = EmulationStats()
    was_on = _C._cuda_emulation()
    _C._reset_cuda_emulation_stats()
    _C._set_cuda_emulation(True)
    try:
        yield stats
    finally:
        _C._set_cuda_emulation(was_on)
        stats.launches, stats.synced_launches, stats.gemms = _C._cuda_emulation_stats()


__all__ = ["cuda_emulation", "EmulationStats"]
