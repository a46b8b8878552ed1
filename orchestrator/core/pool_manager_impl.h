// Private to the pool manager: its in-memory model (slots, pools, waiters, jobs) and
// PoolManager::Impl, shared by the pool's files, each one concept:
//   pool_manager.cc    construction, Start/Stop, the template service's notifications, Status
//   pool_leases.cc     lease lifecycle: acquire, renew, reset, release, expiry (the reaper), lookup
//   pool_slots.cc      slot lifecycle: state, capacity, recycler threads, warm, recycle, destroy
//   pool_servers.cc    servers per slot (docker): start, SlotWork per server, checks
//   pool_reconcile.cc  Start(): reload rows and reconcile them with the server(s)
// Nothing else includes it. See pool_manager.h for the behaviour.
//
// Locking: one mutex `mu` guards the model; a function's comment says whether it runs under mu.
// Server and control-database I/O (SlotWork, PoolRows, the backend, the proxy) never runs under
// it, except in Start() (see pool_manager.h).
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/core/pinned_sessions.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/pool_io.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/error.h"

namespace testpool::core {
namespace pool_internal {

enum class SlotState { kWarming, kReady, kLeased, kRecycling, kBroken };

inline const char* StateName(SlotState s) {
  switch (s) {
    case SlotState::kWarming: return "warming";
    case SlotState::kReady: return "ready";
    case SlotState::kLeased: return "leased";
    case SlotState::kRecycling: return "recycling";
    case SlotState::kBroken: return "broken";
  }
  return "broken";
}

inline bool Allowed(SlotState from, SlotState to) {
  switch (from) {
    case SlotState::kWarming: return to == SlotState::kReady || to == SlotState::kBroken;
    case SlotState::kReady: return to == SlotState::kLeased || to == SlotState::kBroken;
    case SlotState::kLeased: return to == SlotState::kRecycling || to == SlotState::kReady;  // ready: grant undone
    case SlotState::kRecycling: return to == SlotState::kReady || to == SlotState::kBroken;
    case SlotState::kBroken: return false;
  }
  return false;
}

struct Slot {
  std::string id, name, hash, database, role, password, baseline, lease_id;
  // Rollback mode: the role's password on the server, known only to the daemon (the lease's
  // `password` is checked by the proxy instead). Memory only: a restart makes new ones.
  std::string server_password;
  bool pinned = false;       // the proxy holds a pinned session for this slot (rollback mode)
  bool rolled_back = false;  // the ended lease's session was rolled back cleanly: no clone needed
  std::string pool;  // its pool's key: the template database name (name and hash)
  SlotState state = SlotState::kWarming;
  int64_t token = 0;
  int generation = 0;
  bool cut_off = false;  // the ended lease's role can no longer log in and has no sessions
  // Backends with a server per slot (docker): the slot's own server — superuser conninfo, and the
  // host and port its leases connect to. Empty for a shared server.
  pg::ConnInfo server;
  std::string host;
  int port = 0;
  bool lost = false;  // its server went away (a container that died): nothing to recycle
  std::shared_ptr<std::mutex> io = std::make_shared<std::mutex>();  // serialises server work on this slot
  // The lease's checkpoints, oldest first (pool_reset.cc); they end with the lease. Clone mode:
  // each is a database cloned from the slot's (`database`), named <slot database>_k<n> with n
  // counting up from 1 (`checkpoints_made`); rollback mode: a savepoint in the pinned session
  // (`database` empty). Memory only: a restarted daemon forgets them, and its reconcile drops
  // their databases (no row owns them).
  struct Checkpoint {
    std::string name, database;
    std::string sequences;  // clone mode: the sequence digest it saved (a restore's clone has the same)
  };
  std::vector<Checkpoint> checkpoints;
  int checkpoints_made = 0;
  // Clone mode, once the lease took or restored a checkpoint: the one its database was last made
  // from (empty: the template) and that moment's write marks, so a restore of it can be skipped
  // when nothing was written since. `baseline` is then empty (and so is the row's): the database
  // is no longer at the template's state, and no recycle may pass it for clean.
  std::string at_checkpoint, checkpoint_marks;
};

// The password the slot's role has on the server: the lease's own in clone mode; in rollback mode
// one only the daemon knows, so the lease's DSN works through the proxy alone.
inline const std::string& ServerPassword(const Slot& s, RecycleMode mode) {
  return mode == RecycleMode::kRollback ? s.server_password : s.password;
}

struct Waiter {
  std::condition_variable cv;
  std::string slot_id;     // set when a slot is handed to this waiter
  bool cancelled = false;  // the template was dropped while waiting
};

struct Pool {
  std::string name, hash, template_db;
  PoolConfig config;
  bool current = true;  // false: draining, no new leases, slots removed as they come back
  std::deque<std::string> ready;
  std::deque<std::shared_ptr<Waiter>> waiters;
  std::map<SlotState, int> count;
  // Failed warms in a row, reset by a warm that succeeds. Warms that were in flight together when
  // the server went away count once: a failure counts only when its warm started after the last
  // counted one (`failed_at`), so an outage that fails every warm at once backs off one step.
  int warm_failures = 0;
  util::MonoTime failed_at;
  // No warm starts before this (back-off after failures). Real time (util::RealMonoNow), like the
  // condition-variable waits: a back-off paces work against the server, it is not a TTL the clock
  // seam should drive (util/clock.h).
  util::MonoTime next_warm;
  // The digest of the template's sequences, as every fresh clone has them; learnt from the
  // first clone, so later clones need no connection for their baseline.
  std::string sequences;
  int Total() const {
    int n = 0;
    for (const auto& [state, c] : count) n += c;
    return n;
  }
};

struct Job {
  enum class Kind { kWarm, kRecycle, kDestroy } kind;
  std::string slot_id;
};

// How a slot came back from a lease (or how a lease was reset in place): a name in logs
// ("mode") and the counter it adds to.
enum class RecycleOutcome {
  kSkip,      // nothing was written: fresh role, same database
  kRollback,  // rollback mode: the pinned transaction rolled back
  kClone,     // re-cloned from the template
};

inline const char* ToString(RecycleOutcome o) {
  switch (o) {
    case RecycleOutcome::kSkip: return "skip";
    case RecycleOutcome::kRollback: return "rollback";
    case RecycleOutcome::kClone: return "clone";
  }
  return "clone";
}

// Every lease role of slot `slot_id` is named "<this><generation>".
inline std::string SlotRolePrefix(const std::string& slot_id) { return "tp_r_" + slot_id + "_"; }

// Recycler threads and the reaper yield to the lease path on a busy machine (their server
// sessions are deprioritised likewise, through Backend::Deprioritize).
constexpr int kBackgroundNice = 10;

inline PoolCounters::Histogram MakeHistogram(std::vector<double> bounds) {
  PoolCounters::Histogram h;
  h.bounds_ms = std::move(bounds);
  h.cumulative.assign(h.bounds_ms.size(), 0);
  return h;
}

inline void Observe(PoolCounters::Histogram* h, double ms) {
  for (size_t i = 0; i < h->bounds_ms.size(); ++i) {
    if (ms <= h->bounds_ms[i]) ++h->cumulative[i];
  }
  h->sum_ms += ms;
  ++h->count;
}


}  // namespace pool_internal

// This header is private to the three pool_*.cc files: its names may be used unqualified there.
using namespace pool_internal;  // NOLINT(google-build-using-namespace)

struct PoolManager::Impl {
  Impl(PoolIo io, backend::Backend& b, const util::Clock& c, PoolOptions o)
      : backend(b),
        clock(c),
        options(o),
        rows(std::move(io.rows)),
        servers(b.slot_servers()),
        shared_ops(servers != nullptr ? nullptr : std::move(io.shared)),
        work_for(std::move(io.work_for)) {
    counters.wait = MakeHistogram({0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000});
    counters.recycle = MakeHistogram({5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000});
    counters.reset = MakeHistogram({0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000});
  }

