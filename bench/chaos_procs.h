// The chaos driver's client processes (bench/chaos_bench.cc): each is this same binary started
// with `--client` (chaos_client.h), its stdin /dev/null, its stdout and stderr in client-N.err and
// its event log in client-N.log under one directory. The driver reads their logs as they grow,
// picks one that holds a lease to SIGKILL, and stops them all at the end.
//
// Every process started is remembered (by id, from 1), killed or not, so that its log can be read
// afterwards. The destructor SIGKILLs and reaps any still running: a failed run leaves none
// behind. One thread only. Failures are BenchFailure (Fail()).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "bench/chaos_check.h"
#include "bench/chaos_log.h"

namespace testpool::bench::chaos {

// What every client is started with (ClientOptions less its id, log and driver).
struct ClientSpawn {
  int port = 0;
  std::string template_name;
  int ttl_s = 0, wait_s = 0;
};

struct ClientProc {
  int id = 0;
  pid_t pid = -1;
  std::filesystem::path log, err;
  std::unique_ptr<EventTail> tail;
  bool running = false;
  std::optional<int64_t> killed_us;  // when the driver SIGKILLed it
  std::string holding;               // the lease it holds by its log (granted, no 204 yet); "" when none
};

class ClientProcesses {
 public:
  // Creates `dir` if needed.
  ClientProcesses(std::filesystem::path dir, ClientSpawn spawn);
  ~ClientProcesses();
  ClientProcesses(const ClientProcesses&) = delete;
  ClientProcesses& operator=(const ClientProcesses&) = delete;

  // Starts the next client. The reference stays valid for the object's life. Fails when the
  // process cannot be started.
  ClientProc& Spawn();
  // New events of every client since the last call, client by client; notes who holds a lease.
  std::vector<Event> Poll();
  // Fails when a client the driver did not kill has exited (it crashed: its stderr is quoted).
  void CheckAlive();
  // A running client that holds a lease, at random; nullptr when none does.
  ClientProc* PickHolder(std::mt19937& rng);
  // SIGKILL, reaped; notes the time.
  void Kill(ClientProc& c);
  // SIGTERM to all, then waits up to `bound` for each to finish its lease and exit (SIGKILL past
  // it, or at once when `interrupted()` says so). Returns how many ended badly (SIGKILLed here, a
  // non-zero exit, a signal other than the SIGTERM itself), quoting their stderr on stderr.
  int StopAll(std::chrono::seconds bound, bool (*interrupted)());
  // Every client's whole log, and when it was killed.
  std::vector<ClientHistory> Histories() const;
  size_t size() const { return procs_.size(); }

 private:
  const std::filesystem::path dir_;
  const ClientSpawn spawn_;
  std::deque<ClientProc> procs_;  // by id - 1; a deque keeps references valid across Spawn()
};

}  // namespace testpool::bench::chaos
