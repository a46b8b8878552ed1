// Lease lifecycle: Acquire (take a ready slot or wait for one, record the grant), Renew, Release
// and expiry by the reaper, both ending through Finish (cut the credentials off, mark the lease
// ended, hand the slot to its recycle: pool_slots.cc), GetLease. Reset and checkpoints:
// pool_reset.cc.
#include <algorithm>

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/pg/conninfo.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"
#include "orchestrator/util/thread.h"

namespace testpool::core {
namespace {

Error Invalid(const std::string& m) { return Error(ErrorCode::kInvalidArgument, m); }

Error Draining() {
  return Error(ErrorCode::kDraining,
               "the daemon is stopping (SIGTERM) and takes no new leases; ask again after Retry-After seconds");
}

// How often a waiting lease request asks whether its client is still there.
constexpr std::chrono::milliseconds kAbandonedPoll{200};

}  // namespace

// ---- grant -----------------------------------------------------------------------------------

// The steps are Impl's, declared in pool_manager_impl.h in this order; each says whether it runs
// under the mutex. Only TakeOrWait holds it, and never across I/O.
LeaseInfo PoolManager::Acquire(const LeaseRequest& req) {
  impl_->CheckRequest(req);
  const util::Stopwatch since_request;
  Impl::Grant grant = impl_->TakeOrWait(req, since_request.start());
  const util::Stopwatch write;
  impl_->RecordGrant(grant.lease);
  if (grant.pinned) impl_->AdmitToProxy(grant.lease, req);
  const LeaseInfo& lease = grant.lease;
  log::Info("lease.granted", {{"lease", lease.id}, {"slot", lease.slot_id}, {"template", lease.template_name},
                              {"token", std::to_string(lease.token)}, {"holder", lease.holder},
                              {"wait_ms", log::Ms(lease.wait_ms)},
                              {"write_ms", log::Ms(write.ElapsedMs())}});
  if (grant.waited) impl_->ReleaseIfAbandoned(lease, req);
  return grant.lease;
}

void PoolManager::Impl::CheckRequest(const LeaseRequest& req) const {
  util::CheckName(req.template_name, "template name");
  if (req.ttl.count() < 1 || req.ttl > options.max_ttl) {
    throw Invalid("ttl_s must be between 1 and " + std::to_string(options.max_ttl.count()));
  }
  if (req.wait.count() < 0 || req.wait > options.max_wait) {
    throw Invalid("wait_s must be between 0 and " + std::to_string(options.max_wait.count()));
  }
  if (req.holder.size() > 200) throw Invalid("holder must be at most 200 characters");
}

PoolManager::Impl::Grant PoolManager::Impl::TakeOrWait(const LeaseRequest& req, util::MonoTime start) {
  std::unique_lock<std::mutex> lock(mu);
  Pool& p = PoolForLease(req.template_name);
  Grant grant;
  std::string slot_id;
  if (p.waiters.empty() && !p.ready.empty()) {  // FIFO: nobody waiting may be overtaken
    slot_id = p.ready.front();
    p.ready.pop_front();
    Rebalance(p);
  } else {
    grant.waited = true;
    slot_id = WaitForSlot(lock, p, req, start + req.wait);
  }
  Slot& s = slots.at(slot_id);
  grant.pinned = s.pinned;
  grant.lease = HandOut(s, req, start);
  return grant;
}

Pool& PoolManager::Impl::PoolForLease(const std::string& name) {
  if (draining) throw Draining();
  if (passive) {
    throw Error(ErrorCode::kUnavailable,
                "another testpool daemon manages the pools on this server; take leases from that daemon");
  }
  auto cur = current.find(name);
  if (cur == current.end()) {
    throw Error(ErrorCode::kNotFound, "no template named '" + name + "' is ready for leases");
  }
  return pools.at(cur->second);
}

std::string PoolManager::Impl::WaitForSlot(std::unique_lock<std::mutex>& lock, Pool& p, const LeaseRequest& req,
                                           util::MonoTime deadline) {
  auto w = std::make_shared<Waiter>();
  p.waiters.push_back(w);
  Rebalance(p);
  auto done = [&] { return !w->slot_id.empty() || stopping || draining || w->cancelled; };
  bool gone = false;
  while (!done() && !gone) {
    const util::MonoTime now = util::RealMonoNow();
    if (now >= deadline) break;
    auto slice = deadline - now;
    if (req.abandoned) slice = std::min<util::MonoTime::duration>(slice, kAbandonedPoll);
    if (w->cv.wait_for(lock, slice, done) || !req.abandoned) continue;
    lock.unlock();  // the check is a system call; a slot handed over meanwhile is seen by done()
    gone = req.abandoned();
    lock.lock();
  }
  if (w->slot_id.empty()) GiveUpWaiting(w, p, req, gone);
  return w->slot_id;
}

void PoolManager::Impl::GiveUpWaiting(const std::shared_ptr<Waiter>& w, Pool& asked, const LeaseRequest& req,
                                      bool gone) {
  for (auto& [key, pool] : pools) {  // the waiter may have moved to a newer hash's pool
    auto& q = pool.waiters;
    q.erase(std::remove(q.begin(), q.end(), w), q.end());
  }
  if (stopping) throw Error(ErrorCode::kUnavailable, "the daemon is stopping");
  if (draining) throw Draining();
  if (w->cancelled) throw Error(ErrorCode::kNotFound, "template '" + req.template_name + "' was dropped while waiting");
  if (gone) {
    ++counters.leases_abandoned;
    log::Info("lease.abandoned", {{"template", req.template_name}, {"holder", req.holder}, {"while", "waiting"}});
    throw Error(ErrorCode::kUnavailable,
                "the client went away while waiting for a database of template '" + req.template_name + "'");
  }
  ++counters.leases_exhausted;
  auto now_cur = current.find(req.template_name);
  Pool& np = now_cur == current.end() ? asked : pools.at(now_cur->second);
  throw Error(ErrorCode::kPoolExhausted,
              "no database of template '" + req.template_name + "' came free within " +
                  std::to_string(req.wait.count()) + " s (pool: " + std::to_string(np.count[SlotState::kLeased]) +
                  " leased, " + std::to_string(np.count[SlotState::kWarming] + np.count[SlotState::kRecycling]) +
                  " warming or recycling, max " + std::to_string(np.config.max) + "; " + std::to_string(total_slots) +
                  " of " + std::to_string(options.max_databases) + " databases in all)",
              {{"template", req.template_name}});
}

LeaseInfo PoolManager::Impl::HandOut(Slot& s, const LeaseRequest& req, util::MonoTime start) {
  SetState(s, SlotState::kLeased);
  ++s.token;
  LeaseInfo lease = MakeLease(s, req.holder, req.ttl);
  s.lease_id = lease.id;
  lease.wait_ms = util::MsBetween(start, util::RealMonoNow());
  leases[lease.id] = lease;
  ++counters.leases_granted;
  Observe(&counters.wait, lease.wait_ms);
  return lease;
}

LeaseInfo PoolManager::Impl::MakeLease(const Slot& s, const std::string& holder, std::chrono::seconds ttl) {
  pg::ConnInfo client = backend.ClientConnInfo();
  if (s.port != 0) client.Set("host", s.host).Set("port", std::to_string(s.port));  // the slot's own server
  if (ModeOf(s) == RecycleMode::kRollback && pinned != nullptr) {
    // Rollback mode: clients reach the database through the proxy only.
    client.Set("host", pinned->host()).Set("port", std::to_string(pinned->port()));
  }
  LeaseInfo l;
  l.id = util::RandomToken(26);
  l.template_name = s.name;
  l.hash = s.hash;
  l.slot_id = s.id;
  l.holder = holder;
  l.host = client.Get("host");
  l.port = std::stoi(client.Get("port"));
  l.user = s.role;
  l.password = s.password;
  l.database = s.database;
  pg::ConnInfo dsn = client;
  dsn.Set("user", s.role).Set("password", s.password).Set("dbname", s.database);
  l.dsn = dsn.ToUri();
  l.token = s.token;
  l.created_at = clock.WallNow();
  l.expires_at = l.created_at + ttl;
  l.state = LeaseState::kActive;
  return l;
}

void PoolManager::Impl::RecordGrant(const LeaseInfo& lease) {
  try {
    rows->Grant(LeaseRow{lease.id, lease.slot_id, lease.template_name, lease.hash, lease.holder, LeaseState::kActive,
                        lease.token, lease.created_at, lease.expires_at});
  } catch (const Error& e) {
    UndoGrant(lease);
    throw Error(ErrorCode::kUnavailable, std::string("cannot record the lease: ") + e.what());
  }
}

void PoolManager::Impl::UndoGrant(const LeaseInfo& lease) {
  std::lock_guard<std::mutex> lock(mu);
  leases.erase(lease.id);
  --counters.leases_granted;
  Slot& s = slots.at(lease.slot_id);
  s.lease_id.clear();
  SetState(s, SlotState::kReady);
  OfferReady(s);
}

void PoolManager::Impl::AdmitToProxy(const LeaseInfo& lease, const LeaseRequest& req) {
  try {
    pinned->Admit(lease.slot_id, lease.id, lease.user, lease.password);
  } catch (const std::exception& e) {
    // The slot's pinned session is gone: end this lease at once (its slot is re-cloned) and say so.
    log::Error("lease.admit_failed", {{"lease", lease.id}, {"slot", lease.slot_id}, {"error", e.what()}});
    ReleaseLease(lease.id);
    throw Error(ErrorCode::kUnavailable, "the database handed out for template '" + req.template_name +
                                             "' lost its pinned session; try again (" + e.what() + ")");
  }
}

void PoolManager::Impl::ReleaseIfAbandoned(const LeaseInfo& lease, const LeaseRequest& req) {
  if (!req.abandoned || !req.abandoned()) return;
  {
    std::lock_guard<std::mutex> lock(mu);
    ++counters.leases_abandoned;
  }
  log::Info("lease.abandoned", {{"lease", lease.id}, {"slot", lease.slot_id}, {"template", lease.template_name},
                                {"while", "granted"}});
  ReleaseLease(lease.id);
  throw Error(ErrorCode::kUnavailable,
              "the client went away while waiting for a database of template '" + req.template_name + "'");
}

// ---- while active ------------------------------------------------------------------------------

LeaseInfo PoolManager::Renew(const std::string& lease_id, std::chrono::seconds ttl) {
  const PoolOptions& o = impl_->options;
  if (ttl.count() < 1 || ttl > o.max_ttl) throw Invalid("ttl_s must be between 1 and " + std::to_string(o.max_ttl.count()));
  LeaseInfo out;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      lock.unlock();
      throw impl_->UnknownLease(lease_id);
    }
    LeaseInfo& l = it->second;
    util::WallTime now = impl_->clock.WallNow();
    if (l.state == LeaseState::kLost) {
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " was lost: the server holding its database (" +
                                                std::string(impl_->backend.Kind()) +
                                                " backend) stopped, and its data with it; take a new lease");
    }
    if (l.state != LeaseState::kActive || l.expires_at <= now || impl_->ending.count(lease_id)) {
      const LeaseState ended_as = l.state == LeaseState::kActive ? LeaseState::kExpired : l.state;
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended (" + ToString(ended_as) + ")");
    }
    l.expires_at = now + ttl;
    out = l;
  }
  impl_->rows->Renew(lease_id, out.expires_at);
  log::Info("lease.renewed", {{"lease", lease_id}, {"slot", out.slot_id}, {"ttl_s", std::to_string(ttl.count())}});
  return out;
}

