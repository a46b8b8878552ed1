#include "orchestrator/records/record_pools.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <thread>

#include "orchestrator/core/lease.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/pg/conninfo.h"
#include "orchestrator/pg/pool.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"
#include "orchestrator/util/time_format.h"

namespace testpool::records {

using core::ControlStore;
using core::LeaseInfo;
using core::LeaseState;
using core::LeaseLookup;
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kMaxTtl{24 * 3600};
constexpr std::chrono::seconds kMaxWait{600};
constexpr size_t kMaxHolder = 200;
constexpr int kRaceRetries = 8;  // a claim that lost a key to a concurrent one simply tries again
constexpr std::chrono::milliseconds kFirstPoll{50}, kMaxPoll{250};

// What a pool's definition creates in its target database. Claim rows are per (pool, key) and
// reused from claim to claim (token + 1 each time); claim_log keeps every claim id ever issued, so
// that releasing or renewing an old one is answered correctly (idempotent / 410), not 404.
constexpr const char* kTargetSchema = R"sql(
CREATE SCHEMA IF NOT EXISTS testpool;
CREATE TABLE IF NOT EXISTS testpool.claims (
  pool        text NOT NULL,
  key         text NOT NULL,
  claim_id    text NOT NULL UNIQUE,
  holder      text NOT NULL DEFAULT '',
  lease_id    text,
  token       bigint NOT NULL,
  claimed_at  timestamptz NOT NULL,
  expires_at  timestamptz NOT NULL,
  released_at timestamptz,
  PRIMARY KEY (pool, key)
);
CREATE INDEX IF NOT EXISTS claims_lease ON testpool.claims (lease_id) WHERE released_at IS NULL;
CREATE TABLE IF NOT EXISTS testpool.claim_log (
  claim_id   text PRIMARY KEY,
  pool       text NOT NULL,
  key        text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now()
);
)sql";

Error Invalid(const std::string& m) { return Error(ErrorCode::kInvalidArgument, m); }

// A table or column name: checked against the catalog later; here only what can never be one.
void CheckIdentifier(const std::string& name, const char* what) {
  if (name.empty() || name.size() > 63 ||
      std::any_of(name.begin(), name.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; })) {
    throw Error(ErrorCode::kInvalidName, std::string(what) + " must be 1 to 63 bytes without control characters");
  }
}

