#include "bench/daemon_harness.h"

#include <arpa/inet.h>
#include <errno.h>  // program_invocation_short_name
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <atomic>
#include <boost/process.hpp>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>
#include <thread>

#include <nlohmann/json.hpp>

#include "orchestrator/util/crypto.h"

namespace testpool::bench {

namespace bp = boost::process;
namespace fs = std::filesystem;
using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
using namespace std::chrono_literals;

void Fail(const std::string& message) { throw BenchFailure(message); }

double SecondsSince(SteadyClock::time_point t0) { return std::chrono::duration<double>(SteadyClock::now() - t0).count(); }

std::string Slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string LastLines(const std::string& text, int n) {
  if (text.empty()) return text;
  size_t pos = text.size();
  for (int i = 0; i <= n && pos > 0; ++i) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
  }
  return text.substr(pos + 1);
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) Fail("socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    Fail("could not find a free TCP port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

bool ProcessAlive(int pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// ---- Daemon ----

struct Daemon::Child {
  bp::child child;
};

Daemon::Daemon(const fs::path& binary, const fs::path& state_dir, const fs::path& log, int port, int max_databases,
               const std::vector<std::string>& extra_args)
    : state_dir_(state_dir), log_(log), port_(port), child_(std::make_unique<Child>()) {
  std::vector<std::string> args = {"serve",          "--state-dir",   state_dir.string(),
                                    "--listen",       "127.0.0.1:" + std::to_string(port),
                                    "--max-databases", std::to_string(max_databases)};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  // The wire proxy on any free port unless asked otherwise: a demo daemon may hold the default.
  if (std::find(extra_args.begin(), extra_args.end(), "--proxy-listen") == extra_args.end()) {
    args.insert(args.end(), {"--proxy-listen", "127.0.0.1:0"});
  }
  child_->child = bp::child(binary.string(), bp::args(args), (bp::std_out & bp::std_err) > log.string(),
                            bp::std_in < bp::null);
}

Daemon::~Daemon() { Stop(30s); }

int Daemon::pid() const { return child_->child.id(); }

bool Daemon::Running() {
  std::error_code ec;
  return child_->child.valid() && child_->child.running(ec);
}

void Daemon::CheckAlive(const std::string& during) {
  if (!Running()) {
    Fail("testpool serve exited (code " + std::to_string(child_->child.exit_code()) + ") while " + during);
  }
}

void Daemon::WaitHealthy(std::chrono::seconds timeout) {
  auto c = MakeClient(port_, 30s);
  auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    CheckAlive("starting (waiting for /healthz)");
    if (auto r = c->Get("/healthz"); r && r->status == 200) return;
    if (SteadyClock::now() > deadline) {
      Fail("testpool serve did not answer /healthz within " + std::to_string(timeout.count()) + " s");
    }
    std::this_thread::sleep_for(50ms);
  }
}

std::string Daemon::LogTail(int lines) const { return LastLines(Slurp(log_), lines); }

int Daemon::Stop(std::chrono::seconds timeout) {
  if (stopped_) return exit_code_;
  stopped_ = true;
  bp::child& child = child_->child;
  if (!Running()) {
    exit_code_ = child.valid() ? child.exit_code() : -2;
    return exit_code_;
  }
  ::kill(child.id(), SIGTERM);
  auto deadline = SteadyClock::now() + timeout;
  while (Running() && SteadyClock::now() < deadline) std::this_thread::sleep_for(20ms);
  if (Running()) {
    std::fprintf(stderr, "%s: testpool serve ignored SIGTERM for %llds; killing it\n", program_invocation_short_name,
                 static_cast<long long>(timeout.count()));
    ::kill(child.id(), SIGKILL);
    std::error_code ec;
    child.wait(ec);
    StopOrphanedPostmaster();
    exit_code_ = -1;
    return exit_code_;
  }
  exit_code_ = child.exit_code();
  StopOrphanedPostmaster();  // normally already stopped by the daemon; this is a no-op then
  return exit_code_;
}

void Daemon::Kill(std::chrono::seconds timeout) {
  if (stopped_ || !Running()) Fail("testpool serve was not running when it was to be killed");
  ::kill(child_->child.id(), SIGKILL);
  auto deadline = SteadyClock::now() + timeout;
  while (Running()) {
    if (SteadyClock::now() > deadline) Fail("testpool serve outlived SIGKILL for " + std::to_string(timeout.count()) + " s");
    std::this_thread::sleep_for(5ms);
  }
  stopped_ = true;
  exit_code_ = -1;
}

void Daemon::StopOrphanedPostmaster() {
  std::string pidfile = Slurp(state_dir_ / "pg" / "data" / "postmaster.pid");
  int pm = std::atoi(pidfile.substr(0, pidfile.find('\n')).c_str());
  if (!ProcessAlive(pm)) return;
  std::fprintf(stderr, "%s: stopping postmaster %d left behind\n", program_invocation_short_name, pm);
  ::kill(pm, SIGINT);
  auto deadline = SteadyClock::now() + 30s;
  while (ProcessAlive(pm) && SteadyClock::now() < deadline) std::this_thread::sleep_for(50ms);
  if (ProcessAlive(pm)) ::kill(pm, SIGKILL);
}

LogTailOnFailure::~LogTailOnFailure() {
  if (std::uncaught_exceptions() <= exceptions_) return;
  try {
    std::fprintf(stderr, "---- last lines of the daemon's log ----\n%s\n----\n", daemon_.LogTail(lines_).c_str());
  } catch (const std::exception& e) {  // a destructor during unwinding must not throw
    std::fprintf(stderr, "(could not read the daemon's log: %s)\n", e.what());
  }
}

// ---- HTTP ----

std::unique_ptr<httplib::Client> MakeClient(int port, std::chrono::seconds read_timeout) {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
  c->set_keep_alive(true);
  // Without it a POST's body, written after its headers, waits out Nagle + delayed ACK (~40 ms).
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(2s);
  c->set_read_timeout(read_timeout);
  c->set_write_timeout(30s);
  return c;
}

json TemplateBody(const fs::path& source, int min_ready, int max, const std::vector<json>& extra_seed) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(source / "migrations")) {
    if (e.is_regular_file() && e.path().extension() == ".sql") files.push_back(e.path());
  }
  if (files.empty()) Fail("no migrations in " + (source / "migrations").string());
  std::sort(files.begin(), files.end());  // NNNN_ prefixes: name order is migration order
  json migrations = json::array();
  for (const auto& f : files) migrations.push_back({{"name", f.filename().string()}, {"sql", Slurp(f)}});
  fs::path seed_file = source / "templates" / "seed" / "app_seed.sql";
  if (!fs::exists(seed_file)) Fail("missing " + seed_file.string());
  json seed = json::array({{{"name", seed_file.filename().string()}, {"sql", Slurp(seed_file)}}});
  for (const json& s : extra_seed) seed.push_back(s);
  return {{"migrations", migrations}, {"seed", seed}, {"pool", {{"min_ready", min_ready}, {"max", max}}}};
}

