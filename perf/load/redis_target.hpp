// The Redis baseline of mesob-load: the same transfer workload as Mesob, one batch per
// request applied by a Lua script, through hiredis.
//
// Keys: `a:{id}` holds an account's balance (a signed integer string), `t:{hi}:{lo}` a
// transfer's record "debit,credit,amount,result" (decimal, the ids unsigned). A request is
// one EVALSHA of the batch script (loaded with SCRIPT LOAD on every connection) with three
// KEYS per transfer (its record, debit account, credit account) and two ARGV (its fields
// "debit,credit,amount" and its amount). Every key a script touches is declared in KEYS, as
// Redis asks, though one instance would also accept them built inside the script. The
// script runs the transfers in batch order, each with one MGET of its record and both
// accounts: a record that exists makes the transfer a repeat (its recorded result if the
// fields are the same, else exists_with_different_fields); otherwise
// debit_account_not_found, credit_account_not_found, exceeds_credits (the debit balance
// compared with the amount), or DECRBY and INCRBY; the record is written (SET) with the
// result whatever it is. It returns one result code per transfer. A script runs alone, so
// no locks are needed and batches never deadlock.
//
// Durability: Redis answers after the AOF write reaches the disk only with appendonly yes
// and appendfsync always; setup() checks both with CONFIG GET and refuses otherwise.
// setup() FLUSHDBs the selected database: the baseline runs on a private, throwaway
// instance (see BASELINES.md for how to start one).
//
// Caveats: Lua compares balances as doubles, exact below 2^53, so supports() refuses an
// opening balance above redis_opening_max; a script that fails half-way (a balance
// overflow, a key of another type) keeps the writes it made, which Redis does not undo.
//
// Threads: the target object is used by one thread at a time; each connection by one
// thread at a time, with its own hiredis context. submit() is synchronous (window 1).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "perf/load/target.hpp"

namespace mesob::load {

// Balances stay exact in the script's comparisons (doubles) up to 2^53; this leaves room
// for an account to receive as much again as its opening balance.
constexpr uint64_t redis_opening_max = 1ull << 52;

// Connects to the server. Null with *error when it cannot.
std::unique_ptr<target> make_redis_target(const std::string& host, uint16_t port,
                                          std::string* error);

}  // namespace mesob::load
