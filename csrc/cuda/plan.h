// Which CUDA path runs a layer: the persistent (cooperative) kernels of cuda/persistent.cuh or
// the alternating path of cuda/driver.h, and the persistent kernels' launch shape. One source of
// the heuristic and of the residency bounds: the driver calls it on a GPU (with CUDA's occupancy
// calculator) and under host emulation (with resident_blocks_per_sm, the calculator's rules, on
// an emulated A100 or H100); _C._cuda_plan exposes it to the tests and to .ci/residency.py, which
// checks the configurations it picks against the built kernels' registers and shared memory.
// Torch-free and host-only.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

#include "cells/common.h"

namespace fastrnn::cuda {

// What a grid's residency depends on, of one device (cudaDeviceProp's fields).
struct DeviceLimits {
  const char* name = "";
  int64_t sms = 0;                        // multiProcessorCount
  int64_t shared_per_block = 0;           // sharedMemPerBlockOptin: dynamic shared memory, bytes
  int64_t shared_per_sm = 0;              // sharedMemPerMultiprocessor
  int64_t shared_reserved_per_block = 0;  // reservedSharedMemPerBlock (1 KiB from sm_80)
  int64_t registers_per_sm = 0;           // regsPerMultiprocessor
  int64_t threads_per_sm = 0;             // maxThreadsPerMultiProcessor
  int64_t blocks_per_sm = 0;              // maxBlocksPerMultiProcessor
  bool cooperative_launch = false;        // cooperativeLaunch
  // The most threads one grid may have: sms * threads_per_sm on a GPU; the host emulator, which
  // runs every thread of a cooperative launch as a host thread at once, allows fewer.
  int64_t max_grid_threads = 0;
};

// The devices the emulator models (CUDA's figures for the A100 SXM, sm_80, and H100 SXM,
// sm_90), and that .ci/residency.py checks the built kernels on.
inline constexpr DeviceLimits kA100{"a100", 108, 166912, 167936, 1024, 65536, 2048, 32, true,
                                    108 * 2048};
inline constexpr DeviceLimits kH100{"h100", 132, 232448, 233472, 1024, 65536, 2048, 32, true,
                                    132 * 2048};

inline DeviceLimits device_limits(std::string_view name) {
  if (name == "a100") return kA100;
  if (name == "h100") return kH100;
  throw std::invalid_argument("fastrnn: unknown emulated device '" + std::string(name) +
                              "' (a100 or h100)");
}

// The persistent kernels' launch bounds (__launch_bounds__(kPersistentMaxThreads,
// kPersistentMinBlocksPerSm) in cuda/exec.h): ptxas keeps them within
// registers_per_sm / (kPersistentMaxThreads * kPersistentMinBlocksPerSm) registers per thread,
// the bound the emulated residency assumes and .ci/residency.py checks against cuobjdump.
inline constexpr int64_t kPersistentMaxThreads = 256;
inline constexpr int64_t kPersistentMinBlocksPerSm = 2;
inline constexpr int64_t kPersistentMaxRegisters =
    65536 / (kPersistentMaxThreads * kPersistentMinBlocksPerSm);
// Static shared memory the persistent kernels may have besides the dynamic (cuobjdump -res-usage
// of the nvcc 13.0 build: none on sm_80, 1 KiB on sm_90, which the source does not declare): it
// comes out of the same per-block limit. .ci/residency.py checks the built kernels stay within it.
inline constexpr int64_t kPersistentStaticShared = 1024;
// Auto picks the persistent path up to this batch: beyond it a block's per-step products (its
// units' rows times B rows of h, FMA from shared memory) outgrow the one cuBLAS GEMM of the
// alternating path. Not yet measured on a GPU (no GPU figures: benchmarks/README.md); the
// `--preset gpu` benchmark is where it gets set.
inline constexpr int64_t kPersistentMaxBatch = 32;

// Blocks of `threads` threads with `registers` registers per thread and `shared_bytes` of
// shared memory (dynamic + static) that one SM holds at once: the occupancy calculator's rules
// for sm_80 / sm_90 (registers allocated per warp in units of 256, shared memory in units of
// 128 bytes plus the runtime's reserve per block).
inline int64_t resident_blocks_per_sm(const DeviceLimits& d, int64_t threads, int64_t shared_bytes,
                                      int64_t registers) {
  if (threads <= 0 || threads > 1024 || shared_bytes > d.shared_per_block) return 0;
  const int64_t warps = (threads + 31) / 32;
  const int64_t warp_registers = (registers * 32 + 255) / 256 * 256;
  const int64_t shared = (shared_bytes + 127) / 128 * 128 + d.shared_reserved_per_block;
  int64_t n = std::min(d.blocks_per_sm, d.threads_per_sm / (warps * 32));
  if (warp_registers > 0) n = std::min(n, d.registers_per_sm / warp_registers / warps);
  if (shared > 0) n = std::min(n, d.shared_per_sm / shared);
  return n;
}

// One layer's sizes as the persistent kernels see them.
struct PersistentSizes {
  int64_t B = 0, H = 0, P = 0, G = 0;  // batch, hidden, h size (P < H: projection), gates
  int64_t element_bytes = 0;           // of what shared memory holds: the storage type, or with
                                       // tensor cores the products' operand type
  bool project = false;                // LSTM projection (P < H)
  bool backward = false;               // the backward kernel (else forward)
  bool tensor_cores = false;           // the products as wmma tiles (persistent_tensor_cores)
};

// Whether the persistent kernels' products run on tensor cores (ctx.mma_tile of cuda/exec.h):
// for bfloat16 and float16 (16-bit operands, float32 accumulation) always; for float32 as TF32
// only where torch allows it for matmuls (torch.backends.cuda.matmul.allow_tf32, off by
// default), else float32 FMA; float64 never. operand_bytes: 2 for the 16-bit types, 4, 8.
inline bool persistent_tensor_cores(int64_t operand_bytes, bool allow_tf32) {
  return operand_bytes == 2 || (operand_bytes == 4 && allow_tf32);
}

// The tensor-core kernels' tiles: 16 x 16 accumulator tiles, the step's batch rows padded to 16
// (zeros), the products' k in chunks of kTileChunk staged in shared memory.
inline constexpr int64_t kTile = 16;
inline constexpr int64_t kTileChunk = 128;

FASTRNN_HD constexpr int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// The tensor-core kernels' shared memory (cuda/persistent.cuh), in elements of the operand type
// but for the accumulators: the first product's weight rows [w_rows, w_ld] (W_hh rows forward,
// W_hh columns backward), the projection's [w2_rows, w2_ld] (W_hr rows or columns; none without
// one), both padded with zeros to multiples of 16 rows and columns (whole wmma tiles); the
// staged chunk of the left operand [kTile, kTileChunk]; then float [kTile, acc_ld], the
// accumulator tiles. Every region a multiple of 32 bytes, as wmma's loads want.
struct TileLayout {
  int64_t w_rows = 0, w_ld = 0, w2_rows = 0, w2_ld = 0, acc_ld = 0;
  FASTRNN_HD int64_t w2_offset() const { return w_rows * w_ld; }
  FASTRNN_HD int64_t stage_offset() const { return w2_offset() + w2_rows * w2_ld; }
  FASTRNN_HD int64_t acc_byte_offset(int64_t operand_bytes) const {
    return (stage_offset() + kTile * kTileChunk) * operand_bytes;
  }
  FASTRNN_HD int64_t bytes(int64_t operand_bytes) const {
    return acc_byte_offset(operand_bytes) + kTile * acc_ld * 4;
  }
};

// h_units: the h units of a block (proj_units; units without a projection).
FASTRNN_HD TileLayout tile_layout(int64_t G, int64_t H, int64_t P, bool project,
                                  bool backward, int64_t units, int64_t h_units) {
  TileLayout t;
  t.w_rows = round_up(backward ? h_units : G * units, kTile);
  t.w_ld = round_up(backward ? G * H : P, kTile);
  if (project) {
    t.w2_rows = round_up(backward ? units : h_units, kTile);
    t.w2_ld = round_up(backward ? P : H, kTile);
  }
  t.acc_ld = t.w_rows > t.w2_rows ? t.w_rows : t.w2_rows;
  return t;
}

// How a persistent kernel is launched: `blocks` blocks, block k owning hidden units
// [k * units, (k + 1) * units) and, with a projection, h units [k * proj_units, ...).
struct PersistentPlan {
  int64_t blocks = 0, threads = 0, units = 0, proj_units = 0, shared_bytes = 0;
  int64_t resident_per_sm = 0;  // blocks of this shape one SM holds
  bool fits = false;            // the grid is co-resident: a cooperative launch can run it
  bool tensor_cores = false;    // its products are wmma tiles (PersistentSizes::tensor_cores)
};

// The weights a block keeps in shared memory for all T steps, bytes. Forward: its units' rows of
// W_hh (all G gates, P wide) and its h units' rows of W_hr (H wide). Backward: the transposes,
// its h units' columns of W_hh (G*H tall) and its units' columns of W_hr (P tall).
// With tensor cores: tile_layout's, rows and columns padded to whole tiles, plus the staged
// operand and the accumulators.
inline int64_t persistent_shared_bytes(const PersistentSizes& s, int64_t units,
                                       int64_t proj_units) {
  const int64_t h_units = s.project ? proj_units : units;
  if (s.tensor_cores) {
    return tile_layout(s.G, s.H, s.P, s.project, s.backward, units, h_units)
        .bytes(s.element_bytes);
  }
  const int64_t elements = s.backward
                               ? h_units * s.G * s.H + (s.project ? units * s.P : 0)
                               : s.G * units * s.P + (s.project ? h_units * s.H : 0);
  return elements * s.element_bytes;
}

// The launch shape: the H units spread over the SMs (one block each, so that a block has all
// of an SM's shared memory), a warp or more of threads per block, up to one per (row, gate,
// unit) of the per-step product, at most kPersistentMaxThreads. resident(threads, shared_bytes)
// is the device's blocks per SM for the kernel (CUDA's occupancy calculator on a GPU).
template <class Resident>
PersistentPlan plan_persistent(const PersistentSizes& s, const DeviceLimits& d,
                               Resident&& resident) {
  PersistentPlan p;
  p.tensor_cores = s.tensor_cores;
  if (s.H <= 0 || s.P <= 0 || d.sms <= 0) return p;
  p.units = (s.H + d.sms - 1) / d.sms;
  p.blocks = (s.H + p.units - 1) / p.units;
  p.proj_units = s.project ? (s.P + p.blocks - 1) / p.blocks : p.units;
  const int64_t work = std::max<int64_t>(s.B, 1) * s.G * p.units;
  p.threads = std::clamp<int64_t>((work + 31) / 32 * 32, 32, kPersistentMaxThreads);
  p.shared_bytes = persistent_shared_bytes(s, p.units, p.proj_units);
  if (!d.cooperative_launch || p.shared_bytes + kPersistentStaticShared > d.shared_per_block ||
      p.blocks * p.threads > d.max_grid_threads) {
    return p;
  }
  p.resident_per_sm = resident(p.threads, p.shared_bytes);
  p.fits = p.blocks <= d.sms * p.resident_per_sm;
  return p;
}

// FASTRNN_CUDA_PATH=auto|persistent|alternating, or a test's cuda_emulation(path=...).
enum class PathRequest { kAuto, kPersistent, kAlternating };

inline PathRequest parse_path(std::string_view name) {
  if (name.empty() || name == "auto") return PathRequest::kAuto;
  if (name == "persistent") return PathRequest::kPersistent;
  if (name == "alternating") return PathRequest::kAlternating;
  throw std::invalid_argument("fastrnn: FASTRNN_CUDA_PATH (or cuda_emulation's path) is '" +
                              std::string(name) + "'; expected auto, persistent or alternating");
}

inline PathRequest path_from_environment() {
  const char* name = std::getenv("FASTRNN_CUDA_PATH");
  return parse_path(name ? name : "");
}

// Whether a layer runs the persistent path. Auto: when its grid is co-resident and the batch is
// small (kPersistentMaxBatch), else the alternating path. Forced persistent where the grid
// cannot be co-resident: an error (a cooperative launch of it would fail).
inline bool use_persistent(PathRequest request, const PersistentSizes& s, const PersistentPlan& p,
                           const DeviceLimits& d) {
  switch (request) {
    case PathRequest::kAlternating:
      return false;
    case PathRequest::kAuto:
      return p.fits && s.B <= kPersistentMaxBatch;
    case PathRequest::kPersistent:
      break;
  }
  if (!p.fits) {
    throw std::runtime_error(
        "fastrnn: the persistent CUDA path was forced (FASTRNN_CUDA_PATH=persistent or "
        "cuda_emulation(path='persistent')), but its " + std::string(s.backward ? "backward" : "forward") +
        " kernel cannot be co-resident on " + d.name + " (" + std::to_string(d.sms) +
        " SMs): B=" + std::to_string(s.B) + " H=" + std::to_string(s.H) + " P=" +
        std::to_string(s.P) + " needs " + std::to_string(p.blocks) + " blocks of " +
        std::to_string(p.threads) + " threads and " + std::to_string(p.shared_bytes) +
        " bytes of shared memory (at most " + std::to_string(d.shared_per_block) + "), " +
        std::to_string(p.resident_per_sm) +
        " per SM fit; use FASTRNN_CUDA_PATH=auto or alternating");
  }
  return true;
}

}  // namespace fastrnn::cuda
