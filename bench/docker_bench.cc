// The `docker` backend measured against the real `testpool serve --backend docker`, each figure
// beside the raw primitive measured on the same engine in the same run:
//   1. warm lease handout: a template with min_ready = max = 4 containers; LEASES rounds of
//      lease → release by one keep-alive client, each lease asked only once the pool is whole and
//      quiet again (no recycle or warm runs while a handout is timed); then the same count back to
//      back, asking whenever a slot is ready while recycles run behind. Raw, as lease_bench: the
//      lease-row write (prepared UPDATE + INSERT, one libpq client) on the daemon's control server,
//      and an in-container clone (3.);
//   2. cold container start to ready: the pool grown one slot at a time from 4 to 14, the daemon's
//      own "slot.server_started … ms=" figure for each new container; raw: `docker run -d` of the
//      same template image running `postgres` (the daemon's server settings), polled with
//      `pg_isready` every 10 ms, 10 times; and for context a fresh initdb + postgres in the base
//      image, 3 times;
//   3. recycle inside a container: a template with one container, RECYCLES dirty leases (a row
//      INSERTed through the lease's DSN) released one at a time; the daemon's recycle mean
//      (counters.recycle) beside DROP DATABASE + CREATE DATABASE … TEMPLATE … STRATEGY FILE_COPY
//      run by psql inside that same container right after each recycle (`docker exec`, timed by
//      psql's \timing, so the exec itself is not counted);
// then one table with the targets marked met/missed. The daemon is stopped with SIGTERM (which
// removes its containers); raw containers and the template images this run made are removed, also
// after a failure. Every wait is bounded.
//
// Needs testpool's dockerd ($DOCKER_HOST, else unix:///run/testpool-docker.sock), the base image
// ($TESTPOOL_DOCKER_IMAGE, else testpool/base:pg15-bookworm), the `docker` CLI and pg_isready.
//
// usage: docker_bench [TESTPOOL_BINARY] [LEASES] [RECYCLES]   (TESTPOOL_BENCH_KEEP=1 keeps the state dir and log)
#include <signal.h>

#include <algorithm>
#include <boost/process.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "bench/daemon_harness.h"
#include "orchestrator/backend/docker_api.h"
#include "orchestrator/backend/docker_backend.h"
#include "orchestrator/backend/local_host.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"

namespace bp = boost::process;
namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using namespace testpool;
using namespace testpool::bench;

namespace {

constexpr const char* kDefaultEngine = "unix:///run/testpool-docker.sock";
constexpr const char* kDockerCli = "/usr/bin/docker";
constexpr const char* kPgBin = "/usr/lib/postgresql/15/bin";
constexpr const char* kDataDir = "/var/lib/postgresql/testpool";  // where template images keep the cluster
constexpr int kWarmSlots = 4;
constexpr int kColdSlots = 10;       // new containers the pool grows by, one at a time
constexpr int kRawColdStarts = 10;
constexpr int kRawInitdbStarts = 3;
constexpr int kMaxDatabases = 50;
constexpr auto kIsReadyPoll = 10ms;

// Targets for the docker backend.
constexpr double kTargetHandoutP50Ms = 2.0;
constexpr double kTargetColdMs = 500.0;
constexpr double kTargetRecycleRatio = 0.8;

const char* const kSchema =
    "CREATE TABLE customers (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE, full_name text NOT NULL, "
    "created_at timestamptz NOT NULL DEFAULT now());\n"
    "CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id bigint NOT NULL REFERENCES customers, "
    "total_cents bigint NOT NULL, placed_at timestamptz NOT NULL DEFAULT now());\n"
    "CREATE INDEX orders_customer ON orders (customer_id);\n"
    "INSERT INTO customers (email, full_name) SELECT 'c' || i || '@example.com', 'Customer ' || i "
    "FROM generate_series(1, 2000) i;\n"
    "INSERT INTO orders (customer_id, total_cents) SELECT 1 + i % 2000, i * 7 FROM generate_series(1, 5000) i;\n";

// ---- processes -----------------------------------------------------------------------------------

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

// Runs `program args…` and waits for it; `input` (when not empty) is the file fed to its stdin.
CommandResult RunCommand(const std::string& program, const std::vector<std::string>& args, const fs::path& input = {}) {
  CommandResult r;
  bp::ipstream out;
  try {
    bp::child c = input.empty()
                      ? bp::child(program, bp::args(args), (bp::std_out & bp::std_err) > out, bp::std_in < bp::null)
                      : bp::child(program, bp::args(args), (bp::std_out & bp::std_err) > out, bp::std_in < input.string());
    std::string line;
    while (std::getline(out, line)) r.out += line + "\n";
    c.wait();
    r.exit_code = c.exit_code();
  } catch (const std::exception& e) {
    r.out += std::string("could not run ") + program + ": " + e.what();
  }
  return r;
}

// The same, failing the run unless it exits 0.
std::string MustRun(const std::string& program, const std::vector<std::string>& args, const fs::path& input = {}) {
  CommandResult r = RunCommand(program, args, input);
  if (r.exit_code != 0) {
    std::string cmd = program;
    for (const auto& a : args) cmd += " " + (a.size() > 80 ? a.substr(0, 80) + "…" : a);
    Fail(cmd + " exited " + std::to_string(r.exit_code) + ": " + LastLines(Trim(r.out), 8));
  }
  return Trim(r.out);
}

// `pg_isready -h 127.0.0.1 -p PORT` exits 0: the server accepts connections.
bool IsReady(int port) {
  std::error_code ec;
  int rc = bp::system(std::string(kPgBin) + "/pg_isready", bp::args({"-q", "-h", "127.0.0.1", "-p", std::to_string(port),
                                                                      "-t", "1"}),
                      bp::std_out > bp::null, bp::std_err > bp::null, bp::std_in < bp::null, ec);
  return !ec && rc == 0;
}

// ---- what this run made, removed on the way out ---------------------------------------------------

class Leftovers {
 public:
  explicit Leftovers(backend::DockerApi& api) : api_(api) {}
  ~Leftovers() { RemoveAll(); }
  Leftovers(const Leftovers&) = delete;
  Leftovers& operator=(const Leftovers&) = delete;

