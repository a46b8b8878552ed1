// Hostile HTTP clients against the real API server (in-process, real sockets, real PostgreSQL
// behind it): slow and idle connections, huge heads, pipelining, deep and invalid JSON, bodies
// that never come. Each checks that the client gets its 4xx (or is cut off) and, where it
// matters, that everybody else is still answered. "Still answered" is the event waited for, with
// a generous bound (30 s); nothing asserts on timing.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/util/crypto.h"
#include "tests/support/api_harness.h"

namespace testpool::api {
namespace {

using nlohmann::json;

constexpr std::chrono::seconds kBound{30};  // bounds a failure; never a figure under test

// A raw TCP client: whatever bytes a test wants to send, and what comes back.
class Raw {
 public:
  explicit Raw(int port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    timeval tv{kBound.count(), 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~Raw() {
    if (fd_ >= 0) ::close(fd_);
  }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  bool connected() const { return connected_; }
  bool Send(const std::string& bytes) {
    return ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
  }
  // Everything until the server closes (or the bound passes: then `timed_out`).
  std::string ReadToClose(bool* timed_out = nullptr) {
    std::string out;
    char buf[8192];
    for (;;) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        out.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (timed_out != nullptr) *timed_out = n < 0;
      return out;
    }
  }

 private:
  int fd_;
  bool connected_ = false;
};

// Raises this process's open-file limit to its hard limit (the test holds both ends of every
// connection); returns the soft limit now in force.
rlim_t RaiseOpenFiles() {
  rlimit r{};
  ::getrlimit(RLIMIT_NOFILE, &r);
  r.rlim_cur = r.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &r);
  ::getrlimit(RLIMIT_NOFILE, &r);
  return r.rlim_cur;
}

httplib::Client ClientOf(const testing::InProcessApi& api) {
  httplib::Client c("127.0.0.1", api.port());
  c.set_connection_timeout(kBound);
  c.set_read_timeout(kBound);
  return c;
}

// GET /healthz from a fresh connection: true when it is answered 200 (within the bound).
bool HealthzAnswers(const testing::InProcessApi& api) {
  auto r = ClientOf(api).Get("/healthz");
  return r && r->status == 200;
}

std::string StatusLine(const std::string& answer) { return answer.substr(0, answer.find("\r\n")); }

json BodyOf(const std::string& answer) {
  const auto at = answer.find("\r\n\r\n");
  return at == std::string::npos ? json() : json::parse(answer.substr(at + 4), nullptr, false);
}

// ---- slow and idle clients ---------------------------------------------------------------------

// More clients than worker threads send half a request and stall. cpp-httplib alone gives each a
// worker until its 60 s read timeout: nobody else would be answered for a minute.
TEST(HttpLimitsTest, ClientsStallingMidRequestDoNotStopOthers) {
  testing::InProcessApi api(/*with_pools=*/true);
  const std::string name = "slow_" + util::RandomToken(6);
  json definition = {{"migrations", {{{"name", "0001_t.sql"}, {"sql", "-- " + name + "\nCREATE TABLE t (id int);\n"}}}},
                     {"pool", {{"min_ready", 1}, {"max", 1}}}};
  auto put = api.Client().Put(("/v1/templates/" + name).c_str(), definition.dump(), "application/json");
  ASSERT_TRUE(put && put->status == 201) << (put ? put->body : "no answer");

  const size_t stalled = HttpLimits{}.workers + 44;
  ASSERT_GT(RaiseOpenFiles(), 2 * stalled + 200);
  std::vector<std::unique_ptr<Raw>> slow;
  for (size_t i = 0; i < stalled; ++i) {
    slow.push_back(std::make_unique<Raw>(api.port()));
    ASSERT_TRUE(slow.back()->connected());
    ASSERT_TRUE(slow.back()->Send("POST /v1/templates/" + name + "/leases HTTP/1.1\r\nHost: x\r\nContent-Le"));
  }
  EXPECT_TRUE(HealthzAnswers(api)) << "a GET /healthz was not answered while " << stalled << " clients stalled";
  auto lease = ClientOf(api).Post(("/v1/templates/" + name + "/leases").c_str(), R"({"wait_s":30})", "application/json");
  ASSERT_TRUE(lease) << "a lease request was not answered while " << stalled << " clients stalled";
  EXPECT_EQ(lease->status, 201) << lease->body;
  ClientOf(api).Delete(("/v1/leases/" + json::parse(lease->body).value("id", "x")).c_str());
  api.Client().Delete(("/v1/templates/" + name).c_str());
}

// Thousands of open connections that never send anything. cpp-httplib alone gives each a worker
// for its 5 s keep-alive wait, 256 at a time.
TEST(HttpLimitsTest, ManyIdleConnectionsDoNotStopOthers) {
  testing::InProcessApi api(/*with_pools=*/false);
  const rlim_t files = RaiseOpenFiles();
  const size_t idle = std::min<size_t>(2000, files / 2 - 200);
  ASSERT_GT(idle, 2 * HttpLimits{}.workers) << "open-file limit " << files << " is too low for this test";
  std::vector<std::unique_ptr<Raw>> conns;
  for (size_t i = 0; i < idle; ++i) {
    conns.push_back(std::make_unique<Raw>(api.port()));
    ASSERT_TRUE(conns.back()->connected()) << i;
  }
  EXPECT_TRUE(HealthzAnswers(api)) << "not answered while " << idle << " idle connections were open";
}

TEST(HttpLimitsTest, AHeadNotCompleteInTimeIsAnswered408AndClosed) {
  ApiServerOptions options;
  options.http.head_timeout = std::chrono::seconds(1);
  testing::InProcessApi api(/*with_pools=*/false, 20, options);
  Raw slow(api.port());
  // A byte now and then keeps every single read short: only a deadline on the whole head ends it.
  ASSERT_TRUE(slow.Send("GET /healthz HTTP/1.1\r\n"));
  for (int i = 0; i < 3 && slow.Send("X"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(400));
  bool timed_out = false;
  std::string answer = slow.ReadToClose(&timed_out);
  ASSERT_FALSE(timed_out) << "still open after " << kBound.count() << " s";
  EXPECT_EQ(StatusLine(answer), "HTTP/1.1 408 Request Timeout") << answer;
  EXPECT_EQ(BodyOf(answer)["error"]["code"], "timeout") << answer;
}

TEST(HttpLimitsTest, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
  ApiServerOptions options;
  options.http.idle_timeout = std::chrono::seconds(1);
  testing::InProcessApi api(/*with_pools=*/false, 20, options);
  Raw idle(api.port());
  ASSERT_TRUE(idle.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));  // answered, then kept alive
  bool timed_out = false;
  std::string answer = idle.ReadToClose(&timed_out);
  ASSERT_FALSE(timed_out) << "still open after " << kBound.count() << " s";
  EXPECT_EQ(StatusLine(answer), "HTTP/1.1 200 OK") << "closed quietly after its answer: " << answer;
}

// A body announced but sent a byte at a time: the worker reading it lets go after the grace
// period instead of waiting on each byte for the I/O timeout.
TEST(HttpLimitsTest, ABodyTricklingInIsCutOff) {
  ApiServerOptions options;
  options.http.head_timeout = std::chrono::seconds(1);
  testing::InProcessApi api(/*with_pools=*/false, 20, options);
  Raw slow(api.port());
  ASSERT_TRUE(slow.Send("PUT /v1/templates/trickle HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        "Content-Length: 1000\r\n\r\n{"));
  for (int i = 0; i < 5 && slow.Send(" "); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(400));
  bool timed_out = false;
  slow.ReadToClose(&timed_out);
  EXPECT_FALSE(timed_out) << "the connection was still open after " << kBound.count() << " s";
  EXPECT_TRUE(HealthzAnswers(api));
}

// Past max_connections, the connection waiting longest makes room: a new client is served.
TEST(HttpLimitsTest, ConnectionsPastTheCapEvictTheLongestWaiting) {
  ApiServerOptions options;
  options.http.max_connections = 32;
  testing::InProcessApi api(/*with_pools=*/false, 20, options);
  std::vector<std::unique_ptr<Raw>> conns;
  for (int i = 0; i < 100; ++i) {
    conns.push_back(std::make_unique<Raw>(api.port()));
    ASSERT_TRUE(conns.back()->connected());
  }
  EXPECT_TRUE(HealthzAnswers(api));
  bool timed_out = false;
  EXPECT_EQ(conns.front()->ReadToClose(&timed_out), "");
  EXPECT_FALSE(timed_out) << "the oldest idle connection was not closed";
}

// ---- malformed and oversized requests ----------------------------------------------------------

TEST(HttpLimitsTest, A100KiBHeaderIs431InTheErrorShape) {
  testing::InProcessApi api(/*with_pools=*/false);
  Raw c(api.port());
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100u << 10, 'a') + "\r\n\r\n"));
  std::string answer = c.ReadToClose();
  EXPECT_EQ(StatusLine(answer), "HTTP/1.1 431 Request Header Fields Too Large") << answer.substr(0, 200);
  EXPECT_EQ(BodyOf(answer)["error"]["code"], "invalid_argument") << answer;
  EXPECT_TRUE(HealthzAnswers(api));
}

TEST(HttpLimitsTest, A10KiBHeaderLineIs400) {
  testing::InProcessApi api(/*with_pools=*/false);
  Raw c(api.port());
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(10u << 10, 'a') + "\r\n\r\n"));
  EXPECT_EQ(StatusLine(c.ReadToClose()), "HTTP/1.1 400 Bad Request");
}

