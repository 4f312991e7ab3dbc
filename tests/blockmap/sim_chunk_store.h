// SimChunkStore: a test ChunkStore in RAM whose state survives "power cuts" the way the
// ChunkStore contract allows, and whose operations yield to other coroutines at random.
//
// - Every operation may yield (asio::post) before and after it takes effect, chosen by the
//   seed, so that concurrent volume requests interleave, and a power cut can fall between an
//   operation and its caller's next step, even though nothing touches a disk.
// - flush() makes the current state durable. power_cut() keeps the durable state plus a
//   random prefix of the operations since the last flush (a store may persist some of them
//   early, in order), and drops the rest. Callers must therefore follow the ordering rule in
//   io/chunk_store.h; a chunk whose reference was dropped too early disappears here.
//
// Single-threaded (one io_context). Data is shared between states through shared_ptr, so
// flush() copies only the index.
#pragma once

#include <cstring>
#include <memory>
#include <random>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/asio.h"
#include "base/assert.h"
#include "io/chunk_hash.h"
#include "io/chunk_store.h"
#include "io/errors.h"

namespace cairn::test {

class SimChunkStore final : public io::ChunkStore {
 public:
  SimChunkStore(const io::ChunkHasher& hasher, uint64_t seed, bool yields = true)
      : hasher_(hasher), rng_(seed), yields_(yields) {}

  Task<Result<void>> put(std::span<const std::span<const std::byte>> chunks,
                         std::span<io::ChunkId> ids) override {
    co_await maybe_yield();
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      auto data =
          std::make_shared<const std::vector<std::byte>>(chunks[i].begin(), chunks[i].end());
      ids[i] = address(*data);
      apply(current_, Op{true, ids[i], data});
      ops_.push_back(Op{true, ids[i], data});
    }
    co_await maybe_yield();
    co_return Result<void>{};
  }

  // put(), and then takes the buffer as a store that writes from it would: the caller gets
  // another, and the taken one is overwritten (a real store reuses it once written), so a
  // caller that reads its data after handing the buffer over reads 0xA5 bytes.
  Task<Result<void>> put_from(io::AlignedBuffer& buffer,
                              std::span<const std::span<const std::byte>> chunks,
                              std::span<io::ChunkId> ids) override {
    auto r = co_await put(chunks, ids);
    io::AlignedBuffer taken = std::exchange(buffer, io::AlignedBuffer(buffer.size()));
    std::memset(taken.data(), 0xA5, taken.size());
    taken_.push_back(std::move(taken));  // kept: a stale read is wrong bytes, not a crash
    co_return r;
  }

  Task<Result<void>> get(const io::ChunkId& id, std::span<std::byte> out) override {
    co_await maybe_yield();
    if (auto ec = get_one(id, out)) {
      co_return ec;
    }
    co_return Result<void>{};
  }

  // Like get() for each chunk; a yield may fall between two chunks, as between two disk reads.
  Task<Result<void>> get_many(std::span<const io::ChunkId> ids,
                              std::span<const std::span<std::byte>> outs) override {
    if (ids.size() != outs.size()) {
      co_return make_error_code(io::errc::invalid_argument);
    }
    std::error_code first;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      co_await maybe_yield();
      auto ec = get_one(ids[i], outs[i]);
      if (ec && !first) {
        first = ec;
      }
    }
    if (first) {
      co_return first;
    }
    co_return Result<void>{};
  }

  Task<Result<void>> ref(std::span<const io::ChunkId> ids) override {
    co_await maybe_yield();
    for (const io::ChunkId& id : ids) {
      auto it = current_.find(id);
      if (it == current_.end()) {
        co_return make_error_code(io::errc::not_found);
      }
      apply(current_, Op{true, id, it->second.data});
      ops_.push_back(Op{true, id, it->second.data});
    }
    co_return Result<void>{};
  }

  Task<Result<void>> unref(std::span<const io::ChunkId> ids) override {
    co_await maybe_yield();
    for (const io::ChunkId& id : ids) {
      CAIRN_ASSERT(current_.contains(id));  // dropping a reference nobody took is a bug
      apply(current_, Op{false, id, nullptr});
      ops_.push_back(Op{false, id, nullptr});
    }
    co_await maybe_yield();
    co_return Result<void>{};
  }

  Task<Result<void>> flush() override {
    co_await maybe_yield();
    durable_ = current_;
    ops_.clear();
    flushes_++;
    co_await maybe_yield();
    co_return Result<void>{};
  }

  [[nodiscard]] io::ChunkStoreStats stats() const override {
    io::ChunkStoreStats s;
    for (const auto& [id, e] : current_) {
      s.chunks++;
      s.physical_bytes += e.data->size();
      s.referenced_bytes += e.data->size() * e.refs;
    }
    return s;
  }

  // Loses power: keeps the durable state and a random prefix of the later operations.
  void power_cut(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::size_t keep = ops_.empty() ? 0 : rng() % (ops_.size() + 1);
    for (std::size_t i = 0; i < keep; ++i) {
      apply(durable_, ops_[i]);
    }
    current_ = durable_;
    ops_.clear();
  }

  [[nodiscard]] uint64_t flushes() const noexcept { return flushes_; }
  [[nodiscard]] uint64_t refs_of(const io::ChunkId& id) const {
    auto it = current_.find(id);
    return it == current_.end() ? 0 : it->second.refs;
  }

 private:
  struct Entry {
    std::shared_ptr<const std::vector<std::byte>> data;
    uint64_t refs = 0;
  };
  struct Op {
    bool take = true;  // put/ref, or unref
    io::ChunkId id;
    std::shared_ptr<const std::vector<std::byte>> data;
  };
  using Index = std::unordered_map<io::ChunkId, Entry, io::ChunkIdHash>;

  std::error_code get_one(const io::ChunkId& id, std::span<std::byte> out) const {
    auto it = current_.find(id);
    if (it == current_.end()) {
      return make_error_code(io::errc::not_found);
    }
    if (it->second.data->size() != out.size()) {
      return make_error_code(io::errc::invalid_argument);
    }
    std::memcpy(out.data(), it->second.data->data(), out.size());
    return {};
  }

  static void apply(Index& index, const Op& op) {
    if (op.take) {
      Entry& e = index[op.id];
      if (!e.data) {
        e.data = op.data;
      }
      e.refs++;
      return;
    }
    auto it = index.find(op.id);
    if (it != index.end() && --it->second.refs == 0) {
      index.erase(it);
    }
  }

  // Confirms dedup hits by comparing bytes; a collision takes the next ordinal.
  io::ChunkId address(const std::vector<std::byte>& data) const {
    for (uint32_t ordinal = 0;; ++ordinal) {
      io::ChunkId id = hasher_.address(data, ordinal);
      auto it = current_.find(id);
      if (it == current_.end() || *it->second.data == data) {
        return id;
      }
    }
  }

  Task<void> maybe_yield() {
    if (yields_ && rng_() % 2 == 0) {
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
    }
  }

  const io::ChunkHasher& hasher_;
  std::mt19937_64 rng_;
  bool yields_;
  Index current_;
  Index durable_;
  std::vector<Op> ops_;                   // since the last flush, in order
  std::vector<io::AlignedBuffer> taken_;  // by put_from()
  uint64_t flushes_ = 0;
};

}  // namespace cairn::test
