#include "orchestrator/backend/local_backend.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>
#include <tuple>

#include "orchestrator/backend/local_host.h"
#include "orchestrator/backend/process_util.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::backend {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kReadyPoll = 20ms;        // between readiness probes
constexpr auto kSupervisePoll = 100ms;   // between liveness checks of a running postmaster
constexpr auto kFirstBackoff = 200ms;    // before the first restart; doubles up to kMaxBackoff
constexpr auto kMaxBackoff = 5000ms;
constexpr auto kFastShutdownWait = 30s;  // after SIGINT, before SIGQUIT
constexpr auto kEscalationWait = 5s;     // after SIGQUIT, before SIGKILL
constexpr size_t kMaxSocketPath = 107;   // sizeof(sockaddr_un::sun_path) minus the NUL
constexpr int kBackgroundNice = 10;     // see Deprioritize()

Error BackendError(const std::string& message) { return Error(ErrorCode::kBackend, message); }

void CheckSetting(const std::string& key) {
  const bool ok = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.';
  });
  if (!ok) throw Error(ErrorCode::kInvalidArgument, "invalid server setting name '" + key + "'");
}

struct Waited {
  enum Kind { kReady, kExited, kStopped, kTimedOut } kind;
  int status = -1;  // kExited: the wait status
};

}  // namespace

struct LocalBackend::Impl {
  explicit Impl(LocalBackendOptions opts);

  void Start();
  void Stop() noexcept;
  pg::ConnInfo AdminConnInfo() const;
  bool WaitReady(std::chrono::milliseconds timeout) const;
  void LockDown();  // revokes PUBLIC's CONNECT on postgres and template1; reloads the config
  void WriteAuthConfig();  // pg_hba.conf and pg_ident.conf, at every start

  void PrepareDirectories();
  std::string EnsureCluster();  // returns the superuser password
  int ChoosePort();
  void CheckSocketPath(int port) const;
  // A live postmaster of our data directory, from postmaster.pid: {pid, port}.
  std::optional<std::pair<pid_t, int>> FindRunningPostmaster();
  pid_t SpawnPostmaster(int port);
  uintmax_t LogSize() const;
  Waited WaitUntilReady(pid_t pid, bool own_child, SteadyClock::time_point deadline);
  void ShutDown(pid_t pid, bool own_child);
  void Supervise();
  bool Restart();  // false when Stop() interrupted it

  // Constant after construction.
  const LocalBackendOptions options;
  const fs::path state_dir;
  const fs::path pg_dir, data_dir, run_dir, log_path, password_path, port_path;

  // Set by Start() before the supervisor runs; read by it; the main thread's otherwise.
  fs::path bin_dir;
  RunAs run_as;
  std::thread supervisor;

  mutable std::mutex mu;
  mutable std::condition_variable cv;  // signalled when `stopping` becomes true
  bool stopping = false;               // guarded by mu
  pid_t pid = 0;                       // guarded by mu; the postmaster, 0 when none
  bool own_child = false;              // guarded by mu; false: adopted (not our child)
  int restarts = 0;                    // guarded by mu
  int port = 0;                        // guarded by mu
  std::string password;                // guarded by mu
};

LocalBackend::Impl::Impl(LocalBackendOptions opts)
    : options(std::move(opts)),
      state_dir(fs::absolute(options.state_dir).lexically_normal()),
      pg_dir(state_dir / "pg"),
      data_dir(pg_dir / "data"),
      run_dir(pg_dir / "run"),
      log_path(pg_dir / "server.log"),
      password_path(pg_dir / "superuser.password"),
      port_path(pg_dir / "port") {
  for (const auto& [key, value] : options.settings) CheckSetting(key);
}

