// Reservations: the persistent reservation state machine (SPC-5 5.14) with several I_T
// nexuses, its persistence in a MetaStore, the conflict table and RESERVE(6)/RELEASE(6).
#include "target/scsi/reservations.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "io/local_meta_store.h"
#include "io/mem_meta_store.h"
#include "io/sim_log_factory.h"
#include "tests/test_util.h"

namespace cairn::target::scsi {
namespace {

constexpr std::string_view kTarget = "iqn.2026-11.io.cairn:v,t,0x0001";

Nexus nexus(uint64_t id, std::string name, std::string isid = "000000000001") {
  Nexus n;
  n.id = id;
  n.initiator_name = name;
  n.initiator_port = name + ",i,0x" + isid;
  n.target_port = std::string(kTarget);
  return n;
}

struct Attention {
  uint64_t nexus_id;
  Asc asc;
  bool operator==(const Attention&) const = default;
};

class RecordingSink : public UnitAttentionSink {
 public:
  void post(uint64_t nexus_id, Asc asc) override { posted.push_back({nexus_id, asc}); }
  void post_all_except(uint64_t nexus_id, Asc asc) override { posted.push_back({~nexus_id, asc}); }
  std::vector<Attention> posted;
};

// A PERSISTENT RESERVE OUT CDB and its 24-byte basic parameter list.
struct Prout {
  std::array<uint8_t, 10> cdb{};
  std::vector<std::byte> params;
};

void put_be(std::vector<std::byte>& v, size_t at, uint64_t x, int bytes) {
  for (int i = 0; i < bytes; ++i) {
    v[at + i] = std::byte(x >> (8 * (bytes - 1 - i)));
  }
}

Prout prout(uint8_t action, uint64_t key, uint64_t sa_key, uint8_t type = 0, uint8_t flags = 0) {
  Prout p;
  p.cdb[0] = 0x5F;
  p.cdb[1] = action;
  p.cdb[2] = type;
  p.params.assign(24, std::byte{0});
  put_be(p.params, 0, key, 8);
  put_be(p.params, 8, sa_key, 8);
  p.params[20] = std::byte(flags);
  p.cdb[8] = 24;
  return p;
}

// Appends an iSCSI TransportID (SPC-5 7.6.4.6) naming `name`, format 01b if it is a port.
void append_transport_id(std::vector<std::byte>& v, const std::string& name) {
  const size_t additional = std::max<size_t>(20, (name.size() + 1 + 3) / 4 * 4);
  const size_t at = v.size();
  v.resize(at + 4 + additional, std::byte{0});
  v[at] = std::byte((name.find(",i,0x") != std::string::npos ? 0x40 : 0x00) | 0x05);
  put_be(v, at + 2, additional, 2);
  std::memcpy(v.data() + at + 4, name.data(), name.size());
}

void set_length(Prout& p) {
  p.cdb[5] = p.cdb[6] = p.cdb[7] = 0;
  p.cdb[8] = 0;
  std::vector<std::byte> len(4);
  put_be(len, 0, p.params.size(), 4);
  for (int i = 0; i < 4; ++i) {
    p.cdb[5 + i] = static_cast<uint8_t>(len[i]);
  }
}

uint64_t be(const std::vector<std::byte>& v, size_t at, int bytes) {
  uint64_t x = 0;
  for (int i = 0; i < bytes; ++i) {
    x = x << 8 | static_cast<uint8_t>(v[at + i]);
  }
  return x;
}

uint16_t asc_of(const Response& r) {
  EXPECT_EQ(r.sense.size(), 18u);
  return r.sense.size() < 14 ? 0 : static_cast<uint16_t>(r.sense[12] << 8 | r.sense[13]);
}

constexpr std::array<uint8_t, 10> kRead10{0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0};
constexpr std::array<uint8_t, 10> kWrite10{0x2A, 0, 0, 0, 0, 1, 0, 0, 1, 0};
constexpr std::array<uint8_t, 6> kTur{0x00, 0, 0, 0, 0, 0};
constexpr std::array<uint8_t, 6> kInquiry{0x12, 0, 0, 0, 36, 0};
constexpr std::array<uint8_t, 6> kModeSense6{0x1A, 0, 0x3F, 0, 255, 0};
constexpr std::array<uint8_t, 6> kReserve6{0x16, 0, 0, 0, 0, 0};
constexpr std::array<uint8_t, 6> kRelease6{0x17, 0, 0, 0, 0, 0};

class ReservationsTest : public ::testing::Test {
 protected:
  void SetUp() override { reopen(); }

