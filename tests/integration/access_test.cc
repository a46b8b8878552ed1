// Access end to end with the real `testpool` binary: serve's token flags, the CLI's token, SIGHUP
// rotation, and the daemon's log after a representative flow holding none of the passwords it
// handed out.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

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
std::string Fresh(const std::string& stem) { return stem + "_" + util::RandomToken(6); }

std::filesystem::path WriteTokenFile(const std::filesystem::path& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
  return path;
}

// Polls `done` every 50 ms until it holds or `bound` passes; returns whether it held.
template <typename F>
bool Eventually(F done, std::chrono::seconds bound = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// `testpool serve args…`, expected to refuse and exit: one that starts after all is killed after
// a minute (exit code -1) instead of hanging the test.
CliResult Serve(std::vector<std::string> args) {
  args.insert(args.begin(), {testing::TestpoolBinary().string(), "serve"});
  return testing::RunCommand(args, {}, "", std::chrono::seconds(60));
}

// Occurrences of `needle` in `text`.
int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); !needle.empty() && at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST(ServeAccess, ANonLoopbackListenWithoutATokenFileRefusesToStart) {
  for (const std::string host : {"0.0.0.0", "::", "192.0.2.10"}) {
    CliResult r = Serve({"--backend", "external", "--dsn", AdminDsn(), "--listen",
                         host + ":" + std::to_string(testing::FreePort())});
    EXPECT_EQ(r.exit_code, 2) << host << ": " << r.err;
    EXPECT_NE(r.err.find("not a loopback address"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("--token-file"), std::string::npos) << r.err;
  }
}

TEST(ServeAccess, ATokenFileOthersMayReadRefusesToStart) {
  testing::TempDir dir;
  const std::string token = util::RandomHex(32);
  auto file = WriteTokenFile(dir.path() / "tokens", token + "\n", 0644);
  CliResult r = Serve({"--backend", "external", "--dsn", AdminDsn(), "--listen",
                       "127.0.0.1:" + std::to_string(testing::FreePort()), "--token-file", file.string()});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find("chmod 600 " + file.string()), std::string::npos) << r.err;
  EXPECT_EQ(Count(r.out + r.err, token), 0) << "the token is shown";
}

// libpq quotes the piece of a connection string it cannot parse, which may be the password.
TEST(ServeAccess, AMalformedDsnIsRefusedWithoutShowingItsPassword) {
  const std::string secret = "pa%zz" + util::RandomHex(6);
  const std::vector<std::string> dsns = {"postgresql://admin:" + secret + "@127.0.0.1:1/db",
                                        "host=127.0.0.1 password=" + secret + " " + secret + "x"};
  for (const std::string& dsn : dsns) {
    CliResult r = Serve({"--backend", "external", "--dsn", dsn, "--listen",
                         "127.0.0.1:" + std::to_string(testing::FreePort())});
    EXPECT_NE(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("invalid connection string"), std::string::npos) << r.err;
    EXPECT_EQ(Count(r.out + r.err, secret), 0) << "its log and message show the password: " << r.err;
  }
}

// One daemon with a worker and an admin token file, on the shared test server.
class AccessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir("testpool-access");
    worker_ = "w" + util::RandomHex(24);
    admin_ = "a" + util::RandomHex(24);
    WriteTokenFile(dir_->path() / "worker", "# CI workers\n" + worker_ + "\n");
    WriteTokenFile(dir_->path() / "admin", admin_ + "\n");
    daemon_ = new Daemon({"--backend", "external", "--dsn", AdminDsn(), "--log-level", "debug", "--token-file",
                          (dir_->path() / "worker").string(), "--admin-token-file", (dir_->path() / "admin").string(),
                          "--recipes", (testing::SourceDir() / "templates" / "builders").string()});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
    delete daemon_;
    delete dir_;
  }

  static std::map<std::string, std::string> As(const std::string& token) {
    std::map<std::string, std::string> env = {{"TESTPOOL_URL", daemon_->url()}};
    if (!token.empty()) env["TESTPOOL_TOKEN"] = token;
    return env;
  }
  static httplib::Client Http(const std::string& token) {
    httplib::Client c("127.0.0.1", daemon_->port());
    c.set_read_timeout(std::chrono::seconds(120));
    if (!token.empty()) c.set_bearer_token_auth(token);
    return c;
  }
  // A small template with a warm slot, defined with the admin token.
  static std::string MakeTemplate(const std::string& stem, const std::string& recycle = "clone") {
    const std::string name = Fresh(stem);
    json body = {{"migrations", {{{"name", "0001_t.sql"}, {"sql", "-- " + name + "\nCREATE TABLE t (id int);\n"}}}},
                 {"pool", {{"min_ready", 1}, {"max", 2}}}, {"recycle", recycle}};
    auto r = Http(admin_).Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    return name;
  }

  static testing::TempDir* dir_;
  static Daemon* daemon_;
  static std::string worker_, admin_;
};
testing::TempDir* AccessTest::dir_;
Daemon* AccessTest::daemon_;
std::string AccessTest::worker_, AccessTest::admin_;

