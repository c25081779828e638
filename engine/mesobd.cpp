// mesobd: the Mesob engine daemon. Starts on embedded defaults (data in ./var/mesob,
// clients on 127.0.0.1:7400, the admin port on 127.0.0.1:7401), recovers (snapshot +
// log replay), serves the binary protocol (wire/README.md) until SIGTERM, SIGINT or the
// admin command `shutdown`, then stops accepting, answers what it took, snapshots and
// exits 0. Every setting comes from the built-in default, a
// config file (--config, INI/TOML `key = value`) or a flag, later ones winning.
//
// Gateways: --gateway id:roles:hexsecret (roles comma-separated, e.g.
// payments,admin), repeatable. With none configured, a development gateway "dev" with
// every role is used; its secret is generated on first start into
// <data-dir>/dev-gateway.secret and printed.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "engine/admin.hpp"
#include "engine/engine.hpp"
#include "engine/limits.hpp"
#include "engine/metrics.hpp"
#include "engine/server.hpp"
#include "wire/cli_options.hpp"

using namespace mesob;

namespace {

// "id:roles:hexsecret" -> gateway_config.
// Messages name the id and the roles only when they look like them: a spec with its
// parts out of order must not print its secret on stderr.
bool parse_gateway(const std::string& spec, engine::gateway_config* g, std::string* error) {
  const size_t a = spec.find(':'), b = spec.rfind(':');
  auto plain = [](const std::string& s) {
    return s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
             return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                    c == '-' || c == '.' || c == ',';
           }) && !(s.size() >= 32 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(uint8_t(c)); }));
  };
  if (a == std::string::npos || a == b) {
    *error = "--gateway: expected id:roles:hexsecret (two colons; the value given has " +
             std::to_string(std::count(spec.begin(), spec.end(), ':')) + ")";
    return false;
  }
  g->id = spec.substr(0, a);
  const std::string roles = spec.substr(a + 1, b - a - 1);
  const std::string named = plain(g->id) ? " " + g->id : "";
  if (!wire::parse_roles(roles, &g->roles)) {
    *error = "--gateway" + named + ": an unknown or empty role" + (plain(roles) ? " in '" + roles + "'" : "") +
             " (a comma-separated list of payments, broker, market_data, kyc, events_reader, admin, ledger)";
    return false;
  }
  if (!wire::from_hex(spec.substr(b + 1), &g->secret)) {
    *error = "--gateway" + named + ": the secret is not hex";
    return false;
  }
  if (g->secret.size() < wire::secret_bytes_min) {
    *error = "--gateway" + named + ": the secret must be at least " + std::to_string(wire::secret_bytes_min) +
             " bytes (" + std::to_string(2 * wire::secret_bytes_min) + " hex digits)";
    return false;
  }
  return true;
}

