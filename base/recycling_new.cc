// Replaces the global operator new and delete with BlockCache (base/block_cache.h), so
// short-lived small allocations are recycled per thread instead of going to malloc. Linked
// into cairnd only (tools/CMakeLists.txt), and only in builds without sanitizers. Asio's
// operation and coroutine-frame memory reaches it too: CMakeLists.txt sets
// BOOST_ASIO_DISABLE_STD_ALIGNED_ALLOC, so Asio allocates through ::operator new.
//
// The over-aligned forms (std::align_val_t) are left to the C++ library: they use
// aligned_alloc and free, which never meet BlockCache's blocks.
#include <cstddef>
#include <new>

#include "base/block_cache.h"

using cairn::base::BlockCache;

namespace {

void* allocate_or_throw(std::size_t bytes) {
  for (;;) {
    if (void* p = BlockCache::allocate(bytes)) {
      return p;
    }
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      throw std::bad_alloc();
    }
    handler();
  }
}

}  // namespace

// NOLINTBEGIN(misc-new-delete-overloads,cert-dcl54-cpp,hicpp-new-delete-operators):
// replacing the global allocation functions, each form the standard names.
void* operator new(std::size_t bytes) {
  return allocate_or_throw(bytes);
}
void* operator new[](std::size_t bytes) {
  return allocate_or_throw(bytes);
}
void* operator new(std::size_t bytes, const std::nothrow_t& /*tag*/) noexcept {
  return BlockCache::allocate(bytes);
}
void* operator new[](std::size_t bytes, const std::nothrow_t& /*tag*/) noexcept {
  return BlockCache::allocate(bytes);
}
void operator delete(void* p) noexcept {
  BlockCache::deallocate(p);
}
void operator delete[](void* p) noexcept {
  BlockCache::deallocate(p);
}
void operator delete(void* p, std::size_t /*bytes*/) noexcept {
  BlockCache::deallocate(p);
}
void operator delete[](void* p, std::size_t /*bytes*/) noexcept {
  BlockCache::deallocate(p);
}
void operator delete(void* p, const std::nothrow_t& /*tag*/) noexcept {
  BlockCache::deallocate(p);
}
void operator delete[](void* p, const std::nothrow_t& /*tag*/) noexcept {
  BlockCache::deallocate(p);
}
// NOLINTEND(misc-new-delete-overloads,cert-dcl54-cpp,hicpp-new-delete-operators)
