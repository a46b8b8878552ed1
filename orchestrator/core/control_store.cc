#include "orchestrator/core/control_store.h"

#include <nlohmann/json.hpp>

#include "orchestrator/util/log.h"

namespace testpool::core {
namespace {

// Each entry is one schema version, applied once, in order. Never edit a released entry:
// append a new one.
const char* const kSchema[] = {
    // 1: templates and their builds
    R"sql(
CREATE TABLE template_builds (
  name        text NOT NULL,
  hash        text NOT NULL,
  database    text NOT NULL,
  state       text NOT NULL CHECK (state IN ('building', 'ready', 'failed')),
  migrations  jsonb NOT NULL,
  seed        jsonb NOT NULL,
  error       jsonb,
  build_ms    double precision,
  builds      integer NOT NULL DEFAULT 0,
  created_at  timestamptz NOT NULL DEFAULT now(),
  built_at    timestamptz,
  PRIMARY KEY (name, hash)
);
CREATE TABLE templates (
  name            text PRIMARY KEY,
  current_hash    text NOT NULL,
  pool_min_ready  integer NOT NULL,
  pool_max        integer NOT NULL,
  recycle         text NOT NULL,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (name, current_hash) REFERENCES template_builds (name, hash)
);
)sql",
    // 2: pool slots and leases
    R"sql(
CREATE TABLE slots (
  id          text PRIMARY KEY,
  template    text NOT NULL,
  hash        text NOT NULL,
  database    text NOT NULL UNIQUE,
  state       text NOT NULL CHECK (state IN ('warming', 'ready', 'leased', 'recycling', 'broken')),
  role        text,
  password    text,
  token       bigint NOT NULL DEFAULT 0,
  lease_id    text,
  baseline    text,
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE leases (
  id          text PRIMARY KEY,
  slot_id     text NOT NULL,
  template    text NOT NULL,
  hash        text NOT NULL,
  token       bigint NOT NULL,
  holder      text NOT NULL,
  created_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  ended_at    timestamptz,
  state       text NOT NULL CHECK (state IN ('active', 'released', 'expired'))
);
CREATE INDEX leases_active_slot ON leases (slot_id) WHERE state = 'active';
)sql",
    // 3: the template format each build was made with (builds before this column: format 2)
    R"sql(
ALTER TABLE template_builds ADD COLUMN format integer NOT NULL DEFAULT 2;
ALTER TABLE template_builds ALTER COLUMN format DROP DEFAULT;
)sql",
    // 4: record pools (their claims live in each target database, schema testpool)
    R"sql(
CREATE TABLE record_pools (
  name         text PRIMARY KEY,
  dsn          text,
  lease_id     text,
  schema_name  text NOT NULL,
  table_name   text NOT NULL,
  key_column   text NOT NULL,
  match        jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now(),
  CHECK ((dsn IS NULL) <> (lease_id IS NULL))
);
)sql",
    // 5: where builders wrote (shared databases by DSN), per namespace, for the clean-up
    R"sql(
CREATE TABLE build_targets (
  ns         text NOT NULL,
  dsn        text NOT NULL,
  lease_id   text,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (ns, dsn)
);
CREATE INDEX build_targets_lease ON build_targets (lease_id) WHERE lease_id IS NOT NULL;
)sql",
    // 6: which record pools hold claims tied to which lease, so that a lease's end touches only
    // those (not every pool's target); pools defined on a lease, found by it
    R"sql(
CREATE TABLE record_claim_leases (
  lease_id text NOT NULL,
  pool     text NOT NULL,
  PRIMARY KEY (lease_id, pool)
);
CREATE INDEX record_pools_lease ON record_pools (lease_id) WHERE lease_id IS NOT NULL;
)sql",
};

// Control connections opened at start and kept idle (the pool keeps up to 64).
constexpr size_t kControlConnectionsKept = 24;

