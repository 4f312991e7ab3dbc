// Unit tests of target/nbd/protocol.h: wire encodings, option parsing and request validation,
// with valid and invalid input side by side (max and max+1, zero, misaligned, unknown).
#include "target/nbd/protocol.h"

#include <gtest/gtest.h>

#include <array>
#include <string>

#include "blockmap/errors.h"

namespace cairn::target::nbd {
namespace {

std::vector<std::byte> bytes(std::initializer_list<int> list) {
  std::vector<std::byte> out;
  for (int b : list) {
    out.push_back(static_cast<std::byte>(b));
  }
  return out;
}

void append_string(std::vector<std::byte>& out, std::string_view s) {
  append_wire(out, big_uint32_t(static_cast<uint32_t>(s.size())));
  for (char c : s) {
    out.push_back(static_cast<std::byte>(c));
  }
}

Session session(bool read_only = false) {
  ExportCapabilities caps;
  caps.writable = !read_only;
  Session s;
  s.size_bytes = 1 << 20;
  s.structured_replies = true;
  s.base_allocation = true;
  s.minimum_block_bytes = 4096;
  s.transmission_flags = transmission_flags(caps, true);
  return s;
}

Request request(Cmd cmd, uint64_t offset, uint32_t length, uint16_t flags = 0) {
  Request r;
  r.type = static_cast<uint16_t>(cmd);
  r.offset_bytes = offset;
  r.length_bytes = length;
  r.flags = flags;
  return r;
}

TEST(NbdProtocol, RequestHeaderIsBigEndianOnTheWire) {
  Request r = request(Cmd::write, 0x0102030405060708ull, 0x0a0b0c0d, kCmdFlagFua);
  r.cookie = 0x1112131415161718ull;
  RequestHeader wire = encode_request(r);
  std::array<std::byte, 28> raw;
  std::memcpy(raw.data(), &wire, sizeof wire);
  EXPECT_EQ(raw[0], std::byte{0x25});
  EXPECT_EQ(raw[3], std::byte{0x13});
  EXPECT_EQ(raw[5], std::byte{0x01});  // flags
  EXPECT_EQ(raw[7], std::byte{0x01});  // type WRITE
  EXPECT_EQ(raw[8], std::byte{0x11});
  EXPECT_EQ(raw[16], std::byte{0x01});
  EXPECT_EQ(raw[27], std::byte{0x0d});
  auto back = decode_request(raw);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->cookie, r.cookie);
  EXPECT_EQ(back->offset_bytes, r.offset_bytes);
  EXPECT_EQ(back->length_bytes, r.length_bytes);
  raw[0] = std::byte{0x26};
  EXPECT_FALSE(decode_request(raw));
  EXPECT_FALSE(decode_request(std::span(raw).first(27)));
}

TEST(NbdProtocol, InfoRequestParsing) {
  std::vector<std::byte> p;
  append_string(p, "vol");
  append_wire(p, big_uint16_t(2));
  append_wire(p, big_uint16_t(3));
  append_wire(p, big_uint16_t(1));
  auto r = parse_info_request(p);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->export_name, "vol");
  EXPECT_EQ(r->info_types, (std::vector<uint16_t>{3, 1}));

  auto short_count = p;
  short_count.pop_back();  // count says 2, one and a half follow
  EXPECT_FALSE(parse_info_request(short_count));
  auto extra = p;
  extra.push_back(std::byte{0});
  EXPECT_FALSE(parse_info_request(extra));
  EXPECT_FALSE(parse_info_request(bytes({0, 0, 0, 9, 'a'})));  // name runs past the end
  EXPECT_FALSE(parse_info_request(bytes({})));
  EXPECT_FALSE(parse_info_request(bytes({0, 0, 0, 1, 0, 0, 0})));  // NUL in the name
  std::vector<std::byte> empty_name;
  append_string(empty_name, "");
  append_wire(empty_name, big_uint16_t(0));
  ASSERT_TRUE(parse_info_request(empty_name));
  EXPECT_EQ(parse_info_request(empty_name)->export_name, "");
}

