// The HTTP API over real HTTP, in front of a real PostgreSQL.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "orchestrator/api/server.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/api_harness.h"
#include "tests/support/test_server.h"

namespace testpool::api {
namespace {

using nlohmann::json;

class ApiTest : public ::testing::Test {
 protected:
  // The template routes do not use the pools: a manager that is never started stands in.
  static void SetUpTestSuite() { api_ = new testing::InProcessApi(/*with_pools=*/false); }
  static void TearDownTestSuite() { delete api_; }

  httplib::Client Client() { return api_->Client(); }
  json Body(const httplib::Result& r) { return json::parse(r->body); }
  std::string ErrorCodeOf(const httplib::Result& r) { return testing::InProcessApi::ErrorCodeOf(r); }

  static json SmallBody(const std::string& extra = "") {
    return {{"migrations",
             {{{"name", "0001_t.sql"}, {"sql", "CREATE TABLE t (id int);\n"}},
              {{"name", "0002_u.sql"}, {"sql", "INSERT INTO t VALUES (1);\n" + extra}}}}};
  }

  std::string Fresh(const std::string& stem) { return stem + "_" + util::RandomToken(6); }

  static testing::InProcessApi* api_;
};

testing::InProcessApi* ApiTest::api_;

TEST_F(ApiTest, HealthzAnswersOk) {
  auto r = Client().Get("/healthz");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(Body(r)["status"], "ok");
}

TEST_F(ApiTest, PutBuildsThenAnswersUnchanged) {
  std::string name = Fresh("put");
  auto c = Client();
  auto first = c.Put(("/v1/templates/" + name).c_str(), SmallBody().dump(), "application/json");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 201) << first->body;
  EXPECT_EQ(Body(first)["state"], "ready");
  EXPECT_EQ(Body(first)["built"], true);
  auto second = c.Put(("/v1/templates/" + name).c_str(), SmallBody().dump(), "application/json");
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(Body(second)["built"], false);
  EXPECT_EQ(Body(second)["hash"], Body(first)["hash"]);

  auto got = c.Get(("/v1/templates/" + name).c_str());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(Body(got)["hash"], Body(first)["hash"]);
  EXPECT_EQ(Body(got)["builds"].size(), 1u);