// The development gateway's secret: read, or generated and written (mode 0600).
bool dev_secret(const std::string& dir, std::vector<uint8_t>* secret, bool* created, std::string* error) {
  const std::string path = dir + "/dev-gateway.secret";
  std::ifstream in(path);
  // There but unreadable: a new one would lock out every holder of it.
  if (struct stat st {}; !in && (::stat(path.c_str(), &st) == 0 || errno != ENOENT)) {
    *error = "cannot read " + path + (errno != 0 ? std::string(": ") + std::strerror(errno) : std::string());
    return false;
  }
  if (in) {
    // One word of hex and nothing else (at most what the longest secret takes, and the
    // line's end, "\r\n" too): trailing words are not ignored.
    std::string hex(2 * wire::gateway_secret_max + 8, '\0');
    in.read(hex.data(), std::streamsize(hex.size()));
    hex.resize(size_t(in.gcount()));
    while (!hex.empty() && std::isspace(static_cast<unsigned char>(hex.back()))) hex.pop_back();
    if (!wire::from_hex(hex, secret) || secret->size() < wire::secret_bytes_min ||
        secret->size() > wire::gateway_secret_max) {
      *error = path + ": not a hex secret of " + std::to_string(wire::secret_bytes_min) + " to " +
               std::to_string(wire::gateway_secret_max) + " bytes (delete it to have a new one made)";
      return false;
    }
    // It holds every role's secret, admin's included: said when others may read it.
    if (struct stat st {}; ::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0)
      std::fprintf(stderr, "mesobd: %s may be read by others (mode %04o); it holds the dev gateway's secret, every "
                   "role's: chmod 600 it\n", path.c_str(), unsigned(st.st_mode & 07777));
    *created = false;
    return true;
  }
  // Whole or not at all: written aside, synced, renamed into place, the directory synced
  // (a crash while writing in place left a file every later start refused).
  *secret = wire::random_bytes(32);
  const std::string part = path + ".part";
  const int fd = ::open(part.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const std::string text = wire::to_hex(*secret) + "\n";
  const bool written = fd >= 0 && ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fsync(fd) == 0;
  if (fd >= 0) ::close(fd);
  const int dfd = written ? ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
  const bool placed = dfd >= 0 && ::rename(part.c_str(), path.c_str()) == 0 && ::fsync(dfd) == 0;
  if (dfd >= 0) ::close(dfd);
  if (!placed) {
    *error = "cannot write " + path + ": " + std::strerror(errno);
    ::unlink(part.c_str());
    return false;
  }
  *created = true;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  engine::config cfg;
  engine::server_config net;
  std::string admin_address = "127.0.0.1";
  uint16_t admin_port = 7401;
  std::string metrics_address = "127.0.0.1";
  int metrics_port = 7402;
  std::vector<std::string> gateway_specs;
  CLI::App app{"mesobd - Mesob transaction engine"};
  app.set_config("--config", "", "read settings from this file (key = value, keys as the flags without --)");
  app.allow_config_extras(CLI::config_extras_mode::error);  // a misspelt key is an error, not a default
  app.add_option("--data-dir", cfg.data_dir, "data directory (log, snapshots)")->capture_default_str();
  app.add_option("--shards", cfg.shards, "shards; 0 = one per core")->capture_default_str();
  app.add_option("--pin-shards", cfg.pin_shards, "pin shard threads to cores")->capture_default_str();
  app.add_option("--wal-segment-mib", cfg.wal_segment_mib, "log segment size, MiB")->capture_default_str();
  app.add_option("--wal-group-mib", cfg.wal_group_mib, "largest commit group, MiB")->capture_default_str();
  app.add_option("--wal-flights", cfg.wal_flights, "commit groups in flight at once (write + fdatasync each)")
      ->capture_default_str();
  app.add_option("--wal-flush-gap-us", cfg.wal_flush_gap_us, "least time between the starts of two group commits, us")
      ->capture_default_str();
  app.add_option("--snapshot-map-gib", cfg.snapshot_map_gib, "LMDB map ceiling, GiB")->capture_default_str();
  app.add_option("--wal-kept-max-mib", cfg.wal_kept_max_mib,
                 "log segments kept on the disk, MiB: past half, a checkpoint is due; past it, one is waited "
                 "for, and if three fail writes are refused until restart")
      ->capture_default_str();
  app.add_option("--checkpoint-interval-ms", cfg.checkpoint_interval_ms,
                 "snapshot period; 0 = on demand, at stop, and past the limits on resolved holds and the log kept")->capture_default_str();
  app.add_option("--tick-ms", cfg.tick_ms, "clock tick while timed pending transfers exist")->capture_default_str();
  bool no_events = false;
  app.add_flag("--no-events", no_events, "keep no event log (no subscriptions)");
  app.add_option("--events-segment-events", cfg.events_segment_events, "events per event log segment (stored packed, about 14 bytes a transfer's event)")
      ->capture_default_str();
  app.add_option("--events-ring-events", cfg.events_ring_events,
                 "newest events kept in memory for subscribers, a power of two (96 bytes each; older ones are read from the files)")
      ->capture_default_str();
  app.add_option("--events-retention-mib", cfg.events_retention_mib, "drop the oldest event segments past this size (0: keep all)")
      ->capture_default_str();
  app.add_option("--events-retention-s", cfg.events_retention_s, "drop event segments older than this (0: keep all)")
      ->capture_default_str();
  app.add_option("--subscriptions-max", cfg.subscriptions_max, "sessions subscribed to events at once")->capture_default_str();
  app.add_option("--events-windows-mib", cfg.events_windows_mib,
                 "what all event subscriptions' windows may hold queued unread together (one gateway's at most half)")
      ->capture_default_str();
  app.add_option("--queue-requests-max", cfg.queue_requests_max, "requests queued before callers wait")->capture_default_str();
  app.add_option("--transfers-resident-max", cfg.transfers_resident_max,
                 "transfer records kept in memory (power of two); older ones are read from LMDB")
      ->capture_default_str();
  app.add_option("--transfers-flush-step", cfg.transfers_flush_step,
                 "executed records that start writing them to LMDB (0: transfers-resident-max / 32)")
      ->capture_default_str();
  app.add_option("--accounts-hint", cfg.accounts_hint, "accounts to preallocate per shard")->capture_default_str();
  app.add_option("--accounts-max", cfg.accounts_max,
                 "accounts the engine holds, each shard its share; past it creates get accounts_full")
      ->capture_default_str();
  app.add_option("--groups-max", cfg.groups_max,
                 "equb groups the engine holds (ended ones until they retire), each shard its share; past it creates get groups_full")
      ->capture_default_str();
  app.add_option("--pending-max", cfg.pending_max,
                 "pending transfers still pending the engine holds, each shard its share; past it new ones get pending_full")
      ->capture_default_str();
  app.add_option("--transfers-max", cfg.transfers_max,
                 "transfers the engine records (every id stays in memory); past it new ones get transfers_full")
      ->capture_default_str();
  app.add_option("--listen", net.address, "client address (IPv4)")->capture_default_str();
  app.add_option("--port", net.port, "client port; 0 = any free port")->capture_default_str();
  app.add_option("--connections-max", net.connections_max, "open connections")->capture_default_str();
  app.add_option("--handshakes-max", net.handshakes_max,
                 "connections not yet authenticated (past it, the oldest is closed to let a new one in)")
      ->capture_default_str();
  app.add_option("--in-flight-max", net.in_flight_max, "requests in flight per session")->capture_default_str();
  app.add_option("--gateway-sessions-max", net.gateway_sessions_max,
                 "authenticated sessions of one gateway on the client port (the admin port: 16)")
      ->capture_default_str();
  app.add_option("--registered-opens-per-s", net.registered_opens_per_s,
                 "sessions a registered payments or broker gateway may open a second (a burst of four "
                 "seconds' worth); each opening and closing is logged")
      ->capture_default_str();
  app.add_option("--frame-bytes-max", net.frame_bytes_max, "largest frame body, bytes")->capture_default_str();
  app.add_option("--session-out-bytes-max", net.out_bytes_max,
                 "bytes queued to one session before it stops being read")->capture_default_str();
  app.add_option("--session-push-backlog-bytes-max", net.push_backlog_bytes_max,
                 "pushed frames (instructions, events) that wait for room in one session's queue, in order; "
                 "past it the session is closed (slow_reader)")->capture_default_str();
  app.add_option("--push-backlog-total-max", net.push_backlog_total_max,
                 "pushed frames waiting in all sessions' backlogs together; past it the sessions holding the most "
                 "are closed (slow_reader)")->capture_default_str();
  app.add_option("--out-bytes-total-max", net.out_bytes_total_max,
                 "bytes queued to all sessions of the client port: at it no session is read, and those holding "
                 "the most unread are closed (slow_reader)")->capture_default_str();
  app.add_option("--engine-in-flight-bytes-max", net.engine_in_flight_bytes_max,
                 "request bodies in the engine from all sessions together: past it a request waits in its "
                 "session's buffer (frame_bytes_max..1 TiB)")->capture_default_str();
  app.add_option("--in-bytes-total-max", net.in_bytes_total_max,
                 "bytes all sessions' frame buffers hold together: past it the sessions holding the most of a "
                 "frame not yet whole are closed (frame_buffers_full)")->capture_default_str();
  app.add_option("--idle-timeout-ms", net.idle_timeout_ms,
                 "close sessions idle this long (no frame from them, nothing in flight, nothing they read)")
      ->capture_default_str();
  app.add_option("--stall-timeout-ms", net.stall_timeout_ms,
                 "a session whose sends make no progress this long does not read: past its limits it is closed "
                 "(slow_reader); 1000..86400000")
      ->capture_default_str();
  app.add_option("--handshake-timeout-ms", net.handshake_timeout_ms, "time allowed for the handshake")
      ->capture_default_str();
  app.add_option("--flush-timeout-ms", net.flush_timeout_ms,
                 "time a session closed for an error has to read its last frames")
      ->capture_default_str();
  app.add_option("--admin-listen", admin_address, "admin port address (IPv4; loopback unless --admin-any-network)")
      ->capture_default_str();
  bool admin_any_network = false;
  app.add_flag("--admin-any-network", admin_any_network,
               "let --admin-listen name an address off loopback: after the handshake nothing on the admin port is "
               "encrypted or authenticated per frame (new gateway secrets travel in the clear), so only behind a "
               "tunnel or a network you trust");
  app.add_option("--admin-port", admin_port, "admin port (admin gateways only); 0 = any free port")
      ->capture_default_str();
  app.add_option("--metrics-listen", metrics_address, "Prometheus metrics address (IPv4)")->capture_default_str();
  app.add_option("--metrics-port", metrics_port, "Prometheus metrics port (GET /metrics); 0 = any free port, -1 = off")
      ->check(CLI::Range(-1, 65535))
      ->capture_default_str();
  app.add_option("--gateway", gateway_specs, "id:roles:hexsecret (repeatable); none: a development gateway with every role (loopback only)");
  // Settings are decimal digits only (a minus sign for the signed: the metrics port's -1
  // is off), flags and config file alike: CLI11 would take -1 as 2^64 - 1, a leading 0 as
  // octal and 0x as hex.
  wire::numbers_as_written(app);
  // The config file, before CLI11 reads it.
  if (const std::string problem = wire::config_file_refusal(argc, argv); !problem.empty()) {
    std::fprintf(stderr, "mesobd: --config: %s\n", problem.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    std::fprintf(stderr, "mesobd: --config: %s (its keys are the flags' names without --, such as in-flight-max)\n",
                 e.what());
    return 2;
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // (help; bad options: CLI11's own codes are 100 and up)
  }
  cfg.events = !no_events;

  // Every setting is checked before the data directory is touched: a bad one changes
  // nothing there (no replay, no torn tail cut, no snapshot at close).
  std::string error;
  if (auto problem = cfg.validate(); !problem.empty()) {
    std::fprintf(stderr, "mesobd: cannot start: %s\n", problem.c_str());
    return 2;
  }
  for (const auto& spec : gateway_specs) {
    engine::gateway_config g;
    if (!parse_gateway(spec, &g, &error)) {
      std::fprintf(stderr, "mesobd: %s\n", error.c_str());
      return 2;
    }
    net.gateways.push_back(std::move(g));
  }
  // The admin port's frames are not encrypted: off loopback only when asked for by name.
  if (!admin_any_network && admin_address.rfind("127.", 0) != 0) {
    std::fprintf(stderr,
                 "mesobd: cannot serve: --admin-listen %s is off loopback, where the admin port's commands and the "
                 "gateway secrets they set would travel unencrypted; use a tunnel to 127.0.0.1, or pass "
                 "--admin-any-network on a network you trust\n",
                 admin_address.c_str());
    return 2;
  }
  // Addresses and ports the servers will take, before the data directory is opened.
  for (const auto& [flag, address] : {std::pair<const char*, const std::string&>{"--listen", net.address},
                                      {"--admin-listen", admin_address},
                                      {"--metrics-listen", metrics_address}}) {
    in_addr parsed{};
    if (::inet_pton(AF_INET, address.c_str(), &parsed) != 1) {
      std::fprintf(stderr, "mesobd: cannot serve: %s %s is not an IPv4 address (dotted decimal, such as 127.0.0.1)\n",
                   flag, address.c_str());
      return 2;
    }
  }
  // The development gateway (every role, the admin role with it) serves loopback only,
  // on either port: a server on the network names its gateways and their roles.
  for (const auto& [flag, address] : {std::pair<const char*, const std::string&>{"--listen", net.address},
                                      {"--admin-listen", admin_address}})
    if (gateway_specs.empty() && address.rfind("127.", 0) != 0) {
      std::fprintf(stderr,
                   "mesobd: cannot serve: %s %s is off loopback with no --gateway, and the development gateway "
                   "\"dev\" has every role; name the gateways this server takes with --gateway id:roles:hexsecret "
                   "(an operator's, with the admin role, registers the rest)\n",
                   flag, address.c_str());
      return 2;
    }
  {
    const std::pair<const char*, int> ports[] = {
        {"--port", int(net.port)}, {"--admin-port", int(admin_port)}, {"--metrics-port", metrics_port}};
    for (size_t i = 0; i < 3; ++i)
      for (size_t j = i + 1; j < 3; ++j)
        if (ports[i].second > 0 && ports[i].second == ports[j].second) {
          std::fprintf(stderr, "mesobd: cannot serve: %s and %s are both %d\n", ports[i].first, ports[j].first,
                       ports[i].second);
          return 2;
        }
  }
  net.engine_in_flight_max = cfg.queue_requests_max;  // (the network thread's submits never wait: its own bound)
  if (auto problem = net.validate(); !problem.empty()) {
    std::fprintf(stderr, "mesobd: cannot serve: %s\n", problem.c_str());
    return 2;
  }

  // Each connection is a descriptor: take the hard open-file limit as the soft one.
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < uint64_t(net.connections_max) + 64)
    std::fprintf(stderr, "mesobd: warning: open-file limit %llu is below --connections-max %u\n",
                 static_cast<unsigned long long>(files.rlim_cur), net.connections_max);

  // The three ports, taken before the data directory is opened: an address this host
  // does not have, or a port another program holds, stops mesobd before recovery cuts a
  // torn tail, rewrites the shard count or snapshots at close. The servers own them from
  // their start; a failure before closes them with the process.
  int client_fd = -1, admin_fd = -1, metrics_fd = -1;
  struct port_to_take {
    const char* flags;
    const std::string& address;
    int port;  // -1: none (no metrics port)
    int* fd;
    int backlog;
    bool nonblocking;
  };
  for (const port_to_take& p :
       {port_to_take{"--listen/--port", net.address, int(net.port), &client_fd, engine::listen_backlog, false},
        port_to_take{"--admin-listen/--admin-port", admin_address, int(admin_port), &admin_fd, engine::listen_backlog,
                     false},
        port_to_take{"--metrics-listen/--metrics-port", metrics_address, metrics_port, &metrics_fd,
                     engine::metrics_http::listen_backlog, true}}) {
    if (p.port < 0) continue;
    std::string why;
    *p.fd = engine::listen_on(p.address, uint16_t(p.port), p.backlog, p.nonblocking, &why, engine::listen_busy_wait_ms);
    if (*p.fd < 0) {
      // The port held by an engine on this data directory (a second start, a restart
      // while the first still drains): that is the cause to name.
      if (const std::string held = engine::data_dir_in_use(cfg.data_dir); !held.empty()) {
        std::fprintf(stderr, "mesobd: cannot start: %s\n", held.c_str());
        return 1;
      }
      std::fprintf(stderr, "mesobd: cannot serve: %s %s\n", p.flags, why.c_str());
      return 2;
    }
  }
  net.listen_fd = client_fd;

  // Signals are taken synchronously by this thread; every other thread blocks them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::unique_ptr<engine::engine> e;
  try {
    e = engine::engine::open(cfg, &error);
  } catch (const std::bad_alloc&) {
    error = "memory ran out while opening (transfers_resident_max and accounts_hint reserve memory at start)";
  }
  if (!e) {
    std::fprintf(stderr, "mesobd: cannot start: %s\n", error.c_str());
    return 1;
  }
  const auto& rec = e->recovery();
  std::printf("mesobd: data %s, %u shards\n", cfg.data_dir.c_str(), e->shards());
  std::printf("mesobd: recovered in %.3f s: snapshot lsn %llu, %llu accounts, %llu transfers, "
              "%llu open pending, %llu log records replayed (%llu operations)\n",
              rec.seconds, static_cast<unsigned long long>(rec.snapshot_lsn),
              static_cast<unsigned long long>(rec.accounts_loaded),
              static_cast<unsigned long long>(rec.transfers_loaded),
              static_cast<unsigned long long>(rec.pending_loaded),
              static_cast<unsigned long long>(rec.records_replayed),
              static_cast<unsigned long long>(rec.operations_replayed));
  if (!rec.torn_tail.empty()) std::printf("mesobd: torn log tail cut: %s\n", rec.torn_tail.c_str());
  if (rec.transfer_ids_filled_in > 0)
    std::printf("mesobd: wrote the id hashes of %llu transfers (%s)\n",
                static_cast<unsigned long long>(rec.transfer_ids_filled_in),
                rec.id_hash_key_made ? "under the snapshot's new key: a snapshot from before format 13"
                                     : "a snapshot from before format 10, or one whose filling-in was cut short");
  if (rec.id_lo_max_filled_in)
    std::printf("mesobd: wrote the bounds of the snapshot's transfer ids (a snapshot from an older build)\n");

  if (net.gateways.empty()) {
    engine::gateway_config g{"dev", {}, wire::roles::all};
    bool created = false;
    if (!dev_secret(cfg.data_dir, &g.secret, &created, &error)) {
      std::fprintf(stderr, "mesobd: development gateway: %s\n", error.c_str());
      return 1;
    }
    std::printf("mesobd: development gateway \"dev\" (every role), secret %s%s (%s/dev-gateway.secret)\n",
                wire::to_hex(g.secret).c_str(), created ? ", generated now" : "", cfg.data_dir.c_str());
    net.gateways.push_back(std::move(g));
  }
  // The admin actor and its audit trail, then the client port, then the admin port.
  engine::admin_config acfg;
  acfg.data_dir = cfg.data_dir;
  acfg.shutdown = [] { ::kill(::getpid(), SIGTERM); };  // the same drain as a SIGTERM
  std::string repaired;
  error.clear();
  auto admin = engine::admin_endpoint::open(*e, acfg, &error, &repaired);
  if (!error.empty())  // clients are still served; every admin command is refused with this reason
    std::fprintf(stderr, "mesobd: warning: admin commands are refused: the audit trail cannot be opened: %s\n",
                 error.c_str());
  if (!repaired.empty()) std::printf("mesobd: admin audit trail: %s\n", repaired.c_str());
  // Payout instructions go to the gateway's sessions as pushed frames (topic "payouts",
  // cancels "payout_cancels"); the sink is set before the server takes connections.
  std::atomic<engine::server*> pusher{nullptr};
  e->set_instruction_sink([&pusher](const std::string& gateway, std::vector<wire::payout_instruction>&& list) {
    if (engine::server* s = pusher.load()) engine::push_payout_instructions(*s, gateway, std::move(list));
  });
  // Order instructions go to brokers' sessions the same way (topic "orders").
  e->set_order_sink([&pusher](const std::string& broker, std::vector<wire::order_instruction>&& list) {
    if (engine::server* s = pusher.load()) engine::push_order_instructions(*s, broker, list);
  });
  // The metrics port first: if it cannot be had, mesobd stops before serving anyone.
  std::unique_ptr<engine::server> srv, admin_srv;
  std::atomic<const engine::server*> client_seen{nullptr}, admin_seen{nullptr};
  std::unique_ptr<engine::metrics_http> metrics;
  if (metrics_port >= 0) {
    metrics = engine::metrics_http::start(
        metrics_address, uint16_t(metrics_port),
        [&e, &client_seen, &admin_seen, reads = std::make_shared<engine::engine_reads>()] {
          return engine::render_metrics(*e, client_seen.load(), admin_seen.load(), *reads);
        },
        &error, metrics_fd);
    if (!metrics) {
      std::fprintf(stderr, "mesobd: cannot serve metrics: %s\n", error.c_str());
      admin.reset();
      e->close();
      e->set_instruction_sink(nullptr);
      e->set_order_sink(nullptr);
      return 1;
    }
    std::printf("mesobd: metrics listening on %s:%u\n", metrics_address.c_str(), unsigned(metrics->port()));
  }
  // Stops what runs, in order: the metrics (a scrape being answered finishes first), the
  // admin port (commands taken are answered), the admin actor, the client port (what was
  // taken is answered and flushed), then the engine, before the sinks that reach the
  // servers (and `pusher`, a local) go. Returns why the engine's stop was not clean.
  auto stop_all = [&] {
    metrics.reset();
    if (admin) admin->begin_stop();  // a log verify scanning ends, answered, before the drain
    if (admin_srv) admin_srv->stop();
    admin.reset();
    if (srv) srv->stop();
    std::string why = e->close();
    e->set_instruction_sink(nullptr);
    e->set_order_sink(nullptr);
    return why;
  };
  srv = engine::server::start(*e, net, &error);
  pusher = srv.get();
  if (!srv) {
    std::fprintf(stderr, "mesobd: cannot serve: %s\n", error.c_str());
    stop_all();
    return 1;
  }
  client_seen = srv.get();
  std::printf("mesobd: listening on %s:%u\n", net.address.c_str(), unsigned(srv->port()));
  engine::server_config anet = net;
  anet.address = admin_address;
  anet.port = admin_port;
  anet.listen_fd = admin_fd;
  anet.connections_max = 64;
  anet.handshakes_max = 8;
  anet.gateway_sessions_max = 16;  // one operator's console sessions cannot lock out the others
  // Commands run one at a time on the admin actor, in arrival order (long ones begin there
  // and run on its long lane): a session with many pipelined would hold every operator
  // behind them.
  anet.in_flight_max = 2;
  anet.admin = admin->handler();
  admin->set_servers(srv.get(), nullptr);
  admin_srv = engine::server::start(*e, anet, &error);
  if (!admin_srv) {
    std::fprintf(stderr, "mesobd: cannot serve the admin port: %s\n", error.c_str());
    stop_all();
    return 1;
  }
  admin->set_servers(srv.get(), admin_srv.get());
  admin_seen = admin_srv.get();
  std::printf("mesobd: admin listening on %s:%u\n", admin_address.c_str(), unsigned(admin_srv->port()));
  std::printf("mesobd: ready (SIGTERM or Ctrl-C stops)\n");
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::printf("mesobd: %s received, stopping\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  std::fflush(stdout);
  const std::string not_clean = stop_all();
  const auto st = e->stats();
  if (!not_clean.empty()) {
    // Nothing acknowledged is lost (the log holds it; the next start replays it), but a
    // supervisor is told: exit status 1.
    std::printf("mesobd: stopped at lsn %llu (snapshot lsn %llu), not cleanly: %s\n",
                static_cast<unsigned long long>(st.lsn_durable), static_cast<unsigned long long>(st.snapshot_lsn),
                not_clean.c_str());
    return 1;
  }
  std::printf("mesobd: stopped cleanly at lsn %llu (snapshot lsn %llu)\n",
              static_cast<unsigned long long>(st.lsn_durable),
              static_cast<unsigned long long>(st.snapshot_lsn));
  return 0;
}
