// mesob-gatewaysim: payment gateways for tests and load (tools/gateway_sim.hpp).
//
//   mesob-gatewaysim --port 7400 --gateway telebirr:<secret-hex> --latency-ms 1
//                    --fail-rate 0.1 --deposits-per-s 1000 --wallets 1-1000
//
// Each --gateway is one session (registered with `gateway register` on the admin
// port). --feed id:secret-hex adds a market-data feed (tools/market_feed.hpp): prices
// for --instruments first-last as random walks with jumps, the instruments listed first
// with --define:
//
//   mesob-gatewaysim --feed md:<secret-hex> --instruments 1-100 --define --prices-per-s 5000
//
// --broker id:secret-hex adds a broker (tools/broker_sim.hpp) working the orders the
// engine pushes: it fills at the feed's last price (without a feed: at each order's
// limit) after --fill-latency-ms, a share in parts (--partial-rate), rejects a share
// (--reject-rate).
// Commands on standard input, one per line:
//   disconnect <gateway> <pause-ms>   drop that gateway's connection, reconnect after
//   stats                             print every gateway's counters (JSON, one line)
//   quit                              stop (as does end of input, SIGTERM or --seconds)
// It prints "gatewaysim: ready" once every gateway is connected, and the counters at exit.
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <sstream>
#include <thread>

#include "tools/gateway_sim.hpp"
#include "actors/market.hpp"
#include "tools/market_feed.hpp"
#include "tools/broker_sim.hpp"
#include "wire/cli_options.hpp"
#include "wire/protocol.hpp"

using namespace mesob;

