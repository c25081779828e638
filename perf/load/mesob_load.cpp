// mesob-load: the load generator. Runs a workload (transfers, two-phase, deposits, payouts,
// equb rounds, orders, or several at once: --mix) against a running mesobd over the binary protocol (or a transfer workload against a baseline system), closed or
// open loop, and reports throughput, latency percentiles from an HDR histogram, results
// by code, a JSON report, PNG plots, and optionally verifies the target's state after.
//
//   mesob-load --port 7400 --secret-file var/mesob/dev-gateway.secret --duration 10
//   mesob-load ... --rate 200000 --batch 1 --connections 8      (open loop)
//   mesob-load ... --verify --json perf/results/load.json --plot perf/results
//   mesob-load ... --deposits --gateway telebirr --secret HEX    (as a registered gateway)
//   mesob-load ... --payouts --answer-gateway telebirr --answer-secret HEX --answer-fail-pct 10
//   mesob-load ... --equb --equb-seats 10 --accounts 100000 --verify   (equb rounds)
//   mesob-load ... --orders --gateway loader --secret HEX --broker-gateway bk --broker-secret HEX
//   mesob-load ... --mix transfers:2,equb:1,deposits:1,payouts:1 --deposit-gateway airtel
//                  --deposit-secret HEX --answer-gateway telebirr --answer-secret HEX
//
// Exit codes: 0 done, every request answered (and verified, with --verify); 1 the run
// could not start or finish; 2 bad options; 3 verification found a problem; 4 requests
// failed (counted by reason in the report; their figures do not stand for the target).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <unordered_map>

#include "perf/load/driver.hpp"
#include "perf/load/mesob_target.hpp"
#include "perf/load/postgres_target.hpp"
#include "perf/load/redis_target.hpp"
#include "tools/broker_sim.hpp"
#include "tools/gateway_sim.hpp"
#include "wire/cli_options.hpp"
#include "wire/protocol.hpp"

using namespace mesob;

