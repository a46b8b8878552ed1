#include "orchestrator/api/routes.h"

#include "orchestrator/api/handlers.h"

namespace testpool::api {

const std::vector<Route>& Routes() {
  static const std::vector<Route> routes = {
      // method   OpenAPI path                     regex                                  body limit
      {"GET",    "/healthz",                      "/healthz",                            kMaxSmallBodyBytes, Healthz},
      {"GET",    "/openapi.json",                 R"(/openapi\.json)",                   kMaxSmallBodyBytes, GetOpenApi},
      {"GET",    "/metrics",                      "/metrics",                            kMaxSmallBodyBytes, GetMetrics},
      {"GET",    "/v1/status",                    "/v1/status",                          kMaxSmallBodyBytes, GetStatus},
      {"GET",    "/v1/templates",                 "/v1/templates",                       kMaxSmallBodyBytes, ListTemplates},
      {"PUT",    "/v1/templates/{name}",          R"(/v1/templates/([^/]+))",            kMaxTemplateBodyBytes, PutTemplate},
      {"GET",    "/v1/templates/{name}",          R"(/v1/templates/([^/]+))",            kMaxSmallBodyBytes, GetTemplate},
      {"DELETE", "/v1/templates/{name}",          R"(/v1/templates/([^/]+))",            kMaxSmallBodyBytes, DeleteTemplate},
      {"POST",   "/v1/templates/{name}/leases",   R"(/v1/templates/([^/]+)/leases)",     kMaxSmallBodyBytes, CreateLease},
      {"GET",    "/v1/leases/{id}",               R"(/v1/leases/([^/]+))",               kMaxSmallBodyBytes, GetLease},
      {"DELETE", "/v1/leases/{id}",               R"(/v1/leases/([^/]+))",               kMaxSmallBodyBytes, ReleaseLease},
      {"POST",   "/v1/leases/{id}/renew",         R"(/v1/leases/([^/]+)/renew)",         kMaxSmallBodyBytes, RenewLease},
      {"POST",   "/v1/leases/{id}/reset",         R"(/v1/leases/([^/]+)/reset)",         kMaxSmallBodyBytes, ResetLease},
      {"GET",    "/v1/record-pools",              "/v1/record-pools",                    kMaxSmallBodyBytes, ListRecordPools},
      {"PUT",    "/v1/record-pools/{name}",       R"(/v1/record-pools/([^/]+))",         kMaxSmallBodyBytes, PutRecordPool},
      {"GET",    "/v1/record-pools/{name}",       R"(/v1/record-pools/([^/]+))",         kMaxSmallBodyBytes, GetRecordPool},
      {"DELETE", "/v1/record-pools/{name}",       R"(/v1/record-pools/([^/]+))",         kMaxSmallBodyBytes, DropRecordPool},
      {"POST",   "/v1/record-pools/{name}/claims", R"(/v1/record-pools/([^/]+)/claims)", kMaxSmallBodyBytes, CreateClaim},
      {"DELETE", "/v1/claims/{id}",               R"(/v1/claims/([^/]+))",               kMaxSmallBodyBytes, ReleaseClaim},
      {"POST",   "/v1/claims/{id}/renew",         R"(/v1/claims/([^/]+)/renew)",         kMaxSmallBodyBytes, RenewClaim},
      {"GET",    "/v1/recipes",                   "/v1/recipes",                         kMaxSmallBodyBytes, ListRecipes},
      {"POST",   "/v1/leases/{id}/build",         R"(/v1/leases/([^/]+)/build)",         kMaxSmallBodyBytes, BuildInLease},
      {"POST",   "/v1/builds",                    "/v1/builds",                          kMaxSmallBodyBytes, BuildInDsn},
      {"DELETE", "/v1/namespaces/{ns}",           R"(/v1/namespaces/([^/]+))",           kMaxSmallBodyBytes, DropNamespace},
  };
  return routes;
}

}  // namespace testpool::api
