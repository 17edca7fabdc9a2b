// The host Exec of cuda/exec.h. Faithful where bugs hide:
// - a kernel that synchronises (kSyncs) runs each block's threads as real threads meeting at a
//   real barrier (one host thread per thread index, walking the blocks in order), so a missing
//   ctx.sync() gives wrong sums (and a ThreadSanitizer report); the others run their threads one
//   after another, which gives the same results for kernels without sharing between threads;
// - shared memory is a heap block of exactly the launch's shared_bytes, so AddressSanitizer
//   sees an overrun;
// - gemm follows cuBLAS's column-major convention exactly (and reads C only when beta != 0), so
//   a driver that swaps operands or leading dimensions gets wrong results. Its sums run in k
//   order in C's type; with bfloat16 or float16 operands (cublasGemmEx's, C float32) each
//   product of two 16-bit values is exact in float32 (8 + 8 or 11 + 11 significant bits; short
//   of float32's overflow and underflow, which only bfloat16's range reaches) and the sums are
//   float32, as CUBLAS_COMPUTE_32F's are: the emulation rounds where the GPU does and differs
//   from it in the order of the float32 additions (cuBLAS's tensor-core tiles add in another);
// - a cooperative launch runs every thread of every block at once as host threads, with a real
//   barrier per block (ctx.sync) and one for the grid (ctx.grid_sync), on an emulated device
//   (an A100 unless a test picks another, cuda/plan.h) whose residency the driver checks as on
//   a GPU; the emulator runs at most kMaxGridThreads host threads at once, so larger grids go
//   to the alternating path (or, forced persistent, raise);
// - ctx.mma_tile, the warp's tensor-core tile product, is warp-collective as on the device: each
//   of a warp's 32 threads computes its share of the tile (8 of its 256 elements, as a lane holds
//   8 of an accumulator fragment) and records the call; at every block and grid barrier and at
//   the end of a launch the emulator checks that the 32 threads of every warp made the same calls
//   with the same arguments, and the launch raises if not (on a GPU a warp whose threads do not
//   all arrive hangs or computes garbage). Operands are rounded as the tensor cores see them:
//   bfloat16 and float16 exactly (their products are exact in float32), float32 to TF32 by
//   to_tf32 (round to nearest, ties away from zero: cvt.rna.tf32.f32, which __float_to_tf32
//   is); the products are summed in float32 in k order onto the tile. The hardware adds each
//   k-step's products in another order and internal precision: results differ from a GPU's by
//   float32 rounding, not by the operands' rounding, which is what the tests budget for.
#include "cuda/emulator.h"

#include <atomic>
#include <barrier>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "core/stack.h"
#include "cpu/scratch.h"
#include "cuda/driver.h"
#include "cuda/through_float.h"

