#include "perf/load/mesob_target.hpp"

#include <algorithm>
#include <chrono>
#include <thread>
#include <utility>

#include "actors/market.hpp"
#include "wire/async_client.hpp"

namespace mesob::load {
namespace {

constexpr uint32_t chunk = wire::batch_operations_max;
// Setup's funding transfers carry this id.hi (and the account id as id.lo): running setup
// again on the same accounts repeats them, and the engine answers with the first outcome.
constexpr uint64_t funding_id_hi = 0x6d65736f622d6675ull;  // "mesob-fu"

std::string outcome_failure(const wire::client::outcome& r) {
  if (r.ok) return {};
  if (r.server_error)
    return "server error " + std::to_string(int(r.error.code)) + ": " + r.error.message;
  return r.failure.empty() ? "no response" : r.failure;
}

class mesob_connection final : public target_connection {
 public:
  mesob_connection(std::unique_ptr<wire::async_client> c, uint32_t window, const workload& w)
      : c_(std::move(c)), window_(window), kind_(w.kind), w_(w) {}
  void submit(std::vector<wire::transfer> batch, std::function<void(batch_outcome&&)> done) override {
    auto r = request_of(std::move(batch), std::move(done));
    c_->submit(std::move(r.body), std::move(r.done));
  }
  void submit_all(std::vector<submission> all) override {
    std::vector<wire::async_client::request> rs;
    rs.reserve(all.size());
    for (auto& s : all) rs.push_back(request_of(std::move(s.batch), std::move(s.done)));
    c_->submit(std::move(rs));
  }
  [[nodiscard]] uint32_t window_max() const override { return window_; }
  [[nodiscard]] uint64_t reconnects() const override { return c_->reconnects(); }
  [[nodiscard]] uint64_t resent() const override { return c_->resent(); }

 private:
  wire::async_client::request request_of(std::vector<wire::transfer> batch, std::function<void(batch_outcome&&)> done) {
    const size_t n = batch.size();
    std::vector<uint8_t> body;
    if (kind_ == item_kind::deposits) {
      std::vector<wire::deposit> d;
      d.reserve(n);
      for (const auto& t : batch) d.push_back(deposit_of(t));
      body = wire::deposits_body(d);
    } else if (kind_ == item_kind::payouts) {
      std::vector<wire::payout> p;
      p.reserve(n);
      for (const auto& t : batch) p.push_back(payout_of(t));
      body = wire::payouts_body(p);
    } else if (kind_ == item_kind::orders) {
      std::vector<wire::order> o;
      o.reserve(n);
      for (const auto& t : batch) o.push_back(order_of(w_, t));
      body = wire::orders_body(o);
    } else {
      body = wire::create_transfers_body(batch);
    }
    return {std::move(body), [n, done = std::move(done)](wire::client::outcome&& r) {
              batch_outcome out;
              out.failure = outcome_failure(r);
              out.maybe_applied = r.unknown;  // (an Error frame, or never sent: not applied)
              if (out.failure.empty()) {
                if (r.reply.results.size() != n) {
                  out.failure = "reply has " + std::to_string(r.reply.results.size()) + " results for " +
                                std::to_string(n) + " transfers";
                  out.maybe_applied = true;  // answered: some may have been applied
                } else
                  out.results = std::move(r.reply.results);
              }
              done(std::move(out));
            }};
  }

  std::unique_ptr<wire::async_client> c_;
  uint32_t window_;
  item_kind kind_;
  workload w_;
};

class mesob_target final : public target {
 public:
  explicit mesob_target(const wire::client::options& o) : opt_(o) {}

  bool open(std::string* error) {
    c_ = wire::client::connect(opt_, error);
    if (!c_) return false;
    window_ = std::max<uint32_t>(1, c_->welcome().in_flight_max);
    return true;
  }

  [[nodiscard]] std::string name() const override { return "mesob"; }
  [[nodiscard]] std::string supports(const workload&) const override { return {}; }

