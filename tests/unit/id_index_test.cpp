// The id index: every id found after any number of background growths (the builder
// reads hashes across the hash log's segments while the owner appends), growth with a
// slow builder (the owner waits only at 7/8 load), abandoning a growth.
#include "engine/id_index.hpp"
#include "actors/flat_map.hpp"
#include "support/seed.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <unordered_map>

using namespace mesob;
using engine::id_hash_key;
using engine::id_index;

namespace {

struct fixture {
  std::vector<wire::id128> ids;
  uint64_t inserted = 0;

  explicit fixture(size_t n, uint64_t seed) {
    std::mt19937_64 rng(seed);
    ids.resize(n);
    for (auto& id : ids) id = {rng(), rng()};
  }
  void insert_all(id_index& idx, size_t n) {
    for (; inserted < n; ++inserted) idx.insert(ids[inserted], inserted);
  }
  void expect_all_found(const id_index& idx, size_t n) {
    auto id_of = [this](uint64_t s) { return ids[s]; };
    for (uint64_t s = 0; s < n; ++s) ASSERT_EQ(idx.find(ids[s], id_of), int64_t(s)) << "serial " << s;
    std::mt19937_64 rng(99);
    for (int k = 0; k < 10000; ++k) ASSERT_EQ(idx.find({rng(), rng()}, id_of), -1);
  }
};

}  // namespace

TEST(id_index, every_id_found_across_growths) {
  const uint64_t seed = std::random_device{}();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  // The last growth (at 393,217 ids) reads serials across the hash log's segments at
  // 2^16, 2^17 and 2^18.
  fixture f(400000, seed);
  id_index idx;
  f.insert_all(idx, 196000);
  EXPECT_EQ(idx.next_growth_at(), 196608u) << "3/4 of 2^18 slots";
  idx.slow_growth_for_tests(std::chrono::milliseconds(50));
  f.insert_all(idx, 200000);  // a growth to 2^19 slots starts at 196,609
  ASSERT_TRUE(idx.growing());
  EXPECT_EQ(idx.next_growth_at(), 200000u) << "under way: the size now";
  f.expect_all_found(idx, 200000);  // served by the old table meanwhile
  idx.slow_growth_for_tests({});
  f.insert_all(idx, 400000);
  idx.finish_growth_now();
  EXPECT_EQ(idx.next_growth_at(), 786432u) << "3/4 of 2^20 slots";
  f.expect_all_found(idx, 400000);
  EXPECT_EQ(idx.growth_stats().growths, 9u) << "2,048 slots to 2^20";
  EXPECT_EQ(idx.size(), 400000u);
  EXPECT_EQ(idx.table_size(), 400000u) << "random ids: all in the table";
  EXPECT_EQ(idx.ranges(), 0u);
  EXPECT_EQ(idx.memory_bytes(), (size_t(1) << 20) * 8 + 400000 * 8 + 6250 * 8 + id_index::buckets * 8 + 512)
      << "the table, the hash log, its table bits and the buckets";
}

