// The CPU GEMM the drivers call: row-major, C[M, N] = op(A) op(B) + beta * C, with
// op(X) = X^T when trans_X. Leading dimensions in elements. The engine behind it is OpenBLAS
// (the scipy-openblas32 wheel), called single-threaded on the kernels' threads; the glue may give
// the whole-sequence products another engine (GemmFn in cpu/context.h; README, "BLAS and threads").
#pragma once

#include <cstdint>

namespace fastrnn::cpu {

template <typename scalar_t>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const scalar_t* A,
          int64_t lda, const scalar_t* B, int64_t ldb, scalar_t beta, scalar_t* C, int64_t ldc);

// Threads the BLAS may use for one call (the drivers call it from their own threads with 1).
void set_blas_threads(int threads);

}  // namespace fastrnn::cpu
