// AdminClient: a small HTTP/1.1 client (Boost.Beast) for cairnd's admin API. One request per
// connection; each call blocks until the answer arrives or the deadline passes.
//
// Threading: one thread; the object owns its io_context.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/asio.h"

namespace cairn::cli {

struct HttpAnswer {
  unsigned status = 0;
  std::string body;
};

class AdminClient {
 public:
  AdminClient(std::string host, uint16_t port);

  // Sends one request. Throws CliError with a sentence naming the address when cairnd cannot
  // be reached or does not answer within `timeout`.
  HttpAnswer request(std::string_view method, std::string_view target, std::string_view body,
                     std::chrono::seconds timeout = std::chrono::seconds(600));

  [[nodiscard]] std::string address() const { return host_ + ":" + std::to_string(port_); }

 private:
  Task<HttpAnswer> exchange(std::string method, std::string target, std::string body,
                            std::chrono::seconds timeout, boost::system::error_code& failure);

  std::string host_;
  uint16_t port_;
  asio::io_context context_;
};

}  // namespace cairn::cli