std::string PoolOfClaim(const std::string& claim_id) {
  const auto dot = claim_id.find('.');
  if (dot == std::string::npos || !util::IsValidName(claim_id.substr(0, dot)) || dot + 1 == claim_id.size() ||
      claim_id.size() - dot - 1 > 64 ||
      !std::all_of(claim_id.begin() + static_cast<long>(dot) + 1, claim_id.end(),
                   [](char c) { return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'); })) {
    throw Error(ErrorCode::kNotFound, "no claim " + claim_id);
  }
  return claim_id.substr(0, dot);
}

std::string MatchText(const std::map<std::string, std::string>& match) {
  std::string out;
  for (const auto& [k, v] : match) out += (out.empty() ? "" : ", ") + k + "=" + v;
  return out.empty() ? "(any row)" : out;
}

util::WallTime FromEpochMs(std::string_view text) {
  return util::FromEpochMs(std::stoll(std::string(text)));
}

}  // namespace

struct RecordPools::Impl {
  Impl(ControlStore& s, LeaseLookup& l, const util::Clock& c) : store(s), leases(l), clock(c) {}

  ControlStore& store;
  LeaseLookup& leases;
  const util::Clock& clock;

  std::mutex mu;
  std::condition_variable released;  // a claim was released through this daemon
  uint64_t releases = 0;             // guarded by mu; counts them, for waiters
  std::map<std::string, int> waiting;  // guarded by mu: Claim calls waiting, by pool (none: absent)
  // The claims waiting, by pool and match (QueueKey), first come first: only the head of a queue
  // tries the target, and a new claim joins the end of a non-empty queue instead of trying first.
  // Guarded by mu; an empty queue is erased.
  std::map<std::string, std::deque<uint64_t>> queues;
  uint64_t next_ticket = 0;  // guarded by mu
  // Connection pools by target (conninfo in keyword form); guarded by mu, never erased.
  std::map<std::string, std::unique_ptr<pg::ConnectionPool>> targets;
  // The quoted table and its columns, by pool name, so a claim does not ask the catalog each
  // time; guarded by mu. Forgotten when the pool is (re)defined or dropped, or when a statement
  // finds the table or a column gone.
  struct Shape {
    std::string table;
    std::set<std::string> columns;
  };
  std::map<std::string, Shape> shapes;

  Shape ShapeOf(pg::Connection& c, const RecordPoolSpec& s) {
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = shapes.find(s.name);
      if (it != shapes.end()) return it->second;
    }
    Shape shape;
    shape.table = CheckTable(c, s, &shape.columns);
    std::lock_guard<std::mutex> lock(mu);
    shapes[s.name] = shape;
    return shape;
  }
  void ForgetShape(const std::string& pool) {
    std::lock_guard<std::mutex> lock(mu);
    shapes.erase(pool);
  }

  // ---- definitions (control database) ------------------------------------------------------

  static RecordPoolSpec SpecFromRow(const pg::Result& r, int i) {
    RecordPoolSpec s;
    s.name = r.Get(i, 0);
    s.dsn = r.Get(i, 1);
    s.lease_id = r.Get(i, 2);
    s.schema = r.Get(i, 3);
    s.table = r.Get(i, 4);
    s.key = r.Get(i, 5);
    const json match = json::parse(r.Get(i, 6));  // a named object: a loop over a temporary's items() dangles
    for (const auto& [k, v] : match.items()) s.match[k] = v.get<std::string>();
    return s;
  }
  static constexpr const char* kColumns =
      "name, coalesce(dsn, ''), coalesce(lease_id, ''), schema_name, table_name, key_column, match::text "
      "FROM record_pools ";

  RecordPoolSpec Load(const std::string& name) {
    util::CheckName(name, "record pool name");
    auto conn = store.Connect();
    pg::Result r = conn->Exec(std::string("SELECT ") + kColumns + "WHERE name = $1", {name});
    if (r.rows() == 0) throw Error(ErrorCode::kNotFound, "no record pool named '" + name + "'");
    return SpecFromRow(r, 0);
  }

  // ---- targets -------------------------------------------------------------------------------

  pg::ConnInfo TargetInfo(const RecordPoolSpec& s) {
    if (!s.dsn.empty()) return pg::ConnInfo::Parse(s.dsn);
    LeaseInfo l = leases.GetLease(s.lease_id);
    if (l.state != LeaseState::kActive) throw Error(ErrorCode::kNotFound, "lease " + s.lease_id + " has ended");
    return store.AdminConnInfo(l.database);
  }

  pg::ConnectionPool& Target(const RecordPoolSpec& s) {
    pg::ConnInfo info = TargetInfo(s);
    const std::string key = info.ToKeywordString();
    std::lock_guard<std::mutex> lock(mu);
    auto& pool = targets[key];
    if (!pool) pool = std::make_unique<pg::ConnectionPool>(info, /*max_idle=*/32, std::chrono::seconds(5));
    return *pool;
  }

  // The qualified, quoted table, after checking the catalog; `columns` gets its column names.
  std::string CheckTable(pg::Connection& c, const RecordPoolSpec& s, std::set<std::string>* columns) {
    pg::Result t = c.Exec(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = $2",
        {s.schema, s.table});
    if (t.rows() == 0) throw Invalid("no table " + s.schema + "." + s.table + " in the target database");
    if (t.Get(0, 1) != "r" && t.Get(0, 1) != "p") {
      throw Invalid(s.schema + "." + s.table + " is not a table (rows of views cannot be claimed)");
    }
    const std::string oid(t.Get(0, 0));
    pg::Result cols = c.Exec("SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
                             {oid});
    for (int i = 0; i < cols.rows(); ++i) columns->insert(std::string(cols.Get(i, 0)));
    return c.QuoteIdent(s.schema) + "." + c.QuoteIdent(s.table);
  }

  static void CheckColumns(const std::map<std::string, std::string>& match, const std::set<std::string>& columns,
                           const RecordPoolSpec& s) {
    for (const auto& [col, value] : match) {
      CheckIdentifier(col, "a match column");
      if (!columns.count(col)) throw Invalid("table " + s.schema + "." + s.table + " has no column '" + col + "'");
    }
  }

  // " AND t.col = $n …" for `match`, appending its values to `params`.
  static std::string Where(pg::Connection& c, const std::map<std::string, std::string>& match, pg::Params* params) {
    std::string out;
    for (const auto& [col, value] : match) {
      params->push_back(value);
      out += " AND t." + c.QuoteIdent(col) + " = $" + std::to_string(params->size());
    }
    return out;
  }

  // Runs `f` on a pooled connection to the pool's target; a type error in a match value (the
  // column's type rejects the text) becomes kInvalidArgument. When `f` is idempotent, an idle
  // pooled connection that the server ended meanwhile (a restart, a recycle of a leased
  // database) is replaced once; a claim is not retried so (its statement may have committed
  // before the connection broke, and a second try would hold a second row).
  template <typename F>
  auto OnTarget(const RecordPoolSpec& s, F&& f, bool idempotent = true) {
    pg::ConnectionPool& pool = Target(s);
    for (int attempt = 0;; ++attempt) {
      auto conn = pool.Acquire();
      try {
        return f(*conn);
      } catch (const pg::PgError& e) {
        if (e.connection_lost() && idempotent && attempt == 0) continue;
        Rethrow(e);
      }
    }
  }

  [[noreturn]] static void Rethrow(const pg::PgError& e) {
    {
      const std::string& st = e.sqlstate();
      if (st.rfind("22", 0) == 0 || st == "42883" /* undefined_function: no = for these types */) {
        throw Invalid("a match value does not fit its column: " + e.diagnostics().message);
      }
      throw e;
    }
  }

  RecordPoolInfo Counts(const RecordPoolSpec& s) {
    RecordPoolInfo info;
    info.spec = s;
    if (!info.spec.dsn.empty()) info.spec.dsn = pg::ConnInfo::Parse(s.dsn).Redacted();
    OnTarget(s, [&](pg::Connection& c) {
      std::set<std::string> columns;
      const std::string table = CheckTable(c, s, &columns);
      pg::Params params{s.name};
      const std::string where = Where(c, s.match, &params);
      pg::Result r = c.Exec("SELECT (SELECT count(*) FROM " + table + " t WHERE true" + where +
                                "), (SELECT count(*) FROM testpool.claims WHERE pool = $1 AND released_at IS NULL "
                                "AND expires_at > clock_timestamp()), (SELECT count(*) FROM testpool.claims WHERE "
                                "pool = $1 AND released_at IS NULL AND expires_at <= clock_timestamp())",
                            params);
      info.rows = std::stoll(std::string(r.Get(0, 0)));
      info.claimed = std::stoll(std::string(r.Get(0, 1)));
      info.expired = std::stoll(std::string(r.Get(0, 2)));
      return 0;
    });
    std::lock_guard<std::mutex> lock(mu);
    auto it = waiting.find(s.name);
    info.waiting = it == waiting.end() ? 0 : it->second;
    return info;
  }

  // Exec, forgetting the pool's cached shape when the table or a column has gone meanwhile.
  pg::Result ExecOnShape(pg::Connection& c, const std::string& pool, const std::string& sql, const pg::Params& params) {
    try {
      return c.Exec(sql, params);
    } catch (const pg::PgError& e) {
      if (e.sqlstate() == "42P01" || e.sqlstate() == "42703") ForgetShape(pool);  // undefined table / column
      throw;
    }
  }

  // One attempt: a claim, or nullopt when no matching row is free right now.
  std::optional<ClaimInfo> TryClaim(const RecordPoolSpec& s, const ClaimRequest& req,
                                    const std::map<std::string, std::string>& match) {
    return OnTarget(s, [&](pg::Connection& c) -> std::optional<ClaimInfo> {
      const Shape shape = ShapeOf(c, s);
      const std::string& table = shape.table;
      CheckColumns(match, shape.columns, s);
      const std::string key = "t." + c.QuoteIdent(s.key) + "::text";
      for (int attempt = 0; attempt < kRaceRetries; ++attempt) {
        const std::string id = s.name + "." + util::RandomToken(26);
        pg::Params params{s.name, id, req.holder, req.lease_id.empty() ? pg::Param() : pg::Param(req.lease_id),
                          std::to_string(req.ttl.count())};
        const std::string where = Where(c, match, &params);
        pg::Result r = ExecOnShape(c, s.name,
            "WITH pick AS (SELECT " + key + " AS k, to_jsonb(t)::text AS row FROM " + table +
            " t WHERE NOT EXISTS (SELECT 1 FROM "
            "testpool.claims c WHERE c.pool = $1 AND c.key = " + key + " AND c.released_at IS NULL AND "
            "c.expires_at > clock_timestamp())" + where + " LIMIT 1 FOR UPDATE OF t SKIP LOCKED), "
            "won AS (INSERT INTO testpool.claims AS c (pool, key, claim_id, holder, lease_id, token, claimed_at, "
            "expires_at) SELECT $1, k, $2, $3, $4, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => $5) "
            "FROM pick ON CONFLICT (pool, key) DO UPDATE SET claim_id = EXCLUDED.claim_id, holder = EXCLUDED.holder, "
            "lease_id = EXCLUDED.lease_id, token = c.token + 1, claimed_at = EXCLUDED.claimed_at, "
            "expires_at = EXCLUDED.expires_at, released_at = NULL "
            "WHERE c.released_at IS NOT NULL OR c.expires_at <= clock_timestamp() "
            "RETURNING key, token, (extract(epoch FROM expires_at) * 1000)::bigint), "
            "logged AS (INSERT INTO testpool.claim_log (claim_id, pool, key) SELECT $2, $1, key FROM won) "
            // Always one row: how many keys were picked (0 or 1), and the claim if it was won.
            "SELECT (SELECT count(*) FROM pick), won.*, (SELECT row FROM pick) FROM (SELECT 1) AS one "
            "LEFT JOIN won ON true",
            params);
        if (!r.IsNull(0, 1)) {
          ClaimInfo out;
          out.id = id;
          out.pool = s.name;
          out.key = r.Get(0, 1);
          out.token = std::stoll(std::string(r.Get(0, 2)));
          out.expires_at = FromEpochMs(r.Get(0, 3));
          out.holder = req.holder;
          out.lease_id = req.lease_id;
          out.state = "active";
          out.row_json = r.IsNull(0, 4) ? "{}" : std::string(r.Get(0, 4));  // as locked by the pick
          return out;
        }
        // Nothing picked: nothing is free. Picked but not won: the key was claimed by a
        // transaction that committed after our snapshot (the upsert's WHERE refused it): again.
        if (r.Get(0, 0) == "0") return std::nullopt;
      }
      return std::nullopt;
    }, /*idempotent=*/false);
  }
};

