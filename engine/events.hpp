// events: the event stream (engine/README.md, "Events").
//
// event_writer — one thread. The shards hand it each dispatch's logged batches once every
// shard has handled them (actors::event_group); it puts the groups back in dispatch order,
// turns each batch's outcomes into events (derive_events), appends them to the event log
// and syncs it. Events therefore exist only for batches the log made durable, and every
// such batch gets its events: after a crash, replay runs the batches after the snapshot
// again and the writer appends the events of those past the newest one the event log kept.
// Expiries are placed at the first logged batch whose clock passed them, so they land in
// the same place live and in replay. A checkpoint waits for the events of every batch it
// covers (wait_through) before it commits.
//
// event_hub — subscriptions. A session subscribes from an offset, optionally under a name
// (resuming after the name's last acknowledged offset) and with filters; one thread reads
// the event log and sends each subscriber frames of events while fewer than its window are
// unacknowledged. A subscriber that does not acknowledge falls behind without slowing the
// engine or anyone else; one behind retention is told so (events_truncated) and dropped.
// Named subscribers' acknowledged offsets are kept in <data>/events/subscribers.state.
// A name belongs to the gateway that first subscribed under it: another gateway's session
// is refused it (subscriber_name_owned), so one reader cannot move another's position.
// The console lists the names and forgets one (`events names`, `events forget`).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "actors/batch.hpp"
#include "storage/event_log.hpp"
#include "wire/event_pack.hpp"
#include "wire/types.hpp"

namespace mesob::engine {

// The events one logged batch made, in operation order (its expiries are added by the
// writer). `number_of` gives a deposit's gateway number from its transfer id.
void derive_events(const actors::batch& b, std::vector<wire::event>& out);

// The writer makes the event log durable at most this long after an append, and at once
// when a checkpoint waits for it (wait_through). Readers need no sync: every event is
// of a log record already durable, so replay writes the same event at the same offset
// again should a power cut take the log's unsynced tail. Decisions made when a timer
// fired (a round closing, a payout or order given up, a breaker moving) too: where they
// fall depends on the shard count, and a start with another count is refused while the
// log holds any record past the snapshot (a checkpoint covers only batches whose events
// are durable), so replay makes them again where readers saw them.
constexpr uint64_t events_sync_interval_ms = 200;
// After a pass that wrote events the writer gathers groups this long before the next
// (a lone group after a quiet spell still wakes it at once), unless this many wait or a
// checkpoint waits: under load one wake-up, one append and one hub pass per gathering
// instead of one per commit group.
constexpr uint64_t events_gather_us = 2000;
constexpr size_t events_gather_groups_max = 64;
// Event log segments retention drops in one writer pass, at most (each a read, an unlink
// and a directory sync between appends); a pass that drops this many is followed by
// another at once (after the groups waiting are appended), not after retention_check_ms.
constexpr size_t retention_drops_per_pass = 4;

class event_writer {
 public:
  // `read_id` finds the id of a transfer by serial (the pending transfers this run did
  // not see created: those of the snapshot). Events of batches with lsn <= `kept_lsn` are
  // in the log already (recovery) and are not appended again.
  using id_reader = std::function<wire::id128(uint64_t serial)>;
  event_writer(storage::event_log& log, uint64_t kept_lsn, id_reader read_id, uint64_t retention_check_ms);
  ~event_writer();
  event_writer(const event_writer&) = delete;
  event_writer& operator=(const event_writer&) = delete;

  // Any thread: a group every shard has handled (groups arrive in any order).
  void post(std::shared_ptr<actors::event_group> g);
  // Recovery, before replay: the event log holds the events of every record up to
  // `kept` (replay appends those of later ones) and the snapshot covers records up to
  // `snapshot` (checkpoints waited for their events).
  void recovered(uint64_t kept, uint64_t snapshot);
  // Blocks until the events of every batch with lsn <= `lsn` are durable. False (with
  // the reason) if the event log failed.
  bool wait_through(uint64_t lsn, std::string* error);
  // Blocks while more than `max` groups wait for the writer (the sequencer, so the
  // batches they hold stay bounded).
  void wait_backlog(size_t max);
  // Waits up to `timeout_ms` for the written end to pass `seen`; returns it.
  uint64_t wait_new(uint64_t seen, int timeout_ms);
  // Called (on the writer's thread) after each append of new events.
  void set_listener(std::function<void()> on_written);
  // Stops once every group posted so far is written and synced.
  void stop();
  [[nodiscard]] bool failed() const { return failed_.load(); }
  [[nodiscard]] std::string error() const;

