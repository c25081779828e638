#include "perf/load/redis_target.hpp"

#include <hiredis/hiredis.h>

#include <charconv>
#include <cstdio>
#include <cstring>

#include "perf/load/baseline_rules.hpp"
#include "wire/assert.hpp"

namespace mesob::load {
namespace {

using wire::result;

constexpr uint32_t connect_timeout_s = 10;

// One batch, in batch order (see redis_target.hpp for the keys and arguments). @name@
// stands for the code of wire::result::name.
constexpr const char* script_template = R"lua(
local n = #ARGV / 2
local results = {}
for i = 1, n do
  local record, debit, credit = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local fields, amount = ARGV[2 * i - 1], ARGV[2 * i]
  local found = redis.call('MGET', record, debit, credit)
  local old, balance, credit_balance = found[1], found[2], found[3]
  if old then
    if string.sub(old, 1, #fields + 1) == fields .. ',' then
      results[i] = tonumber(string.sub(old, #fields + 2))
    else
      results[i] = @exists_with_different_fields@
    end
  else
    local r = @ok@
    if not balance then
      r = @debit_account_not_found@
    elseif not credit_balance then
      r = @credit_account_not_found@
    elseif tonumber(balance) < tonumber(amount) then
      r = @exceeds_credits@
    else
      redis.call('DECRBY', debit, amount)
      redis.call('INCRBY', credit, amount)
    end
    redis.call('SET', record, fields .. ',' .. r)
    results[i] = r
  end
end
return results
)lua";

struct context_freer {
  void operator()(redisContext* c) const { redisFree(c); }
};
struct reply_freer {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using redis_context = std::unique_ptr<redisContext, context_freer>;
using redis_reply = std::unique_ptr<redisReply, reply_freer>;

// The argument vector of one command, built in one buffer that is kept between commands.
class command {
 public:
  void clear() {
    text_.clear();
    offsets_.clear();
    lengths_.clear();
  }
  void add(std::string_view s) {
    offsets_.push_back(text_.size());
    lengths_.push_back(s.size());
    text_.append(s);
  }
  template <typename... Args>
  void addf(const char* format, Args... args) {
    char b[64];
    const int n = std::snprintf(b, sizeof b, format, args...);
    MESOB_ASSERT(n > 0 && size_t(n) < sizeof b);
    add(std::string_view(b, size_t(n)));
  }
  [[nodiscard]] size_t size() const { return offsets_.size(); }
  redisReply* run(redisContext* c) {
    argv_.clear();
    for (size_t o : offsets_) argv_.push_back(text_.data() + o);
    return static_cast<redisReply*>(
        redisCommandArgv(c, int(argv_.size()), argv_.data(), lengths_.data()));
  }

 private:
  std::string text_;
  std::vector<size_t> offsets_;
  std::vector<size_t> lengths_;
  std::vector<const char*> argv_;
};

std::string account_key(uint64_t id) {
  return "a:" + std::to_string(id);
}

redis_context open_context(const std::string& host, uint16_t port, std::string* error) {
  const timeval connect_timeout{connect_timeout_s, 0};
  redis_context c(redisConnectWithTimeout(host.c_str(), port, connect_timeout));
  const std::string where = "redis " + host + ":" + std::to_string(port);
  if (!c) {
    *error = where + ": out of memory";
    return nullptr;
  }
  if (c->err) {
    *error = where + ": cannot connect: " + c->errstr;
    return nullptr;
  }
  const timeval command_timeout{baseline_call_timeout_s, 0};
  if (redisSetTimeout(c.get(), command_timeout) != REDIS_OK) {
    *error = where + ": cannot set the command timeout: " + c->errstr;
    return nullptr;
  }
  return c;
}

// A reply of the expected type, or why not (a lost connection or an error reply).
bool expect_reply(redisContext* c, const redis_reply& r, int type, const std::string& what,
                  std::string* error) {
  if (!r) {
    *error = "redis: " + what + ": " + (c->err ? c->errstr : "no reply");
    return false;
  }
  if (r->type == REDIS_REPLY_ERROR) {
    *error = "redis: " + what + ": " + std::string(r->str, r->len);
    return false;
  }
  if (r->type != type) {
    *error = "redis: " + what + ": unexpected reply type " + std::to_string(r->type);
    return false;
  }
  return true;
}

bool load_script(redisContext* c, std::string* sha, std::string* error) {
  const std::string script = with_result_codes(script_template);
  const char* argv[3] = {"SCRIPT", "LOAD", script.c_str()};
  const size_t lengths[3] = {6, 4, script.size()};
  redis_reply r(static_cast<redisReply*>(redisCommandArgv(c, 3, argv, lengths)));
  if (!expect_reply(c, r, REDIS_REPLY_STRING, "SCRIPT LOAD", error)) return false;
  sha->assign(r->str, r->len);
  return true;
}

// A load connection. Owned and used by one driver thread at a time.
class redis_connection final : public baseline_connection {
 public:
  redis_connection(redis_context c, std::string sha)
      : baseline_connection("redis"), c_(std::move(c)), sha_(std::move(sha)) {}

 private:
  // Runs the transfers that passed the field checks; empty, or why the batch failed.
  std::string run(const std::vector<wire::transfer>& batch, std::vector<result>* results) override {
    if (c_->err != 0 && redisReconnect(c_.get()) != REDIS_OK)
      return std::string("redis: connection lost, reconnecting failed: ") + c_->errstr;
    const size_t n = pass().size();
    cmd_.clear();
    cmd_.add("EVALSHA");
    cmd_.add(sha_);
    cmd_.addf("%zu", 3 * n);
    for (uint32_t i : pass()) {
      const auto& t = batch[i];
      cmd_.addf("t:%llu:%llu", (unsigned long long)t.id.hi, (unsigned long long)t.id.lo);
      cmd_.addf("a:%llu", (unsigned long long)t.debit_account_id);
      cmd_.addf("a:%llu", (unsigned long long)t.credit_account_id);
    }
    for (uint32_t i : pass()) {
      const auto& t = batch[i];
      cmd_.addf("%llu,%llu,%llu", (unsigned long long)t.debit_account_id,
                (unsigned long long)t.credit_account_id, (unsigned long long)t.amount);
      cmd_.addf("%llu", (unsigned long long)t.amount);
    }
    MESOB_ASSERT(cmd_.size() == 3 + 5 * n);
    redis_reply r(cmd_.run(c_.get()));
    // A server restarted since the connection loaded the script has lost it: load it again.
    if (r && r->type == REDIS_REPLY_ERROR && std::strncmp(r->str, "NOSCRIPT", 8) == 0) {
      std::string error;
      if (!load_script(c_.get(), &sha_, &error)) return error;
      r.reset(cmd_.run(c_.get()));
    }
    std::string error;
    if (!expect_reply(c_.get(), r, REDIS_REPLY_ARRAY, "batch script", &error)) return error;
    if (r->elements != n) return "redis: the batch script did not return one result per transfer";
    for (size_t i = 0; i < n; ++i) {
      const redisReply* e = r->element[i];
      if (e->type != REDIS_REPLY_INTEGER)
        return "redis: the batch script returned a result that is not an integer";
      (*results)[pass()[i]] = result(uint32_t(e->integer));
    }
    return {};
  }

  redis_context c_;
  std::string sha_;
  // Kept across batches so that nothing allocates once they have grown.
  command cmd_;
};

// Parses a decimal integer that must fill the whole string.
template <typename Int>
bool parse_int(const char* p, size_t n, Int* out) {
  const auto [end, ec] = std::from_chars(p, p + n, *out);
  return ec == std::errc{} && end == p + n;
}

// The target. Used by one thread at a time (the driver's main thread).
class redis_target final : public target {
 public:
  redis_target(std::string host, uint16_t port, redis_context c)
      : host_(std::move(host)), port_(port), c_(std::move(c)) {}

  [[nodiscard]] std::string name() const override { return "redis"; }

  [[nodiscard]] std::string supports(const workload& w) const override {
    if (w.two_phase || w.kind != item_kind::transfers) return "Redis baseline runs plain transfers only";
    if (w.opening > redis_opening_max)
      return "Redis baseline: the opening balance must be at most 2^52 (the Lua script compares "
             "balances as "
             "doubles)";
    int64_t funding = 0;
    return funding_balance(w, &funding);
  }

  bool setup(const workload& w, std::string* error) override {
    if (const auto why = supports(w); !why.empty()) {
      *error = "redis: " + why;
      return false;
    }
    if (!check_durable(c_.get(), error)) return false;
    int64_t funding = 0;
    (void)funding_balance(w, &funding);
    redis_reply r(static_cast<redisReply*>(redisCommand(c_.get(), "FLUSHDB")));
    if (!expect_reply(c_.get(), r, REDIS_REPLY_STATUS, "FLUSHDB", error)) return false;
    if (!set_accounts(w, funding, error)) return false;
    std::string sha;
    if (!load_script(c_.get(), &sha, error)) return false;
    // Read back what was written: each account holds its opening balance.
    *error = check_after_setup(*this, w, "redis", funding);
    if (!error->empty()) return false;
    return true;
  }

  std::unique_ptr<target_connection> connect(const workload&, std::string* error) override {
    auto c = open_context(host_, port_, error);
    std::string sha;
    // (Checked again for each connection: a run with --no-setup has no setup to check,
    // and the server's settings may have changed since.)
    if (!c || !check_durable(c.get(), error) || !load_script(c.get(), &sha, error)) return nullptr;
    return std::make_unique<redis_connection>(std::move(c), std::move(sha));
  }

  bool read_balances(const workload& w, int64_t* funding, std::vector<int64_t>* accounts,
                     std::string* error) override {
    // The funding account is first_account - 1: one range of ids, index 0 the funding account.
    const uint64_t first = w.funding_account();
    const uint64_t count = w.accounts + 1;
    std::vector<int64_t> all;
    all.reserve(count);
    for (uint64_t at = 0; at < count; at += baseline_lookup_chunk_max) {
      const uint64_t end = std::min<uint64_t>(count, at + baseline_lookup_chunk_max);
      cmd_.clear();
      cmd_.add("MGET");
      for (uint64_t i = at; i < end; ++i) cmd_.addf("a:%llu", (unsigned long long)(first + i));
      redis_reply r(cmd_.run(c_.get()));
      if (!expect_reply(c_.get(), r, REDIS_REPLY_ARRAY, "reading balances", error)) return false;
      if (r->elements != end - at) {
        *error = "redis: reading balances: MGET did not answer once per key";
        return false;
      }
      for (uint64_t i = at; i < end; ++i) {
        const redisReply* e = r->element[i - at];
        int64_t balance = 0;
        if (e->type == REDIS_REPLY_NIL) {
          *error =
              "redis: account " + std::to_string(first + i) + " does not exist (has setup run?)";
          return false;
        }
        if (e->type != REDIS_REPLY_STRING || !parse_int(e->str, e->len, &balance)) {
          *error =
              "redis: account " + std::to_string(first + i) + " does not hold an integer balance";
          return false;
        }
        all.push_back(balance);
      }
    }
    *funding = all[0];
    accounts->assign(all.begin() + 1, all.end());
    return true;
  }

  bool find_transfers(std::span<const wire::id128> ids, std::vector<found_transfer>* out,
                      std::string* error) override {
    out->assign(ids.size(), found_transfer{});
    for (size_t at = 0; at < ids.size(); at += baseline_lookup_chunk_max) {
      const size_t end = std::min<size_t>(ids.size(), at + baseline_lookup_chunk_max);
      cmd_.clear();
      cmd_.add("MGET");
      for (size_t i = at; i < end; ++i)
        cmd_.addf("t:%llu:%llu", (unsigned long long)ids[i].hi, (unsigned long long)ids[i].lo);
      redis_reply r(cmd_.run(c_.get()));
      if (!expect_reply(c_.get(), r, REDIS_REPLY_ARRAY, "looking up transfers", error))
        return false;
      if (r->elements != end - at) {
        *error = "redis: looking up transfers: MGET did not answer once per key";
        return false;
      }
      for (size_t i = at; i < end; ++i) {
        const redisReply* e = r->element[i - at];
        if (e->type == REDIS_REPLY_NIL) continue;
        if (e->type != REDIS_REPLY_STRING ||
            !parse_record(std::string_view(e->str, e->len), &(*out)[i])) {
          *error = "redis: transfer " + std::to_string(ids[i].hi) + ":" +
                   std::to_string(ids[i].lo) + " has a malformed record";
          return false;
        }
      }
    }
    return true;
  }

 private:
  // "debit,credit,amount,result"; found means recorded with the outcome ok (a rejected
  // transfer is recorded too).
  static bool parse_record(std::string_view s, found_transfer* f) {
    uint64_t v[4];
    for (int k = 0; k < 4; ++k) {
      const size_t comma = k < 3 ? s.find(',') : s.size();
      if (comma == std::string_view::npos || !parse_int(s.data(), comma, &v[k])) return false;
      s.remove_prefix(k < 3 ? comma + 1 : comma);
    }
    f->found = v[3] == uint64_t(result::ok);
    if (f->found) {
      f->debit_account_id = v[0];
      f->credit_account_id = v[1];
      f->amount = v[2];
    }
    return true;
  }

  // Durability is the server's: every write appended and fsynced before it is answered.
  static bool check_durable(redisContext* c, std::string* error) {
    return check_setting(c, "appendonly", "yes", error) && check_setting(c, "appendfsync", "always", error);
  }

  static bool check_setting(redisContext* c, const char* name, const char* want, std::string* error) {
    redis_reply r(static_cast<redisReply*>(redisCommand(c, "CONFIG GET %s", name)));
    if (!expect_reply(c, r, REDIS_REPLY_ARRAY, std::string("CONFIG GET ") + name, error))
      return false;
    if (r->elements != 2 || r->element[1]->type != REDIS_REPLY_STRING) {
      *error = std::string("redis: CONFIG GET ") + name + ": no such setting";
      return false;
    }
    const std::string value(r->element[1]->str, r->element[1]->len);
    if (value != want) {
      *error = std::string("redis: the server runs with ") + name + " " + value +
               "; the baseline needs " + name + " " + want +
               " (every write on disk before it is answered)";
      return false;
    }
    return true;
  }

  // The funding account and the load's accounts, with MSET in chunks.
  bool set_accounts(const workload& w, int64_t funding, std::string* error) {
    const std::string opening = std::to_string(w.opening);
    cmd_.clear();
    cmd_.add("SET");
    cmd_.add(account_key(w.funding_account()));
    cmd_.add(std::to_string(funding));
    redis_reply r(cmd_.run(c_.get()));
    if (!expect_reply(c_.get(), r, REDIS_REPLY_STATUS, "setting the funding account", error))
      return false;
    for (uint64_t at = 0; at < w.accounts; at += baseline_lookup_chunk_max) {
      const uint64_t end = std::min<uint64_t>(w.accounts, at + baseline_lookup_chunk_max);
      cmd_.clear();
      cmd_.add("MSET");
      for (uint64_t i = at; i < end; ++i) {
        cmd_.addf("a:%llu", (unsigned long long)(w.first_account + i));
        cmd_.add(opening);
      }
      r.reset(cmd_.run(c_.get()));
      if (!expect_reply(c_.get(), r, REDIS_REPLY_STATUS, "setting opening balances", error))
        return false;
    }
    return true;
  }

  std::string host_;
  uint16_t port_;
  redis_context c_;
  command cmd_;
};

}  // namespace

std::unique_ptr<target> make_redis_target(const std::string& host, uint16_t port,
                                          std::string* error) {
  auto c = open_context(host, port, error);
  if (!c) return nullptr;
  return std::make_unique<redis_target>(host, port, std::move(c));
}

}  // namespace mesob::load
