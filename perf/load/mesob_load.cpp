// mesob-load: the load generator. Runs a transfer or deposit workload against a running
// mesobd over the binary protocol (or a transfer workload against a baseline system), closed or
// open loop, and reports throughput, latency percentiles from an HDR histogram, results
// by code, a JSON report, PNG plots, and optionally verifies the target's state after.
//
//   mesob-load --port 7400 --secret-file var/mesob/dev-gateway.secret --duration 10
//   mesob-load ... --rate 200000 --batch 1 --connections 8      (open loop)
//   mesob-load ... --verify --json perf/results/load.json --plot perf/results
//   mesob-load ... --deposits --gateway telebirr --secret HEX    (as a registered gateway)
//   mesob-load ... --payouts --answer-gateway telebirr --answer-secret HEX --answer-fail-pct 10
//   mesob-load ... --equb --equb-seats 10 --accounts 100000 --verify   (equb rounds)
//
// Exit codes: 0 done (and verified, with --verify); 1 the run could not start or finish;
// 2 bad options; 3 verification found a problem.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>

#include "perf/load/driver.hpp"
#include "perf/load/mesob_target.hpp"
#include "perf/load/postgres_target.hpp"
#include "perf/load/redis_target.hpp"
#include "tools/gateway_sim.hpp"
#include "wire/protocol.hpp"

using namespace mesob;

