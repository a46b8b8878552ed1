// The chaos driver (issue 17 §2): N client processes lease → connect → write a marker → verify →
// release for T seconds (bench/chaos_client.h) against the real `testpool serve` (local backend),
// while the driver
//   - SIGKILLs the daemon at random moments and starts it again on the same state dir and port,
//     measuring the recovery (kill → /healthz 200 → the first lease asked for after the kill granted);
//   - SIGKILLs clients mid-lease (their leases must end by TTL) and starts new ones in their place;
//   - SIGKILLs the local PostgreSQL postmaster once (pid from pg/data/postmaster.pid), measuring how
//     long until a lease asked for after the kill is granted and its database used; the daemon is
//     left to recover by itself (a daemon that does not is a finding, and the run fails).
// Afterwards: the clients stop, every lease ends (released, or expired by TTL), the daemon is
// restarted once (reconcile), and
//   - no double grant and no fencing-token regression across all clients' event logs, and no
//     violation a client saw (chaos_check.h);
//   - every lease a client was granted has its row in the control database, none is still active,
//     and no slot's fencing token went to two leases;
//   - no orphan: every tp_s_ database and tp_r_ role on the server belongs to a slot row, every slot
//     row's database exists, every tp_tpl_ database to a template build, no active lease without its
//     slot (the local backend has no containers);
//   - a last lease works.
// Printed: leases/s, grants, errors by kind, recovery time per kill, orphans, double grants. Exit
// status 1 on any violation or failed wait, 2 on bad usage.
//
// Every wait is bounded and waits for an event (a status field, a log line, a process exit); the
// chaos moments are random (seeded; the seed is printed) and each kill of the daemon or postmaster
// waits for the recovery from the one before, so a slow machine stretches the run instead of
// failing it.
//
// usage: chaos_bench [--clients N] [--seconds T] [--daemon-kills K] [--client-kills C]
//                    [--postmaster-kill 0|1] [--ttl S] [--seed S] [--binary PATH]
//        (each also from the environment: CHAOS_CLIENTS, CHAOS_SECONDS, CHAOS_DAEMON_KILLS, …;
//         TESTPOOL_BENCH_KEEP=1 keeps the scratch directory with every log)
//        chaos_bench --client ID --port P --template NAME --log FILE --ttl S --wait S --driver PID  (a client)
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/chaos_check.h"
#include "bench/chaos_client.h"
#include "bench/chaos_control.h"
#include "bench/chaos_log.h"
#include "bench/chaos_procs.h"
#include "bench/daemon_harness.h"
#include "orchestrator/pg/connection.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using namespace testpool;
using namespace testpool::bench;
using namespace testpool::bench::chaos;

namespace {

// Set by SIGTERM, SIGINT or SIGHUP: every wait then fails, and unwinding stops the clients and the
// daemon (a run killed outright leaves its clients to PR_SET_PDEATHSIG, see chaos_client.h).
volatile std::sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }
void CheckInterrupted() {
  if (g_interrupted != 0) Fail("interrupted by a signal");
}

const char* const kTemplate = "chaos";
constexpr auto kBound = 300s;              // any single wait for an event; only a hang reaches it
constexpr auto kTtlSlack = 250ms;          // server wall clock vs. monotonic clock (chaos_check.h)
constexpr auto kPoll = 20ms;

struct Options {
  int clients = 20;
  int seconds = 10;
  int daemon_kills = 2;
  int client_kills = 1;
  bool postmaster_kill = false;
  int ttl_s = 12;
  int wait_s = 20;
  unsigned seed = 0;  // 0: from the clock
  fs::path binary = TESTPOOL_BIN_PATH;
};

// ---- options ----

// "--daemon-kills" → "CHAOS_DAEMON_KILLS".
std::string EnvName(const std::string& flag) {
  std::string n = "CHAOS_";
  for (char c : flag.substr(2)) n += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return n;
}

