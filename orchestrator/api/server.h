// The HTTP API (v1, DESIGN.md): routes, JSON in and out, errors through api/errors.h.
//
// The routes are the rows of api/routes.h (the same table /openapi.json describes).
//
// Access: with tokens (ApiServerOptions::access), a request for any route but the open ones
// without a valid `Authorization: Bearer` token is answered 401 `unauthorized` (with
// `WWW-Authenticate: Bearer`), and a worker token on an admin route 403 `forbidden` — both before
// the request's body is read, in one place (the server's pre-routing hook).
//
// Bind() then Run() (blocks) on one thread; Stop() from any thread makes Run() return, once the
// requests in progress are answered. Connections are held by api/http_front.h: idle and half-sent
// ones by one I/O thread, against deadlines; a request whose head has arrived is served by a
// worker thread, and one that waits (a template build with wait, a lease waiting for a free slot,
// a claim waiting for a free row, a large build) holds its worker, so the workers are sized for
// concurrent requests, not for cores.
#pragma once

#include <memory>
#include <string>

#include "orchestrator/api/auth.h"
#include "orchestrator/api/http_front.h"
#include "orchestrator/builders/builders.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/records/record_pools.h"
#include "orchestrator/core/template_service.h"

namespace testpool::integresql {
class Service;
}

namespace testpool::api {

struct ServerInfo {
  std::string backend;     // "local", "external"
  std::string daemon_id;
};

struct ApiServerOptions {
  HttpLimits http;  // connections: timeouts, sizes, workers (api/http_front.h)
  // The valid bearer tokens (api/auth.h); null, or one not enabled(): every route is open.
  // Shared so that its owner may Replace() the tokens while the server runs.
  std::shared_ptr<const AccessControl> access;
  // IntegreSQL's API (api/integresql_routes.h) under /api/v1, when set; must outlive the server.
  integresql::Service* integresql = nullptr;
  // Serve IntegreSQL's API alone (`serve --integresql-listen`): none of testpool's own routes.
  bool integresql_only = false;
};

class ApiServer {
 public:
  // `templates`, `pools`, `records` and `builds` must outlive the server (and stay usable until
  // Run() returned).
  ApiServer(core::TemplateService& templates, core::PoolManager& pools, records::RecordPools& records,
            builders::BuildService& builds, ServerInfo info, ApiServerOptions options = {});
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds `host`:`port` (port 0: any free port). Throws Error(kUnavailable) when it cannot.
  // Returns the bound port.
  int Bind(const std::string& host, int port);
  // Serves until Stop(). Call after Bind().
  void Run();
  void Stop();
  // Requests being handled now (HttpFront::InProgress), from any thread: the daemon's drain waits
  // for 0 before Stop().
  std::size_t InProgress() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::api
