// PoolManager against a real PostgreSQL (started by the test harness through the local backend).
//
// Every case builds fresh templates (random names) through a TemplateService whose listener is
// the PoolManager under test, drives time with a FakeClock, and drops what it made. Waits are
// bounded polls with generous deadlines; nothing asserts how fast anything is.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "tests/support/fake_clock.h"
#include "tests/support/code_of.h"
#include "tests/support/test_server.h"

namespace testpool::core {
namespace {

using namespace std::chrono_literals;
using testing::Admin;

using testing::CodeOf;

// Polls `done` every 25 ms until it holds or `deadline` passes (real time). True when it held.
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds deadline = 60s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (true) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(25ms);
  }
}

// Connects with `info` and runs SELECT 1. False (and the reason in *why) when either fails.
bool CanConnect(const pg::ConnInfo& info, std::string* why = nullptr) {
  try {
    pg::Connection c = pg::Connection::Open(info, 5s);
    c.Exec("SELECT 1");
    return true;
  } catch (const std::exception& e) {
    if (why) *why = e.what();
    return false;
  }
}

pg::ConnInfo LeaseConn(const LeaseInfo& lease, const std::string& dbname = "") {
  pg::ConnInfo info = pg::ConnInfo::Parse(lease.dsn);
  if (!dbname.empty()) info.Set("dbname", dbname);
  return info;
}

std::string Figures(const PoolStatus& p) {
  return p.template_name + " min_ready=" + std::to_string(p.min_ready) + " max=" + std::to_string(p.max) +
         " warming=" + std::to_string(p.warming) + " ready=" + std::to_string(p.ready) +
         " leased=" + std::to_string(p.leased) + " recycling=" + std::to_string(p.recycling) +
         " broken=" + std::to_string(p.broken) + " waiting=" + std::to_string(p.waiting);
}

int Slots(const PoolStatus& p) { return p.warming + p.ready + p.leased + p.recycling + p.broken; }

// A template small enough to build in a blink: two tables, an identity column and a sequence.
constexpr const char* kItemsSql =
    "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text NOT NULL);\n"
    "CREATE TABLE notes (id int PRIMARY KEY, item_id bigint REFERENCES items (id), body text);\n"
    "CREATE SEQUENCE counter START 100;\n";
constexpr const char* kSeedSql = "INSERT INTO items (label) VALUES ('a'), ('b');\n"
                                 "INSERT INTO notes VALUES (1, 1, 'first');\n";

class PoolTest : public ::testing::Test {
 protected:
  static PoolOptions SmallOptions() {
    PoolOptions o;
    o.max_databases = 40;
    o.recycler_threads = 2;
    o.default_ttl = 60s;
    o.max_ttl = 3600s;
    o.max_wait = 120s;
    o.reaper_interval = 100ms;
    return o;
  }

  void SetUp() override {
    store_ = ControlStore::Open(testing::Server().AdminConnInfo());
    builder_ = std::make_unique<TemplateBuilder>(*store_, clock_);
    service_ = std::make_unique<TemplateService>(*store_, *builder_);
  }

  void TearDown() override {
    if (pools_) {
      for (const std::string& id : leases_) {
        try {
          pools_->Release(id);
        } catch (const std::exception&) {
        }
      }
    }
    for (const std::string& name : templates_) {
      try {
        service_->Drop(name, false);
      } catch (const std::exception&) {
      }
    }
    // Give the manager a bounded moment to remove the dropped templates' slots (the dedicated
    // test below asserts it; here it is only cleanup).
    if (pools_) WaitFor([&] { return SlotDatabases().empty(); }, 30s);
    service_.reset();
    pools_.reset();
    builder_.reset();
    store_.reset();
  }

  // Creates and starts a PoolManager and makes it the template service's listener.
  void StartPools(PoolOptions options = SmallOptions()) {
    pools_ = std::make_unique<PoolManager>(*store_, testing::Server(), clock_, options);
    pools_->Start();
    service_->SetListener(pools_.get());
  }

  // Builds a fresh template (random name) with pool sizes `min_ready`/`max`; returns its name.
  // Its files name it, so its hash (and its slot databases' prefix) is its own — unless
  // `shared_files`, which gives every template built so the same files and hash.
  std::string Build(const std::string& stem, int min_ready, int max, bool shared_files = false) {
    std::string name = stem + "_" + util::RandomToken(6);
    templates_.push_back(name);
    TemplateSpec s;
    s.name = name;
    std::string tag = shared_files ? "-- shared files\n" : "-- template " + name + "\n";
    s.migrations = {{"0001_items.sql", tag + kItemsSql}, {"0002_seed.sql", kSeedSql}};
    s.pool = PoolConfig{min_ready, max};
    PutOutcome out = service_->Put(s, true);
    hashes_[name] = out.hash;
    databases_[name] = out.database;
    return name;
  }

  LeaseInfo Lease(const std::string& name, std::chrono::seconds ttl = 60s, std::chrono::seconds wait = 60s,
                  const std::string& holder = "pool_test") {
    LeaseRequest r;
    r.template_name = name;
    r.ttl = ttl;
    r.wait = wait;
    r.holder = holder;
    LeaseInfo l = pools_->Acquire(r);
    std::lock_guard<std::mutex> lock(leases_mu_);
    leases_.push_back(l.id);
    return l;
  }

