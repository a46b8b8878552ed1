// The seed scenario: 20 parallel workers run a "purchase test" against ONE shared shop database,
// three ways, beside the raw purchase with no contention, all in the same run:
//   1. starts the daemon (local backend, fresh state dir, the repository's recipes), PUTs the demo
//      shop template (migrations/ + seed, no warm pool) and clones ONE shared database from it, as
//      a team's shared staging database would be; adds SKUS fixture products (name "seed bench
//      fixture", stock 1) and one product per worker for the raw primitive;
//   2. the purchase test, every mode alike: in one transaction read the product's stock (the test
//      asserts 1), insert an order of a seed customer and one order_item of quantity 1 (the
//      order_items trigger takes it from the stock; below 0 it fails on products_stock_nonnegative),
//      commit, then read the stock again (the test asserts its purchase took it from 1 to 0). The
//      first failed assertion or refused statement fails the test, as a test framework would;
//   3. the modes, each with TESTS tests per worker, all 20 workers started at once:
//      raw       each worker buys its own product, re-stocked to 1 before each test: no two tests
//                ever touch the same row — the baseline the other modes are measured against;
//      naive     each test picks one of the SKUS shared fixture SKUs and re-stocks it to 1 the way
//                a naive fixture does (UPDATE products SET stock = 1 WHERE sku = …), then buys it:
//                tests that interleave on a SKU sell it twice, see another test's stock or have
//                theirs re-stocked under them;
//      claims    the same fixture and test, but each test first claims its SKU from a record pool
//                over those fixture rows (PUT /v1/record-pools/…, POST …/claims, waiting when all
//                are held) and releases it afterwards (DELETE /v1/claims/{id});
//      builders  each test builds its own product (POST /v1/builds into the shared database, one
//                namespace per worker, stock overridden to 1) and buys it;
//   4. prints per mode: tests, failures, collisions (failures caused by another test), collision
//      rate, wall time, tests/s and the ratio to raw; the naive failures by kind; then removes what
//      the builders made (the tests' orders, then DELETE /v1/namespaces/{ns}), drops the shared
//      database and stops the daemon.
// Every wait is bounded; a broken run (errors that are not collisions, past a small budget) ends
// with a non-zero exit and the tail of the daemon's log.
//
// usage: seed_bench [SOURCE_DIR] [TESTPOOL_BINARY] [TESTS]   (SEED_SKUS: the fixture SKUs, default 10;
//        TESTPOOL_BENCH_KEEP=1 keeps the state dir and log)
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
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

constexpr int kWorkers = 20;
constexpr int kDefaultTests = 100;  // per worker and mode: the whole run takes about half a minute on 2 cores
constexpr int kDefaultSkus = 10;
constexpr int kMaxDatabases = 10;  // the template's pool stays empty; the shared database is ours
constexpr int kClaimTtlS = 60;
constexpr int kClaimWaitS = 30;
constexpr int kMaxErrors = 20;  // errors that are not collisions: past this a mode is broken, not slow
const char* const kTemplate = "seed_shop";
const char* const kPool = "seed_skus";
const char* const kFixtureName = "seed bench fixture";
const char* const kRawName = "seed bench raw";
const char* const kCustomerEmail = "grace.hopper@example.test";  // templates/seed/app_seed.sql

// Why a purchase test failed. The first three are collisions: another test touched the product.
const char* const kSoldOut = "sold out under the test (products_stock_nonnegative)";
const char* const kStockBefore = "stock before the purchase was not 1";
const char* const kStockAfter = "stock after the purchase was not 0 (re-stocked by another test)";
const char* const kDeadlock = "deadlock with another test";

enum class Mode { kRaw, kNaive, kClaims, kBuilders };
const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kRaw:
      return "raw purchase, own product";
    case Mode::kNaive:
      return "naive shared fixtures";
    case Mode::kClaims:
      return "testpool claims";
    case Mode::kBuilders:
      return "testpool builders";
  }
  return "?";
}

