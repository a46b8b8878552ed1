// PoolManager's frame: construction, Start/Stop (the owner lock, the threads), the template
// service's notifications (which pools exist and which are current) and Status().
// Leases: pool_leases.cc. Slots: pool_slots.cc (servers per slot: pool_servers.cc). Start-up
// reload and reconcile: pool_reconcile.cc. The shared model: pool_manager_impl.h.
#include "orchestrator/core/pool_manager.h"

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/core/slot_ops.h"
#include "orchestrator/core/slot_store.h"
#include "orchestrator/util/log.h"

namespace testpool::core {

PoolIo RealPoolIo(ControlStore& store, backend::Backend& backend) {
  PoolIo io;
  io.rows = std::make_shared<SlotStore>(store);
  if (backend.slot_servers() == nullptr) {
    io.shared = std::make_shared<SlotOps>(store.AdminConnInfo(""), [&backend](int pid) { backend.Deprioritize(pid); });
  }
  // Few connections per slot server: one slot's work is serialised (Slot::io), the reaper's
  // cut-offs aside.
  io.work_for = [](const pg::ConnInfo& server) {
    return std::make_shared<SlotOps>(server, [](int) {}, /*max_idle=*/2);
  };
  return io;
}

PoolManager::PoolManager(ControlStore& store, backend::Backend& backend, const util::Clock& clock, PoolOptions options)
    : PoolManager(RealPoolIo(store, backend), backend, clock, options) {}

PoolManager::PoolManager(PoolIo io, backend::Backend& backend, const util::Clock& clock, PoolOptions options)
    : impl_(std::make_unique<Impl>(std::move(io), backend, clock, options)) {}

PoolManager::~PoolManager() { Stop(); }

void PoolManager::Start() {
  std::unique_lock<std::mutex> lock(impl_->mu);  // held across reconcile: nothing else runs yet
  if (!impl_->threads.empty() || impl_->passive) return;
  impl_->stopping = false;
  if (!impl_->owner) {
    if (!impl_->rows->TakeOwnership()) {
      impl_->passive = true;
      log::Warn("pools.passive", {{"reason", "another testpool daemon manages the pools on this server"}});
      return;
    }
    impl_->owner = true;
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
  if (impl_->owner && impl_->servers != nullptr) impl_->servers->Shutdown();
  if (impl_->owner) impl_->rows->ReleaseOwnership();  // another daemon may manage the pools now
  impl_->owner = false;
}

void PoolManager::Drain() {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->draining) return;
  impl_->draining = true;
  int woken = 0;
  for (auto& [hash, p] : impl_->pools) {
    for (auto& w : p.waiters) {
      w->cv.notify_all();
      ++woken;
    }
  }
  log::Info("pool.draining", {{"waiters_refused", std::to_string(woken)}});
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

void PoolManager::SetLeaseEndedListener(std::function<void(const std::string& lease_id)> listener) {
  impl_->lease_ended = std::move(listener);
}

void PoolManager::SetPinnedSessions(PinnedSessions* sessions) { impl_->pinned = sessions; }

ManagerStatus PoolManager::Status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ManagerStatus st;
  for (const auto& entry : impl_->pools) {
    const auto& p = entry.second;  // not a structured binding: clang 14 cannot capture one
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
    ps.warm_failures = p.warm_failures;
    ps.waiting = static_cast<int>(p.waiters.size());
    st.pools.push_back(ps);
  }
  st.databases = impl_->total_slots;
  st.max_databases = impl_->options.max_databases;
  st.draining = impl_->draining;
  st.counters = impl_->counters;
  if (impl_->pinned != nullptr) st.proxy = impl_->pinned->stats();
  return st;
}

}  // namespace testpool::core