  void reopen() {
    pr.reset();
    auto r = test::run(ctx, Reservations::load(meta, "v", sink));
    ASSERT_TRUE(r);
    pr = std::move(*r);
    pr->attach(a);
    pr->attach(b);
    pr->attach(c);
  }

  Response out(const Nexus& n, const Prout& p) {
    return test::run(ctx, pr->persistent_reserve_out(n, p.cdb, p.params));
  }
  Status out_status(const Nexus& n, const Prout& p) { return out(n, p).status; }

  std::vector<std::byte> in(const Nexus& n, uint8_t action, uint16_t allocation = 4096,
                            Status expect = Status::good) {
    std::array<uint8_t, 10> cdb{0x5E, action, 0, 0, 0, 0, 0, 0, 0, 0};
    cdb[7] = static_cast<uint8_t>(allocation >> 8);
    cdb[8] = static_cast<uint8_t>(allocation);
    std::vector<std::byte> data;
    Response r = test::run(ctx, pr->persistent_reserve_in(n, cdb, data));
    EXPECT_EQ(r.status, expect);
    return data;
  }

  std::vector<uint64_t> keys() {
    auto d = in(a, 0);
    std::vector<uint64_t> k;
    for (size_t at = 8; at + 8 <= d.size(); at += 8) {
      k.push_back(be(d, at, 8));
    }
    return k;
  }
  uint32_t generation() { return static_cast<uint32_t>(be(in(a, 0), 0, 4)); }

  template <size_t N>
  bool conflicts(const Nexus& n, const std::array<uint8_t, N>& cdb) {
    return pr->conflicts(n, cdb);
  }

  asio::io_context ctx;
  io::MemMetaStore meta;
  RecordingSink sink;
  std::unique_ptr<Reservations> pr;
  Nexus a = nexus(1, "iqn.2026-11.test:a");
  Nexus b = nexus(2, "iqn.2026-11.test:b");
  Nexus c = nexus(3, "iqn.2026-11.test:c");
};

TEST_F(ReservationsTest, RegisterReadKeysAndUnregister) {
  EXPECT_EQ(keys(), std::vector<uint64_t>{});
  EXPECT_EQ(out_status(a, prout(0x06, 0, 0x1111)), Status::good);  // REGISTER AND IGNORE
  EXPECT_EQ(keys(), std::vector<uint64_t>{0x1111});
  EXPECT_EQ(generation(), 1u);
  // REGISTER from a registered nexus with the wrong key conflicts (libiscsi's re-register).
  EXPECT_EQ(out_status(a, prout(0x00, 0, 0x1112)), Status::reservation_conflict);
  // The right key changes it.
  EXPECT_EQ(out_status(a, prout(0x00, 0x1111, 0x2222)), Status::good);
  EXPECT_EQ(keys(), std::vector<uint64_t>{0x2222});
  // An unregistered nexus registering with a non-zero RESERVATION KEY conflicts.
  EXPECT_EQ(out_status(b, prout(0x00, 0x5, 0x3333)), Status::reservation_conflict);
  EXPECT_EQ(out_status(b, prout(0x00, 0, 0x3333)), Status::good);
  EXPECT_EQ(keys(), (std::vector<uint64_t>{0x2222, 0x3333}));
  // Unregister both; an unregistered nexus registering key 0 is a no-op.
  EXPECT_EQ(out_status(a, prout(0x00, 0x2222, 0)), Status::good);
  EXPECT_EQ(out_status(c, prout(0x06, 0, 0)), Status::good);
  EXPECT_EQ(keys(), std::vector<uint64_t>{0x3333});
  EXPECT_EQ(generation(), 4u);  // register a, change a, register b, unregister a
}

TEST_F(ReservationsTest, ReadKeysTruncatedKeepsAdditionalLength) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0x77)), Status::good);
  auto d = in(a, 0, 8);
  ASSERT_EQ(d.size(), 8u);
  EXPECT_EQ(be(d, 4, 4), 8u);  // not altered by the allocation length (6.15.2)
}

