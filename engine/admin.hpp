// admin: the admin endpoint, an actor behind the admin port (engine/README.md, "The
// admin endpoint"; the `mesob` console is its client).
//
// The admin port is a server (server.hpp) in admin mode: only gateways with the admin
// role get in, and each admin command it takes is handed to the admin actor, a CAF
// actor of its own (detached: a command such as `log verify` reads the whole log and
// may wait for it). The actor runs one command at a time (a long one, `snapshot`, `log
// verify` or `audit`, it only begins: the long lane, a second actor, runs it, one at a
// time, so that other commands are not held behind it):
//   1. it appends "issued" to the audit trail (<data-dir>/admin-audit.log,
//      storage/audit_log.hpp): who (gateway, session, peer address), when, what. The
//      entry is durable before the command runs; if it cannot be written the command
//      does not run;
//   2. it runs the command against the engine;
//   3. it appends the outcome, and answers.
// The server owns the grammar: `commands` lists every command with its arguments, and
// the console completes and explains from that list, so a command added here needs no
// console change.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "engine/engine.hpp"
#include "engine/server.hpp"
#include "wire/codec.hpp"

namespace mesob::engine {

struct admin_config {
  std::string data_dir;             // the audit trail lives here
  std::function<void()> shutdown;   // `shutdown`: drain and stop (unset: refused)
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

class admin_impl;

class admin_endpoint {
 public:
  // Opens the audit trail (cutting a torn last entry: *repaired says so) and spawns the
  // admin actor in the engine's actor system. If the trail cannot be opened (damaged,
  // unreadable), *error says why and the endpoint still runs, answering every command
  // `failed` with that reason: the engine goes on serving clients meanwhile.
  static std::unique_ptr<admin_endpoint> open(engine& e, admin_config cfg, std::string* error,
                                              std::string* repaired);
  // Stops the actor after the command it is running, if any; commands still queued are
  // answered `refused` without running.
  ~admin_endpoint();
  // The stop begins: a command running ends early where it can (a log verify, at its next
  // record: answered `refused`), and commands still queued are answered `refused`. Call
  // before the admin port drains, so its drain does not wait for a long scan.
  void begin_stop();
  admin_endpoint(const admin_endpoint&) = delete;
  admin_endpoint& operator=(const admin_endpoint&) = delete;

  // The servers whose figures `status` reports (either may be null). Call before the
  // admin port starts taking commands.
  void set_servers(const server* clients, const server* admin_port);
  // The handler for server_config::admin: hands each command to the actor.
  [[nodiscard]] admin_handler handler();

 private:
  explicit admin_endpoint(std::unique_ptr<admin_impl> impl);
  std::unique_ptr<admin_impl> impl_;
};

}  // namespace mesob::engine
