#include "orchestrator/api/server.h"

#include <httplib.h>

#include <chrono>
#include <vector>

#include "orchestrator/api/errors.h"
#include "orchestrator/api/handlers.h"
#include "orchestrator/api/http_front.h"
#include "orchestrator/api/integresql_routes.h"
#include "orchestrator/api/routes.h"
#include "orchestrator/util/log.h"

namespace testpool::api {
namespace {

using nlohmann::json;

std::string Size(size_t bytes) {
  return bytes >= (1u << 20) ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes >> 10) + " KiB";
}

// cpp-httplib's parser and router, driven by HttpFront: process_request is what its own
// connection loop calls for each request.
class Router : public httplib::Server {
 public:
  bool Process(httplib::Stream& stream, bool close_connection, bool& connection_closed,
               const std::function<void(httplib::Request&)>& setup) {
    return process_request(stream, close_connection, connection_closed, setup);
  }
};

}  // namespace

struct ApiServer::Impl {
  Impl(core::TemplateService& t, core::PoolManager& p, records::RecordPools& r, builders::BuildService& b, ServerInfo i,
       ApiServerOptions o)
      : services{t, p, r, b, std::move(i)},
        access(std::move(o.access)),
        integresql(o.integresql),
        integresql_only(o.integresql_only),
        front(o.http, [this](httplib::Stream& s, bool close, bool& closed, const std::function<void(httplib::Request&)>& setup) {
          return http.Process(s, close, closed, setup);
        }) {}

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

  // Wraps an IntegreSQL route (api/integresql_routes.h): its errors answer in IntegreSQL's shape.
  httplib::Server::Handler WrapIntegresql(const IntegresqlRoute& route) {
    return [this, &route](const httplib::Request& req, httplib::Response& res) {
      auto t0 = std::chrono::steady_clock::now();
      if (req.body.size() > kMaxSmallBodyBytes) {
        res.status = kHttpPayloadTooLarge;
        res.set_content(R"({"message":"request body too large"})", "application/json");
      } else {
        RunIntegresqlRoute(route, *integresql, req, res);
      }
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      log::Info("http.request", {{"method", req.method}, {"path", req.path}, {"status", std::to_string(res.status)},
                                 {"ms", log::Ms(ms)}});
    };
  }

  template <typename Wrapped>
  void Add(std::string_view method, const std::string& pattern, Wrapped handler) {
    if (method == "GET") http.Get(pattern, handler);
    else if (method == "PUT") http.Put(pattern, handler);
    else if (method == "POST") http.Post(pattern, handler);
    else if (method == "DELETE") http.Delete(pattern, handler);
  }

