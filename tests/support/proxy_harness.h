// Hostile clients against the wire proxy (tests/integration/proxy_hostile*_test.cc): a real proxy
// in front of the shared test server (test_server.h), a pool of two rollback-mode leases, and the
// tools a test needs to misbehave and to see that nobody else paid for it:
//
// - RawSocket: a frontend by hand over TCP or the unix socket, which sends whatever bytes a test
//   likes and reads what comes back with a deadline (a proxy that never answers fails the test
//   instead of hanging it).
// - PgProbe: a libpq client whose every wait is bounded. It uses libpq directly, not
//   pg::Connection, whose Exec waits without bound: a test must fail, not hang, when the proxy
//   stops answering.
// - OpenFds(), RssBytes(): the process's descriptors and resident memory. The proxy runs in this
//   process, so its sockets and its memory are counted here (with the test's own).
// - HostileProxyTest: the fixture. Every test gets a fresh template and two leases: `hostile_`,
//   which the test abuses, and `victim_`, another lease whose client must keep being served.
//
// Nothing here is thread-safe; each object is used by the test's thread.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/proxy.h"
#include "orchestrator/util/clock.h"
#include "tests/support/test_server.h"

struct pg_conn;

namespace testpool::testing {

// How long a test waits for anything the proxy should do: generous, since CI machines are busy.
// A wait that runs out is a failure; nothing is asserted about how long a wait took.
inline constexpr std::chrono::seconds kBound{30};

// Polls `done` until it holds (true) or `bound` passes (false).
bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds bound = kBound);

// Descriptors open in this process (entries of /proc/self/fd).
size_t OpenFds();
// Resident memory of this process in bytes (/proc/self/statm).
size_t RssBytes();
// Raises the soft limit of open files to at least `want` (up to the hard limit); returns the
// soft limit in force afterwards.
size_t RaiseFdLimit(size_t want);

// One backend message as received.
struct RawMessage {
  char type = 0;
  std::string body;
};

class RawSocket {
 public:
  static RawSocket Tcp(int port);                                   // 127.0.0.1:port
  static RawSocket Unix(const std::filesystem::path& dir, int port);  // dir/.s.PGSQL.port
  RawSocket(RawSocket&& other) noexcept;
  RawSocket& operator=(RawSocket&& other) noexcept;
  RawSocket(const RawSocket&) = delete;
  RawSocket& operator=(const RawSocket&) = delete;
  ~RawSocket();  // Close()

  // Writes all of `bytes` (blocking). False when the proxy has closed the connection.
  bool Send(std::string_view bytes);
  // Writes `bytes` without blocking for longer than `stall` at a time: returns how many bytes
  // went out before the proxy stopped reading for `stall` (all of them when it never did).
  size_t SendUntilStalled(std::string_view bytes, std::chrono::milliseconds stall);
  // The one-byte answer to an SSLRequest or GSSENCRequest; 0 when none came within `bound`.
  char ReadByte(std::chrono::milliseconds bound = kBound);
  // The next backend message; nullopt on close (closed() is then true) or when nothing whole came
  // within `bound`.
  std::optional<RawMessage> Next(std::chrono::milliseconds bound = kBound);
  // Messages up to and including ReadyForQuery (what came, if it does not).
  std::vector<RawMessage> UntilReady(std::chrono::milliseconds bound = kBound);
  // What the proxy sends until it closes the connection: the message types as Types() writes
  // them, then "|closed", or "|open" when it did not close within `bound`. E.g. "E/08P01/|closed".
  std::string UntilClosed(std::chrono::milliseconds bound = kBound);
  // Logs in with SCRAM-SHA-256 as `user` with `password` on `database`, up to ReadyForQuery.
  // Throws std::runtime_error naming what the proxy answered otherwise.
  void Login(const std::string& user, const std::string& database, const std::string& password);
  // Half-closes (no more bytes from us), so the proxy sees end of input.
  void ShutdownWrite();
  void Close();
  bool closed() const { return closed_; }
  int fd() const { return fd_; }

 private:
  explicit RawSocket(int fd) : fd_(fd) {}
  int fd_ = -1;
  proxy::FrameReader reader_{false};
  bool closed_ = false;
};

// The types of `ms` in order ("CZ"); an ErrorResponse as E/<sqlstate>/, a ReadyForQuery with its
// status byte ("ZI").
std::string Types(const std::vector<RawMessage>& ms);

// A libpq connection with bounded waits (see the top).
class PgProbe {
 public:
  // Connects with `conninfo`, waiting at most `bound`; throws std::runtime_error with libpq's
  // message (or "timed out") when it cannot.
  explicit PgProbe(const std::string& conninfo, std::chrono::milliseconds bound = kBound);
  ~PgProbe();
  PgProbe(const PgProbe&) = delete;
  PgProbe& operator=(const PgProbe&) = delete;

  // Runs `sql` (simple protocol) and returns the first value of its last result ("" when it has
  // none); "ERROR <sqlstate>: <message>" when it failed; "TIMEOUT" when no answer came within
  // `bound` (the connection is unusable afterwards).
  std::string Value(const std::string& sql, std::chrono::milliseconds bound = kBound);

 private:
  pg_conn* conn_ = nullptr;
};

// Opens a PgProbe and runs `sql` on it: its Value, or "CONNECT: <why>" when it could not connect.
std::string ValueOnNewConnection(const std::string& conninfo, const std::string& sql);

class HostileProxyTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Options for the proxy of this test (a fixture overrides it to set a limit low).
  virtual void Tune(proxy::ProxyOptions& /*options*/) {}

  // The victim lease's existing connection and a new one both answer SELECT 1 within kBound.
  void ExpectOthersServed();
  // The hostile lease itself still serves a well-behaved new client: `items` has its seed rows.
  void ExpectHostileLeaseServes();
  // Waits (kBound) until the process has no more descriptors open than at the end of SetUp.
  void ExpectFdsBackToBaseline();

  RawSocket Connect() const { return RawSocket::Tcp(proxy_->port()); }
  // A RawSocket logged in on the hostile lease.
  RawSocket LoggedIn() const;
  // A start-up packet for the hostile lease (protocol 3.0).
  std::string Startup() const;

  TempDir dir_{"testpool-hostile"};
  const util::Clock& clock_ = util::RealClock();
  std::unique_ptr<core::ControlStore> store_;
  std::unique_ptr<core::TemplateBuilder> builder_;
  std::unique_ptr<core::TemplateService> service_;
  std::unique_ptr<proxy::Proxy> proxy_;
  std::unique_ptr<core::PoolManager> pools_;
  std::string name_;
  core::LeaseInfo hostile_, victim_;
  std::unique_ptr<PgProbe> victim_conn_;  // the victim's connection, open before anything hostile
  size_t baseline_fds_ = 0;
  std::chrono::milliseconds client_wait_{2000};  // ProxyOptions::client_wait of this test
};

}  // namespace testpool::testing
