#include "orchestrator/core/pool_manager.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "orchestrator/core/slot_ops.h"
#include "orchestrator/core/slot_store.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/pg/conninfo.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"
#include "orchestrator/util/thread.h"

namespace testpool::core {
namespace {

enum class SlotState { kWarming, kReady, kLeased, kRecycling, kBroken };

const char* StateName(SlotState s) {
  switch (s) {
    case SlotState::kWarming: return "warming";
    case SlotState::kReady: return "ready";
    case SlotState::kLeased: return "leased";
    case SlotState::kRecycling: return "recycling";
    case SlotState::kBroken: return "broken";
  }
  return "broken";
}

bool Allowed(SlotState from, SlotState to) {
  switch (from) {
    case SlotState::kWarming: return to == SlotState::kReady || to == SlotState::kBroken;
    case SlotState::kReady: return to == SlotState::kLeased || to == SlotState::kBroken;
    case SlotState::kLeased: return to == SlotState::kRecycling || to == SlotState::kReady;  // ready: grant undone
    case SlotState::kRecycling: return to == SlotState::kReady || to == SlotState::kBroken;
    case SlotState::kBroken: return false;
  }
  return false;
}

struct Slot {
  std::string id, name, hash, database, role, password, baseline, lease_id;
  std::string pool;  // its pool's key: the template database name (name and hash)
  SlotState state = SlotState::kWarming;
  int64_t token = 0;
  int generation = 0;
  bool cut_off = false;  // the ended lease's role can no longer log in and has no sessions
  std::shared_ptr<std::mutex> io = std::make_shared<std::mutex>();  // serialises server work on this slot
};

struct Waiter {
  std::condition_variable cv;
  std::string slot_id;     // set when a slot is handed to this waiter
  bool cancelled = false;  // the template was dropped while waiting
};

struct Pool {
  std::string name, hash, template_db;
  PoolConfig config;
  bool current = true;  // false: draining, no new leases, slots removed as they come back
  std::deque<std::string> ready;
  std::deque<std::shared_ptr<Waiter>> waiters;
  std::map<SlotState, int> count;
  int warm_failures = 0;      // in a row; reset by a warm that succeeds
  // No warm starts before this (back-off after failures). Real time, like the condition-variable
  // waits: a back-off paces work against the server, it is not a TTL the clock seam should drive.
  std::chrono::steady_clock::time_point next_warm;
  // The digest of the template's sequences, as every fresh clone has them; learnt from the
  // first clone, so later clones need no connection for their baseline.
  std::string sequences;
  int Total() const {
    int n = 0;
    for (const auto& [state, c] : count) n += c;
    return n;
  }
};

struct Job {
  enum class Kind { kWarm, kRecycle, kDestroy } kind;
  std::string slot_id;
};

PoolCounters::Histogram MakeHistogram(std::vector<double> bounds) {
  PoolCounters::Histogram h;
  h.bounds_ms = std::move(bounds);
  h.cumulative.assign(h.bounds_ms.size(), 0);
  return h;
}

void Observe(PoolCounters::Histogram* h, double ms) {
  for (size_t i = 0; i < h->bounds_ms.size(); ++i) {
    if (ms <= h->bounds_ms[i]) ++h->cumulative[i];
  }
  h->sum_ms += ms;
  ++h->count;
}

Error Invalid(const std::string& m) { return Error(ErrorCode::kInvalidArgument, m); }

// Recycler threads and the reaper yield to the lease path on a busy machine (their server
// sessions are deprioritised likewise, through Backend::Deprioritize).
constexpr int kBackgroundNice = 10;

}  // namespace

struct PoolManager::Impl {
  Impl(ControlStore& s, backend::Backend& b, const util::Clock& c, PoolOptions o)
      : store(s), backend(b), clock(c), options(o), rows(s), ops(s, [&b](int pid) { b.Deprioritize(pid); }) {
    counters.wait = MakeHistogram({0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000});
    counters.recycle = MakeHistogram({5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000});
  }

  ControlStore& store;
  backend::Backend& backend;
  const util::Clock& clock;
  const PoolOptions options;
  SlotStore rows;
  SlotOps ops;

  mutable std::mutex mu;
  std::condition_variable jobs_cv;                        // recycler threads: jobs or stopping changed
  std::condition_variable reaper_cv;                      // the reaper: stopping changed
  bool stopping = false;                                  // guarded by mu
  std::deque<Job> jobs;                                   // guarded by mu
  // Pools by key = template database name: two templates with identical files share a hash but
  // not a pool.
  std::map<std::string, Pool> pools;                      // guarded by mu
  std::map<std::string, std::string> current;             // template name → pool key; guarded by mu
  std::map<std::string, Slot> slots;                      // by id; guarded by mu
  std::map<std::string, LeaseInfo> leases;                // active and recently ended; guarded by mu
  std::map<std::string, util::MonoTime> ended_at;         // lease id → when it ended; guarded by mu
  std::set<std::string> ending;                           // leases being cut off; guarded by mu
  PoolCounters counters;                                  // guarded by mu
  int total_slots = 0;                                    // guarded by mu
  std::vector<std::thread> threads;                       // touched by Start/Stop only
  // One pool manager per control database: it holds this session's advisory lock for its
  // lifetime. A second daemon on the same server builds templates but hands out no leases.
  std::optional<pg::Connection> owner_lock;               // touched by Start/Stop only
  bool passive = false;                                   // guarded by mu

