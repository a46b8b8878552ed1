// Running the real `testpool` binary from tests: one-shot CLI commands and daemons.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace testpool::testing {

struct CliResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs `testpool args…` to completion with extra environment `env` (e.g. TESTPOOL_URL).
CliResult RunCli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {});

// Runs any program (`args[0]`, searched in PATH when it has no '/') to completion, with `input`
// on its stdin and extra environment `env`. A program that runs longer than `timeout` is killed
// (exit_code -1).
CliResult RunCommand(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                     const std::string& input = "", std::chrono::seconds timeout = std::chrono::seconds(300));

// A free TCP port on 127.0.0.1 (bound and released; good enough for tests).
int FreePort();

// A `testpool serve` process. The constructor starts it and waits (bounded) until /healthz
// answers; a daemon that exits or never answers fails the test with its log.
class Daemon {
 public:
  // `args` after `serve`; --listen 127.0.0.1:`port` is added (port 0: a free one). `env`: extra
  // environment (e.g. TESTPOOL_FAULTS).
  explicit Daemon(const std::vector<std::string>& args,
                  std::chrono::seconds ready_timeout = std::chrono::seconds(120),
                  const std::map<std::string, std::string>& env = {}, int port = 0);
  ~Daemon();  // SIGKILLs it if still running
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  bool ready() const { return ready_; }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int pid() const;
  // Sends `sig` and returns at once.
  void Signal(int sig);
  // SIGTERM, then waits (bounded); returns the exit code (-1 if it had to be killed).
  int Terminate(std::chrono::seconds timeout = std::chrono::seconds(60));
  // The exit code once it has exited (after Terminate or WaitForExit returned true).
  int exit_code() const;
  // Waits (bounded) until the daemon exits by itself; false if it is still running.
  bool WaitForExit(std::chrono::seconds timeout = std::chrono::seconds(60));
  // The daemon's log so far (its stderr).
  std::string Log() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  bool ready_ = false;
};

}  // namespace testpool::testing
