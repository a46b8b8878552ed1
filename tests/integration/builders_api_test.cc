// Builders over real HTTP, in front of a real BuildService on a real PostgreSQL, with the
// repository's recipes (templates/builders) against a template built from the repository's
// migrations and seed: rows built into a leased database pass the schema's CHECKs and keep their
// references; rows built into a shared database go again, by namespace or with their lease,
// leaving it exactly as it was.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/api_harness.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool::api {
namespace {

using nlohmann::json;

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// {"migrations":[…every migrations/*.sql, in order…],"seed":[templates/seed/app_seed.sql]}
json ShopTemplateBody() {
  const std::filesystem::path src = testing::SourceDir();
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(src / "migrations")) {
    if (e.path().extension() == ".sql") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  json migrations = json::array();
  for (const auto& f : files) migrations.push_back({{"name", f.filename().string()}, {"sql", ReadFile(f)}});
  const auto seed = src / "templates" / "seed" / "app_seed.sql";
  return {{"migrations", migrations},
          {"seed", {{{"name", seed.filename().string()}, {"sql", ReadFile(seed)}}}},
          {"pool", {{"min_ready", 1}, {"max", 4}}}};
}

// "{1,2,3}": keys as a bigint[] parameter.
std::string IdArray(const json& keys) {
  std::string out = "{";
  for (const auto& k : keys) {
    if (out.size() > 1) out += ',';  // (not `"," + …`: GCC 12 -O2 warns falsely, -Wrestrict)
    out += k.get<std::string>();
  }
  return out + "}";
}

class BuildersApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    api_ = new testing::InProcessApi(/*with_pools=*/true, /*max_databases=*/8);
    template_ = "shop_" + util::RandomToken(6);
    auto r = api_->Client().Put(("/v1/templates/" + template_).c_str(), ShopTemplateBody().dump(), "application/json");
    ASSERT_TRUE(r && (r->status == 201 || r->status == 200)) << (r ? r->body : "no answer");
    const std::string template_db = json::parse(r->body)["database"];
    // The shared database: a copy of the template, as a team's shared staging database would be.
    shared_db_ = "bshared_" + util::RandomToken(8);
    pg::Connection admin = pg::Connection::Open(testing::Admin("postgres"));
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(shared_db_) + " TEMPLATE " + admin.QuoteIdent(template_db));
  }
  static void TearDownTestSuite() {
    if (api_ != nullptr) api_->Client().Delete(("/v1/templates/" + template_).c_str());
    delete api_;
    pg::Connection admin = pg::Connection::Open(testing::Admin("postgres"));
    if (!shared_db_.empty()) admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(shared_db_) + " WITH (FORCE)");
  }

  static httplib::Client Client() { return api_->Client(); }
  static json Body(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }
  static std::string ErrorCodeOf(const httplib::Result& r) { return testing::InProcessApi::ErrorCodeOf(r); }
  static std::string MessageOf(const httplib::Result& r) {
    json b = Body(r);
    return b.is_object() && b.contains("error") ? b["error"].value("message", "") : "";
  }
  static std::string Fresh(const std::string& stem) { return stem + "_" + util::RandomToken(6); }
  static std::string SharedDsn() { return testing::Admin(shared_db_).ToKeywordString(); }
  static pg::Connection Shared() { return pg::Connection::Open(testing::Admin(shared_db_)); }

  // A lease of the shop template: {"id","database",…}.
  static json Lease() {
    auto r = Client().Post(("/v1/templates/" + template_ + "/leases").c_str(), R"({"wait_s": 60})", "application/json");
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    return r && r->status == 201 ? Body(r) : json::object();
  }
  static void Release(const json& lease) { Client().Delete(("/v1/leases/" + lease.value("id", "x")).c_str()); }
  static httplib::Result BuildInLease(const std::string& lease_id, const json& body) {
    return Client().Post(("/v1/leases/" + lease_id + "/build").c_str(), body.dump(), "application/json");
  }
  static httplib::Result BuildInDsn(const json& body) {
    return Client().Post("/v1/builds", body.dump(), "application/json");
  }

  // The shop's rows, every column, in a stable order: equal digests ⇔ equal contents.
  static std::string Digest(pg::Connection& db) {
    std::string out;
    for (const char* table : {"customers", "orders", "order_items", "payments", "products"}) {
      const std::string sql = "SELECT count(*) || ':' || coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '') FROM ";
      out += std::string(db.Exec(sql + table + " t").Get(0, 0)) + ";";
    }
    return out;
  }
  static int64_t Count(pg::Connection& db, const std::string& sql, std::vector<pg::Param> params = {}) {
    return std::stoll(std::string(db.Exec(sql, params).Get(0, 0)));
  }

  static testing::InProcessApi* api_;
  static std::string template_;
  static std::string shared_db_;
};

