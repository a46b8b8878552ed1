// PoolManager start-up: reload slots and leases from the control database and reconcile them with
// what the server holds (see pool_manager.h, "Control state").
#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/util/log.h"

namespace testpool::core {

Pool& PoolManager::Impl::EnsurePool(const std::string& name, const std::string& hash, bool is_current) {
  auto [it, inserted] = pools.try_emplace(TemplateDatabaseName(name, hash));
  Pool& p = it->second;
  if (inserted) {
    p.name = name;
    p.hash = hash;
    p.template_db = it->first;
    p.current = is_current;
    p.config.min_ready = 0;
  }
  return p;
}

void PoolManager::Impl::Reconcile() {
  for (const PooledTemplate& t : rows->PooledTemplates()) {
    if (t.format != kTemplateFormatVersion) {
      // Built by an older testpool: its objects are not owned the way leases need. A PUT of the
      // same files builds it again (the format is part of the hash).
      log::Warn("pool.template_outdated", {{"template", t.name}, {"hash", t.hash.substr(0, 12)},
                                           {"format", std::to_string(t.format)}});
      continue;
    }
    Pool& p = EnsurePool(t.name, t.hash, true);
    p.config = t.pool;
    current[t.name] = p.template_db;
  }
  // What the server(s) hold: slot databases and lease roles (names carry the slot id, so the
  // servers of a docker pool can share one set), and, with a server per slot, the servers.
  std::set<std::string> dbs, roles;
  std::map<std::string, backend::SlotServer> running;  // by slot id
  std::vector<backend::SlotServer> listed;
  if (servers == nullptr) {
    for (const std::string& d : shared_ops->ListDatabases("tp_s_")) dbs.insert(d);
    for (const std::string& r : shared_ops->ListRoles("tp_r_")) roles.insert(r);
  } else {
    listed = servers->ListSlots();
    for (const backend::SlotServer& server : listed) {
      if (server.running) running.emplace(server.slot_id, server);
    }
  }
  std::map<std::string, LeaseRow> active;
  for (LeaseRow& l : rows->LoadActiveLeases()) active[l.id] = l;
  util::WallTime now = clock.WallNow();
  std::set<std::string> owned_dbs, owned_roles;
  std::vector<std::string> recycle, destroy;
  for (const SlotRow& r : rows->LoadSlots()) {
    const std::string key = TemplateDatabaseName(r.template_name, r.hash);
    Pool& p = EnsurePool(r.template_name, r.hash, current.count(r.template_name) && current[r.template_name] == key);
    Slot s;
    s.pool = key;
    s.id = r.id;
    s.name = r.template_name;
    s.hash = r.hash;
    s.database = r.database;
    s.role = r.role;
    s.password = r.password;
    s.baseline = r.baseline;
    s.token = r.token;
    s.lease_id = r.lease_id;
    auto dash = r.role.rfind('_');
    s.generation = dash == std::string::npos ? 0 : std::atoi(r.role.c_str() + dash + 1);
    if (auto server = running.find(r.id); server != running.end()) {
      s.server = server->second.admin;
      s.host = server->second.client.Get("host");
      s.port = std::stoi(server->second.client.Get("port"));
      try {
        std::shared_ptr<SlotWork> ops = OpsLocked(s);
        for (const std::string& d : ops->ListDatabases("tp_s_")) dbs.insert(d);
        for (const std::string& role : ops->ListRoles("tp_r_")) roles.insert(role);
      } catch (const std::exception& e) {
        log::Warn("reconcile.server_unreachable", {{"slot", s.id}, {"error", e.what()}});  // not intact
      }
    }
    owned_dbs.insert(r.database);
    if (!r.role.empty()) owned_roles.insert(r.role);
    bool intact = dbs.count(r.database) && roles.count(r.role);
    auto lease = active.find(r.lease_id);
    const bool rollback = p.config.recycle == RecycleMode::kRollback;
    if (r.state == "ready" && intact && rollback) {
      // Its pinned session died with the previous daemon, having only read: clean, but it needs
      // a new session (and, roles never being reused, a new role) before it can be leased.
      s.state = SlotState::kRecycling;
      s.rolled_back = true;
      recycle.push_back(s.id);
    } else if (r.state == "ready" && intact) {
      s.state = SlotState::kReady;
    } else if (r.state == "leased" && intact && rollback) {
      // The lease's data lived in the previous daemon's open transaction, which died with it.
      OpsLocked(s)->CutOff(r.role);
      s.cut_off = true;
      s.state = SlotState::kRecycling;
      recycle.push_back(s.id);
      ++counters.leases_expired;
      if (lease != active.end()) rows->End(lease->first, s.id, LeaseState::kExpired);
      if (!r.lease_id.empty()) ended_while_down.push_back(r.lease_id);
      log::Info("lease.expired", {{"lease", r.lease_id}, {"slot", s.id}, {"while", "daemon down"},
                                  {"reason", "rollback mode: its transaction ended with the previous daemon"}});
    } else if (r.state == "leased" && intact && lease != active.end() && lease->second.expires_at > now) {
      s.state = SlotState::kLeased;
      LeaseInfo l = MakeLease(s, lease->second.holder, std::chrono::seconds(0));
      l.id = lease->second.id;
      l.created_at = lease->second.created_at;
      l.expires_at = lease->second.expires_at;
      l.token = lease->second.token;
      leases[l.id] = l;
      log::Info("lease.kept", {{"lease", l.id}, {"slot", s.id}, {"template", s.name}});
    } else if (r.state == "leased" && intact) {
      OpsLocked(s)->CutOff(r.role);  // before anything says "expired": its DSN must not connect any more
      s.cut_off = true;
      s.state = SlotState::kRecycling;
      recycle.push_back(s.id);
      ++counters.leases_expired;
      if (lease != active.end()) rows->End(lease->first, s.id, LeaseState::kExpired);
      if (!r.lease_id.empty()) ended_while_down.push_back(r.lease_id);
      log::Info("lease.expired", {{"lease", r.lease_id}, {"slot", s.id}, {"while", "daemon down"}});
    } else {
      s.state = SlotState::kBroken;
      destroy.push_back(s.id);
    }
    ++p.count[s.state];
    ++total_slots;
    slots.emplace(s.id, s);
    if (s.state == SlotState::kReady) OfferReady(slots.at(s.id));
  }
  rows->ExpireStrayLeases();
  // Orphans are removed on a best-effort basis: one that cannot go now must not stop the daemon.
  for (const backend::SlotServer& server : listed) {
    if (slots.count(server.slot_id)) continue;
    log::Info("reconcile.orphan_server", {{"slot", server.slot_id}, {"container", server.container.substr(0, 12)}});
    try {
      servers->RemoveSlot(server.slot_id);
    } catch (const std::exception& e) {
      log::Warn("reconcile.orphan_kept", {{"slot", server.slot_id}, {"error", e.what()}});
    }
  }
  if (servers != nullptr) {  // each server goes whole with its slot
    dbs.clear();
    roles.clear();
  }
  for (const std::string& d : dbs) {
    if (owned_dbs.count(d)) continue;
    log::Info("reconcile.orphan_database", {{"database", d}});
    try {
      shared_ops->DropDatabase(d);
    } catch (const std::exception& e) {
      log::Warn("reconcile.orphan_kept", {{"database", d}, {"error", e.what()}});
    }
  }
  const auto destroyed_slot_role = [&](const std::string& role) {
    for (const std::string& id : destroy) {
      if (role.rfind(SlotRolePrefix(id), 0) == 0) return true;  // its Destroy drops it, after the database
    }
    return false;
  };
  for (const std::string& r : roles) {
    if (owned_roles.count(r) || destroyed_slot_role(r)) continue;
    log::Info("reconcile.orphan_role", {{"role", r}});
    try {
      shared_ops->DropRole(r);
    } catch (const std::exception& e) {
      log::Warn("reconcile.orphan_kept", {{"role", r}, {"error", e.what()}});
    }
  }
  for (const std::string& id : recycle) Enqueue(Job::Kind::kRecycle, id);
  for (const std::string& id : destroy) Enqueue(Job::Kind::kDestroy, id);
  log::Info("pools.reconciled", {{"slots", std::to_string(slots.size())}, {"leases", std::to_string(leases.size())},
                                 {"recycle", std::to_string(recycle.size())}, {"destroy", std::to_string(destroy.size())}});
}
}  // namespace testpool::core
