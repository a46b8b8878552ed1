// Savepoint mode (recycle "rollback") against the real daemon, each figure beside the raw
// PostgreSQL primitive measured in the same run:
//   1. reset latency through the API (POST /v1/leases/{id}/reset after the lease wrote something)
//      beside a re-clone of the same database (DROP DATABASE + CREATE DATABASE … TEMPLATE);
//   2. the proxy's overhead: pgbench TPS with one client, select-only (-S) and the default
//      TPC-B-like script, straight to the server vs through the proxy — both over unix sockets,
//      same scale, same protocol (-M simple and -M prepared);
//   3. 8 pgbench clients sharing one lease (serialised by design: one server transaction per lease)
//      beside 8 clients straight to the server.
// Knobs: RESETS (default 300), PGBENCH_S (seconds per pgbench run, default 8).
#include <boost/process.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/daemon_harness.h"

namespace bp = boost::process;
using namespace testpool::bench;
using nlohmann::json;

namespace {

int EnvInt(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : fallback;
}

struct Target {
  std::string host, port, user, password, database;
};

// This process's environment with the PG* variables of `t` (pgbench reads nothing else).
bp::environment PgEnv(const Target& t) {
  bp::environment env = boost::this_process::environment();
  env.set("PGHOST", t.host);
  env.set("PGPORT", t.port);
  env.set("PGUSER", t.user);
  env.set("PGPASSWORD", t.password);
  env.set("PGDATABASE", t.database);
  return env;
}

// Runs pgbench with `args` against `t`; returns its TPS (fails on a non-zero exit or no figure).
double Pgbench(const Target& t, const std::vector<std::string>& args) {
  bp::environment env = PgEnv(t);
  bp::ipstream out;
  bp::child c(bp::search_path("pgbench"), bp::args(args), bp::std_out > out, bp::std_err > bp::null, env);
  std::string line, all;
  double tps = -1;
  while (std::getline(out, line)) {
    all += line + "\n";
    if (line.rfind("tps = ", 0) == 0) tps = std::atof(line.c_str() + 6);
  }
  c.wait();
  if (c.exit_code() != 0 || tps < 0) Fail("pgbench failed (exit " + std::to_string(c.exit_code()) + "):\n" + all);
  return tps;
}

void Init(const Target& t) {
  bp::environment env = PgEnv(t);
  // No vacuum (it cannot run in a transaction block), no foreign keys: the same for both sides.
  int rc = bp::system(bp::search_path("pgbench"), "-i", "-I", "dtgp", "-s", "1", "-q", bp::std_out > bp::null,
                      bp::std_err > bp::null, env);
  if (rc != 0) Fail("pgbench -i failed on " + t.database);
}

}  // namespace

