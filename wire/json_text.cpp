#include "wire/json_text.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace mesob::wire {

size_t utf8_sequence(std::string_view s, size_t i) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char lead = byte(i);
  size_t n = 0;
  uint32_t cp = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2;
    cp = lead & 0x1f;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3;
    cp = lead & 0x0f;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4;
    cp = lead & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (byte(i + k) & 0x3f);
  }
  if (n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) return 0;
  if (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) return 0;
  return n;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const size_t n = utf8_sequence(s, i);
      if (n == 0) {
        out += "\\ufffd";
        ++i;
      } else {
        out.append(s.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          out += esc;
        } else {
          out += char(c);
        }
    }
    ++i;
  }
  out += '"';
}

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

void append_json_integer(std::string& out, std::string_view text) {
  const size_t sign = !text.empty() && text[0] == '-' ? 1 : 0;
  const std::string_view magnitude = text.substr(sign);
  const bool integer = !magnitude.empty() && std::all_of(magnitude.begin(), magnitude.end(),
                                                         [](char c) { return c >= '0' && c <= '9'; });
  if (!integer) {
    append_json_string(out, text);
    return;
  }
  const std::string_view digits = magnitude.substr(std::min(magnitude.find_first_not_of('0'), magnitude.size() - 1));
  const std::string value = std::string(sign && digits != "0" ? "-" : "") + std::string(digits);
  constexpr std::string_view exact_max = "9007199254740991";  // 2^53 - 1
  const bool exact = digits.size() < exact_max.size() || (digits.size() == exact_max.size() && digits <= exact_max);
  if (exact) out += value;
  else append_json_string(out, value);
}

}  // namespace mesob::wire
