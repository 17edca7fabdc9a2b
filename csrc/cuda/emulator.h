// Host emulation of the CUDA drivers: the very driver (cuda/driver.h) and kernel bodies
// (cuda/kernels.cuh) that the CUDA build runs on a GPU, run on CPU memory, so that the tests
// check them on machines without a GPU (fastrnn.cuda_emulation()).
#pragma once

#include <cstdint>
#include <string>

#include "core/params.h"
#include "cuda/plan.h"

namespace fastrnn::cuda {

// Whether the ops on CPU tensors run the emulated CUDA drivers instead of the CPU drivers.
bool emulation_enabled();
void set_emulation(bool enabled);

// What the emulated calls did since reset_emulation_stats(): kernel launches (those with block
// barriers among them, and the cooperative ones: the persistent path), GEMM calls (those with
// bfloat16 or float16 operands among them: the 16-bit stacks' products) and tensor-core tile
// products (ctx.mma_tile calls of a warp: the persistent path's products on tensor cores).
struct EmulationStats {
  int64_t launches = 0, synced_launches = 0, cooperative_launches = 0, gemms = 0, half_gemms = 0,
          mma_tiles = 0;
};
EmulationStats emulation_stats();
void reset_emulation_stats();

// The emulation's choices: the CUDA path ("" for FASTRNN_CUDA_PATH, else as it), the emulated
// device (cuda/plan.h's "a100" or "h100") and its SM count (0: the device's own; fewer SMs give
// the tests blocks of several units at small sizes). Bad names throw std::invalid_argument.
struct EmulationSettings {
  std::string path, device = "a100";
  int64_t sms = 0;
};
void set_emulation_settings(const EmulationSettings& settings);
EmulationSettings emulation_settings();
DeviceLimits emulated_device();  // the settings' device, as the emulated drivers see it

// allow_tf32: torch.backends.cuda.matmul.allow_tf32 (float32 products on tensor cores as TF32).
template <typename scalar_t>
void emulated_forward(const RnnParams<scalar_t>& p, bool allow_tf32);
template <typename scalar_t>
void emulated_backward(const RnnGradParams<scalar_t>& p, bool allow_tf32);

// For the tests: the emulated ctx.mma_tile (cuda/exec.h) on one warp, acc[16, 16] += a b with
// a [16, k] and b [16, k] (b's rows are B's columns), Op float (TF32), bfloat16 or float16; only
// the first `lanes` threads of the warp call it, which for lanes < 32 raises std::logic_error.
template <typename Op>
void emulated_mma_tile(const Op* a, const Op* b, float* acc, int64_t k, int64_t lanes);

// For the tests: the emulated exec.gemm (cuda/exec.h, cuBLAS's column-major convention), In and
// T float or double, or In bfloat16 or float16 with T float.
template <typename In, typename T>
void emulated_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const In* A,
                   int64_t lda, const In* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace fastrnn::cuda
