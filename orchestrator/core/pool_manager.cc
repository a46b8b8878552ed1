// PoolManager: state changes under the mutex (slots, pools, waiters, leases) and the public API.
// Server work lives in pool_recycler.cc, start-up reconcile in pool_reconcile.cc.
#include "orchestrator/core/pool_manager.h"

#include <algorithm>

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/pg/conninfo.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"

namespace testpool::core {
namespace {

Error Invalid(const std::string& m) { return Error(ErrorCode::kInvalidArgument, m); }

// How often a waiting lease request asks whether its client is still there.
constexpr std::chrono::milliseconds kAbandonedPoll{200};

}  // namespace

// ---- state, under mu ------------------------------------------------------------------------

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

void PoolManager::Impl::Enqueue(Job::Kind kind, const std::string& slot_id) {
  jobs.push_back(Job{kind, slot_id});
  jobs_cv.notify_one();
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
  if (p.warm_failures > 0 && std::chrono::steady_clock::now() < p.next_warm) return;  // backing off; the reaper retries
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
PoolManager::PoolManager(ControlStore& store, backend::Backend& backend, const util::Clock& clock, PoolOptions options)
    : impl_(std::make_unique<Impl>(store, backend, clock, options)) {}

PoolManager::~PoolManager() { Stop(); }

void PoolManager::Start() {
  std::unique_lock<std::mutex> lock(impl_->mu);  // held across reconcile: nothing else runs yet
  if (!impl_->threads.empty() || impl_->passive) return;
  impl_->stopping = false;
  if (!impl_->owner_lock) {
    pg::Connection conn = pg::Connection::Open(impl_->store.AdminConnInfo(kControlDatabase));
    // "tp" "pools": the one lock that makes a daemon the pool manager of this server.
    if (conn.Exec("SELECT pg_try_advisory_lock(1953505282, 1)").Get(0, 0) != "t") {
      impl_->passive = true;
      log::Warn("pools.passive", {{"reason", "another testpool daemon manages the pools on this server"}});
      return;
    }
    impl_->owner_lock.emplace(std::move(conn));
  }
  impl_->Reconcile();
  for (int i = 0; i < impl_->options.recycler_threads; ++i) impl_->threads.emplace_back([this] { impl_->Worker(); });
  impl_->threads.emplace_back([this] { impl_->Reaper(); });
  impl_->RebalanceAll();
  std::vector<std::string> ended = std::move(impl_->ended_while_down);
  impl_->ended_while_down.clear();
  lock.unlock();
  if (impl_->lease_ended) {
    for (const std::string& id : ended) impl_->lease_ended(id);
  }
}

void PoolManager::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    for (auto& [hash, p] : impl_->pools) {
      for (auto& w : p.waiters) w->cv.notify_all();
    }
  }
  impl_->jobs_cv.notify_all();
  impl_->reaper_cv.notify_all();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
  // Servers per slot (docker): removed now unless the backend keeps them for the next start —
  // before the lock goes, so a daemon taking over never adopts a server being removed.
  if (impl_->owner_lock && impl_->servers != nullptr) impl_->servers->Shutdown();
  impl_->owner_lock.reset();  // another daemon may manage the pools now
}

void PoolManager::TemplateReady(const std::string& name, const std::string& hash, const std::string& template_db,
                                const PoolConfig& pool) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Pool& p = impl_->EnsurePool(name, hash, true);
  p.current = true;
  if (p.config.recycle != pool.recycle) {
    // Ready slots were prepared for the other mode (pinned or not): warm them again. Leased ones
    // come back through the new mode's recycle.
    for (const std::string& id : p.ready) impl_->Discard(impl_->slots.at(id));
    p.ready.clear();
  }
  p.config = pool;
  auto old = impl_->current.find(name);
  if (old != impl_->current.end() && old->second != p.template_db) {
    Pool& previous = impl_->pools.at(old->second);
    previous.current = false;
    // Waiters asked for the template, not for a hash: they wait on in the new pool, in order.
    for (auto& w : previous.waiters) p.waiters.push_back(w);
    previous.waiters.clear();
    log::Info("pool.draining", {{"template", name}, {"hash", previous.hash.substr(0, 12)}});
    impl_->Rebalance(previous);
  }
  impl_->current[name] = p.template_db;
  (void)template_db;  // always TemplateDatabaseName(name, hash)
  log::Info("pool.configured", {{"template", name}, {"hash", hash.substr(0, 12)},
                                {"min_ready", std::to_string(pool.min_ready)}, {"max", std::to_string(pool.max)}});
  if (!impl_->threads.empty()) impl_->Rebalance(p);
}