testing::InProcessApi* BuildersApiTest::api_ = nullptr;
std::string BuildersApiTest::template_;
std::string BuildersApiTest::shared_db_;

// ---- recipes -----------------------------------------------------------------------------------

TEST_F(BuildersApiTest, RecipesListsTheDemoShopsRecipes) {
  auto r = Client().Get("/v1/recipes");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json list = Body(r)["recipes"];
  std::map<std::string, json> by_name;
  for (const json& rec : list) by_name[rec["name"].get<std::string>()] = rec;
  for (const char* name : {"customer", "order", "payment", "card_payment", "product", "order_item"}) {
    ASSERT_TRUE(by_name.count(name)) << name << " in " << r->body;
  }
  EXPECT_EQ(by_name["customer"]["table"], "customers");
  EXPECT_EQ(by_name["customer"]["schema"], "public");
  EXPECT_EQ(by_name["customer"]["key"], "id");
  EXPECT_EQ(by_name["customer"]["refs"], json::array());
  const json fields = by_name["customer"]["fields"];
  for (const char* f : {"email", "full_name", "profile_type", "country", "postal_code", "phone"}) {
    EXPECT_NE(std::find(fields.begin(), fields.end(), f), fields.end()) << f;
  }
  EXPECT_EQ(by_name["order"]["refs"], json::parse(R"([{"column":"customer_id","recipe":"customer"}])"));
  EXPECT_EQ(by_name["payment"]["refs"], json::parse(R"([{"column":"order_id","recipe":"order"}])"));
  EXPECT_EQ(by_name["card_payment"]["table"], "payments");
  EXPECT_EQ(by_name["product"]["refs"], json::array());
  EXPECT_EQ(by_name["order_item"]["refs"], json::parse(R"([{"column":"order_id","recipe":"order"},
                                                           {"column":"product_id","recipe":"product"}])"));
}

// ---- into a leased database ----------------------------------------------------------------------

