// mesob-relay: a notification relay, an example consumer of the event stream.
//
//   mesob-relay --port 7400 --gateway dev --secret-file var/mesob/dev-gateway.secret
//               --name relay [--account 42 ...] [--types transfer_posted,pending_expired]
//
// It subscribes (as a named subscriber, so it resumes where it left off after any
// disconnect or restart of either side), prints one human-readable message per customer
// and event ("account 42: you received 500.00 ETB from account 7"), each with its offset
// and its delivery lag (now less the event's engine time), and acknowledges each frame
// once printed. Every 5 s it prints its counters and the lag to standard error.
// --raw prints one machine-readable line per event instead (tests read it):
//   <offset> <type> <lsn> <id.lo> <id.hi> <account_a> <account_b> <amount> <ref.lo> <code> <gateway>
// Amounts are minor units, shown with two decimals.
//
// Delivery is at least once; the relay drops what it already printed (by offset), so
// within one run each event is printed once across reconnects and engine restarts. With
// --out FILE it appends to FILE itself and, started again on it (after a crash, a kill
// -9), goes on after the last event FILE holds whole: each event is in FILE once. (It
// cuts an incomplete last line, and the lines of the last event when that event comes
// again unacknowledged; with --raw it checks the events FILE holds when they come again,
// as below.) The
// latest printed events (printed_kept_max) are checked when they come again: one that
// differs (the engine's event log replaced under the relay) is printed, with a warning,
// and the relay counts from it. An unnamed relay resumes after the last offset it was
// served (filtered streams move on past events they do not carry). On a quiet stream it
// pings every --keepalive-s (the server closes sessions idle for 5 minutes) and
// reconnects when nothing at all came from the server for three of those. It retries
// what may pass (the server away, draining, too many sessions, the subscriptions all
// taken, a name not saved, an engine whose log after a restart does not yet reach the
// relay's offset) with a growing wait, up to 5 s, and
// stops on what will not (a wrong secret, a missing role, a field the server refuses,
// events past retention, its name taken over by a newer session of its gateway: another
// relay under the same name). A frame refused for an event that fails its CRC is asked
// for again on a new connection; the same event damaged in three refused frames in a
// row (whatever failed between them) stops it too. Its own reconnect takes the name over from its old session,
// should the server not have seen that one's connection die.
// Exit: 0 at --seconds or SIGTERM, 2 when the subscription is refused or ended for good
// (the reason is printed), 3 when the events could not be written.
#include <fcntl.h>
#include <signal.h>
#include <stdio_ext.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "wire/cli_options.hpp"
#include "wire/client.hpp"
#include "wire/protocol.hpp"

using namespace mesob;

