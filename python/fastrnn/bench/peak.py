"""The fp32 GEMM peak a run's GFLOP/s are judged against.

One square GEMM (``size`` cubed, median of ``repeats`` calls after one untimed call). On the CPU,
through both engines fastrnn's kernels use: OpenBLAS from the scipy_openblas32 wheel (called
through ctypes as ``scipy_cblas_sgemm``, with as many OpenBLAS threads as torch has) and
``torch.mm`` (MKL; fastrnn's whole-sequence GEMMs on Intel CPUs); % peak is judged against the
faster. On CUDA, through ``torch.mm`` on the GPU (cuBLAS, no TF32: see workloads.exact_fp32),
timed by CUDA events.
"""

from __future__ import annotations

import ctypes
import glob
import os
import statistics
import time
from dataclasses import dataclass

import torch

from .timing import TIMERS, Timer


@dataclass
class Peak:
    threads: int  # torch.get_num_threads, and OpenBLAS's threads, while measured
    size: int  # M = N = K
    openblas_gflops: float | None  # None when OpenBLAS could not be loaded (see error) or on cuda
    torch_mm_gflops: float
    error: str | None = None
    device: str = "cpu"
    dtype: str = "fp32"  # of the GEMM: fp32, or bf16 (torch.mm only)

    @property
    def gflops(self) -> float | None:
        """What % peak divides by: on cpu the faster of OpenBLAS sgemm and torch.mm (fastrnn
        calls both), torch.mm on cuda."""
        if self.device == "cuda" or self.openblas_gflops is None:
            return self.torch_mm_gflops
        return max(self.openblas_gflops, self.torch_mm_gflops)


def _load_openblas() -> ctypes.CDLL:
    import scipy_openblas32  # the wheel fastrnn's extension links against

    paths = glob.glob(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas*.so*"))
    if not paths:
        raise OSError(f"no libscipy_openblas.so in {scipy_openblas32.get_lib_dir()}")
    return ctypes.CDLL(sorted(paths)[0])


def _median_gflops(call, flop: float, repeats: int, timer: Timer = TIMERS["cpu"]) -> float:
    call()  # untimed: first-touch, thread start-up (cuBLAS's handle on cuda)
    return flop / statistics.median(timer(call) for _ in range(repeats)) / 1e9


def _openblas_gflops(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, threads: int,
                     repeats: int) -> float:
    lib = _load_openblas()
    n = a.shape[0]
    ptr = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    # 101 = CblasRowMajor, 111 = CblasNoTrans
    call = lambda: lib.scipy_cblas_sgemm(101, 111, 111, n, n, n, one, ptr(a), n,  # noqa: E731
                                         ptr(b), n, zero, ptr(c), n)
    before = lib.scipy_openblas_get_num_threads()
    lib.scipy_openblas_set_num_threads(threads)
    try:
        return _median_gflops(call, 2.0 * n ** 3, repeats)
    finally:
        lib.scipy_openblas_set_num_threads(before)  # as fastrnn's kernels expect it


def measure_peak(size: int, repeats: int, settle_s: float = 0.0, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> Peak:
    """The peak on ``device`` at torch's current thread count; ``settle_s`` idle before each
    engine, for the thread pool of whatever ran before to stop spinning (see timing). ``dtype``
    other than float32 (the gpu presets' bfloat16 peak): torch.mm only."""
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(device, dtype)
    b = torch.randn(size, size, generator=gen).to(device, dtype)
    c = torch.empty(size, size, device=device, dtype=dtype)
    flop = 2.0 * size ** 3
    openblas, error = None, None
    if device == "cpu" and dtype == torch.float32:
        time.sleep(settle_s)
        try:
            openblas = _openblas_gflops(a, b, c, threads, repeats)
        except (ImportError, OSError, AttributeError) as e:
            error = f"{type(e).__name__}: {e}"
    time.sleep(settle_s)
    torch_mm = _median_gflops(lambda: torch.mm(a, b, out=c), flop, repeats, TIMERS[device])
    name = {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    return Peak(threads, size, openblas, torch_mm, error, device, name)


def format_peak(peak: Peak) -> str:
    shape = f"{peak.size}^3 {peak.dtype}"
    if peak.device == "cuda":
        return f"torch.mm {peak.torch_mm_gflops:.1f} GFLOP/s ({shape} on the GPU, no TF32)"
    if peak.dtype != "fp32":  # measured through torch.mm only
        return (f"torch.mm {peak.torch_mm_gflops:.1f} GFLOP/s ({shape}, {peak.threads} "
                f"thread{'s' * (peak.threads != 1)})")
    openblas = (f"OpenBLAS sgemm {peak.openblas_gflops:.1f} GFLOP/s"
                if peak.openblas_gflops is not None else f"OpenBLAS unavailable ({peak.error})")
    return (f"{openblas}, torch.mm {peak.torch_mm_gflops:.1f} GFLOP/s "
            f"({shape}, {peak.threads} thread{'s' * (peak.threads != 1)})")
