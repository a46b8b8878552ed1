// Proxy: listeners, client connections (start-up, SCRAM, relaying into their Session), pinned
// server connections, and the PinnedSessions calls that other threads make.
#include "orchestrator/proxy/proxy.h"

#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "orchestrator/proxy/asio.h"
#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/scram.h"
#include "orchestrator/proxy/server_link.h"
#include "orchestrator/proxy/session.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::proxy {
namespace {

using asio::use_awaitable;

// Above this many unsent bytes toward one side, the other side is not read until it drains.
constexpr size_t kHighWater = 4u << 20;
// SCRAM iterations for lease passwords at the proxy: random 160-bit tokens gain nothing from
// stretching (see util::ScramSha256Secret), and every connect pays it.
constexpr int kClientScramIterations = 16;

// One socket with an ordered write queue.
struct Conn {
  explicit Conn(Socket s) : sock(std::move(s)), drained(sock.get_executor()) {
    drained.expires_at(asio::steady_timer::time_point::max());
  }
  Socket sock;
  std::string out, sending;
  bool writing = false;
  bool closing = false;        // close once everything queued is written
  asio::steady_timer drained;  // cancelled whenever the queue falls below kHighWater

  void Write(std::string_view bytes, const std::shared_ptr<Conn>& self) {
    if (!sock.is_open()) return;
    out.append(bytes);
    if (!writing) Flush(self);
  }
  void CloseAfterWrite(const std::shared_ptr<Conn>& self) {
    closing = true;
    if (!writing) Flush(self);
  }
  void Flush(const std::shared_ptr<Conn>& self) {
    if (out.empty()) {
      if (closing) Close();
      return;
    }
    writing = true;
    sending.swap(out);
    out.clear();
    asio::async_write(sock, asio::buffer(sending), [self](boost::system::error_code ec, size_t) {
      self->writing = false;
      self->sending.clear();
      if (ec) {
        self->Close();
        return;
      }
      if (self->out.size() < kHighWater) self->drained.cancel();
      self->Flush(self);
    });
  }
  void Close() {
    boost::system::error_code ignored;
    if (sock.is_open()) {
      sock.shutdown(asio::socket_base::shutdown_both, ignored);
      sock.close(ignored);
    }
    drained.cancel();
  }
  // Waits until the write queue is below kHighWater.
  asio::awaitable<void> Backlog() {
    while (out.size() >= kHighWater && sock.is_open()) {
      drained.expires_at(asio::steady_timer::time_point::max());
      boost::system::error_code ec;
      co_await drained.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }
};

struct Admission {
  std::string slot_id, lease_id, database;
  ScramSecret secret;
};

}  // namespace

struct Proxy::Impl {
  explicit Impl(ProxyOptions o) : options(std::move(o)) {}

  const ProxyOptions options;
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
  };
  std::map<std::string, std::shared_ptr<Pinned>> pinned;  // by slot; I/O thread only

  struct Client {
    std::shared_ptr<Conn> conn;
    std::weak_ptr<Pinned> pinned;
    int32_t key = 0;
  };
  std::map<ClientId, Client> clients;  // I/O thread only
  ClientId next_client = 1;            // I/O thread only

  mutable std::mutex admit_mu;
  std::map<std::string, Admission> admitted;     // by role name; guarded by admit_mu
  std::map<std::string, std::string> databases;  // slot → database; guarded by admit_mu

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

