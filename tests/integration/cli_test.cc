// The `testpool` binary end to end: daemons (`serve`) and CLI commands as real processes.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <boost/process.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

namespace bp = boost::process;
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
  const std::string name = Fresh("app");
  CliResult r = RunCli({"template", "create", "--file", (testing::SourceDir() / "templates" / "app.json").string(),
                        name, "--json"},
                       Env());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  json out = json::parse(r.out);
  EXPECT_EQ(out["state"], "ready");
  EXPECT_EQ(out["files"], 7);  // six migrations and one seed file

  // The demo schema enforces its domain (Luhn, IBAN, postal codes, E.164, stock): the SQL checks
  // run with psql, as a lease's own role, through `testpool run`.
  CliResult checks = RunCli({"run", "--template", name, "--wait", "120", "--", "psql", "-X", "-q", "-v",
                             "ON_ERROR_STOP=1", "-f", (testing::SourceDir() / "tests" / "sql" / "domain_checks.sql").string()},
                            Env());
  EXPECT_EQ(checks.exit_code, 0) << checks.out << checks.err;
  EXPECT_NE((checks.out + checks.err).find("domain_checks: all passed"), std::string::npos) << checks.out << checks.err;
  RunCli({"template", "drop", name}, Env());
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
  // Only one daemon per server manages pools; the other says so instead of handing out leases.
  httplib::Client passive("127.0.0.1", second.port());
  auto lease = passive.Post(("/v1/templates/" + name + "/leases").c_str(), "{\"wait_s\":0}", "application/json");
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->status, 503) << lease->body;
  EXPECT_NE(lease->body.find("another testpool daemon manages the pools"), std::string::npos) << lease->body;
  EXPECT_EQ(second.Terminate(), 0) << second.Log();
}

// ---- leases from the command line ------------------------------------------------------------

// The text of `path` once it holds a whole line (bounded wait); "" if it never does.
std::string WaitForLine(const std::filesystem::path& path, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    std::string s = text.str();
    if (!s.empty() && s.back() == '\n') return s.substr(0, s.find('\n'));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "";
}

