// Warm pools of databases cloned from templates, and the leases that hand them out.
//
// One pool per template hash. Each pool keeps `min_ready` slots cloned and prepared ahead of
// demand, up to `max` slots in all, and a global cap (`max_databases`) bounds slots across all
// pools. A slot is a database `tp_s_<hash12>_<slot id>` cloned from the template with
// CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY, plus a login role `tp_r_<slot id>_<n>` with a
// random password and CONNECT (and TEMP) on it alone; the role is a member of kSlotOwnerRole,
// which owns every object of the template and so of each clone (see slot_ops.h).
// Everything slow — the clone, the role, its password verifier, the grants — happens while the
// slot warms, on a recycler thread; handing a lease out only marks the slot leased in memory and
// writes one control row (the lease), so it costs about a millisecond.
//
// Slot states: warming → ready → leased → recycling → ready, and broken (then destroyed and
// replaced). Every change of state goes through one function that checks it.
//
// Leases: Acquire() takes a ready slot at once, or waits up to `wait` in FIFO order (first come,
// first served: a new request never overtakes a waiting one), then throws kPoolExhausted. A waiter
// whose asker went away leaves the queue (LeaseRequest::abandoned). Each
// handout increments the slot's fencing token (strictly increasing per slot, persisted). A lease
// ends by Release() (idempotent) or, past its expires_at, by the reaper (within a second). Ending
// a lease cuts its credentials off: the role's sessions are terminated and its password replaced
// (or the role dropped), then the slot is recycled:
//   - skipped when dirty tracking shows nothing was written (pg_stat_database tuple counters of
//     the slot's database and pg_sequences, compared after the lease's sessions are gone with a
//     baseline taken when the slot became ready): the slot is handed to a fresh role and is
//     ready again at once (one connection to the slot's database, to read its sequences);
//   - otherwise re-cloned from the template in the background.
// Reset() restores the leased database to the template's state in place (re-clone under the same
// name and credentials; or, when dirty tracking shows nothing was written since the last clone,
// only the end of the lease's sessions); the lease stays.
//
// Rollback mode (the template's recycle mode `rollback`, see pinned_sessions.h): each slot also
// has a pinned session in the wire proxy, opened while it warms; a lease's DSN points at the
// proxy; Reset() rolls back to the base savepoint in place; ending a lease rolls the pinned
// transaction back and the slot is ready again after a hand-over to a fresh role and a new pinned
// session — no clone, unless the session was lost (then it is re-cloned). A daemon restart ends
// rollback-mode leases (their data lived in the daemon's open transaction) and recycles them.
//
// Servers per slot (a backend with SlotServers, i.e. docker): each slot's database lives in a
// server of its own, started from its template's image while the slot warms; the same SlotOps run
// against that server, so recycling (clone, skip, rollback) never restarts it. Every second the
// reaper checks the servers: a ready slot whose server died is replaced, a leased one's lease ends
// as "lost"; servers no slot owns are removed at start and every 30 s; Stop() has the backend remove
// them (unless it keeps them for the next start to adopt).
//
// Control state: slots and leases are rows in the control database; memory is a cache. Start()
// reloads them and reconciles: slots caught mid-warm or mid-recycle are rebuilt, leases that
// expired while the daemon was down are reaped, live leases keep working (same DSN), and every
// database (tp_s_…) and role (tp_r_…) with testpool's prefix that no row owns is removed.
//
// One pool manager per control database: Start() takes a session advisory lock that it holds
// until Stop(). A second daemon on the same server finds it taken and stays passive: it builds
// templates, but Acquire() answers kUnavailable naming the reason.
//
// Doors: every slot operation on a server and every control row goes through the two interfaces
// of pool_io.h (SlotWork, PoolRows), so a test can fail any of them or stop the process at a
// named point (fault_points.h), or run the manager with no server at all.
//
// Thread safety: all public methods are thread-safe. One mutex guards the in-memory state; it is
// never held across server or control-database I/O, with one exception: Start() holds it across
// the reload and reconcile, so that no call sees a half-rebuilt model (calls made meanwhile wait
// until Start() is done).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/backend/backend.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/lease.h"
#include "orchestrator/core/pinned_sessions.h"
#include "orchestrator/core/pool_io.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/core/template_spec.h"
#include "orchestrator/util/clock.h"

