// Google Benchmark micro-benchmarks: record checksum, hash chain, durable log append,
// snapshot records flush, transfer apply, shard batch execution over many accounts, id
// index insert, filling fresh pages, a request's decode, packing and unpacking events, a transfer batch's log
// payload as it is and packed, the event writer's work per event, the load generator's
// transfers.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <random>
#include <vector>

#include "actors/ledger_rules.hpp"
#include "actors/shard.hpp"
#include "engine/engine_clock.hpp"
#include "engine/events.hpp"
#include "engine/limits.hpp"
#include "engine/id_index.hpp"
#include "engine/record_rows.hpp"
#include "perf/load/workload.hpp"
#include "storage/snapshot.hpp"
#include "storage/checksum.hpp"
#include "storage/event_log.hpp"
#include "storage/wal.hpp"
#include "wire/codec.hpp"
#include "wire/event_pack.hpp"
#include "wire/huge_pages.hpp"

using namespace mesob;

// The engine clock's source, read once a batch by the sequencer: the wall clock alone
// (arg 0: before the step guard), or the wall clock and CLOCK_BOOTTIME through
// engine_clock (arg 1: now).
static void BM_engine_clock_read(benchmark::State& state) {
  const auto ns = [](clockid_t id) {
    timespec ts{};
    clock_gettime(id, &ts);
    return uint64_t(ts.tv_sec) * 1'000'000'000ull + uint64_t(ts.tv_nsec);
  };
  engine::engine_clock c(engine::clock_step_max_ns);
  for (auto _ : state) {
    const uint64_t wall = ns(CLOCK_REALTIME);
    benchmark::DoNotOptimize(state.range(0) ? c.read(wall, ns(CLOCK_BOOTTIME)) : wall);
  }
}
BENCHMARK(BM_engine_clock_read)->Arg(0)->Arg(1);

static void BM_crc32c(benchmark::State& state) {
  std::vector<uint8_t> buf(size_t(state.range(0)), 0x5a);
  for (auto _ : state) benchmark::DoNotOptimize(storage::crc32c(buf.data(), buf.size()));
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_crc32c)->Range(64, 1 << 20);

