// CairndProcess: runs the real cairnd binary for a test, on free ports and a fresh data
// directory, and stops it with SIGTERM. Also free_port() and raw-socket helpers for the tests
// that speak the protocol by hand.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace cairn::test {

// A TCP port nobody listens on right now (bound to port 0, then released).
inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot bind a probe socket");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A blocking TCP connection to 127.0.0.1:port, or -1.
inline int connect_tcp(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  timeval timeout{10, 0};  // a hung server fails the test instead of hanging it
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

class CairndProcess {
 public:
  // Starts `binary` with a demo volume; waits until the NBD port accepts connections.
  CairndProcess(const std::string& binary, const std::string& demo_volume,
                std::vector<std::string> extra = {})
      : port_(free_port()) {
    char dir_template[] = "/tmp/cairn-nbd-test-XXXXXX";
    if (::mkdtemp(dir_template) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    dir_ = dir_template;
    std::vector<std::string> args = {binary,
                                     "--set",
                                     "node.data_dir=" + dir_ + "/data",
                                     "--set",
                                     "nbd.address=127.0.0.1",
                                     "--set",
                                     "nbd.port=" + std::to_string(port_),
                                     "--set",
                                     "admin.port=" + std::to_string(free_port()),
                                     "--set",
                                     "iscsi.port=" + std::to_string(free_port()),
                                     "--set",
                                     "node.reactors=2",
                                     "--demo-volume",
                                     demo_volume};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) {
        argv.push_back(a.data());
      }
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      std::perror("execv cairnd");
      std::_Exit(127);
    }
    wait_until_listening();
  }

  ~CairndProcess() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  CairndProcess(const CairndProcess&) = delete;
  CairndProcess& operator=(const CairndProcess&) = delete;

  // Sends SIGTERM and waits; returns the wait status (or -1 if already reaped).
  int stop() {
    int status = -1;
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      if (::waitpid(pid_, &status, 0) != pid_) {
        status = -1;
      }
      pid_ = -1;
    }
    return status;
  }

  [[nodiscard]] uint16_t port() const noexcept { return port_; }
  [[nodiscard]] std::string uri(const std::string& volume) const {
    return "nbd://127.0.0.1:" + std::to_string(port_) + "/" + volume;
  }
  // True while the daemon has not exited (it must survive every malformed client).
  [[nodiscard]] bool alive() const {
    int status = 0;
    return ::waitpid(pid_, &status, WNOHANG) == 0;
  }

 private:
  void wait_until_listening() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (!alive()) {
        throw std::runtime_error("cairnd exited during start-up");
      }
      int fd = connect_tcp(port_);
      if (fd >= 0) {
        ::close(fd);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    throw std::runtime_error("cairnd did not listen within 30 s");
  }

  uint16_t port_;
  std::string dir_;
  pid_t pid_ = -1;
};

}  // namespace cairn::test
