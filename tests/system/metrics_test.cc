// Unit tests for base/metrics: histogram buckets, sharded counters, and the Prometheus text
// rendering (families, label escaping, cumulative buckets, seconds).
#include "base/metrics.h"

#include <gtest/gtest.h>

#include <sstream>
#include <thread>

#include "base/request_metrics.h"

namespace cairn::metrics {
namespace {

// The lines of `text` that start with `prefix`.
std::vector<std::string> lines_with(const std::string& text, const std::string& prefix) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) {
      out.push_back(line);
    }
  }
  return out;
}

TEST(Histogram, BucketBoundaries) {
  EXPECT_EQ(Histogram::bucket_for(0), 0u);
  EXPECT_EQ(Histogram::bucket_for(1), 0u);
  EXPECT_EQ(Histogram::bucket_for(2), 1u);
  EXPECT_EQ(Histogram::bucket_for(3), 2u);
  EXPECT_EQ(Histogram::bucket_for(4), 2u);
  EXPECT_EQ(Histogram::bucket_for(5), 3u);
  for (unsigned i = 1; i < kHistogramBuckets; ++i) {
    uint64_t bound = Histogram::bound_us(i);
    EXPECT_EQ(Histogram::bucket_for(bound), i) << "bound " << bound;
    EXPECT_EQ(Histogram::bucket_for(bound + 1), i + 1) << "bound " << bound;
  }
  uint64_t last = Histogram::bound_us(kHistogramBuckets - 1);
  EXPECT_EQ(Histogram::bucket_for(last + 1), kHistogramBuckets);
  EXPECT_EQ(Histogram::bucket_for(UINT64_MAX), kHistogramBuckets);
}

TEST(Histogram, SnapshotCountsAndSum) {
  Histogram h;
  h.observe_us(1);
  h.observe_us(3);
  h.observe_us(4);
  h.observe_us(1000);
  h.observe_us(uint64_t{1} << 40);
  HistogramSnapshot s = h.snapshot();
  EXPECT_EQ(s.buckets[0], 1u);
  EXPECT_EQ(s.buckets[2], 2u);
  EXPECT_EQ(s.buckets[10], 1u);  // 512 < 1000 <= 1024
  EXPECT_EQ(s.overflow, 1u);
  EXPECT_EQ(s.count(), 5u);
  EXPECT_EQ(s.sum_us, 1u + 3 + 4 + 1000 + (uint64_t{1} << 40));
}

TEST(Counter, ConcurrentAddsFromManyThreadsAreAllCounted) {
  Counter c;
  Histogram h;
  std::vector<std::thread> threads;
  threads.reserve(12);
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        c.add(2);
        h.observe_us(static_cast<uint64_t>(i));
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(c.value(), 12u * 10000 * 2);
  EXPECT_EQ(h.snapshot().count(), 12u * 10000);
}

TEST(Format, SecondsFromMicroseconds) {
  EXPECT_EQ(format_us_as_seconds(0), "0");
  EXPECT_EQ(format_us_as_seconds(1), "0.000001");
  EXPECT_EQ(format_us_as_seconds(1024), "0.001024");
  EXPECT_EQ(format_us_as_seconds(1500000), "1.5");
  EXPECT_EQ(format_us_as_seconds(2000000), "2");
  EXPECT_EQ(format_us_as_seconds(33554432), "33.554432");
}

