#include "engine/record_rows.hpp"

#include <cstring>
#include <vector>

namespace mesob::engine::record_rows {
namespace {

using actors::transfer_record;

// The number of records in a row's bytes, or 0 when the size is not 1..per_row records.
uint64_t count_of(size_t bytes) {
  if (bytes == 0 || bytes % sizeof(transfer_record) != 0) return 0;
  const uint64_t n = bytes / sizeof(transfer_record);
  return n <= records_per_row ? n : 0;
}

std::string bad_row(uint64_t key, size_t bytes) {
  return "snapshot: transfers row " + std::to_string(key) + " has " + std::to_string(bytes) +
         " bytes, not 1 to " + std::to_string(records_per_row) + " records";
}

}  // namespace

bool append(storage::snapshot_store::writer& w, uint64_t first, uint64_t n,
            const std::function<const transfer_record&(uint64_t)>& at) {
  transfer_record row[records_per_row];
  for (uint64_t s = first; s < first + n;) {
    const uint64_t k = std::min<uint64_t>(records_per_row, first + n - s);
    for (uint64_t i = 0; i < k; ++i) row[i] = at(s + i);
    if (!w.append(storage::table::transfers, s, {reinterpret_cast<const uint8_t*>(row), k * sizeof(transfer_record)}))
      return false;
    s += k;
  }
  return true;
}

bool get(storage::snapshot_store& s, uint64_t serial, transfer_record* out, std::string* error) {
  uint64_t key = 0;
  std::string bytes;
  if (!s.floor_row(storage::table::transfers, serial, &key, &bytes, error)) return false;
  const uint64_t n = count_of(bytes.size());
  if (n == 0) {
    *error = bad_row(key, bytes.size());
    return false;
  }
  if (serial >= key + n) return false;
  std::memcpy(out, bytes.data() + (serial - key) * sizeof(transfer_record), sizeof *out);
  return true;
}

bool scan(storage::snapshot_store& s, uint64_t begin, uint64_t end,
          const std::function<bool(uint64_t, const transfer_record&)>& fn, std::string* error) {
  if (begin >= end) return true;
  // Start at the row holding `begin` (its key may be below it).
  uint64_t from = begin, key = 0;
  std::string first;
  if (s.floor_row(storage::table::transfers, begin, &key, &first, error)) from = key;
  else if (!error->empty()) return false;
  std::optional<uint64_t> next;  // the serial the next row must start at
  transfer_record r;
  return s.scan(storage::table::transfers, [&](uint64_t k, std::span<const uint8_t> v) {
    const uint64_t n = count_of(v.size());
    if (n == 0) {
      *error = bad_row(k, v.size());
      return false;
    }
    if (next && k != *next) {
      *error = "snapshot: transfers row " + std::to_string(k) + " follows a row ending at serial " +
               std::to_string(*next) + ": records are missing";
      return false;
    }
    next = k + n;
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t serial = k + i;
      if (serial < begin) continue;
      if (serial >= end) break;
      std::memcpy(&r, v.data() + i * sizeof r, sizeof r);
      if (!fn(serial, r)) return false;
    }
    return true;
  }, error, end, from);
}

std::optional<uint64_t> end(storage::snapshot_store& s, std::string* error) {
  uint64_t key = 0;
  std::string bytes;
  if (!s.floor_row(storage::table::transfers, UINT64_MAX, &key, &bytes, error))
    return error->empty() ? std::optional<uint64_t>(0) : std::nullopt;
  const uint64_t n = count_of(bytes.size());
  if (n == 0) {
    *error = bad_row(key, bytes.size());
    return std::nullopt;
  }
  return key + n;
}

}  // namespace mesob::engine::record_rows
