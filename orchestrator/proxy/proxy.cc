// Proxy: its life cycle (listeners, I/O thread), the pinned server connections, the
// PinnedSessions calls that other threads make, and Conn. Client connections are in
// proxy_client.cc.
#include "orchestrator/proxy/proxy.h"

#include <sys/resource.h>

#include <algorithm>
#include <vector>

#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/proxy_internal.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

namespace testpool::proxy {
namespace {

using asio::use_awaitable;

// SCRAM iterations for lease passwords at the proxy: random 160-bit tokens gain nothing from
// stretching (see util::ScramSha256Secret), and every connect pays it.
constexpr int kClientScramIterations = 16;
// With max_client_connections 0: the share of the process's open-file limit client connections
// may take; the rest is left for the pinned server connections (one per rollback-mode slot), the
// API's sockets and libpq, so a flood of clients cannot starve the daemon of descriptors.
constexpr size_t kClientFdSharePercent = 75;

}  // namespace

// ---- Conn -------------------------------------------------------------------------------------

Conn::Conn(Socket s) : sock_(std::move(s)), wake_(sock_.get_executor()), linger_(sock_.get_executor()) {
  wake_.expires_at(asio::steady_timer::time_point::max());
}

void Conn::Write(std::string_view bytes) {
  if (!sock_.is_open()) return;
  out_.append(bytes);
  if (!writing_) Flush();
}

void Conn::CloseAfterWrite() {
  if (!sock_.is_open() || closing_) return;
  if (out_.size() >= kHighWater) {
    Close();
    return;
  }
  closing_ = true;
  linger_.expires_after(kCloseLinger);
  linger_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->Close();
  });
  if (!writing_) Flush();
}

void Conn::Unhold() {
  if (held_ > 0 && --held_ == 0 && !writing_) Flush();
}

void Conn::Flush() {
  if (held_ > 0) return;  // Unhold writes it
  if (out_.empty()) {
    if (closing_) Close();
    return;
  }
  writing_ = true;
  sending_.swap(out_);
  out_.clear();
  asio::async_write(sock_, asio::buffer(sending_), [self = shared_from_this()](boost::system::error_code ec, size_t) {
    self->writing_ = false;
    if (self->sending_.capacity() > kKeepCapacity) {
      std::string().swap(self->sending_);
    } else {
      self->sending_.clear();
    }
    if (ec) {
      self->Close();
      return;
    }
    if (self->out_.size() < kHighWater) self->Nudge();
    self->Flush();
  });
}

void Conn::Close() {
  closing_ = true;
  boost::system::error_code ignored;
  if (sock_.is_open()) {
    sock_.shutdown(asio::socket_base::shutdown_both, ignored);
    sock_.close(ignored);
  }
  linger_.cancel();
  Nudge();
}

asio::awaitable<void> Conn::Backlog() {
  auto self = shared_from_this();
  while (out_.size() >= kHighWater && sock_.is_open()) co_await Wait();
}

asio::awaitable<void> Conn::Wait() {
  auto self = shared_from_this();
  boost::system::error_code ec;
  co_await wake_.async_wait(asio::redirect_error(use_awaitable, ec));
}

// ---- pinned sessions ------------------------------------------------------------------------