namespace testpool::core {

struct PoolOptions {
  int max_databases = 200;                               // slots across all pools
  int recycler_threads = 3;                              // background clone/recycle workers
  std::chrono::seconds default_ttl{600};
  std::chrono::seconds max_ttl{24 * 3600};               // longer → kInvalidArgument
  std::chrono::seconds max_wait{600};                    // longer → kInvalidArgument
  std::chrono::milliseconds reaper_interval{200};        // expiry is enforced within this + work
};

struct LeaseRequest {
  std::string template_name;
  std::chrono::seconds ttl{600};   // 1 s … max_ttl
  std::chrono::seconds wait{30};   // 0 … max_wait
  std::string holder;              // free text ≤ 200 chars (a CI worker's name)
  // Optional: true once whoever asked has gone away (an HTTP client that closed its connection).
  // Asked every few hundred ms while the request waits, and once after a grant that had to wait:
  // a waiter that is gone never takes a slot, and a slot granted to one just gone is released
  // at once instead of sitting out its TTL. Called without the manager's lock held.
  std::function<bool()> abandoned;
};

struct PoolStatus {
  std::string template_name;
  std::string hash;
  bool current = false;    // the template's current hash (older hashes drain)
  int min_ready = 0;
  int max = 0;
  std::string recycle;     // "clone" or "rollback"
  int warming = 0, ready = 0, leased = 0, recycling = 0, broken = 0;
  int waiting = 0;         // Acquire calls queued for a slot
  // Failed warms in a row (0 once one succeeds); warms in flight together count once. While it
  // is above 0 the pool backs off: 0.2 s after the first, doubling up to 10 s.
  int warm_failures = 0;
};

// Counters since the daemon started, for /v1/status and /metrics.
struct PoolCounters {
  uint64_t leases_granted = 0;
  uint64_t leases_released = 0;
  uint64_t leases_expired = 0;
  uint64_t leases_exhausted = 0;      // Acquire calls that ran out of wait
  uint64_t leases_abandoned = 0;      // Acquire calls whose asker went away (see LeaseRequest)
  uint64_t recycles_cloned = 0;
  uint64_t recycles_skipped = 0;      // clean slots returned with no clone
  uint64_t recycles_rolled_back = 0;  // rollback mode: the pinned transaction rolled back, no clone
  uint64_t resets = 0;
  uint64_t resets_skipped = 0;        // clone mode: nothing written since the clone, so no re-clone
  uint64_t slots_broken = 0;
  // Histograms: upper bounds in ms, counts per bucket (cumulative as Prometheus wants), sum, count.
  struct Histogram {
    std::vector<double> bounds_ms;
    std::vector<uint64_t> cumulative;
    double sum_ms = 0;
    uint64_t count = 0;
  };
  Histogram wait;      // Acquire: request to grant
  Histogram recycle;   // release to ready again (clone, skip or rollback)
  Histogram reset;     // Reset(): request to done (rollback: savepoint; clone: check, re-clone if dirty)
};

struct ManagerStatus {
  std::vector<PoolStatus> pools;
  int databases = 0;       // slots across all pools
  int max_databases = 0;
  bool draining = false;   // Drain() was called
  PoolCounters counters;
  PinnedSessions::Stats proxy;  // zeros when the daemon runs without a proxy
};

// The real doors: SlotStore on `store`, SlotOps on the backend's shared server (its sessions
// deprioritised through `backend`) or on each slot's server. Both must outlive what uses them.
PoolIo RealPoolIo(ControlStore& store, backend::Backend& backend);

// A checkpoint just saved (PoolManager::Checkpoint).
struct CheckpointInfo {
  std::string lease_id, name;
  std::string mode;                      // "clone" (a database) or "rollback" (a savepoint)
  double ms = 0;                         // how long saving it took
  std::vector<std::string> checkpoints;  // the lease's checkpoints now, oldest first
};

class PoolManager final : public TemplateService::Listener, public LeaseLookup {
 public:
  // `store` and `backend` must outlive the manager; `backend` must be started. The manager reaches
  // the server and the control database through RealPoolIo(store, backend).
  PoolManager(ControlStore& store, backend::Backend& backend, const util::Clock& clock, PoolOptions options);
  // The same, through the doors `io` (pool_io.h): the real ones wrapped by fault_points.h, or
  // in-memory ones in the pool's unit tests. `io.shared` must be set unless `backend` has servers
  // per slot; `io.work_for` must be set if it has.
  PoolManager(PoolIo io, backend::Backend& backend, const util::Clock& clock, PoolOptions options);
  ~PoolManager() override;  // Stop()
  PoolManager(const PoolManager&) = delete;
  PoolManager& operator=(const PoolManager&) = delete;

