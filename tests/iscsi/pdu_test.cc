// PDUs: header fields of every opcode, whole-PDU encode/decode with digests and padding, and
// the strict checks on malformed initiator headers.
#include "target/iscsi/pdu.h"

#include <gtest/gtest.h>

#include "target/iscsi/crc32c.h"

namespace cairn::target::iscsi {
namespace {

std::vector<std::byte> text(std::string_view s) {
  auto b = std::as_bytes(std::span(s.data(), s.size()));
  return {b.begin(), b.end()};
}

TEST(Pdu, ScsiCommandFields) {
  const uint8_t cdb[10] = {0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0};
  Bhs h = make_scsi_command(0x11223344, encode_lun(0), true, false, 4096, 77, cdb);
  EXPECT_EQ(h.opcode(), Opcode::scsi_command);
  EXPECT_FALSE(h.immediate());
  EXPECT_TRUE(h.final_bit());
  EXPECT_EQ(h.b[1], 0xC0);  // F and R
  EXPECT_EQ(h.itt(), 0x11223344u);
  EXPECT_EQ(h.expected_length(), 4096u);
  EXPECT_EQ(h.cmd_sn(), 77u);
  EXPECT_EQ(h.cdb()[0], 0x28);
  EXPECT_EQ(h.cdb()[8], 1);
  EXPECT_EQ(h.lun(), 0u);
}

TEST(Pdu, LoginFields) {
  Bhs h = make_login_request(true, 1, 3, 0x23D000000001ull, 0, 9, 5);
  EXPECT_EQ(h.b[0], 0x43);
  EXPECT_TRUE(login_transit(h));
  EXPECT_FALSE(login_continue(h));
  EXPECT_EQ(login_csg(h), 1);
  EXPECT_EQ(login_nsg(h), 3);
  EXPECT_EQ(login_isid(h), 0x23D000000001ull);
  SnFields sn{10, 5, 20};
  Bhs r = make_login_response(h, true, 1, 3, 0x1234, 0x02, 0x01, sn);
  EXPECT_EQ(r.opcode(), Opcode::login_response);
  EXPECT_EQ(r.b[1], 0x87);
  EXPECT_EQ(login_isid(r), 0x23D000000001ull);
  EXPECT_EQ(login_tsih(r), 0x1234);
  EXPECT_EQ(r.itt(), 9u);
  EXPECT_EQ(r.u32(24), 10u);
  EXPECT_EQ(r.u32(28), 5u);
  EXPECT_EQ(r.u32(32), 20u);
  EXPECT_EQ(r.b[36], 0x02);
  EXPECT_EQ(r.b[37], 0x01);
}

TEST(Pdu, ResponseFields) {
  SnFields sn{1, 2, 3};
  Bhs d = make_data_in(7, 0, kDataFinal | kDataStatus | kResidualUnderflow, 0, 4, 8192, 512, sn);
  EXPECT_EQ(d.b[1], 0x83);
  EXPECT_EQ(d.u32(24), 1u);  // StatSN only with S
  EXPECT_EQ(d.data_sn(), 4u);
  EXPECT_EQ(d.buffer_offset(), 8192u);
  EXPECT_EQ(d.u32(44), 512u);
  Bhs d2 = make_data_in(7, 0, 0, 0, 0, 0, 99, sn);
  EXPECT_EQ(d2.u32(24), 0u);
  EXPECT_EQ(d2.u32(44), 0u);
  Bhs s = make_scsi_response(7, 2, kResidualOverflow, 100, sn, 3);
  EXPECT_EQ(s.b[1], 0x84);
  EXPECT_EQ(s.b[3], 2);
  EXPECT_EQ(s.u32(36), 3u);
  EXPECT_EQ(s.u32(44), 100u);
  Bhs r2t = make_r2t(7, 55, 0, 2, 65536, 4096, sn);
  EXPECT_EQ(r2t.opcode(), Opcode::r2t);
  EXPECT_EQ(r2t.ttt(), 55u);
  EXPECT_EQ(r2t.u32(36), 2u);
  EXPECT_EQ(r2t.u32(44), 4096u);
  Bhs t = make_tmf_response(9, TmfResponse::task_does_not_exist, sn);
  EXPECT_EQ(t.b[2], 1);
  Bhs rej = make_reject(RejectReason::invalid_pdu_field, sn);
  EXPECT_EQ(rej.b[2], 0x09);
  EXPECT_EQ(rej.itt(), kReservedTag);
  Bhs nop = make_nop_in(kReservedTag, 0x99, 0, sn);
  EXPECT_EQ(nop.ttt(), 0x99u);
  Bhs lo = make_logout_response(4, 0, sn);
  EXPECT_EQ(lo.opcode(), Opcode::logout_response);
  Bhs tx = make_text_response(4, kReservedTag, true, false, sn);
  EXPECT_EQ(tx.b[1], 0x80);
  Bhs as = make_async(1, 2, 3, 4, sn);
  EXPECT_EQ(as.b[36], 1);
  EXPECT_EQ(as.u16(38), 2);
}

TEST(Pdu, RoundTripWithDigestsAndPadding) {
  for (bool hd : {false, true}) {
    for (bool dd : {false, true}) {
      Pdu p;
      p.bhs = make_text_request(3, 1);
      p.data = text("SendTargets=All");  // 15 bytes: one byte of padding
      auto wire = encode_pdu(p, hd, dd);
      EXPECT_EQ(wire.size(), 48u + (hd ? 4 : 0) + 16 + (dd ? 4 : 0));
      auto d = decode_pdu(wire, hd, dd, 8192);
      ASSERT_TRUE(d.pdu) << hd << dd;
      EXPECT_EQ(d.consumed, wire.size());
      EXPECT_EQ(d.pdu->data, p.data);
      EXPECT_EQ(d.pdu->bhs.data_length(), 15u);
    }
  }
}

TEST(Pdu, DigestsAreLittleEndianCrc32c) {
  Pdu p;
  p.bhs = make_nop_out(1, kReservedTag, 0, true);
  auto wire = encode_pdu(p, true, false);
  uint32_t crc = crc32c(std::span(wire).first(48));
  EXPECT_EQ(wire[48], std::byte{static_cast<uint8_t>(crc)});
  EXPECT_EQ(wire[51], std::byte{static_cast<uint8_t>(crc >> 24)});
}

TEST(Pdu, DecodeDetectsCorruptionAndTruncation) {
  Pdu p;
  p.bhs = make_text_request(3, 1);
  p.data = text("SendTargets=All");
  auto wire = encode_pdu(p, true, true);
  for (std::size_t n = 0; n < wire.size(); ++n) {
    EXPECT_FALSE(decode_pdu(std::span(wire).first(n), true, true, 8192).pdu) << n;
  }
  auto bad_header = wire;
  bad_header[20] ^= std::byte{1};
  EXPECT_EQ(decode_pdu(bad_header, true, true, 8192).error, DecodeError::header_digest);
  auto bad_data = wire;
  bad_data[60] ^= std::byte{1};
  EXPECT_EQ(decode_pdu(bad_data, true, true, 8192).error, DecodeError::data_digest);
  EXPECT_EQ(decode_pdu(wire, true, true, 8).error, DecodeError::bad_header);  // too long
}

TEST(Pdu, RequestChecks) {
  // Login phase: only Login requests, text at most 8192 bytes, no AHS.
  Bhs login = make_login_request(false, 0, 0, 1, 0, 1, 0);
  EXPECT_EQ(check_request(login, true, 8192).check, HeaderCheck::ok);
  login.set_data_length(8193);
  EXPECT_EQ(check_request(login, true, 8192).check, HeaderCheck::close);
  Bhs nop = make_nop_out(1, kReservedTag, 0, false);
  EXPECT_EQ(check_request(nop, true, 8192).check, HeaderCheck::close);
  // Full feature phase.
  EXPECT_EQ(check_request(nop, false, 8192).check, HeaderCheck::ok);
  nop.set_data_length(8193);
  EXPECT_EQ(check_request(nop, false, 8192).check, HeaderCheck::close);
  Bhs unknown;
  unknown.set_opcode(static_cast<Opcode>(0x1F));
  auto v = check_request(unknown, false, 8192);
  EXPECT_EQ(v.check, HeaderCheck::reject);
  EXPECT_EQ(v.reason, RejectReason::command_not_supported);
  Bhs snack;
  snack.set_opcode(Opcode::snack_request);
  EXPECT_EQ(check_request(snack, false, 8192).reason, RejectReason::snack_reject);
  Bhs nop_no_f = make_nop_out(1, kReservedTag, 0, false);
  nop_no_f.b[1] = 0;
  EXPECT_EQ(check_request(nop_no_f, false, 8192).reason, RejectReason::invalid_pdu_field);
  Bhs ping_no_reply = make_nop_out(kReservedTag, kReservedTag, 0, false);
  EXPECT_EQ(check_request(ping_no_reply, false, 8192).check, HeaderCheck::reject);
  Bhs text_fc = make_text_request(1, 0);
  text_fc.b[1] = 0xC0;
  EXPECT_EQ(check_request(text_fc, false, 8192).check, HeaderCheck::reject);
  Bhs login_ffp = make_login_request(false, 0, 0, 1, 0, 1, 0);
  EXPECT_EQ(check_request(login_ffp, false, 8192).check, HeaderCheck::reject);
  Bhs cmd = make_scsi_command(1, 0, true, false, 512, 0, std::array<uint8_t, 6>{});
  cmd.b[4] = 200;  // 800 bytes of AHS
  EXPECT_EQ(check_request(cmd, false, 8192).check, HeaderCheck::close);
  Bhs data_ahs = make_data_out(1, 2, 0, true, 0, 0);
  data_ahs.b[4] = 1;
  EXPECT_EQ(check_request(data_ahs, false, 8192).check, HeaderCheck::reject);
}

TEST(Pdu, Lun) {
  EXPECT_EQ(encode_lun(0), 0u);
  EXPECT_EQ(encode_lun(5), 0x0005000000000000ull);
  EXPECT_EQ(decode_lun(encode_lun(5)), 5);
  EXPECT_EQ(decode_lun(encode_lun(300)), 300);
}

}  // namespace
}  // namespace cairn::target::iscsi