  backend::Backend& backend;
  const util::Clock& clock;
  const PoolOptions options;
  const std::shared_ptr<PoolRows> rows;  // the control rows (pool_io.h)
  // Where slots live: one shared server (servers == nullptr; every slot uses shared_ops), or a
  // server per slot (docker), each with its SlotWork (made by work_for) in slot_ops.
  backend::SlotServers* const servers;
  const std::shared_ptr<SlotWork> shared_ops;
  const std::function<std::shared_ptr<SlotWork>(const pg::ConnInfo&)> work_for;

  mutable std::mutex mu;
  std::condition_variable jobs_cv;                        // recycler threads: jobs or stopping changed
  std::condition_variable reaper_cv;                      // the reaper: stopping changed
  bool stopping = false;                                  // guarded by mu
  std::deque<Job> jobs;                                   // guarded by mu
  // Pools by key = template database name: two templates with identical files share a hash but
  // not a pool.
  std::map<std::string, Pool> pools;                      // guarded by mu
  std::map<std::string, std::string> current;             // template name → pool key; guarded by mu
  std::map<std::string, Slot> slots;                      // by id; guarded by mu
  std::map<std::string, LeaseInfo> leases;                // active and recently ended; guarded by mu
  std::map<std::string, util::MonoTime> ended_at;         // lease id → when it ended (clock.Now()); guarded by mu
  std::set<std::string> ending;                           // leases being cut off; guarded by mu
  PoolCounters counters;                                  // guarded by mu
  int total_slots = 0;                                    // guarded by mu
  std::vector<std::thread> threads;                       // touched by Start/Stop only
  // One pool manager per control database: it holds the ownership (PoolRows::TakeOwnership)
  // for its lifetime. A second daemon on the same server builds templates but hands out no leases.
  bool owner = false;                                     // touched by Start/Stop only
  bool passive = false;                                   // guarded by mu
  bool draining = false;                                  // Drain() was called; guarded by mu
  std::function<void(const std::string&)> lease_ended;    // set before Start, then read-only
  PinnedSessions* pinned = nullptr;                       // set before Start, then read-only
  std::vector<std::string> ended_while_down;              // Reconcile → Start, for lease_ended
  std::map<std::string, std::shared_ptr<SlotWork>> slot_ops;  // by slot id (servers only); guarded by mu
  util::MonoTime next_server_check;                       // real time; the reaper's; servers only
  util::MonoTime next_orphan_sweep;                       // real time; the reaper's; servers only