// One migration at a time per control server (advisory_locks.h).
pg::Params SchemaLockKeys() { return {std::to_string(kSchemaLockClass), std::to_string(kSchemaLockKey)}; }

nlohmann::json FileList(const std::vector<SqlFile>& files) {
  nlohmann::json out = nlohmann::json::array();
  for (const SqlFile& f : files) out.push_back({{"name", f.name}, {"bytes", f.sql.size()}});
  return out;
}

const char* kBuildColumns =
    "b.name, b.hash, b.database, b.state, coalesce(b.error::text, ''), b.migrations::text, b.seed::text, "
    "coalesce(b.build_ms, 0), b.builds, "
    "to_char(b.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), "
    "coalesce(to_char(b.built_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), ''), "
    "(t.current_hash IS NOT DISTINCT FROM b.hash), b.format "
    "FROM template_builds b LEFT JOIN templates t ON t.name = b.name ";

TemplateBuildRow BuildFromRow(const pg::Result& r, int i) {
  TemplateBuildRow row;
  row.name = r.Get(i, 0);
  row.hash = r.Get(i, 1);
  row.database = r.Get(i, 2);
  row.state = r.Get(i, 3);
  row.error_json = r.Get(i, 4);
  row.migrations_json = r.Get(i, 5);
  row.seed_json = r.Get(i, 6);
  row.build_ms = std::stod(std::string(r.Get(i, 7)));
  row.builds = std::stoi(std::string(r.Get(i, 8)));
  row.created_at = r.Get(i, 9);
  row.built_at = r.Get(i, 10);
  row.format = std::stoi(std::string(r.Get(i, 12)));
  row.current = r.Get(i, 11) == "t";
  return row;
}

const char* kTemplateColumns =
    "name, current_hash, pool_min_ready, pool_max, recycle, "
    "to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM templates ";

TemplateRow TemplateFromRow(const pg::Result& r, int i) {
  TemplateRow row;
  row.name = r.Get(i, 0);
  row.current_hash = r.Get(i, 1);
  row.pool.min_ready = std::stoi(std::string(r.Get(i, 2)));
  row.pool.max = std::stoi(std::string(r.Get(i, 3)));
  row.recycle = r.Get(i, 4);
  row.pool.recycle = row.recycle == "rollback" ? RecycleMode::kRollback : RecycleMode::kClone;
  row.updated_at = r.Get(i, 5);
  return row;
}

}  // namespace

namespace {
// The control rows are the daemon's memory across crashes (who holds which slot, with which
// token), so their commits wait for the WAL flush even on a server set up for throwaway test data
// (the local backend runs with synchronous_commit=off): a postmaster crash must not forget a grant
// it answered.
pg::ConnInfo Durable(pg::ConnInfo info) {
  const std::string options = info.Get("options");
  info.Set("options", (options.empty() ? "" : options + " ") + "-c synchronous_commit=on");
  return info;
}
}  // namespace

ControlStore::ControlStore(pg::ConnInfo admin)
    : admin_(std::move(admin)), pool_(Durable(AdminConnInfo(kControlDatabase)), /*max_idle=*/64) {}

void EnsureOwnerRoles(pg::Connection& conn) {
  auto ensure_role = [&](const char* role, const char* attributes) {
    try {
      conn.Exec(std::string("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '") + role +
                "') THEN CREATE ROLE " + role + " " + attributes + "; END IF; END $$");
    } catch (const pg::PgError& e) {
      // Another daemon on this server created it at the same moment.
      if (e.sqlstate() != pg::sqlstate::kDuplicateObject && e.sqlstate() != pg::sqlstate::kUniqueViolation) throw;
    }
  };
  ensure_role(kTemplateOwnerRole, "SUPERUSER NOLOGIN");
  ensure_role(kSlotOwnerRole, "NOSUPERUSER NOLOGIN NOCREATEDB NOCREATEROLE");
}

pg::ConnInfo ControlStore::AdminConnInfo(const std::string& dbname) const {
  pg::ConnInfo info = admin_;
  info.Set("dbname", dbname);
  return info;
}