namespace {

bool read_secret(const std::string& hex, const std::string& file, std::vector<uint8_t>* out, std::string* error) {
  std::string text = hex;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) {
      *error = file + ": cannot read";
      return false;
    }
    std::getline(in, text);
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  if (text.empty()) {
    *error = "no gateway secret: give --secret HEX or --secret-file FILE (mesobd's dev-gateway.secret)";
    return false;
  }
  if (!wire::from_hex(text, out)) {
    *error = (file.empty() ? std::string("--secret") : file) + ": the secret is not hex";
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mesob-load - load generator for Mesob (and the baselines)"};
  std::string target_name = "mesob";
  wire::client::options mo;
  mo.gateway = "dev";
  std::string secret_hex, secret_file;
  std::string pg_conninfo = "host=127.0.0.1 port=5432 dbname=postgres";
  std::string redis_host = "127.0.0.1";
  uint16_t redis_port = 6379;
  load::workload w;
  w.shards = std::max(1u, std::thread::hardware_concurrency());
  load::run_options o;
  bool no_setup = false, quiet = false;
  std::string json_path, plot_dir, label;
  app.add_option("--target", target_name, "system under load: mesob, postgres or redis")
      ->check(CLI::IsMember({"mesob", "postgres", "redis"}))
      ->capture_default_str();
  app.add_option("--host", mo.host, "mesobd address")->capture_default_str();
  app.add_option("--port", mo.port, "mesobd port")->capture_default_str();
  app.add_option("--gateway", mo.gateway, "gateway id (needs the payments role)")->capture_default_str();
  app.add_option("--secret", secret_hex, "the gateway's secret, hex");
  app.add_option("--secret-file", secret_file, "file holding the secret in hex (mesobd's <data>/dev-gateway.secret)");
  app.add_option("--pg", pg_conninfo, "PostgreSQL connection string (libpq)")->capture_default_str();
  app.add_option("--redis-host", redis_host, "Redis address")->capture_default_str();
  app.add_option("--redis-port", redis_port, "Redis port")->capture_default_str();
  app.add_option("--connections", o.connections, "connections, each with its own sender")->capture_default_str();
  app.add_option("--window", o.window, "closed loop: requests in flight per connection (capped by the server's limit)")
      ->capture_default_str();
  app.add_option("--rate", o.rate, "open loop: transfers per second over all connections; 0 = closed loop")
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "seconds of load")->capture_default_str();
  app.add_option("--batch", w.batch, "transfers per request (1 .. 8,192)")->capture_default_str();
  app.add_option("--accounts", w.accounts, "accounts the load moves money between")->capture_default_str();
  app.add_option("--first-account", w.first_account, "id of the first account (the funding account is one below)")
      ->capture_default_str();
  app.add_option("--opening", w.opening, "opening balance of each account, minor units")->capture_default_str();
  app.add_option("--amount-max", w.amount_max, "amounts are 1 .. this")->capture_default_str();
  app.add_option("--shards", w.shards, "the target's shard count (mesobd: one per core by default)")
      ->capture_default_str();
  app.add_option("--cross", w.cross_pct, "percent of transfers whose accounts live on two shards")->capture_default_str();
  app.add_option("--hot", w.hot_pct, "percent of transfers between hot accounts only (skew)")->capture_default_str();
  app.add_option("--hot-accounts", w.hot_accounts, "hot accounts per shard")->capture_default_str();
  app.add_flag("--two-phase", w.two_phase, "pending transfers, each posted by a later request of its connection");
  bool deposits = false, payouts = false, equb = false;
  app.add_flag("--equb", equb,
               "equb rounds instead of transfers: groups of --equb-seats accounts (made, joined and started at "
               "setup) pay rounds 2 .. seats, each round paying out when its last member paid; contributions are "
               "--amount-max; the run ends when every round is paid or the duration is over");
  app.add_option("--equb-seats", w.equb_seats, "equb: seats per group (2 .. 1,000)")->capture_default_str();
  app.add_flag("--deposits", deposits,
               "deposits instead of transfers: connect as a registered gateway (payments role); each credits an "
               "account from the gateway's settlement account");
  app.add_flag("--payouts", payouts,
               "payouts (mobile money) instead of transfers: each holds an account's money until the answering "
               "gateway settles (paid out) or fails it (released)");
  tools::gateway_sim_options answer;
  std::string answer_secret_hex;
  double answer_fail_pct = 0;
  app.add_option("--answer-gateway", answer.gateway, "payouts: the registered gateway mesob-load answers as");
  app.add_option("--answer-secret", answer_secret_hex, "payouts: that gateway's secret, hex");
  app.add_option("--answer-latency-ms", answer.latency_ms, "payouts: mean answer latency (exponential)")
      ->capture_default_str();
  app.add_option("--answer-fail-pct", answer_fail_pct, "payouts: percent of payouts answered failed")
      ->capture_default_str();
  app.add_option("--seed", w.seed, "workload seed (printed; the same seed gives the same transfers)")
      ->capture_default_str();
  app.add_option("--run-id", w.run,
                 "id.hi of this run's transfer ids (deposit references and payout ids derive from it); 0 = from the "
                 "seed and the clock");
  app.add_flag("--verify", o.verify, "after the run, check every acknowledged transfer and every balance");
  app.add_flag("--no-setup", no_setup, "the accounts exist already (funded by an earlier setup)");
  app.add_option("--json", json_path, "write the report as JSON to this file");
  app.add_option("--plot", plot_dir, "write latency PNGs (gnuplot) into this directory");
  app.add_option("--label", label, "name of the run in file names (default: the target)");
  app.add_flag("--quiet", quiet, "no per-second progress");
  CLI11_PARSE(app, argc, argv);
  o.progress = !quiet;
  if (int(deposits) + int(payouts) + int(equb) > 1) {
    std::fprintf(stderr, "mesob-load: one of --deposits, --payouts, --equb\n");
    return 2;
  }
  if (deposits) w.kind = load::item_kind::deposits;
  if (payouts) w.kind = load::item_kind::payouts;
  if (equb) w.kind = load::item_kind::equb;
  if (equb && no_setup) {
    std::fprintf(stderr, "mesob-load: --equb makes its groups at setup: drop --no-setup\n");
    return 2;
  }
  if (payouts && (answer.gateway.empty() || !wire::from_hex(answer_secret_hex, &answer.secret) ||
                  answer.secret.empty())) {
    std::fprintf(stderr, "mesob-load: --payouts needs --answer-gateway ID and --answer-secret HEX (a registered "
                         "gateway of the mobile money rail serving the currency)\n");
    return 2;
  }
  if (answer_fail_pct < 0 || answer_fail_pct > 100 || answer.latency_ms < 0) {
    std::fprintf(stderr, "mesob-load: --answer-fail-pct 0 .. 100 and --answer-latency-ms >= 0\n");
    return 2;
  }
  if (w.run == 0) {
    w.run = load::splitmix{w.seed ^ uint64_t(std::chrono::system_clock::now().time_since_epoch().count()) ^
                           (uint64_t(::getpid()) << 32)}();
    if (w.run == 0) w.run = 1;
  }
  if (const auto bad = w.check(); !bad.empty()) {
    std::fprintf(stderr, "mesob-load: %s\n", bad.c_str());
    return 2;
  }
  if (label.empty()) label = target_name;

