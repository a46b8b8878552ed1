// Clone-mode resets (POST /v1/leases/{id}/reset on a template with "recycle":"clone"), measured
// against the real `testpool serve` over HTTP, beside the raw PostgreSQL primitives measured on the
// same server in the same run (issue 18 §3):
//   1. clean resets: the test connected and only read since the last reset; the reset is a check
//      (the lease's sessions ended, pg_stat_database's counters and the sequences compared with the
//      clone's) — target p50 <= 2 ms; printed beside the floor that check pays (a new connection to
//      the database and one query) and beside a raw re-clone;
//   2. dirty resets: the test inserted a row; the reset re-clones — target <= 1.1x the raw DROP +
//      CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY measured right after, each
//      after a session inserted a row into the copy (the same dirty buffers to write).
// Every wait is bounded; a daemon that fails ends the run with a non-zero exit and its log's tail.
//
// usage: reset_bench [RESETS]   (default 200; TESTPOOL_BENCH_KEEP=1 keeps the state dir and log)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

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

std::string Status(httplib::Client& http, const char* counter) {
  auto r = http.Get("/v1/status");
  if (!r || r->status != 200) Fail("status: " + DescribeWithBody(r));
  return json::parse(r->body)["counters"][counter].dump();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const int resets = argc > 1 ? std::max(10, std::atoi(argv[1])) : 200;
    ScratchDir scratch("testpool-reset-bench");
    Daemon daemon(TESTPOOL_BIN_PATH, scratch.state_dir(), scratch.log(), FreePort(), 10);
    LogTailOnFailure tail(daemon);
    daemon.WaitHealthy(std::chrono::seconds(180));
    PutAnswer tpl = PutTemplate(daemon, "app", TemplateBody(TESTPOOL_SOURCE_DIR, 1, 2));
    auto http = MakeClient(daemon.port(), std::chrono::seconds(60));
    auto leased = http->Post("/v1/templates/app/leases", R"({"ttl_s":3600,"wait_s":60})", "application/json");
    if (!leased || leased->status != 201) Fail("lease: " + DescribeWithBody(leased));
    const json lease = json::parse(leased->body);
    const std::string path = "/v1/leases/" + lease["id"].get<std::string>() + "/reset";
    const std::string dsn = lease["dsn"];
    auto reset = [&] {
      const auto t0 = std::chrono::steady_clock::now();
      auto r = http->Post(path, "", "application/json");
      const double ms = MsSince(t0);
      if (!r || r->status != 200) Fail("reset: " + DescribeWithBody(r));
      return ms;
    };

    // ---- 1. clean: a test that connected and read ------------------------------------------------
    Samples clean_ms, connect_ms;
    const std::string skipped_before = Status(*http, "resets_skipped");
    for (int i = 0; i < resets; ++i) {
      {
        const auto t0 = std::chrono::steady_clock::now();
        pg::Connection c = pg::Connection::Open(dsn);
        c.Exec("SELECT count(*) FROM products");
        connect_ms.Add(MsSince(t0));  // the floor of the check: a new session and a query
      }
      clean_ms.Add(reset());
    }
    const long skipped = std::stol(Status(*http, "resets_skipped")) - std::stol(skipped_before);
    if (skipped != resets) Fail(std::to_string(resets - skipped) + " clean resets re-cloned");

    // ---- 2. dirty: a test that inserted a row ---------------------------------------------------
    Samples dirty_ms;
    for (int i = 0; i < resets / 4; ++i) {
      {
        pg::Connection c = pg::Connection::Open(dsn);
        c.Exec("INSERT INTO products (sku, name, price_cents, stock) VALUES ('RST-" + std::to_string(1000 + i) +
               "', 'bench', 100, 5)");
      }
      dirty_ms.Add(reset());
    }
    {
      pg::Connection c = pg::Connection::Open(dsn);
      if (std::string(c.Exec("SELECT count(*) FROM products WHERE name = 'bench'").Get(0, 0)) != "0") {
        Fail("a reset left the lease's rows behind");
      }
    }

    // ---- the raw primitive: DROP + CREATE DATABASE ... TEMPLATE, as the daemon's superuser --------
    // Under the same conditions as the dirty resets: before each timed DROP + CREATE a session
    // inserts a row into the copy and disconnects, so the copy has dirty buffers that the CREATE's
    // checkpoint writes (a copy nobody wrote to re-clones faster than any real dirty reset can).
    pg::Connection admin = AdminConnection(scratch.state_dir());
    admin.Exec("DROP DATABASE IF EXISTS bench_reclone");
    admin.Exec("CREATE DATABASE bench_reclone TEMPLATE " + admin.QuoteIdent(tpl.database) + " STRATEGY FILE_COPY");
    const pg::ConnInfo copy = SuperuserConnInfo(scratch.state_dir(), "bench_reclone");
    Samples reclone_ms;
    for (int i = 0; i < resets / 4; ++i) {
      {
        pg::Connection c = pg::Connection::Open(copy);
        c.Exec("INSERT INTO products (sku, name, price_cents, stock) VALUES ('RAW-" + std::to_string(1000 + i) +
               "', 'bench', 100, 5)");
      }
      // Untimed: the session's backend is gone (DROP DATABASE would otherwise re-check for it every
      // 100 ms, a sleep the daemon avoids by polling for its end).
      for (int polls = 0; admin.Exec("SELECT 1 FROM pg_stat_activity WHERE datname = 'bench_reclone'").rows() > 0;
           ++polls) {
        if (polls > 100000) Fail("a session on bench_reclone did not end");
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      const auto t0 = std::chrono::steady_clock::now();
      admin.Exec("DROP DATABASE bench_reclone");
      admin.Exec("CREATE DATABASE bench_reclone TEMPLATE " + admin.QuoteIdent(tpl.database) + " STRATEGY FILE_COPY");
      reclone_ms.Add(MsSince(t0));
    }
    admin.Exec("DROP DATABASE IF EXISTS bench_reclone");

    std::printf("clone-mode resets over HTTP, one lease, load %s\n", LoadAverage().c_str());
    std::printf("%-46s %6s %9s %9s %9s %9s %9s\n", "ms", "n", "p50", "p95", "p99", "mean", "max");
    PrintLatencyRow("reset, nothing written (a check)", clean_ms);
    PrintLatencyRow("  raw: new connection + one SELECT", connect_ms);
    PrintLatencyRow("reset after an INSERT (a re-clone)", dirty_ms);
    PrintLatencyRow("  raw: INSERT, then DROP + CREATE ... TEMPLATE", reclone_ms);
    const double clean = clean_ms.Percentile(0.5), dirty = dirty_ms.Percentile(0.5), raw = reclone_ms.Percentile(0.5);
    std::printf("clean reset p50 %.2f ms (target <= 2 ms: %s) = %.2fx a new connection + SELECT, 1/%.0f of a re-clone\n",
                clean, clean <= 2.0 ? "met" : "MISSED", clean / std::max(connect_ms.Percentile(0.5), 0.001),
                raw / std::max(clean, 0.001));
    std::printf("dirty reset p50 %.1f ms = %.2fx the raw DROP + CREATE (target <= 1.1x: %s)\n", dirty,
                dirty / std::max(raw, 0.001), dirty <= 1.1 * raw ? "met" : "MISSED");
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reset_bench: %s\n", e.what());
    return 1;
  }
}