// The access each type leaves to a second registered and unregistered nexus, as libiscsi's
// ProutReserve access tests check it: {reg read, reg write, unreg read, unreg write}.
TEST_F(ReservationsTest, AccessUnderEveryType) {
  struct Row {
    uint8_t type;
    bool reg_read, reg_write, unreg_read, unreg_write;
  };
  const Row rows[] = {
      {1, true, false, true, false},    // write exclusive
      {3, false, false, false, false},  // exclusive access
      {5, true, true, true, false},     // write exclusive, registrants only
      {6, true, true, false, false},    // exclusive access, registrants only
      {7, true, true, true, false},     // write exclusive, all registrants
      {8, true, true, false, false},    // exclusive access, all registrants
  };
  for (const auto& row : rows) {
    SCOPED_TRACE(row.type);
    ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
    ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
    ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, row.type)), Status::good);
    EXPECT_FALSE(conflicts(a, kRead10));
    EXPECT_FALSE(conflicts(a, kWrite10));
    EXPECT_EQ(!conflicts(b, kRead10), row.reg_read);
    EXPECT_EQ(!conflicts(b, kWrite10), row.reg_write);
    ASSERT_EQ(out_status(b, prout(0x00, 0xB, 0)), Status::good);
    EXPECT_EQ(!conflicts(b, kRead10), row.unreg_read);
    EXPECT_EQ(!conflicts(b, kWrite10), row.unreg_write);
    // TEST UNIT READY and INQUIRY are allowed under every type.
    EXPECT_FALSE(conflicts(b, kTur));
    EXPECT_FALSE(conflicts(b, kInquiry));
    ASSERT_EQ(out_status(a, prout(0x02, 0xA, 0, row.type)), Status::good);
    EXPECT_FALSE(conflicts(b, kWrite10));
    ASSERT_EQ(out_status(a, prout(0x00, 0xA, 0)), Status::good);
  }
}

TEST_F(ReservationsTest, ReadReservationAndReserveRules) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
  EXPECT_EQ(be(in(a, 1), 4, 4), 0u);  // not reserved
  // RESERVE with the wrong key, or unregistered, conflicts.
  EXPECT_EQ(out_status(a, prout(0x01, 0xB, 0, 1)), Status::reservation_conflict);
  EXPECT_EQ(out_status(c, prout(0x01, 0, 0, 1)), Status::reservation_conflict);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 3)), Status::good);
  auto d = in(b, 1);
  EXPECT_EQ(be(d, 4, 4), 16u);
  EXPECT_EQ(be(d, 8, 8), 0xAu);
  EXPECT_EQ(static_cast<uint8_t>(d[21]), 3);
  EXPECT_EQ(pr->state().generation, 2u);  // RESERVE does not bump the generation
  // The holder may repeat it; another type or another nexus conflicts.
  EXPECT_EQ(out_status(a, prout(0x01, 0xA, 0, 3)), Status::good);
  EXPECT_EQ(out_status(a, prout(0x01, 0xA, 0, 1)), Status::reservation_conflict);
  EXPECT_EQ(out_status(b, prout(0x01, 0xB, 0, 3)), Status::reservation_conflict);
  // RELEASE by a non-holder is a no-op; with the wrong type it is an error.
  EXPECT_EQ(out_status(b, prout(0x02, 0xB, 0, 3)), Status::good);
  EXPECT_EQ(pr->state().type, PrType::exclusive_access);
  Response r = out(a, prout(0x02, 0xA, 0, 1));
  EXPECT_EQ(r.status, Status::check_condition);
  EXPECT_EQ(asc_of(r), 0x2604);
  EXPECT_EQ(out_status(a, prout(0x02, 0xA, 0, 3)), Status::good);
  EXPECT_EQ(be(in(a, 1), 4, 4), 0u);
  // All-registrants types report key zero.
  ASSERT_EQ(out_status(b, prout(0x01, 0xB, 0, 7)), Status::good);
  d = in(a, 1);
  EXPECT_EQ(be(d, 8, 8), 0u);
  EXPECT_EQ(static_cast<uint8_t>(d[21]), 7);
  // Every registrant holds it: a may release it, and b gets RESERVATIONS RELEASED.
  sink.posted.clear();
  EXPECT_EQ(out_status(a, prout(0x02, 0xA, 0, 7)), Status::good);
  EXPECT_EQ(sink.posted, (std::vector<Attention>{{2, Asc::reservations_released}}));
}