  // ---- slot lifecycle (pool_slots.cc) ---------------------------------------------------------

  // The one place a slot changes state (under mu); aborts on a transition Allowed() does not list.
  void SetState(Slot& s, SlotState to);
  // Marks a slot broken and queues its removal (under mu).
  void Discard(Slot& s);
  // A slot is ready: the first waiter gets it, else it joins the ready queue (under mu).
  void OfferReady(Slot& s);
  // Starts as many warms as the pool needs and the caps allow; borrows from idle pools when the
  // global cap stands between waiters and a slot (under mu).
  void Rebalance(Pool& p);
  // Discards the ready slot of the idlest other pool, so the global cap makes room for `starving`.
  void Borrow(Pool& starving);
  // Pools with waiters first, so capacity freed for a starving pool is not refilled elsewhere.
  void RebalanceAll();
  // The slot's recycle mode: its pool's (under mu).
  RecycleMode ModeOf(const Slot& s) const { return pools.at(s.pool).config.recycle; }

  // Queues server work for a recycler thread (under mu).
  void Enqueue(Job::Kind kind, const std::string& slot_id);
  // A recycler thread: runs queued jobs until stopping, one slot's server work at a time.
  void Worker();

  // The jobs. Each works on a copy `s` of the slot, never under mu, and writes its results back
  // under mu. Warm: clone + role + baseline (+ pinned session), then ready.
  void Warm(Slot s);
  // After a lease: skip (nothing written: fresh role, same database), rollback (the pinned
  // transaction rolled back cleanly) or re-clone; then ready.
  void Recycle(Slot s);
  // Recycle's steps. Hands the slot's database to a fresh role (the old one dropped, stray
  // sessions ended): the skip and rollback paths. Throws as SlotWork.
  void HandToFreshRole(Slot* s, SlotWork& ops, RecycleMode recycle);
  // Drops the database and role and clones anew (pinning a session in rollback mode); false when
  // the template stopped being current meanwhile (the slot is then discarded). Throws as SlotWork.
  bool Reclone(Slot* s, SlotWork& ops, const std::string& template_db, RecycleMode recycle);
  // Logs and counts the outcome, then makes the slot ready. Takes mu.
  void FinishRecycle(const Slot& s, RecycleOutcome mode, double ms);
  // Drops a broken slot's database and role (servers: removes its server) and its row; frees its
  // place under the caps.
  void Destroy(Slot s);