TEST_F(BuildersApiTest, BuildsIntoALeasedDatabaseRowsThatPassTheSchemasChecks) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  pg::Connection db = pg::Connection::Open(testing::Admin(lease["database"]));
  const int64_t seeded = Count(db, "SELECT count(*) FROM customers");

  auto r = BuildInLease(lease["id"], {{"recipe", "payment"}, {"count", 400}, {"seed", 42}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json b = Body(r);
  EXPECT_EQ(b["recipe"], "payment");
  EXPECT_EQ(b["count"], 400);
  EXPECT_EQ(b["seed"], 42);
  EXPECT_EQ(b["namespace"], lease["id"]) << "a lease build's namespace defaults to the lease id";
  EXPECT_EQ(b["truncated"], false);
  EXPECT_TRUE(b["ms"].is_number());
  for (const char* recipe : {"payment", "order", "customer"}) {
    ASSERT_EQ(b["keys"][recipe].size(), 400u) << recipe;
    EXPECT_EQ(b["counts"][recipe], 400) << recipe;
  }

  // Every row is there, and the references run payment → order → customer, one each.
  const std::string payments = IdArray(b["keys"]["payment"]), orders = IdArray(b["keys"]["order"]),
                    customers = IdArray(b["keys"]["customer"]);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM payments WHERE id = ANY($1::bigint[])", {payments}), 400);
  EXPECT_EQ(Count(db, "SELECT count(DISTINCT order_id) FROM payments WHERE id = ANY($1::bigint[]) "
                      "AND order_id = ANY($2::bigint[])", {payments, orders}), 400);
  EXPECT_EQ(Count(db, "SELECT count(DISTINCT customer_id) FROM orders WHERE id = ANY($1::bigint[]) "
                      "AND customer_id = ANY($2::bigint[])", {orders, customers}), 400);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM customers"), seeded + 400);

  // The CHECKs of 0006 held (the rows went in), and the values are what the recipes promise.
  EXPECT_EQ(Count(db, "SELECT count(*) FROM pg_constraint WHERE conname IN ('customers_postal_code_valid', "
                      "'customers_phone_e164', 'payments_iban_valid', 'payments_iban_country_matches')"), 4);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM customers WHERE id = ANY($1::bigint[]) AND postal_code_valid(country, "
                      "postal_code) AND e164_valid(phone) AND email LIKE '%' || $2 || '%'",
                  {customers, lease["id"].get<std::string>()}), 400);
  EXPECT_EQ(Count(db, "SELECT count(DISTINCT country) FROM customers WHERE id = ANY($1::bigint[])", {customers}), 8)
      << "every supported country came up";
  EXPECT_EQ(Count(db, "SELECT count(*) FROM payments WHERE id = ANY($1::bigint[]) AND method = 'iban' "
                      "AND iban_valid(iban) AND iban_country = left(iban, 2) AND card_last4 IS NULL",
                  {payments}), 400);
  Release(lease);
}