void LocalBackend::Impl::PrepareDirectories() {
  std::error_code ec;
  fs::create_directories(state_dir, ec);
  if (ec) throw BackendError("cannot create the state directory " + state_dir.string() + ": " + ec.message());
  if (run_as.switch_user) {
    fs::path prefix;
    for (const fs::path& part : fs::canonical(state_dir)) {
      prefix /= part;
      if (!CanSearch(run_as, prefix)) {
        throw BackendError(prefix.string() + " is not searchable by user " + run_as.name +
                           "; pass --state-dir under a directory it can reach, e.g. /var/lib/testpool");
      }
    }
  }
  MakeDir(pg_dir, 0700, run_as);
  MakeDir(run_dir, 0700, run_as);
  struct stat st {};
  if (run_as.switch_user && ::stat(data_dir.c_str(), &st) == 0 && st.st_uid != run_as.uid) {
    // The cluster was created by another user (the daemon ran unprivileged before): hand it over.
    for (const auto& entry : fs::recursive_directory_iterator(data_dir)) {
      ::lchown(entry.path().c_str(), run_as.uid, run_as.gid);
    }
    ::chown(data_dir.c_str(), run_as.uid, run_as.gid);
  }
}

std::string LocalBackend::Impl::EnsureCluster() {
  if (fs::exists(data_dir / "PG_VERSION")) {
    std::optional<std::string> existing = ReadTrimmed(password_path);
    if (!existing || existing->empty()) {
      throw BackendError(password_path.string() + " is missing, so the cluster in " + data_dir.string() +
                         " cannot be used; remove " + pg_dir.string() + " to start afresh (its databases go with it)");
    }
    return *existing;
  }
  std::error_code ec;
  if (fs::exists(data_dir)) {
    log::Warn("backend.local.initdb_leftover_removed", {{"data_dir", data_dir.string()}});
    fs::remove_all(data_dir, ec);
  }
  const std::string secret = util::RandomToken(24);
  WriteFileAtomically(password_path, secret + "\n", 0600);

  // initdb reads the password from a file: one only the postgres user can read, removed after.
  const fs::path pwfile = pg_dir / "initdb.pwfile";
  ::unlink(pwfile.c_str());
  const int fd = ::open(pwfile.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  const std::string line = secret + "\n";
  bool ok = fd >= 0 && ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) &&
            (!run_as.switch_user || ::fchown(fd, run_as.uid, run_as.gid) == 0);
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  struct Remove {
    const fs::path& path;
    ~Remove() { ::unlink(path.c_str()); }
  } remove_pwfile{pwfile};
  if (!ok) throw BackendError("cannot write " + pwfile.string() + ": " + std::strerror(errno));

  const Command cmd{bin_dir / "initdb",
                    {"-D", data_dir.string(), "-U", "postgres", "--pwfile=" + pwfile.string(),
                     "--auth=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync"},
                    pg_dir,
                    run_as};
  const auto start = SteadyClock::now();
  const Outcome out = RunAndCapture(cmd);
  if (!out.ok()) {
    throw BackendError("initdb failed (" + DescribeWaitStatus(out.wait_status) + "): `" + cmd.ToString() +
                       "`; its last output:\n" + Tail(out.output));
  }
  log::Info("backend.local.initdb",
            {{"data_dir", data_dir.string()},
             {"ms", log::Ms(std::chrono::duration<double, std::milli>(SteadyClock::now() - start).count())}});
  return secret;
}

int LocalBackend::Impl::ChoosePort() {
  const std::optional<std::string> stored = ReadTrimmed(port_path);
  int chosen = options.port;
  if (chosen == 0 && stored) {
    const std::optional<int> parsed = ParseInt(*stored);
    if (!parsed || *parsed < 1 || *parsed > 65535) {
      throw BackendError(port_path.string() + " holds '" + *stored + "', not a port number; remove it");
    }
    chosen = *parsed;
  }
  if (chosen != 0) {
    if (!PortIsFree(chosen)) {
      throw BackendError("port " + std::to_string(chosen) + " on 127.0.0.1 is taken by another program; free it " +
                         "or choose another port");
    }
  } else {
    chosen = PickFreePort(kServerPortLow, kServerPortHigh);
    if (chosen == 0) {
      throw BackendError("no free TCP port found on 127.0.0.1 between " + std::to_string(kServerPortLow) + " and " +
                         std::to_string(kServerPortHigh) + "; choose one explicitly");
    }
  }
  if (stored != std::to_string(chosen)) WriteFileAtomically(port_path, std::to_string(chosen) + "\n", 0644);
  return chosen;
}

