// The `testpool` binary end to end: daemons (`serve`) and CLI commands as real processes.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;
using testing::CliResult;
using testing::Daemon;
using testing::RunCli;

std::string AdminDsn() { return testing::Admin("postgres").ToKeywordString(); }

// Writes a small migrations directory; `extra` goes at the end of the second file.
std::filesystem::path WriteMigrations(const testing::TempDir& dir, const std::string& extra = "") {
  auto m = dir.path() / "migrations";
  std::filesystem::create_directories(m);
  std::ofstream(m / "0001_items.sql") << "CREATE TABLE items (id int PRIMARY KEY);\n";
  std::ofstream(m / "0002_fill.sql") << "INSERT INTO items VALUES (1), (2);\n" << extra;
  return m;
}

std::string Fresh(const std::string& stem) { return stem + "_" + util::RandomToken(6); }

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = new Daemon({"--backend", "external", "--dsn", AdminDsn()}); }
  static void TearDownTestSuite() {
    EXPECT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
    delete daemon_;
  }
  std::map<std::string, std::string> Env() { return {{"TESTPOOL_URL", daemon_->url()}}; }
  static Daemon* daemon_;
};
Daemon* CliTest::daemon_;

TEST_F(CliTest, TemplateCreateShowsProgressHashAndTiming) {
  testing::TempDir dir;
  std::string name = Fresh("cli");
  CliResult r = RunCli({"template", "create", name, "--migrations", WriteMigrations(dir).string()}, Env());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("[1/2] 0001_items.sql"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[2/2] 0002_fill.sql"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("hash "), std::string::npos);
  EXPECT_NE(r.out.find("built in"), std::string::npos) << r.out;

  CliResult again = RunCli({"template", "create", name, "--migrations", WriteMigrations(dir).string()}, Env());
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("no rebuild"), std::string::npos) << again.out;

  CliResult list = RunCli({"template", "list"}, Env());
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_NE(list.out.find(name), std::string::npos);
  EXPECT_EQ(RunCli({"template", "drop", name}, Env()).exit_code, 0);
}

TEST_F(CliTest, TemplateCreateFromTheDemoDefinition) {
  CliResult r = RunCli({"template", "create", "--file", (testing::SourceDir() / "templates" / "app.json").string(),
                        Fresh("app"), "--json"},
                       Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["state"], "ready");
  EXPECT_EQ(out["files"], 6);  // five migrations and one seed file
}

TEST_F(CliTest, FailingMigrationExitsNonZeroNamingFileAndLine) {
  testing::TempDir dir;
  CliResult r = RunCli({"template", "create", Fresh("broken"), "--migrations",
                        WriteMigrations(dir, "\nINSERT INTO nowhere VALUES (1);\n").string()},
                       Env());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("migration_failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("0002_fill.sql failed at line 3"), std::string::npos) << r.err;
}

TEST_F(CliTest, BadNameExitsNonZero) {
  testing::TempDir dir;
  CliResult r = RunCli({"template", "create", "Not-Valid", "--migrations", WriteMigrations(dir).string()}, Env());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("invalid_name"), std::string::npos) << r.err;
}

TEST_F(CliTest, MissingMigrationsDirectoryExitsNonZero) {
  CliResult r = RunCli({"template", "create", "x", "--migrations", "/nonexistent/dir"}, Env());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent/dir"), std::string::npos) << r.err;
}

TEST_F(CliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunCli({"template", "create"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"frobnicate"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"template", "create", "x", "--no-such-flag"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"serve", "--backend", "moon"}).exit_code, 2);
  EXPECT_EQ(RunCli({"serve", "--listen", "nowhere"}).exit_code, 2);
  EXPECT_EQ(RunCli({"serve", "--backend", "external"}).exit_code, 2);
}

TEST_F(CliTest, UnreachableDaemonExitsThree) {
  CliResult r = RunCli({"template", "list"}, {{"TESTPOOL_URL", "http://127.0.0.1:" + std::to_string(testing::FreePort())}});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.err.find("testpool serve"), std::string::npos) << r.err;
}

TEST_F(CliTest, ExternalBackendWithUnreachableServerFailsClearly) {
  CliResult r = RunCli({"serve", "--backend", "external", "--dsn",
                        "host=127.0.0.1 port=" + std::to_string(testing::FreePort()) + " user=x dbname=y",
                        "--listen", "127.0.0.1:" + std::to_string(testing::FreePort())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("cannot connect"), std::string::npos) << r.err;
}

// Two daemons on one server, asked for the same hash at the same moment: one build.
TEST_F(CliTest, TwoDaemonsOnOneServerBuildAHashOnce) {
  Daemon second({"--backend", "external", "--dsn", AdminDsn()});
  ASSERT_TRUE(second.ready());
  std::string name = Fresh("twod");
  json body = {{"migrations",
                {{{"name", "0001_slow.sql"}, {"sql", "CREATE TABLE t (id int);\nSELECT pg_sleep(0.5);\n"}}}}};
  int statuses[2] = {0, 0};
  json answers[2];
  std::thread a([&] {
    httplib::Client c("127.0.0.1", daemon_->port());
    c.set_read_timeout(std::chrono::seconds(120));
    auto r = c.Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
    statuses[0] = r ? r->status : -1;
    if (r) answers[0] = json::parse(r->body);
  });
  std::thread b([&] {
    httplib::Client c("127.0.0.1", second.port());
    c.set_read_timeout(std::chrono::seconds(120));
    auto r = c.Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
    statuses[1] = r ? r->status : -1;
    if (r) answers[1] = json::parse(r->body);
  });
  a.join();
  b.join();
  EXPECT_EQ(std::min(statuses[0], statuses[1]), 200) << answers[0] << answers[1];
  EXPECT_EQ(std::max(statuses[0], statuses[1]), 201) << answers[0] << answers[1];
  EXPECT_EQ(answers[0]["hash"], answers[1]["hash"]);
  pg::Connection c = pg::Connection::Open(testing::Admin("testpool"));
  EXPECT_EQ(c.Exec("SELECT builds FROM template_builds WHERE name = $1", {name}).Get(0, 0), "1");
  EXPECT_EQ(second.Terminate(), 0) << second.Log();
}

// `testpool serve` on the embedded local backend: starts its own postgres, serves, and on SIGTERM
// stops it and exits 0.
TEST(ServeLocal, StartsItsOwnPostgresAndStopsItOnSigterm) {
  testing::TempDir state;
  std::filesystem::permissions(state.path(), std::filesystem::perms(0755));
  int postmaster = 0;
  {
    Daemon d({"--state-dir", state.path().string()});
    ASSERT_TRUE(d.ready()) << d.Log();
    testing::TempDir dir;
    CliResult r = RunCli({"template", "create", "local", "--migrations", WriteMigrations(dir).string()},
                         {{"TESTPOOL_URL", d.url()}});
    EXPECT_EQ(r.exit_code, 0) << r.err << d.Log();
    std::ifstream pidfile(state.path() / "pg" / "data" / "postmaster.pid");
    pidfile >> postmaster;
    ASSERT_GT(postmaster, 0);
    EXPECT_EQ(::kill(postmaster, 0), 0);
    EXPECT_EQ(d.Terminate(), 0) << d.Log();
  }
  EXPECT_NE(::kill(postmaster, 0), 0) << "postgres outlived its daemon";
}

}  // namespace
}  // namespace testpool
