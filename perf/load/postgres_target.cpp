#include "perf/load/postgres_target.hpp"

#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "perf/load/baseline_rules.hpp"
#include "wire/assert.hpp"

namespace mesob::load {
namespace {

using wire::result;

constexpr Oid int8_oid = 20;
constexpr Oid int2_oid = 21;
constexpr Oid int4_oid = 23;
constexpr Oid int8_array_oid = 1016;
// COPY data is sent in pieces of about this size during setup.
constexpr size_t copy_chunk_bytes_max = 1 << 20;

std::string schema_sql() {
  return "DROP FUNCTION IF EXISTS mesob_transfer_batch(bigint[], bigint[], bigint[], bigint[], "
         "bigint[]);"
         "DROP TABLE IF EXISTS accounts, transfers;"
         "CREATE TABLE accounts (id bigint PRIMARY KEY, balance bigint NOT NULL);"
         "CREATE TABLE transfers (id_hi bigint, id_lo bigint, debit bigint NOT NULL,"
         " credit bigint NOT NULL, amount bigint NOT NULL, result smallint NOT NULL,"
         " PRIMARY KEY (id_hi, id_lo));";
}

// One batch, in batch order; one result code per transfer. The accounts are locked in id
// order first, so two batches never wait for each other in a cycle. @name@ stands for the
// code of wire::result::name.
constexpr const char* function_template = R"sql(
CREATE FUNCTION mesob_transfer_batch(ids_hi bigint[], ids_lo bigint[], debits bigint[],
                                     credits bigint[], amounts bigint[]) RETURNS int[]
LANGUAGE plpgsql AS $fn$
DECLARE
  n int := coalesce(array_length(ids_hi, 1), 0);
  results int[] := array_fill(0, ARRAY[n]);
  r int;
  old record;
BEGIN
  PERFORM 1 FROM accounts WHERE id = ANY (debits || credits) ORDER BY id FOR UPDATE;
  FOR i IN 1 .. n LOOP
    INSERT INTO transfers (id_hi, id_lo, debit, credit, amount, result)
      VALUES (ids_hi[i], ids_lo[i], debits[i], credits[i], amounts[i], 0)
      ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
      SELECT t.debit, t.credit, t.amount, t.result INTO old FROM transfers t
        WHERE t.id_hi = ids_hi[i] AND t.id_lo = ids_lo[i];
      results[i] := CASE WHEN old.debit = debits[i] AND old.credit = credits[i]
                              AND old.amount = amounts[i] THEN old.result
                         ELSE @exists_with_different_fields@ END;
      CONTINUE;
    END IF;
    UPDATE accounts SET balance = balance - amounts[i]
      WHERE id = debits[i] AND balance >= amounts[i];
    IF FOUND THEN
      UPDATE accounts SET balance = balance + amounts[i] WHERE id = credits[i];
      IF FOUND THEN
        CONTINUE;
      END IF;
      UPDATE accounts SET balance = balance + amounts[i] WHERE id = debits[i];
      r := @credit_account_not_found@;
    ELSIF NOT EXISTS (SELECT 1 FROM accounts WHERE id = debits[i]) THEN
      r := @debit_account_not_found@;
    ELSIF NOT EXISTS (SELECT 1 FROM accounts WHERE id = credits[i]) THEN
      r := @credit_account_not_found@;
    ELSE
      r := @exceeds_credits@;
    END IF;
    UPDATE transfers SET result = r WHERE id_hi = ids_hi[i] AND id_lo = ids_lo[i];
    results[i] := r;
  END LOOP;
  RETURN results;
END
$fn$;)sql";

constexpr const char* batch_statement = "mesob_batch";
constexpr const char* batch_sql = "SELECT mesob_transfer_batch($1, $2, $3, $4, $5)";
constexpr const char* find_statement = "mesob_find";
constexpr const char* find_sql =
    "SELECT q.ord, t.debit, t.credit, t.amount, t.result"
    " FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS q(hi, lo, ord)"
    " JOIN transfers t ON t.id_hi = q.hi AND t.id_lo = q.lo";
constexpr const char* balances_statement = "mesob_balances";
constexpr const char* balances_sql = "SELECT id, balance FROM accounts WHERE id BETWEEN $1 AND $2";

struct conn_closer {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct result_clearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using pg_conn = std::unique_ptr<PGconn, conn_closer>;
using pg_result = std::unique_ptr<PGresult, result_clearer>;

// libpq's messages end with a newline (and sometimes carry several lines).
std::string trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

std::string conn_error(PGconn* c) {
  return trimmed(PQerrorMessage(c));
}
std::string result_error(const PGresult* r) {
  return trimmed(PQresultErrorMessage(r));
}

void ignore_notice(void*, const char*) {}

pg_conn open_connection(const std::string& conninfo, std::string* error) {
  // A reset after a batch given up reconnects with these settings: within a time too.
  const bool timed = conninfo.find("connect_timeout") != std::string::npos || conninfo.find("://") != std::string::npos;
  pg_conn c(PQconnectdb((timed ? conninfo : conninfo + " connect_timeout=10").c_str()));
  if (!c || PQstatus(c.get()) != CONNECTION_OK) {
    *error = "postgres: cannot connect (" + conninfo +
             "): " + (c ? conn_error(c.get()) : "out of memory");
    return nullptr;
  }
  PQsetNoticeProcessor(c.get(), ignore_notice, nullptr);
  return c;
}

bool prepare(PGconn* c, const char* name, const char* sql, int params, const Oid* types,
             std::string* error) {
  pg_result r(PQprepare(c, name, sql, params, types));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    *error = std::string("postgres: preparing ") + name + ": " + result_error(r.get());
    return false;
  }
  return true;
}

bool exec_command(PGconn* c, const std::string& sql, const char* what, std::string* error) {
  pg_result r(PQexec(c, sql.c_str()));
  if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
    *error = std::string("postgres: ") + what + ": " + result_error(r.get());
    return false;
  }
  return true;
}