  // ---- state, under mu ------------------------------------------------------------------

  void SetState(Slot& s, SlotState to) {
    if (!Allowed(s.state, to)) {
      // A broken invariant here could hand one database to two holders: stop, loudly, in every build.
      log::Error("slot.bad_transition", {{"slot", s.id}, {"from", StateName(s.state)}, {"to", StateName(to)}});
      std::abort();
    }
    Pool& p = pools.at(s.pool);
    --p.count[s.state];
    ++p.count[to];
    log::Debug("slot.state", {{"slot", s.id}, {"template", s.name}, {"from", StateName(s.state)}, {"to", StateName(to)}});
    s.state = to;
  }

  void Enqueue(Job::Kind kind, const std::string& slot_id) {
    jobs.push_back(Job{kind, slot_id});
    jobs_cv.notify_one();
  }

  // Marks a slot broken and queues its removal.
  void Discard(Slot& s) {
    SetState(s, SlotState::kBroken);
    Enqueue(Job::Kind::kDestroy, s.id);
  }

  // A slot is ready: the first waiter gets it, else it joins the ready queue.
  void OfferReady(Slot& s) {
    Pool& p = pools.at(s.pool);
    if (!p.current) {
      Discard(s);
      return;
    }
    if (!p.waiters.empty()) {
      std::shared_ptr<Waiter> w = p.waiters.front();
      p.waiters.pop_front();
      w->slot_id = s.id;
      w->cv.notify_one();
      return;
    }
    p.ready.push_back(s.id);
  }

  // Starts as many warms as the pool needs and the caps allow; borrows from idle pools when the
  // global cap stands between waiters and a slot.
  void Rebalance(Pool& p) {
    if (!p.current) {
      while (!p.ready.empty()) {
        std::string id = p.ready.front();
        p.ready.pop_front();
        Discard(slots.at(id));
      }
      return;
    }
    if (p.warm_failures > 0 && std::chrono::steady_clock::now() < p.next_warm) return;  // backing off; the reaper retries
    int available = p.count[SlotState::kReady] + p.count[SlotState::kWarming] + p.count[SlotState::kRecycling];
    int want = p.config.min_ready + static_cast<int>(p.waiters.size());
    while (available < want && p.Total() < p.config.max) {
      if (total_slots >= options.max_databases) {
        if (!p.waiters.empty()) Borrow(p);
        break;
      }
      Slot s;
      s.id = util::RandomToken(8);
      s.name = p.name;
      s.hash = p.hash;
      s.pool = p.template_db;
      s.database = std::string(kDatabasePrefix) + "s_" + p.hash.substr(0, 12) + "_" + s.id;
      ++p.count[SlotState::kWarming];
      ++total_slots;
      ++available;
      slots.emplace(s.id, s);
      Enqueue(Job::Kind::kWarm, s.id);
    }
  }

  void Borrow(Pool& starving) {
    Pool* donor = nullptr;
    for (auto& [key, q] : pools) {
      if (&q == &starving || q.ready.empty() || !q.waiters.empty()) continue;
      if (donor == nullptr || q.ready.size() > donor->ready.size()) donor = &q;
    }
    if (donor == nullptr) return;
    std::string id = donor->ready.back();
    donor->ready.pop_back();
    log::Info("pool.borrow", {{"from", donor->name}, {"to", starving.name}, {"slot", id}});
    Discard(slots.at(id));
  }

  // Pools with waiters first, so capacity freed for a starving pool is not refilled elsewhere.
  void RebalanceAll() {
    for (auto& [key, p] : pools) {
      if (!p.waiters.empty()) Rebalance(p);
    }
    for (auto& [key, p] : pools) {
      if (p.waiters.empty()) Rebalance(p);
    }
  }

  // Ends an active lease (under mu): the slot goes to recycling and a recycle job is queued.
  // `cut_off`: the lease's credentials were cut off already (the recycle need not do it again).
  void EndLease(LeaseInfo& lease, const char* how, bool cut_off) {
    lease.state = how;
    lease.password.clear();
    lease.dsn.clear();
    ended_at[lease.id] = clock.Now();
    Slot& s = slots.at(lease.slot_id);
    SetState(s, SlotState::kRecycling);
    s.lease_id.clear();
    s.cut_off = cut_off;
    if (std::string(how) == "released") ++counters.leases_released; else ++counters.leases_expired;
    log::Info(std::string("lease.") + how, {{"lease", lease.id}, {"slot", s.id}, {"template", lease.template_name},
                                            {"token", std::to_string(lease.token)}});
    Enqueue(Job::Kind::kRecycle, s.id);
  }

