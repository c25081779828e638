#include "engine/record_rows.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <vector>

#include "engine/id_index.hpp"
#include "wire/column_pack.hpp"

namespace mesob::engine::record_rows {
namespace {

using actors::transfer_record;
using wire::column_pack::field;

// A transfer record's columns when packed: the transfer's (as in the log) and what the
// engine adds.
struct record_layout {
  using record = transfer_record;
  static constexpr const char* noun = "records";
  static constexpr std::array<field, 23> fields = [] {
    std::array<field, 23> f{};
    const auto t = wire::column_pack::transfer_fields(offsetof(transfer_record, t));
    std::copy(t.begin(), t.end(), f.begin());
    const field rest[] = {
        {"owner_account_id", offsetof(transfer_record, owner_account_id), 8},
        {"result", offsetof(transfer_record, result), 4},
        {"record.reserved", offsetof(transfer_record, reserved), 4},
        {"debit_prev", offsetof(transfer_record, debit_prev), 8},
        {"credit_prev", offsetof(transfer_record, credit_prev), 8},
        {"debit_after_debits_posted", offsetof(transfer_record, debit_after_debits_posted), 8},
        {"debit_after_credits_posted", offsetof(transfer_record, debit_after_credits_posted), 8},
        {"credit_after_debits_posted", offsetof(transfer_record, credit_after_debits_posted), 8},
        {"credit_after_credits_posted", offsetof(transfer_record, credit_after_credits_posted), 8},
    };
    std::copy(std::begin(rest), std::end(rest), f.begin() + t.size());
    return f;
  }();
};
using packed_layout = record_layout;
static_assert(wire::column_pack::fields_cover_record<packed_layout>(), "the columns are the record's bytes");
static_assert(records_per_row <= wire::packed_block_events, "a packed row is one block");

// A packed row's header (see record_rows.hpp).
constexpr uint32_t packed_row_magic = 0x31525254;  // "TRR1"
struct packed_row_header {
  uint32_t magic;
  uint16_t count;
  uint8_t pad;
  uint8_t reserved;
};
static_assert(sizeof(packed_row_header) == 8);

// A row of the first form (formats 3 to 10): 1 to plain_records_per_row records as they
// are. A packed row never has such a size (its pad byte sees to it).
bool plain_row(size_t bytes) {
  return bytes != 0 && bytes % sizeof(transfer_record) == 0 && bytes / sizeof(transfer_record) <= plain_records_per_row;
}

// A packed row's header, if `v` (not a first-form row) has a well-formed one.
bool packed_header(std::span<const uint8_t> v, packed_row_header* h) {
  if (v.size() < sizeof *h + 1) return false;
  std::memcpy(h, v.data(), sizeof *h);
  return h->magic == packed_row_magic && h->count >= 1 && h->count <= records_per_row && h->pad <= 1 &&
         h->reserved == 0 && v.size() >= sizeof *h + 1 + h->pad;
}
std::span<const uint8_t> packed_block(std::span<const uint8_t> v, const packed_row_header& h) {
  return v.subspan(sizeof h, v.size() - sizeof h - h.pad);
}

// A table of rows holding items for consecutive serials, keyed by the first one's:
// transfer records, or their ids' hashes. `decode` gives a row's items (in `buf` when it
// has to unpack them) and their number, or null with *error set.
struct row_kind;
using row_decoder = const uint8_t* (*)(const row_kind&, uint64_t key, std::span<const uint8_t> v,
                                       std::vector<transfer_record>& buf, uint64_t* n, std::string* error);
struct row_kind {
  storage::table table;
  size_t item;          // bytes per serial, decoded
  uint64_t per_row;     // items in a full row
  const char* what;     // "records" or "hashes", in errors
  row_decoder decode;
};

std::string bad_row(const row_kind& k, uint64_t key, size_t bytes) {
  return std::string("snapshot: ") + storage::table_name(k.table) + " row " + std::to_string(key) + " has " +
         std::to_string(bytes) + " bytes, not 1 to " + std::to_string(k.per_row) + " " + k.what;
}

const uint8_t* decode_hashes(const row_kind& k, uint64_t key, std::span<const uint8_t> v, std::vector<transfer_record>&,
                             uint64_t* n, std::string* error) {
  *n = v.size() % k.item == 0 ? v.size() / k.item : 0;
  if (*n == 0 || *n > k.per_row) {
    *error = bad_row(k, key, v.size());
    return nullptr;
  }
  return v.data();
}

const uint8_t* decode_records(const row_kind& k, uint64_t key, std::span<const uint8_t> v,
                              std::vector<transfer_record>& buf, uint64_t* n, std::string* error) {
  if (plain_row(v.size())) {
    *n = v.size() / sizeof(transfer_record);
    return v.data();
  }
  const std::string name = std::string("snapshot: ") + storage::table_name(k.table) + " row " + std::to_string(key);
  packed_row_header h{};
  if (!packed_header(v, &h)) {
    *error = name + " (" + std::to_string(v.size()) + " bytes) is neither 1 to " +
             std::to_string(plain_records_per_row) + " records as they are nor a packed row of 1 to " +
             std::to_string(records_per_row);
    return nullptr;
  }
  std::string why;
  if (!wire::column_pack::unpack<packed_layout, 1>(packed_block(v, h), h.count, buf, &why)) {
    *error = name + ": " + why;
    return nullptr;
  }
  *n = h.count;
  return reinterpret_cast<const uint8_t*>(buf.data());
}

// The `id_lo_max` row's header: magic "IDL1" (this layout, id_index::bucket_of as it is),
// 4 zero bytes, the serial it counts to.
constexpr uint32_t lo_max_magic = 0x314c4449;
constexpr size_t lo_max_header = 16;

// The highest id.lo by bucket of id.hi of the ids added: the `id_lo_max` row's figures.
class lo_max_fold {
 public:
  void add(const wire::id128& id) {
    if (id.hi != hi_) bucket_ = id_index::bucket_of(hi_ = id.hi);  // ids come in runs of one hi
    by_bucket_[bucket_] = std::max(by_bucket_[bucket_], id.lo);
  }
  [[nodiscard]] std::span<const uint64_t> by_bucket() const { return by_bucket_; }