TEST_F(BuildersApiTest, CardPaymentsCarryTheLastFourDigitsOfTheirCardNumber) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  pg::Connection db = pg::Connection::Open(testing::Admin(lease["database"]));
  auto r = BuildInLease(lease["id"], {{"recipe", "card_payment"}, {"count", 500}, {"seed", 3}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const std::string payments = IdArray(Body(r)["keys"]["card_payment"]);
  // The rows went in past 0006's CHECKs; and they are card rows through and through.
  EXPECT_EQ(Count(db,
                  "SELECT count(*) FROM pg_constraint WHERE conname IN ('payments_card_luhn', "
                  "'payments_card_last4_matches', 'payments_method_details')"),
            3);
  EXPECT_EQ(Count(db,
                  "SELECT count(*) FROM payments WHERE id = ANY($1::bigint[]) AND method = 'card' "
                  "AND luhn_valid(card_number) AND card_last4 = right(card_number, 4) AND iban IS NULL "
                  "AND iban_country IS NULL",
                  {payments}),
            500);
  EXPECT_GE(
      Count(db, "SELECT count(DISTINCT left(card_number, 1)) FROM payments WHERE id = ANY($1::bigint[])", {payments}),
      3)
      << "several brands";

  // An overridden card number is the one card_last4 is derived from.
  auto fixed = BuildInLease(
      lease["id"], {{"recipe", "card_payment"}, {"count", 3}, {"overrides", {{"card_number", "5555555555554444"}}}});
  ASSERT_EQ(fixed->status, 201) << fixed->body;
  EXPECT_EQ(Count(db,
                  "SELECT count(*) FROM payments WHERE id = ANY($1::bigint[]) AND card_number = "
                  "'5555555555554444' AND card_last4 = '4444'",
                  {IdArray(Body(fixed)["keys"]["card_payment"])}),
            3);
  Release(lease);
}

TEST_F(BuildersApiTest, OrderItemsTakeTheirQuantityFromAFreshProduct) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  pg::Connection db = pg::Connection::Open(testing::Admin(lease["database"]));
  auto r = BuildInLease(lease["id"], {{"recipe", "order_item"}, {"count", 200}, {"seed", 11}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json b = Body(r);
  for (const char* recipe : {"order_item", "order", "customer", "product"})
    EXPECT_EQ(b["counts"][recipe], 200) << recipe;
  const std::string items = IdArray(b["keys"]["order_item"]);
  // The trigger took each item's quantity from its own product, whose stock started in [10, 500].
  EXPECT_EQ(Count(db,
                  "SELECT count(*) FROM order_items i JOIN products p ON p.id = i.product_id WHERE i.id = "
                  "ANY($1::bigint[]) AND p.stock + i.quantity BETWEEN 10 AND 500 AND p.sku ~ '^[A-Z]{3}-[0-9]{8}$'",
                  {items}),
            200);
  Release(lease);
}

TEST_F(BuildersApiTest, ProductsBuiltByParallelWorkersHaveDistinctSkusOfTheShopsFormat) {
  pg::Connection db = Shared();
  const std::string before = Digest(db);
  constexpr int kWorkers = 4, kEach = 2000;
  std::vector<std::string> namespaces, errors(kWorkers);
  // Fixed names (the shared database is new in every run): whether two of them share a SKU slot
  // is decided once and for all, not by chance in some run.
  for (int w = 0; w < kWorkers; ++w) namespaces.push_back("sku-worker" + std::to_string(w));
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w) {
    workers.emplace_back([&, w] {
      // The same seed everywhere: only the namespaces keep the SKUs apart.
      auto r = BuildInDsn(
          {{"dsn", SharedDsn()}, {"namespace", namespaces[w]}, {"recipe", "product"}, {"count", kEach}, {"seed", 5}});
      if (!r || r->status != 201) errors[w] = r ? r->body : "no answer";
    });
  }
  for (auto& t : workers) t.join();
  for (const std::string& e : errors) EXPECT_EQ(e, "");
  const std::string built =
      "(SELECT key::bigint FROM testpool.created WHERE table_name = 'products' AND ns = ANY($1::text[]))";
  std::string ns_array = "{";
  for (const std::string& ns : namespaces) {
    if (ns_array.size() > 1) ns_array += ',';
    ns_array += ns;
  }
  ns_array += "}";
  EXPECT_EQ(Count(db, "SELECT count(DISTINCT sku) FROM products WHERE id IN " + built, {ns_array}), kWorkers * kEach);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM products WHERE id IN " + built + " AND sku ~ '^[A-Z]{3}-[0-9]{4,8}$'",
                  {ns_array}),
            kWorkers * kEach);
  // One namespace, one slot: its SKUs share their first seven characters and end in 00000…01999.
  EXPECT_EQ(Count(db, "SELECT count(DISTINCT left(sku, 7)) FROM products WHERE id IN " + built, {ns_array}), kWorkers);
  EXPECT_EQ(Count(db, "SELECT max(right(sku, 5)::int) FROM products WHERE id IN " + built, {ns_array}), kEach - 1);
  for (const std::string& ns : namespaces) {
    auto dropped = Client().Delete(("/v1/namespaces/" + ns).c_str());
    ASSERT_TRUE(dropped);
    EXPECT_EQ(dropped->status, 200) << dropped->body;
  }
  EXPECT_EQ(Digest(db), before);
}

