// Record pools against a real PostgreSQL: definitions checked against the catalog, claims that are
// exclusive under 64 concurrent claimers (fencing tokens checked), expiry, idempotent release,
// exhaustion, and a shared table left exactly as it was.
#include "orchestrator/records/record_pools.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <thread>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/code_of.h"
#include "tests/support/test_server.h"

namespace testpool::records {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

using testing::CodeOf;
using core::ControlStore;
using core::LeaseInfo;
using core::LeaseRequest;
using core::PoolConfig;
using core::PoolManager;
using core::PoolOptions;
using core::TemplateBuilder;
using core::TemplateService;
using core::TemplateSpec;

class RecordsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new std::string("tp_records_" + util::RandomToken(6));
    pg::Connection admin = pg::Connection::Open(testing::Admin());
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(*db_));
    pg::Connection c = pg::Connection::Open(testing::Admin(*db_));
    c.Exec(
        "CREATE SCHEMA shop;"
        "CREATE TABLE shop.test_users (user_id int PRIMARY KEY, email text NOT NULL UNIQUE, "
        "  profile_type text NOT NULL, country char(2) NOT NULL);"
        "INSERT INTO shop.test_users SELECT i, 'user' || i || '@example.test', "
        "  CASE WHEN i <= 20 THEN 'premium' ELSE 'standard' END, CASE WHEN i % 2 = 0 THEN 'DE' ELSE 'FR' END "
        "  FROM generate_series(1, 30) i;"
        "CREATE TABLE shop.events (at timestamptz, what text);");  // no key at all
  }
  static void TearDownTestSuite() {
    pg::Connection admin = pg::Connection::Open(testing::Admin());
    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(*db_) + " WITH (FORCE)");
    delete db_;
  }

  void SetUp() override {
    store_ = ControlStore::Open(testing::Server().AdminConnInfo());
    leases_ = std::make_unique<PoolManager>(*store_, testing::Server(), clock_, PoolOptions{});
    records_ = std::make_unique<RecordPools>(*store_, *leases_, clock_);
  }

  static std::string Dsn() { return testing::Admin(*db_).ToUri(); }

  RecordPoolSpec Spec(const std::string& stem, std::map<std::string, std::string> match = {}) {
    RecordPoolSpec s;
    s.name = stem + "_" + util::RandomToken(6);
    s.dsn = Dsn();
    s.schema = "shop";
    s.table = "test_users";
    s.key = "user_id";
    s.match = std::move(match);
    return s;
  }

  static std::string TableDigest() {
    pg::Connection c = pg::Connection::Open(testing::Admin(*db_));
    return std::string(
        c.Exec("SELECT md5(string_agg(t::text, ',' ORDER BY user_id)) FROM shop.test_users t").Get(0, 0));
  }

  static std::string* db_;
  const util::Clock& clock_ = util::RealClock();
  std::unique_ptr<ControlStore> store_;
  std::unique_ptr<PoolManager> leases_;
  std::unique_ptr<RecordPools> records_;
};

std::string* RecordsTest::db_;

TEST_F(RecordsTest, DefinitionsAreCheckedAgainstTheCatalog) {
  auto code = [&](RecordPoolSpec s, std::string* why) { return CodeOf([&] { records_->Define(s); }, why); };
  std::string why;
  RecordPoolSpec s = Spec("bad");
  s.table = "no_such_table";
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  EXPECT_THAT(why, HasSubstr("no_such_table"));
  s = Spec("bad");
  s.key = "nope";
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  s = Spec("bad");
  s.key = "profile_type";  // a column, but not unique
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  EXPECT_THAT(why, HasSubstr("not a key"));
  s = Spec("bad");
  s.table = "events";
  s.key = "at";
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  s = Spec("bad", {{"no_column", "x"}});
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  s = Spec("bad", {{"user_id", "not a number"}});
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  s = Spec("bad");
  s.table = "test_users; DROP TABLE shop.test_users";
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  s = Spec("bad");
  s.schema = "shop\" ; DROP TABLE shop.test_users; --";
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;
  s = Spec("bad");
  s.name = "Bad-Name";
  EXPECT_EQ(code(s, &why), "invalid_name") << why;
  s = Spec("bad");
  s.lease_id = "abc";
  EXPECT_EQ(code(s, &why), "invalid_argument") << why;  // dsn and lease both
  s = Spec("bad");
  s.dsn = "host=/nonexistent port=1 dbname=x connect_timeout=2";
  EXPECT_EQ(code(s, &why), "unavailable") << why;
  EXPECT_EQ(TableDigest().size(), 32u) << "the table is still there";
}

