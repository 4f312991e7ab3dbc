#include "tools/cli/admin_client.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cctype>

#include "tools/cli/cli_error.h"

namespace cairn::cli {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kConnectTimeout = std::chrono::seconds(5);
constexpr uint64_t kAnswerLimitBytes = 64ull << 20;

// "Connection refused" -> "connection refused", to sit inside a sentence.
std::string lower_first(std::string s) {
  if (!s.empty()) {
    s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  }
  return s;
}

}  // namespace

AdminClient::AdminClient(std::string host, uint16_t port) : host_(std::move(host)), port_(port) {}

Task<HttpAnswer> AdminClient::exchange(std::string method, std::string target, std::string body,
                                       std::chrono::seconds timeout,
                                       boost::system::error_code& failure) {
  tcp::resolver resolver(context_);
  auto [rec, endpoints] = co_await resolver.async_resolve(host_, std::to_string(port_), use_tuple);
  if (rec) {
    failure = rec;
    co_return HttpAnswer{};
  }
  beast::tcp_stream stream(context_);
  stream.expires_after(kConnectTimeout);
  auto [cec, ep] = co_await stream.async_connect(endpoints, use_tuple);
  if (cec) {
    failure = cec;
    co_return HttpAnswer{};
  }
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, host_);
  req.set(http::field::user_agent, "cairn");
  if (!body.empty()) {
    req.set(http::field::content_type, "application/json");
    req.body() = std::move(body);
  }
  req.prepare_payload();
  stream.expires_after(timeout);
  auto [wec, nw] = co_await http::async_write(stream, req, use_tuple);
  if (wec) {
    failure = wec;
    co_return HttpAnswer{};
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kAnswerLimitBytes);
  auto [aec, nr] = co_await http::async_read(stream, buffer, parser, use_tuple);
  if (aec) {
    failure = aec;
    co_return HttpAnswer{};
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return HttpAnswer{parser.get().result_int(), std::move(parser.get().body())};
}

HttpAnswer AdminClient::request(std::string_view method, std::string_view target,
                                std::string_view body, std::chrono::seconds timeout) {
  boost::system::error_code failure;
  HttpAnswer answer;
  asio::co_spawn(
      context_,
      exchange(std::string(method), std::string(target), std::string(body), timeout, failure),
      [&](std::exception_ptr e, HttpAnswer a) {
        if (e) {
          std::rethrow_exception(e);
        }
        answer = std::move(a);
      });
  context_.restart();
  context_.run();
  if (failure == boost::beast::error::timeout) {
    throw CliError("cairnd at " + address() + " did not answer in time");
  }
  if (failure) {
    throw CliError("cannot reach cairnd at " + address() + ": " + lower_first(failure.message()) +
                   ". Is cairnd running?");
  }
  return answer;
}

}  // namespace cairn::cli
