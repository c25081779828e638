// mesob: the Mesob operator console, like redis-cli. Talks to mesobd's admin port
// (127.0.0.1:7401 by default, mesobd --admin-port) as a gateway with the admin role: by
// default mesobd's development gateway "dev", its secret read from
// <data-dir>/dev-gateway.secret. The server owns the grammar: it takes the longest
// leading run of words that names a command as the command and the rest as arguments.
// One-shot commands are sent as typed; the prompt and `help` read the server's command
// catalogue (`commands`) for completion, help and local checks. Answers print as
// sections (a one-row section as `name: value` lines, more rows as a table, --json as
// one JSON object).
//
//   mesob status                   one-shot: run one command, print the answer, exit
//   mesob --json account show 42   the same, as one JSON object on stdout
//   mesob                          interactive: GNU readline prompt, history in
//                                  $MESOB_HISTORY or ~/.mesob_history, Tab completion of
//                                  command words and of ids seen in the session, `help`;
//                                  Ctrl-C drops the line or stops a wait, never the console
//   mesob < commands               one command a line, printed as one-shot; the exit
//                                  status is the last failing command's
//
// Settings: a flag wins over its MESOB_* environment variable, which wins over the
// --config file (key = value), which wins over the default.
// Exit status: 0 ok; 1 the command ran and failed (not_found, failed, check_failed,
// refused); 2 usage (bad options or secret, unknown command, arguments_invalid); 3 cannot
// connect, connection lost or no answer in time; 4 the handshake was refused (auth_failed:
// wrong gateway or secret; role_denied: the gateway lacks the admin role).
#include <fcntl.h>
#include <poll.h>
#include <readline/history.h>
#include <readline/readline.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <clocale>
#include <csignal>
#include <cwchar>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "wire/cli_options.hpp"
#include "wire/client.hpp"
#include "wire/json_text.hpp"

using namespace mesob;
using wire::append_json_integer;
using wire::append_json_string;
using wire::utf8_sequence;

namespace {

// Set by Ctrl-C (on_sigint, below).
volatile std::sig_atomic_t g_interrupt = 0;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;      // the command ran and failed
constexpr int exit_usage = 2;       // bad options or secret, unknown command, bad arguments
constexpr int exit_connection = 3;  // cannot connect, connection lost, no answer in time
constexpr int exit_refused = 4;     // the handshake was refused (credentials, role)

constexpr size_t remembered_ids_max = 10'000;
constexpr int history_lines_max = 1000;
// A line of piped commands: no command comes near it (words of at most a few hundred
// bytes); a longer one (a binary file piped in) is read to its end and dropped, not held.
constexpr size_t input_line_bytes_max = 64 * 1024;

// One line of standard input (without its newline), at most input_line_bytes_max kept;
// false at the end of input with nothing read. *too_long: the line was longer (dropped).
bool read_input_line(std::string* line, bool* too_long) {
  line->clear();
  *too_long = false;
  std::streambuf* in = std::cin.rdbuf();
  bool any = false;
  for (int c; (c = in->sbumpc()) != std::char_traits<char>::eof();) {
    any = true;
    if (c == '\n') return true;
    if (line->size() < input_line_bytes_max) line->push_back(char(c));
    else *too_long = true;
  }
  return any;
}
constexpr auto probe_after = std::chrono::seconds(1);  // an idle connection is pinged before use

struct settings {
  std::string host = "127.0.0.1";
  uint16_t port = 7401;
  std::string gateway = "dev";
  std::string secret_hex;
  std::string secret_file;
  std::string data_dir = "./var/mesob";
  bool json = false;
  int timeout_ms = 300'000;  // log verify and snapshot on a big log take a while
  std::vector<std::string> words;  // the command; none: interactive

  [[nodiscard]] std::string address() const { return host + ":" + std::to_string(port); }
};

// What went wrong instead of an answer: the exit status, a code (for --json and the
// interactive error line) and the message.
struct failure {
  int exit = exit_ok;
  std::string code;
  std::string message;
};

// One command's outcome: the server's answer, or a failure before or instead of one.
struct reply {
  bool answered = false;
  wire::admin_response_msg response;
  failure fail;
};

int exit_for(wire::admin_code c) {
  switch (c) {
    case wire::admin_code::ok: return exit_ok;
    case wire::admin_code::command_unknown:
    case wire::admin_code::arguments_invalid: return exit_usage;
    case wire::admin_code::not_found:
    case wire::admin_code::failed:
    case wire::admin_code::check_failed:
    case wire::admin_code::refused: return exit_failed;
  }
  return exit_failed;
}

std::string strip_client_prefix(std::string s) {
  constexpr std::string_view prefix = "client: ";
  if (s.starts_with(prefix)) s.erase(0, prefix.size());
  return s;
}

// ---- settings ---------------------------------------------------------------------

// CLI11 applies a config file before the environment; mesob's order is flag, then
// environment, then config file. So a config item whose option has its environment
// variable set is dropped here. The options a config file did set are remembered.
class config_after_env : public CLI::ConfigTOML {
 public:
  explicit config_after_env(const CLI::App* app) : app_(app) {}
  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
    auto parsed = CLI::ConfigTOML::from_config(in);
    std::erase_if(parsed, [&](const CLI::ConfigItem& item) {
      const CLI::Option* o = item.parents.empty() ? app_->get_option_no_throw("--" + item.name) : nullptr;
      if (o == nullptr) return false;  // CLI11 reports an unknown key
      const char* env = o->get_envname().empty() ? nullptr : std::getenv(o->get_envname().c_str());
      if (env != nullptr && *env != '\0') return true;
      set_.insert(o->get_name());
      return false;
    });
    return parsed;
  }
  [[nodiscard]] bool set(const CLI::Option* o) const { return set_.contains(o->get_name()); }