RecordPools::RecordPools(ControlStore& store, LeaseLookup& leases, const util::Clock& clock)
    : impl_(std::make_unique<Impl>(store, leases, clock)) {}
RecordPools::~RecordPools() = default;

RecordPoolInfo RecordPools::Define(const RecordPoolSpec& spec, bool* created) {
  util::CheckName(spec.name, "record pool name");
  impl_->ForgetShape(spec.name);
  if (spec.dsn.empty() == spec.lease_id.empty()) throw Invalid("give exactly one of 'dsn' and 'lease'");
  CheckIdentifier(spec.schema, "schema");
  CheckIdentifier(spec.table, "table");
  CheckIdentifier(spec.key, "key");
  if (!spec.dsn.empty()) pg::ConnInfo::Parse(spec.dsn);  // kInvalidArgument with libpq's words
  impl_->OnTarget(spec, [&](pg::Connection& c) {
    std::set<std::string> columns;
    const std::string table = impl_->CheckTable(c, spec, &columns);
    if (!columns.count(spec.key)) throw Invalid("table " + spec.schema + "." + spec.table + " has no column '" + spec.key + "'");
    Impl::CheckColumns(spec.match, columns, spec);
    pg::Result unique = c.Exec(
        "SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indnkeyatts = 1 AND i.indpred IS NULL "
        "AND a.attname = $2",
        {table, spec.key});
    if (unique.rows() == 0) {
      throw Invalid("column '" + spec.key + "' of " + spec.schema + "." + spec.table +
                    " is not a key: it needs a primary key or a single-column unique index");
    }
    pg::Params params;
    c.Exec("SELECT count(*) FROM " + table + " t WHERE true" + Impl::Where(c, spec.match, &params), params);
    pg::ExecCreateIfNotExists(c, kTargetSchema);
    return 0;
  });
  json match = json::object();
  for (const auto& [k, v] : spec.match) match[k] = v;
  {
    auto conn = impl_->store.Connect();
    pg::Result r = conn->Exec(
        "INSERT INTO record_pools (name, dsn, lease_id, schema_name, table_name, key_column, match) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb) ON CONFLICT (name) DO UPDATE SET dsn = EXCLUDED.dsn, "
        "lease_id = EXCLUDED.lease_id, schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name, "
        "key_column = EXCLUDED.key_column, match = EXCLUDED.match, updated_at = now() RETURNING (xmax = 0)",
        {spec.name, spec.dsn.empty() ? pg::Param() : pg::Param(spec.dsn),
         spec.lease_id.empty() ? pg::Param() : pg::Param(spec.lease_id), spec.schema, spec.table, spec.key,
         match.dump()});
    if (created) *created = r.Get(0, 0) == "t";
  }
  log::Info("records.pool_defined", {{"pool", spec.name}, {"table", spec.schema + "." + spec.table},
                                     {"key", spec.key}, {"match", MatchText(spec.match)}});
  return impl_->Counts(spec);
}

