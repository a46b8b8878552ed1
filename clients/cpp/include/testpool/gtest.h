// GoogleTest integration of testpool::client: one leased database per test binary (or per shard)
// and a fixture base class whose every test starts from the template's state.
//
//   // once, at namespace scope in any test file (or in main before RUN_ALL_TESTS):
//   static auto* const testpool_env = testpool::client::AddEnvironment({.template_name = "app"});
//
//   class OrdersTest : public testpool::client::DatabaseTest {};
//   TEST_F(OrdersTest, Inserts) { PQexec(conn(), "INSERT INTO orders …"); }
//
// Environment: at SetUp it takes one lease of the template, holder "gtest <binary> shard i/n pid P
// on HOST" (GTEST_SHARD_INDEX/GTEST_TOTAL_SHARDS, so each shard of a sharded run has its own
// database), renews it from a background thread every ttl/3, and releases it at TearDown. When the
// lease cannot be taken (daemon unreachable, unknown template, pool exhausted) SetUp fails fatally
// with the daemon's message (one failure, so the binary exits non-zero); every DatabaseTest then
// skips (GoogleTest 1.12 still runs the tests after a failed environment).
// A binary that dies without TearDown (a crash, exit()) leaves its lease to end by its TTL.
//
// DatabaseTest: dsn(), lease(), conn() and Build() "use" the database. The first use in a test
// resets the database to its base when an earlier test used it since the last reset (the
// daemon's reset is only a check when nothing was written); a test that never uses it costs
// nothing. conn() is a libpq connection opened at the first call and closed at TearDown.
//
// The base is the template's state, or a checkpoint: expensive set-up done once per suite and
// restored before each of its tests (in rollback mode in well under a millisecond):
//
//   class ShopTest : public testpool::client::DatabaseTest {
//    protected:
//     static void SetUpTestSuite() {
//       testpool::client::Environment::Instance()->PushCheckpoint("shop", [](PGconn* c) { /* … */ });
//     }
//     static void TearDownTestSuite() { testpool::client::Environment::Instance()->PopCheckpoint(); }
//   };
//
// Threading: everything here is for GoogleTest's main thread (tests run one at a time in a
// binary); the renewer thread touches only the Environment's own renewal state.
#pragma once

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "testpool/client.h"

namespace testpool::client {

struct EnvironmentOptions {
  std::string template_name{};     // "": $TESTPOOL_TEMPLATE
  std::string url{};               // "": $TESTPOOL_URL, else http://127.0.0.1:7432
  std::chrono::seconds ttl{120};   // the lease's TTL; renewed every ttl/3
  std::chrono::seconds wait{60};   // how long the daemon may wait for a free database
};

class Environment : public ::testing::Environment {
 public:
  explicit Environment(EnvironmentOptions options = {});
  ~Environment() override;  // stops the renewer if TearDown did not run

  // Takes the lease and starts the renewer; a fatal failure naming the URL and the daemon's
  // error when it cannot.
  void SetUp() override;
  // Stops the renewer, then releases the lease (a non-fatal failure when the release fails).
  void TearDown() override;

  // The Environment registered by AddEnvironment (the last one), or nullptr.
  static Environment* Instance();

  // Whether SetUp took a lease that TearDown has not released yet.
  bool leased() const { return leased_; }
  // The lease as last granted or reset (also after TearDown, for reports).
  const Lease& lease() const { return lease_; }
  const std::string& holder() const { return holder_; }
  const EnvironmentOptions& options() const { return options_; }
  // The client of the main thread.
  Client& client() { return *client_; }

  // The database for a test that starts using it: reset first when an earlier test used it since
  // the last reset, then marked used. Throws Error when there is no lease, when the renewer found
  // the lease ended ("lease_lost"), or when the reset fails.
  const Lease& Use();

  // Makes a new base: the database goes back to the current base (when used since), `setup` runs
  // on a fresh connection to it (closed after), and the result is saved as checkpoint `name`.
  // Every test that uses the database from now on starts from it, until PopCheckpoint. Nests
  // (a stack). Throws Error as Use() does, or what `setup` throws (then nothing is pushed).
  void PushCheckpoint(const std::string& name, const std::function<void(PGconn*)>& setup);
  // The innermost checkpoint stops being the base (the daemon drops it at the next reset to an
  // earlier state). Does nothing when there is none.
  void PopCheckpoint();
  // The checkpoints that are bases now, outermost first.
  const std::vector<std::string>& checkpoints() const { return checkpoints_; }

  // Figures for tests of the helper itself: resets done by Use(), tests that used the database,
  // renewals done by the background thread.
  int resets() const { return resets_; }
  int uses() const { return uses_; }
  int renewals() const;

 private:
  void Renew();
  void StopRenewer();

  const EnvironmentOptions options_;
  const std::string holder_;
  std::unique_ptr<Client> client_;  // main thread
  Lease lease_;                     // main thread
  bool leased_ = false;             // main thread
  bool dirty_ = false;              // main thread: used since the last reset (or the grant)
  std::vector<std::string> checkpoints_;  // main thread: the bases, outermost first
  std::string at_;                  // main thread: the checkpoint the database was last made from ("" : the template)
  int resets_ = 0;                  // main thread
  int uses_ = 0;                    // main thread

  std::thread renewer_;             // started by SetUp, joined by StopRenewer
  mutable std::mutex mu_;
  std::condition_variable wake_;    // with mu_: stop_ changed
  bool stop_ = false;               // guarded by mu_
  int renewals_ = 0;                // guarded by mu_
  std::string lost_;                // guarded by mu_: why the lease ended under us ("" : it did not)
};

// Registers a new Environment with GoogleTest (which owns it) and returns it. Call it once per
// binary, before RUN_ALL_TESTS (a namespace-scope initialiser will do).
Environment* AddEnvironment(EnvironmentOptions options = {});

// The holder text for this process: "gtest <binary> [shard i/n ]pid P on HOST".
std::string HolderName();

// A fixture base: derive test fixtures from it (or use it directly with TEST_F). A subclass that
// overrides SetUp or TearDown calls DatabaseTest's first (SetUp) or last (TearDown).
class DatabaseTest : public ::testing::Test {
 protected:
  DatabaseTest() = default;
  ~DatabaseTest() override;

  // Fails the test when no Environment is registered; skips it when the Environment's SetUp failed.
  void SetUp() override;
  // Closes conn() if it was opened.
  void TearDown() override;

  // The leased database's DSN (libpq keyword form). Uses the database (see Environment::Use).
  const std::string& dsn() { return lease().dsn; }
  const Lease& lease();
  // A libpq connection to the database, opened at the first call (by this test) and closed at
  // TearDown; owned by the fixture. Throws std::runtime_error when it cannot connect.
  PGconn* conn();
  // Client::Build in the leased database. Uses the database.
  BuildResult Build(const std::string& recipe, const BuildOptions& options = {});
  // The Environment's client (for claims and the like).
  Client& client();

 private:
  Environment* env_ = nullptr;
  const Lease* lease_ = nullptr;  // set at the first use in this test
  PGconn* conn_ = nullptr;
};

}  // namespace testpool::client