  // Clones the slot's database from `template_db`, prepares its current role (s->role, with its
  // server password) and takes the fresh clone's baseline. Not under mu.
  void CloneAndPrepare(Slot* s, const std::string& template_db, RecycleMode mode);
  // The write marks of a database cloned from its pool's template a moment ago (nobody else has
  // connected to it): its counters, and the template's sequences. Not under mu.
  std::string FreshCloneMarks(const Slot& s);
  // Rollback mode: opens the slot's pinned session through the proxy (s->pinned). Not under mu.
  void PinSession(Slot* s);
  // Server work on a copy of a slot is done: write its results back and make it ready (under mu).
  void BecomeReady(const Slot& s);

  // ---- servers per slot (pool_servers.cc) ------------------------------------------------------

  // The SlotWork for slot `s`'s server: shared_ops, or (servers) the slot's own, made on first use
  // (no I/O: connections open on first call). OpsLocked: under mu; Ops: not under mu.
  // Throws Error(kInternal) when a server-per-slot slot has no server yet.
  std::shared_ptr<SlotWork> OpsLocked(const Slot& s);
  std::shared_ptr<SlotWork> Ops(const Slot& s) {
    std::lock_guard<std::mutex> lock(mu);
    return OpsLocked(s);
  }
  // Servers only: starts the slot's own server (s->server, host, port). Not under mu.
  void StartServer(Slot* s);
  // Under mu, from the reaper: whether the servers are due for a check now, and (orphan_sweep)
  // for a sweep of servers no slot owns; schedules the next ones.
  bool ServerCheckDue(bool* orphan_sweep);
  // Servers only, from the reaper: a ready slot whose server died is replaced; a leased one's
  // lease ends as lost (its holder is told so on renew); servers no slot owns are removed (when
  // `orphan_sweep`). Not under mu.
  void CheckServers(bool orphan_sweep);

  // ---- lease lifecycle (pool_leases.cc) --------------------------------------------------------

  // Acquire, step by step (PoolManager::Acquire strings them together, in this order):
  // 1. The request's name, ttl, wait and holder are valid. Throws kInvalidName, kInvalidArgument.
  void CheckRequest(const LeaseRequest& req) const;
  // 2. Takes mu: a ready slot at once when nobody waits, else a place in the FIFO queue and a
  // wait (WaitForSlot); then the slot is leased in memory (HandOut). Throws kUnavailable
  // (passive, stopping, asker gone), kNotFound (no such template, or dropped while waiting),
  // kPoolExhausted. `start`: when the request arrived (its wait runs from there).
  struct Grant {
    LeaseInfo lease;
    bool waited = false;  // it queued (then it may have been abandoned meanwhile)
    bool pinned = false;  // rollback mode: the proxy must admit the lease's clients
  };
  Grant TakeOrWait(const LeaseRequest& req, util::MonoTime start);
  // The current pool of template `name`, for a new lease (under mu). Throws kUnavailable
  // (passive), kNotFound.
  Pool& PoolForLease(const std::string& name);
  // Under mu, released while it waits: queues a waiter on `p` and waits until a slot is handed
  // to it, `deadline`, a drop, a stop or the asker going away; returns the slot's id, or leaves
  // the queue and throws (GiveUpWaiting).
  std::string WaitForSlot(std::unique_lock<std::mutex>& lock, Pool& p, const LeaseRequest& req,
                          util::MonoTime deadline);
  // Under mu: waiter `w` got no slot: it leaves every queue and the reason is thrown.
  [[noreturn]] void GiveUpWaiting(const std::shared_ptr<Waiter>& w, Pool& asked, const LeaseRequest& req,
                                  bool gone);
  // Under mu: slot `s` is leased to a new lease (token + 1), remembered in `leases` and counted.
  LeaseInfo HandOut(Slot& s, const LeaseRequest& req, util::MonoTime start);
  // A new lease on slot `s` (id, DSN, token, expiry); records nothing (under mu).
  LeaseInfo MakeLease(const Slot& s, const std::string& holder, std::chrono::seconds ttl);
  // 3. Not under mu: records the grant (one statement); when that fails, UndoGrant and throws
  // kUnavailable.
  void RecordGrant(const LeaseInfo& lease);
  // Takes mu: the grant never happened: the slot goes back untouched; nobody saw the lease.
  void UndoGrant(const LeaseInfo& lease);
  // 4. Rollback mode, not under mu: lets the lease's clients into the proxy; when the slot's
  // pinned session is gone, ends the lease (its slot is re-cloned) and throws kUnavailable.
  void AdmitToProxy(const LeaseInfo& lease, const LeaseRequest& req);
  // 5. After a grant that had to wait, not under mu: when the asker went away meanwhile, ends
  // the lease and throws kUnavailable (nobody would ever use or release it).
  void ReleaseIfAbandoned(const LeaseInfo& lease, const LeaseRequest& req);

