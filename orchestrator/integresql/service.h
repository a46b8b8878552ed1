// IntegreSQL's model served by testpool's pools (issue 15): what the /api/v1 routes
// (api/integresql_routes.cc) call.
//
// An IntegreSQL template is a testpool template that its client builds itself: Initialize() makes
// its database and a role that owns it, the client migrates it, Finalize() seals it (objects to
// kSlotOwnerRole, frozen, marked a template) and its pool warms like any other. Its name is
// "isql_" and the first 16 hex digits of sha256(the client's hash), whatever the hash looks like;
// its testpool hash is sha256 over "integresql", the server's identity and the client's hash.
// The build row is the durable state: "building" while the client migrates, "ready" once
// finalised; a restarted daemon keeps both.
//
// A test database is a lease (clone mode: dirty tracking recycles it) with credentials of its
// own. Its integer id is derived from the slot's id (30 bits of it), so it is stable for the
// slot. IntegreSQL's clients often never give one back (the JS client's initializeTemplate takes
// one to warm up and drops it), so the service takes a test database back itself: once a session
// has been connected to it and none has been for `idle_take_back`, or, if nobody ever connected,
// when its lease's TTL (`unused_ttl`) runs out. While a session is connected its lease is renewed
// and it is never taken back. A client that reconnects after a take-back finds its credentials
// refused, never another test's data (IntegreSQL's issue #17: a handed-out database that vanished).
//
// The test databases out survive a restart: Start() adopts the active leases this API handed
// out (holder "integresql") as out and unused, with what is left of their leases' TTL.
//
// Threading: every method is thread-safe; Start() runs the take-back monitor on a thread of its
// own until Stop() (the destructor stops it too).
#pragma once

#include <chrono>
#include <cstdint>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "orchestrator/backend/backend.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/util/error.h"

namespace testpool::integresql {

struct Options {
  core::PoolConfig pool{4, 32, core::RecycleMode::kClone};  // each IntegreSQL template's pool
  std::chrono::seconds finalize_wait{60};   // GET …/tests waiting for the template's finalize
  std::chrono::seconds lease_wait{60};      // … and then for a free database
  std::chrono::seconds idle_take_back{5};   // used, then no session for this long: taken back
  std::chrono::seconds unused_ttl{600};     // never connected to: its lease ends after this
  std::chrono::milliseconds poll{500};      // how often the monitor looks at the sessions
};

// An answer of IntegreSQL's protocol that no ErrorCode names: 423 (the template is initialised
// already, or a test database is in use) and 410 (the template was discarded while waiting).
class Refused : public Error {
 public:
  Refused(int status, const std::string& message) : Error(ErrorCode::kConflict, message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

struct DatabaseConfig {
  std::string host;
  int port = 0;
  std::string username, password, database;
};

struct TestDatabase {
  int id = 0;
  DatabaseConfig config;
};

class Service {
 public:
  // Every reference must outlive the service.
  // `backend` gives the host and port clients reach the control server at (a client build's
  // database lives there).
  Service(core::TemplateService& templates, core::PoolManager& pools, const backend::Backend& backend,
          Options options);
  ~Service();  // Stop()
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  void Start();
  void Stop();

  // The testpool template name for a client's hash. kInvalidArgument for an empty hash or one
  // longer than 1024 bytes.
  static std::string TemplateName(const std::string& hash);

  // POST /templates: the database the client migrates, with its owner's credentials. Throws
  // Refused(423) when the hash is initialised or finalised already (by anyone), Error otherwise.
  DatabaseConfig Initialize(const std::string& hash);
  // PUT /templates/{hash}: seals it and starts its pool; fine when finalised already. kNotFound.
  void Finalize(const std::string& hash);
  // DELETE /templates/{hash}: drops it, its pool and its test databases; waiters get Refused(410).
  // kNotFound.
  void Discard(const std::string& hash);
  // DELETE /admin/templates: Discard() of every IntegreSQL template.
  void DiscardAll();
  // GET /templates/{hash}/tests: waits for the finalize (kTimeout past finalize_wait), then for
  // a database (kPoolExhausted past lease_wait). kNotFound for a hash never initialised,
  // Refused(410) once discarded. `abandoned` as LeaseRequest::abandoned.
  TestDatabase GetTestDatabase(const std::string& hash, std::function<bool()> abandoned);
  // POST …/tests/{id}/unlock (and DELETE …/tests/{id}): back to the pool as it is (dirty tracking
  // recycles it). `recreate`: the same, and it is re-cloned before its next use. A database
  // already back: nothing to do. kNotFound for an unknown template or id; Refused(423) while a
  // session is connected to it.
  void Return(const std::string& hash, int id, bool recreate);

  // Test databases handed out and not yet back, for /v1/status and tests.
  size_t Outstanding() const;

 private:
  struct Handed {
    std::string name;       // the testpool template's
    std::string lease_id, database;
    std::chrono::steady_clock::time_point handed_at, last_connected, renewed_at;
    bool used = false;      // a session was connected to it (seen, or counted by the server)
    int64_t sessions_at_handout = 0;  // pg_stat_database.sessions when it was handed out
  };
  struct Use {
    int connected = 0;      // lease roles' sessions now
    int64_t sessions = 0;   // sessions the database has had (pg_stat_database)
  };

  // Takes over the test databases this API handed out before a restart (their leases are
  // still active): a client may still unlock them, and the monitor takes them back.
  void Adopt();
  void Monitor();
  void TakeBack(const std::string& key, const Handed& h, const char* why);
  std::map<std::string, Use> SessionsPerDatabase();  // every test database's
  Use SessionsOf(const std::string& database);

  core::TemplateService& templates_;
  core::PoolManager& pools_;
  const backend::Backend& backend_;
  const Options options_;

  mutable std::mutex mu_;
  std::condition_variable changed_;              // a template finalised or discarded; stop
  std::map<std::string, std::string> discarded_;  // client hash → name, until initialised again
  std::map<std::string, Handed> handed_;          // "<name>/<id>" → the test database out
  std::set<std::string> finalized_;               // names seen finalised, until discarded
  bool stop_ = false;
  std::thread monitor_;
};

}  // namespace testpool::integresql
