// The PostgreSQL baseline of mesob-load: the same transfer workload as Mesob, run by a
// PL/pgSQL function over two tables, one durable transaction per batch, through libpq.
//
//   accounts (id bigint primary key, balance bigint not null)
//   transfers (id_hi bigint, id_lo bigint, debit bigint, credit bigint, amount bigint,
//              result smallint, primary key (id_hi, id_lo))
//
// A request is one round trip: a prepared `SELECT mesob_transfer_batch($1..$5)` with the
// batch as five bigint arrays (binary format). The function first locks the batch's
// accounts in id order (`SELECT ... ORDER BY id FOR UPDATE`), so concurrent batches never
// deadlock, then runs the transfers in batch order: the transfer row is inserted with ON
// CONFLICT DO NOTHING (a repeat answers with its recorded result when accounts and amount
// are the same, else exists_with_different_fields), the debit is
// `UPDATE ... WHERE id = dr AND balance >= amount` (none updated: debit_account_not_found,
// credit_account_not_found or exceeds_credits), then the credit. It returns one result code
// per transfer. The statement runs in autocommit, so its answer arrives after the commit,
// which is durable when the server runs with fsync and synchronous_commit on: setup()
// refuses a server that does not. A batch that fails with a deadlock (40P01) or a
// serialization failure (40001) is run again, up to pg_batch_retries_max times.
//
// setup() DROPS and re-creates both tables (and the function): the baseline runs on a
// private, throwaway cluster (see BASELINES.md for how to start one). Field checks run in
// the client (perf/load/baseline_rules.hpp); plain transfers only.
//
// Threads: the target object (setup, read_balances, find_transfers) is used by one thread
// at a time; each connection is used by one thread at a time and has its own libpq
// connection. submit() is synchronous: it calls `done` before it returns (window 1).
#pragma once

#include <memory>
#include <string>

#include "perf/load/baseline_rules.hpp"
#include "perf/load/target.hpp"

namespace mesob::load {

// Tries a batch this many times when the server answers 40P01 or 40001, then reports the
// batch failed.
constexpr uint32_t pg_batch_retries_max = 16;

// The client waits for a batch this much longer than the server's statement_timeout
// (baseline_call_timeout_s), so that a statement the server cancels is answered as not
// applied rather than given up as unknown.
constexpr uint32_t pg_answer_margin_s = 5;

// Connects to the server (a libpq connection string, e.g. "host=/tmp/pg port=5432
// user=postgres dbname=postgres"; key=value strings without a connect_timeout get one of
// 10 s). Null with *error when it cannot. A batch not sent and answered within
// call_timeout_ms (its commit included, which statement_timeout does not cover) fails with
// its outcome unknown, and its connection is reset before the next.
std::unique_ptr<target> make_postgres_target(const std::string& conninfo, std::string* error,
                                             uint32_t call_timeout_ms = (baseline_call_timeout_s + pg_answer_margin_s) *
                                                                        1000);

}  // namespace mesob::load
