#include "blockmap/volume.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/errors.h"

namespace cairn::blockmap {
namespace {

// Bytes per store.put() call in a large write: new chunks of one call land together on disk,
// with one disk write, so a 1 MiB request is one put, not a series of waits on smaller ones.
// A large read asks the store for this many bytes of chunks per get_many() call.
constexpr uint64_t kBytesPerBatch = 1ull << 20;

bool all_zero(std::span<const std::byte> data) noexcept {
  return std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
}

std::error_code store_error(std::error_code ec) {
  CAIRN_LOG(error, "volume", "store error: {}", ec.message());
  return make_error_code(errc::io_error);
}

// Result<bool> cannot be built from a bare error_code (which converts to bool).
Result<bool> bool_error(std::error_code ec) noexcept {
  return Result<bool>(boost::system::in_place_error, ec);
}

}  // namespace

std::string Volume::root_key(std::string_view name) {
  return "volume-root/" + std::string(name);
}

std::string Volume::journal_name(std::string_view name) {
  return "volume-" + std::string(name);
}

Volume::Volume(VolumeConfig config, io::ChunkStore& store, std::unique_ptr<DurableMap> map,
               asio::any_io_executor owner)
    : config_(std::move(config)), store_(store), map_(std::move(map)), owner_(std::move(owner)) {}

Volume::~Volume() = default;

Task<Result<std::unique_ptr<Volume>>> Volume::open(VolumeConfig config,
                                                   const VolumeStorage& storage,
                                                   asio::any_io_executor owner) {
  if (auto r = validate(config); !r) {
    co_return r.error();
  }
  DurableMapOptions options;
  options.cache_bytes = storage.map_cache_bytes;
  auto map = co_await DurableMap::open(root_key(config.name), journal_name(config.name),
                                       config.size_bytes, config.chunk_size_bytes, storage.store,
                                       storage.meta, storage.logs, options);
  if (!map) {
    co_return map.error();
  }
  if ((*map)->size_bytes() != config.size_bytes) {
    CAIRN_LOG(warn, "volume", "{}: size {} from the map root overrides the config's {}",
              config.name, (*map)->size_bytes(), config.size_bytes);
    config.size_bytes = (*map)->size_bytes();
  }
  co_return std::unique_ptr<Volume>(
      new Volume(std::move(config), storage.store, std::move(*map), std::move(owner)));
}

Task<Result<std::unique_ptr<Volume>>> Volume::open(VolumeConfig config, io::ChunkStore& store,
                                                   io::MetaStore& meta,
                                                   asio::any_io_executor owner) {
  co_return co_await open(std::move(config), VolumeStorage{store, meta}, std::move(owner));
}

VolumeStats Volume::stats() const noexcept {
  VolumeStats s = stats_;
  s.logical_bytes = config_.size_bytes;
  s.mapped_bytes = map_->mapped_chunks() * config_.chunk_size_bytes;
  s.referenced_bytes = s.mapped_bytes;
  io::ChunkStoreStats store = store_.stats();
  s.store_physical_bytes = store.physical_bytes;
  s.store_referenced_bytes = store.referenced_bytes;
  ChunkMap::Stats cache = map_->cache_stats();
  s.map_cache_pages = cache.cached_pages;
  s.map_cache_max_pages = cache.max_cached_pages;
  s.map_cache_hits = cache.hits;
  s.map_cache_misses = cache.misses;
  s.map_page_writes = cache.page_writes;
  s.map_checkpoints = map_->checkpoints();
  return s;
}

Result<void> Volume::check_range(uint64_t offset_bytes, uint64_t length_bytes) const noexcept {
  if (offset_bytes > config_.size_bytes || length_bytes > config_.size_bytes - offset_bytes) {
    return make_error_code(errc::out_of_range);
  }
  return {};
}

Result<void> Volume::check_write(uint64_t offset_bytes, uint64_t length_bytes) const noexcept {
  if (!can_write()) {
    return make_error_code(errc::read_only);
  }
  return check_range(offset_bytes, length_bytes);
}

// Locks the chunks under a non-empty byte range, then checks the range again: a resize may
// have run while this request waited.
Task<Result<RangeLock::Guard>> Volume::lock_range(uint64_t offset_bytes, uint64_t length_bytes,
                                                  RangeLock::Mode mode) {
  CAIRN_ASSERT(length_bytes > 0);
  const uint64_t cs = config_.chunk_size_bytes;
  auto guard =
      co_await chunk_locks_.lock(offset_bytes / cs, (offset_bytes + length_bytes - 1) / cs, mode);
  if (auto r = check_range(offset_bytes, length_bytes); !r) {
    co_return r.error();
  }
  co_return std::move(guard);
}

// Holds a lock on chunk `index`.
Task<Result<void>> Volume::read_chunk(uint64_t index, std::span<std::byte> out) {
  CAIRN_ASSERT(out.size() == config_.chunk_size_bytes);
  auto id = co_await map_->get(index);
  if (!id) {
    co_return id.error();
  }
  if (id->is_null()) {
    std::memset(out.data(), 0, out.size());
    co_return Result<void>{};
  }
  if (auto r = co_await store_.get(*id, out); !r) {
    co_return store_error(r.error());
  }
  co_return Result<void>{};
}

// Holds a lock on the chunks. Reads whole chunks into `out`, up to kBytesPerBatch per store
// call: holes are zero-filled here, and the mapped chunks go to the store as one get_many(),
// which reads chunks that lie side by side on disk (those of one earlier put) with one request.
Task<Result<void>> Volume::read_chunks(uint64_t first_index, std::span<std::byte> out) {
  const uint64_t cs = config_.chunk_size_bytes;
  const uint64_t count = out.size() / cs;
  if (count == 1) {
    co_return co_await read_chunk(first_index, out);
  }
  const uint64_t per_batch = std::max<uint64_t>(1, kBytesPerBatch / cs);
  std::vector<io::ChunkId> ids;
  std::vector<std::span<std::byte>> parts;
  for (uint64_t base = 0; base < count; base += per_batch) {
    const uint64_t n = std::min(per_batch, count - base);
    ids.clear();
    parts.clear();
    for (uint64_t k = base; k < base + n; ++k) {
      auto id = co_await map_->get(first_index + k);
      if (!id) {
        co_return id.error();
      }
      std::span<std::byte> part = out.subspan(k * cs, cs);
      if (id->is_null()) {
        std::memset(part.data(), 0, part.size());
      } else {
        ids.push_back(*id);
        parts.push_back(part);
      }
    }
    if (ids.empty()) {
      continue;
    }
    if (auto r = co_await store_.get_many(ids, parts); !r) {
      co_return store_error(r.error());
    }
  }
  co_return Result<void>{};
}

// Holds a lock on the range.
Task<Result<void>> Volume::read_locked(uint64_t offset_bytes, std::span<std::byte> out) {
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> bounce;
  for (uint64_t done = 0; done < out.size();) {
    uint64_t pos = offset_bytes + done;
    uint64_t within = pos % cs;
    uint64_t n = std::min<uint64_t>(cs - within, out.size() - done);
    if (within == 0 && n == cs) {
      n = (out.size() - done) / cs * cs;  // every whole chunk from here
      if (auto r = co_await read_chunks(pos / cs, out.subspan(done, n)); !r) {
        co_return r;
      }
    } else {
      bounce.resize(cs);
      if (auto r = co_await read_chunk(pos / cs, bounce); !r) {
        co_return r;
      }
      std::memcpy(out.data() + done, bounce.data() + within, n);
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::read(uint64_t offset_bytes, std::span<std::byte> out) {
  if (auto r = check_range(offset_bytes, out.size()); !r) {
    co_return r;
  }
  if (out.empty()) {
    co_return Result<void>{};
  }
  auto guard = co_await lock_range(offset_bytes, out.size(), RangeLock::Mode::shared);
  if (!guard) {
    co_return guard.error();
  }
  if (auto r = co_await read_locked(offset_bytes, out); !r) {
    co_return r;
  }
  stats_.reads++;
  stats_.read_bytes += out.size();
  co_return Result<void>{};
}

// Holds the locks. Maps consecutive chunks; each id carries a reference the map takes over.
Task<Result<void>> Volume::map_chunks(uint64_t first_index, std::span<const io::ChunkId> ids) {
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (auto r = co_await map_->set(first_index + i, ids[i]); !r) {
      // The map dropped ids[i]; the ids it never saw are dropped here.
      std::vector<io::ChunkId> rest;
      std::copy_if(ids.begin() + static_cast<std::ptrdiff_t>(i) + 1, ids.end(),
                   std::back_inserter(rest), [](const io::ChunkId& id) { return !id.is_null(); });
      if (!rest.empty()) {
        (void)co_await store_.unref(rest);
      }
      co_return r;
    }
  }
  co_return Result<void>{};
}

// Holds the locks. Stores whole chunks (all-zero ones become holes) and maps them.
Task<Result<void>> Volume::store_chunks(uint64_t first_index,
                                        std::span<const std::span<const std::byte>> chunks,
                                        io::AlignedBuffer* donor) {
  std::vector<io::ChunkId> ids(chunks.size());
  std::vector<std::span<const std::byte>> to_put;
  std::vector<std::size_t> slots;
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (!all_zero(chunks[i])) {
      to_put.push_back(chunks[i]);
      slots.push_back(i);
    }
  }
  if (!to_put.empty()) {
    std::vector<io::ChunkId> put_ids(to_put.size());
    Result<void> r;
    if (donor != nullptr) {
      r = co_await store_.put_from(*donor, to_put, put_ids);
    } else {
      r = co_await store_.put(to_put, put_ids);
    }
    if (!r) {
      co_return store_error(r.error());
    }
    for (std::size_t k = 0; k < slots.size(); ++k) {
      ids[slots[k]] = put_ids[k];
    }
  }
  co_return co_await map_chunks(first_index, ids);
}

// Holds the locks. Whole chunks go straight to the store; partial ones are read-modify-write.
// `donor` (data's buffer) goes with the last batch only: once the store may have taken it,
// `data` is not read again.
Task<Result<void>> Volume::write_locked(uint64_t offset_bytes, std::span<const std::byte> data,
                                        io::AlignedBuffer* donor) {
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> head, tail;
  std::vector<std::span<const std::byte>> batch;
  uint64_t batch_first = offset_bytes / cs;
  for (uint64_t done = 0; done < data.size();) {
    uint64_t pos = offset_bytes + done;
    uint64_t within = pos % cs;
    uint64_t n = std::min<uint64_t>(cs - within, data.size() - done);
    std::span<const std::byte> chunk = data.subspan(done, n);
    if (within != 0 || n != cs) {
      std::vector<std::byte>& bounce = done == 0 ? head : tail;
      bounce.resize(cs);
      if (auto r = co_await read_chunk(pos / cs, bounce); !r) {
        co_return r;
      }
      std::memcpy(bounce.data() + within, chunk.data(), n);
      chunk = bounce;
    }
    batch.push_back(chunk);
    done += n;
    if (batch.size() * cs >= kBytesPerBatch || done == data.size()) {
      io::AlignedBuffer* last = done == data.size() ? donor : nullptr;
      if (auto r = co_await store_chunks(batch_first, batch, last); !r) {
        co_return r;
      }
      batch_first += batch.size();
      batch.clear();
    }
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::after_write(WriteFlags flags) {
  if (flags.fua || config_.durability == Durability::write_through) {
    co_return co_await map_->commit();
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::write(uint64_t offset_bytes, std::span<const std::byte> data,
                                 WriteFlags flags) {
  co_return co_await write_with(offset_bytes, data, nullptr, flags);
}

Task<Result<void>> Volume::write_from(uint64_t offset_bytes, io::AlignedBuffer& buffer,
                                      std::size_t length_bytes, WriteFlags flags) {
  CAIRN_ASSERT(length_bytes <= buffer.size());
  co_return co_await write_with(offset_bytes, buffer.span().first(length_bytes), &buffer, flags);
}

Task<Result<void>> Volume::write_with(uint64_t offset_bytes, std::span<const std::byte> data,
                                      io::AlignedBuffer* donor, WriteFlags flags) {
  if (auto r = check_write(offset_bytes, data.size()); !r) {
    co_return r;
  }
  if (!data.empty()) {
    auto guard = co_await lock_range(offset_bytes, data.size(), RangeLock::Mode::exclusive);
    if (!guard) {
      co_return guard.error();
    }
    if (auto r = co_await write_locked(offset_bytes, data, donor); !r) {
      co_return r;
    }
  }
  stats_.writes++;
  stats_.write_bytes += data.size();
  co_return co_await after_write(flags);
}

// Holds the locks. Whole chunks become holes, or with `keep_allocated` real zero chunks;
// partial chunks at the edges are read-modify-write.
Task<Result<void>> Volume::zero_locked(uint64_t offset_bytes, uint64_t length_bytes,
                                       bool keep_allocated) {
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> zeroes(cs);
  std::vector<std::byte> bounce(cs);
  for (uint64_t done = 0; done < length_bytes;) {
    uint64_t pos = offset_bytes + done;
    uint64_t within = pos % cs;
    uint64_t n = std::min<uint64_t>(cs - within, length_bytes - done);
    std::span<const std::byte> chunk = zeroes;
    if (within != 0 || n != cs) {
      if (auto r = co_await read_chunk(pos / cs, bounce); !r) {
        co_return r;
      }
      std::memset(bounce.data() + within, 0, n);
      chunk = bounce;
    }
    io::ChunkId id;
    if (keep_allocated || !all_zero(chunk)) {
      std::span<const std::byte> one[1] = {chunk};
      if (auto r = co_await store_.put(one, std::span<io::ChunkId>(&id, 1)); !r) {
        co_return store_error(r.error());
      }
    }
    if (auto r = co_await map_->set(pos / cs, id); !r) {
      co_return r;
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::trim(uint64_t offset_bytes, uint64_t length_bytes, WriteFlags flags) {
  if (auto r = check_write(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  if (length_bytes > 0) {
    auto guard = co_await lock_range(offset_bytes, length_bytes, RangeLock::Mode::exclusive);
    if (!guard) {
      co_return guard.error();
    }
    if (auto r = co_await zero_locked(offset_bytes, length_bytes, false); !r) {
      co_return r;
    }
  }
  stats_.trims++;
  co_return co_await after_write(flags);
}

Task<Result<void>> Volume::write_zeroes(uint64_t offset_bytes, uint64_t length_bytes,
                                        WriteFlags flags) {
  if (auto r = check_write(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  if (length_bytes > 0) {
    auto guard = co_await lock_range(offset_bytes, length_bytes, RangeLock::Mode::exclusive);
    if (!guard) {
      co_return guard.error();
    }
    if (auto r = co_await zero_locked(offset_bytes, length_bytes, flags.no_hole); !r) {
      co_return r;
    }
  }
  stats_.zeroes++;
  co_return co_await after_write(flags);
}

Task<Result<bool>> Volume::compare_and_write(uint64_t offset_bytes,
                                             std::span<const std::byte> compare,
                                             std::span<const std::byte> data,
                                             uint64_t* miscompare_offset, WriteFlags flags) {
  CAIRN_ASSERT(compare.size() == data.size());
  if (auto r = check_write(offset_bytes, data.size()); !r) {
    co_return bool_error(r.error());
  }
  if (data.empty()) {
    co_return true;
  }
  auto guard = co_await lock_range(offset_bytes, data.size(), RangeLock::Mode::exclusive);
  if (!guard) {
    co_return bool_error(guard.error());
  }
  std::vector<std::byte> current(data.size());
  if (auto r = co_await read_locked(offset_bytes, current); !r) {
    co_return bool_error(r.error());
  }
  auto at = std::mismatch(current.begin(), current.end(), compare.begin()).first;
  if (at != current.end()) {
    stats_.miscompares++;
    if (miscompare_offset != nullptr) {
      *miscompare_offset = static_cast<uint64_t>(at - current.begin());
    }
    co_return false;
  }
  if (auto r = co_await write_locked(offset_bytes, data); !r) {
    co_return bool_error(r.error());
  }
  guard->reset();
  stats_.compare_and_writes++;
  stats_.writes++;
  stats_.write_bytes += data.size();
  if (auto r = co_await after_write(flags); !r) {
    co_return bool_error(r.error());
  }
  co_return true;
}

// Holds the lock. Copies one piece: either whole chunks by reference (both offsets chunk
// aligned, the length a multiple of the chunk size) or bytes through `bounce`.
Task<Result<void>> Volume::copy_piece(uint64_t src_offset_bytes, uint64_t dst_offset_bytes,
                                      uint64_t length_bytes, bool by_reference,
                                      std::vector<std::byte>& bounce) {
  const uint64_t cs = config_.chunk_size_bytes;
  if (!by_reference) {
    bounce.resize(length_bytes);
    if (auto r = co_await read_locked(src_offset_bytes, bounce); !r) {
      co_return r;
    }
    co_return co_await write_locked(dst_offset_bytes, bounce);
  }
  CAIRN_ASSERT(src_offset_bytes % cs == 0 && dst_offset_bytes % cs == 0 && length_bytes % cs == 0);
  std::vector<io::ChunkId> ids(length_bytes / cs);
  std::vector<io::ChunkId> to_ref;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    auto id = co_await map_->get(src_offset_bytes / cs + i);
    if (!id) {
      co_return id.error();
    }
    ids[i] = *id;
    if (!id->is_null()) {
      to_ref.push_back(*id);
    }
  }
  // The new references are taken before the map points at them (the map owns one per id).
  if (!to_ref.empty()) {
    if (auto r = co_await store_.ref(to_ref); !r) {
      co_return store_error(r.error());
    }
  }
  stats_.copied_by_reference_bytes += length_bytes;
  co_return co_await map_chunks(dst_offset_bytes / cs, ids);
}

Task<Result<void>> Volume::copy_range(uint64_t src_offset_bytes, uint64_t dst_offset_bytes,
                                      uint64_t length_bytes, WriteFlags flags) {
  if (auto r = check_range(src_offset_bytes, length_bytes); !r) {
    co_return r;
  }
  if (auto r = check_write(dst_offset_bytes, length_bytes); !r) {
    co_return r;
  }
  if (length_bytes == 0) {
    co_return Result<void>{};
  }
  // One exclusive lock over both ranges: two copies in opposite directions can then never wait
  // for each other, and copies are rare enough that blocking the span between is acceptable.
  const uint64_t first = std::min(src_offset_bytes, dst_offset_bytes);
  const uint64_t end = std::max(src_offset_bytes, dst_offset_bytes) + length_bytes;
  auto guard = co_await lock_range(first, end - first, RangeLock::Mode::exclusive);
  if (!guard) {
    co_return guard.error();
  }
  if (auto r = check_range(src_offset_bytes, length_bytes); !r) {
    co_return r;
  }

  // Split into pieces: a head and a tail through the bounce buffer and whole chunks by
  // reference when both sides share their offset within a chunk, else bounded byte pieces.
  struct Piece {
    uint64_t at = 0;  // offset within the copy
    uint64_t length = 0;
    bool by_reference = false;
  };
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<Piece> pieces;
  if (src_offset_bytes % cs == dst_offset_bytes % cs) {
    uint64_t head = std::min(length_bytes, (cs - src_offset_bytes % cs) % cs);
    uint64_t whole = (length_bytes - head) / cs * cs;
    if (head > 0) {
      pieces.push_back({0, head, false});
    }
    for (uint64_t at = head; at < head + whole; at += kBytesPerBatch) {
      pieces.push_back({at, std::min(kBytesPerBatch, head + whole - at), true});
    }
    if (head + whole < length_bytes) {
      pieces.push_back({head + whole, length_bytes - head - whole, false});
    }
  } else {
    for (uint64_t at = 0; at < length_bytes; at += kBytesPerBatch) {
      pieces.push_back({at, std::min(kBytesPerBatch, length_bytes - at), false});
    }
  }
  // Copying backwards when the destination overlaps the source's tail gives memmove's result.
  if (dst_offset_bytes > src_offset_bytes) {
    std::reverse(pieces.begin(), pieces.end());
  }
  std::vector<std::byte> bounce;
  for (const Piece& p : pieces) {
    if (auto r = co_await copy_piece(src_offset_bytes + p.at, dst_offset_bytes + p.at, p.length,
                                     p.by_reference, bounce);
        !r) {
      co_return r;
    }
  }
  guard->reset();
  stats_.copies++;
  co_return co_await after_write(flags);
}

Task<Result<void>> Volume::flush() {
  stats_.flushes++;
  co_return co_await map_->commit();
}

Task<Result<void>> Volume::cache(uint64_t offset_bytes, uint64_t length_bytes) {
  if (auto r = check_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  if (length_bytes == 0) {
    co_return Result<void>{};
  }
  // Reading the chunks pulls them (and their map pages) into the caches.
  auto guard = co_await lock_range(offset_bytes, length_bytes, RangeLock::Mode::shared);
  if (!guard) {
    co_return guard.error();
  }
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> scratch(cs);
  for (uint64_t index = offset_bytes / cs; index <= (offset_bytes + length_bytes - 1) / cs;
       ++index) {
    if (auto r = co_await read_chunk(index, scratch); !r) {
      co_return r;
    }
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::block_status(uint64_t offset_bytes, uint64_t length_bytes,
                                        std::vector<Extent>& out) {
  if (auto r = check_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  const uint64_t cs = config_.chunk_size_bytes;
  for (uint64_t done = 0; done < length_bytes;) {
    uint64_t pos = offset_bytes + done;
    uint64_t n = std::min<uint64_t>(cs - pos % cs, length_bytes - done);
    if (pos >= config_.size_bytes) {
      co_return make_error_code(errc::out_of_range);  // shrunk while we were suspended
    }
    bool allocated = false;
    if (uint64_t holes = map_->holes_from(pos / cs); holes > 0) {
      // A whole unwritten span at once (an empty 1 EiB volume is one step).
      uint64_t span_end = std::min(config_.size_bytes, (pos / cs + holes) * cs);
      n = std::min(span_end - pos, length_bytes - done);
    } else {
      auto id = co_await map_->get(pos / cs);
      if (!id) {
        co_return id.error();
      }
      allocated = !id->is_null();
    }
    if (!out.empty() && out.back().allocated == allocated &&
        out.back().offset_bytes + out.back().length_bytes == pos) {
      out.back().length_bytes += n;
    } else {
      out.push_back(Extent{pos, n, allocated});
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::resize(uint64_t new_size_bytes) {
  VolumeConfig next = config_;
  next.size_bytes = new_size_bytes;
  if (auto r = validate(next); !r) {
    co_return r;
  }
  auto guard = co_await chunk_locks_.lock(0, UINT64_MAX, RangeLock::Mode::exclusive);
  const uint64_t cs = config_.chunk_size_bytes;
  if (new_size_bytes < config_.size_bytes && new_size_bytes % cs != 0) {
    // Zero the tail of the new last chunk, so that growing again reads zeroes there.
    uint64_t tail_bytes = cs - new_size_bytes % cs;
    uint64_t tail_end = std::min(config_.size_bytes, new_size_bytes + tail_bytes);
    if (auto r = co_await zero_locked(new_size_bytes, tail_end - new_size_bytes, false); !r) {
      co_return r;
    }
  }
  if (auto r = co_await map_->resize(new_size_bytes); !r) {
    co_return r;
  }
  config_.size_bytes = new_size_bytes;
  co_return Result<void>{};
}

Task<Result<void>> Volume::destroy() {
  auto guard = co_await chunk_locks_.lock(0, UINT64_MAX, RangeLock::Mode::exclusive);
  co_return co_await map_->destroy();
}

}  // namespace cairn::blockmap