LeaseInfo PoolManager::GetLease(const std::string& lease_id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it != impl_->leases.end()) return it->second;
  }
  auto row = impl_->rows->FindLease(lease_id);
  if (!row) throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
  LeaseInfo l;
  l.id = row->id;
  l.template_name = row->template_name;
  l.hash = row->hash;
  l.slot_id = row->slot_id;
  l.holder = row->holder;
  l.token = row->token;
  l.created_at = row->created_at;
  l.expires_at = row->expires_at;
  l.state = row->state;
  return l;
}

Error PoolManager::Impl::UnknownLease(const std::string& lease_id) {
  if (rows->FindLease(lease_id)) return Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
  return Error(ErrorCode::kNotFound, "no lease " + lease_id);
}

// ---- end: release, expiry, loss --------------------------------------------------------------

void PoolManager::Release(const std::string& lease_id) { impl_->ReleaseLease(lease_id); }

void PoolManager::Impl::ReleaseLease(const std::string& lease_id) {
  std::string role;
  {
    std::unique_lock<std::mutex> lock(mu);
    auto it = leases.find(lease_id);
    if (it == leases.end()) {
      lock.unlock();
      if (rows->FindLease(lease_id)) return;  // ended long ago: releasing again is fine
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    if (it->second.state != LeaseState::kActive || !ending.insert(lease_id).second) return;  // ended, or ending
    role = it->second.user;
  }
  Finish(lease_id, role, LeaseState::kReleased);
}

// Ends a lease whose id is in `ending`: cuts its credentials off first (so an ended lease's DSN
// never connects), then marks it ended and queues the recycle, then records it. Not under mu.
void PoolManager::Impl::Finish(const std::string& lease_id, const std::string& role, LeaseState how) {
  // Rollback mode: the proxy closes the lease's client connections and rolls its transaction
  // back first; then the server-side role is cut off like any other.
  std::optional<bool> rolled_back;
  std::string pinned_slot;
  std::shared_ptr<SlotWork> ops;
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
    rows->End(lease_id, slot_id, how);
  } catch (const std::exception& e) {
    log::Error("lease.persist_failed", {{"lease", lease_id}, {"error", e.what()}});
  }
  if (lease_ended) lease_ended(lease_id);
}