  // The current pool of `name` in a status snapshot.
  static std::optional<PoolStatus> PoolOf(const ManagerStatus& s, const std::string& name) {
    for (const PoolStatus& p : s.pools) {
      if (p.template_name == name && p.current) return p;
    }
    return std::nullopt;
  }

  std::optional<PoolStatus> Pool(const std::string& name) { return PoolOf(pools_->Status(), name); }

  // Polls until the pool of `name` has `ready` ready slots and nothing warming.
  ::testing::AssertionResult WaitReady(const std::string& name, int ready, std::chrono::milliseconds deadline = 60s) {
    std::optional<PoolStatus> last;
    if (WaitFor([&] {
          last = Pool(name);
          return last && last->ready == ready && last->warming == 0;
        }, deadline)) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "pool of " << name << " did not reach ready=" << ready << " within "
                                         << deadline.count() << " ms; last: "
                                         << (last ? Figures(*last) : std::string("no such pool"));
  }

  // The slot databases (tp_s_<hash12>_…) of `name` on the server, or of every template this test
  // built when `name` is empty.
  // Slot databases that exist on the server for `name` (every template of this test when empty),
  // as the control database records them: hashes are shared by templates with identical files.
  std::vector<std::string> SlotDatabases(const std::string& name = "") {
    std::vector<std::string> out;
    pg::Connection control = pg::Connection::Open(Admin("testpool"));
    pg::Connection admin = pg::Connection::Open(Admin());
    for (const auto& [n, hash] : hashes_) {
      if (!name.empty() && n != name) continue;
      pg::Result r = control.Exec("SELECT database FROM slots WHERE template = $1 ORDER BY 1", {n});
      for (int i = 0; i < r.rows(); ++i) {
        std::string db(r.Get(i, 0));
        if (admin.Exec("SELECT 1 FROM pg_database WHERE datname = $1", {db}).rows() == 1) out.push_back(db);
      }
    }
    return out;
  }

  // Polls until one more recycle (cloned or skipped) than in `before` was counted; returns
  // "skipped", "cloned", or "none" when nothing was counted within the deadline.
  std::string WaitRecycle(const PoolCounters& before) {
    std::string kind = "none";
    WaitFor([&] {
      PoolCounters now = pools_->Status().counters;
      if (now.recycles_skipped > before.recycles_skipped) kind = "skipped";
      if (now.recycles_cloned > before.recycles_cloned) kind = kind == "skipped" ? "both" : "cloned";
      return kind != "none";
    });
    return kind;
  }

  // Leases the only slot of a max=1 pool, runs `sql` through the lease's DSN, releases, and says
  // how the slot was recycled.
  std::string RecycleAfter(const std::string& sql) {
    std::string name = Build("dirty", 1, 1);
    EXPECT_TRUE(WaitReady(name, 1));
    LeaseInfo l = Lease(name);
    {
      pg::Connection c = pg::Connection::Open(LeaseConn(l));
      c.Exec(sql);
    }
    PoolCounters before = pools_->Status().counters;
    pools_->Release(l.id);
    std::string kind = WaitRecycle(before);
    EXPECT_TRUE(WaitReady(name, 1)) << "the slot did not come back after a " << kind << " recycle";
    return kind;
  }

  testing::FakeClock clock_;
  std::unique_ptr<ControlStore> store_;
  std::unique_ptr<TemplateBuilder> builder_;
  std::unique_ptr<TemplateService> service_;
  std::unique_ptr<PoolManager> pools_;
  std::vector<std::string> templates_;
  std::map<std::string, std::string> hashes_;     // template name → hash
  std::map<std::string, std::string> databases_;  // template name → template database
  std::mutex leases_mu_;
  std::vector<std::string> leases_;               // guarded by leases_mu_; released at teardown
};

// ---- 1. warm pools ------------------------------------------------------------------------

TEST_F(PoolTest, TemplateReadyWarmsThePoolToMinReadyWithUnconnectableSlotDatabases) {
  StartPools();
  std::string name = Build("warm", 2, 4);
  ASSERT_TRUE(WaitReady(name, 2));

  ManagerStatus s = pools_->Status();
  std::optional<PoolStatus> p = PoolOf(s, name);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->hash, hashes_[name]);
  EXPECT_EQ(p->min_ready, 2);
  EXPECT_EQ(p->max, 4);
  EXPECT_EQ(p->ready, 2);
  EXPECT_EQ(p->leased, 0);
  EXPECT_EQ(p->waiting, 0);
  EXPECT_LE(Slots(*p), p->max) << Figures(*p);
  int all_slots = 0;
  for (const PoolStatus& each : s.pools) all_slots += Slots(each);
  EXPECT_EQ(s.databases, all_slots) << "databases is not the sum of every pool's slots";
  EXPECT_EQ(s.max_databases, SmallOptions().max_databases);
  EXPECT_EQ(s.counters.leases_granted, 0u);

  std::vector<std::string> dbs = SlotDatabases(name);
  ASSERT_EQ(dbs.size(), 2u) << "expected two tp_s_<hash12>_… databases";

  // A login role with a password but no lease: no slot database lets it in.
  std::string intruder = "tp_test_intruder_" + util::RandomToken(4);
  std::string password = util::RandomToken(12);
  pg::Connection admin = pg::Connection::Open(Admin());
  admin.Exec("CREATE ROLE " + admin.QuoteIdent(intruder) + " LOGIN PASSWORD " + admin.QuoteLiteral(password));
  for (const std::string& db : dbs) {
    pg::ConnInfo info = testing::Server().ClientConnInfo();
    info.Set("user", intruder).Set("password", password).Set("dbname", db);
    EXPECT_FALSE(CanConnect(info)) << "a role without a lease connected to " << db;
  }
  admin.Exec("DROP ROLE " + admin.QuoteIdent(intruder));
}

