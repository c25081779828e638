// The shipped programs as a user runs them: mesobd starts on a data directory, serves,
// stops cleanly on SIGTERM and recovers; mesob-log verifies a log and names the file
// and offset of damage.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <functional>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "engine/engine.hpp"
#include "storage/snapshot.hpp"
#include "storage/wal.hpp"
#include "support/engine_fixture.hpp"
#include "support/mesobd_process.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::test;

namespace {
// A loopback port another program holds: a socket listening on a port the kernel chose,
// its port in *port (-1 if one could not be made).
int hold_a_port(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 1) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(a.sin_port);
  return fd;
}
}  // namespace

TEST(mesobd, starts_stops_on_sigterm_and_recovers) {
  temp_dir dir;
  {  // Some state to recover: written through the embedded engine, left in the log.
    auto cfg = test_config(dir.path());
    cfg.checkpoint_on_close = false;  // the state stays in the log
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    ASSERT_EQ(e->create_accounts({make_account(1), make_account(2)}).results.at(0), wire::result::ok);
    ASSERT_EQ(e->create_transfers({make_transfer(1, 1, 2, 10)}).results.at(0), wire::result::ok);
  }
  auto first = start_and_stop_mesobd(dir.path());
  ASSERT_TRUE(WIFEXITED(first.status) && WEXITSTATUS(first.status) == 0) << first.out;
  EXPECT_NE(first.out.find("2 log records replayed"), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("stopped cleanly"), std::string::npos) << first.out;
  // The clean stop took a snapshot: the next start replays nothing.
  auto second = start_and_stop_mesobd(dir.path());
  ASSERT_TRUE(WIFEXITED(second.status) && WEXITSTATUS(second.status) == 0) << second.out;
  EXPECT_NE(second.out.find("2 accounts, 1 transfers, 0 open pending, 0 log records replayed"), std::string::npos)
      << second.out;
}

// The shipped daemon over TCP: its development gateway's secret (generated on first
// start into the data directory) opens a session; what is written over the network is
// there after a restart.
TEST(mesobd, serves_the_protocol_with_its_development_gateway) {
  temp_dir dir;
  auto dev_options = [&](uint16_t port) { return dev_gateway_options(dir.path(), port); };
  auto first = start_and_stop_mesobd(dir.path(), [&](uint16_t port) {
    ASSERT_NE(port, 0);
    auto o = dev_options(port);
    std::string err;
    auto c = wire::client::connect(o, &err);
    ASSERT_TRUE(c) << err;
    EXPECT_EQ(c->welcome().roles, wire::roles::all);
    auto r = c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)}));
    ASSERT_TRUE(r.ok) << r.failure;
    r = c->call(wire::create_transfers_body(std::vector{make_transfer(5, 1, 2, 70)}));
    ASSERT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.reply.results.at(0), wire::result::ok);
    o.secret[0] ^= 1;
    EXPECT_FALSE(wire::client::connect(o, &err));
    EXPECT_NE(err.find("auth failed"), std::string::npos) << err;
  });
  ASSERT_TRUE(WIFEXITED(first.status) && WEXITSTATUS(first.status) == 0) << first.out;
  EXPECT_NE(first.out.find("generated now"), std::string::npos) << first.out;
  auto second = start_and_stop_mesobd(dir.path(), [&](uint16_t port) {
    std::string err;
    auto c = wire::client::connect(dev_options(port), &err);
    ASSERT_TRUE(c) << err;
    auto r = c->call(wire::lookup_accounts_body(std::vector<uint64_t>{2}));
    ASSERT_TRUE(r.ok) << r.failure;
    EXPECT_EQ(r.reply.accounts.at(0).credits_posted, 70u);
  });
  ASSERT_TRUE(WIFEXITED(second.status) && WEXITSTATUS(second.status) == 0) << second.out;
  EXPECT_EQ(second.out.find("generated now"), std::string::npos) << second.out;
}

