// Running the shipped programs from tests: their path in the build tree, a command's exit
// status and output, and mesobd started on a data directory (any free port) for the
// length of a callback, then stopped with SIGTERM.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "wire/client.hpp"

namespace mesob::test {

inline std::string bin(const char* rel) {
  const char* dir = std::getenv("MESOB_TEST_BIN_DIR");
  return std::string(dir ? dir : ".") + "/" + rel;
}

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

struct mesobd_ports {
  uint16_t client = 0;
  uint16_t admin = 0;
};

// Starts mesobd (2 shards, any free client and admin ports, plus `extra` arguments) on
// `data`, waits for "ready", runs `while_up(ports)`, SIGTERMs it unless `while_up`
// returned false (it stopped mesobd itself), and returns its exit status and output.
inline run_result run_mesobd(const std::string& data, const std::vector<std::string>& extra,
                             const std::function<bool(mesobd_ports)>& while_up) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  std::vector<std::string> args = {bin("engine/mesobd"), "--data-dir", data, "--shards", "2", "--port", "0",
                                   "--admin-port", "0"};
  args.insert(args.end(), extra.begin(), extra.end());
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    ::close(fds[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::_Exit(127);
  }
  ::close(fds[1]);
  run_result r;
  char buf[4096];
  bool signalled = false;
  for (;;) {
    const auto n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, size_t(n));
    if (!signalled && r.out.find("ready") != std::string::npos) {
      mesobd_ports ports;
      if (const auto at = r.out.find("mesobd: listening on 127.0.0.1:"); at != std::string::npos)
        ports.client = uint16_t(std::atoi(r.out.c_str() + at + 31));
      if (const auto at = r.out.find("mesobd: admin listening on 127.0.0.1:"); at != std::string::npos)
        ports.admin = uint16_t(std::atoi(r.out.c_str() + at + 37));
      const bool stop = while_up ? while_up(ports) : true;
      if (stop) ::kill(pid, SIGTERM);
      signalled = true;
    }
  }
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.status = status;
  return r;
}

// run_mesobd with no extra arguments, handing `while_up` the client port.
inline run_result start_and_stop_mesobd(const std::string& data, const std::function<void(uint16_t)>& while_up = {}) {
  return run_mesobd(data, {}, [&](mesobd_ports p) {
    if (while_up) while_up(p.client);
    return true;
  });
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
