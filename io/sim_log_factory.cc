#include "io/sim_log_factory.h"

#include "io/errors.h"
#include "io/file_record_log.h"

namespace cairn::io {

Task<Result<std::unique_ptr<RecordLog>>> SimLogFactory::open(std::string_view name) {
  if (name.empty()) {
    co_return make_error(errc::invalid_argument);
  }
  auto it = disks_.find(name);
  if (it == disks_.end()) {
    auto disk = std::make_unique<SimBlockFile>(FileRecordLog::file_bytes_for(capacity_bytes_));
    it = disks_.emplace(std::string(name), std::move(disk)).first;
  }
  // A deterministic nonce per open keeps simulated runs reproducible from their seed.
  FileRecordLog::Options options;
  options.nonce = 0x9e3779b97f4a7c15ull * ++opens_;
  auto log = co_await FileRecordLog::open(*it->second, nullptr, options);
  if (!log) {
    co_return log.error();
  }
  co_return std::unique_ptr<RecordLog>(std::move(*log));
}

Task<Result<void>> SimLogFactory::remove(std::string_view name) {
  auto it = disks_.find(name);
  if (it == disks_.end()) {
    co_return make_error(errc::not_found);
  }
  disks_.erase(it);
  co_return Result<void>{};
}

std::size_t SimLogFactory::power_cut_all(uint64_t seed, SimBlockFile::CutMode mode) {
  std::size_t affected = 0;
  uint64_t i = 0;
  for (auto& [name, disk] : disks_) {
    affected += disk->power_cut(seed ^ (0x9e3779b97f4a7c15ull * ++i), mode);
  }
  return affected;
}

SimBlockFile* SimLogFactory::disk(std::string_view name) {
  auto it = disks_.find(name);
  return it == disks_.end() ? nullptr : it->second.get();
}

}  // namespace cairn::io