std::map<std::string, std::string> ParseFlags(int argc, char** argv, int first) {
  std::map<std::string, std::string> flags;
  for (int i = first; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || i + 1 >= argc) Fail("expected --name value, got '" + a + "'");
    flags[a] = argv[++i];
  }
  return flags;
}

// A count from --name or CHAOS_NAME, in [0, max]; `fallback` when neither is given.
long IntFlag(const std::map<std::string, std::string>& flags, const std::string& name, long fallback,
             long max = 100000) {
  std::string v;
  if (auto it = flags.find(name); it != flags.end()) {
    v = it->second;
  } else if (const char* e = std::getenv(EnvName(name).c_str()); e != nullptr && *e != '\0') {
    v = e;
  } else {
    return fallback;
  }
  char* end = nullptr;
  long n = std::strtol(v.c_str(), &end, 10);
  if (end == v.c_str() || *end != '\0' || n < 0 || n > max) Fail(name + " wants a count, got '" + v + "'");
  return n;
}

Options ParseOptions(int argc, char** argv) {
  const auto flags = ParseFlags(argc, argv, 1);
  static const std::set<std::string> known = {"--clients", "--seconds",         "--daemon-kills", "--client-kills",
                                              "--postmaster-kill", "--ttl", "--seed", "--binary"};
  for (const auto& [k, v] : flags) {
    if (!known.count(k)) Fail("unknown option " + k);
  }
  Options o;
  o.clients = static_cast<int>(IntFlag(flags, "--clients", o.clients));
  o.seconds = static_cast<int>(IntFlag(flags, "--seconds", o.seconds));
  o.daemon_kills = static_cast<int>(IntFlag(flags, "--daemon-kills", o.daemon_kills));
  o.client_kills = static_cast<int>(IntFlag(flags, "--client-kills", o.client_kills));
  o.postmaster_kill = IntFlag(flags, "--postmaster-kill", o.postmaster_kill ? 1 : 0) != 0;
  o.ttl_s = static_cast<int>(IntFlag(flags, "--ttl", o.ttl_s));
  o.seed = static_cast<unsigned>(IntFlag(flags, "--seed", 0, 4294967295L));
  if (auto it = flags.find("--binary"); it != flags.end()) o.binary = it->second;
  if (o.clients < 1 || o.seconds < 1 || o.ttl_s < 4) Fail("need --clients ≥ 1, --seconds ≥ 1, --ttl ≥ 4");
  if (!fs::exists(o.binary)) Fail("no testpool binary at " + o.binary.string());
  return o;
}

// ---- the daemon and its server ----

json TemplateDefinition(int min_ready, int max) {
  const std::string table = kMarkerTable;
  return {{"migrations", json::array({{{"name", "0001_chaos_marker.sql"},
                                       {"sql", "CREATE TABLE " + table +
                                                   " (lease_id text NOT NULL, client integer NOT NULL, "
                                                   "fencing bigint NOT NULL);\n"}}})},
          {"seed", json::array({{{"name", "chaos_seed.sql"},
                                 {"sql", "INSERT INTO " + table + " VALUES ('" + kSeedLease + "', 0, 0);\n"}}})},
          {"pool", {{"min_ready", min_ready}, {"max", max}}}};
}

struct PoolSums {
  int ready = 0, leased = 0, warming = 0, recycling = 0, broken = 0;
  bool ok = false;  // the status could be read
};
PoolSums GetPoolSums(int port) {
  PoolSums s;
  auto c = MakeClient(port, 30s);
  auto r = c->Get("/v1/status");
  if (!r || r->status != 200) return s;
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("pools") || !j["pools"].is_array()) return s;
  for (const json& p : j["pools"]) {
    s.ready += p.value("ready", 0);
    s.leased += p.value("leased", 0);
    s.warming += p.value("warming", 0);
    s.recycling += p.value("recycling", 0);
    s.broken += p.value("broken", 0);
  }
  s.ok = true;
  return s;
}

bool Healthy(int port) {
  auto c = MakeClient(port, 5s);
  auto r = c->Get("/healthz");
  return r && r->status == 200;
}

