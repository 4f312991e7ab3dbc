// Malformed and unusual NBD input over a raw socket against the real cairnd: every bad option
// or request gets its proper error, a stream that cannot be framed closes that connection
// only, and the daemon keeps serving other clients (BRIEF, "Bad input").
#include <gtest/gtest.h>
#include <libnbd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "target/nbd/protocol.h"
#include "tests/nbd/cairnd_process.h"

namespace cairn::test {
namespace {

namespace nbd = target::nbd;

bool send_all(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t k = ::send(fd, p, n, MSG_NOSIGNAL);
    if (k <= 0) {
      return false;
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

bool recv_all(int fd, void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t k = ::recv(fd, p, n, 0);
    if (k <= 0) {
      return false;
    }
    p += k;
    n -= static_cast<size_t>(k);
  }
  return true;
}

// True if the server closed the connection (end of stream or reset) within the timeout.
bool closed_by_server(int fd) {
  char byte = 0;
  for (;;) {
    ssize_t k = ::recv(fd, &byte, 1, 0);
    if (k == 0 || (k < 0 && errno == ECONNRESET)) {
      return true;
    }
    if (k < 0) {
      return false;  // timeout: still open
    }
  }
}

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  [[nodiscard]] int fd() const noexcept { return fd_; }

 private:
  int fd_;
};

struct OptionReply {
  uint32_t option = 0;
  uint32_t type = 0;
  std::vector<char> data;
};

class RawSocketTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = new CairndProcess(CAIRND_PATH, "vol:16M"); }
  static void TearDownTestSuite() {
    delete daemon_;
    daemon_ = nullptr;
  }
  void TearDown() override {
    EXPECT_TRUE(daemon_->alive()) << "cairnd died";
    EXPECT_TRUE(serves_another_client());
  }

  static bool serves_another_client() {
    nbd_handle* h = nbd_create();
    bool ok = nbd_connect_uri(h, daemon_->uri("vol").c_str()) == 0;
    char buf[4096];
    ok = ok && nbd_pread(h, buf, sizeof buf, 0, 0) == 0;
    nbd_close(h);
    return ok;
  }

  // Connects and completes the greeting; returns the fd (owned by the caller's Socket).
  static int greet(uint32_t client_flags = nbd::kClientFixedNewstyle | nbd::kClientNoZeroes) {
    int fd = connect_tcp(daemon_->port());
    EXPECT_GE(fd, 0);
    nbd::ServerGreeting greeting;
    EXPECT_TRUE(recv_all(fd, &greeting, sizeof greeting));
    EXPECT_EQ(greeting.nbd_magic, 0x4e42444d41474943ull);
    EXPECT_EQ(greeting.option_magic, 0x49484156454f5054ull);
    EXPECT_EQ(greeting.handshake_flags, 3);  // FIXED_NEWSTYLE | NO_ZEROES
    nbd::big_uint32_t flags = client_flags;
    EXPECT_TRUE(send_all(fd, &flags, sizeof flags));
    return fd;
  }

  static void send_option(int fd, uint32_t option, const std::vector<char>& payload,
                          uint64_t magic = nbd::kOptionMagic) {
    nbd::OptionHeader h;
    h.magic = magic;
    h.option = option;
    h.length = static_cast<uint32_t>(payload.size());
    ASSERT_TRUE(send_all(fd, &h, sizeof h));
    ASSERT_TRUE(send_all(fd, payload.data(), payload.size()));
  }

  static std::optional<OptionReply> read_reply(int fd) {
    nbd::OptionReplyHeader h;
    if (!recv_all(fd, &h, sizeof h) || h.magic != nbd::kOptionReplyMagic) {
      return std::nullopt;
    }
    OptionReply r{h.option, h.type, std::vector<char>(h.length)};
    if (!recv_all(fd, r.data.data(), r.data.size())) {
      return std::nullopt;
    }
    return r;
  }

  static std::vector<char> info_payload(const std::string& name, std::vector<uint16_t> infos) {
    std::vector<char> p;
    auto put = [&](const auto& wire) {
      const auto* b = reinterpret_cast<const char*>(&wire);
      p.insert(p.end(), b, b + sizeof wire);
    };
    put(nbd::big_uint32_t(static_cast<uint32_t>(name.size())));
    p.insert(p.end(), name.begin(), name.end());
    put(nbd::big_uint16_t(static_cast<uint16_t>(infos.size())));
    for (uint16_t i : infos) {
      put(nbd::big_uint16_t(i));
    }
    return p;
  }

