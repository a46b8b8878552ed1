// A lease: exclusive use of one slot's database by one holder (see pool_manager.h for how leases
// are granted and end), its state, and the small interface through which features above the pool
// (record pools, builders) look a lease up without depending on the pool manager.
//
// The lease state travels as a string at two edges only: the control database's `leases.state`
// column and the API's `state` field. ToString() and ParseLeaseState() are the one mapping; the
// strings never change ("active", "released", "expired", "lost").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "orchestrator/util/clock.h"

namespace testpool::core {

enum class LeaseState {
  kActive,    // granted, not ended: its DSN connects
  kReleased,  // ended by its holder (Release)
  kExpired,   // ended by the reaper past expires_at, or found expired when the daemon started
  kLost,      // ended because the server holding its database went away (servers per slot).
              // Memory only: the control database records such a lease as expired.
};

// "active", "released", "expired", "lost". Never fails.
const char* ToString(LeaseState state);
// The state ToString() names; nullopt for any other text (the caller decides what that means).
std::optional<LeaseState> ParseLeaseState(std::string_view text);

// A lease as the API answers it. A plain value; copies are snapshots.
struct LeaseInfo {
  std::string id;          // unguessable (128 random bits)
  std::string template_name;
  std::string hash;
  std::string slot_id;
  std::string holder;
  std::string host;
  int port = 0;
  std::string user;
  std::string password;    // empty once the lease ended
  std::string database;
  std::string dsn;         // postgresql://user:password@host:port/database; empty once ended
  int64_t token = 0;       // fencing token: strictly increasing per slot
  util::WallTime created_at;
  util::WallTime expires_at;
  LeaseState state = LeaseState::kActive;
  double wait_ms = 0;      // how long Acquire waited for a slot
};

// Finds a lease by id. Implemented by PoolManager; record pools and builders receive one.
// Implementations are thread-safe.
class LeaseLookup {
 public:
  virtual ~LeaseLookup() = default;
  // The lease, active or ended (ended ones as long as the control database keeps them; host,
  // port, user, password and dsn may then be empty). Throws Error(kNotFound) for an id never
  // issued, Error(kUnavailable) when the control database cannot be reached.
  virtual LeaseInfo GetLease(const std::string& lease_id) = 0;
};

}  // namespace testpool::core
