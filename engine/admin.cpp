#include "engine/admin.hpp"

#include <pthread.h>

#include <atomic>
#include <caf/all.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "actors/customers.hpp"
#include "actors/market.hpp"
#include "actors/trading.hpp"
#include "engine/events.hpp"
#include "storage/audit_log.hpp"

namespace mesob::engine {

namespace {

using wire::admin_code;
using wire::admin_column;
using wire::admin_response_msg;
using wire::admin_section;

// A command handed to the admin actor. A job dropped unanswered (the actor stopped)
// still answers, so the session's command does not stay in flight.
struct admin_job {
  admin_identity who;
  wire::admin_request_msg req;
  admin_reply reply;
  admin_job(admin_identity w, wire::admin_request_msg r, admin_reply f)
      : who(std::move(w)), req(std::move(r)), reply(std::move(f)) {}
  admin_job(const admin_job&) = delete;
  admin_job& operator=(const admin_job&) = delete;
  void answer(admin_response_msg&& m) {
    if (!reply) return;
    auto f = std::move(reply);
    reply = nullptr;
    f(std::move(m));
  }
  ~admin_job() {
    if (!reply) return;
    admin_response_msg m;
    m.code = admin_code::refused;
    m.message = "the admin endpoint is stopping";
    answer(std::move(m));
  }
};

}  // namespace
}  // namespace mesob::engine

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<mesob::engine::admin_job>)

namespace mesob::engine {

namespace {

constexpr size_t trail_show_default = 20;
constexpr size_t response_bytes_max = 512 * 1024;  // half the default frame limit
constexpr size_t history_rows = 10;  // recent transfers shown with an account
constexpr size_t group_rows_max = 1024;  // seats, rounds and payments owed shown with a group (each)

admin_response_msg answer(admin_code c, std::string message) {
  admin_response_msg m;
  m.code = c;
  m.message = std::move(message);
  return m;
}

std::string id_text(const wire::id128& id) {
  if (id.hi == 0) return std::to_string(id.lo);
  char buf[40];
  std::snprintf(buf, sizeof buf, "0x%016" PRIx64 "%016" PRIx64, id.hi, id.lo);
  return buf;
}

// Decimal (up to 2^64 - 1), or 0x and up to 32 hex digits (the high half first).
bool parse_id128(const std::string& s, wire::id128* out) {
  *out = {};
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    const std::string hex = s.substr(2);
    if (hex.empty() || hex.size() > 32) return false;
    unsigned __int128 v = 0;
    for (const char c : hex) {
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else return false;
      v = v << 4 | unsigned(d);
    }
    out->lo = uint64_t(v);
    out->hi = uint64_t(v >> 64);
    return !out->zero();
  }
  if (s.empty() || s.size() > 20) return false;
  unsigned __int128 v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + unsigned(c - '0');
  }
  if (v > UINT64_MAX || v == 0) return false;
  out->lo = uint64_t(v);
  return true;
}

bool parse_u64(const std::string& s, uint64_t* out) {
  if (s.empty() || s.size() > 20) return false;
  unsigned __int128 v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + unsigned(c - '0');
  }
  if (v > UINT64_MAX) return false;
  *out = uint64_t(v);
  return true;
}

std::string kind_name(uint16_t k) {
  switch (wire::account_kind(k)) {
    case wire::account_kind::customer_wallet: return "customer_wallet";
    case wire::account_kind::group_escrow: return "group_escrow";
    case wire::account_kind::gateway_settlement: return "gateway_settlement";
    case wire::account_kind::fee: return "fee";
    case wire::account_kind::system: return "system";
  }
  return std::to_string(k);
}

std::string status_text(uint16_t s) {
  switch (wire::account_status(s)) {
    case wire::account_status::open: return "open";
    case wire::account_status::frozen: return "frozen";
    case wire::account_status::closed: return "closed";
  }
  return std::to_string(s);
}

std::string account_flags_text(uint16_t f) {
  std::string out;
  auto add = [&](const char* n) { out += (out.empty() ? "" : ",") + std::string(n); };
  if (f & wire::account_flags::debits_must_not_exceed_credits) add("debits_must_not_exceed_credits");
  if (f & wire::account_flags::credits_must_not_exceed_debits) add("credits_must_not_exceed_debits");
  return out.empty() ? "none" : out;
}

std::string transfer_flags_text(uint16_t f) {
  std::string out;
  auto add = [&](const char* n) { out += (out.empty() ? "" : ",") + std::string(n); };
  if (f & wire::transfer_flags::linked) add("linked");
  if (f & wire::transfer_flags::pending) add("pending");
  if (f & wire::transfer_flags::post_pending) add("post_pending");
  if (f & wire::transfer_flags::void_pending) add("void_pending");
  return out.empty() ? "none" : out;
}

// UTC, ISO 8601 with milliseconds.
std::string utc_text(uint64_t unix_ns) {
  const time_t secs = time_t(unix_ns / 1'000'000'000);
  tm t{};
  gmtime_r(&secs, &t);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday,
                t.tm_hour, t.tm_min, t.tm_sec, unsigned(unix_ns / 1'000'000 % 1000));
  return buf;
}

// A signed duration in seconds, to the millisecond ("+3600.000 s").
std::string signed_seconds(int64_t ns) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%+.3f s", double(ns) * 1e-9);
  return buf;
}

uint64_t unix_now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
}

