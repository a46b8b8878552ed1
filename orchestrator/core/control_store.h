// The control state: rows in the control database `testpool` on the control server. Memory is a
// cache of these rows; a restarted daemon reads them back.
//
// Open() creates the control database when missing and brings its schema to the current version
// (each version applied once, under an advisory lock, so two daemons starting on one server do not
// race). All methods are thread-safe: each takes a connection from the store's pool.
//
// Errors: every method that reads or writes rows throws pg::PgError (an Error) when it fails:
// kUnavailable when the control server cannot be reached, the connection broke or the server is
// out of resources, kTimeout when
// the statement was cancelled, kInternal for any other refusal by the server (a broken invariant:
// our statements are fixed). Each method below says what else it can give.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/core/advisory_locks.h"  // the locks taken in the control database
#include "orchestrator/core/template_spec.h"
#include "orchestrator/pg/pool.h"

namespace testpool::core {

inline constexpr const char* kControlDatabase = "testpool";

// One built (or failed, or building) hash of a template.
struct TemplateBuildRow {
  std::string name;
  std::string hash;
  std::string database;
  std::string state;       // "building" | "ready" | "failed"
  std::string error_json;  // the error object as JSON text when failed, else ""
  std::string migrations_json;  // [{"name":…,"bytes":…},…]
  std::string seed_json;
  double build_ms = 0;
  int builds = 0;          // how many times a build ran for this hash
  std::string created_at;  // ISO 8601 UTC
  std::string built_at;    // "" until ready
  bool current = false;    // the hash the name currently points at
  int format = 0;          // kTemplateFormatVersion it was built with; older ones get no pool
};

// A template name and the hash it points at, with its pool settings.
struct TemplateRow {
  std::string name;
  std::string current_hash;
  PoolConfig pool;
  std::string recycle;
  std::string updated_at;
};

// Creates kTemplateOwnerRole and kSlotOwnerRole on the server `conn` (a superuser's) is connected
// to, when missing. Safe against another daemon doing the same at the same moment.
void EnsureOwnerRoles(pg::Connection& conn);

class ControlStore {
 public:
  // Connects to the server at `admin` (superuser, no dbname), creates database `testpool` if it
  // is missing, and migrates its schema. Throws PgError/Error(kUnavailable) when the server is
  // unreachable.
  static std::unique_ptr<ControlStore> Open(const pg::ConnInfo& admin);

  // A connection to the control database (pooled; it goes back when the handle is destroyed), with
  // synchronous_commit on whatever the server's default: a committed row survives a server crash.
  // Throws PgError(kUnavailable) when a new connection cannot be opened.
  pg::ConnectionPool::Handle Connect() { return pool_.Acquire(); }
  // Superuser conninfo for any database on the control server. No I/O; never throws.
  pg::ConnInfo AdminConnInfo(const std::string& dbname) const;

  // ---- templates -------------------------------------------------------------------------
  // Each throws PgError as above, nothing else. A row that is missing is not an error: finds
  // answer nullopt, lists answer empty, updates and deletes of a missing row do nothing.

  // The build row of (name, hash); nullopt when there is none.
  std::optional<TemplateBuildRow> FindBuild(const std::string& name, const std::string& hash);
  // Every build of `name`, newest first; empty when none.
  std::vector<TemplateBuildRow> ListBuilds(const std::string& name);
  // The template row of `name`; nullopt when the name points at no hash.
  std::optional<TemplateRow> FindTemplate(const std::string& name);
  // Every template row, by name.
  std::vector<TemplateRow> ListTemplates();
  // Every template name with at least one build row (including names whose only build failed).
  std::vector<std::string> ListNames();

  // Records that a build of (name, hash) starts now: inserts the row or sets it back to
  // "building", and counts one more build.
  void MarkBuilding(const TemplateSpec& spec, const std::string& hash, const std::string& database);
  // Records that a client starts building (name, hash) itself (the IntegreSQL API's initialise):
  // inserts the row as "building" when there is none, or takes over a failed one. Returns false,
  // writing nothing, when a row is building or ready already (someone else initialises it, or it
  // is built). Atomic across threads and daemons sharing the control database.
  bool BeginClientBuild(const TemplateSpec& spec, const std::string& hash, const std::string& database);
  // The build of (name, hash) is ready, after `build_ms`; its error is cleared.
  void MarkReady(const std::string& name, const std::string& hash, double build_ms);
  // The build of (name, hash) failed with `error_json` (an error object as JSON text; invalid
  // JSON is refused by the server: PgError kInternal).
  void MarkFailed(const std::string& name, const std::string& hash, const std::string& error_json);
  // Points `name` at `hash` and stores its pool settings. The build row (name, hash) must exist
  // (foreign key: PgError kInternal otherwise).
  void SetCurrent(const TemplateSpec& spec, const std::string& hash);
  // Forgets one build row. A build the template's row points at cannot go (foreign key: PgError
  // kInternal); DeleteTemplate first.
  void DeleteBuild(const std::string& name, const std::string& hash);
  // Forgets a whole template: its row and all its builds, in one transaction.
  void DeleteTemplate(const std::string& name);

 private:
  ControlStore(pg::ConnInfo admin);
  void Migrate();

  const pg::ConnInfo admin_;
  pg::ConnectionPool pool_;
};

}  // namespace testpool::core