struct ModeResult {
  Mode mode = Mode::kRaw;
  int tests = 0, passed = 0, collisions = 0, errors = 0;
  double wall_s = 0;
  Samples setup, purchase;           // the fixture step (re-stock, claim, build) and the purchase itself
  std::map<std::string, int> kinds;  // failure kind → count
  double rate() const { return wall_s > 0 ? tests / wall_s : 0; }
  double collision_pct() const { return tests > 0 ? 100.0 * collisions / tests : 0; }
};

// What every worker shares: the daemon's port, the shared database, the seed customer.
struct Scene {
  int port = 0;
  fs::path state_dir;
  std::string db, dsn, customer_id;
  std::vector<std::string> fixture_skus;
};

// One purchase test of product `product_id` on `c`: "" when it passed, else why it failed
// (kSoldOut, kStockBefore, kStockAfter, kDeadlock, or an unexpected error's text).
std::string PurchaseTest(pg::Connection& c, const std::string& product_id, const std::string& customer_id) {
  try {
    {
      pg::Transaction tx(c);
      pg::Result before =
          c.ExecPrepared("stock", "SELECT stock, price_cents FROM products WHERE id = $1::bigint", {product_id});
      if (before.rows() != 1) return "the product is gone";
      if (before.Get(0, 0) != "1") return kStockBefore;
      const std::string order = std::string(
          c.ExecPrepared("order", "INSERT INTO orders (customer_id, status) VALUES ($1::bigint, 'paid') RETURNING id",
                         {customer_id})
              .Get(0, 0));
      c.ExecPrepared("item",
                     "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) "
                     "VALUES ($1::bigint, $2::bigint, 1, $3::int)",
                     {order, product_id, std::string(before.Get(0, 1))});
      tx.Commit();
    }
    pg::Result after = c.ExecPrepared("stock_after", "SELECT stock FROM products WHERE id = $1::bigint", {product_id});
    if (after.rows() != 1 || after.Get(0, 0) != "0") return kStockAfter;
    return "";
  } catch (const pg::PgError& e) {
    if (e.sqlstate() == "23514" && e.diagnostics().message.find("products_stock_nonnegative") != std::string::npos) {
      return kSoldOut;
    }
    if (e.sqlstate() == "40P01") return kDeadlock;
    return "error: " + std::string(e.what()).substr(0, 120);
  }
}

bool IsCollision(const std::string& kind) {
  return kind == kSoldOut || kind == kStockBefore || kind == kStockAfter || kind == kDeadlock;
}

// The naive fixture: the product back to stock 1, by SKU; returns its id.
std::string Restock(pg::Connection& c, const std::string& sku) {
  pg::Result r = c.ExecPrepared("restock", "UPDATE products SET stock = 1 WHERE sku = $1 RETURNING id::text", {sku});
  if (r.rows() != 1) Fail("no product with SKU " + sku);
  return std::string(r.Get(0, 0));
}

struct Claim {
  std::string id, sku;
};

// POST /v1/record-pools/seed_skus/claims; nullopt with `error` set unless a well-formed 201.
std::optional<Claim> ClaimSku(httplib::Client& http, const std::string& holder, std::string* error) {
  json req = {{"ttl_s", kClaimTtlS}, {"wait_s", kClaimWaitS}, {"holder", holder}};
  auto r = http.Post(std::string("/v1/record-pools/") + kPool + "/claims", req.dump(), "application/json");
  if (!r || r->status != 201) {
    *error = "claim: " + Describe(r);
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("row") ||
      !j["row"].is_object() || !j["row"].contains("sku") || !j["row"]["sku"].is_string() ||
      j["row"].value("name", "") != kFixtureName) {
    *error = "claim: malformed answer";
    return std::nullopt;
  }
  return Claim{j["id"].get<std::string>(), j["row"]["sku"].get<std::string>()};
}

