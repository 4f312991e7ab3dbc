// The login and full feature phases end to end over an in-memory stream, against a real
// scsi::Device on an in-memory volume: login responses and negotiated keys, CHAP refusal,
// writes through immediate data, unsolicited Data-Out and R2T, reads with phase-collapsed
// status, residuals, the CmdSN window as the initiator sees it, NOP, Text and Logout.
#include "target/iscsi/session.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "blockmap/volume_manager.h"
#include "io/chunk_hash.h"
#include "io/mem_chunk_store.h"
#include "io/mem_meta_store.h"
#include "io/reactor.h"
#include "target/iscsi/login.h"

namespace cairn::target::iscsi {
namespace {

// Input is the initiator's PDUs, all sent up front; output collects what the target writes.
class ScriptStream final : public ByteStream {
 public:
  explicit ScriptStream(std::vector<std::byte> input) : input_(std::move(input)) {}
  Task<std::error_code> read(std::span<std::byte> buffer) override {
    if (closed_ || input_.size() - pos_ < buffer.size()) {
      co_return make_error_code(asio::error::eof);
    }
    std::memcpy(buffer.data(), input_.data() + pos_, buffer.size());
    pos_ += buffer.size();
    co_return std::error_code{};
  }
  Task<std::error_code> write(std::span<const asio::const_buffer> buffers) override {
    for (const auto& b : buffers) {
      const auto* p = static_cast<const std::byte*>(b.data());
      output.insert(output.end(), p, p + b.size());
    }
    co_return std::error_code{};
  }
  void close() noexcept override { closed_ = true; }
  [[nodiscard]] const std::string& peer() const noexcept override { return peer_; }

  std::vector<std::byte> output;

 private:
  std::vector<std::byte> input_;
  std::size_t pos_ = 0;
  bool closed_ = false;
  std::string peer_ = "test";
};

std::vector<std::byte> text(std::initializer_list<std::pair<std::string, std::string>> keys) {
  std::vector<std::byte> out;
  for (const auto& [k, v] : keys) {
    append_text(out, k, v);
  }
  return out;
}

std::string value(const Pdu& pdu, std::string_view key) {
  auto kv = parse_text(pdu.data);
  for (const auto& [k, v] : *kv) {
    if (k == key) {
      return v;
    }
  }
  return "<missing>";
}

class SessionTest : public ::testing::Test {
 protected:
  std::vector<std::byte> key_ = std::vector<std::byte>(32, std::byte{7});
  io::ChunkHasher hasher_{io::ChunkHasher::Kind::xxh3, key_};
  io::ReactorPool reactors_{1, 8};
  io::MemChunkStore store_{hasher_};
  io::MemMetaStore meta_;
  blockmap::VolumeManager volumes_{reactors_, store_, meta_};
  VolumeDirectory directory_{volumes_};
  TargetOptions target_;
  SessionOptions session_;
  std::vector<std::byte> in_;
  uint32_t cmd_sn_ = 10;

  void SetUp() override {
    target_.queue_depth = 4;
    session_.queue_depth = 4;
    session_.nop_interval = std::chrono::seconds(0);
    blockmap::VolumeConfig c;
    c.name = "disk";
    c.size_bytes = 1 << 20;
    c.block_size_bytes = 512;
    run([&]() -> Task<void> { EXPECT_TRUE(co_await volumes_.create(c)); });
    c.name = "secret";
    c.access.chap_user = "alice";
    c.access.chap_secret = "alicesecret12";
    run([&]() -> Task<void> { EXPECT_TRUE(co_await volumes_.create(c)); });
  }

  template <class Make>
  void run(Make make) {
    bool done = false;
    asio::io_context& context = reactors_.at(0).context();
    asio::co_spawn(context, make(), [&](std::exception_ptr e) {
      EXPECT_FALSE(e);
      done = true;
    });
    context.restart();
    while (!done && context.run_one() > 0) {
    }
    ASSERT_TRUE(done);
  }

  void put(const Bhs& h, std::vector<std::byte> data = {}) {
    Pdu p;
    p.bhs = h;
    p.data = std::move(data);
    auto bytes = encode_pdu(p, false, false);
    in_.insert(in_.end(), bytes.begin(), bytes.end());
  }