PutAnswer PutTemplate(Daemon& daemon, const std::string& name, const json& body) {
  auto c = MakeClient(daemon.port(), 600s);
  auto r = c->Put("/v1/templates/" + name, body.dump(), "application/json");
  if (!r || (r->status != 200 && r->status != 201)) {
    daemon.CheckAlive("building template " + name);
    Fail("PUT /v1/templates/" + name + " failed: " + DescribeWithBody(r));
  }
  json j = json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) Fail("PUT /v1/templates/" + name + " answered " + r->body.substr(0, 200));
  return PutAnswer{j.value("hash", std::string()), j.value("database", std::string())};
}

std::string Describe(const httplib::Result& r) {
  if (!r) return "transport error: " + httplib::to_string(r.error());
  std::string what = "HTTP " + std::to_string(r->status);
  json body = json::parse(r->body, nullptr, false);
  if (!body.is_discarded() && body.is_object() && body.contains("error") && body["error"].is_object()) {
    what += " " + body["error"].value("code", std::string("?"));
  }
  return what;
}

std::string DescribeWithBody(const httplib::Result& r) {
  std::string what = Describe(r);
  if (r) what += ": " + r->body.substr(0, 400);
  return what;
}

void Tally::Add(const std::string& kind) {
  std::lock_guard<std::mutex> lock(mu_);
  ++kinds_[kind];
  ++total_;
}

std::string Tally::Summary() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string s;
  for (const auto& [k, n] : kinds_) s += (s.empty() ? "" : ", ") + std::to_string(n) + "× " + k;
  return s;
}

// ---- PostgreSQL and /proc ----