std::unique_ptr<ControlStore> ControlStore::Open(const pg::ConnInfo& admin) {
  std::unique_ptr<ControlStore> store(new ControlStore(admin));
  {
    pg::Connection conn = pg::Connection::Open(store->AdminConnInfo("postgres"));
    pg::Result exists = conn.Exec("SELECT 1 FROM pg_database WHERE datname = $1", {kControlDatabase});
    if (exists.rows() == 0) {
      try {
        conn.Exec("CREATE DATABASE " + conn.QuoteIdent(kControlDatabase));
        log::Info("control.database_created", {{"database", kControlDatabase}});
      } catch (const pg::PgError& e) {
        // Another daemon created it between our check and our CREATE: that is fine.
        if (e.sqlstate() != pg::sqlstate::kDuplicateDatabase && e.sqlstate() != pg::sqlstate::kUniqueViolation) throw;
      }
    }
  }
  store->Migrate();
  {
    // Cluster-wide pieces, idempotent: the template and slot owner roles, and nobody but superusers in the
    // control database (lease roles must not read other leases' passwords).
    auto conn = store->pool_.Acquire();
    EnsureOwnerRoles(*conn);
    conn->Exec("REVOKE ALL ON DATABASE " + conn->QuoteIdent(kControlDatabase) + " FROM PUBLIC");
  }
  // Every lease handout writes a row: when 20 CI workers ask at the same moment, each should find
  // a connection open instead of paying for a connect and a SCRAM exchange.
  store->pool_.Prefill(kControlConnectionsKept);
  return store;
}

void ControlStore::Migrate() {
  auto conn = pool_.Acquire();
  conn->Exec("SELECT pg_advisory_lock($1::int, $2::int)", SchemaLockKeys());
  try {
    conn->Exec("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)");
    pg::Result r = conn->Exec("SELECT coalesce(max(version), 0) FROM schema_version");
    int have = std::stoi(std::string(r.Get(0, 0)));
    int want = static_cast<int>(std::size(kSchema));
    for (int v = have; v < want; ++v) {
      pg::Transaction tx(*conn);
      conn->Exec(kSchema[v]);
      conn->Exec("INSERT INTO schema_version (version) VALUES ($1)", {std::to_string(v + 1)});
      tx.Commit();
      log::Info("control.schema_migrated", {{"version", std::to_string(v + 1)}});
    }
  } catch (...) {
    conn->Exec("SELECT pg_advisory_unlock($1::int, $2::int)", SchemaLockKeys());
    throw;
  }
  conn->Exec("SELECT pg_advisory_unlock($1::int, $2::int)", SchemaLockKeys());
}

std::optional<TemplateBuildRow> ControlStore::FindBuild(const std::string& name, const std::string& hash) {
  auto conn = pool_.Acquire();
  pg::Result r = conn->Exec(std::string("SELECT ") + kBuildColumns + "WHERE b.name = $1 AND b.hash = $2", {name, hash});
  if (r.rows() == 0) return std::nullopt;
  return BuildFromRow(r, 0);
}

std::vector<TemplateBuildRow> ControlStore::ListBuilds(const std::string& name) {
  auto conn = pool_.Acquire();
  pg::Result r = conn->Exec(std::string("SELECT ") + kBuildColumns + "WHERE b.name = $1 ORDER BY b.created_at DESC, b.hash", {name});
  std::vector<TemplateBuildRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(BuildFromRow(r, i));
  return out;
}

std::optional<TemplateRow> ControlStore::FindTemplate(const std::string& name) {
  auto conn = pool_.Acquire();
  pg::Result r = conn->Exec(std::string("SELECT ") + kTemplateColumns + "WHERE name = $1", {name});
  if (r.rows() == 0) return std::nullopt;
  return TemplateFromRow(r, 0);
}