  void login(const std::string& volume) {
    put(make_login_request(true, 0, 1, 0x400001, 0, 1, cmd_sn_),
        text({{"InitiatorName", "iqn.2026-11.io.test:init"},
              {"SessionType", "Normal"},
              {"TargetName", "iqn.2026-11.io.cairn:" + volume},
              {"AuthMethod", "None"}}));
    put(make_login_request(true, 1, 3, 0x400001, 0, 2, cmd_sn_),
        text({{"HeaderDigest", "None"},
              {"DataDigest", "None"},
              {"MaxRecvDataSegmentLength", "1024"},
              {"InitialR2T", "No"},
              {"ImmediateData", "Yes"},
              {"FirstBurstLength", "2048"},
              {"MaxBurstLength", "4096"}}));
  }

  // TEST UNIT READY takes the POWER ON unit attention every new nexus starts with.
  void clear_unit_attention() { command(0xA0A0, std::vector<uint8_t>(6, 0), false, false, 0); }

  uint32_t command(uint32_t itt, const std::vector<uint8_t>& cdb, bool read, bool write,
                   uint32_t edtl, std::vector<std::byte> immediate = {}, bool final = true,
                   bool immediate_bit = false) {
    Bhs h = make_scsi_command(itt, 0, read, write, edtl, cmd_sn_, cdb, final);
    if (immediate_bit) {
      h.b[0] |= 0x40;
    } else {
      cmd_sn_++;
    }
    put(h, std::move(immediate));
    return itt;
  }

  // Runs login and the session over everything put so far; returns the target's PDUs.
  std::vector<Pdu> serve() {
    ScriptStream stream(in_);
    run([&]() -> Task<void> {
      blockmap::Volume* volume = nullptr;
      std::function<bool(const LoginResult&)> admit = [&](const LoginResult& r) {
        volume = volumes_.acquire(r.volume);
        return volume != nullptr;
      };
      auto result = co_await iscsi::login(stream, target_, directory_, "127.0.0.1:3260", admit);
      if (!result) {
        co_return;
      }
      scsi::DeviceOptions options;
      auto device = co_await scsi::Device::open(*volume, meta_, options);
      EXPECT_TRUE(device);
      scsi::Nexus nexus;
      nexus.id = 1;
      nexus.initiator_name = result->initiator_name;
      nexus.initiator_port = result->initiator_name + ",i,0x000000400001";
      nexus.target_port = result->target_name + ",t,0x0001";
      (*device)->attach(nexus);
      {
        auto executor = co_await asio::this_coro::executor;
        Session session(stream, executor, *result, device->get(), nexus, target_, directory_,
                        "127.0.0.1:3260", session_);
        co_await session.run();
      }
      (*device)->detach(nexus);
      volumes_.release(volume);
    });
    std::vector<Pdu> out;
    std::span<const std::byte> rest = stream.output;
    while (!rest.empty()) {
      auto d = decode_pdu(rest, false, false, 1 << 20);
      EXPECT_TRUE(d.pdu);
      if (!d.pdu) {
        break;
      }
      out.push_back(std::move(*d.pdu));
      rest = rest.subspan(d.consumed);
    }
    return out;
  }
};

std::vector<uint8_t> cdb10(uint8_t op, uint32_t lba, uint16_t blocks) {
  return {op,
          0,
          static_cast<uint8_t>(lba >> 24),
          static_cast<uint8_t>(lba >> 16),
          static_cast<uint8_t>(lba >> 8),
          static_cast<uint8_t>(lba),
          0,
          static_cast<uint8_t>(blocks >> 8),
          static_cast<uint8_t>(blocks),
          0};
}

std::vector<std::byte> pattern(std::size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    v[i] = std::byte{static_cast<uint8_t>(i * 7 + seed)};
  }
  return v;
}

TEST_F(SessionTest, LoginNegotiatesAndLogsOut) {
  login("disk");
  put(make_logout_request(9, 0, cmd_sn_));
  auto out = serve();
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].bhs.opcode(), Opcode::login_response);
  EXPECT_EQ(out[0].bhs.b[36], 0);  // status class: success
  EXPECT_TRUE(login_transit(out[0].bhs));
  EXPECT_EQ(login_nsg(out[0].bhs), 1);
  EXPECT_EQ(value(out[0], "AuthMethod"), "None");
  EXPECT_EQ(value(out[0], "TargetPortalGroupTag"), "1");
  const Pdu& final = out[1];
  EXPECT_EQ(login_nsg(final.bhs), 3);
  EXPECT_NE(login_tsih(final.bhs), 0);
  EXPECT_EQ(final.bhs.u32(28), 10u);  // ExpCmdSN: the login's CmdSN
  EXPECT_EQ(final.bhs.u32(32), 13u);  // MaxCmdSN: a window of 4
  EXPECT_EQ(value(final, "MaxRecvDataSegmentLength"), "262144");
  EXPECT_EQ(value(final, "InitialR2T"), "No");
  EXPECT_EQ(value(final, "FirstBurstLength"), "2048");
  EXPECT_EQ(out[2].bhs.opcode(), Opcode::logout_response);
  EXPECT_EQ(out[2].bhs.u32(24), final.bhs.u32(24) + 1);  // StatSN advances
}