 private:
  const CLI::App* app_;
  mutable std::set<std::string> set_;
};

// Where an option's value came from: 3 a flag, 2 its environment variable, 1 the config
// file, 0 nowhere. Only --secret and --secret-file need it (one setting, two forms).
int source_rank(const CLI::Option* o, int argc, char** argv, const config_after_env& config) {
  const std::string flag = o->get_name();  // "--secret"
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") break;
    if (a == flag || a.starts_with(flag + "=")) return 3;
  }
  const char* env = std::getenv(o->get_envname().c_str());
  if (env != nullptr && *env != '\0') return 2;
  return config.set(o) ? 1 : 0;
}

// The gateway's secret: --secret or --secret-file, whichever comes from the stronger
// source (both from the same one is a usage error); with neither, for the gateway "dev",
// the development secret mesobd wrote into its data directory.
bool load_secret(const settings& s, int secret_rank, int file_rank, std::vector<uint8_t>* out, std::string* error) {
  if (secret_rank != 0 && secret_rank == file_rank) {
    *error = "give the secret once: --secret or --secret-file (MESOB_SECRET or MESOB_SECRET_FILE), not both";
    return false;
  }
  if (secret_rank > file_rank) return wire::read_secret(s.secret_hex, "", out, error);
  if (file_rank > secret_rank) return wire::read_secret("", s.secret_file, out, error);
  if (s.gateway != "dev") {
    *error = "no secret for gateway '" + s.gateway + "': give --secret HEX or --secret-file PATH";
    return false;
  }
  if (!wire::read_secret("", s.data_dir + "/dev-gateway.secret", out, error)) {
    *error += " (the development gateway's secret: give mesobd's --data-dir, or --secret)";
    return false;
  }
  return true;
}

// ---- words --------------------------------------------------------------------------

// Splits a line on whitespace; double quotes group a word; \" and \\ stand for " and \.
bool split_words(std::string_view line, std::vector<std::string>* words, std::string* error) {
  words->clear();
  std::string word;
  bool in_word = false, quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\\' && i + 1 < line.size() && (line[i + 1] == '"' || line[i + 1] == '\\')) {
      in_word = true;
      word += line[++i];
    } else if (quoted) {
      if (c == '"')
        quoted = false;
      else
        word += c;
    } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (in_word) words->push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      in_word = true;
      if (c == '"')
        quoted = true;
      else
        word += c;
    }
  }
  if (quoted) {
    *error = "unterminated quote";
    return false;
  }
  if (in_word) words->push_back(std::move(word));
  return true;
}

std::string join(const std::vector<std::string>& words, size_t first = 0, size_t end = std::string::npos) {
  std::string out;
  for (size_t i = first; i < std::min(end, words.size()); ++i) out += (i > first ? " " : "") + words[i];
  return out;
}

// One entry of the server's catalogue.
struct command_info {
  std::vector<std::string> words;  // {"account", "show"}
  std::string name;                // "account show"
  std::string arguments;           // "<account-id>", "[count]", empty when none
  std::string summary;
  size_t args_max = 0;             // SIZE_MAX when the last argument repeats ("...")
};

// The catalogue from a `commands` answer: one section "commands" with columns command,
// arguments, summary. False when the answer is not one.
bool parse_catalogue(const wire::admin_response_msg& r, std::vector<command_info>* out) {
  out->clear();
  if (r.code != wire::admin_code::ok) return false;
  for (const auto& sec : r.sections) {
    if (sec.title != "commands") continue;
    size_t cmd = SIZE_MAX, args = SIZE_MAX, summary = SIZE_MAX;
    for (size_t i = 0; i < sec.columns.size(); ++i) {
      if (sec.columns[i].name == "command") cmd = i;
      if (sec.columns[i].name == "arguments") args = i;
      if (sec.columns[i].name == "summary") summary = i;
    }
    if (cmd == SIZE_MAX) return false;
    for (const auto& row : sec.rows) {
      command_info c;
      std::string ignored;
      if (!split_words(row[cmd], &c.words, &ignored) || c.words.empty()) continue;
      c.name = join(c.words);
      if (args != SIZE_MAX) c.arguments = row[args];
      if (summary != SIZE_MAX) c.summary = row[summary];
      std::vector<std::string> arg_words;
      split_words(c.arguments, &arg_words, &ignored);
      c.args_max = arg_words.size();
      for (const auto& a : arg_words)
        if (a.find("...") != std::string::npos) c.args_max = SIZE_MAX;
      out->push_back(std::move(c));
    }
    return true;
  }
  return false;
}

