// Lease handout, recycle throughput and daemon memory, measured against the real `testpool serve`
// over HTTP, each beside the raw PostgreSQL primitive measured on the same server in the same run:
//   1. starts the daemon (local backend, fresh state dir), PUTs the demo template, waits for 40 ready;
//   2. handout latency (the POST only), 20 keep-alive clients, LEASES leases each way:
//      a. warm: in rounds, the clients take every ready slot and hold them, then release all and
//         let the pool settle — no recycle runs while handouts are timed (the targets' figure);
//      b. under churn: the clients lease and release back to back, asking only while the pool has
//         ready slots to spare, while the recycler works behind them (hold-back time reported);
//   3. raw CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY ×20 (+ DROP) as the daemon's superuser;
//   4. 40 leases dirtied and released at once: time until the pool is whole again → clones/s,
//      beside sequential raw CREATE + DROP pairs on one connection;
//   5. a second template so that 100 slots exist: the daemon's VmRSS;
//   6. the soak: 200 clients lease and release for 60 s (TESTPOOL_SOAK_S): no double grant (fencing
//      tokens checked by the clients), no error, every sampled DSN connects on the first try;
// then prints one table with the targets from DESIGN.md marked met/missed, stops the daemon
// (SIGTERM) and removes the state dir. Every wait is bounded; a daemon that fails ends the run
// with a non-zero exit and the tail of its log.
//
// usage: lease_bench [SOURCE_DIR] [TESTPOOL_BINARY] [LEASES]   (TESTPOOL_BENCH_KEEP=1 keeps the state dir and log)
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/daemon_harness.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace testpool;
using namespace testpool::bench;

namespace {

constexpr int kClients = 20;
constexpr int kMinReady = 40;
constexpr int kPoolMax = 120;
constexpr int kMaxDatabases = 150;
constexpr int kRawClones = 20;
constexpr int kRecycleCount = 40;
constexpr int kRssSlots = 100;
constexpr int kSoakClients = 200;
constexpr int kSoakSeconds = 60;  // TESTPOOL_SOAK_S overrides
const char* const kTemplate = "app";
const char* const kRssTemplate = "app_rss";

// Targets from DESIGN.md "Figures we hold ourselves to".
constexpr double kTargetP50Ms = 1.0;
constexpr double kTargetP99Ms = 5.0;
constexpr double kTargetRecycleRatio = 0.8;
constexpr double kTargetRssMb = 50.0;

struct PoolFigures {
  std::string template_name, hash;
  int ready = 0, leased = 0, warming = 0, recycling = 0, broken = 0, waiting = 0;
};
struct Status {
  std::vector<PoolFigures> pools;
  int databases = 0;
  int max_databases = 0;
  json counters;
  const PoolFigures* Find(const std::string& name, const std::string& hash) const {
    for (const auto& p : pools) {
      if (p.template_name == name && (hash.empty() || p.hash == hash)) return &p;
    }
    return nullptr;
  }
  int Warming() const {
    int n = 0;
    for (const auto& p : pools) n += p.warming + p.recycling;
    return n;
  }
  long long Counter(const char* name) const {
    if (!counters.is_object() || !counters.contains(name) || !counters[name].is_number()) return -1;
    return counters[name].get<long long>();
  }
};

int IntField(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int>() : 0;
}

Status GetStatus(httplib::Client& c) {
  auto r = c.Get("/v1/status");
  if (!r || r->status != 200) Fail("GET /v1/status failed: " + DescribeWithBody(r));
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("pools") || !j["pools"].is_array()) {
    Fail("GET /v1/status answered something unexpected: " + r->body.substr(0, 400));
  }
  Status s;
  for (const json& p : j["pools"]) {
    PoolFigures f;
    f.template_name = p.value("template", std::string());
    f.hash = p.value("hash", std::string());
    f.ready = IntField(p, "ready");
    f.leased = IntField(p, "leased");
    f.warming = IntField(p, "warming");
    f.recycling = IntField(p, "recycling");
    f.broken = IntField(p, "broken");
    f.waiting = IntField(p, "waiting");
    s.pools.push_back(f);
  }
  s.databases = IntField(j, "databases");
  s.max_databases = IntField(j, "max_databases");
  if (j.contains("counters")) s.counters = j["counters"];
  return s;
}