  asio::awaitable<void> Accept(asio::ip::tcp::acceptor& acceptor);
  asio::awaitable<void> AcceptLocal(asio::local::stream_protocol::acceptor& acceptor);
  asio::awaitable<void> ServeClient(std::shared_ptr<Conn> conn);
  asio::awaitable<void> ReadServer(std::shared_ptr<Pinned> p, FrameReader reader);
  asio::awaitable<void> Open(core::PinnedSessions::Target target, std::shared_ptr<std::promise<void>> done);
  void ClosePinned(const std::shared_ptr<Pinned>& p);
  // Every 100 ms: times out waiting clients and operations of every session.
  void ArmTick() {
    tick.expires_after(std::chrono::milliseconds(100));
    tick.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      const auto now = Clock::now();
      for (auto& [slot, p] : pinned) p->session->Tick(now);
      ArmTick();
    });
  }
  asio::steady_timer tick{io};
  // The target's own server (a slot with a server of its own), else the proxy's.
  ServerAddress Server(const core::PinnedSessions::Target& target) const {
    if (!target.host.empty() && target.port != 0) return ServerAddress{target.host, target.port};
    return ServerAddress{options.server_host, options.server_port};
  }
};

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
      if (auto q = weak.lock()) q->server->Write(bytes, q->server);
    };
    hooks.to_client = [this](ClientId id, std::string_view bytes) {
      auto it = clients.find(id);
      if (it != clients.end()) it->second.conn->Write(bytes, it->second.conn);
    };
    hooks.close_client = [this](ClientId id, std::string bytes) {
      auto it = clients.find(id);
      if (it == clients.end()) return;
      it->second.conn->Write(bytes, it->second.conn);
      it->second.conn->CloseAfterWrite(it->second.conn);
    };
    hooks.cancel_server = [this, weak] {
      if (auto q = weak.lock()) {
        ServerAddress address = q->address;
        asio::co_spawn(io, SendCancel(address, q->hello.pid, q->hello.key), asio::detached);
      }
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
      if (p->session->broken() || p->closed) break;
      // Toward a slow client: wait until its queue drains before reading more from the server.
      for (auto& [id, c] : clients) {
        if (c.pinned.lock() == p && c.conn->out.size() >= kHighWater) co_await c.conn->Backlog();
      }
      size_t n = co_await p->server->sock.async_read_some(asio::buffer(buf), use_awaitable);
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
  p->server->Write(EncodeTerminate(), p->server);
  p->server->CloseAfterWrite(p->server);
  auto it = pinned.find(p->slot_id);
  if (it != pinned.end() && it->second == p) pinned.erase(it);
  --sessions_open;
}

// ---- clients --------------------------------------------------------------------------------

asio::awaitable<void> Proxy::Impl::Accept(asio::ip::tcp::acceptor& acceptor) {
  for (;;) {
    boost::system::error_code ec;
    asio::ip::tcp::socket s = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    s.set_option(asio::ip::tcp::no_delay(true), ec);
    auto conn = std::make_shared<Conn>(Socket(std::move(s)));
    asio::co_spawn(io, ServeClient(conn), asio::detached);
  }
}

asio::awaitable<void> Proxy::Impl::AcceptLocal(asio::local::stream_protocol::acceptor& acceptor) {
  for (;;) {
    boost::system::error_code ec;
    asio::local::stream_protocol::socket s = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) continue;
    auto conn = std::make_shared<Conn>(Socket(std::move(s)));
    asio::co_spawn(io, ServeClient(conn), asio::detached);
  }
}

