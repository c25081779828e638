// Little-endian byte form of fixed-width fields, for the state records snapshots hold
// (equb groups). The reader never reads past its input: a short read yields zeros and
// sets `short_read`, which the caller checks once after a run of fields.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace mesob {

struct byte_writer {
  std::vector<uint8_t> out;
  template <class T>
  void put(T v) {
    const size_t at = out.size();
    out.resize(at + sizeof v);
    std::memcpy(out.data() + at, &v, sizeof v);
  }
  template <size_t N>
  void put(const std::array<uint8_t, N>& s) { out.insert(out.end(), s.begin(), s.end()); }
  void put_bytes(std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }
};

struct byte_reader {
  std::span<const uint8_t> in;
  size_t at = 0;
  bool short_read = false;
  template <class T>
  T get() {
    T v{};
    if (in.size() - at < sizeof v) {
      short_read = true;
      at = in.size();
      return v;
    }
    std::memcpy(&v, in.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
  template <size_t N>
  void get(std::array<uint8_t, N>& s) {
    if (in.size() - at < N) {
      short_read = true;
      at = in.size();
      return;
    }
    std::memcpy(s.data(), in.data() + at, N);
    at += N;
  }
  // The next n bytes (empty and short_read when fewer are left).
  std::span<const uint8_t> take(size_t n) {
    if (in.size() - at < n) {
      short_read = true;
      at = in.size();
      return {};
    }
    auto s = in.subspan(at, n);
    at += n;
    return s;
  }
};

}  // namespace mesob
