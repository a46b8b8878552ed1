// The pool manager's two doors to the outside world, as interfaces: the server work on slots
// (SlotWork: clone, prepare a role, hand over, cut off, fingerprint, drop, list) and the control
// rows (PoolRows: slots, leases, the templates to pool, the one-manager-per-server lock). Nothing
// else the pool's lifecycle files do reaches a server (the backend's servers per slot and the
// wire proxy aside). The real implementations are SlotOps (slot_ops.h) and SlotStore
// (slot_store.h); fault_points.h wraps both to fail or stop the process at a named point, and
// the pool's unit tests run the manager on in-memory ones with no server at all.
//
// Errors: an implementation throws Error (pg::PgError for server failures) with the codes the
// real implementations document; the pool manager treats any Error from a door as a failure of
// that step (a failed warm backs off, a failed grant is undone, a failed recycle breaks the slot).
//
// Threading: every method may be called from several threads at once (recycler threads, the
// reaper, request threads); implementations are thread-safe. Never called under the manager's lock
// except during Start() (see pool_manager.h).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/core/lease.h"
#include "orchestrator/core/template_spec.h"
#include "orchestrator/pg/conninfo.h"
#include "orchestrator/util/clock.h"

namespace testpool::core {

// What dirty tracking compares: a database's pg_stat_database tuple counters (inserted, updated,
// deleted — catalog rows included, so DDL counts) and a digest of every sequence's state.
// Stored in the slot's control row as "tup=<i>:<u>:<d>;seq=<digest>".
struct WriteMarks {
  std::string counters;   // "<inserted>:<updated>:<deleted>@<server start, epoch s>"
  std::string sequences;  // 16 hex digits
  std::string Encode() const;
  // The marks Encode() wrote; empty marks (never equal to real ones) for anything else.
  static WriteMarks Decode(const std::string& text);
  bool empty() const { return counters.empty() || sequences.empty(); }
};

// Server work on slots, on one server. Every method does catalog work and may take tens of
// milliseconds: never call one on the lease handout path. slot_ops.h says what each does.
class SlotWork {
 public:
  virtual ~SlotWork() = default;
  virtual void CloneDatabase(const std::string& db, const std::string& template_db) = 0;
  virtual void PrepareRole(const std::string& db, const std::string& role, const std::string& password) = 0;
  virtual void HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                        const std::string& password) = 0;
  virtual void CutOff(const std::string& role) = 0;
  virtual std::string Counters(const std::string& db) = 0;
  virtual void EndSessions(const std::string& db) = 0;
  virtual std::string SequenceDigest(const std::string& db) = 0;
  virtual bool Unchanged(const std::string& db, const WriteMarks& baseline) = 0;
  virtual void DropDatabase(const std::string& db) = 0;
  virtual void DropRole(const std::string& role) = 0;
  virtual std::vector<std::string> ListDatabases(const std::string& prefix) = 0;
  virtual std::vector<std::string> ListRoles(const std::string& prefix) = 0;
};

struct SlotRow {
  std::string id, template_name, hash, database, state, role, password, lease_id, baseline;
  int64_t token = 0;
};

struct LeaseRow {
  std::string id, slot_id, template_name, hash, holder;
  LeaseState state = LeaseState::kActive;  // never kLost: the control database knows no "lost"
  int64_t token = 0;
  util::WallTime created_at, expires_at;
};

// A template whose current hash has a finished build: the pools Start() rebuilds.
struct PooledTemplate {
  std::string name, hash;
  PoolConfig pool;
  int format = 0;  // the build's kTemplateFormatVersion
};

// The durable half of the pool manager's state: one method per change of state, each one
// statement (the handout is a single round trip). slot_store.h says what each does.
class PoolRows {
 public:
  virtual ~PoolRows() = default;
  virtual void InsertWarming(const SlotRow& slot) = 0;
  virtual void MarkReady(const SlotRow& slot) = 0;
  virtual void SetState(const std::string& slot_id, const std::string& state) = 0;
  virtual void Delete(const std::string& slot_id) = 0;
  virtual void Grant(const LeaseRow& lease) = 0;
  virtual void End(const std::string& lease_id, const std::string& slot_id, LeaseState how) = 0;
  virtual void Renew(const std::string& lease_id, util::WallTime expires_at) = 0;
  virtual void ForgetBaseline(const std::string& slot_id) = 0;
  virtual std::vector<SlotRow> LoadSlots() = 0;
  virtual std::vector<LeaseRow> LoadActiveLeases() = 0;
  virtual std::optional<LeaseRow> FindLease(const std::string& lease_id) = 0;
  virtual void ExpireStrayLeases() = 0;
  virtual std::vector<PooledTemplate> PooledTemplates() = 0;
  // The one lock that makes this daemon the pool manager of the control database: true when
  // taken (held until ReleaseOwnership), false when another daemon holds it.
  virtual bool TakeOwnership() = 0;
  virtual void ReleaseOwnership() = 0;
};

// The doors a PoolManager is built with.
struct PoolIo {
  std::shared_ptr<PoolRows> rows;
  // The slot work on the shared server (the local and external backends); null with servers
  // per slot.
  std::shared_ptr<SlotWork> shared;
  // Servers per slot (docker): the slot work on one slot's server, given its superuser conninfo.
  // Makes no connection (they open on first call). Unused with a shared server.
  std::function<std::shared_ptr<SlotWork>(const pg::ConnInfo& server)> work_for;
};

}  // namespace testpool::core