// The hash log backs its pages ahead with populate_pages: every page holding a byte of
// the range is backed after the call (mincore), the next one is not, and what the pages
// held is kept.
TEST(id_index, populate_pages_backs_every_page_of_the_range_and_keeps_its_bytes) {
  constexpr size_t page = 4096, pages = 8;
  void* m = ::mmap(nullptr, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  ::madvise(m, pages * page, MADV_NOHUGEPAGE);  // (transparent huge pages "always" would back all 8 at once)
  auto* bytes = static_cast<unsigned char*>(m);
  auto resident = [&] {
    std::vector<unsigned char> v(pages);
    EXPECT_EQ(::mincore(m, pages * page, v.data()), 0);
    std::string r;
    for (const unsigned char c : v) r += (c & 1) ? 'x' : '.';
    return r;
  };
  bytes[100] = 7;  // page 0 backed, with a byte in it
  ASSERT_EQ(resident(), "x.......");
  // From 100 bytes into page 0 to 10 bytes into page 3: pages 0-3, not 4.
  if (!populate_pages(bytes + 100, 3 * page - 90)) {
    const int err = errno;
    ::munmap(m, pages * page);
    GTEST_SKIP() << "the kernel refuses MADV_POPULATE_WRITE (before 5.14): " << std::strerror(err);
  }
  EXPECT_EQ(resident(), "xxxx....");
  EXPECT_EQ(bytes[100], 7) << "a backed page's bytes are kept";
  for (size_t i = page; i < 4 * page; ++i) ASSERT_EQ(bytes[i], 0) << i;
  EXPECT_TRUE(populate_pages(bytes + 5 * page, 0));
  EXPECT_EQ(resident(), "xxxx....") << "nothing to back";
  EXPECT_TRUE(populate_pages(bytes + 5 * page + page - 1, 1));
  EXPECT_EQ(resident(), "xxxx.x..") << "one byte: its page";
  ::munmap(m, pages * page);
}

TEST(id_index, a_slow_builder_makes_the_owner_wait_only_at_seven_eighths) {
  fixture f(100000, 7);
  id_index idx;
  idx.slow_growth_for_tests(std::chrono::milliseconds(30));  // per 2^16 hashes placed
  f.insert_all(idx, 100000);
  idx.finish_growth_now();
  f.expect_all_found(idx, 100000);
  EXPECT_GT(idx.growth_stats().waits, 0u);
  EXPECT_LE(idx.growth_stats().waits, idx.growth_stats().growths);
}

TEST(id_index, reserve_sizes_up_front) {
  fixture f(50000, 8);
  id_index idx;
  idx.reserve(50000);
  f.insert_all(idx, 50000);
  EXPECT_EQ(idx.growth_stats().growths, 0u);
  EXPECT_FALSE(idx.growing());
  f.expect_all_found(idx, 50000);
}

TEST(id_index, abandoning_a_growth_keeps_the_old_table) {
  fixture f(20000, 9);
  id_index idx;
  idx.slow_growth_for_tests(std::chrono::milliseconds(200));
  f.insert_all(idx, 1600);  // just past 3/4 of the first 2,048 slots: a growth starts
  ASSERT_TRUE(idx.growing());
  idx.abandon_growth();
  EXPECT_FALSE(idx.growing());
  f.expect_all_found(idx, 1600);
  idx.slow_growth_for_tests({});
  f.insert_all(idx, 20000);  // growth starts again and completes
  idx.finish_growth_now();
  f.expect_all_found(idx, 20000);
}

TEST(id_index, destroying_during_a_growth_joins_the_builder) {
  fixture f(2000, 10);
  {
    id_index idx;
    idx.slow_growth_for_tests(std::chrono::milliseconds(100));
    f.insert_all(idx, 1600);
    EXPECT_TRUE(idx.growing());
  }
  SUCCEED();
}

// Ids of every shape the index treats apart, against a plain map of what was recorded:
// runs counting up (short ones stay in the table, long ones become ranges), runs started
// out of order (a block below a recorded one, a block between two), runs broken by
// another id or by a serial taken elsewhere, lo wrapping at 2^64, two id.hi values in
// one bucket, random ids (under random id.hi, and now and then under the counting ones),
// after ids loaded by hash and bounded by set_lo_max. Every recorded id is found at its
// serial, and ids next to every run, inside its gaps and never recorded are not; the
// look-ups interleave with the inserts, as the sequencer's do, and growths run (slowly,
// at times) throughout.
TEST(id_index, runs_ranges_and_random_ids_against_a_map) {
  std::mt19937_64 rng(test::test_seed("id shapes"));
  struct key_hash {
    size_t operator()(const wire::id128& id) const { return std::hash<uint64_t>()(id.lo * 31 + id.hi); }
  };
  std::unordered_map<wire::id128, uint64_t, key_hash> model;
  std::vector<wire::id128> ids;  // by serial
  id_index idx;
  auto id_of = [&](uint64_t s) { return ids.at(s); };
  uint64_t misses = 0, skipped = 0;  // look-ups of ids not recorded; of them, answered without a probe
  auto check = [&](const wire::id128& id) {
    const auto it = model.find(id);
    const int64_t want = it == model.end() ? -1 : int64_t(it->second);
    misses += want < 0;
    // The hash given half the time, as the sequencer gives it (else hashed when needed).
    const uint64_t h = idx.hash(id);
    const uint64_t* given = rng() % 2 ? &h : nullptr;
    idx.prefetch(id, given);
    const uint64_t probes = idx.probes();
    ASSERT_EQ(idx.find(id, given, id_of), want) << "id " << id.hi << ":" << id.lo << " after " << ids.size();
    skipped += want < 0 && idx.probes() == probes;
  };
  // Records id unless recorded; checks it first and its neighbours after.
  auto record = [&](const wire::id128& id) {
    check(id);
    if (model.count(id)) return;
    const uint64_t serial = ids.size();
    ids.push_back(id);
    model[id] = serial;
    const uint64_t h = idx.hash(id);
    idx.insert(id, serial, rng() % 2 ? &h : nullptr);
    check({id.lo + 1, id.hi});
    check({id.lo - 1, id.hi});
  };
  // his[1] shares his[0]'s bucket.
  uint64_t same = 8;
  while (id_index::bucket_of(same) != id_index::bucket_of(7)) ++same;
  // Random lo tops out its bucket's lo_max: under random his too, such ids would soon top
  // out every bucket (see id_index.hpp), and the skip would go untested here. So they
  // come under a few his of their own (and his[2]), none in a bucket of the others.
  auto apart = [&] {
    for (;;) {
      const uint64_t hi = rng();
      const size_t b = id_index::bucket_of(hi);
      if (b != id_index::bucket_of(7) && b != id_index::bucket_of(1ull << 63) && b != id_index::bucket_of(0)) return hi;
    }
  };
  const uint64_t his[] = {7, same, apart(), 1ull << 63, 0};
  const uint64_t random_his[] = {apart(), apart(), apart()};
  uint64_t next_lo[5] = {1000, 1, rng(), UINT64_MAX - 3000, 0};
  // Loaded by hash first: counting ids under his[0] and his[4], and random ones; the
  // bounds set from them.
  std::vector<uint64_t> lo_max(id_index::buckets, 0);
  for (int i = 0; i < 3000; ++i) {
    const wire::id128 id = i % 3 == 2 ? wire::id128{rng(), random_his[i % 2]}
                                      : wire::id128{next_lo[i % 3 == 0 ? 0 : 4]++, his[i % 3 == 0 ? 0 : 4]};
    model[id] = ids.size();
    idx.insert_hashed(idx.hasher()(id), ids.size());
    ids.push_back(id);
    uint64_t& m = lo_max[id_index::bucket_of(id.hi)];
    m = std::max(m, id.lo);
  }
  idx.set_lo_max(lo_max);
  for (int step = 0; step < 4000; ++step) {
    const int shape = int(rng() % 8);
    const size_t h = rng() % 5;
    if (step % 500 == 250) idx.slow_growth_for_tests(std::chrono::microseconds(rng() % 3000));
    if (shape <= 2) {  // a run from where this hi got to, 1 to 40 long, or long
      const uint64_t len = rng() % 10 == 0 ? 200 + rng() % 2000 : 1 + rng() % 40;
      for (uint64_t i = 0; i < len; ++i) record({next_lo[h]++, his[h]});
    } else if (shape == 3) {  // a block below or among recorded ones (out of order)
      const uint64_t len = 1 + rng() % 60, back = rng() % 5000;
      const uint64_t from = next_lo[h] >= back ? next_lo[h] - back : 0;  // no wrap to the top: it would top lo_max
      for (uint64_t i = 0; i < len; ++i) record({from + i, his[h]});
    } else if (shape == 4) {  // a run with a gap of one: skipped ids stay unrecorded
      for (uint64_t i = 0; i < 30; ++i) record({next_lo[h] + (i == 20 ? ++i : i), his[h]});
      next_lo[h] += 31;
    } else if (shape == 5) {  // random lo under a few his of their own, now and then his[2]
      for (int i = 0; i < 20; ++i) record({rng(), rng() % 100 == 0 ? his[2] : random_his[rng() % 3]});
    } else if (shape == 6) {  // repeats and ids never recorded, no inserts
      for (int i = 0; i < 50 && !ids.empty(); ++i) check(ids[rng() % ids.size()]);
      for (int i = 0; i < 50; ++i) check({next_lo[h] - rng() % 6000, his[h]});
    } else {  // two his interleaved id by id: every run is one id long
      for (int i = 0; i < 10; ++i) record({next_lo[h]++, his[h]}), record({next_lo[(h + 1) % 5]++, his[(h + 1) % 5]});
    }
    if (HasFatalFailure()) return;
  }
  idx.finish_growth_now();
  for (uint64_t s = 0; s < ids.size(); ++s) ASSERT_EQ(idx.find(ids[s], id_of), int64_t(s)) << "serial " << s;
  std::printf("%zu ids: %zu in the table, %zu ranges, %llu growths\n", ids.size(), idx.table_size(), idx.ranges(),
              static_cast<unsigned long long>(idx.growth_stats().growths));
  EXPECT_LT(idx.table_size(), ids.size());
  EXPECT_GT(idx.ranges(), 0u);
  std::printf("%llu look-ups of ids not recorded, %llu of them without a probe\n",
              static_cast<unsigned long long>(misses), static_cast<unsigned long long>(skipped));
  EXPECT_GT(skipped, misses / 5) << "the look-ups that skip the table are tested too";
}

// Ids counting up, a batch at a time and the batches out of order (as two connections
// deliver mesob-load's): the table holds each run's first 16 ids only.
TEST(id_index, ids_counting_up_skip_the_table) {
  id_index idx;
  std::vector<wire::id128> ids;
  auto id_of = [&](uint64_t s) { return ids.at(s); };
  const uint64_t batch = 4096, batches = 200;
  for (uint64_t b = 0; b < batches; ++b) {
    const uint64_t block = b % 2 == 0 ? b + 1 : b - 1;  // 1, 0, 3, 2, ...
    for (uint64_t i = 0; i < batch; ++i) {
      const wire::id128 id{block * batch + i + 1, 42};
      ASSERT_EQ(idx.find(id, id_of), -1);
      idx.insert(id, ids.size());
      ids.push_back(id);
    }
  }
  EXPECT_EQ(idx.probes(), 0u) << "no look-up of a new id probed the table";
  EXPECT_EQ(idx.table_size(), batches * id_index::table_first);
  EXPECT_LE(idx.growth_stats().growths, 2u) << "3,200 table entries: 2,048 slots to 8,192";
  EXPECT_LT(idx.memory_bytes(), ids.size() * 9) << "8 bytes an id for the hash log, and little else";
  EXPECT_EQ(idx.ranges(), batches);
  for (uint64_t s = 0; s < ids.size(); ++s) ASSERT_EQ(idx.find(ids[s], id_of), int64_t(s));
  EXPECT_EQ(idx.probes(), 0u) << "nor of a recorded one: the ranges answer";
  EXPECT_EQ(idx.find({batch * batches + 1, 42}, id_of), -1);
  EXPECT_EQ(idx.find({0, 42}, id_of), -1);
  EXPECT_EQ(idx.find({1, 43}, id_of), -1);
}

// Ids loaded by hash (a snapshot) could be anything: every bucket's lo_max is topped, so
// a new id is looked up in the table and a loaded one found there, until the snapshot's
// own figures replace them and new ids past them need no probe. A bound too low would
// hide loaded ids (the caller's error: the snapshot's row bounds every record).
TEST(id_index, ids_loaded_by_hash_are_found_and_bounded_by_set_lo_max) {
  id_index idx;
  std::vector<wire::id128> ids;
  auto id_of = [&](uint64_t s) { return ids.at(s); };
  for (uint64_t i = 0; i < 3000; ++i) ids.push_back({1000 + i, 5});
  for (uint64_t i = 0; i < 3000; ++i) idx.insert_hashed(idx.hasher()(ids[i]), i);
  for (uint64_t i = 0; i < 3000; ++i) ASSERT_EQ(idx.find(ids[i], id_of), int64_t(i));
  uint64_t probes = idx.probes();
  EXPECT_EQ(idx.find({4000, 5}, id_of), -1);
  EXPECT_EQ(idx.probes(), probes + 1) << "topped: a new id probes";
  std::vector<uint64_t> lo_max(id_index::buckets, 0);
  lo_max[id_index::bucket_of(5)] = 3999;
  idx.set_lo_max(lo_max);
  for (uint64_t i = 0; i < 3000; ++i) ASSERT_EQ(idx.find(ids[i], id_of), int64_t(i));
  // Counting on: past lo 3999 nothing to probe; a repeat of a loaded id is found.
  probes = idx.probes();
  for (uint64_t i = 0; i < 100; ++i) {
    const wire::id128 id{4000 + i, 5};
    ASSERT_EQ(idx.find(id, id_of), -1);
    idx.insert(id, ids.size());
    ids.push_back(id);
  }
  EXPECT_EQ(idx.probes(), probes) << "bounded: new ids past the bound need no probe";
  for (uint64_t s = 0; s < ids.size(); ++s) ASSERT_EQ(idx.find(ids[s], id_of), int64_t(s));
  EXPECT_EQ(idx.find({999, 5}, id_of), -1);
  // The bound is what the look-up goes by: one too low hides the loaded ids above it.
  lo_max[id_index::bucket_of(5)] = 2000;
  id_index low;
  for (uint64_t i = 0; i < 3000; ++i) low.insert_hashed(low.hasher()(ids[i]), i);
  low.set_lo_max(lo_max);
  EXPECT_EQ(low.find({2000, 5}, id_of), 1000);
  EXPECT_EQ(low.find({2001, 5}, id_of), -1);
  // A load after the figures were set tops them again.
  idx.insert_hashed(idx.hasher()(wire::id128{1, 9}), ids.size());
  ids.push_back({1, 9});
  EXPECT_EQ(idx.find({1, 9}, id_of), int64_t(ids.size() - 1));
}

// SipHash-c-d of 16 bytes under a 16-byte key, as OpenSSL computes it.
uint64_t openssl_siphash(const id_hash_key& k, const wire::id128& id, unsigned c, unsigned d) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "SIPHASH", nullptr);
  EVP_MAC_CTX* ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  size_t size = 8;
  const OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                               OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c),
                               OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d), OSSL_PARAM_construct_end()};
  uint8_t key[16], msg[16], out[8] = {};
  std::memcpy(key, &k.k0, 8);
  std::memcpy(key + 8, &k.k1, 8);
  std::memcpy(msg, &id.lo, 8);
  std::memcpy(msg + 8, &id.hi, 8);
  size_t n = 0;
  const bool ok = ctx && EVP_MAC_init(ctx, key, sizeof key, params) == 1 && EVP_MAC_update(ctx, msg, sizeof msg) == 1 &&
                  EVP_MAC_final(ctx, out, &n, sizeof out) == 1 && n == 8;
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  EXPECT_TRUE(ok) << "OpenSSL's SipHash";
  uint64_t h = 0;
  std::memcpy(&h, out, 8);
  return h;
}

