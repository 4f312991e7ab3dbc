#include "base/request_metrics.h"

#include <string>

namespace cairn::metrics {

RequestMetrics::RequestMetrics(Registry& registry, std::string_view prefix,
                               std::span<const std::string_view> command_names) {
  std::string p(prefix);
  auto command = [&](std::string_view name) {
    Labels labels{{"command", std::string(name)}};
    return Command{
        &registry.counter(p + "_requests_total", "Requests completed, by command.", labels),
        &registry.counter(p + "_request_errors_total", "Requests answered with an error.", labels),
        &registry.histogram(p + "_request_duration_seconds",
                            "Time from a request's arrival to its reply being queued.", labels)};
  };
  for (std::string_view name : command_names) {
    commands_.push_back(command(name.empty() ? "other" : name));
  }
  commands_.push_back(command("other"));
  read_bytes_ = &registry.counter(p + "_bytes_total", "Payload bytes, by direction.",
                                  {{"direction", "read"}});
  written_bytes_ = &registry.counter(p + "_bytes_total", "Payload bytes, by direction.",
                                     {{"direction", "write"}});
}

void RequestMetrics::record(unsigned opcode, bool ok, uint64_t latency_us, uint64_t read_bytes,
                            uint64_t written_bytes) noexcept {
  const Command& c = commands_[std::min<std::size_t>(opcode, commands_.size() - 1)];
  c.requests->add();
  if (!ok) {
    c.errors->add();
  }
  c.latency->observe_us(latency_us);
  if (read_bytes > 0) {
    read_bytes_->add(read_bytes);
  }
  if (written_bytes > 0) {
    written_bytes_->add(written_bytes);
  }
}

}  // namespace cairn::metrics
