// The local backend against a real PostgreSQL: initdb, start, settings, authentication,
// supervision after a crash, restart on the same state directory, adoption of an orphaned
// postmaster, and the errors a user sees when something is set up wrong.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "orchestrator/backend/local_backend.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/error.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

namespace bp = boost::process;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Passed to the helper process that owns the postmaster to be adopted: its work directory.
constexpr std::string_view kHelperFlag = "--adopt-helper-dir=";

// Polls `condition` until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

backend::LocalBackendOptions OptionsFor(const fs::path& state_dir) {
  backend::LocalBackendOptions options;
  options.state_dir = state_dir;
  return options;
}

pg::ConnInfo AdminOf(const backend::LocalBackend& server) {
  pg::ConnInfo info = server.AdminConnInfo();
  info.Set("dbname", "postgres");
  return info;
}

std::string Show(const pg::ConnInfo& info, const std::string& setting) {
  pg::Connection conn = pg::Connection::Open(info);
  return std::string(conn.Exec("SHOW " + setting).Get(0, 0));
}

// The message of the Error that `start` throws; fails the test if it throws none or another code.
std::string BackendErrorOf(backend::LocalBackend& server) {
  try {
    server.Start();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBackend) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "Start() succeeded";
  return "";
}

TEST(LocalBackend, StartsAndAcceptsTheSuperuserWithItsPassword) {
  pg::Connection conn = pg::Connection::Open(testing::Admin());
  pg::Result r = conn.Exec("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user");
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.Get(0, 0), "postgres");
  EXPECT_EQ(r.Get(0, 1), "t");
}

TEST(LocalBackend, ClientConnInfoReachesTheServerOverTcp) {
  pg::ConnInfo tcp = testing::Server().ClientConnInfo();
  EXPECT_EQ(tcp.Get("host"), "127.0.0.1");
  tcp.Set("user", "postgres");
  tcp.Set("password", testing::Server().AdminConnInfo().Get("password"));
  tcp.Set("dbname", "postgres");
  pg::Connection conn = pg::Connection::Open(tcp);
  EXPECT_EQ(conn.Exec("SELECT inet_server_addr()::text").Get(0, 0), "127.0.0.1/32");
}

TEST(LocalBackend, AppliesTestFriendlySettings) {
  const pg::ConnInfo admin = testing::Admin();
  EXPECT_EQ(Show(admin, "fsync"), "off");
  EXPECT_EQ(Show(admin, "synchronous_commit"), "off");
  EXPECT_EQ(Show(admin, "full_page_writes"), "off");
  EXPECT_EQ(Show(admin, "max_connections"), "300");
  EXPECT_EQ(Show(admin, "listen_addresses"), "127.0.0.1");
}

TEST(LocalBackend, UserSettingsOverrideTheDefaults) {
  testing::TempDir dir;
  backend::LocalBackendOptions options = OptionsFor(dir.path() / "state");
  options.settings = {{"fsync", "on"}, {"max_connections", "50"}};
  backend::LocalBackend server(options);
  server.Start();
  EXPECT_EQ(Show(AdminOf(server), "fsync"), "on");
  EXPECT_EQ(Show(AdminOf(server), "max_connections"), "50");
  EXPECT_EQ(Show(AdminOf(server), "synchronous_commit"), "off");  // defaults not overridden stay
}