// Polls /v1/status every `every` until `done(status)`; fails past `timeout` or when the daemon dies.
template <typename Done, typename Progress>
Status WaitForStatus(Daemon& daemon, httplib::Client& c, const std::string& what, std::chrono::seconds timeout,
                     std::chrono::milliseconds every, Done done, Progress progress) {
  auto deadline = SteadyClock::now() + timeout;
  Status s;
  for (;;) {
    daemon.CheckAlive(what);
    s = GetStatus(c);
    progress(s);
    if (done(s)) return s;
    if (SteadyClock::now() > deadline) {
      std::string pools;
      for (const auto& p : s.pools) {
        pools += " [" + p.template_name + " ready " + std::to_string(p.ready) + " leased " + std::to_string(p.leased) +
                 " warming " + std::to_string(p.warming) + " recycling " + std::to_string(p.recycling) + " broken " +
                 std::to_string(p.broken) + "]";
      }
      Fail("timed out after " + std::to_string(timeout.count()) + "s " + what + "; status: databases " +
           std::to_string(s.databases) + pools);
    }
    std::this_thread::sleep_for(every);
  }
}

struct Lease {
  std::string id, dsn, database;
  long long token = 0;
};
const char* const kLeaseFields[] = {"id", "dsn", "host", "port", "user", "password", "database", "token", "expires_at"};

// One POST …/leases; nullopt with `error` set on anything but a well-formed 201.
std::optional<Lease> TakeLease(httplib::Client& c, const std::string& tpl, int wait_s, std::string* error) {
  json req = {{"ttl_s", 600}, {"wait_s", wait_s}, {"holder", "lease_bench"}};
  auto r = c.Post("/v1/templates/" + tpl + "/leases", req.dump(), "application/json");
  if (!r || r->status != 201) {
    *error = Describe(r);
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "malformed lease answer";
    return std::nullopt;
  }
  for (const char* f : kLeaseFields) {
    if (!j.contains(f)) {
      *error = std::string("lease answer without '") + f + "'";
      return std::nullopt;
    }
  }
  if (!j["id"].is_string() || !j["dsn"].is_string() || !j["database"].is_string() || !j["token"].is_number_integer()) {
    *error = "lease answer with ill-typed id/dsn/database/token";
    return std::nullopt;
  }
  return Lease{j["id"].get<std::string>(), j["dsn"].get<std::string>(), j["database"].get<std::string>(),
               j["token"].get<long long>()};
}

bool ReleaseLease(httplib::Client& c, const std::string& id, std::string* error) {
  auto r = c.Delete("/v1/leases/" + id);
  if (r && r->status == 204) return true;
  *error = Describe(r);
  return false;
}

// What the daemon itself says about the recycles between two status snapshots.
struct RecycleFigures {
  long long cloned = -1, skipped = -1;
  double mean_ms = -1;
};
RecycleFigures Recycles(const Status& a, const Status& b) {
  RecycleFigures f;
  if (a.Counter("recycles_cloned") < 0 || b.Counter("recycles_cloned") < 0) return f;
  f.cloned = b.Counter("recycles_cloned") - a.Counter("recycles_cloned");
  f.skipped = b.Counter("recycles_skipped") - a.Counter("recycles_skipped");
  auto hist = [](const Status& s, const char* key) {
    const json& h = s.counters.is_object() && s.counters.contains("recycle") ? s.counters["recycle"] : json();
    return h.is_object() && h.contains(key) && h[key].is_number() ? h[key].get<double>() : 0.0;
  };
  double n = hist(b, "count") - hist(a, "count");
  if (n > 0) f.mean_ms = (hist(b, "sum_ms") - hist(a, "sum_ms")) / n;
  return f;
}
std::string RecycleText(const RecycleFigures& f) {
  if (f.cloned < 0) return "daemon recycle counters unavailable";
  return std::to_string(f.cloned) + " re-cloned, " + std::to_string(f.skipped) + " skipped, daemon-side mean " +
         Fmt("%.1f ms", f.mean_ms) + " per recycle";
}

struct Results {
  std::string load_before, load_after;
  bench::Samples handout, release, clone, drop, pair;
  bench::Samples warm;  // 2a: handouts with no recycle underway
  int warm_asked = 0, warm_errors = 0;
  double warm_cpu_ms = 0;     // the daemon's CPU time over the warm phase (leases and releases)
  bench::Samples raw_write;   // the raw primitive: the lease-row write from 20 libpq clients
  int leases_asked = 0;
  int handout_errors = 0, release_errors = 0;
  std::string handout_error_kinds;
  int min_ready_seen = -1, max_waiting_seen = 0;
  double recycle_s = 0, raw_pairs_s = 0;
  RecycleFigures handout_recycles, dirty_recycles;
  double handout_s = 0, held_back_s = 0;
  double rss_mb = -1, hwm_mb = -1;
  // The soak: 200 clients lease and release for a minute.
  int soak_s = 0;
  bench::Samples soak_lease;  // request to grant, waiting included
  long soak_granted = 0, soak_connects = 0;
  int soak_errors = 0, double_grants = 0, token_regressions = 0, connect_failures = 0;
  std::string soak_error_kinds;
  int rss_slots = 0;
  int threads = -1;
  int pg_major = 0;
};