// The command named by the longest leading run of `words`; nullptr when none is.
const command_info* resolve(const std::vector<command_info>& catalogue, const std::vector<std::string>& words) {
  const command_info* hit = nullptr;
  for (const auto& c : catalogue)
    if (c.words.size() <= words.size() && (!hit || c.words.size() > hit->words.size()) &&
        std::equal(c.words.begin(), c.words.end(), words.begin()))
      hit = &c;
  return hit;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// "unknown command 'x'", with the commands close to what was typed: those in the same
// group as the first word ("account ..."), or whose first word is a near miss.
std::string unknown_command_message(const std::vector<command_info>& catalogue,
                                    const std::vector<std::string>& words, const std::string& hint) {
  std::vector<std::string> close;
  bool group = false;
  for (const auto& c : catalogue)
    if (c.words[0] == words[0]) {
      group = true;
      close.push_back(c.name);
    }
  if (!group)
    for (const auto& c : catalogue)
      if (edit_distance(words[0], c.words[0]) <= 2 ||
          (words[0].size() >= 2 && c.words[0].starts_with(words[0])))
        close.push_back(c.name);
  std::string msg = "unknown command '" + join(words, 0, group ? 2 : 1) + "'";
  if (close.empty()) return msg + " (" + hint + ")";
  msg += "; did you mean: ";
  for (size_t i = 0; i < close.size(); ++i) msg += (i ? ", " : "") + close[i];
  return msg;
}

// The codec's limits, checked before sending (the server would refuse the frame).
bool request_within_limits(const wire::admin_request_msg& m, std::string* error) {
  if (m.command.empty() || m.command.size() > wire::admin_command_bytes_max || !wire::printable_utf8(m.command)) {
    *error = "a command is 1 to " + std::to_string(wire::admin_command_bytes_max) + " bytes of printable UTF-8";
    return false;
  }
  if (m.args.size() > wire::admin_args_max) {
    *error = "at most " + std::to_string(wire::admin_args_max) + " arguments";
    return false;
  }
  for (const auto& a : m.args)
    if (a.size() > wire::admin_arg_bytes_max || !wire::printable_utf8(a)) {
      *error = "an argument is at most " + std::to_string(wire::admin_arg_bytes_max) +
               " bytes of printable UTF-8 (no control or invisible format characters)";
      return false;
    }
  return true;
}

// ---- output -------------------------------------------------------------------------

// The code point of the valid sequence of n bytes at s[i].
uint32_t code_point(std::string_view s, size_t i, size_t n) {
  uint32_t cp = static_cast<unsigned char>(s[i]) & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
  for (size_t k = 1; k < n; ++k) cp = cp << 6 | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  return cp;
}

// Text for a terminal: control characters (C0, DEL, C1) and bytes that are not UTF-8
// shown as \xNN, never sent raw (some terminals take a lone 0x9b as a control sequence).
std::string shown(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t n = b < 0x80 ? 1 : utf8_sequence(s, i);
    const bool control = b < 0x20 || b == 0x7f || n == 0 || (n == 2 && code_point(s, i, 2) < 0xa0);
    if (control) {
      const size_t bytes = n == 0 ? 1 : n;
      for (size_t k = 0; k < bytes; ++k) {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned char>(s[i + k]));
        out += esc;
      }
      i += bytes;
      continue;
    }
    out.append(s.substr(i, n));
    i += n;
  }
  return out;
}

// Columns a shown() string takes on a terminal: wide characters two, combining marks
// none (wcwidth, under the user's locale; one per character where it cannot tell).
size_t display_width(std::string_view s) {
  size_t w = 0;
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t n = b < 0x80 ? 1 : std::max<size_t>(1, utf8_sequence(s, i));
    const int cw = n == 1 ? 1 : ::wcwidth(wchar_t(code_point(s, i, n)));
    w += cw < 0 ? 1 : size_t(cw);
    i += n;
  }
  return w;
}

void pad(std::string& out, size_t n) { out.append(n, ' '); }

void rstrip(std::string& line) {
  while (!line.empty() && line.back() == ' ') line.pop_back();
}