TEST_F(ReservationsTest, UnregisteringTheHolderReleases) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 5)), Status::good);
  sink.posted.clear();
  ASSERT_EQ(out_status(a, prout(0x00, 0xA, 0)), Status::good);
  EXPECT_EQ(pr->state().type, PrType::none);
  EXPECT_EQ(sink.posted, (std::vector<Attention>{{2, Asc::reservations_released}}));
  // An all-registrants reservation survives until its last registrant leaves.
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 8)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x00, 0xA, 0)), Status::good);
  EXPECT_EQ(pr->state().type, PrType::exclusive_access_all_registrants);
  EXPECT_FALSE(conflicts(b, kWrite10));
  EXPECT_TRUE(conflicts(a, kRead10));
  ASSERT_EQ(out_status(b, prout(0x00, 0xB, 0)), Status::good);
  EXPECT_EQ(pr->state().type, PrType::none);
}

TEST_F(ReservationsTest, ClearRemovesEverything) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 3)), Status::good);
  const uint32_t before = generation();
  EXPECT_EQ(out_status(c, prout(0x03, 0xC, 0)), Status::reservation_conflict);
  EXPECT_EQ(out_status(b, prout(0x03, 0xA, 0)), Status::reservation_conflict);
  sink.posted.clear();
  ASSERT_EQ(out_status(a, prout(0x03, 0xA, 0)), Status::good);
  EXPECT_EQ(keys(), std::vector<uint64_t>{});
  EXPECT_EQ(generation(), before + 1);
  EXPECT_EQ(pr->state().type, PrType::none);
  EXPECT_EQ(sink.posted, (std::vector<Attention>{{2, Asc::reservations_preempted}}));
}

TEST_F(ReservationsTest, PreemptRegistrationWithoutReservation) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
  const uint32_t before = generation();
  sink.posted.clear();
  // libiscsi's ProutPreempt: b preempts a's key with no reservation present.
  ASSERT_EQ(out_status(b, prout(0x04, 0xB, 0xA, 3)), Status::good);
  EXPECT_EQ(keys(), std::vector<uint64_t>{0xB});
  EXPECT_EQ(generation(), before + 1);
  EXPECT_EQ(sink.posted, (std::vector<Attention>{{1, Asc::registrations_preempted}}));
  EXPECT_EQ(pr->state().type, PrType::none);
  // A key nobody has conflicts; key zero without a reservation is an invalid field.
  EXPECT_EQ(out_status(b, prout(0x04, 0xB, 0x99, 3)), Status::reservation_conflict);
  Response r = out(b, prout(0x04, 0xB, 0, 3));
  EXPECT_EQ(r.status, Status::check_condition);
  EXPECT_EQ(asc_of(r), 0x2600);
  EXPECT_EQ(r.sense[15], 0x80);  // SKSV, field in the parameter list
  EXPECT_EQ(r.sense[17], 8);
}

