#include "orchestrator/core/template_builder.h"

#include <nlohmann/json.hpp>

#include "orchestrator/core/advisory_locks.h"
#include "orchestrator/core/sql_script.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

namespace testpool::core {
namespace {

// The second key of kBuildLockClass (advisory_locks.h).
std::string LockKey(const std::string& hash) {
  // The first 8 hex digits as a signed 32-bit integer. Two hashes sharing them only serialise.
  uint32_t v = static_cast<uint32_t>(std::stoul(hash.substr(0, 8), nullptr, 16));
  return std::to_string(static_cast<int32_t>(v));
}

// Holds the build lock for one hash on a control connection; releases it on destruction.
class BuildLock {
 public:
  BuildLock(pg::ConnectionPool::Handle conn, const std::string& hash)
      : conn_(std::move(conn)), key_(LockKey(hash)) {}
  bool TryLock() {
    pg::Result r = conn_->Exec("SELECT pg_try_advisory_lock($1::int, $2::int)", {std::to_string(kBuildLockClass), key_});
    held_ = r.Get(0, 0) == "t";
    return held_;
  }
  void Lock() {
    conn_->Exec("SELECT pg_advisory_lock($1::int, $2::int)", {std::to_string(kBuildLockClass), key_});
    held_ = true;
  }
  ~BuildLock() {
    if (!held_ || !conn_->IsOk()) return;
    try {
      conn_->Exec("SELECT pg_advisory_unlock($1::int, $2::int)", {std::to_string(kBuildLockClass), key_});
    } catch (...) {
      // The lock dies with the session if unlocking fails.
    }
  }

 private:
  pg::ConnectionPool::Handle conn_;
  std::string key_;
  bool held_ = false;
};

// Turns a server error inside `file` into the migration error users see.
Error MigrationError(const std::string& template_name, const SqlFile& file, const std::string& script,
                     const SqlStatement& stmt, const pg::PgError& e) {
  const pg::ServerDiagnostics& d = e.diagnostics();
  int line = d.position > 0 ? LineOfPosition(script, stmt, d.position) : stmt.line;
  std::string message = d.message.empty() ? e.what() : d.message;
  Error::Details details{{"template", template_name}, {"file", file.name}, {"line", std::to_string(line)},
                         {"statement_line", std::to_string(stmt.line)}, {"server_message", message}};
  if (!d.sqlstate.empty()) details["sqlstate"] = d.sqlstate;
  if (!d.detail.empty()) details["detail"] = d.detail;
  if (!d.hint.empty()) details["hint"] = d.hint;
  if (d.position > 0) details["position"] = std::to_string(d.position);
  std::string text = file.name + " failed at line " + std::to_string(line) + ": " + message;
  if (!d.sqlstate.empty()) text += " (SQLSTATE " + d.sqlstate + ")";
  if (!d.detail.empty()) text += "; " + d.detail;
  return Error(ErrorCode::kMigrationFailed, text, details);
}

// Applies one file on `conn`, statement by statement.
void ApplyFile(pg::Connection& conn, const std::string& template_name, const SqlFile& file, bool allow_no_tx) {
  std::vector<SqlStatement> statements;
  try {
    statements = SplitSqlScript(file.sql);
  } catch (const Error& e) {
    throw Error(ErrorCode::kMigrationFailed, file.name + ": " + e.what(),
                {{"template", template_name}, {"file", file.name}, {"server_message", e.what()}});
  }
  bool transactional = !(allow_no_tx && ScriptWantsNoTransaction(file.sql));
  std::optional<pg::Transaction> tx;
  if (transactional) tx.emplace(conn);
  for (const SqlStatement& stmt : statements) {
    try {
      conn.Exec(stmt.text);
    } catch (const pg::PgError& e) {
      if (e.connection_lost()) throw;
      throw MigrationError(template_name, file, file.sql, stmt, e);
    }
  }
  if (tx) tx->Commit();
  for (const pg::Notice& n : conn.notices()) {
    log::Debug("template.notice", {{"template", template_name}, {"file", file.name}, {"severity", n.severity},
                                   {"message", n.message}});
  }
  conn.ClearNotices();
}

nlohmann::json ErrorJson(const Error& e) {
  nlohmann::json j = {{"code", ErrorCodeName(e.code())}, {"message", e.what()}};
  for (const auto& [k, v] : e.details()) j["details"][k] = v;
  return j;
}

}  // namespace

TemplateBuilder::TemplateBuilder(ControlStore& store, const util::Clock& clock, backend::SlotServers* servers)
    : store_(store), clock_(clock), servers_(servers) {}

std::string TemplateBuilder::ServerIdentity() {
  return servers_ != nullptr ? servers_->ServerIdentity() : std::to_string(ServerMajor());
}

int TemplateBuilder::ServerMajor() {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_major_ == 0) {
    auto conn = store_.Connect();
    server_major_ = conn->ServerVersion() / 10000;
  }
  return server_major_;
}

bool TemplateBuilder::Exists(const std::string& name, const std::string& hash, const std::string& database) {
  if (servers_ != nullptr) return servers_->HasTemplate(name, hash);
  auto conn = store_.Connect();
  return conn->Exec("SELECT 1 FROM pg_database WHERE datname = $1", {database}).rows() == 1;
}