namespace {

std::atomic<bool> stop_flag{false};
// The same for the client's waits: a SIGTERM ends a connect, handshake or subscription
// waiting on a server that does not answer at once, not after its 5 s.
volatile std::sig_atomic_t stop_signal = 0;
void on_signal(int) {
  stop_flag.store(true);
  stop_signal = 1;
}

uint64_t wall_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

std::string currency_text(wire::currency_code c) {
  std::string s;
  for (int i = 0; i < 3; ++i) {
    const char ch = char((c >> (8 * i)) & 0xff);
    s += ch ? ch : '?';
  }
  return s;
}

// ISO 4217's minor units: the currencies with other than two decimals (the rest, and a
// code of no currency, two).
int decimals(const std::string& code) {
  static const std::pair<const char*, int> table[] = {
      {"BIF", 0}, {"CLP", 0}, {"DJF", 0}, {"GNF", 0}, {"ISK", 0}, {"JPY", 0}, {"KMF", 0}, {"KRW", 0},
      {"PYG", 0}, {"RWF", 0}, {"UGX", 0}, {"UYI", 0}, {"VND", 0}, {"VUV", 0}, {"XAF", 0}, {"XOF", 0},
      {"XPF", 0}, {"BHD", 3}, {"IQD", 3}, {"JOD", 3}, {"KWD", 3}, {"LYD", 3}, {"OMR", 3}, {"TND", 3},
      {"CLF", 4}, {"UYW", 4}};
  for (const auto& [name, d] : table)
    if (code == name) return d;
  return 2;
}

std::string money(uint64_t minor, wire::currency_code c) {
  const std::string code = currency_text(c);
  const int d = decimals(code);
  uint64_t unit = 1;
  for (int i = 0; i < d; ++i) unit *= 10;
  char buf[64];
  if (d == 0)
    std::snprintf(buf, sizeof buf, "%" PRIu64 " %s", minor, code.c_str());
  else
    std::snprintf(buf, sizeof buf, "%" PRIu64 ".%0*" PRIu64 " %s", minor / unit, d, minor % unit, code.c_str());
  return buf;
}

std::string halt_text(uint16_t reasons) {
  std::string out;
  for (auto [bit, name] : {std::pair{wire::halt_reasons::manual, "by an operator"},
                           std::pair{wire::halt_reasons::move, "the price moved too far too fast"},
                           std::pair{wire::halt_reasons::stale, "no recent price"}})
    if (reasons & bit) out += (out.empty() ? "" : "; ") + std::string(name);
  return out.empty() ? "no reason" : out;
}

std::vector<std::string> messages(const wire::event& e) {
  using wire::event_type;
  const std::string amt = money(e.amount, e.currency);
  const std::string a = std::to_string(e.account_a), b = std::to_string(e.account_b);
  switch (e.type) {
    case event_type::account_opened: return {"account " + a + ": opened (" + currency_text(e.currency) + ")"};
    case event_type::account_status: {
      const char* st = e.code == 1 ? "open" : e.code == 2 ? "frozen" : e.code == 3 ? "closed" : "changed";
      return {"account " + a + ": status is now " + st};
    }
    case event_type::transfer_posted:
      if (e.flags & wire::transfer_flags::equb)
        return {"account " + a + ": your equb contribution of " + amt + " to group " + b + " was received"};
      if (e.gateway != 0)
        return {"account " + b + ": your deposit of " + amt + " arrived through gateway " + std::to_string(e.gateway)};
      return {"account " + a + ": you sent " + amt + " to account " + b,
              "account " + b + ": you received " + amt + " from account " + a};
    case event_type::pending_created: return {"account " + a + ": " + amt + " on hold for account " + b};
    case event_type::pending_posted:
      return {"account " + a + ": your held payment of " + amt + " to account " + b + " went through",
              "account " + b + ": you received " + amt + " from account " + a};
    case event_type::pending_voided: return {"account " + a + ": the hold of " + amt + " was released"};
    case event_type::pending_expired: return {"account " + a + ": the hold of " + amt + " expired and was released"};
    case event_type::equb_op: {
      static const char* ops[] = {"?", "created", "started", "left by a member", "bid on", "dissolved", "retried its payments"};
      if (e.code == uint16_t(wire::equb_op_kind::payout_to))
        return {"account " + b + ": your payouts from group " + a +
                (e.ref.hi == 0 ? " will go to this wallet" : " will be sent on to " + std::to_string(e.amount))};
      if (e.code == uint16_t(wire::equb_op_kind::replace_account))
        return {"group " + a + ": account " + b + " replaced by account " + std::to_string(e.amount)};
      if (e.code == uint16_t(wire::equb_op_kind::write_off))
        // (An operation's event names no currency: the sum in minor units.)
        return {"account " + b + ": your debts to group " + a + " (seat " + std::to_string(e.ref.lo) + ", " +
                std::to_string(e.amount) + " in minor units) were written off"};
      return {"group " + a + ": " + (e.code < 7 ? ops[e.code] : "changed")};
    }
    case event_type::gateway_session:
      return {"gateway " + std::to_string(e.gateway) + ": session " + (e.code == 1 ? "up" : "down")};
    case event_type::payout_answer: {
      // Events written before they named the wallet have 0 there.
      const std::string who = e.account_a != 0 ? "account " + a + ": your payout " : "payout ";
      // (flags 1: the gateway declined the payment itself, the destination refusing it.)
      const char* how = e.code == 1 ? " was paid out" : e.flags == 1 ? " was declined by the destination" : " failed at the gateway";
      return {who + std::to_string(e.ref.lo) + " of " + amt + how + " (gateway " + std::to_string(e.gateway) + ")"};
    }
    case event_type::payout_op: {
      const std::string who = e.account_a != 0 ? "account " + a + ": your payout " : "payout ";
      return {who + std::to_string(e.ref.lo) + " was " + (e.code == 1 ? "retried" : "cancelled") + " by an operator"};
    }
    case event_type::equb_missed:
      return {"account " + b + ": you missed round " + std::to_string(e.ref.lo) + " of equb group " + a + "; you owe " +
              amt + " in all"};
    case event_type::equb_round_closed:
      return {"group " + a + ": round " + std::to_string(e.code) + " closed; seat " + std::to_string(e.flags) +
                  " receives the pot",
              "account " + b + ": you receive round " + std::to_string(e.code) + "'s pot of equb group " + a};
    case event_type::equb_completed:
      return {"group " + a + ": completed after " + std::to_string(e.code) + " rounds"};
    case event_type::payout_dead:
      return {"account " + a + ": payout " + std::to_string(e.ref.lo) + " of " + amt +
              " could not be delivered; it is held until our operators retry or cancel it"};
    case event_type::payout_breaker: {
      static const char* phases[] = {"?", "closed (healthy)", "open (failing: not used)", "half open (probing)"};
      return {"gateway " + std::to_string(e.gateway) + ": payouts from desk " + a + " now " +
              (e.code <= 3 ? phases[e.code] : "changed")};
    }
    case event_type::equb_late:
      return {"account " + b + ": your round " + std::to_string(e.ref.lo) + " contribution to equb group " + a +
              " was late; it carried a penalty of " + amt};
    case event_type::instrument_defined: {
      char sym[17] = {};
      std::memcpy(sym, &e.id, sizeof e.id);
      return {"instrument " + a + " (" + sym + "): listed, " + std::string(wire::asset_class_name(uint8_t(e.code))) +
              " in " + currency_text(e.currency) + ", lots of " + std::to_string(e.ref.lo)};
    }
    case event_type::price: return {"instrument " + a + ": price " + std::to_string(e.amount) + " ticks"};
    case event_type::instrument_halted:
      return {"instrument " + a + ": trading halted (" + halt_text(e.flags) + ")" +
              (e.ref.lo != 0 ? ", the move halt ends at engine time " + std::to_string(e.ref.lo) : std::string())};
    case event_type::instrument_resumed:
      return {"instrument " + a + ": trading resumed (" + halt_text(e.code) + " is over)"};
    case event_type::customer_kyc:
      return {"account " + a + ": your identity check is " + std::string(wire::kyc_status_name(uint8_t(e.code))) +
              "; tier " + std::to_string(e.flags) + ", " + std::string(wire::risk_profile_name(uint8_t(e.ref.lo))) +
              " investor"};
    case event_type::policy_changed:
      return {e.code == 1 ? "policy: tier " + std::to_string(e.flags) + " in " + currency_text(e.currency) +
                                " now allows " + money(e.amount, e.currency) + " per transfer, " +
                                money(e.ref.lo, e.currency) + " a day, " + money(e.ref.hi, e.currency) + " held"
                          : e.code == 3 ? "policy: the " + std::string(wire::risk_profile_name(uint8_t(e.flags))) +
                                              " model now weighs instrument " + std::to_string(e.ref.lo) + " at " +
                                              std::to_string(e.amount) + " bp"
                                        : "policy: the " + std::string(wire::risk_profile_name(uint8_t(e.flags))) + " profile changed"};
    case event_type::order_answer:
      return {e.code == 1   ? "account " + a + ": your order " + std::to_string(e.ref.lo) + " filled " +
                                  std::to_string(e.amount) + " units at " + std::to_string(e.account_b) + " ticks"
              : e.code == 3 ? "account " + a + ": your order " + std::to_string(e.ref.lo) + " is with the broker"
                            : "account " + a + ": your order " + std::to_string(e.ref.lo) + " was rejected by the broker"};
    case event_type::order_cancelled: return {"account " + a + ": your order " + std::to_string(e.ref.lo) + " was cancelled"};
    case event_type::order_expired:
      return {"account " + a + ": your order " + std::to_string(e.ref.lo) + " expired with " + std::to_string(e.amount) +
              " units unfilled"};
    case event_type::order_timeout:
      return {"broker " + std::to_string(e.gateway) + " did not acknowledge order " + std::to_string(e.ref.lo) +
              " of account " + a + " in time (attempt " + std::to_string(e.ref.hi) + ")"};
    case event_type::order_dead:
      if (e.code == 4)  // the broker that has it withdrawn (wire/README.md, order_dead)
        return {"account " + a + ": the broker handling your order " + std::to_string(e.ref.lo) +
                " can no longer report on it; its money stays reserved until our operators retry or cancel it"};
      return {"account " + a + ": your order " + std::to_string(e.ref.lo) +
              " could not reach a broker; its money stays reserved until our operators retry or cancel it"};
    case event_type::order_breaker: {
      static const char* phases[] = {"?", "closed (healthy)", "open (failing: not used)", "half open (probing)"};
      return {"broker " + std::to_string(e.gateway) + ": orders now " + (e.code <= 3 ? phases[e.code] : "changed")};
    }
    case event_type::order_retried:
      return {"account " + a + ": your order " + std::to_string(e.ref.lo) + " is being sent to a broker again"};
    case event_type::payout_overpaid:
      return {"gateway " + std::to_string(e.gateway) + ": paid payout " + std::to_string(e.ref.lo) + " of account " + a +
              " (" + amt + ") after it had " +
              (e.code == 1 ? "settled elsewhere" : e.code == 3 ? "been cancelled" : "failed") +
              ": an overpayment to reconcile"};
    case event_type::instrument_resequenced:
      return {"instrument " + a + ": prices now count from sequence " + std::to_string(e.ref.lo) +
              " (the last taken was " + std::to_string(e.ref.hi) + ")"};
    case event_type::customer_resequenced:
      return {"account " + a + ": identity records now count from sequence " + std::to_string(e.ref.lo)};
    case event_type::equb_rescheduled: {
      // The time added, in whole days, hours or minutes (at least a minute).
      const uint64_t minutes = std::max<uint64_t>(1, e.amount / 60'000'000'000ull);
      const auto count = [](uint64_t n, const char* unit) {
        return std::to_string(n) + " " + unit + (n == 1 ? "" : "s");
      };
      const std::string later = minutes >= 1440 ? count(minutes / 1440, "day")
                                : minutes >= 60 ? count(minutes / 60, "hour")
                                                : count(minutes, "minute");
      return {"group " + a + ": round " + std::to_string(e.code) + "'s deadline moved " + later +
              " later (the service was down, or the round was held)"};
    }
    case event_type::payout_timer: {
      const std::string g = std::to_string(e.gateway);
      const std::string what = e.code == 1   ? "no answer from its gateway in time"
                               : e.code == 2 ? "its wait to retry ended"
                               : e.code == 3 ? "the time to answer a cancel passed"
                                             : "a gateway may take it";
      const std::string next = e.flags == 1 ? "sent to gateway " + g + " (attempt " + std::to_string(e.ref.hi) + ")"
                               : e.flags == 2 ? "to be retried at gateway " + g
                               : e.flags == 3 ? "gateway " + g + " asked to cancel it"
                               : e.flags == 4 ? "waiting for a gateway"
                                              : "held for our operators";
      return {"payout " + std::to_string(e.ref.lo) + " of account " + a + " (" + amt + "): " + what + "; " + next};
    }
    case event_type::equb_retired:
      return {"group " + a + ": ended and settled; its record is retired and its escrow account closed"};
    case event_type::equb_debt_written_off:
      // Owed to the group alone: the seats' dividend, which no single account is told of.
      if (e.account_b == 0)
        return {"group " + a + ": seat " + std::to_string(e.code) + "'s debt of " + amt + " to the group (round " +
                std::to_string(e.ref.lo) + ") was written off"};
      return {"account " + b + ": the debt of " + amt + " owed to you by seat " + std::to_string(e.code) +
              " of group " + a + " (round " + std::to_string(e.ref.lo) + ") was written off; it will not be paid"};
  }
  return {"event of type " + std::to_string(unsigned(e.type))};
}

bool parse_types(const std::string& text, uint64_t* out) {
  *out = 0;
  size_t at = 0;
  while (at <= text.size()) {
    const size_t comma = std::min(text.find(',', at), text.size());
    const std::string name = text.substr(at, comma - at);
    bool found = false;
    for (uint16_t t = 1; t <= wire::event_type_max; ++t)
      if (wire::event_type_name(wire::event_type(t)) == name) {
        *out |= 1ull << t;
        found = true;
      }
    if (!found) return false;
    at = comma + 1;
  }
  return true;
}

// Printed events kept to check them when they come again (offset, lsn, id): 65,536 of
// them, 2 MiB. A named subscriber's place is saved every 100 ms, so after an engine
// crash more may come again; those older than the kept ones are dropped unchecked.
struct printed_event {
  uint64_t offset, lsn, id_lo, id_hi;
};
constexpr size_t printed_kept_max = 65'536;

// What an --out file already holds, read at the start: the offset of its last whole line
// (0: none), where the lines of that offset begin (the relay may have died while writing
// them; they are written again if that event comes again), and, of raw lines, the events
// before it (to check them when they come again). An incomplete last line (the relay
// died inside a write) is cut at once. Only the file's last 4 MiB are read.
struct out_tail {
  uint64_t last = 0;
  uint64_t last_at = 0;  // byte where the last offset's lines begin
  printed_event last_event{};  // (--raw: its lsn and id too)
  std::deque<printed_event> before;
};
constexpr size_t out_tail_max = 4u << 20;

// The offset a line the relay wrote names: a raw line's first number, a message's
// "[offset N, ...]". False for a line of neither form.
bool line_offset(std::string_view line, bool raw, printed_event* out) {
  *out = {};
  if (raw) {
    const std::string text(line);
    char* end = nullptr;
    const char* p = text.c_str();
    uint64_t v[5] = {};
    for (int k = 0; k < 5; ++k) {  // offset, type, lsn, id.lo, id.hi
      if (*p < '0' || *p > '9') return false;
      v[k] = std::strtoull(p, &end, 10);
      p = end;
      while (*p == ' ') ++p;
    }
    *out = {v[0], v[2], v[3], v[4]};
    return v[0] != 0;
  }
  const size_t at = line.rfind("[offset ");
  if (at == std::string_view::npos) return false;
  const std::string text(line.substr(at + 8));
  char* end = nullptr;
  out->offset = std::strtoull(text.c_str(), &end, 10);
  return end != text.c_str() && *end == ',' && out->offset != 0;
}

bool read_out_tail(int fd, bool raw, out_tail* t, std::string* why) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    *why = std::strerror(errno);
    return false;
  }
  const uint64_t size = uint64_t(st.st_size), from = size > out_tail_max ? size - out_tail_max : 0;
  std::string tail(size - from, '\0');
  for (size_t got = 0; got < tail.size();) {
    const ssize_t n = ::pread(fd, tail.data() + got, tail.size() - got, off_t(from + got));
    if (n <= 0) {
      *why = n == 0 ? "shorter than its size" : std::strerror(errno);
      return false;
    }
    got += size_t(n);
  }
  // An incomplete last line: cut.
  const size_t whole = tail.rfind('\n') == std::string::npos ? 0 : tail.rfind('\n') + 1;
  if (whole < tail.size()) {
    if (::ftruncate(fd, off_t(from + whole)) != 0) {
      *why = std::string("cutting its incomplete last line: ") + std::strerror(errno);
      return false;
    }
    std::fprintf(stderr, "relay: --out: cut an incomplete last line (%zu bytes)\n", tail.size() - whole);
    tail.resize(whole);
  }
  // The lines read may be in the page cache alone (the run before was stopped between
  // writing them and syncing them): synced before any is taken as printed, whose events
  // this run then acknowledges without writing them again. Before, only a cut was synced,
  // and a power cut after such an acknowledgement lost those lines for good.
  if (::fdatasync(fd) != 0) {
    *why = std::string("syncing it: ") + std::strerror(errno);
    return false;
  }
  // Its whole lines (the first may be the end of one before the tail: skipped), newest last.
  std::vector<std::pair<size_t, printed_event>> lines;
  size_t at = from == 0 ? 0 : tail.find('\n') + 1;
  while (at < tail.size()) {
    const size_t nl = tail.find('\n', at);
    printed_event e;
    if (!line_offset(std::string_view(tail).substr(at, nl - at), raw, &e)) {
      if (nl + 1 == tail.size()) {
        *why = std::string("its last line is not one this relay writes") + (raw ? " with --raw" : " without --raw");
        return false;
      }
    } else {
      lines.emplace_back(at, e);
    }
    at = nl + 1;
  }
  if (lines.empty()) return true;
  t->last = lines.back().second.offset;
  t->last_event = lines.back().second;
  size_t first = lines.size() - 1;
  while (first > 0 && lines[first - 1].second.offset == t->last) --first;
  t->last_at = from + lines[first].first;
  // As the live relay keeps them: a line at or below the last one kept (a stream that
  // changed was written again from there) replaces those from its offset on, so the
  // latest line of each offset is kept, in order. (Before, the first was kept and the
  // later ones dropped: served the stream written last again, it called it changed.)
  if (raw)
    for (size_t k = first > printed_kept_max ? first - printed_kept_max : 0; k < first; ++k) {
      while (!t->before.empty() && t->before.back().offset >= lines[k].second.offset) t->before.pop_back();
      t->before.push_back(lines[k].second);
    }
  return true;
}