  std::string error;
  std::unique_ptr<load::target> t;
  if (target_name == "mesob") {
    if (!read_secret(secret_hex, secret_file, &mo.secret, &error)) {
      std::fprintf(stderr, "mesob-load: %s\n", error.c_str());
      return 2;
    }
    t = load::make_mesob_target(mo, &error);
  } else if (target_name == "postgres") {
    t = load::make_postgres_target(pg_conninfo, &error);
  } else {
    t = load::make_redis_target(redis_host, redis_port, &error);
  }
  if (!t) {
    std::fprintf(stderr, "mesob-load: %s: %s\n", target_name.c_str(), error.c_str());
    return 1;
  }
  if (w.kind == load::item_kind::deposits) {
    w.gateway_number = t->gateway_number();
    if (w.gateway_number == 0) {
      std::fprintf(stderr, "mesob-load: --deposits: gateway '%s' is not a registered gateway (register it on the "
                           "admin port: gateway register ...)\n",
                   mo.gateway.c_str());
      return 2;
    }
  }
  std::fprintf(stderr, "mesob-load: %s, seed %llu, run id %016llx\n", w.describe().c_str(),
               (unsigned long long)w.seed, (unsigned long long)w.run);
  if (!no_setup) {
    const auto t0 = std::chrono::steady_clock::now();
    if (!t->setup(w, &error)) {
      std::fprintf(stderr, "mesob-load: setup: %s\n", error.c_str());
      return 1;
    }
    std::fprintf(stderr, "mesob-load: %llu accounts ready in %.1f s\n", (unsigned long long)w.accounts,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // Payouts: mesob-load answers the instructions as the gateway (the gateway simulator),
  // and notes how each payout ended, for verification and the completion time.
  std::mutex outcomes_mu;
  std::unordered_map<uint64_t, int> outcomes;
  uint64_t settled = 0, failed = 0;
  auto last_answer = std::chrono::steady_clock::now();
  std::unique_ptr<tools::gateway_sim> answering;
  if (payouts) {
    answer.host = mo.host;
    answer.port = mo.port;
    answer.fail_rate = answer_fail_pct / 100;
    answer.in_flight_max = 64;  // at most; the server's Welcome may lower it
    answer.seed = w.seed;
    // A payout's outcome is the simulator's per payout (every answer to it agrees), so an
    // answer refused as a duplicate (say, sent again after a reconnect whose first reply
    // was lost) confirms it too.
    answer.on_answered = [&](const wire::payout_answer& a, wire::result r) {
      if (r != wire::result::ok && r != wire::result::payout_already_resolved) return;
      std::lock_guard lk(outcomes_mu);
      const int out = a.outcome == wire::payout_outcome::settled ? 1 : 2;
      if (!outcomes.emplace(a.payout_id, out).second) return;  // known already
      (out == 1 ? settled : failed) += 1;
      last_answer = std::chrono::steady_clock::now();
    };
    answering = std::make_unique<tools::gateway_sim>(answer);
    answering->start();
    for (int i = 0; i < 500 && !answering->connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!answering->connected()) {
      std::fprintf(stderr, "mesob-load: --answer-gateway %s could not connect and authenticate\n",
                   answer.gateway.c_str());
      return 1;
    }
    o.payout_outcome = [&](uint64_t id) {
      std::lock_guard lk(outcomes_mu);
      const auto it = outcomes.find(id);
      return it == outcomes.end() ? 0 : it->second;
    };
  }
  const auto load_start = std::chrono::steady_clock::now();
  load::run_report r;
  if (!load::run_load(*t, w, o, &r, &error)) {
    std::fprintf(stderr, "mesob-load: %s\n", error.c_str());
    return 1;
  }
  load::print_report(r, stdout);
  if (answering) {
    answering->stop();
    std::lock_guard lk(outcomes_mu);
    std::printf("payouts answered: %llu settled, %llu failed; the last %.2f s after the load started\n",
                (unsigned long long)settled, (unsigned long long)failed,
                std::chrono::duration<double>(last_answer - load_start).count());
  }
  if (!json_path.empty()) {
    if (!load::write_report_json(r, w, o, json_path, &error)) {
      std::fprintf(stderr, "mesob-load: %s\n", error.c_str());
      return 1;
    }
    std::printf("wrote %s\n", json_path.c_str());
  }
  if (!plot_dir.empty()) {
    if (!load::write_plots(r, plot_dir, label, &error)) {
      std::fprintf(stderr, "mesob-load: plots: %s\n", error.c_str());
      return 1;
    }
    std::printf("wrote %s/%s-latency-over-time.png and %s-latency-distribution.png\n", plot_dir.c_str(),
                label.c_str(), label.c_str());
  }
  if (r.verify.ran && !r.verify.ok) return 3;
  return 0;
}