// A body announced larger than any route takes is refused at once, not read (and discarded) first.
TEST(HttpLimitsTest, AHugeContentLengthIs413BeforeTheBodyIsSent) {
  testing::InProcessApi api(/*with_pools=*/false);
  Raw c(api.port());
  ASSERT_TRUE(c.Send("PUT /v1/templates/huge HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 10000000000\r\n\r\n"));
  bool timed_out = false;
  std::string answer = c.ReadToClose(&timed_out);
  ASSERT_FALSE(timed_out) << "no answer: the server waits for the body";
  EXPECT_EQ(StatusLine(answer), "HTTP/1.1 413 Payload Too Large") << answer;
  EXPECT_EQ(BodyOf(answer)["error"]["code"], "invalid_argument") << answer;
}

TEST(HttpLimitsTest, PipelinedRequestsAreAllAnsweredInOrder) {
  testing::InProcessApi api(/*with_pools=*/false);
  Raw c(api.port());
  ASSERT_TRUE(c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                     "PUT /v1/templates/Bad HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
                     "GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  std::string answer = c.ReadToClose();
  std::vector<std::string> statuses;
  for (size_t at = answer.find("HTTP/1.1 "); at != std::string::npos; at = answer.find("HTTP/1.1 ", at + 1)) {
    statuses.push_back(answer.substr(at + 9, 3));
  }
  EXPECT_EQ(statuses, (std::vector<std::string>{"200", "400", "404"})) << answer;
}

TEST(HttpLimitsTest, DeeplyNestedJsonIs400NamingTheLimit) {
  testing::InProcessApi api(/*with_pools=*/false);
  const std::string deep = "{\"migrations\":" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto r = api.Client().Put("/v1/templates/deep", deep, "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(testing::InProcessApi::ErrorCodeOf(r), "invalid_argument");
  EXPECT_NE(r->body.find("deeper than 64 levels"), std::string::npos) << r->body;
  EXPECT_TRUE(HealthzAnswers(api));
}

TEST(HttpLimitsTest, InvalidUtf8InAJsonStringIs400) {
  testing::InProcessApi api(/*with_pools=*/false);
  auto r = api.Client().Post("/v1/templates/x/leases", "{\"holder\":\"gw\xff\xfe\"}", "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(testing::InProcessApi::ErrorCodeOf(r), "invalid_argument");
  EXPECT_TRUE(HealthzAnswers(api));
}

}  // namespace
}  // namespace testpool::api