// Audit fields are tab-separated: a tab or control byte in them (never from the wire,
// which refuses them) is shown as '?'.
std::string field(std::string s) {
  for (auto& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// A section of one row, built column by column.
struct row_builder {
  admin_section sec;
  explicit row_builder(std::string title) {
    sec.title = std::move(title);
    sec.rows.emplace_back();
  }
  row_builder& text(const std::string& name, std::string v) {
    sec.columns.push_back({name, false});
    sec.rows[0].push_back(std::move(v));
    return *this;
  }
  row_builder& num(const std::string& name, uint64_t v) {
    sec.columns.push_back({name, true});
    sec.rows[0].push_back(std::to_string(v));
    return *this;
  }
  // plus - minus, signed (no wrap when minus is the larger).
  row_builder& difference(const std::string& name, uint64_t plus, uint64_t minus) {
    sec.columns.push_back({name, true});
    sec.rows[0].push_back(plus >= minus ? std::to_string(plus - minus) : "-" + std::to_string(minus - plus));
    return *this;
  }
};

}  // namespace

class admin_impl {
 public:
  struct command_def {
    const char* name;
    const char* arguments;
    const char* summary;
    size_t args_min, args_max;
    admin_response_msg (admin_impl::*run)(const std::vector<std::string>& args);
  };

  engine& eng_;
  admin_config cfg_;
  std::unique_ptr<storage::audit_log> trail_;  // null when it cannot be opened (trail_error_)
  std::string trail_error_;
  std::chrono::steady_clock::time_point trail_tried_{};  // the last open tried (execute)
  std::atomic<bool> stopping_{false};  // set before the actor is told to exit
  std::mutex mu_;  // one command at a time, and the samples below
  const server* clients_ = nullptr;
  const server* admin_port_ = nullptr;
  caf::actor actor_;
  caf::actor long_actor_;  // the long lane (is_long)
  // Throughput now: a sample of the counters each second (the actor's tick).
  struct sample {
    std::chrono::steady_clock::time_point t;
    uint64_t transfers = 0, requests = 0;
  };
  sample samples_[2];

  admin_impl(engine& e, admin_config cfg) : eng_(e), cfg_(std::move(cfg)) {}

  static const std::vector<command_def>& commands() {
    static const std::vector<command_def> defs = {
        {"commands", "", "every command, its arguments and what it does", 0, 0, &admin_impl::cmd_commands},
        {"status", "", "engine status: version, uptime, shards, sessions, log and snapshot position, throughput now",
         0, 0, &admin_impl::cmd_status},
        {"shards", "", "per shard: accounts, pending transfers, queue depth, batches executed", 0, 0,
         &admin_impl::cmd_shards},
        {"sessions", "[from=<session-id>]",
         "open connections: the admin port's, then the client port's (by session id, those still in their handshake "
         "first; a page from an id on): gateway, peer, age, requests",
         0, 1, &admin_impl::cmd_sessions},
        {"gateways", "",
         "the gateways that may connect (config file and registry): rail, priority, roles, settlement accounts, "
         "open sessions (never secrets)",
         0, 0, &admin_impl::cmd_gateways},
        {"gateway register", "<gateway-id> <rail> <priority> <roles> <CUR=settlement-account>... [timeout_ms=N]",
         "register a payment gateway (rail: mobile_money, card, bank; lower priority is tried first; roles without "
         "admin, its payments covering its deposits and payout answers, ledger the rest; payout answer timeout, default 30000 ms); absent settlement accounts are created; prints its new "
         "secret once",
         5, 5 + wire::gateway_currencies_max, &admin_impl::cmd_gateway_register},
        {"gateway update", "<gateway-id> <rail> <priority> <roles> <CUR=settlement-account>... [timeout_ms=N]",
         "change a registered gateway's rail, priority, roles, currencies (the list is replaced) and answer timeout "
         "(kept unless given)",
         5,
         5 + wire::gateway_currencies_max, &admin_impl::cmd_gateway_update},
        {"gateway recon", "<gateway-id> [YYYY-MM-DD]",
         "reconciliation per UTC day and currency: deposits, payouts settled, failed, cancelled, overpaid (counts and sums), "
         "and the payouts pending and dead-lettered on it now (by the day they were made); every day, or one",
         1, 2, &admin_impl::cmd_gateway_recon},
        {"gateway secret", "<gateway-id>", "give a registered gateway a new secret (printed once); sessions opened with the old one close at their next frame",
         1, 1, &admin_impl::cmd_gateway_secret},
        {"gateway disable", "<gateway-id>", "no new sessions or deposits for a registered gateway; its open sessions close at their next frame", 1, 1,
         &admin_impl::cmd_gateway_disable},
        {"gateway enable", "<gateway-id>", "let a disabled gateway connect and deposit again", 1, 1,
         &admin_impl::cmd_gateway_enable},
        {"account show", "<account-id>", "an account's balances and status, and its latest transfers", 1, 1,
         &admin_impl::cmd_account_show},
        {"account freeze", "<account-id> [seq]",
         "freeze an account: no transfer may debit or credit it (seq: the account's next status change, account "
         "show's status_seq + 1; the same seq again is answered as the first, a change made since refused)",
         1, 2, &admin_impl::cmd_account_freeze},
        {"account unfreeze", "<account-id> [seq]", "reopen a frozen account (seq as for account freeze)", 1, 2,
         &admin_impl::cmd_account_unfreeze},
        {"payouts", "[all] [limit] [from=<payout-id>]",
         "payouts the desks hold: counts by state per currency, every breaker (phase, counters), and the dead "
         "letters and refused settlements (all: every payout held), in id order from the given id (default limit "
         "100; the answer names the id to go on from)",
         0, 3, &admin_impl::cmd_payouts},
        {"payout show", "<payout-id>", "one payout: wallet, amount, state, its attempts (gateway, time)", 1, 1,
         &admin_impl::cmd_payout_show},
        {"payout retry", "<payout-id> [force]",
         "route a dead letter again from the first gateway (or post again a settlement the ledger refused); "
         "'force' when a gateway it was sent to never answered (check with it first: it may have paid)", 1, 2,
         &admin_impl::cmd_payout_retry},
        {"payout cancel", "<payout-id> [force]",
         "void a dead letter's hold: the money goes back to the wallet; 'force' when a gateway it was sent to never "
         "answered (check with it first: it may have paid)", 1, 2, &admin_impl::cmd_payout_cancel},
        {"order show", "<order-id>",
         "one order: wallet, instrument, side, quantity, limit, what it filled and holds, state, its way to a broker "
         "(waiting, sent, working, dead letter and why, halted), attempts",
         1, 1, &admin_impl::cmd_order_show},
        {"portfolio show", "<wallet-id>",
         "a wallet's positions: per instrument the units held, reserved by open sells, to come from open buys, and "
         "their cost basis",
         1, 1, &admin_impl::cmd_portfolio_show},
        {"brokers", "",
         "every shard's circuit breaker for each broker it sent orders to: phase, trips, orders sent, answered, "
         "answer timeouts, open until",
         0, 0, &admin_impl::cmd_brokers},
        {"order retry", "<order-id> [force]",
         "route a dead letter again from the first broker; one a broker was sent and never answered may be traded "
         "there: refused unless force (the operator checked with its brokers)",
         1, 2, &admin_impl::cmd_order_retry},
        {"order cancel", "<order-id>",
         "cancel an open order (as its customer may): one never sent closes at once; otherwise its brokers are told "
         "and it closes when the broker confirms or after the grace, taking the fills made meanwhile",
         1, 1, &admin_impl::cmd_order_cancel},
        {"group show", "<group-id>",
         "an equb group: config, phase, round, escrow (and what its account holds), seats, paid-out rounds, "
         "payments it still owes",
         1, 1, &admin_impl::cmd_group_show},
        {"group retry", "<group-id>",
         "send again the payments of an equb group the ledger refused (after their account was unfrozen or "
         "replaced)",
         1, 1, &admin_impl::cmd_group_retry},
        {"group replace", "<group-id> <account-id> <new-account-id>",
         "put another account wherever an equb group names one (its fee, guarantor or organizer account, a seat's "
         "wallet, a debt's creditor, its refused payments): how a group gets past a closed account; then group retry",
         3, 3, &admin_impl::cmd_group_replace},
        {"group write-off", "<group-id> <seat> <amount>",
         "write off all the debts of a seat of an ended equb group (a member who will never pay; amount: the seat's "
         "debt as group show gives it): its creditors are never paid them, and the group can retire",
         3, 3, &admin_impl::cmd_group_write_off},
        {"instruments", "[from=<instrument-id>]",
         "every instrument in id order (from that id): symbol, class, currency, tick, lot, last price, halt reasons",
         0, 1, &admin_impl::cmd_instruments},
        {"instrument show", "<instrument-id>", "one instrument: its definition, halt rules, last price and state", 1, 1,
         &admin_impl::cmd_instrument_show},
        {"instrument define",
         "<instrument-id> <symbol> <class> <currency> <tick> <lot> <move_bp> <window_ms> <stale_ms> <halt_ms>",
         "list an instrument (class: cash_like, bond, equity, fund; tick: minor units per tick per unit)", 10, 10,
         &admin_impl::cmd_instrument_define},
        {"instrument halt", "<instrument-id>", "halt trading in an instrument until an operator resumes it", 1, 1,
         &admin_impl::cmd_instrument_halt},
        {"instrument resume", "<instrument-id>",
         "lift a halt by hand or for a price move (a stale price is lifted only by a new price)", 1, 1,
         &admin_impl::cmd_instrument_resume},
        {"instrument resequence", "<instrument-id> <sequence>",
         "count an instrument's price sequence from here: the feed's next price must be greater (0: any); for a "
         "feed that started its sequence again or sent one far ahead",
         2, 2, &admin_impl::cmd_instrument_resequence},
        {"policy", "", "the KYC tiers (limits per currency) and risk profiles (asset classes, largest position)", 0, 0,
         &admin_impl::cmd_policy},
        {"tier set", "<tier> <currency> <single_max> <daily_outflow_max> <balance_max>",
         "set a KYC tier's limits in a currency (minor units); the ledger enforces them from now on", 5, 5,
         &admin_impl::cmd_tier_set},
        {"profile set", "<conservative|moderate|aggressive> <class,...> <position_max>",
         "set a risk profile's asset classes (cash_like, bond, equity, fund) and largest position per instrument", 3,
         3, &admin_impl::cmd_profile_set},
        {"model set", "<conservative|moderate|aggressive> <instrument-id> <weight_bp>",
         "set an instrument's target weight (basis points; 0 removes it) in a risk profile's model portfolio, which "
         "rebalancing aims at (the instrument listed, its class among the profile's)",
         3, 3, &admin_impl::cmd_model_set},
        {"customer show", "<wallet-id>", "a customer's KYC status, tier, risk profile, outflow today and KYC sequence", 1, 1,
         &admin_impl::cmd_customer_show},
        {"customer resequence", "<wallet-id> <sequence>",
         "count a customer's KYC record sequence from here: the provider's next record must be greater (0: any); "
         "for a provider that started its count again or sent one far ahead",
         2, 2, &admin_impl::cmd_customer_resequence},
        {"transfer show", "<transfer-id>", "a recorded transfer and its outcome (id: decimal, or 0x and hex)", 1, 1,
         &admin_impl::cmd_transfer_show},
        {"events", "[from-name]",
         "the sessions subscribed to the event stream (lag: events written and not acknowledged), and the named "
         "subscribers kept with the gateway each belongs to, in name order from from-name (an answer holds a few "
         "thousand: ask again from the last shown)",
         0, 1, &admin_impl::cmd_events},
        {"events forget", "<name>",
         "drop a named subscriber no session holds: its acknowledged offset and owner go, and any gateway may take "
         "the name again",
         1, 1, &admin_impl::cmd_events_forget},
        {"snapshot", "", "take a snapshot now", 0, 0, &admin_impl::cmd_snapshot},
        {"log verify", "", "verify the log's checksums, lsn sequence and hash chain up to the durable lsn", 0, 0,
         &admin_impl::cmd_log_verify},
        {"audit", "", "check the ledger: per currency, debits equal credits, posted and pending; every equb group's escrow holds what the group says; every payout account holds its desk's payouts", 0, 0,
         &admin_impl::cmd_audit},
        {"audit trail", "[count]", "the latest admin commands with who issued them (default 20, at most 1024)", 0, 1,
         &admin_impl::cmd_audit_trail},
        {"shutdown", "", "drain (answer what was taken), snapshot and stop the engine", 0, 0,
         &admin_impl::cmd_shutdown},
    };
    return defs;
  }

  // The command whose name is the longest run of leading words, and the rest as its
  // arguments; nullptr when no command matches.
  static const command_def* resolve(const wire::admin_request_msg& req, std::vector<std::string>* args) {
    std::vector<std::string> words = split_words(req.command);
    words.insert(words.end(), req.args.begin(), req.args.end());
    const command_def* best = nullptr;
    size_t best_words = 0;
    for (const auto& d : commands()) {
      const auto name = split_words(d.name);
      if (name.size() > words.size() || name.size() <= best_words) continue;
      if (std::equal(name.begin(), name.end(), words.begin())) {
        best = &d;
        best_words = name.size();
      }
    }
    if (best) args->assign(words.begin() + ptrdiff_t(best_words), words.end());
    return best;
  }

  std::string audit_entry(const admin_identity& who, const std::string& event, const std::string& line) {
    return std::to_string(unix_now_ns()) + "\t" + field(who.gateway) + "\t" + std::to_string(who.session_id) +
           "\t" + field(who.peer) + "\t" + event + "\t" + field(line);
  }

  // Commands that may take long: `log verify` reads the whole log, `snapshot` writes one,
  // `audit` has every shard add up every account. They run on the long lane, an actor of
  // their own, one at a time, so that every other operator's commands (and the status
  // samples) are not held behind them; another one while one runs is refused, naming it.
  static bool is_long(const command_def* d) {
    return d && (d->run == &admin_impl::cmd_snapshot || d->run == &admin_impl::cmd_log_verify ||
                 d->run == &admin_impl::cmd_audit);
  }
  // A long command the admin actor began (its "issued" entry written) for the long lane.
  struct long_work {
    const command_def* d = nullptr;
    std::vector<std::string> args;
    admin_identity who;
    std::string line;
  };
  std::string long_running_;  // (mu_) what the long lane runs, for a refusal to name; empty: idle

  // Runs one command with its audit entries. *shutdown: it was `shutdown`, answered ok.
  // A long command is not run here: *deferred gets it (its "issued" entry written, the
  // lane taken) and the answer is empty; the caller hands it to the long lane
  // (finish_long).
  admin_response_msg execute(const admin_identity& who, const wire::admin_request_msg& req, bool* shutdown,
                             std::optional<long_work>* deferred) {
    std::lock_guard lk(mu_);
    *shutdown = false;
    // A trail that could not be opened is tried again at each command: one an operator
    // repaired or moved aside serves from the next command on, without a restart.
    if (!trail_ && std::chrono::steady_clock::now() - trail_tried_ >= std::chrono::seconds(1)) {
      trail_tried_ = std::chrono::steady_clock::now();  // (at most once a second: an open reads the trail)
      std::string repaired;
      trail_ = storage::audit_log::open(cfg_.data_dir + "/admin-audit.log", &trail_error_, &repaired);
      if (trail_)
        std::fprintf(stderr, "mesobd: admin audit trail opened%s%s: admin commands run again\n",
                     repaired.empty() ? "" : ": ", repaired.c_str());
    }
    if (!trail_)
      return answer(admin_code::failed, "not run: the audit trail cannot be opened (" + trail_error_ +
                                            "); no admin command runs until it can (it is tried again at commands, at most once a second)");
    const std::string line = command_line(req);
    std::string err;
    if (!trail_->append(audit_entry(who, "issued", line), &err))
      return answer(admin_code::failed, "not run: the audit trail cannot record it (" + err + ")");
    std::vector<std::string> args;
    admin_response_msg out;
    const command_def* d = check(req, &args, &out);
    if (is_long(d) && !long_running_.empty()) {
      out = answer(admin_code::refused, "not run: " + long_running_ +
                                            " has not answered yet, and one long command (snapshot, log verify, "
                                            "audit) runs at a time: ask again when it has answered");
      d = nullptr;
    } else if (is_long(d)) {
      long_running_ = "`" + line + "` (issued by " + who.gateway + ", session " + std::to_string(who.session_id) + ")";
      *deferred = long_work{d, std::move(args), who, line};
      return {};
    }
    if (d) out = run_caught(d, args);
    return outcome(who, line, std::move(out), shutdown, d);
  }

  // The long lane's part: runs the command execute deferred, without holding the
  // commands' lock (not when the endpoint began to stop since: refused), then records its
  // outcome and frees the lane.
  admin_response_msg finish_long(const long_work& w) {
    admin_response_msg out = stopping_.load() ? answer(admin_code::refused, "the admin endpoint is stopping")
                                              : run_caught(w.d, w.args);
    bool shutdown = false;
    std::lock_guard lk(mu_);
    long_running_.clear();
    return outcome(w.who, w.line, std::move(out), &shutdown, w.d);
  }

  admin_response_msg run_caught(const command_def* d, const std::vector<std::string>& args) {
    try {
      return (this->*(d->run))(args);
    } catch (const std::exception& e) {  // (bad_alloc): an answer and an outcome entry, and the port goes on
      return answer(admin_code::failed, std::string("the command failed: ") + e.what());
    }
  }

  // Fits an answer to a frame and appends its outcome entry (mu_ held).
  admin_response_msg outcome(const admin_identity& who, const std::string& line, admin_response_msg out,
                             bool* shutdown, const command_def* d) {
    fit(out);
    std::string err;
    if (!trail_->append(audit_entry(who, std::string(wire::admin_code_name(out.code)), line), &err))
      out.message += (out.message.empty() ? "" : "; ") + std::string("the audit trail could not record the outcome (") +
                     err + ")";
    *shutdown = out.code == admin_code::ok && d && d->run == &admin_impl::cmd_shutdown;
    return out;
  }

  // `text` (printable UTF-8, as every request's words are) cut to at most `max` bytes and
  // "..." when longer: cut before a character, never inside one.
  static std::string cut_text(std::string text, size_t max) {
    if (text.size() <= max) return text;
    size_t at = max;
    while (at > 0 && (uint8_t(text[at]) & 0xC0) == 0x80) --at;  // a continuation byte
    text.resize(at);
    return text + "...";
  }

  static std::string command_line(const wire::admin_request_msg& req) {
    std::string line = req.command;
    for (const auto& a : req.args) line += " " + a;
    return cut_text(std::move(line), 1024);
  }

  // What a row costs an answer's budget (its cells and their framing, generously).
  static size_t row_bytes(const std::vector<std::string>& row) {
    size_t n = 16;
    for (const auto& c : row) n += c.size() + 8;
    return n;
  }

  // An answer must fit one frame: at most admin_rows_max rows and response_bytes_max of
  // text; rows past either are dropped, and the message says so. `reserve`: bytes kept
  // for what the caller adds to the message after (fitted again, it then cuts nothing).
  // Once a section is cut, the sections after it show no rows (an answer is a prefix).
  static void fit(admin_response_msg& m, size_t reserve = 0) {
    size_t rows = 0, bytes = m.message.size() + reserve;
    bool cut = false;
    for (auto& sec : m.sections) {
      if (cut) {
        sec.rows.clear();
        continue;
      }
      for (size_t i = 0; i < sec.rows.size(); ++i) {
        const size_t row_bytes = admin_impl::row_bytes(sec.rows[i]);
        if (rows + 1 > wire::admin_rows_max || bytes + row_bytes > response_bytes_max) {
          sec.rows.resize(i);
          cut = true;
          break;
        }
        ++rows;
        bytes += row_bytes;
      }
    }
    if (cut) m.message += (m.message.empty() ? "" : "; ") + std::string("only the first ") + std::to_string(rows) +
                          " rows are shown";
  }

  // The command a request names, its arguments checked (into *args); nullptr with *bad
  // set when there is no such command or the arguments do not fit it.
  const command_def* check(const wire::admin_request_msg& req, std::vector<std::string>* args,
                           admin_response_msg* bad) {
    const command_def* d = resolve(req, args);
    if (!d) {
      std::string known, typed = req.command;
      for (const auto& a : req.args) typed += " " + a;
      typed = cut_text(std::move(typed), 80);
      const auto first = split_words(req.command);
      for (const auto& c : commands())
        if (!first.empty() && split_words(c.name)[0] == first[0]) known += std::string(known.empty() ? "" : ", ") + c.name;
      *bad = answer(admin_code::command_unknown,
                    "unknown command '" + typed + "'" +
                        (known.empty() ? "; `commands` lists them" : "; did you mean: " + known));
      return nullptr;
    }
    if (args->size() < d->args_min || args->size() > d->args_max) {
      *bad = answer(admin_code::arguments_invalid,
                    std::string(d->name) + " takes " +
                        (d->args_max == 0 ? std::string("no arguments")
                                          : std::string("arguments: ") + d->arguments) +
                        "; got " + std::to_string(args->size()));
      return nullptr;
    }
    return d;
  }

  // ---- commands ----------------------------------------------------------------------

  admin_response_msg cmd_commands(const std::vector<std::string>&) {
    admin_response_msg m;
    admin_section s;
    s.title = "commands";
    s.columns = {{"command", false}, {"arguments", false}, {"summary", false}};
    for (const auto& d : commands()) s.rows.push_back({d.name, d.arguments, d.summary});
    m.sections.push_back(std::move(s));
    return m;
  }

  admin_response_msg cmd_status(const std::vector<std::string>&) {
    const auto st = eng_.stats();
    const auto now = std::chrono::steady_clock::now();
    const server_stats cs = clients_ ? clients_->stats() : server_stats{};
    const server_stats as = admin_port_ ? admin_port_->stats() : server_stats{};
    // Rates over the last one to two seconds: from the older kept sample to now.
    const sample& base = samples_[0].t.time_since_epoch().count() ? samples_[0] : samples_[1];
    double tps = 0, rps = 0;
    if (base.t.time_since_epoch().count()) {
      const double dt = std::chrono::duration<double>(now - base.t).count();
      if (dt > 0) {
        tps = double(st.transfers - base.transfers) / dt;
        rps = double(cs.requests - base.requests) / dt;
      }
    }
    row_builder r("engine");
    r.text("version", version)
        .num("uptime_s", uint64_t(std::chrono::duration_cast<std::chrono::seconds>(now - cfg_.started).count()))
        .num("shards", eng_.shards())
        .num("sessions", cs.sessions_open)
        .num("admin_sessions", as.sessions_open)
        .num("requests_total", cs.requests)
        .num("requests_per_s", uint64_t(rps + 0.5))
        .num("transfers_per_s", uint64_t(tps + 0.5))
        .num("accounts", st.accounts)
        .num("transfers", st.transfers)
        .num("transfers_max", st.transfers_max)
        .num("pending", st.pending_open)            // still pending (what pending_max bounds)
        .num("pending_resident", st.pending_tracked)  // with those resolved since the last snapshot
        .text("clock", st.clock_skew_ns == 0
                           ? "follows the wall clock"
                           : "runs on its own: the wall clock stepped " + signed_seconds(st.clock_skew_ns) + " from it")
        .num("clock_steps", st.clock_steps)
        .num("lsn_durable", st.lsn_durable)
        .num("snapshot_lsn", st.snapshot_lsn)
        .text("last_snapshot", st.snapshot_unix_ns ? utc_text(st.snapshot_unix_ns) : "none since start")
        .num("checkpoints", st.checkpoints)
        .num("checkpoint_failures", st.checkpoint_failures)
        .text("checkpoint_failed_last", st.checkpoint_failures ? st.checkpoint_error_last : "none since start")
        .num("records_flush_failures", st.records_flush_failures)
        .num("snapshot_rows_unreadable", st.snapshot_rows_unreadable)
        .text("writes", st.writes_refused ? "refused until restart (storage failed: " + st.writes_refused_why + ")"
                                          : "accepted")
        .num("log_kept_mib", st.log_kept_bytes >> 20)
        .num("log_kept_max_mib", st.log_kept_max_bytes >> 20)
        .num("log_groups", st.wal_groups)
        .num("log_bytes", st.wal_bytes)
        .num("log_segments_deleting", st.wal_segments_deleting)
        .num("memory_bytes", st.memory_bytes_shards + st.memory_bytes_window + st.memory_bytes_id_index)
        .num("audit_entries", trail_->entries())  // in the current file
        .num("audit_rotated_files", trail_->files_rotated());
    admin_response_msg m;
    m.sections.push_back(std::move(r.sec));
    return m;
  }

  admin_response_msg cmd_shards(const std::vector<std::string>&) {
    admin_section s;
    s.title = "shards";
    s.columns = {{"shard", true},        {"accounts", true},   {"pending", true},      {"pending_resident", true},
                 {"queue_depth", true},  {"batches_executed", true}, {"sync_waits", true}, {"memory_bytes", true},
                 {"cut_pause_us_max", true}};
    for (const auto& r : eng_.shard_reports())
      s.rows.push_back({std::to_string(r.shard), std::to_string(r.accounts), std::to_string(r.pending_open),
                        std::to_string(r.pending),
                        std::to_string(r.queue_depth), std::to_string(r.batches_executed),
                        std::to_string(r.sync_waits), std::to_string(r.memory_bytes), std::to_string(r.cut_us_max)});
    admin_response_msg m;
    m.sections.push_back(std::move(s));
    return m;
  }

  // The client port's sessions page by session id (a session still in its handshake has
  // none yet: 0, listed first, on the first page); the admin port's few come first on
  // every page (before, after the client port's: a full page left them out).
  admin_response_msg cmd_sessions(const std::vector<std::string>& args) {
    uint64_t from = 0;
    if (!args.empty() && (args[0].rfind("from=", 0) != 0 || !parse_u64(args[0].substr(5), &from) || from == 0))
      return answer(admin_code::arguments_invalid, "'" + args[0] + "': give from=<session-id> (1 to 2^64-1)");
    admin_section s;
    s.title = "sessions";
    s.columns = {{"port", false}, {"session", true}, {"gateway", false}, {"peer", false}, {"age_s", true},
                 {"requests", true}};
    const auto by_id = [](const session_info& x, const session_info& y) { return x.session_id < y.session_id; };
    std::vector<session_info> client = clients_ ? clients_->sessions() : std::vector<session_info>{};
    std::vector<session_info> admin = admin_port_ ? admin_port_->sessions() : std::vector<session_info>{};
    const size_t open = client.size() + admin.size();
    std::sort(client.begin(), client.end(), by_id);
    std::sort(admin.begin(), admin.end(), by_id);
    std::vector<uint64_t> ids;  // the client port's listed, in order (0: the page starts from 1)
    const auto row = [&](const char* port, const session_info& i) {
      if (s.rows.size() < wire::admin_rows_max)
        s.rows.push_back({port, std::to_string(i.session_id), i.gateway.empty() ? "(handshake)" : i.gateway, i.peer,
                          std::to_string(i.age_ms / 1000), std::to_string(i.requests)});
    };
    for (const auto& i : admin) {
      ids.push_back(std::max<uint64_t>(from, 1));  // (a page cut among them starts here again)
      row("admin", i);
    }
    for (const auto& i : client) {
      if (i.session_id < from) continue;
      ids.push_back(std::max<uint64_t>(i.session_id, 1));
      row("client", i);
    }
    admin_response_msg m = answer(admin_code::ok, std::to_string(open) + " open sessions");
    m.sections.push_back(std::move(s));
    fit_page(m, ids, "sessions");
    return m;
  }

  admin_response_msg cmd_gateways(const std::vector<std::string>&) {
    admin_section s;
    s.title = "gateways";
    s.columns = {{"gateway", false},      {"source", false},          {"number", true},
                 {"rail", false},         {"priority", true},         {"roles", false},
                 {"settlement", false},   {"enabled", false},         {"client_sessions", true},
                 {"admin_sessions", true}, {"answer_timeout_ms", true}, {"former_settlement", false}};
    // Sessions by gateway, each port's list taken once (it is copied under the lock the
    // network thread takes to open and close sessions).
    auto by_gateway = [](const server* srv) {
      std::unordered_map<std::string, uint64_t> n;
      if (srv)
        for (const auto& i : srv->sessions()) ++n[i.gateway];
      return n;
    };
    const auto client_n = by_gateway(clients_), admin_n = by_gateway(admin_port_);
    auto count = [](const std::unordered_map<std::string, uint64_t>& n, const std::string& id) {
      const auto it = n.find(id);
      return std::to_string(it == n.end() ? 0 : it->second);
    };
    if (const server* any = clients_ ? clients_ : admin_port_)
      for (const auto& g : any->gateways())
        s.rows.push_back({g.id, "config", "0", "", "0", wire::roles_text(g.roles), "", "yes", count(client_n, g.id),
                          count(admin_n, g.id), "-", ""});
    const auto reg = eng_.gateway_registry();  // held: all() refers into it
    for (const auto& g : reg->all()) {
      std::string settlement;
      for (const auto& c : g.currencies)
        settlement += (settlement.empty() ? "" : " ") + wire::currency_name(c.currency) + "=" +
                      std::to_string(c.settlement_account_id);
      // Accounts it settled to before: its own still (no other gateway may name them).
      // The newest few: a gateway may have 63, and 1,024 gateways share one answer.
      constexpr size_t former_shown_max = 8;
      const auto& fa = g.former_accounts;
      const size_t first_shown = fa.size() > former_shown_max ? fa.size() - former_shown_max : 0;
      std::string former = first_shown > 0 ? "(" + std::to_string(first_shown) + " older)" : std::string();
      for (size_t k = first_shown; k < fa.size(); ++k) former += (former.empty() ? "" : " ") + std::to_string(fa[k]);
      s.rows.push_back({g.id, "registry", std::to_string(g.number), std::string(actors::gateways::rail_name(g.rail)),
                        std::to_string(g.priority), wire::roles_text(g.roles), settlement, g.enabled ? "yes" : "no",
                        count(client_n, g.id), count(admin_n, g.id), std::to_string(g.answer_timeout_ms), former});
    }
    admin_response_msg m = answer(admin_code::ok, std::to_string(s.rows.size()) + " gateways");
    m.sections.push_back(std::move(s));
    return m;
  }

  // ---- payouts ----

  std::string gateway_name(uint32_t number) {
    const auto reg = eng_.gateway_registry();  // held while *g is read
    const auto* g = reg->find(number);
    return g ? g->id : "#" + std::to_string(number);
  }

  void payout_row(admin_section& s, const actors::payouts::payout_entry& p) {
    const uint32_t last = p.attempts.empty() ? 0 : p.attempts.back().gateway;
    std::string state = actors::payouts::state_name(p.st);
    if (p.st == actors::payouts::state::dead) state += std::string(" (") + actors::payouts::dead_reason_name(p.dead) + ")";
    if (p.refusal != wire::result::ok) state += " (" + std::string(wire::result_name(p.refusal)) + ")";
    s.rows.push_back({std::to_string(p.id), std::to_string(p.wallet), std::to_string(p.amount),
                      wire::currency_name(p.currency), std::string(actors::gateways::rail_name(p.rail)), state,
                      std::to_string(p.attempts.size()), last ? gateway_name(last) : ""});
  }
  static admin_section payout_section(std::string title) {
    admin_section s;
    s.title = std::move(title);
    s.columns = {{"payout", true}, {"wallet", true}, {"amount", true}, {"currency", false},
                 {"rail", false},  {"state", false}, {"attempts", true}, {"gateway", false}};
    return s;
  }

  admin_response_msg cmd_payouts(const std::vector<std::string>& a) {
    bool all = false, limit_given = false, from_given = false;
    uint64_t limit = 100, from = 0;
    for (const auto& w : a) {
      if (w == "all" && !all) {
        all = true;
      } else if (w.rfind("from=", 0) == 0 && !from_given) {
        from_given = true;
        if (!parse_u64(w.substr(5), &from) || from == 0)
          return answer(admin_code::arguments_invalid, "'" + w + "': from= takes a payout id from 1 to 2^64-1");
      } else if (!limit_given && parse_u64(w, &limit) && limit != 0 && limit <= wire::admin_rows_max) {
        limit_given = true;
      } else {
        return answer(admin_code::arguments_invalid,
                      "'" + w + "' is neither `all`, a limit from 1 to 4096 nor from=<payout-id> (each once)");
      }
    }
    // One more than shown: whether the listing goes on, and from which id.
    const reply r = eng_.lookup_payouts(0, limit + 1, !all, true, from);
    if (r.st != status::ok) return refused_by_engine(r);
    admin_section counts;
    counts.title = "desks";
    counts.columns = {{"currency", false}, {"state", false}, {"payouts", true}, {"amount", true}};
    std::map<std::pair<std::string, std::string>, std::pair<uint64_t, uint64_t>> by;
    uint64_t held = 0;
    for (const auto& c : r.payout_counts) {
      auto& v = by[{wire::currency_name(c.currency), actors::payouts::state_name(c.st)}];
      v.first += c.n;
      actors::gateways::add_amount(v.second, c.amount);
      held += c.n;
    }
    for (const auto& [k, v] : by) counts.rows.push_back({k.first, k.second, std::to_string(v.first), std::to_string(v.second)});
    admin_section br;
    br.title = "breakers";
    br.columns = {{"currency", false}, {"desk", true},    {"gateway", false}, {"phase", false}, {"trips", true},
                  {"sent", true},      {"settled", true}, {"failed", true},   {"timeouts", true}, {"open_until", true}};
    for (const auto& row : r.breakers)  // open_until: engine ns (as `brokers`), 0 unless open
      br.rows.push_back({wire::currency_name(row.currency), std::to_string(actors::payouts::desk_slot(row.desk)),
                         gateway_name(row.gateway),
                         actors::payouts::phase_name(row.b.ph), std::to_string(row.b.trips), std::to_string(row.b.sent),
                         std::to_string(row.b.settled), std::to_string(row.b.failed), std::to_string(row.b.timeouts),
                         std::to_string(row.b.ph == actors::payouts::breaker::phase::open ? row.b.open_until : 0)});
    admin_section sw;
    sw.title = "sweeps";  // what settled payouts owe settlement accounts, not yet moved
    sw.columns = {{"currency", false}, {"desk", true}, {"settlement_account", true}, {"owed", true},
                  {"in_flight", true}, {"refused", false}, {"refused_in_a_row", true}, {"retry_at", false}};
    for (const auto& row : r.sweeps)
      sw.rows.push_back({wire::currency_name(actors::payouts::desk_currency(row.desk)),
                         std::to_string(actors::payouts::desk_slot(row.desk)), std::to_string(row.settlement),
                         std::to_string(row.s.owed), std::to_string(row.s.amount),
                         row.s.refusal == wire::result::ok ? "" : std::string(wire::result_name(row.s.refusal)),
                         std::to_string(row.s.refusals), row.s.retry_at ? utc_text(row.s.retry_at) : ""});
    admin_section list = payout_section(all ? "payouts" : "dead letters");
    std::vector<const actors::payouts::payout_entry*> listed;  // each shard's lowest ids: merged
    for (const auto& p : r.payouts) listed.push_back(&p);
    std::sort(listed.begin(), listed.end(), [](auto* x, auto* y) { return x->id < y->id; });
    for (const auto* p : listed) {
      if (list.rows.size() >= limit) break;
      payout_row(list, *p);
    }
    admin_response_msg m = answer(admin_code::ok, std::to_string(held) + " payouts held");
    // The desks, breakers and sweeps on the first page only: later pages are the list's,
    // which those sections (thousands of breakers) could otherwise push out of every
    // page, each naming the same next page.
    if (from_given) m.sections = {std::move(list)};
    else m.sections = {std::move(counts), std::move(br), std::move(sw), std::move(list)};
    std::vector<uint64_t> ids;
    for (const auto* p : listed) ids.push_back(p->id);
    fit_page(m, ids, std::string("payouts ") + (all ? "all " : "") + std::to_string(limit));
    return m;
  }

  // An answer whose last section lists rows of `ids` (in id order, maybe more ids than
  // rows) fitted to one answer; when rows are left out (past a limit, or cut with the
  // answer's rows and bytes) the message says where the next page starts: `again`
  // from=<the first id not shown>. Room is kept for the note and fit's own: fitted again
  // after (execute), the answer loses no row the next page would start after.
  static void fit_page(admin_response_msg& m, const std::vector<uint64_t>& ids, const std::string& again) {
    fit(m, 256);
    const size_t shown = m.sections.back().rows.size();
    if (ids.size() > shown) {
      const std::string next = std::to_string(ids[shown]);
      m.message += "; more from id " + next + " (`" + again + " from=" + next + "`)";
    }
  }

  // kept_too: also a payout resolved while a gateway may still pay it (state resolved).
  bool payout_arg(const std::string& a, actors::payouts::payout_entry* out, admin_response_msg* bad,
                  bool kept_too = false) {
    uint64_t id = 0;
    if (!parse_u64(a, &id) || id == 0) {
      *bad = answer(admin_code::arguments_invalid, "payout id '" + a + "' is not a decimal integer from 1 to 2^64-1");
      return false;
    }
    const reply r = eng_.lookup_payouts(id, 1);
    if (r.st != status::ok) {
      *bad = refused_by_engine(r);
      return false;
    }
    if (kept_too && r.payouts.empty() && !r.watched_payouts.empty()) {
      *out = r.watched_payouts[0];
      return true;
    }
    if (r.payouts.empty()) {
      *bad = answer(admin_code::not_found, "payout " + a + " is not held by any desk (settled, failed, cancelled or unknown)");
      return false;
    }
    *out = r.payouts[0];
    return true;
  }

  admin_response_msg cmd_payout_show(const std::vector<std::string>& a) {
    actors::payouts::payout_entry p;
    admin_response_msg bad;
    if (!payout_arg(a[0], &p, &bad, true)) return bad;
    admin_section s = payout_section("payout");
    payout_row(s, p);
    admin_section at;
    at.title = "attempts";
    at.columns = {{"attempt", true}, {"gateway", false}, {"sent_at", true}, {"answer", false}};
    for (size_t i = 0; i < p.attempts.size(); ++i) {
      const auto& x = p.attempts[i];
      at.rows.push_back({std::to_string(i + 1), gateway_name(x.gateway), std::to_string(x.sent_at),
                         x.settled ? "settled" : x.failed ? "failed" : ""});
    }
    admin_response_msg m = answer(admin_code::ok, "");
    m.sections = {std::move(s), std::move(at)};
    return m;
  }

  bool order_arg(const std::string& a, wire::order_state_view* out, admin_response_msg* bad) {
    uint64_t id = 0;
    if (!parse_u64(a, &id) || id == 0) {
      *bad = answer(admin_code::arguments_invalid, "order id '" + a + "' is not a decimal integer from 1 to 2^64-1");
      return false;
    }
    const reply r = eng_.lookup_orders({id});
    if (r.st != status::ok) {
      *bad = refused_by_engine(r);
      return false;
    }
    if (r.results.empty() || r.results[0] != wire::result::ok) {
      *bad = answer(admin_code::not_found, "order " + a + " is not kept (never placed, or closed and forgotten)");
      return false;
    }
    *out = r.orders.at(0);
    return true;
  }

  static std::string order_state_text(const wire::order_state_view& v) {
    static const char* names[] = {"?", "open", "filled", "rejected", "cancelled", "expired"};
    std::string s = names[v.state <= 5 ? v.state : 0];
    if (v.state != 1) return s;
    if (v.cancelling != 0) s += std::string(" (") + names[v.cancelling <= 5 ? v.cancelling : 0] + ", broker to confirm)";
    s += std::string(", ") + actors::trading::route_state_name(v.routing);
    if (v.routing == uint8_t(actors::trading::route_state::dead))
      s += std::string(" (") + actors::trading::dead_reason_name(v.dead_reason) + ")";
    return s;
  }

  admin_response_msg cmd_order_show(const std::vector<std::string>& a) {
    wire::order_state_view v;
    admin_response_msg bad;
    if (!order_arg(a[0], &v, &bad)) return bad;
    admin_section s;
    s.title = "order";
    s.columns = {{"order", true},    {"wallet", true},   {"instrument", true}, {"side", false},
                 {"type", false},    {"quantity", true}, {"limit_ticks", true}, {"currency", false},
                 {"filled", true},   {"held", true},     {"paid", true},       {"fills", true},
                 {"state", false},   {"broker", false},  {"attempts", true},   {"reason", true},
                 {"settle_refused", false}, {"placed_at", true}};
    s.rows.push_back({std::to_string(v.o.id), std::to_string(v.o.wallet), std::to_string(v.o.instrument_id),
                      v.o.side == wire::order_side::buy ? "buy" : "sell",
                      v.o.type == wire::order_type::market ? "market" : "limit", std::to_string(v.o.quantity),
                      std::to_string(v.o.limit_ticks), wire::currency_name(v.o.currency), std::to_string(v.filled),
                      std::to_string(v.held), std::to_string(v.paid), std::to_string(v.fills), order_state_text(v),
                      v.broker ? gateway_name(v.broker) : "", std::to_string(v.attempts), std::to_string(v.reason),
                      v.settle_refused ? "yes" : "no", std::to_string(v.placed_at)});
    admin_response_msg m = answer(admin_code::ok, "order " + a[0] + ": " + order_state_text(v));
    m.sections = {std::move(s)};
    return m;
  }

  admin_response_msg cmd_brokers(const std::vector<std::string>&) {
    const reply r = eng_.lookup_payouts(0, 0, false, /*with_rows=*/false, 0, /*breakers_only=*/true);
    if (r.st != status::ok) return refused_by_engine(r);
    admin_section s;
    s.title = "breakers";
    s.columns = {{"broker", false}, {"shard", true},    {"phase", false},   {"trips", true},
                 {"sent", true},    {"answered", true}, {"timeouts", true}, {"open_until", true}};
    for (const auto& row : r.order_breakers)
      s.rows.push_back({gateway_name(row.gateway), std::to_string(row.desk), actors::payouts::phase_name(row.b.ph),
                        std::to_string(row.b.trips), std::to_string(row.b.sent), std::to_string(row.b.settled),
                        std::to_string(row.b.timeouts),
                        std::to_string(row.b.ph == actors::payouts::breaker::phase::open ? row.b.open_until : 0)});
    admin_response_msg m = answer(admin_code::ok, std::to_string(r.order_breakers.size()) + " breakers");
    m.sections = {std::move(s)};
    return m;
  }

  admin_response_msg cmd_portfolio_show(const std::vector<std::string>& a) {
    uint64_t wallet = 0;
    if (!parse_u64(a[0], &wallet) || wallet == 0)
      return answer(admin_code::arguments_invalid, "wallet id '" + a[0] + "' is not a decimal integer from 1 to 2^64-1");
    const reply r = eng_.lookup_positions({wallet});
    if (r.st != status::ok) return refused_by_engine(r);
    if (r.results.empty() || r.results[0] != wire::result::ok)
      return answer(admin_code::not_found, "account " + a[0] + " does not exist");
    admin_section s;
    s.title = "positions";
    s.columns = {{"instrument", true}, {"quantity", true}, {"reserved", true}, {"buying", true}, {"cost", true}};
    for (const auto& p : r.positions)
      s.rows.push_back({std::to_string(p.instrument_id), std::to_string(p.quantity), std::to_string(p.reserved),
                        std::to_string(p.buying), std::to_string(p.cost)});
    admin_response_msg m = answer(admin_code::ok, "wallet " + a[0] + ": " + std::to_string(r.positions.size()) + " positions");
    m.sections = {std::move(s)};
    return m;
  }

  admin_response_msg order_action(const std::string& arg, bool retry, const std::string& done, bool force = false) {
    wire::order_state_view v;
    admin_response_msg bad;
    if (!order_arg(arg, &v, &bad)) return bad;
    const wire::order_cancel c{v.o.id, v.o.wallet};
    const reply r = retry ? eng_.retry_orders({c}, force) : eng_.cancel_orders({c});
    if (r.st != status::ok) return refused_by_engine(r);
    const auto res = r.results.at(0);
    // Decided as the retry executes (rules_order_retry_checks_broker): a broker it was
    // sent to never answered, and may have it.
    if (res == wire::result::order_may_be_traded)
      return answer(admin_code::refused,
                    "order " + arg + ": " +
                        (v.dead_reason == uint8_t(actors::trading::dead_reason::withdrawn)
                             ? std::string("the broker that has it was withdrawn and may still trade it")
                             : std::string("a broker it was sent to since its last retry never answered and may be "
                                           "working it")) +
                        "; routed again, it could be traded twice. Check with its brokers first, then: order retry " +
                        arg + " force");
    if (res != wire::result::ok)
      return answer(admin_code::refused,
                    "order " + arg + ": " + std::string(wire::result_name(res)) + " (it is " + order_state_text(v) + ")");
    return answer(admin_code::ok, "order " + arg + " " + done);
  }
  admin_response_msg cmd_order_retry(const std::vector<std::string>& a) {
    if (a.size() > 1 && a[1] != "force")
      return answer(admin_code::arguments_invalid, "after the order id only the word 'force', not '" + a[1] + "'");
    return order_action(a[0], true, "is routed again (the brokers it leaves are told to stop)", a.size() > 1);
  }
  admin_response_msg cmd_order_cancel(const std::vector<std::string>& a) {
    return order_action(a[0], false, "cancel requested: its brokers are told, and it closes when they confirm or its "
                                     "grace ends (it may still fill meanwhile; see order show)");
  }

  // `force`: the word after the id ("force"), or none.
  admin_response_msg payout_action(const std::vector<std::string>& a, wire::payout_op_kind k, const std::string& done) {
    const std::string& arg = a[0];
    const bool force = a.size() > 1;
    if (force && a[1] != "force")
      return answer(admin_code::arguments_invalid, "after the payout id only the word 'force', not '" + a[1] + "'");
    actors::payouts::payout_entry p;
    admin_response_msg bad;
    if (!payout_arg(arg, &p, &bad)) return bad;
    // A dead letter a gateway was sent and never answered may have been paid there: the
    // desk refuses it unless the operator checked with the gateway first and says so with
    // `force` (decided as the operation executes: rules_payout_ops_checked).
    wire::payout_op op{p.id, p.currency, k, uint8_t(force ? wire::payout_op_flags::force : 0), {}};
    const reply r = eng_.payout_ops({op});
    if (r.st != status::ok) return refused_by_engine(r);
    const auto res = r.results.at(0);
    if (res == wire::result::payout_may_be_paid) {
      if (!payout_arg(arg, &p, &bad)) return bad;  // (as the desk saw it: which gateways)
      std::vector<uint32_t> seen;
      std::string open;
      for (auto it = p.attempts.rbegin(); it != p.attempts.rend(); ++it) {
        if (std::find(seen.begin(), seen.end(), it->gateway) != seen.end()) continue;
        seen.push_back(it->gateway);
        if (actors::payouts::may_pay(p, it->gateway))
          open += (open.empty() ? "" : ", ") + gateway_name(it->gateway) + " (attempt " +
                  std::to_string(p.attempts.rend() - it) + ")";
      }
      return answer(admin_code::refused,
                    "payout " + arg + ": " + (open.empty() ? std::string("a gateway it was sent to") : open) +
                        " never answered and may have paid it; " +
                        (k == wire::payout_op_kind::retry ? "routed again" : "cancelled, its hold voided,") +
                        " it could be paid twice. Check with the gateway first, then: payout " +
                        (k == wire::payout_op_kind::retry ? "retry " : "cancel ") + arg + " force");
    }
    if (res != wire::result::ok)
      return answer(admin_code::refused, "payout " + arg + ": " + std::string(wire::result_name(res)) + " (it is " +
                                             actors::payouts::state_name(p.st) + ")");
    return answer(admin_code::ok, "payout " + arg + " " + done);
  }
  admin_response_msg cmd_payout_retry(const std::vector<std::string>& a) {
    return payout_action(a, wire::payout_op_kind::retry, "is routed again");
  }
  admin_response_msg cmd_payout_cancel(const std::vector<std::string>& a) {
    return payout_action(a, wire::payout_op_kind::cancel, "is cancelled: its hold is voided");
  }

  static std::string day_text(uint32_t day) {
    const time_t t = time_t(day) * 86400;
    tm g{};
    gmtime_r(&t, &g);
    char buf[16];
    std::strftime(buf, sizeof buf, "%Y-%m-%d", &g);
    return buf;
  }

  admin_response_msg cmd_gateway_recon(const std::vector<std::string>& a) {
    const auto reg = eng_.gateway_registry();
    const auto* g = reg->find(a[0]);
    if (!g) return answer(admin_code::not_found, "gateway " + a[0] + " is not registered");
    int64_t only_day = -1;
    if (a.size() == 2) {
      tm t{};
      // Digits where YYYY-MM-DD has them (strptime alone skips spaces before each number).
      bool shaped = a[1].size() == 10;
      for (size_t at = 0; shaped && at < a[1].size(); ++at)
        shaped = at == 4 || at == 7 ? a[1][at] == '-' : a[1][at] >= '0' && a[1][at] <= '9';
      const char* end = shaped ? strptime(a[1].c_str(), "%Y-%m-%d", &t) : nullptr;
      if (!end || *end != '\0') return answer(admin_code::arguments_invalid, "'" + a[1] + "' is not a date YYYY-MM-DD");
      const tm asked = t;
      only_day = int64_t(timegm(&t) / 86400);
      // timegm rolls a day past its month's end over (2024-02-30 would be 2024-03-01).
      if (t.tm_year != asked.tm_year || t.tm_mon != asked.tm_mon || t.tm_mday != asked.tm_mday)
        return answer(admin_code::arguments_invalid, "'" + a[1] + "' is not a day of the calendar");
      if (only_day < 0) return answer(admin_code::arguments_invalid, "'" + a[1] + "' is before 1970");
    }
    std::string err;
    const reply r = eng_.lookup_recon(g->number, only_day < 0 ? std::nullopt : std::optional<uint32_t>(uint32_t(only_day)),
                                      &err);
    if (r.st != status::ok) return refused_by_engine(r);
    if (!err.empty()) return answer(admin_code::failed, "the days kept in the snapshot cannot be read: " + err);
    struct line {
      actors::payouts::recon_counts c;
      uint64_t pending = 0, pending_amount = 0, dead = 0, dead_amount = 0;
    };
    // Newest day first (currencies in name order within a day): an answer cut at its row
    // limit drops the oldest days, not today.
    struct newest_first {
      bool operator()(const std::pair<uint32_t, std::string>& x, const std::pair<uint32_t, std::string>& y) const {
        return x.first != y.first ? x.first > y.first : x.second < y.second;
      }
    };
    std::map<std::pair<uint32_t, std::string>, line, newest_first> rows;
    for (const auto& row : r.recon) rows[{row.k.day, wire::currency_name(row.k.currency)}].c.add(row.c);
    for (const auto& c : r.payout_counts) {
      if (c.gateway != g->number || (only_day >= 0 && c.day != only_day)) continue;
      line& l = rows[{c.day, wire::currency_name(c.currency)}];
      if (c.st == actors::payouts::state::dead) {
        l.dead += c.n;
        actors::gateways::add_amount(l.dead_amount, c.amount);
      } else {
        l.pending += c.n;
        actors::gateways::add_amount(l.pending_amount, c.amount);
      }
    }
    admin_section s;
    s.title = "reconciliation";
    s.columns = {{"day", false},          {"currency", false},       {"deposits", true},
                 {"deposits_amount", true}, {"settled", true},        {"settled_amount", true},
                 {"failed", true},        {"failed_amount", true},   {"cancelled", true},
                 {"cancelled_amount", true}, {"overpaid", true},      {"overpaid_amount", true},
                 {"pending", true},       {"pending_amount", true},
                 {"dead_letters", true},  {"dead_letters_amount", true}};
    for (const auto& [k, l] : rows) {
      s.rows.push_back({day_text(k.first), k.second, std::to_string(l.c.deposits), std::to_string(l.c.deposits_amount),
                        std::to_string(l.c.settled), std::to_string(l.c.settled_amount), std::to_string(l.c.failed),
                        std::to_string(l.c.failed_amount), std::to_string(l.c.cancelled),
                        std::to_string(l.c.cancelled_amount), std::to_string(l.c.overpaid),
                        std::to_string(l.c.overpaid_amount), std::to_string(l.pending),
                        std::to_string(l.pending_amount), std::to_string(l.dead), std::to_string(l.dead_amount)});
    }
    admin_response_msg m = answer(admin_code::ok, "gateway " + g->id + " (number " + std::to_string(g->number) + ")");
    m.sections.push_back(std::move(s));
    return m;
  }

  // ---- the gateway registry ----

  bool config_gateway(const std::string& id) const {
    for (const server* srv : {clients_, admin_port_})
      if (srv)
        for (const auto& g : srv->gateways())
          if (g.id == id) return true;
    return false;
  }

  // <gateway-id> <rail> <priority> <roles> <CUR=account>... [timeout_ms=N] into an op;
  // false with *bad. Without timeout_ms= the op carries `timeout_ms` (an update: the
  // gateway's own, kept).
  // The id into op, as the registry takes ids (else arguments_invalid, saying why: the
  // engine's refusal would come back as a failure naming no gateway).
  static bool gateway_id_into(wire::gateway_op& op, const std::string& id, admin_response_msg* bad) {
    if (!actors::gateways::set_op_id(op, id) || actors::gateways::op_id(op).empty()) {
      *bad = answer(admin_code::arguments_invalid,
                    "gateway id '" + id + "' is not 1 to 64 letters, digits, '.', '_' or '-'");
      return false;
    }
    return true;
  }

  bool parse_gateway_config(const std::vector<std::string>& a, uint32_t timeout_ms, wire::gateway_op* op,
                            admin_response_msg* bad) {
    auto invalid = [&](std::string why) {
      *bad = answer(admin_code::arguments_invalid, std::move(why));
      return false;
    };
    if (!gateway_id_into(*op, a[0], bad)) return false;
    if (!actors::gateways::parse_rail(a[1], &op->rail))
      return invalid("rail '" + a[1] + "' is not one of mobile_money, card, bank");
    uint64_t priority = 0;
    if (!parse_u64(a[2], &priority) || priority > UINT32_MAX)
      return invalid("priority '" + a[2] + "' is not an integer from 0 to 4294967295");
    op->priority = uint32_t(priority);
    if (!wire::parse_roles(a[3], &op->roles) || op->roles == 0 || (op->roles & wire::roles::admin))
      return invalid("roles '" + a[3] + "' are not a comma-separated list of payments, broker, market_data, kyc, "
                                        "events_reader, ledger (admin is for the config file's gateways)");
    op->answer_timeout_ms = timeout_ms;
    bool timeout_given = false;
    for (size_t i = 4; i < a.size(); ++i) {
      if (a[i].rfind("timeout_ms=", 0) == 0) {
        if (timeout_given) return invalid("'" + a[i] + "': timeout_ms= is given once");
        timeout_given = true;
        uint64_t ms = 0;
        if (!parse_u64(a[i].substr(11), &ms) || ms < actors::gateways::answer_timeout_ms_min ||
            ms > actors::gateways::answer_timeout_ms_max)
          return invalid("'" + a[i] + "': the answer timeout is 100 to 3600000 ms");
        op->answer_timeout_ms = uint32_t(ms);
        continue;
      }
      if (op->currencies_n == wire::gateway_currencies_max) return invalid("at most 8 currencies");
      const auto eq = a[i].find('=');
      uint64_t account = 0;
      if (eq != 3 || !parse_u64(a[i].substr(4), &account) || account == 0)
        return invalid("'" + a[i] + "' is not CUR=settlement-account (three letters, '=', an account id)");
      wire::currency_code c = 0;
      if (!wire::parse_currency(std::string_view(a[i]).substr(0, 3), &c))
        return invalid("'" + a[i].substr(0, 3) + "' is not a currency (three letters A-Z)");
      for (uint8_t k = 0; k < op->currencies_n; ++k) {
        if (op->currencies[k].currency == c) return invalid("'" + a[i] + "': " + a[i].substr(0, 3) + " is given twice");
        if (op->currencies[k].settlement_account_id == account)
          return invalid("'" + a[i] + "': account " + std::to_string(account) + " is " +
                         wire::currency_name(op->currencies[k].currency) +
                         "'s settlement account too (each currency settles to an account of its own)");
      }
      op->currencies[op->currencies_n++] = {c, 0, account};
    }
    if (op->currencies_n == 0)
      return invalid("at least one CUR=settlement-account (an update names every currency the gateway keeps)");
    return true;
  }

  // Runs one registry change; `secret` is shown when the change set one.
  admin_response_msg gateway_change(const wire::gateway_op& op, const std::string& done) {
    const std::string id = actors::gateways::op_id(op);
    if (config_gateway(id))
      return answer(admin_code::refused, "gateway " + id + " is defined in the engine's config file; change it there");
    const reply r = eng_.gateways({op});
    if (r.st != status::ok) return refused_by_engine(r);
    const wire::result res = r.results.at(0);
    if (res == wire::result::gateway_not_found) return answer(admin_code::not_found, "gateway " + id + " is not registered");
    if (res != wire::result::ok) {
      std::string why(wire::result_name(res));
      if (res == wire::result::roles_invalid) why += " (at least one role; admin is for the config file's gateways)";
      if (res == wire::result::settlement_account_invalid)
        why += " (an account with that id exists and is not a gateway settlement account in that currency)";
      if (res == wire::result::settlement_account_in_use)
        why += " (another gateway settles to it, or did: its balance and late sweeps stay that gateway's; "
               "`gateways` lists each one's former accounts)";
      if (res == wire::result::settlement_accounts_exhausted)
        why += " (a gateway names at most " + std::to_string(actors::gateways::settlement_accounts_named_max) +
               " settlement accounts over its life, former ones included)";
      return answer(admin_code::failed, "gateway " + id + ": " + why);
    }
    admin_response_msg m = answer(admin_code::ok, "gateway " + id + " " + done);
    if (op.secret_bytes) {
      row_builder b("credentials (shown once)");
      b.text("gateway", id).text("secret_hex", wire::to_hex({op.secret, op.secret_bytes}));
      m.sections.push_back(std::move(b.sec));
    }
    return m;
  }

  static void new_secret(wire::gateway_op& op) {
    const auto s = wire::random_bytes(32);
    std::memcpy(op.secret, s.data(), s.size());
    op.secret_bytes = uint8_t(s.size());
  }

  admin_response_msg cmd_gateway_register(const std::vector<std::string>& a) {
    wire::gateway_op op{};
    op.kind = wire::gateway_op_kind::register_gateway;
    admin_response_msg bad;
    if (!parse_gateway_config(a, actors::gateways::answer_timeout_ms_default, &op, &bad)) return bad;
    new_secret(op);
    return gateway_change(op, "registered");
  }
  admin_response_msg cmd_gateway_update(const std::vector<std::string>& a) {
    wire::gateway_op op{};
    op.kind = wire::gateway_op_kind::update;
    admin_response_msg bad;
    // An update names what changes: the answer timeout stays the gateway's unless given.
    // (Registry changes come through this actor, one command at a time: the gateway read
    // here is the one the update applies to.)
    const auto reg = eng_.gateway_registry();
    const actors::gateways::gateway* had = reg ? reg->find(a[0]) : nullptr;
    const uint32_t keep = had ? had->answer_timeout_ms : actors::gateways::answer_timeout_ms_default;
    if (!parse_gateway_config(a, keep, &op, &bad)) return bad;
    return gateway_change(op, "updated");
  }
  admin_response_msg simple_gateway_change(const std::string& id, wire::gateway_op_kind k, const std::string& done) {
    wire::gateway_op op{};
    op.kind = k;
    admin_response_msg bad;
    if (!gateway_id_into(op, id, &bad)) return bad;
    if (k == wire::gateway_op_kind::rotate_secret) new_secret(op);
    return gateway_change(op, done);
  }
  admin_response_msg cmd_gateway_secret(const std::vector<std::string>& a) {
    return simple_gateway_change(a[0], wire::gateway_op_kind::rotate_secret, "has a new secret");
  }
  admin_response_msg cmd_gateway_disable(const std::vector<std::string>& a) {
    return simple_gateway_change(a[0], wire::gateway_op_kind::disable, "disabled");
  }
  admin_response_msg cmd_gateway_enable(const std::vector<std::string>& a) {
    return simple_gateway_change(a[0], wire::gateway_op_kind::enable, "enabled");
  }

  // An id of `what` (an account, a group): 1 .. 2^64 - 1 in decimal.
  static bool id_arg(const char* what, const std::string& a, uint64_t* id, admin_response_msg* bad) {
    if (!parse_u64(a, id) || *id == 0) {
      *bad = answer(admin_code::arguments_invalid, std::string(what) + " id '" + a +
                                                       "' is not an unsigned decimal integer from 1 to 18446744073709551615");
      return false;
    }
    return true;
  }
  static bool account_arg(const std::string& a, uint64_t* id, admin_response_msg* bad) {
    return id_arg("account", a, id, bad);
  }

  admin_response_msg refused_by_engine(const reply& r) {
    return answer(r.st == status::stopping ? admin_code::refused : admin_code::failed,
                  std::string("engine: ") + status_name(r.st));
  }

  admin_response_msg cmd_account_show(const std::vector<std::string>& args) {
    uint64_t id = 0;
    admin_response_msg bad;
    if (!account_arg(args[0], &id, &bad)) return bad;
    const reply r = eng_.lookup_accounts({id});
    if (r.st != status::ok) return refused_by_engine(r);
    if (r.results.empty() || r.results[0] != wire::result::ok) return answer(admin_code::not_found, "account " + args[0] + " does not exist");
    const auto& a = r.accounts[0];
    row_builder b("account");
    b.num("id", a.id)
        .num("owner_id", a.owner_id)
        .text("currency", wire::currency_name(a.currency))
        .text("kind", kind_name(uint16_t(a.kind)))
        .text("status", status_text(uint16_t(a.status)))
        .num("status_seq", a.status_seq)
        .text("flags", account_flags_text(a.flags))
        .num("debits_posted", a.debits_posted)
        .num("credits_posted", a.credits_posted)
        .num("debits_pending", a.debits_pending)
        .num("credits_pending", a.credits_pending)
        .num("user_data", a.user_data)
        .num("timestamp", a.timestamp);
    admin_response_msg m;
    m.sections.push_back(std::move(b.sec));
    // Its latest transfers, newest first.
    const reply h = eng_.lookup_account_transfers({history_query{id, 0, uint32_t(history_rows)}});
    admin_section t;
    t.title = "latest transfers";
    t.columns = {{"id", false},     {"debit_account_id", true}, {"credit_account_id", true},
                 {"amount", true},  {"flags", false},           {"timestamp", true}};
    const bool history = h.st == status::ok && !h.pages.empty() && h.pages[0].result == wire::result::ok;
    if (history)
      for (const auto& rec : h.pages[0].records)
        t.rows.push_back({id_text(rec.t.id), std::to_string(rec.t.debit_account_id),
                          std::to_string(rec.t.credit_account_id), std::to_string(rec.t.amount),
                          transfer_flags_text(rec.t.flags), std::to_string(rec.t.timestamp)});
    // A look-up that failed is said, not shown as an account with no transfers.
    else
      m.message = "latest transfers unavailable: " +
                  (h.st != status::ok ? std::string(status_name(h.st))
                   : h.pages.empty()  ? std::string("no answer")
                                      : std::string(wire::result_name(h.pages[0].result)));
    m.sections.push_back(std::move(t));
    return m;
  }

  admin_response_msg cmd_group_show(const std::vector<std::string>& args) {
    uint64_t id = 0;
    admin_response_msg bad;
    if (!id_arg("group", args[0], &id, &bad)) return bad;
    const reply r = eng_.lookup_groups({id});
    if (r.st != status::ok) return refused_by_engine(r);
    if (r.results.empty() || r.results[0] != wire::result::ok) return answer(admin_code::not_found, "group " + args[0] + " does not exist");
    const auto& e = r.groups[0];
    const auto& g = e.g;
    const auto& c = g.cfg;
    static const char* phases[] = {"?", "forming", "active", "completed", "dissolved"};
    static const char* rotations[] = {"?", "fixed_order", "lottery", "bidding"};
    static const char* policies[] = {"?", "pay_what_is_there", "cover_from_guarantor", "hold_round"};
    // The escrow account as the same look-up read it, at the same point of the request
    // stream as the group (two look-ups could straddle a payment and show a false
    // mismatch on a busy group). One that is not there is a failure of its own.
    if (r.accounts.empty() || r.accounts[0].id != id)
      return answer(admin_code::failed, "group " + args[0] + ": its escrow account is not there");
    const uint64_t held_in = r.accounts[0].credits_posted, held_out = r.accounts[0].debits_posted;
    const uint64_t expected = actors::equb::escrow_expected(e);
    const bool matches = held_in >= held_out && held_in - held_out == expected;
    row_builder b("group");
    b.num("id", c.group_id)
        .num("number", g.number)
        .text("currency", wire::currency_name(c.currency))
        .num("contribution", c.contribution)
        .text("rotation", rotations[uint8_t(c.policy) <= 3 ? uint8_t(c.policy) : 0])
        .text("on_default", policies[uint8_t(c.on_default) <= 3 ? uint8_t(c.on_default) : 0])
        .num("fee_bp", c.fee_bp)
        .num("fee_account_id", c.fee_account_id)
        .num("guarantor_account_id", c.guarantor_account_id)
        .num("organizer_account_id", c.organizer_account_id)
        .num("period_ns", c.period_ns)
        .num("grace_ns", c.grace_ns)
        .num("late_penalty", c.late_penalty)
        .text("phase", phases[uint8_t(g.ph) <= 4 ? uint8_t(g.ph) : 0])
        .num("round", g.round)
        .num("started_at", g.started_at)
        .num("shift_ns", g.shift_ns);  // added to its deadlines: downtime, held rounds' overrun
    if (g.ph == actors::equb::phase::active)  // engine time (ns): late after, closed after
      b.num("round_deadline", actors::equb::round_deadline(g)).num("round_close", actors::equb::round_close(g));
    b.num("seats", g.seats.size())
        .num("pot", g.pot)
        .num("held", g.held)  // repaid debts' group parts: the seats' dividend at the next close
        .num("escrow_expected", expected)
        .difference("escrow_account_holds", held_in, held_out)
        .text("escrow_matches", matches ? "yes" : "NO");
    admin_response_msg m = answer(matches ? admin_code::ok : admin_code::check_failed,
                                  matches ? "" : "the escrow account does not hold what the group says");
    m.sections.push_back(std::move(b.sec));
    admin_section seats;
    seats.title = "seats";
    seats.columns = {{"seat", true}, {"wallet", true}, {"paid", false}, {"received_round", true}, {"credit", true},
                     {"debt", true}, {"debt_to_group", true}, {"payout_to", false}};
    for (size_t i = 0; i < g.seats.size() && seats.rows.size() < group_rows_max; ++i) {
      const auto& st = g.seats[i];
      uint64_t debt = 0, to_group = 0;
      for (const auto& d : st.debts) {
        debt += d.amount;
        to_group += d.group_part;
      }
      seats.rows.push_back({std::to_string(i), std::to_string(st.wallet), st.paid ? "yes" : "no",
                            std::to_string(st.received_round), std::to_string(st.credit), std::to_string(debt),
                            std::to_string(to_group),
                            st.payout_rail == 0 ? std::string("wallet")
                                                : std::string(actors::gateways::rail_name(st.payout_rail)) + " " +
                                                      std::to_string(st.destination)});
    }
    m.sections.push_back(std::move(seats));
    admin_section rounds;
    rounds.title = "paid-out rounds";
    rounds.columns = {{"round", true}, {"seat", true}, {"revealed_seed", false}};
    for (const auto& h : e.history) {
      if (rounds.rows.size() >= group_rows_max) break;
      const bool lottery = c.policy == actors::equb::rotation::lottery;
      rounds.rows.push_back({std::to_string(h.round), std::to_string(h.seat),
                             lottery ? wire::to_hex(std::span<const uint8_t>(h.revealed)) : std::string("-")});
    }
    m.sections.push_back(std::move(rounds));
    admin_section owed;
    owed.title = "payments owed";
    owed.columns = {{"first_step", true}, {"transfers", true}, {"out_of_escrow", true}, {"state", false}};
    for (const auto& o : e.owed) {
      if (owed.rows.size() >= group_rows_max) break;
      uint64_t out = 0;
      for (const auto& t : o.transfers)
        if (t.debit_account_id == id) out += t.amount;
      owed.rows.push_back({std::to_string(o.first_step), std::to_string(o.transfers.size()), std::to_string(out),
                           o.refused     ? "refused: " + std::string(wire::result_name(o.refusal))
                           : held_back(o) ? "waits for round " + std::to_string(o.waits_for != 0 ? o.waits_for : o.waits_too) + "'s cover"
                                         : "in flight"});
    }
    m.sections.push_back(std::move(owed));
    return m;
  }

  admin_response_msg group_op(const std::string& group_arg, wire::equb_op op, const std::string& done) {
    admin_response_msg bad;
    if (!id_arg("group", group_arg, &op.group_id, &bad)) return bad;
    const reply r = eng_.equb({op});
    if (r.st != status::ok) return refused_by_engine(r);
    const auto res = r.results.at(0);
    if (res == wire::result::group_not_found) return answer(admin_code::not_found, "group " + group_arg + " does not exist");
    if (res != wire::result::ok)
      return answer(admin_code::refused, "group " + group_arg + ": " + std::string(wire::result_name(res)));
    return answer(admin_code::ok, "group " + group_arg + " " + done);
  }
  admin_response_msg cmd_group_retry(const std::vector<std::string>& a) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::retry;
    return group_op(a[0], op, "sends its refused payments again (see group show)");
  }
  admin_response_msg cmd_group_replace(const std::vector<std::string>& a) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::replace_account;
    admin_response_msg bad;
    if (!id_arg("group", a[0], &op.group_id, &bad) || !id_arg("old account", a[1], &op.wallet, &bad) ||
        !id_arg("new account", a[2], &op.amount, &bad))
      return bad;
    // The engine takes any account (it moves no money; the ledger decides the payments
    // sent to it later); an operator is told at once of one that could not take them.
    const reply acct = eng_.lookup_accounts({op.amount});
    if (acct.st != status::ok) return refused_by_engine(acct);
    if (acct.results.empty() || acct.results[0] != wire::result::ok)
      return answer(admin_code::not_found, "account " + a[2] + " does not exist");
    const auto& to = acct.accounts[0];
    if (to.status == wire::account_status::closed) return answer(admin_code::refused, "account " + a[2] + " is closed");
    uint64_t gid = 0;
    if (parse_u64(a[0], &gid) && gid != 0) {
      const reply g = eng_.lookup_groups({gid});
      if (g.st == status::ok && !g.results.empty() && g.results[0] == wire::result::ok &&
          g.groups[0].g.cfg.currency != to.currency)
        return answer(admin_code::refused, "account " + a[2] + " holds " + wire::currency_name(to.currency) +
                                               ", the group " + wire::currency_name(g.groups[0].g.cfg.currency));
    }
    return group_op(a[0], op, "names account " + a[2] + " wherever it named " + a[1] + " (group retry sends its refused payments)");
  }

  // The seat's wallet from a look-up; the amount the operator's, so that the engine
  // refuses a write-off of other debts than those seen (wrong_amount, nothing_owed).
  admin_response_msg cmd_group_write_off(const std::vector<std::string>& a) {
    wire::equb_op op;
    op.kind = wire::equb_op_kind::write_off;
    admin_response_msg bad;
    if (!id_arg("group", a[0], &op.group_id, &bad)) return bad;
    uint64_t seat = 0;
    if (!parse_u64(a[1], &seat) || seat >= actors::equb::seats_max)
      return answer(admin_code::arguments_invalid, "seat '" + a[1] + "' is not a decimal integer from 0 to " +
                                                       std::to_string(actors::equb::seats_max - 1));
    if (!parse_u64(a[2], &op.amount) || op.amount == 0)
      return answer(admin_code::arguments_invalid, "amount '" + a[2] + "' is not a decimal integer from 1 to 2^64-1");
    op.seat = uint32_t(seat);
    const reply g = eng_.lookup_groups({op.group_id});
    if (g.st != status::ok) return refused_by_engine(g);
    if (g.results.empty() || g.results[0] != wire::result::ok)
      return answer(admin_code::not_found, "group " + a[0] + " does not exist");
    const auto& seats = g.groups[0].g.seats;
    if (seat >= seats.size())
      return answer(admin_code::not_found, "group " + a[0] + " has " + std::to_string(seats.size()) + " seats");
    op.wallet = seats[seat].wallet;
    return group_op(a[0], op, "wrote off seat " + a[1] + "'s debts of " + a[2] + " (its creditors are not paid them)");
  }

  // ---- instruments (actors/market.hpp) ----
  static std::string reasons_text(uint8_t r) {
    if (r == 0) return "trading";
    std::string out;
    for (auto [bit, name] : {std::pair{wire::halt_reasons::manual, "halted"}, std::pair{wire::halt_reasons::move, "move"},
                             std::pair{wire::halt_reasons::stale, "stale"}})
      if (r & bit) out += (out.empty() ? "" : ",") + std::string(name);
    return out;
  }
  static std::vector<std::string> instrument_cells(const wire::instrument_state& s) {
    return {std::to_string(s.def.instrument_id), actors::market::symbol_of(s.def),
            std::string(wire::asset_class_name(uint8_t(s.def.cls))), wire::currency_name(s.def.currency),
            std::to_string(s.def.tick), std::to_string(s.def.lot), std::to_string(s.last_ticks),
            std::to_string(s.last_price_at), reasons_text(s.reasons), std::to_string(s.halts), std::to_string(s.prices)};
  }
  static std::vector<admin_column> instrument_columns() {
    return {{"instrument", true}, {"symbol", false}, {"class", false}, {"currency", false},
            {"tick", true},       {"lot", true},     {"last_ticks", true}, {"last_price_at", true},
            {"state", false},     {"halts", true},   {"prices", true}};
  }
  admin_response_msg cmd_instruments(const std::vector<std::string>& args) {
    uint64_t from = 0;
    if (!args.empty() && (args[0].rfind("from=", 0) != 0 || !parse_u64(args[0].substr(5), &from) || from == 0))
      return answer(admin_code::arguments_invalid, "'" + args[0] + "': give from=<instrument-id> (1 to 2^64-1)");
    const reply r = eng_.lookup_instruments({});
    if (r.st != status::ok) return refused_by_engine(r);
    std::vector<const wire::instrument_state*> listed;
    for (const auto& in : r.instruments)
      if (in.def.instrument_id >= from) listed.push_back(&in);
    std::sort(listed.begin(), listed.end(),
              [](auto* x, auto* y) { return x->def.instrument_id < y->def.instrument_id; });
    admin_response_msg m = answer(admin_code::ok, std::to_string(r.instruments.size()) + " instruments");
    admin_section s;
    s.title = "instruments";
    s.columns = instrument_columns();
    std::vector<uint64_t> ids;
    for (const auto* in : listed) {
      ids.push_back(in->def.instrument_id);
      if (s.rows.size() < wire::admin_rows_max) s.rows.push_back(instrument_cells(*in));
    }
    m.sections.push_back(std::move(s));
    fit_page(m, ids, "instruments");
    return m;
  }
  bool instrument_arg(const std::string& a, uint64_t* id, admin_response_msg* bad) {
    if (parse_u64(a, id) && *id != 0) return true;
    *bad = answer(admin_code::arguments_invalid, "instrument id '" + a + "' is not an integer from 1 to 2^64-1");
    return false;
  }
  admin_response_msg cmd_instrument_show(const std::vector<std::string>& args) {
    uint64_t id = 0;
    admin_response_msg bad;
    if (!instrument_arg(args[0], &id, &bad)) return bad;
    const reply r = eng_.lookup_instruments({id});
    if (r.st != status::ok) return refused_by_engine(r);
    if (r.results.empty() || r.results[0] != wire::result::ok)
      return answer(admin_code::not_found, "instrument " + args[0] + " is not listed");
    const auto& s = r.instruments[0];
    admin_response_msg m = answer(admin_code::ok, "instrument " + args[0] + ": " + reasons_text(s.reasons));
    admin_section sec;
    sec.title = "instrument";
    sec.columns = instrument_columns();
    sec.rows.push_back(instrument_cells(s));
    for (auto [name, v] : {std::pair{"move_bp", uint64_t(s.def.move_bp)}, {"move_window_ms", s.def.move_window_ms},
                           {"stale_ms", s.def.stale_ms}, {"halt_ms", s.def.halt_ms},
                           {"move_halt_until", s.move_halt_until}, {"defined_at", s.defined_at},
                           {"sequence", r.instrument_sequences.empty() ? 0 : r.instrument_sequences[0]}}) {
      sec.columns.push_back({name, true});
      sec.rows[0].push_back(std::to_string(v));
    }
    m.sections.push_back(std::move(sec));
    return m;
  }
  // The answer to one change the engine took or refused: a refusal `missing` is not_found
  // (`missing_text`), any other failed ("<name>: <result>"); taken, "<name><what>" and a
  // change row (`key`: the id, and the change's log position).
  admin_response_msg change_answer(const reply& r, const std::string& name, wire::result missing,
                                   const std::string& missing_text, const std::string& what, const char* key,
                                   uint64_t id) {
    if (r.st != status::ok) return refused_by_engine(r);
    const wire::result res = r.results.empty() ? wire::result::ok : r.results[0];
    if (res == missing) return answer(admin_code::not_found, missing_text);
    if (res != wire::result::ok) return answer(admin_code::failed, name + ": " + std::string(wire::result_name(res)));
    admin_response_msg m = answer(admin_code::ok, name + what);
    row_builder b("change");
    b.num(key, id).num("lsn", r.lsn);
    m.sections.push_back(std::move(b.sec));
    return m;
  }
  admin_response_msg instrument_change(const wire::instrument_op& op, const std::string& what) {
    const std::string name = "instrument " + std::to_string(op.instrument_id);
    return change_answer(eng_.instruments({op}), name, wire::result::instrument_not_found, name + " is not listed",
                         " " + what, "instrument", op.instrument_id);
  }
  // A sequence to count from: any u64.
  bool sequence_arg(const std::string& a, uint64_t* v, admin_response_msg* bad) {
    if (parse_u64(a, v)) return true;
    *bad = answer(admin_code::arguments_invalid, "sequence '" + a + "' is not an integer 0 .. 2^64-1");
    return false;
  }
  admin_response_msg cmd_instrument_define(const std::vector<std::string>& a) {
    wire::instrument_op op;
    admin_response_msg bad;
    op.kind = wire::instrument_op_kind::define;
    if (!instrument_arg(a[0], &op.instrument_id, &bad)) return bad;
    if (!actors::market::set_symbol(op, a[1]) || actors::market::symbol_of(op).empty())
      return answer(admin_code::arguments_invalid, "symbol '" + a[1] + "': 1 to 15 of A-Z 0-9 . -");
    for (uint8_t c = 1; c <= wire::asset_class_max; ++c)
      if (wire::asset_class_name(c) == a[2]) op.cls = wire::asset_class(c);
    if (uint8_t(op.cls) == 0)
      return answer(admin_code::arguments_invalid, "class '" + a[2] + "': cash_like, bond, equity or fund");
    if (!wire::parse_currency(a[3], &op.currency))
      return answer(admin_code::arguments_invalid, "currency '" + a[3] + "': three letters A-Z");
    uint64_t v[6] = {};
    namespace mk = actors::market;
    static const char* names[] = {"tick", "lot", "move_bp", "window_ms", "stale_ms", "halt_ms"};
    static const uint64_t maxima[] = {mk::tick_max, mk::lot_max, mk::move_bp_max, mk::window_ms_max, mk::stale_ms_max,
                                      mk::halt_ms_max};
    for (int i = 0; i < 6; ++i)
      if (!parse_u64(a[4 + i], &v[i]) || v[i] == 0 || v[i] > maxima[i])
        return answer(admin_code::arguments_invalid, std::string(names[i]) + " '" + a[4 + i] + "' is not an integer 1.." +
                                                         std::to_string(maxima[i]));
    op.tick = v[0];
    op.lot = v[1];
    op.move_bp = uint32_t(v[2]);
    op.move_window_ms = uint32_t(v[3]);
    op.stale_ms = uint32_t(v[4]);
    op.halt_ms = uint32_t(v[5]);
    if (!mk::tradable(op))  // the engine would answer lot_invalid
      return answer(admin_code::arguments_invalid,
                    "tick x lot (" + a[4] + " x " + a[5] + ") passes 2^53 minor units, the most an order's notional " +
                        "may be: a lot at one tick could never be bought");
    return instrument_change(op, "listed (" + a[1] + ")");
  }
  admin_response_msg cmd_instrument_halt(const std::vector<std::string>& a) {
    wire::instrument_op op;
    admin_response_msg bad;
    if (!instrument_arg(a[0], &op.instrument_id, &bad)) return bad;
    op.kind = wire::instrument_op_kind::halt;
    return instrument_change(op, "halted");
  }
  admin_response_msg cmd_instrument_resume(const std::vector<std::string>& a) {
    wire::instrument_op op;
    admin_response_msg bad;
    if (!instrument_arg(a[0], &op.instrument_id, &bad)) return bad;
    op.kind = wire::instrument_op_kind::resume;
    return instrument_change(op, "resumed");
  }
  admin_response_msg cmd_instrument_resequence(const std::vector<std::string>& a) {
    wire::instrument_op op;
    admin_response_msg bad;
    if (!instrument_arg(a[0], &op.instrument_id, &bad) || !sequence_arg(a[1], &op.tick, &bad)) return bad;
    op.kind = wire::instrument_op_kind::resequence;
    return instrument_change(op, "prices count from sequence " + std::to_string(op.tick) + " (the next must be greater)");
  }

  // ---- customers and policy (actors/customers.hpp) ----
  admin_response_msg cmd_policy(const std::vector<std::string>&) {
    const reply r = eng_.lookup_policy();
    if (r.st != status::ok) return refused_by_engine(r);
    actors::customers::policy p;
    std::string why;
    if (!actors::customers::policy::decode(r.policy, &p, &why)) return answer(admin_code::failed, why);
    admin_response_msg m = answer(admin_code::ok, "policy");
    admin_section tiers;
    tiers.title = "tiers";
    tiers.columns = {{"tier", true}, {"currency", false}, {"single_max", true}, {"daily_outflow_max", true},
                     {"balance_max", true}};
    p.for_each_tier([&](uint8_t n, wire::currency_code c, const actors::customers::tier_limits& l) {
      tiers.rows.push_back({std::to_string(n), wire::currency_name(c), std::to_string(l.single_max),
                            std::to_string(l.daily_outflow_max), std::to_string(l.balance_max)});
    });
    admin_section profiles;
    profiles.title = "profiles";
    profiles.columns = {{"profile", false}, {"classes", false}, {"position_max", true}};
    for (uint8_t k = 1; k <= wire::risk_profile_max; ++k) {
      const auto* pr = p.profile(k);
      profiles.rows.push_back({std::string(wire::risk_profile_name(k)), pr ? classes_text(pr->classes) : "(not set)",
                               std::to_string(pr ? pr->position_max : 0)});
    }
    admin_section models;
    models.title = "models";
    models.columns = {{"profile", false}, {"instrument", true}, {"weight_bp", true}};
    for (uint8_t k = 1; k <= wire::risk_profile_max; ++k)
      for (const auto& [i, w] : p.model(k))
        models.rows.push_back({std::string(wire::risk_profile_name(k)), std::to_string(i), std::to_string(w)});
    m.sections.push_back(std::move(tiers));
    m.sections.push_back(std::move(profiles));
    m.sections.push_back(std::move(models));
    return m;
  }
  // A profile's asset classes (bit cls - 1), comma-separated.
  static std::string classes_text(uint8_t classes) {
    std::string out;
    for (uint8_t c = 1; c <= wire::asset_class_max; ++c)
      if (classes & (1u << (c - 1))) out += (out.empty() ? "" : ",") + std::string(wire::asset_class_name(c));
    return out;
  }
  admin_response_msg policy_change(const wire::policy_op& op, const std::string& what) {
    const reply r = eng_.policies({op});
    if (r.st != status::ok) return refused_by_engine(r);
    const wire::result res = r.results.empty() ? wire::result::ok : r.results[0];
    if (res == wire::result::policy_op_invalid)  // the arguments were checked here: a limit of the policy
      return answer(admin_code::failed, what + ": policy_op_invalid (" + policy_limit_met(op) + ")");
    if (res != wire::result::ok) return answer(admin_code::failed, what + ": " + std::string(wire::result_name(res)));
    admin_response_msg m = answer(admin_code::ok, what + " set");
    row_builder b("change");
    b.text("policy", what).num("lsn", r.lsn);
    m.sections.push_back(std::move(b.sec));
    return m;
  }
  // Which of the policy's limits a change whose fields were valid met, from the policy as
  // it is now (a look-up after the refusal).
  std::string policy_limit_met(const wire::policy_op& op) {
    namespace cu = actors::customers;
    const reply r = eng_.lookup_policy();
    cu::policy p;
    std::string why;
    if (r.st != status::ok || !cu::policy::decode(r.policy, &p, &why)) return "the policy could not be looked up";
    if (op.kind == wire::policy_op_kind::tier) {
      size_t rows = 0;
      p.for_each_tier([&](auto&&...) { ++rows; });
      return "the policy holds " + std::to_string(rows) + " tier rows (tier and currency), at most " +
             std::to_string(cu::tier_rows_max);
    }
    if (op.kind == wire::policy_op_kind::model) {
      const auto& m = p.model(op.number);
      uint64_t total = 0;
      for (const auto& [i, w] : m) total += w;
      const auto it = m.find(op.single_max);
      const uint64_t others = total - (it == m.end() ? 0 : it->second);
      if (others + op.daily_outflow_max > cu::model_weight_total_max)
        return "the profile's other instruments weigh " + std::to_string(others) + " bp: with this one " +
               std::to_string(others + op.daily_outflow_max) + ", over " + std::to_string(cu::model_weight_total_max) +
               " (100%)";
      if (it == m.end() && m.size() >= cu::model_instruments_max)
        return "the profile's model holds " + std::to_string(m.size()) + " instruments, at most " +
               std::to_string(cu::model_instruments_max);
    }
    return "a limit of the policy; see policy";
  }
  admin_response_msg cmd_tier_set(const std::vector<std::string>& a) {
    wire::policy_op op;
    op.kind = wire::policy_op_kind::tier;
    uint64_t n = 0;
    if (!parse_u64(a[0], &n) || n == 0 || n > actors::customers::tiers_max)
      return answer(admin_code::arguments_invalid, "tier '" + a[0] + "': 1 to 16");
    op.number = uint8_t(n);
    if (!wire::parse_currency(a[1], &op.currency))
      return answer(admin_code::arguments_invalid, "currency '" + a[1] + "': three letters A-Z");
    uint64_t* limits[] = {&op.single_max, &op.daily_outflow_max, &op.balance_max};
    static constexpr const char* limit_names[] = {"single_max", "daily_outflow_max", "balance_max"};
    for (int i = 0; i < 3; ++i)
      if (!parse_u64(a[2 + i], limits[i]) || *limits[i] == 0)
        return answer(admin_code::arguments_invalid,
                      std::string(limit_names[i]) + " '" + a[2 + i] + "' is not a positive integer (minor units)");
    return policy_change(op, "tier " + a[0] + " " + a[1]);
  }
  admin_response_msg cmd_profile_set(const std::vector<std::string>& a) {
    wire::policy_op op;
    op.kind = wire::policy_op_kind::profile;
    for (uint8_t k = 1; k <= wire::risk_profile_max; ++k)
      if (wire::risk_profile_name(k) == a[0]) op.number = k;
    if (op.number == 0)
      return answer(admin_code::arguments_invalid, "profile '" + a[0] + "': conservative, moderate or aggressive");
    if (a[1].empty() || a[1].back() == ',')
      return answer(admin_code::arguments_invalid,
                    "classes '" + a[1] + "': a comma-separated list of one or more, no empty item");
    std::stringstream words(a[1]);
    for (std::string w; std::getline(words, w, ',');) {
      uint8_t bit = 0;
      for (uint8_t c = 1; c <= wire::asset_class_max; ++c)
        if (wire::asset_class_name(c) == w) bit = uint8_t(1u << (c - 1));
      if (bit == 0)
        return answer(admin_code::arguments_invalid, "class '" + w + "': cash_like, bond, equity or fund");
      op.classes |= bit;
    }
    if (!parse_u64(a[2], &op.position_max) || op.position_max == 0)
      return answer(admin_code::arguments_invalid, "position_max '" + a[2] + "' is not a positive integer");
    return policy_change(op, "profile " + a[0]);
  }
  admin_response_msg cmd_model_set(const std::vector<std::string>& a) {
    uint8_t profile = 0;
    uint64_t instrument = 0, weight = 0;
    for (uint8_t k = 1; k <= wire::risk_profile_max; ++k)
      if (wire::risk_profile_name(k) == a[0]) profile = k;
    if (profile == 0)
      return answer(admin_code::arguments_invalid, "profile '" + a[0] + "': conservative, moderate or aggressive");
    if (!parse_u64(a[1], &instrument) || instrument == 0)
      return answer(admin_code::arguments_invalid, "instrument '" + a[1] + "' is not a positive integer");
    if (!parse_u64(a[2], &weight) || weight > actors::customers::model_weight_total_max)
      return answer(admin_code::arguments_invalid, "weight '" + a[2] + "': 0 to 10,000 basis points");
    // A weight on what rebalancing could never buy is refused here (the policy does not
    // know the market): an instrument not listed, or of a class the profile forbids. A
    // weight of 0 takes the instrument out whatever it is.
    if (weight != 0) {
      const reply ri = eng_.lookup_instruments({instrument});
      if (ri.st != status::ok) return refused_by_engine(ri);
      if (ri.results.empty() || ri.results[0] != wire::result::ok || ri.instruments.empty())
        return answer(admin_code::not_found,
                      "instrument " + a[1] + " is not listed: define it first (instrument define)");
      const reply rp = eng_.lookup_policy();
      if (rp.st != status::ok) return refused_by_engine(rp);
      actors::customers::policy p;
      std::string why;
      if (!actors::customers::policy::decode(rp.policy, &p, &why)) return answer(admin_code::failed, why);
      const actors::customers::profile_rules* pr = p.profile(profile);
      if (!pr)
        return answer(admin_code::failed, "profile " + a[0] +
                                              " has no asset classes set: set them first (profile set), so that "
                                              "its model's instruments can be checked against them");
      const uint8_t cls = uint8_t(ri.instruments[0].def.cls);
      if (!(pr->classes & (1u << (cls - 1))))
        return answer(admin_code::failed, "instrument " + a[1] + " is " + std::string(wire::asset_class_name(cls)) +
                                              ", which profile " + a[0] + " does not allow (it allows " +
                                              classes_text(pr->classes) + "): its customers could never buy it");
    }
    return policy_change(actors::customers::model_op(profile, instrument, weight), "model " + a[0] + " instrument " + a[1]);
  }
  admin_response_msg cmd_customer_show(const std::vector<std::string>& args) {
    uint64_t id = 0;
    admin_response_msg bad;
    if (!account_arg(args[0], &id, &bad)) return bad;
    const reply r = eng_.lookup_customers({id});
    if (r.st != status::ok) return refused_by_engine(r);
    if (r.results.empty() || r.results[0] != wire::result::ok)
      return answer(admin_code::not_found, "wallet " + args[0] + " has no KYC record");
    const auto& c = r.customers[0];
    admin_response_msg m = answer(admin_code::ok, "customer " + args[0]);
    row_builder b("customer");
    b.num("wallet", c.wallet)
        .text("kyc", std::string(wire::kyc_status_name(uint8_t(c.kyc))))
        .num("tier", c.tier)
        .text("profile", std::string(wire::risk_profile_name(uint8_t(c.profile))))
        .num("outflow_today", c.outflow_today)
        .num("reference", c.reference)
        .num("updated_at", c.updated_at)
        .num("sequence", c.sequence);
    m.sections.push_back(std::move(b.sec));
    return m;
  }
  admin_response_msg cmd_customer_resequence(const std::vector<std::string>& a) {
    wire::customer_op op;
    admin_response_msg bad;
    if (!account_arg(a[0], &op.wallet, &bad) || !sequence_arg(a[1], &op.sequence, &bad)) return bad;
    op.kind = wire::customer_op_kind::resequence;
    return change_answer(eng_.customers({op}), "customer " + std::to_string(op.wallet), wire::result::customer_not_found,
                         "wallet " + std::to_string(op.wallet) + " has no KYC record",
                         ": KYC records count from sequence " + std::to_string(op.sequence) + " (the next must be greater)",
                         "wallet", op.wallet);
  }

  admin_response_msg set_status(const std::vector<std::string>& args, wire::account_status to, const char* done) {
    uint64_t id = 0;
    admin_response_msg bad;
    if (!account_arg(args[0], &id, &bad)) return bad;
    wire::account_status_change c{};
    c.account_id = id;
    c.status = to;
    if (args.size() > 1) {
      uint64_t seq = 0;
      if (!parse_u64(args[1], &seq) || seq == 0 || seq > UINT32_MAX)
        return answer(admin_code::arguments_invalid, "seq '" + args[1] + "' is not an integer 1 .. 4294967295");
      c.seq = uint32_t(seq);
    }
    const reply r = eng_.set_account_status({c});
    if (r.st != status::ok) return refused_by_engine(r);
    const wire::result res = r.results.empty() ? wire::result::ok : r.results[0];
    if (res == wire::result::account_not_found) return answer(admin_code::not_found, "account " + args[0] + " does not exist");
    if (res != wire::result::ok)
      return answer(admin_code::failed, "account " + args[0] + ": " + std::string(wire::result_name(res)));
    // An unnumbered change took the account's next number: the one a look-up finds after
    // it (a change made since by someone else would show its own, which `account show` gives too).
    uint64_t seq = c.seq;  // 0: not known
    std::string how;
    if (c.seq == 0) {
      const reply after = eng_.lookup_accounts({id});
      if (after.st == status::ok && !after.results.empty() && after.results[0] == wire::result::ok)
        seq = after.accounts[0].status_seq;
      how = seq != 0 ? " (unnumbered: seq is the account's status_seq looked up after the change)"
                     : " (unnumbered; its number could not be looked up: see account show)";
    }
    admin_response_msg m = answer(admin_code::ok, "account " + args[0] + " " + done + how);
    row_builder b("change");
    b.num("account_id", id).text("status", status_text(uint16_t(to)));
    if (seq != 0) b.num("seq", seq);
    b.num("lsn", r.lsn);
    m.sections.push_back(std::move(b.sec));
    return m;
  }
  admin_response_msg cmd_account_freeze(const std::vector<std::string>& a) {
    return set_status(a, wire::account_status::frozen, "frozen");
  }
  admin_response_msg cmd_account_unfreeze(const std::vector<std::string>& a) {
    return set_status(a, wire::account_status::open, "reopened");
  }

  admin_response_msg cmd_transfer_show(const std::vector<std::string>& args) {
    wire::id128 id;
    if (!parse_id128(args[0], &id))
      return answer(admin_code::arguments_invalid, "transfer id '" + args[0] +
                                                       "' is neither a decimal integer from 1 to 2^64-1 nor 0x "
                                                       "and 1 to 32 hex digits (not zero)");
    const reply r = eng_.lookup_transfers({id});
    if (r.st != status::ok) return refused_by_engine(r);
    if (r.results.empty() || r.results[0] != wire::result::ok)
      return answer(admin_code::not_found, "transfer " + args[0] + " is not recorded");
    const auto& rec = r.transfers[0];
    row_builder b("transfer");
    b.text("id", id_text(rec.t.id))
        .text("pending_id", rec.t.pending_id.zero() ? "" : id_text(rec.t.pending_id))
        .num("debit_account_id", rec.t.debit_account_id)
        .num("credit_account_id", rec.t.credit_account_id)
        .num("amount", rec.t.amount)
        .text("currency", wire::currency_name(rec.t.currency))
        .num("code", rec.t.code)
        .text("flags", transfer_flags_text(rec.t.flags))
        .num("timeout_s", rec.t.timeout_s)
        .num("user_data", rec.t.user_data)
        .num("timestamp", rec.t.timestamp)
        .text("result", std::string(wire::result_name(wire::result(rec.result))))
        .num("debit_after_debits_posted", rec.debit_after_debits_posted)
        .num("debit_after_credits_posted", rec.debit_after_credits_posted)
        .num("credit_after_debits_posted", rec.credit_after_debits_posted)
        .num("credit_after_credits_posted", rec.credit_after_credits_posted);
    admin_response_msg m;
    m.sections.push_back(std::move(b.sec));
    return m;
  }

  admin_response_msg cmd_snapshot(const std::vector<std::string>&) {
    const auto t0 = std::chrono::steady_clock::now();
    std::string err;
    if (!eng_.checkpoint(&err)) return answer(admin_code::failed, "snapshot failed: " + err);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const auto st = eng_.stats();
    admin_response_msg m = answer(admin_code::ok, "snapshot taken at lsn " + std::to_string(st.snapshot_lsn));
    row_builder b("snapshot");
    b.num("snapshot_lsn", st.snapshot_lsn).num("checkpoints", st.checkpoints).num("milliseconds", uint64_t(s * 1000 + 0.5));
    m.sections.push_back(std::move(b.sec));
    return m;
  }

  admin_response_msg cmd_log_verify(const std::vector<std::string>&) {
    // A stop ends the scan (a log of gigabytes takes minutes): the admin port's drain and
    // the endpoint's stop do not wait for it (mesobd calls begin_stop before the drain).
    const auto v = eng_.verify_log(&stopping_);
    const bool unknown = v.read_failed || v.stopped || v.gave_way;
    admin_response_msg m = answer(v.stopped || v.gave_way ? admin_code::refused
                                  : v.intact              ? admin_code::ok
                                  : v.read_failed         ? admin_code::failed
                                                          : admin_code::check_failed,
                                  v.stopped       ? "log verify stopped: the admin endpoint is stopping (" + v.fault + ")"
                                  : v.gave_way    ? "log verify stopped: it " + v.fault
                                  : v.intact      ? "log intact up to lsn " + std::to_string(v.durable_lsn)
                                  : v.read_failed ? "log not checked: " + v.fault
                                                  : "log damaged: " + v.fault);
    row_builder b("log");
    b.text("intact", v.intact ? "yes" : unknown ? "unknown" : "no")
        .num("segments", v.segments)
        .num("records", v.records)
        .num("first_lsn", v.first_lsn)
        .num("last_lsn", v.last_lsn)
        .num("durable_lsn", v.durable_lsn)
        .text("chain_head", v.chain_head)
        .num("milliseconds", uint64_t(v.seconds * 1000 + 0.5));
    m.sections.push_back(std::move(b.sec));
    return m;
  }

  admin_response_msg cmd_audit(const std::vector<std::string>&) {
    request q;
    q.kind = op_kind::currency_totals;
    const reply r = eng_.call(std::move(q));
    if (r.st != status::ok) return refused_by_engine(r);
    admin_section s;
    s.title = "money by currency";
    s.columns = {{"currency", false},       {"debits_posted", true},   {"credits_posted", true},
                 {"debits_pending", true},  {"credits_pending", true}, {"balanced", false}};
    std::string faults;
    for (const auto& t : r.totals) {
      const bool ok = t.debits_posted == t.credits_posted && t.debits_pending == t.credits_pending;
      if (!ok) faults += (faults.empty() ? "" : ", ") + wire::currency_name(t.currency);
      s.rows.push_back({wire::currency_name(t.currency), wire::decimal_text(t.debits_posted), wire::decimal_text(t.credits_posted),
                        wire::decimal_text(t.debits_pending), wire::decimal_text(t.credits_pending), ok ? "yes" : "NO"});
    }
    const bool groups_ok = r.group_faults.empty();
    std::string message = faults.empty() ? "money is conserved in every currency (" + std::to_string(r.totals.size()) + ")"
                                         : "debits and credits differ in: " + faults;
    message += groups_ok ? "; every equb group's escrow, payout desk's account and portfolio's holds are what "
                               "it says (" + std::to_string(r.groups_checked) + ")"
                         : "; " + std::to_string(r.group_faults.size()) +
                               " equb groups, payout desks or portfolios do not match their accounts";
    admin_response_msg m = answer(faults.empty() && groups_ok ? admin_code::ok : admin_code::check_failed, message);
    m.sections.push_back(std::move(s));
    if (!groups_ok) {
      admin_section g;
      g.title = "equb groups, payout desks and portfolios that do not match their accounts";
      g.columns = {{"fault", false}};
      for (const auto& f : r.group_faults) g.rows.push_back({f});
      m.sections.push_back(std::move(g));
    }
    return m;
  }

  admin_response_msg cmd_audit_trail(const std::vector<std::string>& args) {
    uint64_t n = trail_show_default;
    if (!args.empty() && (!parse_u64(args[0], &n) || n == 0 || n > storage::audit_log::tail_kept))
      return answer(admin_code::arguments_invalid,
                    "count '" + args[0] + "' must be 1 to " + std::to_string(storage::audit_log::tail_kept));
    admin_section s;
    s.title = "audit trail";
    s.columns = {{"time", false}, {"gateway", false}, {"session", true}, {"peer", false}, {"event", false},
                 {"command", false}};
    for (const auto& e : trail_->tail(size_t(n))) {
      std::vector<std::string> f;
      size_t at = 0;
      while (f.size() < 5) {
        const size_t tab = e.find('\t', at);
        if (tab == std::string::npos) break;
        f.push_back(e.substr(at, tab - at));
        at = tab + 1;
      }
      if (f.size() < 5) continue;  // written by a later version: skip what cannot be read
      uint64_t ns = 0;
      f[0] = parse_u64(f[0], &ns) ? utc_text(ns) : f[0];
      f.push_back(e.substr(at));
      s.rows.push_back(std::move(f));
    }
    // Oldest first; what does not fit one answer is left out from the oldest end, so
    // that the latest commands, the ones looked for, are always there.
    size_t from = s.rows.size(), bytes = 0;
    while (from > 0 && s.rows.size() - from < wire::admin_rows_max &&
           bytes + row_bytes(s.rows[from - 1]) <= response_bytes_max - 1024) {
      bytes += row_bytes(s.rows[from - 1]);
      --from;
    }
    std::string note;
    if (from > 0) {
      s.rows.erase(s.rows.begin(), s.rows.begin() + ptrdiff_t(from));
      note = "; the newest " + std::to_string(s.rows.size()) + " are shown (older ones do not fit one answer)";
    }
    admin_response_msg m =
        answer(admin_code::ok, std::to_string(trail_->entries()) + " entries in the audit trail's current file, " +
                                   std::to_string(trail_->files_rotated()) + " rotated file(s) beside it" + note);
    m.sections.push_back(std::move(s));
    return m;
  }

  admin_response_msg cmd_events(const std::vector<std::string>& a) {
    event_hub* hub = eng_.events();
    if (!hub) return answer(admin_code::refused, "this engine keeps no event log (started with --no-events)");
    std::vector<event_hub::name_info> names;
    std::string err;
    if (!hub->names(&names, &err)) return answer(admin_code::failed, "events: " + err);
    admin_section live;
    live.title = "subscribed sessions";
    live.columns = {{"session", true}, {"name", false}, {"acknowledged", true}, {"sent", true}, {"lag", true}};
    const auto subs = hub->subscribers();
    // At most a quarter of an answer's rows: the rest is the named subscribers' page,
    // which then always moves on (from-name) however many sessions are subscribed.
    constexpr size_t live_shown_max = wire::admin_rows_max / 4;
    for (const auto& s : subs) {
      if (live.rows.size() == live_shown_max) break;
      live.rows.push_back({std::to_string(s.session), s.name.empty() ? "-" : s.name, std::to_string(s.acked),
                           std::to_string(s.sent), std::to_string(s.lag)});
    }
    admin_section kept;
    kept.title = "named subscribers";
    kept.columns = {{"name", false}, {"gateway", false}, {"acknowledged", true}, {"session", true}};
    for (const auto& n : names)
      if (a.empty() || n.name >= a[0])
        kept.rows.push_back({n.name, n.owner.empty() ? "(none)" : n.owner, std::to_string(n.acked),
                             n.session ? std::to_string(n.session) : "-"});
    admin_response_msg m =
        answer(admin_code::ok, std::to_string(subs.size()) + " sessions subscribed" +
                                   (subs.size() > live_shown_max
                                        ? " (the first " + std::to_string(live_shown_max) + " shown)"
                                        : std::string()) +
                                   ", the windows reserving " + std::to_string(hub->windows_reserved()) + " of " +
                                   std::to_string(hub->windows_bytes_max()) +
                                   " bytes (with those of ended subscriptions whose sessions are open), " +
                                   std::to_string(names.size()) +
                                   " named subscribers kept (at most " +
                                   std::to_string(subscriber_names_max) + ")");
    m.sections.push_back(std::move(live));
    m.sections.push_back(std::move(kept));
    return m;
  }

  admin_response_msg cmd_events_forget(const std::vector<std::string>& a) {
    event_hub* hub = eng_.events();
    if (!hub) return answer(admin_code::refused, "this engine keeps no event log (started with --no-events)");
    std::string err;
    switch (hub->forget(a[0], &err)) {
      case event_hub::forgotten::yes: break;
      case event_hub::forgotten::unknown: return answer(admin_code::not_found, err);
      case event_hub::forgotten::held: return answer(admin_code::refused, err);
      case event_hub::forgotten::not_saved: return answer(admin_code::failed, "events: " + err);
      case event_hub::forgotten::no_answer:  // queued to the hub, it may still happen
        return answer(admin_code::failed, "events: " + err + " (the name may still be forgotten: see events)");
    }
    return answer(admin_code::ok, "'" + a[0] + "' is forgotten: any gateway may subscribe under it, from its own start");
  }

  admin_response_msg cmd_shutdown(const std::vector<std::string>&) {
    if (!cfg_.shutdown) return answer(admin_code::refused, "shutdown is not available in this process");
    return answer(admin_code::ok, "draining: every request taken is answered, then a snapshot, then the engine stops");
  }

  void tick() {
    std::lock_guard lk(mu_);
    samples_[0] = samples_[1];
    samples_[1] = {std::chrono::steady_clock::now(), eng_.stats().transfers, clients_ ? clients_->stats().requests : 0};
  }
};

}  // namespace mesob::engine

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<mesob::engine::admin_impl::long_work>)