  bool setup(const workload& w, std::string* error) override {
    // The funding account (no balance limit) and the load's accounts (debits must not
    // exceed credits: a transfer that overdraws is rejected, as the baselines' check),
    // then each account's opening balance from the funding account, a request at a time.
    const uint64_t n = w.accounts + 1;  // item 0 is the funding account
    for (uint64_t at = 0; at < n; at += chunk) {
      std::vector<wire::account> part;
      for (uint64_t i = at; i < std::min<uint64_t>(n, at + chunk); ++i) {
        wire::account a;
        a.id = i == 0 ? w.funding_account() : w.first_account + i - 1;
        a.currency = w.currency;
        a.kind = i == 0 ? wire::account_kind::system : wire::account_kind::customer_wallet;
        a.flags = i == 0 ? 0 : wire::account_flags::debits_must_not_exceed_credits;
        part.push_back(a);
      }
      if (!check_results(c_->call(wire::create_accounts_body(part)), part.size(), "creating accounts", error))
        return false;
    }
    for (uint64_t at = 0; at < w.accounts; at += chunk) {
      std::vector<wire::transfer> part;
      for (uint64_t i = at; i < std::min<uint64_t>(w.accounts, at + chunk); ++i) {
        wire::transfer t;
        t.id = wire::id128{w.first_account + i, funding_id_hi};
        t.debit_account_id = w.funding_account();
        t.credit_account_id = w.first_account + i;
        t.amount = w.opening;
        t.currency = w.currency;
        part.push_back(t);
      }
      if (!check_results(c_->call(wire::create_transfers_body(part)), part.size(), "funding accounts", error))
        return false;
    }
    // A previous run's accounts would make verification meaningless: they must hold
    // exactly their opening balance now.
    std::vector<int64_t> net;
    if (!read_accounts(w, w.accounts, error, [&](const wire::account& a) {
          net.push_back(int64_t(a.credits_posted) - int64_t(a.debits_posted));
        }))
      return false;
    for (uint64_t i = 0; i < w.accounts; ++i)
      if (net[i + 1] != int64_t(w.opening)) {
        *error = "account " + std::to_string(w.first_account + i) +
                 " exists with other transfers than its opening balance (a previous run's): choose another "
                 "--first-account";
        return false;
      }
    if (w.kind == item_kind::orders) return setup_orders(w, error);
    return w.kind != item_kind::equb || setup_equb(w, error);
  }