// POST /v1/builds: one product with stock 1 in the shared database under `ns`; its id, or nullopt
// with `error` set.
std::optional<std::string> BuildProduct(httplib::Client& http, const Scene& scene, const std::string& ns,
                                        std::string* error) {
  json req = {
      {"dsn", scene.dsn}, {"namespace", ns}, {"recipe", "product"}, {"count", 1}, {"overrides", {{"stock", "1"}}}};
  auto r = http.Post("/v1/builds", req.dump(), "application/json");
  if (!r || r->status != 201) {
    *error = "build: " + DescribeWithBody(r).substr(0, 200);
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("keys") || !j["keys"].contains("product") ||
      !j["keys"]["product"].is_array() || j["keys"]["product"].size() != 1) {
    *error = "build: malformed answer";
    return std::nullopt;
  }
  return j["keys"]["product"][0].get<std::string>();
}

std::string WorkerNamespace(int w) { return "seed-bench-w" + std::to_string(w); }

// One mode: kWorkers workers, `tests` purchase tests each, started together.
ModeResult RunMode(Mode mode, Daemon& daemon, const Scene& scene, int tests) {
  std::printf("%-28s %d workers x %d tests ...\n", ModeName(mode), kWorkers, tests);
  ModeResult out;
  out.mode = mode;
  std::mutex mu;
  std::atomic<int> armed{0}, errors{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      std::optional<pg::Connection> conn;
      std::unique_ptr<httplib::Client> http;
      std::string setup_error;
      try {
        conn.emplace(AdminConnection(scene.state_dir, scene.db));
        conn->Exec("SET statement_timeout = '30s'");
        http = MakeClient(scene.port, 60s);
        if (auto r = http->Get("/healthz"); !r || r->status != 200) setup_error = "GET /healthz: " + Describe(r);
      } catch (const std::exception& e) {
        setup_error = std::string("connect: ") + e.what();
      }
      ++armed;
      while (!go) std::this_thread::yield();
      ModeResult mine;
      if (!setup_error.empty()) {
        ++errors;
        std::lock_guard<std::mutex> lock(mu);
        ++out.errors;
        ++out.kinds[setup_error];
        return;
      }
      std::mt19937 pick(static_cast<unsigned>(w) + 1);  // which shared SKU a naive test uses
      const std::string holder = "seed_bench-w" + std::to_string(w);
      for (int t = 0; t < tests && errors < kMaxErrors; ++t) {
        std::string product_id, kind;
        std::optional<Claim> claim;
        try {
          mine.setup.Add(TimeMs([&] {
            switch (mode) {
              case Mode::kRaw:
                product_id = Restock(*conn, "RAW-" + std::to_string(1000 + w));
                break;
              case Mode::kNaive:
                product_id = Restock(*conn, scene.fixture_skus[pick() % scene.fixture_skus.size()]);
                break;
              case Mode::kClaims:
                claim = ClaimSku(*http, holder, &kind);
                if (claim) product_id = Restock(*conn, claim->sku);
                break;
              case Mode::kBuilders:
                if (auto id = BuildProduct(*http, scene, WorkerNamespace(w), &kind)) product_id = *id;
                break;
            }
          }));
          if (!product_id.empty()) {
            mine.purchase.Add(TimeMs([&] { kind = PurchaseTest(*conn, product_id, scene.customer_id); }));
          }
        } catch (const std::exception& e) {
          kind = std::string("error: ") + std::string(e.what()).substr(0, 120);
        }
        if (claim) {
          auto r = http->Delete("/v1/claims/" + claim->id);
          if (!r || r->status != 204) kind = kind.empty() ? "release: " + Describe(r) : kind;
        }
        ++mine.tests;
        if (kind.empty()) {
          ++mine.passed;
        } else {
          ++mine.kinds[kind];
          if (IsCollision(kind)) {
            ++mine.collisions;
          } else {
            ++mine.errors;
            ++errors;
          }
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      out.tests += mine.tests;
      out.passed += mine.passed;
      out.collisions += mine.collisions;
      out.errors += mine.errors;
      for (const auto& [k, n] : mine.kinds) out.kinds[k] += n;
      out.setup.ms.insert(out.setup.ms.end(), mine.setup.ms.begin(), mine.setup.ms.end());
      out.purchase.ms.insert(out.purchase.ms.end(), mine.purchase.ms.begin(), mine.purchase.ms.end());
    });
  }
  while (armed < kWorkers) std::this_thread::yield();  // each connect is bounded by its timeouts
  const auto t0 = SteadyClock::now();
  go = true;
  for (auto& t : workers) t.join();
  out.wall_s = SecondsSince(t0);
  daemon.CheckAlive(std::string("running mode ") + ModeName(mode));
  if (errors >= kMaxErrors) {
    std::string kinds;
    for (const auto& [k, n] : out.kinds) kinds += (kinds.empty() ? "" : ", ") + std::to_string(n) + "x " + k;
    Fail(std::string(ModeName(mode)) + " stopped after " + std::to_string(errors.load()) +
         " errors that are not collisions: " + kinds);
  }
  return out;
}