RecordPoolInfo RecordPools::Get(const std::string& name) { return impl_->Counts(impl_->Load(name)); }

std::vector<RecordPoolInfo> RecordPools::List() {
  std::vector<RecordPoolSpec> specs;
  {
    auto conn = impl_->store.Connect();
    pg::Result r = conn->Exec(std::string("SELECT ") + Impl::kColumns + "ORDER BY name");
    for (int i = 0; i < r.rows(); ++i) specs.push_back(Impl::SpecFromRow(r, i));
  }
  std::vector<RecordPoolInfo> out;
  for (const RecordPoolSpec& s : specs) {
    try {
      out.push_back(impl_->Counts(s));
    } catch (const Error& e) {  // one unreachable target must not hide the others
      RecordPoolInfo info;
      info.spec = s;
      if (!info.spec.dsn.empty()) info.spec.dsn = pg::ConnInfo::Parse(s.dsn).Redacted();
      info.rows = info.claimed = info.expired = -1;
      out.push_back(info);
    }
  }
  return out;
}

void RecordPools::Drop(const std::string& name) {
  util::CheckName(name, "record pool name");
  auto conn = impl_->store.Connect();
  impl_->ForgetShape(name);
  if (conn->Exec("DELETE FROM record_pools WHERE name = $1", {name}).Affected() == 0) {
    throw Error(ErrorCode::kNotFound, "no record pool named '" + name + "'");
  }
  log::Info("records.pool_dropped", {{"pool", name}});
}