void TemplateBuilder::DropTemplate(const std::string& name, const std::string& hash, const std::string& database) {
  if (servers_ != nullptr) {
    servers_->DropTemplate(name, hash);
  } else {
    DropDatabase(database);
  }
}

void TemplateBuilder::DropDatabase(const std::string& database) {
  DropDatabaseOn(store_.AdminConnInfo(""), database);
}

void TemplateBuilder::DropDatabaseOn(const pg::ConnInfo& server, const std::string& database) {
  pg::ConnInfo at = server;
  at.Set("dbname", "postgres");
  pg::Connection conn = pg::Connection::Open(at);
  if (conn.Exec("SELECT 1 FROM pg_database WHERE datname = $1", {database}).rows() == 0) return;
  std::string q = conn.QuoteIdent(database);
  conn.Exec("ALTER DATABASE " + q + " WITH IS_TEMPLATE false ALLOW_CONNECTIONS false");
  conn.Exec("DROP DATABASE IF EXISTS " + q + " WITH (FORCE)");
  log::Info("template.database_dropped", {{"database", database}});
}

BuildOutcome TemplateBuilder::Ensure(const TemplateSpec& spec, const std::string& hash, const ProgressFn& progress) {
  const std::string database = TemplateDatabaseName(spec.name, hash);
  const std::string hash12 = hash.substr(0, 12);

  auto ready = [&]() -> std::optional<BuildOutcome> {
    auto row = store_.FindBuild(spec.name, hash);
    if (row && row->state == "ready" && Exists(spec.name, hash, database)) {
      return BuildOutcome{hash, database, false, row->build_ms};
    }
    return std::nullopt;
  };
  if (auto done = ready()) return *done;

  BuildLock lock(store_.Connect(), hash);
  if (!lock.TryLock()) {
    log::Info("template.build_waiting", {{"template", spec.name}, {"hash", hash12}});
    if (progress) progress({BuildEvent::Kind::kWaitingForLock, 0, 0, "", 0});
    lock.Lock();
  }
  // Whoever held the lock before us may have built it.
  if (auto done = ready()) {
    log::Info("template.reused", {{"template", spec.name}, {"hash", hash12}, {"database", database}});
    return *done;
  }

  store_.MarkBuilding(spec, hash, database);
  if (servers_ != nullptr && servers_->HasTemplate(spec.name, hash)) {
    // Kept from before (another state directory, or a control database started afresh): the
    // hash says it holds exactly these files, on this server build.
    store_.MarkReady(spec.name, hash, 0);
    log::Info("template.adopted", {{"template", spec.name}, {"hash", hash12}});
    return BuildOutcome{hash, database, false, 0};
  }
  try {
    double ms = 0;
    if (servers_ != nullptr) {
      // A build server of its own; destroyed (with everything in it) unless committed.
      std::unique_ptr<backend::TemplateSite> site = servers_->BeginTemplate(spec.name, hash);
      ms = Build(spec, hash, database, progress, site->admin());
      site->Commit();
    } else {
      ms = Build(spec, hash, database, progress, store_.AdminConnInfo(""));
    }
    store_.MarkReady(spec.name, hash, ms);
    return BuildOutcome{hash, database, true, ms};
  } catch (const Error& e) {
    log::Error("template.build_failed", {{"template", spec.name}, {"hash", hash12}, {"error", e.what()}});
    try {
      if (servers_ == nullptr) DropDatabase(database);
    } catch (const Error& drop) {
      log::Error("template.drop_failed", {{"template", spec.name}, {"database", database}, {"error", drop.what()}});
    }
    try {
      store_.MarkFailed(spec.name, hash, ErrorJson(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } catch (const Error& mark) {
      log::Error("template.mark_failed", {{"template", spec.name}, {"hash", hash12}, {"error", mark.what()}});
    }
    throw;
  }
}

double TemplateBuilder::Build(const TemplateSpec& spec, const std::string& hash, const std::string& database,
                              const ProgressFn& progress, const pg::ConnInfo& server) {
  auto on = [&server](const std::string& dbname) {
    pg::ConnInfo c = server;
    c.Set("dbname", dbname);
    return c;
  };
  const std::string hash12 = hash.substr(0, 12);
  const util::MonoTime start = clock_.Now();
  const int total = static_cast<int>(spec.migrations.size() + spec.seed.size());
  log::Info("template.build_started", {{"template", spec.name}, {"hash", hash12}, {"database", database},
                                       {"migrations", std::to_string(spec.migrations.size())},
                                       {"seed", std::to_string(spec.seed.size())}});
  if (progress) progress({BuildEvent::Kind::kStarted, 0, total, "", 0});

  // A database left by a build that crashed is dropped: we hold the lock, nobody else builds it.
  DropDatabaseOn(server, database);
  {
    pg::Connection admin = pg::Connection::Open(on("postgres"));
    EnsureOwnerRoles(admin);  // a build server of its own starts without them
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(database) + " TEMPLATE template0");
  }

  {
    pg::Connection conn = pg::Connection::Open(on(database));
    int index = 0;
    auto apply = [&](const SqlFile& file, bool is_migration) {
      ++index;
      util::MonoTime t0 = clock_.Now();
      if (index > 1) conn.Exec("DISCARD ALL");
      conn.Exec(std::string("SET ROLE ") + kTemplateOwnerRole);
      ApplyFile(conn, spec.name, file, is_migration);
      double ms = util::MsBetween(t0, clock_.Now());
      log::Info("template.file_applied", {{"template", spec.name}, {"hash", hash12}, {"file", file.name},
                                          {"step", std::to_string(index) + "/" + std::to_string(total)},
                                          {"ms", log::Ms(ms)}});
      if (progress) progress({BuildEvent::Kind::kFileDone, index, total, file.name, ms});
    };
    for (const SqlFile& m : spec.migrations) apply(m, true);
    for (const SqlFile& s : spec.seed) apply(s, false);
    if (progress) progress({BuildEvent::Kind::kFinishing, index, total, "", 0});
    conn.Exec("DISCARD ALL");
    pg::Connection admin = pg::Connection::Open(on("postgres"));
    Seal(conn, admin, database, kTemplateOwnerRole);
  }
  double ms = util::MsBetween(start, clock_.Now());
  log::Info("template.built", {{"template", spec.name}, {"hash", hash12}, {"database", database}, {"ms", log::Ms(ms)}});
  return ms;
}

void TemplateBuilder::Seal(pg::Connection& in_db, pg::Connection& admin, const std::string& database,
                           const std::string& owner) {
  // Clones inherit ownership: every lease role (a member of kSlotOwnerRole) owns what the
  // migrations made, with no per-clone work.
  in_db.Exec("REASSIGN OWNED BY " + in_db.QuoteIdent(owner) + " TO " + kSlotOwnerRole + "; GRANT ALL ON SCHEMA public TO " +
             kSlotOwnerRole);
  in_db.Exec("VACUUM (FREEZE, ANALYZE)");
  const std::string q = admin.QuoteIdent(database);
  admin.Exec("ALTER DATABASE " + q + " WITH IS_TEMPLATE true ALLOW_CONNECTIONS false");
  admin.Exec("REVOKE ALL ON DATABASE " + q + " FROM PUBLIC");
}

void TemplateBuilder::BeginClientBuild(const std::string& database, const std::string& role,
                                       const std::string& password) {
  if (servers_ != nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                "templates built by their client (the IntegreSQL API) need a backend whose databases share one "
                "server (local or external); this daemon keeps each template in a server of its own");
  }
  AbandonClientBuild(database, role);  // what a crashed attempt left
  pg::Connection admin = pg::Connection::Open(store_.AdminConnInfo("postgres"));
  EnsureOwnerRoles(admin);
  const std::string r = admin.QuoteIdent(role);
  // CREATE ROLE takes no parameters: the SCRAM verifier goes as a quoted literal (never the password).
  admin.Exec("CREATE ROLE " + r + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD " +
             admin.QuoteLiteral(util::ScramSha256Secret(password, 4096)));
  admin.Exec("CREATE DATABASE " + admin.QuoteIdent(database) + " OWNER " + r + " TEMPLATE template0");
  // The owner keeps CONNECT and TEMPORARY (an owner's implicit rights); nobody else gets in.
  admin.Exec("REVOKE ALL ON DATABASE " + admin.QuoteIdent(database) + " FROM PUBLIC");
  log::Info("template.client_build_started", {{"database", database}, {"role", role}});
}

