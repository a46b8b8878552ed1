// Record-pool claims measured against the real `testpool serve` over HTTP, beside the same claims
// made with libpq directly on the same server in the same run:
//   1. starts the daemon (local backend, fresh state dir), makes a scratch database on its server
//      with test_users(user_id int PRIMARY KEY, profile_type text), 200 rows, and defines record
//      pool `bench_users` on it over its superuser DSN (match profile_type = 'standard', which
//      every row has, so the filter is on the path but all 200 rows are claimable);
//   2. 20 keep-alive clients claim and release back to back (POST /v1/record-pools/…/claims,
//      DELETE /v1/claims/{id}) until CLAIMS claims were asked: claim+release pairs/s, claim and
//      release latency. Every grant is checked: no key held by two claims at once, and each key's
//      fencing token above every token it had before (a shared map; a key is marked free before
//      its DELETE goes out, since the next grant may follow the release at once);
//   3. the raw primitive: 20 libpq connections make the same claims — the daemon's statement (pick
//      a free matching row FOR UPDATE SKIP LOCKED, upsert its claim row, log the claim id) with the
//      row returned in the same round trip, again at once when a concurrent claim won the key — and
//      release them (an UPDATE), as prepared statements, on a claims table of their own in the same
//      database, checked the same way: pairs/s, and how often a claim lost its key to another;
//   4. checks the daemon's bookkeeping in the target: no live claim left, the tokens issued add up
//      to the claims granted, one claim_log row per grant;
//   5. fairness: 64 clients loop claim → hold 2 ms → release on a pool of 20 rows (more claimers
//      than rows: most claims wait), FAIR_ROUNDS rounds each; the claim waits' p50, p90 and max,
//      and the timeouts (target: max <= 3x the p90, 0 timeouts: waiters served in order);
// then prints one table, drops the scratch database, stops the daemon (SIGTERM) and removes the
// state dir. Every wait is bounded; a failure ends the run with a non-zero exit and the tail of
// the daemon's log.
//
// usage: claims_bench [TESTPOOL_BINARY] [CLAIMS]   (TESTPOOL_BENCH_KEEP=1 keeps the state dir and log)
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/daemon_harness.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace testpool;
using namespace testpool::bench;

