// Graceful drain and restart (cli/serve.cc): the real daemon on a real server gets SIGTERM.
// New lease requests, and those already waiting for a slot, get 503 `draining` with Retry-After;
// everything else is still answered (renew, status); a request in progress (a template build
// held on a role name the test is creating) finishes with its normal answer; the daemon then exits
// 0, and the lease it held is served again by the next daemon on the same port (same id, same
// DSN, the data written before). A rolling restart under load (clients leasing, writing,
// renewing and releasing while the daemon is restarted three times) loses no lease and answers
// nothing with a 5xx but that 503.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <map>
#include <mutex>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;
using testing::Daemon;

std::vector<std::string> DaemonArgs() {
  return {"--backend", "external", "--dsn", testing::Admin("postgres").ToKeywordString(), "--drain-timeout", "300"};
}

std::unique_ptr<httplib::Client> Client(int port) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_connection_timeout(std::chrono::seconds(5));
  c->set_read_timeout(std::chrono::seconds(300));
  return c;
}

json Body(const httplib::Result& r) { return r ? json::parse(r->body, nullptr, false) : json(); }
std::string Code(const httplib::Result& r) {
  json b = Body(r);
  return b.is_object() && b.contains("error") ? b["error"].value("code", "") : "";
}
std::string Describe(const httplib::Result& r) {
  return r ? "HTTP " + std::to_string(r->status) + " " + r->body : "transport error " + httplib::to_string(r.error());
}

