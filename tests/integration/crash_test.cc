// One crash test per named fault point (core/fault_points.h): the real daemon, on a real server,
// started with TESTPOOL_FAULTS=<point>=crash, is driven to the point and really dies there
// (SIGKILL, no clean-up). The daemon started again reconciles; afterwards nothing is lost (every
// slot row's database exists, every live lease still has its slot, the lease the test held can
// still be released) and nothing leaks (no tp_s_ database and no tp_r_ role that no slot row
// owns, no active lease without its slot), and the template's pool hands out working leases.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using nlohmann::json;
using testing::CliResult;
using testing::Daemon;
using testing::RunCli;

std::vector<std::string> DaemonArgs() {
  return {"--backend", "external", "--dsn", testing::Admin("postgres").ToKeywordString()};
}

// How the test drives the daemon to the point.
enum class Drive {
  kWarm,     // define a template (min_ready 1): the crash comes while its pool warms
  kLease,    // …wait until it is warm, then ask for a lease
  kRelease,  // …lease, then release it (nothing written: the skip path)
  kDirty,    // …lease, write to the database, then release it (the re-clone path)
  kDrop,     // …drop the template (its ready slots are destroyed)
};

struct CrashCase {
  const char* point;
  Drive drive;
  int nth = 1;  // the call at the point that crashes (the pool has max 1: calls come in a known order)
};

void PrintTo(const CrashCase& c, std::ostream* os) { *os << c.point; }

