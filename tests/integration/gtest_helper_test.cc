// The GoogleTest helper (clients/cpp) end to end: several shards of tests/clients/gtest_shards.cc
// run at once against a real daemon, each with its own lease, and what they report is checked
// here and against the daemon's status (through testpool::client::Client).
#include <gtest/gtest.h>
#include <httplib.h>

#include <boost/process.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <iostream>
#include <thread>

#include "orchestrator/util/crypto.h"
#include "testpool/client.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;
using testing::CliResult;

std::filesystem::path ShardsBinary() {
  const char* bin = std::getenv("TESTPOOL_GTEST_SHARDS_BIN");
  EXPECT_TRUE(bin != nullptr) << "TESTPOOL_GTEST_SHARDS_BIN is not set";
  return bin != nullptr ? bin : "";
}

// Counts of `needle` in `text`.
int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

class GtestHelperTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    daemon_ = new testing::Daemon({"--backend", "external", "--dsn", testing::Admin("postgres").ToKeywordString()});
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
    delete daemon_;
  }

  // A template with the empty table the shards write to; its name.
  static std::string Template(const std::string& recycle, int warm) {
    const std::string name = "gtest_" + recycle + "_" + util::RandomToken(6);
    const json body = {{"migrations", {{{"name", "0001_marks.sql"}, {"sql", "CREATE TABLE marks (shard int, test text);"}}}},
                       {"pool", {{"min_ready", warm}, {"max", warm + 1}}},
                       {"recycle", recycle}};
    httplib::Client http("127.0.0.1", daemon_->port());
    http.set_read_timeout(std::chrono::seconds(120));
    auto r = http.Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    return name;
  }

  // Runs `shards` shards of the binary at once; their results by index. (Started together and
  // waited for one by one: Boost.Process's wait_for in several threads at once steals another
  // thread's SIGCHLD and waits out its timeout.) ctest's TIMEOUT bounds the wait.
  static std::vector<CliResult> RunShards(const std::string& template_name, int shards, const testing::TempDir& dir) {
    namespace bp = boost::process;
    std::vector<bp::child> children;
    for (int i = 0; i < shards; ++i) {
      bp::environment env = boost::this_process::environment();
      env.set("TESTPOOL_URL", daemon_->url());  // env[k] = v reads out of bounds in Boost 1.74
      env.set("TESTPOOL_TEMPLATE", template_name);  // env[k] = v reads out of bounds in Boost 1.74
      env.set("TESTPOOL_SHARD_TTL", "3");  // env[k] = v reads out of bounds in Boost 1.74
      env.set("TESTPOOL_SHARD_DIR", dir.path().string());  // env[k] = v reads out of bounds in Boost 1.74
      env.set("GTEST_SHARD_INDEX", std::to_string(i));  // env[k] = v reads out of bounds in Boost 1.74
      env.set("GTEST_TOTAL_SHARDS", std::to_string(shards));  // env[k] = v reads out of bounds in Boost 1.74
      env.set("GTEST_FILTER", "-SeededTest.*:AfterSeededTest.*");  // SuiteCheckpoints runs those
      const std::string stem = (dir.path() / ("out-" + std::to_string(i))).string();
      children.emplace_back(ShardsBinary().string(), env, bp::std_out > stem, bp::std_err > stem + ".err");
    }
    std::vector<CliResult> results(shards);
    for (int i = 0; i < shards; ++i) {
      children[i].wait();
      results[i].exit_code = children[i].exit_code();
      std::ifstream out(dir.path() / ("out-" + std::to_string(i))), err(dir.path() / ("out-" + std::to_string(i) + ".err"));
      std::stringstream o, e;
      o << out.rdbuf();
      e << err.rdbuf();
      results[i].out = o.str();
      results[i].err = e.str();
    }
    return results;
  }

  // The sum of a counter over the daemon's pools, or a counter of the daemon.
  static int64_t Leased(const json& status) {
    int64_t n = 0;
    for (const json& p : status["pools"]) n += p["leased"].get<int64_t>();
    return n;
  }

  // The shards of one run: their own leases and databases, isolated, reset between writing tests
  // only, and every lease released at exit.
  static void ShardsEachHaveTheirOwnDatabase(const std::string& recycle) {
    constexpr int kShards = 3;
    const std::string name = Template(recycle, kShards);
    client::Client api(daemon_->url());
    const json before = api.Status();
    testing::TempDir dir("testpool-gtest-shards");

    const std::vector<CliResult> results = RunShards(name, kShards, dir);

    std::set<std::string> leases, databases;
    int tests = 0, resets = 0;
    for (int i = 0; i < kShards; ++i) {
      const CliResult& r = results[i];
      if (std::getenv("GTEST_HELPER_VERBOSE")) std::cout << r.out << r.err;
      ASSERT_EQ(r.exit_code, 0) << "shard " << i << ":\n" << r.out << r.err;
      tests += Count(r.out, "[       OK ]");
      std::ifstream in(dir.path() / ("shard-" + std::to_string(i) + ".json"));
      ASSERT_TRUE(in) << "shard " << i << " wrote no report";
      const json report = json::parse(in);
      leases.insert(report["lease"].get<std::string>());
      databases.insert(report["database"].get<std::string>());
      const std::string holder = report["holder"];
      EXPECT_NE(holder.find("gtest_shards shard " + std::to_string(i) + "/3 pid "), std::string::npos) << holder;
      // Every test that used the database after the first needed a reset; none other did.
      EXPECT_GE(report["uses"].get<int>(), 2) << "shard " << i;
      EXPECT_EQ(report["resets"].get<int>(), report["uses"].get<int>() - 1) << "shard " << i;
      resets += report["resets"].get<int>();
    }
    EXPECT_EQ(tests, 8 + kShards) << "every test ran once, in one shard";
    EXPECT_EQ(leases.size(), size_t(kShards));
    EXPECT_EQ(databases.size(), size_t(kShards));

    const json after = api.Status();
    EXPECT_EQ(Leased(after), 0) << "a shard kept its lease: " << after.dump();
    const json &c0 = before["counters"], &c1 = after["counters"];
    EXPECT_EQ(c1["leases_granted"].get<int64_t>() - c0["leases_granted"].get<int64_t>(), kShards);
    EXPECT_EQ(c1["leases_released"].get<int64_t>() - c0["leases_released"].get<int64_t>(), kShards);
    EXPECT_EQ(c1["leases_expired"], c0["leases_expired"]) << "a lease ran out instead of being renewed";
    EXPECT_EQ(c1["resets"].get<int64_t>() - c0["resets"].get<int64_t>(), resets);
    httplib::Client("127.0.0.1", daemon_->port()).Delete(("/v1/templates/" + name).c_str());
  }

  static testing::Daemon* daemon_;
};
testing::Daemon* GtestHelperTest::daemon_;

