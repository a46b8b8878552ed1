// `testpool run --template NAME [--ttl S] [--wait S] [--holder H] -- CMD [ARG…]`
//
// Leases a database, runs CMD with DATABASE_URL (the DSN), PGHOST, PGPORT, PGUSER, PGPASSWORD,
// PGDATABASE and TESTPOOL_LEASE_ID in its environment, renews the lease every ttl/3 while CMD
// runs, and releases it whatever happens: CMD succeeds, fails, is killed, or testpool run itself
// gets SIGINT/SIGTERM/SIGHUP/SIGQUIT (forwarded to CMD, whose end then ends the run). Exits with
// CMD's status, 128+N when CMD died of signal N.
//
// Threads: the main thread leases, starts CMD and waits for it; one thread takes the signals
// (blocked everywhere else, unblocked again in CMD) with sigwaitinfo; one renews the lease.
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/search_path.hpp>
#include <boost/program_options.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <iostream>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "orchestrator/cli/cli.h"
#include "orchestrator/cli/command.h"
#include "orchestrator/cli/client.h"
#include "orchestrator/core/pool_manager.h"

namespace bp = boost::process;
namespace po = boost::program_options;
using nlohmann::json;

namespace testpool::cli {
namespace {

const char* kRunUsage = R"(usage: testpool run --template NAME [--ttl S] [--wait S] [--holder H] -- CMD [ARG…]

Leases a database from NAME's pool, runs CMD with DATABASE_URL (the DSN), PGHOST, PGPORT, PGUSER,
PGPASSWORD, PGDATABASE and TESTPOOL_LEASE_ID set, renews the lease every ttl/3 while CMD runs,
forwards SIGINT/SIGTERM/SIGHUP/SIGQUIT to CMD, and releases the lease whatever happens.
Exits with CMD's status (128+N when CMD died of signal N); 127 when CMD cannot be found, 126 when
it cannot be started; 1, 2, 3 as every command when the lease cannot be had.
)";

constexpr int kExitCannotRun = 126;
constexpr int kExitNotFound = 127;

// State shared by the main, signal and renewal threads.
struct Shared {
  std::mutex mu;
  pid_t child = 0;                 // guarded by mu: CMD's pid once started
  bool child_done = false;         // guarded by mu: CMD exited (and is about to be reaped)
  bool stopping = false;           // guarded by mu: the signal thread must leave
  int pending_signal = 0;          // guarded by mu: the first signal that came before CMD started
  ApiClient* acquiring = nullptr;  // guarded by mu: the lease request in flight, to abort it
};

// Takes SIGINT/SIGTERM/SIGHUP/SIGQUIT on a thread of its own while it lives (they are blocked in
// every thread from construction on, and stay blocked: one arriving after the end is harmless).
class SignalThread {
 public:
  explicit SignalThread(Shared& shared) : shared_(shared) {
    sigemptyset(&set_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) sigaddset(&set_, sig);
    pthread_sigmask(SIG_BLOCK, &set_, &original_);
    thread_ = std::thread([this] { Loop(); });
  }
  ~SignalThread() {
    {
      std::lock_guard<std::mutex> lock(shared_.mu);
      shared_.stopping = true;
    }
    pthread_kill(thread_.native_handle(), SIGTERM);  // wakes sigwaitinfo; it sees `stopping`
    thread_.join();
  }
  SignalThread(const SignalThread&) = delete;
  SignalThread& operator=(const SignalThread&) = delete;

  // The mask to give CMD: the one testpool run started with.
  const sigset_t& original_mask() const { return original_; }

 private:
  void Loop() {
    for (;;) {
      siginfo_t info{};
      int sig = sigwaitinfo(&set_, &info);
      if (sig < 0) {
        if (errno == EINTR) continue;
        return;
      }
      std::lock_guard<std::mutex> lock(shared_.mu);
      if (shared_.stopping) return;
      if (shared_.child > 0 && !shared_.child_done) {
        // SI_KERNEL: the terminal sent it (^C, ^\, hang-up) to the whole foreground process
        // group, CMD included; sending it again would deliver it twice.
        if (info.si_code != SI_KERNEL) ::kill(shared_.child, sig);
      } else if (shared_.child == 0) {
        if (shared_.pending_signal == 0) shared_.pending_signal = sig;
        if (shared_.acquiring != nullptr) shared_.acquiring->Stop();
      }
    }
  }

