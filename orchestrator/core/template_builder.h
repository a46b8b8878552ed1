// Builds one template hash into its database on the control server — or, for a backend whose
// slots have servers of their own (docker), in a build server of its own that the backend then
// keeps as the template (an image): the same files, applied by the same code, either way.
//
// Ensure() is safe to call from many threads, processes and daemons at once for the same hash:
// the build runs under a session advisory lock keyed by the hash in the control database, and
// whoever takes the lock second re-reads the build row and finds it ready. A build that fails (a
// migration error, a lost connection) drops its half-built database and marks the row failed; a
// build interrupted by a crash leaves a "building" row that the next Ensure() (which then holds
// the lock, so nobody else is building) rebuilds from scratch.
//
// Each migration runs in its own transaction, statement by statement, unless its leading comment
// says `-- testpool:no-transaction`; between files the session is reset (DISCARD ALL), as if each
// file ran in a session of its own. Files run as kTemplateOwnerRole (SET ROLE), which owns what
// they create. Seed files run after the migrations, each in a transaction. Then everything
// kTemplateOwnerRole owns is reassigned to kSlotOwnerRole, which also gets CREATE on schema public.
// The finished database is frozen and analysed, then marked IS_TEMPLATE with connections
// disallowed and PUBLIC's CONNECT revoked.
#pragma once

#include <functional>
#include <mutex>
#include <string>

#include "orchestrator/backend/slot_servers.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/template_spec.h"
#include "orchestrator/util/clock.h"

namespace testpool::core {

// What a build reports as it goes (called on the building thread).
struct BuildEvent {
  enum class Kind {
    kWaitingForLock,  // another thread or process holds this hash's build lock
    kStarted,         // we hold the lock and build; `of` = migrations + seed files
    kFileDone,        // file `index` (1-based) of `of`, named `file`, applied in `ms`
    kFinishing,       // all files applied; freezing and marking the template
  };
  Kind kind;
  int index = 0;
  int of = 0;
  std::string file;
  double ms = 0;
};
using ProgressFn = std::function<void(const BuildEvent&)>;

struct BuildOutcome {
  std::string hash;
  std::string database;
  bool built = false;  // false: it was ready already (built earlier, or by someone else just now)
  double build_ms = 0; // of the build that made it
};

class TemplateBuilder {
 public:
  // `store` (and `servers`, when given) must outlive the builder. With `servers`, templates are
  // built in build servers of their own (SlotServers::BeginTemplate) and kept there; the
  // control server only holds the build rows and locks.
  TemplateBuilder(ControlStore& store, const util::Clock& clock, backend::SlotServers* servers = nullptr);

  // The control server's major version (e.g. 15), read once.
  int ServerMajor();
  // What template hashes depend on besides the files: ServerMajor() as text, or the slot
  // servers' identity (see SlotServers::ServerIdentity).
  std::string ServerIdentity();

  // Makes sure `spec` (validated) is built as `hash`. Throws Error(kMigrationFailed) when a
  // migration or seed file fails, with details: file, line, sqlstate, server_message and, when
  // the server gave them, detail, hint, position. Throws PgError/Error(kUnavailable) when the
  // server cannot be reached.
  BuildOutcome Ensure(const TemplateSpec& spec, const std::string& hash, const ProgressFn& progress);

  // ---- templates a client builds itself (the IntegreSQL API), on the control server ------------
  // Creates database `database` (from template0, after dropping one a crashed attempt left) owned
  // by a fresh LOGIN, non-superuser role `role` with `password`: in it the client may create
  // schemas, tables and trusted extensions (the owner owns schema public); it may connect to no
  // other database. Throws Error(kInvalidArgument) when templates live in servers of their own
  // (docker: there is no build server a client could reach), PgError when the server refuses.
  void BeginClientBuild(const std::string& database, const std::string& role, const std::string& password);
  // Seals what the client built: ends the role's sessions, hands everything it owns to
  // kSlotOwnerRole (as a built template's objects are), freezes and analyses the database, marks
  // it a template nobody may connect to, and drops the role. Returns the ms it took. PgError when
  // the server refuses (the database stays as it was: the caller may try again or discard it).
  double FinishClientBuild(const std::string& database, const std::string& role);
  // Drops the database and the role of a client build (ending their sessions). Idempotent.
  void AbandonClientBuild(const std::string& database, const std::string& role);

  // Drops a template database (clearing IS_TEMPLATE first, ending any sessions) on the control
  // server. Idempotent.
  void DropDatabase(const std::string& database);
  // Forgets a built hash wherever it is kept: its database on the control server, or the slot
  // servers' template. Idempotent.
  void DropTemplate(const std::string& name, const std::string& hash, const std::string& database);

 private:
  // Runs the build proper on the server at `server` (superuser, no dbname); the caller holds the
  // hash's lock.
  double Build(const TemplateSpec& spec, const std::string& hash, const std::string& database,
               const ProgressFn& progress, const pg::ConnInfo& server);
  // True when the built hash is still where it is kept.
  bool Exists(const std::string& name, const std::string& hash, const std::string& database);
  static void DropDatabaseOn(const pg::ConnInfo& server, const std::string& database);
  // The last steps of every build: what `owner` made in the database `in_db` is connected to goes
  // to kSlotOwnerRole, which may CREATE in schema public; the database is frozen and analysed,
  // then (over `admin`, connected to another database of the same server) marked IS_TEMPLATE,
  // closed to connections and to PUBLIC.
  static void Seal(pg::Connection& in_db, pg::Connection& admin, const std::string& database, const std::string& owner);

  ControlStore& store_;
  const util::Clock& clock_;
  backend::SlotServers* const servers_;
  std::mutex mu_;
  int server_major_ = 0;  // guarded by mu_; 0 until read
};

}  // namespace testpool::core
