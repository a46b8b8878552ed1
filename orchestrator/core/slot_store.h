// Slots and leases as rows of the control database: the durable half of PoolManager's state.
// One method per change of state, each one statement (the handout is a single round trip).
// Thread-safe; every call takes a pooled control connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/lease.h"
#include "orchestrator/util/clock.h"

namespace testpool::core {

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

class SlotStore {
 public:
  explicit SlotStore(ControlStore& store) : store_(store) {}

  void InsertWarming(const SlotRow& slot);
  // The slot is ready: its credentials, fingerprint baseline and token are recorded.
  void MarkReady(const SlotRow& slot);
  void SetState(const std::string& slot_id, const std::string& state);
  void Delete(const std::string& slot_id);

  // Records the handout: slot leased with `lease.token`, lease row active. One statement.
  void Grant(const LeaseRow& lease);
  // The lease ended as `how`; the slot is recycling. kLost is recorded as expired (the control
  // database knows no "lost").
  void End(const std::string& lease_id, const std::string& slot_id, LeaseState how);
  void Renew(const std::string& lease_id, util::WallTime expires_at);

  std::vector<SlotRow> LoadSlots();
  std::vector<LeaseRow> LoadActiveLeases();
  std::optional<LeaseRow> FindLease(const std::string& lease_id);
  // Marks active leases whose slot is not leased to them as expired (crash leftovers).
  void ExpireStrayLeases();

 private:
  ControlStore& store_;
};

}  // namespace testpool::core