namespace {

constexpr int kClients = 20;
constexpr int kRows = 200;
constexpr int kMaxDatabases = 10;  // the daemon pools no database here; the scratch one is ours
constexpr int kTtlS = 300;
constexpr int kWaitS = 5;
constexpr int kMaxErrors = 50;  // a phase stops asking past this many: broken, not slow
// A raw claim that lost its key to a concurrent one (picked it, but the other committed first)
// tries again at once, up to this often in a row; the daemon tries 8 times, then waits for a release.
constexpr int kRawAttempts = 200;
constexpr std::chrono::seconds kPhaseLimit{300};
const char* const kPool = "bench_users";
const char* const kProfile = "standard";

// The user's table, and the raw primitive's claims tables: the daemon's testpool.claims and
// testpool.claim_log, in schema public under names of their own.
constexpr const char* kSchemaSql = R"sql(
SET statement_timeout = '60s';
CREATE TABLE test_users (user_id int PRIMARY KEY, profile_type text NOT NULL);
CREATE TABLE bench_claims (
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
CREATE TABLE bench_claim_log (
  claim_id   text PRIMARY KEY,
  pool       text NOT NULL,
  key        text NOT NULL,
  claimed_at timestamptz NOT NULL DEFAULT now()
);
)sql";

// The daemon's claim statement (records/record_pools.cc) on bench_claims, with the claimed row
// returned in the same round trip. $1 pool, $2 claim id, $3 holder, $4 ttl in s, $5 profile_type.
// One row always: how many keys were picked (0 or 1), then the key, token and row if it was won.
constexpr const char* kRawClaimSql =
    "WITH pick AS (SELECT t.user_id::text AS k FROM test_users t WHERE NOT EXISTS (SELECT 1 FROM bench_claims c "
    "WHERE c.pool = $1 AND c.key = t.user_id::text AND c.released_at IS NULL AND c.expires_at > clock_timestamp()) "
    "AND t.profile_type = $5 LIMIT 1 FOR UPDATE OF t SKIP LOCKED), "
    "won AS (INSERT INTO bench_claims AS c (pool, key, claim_id, holder, lease_id, token, claimed_at, expires_at) "
    "SELECT $1, k, $2, $3, NULL, 1, clock_timestamp(), clock_timestamp() + make_interval(secs => $4) FROM pick "
    "ON CONFLICT (pool, key) DO UPDATE SET claim_id = EXCLUDED.claim_id, holder = EXCLUDED.holder, "
    "lease_id = EXCLUDED.lease_id, token = c.token + 1, claimed_at = EXCLUDED.claimed_at, "
    "expires_at = EXCLUDED.expires_at, released_at = NULL "
    "WHERE c.released_at IS NOT NULL OR c.expires_at <= clock_timestamp() RETURNING key, token), "
    "logged AS (INSERT INTO bench_claim_log (claim_id, pool, key) SELECT $2, $1, key FROM won) "
    "SELECT (SELECT count(*) FROM pick), won.key, won.token, "
    "(SELECT to_jsonb(u)::text FROM test_users u WHERE u.user_id = won.key::int) "
    "FROM (SELECT 1) AS one LEFT JOIN won ON true";
constexpr const char* kRawReleaseSql =
    "UPDATE bench_claims SET released_at = clock_timestamp() WHERE claim_id = $1 AND released_at IS NULL";

// Sees every grant of one phase, from any thread: a key granted while a client still holds it is a
// double holder; a token not above every earlier token of its key is a regression.
class GrantChecker {
 public:
  void Granted(const std::string& key, long long token) {
    std::lock_guard<std::mutex> lock(mu_);
    Key& k = keys_[key];
    if (k.held) ++double_holders_;
    if (token <= k.token) ++regressions_;
    k.held = true;
    k.token = std::max(k.token, token);
    ++grants_;
  }
  // Before the release goes out: the next grant of the key may follow it at once.
  void Releasing(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    keys_[key].held = false;
  }
  int double_holders() const { return double_holders_; }
  int regressions() const { return regressions_; }
  long grants() const { return grants_; }
  size_t keys() const {
    std::lock_guard<std::mutex> lock(mu_);
    return keys_.size();
  }

 private:
  struct Key {
    bool held = false;
    long long token = 0;
  };
  mutable std::mutex mu_;
  std::map<std::string, Key> keys_;  // guarded by mu_
  std::atomic<int> double_holders_{0}, regressions_{0};
  std::atomic<long> grants_{0};
};

// The scratch database on the daemon's server, created by the constructor and dropped by Drop()
// or, failing that, the destructor (WITH (FORCE): the daemon keeps pooled connections to it).
class ScratchDatabase {
 public:
  explicit ScratchDatabase(const fs::path& state_dir)
      : state_dir_(state_dir), name_("tp_bench_claims_" + util::RandomToken(8)) {
    pg::Connection admin = AdminConnection(state_dir_);
    admin.Exec("SET statement_timeout = '60s'");
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(name_));
    exists_ = true;
  }
  ~ScratchDatabase() {
    if (!exists_) return;
    try {
      Drop();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "claims_bench: could not drop database %s: %s\n", name_.c_str(), e.what());
    }
  }
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;

  const std::string& name() const { return name_; }
  // Throws pg::PgError when the server refuses.
  void Drop() {
    pg::Connection admin = AdminConnection(state_dir_);
    admin.Exec("SET statement_timeout = '60s'");
    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(name_) + " WITH (FORCE)");
    exists_ = false;
  }

 private:
  const fs::path state_dir_;
  const std::string name_;
  bool exists_ = false;
};

