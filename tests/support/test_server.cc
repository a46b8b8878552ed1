#include "tests/support/test_server.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace testpool::testing {
namespace {

std::filesystem::path MakeTempDir(const std::string& prefix) {
  std::string pattern = "/tmp/" + prefix + "-XXXXXX";
  std::vector<char> buf(pattern.begin(), pattern.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp " + pattern + " failed");
  // 0755: when the tests run as root, the unprivileged postgres user must reach what is inside.
  ::chmod(buf.data(), 0755);
  return std::filesystem::path(buf.data());
}

// The shared server: started on first use, stopped and removed when the binary exits (function
// statics are destroyed after main returns).
struct SharedServer {
  SharedServer() : dir(MakeTempDir("testpool-server")) {
    backend::LocalBackendOptions options;
    options.state_dir = dir;
    backend = std::make_unique<backend::LocalBackend>(options);
    try {
      backend->Start();
    } catch (...) {
      Cleanup();
      throw;
    }
  }
  ~SharedServer() { Cleanup(); }
  void Cleanup() {
    if (backend) backend->Stop();
    backend.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  std::filesystem::path dir;
  std::unique_ptr<backend::LocalBackend> backend;
};

std::filesystem::path FromEnv(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    ADD_FAILURE() << "$" << name << " is not set (ctest sets it; export it to run this binary by hand)";
    return {};
  }
  return value;
}

}  // namespace

backend::LocalBackend& Server() {
  static SharedServer server;  // thread-safe initialisation
  return *server.backend;
}

pg::ConnInfo Admin(const std::string& dbname) {
  pg::ConnInfo info = Server().AdminConnInfo();
  info.Set("dbname", dbname);
  return info;
}

std::filesystem::path TestpoolBinary() { return FromEnv("TESTPOOL_BIN"); }

std::filesystem::path SourceDir() { return FromEnv("TESTPOOL_SOURCE_DIR"); }

TempDir::TempDir(const std::string& prefix) : path_(MakeTempDir(prefix)) {}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace testpool::testing
