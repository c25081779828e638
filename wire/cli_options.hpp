// Command lines as the programs that use CLI11 (mesobd, the console, the relay, the gateway
// simulator, the load generator) take them. Numbers (also in a CLI11 config file, and the
// environment) as written: CLI11 alone reads -1 into an unsigned option as 2^64 - 1, a leading 0 as octal
// (07401 as 3841, an account 00042 as 34) and 0x as hex, and takes "nan" for a floating
// option that a range check then lets by. Header-only: the library itself does not use
// CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdlib>
#include <string>

#include "wire/protocol.hpp"

namespace mesob::wire {

// Checks every option `app` has now by its type: unsigned ones decimal digits only
// (decimal_error), signed ones the same with a minus sign allowed, floating ones a finite
// number; ahead of the option's own checks (a range check reads 010 as 8). Call it after
// the options are added, before parsing.
inline void numbers_as_written(CLI::App& app) {
  const CLI::Validator unsigned_decimal([](std::string& v) { return decimal_error(v); }, "DECIMAL");
  const CLI::Validator signed_decimal(
      [](std::string& v) -> std::string {
        const std::string digits = v.starts_with('-') ? v.substr(1) : v;
        return decimal_error(digits).empty()
                   ? std::string()
                   : "'" + v + "' is not a decimal number (digits, a minus sign at most: no leading zero, no 0x)";
      },
      "DECIMAL");
  const CLI::Validator finite(
      [](std::string& v) -> std::string {
        char* end = nullptr;
        const double d = v.empty() ? 0 : std::strtod(v.c_str(), &end);
        if (v.empty() || end != v.c_str() + v.size() || !std::isfinite(d))
          return "'" + v + "' is not a finite number";
        return {};
      },
      "NUMBER");
  for (CLI::Option* o : app.get_options()) {
    // (A range check on an option appends itself to the name: "INT:INT in [-1 - 65535]".)
    // (transform: first in the option's list; these change nothing.)
    const std::string type = o->get_type_name();
    if (type.starts_with("UINT")) o->transform(unsigned_decimal);
    else if (type.starts_with("INT")) o->transform(signed_decimal);
    else if (type.starts_with("FLOAT")) o->transform(finite);
  }
}

// Parses the command line: -1 when the program goes on; else the exit status, once CLI11
// printed its help (0) or why the options are refused (2, the tools' status for bad
// options; CLI11's own codes are 100 and up).
inline int parse_options(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
    return -1;
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
}

}  // namespace mesob::wire
