#include "engine/record_rows.hpp"

#include <cstring>
#include <vector>

#include "engine/id_index.hpp"

namespace mesob::engine::record_rows {
namespace {

using actors::transfer_record;

// A table of rows holding up to records_per_row fixed-size items for consecutive
// serials, keyed by the first one's: transfer records, or their ids' hashes.
struct row_kind {
  storage::table table;
  size_t item;          // bytes per serial
  uint64_t per_row;     // items in a full row
  const char* what;     // "records" or "hashes", in errors
};
constexpr row_kind records{storage::table::transfers, sizeof(transfer_record), records_per_row, "records"};
constexpr row_kind hashes{storage::table::transfer_ids, sizeof(uint64_t), hashes_per_row, "hashes"};

// The number of items in a row's bytes, or 0 when the size is not 1..per_row items.
uint64_t count_of(const row_kind& k, size_t bytes) {
  if (bytes == 0 || bytes % k.item != 0) return 0;
  const uint64_t n = bytes / k.item;
  return n <= k.per_row ? n : 0;
}

std::string bad_row(const row_kind& k, uint64_t key, size_t bytes) {
  return std::string("snapshot: ") + storage::table_name(k.table) + " row " + std::to_string(key) + " has " +
         std::to_string(bytes) + " bytes, not 1 to " + std::to_string(k.per_row) + " " + k.what;
}

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
  return s.scan(kind.table, [&](uint64_t k, std::span<const uint8_t> v) {
    const uint64_t n = count_of(kind, v.size());
    if (n == 0) {
      *error = bad_row(kind, k, v.size());
      return false;
    }
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
      if (!fn(serial, v.data() + i * kind.item)) return false;
    }
    return true;
  }, error, end, from);
}

std::optional<uint64_t> end_of(storage::snapshot_store& s, const row_kind& kind, std::string* error) {
  uint64_t key = 0;
  std::string bytes;
  if (!s.floor_row(kind.table, UINT64_MAX, &key, &bytes, error))
    return error->empty() ? std::optional<uint64_t>(0) : std::nullopt;
  const uint64_t n = count_of(kind, bytes.size());
  if (n == 0) {
    *error = bad_row(kind, key, bytes.size());
    return std::nullopt;
  }
  return key + n;
}

}  // namespace

bool append(storage::snapshot_store::writer& w, uint64_t first, uint64_t n,
            const std::function<const transfer_record&(uint64_t)>& at) {
  transfer_record row[records_per_row];
  std::vector<uint64_t> hs;
  hs.reserve(n);
  for (uint64_t s = first; s < first + n;) {
    const uint64_t k = std::min<uint64_t>(records_per_row, first + n - s);
    for (uint64_t i = 0; i < k; ++i) {
      row[i] = at(s + i);
      hs.push_back(id_index::hash_of(row[i].t.id));
    }
    if (!w.append(storage::table::transfers, s, {reinterpret_cast<const uint8_t*>(row), k * sizeof(transfer_record)}))
      return false;
    s += k;
  }
  return append_hashes(w, first, hs);
}

bool get(storage::snapshot_store& s, uint64_t serial, transfer_record* out, std::string* error) {
  uint64_t key = 0;
  std::string bytes;
  if (!s.floor_row(storage::table::transfers, serial, &key, &bytes, error)) return false;
  const uint64_t n = count_of(records, bytes.size());
  if (n == 0) {
    *error = bad_row(records, key, bytes.size());
    return false;
  }
  if (serial >= key + n) return false;
  std::memcpy(out, bytes.data() + (serial - key) * sizeof(transfer_record), sizeof *out);
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

bool fill_in_hashes(storage::snapshot_store& s, uint64_t from, uint64_t end, std::string* error) {
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
          hs.push_back(id_index::hash_of(r.t.id));
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