// 6. The soak: kSoakClients keep-alive clients lease (waiting up to 30 s: there are more clients
// than slots) and release for kSoakSeconds. A checker sees every grant: no database may be granted
// while a client still holds it, and its fencing token must exceed every token it had before.
// Every fourth lease connects through its DSN, which must work on the first try.
void Soak(Daemon& daemon, int port, Results* out) {
  const char* env = std::getenv("TESTPOOL_SOAK_S");
  out->soak_s = env != nullptr && std::atoi(env) > 0 ? std::atoi(env) : kSoakSeconds;
  std::printf("soak: %d clients lease and release for %d s\n", kSoakClients, out->soak_s);
  struct Held {
    bool active = false;
    long long token = 0;
  };
  std::mutex mu;
  std::map<std::string, Held> held;  // database → its state as the clients see it; guarded by mu
  Tally errors;
  std::atomic<long> granted{0}, connects{0};
  std::atomic<int> double_grants{0}, regressions{0}, connect_failures{0};
  const auto deadline = SteadyClock::now() + std::chrono::seconds(out->soak_s);
  std::vector<std::thread> clients;
  std::vector<bench::Samples> latencies(kSoakClients);
  for (int t = 0; t < kSoakClients; ++t) {
    clients.emplace_back([&, t] {
      auto c = MakeClient(port, 60s);
      for (int n = 0; SteadyClock::now() < deadline; ++n) {
        std::string err;
        std::optional<Lease> lease;
        double ms = bench::TimeMs([&] { lease = TakeLease(*c, kTemplate, 30, &err); });
        if (!lease) {
          errors.Add(err);
          std::this_thread::sleep_for(100ms);  // do not spin on a failing daemon
          continue;
        }
        latencies[t].Add(ms);
        ++granted;
        {
          std::lock_guard<std::mutex> lock(mu);
          Held& h = held[lease->database];
          if (h.active) ++double_grants;
          if (lease->token <= h.token) ++regressions;
          h.active = true;
          h.token = std::max(h.token, lease->token);
        }
        if ((n + t) % 4 == 0) {
          ++connects;
          try {
            pg::Connection conn = pg::Connection::Open(lease->dsn, 5s);
            conn.Exec("SELECT count(*) FROM products");
          } catch (const std::exception& e) {
            ++connect_failures;
            errors.Add(std::string("DSN did not connect: ") + e.what());
          }
        }
        {
          std::lock_guard<std::mutex> lock(mu);
          held[lease->database].active = false;  // before the release: the next grant may follow it at once
        }
        if (!ReleaseLease(*c, lease->id, &err)) errors.Add("release: " + err);
      }
    });
  }
  for (auto& t : clients) t.join();
  daemon.CheckAlive("soaking");
  for (const auto& s : latencies) out->soak_lease.ms.insert(out->soak_lease.ms.end(), s.ms.begin(), s.ms.end());
  out->soak_granted = granted;
  out->soak_connects = connects;
  out->soak_errors = errors.total();
  out->soak_error_kinds = errors.Summary();
  out->double_grants = double_grants;
  out->token_regressions = regressions;
  out->connect_failures = connect_failures;
}