TEST_F(RecordsTest, DefineCountsAndCreatesTheClaimsSchemaOnly) {
  const std::string before = TableDigest();
  bool created = false;
  RecordPoolInfo info = records_->Define(Spec("premium", {{"profile_type", "premium"}}), &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(info.rows, 20);
  EXPECT_EQ(info.claimed, 0);
  EXPECT_EQ(info.free(), 20);
  EXPECT_THAT(info.spec.dsn, ::testing::Not(HasSubstr(testing::Admin().Get("password"))));
  RecordPoolSpec again = Spec("premium", {{"profile_type", "premium"}});
  again.name = info.spec.name;
  records_->Define(again, &created);
  EXPECT_FALSE(created) << "a second PUT replaces";
  EXPECT_EQ(TableDigest(), before) << "the user's table is untouched";
  pg::Connection c = pg::Connection::Open(testing::Admin(*db_));
  EXPECT_EQ(c.Exec("SELECT count(*) FROM pg_tables WHERE schemaname = 'testpool'").Get(0, 0), "2");
}

TEST_F(RecordsTest, ClaimReturnsTheRowRenewAndReleaseAreIdempotent) {
  RecordPoolInfo pool = records_->Define(Spec("one", {{"user_id", "7"}}));
  ClaimRequest req;
  req.pool = pool.spec.name;
  req.ttl = 60s;
  req.holder = "gw3";
  ClaimInfo claim = records_->Claim(req);
  EXPECT_EQ(claim.key, "7");
  EXPECT_THAT(claim.row_json, HasSubstr("\"email\": \"user7@example.test\""));
  EXPECT_EQ(claim.id.rfind(pool.spec.name + ".", 0), 0u) << claim.id;
  EXPECT_EQ(records_->Get(pool.spec.name).claimed, 1);

  std::string why;
  req.wait = 0s;
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }, &why), "pool_exhausted");
  EXPECT_THAT(why, HasSubstr(pool.spec.name));
  EXPECT_THAT(why, HasSubstr("user_id=7"));

  ClaimInfo renewed = records_->Renew(claim.id, 120s);
  EXPECT_GT(renewed.expires_at, claim.expires_at);
  records_->Release(claim.id);
  records_->Release(claim.id);  // idempotent
  EXPECT_EQ(CodeOf([&] { records_->Renew(claim.id, 60s); }), "lease_expired");
  EXPECT_EQ(CodeOf([&] { records_->Release(pool.spec.name + ".aaaaaaaa"); }), "not_found");
  EXPECT_EQ(CodeOf([&] { records_->Release("not a claim id"); }), "not_found");
  EXPECT_EQ(CodeOf([&] { records_->Release("no_such_pool.aaaa"); }), "not_found");

  ClaimInfo next = records_->Claim(req);
  EXPECT_EQ(next.key, "7");
  EXPECT_GT(next.token, claim.token) << "fencing token goes up with each claim of a key";
  records_->Release(next.id);
}

TEST_F(RecordsTest, MatchValuesAreParametersNotSql) {
  RecordPoolInfo pool = records_->Define(Spec("inj"));
  ClaimRequest req;
  req.pool = pool.spec.name;
  req.match = {{"profile_type", "premium' OR '1'='1"}};
  std::string why;
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }, &why), "pool_exhausted") << why;
  req.match = {{"profile_type; DROP TABLE shop.test_users", "x"}};
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }, &why), "invalid_argument") << why;
  EXPECT_EQ(TableDigest().size(), 32u);
}

