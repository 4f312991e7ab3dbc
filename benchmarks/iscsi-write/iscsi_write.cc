// cairn_iscsi_write: an iSCSI write load generator whose every write carries bytes never written
// before, so that a deduplicating target (cairnd) stores every one of them. qemu-img bench writes
// one constant pattern and libiscsi's iscsi-perf only reads; Debian's fio has no libiscsi engine.
//
//   cairn_iscsi_write [--initiator IQN] [--qd N] [--bs BYTES] [--rw write|randwrite]
//                     [--runtime S] [--ramp S] [--seed N] iscsi://HOST[:PORT]/IQN/LUN
//
// One libiscsi session, QD WRITE(16) commands kept in flight through libiscsi's async API and
// poll(). Single-threaded; every buffer belongs to one queue slot and is borrowed by libiscsi
// from submission until that slot's callback. Prints one JSON line and one human line; exits 1
// if any write failed (every SCSI status is checked), 2 on bad arguments or no session.
#include <poll.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>
}

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kStallSeconds = 30;  // no completion for this long with writes in flight: fail
constexpr std::uint32_t kStampBytes = 512;  // the smallest logical block, so the smallest chunk

struct Options {
  std::string url;
  std::string initiator = "iqn.2026-11.io.cairn.bench:iscsi-write";
  int qd = 32;
  std::uint32_t block_bytes = 4096;
  bool random = false;
  double runtime_s = 10;
  double ramp_s = 0;
  std::uint64_t seed = 0;  // 0: a fresh one per run
};

// xoshiro256** (Blackman and Vigna), seeded through splitmix64: about a nanosecond per 8 bytes,
// so refilling a 4 KiB buffer per write costs well under a microsecond.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& word : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }
  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4]{};
};

struct Run;

struct Slot {
  Run* run = nullptr;
  std::vector<unsigned char> data;
  scsi_task* task = nullptr;
  Clock::time_point submitted;
};

// The state of one run; owns the libiscsi context, which owns the session.
struct Run {
  Run() = default;
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  ~Run() {
    if (iscsi != nullptr) {
      submitting = false;  // tasks it cancels must not be resubmitted
      iscsi_destroy_context(iscsi);
    }
  }

  Options opt;
  iscsi_context* iscsi = nullptr;
  int lun = 0;
  std::uint32_t lba_bytes = 512;
  std::uint64_t span_bytes = 0;  // the LUN, rounded down to whole writes
  Rng rng{1};
  std::uint64_t stamp_counter = 0;
  std::uint64_t next_offset_bytes = 0;
  std::vector<Slot> slots;
  bool submitting = true;
  bool measuring = false;
  int in_flight = 0;
  std::uint64_t done = 0;      // good writes in the measured window
  std::uint64_t done_all = 0;  // good writes in the whole run, ramp and drain included
  std::uint64_t errors = 0;
  double latency_sum_us = 0;
  std::string first_error;
  Clock::time_point last_completion;
};

// Random bytes, then at the start of every 512 bytes the run's seed and a counter that never
// repeats within the run: no two writes (nor two sectors) are equal even in theory, and another
// run's seed makes its data differ from this one's.
void fill_unique(Run& run, std::vector<unsigned char>& data) {
  for (std::size_t i = 0; i < data.size(); i += 8) {
    const std::uint64_t word = run.rng.next();
    std::memcpy(data.data() + i, &word, 8);
  }
  for (std::size_t i = 0; i < data.size(); i += kStampBytes) {
    const std::uint64_t stamp = run.stamp_counter++;
    std::memcpy(data.data() + i, &run.opt.seed, 8);
    std::memcpy(data.data() + i + 8, &stamp, 8);
  }
}

std::uint64_t next_offset(Run& run) {
  if (run.opt.random) {
    return run.rng.next() % (run.span_bytes / run.opt.block_bytes) * run.opt.block_bytes;
  }
  const std::uint64_t offset = run.next_offset_bytes;
  run.next_offset_bytes = (offset + run.opt.block_bytes) % run.span_bytes;
  return offset;
}

void on_write_done(iscsi_context* iscsi, int status, void* command_data, void* private_data);

bool submit(Run& run, Slot& slot) {
  fill_unique(run, slot.data);
  const std::uint64_t lba = next_offset(run) / run.lba_bytes;
  slot.submitted = Clock::now();
  slot.task =
      iscsi_write16_task(run.iscsi, run.lun, lba, slot.data.data(), run.opt.block_bytes,
                         static_cast<int>(run.lba_bytes), 0, 0, 0, 0, 0, on_write_done, &slot);
  if (slot.task == nullptr) {
    std::fprintf(stderr, "cairn_iscsi_write: cannot queue a write: %s\n",
                 iscsi_get_error(run.iscsi));
    return false;
  }
  ++run.in_flight;
  return true;
}