void LocalBackend::Impl::CheckSocketPath(int for_port) const {
  const std::string socket = (run_dir / (".s.PGSQL." + std::to_string(for_port))).string();
  if (socket.size() > kMaxSocketPath) {
    throw BackendError("the unix socket path " + socket + " would be " + std::to_string(socket.size()) +
                       " bytes, more than the " + std::to_string(kMaxSocketPath) +
                       " a unix socket address can hold; choose a shorter --state-dir");
  }
}

std::optional<std::pair<pid_t, int>> LocalBackend::Impl::FindRunningPostmaster() {
  // postmaster.pid: pid, data directory, start time, port, socket directory, …
  const fs::path pid_file = data_dir / "postmaster.pid";
  std::ifstream in(pid_file);
  std::string pid_line, dir_line, start_line, port_line;
  if (!std::getline(in, pid_line) || !std::getline(in, dir_line) || !std::getline(in, start_line) ||
      !std::getline(in, port_line)) {
    return std::nullopt;
  }
  const std::optional<int> found = ParseInt(pid_line);
  const std::optional<int> found_port = ParseInt(port_line);
  if (!found || *found <= 0 || !found_port || !IsAlive(*found)) return std::nullopt;  // stale: postgres copes
  const std::vector<std::string> argv = ProcessCmdline(*found);
  const std::string program = argv.empty() ? "" : fs::path(argv[0]).filename().string();
  std::error_code ec;
  if (program == "postgres" && fs::equivalent(dir_line, data_dir, ec)) return std::make_pair(*found, *found_port);
  if (program.rfind("postgres", 0) != 0) {
    // The pid was reused by an unrelated program (after a reboot, say): postgres would refuse to
    // start while the stale file names a live process.
    log::Warn("backend.local.stale_pid_file_removed", {{"pid", pid_line}, {"program", program}});
    ::unlink(pid_file.c_str());
  }
  return std::nullopt;
}

pid_t LocalBackend::Impl::SpawnPostmaster(int on_port) {
  Command cmd{bin_dir / "postgres",
              {"-D", data_dir.string(), "-p", std::to_string(on_port), "-k", run_dir.string()},
              pg_dir,
              run_as};
  for (const auto& list : {TestServerSettings(), options.settings}) {
    for (const auto& [key, value] : list) {
      cmd.args.push_back("-c");
      cmd.args.push_back(key + "=" + value);
    }
  }
  const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw BackendError("cannot open " + log_path.string() + ": " + std::strerror(errno));
  if (run_as.switch_user) (void)::fchown(fd, run_as.uid, run_as.gid);
  try {
    const pid_t child = Spawn(cmd, fd);
    ::close(fd);
    return child;
  } catch (...) {
    ::close(fd);
    throw;
  }
}

uintmax_t LocalBackend::Impl::LogSize() const {
  std::error_code ec;
  const uintmax_t size = fs::file_size(log_path, ec);
  return ec ? 0 : size;
}

Waited LocalBackend::Impl::WaitUntilReady(pid_t postmaster, bool own, SteadyClock::time_point deadline) {
  pg::ConnInfo probe = AdminConnInfo();
  probe.Set("dbname", "postgres");
  std::unique_lock lock(mu);
  for (;;) {
    lock.unlock();
    if (pg::Ping(probe)) return {Waited::kReady};
    if (std::optional<int> status = ExitStatus(postmaster, own)) return {Waited::kExited, *status};
    lock.lock();
    if (cv.wait_for(lock, kReadyPoll, [&] { return stopping; })) return {Waited::kStopped};
    if (SteadyClock::now() >= deadline) return {Waited::kTimedOut};
  }
}