  struct stats {
    uint64_t events = 0;        // appended by this run
    uint64_t syncs = 0;
    uint64_t sync_ns = 0;       // summed fdatasync time
    uint64_t backlog = 0;       // groups waiting
    uint64_t lsn = 0;           // events durable for every batch up to this lsn
  };
  [[nodiscard]] stats counters() const;

 private:
  void run();
  // Appends g's events to out: each batch's, then the decisions (groups', desks',
  // brokers', the market's) made while it executed.
  void write_group(actors::event_group& g, std::vector<wire::event>& out);

  storage::event_log& log_;
  std::atomic<uint64_t> kept_lsn_;
  id_reader read_id_;
  uint64_t retention_check_ns_;
  mutable std::mutex mu_;
  std::condition_variable cv_;       // work for the writer
  std::condition_variable done_cv_;  // progress for waiters
  std::map<uint64_t, std::shared_ptr<actors::event_group>> waiting_;  // by seq
  uint64_t next_seq_ = 1;
  bool gathering_ = false;  // the writer waits out events_gather_us: a post need not wake it
  bool stop_ = false;
  bool stopped_ = false;
  std::function<void()> listener_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> recovered_{false};
  std::string error_;
  std::atomic<uint64_t> durable_lsn_{0};
  uint64_t written_lsn_ = 0;  // events written (maybe not yet synced) for every batch up to this lsn
  uint64_t sync_wanted_lsn_ = 0;  // a wait_through waits for this one (guarded by mu_)
  std::atomic<uint64_t> events_{0}, syncs_{0}, sync_ns_{0}, backlog_{0};
  // Timed pending transfers seen created and not yet resolved: serial -> id.
  std::unordered_map<uint64_t, wire::id128> timed_pending_;
  std::thread thread_;
};

struct subscription_request {
  std::string owner;       // the subscribing session's gateway (set by the server)
  std::string name;        // empty: anonymous (nothing kept)
  uint64_t from = 0;       // first offset wanted (0: the oldest kept); a name's own position wins
  bool from_end = false;   // start after the newest event instead
  uint64_t types = 0;      // bit (1 << type) per event type wanted; 0: all
  std::vector<uint64_t> accounts;  // events touching any of these (account_a or account_b); empty: all
  std::vector<uint32_t> gateways;  // events of these gateway numbers; empty: all
  uint32_t window = 65'536;        // offsets scanned and not yet acknowledged, at most
  uint32_t batch_max = 4'096;      // events per frame, at most
  bool packed = false;             // frames carry the events packed (wire/event_pack.hpp)
};
constexpr size_t subscription_ids_max = 1024;
constexpr uint32_t subscription_window_max = 1u << 20;
constexpr uint32_t subscription_batch_max = wire::events_per_frame_max;
constexpr size_t subscriber_name_bytes_max = 64;
constexpr size_t subscriber_names_max = 4'096;
// The hub takes an ack that does not open a full window at its next pass: with new events,
// or at most this long after it came.
constexpr int ack_apply_ms = 100;
// ... or when this many commands wait.
constexpr size_t commands_wake_every = 1'024;
// What may wait for the hub's thread, which takes its commands between passes (a pass
// may read old segments or save the positions): acks of one session, and commands of
// all sessions. Past either an ack is refused at once (ack_refused), so a flood of acks
// cannot grow the queue while a pass holds it. A session's second Subscribe while its
// first waits is answered subscriber_busy at once.
constexpr uint32_t acks_queued_max = 1'024;
constexpr size_t commands_queued_max = 65'536;
// While the writer appends many groups at a time (128 or more events, and the append
// before came less than events_busy_gap_ms earlier), a packed subscriber's newest partial
// group of 128 waits at most events_tail_hold_ms after the end last moved for the rest of
// its group, so frames stay whole groups the writer packed (perf/RESULTS.md,
// twenty-sixth session). A lone append after a quiet spell, and a quiet stream's events,
// go at once. (A 5-ms gap test kept 71-73% of frames as written at the maximum rate, the
// writer's appends spreading past it now and then; 20 ms keeps 85-90%.)
constexpr int events_tail_hold_ms = 5;
constexpr int events_busy_gap_ms = 20;
// Events the hub's thread reads from the event log's files (subscribers behind what the
// log keeps in memory) in one pass, at most: subscribers catching up take turns at this
// much (each going first in turn), so a pass serving those near the end never waits for
// more than this of the disk and unpacking, however many catch up.
constexpr uint64_t hub_file_events_per_pass = 32'768;

class event_hub {
 public:
  // `send` queues a frame to a session (false: the session is gone; the server's always
  // says true and hands a frame for a session gone to nobody: the hub learns of the end
  // from `closed`). A frame may go to several sessions (subscribers at the same place
  // get the same Events frame).
  using frame_ptr = std::shared_ptr<const std::vector<uint8_t>>;
  using sender = std::function<bool(uint64_t session, frame_ptr frame)>;
  // `windows_bytes_max`: what all subscriptions' windows may hold queued unread together
  // (each reserved at its bound, window_bytes), half of it for one gateway's; a Subscribe
  // past either is refused subscribers_full.
  event_hub(storage::event_log& log, event_writer& writer, std::string state_path, uint32_t subscriptions_max,
            uint64_t windows_bytes_max);
  ~event_hub();
  // Loads the named subscribers' positions; false with the reason if the file is damaged.
  bool load(std::string* error);
  // `session_bytes_max`: what the server queues to one session (windows must fit).
  void start(sender send, uint64_t session_bytes_max);
  // From the network thread; each only queues a command for the hub's thread, which
  // answers a subscription with a Subscribed frame and a refused ack with an Error.
  // False (nothing queued) when the session's earlier Subscribe still waits for the hub.
  [[nodiscard]] bool subscribe(uint64_t session, uint64_t request_id, subscription_request&& r);
  // Everything up to `offset` is handled by the subscriber. Empty, or why it was not
  // queued (acks_queued_max, commands_queued_max): the caller refuses it.
  [[nodiscard]] std::string ack(uint64_t session, uint64_t request_id, uint64_t offset);
  void closed(uint64_t session);
  // Ends the session's subscription, if the hub holds one, telling it (an Error with
  // request id 0, `code`: `why`) after the frames sent before: in order with them and with
  // the answer to a Subscribe still pending. The session stays open.
  void end(uint64_t session, wire::protocol_error code, std::string why);
  void stop();