// A section: a title; one row as aligned `name: value` lines; more rows as a table
// (header, rule, rows; numeric columns right-aligned); no rows as "(none)".
void append_section(std::string& out, const wire::admin_section& sec) {
  if (!sec.title.empty()) out += shown(sec.title) + "\n";
  if (sec.rows.empty()) {
    out += "  (none)\n";
    return;
  }
  const size_t n = sec.columns.size();
  std::vector<std::string> names(n);
  for (size_t i = 0; i < n; ++i) names[i] = shown(sec.columns[i].name);
  if (sec.rows.size() == 1) {
    size_t w = 0;
    for (const auto& name : names) w = std::max(w, display_width(name));
    for (size_t i = 0; i < n; ++i) {
      std::string line = "  " + names[i] + ":";
      pad(line, w - display_width(names[i]) + 1);
      line += shown(sec.rows[0][i]);
      rstrip(line);
      out += line + "\n";
    }
    return;
  }
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> widths(n);
  for (size_t i = 0; i < n; ++i) widths[i] = display_width(names[i]);
  for (const auto& row : sec.rows) {
    auto& shown_row = cells.emplace_back();
    for (size_t i = 0; i < n; ++i) {
      shown_row.push_back(shown(row[i]));
      widths[i] = std::max(widths[i], display_width(shown_row.back()));
    }
  }
  const auto append_line = [&](const std::vector<std::string>& texts, bool rule) {
    std::string line = " ";
    for (size_t i = 0; i < n; ++i) {
      line += " ";
      if (i > 0) line += " ";
      const size_t gap = widths[i] - (rule ? 0 : display_width(texts[i]));
      if (rule) {
        line.append(widths[i], '-');
      } else if (sec.columns[i].numeric) {
        pad(line, gap);
        line += texts[i];
      } else {
        line += texts[i];
        pad(line, gap);
      }
    }
    rstrip(line);
    out += line + "\n";
  };
  append_line(names, false);
  append_line(names, true);
  for (const auto& row : cells) append_line(row, false);
}

std::string format_text(const wire::admin_response_msg& r, bool with_message) {
  std::string out;
  if (with_message && !r.message.empty()) out += shown(r.message) + "\n";
  for (size_t i = 0; i < r.sections.size(); ++i) {
    if (i > 0 || (with_message && !r.message.empty())) out += "\n";
    append_section(out, r.sections[i]);
  }
  return out;
}