void LocalBackend::Impl::Start() {
  if (supervisor.joinable()) return;  // already running
  bin_dir = FindServerBinaries(options.bin_dir);
  run_as = ::geteuid() == 0 ? LookupUser(options.run_as_user) : CurrentUser();
  // Before initdb, so a too-long path fails fast (random ports all have 5 digits).
  CheckSocketPath(options.port != 0 ? options.port : kServerPortHigh);
  PrepareDirectories();
  const std::string secret = EnsureCluster();
  WriteAuthConfig();

  {
    std::lock_guard lock(mu);
    stopping = false;
    password = secret;
  }
  const auto deadline = SteadyClock::now() + options.start_timeout;
  const uintmax_t log_offset = LogSize();
  pid_t postmaster = 0;
  int chosen_port = 0;
  bool own = true;
  Waited waited{Waited::kExited};
  if (const auto running = FindRunningPostmaster()) {
    std::tie(postmaster, chosen_port) = *running;
    if (options.port != 0 && options.port != chosen_port) {
      throw BackendError("postgres (pid " + std::to_string(postmaster) + ") already runs for " + data_dir.string() +
                         " on port " + std::to_string(chosen_port) + ", not " + std::to_string(options.port) +
                         "; stop it or use its port");
    }
    if (ReadTrimmed(port_path) != std::to_string(chosen_port)) {
      WriteFileAtomically(port_path, std::to_string(chosen_port) + "\n", 0644);
    }
    {
      std::lock_guard lock(mu);
      port = chosen_port;
      pid = postmaster;
      own_child = own = false;
    }
    waited = WaitUntilReady(postmaster, false, deadline);
    // One that was shutting down when we found it: start our own instead.
    own = waited.kind == Waited::kExited;
  }
  if (own) {
    chosen_port = ChoosePort();
    CheckSocketPath(chosen_port);
    {
      std::lock_guard lock(mu);
      port = chosen_port;
    }
    postmaster = SpawnPostmaster(chosen_port);
    {
      std::lock_guard lock(mu);
      pid = postmaster;
      own_child = true;
    }
    waited = WaitUntilReady(postmaster, true, deadline);
  }
  if (waited.kind != Waited::kReady) {
    if (waited.kind != Waited::kExited) ShutDown(postmaster, own);
    {
      std::lock_guard lock(mu);
      pid = 0;
    }
    const std::string what = waited.kind == Waited::kExited
                                 ? "exited while starting (" + DescribeWaitStatus(waited.status) + ")"
                                 : "did not accept connections within " +
                                       std::to_string(options.start_timeout.count()) + " s";
    throw BackendError("postgres (pid " + std::to_string(postmaster) + ") for " + data_dir.string() + " " + what +
                       "; the end of " + log_path.string() + ":\n" + TailOfFile(log_path, 20, log_offset));
  }
  try {
    LockDown();
  } catch (const Error&) {
    ShutDown(postmaster, own);
    std::lock_guard lock(mu);
    pid = 0;
    throw;
  }
  supervisor = std::thread([this] { Supervise(); });
  log::Info(own ? "backend.local.started" : "backend.local.adopted",
            {{"pid", std::to_string(postmaster)}, {"port", std::to_string(chosen_port)},
             {"state_dir", state_dir.string()}});
}

void LocalBackend::Impl::WriteAuthConfig() {
  // The daemon's own connections (control rows, clones, recycles) go over the unix socket as the
  // superuser: peer authentication spares each connect a SCRAM exchange (~3 ms of CPU on both
  // sides at PostgreSQL's 4096 iterations). Only the daemon's OS user and the server's may use it;
  // everyone else, and every lease role, authenticates with SCRAM.
  std::string ident = "# Written by testpool at every start; edits are lost.\n";
  for (const std::string& os_user : {CurrentUser().name, run_as.name}) {
    if (!os_user.empty() && ident.find(" " + os_user + " ") == std::string::npos) {
      ident += "testpool " + os_user + " postgres\n";
    }
  }
  const std::string hba =
      "# Written by testpool at every start; edits are lost.\n"
      "local all postgres peer map=testpool\n"
      "local all all scram-sha-256\n"
      "host all all 127.0.0.1/32 scram-sha-256\n"
      "host all all ::1/128 scram-sha-256\n";
  for (const auto& [name, content] : {std::pair{"pg_hba.conf", hba}, std::pair{"pg_ident.conf", ident}}) {
    const fs::path path = data_dir / name;
    WriteFileAtomically(path, content, 0600);
    if (run_as.switch_user && ::chown(path.c_str(), run_as.uid, run_as.gid) != 0) {
      throw BackendError("cannot give " + path.string() + " to user " + run_as.name + ": " + std::strerror(errno));
    }
  }
}