void Run(const fs::path& source, const fs::path& binary, const ScratchDir& dir, int leases, Results* out) {
  const fs::path state_dir = dir.state_dir();
  out->load_before = LoadAverage();
  // 1. The daemon, the template, a warm pool.
  int port = FreePort();
  std::printf("starting %s serve --state-dir %s --listen 127.0.0.1:%d --max-databases %d\n", binary.c_str(),
              state_dir.c_str(), port, kMaxDatabases);
  Daemon daemon(binary, state_dir, dir.log(), port, kMaxDatabases);
  LogTailOnFailure dump_log(daemon);

  auto status_client = MakeClient(port, 30s);
  daemon.WaitHealthy(180s);
  std::printf("daemon up (pid %d); building template '%s'\n", daemon.pid(), kTemplate);
  PutAnswer tpl = PutTemplate(daemon, kTemplate, TemplateBody(source, kMinReady, kPoolMax, {}));
  if (tpl.database.empty()) Fail("PUT /v1/templates/app answered no database name");

  int last_shown = -1;
  auto ready_pool = [&](const Status& s) { return s.Find(kTemplate, tpl.hash); };
  WaitForStatus(
      daemon, *status_client, "warming the pool to " + std::to_string(kMinReady) + " ready", 600s, 100ms,
      [&](const Status& s) { return ready_pool(s) && ready_pool(s)->ready >= kMinReady; },
      [&](const Status& s) {
        int ready = ready_pool(s) ? ready_pool(s)->ready : 0;
        if (ready != last_shown) std::printf("warming %d/%d\n", ready, kMinReady);
        std::fflush(stdout);
        last_shown = ready;
      });
  auto quiet = [&](const Status& s) {
    const PoolFigures* p = ready_pool(s);
    return p && p->ready >= kMinReady && p->leased == 0 && p->warming == 0 && p->recycling == 0;
  };
  auto no_progress = [](const Status&) {};

  // A first lease, alone: the API must work before 20 clients hammer it.
  {
    std::string err;
    auto c = MakeClient(port, 40s);
    auto lease = TakeLease(*c, kTemplate, 10, &err);
    if (!lease) Fail("the first lease failed: " + err);
    if (!ReleaseLease(*c, lease->id, &err)) Fail("releasing the first lease failed: " + err);
  }

  // 2a. Warm handout, the figure the targets are about: in rounds, the 20 keep-alive clients take
  // every ready slot back to back and hold them; then all are released and the pool is left to
  // become whole and quiet again before the next round. No recycle runs while handouts are timed.
  // The pool first grows to 2 × min_ready ready slots, then min_ready goes back: each round takes
  // the ready slots above min_ready, so taking them starts no warm either.
  std::printf("warm lease handout: %d clients, %d leases in rounds of %d\n", kClients, leases, kMinReady);
  {
    PutTemplate(daemon, kTemplate, TemplateBody(source, 2 * kMinReady, kPoolMax, {}));
    WaitForStatus(
        daemon, *status_client, "growing the pool to " + std::to_string(2 * kMinReady) + " ready", 600s, 50ms,
        [&](const Status& s) { return ready_pool(s) && ready_pool(s)->ready >= 2 * kMinReady && quiet(s); },
        no_progress);
    PutTemplate(daemon, kTemplate, TemplateBody(source, kMinReady, kPoolMax, {}));
    const double cpu_before = CpuMs(daemon.pid());
    std::vector<std::unique_ptr<httplib::Client>> warm_clients;
    for (int t = 0; t < kClients; ++t) warm_clients.push_back(MakeClient(port, 45s));
    auto deadline = SteadyClock::now() + 600s;
    int asked = 0;
    while (asked < leases && SteadyClock::now() < deadline) {
      Status s = WaitForStatus(daemon, *status_client, "waiting for a quiet pool", 300s, 20ms, quiet, no_progress);
      std::atomic<int> left{std::min(ready_pool(s)->ready - kMinReady, leases - asked)};
      if (left <= 0) Fail("the pool did not keep its extra ready slots between rounds");
      asked += left;
      std::mutex mu;
      std::vector<Lease> taken;
      std::vector<std::thread> threads;
      for (int t = 0; t < kClients; ++t) {
        threads.emplace_back([&, t] {
          bench::Samples mine;
          std::vector<Lease> got;
          std::vector<std::string> errors;
          while (left.fetch_sub(1) > 0) {
            std::string err;
            std::optional<Lease> lease;
            double ms = bench::TimeMs([&] { lease = TakeLease(*warm_clients[t], kTemplate, 5, &err); });
            if (lease) {
              mine.Add(ms);
              got.push_back(*lease);
            } else {
              errors.push_back(err);
            }
          }
          std::lock_guard<std::mutex> lock(mu);
          out->warm.ms.insert(out->warm.ms.end(), mine.ms.begin(), mine.ms.end());
          taken.insert(taken.end(), got.begin(), got.end());
          out->warm_errors += static_cast<int>(errors.size());
        });
      }
      for (auto& t : threads) t.join();
      threads.clear();
      for (int t = 0; t < kClients; ++t) {
        threads.emplace_back([&, t] {
          for (size_t i = t; i < taken.size(); i += kClients) {
            std::string err;
            if (!ReleaseLease(*warm_clients[t], taken[i].id, &err)) ++out->warm_errors;
          }
        });
      }
      for (auto& t : threads) t.join();
      if (out->warm_errors >= 50) Fail("the warm handout phase stopped after 50 errors");
    }
    out->warm_asked = asked;
    out->warm_cpu_ms = CpuMs(daemon.pid()) - cpu_before;
    daemon.CheckAlive("leasing from a warm pool");
  }
  WaitForStatus(daemon, *status_client, "waiting for a quiet pool", 300s, 20ms, quiet, no_progress);
  std::printf("raw lease writes: %d clients × prepared UPDATE + INSERT, %d in all\n", kClients, leases);
  out->raw_write = RawLeaseWrites(state_dir, leases, kClients);

  // 2b. Lease handout under churn, 20 concurrent keep-alive clients. The clients only ask while
  // the pool has ready slots to spare (a budget refreshed from /v1/status every 5 ms, keeping
  // kReserve in hand), so this measures a warm handout, not the wait for a recycle; how long they
  // held back shows how far the recycler keeps up with back-to-back lease/release.
  std::printf("lease handout: %d clients, %d leases\n", kClients, leases);
  Status h_before =
      WaitForStatus(daemon, *status_client, "waiting for a quiet pool", 300s, 20ms, quiet, no_progress);
  {
    constexpr int kReserve = 10;
    std::atomic<int> next{0};
    std::atomic<bool> stop{false}, poll_stop{false};
    Tally errors, release_errors;
    std::mutex mu;
    auto deadline = SteadyClock::now() + 300s;
    std::atomic<int> budget{ready_pool(h_before)->ready - kReserve};
    std::atomic<int> min_ready{1 << 30}, max_waiting{0};
    std::atomic<long long> held_back_us{0};
    std::atomic<int> taken{0}, answered{0};  // budget units used / their POSTs answered
    std::thread poller([&] {
      auto c = MakeClient(port, 10s);
      while (!poll_stop) {
        int answered_before = answered.load();
        if (auto r = c->Get("/v1/status"); r && r->status == 200) {
          json j = json::parse(r->body, nullptr, false);
          if (!j.is_discarded() && j.contains("pools") && j["pools"].is_array()) {
            for (const json& p : j["pools"]) {
              if (p.value("template", std::string()) != kTemplate || p.value("hash", std::string()) != tpl.hash) continue;
              int ready = IntField(p, "ready");
              // Minus every lease not answered before this GET went out: it may not show in `ready` yet.
              budget = ready - kReserve - (taken.load() - answered_before);
              min_ready = std::min(min_ready.load(), ready);
              max_waiting = std::max(max_waiting.load(), IntField(p, "waiting"));
            }
          }
        }
        std::this_thread::sleep_for(5ms);
      }
    });
    auto t_phase = SteadyClock::now();
    std::vector<std::thread> clients;
    for (int t = 0; t < kClients; ++t) {
      clients.emplace_back([&] {
        auto c = MakeClient(port, 45s);
        bench::Samples handout, release;
        while (!stop && next.fetch_add(1) < leases) {
          auto hold0 = SteadyClock::now();
          for (;;) {  // take one unit of budget, or wait for the next poll
            int b = budget.load();
            while (b > 0 && !budget.compare_exchange_weak(b, b - 1)) {
            }
            if (b > 0) {
              ++taken;
              break;
            }
            if (SteadyClock::now() > deadline) break;
            std::this_thread::sleep_for(1ms);
          }
          held_back_us += std::chrono::duration_cast<std::chrono::microseconds>(SteadyClock::now() - hold0).count();
          if (SteadyClock::now() > deadline) break;
          std::string err;
          std::optional<Lease> lease;
          double ms = bench::TimeMs([&] { lease = TakeLease(*c, kTemplate, 30, &err); });
          ++answered;
          if (!lease) {  // only handouts that succeeded count as latency samples
            errors.Add(err);
            if (errors.total() >= 50) stop = true;  // broken: do not sit out 2000 × wait_s
            continue;
          }
          handout.Add(ms);
          if (ms > 200 && std::getenv("TESTPOOL_BENCH_KEEP") != nullptr) {
            auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch()).count();
            std::fprintf(stderr, "slow handout %.1f ms, lease %s, answered at epoch ms %lld\n", ms, lease->id.c_str(),
                         static_cast<long long>(now_ms));
          }
          bool ok = true;
          release.Add(bench::TimeMs([&] { ok = ReleaseLease(*c, lease->id, &err); }));
          if (!ok) release_errors.Add(err);
        }
        std::lock_guard<std::mutex> lock(mu);
        out->handout.ms.insert(out->handout.ms.end(), handout.ms.begin(), handout.ms.end());
        out->release.ms.insert(out->release.ms.end(), release.ms.begin(), release.ms.end());
      });
    }
    for (auto& t : clients) t.join();
    out->handout_s = SecondsSince(t_phase);
    poll_stop = true;
    poller.join();
    out->leases_asked = std::min(next.load(), leases);
    out->handout_errors = errors.total();
    out->release_errors = release_errors.total();
    out->handout_error_kinds = errors.Summary();
    if (!release_errors.empty()) out->handout_error_kinds += " / release: " + release_errors.Summary();
    out->min_ready_seen = min_ready.load() == (1 << 30) ? -1 : min_ready.load();
    out->max_waiting_seen = max_waiting.load();
    out->held_back_s = static_cast<double>(held_back_us.load()) / 1e6 / kClients;
    daemon.CheckAlive("leasing");
    if (SteadyClock::now() >= deadline) std::printf("note: the handout phase hit its 300 s deadline\n");
    if (stop) Fail("the lease handout phase stopped after 50 errors: " + errors.Summary());
  }
  Status h_after = WaitForStatus(daemon, *status_client, "waiting for the pool to settle after the handout phase", 300s,
                                 20ms, quiet, no_progress);
  out->handout_recycles = Recycles(h_before, h_after);

  // 3. The raw primitive: an on-demand clone, as the daemon's superuser, on a quiet server.
  std::printf("raw clones: %d × CREATE DATABASE … TEMPLATE %s STRATEGY FILE_COPY\n", kRawClones, tpl.database.c_str());
  WaitForStatus(daemon, *status_client, "waiting for a quiet pool", 300s, 20ms, quiet, no_progress);
  std::optional<pg::Connection> admin_conn(AdminConnection(state_dir));
  pg::Connection& admin = *admin_conn;
  out->pg_major = admin.ServerVersion() / 10000;
  const std::string tpl_db = admin.QuoteIdent(tpl.database);
  for (int i = 0; i < kRawClones; ++i) {
    std::string db = admin.QuoteIdent("tp_bench_raw_" + util::RandomToken(8));
    out->clone.Add(bench::TimeMs([&] { admin.Exec("CREATE DATABASE " + db + " TEMPLATE " + tpl_db + " STRATEGY FILE_COPY"); }));
    out->drop.Add(bench::TimeMs([&] { admin.Exec("DROP DATABASE " + db); }));
  }

  // 4. Recycle throughput: 40 dirty slots released at once, until the pool is whole again.
  std::printf("recycle: leasing %d, dirtying each, releasing all at once\n", kRecycleCount);
  WaitForStatus(daemon, *status_client, "waiting for a quiet pool", 300s, 20ms, quiet, no_progress);
  std::vector<Lease> held;
  {
    auto c = MakeClient(port, 40s);
    for (int i = 0; i < kRecycleCount; ++i) {
      std::string err;
      auto lease = TakeLease(*c, kTemplate, 30, &err);
      if (!lease) Fail("leasing slot " + std::to_string(i + 1) + " of " + std::to_string(kRecycleCount) + " failed: " + err);
      try {
        pg::Connection conn = pg::Connection::Open(lease->dsn);
        conn.Exec("INSERT INTO customers (email, full_name, country, postal_code) VALUES ($1, 'Lease Bench', 'DE', '10115')",
                  {"bench" + std::to_string(i) + "@example.com"});
      } catch (const std::exception& e) {
        Fail("writing through the lease's DSN failed: " + std::string(e.what()));
      }
      held.push_back(*lease);
    }
  }
  // Replacements warmed while these were held must be done, so the recycle runs alone.
  WaitForStatus(
      daemon, *status_client, "waiting for replacement slots to finish warming", 300s, 20ms,
      [&](const Status& s) { return ready_pool(s) && ready_pool(s)->warming == 0 && ready_pool(s)->recycling == 0; },
      no_progress);
  Status before = GetStatus(*status_client);
  std::atomic<bool> go{false};
  std::atomic<int> armed{0};
  Tally recycle_errors;
  std::vector<std::thread> releasers;
  for (int t = 0; t < kClients; ++t) {
    releasers.emplace_back([&, t] {
      auto c = MakeClient(port, 30s);
      ++armed;
      while (!go) std::this_thread::yield();
      for (size_t i = t; i < held.size(); i += kClients) {
        std::string err;
        if (!ReleaseLease(*c, held[i].id, &err)) recycle_errors.Add(err);
      }
    });
  }
  while (armed < kClients) std::this_thread::yield();
  auto t0 = SteadyClock::now();
  go = true;
  for (auto& t : releasers) t.join();
  if (recycle_errors.total() > 0) Fail("releasing the dirty leases failed: " + recycle_errors.Summary());
  Status after = WaitForStatus(
      daemon, *status_client, "waiting for the released slots to be recycled", 300s, 5ms,
      [&](const Status& s) {
        const PoolFigures* p = ready_pool(s);
        return p && p->leased == 0 && p->recycling == 0 && p->warming == 0 && p->ready >= kMinReady;
      },
      no_progress);
  out->recycle_s = SecondsSince(t0);
  out->dirty_recycles = Recycles(before, after);
  // Beside it: the same count of raw CREATE + DROP pairs, sequentially on one connection.
  auto r0 = SteadyClock::now();
  for (int i = 0; i < kRecycleCount; ++i) {
    std::string db = admin.QuoteIdent("tp_bench_raw_" + util::RandomToken(8));
    out->pair.Add(bench::TimeMs([&] {
      admin.Exec("CREATE DATABASE " + db + " TEMPLATE " + tpl_db + " STRATEGY FILE_COPY");
      admin.Exec("DROP DATABASE " + db);
    }));
  }
  out->raw_pairs_s = SecondsSince(r0);

  // 5. RSS with 100 slots: a second template's pool makes up the difference.
  Status now = GetStatus(*status_client);
  int need = kRssSlots - now.databases;
  std::printf("memory: %d slots exist; ", now.databases);
  if (need > 0) {
    std::printf("adding template '%s' with min_ready %d\n", kRssTemplate, need);
    json extra = {{"name", "lease_bench_rss.sql"}, {"sql", "SELECT 1;"}};  // a distinct hash
    PutAnswer second = PutTemplate(daemon, kRssTemplate, TemplateBody(source, need, need, {extra}));
    WaitForStatus(
        daemon, *status_client, "warming to " + std::to_string(kRssSlots) + " slots", 600s, 100ms,
        [&](const Status& s) {
          const PoolFigures* p = s.Find(kRssTemplate, second.hash);
          return p && p->ready >= need && s.databases >= kRssSlots && s.Warming() == 0;
        },
        no_progress);
  } else {
    std::printf("enough\n");
  }
  std::this_thread::sleep_for(1s);  // let transient buffers go
  daemon.CheckAlive("measuring memory");
  out->rss_slots = GetStatus(*status_client).databases;
  out->load_after = LoadAverage();
  out->rss_mb = ReadProcStatusKb(daemon.pid(), "VmRSS") / 1024.0;
  out->hwm_mb = ReadProcStatusKb(daemon.pid(), "VmHWM") / 1024.0;
  out->threads = static_cast<int>(ReadProcStatusKb(daemon.pid(), "Threads"));

  Soak(daemon, port, out);

  status_client.reset();
  admin_conn.reset();
  int code = daemon.Stop(60s);
  if (code != 0) Fail("testpool serve did not stop cleanly on SIGTERM (exit code " + std::to_string(code) + ")");
}