TEST(NbdProtocol, StringsLongerThan4096AreRefused) {
  std::vector<std::byte> ok;
  append_string(ok, std::string(4096, 'a'));
  append_wire(ok, big_uint16_t(0));
  EXPECT_TRUE(parse_info_request(ok));
  std::vector<std::byte> too_long;
  append_string(too_long, std::string(4097, 'a'));
  append_wire(too_long, big_uint16_t(0));
  EXPECT_FALSE(parse_info_request(too_long));
}

TEST(NbdProtocol, MetaContextParsingAndMatching) {
  std::vector<std::byte> p;
  append_string(p, "vol");
  append_wire(p, big_uint32_t(2));
  append_string(p, "base:allocation");
  append_string(p, "qemu:dirty-bitmap:x");
  auto r = parse_meta_context_request(p);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->queries.size(), 2u);
  EXPECT_EQ(match_meta_query(r->queries[0], false), QueryMatch::base_allocation);
  EXPECT_EQ(match_meta_query(r->queries[1], false), QueryMatch::none);
  EXPECT_EQ(match_meta_query("base:", true), QueryMatch::base_allocation);
  EXPECT_EQ(match_meta_query("base:", false), QueryMatch::none);
  EXPECT_EQ(match_meta_query("nocolon", false), QueryMatch::invalid);
  EXPECT_EQ(match_meta_query(":x", false), QueryMatch::invalid);

  std::vector<std::byte> huge_count;
  append_string(huge_count, "vol");
  append_wire(huge_count, big_uint32_t(0xffffffff));
  EXPECT_FALSE(parse_meta_context_request(huge_count));
  auto trailing = p;
  trailing.push_back(std::byte{1});
  EXPECT_FALSE(parse_meta_context_request(trailing));
}

TEST(NbdProtocol, TransmissionFlagsFollowCapabilities) {
  ExportCapabilities caps;
  uint16_t rw = transmission_flags(caps, true);
  EXPECT_NE(rw & kFlagHasFlags, 0);
  EXPECT_NE(rw & kFlagCanMultiConn, 0);
  EXPECT_NE(rw & kFlagSendFastZero, 0);
  EXPECT_NE(rw & kFlagSendDf, 0);
  EXPECT_EQ(rw & kFlagReadOnly, 0);
  EXPECT_EQ(transmission_flags(caps, false) & kFlagSendDf, 0);
  caps.writable = false;
  uint16_t ro = transmission_flags(caps, true);
  EXPECT_NE(ro & kFlagReadOnly, 0);
  EXPECT_EQ(ro & (kFlagSendTrim | kFlagSendWriteZeroes | kFlagSendFastZero), 0);
}

TEST(NbdProtocol, CheckRequestRanges) {
  const Session s = session();
  const uint64_t size = s.size_bytes;
  EXPECT_EQ(check_request(request(Cmd::read, 0, 4096), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::read, size - 4096, 4096), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::read, size, 4096), s), Errno::inval);
  EXPECT_EQ(check_request(request(Cmd::write, size - 4096, 8192), s), Errno::nospc);
  EXPECT_EQ(check_request(request(Cmd::write_zeroes, size, 4096), s), Errno::nospc);
  EXPECT_EQ(check_request(request(Cmd::trim, size, 4096), s), Errno::inval);
  EXPECT_EQ(check_request(request(Cmd::read, ~0ull - 4095, 4096), s), Errno::inval);  // wraps
  EXPECT_EQ(check_request(request(Cmd::read, 512, 4096), s), Errno::inval);           // misaligned
  EXPECT_EQ(check_request(request(Cmd::write, 0, 100), s), Errno::inval);
  EXPECT_EQ(check_request(request(Cmd::flush, 12345, 7), s), Errno::ok);  // unused fields
  EXPECT_EQ(check_request(request(Cmd::block_status, 0, 0), s), Errno::inval);
  Session unaligned = s;
  unaligned.minimum_block_bytes = 1;
  EXPECT_EQ(check_request(request(Cmd::read, 1, 3), unaligned), Errno::ok);
}