void PoolManager::TemplateDropped(const std::string& name) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->current.find(name);
  if (it == impl_->current.end()) return;
  Pool& p = impl_->pools.at(it->second);
  p.current = false;
  impl_->current.erase(it);
  for (auto& w : p.waiters) {
    w->cancelled = true;
    w->cv.notify_all();
  }
  p.waiters.clear();
  impl_->Rebalance(p);
}

LeaseInfo PoolManager::Acquire(const LeaseRequest& req) {
  util::CheckName(req.template_name, "template name");
  const PoolOptions& o = impl_->options;
  if (req.ttl.count() < 1 || req.ttl > o.max_ttl) {
    throw Invalid("ttl_s must be between 1 and " + std::to_string(o.max_ttl.count()));
  }
  if (req.wait.count() < 0 || req.wait > o.max_wait) {
    throw Invalid("wait_s must be between 0 and " + std::to_string(o.max_wait.count()));
  }
  if (req.holder.size() > 200) throw Invalid("holder must be at most 200 characters");

  const auto real_start = std::chrono::steady_clock::now();
  LeaseInfo lease;
  bool waited = false;
  bool slot_pinned = false;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    if (impl_->passive) {
      throw Error(ErrorCode::kUnavailable,
                  "another testpool daemon manages the pools on this server; take leases from that daemon");
    }
    auto cur = impl_->current.find(req.template_name);
    if (cur == impl_->current.end()) {
      throw Error(ErrorCode::kNotFound, "no template named '" + req.template_name + "' is ready for leases");
    }
    Pool* p = &impl_->pools.at(cur->second);
    std::string slot_id;
    if (p->waiters.empty() && !p->ready.empty()) {
      slot_id = p->ready.front();
      p->ready.pop_front();
      impl_->Rebalance(*p);
    } else {
      waited = true;
      auto w = std::make_shared<Waiter>();
      p->waiters.push_back(w);
      impl_->Rebalance(*p);
      const auto deadline = real_start + req.wait;
      auto done = [&] { return !w->slot_id.empty() || impl_->stopping || w->cancelled; };
      bool gone = false;
      while (!done() && !gone) {
        const auto now = std::chrono::steady_clock::now();
        if (now >= deadline) break;
        auto slice = deadline - now;
        if (req.abandoned) slice = std::min<std::chrono::steady_clock::duration>(slice, kAbandonedPoll);
        if (w->cv.wait_for(lock, slice, done) || !req.abandoned) continue;
        lock.unlock();  // the check is a system call; a slot handed over meanwhile is seen by done()
        gone = req.abandoned();
        lock.lock();
      }
      if (w->slot_id.empty()) {
        for (auto& [key, pool] : impl_->pools) {  // the waiter may have moved to a newer hash's pool
          auto& q = pool.waiters;
          q.erase(std::remove(q.begin(), q.end(), w), q.end());
        }
        if (impl_->stopping) throw Error(ErrorCode::kUnavailable, "the daemon is stopping");
        if (w->cancelled) throw Error(ErrorCode::kNotFound, "template '" + req.template_name + "' was dropped while waiting");
        if (gone) {
          ++impl_->counters.leases_abandoned;
          log::Info("lease.abandoned", {{"template", req.template_name}, {"holder", req.holder}, {"while", "waiting"}});
          throw Error(ErrorCode::kUnavailable, "the client went away while waiting for a database of template '" +
                                                   req.template_name + "'");
        }
        ++impl_->counters.leases_exhausted;
        auto now_cur = impl_->current.find(req.template_name);
        Pool& np = now_cur == impl_->current.end() ? *p : impl_->pools.at(now_cur->second);
        throw Error(ErrorCode::kPoolExhausted,
                    "no database of template '" + req.template_name + "' came free within " +
                        std::to_string(req.wait.count()) + " s (pool: " + std::to_string(np.count[SlotState::kLeased]) +
                        " leased, " + std::to_string(np.count[SlotState::kWarming] + np.count[SlotState::kRecycling]) +
                        " warming or recycling, max " + std::to_string(np.config.max) + "; " +
                        std::to_string(impl_->total_slots) + " of " + std::to_string(impl_->options.max_databases) +
                        " databases in all)",
                    {{"template", req.template_name}});
      }
      slot_id = w->slot_id;
    }
    Slot& s = impl_->slots.at(slot_id);
    impl_->SetState(s, SlotState::kLeased);
    slot_pinned = s.pinned;
    ++s.token;
    lease = impl_->MakeLease(s, req.holder, req.ttl);
    s.lease_id = lease.id;
    lease.wait_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - real_start).count();
    impl_->leases[lease.id] = lease;
    ++impl_->counters.leases_granted;
    Observe(&impl_->counters.wait, lease.wait_ms);
  }
  const auto write_start = std::chrono::steady_clock::now();
  try {
    impl_->rows.Grant(LeaseRow{lease.id, lease.slot_id, lease.template_name, lease.hash, lease.holder, LeaseState::kActive,
                               lease.token, lease.created_at, lease.expires_at});
  } catch (const Error& e) {
    // Undo: the slot goes back, untouched; nobody saw the lease.
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->leases.erase(lease.id);
    --impl_->counters.leases_granted;
    Slot& s = impl_->slots.at(lease.slot_id);
    s.lease_id.clear();
    impl_->SetState(s, SlotState::kReady);
    impl_->OfferReady(s);
    throw Error(ErrorCode::kUnavailable, std::string("cannot record the lease: ") + e.what());
  }
  if (slot_pinned) {
    try {
      impl_->pinned->Admit(lease.slot_id, lease.id, lease.user, lease.password);
    } catch (const std::exception& e) {
      // The slot's pinned session is gone: end this lease at once (its slot is re-cloned) and say so.
      log::Error("lease.admit_failed", {{"lease", lease.id}, {"slot", lease.slot_id}, {"error", e.what()}});
      Release(lease.id);
      throw Error(ErrorCode::kUnavailable, "the database handed out for template '" + req.template_name +
                                               "' lost its pinned session; try again (" + e.what() + ")");
    }
  }
  log::Info("lease.granted", {{"lease", lease.id}, {"slot", lease.slot_id}, {"template", lease.template_name},
                              {"token", std::to_string(lease.token)}, {"holder", lease.holder},
                              {"wait_ms", log::Ms(lease.wait_ms)},
                              {"write_ms", log::Ms(std::chrono::duration<double, std::milli>(
                                                       std::chrono::steady_clock::now() - write_start).count())}});
  if (waited && req.abandoned && req.abandoned()) {
    // Granted to a client that left while it waited: nobody will ever use or release this lease.
    {
      std::lock_guard<std::mutex> lock(impl_->mu);
      ++impl_->counters.leases_abandoned;
    }
    log::Info("lease.abandoned", {{"lease", lease.id}, {"slot", lease.slot_id}, {"template", lease.template_name},
                                  {"while", "granted"}});
    Release(lease.id);
    throw Error(ErrorCode::kUnavailable, "the client went away while waiting for a database of template '" +
                                             req.template_name + "'");
  }
  return lease;
}