// {"code": "...", "message": "...", "sections": [{"title": "...", "rows": [{...}]}]}
std::string format_json(const wire::admin_response_msg& r) {
  std::string out = "{\"code\": ";
  append_json_string(out, wire::admin_code_name(r.code));
  out += ", \"message\": ";
  append_json_string(out, r.message);
  out += ", \"sections\": [";
  for (size_t s = 0; s < r.sections.size(); ++s) {
    const auto& sec = r.sections[s];
    out += s ? ", {\"title\": " : "{\"title\": ";
    append_json_string(out, sec.title);
    out += ", \"rows\": [";
    for (size_t i = 0; i < sec.rows.size(); ++i) {
      out += i ? ", {" : "{";
      for (size_t c = 0; c < sec.columns.size(); ++c) {
        if (c) out += ", ";
        append_json_string(out, sec.columns[c].name);
        out += ": ";
        if (sec.columns[c].numeric) append_json_integer(out, sec.rows[i][c]);
        else append_json_string(out, sec.rows[i][c]);
      }
      out += "}";
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

// {"code": "...", "message": "..."}: a failure with no answer from the server.
std::string format_json(const failure& f) {
  std::string out = "{\"code\": ";
  append_json_string(out, f.code);
  out += ", \"message\": ";
  append_json_string(out, f.message);
  return out + "}\n";
}

// Prints a command's outcome: the answer on stdout, the error line (if any) on stderr,
// or everything on stdout at a terminal's prompt. The error line is
// `error (<code>): <message>` for what the server answered, or would have (an unknown
// command, arguments over the limits), and `mesob: <message>` when it was not reached.
void print_reply(const settings& s, const reply& r, bool terminal) {
  const bool ok = r.answered && r.response.code == wire::admin_code::ok;
  std::string error_line;
  if (r.answered && !ok)
    error_line = "error (" + std::string(wire::admin_code_name(r.response.code)) + "): " + shown(r.response.message);
  else if (!r.answered && (terminal || r.fail.exit == exit_usage))
    error_line = "error (" + r.fail.code + "): " + shown(r.fail.message);
  else if (!r.answered)
    error_line = "mesob: " + shown(r.fail.message);
  if (s.json) {
    std::fputs(r.answered ? format_json(r.response).c_str() : format_json(r.fail).c_str(), stdout);
    std::fflush(stdout);
    if (!terminal && !error_line.empty()) std::fprintf(stderr, "%s\n", error_line.c_str());
    return;
  }
  if (!error_line.empty()) {
    std::fflush(stdout);
    std::fprintf(terminal ? stdout : stderr, "%s\n", error_line.c_str());
  }
  if (r.answered) std::fputs(format_text(r.response, ok).c_str(), stdout);
  std::fflush(stdout);
}

// ---- the session ----------------------------------------------------------------------

class console {
 public:
  // `with_catalogue`: read the command catalogue at each connect (the prompt's help and
  // completion need it). One-shot commands go without: the server resolves the words
  // itself, and the audit trail is not filled with catalogue reads.
  console(settings s, std::vector<uint8_t> secret, bool with_catalogue)
      : s_(std::move(s)), secret_(std::move(secret)), with_catalogue_(with_catalogue) {}

  [[nodiscard]] bool connected() const { return client_ != nullptr; }
  [[nodiscard]] bool have_catalogue() const { return have_catalogue_; }
  // Why the server's answer to `commands` was no catalogue (its message), if it said.
  [[nodiscard]] const std::string& catalogue_refusal() const { return catalogue_refusal_; }
  [[nodiscard]] const std::vector<command_info>& catalogue() const { return catalogue_; }
  [[nodiscard]] const settings& options() const { return s_; }

  // Connects, completes the handshake and reads the command catalogue if wanted.
  bool connect(failure* f) {
    client_.reset();
    wire::client::options o;
    o.host = s_.host;
    o.port = s_.port;
    o.gateway = s_.gateway;
    o.secret = secret_;
    o.timeout_ms = s_.timeout_ms;
    o.interrupt = &g_interrupt;  // Ctrl-C ends a wait; a stop and continue does not
    std::string error;
    auto refusal = wire::protocol_error(0);
    client_ = wire::client::connect(o, &error, &refusal);
    if (!client_) {
      *f = connect_failure(error, refusal);
      return false;
    }
    if (!with_catalogue_) return true;
    const reply r = call({"commands", {}});
    if (!r.answered) {
      *f = r.fail;
      client_.reset();
      return false;
    }
    have_catalogue_ = parse_catalogue(r.response, &catalogue_);
    catalogue_refusal_ = have_catalogue_ || r.response.code == wire::admin_code::ok ? std::string() : r.response.message;
    return true;
  }

  // Resolves `words` against the catalogue, sends the command, returns the outcome.
  // Without a catalogue (one-shot, or a server that has none) the words go as typed:
  // the first is the command, and the server resolves the rest. A lost connection is
  // re-opened first.
  reply execute(const std::vector<std::string>& words, const std::string& unknown_hint) {
    reply r;
    if (client_ && std::chrono::steady_clock::now() - last_sent_ > probe_after && !alive()) client_.reset();
    if (!client_ && !connect(&r.fail)) return r;
    wire::admin_request_msg m;
    const command_info* c = resolve(catalogue_, words);
    if (!c && have_catalogue_) {
      r.fail = {exit_usage, "command_unknown", unknown_command_message(catalogue_, words, unknown_hint)};
      return r;
    }
    const size_t command_words = c ? c->words.size() : 1;
    m.command = c ? c->name : words[0];
    m.args.assign(words.begin() + long(command_words), words.end());
    std::string error;
    if (!request_within_limits(m, &error)) {
      r.fail = {exit_usage, "arguments_invalid", error};
      return r;
    }
    r = call(m);
    if (r.answered && r.response.code == wire::admin_code::ok) {
      for (const auto& a : m.args) remember(a);
      for (const auto& sec : r.response.sections)
        for (size_t i = 0; i < sec.columns.size(); ++i)
          if (sec.columns[i].name == "id" || sec.columns[i].name.ends_with("_id"))
            for (const auto& row : sec.rows) remember(row[i]);
    }
    return r;
  }

  // Ids seen in this session (typed arguments, cells of `id` and `*_id` columns).
  [[nodiscard]] const std::set<std::string>& ids() const { return ids_; }

 private:
  failure connect_failure(const std::string& error, wire::protocol_error refusal) const {
    if (refusal == wire::protocol_error::auth_failed)
      return {exit_refused, "auth_failed",
              "authentication failed for gateway '" + s_.gateway + "' (check --gateway and the secret)"};
    if (refusal == wire::protocol_error::role_denied)
      return {exit_refused, "role_denied", "gateway '" + s_.gateway + "' does not have the admin role"};
    std::string msg = strip_client_prefix(error);
    if (msg.starts_with("cannot connect to"))
      msg += " (is mesobd running? see its --admin-port)";
    else if (!msg.starts_with("cannot resolve"))
      msg = s_.address() + ": " + msg;
    return {exit_connection, "connection_failed", msg};
  }

  // After a pause the server may have closed the session (mesobd --idle-timeout-ms); a
  // command must not be lost to that, so a ping answered by a pong comes first.
  bool alive() {
    constexpr uint64_t probe_id = uint64_t(1) << 63;  // admin() numbers its requests from 1
    constexpr int probe_timeout_ms = 2'000;             // a live server answers a ping at once
    std::string error;
    if (!client_->send_frame(wire::frame_kind::ping, probe_id, {}, &error)) return false;
    client_->set_timeout_ms(std::min(probe_timeout_ms, s_.timeout_ms));
    wire::client::frame_in f;
    bool alive = false;
    while (!alive && client_->read_frame(&f, &error))
      alive = f.header.kind == uint16_t(wire::frame_kind::pong) && f.header.request_id == probe_id;
    client_->set_timeout_ms(s_.timeout_ms);
    last_sent_ = std::chrono::steady_clock::now();
    return alive;
  }

  reply call(const wire::admin_request_msg& m) {
    reply r;
    // mesobd's idle clock runs from the last frame it received: time from the send.
    last_sent_ = std::chrono::steady_clock::now();
    auto o = client_->admin(m);
    if (o.ok) {
      r.answered = true;
      r.response = std::move(o.response);
      return r;
    }
    if (o.server_error) {
      const auto code = o.error.code;
      if (code == wire::protocol_error::field_invalid || code == wire::protocol_error::body_invalid) {
        r.fail = {exit_usage, "arguments_invalid", o.error.message};
      } else if (code == wire::protocol_error::wrong_port) {
        r.fail = {exit_connection, "connection_failed",
                  s_.address() + " is not mesobd's admin port (its client port? see mesobd --admin-port)"};
      } else {
        r.fail = {exit_connection, "connection_failed",
                  "the server refused the command (" + std::string(wire::protocol_error_name(code)) +
                      "): " + o.error.message};
      }
      if (wire::protocol_error_closes(code)) client_.reset();
      return r;
    }
    const bool timed_out = client_->timed_out(), interrupted = client_->interrupted();
    client_.reset();  // its state is unknown: the next command reconnects
    r.fail = {exit_connection, "connection_failed",
              interrupted ? "interrupted; the command may still run on the server"
              : timed_out ? "no answer from " + s_.address() + " within " + std::to_string(s_.timeout_ms) +
                                " ms; the command may have run (see audit trail, and check before repeating one "
                                "that changes something, such as gateway secret)"
                          : "lost the connection to " + s_.address() + ": " + strip_client_prefix(o.failure) +
                                "; the command may have run (see audit trail)"};
    return r;
  }

  void remember(const std::string& id) {
    if (id.empty() || !ids_.insert(id).second) return;
    order_.push_back(id);
    if (order_.size() > remembered_ids_max) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }

  settings s_;
  std::vector<uint8_t> secret_;
  bool with_catalogue_ = true;
  std::unique_ptr<wire::client> client_;
  std::chrono::steady_clock::time_point last_sent_ = std::chrono::steady_clock::now();
  bool have_catalogue_ = false;
  std::string catalogue_refusal_;
  std::vector<command_info> catalogue_;
  std::set<std::string> ids_;
  std::deque<std::string> order_;
};

// `help`: every command with its arguments and summary; `help <words>`: one command.
// Returns false, with *f saying why, for an unknown command (printed like any failure).
bool print_help(const console& con, const std::vector<std::string>& words, bool terminal, failure* f) {
  if (!con.have_catalogue()) {
    *f = {exit_usage, "command_unknown",
          "the server at " + con.options().address() + " sent no command catalogue" +
              (con.catalogue_refusal().empty() ? std::string() : ": " + con.catalogue_refusal())};
    return false;
  }
  const auto& cat = con.catalogue();
  const auto usage = [](const command_info& c) { return c.arguments.empty() ? c.name : c.name + " " + c.arguments; };
  if (words.empty()) {
    std::vector<std::pair<std::string, std::string>> lines;
    for (const auto& c : cat) lines.emplace_back(usage(c), c.summary);
    if (terminal) {
      lines.emplace_back("help [command]", "every command, or one command's arguments");
      lines.emplace_back("quit, exit", "leave the console (or Ctrl-D)");
    }
    size_t w = 0;
    for (const auto& l : lines) w = std::max(w, display_width(l.first));
    std::string out = "commands of " + con.options().address() + ":\n";
    for (const auto& [left, summary] : lines) {
      std::string line = "  " + shown(left);
      pad(line, w - display_width(left) + 3);
      line += shown(summary);
      rstrip(line);
      out += line + "\n";
    }
    std::fputs(out.c_str(), stdout);
    std::fflush(stdout);
    return true;
  }
  const command_info* hit = nullptr;
  for (const auto& c : cat)
    if (c.words == words) hit = &c;
  if (!hit) {
    *f = {exit_usage, "command_unknown",
          unknown_command_message(cat, words, terminal ? "help lists the commands" : "mesob help lists the commands")};
    return false;
  }
  std::printf("%s\n  %s\n", shown(usage(*hit)).c_str(), shown(hit->summary).c_str());
  std::fflush(stdout);
  return true;
}

// ---- interactive ----------------------------------------------------------------------

console* g_console = nullptr;          // readline's callbacks are plain functions

// Ctrl-C: at the prompt it drops the line being typed and gives a fresh prompt; during
// a command it stops the wait (the command may still run on the server), drops the
// connection and gives the prompt back. It never ends the console (Ctrl-D or quit do).
// A Ctrl-C that lands while readline is busy (not blocked in read) would be seen only at
// the next key: the handler also writes to a pipe that readline's input function waits
// on beside the terminal, so the fresh prompt comes at once whenever it lands.
int g_sigpipe[2] = {-1, -1};
void on_sigint(int) {
  g_interrupt = 1;
  const char c = 0;
  [[maybe_unused]] auto n = ::write(g_sigpipe[1], &c, 1);
}
void fresh_prompt_if_interrupted() {
  if (!g_interrupt) return;
  g_interrupt = 0;
  rl_crlf();
  rl_replace_line("", 0);
  rl_on_new_line();
  rl_redisplay();
}
int on_signal_event() {  // readline: a read was interrupted by a signal
  fresh_prompt_if_interrupted();
  return 0;
}
int console_getc(FILE* in) {  // readline's input: a key, or a Ctrl-C meanwhile
  for (;;) {
    pollfd p[2] = {{::fileno(in), POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}};
    if (::poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;  // the handler wrote to the pipe
      return EOF;
    }
    if (p[1].revents & POLLIN) {
      char drain[64];
      while (::read(g_sigpipe[0], drain, sizeof drain) > 0) {
      }
      fresh_prompt_if_interrupted();
      continue;
    }
    if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
      unsigned char c = 0;
      const ssize_t n = ::read(::fileno(in), &c, 1);
      if (n == 1) return c;
      if (n < 0 && errno == EINTR) continue;
      return EOF;
    }
  }
}
std::vector<std::string> g_completions;  // the candidates of the current completion

// Candidates for the word after `words`: the next command word of every command that
// starts with them (and help, quit, exit first); in an argument position, remembered ids.
std::vector<std::string> completions(const console& con, std::vector<std::string> words) {
  std::set<std::string> out;
  const bool help = !words.empty() && words[0] == "help";
  if (words.empty()) out.insert({"help", "quit", "exit"});
  if (help) words.erase(words.begin());
  for (const auto& c : con.catalogue())
    if (c.words.size() > words.size() && std::equal(words.begin(), words.end(), c.words.begin()))
      out.insert(c.words[words.size()]);
  if (out.empty() && !help)
    if (const command_info* c = resolve(con.catalogue(), words); c && words.size() - c->words.size() < c->args_max)
      out = con.ids();
  return {out.begin(), out.end()};
}

char* next_completion(const char* text, int state) {
  static size_t next = 0;
  if (state == 0) next = 0;
  const std::string_view prefix = text;
  while (next < g_completions.size()) {
    const auto& c = g_completions[next++];
    if (c.starts_with(prefix)) return ::strdup(c.c_str());
  }
  return nullptr;
}

char** complete(const char* text, int start, int /*end*/) {
  rl_attempted_completion_over = 1;  // never file names
  std::vector<std::string> words;
  std::string ignored;
  std::string before(rl_line_buffer, size_t(start));
  if (!before.empty() && before.back() == '"') before.pop_back();  // an opening quote of this word
  split_words(before, &words, &ignored);
  g_completions = completions(*g_console, words);
  return rl_completion_matches(text, next_completion);
}

std::string history_path() {
  if (const char* p = std::getenv("MESOB_HISTORY"); p && *p) return p;
  if (const char* home = std::getenv("HOME"); home && *home) return std::string(home) + "/.mesob_history";
  return {};
}

// Reads lines until quit, exit or end of input. With a terminal: readline, its history
// and completion, errors on the terminal, exit status 0. Otherwise (commands piped in):
// plain lines, no prompt, output as in one-shot mode (errors on stderr), and the exit
// status of the last command that failed (0 when none did).
int interactive(console& con) {
  const bool terminal = ::isatty(STDIN_FILENO) != 0;
  const std::string prompt = "mesob " + con.options().address() + "> ";
  const std::string history = terminal ? history_path() : std::string();
  if (terminal) {
    g_console = &con;
    rl_readline_name = "mesob";
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = " \t\n";
    rl_completer_quote_characters = "\"";
    rl_catch_signals = 0;  // SIGINT is ours (on_sigint), not readline's
    rl_signal_event_hook = on_signal_event;
    if (::pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) == 0) rl_getc_function = console_getc;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a wait for the server returns EINTR
    ::sigaction(SIGINT, &sa, nullptr);
    using_history();
    stifle_history(history_lines_max);
    if (!history.empty()) {
      const int fd = ::open(history.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd >= 0) ::close(fd);  // append_history needs the file to exist
      read_history(history.c_str());
      history_truncate_file(history.c_str(), history_lines_max);
    }
  }
  int status = exit_ok;
  for (;;) {
    std::string line;
    if (terminal) {
      g_interrupt = 0;
      char* raw = readline(prompt.c_str());
      if (raw == nullptr) {  // Ctrl-D
        std::fputc('\n', stdout);
        break;
      }
      line = raw;
      std::free(raw);
    } else {
      bool too_long = false;
      if (!read_input_line(&line, &too_long)) break;
      if (too_long) {
        print_reply(con.options(),
                    reply{false, {}, {exit_usage, "arguments_invalid",
                                      "a line of more than " + std::to_string(input_line_bytes_max) +
                                          " bytes: no command is that long (dropped, not sent)"}},
                    terminal);
        status = exit_usage;
        continue;
      }
    }
    const size_t first = line.find_first_not_of(" \t\r\n");
    line = first == std::string::npos ? std::string() : line.substr(first, line.find_last_not_of(" \t\r\n") - first + 1);
    std::vector<std::string> words;
    std::string error;
    const bool split = split_words(line, &words, &error);
    if (split && words.empty()) continue;
    if (terminal) {
      const HIST_ENTRY* last = history_length > 0 ? history_get(history_base + history_length - 1) : nullptr;
      if (!last || line != last->line) {
        add_history(line.c_str());
        if (!history.empty()) append_history(1, history.c_str());
      }
    }
    if (!split) {
      print_reply(con.options(), reply{false, {}, {exit_usage, "arguments_invalid", error}}, terminal);
      status = exit_usage;
      continue;
    }
    if ((words[0] == "quit" || words[0] == "exit") && words.size() == 1) break;
    if (words[0] == "help") {
      failure f;
      if (!print_help(con, {words.begin() + 1, words.end()}, terminal, &f)) {
        print_reply(con.options(), reply{false, {}, f}, terminal);
        status = exit_usage;
      }
      continue;
    }
    const reply r = con.execute(words, "help lists the commands");
    print_reply(con.options(), r, terminal);
    const int code = r.answered ? exit_for(r.response.code) : r.fail.exit;
    if (code != exit_ok) status = code;
    if (terminal && !r.answered && r.fail.exit == exit_connection && !con.connected())
      std::printf("(not connected: the next command reconnects to %s)\n", con.options().address().c_str());
    std::fflush(stdout);
  }
  if (!history.empty()) history_truncate_file(history.c_str(), history_lines_max);
  return terminal ? exit_ok : status;
}

}  // namespace