// The hash the snapshot stores (`transfer_ids`) is SipHash-1-3 of the id (lo, then hi,
// little-endian) under the index's key, checked against OpenSSL's SipHash (and the
// rounds: its default 2-4 too); another key hashes otherwise.
TEST(id_index, ids_hash_by_siphash_1_3_under_the_index_s_key) {
  std::mt19937_64 rng(test::test_seed("keys and ids"));
  for (int i = 0; i < 200; ++i) {
    const id_hash_key k{rng(), rng()};
    const wire::id128 id = i == 0 ? wire::id128{0, 0} : wire::id128{rng(), i % 3 == 0 ? 0 : rng()};
    id_index idx(1024, k);
    EXPECT_EQ(idx.hasher()(id), openssl_siphash(k, id, 1, 3)) << i;
    EXPECT_EQ((engine::siphash_2words<2, 4>(k, id.lo, id.hi)), openssl_siphash(k, id, 2, 4)) << i;
    EXPECT_NE(idx.hasher()(id), engine::id_hasher(id_hash_key{k.k0 ^ 1, k.k1})(id)) << i;
  }
  // An index without a key given draws one: two of them hash alike only by chance.
  const wire::id128 one{1, 7};
  EXPECT_NE(id_index().hasher()(one), id_index().hasher()(one));
}

