// Record pools and claims over real HTTP, in front of real RecordPools on a real PostgreSQL: the
// target is a scratch database of this test's own (and, for the lease cases, a leased database).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <future>
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

// users: 10 rows; ids 1-3 are premium (1 and 3 active), 4-10 basic. `notes` has no unique column;
// `x` is what the injection attempts aim at.
constexpr const char* kTargetSql = R"sql(
CREATE TABLE users (id int PRIMARY KEY, email text UNIQUE NOT NULL, tier text NOT NULL, active boolean NOT NULL,
                    score numeric NOT NULL DEFAULT 0);
INSERT INTO users SELECT g, 'u' || g || '@example.com', CASE WHEN g <= 3 THEN 'premium' ELSE 'basic' END,
                         g % 2 = 1, g * 1.5
                  FROM generate_series(1, 10) g;
CREATE TABLE notes (id int, body text);
INSERT INTO notes VALUES (1, 'a'), (1, 'b');
CREATE TABLE x (id int);
INSERT INTO x VALUES (42);
CREATE VIEW premium_users AS SELECT * FROM users WHERE tier = 'premium';
)sql";

class ClaimsApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    target_db_ = "claims_" + util::RandomToken(8);
    {
      pg::Connection admin = pg::Connection::Open(testing::Admin("postgres"));
      admin.Exec("CREATE DATABASE " + admin.QuoteIdent(target_db_));
    }
    pg::Connection db = pg::Connection::Open(testing::Admin(target_db_));
    db.Exec(kTargetSql);
    api_ = new testing::InProcessApi(/*with_pools=*/true, /*max_databases=*/6);
  }
  static void TearDownTestSuite() {
    delete api_;
    pg::Connection admin = pg::Connection::Open(testing::Admin("postgres"));
    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(target_db_) + " WITH (FORCE)");
  }

  static httplib::Client Client() { return api_->Client(); }
  static json Body(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }
  static std::string ErrorCodeOf(const httplib::Result& r) { return testing::InProcessApi::ErrorCodeOf(r); }
  static std::string MessageOf(const httplib::Result& r) {
    json b = Body(r);
    return b.is_object() && b.contains("error") ? b["error"].value("message", "") : "";
  }
  static std::string Fresh(const std::string& stem) { return stem + "_" + util::RandomToken(6); }
  static std::string TargetDsn() { return testing::Admin(target_db_).ToKeywordString(); }
  static pg::Connection Target() { return pg::Connection::Open(testing::Admin(target_db_)); }

  static httplib::Result PutPool(const std::string& name, const json& body) {
    return Client().Put(("/v1/record-pools/" + name).c_str(), body.dump(), "application/json");
  }
  static httplib::Result PostClaim(const std::string& pool, const json& body) {
    return Client().Post(("/v1/record-pools/" + pool + "/claims").c_str(), body.dump(), "application/json");
  }
  static httplib::Result Release(const std::string& id) { return Client().Delete(("/v1/claims/" + id).c_str()); }
  static httplib::Result Renew(const std::string& id, int ttl_s) {
    return Client().Post(("/v1/claims/" + id + "/renew").c_str(), json{{"ttl_s", ttl_s}}.dump(), "application/json");
  }

  // Claims the daemon has waiting for a row of `pool` (-1 when it cannot say).
  static int Waiting(const std::string& pool) {
    auto r = Client().Get(("/v1/record-pools/" + pool).c_str());
    json b = r && r->status == 200 ? Body(r) : json();
    return b.is_object() && b["waiting"].is_number_integer() ? b["waiting"].get<int>() : -1;
  }
  // Polls until `pool` has `count` claims waiting (bounded); false if it never does.
  static bool WaitForWaiting(const std::string& pool, int count) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Waiting(pool) == count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // Sends a POST of `body` to `path` on a socket of its own and returns the socket (-1 on
  // failure) without reading the answer: closing it is a client that went away.
  static int SendPost(const std::string& path, const std::string& body) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(api_->port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const std::string request = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                                "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
        ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size())) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

  // Defines a pool on `users` (with `match`) and returns its name; the test fails if it cannot.
  static std::string MakePool(const std::string& stem, const json& match = json::object()) {
    const std::string name = Fresh(stem);
    auto r = PutPool(name, {{"dsn", TargetDsn()}, {"table", "users"}, {"key", "id"}, {"match", match}});
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer");
    return name;
  }

  // The scratch database is untouched: `x` and every user still there.
  static void ExpectTargetIntact() {
    pg::Connection db = Target();
    EXPECT_EQ(db.Exec("SELECT count(*) FROM x").Get(0, 0), "1");
    EXPECT_EQ(db.Exec("SELECT count(*) FROM users").Get(0, 0), "10");
  }

  static std::string target_db_;
  static testing::InProcessApi* api_;
};

