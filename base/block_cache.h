// BlockCache: per-thread free lists of small heap blocks, so that the request path's
// short-lived allocations (coroutine frames, Asio operations, small vectors) reuse memory
// instead of calling malloc and free for every request.
//
// A block is malloc'ed with a 16-byte header in front that records its size class (32-byte
// steps up to kMaxSmallBytes; class 0 means "large": straight back to free()). A freed small
// block goes onto the freeing thread's list for its class unless that list already holds
// kListCapBytes or the thread's lists hold kThreadCapBytes, in which case it is freed. So a
// thread caches at most kThreadCapBytes (4 MiB), and in practice what its busiest moment had
// in flight. Classes reach 4 KiB so that a chunk-sized buffer is recycled too.
// A block may be freed on another thread than the one that allocated it: it then joins that
// thread's list, which is correct because every block is a plain malloc'ed block.
//
// The seastar/tcmalloc idea, kept small: no slabs and no pages, just recycling. It is linked
// into cairnd (base/recycling_new.cc replaces the global operator new/delete) in builds
// without sanitizers; sanitizer builds keep the C library's allocator so that ASan sees every
// use after free. The tests exercise BlockCache directly.
//
// Threading: every function works on the calling thread's lists (thread_local); no locks.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cairn::base {

class BlockCache {
 public:
  static constexpr std::size_t kHeaderBytes = 16;  // keeps the default new alignment (16)
  static constexpr std::size_t kClassBytes = 32;
  static constexpr std::size_t kMaxSmallBytes = 4096;
  static constexpr std::size_t kClasses = kMaxSmallBytes / kClassBytes;  // classes 1..128
  static constexpr std::size_t kListCapBytes = 256 << 10;
  static constexpr std::size_t kThreadCapBytes = 4 << 20;

  // Memory for `bytes` bytes, 16-byte aligned, or nullptr if malloc fails.
  [[nodiscard]] static void* allocate(std::size_t bytes) noexcept;
  // Gives back a block from allocate() (nullptr is ignored).
  static void deallocate(void* p) noexcept;

  // The calling thread's counters, for tests and benchmarks.
  struct Stats {
    uint64_t mallocs = 0;       // blocks taken from malloc
    uint64_t reuses = 0;        // blocks taken from a free list
    uint64_t cached_bytes = 0;  // bytes on this thread's free lists now (headers excluded)
  };
  [[nodiscard]] static Stats thread_stats() noexcept;
  // Frees every block on the calling thread's lists (also done at thread exit).
  static void release_thread_cache() noexcept;
};

}  // namespace cairn::base