  void AddContainer(const std::string& id) { containers_.insert(id); }
  void RemoveContainer(const std::string& id) {
    try {
      api_.RemoveContainer(id, /*force=*/true, /*volumes=*/true);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "docker_bench: could not remove container %s: %s\n", id.substr(0, 12).c_str(), e.what());
    }
    containers_.erase(id);
  }
  void AddImage(const std::string& ref) { images_.insert(ref); }
  // Containers first (an image still used by one cannot go), then images. Call after the daemon stopped.
  void RemoveAll() noexcept {
    for (const std::string& id : std::set<std::string>(containers_)) RemoveContainer(id);
    for (const std::string& ref : images_) {
      try {
        if (api_.InspectImage(ref)) api_.RemoveImage(ref, /*force=*/true);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "docker_bench: could not remove image %s: %s\n", ref.c_str(), e.what());
      }
    }
    images_.clear();
  }

 private:
  backend::DockerApi& api_;
  std::set<std::string> containers_, images_;
};

// ---- the daemon's API ----------------------------------------------------------------------------

struct PoolFigures {
  int ready = 0, leased = 0, warming = 0, recycling = 0, broken = 0;
  bool found = false;
  bool Quiet(int n) const { return found && ready >= n && leased == 0 && warming == 0 && recycling == 0; }
};

struct Status {
  json body;
  PoolFigures Pool(const std::string& name, const std::string& hash) const {
    PoolFigures f;
    if (!body.contains("pools") || !body["pools"].is_array()) return f;
    for (const json& p : body["pools"]) {
      if (p.value("template", std::string()) != name || p.value("hash", std::string()) != hash) continue;
      f.found = true;
      f.ready = p.value("ready", 0);
      f.leased = p.value("leased", 0);
      f.warming = p.value("warming", 0);
      f.recycling = p.value("recycling", 0);
      f.broken = p.value("broken", 0);
    }
    return f;
  }
  double Counter(const char* name) const {
    const json& c = body.contains("counters") ? body["counters"] : json();
    return c.is_object() && c.contains(name) && c[name].is_number() ? c[name].get<double>() : -1;
  }
  double Recycle(const char* key) const {
    const json& c = body.contains("counters") ? body["counters"] : json();
    if (!c.is_object() || !c.contains("recycle") || !c["recycle"].is_object()) return -1;
    const json& h = c["recycle"];
    return h.contains(key) && h[key].is_number() ? h[key].get<double>() : -1;
  }
};

Status GetStatus(httplib::Client& c) {
  auto r = c.Get("/v1/status");
  if (!r || r->status != 200) Fail("GET /v1/status failed: " + DescribeWithBody(r));
  Status s{json::parse(r->body, nullptr, false)};
  if (s.body.is_discarded() || !s.body.is_object()) Fail("GET /v1/status answered: " + r->body.substr(0, 400));
  return s;
}

