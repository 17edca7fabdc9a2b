// Scratch memory for the CPU drivers: aligned to a cache line, so that 64-byte vector loads and
// stores of rows that start at a multiple of 16 floats never straddle two lines, and left
// uninitialised, since every element is written before it is read (zeroing it first would be a
// pass over memory as large as the work itself at small sizes).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <new>

namespace fastrnn::cpu {

inline constexpr std::align_val_t kCacheLine{64};

struct ScratchFree {
  void operator()(void* p) const { ::operator delete[](p, kCacheLine); }
};

template <typename T>
using Scratch = std::unique_ptr<T[], ScratchFree>;

// n elements; none (nullptr) for n <= 0: the drivers ask for many buffers that a call's options
// leave empty, and an aligned allocation is ~500 instructions, a one-step call's
// microsecond.
template <typename T>
Scratch<T> scratch(int64_t n) {
  if (n <= 0) return Scratch<T>();
  const auto bytes = static_cast<size_t>(n) * sizeof(T);
  return Scratch<T>(static_cast<T*>(::operator new[](bytes, kCacheLine)));
}

}  // namespace fastrnn::cpu