void LocalBackend::Impl::LockDown() {
  // The cluster is testpool's own: no role but a superuser needs the maintenance databases, so a
  // lease's role (which has CONNECT on its own database alone) cannot log in there either.
  pg::ConnInfo admin = AdminConnInfo();
  admin.Set("dbname", "postgres");
  try {
    pg::Connection conn = pg::Connection::Open(admin);
    conn.Exec("REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC");
    conn.Exec("SELECT pg_reload_conf()");  // a postmaster we adopted started with older auth files
  } catch (const pg::PgError& e) {
    throw BackendError(std::string("cannot revoke PUBLIC's CONNECT on the maintenance databases: ") + e.what());
  }
}

void LocalBackend::Impl::Supervise() {
  std::unique_lock lock(mu);
  while (!cv.wait_for(lock, kSupervisePoll, [&] { return stopping; })) {
    const pid_t watched = pid;
    const bool own = own_child;
    lock.unlock();
    const std::optional<int> status = ExitStatus(watched, own);
    if (status) {
      log::Warn("backend.local.postgres_exited",
                {{"pid", std::to_string(watched)}, {"status", DescribeWaitStatus(*status)}});
    }
    const bool carry_on = !status || Restart();
    lock.lock();
    if (!carry_on) break;
  }
}

bool LocalBackend::Impl::Restart() {
  int on_port = 0;
  {
    std::lock_guard lock(mu);
    pid = 0;
    on_port = port;
  }
  auto backoff = std::chrono::duration_cast<std::chrono::milliseconds>(kFirstBackoff);
  for (int attempt = 1;; ++attempt) {
    {
      // A freshly killed postmaster's children may hold its shared memory for a moment, so the
      // first attempts can fail: wait a little longer each time.
      std::unique_lock lock(mu);
      if (cv.wait_for(lock, backoff, [&] { return stopping; })) return false;
    }
    backoff = std::min(backoff * 2, std::chrono::duration_cast<std::chrono::milliseconds>(kMaxBackoff));
    const uintmax_t log_offset = LogSize();
    pid_t child = 0;
    try {
      child = SpawnPostmaster(on_port);
    } catch (const Error& e) {
      log::Error("backend.local.restart_failed", {{"attempt", std::to_string(attempt)}, {"error", e.what()}});
      continue;
    }
    {
      std::lock_guard lock(mu);
      pid = child;
      own_child = true;
    }
    const Waited waited = WaitUntilReady(child, true, SteadyClock::now() + options.start_timeout);
    if (waited.kind == Waited::kStopped) return false;  // Stop() shuts `child` down
    if (waited.kind == Waited::kReady) {
      int count = 0;
      {
        std::lock_guard lock(mu);
        count = ++restarts;
      }
      log::Info("backend.local.restarted", {{"pid", std::to_string(child)}, {"restarts", std::to_string(count)}});
      return true;
    }
    if (waited.kind == Waited::kTimedOut) ShutDown(child, true);
    {
      std::lock_guard lock(mu);
      pid = 0;
    }
    log::Warn("backend.local.restart_failed",
              {{"attempt", std::to_string(attempt)},
               {"status", waited.kind == Waited::kExited ? DescribeWaitStatus(waited.status) : "timed out"},
               {"log", TailOfFile(log_path, 3, log_offset)}});
  }
}