struct Claim {
  std::string id, key;
  long long token = 0;
};

// One POST …/claims; nullopt with `error` set on anything but a well-formed 201 whose row is the
// one its key names and matches the pool's filter.
std::optional<Claim> TakeClaim(httplib::Client& c, const std::string& holder, std::string* error) {
  json req = {{"ttl_s", kTtlS}, {"wait_s", kWaitS}, {"holder", holder}};
  auto r = c.Post(std::string("/v1/record-pools/") + kPool + "/claims", req.dump(), "application/json");
  if (!r || r->status != 201) {
    *error = Describe(r);
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "malformed claim answer";
    return std::nullopt;
  }
  for (const char* f : {"id", "pool", "key", "row", "token", "expires_at"}) {
    if (!j.contains(f)) {
      *error = std::string("claim answer without '") + f + "'";
      return std::nullopt;
    }
  }
  if (!j["id"].is_string() || !j["key"].is_string() || !j["token"].is_number_integer() || !j["row"].is_object()) {
    *error = "claim answer with ill-typed id/key/token/row";
    return std::nullopt;
  }
  if (j["pool"] != kPool) {
    *error = "claim answer names another pool";
    return std::nullopt;
  }
  const json& row = j["row"];
  if (!row.contains("user_id") || !row["user_id"].is_number_integer() ||
      std::to_string(row["user_id"].get<long long>()) != j["key"].get<std::string>() || row.value("profile_type", "") != kProfile) {
    *error = "claim answer whose row is not its key's, or does not match the pool";
    return std::nullopt;
  }
  return Claim{j["id"].get<std::string>(), j["key"].get<std::string>(), j["token"].get<long long>()};
}

bool ReleaseClaim(httplib::Client& c, const std::string& id, std::string* error) {
  auto r = c.Delete("/v1/claims/" + id);
  if (r && r->status == 204) return true;
  *error = Describe(r);
  return false;
}

struct Results {
  std::string load_before, load_after;
  int pg_major = 0;
  // 2. Over HTTP.
  int asked = 0;
  double http_s = 0, daemon_cpu_ms = 0;
  bench::Samples claim, release;
  Tally errors;
  int double_holders = 0, regressions = 0;
  long granted = 0;
  size_t keys_seen = 0;
  // 3. The raw primitive.
  double raw_s = 0;
  bench::Samples raw_claim, raw_release;
  Tally raw_errors;
  int raw_double_holders = 0, raw_regressions = 0, raw_races = 0;
  long raw_granted = 0;
  // 4. The daemon's bookkeeping in the target database, and its own count.
  long long live_left = -1, tokens_issued = -1, claims_logged = -1, api_claimed = -1;
  long granted_total = 0;  // every claim the daemon granted, the first one's included
};

// PUT /v1/record-pools/bench_users; fails unless the pool sees all kRows rows.
void DefinePool(Daemon& daemon, const std::string& dsn) {
  json body = {{"dsn", dsn}, {"schema", "public"}, {"table", "test_users"}, {"key", "user_id"},
               {"match", {{"profile_type", kProfile}}}};
  auto c = MakeClient(daemon.port(), 60s);
  auto r = c->Put(std::string("/v1/record-pools/") + kPool, body.dump(), "application/json");
  if (!r || (r->status != 201 && r->status != 200)) {
    daemon.CheckAlive("defining the record pool");
    Fail(std::string("PUT /v1/record-pools/") + kPool + " failed: " + DescribeWithBody(r));
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("rows", -1) != kRows || j.value("free", -1) != kRows) {
    Fail(std::string("PUT /v1/record-pools/") + kPool + " answered " + r->body.substr(0, 400) + " (expected rows and free " +
         std::to_string(kRows) + ")");
  }
}