// The shared shop database: a clone of the template, with the fixture and raw products.
void PrepareSharedDatabase(const fs::path& state_dir, const std::string& template_db, int skus, Scene* scene) {
  scene->db = "tp_bench_seed_" + util::RandomToken(8);
  {
    pg::Connection admin = AdminConnection(state_dir);
    admin.Exec("SET statement_timeout = '60s'");
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(scene->db) + " TEMPLATE " + admin.QuoteIdent(template_db));
  }
  scene->state_dir = state_dir;
  scene->dsn = SuperuserConnInfo(state_dir, scene->db).ToUri();
  pg::Connection c = AdminConnection(state_dir, scene->db);
  for (int i = 1; i <= skus; ++i) {
    char sku[16];
    std::snprintf(sku, sizeof sku, "FIX-%04d", i);
    scene->fixture_skus.push_back(sku);
    c.Exec("INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, 1999, 1)", {sku, kFixtureName});
  }
  for (int w = 0; w < kWorkers; ++w) {
    c.Exec("INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, 1999, 1)",
           {"RAW-" + std::to_string(1000 + w), kRawName});
  }
  pg::Result customer = c.Exec("SELECT id::text FROM customers WHERE email = $1", {kCustomerEmail});
  if (customer.rows() != 1) Fail(std::string("the seed has no customer ") + kCustomerEmail);
  scene->customer_id = std::string(customer.Get(0, 0));
  c.Exec("ANALYZE");
}

// PUT /v1/record-pools/seed_skus over the fixture products; fails unless it sees all of them.
void DefinePool(Daemon& daemon, const Scene& scene) {
  json body = {{"dsn", scene.dsn}, {"table", "products"}, {"key", "sku"}, {"match", {{"name", kFixtureName}}}};
  auto c = MakeClient(daemon.port(), 60s);
  auto r = c->Put(std::string("/v1/record-pools/") + kPool, body.dump(), "application/json");
  if (!r || (r->status != 201 && r->status != 200)) {
    daemon.CheckAlive("defining the record pool");
    Fail(std::string("PUT /v1/record-pools/") + kPool + " failed: " + DescribeWithBody(r));
  }
  json j = json::parse(r->body, nullptr, false);
  const int expected = static_cast<int>(scene.fixture_skus.size());
  if (j.is_discarded() || !j.is_object() || j.value("rows", -1) != expected) {
    Fail(std::string("PUT /v1/record-pools/") + kPool + " answered " + r->body.substr(0, 400) + " (expected " +
         std::to_string(expected) + " rows)");
  }
}