asio::awaitable<void> Proxy::Impl::Open(core::PinnedSessions::Target target, std::shared_ptr<std::promise<void>> done) {
  try {
    ServerHello hello;
    FrameReader reader;
    // Named, never a temporary: GCC 12 destroys a prvalue class argument of a coroutine twice.
    ServerLogin login{Server(target), target.role, target.password, target.database};
    Socket sock = co_await ConnectServer(login, &hello, &reader, options.op_timeout);
    auto p = std::make_shared<Pinned>();
    p->slot_id = target.slot_id;
    p->server = std::make_shared<Conn>(std::move(sock));
    p->address = login.address;
    p->hello = hello;
    std::weak_ptr<Pinned> weak = p;
    Session::Hooks hooks;
    hooks.to_server = [weak](std::string_view bytes) {
      if (auto q = weak.lock()) q->server->Write(bytes);
    };
    hooks.to_client = [this](ClientId id, std::string_view bytes) {
      auto it = clients.find(id);
      if (it != clients.end()) it->second.conn->Write(bytes);
    };
    hooks.close_client = [this](ClientId id, std::string bytes) {
      auto it = clients.find(id);
      if (it == clients.end()) return;
      it->second.conn->Write(bytes);
      it->second.conn->CloseAfterWrite();
    };
    hooks.cancel_server = [this, weak] {
      if (auto q = weak.lock()) CancelServer(q);
    };
    Session::Options so;
    so.lease_id = "(slot " + target.slot_id + ")";
    so.client_wait = options.client_wait;
    p->session = std::make_unique<Session>(so, std::move(hooks));
    for (const auto& [name, value] : hello.parameters) {
      if (name != "application_name") p->session->SetServerParam(name, value);
    }
    if (auto old = pinned.find(target.slot_id); old != pinned.end()) ClosePinned(old->second);
    pinned[target.slot_id] = p;
    ++sessions_open;
    asio::co_spawn(io, ReadServer(p, reader), asio::detached);
    p->session->Pin([this, p, done](const InternalResult& r) {
      if (r.ok) {
        log::Info("proxy.pinned", {{"slot", p->slot_id}, {"server_pid", std::to_string(p->hello.pid)}});
        done->set_value();
        return;
      }
      ClosePinned(p);
      done->set_exception(std::make_exception_ptr(
          Error(ErrorCode::kUnavailable, "cannot pin a session: " + std::string(r.error.Get('M')))));
    });
  } catch (const Error& e) {
    done->set_exception(std::current_exception());
  } catch (const std::exception& e) {
    done->set_exception(std::make_exception_ptr(Error(ErrorCode::kUnavailable, e.what())));
  }
}

asio::awaitable<void> Proxy::Impl::ReadServer(std::shared_ptr<Pinned> p, FrameReader reader) {
  char buf[65536];
  std::string why = "closed by the server";
  try {
    for (;;) {
      while (auto m = reader.Next()) {
        p->session->OnServerMessage(*m);
        if (p->session->broken()) break;
      }
      WakeThrottled(*p);
      if (p->session->broken() || p->closed) break;
      // Toward a slow client: wait until its queue drains before reading more from the server.
      // Its lease's session waits (the server blocks writing); no other lease does. The
      // connections are held here, as the clients may leave while we wait.
      std::vector<std::shared_ptr<Conn>> slow;
      for (const auto& [id, conn] : p->clients) {
        if (conn->queued() >= kHighWater) slow.push_back(conn);
      }
      for (const auto& conn : slow) co_await conn->Backlog();
      size_t n = co_await p->server->socket().async_read_some(asio::buffer(buf), use_awaitable);
      reader.Feed(std::string_view(buf, n));
    }
  } catch (const std::exception& e) {
    why = e.what();
  }
  if (!p->closed && !p->session->broken()) {
    ++sessions_lost;
    log::Error("proxy.session_lost", {{"slot", p->slot_id}, {"lease", p->lease_id}, {"error", why}});
    p->session->OnServerLost(why);
  } else if (!p->closed && p->session->broken()) {
    ++sessions_lost;
    log::Error("proxy.session_lost",
               {{"slot", p->slot_id}, {"lease", p->lease_id}, {"error", p->session->broken_reason()}});
  }
  p->server->Close();
}

void Proxy::Impl::ClosePinned(const std::shared_ptr<Pinned>& p) {
  if (p->closed) return;
  p->closed = true;
  p->server->Write(EncodeTerminate());
  p->server->CloseAfterWrite();
  auto it = pinned.find(p->slot_id);
  if (it != pinned.end() && it->second == p) pinned.erase(it);
  --sessions_open;
}

void Proxy::Impl::CancelServer(const std::shared_ptr<Pinned>& p) {
  p->server->Hold();
  // The fence opens when the timer completes: expired, or cancelled once the request is taken.
  auto fence = std::make_shared<asio::steady_timer>(io, kCancelFence);
  fence->async_wait([server = p->server](boost::system::error_code) { server->Unhold(); });
  asio::co_spawn(
      io,
      [address = p->address, pid = p->hello.pid, key = p->hello.key, fence]() -> asio::awaitable<void> {
        co_await SendCancel(address, pid, key);
        fence->cancel();
      },
      asio::detached);
}

