// What a pool does to the server for its slots: clone a database from the template, prepare the
// lease role that will own it, cut a role off, tell whether a database was written to, drop.
// Stateless apart from a pool of superuser connections; thread-safe. Every method does catalog
// work and may take tens of milliseconds: never call one on the lease handout path.
#pragma once

#include <chrono>
#include <string>

#include "orchestrator/core/control_store.h"

namespace testpool::core {

class SlotOps {
 public:
  explicit SlotOps(ControlStore& store);

  // CREATE DATABASE `db` TEMPLATE `template_db` STRATEGY FILE_COPY, with PUBLIC's rights revoked.
  void CloneDatabase(const std::string& db, const std::string& template_db);
  // Creates `role` (LOGIN, `password`) if missing, else sets its password and LOGIN; gives it
  // CONNECT and TEMP on `db` alone, every object of the template's owner inside `db`, and CREATE
  // on schema public. After this the role's DSN connects on the first try.
  void PrepareRole(const std::string& db, const std::string& role, const std::string& password);
  // Gives `db` and everything in it from `old_role` (cut off) to a new `role` with `password`,
  // then drops `old_role`. Roles are never reused across leases: a handshake that began with the
  // old credentials before the cut-off can never complete into the next lease.
  void HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                const std::string& password);
  // Stops `role` from logging in, terminates its sessions and waits (bounded) until they are gone.
  void CutOff(const std::string& role);
  // Waits until `db` has no sessions, then returns a fingerprint of everything written to it:
  // pg_stat_database's tuple counters (catalog writes, hence DDL, included) and every sequence's
  // state. Two equal fingerprints mean nothing was written in between.
  std::string Fingerprint(const std::string& db);
  // DROP DATABASE … WITH (FORCE) if it exists.
  void DropDatabase(const std::string& db);
  // Terminates the role's sessions and drops it if it exists (it must own nothing by then).
  void DropRole(const std::string& role);

  // Databases / roles on the server whose names start with `prefix`.
  std::vector<std::string> ListDatabases(const std::string& prefix);
  std::vector<std::string> ListRoles(const std::string& prefix);

 private:
  void WaitNoSessions(const char* column, const std::string& value);

  ControlStore& store_;
  pg::ConnectionPool admin_;  // superuser, dbname postgres
};

}  // namespace testpool::core
