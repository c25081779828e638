// The operator console `mesob` against a live mesobd's admin port, run as an operator
// runs it: every admin command one-shot (text and --json), exit codes and messages for
// bad input, bad credentials, a gateway without the admin role and a closed port,
// settings from flags, environment and a config file in that order, `shutdown` stopping
// mesobd; and an interactive session in a pseudo-terminal (prompt, Tab completion,
// help, an error, quit, the history file).
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "support/engine_fixture.hpp"
#include "support/mesobd_process.hpp"
#include "support/temp_dir.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::test;

namespace {

// Runs mesob with `args` (and `env` added to an environment without MESOB_* variables),
// its stdin from `input` (a file; /dev/null by default), its stdout and stderr apart
// (stdout into the file `output` instead when given); killed after 60 s.
console_result run_mesob(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                         const std::string& input = "/dev/null", const std::string& output = "") {
  console_result r;
  const command_line cmd(bin("tools/mesob"), args, env);
  int out[2], err[2];
  const int in = ::open(input.c_str(), O_RDONLY | O_CLOEXEC);
  const int to = output.empty() ? -1 : ::open(output.c_str(), O_WRONLY | O_CLOEXEC);
  if (in < 0 || (!output.empty() && to < 0) || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return r;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in, 0);
    ::dup2(to >= 0 ? to : out[1], 1);
    ::dup2(err[1], 2);
    cmd.exec();
  }
  ::close(in);
  if (to >= 0) ::close(to);
  ::close(out[1]);
  ::close(err[1]);
  const auto deadline = clock_type::now() + std::chrono::seconds(60);
  pollfd p[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* into[2] = {&r.out, &r.err};
  int open = 2;
  while (open > 0 && ::poll(p, 2, remaining_ms(deadline)) > 0) {
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || p[i].revents == 0) continue;
      char buf[4096];
      const auto n = ::read(p[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, size_t(n));
      } else {
        ::close(p[i].fd);
        p[i].fd = -1;
        --open;
      }
    }
  }
  if (open > 0) ::kill(pid, SIGKILL);
  for (auto& f : p)
    if (f.fd >= 0) ::close(f.fd);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit = open == 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::string describe(const console_result& r) { return "exit " + std::to_string(r.exit) + "\nstdout:\n" + r.out + "stderr:\n" + r.err; }

// The value of `name` in the one-row section titled `title` ("  name:   value" lines).
std::string field(const std::string& out, const std::string& title, const std::string& name) {
  std::istringstream in(out);
  std::string line;
  bool inside = false;
  while (std::getline(in, line)) {
    if (!inside) {
      inside = line == title;
      continue;
    }
    if (line.empty()) break;
    const std::string head = "  " + name + ":";
    if (line.starts_with(head)) {
      const auto v = line.find_first_not_of(' ', head.size());
      return v == std::string::npos ? "" : line.substr(v);
    }
  }
  return "<no " + title + "." + name + ">";
}

// ---- a small JSON reader: enough to check the console's --json structure ----------------
struct json {
  enum kind_t { null, boolean, number, string, array, object } kind = null;
  std::string text;  // a number's digits, a string's value, "true"/"false"
  std::vector<json> items;
  std::vector<std::pair<std::string, json>> members;
  [[nodiscard]] const json* get(std::string_view key) const {
    for (const auto& [k, v] : members)
      if (k == key) return &v;
    return nullptr;
  }
};

class json_reader {
 public:
  explicit json_reader(std::string_view s) : s_(s) {}
  // One value and nothing but whitespace after it.
  bool document(json* out) {
    if (!value(out)) return false;
    ws();
    return i_ == s_.size();
  }