void Proxy::Impl::ArmTick() {
  tick.expires_after(std::chrono::milliseconds(100));
  tick.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto now = Clock::now();
    for (auto& [slot, p] : pinned) {
      p->session->Tick(now);
      WakeThrottled(*p);
    }
    ArmTick();
  });
}

// ---- Proxy ------------------------------------------------------------------------------------

Proxy::Proxy(ProxyOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Proxy::~Proxy() { Stop(); }

void Proxy::Start() {
  Impl& m = *impl_;
  try {
    m.tcp.emplace(m.io);
    asio::ip::tcp::endpoint ep(asio::ip::make_address(m.options.listen_host),
                               static_cast<unsigned short>(m.options.port));
    m.tcp->open(ep.protocol());
    m.tcp->set_option(asio::socket_base::reuse_address(true));
    m.tcp->bind(ep);
    m.tcp->listen(1024);
    m.bound_port = m.tcp->local_endpoint().port();
  } catch (const std::exception& e) {
    throw Error(ErrorCode::kUnavailable, "the wire proxy cannot listen on " + m.options.listen_host + ":" +
                                             std::to_string(m.options.port) + ": " + e.what() +
                                             " (choose another with --proxy-port)");
  }
  if (!m.options.socket_dir.empty()) {
    m.socket_path = m.options.socket_dir / (".s.PGSQL." + std::to_string(m.bound_port));
    std::error_code ignored;
    std::filesystem::remove(m.socket_path, ignored);  // a previous daemon's; connecting to it fails anyway
    try {
      m.local.emplace(m.io, asio::local::stream_protocol::endpoint(m.socket_path.string()));
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kUnavailable,
                  "the wire proxy cannot listen on " + m.socket_path.string() + ": " + e.what());
    }
  }
  m.max_clients = m.options.max_client_connections;
  if (m.max_clients == 0) {
    rlimit files{};
    const bool known = ::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY;
    const size_t limit = known ? static_cast<size_t>(files.rlim_cur) : 1024;
    m.max_clients = std::max<size_t>(1, limit * kClientFdSharePercent / 100);
  }
  asio::co_spawn(m.io, m.Accept(*m.tcp), asio::detached);
  if (m.local) asio::co_spawn(m.io, m.AcceptLocal(*m.local), asio::detached);
  m.work.emplace(m.io.get_executor());
  m.ArmTick();
  m.thread = std::thread([&m] { m.io.run(); });
  log::Info(
      "proxy.listening",
      {{"host", m.options.listen_host},
       {"port", std::to_string(m.bound_port)},
       {"socket", m.socket_path.string()},
       {"max_clients", std::to_string(m.max_clients)}});
}

void Proxy::Stop() {
  Impl& m = *impl_;
  if (!m.thread.joinable()) return;
  asio::post(m.io, [&m] {
    boost::system::error_code ignored;
    if (m.tcp) m.tcp->close(ignored);
    if (m.local) m.local->close(ignored);
    for (auto& [id, c] : m.clients) c.conn->Close();
    auto all = m.pinned;
    for (auto& [slot, p] : all) m.ClosePinned(p);
  });
  m.work.reset();
  // Give the closes a moment to go out, then stop whatever is still waiting.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  m.io.stop();
  m.thread.join();
  if (!m.socket_path.empty()) {
    std::error_code ignored;
    std::filesystem::remove(m.socket_path, ignored);
  }
}

void Proxy::Pin(const Target& target) {
  {
    std::lock_guard<std::mutex> lock(impl_->admit_mu);
    impl_->databases[target.slot_id] = target.database;
  }
  impl_->OnIo<void>(
      [this, target](std::shared_ptr<std::promise<void>> done) {
        asio::co_spawn(impl_->io, impl_->Open(target, done), asio::detached);
      },
      impl_->options.op_timeout + std::chrono::seconds(5));
}

void Proxy::Admit(const std::string& slot_id, const std::string& lease_id, const std::string& user,
                  const std::string& password) {
  Admission a;
  a.slot_id = slot_id;
  a.lease_id = lease_id;
  a.secret = ParseScramSecret(util::ScramSha256Secret(password, kClientScramIterations));
  std::lock_guard<std::mutex> lock(impl_->admit_mu);
  auto db = impl_->databases.find(slot_id);
  if (db == impl_->databases.end()) {
    throw Error(ErrorCode::kUnavailable, "slot " + slot_id + " has no pinned session");
  }
  a.database = db->second;
  for (auto it = impl_->admitted.begin(); it != impl_->admitted.end();) {
    it = it->second.slot_id == slot_id ? impl_->admitted.erase(it) : std::next(it);
  }
  impl_->admitted[user] = std::move(a);
}