// Polls `done` until true, for at most a bound only a hang reaches.
template <typename Pred>
bool WaitFor(Pred done, std::chrono::seconds bound = std::chrono::seconds(120)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

json TemplateBody(const std::string& name, const std::string& extra_sql, int min_ready, int max) {
  const std::string sql = "-- " + name + "\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n" + extra_sql;
  return {{"migrations", {{{"name", "0001_t.sql"}, {"sql", sql}}}}, {"pool", {{"min_ready", min_ready}, {"max", max}}}};
}

// The current pool of `name` in /v1/status (null when there is none).
json PoolOf(int port, const std::string& name) {
  json status = Body(Client(port)->Get("/v1/status"));
  if (!status.is_object() || !status["pools"].is_array()) return json();
  for (const json& p : status["pools"]) {
    if (p.value("template", "") == name && p.value("current", false)) return p;
  }
  return json();
}

void DropTemplate(int port, const std::string& name) { Client(port)->Delete(("/v1/templates/" + name).c_str()); }

TEST(DrainTest, SigtermRefusesNewLeasesAnswersTheRestAndTheNextDaemonServesTheLease) {
  const std::string name = "drain_" + util::RandomToken(6);
  const std::string slow = "drain_slow_" + util::RandomToken(6);
  const std::string gate = "drain_gate_" + util::RandomToken(6);  // a role: roles are cluster-wide
  std::string lease_id, dsn;
  int port = 0;
  {
    Daemon d(DaemonArgs());
    ASSERT_TRUE(d.ready()) << d.Log();
    port = d.port();
    auto put = Client(port)->Put(("/v1/templates/" + name).c_str(), TemplateBody(name, "", 1, 1).dump(),
                                 "application/json");
    ASSERT_TRUE(put && (put->status == 201 || put->status == 200)) << Describe(put);
    auto leased = Client(port)->Post(("/v1/templates/" + name + "/leases").c_str(), R"({"ttl_s":600,"wait_s":60})",
                                     "application/json");
    ASSERT_TRUE(leased && leased->status == 201) << Describe(leased) << d.Log();
    lease_id = Body(leased)["id"];
    dsn = Body(leased)["dsn"];
    pg::Connection::Open(dsn).Exec("INSERT INTO t VALUES (42)");

    // A request in progress at SIGTERM: a template build whose migration creates a role the test
    // is creating in a transaction it has not ended, so the migration waits for that transaction.
    // (Not an advisory lock: those are per database, and the migration runs in the template's.)
    pg::Connection holder = pg::Connection::Open(testing::Admin("postgres"));
    holder.Exec("BEGIN");
    holder.Exec("CREATE ROLE " + gate);
    std::optional<httplib::Result> built;
    std::thread building([&] {
      built = Client(port)->Put(("/v1/templates/" + slow).c_str(),
                                TemplateBody(slow, "CREATE ROLE " + gate + ";\n", 0, 1).dump(), "application/json");
    });
    pg::Connection watcher = pg::Connection::Open(testing::Admin("postgres"));
    ASSERT_TRUE(WaitFor([&] {
      return watcher.Exec("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                          {"%CREATE ROLE " + gate + "%"}).Get(0, 0) == "1";
    })) << d.Log();

    // A lease request waiting for the pool's one slot (held above).
    std::optional<httplib::Result> waited;
    std::thread waiting([&] {
      waited = Client(port)->Post(("/v1/templates/" + name + "/leases").c_str(), R"({"wait_s":250})", "application/json");
    });
    ASSERT_TRUE(WaitFor([&] { return PoolOf(port, name).value("waiting", 0) == 1; })) << d.Log();

    d.Signal(SIGTERM);
    waiting.join();  // woken by the drain, not by its wait_s running out
    ASSERT_TRUE(*waited) << Describe(*waited);
    EXPECT_EQ((*waited)->status, 503) << Describe(*waited);
    EXPECT_EQ(Code(*waited), "draining") << Describe(*waited);
    EXPECT_EQ((*waited)->get_header_value("Retry-After"), "1");

    // While the build is in progress the daemon still answers: new leases no, the rest yes.
    auto refused = Client(port)->Post(("/v1/templates/" + name + "/leases").c_str(), "{}", "application/json");
    ASSERT_TRUE(refused) << Describe(refused) << d.Log();
    EXPECT_EQ(refused->status, 503);
    EXPECT_EQ(Code(refused), "draining") << Describe(refused);
    EXPECT_EQ(refused->get_header_value("Retry-After"), "1");
    auto renewed = Client(port)->Post(("/v1/leases/" + lease_id + "/renew").c_str(), R"({"ttl_s":600})",
                                      "application/json");
    EXPECT_TRUE(renewed && renewed->status == 200) << Describe(renewed);
    json status = Body(Client(port)->Get("/v1/status"));
    EXPECT_EQ(status.value("draining", false), true) << status.dump();
    auto metrics = Client(port)->Get("/metrics");
    ASSERT_TRUE(metrics);
    EXPECT_NE(metrics->body.find("testpool_draining 1\n"), std::string::npos);
    EXPECT_TRUE(d.ready());

    // The build goes on to its normal answer; then the daemon stops by itself.
    holder.Exec("ROLLBACK");
    building.join();
    ASSERT_TRUE(*built) << Describe(*built);
    EXPECT_EQ((*built)->status, 201) << Describe(*built);
    ASSERT_TRUE(d.WaitForExit(std::chrono::seconds(120))) << d.Log();
    EXPECT_EQ(d.exit_code(), 0) << d.Log();
    const std::string log = d.Log();
    EXPECT_NE(log.find("daemon.draining signal=SIGTERM"), std::string::npos) << log;
    EXPECT_NE(log.find("daemon.drained ended_by=idle"), std::string::npos) << log;
  }

  // The next daemon on the same port serves the same lease: same DSN, the data written before.
  Daemon next(DaemonArgs(), std::chrono::seconds(120), {}, port);
  ASSERT_TRUE(next.ready()) << next.Log();
  json got = Body(Client(port)->Get(("/v1/leases/" + lease_id).c_str()));
  EXPECT_EQ(got.value("state", ""), "active") << got.dump();
  EXPECT_EQ(pg::Connection::Open(dsn).Exec("SELECT count(*) FROM t WHERE id = 42").Get(0, 0), "1");
  auto renewed = Client(port)->Post(("/v1/leases/" + lease_id + "/renew").c_str(), R"({"ttl_s":600})", "application/json");
  EXPECT_TRUE(renewed && renewed->status == 200) << Describe(renewed);
  auto released = Client(port)->Delete(("/v1/leases/" + lease_id).c_str());
  EXPECT_TRUE(released && released->status == 204) << Describe(released);
  // The template whose build was in progress at SIGTERM was built: it leases.
  auto leased = Client(port)->Post(("/v1/templates/" + slow + "/leases").c_str(), R"({"wait_s":120})", "application/json");
  ASSERT_TRUE(leased && leased->status == 201) << Describe(leased) << next.Log();
  Client(port)->Delete(("/v1/leases/" + Body(leased)["id"].get<std::string>()).c_str());
  DropTemplate(port, name);
  DropTemplate(port, slow);
  pg::Connection::Open(testing::Admin("postgres")).Exec("DROP ROLE IF EXISTS " + gate);
  EXPECT_EQ(next.Terminate(), 0) << next.Log();
}

// What the load's clients saw, from any thread.
struct Seen {
  std::mutex mu;
  std::map<std::string, int> answers;    // "POST lease 201", "DELETE 204", "transport" …
  std::vector<std::string> violations;   // a 5xx but 503 draining, a lease lost (404/410), …
  std::atomic<int> granted{0}, released{0};

  void Note(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    ++answers[what];
  }
  void Violation(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    violations.push_back(what);
  }
};

// One client of the load: lease → write → renew → release, again and again until `stop`. A
// transport error (the daemon between two lives) or 503 draining is retried after a pause;
// any other answer but the expected one is a violation.
void LoadClient(int port, const std::string& name, std::atomic<bool>& stop, Seen& seen, int n) {
  httplib::Client http("127.0.0.1", port);
  http.set_keep_alive(true);
  http.set_connection_timeout(std::chrono::seconds(5));
  http.set_read_timeout(std::chrono::seconds(120));
  // Calls until the answer is not "try again"; false when `stop` came first.
  auto call = [&](const std::string& what, const std::function<httplib::Result()>& send,
                  std::optional<httplib::Result>& out) {
    for (;;) {
      httplib::Result r = send();
      if (!r) {
        seen.Note(what + " transport");
      } else if (r->status == 503 && Code(r) == "draining") {
        seen.Note(what + " 503 draining");
        if (r->get_header_value("Retry-After").empty()) seen.Violation(what + ": 503 draining without Retry-After");
      } else {
        seen.Note(what + " " + std::to_string(r->status));
        if (r->status >= 500) seen.Violation(what + ": " + Describe(r));
        out.emplace(std::move(r));
        return true;
      }
      if (stop.load() && what == "lease") return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a back-off between attempts
    }
  };
  const std::string holder = "load" + std::to_string(n);
  while (!stop.load()) {
    std::optional<httplib::Result> answer;
    if (!call("lease", [&] {
          return http.Post(("/v1/templates/" + name + "/leases").c_str(),
                           json{{"ttl_s", 600}, {"wait_s", 60}, {"holder", holder}}.dump(), "application/json");
        }, answer)) {
      return;
    }
    const httplib::Result& r = *answer;
    if (r->status != 201) {
      seen.Violation("lease: " + Describe(r));
      continue;
    }
    ++seen.granted;
    const json lease = Body(r);
    const std::string id = lease["id"];
    try {
      pg::Connection db = pg::Connection::Open(lease["dsn"].get<std::string>());
      if (db.Exec("SELECT count(*) FROM t").Get(0, 0) != "1") seen.Violation("lease " + id + ": not the template's data");
      db.Exec("INSERT INTO t VALUES ($1::int)", {std::to_string(n)});
    } catch (const std::exception& e) {
      seen.Violation("lease " + id + ": its DSN: " + e.what());
    }
    call("renew", [&] {
      return http.Post(("/v1/leases/" + id + "/renew").c_str(), R"({"ttl_s":600})", "application/json");
    }, answer);
    if ((*answer)->status != 200) seen.Violation("renew " + id + ": " + Describe(*answer));
    call("release", [&] { return http.Delete(("/v1/leases/" + id).c_str()); }, answer);
    if ((*answer)->status != 204) seen.Violation("release " + id + ": " + Describe(*answer));
    ++seen.released;
  }
}

TEST(DrainTest, ARollingRestartUnderLoadLosesNoLeaseAndAnswersNo5xxButDraining) {
  const std::string name = "drain_roll_" + util::RandomToken(6);
  constexpr int kClients = 6;
  constexpr int kRestarts = 3;
  auto daemon = std::make_unique<Daemon>(DaemonArgs());
  ASSERT_TRUE(daemon->ready()) << daemon->Log();
  const int port = daemon->port();
  auto put = Client(port)->Put(("/v1/templates/" + name).c_str(), TemplateBody(name, "", 2, kClients).dump(),
                               "application/json");
  ASSERT_TRUE(put && (put->status == 201 || put->status == 200)) << Describe(put);

  Seen seen;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) clients.emplace_back(LoadClient, port, name, std::ref(stop), std::ref(seen), i);
  std::string logs;
  for (int k = 0; k < kRestarts; ++k) {
    // Restart once the clients have made progress on this daemon.
    const int before = seen.released.load();
    ASSERT_TRUE(WaitFor([&] { return seen.released.load() >= before + 2 * kClients; })) << daemon->Log();
    EXPECT_EQ(daemon->Terminate(std::chrono::seconds(120)), 0) << daemon->Log();
    logs += daemon->Log();
    daemon = std::make_unique<Daemon>(DaemonArgs(), std::chrono::seconds(120), std::map<std::string, std::string>{}, port);
    ASSERT_TRUE(daemon->ready()) << daemon->Log();
  }
  const int before = seen.released.load();
  ASSERT_TRUE(WaitFor([&] { return seen.released.load() >= before + 2 * kClients; })) << daemon->Log();
  stop = true;
  for (std::thread& t : clients) t.join();
  logs += daemon->Log();

  std::string answers;
  for (const auto& [what, n] : seen.answers) answers += "  " + what + ": " + std::to_string(n) + "\n";
  for (size_t at = logs.find("daemon.drained"); at != std::string::npos; at = logs.find("daemon.drained", at + 1)) {
    answers += "  " + logs.substr(at, logs.find('\n', at) - at) + "\n";
  }
  std::cout << "rolling restart: " << kRestarts << " restarts, " << seen.granted << " leases granted, "
            << seen.released << " released\n" << answers;
  EXPECT_TRUE(seen.violations.empty()) << ::testing::PrintToString(seen.violations) << "\n" << answers;
  EXPECT_EQ(seen.granted.load(), seen.released.load());
  // Nothing left leased: every lease granted was released, none is held by nobody.
  EXPECT_TRUE(WaitFor([&] { return PoolOf(port, name).value("leased", -1) == 0; })) << PoolOf(port, name).dump();
  EXPECT_EQ(logs.find("http.internal_error"), std::string::npos);
  DropTemplate(port, name);
  EXPECT_EQ(daemon->Terminate(), 0) << daemon->Log();
}

}  // namespace
}  // namespace testpool