static void BM_chain_hash(benchmark::State& state) {
  std::vector<uint8_t> buf(size_t(state.range(0)), 0x5a);
  storage::chain_hasher h;
  for (auto _ : state) {
    h.update(buf.data(), buf.size());
    benchmark::DoNotOptimize(h.finish());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_chain_hash)->Range(64, 1 << 20);

// One durable group commit of `range(0)` records of 88 x 64 bytes (a 64-transfer batch).
static void BM_append_record(benchmark::State& state) {
  const std::string dir = "/tmp/mesob-bm-wal";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string err;
  auto w = storage::wal_writer::open({dir, 256ull << 20, 8ull << 20}, {}, -1, &err);
  if (!w) {
    state.SkipWithError(err.c_str());
    return;
  }
  std::vector<uint8_t> payload(88 * 64, 7);
  std::span<const uint8_t> pieces[1] = {payload};
  for (auto _ : state) {
    for (int64_t i = 0; i < state.range(0); ++i) {
      if (w->stage(storage::record_kind::batch, 1, 1, pieces) == 0) {
        state.SkipWithError("group full");
        return;
      }
    }
    w->submit();
    if (w->wait(-1) != storage::wal_writer::wait_status::committed) {
      state.SkipWithError("commit failed");
      return;
    }
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
  w.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_append_record)->RangeMultiplier(4)->Range(1, 1024)->UseRealTime();

// A records flush: 65,536 transfer records appended to the snapshot's transfers table in
// one LMDB transaction (committed), `range(0)` records to a row as they are (1: one put
// per record; 26: the first form of engine/record_rows.hpp) or 0: packed by
// record_rows::append (as the engine writes them since snapshot format 11, with their id
// hashes), then their pages dropped from the page cache as the engine does. CPU time per
// record is the figure: the checkpoint thread shares the cores with the shards. The
// records look like a load's: ids counted up, accounts among 100,000, balances after.
static void BM_snapshot_records_flush(benchmark::State& state) {
  const std::string dir = "/tmp/mesob-bm-snap";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::string err;
  auto s = storage::snapshot_store::open(dir, 16ull << 30, &err);
  if (!s) {
    state.SkipWithError(err.c_str());
    return;
  }
  const auto per_row = uint64_t(state.range(0));
  constexpr uint64_t n = 65536;
  std::vector<actors::transfer_record> recs(n);
  std::mt19937_64 rng(3);
  for (uint64_t i = 0; i < n; ++i) {
    auto& r = recs[i];
    r.t.id = {9'000'000 + i, 0xa49536d9639188deull};
    r.t.debit_account_id = r.owner_account_id = (uint64_t(1) << 40) + rng() % 100'000;
    r.t.credit_account_id = (uint64_t(1) << 40) + rng() % 100'000;
    r.t.amount = rng() % 1000 + 1;
    r.t.currency = wire::currency("ETB");
    r.t.timestamp = 1'790'000'000'000'000'000ull + i;
    r.result = 0;
    r.debit_prev = i > 200'000 ? i - rng() % 200'000 : 0;
    r.credit_prev = i > 200'000 ? i - rng() % 200'000 : 0;
    r.debit_after_debits_posted = 1'000'000'000'000ull + rng() % 1'000'000'000;
    r.debit_after_credits_posted = 1'000'000'000'000ull + rng() % 1'000'000'000;
    r.credit_after_debits_posted = 1'000'000'000'000ull + rng() % 1'000'000'000;
    r.credit_after_credits_posted = 1'000'000'000'000ull + rng() % 1'000'000'000;
  }
  const engine::id_hasher hash(engine::id_hash_key::random());
  uint64_t next = 0;
  for (auto _ : state) {
    const uint64_t first = next;
    auto w = s->begin(&err);
    if (per_row == 0) {
      if (!engine::record_rows::append(*w, next, n, [&](uint64_t serial) -> const actors::transfer_record& {
            return recs[serial - first];
          }, hash)) {
        state.SkipWithError(w->error().c_str());
        return;
      }
      next += n;
    }
    for (uint64_t k = 0; per_row > 0 && k < n; k += per_row) {
      if (!w->append(storage::table::transfers, next, {reinterpret_cast<const uint8_t*>(recs.data() + k),
                                                        per_row * sizeof(actors::transfer_record)})) {
        state.SkipWithError(w->error().c_str());
        return;
      }
      next += per_row;
    }
    if (!w->commit_without_meta()) {
      state.SkipWithError(w->error().c_str());
      return;
    }
    s->release_pages();
    s->uncache_rows(storage::table::transfers, first, next);  // as the engine's flush does
    s->release_pages();
  }
  state.SetItemsProcessed(int64_t(state.iterations() * n));
  s.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_snapshot_records_flush)->Arg(1)->Arg(engine::record_rows::plain_records_per_row)->Arg(0);

// Deciding and applying one transfer between two resident accounts.
static void BM_transfer_apply(benchmark::State& state) {
  wire::account dr{}, cr{};
  dr.id = 1;
  cr.id = 2;
  dr.currency = cr.currency = wire::currency("ETB");
  wire::transfer t{};
  t.id = {1, 0};
  t.debit_account_id = 1;
  t.credit_account_id = 2;
  t.amount = 3;
  t.currency = dr.currency;
  for (auto _ : state) {
    auto r = actors::decide_transfer(t, 1, &dr, &cr);
    if (r == wire::result::ok) {
      actors::apply_transfer_debit(dr, t);
      actors::apply_transfer_credit(cr, t);
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(int64_t(state.iterations()));
}
BENCHMARK(BM_transfer_apply);

// One shard executing 8,192-transfer batches between random accounts out of range(0)
// (all on this shard, no durability, no other thread): the per-transfer cost of the
// shard itself, cache misses on the accounts included.
static void BM_shard_transfers(benchmark::State& state) {
  const uint64_t accounts = uint64_t(state.range(0));
  actors::record_store records(1u << 20);
  actors::shard sh(0, 1, records, accounts);
  for (uint64_t id = 1; id <= accounts; ++id) {
    wire::account a{};
    a.id = id;
    a.currency = wire::currency("ETB");
    sh.load_account(a, 0);
  }
  constexpr uint32_t n = 8192;
  std::mt19937_64 rng(3);
  actors::batch b;
  b.kind = actors::op_kind::create_transfers;
  b.count = n;
  b.transfers.resize(n);
  b.routes.resize(n);
  b.results.resize(n);
  uint64_t ts = 1, next_id = 1;
  for (auto _ : state) {
    state.PauseTiming();
    b.timestamp_base = ts;
    ts += n;
    for (uint32_t o = 0; o < n; ++o) {
      wire::transfer& t = b.transfers[o];
      t = wire::transfer{};
      t.id = {next_id++, 0};
      t.debit_account_id = rng() % accounts + 1;
      do t.credit_account_id = rng() % accounts + 1; while (t.credit_account_id == t.debit_account_id);
      t.amount = 1;
      t.currency = wire::currency("ETB");
      actors::op_route& r = b.routes[o];
      r = actors::op_route{};
      r.kind = actors::route_kind::fresh;
      r.serial = records.size();
      r.chain_end = o;
      r.chain_mask = 1;
      actors::transfer_record& rec = records.append();
      rec.t = t;
      rec.t.timestamp = ts + o;
      rec.owner_account_id = t.debit_account_id;
    }
    actors::list_shard_ops(b, 1);
    state.ResumeTiming();
    sh.execute(b);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * n);
}
BENCHMARK(BM_shard_transfers)->Arg(1 << 10)->Arg(1 << 20);

// Inserting range(0) ids from empty, growths included (their builder thread places
// the hashes the index logs as it inserts). As the sequencer does, each batch of 8,192
// ids is hashed first, in a loop of its own, and each id's look-up and insert take its hash.
static void BM_id_index_insert(benchmark::State& state) {
  std::vector<wire::id128> ids(size_t(state.range(0)));
  std::mt19937_64 rng(1);
  for (auto& id : ids) id = {rng(), rng()};
  auto id_of = [&](uint64_t s) { return ids[s]; };
  std::vector<uint64_t> hs(8192);
  for (auto _ : state) {
    engine::id_index idx;
    for (uint64_t c = 0; c < ids.size(); c += hs.size()) {
      const uint64_t m = std::min<uint64_t>(hs.size(), ids.size() - c);
      for (uint64_t k = 0; k < m; ++k) hs[k] = idx.hash(ids[c + k]);
      for (uint64_t k = 0; k < m; ++k) {
        if (idx.find(ids[c + k], &hs[k], id_of) >= 0) state.SkipWithError("false duplicate");
        idx.insert(ids[c + k], c + k, &hs[k]);
      }
    }
    benchmark::DoNotOptimize(idx.size());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_id_index_insert)->Range(1 << 10, 1 << 22);

// The same for ids that count up, as mesob-load's: batches of 8,192 consecutive ids,
// each pair of batches delivered out of order (two connections). Look-up and insert,
// with the prefetch the sequencer issues 8 ahead: ranges, so no table growth and no probe,
// and (as the sequencer) only ids that may probe hashed: none past a run's first 16.
static void BM_id_index_insert_counting(benchmark::State& state) {
  std::vector<wire::id128> ids(size_t(state.range(0)));
  constexpr uint64_t batch = 8192;
  for (uint64_t s = 0; s < ids.size(); ++s) {
    const uint64_t b = s / batch, block = b % 2 == 0 ? b + 1 : b - 1;
    ids[s] = {block * batch + s % batch + 1, 0x6d65736f62};
  }
  auto id_of = [&](uint64_t s) { return ids[s]; };
  std::vector<uint64_t> hs(batch);
  std::vector<uint8_t> hashed(batch);
  for (auto _ : state) {
    engine::id_index idx;
    for (uint64_t c = 0; c < ids.size(); c += batch) {  // hashed a batch at a time, as above
      const uint64_t m = std::min<uint64_t>(batch, ids.size() - c);
      for (uint64_t k = 0; k < m; ++k) {
        hashed[k] = idx.may_probe(ids[c + k]);
        if (hashed[k]) hs[k] = idx.hash(ids[c + k]);
      }
      auto h = [&](uint64_t k) { return hashed[k] ? &hs[k] : nullptr; };
      for (uint64_t k = 0; k < m; ++k) {
        if (k + 8 < m) idx.prefetch(ids[c + k + 8], h(k + 8));
        if (idx.find(ids[c + k], h(k), id_of) >= 0) state.SkipWithError("false duplicate");
        idx.insert(ids[c + k], c + k, h(k));
      }
    }
    benchmark::DoNotOptimize(idx.size());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * state.range(0));
}
BENCHMARK(BM_id_index_insert_counting)->Arg(1 << 16)->Arg(1 << 22);

// Filling 64 MiB of fresh memory in order, 8 bytes at a time, as the id index's hash log
// is filled: every page faulted in on its first write (arg 0), or each arg KiB backed
// first in one call (populate_pages; the hash log backs 64 KiB at a time since the
// seventy-first session). Items: pages.
static void BM_fill_fresh_pages(benchmark::State& state) {
  constexpr size_t bytes = size_t(64) << 20;
  const size_t step = size_t(std::max<int64_t>(state.range(0), 4)) << 10;
  for (auto _ : state) {
    void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
      state.SkipWithError("mmap failed");
      break;
    }
    ::madvise(m, bytes, MADV_NOHUGEPAGE);  // 4 KiB pages, as the hash log's
    auto* w = static_cast<uint64_t*>(m);
    for (size_t at = 0; at < bytes / 8; ++at) {
      if (state.range(0) != 0 && at % (step / 8) == 0) populate_pages(w + at, step);
      w[at] = at;
    }
    benchmark::DoNotOptimize(w[bytes / 8 - 1]);
    state.PauseTiming();
    ::munmap(m, bytes);
    state.ResumeTiming();
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(bytes / 4096));
}
BENCHMARK(BM_fill_fresh_pages)->Arg(0)->Arg(16)->Arg(64)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

// Looking up ids the index does not hold, as the sequencer does for every new transfer
// (a batch's ids hashed first, the lines 8 ids ahead prefetched), in an index of range(0) ids in a table of 2^25
// slots: 13M sits just after a growth (39% full), 16.8M and 21M between (50%, 63%),
// 25M just before the next (75%).
static void BM_id_index_find_new(benchmark::State& state) {
  const auto n = uint64_t(state.range(0));
  std::vector<wire::id128> ids(n);
  std::mt19937_64 rng(2);
  for (auto& id : ids) id = {rng(), rng()};
  auto id_of = [&](uint64_t s) { return ids[s]; };
  engine::id_index idx;
  for (uint64_t s = 0; s < n; ++s) idx.insert(ids[s], s);
  idx.finish_growth_now();
  std::vector<wire::id128> fresh(1 << 22);  // 64 MiB: their slots are not cached from the last pass
  for (auto& id : fresh) id = {rng(), rng()};
  constexpr size_t ahead = 8;
  int64_t found = 0;
  size_t at = 0;
  std::vector<uint64_t> hs(8192 + ahead);  // each batch's hashes first, as the sequencer
  for (auto _ : state) {
    for (size_t o = 0; o < hs.size(); ++o) hs[o] = idx.hash(fresh[(at + o) & (fresh.size() - 1)]);
    for (size_t o = 0; o < 8192; ++o) {
      const size_t i = (at + o) & (fresh.size() - 1);
      idx.prefetch(fresh[(i + ahead) & (fresh.size() - 1)], &hs[o + ahead]);
      found += idx.find(fresh[i], &hs[o], id_of) >= 0;
    }
    at += 8192;
  }
  if (found != 0) state.SkipWithError("a fresh id was found");
  state.counters["load"] = double(n) / double(idx.next_growth_at()) * 0.75;
  state.SetItemsProcessed(int64_t(state.iterations()) * 8192);
}
BENCHMARK(BM_id_index_find_new)->Arg(13'000'000)->Arg(16'800'000)->Arg(21'000'000)->Arg(25'000'000)->Unit(benchmark::kMicrosecond);

// The server's decode of an 8,192-transfer request: verify the flatbuffer, check the
// batch, copy the transfers out into the engine's request (engine/server.cpp on_request).
static void BM_parse_transfers_request(benchmark::State& state) {
  std::vector<wire::transfer> ts(8192);
  std::mt19937_64 rng(4);
  for (auto& t : ts) {
    t.id = {rng(), rng()};
    t.debit_account_id = rng() % 1000 + 1;
    t.credit_account_id = rng() % 1000 + 1001;
    t.amount = rng() % 1000 + 1;
    t.currency = wire::currency("ETB");
  }
  const auto body = wire::create_transfers_body(ts);
  std::vector<wire::transfer> out;
  for (auto _ : state) {
    wire::parsed_request p;
    wire::error_msg err;
    if (!wire::parse_request(body, &p, &err)) {
      state.SkipWithError(err.message.c_str());
      return;
    }
    std::vector<wire::transfer>().swap(out);  // a fresh request's vector, as the server's
    p.copy_to(out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * 8192);
}
BENCHMARK(BM_parse_transfers_request);

// A frame of 4,096 transfer events as a subscriber receives them: one log record, accounts
// among 100,000, amounts up to 1,000; ids counted up from a base (argument 0, as
// mesob-load and the benches make them) or random (1).
static std::vector<wire::event> transfer_events(bool random_ids) {
  std::vector<wire::event> v(4096);
  std::mt19937_64 rng(8);
  for (size_t i = 0; i < v.size(); ++i) {
    auto& e = v[i];
    e.offset = 1'000'000 + i;
    e.lsn = 77;
    e.timestamp = 1'790'000'000'000'000'000;
    e.type = wire::event_type::transfer_posted;
    e.currency = wire::currency("ETB");
    e.id = random_ids ? wire::id128{rng(), rng()} : wire::id128{5'000'000 + i, 0x6d65736f62};
    e.account_a = rng() % 100'000 + 1;
    e.account_b = rng() % 100'000 + 1;
    e.amount = rng() % 1000 + 1;
    e.crc = storage::crc32c(&e, 92);
  }
  return v;
}

static void BM_pack_events(benchmark::State& state) {
  const auto events = transfer_events(state.range(0) != 0);
  std::vector<uint8_t> out;
  for (auto _ : state) {
    out.clear();
    wire::pack_events(events, out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations() * events.size()));
  state.counters["bytes_per_event"] = double(out.size()) / double(events.size());
}
BENCHMARK(BM_pack_events)->Arg(0)->Arg(1);

static void BM_unpack_events(benchmark::State& state) {
  const auto events = transfer_events(state.range(0) != 0);
  std::vector<uint8_t> in;
  wire::pack_events(events, in);
  std::vector<wire::event> out;
  std::string why;
  for (auto _ : state) {
    if (!wire::unpack_events(in, uint32_t(events.size()), out, &why)) {
      state.SkipWithError(why.c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations() * events.size()));
}
BENCHMARK(BM_unpack_events)->Arg(0)->Arg(1);

// The same, handed out a block at a time (a consumer that takes events one by one).
static void BM_unpack_events_by_block(benchmark::State& state) {
  const auto events = transfer_events(state.range(0) != 0);
  std::vector<uint8_t> in;
  wire::pack_events(events, in);
  std::string why;
  uint64_t seen = 0;
  const wire::event_visitor each = [&](std::span<const wire::event> block) { seen += block.back().offset; };
  for (auto _ : state) {
    if (!wire::unpack_events(in, uint32_t(events.size()), each, &why)) {
      state.SkipWithError(why.c_str());
      return;
    }
    benchmark::DoNotOptimize(seen);
  }
  state.SetItemsProcessed(int64_t(state.iterations() * events.size()));
}
BENCHMARK(BM_unpack_events_by_block)->Arg(0)->Arg(1);

// Checking every event's CRC, as a client parsing an Events frame does: four events at a
// time (argument 1, wire::first_bad_crc) or one after another (argument 0, event_crc).
static void BM_check_event_crcs(benchmark::State& state) {
  const auto events = transfer_events(false);
  size_t bad = 0;
  for (auto _ : state) {
    if (state.range(0) != 0) {
      bad = wire::first_bad_crc(events);
    } else {
      bad = events.size();
      for (size_t i = 0; i < events.size(); ++i)
        if (wire::event_crc(events[i]) != events[i].crc) {
          bad = i;
          break;
        }
    }
    benchmark::DoNotOptimize(bad);
  }
  if (bad != events.size()) state.SkipWithError("a CRC failed");
  state.SetItemsProcessed(int64_t(state.iterations() * events.size()));
}
BENCHMARK(BM_check_event_crcs)->Arg(0)->Arg(1);

// A transfer batch's log payload, as the sequencer makes it: 8,192 transfers (ids counted
// up from a base, as mesob-load makes them, or random: argument 1), accounts among
// 100,000, then the record's CRC-32C and SHA-256 chain over the payload. Argument 0: the
// transfers as they are (88 bytes each, record version 3); 1: packed first (version 4).
static std::vector<wire::transfer> load_transfers(bool random_ids) {
  std::vector<wire::transfer> v(8192);
  std::mt19937_64 rng(9);
  for (size_t i = 0; i < v.size(); ++i) {
    auto& t = v[i];
    t.id = random_ids ? wire::id128{rng(), rng()} : wire::id128{7'000'000 + i, 0xa49536d9639188deull};
    t.debit_account_id = (uint64_t(1) << 40) + rng() % 100'000;
    t.credit_account_id = (uint64_t(1) << 40) + rng() % 100'000;
    t.amount = rng() % 1000 + 1;
    t.currency = wire::currency("ETB");
  }
  return v;
}

static void BM_log_transfers_payload(benchmark::State& state) {
  const bool packed = state.range(0) != 0;
  const auto transfers = load_transfers(state.range(1) != 0);
  std::vector<uint8_t> out;
  storage::chain_hasher h;
  for (auto _ : state) {
    std::span<const uint8_t> payload{reinterpret_cast<const uint8_t*>(transfers.data()),
                                     transfers.size() * sizeof(wire::transfer)};
    if (packed) {
      out.clear();
      wire::pack_transfers(transfers, out);
      payload = out;
    }
    benchmark::DoNotOptimize(storage::crc32c(payload.data(), payload.size()));
    h.update(payload.data(), payload.size());
    benchmark::DoNotOptimize(h.finish());
    state.counters["bytes_per_transfer"] = double(payload.size()) / double(transfers.size());
  }
  state.SetItemsProcessed(int64_t(state.iterations() * transfers.size()));
}
BENCHMARK(BM_log_transfers_payload)->ArgsProduct({{0, 1}, {0, 1}});

static void BM_unpack_transfers(benchmark::State& state) {
  const auto transfers = load_transfers(state.range(0) != 0);
  std::vector<uint8_t> in;
  wire::pack_transfers(transfers, in);
  std::vector<wire::transfer> out;
  std::string why;
  for (auto _ : state) {
    if (!wire::unpack_transfers(in, uint32_t(transfers.size()), out, &why)) {
      state.SkipWithError(why.c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(int64_t(state.iterations() * transfers.size()));
}
BENCHMARK(BM_unpack_transfers)->Arg(0)->Arg(1);

// The event writer's work per event at the engine's maximum rate: derive_events of a
// logged batch of 8,192 transfers (ids counted up, accounts among 100,000, every one
// posted), then event_log::append of the events (offsets, CRCs, the in-memory ring, the
// packed chunks, one O_DIRECT write) into a real log in a temporary directory. Sixteen
// batches in turn (about 19 MB of batch data), so their reads come from beyond the core's
// caches as the writer's do behind the shards. Retention keeps the files to 256 MB; the
// segment's sync is paid once every 4M events.
static void BM_event_writer_path(benchmark::State& state) {
  const std::string dir = std::filesystem::temp_directory_path() / "mesob-bench-evwrite";
  std::filesystem::remove_all(dir);
  storage::event_log_options opt;
  opt.dir = dir;
  opt.segment_events = storage::event_format::segment_events_max;
  opt.retention_bytes = 256ull << 20;
  storage::event_log_recovery rec;
  std::string err;
  auto log = storage::event_log::open(opt, &rec, &err);
  if (!log) {
    state.SkipWithError(err.c_str());
    return;
  }
  constexpr uint32_t n = 8192;
  std::vector<actors::batch> batches(16);
  std::mt19937_64 rng(12);
  uint64_t next_id = 1'000'000;
  for (size_t k = 0; k < batches.size(); ++k) {
    actors::batch& b = batches[k];
    b.kind = actors::op_kind::create_transfers;
    b.lsn = k + 1;
    b.timestamp_base = 1'790'000'000'000'000'000 + k * n;
    b.count = n;
    b.transfers.resize(n);
    b.routes.resize(n);
    b.results.assign(n, wire::result::ok);
    for (uint32_t i = 0; i < n; ++i) {
      wire::transfer& t = b.transfers[i];
      t.id = {next_id++, 0x6d65736f62};
      t.debit_account_id = rng() % 100'000 + 1;
      t.credit_account_id = rng() % 100'000 + 1;
      t.amount = rng() % 1000 + 1;
      t.currency = wire::currency("ETB");
      b.routes[i].kind = actors::route_kind::fresh;
      b.routes[i].serial = next_id;
    }
  }
  std::vector<wire::event> out;
  size_t k = 0;
  uint64_t events = 0;
  for (auto _ : state) {
    out.clear();
    engine::derive_events(batches[k], out);
    if (!log->append(out, &err)) {
      state.SkipWithError(err.c_str());
      break;
    }
    events += out.size();
    k = (k + 1) % batches.size();
    if (k == 0) {
      state.PauseTiming();
      if (!log->sync(&err)) {
        state.SkipWithError(err.c_str());
        break;
      }
      log->apply_retention();
      state.ResumeTiming();
    }
  }
  state.SetItemsProcessed(int64_t(events));
  log.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_event_writer_path);

// mesob-load's transfer k (load::make_transfer) as the baselines run it: 100,000
// accounts over 2 shards, 10% crossing (arg 0), or 4 shards (arg 1), or 80% between
// each shard's 16 hot accounts (arg 2). It runs on the engine's cores during a maximum
// rate run: its CPU is the engine's loss.
static void BM_load_make_transfer(benchmark::State& state) {
  load::workload w;
  w.accounts = 100'000;
  w.first_account = 1'000'000'000;
  w.shards = state.range(0) == 1 ? 4 : 2;
  if (state.range(0) == 2) w.hot_pct = 80;
  const load::account_layout layout(w);
  uint64_t k = 0, sum = 0;
  for (auto _ : state) {
    const wire::transfer t = load::make_transfer(w, layout, ++k);
    sum += t.debit_account_id ^ t.credit_account_id;
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(int64_t(k));
}
BENCHMARK(BM_load_make_transfer)->Arg(0)->Arg(1)->Arg(2);

BENCHMARK_MAIN();
