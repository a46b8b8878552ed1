// Private to proxy*.cc: the proxy's limits, its connections (Conn) and its state (Proxy::Impl),
// shared by proxy.cc (life cycle, pinned sessions, the PinnedSessions calls) and
// proxy_client.cc (client connections: start-up, authentication, relaying). Nothing else
// includes it.
//
// Everything here runs on the proxy's one I/O thread, except what Proxy::Impl marks otherwise.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "orchestrator/proxy/asio.h"
#include "orchestrator/proxy/proxy.h"
#include "orchestrator/proxy/scram.h"
#include "orchestrator/proxy/server_link.h"
#include "orchestrator/proxy/session.h"
#include "orchestrator/util/error.h"

namespace testpool::proxy {

// ---- limits (README, "Savepoint mode": what a hostile client can and cannot do) ---------------

// Above this many unsent bytes toward one side, the other side is not read until it drains. A
// client that stops reading stops its lease's server session (the server blocks writing to us)
// instead of growing the proxy's memory; other leases never wait for it.
inline constexpr size_t kHighWater = 4u << 20;
// Above this much of a client's messages waiting for the server (Session::PendingBytes), the
// client is not read until they drain, as a server reads nothing while it runs a statement: a
// client that pipelines without end while its lease's session is busy is held back by TCP.
inline constexpr size_t kClientReadAhead = 4u << 20;
// A FATAL sent just before a close gets this long to go out: a client that does not read it
// by then is closed anyway, so nothing waits on a client that stopped reading.
inline constexpr std::chrono::seconds kCloseLinger{5};
// How long the pinned session's writes wait for a CancelRequest to be delivered (CancelServer).
// The server takes one at once (it only signals the backend); one it has not taken by then is
// given up on, and the session goes on.
inline constexpr std::chrono::seconds kCancelFence{5};
// A connection's write buffer keeps at most this much capacity once written: a connection that
// once got a large result does not hold on to its memory for the rest of its life.
inline constexpr size_t kKeepCapacity = 64u << 10;

// One socket with an ordered write queue, owned by shared_ptr (a write in progress and its
// timers hold it). Writes never block: bytes are queued and written in order.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  explicit Conn(Socket s);

  Socket& socket() { return sock_; }
  bool open() const { return sock_.is_open(); }
  // Bytes queued and not yet handed to the kernel.
  size_t queued() const { return out_.size(); }
  // A close was asked for (CloseAfterWrite) or done.
  bool closing() const { return closing_ || !sock_.is_open(); }

  // Queues `bytes`; nothing once the socket is closed.
  void Write(std::string_view bytes);
  // Closes once everything queued is written, or after kCloseLinger, whichever comes first; at
  // once when the queue is above kHighWater (the peer is not reading: it would never arrive).
  void CloseAfterWrite();
  // Closes now, dropping what is queued, and wakes whoever waits on this connection.
  void Close();
  // While held (Hold and Unhold counted), what is queued is not written: see CancelServer.
  void Hold() { ++held_; }
  void Unhold();
  // Wakes whoever waits on this connection (Backlog, Wait) to look again at what it waits for.
  void Nudge() { wake_.cancel(); }
  // Returns once the queue is below kHighWater or the socket is closed.
  asio::awaitable<void> Backlog();
  // Returns at the next Nudge or Close (whoever calls it checks its condition again).
  asio::awaitable<void> Wait();

 private:
  void Flush();

  Socket sock_;
  std::string out_, sending_;
  bool writing_ = false;
  bool closing_ = false;
  int held_ = 0;
  asio::steady_timer wake_;    // never expires: cancelled to wake its waiters
  asio::steady_timer linger_;  // CloseAfterWrite's bound
};

struct Admission {
  std::string slot_id, lease_id, database;
  ScramSecret secret;
};

struct Proxy::Impl {
  explicit Impl(ProxyOptions o) : options(std::move(o)) {}

  // Constant after construction (and, for max_clients, after Start).
  const ProxyOptions options;
  size_t max_clients = 0;  // options.max_client_connections, or derived from RLIMIT_NOFILE

  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;
  std::optional<asio::ip::tcp::acceptor> tcp;
  std::optional<asio::local::stream_protocol::acceptor> local;
  std::filesystem::path socket_path;
  int bound_port = 0;