 private:
  std::vector<uint64_t> by_bucket_ = std::vector<uint64_t>(id_index::buckets, 0);
  uint64_t hi_ = 0;
  size_t bucket_ = id_index::bucket_of(0);
};

std::span<const uint8_t> as_bytes(const std::string& b) { return {reinterpret_cast<const uint8_t*>(b.data()), b.size()}; }

constexpr row_kind records{storage::table::transfers, sizeof(transfer_record), records_per_row, "records",
                           &decode_records};
constexpr row_kind hashes{storage::table::transfer_ids, sizeof(uint64_t), hashes_per_row, "hashes", &decode_hashes};

// Appends hashes of serials [first, first + hs.size()) in rows of hashes_per_row.
bool append_hashes(storage::snapshot_store::writer& w, uint64_t first, std::span<const uint64_t> hs) {
  for (uint64_t k = 0; k < hs.size(); k += hashes_per_row) {
    const uint64_t n = std::min<uint64_t>(hashes_per_row, hs.size() - k);
    if (!w.append(storage::table::transfer_ids, first + k,
                  {reinterpret_cast<const uint8_t*>(hs.data() + k), n * sizeof(uint64_t)}))
      return false;
  }
  return true;
}

// The `id_lo_max` row: bytes -> (the serial it counts to, lo by bucket). Its magic names
// the layout and the bucket function (id_index::bucket_of): a row of another (a build
// bucketing otherwise) is `other`, read as no row; a row with this magic that does not
// hold together is `malformed`, with *why.
enum class lo_max_row { ok, other, malformed };
lo_max_row decode_lo_max(std::span<const uint8_t> v, uint64_t* counts_to, std::vector<uint64_t>* by_bucket,
                         std::string* why) {
  constexpr size_t pair = sizeof(uint32_t) + sizeof(uint64_t);
  uint32_t magic = 0;
  if (v.size() >= sizeof magic) std::memcpy(&magic, v.data(), sizeof magic);
  if (magic != lo_max_magic) return lo_max_row::other;
  if (v.size() < lo_max_header || (v.size() - lo_max_header) % pair != 0 ||
      (v.size() - lo_max_header) / pair > id_index::buckets) {
    *why = "is " + std::to_string(v.size()) + " bytes, not 16 + 12 per bucket";
    return lo_max_row::malformed;
  }
  uint32_t zero = 0;
  std::memcpy(&zero, v.data() + sizeof magic, sizeof zero);
  if (zero != 0) {
    *why = "has " + std::to_string(zero) + " where its header's 4 zero bytes are";
    return lo_max_row::malformed;
  }
  std::memcpy(counts_to, v.data() + sizeof(uint64_t), sizeof(uint64_t));
  by_bucket->assign(id_index::buckets, 0);
  int64_t last = -1;
  for (size_t at = lo_max_header; at < v.size(); at += pair) {
    uint32_t b = 0;
    uint64_t lo = 0;
    std::memcpy(&b, v.data() + at, sizeof b);
    std::memcpy(&lo, v.data() + at + sizeof b, sizeof lo);
    if (b >= id_index::buckets || int64_t(b) <= last) {
      *why = "names bucket " + std::to_string(b) + " out of order or past " + std::to_string(id_index::buckets - 1);
      return lo_max_row::malformed;
    }
    last = b;
    (*by_bucket)[b] = lo;
  }
  return lo_max_row::ok;
}

// Keeps the `id_lo_max` row over records [first, first + n) just appended, whose own
// highest lo by bucket is `seen`.
bool append_lo_max(storage::snapshot_store::writer& w, uint64_t first, uint64_t n, std::span<const uint64_t> seen) {
  std::string bytes;
  std::vector<uint64_t> by_bucket(id_index::buckets, 0);
  uint64_t counts_to = 0;
  if (w.get(storage::table::id_lo_max, 0, &bytes)) {
    std::string why;
    if (decode_lo_max(as_bytes(bytes), &counts_to, &by_bucket, &why) != lo_max_row::ok)
      counts_to = UINT64_MAX;  // dropped (a start refuses a malformed one before this runs)
  } else if (!w.error().empty()) {
    return false;
  }
  if (counts_to != first) return w.erase(storage::table::id_lo_max, 0);
  // Buckets no record reached stay 0, and a record with lo 0 changes nothing: pairs for
  // the others only.
  for (size_t k = 0; k < by_bucket.size(); ++k) by_bucket[k] = std::max(by_bucket[k], seen[k]);
  std::vector<uint8_t> out(lo_max_header);
  counts_to = first + n;
  std::memcpy(out.data(), &lo_max_magic, sizeof lo_max_magic);
  std::memcpy(out.data() + sizeof(uint64_t), &counts_to, sizeof counts_to);
  for (uint32_t k = 0; k < id_index::buckets; ++k) {
    if (by_bucket[k] == 0) continue;
    const size_t at = out.size();
    out.resize(at + sizeof(uint32_t) + sizeof(uint64_t));
    std::memcpy(out.data() + at, &k, sizeof k);
    std::memcpy(out.data() + at + sizeof k, &by_bucket[k], sizeof(uint64_t));
  }
  return w.put(storage::table::id_lo_max, 0, out);
}

// Calls fn(serial, item bytes) for begin <= serial < end, checking that rows follow one
// another without gaps.
bool scan_rows(storage::snapshot_store& s, const row_kind& kind, uint64_t begin, uint64_t end,
               const std::function<bool(uint64_t, const uint8_t*)>& fn, std::string* error) {
  if (begin >= end) return true;
  // Start at the row holding `begin` (its key may be below it).
  uint64_t from = begin, key = 0;
  std::string first;
  if (s.floor_row(kind.table, begin, &key, &first, error)) from = key;
  else if (!error->empty()) return false;
  std::optional<uint64_t> next;  // the serial the next row must start at
  std::vector<transfer_record> buf;
  return s.scan(kind.table, [&](uint64_t k, std::span<const uint8_t> v) {
    uint64_t n = 0;
    const uint8_t* items = kind.decode(kind, k, v, buf, &n, error);
    if (items == nullptr) return false;
    if (next && k != *next) {
      *error = std::string("snapshot: ") + storage::table_name(kind.table) + " row " + std::to_string(k) +
               " follows a row ending at serial " + std::to_string(*next) + ": " + kind.what + " are missing";
      return false;
    }
    next = k + n;
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t serial = k + i;
      if (serial < begin) continue;
      if (serial >= end) break;
      if (!fn(serial, items + i * kind.item)) return false;
    }
    return true;
  }, error, end, from);
}

std::optional<uint64_t> end_of(storage::snapshot_store& s, const row_kind& kind, std::string* error) {
  uint64_t key = 0;
  std::string bytes;
  if (!s.floor_row(kind.table, UINT64_MAX, &key, &bytes, error))
    return error->empty() ? std::optional<uint64_t>(0) : std::nullopt;
  std::vector<transfer_record> buf;
  uint64_t n = 0;
  if (kind.decode(kind, key, as_bytes(bytes), buf, &n, error) ==
      nullptr)
    return std::nullopt;
  return key + n;
}

}  // namespace

