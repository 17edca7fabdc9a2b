#include "cpu/blas.h"

#include <atomic>

#include <cblas.h>  // scipy-openblas32: every symbol carries the scipy_ prefix

namespace fastrnn::cpu {

namespace {
CBLAS_TRANSPOSE op(bool trans) { return trans ? CblasTrans : CblasNoTrans; }
}  // namespace

// Sizes fit blasint (int32): the glue rejects larger tensors.
template <>
void gemm<float>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  scipy_cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), M, N, K, float(1), A, lda, B, ldb,
                    beta, C, ldc);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const double* A,
                 int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  scipy_cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), M, N, K, double(1), A, lda, B, ldb,
                    beta, C, ldc);
}

void set_blas_threads(int threads) {
  static std::atomic<int> current{-1};  // setting the same count again is not free in OpenBLAS
  if (threads != current.load()) {
    scipy_openblas_set_num_threads(threads);
    current.store(threads);
  }
}

}  // namespace fastrnn::cpu
