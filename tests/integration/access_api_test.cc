// Bearer tokens over real HTTP (in-process API, real sockets): every route of the table answers
// by its scope, refusals come before bodies are read, /openapi.json says the same as the table.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "orchestrator/api/routes.h"
#include "tests/support/api_harness.h"

namespace testpool::api {
namespace {

using nlohmann::json;

const std::string kWorker = "worker-token-" + std::string(40, 'w');
const std::string kAdmin = "admin-token-" + std::string(40, 'a');

// The path template with every {parameter} replaced by "X" (no valid name or id: nothing is
// touched by a request that gets through).
std::string ExamplePath(std::string_view path) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '{') {
      out += "X";
      i = path.find('}', i);
    } else {
      out.push_back(path[i]);
    }
  }
  return out;
}

class AccessApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    access_ = std::make_shared<AccessControl>(std::vector<std::string>{kWorker}, std::vector<std::string>{kAdmin});
    ApiServerOptions options;
    options.access = access_;
    api_ = new testing::InProcessApi(/*with_pools=*/false, 20, options);
  }
  static void TearDownTestSuite() {
    delete api_;
    access_.reset();
  }

  // `route` requested with `token` ("" : no Authorization header) and an empty JSON body.
  static httplib::Result Call(const Route& route, const std::string& token) {
    httplib::Client c = api_->Client();
    httplib::Request req;
    req.method = std::string(route.method);
    req.path = ExamplePath(route.path);
    if (!token.empty()) req.set_header("Authorization", "Bearer " + token);
    if (route.method == "PUT" || route.method == "POST") {
      req.body = "{}";
      req.set_header("Content-Type", "application/json");
    }
    return c.send(req);
  }

  static std::shared_ptr<AccessControl> access_;
  static testing::InProcessApi* api_;
};

std::shared_ptr<AccessControl> AccessApiTest::access_;
testing::InProcessApi* AccessApiTest::api_;

TEST_F(AccessApiTest, EveryRouteAnswersByItsScope) {
  for (const Route& route : Routes()) {
    const std::string what = std::string(route.method) + " " + std::string(route.path);
    auto none = Call(route, "");
    ASSERT_TRUE(none) << what;
    if (route.scope == Scope::kOpen) {
      EXPECT_LT(none->status, 400) << what << ": " << none->body;
      continue;
    }
    EXPECT_EQ(none->status, 401) << what;
    EXPECT_EQ(testing::InProcessApi::ErrorCodeOf(none), "unauthorized") << what;
    EXPECT_EQ(none->get_header_value("WWW-Authenticate"), "Bearer realm=\"testpool\"") << what;

    auto wrong = Call(route, std::string(50, 'z'));
    EXPECT_EQ(wrong->status, 401) << what;

    auto worker = Call(route, kWorker);
    ASSERT_TRUE(worker) << what;
    if (route.scope == Scope::kAdmin) {
      EXPECT_EQ(worker->status, 403) << what;
      EXPECT_EQ(testing::InProcessApi::ErrorCodeOf(worker), "forbidden") << what;
    } else {
      EXPECT_NE(worker->status, 401) << what << ": " << worker->body;
      EXPECT_NE(worker->status, 403) << what << ": " << worker->body;
    }
    auto admin = Call(route, kAdmin);
    ASSERT_TRUE(admin) << what;
    EXPECT_NE(admin->status, 401) << what << ": " << admin->body;
    EXPECT_NE(admin->status, 403) << what << ": " << admin->body;
  }
}

TEST_F(AccessApiTest, TheScopesAreTheIssuesOnes) {
  // Issue 17: workers lease, renew, reset, release, claim and build; templates and record pools
  // are defined and dropped with an admin token; only /healthz is open.
  std::vector<std::string> admin, open;
  for (const Route& route : Routes()) {
    const std::string what = std::string(route.method) + " " + std::string(route.path);
    if (route.scope == Scope::kAdmin) admin.push_back(what);
    if (route.scope == Scope::kOpen) open.push_back(what);
  }
  EXPECT_EQ(open, (std::vector<std::string>{"GET /healthz"}));
  EXPECT_EQ(admin, (std::vector<std::string>{"PUT /v1/templates/{name}", "DELETE /v1/templates/{name}",
                                             "PUT /v1/record-pools/{name}", "DELETE /v1/record-pools/{name}"}));
}

