// The pool manager's state machine on in-memory doors (tests/support/memory_pool_io.h): no server,
// no control database, milliseconds per case. Faults come from fault_points.h. What needs a real
// server (clones, roles, dirty tracking, restarts of the daemon) is in tests/integration.
#include "orchestrator/core/pool_manager.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "orchestrator/core/fault_points.h"
#include "tests/support/fake_clock.h"
#include "tests/support/memory_pool_io.h"

namespace testpool::core {
namespace {

using testing::FakeClock;
using testing::MemoryBackend;
using testing::MemoryRows;
using testing::MemoryWork;

const std::string kHashA(64, 'a');
const std::string kHashB(64, 'b');

// Waits for `done` (polling), for at most a bound that only a hang reaches.
template <typename Pred>
bool WaitFor(Pred done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

class PoolStateTest : public ::testing::Test {
 protected:
  PoolStateTest() : work_(std::make_shared<MemoryWork>()), rows_(std::make_shared<MemoryRows>()) {
    plan_ = std::make_shared<FaultPlan>();
  }
  ~PoolStateTest() override {
    work_->OpenClones();
    if (pools_) pools_->Stop();
  }

  // A manager on the shared in-memory state (a second call is a daemon restart).
  PoolManager& Start(PoolOptions options = {}) {
    if (pools_) pools_->Stop();
    pools_.reset();
    options.reaper_interval = std::chrono::milliseconds(5);
    PoolIo io;
    io.rows = rows_;
    io.shared = work_;
    pools_ = std::make_unique<PoolManager>(WithFaults(std::move(io), plan_), backend_, clock_, options);
    pools_->Start();
    return *pools_;
  }

  // Template `name` at `hash` is built: its pool warms to `min_ready`.
  void Ready(const std::string& name, const std::string& hash, int min_ready, int max) {
    const std::string db = TemplateDatabaseName(name, hash);
    work_->AddDatabase(db);
    PoolConfig config;
    config.min_ready = min_ready;
    config.max = max;
    pools_->TemplateReady(name, hash, db, config);
  }

  PoolStatus Pool(const std::string& name) const {
    for (const PoolStatus& p : pools_->Status().pools) {
      if (p.template_name == name && p.current) return p;
    }
    return PoolStatus{};
  }

  LeaseRequest Request(const std::string& name, int wait_s = 30, int ttl_s = 600) const {
    LeaseRequest r;
    r.template_name = name;
    r.wait = std::chrono::seconds(wait_s);
    r.ttl = std::chrono::seconds(ttl_s);
    r.holder = "unit";
    return r;
  }

  // Every slot database and lease role on the "server" belongs to a slot row (nothing leaked),
  // and every slot row's database exists (nothing lost).
  void ExpectServerMatchesRows() {
    std::set<std::string> row_dbs, row_roles;
    for (const auto& [id, s] : rows_->Slots()) {
      row_dbs.insert(s.database);
      if (!s.role.empty()) row_roles.insert(s.role);
    }
    EXPECT_EQ(work_->Databases(), row_dbs);
    for (const std::string& r : work_->Roles()) EXPECT_TRUE(row_roles.count(r)) << "leaked role " << r;
  }

  FakeClock clock_;
  MemoryBackend backend_;
  std::shared_ptr<MemoryWork> work_;
  std::shared_ptr<MemoryRows> rows_;
  std::shared_ptr<FaultPlan> plan_;
  std::unique_ptr<PoolManager> pools_;
};

TEST_F(PoolStateTest, WarmsToMinReadyWithARowAndARolePerSlot) {
  Start();
  Ready("shop", kHashA, 3, 5);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 3; }));
  EXPECT_EQ(work_->Databases().size(), 3u);
  EXPECT_EQ(work_->Roles().size(), 3u);
  for (const auto& [id, s] : rows_->Slots()) EXPECT_EQ(s.state, "ready") << id;
  ExpectServerMatchesRows();
}

