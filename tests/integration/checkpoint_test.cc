// Checkpoints of a lease (POST /v1/leases/{id}/checkpoints, POST …/reset {"to"}), on the real
// daemon (external backend on the shared test server) in both recycle modes: a restore brings the
// committed rows and the sequences back as they were when the checkpoint was taken, under the same
// DSN; checkpoints nest as a stack (a restore drops the later ones, a reset to the template all of
// them); a name can be replaced; bad input gets its 4xx; and in clone mode the checkpoints'
// databases are gone once the lease has ended, a clean restore is skipped, and a database that was
// restored from a checkpoint is never handed to the next lease as clean.
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "testpool/client.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;

class CheckpointTest : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new testing::Daemon({"--backend", "external", "--dsn", testing::Admin("postgres").ToKeywordString(),
                                   "--proxy-listen", "127.0.0.1:0"});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
    delete daemon_;
  }

  void SetUp() override {
    ASSERT_TRUE(daemon_->ready()) << daemon_->Log();
    name_ = "ckpt_" + GetParam() + "_" + util::RandomToken(6);
    // A serial column: the sequence must come back with the rows.
    json body = {{"migrations", {{{"name", "0001_t.sql"},
                                  {"sql", "-- " + name_ + "\nCREATE TABLE t (id serial PRIMARY KEY, v text);\n"}}}},
                 {"pool", {{"min_ready", 1}, {"max", 2}}},
                 {"recycle", GetParam()}};
    auto r = Http().Put(("/v1/templates/" + name_).c_str(), body.dump(), "application/json");
    ASSERT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
  }
  void TearDown() override { Http().Delete(("/v1/templates/" + name_).c_str()); }

  static httplib::Client Http() {
    httplib::Client c("127.0.0.1", daemon_->port());
    c.set_read_timeout(std::chrono::seconds(120));
    return c;
  }
  client::Lease Lease() {
    return client::Client(daemon_->url()).Acquire(name_, {.wait = std::chrono::seconds(120), .holder = "checkpoint_test"});
  }
  // POST …/checkpoints; returns status and body.
  static std::pair<int, json> Checkpoint(const std::string& lease, const json& body) {
    auto r = Http().Post(("/v1/leases/" + lease + "/checkpoints").c_str(), body.dump(), "application/json");
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  static std::pair<int, json> Reset(const std::string& lease, const json& body) {
    auto r = Http().Post(("/v1/leases/" + lease + "/reset").c_str(), body.dump(), "application/json");
    if (!r) return {-1, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  static std::string ErrorCode(const json& body) {
    return body.is_object() && body.contains("error") ? body["error"].value("code", "") : "";
  }

  // Runs `sql` on a new connection to the lease's database (committed: autocommit).
  static pg::Result Sql(const client::Lease& l, const std::string& sql) {
    pg::Connection c = pg::Connection::Open(pg::ConnInfo::Parse(l.dsn));
    return c.Exec(sql);
  }
  // The rows' values, in id order, joined: "a,b".
  static std::string Rows(const client::Lease& l) {
    pg::Result r = Sql(l, "SELECT coalesce(string_agg(v, ',' ORDER BY id), '') FROM t");
    return std::string(r.Get(0, 0));
  }
  // The id the next insert gets (consumes it; the caller restores afterwards when it matters).
  static std::string NextId(const client::Lease& l) {
    return std::string(Sql(l, "INSERT INTO t (v) VALUES ('probe') RETURNING id").Get(0, 0));
  }

  // Databases on the server whose names start with `prefix`.
  static std::set<std::string> Databases(const std::string& prefix) {
    pg::Connection c = pg::Connection::Open(testing::Admin("postgres"));
    pg::Result r = c.Exec("SELECT datname FROM pg_database WHERE starts_with(datname, $1)", {prefix});
    std::set<std::string> out;
    for (int i = 0; i < r.rows(); ++i) out.insert(std::string(r.Get(i, 0)));
    return out;
  }
  static uint64_t Counter(const char* key) {
    auto r = Http().Get("/v1/status");
    if (!r || r->status != 200) return 0;
    return json::parse(r->body)["counters"].value(key, uint64_t{0});
  }

  static testing::Daemon* daemon_;
  std::string name_;
};
testing::Daemon* CheckpointTest::daemon_;

TEST_P(CheckpointTest, ARestoreBringsBackTheRowsAndSequencesUnderTheSameDsn) {
  const client::Lease l = Lease();
  Sql(l, "INSERT INTO t (v) VALUES ('a'), ('b')");
  auto [status, saved] = Checkpoint(l.id, {{"name", "two_rows"}});
  ASSERT_EQ(status, 201) << saved.dump();
  EXPECT_EQ(saved["name"], "two_rows");
  EXPECT_EQ(saved["mode"], GetParam());
  EXPECT_EQ(saved["checkpoints"], json::array({"two_rows"}));
  EXPECT_EQ(Rows(l), "a,b") << "taking a checkpoint changes nothing";

  Sql(l, "INSERT INTO t (v) VALUES ('c'); DELETE FROM t WHERE v = 'a'; UPDATE t SET v = 'B' WHERE v = 'b'");
  Sql(l, "CREATE TABLE later (x int)");
  auto [rs, lease_after] = Reset(l.id, {{"to", "two_rows"}});
  ASSERT_EQ(rs, 200) << lease_after.dump();
  EXPECT_EQ(lease_after["dsn"], l.dsn);
  EXPECT_EQ(Rows(l), "a,b");
  EXPECT_EQ(Sql(l, "SELECT count(*) FROM pg_class WHERE relname = 'later'").Get(0, 0), "0");
  EXPECT_EQ(NextId(l), "3") << "the sequence is back where the checkpoint left it";

  // Again, after more writes: a checkpoint can be restored any number of times.
  ASSERT_EQ(Reset(l.id, {{"to", "two_rows"}}).first, 200);
  EXPECT_EQ(Rows(l), "a,b");
  EXPECT_EQ(NextId(l), "3");

  // To the template: the checkpoint goes with it.
  ASSERT_EQ(Reset(l.id, json::object()).first, 200);
  EXPECT_EQ(Rows(l), "");
  EXPECT_EQ(NextId(l), "1");
  auto [gone, why] = Reset(l.id, {{"to", "two_rows"}});
  EXPECT_EQ(gone, 404) << why.dump();
  EXPECT_EQ(ErrorCode(why), "not_found");
  client::Client(daemon_->url()).Release(l.id);
}

TEST_P(CheckpointTest, CheckpointsNestAndANameCanBeReplaced) {
  const client::Lease l = Lease();
  Sql(l, "INSERT INTO t (v) VALUES ('a')");
  ASSERT_EQ(Checkpoint(l.id, {{"name", "outer"}}).first, 201);
  Sql(l, "INSERT INTO t (v) VALUES ('b')");
  auto [s2, both] = Checkpoint(l.id, {{"name", "inner"}});
  ASSERT_EQ(s2, 201);
  EXPECT_EQ(both["checkpoints"], json::array({"outer", "inner"}));
  Sql(l, "INSERT INTO t (v) VALUES ('c')");

  ASSERT_EQ(Reset(l.id, {{"to", "inner"}}).first, 200);
  EXPECT_EQ(Rows(l), "a,b");
  ASSERT_EQ(Reset(l.id, {{"to", "outer"}}).first, 200);
  EXPECT_EQ(Rows(l), "a");
  EXPECT_EQ(Reset(l.id, {{"to", "inner"}}).first, 404) << "a restore drops the checkpoints after it";

  // Replacing "outer": the new one holds what is there now.
  Sql(l, "INSERT INTO t (v) VALUES ('d')");
  auto [s3, replaced] = Checkpoint(l.id, {{"name", "outer"}});
  ASSERT_EQ(s3, 201);
  EXPECT_EQ(replaced["checkpoints"], json::array({"outer"}));
  Sql(l, "DELETE FROM t");
  ASSERT_EQ(Reset(l.id, {{"to", "outer"}}).first, 200);
  EXPECT_EQ(Rows(l), "a,d");
  client::Client(daemon_->url()).Release(l.id);
}

TEST_P(CheckpointTest, ACheckpointHoldsOnlyCommittedWork) {
  const client::Lease l = Lease();
  Sql(l, "INSERT INTO t (v) VALUES ('committed')");
  pg::Connection open = pg::Connection::Open(pg::ConnInfo::Parse(l.dsn));
  open.Exec("BEGIN");
  open.Exec("INSERT INTO t (v) VALUES ('uncommitted')");
  if (GetParam() == "rollback") {
    // The savepoint would land inside the open transaction: the checkpoint waits for it to end,
    // and says why when it does not.
    auto [status, why] = Checkpoint(l.id, {{"name", "k"}});
    EXPECT_EQ(status, 504) << why.dump();
    EXPECT_NE(why.dump().find("transaction"), std::string::npos) << why.dump();
    open.Exec("ROLLBACK");
    ASSERT_EQ(Checkpoint(l.id, {{"name", "k"}}).first, 201);
  } else {
    // Clone mode ends the lease's sessions: the open transaction is lost, as on a reset.
    ASSERT_EQ(Checkpoint(l.id, {{"name", "k"}}).first, 201);
    EXPECT_THROW(open.Exec("COMMIT"), Error) << "the open session survived the checkpoint";
  }
  Sql(l, "DELETE FROM t");
  ASSERT_EQ(Reset(l.id, {{"to", "k"}}).first, 200);
  EXPECT_EQ(Rows(l), "committed");
  client::Client(daemon_->url()).Release(l.id);
}

TEST_P(CheckpointTest, BadRequestsGetTheirErrors) {
  const client::Lease l = Lease();
  EXPECT_EQ(ErrorCode(Checkpoint(l.id, json::object()).second), "invalid_argument") << "name is required";
  EXPECT_EQ(ErrorCode(Checkpoint(l.id, {{"name", "has space"}}).second), "invalid_argument");
  EXPECT_EQ(ErrorCode(Checkpoint(l.id, {{"name", std::string(65, 'x')}}).second), "invalid_argument");
  EXPECT_EQ(ErrorCode(Checkpoint(l.id, {{"name", 7}}).second), "invalid_argument");
  EXPECT_EQ(ErrorCode(Checkpoint(l.id, {{"name", "a"}, {"extra", 1}}).second), "invalid_argument");
  EXPECT_EQ(ErrorCode(Reset(l.id, {{"to", "nope"}}).second), "not_found");
  EXPECT_EQ(ErrorCode(Reset(l.id, {{"to", ""}}).second), "invalid_argument");
  EXPECT_EQ(ErrorCode(Checkpoint("abcdefgh", {{"name", "a"}}).second), "not_found") << "unknown lease";

  for (size_t i = 0; i < 16; ++i) ASSERT_EQ(Checkpoint(l.id, {{"name", "k" + std::to_string(i)}}).first, 201);
  auto [full, why] = Checkpoint(l.id, {{"name", "one_too_many"}});
  EXPECT_EQ(full, 409) << why.dump();
  EXPECT_EQ(Checkpoint(l.id, {{"name", "k15"}}).first, 201) << "replacing one needs no new place";
  ASSERT_EQ(Reset(l.id, {{"to", "k3"}}).first, 200);
  EXPECT_EQ(Checkpoint(l.id, {{"name", "one_too_many"}}).first, 201) << "a restore made room";

  client::Client(daemon_->url()).Release(l.id);
  auto [ended, ended_why] = Checkpoint(l.id, {{"name", "late"}});
  EXPECT_EQ(ended, 410) << ended_why.dump();
  EXPECT_EQ(Reset(l.id, {{"to", "k3"}}).first, 410);
}

TEST_P(CheckpointTest, NothingOfACheckpointOutlivesItsLease) {
  const client::Lease l = Lease();
  Sql(l, "INSERT INTO t (v) VALUES ('secret')");
  ASSERT_EQ(Checkpoint(l.id, {{"name", "k"}}).first, 201);
  Sql(l, "DELETE FROM t");
  ASSERT_EQ(Reset(l.id, {{"to", "k"}}).first, 200);  // the database is now a copy of the checkpoint
  if (GetParam() == "clone") {
    EXPECT_EQ(Databases(l.database + "_k").size(), 1u);
    // Nothing written since the restore: the next restore of it is only a check.
    const uint64_t skipped = Counter("resets_skipped");
    ASSERT_EQ(Reset(l.id, {{"to", "k"}}).first, 200);
    EXPECT_EQ(Counter("resets_skipped"), skipped + 1);
  }
  client::Client(daemon_->url()).Release(l.id);
  // The pool has one ready slot at most again (max 2, min_ready 1): lease until we get this one
  // back, holding the others, and it must be at the template's state.
  std::vector<client::Lease> held;
  for (int i = 0; i < 2; ++i) {
    held.push_back(Lease());
    EXPECT_EQ(Rows(held.back()), "") << "a lease got the previous lease's checkpoint data";
  }
  EXPECT_TRUE(Databases(l.database + "_k").empty()) << "the checkpoint's database outlived the lease";
  for (const client::Lease& h : held) client::Client(daemon_->url()).Release(h.id);
}

TEST_P(CheckpointTest, TheCliTakesAndRestoresCheckpoints) {
  const client::Lease l = Lease();
  Sql(l, "INSERT INTO t (v) VALUES ('a')");
  const std::map<std::string, std::string> env = {{"TESTPOOL_URL", daemon_->url()}};
  testing::CliResult saved = testing::RunCli({"checkpoint", l.id, "seeded"}, env);
  ASSERT_EQ(saved.exit_code, 0) << saved.err;
  EXPECT_NE(saved.out.find("checkpoint seeded saved"), std::string::npos) << saved.out;
  Sql(l, "DELETE FROM t");
  testing::CliResult back = testing::RunCli({"reset", l.id, "--to", "seeded"}, env);
  ASSERT_EQ(back.exit_code, 0) << back.err;
  EXPECT_EQ(Rows(l), "a");
  testing::CliResult bad = testing::RunCli({"reset", l.id, "--to", "nope"}, env);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("not_found"), std::string::npos) << bad.err;
  testing::CliResult usage = testing::RunCli({"checkpoint", l.id}, env);
  EXPECT_EQ(usage.exit_code, 2) << usage.err;
  client::Client(daemon_->url()).Release(l.id);
}

INSTANTIATE_TEST_SUITE_P(Modes, CheckpointTest, ::testing::Values("clone", "rollback"),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace testpool