TEST_F(BuildersApiTest, ManyCustomersInEveryCountryPassTheirPostalAndPhoneChecks) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  auto r = BuildInLease(lease["id"], {{"recipe", "customer"}, {"count", 20000}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json b = Body(r);
  EXPECT_GT(b["seed"].get<uint64_t>(), 0u) << "a random seed was picked and reported";
  EXPECT_EQ(b["counts"]["customer"], 20000);
  EXPECT_EQ(b["truncated"], true) << "more than 10000 keys: only the first 100 of each recipe";
  EXPECT_EQ(b["keys"]["customer"].size(), 100u);
  pg::Connection db = pg::Connection::Open(testing::Admin(lease["database"]));
  EXPECT_EQ(Count(db, "SELECT count(*) FROM customers WHERE email LIKE '%' || $1 || '%'",
                  {lease["id"].get<std::string>()}), 20000);
  Release(lease);
}

TEST_F(BuildersApiTest, OverridesGoOnEveryRowAndAGivenRefBuildsNoReferencedRow) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  pg::Connection db = pg::Connection::Open(testing::Admin(lease["database"]));
  auto r = BuildInLease(lease["id"], {{"recipe", "order"}, {"count", 5}, {"overrides", {{"status", "paid"}}}});
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(Count(db, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[]) AND status = 'paid'",
                  {IdArray(Body(r)["keys"]["order"])}), 5);

  const std::string ada(db.Exec("SELECT id::text FROM customers WHERE email = 'ada.lovelace@example.test'").Get(0, 0));
  const int64_t customers = Count(db, "SELECT count(*) FROM customers");
  auto given = BuildInLease(lease["id"], {{"recipe", "order"}, {"count", 3},
                                          {"overrides", {{"customer_id", std::stoll(ada)}, {"status", "shipped"}}}});
  ASSERT_EQ(given->status, 201) << given->body;
  EXPECT_FALSE(Body(given)["keys"].contains("customer")) << given->body;
  EXPECT_EQ(Count(db, "SELECT count(*) FROM customers"), customers);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[]) AND customer_id = $2",
                  {IdArray(Body(given)["keys"]["order"]), ada}), 3);

  // A value the schema refuses: 400 naming the seed to replay, and nothing kept.
  const int64_t orders = Count(db, "SELECT count(*) FROM orders");
  auto refused = BuildInLease(lease["id"], {{"recipe", "order"}, {"count", 2}, {"seed", 7},
                                            {"overrides", {{"status", "lost"}}}});
  ASSERT_EQ(refused->status, 400) << refused->body;
  EXPECT_EQ(ErrorCodeOf(refused), "invalid_argument");
  EXPECT_NE(MessageOf(refused).find("seed 7"), std::string::npos) << MessageOf(refused);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM orders"), orders);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM customers"), customers);

  auto no_column = BuildInLease(lease["id"], {{"recipe", "order"}, {"overrides", {{"colour", "red"}}}});
  EXPECT_EQ(no_column->status, 400) << no_column->body;
  EXPECT_NE(MessageOf(no_column).find("colour"), std::string::npos) << MessageOf(no_column);
  Release(lease);

  auto ended = BuildInLease(lease["id"], {{"recipe", "order"}});
  EXPECT_EQ(ended->status, 410) << ended->body;
  EXPECT_EQ(ErrorCodeOf(ended), "lease_expired");
}

// ---- into a shared database ----------------------------------------------------------------------

TEST_F(BuildersApiTest, DroppingANamespaceLeavesTheSharedDatabaseExactlyAsItWas) {
  pg::Connection db = Shared();
  const std::string before = Digest(db);
  const std::string ns = Fresh("team");
  auto r = BuildInDsn({{"dsn", SharedDsn()}, {"namespace", ns}, {"recipe", "payment"}, {"count", 50}, {"seed", 9}});
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json b = Body(r);
  EXPECT_EQ(b["namespace"], ns);
  EXPECT_EQ(b["seed"], 9);
  EXPECT_FALSE(b.contains("lease"));
  const std::string payments = IdArray(b["keys"]["payment"]);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM payments WHERE id = ANY($1::bigint[])", {payments}), 50);
  EXPECT_NE(Digest(db), before);
  // A second build under the same namespace adds fresh rows (unique values continue).
  auto again = BuildInDsn({{"dsn", SharedDsn()}, {"namespace", ns}, {"recipe", "customer"}, {"count", 10}});
  ASSERT_EQ(again->status, 201) << again->body;

  auto dropped = Client().Delete(("/v1/namespaces/" + ns).c_str());
  ASSERT_TRUE(dropped);
  ASSERT_EQ(dropped->status, 200) << dropped->body;
  EXPECT_EQ(Body(dropped), json({{"namespace", ns}, {"deleted", 160}}));
  EXPECT_EQ(Digest(db), before) << "every built row went, and nothing else";
  EXPECT_EQ(Count(db, "SELECT count(*) FROM testpool.created WHERE ns = $1", {ns}), 0);

  auto twice = Client().Delete(("/v1/namespaces/" + ns).c_str());
  EXPECT_EQ(twice->status, 404) << twice->body;
  EXPECT_EQ(ErrorCodeOf(twice), "not_found");
}