// Polls `done` every kPoll until true; fails naming `what` past `bound` (or when `alive` says the
// daemon died).
template <typename Done>
void WaitUntil(const std::string& what, std::chrono::seconds bound, Daemon& daemon, Done done) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    CheckInterrupted();
    daemon.CheckAlive(what);
    if (std::chrono::steady_clock::now() > deadline) Fail("no end after " + std::to_string(bound.count()) + " s " + what);
    std::this_thread::sleep_for(kPoll);
  }
}

int PostmasterPid(const fs::path& state_dir) {
  const std::string pidfile = Slurp(state_dir / "pg" / "data" / "postmaster.pid");
  return std::atoi(pidfile.substr(0, pidfile.find('\n')).c_str());
}

// ---- the run ----

enum class Chaos { kDaemonKill, kClientKill, kPostmasterKill };
struct Planned {
  double at_s;
  Chaos what;
};

struct Recovery {
  Chaos what = Chaos::kDaemonKill;
  int64_t killed_us = 0;
  std::optional<int64_t> healthy_us;    // daemon kills: /healthz answered 200
  std::optional<int64_t> granted_us;    // the first lease asked for after the kill granted
  std::optional<int64_t> used_us;       // …and its database used (postmaster kill)
  int held = 0;                          // leases clients held at the kill
};

struct Figures {
  double chaos_s = 0;
  std::vector<Recovery> recoveries;
  int clients_killed = 0, clients_started = 0, clients_ended_badly = 0;
  int daemon_restarts_by_postmaster = -1;
  std::string final_restart;
};

class Run {
 public:
  Run(const Options& o, const ScratchDir& dir) : o_(o), dir_(dir), rng_(o.seed) {}

  int Go() {
    const int pool_max = std::clamp(o_.clients / 2, 4, 100);
    const int min_ready = std::max(2, pool_max * 2 / 5);
    const int max_databases = pool_max + 50;
    port_ = FreePort();
    std::printf("chaos: %d clients for %d s, %d daemon kills, %d client kills, postmaster kill %s, lease TTL %d s, "
                "seed %u; pool min_ready %d / max %d; daemon on 127.0.0.1:%d, state dir %s\n",
                o_.clients, o_.seconds, o_.daemon_kills, o_.client_kills, o_.postmaster_kill ? "once" : "no", o_.ttl_s,
                o_.seed, min_ready, pool_max, port_, dir_.state_dir().c_str());
    max_databases_ = max_databases;
    StartDaemon();
    daemon_->WaitHealthy(kBound);
    PutTemplate(*daemon_, kTemplate, TemplateDefinition(min_ready, pool_max));
    WaitUntil("warming the pool", kBound, *daemon_, [&] { return GetPoolSums(port_).ready >= min_ready; });
    std::printf("pool warm (%d ready); starting %d clients\n", min_ready, o_.clients);

    clients_.emplace(dir_.path() / "clients", ClientSpawn{port_, kTemplate, o_.ttl_s, o_.wait_s});
    for (int i = 0; i < o_.clients; ++i) clients_->Spawn();
    origin_us_ = MonotonicMicros();
    RunChaos();
    figures_.chaos_s = static_cast<double>(MonotonicMicros() - origin_us_) / 1e6;
    std::printf("+%.1fs chaos over; stopping the clients\n", Since());
    figures_.clients_ended_badly =
        clients_->StopAll(std::chrono::seconds(o_.wait_s + 120), [] { return g_interrupted != 0; });
    figures_.clients_started = static_cast<int>(clients_->size());
    return Afterwards();
  }

  // Prints the current daemon's log tail (a failure is being reported).
  void DumpLog() const {
    if (daemon_) std::fprintf(stderr, "---- last lines of the daemon's log ----\n%s\n----\n", daemon_->LogTail(40).c_str());
  }

 private:
  double Since() const { return static_cast<double>(MonotonicMicros() - origin_us_) / 1e6; }

