// The CPU glue: the op kernels for the CPU dispatch key, and the CPU's execution context
// (cpu/context.h): torch's thread pool and the choice of whole-sequence GEMM engine.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdlib>
#if defined(_OPENMP)
#include <omp.h>
#endif
#include <string>
#include <type_traits>

#include "core/checks.h"
#include "core/op_args.h"
#include "cpu/blas.h"
#include "cpu/ops_cpu.h"
#include "cpu/rnn_cpu.h"
#include "cuda/emulator.h"

namespace fastrnn::cpu {
namespace {

// The kernels' threads: torch's intra-op pool, with as many threads as torch.get_num_threads().
// The BLAS itself runs single-threaded inside them, so no second pool of threads competes
// (OpenBLAS's workers spin for a while after each call and slowed torch's next op twofold).
Threads torch_threads() {
  set_blas_threads(1);
  Threads threads;
  threads.count = at::get_num_threads();
  threads.parallel_for = [](int64_t n, const std::function<void(int64_t)>& fn) {
    at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(i);
    });
  };
  // A team is an OpenMP parallel region of its own on the same pool (at::parallel_for may run
  // several tasks on one thread, which a team must not). Inside another region it is one thread.
  threads.parallel_team = [](int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
#if defined(_OPENMP)
    if (!at::in_parallel_region()) {
#pragma omp parallel num_threads(static_cast<int>(n))
      fn(omp_get_thread_num(), omp_get_num_threads());
      return;
    }
#endif
    fn(0, 1);
  };
  return threads;
}

// The whole-sequence GEMMs through at::mm, on torch's threads: MKL in torch's x86 builds.
template <typename scalar_t>
void torch_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const scalar_t* A,
                int64_t lda, const scalar_t* B, int64_t ldb, scalar_t beta, scalar_t* C,
                int64_t ldc) {
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  const auto opts = at::TensorOptions().dtype(c10::CppTypeToScalarType<scalar_t>::value);
  // op(X) as a [rows, cols] view of row-major X (X itself [cols, rows] when transposed)
  const auto view = [&](const scalar_t* x, int64_t rows, int64_t cols, int64_t ld, bool trans) {
    auto* data = const_cast<scalar_t*>(x);  // read only
    return trans ? at::from_blob(data, {cols, rows}, {ld, 1}, opts).t()
                 : at::from_blob(data, {rows, cols}, {ld, 1}, opts);
  };
  const at::Tensor a = view(A, M, K, lda, trans_a), b = view(B, K, N, ldb, trans_b);
  at::Tensor c = at::from_blob(C, {M, N}, {ldc, 1}, opts);
  if (beta == scalar_t(0)) {
    at::mm_out(c, a, b);
  } else {
    at::addmm_out(c, c, a, b, beta, 1);
  }
}

// bfloat16 products through at::mm (oneDNN: AVX512_BF16 or AMX where the CPU has them, float32
// sums), for the weight gradients of bfloat16 layers.
void torch_bf16_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                     const bfloat16* A, int64_t lda, const bfloat16* B, int64_t ldb, float beta,
                     bfloat16* C, int64_t ldc) {
  torch_gemm<at::BFloat16>(trans_a, trans_b, M, N, K, reinterpret_cast<const at::BFloat16*>(A),
                           lda, reinterpret_cast<const at::BFloat16*>(B), ldb,
                           static_cast<at::BFloat16>(beta), reinterpret_cast<at::BFloat16*>(C),
                           ldc);
}

// The engine of the whole-sequence GEMMs: at::mm on Intel CPUs when torch has MKL, else the
// kernels' OpenBLAS (measurements: benchmarks/README.md, "GEMM engines"). FASTRNN_GEMM=torch or
// openblas overrides (tests run both).
bool gemm_through_torch() {
  static const bool through_torch = [] {
    const char* want = std::getenv("FASTRNN_GEMM");
    if (want && *want) {
      const std::string w(want);
      TORCH_CHECK_VALUE(w == "torch" || w == "openblas",
                        "fastrnn: FASTRNN_GEMM must be 'torch' or 'openblas', got '", w, "'");
      return w == "torch";
    }
    return at::hasMKL() && cpu_is_intel();
  }();
  return through_torch;
}

template <typename scalar_t>
Context<scalar_t> context() {
  Context<scalar_t> ctx;
  ctx.threads = torch_threads();
  ctx.sequence_gemm = gemm_through_torch() ? &torch_gemm<scalar_t> : nullptr;
  ctx.bf16_gemm = &torch_bf16_gemm;
  return ctx;
}

RnnResult forward_kernel(const RnnArgs& a) {
  return run_forward(a, [](const auto& p) {
    using scalar_t = typename std::decay_t<decltype(p)>::value_type;
    if (cuda::emulation_enabled()) {
      // fastrnn.cuda_emulation(): the CUDA drivers, on the host; TF32 where torch's CUDA
      // matmuls would use it (torch.backends.cuda.matmul.allow_tf32), as on a GPU
      cuda::emulated_forward(p, allow_tf32());
    } else {
      rnn_forward(p, context<compute_t<scalar_t>>());
    }
  });
}

RnnBackwardResult backward_kernel(const RnnBackwardArgs& a) {
  return run_backward(a, [](const auto& p) {
    using scalar_t = typename std::decay_t<decltype(p.fwd)>::value_type;
    if (cuda::emulation_enabled()) {
      cuda::emulated_backward(p, allow_tf32());
    } else {
      rnn_backward(p, context<compute_t<scalar_t>>());
    }
  });
}

}  // namespace

std::string gemm_engine() { return gemm_through_torch() ? "torch" : "openblas"; }

}  // namespace fastrnn::cpu

TORCH_LIBRARY_IMPL(fastrnn, CPU, m) {
  m.impl("rnn", &fastrnn::rnn_kernel<&fastrnn::cpu::forward_kernel>);
  m.impl("rnn_backward", &fastrnn::rnn_backward_kernel<&fastrnn::cpu::backward_kernel>);
}
