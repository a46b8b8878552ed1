#include "bench/chaos_control.h"

#include <map>
#include <optional>
#include <set>

#include "bench/daemon_harness.h"
#include "orchestrator/pg/connection.h"

namespace testpool::bench::chaos {
namespace {

namespace fs = std::filesystem;

std::set<std::string> Column(pg::Connection& c, const std::string& sql) {
  std::set<std::string> out;
  pg::Result r = c.Exec(sql);
  for (int i = 0; i < r.rows(); ++i) out.emplace(r.Get(i, 0));
  return out;
}

}  // namespace

ControlCheck CheckControlState(const fs::path& state_dir, const std::vector<ClientHistory>& histories) {
  ControlCheck c;
  auto problem = [&c](const std::string& text) {
    if (c.problems.size() < 25) c.problems.push_back(text);
  };
  pg::Connection server = AdminConnection(state_dir, "postgres");
  pg::Connection control = AdminConnection(state_dir, "testpool");
  const auto dbs = Column(server, "SELECT datname FROM pg_database WHERE datname LIKE 'tp\\_s\\_%'");
  const auto tpls = Column(server, "SELECT datname FROM pg_database WHERE datname LIKE 'tp\\_tpl\\_%'");
  const auto roles = Column(server, "SELECT rolname FROM pg_roles WHERE rolname LIKE 'tp\\_r\\_%'");
  const auto slot_dbs = Column(control, "SELECT database FROM slots");
  const auto slot_roles = Column(control, "SELECT role FROM slots WHERE role IS NOT NULL");
  const auto builds = Column(control, "SELECT database FROM template_builds");
  for (const std::string& d : dbs) {
    if (!slot_dbs.count(d)) ++c.orphan_databases, problem("orphan database " + d + " (no slot row)");
  }
  for (const std::string& d : slot_dbs) {
    if (!dbs.count(d)) ++c.lost_databases, problem("slot row's database " + d + " does not exist");
  }
  for (const std::string& r : roles) {
    if (!slot_roles.count(r)) ++c.orphan_roles, problem("orphan role " + r + " (no slot row)");
  }
  for (const std::string& t : tpls) {
    if (!builds.count(t)) ++c.orphan_templates, problem("orphan template database " + t + " (no build row)");
  }
  c.active_leases = control.Exec("SELECT id FROM leases WHERE state = 'active'").rows();
  if (c.active_leases > 0) problem(std::to_string(c.active_leases) + " leases still active after every lease should have ended");
  c.leases_without_slot = static_cast<int>(
      control
          .Exec("SELECT l.id FROM leases l WHERE l.state = 'active' AND NOT EXISTS "
                "(SELECT 1 FROM slots s WHERE s.id = l.slot_id AND s.state = 'leased' AND s.lease_id = l.id)")
          .rows());
  if (c.leases_without_slot > 0) problem(std::to_string(c.leases_without_slot) + " active leases without their slot");
  pg::Result shared = control.Exec("SELECT slot_id, token, count(*) FROM leases GROUP BY 1, 2 HAVING count(*) > 1");
  c.shared_tokens = shared.rows();
  for (int i = 0; i < shared.rows(); ++i) {
    problem("fencing token " + std::string(shared.Get(i, 1)) + " of slot " + std::string(shared.Get(i, 0)) +
            " went to " + std::string(shared.Get(i, 2)) + " leases");
  }

  std::map<std::string, std::string> state;  // lease id → state
  pg::Result rows = control.Exec("SELECT id, state FROM leases");
  for (int i = 0; i < rows.rows(); ++i) state.emplace(rows.Get(i, 0), rows.Get(i, 1));
  c.rows = rows.rows();
  for (const auto& [id, s] : state) {
    if (s == "released") ++c.rows_released;
    if (s == "expired") ++c.rows_expired;
  }
  std::map<int, std::optional<int64_t>> killed;
  for (const ClientHistory& h : histories) killed[h.client] = h.killed_us;
  std::set<std::string> heard;
  for (const GrantRecord& g : CollectGrants(histories)) {
    heard.insert(g.lease);
    auto it = state.find(g.lease);
    if (it == state.end()) {
      ++c.grants_without_row;
      problem("lease " + g.lease + " (client " + std::to_string(g.client) + ", " + g.database + ", token " +
              std::to_string(g.token) + ") was granted but has no row in the control database");
      continue;
    }
    if (g.released && it->second == "expired") ++c.released_recorded_expired;
    if (killed[g.client] && !g.first_delete_us && it->second == "released") ++c.killed_released;
  }
  for (const auto& [id, s] : state) c.unheard += heard.count(id) ? 0 : 1;
  return c;
}

}  // namespace testpool::bench::chaos