namespace fastrnn::cuda {
namespace {

std::atomic<bool> g_enabled{false};
std::atomic<int64_t> g_launches{0}, g_synced_launches{0}, g_cooperative_launches{0}, g_gemms{0},
    g_half_gemms{0}, g_mma_tiles{0};

inline constexpr int64_t kMaxGridThreads = 4096;

// The emulation's settings (cuda_emulation(path=..., device=..., sms=...)).
std::mutex g_settings_mutex;
std::string g_path;  // "": FASTRNN_CUDA_PATH
std::string g_device = "a100";
int64_t g_sms = 0;  // 0: the device's own

inline constexpr int64_t kWarp = 32;

// float -> TF32 as cvt.rna.tf32.f32 (__float_to_tf32): 10 mantissa bits, round to nearest with
// ties away from zero (adding half of the dropped 13 bits to the magnitude), NaN and inf kept;
// a float with its low 13 bits zero.
float to_tf32(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & ~0x1fffu;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <typename Op>
float mma_operand(Op x) {
  if constexpr (std::is_same_v<Op, float>) {
    return to_tf32(x);
  } else {
    return float(x);  // bfloat16, float16: exact
  }
}

// What one thread did of the warp-collective calls since its warp was last checked.
struct LaneCalls {
  int64_t calls = 0;
  uint64_t arguments = 0;  // a hash of the calls' arguments, in order
  std::string broken;      // a call against wmma's rules (raised after the launch, as a
                           // thread of it cannot throw)
};

// The lanes of one launch's blocks and the first misuse found (checked where every thread of the
// checked blocks waits: a barrier's completion, or after the launch).
struct WarpCheck {
  LaneCalls* lanes;  // [blocks, threads]
  int64_t threads, first_block, blocks;
  std::string* error;  // the first misuse, "" if none; written only while the checked wait

  void operator()() const noexcept {
    for (int64_t b = first_block; b < first_block + blocks; ++b) {
      for (int64_t t = 0; t < threads; ++t) {
        LaneCalls& lane = lanes[b * threads + t];
        const LaneCalls& first = lanes[b * threads + t / kWarp * kWarp];
        if (error->empty() && !lane.broken.empty()) *error = lane.broken;
        if (error->empty() && (lane.calls != first.calls || lane.arguments != first.arguments)) {
          *error = "fastrnn emulator: warp " + std::to_string(t / kWarp) + " of block " +
                   std::to_string(b) + ": thread " + std::to_string(t) + " made " +
                   std::to_string(lane.calls) + " mma_tile calls, thread " +
                   std::to_string(t / kWarp * kWarp) + " " + std::to_string(first.calls) +
                   " (or other arguments): a warp-collective call needs all 32 threads of "
                   "the warp, with the same arguments";
        }
      }
    }
    for (int64_t b = first_block; b < first_block + blocks; ++b) {
      for (int64_t t = 0; t < threads; ++t) lanes[b * threads + t] = LaneCalls{};
    }
  }
};
using Barrier = std::barrier<WarpCheck>;

struct HostCtx {
  int64_t block_, blocks_, row_, thread_, threads_;
  Barrier* barrier_;  // nullptr: the kernel does not synchronise
  unsigned char* shared_;
  Barrier* grid_ = nullptr;  // a cooperative launch's, else nullptr
  LaneCalls* lane_ = nullptr;  // this thread's record of warp-collective calls

  int64_t block() const { return block_; }
  int64_t blocks() const { return blocks_; }
  int64_t row() const { return row_; }
  int64_t thread() const { return thread_; }
  int64_t threads() const { return threads_; }
  void sync() const {
    if (!barrier_) throw std::logic_error("fastrnn emulator: sync() in a kernel without kSyncs");
    barrier_->arrive_and_wait();
  }
  void grid_sync() const {
    if (!grid_) throw std::logic_error("fastrnn emulator: grid_sync() outside a cooperative launch");
    grid_->arrive_and_wait();
  }
  template <typename T>
  T* shared() const {
    return reinterpret_cast<T*>(shared_);
  }
  template <typename Op>
  void mma_tile(float* acc, int64_t ld_acc, const Op* a, int64_t lda, const Op* b, int64_t ldb,
                int64_t k) const {
    static_assert(std::is_same_v<Op, float> || std::is_same_v<Op, bfloat16> ||
                  std::is_same_v<Op, float16>);
    if (!lane_) throw std::logic_error("fastrnn emulator: mma_tile in a kernel without kSyncs");
    constexpr int64_t bytes = sizeof(Op);
    if (threads_ % kWarp != 0 || k % 16 != 0 || lda * bytes % 16 != 0 ||
        ldb * bytes % 16 != 0 || ld_acc % 4 != 0) {
      lane_->broken = "fastrnn emulator: mma_tile: k " + std::to_string(k) + ", lda " +
                      std::to_string(lda) + ", ldb " + std::to_string(ldb) + ", ld_acc " +
                      std::to_string(ld_acc) + ", " + std::to_string(threads_) +
                      " threads a block break wmma's rules";
      return;
    }
    for (const uint64_t x : {uint64_t(reinterpret_cast<uintptr_t>(acc)), uint64_t(ld_acc),
                             uint64_t(reinterpret_cast<uintptr_t>(a)), uint64_t(lda),
                             uint64_t(reinterpret_cast<uintptr_t>(b)), uint64_t(ldb),
                             uint64_t(k)}) {
      lane_->arguments = (lane_->arguments ^ x) * 0x100000001b3ull;  // FNV-1a's step
    }
    ++lane_->calls;
    const int64_t lane = thread_ % kWarp;
    if (lane == 0) g_mma_tiles.fetch_add(1, std::memory_order_relaxed);
    // this lane's 8 of the tile's 256 elements
    for (int64_t e = lane * 8; e < lane * 8 + 8; ++e) {
      const int64_t m = e / 16, n = e % 16;
      float sum = acc[m * ld_acc + n];
      for (int64_t kk = 0; kk < k; ++kk) {
        sum += mma_operand(a[m * lda + kk]) * mma_operand(b[n * ldb + kk]);
      }
      acc[m * ld_acc + n] = sum;
    }
  }
};

class HostExec {
 public:
  explicit HostExec(bool allow_tf32 = false) : allow_tf32_(allow_tf32) {}

  // torch.backends.cuda.matmul.allow_tf32, as the glue read it for this call
  bool allow_tf32() const { return allow_tf32_; }

  template <class Kernel>
  void launch(const Kernel& kernel, const Launch& l) const {
    g_launches.fetch_add(1, std::memory_order_relaxed);
    if (l.blocks == 0 || l.rows == 0) return;
    // each block's shared memory exactly the requested size, a block of its own
    const int64_t blocks = l.blocks * l.rows;
    std::vector<std::unique_ptr<unsigned char[]>> shared(blocks);
    if (l.shared_bytes) {
      for (auto& s : shared) s.reset(new unsigned char[l.shared_bytes]);
    }
    // thread t of every block, the blocks in one order (its warp-collective calls recorded
    // where the kernel synchronises)
    std::vector<LaneCalls> lanes(Kernel::kSyncs ? l.threads : 0);
    const auto thread = [&](int64_t t, Barrier* barrier) {
      for (int64_t row = 0; row < l.rows; ++row) {
        for (int64_t block = 0; block < l.blocks; ++block) {
          kernel(HostCtx{block, l.blocks, row, t, l.threads, barrier,
                         shared[row * l.blocks + block].get(), nullptr,
                         barrier ? &lanes[t] : nullptr});
        }
      }
    };
    if constexpr (Kernel::kSyncs) {
      // one host thread per thread of a block, meeting at a real barrier; all of them walk the
      // blocks in the same order, so each barrier round is one block's
      std::string error;
      const WarpCheck check{lanes.data(), l.threads, 0, 1, &error};
      Barrier barrier(l.threads, check);
      std::vector<std::thread> threads;
      threads.reserve(l.threads);
      for (int64_t t = 0; t < l.threads; ++t) threads.emplace_back(thread, t, &barrier);
      for (std::thread& t : threads) t.join();
      g_synced_launches.fetch_add(1, std::memory_order_relaxed);
      check();
      if (!error.empty()) throw std::logic_error(error);
    } else {
      for (int64_t t = 0; t < l.threads; ++t) thread(t, nullptr);
    }
  }

  // Every thread of every block at once, one host thread each: a block's threads meet at its
  // barrier, all of them at the grid's.
  template <class Kernel>
  void launch_cooperative(const Kernel& kernel, const Launch& l) const {
    static_assert(Kernel::kSyncs, "a cooperative kernel synchronises");
    g_launches.fetch_add(1, std::memory_order_relaxed);
    g_cooperative_launches.fetch_add(1, std::memory_order_relaxed);
    if (l.rows != 1 || l.blocks * l.threads > kMaxGridThreads) {
      throw std::logic_error("fastrnn emulator: a cooperative launch of " +
                             std::to_string(l.blocks) + " x " + std::to_string(l.rows) +
                             " blocks of " + std::to_string(l.threads) + " threads");
    }
    // a block's barrier checks its warps, the grid's all of them; each block its own error
    // slot (its barrier's completion may run while another block's does)
    std::vector<std::unique_ptr<unsigned char[]>> shared(l.blocks);
    std::vector<LaneCalls> lanes(l.blocks * l.threads);
    std::vector<std::string> errors(l.blocks + 1);
    std::vector<std::unique_ptr<Barrier>> barriers(l.blocks);
    for (int64_t b = 0; b < l.blocks; ++b) {
      if (l.shared_bytes) shared[b].reset(new unsigned char[l.shared_bytes]);
      barriers[b] = std::make_unique<Barrier>(
          l.threads, WarpCheck{lanes.data(), l.threads, b, 1, &errors[b]});
    }
    const WarpCheck check_all{lanes.data(), l.threads, 0, l.blocks, &errors[l.blocks]};
    Barrier grid(l.blocks * l.threads, check_all);
    std::vector<std::thread> threads;
    threads.reserve(l.blocks * l.threads);
    for (int64_t b = 0; b < l.blocks; ++b) {
      for (int64_t t = 0; t < l.threads; ++t) {
        threads.emplace_back([&, b, t] {
          kernel(HostCtx{b, l.blocks, 0, t, l.threads, barriers[b].get(), shared[b].get(), &grid,
                         &lanes[b * l.threads + t]});
        });
      }
    }
    for (std::thread& t : threads) t.join();
    check_all();
    for (const std::string& error : errors) {
      if (!error.empty()) throw std::logic_error(error);
    }
  }

  // The emulated device's occupancy, from the registers and static shared memory the kernels
  // may have at most (cuda/plan.h).
  template <class Kernel>
  int64_t resident_blocks(int64_t threads, int64_t shared_bytes) const {
    return resident_blocks_per_sm(limits(), threads, shared_bytes + kPersistentStaticShared,
                                  kPersistentMaxRegisters);
  }

  DeviceLimits limits() const { return emulated_device(); }

  PathRequest requested_path() const {
    std::string path;
    {
      const std::lock_guard<std::mutex> lock(g_settings_mutex);
      path = g_path;
    }
    return path.empty() ? path_from_environment() : parse_path(path);
  }

  // cuBLAS's gemm: column-major C[m, n] = op(A)[m, k] op(B)[k, n] + beta C; op(X) = X^T when
  // trans; X[i, j] at X[i + j * ld]. In (A's and B's type) is T, or bfloat16 or float16 with T
  // float (cublasGemmEx); the products and sums in T.
  template <typename In, typename T>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const In* A,
            int64_t lda, const In* B, int64_t ldb, T beta, T* C, int64_t ldc) const {
    static_assert(std::is_same_v<In, T> || (std::is_same_v<T, float> &&
                                            (std::is_same_v<In, bfloat16> ||
                                             std::is_same_v<In, float16>)));
    g_gemms.fetch_add(1, std::memory_order_relaxed);
    if constexpr (!std::is_same_v<In, T>) g_half_gemms.fetch_add(1, std::memory_order_relaxed);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        T sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          const T a = T(trans_a ? A[p + i * lda] : A[i + p * lda]);
          const T b = T(trans_b ? B[j + p * ldb] : B[p + j * ldb]);
          sum += a * b;
        }
        C[i + j * ldc] = beta == T(0) ? sum : sum + beta * C[i + j * ldc];
      }
    }
  }

  template <typename T>
  auto buffer(int64_t n) const {
    return cpu::scratch<T>(n);
  }

  template <typename T>
  void copy(T* dst, const T* src, int64_t n) const {
    if (n) std::memcpy(dst, src, n * sizeof(T));
  }

  template <typename T>
  void to_device(T* dst, const T* src, int64_t n) const {
    copy(dst, src, n);
  }

  template <typename T>
  void zero(T* dst, int64_t n) const {
    std::fill(dst, dst + n, T(0));
  }

 private:
  bool allow_tf32_;
};

}  // namespace