TEST_F(BuildersApiTest, RowsBuiltInASharedDatabaseUnderALeaseGoWhenTheLeaseIsReleased) {
  pg::Connection db = Shared();
  const std::string before = Digest(db);
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  const std::string ns = Fresh("worker");
  auto r = BuildInDsn({{"dsn", SharedDsn()}, {"namespace", ns}, {"lease", lease["id"]}, {"recipe", "order"},
                       {"count", 20}});
  ASSERT_EQ(r->status, 201) << r->body;
  EXPECT_EQ(Body(r)["lease"], lease["id"]);
  const std::string orders = IdArray(Body(r)["keys"]["order"]);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", {orders}), 20);

  ASSERT_EQ(Client().Delete(("/v1/leases/" + lease["id"].get<std::string>()).c_str())->status, 204);
  EXPECT_EQ(Count(db, "SELECT count(*) FROM orders WHERE id = ANY($1::bigint[])", {orders}), 0);
  EXPECT_EQ(Digest(db), before);

  auto ended = BuildInDsn({{"dsn", SharedDsn()}, {"namespace", ns}, {"lease", lease["id"]}, {"recipe", "order"}});
  EXPECT_EQ(ended->status, 410) << ended->body;
  EXPECT_EQ(Digest(db), before);
  Client().Delete(("/v1/namespaces/" + ns).c_str());
}

// ---- refusals ------------------------------------------------------------------------------------

// A DSN whose role may not create schema testpool (a lease's own DSN: CONNECT and TEMP only), or
// that does not log in: 400 naming what was refused, not 500; and no record of the namespace is
// left (DELETE /v1/namespaces/{ns} knows nothing of it).
TEST_F(BuildersApiTest, ATargetThatRefusesTheBuildIsA400AndLeavesNoNamespace) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("dsn"));
  const std::string ns = Fresh("refused");
  auto r = BuildInDsn({{"dsn", lease["dsn"]}, {"namespace", ns}, {"recipe", "customer"}});
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
  EXPECT_NE(MessageOf(r).find("schema testpool"), std::string::npos) << r->body;
  EXPECT_NE(MessageOf(r).find("/v1/leases/{id}/build"), std::string::npos) << r->body;
  EXPECT_EQ(Client().Delete(("/v1/namespaces/" + ns).c_str())->status, 404);

  pg::ConnInfo wrong = pg::ConnInfo::Parse(lease["dsn"].get<std::string>());
  wrong.Set("password", "not-the-password");
  auto login = BuildInDsn({{"dsn", wrong.ToKeywordString()}, {"namespace", ns}, {"recipe", "customer"}});
  EXPECT_EQ(login->status, 400) << login->body;
  EXPECT_NE(MessageOf(login).find("login"), std::string::npos) << login->body;
  EXPECT_EQ(Client().Delete(("/v1/namespaces/" + ns).c_str())->status, 404);
  Release(lease);
}

