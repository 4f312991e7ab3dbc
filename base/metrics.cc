#include "base/metrics.h"

#include <bit>
#include <charconv>
#include <cmath>

#include "base/assert.h"

namespace cairn::metrics {
namespace {

std::atomic<unsigned> g_next_shard{0};

const char* type_name(Type type) noexcept {
  switch (type) {
    case Type::counter:
      return "counter";
    case Type::gauge:
      return "gauge";
    case Type::histogram:
      return "histogram";
  }
  return "untyped";
}

// HELP text escapes backslash and newline only (the exposition format's rule).
std::string escape_help(std::string_view help) {
  std::string out;
  out.reserve(help.size());
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}`, or nothing for no labels. `extra` is appended (the histogram's `le`).
std::string label_text(const Labels& labels, const Label* extra = nullptr) {
  if (labels.empty() && extra == nullptr) {
    return {};
  }
  std::string out = "{";
  bool first = true;
  auto add = [&](const Label& l) {
    if (!first) {
      out += ',';
    }
    first = false;
    out += l.first;
    out += "=\"";
    out += escape_label_value(l.second);
    out += '"';
  };
  for (const Label& l : labels) {
    add(l);
  }
  if (extra != nullptr) {
    add(*extra);
  }
  out += '}';
  return out;
}

std::string format_double(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  CAIRN_ASSERT(ec == std::errc{});
  return std::string(buf, end);
}

void check_labels(const Labels& labels) {
  for (const Label& l : labels) {
    CAIRN_ASSERT(valid_label_name(l.first) && l.first != "le");
  }
}

}  // namespace

unsigned this_thread_shard() noexcept {
  thread_local unsigned shard = g_next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

uint64_t Counter::value() const noexcept {
  uint64_t total = 0;
  for (const Shard& s : shards_) {
    total += s.value.load(std::memory_order_relaxed);
  }
  return total;
}

uint64_t HistogramSnapshot::count() const noexcept {
  uint64_t total = overflow;
  for (uint64_t b : buckets) {
    total += b;
  }
  return total;
}

unsigned Histogram::bucket_for(uint64_t value_us) noexcept {
  if (value_us <= 1) {
    return 0;
  }
  // Smallest i with value <= 2^i is the bit width of value - 1.
  auto i = static_cast<unsigned>(std::bit_width(value_us - 1));
  return i < kHistogramBuckets ? i : kHistogramBuckets;
}

void Histogram::observe_us(uint64_t value_us) noexcept {
  Shard& s = shards_[this_thread_shard()];
  s.buckets[bucket_for(value_us)].fetch_add(1, std::memory_order_relaxed);
  s.sum_us.fetch_add(value_us, std::memory_order_relaxed);
}

HistogramSnapshot Histogram::snapshot() const noexcept {
  HistogramSnapshot out;
  for (const Shard& s : shards_) {
    for (unsigned i = 0; i < kHistogramBuckets; ++i) {
      out.buckets[i] += s.buckets[i].load(std::memory_order_relaxed);
    }
    out.overflow += s.buckets[kHistogramBuckets].load(std::memory_order_relaxed);
    out.sum_us += s.sum_us.load(std::memory_order_relaxed);
  }
  return out;
}

Exposition::Family& Exposition::family(std::string_view name, std::string_view help, Type type) {
  CAIRN_ASSERT(valid_metric_name(name));
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{}).first;
    it->second.help = std::string(help);
    it->second.type = type;
  }
  CAIRN_ASSERT(it->second.type == type);
  return it->second;
}

void Exposition::counter(std::string_view name, std::string_view help, const Labels& labels,
                         uint64_t v) {
  check_labels(labels);
  Family& f = family(name, help, Type::counter);
  f.samples += std::string(name) + label_text(labels) + ' ' + std::to_string(v) + '\n';
}

void Exposition::gauge(std::string_view name, std::string_view help, const Labels& labels,
                       double v) {
  check_labels(labels);
  Family& f = family(name, help, Type::gauge);
  f.samples += std::string(name) + label_text(labels) + ' ' + format_double(v) + '\n';
}

void Exposition::histogram(std::string_view name, std::string_view help, const Labels& labels,
                           const HistogramSnapshot& h) {
  check_labels(labels);
  Family& f = family(name, help, Type::histogram);
  std::string base(name);
  uint64_t cumulative = 0;
  for (unsigned i = 0; i < kHistogramBuckets; ++i) {
    cumulative += h.buckets[i];
    Label le{"le", format_us_as_seconds(Histogram::bound_us(i))};
    f.samples += base + "_bucket" + label_text(labels, &le) + ' ' + std::to_string(cumulative);
    f.samples += '\n';
  }
  cumulative += h.overflow;
  Label inf{"le", "+Inf"};
  f.samples += base + "_bucket" + label_text(labels, &inf) + ' ' + std::to_string(cumulative);
  f.samples += '\n';
  f.samples += base + "_sum" + label_text(labels) + ' ' + format_us_as_seconds(h.sum_us) + '\n';
  f.samples += base + "_count" + label_text(labels) + ' ' + std::to_string(cumulative) + '\n';
}

std::string Exposition::render() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + ' ' + escape_help(f.help) + '\n';
    out += "# TYPE " + name + ' ' + type_name(f.type) + '\n';
    out += f.samples;
  }
  return out;
}

Registry& Registry::global() {
  static Registry* registry = new Registry();  // never destroyed: outlives every thread
  return *registry;
}

Registry::Series& Registry::series(std::string_view name, std::string_view help,
                                   const Labels& labels, Type type) {
  CAIRN_ASSERT(valid_metric_name(name));
  check_labels(labels);
  std::lock_guard lock(mutex_);
  auto [it, inserted] = types_.emplace(std::string(name), type);
  CAIRN_ASSERT(it->second == type);
  for (auto& s : series_) {
    if (s->name == name && s->labels == labels) {
      return *s;
    }
  }
  auto s = std::make_unique<Series>();
  s->name = std::string(name);
  s->help = std::string(help);
  s->type = type;
  s->labels = labels;
  switch (type) {
    case Type::counter:
      s->counter = std::make_unique<Counter>();
      break;
    case Type::gauge:
      s->gauge = std::make_unique<Gauge>();
      break;
    case Type::histogram:
      s->histogram = std::make_unique<Histogram>();
      break;
  }
  series_.push_back(std::move(s));
  return *series_.back();
}

Counter& Registry::counter(std::string_view name, std::string_view help, const Labels& labels) {
  return *series(name, help, labels, Type::counter).counter;
}

Gauge& Registry::gauge(std::string_view name, std::string_view help, const Labels& labels) {
  return *series(name, help, labels, Type::gauge).gauge;
}

Histogram& Registry::histogram(std::string_view name, std::string_view help, const Labels& labels) {
  return *series(name, help, labels, Type::histogram).histogram;
}

uint64_t Registry::add_collector(Collector collector) {
  std::lock_guard lock(mutex_);
  uint64_t id = next_collector_id_++;
  collectors_.emplace_back(id, std::move(collector));
  return id;
}

void Registry::remove_collector(uint64_t id) {
  std::lock_guard lock(mutex_);
  std::erase_if(collectors_, [id](const auto& c) { return c.first == id; });
}

void Registry::collect(Exposition& out) const {
  std::lock_guard lock(mutex_);
  for (const auto& s : series_) {
    switch (s->type) {
      case Type::counter:
        out.counter(s->name, s->help, s->labels, s->counter->value());
        break;
      case Type::gauge:
        out.gauge(s->name, s->help, s->labels, static_cast<double>(s->gauge->value()));
        break;
      case Type::histogram:
        out.histogram(s->name, s->help, s->labels, s->histogram->snapshot());
        break;
    }
  }
  for (const auto& [id, collector] : collectors_) {
    collector(out);
  }
}

std::string Registry::render() const {
  Exposition out;
  collect(out);
  return out.render();
}

bool valid_metric_name(std::string_view name) noexcept {
  if (name.empty()) {
    return false;
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) {
      return false;
    }
  }
  return true;
}

bool valid_label_name(std::string_view name) noexcept {
  if (name.empty() || name.find(':') != std::string_view::npos) {
    return false;
  }
  return valid_metric_name(name);
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string format_us_as_seconds(uint64_t us) {
  std::string out = std::to_string(us / 1'000'000);
  uint64_t frac = us % 1'000'000;
  if (frac == 0) {
    return out;
  }
  std::string digits = std::to_string(frac);
  digits.insert(0, 6 - digits.size(), '0');
  while (digits.back() == '0') {
    digits.pop_back();
  }
  return out + '.' + digits;
}

}  // namespace cairn::metrics
