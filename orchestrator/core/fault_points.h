// Named fault points on the pool manager's doors (pool_io.h): a wrapper around a PoolIo that, at a
// named point, makes the call fail or stops the whole process there. Used by the pool's unit tests
// (fail a call, count calls) and by the crash tests, which start the real daemon with
// TESTPOOL_FAULTS set (cli/serve.cc) and restart it after it died at the point.
//
// Points: "<door method>.before" and "<door method>.after", one pair per method of SlotWork and
// PoolRows (kFaultPoints lists them), e.g. "clone_database.after" (the clone exists, its slot row
// still says warming), "grant.after" (the lease row is written, the asker never heard of it),
// "cut_off.after" (the ended lease's role can no longer log in, its row is still active).
//
// Plan syntax (TESTPOOL_FAULTS): comma-separated rules "<point>=<action>[@<n>]"; action "fail"
// (the call throws pg::PgError as if its connection broke, kUnavailable) or "crash" (the process
// logs one line and kills itself with SIGKILL: no destructor, no flush, as a real crash); `n`
// (default 1) is the call at that point the rule fires on, counted from 1, and "@*" fires on every
// call. A point that fails ".before" never reaches the real door; ".after" runs it, then fails.
//
// Errors: FaultPlan::Parse throws Error(kInvalidArgument) naming the bad rule (an unknown point
// included), so a typo in TESTPOOL_FAULTS stops the daemon at start instead of testing nothing.
// Threading: FaultPlan is thread-safe (one mutex around the counters); the wrappers are as
// thread-safe as what they wrap. Ownership: the wrappers share the plan and the doors they wrap.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/core/pool_io.h"

namespace testpool::core {

// Every method name a point can name (each has ".before" and ".after").
extern const std::vector<std::string> kFaultPoints;

class FaultPlan {
 public:
  enum class Action { kFail, kCrash };

  // The empty plan: nothing fires.
  FaultPlan() = default;
  // See the syntax above. Throws Error(kInvalidArgument).
  static std::shared_ptr<FaultPlan> Parse(std::string_view spec);

  // Adds a rule (tests): `nth` 0 fires on every call. Throws Error(kInvalidArgument) for an
  // unknown point.
  void Add(const std::string& point, Action action, int nth = 1);
  // Removes every rule (the counters stay).
  void Clear();
  // Called at `point` (e.g. "grant.after"): counts the call and fires the rule if one is due —
  // throws pg::PgError (fail) or never returns (crash).
  void Hit(const std::string& point);
  // How many times `point` was reached (fired or not).
  int Count(const std::string& point) const;
  bool empty() const;

 private:
  struct Rule {
    Action action;
    int nth;
  };
  mutable std::mutex mu_;
  std::map<std::string, Rule> rules_;   // guarded by mu_
  std::map<std::string, int> counts_;   // guarded by mu_
};

// `io` with every door call going through `plan`'s points.
PoolIo WithFaults(PoolIo io, std::shared_ptr<FaultPlan> plan);

}  // namespace testpool::core