// Network byte order, as PostgreSQL's binary formats use.
void put_be32(std::string* b, uint32_t v) {
  v = __builtin_bswap32(v);
  b->append(reinterpret_cast<const char*>(&v), 4);
}
void put_be64(std::string* b, uint64_t v) {
  v = __builtin_bswap64(v);
  b->append(reinterpret_cast<const char*>(&v), 8);
}
uint32_t get_be32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return __builtin_bswap32(v);
}
uint64_t get_be64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}
uint16_t get_be16(const char* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return __builtin_bswap16(v);
}

// A one-dimensional bigint[] in the binary array format: dimensions, has-nulls flag,
// element type, then (length, lower bound) per dimension, then (length, value) per element.
template <typename Get>
void put_int8_array(std::string* b, size_t n, Get get) {
  b->clear();
  put_be32(b, n == 0 ? 0 : 1);
  put_be32(b, 0);
  put_be32(b, int8_oid);
  if (n == 0) return;
  put_be32(b, uint32_t(n));
  put_be32(b, 1);
  for (size_t i = 0; i < n; ++i) {
    put_be32(b, 8);
    put_be64(b, uint64_t(get(i)));
  }
}

// Reads a one-dimensional int4[] without nulls of exactly n elements.
bool get_int4_array(const char* p, int len, size_t n, std::vector<int32_t>* out,
                    std::string* error) {
  const auto bad = [&](const char* why) {
    *error = std::string("postgres: the batch function's answer: ") + why;
    return false;
  };
  if (len < 12) return bad("too short");
  const uint32_t dims = get_be32(p);
  if (get_be32(p + 4) != 0) return bad("has nulls");
  if (get_be32(p + 8) != int4_oid) return bad("not an int4 array");
  out->clear();
  if (dims == 0) return n == 0 ? true : bad("empty");
  if (dims != 1 || len < 20) return bad("not one-dimensional");
  if (get_be32(p + 12) != n) return bad("not one result per transfer");
  if (size_t(len) != 20 + 8 * n) return bad("wrong length");
  for (size_t i = 0; i < n; ++i) {
    const char* e = p + 20 + 8 * i;
    if (get_be32(e) != 4) return bad("element not 4 bytes");
    out->push_back(int32_t(get_be32(e + 4)));
  }
  return true;
}

bool server_setting(PGconn* c, const char* name, std::string* value, std::string* error) {
  pg_result r(PQexec(c, (std::string("SHOW ") + name).c_str()));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1) {
    *error = std::string("postgres: SHOW ") + name + ": " + result_error(r.get());
    return false;
  }
  *value = PQgetvalue(r.get(), 0, 0);
  return true;
}