TEST_F(ReservationsTest, PreemptHolderTakesTheReservation) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
  ASSERT_EQ(out_status(c, prout(0x06, 0, 0xC)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 1)), Status::good);
  sink.posted.clear();
  ASSERT_EQ(out_status(b, prout(0x05, 0xB, 0xA, 3)), Status::good);  // PREEMPT AND ABORT
  EXPECT_EQ(keys(), (std::vector<uint64_t>{0xB, 0xC}));
  EXPECT_EQ(pr->state().type, PrType::exclusive_access);
  EXPECT_EQ(be(in(a, 1), 8, 8), 0xBu);
  EXPECT_TRUE(conflicts(a, kRead10));
  EXPECT_FALSE(conflicts(b, kWrite10));
  // a lost its registration; c saw the type change.
  EXPECT_EQ(sink.posted, (std::vector<Attention>{{1, Asc::registrations_preempted},
                                                 {3, Asc::reservations_released}}));
}

TEST_F(ReservationsTest, PreemptAllRegistrantsWithKeyZero) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 7)), Status::good);
  ASSERT_EQ(out_status(b, prout(0x04, 0xB, 0, 1)), Status::good);
  EXPECT_EQ(keys(), std::vector<uint64_t>{0xB});
  EXPECT_EQ(pr->state().type, PrType::write_exclusive);
  EXPECT_TRUE(conflicts(a, kWrite10));
  EXPECT_FALSE(conflicts(a, kRead10));
}

TEST_F(ReservationsTest, PersistsAcrossReloadWithAptpl) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA, 0, 0x01)), Status::good);  // APTPL
  ASSERT_EQ(out_status(b, prout(0x06, 0, 0xB, 0, 0x01)), Status::good);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 6)), Status::good);
  auto report = in(a, 2);
  EXPECT_EQ(static_cast<uint8_t>(report[3]) & 0x01, 1);  // PTPL_A
  const uint32_t gen = generation();
  reopen();
  EXPECT_EQ(keys(), (std::vector<uint64_t>{0xA, 0xB}));
  EXPECT_EQ(generation(), gen);
  EXPECT_EQ(pr->state().type, PrType::exclusive_access_registrants_only);
  EXPECT_TRUE(conflicts(c, kRead10));
  EXPECT_FALSE(conflicts(b, kWrite10));
  // The stored record decodes to the same state.
  auto kv = test::run(ctx, meta.get("scsi-pr/v"));
  ASSERT_TRUE(kv && *kv);
  auto decoded = Reservations::decode((*kv)->value);
  ASSERT_TRUE(decoded);
  EXPECT_EQ(decoded->registrations.size(), 2u);
  EXPECT_EQ(decoded->holder_initiator_port, a.initiator_port);
  // Without APTPL, a reload (power cycle) drops everything but the generation.
  ASSERT_EQ(out_status(a, prout(0x00, 0xA, 0xA)), Status::good);  // APTPL now 0
  const uint32_t gen2 = generation();
  reopen();
  EXPECT_EQ(keys(), std::vector<uint64_t>{});
  EXPECT_EQ(pr->state().type, PrType::none);
  EXPECT_EQ(generation(), gen2);
  // And the next change is stored over the old record (the revision was picked up).
  EXPECT_EQ(out_status(a, prout(0x06, 0, 0x5)), Status::good);
}

// A PR OUT that completed survives a power cut of the LocalMetaStore's disk right after it:
// the state is durable before the command's status goes out.
TEST(ReservationsDurability, CompletedChangesSurvivePowerCuts) {
  asio::io_context ctx;
  io::SimLogFactory logs(64 * 1024);  // small, so the store compacts as well
  RecordingSink sink;
  const Nexus a = nexus(1, "iqn.2026-11.test:a");
  uint32_t expected_generation = 0;
  for (uint64_t round = 0; round < 20; ++round) {
    SCOPED_TRACE(round);
    auto log = test::run(ctx, logs.open("meta"));
    ASSERT_TRUE(log);
    auto meta = test::run(ctx, io::LocalMetaStore::open(std::move(*log), ctx.get_executor()));
    ASSERT_TRUE(meta);
    auto pr = test::run(ctx, Reservations::load(**meta, "v", sink));
    ASSERT_TRUE(pr);
    const auto& s = (*pr)->state();
    EXPECT_EQ(s.generation, expected_generation);
    if (round > 0) {
      ASSERT_EQ(s.registrations.size(), 1u);
      EXPECT_EQ(s.registrations[0].key, 0x1000 + round - 1);
      EXPECT_EQ(s.type, PrType::write_exclusive);
    }
    // Register (APTPL) with a new key and reserve, then cut the power.
    Prout p = prout(0x06, 0, 0x1000 + round, 0, 0x01);
    ASSERT_EQ(test::run(ctx, (*pr)->persistent_reserve_out(a, p.cdb, p.params)).status,
              Status::good);
    Prout r = prout(0x01, 0x1000 + round, 0, 1);
    ASSERT_EQ(test::run(ctx, (*pr)->persistent_reserve_out(a, r.cdb, r.params)).status,
              Status::good);
    ++expected_generation;
    pr->reset();
    meta->reset();
    logs.power_cut_all(round * 7919 + 1);
  }
}