// 2. kClients keep-alive clients claim and release back to back until `claims` were asked.
void HttpClaims(Daemon& daemon, int claims, GrantChecker& checker, Results* out) {
  std::printf("claims over HTTP: %d clients claim and release back to back, %d claims\n", kClients, claims);
  std::atomic<int> next{0}, armed{0};
  std::atomic<bool> go{false}, stop{false};
  std::mutex mu;
  const auto deadline = SteadyClock::now() + kPhaseLimit;
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t) {
    clients.emplace_back([&, t] {
      auto c = MakeClient(daemon.port(), 30s);
      const std::string holder = "claims_bench-" + std::to_string(t);
      // Opens the keep-alive connection before the clock starts.
      if (auto r = c->Get("/healthz"); !r || r->status != 200) out->errors.Add("GET /healthz: " + Describe(r));
      ++armed;
      while (!go) std::this_thread::yield();
      bench::Samples claim, release;
      while (!stop && next.fetch_add(1) < claims && SteadyClock::now() < deadline) {
        std::string err;
        std::optional<Claim> got;
        double ms = bench::TimeMs([&] { got = TakeClaim(*c, holder, &err); });
        if (!got) {
          out->errors.Add(err);
          if (out->errors.total() >= kMaxErrors) stop = true;
          continue;
        }
        claim.Add(ms);
        checker.Granted(got->key, got->token);
        checker.Releasing(got->key);
        bool ok = true;
        release.Add(bench::TimeMs([&] { ok = ReleaseClaim(*c, got->id, &err); }));
        if (!ok) {
          out->errors.Add("release: " + err);
          if (out->errors.total() >= kMaxErrors) stop = true;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      out->claim.ms.insert(out->claim.ms.end(), claim.ms.begin(), claim.ms.end());
      out->release.ms.insert(out->release.ms.end(), release.ms.begin(), release.ms.end());
    });
  }
  while (armed < kClients) std::this_thread::yield();  // each connect is bounded by its client's timeouts
  const double cpu_before = CpuMs(daemon.pid());
  const auto t0 = SteadyClock::now();
  go = true;
  for (auto& t : clients) t.join();
  out->http_s = SecondsSince(t0);
  out->daemon_cpu_ms = CpuMs(daemon.pid()) - cpu_before;
  out->asked = std::min(next.load(), claims);
  daemon.CheckAlive("claiming");
  if (SteadyClock::now() >= deadline) std::printf("note: the HTTP phase hit its %lld s deadline\n",
                                                  static_cast<long long>(kPhaseLimit.count()));
  if (stop) Fail("the HTTP claim phase stopped after " + std::to_string(kMaxErrors) + " errors: " + out->errors.Summary());
}

// 5. Fairness: kFairClients clients loop claim → hold → release on a pool of kFairRows rows.
void Fairness(Daemon& daemon, const fs::path& state_dir, const std::string& db) {
  constexpr int kFairClients = 64, kFairRows = 20;
  const int rounds = std::max(1, std::atoi(std::getenv("FAIR_ROUNDS") ? std::getenv("FAIR_ROUNDS") : "10"));
  {
    pg::Connection c = AdminConnection(state_dir, db);
    c.Exec("UPDATE test_users SET profile_type = 'fair' WHERE user_id <= $1::int", {std::to_string(kFairRows)});
  }
  json body = {{"dsn", SuperuserConnInfo(state_dir, db).ToUri()}, {"schema", "public"}, {"table", "test_users"},
               {"key", "user_id"}, {"match", {{"profile_type", "fair"}}}};
  auto admin = MakeClient(daemon.port(), 60s);
  auto r = admin->Put("/v1/record-pools/bench_fair", body.dump(), "application/json");
  if (!r || (r->status != 201 && r->status != 200)) Fail("PUT /v1/record-pools/bench_fair: " + DescribeWithBody(r));
  std::mutex mu;
  bench::Samples waits;
  Tally errors;
  std::atomic<int> timeouts{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kFairClients; ++t) {
    clients.emplace_back([&, t] {
      auto c = MakeClient(daemon.port(), 120s);
      const json req = {{"ttl_s", kTtlS}, {"wait_s", 60}, {"holder", "fair-" + std::to_string(t)}};
      bench::Samples mine;
      for (int i = 0; i < rounds; ++i) {
        std::optional<httplib::Result> answer;
        mine.Add(bench::TimeMs([&] { answer.emplace(c->Post("/v1/record-pools/bench_fair/claims", req.dump(), "application/json")); }));
        const httplib::Result& got = *answer;
        if (!got || got->status != 201) {
          if (got && got->status == 503) ++timeouts;
          errors.Add(Describe(got));
          continue;
        }
        std::this_thread::sleep_for(2ms);  // the test's work while it holds the row
        const std::string id = json::parse(got->body)["id"];
        auto rel = c->Delete("/v1/claims/" + id);
        if (!rel || rel->status != 204) errors.Add("release: " + Describe(rel));
      }
      std::lock_guard<std::mutex> lock(mu);
      waits.ms.insert(waits.ms.end(), mine.ms.begin(), mine.ms.end());
    });
  }
  for (auto& t : clients) t.join();
  daemon.CheckAlive("the fairness phase");
  const double p90 = waits.Percentile(0.9), max = waits.Percentile(1.0);
  std::printf("\nfairness: %d clients x %d rounds on %d rows, claim -> hold 2 ms -> release over HTTP\n", kFairClients,
              rounds, kFairRows);
  PrintLatencyHeader();
  PrintLatencyRow("claim (waits included)", waits);
  std::printf("max wait %.1f ms = %.2fx the p90 (target <= 3x: %s); %d timeouts (target 0: %s)%s%s\n", max,
              max / std::max(p90, 0.001), max <= 3 * p90 ? "met" : "MISSED", timeouts.load(),
              timeouts == 0 ? "met" : "MISSED", errors.empty() ? "" : "; errors: ", errors.Summary().c_str());
  auto dropped = admin->Delete("/v1/record-pools/bench_fair");
  if (!dropped || dropped->status != 204) Fail("DELETE /v1/record-pools/bench_fair: " + DescribeWithBody(dropped));
}

// 3. The raw primitive: kClients libpq connections make `claims` claim + release pairs in all.
void RawClaims(const fs::path& state_dir, const std::string& db, int claims, Results* out) {
  std::printf("raw claims: %d libpq connections × prepared claim + release, %d pairs\n", kClients, claims);
  GrantChecker checker;
  std::atomic<int> next{0}, armed{0}, races{0};
  std::atomic<bool> go{false}, stop{false};
  std::mutex mu;
  const auto deadline = SteadyClock::now() + kPhaseLimit;
  std::vector<std::thread> threads;
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      std::optional<pg::Connection> conn;
      try {
        conn.emplace(AdminConnection(state_dir, db));
        conn->Exec("SET statement_timeout = '30s'");
      } catch (const std::exception& e) {
        out->raw_errors.Add(std::string("connect: ") + e.what());
        stop = true;
      }
      ++armed;
      while (!go) std::this_thread::yield();
      const std::string holder = "claims_bench-raw-" + std::to_string(t);
      bench::Samples claim, release;
      while (conn && !stop && next.fetch_add(1) < claims && SteadyClock::now() < deadline) {
        try {
          std::optional<Claim> got;
          bool none_free = false;
          double ms = bench::TimeMs([&] {
            for (int attempt = 0; attempt < kRawAttempts && !got && !none_free; ++attempt) {
              const std::string id = std::string(kPool) + "." + util::RandomToken(26);
              pg::Result r = conn->ExecPrepared("claim", kRawClaimSql, {kPool, id, holder, std::to_string(kTtlS), kProfile});
              if (!r.IsNull(0, 1)) {
                got = Claim{id, std::string(r.Get(0, 1)), std::stoll(std::string(r.Get(0, 2)))};
              } else if (r.Get(0, 0) == "0") {
                none_free = true;
              } else {
                ++races;  // picked, but another claim committed the key first
              }
            }
          });
          if (!got) {
            out->raw_errors.Add(none_free ? "no free row" : "lost " + std::to_string(kRawAttempts) + " races in a row");
            if (out->raw_errors.total() >= kMaxErrors) stop = true;
            continue;
          }
          claim.Add(ms);
          checker.Granted(got->key, got->token);
          checker.Releasing(got->key);
          long affected = 0;
          release.Add(bench::TimeMs([&] { affected = conn->ExecPrepared("release", kRawReleaseSql, {got->id}).Affected(); }));
          if (affected != 1) out->raw_errors.Add("release ended " + std::to_string(affected) + " claims");
        } catch (const std::exception& e) {
          out->raw_errors.Add(std::string(e.what()).substr(0, 120));
          if (out->raw_errors.total() >= kMaxErrors || !conn->IsOk()) stop = true;
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      out->raw_claim.ms.insert(out->raw_claim.ms.end(), claim.ms.begin(), claim.ms.end());
      out->raw_release.ms.insert(out->raw_release.ms.end(), release.ms.begin(), release.ms.end());
    });
  }
  while (armed < kClients) std::this_thread::yield();  // each connect is bounded by its connect timeout
  const auto t0 = SteadyClock::now();
  go = true;
  for (auto& t : threads) t.join();
  out->raw_s = SecondsSince(t0);
  out->raw_granted = checker.grants();
  out->raw_double_holders = checker.double_holders();
  out->raw_regressions = checker.regressions();
  out->raw_races = races;
  if (stop) Fail("the raw claim phase stopped: " + out->raw_errors.Summary());
}