TEST_F(RecordsTest, ExpiredClaimsAreReclaimableAtOnce) {
  RecordPoolInfo pool = records_->Define(Spec("exp", {{"user_id", "3"}}));
  ClaimRequest req;
  req.pool = pool.spec.name;
  req.ttl = 1s;
  ClaimInfo first = records_->Claim(req);
  req.wait = 5s;  // waits for the expiry, then gets it
  ClaimInfo second = records_->Claim(req);
  EXPECT_EQ(second.key, "3");
  EXPECT_GT(second.token, first.token);
  EXPECT_EQ(CodeOf([&] { records_->Renew(first.id, 60s); }), "lease_expired");
  records_->Release(first.id);  // ended long ago: still fine, and does not end the new claim
  EXPECT_EQ(records_->Get(pool.spec.name).claimed, 1);
  records_->Release(second.id);
}

TEST_F(RecordsTest, SixtyFourClaimersNeverShareARow) {
  const std::string before = TableDigest();
  RecordPoolInfo pool = records_->Define(Spec("race", {{"profile_type", "premium"}}));
  ASSERT_EQ(pool.rows, 20);
  constexpr int kThreads = 64, kRounds = 8;
  std::mutex mu;
  std::map<std::string, std::pair<bool, int64_t>> held;  // key → (held now, last token)
  std::atomic<int> double_holders{0}, regressions{0}, failures{0}, granted{0};
  std::string first_failure;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        ClaimRequest req;
        req.pool = pool.spec.name;
        req.ttl = 60s;
        req.wait = 60s;
        req.holder = "t" + std::to_string(t);
        try {
          ClaimInfo c = records_->Claim(req);
          ++granted;
          {
            std::lock_guard<std::mutex> lock(mu);
            auto& [now, token] = held[c.key];
            if (now) ++double_holders;
            if (c.token <= token) ++regressions;
            now = true;
            token = std::max(token, c.token);
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(1 + (t + round) % 4));
          {
            std::lock_guard<std::mutex> lock(mu);
            held[c.key].first = false;  // before the release: the next claim may follow at once
          }
          records_->Release(c.id);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mu);
          if (failures++ == 0) first_failure = e.what();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0) << first_failure;
  EXPECT_EQ(granted.load(), kThreads * kRounds);
  EXPECT_EQ(double_holders.load(), 0);
  EXPECT_EQ(regressions.load(), 0);
  EXPECT_EQ(records_->Get(pool.spec.name).claimed, 0);
  EXPECT_EQ(TableDigest(), before) << "the shared table holds exactly what it held before";
}

// Claims waiting for one pool and match are served first come, first served: a release goes to
// the longest waiter, and a new claim does not take a row that came free while others wait.
TEST_F(RecordsTest, WaitingClaimsAreServedInArrivalOrderAndNewOnesDoNotOvertake) {
  RecordPoolInfo pool = records_->Define(Spec("fifo", {{"user_id", "5"}}));  // one row
  const std::string name = pool.spec.name;
  ClaimRequest req;
  req.pool = name;
  req.ttl = 60s;
  ClaimInfo held = records_->Claim(req);
  auto wait_until = [](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 120s;  // only a hang reaches it
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
  };
  std::mutex mu;
  std::vector<std::string> order;
  std::map<std::string, ClaimInfo> got;
  auto waiter = [&](const std::string& who) {
    ClaimRequest r = req;
    r.wait = 120s;
    r.holder = who;
    ClaimInfo c = records_->Claim(r);
    std::lock_guard<std::mutex> lock(mu);
    order.push_back(who);
    got[who] = c;
  };
  auto claimed = [&](const std::string& who) {
    std::lock_guard<std::mutex> lock(mu);
    return got.count(who) == 1;
  };
  std::thread b([&] { waiter("b"); });
  ASSERT_TRUE(wait_until([&] { return records_->Get(name).waiting == 1; }));
  std::thread c([&] { waiter("c"); });
  ASSERT_TRUE(wait_until([&] { return records_->Get(name).waiting == 2; }));

  // The row comes free elsewhere (its claim ends in the target's table, as through another daemon,
  // so nobody here is woken): a new claim that does not wait finds b and c queued and takes nothing.
  pg::Connection target = pg::Connection::Open(testing::Admin(*db_));
  target.Exec("UPDATE testpool.claims SET released_at = clock_timestamp() WHERE claim_id = $1", {held.id});
  ClaimRequest eager = req;
  eager.holder = "eager";
  EXPECT_EQ(CodeOf([&] { records_->Claim(eager); }), "pool_exhausted");
  ASSERT_TRUE(wait_until([&] { return claimed("b"); }));  // b's next look finds it
  EXPECT_FALSE(claimed("c"));
  std::string b_claim;
  {
    std::lock_guard<std::mutex> lock(mu);
    b_claim = got.at("b").id;
  }
  records_->Release(b_claim);
  c.join();
  b.join();
  EXPECT_EQ(order, (std::vector<std::string>{"b", "c"}));
  records_->Release(got.at("c").id);
  EXPECT_EQ(records_->Get(name).waiting, 0);
  EXPECT_EQ(records_->Get(name).claimed, 0);
}

