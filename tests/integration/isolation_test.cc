// A lease's credentials reach its own database and nothing else, on the embedded local backend
// (the real `testpool serve`, its own PostgreSQL): not another lease's database, not the
// template, not the control database, not `postgres` or `template1`; and through the wire proxy
// (rollback mode), not another lease's pinned session. (The Docker backend's case is in
// docker_pool_test: LeasesAreIsolatedPerContainer.) Leases go through the C++ client library
// (clients/cpp), as a user's tests would take them.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "testpool/client.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;

class IsolationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    state_ = new testing::TempDir("testpool-isolation");
    std::filesystem::permissions(state_->path(), std::filesystem::perms(0755));  // postgres must enter it
    daemon_ = new testing::Daemon({"--state-dir", state_->path().string()});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
    delete daemon_;
    delete state_;
  }

  static httplib::Client Http() {
    httplib::Client c("127.0.0.1", daemon_->port());
    c.set_read_timeout(std::chrono::seconds(120));
    return c;
  }
  // Defines a template (two warm slots); returns the PUT answer (name, database, …).
  static json Template(const std::string& recycle) {
    const std::string name = "iso_" + recycle + "_" + util::RandomToken(6);
    json body = {{"migrations", {{{"name", "0001_t.sql"}, {"sql", "-- " + name + "\nCREATE TABLE t (v text);\n"}}}},
                 {"pool", {{"min_ready", 2}, {"max", 3}}}, {"recycle", recycle}};
    auto r = Http().Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    return r ? json::parse(r->body) : json();
  }
  static client::Lease Lease(const std::string& name) {
    return client::Client(daemon_->url()).Acquire(name, {.wait = std::chrono::seconds(120), .holder = "isolation_test"});
  }
  static void Release(const client::Lease& lease) { client::Client(daemon_->url()).Release(lease.id); }

  // "" when `user`/`password` open `dbname` at `at`'s host and port, else the refusal.
  static std::string Connect(const client::Lease& at, const std::string& user, const std::string& password,
                             const std::string& dbname) {
    pg::ConnInfo c;
    c.Set("host", at.host).Set("port", std::to_string(at.port));
    c.Set("user", user).Set("password", password).Set("dbname", dbname);
    try {
      pg::Connection conn = pg::Connection::Open(c);
      conn.Exec("SELECT 1");
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  }
  static std::string ConnectAs(const client::Lease& lease, const client::Lease& at, const std::string& dbname) {
    return Connect(at, lease.user, lease.password, dbname);
  }

  static testing::TempDir* state_;
  static testing::Daemon* daemon_;
};
testing::TempDir* IsolationTest::state_;
testing::Daemon* IsolationTest::daemon_;

TEST_F(IsolationTest, ALeaseReachesOnlyItsOwnDatabaseOnTheServer) {
  const json clone = Template("clone"), rollback = Template("rollback");
  const client::Lease a = Lease(clone["name"]), b = Lease(clone["name"]), r = Lease(rollback["name"]);
  ASSERT_FALSE(a.password.empty() || b.password.empty() || r.password.empty());
  ASSERT_EQ(ConnectAs(a, a, a.database), "") << "the lease's own database must open";
  ASSERT_NE(a.database, b.database);
  for (const std::string& db : std::vector<std::string>{b.database, clone["database"].get<std::string>(),
                               rollback["database"].get<std::string>(), r.database,
                               std::string("testpool"), std::string("postgres"), std::string("template1")}) {
    EXPECT_NE(ConnectAs(a, a, db), "") << "lease " << a.user << " opened " << db;
  }
  // The rollback lease's role has another password on the server than the one it was given: its
  // credentials do not reach the server around the proxy, not even its own database.
  EXPECT_NE(ConnectAs(r, a, r.database), "") << "a rollback lease reached the server around the proxy";
  // Another role's name with this lease's password does not open anything either.
  EXPECT_NE(Connect(a, b.user, a.password, b.database), "");
  for (const client::Lease& l : {a, b, r}) Release(l);
  Http().Delete(("/v1/templates/" + clone["name"].get<std::string>()).c_str());
  Http().Delete(("/v1/templates/" + rollback["name"].get<std::string>()).c_str());
}

TEST_F(IsolationTest, ThroughTheProxyALeaseReachesOnlyItsOwnSession) {
  const json rollback = Template("rollback"), clone = Template("clone");
  const client::Lease r1 = Lease(rollback["name"]), r2 = Lease(rollback["name"]), a = Lease(clone["name"]);
  ASSERT_FALSE(r1.password.empty() || r2.password.empty() || a.password.empty());
  ASSERT_EQ(ConnectAs(r1, r1, r1.database), "") << "the lease's own session must open";
  ASSERT_EQ(ConnectAs(r2, r2, r2.database), "");
  // Its credentials, the other lease's database (or session).
  EXPECT_NE(ConnectAs(r1, r1, r2.database), "") << "lease 1 reached lease 2's session";
  EXPECT_NE(Connect(r1, r2.user, r1.password, r2.database), "") << "lease 2's role with lease 1's password";
  EXPECT_NE(Connect(r1, r1.user, r2.password, r1.database), "") << "lease 1's role with lease 2's password";
  for (const std::string& db : std::vector<std::string>{rollback["database"].get<std::string>(), std::string("testpool"),
                               std::string("postgres"), a.database}) {
    EXPECT_NE(ConnectAs(r1, r1, db), "") << "through the proxy, lease 1 opened " << db;
  }
  // A clone-mode lease's credentials open no session at the proxy.
  EXPECT_NE(ConnectAs(a, r1, a.database), "");
  for (const client::Lease& l : {r1, r2, a}) Release(l);
  Http().Delete(("/v1/templates/" + rollback["name"].get<std::string>()).c_str());
  Http().Delete(("/v1/templates/" + clone["name"].get<std::string>()).c_str());
}

}  // namespace
}  // namespace testpool