// A connection of the load. Owned and used by one driver thread at a time.
class postgres_connection final : public baseline_connection {
 public:
  postgres_connection(pg_conn c, std::shared_ptr<std::atomic<uint64_t>> retries, uint32_t call_timeout_ms)
      : baseline_connection("postgres"), c_(std::move(c)), retries_(std::move(retries)),
        call_timeout_ms_(call_timeout_ms) {}

  // A load session, new or reset: its statements never wait for good (the driver's
  // drain timeout could not end a call blocked in libpq: the server ends it, as Redis's
  // client does), and the batch statement prepared.
  static bool start_session(PGconn* c, std::string* error) {
    const std::string set = "SET statement_timeout = " + std::to_string(baseline_call_timeout_s * 1000);
    pg_result r(PQexec(c, set.c_str()));
    if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) {
      *error = "postgres: " + set + ": " + result_error(r.get());
      return false;
    }
    const Oid types[5] = {int8_array_oid, int8_array_oid, int8_array_oid, int8_array_oid,
                          int8_array_oid};
    return prepare(c, batch_statement, batch_sql, 5, types, error);
  }

 private:
  // Runs the transfers that passed the field checks; empty, or why the batch failed.
  std::string run(const std::vector<wire::transfer>& batch, std::vector<result>* results) override {
    const size_t n = pass().size();
    put_int8_array(&params_[0], n, [&](size_t i) { return batch[pass()[i]].id.hi; });
    put_int8_array(&params_[1], n, [&](size_t i) { return batch[pass()[i]].id.lo; });
    put_int8_array(&params_[2], n, [&](size_t i) { return batch[pass()[i]].debit_account_id; });
    put_int8_array(&params_[3], n, [&](size_t i) { return batch[pass()[i]].credit_account_id; });
    put_int8_array(&params_[4], n, [&](size_t i) { return batch[pass()[i]].amount; });
    const char* values[5];
    int lengths[5];
    const int formats[5] = {1, 1, 1, 1, 1};
    for (int p = 0; p < 5; ++p) {
      values[p] = params_[p].data();
      lengths[p] = int(params_[p].size());
    }
    std::string failure;
    // No try after a deadlock or a serialization failure starts past call_timeout_ms_ from
    // the first, so a retried batch takes at most about twice that (before, up to 16 tries
    // of 65 s each). Each try gets the whole deadline from when it is sent, a margin past
    // the server's statement_timeout, so that the server's own cancel is still heard.
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(call_timeout_ms_);
    for (uint32_t attempt = 0; attempt < pg_batch_retries_max; ++attempt) {
      if (attempt > 0 && std::chrono::steady_clock::now() >= until)  // (not applied: the last try failed)
        return failure + " (tried " + std::to_string(attempt) + " times in " + std::to_string(call_timeout_ms_) + " ms)";
      if (attempt > 0) retries_->fetch_add(1, std::memory_order_relaxed);
      if (!reconnect_if_needed(&failure)) return failure;  // (within connect_timeout: before the try's deadline)
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(call_timeout_ms_);
      pg_result r = exec_batch(values, lengths, formats, deadline, &failure);
      if (!r) return failure;
      if (PQresultStatus(r.get()) == PGRES_TUPLES_OK) {
        if (PQntuples(r.get()) != 1 || PQnfields(r.get()) != 1 || PQgetisnull(r.get(), 0, 0))
          return "postgres: the batch function did not return one array";
        if (!get_int4_array(PQgetvalue(r.get(), 0, 0), PQgetlength(r.get(), 0, 0), n, &codes_,
                            &failure))
          return failure;
        for (size_t i = 0; i < n; ++i) (*results)[pass()[i]] = result(uint32_t(codes_[i]));
        return {};
      }
      const char* state = PQresultErrorField(r.get(), PG_DIAG_SQLSTATE);
      failure = "postgres: " + result_error(r.get());
      const bool retry = state != nullptr &&
                         (std::strcmp(state, "40P01") == 0 || std::strcmp(state, "40001") == 0);
      if (!retry) return failure;
    }
    return failure + " (tried " + std::to_string(pg_batch_retries_max) + " times)";
  }

  // The batch statement's answer by `deadline`, or null with *failure.
  // statement_timeout stops the function, not the commit after it (PostgreSQL disables it
  // before committing): a commit waiting on a disk that does not answer would hold a
  // blocking call, and the run, for good. The deadline covers sending too (a batch of
  // 8,192 is about 490 KB, more than a socket takes from a server that does not read).
  // Past it, or on a failure, the connection is shut down and reset before the next
  // batch: the batch's outcome is unknown.
  pg_result exec_batch(const char* const* values, const int* lengths, const int* formats,
                       std::chrono::steady_clock::time_point deadline, std::string* failure) {
    PGconn* c = c_.get();
    auto give_up = [&](std::string why) {
      ::shutdown(PQsocket(c), SHUT_RDWR);
      must_reset_ = true;
      *failure = "postgres: " + why + "; its connection is closed and its outcome unknown";
      return nullptr;
    };
    // Waits for `events` up to the deadline (a second at a time); false past it.
    auto wait_for = [&](short events, bool* failed) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{PQsocket(c), events, 0};
      if (::poll(&p, 1, int(std::min<int64_t>(left.count(), 1000))) < 0 && errno != EINTR) *failed = true;
      return true;
    };
    const std::string late = "no answer to the batch in " + std::to_string(call_timeout_ms_) +
                             " ms (statement_timeout does not cover the commit: a disk that does not answer?)";
    if (PQsetnonblocking(c, 1) != 0 || !PQsendQueryPrepared(c, batch_statement, 5, values, lengths, formats, 1))
      return give_up("sending the batch: " + conn_error(c));
    for (int f; (f = PQflush(c)) != 0;) {
      bool failed = false;
      if (f < 0) return give_up("sending the batch: " + conn_error(c));
      if (!wait_for(POLLOUT | POLLIN, &failed)) return give_up(late);
      if (failed) return give_up(std::string("waiting to send the batch: ") + std::strerror(errno));
      if (!PQconsumeInput(c)) return give_up("sending the batch: " + conn_error(c));
    }
    pg_result answer;
    for (;;) {
      while (!PQisBusy(c)) {
        PGresult* r = PQgetResult(c);
        if (r == nullptr) {
          if (!answer) *failure = "postgres: the batch got no result: " + conn_error(c);
          return answer;
        }
        if (!answer) answer.reset(r);
        else PQclear(r);
      }
      bool failed = false;
      if (!wait_for(POLLIN, &failed)) return give_up(late);
      if (failed) return give_up(std::string("waiting for the batch's answer: ") + std::strerror(errno));
      if (!PQconsumeInput(c)) return give_up("reading the batch's answer: " + conn_error(c));
    }
  }

  // After a lost connection the next batch reconnects (a new session: set up again).
  bool reconnect_if_needed(std::string* failure) {
    if (PQstatus(c_.get()) == CONNECTION_OK && !must_reset_) return true;
    PQreset(c_.get());  // (blocking, within the connection string's connect_timeout)
    must_reset_ = false;
    if (PQstatus(c_.get()) != CONNECTION_OK) {
      *failure = "postgres: connection lost, reconnecting failed: " + conn_error(c_.get());
      return false;
    }
    PQsetNoticeProcessor(c_.get(), ignore_notice, nullptr);
    return start_session(c_.get(), failure);
  }

  pg_conn c_;
  std::shared_ptr<std::atomic<uint64_t>> retries_;
  uint32_t call_timeout_ms_;
  bool must_reset_ = false;  // a batch was given up: the connection is reset before the next
  // Kept across batches so that nothing allocates once they have grown.
  std::string params_[5];
  std::vector<int32_t> codes_;
};

