// Metrics: counters, gauges and latency histograms, and a registry that renders them in the
// Prometheus text exposition format (version 0.0.4), which cairnd serves on GET /metrics.
//
// Cost on the hot path: an update is one relaxed atomic add on a per-thread shard (a cache
// line chosen by a thread-local index), so reactor threads updating the same series never
// share a cache line and never take a lock. Registration (counter(), histogram(), ...) takes
// the registry's mutex and allocates; do it once, at start-up or when a connection or volume
// is set up, and keep the returned reference.
//
//   auto& reg = cairn::metrics::Registry::global();
//   static auto& reads = reg.counter("cairn_nbd_requests_total", "NBD requests by command.",
//                                    {{"command", "read"}});
//   reads.add();
//   auto& lat = reg.histogram("cairn_nbd_request_duration_seconds", "NBD request latency.",
//                             {{"command", "read"}});
//   lat.observe_us(elapsed_us);
//
// Histograms bucket microseconds into powers of two: bucket i counts observations <= 2^i us,
// for i in [0, kHistogramBuckets), plus +Inf. They render in seconds, as Prometheus expects.
//
// Lifetimes: a Registry owns its series; references stay valid until the Registry is
// destroyed (global() never is). Collectors are callbacks run at render time for values that
// live elsewhere (store stats, volume sizes); remove_collector() before their state dies.
//
// Threading: every method may be called from any thread.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cairn::metrics {

// One label: name="value". Names match [a-zA-Z_][a-zA-Z0-9_]*; values are escaped.
using Label = std::pair<std::string, std::string>;
using Labels = std::vector<Label>;

// Update shards per series. A thread writes to shard (thread index % kShards).
inline constexpr unsigned kShards = 8;
// Bounded histogram buckets: <= 1 us, <= 2 us, ..., <= 2^(kHistogramBuckets-1) us (~33.5 s).
inline constexpr unsigned kHistogramBuckets = 26;

// The shard the calling thread updates; stable for the thread's life.
[[nodiscard]] unsigned this_thread_shard() noexcept;

// Monotonically increasing count (requests, bytes).
class Counter {
 public:
  void add(uint64_t n = 1) noexcept {
    shards_[this_thread_shard()].value.fetch_add(n, std::memory_order_relaxed);
  }
  [[nodiscard]] uint64_t value() const noexcept;

 private:
  struct alignas(64) Shard {
    std::atomic<uint64_t> value{0};
  };
  std::array<Shard, kShards> shards_;
};

// A value that goes up and down (connections open). Not sharded: set() needs one cell.
class Gauge {
 public:
  void set(int64_t v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void add(int64_t n) noexcept { value_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] int64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// A point-in-time copy of a histogram: per-bucket (not cumulative) counts, the +Inf overflow
// count, and the sum of all observations.
struct HistogramSnapshot {
  std::array<uint64_t, kHistogramBuckets> buckets{};
  uint64_t overflow = 0;  // observations > 2^(kHistogramBuckets-1) us
  uint64_t sum_us = 0;
  [[nodiscard]] uint64_t count() const noexcept;
};

// Latency distribution in microseconds, with log2 buckets.
class Histogram {
 public:
  // The bucket index for a value: the smallest i with value_us <= 2^i, or kHistogramBuckets
  // (the +Inf bucket) when the value exceeds the last bound.
  [[nodiscard]] static unsigned bucket_for(uint64_t value_us) noexcept;
  // The upper bound of bucket i in microseconds.
  [[nodiscard]] static uint64_t bound_us(unsigned i) noexcept { return uint64_t{1} << i; }

  void observe_us(uint64_t value_us) noexcept;
  [[nodiscard]] HistogramSnapshot snapshot() const noexcept;

 private:
  struct alignas(64) Shard {
    std::array<std::atomic<uint64_t>, kHistogramBuckets + 1> buckets{};
    std::atomic<uint64_t> sum_us{0};
  };
  std::array<Shard, kShards> shards_;
};

// Microseconds since `start` on the steady clock; for Histogram::observe_us().
[[nodiscard]] inline uint64_t elapsed_us(std::chrono::steady_clock::time_point start) noexcept {
  auto d = std::chrono::steady_clock::now() - start;
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

enum class Type { counter, gauge, histogram };

// Builds one exposition: samples grouped into families (one HELP and TYPE line each), families
// in name order, series in insertion order. Collectors and the admin server add to it.
class Exposition {
 public:
  void counter(std::string_view name, std::string_view help, const Labels& labels, uint64_t v);
  void gauge(std::string_view name, std::string_view help, const Labels& labels, double v);
  void histogram(std::string_view name, std::string_view help, const Labels& labels,
                 const HistogramSnapshot& h);

  // The text exposition format, ending in a newline.
  [[nodiscard]] std::string render() const;

 private:
  struct Family {
    std::string help;
    Type type = Type::counter;
    std::string samples;  // rendered sample lines
  };
  Family& family(std::string_view name, std::string_view help, Type type);

  std::map<std::string, Family, std::less<>> families_;
};

class Registry {
 public:
  using Collector = std::function<void(Exposition&)>;

  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // The process-wide registry that cairnd serves.
  [[nodiscard]] static Registry& global();

  // Returns the series for (name, labels), creating it on first use; the same name and labels
  // always return the same object. A name is registered with one type only (asserted).
  [[nodiscard]] Counter& counter(std::string_view name, std::string_view help,
                                 const Labels& labels = {});
  [[nodiscard]] Gauge& gauge(std::string_view name, std::string_view help,
                             const Labels& labels = {});
  [[nodiscard]] Histogram& histogram(std::string_view name, std::string_view help,
                                     const Labels& labels = {});

  // Collectors run, in registration order, each time the registry is collected.
  [[nodiscard]] uint64_t add_collector(Collector collector);
  void remove_collector(uint64_t id);

  // Adds every series and every collector's output to `out`.
  void collect(Exposition& out) const;
  [[nodiscard]] std::string render() const;

 private:
  struct Series {
    std::string name;
    std::string help;
    Type type = Type::counter;
    Labels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  Series& series(std::string_view name, std::string_view help, const Labels& labels, Type type);

  mutable std::mutex mutex_;
  std::vector<std::unique_ptr<Series>> series_;
  std::map<std::string, Type, std::less<>> types_;
  std::vector<std::pair<uint64_t, Collector>> collectors_;
  uint64_t next_collector_id_ = 1;
};

// Helpers exposed for tests.
[[nodiscard]] bool valid_metric_name(std::string_view name) noexcept;
[[nodiscard]] bool valid_label_name(std::string_view name) noexcept;
// Escapes a label value: backslash, double quote and newline.
[[nodiscard]] std::string escape_label_value(std::string_view value);
// Formats microseconds as seconds with no trailing zeros: 1 -> "0.000001", 2000000 -> "2".
[[nodiscard]] std::string format_us_as_seconds(uint64_t us);

}  // namespace cairn::metrics