bool emulation_enabled() { return g_enabled.load(); }
void set_emulation(bool enabled) { g_enabled.store(enabled); }

EmulationStats emulation_stats() {
  return {g_launches.load(), g_synced_launches.load(), g_cooperative_launches.load(),
          g_gemms.load(), g_half_gemms.load(), g_mma_tiles.load()};
}

void reset_emulation_stats() {
  g_launches = 0, g_synced_launches = 0, g_cooperative_launches = 0, g_gemms = 0;
  g_half_gemms = 0, g_mma_tiles = 0;
}

void set_emulation_settings(const EmulationSettings& settings) {
  parse_path(settings.path);                          // throws on a bad name
  if (settings.sms < 0) throw std::invalid_argument("fastrnn: emulated SM count below 0");
  DeviceLimits device = device_limits(settings.device);  // throws on a bad name
  const std::lock_guard<std::mutex> lock(g_settings_mutex);
  g_path = settings.path, g_device = device.name, g_sms = settings.sms;
}

EmulationSettings emulation_settings() {
  const std::lock_guard<std::mutex> lock(g_settings_mutex);
  return {g_path, g_device, g_sms};
}

DeviceLimits emulated_device() {
  const EmulationSettings settings = emulation_settings();
  DeviceLimits device = device_limits(settings.device);
  if (settings.sms > 0) device.sms = settings.sms;
  device.max_grid_threads = std::min(device.sms * device.threads_per_sm, kMaxGridThreads);
  return device;
}

