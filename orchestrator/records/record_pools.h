// Record pools: rows of a table in a shared (target) database that tests reserve one at a time —
// the premium test user, the last SKU in stock — atomically, with a time-to-live.
//
// A pool names a table in a target database (a DSN the daemon is told about, or a leased
// database, which the daemon reaches as the server's superuser), its key column (one that is
// unique: a primary key or a single-column unique index) and an optional fixed match on column
// values. Nothing in the user's table changes: claims live in a schema `testpool` that the
// pool's definition creates in the target database, one row per (pool, key) in
// `testpool.claims`, so the reservation sits beside the data it guards and every daemon (or any
// client) that shares the database sees it.
//
// Claiming is one statement: pick one matching row whose key has no live claim (FOR UPDATE OF the
// user's row SKIP LOCKED, so concurrent claimers spread over different rows instead of queueing on
// one), and upsert its claim row; the upsert only takes a key whose previous claim was released or
// expired (ON CONFLICT … DO UPDATE … WHERE), so the primary key of testpool.claims, not the
// snapshot, is what makes a key held by one claim at a time. A claim that lost that race (another
// transaction committed the same key between our snapshot and our insert) returns nothing and is
// retried at once. Every claim of a key gets a fencing token one higher than the last. Expired
// claims are reclaimable at once; claims tied to a lease end when the lease ends.
//
// Waiting: a claim that finds nothing free waits up to `wait` (woken at once by a release through
// this daemon, and re-tried every 50–250 ms for releases made elsewhere), then throws
// kPoolExhausted naming the pool and the match. Waiters are served first come, first served per
// pool and match within this daemon: only the longest-waiting claim tries the target, and a new
// claim that finds others waiting for the same pool and match queues behind them instead of
// trying first (a claim with another match is not held up; claims through other daemons are not
// ordered with these).
//
// Names: a pool's is [a-z][a-z0-9_]{0,39}; schema, table and column names may be any identifier
// of 1–63 bytes without control characters (real schemas have mixed-case names), are looked up in
// the target's catalog (an unknown one is kInvalidArgument) and always quoted; values always go as
// parameters. Thread-safe.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/util/clock.h"

namespace testpool::core {
class LeaseLookup;
}  // namespace testpool::core

namespace testpool::records {


struct RecordPoolSpec {
  std::string name;                          // [a-z][a-z0-9_]{0,39}
  std::string dsn;                           // the target database, or…
  std::string lease_id;                      // …a leased one (exactly one of the two)
  std::string schema = "public";
  std::string table;
  std::string key;                           // a unique column
  std::map<std::string, std::string> match;  // column → value (text form), every claim's filter
};

struct RecordPoolInfo {
  RecordPoolSpec spec;  // dsn with its password removed
  int64_t rows = 0;     // rows of the table that match the pool's filter
  int64_t claimed = 0;  // live claims
  int64_t expired = 0;  // claims whose TTL ran out (reclaimable) and were never released
  int waiting = 0;      // Claim calls in this daemon waiting for a row of the pool
  int64_t free() const { return rows - claimed; }
};

struct ClaimRequest {
  std::string pool;
  std::map<std::string, std::string> match;  // on top of the pool's own
  std::chrono::seconds ttl{300};             // 1 s … 24 h
  std::chrono::seconds wait{0};              // 0 … 600 s
  std::string holder;                        // free text ≤ 200 chars
  std::string lease_id;                      // optional: the claim ends with this lease
  std::function<bool()> abandoned;           // optional, as LeaseRequest::abandoned
};

struct ClaimInfo {
  std::string id;        // "<pool>.<random>": names its pool, unguessable
  std::string pool;
  std::string key;       // the key column's value, as text
  std::string row_json;  // the whole row, as a JSON object (to_jsonb)
  int64_t token = 0;     // fencing token: strictly increasing per (pool, key)
  std::string holder;
  std::string lease_id;
  util::WallTime expires_at;
  std::string state;     // "active", "released", "expired"
};

class RecordPools {
 public:
  // `leases` resolves lease ids (for pools on a leased database and claims tied to a lease); both
  // must outlive this object.
  RecordPools(core::ControlStore& store, core::LeaseLookup& leases, const util::Clock& clock);
  ~RecordPools();
  RecordPools(const RecordPools&) = delete;
  RecordPools& operator=(const RecordPools&) = delete;

  // Creates or replaces pool `spec.name` after checking it against the target: the table exists,
  // `key` is one of its columns and unique, every `match` column exists. Creates schema testpool
  // and its claims table in the target if missing. Returns the pool with its counts; `created`
  // tells a new pool from a replaced one.
  // Errors: kInvalidName (a name), kInvalidArgument (neither or both of dsn/lease, unknown table or
  // column, non-unique key, a value the column's type rejects), kNotFound (unknown or ended
  // lease), kUnavailable (the target cannot be reached).
  RecordPoolInfo Define(const RecordPoolSpec& spec, bool* created = nullptr);
  // kNotFound when there is no such pool.
  RecordPoolInfo Get(const std::string& name);
  std::vector<RecordPoolInfo> List();
  // Forgets the pool (claims rows stay in the target: they are the record of what happened).
  // kNotFound when there is no such pool.
  void Drop(const std::string& name);

  // Reserves one free matching row. kNotFound (pool), kInvalidArgument (ttl, wait, holder, a match
  // column unknown to the table), kPoolExhausted (nothing free within `wait`), kUnavailable (the
  // target is down, or the client went away).
  ClaimInfo Claim(const ClaimRequest& request);
  // expires_at = now + ttl. kNotFound (never issued), kLeaseExpired (released or expired).
  ClaimInfo Renew(const std::string& claim_id, std::chrono::seconds ttl);
  // Ends the claim; idempotent (an ended claim is fine). kNotFound for an id never issued.
  void Release(const std::string& claim_id);
  // Ends every live claim tied to `lease_id`, and drops pools defined on its database.
  // Never throws (logs what it could not do).
  void LeaseEnded(const std::string& lease_id) noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::records
