// Servers per slot (a backend with SlotServers, i.e. docker): each slot's database lives in a
// server of its own. Starting a slot's server, the SlotWork that reaches it, and the reaper's checks
// for servers that died or that no slot owns. With a shared server none of this runs.
#include <algorithm>

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::core {
namespace {

// How often the reaper looks for servers that died, and for servers no slot owns.
constexpr auto kServerCheckInterval = std::chrono::seconds(1);
constexpr auto kOrphanSweepInterval = std::chrono::seconds(30);

}  // namespace

std::shared_ptr<SlotWork> PoolManager::Impl::OpsLocked(const Slot& s) {
  if (servers == nullptr) return shared_ops;
  auto it = slot_ops.find(s.id);
  if (it != slot_ops.end()) return it->second;
  if (s.server.params().empty()) {
    throw Error(ErrorCode::kInternal, "slot " + s.id + " has no server yet");
  }
  auto ops = work_for(s.server);
  slot_ops.emplace(s.id, ops);
  return ops;
}

void PoolManager::Impl::StartServer(Slot* s) {
  const util::Stopwatch took;
  backend::SlotServer server = servers->StartSlot(s->id, s->name, s->hash);
  s->server = server.admin;
  s->host = server.client.Get("host");
  s->port = std::stoi(server.client.Get("port"));
  {
    std::lock_guard<std::mutex> lock(mu);
    slot_ops.erase(s->id);  // a server before this one, if any, is gone
  }
  log::Info("slot.server_started", {{"slot", s->id}, {"template", s->name}, {"container", server.container.substr(0, 12)},
                                    {"port", std::to_string(s->port)}, {"ms", log::Ms(took.ElapsedMs())}});
}

bool PoolManager::Impl::ServerCheckDue(bool* orphan_sweep) {
  const util::MonoTime now = util::RealMonoNow();
  const bool check = servers != nullptr && !passive && now >= next_server_check;
  *orphan_sweep = check && now >= next_orphan_sweep;
  if (check) next_server_check = now + kServerCheckInterval;
  if (*orphan_sweep) next_orphan_sweep = now + kOrphanSweepInterval;
  return check;
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