// Ids chosen so that the unkeyed mix this index hashed with before gave them all one
// hash, 64 bits of it (each id.lo undoes its id.hi's part): each look-up of one compared
// its id with every one recorded before it (n^2 / 2 comparisons for n of them). Under
// the key they spread: about one comparison per look-up of a recorded id, and almost
// none for a new one.
TEST(id_index, ids_chosen_to_collide_unkeyed_spread_out) {
  const auto mix = [](uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
  };
  const auto unkeyed = [&](const wire::id128& id) { return mix(id.lo ^ mix(id.hi + 0x9e3779b97f4a7c15ull)); };
  constexpr uint64_t n = 20'000;
  const auto chosen = [&](uint64_t i) { return wire::id128{mix(i + 0x9e3779b97f4a7c15ull) ^ 42, i}; };
  ASSERT_EQ(unkeyed(chosen(1)), unkeyed(chosen(n + 7)));
  id_index idx;
  std::vector<wire::id128> ids;
  uint64_t compared = 0;
  auto id_of = [&](uint64_t s) {
    ++compared;
    return ids.at(s);
  };
  for (uint64_t i = 1; i <= n; ++i) {
    ASSERT_EQ(idx.find(chosen(i), id_of), -1);
    idx.insert(chosen(i), ids.size());
    ids.push_back(chosen(i));
  }
  EXPECT_LT(compared, n / 100) << "new ids: a fingerprint (24 bits) matches by chance only";
  compared = 0;
  for (uint64_t i = 1; i <= n; ++i) ASSERT_EQ(idx.find(chosen(i), id_of), int64_t(i - 1));
  EXPECT_LT(compared, n + n / 100) << "recorded ids: their own record, and a chance match or so";
}

