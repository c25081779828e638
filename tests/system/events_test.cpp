// The event stream end to end: a live mesobd on loopback, subscribers over the protocol,
// the notification relay as a process, kill -9 of the engine and of the relay.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <iterator>
#include <sstream>
#include <thread>

#include "actors/market.hpp"
#include "engine/events.hpp"
#include "engine/limits.hpp"
#include "engine/server.hpp"
#include "storage/checksum.hpp"
#include "storage/event_log.hpp"
#include "storage/failure_probes.hpp"
#include "storage/wal.hpp"
#include "support/admin_client.hpp"
#include "support/engine_fixture.hpp"
#include "support/event_files.hpp"
#include "support/http.hpp"
#include "support/mesobd_process.hpp"
#include "support/seed.hpp"
#include "support/temp_dir.hpp"
#include "wire/client.hpp"

namespace mesob::test {
namespace {

using wire::admin_code;
using wire::event_type;
using wire::result;

std::unique_ptr<wire::client> connect(const std::string& data, uint16_t port) {
  std::string err;
  auto c = wire::client::connect(dev_gateway_options(data, port), &err);
  EXPECT_TRUE(c) << err;
  return c;
}

// Reads events (acknowledging each frame) until `n` arrived or `wait_ms` passed;
// `by_blocks`: handed out a block at a time.
std::vector<wire::event> read_events(wire::client& c, size_t n, bool ack = true, int wait_ms = 20'000,
                                     bool by_blocks = false) {
  std::vector<wire::event> got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(wait_ms);
  c.set_timeout_ms(200);
  const wire::event_visitor each = [&](std::span<const wire::event> b) { got.insert(got.end(), b.begin(), b.end()); };
  while (got.size() < n && std::chrono::steady_clock::now() < deadline) {
    wire::events_msg m;
    std::string err;
    if (!(by_blocks ? c.next_events(&m, each, &err) : c.next_events(&m, &err))) {
      if (c.timed_out()) continue;
      ADD_FAILURE() << err;
      break;
    }
    got.insert(got.end(), m.events.begin(), m.events.end());  // empty by blocks
    if (ack && m.next > 1) {
      EXPECT_TRUE(c.ack(m.next - 1, &err)) << err;
    }
  }
  return got;
}

bool same_events(const std::vector<wire::event>& a, const std::vector<wire::event>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(wire::event)) == 0;
}

wire::subscribed_msg subscribe(wire::client& c, const wire::subscribe_msg& m) {
  wire::subscribed_msg a;
  std::string err;
  EXPECT_TRUE(c.subscribe(m, &a, &err)) << err;
  return a;
}

// A live mesobd on a fresh directory (started with `args`), a client, accounts 1 and 2.
struct live_ledger {
  temp_dir dir;
  live_mesobd d;
  std::unique_ptr<wire::client> c;
  explicit live_ledger(const std::vector<std::string>& args = {}) : d(dir.path(), args) {
    EXPECT_TRUE(d.up()) << d.output();
    if (d.up()) c = connect(dir.path(), d.port());
    if (c) {
      EXPECT_TRUE(c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)})).ok);
    }
  }
  std::unique_ptr<wire::client> client() { return connect(dir.path(), d.port()); }
};

wire::transfer pending(uint64_t id, uint64_t dr, uint64_t cr, uint64_t amount, uint32_t timeout_s) {
  auto t = make_transfer(id, dr, cr, amount, wire::transfer_flags::pending);
  t.timeout_s = timeout_s;
  return t;
}

wire::transfer resolve(uint64_t id, uint64_t pending_id, uint16_t flag) {
  wire::transfer t;
  t.id = {id, 0};
  t.pending_id = {pending_id, 0};
  t.flags = flag;
  t.currency = wire::currency("ETB");
  return t;
}