// One engine at a time on a data directory: a second mesobd started on it is refused
// before it reads or repairs anything, and the first goes on serving, its log whole.
// Before, the second recovered the directory under the first (cutting the first's newest
// group as a torn tail, pre-zeroing its next segment), then checkpointed older state over
// the newer when its ports turned out to be taken. A crash lets the lock go.
TEST(mesobd, a_second_engine_on_the_same_data_directory_is_refused) {
  temp_dir dir;
  auto first = std::make_unique<live_mesobd>(dir.path());
  ASSERT_TRUE(first->up()) << first->output();
  std::string err;
  auto c = wire::client::connect(dev_gateway_options(dir.path(), first->port()), &err);
  ASSERT_TRUE(c) << err;
  ASSERT_EQ(c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)})).reply.results.at(0),
            wire::result::ok);
  for (uint64_t i = 1; i <= 20; ++i)  // acknowledged before the second start, and during it
    ASSERT_EQ(c->call(wire::create_transfers_body(std::vector{make_transfer(i, 1, 2, 1)})).reply.results.at(0),
              wire::result::ok);
  // On ports of its own (stopped by the lock), and on the first's, as a restart would be
  // (stopped at the port, before the lock: named by the lock all the same).
  for (const std::string& port : {std::string("0"), std::to_string(first->port())}) {
    auto second = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --port " + port +
                      " --admin-port 0 --metrics-port 0");
    EXPECT_EQ(WEXITSTATUS(second.status), 1) << second.out;
    EXPECT_NE(second.out.find("is in use by another engine (pid "), std::string::npos) << second.out;
    EXPECT_EQ(second.out.find("replayed"), std::string::npos) << "it recovered the directory: " << second.out;
  }
  for (uint64_t i = 21; i <= 40; ++i)
    ASSERT_EQ(c->call(wire::create_transfers_body(std::vector{make_transfer(i, 1, 2, 1)})).reply.results.at(0),
              wire::result::ok);
  c.reset();
  const int st = first->crash();  // SIGKILL: the kernel lets the lock go
  EXPECT_TRUE(WIFSIGNALED(st)) << st;
  first.reset();
  live_mesobd again(dir.path());
  ASSERT_TRUE(again.up()) << again.output();
  c = wire::client::connect(dev_gateway_options(dir.path(), again.port()), &err);
  ASSERT_TRUE(c) << err;
  const auto r = c->call(wire::lookup_accounts_body(std::vector<uint64_t>{2}));
  ASSERT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.reply.accounts.at(0).credits_posted, 40u) << "every acknowledged transfer, after the crash";
}

// A restart right after a crash takes its port: the killed engine's is held a few
// milliseconds past its death (the kernel tears its io_uring rings down after it), and
// mesobd asks again for up to a second. Before, a restart at once failed about one time
// in three with "Address already in use".
TEST(mesobd, a_restart_right_after_a_crash_takes_its_port) {
  temp_dir dir;
  // A port another program lets go of within the second: taken.
  uint16_t port = 0;
  const int held = hold_a_port(&port);
  ASSERT_GE(held, 0) << std::strerror(errno);
  const std::vector<std::string> args = {"--port", std::to_string(port)};
  std::thread let_go([held] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::close(held);
  });
  auto engine = std::make_unique<live_mesobd>(dir.path(), args);
  let_go.join();
  ASSERT_TRUE(engine->up()) << engine->output();
  EXPECT_EQ(engine->port(), port);
  // Killed with a client connected, and started again at once on the same port.
  std::string err;
  for (int i = 0; i < 6; ++i) {
    auto c = wire::client::connect(dev_gateway_options(dir.path(), port), &err);
    ASSERT_TRUE(c) << err;
    ASSERT_TRUE(c->call(wire::lookup_accounts_body(std::vector<uint64_t>{1})).ok);
    ASSERT_NE(engine->crash(), -1);
    engine = std::make_unique<live_mesobd>(dir.path(), args);
    ASSERT_TRUE(engine->up()) << "restart " << i << ": " << engine->output();
  }
}