// 4. What the daemon left in the target, and what it says about the pool.
void CheckBookkeeping(Daemon& daemon, const fs::path& state_dir, const std::string& db, Results* out) {
  auto c = MakeClient(daemon.port(), 30s);
  auto r = c->Get(std::string("/v1/record-pools/") + kPool);
  if (!r || r->status != 200) Fail(std::string("GET /v1/record-pools/") + kPool + " failed: " + DescribeWithBody(r));
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("claimed") || !j["claimed"].is_number_integer()) {
    Fail(std::string("GET /v1/record-pools/") + kPool + " answered " + r->body.substr(0, 400));
  }
  out->api_claimed = j["claimed"].get<long long>();
  pg::Connection conn = AdminConnection(state_dir, db);
  pg::Result q = conn.Exec(
      "SELECT (SELECT count(*) FROM testpool.claims WHERE pool = $1 AND released_at IS NULL AND "
      "expires_at > clock_timestamp()), (SELECT coalesce(sum(token), 0) FROM testpool.claims WHERE pool = $1), "
      "(SELECT count(*) FROM testpool.claim_log WHERE pool = $1)",
      {kPool});
  out->live_left = std::stoll(std::string(q.Get(0, 0)));
  out->tokens_issued = std::stoll(std::string(q.Get(0, 1)));
  out->claims_logged = std::stoll(std::string(q.Get(0, 2)));
}