TEST_F(PoolStateTest, WaitersAreServedFirstComeFirstServed) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  LeaseInfo first = pools_->Acquire(Request("shop"));
  auto second = std::async(std::launch::async, [&] { return pools_->Acquire(Request("shop", 60)); });
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").waiting == 1; }));
  auto third = std::async(std::launch::async, [&] { return pools_->Acquire(Request("shop", 60)); });
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").waiting == 2; }));

  pools_->Release(first.id);
  LeaseInfo got2 = second.get();  // the first waiter gets the slot …
  EXPECT_EQ(Pool("shop").waiting, 1);  // … and the later one still waits
  EXPECT_EQ(third.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  pools_->Release(got2.id);
  LeaseInfo got3 = third.get();
  EXPECT_EQ(got2.slot_id, first.slot_id);
  EXPECT_EQ(got3.slot_id, first.slot_id);
  EXPECT_LT(first.token, got2.token);  // fencing tokens strictly increase per slot
  EXPECT_LT(got2.token, got3.token);
  EXPECT_FALSE(work_->CanLogIn(first.user));  // every ended lease's role is cut off
  EXPECT_FALSE(work_->CanLogIn(got2.user));
  EXPECT_TRUE(work_->CanLogIn(got3.user));
}

TEST_F(PoolStateTest, ANewRequestNeverOvertakesAWaiter) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  LeaseInfo first = pools_->Acquire(Request("shop"));
  auto waiter = std::async(std::launch::async, [&] { return pools_->Acquire(Request("shop", 60)); });
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").waiting == 1; }));
  pools_->Release(first.id);
  // A request with no wait at all, made after the release: the waiter has the slot (or it is
  // still recycling), so this one is refused.
  EXPECT_THROW(pools_->Acquire(Request("shop", 0)), Error);
  EXPECT_EQ(waiter.get().slot_id, first.slot_id);
}

TEST_F(PoolStateTest, TheGlobalCapIsNeverExceededAndAStarvedPoolBorrowsOneSlot) {
  PoolOptions options;
  options.max_databases = 2;
  Start(options);
  Ready("big", kHashA, 2, 2);
  ASSERT_TRUE(WaitFor([&] { return Pool("big").ready == 2; }));
  Ready("small", kHashB, 0, 2);
  LeaseInfo lease = pools_->Acquire(Request("small", 60));  // the cap is full: it must borrow
  EXPECT_EQ(lease.template_name, "small");
  // Settled: "big" gave up one ready slot, "small" has the leased one and no spare.
  ASSERT_TRUE(WaitFor([&] {
    const PoolStatus big = Pool("big"), small = Pool("small");
    return big.warming == 0 && small.warming == 0 && big.recycling == 0 && big.ready + small.leased + small.ready == 2;
  }));
  EXPECT_EQ(Pool("small").leased, 1);
  EXPECT_EQ(Pool("small").ready, 0) << "one waiter borrowed more than one slot";
  EXPECT_EQ(Pool("big").ready, 1);
  EXPECT_LE(work_->PeakSlotDatabases(), 2);
  ExpectServerMatchesRows();
}

TEST_F(PoolStateTest, FailedWarmsBackOffThenThePoolRecovers) {
  plan_->Add("clone_database.after", FaultPlan::Action::kFail, 0);  // every clone fails (after creating it)
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return work_->CloneTimes().size() >= 4; }));
  const std::vector<util::MonoTime> t = work_->CloneTimes();
  // 200 ms after the first failure, then 400, 800 (pool_slots.cc): never a tight loop.
  EXPECT_GE(t[1] - t[0], std::chrono::milliseconds(200));
  EXPECT_GE(t[2] - t[1], std::chrono::milliseconds(400));
  EXPECT_GE(t[3] - t[2], std::chrono::milliseconds(800));
  EXPECT_GE(pools_->Status().counters.slots_broken, 3u);
  plan_->Clear();
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").broken == 0; }));
  ExpectServerMatchesRows();
}

