// PoolManager: server work on recycler threads (warm, recycle, destroy) and the reaper that ends
// expired leases. None of it runs under the mutex; results are written back under it.
#include <algorithm>
#include <string_view>

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/thread.h"

namespace testpool::core {
namespace {

// Recycler threads and the reaper yield to the lease path on a busy machine (their server
// sessions are deprioritised likewise, through Backend::Deprioritize).
constexpr int kBackgroundNice = 10;

// Servers per slot (docker): how often the reaper looks for servers that died, and for servers
// no slot owns.
constexpr auto kServerCheckInterval = std::chrono::seconds(1);
constexpr auto kOrphanSweepInterval = std::chrono::seconds(30);

// The next role of a slot: a name never used before (its generation counts up) and fresh random
// passwords (the lease's, and the server-side one rollback mode logs in with). Roles are never
// reused across leases.
void NewCredentials(Slot* s) {
  ++s->generation;
  s->role = "tp_r_" + s->id + "_" + std::to_string(s->generation);
  s->password = util::RandomToken(32);
  s->server_password = util::RandomToken(32);
}

// The password the slot's role has on the server: the lease's own in clone mode; in rollback mode
// one only the daemon knows, so the lease's DSN works through the proxy alone.
const std::string& ServerPassword(const Slot& s, RecycleMode mode) {
  return mode == RecycleMode::kRollback ? s.server_password : s.password;
}

}  // namespace

void PoolManager::Impl::Worker() {
  util::LowerThreadPriority(kBackgroundNice);
  std::unique_lock<std::mutex> lock(mu);
  for (;;) {
    jobs_cv.wait(lock, [&] { return stopping || !jobs.empty(); });
    if (stopping) return;
    Job job = jobs.front();
    jobs.pop_front();
    auto it = slots.find(job.slot_id);
    if (it == slots.end()) continue;
    Slot snapshot = it->second;
    lock.unlock();
    {
      std::lock_guard<std::mutex> io(*snapshot.io);
      switch (job.kind) {
        case Job::Kind::kWarm: Warm(snapshot); break;
        case Job::Kind::kRecycle: Recycle(snapshot); break;
        case Job::Kind::kDestroy: Destroy(snapshot); break;
      }
    }
    lock.lock();
  }
}

// Server work on a copy of a slot is done: write its results back and make it ready (under mu).
void PoolManager::Impl::BecomeReady(const Slot& s) {
  Slot& live = slots.at(s.id);
  live.role = s.role;
  live.password = s.password;
  live.baseline = s.baseline;
  live.generation = s.generation;
  live.server_password = s.server_password;
  live.pinned = s.pinned;
  live.rolled_back = false;
  live.cut_off = false;
  live.server = s.server;
  live.host = s.host;
  live.port = s.port;
  SetState(live, SlotState::kReady);
  OfferReady(live);
  Rebalance(pools.at(s.pool));
}

// Clone + role + baseline, then ready. `s` is a copy; results are written back under mu.
void PoolManager::Impl::Warm(Slot s) {
  std::string template_db;
  RecycleMode mode;
  {
    std::lock_guard<std::mutex> lock(mu);
    const Pool& p = pools.at(s.pool);
    if (!p.current) {  // replaced or dropped since this warm was queued: nothing to warm for
      Discard(slots.at(s.id));
      return;
    }
    template_db = p.template_db;
    mode = p.config.recycle;
  }
  util::MonoTime t0 = clock.Now();
  try {
    NewCredentials(&s);
    rows.InsertWarming(SlotRow{s.id, s.name, s.hash, s.database, "warming", "", "", "", "", s.token});
    if (servers != nullptr) StartServer(&s);
    CloneAndPrepare(&s, template_db, mode);
    if (mode == RecycleMode::kRollback) PinSession(&s);
    rows.MarkReady(SlotRow{s.id, s.name, s.hash, s.database, "ready", s.role, s.password, "", s.baseline, s.token});
  } catch (const std::exception& e) {
    log::Error("slot.warm_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
    std::lock_guard<std::mutex> lock(mu);
    ++counters.slots_broken;
    Pool& p = pools.at(s.pool);
    ++p.warm_failures;
    // 0.2 s, 0.4 s, … up to 10 s between attempts while warming keeps failing.
    auto delay = std::chrono::milliseconds(200) * (1 << std::min(p.warm_failures - 1, 6));
    p.next_warm = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(10));
    Slot& live = slots.at(s.id);
    live.role = s.role;
    live.pinned = s.pinned;
    Discard(live);
    return;
  }
  log::Info("slot.ready", {{"slot", s.id}, {"template", s.name}, {"database", s.database},
                           {"ms", log::Ms(util::MsBetween(t0, clock.Now()))}});
  std::lock_guard<std::mutex> lock(mu);
  pools.at(s.pool).warm_failures = 0;
  BecomeReady(s);
}

// The write marks of a database cloned from its pool's template a moment ago (nobody else has
// connected to it): its counters, and the template's sequences. Not under mu.
void PoolManager::Impl::CloneAndPrepare(Slot* s, const std::string& template_db, RecycleMode mode) {
  std::shared_ptr<SlotOps> ops = Ops(*s);
  ops->CloneDatabase(s->database, template_db);
  ops->PrepareRole(s->database, s->role, ServerPassword(*s, mode));
  s->baseline = FreshCloneMarks(*s);
}

std::shared_ptr<SlotOps> PoolManager::Impl::OpsLocked(const Slot& s) {
  if (servers == nullptr) return shared_ops;
  auto it = slot_ops.find(s.id);
  if (it != slot_ops.end()) return it->second;
  if (s.server.params().empty()) {
    throw Error(ErrorCode::kInternal, "slot " + s.id + " has no server yet");
  }
  // Few connections: one slot's work is serialised (Slot::io), the reaper's cut-offs aside.
  auto ops = std::make_shared<SlotOps>(s.server, [](int) {}, /*max_idle=*/2);
  slot_ops.emplace(s.id, ops);
  return ops;
}

void PoolManager::Impl::StartServer(Slot* s) {
  const util::MonoTime t0 = clock.Now();
  backend::SlotServer server = servers->StartSlot(s->id, s->name, s->hash);
  s->server = server.admin;
  s->host = server.client.Get("host");
  s->port = std::stoi(server.client.Get("port"));
  {
    std::lock_guard<std::mutex> lock(mu);
    slot_ops.erase(s->id);  // a server before this one, if any, is gone
  }
  log::Info("slot.server_started", {{"slot", s->id}, {"template", s->name}, {"container", server.container.substr(0, 12)},
                                    {"port", std::to_string(s->port)}, {"ms", log::Ms(util::MsBetween(t0, clock.Now()))}});
}

void PoolManager::Impl::PinSession(Slot* s) {
  if (pinned == nullptr) {
    throw Error(ErrorCode::kUnavailable, "template '" + s->name +
                                             "' recycles in rollback mode, which needs testpool's wire proxy; "
                                             "this daemon runs without one");
  }
  pinned->Pin(PinnedSessions::Target{s->id, s->database, s->role, s->server_password, s->host, s->port});
  s->pinned = true;
}

std::string PoolManager::Impl::FreshCloneMarks(const Slot& s) {
  std::string sequences;
  {
    std::lock_guard<std::mutex> lock(mu);
    sequences = pools.at(s.pool).sequences;
  }
  if (sequences.empty()) {
    sequences = Ops(s)->SequenceDigest(s.database);
    std::lock_guard<std::mutex> lock(mu);
    pools.at(s.pool).sequences = sequences;
  }
  return WriteMarks{Ops(s)->Counters(s.database), sequences}.Encode();
}

void PoolManager::Impl::Recycle(Slot s) {
  util::MonoTime t0 = clock.Now();
  bool draining;
  std::string template_db;
  RecycleMode recycle;
  {
    std::lock_guard<std::mutex> lock(mu);
    const Pool& p = pools.at(s.pool);
    draining = !p.current;
    template_db = p.template_db;
    recycle = p.config.recycle;
  }
  const char* mode = "skip";
  if (s.lost) {
    // Its server died under the lease: nothing to recycle; the slot is replaced.
    std::lock_guard<std::mutex> lock(mu);
    Discard(slots.at(s.id));
    return;
  }
  try {
    std::shared_ptr<SlotOps> ops = Ops(s);
    if (s.pinned && pinned != nullptr) {
      // Normally done when the lease ended (Finish); here when that never ran (a restart).
      s.rolled_back = pinned->Release(s.id);
      s.pinned = false;
    }
    if (!s.cut_off) ops->CutOff(s.role);
    if (draining) {
      std::lock_guard<std::mutex> lock(mu);
      Discard(slots.at(s.id));
      return;
    }
    if (recycle == RecycleMode::kRollback && s.rolled_back) {
      // Nothing the lease did was committed, and its sequences were restored: hand the database
      // to a fresh role and pin a new session. The old role is dropped.
      mode = "rollback";
      std::string old_role = s.role;
      NewCredentials(&s);
      ops->HandOver(s.database, old_role, s.role, ServerPassword(s, recycle));
      ops->EndSessions(s.database);  // see the skip path below
      PinSession(&s);
    } else if (recycle == RecycleMode::kClone && !s.rolled_back &&
               ops->Unchanged(s.database, WriteMarks::Decode(s.baseline))) {
      // Fresh credentials under a fresh role name; the old role is dropped. The hand-over
      // touches shared catalogs only, so the baseline still holds.
      std::string old_role = s.role;
      NewCredentials(&s);
      ops->HandOver(s.database, old_role, s.role, s.password);
      // A login of the old role that had passed its checks before the cut-off but was not yet
      // visible to it can surface on this database only now, with a role that no longer exists:
      // nobody but the next lease may have a session here, so end any that did.
      ops->EndSessions(s.database);
    } else {
      mode = "clone";
      ops->DropDatabase(s.database);
      ops->DropRole(s.role);
      {
        // The template may have been dropped or replaced meanwhile: then there is nothing to
        // clone from, and nothing to clone for.
        std::lock_guard<std::mutex> lock(mu);
        if (!pools.at(s.pool).current) {
          s.role.clear();
          Discard(slots.at(s.id));
          return;
        }
      }
      NewCredentials(&s);
      CloneAndPrepare(&s, template_db, recycle);
      if (recycle == RecycleMode::kRollback) PinSession(&s);
    }
    rows.MarkReady(SlotRow{s.id, s.name, s.hash, s.database, "ready", s.role, s.password, "", s.baseline, s.token});
  } catch (const std::exception& e) {
    log::Error("slot.recycle_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
    std::lock_guard<std::mutex> lock(mu);
    ++counters.slots_broken;
    Slot& live = slots.at(s.id);
    live.role = s.role;
    live.pinned = s.pinned;
    Discard(live);
    return;
  }
  double ms = util::MsBetween(t0, clock.Now());
  log::Info("slot.recycled", {{"slot", s.id}, {"template", s.name}, {"mode", mode}, {"ms", log::Ms(ms)}});
  std::lock_guard<std::mutex> lock(mu);
  const std::string how = mode;
  if (how == "skip") {
    ++counters.recycles_skipped;
  } else if (how == "rollback") {
    ++counters.recycles_rolled_back;
  } else {
    ++counters.recycles_cloned;
  }
  Observe(&counters.recycle, ms);
  BecomeReady(s);
}

void PoolManager::Impl::Destroy(Slot s) {
  if (s.pinned && pinned != nullptr) pinned->Release(s.id);
  try {
    if (servers != nullptr) {
      // The server goes with everything in it.
      {
        std::lock_guard<std::mutex> lock(mu);
        slot_ops.erase(s.id);
      }
      servers->RemoveSlot(s.id);
    } else {
      if (!s.role.empty()) shared_ops->CutOff(s.role);
      shared_ops->DropDatabase(s.database);
      if (!s.role.empty()) shared_ops->DropRole(s.role);
    }
    rows.Delete(s.id);
    log::Info("slot.destroyed", {{"slot", s.id}, {"template", s.name}, {"database", s.database}});
  } catch (const std::exception& e) {
    // Left for the next start's reconcile, which removes what no row owns.
    log::Error("slot.destroy_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
  }
  std::lock_guard<std::mutex> lock(mu);
  Pool& p = pools.at(s.pool);
  --p.count[SlotState::kBroken];
  slots.erase(s.id);
  --total_slots;
  if (!p.current && p.Total() == 0 && p.waiters.empty()) pools.erase(s.pool);
  RebalanceAll();  // capacity came free
}

void PoolManager::Impl::Reaper() {
  util::LowerThreadPriority(kBackgroundNice);
  std::unique_lock<std::mutex> lock(mu);
  while (!stopping) {
    reaper_cv.wait_for(lock, options.reaper_interval);
    if (stopping) return;
    util::WallTime now = clock.WallNow();
    std::vector<std::pair<std::string, std::string>> expired;  // lease id, role
    for (auto& [id, lease] : leases) {
      if (lease.state == LeaseState::kActive && lease.expires_at <= now && ending.insert(id).second) {
        expired.emplace_back(id, lease.user);
      }
    }
    TrimEnded();
    RebalanceAll();  // picks up pools whose warm back-off ran out
    const auto real_now = std::chrono::steady_clock::now();
    const bool check_servers = servers != nullptr && !passive && real_now >= next_server_check;
    const bool orphan_sweep = check_servers && real_now >= next_orphan_sweep;
    if (check_servers) next_server_check = real_now + kServerCheckInterval;
    if (orphan_sweep) next_orphan_sweep = real_now + kOrphanSweepInterval;
    if (expired.empty() && !check_servers) continue;
    lock.unlock();
    for (const auto& [lease_id, role] : expired) Finish(lease_id, role, LeaseState::kExpired);
    if (check_servers) {
      try {
        CheckServers(orphan_sweep);
      } catch (const std::exception& e) {
        log::Warn("pool.server_check_failed", {{"error", e.what()}});
      }
    }
    lock.lock();
  }
}

// Ends a lease whose id is in `ending`: cuts its credentials off first (so an ended lease's DSN
// never connects), then marks it ended and queues the recycle, then records it. Not under mu.
void PoolManager::Impl::Finish(const std::string& lease_id, const std::string& role, LeaseState how) {
  // Rollback mode: the proxy closes the lease's client connections and rolls its transaction
  // back first; then the server-side role is cut off like any other.
  std::optional<bool> rolled_back;
  std::string pinned_slot;
  std::shared_ptr<SlotOps> ops;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = leases.find(lease_id);
    if (it != leases.end() && slots.count(it->second.slot_id)) {
      const Slot& s = slots.at(it->second.slot_id);
      if (s.pinned && pinned != nullptr) pinned_slot = s.id;
      try {
        ops = OpsLocked(s);
      } catch (const Error&) {
        // No server to cut off on: the recycle job finds out what became of it.
      }
    }
  }
  if (!pinned_slot.empty()) rolled_back = pinned->Release(pinned_slot);
  // A lease "lost" with its server has nothing left to cut off (and nothing to connect to).
  const bool server_gone = how == LeaseState::kLost;
  bool cut_off = server_gone;
  for (int attempt = 1; attempt <= 3 && !cut_off && ops; ++attempt) {
    try {
      ops->CutOff(role);
      cut_off = true;
    } catch (const std::exception& e) {
      // After three tries the recycle job still cuts off before it touches the database.
      log::Error("lease.cutoff_failed", {{"lease", lease_id}, {"role", role}, {"attempt", std::to_string(attempt)},
                                         {"error", e.what()}});
    }
  }
  std::string slot_id;
  {
    std::lock_guard<std::mutex> lock(mu);
    ending.erase(lease_id);
    auto it = leases.find(lease_id);
    if (it == leases.end() || it->second.state != LeaseState::kActive) return;
    slot_id = it->second.slot_id;
    if (rolled_back) {
      Slot& s = slots.at(slot_id);
      s.pinned = false;
      s.rolled_back = *rolled_back;
    }
    EndLease(it->second, how, cut_off);
  }
  try {
    rows.End(lease_id, slot_id, how);
  } catch (const std::exception& e) {
    log::Error("lease.persist_failed", {{"lease", lease_id}, {"error", e.what()}});
  }
  if (lease_ended) lease_ended(lease_id);
}

void PoolManager::Impl::CheckServers(bool orphan_sweep) {
  std::map<std::string, backend::SlotServer> alive;  // by slot id, running ones
  std::vector<backend::SlotServer> orphans;
  std::vector<std::pair<std::string, std::string>> lost_leases;  // lease id, role
  const std::vector<backend::SlotServer> listed = servers->ListSlots();
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const backend::SlotServer& server : listed) {
      if (!slots.count(server.slot_id)) {
        orphans.push_back(server);
      } else if (server.running) {
        alive.emplace(server.slot_id, server);
      }
    }
    for (auto& [id, s] : slots) {
      // Warming and recycling slots find out for themselves (their work fails and they are replaced).
      if (s.port == 0 || alive.count(id) || (s.state != SlotState::kReady && s.state != SlotState::kLeased)) continue;
      log::Warn("slot.server_lost", {{"slot", id}, {"template", s.name}, {"state", StateName(s.state)},
                                     {"lease", s.lease_id}});
      s.lost = true;
      if (s.state == SlotState::kReady) {
        Pool& p = pools.at(s.pool);
        p.ready.erase(std::remove(p.ready.begin(), p.ready.end(), id), p.ready.end());
        Discard(s);
      } else if (!s.lease_id.empty() && ending.insert(s.lease_id).second) {
        lost_leases.emplace_back(s.lease_id, s.role);
      }
    }
    if (!orphan_sweep) orphans.clear();
  }
  for (const auto& [lease_id, role] : lost_leases) Finish(lease_id, role, LeaseState::kLost);
  for (const backend::SlotServer& server : orphans) {
    log::Info("reconcile.orphan_server", {{"slot", server.slot_id}, {"container", server.container.substr(0, 12)}});
    try {
      servers->RemoveSlot(server.slot_id);
    } catch (const std::exception& e) {
      log::Warn("reconcile.orphan_kept", {{"slot", server.slot_id}, {"error", e.what()}});
    }
  }
}

}  // namespace testpool::core
