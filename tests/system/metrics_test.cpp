// Debian's real Prometheus server scraping a live mesobd on loopback: the series arrive
// through Prometheus's own query API and move under load.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "support/admin_client.hpp"
#include "support/engine_fixture.hpp"
#include "support/http.hpp"
#include "support/mesobd_process.hpp"
#include "support/temp_dir.hpp"
#include "wire/client.hpp"

using namespace mesob;
using namespace mesob::test;

namespace {

constexpr const char* prometheus_bin = "/usr/bin/prometheus";

// Prometheus on its own port and storage directory, scraping `target` every second;
// killed when it goes out of scope.
class prometheus_process {
 public:
  prometheus_process(const std::string& dir, uint16_t target) {
    port_ = free_port();
    std::ofstream(dir + "/prometheus.yml") << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                                           << "scrape_configs:\n  - job_name: mesob\n    static_configs:\n"
                                           << "      - targets: ['127.0.0.1:" << target << "']\n";
    const command_line cmd(prometheus_bin,
                           {"--config.file=" + dir + "/prometheus.yml", "--storage.tsdb.path=" + dir + "/tsdb",
                            "--web.listen-address=127.0.0.1:" + std::to_string(port_)},
                           {});
    log_ = dir + "/prometheus.log";
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      cmd.exec();
    }
  }
  ~prometheus_process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  [[nodiscard]] uint16_t port() const { return port_; }
  [[nodiscard]] std::string log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  bool ready(int seconds) const {
    for (int i = 0; i < seconds * 10; ++i) {
      if (http_get(port_, "/-/ready").starts_with("HTTP/1.1 200")) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // The value of an instant query with one result ("query" URL-encoded); -1: no result.
  double query(const std::string& query) const {
    const std::string r = http_get(port_, "/api/v1/query?query=" + query);
    const auto at = r.find("\"value\":[");
    if (at == std::string::npos) return -1;
    const auto comma = r.find(',', at);
    const auto open = comma == std::string::npos ? comma : r.find('"', comma);
    const auto close = open == std::string::npos ? open : r.find('"', open + 1);
    if (close == std::string::npos) return -1;
    return std::strtod(r.substr(open + 1, close - open - 1).c_str(), nullptr);
  }

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string log_;
};

}  // namespace

TEST(metrics, prometheus_scrapes_mesobd_and_the_series_move_under_load) {
  ASSERT_TRUE(std::filesystem::exists(prometheus_bin)) << "Debian's prometheus is missing: run tools/install-deps";
  temp_dir dir;
  live_mesobd d(dir.path() + "/data", two_gateways());
  ASSERT_TRUE(d.up()) << d.output();
  ASSERT_NE(d.metrics_port(), 0);
  prometheus_process prom(dir.path(), d.metrics_port());
  ASSERT_TRUE(prom.ready(30)) << prom.log();

  std::string err;
  auto pay = wire::client::connect(options(d.port(), "pay", pay_hex), &err);
  ASSERT_TRUE(pay) << err;
  std::vector<wire::account> a;
  for (uint64_t id = 1; id <= 100; ++id) a.push_back(make_account(id));
  ASSERT_TRUE(pay->call(wire::create_accounts_body(a)).ok);
  uint64_t next_id = 1;
  // Load for `seconds`: a request of 500 transfers every 50 ms.
  auto load = [&](double seconds) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < until) {
      std::vector<wire::transfer> t;
      for (int i = 0; i < 500; ++i, ++next_id) t.push_back(make_transfer(next_id, 1 + next_id % 100, 1 + (next_id + 1) % 100, 1));
      if (!pay->call(wire::create_transfers_body(t)).ok) {
        ADD_FAILURE() << "transfers refused";
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  // Scraped: up, and the transfers counted so far.
  double first = -1;
  for (int i = 0; i < 100 && first <= 0; ++i) {
    load(0.2);
    first = prom.query("mesob_transfers_total");
  }
  ASSERT_GT(first, 0) << prom.log();
  EXPECT_EQ(prom.query("up%7Bjob%3D%22mesob%22%7D"), 1);
  EXPECT_GE(prom.query("mesob_sessions_open%7Bport%3D%22client%22%7D"), 1);
  // More load: the counter moves, and so does the log's.
  const double groups = prom.query("mesob_log_groups_total");
  load(2.5);
  double later = first;
  for (int i = 0; i < 50 && later <= first; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    later = prom.query("mesob_transfers_total");
  }
  EXPECT_GT(later, first);
  EXPECT_GT(prom.query("mesob_log_groups_total"), groups);
  EXPECT_GT(prom.query("rate(mesob_transfers_total%5B5s%5D)"), 0);
  // Request latency by operation, through Prometheus's own histogram function.
  EXPECT_GT(prom.query("histogram_quantile(0.99%2C%20rate(mesob_request_duration_seconds_bucket%7Bop%3D%22create_transfers%22%7D%5B10s%5D))"),
            0);
  EXPECT_GT(prom.query("mesob_operation_results_total%7Bop%3D%22create_transfers%22%2Cresult%3D%22ok%22%7D"), 0);
  EXPECT_GT(prom.query("mesob_events_end_offset"), 1);
}