namespace mesob::engine {

admin_endpoint::admin_endpoint(std::unique_ptr<admin_impl> impl) : impl_(std::move(impl)) {}

std::unique_ptr<admin_endpoint> admin_endpoint::open(engine& e, admin_config cfg, std::string* error,
                                                     std::string* repaired) {
  auto impl = std::make_unique<admin_impl>(e, std::move(cfg));
  impl->trail_ = storage::audit_log::open(impl->cfg_.data_dir + "/admin-audit.log", &impl->trail_error_, repaired);
  if (!impl->trail_) *error = impl->trail_error_;  // the endpoint still runs: it refuses every command
  impl->tick();
  admin_impl* p = impl.get();
  // The long lane: one long command at a time (execute took the lane before handing it on).
  impl->long_actor_ = e.actor_system().spawn<caf::detached>([p](caf::event_based_actor*) -> caf::behavior {
    pthread_setname_np(pthread_self(), "mesob.admin.long");
    return {
        [p](const std::shared_ptr<admin_job>& job, const std::shared_ptr<admin_impl::long_work>& w) {
          job->answer(p->finish_long(*w));
        },
    };
  });
  impl->actor_ = e.actor_system().spawn<caf::detached>([p](caf::event_based_actor* self) -> caf::behavior {
    pthread_setname_np(pthread_self(), "mesob.admin");
    self->delayed_send(self, std::chrono::seconds(1), caf::atom("tick"));
    return {
        [p, self](const std::shared_ptr<admin_job>& job) {
          if (p->stopping_.load()) {  // queued before the endpoint began to stop: not run
            job->answer(answer(admin_code::refused, "the admin endpoint is stopping"));
            return;
          }
          bool shutdown = false;
          std::optional<admin_impl::long_work> deferred;
          admin_response_msg out = p->execute(job->who, job->req, &shutdown, &deferred);
          if (deferred) {
            self->send(p->long_actor_, job, std::make_shared<admin_impl::long_work>(std::move(*deferred)));
            return;
          }
          job->answer(std::move(out));
          if (shutdown) p->cfg_.shutdown();  // after the answer is on its way
        },
        [p, self](caf::atom_value) {
          p->tick();
          self->delayed_send(self, std::chrono::seconds(1), caf::atom("tick"));
        },
    };
  });
  return std::unique_ptr<admin_endpoint>(new admin_endpoint(std::move(impl)));
}

void admin_endpoint::begin_stop() {
  if (impl_) impl_->stopping_.store(true);
}

admin_endpoint::~admin_endpoint() {
  if (!impl_ || !impl_->actor_) return;
  impl_->stopping_.store(true);  // jobs still queued are answered `refused`, not run
  caf::scoped_actor self{impl_->eng_.actor_system()};
  self->send_exit(impl_->actor_, caf::exit_reason::user_shutdown);
  self->wait_for(impl_->actor_);
  self->send_exit(impl_->long_actor_, caf::exit_reason::user_shutdown);
  self->wait_for(impl_->long_actor_);
}

void admin_endpoint::set_servers(const server* clients, const server* admin_port) {
  std::lock_guard lk(impl_->mu_);
  impl_->clients_ = clients;
  impl_->admin_port_ = admin_port;
}

admin_handler admin_endpoint::handler() {
  caf::actor a = impl_->actor_;
  return [a](const admin_identity& who, wire::admin_request_msg&& req, admin_reply reply) {
    caf::anon_send(a, std::make_shared<admin_job>(who, std::move(req), std::move(reply)));
  };
}

}  // namespace mesob::engine
