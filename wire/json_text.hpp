#pragma once
// JSON text for the tools' reports (the console's --json, mesob-load's report): strings
// escaped so that any bytes give valid JSON, integers kept exact for readers that hold
// numbers as doubles.
#include <cstddef>
#include <string>
#include <string_view>

namespace mesob::wire {

// The length of the valid UTF-8 sequence of 2 to 4 bytes at s[i] (overlong forms,
// surrogates and code points past U+10FFFF refused), or 0.
size_t utf8_sequence(std::string_view s, size_t i);

// s as a JSON string, quotes included: quotes, backslashes and control characters
// escaped, bytes that are not UTF-8 replaced by U+FFFD.
void append_json_string(std::string& out, std::string_view s);
std::string json_string(std::string_view s);

// An integer's text (digits, a minus sign first for a negative one) as a JSON number,
// leading zeros dropped, when its magnitude is at most 2^53 - 1, which every JSON reader
// keeps exactly; past it as a string of the same digits (a reader that keeps numbers as
// doubles, jq 1.6 among them, would change an id or an amount there). Text that is not
// an integer stays a string.
void append_json_integer(std::string& out, std::string_view text);

}  // namespace mesob::wire
