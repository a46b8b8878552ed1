// IntegreSQL's API (/api/v1, issue 15) on the real daemon (external backend on the shared test
// server), route by route: every status code IntegreSQL's clients rely on, the 423/finalize race,
// discard while test databases are awaited, a wait that runs out, the listener of its own, and a
// test database handed out through this API never taken back while a session is connected to it.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <cstring>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;

struct Answer {
  int status = -1;
  json body;
};

class IntegresqlApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { daemon_ = new testing::Daemon(Args()); }
  static std::vector<std::string> Args() {
    return {"--backend", "external", "--dsn", testing::Admin("postgres").ToKeywordString(),
            "--proxy-listen", "127.0.0.1:0", "--integresql-idle", "1", "--integresql-wait", "3",
            "--integresql-min-ready", "1", "--integresql-max", "4"};
  }
  static void TearDownTestSuite() {
    EXPECT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
    delete daemon_;
  }
  void SetUp() override {
    ASSERT_TRUE(daemon_->ready()) << daemon_->Log();
    hash_ = "hash-" + util::RandomToken(8);
  }
  void TearDown() override { Call("DELETE", "/api/v1/templates/" + hash_); }

  static Answer Call(const std::string& method, const std::string& path, const std::string& body = "") {
    httplib::Client c("127.0.0.1", daemon_->port());
    c.set_read_timeout(std::chrono::seconds(120));
    httplib::Result r = method == "GET"    ? c.Get(path.c_str())
                        : method == "PUT"  ? c.Put(path.c_str(), body, "application/json")
                        : method == "POST" ? c.Post(path.c_str(), body, "application/json")
                                           : c.Delete(path.c_str());
    if (!r) return {};
    return {r->status, json::parse(r->body.empty() ? "null" : r->body, nullptr, false)};
  }
  Answer Initialize() { return Call("POST", "/api/v1/templates", json{{"hash", hash_}}.dump()); }
  Answer Finalize() { return Call("PUT", "/api/v1/templates/" + hash_); }
  // The documented name: "isql_" and 16 hex digits of sha256(hash).
  std::string TemplateName() const {
    util::Sha256 h;
    h.Update(hash_);
    return "isql_" + h.HexDigest().substr(0, 16);
  }
  Answer GetTest() { return Call("GET", "/api/v1/templates/" + hash_ + "/tests"); }

  static pg::Connection Connect(const json& config) {
    pg::ConnInfo c;
    c.Set("host", config["host"].get<std::string>());
    c.Set("port", std::to_string(config["port"].get<int>()));
    c.Set("user", config["username"].get<std::string>());
    c.Set("password", config["password"].get<std::string>());
    c.Set("dbname", config["database"].get<std::string>());
    return pg::Connection::Open(c);
  }
  // Initialise, migrate (a table with one row) and finalise the test's hash.
  void Ready() {
    Answer init = Initialize();
    ASSERT_EQ(init.status, 200) << init.body.dump();
    {
      pg::Connection c = Connect(init.body["database"]["config"]);
      c.Exec("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO items (name) VALUES ('seed')");
    }
    ASSERT_EQ(Finalize().status, 204);
  }
  // Waits (bounded) until the daemon's log has `n` lines holding `text`.
  static bool WaitForLog(const std::string& text, int n) {
    for (int i = 0; i < 6000; ++i) {
      std::string log = daemon_->Log();
      int found = 0;
      for (size_t at = log.find(text); at != std::string::npos; at = log.find(text, at + 1)) ++found;
      if (found >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  static testing::Daemon* daemon_;
  std::string hash_;
};

testing::Daemon* IntegresqlApiTest::daemon_ = nullptr;

TEST_F(IntegresqlApiTest, TheClientsFlowWithEveryStatus) {
  Answer init = Initialize();
  ASSERT_EQ(init.status, 200) << init.body.dump();
  const json& config = init.body["database"]["config"];
  EXPECT_EQ(init.body["database"]["templateHash"], hash_);
  for (const char* field : {"host", "username", "password", "database"}) EXPECT_TRUE(config[field].is_string()) << field;
  EXPECT_TRUE(config["port"].is_number_integer());

  // Initialised already: 423, with IntegreSQL's error shape.
  Answer again = Initialize();
  EXPECT_EQ(again.status, 423);
  EXPECT_TRUE(again.body["message"].is_string()) << again.body.dump();

  // A client that got 423 asks for a test database before the finalize: it waits for it.
  auto waiting = std::async(std::launch::async, [this] { return GetTest(); });
  {
    pg::Connection c = Connect(config);
    c.Exec("CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); INSERT INTO items (name) VALUES ('seed')");
  }
  ASSERT_EQ(Finalize().status, 204);
  EXPECT_EQ(Finalize().status, 204);  // finalised already: still 204
  Answer test = waiting.get();
  ASSERT_EQ(test.status, 200) << test.body.dump();
  EXPECT_TRUE(test.body["id"].is_number_integer());
  EXPECT_EQ(test.body["database"]["templateHash"], hash_);
  const json& tc = test.body["database"]["config"];
  EXPECT_NE(tc["database"], config["database"]);
  EXPECT_NE(tc["username"], config["username"]);
  {
    pg::Connection c = Connect(tc);
    EXPECT_EQ(std::string(c.Exec("SELECT name FROM items").Get(0, 0)), "seed");
    c.Exec("INSERT INTO items (name) VALUES ('written')");
  }
  // The template's builder can no longer log in: its role is gone.
  EXPECT_THROW(Connect(config), Error);

  const std::string tests = "/api/v1/templates/" + hash_ + "/tests/";
  const std::string id = std::to_string(test.body["id"].get<int>());
  EXPECT_EQ(Call("POST", tests + id + "/unlock").status, 204);
  EXPECT_EQ(Call("DELETE", tests + id).status, 204);  // back already: nothing to do
  Answer second = GetTest();
  ASSERT_EQ(second.status, 200);
  {
    pg::Connection c = Connect(second.body["database"]["config"]);
    EXPECT_EQ(std::string(c.Exec("SELECT count(*) FROM items").Get(0, 0)), "1");  // never someone's leftovers
  }
  // Its pool shows in /v1/status like any other: the testpool template named after the hash.
  {
    Answer status = Call("GET", "/v1/status");
    ASSERT_EQ(status.status, 200);
    bool found = false;
    for (const json& p : status.body["pools"]) {
      if (p["template"] == TemplateName() && p["current"] == true) {
        found = true;
        EXPECT_GE(p["leased"].get<int>(), 1) << p.dump();
      }
    }
    EXPECT_TRUE(found) << status.body.dump();
  }
  EXPECT_EQ(Call("POST", tests + std::to_string(second.body["id"].get<int>()) + "/recreate").status, 204);

  // Bad input and unknown things.
  EXPECT_EQ(Call("POST", tests + "abc/unlock").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/templates", "{}").status, 400);
  EXPECT_EQ(Call("POST", "/api/v1/templates", "not json").status, 400);
  EXPECT_EQ(Call("PUT", "/api/v1/templates/unknown-" + hash_).status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/templates/unknown-" + hash_ + "/tests").status, 404);
  EXPECT_EQ(Call("DELETE", "/api/v1/templates/unknown-" + hash_).status, 404);
  EXPECT_EQ(Call("POST", "/api/v1/templates/unknown-" + hash_ + "/tests/1/unlock").status, 404);

  // Discarded: 204, then the hash is gone (410 for those asking for tests, 404 on a second discard).
  EXPECT_EQ(Call("DELETE", "/api/v1/templates/" + hash_ + "/").status, 204);  // a trailing slash is fine
  EXPECT_EQ(GetTest().status, 410);
  EXPECT_EQ(Call("DELETE", "/api/v1/templates/" + hash_).status, 404);
  // And may be initialised afresh.
  EXPECT_EQ(Initialize().status, 200);
}

TEST_F(IntegresqlApiTest, ExactlyOneOfTenConcurrentInitialisersMigrates) {
  std::vector<std::future<Answer>> calls;
  for (int i = 0; i < 10; ++i) calls.push_back(std::async(std::launch::async, [this] { return Initialize(); }));
  int ok = 0, locked = 0;
  for (auto& c : calls) {
    Answer a = c.get();
    ok += a.status == 200;
    locked += a.status == 423;
  }
  EXPECT_EQ(ok, 1);
  EXPECT_EQ(locked, 9);
}

TEST_F(IntegresqlApiTest, DiscardWhileTestsAreAwaitedAnswers410AndAWaitRunsOut) {
  ASSERT_EQ(Initialize().status, 200);
  // No finalize within --integresql-wait (3 s): the caller is told, not left hanging.
  Answer timed_out = GetTest();
  EXPECT_EQ(timed_out.status, 503) << timed_out.body.dump();
  EXPECT_TRUE(timed_out.body["message"].is_string());

  auto waiting = std::async(std::launch::async, [this] { return GetTest(); });
  ASSERT_TRUE(WaitForLog("integresql.awaiting_finalize", 2)) << daemon_->Log();  // the first call's, then this one's
  EXPECT_EQ(Call("DELETE", "/api/v1/templates/" + hash_).status, 204);
  EXPECT_EQ(waiting.get().status, 410);
}

TEST_F(IntegresqlApiTest, AConnectedDatabaseIsNeverTakenBackAnIdleOneIs) {
  Ready();
  Answer a = GetTest(), b = GetTest();
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(b.status, 200);
  pg::Connection held = Connect(a.body["database"]["config"]);
  held.Exec("INSERT INTO items (name) VALUES ('mine')");
  {
    pg::Connection used = Connect(b.body["database"]["config"]);
    used.Exec("INSERT INTO items (name) VALUES ('theirs')");
  }
  // b was used and has had no session since: taken back after --integresql-idle (1 s). a has
  // been connected all along: the monitor saw it as often, and kept it.
  const std::string b_lease_line = "integresql.test_taken_back";
  ASSERT_TRUE(WaitForLog(b_lease_line, 1)) << daemon_->Log();
  EXPECT_EQ(std::string(held.Exec("SELECT count(*) FROM items WHERE name = 'mine'").Get(0, 0)), "1");
  EXPECT_THROW(Connect(b.body["database"]["config"]), Error);  // b's credentials are cut off
  // Unlocking a database a session is connected to: 423.
  const std::string unlock =
      "/api/v1/templates/" + hash_ + "/tests/" + std::to_string(a.body["id"].get<int>()) + "/unlock";
  EXPECT_EQ(Call("POST", unlock).status, 423);
  EXPECT_EQ(std::string(held.Exec("SELECT count(*) FROM items").Get(0, 0)), "2");
}

TEST_F(IntegresqlApiTest, TestDatabasesOutSurviveARestartAndCanStillBeUnlocked) {
  Ready();
  Answer a = GetTest(), b = GetTest();
  ASSERT_EQ(a.status, 200);
  ASSERT_EQ(b.status, 200);
  ASSERT_EQ(daemon_->Terminate(), 0) << daemon_->Log();
  delete daemon_;
  daemon_ = new testing::Daemon(Args());
  ASSERT_TRUE(daemon_->ready()) << daemon_->Log();
  ASSERT_TRUE(WaitForLog("integresql.test_adopted", 2)) << daemon_->Log();
  // a is still the caller's: its credentials work, nothing else was put in it.
  {
    pg::Connection c = Connect(a.body["database"]["config"]);
    EXPECT_EQ(std::string(c.Exec("SELECT count(*) FROM items").Get(0, 0)), "1");
  }
  // Unlocking after the restart gives it back (no 204 that leaves the lease out).
  const std::string prefix = "/api/v1/templates/" + hash_ + "/tests/";
  EXPECT_EQ(Call("POST", prefix + std::to_string(a.body["id"].get<int>()) + "/unlock").status, 204);
  EXPECT_EQ(Call("POST", prefix + std::to_string(b.body["id"].get<int>()) + "/recreate").status, 204);
  EXPECT_TRUE(WaitForLog("integresql.test_returned", 1)) << daemon_->Log();
  EXPECT_TRUE(WaitForLog("integresql.test_recreated", 1)) << daemon_->Log();
  EXPECT_THROW(Connect(a.body["database"]["config"]), Error);  // its lease ended: credentials cut off
  EXPECT_EQ(GetTest().status, 200);  // the pool was rebuilt: handouts go on
}

TEST_F(IntegresqlApiTest, ItsOwnListenerServesTheApiWithoutTokens) {
  testing::Daemon own({"--backend", "external", "--dsn", testing::Admin("postgres").ToKeywordString(),
                       "--proxy-listen", "127.0.0.1:0", "--integresql-listen", "127.0.0.1:0"});
  ASSERT_TRUE(own.ready()) << own.Log();
  // The bound port is in the daemon's log line daemon.integresql_listening.
  std::string log = own.Log();
  size_t at = log.find("integresql_listening");
  ASSERT_NE(at, std::string::npos) << log;
  size_t url = log.find("http://127.0.0.1:", at);
  ASSERT_NE(url, std::string::npos) << log;
  int port = std::atoi(log.c_str() + url + std::strlen("http://127.0.0.1:"));
  httplib::Client c("127.0.0.1", port);
  auto init = c.Post("/api/v1/templates/", json{{"hash", hash_}}.dump(), "application/json");
  ASSERT_TRUE(init);
  EXPECT_EQ(init->status, 200) << init->body;
  auto status = c.Get("/v1/status");  // testpool's own routes are not there
  ASSERT_TRUE(status);
  EXPECT_EQ(status->status, 404);
  EXPECT_EQ(c.Delete(("/api/v1/templates/" + hash_).c_str())->status, 204);
  EXPECT_EQ(own.Terminate(), 0) << own.Log();
}

}  // namespace
}  // namespace testpool