TEST_F(ReservationsTest, DecodeRejectsMalformedState) {
  EXPECT_FALSE(Reservations::decode(""));
  EXPECT_FALSE(Reservations::decode("[]"));
  EXPECT_FALSE(Reservations::decode(R"({"version":2})"));
  EXPECT_FALSE(Reservations::decode(
      R"({"version":1,"generation":1,"aptpl":true,"registrations":[{"initiator_port":"x",)"
      R"("target_port":"","relative_target_port":1,"key":"12"}]})"));
  // A reservation whose holder is not registered.
  EXPECT_FALSE(Reservations::decode(
      R"({"version":1,"generation":1,"aptpl":true,"registrations":[],)"
      R"("reservation":{"type":1,"holder_initiator_port":"x","holder_target_port":""}})"));
  Reservations::State s;
  s.generation = 7;
  s.aptpl = true;
  s.registrations.push_back({"iqn.x,i,0x1", "", 1, 0xFFFFFFFFFFFFFFFFull});
  s.type = PrType::write_exclusive_all_registrants;
  auto back = Reservations::decode(Reservations::encode(s));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->registrations[0].key, 0xFFFFFFFFFFFFFFFFull);
  EXPECT_EQ(back->type, PrType::write_exclusive_all_registrants);
}

TEST_F(ReservationsTest, StoreFailureChangesNothing) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  // Someone else rewrote the record: the CAS fails and the state stays.
  auto kv = test::run(ctx, meta.get("scsi-pr/v"));
  ASSERT_TRUE(kv && *kv);
  ASSERT_TRUE(test::run(ctx, meta.put_if("scsi-pr/v", (*kv)->value, (*kv)->mod_revision)));
  Response r = out(b, prout(0x06, 0, 0xB));
  EXPECT_EQ(r.status, Status::check_condition);
  EXPECT_EQ(r.sense[2], static_cast<uint8_t>(SenseKey::aborted_command));
  EXPECT_EQ(keys(), std::vector<uint64_t>{0xA});
}

TEST_F(ReservationsTest, BadCdbsAndParameterLists) {
  // Parameter list length other than 24: PARAMETER LIST LENGTH ERROR.
  Prout p = prout(0x06, 0, 0xA);
  p.params.resize(23);
  set_length(p);
  Response r = out(a, p);
  EXPECT_EQ(r.status, Status::check_condition);
  EXPECT_EQ(asc_of(r), 0x1A00);
  EXPECT_EQ(r.transfer_bytes, 23u);
  p = prout(0x06, 0, 0xA);
  p.params.resize(32);
  set_length(p);
  EXPECT_EQ(asc_of(out(a, p)), 0x1A00);
  // Unknown service action: INVALID FIELD IN CDB pointing at byte 1.
  r = out(a, prout(0x08, 0, 0xA));
  EXPECT_EQ(asc_of(r), 0x2400);
  EXPECT_EQ(r.sense[15], 0xC0 | 0x08 | 4);
  EXPECT_EQ(r.sense[17], 1);
  // Bad type and bad scope for RESERVE.
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  r = out(a, prout(0x01, 0xA, 0, 2));
  EXPECT_EQ(asc_of(r), 0x2400);
  EXPECT_EQ(r.sense[17], 2);
  EXPECT_EQ(asc_of(out(a, prout(0x01, 0xA, 0, 0x11))), 0x2400);
  // SPEC_I_PT with REGISTER AND IGNORE EXISTING KEY, or from a registered nexus.
  Prout spec = prout(0x06, 0, 0xB, 0, 0x08);
  spec.params.resize(28);
  append_transport_id(spec.params, c.initiator_port);
  put_be(spec.params, 24, spec.params.size() - 28, 4);
  set_length(spec);
  EXPECT_EQ(asc_of(out(b, spec)), 0x2600);
  spec.cdb[1] = 0x00;
  put_be(spec.params, 0, 0xA, 8);
  EXPECT_EQ(asc_of(out(a, spec)), 0x2600);
  // PR IN with an unknown service action.
  in(a, 4, 4096, Status::check_condition);
  in(a, 0x1F, 4096, Status::check_condition);
}