void on_write_done(iscsi_context* iscsi, int status, void* /*command_data*/, void* private_data) {
  auto& slot = *static_cast<Slot*>(private_data);
  Run& run = *slot.run;
  const Clock::time_point now = Clock::now();
  --run.in_flight;
  run.last_completion = now;
  if (status != SCSI_STATUS_GOOD) {
    ++run.errors;
    if (run.first_error.empty()) {
      run.first_error = "status " + std::to_string(status);
      if (status == SCSI_STATUS_CHECK_CONDITION) {
        run.first_error += std::string(" ") + scsi_sense_key_str(slot.task->sense.key) + " / " +
                           scsi_sense_ascq_str(slot.task->sense.ascq);
      } else {
        run.first_error += std::string(": ") + iscsi_get_error(iscsi);
      }
    }
  } else {
    ++run.done_all;
    if (run.measuring) {
      ++run.done;
      run.latency_sum_us += std::chrono::duration<double, std::micro>(now - slot.submitted).count();
    }
  }
  scsi_free_scsi_task(slot.task);
  slot.task = nullptr;
  if (run.submitting && !submit(run, slot)) {
    ++run.errors;
    run.submitting = false;
  }
}

bool parse_args(int argc, char** argv, Options& opt) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a.rfind("--", 0) == 0 && v == nullptr) {
      return false;
    }
    if (a == "--initiator") {
      opt.initiator = v;
    } else if (a == "--qd") {
      opt.qd = std::atoi(v);
    } else if (a == "--bs") {
      opt.block_bytes = static_cast<std::uint32_t>(std::strtoul(v, nullptr, 10));
    } else if (a == "--rw") {
      opt.random = std::string(v) == "randwrite";
      if (!opt.random && std::string(v) != "write") {
        return false;
      }
    } else if (a == "--runtime") {
      opt.runtime_s = std::strtod(v, nullptr);
    } else if (a == "--ramp") {
      opt.ramp_s = std::strtod(v, nullptr);
    } else if (a == "--seed") {
      opt.seed = std::strtoull(v, nullptr, 10);
    } else if (a.rfind("--", 0) != 0 && opt.url.empty()) {
      opt.url = a;
      continue;
    } else {
      return false;
    }
    ++i;
  }
  return !opt.url.empty() && opt.qd >= 1 && opt.qd <= 1024 && opt.block_bytes >= kStampBytes &&
         opt.block_bytes % kStampBytes == 0 && opt.runtime_s > 0 && opt.ramp_s >= 0;
}

// Logs in and reads the LUN's geometry; false (with a message) if either fails.
bool connect(Run& run) {
  run.iscsi = iscsi_create_context(run.opt.initiator.c_str());
  iscsi_url* url =
      run.iscsi == nullptr ? nullptr : iscsi_parse_full_url(run.iscsi, run.opt.url.c_str());
  if (url == nullptr) {
    std::fprintf(stderr, "cairn_iscsi_write: bad URL %s: %s\n", run.opt.url.c_str(),
                 run.iscsi == nullptr ? "no context" : iscsi_get_error(run.iscsi));
    return false;
  }
  iscsi_set_targetname(run.iscsi, url->target);
  iscsi_set_session_type(run.iscsi, ISCSI_SESSION_NORMAL);
  iscsi_set_header_digest(run.iscsi, ISCSI_HEADER_DIGEST_NONE);
  // A dropped connection must show as failed writes, not be hidden by a silent re-login.
  iscsi_set_noautoreconnect(run.iscsi, 1);
  run.lun = url->lun;
  const int rc = iscsi_full_connect_sync(run.iscsi, url->portal, url->lun);
  iscsi_destroy_url(url);
  if (rc != 0) {
    std::fprintf(stderr, "cairn_iscsi_write: login failed: %s\n", iscsi_get_error(run.iscsi));
    return false;
  }
  scsi_task* task = iscsi_readcapacity16_sync(run.iscsi, run.lun);
  const auto* cap = task != nullptr && task->status == SCSI_STATUS_GOOD
                        ? static_cast<scsi_readcapacity16*>(scsi_datain_unmarshall(task))
                        : nullptr;
  if (cap != nullptr) {
    run.lba_bytes = cap->block_length;
    run.span_bytes = (cap->returned_lba + 1) * cap->block_length;
  }
  if (task != nullptr) {
    scsi_free_scsi_task(task);
  }
  run.span_bytes -= run.span_bytes % run.opt.block_bytes;
  if (cap == nullptr || run.opt.block_bytes % run.lba_bytes != 0 || run.span_bytes == 0) {
    std::fprintf(stderr,
                 "cairn_iscsi_write: READ CAPACITY(16) failed or the LUN's %" PRIu32
                 "-byte blocks do not fit --bs %" PRIu32 ": %s\n",
                 run.lba_bytes, run.opt.block_bytes, iscsi_get_error(run.iscsi));
    return false;
  }
  return true;
}