LeaseInfo PoolManager::Renew(const std::string& lease_id, std::chrono::seconds ttl) {
  const PoolOptions& o = impl_->options;
  if (ttl.count() < 1 || ttl > o.max_ttl) throw Invalid("ttl_s must be between 1 and " + std::to_string(o.max_ttl.count()));
  LeaseInfo out;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      if (impl_->rows.FindLease(lease_id)) throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    LeaseInfo& l = it->second;
    util::WallTime now = impl_->clock.WallNow();
    if (l.state == LeaseState::kLost) {
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " was lost: the server holding its database (" +
                                                std::string(impl_->backend.Kind()) +
                                                " backend) stopped, and its data with it; take a new lease");
    }
    if (l.state != LeaseState::kActive || l.expires_at <= now || impl_->ending.count(lease_id)) {
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended (" + ToString(l.state == LeaseState::kActive ? LeaseState::kExpired : l.state) + ")");
    }
    l.expires_at = now + ttl;
    out = l;
  }
  impl_->rows.Renew(lease_id, out.expires_at);
  log::Info("lease.renewed", {{"lease", lease_id}, {"slot", out.slot_id}, {"ttl_s", std::to_string(ttl.count())}});
  return out;
}

void PoolManager::Release(const std::string& lease_id) {
  std::string role;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      if (impl_->rows.FindLease(lease_id)) return;  // ended long ago: releasing again is fine
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    if (it->second.state != LeaseState::kActive || !impl_->ending.insert(lease_id).second) return;  // ended, or ending
    role = it->second.user;
  }
  impl_->Finish(lease_id, role, LeaseState::kReleased);
}

