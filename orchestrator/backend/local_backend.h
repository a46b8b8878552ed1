// The `local` backend, testpool's embedded default: one PostgreSQL server that the daemon runs
// itself under its state directory, through Boost.Process.
//
// Layout under `state_dir` (created as needed):
//   pg/data/                the cluster (initdb runs once, on first Start())
//   pg/run/                 the unix socket directory (unix_socket_directories)
//   pg/superuser.password   the bootstrap superuser's random password (mode 0600)
//   pg/port                 the TCP port chosen on first start, reused on every later start so
//                           that DSNs handed out stay valid across daemon restarts
//   pg/server.log           postgres' own log (logging_collector off; stderr redirected here)
//
// Authentication: scram-sha-256 for every connection (unix socket and TCP); the superuser
// ("postgres") has the random password above. Nobody connects without a password.
//
// Running as root: postgres refuses root, so initdb and postgres run as `run_as_user`
// (default "postgres"), switched to in the child before exec; pg/ is owned by that user.
// Every directory from / to state_dir must be searchable by that user (Start() checks and says so).
//
// Supervision: a background thread watches the postmaster; if it exits while it should run, the
// thread logs why (exit status or signal) and starts it again with a capped back-off.
// A postmaster left running by an earlier daemon (killed with SIGKILL) is adopted, not duplicated.
//
// Thread safety: Start()/Stop() from one thread; the accessors from any thread.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "orchestrator/backend/backend.h"

namespace testpool::backend {

struct LocalBackendOptions {
  std::filesystem::path state_dir;
  // Directory holding initdb and postgres. Empty: `pg_config --bindir`, else the highest
  // /usr/lib/postgresql/*/bin that has both.
  std::filesystem::path bin_dir;
  // The unprivileged user to run initdb/postgres as when the daemon runs as root.
  std::string run_as_user = "postgres";
  // TCP port on 127.0.0.1. 0: reuse pg/port if present, else pick a free port below the
  // kernel's ephemeral range and persist it.
  int port = 0;
  // Server settings passed as `-c key=value`, applied after the test-friendly defaults
  // (fsync=off, synchronous_commit=off, full_page_writes=off, max_connections=300, …),
  // so a user can override any of them.
  std::vector<std::pair<std::string, std::string>> settings;
  // How long Start() waits for the server to accept connections.
  std::chrono::seconds start_timeout{120};
};

class LocalBackend final : public Backend {
 public:
  // Throws Error(kInvalidArgument) when a setting's name is not [A-Za-z0-9_.]+.
  explicit LocalBackend(LocalBackendOptions options);
  // Stops the server (see Stop()).
  ~LocalBackend() override;
  LocalBackend(const LocalBackend&) = delete;
  LocalBackend& operator=(const LocalBackend&) = delete;

  std::string_view Kind() const override { return "local"; }
  // Creates the state directory, runs initdb if the cluster does not exist yet, starts (or
  // adopts) postgres, waits until it accepts connections, and starts supervising it. Does nothing
  // when already started; may be called again after Stop().
  // Throws Error(kBackend) with a message naming the step, the command and the tail of its output
  // (or of pg/server.log), or what to change (an unreachable or too long state_dir, a taken port).
  void Start() override;
  // Stops supervision, then stops postgres (SIGINT: fast shutdown; SIGQUIT after 30 s, SIGKILL
  // 5 s later) and waits. An adopted postmaster is stopped the same way.
  void Stop() noexcept override;
  // host = the unix socket directory, port, user=postgres, password.
  pg::ConnInfo AdminConnInfo() const override;
  // host=127.0.0.1, port.
  pg::ConnInfo ClientConnInfo() const override;
  void Deprioritize(int server_pid) const noexcept override;

  // The running postmaster's pid (0 when none). For tests and status.
  int PostmasterPid() const;
  // How many times the supervisor restarted a postmaster that had died.
  int Restarts() const;
  // Blocks until the server accepts connections or `timeout` passes; true when it does.
  bool WaitReady(std::chrono::milliseconds timeout) const;
  const std::filesystem::path& state_dir() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::backend