void Run(const fs::path& binary, const ScratchDir& dir, int claims, Results* out) {
  const fs::path state_dir = dir.state_dir();
  out->load_before = LoadAverage();
  // 1. The daemon, the scratch database, the pool.
  int port = FreePort();
  std::printf("starting %s serve --state-dir %s --listen 127.0.0.1:%d --max-databases %d\n", binary.c_str(),
              state_dir.c_str(), port, kMaxDatabases);
  Daemon daemon(binary, state_dir, dir.log(), port, kMaxDatabases);
  LogTailOnFailure dump_log(daemon);
  daemon.WaitHealthy(180s);

  ScratchDatabase db(state_dir);
  std::printf("daemon up (pid %d); scratch database %s with %d rows in test_users\n", daemon.pid(), db.name().c_str(),
              kRows);
  {
    pg::Connection c = AdminConnection(state_dir, db.name());
    out->pg_major = c.ServerVersion() / 10000;
    c.Exec(kSchemaSql);
    c.Exec("INSERT INTO test_users SELECT i, $2 FROM generate_series(1, $1::int) i", {std::to_string(kRows), kProfile});
    c.Exec("ANALYZE test_users");
  }
  DefinePool(daemon, SuperuserConnInfo(state_dir, db.name()).ToUri());

  // A first claim, alone: the API must work before 20 clients hammer it.
  GrantChecker checker;
  {
    auto c = MakeClient(port, 30s);
    std::string err;
    auto got = TakeClaim(*c, "claims_bench", &err);
    if (!got) Fail("the first claim failed: " + err);
    checker.Granted(got->key, got->token);
    checker.Releasing(got->key);
    if (!ReleaseClaim(*c, got->id, &err)) Fail("releasing the first claim failed: " + err);
  }

  HttpClaims(daemon, claims, checker, out);
  out->granted = static_cast<long>(out->claim.ms.size());
  out->granted_total = checker.grants();
  out->double_holders = checker.double_holders();
  out->regressions = checker.regressions();
  out->keys_seen = checker.keys();

  RawClaims(state_dir, db.name(), claims, out);
  CheckBookkeeping(daemon, state_dir, db.name(), out);
  Fairness(daemon, state_dir, db.name());
  out->load_after = LoadAverage();

  {
    auto c = MakeClient(port, 30s);
    auto r = c->Delete(std::string("/v1/record-pools/") + kPool);
    if (!r || r->status != 204) Fail(std::string("DELETE /v1/record-pools/") + kPool + " failed: " + DescribeWithBody(r));
  }
  db.Drop();
  int code = daemon.Stop(60s);
  if (code != 0) Fail("testpool serve did not stop cleanly on SIGTERM (exit code " + std::to_string(code) + ")");
}

