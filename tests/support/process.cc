#include "tests/support/process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/process.hpp>
#include <fstream>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "tests/support/test_server.h"

namespace bp = boost::process;

namespace testpool::testing {
namespace {

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bp::environment EnvWith(const std::map<std::string, std::string>& extra) {
  bp::environment env = boost::this_process::environment();
  for (const auto& [k, v] : extra) env.set(k, v);  // env[k] = v reads out of bounds in Boost 1.74
  return env;
}

}  // namespace

CliResult RunCli(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  TempDir dir("testpool-cli");
  auto out = dir.path() / "out", err = dir.path() / "err";
  bp::child child(TestpoolBinary().string(), bp::args(args), bp::std_out > out.string(), bp::std_err > err.string(),
                  bp::std_in < bp::null, EnvWith(env));
  child.wait();
  return CliResult{child.exit_code(), Slurp(out), Slurp(err)};
}

CliResult RunCommand(const std::vector<std::string>& args, const std::map<std::string, std::string>& env,
                     const std::string& input, std::chrono::seconds timeout) {
  TempDir dir("testpool-cmd");
  auto in = dir.path() / "in", out = dir.path() / "out", err = dir.path() / "err";
  {
    std::ofstream f(in, std::ios::binary);
    f << input;
  }
  std::string program = args.at(0);
  if (program.find('/') == std::string::npos) program = bp::search_path(program).string();
  if (program.empty()) return CliResult{-1, "", args.at(0) + ": not found in PATH"};
  std::vector<std::string> rest(args.begin() + 1, args.end());
  bp::child child(program, bp::args(rest), bp::std_out > out.string(), bp::std_err > err.string(),
                  bp::std_in < in.string(), EnvWith(env));
  if (!child.wait_for(timeout)) {
    ::kill(child.id(), SIGKILL);
    child.wait();
    return CliResult{-1, Slurp(out), Slurp(err) + "\n(killed after " + std::to_string(timeout.count()) + " s)"};
  }
  return CliResult{child.exit_code(), Slurp(out), Slurp(err)};
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

struct Daemon::Impl {
  TempDir dir{"testpool-daemon"};
  std::filesystem::path log = dir.path() / "daemon.log";
  bp::child child;
};

Daemon::Daemon(const std::vector<std::string>& args, std::chrono::seconds ready_timeout,
               const std::map<std::string, std::string>& env, int port)
    : impl_(std::make_unique<Impl>()), port_(port != 0 ? port : FreePort()) {
  std::vector<std::string> full = {"serve", "--listen", "127.0.0.1:" + std::to_string(port_)};
  // The wire proxy on any free port: several daemons run side by side in tests.
  if (std::find(args.begin(), args.end(), "--proxy-listen") == args.end()) {
    full.insert(full.end(), {"--proxy-listen", "127.0.0.1:0"});
  }
  full.insert(full.end(), args.begin(), args.end());
  impl_->child = bp::child(TestpoolBinary().string(), bp::args(full), bp::std_out > impl_->log.string(),
                           bp::std_err > impl_->log.string(), bp::std_in < bp::null, EnvWith(env));
  httplib::Client http("127.0.0.1", port_);
  http.set_connection_timeout(std::chrono::seconds(1));
  auto deadline = std::chrono::steady_clock::now() + ready_timeout;
  while (std::chrono::steady_clock::now() < deadline && impl_->child.running()) {
    if (auto r = http.Get("/healthz"); r && r->status == 200) {
      ready_ = true;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ADD_FAILURE() << "testpool serve did not become ready; its log:\n" << Log();
}

Daemon::~Daemon() {
  if (impl_->child.running()) {
    ::kill(impl_->child.id(), SIGKILL);
    impl_->child.wait();
  }
}

int Daemon::pid() const { return impl_->child.id(); }

void Daemon::Signal(int sig) { ::kill(impl_->child.id(), sig); }

int Daemon::exit_code() const { return impl_->child.exit_code(); }

int Daemon::Terminate(std::chrono::seconds timeout) {
  if (!impl_->child.running()) return impl_->child.exit_code();
  ::kill(impl_->child.id(), SIGTERM);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (impl_->child.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (impl_->child.running()) {
    ::kill(impl_->child.id(), SIGKILL);
    impl_->child.wait();
    return -1;
  }
  impl_->child.wait();
  return impl_->child.exit_code();
}

bool Daemon::WaitForExit(std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (impl_->child.running()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

std::string Daemon::Log() const { return Slurp(impl_->log); }

}  // namespace testpool::testing