  // Forgets ended leases after a while (the control database keeps them).
  void TrimEnded() {
    auto cutoff = clock.Now() - std::chrono::minutes(10);
    for (auto it = ended_at.begin(); it != ended_at.end();) {
      if (it->second < cutoff || ended_at.size() > 20000) {
        leases.erase(it->first);
        it = ended_at.erase(it);
      } else {
        ++it;
      }
    }
  }

  LeaseInfo MakeLease(const Slot& s, const std::string& holder, std::chrono::seconds ttl) {
    pg::ConnInfo client = backend.ClientConnInfo();
    LeaseInfo l;
    l.id = util::RandomToken(26);
    l.template_name = s.name;
    l.hash = s.hash;
    l.slot_id = s.id;
    l.holder = holder;
    l.host = client.Get("host");
    l.port = std::stoi(client.Get("port"));
    l.user = s.role;
    l.password = s.password;
    l.database = s.database;
    pg::ConnInfo dsn = client;
    dsn.Set("user", s.role).Set("password", s.password).Set("dbname", s.database);
    l.dsn = dsn.ToUri();
    l.token = s.token;
    l.created_at = clock.WallNow();
    l.expires_at = l.created_at + ttl;
    l.state = "active";
    return l;
  }

  // ---- server work, on recycler threads (never under mu) -----------------------------------

  void Worker() {
    util::LowerThreadPriority(kBackgroundNice);
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      jobs_cv.wait(lock, [&] { return stopping || !jobs.empty(); });
      if (stopping) return;
      Job job = jobs.front();
      jobs.pop_front();
      auto it = slots.find(job.slot_id);
      if (it == slots.end()) continue;
      Slot snapshot = it->second;
      lock.unlock();
      {
        std::lock_guard<std::mutex> io(*snapshot.io);
        switch (job.kind) {
          case Job::Kind::kWarm: Warm(snapshot); break;
          case Job::Kind::kRecycle: Recycle(snapshot); break;
          case Job::Kind::kDestroy: Destroy(snapshot); break;
        }
      }
      lock.lock();
    }
  }

  // Server work on a copy of a slot is done: write its results back and make it ready (under mu).
  void BecomeReady(const Slot& s) {
    Slot& live = slots.at(s.id);
    live.role = s.role;
    live.password = s.password;
    live.baseline = s.baseline;
    live.generation = s.generation;
    live.cut_off = false;
    SetState(live, SlotState::kReady);
    OfferReady(live);
    Rebalance(pools.at(s.pool));
  }