// Ends an active lease (under mu): the slot goes to recycling and a recycle job is queued.
// `cut_off`: the lease's credentials were cut off already (the recycle need not do it again).
void PoolManager::Impl::EndLease(LeaseInfo& lease, LeaseState how, bool cut_off) {
  lease.state = how;
  lease.password.clear();
  lease.dsn.clear();
  ended_at[lease.id] = clock.Now();
  Slot& s = slots.at(lease.slot_id);
  SetState(s, SlotState::kRecycling);
  s.lease_id.clear();
  s.cut_off = cut_off;
  if (how == LeaseState::kReleased) ++counters.leases_released; else ++counters.leases_expired;
  log::Info(std::string("lease.") + ToString(how), {{"lease", lease.id}, {"slot", s.id}, {"template", lease.template_name},
                                          {"token", std::to_string(lease.token)}});
  Enqueue(Job::Kind::kRecycle, s.id);
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
    bool orphan_sweep = false;
    const bool check_servers = ServerCheckDue(&orphan_sweep);
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

// Forgets ended leases after a while (the control database keeps them).
void PoolManager::Impl::TrimEnded() {
  auto cutoff = clock.Now() - std::chrono::minutes(10);
  for (auto it = ended_at.begin(); it != ended_at.end();) {
    if (it->second < cutoff || ended_at.size() > 20000) {
      leases.erase(it->first);
      it = ended_at.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace testpool::core
