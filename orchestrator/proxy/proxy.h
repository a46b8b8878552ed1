// testpool's PostgreSQL wire proxy: the `rollback` recycle mode's front door.
//
// Listens on TCP (default 127.0.0.1:7433) and on a unix socket (<dir>/.s.PGSQL.<port>, so
// `host=<dir> port=<port>` works for libpq clients). A client logs in with a lease's role name,
// its database and its password (SCRAM-SHA-256; no TLS on this port: SSLRequest is answered 'N',
// and md5 or cleartext are never offered). It is then served by the pinned session of the lease's
// slot (session.h), whatever its language or driver. CancelRequests reach the server backend of
// the pinned session when that client's statement runs there.
//
// A client cannot hold more than its own lease: every message is checked by its header before
// its body is read (start-up packets up to 10000 bytes, SASL messages up to 65535, messages
// without SQL or data up to 10000, the rest up to 1 GB: PostgreSQL's own limits; a type no
// frontend sends is refused at once), logging in is bounded by auth_timeout, connections by
// max_client_connections, and what the proxy buffers for a client is bounded both ways (a
// client that stops reading, or pipelines without end, is held back by TCP and stops its own
// lease's session only). A client that breaks the protocol gets FATAL 08P01 and is closed; its
// lease's other connections go on. README, "Savepoint mode", lists the limits.
//
// Threading: one I/O thread runs every socket and every Session; the PinnedSessions methods may
// be called from any thread and hand their work to it (Admit only takes a mutex).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "orchestrator/core/pinned_sessions.h"

namespace testpool::proxy {

class Session;
struct InternalResult;

struct ProxyOptions {
  std::string listen_host = "127.0.0.1";
  int port = 7433;                   // 0: any free port (tests)
  std::filesystem::path socket_dir;  // empty: no unix socket
  // The PostgreSQL server the pinned sessions log in to: a socket directory or a host, and port.
  std::string server_host;
  int server_port = 5432;
  // How long a client's unit waits while another client of its lease holds a transaction open.
  std::chrono::milliseconds client_wait{30000};
  // Upper bound for opening a pinned session and for a release.
  std::chrono::milliseconds op_timeout{30000};
  // A client that has not logged in this long after connecting is closed (FATAL 57014):
  // PostgreSQL's authentication_timeout default, so a connection that says nothing, or stops
  // half-way through SCRAM, does not hold a socket for ever.
  std::chrono::milliseconds auth_timeout{60000};
  // Client connections served at once (logging in or logged in); one more is refused with FATAL
  // 53300, as PostgreSQL refuses one past max_connections. 0: three quarters of the process's
  // open-file limit (RLIMIT_NOFILE) at Start, the rest left for the pinned server connections,
  // the API and libpq, so a flood of clients cannot starve the daemon of descriptors.
  size_t max_client_connections = 0;
};

class Proxy final : public core::PinnedSessions {
 public:
  explicit Proxy(ProxyOptions options);
  ~Proxy() override;  // Stop()
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Binds the listeners and starts the I/O thread. Throws Error(kUnavailable) when the port or
  // socket cannot be bound (naming it).
  void Start();
  // Closes every connection and stops the thread. Idempotent.
  void Stop();

  void Pin(const Target& target) override;
  void Admit(const std::string& slot_id, const std::string& lease_id, const std::string& user,
             const std::string& password) override;
  std::chrono::microseconds Reset(const std::string& slot_id, const std::string& to) override;
  std::chrono::microseconds Checkpoint(const std::string& slot_id, const std::string& name) override;
  bool Release(const std::string& slot_id) override;
  std::string host() const override;
  int port() const override;
  Stats stats() const override;

 private:
  // Runs `op` on the slot's session (on the I/O thread) and waits for it; throws as Reset does.
  std::chrono::microseconds RunOnSession(
      const std::string& slot_id, const char* what,
      std::function<void(Session&, std::function<void(const InternalResult&)>)> op);

  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::proxy