template <typename scalar_t>
void emulated_forward(const RnnParams<scalar_t>& p, bool allow_tf32) {
  HostExec exec(allow_tf32);
  drivers_forward(exec, p);
}

template <typename scalar_t>
void emulated_backward(const RnnGradParams<scalar_t>& p, bool allow_tf32) {
  HostExec exec(allow_tf32);
  drivers_backward(exec, p);
}

namespace {

// One warp's mma_tile of emulated_mma_tile: threads below `lanes` call it.
template <typename Op>
struct MmaTileKernel {
  static constexpr bool kSyncs = true;
  const Op *a, *b;
  float* acc;
  int64_t k, lanes;
  template <class Ctx>
  void operator()(const Ctx& ctx) const {
    if (ctx.thread() < lanes) ctx.template mma_tile<Op>(acc, 16, a, k, b, k, k);
  }
};

}  // namespace

template <typename Op>
void emulated_mma_tile(const Op* a, const Op* b, float* acc, int64_t k, int64_t lanes) {
  Launch l;
  l.threads = kWarp;
  HostExec().launch(MmaTileKernel<Op>{a, b, acc, k, lanes}, l);
}

template void emulated_mma_tile<float>(const float*, const float*, float*, int64_t, int64_t);
template void emulated_mma_tile<bfloat16>(const bfloat16*, const bfloat16*, float*, int64_t,
                                          int64_t);
template void emulated_mma_tile<float16>(const float16*, const float16*, float*, int64_t,
                                         int64_t);

template <typename In, typename T>
void emulated_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const In* A,
                   int64_t lda, const In* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  HostExec().gemm(trans_a, trans_b, m, n, k, A, lda, B, ldb, beta, C, ldc);
}

#define FASTRNN_INSTANTIATE(In, T)                                                            \
  template void emulated_gemm<In, T>(bool, bool, int64_t, int64_t, int64_t, const In*, int64_t, \
                                     const In*, int64_t, T, T*, int64_t);
FASTRNN_INSTANTIATE(float, float)
FASTRNN_INSTANTIATE(double, double)
FASTRNN_INSTANTIATE(bfloat16, float)
FASTRNN_INSTANTIATE(float16, float)
#undef FASTRNN_INSTANTIATE

#define FASTRNN_INSTANTIATE(T)                                   \
  template void emulated_forward<T>(const RnnParams<T>&, bool); \
  template void emulated_backward<T>(const RnnGradParams<T>&, bool);
FASTRNN_FOR_EACH_DTYPE(FASTRNN_INSTANTIATE)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cuda
