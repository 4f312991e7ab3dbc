#include "base/block_cache.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace cairn::base {
namespace {

constexpr uint32_t kMagic = 0xCA1B10C5;
constexpr uint32_t kLarge = 0;

struct Header {
  uint32_t magic;
  uint32_t size_class;  // kLarge, or 1..kClasses
  uint64_t unused;
};
static_assert(sizeof(Header) == BlockCache::kHeaderBytes);

struct FreeBlock {
  FreeBlock* next;
};

// Zero-initialized and trivially destructible, so it is usable at any point of the thread's
// life, including after its thread_local destructors have run (then `exited` is set and
// blocks go straight back to free()).
struct ThreadLists {
  FreeBlock* head[BlockCache::kClasses + 1];
  uint32_t count[BlockCache::kClasses + 1];
  uint64_t mallocs;
  uint64_t reuses;
  uint64_t cached_bytes;
  bool hooked;
  bool exited;
};
constinit thread_local ThreadLists lists{};

// Its destructor empties the lists when the thread ends. Constructed on first use, the first
// time a thread caches a block.
struct ThreadExitHook {
  ThreadExitHook() noexcept = default;
  ThreadExitHook(const ThreadExitHook&) = delete;
  ThreadExitHook& operator=(const ThreadExitHook&) = delete;
  ~ThreadExitHook() {
    BlockCache::release_thread_cache();
    lists.exited = true;
  }
};
thread_local ThreadExitHook exit_hook;
thread_local ThreadExitHook* volatile hook_sink = nullptr;

constexpr std::size_t class_bytes(uint32_t size_class) {
  return size_class * BlockCache::kClassBytes;
}

constexpr uint32_t list_cap(uint32_t size_class) {
  return static_cast<uint32_t>(BlockCache::kListCapBytes / class_bytes(size_class));
}

[[noreturn]] void die_foreign(const void* p) {
  // No allocation here: the heap may be what is broken.
  static constexpr char kMessage[] =
      "cairn: operator delete got a block that operator new did not make (heap corruption "
      "or a mismatched free); aborting\n";
  (void)!::write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
  (void)p;
  std::abort();
}

}  // namespace

void* BlockCache::allocate(std::size_t bytes) noexcept {
  uint32_t size_class = kLarge;
  std::size_t payload = bytes;
  if (bytes <= kMaxSmallBytes) {
    size_class = static_cast<uint32_t>((bytes + kClassBytes - 1) / kClassBytes);
    if (size_class == 0) {
      size_class = 1;
    }
    if (FreeBlock* b = lists.head[size_class]; b != nullptr) {
      lists.head[size_class] = b->next;
      --lists.count[size_class];
      lists.cached_bytes -= class_bytes(size_class);
      ++lists.reuses;
      return b;
    }
    payload = class_bytes(size_class);
  }
  void* raw = std::malloc(kHeaderBytes + payload);
  if (raw == nullptr) {
    return nullptr;
  }
  ++lists.mallocs;
  auto* h = static_cast<Header*>(raw);
  h->magic = kMagic;
  h->size_class = size_class;
  h->unused = 0;
  return static_cast<std::byte*>(raw) + kHeaderBytes;
}

void BlockCache::deallocate(void* p) noexcept {
  if (p == nullptr) {
    return;
  }
  auto* h = reinterpret_cast<Header*>(static_cast<std::byte*>(p) - kHeaderBytes);
  if (h->magic != kMagic || h->size_class > kClasses) {
    die_foreign(p);
  }
  const uint32_t size_class = h->size_class;
  if (size_class == kLarge || lists.exited || lists.count[size_class] >= list_cap(size_class) ||
      lists.cached_bytes + class_bytes(size_class) > BlockCache::kThreadCapBytes) {
    std::free(h);
    return;
  }
  if (!lists.hooked) {
    lists.hooked = true;
    // An odr-use constructs the hook and registers its destructor; the volatile store keeps
    // the compiler from dropping it.
    hook_sink = &exit_hook;
  }
  auto* b = static_cast<FreeBlock*>(p);
  b->next = lists.head[size_class];
  lists.head[size_class] = b;
  ++lists.count[size_class];
  lists.cached_bytes += class_bytes(size_class);
}

BlockCache::Stats BlockCache::thread_stats() noexcept {
  return Stats{lists.mallocs, lists.reuses, lists.cached_bytes};
}

void BlockCache::release_thread_cache() noexcept {
  for (uint32_t c = 1; c <= kClasses; ++c) {
    while (FreeBlock* b = lists.head[c]) {
      lists.head[c] = b->next;
      std::free(reinterpret_cast<std::byte*>(b) - kHeaderBytes);
    }
    lists.count[c] = 0;
  }
  lists.cached_bytes = 0;
}

}  // namespace cairn::base
