// The two interfaces the CUDA drivers (cuda/driver.h) and kernel bodies (cuda/kernels.cuh) are
// written against, so that one source runs on a GPU and, under host emulation
// (cuda/emulator.cpp), on the CPU where the tests check it.
//
// A kernel is a functor: `template <class Ctx> FASTRNN_HD void operator()(const Ctx& ctx) const`
// run by every thread of a launch, and `static constexpr bool kSyncs`: whether it calls
// ctx.sync() (the emulator then runs a block's threads at once, with a real barrier). Ctx:
//   ctx.block(), ctx.blocks()        blockIdx.x, gridDim.x
//   ctx.row()                        blockIdx.y (the batch row of a per-row launch)
//   ctx.thread(), ctx.threads()      threadIdx.x, blockDim.x
//   ctx.sync()                       __syncthreads()
//   ctx.grid_sync()                  every thread of the grid meets (cooperative_groups'
//                                    this_grid().sync()); only in a cooperative launch
//   ctx.template shared<T>()         the block's dynamic shared memory, launch's shared_bytes
//   ctx.template mma_tile<Op>(acc, ld_acc, a, lda, b, ldb, k)
//                                    a warp's tensor-core tile product (nvcuda::wmma): the
//                                    16 x 16 float tile acc (row-major, ld_acc) += A B, A
//                                    16 x k (row-major: a[m * lda + kk]), B k x 16 column-major
//                                    (b[n * ldb + kk]); Op bfloat16 or float16 (m16n16k16) or
//                                    float (TF32, m16n16k8: the operands rounded to TF32 as
//                                    __float_to_tf32 does); float32 accumulation. Warp-collective:
//                                    all 32 threads of a warp call it with the same arguments (the
//                                    emulator checks); k a multiple of 16, lda and ldb multiples
//                                    of 16 bytes, ld_acc of 4, pointers 32-byte aligned (wmma's
//                                    rules); only in kernels with kSyncs
//
// An Exec (the driver's template parameter) runs kernels and products on one stream:
//   exec.launch(kernel, Launch)      Launch: blocks (x), rows (y), threads per block, shared
//                                    bytes
//   exec.launch_cooperative(kernel, Launch)
//                                    all blocks co-resident, so that ctx.grid_sync() works
//                                    (cudaLaunchCooperativeKernel; rows 1); the caller has
//                                    checked residency with cuda/plan.h
//   exec.template resident_blocks<Kernel>(threads, shared_bytes)
//                                    blocks of a cooperative Kernel one SM holds
//   exec.limits()                    the device's DeviceLimits (cuda/plan.h)
//   exec.requested_path()            the PathRequest of FASTRNN_CUDA_PATH (or the emulation's)
//   exec.gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc)
//                                    cuBLAS's convention exactly: column-major, C[m, n] =
//                                    op(A)[m, k] op(B)[k, n] + beta C, alpha 1; A, B, C and
//                                    beta float or double (cublasSgemm, cublasDgemm), or A and B
//                                    both bfloat16 or both float16 and C and beta float: the
//                                    products of the 16-bit values summed in float32
//                                    (cublasGemmEx, CUBLAS_COMPUTE_32F)
//   exec.template buffer<T>(n)       n uninitialised elements of device memory (.get())
//   exec.copy(dst, src, n)           device to device, n elements
//   exec.to_device(dst, src, n)      host to device (src on the host), n elements
#pragma once

#include <cstdint>

#include "cells/common.h"
#include "cuda/plan.h"

#if defined(__CUDACC__)
#include <cooperative_groups.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <type_traits>

#include "cells/half.h"
#endif

namespace fastrnn::cuda {

struct Launch {
  int64_t blocks = 1;   // gridDim.x
  int64_t rows = 1;     // gridDim.y
  int64_t threads = 1;  // blockDim.x
  int64_t shared_bytes = 0;
};

inline constexpr int64_t kThreadsPerBlock = 128;

// One thread per (row, unit) of `units` units and `rows` rows.
inline Launch per_unit(int64_t units, int64_t rows) {
  Launch l;
  l.threads = kThreadsPerBlock;
  l.blocks = (units + l.threads - 1) / l.threads;
  l.rows = rows;
  return l;
}

#if defined(__CUDACC__)
// The device's Ctx.
struct DeviceCtx {
  __device__ int64_t block() const { return blockIdx.x; }
  __device__ int64_t blocks() const { return gridDim.x; }
  __device__ int64_t row() const { return blockIdx.y; }
  __device__ int64_t thread() const { return threadIdx.x; }
  __device__ int64_t threads() const { return blockDim.x; }
  __device__ void sync() const { __syncthreads(); }
  __device__ void grid_sync() const { cooperative_groups::this_grid().sync(); }
  template <typename T>
  __device__ T* shared() const {
    // aligned for wmma's 32-byte loads of the tensor-core kernels' regions
    extern __shared__ __align__(128) unsigned char fastrnn_shared[];
    return reinterpret_cast<T*>(fastrnn_shared);
  }
  template <typename Op>
  __device__ void mma_tile(float* acc, int64_t ld_acc, const Op* a, int64_t lda, const Op* b,
                           int64_t ldb, int64_t k) const {
    namespace wmma = nvcuda::wmma;
    constexpr bool kTf32 = std::is_same_v<Op, float>;
    constexpr int kK = kTf32 ? 8 : 16;
    // the fragments' element type, and the CUDA type of Op's bits (same layout)
    using Frag = std::conditional_t<kTf32, wmma::precision::tf32,
                                    std::conditional_t<std::is_same_v<Op, bfloat16>,
                                                       __nv_bfloat16, __half>>;
    using Bits = std::conditional_t<kTf32, float, Frag>;
    const Bits* ab = reinterpret_cast<const Bits*>(a);
    const Bits* bb = reinterpret_cast<const Bits*>(b);
    wmma::fragment<wmma::accumulator, 16, 16, kK, float> c;
    wmma::load_matrix_sync(c, acc, static_cast<unsigned>(ld_acc), wmma::mem_row_major);
    for (int64_t k0 = 0; k0 < k; k0 += kK) {
      wmma::fragment<wmma::matrix_a, 16, 16, kK, Frag, wmma::row_major> fa;
      wmma::fragment<wmma::matrix_b, 16, 16, kK, Frag, wmma::col_major> fb;
      wmma::load_matrix_sync(fa, ab + k0, static_cast<unsigned>(lda));
      wmma::load_matrix_sync(fb, bb + k0, static_cast<unsigned>(ldb));
      if constexpr (kTf32) {
        for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
        for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
      }
      wmma::mma_sync(c, fa, fb, c);
    }
    wmma::store_matrix_sync(acc, c, static_cast<unsigned>(ld_acc), wmma::mem_row_major);
  }
};

template <class Kernel>
__global__ void run_kernel(Kernel kernel) {
  kernel(DeviceCtx{});
}

// A cooperative kernel: launch bounds that keep its registers within what cuda/plan.h assumes.
template <class Kernel>
__global__ void __launch_bounds__(kPersistentMaxThreads, kPersistentMinBlocksPerSm)
    run_cooperative_kernel(Kernel kernel) {
  kernel(DeviceCtx{});
}
#endif

}  // namespace fastrnn::cuda