  struct subscriber_info {
    std::string name;
    uint64_t session = 0;
    uint64_t acked = 0;
    uint64_t sent = 0;  // offsets scanned and sent through
    uint64_t lag = 0;   // written end - 1 - acked
  };
  std::vector<subscriber_info> subscribers() const;

  struct name_info {
    std::string name;
    std::string owner;     // the gateway the name belongs to (empty: kept from a file of
                           // before owners, taken by the next gateway to subscribe)
    uint64_t acked = 0;
    uint64_t session = 0;  // the session holding it now, 0: none
  };
  // From any thread (the console), answered by the hub's thread: the names kept, in name
  // order. False with the reason if the hub does not answer within hub_answer_ms.
  bool names(std::vector<name_info>* out, std::string* error);
  // Drops a name no session holds: its position and owner go (saved before it answers), and
  // any gateway may take it again. Otherwise *error says why.
  enum class forgotten { yes, unknown, held, not_saved, no_answer };
  forgotten forget(const std::string& name, std::string* error);
  static constexpr int hub_answer_ms = 5000;
  [[nodiscard]] uint64_t frames_sent() const { return frames_.load(); }
  // Of them, packed frames made of the writer's own chunks (event_log::read_packed).
  [[nodiscard]] uint64_t frames_as_written() const { return frames_as_written_.load(); }
  // Events the hub read from the log (its ring or files) to make frames: the unpacked
  // reads' (filtered or not; a packed frame as written reads none).
  [[nodiscard]] uint64_t events_read() const { return events_read_.load(); }
  // Of them, read from the files, in all and in the pass that read the most.
  [[nodiscard]] uint64_t file_events_read() const { return file_events_read_.load(); }
  [[nodiscard]] uint64_t file_events_pass_max() const { return file_events_pass_max_.load(); }
  // The most a subscription's frames may hold queued unread to its session: window +
  // batch_max events (what may be sent and not acknowledged), each counted as a frame of
  // its own (the most bytes an event can take, and the server's keeping of each frame).
  [[nodiscard]] static uint64_t window_bytes(const subscription_request& r);
  [[nodiscard]] uint64_t windows_bytes_max() const { return windows_bytes_max_; }
  // What the windows reserve, of subscriptions and of ended ones whose sessions are still
  // open (as of the hub's last pass).
  [[nodiscard]] uint64_t windows_reserved() const { return windows_reserved_.load(std::memory_order_relaxed); }
  // Whether a subscription's filters (types, accounts, gateways) let an event through.
  static bool matches(const subscription_request& r, const wire::event& e);
  // What a subscription's own fields refuse it with (subscriber_name_invalid,
  // events_filter_invalid) and why; ok when they hold. The server checks them before it
  // queues the request (a frame's worth of ids waits for no pass), the hub again.
  [[nodiscard]] static wire::result fields_refusal(const subscription_request& r, std::string* why);

