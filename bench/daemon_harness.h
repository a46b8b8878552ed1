// What the benchmarks that drive the real daemon share: `testpool serve` started as a child process
// (local backend, a state dir of its own, one log file), keep-alive HTTP clients to it, the demo
// shop's template definition, the superuser connection its local backend leaves in the state dir,
// and what /proc says about a process.
//
// Failures are BenchFailure exceptions (Fail()); a benchmark's main() catches them, prints them and
// exits non-zero, with the tail of the daemon's log printed by a LogTailOnFailure guard on the way
// out. Every wait here is bounded. Nothing here is shared between threads except the free
// functions (all reentrant); a Daemon and a ScratchDir belong to the thread that made them, and an
// httplib::Client from MakeClient to one thread at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/bench_util.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/pg/conninfo.h"

namespace testpool::bench {

// A benchmark that cannot go on: the daemon died, an answer was wrong, a wait ran out.
struct BenchFailure : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void Fail(const std::string& message);

double SecondsSince(std::chrono::steady_clock::time_point t0);

// The whole file; "" when it cannot be read.
std::string Slurp(const std::filesystem::path& p);
// `s` without trailing newlines, carriage returns and spaces.
std::string Trim(std::string s);
// The last `n` lines of `text` (all of it when it has fewer).
std::string LastLines(const std::string& text, int n);

// A TCP port on 127.0.0.1 that was free a moment ago. Fails when none can be had.
int FreePort();
bool ProcessAlive(int pid);

// `testpool serve --state-dir STATE --listen 127.0.0.1:PORT --max-databases N [EXTRA…]` as a child
// process, its stdout and stderr in one log file. The destructor stops it as Stop(30 s) does.
class Daemon {
 public:
  // Starts the child; does not wait for it to answer (WaitHealthy). `state_dir` must exist.
  Daemon(const std::filesystem::path& binary, const std::filesystem::path& state_dir, const std::filesystem::path& log,
         int port, int max_databases, const std::vector<std::string>& extra_args = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int pid() const;
  int port() const { return port_; }
  bool Running();
  // Fails ("testpool serve exited (code …) while <during>") when the daemon is gone.
  void CheckAlive(const std::string& during);
  // Polls GET /healthz until it answers 200; fails when the daemon exits or `timeout` passes.
  void WaitHealthy(std::chrono::seconds timeout);
  std::string LogTail(int lines) const;

  // SIGTERM, bounded wait; SIGKILL (and a fast shutdown of its postmaster) past the timeout.
  // Returns the exit code, -1 when it had to be killed, -2 when it was not running. Only the first
  // call acts; later ones return the same code.
  int Stop(std::chrono::seconds timeout);
  // SIGKILL, as a crash: no clean-up, its postmaster left running for the next daemon to adopt.
  // Waits (up to `timeout`) until the process is gone and reaped; later Stop() calls do nothing.
  // Fails when it is still there after `timeout`, or was not running.
  void Kill(std::chrono::seconds timeout);

 private:
  struct Child;  // boost::process::child, kept out of this header
  void StopOrphanedPostmaster();

  const std::filesystem::path state_dir_, log_;
  const int port_;
  std::unique_ptr<Child> child_;
  bool stopped_ = false;
  int exit_code_ = -2;
};

// Prints the last `lines` lines of the daemon's log to stderr when it is destroyed by an exception
// thrown after it was made: declare it right after the Daemon.
class LogTailOnFailure {
 public:
  explicit LogTailOnFailure(const Daemon& daemon, int lines = 40)
      : daemon_(daemon), lines_(lines), exceptions_(std::uncaught_exceptions()) {}
  ~LogTailOnFailure();
  LogTailOnFailure(const LogTailOnFailure&) = delete;
  LogTailOnFailure& operator=(const LogTailOnFailure&) = delete;

 private:
  const Daemon& daemon_;
  const int lines_;
  const int exceptions_;
};

// A keep-alive client to 127.0.0.1:port with TCP_NODELAY, a 2 s connect timeout, a 30 s write
// timeout and `read_timeout` for answers.
std::unique_ptr<httplib::Client> MakeClient(int port, std::chrono::seconds read_timeout);

// The demo shop as a template definition for PUT /v1/templates/{name}: every migrations/*.sql of
// `source` in name order, templates/seed/app_seed.sql and then `extra_seed`, and the pool sizes.
// Fails when there are no migrations or no seed file.
nlohmann::json TemplateBody(const std::filesystem::path& source, int min_ready, int max,
                            const std::vector<nlohmann::json>& extra_seed = {});

struct PutAnswer {
  std::string hash, database;  // the template's hash and its database (tp_tpl_…)
};
// PUT /v1/templates/{name} with `body`, waiting up to 600 s for the build. Fails on anything but
// 200 or 201 (naming the daemon's exit when it died).
PutAnswer PutTemplate(Daemon& daemon, const std::string& name, const nlohmann::json& body);

// "HTTP 503 pool_exhausted" / "transport error: Read" — for error tallies and messages.
std::string Describe(const httplib::Result& r);
// Describe() and the first 400 bytes of the body.
std::string DescribeWithBody(const httplib::Result& r);

// Errors counted by kind (a Describe() text, say), from any thread.
class Tally {
 public:
  void Add(const std::string& kind);
  int total() const { return total_.load(); }
  bool empty() const { return total() == 0; }
  // "3× HTTP 503 pool_exhausted, 1× transport error: Read"; "" when there were none.
  std::string Summary() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, int> kinds_;  // guarded by mu_
  std::atomic<int> total_{0};
};

// The superuser's connection parameters to `dbname` on the daemon's local server, from the files its
// local backend keeps in the state dir (pg/run is the socket directory, pg/port, and
// pg/superuser.password). Fails when those files cannot be read.
pg::ConnInfo SuperuserConnInfo(const std::filesystem::path& state_dir, const std::string& dbname = "postgres");
// A connection with SuperuserConnInfo(). Throws pg::PgError when the server refuses it.
pg::Connection AdminConnection(const std::filesystem::path& state_dir, const std::string& dbname = "postgres");

// The raw primitive behind a lease handout: the daemon's write (one slot row updated, one lease row
// inserted, a prepared statement, a commit) from `clients` libpq connections at once, on a scratch
// database of the control server under `state_dir` (dropped afterwards), `count` times in all.
Samples RawLeaseWrites(const std::filesystem::path& state_dir, int count, int clients);

// CPU time (user + system) process `pid` has used so far, in ms; 0 when it cannot be read.
double CpuMs(int pid);
// A "Key:  123 kB" (or a bare count, as Threads) line of /proc/PID/status; -1 when absent.
double ReadProcStatusKb(int pid, const std::string& key);
// "0.52 0.61 0.70": the 1, 5 and 15 minute load averages.
std::string LoadAverage();

// A fresh /tmp/<prefix>-XXXXXX (mode 0755) with an empty state/ (mode 0755) inside, for the daemon.
// The destructor removes it, unless TESTPOOL_BENCH_KEEP is set: then it says where it is.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix);  // fails when it cannot be made
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path state_dir() const { return path_ / "state"; }
  std::filesystem::path log() const { return path_ / "daemon.log"; }

 private:
  std::filesystem::path path_;
};

}  // namespace testpool::bench