 private:
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r')) ++i_;
  }
  bool literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) return false;
    i_ += word.size();
    return true;
  }
  bool string(std::string* out) {
    if (i_ >= s_.size() || s_[i_] != '"') return false;
    for (++i_; i_ < s_.size(); ++i_) {
      const char c = s_[i_];
      if (c == '"') {
        ++i_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;  // raw control characters are not JSON
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (++i_ >= s_.size()) return false;
      switch (s_[i_]) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          if (i_ + 4 >= s_.size()) return false;
          const unsigned long cp = std::strtoul(std::string(s_.substr(i_ + 1, 4)).c_str(), nullptr, 16);
          *out += cp < 0x80 ? char(cp) : '?';
          i_ += 4;
          break;
        }
        default: return false;
      }
    }
    return false;
  }
  bool value(json* out) {
    ws();
    if (i_ >= s_.size()) return false;
    const char c = s_[i_];
    if (c == '{') {
      out->kind = json::object;
      ++i_;
      ws();
      if (i_ < s_.size() && s_[i_] == '}') return ++i_, true;
      for (;;) {
        ws();
        std::string key;
        if (!string(&key)) return false;
        ws();
        if (i_ >= s_.size() || s_[i_++] != ':') return false;
        json v;
        if (!value(&v)) return false;
        out->members.emplace_back(std::move(key), std::move(v));
        ws();
        if (i_ >= s_.size()) return false;
        if (s_[i_] == '}') return ++i_, true;
        if (s_[i_++] != ',') return false;
      }
    }
    if (c == '[') {
      out->kind = json::array;
      ++i_;
      ws();
      if (i_ < s_.size() && s_[i_] == ']') return ++i_, true;
      for (;;) {
        json v;
        if (!value(&v)) return false;
        out->items.push_back(std::move(v));
        ws();
        if (i_ >= s_.size()) return false;
        if (s_[i_] == ']') return ++i_, true;
        if (s_[i_++] != ',') return false;
      }
    }
    if (c == '"') {
      out->kind = json::string;
      return string(&out->text);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      out->kind = json::number;
      const size_t start = i_;
      while (i_ < s_.size() && std::string_view("-+.eE0123456789").find(s_[i_]) != std::string_view::npos) ++i_;
      out->text = s_.substr(start, i_ - start);
      return true;
    }
    if (literal("true") || literal("false")) {
      out->kind = json::boolean;
      return true;
    }
    return literal("null");
  }

  std::string_view s_;
  size_t i_ = 0;
};

// The console's JSON answer: {"code", "message", "sections": [{"title", "rows": [...]}]},
// checked for its shape; the parsed document.
json parse_answer(const console_result& r) {
  json doc;
  EXPECT_TRUE(json_reader(r.out).document(&doc)) << describe(r);
  EXPECT_EQ(doc.kind, json::object) << describe(r);
  const json* code = doc.get("code");
  const json* message = doc.get("message");
  EXPECT_TRUE(code && code->kind == json::string) << describe(r);
  EXPECT_TRUE(message && message->kind == json::string) << describe(r);
  if (const json* sections = doc.get("sections")) {
    EXPECT_EQ(sections->kind, json::array) << describe(r);
    for (const auto& s : sections->items) {
      EXPECT_EQ(s.kind, json::object);
      EXPECT_TRUE(s.get("title") && s.get("title")->kind == json::string) << describe(r);
      EXPECT_TRUE(s.get("rows") && s.get("rows")->kind == json::array) << describe(r);
    }
  }
  return doc;
}

// Accounts and a transfer through the client port, with the development gateway.
void create_ledger(const std::string& data, uint16_t port, const std::vector<wire::account>& accounts,
                   const std::vector<wire::transfer>& transfers) {
  std::string err;
  auto c = wire::client::connect(dev_gateway_options(data, port), &err);
  ASSERT_TRUE(c) << err;
  auto r = c->call(wire::create_accounts_body(accounts));
  ASSERT_TRUE(r.ok) << r.failure;
  for (const auto res : r.reply.results) ASSERT_EQ(res, wire::result::ok);
  if (transfers.empty()) return;
  r = c->call(wire::create_transfers_body(transfers));
  ASSERT_TRUE(r.ok) << r.failure;
  for (const auto res : r.reply.results) ASSERT_EQ(res, wire::result::ok);
}

bool contains(const std::string& s, std::string_view what) { return s.find(what) != std::string::npos; }

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

const std::string pay_secret = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const std::string ops_secret = "f0e1d2c3b4a5968778695a4b3c2d1e0ff0e1d2c3b4a5968778695a4b3c2d1e0f";

}  // namespace