  // Clone + role + baseline, then ready. `s` is a copy; results are written back under mu.
  void Warm(Slot s) {
    std::string template_db;
    {
      std::lock_guard<std::mutex> lock(mu);
      const Pool& p = pools.at(s.pool);
      if (!p.current) {  // replaced or dropped since this warm was queued: nothing to warm for
        Discard(slots.at(s.id));
        return;
      }
      template_db = p.template_db;
    }
    util::MonoTime t0 = clock.Now();
    try {
      ++s.generation;
      s.role = "tp_r_" + s.id + "_" + std::to_string(s.generation);
      s.password = util::RandomToken(32);
      rows.InsertWarming(SlotRow{s.id, s.name, s.hash, s.database, "warming", "", "", "", "", s.token});
      ops.CloneDatabase(s.database, template_db);
      ops.PrepareRole(s.database, s.role, s.password);
      s.baseline = FreshCloneMarks(s);
      rows.MarkReady(SlotRow{s.id, s.name, s.hash, s.database, "ready", s.role, s.password, "", s.baseline, s.token});
    } catch (const std::exception& e) {
      log::Error("slot.warm_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
      std::lock_guard<std::mutex> lock(mu);
      ++counters.slots_broken;
      Pool& p = pools.at(s.pool);
      ++p.warm_failures;
      // 0.2 s, 0.4 s, … up to 10 s between attempts while warming keeps failing.
      auto delay = std::chrono::milliseconds(200) * (1 << std::min(p.warm_failures - 1, 6));
      p.next_warm = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(delay, std::chrono::seconds(10));
      Slot& live = slots.at(s.id);
      live.role = s.role;
      Discard(live);
      return;
    }
    log::Info("slot.ready", {{"slot", s.id}, {"template", s.name}, {"database", s.database},
                             {"ms", log::Ms(util::MsBetween(t0, clock.Now()))}});
    std::lock_guard<std::mutex> lock(mu);
    pools.at(s.pool).warm_failures = 0;
    BecomeReady(s);
  }

  // The write marks of a database cloned from its pool's template a moment ago (nobody else has
  // connected to it): its counters, and the template's sequences. Not under mu.
  std::string FreshCloneMarks(const Slot& s) {
    std::string sequences;
    {
      std::lock_guard<std::mutex> lock(mu);
      sequences = pools.at(s.pool).sequences;
    }
    if (sequences.empty()) {
      sequences = ops.SequenceDigest(s.database);
      std::lock_guard<std::mutex> lock(mu);
      pools.at(s.pool).sequences = sequences;
    }
    return WriteMarks{ops.Counters(s.database), sequences}.Encode();
  }

  void Recycle(Slot s) {
    util::MonoTime t0 = clock.Now();
    bool draining;
    std::string template_db;
    {
      std::lock_guard<std::mutex> lock(mu);
      const Pool& p = pools.at(s.pool);
      draining = !p.current;
      template_db = p.template_db;
    }
    const char* mode = "skip";
    try {
      if (!s.cut_off) ops.CutOff(s.role);
      if (draining) {
        std::lock_guard<std::mutex> lock(mu);
        Discard(slots.at(s.id));
        return;
      }
      if (ops.Unchanged(s.database, WriteMarks::Decode(s.baseline))) {
        // Fresh credentials under a fresh role name; the old role is dropped. The hand-over
        // touches shared catalogs only, so the baseline still holds.
        std::string old_role = s.role;
        ++s.generation;
        s.role = "tp_r_" + s.id + "_" + std::to_string(s.generation);
        s.password = util::RandomToken(32);
        ops.HandOver(s.database, old_role, s.role, s.password);
      } else {
        mode = "clone";
        ops.DropDatabase(s.database);
        ops.DropRole(s.role);
        {
          // The template may have been dropped or replaced meanwhile: then there is nothing to
          // clone from, and nothing to clone for.
          std::lock_guard<std::mutex> lock(mu);
          if (!pools.at(s.pool).current) {
            s.role.clear();
            Discard(slots.at(s.id));
            return;
          }
        }
        ++s.generation;
        s.role = "tp_r_" + s.id + "_" + std::to_string(s.generation);
        s.password = util::RandomToken(32);
        ops.CloneDatabase(s.database, template_db);
        ops.PrepareRole(s.database, s.role, s.password);
        s.baseline = FreshCloneMarks(s);
      }
      rows.MarkReady(SlotRow{s.id, s.name, s.hash, s.database, "ready", s.role, s.password, "", s.baseline, s.token});
    } catch (const std::exception& e) {
      log::Error("slot.recycle_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
      std::lock_guard<std::mutex> lock(mu);
      ++counters.slots_broken;
      Slot& live = slots.at(s.id);
      live.role = s.role;
      Discard(live);
      return;
    }
    double ms = util::MsBetween(t0, clock.Now());
    log::Info("slot.recycled", {{"slot", s.id}, {"template", s.name}, {"mode", mode}, {"ms", log::Ms(ms)}});
    std::lock_guard<std::mutex> lock(mu);
    if (std::string(mode) == "skip") ++counters.recycles_skipped; else ++counters.recycles_cloned;
    Observe(&counters.recycle, ms);
    BecomeReady(s);
  }

  void Destroy(Slot s) {
    try {
      if (!s.role.empty()) ops.CutOff(s.role);
      ops.DropDatabase(s.database);
      if (!s.role.empty()) ops.DropRole(s.role);
      rows.Delete(s.id);
      log::Info("slot.destroyed", {{"slot", s.id}, {"template", s.name}, {"database", s.database}});
    } catch (const std::exception& e) {
      // Left for the next start's reconcile, which removes what no row owns.
      log::Error("slot.destroy_failed", {{"slot", s.id}, {"template", s.name}, {"error", e.what()}});
    }
    std::lock_guard<std::mutex> lock(mu);
    Pool& p = pools.at(s.pool);
    --p.count[SlotState::kBroken];
    slots.erase(s.id);
    --total_slots;
    if (!p.current && p.Total() == 0 && p.waiters.empty()) pools.erase(s.pool);
    RebalanceAll();  // capacity came free
  }

  // ---- reaper -------------------------------------------------------------------------------

  void Reaper() {
    util::LowerThreadPriority(kBackgroundNice);
    std::unique_lock<std::mutex> lock(mu);
    while (!stopping) {
      reaper_cv.wait_for(lock, options.reaper_interval);
      if (stopping) return;
      util::WallTime now = clock.WallNow();
      std::vector<std::pair<std::string, std::string>> expired;  // lease id, role
      for (auto& [id, lease] : leases) {
        if (lease.state == "active" && lease.expires_at <= now && ending.insert(id).second) {
          expired.emplace_back(id, lease.user);
        }
      }
      TrimEnded();
      RebalanceAll();  // picks up pools whose warm back-off ran out
      if (expired.empty()) continue;
      lock.unlock();
      for (const auto& [lease_id, role] : expired) Finish(lease_id, role, "expired");
      lock.lock();
    }
  }

  // Ends a lease whose id is in `ending`: cuts its credentials off first (so an ended lease's DSN
  // never connects), then marks it ended and queues the recycle, then records it. Not under mu.
  void Finish(const std::string& lease_id, const std::string& role, const char* how) {
    bool cut_off = false;
    for (int attempt = 1; attempt <= 3 && !cut_off; ++attempt) {
      try {
        ops.CutOff(role);
        cut_off = true;
      } catch (const std::exception& e) {
        // After three tries the recycle job still cuts off before it touches the database.
        log::Error("lease.cutoff_failed", {{"lease", lease_id}, {"role", role}, {"attempt", std::to_string(attempt)},
                                           {"error", e.what()}});
      }
    }
    std::string slot_id;
    {
      std::lock_guard<std::mutex> lock(mu);
      ending.erase(lease_id);
      auto it = leases.find(lease_id);
      if (it == leases.end() || it->second.state != "active") return;
      slot_id = it->second.slot_id;
      EndLease(it->second, how, cut_off);
    }
    try {
      rows.End(lease_id, slot_id, how);
    } catch (const std::exception& e) {
      log::Error("lease.persist_failed", {{"lease", lease_id}, {"error", e.what()}});
    }
  }

  // ---- start: reload and reconcile ------------------------------------------------------------

  Pool& EnsurePool(const std::string& name, const std::string& hash, bool is_current) {
    auto [it, inserted] = pools.try_emplace(TemplateDatabaseName(name, hash));
    Pool& p = it->second;
    if (inserted) {
      p.name = name;
      p.hash = hash;
      p.template_db = it->first;
      p.current = is_current;
      p.config.min_ready = 0;
    }
    return p;
  }

  void Reconcile() {
    for (const TemplateRow& t : store.ListTemplates()) {
      auto build = store.FindBuild(t.name, t.current_hash);
      if (!build || build->state != "ready") continue;
      if (build->format != kTemplateFormatVersion) {
        // Built by an older testpool: its objects are not owned the way leases need. A PUT of the
        // same files builds it again (the format is part of the hash).
        log::Warn("pool.template_outdated", {{"template", t.name}, {"hash", t.current_hash.substr(0, 12)},
                                             {"format", std::to_string(build->format)}});
        continue;
      }
      Pool& p = EnsurePool(t.name, t.current_hash, true);
      p.config = t.pool;
      current[t.name] = p.template_db;
    }
    std::set<std::string> dbs, roles;
    for (const std::string& d : ops.ListDatabases("tp_s_")) dbs.insert(d);
    for (const std::string& r : ops.ListRoles("tp_r_")) roles.insert(r);
    std::map<std::string, LeaseRow> active;
    for (LeaseRow& l : rows.LoadActiveLeases()) active[l.id] = l;
    util::WallTime now = clock.WallNow();
    std::set<std::string> owned_dbs, owned_roles;
    std::vector<std::string> recycle, destroy;
    for (const SlotRow& r : rows.LoadSlots()) {
      const std::string key = TemplateDatabaseName(r.template_name, r.hash);
      Pool& p = EnsurePool(r.template_name, r.hash, current.count(r.template_name) && current[r.template_name] == key);
      Slot s;
      s.pool = key;
      s.id = r.id;
      s.name = r.template_name;
      s.hash = r.hash;
      s.database = r.database;
      s.role = r.role;
      s.password = r.password;
      s.baseline = r.baseline;
      s.token = r.token;
      s.lease_id = r.lease_id;
      auto dash = r.role.rfind('_');
      s.generation = dash == std::string::npos ? 0 : std::atoi(r.role.c_str() + dash + 1);
      owned_dbs.insert(r.database);
      if (!r.role.empty()) owned_roles.insert(r.role);
      bool intact = dbs.count(r.database) && roles.count(r.role);
      auto lease = active.find(r.lease_id);
      if (r.state == "ready" && intact) {
        s.state = SlotState::kReady;
      } else if (r.state == "leased" && intact && lease != active.end() && lease->second.expires_at > now) {
        s.state = SlotState::kLeased;
        LeaseInfo l = MakeLease(s, lease->second.holder, std::chrono::seconds(0));
        l.id = lease->second.id;
        l.created_at = lease->second.created_at;
        l.expires_at = lease->second.expires_at;
        l.token = lease->second.token;
        leases[l.id] = l;
        log::Info("lease.kept", {{"lease", l.id}, {"slot", s.id}, {"template", s.name}});
      } else if (r.state == "leased" && intact) {
        ops.CutOff(r.role);  // before anything says "expired": its DSN must not connect any more
        s.cut_off = true;
        s.state = SlotState::kRecycling;
        recycle.push_back(s.id);
        ++counters.leases_expired;
        if (lease != active.end()) rows.End(lease->first, s.id, "expired");
        log::Info("lease.expired", {{"lease", r.lease_id}, {"slot", s.id}, {"while", "daemon down"}});
      } else {
        s.state = SlotState::kBroken;
        destroy.push_back(s.id);
      }
      ++p.count[s.state];
      ++total_slots;
      slots.emplace(s.id, s);
      if (s.state == SlotState::kReady) OfferReady(slots.at(s.id));
    }
    rows.ExpireStrayLeases();
    // Orphans are removed on a best-effort basis: one that cannot go now must not stop the daemon.
    for (const std::string& d : dbs) {
      if (owned_dbs.count(d)) continue;
      log::Info("reconcile.orphan_database", {{"database", d}});
      try {
        ops.DropDatabase(d);
      } catch (const std::exception& e) {
        log::Warn("reconcile.orphan_kept", {{"database", d}, {"error", e.what()}});
      }
    }
    for (const std::string& r : roles) {
      if (owned_roles.count(r)) continue;
      log::Info("reconcile.orphan_role", {{"role", r}});
      try {
        ops.DropRole(r);
      } catch (const std::exception& e) {
        log::Warn("reconcile.orphan_kept", {{"role", r}, {"error", e.what()}});
      }
    }
    for (const std::string& id : recycle) Enqueue(Job::Kind::kRecycle, id);
    for (const std::string& id : destroy) Enqueue(Job::Kind::kDestroy, id);
    log::Info("pools.reconciled", {{"slots", std::to_string(slots.size())}, {"leases", std::to_string(leases.size())},
                                   {"recycle", std::to_string(recycle.size())}, {"destroy", std::to_string(destroy.size())}});
  }
};

PoolManager::PoolManager(ControlStore& store, backend::Backend& backend, const util::Clock& clock, PoolOptions options)
    : impl_(std::make_unique<Impl>(store, backend, clock, options)) {}

PoolManager::~PoolManager() { Stop(); }

void PoolManager::Start() {
  std::lock_guard<std::mutex> lock(impl_->mu);  // held across reconcile: nothing else runs yet
  if (!impl_->threads.empty() || impl_->passive) return;
  impl_->stopping = false;
  if (!impl_->owner_lock) {
    pg::Connection conn = pg::Connection::Open(impl_->store.AdminConnInfo(kControlDatabase));
    // "tp" "pools": the one lock that makes a daemon the pool manager of this server.
    if (conn.Exec("SELECT pg_try_advisory_lock(1953505282, 1)").Get(0, 0) != "t") {
      impl_->passive = true;
      log::Warn("pools.passive", {{"reason", "another testpool daemon manages the pools on this server"}});
      return;
    }
    impl_->owner_lock.emplace(std::move(conn));
  }
  impl_->Reconcile();
  for (int i = 0; i < impl_->options.recycler_threads; ++i) impl_->threads.emplace_back([this] { impl_->Worker(); });
  impl_->threads.emplace_back([this] { impl_->Reaper(); });
  impl_->RebalanceAll();
}

void PoolManager::Stop() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    for (auto& [hash, p] : impl_->pools) {
      for (auto& w : p.waiters) w->cv.notify_all();
    }
  }
  impl_->jobs_cv.notify_all();
  impl_->reaper_cv.notify_all();
  for (std::thread& t : impl_->threads) t.join();
  impl_->threads.clear();
  impl_->owner_lock.reset();  // another daemon may manage the pools now
}