int run(int argc, char** argv) {
  std::setlocale(LC_CTYPE, "");  // for the widths of characters in tables
  settings s;
  CLI::App app{"mesob - the Mesob operator console: admin commands on mesobd's admin port"};
  app.footer(
      "With command words, runs that one command and exits (mesob status, mesob account show 42,\n"
      "mesob help); without, opens an interactive prompt (help, Tab completion, history in\n"
      "$MESOB_HISTORY or ~/.mesob_history). The server lists its commands: mesob commands.\n"
      "Settings: a flag wins over its environment variable, which wins over --config.\n"
      "\n"
      "Exit status:\n"
      "  0  ok\n"
      "  1  the command ran and failed (not_found, failed, check_failed, refused)\n"
      "  2  usage error (bad options or secret, unknown command, arguments_invalid)\n"
      "  3  cannot connect, connection lost, or no answer within --timeout-ms\n"
      "  4  the handshake was refused (auth_failed: wrong gateway or secret;\n"
      "     role_denied: the gateway lacks the admin role)");
  app.set_config("--config", "", "read settings from this file (key = value)");
  auto config = std::make_shared<config_after_env>(&app);
  app.config_formatter(config);
  app.allow_config_extras(CLI::config_extras_mode::error);
  app.add_option("--host", s.host, "mesobd's admin address")->envname("MESOB_HOST")->capture_default_str();
  app.add_option("--port", s.port, "mesobd's admin port (its --admin-port)")
      ->envname("MESOB_ADMIN_PORT")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  app.add_option("--gateway", s.gateway, "gateway id (it needs the admin role)")
      ->envname("MESOB_GATEWAY")
      ->capture_default_str();
  auto* secret_opt = app.add_option("--secret", s.secret_hex, "the gateway's secret, hex")->envname("MESOB_SECRET");
  auto* secret_file_opt =
      app.add_option("--secret-file", s.secret_file, "a file holding the gateway's hex secret")
          ->envname("MESOB_SECRET_FILE");
  app.add_option("--data-dir", s.data_dir,
                 "mesobd's data directory: gateway dev without a secret reads DIR/dev-gateway.secret")
      ->envname("MESOB_DATA_DIR")
      ->capture_default_str();
  app.add_flag("--json", s.json, "print each answer as one JSON object");
  app.add_option("--timeout-ms", s.timeout_ms, "longest wait for the server")
      ->check(CLI::Range(1, 86'400'000))
      ->capture_default_str();
  app.add_option("command", s.words, "an admin command and its arguments; none: interactive")->configurable(false);
  // Numbers are decimal digits only (flags, the environment and the config file): CLI11
  // would take a leading 0 as octal and 0x as hex (07401 as port 3841).
  wire::numbers_as_written(app);
  if (const std::string problem = wire::config_file_refusal(argc, argv); !problem.empty()) {
    std::fprintf(stderr, "mesob: --config: %s\n", problem.c_str());
    return exit_usage;
  }
  if (const int status = wire::parse_options(app, argc, argv); status >= 0) return status;  // (exit_ok, exit_usage)

  std::vector<uint8_t> secret;
  std::string error;
  if (!load_secret(s, source_rank(secret_opt, argc, argv, *config), source_rank(secret_file_opt, argc, argv, *config),
                   &secret, &error)) {
    if (s.json) std::fputs(format_json(failure{exit_usage, "usage_error", error}).c_str(), stdout);
    std::fprintf(stderr, "mesob: %s\n", error.c_str());
    return exit_usage;
  }

  console con(s, std::move(secret), s.words.empty() || s.words[0] == "help");
  failure f;
  if (!con.connect(&f)) {
    print_reply(s, reply{false, {}, f}, false);
    return f.exit;
  }
  if (s.words.empty()) return interactive(con);
  if (s.words[0] == "help") {
    failure hf;
    if (print_help(con, {s.words.begin() + 1, s.words.end()}, false, &hf)) return exit_ok;
    print_reply(s, reply{false, {}, hf}, false);
    return exit_usage;
  }
  const reply r = con.execute(s.words, "mesob help lists the commands");
  print_reply(s, r, false);
  return r.answered ? exit_for(r.response.code) : r.fail.exit;
}

int main(int argc, char** argv) {
  const int rc = run(argc, argv);
  // An answer that could not be written out (a full disk, say) is not a success: before,
  // a truncated file and exit 0.
  errno = 0;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "mesob: writing the answer to standard output failed: %s\n",
                 errno != 0 ? std::strerror(errno) : "an earlier write failed");
    return rc == exit_ok ? exit_failed : rc;
  }
  return rc;
}