TEST(LocalBackend, RefusesConnectionsWithoutTheRightPassword) {
  pg::ConnInfo socket = testing::Admin();
  socket.Erase("password");
  socket.Set("passfile", "/nonexistent");  // no ~/.pgpass either
  pg::ConnInfo tcp = socket;
  tcp.Set("host", "127.0.0.1");
  pg::ConnInfo wrong = testing::Admin();
  wrong.Set("host", "127.0.0.1");
  wrong.Set("password", "not-the-password");
  // Over the socket, the superuser is the daemon's own door: peer authentication lets the daemon's
  // OS user (this test's) in with no password. Any other role there needs its password.
  {
    pg::Connection admin = pg::Connection::Open(socket);
    admin.Exec("DROP ROLE IF EXISTS tp_test_someone; CREATE ROLE tp_test_someone LOGIN PASSWORD 'its-password'");
  }
  pg::ConnInfo other = socket;
  other.Set("user", "tp_test_someone");
  other.Set("dbname", "postgres");
  pg::ConnInfo other_wrong = other;
  other_wrong.Set("password", "not-its-password");

  for (const pg::ConnInfo& info : {tcp, wrong, other, other_wrong}) {
    try {
      pg::Connection::Open(info);
      ADD_FAILURE() << "connected without the password: " << info.Redacted();
    } catch (const pg::PgError& e) {
      EXPECT_THAT(e.what(), HasSubstr("password")) << info.Redacted();
    }
  }
}

TEST(LocalBackend, RestartsAPostmasterKilledWithSigkillAndKeepsItsData) {
  testing::TempDir dir;
  backend::LocalBackend server(OptionsFor(dir.path() / "state"));
  server.Start();
  {
    pg::Connection conn = pg::Connection::Open(AdminOf(server));
    conn.Exec("SET synchronous_commit = on");  // the row must be in the WAL before the kill
    conn.Exec("CREATE TABLE survivor (v text)");
    conn.Exec("INSERT INTO survivor VALUES ('kept')");
  }
  const int killed = server.PostmasterPid();
  ASSERT_GT(killed, 0);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);

  ASSERT_TRUE(WaitUntil([&] { return server.Restarts() == 1; }, 120s));
  ASSERT_TRUE(server.WaitReady(60s));
  EXPECT_NE(server.PostmasterPid(), killed);
  EXPECT_GT(server.PostmasterPid(), 0);
  pg::Connection conn = pg::Connection::Open(AdminOf(server));
  EXPECT_EQ(conn.Exec("SELECT v FROM survivor").Get(0, 0), "kept");
}

TEST(LocalBackend, StopThenStartReusesThePortAndTheData) {
  testing::TempDir dir;
  backend::LocalBackend server(OptionsFor(dir.path() / "state"));
  server.Start();
  const pg::ConnInfo before = AdminOf(server);
  pg::Connection::Open(before).Exec("CREATE TABLE kept (v int)");
  const fs::path pg_version = dir.path() / "state" / "pg" / "data" / "PG_VERSION";
  const auto initialised_at = fs::last_write_time(pg_version);
  const int first_pid = server.PostmasterPid();

  server.Stop();
  EXPECT_EQ(server.PostmasterPid(), 0);
  EXPECT_NE(::kill(first_pid, 0), 0) << "the postmaster still runs after Stop()";
  server.Start();

  EXPECT_EQ(AdminOf(server).Get("port"), before.Get("port"));
  EXPECT_EQ(AdminOf(server).Get("password"), before.Get("password"));
  EXPECT_EQ(fs::last_write_time(pg_version), initialised_at) << "initdb ran again";
  pg::Connection conn = pg::Connection::Open(AdminOf(server));
  EXPECT_EQ(conn.Exec("SELECT count(*) FROM kept").Get(0, 0), "0");
}

// Run in a child process by the next test (never on its own): starts a backend, reports the
// postmaster's pid, and waits to be killed with SIGKILL, leaving its postmaster behind.
TEST(LocalBackendHelper, DISABLED_StartAndWaitToBeKilled) {
  // gtest leaves flags it does not know alone; ours is read back from the command line.
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  fs::path work_dir;
  for (std::string arg; std::getline(in, arg, '\0');) {
    if (arg.rfind(kHelperFlag, 0) == 0) work_dir = arg.substr(kHelperFlag.size());
  }
  if (work_dir.empty()) GTEST_SKIP() << "only run by AdoptsAPostmasterLeftRunningByAKilledOwner";
  const fs::path state_dir = work_dir / "state";
  const fs::path ready_file = work_dir / "ready";
  backend::LocalBackend server(OptionsFor(state_dir));
  server.Start();
  {
    std::ofstream out(ready_file.string() + ".tmp");
    out << server.PostmasterPid() << "\n";
  }
  fs::rename(ready_file.string() + ".tmp", ready_file);
  for (;;) ::pause();
}