TEST_F(ReservationsTest, SpecIPtAndAllTgPtRegisterOtherPorts) {
  // a registers itself, c's port and every port of initiator b (format 00b).
  Prout p = prout(0x00, 0, 0xA, 0, 0x08 | 0x04);
  p.params.resize(28);
  append_transport_id(p.params, c.initiator_port);
  append_transport_id(p.params, b.initiator_name);
  put_be(p.params, 24, p.params.size() - 28, 4);
  set_length(p);
  ASSERT_EQ(out_status(a, p), Status::good);
  EXPECT_EQ(keys(), (std::vector<uint64_t>{0xA, 0xA, 0xA}));
  Nexus b2 = nexus(5, "iqn.2026-11.test:b", "00000000000f");
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 5)), Status::good);
  EXPECT_FALSE(conflicts(b2, kWrite10));  // registered through the initiator name
  EXPECT_FALSE(conflicts(c, kWrite10));
  Nexus d = nexus(6, "iqn.2026-11.test:d");
  EXPECT_TRUE(conflicts(d, kWrite10));
  // READ FULL STATUS lists the three with their TransportIDs; a holds the reservation.
  auto full = in(a, 3);
  size_t at = 8;
  std::vector<std::string> names;
  int holders = 0;
  while (at < full.size()) {
    EXPECT_EQ(be(full, at, 8), 0xAu);
    EXPECT_EQ(static_cast<uint8_t>(full[at + 12]) & 0x02, 0x02);  // ALL_TG_PT
    if ((static_cast<uint8_t>(full[at + 12]) & 0x01) != 0) {
      ++holders;
      EXPECT_EQ(static_cast<uint8_t>(full[at + 13]), 5);
    }
    const size_t tid = be(full, at + 20, 4);
    names.emplace_back(reinterpret_cast<const char*>(full.data() + at + 28));
    at += 24 + tid;
  }
  EXPECT_EQ(at, full.size());
  EXPECT_EQ(be(full, 4, 4), full.size() - 8);
  EXPECT_EQ(holders, 1);
  EXPECT_EQ(names,
            (std::vector<std::string>{a.initiator_port, c.initiator_port, b.initiator_name}));
  // Naming an already registered nexus again is an invalid field.
  Prout again = prout(0x00, 0, 0xD, 0, 0x08);
  again.params.resize(28);
  append_transport_id(again.params, c.initiator_port);
  put_be(again.params, 24, again.params.size() - 28, 4);
  set_length(again);
  EXPECT_EQ(asc_of(out(d, again)), 0x2600);
}

