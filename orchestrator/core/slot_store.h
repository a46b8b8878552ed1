// Slots and leases as rows of the control database: the durable half of PoolManager's state
// (the real PoolRows, pool_io.h).
// One method per change of state, each one statement (the handout is a single round trip).
// Thread-safe; every call takes a pooled control connection. `store` must outlive it.
//
// Errors: every method throws pg::PgError (an Error) when its statement fails, with the codes
// control_store.h lists (kUnavailable: control server unreachable or connection broken; kTimeout;
// kInternal: refused). A row that is missing is not an error: updates of a missing row do nothing.
// Each method below says what else it can give.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/lease.h"
#include "orchestrator/core/pool_io.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/clock.h"

namespace testpool::core {

class SlotStore final : public PoolRows {
 public:
  explicit SlotStore(ControlStore& store) : store_(store) {}

  // A new slot row in state warming. A slot id that exists already: PgError kInternal.
  void InsertWarming(const SlotRow& slot) override;
  // The slot is ready: its credentials, fingerprint baseline and token are recorded.
  void MarkReady(const SlotRow& slot) override;
  // `state`: one of the slot states the schema allows (else PgError kInternal).
  void SetState(const std::string& slot_id, const std::string& state) override;
  void Delete(const std::string& slot_id) override;

  // Records the handout: slot leased with `lease.token`, lease row active. One statement. A lease
  // id that exists already: PgError kInternal (nothing is written).
  void Grant(const LeaseRow& lease) override;
  // The lease ended as `how`; the slot is recycling. kLost is recorded as expired (the control
  // database knows no "lost").
  void End(const std::string& lease_id, const std::string& slot_id, LeaseState how) override;
  // The lease's expires_at (whatever its state).
  void Renew(const std::string& lease_id, util::WallTime expires_at) override;
  // The slot's database may no longer be at its template's state (a checkpoint was taken or
  // restored): its recorded baseline is cleared, so no recycle, after a restart either, can pass
  // it for clean. MarkReady records the next one.
  void ForgetBaseline(const std::string& slot_id) override;

  // Every slot row, by id.
  std::vector<SlotRow> LoadSlots() override;
  // Every lease row in state active. Also Error(kInternal) for a row whose state no LeaseState
  // names.
  std::vector<LeaseRow> LoadActiveLeases() override;
  // The lease row `lease_id` (any state); nullopt when there is none. Also Error(kInternal) as
  // LoadActiveLeases.
  std::optional<LeaseRow> FindLease(const std::string& lease_id) override;
  // Marks active leases whose slot is not leased to them as expired (crash leftovers).
  void ExpireStrayLeases() override;
  // Templates whose current hash's build is ready.
  std::vector<PooledTemplate> PooledTemplates() override;
  // A session advisory lock (advisory_locks.h) on a connection of its own, held until
  // ReleaseOwnership or destruction. Throws PgError when the control server cannot be reached.
  bool TakeOwnership() override;
  void ReleaseOwnership() override;

 private:
  ControlStore& store_;
  std::mutex owner_mu_;
  std::optional<pg::Connection> owner_;  // guarded by owner_mu_
};

}  // namespace testpool::core