  // Orders: the instrument (a fund in the load's currency, tick 1, lot 1) and its price;
  // every account a verified customer of tier 1 and the moderate profile. The policy (tier
  // 1's limits in the currency, the moderate profile allowing funds) is an operator's to
  // set (admin `tier set`, `profile set`); a broker registered on the admin port answers.
  // Repeats: the definition and the customer records again are answered ok (no change).
  bool setup_orders(const workload& w, std::string* error) {
    const auto def = actors::market::definition(workload::order_instrument, "LOAD", wire::asset_class::fund, w.currency,
                                                1, 1, {9000, 60'000, 86'400'000, 1000});
    if (!check_results(c_->call(wire::instrument_ops_body(std::vector{def})), 1, "listing the orders' instrument", error))
      return false;
    wire::price p;
    p.instrument_id = workload::order_instrument;
    p.ticks = workload::order_price;
    p.sequence = uint64_t(std::chrono::system_clock::now().time_since_epoch().count());  // newer than any before
    if (!check_results(c_->call(wire::prices_body(std::vector{p})), 1, "pricing the orders' instrument", error)) return false;
    for (uint64_t at = 0; at < w.accounts; at += chunk) {
      std::vector<wire::customer_op> part;
      for (uint64_t i = at; i < std::min<uint64_t>(w.accounts, at + chunk); ++i) {
        wire::customer_op c;
        c.wallet = w.first_account + i;
        c.sequence = 1;
        c.kyc = wire::kyc_status::verified;
        c.profile = wire::risk_profile::moderate;
        c.tier = 1;
        part.push_back(c);
      }
      auto cr = c_->call(wire::customer_ops_body(part));
      if (const auto f = outcome_failure(cr); !f.empty() || cr.reply.results.size() != part.size()) {
        *error = "making the customers: " + (f.empty() ? std::string("no result per customer") : f);
        return false;
      }
      for (size_t i = 0; i < part.size(); ++i)
        if (cr.reply.results[i] != wire::result::ok) {
          *error = "customer " + std::to_string(part[i].wallet) + ": " + std::string(wire::result_name(cr.reply.results[i])) +
                   (cr.reply.results[i] == wire::result::tier_undefined || cr.reply.results[i] == wire::result::risk_profile_undefined
                        ? " (an operator sets tier 1 and the moderate profile first: admin `tier set`, `profile set`)"
                        : "");
          return false;
        }
    }
    return true;
  }

  // Equb: the fee account, the groups (fixed order, 1% fee, a 30-day period, rounds held
  // until every seat paid), the joins in seat order (a join's seat is its place in the
  // log), the starts; then waits for round 1's payouts, so the run measures rounds 2 on.
  bool setup_equb(const workload& w, std::string* error) {
    wire::account fee;
    fee.id = w.fee_account();
    fee.currency = w.currency;
    fee.kind = wire::account_kind::fee;
    if (!check_results(c_->call(wire::create_accounts_body(std::span<const wire::account>(&fee, 1))), 1,
                       "creating the fee account", error))
      return false;
    const uint64_t groups = w.equb_groups();
    constexpr uint64_t ops_chunk = 4096;
    auto group_ops = [&](wire::equb_op_kind kind, const char* what) {
      for (uint64_t at = 0; at < groups; at += ops_chunk) {
        std::vector<wire::equb_op> part;
        for (uint64_t g = at; g < std::min(groups, at + ops_chunk); ++g) {
          wire::equb_op op;
          op.kind = kind;
          op.group_id = w.group_id(g);
          if (kind == wire::equb_op_kind::create) {
            op.fee_account_id = w.fee_account();
            op.currency = w.currency;
            op.contribution = w.amount_max;
            op.period_ns = 30ull * 86'400 * 1'000'000'000;
            op.fee_bp = w.equb_fee_bp;
            op.rotation = 1;        // fixed order
            op.default_policy = 3;  // hold the round: only payments close rounds
          }
          part.push_back(op);
        }
        if (!check_results(c_->call(wire::equb_ops_body(part)), part.size(), what, error)) return false;
      }
      return true;
    };
    if (!group_ops(wire::equb_op_kind::create, "creating groups")) return false;
    std::vector<wire::transfer> joins;
    for (uint64_t g = 0; g < groups; ++g)
      for (uint32_t seat = 0; seat < w.equb_seats; ++seat) {
        joins.push_back(equb_join(w, g, seat));
        if (joins.size() == chunk || (g + 1 == groups && seat + 1 == w.equb_seats)) {
          if (!check_results(c_->call(wire::create_transfers_body(joins)), joins.size(), "joining groups", error))
            return false;
          joins.clear();
        }
      }
    if (!group_ops(wire::equb_op_kind::start, "starting groups")) return false;
    const uint64_t fees = groups * w.equb_fee();
    for (int i = 0; i < 3000; ++i) {
      auto r = c_->call(wire::lookup_accounts_body(std::span<const uint64_t>(&fee.id, 1)));
      if (const auto f = outcome_failure(r); !f.empty()) {
        *error = "looking up the fee account: " + f;
        return false;
      }
      if (!r.reply.accounts.empty() && r.reply.accounts[0].credits_posted == fees) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    *error = "round 1's payouts did not all arrive within 30 s";
    return false;
  }

  std::unique_ptr<target_connection> connect(const workload& w, std::string* error) override {
    wire::async_client::options o;
    static_cast<wire::client::options&>(o) = opt_;
    auto c = wire::async_client::connect(o, error);
    if (!c) return nullptr;
    return std::make_unique<mesob_connection>(std::move(c), window_, w);
  }

  [[nodiscard]] uint32_t gateway_number() const override { return c_->welcome().gateway_number; }
  [[nodiscard]] uint32_t shards() const override { return c_->welcome().shards; }

  bool read_balances(const workload& w, int64_t* funding, std::vector<int64_t>* accounts,
                     std::string* error) override {
    std::vector<int64_t> net;
    if (!read_accounts(w, w.tracked_accounts(), error, [&](const wire::account& a) {
          net.push_back(int64_t(a.credits_posted) - int64_t(a.debits_posted));
        }))
      return false;
    *funding = net[0];
    accounts->assign(net.begin() + 1, net.end());
    return true;
  }

  bool read_pending_debits(const workload& w, std::vector<uint64_t>* accounts, std::string* error) override {
    accounts->clear();
    bool funding = true;
    return read_accounts(w, w.accounts, error, [&](const wire::account& a) {
      if (!std::exchange(funding, false)) accounts->push_back(a.debits_pending);
    });
  }

  // The funding account, then accounts first_account .. + n - 1, to fn (in that order).
  template <class F>
  bool read_accounts(const workload& w, uint64_t n, std::string* error, F&& fn) {
    std::vector<uint64_t> ids;
    ids.push_back(w.funding_account());
    for (uint64_t i = 0; i < n; ++i) ids.push_back(w.first_account + i);
    for (size_t at = 0; at < ids.size(); at += chunk) {
      const std::span<const uint64_t> part(ids.data() + at, std::min<size_t>(chunk, ids.size() - at));
      auto r = read_call(wire::lookup_accounts_body(part));
      if (const auto f = outcome_failure(r); !f.empty()) {
        *error = "looking up accounts: " + f;
        return false;
      }
      if (r.reply.results.size() != part.size() || r.reply.accounts.size() != part.size()) {
        *error = "looking up accounts: the reply does not have one answer per id";
        return false;
      }
      for (size_t i = 0; i < part.size(); ++i) {
        if (r.reply.results[i] != wire::result::ok) {
          *error = "account " + std::to_string(part[i]) + ": " + std::string(wire::result_name(r.reply.results[i]));
          return false;
        }
        fn(r.reply.accounts[i]);
      }
    }
    return true;
  }

  bool find_transfers(std::span<const wire::id128> ids, std::vector<found_transfer>* out,
                      std::string* error) override {
    out->clear();
    for (size_t at = 0; at < ids.size(); at += chunk) {
      const auto part = ids.subspan(at, std::min<size_t>(chunk, ids.size() - at));
      auto r = read_call(wire::lookup_transfers_body(part));
      if (const auto f = outcome_failure(r); !f.empty()) {
        *error = "looking up transfers: " + f;
        return false;
      }
      if (r.reply.results.size() != part.size() || r.reply.records.size() != part.size()) {
        *error = "looking up transfers: the reply does not have one answer per id";
        return false;
      }
      for (size_t i = 0; i < part.size(); ++i) {
        found_transfer f;
        const auto& rec = r.reply.records[i];
        // Found means recorded with the outcome ok (a rejected transfer is recorded too).
        f.found = r.reply.results[i] == wire::result::ok && rec.result == uint32_t(wire::result::ok);
        if (f.found) {
          f.debit_account_id = rec.t.debit_account_id;
          f.credit_account_id = rec.t.credit_account_id;
          f.amount = rec.t.amount;
          f.pending = rec.t.flags & wire::transfer_flags::pending;
        }
        out->push_back(f);
      }
    }
    return true;
  }

 private:
  // A look-up (verification's): on a connection that failed (the engine restarted during
  // the run, which the load's own connections ride out by reconnecting) it is connected
  // again once and asked again; a read changes nothing.
  wire::client::outcome read_call(const std::vector<uint8_t>& body) {
    auto r = c_->call(body);
    if (r.ok || r.server_error) return r;
    std::string err;
    auto fresh = wire::client::connect(opt_, &err);
    if (!fresh) {
      r.failure += "; connecting again: " + err;
      return r;
    }
    c_ = std::move(fresh);
    return c_->call(body);
  }

  // Every result must be `ok` (a repeat of set-up is answered `ok` too: same fields).
  static bool check_results(const wire::client::outcome& r, size_t n, const char* what, std::string* error) {
    if (const auto f = outcome_failure(r); !f.empty()) {
      *error = std::string(what) + ": " + f;
      return false;
    }
    if (r.reply.results.size() != n) {
      *error = std::string(what) + ": the reply does not have one result per item";
      return false;
    }
    for (size_t i = 0; i < n; ++i)
      if (r.reply.results[i] != wire::result::ok) {
        *error = std::string(what) + ": item " + std::to_string(i) + ": " +
                 std::string(wire::result_name(r.reply.results[i]));
        return false;
      }
    return true;
  }

  wire::client::options opt_;
  std::unique_ptr<wire::client> c_;
  uint32_t window_ = 1;
};

}  // namespace

std::unique_ptr<target> make_mesob_target(const wire::client::options& o, std::string* error) {
  auto t = std::make_unique<mesob_target>(o);
  if (!t->open(error)) return nullptr;
  return t;
}

}  // namespace mesob::load