// Refusals that another try will not change: the relay stops on them.
bool refusal_final(wire::protocol_error e) {
  using wire::protocol_error;
  switch (e) {
    case protocol_error::auth_failed:
    case protocol_error::role_denied:
    case protocol_error::field_invalid:
    case protocol_error::body_invalid:
    case protocol_error::version_unsupported:
    case protocol_error::kind_unknown:
    case protocol_error::unexpected_frame:
    case protocol_error::wrong_port:
    case protocol_error::events_truncated:
    case protocol_error::subscription_taken: return true;  // another consumer runs under the name
    default: return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  wire::client::options o;
  std::string secret_hex, secret_file, types_text;
  wire::subscribe_msg sub;
  bool raw = false;
  double seconds = 0;
  CLI::App app{"mesob-relay - notification relay over Mesob's event stream"};
  app.add_option("--host", o.host)->capture_default_str();
  app.add_option("--port", o.port)->check(CLI::Range(1, 65535))->capture_default_str();
  app.add_option("--gateway", o.gateway, "gateway id (events_reader role)")->required();
  app.add_option("--secret", secret_hex, "the gateway's secret, hex");
  app.add_option("--secret-file", secret_file, "a file holding the secret, hex");
  app.add_option("--name", sub.name, "subscriber name (resumes after its last acknowledged offset)");
  app.add_option("--from", sub.from, "first offset, when the name has none (0: the oldest kept)");
  app.add_option("--account", sub.accounts, "only events touching this account (repeatable)");
  app.add_option("--types", types_text, "only these event types, comma-separated (transfer_posted,...)");
  app.add_option("--window", sub.window, "offsets in flight before an acknowledgement");
  app.add_flag("--raw", raw, "one machine-readable line per event");
  std::string out_path;
  app.add_option("--out", out_path,
                 "append the lines to this file (each frame on the disk before it is acknowledged) and, started "
                 "again on it, go on after the last event it holds whole: each event in it once");
  app.add_option("--seconds", seconds, "stop after this long (0: until SIGTERM; at most a year)")
      ->check(CLI::Range(0.0, 365.0 * 86400));
  int keepalive_s = 30;
  app.add_option("--keepalive-s", keepalive_s,
                 "ping after this long without a frame either way (well under the server's idle timeout, 300 s)")
      ->check(CLI::Range(1, 120))
      ->capture_default_str();
  // Accounts, offsets and the port as written: CLI11 alone read --account 00042 as octal
  // (another customer's account) and -1 as 2^64 - 1.
  wire::numbers_as_written(app);
  if (const int status = wire::parse_options(app, argc, argv); status >= 0) return status;
  if (std::string why; !wire::read_secret(secret_hex, secret_file, &o.secret, &why)) {
    std::fprintf(stderr, "relay: %s%s\n", secret_file.empty() || !secret_hex.empty() ? "" : "--secret-file ", why.c_str());
    return 2;
  }
  if (!types_text.empty() && !parse_types(types_text, &sub.types)) {
    std::fprintf(stderr, "relay: --types: unknown event type in '%s'\n", types_text.c_str());
    return 2;
  }
  // Without SA_RESTART (signal() sets it): a write blocked on a stalled pipe is
  // interrupted, so a stop takes effect at once, not when the reader reads again.
  struct sigaction stop_action {};
  stop_action.sa_handler = on_signal;
  sigemptyset(&stop_action.sa_mask);
  ::sigaction(SIGTERM, &stop_action, nullptr);
  ::sigaction(SIGINT, &stop_action, nullptr);
  // A closed stdout (a pipe whose reader left) is a failed write, told and exit 3, not
  // the end of the process by SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  // --out: the file becomes standard output, and what it holds says where to go on.
  out_tail resume;
  if (!out_path.empty()) {
    const int fd = ::open(out_path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    std::string why;
    if (fd < 0 || !read_out_tail(fd, raw, &resume, &why) || ::dup2(fd, STDOUT_FILENO) < 0) {
      std::fprintf(stderr, "relay: --out %s: %s\n", out_path.c_str(), fd < 0 || why.empty() ? std::strerror(errno) : why.c_str());
      return 2;
    }
    ::close(fd);
  }
  // Printed into a file, a frame is acknowledged only once on the disk: the server
  // forgets what is acknowledged, and a power loss must not take events the file never
  // kept. A pipe or terminal is flushed only (what reads it decides).
  struct stat out_st {};
  const bool sync_out = ::fstat(STDOUT_FILENO, &out_st) == 0 && S_ISREG(out_st.st_mode);
  // The connect, the handshake and the subscription wait up to 5 s; the stream is read
  // in waits of 500 ms, to look at the stop flag, the pings and the report between.
  o.timeout_ms = 5000;
  o.interrupt = &stop_signal;
  constexpr int read_wait_ms = 500;
  const auto t_end = std::chrono::steady_clock::now() + std::chrono::milliseconds(int64_t(seconds * 1000));
  auto expired = [&] { return seconds > 0 && std::chrono::steady_clock::now() >= t_end; };
  uint64_t events = 0, frames = 0, lag_max_ns = 0, lag_n = 0;
  double lag_sum_ns = 0;  // (a backlog a year old passes 2^64 ns in 585 events)
  uint64_t behind = 0;  // events the latest frame said were past it
  auto last_report = std::chrono::steady_clock::now();
  // Every 5 s, events or not (a quiet stream reports its quiet too).
  const auto report = [&] {
    if (std::chrono::steady_clock::now() - last_report < std::chrono::seconds(5)) return;
    std::fprintf(stderr, "relay: %" PRIu64 " events in %" PRIu64 " frames; lag mean %.1f ms, max %.1f ms; behind %" PRIu64 "\n",
                 events, frames, lag_n ? lag_sum_ns / double(lag_n) / 1e6 : 0.0, double(lag_max_ns) / 1e6,
                 behind);
    lag_max_ns = lag_n = 0;
    lag_sum_ns = 0;
    last_report = std::chrono::steady_clock::now();
  };
  bool said_waiting = false;
  // The retry wait grows from 200 ms to 5 s while tries fail, and starts over once a
  // subscription stands; it is slept in steps so that SIGTERM still ends it at once.
  constexpr int retry_first_ms = 200, retry_max_ms = 5000;
  int retry_ms = retry_first_ms;
  auto retry_wait = [&] {
    for (int slept = 0; slept < retry_ms && !stop_flag.load() && !expired(); slept += 50) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      report();  // while the engine is away too
    }
    retry_ms = std::min(retry_ms * 2, retry_max_ms);
  };
  uint64_t printed_through = 0;  // the highest offset printed (0: none yet)
  uint64_t served_through = 0;   // the highest offset a written frame covered (filtered: past printed_through)
  uint64_t skipped = 0;          // events delivered again and not printed again
  std::deque<printed_event> printed;  // the latest printed, oldest first
  // Until the first subscription says where the stream resumes, the --out file's last
  // event counts as printed. Unnamed, the relay asks for that event again.
  bool resume_open = resume.last != 0;
  // Filtered, the file's last event tells only where the relay's own events ended: the
  // frames past it held none of them and were acknowledged. A named relay's first
  // subscription then resumes where it acknowledged, which is no gap it can tell from
  // one (before, every restart called those offsets never delivered).
  bool served_unknown =
      resume_open && !sub.name.empty() && (sub.types != 0 || !sub.accounts.empty() || !sub.gateways.empty());
  if (resume_open) {
    printed_through = served_through = resume.last;
    printed = std::move(resume.before);
    if (sub.name.empty()) served_through = resume.last - 1;
  }
  bool said_unchecked = false;        // told, since the last subscription, of events too old to check
  // The event the latest refused frame held damaged, and on how many connections in a row.
  constexpr int damaged_tries_max = 3;
  uint64_t damaged_at = 0;
  int damaged_tries = 0;
  while (!stop_flag.load() && !expired()) {
    std::string err;
    wire::protocol_error refusal{};
    auto c = wire::client::connect(o, &err, &refusal);
    if (!c) {
      if (refusal_final(refusal)) {
        std::fprintf(stderr, "relay: the server refused the connection: %s\n", err.c_str());
        return 2;
      }
      if (!said_waiting) std::fprintf(stderr, "relay: cannot connect (%s); retrying\n", err.c_str());
      said_waiting = true;
      retry_wait();
      continue;
    }
    said_waiting = false;
    // Unnamed, the server keeps no place for it: it asks for what follows the last
    // offset it was served.
    if (sub.name.empty() && served_through > 0) sub.from = served_through + 1;
    wire::subscribed_msg a;
    if (!c->subscribe(sub, &a, &err, &refusal)) {
      if (refusal_final(refusal)) {
        std::fprintf(stderr, "relay: subscription refused: %s\n", err.c_str());
        return 2;
      }
      std::fprintf(stderr, "relay: subscribe: %s; retrying\n", err.c_str());
      retry_wait();
      continue;
    }
    if (a.code != wire::result::ok) {
      // An engine just restarted may not have written again what it had served (a torn
      // tail cut, replayed later): wait for it. (A name an older session of this gateway
      // holds, one whose connection died unseen, is taken over: subscription_taken there.)
      // The operator's own --from past the end is a mistake, not that.
      if (a.code == wire::result::events_offset_ahead && !(served_through == 0 && sub.from != 0)) {
        std::fprintf(stderr, "relay: %s; waiting for the engine to write it again\n", a.message.c_str());
        retry_wait();
        continue;
      }
      // What passes with time: the subscriptions all taken (stale sessions of this gateway
      // after a network flap go at the server's idle timeout), or the name not saved (a
      // passing disk error) or the event writer failed (a restart mends it), or this
      // session's earlier Subscribe still waiting. (An engine without an event log,
      // events_unavailable, keeps none until it is started again otherwise: refused for
      // good, as before it was retried for ever.)
      if (a.code == wire::result::subscribers_full || a.code == wire::result::events_try_again ||
          a.code == wire::result::subscriber_busy) {
        std::fprintf(stderr, "relay: %s: %s; retrying\n", std::string(wire::result_name(a.code)).c_str(),
                     a.message.c_str());
        retry_wait();
        continue;
      }
      std::fprintf(stderr, "relay: subscription refused: %s: %s\n", std::string(wire::result_name(a.code)).c_str(),
                   a.message.c_str());
      return 2;
    }
    std::fprintf(stderr, "relay: subscribed from offset %" PRIu64 " (oldest kept %" PRIu64 ", end %" PRIu64 ")\n",
                 a.start, a.oldest, a.end);
    // The --out file's last event comes again (not acknowledged: perhaps not all its lines
    // were written): its lines are cut, to be written again whole.
    if (resume_open) {
      resume_open = false;
      if (a.start <= resume.last) {
        if (::ftruncate(STDOUT_FILENO, off_t(resume.last_at)) != 0 || ::fdatasync(STDOUT_FILENO) != 0) {
          std::fprintf(stderr, "relay: --out %s: cutting offset %" PRIu64 "'s lines: %s\n", out_path.c_str(),
                       resume.last, std::strerror(errno));
          return 3;
        }
        printed_through = served_through = resume.last - 1;
      } else if (raw) {
        // It stays: it can be checked as the ones before it are, should the engine (its
        // saved position behind what this run acknowledged) serve it again later. Before,
        // it was neither kept nor older than the kept ones: taken for a changed stream,
        // it and every event after it were written again.
        while (!printed.empty() && printed.back().offset >= resume.last_event.offset) printed.pop_back();
        printed.push_back(resume.last_event);
        if (printed.size() > printed_kept_max) printed.pop_front();
      }
      std::fprintf(stderr, "relay: --out %s holds events through offset %" PRIu64 "\n", out_path.c_str(), printed_through);
    }
    // Offsets past what it was served and before where this subscription starts were
    // never delivered to it (another consumer acknowledged them under this name while it
    // was away, or retention dropped them): said, not passed over in silence.
    // (Filtered, started on its file, it cannot tell: said as such, not as a gap.)
    if (served_unknown && a.start > served_through + 1)
      std::fprintf(stderr, "relay: offsets %" PRIu64 " to %" PRIu64 " held none of this relay's events when it acknowledged them before this start, or were never delivered to it (its --out file shows only where its own events end)\n",
                   served_through + 1, a.start - 1);
    else if (!served_unknown && served_through > 0 && a.start > served_through + 1)
      std::fprintf(stderr, "relay: offsets %" PRIu64 " to %" PRIu64 " were never delivered to this relay (acknowledged under its name by another consumer, or dropped by the engine's retention)\n",
                   served_through + 1, a.start - 1);
    if (served_unknown) served_through = std::max(served_through, a.start - 1);
    served_unknown = false;
    said_unchecked = false;
    behind = a.end > a.start ? a.end - a.start : 0;
    c->set_timeout_ms(read_wait_ms);
    auto last_sent = std::chrono::steady_clock::now();
    // Events are handed out a block at a time (the relay never holds a frame's worth).
    // With --account, the lines of those accounts alone: a transfer from 42 to 7 tells
    // 42's relay of 42's side, not 7's (each line begins with whom it is for).
    const auto for_filter = [&](const std::string& line) {
      if (sub.accounts.empty() || line.rfind("account ", 0) != 0) return true;
      const uint64_t id = std::strtoull(line.c_str() + 8, nullptr, 10);
      return std::find(sub.accounts.begin(), sub.accounts.end(), id) != sub.accounts.end();
    };
    uint64_t in_frame = 0;
    bool cut = false;  // stopping cut the frame short: only what was printed is acknowledged
    const wire::event_visitor each = [&](std::span<const wire::event> block) {
      const uint64_t now = wall_ns();
      for (const auto& e : block) {
        if (stop_flag.load()) {  // stopping: nothing more printed (a write may be stalled)
          cut = true;
          return;
        }
        if (e.offset <= printed_through) {  // printed before a reconnect, not acknowledged then
          const auto at = std::lower_bound(printed.begin(), printed.end(), e.offset,
                                           [](const printed_event& p, uint64_t off) { return p.offset < off; });
          const bool kept = at != printed.end() && at->offset == e.offset;
          const bool older = printed.empty() || e.offset < printed.front().offset;
          if (kept && at->lsn == e.lsn && at->id_lo == e.id.lo && at->id_hi == e.id.hi) {
            ++skipped;
            continue;
          }
          if (older) {
            if (!said_unchecked)
              std::fprintf(stderr, "relay: events from offset %" PRIu64 " come again, older than the %zu it can check; not printed again\n",
                           e.offset, printed.size());
            said_unchecked = true;
            ++skipped;
            continue;
          }
          // Not what was printed at this offset (or an offset it never printed): the
          // engine's stream is not the one the relay read. It counts from here.
          std::fprintf(stderr, "relay: offset %" PRIu64 " is not the event printed there before; the stream changed, printing from here\n",
                       e.offset);
          while (!printed.empty() && printed.back().offset >= e.offset) printed.pop_back();
          served_through = e.offset - 1;
        }
        printed_through = e.offset;
        printed.push_back({e.offset, e.lsn, e.id.lo, e.id.hi});
        if (printed.size() > printed_kept_max) printed.pop_front();
        ++in_frame;
        const uint64_t lag = now > e.timestamp ? now - e.timestamp : 0;
        lag_max_ns = std::max(lag_max_ns, lag);
        lag_sum_ns += double(lag);
        ++lag_n;
        if (raw) {
          std::printf("%" PRIu64 " %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                      " %u %u\n",
                      e.offset, unsigned(e.type), e.lsn, e.id.lo, e.id.hi, e.account_a, e.account_b, e.amount, e.ref.lo,
                      unsigned(e.code), unsigned(e.gateway));
        } else {
          for (const auto& line : messages(e))
            if (for_filter(line))
              std::printf("%s [offset %" PRIu64 ", lag %.1f ms]\n", line.c_str(), e.offset, double(lag) / 1e6);
        }
      }
    };
    for (;;) {
      if (stop_flag.load() || expired()) break;
      report();
      wire::events_msg m;
      refusal = {};
      in_frame = 0;
      cut = false;
      const bool took = c->next_events(&m, each, &err, &refusal);
      // Acknowledged only once written: events stdout did not take (a full disk, a closed
      // pipe) are not acknowledged, and the relay stops. What a refused frame handed out
      // before its damaged event was printed too, and counts.
      // Stopped while a write waited for a reader that does not read (interrupted): what
      // is still buffered is dropped (flushing it would wait again, at exit too), the frame
      // not acknowledged.
      const bool interrupted = stop_flag.load() && in_frame > 0 &&
                               (std::ferror(stdout) || (std::fflush(stdout) != 0 && errno == EINTR));
      if (interrupted) {
        __fpurge(stdout);
        std::fprintf(stderr, "relay: stopped while writing the events; their frame is not acknowledged\n");
        break;
      }
      if (in_frame > 0 && (std::fflush(stdout) != 0 || std::ferror(stdout))) {
        std::fprintf(stderr, "relay: writing the events failed (%s); not acknowledged\n", std::strerror(errno));
        return 3;
      }
      if (in_frame > 0 && sync_out && ::fdatasync(STDOUT_FILENO) != 0) {
        std::fprintf(stderr, "relay: syncing the events to disk failed (%s); not acknowledged\n", std::strerror(errno));
        return 3;
      }
      events += in_frame;
      if (!took) {
        if (c->timed_out()) {
          const auto now = std::chrono::steady_clock::now();
          const auto keepalive = std::chrono::seconds(keepalive_s);
          if (now - c->last_heard() >= 3 * keepalive) {
            std::fprintf(stderr, "relay: nothing from the server for %d s; reconnecting\n", 3 * keepalive_s);
            break;
          }
          // Checked at each receive timeout (every 500 ms): a ping is due half a second
          // early rather than late.
          const auto due = keepalive - std::chrono::milliseconds(read_wait_ms);
          if (now - last_sent >= due && now - c->last_heard() >= due) {
            if (!c->ping(&err)) {
              std::fprintf(stderr, "relay: ping: %s; reconnecting\n", err.c_str());
              break;
            }
            last_sent = now;
          }
          continue;
        }
        if (refusal_final(refusal)) {
          std::fprintf(stderr, "relay: %s; stopping\n", err.c_str());
          return 2;
        }
        // An event that fails its CRC (damaged between the engine's event log and here)
        // is asked for again on a new connection; the same one damaged on every try is
        // not passing damage, and waiting would not mend it.
        if (m.damaged != 0) {
          damaged_tries = m.damaged == damaged_at ? damaged_tries + 1 : 1;
          damaged_at = m.damaged;
          if (damaged_tries >= damaged_tries_max) {
            std::fprintf(stderr,
                         "relay: %s; event %" PRIu64 " came damaged on %d connections in a row; stopping (its frame "
                         "is not acknowledged)\n",
                         err.c_str(), damaged_at, damaged_tries);
            return 2;
          }
        }
        std::fprintf(stderr, "relay: %s; reconnecting\n", err.c_str());
        break;
      }
      if (m.next > damaged_at) damaged_tries = 0;  // past it, whole
      ++frames;
      // A frame cut short by a stop is acknowledged up to its last event printed (none
      // printed: not at all); before, the whole frame was, the rest of it never printed.
      const uint64_t through = !cut ? (m.next > 1 ? m.next - 1 : 0) : in_frame > 0 ? printed_through : 0;
      if (through > 0) served_through = std::max(served_through, through);
      if (through > 0 && !c->ack(through, &err)) {
        std::fprintf(stderr, "relay: ack: %s; reconnecting\n", err.c_str());
        break;
      }
      // The operator's --from picks the start of a name that has none, or moves one that
      // retention passed, until the name has an acknowledgement of its own: sent again at
      // every reconnect, it would move the name past events still kept whenever retention
      // passed its place while the relay was away.
      if (through > 0 && !sub.name.empty()) sub.from = 0;
      if (cut) break;
      // The wait starts over once a subscription delivers: one that stands and then fails
      // the same way each time (its events unreadable, its acks refused) is tried again
      // ever more slowly, not five times a second for good.
      retry_ms = retry_first_ms;
      last_sent = std::chrono::steady_clock::now();
      behind = m.end > m.next ? m.end - m.next : 0;
    }
    if (!stop_flag.load() && !expired()) retry_wait();
  }
  std::fprintf(stderr, "relay: stopped after %" PRIu64 " events (%" PRIu64 " delivered again, not printed again)\n",
               events, skipped);
  return 0;
}