void PoolManager::TemplateReady(const std::string& name, const std::string& hash, const std::string& template_db,
                                const PoolConfig& pool) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  Pool& p = impl_->EnsurePool(name, hash, true);
  p.current = true;
  p.config = pool;
  auto old = impl_->current.find(name);
  if (old != impl_->current.end() && old->second != p.template_db) {
    Pool& previous = impl_->pools.at(old->second);
    previous.current = false;
    // Waiters asked for the template, not for a hash: they wait on in the new pool, in order.
    for (auto& w : previous.waiters) p.waiters.push_back(w);
    previous.waiters.clear();
    log::Info("pool.draining", {{"template", name}, {"hash", previous.hash.substr(0, 12)}});
    impl_->Rebalance(previous);
  }
  impl_->current[name] = p.template_db;
  (void)template_db;  // always TemplateDatabaseName(name, hash)
  log::Info("pool.configured", {{"template", name}, {"hash", hash.substr(0, 12)},
                                {"min_ready", std::to_string(pool.min_ready)}, {"max", std::to_string(pool.max)}});
  if (!impl_->threads.empty()) impl_->Rebalance(p);
}

void PoolManager::TemplateDropped(const std::string& name) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto it = impl_->current.find(name);
  if (it == impl_->current.end()) return;
  Pool& p = impl_->pools.at(it->second);
  p.current = false;
  impl_->current.erase(it);
  for (auto& w : p.waiters) {
    w->cancelled = true;
    w->cv.notify_all();
  }
  p.waiters.clear();
  impl_->Rebalance(p);
}

