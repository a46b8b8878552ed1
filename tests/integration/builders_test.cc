// Builders against a real PostgreSQL: references resolved in dependency order, rows that pass the
// schema's own checks, two workers building 10,000 customers each at once without a collision,
// a refused row leaving nothing behind, replay by seed, and clean-up to exactly what was there.
#include "orchestrator/builders/builders.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/code_of.h"
#include "tests/support/test_server.h"

namespace testpool::builders {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

using testing::CodeOf;
using core::ControlStore;
using core::PoolManager;
using core::PoolOptions;

const json kCustomer = json::parse(R"({
  "name": "customer", "table": "customers", "key": "id",
  "fields": [
    {"name": "email", "gen": "email"},
    {"name": "full_name", "gen": "full_name"},
    {"name": "country", "gen": "country", "countries": ["DE", "FR", "GB", "NL"]},
    {"name": "postal_code", "gen": "postal_code", "country_field": "country"}
  ]})");
const json kOrder = json::parse(R"({
  "name": "order", "table": "orders", "key": "id",
  "fields": [{"name": "status", "gen": "choice", "values": ["pending", "paid"]},
             {"name": "card", "gen": "card_number"}],
  "refs": [{"column": "customer_id", "recipe": "customer"}]})");
// A recipe the schema refuses: a country outside the CHECK.
const json kBadCustomer = json::parse(R"({
  "name": "bad_customer", "table": "customers", "key": "id",
  "fields": [{"name": "email", "gen": "email"}, {"name": "full_name", "gen": "full_name"},
             {"name": "country", "gen": "const", "value": "US"}, {"name": "postal_code", "gen": "const", "value": "10001"}]})");

class BuildersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    db_ = new std::string("tp_builders_" + util::RandomToken(6));
    pg::Connection admin = pg::Connection::Open(testing::Admin());
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(*db_));
    pg::Connection c = pg::Connection::Open(testing::Admin(*db_));
    c.Exec(
        "CREATE TABLE customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, email text NOT NULL UNIQUE, "
        "  full_name text NOT NULL, country char(2) NOT NULL CHECK (country IN ('DE', 'FR', 'GB', 'NL')), "
        "  postal_code text NOT NULL);"
        "CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "  customer_id bigint NOT NULL REFERENCES customers (id), status text NOT NULL, "
        "  card text NOT NULL CHECK (card ~ '^[0-9]{15,16}$'));"
        "INSERT INTO customers (email, full_name, country, postal_code) "
        "  VALUES ('existing@example.test', 'Existing Customer', 'DE', '10115');");
  }
  static void TearDownTestSuite() {
    pg::Connection admin = pg::Connection::Open(testing::Admin());
    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(*db_) + " WITH (FORCE)");
    delete db_;
  }

  void SetUp() override {
    book_ = std::make_unique<RecipeBook>(RecipeBook::FromJson({kCustomer, kOrder, kBadCustomer}));
    builders_ = std::make_unique<Builders>(*book_);
  }

  static pg::ConnInfo Target() { return testing::Admin(*db_); }
  static std::string Digest() {
    pg::Connection c = pg::Connection::Open(Target());
    return std::string(c.Exec("SELECT (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM customers t) || "
                              "coalesce((SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM orders t), '')")
                           .Get(0, 0));
  }
  static std::string Scalar(const std::string& sql) {
    pg::Connection c = pg::Connection::Open(Target());
    return std::string(c.Exec(sql).Get(0, 0));
  }

  static std::string* db_;
  std::unique_ptr<RecipeBook> book_;
  std::unique_ptr<Builders> builders_;
};

std::string* BuildersTest::db_;