bool append(storage::snapshot_store::writer& w, uint64_t first, uint64_t n,
            const std::function<const transfer_record&(uint64_t)>& at, const id_hasher& hash) {
  transfer_record row[records_per_row];
  std::vector<uint64_t> hs;
  hs.reserve(n);
  lo_max_fold seen;
  std::vector<uint8_t> bytes;
  for (uint64_t s = first; s < first + n;) {
    const uint64_t k = std::min<uint64_t>(records_per_row, first + n - s);
    for (uint64_t i = 0; i < k; ++i) {
      row[i] = at(s + i);
      hs.push_back(hash(row[i].t.id));
      seen.add(row[i].t.id);
    }
    bytes.assign(sizeof(packed_row_header), 0);
    wire::column_pack::pack<packed_layout>(std::span<const transfer_record>(row, k), bytes);
    packed_row_header h{packed_row_magic, uint16_t(k), 0, 0};
    if (plain_row(bytes.size())) {  // never read as the first form
      bytes.push_back(0);
      h.pad = 1;
    }
    std::memcpy(bytes.data(), &h, sizeof h);
    if (!w.append(storage::table::transfers, s, bytes)) return false;
    s += k;
  }
  return append_hashes(w, first, hs) && append_lo_max(w, first, n, seen.by_bucket());
}