LeaseInfo PoolManager::Acquire(const LeaseRequest& req) {
  util::CheckName(req.template_name, "template name");
  const PoolOptions& o = impl_->options;
  if (req.ttl.count() < 1 || req.ttl > o.max_ttl) {
    throw Invalid("ttl_s must be between 1 and " + std::to_string(o.max_ttl.count()));
  }
  if (req.wait.count() < 0 || req.wait > o.max_wait) {
    throw Invalid("wait_s must be between 0 and " + std::to_string(o.max_wait.count()));
  }
  if (req.holder.size() > 200) throw Invalid("holder must be at most 200 characters");

  const auto real_start = std::chrono::steady_clock::now();
  LeaseInfo lease;
  {
    std::unique_lock<std::mutex> lock(impl_->mu);
    if (impl_->passive) {
      throw Error(ErrorCode::kUnavailable,
                  "another testpool daemon manages the pools on this server; take leases from that daemon");
    }
    auto cur = impl_->current.find(req.template_name);
    if (cur == impl_->current.end()) {
      throw Error(ErrorCode::kNotFound, "no template named '" + req.template_name + "' is ready for leases");
    }
    Pool* p = &impl_->pools.at(cur->second);
    std::string slot_id;
    if (p->waiters.empty() && !p->ready.empty()) {
      slot_id = p->ready.front();
      p->ready.pop_front();
      impl_->Rebalance(*p);
    } else {
      auto w = std::make_shared<Waiter>();
      p->waiters.push_back(w);
      impl_->Rebalance(*p);
      w->cv.wait_for(lock, req.wait, [&] { return !w->slot_id.empty() || impl_->stopping || w->cancelled; });
      if (w->slot_id.empty()) {
        for (auto& [key, pool] : impl_->pools) {  // the waiter may have moved to a newer hash's pool
          auto& q = pool.waiters;
          q.erase(std::remove(q.begin(), q.end(), w), q.end());
        }
        if (impl_->stopping) throw Error(ErrorCode::kUnavailable, "the daemon is stopping");
        if (w->cancelled) throw Error(ErrorCode::kNotFound, "template '" + req.template_name + "' was dropped while waiting");
        ++impl_->counters.leases_exhausted;
        auto now_cur = impl_->current.find(req.template_name);
        Pool& np = now_cur == impl_->current.end() ? *p : impl_->pools.at(now_cur->second);
        throw Error(ErrorCode::kPoolExhausted,
                    "no database of template '" + req.template_name + "' came free within " +
                        std::to_string(req.wait.count()) + " s (pool: " + std::to_string(np.count[SlotState::kLeased]) +
                        " leased, " + std::to_string(np.count[SlotState::kWarming] + np.count[SlotState::kRecycling]) +
                        " warming or recycling, max " + std::to_string(np.config.max) + "; " +
                        std::to_string(impl_->total_slots) + " of " + std::to_string(impl_->options.max_databases) +
                        " databases in all)",
                    {{"template", req.template_name}});
      }
      slot_id = w->slot_id;
    }
    Slot& s = impl_->slots.at(slot_id);
    impl_->SetState(s, SlotState::kLeased);
    ++s.token;
    lease = impl_->MakeLease(s, req.holder, req.ttl);
    s.lease_id = lease.id;
    lease.wait_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - real_start).count();
    impl_->leases[lease.id] = lease;
    ++impl_->counters.leases_granted;
    Observe(&impl_->counters.wait, lease.wait_ms);
  }
  const auto write_start = std::chrono::steady_clock::now();
  try {
    impl_->rows.Grant(LeaseRow{lease.id, lease.slot_id, lease.template_name, lease.hash, lease.holder, "active",
                               lease.token, lease.created_at, lease.expires_at});
  } catch (const Error& e) {
    // Undo: the slot goes back, untouched; nobody saw the lease.
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->leases.erase(lease.id);
    --impl_->counters.leases_granted;
    Slot& s = impl_->slots.at(lease.slot_id);
    s.lease_id.clear();
    impl_->SetState(s, SlotState::kReady);
    impl_->OfferReady(s);
    throw Error(ErrorCode::kUnavailable, std::string("cannot record the lease: ") + e.what());
  }
  log::Info("lease.granted", {{"lease", lease.id}, {"slot", lease.slot_id}, {"template", lease.template_name},
                              {"token", std::to_string(lease.token)}, {"holder", lease.holder},
                              {"wait_ms", log::Ms(lease.wait_ms)},
                              {"write_ms", log::Ms(std::chrono::duration<double, std::milli>(
                                                       std::chrono::steady_clock::now() - write_start).count())}});
  return lease;
}

