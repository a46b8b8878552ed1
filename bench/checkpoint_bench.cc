// Checkpoints (issue 14): saving one and restoring it after a test wrote, over HTTP against the
// real `testpool serve`, in both recycle modes, beside the raw PostgreSQL primitive each mode
// stands on, measured on the same server in the same run:
//   rollback mode: POST …/reset {"to"} after an INSERT — target p50 <= 2 ms; raw: ROLLBACK TO
//                  SAVEPOINT after an INSERT on a direct connection (one round trip);
//   clone mode:    the same restore (a re-clone from the checkpoint's database); raw: DROP +
//                  CREATE DATABASE … TEMPLATE <checkpoint's database> STRATEGY FILE_COPY.
// The demo shop (migrations/ and its seed) is the template; the checkpoint holds 50 more orders.
// Every wait is bounded; a daemon that fails ends the run with a non-zero exit and its log's tail.
//
// usage: checkpoint_bench [RESTORES]   (default 200 in rollback mode, a quarter of it in clone mode)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/daemon_harness.h"
#include "orchestrator/pg/connection.h"

using json = nlohmann::json;
using namespace testpool;
using namespace testpool::bench;

namespace {

double MsSince(std::chrono::steady_clock::time_point t0) { return SecondsSince(t0) * 1000; }

constexpr const char* kSeedOrders =
    "INSERT INTO orders (customer_id) "
    "SELECT c.id FROM customers c ORDER BY c.id LIMIT 50";
constexpr const char* kTestWrite = "UPDATE products SET stock = stock + 1 WHERE id = (SELECT min(id) FROM products)";

struct ModeFigures {
  Samples save_ms, restore_ms;
  std::string database;  // the lease's
};

// A lease of `tpl`; the checkpoint "seeded" after kSeedOrders; then `restores` rounds of a test's
// write and a restore. Checks that the restores really restore.
ModeFigures Run(httplib::Client& http, const std::string& tpl, int restores) {
  auto leased = http.Post("/v1/templates/" + tpl + "/leases", R"({"ttl_s":3600,"wait_s":120})", "application/json");
  if (!leased || leased->status != 201) Fail("lease: " + DescribeWithBody(leased));
  const json lease = json::parse(leased->body);
  const std::string id = lease["id"], dsn = lease["dsn"];
  ModeFigures f;
  f.database = lease["database"];
  pg::Connection c = pg::Connection::Open(dsn);
  c.Exec(kSeedOrders);
  const std::string orders = std::string(c.Exec("SELECT count(*) FROM orders").Get(0, 0));
  const std::string stock = std::string(c.Exec("SELECT sum(stock) FROM products").Get(0, 0));
  for (int i = 0; i < 5; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto r = http.Post("/v1/leases/" + id + "/checkpoints", R"({"name":"seeded"})", "application/json");
    if (!r || r->status != 201) Fail("checkpoint: " + DescribeWithBody(r));
    f.save_ms.Add(MsSince(t0));
  }
  for (int i = 0; i < restores; ++i) {
    {
      pg::Connection w = pg::Connection::Open(dsn);
      w.Exec(kTestWrite);
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto r = http.Post("/v1/leases/" + id + "/reset", R"({"to":"seeded"})", "application/json");
    if (!r || r->status != 200) Fail("restore: " + DescribeWithBody(r));
    f.restore_ms.Add(MsSince(t0));
  }
  pg::Connection check = pg::Connection::Open(dsn);
  if (std::string(check.Exec("SELECT count(*) FROM orders").Get(0, 0)) != orders ||
      std::string(check.Exec("SELECT sum(stock) FROM products").Get(0, 0)) != stock) {
    Fail("a restore did not bring the checkpoint's rows back");
  }
  http.Delete("/v1/leases/" + id);
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int restores = argc > 1 ? std::max(20, std::atoi(argv[1])) : 200;
    ScratchDir scratch("testpool-checkpoint-bench");
    Daemon daemon(TESTPOOL_BIN_PATH, scratch.state_dir(), scratch.log(), FreePort(), 10);
    LogTailOnFailure tail(daemon);
    daemon.WaitHealthy(std::chrono::seconds(180));
    json rollback_body = TemplateBody(TESTPOOL_SOURCE_DIR, 1, 2), clone_body = rollback_body;
    rollback_body["recycle"] = "rollback";
    clone_body["recycle"] = "clone";
    PutAnswer rb = PutTemplate(daemon, "app_rb", rollback_body);
    PutAnswer cl = PutTemplate(daemon, "app_cl", clone_body);
    auto http = MakeClient(daemon.port(), std::chrono::seconds(120));

    const ModeFigures rollback = Run(*http, "app_rb", restores);
    const ModeFigures clone = Run(*http, "app_cl", restores / 4);

    // ---- raw: ROLLBACK TO SAVEPOINT after the same write, on a direct connection ----------------
    pg::Connection admin = AdminConnection(scratch.state_dir());
    admin.Exec("DROP DATABASE IF EXISTS bench_ckpt");
    admin.Exec("CREATE DATABASE bench_ckpt TEMPLATE " + admin.QuoteIdent(cl.database) + " STRATEGY FILE_COPY");
    Samples savepoint_ms;
    {
      pg::Connection direct = AdminConnection(scratch.state_dir(), "bench_ckpt");
      direct.Exec("BEGIN");
      direct.Exec(kSeedOrders);
      direct.Exec("SAVEPOINT seeded");
      for (int i = 0; i < restores; ++i) {
        direct.Exec(kTestWrite);
        const auto t0 = std::chrono::steady_clock::now();
        direct.Exec("ROLLBACK TO SAVEPOINT seeded");
        savepoint_ms.Add(MsSince(t0));
      }
      direct.Exec("ROLLBACK");
    }
    // ---- raw: DROP + CREATE DATABASE … TEMPLATE a database holding the checkpoint's rows ---------
    {
      pg::Connection seeded = AdminConnection(scratch.state_dir(), "bench_ckpt");
      seeded.Exec(kSeedOrders);
    }
    Samples reclone_ms;
    for (int i = 0; i < restores / 4; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      admin.Exec("DROP DATABASE IF EXISTS bench_ckpt_copy");
      admin.Exec("CREATE DATABASE bench_ckpt_copy TEMPLATE bench_ckpt STRATEGY FILE_COPY");
      reclone_ms.Add(MsSince(t0));
    }
    admin.Exec("DROP DATABASE IF EXISTS bench_ckpt_copy");
    admin.Exec("DROP DATABASE IF EXISTS bench_ckpt");

    std::printf("checkpoints over HTTP (demo shop + 50 orders), one lease per mode, load %s\n", LoadAverage().c_str());
    std::printf("%-46s %6s %9s %9s %9s %9s %9s\n", "ms", "n", "p50", "p95", "p99", "mean", "max");
    PrintLatencyRow("rollback: save a checkpoint", rollback.save_ms);
    PrintLatencyRow("rollback: restore it after an UPDATE", rollback.restore_ms);
    PrintLatencyRow("  raw: ROLLBACK TO SAVEPOINT (direct)", savepoint_ms);
    PrintLatencyRow("clone: save a checkpoint (a clone)", clone.save_ms);
    PrintLatencyRow("clone: restore it after an UPDATE (re-clone)", clone.restore_ms);
    PrintLatencyRow("  raw: DROP + CREATE DATABASE ... TEMPLATE", reclone_ms);
    const double rb50 = rollback.restore_ms.Percentile(0.5), sp50 = savepoint_ms.Percentile(0.5);
    const double cl50 = clone.restore_ms.Percentile(0.5), raw50 = reclone_ms.Percentile(0.5);
    std::printf("rollback restore p50 %.2f ms (target <= 2 ms: %s) = %.1fx a raw ROLLBACK TO SAVEPOINT (%.3f ms)\n",
                rb50, rb50 <= 2.0 ? "met" : "MISSED", rb50 / std::max(sp50, 0.001), sp50);
    std::printf("clone restore p50 %.1f ms = %.2fx the raw DROP + CREATE (%.1f ms)\n", cl50,
                cl50 / std::max(raw50, 0.001), raw50);
    (void)rb;
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "checkpoint_bench: %s\n", e.what());
    return 1;
  }
}