// Waits (bounded) for a child to exit; SIGKILLs it on timeout. Returns its exit code, -1 on timeout.
int WaitExit(bp::child& child, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (child.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (child.running()) {
    ::kill(child.id(), SIGKILL);
    child.wait();
    return -1;
  }
  child.wait();
  return child.exit_code();
}

class CliLeaseTest : public CliTest {
 protected:
  // A template with a warm pool (min_ready 1), its own hash (the name is in a migration).
  std::string MakeTemplate(const std::string& stem, int max = 2) {
    std::string name = Fresh(stem);
    CliResult r = RunCli({"template", "create", name, "--migrations", WriteMigrations(dir_, "-- " + name + "\n").string(),
                          "--min-ready", "1", "--max", std::to_string(max)},
                         Env());
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return name;
  }
  void TearDown() override {
    for (const std::string& name : templates_) RunCli({"template", "drop", name}, Env());
  }
  std::string Template(const std::string& stem, int max = 2) {
    templates_.push_back(MakeTemplate(stem, max));
    return templates_.back();
  }

  json GetLease(const std::string& id) {
    httplib::Client c("127.0.0.1", daemon_->port());
    auto r = c.Get(("/v1/leases/" + id).c_str());
    return r ? json::parse(r->body, nullptr, false) : json();
  }

  // Requests queued for a slot of template `name`, from the daemon's status (-1 when unreadable).
  int Waiting(const std::string& name) {
    httplib::Client c("127.0.0.1", daemon_->port());
    auto r = c.Get("/v1/status");
    json status = r ? json::parse(r->body, nullptr, false) : json();
    if (!status.is_object() || !status["pools"].is_array()) return -1;
    int waiting = 0;
    for (const json& p : status["pools"]) {
      if (p.value("template", "") == name) waiting += p.value("waiting", 0);
    }
    return waiting;
  }
  // Polls the status until `name`'s pool has `count` requests waiting (bounded); false if never.
  bool WaitForWaiting(const std::string& name, int count, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Waiting(name) == count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // `testpool args…` in the background, its stdout and stderr in files under dir_.
  bp::child Start(const std::vector<std::string>& args) {
    bp::environment env = boost::this_process::environment();
    env.set("TESTPOOL_URL", daemon_->url());  // not env[…]: Boost 1.74's find() reads past short entries
    return bp::child(testing::TestpoolBinary().string(), bp::args(args), bp::std_out > (dir_.path() / "bg.out").string(),
                     bp::std_err > (dir_.path() / "bg.err").string(), bp::std_in < bp::null, env);
  }
  // `testpool run` of a shell that records the lease id and its own pid, then sleeps; waits
  // (bounded) until both are written.
  bp::child StartLongRun(const std::string& name, std::string* id, std::string* pid) {
    auto id_file = dir_.path() / "lease_id", pid_file = dir_.path() / "pid";
    bp::child run = Start({"run", "--template", name, "--wait", "60", "--", "sh", "-c",
                           "echo \"$TESTPOOL_LEASE_ID\" > '" + id_file.string() + "'; echo $$ > '" +
                               pid_file.string() + "'; exec sleep 120"});
    *pid = WaitForLine(pid_file);
    *id = WaitForLine(id_file);
    return run;
  }

  std::string BackgroundErr() {
    std::ifstream in(dir_.path() / "bg.err");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  testing::TempDir dir_;
  std::vector<std::string> templates_;
};

TEST_F(CliLeaseTest, LeasePrintsADsnThatPsqlCanUseAndReleaseExitsZero) {
  std::string name = Template("clilease");
  // The DSN alone does not name the lease: this one is left to expire (ttl 30 s).
  CliResult lease = RunCli({"lease", name, "--wait", "60", "--ttl", "30", "--holder", "cli-test"}, Env());
  ASSERT_EQ(lease.exit_code, 0) << lease.err;
  ASSERT_EQ(lease.out.rfind("postgresql://", 0), 0u) << "stdout is the DSN alone: " << lease.out;
  ASSERT_EQ(lease.out.find('\n'), lease.out.size() - 1) << "one line: " << lease.out;
  std::string dsn = lease.out.substr(0, lease.out.size() - 1);

  bp::ipstream out;
  bp::child p(bp::search_path("psql"), dsn, "-X", "-A", "-t", "-c", "select 1; select count(*) from items", bp::std_out > out,
              bp::std_err > bp::null, bp::std_in < bp::null);
  std::string one, rows;
  std::getline(out, one);
  std::getline(out, rows);
  p.wait();
  EXPECT_EQ(p.exit_code(), 0);
  EXPECT_EQ(one, "1");
  EXPECT_EQ(rows, "2") << "the leased database holds the template's rows";

  CliResult as_json = RunCli({"lease", name, "--wait", "60", "--json"}, Env());
  ASSERT_EQ(as_json.exit_code, 0) << as_json.err;
  json l = json::parse(as_json.out);
  std::string id = l["id"];
  EXPECT_EQ(l["template"], name);
  CliResult renew = RunCli({"renew", id, "--ttl", "300"}, Env());
  EXPECT_EQ(renew.exit_code, 0) << renew.err;
  EXPECT_NE(renew.out.find("expires at"), std::string::npos) << renew.out;
  CliResult release = RunCli({"release", id}, Env());
  EXPECT_EQ(release.exit_code, 0) << release.err;
  EXPECT_EQ(RunCli({"release", id}, Env()).exit_code, 0) << "releasing twice is fine";
  CliResult late = RunCli({"renew", id}, Env());
  EXPECT_EQ(late.exit_code, 1);
  EXPECT_NE(late.err.find("lease_expired"), std::string::npos) << late.err;
  EXPECT_EQ(GetLease(id)["state"], "released");
}

TEST_F(CliLeaseTest, StatusShowsThePoolAndItsLeases) {
  std::string name = Template("clistatus");
  CliResult lease = RunCli({"lease", name, "--wait", "60", "--json"}, Env());
  ASSERT_EQ(lease.exit_code, 0) << lease.err;
  json l = json::parse(lease.out);
  CliResult status = RunCli({"status"}, Env());
  ASSERT_EQ(status.exit_code, 0) << status.err;
  EXPECT_NE(status.out.find("TEMPLATE"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("LEASED"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("granted"), std::string::npos) << status.out;
  // The pool's row: its name, hash12, then ready/leased/… figures with at least one leased.
  std::istringstream lines(status.out);
  std::string row;
  bool found = false;
  while (std::getline(lines, row)) {
    if (row.rfind(name + " ", 0) != 0) continue;
    found = true;
    std::istringstream cols(row);
    std::string tname, hash;
    int ready = -1, leased = -1;
    cols >> tname >> hash >> ready >> leased;
    EXPECT_EQ(hash, l["hash"].get<std::string>().substr(0, 12)) << row;
    EXPECT_EQ(leased, 1) << row;
  }
  EXPECT_TRUE(found) << status.out;
  CliResult as_json = RunCli({"status", "--json"}, Env());
  ASSERT_EQ(as_json.exit_code, 0);
  EXPECT_TRUE(json::parse(as_json.out)["pools"].is_array());
  EXPECT_EQ(RunCli({"release", l["id"]}, Env()).exit_code, 0);
}

TEST_F(CliLeaseTest, RunExportsTheLeaseExitsWithTheCommandsStatusAndReleases) {
  std::string name = Template("clirun");
  auto id_file = dir_.path() / "lease_id";
  CliResult r = RunCli({"run", "--template", name, "--wait", "60", "--", "sh", "-c",
                        "echo \"$TESTPOOL_LEASE_ID\" > '" + id_file.string() + "' && "
                        "psql -X \"$DATABASE_URL\" -c 'select 1' >/dev/null && "
                        "psql -X -c 'select count(*) from items' >/dev/null && "  // the PG* variables alone
                        "test -n \"$PGPASSWORD\" && exit 3"},
                       Env());
  EXPECT_EQ(r.exit_code, 3) << r.err;
  std::string id = WaitForLine(id_file, std::chrono::seconds(1));
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(GetLease(id)["state"], "released");
}

TEST_F(CliLeaseTest, RunReleasesWhenTheCommandIsKilledFromOutside) {
  std::string name = Template("clikill");
  std::string id, pid;
  bp::child run = StartLongRun(name, &id, &pid);
  ASSERT_FALSE(pid.empty()) << BackgroundErr();
  EXPECT_EQ(GetLease(id)["state"], "active");
  ASSERT_EQ(::kill(std::stoi(pid), SIGKILL), 0);
  EXPECT_EQ(WaitExit(run), 128 + SIGKILL) << BackgroundErr();
  EXPECT_EQ(GetLease(id)["state"], "released");
}

TEST_F(CliLeaseTest, RunReleasesAndExitsNonZeroOnSigterm) {
  std::string name = Template("cliterm");
  std::string id, pid;
  bp::child run = StartLongRun(name, &id, &pid);
  ASSERT_FALSE(pid.empty()) << BackgroundErr();
  ASSERT_EQ(::kill(run.id(), SIGTERM), 0);
  int code = WaitExit(run);
  EXPECT_NE(code, 0) << BackgroundErr();
  EXPECT_EQ(code, 128 + SIGTERM) << "the command got the SIGTERM and died of it; " << BackgroundErr();
  EXPECT_NE(::kill(std::stoi(pid), 0), 0) << "the command outlived testpool run";
  EXPECT_EQ(GetLease(id)["state"], "released");
}

TEST_F(CliLeaseTest, RunInterruptedWhileWaitingForALeaseExitsPromptly) {
  std::string name = Template("cliwait", 1);
  CliResult held = RunCli({"lease", name, "--wait", "60", "--json"}, Env());
  ASSERT_EQ(held.exit_code, 0) << held.err;
  bp::child run = Start({"run", "--template", name, "--wait", "60", "--", "true"});
  // Its request is queued for the only slot: so it has sent it, after taking over SIGTERM.
  if (!WaitForWaiting(name, 1)) {
    ::kill(run.id(), SIGKILL);
    run.wait();
    FAIL() << "the run's lease request never showed as waiting; " << BackgroundErr();
  }
  auto signalled = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(run.id(), SIGTERM), 0);
  EXPECT_EQ(WaitExit(run), 128 + SIGTERM) << BackgroundErr();
  EXPECT_LT(std::chrono::steady_clock::now() - signalled, std::chrono::seconds(20)) << "it waited out --wait";
  EXPECT_TRUE(WaitForWaiting(name, 0)) << "the daemon still queues the interrupted run's request";
  EXPECT_EQ(RunCli({"release", json::parse(held.out)["id"]}, Env()).exit_code, 0);
}

TEST_F(CliLeaseTest, RunRenewsTheLeaseWhileTheCommandRuns) {
  std::string name = Template("clirenew");
  auto id_file = dir_.path() / "lease_id";
  // ttl 3 s: renewed every second; the command outlives the first ttl and still finds its lease.
  CliResult r = RunCli({"run", "--template", name, "--ttl", "3", "--wait", "60", "--", "sh", "-c",
                        "echo \"$TESTPOOL_LEASE_ID\" > '" + id_file.string() + "'; sleep 5; "
                        "psql -X \"$DATABASE_URL\" -c 'select 1' >/dev/null"},
                       Env());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(GetLease(WaitForLine(id_file, std::chrono::seconds(1)))["state"], "released");
}

// ---- lease commands without pools: usage, unreachable, bad ids ---------------------------------------

TEST_F(CliTest, LeaseCommandUsageErrorsExitTwo) {
  EXPECT_EQ(RunCli({"lease"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"lease", "x", "--ttl", "soon"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"renew"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"release"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"reset"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"status", "--bogus"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"run", "--", "true"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"run", "--template", "x"}, Env()).exit_code, 2);
  EXPECT_EQ(RunCli({"run", "--template", "x", "--ttl", "1m", "--", "true"}, Env()).exit_code, 2);
}

TEST_F(CliTest, RunWithACommandThatDoesNotExistExits127BeforeLeasing) {
  CliResult r = RunCli({"run", "--template", "x", "--", "no_such_command_tp"}, Env());
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.err.find("no_such_command_tp"), std::string::npos) << r.err;
  EXPECT_EQ(RunCli({"run", "--template", "x", "--", "/nonexistent/cmd"}, Env()).exit_code, 127);
}

TEST_F(CliTest, LeaseCommandsWithUnreachableDaemonExitThree) {
  std::map<std::string, std::string> nowhere = {{"TESTPOOL_URL", "http://127.0.0.1:" + std::to_string(testing::FreePort())}};
  EXPECT_EQ(RunCli({"lease", "x"}, nowhere).exit_code, 3);
  EXPECT_EQ(RunCli({"status"}, nowhere).exit_code, 3);
  EXPECT_EQ(RunCli({"release", "abc"}, nowhere).exit_code, 3);
  EXPECT_EQ(RunCli({"run", "--template", "x", "--", "true"}, nowhere).exit_code, 3);
}

TEST_F(CliTest, ReleaseOfAMalformedIdExitsOneWithNotFound) {
  CliResult r = RunCli({"release", "../templates/x"}, Env());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not_found"), std::string::npos) << r.err;
}

TEST_F(CliTest, LeaseOfAnUnknownTemplateExitsOne) {
  CliResult r = RunCli({"lease", "never_defined_tp", "--wait", "0"}, Env());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not_found"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST_F(CliTest, StatusWorksWithNoPools) {
  CliResult r = RunCli({"status"}, Env());
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("databases"), std::string::npos) << r.out;
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