// Sums beyond 64 bits (the audit's per-currency totals) stay exact: digits in text, in
// JSON a string of them (past 2^53 - 1, a JSON number is a double to many readers), as
// is an id past 2^53 - 1; an id at it is a number.
TEST(console, numbers_beyond_64_bits) {
  temp_dir dir;
  live_mesobd d(dir.path());
  ASSERT_TRUE(d.up()) << d.output();
  const uint64_t big = (uint64_t(1) << 63) - 1;
  create_ledger(dir.path(), d.port(), {make_account(1), make_account(2), make_account(3), make_account(4),
                                       make_account(5), make_account(6)},
                {make_transfer(11, 1, 4, big), make_transfer(12, 2, 5, big), make_transfer(13, 3, 6, big)});
  const std::string total = "27670116110564327421";  // 3 x (2^63 - 1)
  auto r = run_mesob({"--port", std::to_string(d.admin_port()), "--data-dir", dir.path(), "--json", "audit"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "\"debits_posted\": \"" + total + "\",")) << describe(r);
  const uint64_t exact_max = (uint64_t(1) << 53) - 1;
  create_ledger(dir.path(), d.port(), {make_account(exact_max), make_account(exact_max + 1)}, {});
  r = run_mesob({"--port", std::to_string(d.admin_port()), "--data-dir", dir.path(), "--json", "account", "show",
                 std::to_string(exact_max)});
  EXPECT_TRUE(contains(r.out, "\"id\": 9007199254740991,")) << describe(r);
  r = run_mesob({"--port", std::to_string(d.admin_port()), "--data-dir", dir.path(), "--json", "account", "show",
                 std::to_string(exact_max + 1)});
  EXPECT_TRUE(contains(r.out, "\"id\": \"9007199254740992\",")) << describe(r);
  r = run_mesob({"--port", std::to_string(d.admin_port()), "--data-dir", dir.path(), "audit"});
  EXPECT_TRUE(contains(r.out, total)) << describe(r);
  const int stopped = d.stop();
  EXPECT_TRUE(WIFEXITED(stopped) && WEXITSTATUS(stopped) == 0) << d.output();
}