TEST_F(BuildersApiTest, MalformedBuildBodiesAre400NamingTheField) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  const std::string dsn = SharedDsn();
  struct Case {
    std::string body, mentions;
  } lease_cases[] = {
      {"{\"recipe\": ", "not valid JSON"},
      {"", "not valid JSON"},
      {"[]", "JSON object"},
      {json::object().dump(), "missing field 'recipe'"},
      {json{{"recipe", 1}}.dump(), "recipe must be a string"},
      {json{{"recipe", "order"}, {"count", 0}}.dump(), "count must be an integer from 1 to 1000000"},
      {json{{"recipe", "order"}, {"count", -3}}.dump(), "count"},
      {json{{"recipe", "order"}, {"count", 1000001}}.dump(), "count"},
      {json{{"recipe", "order"}, {"count", 2.5}}.dump(), "count"},
      {json{{"recipe", "order"}, {"count", "10"}}.dump(), "count"},
      {json{{"recipe", "order"}, {"seed", -1}}.dump(), "seed must be a non-negative integer"},
      {json{{"recipe", "order"}, {"seed", 1.5}}.dump(), "seed"},
      {json{{"recipe", "order"}, {"seed", "42"}}.dump(), "seed"},
      {json{{"recipe", "order"}, {"overrides", "status=paid"}}.dump(), "overrides must be an object"},
      {json{{"recipe", "order"}, {"overrides", {{"status", nullptr}}}}.dump(), "overrides.status"},
      {json{{"recipe", "order"}, {"overrides", {{"status", json::array()}}}}.dump(), "overrides.status"},
      {json{{"recipe", "order"}, {"namespace", "Has Spaces"}}.dump(), "namespace"},
      {json{{"recipe", "order"}, {"namespace", 5}}.dump(), "namespace must be a string"},
      {json{{"recipe", "order"}, {"dsn", dsn}}.dump(), "unknown field 'dsn'"},
      {json{{"recipe", "order"}, {"cuont", 5}}.dump(), "unknown field 'cuont'"},
  };
  for (const auto& c : lease_cases) {
    auto r = Client().Post(("/v1/leases/" + lease["id"].get<std::string>() + "/build").c_str(), c.body,
                           "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << c.body;
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << c.body << " → " << MessageOf(r);
  }
  Case dsn_cases[] = {
      {json{{"namespace", "ns"}, {"recipe", "order"}}.dump(), "missing field 'dsn'"},
      {json{{"dsn", dsn}, {"recipe", "order"}}.dump(), "missing field 'namespace'"},
      {json{{"dsn", dsn}, {"namespace", "ns"}}.dump(), "missing field 'recipe'"},
      {json{{"dsn", 7}, {"namespace", "ns"}, {"recipe", "order"}}.dump(), "dsn must be a string"},
      {json{{"dsn", dsn}, {"namespace", "ns"}, {"recipe", "order"}, {"lease", 3}}.dump(), "lease must be a string"},
      {json{{"dsn", dsn}, {"namespace", std::string(41, 'a')}, {"recipe", "order"}}.dump(), "namespace"},
      {json{{"dsn", dsn}, {"namespace", "ns"}, {"recipe", "order"}, {"count", 0}}.dump(), "count"},
      {json{{"dsn", dsn}, {"namespace", "ns"}, {"recipe", "order"}, {"extra", true}}.dump(), "unknown field 'extra'"},
  };
  pg::Connection db = Shared();
  const std::string before = Digest(db);
  for (const auto& c : dsn_cases) {
    auto r = Client().Post("/v1/builds", c.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << c.body;
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << c.body << " → " << MessageOf(r);
  }
  EXPECT_EQ(Digest(db), before);
  Release(lease);
}

TEST_F(BuildersApiTest, UnknownRecipeLeaseOrNamespaceIs404) {
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  std::vector<std::pair<std::string, httplib::Result>> answers;
  const std::string ns = Fresh("never");
  answers.emplace_back("recipe in lease", BuildInLease(lease["id"], {{"recipe", "refund"}}));
  answers.emplace_back("recipe in dsn",
                       BuildInDsn({{"dsn", SharedDsn()}, {"namespace", ns}, {"recipe", "no_such_recipe"}}));
  answers.emplace_back("lease", BuildInLease(util::RandomToken(26), {{"recipe", "order"}}));
  answers.emplace_back("bad lease id", BuildInLease("NOT-A-LEASE", {{"recipe", "order"}}));
  answers.emplace_back("dsn lease", BuildInDsn({{"dsn", SharedDsn()}, {"namespace", ns}, {"recipe", "order"},
                                                {"lease", util::RandomToken(26)}}));
  answers.emplace_back("namespace", Client().Delete(("/v1/namespaces/" + ns).c_str()));
  answers.emplace_back("bad namespace", Client().Delete("/v1/namespaces/NOT%20ONE"));
  for (auto& [what, r] : answers) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, 404) << what << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "not_found") << what;
  }
  EXPECT_NE(MessageOf(answers[0].second).find("refund"), std::string::npos) << MessageOf(answers[0].second);
  Release(lease);
}