  void StartDaemon() {
    const fs::path log = dir_.path() / ("daemon-" + std::to_string(incarnation_++) + ".log");
    daemon_ = std::make_unique<Daemon>(o_.binary, dir_.state_dir(), log, port_, max_databases_);
  }

  std::vector<Planned> Plan() {
    std::vector<Planned> plan;
    std::uniform_real_distribution<double> when(0.1 * o_.seconds, 0.9 * o_.seconds);
    for (int i = 0; i < o_.daemon_kills; ++i) plan.push_back({when(rng_), Chaos::kDaemonKill});
    for (int i = 0; i < o_.client_kills; ++i) plan.push_back({when(rng_), Chaos::kClientKill});
    if (o_.postmaster_kill) plan.push_back({when(rng_), Chaos::kPostmasterKill});
    std::sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) { return a.at_s < b.at_s; });
    return plan;
  }

  // The chaos phase: until T has passed, every planned kill is done and the last one recovered.
  void RunChaos() {
    std::vector<Planned> plan = Plan();
    size_t next = 0;
    std::optional<Recovery> recovering;
    auto holder_hunt_from = std::chrono::steady_clock::now();
    bool hunting = false;
    for (;;) {
      CheckInterrupted();
      clients_->CheckAlive();
      for (const Event& e : clients_->Poll()) Observe(e, recovering);
      if (recovering) {
        daemon_->CheckAlive("recovering from a kill");
        Recovery& r = *recovering;
        if (r.what == Chaos::kDaemonKill && !r.healthy_us && Healthy(port_)) {
          r.healthy_us = MonotonicMicros();
          std::printf("+%.1fs /healthz 200 again, %.2f s after the kill\n", Since(),
                      static_cast<double>(*r.healthy_us - r.killed_us) / 1e6);
        }
        const bool done = r.what == Chaos::kDaemonKill ? r.healthy_us && r.granted_us : r.granted_us && r.used_us;
        if (done) {
          std::printf("+%.1fs leases flow again, %.2f s after the kill\n", Since(),
                      static_cast<double>(*(r.what == Chaos::kDaemonKill ? r.granted_us : r.used_us) - r.killed_us) / 1e6);
          figures_.recoveries.push_back(r);
          recovering.reset();
        } else if (MonotonicMicros() - r.killed_us > std::chrono::duration_cast<std::chrono::microseconds>(kBound).count()) {
          Fail(std::string(r.what == Chaos::kPostmasterKill
                               ? "the daemon did not recover by itself from the postmaster's SIGKILL"
                               : "the restarted daemon did not grant a lease") +
               " within " + std::to_string(kBound.count()) + " s");
        }
      }
      if (next < plan.size() && Since() >= plan[next].at_s) {
        const Chaos what = plan[next].what;
        if (what == Chaos::kClientKill) {
          if (!hunting) {
            hunting = true;
            holder_hunt_from = std::chrono::steady_clock::now();
          }
          if (ClientProc* victim = clients_->PickHolder(rng_)) {
            KillClient(*victim);
            hunting = false;
            ++next;
          } else if (std::chrono::steady_clock::now() - holder_hunt_from > kBound) {
            Fail("no client held a lease for " + std::to_string(kBound.count()) + " s");
          }
        } else if (!recovering) {
          recovering = what == Chaos::kDaemonKill ? KillDaemon() : KillPostmaster();
          ++next;
        }
      }
      if (next == plan.size() && !recovering && Since() >= o_.seconds) return;
      std::this_thread::sleep_for(kPoll);
    }
  }

  // What the clients' new lines tell the recovery underway, and the totals.
  void Observe(const Event& e, std::optional<Recovery>& r) {
    if (e.kind == EventKind::kGrant) ++grants_seen_;
    if (!r) return;
    if (e.kind == EventKind::kGrant && e.t0_us > r->killed_us) {
      if (!r->granted_us) r->granted_us = e.t_us;
      asked_after_kill_.insert(e.lease);
    }
    if (e.kind == EventKind::kUsed && e.detail == "ok" && asked_after_kill_.count(e.lease) && !r->used_us) {
      r->used_us = e.t_us;
    }
  }

  Recovery KillDaemon() {
    Recovery r;
    r.what = Chaos::kDaemonKill;
    const int n = ++daemon_kills_;
    daemon_->Kill(60s);
    r.killed_us = MonotonicMicros();
    asked_after_kill_.clear();
    std::printf("+%.1fs daemon SIGKILLed (%d/%d); starting it again on the same state dir and port\n", Since(), n,
                o_.daemon_kills);
    StartDaemon();
    return r;
  }

  Recovery KillPostmaster() {
    Recovery r;
    r.what = Chaos::kPostmasterKill;
    const int pid = PostmasterPid(dir_.state_dir());
    if (!ProcessAlive(pid)) Fail("no running postmaster found in " + (dir_.state_dir() / "pg/data/postmaster.pid").string());
    ::kill(pid, SIGKILL);
    r.killed_us = MonotonicMicros();
    asked_after_kill_.clear();
    std::printf("+%.1fs postmaster %d SIGKILLed; the daemon is left to recover by itself\n", Since(), pid);
    return r;
  }

  void KillClient(ClientProc& victim) {
    const std::string lease = victim.holding;
    clients_->Kill(victim);
    ++figures_.clients_killed;
    ClientProc& fresh = clients_->Spawn();
    std::printf("+%.1fs client %d SIGKILLed holding lease %s; client %d started in its place\n", Since(), victim.id,
                lease.c_str(), fresh.id);
  }

  int Afterwards();

  const Options& o_;
  const ScratchDir& dir_;
  std::mt19937 rng_;
  int port_ = 0;
  int max_databases_ = 0;
  int incarnation_ = 0;
  int daemon_kills_ = 0;
  int64_t origin_us_ = 0;
  int64_t grants_seen_ = 0;
  std::set<std::string> asked_after_kill_;
  std::unique_ptr<Daemon> daemon_;
  std::optional<ClientProcesses> clients_;
  Figures figures_;
};

}  // namespace