std::vector<TemplateRow> ControlStore::ListTemplates() {
  auto conn = pool_.Acquire();
  pg::Result r = conn->Exec(std::string("SELECT ") + kTemplateColumns + "ORDER BY name");
  std::vector<TemplateRow> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(TemplateFromRow(r, i));
  return out;
}

std::vector<std::string> ControlStore::ListNames() {
  auto conn = pool_.Acquire();
  pg::Result r = conn->Exec("SELECT DISTINCT name FROM template_builds ORDER BY name");
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

// Inserts (name, hash) as "building", or sets the existing row back to building when it meets
// `only_when` (an SQL condition on template_builds, "true" for always). Answers whether it wrote.
static bool UpsertBuilding(pg::Connection& conn, const TemplateSpec& spec, const std::string& hash,
                    const std::string& database, const char* only_when) {
  pg::Result r = conn.Exec(
      std::string("INSERT INTO template_builds (name, hash, database, state, migrations, seed, builds, format) "
                  "VALUES ($1, $2, $3, 'building', $4::jsonb, $5::jsonb, 1, $6) "
                  "ON CONFLICT (name, hash) DO UPDATE SET state = 'building', error = NULL, "
                  "builds = template_builds.builds + 1, created_at = now(), built_at = NULL, build_ms = NULL, "
                  "format = $6 WHERE ") + only_when + " RETURNING 1",
      {spec.name, hash, database, FileList(spec.migrations).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
       FileList(spec.seed).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
       std::to_string(kTemplateFormatVersion)});
  return r.rows() == 1;
}

void ControlStore::MarkBuilding(const TemplateSpec& spec, const std::string& hash, const std::string& database) {
  auto conn = pool_.Acquire();
  UpsertBuilding(*conn, spec, hash, database, "true");
}

bool ControlStore::BeginClientBuild(const TemplateSpec& spec, const std::string& hash, const std::string& database) {
  auto conn = pool_.Acquire();
  return UpsertBuilding(*conn, spec, hash, database, "template_builds.state = 'failed'");
}

void ControlStore::MarkReady(const std::string& name, const std::string& hash, double build_ms) {
  auto conn = pool_.Acquire();
  conn->Exec("UPDATE template_builds SET state = 'ready', error = NULL, build_ms = $3, built_at = now() "
             "WHERE name = $1 AND hash = $2",
             {name, hash, std::to_string(build_ms)});
}

void ControlStore::MarkFailed(const std::string& name, const std::string& hash, const std::string& error_json) {
  auto conn = pool_.Acquire();
  conn->Exec("UPDATE template_builds SET state = 'failed', error = $3::jsonb WHERE name = $1 AND hash = $2",
             {name, hash, error_json});
}

void ControlStore::SetCurrent(const TemplateSpec& spec, const std::string& hash) {
  auto conn = pool_.Acquire();
  conn->Exec(
      "INSERT INTO templates (name, current_hash, pool_min_ready, pool_max, recycle) VALUES ($1, $2, $3, $4, $5) "
      "ON CONFLICT (name) DO UPDATE SET current_hash = EXCLUDED.current_hash, pool_min_ready = EXCLUDED.pool_min_ready, "
      "pool_max = EXCLUDED.pool_max, recycle = EXCLUDED.recycle, updated_at = now()",
      {spec.name, hash, std::to_string(spec.pool.min_ready), std::to_string(spec.pool.max), spec.recycle});
}

void ControlStore::DeleteBuild(const std::string& name, const std::string& hash) {
  auto conn = pool_.Acquire();
  conn->Exec("DELETE FROM template_builds WHERE name = $1 AND hash = $2", {name, hash});
}

void ControlStore::DeleteTemplate(const std::string& name) {
  auto conn = pool_.Acquire();
  pg::Transaction tx(*conn);
  conn->Exec("DELETE FROM templates WHERE name = $1", {name});
  conn->Exec("DELETE FROM template_builds WHERE name = $1", {name});
  tx.Commit();
}

}  // namespace testpool::core