void Report(const Results& r, int leases) {
  double handout_p50 = r.warm.Percentile(0.5), handout_p99 = r.warm.Percentile(0.99);
  double churn_p50 = r.handout.Percentile(0.5), churn_p99 = r.handout.Percentile(0.99);
  double clone_p50 = r.clone.Percentile(0.5);
  double daemon_rate = r.recycle_s > 0 ? kRecycleCount / r.recycle_s : 0;
  double raw_rate = r.raw_pairs_s > 0 ? kRecycleCount / r.raw_pairs_s : 0;
  double recycle_ratio = raw_rate > 0 ? daemon_rate / raw_rate : 0;

  std::printf("\ntestpool lease bench — demo schema, PostgreSQL %d, %d clients, %d leases asked, pool min_ready %d / max %d\n",
              r.pg_major, kClients, leases, kMinReady, kPoolMax);
  std::printf("machine: %u cores, load average %s at start, %s at the end\n\n", std::thread::hardware_concurrency(),
              r.load_before.c_str(), r.load_after.c_str());
  PrintLatencyHeader();
  PrintLatencyRow("lease handout, warm pool (20 clients)", r.warm);
  PrintLatencyRow("lease handout under churn (20 clients)", r.handout);
  PrintLatencyRow("raw lease-row write, 20 libpq clients", r.raw_write);
  PrintLatencyRow("lease release, DELETE /v1/leases/{id}", r.release);
  PrintLatencyRow("raw CREATE DATABASE … STRATEGY FILE_COPY", r.clone);
  PrintLatencyRow("raw DROP DATABASE (clone)", r.drop);
  PrintLatencyRow("raw CREATE + DROP pair, sequential", r.pair);
  std::printf("\nhandout phase: %zu leases in %.1f s (%.0f lease+release/s); clients held back %.0f%% of the time for "
              "ready slots; lowest ready %d, most waiting %d; errors %d handout, %d release%s%s\n",
              r.handout.ms.size(), r.handout_s, r.handout_s > 0 ? static_cast<double>(r.handout.ms.size()) / r.handout_s : 0,
              r.handout_s > 0 ? 100.0 * r.held_back_s / r.handout_s : 0, r.min_ready_seen, r.max_waiting_seen,
              r.handout_errors, r.release_errors, r.handout_error_kinds.empty() ? "" : " — ",
              r.handout_error_kinds.c_str());
  std::printf("  recycles behind it: %s\n", RecycleText(r.handout_recycles).c_str());
  std::printf("recycle phase: %d dirty slots back in %.3f s (%s); raw pairs %.3f s\n\n", kRecycleCount, r.recycle_s,
              RecycleText(r.dirty_recycles).c_str(), r.raw_pairs_s);

  PrintFigureHeader();
  std::string clone_txt = "clone p50 " + Fmt("%.2f ms", clone_p50);
  PrintFigure("warm lease handout p50, 20 clients", Fmt("%.3f ms", handout_p50), clone_txt,
              RatioText(handout_p50, clone_p50), "<= 1 ms", !r.warm.ms.empty() && handout_p50 <= kTargetP50Ms);
  PrintFigure("warm lease handout p99, 20 clients", Fmt("%.3f ms", handout_p99), clone_txt,
              RatioText(handout_p99, clone_p50), "<= 5 ms", !r.warm.ms.empty() && handout_p99 <= kTargetP99Ms);
  const double write_p50 = r.raw_write.Percentile(0.5), write_p99 = r.raw_write.Percentile(0.99);
  PrintFigure("warm handout p50 / raw write p50", Fmt("%.3f ms", handout_p50), "row write " + Fmt("%.3f ms", write_p50),
              RatioText(handout_p50, write_p50), "(no target)", true);
  PrintFigure("warm handout p99 / raw write p99", Fmt("%.3f ms", handout_p99), "row write " + Fmt("%.3f ms", write_p99),
              RatioText(handout_p99, write_p99), "(no target)", true);
  PrintFigure("daemon CPU per warm lease+release", Fmt("%.3f ms", r.warm_asked > 0 ? r.warm_cpu_ms / r.warm_asked : 0),
              "-", "-", "(no target)", true);
  PrintFigure("handout under churn p50 / p99", Fmt("%.2f", churn_p50) + " / " + Fmt("%.1f ms", churn_p99), clone_txt,
              RatioText(churn_p50, clone_p50), "(no target)", true);
  PrintFigure("handout errors (503, timeouts, other)",
              std::to_string(r.warm_errors + r.handout_errors) + " of " + std::to_string(r.warm_asked + r.leases_asked),
              "-", "-", "0", r.warm_errors == 0 && r.handout_errors == 0 && r.release_errors == 0);
  PrintFigure("recycle throughput, 40 dirty slots", Fmt("%.1f clones/s", daemon_rate),
              "raw pairs " + Fmt("%.1f/s", raw_rate), Fmt("%.2fx", recycle_ratio), ">= 0.8x raw",
              recycle_ratio >= kTargetRecycleRatio);
  PrintFigure("daemon RSS with " + std::to_string(r.rss_slots) + " slots", Fmt("%.1f MB", r.rss_mb),
              "peak " + Fmt("%.1f MB", r.hwm_mb) + ", " + std::to_string(r.threads) + " threads", "-", "<= 50 MB",
              r.rss_mb >= 0 && r.rss_mb <= kTargetRssMb && r.rss_slots >= kRssSlots);
  PrintFigure(std::to_string(kSoakClients) + " clients for " + std::to_string(r.soak_s) + " s: double grants",
              std::to_string(r.double_grants) + " in " + std::to_string(r.soak_granted), "-", "-", "0",
              r.double_grants == 0 && r.token_regressions == 0 && r.soak_granted > 0);
  PrintFigure(std::to_string(kSoakClients) + " clients for " + std::to_string(r.soak_s) + " s: errors",
              std::to_string(r.soak_errors), "-", "-", "0", r.soak_errors == 0);
  std::printf("\nsoak: %ld leases granted in %d s (%.0f/s) to %d clients; lease wait p50 %.1f ms, p99 %.1f ms (more clients "
              "than slots: most wait for a recycle); %d token regressions; %ld DSNs connected, %d failed%s%s\n",
              r.soak_granted, r.soak_s, r.soak_s > 0 ? static_cast<double>(r.soak_granted) / r.soak_s : 0, kSoakClients,
              r.soak_lease.Percentile(0.5), r.soak_lease.Percentile(0.99), r.token_regressions, r.soak_connects,
              r.connect_failures, r.soak_error_kinds.empty() ? "" : "; errors: ", r.soak_error_kinds.c_str());
  std::printf("\nlease handout is %s of an on-demand clone (p50 %.3f ms vs %.2f ms)\n",
              RatioText(handout_p50, clone_p50).c_str(), handout_p50, clone_p50);
}

}  // namespace

int main(int argc, char** argv) {
  fs::path source = argc > 1 ? argv[1] : TESTPOOL_SOURCE_DIR;
  fs::path binary = argc > 2 ? argv[2] : TESTPOOL_BIN_PATH;
  int leases = argc > 3 ? std::atoi(argv[3]) : 2000;
  if (leases < 1 || !fs::exists(binary) || !fs::exists(source / "migrations")) {
    std::fprintf(stderr, "usage: lease_bench [SOURCE_DIR] [TESTPOOL_BINARY] [LEASES]\n"
                         "(source %s, binary %s, leases %d)\n", source.c_str(), binary.c_str(), leases);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines show up when piped

  int rc = 0;
  std::optional<ScratchDir> dir;  // removed on the way out (kept with TESTPOOL_BENCH_KEEP)
  Results results;
  try {
    dir.emplace("testpool-lease-bench");
    Run(source, binary, *dir, leases, &results);
    Report(results, leases);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lease_bench: FAILED: %s\n", e.what());
    rc = 1;
  }
  return rc;
}
