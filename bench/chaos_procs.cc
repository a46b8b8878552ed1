#include "bench/chaos_procs.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>

#include "bench/daemon_harness.h"

extern char** environ;

namespace testpool::bench::chaos {
namespace {

namespace fs = std::filesystem;

std::string StatusText(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("signal ") + sigabbrev_np(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace

ClientProcesses::ClientProcesses(fs::path dir, ClientSpawn spawn) : dir_(std::move(dir)), spawn_(std::move(spawn)) {
  fs::create_directories(dir_);
}

ClientProcesses::~ClientProcesses() {
  for (ClientProc& c : procs_) {
    if (c.running) {
      ::kill(c.pid, SIGKILL);
      ::waitpid(c.pid, nullptr, 0);
    }
  }
}

ClientProc& ClientProcesses::Spawn() {
  ClientProc c;
  c.id = static_cast<int>(procs_.size()) + 1;
  c.log = dir_ / ("client-" + std::to_string(c.id) + ".log");
  c.err = dir_ / ("client-" + std::to_string(c.id) + ".err");
  c.tail = std::make_unique<EventTail>(c.log);
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> args = {self,
                                   "--client", std::to_string(c.id),
                                   "--port", std::to_string(spawn_.port),
                                   "--template", spawn_.template_name,
                                   "--log", c.log.string(),
                                   "--ttl", std::to_string(spawn_.ttl_s),
                                   "--wait", std::to_string(spawn_.wait_s),
                                   "--driver", std::to_string(::getpid())};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, c.err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  const int rc = posix_spawn(&c.pid, self.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) Fail("cannot start client " + std::to_string(c.id) + ": " + std::strerror(rc));
  c.running = true;
  procs_.push_back(std::move(c));
  return procs_.back();
}

std::vector<Event> ClientProcesses::Poll() {
  std::vector<Event> all;
  for (ClientProc& c : procs_) {
    for (Event& e : c.tail->Poll()) {
      if (e.kind == EventKind::kGrant) c.holding = e.lease;
      if (e.kind == EventKind::kRelease) c.holding.clear();
      all.push_back(std::move(e));
    }
  }
  return all;
}

void ClientProcesses::CheckAlive() {
  for (ClientProc& c : procs_) {
    if (!c.running) continue;
    int status = 0;
    if (::waitpid(c.pid, &status, WNOHANG) == c.pid) {
      c.running = false;
      Fail("client " + std::to_string(c.id) + " exited by itself (" + StatusText(status) + "); its stderr:\n" +
           LastLines(Slurp(c.err), 20));
    }
  }
}

ClientProc* ClientProcesses::PickHolder(std::mt19937& rng) {
  std::vector<ClientProc*> holders;
  for (ClientProc& c : procs_) {
    if (c.running && !c.holding.empty()) holders.push_back(&c);
  }
  if (holders.empty()) return nullptr;
  return holders[std::uniform_int_distribution<size_t>(0, holders.size() - 1)(rng)];
}

void ClientProcesses::Kill(ClientProc& c) {
  ::kill(c.pid, SIGKILL);
  c.killed_us = MonotonicMicros();
  ::waitpid(c.pid, nullptr, 0);
  c.running = false;
}

int ClientProcesses::StopAll(std::chrono::seconds bound, bool (*interrupted)()) {
  for (ClientProc& c : procs_) {
    if (c.running) ::kill(c.pid, SIGTERM);
  }
  const auto deadline = std::chrono::steady_clock::now() + bound;
  int bad = 0;
  for (ClientProc& c : procs_) {
    if (!c.running) continue;
    int status = 0;
    bool killed_here = false;
    while (::waitpid(c.pid, &status, WNOHANG) != c.pid) {
      if (std::chrono::steady_clock::now() > deadline || interrupted()) {
        ::kill(c.pid, SIGKILL);
        ::waitpid(c.pid, &status, 0);
        killed_here = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    c.running = false;
    // A client started a moment before the stop may get SIGTERM before it installs its handler:
    // it held nothing yet, so that end is as clean as an exit.
    const bool clean = !killed_here && ((WIFEXITED(status) && WEXITSTATUS(status) == 0) ||
                                        (WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM));
    if (!clean) {
      ++bad;
      std::fprintf(stderr, "client %d ended badly (%s%s); its stderr:\n%s\n", c.id, StatusText(status).c_str(),
                   killed_here ? ", SIGKILLed after the stop's bound" : "", LastLines(Slurp(c.err), 20).c_str());
    }
  }
  return bad;
}

std::vector<ClientHistory> ClientProcesses::Histories() const {
  std::vector<ClientHistory> out;
  for (const ClientProc& c : procs_) {
    ClientHistory h;
    h.client = c.id;
    EventTail whole(c.log);
    h.events = whole.Poll();
    h.killed_us = c.killed_us;
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace testpool::bench::chaos
