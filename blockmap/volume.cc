#include "blockmap/volume.h"

#include <algorithm>
#include <cstring>

#include "base/assert.h"
#include "base/log.h"
#include "blockmap/errors.h"

namespace cairn::blockmap {
namespace {

bool all_zero(std::span<const std::byte> data) noexcept {
  return std::all_of(data.begin(), data.end(), [](std::byte b) { return b == std::byte{0}; });
}

std::error_code store_error(std::error_code ec) {
  CAIRN_LOG(error, "volume", "store error: {}", ec.message());
  return make_error_code(errc::io_error);
}

}  // namespace

Volume::Volume(VolumeConfig config, io::ChunkStore& store, io::MetaStore& meta,
               asio::any_io_executor owner)
    : config_(std::move(config)), store_(store), meta_(meta), owner_(std::move(owner)) {
  uint64_t chunks = (config_.size_bytes + config_.chunk_size_bytes - 1) / config_.chunk_size_bytes;
  map_.resize(chunks);
  stats_.logical_bytes = config_.size_bytes;
}

Volume::~Volume() = default;

Task<Result<std::unique_ptr<Volume>>> Volume::open(VolumeConfig config, io::ChunkStore& store,
                                                   io::MetaStore& meta,
                                                   asio::any_io_executor owner) {
  if (auto r = validate(config); !r) {
    co_return r.error();
  }
  co_return std::unique_ptr<Volume>(new Volume(std::move(config), store, meta, owner));
}

Result<void> Volume::check_range(uint64_t offset_bytes, uint64_t length_bytes) const noexcept {
  if (offset_bytes > config_.size_bytes || length_bytes > config_.size_bytes - offset_bytes) {
    return make_error_code(errc::out_of_range);
  }
  return {};
}

Task<Result<void>> Volume::read_chunk(uint64_t index, std::span<std::byte> out) {
  CAIRN_ASSERT(out.size() == config_.chunk_size_bytes);
  const io::ChunkId id = map_[index];
  if (id.is_null()) {
    std::memset(out.data(), 0, out.size());
    co_return Result<void>{};
  }
  auto r = co_await store_.get(id, out);
  if (!r) {
    co_return store_error(r.error());
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::read(uint64_t offset_bytes, std::span<std::byte> out) {
  if (auto r = check_range(offset_bytes, out.size()); !r) {
    co_return r;
  }
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> bounce;
  uint64_t done = 0;
  while (done < out.size()) {
    uint64_t pos = offset_bytes + done;
    uint64_t index = pos / cs;
    uint64_t within = pos % cs;
    uint64_t n = std::min<uint64_t>(cs - within, out.size() - done);
    if (within == 0 && n == cs) {
      if (auto r = co_await read_chunk(index, out.subspan(done, cs)); !r) {
        co_return r;
      }
    } else {
      bounce.resize(cs);
      if (auto r = co_await read_chunk(index, bounce); !r) {
        co_return r;
      }
      std::memcpy(out.data() + done, bounce.data() + within, n);
    }
    done += n;
  }
  stats_.reads++;
  stats_.read_bytes += out.size();
  co_return Result<void>{};
}

Task<Result<void>> Volume::set_chunks(uint64_t first_index, std::span<const io::ChunkId> ids) {
  std::vector<io::ChunkId> old;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    io::ChunkId& slot = map_[first_index + i];
    if (!slot.is_null()) {
      old.push_back(slot);
      stats_.mapped_bytes -= config_.chunk_size_bytes;
    }
    slot = ids[i];
    if (!slot.is_null()) {
      stats_.mapped_bytes += config_.chunk_size_bytes;
    }
  }
  if (!old.empty()) {
    if (auto r = co_await store_.unref(old); !r) {
      co_return store_error(r.error());
    }
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::after_write(WriteFlags flags) {
  if (flags.fua || config_.durability == Durability::write_through) {
    co_return co_await flush();
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::write(uint64_t offset_bytes, std::span<const std::byte> data,
                                 WriteFlags flags) {
  if (!can_write()) {
    co_return make_error_code(errc::read_only);
  }
  if (auto r = check_range(offset_bytes, data.size()); !r) {
    co_return r;
  }
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> bounce;
  uint64_t done = 0;
  while (done < data.size()) {
    uint64_t pos = offset_bytes + done;
    uint64_t index = pos / cs;
    uint64_t within = pos % cs;
    uint64_t n = std::min<uint64_t>(cs - within, data.size() - done);
    std::span<const std::byte> chunk = data.subspan(done, n);
    if (within != 0 || n != cs) {
      // Read-modify-write of a partial chunk.
      bounce.resize(cs);
      if (auto r = co_await read_chunk(index, bounce); !r) {
        co_return r;
      }
      std::memcpy(bounce.data() + within, chunk.data(), n);
      chunk = bounce;
    }
    io::ChunkId id;
    if (!all_zero(chunk)) {
      std::span<const std::byte> one[1] = {chunk};
      if (auto r = co_await store_.put(one, std::span<io::ChunkId>(&id, 1)); !r) {
        co_return store_error(r.error());
      }
    }
    if (auto r = co_await set_chunks(index, std::span<const io::ChunkId>(&id, 1)); !r) {
      co_return r;
    }
    done += n;
  }
  stats_.writes++;
  stats_.write_bytes += data.size();
  co_return co_await after_write(flags);
}

Task<Result<void>> Volume::write_zero_range(uint64_t offset_bytes, uint64_t length_bytes) {
  const uint64_t cs = config_.chunk_size_bytes;
  std::vector<std::byte> zeroes;
  uint64_t done = 0;
  while (done < length_bytes) {
    uint64_t pos = offset_bytes + done;
    uint64_t index = pos / cs;
    uint64_t within = pos % cs;
    uint64_t n = std::min<uint64_t>(cs - within, length_bytes - done);
    if (within == 0 && n == cs) {
      io::ChunkId hole;
      if (auto r = co_await set_chunks(index, std::span<const io::ChunkId>(&hole, 1)); !r) {
        co_return r;
      }
    } else {
      zeroes.assign(n, std::byte{0});
      if (auto r = co_await write(pos, zeroes); !r) {
        co_return r;
      }
    }
    done += n;
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::trim(uint64_t offset_bytes, uint64_t length_bytes, WriteFlags flags) {
  if (!can_write()) {
    co_return make_error_code(errc::read_only);
  }
  if (auto r = check_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  stats_.trims++;
  if (auto r = co_await write_zero_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  co_return co_await after_write(flags);
}

Task<Result<void>> Volume::write_zeroes(uint64_t offset_bytes, uint64_t length_bytes,
                                        WriteFlags flags) {
  if (!can_write()) {
    co_return make_error_code(errc::read_only);
  }
  if (auto r = check_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  stats_.zeroes++;
  // A hole reads as zeroes. With no_hole the range must stay allocated, which this
  // first map cannot express, so it is the same as a hole here.
  if (auto r = co_await write_zero_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  co_return co_await after_write(flags);
}

Task<Result<void>> Volume::flush() {
  stats_.flushes++;
  auto r = co_await store_.flush();
  if (!r) {
    co_return store_error(r.error());
  }
  co_return Result<void>{};
}

Task<Result<void>> Volume::cache(uint64_t offset_bytes, uint64_t length_bytes) {
  co_return check_range(offset_bytes, length_bytes);
}

Task<Result<void>> Volume::block_status(uint64_t offset_bytes, uint64_t length_bytes,
                                        std::vector<Extent>& out) {
  if (auto r = check_range(offset_bytes, length_bytes); !r) {
    co_return r;
  }
  const uint64_t cs = config_.chunk_size_bytes;
  uint64_t done = 0;
  while (done < length_bytes) {
    uint64_t pos = offset_bytes + done;
    uint64_t index = pos / cs;
    uint64_t n = std::min<uint64_t>(cs - pos % cs, length_bytes - done);
    bool allocated = !map_[index].is_null();
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
  const uint64_t cs = config_.chunk_size_bytes;
  uint64_t chunks = (new_size_bytes + cs - 1) / cs;
  if (chunks < map_.size()) {
    std::vector<io::ChunkId> holes(map_.size() - chunks);
    if (auto r = co_await set_chunks(chunks, holes); !r) {
      co_return r;
    }
  }
  map_.resize(chunks);
  config_.size_bytes = new_size_bytes;
  stats_.logical_bytes = new_size_bytes;
  co_return Result<void>{};
}

}  // namespace cairn::blockmap
