#include "orchestrator/api/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>

#include "orchestrator/api/errors.h"
#include "orchestrator/api/handlers.h"
#include "orchestrator/api/routes.h"
#include "orchestrator/util/log.h"

namespace testpool::api {
namespace {

using nlohmann::json;

// Each request, and each idle keep-alive connection, holds a worker; leases may wait up to
// max_wait for a slot. Sized for a few hundred concurrent clients (idle threads cost little).
constexpr size_t kWorkerThreads = 256;
constexpr int kListenBacklog = 1024;  // the kernel caps it at net.core.somaxconn

std::string Size(size_t bytes) {
  return bytes >= (1u << 20) ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes >> 10) + " KiB";
}

}  // namespace

struct ApiServer::Impl {
  Impl(core::TemplateService& t, core::PoolManager& p, records::RecordPools& r, builders::BuildService& b, ServerInfo i)
      : services{t, p, r, b, std::move(i)} {}

  // Wraps a route: enforces its body limit; every Error becomes its JSON answer, anything else a 500.
  httplib::Server::Handler Wrap(const Route& route) {
    return [this, &route](const httplib::Request& req, httplib::Response& res) {
      auto t0 = std::chrono::steady_clock::now();
      try {
        if (req.body.size() > route.max_body_bytes) {
          Reply(res, kHttpPayloadTooLarge,
                ErrorBody(Error(ErrorCode::kInvalidArgument, "request body larger than " + Size(route.max_body_bytes))));
        } else {
          route.handler(services, req, res);
        }
      } catch (const Error& e) {
        ReplyError(res, e);
      } catch (const json::exception& e) {
        ReplyError(res, Error(ErrorCode::kInvalidArgument, std::string("bad JSON value: ") + e.what()));
      } catch (const std::exception& e) {
        log::Error("http.internal_error", {{"method", req.method}, {"path", req.path}, {"error", e.what()}});
        ReplyError(res, Error(ErrorCode::kInternal, std::string("internal error: ") + e.what()));
      }
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      auto level = (req.method == "GET" && res.status < 500) ? log::Level::kDebug : log::Level::kInfo;
      log::Write(level, "http.request", {{"method", req.method}, {"path", req.path},
                                         {"status", std::to_string(res.status)}, {"ms", log::Ms(ms)}});
    };
  }

  void Register() {
    for (const Route& route : Routes()) {
      const std::string pattern(route.pattern);
      if (route.method == "GET") http.Get(pattern, Wrap(route));
      else if (route.method == "PUT") http.Put(pattern, Wrap(route));
      else if (route.method == "POST") http.Post(pattern, Wrap(route));
      else if (route.method == "DELETE") http.Delete(pattern, Wrap(route));
    }

    // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3), which
    // is what `curl -X POST URL` sends. Debian's cpp-httplib (0.11) instead reads such a POST, PUT or
    // DELETE until the client closes, so it would answer only after the 60 s read timeout. This hook
    // runs before the body is read: it states the empty body explicitly. (The Request object is not
    // const; httplib only hands it to the hook as const.)
    http.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
      if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
        const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
      }
      return httplib::Server::HandlerResponse::Unhandled;
    });

    // Unknown routes and methods, and bodies over the server-wide limit, answer in the API's error
    // shape too.
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;  // a route already answered
      ErrorCode code = res.status == 404 ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument;
      std::string message = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                            : res.status == kHttpPayloadTooLarge ? "request body larger than " + Size(kMaxTemplateBodyBytes)
                                                                 : "bad request (HTTP " + std::to_string(res.status) + ")";
      res.set_content(Dump(ErrorBody(Error(code, message))), "application/json");
    });
  }

  const Services services;
  httplib::Server http;
  int listen_fd = -1;  // the listening socket, once created (set by the socket-options hook)
};

ApiServer::ApiServer(core::TemplateService& templates, core::PoolManager& pools, records::RecordPools& records,
                     builders::BuildService& builds, ServerInfo info)
    : impl_(std::make_unique<Impl>(templates, pools, records, builds, std::move(info))) {
  impl_->http.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  impl_->http.set_payload_max_length(kMaxTemplateBodyBytes);  // the largest any route accepts
  impl_->http.set_read_timeout(std::chrono::seconds(60));
  impl_->http.set_write_timeout(std::chrono::seconds(60));
  impl_->http.set_keep_alive_timeout(5);
  // A keep-alive client (a CI worker's session) keeps its connection: no reconnect every 5 requests.
  impl_->http.set_keep_alive_max_count(1000000);
  // Small JSON answers must not wait for Nagle and the peer's delayed ACK (~40 ms per exchange).
  impl_->http.set_tcp_nodelay(true);
  // Debian's cpp-httplib is a compiled library that listens with a backlog of 5: when 20 CI
  // workers connect at the same moment, the SYNs past the fifth are dropped and each of those
  // clients waits out a 1 s retransmit. Keep the socket (this hook sees it before bind, and
  // replaces the default hook, hence SO_REUSEADDR here) and widen the backlog in Bind().
  impl_->http.set_socket_options([impl = impl_.get()](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    if (impl->listen_fd < 0) impl->listen_fd = sock;
  });
  impl_->Register();
}

ApiServer::~ApiServer() { Stop(); }

int ApiServer::Bind(const std::string& host, int port) {
  int bound = port == 0 ? impl_->http.bind_to_any_port(host) : (impl_->http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    throw Error(ErrorCode::kUnavailable, "cannot listen on " + host + ":" + std::to_string(port) +
                                             " (in use, or not a local address); pick another with --listen");
  }
  int accepting = 0;
  socklen_t len = sizeof accepting;
  if (impl_->listen_fd >= 0 &&
      ::getsockopt(impl_->listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting == 1) {
    ::listen(impl_->listen_fd, kListenBacklog);  // listen() again on a listening socket resizes its queue
  }
  return bound;
}

void ApiServer::Run() { impl_->http.listen_after_bind(); }

void ApiServer::Stop() { impl_->http.stop(); }

}  // namespace testpool::api