TEST_F(BuildersTest, RecipesAreCheckedWhenLoaded) {
  std::string why;
  EXPECT_EQ(CodeOf([&] { RecipeBook::FromJson({kOrder}); }, &why), "invalid_argument");
  EXPECT_THAT(why, HasSubstr("customer"));  // refers to a recipe nobody defines
  json cyclic_a = kCustomer, cyclic_b = kOrder;
  cyclic_a["refs"] = json::array({{{"column", "x"}, {"recipe", "order"}}});
  EXPECT_EQ(CodeOf([&] { RecipeBook::FromJson({cyclic_a, cyclic_b}); }, &why), "invalid_argument");
  EXPECT_THAT(why, HasSubstr("cycle"));
  json unknown_gen = kCustomer;
  unknown_gen["fields"][0]["gen"] = "nope";
  EXPECT_EQ(CodeOf([&] { RecipeBook::FromJson({unknown_gen}); }, &why), "invalid_argument");
  EXPECT_EQ(CodeOf([&] { RecipeBook::FromJson({kCustomer, kCustomer}); }, &why), "invalid_argument");
  json derived_too_early = kOrder;  // a derived field before the field it reads
  derived_too_early["fields"].insert(derived_too_early["fields"].begin(),
                                     json::parse(R"({"name": "last4", "gen": "derive", "field": "card", "last": 4})"));
  EXPECT_EQ(CodeOf([&] { RecipeBook::FromJson({kCustomer, derived_too_early}); }, &why), "invalid_argument");
  EXPECT_THAT(why, HasSubstr("recipe #2: field 'last4': derives from 'card', which is declared after it"));
  EXPECT_THAT(book_->DependencyOrder("order"), ::testing::ElementsAre("customer", "order"));
  EXPECT_EQ(CodeOf([&] { book_->Get("nope"); }), "not_found");
}

TEST_F(BuildersTest, OrdersComeWithTheirCustomersAndCleanUpLeavesNoOrphans) {
  const std::string before = Digest();
  BuildRequest req;
  req.recipe = "order";
  req.count = 100;
  req.ns = "w1";
  req.seed = 42;
  BuildResult r = builders_->Build(Target(), req);
  ASSERT_EQ(r.keys["order"].size(), 100u);
  ASSERT_EQ(r.keys["customer"].size(), 100u);
  EXPECT_EQ(Scalar("SELECT count(*) FROM orders o LEFT JOIN customers c ON c.id = o.customer_id WHERE c.id IS NULL"), "0");
  EXPECT_EQ(Scalar("SELECT count(*) FROM customers WHERE email LIKE '%.w1.%@%'"), "100") << "the namespace is in the email";
  EXPECT_EQ(builders_->DropNamespace(Target(), "w1"), 200);
  EXPECT_EQ(Digest(), before) << "the database holds exactly what it held before";
  EXPECT_EQ(builders_->DropNamespace(Target(), "w1"), 0) << "idempotent";
}

TEST_F(BuildersTest, OverridesSupplyAReferenceInsteadOfBuildingOne) {
  const std::string existing = Scalar("SELECT id FROM customers WHERE email = 'existing@example.test'");
  BuildRequest req;
  req.recipe = "order";
  req.count = 5;
  req.ns = "w2";
  req.overrides = {{"customer_id", existing}, {"status", "paid"}};
  BuildResult r = builders_->Build(Target(), req);
  EXPECT_EQ(r.keys.count("customer"), 0u);
  EXPECT_EQ(Scalar("SELECT count(*) FROM orders WHERE customer_id = " + existing + " AND status = 'paid'"), "5");
  std::string why;
  req.overrides = {{"no_such_column", "1"}};
  EXPECT_EQ(CodeOf([&] { builders_->Build(Target(), req); }, &why), "invalid_argument");
  builders_->DropNamespace(Target(), "w2");
}