  Shared& shared_;
  sigset_t set_;
  sigset_t original_;
  std::thread thread_;
};

// Releases the lease when it goes out of scope, whatever the path; says so when it cannot. A
// daemon being restarted (unreachable, or 503 while it drains) is asked again for up to
// kReleaseRetry: the lease row survives the restart and its successor releases it.
class Releaser {
 public:
  static constexpr std::chrono::seconds kReleaseRetry{15};

  Releaser(std::string url, std::string token, std::string id, std::string expires_at)
      : url_(std::move(url)), token_(std::move(token)), id_(std::move(id)), expires_at_(std::move(expires_at)) {}
  ~Releaser() {
    const auto give_up = std::chrono::steady_clock::now() + kReleaseRetry;
    std::string why;
    for (auto pause = std::chrono::milliseconds(100);; pause = std::min(pause * 2, std::chrono::milliseconds(2000))) {
      try {
        ApiClient api(url_, token_);
        ApiReply r = api.Delete("/v1/leases/" + PathSegment(id_));
        if (r.status == 204) return;
        why = DescribeError(r);
        if (r.status != 503) break;  // only "try again" is worth trying again
      } catch (const std::exception& e) {  // Unreachable: the daemon may be restarting
        why = e.what();
      }
      if (std::chrono::steady_clock::now() + pause > give_up) break;
      std::this_thread::sleep_for(pause);  // a back-off between attempts, not a synchronisation
    }
    std::cerr << "testpool run: could not release lease " << id_ << " (" << why << "); it expires at " << expires_at_
              << "\n";
  }
  Releaser(const Releaser&) = delete;
  Releaser& operator=(const Releaser&) = delete;

 private:
  const std::string url_, token_, id_, expires_at_;
};

// Renews the lease every `interval` until stopped (its destructor stops and joins it).
std::jthread StartRenewer(Shared& shared, std::condition_variable_any& cv, const std::string& url,
                          const std::string& token, const std::string& id, std::chrono::seconds ttl) {
  auto interval = std::max<std::chrono::milliseconds>(std::chrono::duration_cast<std::chrono::milliseconds>(ttl) / 3,
                                                      std::chrono::milliseconds(100));
  return std::jthread([&shared, &cv, url, token, id, ttl, interval](std::stop_token stop) {
    ApiClient api(url, token);
    std::unique_lock<std::mutex> lock(shared.mu);
    while (!cv.wait_for(lock, stop, interval, [] { return false; }) && !stop.stop_requested()) {
      lock.unlock();
      try {
        ApiReply r = api.Post("/v1/leases/" + PathSegment(id) + "/renew", {{"ttl_s", ttl.count()}});
        if (r.status == 410) {
          std::cerr << "testpool run: lease " << id << " ended before CMD did (" << DescribeError(r)
                    << "); its credentials no longer work\n";
          return;
        }
        if (r.status != 200) std::cerr << "testpool run: renewing lease " << id << " failed: " << DescribeError(r) << "\n";
      } catch (const std::exception& e) {
        std::cerr << "testpool run: renewing lease " << id << " failed: " << e.what() << "\n";
      }
      lock.lock();
    }
  });
}

// The path CMD's name resolves to, like a shell would; empty when not found.
std::string Resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), F_OK) == 0 ? name : "";
  return bp::search_path(name).string();
}