TEST(Events, EveryCommittedChangeInOrderWithFilters) {
  temp_dir dir;
  live_mesobd d(dir.path());
  ASSERT_TRUE(d.up()) << d.output();
  auto c = connect(dir.path(), d.port());
  ASSERT_TRUE(c);
  auto r = c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2), make_account(3)}));
  ASSERT_TRUE(r.ok) << r.failure;
  // The same account again: ok, and no second event.
  r = c->call(wire::create_accounts_body(std::vector{make_account(1)}));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.reply.results.at(0), result::ok);
  r = c->call(wire::create_transfers_body(std::vector{make_transfer(10, 1, 2, 500), pending(11, 1, 3, 300, 1),
                                                      pending(12, 2, 3, 200, 0)}));
  ASSERT_TRUE(r.ok);
  r = c->call(wire::create_transfers_body(
      std::vector{resolve(13, 12, wire::transfer_flags::post_pending), pending(14, 1, 2, 50, 0),
                  make_transfer(16, 1, 99, 5)}));  // 16: no such account, no event
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.reply.results.at(2), result::credit_account_not_found);
  auto void_without_currency = resolve(15, 14, wire::transfer_flags::void_pending);
  void_without_currency.currency = 0;  // (a post or void may leave it out)
  r = c->call(wire::create_transfers_body(std::vector{void_without_currency,
                                                      make_transfer(10, 1, 2, 500)}));  // 10 again: no event
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.reply.results, (std::vector<result>{result::ok, result::ok}));
  std::this_thread::sleep_for(std::chrono::milliseconds(1600));  // 11 expires (1 s)
  r = c->call(wire::create_transfers_body(std::vector{make_transfer(17, 2, 1, 5)}));
  ASSERT_TRUE(r.ok);
  r = c->call(wire::set_account_status_body(std::vector{wire::account_status_change{3, wire::account_status::frozen}}));
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.reply.results.at(0), result::ok);

  auto s = connect(dir.path(), d.port());
  auto a = subscribe(*s, {});
  ASSERT_EQ(a.code, result::ok) << a.message;
  EXPECT_EQ(a.start, 1u);
  EXPECT_EQ(a.oldest, 1u);
  const auto ev = read_events(*s, 12);
  ASSERT_EQ(ev.size(), 12u);
  const std::vector<std::pair<event_type, uint64_t>> want = {
      {event_type::account_opened, 0},  {event_type::account_opened, 0},  {event_type::account_opened, 0},
      {event_type::transfer_posted, 10}, {event_type::pending_created, 11}, {event_type::pending_created, 12},
      {event_type::pending_posted, 13},  {event_type::pending_created, 14}, {event_type::pending_voided, 15},
      {event_type::pending_expired, 11}, {event_type::transfer_posted, 17}, {event_type::account_status, 0}};
  for (size_t i = 0; i < ev.size(); ++i) {
    SCOPED_TRACE("event " + std::to_string(i + 1));
    EXPECT_EQ(ev[i].offset, i + 1);
    EXPECT_EQ(ev[i].type, want[i].first) << wire::event_type_name(ev[i].type);
    EXPECT_EQ(ev[i].id.lo, want[i].second);
    if (i > 0) {
      EXPECT_GE(ev[i].lsn, ev[i - 1].lsn);
    }
  }
  EXPECT_EQ(ev[0].account_a, 1u);
  EXPECT_EQ(ev[6].ref.lo, 12u);
  EXPECT_EQ(ev[6].amount, 200u) << "a post of amount 0 reports what it posted";
  EXPECT_EQ(ev[6].account_a, 2u);
  EXPECT_EQ(ev[6].account_b, 3u);
  EXPECT_EQ(ev[8].ref.lo, 14u);
  EXPECT_EQ(ev[8].amount, 50u);
  // A void sent without a currency carries its pending transfer's (before: 0, and the
  // relay printed "0.50 ???").
  EXPECT_EQ(ev[8].currency, wire::currency("ETB"));
  EXPECT_EQ(ev[6].currency, wire::currency("ETB"));
  EXPECT_EQ(ev[9].amount, 300u);
  EXPECT_EQ(ev[9].account_b, 3u);
  EXPECT_EQ(ev[11].code, uint16_t(wire::account_status::frozen));
  EXPECT_EQ(ev[11].amount, 1u) << "the account's first status change (status_seq)";
  // The client asks for packed frames; a subscriber that asks for the events as they are
  // gets the very same bytes, and every event its CRC-32C.
  for (const auto& e : ev) EXPECT_EQ(e.crc, storage::crc32c(&e, 92)) << e.offset;
  auto plain = connect(dir.path(), d.port());
  wire::subscribe_msg as_is;
  as_is.packed = false;
  ASSERT_EQ(subscribe(*plain, as_is).code, result::ok);
  EXPECT_TRUE(same_events(read_events(*plain, 12), ev));
  // And one handed the events a block at a time.
  auto by_blocks = connect(dir.path(), d.port());
  ASSERT_EQ(subscribe(*by_blocks, {}).code, result::ok);
  EXPECT_TRUE(same_events(read_events(*by_blocks, 12, true, 20'000, true), ev));

  // Filters: account 3's events; expiries only; from the end.
  auto f = connect(dir.path(), d.port());
  wire::subscribe_msg m;
  m.accounts = {3};
  ASSERT_EQ(subscribe(*f, m).code, result::ok);
  auto got = read_events(*f, 6);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(got[0].offset, 3u);
  EXPECT_EQ(got[5].type, event_type::account_status);
  for (const auto& e : got) EXPECT_TRUE(e.account_a == 3 || e.account_b == 3) << e.offset;
  auto f_plain = connect(dir.path(), d.port());
  m.packed = false;
  ASSERT_EQ(subscribe(*f_plain, m).code, result::ok);
  EXPECT_TRUE(same_events(read_events(*f_plain, 6), got));
  auto x = connect(dir.path(), d.port());
  m = {};
  m.types = 1u << uint16_t(event_type::pending_expired);
  ASSERT_EQ(subscribe(*x, m).code, result::ok);
  got = read_events(*x, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 10u);
  auto tail = connect(dir.path(), d.port());
  m = {};
  m.from_end = true;
  const auto at_end = subscribe(*tail, m);
  EXPECT_EQ(at_end.code, result::ok);
  EXPECT_EQ(at_end.start, 13u);
  r = c->call(wire::create_transfers_body(std::vector{make_transfer(18, 1, 2, 7)}));
  ASSERT_TRUE(r.ok);
  got = read_events(*tail, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 13u);
  EXPECT_EQ(got[0].id.lo, 18u);
  // Instrument 3's definition and price carry 3 in account_a, an instrument's id: account
  // 3's filter skips them and takes the next transfer of account 3. Before, it matched.
  r = c->call(wire::instrument_ops_body(std::vector{actors::market::definition(
      3, "THREE", wire::asset_class::equity, wire::currency("ETB"), 1, 1, {2000, 60'000, 600'000, 30'000})}));
  ASSERT_TRUE(r.ok) << r.failure;
  ASSERT_EQ(r.reply.results.at(0), result::ok);
  r = c->call(wire::prices_body(std::vector<wire::price>{{3, 100, 1}}));
  ASSERT_TRUE(r.ok) << r.failure;
  ASSERT_EQ(r.reply.results.at(0), result::ok);
  r = c->call(wire::set_account_status_body(std::vector{wire::account_status_change{3, wire::account_status::open}}));
  ASSERT_TRUE(r.ok);
  got = read_events(*f, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, event_type::account_status) << "the first after the instrument's events";
  EXPECT_EQ(got[0].account_a, 3u);
  EXPECT_EQ(got[0].amount, 2u) << "the account's second status change";
  // Type 32, past the mask's first word (Subscribe's types_high): an operator's
  // resequence of instrument 3, and nothing else.
  wire::instrument_op resequence;
  resequence.instrument_id = 3;
  resequence.kind = wire::instrument_op_kind::resequence;
  r = c->call(wire::instrument_ops_body(std::vector{resequence}));
  ASSERT_TRUE(r.ok) << r.failure;
  ASSERT_EQ(r.reply.results.at(0), result::ok);
  auto high = connect(dir.path(), d.port());
  m = {};
  m.types = 1ull << uint16_t(event_type::instrument_resequenced);
  ASSERT_EQ(subscribe(*high, m).code, result::ok);
  got = read_events(*high, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].type, event_type::instrument_resequenced);
  EXPECT_EQ(got[0].account_a, 3u);
  EXPECT_EQ(got[0].ref.hi, 1u);  // the sequence last taken before
}

// One connection for requests and the stream: an answer read while subscribing or while
// waiting for events is kept for its wait, and an ack's refusal reaches next_events
// while waiting for a request's answer. Before, subscribe() and next_events() dropped
// other requests' answers (their waits timed out on applied requests), and an ack's
// refusal read by wait() was lost.
TEST(Events, AnswersAndTheStreamShareOneConnection) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  auto s = l.client();
  const auto lookup = wire::lookup_accounts_body(std::vector<uint64_t>{1});
  const uint64_t a = s->send(lookup);
  ASSERT_EQ(subscribe(*s, {}).code, result::ok);
  auto ra = s->wait(a);
  EXPECT_TRUE(ra.ok) << ra.failure;
  const uint64_t b = s->send(wire::create_transfers_body(std::vector{make_transfer(40, 1, 2, 5)}));
  auto got = read_events(*s, 3);  // the two accounts, then the transfer: b's answer comes between
  ASSERT_EQ(got.size(), 3u);
  auto rb = s->wait(b);
  ASSERT_TRUE(rb.ok) << rb.failure;
  EXPECT_EQ(rb.reply.results.at(0), result::ok);
  std::string err;
  ASSERT_TRUE(s->ack(99, &err)) << err;  // past what was sent: refused
  auto rc = s->call(lookup);
  EXPECT_TRUE(rc.ok) << rc.failure;
  wire::events_msg em;
  wire::protocol_error refusal{};
  s->set_timeout_ms(5000);
  EXPECT_FALSE(s->next_events(&em, &err, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::ack_refused) << err;
}

// A session whose subscription ended (another session of its gateway took the name)
// subscribes again with the earlier one's frames and its end still unread: the client
// drops them, and what it hands out (and the consumer acknowledges) is the new
// subscription's. Before, it handed them out first: acknowledging them acknowledged the
// new subscription's offsets, events it had not read.
TEST(Events, SubscribingAgainDropsWhatTheEndedSubscriptionLeftUnread) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  std::vector<wire::transfer> ts;
  for (uint64_t i = 0; i < 20; ++i) ts.push_back(make_transfer(500 + i, 1, 2, 1 + i));
  ASSERT_TRUE(l.c->call(wire::create_transfers_body(ts)).ok);  // offsets 3..22
  auto s = l.client();
  wire::subscribe_msg first;
  first.name = "first";
  first.from = 1;
  ASSERT_EQ(subscribe(*s, first).code, result::ok);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // its frames reach s, unread
  auto t = l.client();
  ASSERT_EQ(subscribe(*t, first).code, result::ok);  // s's subscription ends (subscription_taken)
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  wire::subscribe_msg second;
  second.name = "second";
  second.from = 20;
  const auto a = subscribe(*s, second);
  ASSERT_EQ(a.code, result::ok) << a.message;
  EXPECT_EQ(a.start, 20u);
  const auto got = read_events(*s, 3, false);
  ASSERT_EQ(got.size(), 3u);
  for (size_t k = 0; k < got.size(); ++k) EXPECT_EQ(got[k].offset, 20 + k);
}

TEST(Events, BadSubscriptionsAndAcksAreRefusedPrecisely) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  auto& c = l.c;
  auto expect_code = [&](const wire::subscribe_msg& m, result want) {
    auto s = l.client();
    const auto a = subscribe(*s, m);
    EXPECT_EQ(a.code, want) << wire::result_name(a.code) << ": " << a.message;
    EXPECT_FALSE(a.message.empty());
  };
  wire::subscribe_msg m;
  m.name = "no spaces allowed";
  expect_code(m, result::subscriber_name_invalid);
  m = {};
  m.types = 1u;  // bit 0: there is no event type 0 (the types use the bits above)
  expect_code(m, result::events_filter_invalid);
  m.types = 1ull << (wire::event_type_max + 1);  // nor one past the last
  expect_code(m, result::events_filter_invalid);
  m = {};
  m.accounts.assign(1025, 7);
  expect_code(m, result::events_filter_invalid);
  // No account is 0 (it matched every event whose account field is unused), no gateway 0
  // or past the registry's numbers (they matched nothing, silently).
  m = {};
  m.accounts = {7, 0};
  expect_code(m, result::events_filter_invalid);
  m = {};
  m.gateways = {0};
  expect_code(m, result::events_filter_invalid);
  m.gateways = {1, 1025};
  expect_code(m, result::events_filter_invalid);
  m.gateways = {1, 1024};
  EXPECT_EQ(subscribe(*l.client(), m).code, result::ok);
  m = {};
  m.window = (1u << 20) + 1;
  expect_code(m, result::events_filter_invalid);
  m.window = 1u << 20;  // within the limit, but more than the server queues to a session
  expect_code(m, result::events_filter_invalid);
  // The window the refusal suggests is taken, packed and not; one more is not.
  for (const bool packed : {true, false}) {
    m.packed = packed;
    auto s = l.client();
    auto a = subscribe(*s, m);
    ASSERT_EQ(a.code, result::events_filter_invalid);
    const auto at = a.message.find("a window of at most ");
    ASSERT_NE(at, std::string::npos) << a.message;
    const uint32_t fits = uint32_t(std::stoul(a.message.substr(at + 20)));
    EXPECT_EQ(fits, (32ull * 1024 * 1024 - 4096) /
                            (wire::events_frame_event_bytes_max(packed) + engine::session_frame_keep_bytes) -
                        4096)
        << a.message;
    m.window = fits + 1;
    EXPECT_EQ(subscribe(*s, m).code, result::events_filter_invalid);
    m.window = fits;
    EXPECT_EQ(subscribe(*s, m).code, result::ok) << a.message;
    m.window = 1u << 20;
  }
  m = {};
  m.from = 1;
  m.from_end = true;
  expect_code(m, result::events_filter_invalid);
  m = {};
  m.from = 1000;
  expect_code(m, result::events_offset_ahead);

  // An ack before subscribing, and one past what was sent: Error ack_refused; the session
  // and its subscription stay.
  auto s = l.client();
  std::string err;
  ASSERT_TRUE(s->ack(5, &err));
  wire::events_msg em;
  wire::protocol_error refusal{};
  s->set_timeout_ms(2000);
  EXPECT_FALSE(s->next_events(&em, &err, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::ack_refused) << err;
  m = {};
  m.name = "audit";
  ASSERT_EQ(subscribe(*s, m).code, result::ok);
  auto got = read_events(*s, 2, false);
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(s->ack(50, &err));
  refusal = {};
  EXPECT_FALSE(s->next_events(&em, &err, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::ack_refused) << err;
  EXPECT_NE(err.find("outside what was sent"), std::string::npos) << err;
  // The same session again: subscriber_busy, and the subscription still serves.
  EXPECT_EQ(subscribe(*s, {}).code, result::subscriber_busy);
  ASSERT_TRUE(c->call(wire::create_transfers_body(std::vector{make_transfer(10, 1, 2, 5)})).ok);
  got = read_events(*s, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 3u);
  // The same name from another session of the gateway (a consumer whose connection died
  // unseen, reconnecting): it takes the name over and resumes after what was acknowledged
  // (offset 3); the old session is told subscription_taken and stays open. Before, the
  // name answered subscriber_busy until the old session's idle timeout (5 minutes).
  auto t = l.client();
  const auto taken = subscribe(*t, m);
  ASSERT_EQ(taken.code, result::ok) << taken.message;
  EXPECT_EQ(taken.start, 4u);
  refusal = {};
  s->set_timeout_ms(5000);
  EXPECT_FALSE(s->next_events(&em, &err, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::subscription_taken) << err;
  EXPECT_NE(err.find("'audit'"), std::string::npos) << err;
  ASSERT_TRUE(s->ack(3, &err));  // its acks now refused: it has no subscription
  refusal = {};
  EXPECT_FALSE(s->next_events(&em, &err, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::ack_refused) << err;
  EXPECT_EQ(subscribe(*s, {}).code, result::ok) << "the session stays";
  ASSERT_TRUE(c->call(wire::create_transfers_body(std::vector{make_transfer(11, 1, 2, 5)})).ok);
  got = read_events(*t, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 4u);

  // A gateway without the events_reader role.
  l.d.stop();
  live_mesobd p(l.dir.path(), {"--gateway", "payer:payments:" + std::string(64, 'a')});
  ASSERT_TRUE(p.up()) << p.output();
  wire::client::options o;
  o.port = p.port();
  o.gateway = "payer";
  ASSERT_TRUE(wire::from_hex(std::string(64, 'a'), &o.secret));
  auto np = wire::client::connect(o, &err);
  ASSERT_TRUE(np) << err;
  wire::subscribed_msg a;
  EXPECT_FALSE(np->subscribe({}, &a, &err));
  EXPECT_NE(err.find("role_denied"), std::string::npos) << err;
}

// The cells of the row of `section` whose first cell is `key` (empty: none).
std::map<std::string, std::string> row_of(const wire::admin_response_msg& m, const std::string& section,
                                          const std::string& key) {
  std::map<std::string, std::string> out;
  for (const auto& s : m.sections)
    if (s.title == section)
      for (const auto& r : s.rows)
        if (!r.empty() && r[0] == key)
          for (size_t i = 0; i < s.columns.size() && i < r.size(); ++i) out[s.columns[i].name] = r[i];
  return out;
}

void write_state_file(const std::string& data, const std::string& body) {
  char tail[32];
  std::snprintf(tail, sizeof tail, "end %08x\n", storage::crc32c(body.data(), body.size()));
  std::ofstream(data + "/events/subscribers.state", std::ios::trunc) << body << tail;
}

// One gateway holds at most half of the subscriptions (--subscriptions-max) and half of
// the names kept (2,048 of 4,096): its sessions past that are refused subscribers_full,
// while another gateway still subscribes, named or not. Before, one reader gateway could
// take every slot, and with a new name each time, every name for good.
TEST(Events, OneGatewayHoldsAtMostHalfTheSubscriptionsAndNames) {
  temp_dir dir;
  const std::string feed_hex(64, 'f'), other_hex(64, 'e');
  std::vector<std::string> args = two_gateways();
  args.insert(args.end(), {"--gateway", "feed:events_reader:" + feed_hex, "--gateway",
                           "other:events_reader:" + other_hex, "--subscriptions-max", "4"});
  // 2,047 names kept for feed already (from a state file), one for nobody.
  std::string names = "mesob-subscribers 2\n";
  for (int i = 0; i < 2047; ++i) names += "n" + std::to_string(i) + " 0 66656564\n";
  names += "spare 0 -\n";
  ASSERT_TRUE(std::filesystem::create_directories(dir.path() + "/events"));
  write_state_file(dir.path(), names);
  live_mesobd d(dir.path(), args);
  ASSERT_TRUE(d.up()) << d.output();
  std::string err;
  auto reader = [&](const std::string& gw) {
    auto c = wire::client::connect(options(d.port(), gw, gw == "feed" ? feed_hex : other_hex), &err);
    EXPECT_TRUE(c) << err;
    return c;
  };
  auto named = [](const std::string& name) {
    wire::subscribe_msg m;
    m.name = name;
    return m;
  };
  auto f1 = reader("feed"), f2 = reader("feed"), f3 = reader("feed");
  ASSERT_TRUE(f1 && f2 && f3);
  auto a = subscribe(*f1, named("fresh"));  // feed's 2,048th name
  ASSERT_EQ(a.code, result::ok) << a.message;
  a = subscribe(*f2, named("one-more"));  // its 2,049th
  EXPECT_EQ(a.code, result::subscribers_full);
  EXPECT_NE(a.message.find("this gateway keeps 2,048 names"), std::string::npos) << a.message;
  a = subscribe(*f2, named("n5"));  // a name it keeps
  ASSERT_EQ(a.code, result::ok) << a.message;
  a = subscribe(*f3, wire::subscribe_msg{});
  EXPECT_EQ(a.code, result::subscribers_full);
  EXPECT_NE(a.message.find("hold 2 subscriptions already, the most one gateway may (half of 4)"), std::string::npos)
      << a.message;
  auto o1 = reader("other"), o2 = reader("other");
  ASSERT_TRUE(o1 && o2);
  a = subscribe(*o1, named("theirs"));
  EXPECT_EQ(a.code, result::ok) << a.message;
  a = subscribe(*o2, wire::subscribe_msg{});
  EXPECT_EQ(a.code, result::ok) << a.message;
  ASSERT_EQ(d.stop(), 0) << d.output();
}

// Subscribers that read nothing keep their windows' frames queued: all subscriptions'
// windows together reserve at most --events-windows-mib (each at its bound), one
// gateway's at most half of it. A Subscribe past either is refused subscribers_full with
// the largest window that fits both; a subscription that ended (taken over) keeps its
// reservation until its session closes. Before, 64 subscribers (32 MiB each) could hold
// 2 GiB queued.
TEST(Events, SubscriptionWindowsTogetherReserveAtMostTheirBudget) {
  temp_dir dir;
  const std::string feed_hex(64, 'f'), other_hex(64, 'e'), third_hex(64, 'd');
  std::vector<std::string> args = two_gateways();
  args.insert(args.end(), {"--gateway", "feed:events_reader:" + feed_hex, "--gateway",
                           "other:events_reader:" + other_hex, "--gateway", "third:events_reader:" + third_hex,
                           "--events-windows-mib", "64"});
  {
    std::vector<std::string> bad = args;
    bad.back() = "63";
    live_mesobd refused(dir.path(), bad);
    EXPECT_FALSE(refused.up());
    EXPECT_NE(refused.wait_exit(30'000), 0);
    EXPECT_NE(refused.output().find("events_windows_mib must be 64..1048576"), std::string::npos) << refused.output();
  }
  live_mesobd d(dir.path(), args);
  ASSERT_TRUE(d.up()) << d.output();
  std::string err;
  auto reader = [&](const std::string& gw) {
    const std::string& hex = gw == "feed" ? feed_hex : gw == "other" ? other_hex : third_hex;
    auto c = wire::client::connect(options(d.port(), gw, hex), &err);
    EXPECT_TRUE(c) << err;
    return c;
  };
  const uint64_t all = 64ull << 20, own = all / 2;
  // What the engine reserves for a request as the client sends it (the defaults filled in).
  auto reserves = [](const wire::subscribe_msg& m) {
    engine::subscription_request r;
    r.window = m.window == 0 ? 65'536 : m.window;
    r.batch_max = m.batch_max == 0 ? 4'096 : m.batch_max;
    r.packed = m.packed;
    return engine::event_hub::window_bytes(r);
  };
  wire::subscribe_msg named;
  named.name = "n";
  const wire::subscribe_msg plain;
  const uint64_t one = reserves(plain);
  ASSERT_EQ(reserves(named), one);
  ASSERT_LT(one, own);
  ASSERT_GT(2 * one, own) << "the test needs a second default window past one gateway's half";
  auto f1 = reader("feed"), f2 = reader("feed"), f3 = reader("feed");
  ASSERT_TRUE(f1 && f2 && f3);
  ASSERT_EQ(subscribe(*f1, named).code, result::ok);
  auto a = subscribe(*f2, plain);
  ASSERT_EQ(a.code, result::subscribers_full);
  EXPECT_NE(a.message.find("this gateway's subscriptions' windows reserve " + std::to_string(one) + " bytes of the " +
                           std::to_string(own)),
            std::string::npos)
      << a.message;
  const std::string ask = "ask for a window of at most ";
  const size_t at = a.message.find(ask);
  ASSERT_NE(at, std::string::npos) << a.message;
  const uint32_t fits = uint32_t(std::stoul(a.message.substr(at + ask.size())));
  wire::subscribe_msg smaller;
  smaller.window = fits + 1;
  ASSERT_GT(one + reserves(smaller), own);
  EXPECT_EQ(subscribe(*f2, smaller).code, result::subscribers_full);
  smaller.window = fits;
  ASSERT_EQ(subscribe(*f2, smaller).code, result::ok) << "the window the refusal named fits";
  const uint64_t feed_total = one + reserves(smaller);
  // Polls a refused Subscribe until it is taken (a closed session's reservation goes when
  // the hub hears of the close).
  auto subscribed_in_time = [&](wire::client& c, const wire::subscribe_msg& m) {
    auto code = result::subscribers_full;
    for (int i = 0; i < 500 && code == result::subscribers_full; ++i) {
      code = subscribe(c, m).code;
      if (code == result::subscribers_full) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return code;
  };
  // f3 would take the name f1 holds, but f1's session stays open with its window's frames
  // queued to it: both are reserved, past feed's half, until f1 closes.
  a = subscribe(*f3, named);
  ASSERT_EQ(a.code, result::subscribers_full);
  EXPECT_NE(a.message.find("this gateway's subscriptions' windows reserve " + std::to_string(feed_total)),
            std::string::npos)
      << a.message;
  f1.reset();
  ASSERT_EQ(subscribed_in_time(*f3, named), result::ok);
  // Another gateway's o2 takes o1's name; o1's session, open, keeps its reservation, and
  // the third gateway finds all of it taken until o1 closes.
  wire::subscribe_msg mid;
  mid.name = "m";
  mid.window = 14'000;
  const uint64_t r2 = reserves(mid);
  ASSERT_LE(2 * r2, own);
  ASSERT_LE(feed_total + r2 + one, all);
  ASSERT_GT(feed_total + 2 * r2 + one, all) << "the test needs o1's reservation to matter";
  auto o1 = reader("other"), o2 = reader("other"), t1 = reader("third"), t2 = reader("third");
  ASSERT_TRUE(o1 && o2 && t1 && t2);
  ASSERT_EQ(subscribe(*o1, mid).code, result::ok);
  ASSERT_EQ(subscribe(*o2, mid).code, result::ok);  // o1 told subscription_taken
  a = subscribe(*t1, plain);
  ASSERT_EQ(a.code, result::subscribers_full);
  EXPECT_NE(a.message.find("the subscriptions' windows reserve " + std::to_string(feed_total + 2 * r2) +
                           " bytes of the " + std::to_string(all) + " all may"),
            std::string::npos)
      << a.message;
  o1.reset();
  ASSERT_EQ(subscribed_in_time(*t1, plain), result::ok);
  // t2 passes third's half, and all that is left is less than third's half has: the window
  // it is told of fits both.
  const uint64_t left = all - (feed_total + r2 + one);
  ASSERT_LT(left, own - one);
  a = subscribe(*t2, plain);
  ASSERT_EQ(a.code, result::subscribers_full);
  EXPECT_NE(a.message.find("this gateway's subscriptions' windows reserve " + std::to_string(one)), std::string::npos)
      << a.message;
  const size_t at2 = a.message.find(ask);
  ASSERT_NE(at2, std::string::npos) << a.message;
  wire::subscribe_msg last;
  last.window = uint32_t(std::stoul(a.message.substr(at2 + ask.size()))) + 1;
  EXPECT_EQ(subscribe(*t2, last).code, result::subscribers_full);
  --last.window;
  EXPECT_EQ(subscribe(*t2, last).code, result::ok) << "the window the refusal named fits";
  ASSERT_EQ(d.stop(), 0) << d.output();
}

// A name belongs to the gateway that first subscribed under it, across restarts: another
// gateway's reader is refused it and cannot move its position. The console lists the
// names with their owners and frees one no session holds; a state file of before owners
// still loads, its names going to the next gateway to subscribe; a state file whose
// lines do not parse stops start-up.
TEST(Events, ANameBelongsToTheGatewayThatFirstUsedIt) {
  temp_dir dir;
  const std::string feed_hex(64, 'f'), other_hex(64, 'e');
  std::vector<std::string> args = two_gateways();
  args.insert(args.end(), {"--gateway", "feed:events_reader:" + feed_hex, "--gateway",
                           "other:events_reader:" + other_hex});
  std::string err;
  auto reader = [&](uint16_t port, const std::string& gw) {
    auto c = wire::client::connect(options(port, gw, gw == "feed" ? feed_hex : other_hex), &err);
    EXPECT_TRUE(c) << err;
    return c;
  };
  wire::subscribe_msg audit;
  audit.name = "audit";
  {
    live_mesobd d(dir.path(), args);
    ASSERT_TRUE(d.up()) << d.output();
    auto pay = wire::client::connect(options(d.port(), "pay", pay_hex), &err);
    ASSERT_TRUE(pay) << err;
    ASSERT_TRUE(pay->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)})).ok);
    ASSERT_TRUE(pay->call(wire::create_transfers_body(std::vector{make_transfer(10, 1, 2, 5)})).ok);
    auto f = reader(d.port(), "feed");
    ASSERT_TRUE(f);
    ASSERT_EQ(subscribe(*f, audit).code, result::ok);
    ASSERT_EQ(read_events(*f, 3).size(), 3u);  // acknowledged through 3
    // Another gateway's reader: refused the name, while it is held and after.
    auto o = reader(d.port(), "other");
    ASSERT_TRUE(o);
    auto a = subscribe(*o, audit);
    EXPECT_EQ(a.code, result::subscriber_name_owned);
    EXPECT_NE(a.message.find("belongs to another gateway"), std::string::npos) << a.message;
    EXPECT_EQ(a.message.find("feed"), std::string::npos) << "which gateway is not told: " << a.message;
    wire::subscribe_msg mine;
    mine.name = "mine";
    EXPECT_EQ(subscribe(*o, mine).code, result::ok);  // the same session, its own name
    auto ops = wire::client::connect(options(d.admin_port(), "ops", ops_hex), &err);
    ASSERT_TRUE(ops) << err;
    wire::admin_response_msg list;
    for (int i = 0; i < 100 && row_of(list, "named subscribers", "audit")["acknowledged"] != "3"; ++i) {
      if (i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      list = admin(*ops, "events");
    }
    auto row = row_of(list, "named subscribers", "audit");
    EXPECT_EQ(row["gateway"], "feed");
    EXPECT_EQ(row["acknowledged"], "3");
    EXPECT_NE(row["session"], "-");
    EXPECT_EQ(row_of(list, "named subscribers", "mine")["gateway"], "other");
    EXPECT_EQ(admin(*ops, "events forget", {"audit"}).code, admin_code::refused);  // held
    f.reset();
    o.reset();
    ASSERT_EQ(d.stop(), 0) << d.output();
  }
  {
    live_mesobd d(dir.path(), args);
    ASSERT_TRUE(d.up()) << d.output();
    auto o = reader(d.port(), "other");
    ASSERT_TRUE(o);
    EXPECT_EQ(subscribe(*o, audit).code, result::subscriber_name_owned);
    o.reset();
    auto f = reader(d.port(), "feed");
    ASSERT_TRUE(f);
    auto a = subscribe(*f, audit);
    ASSERT_EQ(a.code, result::ok) << a.message;
    EXPECT_EQ(a.start, 4u);
    f.reset();
    auto ops = wire::client::connect(options(d.admin_port(), "ops", ops_hex), &err);
    ASSERT_TRUE(ops) << err;
    // The session's close reaches the hub after the client's: ask until it has.
    wire::admin_code forgot = admin_code::refused;
    for (int i = 0; i < 250 && forgot == admin_code::refused; ++i) {
      if (i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      forgot = admin(*ops, "events forget", {"audit"}).code;
    }
    EXPECT_EQ(forgot, admin_code::ok);
    EXPECT_EQ(admin(*ops, "events forget", {"audit"}).code, admin_code::not_found);
    // Saved before the answer: a kill -9 right after does not bring it back. (Before, the
    // hub saved it up to 100 ms later.)
    ops.reset();
    d.crash();
  }
  {
    live_mesobd d(dir.path(), args);
    ASSERT_TRUE(d.up()) << d.output();
    auto ops = wire::client::connect(options(d.admin_port(), "ops", ops_hex), &err);
    ASSERT_TRUE(ops) << err;
    EXPECT_EQ(admin(*ops, "events forget", {"audit"}).code, admin_code::not_found);
    // Free again: the other gateway takes it, from where it asks.
    auto o = reader(d.port(), "other");
    ASSERT_TRUE(o);
    const auto a = subscribe(*o, audit);
    ASSERT_EQ(a.code, result::ok) << a.message;
    EXPECT_EQ(a.start, 1u);
    o.reset();
    ASSERT_EQ(d.stop(), 0) << d.output();
  }
  // A file of before owners: its names have none (the console says so); one goes to the
  // first gateway to subscribe, which resumes after the kept offset, and stays that
  // gateway's, saved before the answer (a kill -9 right after keeps it).
  write_state_file(dir.path(), "mesob-subscribers 1\nold 2\nspare 1\n");
  {
    live_mesobd d(dir.path(), args);
    ASSERT_TRUE(d.up()) << d.output();
    auto ops = wire::client::connect(options(d.admin_port(), "ops", ops_hex), &err);
    ASSERT_TRUE(ops) << err;
    const auto list = admin(*ops, "events", {"p"});  // names from "p" on
    EXPECT_EQ(row_of(list, "named subscribers", "spare")["gateway"], "(none)");
    EXPECT_TRUE(row_of(list, "named subscribers", "old").empty()) << "before the name asked from";
    wire::subscribe_msg old;
    old.name = "old";
    auto f = reader(d.port(), "feed");
    ASSERT_TRUE(f);
    auto a = subscribe(*f, old);
    ASSERT_EQ(a.code, result::ok) << a.message;
    EXPECT_EQ(a.start, 3u);
    d.crash();
  }
  {
    std::ifstream in(dir.path() + "/events/subscribers.state");
    const std::string saved((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(saved.rfind("mesob-subscribers 2\n", 0), 0u) << saved;
    EXPECT_NE(saved.find("\nold 2 66656564\n"), std::string::npos) << saved;  // "feed" in hex
    EXPECT_NE(saved.find("\nspare 1 -\n"), std::string::npos) << saved;
    live_mesobd d(dir.path(), args);
    ASSERT_TRUE(d.up()) << d.output();
    auto o = reader(d.port(), "other");
    ASSERT_TRUE(o);
    wire::subscribe_msg old;
    old.name = "old";
    EXPECT_EQ(subscribe(*o, old).code, result::subscriber_name_owned);
    ASSERT_EQ(d.stop(), 0) << d.output();
  }
  // A line that does not parse, under a good checksum: start-up stops and names the line
  // (the other such lines: SubscriberStateLinesThatDoNotParseStopTheOpen).
  write_state_file(dir.path(), "mesob-subscribers 2\nok 1 -\nbad 1 zz\n");
  live_mesobd d(dir.path(), args);
  EXPECT_FALSE(d.up());
  EXPECT_NE(d.wait_exit(30'000), 0);
  EXPECT_NE(d.output().find("subscribers.state line 3"), std::string::npos) << d.output();
}

// Each line of a subscriber state file that does not parse, under a good checksum, stops
// the engine's open and is named; nothing is written over the file.
TEST(EventsEngine, SubscriberStateLinesThatDoNotParseStopTheOpen) {
  engine_fixture f(1);
  f.close();
  for (const std::string& body : std::vector<std::string>{"mesob-subscribers 2\nx 1\n", "mesob-subscribers 2\nx 1 - extra\n",
        "mesob-subscribers 2\nx\xff 1 -\n", "mesob-subscribers 2\nx 18446744073709551616 -\n",
        "mesob-subscribers 2\nx 18446744073709551615 -\n",
        "mesob-subscribers 2\nok 1 -\nx 1 -\nx 2 -\n", "mesob-subscribers 2\nx 1 " + std::string(130, 'a') + "\n",
        "mesob-subscribers 2\nx -1 -\n", "mesob-subscribers 1\nx 1 -\n", "mesob-subscribers 1\nx\n"}) {
    write_state_file(f.dir(), body);
    const std::string line = std::to_string(std::count(body.begin(), body.end(), '\n'));
    std::string err;
    EXPECT_FALSE(engine::engine::open(f.config(), &err)) << body;
    EXPECT_NE(err.find("subscribers.state line " + line + " is not"), std::string::npos) << body << err;
    std::ifstream in(f.dir() + "/events/subscribers.state");
    const std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(kept.rfind(body, 0), 0u) << "the file was written over";
  }
  // A file larger than subscriber_names_max widest lines take is refused unread.
  {
    std::string big = "mesob-subscribers 2\n";
    while (big.size() < engine::subscriber_names_max * 216 + 256) big += std::string(4095, 'z') + "\n";
    write_state_file(f.dir(), big);
    std::string err;
    EXPECT_FALSE(engine::engine::open(f.config(), &err));
    EXPECT_NE(err.find("more than a subscriber state file of 4096 names takes"), std::string::npos) << err;
  }
  // The widest good lines still open, as many as may be kept.
  std::string widest = "mesob-subscribers 2\n";
  for (size_t i = 0; i < engine::subscriber_names_max; ++i) {
    char name[65];
    std::snprintf(name, sizeof name, "%064zu", i);
    widest += std::string(name) + " 18446744073709551614 " + std::string(128, 'a') + "\n";
  }
  write_state_file(f.dir(), widest);
  f.open();
  f.close();
  // Bytes after the end line, or an end line cut short: refused.
  for (const std::string& tail : {std::string("x 1 -\n"), std::string("\n"), std::string()}) {
    const std::string body = "mesob-subscribers 2\nok 1 -\n";
    char end_line[32];
    std::snprintf(end_line, sizeof end_line, "end %08x\n", storage::crc32c(body.data(), body.size()));
    const std::string text = tail.empty() ? body + std::string(end_line).substr(0, 10) : body + end_line + tail;
    std::ofstream(f.dir() + "/events/subscribers.state", std::ios::trunc) << text;
    std::string err;
    EXPECT_FALSE(engine::engine::open(f.config(), &err)) << text;
    EXPECT_NE(err.find(tail.empty() ? "fails its checksum" : "does not end at its end line"), std::string::npos) << err;
  }
}

// An acknowledgement that moves nothing saves nothing: each save of the names' positions
// is a synced file replace on the hub's thread, which serves every subscriber. Before,
// a subscriber repeating its ack made one every 100 ms.
TEST(Events, ARepeatedAckSavesNothing) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  auto s = l.client();
  wire::subscribe_msg m;
  m.name = "repeats";
  ASSERT_EQ(subscribe(*s, m).code, result::ok);
  const auto got = read_events(*s, 2);  // the two accounts' events, acknowledged
  ASSERT_EQ(got.size(), 2u);
  const std::string state = l.dir.path() + "/events/subscribers.state";
  // A save replaces the file: a new inode, or the old number reused with a new change time.
  const auto inode = [&] {
    struct stat st {};
    return ::stat(state.c_str(), &st) == 0
               ? std::to_string(st.st_ino) + "/" + std::to_string(st.st_ctim.tv_sec) + "." + std::to_string(st.st_ctim.tv_nsec)
               : std::string();
  };
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // the first ack saved
  const std::string saved = inode();
  ASSERT_NE(saved, "");
  std::string err;
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(s->ack(2, &err)) << err;
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
  }
  EXPECT_EQ(inode(), saved) << "the file was replaced for acks that moved nothing";
  ASSERT_TRUE(s->call(wire::lookup_accounts_body(std::vector<uint64_t>{1})).ok) << "the session is served";
}

TEST(Events, SlowSubscriberFallsBehindWithoutHoldingOthers) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  auto& c = l.c;
  auto slow = l.client();
  auto fast = l.client();
  wire::subscribe_msg m;
  m.window = 1000;
  m.batch_max = 500;
  ASSERT_EQ(subscribe(*slow, m).code, result::ok);
  ASSERT_EQ(subscribe(*fast, m).code, result::ok);
  constexpr uint64_t batches = 20, per = 1000;
  for (uint64_t b = 0; b < batches; ++b) {
    std::vector<wire::transfer> ts;
    for (uint64_t i = 0; i < per; ++i) ts.push_back(make_transfer(100 + b * per + i, 1, 2, 1));
    auto r = c->call(wire::create_transfers_body(ts));
    ASSERT_TRUE(r.ok) << r.failure;
  }
  const uint64_t total = 2 + batches * per;
  auto got = read_events(*fast, total);
  ASSERT_EQ(got.size(), total);
  EXPECT_EQ(got.back().offset, total);
  // The slow one, which never acknowledged, was sent exactly its window.
  got = read_events(*slow, total, false, 1500);
  EXPECT_EQ(got.size(), 1000u);
  EXPECT_EQ(got.back().offset, 1000u);
  // Acknowledging lets it catch up from the log.
  std::string err;
  ASSERT_TRUE(slow->ack(1000, &err));
  auto rest = read_events(*slow, total - 1000);
  ASSERT_EQ(rest.size(), total - 1000);
  EXPECT_EQ(rest.front().offset, 1001u);
  EXPECT_EQ(rest.back().offset, total);
}

// A member replaced in an equb group: an account filter on the new account finds the
// event that puts it in the group (its id is in `amount`); before, only filters on the
// group or on the account replaced did. Another kind's amount is money, not an account.
TEST(Events, AnAccountFilterFindsTheNewMemberOfAReplacement) {
  engine::subscription_request r;
  r.accounts = {77};
  wire::event e{};
  e.type = wire::event_type::equb_op;
  e.code = uint16_t(wire::equb_op_kind::replace_account);
  e.account_a = 5;   // the group
  e.account_b = 6;   // the account replaced
  e.amount = 77;     // the new account
  EXPECT_TRUE(engine::event_hub::matches(r, e));
  r.accounts = {6};
  EXPECT_TRUE(engine::event_hub::matches(r, e));
  r.accounts = {77};
  e.code = uint16_t(wire::equb_op_kind::bid);  // a bid of 77
  EXPECT_FALSE(engine::event_hub::matches(r, e));
}

// A filtered subscriber's frame scans ahead for its matches. Before, every frame read
// 16,384 events whatever it kept: frames of one event cost the hub's thread 16,384 events
// read for each event delivered. Now the reads start at batch_max (at least 64) and grow
// only while matches are sparse.
TEST(Events, AFilteredSubscriberWithSmallFramesReadsLittleMoreThanItGets) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  for (uint64_t b = 0; b < 20; ++b) {
    std::vector<wire::transfer> ts;
    for (uint64_t i = 0; i < 1000; ++i) ts.push_back(make_transfer(100 + b * 1000 + i, 1, 2, 1));
    ASSERT_TRUE(l.c->call(wire::create_transfers_body(ts)).ok);
  }
  // Events the hub read and frames it sent, from one scrape.
  const auto hub_counts = [&] {
    const std::string x = http_get(l.d.metrics_port(), "/metrics");
    return std::pair{exposition_sample(x, "mesob_event_hub_events_read_total"),
                     exposition_sample(x, "mesob_event_frames_sent_total")};
  };
  const auto events_read = [&] { return hub_counts().first; };
  const auto [read_before, frames_before] = hub_counts();
  auto dense = l.client();
  wire::subscribe_msg m;
  m.types = 1u << uint16_t(event_type::transfer_posted);  // every event but the first two
  m.batch_max = 1;
  ASSERT_EQ(subscribe(*dense, m).code, result::ok);
  const auto got = read_events(*dense, 300);
  ASSERT_EQ(got.size(), 300u);
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].offset, 3 + i);
    ASSERT_EQ(got[i].type, event_type::transfer_posted);
  }
  // The hub sends on while the window has room (it holds every event here): one read of
  // 64 a frame of one event (16,384 before, less only near the end).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto [read_after, frames_after] = hub_counts();
  ASSERT_GE(frames_after - frames_before, 300);
  EXPECT_LE((read_after - read_before) / (frames_after - frames_before), 64.0) << "events read a frame of one event";
  // Sparse matches (account 2's opening, then nothing) still scan far ahead in one
  // frame's reads, and what they pass is not read again.
  dense.reset();  // its session gone, the hub reads nothing more for it
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto sparse = l.client();
  wire::subscribe_msg one;
  one.types = 1u << uint16_t(event_type::account_opened);
  one.accounts = {2};
  one.batch_max = 1;
  ASSERT_EQ(subscribe(*sparse, one).code, result::ok);
  const double sparse_before = events_read();
  const auto opened = read_events(*sparse, 1);
  ASSERT_EQ(opened.size(), 1u);
  EXPECT_EQ(opened[0].offset, 2u);
  EXPECT_EQ(opened[0].account_a, 2u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the rest scanned, acknowledged as it goes
  EXPECT_LE(events_read() - sparse_before, 2.0 * 20'002 + 64.0 * 400) << "the sparse subscriber read the log again and again";
}

// A power cut can take the event log's unsynced tail while a named subscriber had
// acknowledged events in it: until replay writes them again, its position lies past the
// end. The name then waits there for its events instead of being refused. (Made here by
// writing the name's position past the end while the engine is stopped.)
TEST(Events, ANameAheadOfTheEndAfterARestartWaitsForItsEvents) {
  temp_dir dir;
  uint64_t end = 0;
  {
    live_mesobd d(dir.path());
    ASSERT_TRUE(d.up()) << d.output();
    auto c = connect(dir.path(), d.port());
    ASSERT_TRUE(c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)})).ok);
    // The batch's events are written after its reply: ask until they are there.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (end <= 1 && std::chrono::steady_clock::now() < deadline) {
      auto s = connect(dir.path(), d.port());
      wire::subscribe_msg m;
      m.from_end = true;
      end = subscribe(*s, m).end;
      if (end <= 1) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_EQ(d.stop(), 0);
  }
  ASSERT_GT(end, 1u);
  const uint64_t acked = end - 1 + 5;  // five events past the newest
  {
    std::string text = "mesob-subscribers 1\nwatcher " + std::to_string(acked) + "\n";
    char tail[32];
    std::snprintf(tail, sizeof tail, "end %08x\n", storage::crc32c(text.data(), text.size()));
    std::ofstream(dir.path() + "/events/subscribers.state", std::ios::trunc) << text << tail;
  }
  live_mesobd d(dir.path());
  ASSERT_TRUE(d.up()) << d.output();
  auto s = connect(dir.path(), d.port());
  wire::subscribe_msg m;
  m.name = "watcher";
  const auto a = subscribe(*s, m);
  ASSERT_EQ(a.code, result::ok) << a.message;
  EXPECT_EQ(a.start, acked + 1);
  EXPECT_EQ(a.end, end);
  // An explicit start past the end is still refused.
  auto other = connect(dir.path(), d.port());
  wire::subscribe_msg x;
  x.from = end + 5;
  EXPECT_EQ(subscribe(*other, x).code, result::events_offset_ahead);
  // Ten transfers: events end .. end + 9; the name gets those after its position.
  auto c = connect(dir.path(), d.port());
  std::vector<wire::transfer> ts;
  for (uint64_t i = 0; i < 10; ++i) ts.push_back(make_transfer(900 + i, 1, 2, 1));
  ASSERT_TRUE(c->call(wire::create_transfers_body(ts)).ok);
  const auto got = read_events(*s, end + 10 - (acked + 1));
  ASSERT_EQ(got.size(), end + 10 - (acked + 1));
  EXPECT_EQ(got.front().offset, acked + 1);
  EXPECT_EQ(got.back().offset, end + 9);
}

// A name from a file of before owners, behind retention, moved on by an explicit from: a
// subscription refused because its claim of the name could not be saved moves nothing.
// Before, the name's position stayed moved (and was saved by the next periodic save).
TEST(Events, ARefusedSubscriptionDoesNotMoveItsName) {
  temp_dir dir;
  const std::vector<std::string> args = {"--events-segment-events", "1024", "--events-retention-mib", "1"};
  uint64_t oldest = 1;
  {
    live_mesobd d(dir.path(), args);
    ASSERT_TRUE(d.up()) << d.output();
    auto c = connect(dir.path(), d.port());
    ASSERT_TRUE(c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)})).ok);
    for (uint64_t b = 0; b < 120; ++b) {
      std::vector<wire::transfer> ts;
      for (uint64_t i = 0; i < 1000; ++i) ts.push_back(make_transfer(100 + b * 1000 + i, 1, 2, 1));
      ASSERT_TRUE(c->call(wire::create_transfers_body(ts)).ok);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (oldest <= 1 && std::chrono::steady_clock::now() < deadline) {  // retention runs about once a second
      auto probe = connect(dir.path(), d.port());
      oldest = subscribe(*probe, {}).oldest;
      if (oldest <= 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    ASSERT_EQ(d.stop(), 0);
  }
  ASSERT_GT(oldest, 1u) << "retention dropped nothing";
  const std::string state = dir.path() + "/events/subscribers.state";
  {
    std::string text = "mesob-subscribers 1\nold 1\n";  // no owner: the next gateway claims it
    char tail[32];
    std::snprintf(tail, sizeof tail, "end %08x\n", storage::crc32c(text.data(), text.size()));
    std::ofstream(state, std::ios::trunc) << text << tail;
  }
  live_mesobd d(dir.path(), args);
  ASSERT_TRUE(d.up()) << d.output();
  std::filesystem::create_directory(state + ".new");  // every save fails (root included)
  wire::subscribe_msg m;
  m.name = "old";
  // From the oldest kept, asked just before: retention may still be dropping segments
  // (it runs about once a second), which moves the oldest on; then ask again.
  wire::subscribed_msg refused;
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto probe = connect(dir.path(), d.port());
    m.from = subscribe(*probe, {}).oldest;
    auto first = connect(dir.path(), d.port());
    refused = subscribe(*first, m);
    if (refused.code != result::events_truncated) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
  EXPECT_EQ(refused.code, result::events_try_again) << refused.message;
  std::filesystem::remove(state + ".new");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // a periodic save, if anything was dirty
  auto again = connect(dir.path(), d.port());
  m.from = 0;  // resume where the name is
  const auto resumed = subscribe(*again, m);
  EXPECT_EQ(resumed.code, result::events_truncated) << "the refused subscription moved the name to " << resumed.start;
}

// Big batches: each whole group of 128 offsets is appended as one chunk, and packed
// subscribers get those as the writer packed them. Every form, and a subscriber starting
// inside a group with frames of odd sizes, gets the same events.
TEST(Events, PackedFramesAsWrittenCarryTheSameEvents) {
  live_ledger l;
  ASSERT_TRUE(l.c);
  auto packed = l.client(), plain = l.client(), blocks = l.client(), odd = l.client();
  wire::subscribe_msg m;
  ASSERT_EQ(subscribe(*packed, m).code, result::ok);
  ASSERT_EQ(subscribe(*blocks, m).code, result::ok);
  m.packed = false;
  ASSERT_EQ(subscribe(*plain, m).code, result::ok);
  uint64_t id = 1000;
  std::mt19937_64 rng(7);
  for (int b = 0; b < 8; ++b) {
    std::vector<wire::transfer> ts;
    for (uint64_t i = 0; i < 1000; ++i) ts.push_back(make_transfer(++id, 1 + i % 2, 2 - i % 2, 1 + rng() % 1000));
    ASSERT_TRUE(l.c->call(wire::create_transfers_body(ts)).ok);
  }
  wire::subscribe_msg o;  // after the events are written: from inside the first group
  o.from = 5;
  o.batch_max = 300;
  ASSERT_EQ(subscribe(*odd, o).code, result::ok);
  const size_t n = 2 + 8000;  // the accounts' and the transfers' events
  const auto want = read_events(*plain, n);
  ASSERT_EQ(want.size(), n);
  EXPECT_TRUE(same_events(read_events(*packed, n), want));
  EXPECT_TRUE(same_events(read_events(*blocks, n, true, 20'000, true), want));
  const auto from5 = read_events(*odd, n - 4);
  ASSERT_EQ(from5.size(), n - 4);
  EXPECT_EQ(std::memcmp(from5.data(), want.data() + 4, from5.size() * sizeof(wire::event)), 0);
  const std::string metrics = http_get(l.d.metrics_port(), "/metrics");
  const double as_written = exposition_sample(metrics, "mesob_event_frames_as_written_total");
  EXPECT_GE(as_written, 3) << metrics;
  // A subscriber after the events, from `from` with frames of up to `batch_max`: it gets
  // the events from there on; returns how many frames went as the writer packed them.
  double written = as_written;
  auto frames_as_written_from = [&](uint64_t from, uint32_t batch_max) {
    auto c = l.client();
    wire::subscribe_msg from_here;
    from_here.from = from;
    from_here.batch_max = batch_max;
    EXPECT_EQ(subscribe(*c, from_here).code, result::ok);
    const auto got = read_events(*c, n - (from - 1));
    EXPECT_EQ(got.size(), n - (from - 1));
    EXPECT_EQ(std::memcmp(got.data(), want.data() + from - 1, got.size() * sizeof(wire::event)), 0) << "from " << from;
    const double now = exposition_sample(http_get(l.d.metrics_port(), "/metrics"), "mesob_event_frames_as_written_total");
    return now - std::exchange(written, now);
  };
  // Frames of exactly one group from inside a group: one short frame (offsets 2..128,
  // read and packed), then the 61 whole groups as the writer packed them, those a batch
  // boundary split across two appends too, then the last group's 66 events.
  EXPECT_EQ(frames_as_written_from(2, 128), 61) << "frames of one group went the old way";
  // From inside a group with the largest frames: that group's rest alone (read and packed
  // again), then the 61 whole groups in one frame as the writer packed them.
  EXPECT_EQ(frames_as_written_from(5, 8192), 1) << "a frame from inside a group went the old way whole";
}

TEST(Events, RetentionDropsOldSegmentsAndCutsOffAReaderBehindIt) {
  // 1,024 events a segment, at most 1 MiB kept (packed, a segment of these transfers
  // takes about 20 KB: some fifty segments).
  live_ledger l({"--events-segment-events", "1024", "--events-retention-mib", "1"});
  ASSERT_TRUE(l.c);
  auto& c = l.c;
  auto behind = l.client();
  wire::subscribe_msg m;
  m.window = 100;
  ASSERT_EQ(subscribe(*behind, m).code, result::ok);
  {
    // A named subscriber that takes one frame and goes away.
    auto late = l.client();
    wire::subscribe_msg n;
    n.name = "late";
    ASSERT_EQ(subscribe(*late, n).code, result::ok);
    ASSERT_EQ(read_events(*late, 2).size(), 2u);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its position is kept
  }
  for (uint64_t b = 0; b < 120; ++b) {
    if (b == 1) {
      ASSERT_EQ(read_events(*behind, 100, false).size(), 100u);
    }
    std::vector<wire::transfer> ts;
    for (uint64_t i = 0; i < 1000; ++i) ts.push_back(make_transfer(100 + b * 1000 + i, 1, 2, 1));
    ASSERT_TRUE(c->call(wire::create_transfers_body(ts)).ok);
  }
  // Retention runs about once a second.
  wire::subscribed_msg a;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    auto probe = l.client();
    a = subscribe(*probe, {});
    if (a.oldest > 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < deadline);
  ASSERT_GT(a.oldest, 1u) << "retention dropped nothing";
  // The pass that was seen may have been under way: the next one leaves it still.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  {
    auto probe = l.client();
    a = subscribe(*probe, {});
  }
  EXPECT_EQ((a.oldest - 1) % 1024, 0u) << "whole segments go";
  uint64_t kept = 0;
  for (uint64_t i = (a.oldest - 1) / 1024; i <= (a.end - 2) / 1024; ++i)
    kept += std::filesystem::file_size(storage::event_log::segment_path(l.dir.path() + "/events", i));
  EXPECT_LE(kept, (1u << 20) + 4096) << "what is kept fits the limit (the newest segment's last block padded)";
  // From an offset retention dropped: refused, naming the oldest kept.
  auto old = l.client();
  m = {};
  m.from = 5;
  const auto refused = subscribe(*old, m);
  EXPECT_EQ(refused.code, result::events_truncated);
  EXPECT_NE(refused.message.find(std::to_string(a.oldest)), std::string::npos) << refused.message;
  // From the oldest kept: served, starting there.
  auto edge = l.client();
  m.from = a.oldest;
  ASSERT_EQ(subscribe(*edge, m).code, result::ok);
  const auto first = read_events(*edge, 1);
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first[0].offset, a.oldest);
  // The name left behind is not moved on silently: only an explicit start does.
  {
    auto late = l.client();
    wire::subscribe_msg n;
    n.name = "late";
    const auto again = subscribe(*late, n);
    EXPECT_EQ(again.code, result::events_truncated);
    EXPECT_NE(again.message.find("from_end"), std::string::npos) << again.message;
    // An explicit start past the end is refused and does not move the name either.
    n.from = again.end + 1000;
    EXPECT_EQ(subscribe(*late, n).code, result::events_offset_ahead);
    n.from = 0;
    EXPECT_EQ(subscribe(*late, n).code, result::events_truncated) << "the refused start moved the name";
    n.from_end = true;
    const auto moved = subscribe(*late, n);
    EXPECT_EQ(moved.code, result::ok) << moved.message;
    EXPECT_EQ(moved.start, moved.end);
  }
  // The reader left behind is told, and its subscription ends.
  std::string err;
  ASSERT_TRUE(behind->ack(100, &err));
  wire::events_msg em;
  wire::protocol_error refusal{};
  behind->set_timeout_ms(5000);
  EXPECT_FALSE(behind->next_events(&em, &err, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::events_truncated) << err;
}

// Where the write-ahead log's record `index` (from 0; -1: the last) lies: its file, where
// its payload begins, its lsn (an empty file: no such record, or the log unreadable).
struct wal_record_place {
  std::string file;
  uint64_t payload_at = 0;
  uint64_t lsn = 0;
};
wal_record_place wal_record_at(const std::string& data_dir, int index) {
  wal_record_place at;
  storage::wal_scan_options ro;
  ro.dir = data_dir + "/wal";
  ro.repair_tail = false;
  storage::wal_scan_result sr;
  std::string err;
  int seen = 0;
  const bool ok = storage::scan_wal(ro, [&](const storage::wal_record_view& v) {
    if (index < 0 || seen++ == index) at = {v.file, v.offset + sizeof(storage::record_header), v.header->lsn};
    return true;
  }, &sr, &err);
  EXPECT_TRUE(ok) << err;
  return ok ? at : wal_record_place{};
}
// Four accounts, then `n` transfers of 10 from 1 to 2 (ids 30 on), each its own record;
// the engine closed (no snapshot at close: `f` made without one).
void transfers_then_closed(engine_fixture& f, uint64_t n) {
  create_accounts(f.e(), 4);
  for (uint64_t k = 0; k < n; ++k)
    ASSERT_EQ(f.e().create_transfers({make_transfer(30 + k, 1, 2, 10)}).results.at(0), result::ok);
  f.close();
}
std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Damage in the log's last group, whose records the event log proves were durable, is
// refused and left on the disk as it is; the same bytes mended, the engine starts with
// every transfer. Before, the scan took it for a torn tail and zeroed it before any check,
// losing acknowledged transfers for good and leaving events of records that were gone.
TEST(EventsEngine, DamageUnderWhatTheEventLogProvesDurableIsNotCut) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  ASSERT_NO_FATAL_FAILURE(transfers_then_closed(f, 3));
  // The last record: its file and where its payload begins.
  const wal_record_place last = wal_record_at(f.dir(), -1);
  ASSERT_FALSE(last.file.empty());
  const std::string& file = last.file;
  const uint64_t payload_at = last.payload_at, last_lsn = last.lsn;
  std::string err;
  const auto read_all = [&] { return file_bytes(file); };
  std::string bytes = read_all();
  bytes[payload_at + 8] ^= 0x40;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  auto cfg = f.config();
  auto e = engine::engine::open(cfg, &err);
  EXPECT_FALSE(e) << "damage under the event log's newest record is no torn tail";
  EXPECT_NE(err.find("event log holds events of records up to lsn " + std::to_string(last_lsn)), std::string::npos)
      << err;
  EXPECT_NE(err.find("nothing was cut"), std::string::npos) << err;
  EXPECT_EQ(read_all(), bytes) << "the damaged bytes are as they were";
  // Again, and without the event log: the refusal holds (the first start's cut of the
  // event log's newest record kept its evidence in events/newest), nothing is cut.
  for (const bool events : {true, true, false}) {
    cfg.events = events;
    err.clear();
    e = engine::engine::open(cfg, &err);
    EXPECT_FALSE(e) << "events " << events;
    EXPECT_NE(err.find("records up to lsn " + std::to_string(last_lsn)), std::string::npos) << err;
    EXPECT_EQ(read_all(), bytes);
  }
  e.reset();
  bytes[payload_at + 8] ^= 0x40;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  f.open();
  EXPECT_TRUE(f.e().recovery().torn_tail.empty()) << f.e().recovery().torn_tail;
  const auto r = f.e().lookup_accounts({2});
  ASSERT_EQ(r.accounts.size(), 1u);
  EXPECT_EQ(r.accounts[0].credits_posted, 30u) << "all three transfers";
  // The events of every record, each once, in offset order (replay wrote the cut ones).
  f.close();
  const auto all = all_events(f.dir());
  size_t transfers = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(all[i].offset, i + 1);
    transfers += all[i].type == wire::event_type::transfer_posted;
  }
  EXPECT_EQ(transfers, 3u);
}

// Damage deeper in the log than the event log's newest record: each refused start cuts
// the events of the newest record (replay would write them again), but replay stops at
// the damage before it gets there. The first start's cut is the only one: it leaves the
// event log whole through the record before (events/whole), and the next starts find it
// so. Before, every refused start cut one more record's events, wearing the event log
// back to the snapshot (the only other copy of what the damaged records decided).
TEST(EventsEngine, RefusedStartsCutTheEventLogOnce) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  ASSERT_NO_FATAL_FAILURE(transfers_then_closed(f, 5));
  const size_t events_before = all_events(f.dir()).size();
  // The first transfer's record (after the accounts'): its file and where its payload begins.
  const wal_record_place first = wal_record_at(f.dir(), 1);
  ASSERT_FALSE(first.file.empty());
  const std::string& file = first.file;
  const uint64_t payload_at = first.payload_at;
  std::string err;
  std::string bytes = file_bytes(file);
  bytes[payload_at + 8] ^= 0x40;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  auto cfg = f.config();
  std::vector<size_t> kept;
  for (int start = 0; start < 4; ++start) {
    err.clear();
    auto e = engine::engine::open(cfg, &err);
    EXPECT_FALSE(e) << start;
    kept.push_back(all_events(f.dir()).size());
  }
  EXPECT_LT(kept[0], events_before) << "the newest record's events cut";
  for (size_t k = 1; k < kept.size(); ++k) EXPECT_EQ(kept[k], kept[0]) << "refused start " << k + 1 << " cut again";
  // Mended, the engine starts and replay writes the cut events again, the same ones.
  bytes[payload_at + 8] ^= 0x40;
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
  f.open();
  f.close();
  EXPECT_EQ(all_events(f.dir()).size(), events_before);
}

// Replay after a crash writes the events the event log lacks, and they are the very
// events the first run wrote, at the same offsets: expiries included, from a snapshot in
// the middle and from the start of the log.
TEST(EventsEngine, ReplayWritesTheSameEventsAtTheSameOffsets) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  create_accounts(f.e(), 8);
  auto ok = [](const engine::reply& r) {
    for (const auto res : r.results) EXPECT_EQ(res, result::ok);
  };
  ok(f.e().create_transfers({make_transfer(10, 1, 2, 100), pending(11, 3, 4, 30, 1), pending(12, 5, 6, 40, 1),
                             pending(13, 7, 8, 50, 0), pending(14, 2, 7, 60, 5)}));
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;
  ok(f.e().create_transfers({resolve(15, 13, wire::transfer_flags::post_pending), make_transfer(16, 8, 1, 5)}));
  f.advance_s(2);  // 11 and 12 expire
  ok(f.e().create_transfers({make_transfer(17, 4, 3, 1)}));
  ok(f.e().create_transfers({resolve(18, 14, wire::transfer_flags::void_pending), make_transfer(19, 6, 5, 2),
                             make_transfer(20, 1, 8, 3)}));
  f.close();
  const auto first = all_events(f.dir());
  ASSERT_GE(first.size(), 20u);
  size_t expired = 0;
  for (const auto& e : first) expired += e.type == event_type::pending_expired;
  EXPECT_EQ(expired, 2u);

  // A crash in the middle of the last batch's events.
  cut_event_log(f.dir(), first.size() - 1, 40);
  f.open();
  f.close();
  EXPECT_TRUE(same_events(all_events(f.dir()), first)) << "after a crash mid-append";

  // Everything after the snapshot lost.
  const uint64_t past = first_past_snapshot(f.dir(), first);
  ASSERT_NE(past, 0u);
  cut_event_log(f.dir(), past, 0);
  f.open();
  f.close();
  EXPECT_TRUE(same_events(all_events(f.dir()), first)) << "after losing the events past the snapshot";
}

// A flipped byte among the events a snapshot saw synced is damage, not a torn tail: the
// engine refuses to start, names the file, and cuts nothing (cutting would have dropped
// events replay cannot write again, and handed their offsets to other events).
TEST(EventsEngine, DamagedSyncedEventsRefuseToStartAndAreNotCut) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  create_accounts(f.e(), 8);
  for (int i = 0; i < 40; ++i)
    ASSERT_EQ(f.e().create_transfers({make_transfer(100 + i, 1 + i % 4, 5 + i % 4, 1)}).results.at(0), result::ok);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;
  ASSERT_EQ(f.e().create_transfers({make_transfer(200, 1, 2, 1)}).results.at(0), result::ok);
  f.close();
  const auto before = all_events(f.dir());
  ASSERT_GE(before.size(), 49u);
  const std::string path = storage::event_log::segment_path(f.dir() + "/events", 0);
  const auto chunks = event_chunks(path);
  ASSERT_GE(chunks.size(), 3u);
  const uint64_t at = chunks[1].pos + chunks[1].bytes / 2;  // among the accounts' and transfers' events
  auto flip = [&] {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(std::streamoff(at));
    char c = 0;
    file.get(c);
    file.seekp(std::streamoff(at));
    file.put(char(c ^ 0x10));
  };
  flip();
  const auto size = std::filesystem::file_size(path);
  auto e = engine::engine::open(f.config(), &err);
  EXPECT_FALSE(e);
  EXPECT_NE(err.find("events-0000000000000000.log is damaged"), std::string::npos) << err;
  EXPECT_NE(err.find("nothing was changed"), std::string::npos) << err;
  EXPECT_EQ(std::filesystem::file_size(path), size);
  flip();
  f.open();
  f.close();
  EXPECT_TRUE(same_events(all_events(f.dir()), before));
  // events/covered as builds before the offset wrote it still opens; a damaged one does not.
  const std::string covered = f.dir() + "/events/covered";
  std::string word;
  uint64_t lsn = 0, offset = 0;
  ASSERT_TRUE(std::ifstream(covered) >> word >> lsn >> word >> offset) << "lsn L offset O";
  EXPECT_GT(offset, 1u);
  std::ofstream(covered, std::ios::trunc) << "lsn " << lsn << "\n";
  f.open();
  f.close();
  std::ofstream(covered, std::ios::trunc) << "lsn " << lsn << " offset x\n";
  EXPECT_FALSE(engine::engine::open(f.config(), &err));
  EXPECT_NE(err.find("covered is damaged"), std::string::npos) << err;
  // Digits only: ">>" into an unsigned took "-5" as 2^64 - 5 (before, it opened).
  std::ofstream(covered, std::ios::trunc) << "lsn -5 offset " << offset << "\n";
  err.clear();
  EXPECT_FALSE(engine::engine::open(f.config(), &err));
  EXPECT_NE(err.find("covered is damaged"), std::string::npos) << err;
  // One that cannot be read is an error, not an absent file (its evidence kept).
  std::filesystem::remove(covered);
  std::filesystem::create_directory(covered);
  err.clear();
  EXPECT_FALSE(engine::engine::open(f.config(), &err));
  EXPECT_NE(err.find("cannot read " + covered), std::string::npos) << err;
  std::filesystem::remove(covered);
  std::ofstream(covered, std::ios::trunc) << "lsn " << lsn << " offset " << offset << "\n";
  f.open();
  f.close();
}