TEST_F(GtestHelperTest, ShardsRunAtOnceEachOnItsOwnCloneDatabase) { ShardsEachHaveTheirOwnDatabase("clone"); }

TEST_F(GtestHelperTest, ShardsRunAtOnceEachInItsOwnRollbackSession) { ShardsEachHaveTheirOwnDatabase("rollback"); }

// PushCheckpoint in SetUpTestSuite: the suite's tests each start from its data, the tests after
// the suite from the template again; resets only where a test used the database before.
TEST_F(GtestHelperTest, SuiteCheckpointsAreTheBaseOfTheirTests) {
  for (const std::string recycle : {"clone", "rollback"}) {
    const std::string name = Template(recycle, 1);
    testing::TempDir dir("testpool-gtest-seeded");
    CliResult r = testing::RunCommand(
        {ShardsBinary().string()},
        {{"TESTPOOL_URL", daemon_->url()}, {"TESTPOOL_TEMPLATE", name}, {"TESTPOOL_SHARD_DIR", dir.path().string()},
         {"GTEST_FILTER", "MarksTest.WriteOne:SeededTest.*:AfterSeededTest.*"}});
    ASSERT_EQ(r.exit_code, 0) << recycle << ":\n" << r.out << r.err;
    EXPECT_EQ(Count(r.out, "[       OK ]"), 4) << r.out;
    std::ifstream in(dir.path() / "shard-0.json");
    ASSERT_TRUE(in) << "no report";
    const json report = json::parse(in);
    // WriteOne (first use, no reset); the push (WriteOne wrote); StartsFromTheSeed (none: the
    // checkpoint was just saved); StartsFromTheSeedAgain; IsBackAtTheTemplate (another state).
    EXPECT_EQ(report["uses"].get<int>(), 5) << recycle;
    EXPECT_EQ(report["resets"].get<int>(), 3) << recycle;
    httplib::Client("127.0.0.1", daemon_->port()).Delete(("/v1/templates/" + name).c_str());
  }
}

