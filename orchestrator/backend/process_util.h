// Child processes for the local backend: running a program as another user, capturing its
// output, starting a long-lived server in its own process group, and watching processes that
// are (or are not) our children. Boost.Process does the spawning; this file hides it.
//
// Every child we start: gets stdin from /dev/null, runs in a new process group (so a Ctrl-C on
// the daemon's terminal does not reach it: the daemon stops its servers itself), inherits no
// file descriptor above 2, and — when `RunAs::switch_user` — drops to that user's uid, gid and
// supplementary groups before exec.
//
// Thread safety: every function may be called from any thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace testpool::backend {

// Who a child runs as. switch_user=false: as ourselves (the other fields describe us).
struct RunAs {
  bool switch_user = false;
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups, including gid
};

// The full path of `name` found on $PATH; empty when it is not there.
std::filesystem::path SearchPath(const std::string& name);

// Ourselves.
RunAs CurrentUser();
// `name` from the user database. Throws Error(kBackend) when there is no such user.
RunAs LookupUser(const std::string& name);

// True when `user` may search (traverse) directory `dir` by its mode bits.
bool CanSearch(const RunAs& user, const std::filesystem::path& dir);

struct Command {
  std::filesystem::path exe;
  std::vector<std::string> args;
  std::filesystem::path cwd;  // empty: /
  RunAs run_as;

  // "exe arg1 arg2 …" for messages.
  std::string ToString() const;
};

struct Outcome {
  int wait_status = 0;  // as from waitpid(2)
  std::string output;   // stdout and stderr, interleaved
  bool ok() const;      // exited with status 0
};

// Runs `cmd` to completion, capturing stdout and stderr. Throws Error(kBackend) naming the
// command when it cannot be started (missing binary, setuid failed, …).
Outcome RunAndCapture(const Command& cmd);

// Starts `cmd` with stdout and stderr on `output_fd` and returns its pid without waiting. The
// caller owns the child: it must reap it (ExitStatus/WaitForExit + Reap). Throws Error(kBackend)
// when it cannot be started.
pid_t Spawn(const Command& cmd, int output_fd);

// nullopt while `pid` runs. Once it has exited: its wait status when `own_child` (the child is
// reaped), or -1 when it is not our child (its status is not ours to know).
std::optional<int> ExitStatus(pid_t pid, bool own_child);

// True while `pid` exists and is not a zombie.
bool IsAlive(pid_t pid);

// Blocks until `pid` has exited or `timeout` passed (pidfd + poll; no reaping). True when exited.
bool WaitForExit(pid_t pid, std::chrono::milliseconds timeout);

// "exit 1", "signal 9 (KILL)", or "unknown" for -1.
std::string DescribeWaitStatus(int wait_status);

// /proc/PID/cmdline split at NULs; empty when the process is gone or unreadable.
std::vector<std::string> ProcessCmdline(pid_t pid);

// The last `max_lines` lines of `text` (and at most ~4 KB).
std::string Tail(const std::string& text, size_t max_lines = 20);
// The same for a file, reading only what was appended after byte `from`; "" when unreadable.
std::string TailOfFile(const std::filesystem::path& path, size_t max_lines = 20, uintmax_t from = 0);

}  // namespace testpool::backend