TEST_F(AccessApiTest, AnUnknownPathWithoutATokenIs401Not404) {
  auto r = api_->Client().Get("/v1/no/such/thing");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 401);
  httplib::Headers auth = {{"Authorization", "Bearer " + kWorker}};
  EXPECT_EQ(api_->Client().Get("/v1/no/such/thing", auth)->status, 404);
}

// A template definition may be 96 MiB: without a token it is refused on its head alone.
TEST_F(AccessApiTest, ARefusalComesBeforeTheBodyIsRead) {
  timeval tv{30, 0};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(api_->port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (const std::string& token : {std::string(), kWorker}) {
    const std::string head = "PUT /v1/templates/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
                             (token.empty() ? "" : "Authorization: Bearer " + token + "\r\n") +
                             "Content-Length: 50000000\r\n\r\n";
    int c = ::socket(AF_INET, SOCK_STREAM, 0);
    ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ASSERT_EQ(::connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::send(c, head.data(), head.size(), MSG_NOSIGNAL), static_cast<ssize_t>(head.size()));
    char buf[256] = {};
    ssize_t n = ::recv(c, buf, sizeof buf - 1, 0);
    ::close(c);
    ASSERT_GT(n, 12) << "no answer before the body: the server waits for it";
    EXPECT_EQ(std::string(buf, 12), token.empty() ? "HTTP/1.1 401" : "HTTP/1.1 403") << buf;
  }
}

TEST_F(AccessApiTest, OpenApiDescribesEachRoutesScope) {
  httplib::Headers auth = {{"Authorization", "Bearer " + kWorker}};
  auto r = api_->Client().Get("/openapi.json", auth);
  ASSERT_TRUE(r && r->status == 200);
  json doc = json::parse(r->body);
  EXPECT_EQ(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
  EXPECT_EQ(doc["security"], json::parse(R"([{"bearer": []}])"));
  const auto& codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"];
  EXPECT_NE(std::find(codes.begin(), codes.end(), "unauthorized"), codes.end());
  EXPECT_NE(std::find(codes.begin(), codes.end(), "forbidden"), codes.end());
  for (const Route& route : Routes()) {
    std::string method(route.method);
    std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::tolower(c); });
    const json& op = doc["paths"][std::string(route.path)][method];
    const std::string what = method + " " + std::string(route.path);
    EXPECT_EQ(op["x-testpool-scope"], std::string(ScopeName(route.scope))) << what;
    EXPECT_EQ(op["responses"].contains("401"), route.scope != Scope::kOpen) << what;
    EXPECT_EQ(op["responses"].contains("403"), route.scope == Scope::kAdmin) << what;
    if (route.scope == Scope::kOpen) {
      EXPECT_EQ(op["security"], json::array()) << what;
    }
  }
}

TEST_F(AccessApiTest, ReplacedTokensTakeEffectAtOnce) {
  const std::string next = "rotated-" + std::string(40, 'r');
  access_->Replace({next}, {kAdmin});
  httplib::Headers old_auth = {{"Authorization", "Bearer " + kWorker}};
  httplib::Headers new_auth = {{"Authorization", "Bearer " + next}};
  EXPECT_EQ(api_->Client().Get("/v1/status", old_auth)->status, 401);
  EXPECT_EQ(api_->Client().Get("/v1/status", new_auth)->status, 200);
  access_->Replace({kWorker}, {kAdmin});
  EXPECT_EQ(api_->Client().Get("/v1/status", old_auth)->status, 200);
}

}  // namespace
}  // namespace testpool::api
