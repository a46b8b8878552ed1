// Slot lifecycle: warming → ready → leased → recycling → ready, and broken → destroyed.
// The one checked change of state, the ready queue and its waiters, how many slots each pool
// warms under the caps, the recycler threads' job queue, and the server work itself (warm,
// recycle after a lease, destroy), done on a copy of the slot outside the mutex and written back
// under it. A lease hands its slot over in pool_leases.cc (EndLease queues the recycle).
#include <algorithm>

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"
#include "orchestrator/util/thread.h"

namespace testpool::core {
namespace {

// The next role of a slot: a name never used before (its generation counts up) and fresh random
// passwords (the lease's, and the server-side one rollback mode logs in with). Roles are never
// reused across leases.
void NewCredentials(Slot* s) {
  ++s->generation;
  s->role = SlotRolePrefix(s->id) + std::to_string(s->generation);
  s->password = util::RandomToken(32);
  s->server_password = util::RandomToken(32);
}

}  // namespace

// ---- state and capacity, under mu ------------------------------------------------------------

void PoolManager::Impl::SetState(Slot& s, SlotState to) {
  if (!Allowed(s.state, to)) {
    // A broken invariant here could hand one database to two holders: stop, loudly, in every build.
    log::Error("slot.bad_transition", {{"slot", s.id}, {"from", StateName(s.state)}, {"to", StateName(to)}});
    std::abort();
  }
  Pool& p = pools.at(s.pool);
  --p.count[s.state];
  ++p.count[to];
  log::Debug("slot.state", {{"slot", s.id}, {"template", s.name}, {"from", StateName(s.state)}, {"to", StateName(to)}});
  s.state = to;
}

// Marks a slot broken and queues its removal.
void PoolManager::Impl::Discard(Slot& s) {
  SetState(s, SlotState::kBroken);
  Enqueue(Job::Kind::kDestroy, s.id);
}

// A slot is ready: the first waiter gets it, else it joins the ready queue.
void PoolManager::Impl::OfferReady(Slot& s) {
  Pool& p = pools.at(s.pool);
  if (!p.current) {
    Discard(s);
    return;
  }
  if (!p.waiters.empty()) {
    std::shared_ptr<Waiter> w = p.waiters.front();
    p.waiters.pop_front();
    w->slot_id = s.id;
    w->cv.notify_one();
    return;
  }
  p.ready.push_back(s.id);
}

// Starts as many warms as the pool needs and the caps allow; borrows from idle pools when the
// global cap stands between waiters and a slot.
void PoolManager::Impl::Rebalance(Pool& p) {
  if (!p.current) {
    while (!p.ready.empty()) {
      std::string id = p.ready.front();
      p.ready.pop_front();
      Discard(slots.at(id));
    }
    return;
  }
  if (p.warm_failures > 0 && util::RealMonoNow() < p.next_warm) return;  // backing off; the reaper retries
  int available = p.count[SlotState::kReady] + p.count[SlotState::kWarming] + p.count[SlotState::kRecycling];
  int want = p.config.min_ready + static_cast<int>(p.waiters.size());
  while (available < want && p.Total() < p.config.max) {
    if (total_slots >= options.max_databases) {
      if (!p.waiters.empty()) Borrow(p);
      break;
    }
    Slot s;
    s.id = util::RandomToken(8);
    s.name = p.name;
    s.hash = p.hash;
    s.pool = p.template_db;
    s.database = std::string(kDatabasePrefix) + "s_" + p.hash.substr(0, 12) + "_" + s.id;
    ++p.count[SlotState::kWarming];
    ++total_slots;
    ++available;
    slots.emplace(s.id, s);
    Enqueue(Job::Kind::kWarm, s.id);
  }
}

void PoolManager::Impl::Borrow(Pool& starving) {
  Pool* donor = nullptr;
  for (auto& [key, q] : pools) {
    if (&q == &starving || q.ready.empty() || !q.waiters.empty()) continue;
    if (donor == nullptr || q.ready.size() > donor->ready.size()) donor = &q;
  }
  if (donor == nullptr) return;
  std::string id = donor->ready.back();
  donor->ready.pop_back();
  log::Info("pool.borrow", {{"from", donor->name}, {"to", starving.name}, {"slot", id}});
  Discard(slots.at(id));
}

// Pools with waiters first, so capacity freed for a starving pool is not refilled elsewhere.
void PoolManager::Impl::RebalanceAll() {
  for (auto& [key, p] : pools) {
    if (!p.waiters.empty()) Rebalance(p);
  }
  for (auto& [key, p] : pools) {
    if (p.waiters.empty()) Rebalance(p);
  }
}

// ---- the recycler threads ----------------------------------------------------------------------

void PoolManager::Impl::Enqueue(Job::Kind kind, const std::string& slot_id) {
  jobs.push_back(Job{kind, slot_id});
  jobs_cv.notify_one();
}

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

// ---- warm ------------------------------------------------------------------------------------

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
  const util::Stopwatch took;
  const util::MonoTime started = util::RealMonoNow();
  try {
    NewCredentials(&s);
    rows->InsertWarming(SlotRow{s.id, s.name, s.hash, s.database, "warming", "", "", "", "", s.token});
    if (servers != nullptr) StartServer(&s);
    CloneAndPrepare(&s, template_db, mode);
    if (mode == RecycleMode::kRollback) PinSession(&s);
    rows->MarkReady(SlotRow{s.id, s.name, s.hash, s.database, "ready", s.role, s.password, "", s.baseline, s.token});
  } catch (const std::exception& e) {
    log::Error("slot.warm_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
    std::lock_guard<std::mutex> lock(mu);
    ++counters.slots_broken;
    Pool& p = pools.at(s.pool);
    if (p.warm_failures == 0 || started >= p.failed_at) {  // else in flight with the last counted one
      ++p.warm_failures;
      p.failed_at = util::RealMonoNow();
      // 0.2 s, 0.4 s, … up to 10 s between attempts while warming keeps failing.
      auto delay = std::chrono::milliseconds(200) * (1 << std::min(p.warm_failures - 1, 6));
      p.next_warm = p.failed_at + std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(10));
    }
    Slot& live = slots.at(s.id);
    live.role = s.role;
    live.pinned = s.pinned;
    Discard(live);
    return;
  }
  log::Info("slot.ready", {{"slot", s.id}, {"template", s.name}, {"database", s.database},
                           {"ms", log::Ms(took.ElapsedMs())}});
  std::lock_guard<std::mutex> lock(mu);
  pools.at(s.pool).warm_failures = 0;
  BecomeReady(s);
}