// Every admin command one-shot with the development gateway, text and JSON, the exit
// codes of bad input, and `shutdown` last, after which mesobd exits 0.
TEST(console, one_shot_commands_against_mesobd) {
  temp_dir dir;
  live_mesobd d(dir.path());
  ASSERT_TRUE(d.up()) << d.output();
  create_ledger(dir.path(), d.port(), {make_account(1), make_account(2)}, {make_transfer(5, 1, 2, 70)});
  const std::string admin = std::to_string(d.admin_port());
  const auto mesob = [&](std::vector<std::string> words) {
    words.insert(words.begin(), {"--port", admin, "--data-dir", dir.path()});
    return run_mesob(words);
  };

  // An answer that cannot be written out is no success. Before: exit 0.
  auto r = run_mesob({"--port", admin, "--data-dir", dir.path(), "status"}, {}, "/dev/null", "/dev/full");
  EXPECT_EQ(r.exit, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "mesob: writing the answer to standard output failed")) << describe(r);

  r = mesob({"status"});
  ASSERT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "engine\n")) << describe(r);
  EXPECT_TRUE(contains(r.out, "uptime_s:")) << describe(r);
  EXPECT_EQ(field(r.out, "engine", "shards"), "2") << describe(r);
  EXPECT_EQ(field(r.out, "engine", "accounts"), "2") << describe(r);

  r = mesob({"shards"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "shards\n") && contains(r.out, "accounts") && contains(r.out, "-----")) << describe(r);

  r = mesob({"sessions"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "1 open sessions") && contains(r.out, "admin") && contains(r.out, "dev")) << describe(r);
  r = mesob({"gateways"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "dev") && contains(r.out, "payments,broker,market_data,kyc,events_reader,admin"))
      << describe(r);

  r = mesob({"commands"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  for (const char* c : {"commands", "status", "shards", "sessions", "gateways", "account show", "account freeze", "account unfreeze",
                        "transfer show", "snapshot", "log verify", "audit", "audit trail", "shutdown", "<account-id>"})
    EXPECT_TRUE(contains(r.out, c)) << c << "\n" << describe(r);

  r = mesob({"account", "show", "1"});
  ASSERT_EQ(r.exit, 0) << describe(r);
  EXPECT_EQ(field(r.out, "account", "id"), "1") << describe(r);
  EXPECT_EQ(field(r.out, "account", "owner_id"), "10") << describe(r);
  EXPECT_EQ(field(r.out, "account", "currency"), "ETB") << describe(r);
  EXPECT_EQ(field(r.out, "account", "debits_posted"), "70") << describe(r);
  EXPECT_EQ(field(r.out, "account", "status"), "open") << describe(r);

  r = mesob({"account", "freeze", "1"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "frozen")) << describe(r);
  r = mesob({"account", "show", "1"});
  EXPECT_EQ(field(r.out, "account", "status"), "frozen") << describe(r);
  r = mesob({"account", "unfreeze", "1"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  r = mesob({"account", "show", "1"});
  EXPECT_EQ(field(r.out, "account", "status"), "open") << describe(r);

  r = mesob({"transfer", "show", "5"});
  ASSERT_EQ(r.exit, 0) << describe(r);
  EXPECT_EQ(field(r.out, "transfer", "amount"), "70") << describe(r);
  EXPECT_EQ(field(r.out, "transfer", "debit_account_id"), "1") << describe(r);
  EXPECT_EQ(field(r.out, "transfer", "credit_account_id"), "2") << describe(r);

  r = mesob({"snapshot"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "snapshot")) << describe(r);
  r = mesob({"log", "verify"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "intact")) << describe(r);
  r = mesob({"audit"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "ETB")) << describe(r);
  r = mesob({"audit", "trail"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "audit trail\n")) << describe(r);
  r = mesob({"audit", "trail", "1024"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "account freeze 1")) << describe(r);
  r = mesob({"--json", "audit", "trail", "3"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  auto doc = parse_answer(r);
  ASSERT_TRUE(doc.get("sections") && doc.get("sections")->items.size() == 1) << describe(r);
  EXPECT_EQ(doc.get("sections")->items[0].get("rows")->items.size(), 3u) << describe(r);

  // --json: one object, numeric columns as numbers, text as strings.
  r = mesob({"--json", "account", "show", "1"});
  ASSERT_EQ(r.exit, 0) << describe(r);
  doc = parse_answer(r);
  EXPECT_EQ(doc.get("code")->text, "ok");
  const json* sections = doc.get("sections");
  ASSERT_TRUE(sections && !sections->items.empty()) << describe(r);
  const auto& account = sections->items[0];
  EXPECT_EQ(account.get("title")->text, "account");
  ASSERT_EQ(account.get("rows")->items.size(), 1u) << describe(r);
  const auto& row = account.get("rows")->items[0];
  ASSERT_TRUE(row.get("id") && row.get("currency") && row.get("status")) << describe(r);
  EXPECT_EQ(row.get("id")->kind, json::number);
  EXPECT_EQ(row.get("id")->text, "1");
  EXPECT_EQ(row.get("currency")->kind, json::string);
  EXPECT_EQ(row.get("currency")->text, "ETB");
  EXPECT_EQ(row.get("status")->text, "open");
  r = mesob({"--json", "status"});
  ASSERT_EQ(r.exit, 0) << describe(r);
  doc = parse_answer(r);
  ASSERT_FALSE(doc.get("sections")->items.empty()) << describe(r);
  const auto& engine_rows = doc.get("sections")->items[0].get("rows")->items;
  ASSERT_EQ(engine_rows.size(), 1u) << describe(r);
  ASSERT_TRUE(engine_rows[0].get("uptime_s")) << describe(r);
  EXPECT_EQ(engine_rows[0].get("uptime_s")->kind, json::number);
  r = mesob({"--json", "account", "show", "999"});
  EXPECT_EQ(r.exit, 1) << describe(r);
  EXPECT_EQ(parse_answer(r).get("code")->text, "not_found");
  EXPECT_TRUE(contains(r.err, "not_found")) << describe(r);

  // Bad input: usage errors exit 2, a missing account 1.
  r = mesob({"nosuch"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "nosuch") && contains(r.err, "command_unknown")) << describe(r);
  r = mesob({"account", "shwo", "1"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "account show")) << "close commands named\n" << describe(r);
  r = mesob({"account", "show", "abc"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "arguments_invalid")) << describe(r);
  r = mesob({"account", "show"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "arguments_invalid")) << describe(r);
  r = mesob({"account", "show", "1", "2"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  r = mesob({"account", "show", "999"});
  EXPECT_EQ(r.exit, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "not_found")) << describe(r);
  r = mesob({"--bogus-flag", "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);

  // Commands piped in: one a line, the answers on stdout, errors on stderr, the exit
  // status of the last command that failed.
  write_file(dir.path() + "/commands.txt", "status\n\naccount show 999\nshards\n");
  r = run_mesob({"--port", admin, "--data-dir", dir.path()}, {}, dir.path() + "/commands.txt");
  EXPECT_EQ(r.exit, 1) << describe(r);
  EXPECT_TRUE(contains(r.out, "uptime_s:") && contains(r.out, "queue_depth")) << describe(r);
  EXPECT_TRUE(contains(r.err, "error (not_found): ")) << describe(r);
  EXPECT_FALSE(contains(r.out, "mesob 127.0.0.1")) << "no prompt without a terminal\n" << describe(r);
  // A line longer than any command (a binary file piped in, say) is dropped, not held
  // whole: told, and the next line runs.
  write_file(dir.path() + "/long.txt", std::string(200'000, 'a') + "\nstatus\n");
  r = run_mesob({"--port", admin, "--data-dir", dir.path()}, {}, dir.path() + "/long.txt");
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "a line of more than 65536 bytes")) << describe(r);
  EXPECT_TRUE(contains(r.out, "uptime_s:")) << describe(r);

  // Words that are not printable UTF-8 are refused before sending: exit 2.
  r = mesob({"account", "show", "\xe9"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "error (arguments_invalid): ") && contains(r.err, "printable UTF-8")) << describe(r);
  r = mesob({"account", "show", "\xc2\x9b"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  // A local failure in --json mode is still one JSON object on stdout.
  r = mesob({"--json", "help", "nosuch"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.out, "{\"code\": \"command_unknown\"")) << describe(r);

  // Credentials and connections.
  r = mesob({"--secret", std::string(64, '0'), "status"});
  EXPECT_EQ(r.exit, 4) << describe(r);
  EXPECT_TRUE(contains(r.err, "authentication failed for gateway 'dev'")) << describe(r);
  r = mesob({"--secret", "not-hex", "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "not hex")) << describe(r);
  // Numbers are decimal: before, 010 was taken as octal (an 8 ms wait), 0x10 as hex, and
  // a port such as 07401 as 3841.
  for (const char* bad : {"010", "0x10", "-5", "18446744073709551616"}) {
    r = mesob({"--timeout-ms", bad, "status"});
    EXPECT_EQ(r.exit, 2) << bad << describe(r);
    EXPECT_TRUE(contains(r.err, bad)) << describe(r);  // (-5: out of the range, by name)
  }
  r = run_mesob({"--port", "07401", "--data-dir", dir.path(), "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "is not a decimal number")) << describe(r);
  r = mesob({"--secret-file", dir.path() + "/no-such-file", "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, dir.path() + "/no-such-file")) << describe(r);
  // A secret file is read up to 4 KiB (before, /dev/zero was read without end), and a
  // secret is 16 to 64 bytes (before, a longer one met the server's refusal, exit 4).
  r = mesob({"--secret-file", dir.path(), "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "is a directory")) << describe(r);
  r = mesob({"--secret-file", "/dev/zero", "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "holds more than 4096 bytes")) << describe(r);
  r = mesob({"--secret", std::string(130, 'a'), "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "the secret is 65 bytes; gateway secrets are 16 to 64 bytes")) << describe(r);
  const closed_port nobody;
  const std::string closed = std::to_string(nobody.port());
  r = run_mesob({"--port", closed, "--data-dir", dir.path(), "status"});
  EXPECT_EQ(r.exit, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, "cannot connect to 127.0.0.1:" + closed)) << describe(r);
  EXPECT_TRUE(contains(r.err, "--admin-port")) << describe(r);
  r = run_mesob({"--json", "--port", closed, "--data-dir", dir.path(), "status"});
  EXPECT_EQ(r.exit, 3) << describe(r);
  EXPECT_EQ(parse_answer(r).get("code")->text, "connection_failed");
  // The client port is not the admin port.
  r = run_mesob({"--port", std::to_string(d.port()), "--data-dir", dir.path(), "status"});
  EXPECT_EQ(r.exit, 3) << describe(r);
  EXPECT_TRUE(contains(r.err, "admin port")) << describe(r);

  // shutdown last: answered, then mesobd drains and exits 0.
  r = mesob({"shutdown"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  const int status = d.wait_exit(30'000);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << d.output();
  EXPECT_TRUE(contains(d.output(), "stopped cleanly")) << d.output();
}

// Configured gateways: one without the admin role is refused at the handshake, one with
// it works; settings come from flags, then the environment, then a config file.
// A server whose audit trail cannot be opened refuses every command, `commands` too:
// `help` says why, not only that no catalogue came. Before, the reason was dropped.
TEST(console, help_names_why_the_server_sent_no_catalogue) {
  temp_dir dir;
  write_file(dir.path() + "/admin-audit.log", "not an audit trail");
  live_mesobd d(dir.path());
  ASSERT_TRUE(d.up()) << d.output();
  const auto r = run_mesob({"--port", std::to_string(d.admin_port()), "--data-dir", dir.path(), "help"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "sent no command catalogue: not run: the audit trail cannot be opened (")) << describe(r);
  EXPECT_TRUE(contains(r.err, "bad magic at offset 0")) << describe(r);
}

TEST(console, gateways_roles_and_settings) {
  temp_dir dir;
  live_mesobd d(dir.path(), {"--gateway", "pay:payments:" + pay_secret, "--gateway", "ops:admin:" + ops_secret});
  ASSERT_TRUE(d.up()) << d.output();
  const std::string admin = std::to_string(d.admin_port());

  auto r = run_mesob({"--port", admin, "--gateway", "pay", "--secret", pay_secret, "status"});
  EXPECT_EQ(r.exit, 4) << describe(r);
  EXPECT_TRUE(contains(r.err, "gateway 'pay' does not have the admin role")) << describe(r);
  r = run_mesob({"--json", "--port", admin, "--gateway", "pay", "--secret", pay_secret, "status"});
  EXPECT_EQ(r.exit, 4) << describe(r);
  EXPECT_EQ(parse_answer(r).get("code")->text, "role_denied");
  r = run_mesob({"--port", admin, "--gateway", "ops", "--secret", ops_secret, "status"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "uptime_s")) << describe(r);
  r = run_mesob({"--port", admin, "--gateway", "ops", "--secret", pay_secret, "status"});
  EXPECT_EQ(r.exit, 4) << describe(r);
  EXPECT_TRUE(contains(r.err, "authentication failed for gateway 'ops'")) << describe(r);
  r = run_mesob({"--json", "--port", admin, "--gateway", "ops", "--secret", pay_secret, "status"});
  EXPECT_EQ(parse_answer(r).get("code")->text, "auth_failed");
  // Gateway dev, no secret given: its file is not in a data directory with configured gateways.
  r = run_mesob({"--port", admin, "--data-dir", dir.path(), "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, dir.path() + "/dev-gateway.secret")) << describe(r);

  // A secret file; the environment.
  write_file(dir.path() + "/ops.secret", ops_secret + "\n");
  r = run_mesob({"--port", admin, "--gateway", "ops", "--secret-file", dir.path() + "/ops.secret", "status"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  r = run_mesob({"status"}, {"MESOB_ADMIN_PORT=" + admin, "MESOB_GATEWAY=ops", "MESOB_SECRET=" + ops_secret});
  EXPECT_EQ(r.exit, 0) << describe(r);
  r = run_mesob({"status"}, {"MESOB_ADMIN_PORT=" + admin, "MESOB_GATEWAY=ops",
                             "MESOB_SECRET_FILE=" + dir.path() + "/ops.secret"});
  EXPECT_EQ(r.exit, 0) << describe(r);
  // A flag wins over the environment.
  r = run_mesob({"--secret", ops_secret, "status"},
                {"MESOB_ADMIN_PORT=" + admin, "MESOB_GATEWAY=ops", "MESOB_SECRET=" + pay_secret});
  EXPECT_EQ(r.exit, 0) << describe(r);
  r = run_mesob({"--secret", ops_secret, "status"},
                {"MESOB_ADMIN_PORT=" + admin, "MESOB_GATEWAY=ops", "MESOB_SECRET_FILE=/no/such/file"});
  EXPECT_EQ(r.exit, 0) << describe(r);

  // A config file; the environment wins over it, a flag over both.
  const std::string cfg = dir.path() + "/mesob.conf";
  write_file(cfg, "port = " + admin + "\ngateway = ops\nsecret = " + pay_secret + "\n");
  r = run_mesob({"--config", cfg, "status"});
  EXPECT_EQ(r.exit, 4) << "the config file's (wrong) secret is used\n" << describe(r);
  r = run_mesob({"--config", cfg, "status"}, {"MESOB_SECRET=" + ops_secret});
  EXPECT_EQ(r.exit, 0) << describe(r);
  r = run_mesob({"--config", cfg, "--secret", ops_secret, "status"}, {"MESOB_SECRET=" + pay_secret});
  EXPECT_EQ(r.exit, 0) << describe(r);
  const closed_port nobody;
  r = run_mesob({"--config", cfg, "status"}, {"MESOB_ADMIN_PORT=" + std::to_string(nobody.port())});
  EXPECT_EQ(r.exit, 3) << "the environment's port wins over the config file's\n" << describe(r);
  write_file(cfg, "port = " + admin + "\nno_such_setting = 1\n");
  r = run_mesob({"--config", cfg, "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);
  r = run_mesob({"--config", dir.path() + "/missing.conf", "status"});
  EXPECT_EQ(r.exit, 2) << describe(r);

  const int status = d.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << d.output();
}

namespace {

// A program in a pseudo-terminal: what it draws, read with timeouts.
class terminal {
 public:
  explicit terminal(const command_line& cmd) {
    winsize ws{};
    ws.ws_row = 40;
    ws.ws_col = 200;
    pid_ = ::forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ == 0) cmd.exec();
  }
  ~terminal() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (fd_ >= 0) ::close(fd_);
  }
  terminal(const terminal&) = delete;
  terminal& operator=(const terminal&) = delete;

  // What it drew since `from`, control characters shown (for failure messages).
  [[nodiscard]] std::string since(size_t from) const {
    std::string out;
    for (const char c : screen_.substr(std::min(from, screen_.size()))) {
      if (c == '\n' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f)) {
        out += c;
      } else {
        char esc[8];
        std::snprintf(esc, sizeof esc, "\\x%02x", static_cast<unsigned char>(c));
        out += esc;
      }
    }
    return out;
  }
  [[nodiscard]] bool started() const { return pid_ > 0 && fd_ >= 0; }
  [[nodiscard]] const std::string& screen() const { return screen_; }
  // Where the next output will start.
  [[nodiscard]] size_t mark() const { return screen_.size(); }

  void type(std::string_view keys) {
    size_t done = 0;
    while (done < keys.size()) {
      const auto n = ::write(fd_, keys.data() + done, keys.size() - done);
      if (n <= 0) return;
      done += size_t(n);
    }
  }
  // Reads until `what` appears at or after `from`; false after `timeout_ms`.
  bool wait_for(std::string_view what, size_t from, int timeout_ms = 10'000) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(timeout_ms);
    while (screen_.find(what, from) == std::string::npos)
      if (!read_some(deadline)) return false;
    return true;
  }
  // The exit status once the program exits (reading what it still draws); -1 on timeout.
  int wait_exit(int timeout_ms = 10'000) {
    const auto deadline = clock_type::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      if (remaining_ms(deadline) == 0) return -1;
      if (!read_some(clock_type::now() + std::chrono::milliseconds(50))) ::usleep(10'000);
    }
  }

 private:
  bool read_some(clock_type::time_point deadline) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, remaining_ms(deadline)) <= 0) return false;
    char buf[4096];
    const auto n = ::read(fd_, buf, sizeof buf);  // EIO once the program has exited
    if (n <= 0) return false;
    screen_.append(buf, size_t(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  std::string screen_;
};

}  // namespace

// The interactive console in a pseudo-terminal: a command, Tab completion of a command
// word and of an id seen before, help for one command, an unknown command, a command
// after the server closed the idle session, quit, and the history file.
TEST(console, interactive_session_in_a_terminal) {
  temp_dir dir, home;
  live_mesobd d(dir.path(), {"--idle-timeout-ms", "1000"});
  ASSERT_TRUE(d.up()) << d.output();
  auto account = make_account(4242);
  account.owner_id = 9;  // no other id seen in the session starts with 42
  create_ledger(dir.path(), d.port(), {account}, {});
  const std::string admin = std::to_string(d.admin_port());
  const std::string history = home.path() + "/history";
  const command_line cmd(bin("tools/mesob"), {"--port", admin, "--data-dir", dir.path()},
                         {"MESOB_HISTORY=" + history, "HOME=" + home.path(), "TERM=dumb", "INPUTRC=/dev/null"});
  terminal t(cmd);
  ASSERT_TRUE(t.started());
  const std::string prompt = "mesob 127.0.0.1:" + admin + "> ";
  ASSERT_TRUE(t.wait_for(prompt, 0)) << t.since(0);

  size_t mark = t.mark();
  t.type("status\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(0);
  EXPECT_TRUE(contains(t.screen().substr(mark), "uptime")) << t.since(mark);

  mark = t.mark();
  t.type("acc\t");
  ASSERT_TRUE(t.wait_for("account ", mark)) << "acc<TAB> completes to 'account '\n" << t.since(mark);
  t.type("show 4242\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "owner_id")) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "4242")) << t.since(mark);

  mark = t.mark();
  t.type("account s\t42\t");  // the next command word, then an id seen in this session
  ASSERT_TRUE(t.wait_for("account show 4242 ", mark)) << t.since(mark);
  t.type("\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "owner_id")) << t.since(mark);

  mark = t.mark();
  t.type("help account show\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "account show <account-id>")) << t.since(mark);

  // Every other command at the prompt, and bad arguments: each answered (or refused
  // with its code) before the prompt comes back.
  const std::vector<std::pair<std::string, std::string>> each = {
      {"shards", "queue_depth"},
      {"sessions", "1 open sessions"},  // this console's own, on the admin port
      {"gateways", "dev"},
      {"account freeze 4242", "account 4242 frozen"},
      {"account unfreeze 4242", "account 4242 reopened"},
      {"transfer show 99", "error (not_found): transfer 99 is not recorded"},
      {"snapshot", "snapshot taken at lsn"},
      {"log verify", "log intact up to lsn"},
      {"audit", "money is conserved"},
      {"audit trail 3", "entries in the audit trail"},
      {"commands", "log verify"},
      {"account show abc", "error (arguments_invalid)"},
      {"account show 1 2", "error (arguments_invalid)"},
  };
  for (const auto& [line, expect] : each) {
    mark = t.mark();
    t.type(line + "\n");
    ASSERT_TRUE(t.wait_for(prompt, mark)) << line << "\n" << t.since(mark);
    EXPECT_TRUE(contains(t.screen().substr(mark), expect)) << line << "\n" << t.since(mark);
  }

  // Ctrl-C drops the line being typed and gives a fresh prompt; the console goes on.
  mark = t.mark();
  t.type("account sh");
  ASSERT_TRUE(t.wait_for("account sh", mark)) << t.since(mark);
  mark = t.mark();
  t.type("\x03");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << "a fresh prompt after Ctrl-C\n" << t.since(mark);
  mark = t.mark();
  t.type("shards\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "queue_depth")) << "the dropped line is gone\n" << t.since(mark);
  EXPECT_FALSE(contains(t.screen().substr(mark), "error")) << t.since(mark);

  mark = t.mark();
  t.type("nosuch\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << "the prompt comes back after an error\n" << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "error (command_unknown): ")) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "nosuch")) << t.since(mark);

  // Idle past mesobd's --idle-timeout-ms: the session is gone, the command still runs.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  mark = t.mark();
  t.type("status\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "uptime")) << t.since(mark);
  EXPECT_FALSE(contains(t.screen().substr(mark), "error")) << t.since(mark);

  // shutdown from the prompt: answered, then mesobd drains and exits by itself.
  mark = t.mark();
  t.type("shutdown\n");
  ASSERT_TRUE(t.wait_for(prompt, mark)) << t.since(mark);
  EXPECT_TRUE(contains(t.screen().substr(mark), "draining")) << t.since(mark);
  const int stopped = d.wait_exit(30'000);
  EXPECT_TRUE(WIFEXITED(stopped) && WEXITSTATUS(stopped) == 0) << stopped << "\n" << d.output();

  t.type("quit\n");
  const int status = t.wait_exit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << t.since(0);

  std::ifstream in(history);
  std::stringstream saved;
  saved << in.rdbuf();
  for (const char* line : {"status\n", "account show 4242\n", "help account show\n", "log verify\n", "nosuch\n",
                           "shutdown\n", "quit\n"})
    EXPECT_TRUE(contains(saved.str(), line)) << line << "\nhistory:\n" << saved.str();
}
