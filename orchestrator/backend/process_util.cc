#include "orchestrator/backend/process_util.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/process.hpp>
#include <boost/process/extend.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <system_error>
#include <thread>

#include "orchestrator/util/error.h"

namespace bp = boost::process;

namespace testpool::backend {
namespace {

// Runs in the child between fork and exec, after Boost.Process set up stdin/stdout/stderr: only
// async-signal-safe calls here (the parent may have other threads holding locks).
class ChildSetup : public bp::extend::handler {
 public:
  ChildSetup(const RunAs& run_as, int output_fd) : run_as_(run_as), output_fd_(output_fd) {}

  template <class Exec>
  void on_exec_setup(Exec& exec) const {
    if (output_fd_ >= 0 && (::dup2(output_fd_, STDOUT_FILENO) < 0 || ::dup2(output_fd_, STDERR_FILENO) < 0)) {
      Fail(exec, "dup2 of the log file failed");
    }
    if (::setpgid(0, 0) != 0) Fail(exec, "setpgid failed");
    if (run_as_.switch_user) {
      if (::setgroups(run_as_.groups.size(), run_as_.groups.data()) != 0) Fail(exec, "setgroups failed");
      if (::setgid(run_as_.gid) != 0) Fail(exec, "setgid failed");
      if (::setuid(run_as_.uid) != 0) Fail(exec, "setuid failed");
    }
    // Nothing of ours above stderr may leak into the child (an HTTP listening socket held by
    // postgres would outlive the daemon). Boost's error pipe is close-on-exec already.
    if (::close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
      const long max_fd = std::min<long>(::sysconf(_SC_OPEN_MAX), 65536);
      for (int fd = 3; fd < max_fd; ++fd) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
  }

 private:
  template <class Exec>
  static void Fail(Exec& exec, const char* what) {
    exec.set_error(std::error_code(errno, std::system_category()), what);
    ::_exit(127);
  }

  const RunAs& run_as_;
  const int output_fd_;
};

Error CannotStart(const Command& cmd, const std::string& why) {
  return Error(ErrorCode::kBackend, "could not start `" + cmd.ToString() + "`: " + why);
}

}  // namespace

std::filesystem::path SearchPath(const std::string& name) {
  return std::filesystem::path(bp::search_path(name).string());
}

RunAs CurrentUser() {
  RunAs me;
  me.uid = ::geteuid();
  me.gid = ::getegid();
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwuid_r(me.uid, &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) me.name = pw.pw_name;
  me.groups = {me.gid};
  return me;
}

RunAs LookupUser(const std::string& name) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    throw Error(ErrorCode::kBackend, "user '" + name + "' does not exist; postgres cannot run as root, so testpool " +
                                         "runs it as an unprivileged user: create it or choose another one");
  }
  RunAs user;
  user.switch_user = true;
  user.name = name;
  user.uid = pw.pw_uid;
  user.gid = pw.pw_gid;
  int count = 64;
  user.groups.resize(static_cast<size_t>(count));
  while (::getgrouplist(name.c_str(), user.gid, user.groups.data(), &count) < 0) {
    user.groups.resize(static_cast<size_t>(count) + 16);
    count = static_cast<int>(user.groups.size());
  }
  user.groups.resize(static_cast<size_t>(count));
  return user;
}

bool CanSearch(const RunAs& user, const std::filesystem::path& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return false;
  if (user.uid == 0) return true;
  if (st.st_uid == user.uid) return (st.st_mode & S_IXUSR) != 0;
  if (std::find(user.groups.begin(), user.groups.end(), st.st_gid) != user.groups.end() || st.st_gid == user.gid) {
    return (st.st_mode & S_IXGRP) != 0;
  }
  return (st.st_mode & S_IXOTH) != 0;
}

std::string Command::ToString() const {
  std::string out = exe.string();
  for (const std::string& arg : args) out += " " + arg;
  return out;
}

bool Outcome::ok() const { return WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0; }