TEST_F(SessionTest, ChapVolumeRefusesALoginWithoutChap) {
  login("secret");
  auto out = serve();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].bhs.b[36], 0x02);
  EXPECT_EQ(out[0].bhs.b[37], 0x01);  // authentication failure
}

TEST_F(SessionTest, UnknownTargetIsNotFound) {
  login("nosuch");
  auto out = serve();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].bhs.b[37], 0x03);
}

TEST_F(SessionTest, WritesThroughImmediateUnsolicitedAndSolicitedDataReadBack) {
  login("disk");
  clear_unit_attention();
  auto data = pattern(8192, 3);
  // 8 KiB: 1 KiB immediate, 1 KiB unsolicited (FirstBurstLength 2 KiB), the rest by R2T (two
  // bursts of MaxBurstLength 4 KiB, then 2 KiB... offsets 2048+4096 > 8192: 4096 and 2048).
  uint32_t w = command(0x100, cdb10(0x2A, 0, 16), false, true, 8192,
                       std::vector<std::byte>(data.begin(), data.begin() + 1024), false);
  put(make_data_out(w, kReservedTag, 0, true, 0, 1024),
      std::vector<std::byte>(data.begin() + 1024, data.begin() + 2048));
  // The target's first R2T has TTT 1 (offset 2048, 4096 bytes), the second TTT 2.
  put(make_data_out(w, 1, 0, false, 0, 2048),
      std::vector<std::byte>(data.begin() + 2048, data.begin() + 3072));
  put(make_data_out(w, 1, 0, true, 1, 3072),
      std::vector<std::byte>(data.begin() + 3072, data.begin() + 6144));
  put(make_data_out(w, 2, 0, true, 0, 6144),
      std::vector<std::byte>(data.begin() + 6144, data.end()));
  uint32_t r = command(0x101, cdb10(0x28, 0, 16), true, false, 8192);
  put(make_logout_request(9, 0, cmd_sn_));
  auto out = serve();
  std::vector<const Pdu*> r2ts, data_in, responses;
  std::vector<std::byte> read_back;
  for (const Pdu& p : out) {
    if (p.bhs.opcode() == Opcode::r2t) {
      r2ts.push_back(&p);
    } else if (p.bhs.opcode() == Opcode::data_in) {
      EXPECT_EQ(p.bhs.itt(), r);
      EXPECT_EQ(p.bhs.buffer_offset(), read_back.size());
      EXPECT_LE(p.data.size(), 1024u);  // the initiator's MaxRecvDataSegmentLength
      read_back.insert(read_back.end(), p.data.begin(), p.data.end());
      data_in.push_back(&p);
    } else if (p.bhs.opcode() == Opcode::scsi_response) {
      responses.push_back(&p);
    }
  }
  ASSERT_EQ(r2ts.size(), 2u);
  EXPECT_EQ(r2ts[0]->bhs.ttt(), 1u);
  EXPECT_EQ(r2ts[0]->bhs.buffer_offset(), 2048u);
  EXPECT_EQ(r2ts[0]->bhs.u32(44), 4096u);
  EXPECT_EQ(r2ts[1]->bhs.buffer_offset(), 6144u);
  EXPECT_EQ(r2ts[1]->bhs.u32(44), 2048u);
  EXPECT_EQ(r2ts[1]->bhs.u32(36), 1u);  // R2TSN
  ASSERT_EQ(responses.size(), 2u);      // TEST UNIT READY's and the write's; the read's status
                                        // rides on its last Data-In
  EXPECT_EQ(responses[1]->bhs.itt(), w);
  EXPECT_EQ(responses[1]->bhs.b[3], 0);  // GOOD
  ASSERT_EQ(data_in.size(), 8u);
  EXPECT_EQ(data_in.back()->bhs.b[1] & (kDataFinal | kDataStatus), kDataFinal | kDataStatus);
  EXPECT_EQ(data_in.front()->bhs.b[1] & kDataStatus, 0);
  EXPECT_EQ(data_in.back()->bhs.data_sn(), 7u);
  EXPECT_EQ(read_back, data);
}