json Get(int port, const std::string& path) {
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(std::chrono::seconds(60));
  auto r = c.Get(path.c_str());
  return r ? json::parse(r->body, nullptr, false) : json();
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

// The current pool of `name` in /v1/status (null when there is none).
json PoolOf(int port, const std::string& name) {
  json status = Get(port, "/v1/status");
  if (!status.is_object() || !status["pools"].is_array()) return json();
  for (const json& p : status["pools"]) {
    if (p.value("template", "") == name && p.value("current", false)) return p;
  }
  return json();
}

// No pool is warming, recycling or destroying a broken slot.
bool Settled(int port) {
  json status = Get(port, "/v1/status");
  if (!status.is_object() || !status["pools"].is_array()) return false;
  for (const json& p : status["pools"]) {
    if (p.value("warming", 0) != 0 || p.value("recycling", 0) != 0 || p.value("broken", 0) != 0) return false;
  }
  return true;
}

class CrashTest : public ::testing::TestWithParam<CrashCase> {
 protected:
  std::string WriteMigrations() {
    auto m = dir_.path() / "migrations";
    std::filesystem::create_directories(m);
    std::ofstream(m / "0001_items.sql") << "CREATE TABLE items (id int PRIMARY KEY);\n"
                                        << "INSERT INTO items VALUES (1), (2);\n-- " << name_ << "\n";
    return m.string();
  }
  CliResult CreateTemplate(const Daemon& d) {
    return RunCli({"template", "create", name_, "--migrations", WriteMigrations(), "--min-ready", "1", "--max", "1"},
                  {{"TESTPOOL_URL", d.url()}});
  }
  json Lease(const Daemon& d, int ttl_s = 600) {
    httplib::Client c("127.0.0.1", d.port());
    c.set_read_timeout(std::chrono::seconds(90));
    const json body = {{"ttl_s", ttl_s}, {"wait_s", 60}};
    auto r = c.Post(("/v1/templates/" + name_ + "/leases").c_str(), body.dump(), "application/json");
    return r && r->status == 201 ? json::parse(r->body, nullptr, false) : json();
  }
  int Release(const Daemon& d, const std::string& id) {
    httplib::Client c("127.0.0.1", d.port());
    c.set_read_timeout(std::chrono::seconds(60));
    auto r = c.Delete(("/v1/leases/" + id).c_str());
    return r ? r->status : -1;
  }

  // Nothing lost, nothing leaked: the server's slot databases are exactly the slot rows', every
  // lease role belongs to a slot row, and every active lease has its slot leased to it.
  void ExpectServerMatchesRows() {
    pg::Connection server = pg::Connection::Open(testing::Admin("postgres"));
    pg::Connection control = pg::Connection::Open(testing::Admin("testpool"));
    std::set<std::string> dbs, roles, row_dbs, row_roles;
    pg::Result r = server.Exec("SELECT datname FROM pg_database WHERE datname LIKE 'tp\\_s\\_%'");
    for (int i = 0; i < r.rows(); ++i) dbs.emplace(r.Get(i, 0));
    r = server.Exec("SELECT rolname FROM pg_roles WHERE rolname LIKE 'tp\\_r\\_%'");
    for (int i = 0; i < r.rows(); ++i) roles.emplace(r.Get(i, 0));
    r = control.Exec("SELECT database, coalesce(role, '') FROM slots");
    for (int i = 0; i < r.rows(); ++i) {
      row_dbs.emplace(r.Get(i, 0));
      row_roles.emplace(r.Get(i, 1));
    }
    EXPECT_EQ(dbs, row_dbs) << "slot databases on the server vs. slot rows";
    for (const std::string& role : roles) EXPECT_TRUE(row_roles.count(role)) << "leaked role " << role;
    r = control.Exec(
        "SELECT l.id FROM leases l WHERE l.state = 'active' AND NOT EXISTS "
        "(SELECT 1 FROM slots s WHERE s.id = l.slot_id AND s.state = 'leased' AND s.lease_id = l.id)");
    EXPECT_EQ(r.rows(), 0) << "an active lease without its slot";
  }

  testing::TempDir dir_;
  const std::string name_ = "crash_" + util::RandomToken(6);
};

TEST_P(CrashTest, TheRestartedDaemonReconcilesNothingLostNothingLeaked) {
  const CrashCase c = GetParam();
  std::string held;  // the lease the test held when the daemon died, if any
  {
    Daemon faulty(DaemonArgs(), std::chrono::seconds(120), {{"TESTPOOL_FAULTS", std::string(c.point) + "=crash@" + std::to_string(c.nth)}});
    ASSERT_TRUE(faulty.ready()) << faulty.Log();
    CliResult created = CreateTemplate(faulty);
    if (c.drive != Drive::kWarm) {
      ASSERT_EQ(created.exit_code, 0) << created.err;
      ASSERT_TRUE(WaitFor([&] { return PoolOf(faulty.port(), name_).value("ready", 0) >= 1; })) << faulty.Log();
    }
    // A grant recorded just before the crash outlives it (the daemon cannot know whether its
    // answer got out): the slot stays leased until the TTL, so keep that short.
    if (c.drive == Drive::kLease) Lease(faulty, 3);
    if (c.drive == Drive::kRelease || c.drive == Drive::kDirty) {
      json lease = Lease(faulty);
      ASSERT_TRUE(lease.is_object()) << faulty.Log();
      held = lease["id"];
      if (c.drive == Drive::kDirty) {
        pg::Connection(pg::Connection::Open(lease["dsn"].get<std::string>())).Exec("INSERT INTO items VALUES (3)");
      }
      Release(faulty, held);
    }
    if (c.drive == Drive::kDrop) RunCli({"template", "drop", name_}, {{"TESTPOOL_URL", faulty.url()}});
    ASSERT_TRUE(faulty.WaitForExit()) << "the daemon did not die at " << c.point << "\n" << faulty.Log();
    EXPECT_NE(faulty.Log().find(std::string("fault.crash point=") + c.point), std::string::npos) << faulty.Log();
  }

  Daemon restarted(DaemonArgs());
  ASSERT_TRUE(restarted.ready()) << restarted.Log();
  if (c.drive == Drive::kWarm) {
    // The build may have ended before the crash or not: define it again (a no-op when built).
    CliResult created = CreateTemplate(restarted);
    ASSERT_EQ(created.exit_code, 0) << created.err << restarted.Log();
  }
  ASSERT_TRUE(WaitFor([&] { return Settled(restarted.port()); })) << restarted.Log();
  ExpectServerMatchesRows();
  if (!held.empty()) {
    // The release the daemon died in may not have been recorded: releasing again ends it.
    EXPECT_EQ(Release(restarted, held), 204) << restarted.Log();
    EXPECT_NE(Get(restarted.port(), "/v1/leases/" + held).value("state", ""), "active");
  }
  if (c.drive != Drive::kDrop) {
    json lease = Lease(restarted);
    ASSERT_TRUE(lease.is_object()) << restarted.Log();
    pg::Connection db = pg::Connection::Open(lease["dsn"].get<std::string>());
    EXPECT_EQ(db.Exec("SELECT count(*) FROM items").Get(0, 0), "2");  // the template's state, no stray write
    EXPECT_EQ(Release(restarted, lease["id"]), 204);
  }
  RunCli({"template", "drop", name_}, {{"TESTPOOL_URL", restarted.url()}});
  ASSERT_TRUE(WaitFor([&] { return Settled(restarted.port()); })) << restarted.Log();
  ExpectServerMatchesRows();
  EXPECT_EQ(restarted.Terminate(), 0) << restarted.Log();
}

INSTANTIATE_TEST_SUITE_P(
    Points, CrashTest,
    ::testing::Values(CrashCase{"insert_warming.after", Drive::kWarm},   // a row, no database yet
                      CrashCase{"clone_database.after", Drive::kWarm},   // a database, its row says warming
                      CrashCase{"prepare_role.after", Drive::kWarm},     // …and a role
                      CrashCase{"mark_ready.before", Drive::kWarm},      // warm done, not recorded
                      CrashCase{"grant.before", Drive::kLease},          // leased in memory only
                      CrashCase{"grant.after", Drive::kLease},           // recorded, the asker never heard
                      CrashCase{"cut_off.after", Drive::kRelease},       // cut off, the lease row still active
                      CrashCase{"end_lease.before", Drive::kRelease},    // …the same, one step later
                      CrashCase{"end_lease.after", Drive::kRelease},     // recorded ended, slot recycling
                      CrashCase{"hand_over.after", Drive::kRelease},     // skip path: the new role, row not updated
                      CrashCase{"drop_database.after", Drive::kDirty},   // re-clone path: old database gone
                      CrashCase{"clone_database.after", Drive::kDirty, 2},  // …new clone made, row not updated
                      CrashCase{"mark_ready.before", Drive::kDirty, 2},     // …clone and role, not recorded
                      CrashCase{"delete_slot.before", Drive::kDrop}),    // a destroyed slot whose row stayed
    [](const ::testing::TestParamInfo<CrashCase>& param) {
      std::string n = std::to_string(param.index) + "_" + param.param.point;
      for (char& ch : n) {
        if (ch == '.') ch = '_';
      }
      return n;
    });

}  // namespace
}  // namespace testpool