// Claims tied to a lease end with it; a pool defined on a leased database goes with the lease.
TEST_F(RecordsTest, ClaimsTiedToALeaseEndWithIt) {
  TemplateBuilder builder(*store_, clock_);
  TemplateService service(*store_, builder);
  PoolOptions options;
  options.reaper_interval = 100ms;
  PoolManager pools(*store_, testing::Server(), clock_, options);
  RecordPools records(*store_, pools, clock_);
  pools.SetLeaseEndedListener([&records](const std::string& id) { records.LeaseEnded(id); });
  pools.Start();
  service.SetListener(&pools);
  TemplateSpec t;
  t.name = "records_" + util::RandomToken(6);
  t.migrations = {{"0001_skus.sql", "-- " + t.name + "\nCREATE TABLE skus (sku text PRIMARY KEY, stock int);\n"
                               "INSERT INTO skus VALUES ('ABC-1', 1), ('ABC-2', 1);\n"}};
  t.pool = PoolConfig{1, 2};
  service.Put(t, true);
  LeaseRequest lr;
  lr.template_name = t.name;
  lr.ttl = 60s;
  lr.wait = 60s;
  LeaseInfo lease = pools.Acquire(lr);

  RecordPoolSpec shared = Spec("tied");
  records.Define(shared);
  ClaimRequest req;
  req.pool = shared.name;
  req.lease_id = lease.id;
  ClaimInfo claim = records.Claim(req);
  EXPECT_EQ(claim.lease_id, lease.id);

  RecordPoolSpec inside;  // on the leased database itself
  inside.name = "inside_" + util::RandomToken(6);
  inside.lease_id = lease.id;
  inside.table = "skus";
  inside.key = "sku";
  EXPECT_EQ(records.Define(inside).rows, 2);
  req.pool = inside.name;
  req.lease_id.clear();
  EXPECT_EQ(records.Claim(req).key.rfind("ABC-", 0), 0u);

  pools.Release(lease.id);
  EXPECT_EQ(CodeOf([&] { records.Renew(claim.id, 60s); }), "lease_expired") << "ended with its lease";
  EXPECT_EQ(records.Get(shared.name).claimed, 0);
  EXPECT_EQ(CodeOf([&] { records.Get(inside.name); }), "not_found") << "the leased database's pool went with it";
  req.pool = shared.name;
  req.lease_id = lease.id;
  EXPECT_EQ(CodeOf([&] { records.Claim(req); }), "lease_expired") << "no new claims on an ended lease";
  service.SetListener(nullptr);
  pools.Stop();
  service.Drop(t.name, false);
}

TEST_F(RecordsTest, UnknownPoolsAndBadRequests) {
  ClaimRequest req;
  req.pool = "no_such_pool";
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }), "not_found");
  req.pool = "Not-A-Name";
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }), "invalid_name");
  RecordPoolInfo pool = records_->Define(Spec("req"));
  req.pool = pool.spec.name;
  req.ttl = 0s;
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }), "invalid_argument");
  req.ttl = 60s;
  req.wait = 100000s;
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }), "invalid_argument");
  req.wait = 0s;
  req.lease_id = "nosuchlease";
  EXPECT_EQ(CodeOf([&] { records_->Claim(req); }), "not_found");
  records_->Drop(pool.spec.name);
  EXPECT_EQ(CodeOf([&] { records_->Get(pool.spec.name); }), "not_found");
  EXPECT_EQ(CodeOf([&] { records_->Drop(pool.spec.name); }), "not_found");
}

}  // namespace
}  // namespace testpool::records
