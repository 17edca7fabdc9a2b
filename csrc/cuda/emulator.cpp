// The host Exec of cuda/exec.h. Faithful where bugs hide:
// - a kernel that synchronises (kSyncs) runs each block's threads as real threads meeting at a
//   real barrier (one host thread per thread index, walking the blocks in order), so a missing
//   ctx.sync() gives wrong sums (and a ThreadSanitizer report); the others run their threads one
//   after another, which gives the same results for kernels without sharing between threads;
// - shared memory is a heap block of exactly the launch's shared_bytes, so AddressSanitizer
//   sees an overrun;
// - gemm follows cuBLAS's column-major convention exactly (and reads C only when beta != 0), so
//   a driver that swaps operands or leading dimensions gets wrong results;
// - a cooperative launch runs every thread of every block at once as host threads, with a real
//   barrier per block (ctx.sync) and one for the grid (ctx.grid_sync), on an emulated device
//   (an A100 unless a test picks another, cuda/plan.h) whose residency the driver checks as on
//   a GPU; the emulator runs at most kMaxGridThreads host threads at once, so larger grids go
//   to the alternating path (or, forced persistent, raise).
#include "cuda/emulator.h"

#include <atomic>
#include <barrier>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/stack.h"
#include "cpu/scratch.h"
#include "cuda/driver.h"
#include "cuda/through_float.h"

namespace fastrnn::cuda {
namespace {

std::atomic<bool> g_enabled{false};
std::atomic<int64_t> g_launches{0}, g_synced_launches{0}, g_cooperative_launches{0}, g_gemms{0};

inline constexpr int64_t kMaxGridThreads = 4096;

// The emulation's settings (cuda_emulation(path=..., device=..., sms=...)).
std::mutex g_settings_mutex;
std::string g_path;  // "": FASTRNN_CUDA_PATH
std::string g_device = "a100";
int64_t g_sms = 0;  // 0: the device's own

struct HostCtx {
  int64_t block_, blocks_, row_, thread_, threads_;
  std::barrier<>* barrier_;  // nullptr: the kernel does not synchronise
  unsigned char* shared_;
  std::barrier<>* grid_ = nullptr;  // a cooperative launch's, else nullptr

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
};

class HostExec {
 public:
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
    // thread t of every block, the blocks in one order
    const auto thread = [&](int64_t t, std::barrier<>* barrier) {
      for (int64_t row = 0; row < l.rows; ++row) {
        for (int64_t block = 0; block < l.blocks; ++block) {
          kernel(HostCtx{block, l.blocks, row, t, l.threads, barrier,
                         shared[row * l.blocks + block].get()});
        }
      }
    };
    if constexpr (Kernel::kSyncs) {
      // one host thread per thread of a block, meeting at a real barrier; all of them walk the
      // blocks in the same order, so each barrier round is one block's
      std::barrier<> barrier(l.threads);
      std::vector<std::thread> threads;
      threads.reserve(l.threads);
      for (int64_t t = 0; t < l.threads; ++t) threads.emplace_back(thread, t, &barrier);
      for (std::thread& t : threads) t.join();
      g_synced_launches.fetch_add(1, std::memory_order_relaxed);
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
    std::vector<std::unique_ptr<unsigned char[]>> shared(l.blocks);
    std::vector<std::unique_ptr<std::barrier<>>> barriers(l.blocks);
    for (int64_t b = 0; b < l.blocks; ++b) {
      if (l.shared_bytes) shared[b].reset(new unsigned char[l.shared_bytes]);
      barriers[b] = std::make_unique<std::barrier<>>(l.threads);
    }
    std::barrier<> grid(l.blocks * l.threads);
    std::vector<std::thread> threads;
    threads.reserve(l.blocks * l.threads);
    for (int64_t b = 0; b < l.blocks; ++b) {
      for (int64_t t = 0; t < l.threads; ++t) {
        threads.emplace_back([&, b, t] {
          kernel(HostCtx{b, l.blocks, 0, t, l.threads, barriers[b].get(), shared[b].get(), &grid});
        });
      }
    }
    for (std::thread& t : threads) t.join();
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
  // trans; X[i, j] at X[i + j * ld].
  template <typename T>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const T* A, int64_t lda,
            const T* B, int64_t ldb, T beta, T* C, int64_t ldc) const {
    g_gemms.fetch_add(1, std::memory_order_relaxed);
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t i = 0; i < m; ++i) {
        T sum = 0;
        for (int64_t p = 0; p < k; ++p) {
          const T a = trans_a ? A[p + i * lda] : A[i + p * lda];
          const T b = trans_b ? B[j + p * ldb] : B[p + j * ldb];
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
};

}  // namespace

bool emulation_enabled() { return g_enabled.load(); }
void set_emulation(bool enabled) { g_enabled.store(enabled); }

EmulationStats emulation_stats() {
  return {g_launches.load(), g_synced_launches.load(), g_cooperative_launches.load(),
          g_gemms.load()};
}

void reset_emulation_stats() {
  g_launches = 0, g_synced_launches = 0, g_cooperative_launches = 0, g_gemms = 0;
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
void emulated_forward(const RnnParams<scalar_t>& p) {
  HostExec exec;
  drivers_forward(exec, p);
}

template <typename scalar_t>
void emulated_backward(const RnnGradParams<scalar_t>& p) {
  HostExec exec;
  drivers_backward(exec, p);
}

#define FASTRNN_INSTANTIATE(T)                                   \
  template void emulated_forward<T>(const RnnParams<T>&); \
  template void emulated_backward<T>(const RnnGradParams<T>&);
FASTRNN_FOR_EACH_DTYPE(FASTRNN_INSTANTIATE)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cuda