LeaseInfo PoolManager::Renew(const std::string& lease_id, std::chrono::seconds ttl) {
  const PoolOptions& o = impl_->options;
  if (ttl.count() < 1 || ttl > o.max_ttl) throw Invalid("ttl_s must be between 1 and " + std::to_string(o.max_ttl.count()));
  LeaseInfo out;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      if (impl_->rows.FindLease(lease_id)) throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    LeaseInfo& l = it->second;
    util::WallTime now = impl_->clock.WallNow();
    if (l.state != "active" || l.expires_at <= now || impl_->ending.count(lease_id)) {
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended (" + (l.state == "active" ? "expired" : l.state) + ")");
    }
    l.expires_at = now + ttl;
    out = l;
  }
  impl_->rows.Renew(lease_id, out.expires_at);
  log::Info("lease.renewed", {{"lease", lease_id}, {"slot", out.slot_id}, {"ttl_s", std::to_string(ttl.count())}});
  return out;
}

void PoolManager::Release(const std::string& lease_id) {
  std::string role;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      if (impl_->rows.FindLease(lease_id)) return;  // ended long ago: releasing again is fine
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    if (it->second.state != "active" || !impl_->ending.insert(lease_id).second) return;  // ended, or ending
    role = it->second.user;
  }
  impl_->Finish(lease_id, role, "released");
}