// Runs the ramp, the measured window and the drain; returns the window's length in seconds, or
// a negative value if the session failed.
double drive(Run& run) {
  run.slots.resize(static_cast<std::size_t>(run.opt.qd));
  const Clock::time_point start = Clock::now();
  const auto window_start = start + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(run.opt.ramp_s));
  const auto window_end = window_start + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(run.opt.runtime_s));
  Clock::time_point measured_from = window_start;
  Clock::time_point measured_to = window_end;
  run.last_completion = start;
  for (auto& slot : run.slots) {
    slot.run = &run;
    slot.data.resize(run.opt.block_bytes);
    if (!submit(run, slot)) {
      return -1;
    }
  }
  while (run.in_flight > 0) {
    const Clock::time_point now = Clock::now();
    if (run.submitting && !run.measuring && now >= window_start) {
      run.measuring = true;
      measured_from = now;
    }
    if (run.submitting && now >= window_end) {
      run.submitting = false;
      run.measuring = false;
      measured_to = now;
    }
    if (now - run.last_completion > std::chrono::seconds(kStallSeconds)) {
      std::fprintf(stderr, "cairn_iscsi_write: no write completed for %d s\n", kStallSeconds);
      return -1;
    }
    pollfd pfd{iscsi_get_fd(run.iscsi), static_cast<short>(iscsi_which_events(run.iscsi)), 0};
    if (poll(&pfd, 1, 10) < 0) {
      return -1;
    }
    if (pfd.revents != 0 && iscsi_service(run.iscsi, pfd.revents) < 0) {
      std::fprintf(stderr, "cairn_iscsi_write: session failed: %s\n", iscsi_get_error(run.iscsi));
      return -1;
    }
  }
  return std::chrono::duration<double>(measured_to - measured_from).count();
}

}  // namespace

int main(int argc, char** argv) {
  Run run;
  if (!parse_args(argc, argv, run.opt)) {
    std::fprintf(stderr,
                 "usage: cairn_iscsi_write [--initiator IQN] [--qd N] [--bs BYTES]\n"
                 "         [--rw write|randwrite] [--runtime S] [--ramp S] [--seed N]\n"
                 "         iscsi://HOST[:PORT]/IQN/LUN\n"
                 "--bs is a multiple of 512 (default 4096), --qd 1..1024 (default 32)\n");
    return 2;
  }
  if (run.opt.seed == 0) {
    std::random_device entropy;
    run.opt.seed = (std::uint64_t{entropy()} << 32) | entropy();
  }
  run.rng = Rng(run.opt.seed);
  if (!connect(run)) {
    return 2;
  }
  const double seconds = drive(run);
  if (seconds < 0) {
    return 2;
  }
  iscsi_logout_sync(run.iscsi);

  const double iops = seconds > 0 ? static_cast<double>(run.done) / seconds : 0;
  const double mbps = iops * run.opt.block_bytes / 1e6;
  const double mean_us = run.done > 0 ? run.latency_sum_us / static_cast<double>(run.done) : 0;
  std::printf("{\"rw\":\"%s\",\"bs\":%" PRIu32 ",\"qd\":%d,\"seconds\":%.3f,\"writes\":%" PRIu64
              ",\"bytes\":%" PRIu64
              ",\"iops\":%.0f,\"mb_per_s\":%.1f,\"mean_latency_us\":%.1f,"
              "\"errors\":%" PRIu64 ",\"bytes_all\":%" PRIu64 "}\n",
              run.opt.random ? "randwrite" : "write", run.opt.block_bytes, run.opt.qd, seconds,
              run.done, run.done * run.opt.block_bytes, iops, mbps, mean_us, run.errors,
              run.done_all * run.opt.block_bytes);
  std::printf(
      "%s %" PRIu32 " B QD%d: %.0f IOPS, %.1f MB/s, mean latency %.1f us, %" PRIu64 " errors%s%s\n",
      run.opt.random ? "randwrite" : "write", run.opt.block_bytes, run.opt.qd, iops, mbps, mean_us,
      run.errors, run.first_error.empty() ? "" : "; first: ", run.first_error.c_str());
  return run.errors == 0 ? 0 : 1;
}