TEST_F(SessionTest, ResidualsAndSense) {
  login("disk");
  clear_unit_attention();
  command(1, cdb10(0x28, 0, 1), true, false, 1024);         // underflow: 512 of 1024
  command(2, cdb10(0x28, 0, 4), true, false, 1024);         // overflow: 2048 asked, 1024 expected
  command(3, cdb10(0x28, 0x7FFFFFF, 1), true, false, 512);  // beyond the end
  put(make_logout_request(9, 0, cmd_sn_));
  auto out = serve();
  const Pdu* last1 = nullptr;
  const Pdu* last2 = nullptr;
  const Pdu* resp3 = nullptr;
  for (const Pdu& p : out) {
    if (p.bhs.opcode() == Opcode::data_in && (p.bhs.b[1] & kDataStatus) != 0) {
      (p.bhs.itt() == 1 ? last1 : last2) = &p;
    }
    if (p.bhs.opcode() == Opcode::scsi_response && p.bhs.itt() == 3) {
      resp3 = &p;
    }
  }
  ASSERT_TRUE(last1 && last2 && resp3);
  EXPECT_EQ(last1->bhs.b[1] & (kResidualUnderflow | kResidualOverflow), kResidualUnderflow);
  EXPECT_EQ(last1->bhs.u32(44), 512u);
  EXPECT_EQ(last2->bhs.b[1] & (kResidualUnderflow | kResidualOverflow), kResidualOverflow);
  EXPECT_EQ(last2->bhs.u32(44), 1024u);
  EXPECT_EQ(resp3->bhs.b[3], 0x02);  // CHECK CONDITION
  ASSERT_GE(resp3->data.size(), 2u + 14u);
  EXPECT_EQ(static_cast<uint8_t>(resp3->data[2 + 2]) & 0x0F, 0x05);  // ILLEGAL REQUEST
  EXPECT_EQ(static_cast<uint8_t>(resp3->data[2 + 12]), 0x21);        // LBA OUT OF RANGE
}

TEST_F(SessionTest, CmdSnWindowNopAndText) {
  login("disk");
  const std::vector<uint8_t> tur(6, 0);
  cmd_sn_ += 4;  // beyond MaxCmdSN: ignored
  command(1, tur, false, false, 0);
  cmd_sn_ -= 5;
  cmd_sn_ -= 1;  // below ExpCmdSN: ignored
  command(2, tur, false, false, 0);
  command(3, tur, false, false, 0);                  // ExpCmdSN: answered
  command(4, tur, false, false, 0, {}, true, true);  // immediate: answered, CmdSN unchanged
  put(make_nop_out(5, kReservedTag, cmd_sn_, true), pattern(10, 1));
  Bhs t = make_text_request(6, cmd_sn_);
  put(t, text({{"SendTargets", "All"}}));
  put(make_logout_request(9, 0, cmd_sn_));
  auto out = serve();
  std::vector<uint32_t> answered;
  const Pdu* nop = nullptr;
  const Pdu* txt = nullptr;
  for (const Pdu& p : out) {
    if (p.bhs.opcode() == Opcode::scsi_response) {
      answered.push_back(p.bhs.itt());
      EXPECT_EQ(p.bhs.u32(28), 11u);  // ExpCmdSN after command 3
    } else if (p.bhs.opcode() == Opcode::nop_in) {
      nop = &p;
    } else if (p.bhs.opcode() == Opcode::text_response) {
      txt = &p;
    }
  }
  EXPECT_EQ(answered, (std::vector<uint32_t>{3, 4}));
  ASSERT_TRUE(nop && txt);
  EXPECT_EQ(nop->bhs.itt(), 5u);
  EXPECT_EQ(nop->data, pattern(10, 1));
  EXPECT_EQ(value(*txt, "TargetName"), "iqn.2026-11.io.cairn:disk");
  EXPECT_EQ(value(*txt, "TargetAddress"), "127.0.0.1:3260,1");
}

}  // namespace
}  // namespace cairn::target::iscsi