// Recovery's own cut of the newest record's events may remove events below the synced
// offset events/covered records (synced after the snapshot's events, or a crash between
// covered and the snapshot's commit). The offset comes down before the cut touches a
// file: a crash in the middle of the cut leaves an engine that starts, not one that takes
// the cut for damage.
TEST(EventsEngine, ACrashInRecoverysCutLeavesAnEngineThatStarts) {
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.checkpoint_on_close = false;
  cfg.events_segment_events = 128;  // the newest record's events span segments
  uint64_t end = 0;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    create_accounts(*e, 8);
    std::string err;
    ASSERT_TRUE(e->checkpoint(&err)) << err;
    std::vector<wire::transfer> batch;
    for (uint64_t i = 0; i < 300; ++i) batch.push_back(make_transfer(1000 + i, 1 + i % 4, 5 + i % 4, 1));
    for (auto r : e->create_transfers(batch).results) ASSERT_EQ(r, result::ok);
    for (int i = 0; i < 500 && e->events_stats().end_offset < 309; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    end = e->events_stats().end_offset;
    ASSERT_GE(end, 309u);
  }
  // As if every event had been synced when the snapshot's covered was written.
  const std::string covered = dir.path() + "/events/covered";
  std::string word;
  uint64_t lsn = 0;
  ASSERT_TRUE(std::ifstream(covered) >> word >> lsn);
  std::ofstream(covered, std::ios::trunc) << "lsn " << lsn << " offset " << end << "\n";
  storage::failure_probes::instance().event_cut_stop = true;  // the cut stops after removing segments
  std::string err;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("cut stopped"), std::string::npos) << err;
  auto e = engine::engine::open(cfg, &err);
  ASSERT_TRUE(e) << err;
  for (int i = 0; i < 500 && e->events_stats().end_offset < end; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(e->events_stats().end_offset, end) << "replay wrote the cut events again";
}

