// Template build time for the demo migrations, beside the raw clone primitives measured on the
// same server in the same run: CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY and WAL_LOG.
// These raw figures are the baseline every later figure (lease handout, recycle) is compared to.
//
// usage: template_bench [SOURCE_DIR] [ROUNDS]   (TESTPOOL_BENCH_DSN to measure an external server)
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

using namespace testpool;

int main(int argc, char** argv) {
  std::filesystem::path source = argc > 1 ? argv[1] : TESTPOOL_SOURCE_DIR;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 20;
  log::SetLevel(log::Level::kWarn);

  bench::BenchServer server;
  auto store = core::ControlStore::Open(server.backend().AdminConnInfo());
  core::TemplateBuilder builder(*store, util::RealClock());

  core::TemplateSpec spec;
  spec.migrations = core::LoadMigrationsDir(source / "migrations");
  spec.seed = {core::LoadSqlFile(source / "templates" / "seed" / "app_seed.sql")};

  // 1. Template builds (distinct names, so each one really builds).
  bench::Samples build;
  std::vector<std::string> names;
  for (int i = 0; i < 5; ++i) {
    spec.name = "bench_" + util::RandomToken(6);
    core::ValidateSpec(&spec);
    std::string hash = core::TemplateHash(spec, builder.ServerMajor());
    core::BuildOutcome out;
    build.Add(bench::TimeMs([&] { out = builder.Ensure(spec, hash, nullptr); }));
    names.push_back(out.database);
  }
  // 2. The same hash again: found built, nothing rebuilt.
  bench::Samples reuse;
  std::string hash = core::TemplateHash(spec, builder.ServerMajor());
  for (int i = 0; i < rounds; ++i) reuse.Add(bench::TimeMs([&] { builder.Ensure(spec, hash, nullptr); }));

  // 3. Raw clones of that template, each strategy, and the drops.
  pg::ConnInfo admin_info = server.backend().AdminConnInfo();
  admin_info.Set("dbname", "postgres");
  pg::Connection admin = pg::Connection::Open(admin_info);
  const std::string tpl = admin.QuoteIdent(names.back());
  admin.Exec("ALTER DATABASE " + tpl + " WITH ALLOW_CONNECTIONS false");
  bench::Samples file_copy, wal_log, drop;
  for (int i = 0; i < rounds; ++i) {
    for (const char* strategy : {"FILE_COPY", "WAL_LOG"}) {
      std::string db = admin.QuoteIdent("tp_bench_clone_" + util::RandomToken(6));
      double ms = bench::TimeMs([&] { admin.Exec("CREATE DATABASE " + db + " TEMPLATE " + tpl + " STRATEGY " + strategy); });
      (std::string(strategy) == "FILE_COPY" ? file_copy : wal_log).Add(ms);
      drop.Add(bench::TimeMs([&] { admin.Exec("DROP DATABASE " + db); }));
    }
  }
  pg::Result size = admin.Exec("SELECT pg_size_pretty(pg_database_size($1))", {names.back()});

  std::printf("\ntestpool template bench — demo schema (%zu migrations + seed), template size %s, PostgreSQL %d\n\n",
              spec.migrations.size(), std::string(size.Get(0, 0)).c_str(), admin.ServerVersion() / 10000);
  bench::PrintHeader();
  bench::PrintRow("template build (migrations+seed+freeze)", build);
  bench::PrintRow("template request, same hash (no rebuild)", reuse);
  bench::PrintRow("raw CREATE DATABASE … STRATEGY FILE_COPY", file_copy);
  bench::PrintRow("raw CREATE DATABASE … STRATEGY WAL_LOG", wal_log);
  bench::PrintRow("raw DROP DATABASE (clone)", drop);
  std::printf("\nratios (p50): build / FILE_COPY clone = %.1fx;  WAL_LOG / FILE_COPY = %.2fx;  "
              "same-hash request / FILE_COPY clone = %.3fx\n",
              build.Percentile(0.5) / file_copy.Percentile(0.5), wal_log.Percentile(0.5) / file_copy.Percentile(0.5),
              reuse.Percentile(0.5) / file_copy.Percentile(0.5));

  for (const std::string& db : names) builder.DropDatabase(db);
  return 0;
}
