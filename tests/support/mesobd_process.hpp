// Running the shipped programs from tests: their path in the build tree, a command's exit
// status and output, a program's argv and environment, and mesobd started on a data
// directory (any free client and admin ports) until it is stopped with SIGTERM or stops
// by itself.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "wire/client.hpp"

extern char** environ;

namespace mesob::test {

inline std::string bin(const char* rel) {
  const char* dir = std::getenv("MESOB_TEST_BIN_DIR");
  return std::string(dir ? dir : ".") + "/" + rel;
}

// A TCP socket bound to a free loopback port (not listening); *port gets the port.
inline int bound_loopback_socket(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len), 0);
  *port = ntohs(a.sin_port);
  return fd;
}

// A loopback port nobody listens on, held (bound, not listening) for as long as the
// object lives: connecting is refused, and the kernel cannot hand the port out as a
// client's own (a TCP self-connect would then "succeed" and hang the client).
class closed_port {
 public:
  closed_port() { fd_ = bound_loopback_socket(&port_); }
  ~closed_port() { ::close(fd_); }
  closed_port(const closed_port&) = delete;
  closed_port& operator=(const closed_port&) = delete;
  [[nodiscard]] uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

// A free loopback TCP port: a closed_port's, released at once (another process could
// take it in between, which a private test machine does not do).
inline uint16_t free_port() { return closed_port().port(); }

struct run_result {
  int status = -1;
  std::string out;
};

// Runs a shell command; its exit status (as from waitpid) and its output, both streams.
inline run_result run(const std::string& cmd) {
  run_result r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  std::array<char, 4096> buf{};
  while (p && std::fgets(buf.data(), int(buf.size()), p)) r.out += buf.data();
  r.status = p ? ::pclose(p) : -1;
  return r;
}

using clock_type = std::chrono::steady_clock;

inline int remaining_ms(clock_type::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
  return left < 0 ? 0 : int(left);
}

// argv and envp for execve, built before fork (the child only calls execve).
class command_line {
 public:
  command_line(const std::string& path, const std::vector<std::string>& args, const std::vector<std::string>& env_extra)
      : strings_{path} {
    strings_.insert(strings_.end(), args.begin(), args.end());
    // The environment without the console's own variables (the test sets those it means).
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view v = *e;
      if (!v.starts_with("MESOB_") || v.starts_with("MESOB_TEST_")) env_.emplace_back(v);
    }
    env_.insert(env_.end(), env_extra.begin(), env_extra.end());
    for (auto& s : strings_) argv_.push_back(s.data());
    argv_.push_back(nullptr);
    for (auto& s : env_) envp_.push_back(s.data());
    envp_.push_back(nullptr);
  }
  [[noreturn]] void exec() const {
    ::execve(argv_[0], argv_.data(), envp_.data());
    std::_Exit(127);
  }

 private:
  std::vector<std::string> strings_, env_;
  std::vector<char*> argv_, envp_;
};

// The port in the line that starts with `prefix` ("mesobd: admin listening on "); 0 if none.
inline uint16_t port_after(const std::string& out, const std::string& prefix) {
  const auto at = out.find(prefix);
  if (at == std::string::npos) return 0;
  const auto end = out.find('\n', at);
  const auto colon = out.rfind(':', end);
  return colon == std::string::npos || colon < at ? 0 : uint16_t(std::atoi(out.c_str() + colon + 1));
}

// mesobd on a data directory (2 shards, client and admin ports chosen by the kernel),
// until stop() (SIGTERM) or until it exits by itself (`shutdown`).
class live_mesobd {
 public:
  explicit live_mesobd(const std::string& data, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--data-dir", data, "--shards", "2", "--admin-port", "0", "--metrics-port", "0"};
    // Any free client port, unless the caller names one (a restart on the same port).
    if (std::find(extra.begin(), extra.end(), "--port") == extra.end()) args.insert(args.end(), {"--port", "0"});
    // Small log segments, unless the caller names them: each start writes a segment's
    // zeros, and the next one's behind it (at the default 64 MiB, most of a quick start).
    if (std::find(extra.begin(), extra.end(), "--wal-segment-mib") == extra.end() &&
        std::find(extra.begin(), extra.end(), "--wal-group-mib") == extra.end())
      args.insert(args.end(), {"--wal-segment-mib", "4", "--wal-group-mib", "1"});
    args.insert(args.end(), extra.begin(), extra.end());
    const command_line cmd(bin("engine/mesobd"), args, {});
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(fds[1], 1);
      ::dup2(fds[1], 2);
      cmd.exec();
    }
    ::close(fds[1]);
    fd_ = fds[0];
    const auto deadline = clock_type::now() + std::chrono::seconds(30);
    while (out_.find("ready") == std::string::npos && read_some(deadline)) {
    }
    port_ = port_after(out_, "mesobd: listening on ");
    admin_port_ = port_after(out_, "mesobd: admin listening on ");
    metrics_port_ = port_after(out_, "mesobd: metrics listening on ");
  }
  ~live_mesobd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  live_mesobd(const live_mesobd&) = delete;
  live_mesobd& operator=(const live_mesobd&) = delete;

  [[nodiscard]] bool up() const { return port_ != 0 && admin_port_ != 0 && out_.find("ready") != std::string::npos; }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] uint16_t admin_port() const { return admin_port_; }
  [[nodiscard]] uint16_t metrics_port() const { return metrics_port_; }
  [[nodiscard]] const std::string& output() const { return out_; }

  // SIGTERM, then its exit status (as from waitpid); -1 when it did not exit in time.
  int stop() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
    return wait_exit(30'000);
  }
  // SIGKILL (a crash), then its exit status.
  int crash() {
    if (pid_ > 0) ::kill(pid_, SIGKILL);
    return wait_exit(30'000);
  }
  // Its exit status once it exits by itself, reading its output; -1 after the timeout.
  int wait_exit(int timeout_ms) {
    if (pid_ <= 0) return -1;
    const auto deadline = clock_type::now() + std::chrono::milliseconds(timeout_ms);
    while (read_some(deadline)) {
    }
    int status = 0;
    for (;;) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      if (remaining_ms(deadline) == 0) return -1;
      ::usleep(10'000);
    }
  }

 private:
  bool read_some(clock_type::time_point deadline) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
    char buf[4096];
    const auto n = ::read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    out_.append(buf, size_t(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string out_;
  uint16_t port_ = 0, admin_port_ = 0, metrics_port_ = 0;
};

struct console_result {
  int exit = -1;  // the exit status; -1 when it did not exit normally in time
  std::string out, err;
};

// mesobd up for the length of `while_up(client port)`, then SIGTERM; its exit status
// and output.
inline run_result start_and_stop_mesobd(const std::string& data, const std::function<void(uint16_t)>& while_up = {}) {
  live_mesobd d(data);
  if (d.up() && while_up) while_up(d.port());
  run_result r;
  r.status = d.stop();
  r.out = d.output();
  return r;
}

// Client options for mesobd's development gateway, its secret read from the data
// directory where mesobd generated it.
inline wire::client::options dev_gateway_options(const std::string& data, uint16_t port) {
  std::ifstream in(data + "/dev-gateway.secret");
  std::string hex;
  in >> hex;
  wire::client::options o;
  o.port = port;
  o.gateway = "dev";
  EXPECT_TRUE(wire::from_hex(hex, &o.secret)) << hex;
  return o;
}

}  // namespace mesob::test
