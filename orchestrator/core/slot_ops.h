// What a pool does to the server for its slots: clone a database from the template, create the
// lease role that will use it, cut a role off, tell whether a database was written to, drop.
// Stateless apart from superuser connections kept open (to the maintenance database, and one
// per slot database that had its sequences read, see SequenceDigest); thread-safe. Every method does catalog
// work and may take tens of milliseconds: never call one on the lease handout path.
//
// Errors: every method throws pg::PgError (an Error) when a connection or statement fails:
// kUnavailable when the server cannot be reached, the connection broke or the server is out of
// resources; kTimeout when a statement was cancelled; kInternal when the server refuses (a name
// that exists already or does not exist where the method says nothing about it, an object in use).
// The methods that wait for sessions to end also throw Error(kTimeout) when they have not ended
// within 30 s. Each method below says what else it can give, and which missing objects are fine.
//
// Ownership: a template's objects belong to kSlotOwnerRole (the template builder hands them
// over), and clones inherit that. A lease role is a LOGIN member of kSlotOwnerRole with CONNECT
// (and TEMP) on its own database alone, so preparing or replacing one is a few statements on the
// cluster's shared catalogs, run from the maintenance database: nothing connects to the slot's
// database for it, which also keeps that database's statistics (dirty tracking) untouched.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_io.h"
#include "orchestrator/pg/pool.h"

namespace testpool::core {

class SlotOps final : public SlotWork {
 public:
  // Works on the server at `server` (superuser conninfo; its dbname is ignored): the shared server
  // of the local and external backends, or one slot's own server (docker). `background` is told
  // the server pid of every session SlotOps opens (all of them do background work), e.g.
  // Backend::Deprioritize; it must not throw. Up to `max_idle` connections to the maintenance
  // database are kept open, and up to `max_idle` more to slot databases (SequenceDigest).
  SlotOps(const pg::ConnInfo& server, std::function<void(int server_pid)> background, int max_idle = 32);

  // CREATE DATABASE `db` TEMPLATE `template_db` STRATEGY FILE_COPY, with PUBLIC's rights revoked.
  // `db` existing already, or `template_db` missing or in use: PgError kInternal.
  void CloneDatabase(const std::string& db, const std::string& template_db) override;
  // Makes `role` a LOGIN member of kSlotOwnerRole with `password` (created, or updated when it
  // exists) and gives it CONNECT and TEMP on `db`. After this the role's DSN connects on the
  // first try. The password's SCRAM secret is computed here (few iterations: the password is a
  // random token), not by the server. `db` missing: PgError kInternal.
  void PrepareRole(const std::string& db, const std::string& role, const std::string& password) override;
  // Gives `db` to a new `role` with `password` and drops `old_role` (cut off, owning nothing),
  // in one transaction. Roles are never reused across leases: a handshake that began with the
  // old credentials before the cut-off can never complete into the next lease. `old_role`
  // missing or `role` existing: PgError kInternal, and nothing changed.
  void HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                const std::string& password) override;
  // Stops `role` from logging in, terminates its sessions and waits (bounded) until they are
  // gone. A role that does not exist is fine. Error(kTimeout) as above.
  void CutOff(const std::string& role) override;

  // Terminates every session on `db` (but SlotOps' own sequence reader there), waits until they
  // are gone (each has then flushed its statistics: a backend reports them as it exits), and
  // returns the tuple counters with the server's start time ("0:0:0@<start>" for a database that
  // does not exist): counters taken across a server restart differ, since a crash discards them.
  // Error(kTimeout) as above.
  std::string Counters(const std::string& db) override;
  // Terminates every session on `db` (but SlotOps' own) and waits until they are gone.
  // Error(kTimeout) as above.
  void EndSessions(const std::string& db) override;
  // Digests every sequence's state in `db`, over a superuser connection to `db` kept open for the
  // next call (the least recently used one is closed past `max_idle`; a kept one that broke is
  // replaced once): a per-test reset checks the same few databases again and again, and a new
  // session costs more than the check. Reading writes nothing: the counters stay as they were.
  // `db` missing or refusing the connection: PgError.
  std::string SequenceDigest(const std::string& db) override;
  // True when nothing was written to `db` since `baseline` was taken: counters first (no
  // connection to `db` needed when they differ), then the sequences. Errors as Counters and
  // SequenceDigest.
  bool Unchanged(const std::string& db, const WriteMarks& baseline) override;

  // DROP DATABASE … WITH (FORCE) if it exists (a missing one is fine); closes SlotOps' own
  // sequence reader there first.
  void DropDatabase(const std::string& db) override;
  // Terminates the role's sessions and drops it if it exists (a missing one is fine). A role that
  // still owns something or holds rights: PgError kInternal.
  void DropRole(const std::string& role) override;

  // Databases / roles on the server whose names start with `prefix`, sorted.
  std::vector<std::string> ListDatabases(const std::string& prefix) override;
  std::vector<std::string> ListRoles(const std::string& prefix) override;

 private:
  struct Reader {
    std::unique_ptr<pg::Connection> conn;
    int pid = 0;
    uint64_t last_used = 0;
  };
  // `except_pid`: a session of ours that stays (0: none but the asking one).
  void WaitNoSessions(const char* column, const std::string& value, int except_pid = 0);
  pg::ConnInfo At(const std::string& db) const;  // superuser conninfo for `db`
  // The kept reader of `db`, taken out of readers_ (null when there is none), and its return.
  std::unique_ptr<pg::Connection> TakeReader(const std::string& db);
  void KeepReader(const std::string& db, std::unique_ptr<pg::Connection> conn);
  int ReaderPid(const std::string& db);  // 0 when none is kept

  const pg::ConnInfo server_;
  const std::function<void(int)> background_;
  const int max_readers_;
  pg::ConnectionPool admin_;  // superuser, dbname postgres
  std::mutex readers_mu_;
  std::map<std::string, Reader> readers_;  // by database; guarded by readers_mu_
  uint64_t reader_uses_ = 0;               // guarded by readers_mu_
};

}  // namespace testpool::core