struct Cleanup {
  long long orders_deleted = 0, rows_dropped = 0;
  int namespaces_dropped = 0;
};

// What the run made: the tests' orders (their items cascade), then each worker's namespace through
// the API (the built products), then the record pool.
Cleanup CleanUp(Daemon& daemon, const Scene& scene) {
  Cleanup out;
  {
    pg::Connection c = AdminConnection(scene.state_dir, scene.db);
    out.orders_deleted = c.Exec("DELETE FROM orders WHERE customer_id = $1::bigint", {scene.customer_id}).Affected();
  }
  auto http = MakeClient(daemon.port(), 60s);
  for (int w = 0; w < kWorkers; ++w) {
    auto r = http->Delete("/v1/namespaces/" + WorkerNamespace(w));
    if (!r || r->status != 200) Fail("DELETE /v1/namespaces/" + WorkerNamespace(w) + ": " + DescribeWithBody(r));
    json j = json::parse(r->body, nullptr, false);
    out.rows_dropped += j.is_object() ? j.value("deleted", 0LL) : 0;
    ++out.namespaces_dropped;
  }
  auto r = http->Delete(std::string("/v1/record-pools/") + kPool);
  if (!r || r->status != 204) Fail(std::string("DELETE /v1/record-pools/") + kPool + ": " + DescribeWithBody(r));
  return out;
}

void Report(const std::vector<ModeResult>& modes, const Cleanup& cleanup, int tests, int skus, int pg_major,
            const std::string& load_before, const std::string& load_after) {
  const ModeResult& raw = modes.front();
  std::printf(
      "\ntestpool seed scenario — PostgreSQL %d, %d workers x %d purchase tests per mode on ONE shared shop "
      "database, %d shared fixture SKUs\n",
      pg_major, kWorkers, tests, skus);
  std::printf("machine: %u cores, load average %s at start, %s at the end\n\n", std::thread::hardware_concurrency(),
              load_before.c_str(), load_after.c_str());
  std::printf("%-27s %6s %7s %10s %8s %8s %8s %8s %10s %10s\n", "mode", "tests", "failed", "collisions", "rate",
              "wall s", "tests/s", "vs raw", "setup p50", "buy p50 ms");
  for (const ModeResult& m : modes) {
    std::printf("%-27s %6d %7d %10d %7.1f%% %8.2f %8.0f %8s %10.2f %10.2f\n", ModeName(m.mode), m.tests,
                m.tests - m.passed, m.collisions, m.collision_pct(), m.wall_s, m.rate(),
                m.mode == Mode::kRaw ? "1x" : RatioText(m.rate(), raw.rate()).c_str(), m.setup.Percentile(0.5),
                m.purchase.Percentile(0.5));
  }
  std::printf(
      "(setup: the fixture step of a test — raw/naive re-stock UPDATE, claim + re-stock, or a build over "
      "HTTP; a claim that waits for a held SKU waits in it)\n");
  for (const ModeResult& m : modes) {
    if (m.kinds.empty()) continue;
    std::printf("\n%s failures by kind:\n", ModeName(m.mode));
    for (const auto& [kind, n] : m.kinds) std::printf("  %6d  %s\n", n, kind.c_str());
  }
  std::printf("\nclean-up: %lld orders of the tests deleted, %d namespaces dropped (%lld built rows)\n\n",
              cleanup.orders_deleted, cleanup.namespaces_dropped, cleanup.rows_dropped);
  PrintFigureHeader();
  for (const ModeResult& m : modes) {
    if (m.mode == Mode::kRaw) continue;
    const bool naive = m.mode == Mode::kNaive;
    PrintFigure(std::string(ModeName(m.mode)) + ": collisions",
                std::to_string(m.collisions) + " (" + Fmt("%.1f%%)", m.collision_pct()),
                "raw " + std::to_string(raw.collisions), "-", naive ? "(shows them)" : "0", m.collisions == 0);
    PrintFigure(std::string(ModeName(m.mode)) + ": tests/s", Fmt("%.0f /s", m.rate()),
                "raw " + Fmt("%.0f /s", raw.rate()), RatioText(m.rate(), raw.rate()), "(no target)", true);
  }
}