  // ---- reset and checkpoints (pool_reset.cc) ---------------------------------------------------

  // A copy of the slot an active lease holds, with what server work on it needs. Takes mu.
  // Throws as Reset does (kNotFound, kLeaseExpired).
  struct LeasedSlot {
    Slot slot;
    LeaseInfo lease;
    std::string template_db;
    RecycleMode mode = RecycleMode::kClone;
  };
  LeasedSlot ForLease(const std::string& lease_id);
  // Clone mode: the slot's database becomes a clone of checkpoint `source`'s database under the
  // same role and password; returns its write marks (its counters, taken before the role can log
  // in again, and the checkpoint's sequence digest, which a clone shares). Throws as SlotWork; the
  // role can log in again also then.
  std::string RecloneInPlace(Slot* s, SlotWork& ops, const Slot::Checkpoint& source, RecycleMode mode);
  // Drops the databases of the checkpoints from `first` on (clone mode) and forgets them.
  static void DropCheckpoints(Slot* s, SlotWork& ops, size_t first);
  // Writes the results of server work on a lease's slot back, if the lease still holds it (mu).
  void KeepLeasedResults(const Slot& s, const std::string& lease_id);

  // The error for a lease id not in memory, read from the control database (not under mu):
  // kLeaseExpired when it was issued and has ended, kNotFound when never issued.
  Error UnknownLease(const std::string& lease_id);

  // Ends an active lease if it is still active and not already ending (the public Release).
  // Idempotent. Throws kNotFound for an id never issued. Not under mu.
  void ReleaseLease(const std::string& lease_id);
  // Ends the lease whose id this thread put in `ending`: cuts its credentials off first (so an
  // ended lease's DSN never connects), then marks it ended and queues the recycle (EndLease),
  // then records it and tells lease_ended. Not under mu.
  void Finish(const std::string& lease_id, const std::string& role, LeaseState how);
  // Marks an active lease ended as `how` (under mu): the slot goes to recycling and a recycle
  // job is queued. `cut_off`: the lease's credentials were cut off already.
  void EndLease(LeaseInfo& lease, LeaseState how, bool cut_off);
  // Forgets ended leases after a while (the control database keeps them). Under mu.
  void TrimEnded();
  // The reaper thread: each reaper_interval ends expired leases, retries warms whose back-off ran
  // out, and (servers per slot) checks the servers.
  void Reaper();

  // ---- start: reload and reconcile (pool_reconcile.cc) ---------------------------------------

  // The pool of template `name` at `hash`, created (empty, min_ready 0) when missing.
  Pool& EnsurePool(const std::string& name, const std::string& hash, bool is_current);
  // Start(): rows → memory, then server ↔ rows (see pool_manager.h, "Control state").
  void Reconcile();
};

}  // namespace testpool::core