  // NBD_OPT_GO on "vol"; true once NBD_REP_ACK arrived.
  static bool go(int fd) {
    send_option(fd, static_cast<uint32_t>(nbd::Opt::go), info_payload("vol", {}));
    for (int i = 0; i < 16; ++i) {
      auto r = read_reply(fd);
      if (!r) {
        return false;
      }
      if (r->type == static_cast<uint32_t>(nbd::Rep::ack)) {
        return true;
      }
      if (r->type != static_cast<uint32_t>(nbd::Rep::info)) {
        return false;
      }
    }
    return false;
  }

  static void send_request(int fd, nbd::Cmd cmd, uint64_t cookie, uint64_t offset, uint32_t length,
                           uint16_t flags = 0, uint16_t raw_type = 0xffff) {
    nbd::Request r;
    r.type = raw_type != 0xffff ? raw_type : static_cast<uint16_t>(cmd);
    r.flags = flags;
    r.cookie = cookie;
    r.offset_bytes = offset;
    r.length_bytes = length;
    nbd::RequestHeader wire = nbd::encode_request(r);
    ASSERT_TRUE(send_all(fd, &wire, sizeof wire));
  }

  // Reads one simple reply; returns its error, and checks the cookie.
  static uint32_t simple_reply(int fd, uint64_t cookie) {
    nbd::SimpleReplyHeader h;
    EXPECT_TRUE(recv_all(fd, &h, sizeof h));
    EXPECT_EQ(h.magic, nbd::kSimpleReplyMagic);
    EXPECT_EQ(h.cookie, cookie);
    return h.error;
  }

  static CairndProcess* daemon_;
};

CairndProcess* RawSocketTest::daemon_ = nullptr;

constexpr uint32_t kRepErrUnsup = 0x80000001;
constexpr uint32_t kRepErrInvalid = 0x80000003;
constexpr uint32_t kRepErrUnknown = 0x80000006;
constexpr uint32_t kRepErrTooBig = 0x80000009;

TEST_F(RawSocketTest, UnknownClientFlagsClose) {
  Socket s(greet(0x80));
  EXPECT_TRUE(closed_by_server(s.fd()));
}

TEST_F(RawSocketTest, BadOptionMagicClosesOnlyThatConnection) {
  Socket other(greet());
  Socket s(greet());
  send_option(s.fd(), static_cast<uint32_t>(nbd::Opt::list), {}, 0x1122334455667788ull);
  EXPECT_TRUE(closed_by_server(s.fd()));
  // The other negotiation in progress is unaffected.
  ASSERT_TRUE(go(other.fd()));
  send_request(other.fd(), nbd::Cmd::flush, 7, 0, 0);
  EXPECT_EQ(simple_reply(other.fd(), 7), 0u);
}

TEST_F(RawSocketTest, OptionErrorsKeepNegotiating) {
  Socket s(greet());
  const int fd = s.fd();
  send_option(fd, 99, {'a', 'b', 'c', 'd', 'e'});
  auto r = read_reply(fd);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->option, 99u);
  EXPECT_EQ(r->type, kRepErrUnsup);

  send_option(fd, static_cast<uint32_t>(nbd::Opt::list), {'x'});
  EXPECT_EQ(read_reply(fd)->type, kRepErrInvalid);
  send_option(fd, static_cast<uint32_t>(nbd::Opt::structured_reply), {'x'});
  EXPECT_EQ(read_reply(fd)->type, kRepErrInvalid);
  send_option(fd, static_cast<uint32_t>(nbd::Opt::starttls), {});
  EXPECT_EQ(read_reply(fd)->type, kRepErrUnsup);

  // A name length that runs past the end of the option.
  std::vector<char> truncated = info_payload("vol", {});
  truncated[3] = 100;
  send_option(fd, static_cast<uint32_t>(nbd::Opt::go), truncated);
  EXPECT_EQ(read_reply(fd)->type, kRepErrInvalid);
  send_option(fd, static_cast<uint32_t>(nbd::Opt::info), info_payload("nope", {}));
  EXPECT_EQ(read_reply(fd)->type, kRepErrUnknown);

  // SET_META_CONTEXT before structured replies is invalid.
  std::vector<char> meta = {0, 0, 0, 3, 'v', 'o', 'l', 0, 0, 0, 0};
  send_option(fd, static_cast<uint32_t>(nbd::Opt::set_meta_context), meta);
  EXPECT_EQ(read_reply(fd)->type, kRepErrInvalid);

  // An option too large to process is skipped and refused; negotiation continues.
  send_option(fd, static_cast<uint32_t>(nbd::Opt::info), std::vector<char>(100 * 1024, 'z'));
  EXPECT_EQ(read_reply(fd)->type, kRepErrTooBig);

  send_option(fd, static_cast<uint32_t>(nbd::Opt::list), {});
  auto server = read_reply(fd);
  ASSERT_TRUE(server);
  EXPECT_EQ(server->type, 2u);  // NBD_REP_SERVER
  ASSERT_GE(server->data.size(), 7u);
  EXPECT_EQ(server->data[3], 3);  // name length
  EXPECT_EQ(std::string(server->data.begin() + 4, server->data.begin() + 7), "vol");
  EXPECT_EQ(std::string(server->data.begin() + 7, server->data.end()), "cairn demo volume");
  EXPECT_EQ(read_reply(fd)->type, 1u);  // NBD_REP_ACK

  send_option(fd, static_cast<uint32_t>(nbd::Opt::abort), {});
  EXPECT_EQ(read_reply(fd)->type, 1u);
  EXPECT_TRUE(closed_by_server(fd));
}