// The write marks of a database cloned from its pool's template a moment ago (nobody else has
// connected to it): its counters, and the template's sequences. Not under mu.
void PoolManager::Impl::CloneAndPrepare(Slot* s, const std::string& template_db, RecycleMode mode) {
  std::shared_ptr<SlotWork> ops = Ops(*s);
  ops->CloneDatabase(s->database, template_db);
  ops->PrepareRole(s->database, s->role, ServerPassword(*s, mode));
  s->baseline = FreshCloneMarks(*s);
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

void PoolManager::Impl::PinSession(Slot* s) {
  if (pinned == nullptr) {
    throw Error(ErrorCode::kUnavailable, "template '" + s->name +
                                             "' recycles in rollback mode, which needs testpool's wire proxy; "
                                             "this daemon runs without one");
  }
  pinned->Pin(PinnedSessions::Target{s->id, s->database, s->role, s->server_password, s->host, s->port});
  s->pinned = true;
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
  live.checkpoints.clear();
  live.checkpoints_made = 0;
  live.at_checkpoint.clear();
  live.checkpoint_marks.clear();
  live.rolled_back = false;
  live.cut_off = false;
  live.server = s.server;
  live.host = s.host;
  live.port = s.port;
  SetState(live, SlotState::kReady);
  OfferReady(live);
  Rebalance(pools.at(s.pool));
}

// ---- recycle after a lease, destroy ------------------------------------------------------------

void PoolManager::Impl::Recycle(Slot s) {
  const util::Stopwatch took;
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
  if (s.lost) {
    // Its server died under the lease: nothing to recycle; the slot is replaced.
    std::lock_guard<std::mutex> lock(mu);
    Discard(slots.at(s.id));
    return;
  }
  RecycleOutcome mode = RecycleOutcome::kSkip;
  try {
    std::shared_ptr<SlotWork> ops = Ops(s);
    if (s.pinned && pinned != nullptr) {
      // Normally done when the lease ended (Finish); here when that never ran (a restart).
      s.rolled_back = pinned->Release(s.id);
      s.pinned = false;
    }
    if (!s.cut_off) ops->CutOff(s.role);
    // The lease's checkpoints end with it. Its database is not at the template's state after one
    // (`baseline` is empty, in the row too), so it is re-cloned below.
    DropCheckpoints(&s, *ops, 0);
    if (draining) {
      std::lock_guard<std::mutex> lock(mu);
      Discard(slots.at(s.id));
      return;
    }
    if (recycle == RecycleMode::kRollback && s.rolled_back) {
      // Nothing the lease did was committed, and its sequences were restored.
      mode = RecycleOutcome::kRollback;
      HandToFreshRole(&s, *ops, recycle);
      PinSession(&s);
    } else if (recycle == RecycleMode::kClone && !s.rolled_back &&
               ops->Unchanged(s.database, WriteMarks::Decode(s.baseline))) {
      // Nothing was written. The hand-over touches shared catalogs only, so the baseline holds.
      HandToFreshRole(&s, *ops, recycle);
    } else {
      mode = RecycleOutcome::kClone;
      if (!Reclone(&s, *ops, template_db, recycle)) return;
    }
    rows->MarkReady(SlotRow{s.id, s.name, s.hash, s.database, "ready", s.role, s.password, "", s.baseline, s.token});
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
  FinishRecycle(s, mode, took.ElapsedMs());
}

void PoolManager::Impl::HandToFreshRole(Slot* s, SlotWork& ops, RecycleMode recycle) {
  // Fresh credentials under a fresh role name; the old role is dropped.
  const std::string old_role = s->role;
  NewCredentials(s);
  ops.HandOver(s->database, old_role, s->role, ServerPassword(*s, recycle));
  // A login of the old role that had passed its checks before the cut-off but was not yet
  // visible to it can surface on this database only now, with a role that no longer exists:
  // nobody but the next lease may have a session here, so end any that did.
  ops.EndSessions(s->database);
}

bool PoolManager::Impl::Reclone(Slot* s, SlotWork& ops, const std::string& template_db, RecycleMode recycle) {
  ops.DropDatabase(s->database);
  ops.DropRole(s->role);
  {
    // The template may have been dropped or replaced meanwhile: then there is nothing to clone
    // from, and nothing to clone for.
    std::lock_guard<std::mutex> lock(mu);
    if (!pools.at(s->pool).current) {
      s->role.clear();
      Discard(slots.at(s->id));
      return false;
    }
  }
  NewCredentials(s);
  CloneAndPrepare(s, template_db, recycle);
  if (recycle == RecycleMode::kRollback) PinSession(s);
  return true;
}

void PoolManager::Impl::FinishRecycle(const Slot& s, RecycleOutcome mode, double ms) {
  log::Info("slot.recycled", {{"slot", s.id}, {"template", s.name}, {"mode", ToString(mode)}, {"ms", log::Ms(ms)}});
  std::lock_guard<std::mutex> lock(mu);
  switch (mode) {
    case RecycleOutcome::kSkip: ++counters.recycles_skipped; break;
    case RecycleOutcome::kRollback: ++counters.recycles_rolled_back; break;
    case RecycleOutcome::kClone: ++counters.recycles_cloned; break;
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
      DropCheckpoints(&s, *shared_ops, 0);
      shared_ops->DropDatabase(s.database);
      // Every role of this slot, not only the one its row names: a daemon that died between
      // preparing a role and recording it (a warm, a hand-over) left one no row knows. Role names
      // carry the slot id; each holds rights on the database, so they go after it.
      for (const std::string& role : shared_ops->ListRoles(SlotRolePrefix(s.id))) shared_ops->DropRole(role);
    }
    rows->Delete(s.id);
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

}  // namespace testpool::core