TEST(mesobd, bad_gateway_settings_are_refused) {
  temp_dir dir;
  auto r = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --port 0 --gateway gw:payments:zz");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("the secret is not hex"), std::string::npos) << r.out;
  r = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --port 0 --gateway gw:root:00112233445566778899aabbccddeeff");
  EXPECT_NE(r.out.find("an unknown or empty role"), std::string::npos) << r.out;
  r = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --port 0 --gateway gw:payments,:00112233445566778899aabbccddeeff");
  EXPECT_NE(r.out.find("an unknown or empty role in 'payments,'"), std::string::npos) << r.out;
  r = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --port 0 --gateway gw:payments:0011");
  EXPECT_NE(r.out.find("secret must be at least 16 bytes"), std::string::npos) << r.out;
  r = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --port 0 --frame-bytes-max 100");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("frame_bytes_max must be 4096.."), std::string::npos) << r.out;
  // Refused before the data directory is opened: no log, no snapshot, no secret made.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << "a refused start changed the data directory";
}

// The development gateway's secret file is one line of hex: words after it are refused,
// not ignored; a file others may read is said on stderr.
TEST(mesobd, a_dev_secret_file_is_its_secret_alone) {
  temp_dir dir;
  const std::string data = dir.path() + "/data";
  std::filesystem::create_directories(data);
  const std::string file = data + "/dev-gateway.secret", hex(64, 'a');
  std::ofstream(file) << hex << " junk\n";
  ::chmod(file.c_str(), 0600);
  auto r = run("timeout 60 " + bin("engine/mesobd") + " --data-dir " + data + " --port 0 --admin-port 0 --metrics-port 0");
  EXPECT_TRUE(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 1) << r.out;
  EXPECT_NE(r.out.find("dev-gateway.secret: not a hex secret"), std::string::npos) << r.out;
  std::ofstream(file, std::ios::trunc) << hex << "\r\n";  // a line's end as an editor may leave it
  ::chmod(file.c_str(), 0644);
  r = run("timeout -s INT 3 " + bin("engine/mesobd") + " --data-dir " + data + " --port 0 --admin-port 0 --metrics-port 0");
  EXPECT_NE(r.out.find("secret " + hex + " ("), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("may be read by others (mode 0644)"), std::string::npos) << r.out;
}

// Keys of a --config file are the flags' names; anything else is refused, not ignored
// (a misspelt limit would otherwise run on its default).
TEST(mesobd, a_config_file_with_an_unknown_key_is_refused) {
  temp_dir dir;
  const std::string file = dir.path() + "/mesobd.conf";
  std::ofstream(file) << "in_flight_max = 1\n";
  auto r = run(bin("engine/mesobd") + " --config " + file + " --data-dir " + dir.path() + "/data --port 0");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("in_flight_max"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  std::ofstream(file) << "in-flight-max = 0\n";
  r = run(bin("engine/mesobd") + " --config " + file + " --data-dir " + dir.path() + "/data --port 0");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("in_flight_max must be 1..65536"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  // What CLI11 would read other than as written is refused: a '#' in a value (a comment
  // from there on) and a repeated key with other keys between (its later lines dropped).
  // A key's lines together are read as before.
  const std::string g = ":payments:00112233445566778899aabbccddeeff";
  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"data-dir = " + dir.path() + "/data#2\n", "line 1: the value of data-dir holds a '#'"},
           {"gateway = a" + g + "\nport = 0\ngateway = b" + g + "\n",
            "line 3: gateway was given on line 1 with other keys between"},
           {"# a comment\ngateway = a" + g + "\ngateway = b" + g + "\nin-flight-max = 0\n",
            "in_flight_max must be 1..65536"}}) {
    std::ofstream(file, std::ios::trunc) << text;
    r = run(bin("engine/mesobd") + " --config " + file + " --data-dir " + dir.path() + "/data --port 0");
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << text << r.out;
    EXPECT_NE(r.out.find(says), std::string::npos) << text << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  }
  // A path CLI11 would take as no file (empty), or read as empty (a pipe this check read to
  // its end; a FIFO hung), or a file past a settings file's size: refused, where before
  // the engine started on its defaults.
  const std::string fifo = dir.path() + "/fifo", big = dir.path() + "/big.conf";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::ofstream(big) << std::string(2 << 20, '#');
  for (const auto& [arg, says] : std::vector<std::pair<std::string, std::string>>{
           {"--config ''", "the path is empty"},
           {"--config=", "the path is empty"},
           {"--config " + fifo, "is not a regular file"},
           {"--config=/dev/null", "is not a regular file"},
           {"--config " + dir.path(), "is not a regular file"},
           {"--config " + big, "more than a settings file's 1048576"},
           {"--config " + dir.path() + "/absent.conf", "cannot read"}}) {
    r = run(bin("engine/mesobd") + " " + arg + " --data-dir " + dir.path() + "/data --port 0");
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << arg << "\n" << r.out;
    EXPECT_NE(r.out.find(says), std::string::npos) << arg << "\n" << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  }
  // The console's settings file is read by the same check: a repeated key with other keys
  // between was read as its first line only (the console then asked the wrong port).
  std::ofstream(file, std::ios::trunc) << "port = 1\ntimeout-ms = 100\nport = 2\n";
  r = run(bin("tools/mesob") + " --config " + file + " status");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("line 3: port was given on line 1 with other keys between"), std::string::npos) << r.out;
}