double TemplateBuilder::FinishClientBuild(const std::string& database, const std::string& role) {
  const util::MonoTime start = clock_.Now();
  pg::Connection admin = pg::Connection::Open(store_.AdminConnInfo("postgres"));
  const std::string r = admin.QuoteIdent(role);
  // The client's sessions end and it cannot come back: what it built is sealed as it is now.
  admin.Exec("ALTER ROLE " + r + " NOLOGIN PASSWORD NULL");
  admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", {role});
  {
    pg::Connection in_db = pg::Connection::Open(store_.AdminConnInfo(database));
    // The database itself is owned by the role too: REASSIGN OWNED moves it with the rest.
    Seal(in_db, admin, database, role);
    in_db.Exec("DROP OWNED BY " + r);  // owns nothing any more: this drops its rights alone
  }
  admin.Exec("DROP ROLE " + r);
  double ms = util::MsBetween(start, clock_.Now());
  log::Info("template.client_build_sealed", {{"database", database}, {"ms", log::Ms(ms)}});
  return ms;
}

void TemplateBuilder::AbandonClientBuild(const std::string& database, const std::string& role) {
  DropDatabase(database);
  pg::Connection admin = pg::Connection::Open(store_.AdminConnInfo("postgres"));
  if (admin.Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}).rows() == 0) return;
  admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", {role});
  // It may own objects in other databases only if someone granted it rights there; drop what it owns here first.
  admin.Exec("DROP OWNED BY " + admin.QuoteIdent(role) + "; DROP ROLE " + admin.QuoteIdent(role));
}

}  // namespace testpool::core