// Events are made durable on demand: a checkpoint waits for them, and otherwise the
// writer syncs at most events_sync_interval_ms after an append, not after each one (a
// lone request would pay a second fdatasync beside the log's). (That readers read them
// before the sync is event_log_test's.)
TEST(EventsEngine, EventsAreSyncedOnDemandNotAfterEachAppend) {
  engine_fixture f(2);
  create_accounts(f.e(), 8);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;
  const auto before = f.e().events_stats();
  ASSERT_TRUE(before.kept);
  const auto t0 = std::chrono::steady_clock::now();
  constexpr int requests = 200;
  for (int i = 0; i < requests; ++i)  // one commit group each
    ASSERT_EQ(f.e().create_transfers({make_transfer(100 + i, 1 + i % 4, 5 + i % 4, 1)}).results.at(0), result::ok);
  engine::event_stats mid;
  for (int i = 0; i < 500; ++i) {  // events are written after the replies
    mid = f.e().events_stats();
    if (mid.end_offset >= before.end_offset + requests) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_GE(mid.end_offset, before.end_offset + requests) << "each transfer's event is readable";
  EXPECT_LE(mid.syncs - before.syncs, uint64_t(ms) / engine::events_sync_interval_ms + 2)
      << "synced " << mid.syncs - before.syncs << " times in " << ms << " ms for " << requests << " appends";
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;  // waits for the events it covers
  const auto after = f.e().events_stats();
  EXPECT_GE(after.lsn, mid.lsn);
  EXPECT_GT(after.syncs, before.syncs);
  f.close();
  const auto all = all_events(f.dir());
  ASSERT_EQ(all.size(), mid.end_offset - 1);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, i + 1);
}