  // Reloads slots and leases from the control database, reconciles (see above), starts the
  // recycler threads and the reaper, and starts warming every current template's pool.
  void Start();
  // Stops the threads (work in progress finishes). Leases and slots stay in the control database.
  void Stop();
  // The daemon is about to stop (SIGTERM): from now on Acquire() throws kDraining, and the calls
  // waiting for a slot wake and throw it too. Everything else goes on as before: leases are
  // renewed, reset and released, slots recycled, pools warmed, until Stop(). Idempotent.
  void Drain();

  // A template hash became current (a build finished, or a PUT found it built): warm its pool to
  // `pool` sizes, and let older hashes of the name drain (no new leases; their slots are removed
  // as they are released).
  void TemplateReady(const std::string& name, const std::string& hash, const std::string& template_db,
                     const PoolConfig& pool) override;
  // The template was dropped: no new leases; ready slots removed now, leased ones at release.
  void TemplateDropped(const std::string& name) override;

  // Throws Error: kInvalidName / kInvalidArgument (bad ttl, wait, holder), kNotFound (no such
  // template, or it has no ready hash yet), kPoolExhausted (nothing free within `wait`; the
  // message names the template and the pool's figures), kDraining (after Drain()),
  // kUnavailable (control database down).
  LeaseInfo Acquire(const LeaseRequest& request);
  // New expires_at = now + ttl. kNotFound (unknown id), kLeaseExpired (it ended: released or expired).
  LeaseInfo Renew(const std::string& lease_id, std::chrono::seconds ttl);
  // Ends the lease. Idempotent: a lease that already ended is fine. kNotFound for an id never issued.
  void Release(const std::string& lease_id);
  // Restores the leased database in place (same DSN) to the template's state (`to` empty) or to
  // the state saved as checkpoint `to`; the checkpoints saved after it are dropped (all of them
  // for the template). Clone mode ends the lease's sessions and re-clones (from the template or
  // the checkpoint's database) unless dirty tracking shows nothing was written since the database
  // was last made from that same state; rollback mode rolls back to the savepoint, sessions kept.
  // kNotFound (no such lease or checkpoint), kLeaseExpired, kInvalidArgument (a bad name),
  // kTimeout (rollback mode: a statement of the lease kept its session busy).
  LeaseInfo Reset(const std::string& lease_id, const std::string& to = "");
  // Saves the leased database's current committed state as checkpoint `name` (1–64 of
  // A-Z a-z 0-9 _ . : -), for Reset(lease, name). A name taken already is replaced, and the
  // checkpoints saved after it are dropped. Clone mode: the lease's sessions are ended (open
  // transactions lost, as on a reset) and the database is cloned; rollback mode: a savepoint,
  // after waiting (up to 10 s) for a transaction a client has open (kTimeout when it stays open).
  // Checkpoints end with the lease and do not survive a daemon restart. kNotFound,
  // kLeaseExpired, kInvalidArgument, kConflict (kMaxCheckpoints reached), kTimeout.
  CheckpointInfo Checkpoint(const std::string& lease_id, const std::string& name);
  static constexpr size_t kMaxCheckpoints = 16;
  // The lease, also an ended one (from memory for a while, then from the control database).
  // kNotFound when never issued, kUnavailable when it must be read from a control database that
  // cannot be reached.
  LeaseInfo GetLease(const std::string& lease_id) override;

  ManagerStatus Status() const;

  // `listener` is told the id of every lease that ends (released, expired, or found expired at
  // start), after its credentials are cut off, on the thread that ended it, never under the
  // manager's lock; it must not throw. Set it before Start().
  void SetLeaseEndedListener(std::function<void(const std::string& lease_id)> listener);

  // The wire proxy that serves templates whose recycle mode is `rollback` (see pinned_sessions.h).
  // Without one, such templates' slots fail to warm with an error saying so. Must outlive the
  // manager; set it before Start().
  void SetPinnedSessions(PinnedSessions* sessions);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::core