asio::awaitable<void> Proxy::Impl::ServeClient(std::shared_ptr<Conn> conn) {
  FrameReader reader(true);
  char buf[65536];
  auto next = [&]() -> asio::awaitable<MessageView> {
    for (;;) {
      if (auto m = reader.Next()) co_return *m;
      size_t n = co_await conn->sock.async_read_some(asio::buffer(buf), use_awaitable);
      reader.Feed(std::string_view(buf, n));
    }
  };
  auto refuse = [&](std::string_view sqlstate, const std::string& message) {
    ++connections_refused;
    log::Info("proxy.refused", {{"reason", message}});
    conn->Write(EncodeErrorResponse(MakeFields("FATAL", sqlstate, message)), conn);
    conn->CloseAfterWrite(conn);
  };
  ClientId id = 0;
  std::shared_ptr<Pinned> p;
  try {
    StartupMessage startup;
    for (;;) {
      MessageView m = co_await next();
      StartupPacket packet = ParseStartupPacket(m.body);
      if (std::holds_alternative<SslRequest>(packet) || std::holds_alternative<GssEncRequest>(packet)) {
        conn->Write("N", conn);  // no TLS (nor GSS encryption) on the proxy port
        reader.ExpectUntyped();
        continue;
      }
      if (auto* cancel = std::get_if<CancelRequest>(&packet)) {
        auto it = clients.find(static_cast<ClientId>(cancel->pid));
        if (it != clients.end() && it->second.key == cancel->key) {
          auto q = it->second.pinned.lock();
          if (q && q->session->Running(it->first)) {
            log::Info("proxy.cancel", {{"slot", q->slot_id}, {"client", std::to_string(it->first)}});
            ServerAddress address = q->address;
            asio::co_spawn(io, SendCancel(address, q->hello.pid, q->hello.key), asio::detached);
          }
        }
        conn->Close();
        co_return;
      }
      startup = std::get<StartupMessage>(std::move(packet));
      break;
    }
    if ((startup.protocol >> 16) != 3) {
      refuse("0A000", "unsupported frontend protocol " + std::to_string(startup.protocol >> 16) + "." +
                          std::to_string(startup.protocol & 0xffff) + ": the proxy speaks 3.0");
      co_return;
    }
    reader.ExpectTyped();
    if ((startup.protocol & 0xffff) != 0) {
      // NegotiateProtocolVersion: 3.0, and none of the _pq_ options.
      MessageBuilder b('v');
      b.Int32(kProtocolV3);
      std::vector<std::string> unknown;
      for (const auto& [k, v] : startup.params) {
        if (k.rfind("_pq_.", 0) == 0) unknown.push_back(k);
      }
      b.Int32(static_cast<int32_t>(unknown.size()));
      for (const auto& u : unknown) b.CString(u);
      conn->Write(b.Finish(), conn);
    }
    const std::string user = startup.Param("user").value_or("");
    const std::string database = startup.Param("database").value_or(user);
    if (startup.Param("replication")) {
      refuse("0A000", "replication connections are not served by testpool's proxy");
      co_return;
    }
    std::optional<Admission> found;
    {
      std::lock_guard<std::mutex> lock(admit_mu);
      auto it = admitted.find(user);
      if (it != admitted.end() && it->second.database == database) found = it->second;
    }
    if (!found) {
      refuse("28000", "no testpool lease for role \"" + user + "\" on database \"" + database +
                          "\" (it ended, or it is not a rollback-mode lease)");
      co_return;
    }
    const Admission adm = std::move(*found);
    // SCRAM-SHA-256 against the lease's secret.
    conn->Write(EncodeAuthenticationSasl({"SCRAM-SHA-256"}), conn);
    MessageView first = co_await next();
    if (first.type != 'p') throw ProtocolError("expected a SASLInitialResponse");
    SaslInitialResponse init = ParseSaslInitialResponse(first.body);
    if (init.mechanism != "SCRAM-SHA-256") {
      refuse("28000", "the proxy offers SCRAM-SHA-256 only, not " + std::string(init.mechanism));
      co_return;
    }
    ScramServer scram(adm.secret, MakeScramNonce());
    conn->Write(EncodeAuthentication(11, scram.HandleClientFirst(init.data)), conn);
    MessageView final_msg = co_await next();
    if (final_msg.type != 'p') throw ProtocolError("expected a SASLResponse");
    std::optional<std::string> server_final = scram.HandleClientFinal(final_msg.body);
    if (!server_final) {
      refuse("28P01", "password authentication failed for user \"" + user + "\"");
      co_return;
    }
    auto pit = pinned.find(adm.slot_id);
    if (pit == pinned.end() || pit->second->session->broken()) {
      refuse("08006",
             pit == pinned.end() ? "the lease's pinned session is gone" : pit->second->session->broken_reason());
      co_return;
    }
    p = pit->second;
    p->lease_id = adm.lease_id;
    id = next_client++;
    if (id > 0x7fffffff) id = next_client = 1;  // BackendKeyData's pid is an int32
    Client c;
    c.conn = conn;
    c.pinned = p;
    c.key = static_cast<int32_t>(std::stoul(util::RandomHex(4), nullptr, 16) & 0x7fffffff);
    clients[id] = c;
    ++connections_total;
    ++clients_open;
    std::vector<std::pair<std::string, std::string>> params;
    for (const auto& [k, v] : startup.params) {
      if (k == "user" || k == "database" || k == "options" || k.rfind("_pq_.", 0) == 0) continue;
      params.emplace_back(k, v);
    }
    if (auto options = startup.Param("options")) {
      // "-c name=value" and "--name=value" settings, space-separated ("\ " escapes a space).
      std::vector<std::string> words;
      std::string w;
      for (size_t i = 0; i < options->size(); ++i) {
        char ch = (*options)[i];
        if (ch == '\\' && i + 1 < options->size()) {
          w += (*options)[++i];
        } else if (ch == ' ' || ch == '\t') {
          if (!w.empty()) words.push_back(std::move(w));
          w.clear();
        } else {
          w += ch;
        }
      }
      if (!w.empty()) words.push_back(w);
      for (size_t i = 0; i < words.size(); ++i) {
        std::string setting;
        if (words[i] == "-c" && i + 1 < words.size()) {
          setting = words[++i];
        } else if (words[i].rfind("-c", 0) == 0 && words[i].size() > 2) {
          setting = words[i].substr(2);
        } else if (words[i].rfind("--", 0) == 0) {
          setting = words[i].substr(2);
        }
        auto eq = setting.find('=');
        if (eq == std::string::npos || eq == 0) continue;
        std::string name = setting.substr(0, eq);
        for (char& ch : name) {
          if (ch == '-') ch = '_';
        }
        params.emplace_back(name, setting.substr(eq + 1));
      }
    }
    std::string hello = EncodeAuthentication(12, *server_final) + EncodeAuthentication(0);
    hello += p->session->Attach(id, std::move(params));
    hello += EncodeBackendKeyData(static_cast<int32_t>(id), c.key) + EncodeReadyForQuery('I');
    conn->Write(hello, conn);
    log::Debug("proxy.client", {{"slot", p->slot_id}, {"lease", adm.lease_id}, {"client", std::to_string(id)}});
    for (;;) {
      MessageView m = co_await next();
      p->session->OnClientMessage(id, m);
      if (!clients.count(id) || !conn->sock.is_open()) break;
      if (p->server->out.size() >= kHighWater) co_await p->server->Backlog();
    }
  } catch (const ProtocolError& e) {
    if (id == 0) {
      refuse("08P01", e.what());
    } else {
      conn->Write(EncodeErrorResponse(MakeFields("FATAL", "08P01", e.what())), conn);
      conn->CloseAfterWrite(conn);
    }
  } catch (const ScramError& e) {
    refuse("28P01", std::string("SCRAM authentication failed: ") + e.what());
  } catch (const std::exception&) {
    // The client went away (EOF, reset): nothing to tell it.
  }
  if (id != 0) {
    clients.erase(id);
    --clients_open;
    if (p && !p->closed) p->session->Detach(id);
  }
  if (!conn->writing) conn->Close();
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
  asio::co_spawn(m.io, m.Accept(*m.tcp), asio::detached);
  if (m.local) asio::co_spawn(m.io, m.AcceptLocal(*m.local), asio::detached);
  m.work.emplace(m.io.get_executor());
  m.ArmTick();
  m.thread = std::thread([&m] { m.io.run(); });
  log::Info(
      "proxy.listening",
      {{"host", m.options.listen_host}, {"port", std::to_string(m.bound_port)}, {"socket", m.socket_path.string()}});
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

std::chrono::microseconds Proxy::Reset(const std::string& slot_id) {
  const auto t0 = std::chrono::steady_clock::now();
  impl_->OnIo<void>(
      [this, slot_id](std::shared_ptr<std::promise<void>> done) {
        auto it = impl_->pinned.find(slot_id);
        if (it == impl_->pinned.end()) {
          done->set_exception(
              std::make_exception_ptr(Error(ErrorCode::kNotFound, "slot " + slot_id + " has no pinned session")));
          return;
        }
        it->second->session->Reset([done](const InternalResult& r) {
          if (r.ok) {
            done->set_value();
          } else if (r.error.Get('C') == "57014") {
            done->set_exception(std::make_exception_ptr(Error(
                ErrorCode::kTimeout, "the reset waited too long for a running statement of the lease to finish")));
          } else {
            done->set_exception(std::make_exception_ptr(Error(ErrorCode::kUnavailable, std::string(r.error.Get('M')))));
          }
        });
      },
      Session::kResetWait + std::chrono::seconds(5));
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
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
