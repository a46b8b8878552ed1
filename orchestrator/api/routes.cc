#include "orchestrator/api/routes.h"

#include "orchestrator/api/handlers.h"

namespace testpool::api {

const std::vector<Route>& Routes() {
  static const std::vector<Route> routes = {
      // method   scope           OpenAPI path                     regex                                  body limit
      {"GET",    Scope::kOpen,   "/healthz",                      "/healthz",                            kMaxSmallBodyBytes, Healthz},
      {"GET",    Scope::kWorker, "/openapi.json",                 R"(/openapi\.json)",                   kMaxSmallBodyBytes, GetOpenApi},
      {"GET",    Scope::kWorker, "/metrics",                      "/metrics",                            kMaxSmallBodyBytes, GetMetrics},
      {"GET",    Scope::kWorker, "/v1/status",                    "/v1/status",                          kMaxSmallBodyBytes, GetStatus},
      {"GET",    Scope::kWorker, "/v1/templates",                 "/v1/templates",                       kMaxSmallBodyBytes, ListTemplates},
      {"PUT",    Scope::kAdmin,  "/v1/templates/{name}",          R"(/v1/templates/([^/]+))",            kMaxTemplateBodyBytes, PutTemplate},
      {"GET",    Scope::kWorker, "/v1/templates/{name}",          R"(/v1/templates/([^/]+))",            kMaxSmallBodyBytes, GetTemplate},
      {"DELETE", Scope::kAdmin,  "/v1/templates/{name}",          R"(/v1/templates/([^/]+))",            kMaxSmallBodyBytes, DeleteTemplate},
      {"POST",   Scope::kWorker, "/v1/templates/{name}/leases",   R"(/v1/templates/([^/]+)/leases)",     kMaxSmallBodyBytes, CreateLease},
      {"GET",    Scope::kWorker, "/v1/leases/{id}",               R"(/v1/leases/([^/]+))",               kMaxSmallBodyBytes, GetLease},
      {"DELETE", Scope::kWorker, "/v1/leases/{id}",               R"(/v1/leases/([^/]+))",               kMaxSmallBodyBytes, ReleaseLease},
      {"POST",   Scope::kWorker, "/v1/leases/{id}/renew",         R"(/v1/leases/([^/]+)/renew)",         kMaxSmallBodyBytes, RenewLease},
      {"POST",   Scope::kWorker, "/v1/leases/{id}/reset",         R"(/v1/leases/([^/]+)/reset)",         kMaxSmallBodyBytes, ResetLease},
      {"POST",   Scope::kWorker, "/v1/leases/{id}/checkpoints",   R"(/v1/leases/([^/]+)/checkpoints)",   kMaxSmallBodyBytes, CreateCheckpoint},
      {"GET",    Scope::kWorker, "/v1/record-pools",              "/v1/record-pools",                    kMaxSmallBodyBytes, ListRecordPools},
      {"PUT",    Scope::kAdmin,  "/v1/record-pools/{name}",       R"(/v1/record-pools/([^/]+))",         kMaxSmallBodyBytes, PutRecordPool},
      {"GET",    Scope::kWorker, "/v1/record-pools/{name}",       R"(/v1/record-pools/([^/]+))",         kMaxSmallBodyBytes, GetRecordPool},
      {"DELETE", Scope::kAdmin,  "/v1/record-pools/{name}",       R"(/v1/record-pools/([^/]+))",         kMaxSmallBodyBytes, DropRecordPool},
      {"POST",   Scope::kWorker, "/v1/record-pools/{name}/claims", R"(/v1/record-pools/([^/]+)/claims)", kMaxSmallBodyBytes, CreateClaim},
      {"DELETE", Scope::kWorker, "/v1/claims/{id}",               R"(/v1/claims/([^/]+))",               kMaxSmallBodyBytes, ReleaseClaim},
      {"POST",   Scope::kWorker, "/v1/claims/{id}/renew",         R"(/v1/claims/([^/]+)/renew)",         kMaxSmallBodyBytes, RenewClaim},
      {"GET",    Scope::kWorker, "/v1/recipes",                   "/v1/recipes",                         kMaxSmallBodyBytes, ListRecipes},
      {"POST",   Scope::kWorker, "/v1/leases/{id}/build",         R"(/v1/leases/([^/]+)/build)",         kMaxSmallBodyBytes, BuildInLease},
      {"POST",   Scope::kWorker, "/v1/builds",                    "/v1/builds",                          kMaxSmallBodyBytes, BuildInDsn},
      {"DELETE", Scope::kWorker, "/v1/namespaces/{ns}",           R"(/v1/namespaces/([^/]+))",           kMaxSmallBodyBytes, DropNamespace},
  };
  return routes;
}

bool PathMatches(const Route& route, std::string_view path) { return PathMatches(route.path, path); }

bool PathMatches(std::string_view tmpl, std::string_view path) {
  while (!tmpl.empty() && !path.empty()) {
    if (tmpl.front() != '/' || path.front() != '/') return false;
    tmpl.remove_prefix(1);
    path.remove_prefix(1);
    const std::string_view want = tmpl.substr(0, tmpl.find('/'));
    const std::string_view got = path.substr(0, path.find('/'));
    const bool param = want.size() >= 2 && want.front() == '{' && want.back() == '}';
    if (param ? got.empty() : want != got) return false;
    tmpl.remove_prefix(want.size());
    path.remove_prefix(got.size());
  }
  return tmpl.empty() && path.empty();
}

}  // namespace testpool::api