void Run(const fs::path& source, const fs::path& binary, const ScratchDir& dir, int tests, int skus) {
  const fs::path state_dir = dir.state_dir();
  const std::string load_before = LoadAverage();
  const int port = FreePort();
  const std::string recipes = (source / "templates" / "builders").string();
  std::printf("starting %s serve --state-dir %s --listen 127.0.0.1:%d --recipes %s\n", binary.c_str(),
              state_dir.c_str(), port, recipes.c_str());
  Daemon daemon(binary, state_dir, dir.log(), port, kMaxDatabases, {"--recipes", recipes});
  LogTailOnFailure dump_log(daemon);
  daemon.WaitHealthy(180s);

  std::printf("daemon up (pid %d); building the shop template\n", daemon.pid());
  const PutAnswer tpl = PutTemplate(daemon, kTemplate, TemplateBody(source, /*min_ready=*/0, /*max=*/1));
  if (tpl.database.empty()) Fail(std::string("PUT /v1/templates/") + kTemplate + " answered no database name");
  Scene scene;
  scene.port = port;
  PrepareSharedDatabase(state_dir, tpl.database, skus, &scene);
  int pg_major = 0;
  {
    pg::Connection c = AdminConnection(state_dir, scene.db);
    pg_major = c.ServerVersion() / 10000;
  }
  std::printf("shared database %s: %d fixture SKUs (stock 1), %d raw products\n", scene.db.c_str(), skus, kWorkers);
  DefinePool(daemon, scene);

  std::vector<ModeResult> modes;
  for (Mode m : {Mode::kRaw, Mode::kNaive, Mode::kClaims, Mode::kBuilders}) {
    modes.push_back(RunMode(m, daemon, scene, tests));
  }
  const Cleanup cleanup = CleanUp(daemon, scene);
  {
    pg::Connection admin = AdminConnection(state_dir);
    admin.Exec("SET statement_timeout = '60s'");
    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(scene.db) + " WITH (FORCE)");
  }
  const int code = daemon.Stop(60s);
  if (code != 0) Fail("testpool serve did not stop cleanly on SIGTERM (exit code " + std::to_string(code) + ")");
  Report(modes, cleanup, tests, skus, pg_major, load_before, LoadAverage());
}

}  // namespace

int main(int argc, char** argv) {
  const fs::path source = argc > 1 ? argv[1] : TESTPOOL_SOURCE_DIR;
  const fs::path binary = argc > 2 ? argv[2] : TESTPOOL_BIN_PATH;
  const int tests = argc > 3 ? std::atoi(argv[3]) : kDefaultTests;
  const char* skus_env = std::getenv("SEED_SKUS");
  const int skus = skus_env != nullptr && *skus_env ? std::atoi(skus_env) : kDefaultSkus;
  if (tests < 1 || skus < 1 || skus > 9999 || !fs::exists(binary) || !fs::exists(source / "migrations")) {
    std::fprintf(stderr,
                 "usage: seed_bench [SOURCE_DIR] [TESTPOOL_BINARY] [TESTS]   (SEED_SKUS 1..9999)\n"
                 "(source %s, binary %s, tests %d, skus %d)\n",
                 source.c_str(), binary.c_str(), tests, skus);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines show up when piped

  int rc = 0;
  std::optional<ScratchDir> dir;  // removed on the way out (kept with TESTPOOL_BENCH_KEEP)
  try {
    dir.emplace("testpool-seed-bench");
    Run(source, binary, *dir, tests, skus);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seed_bench: FAILED: %s\n", e.what());
    rc = 1;
  }
  return rc;
}