TEST_F(ReservationsTest, RegisterAndMove) {
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  // Not the holder yet: conflict.
  Prout mv;
  mv.cdb = {0x5F, 0x07, 0x01, 0, 0, 0, 0, 0, 0, 0};
  mv.params.assign(24, std::byte{0});
  put_be(mv.params, 0, 0xA, 8);
  put_be(mv.params, 8, 0xBB, 8);
  mv.params[17] = std::byte{0x02};  // UNREG
  put_be(mv.params, 18, 1, 2);
  append_transport_id(mv.params, b.initiator_port);
  put_be(mv.params, 20, mv.params.size() - 24, 4);
  set_length(mv);
  EXPECT_EQ(out_status(a, mv), Status::reservation_conflict);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 1)), Status::good);
  ASSERT_EQ(out_status(a, mv), Status::good);
  EXPECT_EQ(keys(), std::vector<uint64_t>{0xBB});
  EXPECT_EQ(be(in(a, 1), 8, 8), 0xBBu);
  EXPECT_FALSE(conflicts(b, kWrite10));
  EXPECT_TRUE(conflicts(a, kWrite10));
}

TEST_F(ReservationsTest, ReportCapabilities) {
  auto d = in(a, 2);
  ASSERT_EQ(d.size(), 8u);
  EXPECT_EQ(be(d, 0, 2), 8u);
  EXPECT_EQ(static_cast<uint8_t>(d[2]), 0x1D);  // CRH, SIP_C, ATP_C, PTPL_C
  EXPECT_LE((static_cast<uint8_t>(d[3]) >> 4) & 0x7, 5);
  EXPECT_EQ(be(d, 4, 2), 0xEA01u);  // every type
}

TEST_F(ReservationsTest, Reserve6) {
  EXPECT_EQ(test::run(ctx, pr->reserve6(a, kReserve6)).status, Status::good);
  EXPECT_EQ(test::run(ctx, pr->reserve6(a, kReserve6)).status, Status::good);  // again
  EXPECT_TRUE(conflicts(b, kReserve6));
  EXPECT_EQ(test::run(ctx, pr->reserve6(b, kReserve6)).status, Status::reservation_conflict);
  // RELEASE from another nexus is a no-op that does not conflict.
  EXPECT_FALSE(conflicts(b, kRelease6));
  EXPECT_EQ(test::run(ctx, pr->release6(b, kRelease6)).status, Status::good);
  EXPECT_TRUE(pr->reserved6());
  EXPECT_FALSE(conflicts(a, kModeSense6));
  EXPECT_TRUE(conflicts(b, kModeSense6));
  EXPECT_TRUE(conflicts(b, kRead10));
  EXPECT_TRUE(conflicts(b, kTur));
  EXPECT_FALSE(conflicts(b, kInquiry));
  EXPECT_EQ(out_status(b, prout(0x06, 0, 0xB)), Status::reservation_conflict);
  EXPECT_EQ(test::run(ctx, pr->release6(a, kRelease6)).status, Status::good);
  EXPECT_FALSE(conflicts(b, kRead10));
  EXPECT_EQ(test::run(ctx, pr->reserve6(b, kReserve6)).status, Status::good);
  // Logout of the holder, and a LUN reset, drop it.
  pr->detach(b);
  EXPECT_FALSE(pr->reserved6());
  EXPECT_EQ(test::run(ctx, pr->reserve6(a, kReserve6)).status, Status::good);
  pr->reset();
  EXPECT_FALSE(pr->reserved6());
  // The third-party form is not supported.
  constexpr std::array<uint8_t, 6> kThirdParty{0x16, 0x10, 0, 0, 0, 0};
  EXPECT_EQ(asc_of(test::run(ctx, pr->reserve6(a, kThirdParty))), 0x2400);
  // With persistent registrations RESERVE/RELEASE conflict for all but the holder.
  ASSERT_EQ(out_status(a, prout(0x06, 0, 0xA)), Status::good);
  EXPECT_EQ(test::run(ctx, pr->reserve6(a, kReserve6)).status, Status::reservation_conflict);
  ASSERT_EQ(out_status(a, prout(0x01, 0xA, 0, 1)), Status::good);
  EXPECT_EQ(test::run(ctx, pr->reserve6(a, kReserve6)).status, Status::good);
  EXPECT_FALSE(pr->reserved6());
  EXPECT_TRUE(conflicts(b, kReserve6));
}

}  // namespace
}  // namespace cairn::target::scsi
