// A real PostgreSQL for integration tests, started through the real local backend.
//
// The first call to Server() creates a fresh state directory under /tmp (mode 0755 so that the
// unprivileged `postgres` user can reach it when the tests run as root), starts a LocalBackend
// there and waits until it accepts connections. The server is shared by every test of the binary
// and stopped, and its directory removed, when the binary exits. Thread-safe.
#pragma once

#include <filesystem>
#include <string>

#include "orchestrator/backend/local_backend.h"
#include "orchestrator/pg/conninfo.h"

namespace testpool::testing {

backend::LocalBackend& Server();

// Superuser conninfo for `dbname` on the shared server.
pg::ConnInfo Admin(const std::string& dbname = "postgres");

// The `testpool` binary built beside the tests (from $TESTPOOL_BIN). Fails the test if unset.
std::filesystem::path TestpoolBinary();

// The repository's top directory (from $TESTPOOL_SOURCE_DIR).
std::filesystem::path SourceDir();

// A fresh directory under /tmp, removed when the object goes out of scope.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "testpool-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace testpool::testing