TEST_F(RawSocketTest, ExportNameWithAndWithoutZeroPadding) {
  {
    Socket s(greet(nbd::kClientFixedNewstyle));
    send_option(s.fd(), static_cast<uint32_t>(nbd::Opt::export_name), {'v', 'o', 'l'});
    std::vector<char> reply(10 + 124);
    ASSERT_TRUE(recv_all(s.fd(), reply.data(), reply.size()));
    auto wire = nbd::load_wire<nbd::ExportNameReply>(
        std::as_bytes(std::span<const char>(reply.data(), 10)));
    EXPECT_EQ(wire.size_bytes, 16ull << 20);
    EXPECT_NE(wire.transmission_flags & nbd::kFlagCanMultiConn, 0);
    EXPECT_TRUE(std::all_of(reply.begin() + 10, reply.end(), [](char c) { return c == 0; }));
    send_request(s.fd(), nbd::Cmd::read, 1, 0, 4096);
    EXPECT_EQ(simple_reply(s.fd(), 1), 0u);
    std::vector<char> data(4096);
    EXPECT_TRUE(recv_all(s.fd(), data.data(), data.size()));
  }
  {
    Socket s(greet());
    send_option(s.fd(), static_cast<uint32_t>(nbd::Opt::export_name), {'v', 'o', 'l'});
    nbd::ExportNameReply wire;
    ASSERT_TRUE(recv_all(s.fd(), &wire, sizeof wire));
    send_request(s.fd(), nbd::Cmd::flush, 2, 0, 0);  // the very next bytes are its reply
    EXPECT_EQ(simple_reply(s.fd(), 2), 0u);
  }
  {
    Socket s(greet());
    send_option(s.fd(), static_cast<uint32_t>(nbd::Opt::export_name), {'n', 'o'});
    EXPECT_TRUE(closed_by_server(s.fd()));
  }
}

TEST_F(RawSocketTest, BadRequestsGetErrorsAndStayFramed) {
  Socket s(greet());
  const int fd = s.fd();
  ASSERT_TRUE(go(fd));
  send_request(fd, nbd::Cmd::read, 10, 0, 4096, 0, /*raw_type=*/99);  // unknown command
  EXPECT_EQ(simple_reply(fd, 10), 22u);                               // EINVAL
  send_request(fd, nbd::Cmd::read, 11, 0, 0x7fffffff);
  EXPECT_EQ(simple_reply(fd, 11), 22u);
  send_request(fd, nbd::Cmd::block_status, 12, 0, 4096);  // no meta context negotiated
  EXPECT_EQ(simple_reply(fd, 12), 22u);
  send_request(fd, nbd::Cmd::write, 13, 0, 4096, nbd::kCmdFlagReqOne);  // flag not for WRITE
  std::vector<char> payload(4096, 'p');
  ASSERT_TRUE(send_all(fd, payload.data(), payload.size()));
  EXPECT_EQ(simple_reply(fd, 13), 22u);
  send_request(fd, nbd::Cmd::write, 14, 16ull << 20, 4096);  // past the end
  ASSERT_TRUE(send_all(fd, payload.data(), payload.size()));
  EXPECT_EQ(simple_reply(fd, 14), 28u);         // ENOSPC
  send_request(fd, nbd::Cmd::flush, 15, 0, 0);  // still framed after refused payloads
  EXPECT_EQ(simple_reply(fd, 15), 0u);
  // A header with a bad magic cannot be framed: the connection closes.
  std::vector<char> garbage(28, 'g');
  ASSERT_TRUE(send_all(fd, garbage.data(), garbage.size()));
  EXPECT_TRUE(closed_by_server(fd));
}