// ---- 2. isolation ---------------------------------------------------------------------------

TEST_F(PoolTest, TwoLeasesGetSeparateDatabasesAndNeitherRoleReachesTheOther) {
  StartPools();
  std::string name = Build("iso", 2, 4);
  ASSERT_TRUE(WaitReady(name, 2));
  LeaseInfo a = Lease(name);
  LeaseInfo b = Lease(name);
  EXPECT_NE(a.database, b.database);
  EXPECT_NE(a.slot_id, b.slot_id);
  EXPECT_NE(a.user, b.user);
  EXPECT_EQ(a.state, LeaseState::kActive);
  EXPECT_EQ(a.template_name, name);
  EXPECT_EQ(a.hash, hashes_[name]);

  // Each DSN connects on the first try: no retry here.
  pg::Connection ca = pg::Connection::Open(a.dsn);
  pg::Connection cb = pg::Connection::Open(b.dsn);
  EXPECT_EQ(ca.Database(), a.database);
  EXPECT_EQ(cb.Database(), b.database);
  ca.Exec("INSERT INTO items (label) VALUES ('from_a')");
  EXPECT_EQ(ca.Exec("SELECT count(*) FROM items WHERE label = 'from_a'").Get(0, 0), "1");
  EXPECT_EQ(cb.Exec("SELECT count(*) FROM items WHERE label = 'from_a'").Get(0, 0), "0");

  std::string why;
  EXPECT_FALSE(CanConnect(LeaseConn(a, b.database), &why)) << "lease A's role connected to B's database";
  EXPECT_FALSE(CanConnect(LeaseConn(a, databases_[name]), &why)) << "lease A's role connected to the template";
  EXPECT_FALSE(CanConnect(LeaseConn(a, kControlDatabase), &why)) << "lease A's role connected to the control database";
  EXPECT_FALSE(CanConnect(LeaseConn(a, "postgres"), &why)) << "lease A's role connected to the maintenance database";
  EXPECT_FALSE(CanConnect(LeaseConn(a, "template1"), &why)) << "lease A's role connected to template1";
  // Inside its own database it owns the objects through kSlotOwnerRole, and is nothing more.
  pg::Connection own = pg::Connection::Open(a.dsn);
  EXPECT_EQ(own.Exec("SELECT rolsuper::text || rolcreaterole::text || rolcreatedb::text FROM pg_roles "
                     "WHERE rolname = current_user").Get(0, 0), "falsefalsefalse");
  std::string setrole_error;
  EXPECT_NE(CodeOf([&] { own.Exec(std::string("SET ROLE ") + kTemplateOwnerRole); }, &setrole_error), "no error")
      << "a lease role could become the superuser template owner";
  EXPECT_FALSE(CanConnect(LeaseConn(b, a.database), &why)) << "lease B's role connected to A's database";
}

// ---- 3. ownership -------------------------------------------------------------------------

TEST_F(PoolTest, LeaseRoleOwnsTheMigratedObjectsInsideItsDatabase) {
  StartPools();
  std::string name = Build("owner", 1, 2);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo l = Lease(name);
  pg::Connection c = pg::Connection::Open(l.dsn);
  auto ok = [&](const std::string& sql) {
    std::string why;
    EXPECT_EQ(CodeOf([&] { c.Exec(sql); }, &why), "no error") << sql << ": " << why;
  };
  ok("INSERT INTO items (label) VALUES ('x')");
  ok("UPDATE items SET label = 'y' WHERE label = 'a'");
  ok("DELETE FROM notes");
  ok("ALTER TABLE items ADD COLUMN extra int");
  ok("CREATE INDEX items_label_idx ON items (label)");
  ok("TRUNCATE items CASCADE");
  ok("DROP TABLE notes");
  ok("SELECT nextval('counter')");
  ok("ALTER SEQUENCE counter RESTART WITH 5");
  ok("CREATE TABLE public.mine (id int)");
  ok("CREATE TABLE scratch (id int)");
  ok("DROP TABLE items");
}

// ---- 4. recycle -----------------------------------------------------------------------------