std::string ClaimsApiTest::target_db_;
testing::InProcessApi* ClaimsApiTest::api_;

// ---- pool definitions: each bad one a clear 400 ------------------------------------------------

TEST_F(ClaimsApiTest, MalformedPoolDefinitionsAre400NamingTheField) {
  const std::string dsn = TargetDsn();
  struct Case {
    std::string body, mentions;
  } cases[] = {
      {"{\"table\": ", "not valid JSON"},
      {"", "not valid JSON"},
      {"[]", "JSON object"},
      {json{{"table", "users"}, {"key", "id"}}.dump(), "exactly one of \"dsn\""},
      {json{{"dsn", dsn}, {"lease", "abcd"}, {"table", "users"}, {"key", "id"}}.dump(), "exactly one of \"dsn\""},
      {json{{"dsn", dsn}, {"key", "id"}}.dump(), "missing field 'table'"},
      {json{{"dsn", dsn}, {"table", "users"}}.dump(), "missing field 'key'"},
      {json{{"dsn", 5}, {"table", "users"}, {"key", "id"}}.dump(), "dsn must be a string"},
      {json{{"lease", true}, {"table", "users"}, {"key", "id"}}.dump(), "lease must be a string"},
      {json{{"dsn", dsn}, {"table", json::array({"users"})}, {"key", "id"}}.dump(), "table must be a string"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", 1}}.dump(), "key must be a string"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"schema", nullptr}}.dump(), "schema must be a string"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", "tier=premium"}}.dump(),
       "match must be an object"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"tier", nullptr}}}}.dump(), "match.tier"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"tier", json::array({"a"})}}}}.dump(),
       "match.tier"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"tabel", "users"}}.dump(), "unknown field 'tabel'"},
      {json{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"name", "other"}}.dump(), "differs from the URL"},
  };
  for (const auto& c : cases) {
    auto r = Client().Put("/v1/record-pools/shape", c.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << c.body;
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << c.body << " → " << MessageOf(r);
  }
  EXPECT_EQ(Client().Get("/v1/record-pools/shape")->status, 404) << "nothing was defined";
}

TEST_F(ClaimsApiTest, DefinitionsTheTargetRefutesAre400NamingTheProblem) {
  const std::string dsn = TargetDsn();
  struct Case {
    json body;
    std::string mentions;
  } cases[] = {
      {{{"dsn", dsn}, {"table", "no_such_table"}, {"key", "id"}}, "no_such_table"},
      {{{"dsn", dsn}, {"schema", "no_such_schema"}, {"table", "users"}, {"key", "id"}}, "no_such_schema"},
      {{{"dsn", dsn}, {"table", "users"}, {"key", "no_such_column"}}, "no_such_column"},
      {{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"colour", "red"}}}}, "colour"},
      {{{"dsn", dsn}, {"table", "users"}, {"key", "tier"}}, "tier"},      // not unique
      {{{"dsn", dsn}, {"table", "notes"}, {"key", "id"}}, "not a key"},   // no unique index at all
      {{{"dsn", dsn}, {"table", "premium_users"}, {"key", "id"}}, "premium_users"},  // a view
      {{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"active", "maybe"}}}}, "match value"},
      {{{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"id", "seven"}}}}, "match value"},
      {{{"dsn", "host= port=x=y 'unterminated"}, {"table", "users"}, {"key", "id"}}, ""},
  };
  for (const auto& c : cases) {
    auto r = PutPool("refuted", c.body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << c.body;
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << c.body << " → " << MessageOf(r);
  }
  EXPECT_EQ(Client().Get("/v1/record-pools/refuted")->status, 404) << "nothing was defined";
}