// The tools' numbers as written, as mesobd's: CLI11 alone read the relay's --account
// 00042 as octal 34 (another customer's events), -1 as 2^64 - 1, and let nan by a range.
TEST(tools, numbers_on_their_command_lines_are_decimal_and_finite) {
  const std::string relay = bin("tools/mesob-relay") + " --gateway dev --secret 00 ";
  const std::string sim = bin("tools/mesob-gatewaysim") + " --gateway a:00 ";
  const std::string load = bin("perf/mesob-load") + " ";
  for (const auto& [cmd, says] : std::vector<std::pair<std::string, std::string>>{
           {relay + "--account 00042", "is not a decimal number"},
           {relay + "--account -1", "is not a decimal number"},
           {relay + "--from 0x10", "is not a decimal number"},
           {relay + "--port 07400", "is not a decimal number"},
           // Port 0 is no server's: refused, not tried forever ("cannot connect").
           {relay + "--port 0", "--port: Value 0 not in range 1 to 65535"},
           {sim + "--port 0", "--port: Value 0 not in range 1 to 65535"},
           {load + "--port 0", "--port: Value 0 not in range 1 to 65535"},
           {relay + "--seconds nan", "is not a finite decimal number"},
           {sim + "--amount -1", "is not a decimal number"},
           {sim + "--port 07400", "is not a decimal number"},
           {sim + "--latency-ms nan", "is not a finite decimal number"},
           // Latencies and the run's length within bounds: before, --seconds -1 meant no end
           // and a latency past 2^63 ns wrapped into the past.
           {sim + "--latency-ms -1", "--latency-ms: Value -1 not in range"},
           {sim + "--latency-ms-max 1e13", "--latency-ms-max: Value 1e13 not in range"},
           {sim + "--seconds -1", "--seconds: Value -1 not in range"},
           {load + "--connections 010", "is not a decimal number"},
           {load + "--rate inf", "is not a finite decimal number"},
           {load + "--rate 0x10", "is not a finite decimal number"},  // (strtod's hex)
           {load + "--rate 1e3x", "is not a finite decimal number"},
           {bin("tools/mesob-log") + " --data-dir", "required TEXT missing"},  // exit 2, not CLI11's 100s
           // The console's settings file as mesobd's: an empty path was no file.
           {bin("tools/mesob") + " --config '' status", "--config: the path is empty"},
           // Both secrets: refused (the file won silently).
           {relay + "--secret-file /dev/null", "--secret and --secret-file are both given"}}) {
    const auto r = run(cmd);
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << cmd << "\n" << r.out;
    EXPECT_NE(r.out.find(says), std::string::npos) << cmd << "\n" << r.out;
  }
}