TEST_F(RawSocketTest, HugeWritePayloadClosesConnection) {
  Socket s(greet());
  ASSERT_TRUE(go(s.fd()));
  send_request(s.fd(), nbd::Cmd::write, 1, 0, 0xfffffff0u);
  EXPECT_TRUE(closed_by_server(s.fd()));
}

// A 1 MiB payload (past the read-ahead buffer, so received straight into the request's
// buffer with MSG_WAITALL) that arrives in four pieces with pauses between them is taken
// whole: the reply comes once and the bytes read back are the ones sent.
TEST_F(RawSocketTest, LargeWritePayloadArrivingInPiecesIsWhole) {
  Socket s(greet());
  const int fd = s.fd();
  ASSERT_TRUE(go(fd));
  constexpr std::size_t kPayload = 1 << 20;
  std::vector<char> payload(kPayload);
  for (std::size_t i = 0; i < kPayload; ++i) {
    payload[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
  }
  send_request(fd, nbd::Cmd::write, 31, 1 << 20, kPayload);
  constexpr std::size_t kPiece = kPayload / 4;
  for (std::size_t at = 0; at < kPayload; at += kPiece) {
    ASSERT_TRUE(send_all(fd, payload.data() + at, kPiece));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(simple_reply(fd, 31), 0u);
  send_request(fd, nbd::Cmd::read, 32, 1 << 20, kPayload);
  EXPECT_EQ(simple_reply(fd, 32), 0u);
  std::vector<char> back(kPayload);
  ASSERT_TRUE(recv_all(fd, back.data(), back.size()));
  EXPECT_TRUE(back == payload);
}

// A client that hangs up halfway through a 1 MiB payload: the connection ends with no reply
// and nothing of the cut payload is written.
TEST_F(RawSocketTest, WritePayloadCutShortClosesConnection) {
  constexpr std::size_t kPayload = 1 << 20;
  {
    Socket s(greet());
    ASSERT_TRUE(go(s.fd()));
    std::vector<char> half(kPayload / 2, 'h');
    send_request(s.fd(), nbd::Cmd::write, 41, 2 << 20, kPayload);
    ASSERT_TRUE(send_all(s.fd(), half.data(), half.size()));
    ::shutdown(s.fd(), SHUT_WR);
    EXPECT_TRUE(closed_by_server(s.fd()));
  }
  nbd_handle* h = nbd_create();
  ASSERT_EQ(nbd_connect_uri(h, daemon_->uri("vol").c_str()), 0);
  std::vector<char> back(kPayload, 'x');
  EXPECT_EQ(nbd_pread(h, back.data(), back.size(), 2 << 20, 0), 0);
  nbd_close(h);
  EXPECT_EQ(std::count(back.begin(), back.end(), 'h'), 0);
}

TEST_F(RawSocketTest, TruncatedHeaderThenHangUp) {
  Socket s(greet());
  ASSERT_TRUE(go(s.fd()));
  std::vector<char> half(10, 0);
  ASSERT_TRUE(send_all(s.fd(), half.data(), half.size()));
  ::shutdown(s.fd(), SHUT_WR);
  EXPECT_TRUE(closed_by_server(s.fd()));
}

TEST_F(RawSocketTest, DiscAnswersInFlightRequestsFirst) {
  Socket s(greet());
  const int fd = s.fd();
  ASSERT_TRUE(go(fd));
  std::vector<char> payload(4096, 'd');
  send_request(fd, nbd::Cmd::write, 21, 8192, 4096);
  ASSERT_TRUE(send_all(fd, payload.data(), payload.size()));
  send_request(fd, nbd::Cmd::disc, 22, 0, 0);
  EXPECT_EQ(simple_reply(fd, 21), 0u);
  EXPECT_TRUE(closed_by_server(fd));
}

// SIGTERM while clients are mid-handshake and mid-transmission: cairnd still exits cleanly
// (status 0, so no sanitizer report either).
TEST(CairndShutdown, StopsCleanlyWithOpenConnections) {
  CairndProcess daemon(CAIRND_PATH, "vol:16M");
  nbd_handle* h = nbd_create();
  ASSERT_EQ(nbd_connect_uri(h, daemon.uri("vol").c_str()), 0) << nbd_get_error();
  char buf[4096] = {};
  ASSERT_EQ(nbd_pwrite(h, buf, sizeof buf, 0, 0), 0);
  Socket negotiating(connect_tcp(daemon.port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  int status = daemon.stop();
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  nbd_close(h);
}

}  // namespace
}  // namespace cairn::test
