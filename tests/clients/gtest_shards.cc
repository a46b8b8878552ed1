// The sharded test binary of the GoogleTest helper (clients/cpp/include/testpool/gtest.h): not a
// ctest entry of its own; tests/integration/gtest_helper_test.cc runs several shards of it at once
// against a real daemon and checks what they report.
//
// Environment: TESTPOOL_URL, TESTPOOL_TEMPLATE (a template with an empty table
// `marks (shard int, test text)`), GTEST_SHARD_INDEX/GTEST_TOTAL_SHARDS, TESTPOOL_SHARD_TTL
// (seconds), TESTPOOL_SHARD_DIR (where each shard writes shard-<i>.json at exit and meets the
// others in the Isolation tests).
#include <libpq-fe.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "testpool/gtest.h"

namespace {

namespace fs = std::filesystem;
using testpool::client::Environment;

std::string Getenv(const char* name, const std::string& fallback = "") {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

int ShardIndex() { return std::stoi(Getenv("GTEST_SHARD_INDEX", "0")); }

// Polls `done` every 10 ms until it holds or `limit` passes; whether it held.
template <typename F>
bool WaitFor(F done, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

class MarksTest : public testpool::client::DatabaseTest {
 protected:
  // The first value of `sql`'s first row; fails the test (by exception) on an error.
  std::string Scalar(const std::string& sql) {
    PGresult* r = PQexec(conn(), sql.c_str());
    const ExecStatusType status = PQresultStatus(r);
    std::string out = status == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
    std::string error = PQresultErrorMessage(r);
    PQclear(r);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) throw std::runtime_error(sql + ": " + error);
    return out;
  }
  // Checks that the database is at the template's state, then writes a mark of this test.
  void CheckCleanThenWrite() {
    ASSERT_EQ(Scalar("SELECT count(*) FROM marks"), "0") << "a write of an earlier test is still there";
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    Scalar("INSERT INTO marks VALUES (" + std::to_string(ShardIndex()) + ", '" + name + "') RETURNING 1");
  }
};

// Enough writing tests that every shard of a few runs two or more: each one after the first in a
// shard needs the reset.
TEST_F(MarksTest, WriteOne) { CheckCleanThenWrite(); }
TEST_F(MarksTest, WriteTwo) { CheckCleanThenWrite(); }
TEST_F(MarksTest, WriteThree) { CheckCleanThenWrite(); }
TEST_F(MarksTest, WriteFour) { CheckCleanThenWrite(); }
TEST_F(MarksTest, WriteFive) { CheckCleanThenWrite(); }
TEST_F(MarksTest, WriteSix) { CheckCleanThenWrite(); }

TEST_F(MarksTest, ATestThatDoesNotUseTheDatabaseCostsNoReset) {
  EXPECT_TRUE(Environment::Instance()->leased());
}

TEST_F(MarksTest, TheLeaseIsRenewedInTheBackground) {
  // TESTPOOL_SHARD_TTL is short (3 s: a renewal a second); after three renewals the lease has
  // outlived its first TTL and still works.
  const int before = Environment::Instance()->renewals();
  ASSERT_TRUE(WaitFor([&] { return Environment::Instance()->renewals() >= before + 3; }))
      << "renewals: " << Environment::Instance()->renewals();
  CheckCleanThenWrite();
}

// A suite whose tests start from data its SetUpTestSuite made once (a checkpoint), and one after
// it that must find the template's state again. gtest_helper_test runs these unsharded (the
// sharded runs filter them out).
class SeededTest : public MarksTest {
 protected:
  static void SetUpTestSuite() {
    Environment::Instance()->PushCheckpoint("seeded", [](PGconn* c) {
      PGresult* r = PQexec(c, "INSERT INTO marks VALUES (-1, 'seed'), (-1, 'seed')");
      const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
      PQclear(r);
      if (!ok) throw std::runtime_error(std::string("seeding failed: ") + PQerrorMessage(c));
    });
  }
  static void TearDownTestSuite() { Environment::Instance()->PopCheckpoint(); }

  void CheckSeededThenWrite() {
    ASSERT_EQ(Scalar("SELECT count(*) FROM marks"), "2") << "not at the suite's checkpoint";
    ASSERT_EQ(Scalar("SELECT count(*) FROM marks WHERE test = 'seed'"), "2");
    Scalar("INSERT INTO marks VALUES (0, 'written') RETURNING 1");
  }
};

TEST_F(SeededTest, StartsFromTheSeed) { CheckSeededThenWrite(); }
TEST_F(SeededTest, StartsFromTheSeedAgain) { CheckSeededThenWrite(); }

class AfterSeededTest : public MarksTest {};
TEST_F(AfterSeededTest, IsBackAtTheTemplate) { CheckCleanThenWrite(); }

// One per shard (registered in main, consecutively, so that sharding gives each shard exactly
// one): every shard writes its mark, waits until all have, then sees its own mark alone.
class IsolationTest : public MarksTest {
 public:
  void TestBody() override {
    CheckCleanThenWrite();
    const fs::path dir = Getenv("TESTPOOL_SHARD_DIR");
    const int total = std::stoi(Getenv("GTEST_TOTAL_SHARDS", "1"));
    std::ofstream(dir / ("wrote-" + std::to_string(ShardIndex()))) << "1";
    ASSERT_TRUE(WaitFor([&] {
      for (int i = 0; i < total; ++i) {
        if (!fs::exists(dir / ("wrote-" + std::to_string(i)))) return false;
      }
      return true;
    })) << "not every shard wrote its mark";
    EXPECT_EQ(Scalar("SELECT string_agg(shard::text, ',') FROM marks"), std::to_string(ShardIndex()));
  }
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const int total = std::stoi(Getenv("GTEST_TOTAL_SHARDS", "1"));
  for (int i = 0; i < total; ++i) {
    ::testing::RegisterTest("Isolation", ("Shard" + std::to_string(i)).c_str(), nullptr, nullptr, __FILE__, __LINE__,
                            []() -> IsolationTest* { return new IsolationTest; });
  }
  Environment* env = testpool::client::AddEnvironment(
      {.ttl = std::chrono::seconds(std::stoi(Getenv("TESTPOOL_SHARD_TTL", "120")))});
  const int rc = RUN_ALL_TESTS();
  if (const std::string dir = Getenv("TESTPOOL_SHARD_DIR"); !dir.empty()) {
    const nlohmann::json report = {{"lease", env->lease().id},     {"database", env->lease().database},
                                   {"holder", env->lease().holder}, {"resets", env->resets()},
                                   {"uses", env->uses()},          {"renewals", env->renewals()}};
    std::ofstream(fs::path(dir) / ("shard-" + std::to_string(ShardIndex()) + ".json")) << report.dump();
  }
  return rc;
}