ClaimInfo RecordPools::Claim(const ClaimRequest& req) {
  const RecordPoolSpec spec = impl_->Load(req.pool);
  if (req.ttl.count() < 1 || req.ttl > kMaxTtl) throw Invalid("ttl_s must be between 1 and " + std::to_string(kMaxTtl.count()));
  if (req.wait.count() < 0 || req.wait > kMaxWait) throw Invalid("wait_s must be between 0 and " + std::to_string(kMaxWait.count()));
  if (req.holder.size() > kMaxHolder) throw Invalid("holder must be at most 200 characters");
  if (!req.lease_id.empty()) {
    LeaseInfo l = impl_->leases.GetLease(req.lease_id);  // kNotFound when unknown
    if (l.state != LeaseState::kActive) throw Error(ErrorCode::kLeaseExpired, "lease " + req.lease_id + " has ended");
    // Before the claim: a daemon that stops right after it still knows which pool to clean up.
    auto conn = impl_->store.Connect();
    conn->Exec("INSERT INTO record_claim_leases (lease_id, pool) VALUES ($1, $2) ON CONFLICT DO NOTHING",
               {req.lease_id, spec.name});
  }
  std::map<std::string, std::string> match = spec.match;
  for (const auto& [k, v] : req.match) {
    auto fixed = spec.match.find(k);
    if (fixed != spec.match.end() && fixed->second != v) {
      throw Invalid("the pool already matches " + k + "=" + fixed->second + "; the claim asked " + k + "=" + v);
    }
    match[k] = v;
  }
  const util::MonoTime start = util::RealMonoNow();  // a real wait (util/clock.h): outside the seam
  const util::MonoTime deadline = start + req.wait;
  const std::string queue_key = spec.name + "\n" + MatchText(match);
  auto poll = kFirstPoll;
  // In impl_->waiting and in the queue from the first miss (or from arriving behind others) to the
  // end of this call; leaving the queue wakes the next claim in it.
  struct Place {
    Impl& impl;
    const std::string& pool;
    const std::string& queue_key;
    std::optional<uint64_t> ticket;
    void Join(std::unique_lock<std::mutex>&) {
      if (ticket) return;
      ticket = impl.next_ticket++;
      impl.queues[queue_key].push_back(*ticket);
      ++impl.waiting[pool];
    }
    bool First(std::unique_lock<std::mutex>&) const {
      auto q = impl.queues.find(queue_key);
      return q == impl.queues.end() || (ticket && q->second.front() == *ticket);
    }
    ~Place() {
      if (!ticket) return;
      {
        std::lock_guard<std::mutex> lock(impl.mu);
        std::deque<uint64_t>& q = impl.queues[queue_key];
        q.erase(std::find(q.begin(), q.end(), *ticket));
        if (q.empty()) impl.queues.erase(queue_key);
        if (--impl.waiting[pool] == 0) impl.waiting.erase(pool);
      }
      impl.released.notify_all();  // the next in the queue may try now
    }
  } place{*impl_, spec.name, queue_key, std::nullopt};
  for (;;) {
    uint64_t seen;
    bool first;
    {
      std::unique_lock<std::mutex> lock(impl_->mu);
      seen = impl_->releases;
      first = place.First(lock);
      if (!first) place.Join(lock);  // others wait for this pool and match: behind them, no try
    }
    if (first) {
      if (auto got = impl_->TryClaim(spec, req, match)) {
        log::Info("records.claimed", {{"claim", got->id}, {"pool", spec.name}, {"key", got->key},
                                      {"token", std::to_string(got->token)}, {"holder", req.holder}});
        if (req.abandoned && util::RealMonoNow() > start + kFirstPoll && req.abandoned()) {
          Release(got->id);
          throw Error(ErrorCode::kUnavailable, "the client went away while waiting for a record of pool '" + spec.name + "'");
        }
        return *got;
      }
    }
    const util::MonoTime now = util::RealMonoNow();
    if (now >= deadline) break;
    if (req.abandoned && req.abandoned()) {
      throw Error(ErrorCode::kUnavailable, "the client went away while waiting for a record of pool '" + spec.name + "'");
    }
    std::unique_lock<std::mutex> lock(impl_->mu);
    place.Join(lock);
    // The head of the queue wakes for a release through this daemon (or polls, for releases made
    // elsewhere); the others wake when they become the head.
    const bool was_first = place.First(lock);
    impl_->released.wait_for(lock, std::min<std::chrono::steady_clock::duration>(poll, deadline - now), [&] {
      return place.First(lock) && (impl_->releases != seen || !was_first);
    });
    if (was_first) poll = std::min(poll * 2, kMaxPoll);
  }
  throw Error(ErrorCode::kPoolExhausted,
              "no record of pool '" + spec.name + "' matching " + MatchText(match) + " came free within " +
                  std::to_string(req.wait.count()) + " s",
              {{"pool", spec.name}, {"match", MatchText(match)}});
}