LeaseInfo PoolManager::Reset(const std::string& lease_id) {
  Slot snapshot;
  std::string template_db;
  LeaseInfo lease;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it == impl_->leases.end()) {
      if (impl_->rows.FindLease(lease_id)) throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
      throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
    }
    if (it->second.state != "active" || impl_->ending.count(lease_id)) {
      throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
    }
    lease = it->second;
    snapshot = impl_->slots.at(lease.slot_id);
    template_db = impl_->pools.at(snapshot.pool).template_db;
  }
  util::MonoTime t0 = impl_->clock.Now();
  {
    std::lock_guard<std::mutex> io(*snapshot.io);
    impl_->ops.CutOff(snapshot.role);
    impl_->ops.DropDatabase(snapshot.database);
    impl_->ops.CloneDatabase(snapshot.database, template_db);
    impl_->ops.PrepareRole(snapshot.database, snapshot.role, snapshot.password);  // same credentials
    snapshot.baseline = impl_->FreshCloneMarks(snapshot);
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  auto live = impl_->slots.find(snapshot.id);
  if (live != impl_->slots.end() && live->second.lease_id == lease_id) live->second.baseline = snapshot.baseline;
  ++impl_->counters.resets;
  log::Info("lease.reset", {{"lease", lease_id}, {"slot", snapshot.id}, {"mode", "clone"},
                            {"ms", log::Ms(util::MsBetween(t0, impl_->clock.Now()))}});
  return lease;
}

LeaseInfo PoolManager::GetLease(const std::string& lease_id) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    auto it = impl_->leases.find(lease_id);
    if (it != impl_->leases.end()) return it->second;
  }
  auto row = impl_->rows.FindLease(lease_id);
  if (!row) throw Error(ErrorCode::kNotFound, "no lease " + lease_id);
  LeaseInfo l;
  l.id = row->id;
  l.template_name = row->template_name;
  l.hash = row->hash;
  l.slot_id = row->slot_id;
  l.holder = row->holder;
  l.token = row->token;
  l.created_at = row->created_at;
  l.expires_at = row->expires_at;
  l.state = row->state;
  return l;
}

ManagerStatus PoolManager::Status() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  ManagerStatus st;
  for (const auto& [key, p] : impl_->pools) {
    PoolStatus ps;
    ps.template_name = p.name;
    ps.hash = p.hash;
    ps.current = p.current;
    ps.min_ready = p.config.min_ready;
    ps.max = p.config.max;
    auto get = [&](SlotState s) {
      auto it = p.count.find(s);
      return it == p.count.end() ? 0 : it->second;
    };
    ps.warming = get(SlotState::kWarming);
    ps.ready = get(SlotState::kReady);
    ps.leased = get(SlotState::kLeased);
    ps.recycling = get(SlotState::kRecycling);
    ps.broken = get(SlotState::kBroken);
    ps.waiting = static_cast<int>(p.waiters.size());
    st.pools.push_back(ps);
  }
  st.databases = impl_->total_slots;
  st.max_databases = impl_->options.max_databases;
  st.counters = impl_->counters;
  return st;
}

}  // namespace testpool::core