pg::ConnInfo SuperuserConnInfo(const fs::path& state_dir, const std::string& dbname) {
  std::string port = Trim(Slurp(state_dir / "pg" / "port"));
  std::string password = Trim(Slurp(state_dir / "pg" / "superuser.password"));
  if (port.empty() || password.empty()) Fail("cannot read pg/port and pg/superuser.password in " + state_dir.string());
  pg::ConnInfo info;
  info.Set("host", (state_dir / "pg" / "run").string());
  info.Set("port", port);
  info.Set("user", "postgres");
  info.Set("password", password);
  info.Set("dbname", dbname);
  return info;
}

pg::Connection AdminConnection(const fs::path& state_dir, const std::string& dbname) {
  return pg::Connection::Open(SuperuserConnInfo(state_dir, dbname));
}

double CpuMs(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14 || i == 15) ticks += std::atof(f.c_str());  // utime, stime
  }
  return ticks * 1000.0 / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double ReadProcStatusKb(int pid, const std::string& key) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) return std::atof(line.c_str() + key.size() + 1);
  }
  return -1;
}

std::string LoadAverage() {
  std::string l = Trim(Slurp("/proc/loadavg"));
  return l.substr(0, l.find(' ', l.find(' ', l.find(' ') + 1) + 1));  // 1, 5 and 15 minutes
}

// ---- ScratchDir ----

ScratchDir::ScratchDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    Fail("mkdtemp(" + tmpl + "): " + std::error_code(errno, std::generic_category()).message());
  }
  path_ = tmpl;
  try {
    fs::permissions(path_, fs::perms(0755));
    fs::create_directory(state_dir());
    fs::permissions(state_dir(), fs::perms(0755));
  } catch (...) {
    std::error_code ec;
    fs::remove_all(path_, ec);
    throw;
  }
}

ScratchDir::~ScratchDir() {
  if (std::getenv("TESTPOOL_BENCH_KEEP") != nullptr) {  // for a look at the daemon's log afterwards
    std::fprintf(stderr, "%s: kept %s (TESTPOOL_BENCH_KEEP)\n", program_invocation_short_name, path_.c_str());
    return;
  }
  std::error_code ec;
  fs::remove_all(path_, ec);
  if (ec) std::fprintf(stderr, "%s: could not remove %s: %s\n", program_invocation_short_name, path_.c_str(), ec.message().c_str());
}

Samples RawLeaseWrites(const fs::path& state_dir, int count, int clients) {
  const std::string db = "tp_bench_writes_" + util::RandomToken(6);
  pg::Connection admin = AdminConnection(state_dir);
  admin.Exec("CREATE DATABASE " + admin.QuoteIdent(db));
  Samples out;
  try {
    {
      pg::Connection c = AdminConnection(state_dir, db);
      c.Exec("CREATE TABLE slots (id text PRIMARY KEY, state text NOT NULL, token bigint NOT NULL, lease_id text, "
             "updated_at timestamptz); "
             "CREATE TABLE leases (id text PRIMARY KEY, slot_id text NOT NULL, token bigint NOT NULL, holder text, "
             "created_at timestamptz, expires_at timestamptz, state text); "
             "INSERT INTO slots SELECT 's' || i, 'ready', 0 FROM generate_series(1, 200) i");
    }
    std::atomic<int> next{0};
    std::mutex mu;
    std::vector<std::thread> threads;
    for (int t = 0; t < clients; ++t) {
      threads.emplace_back([&, t] {
        pg::Connection c = AdminConnection(state_dir, db);
        Samples mine;
        for (int i; (i = next.fetch_add(1)) < count;) {
          const std::string id = util::RandomToken(26), slot = "s" + std::to_string(1 + (t * 10 + i) % 200);
          mine.Add(TimeMs([&] {
            c.ExecPrepared("w",
                           "WITH s AS (UPDATE slots SET state = 'leased', token = token + 1, lease_id = $1, "
                           "updated_at = now() WHERE id = $2) INSERT INTO leases VALUES ($1, $2, 1, 'bench', now(), "
                           "now() + interval '10 minutes', 'active')",
                           {id, slot});
          }));
        }
        std::lock_guard<std::mutex> lock(mu);
        out.ms.insert(out.ms.end(), mine.ms.begin(), mine.ms.end());
      });
    }
    for (auto& t : threads) t.join();
  } catch (...) {
    admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(db) + " WITH (FORCE)");
    throw;
  }
  admin.Exec("DROP DATABASE IF EXISTS " + admin.QuoteIdent(db) + " WITH (FORCE)");
  return out;
}

}  // namespace testpool::bench