ClaimInfo RecordPools::Renew(const std::string& claim_id, std::chrono::seconds ttl) {
  const RecordPoolSpec spec = impl_->Load(PoolOfClaim(claim_id));
  if (ttl.count() < 1 || ttl > kMaxTtl) throw Invalid("ttl_s must be between 1 and " + std::to_string(kMaxTtl.count()));
  return impl_->OnTarget(spec, [&](pg::Connection& c) {
    pg::Result r = c.Exec(
        "UPDATE testpool.claims SET expires_at = clock_timestamp() + make_interval(secs => $2) "
        "WHERE claim_id = $1 AND released_at IS NULL AND expires_at > clock_timestamp() "
        "RETURNING pool, key, token, holder, coalesce(lease_id, ''), (extract(epoch FROM expires_at) * 1000)::bigint",
        {claim_id, std::to_string(ttl.count())});
    if (r.rows() == 0) {
      if (c.Exec("SELECT 1 FROM testpool.claim_log WHERE claim_id = $1", {claim_id}).rows() == 0) {
        throw Error(ErrorCode::kNotFound, "no claim " + claim_id);
      }
      throw Error(ErrorCode::kLeaseExpired, "claim " + claim_id + " has ended");
    }
    ClaimInfo out;
    out.id = claim_id;
    out.pool = r.Get(0, 0);
    out.key = r.Get(0, 1);
    out.token = std::stoll(std::string(r.Get(0, 2)));
    out.holder = r.Get(0, 3);
    out.lease_id = r.Get(0, 4);
    out.expires_at = FromEpochMs(r.Get(0, 5));
    out.state = "active";
    return out;
  });
}