TEST_F(AccessTest, TheCliWithoutAValidTokenIsRefusedClearly) {
  CliResult none = RunCli({"status"}, As(""));
  EXPECT_EQ(none.exit_code, 1) << none.err;
  EXPECT_NE(none.err.find("unauthorized"), std::string::npos) << none.err;
  EXPECT_NE(none.err.find("set TESTPOOL_TOKEN"), std::string::npos) << none.err;
  CliResult wrong = RunCli({"status"}, As(util::RandomHex(24)));
  EXPECT_EQ(wrong.exit_code, 1) << wrong.err;
  EXPECT_NE(wrong.err.find("not one of the daemon's"), std::string::npos) << wrong.err;
  EXPECT_EQ(RunCli({"status"}, As(worker_)).exit_code, 0);
  auto file = WriteTokenFile(dir_->path() / "client-token", worker_ + "\n");
  CliResult from_file = RunCli({"status"}, {{"TESTPOOL_URL", daemon_->url()}, {"TESTPOOL_TOKEN_FILE", file.string()}});
  EXPECT_EQ(from_file.exit_code, 0) << from_file.err;
}

TEST_F(AccessTest, AWorkerTokenLeasesRunsAndReleasesButCannotDefineTemplates) {
  testing::TempDir migrations;
  std::ofstream(migrations.path() / "0001_t.sql") << "CREATE TABLE t (id int);\n";
  const std::string name = Fresh("acc");
  CliResult denied = RunCli({"template", "create", name, "--migrations", migrations.path().string()}, As(worker_));
  EXPECT_EQ(denied.exit_code, 1) << denied.err;
  EXPECT_NE(denied.err.find("forbidden"), std::string::npos) << denied.err;
  EXPECT_NE(denied.err.find("--admin-token-file"), std::string::npos) << denied.err;
  CliResult created = RunCli({"template", "create", name, "--migrations", migrations.path().string(), "--min-ready",
                              "1", "--max", "2"},
                             As(admin_));
  ASSERT_EQ(created.exit_code, 0) << created.err;

  CliResult lease = RunCli({"lease", name, "--wait", "60", "--json"}, As(worker_));
  ASSERT_EQ(lease.exit_code, 0) << lease.err;
  const std::string id = json::parse(lease.out)["id"];
  EXPECT_EQ(RunCli({"renew", id}, As(worker_)).exit_code, 0);
  EXPECT_EQ(RunCli({"reset", id}, As(worker_)).exit_code, 0);
  EXPECT_EQ(RunCli({"release", id}, As(worker_)).exit_code, 0);
  // `testpool run` leases, renews and releases with the token it was given.
  auto id_file = dir_->path() / ("run-" + name);
  CliResult run = RunCli({"run", "--template", name, "--wait", "60", "--ttl", "3", "--", "sh", "-c",
                          "echo \"$TESTPOOL_LEASE_ID\" > '" + id_file.string() + "'; sleep 2; "
                          "psql -X -c 'select 1' >/dev/null"},
                         As(worker_));
  EXPECT_EQ(run.exit_code, 0) << run.err;
  std::string run_id;
  std::ifstream(id_file) >> run_id;
  auto got = Http(worker_).Get(("/v1/leases/" + run_id).c_str());
  ASSERT_TRUE(got && got->status == 200) << (got ? got->body : "no answer");
  EXPECT_EQ(json::parse(got->body)["state"], "released");
  EXPECT_EQ(RunCli({"run", "--template", name, "--", "true"}, As("")).exit_code, 1);
  EXPECT_EQ(RunCli({"template", "drop", name}, As(worker_)).exit_code, 1);
  EXPECT_EQ(RunCli({"template", "drop", name}, As(admin_)).exit_code, 0);
}