TEST(id_index, the_bucket_of_id_hi_is_frozen) {
  // The bucket of id.hi the snapshot's `id_lo_max` row is keyed by.
  static_assert(id_index::bucket_of(0) == 0 && id_index::bucket_of(1) == 0x9e3);
  EXPECT_EQ(id_index::bucket_of(0x6d65736f62), 0xaf4u);
}

// Keys chosen so that the unseeded mix of each lands at slot 0 of any table (mix64's
// inverse of i << 32): with the process's seed they spread like any others, where before
// they made one probe run as long as the map, walked by every look-up of them.
TEST(flat_u64_map, keys_chosen_to_collide_spread_out) {
  const auto unmix = [](uint64_t x) {
    x ^= (x >> 31) ^ (x >> 62);
    x *= 0x319642b2d24d8ec3ull;
    x ^= (x >> 27) ^ (x >> 54);
    x *= 0x96de1b173f119089ull;
    x ^= (x >> 30) ^ (x >> 60);
    return x;
  };
  mesob::actors::flat_u64_map m;
  constexpr uint64_t n = 20'000;
  for (uint64_t i = 1; i <= n; ++i) {
    const uint64_t key = unmix(i << 32);
    ASSERT_EQ(mesob::actors::mix64(key), i << 32);
    m.put(key, uint32_t(i));
  }
  size_t longest = 0, total = 0;
  for (uint64_t i = 1; i <= n; ++i) {
    const uint64_t key = unmix(i << 32);
    ASSERT_NE(m.find(key), nullptr);
    EXPECT_EQ(*m.find(key), uint32_t(i));
    const size_t p = m.probes(key);
    longest = std::max(longest, p);
    total += p;
  }
  // Linear probing at most 70% full: about 2 probes on average, the longest a few dozen.
  EXPECT_LT(total / n, 4u);
  EXPECT_LT(longest, 200u);
}