// The target. Used by one thread at a time (the driver's main thread); its connections
// live on their own threads and share only the retry counter.
class postgres_target final : public target {
 public:
  postgres_target(std::string conninfo, pg_conn c, uint32_t call_timeout_ms)
      : conninfo_(std::move(conninfo)),
        c_(std::move(c)),
        retries_(std::make_shared<std::atomic<uint64_t>>(0)),
        call_timeout_ms_(call_timeout_ms) {}

  ~postgres_target() override {
    if (const uint64_t n = retries_->load(); n > 0)
      std::fprintf(
          stderr,
          "postgres: %llu batch attempts repeated after a deadlock or serialization failure\n",
          (unsigned long long)n);
  }

  [[nodiscard]] std::string name() const override { return "postgres"; }

  [[nodiscard]] std::string supports(const workload& w) const override {
    if (w.two_phase || w.kind != item_kind::transfers) return "PostgreSQL baseline runs plain transfers only";
    int64_t funding = 0;
    return funding_balance(w, &funding);
  }

  bool setup(const workload& w, std::string* error) override {
    if (const auto why = supports(w); !why.empty()) {
      *error = "postgres: " + why;
      return false;
    }
    if (!check_durable(c_.get(), error)) return false;
    int64_t funding = 0;
    (void)funding_balance(w, &funding);
    if (!exec_command(c_.get(), "BEGIN", "setup", error)) return false;
    if (!exec_command(c_.get(), schema_sql(), "creating the tables", error)) return rollback();
    if (!exec_command(c_.get(), with_result_codes(function_template), "creating the batch function",
                      error))
      return rollback();
    if (!copy_accounts(w, funding, error)) return rollback();
    if (!exec_command(c_.get(), "COMMIT", "committing setup", error)) return false;
    if (!exec_command(c_.get(), "ANALYZE accounts", "analyzing accounts", error)) return false;
    // Read back what was written: each account holds its opening balance.
    *error = check_after_setup(*this, w, "postgres", funding);
    if (!error->empty()) return false;
    return true;
  }