// An event writer that fails (its sync refused) ends each subscription once the
// subscriber has every event written before, with events_failed: before, subscribers
// just stopped hearing while the engine went on committing.
TEST(EventsEngine, AFailedWriterEndsSubscriptionsWithEventsFailed) {
  std::mutex mu;  // (before the engine: its hub may send until it stops)
  uint64_t last_offset = 0;
  std::vector<wire::error_msg> errors;
  std::vector<wire::subscribed_msg> answers;
  engine_fixture f(2);
  create_accounts(f.e(), 8);
  engine::event_hub* hub = f.e().events();
  ASSERT_NE(hub, nullptr);
  hub->start(
      [&](uint64_t, engine::event_hub::frame_ptr fr) {
        const auto h = wire::decode_header(fr->data());
        const std::span<const uint8_t> body(fr->data() + wire::frame_header_bytes, h.body_bytes);
        std::lock_guard lk(mu);
        if (h.kind == uint16_t(wire::frame_kind::error)) {
          wire::error_msg e;
          std::string why;
          EXPECT_TRUE(wire::parse_error(body, &e, &why)) << why;
          errors.push_back(e);
        } else if (h.kind == uint16_t(wire::frame_kind::events)) {
          wire::events_msg m;
          std::string why;
          EXPECT_TRUE(wire::parse_events(body, &m, &why)) << why;
          if (!m.events.empty()) last_offset = m.events.back().offset;
        } else if (h.kind == uint16_t(wire::frame_kind::subscribed)) {
          wire::subscribed_msg a;
          std::string why;
          EXPECT_TRUE(wire::parse_subscribed(body, &a, &why)) << why;
          answers.push_back(a);
        }
        return true;
      },
      64u << 20);
  for (int i = 0; i < 500 && f.e().events_stats().end_offset < 9; ++i)  // the accounts' 8 events readable
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_GE(f.e().events_stats().end_offset, 9u);
  engine::subscription_request r;
  ASSERT_TRUE(hub->subscribe(1, 1, std::move(r)));
  storage::failure_probes::instance().event_sync_errno = EIO;
  ASSERT_EQ(f.e().create_transfers({make_transfer(100, 1, 5, 1)}).results.at(0), result::ok);
  const auto wait_for = [&](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      {
        std::lock_guard lk(mu);
        if (done() || std::chrono::steady_clock::now() > deadline) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  };
  // Sent everything written before the failure (the end is final once the writer failed:
  // read again after a while); not told while its last acks may come.
  wait_for([&] { return last_offset + 1 >= f.e().events_stats().end_offset; });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const uint64_t end = f.e().events_stats().end_offset;
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(last_offset + 1, end) << "every event written before came first";
    EXPECT_TRUE(errors.empty()) << "ended before its acks could come";
  }
  EXPECT_EQ(hub->ack(1, 2, last_offset), "") << "the last ack is taken";
  wait_for([&] { return !errors.empty(); });
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(errors.size(), 1u) << "told once, then the subscription ends";
    EXPECT_EQ(errors[0].code, wire::protocol_error::events_failed);
    EXPECT_NE(errors[0].message.find("event writer failed"), std::string::npos) << errors[0].message;
  }
  // A new subscription at the end is refused: nothing more will come.
  engine::subscription_request again;
  again.from_end = true;
  ASSERT_TRUE(hub->subscribe(2, 1, std::move(again)));
  wait_for([&] { return answers.size() == 2; });
  std::lock_guard lk(mu);
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0].code, result::ok);
  EXPECT_EQ(answers[1].code, result::events_try_again) << answers[1].message;
}