TEST_F(ClaimsApiTest, UnknownLeaseInADefinitionIs404) {
  auto r = PutPool("on_lease", {{"lease", util::RandomToken(16)}, {"table", "users"}, {"key", "id"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_EQ(ErrorCodeOf(r), "not_found");
}

TEST_F(ClaimsApiTest, UnreachableTargetIs503) {
  pg::ConnInfo gone = testing::Admin(target_db_);
  gone.Set("host", "127.0.0.1");
  gone.Set("port", std::to_string(testing::FreePort()));
  gone.Set("connect_timeout", "2");
  auto r = PutPool("gone", {{"dsn", gone.ToKeywordString()}, {"table", "users"}, {"key", "id"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(ErrorCodeOf(r), "unavailable");
}

TEST_F(ClaimsApiTest, InjectionInNamesIs400AndTouchesNothing) {
  const std::string dsn = TargetDsn();
  const std::vector<json> bodies = {
      {{"dsn", dsn}, {"table", "users; DROP TABLE x"}, {"key", "id"}},
      {{"dsn", dsn}, {"table", "users\"; DROP TABLE x; --"}, {"key", "id"}},
      {{"dsn", dsn}, {"table", "users"}, {"key", "id; DROP TABLE x"}},
      {{"dsn", dsn}, {"table", "users"}, {"key", "id\" FROM users; DROP TABLE x; --"}},
      {{"dsn", dsn}, {"schema", "public; DROP TABLE x"}, {"table", "users"}, {"key", "id"}},
      {{"dsn", dsn}, {"schema", "public\".\"x"}, {"table", "users"}, {"key", "id"}},
      {{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"tier = tier OR true; DROP TABLE x; --", "a"}}}},
      {{"dsn", dsn}, {"table", "users"}, {"key", "id"}, {"match", {{"tier\" = 'a' OR true; --", "a"}}}},
      {{"dsn", dsn}, {"table", std::string("users\0x", 7)}, {"key", "id"}},
      {{"dsn", dsn}, {"table", std::string(64, 'u')}, {"key", "id"}},
      {{"dsn", dsn}, {"table", ""}, {"key", "id"}},
  };
  for (const json& body : bodies) {
    auto r = PutPool("inject", body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " → " << r->body;
    const std::string code = ErrorCodeOf(r);
    EXPECT_TRUE(code == "invalid_argument" || code == "invalid_name") << body << " → " << code;
  }
  // In the URL: the pool name itself.
  for (const std::string bad : {"users%3B%20DROP%20TABLE%20x", "a%22b", "Users", "1users", "a-b", "%FF"}) {
    auto r = PutPool(bad, {{"dsn", dsn}, {"table", "users"}, {"key", "id"}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bad << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_name") << bad;
    EXPECT_EQ(Client().Post(("/v1/record-pools/" + bad + "/claims").c_str(), "{}", "application/json")->status, 400)
        << bad;
  }
  EXPECT_EQ(Client().Get("/v1/record-pools/inject")->status, 404) << "nothing was defined";
  ExpectTargetIntact();
}

TEST_F(ClaimsApiTest, InjectionInMatchValuesSimplyDoesNotMatch) {
  // In the pool's own match: a definition whose filter matches nothing.
  const std::string quiet = Fresh("quiet");
  auto def = PutPool(quiet, {{"dsn", TargetDsn()}, {"table", "users"}, {"key", "id"},
                             {"match", {{"tier", "premium' OR '1'='1"}}}});
  ASSERT_TRUE(def);
  ASSERT_EQ(def->status, 201) << def->body;
  EXPECT_EQ(Body(def)["rows"], 0);
  EXPECT_EQ(Body(def)["match"]["tier"], "premium' OR '1'='1");
  auto none = PostClaim(quiet, {{"wait_s", 0}});
  EXPECT_EQ(none->status, 503) << none->body;
  EXPECT_EQ(ErrorCodeOf(none), "pool_exhausted");

  // In a claim's match.
  const std::string pool = MakePool("inject_values");
  for (const json& match : std::vector<json>{{{"tier", "basic' OR '1'='1"}},
                                             {{"email", "x'; DROP TABLE x; --"}},
                                             {{"email", "%"}},
                                             {{"tier", "premium\"; DROP TABLE x; --"}}}) {
    auto r = PostClaim(pool, {{"match", match}, {"wait_s", 0}});
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << match << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "pool_exhausted") << match;
  }
  ExpectTargetIntact();
  EXPECT_EQ(Client().Delete(("/v1/record-pools/" + quiet).c_str())->status, 204);
  EXPECT_EQ(Client().Delete(("/v1/record-pools/" + pool).c_str())->status, 204);
}

// ---- define, list, show, drop ------------------------------------------------------------------

TEST_F(ClaimsApiTest, DefineReplaceListShowDrop) {
  const std::string name = Fresh("define");
  json body = {{"dsn", TargetDsn()}, {"table", "users"}, {"key", "id"}, {"match", {{"tier", "premium"}}}};
  auto created = PutPool(name, body);
  ASSERT_TRUE(created);
  ASSERT_EQ(created->status, 201) << created->body;
  json pool = Body(created);
  for (const char* field : {"name", "schema", "table", "key", "match", "dsn", "rows", "claimed", "expired", "free", "waiting"}) {
    EXPECT_TRUE(pool.contains(field)) << field << " missing from " << pool;
  }
  EXPECT_FALSE(pool.contains("lease"));
  EXPECT_EQ(pool["name"], name);
  EXPECT_EQ(pool["schema"], "public");
  EXPECT_EQ(pool["table"], "users");
  EXPECT_EQ(pool["key"], "id");
  EXPECT_EQ(pool["match"], json({{"tier", "premium"}}));
  EXPECT_EQ(pool["rows"], 3);
  EXPECT_EQ(pool["claimed"], 0);
  EXPECT_EQ(pool["free"], 3);
  EXPECT_EQ(pool["waiting"], 0);
  const std::string password = testing::Admin(target_db_).Get("password");
  ASSERT_FALSE(password.empty());
  EXPECT_EQ(pool["dsn"].get<std::string>().find(password), std::string::npos) << "the password is shown: " << pool;

  // Same name again: replaced (200), numbers and booleans accepted in their text form.
  body["match"] = {{"tier", "premium"}, {"active", true}, {"score", 1.5}};
  auto replaced = PutPool(name, body);
  ASSERT_EQ(replaced->status, 200) << replaced->body;
  EXPECT_EQ(Body(replaced)["rows"], 1) << "only user 1 is premium, active, with score 1.5";
  EXPECT_EQ(Body(replaced)["match"]["active"], "true");
  body["match"] = {{"tier", "premium"}, {"id", 3}};
  body["name"] = name;  // allowed when it is the URL's
  EXPECT_EQ(Body(PutPool(name, body))["rows"], 1);

  auto got = Client().Get(("/v1/record-pools/" + name).c_str());
  ASSERT_EQ(got->status, 200);
  EXPECT_EQ(Body(got)["match"], json({{"id", "3"}, {"tier", "premium"}}));

  auto list = Client().Get("/v1/record-pools");
  ASSERT_EQ(list->status, 200);
  const json listing = Body(list);  // named: a loop over a temporary's member would dangle
  bool listed = false;
  for (const auto& p : listing["record_pools"]) listed = listed || p["name"] == name;
  EXPECT_TRUE(listed) << list->body;

  EXPECT_EQ(Client().Delete(("/v1/record-pools/" + name).c_str())->status, 204);
  auto gone = Client().Get(("/v1/record-pools/" + name).c_str());
  EXPECT_EQ(gone->status, 404);
  EXPECT_EQ(ErrorCodeOf(gone), "not_found");
  EXPECT_EQ(Client().Delete(("/v1/record-pools/" + name).c_str())->status, 404);
  EXPECT_EQ(PostClaim(name, json::object())->status, 404);
}

TEST_F(ClaimsApiTest, BadPoolNamesInTheUrlAre400OnEveryRoute) {
  const std::vector<std::string> bad_names = {"Bad", "1abc", "a-b", "x%27%3B%20DROP", std::string(41, 'a')};
  for (const std::string& bad : bad_names) {
    const std::string path = "/v1/record-pools/" + bad;
    auto c = Client();
    std::vector<std::pair<std::string, httplib::Result>> answers;
    answers.emplace_back("GET", c.Get(path.c_str()));
    answers.emplace_back("DELETE", c.Delete(path.c_str()));
    answers.emplace_back("claim", c.Post((path + "/claims").c_str(), "{}", "application/json"));
    for (auto& [what, r] : answers) {
      ASSERT_TRUE(r) << what << " " << bad;
      EXPECT_EQ(r->status, 400) << what << " " << bad << " → " << r->body;
      EXPECT_EQ(ErrorCodeOf(r), "invalid_name") << what << " " << bad;
    }
  }
}

// ---- claims ------------------------------------------------------------------------------------

TEST_F(ClaimsApiTest, ClaimBodiesAreStrict) {
  const std::string pool = MakePool("strict");
  struct Case {
    std::string body, mentions;
  } cases[] = {
      {"{\"ttl_s\": ", "not valid JSON"},
      {"[]", "JSON object"},
      {R"({"ttl_s": "60"})", "ttl_s must be an integer"},
      {R"({"wait_s": 1.5})", "wait_s must be an integer"},
      {R"({"holder": 3})", "holder must be a string"},
      {R"({"lease": 3})", "lease must be a string"},
      {R"({"match": ["tier"]})", "match must be an object"},
      {R"({"match": {"tier": null}})", "match.tier must be a string, number or boolean"},
      {R"({"ttl": 60})", "unknown field 'ttl'"},
      {R"({"ttl_s": 0})", "ttl_s"},
      {R"({"ttl_s": 86401})", "ttl_s"},
      {R"({"ttl_s": 100000000000})", "ttl_s"},
      {R"({"wait_s": -1})", "wait_s"},
      {R"({"wait_s": 601})", "wait_s"},
      {json{{"holder", std::string(201, 'h')}}.dump(), "holder"},
      {R"({"match": {"colour": "red"}})", "colour"},
      {R"({"match": {"id": "seven"}})", "match value"},
  };
  for (const auto& c : cases) {
    auto r = Client().Post(("/v1/record-pools/" + pool + "/claims").c_str(), c.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << c.body;
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << c.body << " → " << MessageOf(r);
  }
  const std::vector<std::pair<std::string, std::string>> renew_cases = {
      {R"({"ttl_s": "60"})", "ttl_s must be an integer"}, {R"({"ttl": 60})", "unknown field 'ttl'"}, {"{", "JSON"}};
  for (const auto& [body, mentions] : renew_cases) {
    auto r = Client().Post(("/v1/claims/" + pool + ".abcdefgh/renew").c_str(), body, "application/json");
    EXPECT_EQ(r->status, 400) << body << " → " << r->body;
    EXPECT_NE(MessageOf(r).find(mentions), std::string::npos) << MessageOf(r);
  }
  auto big = PostClaim(pool, {{"holder", std::string(65u << 10, 'h')}});
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(ErrorCodeOf(big), "invalid_argument");
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

TEST_F(ClaimsApiTest, ClaimRenewReleaseRoundTrip) {
  const std::string pool = MakePool("trip", {{"tier", "premium"}});
  auto granted = PostClaim(pool, {{"ttl_s", 60}, {"holder", "gw3"}, {"match", {{"active", true}}}});
  ASSERT_TRUE(granted);
  ASSERT_EQ(granted->status, 201) << granted->body;
  json claim = Body(granted);
  for (const char* field : {"id", "pool", "key", "row", "token", "expires_at", "holder", "state"}) {
    EXPECT_TRUE(claim.contains(field)) << field << " missing from " << claim;
  }
  EXPECT_FALSE(claim.contains("lease"));
  const std::string id = claim["id"];
  EXPECT_EQ(id.rfind(pool + ".", 0), 0u) << id;
  EXPECT_EQ(claim["pool"], pool);
  EXPECT_EQ(claim["holder"], "gw3");
  EXPECT_EQ(claim["state"], "active");
  EXPECT_GE(claim["token"].get<int64_t>(), 1);
  ASSERT_TRUE(claim["row"].is_object()) << claim;
  EXPECT_EQ(claim["row"]["tier"], "premium");
  EXPECT_EQ(claim["row"]["active"], true);
  EXPECT_EQ(std::to_string(claim["row"]["id"].get<int>()), claim["key"]) << "the key is the row's id, as text";
  EXPECT_TRUE(claim["key"] == "1" || claim["key"] == "3") << claim;
  EXPECT_EQ(claim["expires_at"].get<std::string>().size(), std::string("2026-11-24T21:30:00.123Z").size());

  // The reservation sits in the target, beside the data.
  EXPECT_EQ(Target().Exec("SELECT holder FROM testpool.claims WHERE claim_id = $1", {id}).Get(0, 0), "gw3");
  json shown = Body(Client().Get(("/v1/record-pools/" + pool).c_str()));
  EXPECT_EQ(shown["claimed"], 1) << shown;
  EXPECT_EQ(shown["free"], 2) << shown;

  auto renewed = Renew(id, 120);
  ASSERT_EQ(renewed->status, 200) << renewed->body;
  EXPECT_GT(Body(renewed)["expires_at"].get<std::string>(), claim["expires_at"].get<std::string>());
  EXPECT_EQ(Body(renewed)["key"], claim["key"]);
  EXPECT_EQ(Body(renewed)["token"], claim["token"]);

  auto released = Release(id);
  EXPECT_EQ(released->status, 204);
  EXPECT_TRUE(released->body.empty());
  EXPECT_EQ(Release(id)->status, 204) << "a second release is also 204";

  auto late = Renew(id, 60);
  EXPECT_EQ(late->status, 410) << late->body;
  EXPECT_EQ(ErrorCodeOf(late), "lease_expired");
  EXPECT_EQ(Body(Client().Get(("/v1/record-pools/" + pool).c_str()))["claimed"], 0);
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

TEST_F(ClaimsApiTest, EachRowIsHeldByOneClaimAndTokensGrowPerKey) {
  const std::string pool = MakePool("tokens", {{"tier", "premium"}});
  std::map<std::string, json> held;  // key → claim
  for (int i = 0; i < 3; ++i) {
    auto r = PostClaim(pool, {{"ttl_s", 60}});
    ASSERT_EQ(r->status, 201) << r->body;
    json c = Body(r);
    EXPECT_TRUE(held.emplace(c["key"].get<std::string>(), c).second) << "key " << c["key"] << " handed out twice";
  }
  EXPECT_EQ(held.size(), 3u);
  const json first = held.begin()->second;
  ASSERT_EQ(Release(first["id"])->status, 204);
  auto again = PostClaim(pool, {{"ttl_s", 60}});
  ASSERT_EQ(again->status, 201) << again->body;
  EXPECT_EQ(Body(again)["key"], first["key"]) << "the only free row";
  EXPECT_GT(Body(again)["token"].get<int64_t>(), first["token"].get<int64_t>());
  EXPECT_NE(Body(again)["id"], first["id"]);
  // The old claim id is ended for good: renewing it is 410, releasing it changes nothing.
  EXPECT_EQ(Renew(first["id"], 60)->status, 410);
  EXPECT_EQ(Release(first["id"])->status, 204);
  EXPECT_EQ(Renew(Body(again)["id"], 60)->status, 200) << "the new holder keeps its claim";
  for (const auto& [key, c] : held) Release(c["id"]);
  Release(Body(again)["id"]);
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

TEST_F(ClaimsApiTest, ExhaustedPoolIs503NamingThePoolAndTheMatchAfterWait) {
  const std::string pool = MakePool("exhaust", {{"tier", "premium"}});
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    auto r = PostClaim(pool, {{"match", {{"active", true}}}});
    ASSERT_EQ(r->status, 201) << r->body;
    ids.push_back(Body(r)["id"]);
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto r = PostClaim(pool, {{"match", {{"active", true}}}, {"wait_s", 1}});
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503) << r->body;
  EXPECT_EQ(ErrorCodeOf(r), "pool_exhausted");
  EXPECT_EQ(r->get_header_value("Retry-After"), "1");
  EXPECT_NE(MessageOf(r).find(pool), std::string::npos) << "names the pool: " << MessageOf(r);
  EXPECT_NE(MessageOf(r).find("tier=premium"), std::string::npos) << "names the match: " << MessageOf(r);
  EXPECT_NE(MessageOf(r).find("active=true"), std::string::npos) << "names the match: " << MessageOf(r);
  EXPECT_GE(waited, std::chrono::milliseconds(950)) << "waited wait_s first";
  EXPECT_LT(waited, std::chrono::seconds(5));
  // Without the claim's own match, the third premium user (inactive) is still free.
  auto other = PostClaim(pool, json::object());
  ASSERT_EQ(other->status, 201) << other->body;
  EXPECT_EQ(Body(other)["key"], "2");
  ids.push_back(Body(other)["id"]);
  for (const std::string& id : ids) EXPECT_EQ(Release(id)->status, 204);
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

TEST_F(ClaimsApiTest, AWaitingClaimGetsTheRowReleasedMeanwhile) {
  const std::string pool = MakePool("waiter", {{"id", 7}});
  auto held = PostClaim(pool, json::object());
  ASSERT_EQ(held->status, 201) << held->body;
  auto waiter = std::async(std::launch::async, [&] { return PostClaim(pool, {{"wait_s", 20}, {"holder", "waiter"}}); });
  EXPECT_TRUE(WaitForWaiting(pool, 1)) << "the claim never showed as waiting";
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(Release(Body(held)["id"])->status, 204);
  auto got = waiter.get();
  ASSERT_TRUE(got);
  ASSERT_EQ(got->status, 201) << got->body;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2)) << "woken by the release";
  EXPECT_EQ(Body(got)["key"], "7");
  EXPECT_EQ(Body(got)["holder"], "waiter");
  EXPECT_EQ(Release(Body(got)["id"])->status, 204);
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

// A client that gives up waiting must not leave a ghost that takes the next free row and holds it
// for its TTL while live clients find nothing.
TEST_F(ClaimsApiTest, AWaiterWhoseClientLeftNeverTakesTheRow) {
  const std::string pool = MakePool("ghost", {{"id", 8}});
  auto held = PostClaim(pool, json::object());
  ASSERT_EQ(held->status, 201) << held->body;
  {
    const int ghost = SendPost("/v1/record-pools/" + pool + "/claims", json{{"wait_s", 30}, {"holder", "ghost"}}.dump());
    ASSERT_GE(ghost, 0) << "could not send the ghost's claim";
    const bool waited = WaitForWaiting(pool, 1);
    char byte;
    const ssize_t answered = ::recv(ghost, &byte, 1, MSG_DONTWAIT);
    ::close(ghost);  // the ghost goes away while its claim waits
    ASSERT_TRUE(waited) << "the ghost's claim never showed as waiting";
    EXPECT_LT(answered, 0) << "nothing is free: the ghost's claim must still be waiting, not answered";
  }
  // The daemon polls the waiter's client and drops the claim once it sees it gone.
  ASSERT_TRUE(WaitForWaiting(pool, 0)) << "the daemon kept waiting for a client that left";
  ASSERT_EQ(Release(Body(held)["id"])->status, 204);
  auto live = PostClaim(pool, {{"wait_s", 5}, {"holder", "live"}});
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 201) << "the row went to the ghost: " << live->body;
  if (live->status == 201) {
    EXPECT_EQ(Release(Body(live)["id"])->status, 204);
  }
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

TEST_F(ClaimsApiTest, ConcurrentClaimsNeverShareARow) {
  const std::string pool = MakePool("race");
  std::vector<std::future<httplib::Result>> claims;
  for (int i = 0; i < 12; ++i) {
    claims.push_back(std::async(std::launch::async, [&] { return PostClaim(pool, {{"wait_s", 0}}); }));
  }
  std::set<std::string> keys;
  std::vector<std::string> ids;
  int exhausted = 0;
  for (auto& f : claims) {
    auto r = f.get();
    ASSERT_TRUE(r);
    if (r->status == 201) {
      EXPECT_TRUE(keys.insert(Body(r)["key"].get<std::string>()).second) << "row " << Body(r)["key"] << " twice";
      ids.push_back(Body(r)["id"]);
    } else {
      EXPECT_EQ(r->status, 503) << r->body;
      ++exhausted;
    }
  }
  EXPECT_EQ(keys.size(), 10u) << "every row claimed once";
  EXPECT_EQ(exhausted, 2);
  for (const std::string& id : ids) Release(id);
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

TEST_F(ClaimsApiTest, MalformedOrUnknownClaimIdsAre404) {
  const std::string pool = MakePool("ids");
  const std::vector<std::string> ids = {
      "abc",          pool + ".ABC",        pool + ".a-b",      pool + ".",          "." + util::RandomToken(8),
      "Pool.abcd",    pool + ".ab.cd",      pool + ".0189",     pool + "." + std::string(65, 'a'),
      "a%20b.abcd",   "x%27%3B%20DROP.abc", "%FF%FE",           "%00",
      // well-shaped, never issued: on a pool that exists, and on one that does not
      pool + "." + util::RandomToken(26), "no_such_pool." + util::RandomToken(26)};
  for (const std::string& id : ids) {
    auto c = Client();
    std::vector<std::pair<std::string, httplib::Result>> answers;
    answers.emplace_back("DELETE", c.Delete(("/v1/claims/" + id).c_str()));
    answers.emplace_back("renew", c.Post(("/v1/claims/" + id + "/renew").c_str(), "{}", "application/json"));
    for (auto& [what, r] : answers) {
      ASSERT_TRUE(r) << what << " " << id;
      EXPECT_EQ(r->status, 404) << what << " " << id << " → " << r->body;
      EXPECT_EQ(ErrorCodeOf(r), "not_found") << what << " " << id;
    }
  }
  Client().Delete(("/v1/record-pools/" + pool).c_str());
}

// ---- claims and pools tied to a lease ----------------------------------------------------------

TEST_F(ClaimsApiTest, ClaimsAndPoolsTiedToALeaseEndWithIt) {
  const std::string tpl = Fresh("rec_tpl");
  json tpl_body = {{"migrations", {{{"name", "0001_t.sql"},
                                    {"sql", "-- " + tpl + "\nCREATE TABLE skus (sku text PRIMARY KEY, stock int);\n"
                                            "INSERT INTO skus VALUES ('a', 1), ('b', 0), ('c', 5);\n"}}}},
                   {"pool", {{"min_ready", 1}, {"max", 1}}}};
  auto built = Client().Put(("/v1/templates/" + tpl).c_str(), tpl_body.dump(), "application/json");
  ASSERT_TRUE(built && (built->status == 201 || built->status == 200)) << (built ? built->body : "no answer");
  auto leased = Client().Post(("/v1/templates/" + tpl + "/leases").c_str(), R"({"wait_s": 60})", "application/json");
  ASSERT_TRUE(leased);
  ASSERT_EQ(leased->status, 201) << leased->body;
  const std::string lease = Body(leased)["id"];

  // A pool on the leased database, and a claim in another pool that ends with the lease.
  const std::string on_lease = Fresh("on_lease");
  auto def = PutPool(on_lease, {{"lease", lease}, {"table", "skus"}, {"key", "sku"}});
  ASSERT_EQ(def->status, 201) << def->body;
  EXPECT_EQ(Body(def)["lease"], lease);
  EXPECT_FALSE(Body(def).contains("dsn"));
  EXPECT_EQ(Body(def)["rows"], 3);
  auto sku = PostClaim(on_lease, {{"match", {{"stock", 0}}}});
  ASSERT_EQ(sku->status, 201) << sku->body;
  EXPECT_EQ(Body(sku)["key"], "b");
  EXPECT_EQ(Body(sku)["row"], json({{"sku", "b"}, {"stock", 0}}));

  const std::string shared = MakePool("with_lease");
  auto tied = PostClaim(shared, {{"lease", lease}, {"holder", "w1"}});
  ASSERT_EQ(tied->status, 201) << tied->body;
  EXPECT_EQ(Body(tied)["lease"], lease);
  auto unknown_lease = PostClaim(shared, {{"lease", util::RandomToken(16)}});
  EXPECT_EQ(unknown_lease->status, 404) << unknown_lease->body;

  ASSERT_EQ(Client().Delete(("/v1/leases/" + lease).c_str())->status, 204);
  auto late = Renew(Body(tied)["id"], 60);
  EXPECT_EQ(late->status, 410) << "the claim ended with its lease: " << late->body;
  EXPECT_EQ(Release(Body(tied)["id"])->status, 204);
  EXPECT_EQ(Client().Get(("/v1/record-pools/" + on_lease).c_str())->status, 404) << "the pool went with its lease";
  auto ended_lease = PostClaim(shared, {{"lease", lease}});
  EXPECT_EQ(ended_lease->status, 410) << ended_lease->body;

  Client().Delete(("/v1/record-pools/" + shared).c_str());
  Client().Delete(("/v1/templates/" + tpl).c_str());
}

// ---- the CLI against the same API --------------------------------------------------------------

TEST_F(ClaimsApiTest, CliDefinesClaimsAndUnclaims) {
  const std::map<std::string, std::string> env = {{"TESTPOOL_URL", "http://127.0.0.1:" + std::to_string(api_->port())}};
  const std::string pool = Fresh("cli");
  auto define = testing::RunCli({"record-pool", "define", pool, "--dsn", TargetDsn(), "--table", "users", "--key",
                                 "id", "--match", "tier=premium"},
                                env);
  ASSERT_EQ(define.exit_code, 0) << define.err;
  EXPECT_NE(define.out.find("created"), std::string::npos) << define.out;
  EXPECT_NE(define.out.find("3 rows"), std::string::npos) << define.out;

  auto claim = testing::RunCli({"claim", pool, "--match", "id=2", "--holder", "cli", "--ttl", "60"}, env);
  ASSERT_EQ(claim.exit_code, 0) << claim.err;
  std::istringstream lines(claim.out);
  std::string id, key, row;
  std::getline(lines, id);
  std::getline(lines, key);
  std::getline(lines, row);
  EXPECT_EQ(id.rfind(pool + ".", 0), 0u) << claim.out;
  EXPECT_EQ(key, "2");
  EXPECT_EQ(json::parse(row, nullptr, false).value("email", ""), "u2@example.com") << row;

  auto json_claim = testing::RunCli({"claim", pool, "--match", "id=2", "--json"}, env);
  EXPECT_EQ(json_claim.exit_code, 1) << "the row is held";
  EXPECT_NE(json_claim.err.find("pool_exhausted"), std::string::npos) << json_claim.err;

  auto show = testing::RunCli({"record-pool", "show", pool, "--json"}, env);
  ASSERT_EQ(show.exit_code, 0) << show.err;
  EXPECT_EQ(json::parse(show.out, nullptr, false).value("claimed", -1), 1) << show.out;
  auto list = testing::RunCli({"record-pool", "list"}, env);
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find(pool), std::string::npos) << list.out;

  EXPECT_EQ(testing::RunCli({"unclaim", id}, env).exit_code, 0);
  EXPECT_EQ(testing::RunCli({"unclaim", id}, env).exit_code, 0) << "a second unclaim is fine";
  auto bad_id = testing::RunCli({"unclaim", "nonsense"}, env);
  EXPECT_EQ(bad_id.exit_code, 1);
  EXPECT_NE(bad_id.err.find("not_found"), std::string::npos) << bad_id.err;

  // Usage errors are 2; an unreachable daemon is 3.
  EXPECT_EQ(testing::RunCli({"claim"}, env).exit_code, 2);
  EXPECT_EQ(testing::RunCli({"claim", pool, "--match", "novalue"}, env).exit_code, 2);
  EXPECT_EQ(testing::RunCli({"record-pool", "define", pool, "--table", "users", "--key", "id"}, env).exit_code, 2);
  EXPECT_EQ(testing::RunCli({"record-pool", "frobnicate"}, env).exit_code, 2);
  EXPECT_EQ(testing::RunCli({"claim", pool}, {{"TESTPOOL_URL", "http://127.0.0.1:" +
                                                                   std::to_string(testing::FreePort())}})
                .exit_code,
            3);

  EXPECT_EQ(testing::RunCli({"record-pool", "drop", pool}, env).exit_code, 0);
  auto dropped = testing::RunCli({"record-pool", "show", pool}, env);
  EXPECT_EQ(dropped.exit_code, 1);
  EXPECT_NE(dropped.err.find("not_found"), std::string::npos) << dropped.err;
}

}  // namespace
}  // namespace testpool::api