namespace {

// What a session's internal operation failed with, as the error the pool manager expects.
Error SessionError(const InternalResult& r, const char* what) {
  const std::string_view code = r.error.Get('C');
  if (code == "57014") {
    return Error(ErrorCode::kTimeout, std::string(what) +
                                          " waited too long for the lease's session: a statement kept running or a "
                                          "transaction stayed open (commit or roll back first)");
  }
  if (code == "42704") return Error(ErrorCode::kNotFound, std::string(r.error.Get('M')));
  return Error(ErrorCode::kUnavailable, std::string(r.error.Get('M')));
}

}  // namespace

std::chrono::microseconds Proxy::RunOnSession(const std::string& slot_id, const char* what,
                                              std::function<void(Session&, std::function<void(const InternalResult&)>)> op) {
  const auto t0 = std::chrono::steady_clock::now();
  impl_->OnIo<void>(
      [this, slot_id, what, op](std::shared_ptr<std::promise<void>> done) {
        auto it = impl_->pinned.find(slot_id);
        if (it == impl_->pinned.end()) {
          done->set_exception(
              std::make_exception_ptr(Error(ErrorCode::kNotFound, "slot " + slot_id + " has no pinned session")));
          return;
        }
        op(*it->second->session, [done, what](const InternalResult& r) {
          if (r.ok) {
            done->set_value();
          } else {
            done->set_exception(std::make_exception_ptr(SessionError(r, what)));
          }
        });
      },
      Session::kResetWait + std::chrono::seconds(5));
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
}

std::chrono::microseconds Proxy::Reset(const std::string& slot_id, const std::string& to) {
  return RunOnSession(slot_id, "the reset", [to](Session& s, auto done) { s.Reset(to, std::move(done)); });
}

std::chrono::microseconds Proxy::Checkpoint(const std::string& slot_id, const std::string& name) {
  return RunOnSession(slot_id, "the checkpoint", [name](Session& s, auto done) { s.Checkpoint(name, std::move(done)); });
}

bool Proxy::Release(const std::string& slot_id) {
  {
    std::lock_guard<std::mutex> lock(impl_->admit_mu);
    for (auto it = impl_->admitted.begin(); it != impl_->admitted.end();) {
      it = it->second.slot_id == slot_id ? impl_->admitted.erase(it) : std::next(it);
    }
    impl_->databases.erase(slot_id);
  }
  try {
    return impl_->OnIo<bool>(
        [this, slot_id](std::shared_ptr<std::promise<bool>> done) {
          auto it = impl_->pinned.find(slot_id);
          if (it == impl_->pinned.end()) {
            done->set_value(false);
            return;
          }
          std::shared_ptr<Impl::Pinned> p = it->second;
          const std::string reason =
              p->lease_id.empty() ? "the slot's session ends" : "testpool lease " + p->lease_id + " ended";
          p->session->Release(reason, [this, p, done](const InternalResult& r) {
            impl_->ClosePinned(p);
            done->set_value(r.ok);
          });
        },
        impl_->options.op_timeout);
  } catch (const Error& e) {
    log::Error("proxy.release_failed", {{"slot", slot_id}, {"error", e.what()}});
    asio::post(impl_->io, [this, slot_id] {
      auto it = impl_->pinned.find(slot_id);
      if (it != impl_->pinned.end()) impl_->ClosePinned(it->second);
    });
    return false;
  }
}

std::string Proxy::host() const { return impl_->options.listen_host; }
int Proxy::port() const { return impl_->bound_port; }

core::PinnedSessions::Stats Proxy::stats() const {
  Stats s;
  s.sessions = impl_->sessions_open.load();
  s.client_connections = impl_->clients_open.load();
  s.connections_total = impl_->connections_total.load();
  s.connections_refused = impl_->connections_refused.load();
  s.sessions_lost = impl_->sessions_lost.load();
  return s;
}

}  // namespace testpool::proxy
