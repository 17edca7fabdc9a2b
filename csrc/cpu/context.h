// The CPU's execution context, passed beside the device-neutral params (core/params.h): the
// threads the drivers spread work over and the engine of the whole-sequence GEMMs. The CPU glue
// (cpu/ops_cpu.cpp) fills it from torch's thread pool and its choice of engine.
#pragma once

#include <cstdint>
#include <functional>

#include "cells/half.h"

namespace fastrnn::cpu {

// How the drivers spread work over threads, two ways:
// - run(n, fn) calls fn(0) .. fn(n - 1), each once, on up to `count` threads, and returns when
//   all have returned;
// - team(n, fn) calls fn(rank, size) on `size` threads at once (1 <= size <= n, rank 0 .. size-1;
//   size may be less than asked, e.g. inside another parallel region), so the calls may wait for
//   each other (cpu/barrier.h): the per-step loops of a layer run as one team.
// Without hooks, run's tasks run in turn and a team has one thread.
struct Threads {
  int64_t count = 1;
  std::function<void(int64_t, const std::function<void(int64_t)>&)> parallel_for;
  std::function<void(int64_t, const std::function<void(int64_t, int64_t)>&)> parallel_team;

  void run(int64_t n, const std::function<void(int64_t)>& fn) const {
    if (parallel_for && n > 1) {
      parallel_for(n, fn);
    } else {
      for (int64_t i = 0; i < n; ++i) fn(i);
    }
  }

  void team(int64_t n, const std::function<void(int64_t, int64_t)>& fn) const {
    if (parallel_team && n > 1) {
      parallel_team(n, fn);
    } else {
      fn(0, 1);
    }
  }
};

// An engine for the whole-sequence GEMMs (W_ih x of all rows; backward's input and weight
// gradients), which the drivers call on the calling thread, outside the teams, and which
// threads itself: row-major C[M, N] = op(A) op(B) + beta * C, op(X) = X^T when trans_X, leading
// dimensions in elements. nullptr: the drivers' own (cpu/blas.h, split over the threads).
template <typename scalar_t>
using GemmFn = void (*)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                        const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                        scalar_t beta, scalar_t* C, int64_t ldc);

// The whole-sequence products of bfloat16 operands (the weight gradients of bfloat16 layers):
// C = op(A) op(B) + beta * C, sums in float32, C rounded to bfloat16.
using Bf16GemmFn = void (*)(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                            const bfloat16* A, int64_t lda, const bfloat16* B, int64_t ldb,
                            float beta, bfloat16* C, int64_t ldc);

// scalar_t: the compute type (the drivers' products of a 16-bit type run in it).
template <typename scalar_t>
struct Context {
  Threads threads;
  GemmFn<scalar_t> sequence_gemm = nullptr;
  // nullptr: the bfloat16 drivers make those products in float32 on float32 copies
  Bf16GemmFn bf16_gemm = nullptr;
};

}  // namespace fastrnn::cpu
