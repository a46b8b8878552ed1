// IntegreSQL's handout against testpool's own (issue 15): GET /api/v1/templates/{hash}/tests from
// 10 concurrent keep-alive clients, beside POST /v1/templates/{name}/leases from 10 clients on a
// pool of the same size in the same run, beside the raw primitive both stand on (the lease-row
// write from 10 libpq clients, RawLeaseWrites).
//
// The real daemon (local backend) as a child process. Both pools hold kPool ready databases of a
// one-table template. Handouts are timed in rounds: each client takes kPerClient databases back
// to back and holds them; then every one is given back (IntegreSQL's unlock, testpool's release;
// timed too, as a second row) and the pools are left to become whole and quiet before the next
// round, so no recycle runs while handouts are timed. Rounds alternate IntegreSQL and testpool.
//
// usage: integresql_bench [TESTPOOL_BINARY] [ROUNDS]   (ROUNDS default 20: 400 handouts of each)
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <functional>
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

constexpr int kClients = 10;
constexpr int kPerClient = 2;
constexpr int kPool = kClients * kPerClient;  // min_ready = max: every handout finds one ready
constexpr int kMaxDatabases = 3 * kPool;
const char* const kTemplate = "bench_own";
const char* const kSchema = "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL); "
                            "INSERT INTO items (name) VALUES ('seed')";

// One pool's counts from /v1/status (its current hash).
struct Pool {
  bool found = false;
  int ready = 0, leased = 0, warming = 0, recycling = 0;
  bool Quiet() const { return found && ready >= kPool && leased == 0 && warming == 0 && recycling == 0; }
};

Pool PoolOf(httplib::Client& c, const std::string& name) {
  auto r = c.Get("/v1/status");
  if (!r || r->status != 200) Fail("GET /v1/status failed: " + DescribeWithBody(r));
  json j = json::parse(r->body, nullptr, false);
  Pool p;
  if (j.is_discarded() || !j.contains("pools") || !j["pools"].is_array()) return p;
  for (const json& e : j["pools"]) {
    if (e.value("template", std::string()) != name || !e.value("current", false)) continue;
    p.found = true;
    p.ready = e.value("ready", 0);
    p.leased = e.value("leased", 0);
    p.warming = e.value("warming", 0);
    p.recycling = e.value("recycling", 0);
  }
  return p;
}

// Polls until both pools are whole and idle (bounded); shows progress while the first warm-up runs.
void WaitQuiet(Daemon& daemon, httplib::Client& c, const std::vector<std::string>& names, bool show) {
  const auto deadline = SteadyClock::now() + 600s;
  int shown = -1;
  for (;;) {
    daemon.CheckAlive("waiting for the pools");
    int ready = 0;
    bool quiet = true;
    for (const std::string& n : names) {
      Pool p = PoolOf(c, n);
      ready += p.ready;
      quiet = quiet && p.Quiet();
    }
    if (show && ready != shown) std::printf("warming %d/%zu\n", shown = ready, kPool * names.size());
    if (quiet) return;
    if (SteadyClock::now() > deadline) Fail("the pools did not become whole and idle within 600 s");
    std::this_thread::sleep_for(5ms);
  }
}

// A database out, and how to give it back.
struct Out {
  std::string id;  // IntegreSQL's test id, or the lease id
};

struct Mode {
  std::string label;
  // One handout on `c`; nullopt with `error` set when it failed.
  std::function<std::optional<Out>(httplib::Client& c, std::string* error)> take;
  std::function<bool(httplib::Client& c, const Out& out, std::string* error)> give_back;
  Samples handout, back;
  Tally errors;
};

