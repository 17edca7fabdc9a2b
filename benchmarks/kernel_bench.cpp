/* Single-thread rates of the CPU building blocks, for the README's account of where the time
   goes: bare FMA issue (the core's ceiling), the packed recurrent kernel of csrc/cpu/gemm.h at
   the shapes one thread of a 2-thread team multiplies per step, its packing of W, and one
   single-threaded OpenBLAS call for the same product (what the kernel replaces). Build and run
   from the repository root, with the project's venv; for AVX-512 CPUs:

   OB=$(.venv/bin/python -c "import scipy_openblas32 as o; print(o.get_lib_dir())")
   g++ -O3 -march=x86-64-v4 -mprefer-vector-width=512 -std=c++17 -Icsrc -I$OB/../include \
       benchmarks/kernel_bench.cpp csrc/cpu/blas.cpp csrc/cpu/scratch.cpp -L$OB -lscipy_openblas -Wl,-rpath,$OB \
       -o /tmp/kernel_bench && /tmp/kernel_bench

   and for AVX2 CPUs (the AVX2 build of the kernels) the same with
   -march=x86-64-v3 -DFASTRNN_CPU_ISA=avx2 in place of the two -m flags.
*/
#ifndef FASTRNN_CPU_ISA
#define FASTRNN_CPU_ISA avx512
#endif
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <vector>

#include "cpu/gemm.h"

namespace {

using Clock = std::chrono::steady_clock;
using fastrnn::cpu::FASTRNN_CPU_ISA::RecurrentGemm;
using Simd = fastrnn::cpu::FASTRNN_CPU_ISA::Simd<float>;

// Median seconds of one call of fn over `runs` runs of `calls` calls each.
template <class Fn>
double median_seconds(int runs, int calls, Fn&& fn) {
  std::vector<double> per_call;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = Clock::now();
    for (int i = 0; i < calls; ++i) fn();
    per_call.push_back(std::chrono::duration<double>(Clock::now() - t0).count() / calls);
  }
  std::nth_element(per_call.begin(), per_call.begin() + runs / 2, per_call.end());
  return per_call[runs / 2];
}

// 12 independent chains of FMAs on the widest vectors: enough to cover the latency on two FMA
// ports. (The accumulators are locals of a plain loop: captured by reference in a lambda they
// live in memory.)
__attribute__((noinline)) float fma_chains(long iters) {
  const float one = 0.9999f, tiny = 0.0001f;
  Simd::V acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = Simd::broadcast(&tiny);
  const Simd::V a = Simd::broadcast(&one), b = Simd::broadcast(&tiny);
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int j = 0; j < 12; ++j) acc[j] = Simd::fma(acc[j], a, b);
  }
  float lanes[Simd::kLanes], sum = 0;
  for (int i = 0; i < 12; ++i) {
    Simd::store(lanes, acc[i]);
    for (float x : lanes) sum += x;
  }
  return sum;
}

void fma_peak() {
  constexpr long kIters = 20'000'000;
  float sink = 0;
  const double s = median_seconds(5, 1, [&] { sink += fma_chains(kIters); });
  std::printf("bare FMA issue, %ld-lane vectors: %.1f GFLOP/s (checksum %g)\n",
              static_cast<long>(Simd::kLanes), kIters * 12 * 2.0 * Simd::kLanes / s / 1e9, sink);
}

// C[M, G*units*64] = A[M, K] W^T for `units` unit blocks of every gate: one thread's share.
void kernel(int64_t M, int64_t H, int64_t K, int64_t G, int64_t units) {
  std::mt19937 rng(0);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> w(G * H * K), a(M * K), c(M * G * H);
  for (float& v : w) v = dist(rng);
  for (float& v : a) v = dist(rng);
  const RecurrentGemm<float> gemm(w.data(), G * H, K, /*w_transposed=*/false, G, /*pack=*/true);
  const double pack = median_seconds(9, 1, [&] { gemm.pack_units(0, units); });
  const double flops = 2.0 * M * K * G * units * 64;
  const int calls = std::max<int>(1, static_cast<int>(2e8 / flops));
  const double s = median_seconds(7, calls, [&] {
    gemm.multiply_units(0, units, M, a.data(), K, c.data(), G * H, /*accumulate=*/false);
  });
  // the same product as one OpenBLAS call per gate, as the kernels made before packing
  const double blas = median_seconds(7, calls, [&] {
    for (int64_t g = 0; g < G; ++g) {
      fastrnn::cpu::gemm<float>(false, true, M, units * 64, K, a.data(), K,
                                w.data() + g * H * K, K, 0, c.data() + g * H, G * H);
    }
  });
  std::printf("packed kernel M=%-3ld K=%-4ld %ld gates x %ld units of 64: %7.2f us  %6.1f GFLOP/s"
              "  (its W share %.2f MiB; packing that %.0f us); OpenBLAS %7.2f us %6.1f GFLOP/s\n",
              M, K, G, units, s * 1e6, flops / s / 1e9, G * units * 64 * K * 4 / 1048576.0,
              pack * 1e6, blas * 1e6, flops / blas / 1e9);
}

}  // namespace

int main() {
  fastrnn::cpu::set_blas_threads(1);
  fma_peak();
  // the README cases, one thread's half of the units on 2 threads: H=256 (LSTM: 4 gates,
  // GRU: 3, RNN: 1) at B=1 and B=32, H=512 at B=64, H=1024 at B=256
  kernel(1, 256, 256, 4, 2);
  kernel(32, 256, 256, 4, 2);
  kernel(32, 256, 256, 3, 2);
  kernel(32, 256, 256, 1, 2);
  kernel(64, 512, 512, 4, 4);
  kernel(256, 1024, 1024, 4, 8);
  return 0;
}