bool get(storage::snapshot_store& s, uint64_t serial, transfer_record* out, std::string* error) {
  return reader(s).get(serial, out, error);
}

bool reader::get(uint64_t serial, transfer_record* out, std::string* error) {
  packed_row_header h{};
  if (count_ == 0 || serial < key_ || serial - key_ >= count_) {
    count_ = 0;
    if (!s_.floor_row(storage::table::transfers, serial, &key_, &bytes_, error)) return false;
    const std::span<const uint8_t> v = as_bytes(bytes_);
    if (plain_row(v.size()) || !packed_header(v, &h) || serial >= key_ + h.count) {
      // The first form, a malformed row, or a serial past the row (whose bytes are
      // checked all the same, as scan and end check them).
      std::vector<transfer_record> buf;
      uint64_t n = 0;
      const uint8_t* items = decode_records(records, key_, v, buf, &n, error);
      if (items == nullptr || serial >= key_ + n) return false;
      std::memcpy(out, items + (serial - key_) * sizeof(transfer_record), sizeof *out);
      return true;
    }
    count_ = h.count;
  } else {
    packed_header(as_bytes(bytes_), &h);
  }
  // One record of a packed row: its numbers alone, not the row's every record (a history
  // page or a balance walk reads hundreds this way, on the sequencer).
  std::string why;
  if (!wire::column_pack::unpack_one<packed_layout>(packed_block(as_bytes(bytes_), h), h.count,
                                                    uint32_t(serial - key_), out, &why)) {
    *error = std::string("snapshot: ") + storage::table_name(records.table) + " row " + std::to_string(key_) + ": " +
             why;
    count_ = 0;
    return false;
  }
  return true;
}

bool scan(storage::snapshot_store& s, uint64_t begin, uint64_t end,
          const std::function<bool(uint64_t, const transfer_record&)>& fn, std::string* error) {
  transfer_record r;
  return scan_rows(s, records, begin, end, [&](uint64_t serial, const uint8_t* p) {
    std::memcpy(&r, p, sizeof r);
    return fn(serial, r);
  }, error);
}

std::optional<uint64_t> end(storage::snapshot_store& s, std::string* error) { return end_of(s, records, error); }

bool scan_hashes(storage::snapshot_store& s, uint64_t begin, uint64_t end,
                 const std::function<bool(uint64_t, uint64_t)>& fn, std::string* error) {
  return scan_rows(s, hashes, begin, end, [&](uint64_t serial, const uint8_t* p) {
    uint64_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return fn(serial, h);
  }, error);
}

std::optional<uint64_t> hashes_end(storage::snapshot_store& s, std::string* error) {
  return end_of(s, hashes, error);
}

// The `id_hash_key` row: magic "IDK1", 4 zero bytes, k0, k1.
constexpr uint32_t hash_key_magic = 0x314b4449;
constexpr size_t hash_key_bytes = 24;