// A server that goes away fails every warm in flight at once: that is one failure for the back-off,
// not one per warm (the chaos run saw a postmaster kill push the back-off to its 10 s cap).
TEST_F(PoolStateTest, WarmsFailingTogetherCountOnceForTheBackOff) {
  plan_->Add("clone_database.after", FaultPlan::Action::kFail, 0);
  work_->GateClones(3);  // three warms in flight together, all three fail; later ones wait
  Start();
  Ready("shop", kHashA, 3, 3);
  ASSERT_TRUE(WaitFor([&] { return pools_->Status().counters.slots_broken >= 3; }));
  EXPECT_EQ(pools_->Status().counters.slots_broken, 3u);
  EXPECT_EQ(Pool("shop").warm_failures, 1);
  plan_->Clear();
  work_->OpenClones();
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 3; }));
  EXPECT_EQ(Pool("shop").warm_failures, 0);
  ExpectServerMatchesRows();
}

TEST_F(PoolStateTest, AGrantThatCannotBeRecordedIsUndoneAndTheSlotStaysUsable) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  plan_->Add("grant.before", FaultPlan::Action::kFail);
  try {
    pools_->Acquire(Request("shop"));
    FAIL() << "the grant was not recorded, yet a lease was handed out";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
  EXPECT_EQ(Pool("shop").ready, 1);
  EXPECT_EQ(Pool("shop").leased, 0);
  EXPECT_TRUE(rows_->Leases().empty());
  LeaseInfo lease = pools_->Acquire(Request("shop"));
  EXPECT_EQ(rows_->Leases().at(lease.id).state, LeaseState::kActive);
  EXPECT_EQ(rows_->Slots().at(lease.slot_id).lease_id, lease.id);
}

TEST_F(PoolStateTest, AnExpiredLeaseIsReapedAndCutOff) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  LeaseInfo lease = pools_->Acquire(Request("shop", 30, 5));
  work_->Write(lease.database);
  clock_.Advance(std::chrono::seconds(6));
  ASSERT_TRUE(WaitFor([&] { return pools_->GetLease(lease.id).state == LeaseState::kExpired; }));
  EXPECT_FALSE(work_->CanLogIn(lease.user));
  // The row is written after the lease ends in memory (pool_leases.cc, Finish): wait for it.
  EXPECT_TRUE(WaitFor([&] { return rows_->Leases().at(lease.id).state == LeaseState::kExpired; }));
  // It was written to: re-cloned, then ready again under a new role.
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  EXPECT_EQ(pools_->Status().counters.recycles_cloned, 1u);
  ExpectServerMatchesRows();
}

TEST_F(PoolStateTest, ACleanSlotIsReturnedWithoutAClone) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  const size_t clones = work_->CloneTimes().size();
  LeaseInfo lease = pools_->Acquire(Request("shop"));
  pools_->Release(lease.id);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  EXPECT_EQ(work_->CloneTimes().size(), clones);
  EXPECT_EQ(pools_->Status().counters.recycles_skipped, 1u);
  EXPECT_FALSE(work_->CanLogIn(lease.user));
}

TEST_F(PoolStateTest, AResetOfACleanDatabaseIsACheckAndADirtyOneReclones) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  LeaseInfo lease = pools_->Acquire(Request("shop"));
  const size_t clones = work_->CloneTimes().size();
  // Nothing written: no clone, and the lease's credentials still work.
  pools_->Reset(lease.id);
  EXPECT_EQ(work_->CloneTimes().size(), clones);
  EXPECT_TRUE(work_->CanLogIn(lease.user));
  // Written: re-cloned under the same credentials.
  work_->Write(lease.database);
  pools_->Reset(lease.id);
  EXPECT_EQ(work_->CloneTimes().size(), clones + 1);
  EXPECT_TRUE(work_->CanLogIn(lease.user));
  // The new clone's marks are the baseline: clean again, no clone.
  pools_->Reset(lease.id);
  EXPECT_EQ(work_->CloneTimes().size(), clones + 1);
  const PoolCounters c = pools_->Status().counters;
  EXPECT_EQ(c.resets, 3u);
  EXPECT_EQ(c.resets_skipped, 2u);
  // A release after a clean reset still finds the slot clean.
  pools_->Release(lease.id);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  EXPECT_EQ(pools_->Status().counters.recycles_skipped, 1u);
  ExpectServerMatchesRows();
}

