#include "orchestrator/core/slot_store.h"

#include <cstdio>

#include "orchestrator/core/advisory_locks.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/time_format.h"

namespace testpool::core {
namespace {

std::string EpochMs(util::WallTime t) {
  return std::to_string(util::EpochMs(t));
}

util::WallTime FromEpochMs(std::string_view text) {
  return util::FromEpochMs(std::stoll(std::string(text)));
}

constexpr const char* kTs = "to_timestamp($%d::double precision / 1000)";

const char* kLeaseColumns =
    "id, slot_id, template, hash, holder, state, token, (extract(epoch FROM created_at) * 1000)::bigint, "
    "(extract(epoch FROM expires_at) * 1000)::bigint FROM leases ";

LeaseRow LeaseFrom(const pg::Result& r, int i) {
  LeaseRow l;
  l.id = r.Get(i, 0);
  l.slot_id = r.Get(i, 1);
  l.template_name = r.Get(i, 2);
  l.hash = r.Get(i, 3);
  l.holder = r.Get(i, 4);
  std::optional<LeaseState> state = ParseLeaseState(r.Get(i, 5));
  if (!state || *state == LeaseState::kLost) {
    throw Error(ErrorCode::kInternal, "lease " + l.id + " has an unknown state in the control database: '" +
                                          std::string(r.Get(i, 5)) + "'");
  }
  l.state = *state;
  l.token = std::stoll(std::string(r.Get(i, 6)));
  l.created_at = FromEpochMs(r.Get(i, 7));
  l.expires_at = FromEpochMs(r.Get(i, 8));
  return l;
}

}  // namespace

void SlotStore::InsertWarming(const SlotRow& s) {
  auto conn = store_.Connect();
  conn->Exec("INSERT INTO slots (id, template, hash, database, state, token) VALUES ($1, $2, $3, $4, 'warming', $5)",
             {s.id, s.template_name, s.hash, s.database, std::to_string(s.token)});
}

void SlotStore::MarkReady(const SlotRow& s) {
  auto conn = store_.Connect();
  conn->Exec("UPDATE slots SET state = 'ready', role = $2, password = $3, baseline = $4, token = $5, lease_id = NULL, "
             "updated_at = now() WHERE id = $1",
             {s.id, s.role, s.password, s.baseline, std::to_string(s.token)});
}

void SlotStore::SetState(const std::string& slot_id, const std::string& state) {
  auto conn = store_.Connect();
  conn->Exec("UPDATE slots SET state = $2, updated_at = now() WHERE id = $1", {slot_id, state});
}

void SlotStore::Delete(const std::string& slot_id) {
  auto conn = store_.Connect();
  conn->Exec("DELETE FROM slots WHERE id = $1", {slot_id});
}

void SlotStore::Grant(const LeaseRow& l) {
  char ts[2][64];
  std::snprintf(ts[0], sizeof ts[0], kTs, 7);
  std::snprintf(ts[1], sizeof ts[1], kTs, 8);
  auto conn = store_.Connect();
  // On the handout path: parsed and planned once per control connection.
  conn->ExecPrepared("tp_grant", std::string("WITH s AS (UPDATE slots SET state = 'leased', token = $5, lease_id = $1, updated_at = now() "
                         "WHERE id = $2) "
                         "INSERT INTO leases (id, slot_id, template, hash, token, holder, created_at, expires_at, state) "
                         "VALUES ($1, $2, $3, $4, $5, $6, ") +
                 ts[0] + ", " + ts[1] + ", 'active')",
             {l.id, l.slot_id, l.template_name, l.hash, std::to_string(l.token), l.holder, EpochMs(l.created_at),
              EpochMs(l.expires_at)});
}

void SlotStore::End(const std::string& lease_id, const std::string& slot_id, LeaseState how) {
  const LeaseState stored = how == LeaseState::kLost ? LeaseState::kExpired : how;
  auto conn = store_.Connect();
  conn->Exec("WITH s AS (UPDATE slots SET state = 'recycling', lease_id = NULL, updated_at = now() "
             "WHERE id = $2 AND lease_id = $1) "
             "UPDATE leases SET state = $3, ended_at = now() WHERE id = $1 AND state = 'active'",
             {lease_id, slot_id, ToString(stored)});
}

void SlotStore::Renew(const std::string& lease_id, util::WallTime expires_at) {
  auto conn = store_.Connect();
  conn->Exec("UPDATE leases SET expires_at = to_timestamp($2::double precision / 1000) WHERE id = $1",
             {lease_id, EpochMs(expires_at)});
}

void SlotStore::ForgetBaseline(const std::string& slot_id) {
  auto conn = store_.Connect();
  conn->Exec("UPDATE slots SET baseline = NULL, updated_at = now() WHERE id = $1", {slot_id});
}

std::vector<SlotRow> SlotStore::LoadSlots() {
  auto conn = store_.Connect();
  pg::Result r = conn->Exec(
      "SELECT id, template, hash, database, state, coalesce(role, ''), coalesce(password, ''), coalesce(lease_id, ''), "
      "coalesce(baseline, ''), token FROM slots ORDER BY id");
  std::vector<SlotRow> out;
  for (int i = 0; i < r.rows(); ++i) {
    SlotRow s;
    s.id = r.Get(i, 0);
    s.template_name = r.Get(i, 1);
    s.hash = r.Get(i, 2);
    s.database = r.Get(i, 3);
    s.state = r.Get(i, 4);
    s.role = r.Get(i, 5);
    s.password = r.Get(i, 6);
    s.lease_id = r.Get(i, 7);
    s.baseline = r.Get(i, 8);
    s.token = std::stoll(std::string(r.Get(i, 9)));
    out.push_back(std::move(s));
  }
  return out;
}

std::vector<LeaseRow> SlotStore::LoadActiveLeases() {
  auto conn = store_.Connect();
  pg::Result r = conn->Exec(std::string("SELECT ") + kLeaseColumns + "WHERE state = 'active'");
  std::vector<LeaseRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(LeaseFrom(r, i));
  return out;
}

std::optional<LeaseRow> SlotStore::FindLease(const std::string& lease_id) {
  auto conn = store_.Connect();
  pg::Result r = conn->Exec(std::string("SELECT ") + kLeaseColumns + "WHERE id = $1", {lease_id});
  if (r.rows() == 0) return std::nullopt;
  return LeaseFrom(r, 0);
}

void SlotStore::ExpireStrayLeases() {
  auto conn = store_.Connect();
  conn->Exec("UPDATE leases l SET state = 'expired', ended_at = now() WHERE l.state = 'active' AND NOT EXISTS "
             "(SELECT 1 FROM slots s WHERE s.id = l.slot_id AND s.state = 'leased' AND s.lease_id = l.id)");
}

std::vector<PooledTemplate> SlotStore::PooledTemplates() {
  std::vector<PooledTemplate> out;
  for (const TemplateRow& t : store_.ListTemplates()) {
    auto build = store_.FindBuild(t.name, t.current_hash);
    if (!build || build->state != "ready") continue;
    out.push_back(PooledTemplate{t.name, t.current_hash, t.pool, build->format});
  }
  return out;
}

bool SlotStore::TakeOwnership() {
  std::lock_guard<std::mutex> lock(owner_mu_);
  if (owner_) return true;
  pg::Connection conn = pg::Connection::Open(store_.AdminConnInfo(kControlDatabase));
  // The one lock that makes a daemon the pool manager of this server (advisory_locks.h).
  if (conn.Exec("SELECT pg_try_advisory_lock($1::int, $2::int)",
                {std::to_string(kPoolsLockClass), std::to_string(kPoolsLockKey)})
          .Get(0, 0) != "t") {
    return false;
  }
  owner_.emplace(std::move(conn));
  return true;
}

void SlotStore::ReleaseOwnership() {
  std::lock_guard<std::mutex> lock(owner_mu_);
  owner_.reset();  // closing the session frees its advisory lock
}

}  // namespace testpool::core