  // A slot's pinned session and its server connection. I/O thread only.
  struct Pinned {
    std::string slot_id, lease_id;
    std::shared_ptr<Conn> server;
    ServerAddress address;  // where `server` connects (cancel requests go there too)
    std::unique_ptr<Session> session;
    ServerHello hello;
    bool closed = false;
    std::map<ClientId, std::shared_ptr<Conn>> clients;  // its clients' connections
    std::set<ClientId> throttled;  // clients not read until their messages drain (kClientReadAhead)
  };
  std::map<std::string, std::shared_ptr<Pinned>> pinned;  // by slot; I/O thread only

  struct Client {
    std::shared_ptr<Conn> conn;
    std::weak_ptr<Pinned> pinned;
    int32_t key = 0;
  };
  std::map<ClientId, Client> clients;  // logged in; I/O thread only
  ClientId next_client = 1;            // I/O thread only
  size_t client_sockets = 0;           // client connections being served (any phase); I/O thread only

  mutable std::mutex admit_mu;
  std::map<std::string, Admission> admitted;     // by role name; guarded by admit_mu
  std::map<std::string, std::string> databases;  // slot → database; guarded by admit_mu

  // Any thread.
  std::atomic<uint64_t> connections_total{0}, connections_refused{0}, sessions_lost{0};
  std::atomic<uint64_t> sessions_open{0}, clients_open{0};

  // Runs `fn` on the I/O thread and waits for its result (or throws Error(kTimeout)).
  template <typename T>
  T OnIo(std::function<void(std::shared_ptr<std::promise<T>>)> fn, std::chrono::milliseconds timeout) {
    auto p = std::make_shared<std::promise<T>>();
    std::future<T> f = p->get_future();
    asio::post(io, [fn, p] { fn(p); });
    if (f.wait_for(timeout) != std::future_status::ready) {
      throw Error(ErrorCode::kTimeout, "the proxy did not answer within " + std::to_string(timeout.count()) + " ms");
    }
    return f.get();
  }

  // ---- clients (proxy_client.cc) ----
  asio::awaitable<void> Accept(asio::ip::tcp::acceptor& acceptor);
  asio::awaitable<void> AcceptLocal(asio::local::stream_protocol::acceptor& acceptor);
  // Serves a freshly accepted socket, or refuses it (53300) when max_clients are being served.
  void Serve(Socket s);
  // Counts the connection while it is served; closes it at the end (unless a close is under way).
  asio::awaitable<void> ServeClient(std::shared_ptr<Conn> conn);
  // Start-up, login and the session's messages, until the client leaves or is closed. Never throws.
  asio::awaitable<void> Talk(std::shared_ptr<Conn> conn);
  // Returns once the client may be read again: the server's queue, the client's replies and its
  // messages waiting for the server are all below their bounds (or something closed).
  asio::awaitable<void> Throttle(std::shared_ptr<Pinned> p, ClientId id, std::shared_ptr<Conn> conn);
  // Wakes the session's throttled clients to look again (after the session did some work).
  static void WakeThrottled(Pinned& p);

  // ---- pinned sessions (proxy.cc) ----
  asio::awaitable<void> ReadServer(std::shared_ptr<Pinned> p, FrameReader reader);
  asio::awaitable<void> Open(core::PinnedSessions::Target target, std::shared_ptr<std::promise<void>> done);
  void ClosePinned(const std::shared_ptr<Pinned>& p);
  // Asks the server to cancel what the pinned session runs, and writes nothing more to it until
  // the server has taken the request (it closes the cancel connection once it has signalled the
  // backend, which then ignores it if idle) or kCancelFence passed. Without this fence a cancel
  // that lands late stops whatever was sent after it: another client's statement, or the
  // proxy's own rollback of a client that left (which breaks the lease).
  void CancelServer(const std::shared_ptr<Pinned>& p);
  // Every 100 ms: times out waiting clients and operations of every session.
  void ArmTick();
  asio::steady_timer tick{io};
  // The target's own server (a slot with a server of its own), else the proxy's.
  ServerAddress Server(const core::PinnedSessions::Target& target) const {
    if (!target.host.empty() && target.port != 0) return ServerAddress{target.host, target.port};
    return ServerAddress{options.server_host, options.server_port};
  }
};

}  // namespace testpool::proxy