TEST_F(BuildersTest, TwoWorkersBuildTenThousandCustomersEachWithoutACollision) {
  const std::string before = Digest();
  std::string errors[2];
  std::thread workers[2];
  for (int w = 0; w < 2; ++w) {
    workers[w] = std::thread([&, w] {
      BuildRequest req;
      req.recipe = "customer";
      req.count = 10000;
      req.ns = "worker" + std::to_string(w);
      req.seed = 7;  // the same seed on purpose: only the namespace keeps them apart
      try {
        builders_->Build(Target(), req);
      } catch (const std::exception& e) {
        errors[w] = e.what();
      }
    });
  }
  for (auto& t : workers) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  EXPECT_EQ(Scalar("SELECT count(*) FROM customers"), "20001");
  EXPECT_EQ(Scalar("SELECT count(DISTINCT email) FROM customers"), "20001");
  // The schema's own checks held (a builder's invalid row would have failed the build): every
  // postal code has its country's shape.
  EXPECT_EQ(Scalar("SELECT count(*) FROM customers WHERE NOT ("
                   "(country = 'DE' AND postal_code ~ '^[0-9]{5}$') OR (country = 'FR' AND postal_code ~ '^[0-9]{5}$') OR "
                   "(country = 'NL' AND postal_code ~ '^[1-9][0-9]{3} [A-Z]{2}$') OR "
                   "(country = 'GB' AND postal_code ~ '^[A-Z]{1,2}[0-9][A-Z0-9]? [0-9][A-Z]{2}$'))"),
            "0");
  builders_->DropNamespace(Target(), "worker0");
  builders_->DropNamespace(Target(), "worker1");
  EXPECT_EQ(Digest(), before);
}

TEST_F(BuildersTest, ARefusedRowLeavesNothingAndNamesTheSeed) {
  const std::string before = Digest();
  BuildRequest req;
  req.recipe = "bad_customer";
  req.count = 10;
  req.ns = "w3";
  req.seed = 1234;
  std::string why;
  EXPECT_EQ(CodeOf([&] { builders_->Build(Target(), req); }, &why), "invalid_argument");
  EXPECT_THAT(why, HasSubstr("seed 1234"));
  EXPECT_THAT(why, HasSubstr("bad_customer"));
  EXPECT_EQ(Digest(), before);
  EXPECT_EQ(Scalar("SELECT count(*) FROM testpool.created WHERE ns = 'w3'"), "0");
}

TEST_F(BuildersTest, TheSameSeedReplaysTheSameValues) {
  BuildRequest req;
  req.recipe = "customer";
  req.count = 20;
  req.ns = "w4";
  req.seed = 99;
  builders_->Build(Target(), req);
  const std::string first = Scalar(
      "SELECT string_agg(email || country || postal_code, ',' ORDER BY id) FROM customers WHERE email LIKE '%.w4.%'");
  builders_->DropNamespace(Target(), "w4");
  builders_->Build(Target(), req);
  EXPECT_EQ(Scalar("SELECT string_agg(email || country || postal_code, ',' ORDER BY id) FROM customers WHERE email "
                   "LIKE '%.w4.%'"),
            first);
  builders_->DropNamespace(Target(), "w4");
  req.ns = "Not Valid";
  EXPECT_EQ(CodeOf([&] { builders_->Build(Target(), req); }), "invalid_argument");
  req.ns = "w4";
  req.count = 0;
  EXPECT_EQ(CodeOf([&] { builders_->Build(Target(), req); }), "invalid_argument");
}

// The daemon's service: a namespace used in a shared database is remembered, so dropping it finds
// the rows again; an unknown namespace is 404.
TEST_F(BuildersTest, TheServiceRemembersWhereANamespaceWrote) {
  const std::string before = Digest();
  auto store = ControlStore::Open(testing::Server().AdminConnInfo());
  PoolManager leases(*store, testing::Server(), util::RealClock(), PoolOptions{});
  BuildService service(*store, leases, *book_);
  BuildRequest req;
  req.recipe = "order";
  req.count = 3;
  EXPECT_EQ(CodeOf([&] { service.BuildInDsn(Target().ToUri(), req); }), "invalid_argument") << "a namespace is required";
  req.ns = "svc_" + util::RandomToken(4);
  service.BuildInDsn(Target().ToUri(), req);
  EXPECT_NE(Digest(), before);
  EXPECT_EQ(service.DropNamespace(req.ns), 6);
  EXPECT_EQ(Digest(), before);
  EXPECT_EQ(CodeOf([&] { service.DropNamespace(req.ns); }), "not_found");
  req.lease_id = "nosuchlease";
  EXPECT_EQ(CodeOf([&] { service.BuildInDsn(Target().ToUri(), req); }), "not_found");
  EXPECT_EQ(CodeOf([&] { service.BuildInLease("nosuchlease", req); }), "not_found");
}

}  // namespace
}  // namespace testpool::builders