void RecordPools::Release(const std::string& claim_id) {
  const RecordPoolSpec spec = impl_->Load(PoolOfClaim(claim_id));
  bool ended = impl_->OnTarget(spec, [&](pg::Connection& c) {
    if (c.Exec("UPDATE testpool.claims SET released_at = clock_timestamp() WHERE claim_id = $1 AND released_at IS NULL",
               {claim_id})
            .Affected() == 1) {
      return true;
    }
    if (c.Exec("SELECT 1 FROM testpool.claim_log WHERE claim_id = $1", {claim_id}).rows() == 0) {
      throw Error(ErrorCode::kNotFound, "no claim " + claim_id);
    }
    return false;  // ended already: releasing again is fine
  });
  if (!ended) return;
  log::Info("records.released", {{"claim", claim_id}, {"pool", spec.name}});
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    ++impl_->releases;
  }
  impl_->released.notify_all();
}

void RecordPools::LeaseEnded(const std::string& lease_id) noexcept {
  // On the release path of every lease: one indexed statement when the lease had no claims and no
  // pool, and a target is touched only when it holds claims of this lease.
  try {
    std::vector<std::string> pools_with_claims;
    {
      auto conn = impl_->store.Connect();
      pg::Result r = conn->Exec(
          "WITH gone AS (DELETE FROM record_pools WHERE lease_id = $1 RETURNING name), "
          "links AS (DELETE FROM record_claim_leases WHERE lease_id = $1 RETURNING pool) "
          "SELECT name, true FROM gone UNION ALL "
          "SELECT pool, false FROM links WHERE pool NOT IN (SELECT name FROM gone)",
          {lease_id});
      for (int i = 0; i < r.rows(); ++i) {
        if (r.Get(i, 1) == "t") {
          impl_->ForgetShape(std::string(r.Get(i, 0)));  // defined on the lease's database, which is recycled
        } else {
          pools_with_claims.emplace_back(r.Get(i, 0));
        }
      }
    }
    bool any = false;
    for (const std::string& name : pools_with_claims) {
      try {
        const RecordPoolSpec s = impl_->Load(name);
        long n = impl_->OnTarget(s, [&](pg::Connection& c) {
          return c.Exec("UPDATE testpool.claims SET released_at = clock_timestamp() WHERE pool = $1 AND lease_id = $2 "
                        "AND released_at IS NULL",
                        {s.name, lease_id})
              .Affected();
        });
        if (n > 0) {
          any = true;
          log::Info("records.released_with_lease", {{"lease", lease_id}, {"pool", s.name}, {"claims", std::to_string(n)}});
        }
      } catch (const std::exception& e) {
        log::Warn("records.lease_release_failed", {{"lease", lease_id}, {"pool", name}, {"error", e.what()}});
      }
    }
    if (any) {
      {
        std::lock_guard<std::mutex> lock(impl_->mu);
        ++impl_->releases;
      }
      impl_->released.notify_all();
    }
  } catch (const std::exception& e) {
    log::Warn("records.lease_release_failed", {{"lease", lease_id}, {"error", e.what()}});
  }
}

}  // namespace testpool::records