int RunBody(int argc, char** argv) {
  // Our options before "--", CMD after it.
  std::vector<std::string> own, cmd;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      cmd.assign(argv + i + 1, argv + argc);
      break;
    }
    own.push_back(argv[i]);
  }
  po::options_description opts("testpool run options");
  opts.add_options()("help,h", "show this help")
      ("template", po::value<std::string>(), "template whose pool to lease from")
      ("ttl", po::value<int>(), "lease lifetime in seconds, renewed every ttl/3 while CMD runs (default 600)")
      ("wait", po::value<int>(), "seconds to wait for a free database (daemon default 30)")
      ("holder", po::value<std::string>(), "who holds the lease, shown in status");
  po::variables_map vm = ParseArgs(own, opts, nullptr);
  if (vm.count("help")) {
    std::cout << kRunUsage << "\n" << opts;
    return kExitOk;
  }
  if (!vm.count("template") || cmd.empty()) {
    std::cerr << "testpool run: --template NAME and a command after -- are required\n" << kRunUsage;
    return kExitUsage;
  }
  const std::string exe = Resolve(cmd[0]);
  if (exe.empty()) {
    std::cerr << "testpool run: " << cmd[0] << ": command not found\n";
    return kExitNotFound;
  }
  const std::chrono::seconds ttl = vm.count("ttl") ? std::chrono::seconds(vm["ttl"].as<int>()) : core::LeaseRequest{}.ttl;
  json request = {{"ttl_s", ttl.count()}};
  if (vm.count("wait")) request["wait_s"] = vm["wait"].as<int>();
  if (vm.count("holder")) request["holder"] = vm["holder"].as<std::string>();
  const std::string url = DefaultUrl();
  const std::string token = DefaultToken();  // read once: the same for the lease, renewals and release

  Shared shared;
  SignalThread signals(shared);  // from here on, SIGINT/SIGTERM/… are ours

  // Lease (abortable by a signal).
  ApiClient acquire(url, token);
  ApiReply granted;
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (shared.pending_signal != 0) return 128 + shared.pending_signal;
    shared.acquiring = &acquire;
  }
  try {
    granted = acquire.Post("/v1/templates/" + PathSegment(vm["template"].as<std::string>()) + "/leases", request);
  } catch (const Unreachable&) {
    std::lock_guard<std::mutex> lock(shared.mu);
    shared.acquiring = nullptr;
    if (shared.pending_signal != 0) return 128 + shared.pending_signal;
    throw;
  }
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    shared.acquiring = nullptr;
  }
  if (granted.status != 201 || !granted.body.is_object() || !granted.body.contains("id")) {
    std::cerr << "testpool run: " << DescribeError(granted) << "\n";
    return kExitFailed;
  }
  const json& lease = granted.body;
  const std::string id = lease.value("id", "");
  Releaser releaser(url, token, id, lease.value("expires_at", ""));

  // Our environment plus the lease's. Entries are set with set(), not operator[]: in Boost 1.74
  // operator[] (through find()) compares "KEY=" against every entry without checking its length
  // and reads past the shorter ones (AddressSanitizer reports it); set() checks the length first.
  bp::environment env = boost::this_process::environment();
  env.set("DATABASE_URL", lease.value("dsn", ""));
  env.set("PGHOST", lease.value("host", ""));
  env.set("PGPORT", std::to_string(lease.value("port", 0)));
  env.set("PGUSER", lease.value("user", ""));
  env.set("PGPASSWORD", lease.value("password", ""));
  env.set("PGDATABASE", lease.value("database", ""));
  env.set("TESTPOOL_LEASE_ID", id);

  // Start CMD under the lock, so that a signal is either pending (CMD never starts) or forwarded.
  std::optional<bp::child> child;
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    if (shared.pending_signal != 0) return 128 + shared.pending_signal;
    const sigset_t* mask = &signals.original_mask();
    try {
      child.emplace(bp::exe = exe, bp::args = std::vector<std::string>(cmd.begin() + 1, cmd.end()), env,
                    bp::extend::on_exec_setup = [mask](auto&) { sigprocmask(SIG_SETMASK, mask, nullptr); });
    } catch (const bp::process_error& e) {
      std::cerr << "testpool run: cannot run " << cmd[0] << ": " << e.code().message() << "\n";
      return kExitCannotRun;
    }
    shared.child = child->id();
  }

  std::condition_variable_any renew_cv;  // only ever woken by the renewer's stop request
  std::jthread renewer = StartRenewer(shared, renew_cv, url, token, id, ttl);

  // Wait for CMD's end without reaping it, mark it done, then reap: while the signal thread may
  // still forward, the pid cannot be reused.
  siginfo_t info{};
  int rc;
  do {
    rc = waitid(P_PID, static_cast<id_t>(shared.child), &info, WEXITED | WNOWAIT);
  } while (rc != 0 && errno == EINTR);
  {
    std::lock_guard<std::mutex> lock(shared.mu);
    shared.child_done = true;
  }
  std::error_code ec;
  child->wait(ec);
  int status = kExitFailed;
  if (rc == 0) {
    status = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
  } else if (!ec) {
    status = child->exit_code();
  }
  // renewer stops, then the lease is released (releaser), then the signal thread ends.
  return status;
}

}  // namespace

int Run(int argc, char** argv) { return RunCommand("run", kRunUsage, [&] { return RunBody(argc, argv); }); }

}  // namespace testpool::cli