int main() {
  try {
    const int resets = EnvInt("RESETS", 300);
    const int seconds = EnvInt("PGBENCH_S", 8);
    ScratchDir scratch("testpool-proxy-bench");
    const int proxy_port = FreePort();
    Daemon daemon(TESTPOOL_BIN_PATH, scratch.state_dir(), scratch.log(), FreePort(), 20,
                  {"--proxy-listen", "127.0.0.1:" + std::to_string(proxy_port)});
    LogTailOnFailure tail(daemon);
    daemon.WaitHealthy(std::chrono::seconds(180));
    json body = TemplateBody(TESTPOOL_SOURCE_DIR, 2, 4);
    body["recycle"] = "rollback";
    PutAnswer tpl = PutTemplate(daemon, "rb", body);
    auto http = MakeClient(daemon.port(), std::chrono::seconds(60));

    auto lease_answer = http->Post("/v1/templates/rb/leases", R"({"ttl_s":3600,"wait_s":60})", "application/json");
    if (!lease_answer || lease_answer->status != 201) Fail("lease: " + DescribeWithBody(lease_answer));
    const json lease = json::parse(lease_answer->body);
    const std::string id = lease["id"];

    // ---- 1. reset latency ----------------------------------------------------------------------
    testpool::pg::Connection client = testpool::pg::Connection::Open(lease["dsn"].get<std::string>());
    Samples reset_ms;
    for (int i = 0; i < resets; ++i) {
      client.Exec("INSERT INTO products (sku, name, price_cents, stock) VALUES ('BEN-" + std::to_string(1000 + i) +
                  "', 'bench', 100, 5)");
      const auto t0 = std::chrono::steady_clock::now();
      auto r = http->Post("/v1/leases/" + id + "/reset", "{}", "application/json");
      const double ms = SecondsSince(t0) * 1000;
      if (!r || r->status != 200) Fail("reset: " + DescribeWithBody(r));
      reset_ms.Add(ms);
    }
    if (std::string(client.Exec("SELECT count(*) FROM products WHERE name = 'bench'").Get(0, 0)) != "0") {
      Fail("a reset left the lease's rows behind");
    }
    // The raw primitive: re-clone a database of the same template (what clone mode's reset does).
    testpool::pg::Connection admin = AdminConnection(scratch.state_dir());
    Samples reclone_ms;
    for (int i = 0; i < 15; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      admin.Exec("DROP DATABASE IF EXISTS bench_reclone");
      admin.Exec("CREATE DATABASE bench_reclone TEMPLATE " + admin.QuoteIdent(tpl.database) + " STRATEGY FILE_COPY");
      reclone_ms.Add(SecondsSince(t0) * 1000);
    }
    admin.Exec("DROP DATABASE IF EXISTS bench_reclone");
    std::printf("reset (rollback mode), %d resets over HTTP: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", resets,
                reset_ms.Percentile(0.5), reset_ms.Percentile(0.99), reset_ms.Percentile(1.0));
    std::printf("  raw re-clone (DROP + CREATE DATABASE ... TEMPLATE), 15 runs: p50 %.1f ms, p99 %.1f ms\n",
                reclone_ms.Percentile(0.5), reclone_ms.Percentile(0.99));
    std::printf("  reset = 1/%.0f of a re-clone at p50 (target: p50 <= 2 ms)\n",
                reclone_ms.Percentile(0.5) / std::max(reset_ms.Percentile(0.5), 0.001));

    // ---- 2. and 3. pgbench, direct vs through the proxy -----------------------------------------
    const testpool::pg::ConnInfo su = SuperuserConnInfo(scratch.state_dir());
    admin.Exec("DROP DATABASE IF EXISTS bench_direct");
    admin.Exec("CREATE DATABASE bench_direct");
    Target direct{su.Get("host"), su.Get("port"), su.Get("user"), su.Get("password"), "bench_direct"};
    Target proxied{(scratch.state_dir() / "proxy").string(), std::to_string(proxy_port), lease["user"],
                   lease["password"], lease["database"]};
    Init(direct);
    Init(proxied);
    const std::string t = std::to_string(seconds);
    std::printf("pgbench, scale 1, %d s per run, both over unix sockets (load %s)\n", seconds, LoadAverage().c_str());
    for (const char* mode : {"simple", "prepared"}) {
      for (bool select_only : {true, false}) {
        std::vector<std::string> args = {"-n", "-M", mode, "-c", "1", "-T", t};
        if (select_only) args.push_back("-S");
        const double d = Pgbench(direct, args), p = Pgbench(proxied, args);
        std::printf("  1 client, %-11s -M %-8s direct %8.0f tps, through the proxy %8.0f tps = %3.0f%% (target >= 70%%)\n",
                    select_only ? "select-only" : "TPC-B-like", mode, d, p, 100 * p / d);
      }
    }
    {
      std::vector<std::string> args = {"-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", t};
      const double d = Pgbench(direct, args), p = Pgbench(proxied, args);
      std::printf("  8 clients, TPC-B-like -M prepared: direct %8.0f tps, 8 clients sharing one lease %8.0f tps = %3.0f%%"
                  " (one transaction at a time per lease, by design)\n", d, p, 100 * p / d);
      std::vector<std::string> sel = {"-n", "-M", "prepared", "-S", "-c", "8", "-j", "2", "-T", t};
      const double ds = Pgbench(direct, sel), ps = Pgbench(proxied, sel);
      std::printf("  8 clients, select-only -M prepared: direct %8.0f tps, sharing one lease %8.0f tps = %3.0f%%\n", ds,
                  ps, 100 * ps / ds);
    }
    admin.Exec("DROP DATABASE IF EXISTS bench_direct");
    http->Delete("/v1/leases/" + id);
    daemon.Stop(std::chrono::seconds(60));
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "proxy_bench: %s\n", e.what());
    return 1;
  }
}