namespace {

// One workload of the run, its target and what came of it.
struct part {
  load::workload w;
  load::run_options o;
  std::unique_ptr<load::target> t;
  std::string name;
  load::run_report r;
  std::string error;
  bool ran = false;
};

// --mix "transfers:2,two-phase:1,deposits:1,payouts:1,equb:1": each workload (once) with
// its connections (1 .. 64; default 1), on the base options, its accounts 2^32 ids after
// the one before, its run id the base's plus its place.
bool parse_mix(const std::string& spec, const load::workload& base, const load::run_options& o,
               std::vector<part>* out, std::string* why) {
  std::stringstream in(spec);
  std::string item;
  for (uint32_t i = 0; std::getline(in, item, ','); ++i) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    const auto colon = item.find(':');
    const std::string kind = item.substr(0, colon);
    uint32_t conns = 1;
    if (colon != std::string::npos) {
      const std::string n = item.substr(colon + 1);
      if (n.empty() || n.size() > 2 || n.find_first_not_of("0123456789") != std::string::npos ||
          (conns = uint32_t(std::stoul(n))) < 1 || conns > 64) {
        *why = "'" + item + "': connections 1 .. 64";
        return false;
      }
    }
    part p;
    p.w = base;
    p.o = o;
    p.name = kind;
    p.w.two_phase = false;
    if (kind == "transfers") p.w.kind = load::item_kind::transfers;
    else if (kind == "two-phase") p.w.kind = load::item_kind::transfers, p.w.two_phase = true;
    else if (kind == "deposits") p.w.kind = load::item_kind::deposits;
    else if (kind == "payouts") p.w.kind = load::item_kind::payouts;
    else if (kind == "equb") p.w.kind = load::item_kind::equb;
    else if (kind == "orders") p.w.kind = load::item_kind::orders;
    else {
      *why = "unknown workload '" + kind + "' (transfers, two-phase, deposits, payouts, equb, orders)";
      return false;
    }
    for (const auto& q : *out)
      if (q.name == kind) {
        *why = "'" + kind + "' twice";
        return false;
      }
    p.w.first_account = base.first_account + (uint64_t(i) << 32);
    if (p.w.first_account < base.first_account || p.w.first_account + (uint64_t(1) << 32) < p.w.first_account) {
      *why = "--first-account too high for " + std::to_string(i + 1) + " workloads 2^32 ids apart";
      return false;
    }
    p.w.run = base.run + i;
    p.o.connections = conns;
    p.o.progress = false;
    out->push_back(std::move(p));
  }
  if (out->empty() || out->size() > 6) {
    *why = "one to six workloads";
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
  w.shards = std::clamp(std::thread::hardware_concurrency(), 1u, 32u);
  load::run_options o;
  bool no_setup = false, quiet = false;
  std::string json_path, plot_dir, label;
  app.add_option("--target", target_name, "system under load: mesob, postgres or redis")
      ->check(CLI::IsMember({"mesob", "postgres", "redis"}))
      ->capture_default_str();
  app.add_option("--host", mo.host, "mesobd address")->capture_default_str();
  app.add_option("--port", mo.port, "mesobd port")->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--gateway", mo.gateway, "gateway id (needs the payments role; a registered gateway payments,ledger)")->capture_default_str();
  app.add_option("--secret", secret_hex, "the gateway's secret, hex");
  app.add_option("--secret-file", secret_file, "file holding the secret in hex (mesobd's <data>/dev-gateway.secret)");
  app.add_option("--pg", pg_conninfo, "PostgreSQL connection string (libpq)")->capture_default_str();
  app.add_option("--redis-host", redis_host, "Redis address")->capture_default_str();
  app.add_option("--redis-port", redis_port, "Redis port")->capture_default_str();
  app.add_option("--connections", o.connections, "connections (each with its own sender, but in mesob's open loop one pacer sends for all)")->capture_default_str();
  app.add_option("--window", o.window, "closed loop: requests in flight per connection (capped by the server's limit)")
      ->capture_default_str();
  app.add_option("--rate", o.rate, "open loop: transfers per second over all connections; 0 = closed loop")
      ->capture_default_str();
  app.add_option("--duration", o.duration_s, "seconds of load measured")->capture_default_str();
  app.add_option("--warmup", o.warmup_s,
                 "seconds of load before the measured ones (0 .. 3,600): answered, verified and in the timeline, "
                 "not in the throughput, latency or results")
      ->capture_default_str();
  app.add_option("--batch", w.batch, "transfers per request (1 .. 8,192)")->capture_default_str();
  app.add_option("--accounts", w.accounts, "accounts the load moves money between")->capture_default_str();
  app.add_option("--first-account", w.first_account, "id of the first account (the funding account is one below)")
      ->capture_default_str();
  app.add_option("--opening", w.opening, "opening balance of each account, minor units")->capture_default_str();
  app.add_option("--amount-max", w.amount_max, "amounts are 1 .. this")->capture_default_str();
  app.add_option("--shards", w.shards,
                 "the shard count the transfers' layout assumes (--cross, --hot): mesob's is the one it says "
                 "when connected (given and not that: refused); the baselines': this machine's cores (at most 32)");
  app.add_option("--cross", w.cross_pct, "percent of transfers whose accounts live on two shards")->capture_default_str();
  app.add_option("--hot", w.hot_pct, "percent of transfers between hot accounts only (skew)")->capture_default_str();
  app.add_option("--hot-accounts", w.hot_accounts, "hot accounts per shard")->capture_default_str();
  app.add_flag("--two-phase", w.two_phase, "pending transfers, each posted by a later request of its connection");
  bool deposits = false, payouts = false, equb = false, orders = false;
  app.add_flag("--equb", equb,
               "equb rounds instead of transfers: groups of --equb-seats accounts (made, joined and started at "
               "setup) pay rounds 2 .. seats, each round paying out when its last member paid; contributions are "
               "--amount-max; the run ends when every round is paid or the duration is over");
  app.add_option("--equb-seats", w.equb_seats, "equb: seats per group (2 .. 1,000)")->capture_default_str();
  std::string mix, deposit_gateway, deposit_secret_hex;
  app.add_option("--mix", mix,
                 "several workloads at once, each on its own accounts and connections: e.g. "
                 "transfers:2,two-phase:1,deposits:1,payouts:1,equb:1 (workload:connections; --connections and "
                 "--two-phase do not apply; batch, window, rate and duration are each workload's)");
  app.add_option("--deposit-gateway", deposit_gateway, "--mix with deposits: the registered gateway they come from");
  app.add_option("--deposit-secret", deposit_secret_hex, "--mix with deposits: that gateway's secret, hex");
  app.add_flag("--deposits", deposits,
               "deposits instead of transfers: connect as a registered gateway (payments role); each credits an "
               "account from the gateway's settlement account");
  app.add_flag("--payouts", payouts,
               "payouts (mobile money) instead of transfers: each holds an account's money until the answering "
               "gateway settles (paid out) or fails it (released)");
  app.add_flag("--orders", orders,
               "market buys of one instrument instead of transfers (setup lists it and makes every account a "
               "verified customer; an operator sets tier 1 and the moderate profile first): each holds an account's "
               "money until the broker mesob-load answers as fills it (paid) or rejects it (released)");
  tools::broker_sim_options broker;
  std::string broker_secret_hex;
  double broker_reject_pct = 0;
  app.add_option("--broker-gateway", broker.gateway, "orders: the registered broker mesob-load answers as");
  app.add_option("--broker-secret", broker_secret_hex, "orders: that broker's secret, hex");
  app.add_option("--broker-latency-ms", broker.latency_ms, "orders: mean fill latency (exponential)")
      ->capture_default_str();
  app.add_option("--broker-reject-pct", broker_reject_pct, "orders: percent of orders the broker rejects")
      ->capture_default_str();
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
  wire::numbers_as_written(app);  // (CLI11 alone: -1 as 2^64 - 1, a leading 0 as octal, nan)
  if (const int status = wire::parse_options(app, argc, argv); status >= 0) return status;
  o.progress = !quiet;
  if (int(deposits) + int(payouts) + int(equb) + int(orders) + int(!mix.empty()) > 1) {
    std::fprintf(stderr, "mesob-load: one of --deposits, --payouts, --equb, --orders, --mix\n");
    return 2;
  }
  if (orders) w.kind = load::item_kind::orders;
  if (deposits) w.kind = load::item_kind::deposits;
  if (payouts) w.kind = load::item_kind::payouts;
  if (equb) w.kind = load::item_kind::equb;
  const bool run_given = w.run != 0;  // (one drawn below is new to any target)
  if (w.run == 0) {
    w.run = load::splitmix{w.seed ^ uint64_t(std::chrono::system_clock::now().time_since_epoch().count()) ^
                           (uint64_t(::getpid()) << 32)}();
    if (w.run == 0) w.run = 1;
  }
  // The workloads of this run: the one the options name, or each of --mix's on its own
  // account range (2^32 ids apart) and run id, with its own connections.
  std::vector<part> parts;
  const bool mixing = !mix.empty();
  if (!mixing) {
    parts.emplace_back();
    parts.back().w = w;
    parts.back().o = o;
  } else {
    std::string why;
    if (!parse_mix(mix, w, o, &parts, &why)) {
      std::fprintf(stderr, "mesob-load: --mix: %s\n", why.c_str());
      return 2;
    }
    if (target_name != "mesob") {
      std::fprintf(stderr, "mesob-load: --mix runs against mesob only\n");
      return 2;
    }
    if (w.two_phase) {
      std::fprintf(stderr, "mesob-load: --mix: name two-phase in the mix instead of --two-phase\n");
      return 2;
    }
  }
  if (no_setup && o.verify) {  // verification counts from the opening balances setup pays
    std::fprintf(stderr, "mesob-load: --verify checks balances from the opening ones setup pays: drop --no-setup\n");
    return 2;
  }
  bool any_payouts = false, any_deposits = false, any_orders = false;
  const bool shards_from_target = target_name == "mesob" && app.count("--shards") == 0;
  for (auto& pt : parts) {
    any_payouts = any_payouts || pt.w.kind == load::item_kind::payouts;
    any_orders = any_orders || pt.w.kind == load::item_kind::orders;
    any_deposits = any_deposits || pt.w.kind == load::item_kind::deposits;
    if (pt.w.kind == load::item_kind::equb && no_setup) {
      std::fprintf(stderr, "mesob-load: %s makes its groups at setup: drop --no-setup\n", mixing ? "equb" : "--equb");
      return 2;
    }
    // Mesob's shard count comes with its Welcome (below) unless given: what depends on it
    // is checked then.
    load::workload probe = pt.w;
    if (shards_from_target) probe.shards = 1;
    if (auto bad = probe.check(); !bad.empty() || !(bad = probe.check_layout()).empty()) {
      std::fprintf(stderr, "mesob-load: %s%s\n", mixing ? (pt.name + ": ").c_str() : "", bad.c_str());
      return 2;
    }
  }
  if (any_payouts && (answer.gateway.empty() || !wire::from_hex(answer_secret_hex, &answer.secret) ||
                      answer.secret.empty())) {
    std::fprintf(stderr, "mesob-load: %s --answer-gateway ID and --answer-secret HEX (a registered "
                         "gateway of the mobile money rail serving the currency)\n",
                 mixing ? "payouts in the mix need" : "--payouts needs");
    return 2;
  }
  if (any_orders && (broker.gateway.empty() || !wire::from_hex(broker_secret_hex, &broker.secret) ||
                     broker.secret.empty())) {
    std::fprintf(stderr, "mesob-load: %s --broker-gateway ID and --broker-secret HEX (a registered gateway with the "
                         "broker role serving the currency)\n",
                 mixing ? "orders in the mix need" : "--orders needs");
    return 2;
  }
  // Options that would change nothing in this run: refused, not ignored (a tester would
  // take the run for the one asked).
  {
    std::string unused;
    const auto given = [&](const char* name) { return app.count(name) > 0; };
    for (const char* name : {"--answer-gateway", "--answer-secret", "--answer-latency-ms", "--answer-fail-pct"})
      if (unused.empty() && !any_payouts && given(name)) unused = std::string(name) + " answers payouts: this run has none";
    for (const char* name : {"--broker-gateway", "--broker-secret", "--broker-latency-ms", "--broker-reject-pct"})
      if (unused.empty() && !any_orders && given(name)) unused = std::string(name) + " answers orders: this run has none";
    for (const char* name : {"--deposit-gateway", "--deposit-secret"})
      if (unused.empty() && !(mixing && any_deposits) && given(name))
        unused = std::string(name) + " is where a mix's deposits come from: " +
                 (mixing ? "this mix has none" : "--deposits uses --gateway and --secret");
    if (unused.empty() && given("--window") && o.rate > 0)
      unused = "--window is the closed loop's; the open loop (--rate) keeps what its rate needs in flight";
    if (unused.empty() && mixing && given("--connections"))
      unused = "--connections: a mix gives each workload its own (--mix workload:connections,...)";
    if (!unused.empty()) {
      std::fprintf(stderr, "mesob-load: %s\n", unused.c_str());
      return 2;
    }
  }
  if (broker_reject_pct < 0 || broker_reject_pct > 100 || broker.latency_ms < 0) {
    std::fprintf(stderr, "mesob-load: --broker-reject-pct 0 .. 100 and --broker-latency-ms >= 0\n");
    return 2;
  }
  if (answer_fail_pct < 0 || answer_fail_pct > 100 || answer.latency_ms < 0) {
    std::fprintf(stderr, "mesob-load: --answer-fail-pct 0 .. 100 and --answer-latency-ms >= 0\n");
    return 2;
  }
  std::vector<uint8_t> deposit_secret;
  if (mixing && any_deposits &&
      (deposit_gateway.empty() || !wire::from_hex(deposit_secret_hex, &deposit_secret) || deposit_secret.empty())) {
    std::fprintf(stderr, "mesob-load: --mix with deposits needs --deposit-gateway ID and --deposit-secret HEX (a "
                         "gateway registered with the payments and ledger roles; the others run as --gateway)\n");
    return 2;
  }
  // Every session of a payouts gateway receives its instructions: the deposits' client,
  // which reads only at setup and verification, would fill up with them.
  if (mixing && any_deposits && any_payouts && deposit_gateway == answer.gateway) {
    std::fprintf(stderr, "mesob-load: --mix: --deposit-gateway and --answer-gateway must differ (every session of "
                         "a gateway receives its payout instructions)\n");
    return 2;
  }
  if (label.empty()) label = target_name;
  // The plot's files are named in gnuplot's script, between quotes, and the script's in a
  // shell command: a quote or a line break there would end the name early.
  for (const auto& [name, value] : {std::pair<const char*, const std::string&>{"--label", label}, {"--plot", plot_dir}})
    if (!plot_dir.empty() && value.find_first_of("'\"\\\n\r`$") != std::string::npos) {
      std::fprintf(stderr, "mesob-load: %s '%s': no quotes, backslashes, '`', '$' or line breaks (it names the "
                           "plot's files in gnuplot's script)\n", name, value.c_str());
      return 2;
    }
  // Before anything is made on the target: a bad option changes nothing there.
  for (const auto& pt : parts)
    if (const auto why = load::run_options_problem(pt.o, pt.w.batch); !why.empty()) {
      std::fprintf(stderr, "mesob-load: %s%s\n", mixing ? (pt.name + ": ").c_str() : "", why.c_str());
      return 2;
    }

  // Where the report goes, before the run: one that cannot be written is refused now, not
  // after an hour of load.
  {
    std::string why;
    if (!json_path.empty()) {
      why = load::output_problem(std::filesystem::path(json_path).parent_path());
      std::error_code ec;
      if (why.empty() && std::filesystem::is_directory(json_path, ec)) why = json_path + " is a directory: name a file";
      if (!why.empty()) why = "--json: " + why;
    }
    if (why.empty() && !plot_dir.empty())
      if (why = load::output_problem(plot_dir); !why.empty()) why = "--plot: " + why;
    if (!why.empty()) {
      std::fprintf(stderr, "mesob-load: %s\n", why.c_str());
      return 2;
    }
  }
  std::string error;
  if (target_name == "mesob" && !wire::read_secret(secret_hex, secret_file, &mo.secret, &error)) {
    std::fprintf(stderr, "mesob-load: %s\n", error.c_str());
    return 2;
  }
  for (auto& pt : parts) {
    if (target_name == "mesob") {
      auto opts = mo;
      if (mixing && pt.w.kind == load::item_kind::deposits) {
        opts.gateway = deposit_gateway;
        opts.secret = deposit_secret;
      }
      pt.t = load::make_mesob_target(opts, &error);
    } else if (target_name == "postgres") {
      pt.t = load::make_postgres_target(pg_conninfo, &error);
    } else {
      pt.t = load::make_redis_target(redis_host, redis_port, &error);
    }
    if (!pt.t) {
      std::fprintf(stderr, "mesob-load: %s: %s\n", target_name.c_str(), error.c_str());
      return 1;
    }
    // A workload the target cannot run is a bad option (exit 2), said before setup makes
    // anything (before, setup or the run refused it, exit 1: "could not start").
    if (const auto why = pt.t->supports(pt.w); !why.empty()) {
      std::fprintf(stderr, "mesob-load: %s%s\n", mixing ? (pt.name + ": ").c_str() : "", why.c_str());
      return 2;
    }
    // Where the target places accounts: its own shard count, not this machine's cores.
    const uint32_t says = pt.t->shards();
    if (says != 0 && says != pt.w.shards && !shards_from_target) {
      std::fprintf(stderr, "mesob-load: --shards %u: the target has %u shards\n", pt.w.shards, says);
      return 2;
    }
    if (shards_from_target) {
      if (says != 0) {
        pt.w.shards = says;
      } else if (&pt == &parts.front()) {
        std::fprintf(stderr, "mesob-load: the target does not say its shard count (an older mesobd): assuming %u, "
                             "this machine's cores; give --shards\n", pt.w.shards);
      }
      if (auto bad = pt.w.check(); !bad.empty() || !(bad = pt.w.check_layout()).empty()) {
        std::fprintf(stderr, "mesob-load: %swith the target's %u shards: %s\n",
                     mixing ? (pt.name + ": ").c_str() : "", pt.w.shards, bad.c_str());
        return 2;
      }
    }
    if (pt.w.kind == load::item_kind::deposits) {
      pt.w.gateway_number = pt.t->gateway_number();
      if (pt.w.gateway_number == 0) {
        std::fprintf(stderr, "mesob-load: deposits: gateway '%s' is not a registered gateway (register it on the "
                             "admin port with the payments and ledger roles: gateway register ...)\n",
                     mixing ? deposit_gateway.c_str() : mo.gateway.c_str());
        return 2;
      }
    }
    std::fprintf(stderr, "mesob-load: %s%s, seed %llu, run id %016llx\n",
                 mixing ? (pt.name + ": ").c_str() : "", pt.w.describe().c_str(),
                 (unsigned long long)pt.w.seed, (unsigned long long)pt.w.run);
    // A run id given again: the target answers each transfer the earlier run made with
    // that run's outcome (ok), so they would count as fresh work. Refused if the target
    // holds this run's first item, before anything is made there (a baseline's setup
    // empties its tables: only --no-setup keeps an earlier run's transfers there).
    if (run_given && (target_name == "mesob" || no_setup)) {
      const load::account_layout layout(pt.w);
      const wire::id128 first = load::make_transfer(pt.w, layout, 1).id;
      std::vector<load::found_transfer> found;
      if (!pt.t->find_transfers({&first, 1}, &found, &error)) {
        std::fprintf(stderr, "mesob-load: --run-id: looking up the run's first transfer: %s\n", error.c_str());
        return 1;
      }
      if (!found.empty() && found[0].found) {
        std::fprintf(stderr,
                     "mesob-load: %s--run-id %016llx: the target holds this run's first transfer already (an earlier "
                     "run's); its repeats would be answered with their first outcome and counted as new: give a run "
                     "id no run used (a mix's parts take the given one + 0, 1, ...), or none\n",
                     mixing ? (pt.name + ": ").c_str() : "", (unsigned long long)pt.w.run);
        return 2;
      }
    }
  }
  if (!no_setup)
    for (auto& pt : parts) {
      const auto t0 = std::chrono::steady_clock::now();
      if (!pt.t->setup(pt.w, &error)) {
        std::fprintf(stderr, "mesob-load: setup: %s\n", error.c_str());
        return 1;
      }
      std::fprintf(stderr, "mesob-load: %llu accounts ready in %.1f s\n", (unsigned long long)pt.w.accounts,
                   std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  // Payouts: mesob-load answers the instructions as the gateway (the gateway simulator),
  // and notes how each payout ended, for verification and the completion time.
  std::mutex outcomes_mu;
  std::unordered_map<uint64_t, int> outcomes;
  uint64_t settled = 0, failed = 0;
  auto last_answer = std::chrono::steady_clock::now();
  std::unique_ptr<tools::gateway_sim> answering;
  if (any_payouts) {
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
    for (auto& pt : parts)
      if (pt.w.kind == load::item_kind::payouts)
        pt.o.held_outcome = [&](uint64_t id) {
          std::lock_guard lk(outcomes_mu);
          const auto it = outcomes.find(id);
          return it == outcomes.end() ? 0 : it->second;
        };
  }
  // Orders: mesob-load answers the instructions as the broker (the gateway simulator's
  // broker, filling each in full at the instrument's price after --broker-latency-ms), and
  // notes how each order ended (1 filled: the hold posted; 2 rejected: released).
  std::unordered_map<uint64_t, int> order_outcomes;
  uint64_t filled = 0, rejected = 0;
  std::unique_ptr<tools::broker_sim> brokering;
  if (any_orders) {
    broker.host = mo.host;
    broker.port = mo.port;
    broker.reject_rate = broker_reject_pct / 100;
    broker.acknowledge = broker.latency_ms > 0;  // at once: the fill acknowledges
    broker.seed = w.seed;
    broker.price_of = [](uint64_t) { return load::workload::order_price; };
    // A fill or a reject taken, or refused because the order closed (sent again after a
    // reconnect whose reply was lost: the first one closed it), says how it ended: the
    // simulator decides a reject before any fill, per order, and fills at the limit, so
    // every answer to an order agrees.
    broker.on_answered = [&](const wire::order_answer& a, wire::result r) {
      if (r != wire::result::ok && r != wire::result::order_not_open) return;
      int out = 0;
      if (a.kind == wire::order_answer_kind::fill) out = 1;
      if (a.kind == wire::order_answer_kind::reject) out = 2;
      if (out == 0) return;
      std::lock_guard lk(outcomes_mu);
      if (!order_outcomes.emplace(a.order_id, out).second) return;
      (out == 1 ? filled : rejected) += 1;
      last_answer = std::chrono::steady_clock::now();
    };
    brokering = std::make_unique<tools::broker_sim>(broker);
    brokering->start();
    for (int i = 0; i < 500 && !brokering->connected(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!brokering->connected()) {
      std::fprintf(stderr, "mesob-load: --broker-gateway %s could not connect and authenticate\n", broker.gateway.c_str());
      return 1;
    }
    for (auto& pt : parts)
      if (pt.w.kind == load::item_kind::orders)
        pt.o.held_outcome = [&](uint64_t id) {
          std::lock_guard lk(outcomes_mu);
          const auto it = order_outcomes.find(id);
          return it == order_outcomes.end() ? 0 : it->second;
        };
  }
  // Every part at once, each on its own connections.
  const auto load_start = std::chrono::steady_clock::now();
  std::vector<std::thread> runs;
  for (auto& pt : parts)
    runs.emplace_back([&pt] { pt.ran = load::run_load(*pt.t, pt.w, pt.o, &pt.r, &pt.error); });
  for (auto& th : runs) th.join();
  int code = 0;
  uint64_t all_ok = 0;
  double longest = 0;
  for (auto& pt : parts) {
    if (mixing) std::printf("== %s\n", pt.name.c_str());
    if (!pt.ran) {
      std::fprintf(stderr, "mesob-load: %s%s\n", mixing ? (pt.name + ": ").c_str() : "", pt.error.c_str());
      code = 1;
      continue;
    }
    load::print_report(pt.r, stdout);
    all_ok += pt.r.transfers_ok;
    longest = std::max(longest, pt.r.seconds);
  }
  if (mixing && code == 0)
    std::printf("mix: %llu items ok in %.2f s: %.0f items/s over %zu workloads at once\n", (unsigned long long)all_ok,
                longest, longest > 0 ? double(all_ok) / longest : 0.0, parts.size());
  if (answering) {
    answering->stop();
    std::lock_guard lk(outcomes_mu);
    std::printf("payouts answered: %llu settled, %llu failed; the last %.2f s after the load started\n",
                (unsigned long long)settled, (unsigned long long)failed,
                std::chrono::duration<double>(last_answer - load_start).count());
  }
  if (brokering) {
    brokering->stop();
    std::lock_guard lk(outcomes_mu);
    std::printf("orders answered: %llu filled, %llu rejected; the last %.2f s after the load started\n",
                (unsigned long long)filled, (unsigned long long)rejected,
                std::chrono::duration<double>(last_answer - load_start).count());
  }
  if (code != 0) return code;
  for (auto& pt : parts) {
    // A mix writes one report and one pair of plots per workload (its name in the file names).
    const std::string suffix = mixing ? "-" + pt.name : "";
    if (!json_path.empty()) {
      std::string path = json_path;
      if (!suffix.empty()) {
        const bool ends_json = path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0;
        path = ends_json ? path.substr(0, path.size() - 5) + suffix + ".json" : path + suffix;
      }
      if (!load::write_report_json(pt.r, pt.w, pt.o, path, &error)) {
        std::fprintf(stderr, "mesob-load: %s\n", error.c_str());
        return 1;
      }
      std::printf("wrote %s\n", path.c_str());
    }
    if (!plot_dir.empty()) {
      if (!load::write_plots(pt.r, plot_dir, label + suffix, &error)) {
        std::fprintf(stderr, "mesob-load: plots: %s\n", error.c_str());
        return 1;
      }
      std::printf("wrote %s/%s-latency-over-time.png and %s-latency-distribution.png\n", plot_dir.c_str(),
                  (label + suffix).c_str(), (label + suffix).c_str());
    }
  }
  for (auto& pt : parts)
    if (pt.r.verify.ran && !pt.r.verify.ok) return 3;
  for (auto& pt : parts)
    if (pt.r.requests_failed > 0) {
      std::fprintf(stderr, "mesob-load: %llu requests failed (see the report's failures)\n",
                   (unsigned long long)pt.r.requests_failed);
      return 4;
    }
  return 0;
}