  std::unique_ptr<target_connection> connect(const workload&, std::string* error) override {
    auto c = open_connection(conninfo_, error);
    if (!c) return nullptr;
    // (Checked again for each connection: a run with --no-setup has no setup to check,
    // and the server's settings may have changed since.)
    if (!check_durable(c.get(), error)) return nullptr;
    if (!postgres_connection::start_session(c.get(), error)) return nullptr;
    return std::make_unique<postgres_connection>(std::move(c), retries_, call_timeout_ms_);
  }

  bool read_balances(const workload& w, int64_t* funding, std::vector<int64_t>* accounts,
                     std::string* error) override {
    if (!prepared_reads_ && !prepare_reads(error)) return false;
    // The funding account is first_account - 1: one range of ids, index 0 the funding account.
    const uint64_t first = w.funding_account();
    const uint64_t count = w.accounts + 1;
    std::vector<int64_t> all(count);
    std::vector<bool> seen(count, false);
    for (uint64_t at = 0; at < count; at += baseline_lookup_chunk_max) {
      const uint64_t lo = first + at;
      const uint64_t hi = first + std::min<uint64_t>(count, at + baseline_lookup_chunk_max) - 1;
      std::string p0, p1;
      put_be64(&p0, lo);
      put_be64(&p1, hi);
      const char* values[2] = {p0.data(), p1.data()};
      const int lengths[2] = {8, 8};
      const int formats[2] = {1, 1};
      pg_result r(PQexecPrepared(c_.get(), balances_statement, 2, values, lengths, formats, 1));
      if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
        *error = "postgres: reading balances: " + result_error(r.get());
        return false;
      }
      for (int row = 0; row < PQntuples(r.get()); ++row) {
        const uint64_t id = get_be64(PQgetvalue(r.get(), row, 0));
        MESOB_ASSERT(id >= lo && id <= hi);
        all[id - first] = int64_t(get_be64(PQgetvalue(r.get(), row, 1)));
        seen[id - first] = true;
      }
    }
    for (uint64_t i = 0; i < count; ++i)
      if (!seen[i]) {
        *error =
            "postgres: account " + std::to_string(first + i) + " does not exist (has setup run?)";
        return false;
      }
    *funding = all[0];
    accounts->assign(all.begin() + 1, all.end());
    return true;
  }

  bool find_transfers(std::span<const wire::id128> ids, std::vector<found_transfer>* out,
                      std::string* error) override {
    if (!prepared_reads_ && !prepare_reads(error)) return false;
    out->assign(ids.size(), found_transfer{});
    std::string p0, p1;
    for (size_t at = 0; at < ids.size(); at += baseline_lookup_chunk_max) {
      const auto part =
          ids.subspan(at, std::min<size_t>(baseline_lookup_chunk_max, ids.size() - at));
      put_int8_array(&p0, part.size(), [&](size_t i) { return part[i].hi; });
      put_int8_array(&p1, part.size(), [&](size_t i) { return part[i].lo; });
      const char* values[2] = {p0.data(), p1.data()};
      const int lengths[2] = {int(p0.size()), int(p1.size())};
      const int formats[2] = {1, 1};
      pg_result r(PQexecPrepared(c_.get(), find_statement, 2, values, lengths, formats, 1));
      if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
        *error = "postgres: looking up transfers: " + result_error(r.get());
        return false;
      }
      for (int row = 0; row < PQntuples(r.get()); ++row) {
        const uint64_t ord = get_be64(PQgetvalue(r.get(), row, 0));  // 1-based
        MESOB_ASSERT(ord >= 1 && ord <= part.size());
        // Found means recorded with the outcome ok (a rejected transfer is recorded too).
        if (get_be16(PQgetvalue(r.get(), row, 4)) != uint16_t(result::ok)) continue;
        auto& f = (*out)[at + ord - 1];
        f.found = true;
        f.debit_account_id = get_be64(PQgetvalue(r.get(), row, 1));
        f.credit_account_id = get_be64(PQgetvalue(r.get(), row, 2));
        f.amount = get_be64(PQgetvalue(r.get(), row, 3));
      }
    }
    return true;
  }

 private:
  bool rollback() {
    pg_result r(PQexec(c_.get(), "ROLLBACK"));
    return false;
  }

  // Durability is the server's: every commit must reach the disk before it is answered.
  static bool check_durable(PGconn* c, std::string* error) {
    std::string fsync, sync_commit;
    if (!server_setting(c, "fsync", &fsync, error)) return false;
    if (!server_setting(c, "synchronous_commit", &sync_commit, error)) return false;
    if (fsync != "on") {
      *error =
          "postgres: the server runs with fsync = " + fsync + "; the baseline needs fsync = on";
      return false;
    }
    if (sync_commit != "on") {
      *error = "postgres: the session runs with synchronous_commit = " + sync_commit +
               "; the baseline needs synchronous_commit = on (server configuration and connection "
               "options)";
      return false;
    }
    return true;
  }

  bool prepare_reads(std::string* error) {
    const Oid find_types[2] = {int8_array_oid, int8_array_oid};
    const Oid balance_types[2] = {int8_oid, int8_oid};
    if (!prepare(c_.get(), find_statement, find_sql, 2, find_types, error)) return false;
    if (!prepare(c_.get(), balances_statement, balances_sql, 2, balance_types, error)) return false;
    prepared_reads_ = true;
    return true;
  }

  // The funding account and the load's accounts, with COPY in text format.
  bool copy_accounts(const workload& w, int64_t funding, std::string* error) {
    pg_result r(PQexec(c_.get(), "COPY accounts (id, balance) FROM STDIN"));
    if (PQresultStatus(r.get()) != PGRES_COPY_IN) {
      *error = "postgres: COPY accounts: " + result_error(r.get());
      return false;
    }
    std::string chunk;
    chunk.reserve(copy_chunk_bytes_max + 64);
    const auto row = [&](uint64_t id, int64_t balance) {
      char line[64];
      const int len =
          std::snprintf(line, sizeof line, "%lld\t%lld\n", (long long)id, (long long)balance);
      chunk.append(line, size_t(len));
    };
    const auto flush = [&]() {
      if (PQputCopyData(c_.get(), chunk.data(), int(chunk.size())) != 1) return false;
      chunk.clear();
      return true;
    };
    bool sent = true;
    row(w.funding_account(), funding);
    for (uint64_t i = 0; i < w.accounts && sent; ++i) {
      row(w.first_account + i, int64_t(w.opening));
      if (chunk.size() >= copy_chunk_bytes_max) sent = flush();
    }
    if (sent && !chunk.empty()) sent = flush();
    if (PQputCopyEnd(c_.get(), sent ? nullptr : "sending failed") != 1 || !sent) {
      *error = "postgres: COPY accounts: " + conn_error(c_.get());
      return false;
    }
    pg_result end(PQgetResult(c_.get()));
    if (PQresultStatus(end.get()) != PGRES_COMMAND_OK) {
      *error = "postgres: COPY accounts: " + result_error(end.get());
      return false;
    }
    while (pg_result more{PQgetResult(c_.get())}) {
    }
    return true;
  }

  std::string conninfo_;
  pg_conn c_;
  std::shared_ptr<std::atomic<uint64_t>> retries_;
  uint32_t call_timeout_ms_;
  bool prepared_reads_ = false;
};

}  // namespace

std::unique_ptr<target> make_postgres_target(const std::string& conninfo, std::string* error,
                                             uint32_t call_timeout_ms) {
  auto c = open_connection(conninfo, error);
  if (!c) return nullptr;
  return std::make_unique<postgres_target>(conninfo, std::move(c), call_timeout_ms);
}

}  // namespace mesob::load