Outcome RunAndCapture(const Command& cmd) {
  Outcome outcome;
  try {
    bp::ipstream out;
    ChildSetup setup(cmd.run_as, -1);
    const std::string cwd = cmd.cwd.empty() ? "/" : cmd.cwd.string();
    bp::child child(bp::exe(cmd.exe.string()), bp::args(cmd.args), bp::start_dir(cwd), bp::std_in < bp::null,
                    (bp::std_out & bp::std_err) > out, setup);
    outcome.output.assign(std::istreambuf_iterator<char>(out), std::istreambuf_iterator<char>());
    child.wait();
    outcome.wait_status = child.native_exit_code();
  } catch (const bp::process_error& e) {
    throw CannotStart(cmd, e.what());
  }
  return outcome;
}

pid_t Spawn(const Command& cmd, int output_fd) {
  try {
    ChildSetup setup(cmd.run_as, output_fd);
    const std::string cwd = cmd.cwd.empty() ? "/" : cmd.cwd.string();
    bp::child child(bp::exe(cmd.exe.string()), bp::args(cmd.args), bp::start_dir(cwd), bp::std_in < bp::null, setup);
    const pid_t pid = child.id();
    child.detach();  // we reap it ourselves; a bp::child would terminate it when destroyed
    return pid;
  } catch (const bp::process_error& e) {
    throw CannotStart(cmd, e.what());
  }
}

std::optional<int> ExitStatus(pid_t pid, bool own_child) {
  if (!own_child) return IsAlive(pid) ? std::nullopt : std::optional<int>(-1);
  int status = 0;
  const pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  if (r == pid) return status;
  return -1;  // ECHILD: someone else reaped it
}

bool IsAlive(pid_t pid) {
  if (pid <= 0) return false;
  if (::kill(pid, 0) != 0 && errno == ESRCH) return false;
  // A zombie still answers kill(pid, 0): look at its state in /proc/PID/stat ("pid (comm) S …").
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos || paren + 2 >= stat.size()) return false;  // gone meanwhile
  const char state = stat[paren + 2];
  return state != 'Z' && state != 'X';
}

bool WaitForExit(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    if (errno == ESRCH) return true;
    // No pidfd (old kernel): poll the process table.
    while (IsAlive(pid)) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
  bool exited = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<long>(0, left.count())));
    if (r > 0) exited = true;
    if (r >= 0 || errno != EINTR) break;
  }
  ::close(fd);
  return exited;
}

std::string DescribeWaitStatus(int wait_status) {
  if (wait_status == -1) return "unknown";
  if (WIFEXITED(wait_status)) return "exit " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const int sig = WTERMSIG(wait_status);
    const char* abbrev = ::sigabbrev_np(sig);
    return "signal " + std::to_string(sig) + " (" + (abbrev ? abbrev : "?") + ")";
  }
  return "status " + std::to_string(wait_status);
}

std::vector<std::string> ProcessCmdline(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::string current;
  for (char c : raw) {
    if (c == '\0') {
      args.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) args.push_back(std::move(current));
  return args;
}

std::string Tail(const std::string& text, size_t max_lines) {
  constexpr size_t kMaxBytes = 4096;
  std::string_view view(text);
  while (!view.empty() && (view.back() == '\n' || view.back() == ' ')) view.remove_suffix(1);
  if (view.size() > kMaxBytes) view.remove_prefix(view.size() - kMaxBytes);
  size_t start = view.size();
  for (size_t lines = 0; start > 0; --start) {
    if (view[start - 1] == '\n' && ++lines == max_lines) break;
  }
  return std::string(view.substr(start));
}

std::string TailOfFile(const std::filesystem::path& path, size_t max_lines, uintmax_t from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  in.seekg(0, std::ios::end);
  const auto size = static_cast<uintmax_t>(in.tellg());
  const uintmax_t start = std::max<uintmax_t>(from, size > 16384 ? size - 16384 : 0);
  if (start >= size) return "";
  in.seekg(static_cast<std::streamoff>(start));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return Tail(text, max_lines);
}

}  // namespace testpool::backend
