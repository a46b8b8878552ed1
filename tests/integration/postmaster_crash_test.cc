// What a postmaster killed with SIGKILL (and restarted by the local backend's supervisor) must not
// do to the daemon's view of the server — both found by the chaos driver (bench/chaos_bench.cc):
// - a connection pool must not hand out the idle connections the dead server's backends closed;
// - a lease's writes made before the crash must still count as writes after it (PostgreSQL
//   discards its statistics when it recovers from a crash, and the recycle's skip path reads them).
// Each test runs its own server: it kills it.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <functional>
#include <thread>

#include "orchestrator/backend/local_backend.h"
#include "orchestrator/core/slot_ops.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/pg/pool.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using namespace std::chrono_literals;

bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

class PostmasterCrash : public ::testing::Test {
 protected:
  void SetUp() override {
    backend::LocalBackendOptions options;
    options.state_dir = dir_.path() / "state";
    server_ = std::make_unique<backend::LocalBackend>(options);
    server_->Start();
  }
  void TearDown() override { server_->Stop(); }

  pg::ConnInfo Admin(const std::string& db) const {
    pg::ConnInfo info = server_->AdminConnInfo();
    info.Set("dbname", db);
    return info;
  }
  // SIGKILL to the postmaster; returns once the supervisor's new one accepts connections.
  void KillPostmaster() {
    const int restarts = server_->Restarts();
    ASSERT_EQ(::kill(server_->PostmasterPid(), SIGKILL), 0);
    ASSERT_TRUE(WaitUntil([&] { return server_->Restarts() > restarts; }, 120s));
    ASSERT_TRUE(server_->WaitReady(60s));
  }

  testing::TempDir dir_{"testpool-pmcrash"};
  std::unique_ptr<backend::LocalBackend> server_;
};

TEST_F(PostmasterCrash, APoolHandsOutNoConnectionTheDeadServerClosed) {
  pg::ConnectionPool pool(Admin("postgres"), 4);
  pool.Prefill(4);
  KillPostmaster();
  // Every idle connection died with its backend; each Acquire must give a working one.
  for (int i = 0; i < 6; ++i) {
    auto conn = pool.Acquire();
    EXPECT_EQ(conn->Exec("SELECT 1").Get(0, 0), "1") << "acquire " << i;
  }
}

TEST_F(PostmasterCrash, AWriteBeforeTheCrashStillCountsAsAWriteAfterIt) {
  core::SlotOps ops(Admin("postgres"), [](int) {});
  pg::Connection(pg::Connection::Open(Admin("postgres"))).Exec("CREATE DATABASE crash_marks");
  const core::WriteMarks baseline{ops.Counters("crash_marks"), ops.SequenceDigest("crash_marks")};
  {
    pg::Connection db = pg::Connection::Open(Admin("crash_marks"));
    db.Exec("SET synchronous_commit = on");  // the row must be in the WAL before the kill
    db.Exec("CREATE TABLE written (v text)");
    db.Exec("INSERT INTO written VALUES ('by the lease')");
  }
  ASSERT_FALSE(ops.Unchanged("crash_marks", baseline)) << "the write is seen before the crash";
  KillPostmaster();
  pg::Connection db = pg::Connection::Open(Admin("crash_marks"));
  ASSERT_EQ(db.Exec("SELECT count(*) FROM written").Get(0, 0), "1");  // the row survived the crash
  EXPECT_FALSE(ops.Unchanged("crash_marks", baseline)) << "a dirty database passed for clean after a crash";
}

}  // namespace
}  // namespace testpool
