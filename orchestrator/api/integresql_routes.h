// IntegreSQL's REST API (v1) on testpool (issue 15; integresql/service.h says what each call
// means here). The routes answer under /api/v1, with or without a trailing slash, on the daemon's
// own listener and, with `serve --integresql-listen ADDR`, on a listener of their own. They are
// not part of /openapi.json: they are IntegreSQL's contract, not testpool's, and answer errors
// the way IntegreSQL's clients read them: {"message": "…"} with IntegreSQL's status codes
// (400 bad input, 404 unknown template or test database, 410 discarded, 423 initialised already
// or in use, 503 draining or the server down, 507 no database free in time, 500 otherwise).
//
// Handlers run on the server's worker threads, concurrently; the Service is thread-safe.
#pragma once

#include <string_view>
#include <vector>

#include "orchestrator/api/auth.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace testpool::integresql {
class Service;
}

namespace testpool::api {

struct IntegresqlRoute {
  std::string_view method;
  Scope scope;               // on the daemon's listener (the IntegreSQL listener is open)
  std::string_view path;     // path template for PathMatches (routes.h), without the optional trailing '/'
  std::string_view pattern;  // cpp-httplib regex; captures: hash, then id
  void (*handler)(integresql::Service& service, const httplib::Request& req, httplib::Response& res);
};

// The table, in registration order.
const std::vector<IntegresqlRoute>& IntegresqlRoutes();

// Runs `route` and answers every failure in IntegreSQL's shape.
void RunIntegresqlRoute(const IntegresqlRoute& route, integresql::Service& service, const httplib::Request& req,
                        httplib::Response& res);

}  // namespace testpool::api
