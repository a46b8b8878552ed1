// Proxy: client connections — accepting them (within max_clients), start-up, SCRAM, and relaying
// their messages into their lease's Session — with the limits that keep a hostile or broken
// client to itself: message sizes checked by their header before their body is read, a bound on
// logging in, back-pressure both ways.
#include <variant>
#include <vector>

#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/proxy_internal.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

namespace testpool::proxy {
namespace {

using asio::use_awaitable;

// Largest SASL message accepted while logging in: PostgreSQL's own (PG_MAX_AUTH_TOKEN_LENGTH),
// so any client that logs in to PostgreSQL logs in here; SCRAM's messages are a few hundred
// bytes.
constexpr size_t kMaxAuthMessageBytes = 65535;
// Largest message without SQL or data (Sync, Describe, Execute, Close, …): PostgreSQL's own
// limit for them (PQ_SMALL_MESSAGE_LIMIT).
constexpr size_t kMaxSmallMessageBytes = 10000;
// After an accept fails for want of descriptors or memory: wait this long before the next one.
// The connection stays in the listen backlog, so accepting again at once would spin the I/O
// thread; a descriptor freed meanwhile is used within this time.
constexpr std::chrono::milliseconds kAcceptRetry{100};

// Where a client is, for what it may send.
enum class Phase {
  kStartup,  // untyped packets: SSLRequest, GSSENCRequest, CancelRequest, StartupMessage
  kAuth,     // SASL messages ('p') only
  kSession,  // logged in: the frontend messages of the extended and simple protocols
};

// The largest message of `type` a logged-in frontend may send; 0 for a type no frontend sends.
// PostgreSQL's own limits, so a client that works against PostgreSQL works here.
size_t MaxSessionMessage(char type) {
  switch (type) {
    case 'Q':  // Query
    case 'P':  // Parse
    case 'B':  // Bind
    case 'F':  // FunctionCall
    case 'd':  // CopyData
    case 'c':  // CopyDone
    case 'f':  // CopyFail
      return kMaxMessageBytes;
    case 'D':  // Describe
    case 'E':  // Execute
    case 'C':  // Close
    case 'H':  // Flush
    case 'S':  // Sync
    case 'X':  // Terminate
      return kMaxSmallMessageBytes;
    default:
      return 0;
  }
}

std::string ShowType(char type) {
  const auto u = static_cast<unsigned char>(type);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + type + "'";
  return "0x" + std::string(1, "0123456789abcdef"[u >> 4]) + "0123456789abcdef"[u & 0xf];
}

// Refuses a message by its header, before any of its body is buffered: a type the phase does
// not allow, or a declared length above the type's limit. (Untyped start-up packets are bounded
// by FrameReader itself: kMaxStartupBytes; lengths below the minimum are FrameReader's too.)
void CheckHeader(Phase phase, const FrameReader::Header& h) {
  if (phase == Phase::kStartup) return;
  const size_t max = phase == Phase::kAuth ? (h.type == 'p' ? kMaxAuthMessageBytes : 0) : MaxSessionMessage(h.type);
  if (max == 0) {
    throw ProtocolError("invalid frontend message type " + ShowType(h.type) +
                        (phase == Phase::kAuth ? " during authentication (expected a SASL response)" : ""));
  }
  if (h.length > max) {
    throw ProtocolError("message " + ShowType(h.type) + " declares " + std::to_string(h.length) +
                        " bytes, above the limit of " + std::to_string(max) + " for its type");
  }
}

// The client's start-up parameters for its session: all but user, database and protocol
// options, with the "options" parameter's "-c name=value" and "--name=value" settings expanded
// (space-separated; "\ " escapes a space).
std::vector<std::pair<std::string, std::string>> SessionParams(const StartupMessage& startup) {
  std::vector<std::pair<std::string, std::string>> params;
  for (const auto& [k, v] : startup.params) {
    if (k == "user" || k == "database" || k == "options" || k.rfind("_pq_.", 0) == 0) continue;
    params.emplace_back(k, v);
  }
  std::optional<std::string> options = startup.Param("options");
  if (!options) return params;
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
  return params;
}

// NegotiateProtocolVersion for a 3.x start-up with x > 0: 3.0, and none of its _pq_ options.
std::string NegotiateProtocolVersion(const StartupMessage& startup) {
  MessageBuilder b('v');
  b.Int32(kProtocolV3);
  std::vector<std::string> unknown;
  for (const auto& [k, v] : startup.params) {
    if (k.rfind("_pq_.", 0) == 0) unknown.push_back(k);
  }
  b.Int32(static_cast<int32_t>(unknown.size()));
  for (const auto& u : unknown) b.CString(u);
  return b.Finish();
}

bool OutOfResources(const boost::system::error_code& ec) {
  namespace errc = boost::system::errc;
  return ec == asio::error::no_descriptors || ec == errc::too_many_files_open_in_system ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

}  // namespace

// ---- accepting --------------------------------------------------------------------------------

asio::awaitable<void> Proxy::Impl::Accept(asio::ip::tcp::acceptor& acceptor) {
  asio::steady_timer retry(io);
  for (;;) {
    boost::system::error_code ec;
    asio::ip::tcp::socket s = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (OutOfResources(ec)) {
      log::Warn("proxy.accept_failed", {{"error", ec.message()}, {"clients", std::to_string(client_sockets)}});
      retry.expires_after(kAcceptRetry);
      co_await retry.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    if (ec) continue;
    s.set_option(asio::ip::tcp::no_delay(true), ec);
    Serve(Socket(std::move(s)));
  }
}

asio::awaitable<void> Proxy::Impl::AcceptLocal(asio::local::stream_protocol::acceptor& acceptor) {
  asio::steady_timer retry(io);
  for (;;) {
    boost::system::error_code ec;
    asio::local::stream_protocol::socket s = co_await acceptor.async_accept(asio::redirect_error(use_awaitable, ec));
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (OutOfResources(ec)) {
      log::Warn("proxy.accept_failed", {{"error", ec.message()}, {"clients", std::to_string(client_sockets)}});
      retry.expires_after(kAcceptRetry);
      co_await retry.async_wait(asio::redirect_error(use_awaitable, ec));
      continue;
    }
    if (ec) continue;
    Serve(Socket(std::move(s)));
  }
}

void Proxy::Impl::Serve(Socket s) {
  auto conn = std::make_shared<Conn>(std::move(s));
  if (client_sockets >= max_clients) {
    ++connections_refused;
    log::Warn("proxy.refused", {{"reason", "too many clients"}, {"max_clients", std::to_string(max_clients)}});
    conn->Write(EncodeErrorResponse(MakeFields(
        "FATAL", "53300",
        "sorry, too many clients already: testpool's proxy serves at most " + std::to_string(max_clients) +
            " connections at once")));
    conn->CloseAfterWrite();
    return;
  }
  ++client_sockets;  // here, not in ServeClient: a burst of accepts runs before any of them starts
  asio::co_spawn(io, ServeClient(conn), asio::detached);
}

// ---- one client -------------------------------------------------------------------------------

asio::awaitable<void> Proxy::Impl::ServeClient(std::shared_ptr<Conn> conn) {
  co_await Talk(conn);
  --client_sockets;
  if (!conn->closing()) conn->Close();
}

asio::awaitable<void> Proxy::Impl::Talk(std::shared_ptr<Conn> conn) {
  FrameReader reader(true);
  Phase phase = Phase::kStartup;
  char buf[16384];
  auto next = [&]() -> asio::awaitable<MessageView> {
    for (;;) {
      if (std::optional<FrameReader::Header> h = reader.Peek()) CheckHeader(phase, *h);
      if (auto m = reader.Next()) co_return *m;
      size_t n = co_await conn->socket().async_read_some(asio::buffer(buf), use_awaitable);
      reader.Feed(std::string_view(buf, n));
    }
  };
  auto refuse = [&](std::string_view sqlstate, const std::string& message) {
    ++connections_refused;
    log::Info("proxy.refused", {{"reason", message}});
    conn->Write(EncodeErrorResponse(MakeFields("FATAL", sqlstate, message)));
    conn->CloseAfterWrite();
  };
  // Logging in has a bound (PostgreSQL's authentication_timeout): a client that connects and
  // says nothing, or stops half-way, is closed instead of holding its socket for ever.
  asio::steady_timer login_deadline(io);
  login_deadline.expires_after(options.auth_timeout);
  login_deadline.async_wait([this, conn](boost::system::error_code ec) {
    if (ec || conn->closing()) return;
    ++connections_refused;
    log::Info("proxy.refused", {{"reason", "authentication timeout"}});
    conn->Write(EncodeErrorResponse(MakeFields("FATAL", "57014", "canceling authentication due to timeout")));
    conn->CloseAfterWrite();
  });
  ClientId id = 0;
  std::shared_ptr<Pinned> p;
  try {
    StartupMessage startup;
    bool ssl_asked = false, gss_asked = false;
    for (;;) {
      MessageView m = co_await next();
      StartupPacket packet = ParseStartupPacket(m.body);
      if (std::holds_alternative<SslRequest>(packet) || std::holds_alternative<GssEncRequest>(packet)) {
        // Each at most once, as PostgreSQL allows: a client cannot keep the exchange going.
        bool& asked = std::holds_alternative<SslRequest>(packet) ? ssl_asked : gss_asked;
        if (asked) throw ProtocolError("the same encryption request came twice");
        asked = true;
        conn->Write("N");  // no TLS (nor GSS encryption) on the proxy port
        reader.ExpectUntyped();
        continue;
      }
      if (auto* cancel = std::get_if<CancelRequest>(&packet)) {
        auto it = clients.find(static_cast<ClientId>(cancel->pid));
        if (it != clients.end() && it->second.key == cancel->key) {
          auto q = it->second.pinned.lock();
          if (q && q->session->Running(it->first)) {
            log::Info("proxy.cancel", {{"slot", q->slot_id}, {"client", std::to_string(it->first)}});
            CancelServer(q);
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
    phase = Phase::kAuth;
    if ((startup.protocol & 0xffff) != 0) conn->Write(NegotiateProtocolVersion(startup));
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
    conn->Write(EncodeAuthenticationSasl({"SCRAM-SHA-256"}));
    SaslInitialResponse init = ParseSaslInitialResponse((co_await next()).body);
    if (init.mechanism != "SCRAM-SHA-256") {
      refuse("28000", "the proxy offers SCRAM-SHA-256 only, not " + std::string(init.mechanism));
      co_return;
    }
    ScramServer scram(adm.secret, MakeScramNonce());
    conn->Write(EncodeAuthentication(11, scram.HandleClientFirst(init.data)));
    std::optional<std::string> server_final = scram.HandleClientFinal((co_await next()).body);
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
    login_deadline.cancel();
    phase = Phase::kSession;
    p = pit->second;
    p->lease_id = adm.lease_id;
    id = next_client++;
    if (id > 0x7fffffff) id = next_client = 1;  // BackendKeyData's pid is an int32
    Client c;
    c.conn = conn;
    c.pinned = p;
    c.key = static_cast<int32_t>(std::stoul(util::RandomHex(4), nullptr, 16) & 0x7fffffff);
    clients[id] = c;
    p->clients[id] = conn;
    ++connections_total;
    ++clients_open;
    std::string hello = EncodeAuthentication(12, *server_final) + EncodeAuthentication(0);
    hello += p->session->Attach(id, SessionParams(startup));
    hello += EncodeBackendKeyData(static_cast<int32_t>(id), c.key) + EncodeReadyForQuery('I');
    conn->Write(hello);
    log::Debug("proxy.client", {{"slot", p->slot_id}, {"lease", adm.lease_id}, {"client", std::to_string(id)}});
    for (;;) {
      MessageView m = co_await next();
      p->session->OnClientMessage(id, m);
      WakeThrottled(*p);  // its message may have ended a block others wait for
      if (!clients.count(id) || conn->closing()) break;
      co_await Throttle(p, id, conn);
    }
  } catch (const ProtocolError& e) {
    if (id == 0) {
      refuse("08P01", e.what());
    } else {
      // As a protocol error inside a message: the session tells it and closes it (no cancel of
      // its unit in flight). Closed here too in case the session had already let it go.
      if (!p->closed) p->session->Drop(id, "08P01", e.what());
      conn->CloseAfterWrite();
    }
  } catch (const ScramError& e) {
    refuse("28P01", std::string("SCRAM authentication failed: ") + e.what());
  } catch (const std::exception&) {
    // The client went away (EOF, reset): nothing to tell it.
  }
  if (id != 0) {
    clients.erase(id);
    --clients_open;
    if (p) {
      p->clients.erase(id);
      p->throttled.erase(id);
      if (!p->closed) {
        p->session->Detach(id);
        WakeThrottled(*p);
      }
    }
  }
}

asio::awaitable<void> Proxy::Impl::Throttle(std::shared_ptr<Pinned> p, ClientId id, std::shared_ptr<Conn> conn) {
  for (;;) {
    if (!conn->open() || p->closed) co_return;
    if (p->server->queued() >= kHighWater) {
      co_await p->server->Backlog();  // the server is slow to read what the lease sends
    } else if (conn->queued() >= kHighWater) {
      co_await conn->Backlog();  // the client is slow to read its replies: read nothing more from it
    } else if (p->session->PendingBytes(id) >= kClientReadAhead) {
      p->throttled.insert(id);
      co_await conn->Wait();
      p->throttled.erase(id);
    } else {
      co_return;
    }
  }
}

void Proxy::Impl::WakeThrottled(Pinned& p) {
  for (ClientId id : p.throttled) {
    auto it = p.clients.find(id);
    if (it != p.clients.end()) it->second->Nudge();
  }
}

}  // namespace testpool::proxy
