// The chaos driver's checks across all clients' event logs (chaos_log.h), made after the run:
//
// - no double grant: per database, a lease must not be granted while an earlier lease of it may
//   still be held — that is, before the earlier holder sent its first DELETE (its `releasing` line,
//   written whether or not it lived to read the 204), or (for a holder that never sent one: killed
//   while using it) before the earlier lease's TTL ran out,
//   counted from the last lease or renew request it sent (the server stamps created_at/expires_at
//   later than that, so this bound never accuses the server wrongly; `ttl_slack` absorbs the
//   difference between the server's wall clock and the monotonic clock);
// - fencing tokens per database only increase, in grant order;
// - what the clients themselves saw and reported as violations (a marker left by another lease, a
//   lease whose credentials stopped working before it ended);
// - errors tallied by kind.
//
// Pure functions over parsed events; nothing here does I/O.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bench/chaos_log.h"

namespace testpool::bench::chaos {

// Everything one client process wrote, and when the driver killed it (if it did).
struct ClientHistory {
  int client = 0;
  std::vector<Event> events;
  std::optional<int64_t> killed_us;
};

// One lease a client heard it was granted, with what became of it.
struct GrantRecord {
  std::string lease, database;
  int client = 0;
  int64_t token = 0;
  int64_t requested_us = 0;   // the POST sent
  int64_t granted_us = 0;     // its 201 read
  int64_t ttl_base_us = 0;    // the last lease or successful renew request sent
  std::optional<int64_t> first_delete_us;  // the client's first DELETE sent (204 read or not)
  bool released = false;                   // …and answered 204
  std::optional<int64_t> used_us;          // when it was done with the database
  bool used_ok = false;
};

// The grants of all histories, in no particular order.
std::vector<GrantRecord> CollectGrants(const std::vector<ClientHistory>& histories);

struct CheckResult {
  int64_t grants = 0, releases = 0, used_ok = 0;
  int double_grants = 0;
  int token_regressions = 0;
  int client_violations = 0;
  std::vector<std::string> problems;       // one line each, the first kMaxProblems
  std::map<std::string, int> errors;       // expected failures by kind
  std::map<std::string, int> violations;   // client-reported violations by text
  static constexpr size_t kMaxProblems = 25;
  bool ok() const { return double_grants == 0 && token_regressions == 0 && client_violations == 0; }
};

// The checks above. `t_origin_us` only makes the times in problem lines relative (seconds since).
CheckResult CheckHistories(const std::vector<ClientHistory>& histories, std::chrono::seconds ttl,
                           std::chrono::milliseconds ttl_slack, int64_t t_origin_us);

// "12× a, 3× b" for a tally; "none" when empty.
std::string TallyText(const std::map<std::string, int>& tally);

}  // namespace testpool::bench::chaos