LeaseInfo PoolManager::Reset(const std::string& lease_id) {
  Slot snapshot;
  std::string template_db;
  RecycleMode mode_of_pool = RecycleMode::kClone;
  LeaseInfo lease;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      if (impl_->rows.FindLease(lease_id)) throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    if (it->second.state != LeaseState::kActive || impl_->ending.count(lease_id)) {
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
    }
    lease = it->second;
    snapshot = impl_->slots.at(lease.slot_id);
    template_db = impl_->pools.at(snapshot.pool).template_db;
    mode_of_pool = impl_->ModeOf(snapshot);
  }
  const auto t0 = std::chrono::steady_clock::now();
  const char* mode = "clone";
  if (snapshot.pinned && impl_->pinned != nullptr) {
    // Rollback mode: back to the base savepoint in place; the clients stay connected.
    mode = "rollback";
    impl_->pinned->Reset(snapshot.id);
  } else {
    std::lock_guard<std::mutex> io(*snapshot.io);
    std::shared_ptr<SlotOps> ops = impl_->Ops(snapshot);
    ops->CutOff(snapshot.role);
    ops->DropDatabase(snapshot.database);
    impl_->CloneAndPrepare(&snapshot, template_db, mode_of_pool);  // same credentials
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto live = impl_->slots.find(snapshot.id);
  if (live != impl_->slots.end() && live->second.lease_id == lease_id) live->second.baseline = snapshot.baseline;
  ++impl_->counters.resets;
  Observe(&impl_->counters.reset, ms);
  log::Info("lease.reset", {{"lease", lease_id}, {"slot", snapshot.id}, {"mode", mode}, {"ms", log::Ms(ms)}});
  return lease;
}

LeaseInfo PoolManager::GetLease(const std::string& lease_id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it != impl_->leases.end()) return it->second;
  }
  auto row = impl_->rows.FindLease(lease_id);
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

void PoolManager::SetLeaseEndedListener(std::function<void(const std::string& lease_id)> listener) {
  impl_->lease_ended = std::move(listener);
}

void PoolManager::SetPinnedSessions(PinnedSessions* sessions) { impl_->pinned = sessions; }

ManagerStatus PoolManager::Status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ManagerStatus st;
  for (const auto& [key, p] : impl_->pools) {
    PoolStatus ps;
    ps.template_name = p.name;
    ps.hash = p.hash;
    ps.current = p.current;
    ps.min_ready = p.config.min_ready;
    ps.max = p.config.max;
    ps.recycle = RecycleModeName(p.config.recycle);
    auto get = [&](SlotState s) {
      auto it = p.count.find(s);
      return it == p.count.end() ? 0 : it->second;
    };
    ps.warming = get(SlotState::kWarming);
    ps.ready = get(SlotState::kReady);
    ps.leased = get(SlotState::kLeased);
    ps.recycling = get(SlotState::kRecycling);
    ps.broken = get(SlotState::kBroken);
    ps.waiting = static_cast<int>(p.waiters.size());
    st.pools.push_back(ps);
  }
  st.databases = impl_->total_slots;
  st.max_databases = impl_->options.max_databases;
  st.counters = impl_->counters;
  if (impl_->pinned != nullptr) st.proxy = impl_->pinned->stats();
  return st;
}

}  // namespace testpool::core
