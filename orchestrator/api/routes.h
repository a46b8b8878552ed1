// The HTTP API's one route table.
//
// Every route the server answers is one row here: its method, the scope a bearer token needs to
// call it (api/auth.h; only when the daemon has tokens), the OpenAPI path template it is
// documented under, the cpp-httplib regex that matches it (one capture group per path parameter,
// in order), the largest body it accepts, and its handler. ApiServer registers exactly these rows
// and nothing else; /openapi.json (api/openapi.h) must describe exactly these rows, and a test
// compares the two in both directions.
//
// Handlers run on the server's worker threads, concurrently: they may only use the Services they
// are given (all thread-safe). They throw testpool::Error for every failure; the server turns it
// into the JSON error answer (api/errors.h).
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "orchestrator/api/auth.h"
#include "orchestrator/api/server.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace testpool::api {

// What handlers may use. Every reference outlives the server.
struct Services {
  core::TemplateService& templates;
  core::PoolManager& pools;
  records::RecordPools& records;
  builders::BuildService& builds;
  ServerInfo info;
};

using Handler = void (*)(const Services& services, const httplib::Request& req, httplib::Response& res);

struct Route {
  std::string_view method;       // "GET", "PUT", "POST" or "DELETE"
  Scope scope;                   // kOpen: no token needed; kWorker; kAdmin (defines code run as superuser)
  std::string_view path;         // OpenAPI path template, e.g. "/v1/leases/{id}"
  std::string_view pattern;      // the regex cpp-httplib matches against the decoded path
  std::size_t max_body_bytes;    // a larger body is refused with 413 before the handler runs
  Handler handler;
};

// Bodies of the lease, record pool, claim and build routes (a few small fields) and of a template
// definition (its SQL).
inline constexpr std::size_t kMaxSmallBodyBytes = 64u << 10;
inline constexpr std::size_t kMaxTemplateBodyBytes = 96u << 20;  // 64 MiB of SQL plus JSON escaping

// The table, in registration order.
const std::vector<Route>& Routes();

// Whether the decoded request path `path` is one `route` documents: `route.path` segment by segment,
// where a "{param}" segment matches any non-empty segment (what the row's regex matches, without
// a regex engine: the access check runs before routing, on every request).
bool PathMatches(const Route& route, std::string_view path);
// The same against a path template of its own (IntegreSQL's routes).
bool PathMatches(std::string_view path_template, std::string_view path);

}  // namespace testpool::api