TEST(LocalBackend, AdoptsAPostmasterLeftRunningByAKilledOwner) {
  testing::TempDir dir;
  const fs::path state_dir = dir.path() / "state";
  const fs::path ready_file = dir.path() / "ready";
  // The orphaned postmaster becomes our child, so that we can reap it at the end.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  bp::child owner(fs::read_symlink("/proc/self/exe").string(),
                  "--gtest_filter=LocalBackendHelper.DISABLED_StartAndWaitToBeKilled",
                  "--gtest_also_run_disabled_tests", std::string(kHelperFlag) + dir.path().string(),
                  bp::std_in < bp::null,
                  (bp::std_out & bp::std_err) > (dir.path() / "owner.log").string());
  const bool ready = WaitUntil([&] { return fs::exists(ready_file) || !owner.running(); }, 180s);
  int postmaster = 0;
  std::ifstream(ready_file) >> postmaster;
  struct KillIfLeft {  // should an assertion below fail, leave no postmaster behind
    const int& pid;
    ~KillIfLeft() {
      if (pid > 0 && ::kill(pid, SIGQUIT) == 0) ::waitpid(pid, nullptr, 0);
    }
  } kill_if_left{postmaster};
  ::kill(owner.id(), SIGKILL);
  owner.wait();
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  ASSERT_TRUE(ready && postmaster > 0) << "the owner did not start its server; see its output:\n"
                                       << std::ifstream(dir.path() / "owner.log").rdbuf();
  ASSERT_EQ(::kill(postmaster, 0), 0) << "the postmaster died with its owner";

  {
    backend::LocalBackend adopter(OptionsFor(state_dir));
    adopter.Start();
    EXPECT_EQ(adopter.PostmasterPid(), postmaster);
    EXPECT_EQ(adopter.Restarts(), 0);
    pg::Connection conn = pg::Connection::Open(AdminOf(adopter));
    EXPECT_EQ(conn.Exec("SELECT pg_backend_pid() > 0").Get(0, 0), "t");
  }  // the adopter stops the adopted postmaster
  EXPECT_EQ(::waitpid(postmaster, nullptr, 0), postmaster) << "the adopted postmaster was not our orphan";
  postmaster = 0;
}

TEST(LocalBackend, ReportsABinDirWithoutServerPrograms) {
  testing::TempDir dir;
  backend::LocalBackendOptions options = OptionsFor(dir.path() / "state");
  options.bin_dir = "/nonexistent/bin";
  backend::LocalBackend server(options);
  const std::string message = BackendErrorOf(server);
  EXPECT_THAT(message, HasSubstr("/nonexistent/bin"));
  EXPECT_THAT(message, HasSubstr("initdb and postgres"));
  EXPECT_EQ(server.PostmasterPid(), 0);
}

TEST(LocalBackend, ReportsAStateDirTheServerUserCannotReach) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root switches to another user";
  testing::TempDir dir;
  const fs::path locked = dir.path() / "locked";
  fs::create_directory(locked);
  fs::permissions(locked, fs::perms::owner_all);  // 0700, owned by root
  backend::LocalBackend server(OptionsFor(locked / "state"));
  EXPECT_THAT(BackendErrorOf(server),
              HasSubstr(locked.string() + " is not searchable by user postgres; pass --state-dir under"));
}

TEST(LocalBackend, ReportsAStateDirTooLongForTheUnixSocket) {
  testing::TempDir dir;
  backend::LocalBackend server(OptionsFor(dir.path() / std::string(90, 's')));
  const std::string message = BackendErrorOf(server);
  EXPECT_THAT(message, StartsWith("the unix socket path "));
  EXPECT_THAT(message, HasSubstr("choose a shorter --state-dir"));
  EXPECT_FALSE(fs::exists(dir.path() / std::string(90, 's') / "pg" / "data")) << "initdb ran anyway";
}

}  // namespace
}  // namespace testpool
