// SimLogFactory: record logs on SimBlockFiles, for crash tests of the journals built on them.
//
// Each name gets its own simulated disk of a fixed capacity, kept by the factory so that it
// survives the logs opened on it. power_cut_all() cuts power to every disk; the test then
// drops every log it opened (their memory is from before the cut) and opens them again.
//
// Threading: one thread. Lifetimes: logs borrow their disk from the factory, so the factory
// must outlive them, and remove() must not be called on a name whose log is still open.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "io/record_log.h"
#include "io/sim_block_file.h"

namespace cairn::io {

class SimLogFactory final : public LogFactory {
 public:
  explicit SimLogFactory(uint64_t capacity_bytes = 1ull << 20) : capacity_bytes_(capacity_bytes) {}

  Task<Result<std::unique_ptr<RecordLog>>> open(std::string_view name) override;
  Task<Result<void>> remove(std::string_view name) override;

  // Returns how many unsynced writes were lost or torn over all disks.
  std::size_t power_cut_all(uint64_t seed,
                            SimBlockFile::CutMode mode = SimBlockFile::CutMode::random);
  // The disk under `name`, or nullptr.
  [[nodiscard]] SimBlockFile* disk(std::string_view name);

 private:
  uint64_t capacity_bytes_;
  uint64_t opens_ = 0;
  std::map<std::string, std::unique_ptr<SimBlockFile>, std::less<>> disks_;
};

}  // namespace cairn::io