// Keys that are multiples of a std::unordered_map's bucket count (a prime from a fixed
// list) all share one bucket under std::hash, the key itself; under seeded_u64_hash
// (the payouts', wallets', groups' maps) they spread like any others.
TEST(seeded_u64_hash, multiples_of_the_bucket_count_spread_out) {
  constexpr uint64_t n = 20'000;
  std::unordered_map<uint64_t, uint64_t> plain;
  std::unordered_map<uint64_t, uint64_t, mesob::actors::seeded_u64_hash> seeded;
  plain.reserve(n);
  seeded.reserve(n);
  const uint64_t p = plain.bucket_count();
  ASSERT_EQ(seeded.bucket_count(), p);
  for (uint64_t i = 1; i <= n; ++i) {
    plain[i * p] = i;
    seeded[i * p] = i;
  }
  ASSERT_EQ(plain.bucket_count(), p);
  ASSERT_EQ(seeded.bucket_count(), p);
  auto longest = [](const auto& m) {
    size_t most = 0;
    for (size_t b = 0; b < m.bucket_count(); ++b) most = std::max(most, m.bucket_size(b));
    return most;
  };
  EXPECT_EQ(longest(plain), n) << "unseeded: one bucket";
  EXPECT_LT(longest(seeded), 20u);
  for (uint64_t i = 1; i <= n; ++i) ASSERT_EQ(seeded.at(i * p), i);
}