 private:
  struct sub {
    uint64_t session = 0;
    subscription_request req;
    uint64_t cursor = 1;   // next offset to scan
    uint64_t acked = 0;    // every offset <= acked is handled
    bool dead = false;
  };
  struct command {
    enum class kind { subscribe, ack, closed, job } what;
    uint64_t session = 0;
    uint64_t request_id = 0;
    uint64_t offset = 0;
    subscription_request req;
    std::function<void()> job;  // kind job: runs on the hub's thread
  };
  void apply(command& c);
  // Ends the session's subscription, if it holds one (true), keeping its reservation in
  // ended_ until the session closes.
  bool retire(uint64_t session);
  // Runs `job` on the hub's thread and waits for it (hub_answer_ms at most: false).
  bool on_hub(std::function<void()> job, std::string* error);
  void run();
  // Sends s the frames it has room for; true if it sent any. `hold_tail`: a partial newest
  // group may wait (then *held is set).
  // `file_budget`: events it may still read from the files in this pass (reduced by
  // what it reads there; *read_files set if it read any); when it runs out, *deferred is
  // set and s waits for a later pass.
  bool serve(sub& s, std::vector<wire::event>& buf, uint64_t end, bool hold_tail, bool* held, uint64_t& file_budget,
             bool* deferred, bool* read_files);
  void send(uint64_t session, std::vector<uint8_t>&& frame) {
    out_(session, std::make_shared<const std::vector<uint8_t>>(std::move(frame)));
  }
  // Unfiltered frames built in this pass, by (first offset, events, batch_max, packed):
  // others at the same place share them.
  std::map<std::tuple<uint64_t, uint64_t, uint32_t, bool>, frame_ptr> frames_this_pass_;
  std::vector<uint8_t> packed_;  // a frame's events as the writer packed them (event_log::read_packed)
  bool save(std::string* error);

  storage::event_log& log_;
  event_writer& writer_;
  std::string state_path_;
  uint32_t subscriptions_max_;
  uint64_t windows_bytes_max_;
  sender send_;  // guarded by mu_
  sender out_;   // the hub thread's copy
  uint64_t session_bytes_max_ = 32ull << 20;  // guarded by mu_
  uint64_t bytes_max_ = 32ull << 20;          // the hub thread's copy, taken with out_ at each pass
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<command> commands_;                // guarded by mu_
  // Of commands_ (mu_): each session's acks, and the sessions with a Subscribe in it.
  std::unordered_map<uint64_t, uint32_t> acks_queued_;
  std::unordered_set<uint64_t> subscribes_queued_;
  std::vector<subscriber_info> listing_;         // guarded by mu_
  // Sessions holding a subscription, ascending (guarded by mu_): an ack of any other is
  // refused at once instead of taking a place in the queue. Set after the commands of a
  // pass are applied, before it sends anything, and after it ends subscriptions.
  std::vector<uint64_t> live_sessions_;
  void publish_live();  // hub thread
  std::map<uint64_t, sub> subs_;
  // Sessions still open whose subscription ended: their windows' reservations (the frames
  // sent may still be queued to them), until they close; a session's ended windows add up
  // (it subscribed again and that one ended too).
  struct ended_window {
    std::string owner;
    uint64_t bytes = 0;
  };
  std::unordered_map<uint64_t, ended_window> ended_;
  std::atomic<uint64_t> windows_reserved_{0};                 // by session (the hub's thread only)
  struct name_state {
    uint64_t acked = 0;
    std::string owner;
  };
  std::map<std::string, name_state> positions_;  // named subscribers (the hub's thread only)
  bool positions_dirty_ = false;
  bool stop_ = false;
  bool wake_ = false;
  // Sessions (ascending) whose subscriber waits for an ack to open its window: their acks
  // wake the hub.
  std::vector<uint64_t> window_full_;
  std::atomic<uint64_t> frames_{0};
  std::atomic<uint64_t> frames_as_written_{0};
  std::atomic<uint64_t> events_read_{0};
  std::atomic<uint64_t> file_events_read_{0};
  std::atomic<uint64_t> file_events_pass_max_{0};
  // The pass starts with the subscriber of this session (or the next one): the one after
  // the first that read from the files in the pass before.
  uint64_t first_turn_ = 0;
  // The written end as the hub last saw it move: when, by how much, and whether the move
  // before came less than events_busy_gap_ms earlier.
  uint64_t seen_end_ = 0;
  uint64_t last_step_ = 0;
  std::chrono::steady_clock::time_point advanced_at_{};
  bool busy_writer_ = false;
  std::thread thread_;
};

}  // namespace mesob::engine