std::optional<id_hash_key> hash_key(storage::snapshot_store& s, std::string* error) {
  std::string bytes;
  if (!s.get(storage::table::id_hash_key, 0, &bytes, error)) return std::nullopt;
  uint32_t head[2] = {};
  if (bytes.size() == hash_key_bytes) std::memcpy(head, bytes.data(), sizeof head);
  if (bytes.size() != hash_key_bytes || head[0] != hash_key_magic || head[1] != 0) {
    *error = std::string("snapshot: the ") + storage::table_name(storage::table::id_hash_key) + " row is " +
             std::to_string(bytes.size()) + " bytes" +
             (bytes.size() == hash_key_bytes ? " of another form" : "") + " (" + std::to_string(hash_key_bytes) +
             " bytes, magic IDK1, expected): the snapshot is damaged";
    return std::nullopt;
  }
  id_hash_key k;
  std::memcpy(&k.k0, bytes.data() + 8, sizeof k.k0);
  std::memcpy(&k.k1, bytes.data() + 16, sizeof k.k1);
  return k;
}

bool set_hash_key(storage::snapshot_store& s, const id_hash_key& key, const std::optional<storage::snapshot_meta>& meta,
                  std::string* error) {
  uint8_t row[hash_key_bytes] = {};
  const uint32_t head[2] = {hash_key_magic, 0};
  std::memcpy(row, head, sizeof head);
  std::memcpy(row + 8, &key.k0, sizeof key.k0);
  std::memcpy(row + 16, &key.k1, sizeof key.k1);
  auto w = s.begin(error);
  if (!w) return false;
  storage::snapshot_meta marked = meta.value_or(storage::snapshot_meta{});
  marked.version = storage::snapshot_format_version;
  if (!w->clear(storage::table::transfer_ids) || !w->put(storage::table::id_hash_key, 0, row) ||
      !(meta ? w->commit(marked) : w->commit_without_meta())) {
    *error = w->error();
    return false;
  }
  return true;
}

std::optional<std::vector<uint64_t>> lo_max(storage::snapshot_store& s, uint64_t end, std::string* error) {
  std::string bytes;
  if (!s.get(storage::table::id_lo_max, 0, &bytes, error)) return std::nullopt;
  uint64_t counts_to = 0;
  std::vector<uint64_t> by_bucket;
  std::string why;
  const auto form = decode_lo_max(as_bytes(bytes), &counts_to, &by_bucket, &why);
  if (form == lo_max_row::malformed) {
    *error = std::string("snapshot: the ") + storage::table_name(storage::table::id_lo_max) + " row " + why;
    return std::nullopt;
  }
  if (form == lo_max_row::other || counts_to < end) return std::nullopt;
  return by_bucket;
}

bool fill_in_lo_max(storage::snapshot_store& s, uint64_t end, std::string* error) {
  lo_max_fold seen;
  uint64_t next = 0;
  if (!scan(s, 0, end, [&](uint64_t serial, const transfer_record& r) {
        if (serial != next) {
          *error = "snapshot: transfer records " + std::to_string(next) + ".." + std::to_string(serial) + " are missing";
          return false;
        }
        ++next;
        seen.add(r.t.id);
        return true;
      }, error))
    return false;
  s.release_pages();
  if (next != end) {
    *error = "snapshot: transfer records " + std::to_string(next) + ".." + std::to_string(end) + " are missing";
    return false;
  }
  auto w = s.begin(error);
  if (!w) return false;
  if (!w->erase(storage::table::id_lo_max, 0) || !append_lo_max(*w, 0, end, seen.by_bucket()) ||
      !w->commit_without_meta()) {
    *error = w->error();
    return false;
  }
  return true;
}

bool fill_in_hashes(storage::snapshot_store& s, uint64_t from, uint64_t end, const id_hasher& hash,
                    std::string* error) {
  constexpr uint64_t per_commit = uint64_t(1) << 20;  // 8 MiB of hashes per transaction
  for (uint64_t begin = from; begin < end; begin += per_commit) {
    const uint64_t stop = std::min(end, begin + per_commit);
    std::vector<uint64_t> hs;
    hs.reserve(stop - begin);
    if (!scan(s, begin, stop, [&](uint64_t serial, const transfer_record& r) {
          if (serial != begin + hs.size()) {
            *error = "snapshot: transfer records " + std::to_string(begin + hs.size()) + ".." +
                     std::to_string(serial) + " are missing";
            return false;
          }
          hs.push_back(hash(r.t.id));
          return true;
        }, error))
      return false;
    if (hs.size() != stop - begin) {
      *error = "snapshot: transfer records " + std::to_string(begin + hs.size()) + ".." + std::to_string(stop) +
               " are missing";
      return false;
    }
    auto w = s.begin(error);
    if (!w) return false;
    if (!append_hashes(*w, begin, hs)) {
      *error = w->error();
      return false;
    }
    if (!w->commit_without_meta()) {
      *error = w->error();
      return false;
    }
    s.release_pages();
  }
  return true;
}

}  // namespace mesob::engine::record_rows