// Polls /v1/status every `every` until `done(pool)`; fails past `timeout` or when the daemon dies.
template <typename Done>
Status WaitPool(Daemon& daemon, httplib::Client& c, const std::string& name, const std::string& hash,
                const std::string& what, std::chrono::seconds timeout, std::chrono::milliseconds every, Done done) {
  const auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    Status s = GetStatus(c);
    PoolFigures p = s.Pool(name, hash);
    if (done(p)) return s;
    daemon.CheckAlive(what);
    if (SteadyClock::now() > deadline) {
      Fail("timed out after " + std::to_string(timeout.count()) + " s " + what + "; pool: ready " +
           std::to_string(p.ready) + " leased " + std::to_string(p.leased) + " warming " + std::to_string(p.warming) +
           " recycling " + std::to_string(p.recycling) + " broken " + std::to_string(p.broken));
    }
    std::this_thread::sleep_for(every);
  }
}

json TemplateJson(const std::string& sql, int min_ready, int max) {
  return {{"migrations", {{{"name", "0001_init.sql"}, {"sql", sql}}}},
          {"pool", {{"min_ready", min_ready}, {"max", max}}},
          {"recycle", "clone"}};
}

struct Lease {
  std::string id, dsn;
  int port = 0;
};

std::optional<Lease> TakeLease(httplib::Client& c, const std::string& name, std::string* error) {
  json req = {{"ttl_s", 600}, {"wait_s", 60}, {"holder", "docker_bench"}};
  auto r = c.Post("/v1/templates/" + name + "/leases", req.dump(), "application/json");
  if (!r || r->status != 201) {
    *error = DescribeWithBody(r);
    return std::nullopt;
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("dsn") ||
      !j["dsn"].is_string()) {
    *error = "malformed lease answer: " + r->body.substr(0, 200);
    return std::nullopt;
  }
  return Lease{j["id"].get<std::string>(), j["dsn"].get<std::string>(), j.value("port", 0)};
}

void ReleaseLease(httplib::Client& c, const std::string& id) {
  auto r = c.Delete("/v1/leases/" + id);
  if (!r || r->status != 204) Fail("DELETE /v1/leases/" + id + " failed: " + DescribeWithBody(r));
}

// The " key=value" field of a log line; "" when absent.
std::string Field(const std::string& line, const std::string& key) {
  auto at = line.find(" " + key + "=");
  if (at == std::string::npos) return "";
  at += key.size() + 2;
  return line.substr(at, line.find(' ', at) - at);
}

// Lines of the daemon's log with `event` for template `name`, in order.
std::vector<std::string> LogEvents(const fs::path& log, const std::string& event, const std::string& name) {
  std::vector<std::string> out;
  std::istringstream in(Slurp(log));
  for (std::string line; std::getline(in, line);) {
    if (line.find(" " + event + " ") != std::string::npos && Field(line, "template") == name) out.push_back(line);
  }
  return out;
}

// ---- raw primitives --------------------------------------------------------------------------------

// `docker run -d --network host --user postgres IMAGE CMD…`, then pg_isready every 10 ms until the
// server on `port` accepts connections: the wall time in ms. The container is removed afterwards.
double RawStartToReady(Leftovers& left, const std::string& image, int port, const std::vector<std::string>& cmd) {
  const std::string name = "testpool-dbench-raw-" + util::RandomToken(6);
  std::vector<std::string> args = {"run",  "-d",       "--network", "host", "--user", "postgres", "--name", name,
                                   "--label", "testpool.bench=docker_bench", "-e", std::string("PGDATA=") + kDataDir,
                                   image};
  args.insert(args.end(), cmd.begin(), cmd.end());
  const auto t0 = SteadyClock::now();
  std::string id = MustRun(kDockerCli, args);
  id = id.substr(id.rfind('\n') + 1);  // the id is the last line; warnings, if any, come first
  left.AddContainer(id);
  const auto deadline = t0 + 60s;
  while (!IsReady(port)) {
    if (SteadyClock::now() > deadline) {
      std::string log = RunCommand(kDockerCli, {"logs", "--tail", "20", id}).out;
      Fail("raw container " + name + " (port " + std::to_string(port) + ") not ready within 60 s: " + log);
    }
    std::this_thread::sleep_for(kIsReadyPoll);
  }
  double ms = std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count();
  left.RemoveContainer(id);
  return ms;
}

// `postgres` with the settings the daemon gives its slot containers (docker_backend.cc's ServerArgs).
std::vector<std::string> PostgresArgs(int port) {
  std::vector<std::string> args = {std::string(kPgBin) + "/postgres", "-D", kDataDir, "-p", std::to_string(port),
                                   "-c", "unix_socket_directories=/tmp"};
  for (const auto& [key, value] : backend::TestServerSettings()) {
    args.push_back("-c");
    args.push_back(key + "=" + value);
  }
  return args;
}