TEST_F(AccessTest, SighupRotatesTheTokensAndABadFileKeepsTheOldOnes) {
  const std::string next = "n" + util::RandomHex(24);
  WriteTokenFile(dir_->path() / "worker", worker_ + "\n" + next + "\n");
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] {
    auto r = Http(next).Get("/v1/status");
    return r && r->status == 200;
  })) << "the new token was never accepted; " << daemon_->Log();
  WriteTokenFile(dir_->path() / "worker", next + "\n");
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] {
    auto r = Http(worker_).Get("/v1/status");
    return r && r->status == 401;
  })) << "the removed token is still accepted";
  // A file others may read is refused on reload too; the tokens in force stay.
  WriteTokenFile(dir_->path() / "worker", worker_ + "\n", 0644);
  const int failures = Count(daemon_->Log(), "daemon.tokens_reload_failed");
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] { return Count(daemon_->Log(), "daemon.tokens_reload_failed") > failures; }));
  EXPECT_EQ(Http(next).Get("/v1/status")->status, 200);
  EXPECT_EQ(Http(worker_).Get("/v1/status")->status, 401);
  WriteTokenFile(dir_->path() / "worker", worker_ + "\n");
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  EXPECT_TRUE(Eventually([&] { return Http(worker_).Get("/v1/status")->status == 200; }));
}

// Leases in both recycle modes, resets, a build, a record pool and a claim on a leased database,
// releases, and a migration that fails while setting a password: the daemon's log (at debug
// level) holds none of the passwords, tokens or DSNs.
TEST_F(AccessTest, TheLogHoldsNoPasswordTokenOrDsn) {
  const std::string clone = Fresh("logc");
  CliResult created = RunCli({"template", "create", clone, "--migrations", (testing::SourceDir() / "migrations").string(),
                              "--seed", (testing::SourceDir() / "templates" / "seed" / "app_seed.sql").string(),
                              "--min-ready", "1", "--max", "2"},
                             As(admin_));
  ASSERT_EQ(created.exit_code, 0) << created.err;
  const std::string rollback = MakeTemplate("logr", "rollback");
  std::vector<std::string> secrets = {worker_, admin_};
  std::vector<std::string> dsns;
  std::vector<std::string> ids;
  for (const std::string& name : {clone, rollback}) {
    auto r = Http(worker_).Post(("/v1/templates/" + name + "/leases").c_str(), R"({"wait_s":60})", "application/json");
    ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    json lease = json::parse(r->body);
    secrets.push_back(lease["password"]);
    dsns.push_back(lease["dsn"]);
    ids.push_back(lease["id"]);
    EXPECT_EQ(RunCli({"reset", ids.back()}, As(worker_)).exit_code, 0);
  }
  CliResult built = RunCli({"build", "customer", "--lease", ids[0], "--count", "3"}, As(worker_));
  EXPECT_EQ(built.exit_code, 0) << built.err;
  const std::string pool = Fresh("logp");
  CliResult defined = RunCli({"record-pool", "define", pool, "--lease", ids[0], "--table", "customers", "--key", "id"},
                             As(admin_));
  EXPECT_EQ(defined.exit_code, 0) << defined.err;
  CliResult claim = RunCli({"claim", pool, "--json"}, As(worker_));
  EXPECT_EQ(claim.exit_code, 0) << claim.err;
  if (claim.exit_code == 0) {
    EXPECT_EQ(RunCli({"unclaim", json::parse(claim.out)["id"]}, As(worker_)).exit_code, 0);
  }
  // A template's migrations are code run as a superuser: this one sets a role's password, and fails.
  const std::string literal = "mig-secret-" + util::RandomHex(8);
  json bad = {{"migrations", {{{"name", "0001_role.sql"},
                               {"sql", "ALTER ROLE tp_no_such_role_" + util::RandomToken(4) + " PASSWORD '" + literal +
                                           "';\n"}}}}};
  auto failed = Http(admin_).Put(("/v1/templates/" + Fresh("logf")).c_str(), bad.dump(), "application/json");
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, 422) << failed->body;
  secrets.push_back(literal);
  EXPECT_EQ(RunCli({"record-pool", "drop", pool}, As(admin_)).exit_code, 0);
  for (const std::string& id : ids) EXPECT_EQ(RunCli({"release", id}, As(worker_)).exit_code, 0);
  for (const std::string& name : {clone, rollback}) RunCli({"template", "drop", name}, As(admin_));

  const std::string log = daemon_->Log();
  EXPECT_GT(Count(log, "lease.granted"), 0) << "the flow did not run";
  for (const std::string& secret : secrets) EXPECT_EQ(Count(log, secret), 0) << secret << " is in the log:\n" << log;
  for (const std::string& dsn : dsns) EXPECT_EQ(Count(log, dsn), 0) << dsn << " is in the log";
  EXPECT_EQ(Count(log, "postgresql://"), 0) << log;
}

}  // namespace
}  // namespace testpool
