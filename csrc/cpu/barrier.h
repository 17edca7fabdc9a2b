// The barrier of a team of threads (Threads::team) taking the steps of a layer together: one
// wait per step costs well under a microsecond, where a fork and join of the pool costs several,
// which at B=1 is as long as the step's own work.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

namespace fastrnn::cpu {

class SpinBarrier {
 public:
  // Returns once all `size` threads of the team have called wait() (or arrive()) for this
  // round; every call of a round passes the same size. Spins briefly, then yields the core, so
  // a team with more threads than free cores still moves on.
  void wait(int64_t size) {
    if (size > 1) await(arrive(size));
  }

  // wait() in two halves, for work that needs no other thread's between them: arrive() counts
  // the calling thread in and returns the round, await(round) returns once it is complete.
  int64_t arrive(int64_t size) {
    const int64_t round = round_.load(std::memory_order_acquire);
    if (size <= 1) return round - 1;  // complete: await returns at once
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == size - 1) {
      arrived_.store(0, std::memory_order_relaxed);  // before round_ moves on, so it is seen
      round_.store(round + 1, std::memory_order_release);
    }
    return round;
  }

  void await(int64_t round) const {
    for (int64_t spins = 0; round_.load(std::memory_order_acquire) == round; ++spins) {
      if (spins < kSpins) {
        pause();
      } else {
        std::this_thread::yield();
      }
    }
  }

 private:
  static constexpr int64_t kSpins = int64_t{1} << 14;

  static void pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  // on their own cache lines: arrivals write arrived_, the waiting threads poll round_
  alignas(64) std::atomic<int64_t> arrived_{0};
  alignas(64) std::atomic<int64_t> round_{0};
};

}  // namespace fastrnn::cpu