  auto list = c.Get("/v1/templates");
  json listing = Body(list);
  bool listed = false;
  for (const auto& t : listing["templates"]) listed = listed || t["name"] == name;
  EXPECT_TRUE(listed) << list->status << " " << list->body;
  EXPECT_EQ(c.Delete(("/v1/templates/" + name).c_str())->status, 200);
  EXPECT_EQ(c.Get(("/v1/templates/" + name).c_str())->status, 404);
}

TEST_F(ApiTest, PutWithoutWaitAnswers202AndProgressReachesReady) {
  std::string name = Fresh("nowait");
  auto c = Client();
  auto r = c.Put(("/v1/templates/" + name + "?wait=false").c_str(), SmallBody().dump(), "application/json");
  ASSERT_EQ(r->status, 202) << r->body;
  std::string hash = Body(r)["hash"];
  json build;
  for (int i = 0; i < 2400; ++i) {  // bounded: up to 2 minutes
    build = Body(c.Get(("/v1/templates/" + name).c_str()))["build"];
    if (build["state"] == "ready" || build["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(build["state"], "ready");
  EXPECT_EQ(build["hash"], hash);
  EXPECT_EQ(build["steps"].size(), 2u);
  EXPECT_EQ(build["steps"][1]["file"], "0002_u.sql");
}

TEST_F(ApiTest, MalformedJsonIs400) {
  auto r = Client().Put("/v1/templates/badjson", "{\"migrations\": [", "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
}

TEST_F(ApiTest, BadNameIs400) {
  const std::vector<std::string> bad_names = {"Bad", "1abc", "a-b", "a%20b", "x%27%3B%20DROP", "%FF%FE", std::string(41, 'a')};
  for (const std::string& bad : bad_names) {
    auto r = Client().Put(("/v1/templates/" + bad).c_str(), SmallBody().dump(), "application/json");
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_name") << bad;
  }
}

TEST_F(ApiTest, EmptyMigrationsIs400) {
  auto r = Client().Put("/v1/templates/empty", json{{"migrations", json::array()}}.dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
}

TEST_F(ApiTest, WrongTypesAndUnknownFieldsAre400NamingTheField) {
  struct Case {
    json body;
    std::string mentions;
  } cases[] = {
      {json{{"migrations", "0001_x.sql"}}, "migrations"},
      {json{{"migrations", {{{"name", 1}, {"sql", "x"}}}}}, "migrations[0].name"},
      {json{{"migrations", {{{"name", "0001_a.sql"}}}}}, "sql"},
      {[] { json b = SmallBody(); b["pool"] = {{"max", "10"}}; return b; }(), "pool.max"},
      {[] { json b = SmallBody(); b["pool"] = {{"min_ready", 5}, {"max", 2}}; return b; }(), "min_ready"},
      {[] { json b = SmallBody(); b["migratoins"] = json::array(); return b; }(), "migratoins"},
      {json::array(), "object"},
      {[] { json b = SmallBody(); b["recycle"] = "teleport"; return b; }(), "recycle"},
  };
  for (const auto& c : cases) {
    auto r = Client().Put("/v1/templates/types", c.body.dump(), "application/json");
    EXPECT_EQ(r->status, 400) << c.body.dump();
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
    EXPECT_NE(Body(r)["error"]["message"].get<std::string>().find(c.mentions), std::string::npos)
        << Body(r)["error"]["message"];
  }
}

TEST_F(ApiTest, FailingMigrationIs422WithFileAndLine) {
  std::string name = Fresh("broken");
  json body = SmallBody("SELEC 1;\n");
  auto r = Client().Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
  EXPECT_EQ(r->status, 422) << r->body;
  EXPECT_EQ(ErrorCodeOf(r), "migration_failed");
  json d = Body(r)["error"]["details"];
  EXPECT_EQ(d["file"], "0002_u.sql");
  EXPECT_EQ(d["line"], "2");
  EXPECT_EQ(d["sqlstate"], "42601");
  auto got = Client().Get(("/v1/templates/" + name).c_str());
  EXPECT_EQ(Body(got)["state"], "failed");
  Client().Delete(("/v1/templates/" + name).c_str());
}

TEST_F(ApiTest, InvalidUtf8InTheBodyIsA4xxNotACrash) {
  std::string name = Fresh("utf");
  // Raw invalid UTF-8 bytes inside a JSON string: refused as bad input, never a 500.
  std::string body = R"({"migrations":[{"name":"0001_a.sql","sql":"SELECT ')" + std::string("\xff\xfe") + R"(';"}]})";
  auto r = Client().Put(("/v1/templates/" + name).c_str(), body, "application/json");
  ASSERT_TRUE(r);
  EXPECT_GE(r->status, 400);
  EXPECT_LT(r->status, 500) << r->body;
  Client().Delete(("/v1/templates/" + name).c_str());
}

TEST_F(ApiTest, UnknownTemplateIs404) {
  auto r = Client().Get("/v1/templates/never_defined");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(ErrorCodeOf(r), "not_found");
  EXPECT_EQ(Client().Delete("/v1/templates/never_defined")->status, 404);
}

TEST_F(ApiTest, UnknownEndpointIs404InTheErrorShape) {
  auto r = Client().Get("/v1/nothing/here");
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(ErrorCodeOf(r), "not_found");
}

// What `curl -X POST URL` sends: no body, no Content-Length. RFC 9112 §6.3: no body. The answer
// must come at once, not after the server's 60 s read timeout; the socket's own 30 s receive
// timeout only bounds a failure.
TEST_F(ApiTest, APostWithNoContentLengthHasNoBodyAndIsAnsweredAtOnce) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(api_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string request =
      "POST /v1/leases/nosuchlease/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
  ASSERT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  std::string answer;
  char buf[4096];
  while (answer.find("\r\n\r\n") == std::string::npos) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;  // closed, or the 30 s bound passed
    answer.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  ASSERT_FALSE(answer.empty()) << "no answer: the server waited for a body that no header announced";
  // The route ran with an empty body: the unknown lease is a 404, not a 400 for a bad body.
  EXPECT_EQ(answer.substr(0, 12), "HTTP/1.1 404") << answer;
}

TEST_F(ApiTest, BadQueryParameterIs400) {
  auto r = Client().Put("/v1/templates/q?wait=maybe", SmallBody().dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
}

TEST_F(ApiTest, OversizedBodyIsRefusedWithAJsonError) {
  std::string huge(100u << 20, 'x');
  auto r = Client().Put("/v1/templates/huge", huge, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
}

TEST_F(ApiTest, InjectionInMigrationNamesIsRefused) {
  json body = {{"migrations", {{{"name", "0001_x\"; DROP DATABASE testpool; --.sql"}, {"sql", "SELECT 1;"}}}}};
  auto r = Client().Put("/v1/templates/inject", body.dump(), "application/json");
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
}

}  // namespace
}  // namespace testpool::api