  void Register() {
    if (!integresql_only) {
      for (const Route& route : Routes()) Add(route.method, std::string(route.pattern), Wrap(route));
    }
    if (integresql != nullptr) {
      for (const IntegresqlRoute& route : IntegresqlRoutes()) {
        Add(route.method, std::string(route.pattern), WrapIntegresql(route));
      }
    }

    http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      // Access first: a refused request is answered before its body is read (and its connection
      // then closes), whatever it announced.
      if (access && access->enabled() && !Allowed(req, res)) {
        if (req.get_header_value<uint64_t>("Content-Length") > 0 || req.has_header("Transfer-Encoding")) {
          res.set_header("Connection", "close");
        }
        return httplib::Server::HandlerResponse::Handled;
      }
      // A request with neither Content-Length nor Transfer-Encoding has no body (RFC 9112 §6.3),
      // which is what `curl -X POST URL` sends. Debian's cpp-httplib (0.11) instead reads such a
      // POST, PUT or DELETE until the client closes. This hook runs before the body is read: it
      // states the empty body explicitly. (The Request object is not const; httplib only hands it
      // to the hook as const.)
      if (!req.has_header("Content-Length") && !req.has_header("Transfer-Encoding")) {
        const_cast<httplib::Request&>(req).set_header("Content-Length", "0");
      }
      // A body announced larger than any route takes is refused before a byte of it is read
      // (cpp-httplib would read and discard all of it first). The connection then closes.
      if (req.get_header_value<uint64_t>("Content-Length") > kMaxTemplateBodyBytes) {
        Reply(res, kHttpPayloadTooLarge,
              ErrorBody(Error(ErrorCode::kInvalidArgument, "request body larger than " + Size(kMaxTemplateBodyBytes))));
        res.set_header("Connection", "close");
        return httplib::Server::HandlerResponse::Handled;
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

  // The scope `req` needs: its route's (the first row whose method and pattern match, as the
  // router picks it), or kWorker for a path no route matches (no token, no 404: unknown
  // clients learn nothing about the routes).
  Scope Needed(const httplib::Request& req) const {
    const std::string_view method = req.method == "HEAD" ? std::string_view("GET") : std::string_view(req.method);
    for (const Route& route : Routes()) {
      if (route.method == method && PathMatches(route, req.path)) return route.scope;
    }
    if (integresql != nullptr && req.path.rfind("/api/", 0) == 0) {
      std::string_view path = req.path;
      if (path.size() > 1 && path.back() == '/') path.remove_suffix(1);  // IntegreSQL's routes take one
      for (const IntegresqlRoute& route : IntegresqlRoutes()) {
        if (route.method == method && PathMatches(route.path, path)) return route.scope;
      }
    }
    return Scope::kWorker;
  }

  // Whether the request's token allows its route; if not, `res` is the 401 or 403 answer.
  bool Allowed(const httplib::Request& req, httplib::Response& res) const {
    const Scope needed = Needed(req);
    if (needed == Scope::kOpen) return true;
    const std::optional<Scope> granted = access->Grant(req.get_header_value("Authorization"));
    if (granted && (needed != Scope::kAdmin || *granted == Scope::kAdmin)) return true;
    if (!granted) {
      ReplyError(res, Error(ErrorCode::kUnauthorized,
                            req.has_header("Authorization")
                                ? "the bearer token is not valid for this daemon (or not in the form 'Bearer <token>')"
                                : "this daemon requires a bearer token (Authorization: Bearer <token>; the CLI reads "
                                  "$TESTPOOL_TOKEN)"));
      res.set_header("WWW-Authenticate", "Bearer realm=\"testpool\"");
    } else {
      ReplyError(res, Error(ErrorCode::kForbidden, req.method + " " + req.path +
                                                       " needs an admin token (serve --admin-token-file): defining "
                                                       "or dropping templates and record pools runs code as a superuser"));
    }
    log::Info("http.refused", {{"method", req.method}, {"path", req.path}, {"status", std::to_string(res.status)},
                               {"remote", req.remote_addr}});
    return false;
  }

  const Services services;
  const std::shared_ptr<const AccessControl> access;  // null: every route open
  integresql::Service* const integresql;              // null: no IntegreSQL API
  const bool integresql_only;
  Router http;       // parses and routes; never listens itself
  HttpFront front;   // sockets, deadlines, worker threads
};

ApiServer::ApiServer(core::TemplateService& templates, core::PoolManager& pools, records::RecordPools& records,
                     builders::BuildService& builds, ServerInfo info, ApiServerOptions options)
    : impl_(std::make_unique<Impl>(templates, pools, records, builds, std::move(info), std::move(options))) {
  impl_->http.set_payload_max_length(kMaxTemplateBodyBytes);  // the largest any route accepts
  // Only for the Keep-Alive header cpp-httplib writes: the front closes idle connections.
  impl_->http.set_keep_alive_timeout(impl_->front.limits().idle_timeout.count());
  impl_->http.set_keep_alive_max_count(1000000);
  impl_->Register();
}

ApiServer::~ApiServer() { Stop(); }

int ApiServer::Bind(const std::string& host, int port) { return impl_->front.Bind(host, port); }

void ApiServer::Run() { impl_->front.Run(); }

void ApiServer::Stop() { impl_->front.Stop(); }

std::size_t ApiServer::InProgress() const { return impl_->front.InProgress(); }

}  // namespace testpool::api
