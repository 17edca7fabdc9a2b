"""``fastrnn.cuda_emulation()``: run the CUDA drivers and kernel bodies on the CPU.

The CUDA build's drivers (``csrc/cuda/driver.h``) and kernels (``csrc/cuda/kernels.cuh``) are
written against an execution interface that a host emulator also implements
(``csrc/cuda/emulator.cpp``: real block barriers, exact-size shared memory, cuBLAS's
column-major GEMM; cooperative launches with every thread of every block at once and a real
grid barrier; the warp-collective tensor-core tile product checked for all 32 threads of a
warp). Inside ``with fastrnn.cuda_emulation() as stats:`` fastrnn's ops on CPU tensors
run that code instead of the CPU drivers, so the tests check what the GPU runs on machines
without one; after the block, ``stats`` says what ran.

The CUDA drivers run each layer on one of two paths (``csrc/cuda/plan.h``): the persistent one
(one cooperative kernel per layer and direction) or the alternating one (a GEMM and a kernel per
step). ``path`` forces one, as ``FASTRNN_CUDA_PATH=auto|persistent|alternating`` does on a GPU;
the emulated device whose residency decides (and limits a forced persistent path) is an A100 by
default, ``device="h100"`` another, ``sms`` fewer SMs (blocks of several hidden units at small
sizes).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from . import _C


@dataclass
class EmulationStats:
    """What the emulated calls of a ``cuda_emulation()`` block did (filled when it ends)."""

    launches: int = 0               # kernel launches
    synced_launches: int = 0        # of those, kernels whose blocks synchronise (reductions)
    cooperative_launches: int = 0   # of those, cooperative ones: the persistent path's kernels
    gemms: int = 0                  # GEMM calls, cuBLAS's convention
    half_gemms: int = 0             # of those, with bfloat16 or float16 operands (float32 sums):
                                    # every GEMM of a 16-bit stack
    mma_tiles: int = 0              # tensor-core tile products (a warp's ctx.mma_tile calls):
                                    # the persistent path's products on tensor cores


PATHS = ("auto", "persistent", "alternating")
DEVICES = ("a100", "h100")


@contextlib.contextmanager
def cuda_emulation(path: str | None = None, device: str = "a100", sms: int | None = None):
    """Run fastrnn's ops on CPU tensors through the CUDA drivers under host emulation.

    Slow (one host thread per emulated thread where kernels synchronise): for tests on small
    shapes. Process-wide while the block runs; yields an ``EmulationStats`` filled at its end.

    ``path``: ``"auto"``, ``"persistent"`` or ``"alternating"`` (None: ``FASTRNN_CUDA_PATH``, else
    auto); a forced persistent path that the emulated device cannot hold raises RuntimeError.
    ``device``: the emulated GPU, ``"a100"`` or ``"h100"``; ``sms``: its SM count, if not its own.

    Example::

        with fastrnn.cuda_emulation() as stats:
            out, _ = fastrnn.LSTM(8, 16)(torch.randn(5, 2, 8))
        assert stats.launches > 0
    """
    if path is not None and path not in PATHS:
        raise ValueError(f"cuda_emulation: path must be one of {PATHS} or None, got {path!r}")
    if device not in DEVICES:
        raise ValueError(f"cuda_emulation: device must be one of {DEVICES}, got {device!r}")
    if sms is not None and (isinstance(sms, bool) or not isinstance(sms, int) or sms < 1):
        raise ValueError(f"cuda_emulation: sms must be a positive int or None, got {sms!r}")
    stats = EmulationStats()
    was_on = _C._cuda_emulation()
    settings = _C._cuda_emulation_settings()
    _C._reset_cuda_emulation_stats()
    _C._set_cuda_emulation_settings(path or "", device, sms or 0)
    _C._set_cuda_emulation(True)
    try:
        yield stats
    finally:
        _C._set_cuda_emulation(was_on)
        _C._set_cuda_emulation_settings(*settings)
        (stats.launches, stats.synced_launches, stats.cooperative_launches,
         stats.gemms, stats.half_gemms, stats.mma_tiles) = _C._cuda_emulation_stats()


def cuda_path_plan(mode: str, batch: int, hidden: int, proj_size: int = 0,
                   dtype: torch.dtype = torch.float32, backward: bool = False,
                   device: str = "a100", sms: int | None = None, path: str = "auto",
                   allow_tf32: bool | None = None) -> dict:
    """The CUDA drivers' choice for one layer on an emulated device (``csrc/cuda/plan.h``):
    ``path`` ("persistent" or "alternating"), and the persistent kernel's launch shape
    (``blocks``, ``threads``, ``units`` and ``proj_units`` per block, ``shared_bytes``,
    ``resident_per_sm``, ``fits``) and whether its products run on tensor cores
    (``tensor_cores``: bfloat16 and float16 always, float32 as TF32 where ``allow_tf32``, by
    default ``torch.backends.cuda.matmul.allow_tf32``). A forced persistent path that does not
    fit raises RuntimeError, as the drivers do."""
    if path not in PATHS:
        raise ValueError(f"cuda_path_plan: path must be one of {PATHS}, got {path!r}")
    if device not in DEVICES:
        raise ValueError(f"cuda_path_plan: device must be one of {DEVICES}, got {device!r}")
    if mode not in _C.modes:
        raise ValueError(f"cuda_path_plan: mode must be one of {tuple(_C.modes)}, got {mode!r}")
    element_bytes = torch.empty((), dtype=dtype).element_size()
    if allow_tf32 is None:
        allow_tf32 = torch.backends.cuda.matmul.allow_tf32
    return _C._cuda_plan(mode, batch, hidden, proj_size, element_bytes, backward, device,
                         sms or 0, path=path, allow_tf32=bool(allow_tf32))


__all__ = ["cuda_emulation", "cuda_path_plan", "EmulationStats"]
