"""fp32 GEMM rate of one engine at the shapes of the LSTM 100x32x256 whole-sequence products, on
2 threads: `python benchmarks/gemm_engines.py torch|openblas`. One engine per process, since
OpenBLAS's spinning workers slow the next torch.mm when both run in one process; run the two
alternately, a few times each.

Shapes (M x N x K, row-major C = op(A) op(B)): the input projection x W_ih^T (3200x1024x256,
B transposed), the input gradient dgates W_ih (3200x256x1024), the weight gradient dgates^T x
(1024x256x3200, A transposed), and a square 1024^3 for reference.
"""

import ctypes
import glob
import statistics
import sys
import time

import scipy_openblas32
import torch

SHAPES = ((3200, 1024, 256, False, True), (3200, 256, 1024, False, False),
          (1024, 256, 3200, True, False), (1024, 1024, 1024, False, False))


def main(engine: str) -> None:
    torch.set_num_threads(2)
    lib = ctypes.CDLL(glob.glob(scipy_openblas32.get_lib_dir() + "/libscipy_openblas*.so*")[0])
    lib.scipy_openblas_set_num_threads(2)
    rates = []
    for M, N, K, trans_a, trans_b in SHAPES:
        a_stored = torch.randn(K, M) if trans_a else torch.randn(M, K)
        b_stored = torch.randn(N, K) if trans_b else torch.randn(K, N)
        a = a_stored.t() if trans_a else a_stored
        b = b_stored.t() if trans_b else b_stored
        c = torch.empty(M, N)
        if engine == "torch":
            def call():
                torch.mm(a, b, out=c)
        else:
            ptr = lambda t: ctypes.c_void_p(t.data_ptr())  # noqa: E731
            # 101 row-major, 111 no transpose, 112 transpose
            args = (101, 112 if trans_a else 111, 112 if trans_b else 111, M, N, K,
                    ctypes.c_float(1), ptr(a_stored), M if trans_a else K, ptr(b_stored),
                    K if trans_b else N, ctypes.c_float(0), ptr(c), N)

            def call():
                lib.scipy_cblas_sgemm(*args)
        times = []
        for i in range(33):
            start = time.perf_counter()
            call()
            if i >= 3:
                times.append(time.perf_counter() - start)
        rates.append(f"{M}x{N}x{K} {2 * M * N * K / statistics.median(times) / 1e9:.0f}")
    print(f"{engine:8s} GFLOP/s: " + ", ".join(rates))


if __name__ == "__main__":
    main(sys.argv[1])
