#include "orchestrator/proxy/server_link.h"

#include "orchestrator/proxy/scram.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::proxy {
namespace {

using asio::use_awaitable;

// Connects `s` (not yet open) to the server.
asio::awaitable<void> Open(Socket& s, const ServerAddress& a) {
  auto ex = co_await asio::this_coro::executor;
  if (!a.host.empty() && a.host[0] == '/') {
    asio::local::stream_protocol::endpoint ep(a.host + "/.s.PGSQL." + std::to_string(a.port));
    co_await s.async_connect(asio::generic::stream_protocol::endpoint(ep), use_awaitable);
    co_return;
  }
  asio::ip::tcp::resolver resolver(ex);
  auto results = co_await resolver.async_resolve(a.host, std::to_string(a.port), use_awaitable);
  boost::system::error_code last = asio::error::host_not_found;
  for (const auto& r : results) {
    boost::system::error_code ec;
    if (s.is_open()) s.close(ec);
    co_await s.async_connect(asio::generic::stream_protocol::endpoint(r.endpoint()),
                             asio::redirect_error(use_awaitable, ec));
    if (!ec) {
      s.set_option(asio::detail::socket_option::boolean<IPPROTO_TCP, TCP_NODELAY>(true));
      co_return;
    }
    last = ec;
  }
  throw boost::system::system_error(last);
}

asio::awaitable<MessageView> Read(Socket& s, FrameReader& reader) {
  char buf[16384];
  for (;;) {
    if (auto m = reader.Next()) co_return *m;
    size_t n = co_await s.async_read_some(asio::buffer(buf), use_awaitable);
    reader.Feed(std::string_view(buf, n));
  }
}

struct LoginState {
  explicit LoginState(const asio::any_io_executor& ex) : sock(ex), timer(ex) {}
  Socket sock;
  asio::steady_timer timer;
  FrameReader reader;
  ServerHello hello;
  bool done = false;
  std::exception_ptr error;
};

// Logs in on st->sock. Everything it touches is in `st`, which outlives it (shared).
asio::awaitable<void> Login(ServerLogin login, std::shared_ptr<LoginState> st) {
  Socket& s = st->sock;
  co_await Open(s, login.address);
  StartupMessage sm;
  sm.protocol = kProtocolV3;
  sm.params = {{"user", login.user}, {"database", login.database}, {"application_name", "testpool_pinned"}};
  const std::string startup = EncodeStartupMessage(sm);
  co_await asio::async_write(s, asio::buffer(startup), use_awaitable);
  std::optional<ScramClient> scram;
  for (;;) {
    MessageView m = co_await Read(s, st->reader);
    switch (m.type) {
      case 'R': {
        Authentication a = ParseAuthentication(m.body);
        std::string reply;
        if (a.code == 0) break;
        if (a.code == 3) {
          reply = MessageBuilder('p').CString(login.password).Finish();
        } else if (a.code == 10) {
          scram.emplace(login.password, MakeScramNonce());
          reply = EncodeSaslInitialResponse("SCRAM-SHA-256", scram->ClientFirst());
        } else if (a.code == 11 && scram) {
          reply = EncodeSaslResponse(scram->HandleServerFirst(a.data));
        } else if (a.code == 12 && scram) {
          scram->VerifyServerFinal(a.data);
          break;
        } else {
          throw Error(
              ErrorCode::kUnavailable,
              "the server asks for an authentication method the proxy does not speak (" + std::to_string(a.code) + ")");
        }
        co_await asio::async_write(s, asio::buffer(reply), use_awaitable);
        break;
      }
      case 'S': {
        ParameterStatus ps = ParseParameterStatus(m.body);
        st->hello.parameters.emplace_back(ps.name, ps.value);
        break;
      }
      case 'K': {
        BackendKeyData k = ParseBackendKeyData(m.body);
        st->hello.pid = k.pid;
        st->hello.key = k.key;
        break;
      }
      case 'E': {
        Fields f = ParseFields(m.body);
        throw Error(ErrorCode::kUnavailable,
                    "the server refused the pinned session's login: " + std::string(f.Get('M')));
      }
      case 'N':
        break;
      case 'Z':
        co_return;
      default:
        throw Error(ErrorCode::kUnavailable, std::string("unexpected message '") + m.type + "' during login");
    }
  }
}

}  // namespace

asio::awaitable<Socket> ConnectServer(ServerLogin login, ServerHello* hello, FrameReader* reader,
                                      std::chrono::milliseconds timeout) {
  auto ex = co_await asio::this_coro::executor;
  auto st = std::make_shared<LoginState>(ex);
  st->timer.expires_after(timeout);
  asio::co_spawn(
      ex,
      [login, st]() -> asio::awaitable<void> {
        try {
          co_await Login(login, st);
        } catch (...) {
          st->error = std::current_exception();
        }
        st->done = true;
        st->timer.cancel();
      },
      asio::detached);
  boost::system::error_code ec;
  co_await st->timer.async_wait(asio::redirect_error(use_awaitable, ec));
  if (!st->done) {
    boost::system::error_code ignored;
    st->sock.close(ignored);  // the login coroutine fails out on its own
    throw Error(ErrorCode::kTimeout,
                "logging in to the server took longer than " + std::to_string(timeout.count()) + " ms");
  }
  if (st->error) {
    try {
      std::rethrow_exception(st->error);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorCode::kUnavailable, std::string("cannot open the pinned session: ") + e.what());
    }
  }
  *hello = std::move(st->hello);
  *reader = std::move(st->reader);
  co_return std::move(st->sock);
}

asio::awaitable<void> SendCancel(ServerAddress address, int32_t pid, int32_t key) {
  try {
    auto ex = co_await asio::this_coro::executor;
    Socket s(ex);
    co_await Open(s, address);
    const std::string request = EncodeCancelRequest(CancelRequest{pid, key});
    co_await asio::async_write(s, asio::buffer(request), use_awaitable);
    char buf[1];
    boost::system::error_code ec;
    co_await s.async_read_some(asio::buffer(buf), asio::redirect_error(use_awaitable, ec));  // the server closes
  } catch (const std::exception& e) {
    log::Warn("proxy.cancel_failed", {{"pid", std::to_string(pid)}, {"error", e.what()}});
  }
}

}  // namespace testpool::proxy