// A Subscribe under a new name whose save fails after the state file took it (the rename
// done, the directory's sync refused) is refused, and the file does not keep the name:
// the hub writes it again without it. Before, the name stayed in the file, owned, and came
// back at the next start though the engine had refused it.
TEST(EventsEngine, ANameRefusedAfterTheFileTookItLeavesTheFileAgain) {
  std::mutex mu;
  std::vector<wire::subscribed_msg> answers;
  engine_fixture f(2);
  engine::event_hub* hub = f.e().events();
  ASSERT_NE(hub, nullptr);
  hub->start(
      [&](uint64_t, engine::event_hub::frame_ptr fr) {
        const auto h = wire::decode_header(fr->data());
        const std::span<const uint8_t> body(fr->data() + wire::frame_header_bytes, h.body_bytes);
        if (h.kind != uint16_t(wire::frame_kind::subscribed)) return true;
        wire::subscribed_msg a;
        std::string why;
        EXPECT_TRUE(wire::parse_subscribed(body, &a, &why)) << why;
        std::lock_guard lk(mu);
        answers.push_back(a);
        return true;
      },
      64u << 20);
  const std::string state = f.dir() + "/events/subscribers.state";
  const auto file_has = [&](const std::string& name) {
    std::ifstream in(state);
    std::string line;
    while (std::getline(in, line))
      if (line.rfind(name + " ", 0) == 0) return true;
    return false;
  };
  const auto answered = [&](size_t n) {
    for (int i = 0; i < 1000; ++i) {
      {
        std::lock_guard lk(mu);
        if (answers.size() >= n) return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  // The probe fails the next directory sync, whoever's: the engine's own threads (a log
  // segment's pre-zeroing, say) may take it first, and the name is then taken. Each try
  // asks under a new name until one is refused.
  std::string refused;
  size_t asked = 0;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // (the start's own syncs done, mostly)
  for (int k = 0; k < 20 && refused.empty(); ++k) {
    engine::subscription_request r;
    r.name = "relay-" + std::to_string(k);
    r.owner = "gw-a";
    storage::failure_probes::instance().dir_sync_failures = 1;  // the save's, after its rename
    ASSERT_TRUE(hub->subscribe(uint64_t(k + 1), 1, std::move(r)));
    ASSERT_TRUE(answered(++asked));
    storage::failure_probes::instance().dir_sync_failures = 0;
    std::lock_guard lk(mu);
    if (answers.back().code == result::events_try_again) refused = "relay-" + std::to_string(k);
    else EXPECT_EQ(answers.back().code, result::ok) << answers.back().message;
  }
  ASSERT_FALSE(refused.empty()) << "no save failed in twenty tries";
  bool gone = false;
  for (int i = 0; i < 200 && !(gone = !file_has(refused)); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_TRUE(gone) << "the refused name stays in " << state;
  // The name is free: asked again, it is taken (and kept).
  engine::subscription_request again;
  again.name = refused;
  again.owner = "gw-a";
  ASSERT_TRUE(hub->subscribe(100, 1, std::move(again)));
  ASSERT_TRUE(answered(asked + 1));
  std::lock_guard lk(mu);
  EXPECT_EQ(answers.back().code, result::ok) << answers.back().message;
  EXPECT_TRUE(file_has(refused));
}

// Acks of a session without a subscription (its Subscribe refused, or never sent) are
// refused at once and take no place in the hub's queue, which every session shares:
// before, each waited there for the hub to refuse it, and sessions whose subscriptions
// had been refused could fill the queue and get other sessions' acks refused.
TEST(EventsEngine, AcksWithoutASubscriptionTakeNoPlaceInTheHubsQueue) {
  std::mutex mu;  // (before the engine: its hub may send until it stops)
  std::map<uint64_t, wire::subscribed_msg> answers;  // by session
  engine_fixture f(2);
  create_accounts(f.e(), 8);
  engine::event_hub* hub = f.e().events();
  ASSERT_NE(hub, nullptr);
  hub->start(
      [&](uint64_t session, engine::event_hub::frame_ptr fr) {
        const auto h = wire::decode_header(fr->data());
        if (h.kind == uint16_t(wire::frame_kind::subscribed)) {
          wire::subscribed_msg a;
          std::string why;
          EXPECT_TRUE(wire::parse_subscribed(std::span<const uint8_t>(fr->data() + wire::frame_header_bytes, h.body_bytes), &a, &why))
              << why;
          std::lock_guard lk(mu);
          answers[session] = a;
        }
        return true;
      },
      64u << 20);
  engine::subscription_request bad;
  bad.window = engine::subscription_window_max + 1;  // refused
  ASSERT_TRUE(hub->subscribe(1, 1, std::move(bad)));
  ASSERT_TRUE(hub->subscribe(2, 1, engine::subscription_request{}));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    {
      std::lock_guard lk(mu);
      if (answers.size() == 2 || std::chrono::steady_clock::now() > deadline) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  {
    std::lock_guard lk(mu);
    ASSERT_EQ(answers.size(), 2u);
    EXPECT_EQ(answers[1].code, result::events_filter_invalid);
    EXPECT_EQ(answers[2].code, result::ok);
  }
  storage::failure_probes::instance().hub_stall_ms = 1000;  // the hub's next pass waits: acks queue
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  for (int i = 0; i < 2 * int(engine::acks_queued_max); ++i) {
    const std::string refused = hub->ack(1, 10 + i, 1);
    ASSERT_EQ(refused, "ack: this session has no subscription") << i;
  }
  EXPECT_EQ(hub->ack(3, 1, 1), "ack: this session has no subscription") << "a session that never subscribed";
  EXPECT_EQ(hub->ack(2, 2, 0), "") << "the subscribed session's ack is queued";
}

// Subscribers behind what the event log keeps in memory are served from its files by the
// hub's one thread. Each could read 65,536 events a pass from the disk, so every pass, and
// every subscriber near the end waiting for it, took as long as all of them together. Now
// a pass reads at most hub_file_events_per_pass from the files, and those catching up
// take turns at it.
TEST(EventsEngine, SubscribersCatchingUpFromTheFilesTakeTurnsWithinABoundedRead) {
  std::atomic<uint64_t> frames{0};  // (before the engine: its hub may send until it stops)
  temp_dir dir;
  auto cfg = test_config(dir.path());
  cfg.events_segment_events = 1024;
  cfg.events_ring_events = 1024;  // all but the newest 1,024 events are read from the files
  cfg.events_windows_mib = 4096;  // five windows of 2^20 events (305 MiB each), one owner's
  auto e = open_engine(cfg);
  ASSERT_TRUE(e);
  create_accounts(*e, 8);
  constexpr uint64_t transfers = 200'000;
  for (uint64_t first = 0; first < transfers; first += engine::batch_ops_max) {
    std::vector<wire::transfer> batch;
    for (uint64_t i = first; i < std::min<uint64_t>(transfers, first + engine::batch_ops_max); ++i)
      batch.push_back(make_transfer(1000 + i, 1 + i % 4, 5 + i % 4, 1));
    for (auto r : e->create_transfers(batch).results) ASSERT_EQ(r, result::ok);
  }
  const uint64_t end = 8 + transfers + 1;
  for (int i = 0; i < 1000 && e->events_stats().end_offset < end; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(e->events_stats().end_offset, end);
  engine::event_hub* hub = e->events();
  ASSERT_NE(hub, nullptr);
  hub->start([&](uint64_t, engine::event_hub::frame_ptr) { return frames.fetch_add(1), true; }, 1ull << 30);
  // Four filtered subscribers matching nothing (each of their frames scans 16,384 offsets)
  // and one unfiltered, all from the first event, with windows that need no ack.
  constexpr uint64_t subscribers = 5;
  for (uint64_t session = 1; session <= subscribers; ++session) {
    engine::subscription_request r;
    r.from = 1;
    r.window = engine::subscription_window_max;
    if (session < subscribers) r.accounts = {999'999};
    ASSERT_TRUE(hub->subscribe(session, 1, std::move(r)));
  }
  // When the first of them has been sent everything, the others are well on their way.
  uint64_t others_min = 0;
  std::map<uint64_t, uint64_t> sent;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    sent.clear();
    for (const auto& s : hub->subscribers()) sent[s.session] = s.sent;
    if (sent.size() == subscribers) {
      const auto done = std::find_if(sent.begin(), sent.end(), [&](const auto& kv) { return kv.second == end - 1; });
      if (done != sent.end() && others_min == 0) {
        others_min = UINT64_MAX;
        for (const auto& [session, through] : sent)
          if (session != done->first) others_min = std::min(others_min, through);
      }
      if (std::all_of(sent.begin(), sent.end(), [&](const auto& kv) { return kv.second == end - 1; })) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ASSERT_EQ(sent.size(), subscribers);
  for (const auto& [session, through] : sent) EXPECT_EQ(through, end - 1) << "session " << session;
  EXPECT_GT(others_min, end / 4) << "the first to finish had the files to itself";
  EXPECT_LE(hub->file_events_pass_max(), engine::hub_file_events_per_pass);
  EXPECT_GE(hub->file_events_read(), subscribers * (end - 1 - cfg.events_ring_events));
  std::printf("%llu frames; %llu events read from the files, at most %llu in a pass; the others through %llu of %llu "
              "when the first was done\n",
              static_cast<unsigned long long>(frames.load()), static_cast<unsigned long long>(hub->file_events_read()),
              static_cast<unsigned long long>(hub->file_events_pass_max()),
              static_cast<unsigned long long>(others_min), static_cast<unsigned long long>(end - 1));
}

// An engine with accounts 1..n opened and their n events written, behind a server on
// loopback whose one gateway reads events; the hub's damage probe is disarmed when it
// goes, so no later test meets it whatever this one did.
struct damage_rig {
  temp_dir dir;
  std::unique_ptr<engine::engine> e;
  std::unique_ptr<engine::server> srv;
  ~damage_rig() { storage::failure_probes::instance().hub_damage_frames = 0; }
  void start(uint64_t accounts, const std::string& gateway, const std::vector<uint8_t>& secret) {
    e = open_engine(test_config(dir.path()));
    ASSERT_TRUE(e);
    create_accounts(*e, accounts);
    for (int i = 0; i < 500 && e->events_stats().end_offset < accounts + 1; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_EQ(e->events_stats().end_offset, accounts + 1) << "the frame's last event is the damaged one";
    engine::server_config scfg;
    scfg.port = 0;
    scfg.gateways = {{gateway, secret, wire::roles::events_reader}};
    std::string err;
    srv = engine::server::start(*e, scfg, &err);
    ASSERT_TRUE(srv) << err;
  }
};

// An event changed on its way from the event log to a subscriber (a probe changes the
// hub's copy of a frame's last event, its CRC not) is refused by the client, naming it,
// and a subscription again gets it whole: packed frames and not, through a real server.
TEST(EventsEngine, AClientRefusesAnEventDamagedOnItsWayAndGetsItWholeAgain) {
  const std::vector<uint8_t> secret(32, 0x3c);
  damage_rig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start(8, "reader", secret));  // one frame: the damaged event is its last, 8
  auto& srv = rig.srv;
  std::string err;
  wire::client::options co;
  co.port = srv->port();
  co.gateway = "reader";
  co.secret = secret;
  auto subscribed = [&](bool packed) {
    auto c = wire::client::connect(co, &err);
    EXPECT_TRUE(c) << err;
    if (!c) return c;
    wire::subscribe_msg m;
    m.from = 1;
    m.packed = packed;
    wire::subscribed_msg a;
    EXPECT_TRUE(c->subscribe(m, &a, &err) && a.code == result::ok) << err << a.message;
    return c;
  };
  for (const bool packed : {true, false}) {
    SCOPED_TRACE(packed ? "packed" : "unpacked");
    storage::failure_probes::instance().hub_damage_frames = 1;
    {
      auto c = subscribed(packed);
      ASSERT_TRUE(c);
      wire::events_msg m;
      EXPECT_FALSE(c->next_events(&m, &err));
      EXPECT_NE(err.find("event 8 fails its CRC"), std::string::npos) << err;
      EXPECT_EQ(m.damaged, 8u);
      EXPECT_TRUE(m.events.empty());
    }
    EXPECT_EQ(storage::failure_probes::instance().hub_damage_frames.load(), 0) << "the probe was met";
    auto c = subscribed(packed);
    ASSERT_TRUE(c);
    std::vector<wire::event> got;
    for (int i = 0; i < 50 && got.size() < 8; ++i) {
      wire::events_msg m;
      ASSERT_TRUE(c->next_events(&m, &err)) << err;
      got.insert(got.end(), m.events.begin(), m.events.end());
    }
    ASSERT_GE(got.size(), 8u);
    for (size_t k = 0; k < 8; ++k) {
      EXPECT_EQ(got[k].offset, k + 1);
      EXPECT_EQ(got[k].type, wire::event_type::account_opened);
      EXPECT_EQ(got[k].crc, wire::event_crc(got[k]));
    }
  }
  srv->stop();
}

// A checkpoint does not wait for the writer's own sync: it asks for one, at once.
TEST(EventsEngine, ACheckpointMakesTheEventsItCoversDurableAtOnce) {
  engine_fixture f(2);
  create_accounts(f.e(), 4);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;
  // Until a checkpoint follows an append by well under the writer's interval (a slow
  // host may take longer between them; it is tried again).
  for (int attempt = 0; attempt < 20; ++attempt) {
    const auto before = f.e().events_stats();
    ASSERT_EQ(f.e().create_transfers({make_transfer(500 + attempt, 1, 2, 1)}).results.at(0), result::ok);
    const auto t0 = std::chrono::steady_clock::now();
    while (f.e().events_stats().end_offset == before.end_offset &&
           std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5))
      std::this_thread::yield();
    ASSERT_TRUE(f.e().checkpoint(&err)) << err;
    const auto after = f.e().events_stats();
    const auto took = std::chrono::steady_clock::now() - t0;
    if (took >= std::chrono::milliseconds(engine::events_sync_interval_ms) * 3 / 4) continue;
    EXPECT_EQ(after.syncs, before.syncs + 1) << "the checkpoint's sync";
    EXPECT_GT(after.lsn, before.lsn);
    return;
  }
  FAIL() << "no checkpoint followed its append within 3/4 of the writer's interval in 20 tries";
}

// Recovery that cuts the newest batch's events (replay writes them again) must not
// count them durable before they are written: a checkpoint would then not wait for them.
TEST(EventsEngine, TheWriterCountsDurableOnlyWhatItWroteAfterRecovery) {
  test::temp_dir dir;
  storage::event_log_options o;
  o.dir = dir.path() + "/events";
  storage::event_log_recovery rec;
  std::string err;
  auto log = storage::event_log::open(o, &rec, &err);
  ASSERT_TRUE(log) << err;
  engine::event_writer w(*log, /*kept_lsn=*/10, [](uint64_t) { return wire::id128{}; }, 1000);
  w.recovered(/*kept=*/9, /*snapshot=*/5);  // the events of record 10 were cut
  std::this_thread::sleep_for(std::chrono::milliseconds(3 * engine::events_sync_interval_ms / 2));
  EXPECT_EQ(w.counters().lsn, 9u);
  w.stop();
  EXPECT_EQ(w.counters().lsn, 9u);
}

// A start with another shard count is refused while the log holds any record past the
// snapshot, after a crash and after a clean stop alike: replayed under the new count, a
// timer the old count had not fired yet could fire at a record whose events readers
// have (its decision missing from the stream, or put among offsets they acknowledged).
// Before, a clean stop let it start unless the event log held timers' decisions past
// the snapshot. A run with the old count that snapshots at its stop lets the new one in.
TEST(EventsEngine, AnotherShardCountWaitsForARunWithTheOldOne) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  create_accounts(f.e(), 4);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;
  ASSERT_EQ(f.e().create_transfers({make_transfer(700, 1, 2, 5)}).results.at(0), result::ok);
  f.close();  // clean, without a final snapshot: the transfer is past it
  auto cfg = f.config();
  cfg.shards = 3;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  EXPECT_NE(err.find("the records past the snapshot were logged by 2 shards"), std::string::npos) << err;
  EXPECT_NE(err.find("start once with --shards 2"), std::string::npos) << err;
  EXPECT_FALSE(engine::engine::open(cfg, &err)) << "refused again: a refused start changes nothing";
  cfg.shards = 2;
  {
    auto two = engine::engine::open(cfg, &err);
    ASSERT_TRUE(two) << err;
    ASSERT_EQ(two->create_transfers({make_transfer(701, 2, 3, 5)}).results.at(0), result::ok);
    two->close();  // still no snapshot at the stop
  }
  cfg.shards = 3;
  EXPECT_FALSE(engine::engine::open(cfg, &err));
  cfg.shards = 2;
  cfg.checkpoint_on_close = true;  // as mesobd stops
  {
    auto two = engine::engine::open(cfg, &err);
    ASSERT_TRUE(two) << err;
    two->close();
  }
  cfg.shards = 3;
  auto three = engine::engine::open(cfg, &err);
  ASSERT_TRUE(three) << err;
  const auto found = three->lookup_transfers({{700, 0}, {701, 0}});
  EXPECT_EQ(found.results, (std::vector<result>{result::ok, result::ok}));
  three->close();
}

// A run without the event log leaves records the stream never saw: the next run with it
// says so and refuses, rather than serve a stream with changes missing.
TEST(EventsEngine, AGapLeftByARunWithoutEventsIsRefused) {
  engine_fixture f(2);
  create_accounts(f.e(), 2);
  std::string err;
  ASSERT_TRUE(f.e().checkpoint(&err)) << err;
  f.close();
  auto cfg = f.config();
  cfg.events = false;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->create_transfers({make_transfer(10, 1, 2, 5)}).results.at(0), result::ok);
    EXPECT_EQ(e->events(), nullptr);
    e->close();  // its final snapshot covers the transfer
  }
  cfg.events = true;
  auto e = engine::engine::open(cfg, &err);
  EXPECT_FALSE(e);
  EXPECT_NE(err.find("--no-events"), std::string::npos) << err;
}

// The same before the event log's first checkpoint (no events/covered yet): a run with
// events and no snapshot, then one without that snapshots. Before, the next run with
// events started, never wrote the events of the records between, and gave their offsets
// to later events.
TEST(EventsEngine, AGapLeftBeforeTheFirstCheckpointWithEventsIsRefused) {
  engine_fixture f(2, /*checkpoint_on_close=*/false);
  create_accounts(f.e(), 2);
  ASSERT_EQ(f.e().create_transfers({make_transfer(9, 1, 2, 5)}).results.at(0), result::ok);
  f.close();
  auto cfg = f.config();
  ASSERT_FALSE(std::filesystem::exists(cfg.data_dir + "/events/covered"));
  cfg.events = false;
  std::string err;
  {
    auto e = open_engine(cfg);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->create_transfers({make_transfer(10, 1, 2, 5)}).results.at(0), result::ok);
    ASSERT_TRUE(e->checkpoint(&err)) << err;
    e->close();
  }
  cfg.events = true;
  auto e = engine::engine::open(cfg, &err);
  EXPECT_FALSE(e);
  EXPECT_NE(err.find("--no-events"), std::string::npos) << err;
  // With the events moved away, a new stream begins after the snapshot.
  std::filesystem::rename(cfg.data_dir + "/events", cfg.data_dir + "/events.old");
  e = engine::engine::open(cfg, &err);
  ASSERT_TRUE(e) << err;
  e->close();
}

// The relay as a process, writing --raw lines (`raw` false: its messages) to a file (and,
// if named, its standard error to another; `out` closed_pipe: a pipe whose reader is
// gone; stalled_pipe: one whose reader never reads). `extra` replaces the subscriber
// name ("--name relay").
const std::string closed_pipe = "(a pipe whose reader is gone)";
const std::string stalled_pipe = "(a pipe whose reader never reads)";
class relay_process {
 public:
  relay_process(const std::string& data, uint16_t port, const std::string& out,
                std::vector<std::string> extra = {"--name", "relay"}, const std::string& err_out = {},
                const std::string& secret_file = {}, bool raw = true) {
    std::vector<std::string> args = {"--port", std::to_string(port), "--gateway", "dev", "--secret-file",
                                     secret_file.empty() ? data + "/dev-gateway.secret" : secret_file};
    if (raw) args.push_back("--raw");
    args.insert(args.end(), extra.begin(), extra.end());
    const command_line cmd(bin("tools/mesob-relay"), args, {});
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = -1;
      if (out == closed_pipe || out == stalled_pipe) {
        int ends[2];
        if (::pipe(ends) != 0) ::_exit(99);
        if (out == closed_pipe) ::close(ends[0]);  // (stalled: the relay itself holds it, unread)
        fd = ends[1];
      } else {
        fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      }
      ::dup2(fd, 1);
      if (!err_out.empty()) {
        const int efd = ::open(err_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        ::dup2(efd, 2);
      }
      cmd.exec();
    }
  }
  ~relay_process() { kill9(); }
  void term() {
    if (pid_ > 0) ::kill(pid_, SIGTERM);
  }
  // Its exit status once it stopped by itself (-1: still running after `ms`).
  int exit_status(int ms) {
    for (int waited = 0; pid_ > 0 && waited < ms; waited += 10) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  void kill9() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
};

struct raw_event {
  uint64_t offset = 0, type = 0, lsn = 0, id_lo = 0, id_hi = 0, a = 0, b = 0, amount = 0;
  std::string line;
};

// Whole lines only: a relay killed mid-write may leave half a line.
std::vector<raw_event> read_raw(const std::string& path) {
  std::ifstream in(path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<raw_event> out;
  size_t at = 0;
  for (size_t nl = text.find('\n'); nl != std::string::npos; at = nl + 1, nl = text.find('\n', at)) {
    raw_event e;
    e.line = text.substr(at, nl - at);
    std::istringstream ls(e.line);
    ls >> e.offset >> e.type >> e.lsn >> e.id_lo >> e.id_hi >> e.a >> e.b >> e.amount;
    out.push_back(e);
  }
  return out;
}

// A relay whose output cannot take the events (a full disk: /dev/full) acknowledges none
// of them and stops (exit 3); the next one under its name gets every event from the
// first. Before, it acknowledged what it failed to write, and those events were lost.
TEST(Events, ARelayThatCannotWriteAcknowledgesNothing) {
  temp_dir dir;
  const uint16_t port = free_port();
  live_mesobd engine(dir.path(), {"--port", std::to_string(port)});
  ASSERT_TRUE(engine.up()) << engine.output();
  {
    auto c = connect(dir.path(), port);
    ASSERT_TRUE(c->call(wire::create_accounts_body(std::vector{make_account(1), make_account(2)})).ok);
    std::vector<wire::transfer> ts;
    for (uint64_t i = 0; i < 50; ++i) ts.push_back(make_transfer(100 + i, 1, 2, 1 + i));
    ASSERT_TRUE(c->call(wire::create_transfers_body(ts)).ok);
  }
  relay_process full(dir.path(), port, "/dev/full");
  EXPECT_EQ(full.exit_status(10'000), 3);
  const std::string out = dir.path() + "/relay.txt";
  relay_process next(dir.path(), port, out);
  std::vector<raw_event> got;
  for (int i = 0; i < 500 && got.size() < 52; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    got = read_raw(out);
  }
  ASSERT_GE(got.size(), 52u) << "two accounts opened and 50 transfers";
  EXPECT_EQ(got.front().offset, 1u) << "nothing was acknowledged";
}

TEST(Events, ExactlyOnceAfterDedupAcrossKillOfEngineAndRelay) {
  const uint64_t seed = test_seed("events crash");
  temp_dir dir;
  const uint16_t port = free_port();
  const std::vector<std::string> args = {"--port", std::to_string(port)};
  auto engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  constexpr uint64_t accounts = 64;
  {
    auto c = connect(dir.path(), port);
    std::vector<wire::account> as;
    for (uint64_t i = 1; i <= accounts; ++i) as.push_back(make_account(i));
    ASSERT_TRUE(c->call(wire::create_accounts_body(as)).ok);
  }
  // Load: batches of transfers between random accounts; the acknowledged ids are kept.
  std::atomic<bool> load_stop{false};
  std::mutex acked_mu;
  std::set<uint64_t> acked;
  std::atomic<uint64_t> next_id{1000};
  auto load = [&] {
    std::mt19937_64 rng(seed);
    std::unique_ptr<wire::client> c;
    while (!load_stop.load()) {
      if (!c) {
        std::string err;
        auto o = dev_gateway_options(dir.path(), port);
        o.timeout_ms = 2000;
        c = wire::client::connect(o, &err);
        if (!c) {
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
          continue;
        }
      }
      std::vector<wire::transfer> ts;
      for (int i = 0; i < 200; ++i) {
        const uint64_t dr = 1 + rng() % accounts, cr = 1 + (dr + rng() % (accounts - 1)) % accounts;
        ts.push_back(make_transfer(next_id.fetch_add(1), dr, cr, 1 + rng() % 1000));
      }
      auto r = c->call(wire::create_transfers_body(ts));
      if (!r.ok) {
        c.reset();  // the engine went away: these may or may not have committed
        continue;
      }
      std::lock_guard lk(acked_mu);
      for (size_t i = 0; i < ts.size(); ++i)
        if (r.reply.results.at(i) == result::ok) acked.insert(ts[i].id.lo);
    }
  };
  const std::string out1 = dir.path() + "/relay1.txt", out2 = dir.path() + "/relay2.txt";
  auto relay = std::make_unique<relay_process>(dir.path(), port, out1);
  std::thread loader(load);
  // Each kill comes once the relay it would cut short has printed (however slowly the
  // relay started), with the load still running.
  const auto printing = [&](const std::string& out) {
    for (int i = 0; i < 1000 && read_raw(out).empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return !read_raw(out).empty();
  };
  EXPECT_TRUE(printing(out1));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  relay->kill9();  // the relay dies mid-stream
  relay = std::make_unique<relay_process>(dir.path(), port, out2);
  EXPECT_TRUE(printing(out2));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  ASSERT_NE(engine->crash(), -1);  // the engine dies under load
  engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  load_stop.store(true);
  loader.join();

  // Wait until the relay has printed up to the stream's end, once the event log has
  // caught up with the replies (events are written after them): the end stays put.
  auto stream_end = [&] {
    auto probe = connect(dir.path(), port);
    wire::subscribe_msg m;
    m.from_end = true;
    return subscribe(*probe, m).end;
  };
  uint64_t end = stream_end();
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const uint64_t again = stream_end();
    if (again == end) break;
    end = again;
  }
  ASSERT_GT(end, 1u);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    const auto last = read_raw(out2);
    if (!last.empty() && last.back().offset >= end - 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  relay->kill9();
  // Events are written after the replies: those of the last batches may have been
  // written (and reached the relay) after the first probe. Nothing past this end exists.
  const uint64_t end_after = stream_end();

  // One relay run prints each event once, across the engine's crash: what it printed and
  // could not acknowledge is delivered again, and dropped by offset.
  {
    std::set<uint64_t> seen;
    for (const auto& e : read_raw(out2)) EXPECT_TRUE(seen.insert(e.offset).second) << "offset " << e.offset << " printed twice";
  }
  // Dedup by offset: an offset seen twice must be the same event.
  std::map<uint64_t, std::string> by_offset;
  size_t duplicates = 0;
  for (const auto* path : {&out1, &out2})
    for (const auto& e : read_raw(*path)) {
      auto [it, fresh] = by_offset.emplace(e.offset, e.line);
      if (!fresh) {
        ++duplicates;
        EXPECT_EQ(it->second, e.line) << "offset " << e.offset << " changed meaning";
      }
    }
  std::printf("events %zu (end %llu), redelivered %zu, acknowledged transfers %zu\n", by_offset.size(),
              static_cast<unsigned long long>(end), duplicates, acked.size());
  ASSERT_FALSE(by_offset.empty());
  EXPECT_EQ(by_offset.begin()->first, 1u);
  EXPECT_GE(by_offset.rbegin()->first, end - 1);
  EXPECT_LE(by_offset.rbegin()->first, end_after - 1) << "an event that is not in the log";
  EXPECT_EQ(by_offset.size(), by_offset.rbegin()->first) << "offsets have a gap";
  std::map<uint64_t, int> transfer_events;
  for (const auto& [off, line] : by_offset) {
    std::istringstream ls(line);
    raw_event e;
    ls >> e.offset >> e.type >> e.lsn >> e.id_lo;
    if (e.type == uint64_t(event_type::transfer_posted)) ++transfer_events[e.id_lo];
  }
  for (const uint64_t id : acked) EXPECT_EQ(transfer_events[id], 1) << "acknowledged transfer " << id;
  // Events of transfers whose answer the crash lost are of transfers the ledger holds.
  std::vector<wire::id128> unacked;
  for (const auto& [id, n] : transfer_events) {
    EXPECT_EQ(n, 1) << "transfer " << id;
    if (!acked.count(id)) unacked.push_back({id, 0});
  }
  std::printf("transfers committed but not acknowledged before the crash: %zu\n", unacked.size());
  if (!unacked.empty()) {
    auto c = connect(dir.path(), port);
    auto r = c->call(wire::lookup_transfers_body(unacked));
    ASSERT_TRUE(r.ok);
    for (size_t i = 0; i < unacked.size(); ++i) EXPECT_EQ(r.reply.results.at(i), result::ok) << unacked[i].lo;
  }
}

std::string read_file_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Transfers 1 -> 2 with ids from `first`, one batch.
void post_transfers(const std::string& data, uint16_t port, uint64_t first, uint64_t n) {
  auto c = connect(data, port);
  std::vector<wire::transfer> ts;
  for (uint64_t i = 0; i < n; ++i) ts.push_back(make_transfer(first + i, 1, 2, 1 + i));
  ASSERT_TRUE(c->call(wire::create_transfers_body(ts)).ok);
}

// A live engine on `args` with accounts 1..n opened (events 1..n); null if it did not
// come up (the failure is recorded).
std::unique_ptr<live_mesobd> engine_with_accounts(const std::string& data, const std::vector<std::string>& args,
                                                  uint64_t n) {
  auto engine = std::make_unique<live_mesobd>(data, args);
  if (!engine->up()) {
    ADD_FAILURE() << engine->output();
    return nullptr;
  }
  std::vector<wire::account> as;
  for (uint64_t id = 1; id <= n; ++id) as.push_back(make_account(id));
  auto c = connect(data, engine->port());
  EXPECT_TRUE(c->call(wire::create_accounts_body(as)).ok);
  return engine;
}

// A live engine (accounts 1 and 2) with a backlog of `batches` batches of 8,192
// transfers; *events: the events it holds (null engine if it did not come up).
std::unique_ptr<live_mesobd> engine_with_backlog(const std::string& data, uint16_t port, uint64_t batches,
                                                 uint64_t* events) {
  constexpr uint64_t per_batch = 8192;
  auto engine = engine_with_accounts(data, {"--port", std::to_string(port)}, 2);
  if (!engine) return nullptr;
  for (uint64_t k = 0; k < batches; ++k) {
    post_transfers(data, port, 1000 + k * per_batch, per_batch);
    if (::testing::Test::HasFatalFailure()) return nullptr;
  }
  *events = 2 + batches * per_batch;
  return engine;
}

// Waits until the relay's output holds `n` lines; returns them.
std::vector<raw_event> await_lines(const std::string& path, size_t n) {
  std::vector<raw_event> got;
  for (int i = 0; i < 1000 && got.size() < n; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    got = read_raw(path);
  }
  return got;
}

// A relay appending to its own file (--out) and killed (-9) while it prints, twice,
// started again each time on the same file (once after an incomplete line was left at its
// end, as a write cut short leaves): the file holds every event once, in order, none
// missing. Before, each start printed again what the last had printed and not
// acknowledged (the events_test above dedups across two files for that).
TEST(Events, ARelayOnItsOwnFileHoldsEachEventOnceAcrossItsKills) {
  temp_dir dir;
  const uint16_t port = free_port();
  uint64_t events = 0;
  auto engine = engine_with_backlog(dir.path(), port, 32, &events);
  ASSERT_TRUE(engine);
  const std::string out = dir.path() + "/relay.txt";
  const std::vector<std::string> args = {"--name", "filer", "--out", out};
  const auto size = [&] {
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(out, ec);
    return ec ? uintmax_t(0) : bytes;
  };
  for (int kill = 0; kill < 2; ++kill) {
    const uintmax_t before = size();
    relay_process r(dir.path(), port, "/dev/null", args);
    for (int i = 0; i < 20'000 && size() <= before; ++i) std::this_thread::sleep_for(std::chrono::microseconds(500));
    ASSERT_GT(size(), before) << "relay " << kill << " printed nothing";
    r.kill9();
    if (kill == 1) {
      std::ofstream f(out, std::ios::app);
      f << "12345 1 7";  // an incomplete line: cut by the next start
    }
  }
  relay_process last(dir.path(), port, "/dev/null", args);
  std::vector<raw_event> got;
  for (int i = 0; i < 3000 && (got.empty() || got.back().offset < events); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    got = read_raw(out);
  }
  last.kill9();
  got = read_raw(out);
  ASSERT_EQ(got.size(), events) << "each event once";
  for (uint64_t k = 0; k < got.size(); ++k) ASSERT_EQ(got[k].offset, k + 1) << "line " << k;
}

// A relay told to stop (SIGTERM) while it prints a frame acknowledges the events it
// printed and no more: the next relay under its name prints the rest, no offset missed.
// Before, the whole frame was acknowledged and the rest of it never printed. (The stop
// comes as soon as the first lines reach the file, within the first frames of a backlog
// of 4,096-event frames.)
TEST(Events, ARelayStoppedMidFrameAcknowledgesOnlyWhatItPrinted) {
  temp_dir dir;
  const uint16_t port = free_port();
  uint64_t events = 0;
  auto engine = engine_with_backlog(dir.path(), port, 96, &events);
  ASSERT_TRUE(engine);
  const std::string out1 = dir.path() + "/relay1.txt", out2 = dir.path() + "/relay2.txt";
  size_t printed_first = 0;
  {
    relay_process first(dir.path(), port, out1, {"--name", "stopper"});
    const auto empty = [&] {
      std::error_code ec;
      const auto bytes = std::filesystem::file_size(out1, ec);
      return ec || bytes == 0;
    };
    for (int i = 0; i < 20'000 && empty(); ++i)
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    first.term();
    printed_first = await_lines(out1, 1).size();
    EXPECT_EQ(first.exit_status(10'000), 0);
  }
  const auto got1 = read_raw(out1);
  ASSERT_GE(got1.size(), printed_first);
  ASSERT_GT(got1.size(), 0u);
  std::printf("the first relay printed %zu of %llu events before it stopped\n", got1.size(),
              static_cast<unsigned long long>(events));
  relay_process second(dir.path(), port, out2, {"--name", "stopper"});
  std::vector<raw_event> got2;
  for (int i = 0; i < 3000 && (got2.empty() || got2.back().offset < events); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    got2 = read_raw(out2);
  }
  second.kill9();
  std::set<uint64_t> seen;
  for (const auto& e : got1) seen.insert(e.offset);
  for (const auto& e : got2) seen.insert(e.offset);
  ASSERT_FALSE(got2.empty());
  EXPECT_EQ(got2.back().offset, events);
  uint64_t missing = 0, first_missing = 0;
  for (uint64_t off = 1; off <= events; ++off)
    if (!seen.count(off) && missing++ == 0) first_missing = off;
  EXPECT_EQ(missing, 0u) << "from offset " << first_missing << ": acknowledged by the stopped relay, never printed";
  EXPECT_LE(got2.front().offset, got1.back().offset + 1);
}

// With --account, a relay prints the lines of those accounts alone: a transfer from 1 to
// 2 tells account 1 it sent, not account 2 it received. Before, a relay run for one
// customer printed its counterparties' notifications too.
TEST(Events, ARelayForAnAccountPrintsThatAccountsLinesAlone) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port)}, 2);
  ASSERT_TRUE(engine);
  ASSERT_NO_FATAL_FAILURE(post_transfers(dir.path(), port, 500, 3));
  const std::string out = dir.path() + "/relay.txt";
  relay_process relay(dir.path(), port, out, {"--name", "one", "--account", "1"}, {}, {}, false);
  std::string text;
  for (int i = 0; i < 1000 && std::count(text.begin(), text.end(), '\n') < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = read_file_text(out);
  }
  relay.kill9();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 4) << text;  // opened, and three sent
  EXPECT_NE(text.find("account 1: opened"), std::string::npos) << text;
  EXPECT_NE(text.find("account 1: you sent 0.01 "), std::string::npos) << text;
  EXPECT_EQ(text.find("account 2:"), std::string::npos) << text;
}

// A frame refused for an event that fails its CRC (a probe changes the hub's copy of a
// frame's last event): the relay prints the blocks before it, asks again on a new
// connection, prints each event once and counts every one; the same event damaged on
// every connection stops it (exit 2, naming it). Before, it left the blocks before the
// damage out of its count and retried for ever.
uint64_t damaged_offset(const std::string& relay_log) {
  const std::string mark = "events: event ";
  const size_t at = relay_log.find(mark);
  EXPECT_NE(at, std::string::npos) << relay_log;
  if (at == std::string::npos) return 1;
  const uint64_t offset = std::stoull(relay_log.substr(at + mark.size()));
  EXPECT_EQ(relay_log.compare(relay_log.find(' ', at + mark.size()), 20, " fails its CRC (it c"), 0) << relay_log;
  return offset;
}

TEST(Events, ARelayAsksAgainForADamagedFrameAndStopsWhenTheDamageRepeats) {
  const std::string secret_hex(64, '5');
  std::vector<uint8_t> secret;
  ASSERT_TRUE(wire::from_hex(secret_hex, &secret));
  damage_rig rig;
  ASSERT_NO_FATAL_FAILURE(rig.start(300, "dev", secret));
  const temp_dir& dir = rig.dir;
  auto& srv = rig.srv;
  const std::string secret_file = dir.path() + "/relay.secret";
  std::ofstream(secret_file) << secret_hex << "\n";
  auto& probe = storage::failure_probes::instance().hub_damage_frames;
  {
    probe = 1;
    const std::string out = dir.path() + "/relay.txt", err_out = dir.path() + "/relay.err";
    relay_process relay(dir.path(), srv->port(), out, {"--name", "once"}, err_out, secret_file);
    ASSERT_GE(await_lines(out, 300).size(), 300u);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // anything printed twice would follow
    const auto all = read_raw(out);
    ASSERT_EQ(all.size(), 300u) << "each event once";
    for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, i + 1);
    EXPECT_EQ(probe.load(), 0) << "the probe was met";
    relay.term();
    EXPECT_EQ(relay.exit_status(10'000), 0);
    const std::string log = read_file_text(err_out);
    const uint64_t bad = damaged_offset(log);
    // The frame from offset 1 ends at the damaged event: the whole blocks before it were
    // printed, and come again after the reconnection.
    const uint64_t before = (bad - 1) / wire::packed_block_events * wire::packed_block_events;
    ASSERT_GT(before, 0u) << "a frame of more than one block: " << log;
    EXPECT_NE(log.find("reconnecting"), std::string::npos) << log;
    EXPECT_NE(log.find("stopped after 300 events (" + std::to_string(before) + " delivered again"), std::string::npos)
        << log;
  }
  {
    probe = 1'000;
    const std::string out = dir.path() + "/relay2.txt", err_out = dir.path() + "/relay2.err";
    relay_process relay(dir.path(), srv->port(), out, {"--name", "again"}, err_out, secret_file);
    EXPECT_EQ(relay.exit_status(30'000), 2);
    const std::string log = read_file_text(err_out);
    const uint64_t bad = damaged_offset(log);
    EXPECT_NE(log.find("event " + std::to_string(bad) + " came damaged on 3 connections in a row; stopping"),
              std::string::npos)
        << log;
    const auto all = read_raw(out);
    ASSERT_EQ(all.size(), (bad - 1) / wire::packed_block_events * wire::packed_block_events)
        << "the blocks before the damage, once";
    for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, i + 1);
    EXPECT_LE(probe.load(), 1'000 - 3) << "a damaged frame on each of three connections (and the frames sent after)";
  }
  srv->stop();
}

// An unnamed relay has no place kept by the server: after the engine restarts it asks
// for what follows the last event it printed, not for its first --from again. Before, it
// printed the whole stream a second time.
TEST(Events, AnUnnamedRelayResumesAfterWhatItPrinted) {
  temp_dir dir;
  const uint16_t port = free_port();
  const std::vector<std::string> args = {"--port", std::to_string(port)};
  auto engine = engine_with_accounts(dir.path(), args, 2);
  ASSERT_TRUE(engine);
  post_transfers(dir.path(), port, 100, 20);
  const std::string out = dir.path() + "/relay.txt", err = dir.path() + "/relay.err";
  relay_process relay(dir.path(), port, out, {"--from", "1"}, err);
  ASSERT_GE(await_lines(out, 22).size(), 22u) << "two accounts opened and 20 transfers";
  ASSERT_NE(engine->crash(), -1);
  engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  post_transfers(dir.path(), port, 200, 20);
  const auto got = await_lines(out, 42);
  ASSERT_GE(got.size(), 42u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // anything printed twice would follow
  const auto all = read_raw(out);
  ASSERT_EQ(all.size(), 42u) << "each event once";
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, i + 1);
  const std::string log = read_file_text(err);
  EXPECT_NE(log.find("subscribed from offset 23 "), std::string::npos) << "asked for what follows: " << log;
}

// Waits until the engine's one subscribed session acknowledged `offset` (its admin
// "events" table), failing the test after about 5 s.
void await_acknowledged(const std::string& data, live_mesobd& engine, const std::string& offset) {
  auto o = dev_gateway_options(data, engine.admin_port());
  std::string why;
  auto ops = wire::client::connect(o, &why);
  ASSERT_TRUE(ops) << why;
  std::string acked;
  for (int i = 0; i < 500 && acked != offset; ++i) {
    if (i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    acked = cell(admin(*ops, "events"), "subscribed sessions", "acknowledged");
  }
  ASSERT_EQ(acked, offset);
}

// A named relay ("r", --raw) on its own --out file, run until it printed n lines and
// the engine saved its acknowledgement of offset n, then stopped.
void named_relay_through(const std::string& data, uint16_t port, live_mesobd& engine, const std::string& out,
                         const std::string& err, size_t n) {
  relay_process relay(data, port, "/dev/null", {"--name", "r", "--out", out}, err);
  ASSERT_GE(await_lines(out, n).size(), n) << read_file_text(err);
  await_acknowledged(data, engine, std::to_string(n));
  relay.term();
  EXPECT_EQ(relay.exit_status(10'000), 0);
}

// A named --raw relay started on its own --out file past the file's last event (the
// engine had saved its acknowledgement) keeps that event to check, as it does the ones
// before it: served again later (the engine's saved position lost, here by putting an
// older subscribers.state back, as a kill -9 before a save does), it is known. Before,
// it was taken for a changed stream and it and every event after it were written again.
TEST(Events, ANamedRelayKnowsItsFilesLastEventServedAgain) {
  temp_dir dir;
  const uint16_t port = free_port();
  const std::vector<std::string> args = {"--port", std::to_string(port)};
  auto engine = engine_with_accounts(dir.path(), args, 2);  // offsets 1 and 2
  ASSERT_TRUE(engine);
  post_transfers(dir.path(), port, 100, 3);  // 3 to 5
  const std::string out = dir.path() + "/relay.txt", err = dir.path() + "/relay.err";
  const std::string state = dir.path() + "/events/subscribers.state";
  auto relay_through = [&](size_t n) { named_relay_through(dir.path(), port, *engine, out, err, n); };
  auto restart = [&] {
    ASSERT_EQ(engine->stop(), 0) << engine->output();  // the positions saved
    engine = std::make_unique<live_mesobd>(dir.path(), args);
    ASSERT_TRUE(engine->up()) << engine->output();
  };
  ASSERT_NO_FATAL_FAILURE(relay_through(5));
  ASSERT_NO_FATAL_FAILURE(restart());
  std::filesystem::copy_file(state, state + ".at5");
  post_transfers(dir.path(), port, 200, 5);  // 6 to 10
  ASSERT_NO_FATAL_FAILURE(relay_through(10));
  // Starts at 11, past the file's last event (10).
  relay_process relay(dir.path(), port, "/dev/null", {"--name", "r", "--out", out}, err);
  post_transfers(dir.path(), port, 300, 5);  // 11 to 15
  ASSERT_GE(await_lines(out, 15).size(), 15u);
  await_acknowledged(dir.path(), *engine, "15");
  ASSERT_EQ(engine->stop(), 0) << engine->output();
  std::filesystem::rename(state + ".at5", state);
  engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  post_transfers(dir.path(), port, 400, 5);  // 16 to 20; the relay is served from 6 again
  ASSERT_GE(await_lines(out, 20).size(), 20u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // anything printed twice would follow
  const auto all = read_raw(out);
  ASSERT_EQ(all.size(), 20u) << "each event once: " << read_file_text(err);
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, i + 1);
  EXPECT_EQ(read_file_text(err).find("the stream changed"), std::string::npos) << read_file_text(err);
}

// A named relay's --out file that holds a stream written again (a relay that found the
// stream changed wrote offsets 3 on once more) is read as the live relay keeps it: the
// latest line of each offset. Served the stream written last again, it prints nothing
// twice. Before, the file's first line of each offset was kept: the engine's events 3
// and 4 were taken for another stream, and written a third time.
TEST(Events, ANamedRelayReadsAStreamWrittenAgainInItsFileAsItsLatest) {
  temp_dir dir;
  const uint16_t port = free_port();
  const std::vector<std::string> args = {"--port", std::to_string(port)};
  auto engine = engine_with_accounts(dir.path(), args, 2);  // offsets 1 and 2
  ASSERT_TRUE(engine);
  const std::string out = dir.path() + "/relay.txt", err = dir.path() + "/relay.err";
  const std::string state = dir.path() + "/events/subscribers.state";
  auto relay_through = [&](size_t n) { named_relay_through(dir.path(), port, *engine, out, err, n); };
  ASSERT_NO_FATAL_FAILURE(relay_through(2));
  ASSERT_EQ(engine->stop(), 0) << engine->output();  // the position (2) saved
  std::filesystem::copy_file(state, state + ".at2");
  engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  post_transfers(dir.path(), port, 100, 2);  // 3 and 4
  ASSERT_NO_FATAL_FAILURE(relay_through(4));
  ASSERT_EQ(engine->stop(), 0) << engine->output();
  // The file as a relay leaves it that printed another stream's 3 to 5 first: 1, 2, 3*,
  // 4*, 5*, then the engine's 3 and 4.
  const auto real = read_raw(out);
  ASSERT_EQ(real.size(), 4u);
  auto other = [](const raw_event& e, uint64_t offset) {
    std::istringstream in(e.line);
    std::vector<std::string> f{std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()};
    f.at(0) = std::to_string(offset);
    f.at(3) = std::to_string(e.id_lo + 1'000'000);  // another event's id
    std::string line;
    for (const auto& w : f) line += (line.empty() ? "" : " ") + w;
    return line + "\n";
  };
  std::ofstream(out, std::ios::trunc) << real[0].line << "\n"
                                      << real[1].line << "\n"
                                      << other(real[2], 3) << other(real[3], 4) << other(real[3], 5)
                                      << real[2].line << "\n"
                                      << real[3].line << "\n";
  std::filesystem::rename(state + ".at2", state);  // the engine serves the relay from 3 again
  engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  relay_process relay(dir.path(), port, "/dev/null", {"--name", "r", "--out", out}, err);
  post_transfers(dir.path(), port, 200, 1);  // 5
  ASSERT_GE(await_lines(out, 8).size(), 8u) << read_file_text(err);
  await_acknowledged(dir.path(), *engine, "5");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // anything printed again would follow
  const auto all = read_raw(out);
  ASSERT_EQ(all.size(), 8u) << "events 3 and 4 not written again: " << read_file_text(err);
  EXPECT_EQ(all.back().offset, 5u);
  EXPECT_EQ(read_file_text(err).find("the stream changed"), std::string::npos) << read_file_text(err);
}

// An unnamed relay with a filter is served past the events it prints: after a restart it
// asks for what follows the last offset it was served, not the last it printed. Before,
// it read again everything after its last match.
TEST(Events, AFilteredUnnamedRelayResumesAfterWhatItWasServed) {
  temp_dir dir;
  const uint16_t port = free_port();
  const std::vector<std::string> args = {"--port", std::to_string(port)};
  auto engine = engine_with_accounts(dir.path(), args, 3);
  ASSERT_TRUE(engine);
  const std::string out = dir.path() + "/relay.txt", err = dir.path() + "/relay.err";
  relay_process relay(dir.path(), port, out, {"--from", "1", "--account", "3"}, err);
  ASSERT_GE(await_lines(out, 1).size(), 1u) << "account 3 opened";
  post_transfers(dir.path(), port, 100, 20);  // 1 -> 2, offsets 4..23: none for account 3
  // The relay acknowledges each frame it took: once it acknowledged 23, it was served
  // through the transfers (in a frame with no event for it).
  ASSERT_NO_FATAL_FAILURE(await_acknowledged(dir.path(), *engine, "23"));
  std::string log;
  ASSERT_NE(engine->crash(), -1);
  engine = std::make_unique<live_mesobd>(dir.path(), args);
  ASSERT_TRUE(engine->up()) << engine->output();
  for (int i = 0; i < 1000; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    log = read_file_text(err);
    if (log.find("subscribed from", log.find("subscribed from") + 1) != std::string::npos) break;
  }
  EXPECT_NE(log.find("subscribed from offset 24 "), std::string::npos) << log;
  EXPECT_EQ(read_raw(out).size(), 1u);
}

// A named, filtered relay on its own file (--out), started again, goes on after what it
// acknowledged without calling the frames past its last printed event "never
// delivered": with a filter, the file's last event tells only where its own events
// ended, so it says it cannot tell. Before, every restart printed that warning for the
// offsets between.
TEST(Events, AFilteredRelayOnItsOwnFileResumesWithoutAFalseGap) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port)}, 3);
  ASSERT_TRUE(engine);
  const std::string out = dir.path() + "/relay.txt", err = dir.path() + "/relay.err";
  const std::vector<std::string> args = {"--name", "filtered", "--account", "3", "--out", out};
  {
    relay_process first(dir.path(), port, "/dev/null", args, err);
    ASSERT_GE(await_lines(out, 1).size(), 1u) << "account 3 opened";
    post_transfers(dir.path(), port, 100, 20);  // 1 -> 2, offsets 4..23: none for account 3
    ASSERT_NO_FATAL_FAILURE(await_acknowledged(dir.path(), *engine, "23"));
    first.term();
    EXPECT_EQ(first.exit_status(10'000), 0);
  }
  relay_process again(dir.path(), port, "/dev/null", args, err);
  std::string log;
  for (int i = 0; i < 1000 && log.find("subscribed from") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    log = read_file_text(err);
  }
  EXPECT_NE(log.find("subscribed from offset 24 "), std::string::npos) << log;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  log = read_file_text(err);
  EXPECT_EQ(log.find("were never delivered to this relay"), std::string::npos) << log;
  EXPECT_NE(log.find("offsets 4 to 23 held none of this relay's events"), std::string::npos) << log;
  post_transfers(dir.path(), port, 200, 1);  // 1 -> 2: not printed
  EXPECT_EQ(read_raw(out).size(), 1u);
}

// A relay on a quiet stream pings, and the server's idle timeout does not close its
// session; a session that sends nothing is told why it is closed (idle_timeout).
TEST(Events, AQuietRelayKeepsItsSessionAndAnIdleOneIsTold) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port), "--idle-timeout-ms", "2000"}, 2);
  ASSERT_TRUE(engine);
  const std::string out = dir.path() + "/relay.txt", err = dir.path() + "/relay.err";
  relay_process relay(dir.path(), port, out, {"--name", "quiet", "--keepalive-s", "1"}, err);
  ASSERT_GE(await_lines(out, 2).size(), 2u);
  // A subscriber that never pings, on the same quiet stream.
  auto silent = connect(dir.path(), port);
  wire::subscribe_msg m;
  m.from_end = true;
  ASSERT_EQ(subscribe(*silent, m).code, result::ok);
  std::this_thread::sleep_for(std::chrono::milliseconds(3300));  // one idle timeout and the timer's tick
  wire::events_msg ev;
  std::string why;
  wire::protocol_error refusal{};
  silent->set_timeout_ms(3000);
  EXPECT_FALSE(silent->next_events(&ev, &why, &refusal));
  EXPECT_EQ(refusal, wire::protocol_error::idle_timeout) << why;
  EXPECT_TRUE(silent->closed_by_server());
  post_transfers(dir.path(), port, 100, 1);
  ASSERT_GE(await_lines(out, 3).size(), 3u) << "the quiet relay still gets events";
  const std::string log = read_file_text(err);
  EXPECT_EQ(log.find("reconnecting"), std::string::npos) << log;
  EXPECT_EQ(log.find("subscribed from"), log.rfind("subscribed from")) << "subscribed once: " << log;
}

// A relay the server will never accept (a wrong secret) says so and stops (exit 2)
// instead of retrying for good.
TEST(Events, ARelayRefusedForGoodStops) {
  temp_dir dir;
  const uint16_t port = free_port();
  live_mesobd engine(dir.path(), {"--port", std::to_string(port)});
  ASSERT_TRUE(engine.up()) << engine.output();
  const std::string wrong = dir.path() + "/wrong.secret";
  {
    std::ofstream f(wrong);
    f << std::string(64, 'a') << "\n";
  }
  const std::string err = dir.path() + "/relay.err";
  relay_process relay(dir.path(), port, dir.path() + "/relay.txt", {"--name", "r"}, err, wrong);
  EXPECT_EQ(relay.exit_status(10'000), 2);
  const std::string log = read_file_text(err);
  EXPECT_NE(log.find("refused the connection"), std::string::npos) << log;
  EXPECT_NE(log.find("wrong secret"), std::string::npos) << log;
  // A secret file that is not there: said so, not sent as an empty secret (before, the
  // server's refusal was all the operator saw).
  relay_process missing(dir.path(), port, dir.path() + "/relay.txt", {"--name", "r"}, err, dir.path() + "/none");
  EXPECT_EQ(missing.exit_status(10'000), 2);
  EXPECT_NE(read_file_text(err).find("--secret-file " + dir.path() + "/none: cannot be read"), std::string::npos)
      << read_file_text(err);
  // An engine without an event log: refused for good, named (before, retried for ever).
  {
    temp_dir bare;
    const uint16_t bare_port = free_port();
    live_mesobd none(bare.path(), {"--port", std::to_string(bare_port), "--no-events"});
    ASSERT_TRUE(none.up()) << none.output();
    relay_process relay_none(bare.path(), bare_port, bare.path() + "/relay.txt", {"--name", "r"}, err);
    EXPECT_EQ(relay_none.exit_status(10'000), 2);
    EXPECT_NE(read_file_text(err).find("events_unavailable: this engine keeps no event log"), std::string::npos)
        << read_file_text(err);
  }
  // The operator's --from past the end: refused, not waited for with retries for ever; -1
  // (which CLI11 read as 2^64 - 1) is no offset.
  for (const auto& [from, says] : std::vector<std::pair<std::string, std::string>>{
           {"99999999999", "events_offset_ahead"}, {"-1", "'-1' is not a decimal number"}}) {
    relay_process ahead(dir.path(), port, dir.path() + "/relay.txt", {"--from", from}, err);
    EXPECT_EQ(ahead.exit_status(10'000), 2) << from;
    EXPECT_NE(read_file_text(err).find(says), std::string::npos) << from << read_file_text(err);
  }
}

// The subscriptions all taken is a refusal that passes: the relay retries until one is
// free (before, it stopped for good with exit 2).
TEST(Events, ARelayWaitsForAFreeSubscription) {
  temp_dir dir;
  const uint16_t port = free_port();
  live_mesobd engine(dir.path(), {"--port", std::to_string(port), "--subscriptions-max", "2"});
  ASSERT_TRUE(engine.up()) << engine.output();
  auto holder = connect(dir.path(), port);  // the dev gateway's one subscription of two
  ASSERT_TRUE(holder);
  ASSERT_EQ(subscribe(*holder, wire::subscribe_msg{}).code, result::ok);
  const std::string err = dir.path() + "/relay.err";
  relay_process relay(dir.path(), port, dir.path() + "/relay.txt", {"--name", "r"}, err);
  for (int i = 0; i < 500 && read_file_text(err).find("subscribers_full") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_NE(read_file_text(err).find("subscribers_full"), std::string::npos) << read_file_text(err);
  EXPECT_EQ(relay.exit_status(300), -1) << "stopped: " << read_file_text(err);
  holder.reset();  // its session ends: the relay's next try subscribes
  for (int i = 0; i < 1000 && read_file_text(err).find("relay: subscribed") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_NE(read_file_text(err).find("relay: subscribed"), std::string::npos) << read_file_text(err);
  EXPECT_EQ(relay.exit_status(10), -1);
}

// A second relay under a name the first one runs with takes the name over (the newest
// session wins: what a relay whose connection died unseen needs); the first is told
// subscription_taken and stops instead of taking it back, and the second goes on from
// what the first acknowledged.
TEST(Events, ARelayWhoseNameIsTakenOverStops) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port)}, 2);
  ASSERT_TRUE(engine);
  const std::string out1 = dir.path() + "/one.txt", err1 = dir.path() + "/one.err";
  relay_process first(dir.path(), port, out1, {"--name", "shared"}, err1);
  ASSERT_GE(await_lines(out1, 2).size(), 2u);  // the two accounts opened
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // its acknowledgement in
  const std::string out2 = dir.path() + "/two.txt", err2 = dir.path() + "/two.err";
  relay_process second(dir.path(), port, out2, {"--name", "shared"}, err2);
  EXPECT_EQ(first.exit_status(10'000), 2);
  const std::string log = read_file_text(err1);
  EXPECT_NE(log.find("subscription_taken"), std::string::npos) << log;
  EXPECT_NE(log.find("stopping"), std::string::npos) << log;
  post_transfers(dir.path(), port, 100, 1);
  const auto lines = await_lines(out2, 1);
  ASSERT_GE(lines.size(), 1u) << read_file_text(err2);
  EXPECT_EQ(lines[0].offset, 3u) << "after what the first acknowledged: " << lines[0].line;
}

// A relay writing to a pipe whose reader left (`mesob-relay | head -1`): the failed write is
// told and the relay exits 3, acknowledging nothing. Before, SIGPIPE ended it (141).
TEST(Events, ARelayWhosePipeClosedExitsThree) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port)}, 2);
  ASSERT_TRUE(engine);
  const std::string err = dir.path() + "/relay.err";
  relay_process gone(dir.path(), port, closed_pipe, {"--name", "relay"}, err);
  EXPECT_EQ(gone.exit_status(10'000), 3) << read_file_text(err);
  EXPECT_NE(read_file_text(err).find("not acknowledged"), std::string::npos) << read_file_text(err);
  const std::string out = dir.path() + "/relay.txt";
  relay_process next(dir.path(), port, out);
  const auto got = await_lines(out, 2);
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got.front().offset, 1u) << "nothing was acknowledged";
}

// A SIGTERM ends a relay blocked writing to a pipe nobody reads (a consumer that stalled
// without closing it) at once, exit 0, the frame it was writing not acknowledged (what
// the pipe took before was).
// Before, the write went on waiting after the signal (SA_RESTART) and so did the stop.
TEST(Events, ARelayBlockedOnAStalledPipeStopsOnSigterm) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port)}, 2);
  ASSERT_TRUE(engine);
  const std::string err = dir.path() + "/relay.err";
  relay_process stalled(dir.path(), port, stalled_pipe, {"--name", "relay"}, err);
  // Past the pipe's 64 KiB of raw lines (about 60 bytes each).
  for (uint64_t k = 0; k < 4; ++k) post_transfers(dir.path(), port, 100 + k * 1000, 1000);
  const auto subscribed = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (read_file_text(err).find("subscribed from") == std::string::npos && std::chrono::steady_clock::now() < subscribed)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // its writes fill the pipe and block
  ASSERT_EQ(stalled.exit_status(0), -1) << "still running, blocked: " << read_file_text(err);
  stalled.term();
  EXPECT_EQ(stalled.exit_status(3'000), 0) << read_file_text(err);
  EXPECT_NE(read_file_text(err).find("stopped while writing the events"), std::string::npos) << read_file_text(err);
}

// A SIGTERM ends a relay whose server takes the connection and says nothing (a paused
// engine: no hello) at once, not after the handshake's 5-s wait.
TEST(Events, ARelayStopsAtOnceWhileItsServerSaysNothing) {
  temp_dir dir;
  uint16_t port = 0;
  const int silent = bound_loopback_socket(&port);
  ASSERT_EQ(::listen(silent, 4), 0);  // connections wait in the kernel's queue: no hello
  const std::string secret = dir.path() + "/relay.secret";
  {
    std::ofstream f(secret);
    f << std::string(64, 'a') << "\n";
  }
  const std::string err = dir.path() + "/relay.err";
  relay_process relay(dir.path(), port, dir.path() + "/relay.txt", {"--name", "relay"}, err, secret);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // in its handshake by now
  const auto t0 = std::chrono::steady_clock::now();
  relay.term();
  EXPECT_EQ(relay.exit_status(10'000), 0) << read_file_text(err);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(2500)) << read_file_text(err);
  ::close(silent);
}

// The relay's messages, one per customer and event, as a notification service would send
// them: a transfer to each side, an equb contribution, its lag, a debt written off to its
// debtor and its creditor.
TEST(Events, TheRelayTellsEachCustomerWhatHappened) {
  temp_dir dir;
  const uint16_t port = free_port();
  auto engine = engine_with_accounts(dir.path(), {"--port", std::to_string(port)}, 3);
  ASSERT_TRUE(engine);
  auto c = connect(dir.path(), port);
  ASSERT_TRUE(c->call(wire::create_transfers_body(std::vector{make_transfer(1, 3, 1, 100'000)})).ok);
  ASSERT_TRUE(c->call(wire::create_transfers_body(std::vector{make_transfer(2, 1, 2, 1'250)})).ok);
  const wire::equb_op create = make_equb_create(900, 3, 50'000);
  ASSERT_EQ(c->call(wire::equb_ops_body(std::vector{create})).reply.results.at(0), result::ok);
  wire::transfer join = make_transfer(3, 1, 900, 50'000, wire::transfer_flags::equb);
  ASSERT_EQ(c->call(wire::create_transfers_body(std::vector{join})).reply.results.at(0), result::ok);
  // Each currency in its own minor units (ISO 4217): yen have none, dinars three.
  ASSERT_TRUE(c->call(wire::create_accounts_body(std::vector{make_account(11, 0, "JPY"), make_account(12, 0, "JPY"),
                                                              make_account(21, 0, "KWD"), make_account(22, 0, "KWD")}))
                  .ok);
  const auto moved = c->call(wire::create_transfers_body(
      std::vector{make_transfer(4, 11, 12, 500, 0, "JPY"), make_transfer(5, 21, 22, 1'500, 0, "KWD")}));
  ASSERT_TRUE(moved.ok);
  ASSERT_EQ(moved.reply.results, (std::vector<result>{result::ok, result::ok}));
  // Group 901 of wallets 1 and 2, dissolved in round 2: wallet 1 (round 1's recipient)
  // owes wallet 2 a contribution, written off.
  ASSERT_EQ(c->call(wire::equb_ops_body(std::vector{make_equb_create(901, 3, 100)})).reply.results.at(0), result::ok);
  for (const uint64_t w : {1, 2}) {
    wire::transfer j = make_transfer(5 + w, w, 901, 100, wire::transfer_flags::equb);
    ASSERT_EQ(c->call(wire::create_transfers_body(std::vector{j})).reply.results.at(0), result::ok) << w;
  }
  for (const auto kind : {wire::equb_op_kind::start, wire::equb_op_kind::dissolve}) {
    wire::equb_op op;
    op.kind = kind;
    op.group_id = 901;
    ASSERT_EQ(c->call(wire::equb_ops_body(std::vector{op})).reply.results.at(0), result::ok) << unsigned(kind);
  }
  ASSERT_EQ(c->call(wire::equb_ops_body(std::vector{make_equb_write_off(901, 0, 1, 100)})).reply.results.at(0),
            result::ok);
  const std::string out = dir.path() + "/relay.txt";
  relay_process relay(dir.path(), port, out, {"--name", "notify"}, dir.path() + "/relay.err", {}, false);
  std::string text;
  for (int i = 0; i < 1000 && text.find("will not be paid") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    text = read_file_text(out);
  }
  for (const char* line : {"account 1: you received 1000.00 ETB from account 3 [offset 4, lag ",
                           "account 1: you sent 12.50 ETB to account 2 [offset 5, lag ",
                           "account 2: you received 12.50 ETB from account 1 [offset 5, lag ",
                           "account 1: your equb contribution of 500.00 ETB to group 900 was received [offset ",
                           "account 12: you received 500 JPY from account 11 [offset ",
                           "account 22: you received 1.500 KWD from account 21 [offset ",
                           "account 1: your debts to group 901 (seat 0, 100 in minor units) were written off [offset ",
                           "account 2: the debt of 1.00 ETB owed to you by seat 0 of group 901 (round 2) was written "
                           "off; it will not be paid [offset "})
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin:\n" << text;
}

}  // namespace
}  // namespace mesob::test
