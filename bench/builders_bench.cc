// Builder throughput: 100,000 demo-shop customers (templates/builders/customer.json: namespaced
// e-mails, names, a country, its postal code and E.164 phone, all checked by the schema's own
// CHECKs) through the builder's COPY path, beside the raw primitive measured on the same server in
// the same run: the very same rows INSERTed one by one with a prepared statement in one
// transaction. Then the clean-up of the namespace (children first) beside a raw DELETE of the same
// rows by key.
//
// usage: builders_bench [SOURCE_DIR] [ROWS]   (TESTPOOL_BENCH_DSN to measure an external server)
#include <cstdio>
#include <cstdlib>

#include "bench/bench_util.h"
#include "orchestrator/builders/builders.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

using namespace testpool;

int main(int argc, char** argv) {
  std::filesystem::path source = argc > 1 ? argv[1] : TESTPOOL_SOURCE_DIR;
  const int64_t rows = argc > 2 ? std::atoll(argv[2]) : 100000;
  if (rows < 1) {
    std::fprintf(stderr, "usage: builders_bench [SOURCE_DIR] [ROWS]\n");
    return 2;
  }
  log::SetLevel(log::Level::kWarn);
  try {
    bench::BenchServer server;
    auto store = core::ControlStore::Open(server.backend().AdminConnInfo());
    core::TemplateBuilder builder(*store, util::RealClock());

    // The demo shop, as a template, and a database cloned from it to build into.
    core::TemplateSpec spec;
    spec.name = "bench_" + util::RandomToken(6);
    spec.migrations = core::LoadMigrationsDir(source / "migrations");
    spec.seed = {core::LoadSqlFile(source / "templates" / "seed" / "app_seed.sql")};
    core::ValidateSpec(&spec);
    core::BuildOutcome tpl = builder.Ensure(spec, core::TemplateHash(spec, builder.ServerMajor()), nullptr);
    pg::ConnInfo admin_info = server.backend().AdminConnInfo();
    admin_info.Set("dbname", "postgres");
    pg::Connection admin = pg::Connection::Open(admin_info);
    const std::string db = "tp_bench_build_" + util::RandomToken(6);
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(db) + " TEMPLATE " + admin.QuoteIdent(tpl.database));
    pg::ConnInfo target = server.backend().AdminConnInfo();
    target.Set("dbname", db);

    builders::RecipeBook book = builders::RecipeBook::LoadDir(source / "templates" / "builders");
    builders::Builders builders(book);
    const builders::Recipe& customer = book.Get("customer");

    // 1. The builder: generate, COPY into staging, INSERT … SELECT … RETURNING, record, commit.
    builders::BuildRequest req;
    req.recipe = "customer";
    req.count = rows;
    req.ns = "bench";
    req.seed = 1;
    builders::BuildResult built;
    const double build_ms = bench::TimeMs([&] { built = builders.Build(target, req); });

    // 2. The raw primitive: the same generator's rows, one prepared INSERT each, one transaction.
    pg::Connection c = pg::Connection::Open(target);
    std::string cols, placeholders;
    const auto& fields = customer.fields.fields();
    for (size_t i = 0; i < fields.size(); ++i) {
      cols += (i ? ", " : "") + c.QuoteIdent(fields[i].name());
      placeholders += (i ? ", $" : "$") + std::to_string(i + 1);
    }
    const std::string insert = "INSERT INTO customers (" + cols + ") VALUES (" + placeholders + ")";
    double generate_ms = 0;
    const double insert_ms = bench::TimeMs([&] {
      pg::Transaction tx(c);
      for (int64_t i = 0; i < rows; ++i) {
        builders::RowValues row;
        generate_ms += bench::TimeMs([&] { row = customer.fields.Generate(2, "raw", static_cast<uint64_t>(i)); });
        pg::Params params;
        for (const auto& v : row) params.push_back(v.value);
        c.ExecPrepared("bench_insert", insert, params);
      }
      tx.Commit();
    });

    // 3. Clean-up: the namespace's rows (children first), beside a raw DELETE of the raw rows.
    int64_t dropped = 0;
    const double drop_ms = bench::TimeMs([&] { dropped = builders.DropNamespace(target, "bench"); });
    const double delete_ms = bench::TimeMs([&] { c.Exec("DELETE FROM customers WHERE email LIKE '%.raw.%'"); });

    const double build_rate = static_cast<double>(rows) / (build_ms / 1000);
    const double insert_rate = static_cast<double>(rows) / ((insert_ms - generate_ms) / 1000);
    std::printf("\ntestpool builders bench — %lld demo-shop customers (recipe 'customer', every CHECK of the "
                "schema applies), PostgreSQL %d\n\n",
                static_cast<long long>(rows), c.ServerVersion() / 10000);
    bench::PrintFigureHeader();
    bench::PrintFigure("builder, COPY path (generation incl.)", bench::Fmt("%.0f rows/s", build_rate),
                       "row-by-row INSERT " + bench::Fmt("%.0f/s", insert_rate), bench::RatioText(build_rate, insert_rate),
                       "(no target)", true);
    bench::PrintFigure("builder wall time", bench::Fmt("%.0f ms", build_ms),
                       "INSERTs " + bench::Fmt("%.0f ms", insert_ms - generate_ms) + " (+gen " +
                           bench::Fmt("%.0f ms)", generate_ms),
                       "-", "(no target)", true);
    bench::PrintFigure("namespace clean-up (" + std::to_string(dropped) + " rows)", bench::Fmt("%.0f ms", drop_ms),
                       "raw DELETE " + bench::Fmt("%.0f ms", delete_ms), bench::RatioText(drop_ms, delete_ms),
                       "(no target)", true);
    std::printf("\nthe builder's rate excludes nothing (it generates its rows too); the raw rate excludes "
                "generation (%.0f ms), so the ratio favours the raw side.\n",
                generate_ms);

    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(db) + " WITH (FORCE)");
    builder.DropDatabase(tpl.database);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "builders_bench: FAILED: %s\n", e.what());
    return 1;
  }
  return 0;
}