// psql's "Time: 12.345 ms" figures, in order.
std::vector<double> TimingLines(const std::string& out) {
  std::vector<double> ms;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    double v = 0;  // anywhere in the line: stderr (a NOTICE) may share it
    auto at = line.find("Time: ");
    if (at != std::string::npos && std::sscanf(line.c_str() + at, "Time: %lf ms", &v) == 1) ms.push_back(v);
  }
  return ms;
}

// ---- the run -------------------------------------------------------------------------------------

struct Results {
  std::string engine, base_image, load_before, load_after;
  Samples handout_quiet, handout_churn, release, raw_write;
  Samples cold_daemon, cold_warm_daemon, cold_raw, cold_initdb;
  Samples raw_clone_pair, raw_clone_create, raw_clone_drop, release_to_ready;
  Samples recycle_daemon;  // each recycle's "slot.recycled … ms=" in the daemon's log
  double recycle_mean_ms = -1;
  long long recycles_cloned = -1, recycles_skipped = -1;
  int leases = 0, recycles = 0;
};

void Run(const fs::path& binary, const ScratchDir& dir, Leftovers& left, int leases, int recycles, Results* out) {
  const fs::path state_dir = dir.state_dir();
  const std::string run_id = util::RandomToken(5);
  const std::string warm_tpl = "dbench_" + run_id + "_warm", recycle_tpl = "dbench_" + run_id + "_recycle";
  out->load_before = LoadAverage();

  const int port = FreePort();
  std::printf("starting %s serve --backend docker --docker-image %s --state-dir %s --listen 127.0.0.1:%d\n",
              binary.c_str(), out->base_image.c_str(), state_dir.c_str(), port);
  Daemon daemon(binary, state_dir, dir.log(), port, kMaxDatabases,
                {"--backend", "docker", "--docker-image", out->base_image});
  LogTailOnFailure dump_log(daemon);
  daemon.WaitHealthy(180s);
  std::string owner_line;  // "docker.started … owner=<id> …": the label on every container it makes
  {
    std::istringstream in(Slurp(dir.log()));
    for (std::string line; std::getline(in, line);) {
      if (line.find(" docker.started ") != std::string::npos) owner_line = line;
    }
  }
  const std::string owner_id = Field(owner_line, "owner");
  if (owner_id.empty()) Fail("the daemon's log has no \"docker.started … owner=\" line");
  auto status_client = MakeClient(port, 30s);
  std::printf("daemon up (pid %d, owner %s)\n", daemon.pid(), owner_id.c_str());

  // ---- 1. warm lease handout ----
  std::printf("building template '%s' (min_ready = max = %d)\n", warm_tpl.c_str(), kWarmSlots);
  PutAnswer warm = PutTemplate(daemon, warm_tpl, TemplateJson(kSchema, kWarmSlots, kWarmSlots));
  const std::string warm_image = backend::DockerBackend::TemplateImage(warm_tpl, warm.hash);
  left.AddImage(warm_image);
  WaitPool(daemon, *status_client, warm_tpl, warm.hash, "warming " + std::to_string(kWarmSlots) + " containers", 600s,
           100ms, [](const PoolFigures& p) { return p.Quiet(kWarmSlots); });
  std::printf("warm lease handout: %d × lease → release, one keep-alive client, each on a whole, quiet pool\n", leases);
  {
    auto c = MakeClient(port, 90s);
    for (int i = 0; i < leases; ++i) {
      WaitPool(daemon, *status_client, warm_tpl, warm.hash, "waiting for a quiet pool", 120s, 2ms,
               [](const PoolFigures& p) { return p.Quiet(kWarmSlots); });
      std::string err;
      std::optional<Lease> lease;
      double ms = TimeMs([&] { lease = TakeLease(*c, warm_tpl, &err); });
      if (!lease) Fail("lease " + std::to_string(i + 1) + " failed: " + err);
      out->handout_quiet.Add(ms);
      out->release.Add(TimeMs([&] { ReleaseLease(*c, lease->id); }));
    }
    std::printf("lease handout with recycles running: %d × lease → release back to back, asking once a slot is ready\n",
                leases);
    WaitPool(daemon, *status_client, warm_tpl, warm.hash, "waiting for a quiet pool", 120s, 2ms,
             [](const PoolFigures& p) { return p.Quiet(kWarmSlots); });
    for (int i = 0; i < leases; ++i) {
      WaitPool(daemon, *status_client, warm_tpl, warm.hash, "waiting for a ready slot", 120s, 1ms,
               [](const PoolFigures& p) { return p.found && p.ready >= 1; });
      std::string err;
      std::optional<Lease> lease;
      double ms = TimeMs([&] { lease = TakeLease(*c, warm_tpl, &err); });
      if (!lease) Fail("lease " + std::to_string(i + 1) + " (churn) failed: " + err);
      out->handout_churn.Add(ms);
      ReleaseLease(*c, lease->id);
    }
  }
  std::printf("raw lease-row writes on the control server: %d × prepared UPDATE + INSERT, one client\n", leases);
  out->raw_write = RawLeaseWrites(state_dir, leases, /*clients=*/1);

  // ---- 2. cold container start ----
  std::printf("cold start: growing the pool one container at a time, %d → %d\n", kWarmSlots, kWarmSlots + kColdSlots);
  WaitPool(daemon, *status_client, warm_tpl, warm.hash, "waiting for a quiet pool", 120s, 20ms,
           [](const PoolFigures& p) { return p.Quiet(kWarmSlots); });
  const size_t started_before = LogEvents(dir.log(), "slot.server_started", warm_tpl).size();
  const size_t ready_before = LogEvents(dir.log(), "slot.ready", warm_tpl).size();
  for (int n = kWarmSlots + 1; n <= kWarmSlots + kColdSlots; ++n) {
    PutTemplate(daemon, warm_tpl, TemplateJson(kSchema, n, n));
    WaitPool(daemon, *status_client, warm_tpl, warm.hash, "starting container " + std::to_string(n), 120s, 10ms,
             [n](const PoolFigures& p) { return p.Quiet(n); });
  }
  {
    auto started = LogEvents(dir.log(), "slot.server_started", warm_tpl);
    auto ready = LogEvents(dir.log(), "slot.ready", warm_tpl);
    for (size_t i = started_before; i < started.size(); ++i) out->cold_daemon.Add(std::atof(Field(started[i], "ms").c_str()));
    for (size_t i = ready_before; i < ready.size(); ++i) out->cold_warm_daemon.Add(std::atof(Field(ready[i], "ms").c_str()));
    if (out->cold_daemon.ms.size() != static_cast<size_t>(kColdSlots)) {
      Fail("expected " + std::to_string(kColdSlots) + " slot.server_started lines for the new containers, found " +
           std::to_string(out->cold_daemon.ms.size()));
    }
  }
  std::printf("raw cold start: %d × docker run %s postgres … + pg_isready every 10 ms\n", kRawColdStarts,
              warm_image.c_str());
  for (int i = 0; i < kRawColdStarts; ++i) {
    int p = FreePort();
    out->cold_raw.Add(RawStartToReady(left, warm_image, p, PostgresArgs(p)));
  }
  std::printf("raw fresh cluster: %d × docker run %s initdb + postgres + pg_isready every 10 ms\n", kRawInitdbStarts,
              out->base_image.c_str());
  for (int i = 0; i < kRawInitdbStarts; ++i) {
    int p = FreePort();
    std::string script = std::string(kPgBin) + "/initdb -D \"$PGDATA\" -U postgres -E UTF8 --locale=C.UTF-8 "
                         "--auth=trust --no-sync --no-instructions >/dev/null && exec";
    for (const std::string& a : PostgresArgs(p)) script += " '" + a + "'";
    out->cold_initdb.Add(RawStartToReady(left, out->base_image, p, {"sh", "-c", script}));
  }
  // The 14 containers go before the recycle figures are taken: idle, but nothing else should run.
  {
    auto r = status_client->Delete("/v1/templates/" + warm_tpl);
    if (!r || (r->status != 200 && r->status != 204)) Fail("DELETE /v1/templates/" + warm_tpl + ": " + DescribeWithBody(r));
  }

  // ---- 3. recycle inside one container ----
  std::printf("building template '%s' (one container)\n", recycle_tpl.c_str());
  PutAnswer rec = PutTemplate(daemon, recycle_tpl, TemplateJson(std::string(kSchema) + "SELECT 1;\n", 1, 1));
  left.AddImage(backend::DockerBackend::TemplateImage(recycle_tpl, rec.hash));
  if (rec.database.empty()) Fail("PUT /v1/templates/" + recycle_tpl + " answered no database name");
  WaitPool(daemon, *status_client, recycle_tpl, rec.hash, "warming one container", 600s, 50ms,
           [](const PoolFigures& p) { return p.Quiet(1); });
  // The raw clone runs in that same container, by psql through `docker exec`, timed by psql itself
  // (\timing: the server's round trip, not the exec). One raw round follows each daemon recycle, so
  // both are taken in the same moments: how fast this engine's disk clones drifts within minutes.
  backend::DockerClientOptions o;
  o.address = backend::DockerAddress::Parse(out->engine);
  backend::DockerClient engine(o);
  auto slots = engine.ListContainers(
      {{"testpool.owner", owner_id}, {"testpool.role", "slot"}, {"testpool.template", recycle_tpl}}, false);
  if (slots.size() != 1) Fail("expected one running slot container of '" + recycle_tpl + "', found " + std::to_string(slots.size()));
  const std::string slot_port = slots[0].labels.count("testpool.port") ? slots[0].labels.at("testpool.port") : "";
  if (slot_port.empty()) Fail("the slot container has no testpool.port label");
  const fs::path script = dir.path() / "raw_clone.sql";
  {
    const std::string x = "tp_bench_raw_" + util::RandomToken(6);
    std::ofstream f(script);
    // Twice: the first pair's checkpoint flushes what the daemon's recycle just dirtied and warms the
    // new backend's caches; the second pair is the figure.
    f << "\\timing on\n";
    for (int i = 0; i < 2; ++i) {
      f << "CREATE DATABASE " << x << " TEMPLATE \"" << rec.database << "\" STRATEGY FILE_COPY;\nDROP DATABASE " << x << ";\n";
    }
  }
  const std::vector<std::string> psql = {"exec", "-i", "-u", "postgres", slots[0].id, std::string(kPgBin) + "/psql",
                                         "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "/tmp", "-p", slot_port, "-d",
                                         "postgres", "-f", "-"};
  std::printf("recycle: %d rounds of lease, INSERT through its DSN, release, wait until ready again; then raw DROP + "
              "CREATE DATABASE ... TEMPLATE %s STRATEGY FILE_COPY by psql in container %s\n",
              recycles, rec.database.c_str(), slots[0].id.substr(0, 12).c_str());
  const size_t recycled_before = LogEvents(dir.log(), "slot.recycled", recycle_tpl).size();
  Status before = GetStatus(*status_client);
  {
    auto c = MakeClient(port, 90s);
    for (int i = 0; i < recycles; ++i) {
      std::string err;
      auto lease = TakeLease(*c, recycle_tpl, &err);
      if (!lease) Fail("recycle lease " + std::to_string(i + 1) + " failed: " + err);
      try {
        pg::Connection conn = pg::Connection::Open(lease->dsn, 10s);
        conn.Exec("INSERT INTO customers (email, full_name) VALUES ($1, 'Docker Bench')",
                  {"bench" + std::to_string(i) + "@example.com"});
      } catch (const std::exception& e) {
        Fail("writing through the lease's DSN failed: " + std::string(e.what()));
      }
      auto t0 = SteadyClock::now();
      ReleaseLease(*c, lease->id);
      WaitPool(daemon, *status_client, recycle_tpl, rec.hash, "waiting for the recycle", 120s, 1ms,
               [](const PoolFigures& p) { return p.Quiet(1); });
      out->release_to_ready.Add(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
      // CREATE, DROP, CREATE, DROP: the second pair counts.
      const std::string psql_out = MustRun(kDockerCli, psql, script);
      std::vector<double> t = TimingLines(psql_out);
      if (t.size() != 4) Fail("psql printed " + std::to_string(t.size()) + " timings, expected 4: " + LastLines(psql_out, 5));
      out->raw_clone_create.Add(t[2]);
      out->raw_clone_drop.Add(t[3]);
      out->raw_clone_pair.Add(t[2] + t[3]);
    }
  }
  Status after = GetStatus(*status_client);
  {
    double n = after.Recycle("count") - before.Recycle("count");
    if (n > 0) out->recycle_mean_ms = (after.Recycle("sum_ms") - before.Recycle("sum_ms")) / n;
    out->recycles_cloned = static_cast<long long>(after.Counter("recycles_cloned") - before.Counter("recycles_cloned"));
    out->recycles_skipped = static_cast<long long>(after.Counter("recycles_skipped") - before.Counter("recycles_skipped"));
    auto lines = LogEvents(dir.log(), "slot.recycled", recycle_tpl);
    for (size_t i = recycled_before; i < lines.size(); ++i) out->recycle_daemon.Add(std::atof(Field(lines[i], "ms").c_str()));
  }

  out->load_after = LoadAverage();
  status_client.reset();
  int code = daemon.Stop(60s);
  if (code != 0) Fail("testpool serve did not stop cleanly on SIGTERM (exit code " + std::to_string(code) + ")");
  auto remaining = engine.ListContainers({{"testpool.owner", owner_id}}, true);
  if (!remaining.empty()) {
    std::printf("note: %zu containers of owner %s remained after SIGTERM; removing them\n", remaining.size(),
                owner_id.c_str());
    for (const auto& c : remaining) left.AddContainer(c.id);
  }
}

void Report(const Results& r) {
  const double h50 = r.handout_quiet.Percentile(0.5), h99 = r.handout_quiet.Percentile(0.99);
  const double w50 = r.raw_write.Percentile(0.5), w99 = r.raw_write.Percentile(0.99);
  const double clone50 = r.raw_clone_create.Percentile(0.5);
  const double cold50 = r.cold_daemon.Percentile(0.5), cold_max = r.cold_daemon.Percentile(1.0);
  const double raw50 = r.cold_raw.Percentile(0.5), raw_max = r.cold_raw.Percentile(1.0);
  const double pair_mean = r.raw_clone_pair.Mean();
  const double daemon_rate = r.recycle_mean_ms > 0 ? 1000.0 / r.recycle_mean_ms : 0;
  const double raw_rate = pair_mean > 0 ? 1000.0 / pair_mean : 0;
  const double ratio = raw_rate > 0 ? daemon_rate / raw_rate : 0;

  std::printf("\ntestpool docker bench — engine %s, base image %s, %d leases, %d recycles\n", r.engine.c_str(),
              r.base_image.c_str(), r.leases, r.recycles);
  std::printf("machine: %u cores, load average %s at start, %s at the end\n\n", std::thread::hardware_concurrency(),
              r.load_before.c_str(), r.load_after.c_str());
  PrintLatencyHeader();
  PrintLatencyRow("lease handout, whole quiet pool of 4", r.handout_quiet);
  PrintLatencyRow("lease handout, recycles running behind", r.handout_churn);
  PrintLatencyRow("lease release, DELETE /v1/leases/{id}", r.release);
  PrintLatencyRow("raw lease-row write, control server", r.raw_write);
  PrintLatencyRow("container start-to-ready (daemon log)", r.cold_daemon);
  PrintLatencyRow("  slot warm incl. clone (slot.ready)", r.cold_warm_daemon);
  PrintLatencyRow("raw docker run tpl image + pg_isready", r.cold_raw);
  PrintLatencyRow("raw docker run base: initdb + postgres", r.cold_initdb);
  PrintLatencyRow("recycle in the daemon (slot.recycled ms)", r.recycle_daemon);
  PrintLatencyRow("recycle: release to ready again (client)", r.release_to_ready);
  PrintLatencyRow("raw in-container CREATE ... FILE_COPY", r.raw_clone_create);
  PrintLatencyRow("raw in-container DROP DATABASE", r.raw_clone_drop);
  PrintLatencyRow("raw in-container DROP + CREATE pair", r.raw_clone_pair);
  std::printf("\ndaemon recycle counters over the recycle phase: %lld re-cloned, %lld skipped, mean %.1f ms\n\n",
              r.recycles_cloned, r.recycles_skipped, r.recycle_mean_ms);

  PrintFigureHeader();
  PrintFigure("warm lease handout p50, 1 client", Fmt("%.3f ms", h50), "row write " + Fmt("%.3f ms", w50),
              RatioText(h50, w50), "<= 2 ms", !r.handout_quiet.ms.empty() && h50 <= kTargetHandoutP50Ms);
  PrintFigure("warm lease handout p99, 1 client", Fmt("%.3f ms", h99), "row write " + Fmt("%.3f ms", w99),
              RatioText(h99, w99), "(no target)", true);
  PrintFigure("warm lease handout mean, 1 client", Fmt("%.3f ms", r.handout_quiet.Mean()),
              "row write " + Fmt("%.3f ms", r.raw_write.Mean()), RatioText(r.handout_quiet.Mean(), r.raw_write.Mean()),
              "(no target)", true);
  PrintFigure("warm lease handout p50 / clone p50", Fmt("%.3f ms", h50), "clone " + Fmt("%.2f ms", clone50),
              RatioText(h50, clone50), "(no target)", true);
  PrintFigure("handout p50, recycles running", Fmt("%.3f ms", r.handout_churn.Percentile(0.5)),
              "row write " + Fmt("%.3f ms", w50), RatioText(r.handout_churn.Percentile(0.5), w50), "(no target)", true);
  PrintFigure("cold container start-to-ready p50", Fmt("%.1f ms", cold50), "docker run " + Fmt("%.1f ms", raw50),
              RatioText(cold50, raw50), "<= 500 ms", !r.cold_daemon.ms.empty() && cold50 <= kTargetColdMs);
  PrintFigure("cold container start-to-ready max", Fmt("%.1f ms", cold_max), "docker run " + Fmt("%.1f ms", raw_max),
              RatioText(cold_max, raw_max), "<= 500 ms", !r.cold_daemon.ms.empty() && cold_max <= kTargetColdMs);
  PrintFigure("cold slot to ready (with clone) p50", Fmt("%.1f ms", r.cold_warm_daemon.Percentile(0.5)),
              "initdb run " + Fmt("%.0f ms", r.cold_initdb.Percentile(0.5)),
              RatioText(r.cold_warm_daemon.Percentile(0.5), r.cold_initdb.Percentile(0.5)), "(no target)", true);
  PrintFigure("recycle in a container (daemon mean)", Fmt("%.1f/s", daemon_rate),
              "DROP+CREATE " + Fmt("%.1f/s", raw_rate), Fmt("%.0f%%", 100 * ratio), ">= 80% raw",
              ratio >= kTargetRecycleRatio);
  const double client_rate = r.release_to_ready.Mean() > 0 ? 1000.0 / r.release_to_ready.Mean() : 0;
  PrintFigure("recycle, release-to-ready (client)", Fmt("%.1f/s", client_rate), "DROP+CREATE " + Fmt("%.1f/s", raw_rate),
              Fmt("%.0f%%", raw_rate > 0 ? 100 * client_rate / raw_rate : 0), "(no target)", true);

  std::printf("\nsummary:\n");
  std::printf("  warm handout  p50 %.3f ms, p99 %.3f ms, mean %.3f ms  (raw lease-row write p50 %.3f ms: %s)  target p50 <= 2 ms: %s\n",
              h50, h99, r.handout_quiet.Mean(), w50, RatioText(h50, w50).c_str(),
              h50 <= kTargetHandoutP50Ms ? "met" : "MISSED");
  std::printf("  cold start    p50 %.1f ms, max %.1f ms  (raw docker run + pg_isready p50 %.1f ms, max %.1f ms: %s; "
              "fresh initdb p50 %.0f ms)  target <= 500 ms: %s\n",
              cold50, cold_max, raw50, raw_max, RatioText(cold50, raw50).c_str(), r.cold_initdb.Percentile(0.5),
              cold50 <= kTargetColdMs ? "met" : "MISSED");
  std::printf("  recycle       %.1f/s (mean %.1f ms)  (raw in-container DROP+CREATE %.1f/s, mean %.1f ms): %.0f%%  "
              "target >= 80%%: %s\n",
              daemon_rate, r.recycle_mean_ms, raw_rate, pair_mean, 100 * ratio,
              ratio >= kTargetRecycleRatio ? "met" : "MISSED");
}

}  // namespace

