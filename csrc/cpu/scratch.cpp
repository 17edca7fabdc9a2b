#include "cpu/scratch.h"

#include <pthread.h>

#include <mutex>
#include <new>
#include <vector>

namespace fastrnn::cpu::scratch_cache {
namespace {

struct Block {
  void* p;
  size_t bytes;
};

// The kept buffers, oldest first, under one lock: a buffer may be freed on another thread than
// the one that took it (a team's worker), and a call takes a handful, each a large one.
struct Cache {
  std::mutex mutex;
  std::vector<Block> free;
  size_t bytes = 0;
};

// never destroyed: buffers may be released during static destruction
Cache& cache() {
  static Cache* c = [] {
    auto* made = new Cache();
    // a fork while another thread holds the lock would leave the child's copy locked: the
    // fork waits for the lock, and both sides release it
    pthread_atfork([] { cache().mutex.lock(); }, [] { cache().mutex.unlock(); },
                   [] { cache().mutex.unlock(); });
    return made;
  }();
  return *c;
}

void* fresh(size_t bytes) { return ::operator new[](bytes, kCacheLine); }
void free_now(void* p) { ::operator delete[](p, kCacheLine); }

}  // namespace

void* allocate(size_t bytes, size_t& capacity) {
  capacity = bytes;
  if (bytes < kMinBytes) return fresh(bytes);
  Cache& c = cache();
  {
    // the smallest kept buffer that fits and is at most twice the request (a larger one stays
    // for a larger request)
    const std::lock_guard<std::mutex> lock(c.mutex);
    auto best = c.free.end();
    for (auto it = c.free.begin(); it != c.free.end(); ++it) {
      if (it->bytes >= bytes && it->bytes <= 2 * bytes &&
          (best == c.free.end() || it->bytes < best->bytes)) {
        best = it;
      }
    }
    if (best != c.free.end()) {
      void* p = best->p;
      capacity = best->bytes;
      c.bytes -= best->bytes;
      c.free.erase(best);
      return p;
    }
  }
  return fresh(bytes);
}

void release(void* p, size_t capacity) {
  if (capacity < kMinBytes || capacity > kMaxBytes) return free_now(p);
  Cache& c = cache();
  std::vector<void*> dropped;
  {
    const std::lock_guard<std::mutex> lock(c.mutex);
    c.free.push_back({p, capacity});
    c.bytes += capacity;
    while (c.bytes > kMaxBytes) {
      dropped.push_back(c.free.front().p);
      c.bytes -= c.free.front().bytes;
      c.free.erase(c.free.begin());
    }
  }
  for (void* q : dropped) free_now(q);
}

void clear() {
  Cache& c = cache();
  std::vector<Block> blocks;
  {
    const std::lock_guard<std::mutex> lock(c.mutex);
    blocks.swap(c.free);
    c.bytes = 0;
  }
  for (const Block& b : blocks) free_now(b.p);
}

size_t cached_bytes() {
  Cache& c = cache();
  const std::lock_guard<std::mutex> lock(c.mutex);
  return c.bytes;
}

}  // namespace fastrnn::cpu::scratch_cache
