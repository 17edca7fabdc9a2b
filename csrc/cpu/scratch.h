// Scratch memory for the CPU drivers: aligned to a cache line, so that 64-byte vector loads and
// stores of rows that start at a multiple of 16 floats never straddle two lines, and left
// uninitialised, since every element is written before it is read (zeroing it first would be a
// pass over memory as large as the work itself at small sizes).
//
// Large buffers are kept for the next call (scratch_cache): a fresh one costs a page fault on the
// first touch of each 4 KiB page, and glibc's malloc hands most buffers above its mmap threshold
// back to the system on free, so that every call faults them in again. On the 2-vCPU VM a fault
// cost 2.9 us (a fresh 10 MiB buffer written once: 7.5 ms, a resident one 0.14 ms), and a
// bfloat16 LSTM's training call (T = 100, B = 32, H = 256) faulted in ~2400 pages a call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace fastrnn::cpu {

inline constexpr std::align_val_t kCacheLine{64};

// The freed large buffers, kept for the next calls process-wide (cpu/scratch.cpp; compiled once,
// for the baseline ISA: an inline definition here would be compiled into each ISA's copy of the
// drivers, and the linker keeps one of them for all).
namespace scratch_cache {
inline constexpr size_t kMinBytes = size_t{256} << 10;  // smaller ones: malloc's free lists
inline constexpr size_t kMaxBytes = size_t{256} << 20;  // held at most, the oldest dropped first

void* allocate(size_t bytes, size_t& capacity);  // capacity: the buffer's size (>= bytes)
void release(void* p, size_t capacity);          // kept for a later allocate, or freed
void clear();                                    // frees every kept buffer
size_t cached_bytes();
}  // namespace scratch_cache

struct ScratchFree {
  size_t capacity = 0;  // bytes
  void operator()(void* p) const { scratch_cache::release(p, capacity); }
};

template <typename T>
using Scratch = std::unique_ptr<T[], ScratchFree>;

// n elements; none (nullptr) for n <= 0: the drivers ask for many buffers that a call's options
// leave empty, and an aligned allocation is ~500 instructions, a one-step call's
// microsecond.
template <typename T>
Scratch<T> scratch(int64_t n) {
  if (n <= 0) return Scratch<T>();
  size_t capacity = 0;
  void* p = scratch_cache::allocate(static_cast<size_t>(n) * sizeof(T), capacity);
  return Scratch<T>(static_cast<T*>(p), ScratchFree{capacity});
}

}  // namespace fastrnn::cpu
