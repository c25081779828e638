// Command lines as the programs that use CLI11 (mesobd, the console, the relay, the gateway
// simulator, the load generator) take them. Numbers (also in a CLI11 config file, and the
// environment) as written: CLI11 alone reads -1 into an unsigned option as 2^64 - 1, a leading 0 as octal
// (07401 as 3841, an account 00042 as 34) and 0x as hex, and takes "nan" for a floating
// option that a range check then lets by. Header-only: the library itself does not use
// CLI11.
#pragma once

#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
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
        // Decimal notation only: strtod also takes hex (0x10), and leading white space.
        const bool decimal = !v.empty() && v.find_first_of("xXpP \t\n") == std::string::npos;
        char* end = nullptr;
        const double d = decimal ? std::strtod(v.c_str(), &end) : 0;
        if (!decimal || end != v.c_str() + v.size() || !std::isfinite(d))
          return "'" + v + "' is not a finite decimal number";
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

// What CLI11's config reader would take other than as written: a '#' in a value starts
// a comment there (quotes or not), and a key repeated after other keys is dropped (only
// its first run of lines is read). Empty if the file has neither (or cannot be read:
// CLI11 says so then).
inline std::string config_file_text_problem(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::map<std::string, size_t> last_line;  // key -> the line it was last on
  size_t n = 0;
  std::string last_key;
  while (std::getline(in, line)) {
    ++n;
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#' || line[first] == ';' || line[first] == '[') continue;
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;  // CLI11 names it
    std::string key = line.substr(first, eq - first);
    key.erase(key.find_last_not_of(" \t") + 1);
    if (line.find('#', eq) != std::string::npos)
      return path + " line " + std::to_string(n) + ": the value of " + key +
             " holds a '#', which starts a comment there (the rest of the line would be dropped)";
    if (auto it = last_line.find(key); it != last_line.end() && last_key != key)
      return path + " line " + std::to_string(n) + ": " + key + " was given on line " + std::to_string(it->second) +
             " with other keys between (only the first lines of a repeated key would be read): put its lines together";
    last_line[key] = n;
    last_key = key;
  }
  return {};
}

// A settings file is a few kilobytes; past this it is not one.
constexpr off_t config_file_bytes_max = 1 << 20;

// Why a settings file the command line names (--config PATH, --config=PATH) would not be
// read as written, or "": CLI11 takes an empty path for no file, and reads a pipe or a
// device after a check read it to its end (a FIFO hangs), so every setting would be left
// at its default; a file over config_file_bytes_max is not a settings file; nor one whose
// text CLI11 would read other than as written (config_file_text_problem). Before parsing.
inline std::string config_file_refusal(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    std::optional<std::string> path;
    if (arg == "--config" && i + 1 < argc) path = argv[i + 1];
    else if (arg.starts_with("--config=")) path = arg.substr(9);
    if (!path) continue;
    struct stat st{};
    if (path->empty()) return "the path is empty (an unset variable?): name the settings file";
    if (::stat(path->c_str(), &st) != 0) return "cannot read " + *path + ": " + std::strerror(errno);
    if (!S_ISREG(st.st_mode)) return *path + " is not a regular file (a pipe or a device could be read once only): name a file";
    if (st.st_size > config_file_bytes_max)
      return *path + " has " + std::to_string(st.st_size) + " bytes, more than a settings file's " +
             std::to_string(config_file_bytes_max);
    if (std::string problem = config_file_text_problem(*path); !problem.empty()) return problem;
  }
  return {};
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