int main(int argc, char** argv) {
  fs::path binary = argc > 1 ? argv[1] : TESTPOOL_BIN_PATH;
  int leases = argc > 2 ? std::atoi(argv[2]) : 300;
  int recycles = argc > 3 ? std::atoi(argv[3]) : 30;
  if (leases < 1 || recycles < 1 || !fs::exists(binary)) {
    std::fprintf(stderr, "usage: docker_bench [TESTPOOL_BINARY] [LEASES] [RECYCLES]\n(binary %s, leases %d, recycles %d)\n",
                 binary.c_str(), leases, recycles);
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress lines show up when piped

  Results results;
  results.leases = leases;
  results.recycles = recycles;
  const char* host = std::getenv("DOCKER_HOST");
  if (host == nullptr || *host == '\0') ::setenv("DOCKER_HOST", kDefaultEngine, 1);  // the daemon and the CLI
  results.engine = std::getenv("DOCKER_HOST");
  const char* image = std::getenv("TESTPOOL_DOCKER_IMAGE");
  results.base_image = image != nullptr && *image != '\0' ? image : backend::kDefaultDockerImage;

  int rc = 0;
  try {
    backend::DockerClientOptions o;
    o.address = backend::DockerAddress::Parse(results.engine);
    backend::DockerClient engine(o);
    Leftovers left(engine);  // removed after the daemon (declared before the scratch dir and daemon)
    std::optional<ScratchDir> dir;
    try {
      engine.Ping();
      if (!engine.InspectImage(results.base_image)) {
        Fail("the engine at " + results.engine + " has no image " + results.base_image + ": run scripts/build-base-image.sh");
      }
      dir.emplace("testpool-docker-bench");
      Run(binary, *dir, left, leases, recycles, &results);
      left.RemoveAll();
      Report(results);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "docker_bench: FAILED: %s\n", e.what());
      rc = 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "docker_bench: FAILED: %s\n", e.what());
    rc = 1;
  }
  return rc;
}