TEST_F(GtestHelperTest, UnreachableDaemonFailsAtSetUpNamingTheUrl) {
  const std::string url = "http://127.0.0.1:" + std::to_string(testing::FreePort());
  CliResult r = testing::RunCommand({ShardsBinary().string()}, {{"TESTPOOL_URL", url}, {"TESTPOOL_TEMPLATE", "app"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("cannot reach the testpool daemon at " + url), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("testpool serve"), std::string::npos) << r.out;
  EXPECT_EQ(Count(r.out, "[       OK ]"), 0) << "tests passed without a database:\n" << r.out;
  EXPECT_EQ(Count(r.out, "cannot reach"), 1) << "one failure, not one per test:\n" << r.out;
}

TEST_F(GtestHelperTest, UnknownTemplateFailsAtSetUpWithTheDaemonsError) {
  CliResult r = testing::RunCommand({ShardsBinary().string()},
                                    {{"TESTPOOL_URL", daemon_->url()}, {"TESTPOOL_TEMPLATE", "no_such_template"}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.out.find("not_found"), std::string::npos) << r.out;
  EXPECT_EQ(Count(r.out, "[       OK ]"), 0) << r.out;
}

// Claims through the client: a pool over a table of a leased database (defined over HTTP), a
// claim of a matching row with its row, the same row refused while held, free again once unclaimed.
TEST_F(GtestHelperTest, ClientClaimsAndUnclaimsRows) {
  const std::string name = "gtest_claims_" + util::RandomToken(6);
  const json body = {{"migrations", {{{"name", "0001_users.sql"},
                                      {"sql", "CREATE TABLE users (id int PRIMARY KEY, tier text);"
                                              "INSERT INTO users VALUES (1, 'gold'), (2, 'basic');"}}}},
                     {"pool", {{"min_ready", 1}, {"max", 2}}}};
  httplib::Client http("127.0.0.1", daemon_->port());
  http.set_read_timeout(std::chrono::seconds(120));
  auto put = http.Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
  ASSERT_TRUE(put && put->status == 201) << (put ? put->body : "no answer");

  client::Client api(daemon_->url());
  const client::Lease lease = api.Acquire(name, {.holder = "gtest_helper_test"});
  const json pool = {{"lease", lease.id}, {"table", "users"}, {"key", "id"}};
  auto def = http.Put(("/v1/record-pools/" + name).c_str(), pool.dump(), "application/json");
  ASSERT_TRUE(def && def->status == 201) << (def ? def->body : "no answer");

  const client::Claim gold = api.ClaimRow(name, {.match = {{"tier", "gold"}}, .holder = "gtest_helper_test"});
  EXPECT_EQ(gold.key, "1");
  EXPECT_EQ(gold.row["tier"], "gold");
  EXPECT_GT(gold.token, 0);
  try {
    api.ClaimRow(name, {.match = {{"tier", "gold"}}});
    ADD_FAILURE() << "the held row was claimed twice";
  } catch (const client::Error& e) {
    EXPECT_EQ(e.http_status(), 503);
    EXPECT_EQ(e.code(), "pool_exhausted");
  }
  api.Unclaim(gold.id);
  EXPECT_EQ(api.ClaimRow(name, {.match = {{"tier", "gold"}}}).key, "1") << "free again once unclaimed";
  api.Release(lease.id);
  http.Delete(("/v1/record-pools/" + name).c_str());
  http.Delete(("/v1/templates/" + name).c_str());
}

// The client's typed errors, straight against the daemon.
TEST_F(GtestHelperTest, ClientErrorsCarryStatusAndCode) {
  client::Client api(daemon_->url());
  try {
    api.Renew("nosuchlease", std::chrono::seconds(10));
    ADD_FAILURE() << "renewing an unknown lease succeeded";
  } catch (const client::Error& e) {
    EXPECT_EQ(e.http_status(), 404);
    EXPECT_EQ(e.code(), "not_found");
    EXPECT_FALSE(e.unreachable());
  }
  client::Client nowhere("http://127.0.0.1:" + std::to_string(testing::FreePort()));
  try {
    nowhere.Status();
    ADD_FAILURE() << "a daemon answered on a free port";
  } catch (const client::Error& e) {
    EXPECT_TRUE(e.unreachable());
    EXPECT_NE(std::string(e.what()).find(nowhere.base_url()), std::string::npos) << e.what();
  }
  EXPECT_THROW(client::Client("ftp://x"), std::invalid_argument);
}

}  // namespace
}  // namespace testpool