void Report(const Results& r, int claims) {
  const double http_rate = r.http_s > 0 ? static_cast<double>(r.granted) / r.http_s : 0;
  const double raw_rate = r.raw_s > 0 ? static_cast<double>(r.raw_granted) / r.raw_s : 0;
  const double claim_p50 = r.claim.Percentile(0.5), claim_p99 = r.claim.Percentile(0.99);
  const double raw_p50 = r.raw_claim.Percentile(0.5), raw_p99 = r.raw_claim.Percentile(0.99);
  const double release_p50 = r.release.Percentile(0.5), raw_release_p50 = r.raw_release.Percentile(0.5);

  std::printf("\ntestpool claims bench — PostgreSQL %d, %d clients, %d claims asked, pool of %d rows (ttl_s %d, wait_s %d)\n",
              r.pg_major, kClients, claims, kRows, kTtlS, kWaitS);
  std::printf("machine: %u cores, load average %s at start, %s at the end\n\n", std::thread::hardware_concurrency(),
              r.load_before.c_str(), r.load_after.c_str());
  PrintLatencyHeader();
  PrintLatencyRow("claim, POST /v1/record-pools/…/claims", r.claim);
  PrintLatencyRow("raw claim statement, 20 libpq clients", r.raw_claim);
  PrintLatencyRow("release, DELETE /v1/claims/{id}", r.release);
  PrintLatencyRow("raw release UPDATE, 20 libpq clients", r.raw_release);
  std::printf("\nHTTP: %ld claim+release pairs in %.2f s over %zu keys; raw: %ld pairs in %.2f s, %d lost races retried "
              "(%.0f per 100 raw claims)\n",
              r.granted, r.http_s, r.keys_seen, r.raw_granted, r.raw_s, r.raw_races,
              r.raw_granted > 0 ? 100.0 * r.raw_races / static_cast<double>(r.raw_granted) : 0.0);
  std::printf("daemon bookkeeping: %lld live claims left (API says %lld claimed), tokens issued %lld and claim ids logged "
              "%lld for %ld claims granted\n\n",
              r.live_left, r.api_claimed, r.tokens_issued, r.claims_logged, r.granted_total);

  PrintFigureHeader();
  PrintFigure("claim+release pairs/s, 20 clients", Fmt("%.0f /s", http_rate), "raw pairs " + Fmt("%.0f /s", raw_rate),
              RatioText(http_rate, raw_rate), "(no target)", true);
  PrintFigure("claim p50", Fmt("%.3f ms", claim_p50), "raw claim " + Fmt("%.3f ms", raw_p50),
              RatioText(claim_p50, raw_p50), "(no target)", true);
  PrintFigure("claim p99", Fmt("%.3f ms", claim_p99), "raw claim " + Fmt("%.3f ms", raw_p99),
              RatioText(claim_p99, raw_p99), "(no target)", true);
  PrintFigure("release p50", Fmt("%.3f ms", release_p50), "raw release " + Fmt("%.3f ms", raw_release_p50),
              RatioText(release_p50, raw_release_p50), "(no target)", true);
  PrintFigure("daemon CPU per claim+release",
              Fmt("%.3f ms", r.granted > 0 ? r.daemon_cpu_ms / static_cast<double>(r.granted) : 0), "-", "-",
              "(no target)", true);
  PrintFigure("double holders", std::to_string(r.double_holders) + " in " + std::to_string(r.granted_total),
              "raw " + std::to_string(r.raw_double_holders) + " in " + std::to_string(r.raw_granted), "-", "0",
              r.double_holders == 0 && r.raw_double_holders == 0 && r.granted > 0);
  PrintFigure("token regressions", std::to_string(r.regressions), "raw " + std::to_string(r.raw_regressions), "-", "0",
              r.regressions == 0 && r.raw_regressions == 0);
  PrintFigure("errors (claim, release)", std::to_string(r.errors.total()) + " of " + std::to_string(r.asked),
              "raw " + std::to_string(r.raw_errors.total()), "-", "0", r.errors.empty() && r.raw_errors.empty());
  PrintFigure("live claims left, tokens == grants", std::to_string(r.live_left) + ", " +
              (r.tokens_issued == r.granted_total && r.claims_logged == r.granted_total ? "yes" : "NO"),
              "-", "-", "0, yes",
              r.live_left == 0 && r.api_claimed == 0 && r.tokens_issued == r.granted_total &&
                  r.claims_logged == r.granted_total);
  if (!r.errors.empty()) std::printf("\nerrors over HTTP: %s\n", r.errors.Summary().c_str());
  if (!r.raw_errors.empty()) std::printf("raw errors: %s\n", r.raw_errors.Summary().c_str());
  std::printf("\na claim over HTTP is %s of the raw claim statement (p50 %.3f ms vs %.3f ms); pairs/s %s of raw\n",
              RatioText(claim_p50, raw_p50).c_str(), claim_p50, raw_p50, RatioText(http_rate, raw_rate).c_str());
}

}  // namespace

int main(int argc, char** argv) {
  fs::path binary = argc > 1 ? argv[1] : TESTPOOL_BIN_PATH;
  int claims = argc > 2 ? std::atoi(argv[2]) : 4000;
  if (claims < 1 || !fs::exists(binary)) {
    std::fprintf(stderr, "usage: claims_bench [TESTPOOL_BINARY] [CLAIMS]\n(binary %s, claims %d)\n", binary.c_str(),
                 claims);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines show up when piped

  int rc = 0;
  std::optional<ScratchDir> dir;  // removed on the way out (kept with TESTPOOL_BENCH_KEEP)
  Results results;
  try {
    dir.emplace("testpool-claims-bench");
    Run(binary, *dir, claims, &results);
    Report(results, claims);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "claims_bench: FAILED: %s\n", e.what());
    rc = 1;
  }
  return rc;
}