TEST(NbdProtocol, CheckRequestPayloadLimits) {
  Session s = session();
  s.size_bytes = 1ull << 40;
  EXPECT_EQ(check_request(request(Cmd::read, 0, kMaxPayloadBytes), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::read, 0, kMaxPayloadBytes + 4096), s), Errno::overflow);
  EXPECT_EQ(check_request(request(Cmd::write, 0, kMaxPayloadBytes + 4096), s), Errno::inval);
  EXPECT_EQ(check_request(request(Cmd::trim, 0, 0xfffff000), s), Errno::ok);  // no payload
  s.structured_replies = false;
  EXPECT_EQ(check_request(request(Cmd::read, 0, kMaxPayloadBytes + 4096), s), Errno::inval);
}

TEST(NbdProtocol, CheckRequestFlagsAndCommands) {
  Session s = session();
  EXPECT_EQ(check_request(request(Cmd::write, 0, 4096, kCmdFlagFua), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::flush, 0, 0, kCmdFlagFua), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::read, 0, 4096, kCmdFlagDf), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::write, 0, 4096, kCmdFlagDf), s), Errno::inval);
  EXPECT_EQ(
      check_request(request(Cmd::write_zeroes, 0, 4096, kCmdFlagNoHole | kCmdFlagFastZero), s),
      Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::trim, 0, 4096, kCmdFlagNoHole), s), Errno::inval);
  EXPECT_EQ(check_request(request(Cmd::block_status, 0, 4096, kCmdFlagReqOne), s), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::read, 0, 4096, 1u << 15), s), Errno::inval);
  Request unknown = request(Cmd::read, 0, 4096);
  unknown.type = 8;
  EXPECT_EQ(check_request(unknown, s), Errno::inval);
  unknown.type = 0xffff;
  EXPECT_EQ(check_request(unknown, s), Errno::inval);

  Session simple = s;
  simple.structured_replies = false;
  simple.base_allocation = false;
  EXPECT_EQ(check_request(request(Cmd::read, 0, 4096, kCmdFlagDf), simple), Errno::inval);
  EXPECT_EQ(check_request(request(Cmd::block_status, 0, 4096), simple), Errno::inval);

  Session ro = session(true);
  EXPECT_EQ(check_request(request(Cmd::write, 0, 4096), ro), Errno::perm);
  EXPECT_EQ(check_request(request(Cmd::trim, 0, 4096), ro), Errno::perm);
  EXPECT_EQ(check_request(request(Cmd::write_zeroes, 0, 4096), ro), Errno::perm);
  EXPECT_EQ(check_request(request(Cmd::read, 0, 4096), ro), Errno::ok);
  EXPECT_EQ(check_request(request(Cmd::write_zeroes, 0, 4096, kCmdFlagFastZero), ro),
            Errno::inval);  // FAST_ZERO was not advertised on a read-only export
}

TEST(NbdProtocol, VolumeErrorsMapToNbdErrors) {
  using blockmap::errc;
  EXPECT_EQ(errno_for({}, Cmd::read), Errno::ok);
  EXPECT_EQ(errno_for(make_error_code(errc::out_of_range), Cmd::write), Errno::nospc);
  EXPECT_EQ(errno_for(make_error_code(errc::out_of_range), Cmd::read), Errno::inval);
  EXPECT_EQ(errno_for(make_error_code(errc::read_only), Cmd::trim), Errno::perm);
  EXPECT_EQ(errno_for(make_error_code(errc::no_space), Cmd::write), Errno::nospc);
  EXPECT_EQ(errno_for(make_error_code(errc::io_error), Cmd::read), Errno::io);
  EXPECT_EQ(errno_for(std::make_error_code(std::errc::io_error), Cmd::flush), Errno::io);
}

}  // namespace
}  // namespace cairn::target::nbd