TEST_F(PoolTest, RecycledSlotIsBackToTheTemplateStateWithAHigherToken) {
  StartPools();
  std::string name = Build("recycle", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo first = Lease(name);
  {
    pg::Connection c = pg::Connection::Open(first.dsn);
    c.Exec("INSERT INTO items (label) VALUES ('dirty1'), ('dirty2')");
    EXPECT_EQ(c.Exec("SELECT nextval('counter')").Get(0, 0), "100");
    EXPECT_EQ(c.Exec("SELECT nextval('counter')").Get(0, 0), "101");
  }
  pools_->Release(first.id);

  LeaseInfo second = Lease(name);  // max=1: the same slot, once recycled
  EXPECT_EQ(second.slot_id, first.slot_id);
  EXPECT_GT(second.token, first.token);
  EXPECT_NE(second.id, first.id);
  pg::Connection c = pg::Connection::Open(second.dsn);
  EXPECT_EQ(c.Exec("SELECT count(*) FROM items").Get(0, 0), "2");
  EXPECT_EQ(c.Exec("SELECT count(*) FROM items WHERE label LIKE 'dirty%'").Get(0, 0), "0");
  pg::Result seq = c.Exec("SELECT last_value, is_called FROM counter");
  EXPECT_EQ(seq.Get(0, 0), "100");
  EXPECT_EQ(seq.Get(0, 1), "f");
  EXPECT_EQ(c.Exec("SELECT nextval('counter')").Get(0, 0), "100");
}

// ---- 5. dirty tracking ----------------------------------------------------------------------

TEST_F(PoolTest, SelectOnlyLeaseIsRecycledWithoutAClone) {
  StartPools();
  EXPECT_EQ(RecycleAfter("SELECT count(*) FROM items JOIN notes ON notes.item_id = items.id"), "skipped");
}

TEST_F(PoolTest, InsertingLeaseIsRecycledByAClone) {
  StartPools();
  EXPECT_EQ(RecycleAfter("INSERT INTO items (label) VALUES ('new')"), "cloned");
}

TEST_F(PoolTest, NextvalOnlyLeaseIsNotSkipped) {
  StartPools();
  EXPECT_EQ(RecycleAfter("SELECT nextval('counter')"), "cloned");
}

TEST_F(PoolTest, DdlOnlyLeaseIsNotSkipped) {
  StartPools();
  EXPECT_EQ(RecycleAfter("CREATE TABLE made_by_lease (id int)"), "cloned");
}

TEST_F(PoolTest, TruncateOnlyLeaseIsNotSkipped) {
  StartPools();
  EXPECT_EQ(RecycleAfter("TRUNCATE notes"), "cloned");
}

// ---- 6. TTL expiry --------------------------------------------------------------------------

TEST_F(PoolTest, ExpiredLeaseIsCutOffAndItsSlotComesBack) {
  StartPools();
  std::string name = Build("ttl", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo l = Lease(name, 5s);
  pg::Connection open = pg::Connection::Open(l.dsn);
  open.Exec("SELECT 1");

  clock_.Advance(6s);
  std::string state;
  EXPECT_TRUE(WaitFor([&] { return (state = ToString(pools_->GetLease(l.id).state)) == "expired"; }))
      << "lease state stayed " << state;
  EXPECT_FALSE(CanConnect(LeaseConn(l))) << "the expired lease's DSN still connects";
  EXPECT_NE(CodeOf([&] { open.Exec("SELECT 1"); }), "no error") << "the expired lease's open session still runs queries";
  EXPECT_TRUE(WaitReady(name, 1));
  EXPECT_EQ(pools_->Status().counters.leases_expired, 1u);
  EXPECT_EQ(CodeOf([&] { pools_->Renew(l.id, 60s); }), "lease_expired");
}

// Ending a lease must leave no session of its role behind, even for an old holder that keeps
// reconnecting while the slot is cut off and recycled. Only a leak can fail this (no timing).
TEST_F(PoolTest, OldCredentialsRacingTheRecycleLeaveNoSessionInTheRecycledSlot) {
  StartPools();
  std::string name = Build("race", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  int leaked = 0;
  std::string first_leak;
  for (int round = 0; round < 20 && leaked == 0; ++round) {
    LeaseInfo l = Lease(name);
    std::atomic<bool> stop{false};
    std::atomic<int> opened{0};
    std::vector<pg::Connection> got_in;  // touched by the hammer thread until joined
    std::thread hammer([&] {
      while (!stop) {
        try {
          got_in.push_back(pg::Connection::Open(l.dsn, 5s));
          ++opened;
        } catch (const std::exception&) {
        }
      }
    });
    // The holder is in and reconnecting before its lease ends (else the round races nothing).
    EXPECT_TRUE(WaitFor([&] { return opened > 0; })) << "round " << round << ": the hammer never connected";
    pools_->Release(l.id);
    EXPECT_TRUE(WaitReady(name, 1));
    stop = true;
    hammer.join();
    for (pg::Connection& c : got_in) {
      if (CodeOf([&] { c.Exec("SELECT 1"); }) == "no error") {
        if (leaked++ == 0) first_leak = "round " + std::to_string(round) + ": a session of " + l.user + " on " + l.database;
      }
    }
  }
  EXPECT_EQ(leaked, 0) << first_leak << " still runs queries after its lease ended and the slot was ready again";
}

// ---- 7. renew, release, get ------------------------------------------------------------------

TEST_F(PoolTest, RenewMovesExpiresAtAndKeepsTheLeasePastItsFirstExpiry) {
  StartPools();
  std::string name = Build("renew", 1, 2);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo l = Lease(name, 5s);
  LeaseInfo canary = Lease(name, 5s);  // never renewed: its expiry shows a reaper round saw the new time
  EXPECT_LE(std::chrono::abs(l.expires_at - (clock_.WallNow() + 5s)), 1s);

  clock_.Advance(3s);
  LeaseInfo renewed = pools_->Renew(l.id, 60s);
  EXPECT_GT(renewed.expires_at, l.expires_at);
  EXPECT_LE(std::chrono::abs(renewed.expires_at - (clock_.WallNow() + 60s)), 1s);
  EXPECT_EQ(renewed.dsn, l.dsn);
  EXPECT_EQ(renewed.token, l.token);
  EXPECT_LE(std::chrono::abs(pools_->GetLease(l.id).expires_at - renewed.expires_at), 1s);

  clock_.Advance(10s);  // past the first expires_at, well before the renewed one
  // One reaper round looks at every lease against one clock reading: the round that expired the
  // canary also looked at `l`.
  std::string canary_state;
  EXPECT_TRUE(WaitFor([&] { return (canary_state = ToString(pools_->GetLease(canary.id).state)) == "expired"; }))
      << "no reaper round ended the canary: " << canary_state;
  EXPECT_EQ(pools_->Status().counters.leases_expired, 1u) << "only the canary expired";
  EXPECT_EQ(pools_->GetLease(l.id).state, LeaseState::kActive);
  EXPECT_TRUE(CanConnect(LeaseConn(l)));
}

TEST_F(PoolTest, ReleaseIsIdempotentAndEndsTheLease) {
  StartPools();
  std::string name = Build("release", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo l = Lease(name);
  EXPECT_EQ(pools_->GetLease(l.id).state, LeaseState::kActive);
  EXPECT_EQ(CodeOf([&] { pools_->Release(l.id); }), "no error");
  EXPECT_EQ(CodeOf([&] { pools_->Release(l.id); }), "no error");
  EXPECT_EQ(pools_->GetLease(l.id).state, LeaseState::kReleased);
  EXPECT_FALSE(CanConnect(LeaseConn(l))) << "a released lease's DSN still connects";
  EXPECT_EQ(CodeOf([&] { pools_->Renew(l.id, 60s); }), "lease_expired");
  EXPECT_EQ(CodeOf([&] { pools_->Reset(l.id); }), "lease_expired");
  EXPECT_EQ(pools_->Status().counters.leases_released, 1u);
}

TEST_F(PoolTest, UnknownLeaseIdIsNotFound) {
  StartPools();
  const std::string id = util::RandomHex(16);
  EXPECT_EQ(CodeOf([&] { pools_->Release(id); }), "not_found");
  EXPECT_EQ(CodeOf([&] { pools_->GetLease(id); }), "not_found");
  EXPECT_EQ(CodeOf([&] { pools_->Renew(id, 60s); }), "not_found");
  EXPECT_EQ(CodeOf([&] { pools_->Reset(id); }), "not_found");
}

// ---- 8. exhaustion and FIFO -------------------------------------------------------------------

TEST_F(PoolTest, WaitersAreServedInArrivalOrder) {
  StartPools();
  std::string name = Build("fifo", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo holder = Lease(name);

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<int, LeaseInfo>> served;  // guarded by mu, in order of grant
  std::vector<std::string> errors;                // guarded by mu
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      try {
        LeaseInfo l = Lease(name, 60s, 30s, "waiter" + std::to_string(i));
        std::lock_guard<std::mutex> lock(mu);
        served.emplace_back(i, l);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        errors.push_back("waiter " + std::to_string(i) + ": " + e.what());
      }
      cv.notify_all();
    });
    // Start the next one only once this one is surely queued.
    std::optional<PoolStatus> p;
    EXPECT_TRUE(WaitFor([&] { return (p = Pool(name)) && p->waiting == i + 1; }, 30s))
        << "waiter " << i << " never showed as queued; last: " << (p ? Figures(*p) : "no pool");
  }

  std::string to_release = holder.id;
  for (size_t k = 0; k < 3; ++k) {
    pools_->Release(to_release);
    std::unique_lock<std::mutex> lock(mu);
    if (!cv.wait_for(lock, 60s, [&] { return served.size() + errors.size() > k; })) {
      ADD_FAILURE() << "nobody was served after release " << k;
      break;
    }
    if (served.size() <= k) break;  // an error; reported below
    EXPECT_EQ(served[k].first, static_cast<int>(k)) << "grant " << k << " went to waiter " << served[k].first;
    to_release = served[k].second.id;
  }
  pools_->Release(to_release);
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors.front());
  EXPECT_EQ(served.size(), 3u);
}

TEST_F(PoolTest, ZeroWaitOnAnExhaustedPoolFailsAtOnceNamingTheTemplate) {
  StartPools();
  std::string name = Build("exhaust", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo holder = Lease(name);
  std::string message;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(CodeOf([&] { Lease(name, 60s, 0s); }, &message), "pool_exhausted");
  // Not a speed figure: only that a wait of 0 did not wait for anything.
  EXPECT_LT(std::chrono::steady_clock::now() - started, 10s);
  EXPECT_NE(message.find(name), std::string::npos) << message;
  EXPECT_EQ(pools_->Status().counters.leases_exhausted, 1u);
  EXPECT_EQ(pools_->GetLease(holder.id).state, LeaseState::kActive);
}

// ---- 9. concurrency -------------------------------------------------------------------------

TEST_F(PoolTest, SixtyFourThreadsNeverShareASlotAndTokensOnlyGrow) {
  StartPools();
  std::string name = Build("storm", 4, 8);
  ASSERT_TRUE(WaitReady(name, 4));

  constexpr int kThreads = 64, kRounds = 10;
  std::mutex mu;
  std::map<std::string, std::string> holder;  // slot id → lease id; guarded by mu
  std::map<std::string, int64_t> last_token;  // slot id → last token seen; guarded by mu
  int double_grants = 0, token_regressions = 0;  // guarded by mu
  std::vector<std::string> errors;               // guarded by mu
  std::atomic<int> granted{0};

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        try {
          LeaseRequest r;
          r.template_name = name;
          r.ttl = 300s;
          r.wait = 60s;
          r.holder = "t" + std::to_string(t);
          LeaseInfo l = pools_->Acquire(r);
          ++granted;
          {
            std::lock_guard<std::mutex> lock(mu);
            if (!holder[l.slot_id].empty()) ++double_grants;
            holder[l.slot_id] = l.id;
            auto it = last_token.find(l.slot_id);
            if (it != last_token.end() && l.token <= it->second) ++token_regressions;
            last_token[l.slot_id] = l.token;
          }
          {
            pg::Connection c = pg::Connection::Open(l.dsn);
            c.Exec("SELECT count(*) FROM items");
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            if (holder[l.slot_id] == l.id) holder[l.slot_id].clear();
          }
          pools_->Release(l.id);
        } catch (const std::exception& e) {
          std::lock_guard<std::mutex> lock(mu);
          errors.push_back("thread " + std::to_string(t) + " round " + std::to_string(round) + ": " + e.what());
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(double_grants, 0);
  EXPECT_EQ(token_regressions, 0);
  EXPECT_EQ(errors.size(), 0u) << errors.size() << " errors, first: " << (errors.empty() ? "" : errors.front());
  EXPECT_EQ(granted.load(), kThreads * kRounds);
  EXPECT_LE(last_token.size(), 8u) << "more slots than the pool's max were handed out";
  std::optional<PoolStatus> p = Pool(name);
  ASSERT_TRUE(p.has_value());
  EXPECT_LE(Slots(*p), 8) << Figures(*p);
}

// ---- 10. restart ------------------------------------------------------------------------------

TEST_F(PoolTest, RestartKeepsLiveLeasesReapsExpiredOnesAndRemovesOrphans) {
  StartPools();
  std::string name = Build("restart", 2, 3);
  ASSERT_TRUE(WaitReady(name, 2));
  LeaseInfo live = Lease(name, 600s);
  LeaseInfo dying = Lease(name, 5s);
  pools_->Stop();
  service_->SetListener(nullptr);
  pools_.reset();

  clock_.Advance(6s);
  {
    pg::Connection admin = pg::Connection::Open(Admin());
    admin.Exec("CREATE ROLE tp_r_orphan_x LOGIN PASSWORD 'orphan'");
    admin.Exec("CREATE DATABASE tp_s_orphan_x");
  }

  StartPools();
  std::string why;
  EXPECT_TRUE(CanConnect(LeaseConn(live), &why)) << "the live lease's DSN stopped working: " << why;
  LeaseInfo again = pools_->GetLease(live.id);
  EXPECT_EQ(again.state, LeaseState::kActive);
  EXPECT_EQ(again.dsn, live.dsn);
  EXPECT_EQ(again.token, live.token);

  std::string state;
  EXPECT_TRUE(WaitFor([&] { return (state = ToString(pools_->GetLease(dying.id).state)) == "expired"; }))
      << "the lease that expired while the daemon was down is " << state;
  EXPECT_FALSE(CanConnect(LeaseConn(dying))) << "the expired lease's DSN still connects after the restart";

  pg::Connection admin = pg::Connection::Open(Admin());
  auto exists = [&](const char* sql) { return admin.Exec(sql).rows() > 0; };
  EXPECT_TRUE(WaitFor([&] { return !exists("SELECT 1 FROM pg_database WHERE datname = 'tp_s_orphan_x'"); }, 30s))
      << "orphan database tp_s_orphan_x survived Start()";
  EXPECT_TRUE(WaitFor([&] { return !exists("SELECT 1 FROM pg_roles WHERE rolname = 'tp_r_orphan_x'"); }, 30s))
      << "orphan role tp_r_orphan_x survived Start()";
  admin.Exec("DROP DATABASE IF EXISTS tp_s_orphan_x WITH (FORCE)");
  admin.Exec("DROP ROLE IF EXISTS tp_r_orphan_x");
}

// ---- 11. reset ----------------------------------------------------------------------------------

TEST_F(PoolTest, ResetRestoresTheTemplateStateUnderTheSameDsn) {
  StartPools();
  std::string name = Build("reset", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo l = Lease(name);
  {
    pg::Connection c = pg::Connection::Open(l.dsn);
    c.Exec("INSERT INTO items (label) VALUES ('before_reset')");
    c.Exec("SELECT nextval('counter')");
  }
  LeaseInfo after = pools_->Reset(l.id);
  EXPECT_EQ(after.id, l.id);
  EXPECT_EQ(after.dsn, l.dsn);
  EXPECT_EQ(after.state, LeaseState::kActive);
  pg::Connection c = pg::Connection::Open(l.dsn);
  EXPECT_EQ(c.Exec("SELECT count(*) FROM items WHERE label = 'before_reset'").Get(0, 0), "0");
  EXPECT_EQ(c.Exec("SELECT count(*) FROM items").Get(0, 0), "2");
  EXPECT_EQ(c.Exec("SELECT nextval('counter')").Get(0, 0), "100");
  EXPECT_EQ(pools_->Status().counters.resets, 1u);
}

// A reset in clone mode when nothing was written is a check, not a clone: the same database (its
// oid) under the same credentials, the lease's sessions ended. Every kind of write makes the next
// reset re-clone, also one still uncommitted in a session that is open during the reset.
TEST_F(PoolTest, ResetIsACheckWhenNothingWasWrittenAndReclonesAfterEveryKindOfWrite) {
  StartPools();
  std::string name = Build("reset_clean", 1, 1);
  ASSERT_TRUE(WaitReady(name, 1));
  LeaseInfo l = Lease(name);
  pg::Connection admin = pg::Connection::Open(testing::Server().AdminConnInfo());
  auto oid = [&] { return std::string(admin.Exec("SELECT oid FROM pg_database WHERE datname = $1", {l.database}).Get(0, 0)); };
  auto reset = [&](const std::string& sql, bool keep_open) -> std::string {
    const std::string before = oid();
    const uint64_t skipped = pools_->Status().counters.resets_skipped;
    {
      auto c = std::make_unique<pg::Connection>(pg::Connection::Open(l.dsn));
      if (keep_open) c->Exec("BEGIN");
      c->Exec(sql);
      if (keep_open) {
        pools_->Reset(l.id);
        EXPECT_THROW(c->Exec("SELECT 1"), std::exception) << "a session of the lease outlived the reset";
      }
    }
    if (!keep_open) pools_->Reset(l.id);
    const bool skipped_now = pools_->Status().counters.resets_skipped == skipped + 1;
    EXPECT_EQ(skipped_now, oid() == before) << sql;
    pg::Connection c = pg::Connection::Open(l.dsn);  // the same DSN works after either kind
    EXPECT_EQ(c.Exec("SELECT count(*) FROM items").Get(0, 0), "2") << sql;
    EXPECT_EQ(c.Exec("SELECT count(*) FROM pg_class WHERE relname = 'made_by_lease'").Get(0, 0), "0") << sql;
    return skipped_now ? "skipped" : "cloned";
  };
  EXPECT_EQ(reset("SELECT count(*) FROM items JOIN notes ON notes.item_id = items.id", false), "skipped");
  EXPECT_EQ(reset("SELECT count(*) FROM items", true), "skipped");  // an open read-only transaction
  // The reads of the line above (after a reset) did not make the next one dirty either.
  EXPECT_EQ(reset("SELECT 1", false), "skipped");
  EXPECT_EQ(reset("INSERT INTO items (label) VALUES ('new')", false), "cloned");
  EXPECT_EQ(reset("INSERT INTO items (label) VALUES ('uncommitted')", true), "cloned");
  EXPECT_EQ(reset("SELECT nextval('counter')", false), "cloned");
  {
    pg::Connection c = pg::Connection::Open(l.dsn);
    EXPECT_EQ(c.Exec("SELECT nextval('counter')").Get(0, 0), "100");  // restored by that re-clone
  }
  EXPECT_EQ(reset("SELECT 1", false), "cloned");                       // …after this nextval
  EXPECT_EQ(reset("CREATE TABLE made_by_lease (id int)", false), "cloned");
  EXPECT_EQ(reset("TRUNCATE notes", false), "cloned");
  EXPECT_EQ(reset("SELECT 1", false), "skipped");  // the last clone is the baseline now
  // The check's own session in the database (kept for the next check) ended from outside: it is
  // replaced, and the check still tells clean from dirty.
  admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", {l.database});
  EXPECT_EQ(reset("SELECT 1", false), "skipped");
  EXPECT_EQ(reset("SELECT setval('counter', 500)", false), "cloned");
  EXPECT_EQ(pools_->Status().counters.resets, 12u);
}

// ---- 12. global cap ------------------------------------------------------------------------------

TEST_F(PoolTest, GlobalCapBoundsSlotsAcrossPoolsAndAStarvedPoolBorrows) {
  PoolOptions o = SmallOptions();
  o.max_databases = 3;
  StartPools(o);

  std::atomic<bool> stop{false};
  std::atomic<int> most_databases{0}, most_slots{0};
  std::vector<std::string> mine;  // filled before the monitor reads it
  std::string a = Build("capa", 2, 4);
  ASSERT_TRUE(WaitReady(a, 2));
  std::string b = Build("capb", 2, 4);
  mine = {a, b};
  std::thread monitor([&] {
    while (!stop) {
      ManagerStatus s = pools_->Status();
      int slots = 0;
      for (const PoolStatus& p : s.pools) {
        if (std::find(mine.begin(), mine.end(), p.template_name) != mine.end()) slots += Slots(p);
      }
      most_databases = std::max(most_databases.load(), s.databases);
      most_slots = std::max(most_slots.load(), slots);
      std::this_thread::sleep_for(10ms);
    }
  });

  // b warms what the cap leaves it (one slot); the Rebalance that runs when that slot becomes
  // ready (under the same lock as the figures read here) wants a second one and meets the cap.
  std::optional<PoolStatus> pa, pb;
  int databases = 0;
  EXPECT_TRUE(WaitFor([&] {
    ManagerStatus s = pools_->Status();
    pa = PoolOf(s, a);
    pb = PoolOf(s, b);
    databases = s.databases;
    return pa && pb && pa->ready == 2 && pb->ready == 1 && pb->warming == 0 && databases == 3;
  })) << "b never warmed its one slot under the cap: " << (pa ? Figures(*pa) : "no pool a") << "; "
      << (pb ? Figures(*pb) : "no pool b") << "; databases=" << databases;
  std::string why;
  EXPECT_EQ(CodeOf([&] { Lease(b, 60s, 60s); }, &why), "no error") << why;
  EXPECT_EQ(CodeOf([&] { Lease(b, 60s, 60s); }, &why), "no error") << "the starved pool did not borrow: " << why;
  // Settled: the lent slots are gone (each removal rebalanced every pool, which refilled against
  // the cap: together they want more than it leaves), nothing is warming, and the cap is full.
  auto busy = [](const PoolStatus& p) { return p.warming + p.recycling + p.broken; };
  EXPECT_TRUE(WaitFor([&] {
    ManagerStatus s = pools_->Status();
    pa = PoolOf(s, a);
    pb = PoolOf(s, b);
    databases = s.databases;
    return pa && pb && busy(*pa) == 0 && busy(*pb) == 0 && pb->leased == 2 && databases == 3;
  })) << "never settled after the borrow: " << (pa ? Figures(*pa) : "no pool a") << "; "
      << (pb ? Figures(*pb) : "no pool b") << "; databases=" << databases;
  stop = true;
  monitor.join();

  EXPECT_LE(most_databases.load(), 3);
  EXPECT_LE(most_slots.load(), 3);
  EXPECT_EQ(pools_->Status().max_databases, 3);
  EXPECT_LE(SlotDatabases().size(), 3u);
}

// ---- 13. bad input ----------------------------------------------------------------------------

TEST_F(PoolTest, BadLeaseRequestsGetTheDocumentedErrors) {
  StartPools();
  std::string name = Build("bad", 1, 1);
  auto acquire = [&](std::string tpl, std::chrono::seconds ttl, std::chrono::seconds wait, std::string holder = "h") {
    return CodeOf([&] { Lease(tpl, ttl, wait, holder); });
  };
  EXPECT_EQ(acquire(name, 0s, 1s), "invalid_argument") << "ttl 0";
  EXPECT_EQ(acquire(name, -5s, 1s), "invalid_argument") << "negative ttl";
  EXPECT_EQ(acquire(name, SmallOptions().max_ttl + 1s, 1s), "invalid_argument") << "ttl > max_ttl";
  EXPECT_EQ(acquire(name, 60s, SmallOptions().max_wait + 1s), "invalid_argument") << "wait > max_wait";
  EXPECT_EQ(acquire(name, 60s, -1s), "invalid_argument") << "negative wait";
  EXPECT_EQ(acquire(name, 60s, 1s, std::string(201, 'x')), "invalid_argument") << "holder > 200 chars";
  EXPECT_EQ(acquire("no_such_template_" + util::RandomToken(4), 60s, 1s), "not_found");
  EXPECT_EQ(acquire("Not-A-Name", 60s, 1s), "invalid_name");
  EXPECT_EQ(pools_->Status().counters.leases_granted, 0u);
}

// ---- dropping a template ------------------------------------------------------------------------

TEST_F(PoolTest, DroppingOneOfTwoTemplatesWithIdenticalFilesLeavesTheOtherLeasable) {
  StartPools();
  std::string a = Build("twin_a", 1, 2, true);
  std::string b = Build("twin_b", 1, 2, true);
  ASSERT_EQ(hashes_[a], hashes_[b]) << "the test needs two names with one hash";
  EXPECT_TRUE(WaitReady(a, 1));
  EXPECT_TRUE(WaitReady(b, 1)) << "each template name should have a pool of its own";
  service_->Drop(a, false);
  std::string why;
  LeaseInfo l;
  EXPECT_EQ(CodeOf([&] { l = Lease(b, 60s, 30s); }, &why), "no error") << why;
  if (!l.dsn.empty()) {
    EXPECT_TRUE(CanConnect(LeaseConn(l), &why)) << why;
    EXPECT_EQ(l.template_name, b);
  }
}

TEST_F(PoolTest, DroppedTemplateLosesItsSlotsAndGivesNoLeases) {
  StartPools();
  std::string name = Build("drop", 2, 3);
  ASSERT_TRUE(WaitReady(name, 2));
  LeaseInfo held = Lease(name);
  service_->Drop(name, false);
  EXPECT_EQ(CodeOf([&] { Lease(name, 60s, 0s); }), "not_found");
  EXPECT_EQ(pools_->GetLease(held.id).state, LeaseState::kActive) << "a drop must not end live leases";
  EXPECT_TRUE(WaitFor([&] { return SlotDatabases(name) == std::vector<std::string>{held.database}; }))
      << "ready slots of the dropped template were not removed";
  pools_->Release(held.id);
  EXPECT_TRUE(WaitFor([&] { return SlotDatabases(name).empty(); }))
      << "the released slot of the dropped template was not removed";
}

}  // namespace
}  // namespace testpool::core