TEST(Format, NamesAndEscaping) {
  EXPECT_TRUE(valid_metric_name("cairn_nbd_requests_total"));
  EXPECT_TRUE(valid_metric_name("a:b_1"));
  EXPECT_FALSE(valid_metric_name(""));
  EXPECT_FALSE(valid_metric_name("1abc"));
  EXPECT_FALSE(valid_metric_name("a-b"));
  EXPECT_TRUE(valid_label_name("volume"));
  EXPECT_FALSE(valid_label_name("a:b"));
  EXPECT_EQ(escape_label_value("plain"), "plain");
  EXPECT_EQ(escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Registry, SameNameAndLabelsReturnTheSameSeries) {
  Registry r;
  Counter& a = r.counter("x_total", "help", {{"k", "v"}});
  Counter& b = r.counter("x_total", "help", {{"k", "v"}});
  Counter& c = r.counter("x_total", "help", {{"k", "w"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &c);
}

TEST(Registry, RendersCountersAndGaugesWithOneHelpAndTypePerFamily) {
  Registry r;
  r.counter("cairn_requests_total", "Requests by command.", {{"command", "read"}}).add(3);
  r.counter("cairn_requests_total", "Requests by command.", {{"command", "write"}}).add(5);
  r.gauge("cairn_open", "Open things.").set(-2);
  std::string text = r.render();
  EXPECT_EQ(lines_with(text, "# HELP cairn_requests_total").size(), 1u);
  EXPECT_EQ(lines_with(text, "# TYPE cairn_requests_total counter").size(), 1u);
  EXPECT_EQ(lines_with(text, "# TYPE cairn_open gauge").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_requests_total{command=\"read\"} 3").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_requests_total{command=\"write\"} 5").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_open -2").size(), 1u);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.back(), '\n');
  // Families come in name order.
  EXPECT_LT(text.find("cairn_open"), text.find("cairn_requests_total"));
}

TEST(Registry, RendersCumulativeHistogramBucketsInSeconds) {
  Registry r;
  Histogram& h = r.histogram("cairn_lat_seconds", "Latency.", {{"command", "read"}});
  h.observe_us(1);
  h.observe_us(3);
  h.observe_us(3);
  h.observe_us(uint64_t{1} << 30);  // overflow: only in +Inf
  std::string text = r.render();
  EXPECT_EQ(lines_with(text, "# TYPE cairn_lat_seconds histogram").size(), 1u);
  auto buckets = lines_with(text, "cairn_lat_seconds_bucket{");
  ASSERT_EQ(buckets.size(), kHistogramBuckets + 1);
  EXPECT_EQ(buckets[0], "cairn_lat_seconds_bucket{command=\"read\",le=\"0.000001\"} 1");
  EXPECT_EQ(buckets[1], "cairn_lat_seconds_bucket{command=\"read\",le=\"0.000002\"} 1");
  EXPECT_EQ(buckets[2], "cairn_lat_seconds_bucket{command=\"read\",le=\"0.000004\"} 3");
  EXPECT_EQ(buckets[kHistogramBuckets - 1],
            "cairn_lat_seconds_bucket{command=\"read\",le=\"33.554432\"} 3");
  EXPECT_EQ(buckets[kHistogramBuckets], "cairn_lat_seconds_bucket{command=\"read\",le=\"+Inf\"} 4");
  EXPECT_EQ(lines_with(text, "cairn_lat_seconds_count{command=\"read\"} 4").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_lat_seconds_sum{command=\"read\"} 1073.741831").size(), 1u);
}

TEST(Registry, CollectorsAddToTheExpositionUntilRemoved) {
  Registry r;
  double space = 1.5;
  uint64_t id = r.add_collector([&](Exposition& out) {
    out.gauge("cairn_space_bytes", "Space.", {{"volume", "a\"b"}}, space);
  });
  EXPECT_EQ(lines_with(r.render(), "cairn_space_bytes{volume=\"a\\\"b\"} 1.5").size(), 1u);
  space = 4096;
  EXPECT_EQ(lines_with(r.render(), "cairn_space_bytes{volume=\"a\\\"b\"} 4096").size(), 1u);
  r.remove_collector(id);
  EXPECT_EQ(r.render().find("cairn_space_bytes"), std::string::npos);
}

TEST(RequestMetrics, CountsByCommandErrorsLatencyAndBytes) {
  Registry r;
  const std::string_view names[] = {"read", "write", "", "flush"};
  RequestMetrics m(r, "cairn_test", names);
  m.record(0, true, 3, 4096, 0);
  m.record(0, false, 100, 0, 0);
  m.record(1, true, 1, 0, 8192);
  m.record(2, true, 1, 0, 0);   // unnamed opcode
  m.record(99, true, 1, 0, 0);  // past the table
  std::string text = r.render();
  EXPECT_EQ(lines_with(text, "cairn_test_requests_total{command=\"read\"} 2").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_test_request_errors_total{command=\"read\"} 1").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_test_requests_total{command=\"write\"} 1").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_test_requests_total{command=\"other\"} 2").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_test_requests_total{command=\"flush\"} 0").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_test_bytes_total{direction=\"read\"} 4096").size(), 1u);
  EXPECT_EQ(lines_with(text, "cairn_test_bytes_total{direction=\"write\"} 8192").size(), 1u);
  EXPECT_EQ(
      lines_with(text, "cairn_test_request_duration_seconds_count{command=\"read\"} 2").size(), 1u);
  EXPECT_EQ(
      lines_with(text, "cairn_test_request_duration_seconds_sum{command=\"read\"} 0.000103").size(),
      1u);
}

}  // namespace
}  // namespace cairn::metrics
