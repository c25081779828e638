// The baseline targets of mesob-load against real, private servers: a PostgreSQL cluster
// made with initdb in a temporary directory (run as the `postgres` user when the test runs
// as root, since PostgreSQL refuses root) listening on a Unix socket only, and a
// redis-server on a free loopback port with appendonly yes and appendfsync always. Both
// servers are stopped when the test ends, whether it passed or not. Each target runs
// hand-made batches (every result the baselines produce, repeats of earlier batches), a
// re-run of setup, and the workload's transfers from four connections at once over a few
// accounts (where lock order matters), then checks balances, conservation of money and
// the transfers read back; and refuses a server that would not write durably.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <sstream>
#include <thread>

#include "perf/load/driver.hpp"
#include "perf/load/postgres_target.hpp"
#include "perf/load/redis_target.hpp"
#include "support/mesobd_process.hpp"
#include "support/temp_dir.hpp"

using namespace mesob;
using namespace mesob::load;
using wire::result;

namespace {

using clk = std::chrono::steady_clock;
constexpr auto server_start_timeout = std::chrono::seconds(30);
constexpr auto server_stop_timeout = std::chrono::seconds(15);

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// A child process running argv[0] (an absolute path) with its output appended to `log`,
// as user `as` when it is not null (the test must then run as root). The child dies with
// the test process. Stopped with `stop_signal`, then SIGKILL, when destroyed.
class child_process {
 public:
  child_process(const std::vector<std::string>& argv, const std::string& log, const passwd* as,
                int stop_signal)
      : stop_signal_(stop_signal) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const uid_t uid = as ? as->pw_uid : 0;
    const gid_t gid = as ? as->pw_gid : 0;
    const pid_t parent = ::getpid();
    pid_ = ::fork();
    EXPECT_GE(pid_, 0);
    if (pid_ != 0) return;
    // The child: only async-signal-safe calls from here on.
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) ::_exit(126);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    if (as != nullptr && (::setgroups(1, &gid) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0))
      ::_exit(125);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // after setuid, which clears it
    if (::getppid() != parent) ::_exit(124);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ~child_process() { stop(); }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  [[nodiscard]] bool running() {
    if (pid_ <= 0) return false;
    if (::waitpid(pid_, &status_, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  // Waits for the child to exit by itself; its exit status, or -1 after the timeout.
  int wait(std::chrono::seconds timeout) {
    const auto deadline = clk::now() + timeout;
    while (running()) {
      if (clk::now() > deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }
  void stop() {
    if (!running()) return;
    ::kill(pid_, stop_signal_);
    if (wait(server_stop_timeout) >= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int status_ = 0;
  int stop_signal_;
};

// The newest PostgreSQL under /usr/lib/postgresql/<major>/bin (Debian's layout).
std::string postgres_bin_dir() {
  int best = -1;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string name = e.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string bin = e.path() / "bin";
    if (::access((bin + "/postgres").c_str(), X_OK) != 0 ||
        ::access((bin + "/initdb").c_str(), X_OK) != 0)
      continue;
    best = std::max(best, std::stoi(name));
  }
  return best < 0 ? std::string() : "/usr/lib/postgresql/" + std::to_string(best) + "/bin";
}

// A private PostgreSQL cluster: initdb into a temporary directory, then postgres with a
// Unix socket in that directory and no TCP listener, fsync and synchronous_commit on.
class postgres_server {
 public:
  bool start(std::string* error) {
    const std::string bin = postgres_bin_dir();
    if (bin.empty()) {
      *error =
          "no PostgreSQL under /usr/lib/postgresql/<major>/bin (tools/install-deps installs it)";
      return false;
    }
    const passwd* as = nullptr;
    if (::geteuid() == 0) {
      as = ::getpwnam("postgres");
      if (as == nullptr) {
        *error = "running as root and there is no `postgres` user to run PostgreSQL as";
        return false;
      }
      if (::chown(dir_.path().c_str(), as->pw_uid, as->pw_gid) != 0) {
        *error = "cannot give " + dir_.path() + " to the postgres user";
        return false;
      }
    }
    port_ = mesob::test::free_port();
    const std::string data = dir_.path() + "/data";
    log_ = dir_.path() + "/postgres.log";
    {
      child_process initdb({bin + "/initdb", "-D", data, "-U", "postgres", "--auth=trust",
                            "--no-sync", "--encoding=UTF8", "--no-locale"},
                           log_, as, SIGTERM);
      if (const int rc = initdb.wait(server_start_timeout); rc != 0) {
        *error = "initdb exited with " + std::to_string(rc) + ":\n" + read_text(log_);
        return false;
      }
    }
    server_ = std::make_unique<child_process>(
        std::vector<std::string>{bin + "/postgres", "-D", data, "-k", dir_.path(), "-p",
                                 std::to_string(port_), "-c", "listen_addresses=", "-c", "fsync=on",
                                 "-c", "synchronous_commit=on", "-c", "max_connections=20"},
        log_, as, SIGINT);  // SIGINT: fast shutdown
    const auto deadline = clk::now() + server_start_timeout;
    while (PQping((conninfo() + " connect_timeout=2").c_str()) != PQPING_OK) {
      if (!server_->running() || clk::now() > deadline) {
        *error = "postgres did not start:\n" + read_text(log_);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  [[nodiscard]] std::string conninfo() const {
    return "host=" + dir_.path() + " port=" + std::to_string(port_) +
           " user=postgres dbname=postgres";
  }

 private:
  mesob::test::temp_dir dir_{"mesob-pg"};
  uint16_t port_ = 0;
  std::string log_;
  std::unique_ptr<child_process> server_;  // declared last: stopped before the directory goes
};

// A private redis-server on a free loopback port, AOF on and fsynced on every write.
class redis_server {
 public:
  bool start(std::string* error) {
    const std::string bin = "/usr/bin/redis-server";
    if (::access(bin.c_str(), X_OK) != 0) {
      *error = bin + " is missing (tools/install-deps installs it)";
      return false;
    }
    port_ = mesob::test::free_port();
    log_ = dir_.path() + "/redis.log";
    server_ = std::make_unique<child_process>(
        std::vector<std::string>{bin, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                 "--dir", dir_.path(), "--appendonly", "yes", "--appendfsync",
                                 "always", "--save", "", "--daemonize", "no", "--logfile", ""},
        log_, nullptr, SIGTERM);
    const auto deadline = clk::now() + server_start_timeout;
    while (!ping()) {
      if (!server_->running() || clk::now() > deadline) {
        *error = "redis-server did not start:\n" + read_text(log_);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  // Runs one command on a fresh connection; true when it answered without an error.
  bool command(const char* text) const {
    redisContext* c = redisConnect("127.0.0.1", port_);
    bool ok = false;
    if (c != nullptr && c->err == 0) {
      auto* r = static_cast<redisReply*>(redisCommand(c, text));
      ok = r != nullptr && r->type != REDIS_REPLY_ERROR;
      if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
  }

 private:
  bool ping() const { return command("PING"); }

  mesob::test::temp_dir dir_{"mesob-redis"};
  uint16_t port_ = 0;
  std::string log_;
  std::unique_ptr<child_process> server_;  // declared last: stopped before the directory goes
};

wire::transfer transfer(uint64_t lo, uint64_t dr, uint64_t cr, uint64_t amount) {
  wire::transfer t;
  t.id = wire::id128{lo, 7};
  t.debit_account_id = dr;
  t.credit_account_id = cr;
  t.amount = amount;
  t.currency = wire::currency("ETB");
  t.code = 1;
  return t;
}

std::vector<result> submit(target_connection& c, std::vector<wire::transfer> batch) {
  batch_outcome got;
  bool called = false;
  c.submit(std::move(batch), [&](batch_outcome&& o) {
    got = std::move(o);
    called = true;
  });
  EXPECT_TRUE(called) << "a synchronous target answers inside submit()";
  EXPECT_EQ(got.failure, "");
  return got.results;
}

std::vector<int64_t> balances(target& t, const workload& w) {
  int64_t funding = 0;
  std::vector<int64_t> accounts;
  std::string error;
  EXPECT_TRUE(t.read_balances(w, &funding, &accounts, &error)) << error;
  int64_t sum = funding;
  for (int64_t b : accounts) sum += b;
  EXPECT_EQ(sum, 0) << "money is conserved";
  EXPECT_EQ(funding, -int64_t(w.opening * w.accounts));
  return accounts;
}

// Hand-made batches over accounts A..D (1000..1003), each opening with 1,000.
// Four accounts, 1000 to 1003, holding 1000 each; amounts up to 100.
workload four_accounts() {
  workload w;
  w.accounts = 4;
  w.first_account = 1000;
  w.opening = 1000;
  w.amount_max = 100;
  return w;
}

void hand_made_batches(target& t) {
  const workload w = four_accounts();
  std::string error;
  ASSERT_TRUE(t.setup(w, &error)) << error;
  EXPECT_EQ(balances(t, w), (std::vector<int64_t>{1000, 1000, 1000, 1000}));
  auto c = t.connect(w, &error);
  ASSERT_TRUE(c) << error;
  EXPECT_EQ(c->window_max(), 1u);
  constexpr uint64_t a = 1000, b = 1001, cc = 1002, d = 1003, nobody = 5555;

  EXPECT_EQ(
      submit(*c, {transfer(1, a, b, 300),      // A 700, B 1300
                  transfer(2, a, cc, 800),     // more than A holds
                  transfer(3, cc, d, 1000),    // all C holds: C 0, D 2000
                  transfer(4, cc, a, 1),       // C holds nothing
                  transfer(5, nobody, a, 10),  //
                  transfer(6, a, nobody, 10),  // A keeps its 700
                  transfer(1, b, a, 5),        // id 1 again in the batch
                  transfer(8, b, a, 0),        //
                  transfer(9, b, b, 5),        //
                  transfer(10, b, cc, 50)}),   // B 1250, C 50
      (std::vector<result>{result::ok, result::exceeds_credits, result::ok, result::exceeds_credits,
                           result::debit_account_not_found, result::credit_account_not_found,
                           result::id_duplicated_in_batch, result::amount_must_not_be_zero,
                           result::accounts_must_be_different, result::ok}));
  EXPECT_EQ(balances(t, w), (std::vector<int64_t>{700, 1250, 50, 2000}));

  wire::transfer zero_id = transfer(0, a, b, 1);
  zero_id.id = {};
  EXPECT_EQ(submit(*c, {transfer(1, a, b, 300),      // a repeat: ok, changes nothing
                        transfer(10, b, cc, 51),     // id 10 with another amount
                        transfer(2, a, cc, 800),     // a repeat of a rejected transfer
                        transfer(5, nobody, a, 10),  // idem
                        transfer(11, d, a, 500),     // D 1500, A 1200
                        transfer(3, d, cc, 1000),    // id 3 with other accounts
                        transfer(12, cc, b, 50),     // C 0, B 1300
                        zero_id}),
            (std::vector<result>{result::ok, result::exists_with_different_fields,
                                 result::exceeds_credits, result::debit_account_not_found,
                                 result::ok, result::exists_with_different_fields, result::ok,
                                 result::id_must_not_be_zero}));
  EXPECT_EQ(balances(t, w), (std::vector<int64_t>{1200, 1300, 0, 1500}));

  // Found: recorded with the outcome ok, with the fields of the first time.
  const std::vector<wire::id128> ids{{1, 7},  {2, 7}, {3, 7},  {10, 7},
                                     {11, 7}, {6, 7}, {99, 7}, {1, 8}};
  std::vector<found_transfer> found;
  ASSERT_TRUE(t.find_transfers(ids, &found, &error)) << error;
  ASSERT_EQ(found.size(), ids.size());
  const auto expect_found = [&](size_t i, uint64_t dr, uint64_t cr, uint64_t amount) {
    EXPECT_TRUE(found[i].found) << i;
    EXPECT_EQ(found[i].debit_account_id, dr) << i;
    EXPECT_EQ(found[i].credit_account_id, cr) << i;
    EXPECT_EQ(found[i].amount, amount) << i;
    EXPECT_FALSE(found[i].pending) << i;
  };
  expect_found(0, a, b, 300);
  EXPECT_FALSE(found[1].found) << "rejected";
  expect_found(2, cc, d, 1000);
  expect_found(3, b, cc, 50);
  expect_found(4, d, a, 500);
  EXPECT_FALSE(found[5].found) << "rejected";
  EXPECT_FALSE(found[6].found) << "never sent";
  EXPECT_FALSE(found[7].found) << "never sent";

  // Setup again starts over (the baselines' instance is private and throwaway).
  ASSERT_TRUE(t.setup(w, &error)) << error;
  EXPECT_EQ(balances(t, w), (std::vector<int64_t>{1000, 1000, 1000, 1000}));
  ASSERT_TRUE(t.find_transfers(ids, &found, &error)) << error;
  for (const auto& f : found) EXPECT_FALSE(f.found);

  workload two_phase = w;
  two_phase.two_phase = true;
  EXPECT_NE(t.supports(two_phase), "");
  EXPECT_EQ(t.supports(w), "");
}

// The workload's own transfers from several connections at once, over few accounts so that
// concurrent batches touch the same rows in different orders.
void concurrent_workload(target& t) {
  constexpr uint32_t connections = 4, batches = 10;
  workload w;
  w.accounts = 16;
  w.first_account = 1ull << 40;
  w.opening = 1'000'000;
  w.amount_max = 100;
  w.batch = 256;
  w.run = 42;
  std::string error;
  ASSERT_TRUE(t.setup(w, &error)) << error;
  const account_layout layout(w);
  std::vector<std::thread> threads;
  std::vector<std::string> problems(connections);
  for (uint32_t ci = 0; ci < connections; ++ci)
    threads.emplace_back([&, ci] {
      std::string err;
      auto c = t.connect(w, &err);
      if (!c) {
        problems[ci] = err;
        return;
      }
      for (uint32_t bi = 0; bi < batches; ++bi) {
        std::vector<wire::transfer> batch;
        for (uint32_t i = 0; i < w.batch; ++i)
          batch.push_back(
              make_transfer(w, layout, 1 + (uint64_t(ci) * batches + bi) * w.batch + i));
        c->submit(std::move(batch), [&](batch_outcome&& o) {
          if (!o.failure.empty()) problems[ci] = o.failure;
          for (result r : o.results)
            if (r != result::ok) problems[ci] = "result " + std::string(wire::result_name(r));
        });
      }
    });
  for (auto& th : threads) th.join();
  for (const auto& p : problems) EXPECT_EQ(p, "");

  const uint64_t n = uint64_t(connections) * batches * w.batch;
  std::vector<int64_t> want(w.accounts, int64_t(w.opening));
  std::vector<wire::id128> ids;
  for (uint64_t k = 1; k <= n; ++k) {
    const auto e = make_transfer(w, layout, k);
    want[e.debit_account_id - w.first_account] -= int64_t(e.amount);
    want[e.credit_account_id - w.first_account] += int64_t(e.amount);
    ids.push_back(e.id);
  }
  EXPECT_EQ(balances(t, w), want);
  std::vector<found_transfer> found;
  ASSERT_TRUE(t.find_transfers(ids, &found, &error)) << error;
  ASSERT_EQ(found.size(), n);
  for (uint64_t k = 1; k <= n; ++k) {
    const auto e = make_transfer(w, layout, k);
    const auto& f = found[k - 1];
    ASSERT_TRUE(f.found) << k;
    EXPECT_EQ(f.debit_account_id, e.debit_account_id) << k;
    EXPECT_EQ(f.credit_account_id, e.credit_account_id) << k;
    EXPECT_EQ(f.amount, e.amount) << k;
  }
}

}  // namespace

TEST(baselines, postgres) {
  postgres_server server;
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;
  auto t = make_postgres_target(server.conninfo(), &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->name(), "postgres");
  hand_made_batches(*t);
  concurrent_workload(*t);

  // A session that would answer before its commit is on disk is refused.
  auto lax =
      make_postgres_target(server.conninfo() + " options='-c synchronous_commit=off'", &error);
  ASSERT_TRUE(lax) << error;
  workload w;
  EXPECT_FALSE(lax->setup(w, &error));
  EXPECT_NE(error.find("synchronous_commit"), std::string::npos) << error;
  // So is each connection a run makes (one with --no-setup has no setup to refuse it).
  error.clear();
  EXPECT_FALSE(lax->connect(w, &error));
  EXPECT_NE(error.find("synchronous_commit"), std::string::npos) << error;

  EXPECT_FALSE(make_postgres_target("host=/nonexistent port=1 user=postgres", &error));
  EXPECT_NE(error.find("cannot connect"), std::string::npos) << error;

  // A batch the server does not answer (its backends stopped, as a commit waiting on a disk
  // that does not answer holds them; statement_timeout does not cover a commit) fails at
  // the client's deadline, its outcome unknown, and the next batch reconnects. So does one
  // too large for the socket to take while the server does not read (a send that blocked).
  auto quick = make_postgres_target(server.conninfo(), &error, 1500);
  ASSERT_TRUE(quick) << error;
  const workload four = four_accounts();
  ASSERT_TRUE(quick->setup(four, &error)) << error;
  auto c = quick->connect(four, &error);
  ASSERT_TRUE(c) << error;
  ASSERT_EQ(submit(*c, {transfer(1, 1000, 1001, 5)}), std::vector<result>{result::ok});
  std::vector<pid_t> stopped;
  auto resume = [&] {
    for (const pid_t p : stopped) ::kill(p, SIGCONT);
    stopped.clear();
  };
  struct at_exit {
    std::function<void()> f;
    ~at_exit() { f(); }
  } resume_at_exit{resume};
  auto stop_backends = [&] {
    std::unique_ptr<PGconn, decltype(&PQfinish)> q(PQconnectdb(server.conninfo().c_str()), &PQfinish);
    ASSERT_EQ(PQstatus(q.get()), CONNECTION_OK) << PQerrorMessage(q.get());
    std::unique_ptr<PGresult, decltype(&PQclear)> r(
        PQexec(q.get(), "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"),
        &PQclear);
    ASSERT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << PQresultErrorMessage(r.get());
    for (int i = 0; i < PQntuples(r.get()); ++i) {
      const auto p = pid_t(std::stol(PQgetvalue(r.get(), i, 0)));
      if (::kill(p, SIGSTOP) == 0) stopped.push_back(p);
      else EXPECT_EQ(errno, ESRCH) << p;  // (one that ended meanwhile)
    }
    ASSERT_FALSE(stopped.empty());
  };
  // The batch's outcome, and how long it took; a submit still waiting after 20 s has its
  // backends resumed (so that a test of a broken deadline fails instead of hanging).
  auto stalled_submit = [&](std::vector<wire::transfer> batch, double* waited) {
    batch_outcome got;
    const auto t0 = clk::now();
    std::promise<void> answered;
    auto f = answered.get_future();
    std::thread sender([&] {
      c->submit(std::move(batch), [&](batch_outcome&& o) { got = std::move(o); });
      answered.set_value();
    });
    if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "the submit did not return in 20 s";
      resume();
    }
    sender.join();
    *waited = std::chrono::duration<double>(clk::now() - t0).count();
    return got;
  };
  double waited = 0;
  ASSERT_NO_FATAL_FAILURE(stop_backends());
  auto got = stalled_submit({transfer(2, 1000, 1001, 5)}, &waited);
  EXPECT_NE(got.failure.find("no answer to the batch in 1500 ms"), std::string::npos) << got.failure;
  EXPECT_GE(waited, 1.4);
  EXPECT_LT(waited, 10.0);
  resume();
  EXPECT_EQ(submit(*c, {transfer(3, 1000, 1001, 5)}), std::vector<result>{result::ok});
  std::vector<wire::transfer> large;
  for (uint64_t i = 0; i < 8192; ++i) large.push_back(transfer(100 + i, 1000 + i % 2, 1002 + i % 2, 1));
  ASSERT_NO_FATAL_FAILURE(stop_backends());
  got = stalled_submit(large, &waited);
  EXPECT_NE(got.failure.find("no answer to the batch in 1500 ms"), std::string::npos) << got.failure;
  EXPECT_LT(waited, 10.0);
  resume();
  EXPECT_EQ(submit(*c, {transfer(4, 1000, 1001, 5)}), std::vector<result>{result::ok});
}

TEST(baselines, redis) {
  redis_server server;
  std::string error;
  ASSERT_TRUE(server.start(&error)) << error;
  auto t = make_redis_target("127.0.0.1", server.port(), &error);
  ASSERT_TRUE(t) << error;
  EXPECT_EQ(t->name(), "redis");
  hand_made_batches(*t);
  concurrent_workload(*t);

  // A server that fsyncs the AOF once a second is refused.
  ASSERT_TRUE(server.command("CONFIG SET appendfsync everysec"));
  workload w;
  EXPECT_FALSE(t->setup(w, &error));
  EXPECT_NE(error.find("appendfsync everysec"), std::string::npos) << error;
  // So is each connection a run makes (one with --no-setup has no setup to refuse it).
  error.clear();
  EXPECT_FALSE(t->connect(w, &error));
  EXPECT_NE(error.find("appendfsync everysec"), std::string::npos) << error;
  ASSERT_TRUE(server.command("CONFIG SET appendfsync always"));

  w.opening = redis_opening_max + 1;
  w.accounts = 2;
  EXPECT_NE(t->supports(w), "");
  // Through the program: a workload the target cannot run is a bad option (exit 2), said
  // before setup (before, setup refused it: exit 1, "could not start").
  for (const char* flag : {" --two-phase", " --equb"}) {
    auto refused = mesob::test::run(mesob::test::bin("perf/mesob-load") + " --target redis --redis-port " +
                                    std::to_string(server.port()) + " --accounts 100 --duration 0.2" + flag);
    EXPECT_TRUE(WIFEXITED(refused.status) && WEXITSTATUS(refused.status) == 2) << flag << refused.out;
    EXPECT_NE(refused.out.find("Redis baseline runs plain transfers only"), std::string::npos) << flag << refused.out;
    EXPECT_EQ(refused.out.find("accounts ready"), std::string::npos) << flag << refused.out;
  }

  // An open loop far past what the server takes stops at the drain timeout: what was
  // still due is counted as not sent. Before, a synchronous target's senders (whose slot
  // is free again as each request returns) went on until they had sent everything: here
  // a million requests, minutes.
  workload over;
  over.accounts = 1000;
  over.batch = 1;
  over.run = 0x0e;
  ASSERT_TRUE(t->setup(over, &error)) << error;
  run_options o;
  o.connections = 2;
  o.rate = 1e6;
  o.duration_s = 1;
  o.drain_timeout_s = 1;
  o.progress = false;
  run_report rep;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_load(*t, over, o, &rep, &error)) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_GT(rep.failures["not sent: still due at the drain timeout (the window full, or the sender behind)"], 0u);
  EXPECT_GT(rep.requests, 0u);
}