TEST(mesobd, help_lists_settings_and_bad_flags_are_refused) {
  auto help = run(bin("engine/mesobd") + " --help");
  EXPECT_EQ(help.status, 0);
  for (const char* flag : {"--data-dir", "--shards", "--wal-segment-mib", "--checkpoint-interval-ms",
                           "--transfers-resident-max", "--config"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag;
  auto bad = run(bin("engine/mesobd") + " --shards nine");
  EXPECT_NE(bad.status, 0);
  temp_dir dir;
  auto invalid = run(bin("engine/mesobd") + " --data-dir " + dir.path() + " --wal-group-mib 0");
  EXPECT_NE(invalid.status, 0);
  EXPECT_NE(invalid.out.find("wal_group_mib"), std::string::npos) << invalid.out;
}

// Unsigned settings are decimal digits: CLI11 alone took -1 as 2^64 - 1 (a checkpoint
// interval whose nanoseconds wrapped, snapshotting without pause), 07401 as octal and 0x10
// as hex. Past their ceilings settings are refused by name; nothing touches the data
// directory.
TEST(mesobd, numbers_are_decimal_and_bounded) {
  temp_dir dir;
  const std::string base = bin("engine/mesobd") + " --data-dir " + dir.path() + "/data --port 0 ";
  for (const char* flag : {"--checkpoint-interval-ms -1", "--admin-port 07401", "--in-flight-max 0x10",
                           "--idle-timeout-ms +5", "--shards 1.5", "--accounts-hint 99999999999999999999999",
                           "--metrics-port 07402", "--metrics-port 0x1CF2",
                           "--out-bytes-total-max 18446744073709551616"}) {
    auto r = run(base + flag);
    EXPECT_NE(r.status, 0) << flag << "\n" << r.out;
    EXPECT_NE(r.out.find("is not a decimal number"), std::string::npos) << flag << "\n" << r.out;
  }
  const std::string file = dir.path() + "/mesobd.conf";
  std::ofstream(file) << "session-out-bytes-max = -1\n";
  auto r = run(base + "--config " + file);
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("is not a decimal number"), std::string::npos) << r.out;
  for (const auto& [flag, says] : std::vector<std::pair<std::string, std::string>>{
           {"--checkpoint-interval-ms 18446744073709551", "checkpoint_interval_ms must be at most"},
           {"--accounts-hint 4294967296", "accounts_hint must be at most"},
           {"--accounts-max 0", "accounts_max must be 1..68719476736"},
           {"--groups-max 1073741825", "groups_max must be 1..1073741824"},
           {"--pending-max 0", "pending_max must be 1..68719476736"},
           {"--shards 1 --pending-max 68719476736", "pending_max must be at most 4294967295 (2^32 - 1) a shard"},
           {"--idle-timeout-ms 18446744073709551615", "timeouts must be at most a day"},
           {"--stall-timeout-ms 86400001", "stall_timeout_ms must be 1000..86400000"},
           {"--stall-timeout-ms 999", "stall_timeout_ms must be 1000..86400000"},
           {"--session-out-bytes-max 18446744073709551615 --out-bytes-total-max 18446744073709551615",
            "out_bytes_max must be at most 1 TiB"},
           {"--session-push-backlog-bytes-max 1099511627777", "push_backlog_bytes_max must be at most 1 TiB"},
           // (before: no ceiling, and 2^64 - 1 lifted the limit on all sessions' bytes)
           {"--out-bytes-total-max 18446744073709551615", "out_bytes_total_max must be twice out_bytes_max..2 TiB"},
           {"--in-bytes-total-max 2490399",
            "in_bytes_total_max must be 2490400..2 TiB (at least two frame buffers for frames of frame_bytes_max "
            "1048576)"},
           {"--frame-bytes-max 4096 --in-bytes-total-max 401439",
            "in_bytes_total_max must be 401440..2 TiB (at least two frame buffers for frames of frame_bytes_max 4096)"},
           // Checked before the data directory is opened (before, these failed after
           // recovery, a snapshot taken at the way out, or ended in an allocation failure).
           {"--transfers-resident-max 4294967296", "more than three quarters of this machine's"},
           {"--transfers-resident-max 4294967296", "MiB of log buffers"},
           {"--listen localhost", "--listen localhost is not an IPv4 address"},
           {"--metrics-listen ::1", "--metrics-listen ::1 is not an IPv4 address"},
           {"--admin-port 7600 --metrics-port 7600", "--admin-port and --metrics-port are both 7600"}}) {
    r = run(base + flag);
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << flag << "\n" << r.out;
    EXPECT_NE(r.out.find(says), std::string::npos) << flag << "\n" << r.out;
  }
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << "a refused start made the data directory";
  // A port another program holds, or an address this host does not have: refused before
  // the data directory is opened (before, recovery ran, then mesobd stopped).
  {
    uint16_t held_port = 0;
    const int held = hold_a_port(&held_port);
    ASSERT_GE(held, 0) << std::strerror(errno);
    const std::string port = std::to_string(held_port);
    for (const auto& [flag, says] : std::vector<std::pair<std::string, std::string>>{
             {"--admin-port " + port, "--admin-listen/--admin-port 127.0.0.1:" + port + ": Address already in use"},
             {"--metrics-port " + port, "--metrics-listen/--metrics-port 127.0.0.1:" + port + ": Address already in use"},
             {"--metrics-listen 192.0.2.1", "--metrics-listen/--metrics-port 192.0.2.1:7402: Cannot assign"}}) {
      r = run(base + flag);
      EXPECT_EQ(WEXITSTATUS(r.status), 2) << flag << "\n" << r.out;
      EXPECT_NE(r.out.find("mesobd: cannot serve: " + says), std::string::npos) << flag << "\n" << r.out;
    }
    ::close(held);
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << "a start refused its port made the data directory";
  }
  // A gateway spec with its parts out of place is refused without printing its secret.
  const std::string secret = "00112233445566778899aabbccddeeff";
  for (const std::string& spec : {secret, "pay:" + secret + ":payments", secret + ":payments",
                                  // (the secret first, as the id: before, named in the refusal)
                                  secret + ":payments:gw1", secret + ":payments:", secret + ":payments:00ff"}) {
    r = run(base + "--gateway " + spec);
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << spec << "\n" << r.out;
    EXPECT_NE(r.out.find("--gateway"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find(secret), std::string::npos) << "the secret on stderr: " << r.out;
  }
  // The admin port off loopback only when asked for by name (its frames are not encrypted).
  r = run(base + "--admin-listen 0.0.0.0");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("--admin-listen 0.0.0.0 is off loopback"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  // Nor the client port with no gateway named: the development gateway has every role.
  r = run(base + "--listen 0.0.0.0");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("--listen 0.0.0.0 is off loopback with no --gateway"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  // Nor the admin port, even with --admin-any-network (which takes unencrypted frames,
  // not a gateway with every role whose secret the start printed).
  r = run(base + "--admin-listen 0.0.0.0 --admin-any-network");
  EXPECT_EQ(WEXITSTATUS(r.status), 2) << r.out;
  EXPECT_NE(r.out.find("--admin-listen 0.0.0.0 is off loopback with no --gateway"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  // A gateway the server is started with is checked as the registry checks one: an id
  // the console could not log in with, a secret longer than any login takes.
  for (const std::string& spec : {"'ops team:admin:" + secret + "'", "ops:admin:" + secret + secret + secret + secret + secret}) {
    r = run(base + "--gateway " + spec);
    EXPECT_EQ(WEXITSTATUS(r.status), 2) << spec << "\n" << r.out;
    EXPECT_TRUE(r.out.find("letters, digits") != std::string::npos || r.out.find("16 to 64 bytes") != std::string::npos)
        << r.out;
    EXPECT_FALSE(std::filesystem::exists(dir.path() + "/data")) << r.out;
  }
}

TEST(mesob_log, verifies_a_log_and_names_the_damage) {
  temp_dir dir;
  {
    auto cfg = test_config(dir.path());
    cfg.checkpoint_on_close = false;  // the state stays in the log
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    e->create_accounts({make_account(1), make_account(2)});
    for (uint64_t i = 1; i <= 5; ++i) e->create_transfers({make_transfer(i, 1, 2, i)});
  }
  auto ok = run(bin("tools/mesob-log") + " --data-dir " + dir.path() + " --records");
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find("6 records, 7 operations, lsn 1..6 verified"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("create_transfers x1  capacity 16777216  transfers_max 268435456"), std::string::npos)
      << ok.out;  // pending_max, transfers_max
  EXPECT_NE(ok.out.find("create_accounts x2  capacity 33554432"), std::string::npos) << ok.out;  // accounts_max
  const auto segs = storage::list_segments(dir.path() + "/wal");
  ASSERT_FALSE(segs.empty());
  // A segment that cannot be opened (a directory in its place here; a permission or the
  // descriptors run out alike) is a log not read, exit 3: not damage, exit 1, which an
  // operator would restore a backup for.
  const std::string aside = dir.path() + "/segment.aside";
  ASSERT_EQ(::rename(segs.front().second.c_str(), aside.c_str()), 0);
  ASSERT_EQ(::mkdir(segs.front().second.c_str(), 0755), 0);
  auto unread = run(bin("tools/mesob-log") + " --data-dir " + dir.path());
  EXPECT_EQ(WEXITSTATUS(unread.status), 3) << unread.out;
  EXPECT_NE(unread.out.find("CANNOT READ: wal: cannot open " + segs.front().second), std::string::npos) << unread.out;
  ASSERT_EQ(::rmdir(segs.front().second.c_str()), 0);
  ASSERT_EQ(::rename(aside.c_str(), segs.front().second.c_str()), 0);
  // Flip a byte of the first record's payload: damage before later records.
  int fd = ::open(segs.front().second.c_str(), O_RDWR);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, 4096 + 80 + 20), 1);
  b ^= 0x40;
  ASSERT_EQ(::pwrite(fd, &b, 1, 4096 + 80 + 20), 1);
  ::close(fd);
  auto bad = run(bin("tools/mesob-log") + " --data-dir " + dir.path());
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("DAMAGED"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find(segs.front().second + " offset 4096"), std::string::npos) << bad.out;
  // And the engine refuses to start on it, with the same precise message.
  engine::config cfg;
  cfg.data_dir = dir.path();
  std::string err;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("offset 4096"), std::string::npos) << err;
}

// A scrub: `--snapshot-rows` checks every row of the snapshot and names each damaged one
// (a row no request has read yet is otherwise found only when one needs it).
TEST(mesob_log, snapshot_rows_names_every_damaged_row) {
  temp_dir dir;
  {
    auto e = open_engine(test_config(dir.path()));  // closes with a snapshot
    ASSERT_TRUE(e);
    create_accounts(*e, 4);
    for (uint64_t i = 1; i <= 50; ++i) ASSERT_EQ(e->create_transfers({make_transfer(i, 1, 2, i)}).results.at(0), wire::result::ok);
  }
  const std::string log = bin("tools/mesob-log") + " --snapshot-rows --data-dir " + dir.path();
  auto clean = run(log);
  EXPECT_EQ(clean.status, 0) << clean.out;
  EXPECT_NE(clean.out.find(", 0 failing their checks"), std::string::npos) << clean.out;
  ASSERT_GE(damage_snapshot_row(dir.path(), storage::table::accounts, 3, 0x02, 40), 1);
  ASSERT_GE(damage_snapshot_row(dir.path(), storage::table::transfers, 0, 0x02), 1);
  auto plain = run(bin("tools/mesob-log") + " --data-dir " + dir.path());
  EXPECT_EQ(plain.status, 0) << "without the flag the rows are not read\n" << plain.out;
  auto damaged = run(log);
  EXPECT_EQ(WEXITSTATUS(damaged.status), 1) << damaged.out;
  EXPECT_NE(damaged.out.find("DAMAGED: snapshot: row 3 of table accounts"), std::string::npos) << damaged.out;
  EXPECT_NE(damaged.out.find("DAMAGED: snapshot: row 0 of table transfers"), std::string::npos) << damaged.out;
  EXPECT_NE(damaged.out.find(", 2 failing their checks"), std::string::npos) << damaged.out;
  EXPECT_NE(damaged.out.find("51 records, 54 operations, lsn 1..51 verified"), std::string::npos)
      << "the log is still checked\n" << damaged.out;
  // The file cut short (a partial copy): damaged (exit 1), naming the file, instead of a
  // bare SIGBUS.
  std::filesystem::resize_file(dir.path() + "/snapshot/data.mdb", 8192);
  auto cut = run(log);
  EXPECT_TRUE(WIFEXITED(cut.status)) << cut.out;
  EXPECT_EQ(WEXITSTATUS(cut.status), 1) << cut.out;
  EXPECT_NE(cut.out.find("snapshot/data.mdb could not be read through its map (SIGBUS): the snapshot file is damaged"),
            std::string::npos)
      << cut.out;
  // A snapshot that cannot be looked at (here a link to itself: ELOOP, root or not)
  // cannot be read (exit 3). Before, it was taken for none, and the log, read from lsn 1
  // against no snapshot, was called damaged.
  std::filesystem::remove(dir.path() + "/snapshot/data.mdb");
  std::filesystem::create_symlink("data.mdb", dir.path() + "/snapshot/data.mdb");
  auto looped = run(log);
  EXPECT_EQ(WEXITSTATUS(looped.status), 3) << looped.out;
  EXPECT_NE(looped.out.find("CANNOT READ: the snapshot in"), std::string::npos) << looped.out;
  EXPECT_EQ(looped.out.find("DAMAGED"), std::string::npos) << looped.out;
}

// mesob-log checks the log against the snapshot as recovery does, and opens nothing for
// writing: a log that is not the snapshot's history is damaged (exit 1), a directory
// without a log cannot be read (exit 3) and gets no snapshot store created. Before, both
// said "verified" with exit 0, and the look at the snapshot created one.
TEST(mesob_log, a_log_that_is_not_the_snapshots_history_is_damaged) {
  temp_dir mine, other, empty;
  auto run_engine = [](const std::string& data, uint64_t amount) {
    auto cfg = test_config(data);
    cfg.checkpoint_on_close = false;
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    e->create_accounts({make_account(1), make_account(2)});
    e->create_transfers({make_transfer(1, 1, 2, amount)});
    std::string err;
    ASSERT_TRUE(e->checkpoint(&err)) << err;
    e->create_transfers({make_transfer(2, 1, 2, amount)});
  };
  run_engine(mine.path(), 5);
  run_engine(other.path(), 7);
  auto ok = run(bin("tools/mesob-log") + " --data-dir " + mine.path());
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_NE(ok.out.find("(the log continues it)"), std::string::npos) << ok.out;
  std::filesystem::rename(mine.path() + "/wal", mine.path() + "/wal.mine");
  std::filesystem::copy(other.path() + "/wal", mine.path() + "/wal");
  auto foreign = run(bin("tools/mesob-log") + " --data-dir " + mine.path());
  EXPECT_EQ(WEXITSTATUS(foreign.status), 1) << foreign.out;
  EXPECT_NE(foreign.out.find("not the snapshot's history"), std::string::npos) << foreign.out;
  auto none = run(bin("tools/mesob-log") + " --data-dir " + empty.path());
  EXPECT_EQ(WEXITSTATUS(none.status), 3) << none.out;
  EXPECT_NE(none.out.find("no log at"), std::string::npos) << none.out;
  EXPECT_FALSE(std::filesystem::exists(empty.path() + "/snapshot")) << "nothing created";
  // The snapshot with an empty log directory (a volume not mounted, say): no log, as
  // recovery refuses it. Before, "no records past lsn N" and exit 0.
  std::filesystem::remove_all(mine.path() + "/wal");
  std::filesystem::create_directory(mine.path() + "/wal");
  auto emptied = run(bin("tools/mesob-log") + " --data-dir " + mine.path());
  EXPECT_EQ(WEXITSTATUS(emptied.status), 3) << emptied.out;
  EXPECT_NE(emptied.out.find("holds no log segment, but the snapshot is at lsn"), std::string::npos) << emptied.out;
}