namespace {

std::string stats_json(const std::vector<std::unique_ptr<tools::gateway_sim>>& sims,
                       const std::unique_ptr<tools::market_feed>& feed, const std::unique_ptr<tools::broker_sim>& broker,
                       const std::string& broker_id) {
  std::ostringstream o;
  o << "{";
  if (broker) {
    const auto s = broker->stats();
    o << "\"" << broker_id << "\":{\"broker\":true,\"connects\":" << s.connects << ",\"instructions\":" << s.instructions
      << ",\"cancels\":" << s.cancels << ",\"fills_sent\":" << s.fills_sent << ",\"rejects_sent\":" << s.rejects_sent
      << ",\"answers_ok\":" << s.answers_ok << ",\"answers_refused\":" << s.answers_refused
      << ",\"working\":" << s.working << ",\"errors\":" << s.errors << "}" << (sims.empty() && !feed ? "" : ",");
  }
  if (feed) {
    const auto s = feed->stats();
    o << "\"" << feed->options().gateway << "\":{\"feed\":true,\"connects\":" << s.connects
      << ",\"defined\":" << s.defined << ",\"prices_sent\":" << s.prices_sent << ",\"prices_ok\":" << s.prices_ok
      << ",\"prices_refused\":" << s.prices_refused << ",\"jumps\":" << s.jumps << ",\"errors\":" << s.errors << "}"
      << (sims.empty() ? "" : ",");
  }
  for (size_t i = 0; i < sims.size(); ++i) {
    const auto s = sims[i]->stats();
    o << (i ? "," : "") << "\"" << sims[i]->options().gateway << "\":{\"connects\":" << s.connects
      << ",\"instructions\":" << s.instructions << ",\"answered_settled\":" << s.answered_settled
      << ",\"answered_failed\":" << s.answered_failed << ",\"answered_declined\":" << s.answered_declined
      << ",\"dropped\":" << s.dropped
      << ",\"lost\":" << s.lost << ",\"cancels\":" << s.cancels << ",\"cancels_paid\":" << s.cancels_paid
      << ",\"pays_cancelled\":" << s.pays_cancelled
      << ",\"duplicates\":" << s.duplicates << ",\"answers_ok\":" << s.answers_ok
      << ",\"answers_refused\":" << s.answers_refused << ",\"deposits_sent\":" << s.deposits_sent
      << ",\"deposits_ok\":" << s.deposits_ok << ",\"deposits_refused\":" << s.deposits_refused
      << ",\"errors\":" << s.errors << "}";
  }
  o << "}";
  return o.str();
}

// "first-last" (or one id): decimal digits only, ids from 1, first <= last.
bool parse_range(const std::string& text, uint64_t* first, uint64_t* last) {
  const auto number = [](const std::string& t, uint64_t* out) {
    if (t.empty() || t.size() > 19 || t.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stoull(t);
    return *out != 0;
  };
  const auto dash = text.find('-');
  if (dash == std::string::npos) return number(text, first) && (*last = *first, true);
  return number(text.substr(0, dash), first) && number(text.substr(dash + 1), last) && *first <= *last;
}

}  // namespace

int main(int argc, char** argv) {
  tools::gateway_sim_options base;
  std::vector<std::string> gateways;
  std::string wallets = "1-1", currency = "ETB";
  double seconds = 0;
  uint64_t seed = std::random_device{}();
  uint64_t reference_first = 0;
  CLI::App app{"mesob-gatewaysim - payment gateways over Mesob's protocol"};
  app.add_option("--host", base.host)->capture_default_str();
  app.add_option("--port", base.port)->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--gateway", gateways, "id:secret-hex, one session each");
  std::string feed_spec, instruments = "1-1";
  tools::market_feed_options feed_o;
  app.add_option("--feed", feed_spec, "id:secret-hex of a market-data gateway: send prices");
  app.add_option("--instruments", instruments, "first-last instrument ids the feed prices")->capture_default_str();
  app.add_flag("--define", feed_o.define, "the feed lists its instruments first (symbols S<id>)");
  uint64_t lot = 1;
  app.add_option("--lot", lot, "units per lot of the instruments (as --define lists them; the broker fills whole lots)")
      ->capture_default_str()->check(CLI::Range(uint64_t(1), uint64_t(1'000'000'000)));
  app.add_option("--prices-per-s", feed_o.prices_per_s)->capture_default_str()->check(CLI::Range(1.0, 1e8));
  app.add_option("--prices-max", feed_o.prices_max, "prices in all (0: no limit)");
  app.add_option("--start-ticks", feed_o.start_ticks)->capture_default_str()->check(CLI::Range(1ull, 1ull << 40));
  app.add_option("--volatility-bp", feed_o.volatility_bp, "a step's standard deviation")
      ->capture_default_str()->check(CLI::Range(0.0, 1000.0));
  app.add_option("--jump-rate", feed_o.jump_rate, "share of steps that jump")->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--jump-bp", feed_o.jump_bp, "a jump's size")->capture_default_str()->check(CLI::Range(0.0, 9000.0));
  std::string broker_spec;
  tools::broker_sim_options broker_o;
  app.add_option("--broker", broker_spec, "id:secret-hex of a broker gateway: work the orders pushed to it");
  app.add_option("--fill-latency-ms", broker_o.latency_ms, "mean latency of each fill (exponential)")
      ->capture_default_str()->check(CLI::Range(0.0, 600'000.0));
  app.add_option("--partial-rate", broker_o.partial_rate, "share of orders filled in parts")->check(CLI::Range(0.0, 1.0));
  app.add_option("--reject-rate", broker_o.reject_rate, "share of orders rejected")->check(CLI::Range(0.0, 1.0));
  app.add_flag("--broker-silent", broker_o.silent,
               "the broker takes orders and never answers (the engine times it out and falls back)");
  app.add_option("--latency-ms", base.latency_ms, "mean answer latency (exponential)")
      ->capture_default_str()->check(CLI::Range(0.0, 600'000.0));
  app.add_option("--latency-ms-max", base.latency_ms_max)->capture_default_str()->check(CLI::Range(0.0, 86'400'000.0));
  app.add_option("--fail-rate", base.fail_rate, "share of instructions answered failed")->check(CLI::Range(0.0, 1.0));
  app.add_option("--decline-rate", base.decline_rate,
                 "share of the others answered failed and declined (the payment refused: the breaker counts it good)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--timeout-rate", base.timeout_rate, "share never answered")->check(CLI::Range(0.0, 1.0));
  app.add_option("--lost-rate", base.lost_rate, "share paid but never answered (a cancel is answered settled)")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--duplicate-rate", base.duplicate_rate, "share answered twice")->check(CLI::Range(0.0, 1.0));
  app.add_option("--deposits-per-s", base.deposits_per_s, "deposits each gateway reports per second")
      ->check(CLI::Range(0.0, 1e7));
  app.add_option("--deposits-max", base.deposits_max, "deposits per gateway in all (0: no limit)");
  app.add_option("--wallets", wallets, "first-last wallet ids deposits go to")->capture_default_str();
  app.add_option("--amount", base.deposit_amount, "minor units per deposit")->capture_default_str();
  app.add_option("--currency", currency)->capture_default_str();
  app.add_option("--seconds", seconds, "stop after this long (0: at quit or end of input)")
      ->check(CLI::Range(0.0, 1e9));
  app.add_option("--reference-first", reference_first,
                 "each gateway's first deposit reference (0: from the clock, printed: a run's deposits are new "
                 "to the engine, not repeats of the last run's)");
  app.add_option("--seed", seed, "random seed (printed)");
  wire::numbers_as_written(app);  // (CLI11 alone: --amount -1 as 2^64 - 1, --port 07400 as octal, nan)
  if (const int status = wire::parse_options(app, argc, argv); status >= 0) return status;

  uint64_t wallet_last = 0;
  if (!parse_range(wallets, &base.wallet_first, &wallet_last)) {
    std::fprintf(stderr, "mesob-gatewaysim: --wallets must be first-last (decimal ids from 1, first <= last)\n");
    return 2;
  }
  base.wallet_count = wallet_last - base.wallet_first + 1;
  if (!wire::parse_currency(currency, &base.currency)) {
    std::fprintf(stderr, "mesob-gatewaysim: --currency must be three letters A-Z\n");
    return 2;
  }
  if (gateways.empty() && feed_spec.empty() && broker_spec.empty()) {
    std::fprintf(stderr, "mesob-gatewaysim: give at least one --gateway, a --feed or a --broker\n");
    return 2;
  }
  std::unique_ptr<tools::market_feed> feed;
  if (!feed_spec.empty()) {
    const auto colon = feed_spec.find(':');
    if (colon == std::string::npos || !wire::from_hex(feed_spec.substr(colon + 1), &feed_o.secret) ||
        feed_o.secret.empty()) {
      std::fprintf(stderr, "mesob-gatewaysim: --feed %s is not id:secret-hex\n", feed_spec.c_str());
      return 2;
    }
    feed_o.gateway = feed_spec.substr(0, colon);
    uint64_t first = 0, last = 0;
    if (!parse_range(instruments, &first, &last) || last - first >= 65'536) {
      std::fprintf(stderr, "mesob-gatewaysim: --instruments must be first-last, ids from 1, at most 65,536\n");
      return 2;
    }
    for (uint64_t id = first; id <= last; ++id) feed_o.instruments.push_back(id);
    feed_o.host = base.host;
    feed_o.port = base.port;
    feed_o.seed = seed;
    feed_o.definition = actors::market::definition(0, "", wire::asset_class::equity, base.currency, 1, lot,
                                                   {1000, 60'000, 60'000, 30'000});
    feed = std::make_unique<tools::market_feed>(feed_o);
  }
  std::unique_ptr<tools::broker_sim> broker;
  std::string broker_id;
  if (!broker_spec.empty()) {
    const auto colon = broker_spec.find(':');
    if (colon == std::string::npos || !wire::from_hex(broker_spec.substr(colon + 1), &broker_o.secret) ||
        broker_o.secret.empty()) {
      std::fprintf(stderr, "mesob-gatewaysim: --broker %s is not id:secret-hex\n", broker_spec.c_str());
      return 2;
    }
    broker_id = broker_o.gateway = broker_spec.substr(0, colon);
    broker_o.host = base.host;
    broker_o.port = base.port;
    broker_o.seed = seed ^ 0xB40CE4;
    broker_o.lot_of = [lot](uint64_t) { return lot; };
    if (feed) {  // the feed's last prices
      tools::market_feed* f = feed.get();
      const uint64_t first = feed_o.instruments.front(), n = feed_o.instruments.size();
      broker_o.price_of = [f, first, n](uint64_t id) { return id >= first && id - first < n ? f->last_ticks(id - first) : 0; };
    }
    broker = std::make_unique<tools::broker_sim>(broker_o);
  }
  std::printf("gatewaysim: seed %llu\n", static_cast<unsigned long long>(seed));
  if (reference_first == 0) {
    // Milliseconds since 1970 times a million (about 1.8e18, below 2^64 until 2554): a
    // later run starts past an earlier one's unless that one made a million deposits a
    // millisecond.
    reference_first = uint64_t(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()) *
                      1'000'000;
  }
  if (!gateways.empty())
    std::printf("gatewaysim: deposit references from %llu\n", static_cast<unsigned long long>(reference_first));
  std::vector<std::unique_ptr<tools::gateway_sim>> sims;
  for (size_t i = 0; i < gateways.size(); ++i) {
    const auto colon = gateways[i].find(':');
    tools::gateway_sim_options o = base;
    if (colon == std::string::npos || !wire::from_hex(gateways[i].substr(colon + 1), &o.secret) || o.secret.empty()) {
      std::fprintf(stderr, "mesob-gatewaysim: --gateway %s is not id:secret-hex\n", gateways[i].c_str());
      return 2;
    }
    o.gateway = gateways[i].substr(0, colon);
    // Two sessions of one gateway would report the same references (each deposit once
    // in the engine, counted twice here).
    for (const auto& s : sims)
      if (s->options().gateway == o.gateway) {
        std::fprintf(stderr, "mesob-gatewaysim: --gateway %s is given twice\n", o.gateway.c_str());
        return 2;
      }
    o.seed = seed + i;
    o.reference_first = reference_first;  // references are per gateway
    sims.push_back(std::make_unique<tools::gateway_sim>(o));
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // threads started below inherit it
  for (auto& s : sims) s->start();
  if (feed) feed->start();
  if (broker) broker->start();
  const auto t0 = std::chrono::steady_clock::now();
  bool ready = false, input = true;
  // Standard input is read with read() into this buffer, split into lines here: a poll
  // on the descriptor paired with std::getline missed lines already in stdin's buffer
  // (two commands in one write: the second waited for the next write), and a line
  // without its end blocked in getline past --seconds and SIGTERM.
  std::string pending, line;
  constexpr size_t line_max = 4096;
  bool end_after_line = false;  // input ended with a line without its newline: it runs, then the end
  for (;;) {
    if (!ready && std::all_of(sims.begin(), sims.end(), [](auto& s) { return s->connected(); }) &&
        (!feed || feed->connected()) && (!broker || broker->connected())) {
      ready = true;
      std::printf("gatewaysim: ready\n");
      std::fflush(stdout);
    }
    if (seconds > 0 && std::chrono::steady_clock::now() - t0 >= std::chrono::duration<double>(seconds)) break;
    timespec zero{};
    if (sigtimedwait(&stop_signals, nullptr, &zero) > 0) break;
    if (const size_t nl = pending.find('\n'); nl != std::string::npos) {
      line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
    } else if (end_after_line) {
      end_after_line = false;
      line = std::move(pending);
      pending.clear();
    } else {
      pollfd p{0, POLLIN, 0};
      if (!input || ::poll(&p, 1, 20) <= 0) {
        if (!input) {
          if (seconds <= 0) break;  // end of input stops a run without a deadline
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        continue;
      }
      char buf[4096];
      const ssize_t n = ::read(0, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        input = false;
        end_after_line = !pending.empty();
        continue;
      }
      pending.append(buf, size_t(n));
      if (pending.size() > line_max && pending.find('\n') == std::string::npos) {
        std::printf("gatewaysim: a line of more than %zu bytes: dropped\n", line_max);
        std::fflush(stdout);
        pending.clear();
      }
      continue;
    }
    std::istringstream words(line);
    std::string cmd, who, pause_text, extra;
    uint64_t pause = 0;
    words >> cmd;
    // A pause is decimal milliseconds up to a day (">>" into an unsigned took -1 as
    // 2^64 - 1, which became a pause of -1 ms).
    auto pause_ok = [&] {
      if (pause_text.empty() || pause_text.size() > 8 ||
          !std::all_of(pause_text.begin(), pause_text.end(), [](char c) { return c >= '0' && c <= '9'; }))
        return false;
      pause = std::stoull(pause_text);
      return pause <= 86'400'000;
    };
    // A word past the command's ("disconnect a 50 junk"): refused whole, nothing done.
    if (cmd == "disconnect") words >> who >> pause_text;
    if (!cmd.empty() && (words >> extra)) {
      std::printf("gatewaysim: '%s' after the command: disconnect <gateway> <pause-ms>, stats, quit\n", extra.c_str());
    } else if (cmd == "quit") {
      break;
    } else if (cmd == "stats") {
      std::printf("gatewaysim: stats %s\n", stats_json(sims, feed, broker, broker_id).c_str());
    } else if (cmd == "disconnect" && !who.empty() && !pause_text.empty() && !pause_ok()) {
      std::printf("gatewaysim: disconnect: '%s' is not a pause of 0 .. 86400000 ms (decimal digits)\n", pause_text.c_str());
    } else if (cmd == "disconnect" && !who.empty() && !pause_text.empty()) {
      bool found = false;
      if (broker && who == broker_id) {
        broker->disconnect(pause);
        found = true;
      }
      if (feed && who == feed->options().gateway) {
        feed->disconnect(pause);
        found = true;
      }
      for (auto& s : sims)
        if (s->options().gateway == who) {
          s->disconnect(pause);
          found = true;
        }
      if (found) std::printf("gatewaysim: %s disconnected for %llu ms\n", who.c_str(), static_cast<unsigned long long>(pause));
      else std::printf("gatewaysim: no gateway %s\n", who.c_str());
    } else if (!cmd.empty()) {
      std::printf("gatewaysim: unknown command '%s' (disconnect <gateway> <pause-ms>, stats, quit)\n", cmd.c_str());
    }
    std::fflush(stdout);
  }
  for (auto& s : sims) s->stop();
  if (broker) broker->stop();
  if (feed) feed->stop();
  std::printf("gatewaysim: stats %s\n", stats_json(sims, feed, broker, broker_id).c_str());
  return 0;
}
