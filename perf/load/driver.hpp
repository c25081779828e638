// The load driver of mesob-load: runs a workload against a target with N connections,
// closed loop (a window of requests in flight per connection, as fast as answers come)
// or open loop (requests sent at a fixed rate, each one's latency measured from the time
// it was meant to be sent, so a stall shows up in full instead of being hidden by the
// requests it delayed: no coordinated omission). Collects latencies in HDR histograms,
// results by code, and per-second figures; verifies the target's state afterwards.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "perf/load/hdr_histogram.hpp"
#include "perf/load/target.hpp"
#include "perf/load/workload.hpp"

namespace mesob::load {

struct run_options {
  uint32_t connections = 2;
  uint32_t window = 4;        // closed loop: requests in flight per connection
  double rate = 0;            // open loop: transfers per second over all connections (0: closed)
  double duration_s = 10;
  // Load before the measured window (0 .. 3,600 s): what is answered before it ends is
  // verified and in the timeline, but not in the throughput, the latency or the results
  // by code, nor what is sent before it in the send lag. Failures count wherever they
  // fall. A run whose every answer came in it fails (nothing measured).
  double warmup_s = 0;
  double drain_timeout_s = 60;  // waiting for outstanding answers after the load stops
  bool progress = true;         // one line per second on stderr
  bool verify = false;
  // Payouts: how payout `id` ended, as its gateway's answer said (0: not yet, 1: settled,
  // 2: failed); verification waits for every acknowledged payout's outcome.
  std::function<int(uint64_t id)> held_outcome;
};

// One second of the run.
struct interval_row {
  double t_s = 0;               // end of the interval, from the start
  uint64_t transfers = 0;       // answered ok in the interval (as transfers_ok counts them)
  uint64_t requests = 0;
  uint64_t p50_ns = 0, p99_ns = 0, max_ns = 0;
};

struct verify_report {
  bool ran = false;
  bool ok = false;
  uint64_t transfers_checked = 0;   // acknowledged transfers looked up
  uint64_t unknown_resolved = 0;    // transfers of failed requests, found or not
  uint64_t accounts_checked = 0;
  std::vector<std::string> problems;  // the first few
};

struct run_report {
  std::string target;
  std::string workload;
  std::string mode;                 // "closed" or "open"
  std::string items = "transfers";  // what the workload's items are called
  double seconds = 0;               // from the measured window's start to the last answer counted
  double warmup_s = 0;              // the warm-up before it (run_options::warmup_s)
  uint64_t warmup_requests = 0;     // answered in the warm-up (not in requests)
  uint64_t warmup_transfers_ok = 0; // their items answered ok (not in transfers_ok)
  uint64_t requests = 0;            // answered (any outcome)
  uint64_t transfers = 0;           // in answered requests
  uint64_t transfers_ok = 0;
  // Two-phase: pendings and posts answered ok (measured: by when answered, as every count
  // here, so a post counted may be of a pending answered in the warm-up, up to a window's
  // worth), and the pendings acknowledged that no post followed by the end (the load's own
  // backlog: it stays within the windows).
  uint64_t pendings_ok = 0, posts_ok = 0, pendings_left = 0;
  uint64_t requests_failed = 0;     // no answer (connection or server error), or never sent
  uint32_t window = 0;              // requests in flight a connection took at most (the target may cap the asked)
  std::map<std::string, uint64_t> results;  // result name -> transfers (ok included)
  std::map<std::string, uint64_t> failures;  // failure text -> requests
  hdr_histogram latency;            // per answered request, ns
  // Per request failed by its connection (sent or not: a client down fails at once), ns
  // from its due time to the failure; not in `latency`. Requests the open loop never
  // handed over (still due at the drain timeout) are failed without a time.
  hdr_histogram failed_latency;
  // Open loop: per request handed to its connection, how late after its due time, ns:
  // the load generator's own lateness (its pacer, or the window full), within `latency`.
  hdr_histogram send_lag;
  uint64_t reconnects = 0, resent = 0;  // the connections' (targets that reconnect: mesob)
  // Requests still unanswered drain_timeout_s after the last was sent: failed by closing
  // their connections (in requests_failed, and in failures by what the connection said).
  uint64_t unanswered_at_drain = 0;
  std::vector<interval_row> timeline;  // from the start: the warm-up's seconds too
  verify_report verify;
  double transfers_per_s() const { return seconds > 0 ? double(transfers_ok) / seconds : 0; }
};

// Runs the load (setup must have run). False with *error when it cannot start.
bool run_load(target& t, const workload& w, const run_options& o, run_report* out, std::string* error);
// What run_load would refuse in `o` for requests of `batch` items (empty: nothing):
// checked before a target is set up.
std::string run_options_problem(const run_options& o, uint32_t batch);

// Why the report's files cannot go into `dir` (made if missing; empty: the current
// directory), or "": checked before a run too, so that a long run does not end unable
// to write its report.
std::string output_problem(const std::filesystem::path& dir);

// Writes the report as JSON.
bool write_report_json(const run_report& r, const workload& w, const run_options& o, const std::string& path,
                       std::string* error);
// Prints the final summary (throughput, latency percentiles, results, failures).
void print_report(const run_report& r, FILE* f);
// Writes <dir>/<name>-latency-over-time.png and <dir>/<name>-latency-distribution.png
// with gnuplot (and the .dat and .gp files beside them).
bool write_plots(const run_report& r, const std::string& dir, const std::string& name, std::string* error);

}  // namespace mesob::load