namespace {

std::string Secs(int64_t from_us, const std::optional<int64_t>& to_us) {
  if (!to_us) return "-";
  return Fmt("%.2f s", static_cast<double>(*to_us - from_us) / 1e6);
}

}  // namespace

int Run::Afterwards() {
  // Every lease ends: the clients released theirs; the killed clients' (and any granted whose
  // answer was lost with a killed daemon) expire by TTL.
  std::printf("+%.1fs waiting for every lease to end (TTL %d s)\n", Since(), o_.ttl_s);
  WaitUntil("waiting for every lease to end", std::chrono::seconds(o_.ttl_s) + kBound, *daemon_, [&] {
    PoolSums s = GetPoolSums(port_);
    return s.ok && s.leased == 0;
  });
  // One restart, so that reconcile runs over the final state.
  const int stop_code = daemon_->Stop(60s);
  std::printf("+%.1fs daemon stopped (SIGTERM, exit code %d); starting it once more to reconcile\n", Since(), stop_code);
  StartDaemon();
  daemon_->WaitHealthy(kBound);
  WaitUntil("waiting for the reconciled pool to settle", kBound, *daemon_, [&] {
    PoolSums s = GetPoolSums(port_);
    return s.ok && s.warming == 0 && s.recycling == 0 && s.broken == 0;
  });

  clients_->Poll();  // the last lines
  std::vector<ClientHistory> histories = clients_->Histories();
  const CheckResult check = CheckHistories(histories, std::chrono::seconds(o_.ttl_s), kTtlSlack, origin_us_);
  const ControlCheck control = CheckControlState(dir_.state_dir(), histories);

  // A last lease works, on a database in the template's state.
  std::string last_lease = "ok";
  {
    auto c = MakeClient(port_, std::chrono::seconds(o_.wait_s + 30));
    const json body = {{"ttl_s", o_.ttl_s}, {"wait_s", o_.wait_s}, {"holder", "chaos-final"}};
    auto r = c->Post(std::string("/v1/templates/") + kTemplate + "/leases", body.dump(), "application/json");
    json j = r && r->status == 201 ? json::parse(r->body, nullptr, false) : json();
    if (!j.is_object()) {
      last_lease = "failed: " + DescribeWithBody(r);
    } else {
      try {
        pg::Connection db = pg::Connection::Open(j.value("dsn", std::string()), 10s);
        std::string markers(db.Exec(std::string("SELECT count(*) FROM ") + kMarkerTable).Get(0, 0));
        if (markers != "1") last_lease = "failed: " + markers + " marker rows, want the seed's 1";
      } catch (const std::exception& e) {
        last_lease = std::string("failed: ") + e.what();
      }
      auto d = c->Delete("/v1/leases/" + j.value("id", std::string()));
      if (!d || d->status != 204) last_lease = "failed: release answered " + Describe(d);
    }
  }

  // Postmaster restarts the daemons logged (the supervisor's "backend.local.restarted").
  int pm_restarts = 0;
  for (int i = 0; i < incarnation_; ++i) {
    const std::string log = Slurp(dir_.path() / ("daemon-" + std::to_string(i) + ".log"));
    for (size_t pos = 0; (pos = log.find("backend.local.restarted", pos)) != std::string::npos; ++pos) ++pm_restarts;
  }

  // ---- report ----
  const std::vector<GrantRecord> grants = CollectGrants(histories);
  std::printf("\ntestpool chaos run — %d clients, %.1f s of chaos (asked %d s), seed %u, machine: %u cores, load %s\n",
              o_.clients, figures_.chaos_s, o_.seconds, o_.seed, std::thread::hardware_concurrency(),
              LoadAverage().c_str());
  std::printf("leases granted %lld (%.1f/s), used ok %lld, released %lld; lease rows %lld (released %lld, expired %lld; "
              "%lld granted with nobody hearing of it)\n",
              static_cast<long long>(check.grants), check.grants / std::max(figures_.chaos_s, 0.001),
              static_cast<long long>(check.used_ok), static_cast<long long>(check.releases),
              static_cast<long long>(control.rows), static_cast<long long>(control.rows_released),
              static_cast<long long>(control.rows_expired), static_cast<long long>(control.unheard));
  std::printf("errors by kind (expected while something is down): %s\n", TallyText(check.errors).c_str());
  std::printf("%-22s %-12s %-14s %-24s %s\n", "kill", "at", "/healthz 200", "first lease asked after", "leases held across it (released with 204)");
  std::map<int, std::optional<int64_t>> killed_at;
  for (const ClientHistory& h : histories) killed_at[h.client] = h.killed_us;
  int daemon_n = 0;
  for (const Recovery& r : figures_.recoveries) {
    // Leases held at the kill (granted, no DELETE sent yet) by clients that went on to release
    // them (not killed before that), and how many of those got their 204.
    int held = 0, released = 0;
    for (const GrantRecord& g : grants) {
      const bool client_killed = killed_at[g.client].has_value();
      if (g.granted_us < r.killed_us && (!g.first_delete_us || *g.first_delete_us > r.killed_us) &&
          !(client_killed && !g.first_delete_us)) {
        ++held;
        released += g.released ? 1 : 0;
      }
    }
    const std::string name = r.what == Chaos::kDaemonKill ? "daemon SIGKILL " + std::to_string(++daemon_n) : "postmaster SIGKILL";
    const std::string first = r.what == Chaos::kDaemonKill
                                  ? "granted " + Secs(r.killed_us, r.granted_us)
                                  : "granted " + Secs(r.killed_us, r.granted_us) + ", used " + Secs(r.killed_us, r.used_us);
    std::printf("%-22s %-12s %-14s %-24s %d (%d)\n", name.c_str(),
                Fmt("+%.1fs", static_cast<double>(r.killed_us - origin_us_) / 1e6).c_str(),
                r.what == Chaos::kDaemonKill ? Secs(r.killed_us, r.healthy_us).c_str() : "-", first.c_str(), held, released);
  }
  std::printf("clients: %d started, %d SIGKILLed mid-lease (their leases: %d recorded released by nobody's DELETE), "
              "%d ended badly; postmaster restarts by the daemon's supervisor: %d\n",
              figures_.clients_started, figures_.clients_killed, control.killed_released,
              figures_.clients_ended_badly, pm_restarts);
  std::printf("double grants %d, token regressions %d, client-seen violations %d (%s)\n", check.double_grants,
              check.token_regressions, check.client_violations, TallyText(check.violations).c_str());
  std::printf("after one reconcile: orphans %d (databases %d, roles %d, template databases %d; containers: none, local "
              "backend), slot databases missing %d, active leases %d, active leases without their slot %d, fencing "
              "tokens shared by two leases %d, grants without a lease row %d, released leases recorded as expired %d\n",
              control.Orphans(), control.orphan_databases, control.orphan_roles, control.orphan_templates,
              control.lost_databases, control.active_leases, control.leases_without_slot, control.shared_tokens,
              control.grants_without_row, control.released_recorded_expired);
  std::printf("last lease: %s; daemon stop before the reconcile: exit code %d\n", last_lease.c_str(), stop_code);
  for (const std::string& p : check.problems) std::printf("VIOLATION: %s\n", p.c_str());
  for (const std::string& p : control.problems) std::printf("VIOLATION: %s\n", p.c_str());

  const bool ok = check.ok() && control.ok() && last_lease == "ok" && figures_.clients_ended_badly == 0 && stop_code == 0 &&
                  check.grants > 0;
  std::printf("%s\n", ok ? "chaos: PASSED" : "chaos: FAILED");
  daemon_->Stop(60s);
  return ok ? 0 : 1;
}