TEST_F(PoolStateTest, ARecycleThatFailsBreaksTheSlotWhichIsReplaced) {
  Start();
  Ready("shop", kHashA, 1, 1);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1; }));
  LeaseInfo lease = pools_->Acquire(Request("shop"));
  plan_->Add("unchanged.before", FaultPlan::Action::kFail);  // the dirty check breaks
  pools_->Release(lease.id);
  ASSERT_TRUE(WaitFor([&] { return pools_->Status().counters.slots_broken == 1; }));
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 1 && Pool("shop").broken == 0; }));
  EXPECT_EQ(rows_->Slots().count(lease.slot_id), 0u) << "the broken slot's row stayed";
  ExpectServerMatchesRows();
}

TEST_F(PoolStateTest, ARestartKeepsLiveLeasesRebuildsHalfWarmedSlotsAndRemovesOrphans) {
  Start();
  Ready("shop", kHashA, 2, 4);
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 2; }));
  LeaseInfo lease = pools_->Acquire(Request("shop"));
  pools_->Stop();
  // What a crash leaves: a database and a role no row owns, and a slot caught mid-warm.
  work_->AddDatabase("tp_s_" + kHashA.substr(0, 12) + "_orphan");
  work_->AddRole("tp_r_orphan_1");
  rows_->PutSlot(SlotRow{"halfwarm", "shop", kHashA, "tp_s_" + kHashA.substr(0, 12) + "_halfwarm", "warming", "",
                         "", "", "", 0});
  rows_->AddTemplate(PooledTemplate{"shop", kHashA, PoolConfig{2, 4, RecycleMode::kClone}, kTemplateFormatVersion});

  Start();
  EXPECT_EQ(pools_->GetLease(lease.id).state, LeaseState::kActive);
  EXPECT_EQ(pools_->GetLease(lease.id).dsn, lease.dsn);
  EXPECT_TRUE(work_->CanLogIn(lease.user));
  ASSERT_TRUE(WaitFor([&] { return Pool("shop").ready == 2 && Pool("shop").warming == 0; }));
  EXPECT_EQ(work_->Roles().count("tp_r_orphan_1"), 0u);
  ExpectServerMatchesRows();
  pools_->Release(lease.id);
  EXPECT_FALSE(work_->CanLogIn(lease.user));
}

TEST_F(PoolStateTest, ASecondManagerOnTheSameRowsStaysPassive) {
  Start();
  PoolIo io;
  io.rows = rows_;
  io.shared = work_;
  PoolManager second(std::move(io), backend_, clock_, PoolOptions{});
  second.Start();
  Ready("shop", kHashA, 1, 1);
  try {
    second.Acquire(Request("shop", 0));
    FAIL() << "a passive manager handed out a lease";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
}

TEST(FaultPlanTest, ParsesRulesAndRefusesTypos) {
  auto plan = FaultPlan::Parse("grant.after=crash@3,clone_database.before=fail@*");
  EXPECT_FALSE(plan->empty());
  EXPECT_TRUE(FaultPlan::Parse("")->empty());
  EXPECT_THROW(FaultPlan::Parse("grant.afterwards=crash"), Error);
  EXPECT_THROW(FaultPlan::Parse("grant.after=explode"), Error);
  EXPECT_THROW(FaultPlan::Parse("grant.after=fail@0"), Error);
  EXPECT_THROW(FaultPlan::Parse("grant.after"), Error);
}

TEST(FaultPlanTest, FiresOnTheNthCallOnly) {
  FaultPlan plan;
  plan.Add("renew.before", FaultPlan::Action::kFail, 2);
  EXPECT_NO_THROW(plan.Hit("renew.before"));
  EXPECT_THROW(plan.Hit("renew.before"), Error);
  EXPECT_NO_THROW(plan.Hit("renew.before"));
  EXPECT_EQ(plan.Count("renew.before"), 3);
}

TEST(FaultPlanDeathTest, ACrashPointKillsTheProcess) {
  FaultPlan plan;
  plan.Add("grant.after", FaultPlan::Action::kCrash);
  EXPECT_EXIT(plan.Hit("grant.after"), ::testing::KilledBySignal(SIGKILL), "fault.crash");
}

}  // namespace
}  // namespace testpool::core