// ---- the CLI against the same API ----------------------------------------------------------------

TEST_F(BuildersApiTest, CliBuildsListsRecipesAndDropsNamespaces) {
  const std::map<std::string, std::string> env = {{"TESTPOOL_URL", "http://127.0.0.1:" + std::to_string(api_->port())}};
  const json lease = Lease();
  ASSERT_TRUE(lease.contains("id"));
  auto built = testing::RunCli({"build", "order", "--lease", lease["id"], "--count", "3", "--seed", "77", "--set",
                                "status=cancelled"}, env);
  ASSERT_EQ(built.exit_code, 0) << built.err;
  EXPECT_NE(built.out.find("seed      77"), std::string::npos) << built.out;
  EXPECT_NE(built.out.find("namespace " + lease["id"].get<std::string>()), std::string::npos) << built.out;
  EXPECT_NE(built.out.find("customer"), std::string::npos) << built.out;
  EXPECT_NE(built.out.find("3 rows"), std::string::npos) << built.out;

  const std::string ns = Fresh("cli");
  auto shared = testing::RunCli({"build", "customer", "--dsn", SharedDsn(), "--namespace", ns, "--json"}, env);
  ASSERT_EQ(shared.exit_code, 0) << shared.err;
  EXPECT_EQ(json::parse(shared.out, nullptr, false)["counts"]["customer"], 1) << shared.out;
  auto dropped = testing::RunCli({"namespace", "drop", ns}, env);
  ASSERT_EQ(dropped.exit_code, 0) << dropped.err;
  EXPECT_NE(dropped.out.find("1 rows deleted"), std::string::npos) << dropped.out;
  EXPECT_EQ(testing::RunCli({"namespace", "drop", ns}, env).exit_code, 1) << "already dropped";

  auto recipes = testing::RunCli({"recipes"}, env);
  ASSERT_EQ(recipes.exit_code, 0) << recipes.err;
  EXPECT_NE(recipes.out.find("public.payments"), std::string::npos) << recipes.out;

  EXPECT_EQ(testing::RunCli({"build", "order"}, env).exit_code, 2) << "no target";
  EXPECT_EQ(testing::RunCli({"build", "order", "--dsn", SharedDsn()}, env).exit_code, 2) << "no namespace";
  EXPECT_EQ(testing::RunCli({"build", "order", "--lease", lease["id"], "--seed", "-1"}, env).exit_code, 2);
  EXPECT_EQ(testing::RunCli({"build", "nope", "--lease", lease["id"]}, env).exit_code, 1);
  EXPECT_EQ(testing::RunCli({"recipes"}, {{"TESTPOOL_URL", "http://127.0.0.1:" + std::to_string(testing::FreePort())}})
                .exit_code, 3);
  Release(lease);
}

TEST_F(BuildersApiTest, ServeRefusesABadRecipeBeforeStartingAnything) {
  testing::TempDir dir("testpool-recipes");
  std::ofstream(dir.path() / "bad.json") << R"({"name": "bad", "table": "t", "key": "id",
                                                "fields": [{"name": "x", "gen": "no_such_generator"}]})";
  auto r = testing::RunCli({"serve", "--recipes", dir.path().string(), "--backend", "external", "--dsn",
                            "host=/nonexistent dbname=x", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find(dir.path().string()), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no_such_generator"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace testpool::api