int ClientMain(int argc, char** argv) {
  const auto flags = ParseFlags(argc, argv, 1);
  auto get = [&flags](const char* k) {
    auto it = flags.find(k);
    if (it == flags.end()) Fail(std::string("a client needs ") + k);
    return it->second;
  };
  ClientOptions o;
  o.id = std::atoi(get("--client").c_str());
  o.port = std::atoi(get("--port").c_str());
  o.template_name = get("--template");
  o.log = get("--log");
  o.ttl = std::chrono::seconds(std::atoi(get("--ttl").c_str()));
  o.wait = std::chrono::seconds(std::atoi(get("--wait").c_str()));
  o.driver_pid = std::atoi(get("--driver").c_str());
  return RunClient(o);
}

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  ::signal(SIGPIPE, SIG_IGN);
  try {
    if (argc > 1 && std::string(argv[1]) == "--client") return ClientMain(argc, argv);
  } catch (const BenchFailure& e) {
    std::fprintf(stderr, "chaos client: %s\n", e.what());
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = OnInterrupt;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::sigaction(sig, &sa, nullptr);
  Options o;
  try {
    o = ParseOptions(argc, argv);
  } catch (const BenchFailure& e) {
    std::fprintf(stderr, "chaos_bench: %s\nusage: chaos_bench [--clients N] [--seconds T] [--daemon-kills K] "
                         "[--client-kills C] [--postmaster-kill 0|1] [--ttl S] [--seed S] [--binary PATH]\n", e.what());
    return 2;
  }
  if (o.seed == 0) o.seed = static_cast<unsigned>(MonotonicMicros() % 1000000007);
  int rc = 1;
  std::optional<ScratchDir> dir;
  try {
    dir.emplace("testpool-chaos");
    Run run(o, *dir);
    try {
      rc = run.Go();
    } catch (const std::exception&) {
      run.DumpLog();
      throw;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "chaos_bench: FAILED: %s\n", e.what());
    rc = 1;
  }
  return rc;
}