// One round of `m`: kClients threads take kPerClient each (timed), then give all back (timed).
void Round(Mode& m, int port) {
  std::vector<std::thread> threads;
  std::vector<Samples> handout(kClients), back(kClients);
  for (int t = 0; t < kClients; ++t) {
    threads.emplace_back([&, t] {
      auto c = MakeClient(port, 120s);
      std::vector<Out> held;
      for (int i = 0; i < kPerClient; ++i) {
        std::string error;
        std::optional<Out> out;
        handout[t].Add(TimeMs([&] { out = m.take(*c, &error); }));
        if (out) {
          held.push_back(*out);
        } else {
          m.errors.Add(error);
        }
      }
      for (const Out& o : held) {
        std::string error;
        bool ok = true;
        back[t].Add(TimeMs([&] { ok = m.give_back(*c, o, &error); }));
        if (!ok) m.errors.Add(error);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kClients; ++t) {
    m.handout.ms.insert(m.handout.ms.end(), handout[t].ms.begin(), handout[t].ms.end());
    m.back.ms.insert(m.back.ms.end(), back[t].ms.begin(), back[t].ms.end());
  }
}

pg::ConnInfo ConfigConnInfo(const json& config) {
  pg::ConnInfo c;
  c.Set("host", config.at("host").get<std::string>());
  c.Set("port", std::to_string(config.at("port").get<int>()));
  c.Set("user", config.at("username").get<std::string>());
  c.Set("password", config.at("password").get<std::string>());
  c.Set("dbname", config.at("database").get<std::string>());
  return c;
}

int Run(const fs::path& binary, const ScratchDir& dir, int rounds) {
  const std::string load_before = LoadAverage();
  const int port = FreePort();
  const std::string isql_pool = std::to_string(kPool);
  std::printf("starting %s serve (local backend), IntegreSQL pools %d ready of %d\n", binary.c_str(), kPool, kPool);
  Daemon daemon(binary, dir.state_dir(), dir.log(), port, kMaxDatabases,
                {"--integresql-min-ready", isql_pool, "--integresql-max", isql_pool});
  LogTailOnFailure dump_log(daemon);
  daemon.WaitHealthy(180s);
  auto admin = MakeClient(port, 600s);

  // IntegreSQL's side, as its clients do it: initialise, migrate as the role handed over, finalise.
  const std::string hash = "bench-" + util::RandomToken(12);
  auto init = admin->Post("/api/v1/templates", json{{"hash", hash}}.dump(), "application/json");
  if (!init || init->status != 200) Fail("POST /api/v1/templates failed: " + DescribeWithBody(init));
  json config = json::parse(init->body, nullptr, false)["database"]["config"];
  pg::Connection::Open(ConfigConnInfo(config)).Exec(kSchema);
  auto fin = admin->Put("/api/v1/templates/" + hash, "", "application/json");
  if (!fin || fin->status != 204) Fail("PUT /api/v1/templates/{hash} failed: " + DescribeWithBody(fin));
  util::Sha256 digest;
  digest.Update(hash);
  const std::string isql_name = "isql_" + digest.HexDigest().substr(0, 16);

  // testpool's side: the same schema as a template of its own, a pool of the same size.
  json body = {{"migrations", json::array({{{"name", "0001_items.sql"}, {"sql", kSchema}}})},
               {"pool", {{"min_ready", kPool}, {"max", kPool}}}};
  PutTemplate(daemon, kTemplate, body);
  WaitQuiet(daemon, *admin, {isql_name, kTemplate}, true);

  Mode isql{"GET …/tests (IntegreSQL)", nullptr, nullptr, {}, {}, {}};
  const std::string tests = "/api/v1/templates/" + hash + "/tests";
  isql.take = [&](httplib::Client& c, std::string* error) -> std::optional<Out> {
    auto r = c.Get(tests);
    json j = r && r->status == 200 ? json::parse(r->body, nullptr, false) : json();
    if (!j.is_object() || !j.contains("id") || !j["id"].is_number_integer()) {
      *error = DescribeWithBody(r);
      return std::nullopt;
    }
    return Out{std::to_string(j["id"].get<int>())};
  };
  isql.give_back = [&](httplib::Client& c, const Out& o, std::string* error) {
    auto r = c.Post(tests + "/" + o.id + "/unlock", "", "application/json");
    if (r && r->status == 204) return true;
    *error = DescribeWithBody(r);
    return false;
  };
  Mode own{"POST /v1/templates/{n}/leases (testpool)", nullptr, nullptr, {}, {}, {}};
  const std::string lease_body = json{{"ttl_s", 600}, {"wait_s", 30}, {"holder", "integresql_bench"}}.dump();
  own.take = [&](httplib::Client& c, std::string* error) -> std::optional<Out> {
    auto r = c.Post(std::string("/v1/templates/") + kTemplate + "/leases", lease_body, "application/json");
    json j = r && r->status == 201 ? json::parse(r->body, nullptr, false) : json();
    if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) {
      *error = DescribeWithBody(r);
      return std::nullopt;
    }
    return Out{j["id"].get<std::string>()};
  };
  own.give_back = [&](httplib::Client& c, const Out& o, std::string* error) {
    auto r = c.Delete("/v1/leases/" + o.id);
    if (r && r->status == 204) return true;
    *error = DescribeWithBody(r);
    return false;
  };

  // One untimed round of each first (connections, prepared statements, caches).
  for (Mode* m : {&isql, &own}) {
    Round(*m, port);
    m->handout.ms.clear();
    m->back.ms.clear();
    WaitQuiet(daemon, *admin, {isql_name, kTemplate}, false);
  }
  const double cpu0 = CpuMs(daemon.pid());
  for (int r = 0; r < rounds; ++r) {
    for (Mode* m : {&isql, &own}) {
      Round(*m, port);
      WaitQuiet(daemon, *admin, {isql_name, kTemplate}, false);
    }
    std::printf("round %d/%d\n", r + 1, rounds);
  }
  const double cpu_ms = CpuMs(daemon.pid()) - cpu0;
  std::printf("raw lease-row writes, %d libpq clients\n", kClients);
  Samples raw = RawLeaseWrites(dir.state_dir(), rounds * kPool, kClients);
  const std::string load_after = LoadAverage();
  const int stopped = daemon.Stop(60s);

  std::printf("\nintegresql_bench: %d rounds, %d clients x %d handouts a round; load %s -> %s\n\n", rounds, kClients,
              kPerClient, load_before.c_str(), load_after.c_str());
  PrintLatencyHeader();
  PrintLatencyRow("handout: " + isql.label, isql.handout);
  PrintLatencyRow("handout: " + own.label, own.handout);
  PrintLatencyRow("raw lease-row write, 10 libpq clients", raw);
  PrintLatencyRow("give back: POST …/tests/{id}/unlock", isql.back);
  PrintLatencyRow("give back: DELETE /v1/leases/{id}", own.back);
  std::printf("\n");
  PrintFigureHeader();
  const double i50 = isql.handout.Percentile(0.5), i99 = isql.handout.Percentile(0.99);
  const double o50 = own.handout.Percentile(0.5), o99 = own.handout.Percentile(0.99);
  const double r50 = raw.Percentile(0.5), r99 = raw.Percentile(0.99);
  PrintFigure("IntegreSQL handout p50 / own lease p50", Fmt("%.3f ms", i50), "lease " + Fmt("%.3f ms", o50),
              RatioText(i50, o50), "(no target)", true);
  PrintFigure("IntegreSQL handout p99 / own lease p99", Fmt("%.3f ms", i99), "lease " + Fmt("%.3f ms", o99),
              RatioText(i99, o99), "(no target)", true);
  PrintFigure("IntegreSQL handout p50 / raw write p50", Fmt("%.3f ms", i50), "row write " + Fmt("%.3f ms", r50),
              RatioText(i50, r50), "(no target)", true);
  PrintFigure("IntegreSQL handout p99 / raw write p99", Fmt("%.3f ms", i99), "row write " + Fmt("%.3f ms", r99),
              RatioText(i99, r99), "(no target)", true);
  const int handouts = static_cast<int>(isql.handout.ms.size() + own.handout.ms.size());
  PrintFigure("daemon CPU per handout + give-back", Fmt("%.3f ms", handouts > 0 ? cpu_ms / handouts : 0), "-", "-",
              "(no target)", true);
  auto errors = [](const Tally& t) { return t.empty() ? std::string("0") : std::to_string(t.total()) + " (" + t.Summary() + ")"; };
  std::printf("\nerrors: IntegreSQL %s, testpool %s; daemon exit code %d\n", errors(isql.errors).c_str(),
              errors(own.errors).c_str(), stopped);
  return isql.errors.empty() && own.errors.empty() && stopped == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  fs::path binary = argc > 1 ? argv[1] : TESTPOOL_BIN_PATH;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 20;
  if (rounds < 1 || !fs::exists(binary)) {
    std::fprintf(stderr, "usage: integresql_bench [TESTPOOL_BINARY] [ROUNDS]\n(binary %s, rounds %d)\n",
                 binary.c_str(), rounds);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    ScratchDir dir("testpool-integresql-bench");
    return Run(binary, dir, rounds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "integresql_bench: FAILED: %s\n", e.what());
    return 1;
  }
}