void LocalBackend::Impl::ShutDown(pid_t postmaster, bool own) {
  ::kill(postmaster, SIGINT);  // fast shutdown: roll back, disconnect, checkpoint
  bool exited = WaitForExit(postmaster, kFastShutdownWait);
  for (const int sig : {SIGQUIT, SIGKILL}) {
    if (exited) break;
    log::Warn("backend.local.stop_escalated", {{"pid", std::to_string(postmaster)}, {"signal", sigabbrev_np(sig)}});
    ::kill(postmaster, sig);
    exited = WaitForExit(postmaster, kEscalationWait);
  }
  if (own) {
    int status = 0;
    ::waitpid(postmaster, &status, exited ? 0 : WNOHANG);
  }
}

void LocalBackend::Impl::Stop() noexcept {
  try {
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    if (supervisor.joinable()) supervisor.join();
    pid_t postmaster = 0;
    bool own = false;
    {
      std::lock_guard lock(mu);
      std::swap(postmaster, pid);
      own = own_child;
    }
    if (postmaster == 0) return;
    ShutDown(postmaster, own);
    log::Info("backend.local.stopped", {{"pid", std::to_string(postmaster)}, {"state_dir", state_dir.string()}});
  } catch (...) {
    // Stop() must not throw (it runs from destructors); a failed log line is all we could lose.
  }
}

pg::ConnInfo LocalBackend::Impl::AdminConnInfo() const {
  std::lock_guard lock(mu);
  pg::ConnInfo info;
  info.Set("host", run_dir.string());
  info.Set("port", std::to_string(port));
  info.Set("user", "postgres");
  info.Set("password", password);
  return info;
}

bool LocalBackend::Impl::WaitReady(std::chrono::milliseconds timeout) const {
  pg::ConnInfo probe = AdminConnInfo();
  probe.Set("dbname", "postgres");
  const auto deadline = SteadyClock::now() + timeout;
  std::unique_lock lock(mu);
  for (;;) {
    lock.unlock();
    if (pg::Ping(probe)) return true;
    lock.lock();
    const auto now = SteadyClock::now();
    if (now >= deadline) return false;
    const auto slice = std::min<SteadyClock::duration>(kReadyPoll, deadline - now);
    if (cv.wait_for(lock, slice, [&] { return stopping; })) return false;
  }
}

LocalBackend::LocalBackend(LocalBackendOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
LocalBackend::~LocalBackend() { Stop(); }

void LocalBackend::Start() {
  try {
    impl_->Start();
  } catch (const std::filesystem::filesystem_error& e) {
    throw BackendError(std::string("cannot prepare the state directory: ") + e.what());
  }
}
void LocalBackend::Stop() noexcept { impl_->Stop(); }
pg::ConnInfo LocalBackend::AdminConnInfo() const { return impl_->AdminConnInfo(); }

pg::ConnInfo LocalBackend::ClientConnInfo() const {
  std::lock_guard lock(impl_->mu);
  pg::ConnInfo info;
  info.Set("host", "127.0.0.1");
  info.Set("port", std::to_string(impl_->port));
  return info;
}

void LocalBackend::Deprioritize(int server_pid) const noexcept {
  // Nice 10 against the default 0: the scheduler then gives a lease-path session about ten times
  // the CPU of a background one when they compete. Only ever raised, never lowered, so this needs
  // no privilege beyond owning the process (or being root).
  if (server_pid > 0) ::setpriority(PRIO_PROCESS, static_cast<id_t>(server_pid), kBackgroundNice);
}

int LocalBackend::PostmasterPid() const {
  std::lock_guard lock(impl_->mu);
  return impl_->pid;
}

int LocalBackend::Restarts() const {
  std::lock_guard lock(impl_->mu);
  return impl_->restarts;
}

bool LocalBackend::WaitReady(std::chrono::milliseconds timeout) const { return impl_->WaitReady(timeout); }
const std::filesystem::path& LocalBackend::state_dir() const { return impl_->state_dir; }

}  // namespace testpool::backend
