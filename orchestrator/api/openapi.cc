#include "orchestrator/api/openapi.h"

#include <cctype>
#include <string>

#include "orchestrator/api/handlers.h"
#include "orchestrator/api/request_bodies.h"
#include "orchestrator/api/routes.h"

namespace testpool::api {
namespace {

using nlohmann::json;

// The answers' shapes (data, so written as JSON). The request bodies' schemas are generated from
// their tables in request_bodies.cc, the same tables the parsers read them with.
constexpr const char* kSchemas = R"json({
  "Error": {
    "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
      "code": {"type": "string"},
      "message": {"type": "string"},
      "details": {"type": "object", "additionalProperties": {"type": "string"},
                  "description": "structured facts, e.g. a failed migration's file, line, sqlstate"}}}}
  },
  "Health": {
    "type": "object", "required": ["status"],
    "properties": {"status": {"type": "string", "enum": ["ok"]}, "backend": {"type": "string"},
                   "daemon": {"type": "string"}, "version": {"type": "string"}}
  },
  "TemplatePutResult": {
    "type": "object", "required": ["name", "hash", "state", "database", "built", "files"],
    "properties": {"name": {"type": "string"}, "hash": {"type": "string"},
                   "state": {"type": "string", "enum": ["ready", "building"]}, "database": {"type": "string"},
                   "built": {"type": "boolean"}, "files": {"type": "integer"}, "build_ms": {"type": "number"}}
  },
  "BuildProgress": {
    "type": "object",
    "properties": {"hash": {"type": "string"},
                   "state": {"type": "string", "enum": ["waiting", "building", "ready", "failed"]},
                   "step": {"type": "integer"}, "of": {"type": "integer"},
                   "steps": {"type": "array", "items": {"type": "object", "properties": {
                     "file": {"type": "string"}, "ms": {"type": "number"}}}},
                   "built": {"type": "boolean"}, "build_ms": {"type": "number"},
                   "error": {"type": "object"}}
  },
  "Build": {
    "type": "object",
    "properties": {"hash": {"type": "string"}, "state": {"type": "string", "enum": ["building", "ready", "failed"]},
                   "database": {"type": "string"}, "current": {"type": "boolean"},
                   "migrations": {"type": "array", "items": {"type": "object"}},
                   "seed": {"type": "array", "items": {"type": "object"}}, "builds": {"type": "integer"},
                   "created_at": {"type": "string"}, "build_ms": {"type": "number"}, "built_at": {"type": "string"},
                   "error": {"type": "object"}}
  },
  "Template": {
    "type": "object", "required": ["name"],
    "properties": {"name": {"type": "string"}, "hash": {"type": "string"}, "state": {"type": "string"},
                   "database": {"type": "string"}, "build_ms": {"type": "number"}, "error": {"type": "object"},
                   "pool": {"$ref": "#/components/schemas/PoolConfig"}, "recycle": {"type": "string"},
                   "updated_at": {"type": "string"}, "build": {"$ref": "#/components/schemas/BuildProgress"},
                   "builds": {"type": "array", "items": {"$ref": "#/components/schemas/Build"}}}
  },
  "TemplateList": {
    "type": "object", "required": ["templates"],
    "properties": {"templates": {"type": "array", "items": {"$ref": "#/components/schemas/Template"}}}
  },
  "DropResult": {
    "type": "object", "required": ["name", "dropped"],
    "properties": {"name": {"type": "string"}, "dropped": {"type": "array", "items": {"type": "string"}}}
  },
  "Lease": {
    "type": "object",
    "required": ["id", "dsn", "host", "port", "user", "password", "database", "token", "expires_at", "created_at",
                 "holder", "template", "hash", "slot", "state", "wait_ms"],
    "properties": {
      "id": {"type": "string", "pattern": "^[a-z2-7]{1,64}$"},
      "dsn": {"type": "string", "example": "postgresql://tp_r_x_1:secret@127.0.0.1:5432/tp_s_3f2a9c1b2d4e_x"},
      "host": {"type": "string"}, "port": {"type": "integer"}, "user": {"type": "string"},
      "password": {"type": "string"}, "database": {"type": "string"},
      "token": {"type": "integer", "format": "int64", "description": "fencing token: increases per handout of a slot"},
      "expires_at": {"type": "string", "format": "date-time", "example": "2026-11-24T21:30:00.123Z"},
      "created_at": {"type": "string", "format": "date-time"},
      "holder": {"type": "string"}, "template": {"type": "string"}, "hash": {"type": "string"},
      "slot": {"type": "string"}, "state": {"type": "string", "enum": ["active", "released", "expired"]},
      "wait_ms": {"type": "number"}}
  },
  "Checkpoint": {
    "type": "object", "required": ["lease", "name", "mode", "ms", "checkpoints"],
    "properties": {
      "lease": {"type": "string"}, "name": {"type": "string"},
      "mode": {"type": "string", "enum": ["clone", "rollback"]},
      "ms": {"type": "number", "description": "how long saving it took"},
      "checkpoints": {"type": "array", "items": {"type": "string"}, "description": "the lease's checkpoints, oldest first"}}
  },
  "RecordPool": {
    "type": "object", "required": ["name", "schema", "table", "key", "match", "rows", "claimed", "expired", "free", "waiting"],
    "properties": {
      "name": {"type": "string"}, "schema": {"type": "string"}, "table": {"type": "string"},
      "key": {"type": "string"},
      "match": {"type": "object", "additionalProperties": {"type": "string"}},
      "lease": {"type": "string", "description": "present when the pool is on a leased database"},
      "dsn": {"type": "string", "description": "present when the pool was given a DSN; its password removed"},
      "rows": {"type": "integer", "format": "int64", "description": "rows that match the pool's filter"},
      "claimed": {"type": "integer", "format": "int64", "description": "live claims"},
      "expired": {"type": "integer", "format": "int64",
                  "description": "claims whose TTL ran out without a release (reclaimable)"},
      "free": {"type": "integer", "format": "int64", "description": "rows - claimed"},
      "waiting": {"type": "integer", "description": "claims waiting in this daemon for a row of the pool"}}
  },
  "RecordPoolList": {
    "type": "object", "required": ["record_pools"],
    "properties": {"record_pools": {"type": "array", "items": {"$ref": "#/components/schemas/RecordPool"}}}
  },
  "Claim": {
    "type": "object", "required": ["id", "pool", "key", "token", "expires_at", "holder", "state"],
    "properties": {
      "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,39}[.][a-z2-7]{1,64}$"},
      "pool": {"type": "string"},
      "key": {"type": "string", "description": "the key column's value, as text"},
      "row": {"type": "object", "description": "the claimed row, column: value (in the answer to a claim)"},
      "token": {"type": "integer", "format": "int64", "description": "fencing token: increases per claim of a key"},
      "expires_at": {"type": "string", "format": "date-time"},
      "holder": {"type": "string"},
      "state": {"type": "string", "enum": ["active", "released", "expired"]},
      "lease": {"type": "string", "description": "present when the claim ends with a lease"}}
  },
  "PoolStatus": {
    "type": "object",
    "properties": {"template": {"type": "string"}, "hash": {"type": "string"}, "current": {"type": "boolean"},
                   "min_ready": {"type": "integer"}, "max": {"type": "integer"}, "warming": {"type": "integer"},
                   "ready": {"type": "integer"}, "leased": {"type": "integer"}, "recycling": {"type": "integer"},
                   "broken": {"type": "integer"}, "waiting": {"type": "integer"},
                   "warm_failures": {"type": "integer", "description": "failed warms in a row (warms in flight together count once); above 0 the pool backs off, 0.2 s doubling to 10 s"},
                   "recycle": {"type": "string", "enum": ["clone", "rollback"]}}
  },
  "DurationSummary": {
    "type": "object",
    "properties": {"count": {"type": "integer"}, "sum_ms": {"type": "number"}, "mean_ms": {"type": "number"}}
  },
  "Status": {
    "type": "object", "required": ["pools", "databases", "max_databases", "counters"],
    "properties": {
      "pools": {"type": "array", "items": {"$ref": "#/components/schemas/PoolStatus"}},
      "databases": {"type": "integer"}, "max_databases": {"type": "integer"},
      "draining": {"type": "boolean", "description": "the daemon got SIGTERM: it takes no new leases and stops once the requests in progress are answered"},
      "counters": {"type": "object", "properties": {
        "leases_granted": {"type": "integer"}, "leases_released": {"type": "integer"},
        "leases_expired": {"type": "integer"}, "leases_exhausted": {"type": "integer"}, "leases_abandoned": {"type": "integer"},
        "recycles_cloned": {"type": "integer"}, "recycles_skipped": {"type": "integer"},
        "recycles_rolled_back": {"type": "integer"},
        "resets": {"type": "integer"}, "resets_skipped": {"type": "integer"}, "slots_broken": {"type": "integer"},
        "lease_wait": {"$ref": "#/components/schemas/DurationSummary"},
        "recycle": {"$ref": "#/components/schemas/DurationSummary"},
        "reset": {"$ref": "#/components/schemas/DurationSummary"}}},
      "proxy": {"type": "object", "properties": {
        "sessions": {"type": "integer"}, "client_connections": {"type": "integer"},
        "connections_total": {"type": "integer"}, "connections_refused": {"type": "integer"},
        "sessions_lost": {"type": "integer"}}}}
  }
})json";

// The builders' answers, merged into kSchemas by Schemas().
constexpr const char* kBuilderSchemas = R"json({
  "BuildResult": {
    "type": "object", "required": ["recipe", "count", "namespace", "seed", "ms", "keys", "counts", "truncated"],
    "properties": {
      "recipe": {"type": "string"}, "count": {"type": "integer"}, "namespace": {"type": "string"},
      "seed": {"type": "integer", "format": "int64", "description": "the seed used: replays the same values"},
      "ms": {"type": "number"},
      "keys": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}},
               "description": "recipe: keys of the rows it created (the referenced recipes' too)"},
      "counts": {"type": "object", "additionalProperties": {"type": "integer"},
                 "description": "recipe: number of rows it created"},
      "truncated": {"type": "boolean",
                    "description": "more than 10000 keys in all: keys holds only the first 100 of each recipe"},
      "lease": {"type": "string", "description": "present when the rows go with a lease"}}
  },
  "NamespaceDropResult": {
    "type": "object", "required": ["namespace", "deleted"],
    "properties": {"namespace": {"type": "string"}, "deleted": {"type": "integer", "format": "int64"}}
  },
  "Recipe": {
    "type": "object", "required": ["name", "table", "schema", "key", "refs", "fields"],
    "properties": {
      "name": {"type": "string"}, "table": {"type": "string"}, "schema": {"type": "string"},
      "key": {"type": "string"},
      "refs": {"type": "array", "items": {"type": "object", "required": ["column", "recipe"], "properties": {
        "column": {"type": "string"}, "recipe": {"type": "string"}}}},
      "fields": {"type": "array", "items": {"type": "string"}, "description": "the generated columns"}}
  },
  "RecipeList": {
    "type": "object", "required": ["recipes"],
    "properties": {"recipes": {"type": "array", "items": {"$ref": "#/components/schemas/Recipe"}}}
  }
})json";

json Ref(const std::string& schema) { return {{"$ref", "#/components/schemas/" + schema}}; }
json Err(const std::string& response) { return {{"$ref", "#/components/responses/" + response}}; }
json JsonContent(const json& schema) { return {{"application/json", {{"schema", schema}}}}; }
json Answer(const std::string& description, const json& schema) {
  return {{"description", description}, {"content", JsonContent(schema)}};
}
json Body(const std::string& schema, bool required) {
  return {{"required", required}, {"content", JsonContent(Ref(schema))}};
}
json PathParam(const std::string& name, const std::string& description, const std::string& pattern) {
  return {{"name", name}, {"in", "path"}, {"required", true}, {"description", description},
          {"schema", {{"type", "string"}, {"pattern", pattern}}}};
}
json QueryFlag(const std::string& name, const std::string& description, bool fallback) {
  return {{"name", name}, {"in", "query"}, {"required", false}, {"description", description},
          {"schema", {{"type", "boolean"}, {"default", fallback}}}};
}
json Op(const std::string& id, const std::string& tag, const std::string& summary, json responses) {
  responses["500"] = Err("Internal");
  return {{"operationId", id}, {"tags", json::array({tag})}, {"summary", summary}, {"responses", responses}};
}

json Schemas() {
  json s = json::parse(kSchemas);
  s.update(json::parse(kBuilderSchemas));
  s.update(RequestSchemas());
  json codes = json::array();
  for (ErrorCode c : {ErrorCode::kInvalidArgument, ErrorCode::kInvalidName, ErrorCode::kUnauthorized,
                      ErrorCode::kForbidden, ErrorCode::kNotFound, ErrorCode::kConflict,
                      ErrorCode::kMigrationFailed, ErrorCode::kPoolExhausted, ErrorCode::kDraining, ErrorCode::kLeaseExpired,
                      ErrorCode::kUnavailable, ErrorCode::kTimeout, ErrorCode::kBackend, ErrorCode::kInternal}) {
    codes.push_back(std::string(ErrorCodeName(c)));
  }
  s["Error"]["properties"]["error"]["properties"]["code"]["enum"] = codes;
  return s;
}

json Responses() {
  auto error = [](const std::string& description) { return Answer(description, Ref("Error")); };
  json exhausted = error("pool_exhausted: nothing was free within wait_s (try again after Retry-After seconds); "
                         "draining (leases only): the daemon is stopping and takes no new leases (ask again after "
                         "Retry-After seconds, its successor answers); or unavailable: the server cannot be reached");
  exhausted["headers"] = {{"Retry-After", {{"description", "seconds to wait before asking again (pool_exhausted, draining)"},
                                           {"schema", {{"type", "integer"}}}}}};
  json unauthorized = error("unauthorized: the daemon has tokens (serve --token-file) and the request carries no "
                            "valid `Authorization: Bearer <token>`");
  unauthorized["headers"] = {{"WWW-Authenticate", {{"description", "Bearer realm=\"testpool\""},
                                                   {"schema", {{"type", "string"}}}}}};
  return {{"BadRequest", error("invalid_argument or invalid_name: the request is malformed (the message names the field)")},
          {"Unauthorized", unauthorized},
          {"Forbidden", error("forbidden: a worker token on a route that needs an admin token")},
          {"NotFound", error("not_found: no such template, lease, record pool, claim, recipe, namespace or endpoint")},
          {"Conflict", error("conflict: the request contradicts the current state")},
          {"Gone", error("lease_expired: the lease (or claim) already ended (released or expired)")},
          {"TooLarge", error("invalid_argument: the body is larger than this route accepts")},
          {"MigrationFailed", error("migration_failed: details name the file, line and SQLSTATE")},
          {"Internal", error("internal: a bug or an unexpected server answer")},
          {"Backend", error("backend_error: the backend failed")},
          {"Unavailable", exhausted},
          {"Timeout", error("timeout: an operation ran out of time")}};
}

// /v1/record-pools… and /v1/claims/{id}….
void RecordPaths(json& p) {
  const json name = PathParam("name", "record pool name", "^[a-z][a-z0-9_]{0,39}$");
  const json id = PathParam("id", "claim id: <pool name>.<token>", "^[a-z][a-z0-9_]{0,39}[.][a-z2-7]{1,64}$");
  p["/v1/record-pools"]["get"] = Op("listRecordPools", "records", "Every record pool with its counts",
                                    {{"200", Answer("record pools", Ref("RecordPoolList"))},
                                     {"503", Err("Unavailable")}});
  json put = Op("putRecordPool", "records",
                "Define (or replace) a record pool: a table's rows in a target database, claimed one at a time",
                {{"200", Answer("replaced", Ref("RecordPool"))}, {"201", Answer("created", Ref("RecordPool"))},
                 {"400", Err("BadRequest")}, {"404", Err("NotFound")}, {"413", Err("TooLarge")},
                 {"503", Err("Unavailable")}});
  put["parameters"] = json::array({name});
  put["requestBody"] = Body("RecordPoolDefinition", true);
  p["/v1/record-pools/{name}"]["put"] = put;
  json get = Op("getRecordPool", "records", "One record pool with its counts",
                {{"200", Answer("the record pool", Ref("RecordPool"))}, {"400", Err("BadRequest")},
                 {"404", Err("NotFound")}, {"503", Err("Unavailable")}});
  get["parameters"] = json::array({name});
  p["/v1/record-pools/{name}"]["get"] = get;
  json drop = Op("deleteRecordPool", "records",
                 "Forget a record pool (the claim rows stay in the target database)",
                 {{"204", {{"description", "dropped"}}}, {"400", Err("BadRequest")}, {"404", Err("NotFound")},
                  {"503", Err("Unavailable")}});
  drop["parameters"] = json::array({name});
  p["/v1/record-pools/{name}"]["delete"] = drop;

  json claim = Op("createClaim", "records", "Claim one free matching row of the pool, for ttl_s seconds",
                  {{"201", Answer("the claim: the row, its key, a fencing token, expiry", Ref("Claim"))},
                   {"400", Err("BadRequest")}, {"404", Err("NotFound")}, {"413", Err("TooLarge")},
                   {"503", Err("Unavailable")}});
  claim["parameters"] = json::array({name});
  claim["requestBody"] = Body("ClaimRequest", false);
  p["/v1/record-pools/{name}/claims"]["post"] = claim;
  json release = Op("releaseClaim", "records", "End the claim; idempotent (releasing again is also 204)",
                    {{"204", {{"description", "released"}}}, {"404", Err("NotFound")}, {"503", Err("Unavailable")}});
  release["parameters"] = json::array({id});
  p["/v1/claims/{id}"]["delete"] = release;
  json renew = Op("renewClaim", "records", "Extend the claim: it then expires ttl_s from now",
                  {{"200", Answer("the claim with its new expires_at", Ref("Claim"))}, {"400", Err("BadRequest")},
                   {"404", Err("NotFound")}, {"410", Err("Gone")}, {"413", Err("TooLarge")},
                   {"503", Err("Unavailable")}});
  renew["parameters"] = json::array({id});
  renew["requestBody"] = Body("ClaimRenewRequest", false);
  p["/v1/claims/{id}/renew"]["post"] = renew;
}

// /v1/recipes, /v1/leases/{id}/build, /v1/builds, /v1/namespaces/{ns}.
void BuilderPaths(json& p) {
  const json id = PathParam("id", "lease id", "^[a-z2-7]{1,64}$");
  const json ns = PathParam("ns", "namespace", "^[a-z0-9_-]{1,40}$");
  p["/v1/recipes"]["get"] = Op("listRecipes", "builders", "The recipes the daemon loaded (serve --recipes)",
                               {{"200", Answer("recipes", Ref("RecipeList"))}});
  json lease = Op("buildInLease", "builders",
                  "Build fresh rows of a recipe (and the rows it refers to) in the lease's database",
                  {{"201", Answer("the keys of the rows created, and the seed used", Ref("BuildResult"))},
                   {"400", Err("BadRequest")}, {"404", Err("NotFound")}, {"410", Err("Gone")},
                   {"413", Err("TooLarge")}, {"503", Err("Unavailable")}});
  lease["parameters"] = json::array({id});
  lease["requestBody"] = Body("LeaseBuildRequest", true);
  p["/v1/leases/{id}/build"]["post"] = lease;
  json dsn = Op("buildInDsn", "builders",
                "Build fresh rows of a recipe in a shared database under a namespace (and optionally a lease)",
                {{"201", Answer("the keys of the rows created, and the seed used", Ref("BuildResult"))},
                 {"400", Err("BadRequest")}, {"404", Err("NotFound")}, {"410", Err("Gone")},
                 {"413", Err("TooLarge")}, {"503", Err("Unavailable")}});
  dsn["requestBody"] = Body("DsnBuildRequest", true);
  p["/v1/builds"]["post"] = dsn;
  json drop = Op("dropNamespace", "builders",
                 "Delete every row built under the namespace, in every shared database it was used in",
                 {{"200", Answer("how many rows were deleted", Ref("NamespaceDropResult"))},
                  {"404", Err("NotFound")}, {"503", Err("Unavailable")}});
  drop["parameters"] = json::array({ns});
  p["/v1/namespaces/{ns}"]["delete"] = drop;
}

json Paths() {
  const json name = PathParam("name", "template name", "^[a-z][a-z0-9_]{0,39}$");
  const json id = PathParam("id", "lease id", "^[a-z2-7]{1,64}$");
  json p;
  p["/healthz"]["get"] = Op("getHealth", "daemon", "Liveness: the daemon answers",
                            {{"200", Answer("alive", Ref("Health"))}});
  p["/openapi.json"]["get"] = Op("getOpenApi", "daemon", "This document",
                                 {{"200", Answer("the OpenAPI 3.0.3 description of the API", {{"type", "object"}})}});
  p["/metrics"]["get"] = Op("getMetrics", "daemon", "Pools, leases and recycling in the Prometheus text format 0.0.4",
                            {{"200", {{"description", "Prometheus text exposition"},
                                      {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}});
  p["/v1/status"]["get"] = Op("getStatus", "leases", "Pools (slots by state, waiting requests) and counters",
                              {{"200", Answer("status", Ref("Status"))}, {"503", Err("Unavailable")}});

  p["/v1/templates"]["get"] = Op("listTemplates", "templates", "Every template with its current hash and pool",
                                 {{"200", Answer("templates", Ref("TemplateList"))}, {"503", Err("Unavailable")}});
  json put = Op("putTemplate", "templates", "Define a template; builds it unless that hash is built",
                {{"200", Answer("already built (same hash: no rebuild)", Ref("TemplatePutResult"))},
                 {"201", Answer("built by this request", Ref("TemplatePutResult"))},
                 {"202", Answer("building (wait=false); follow it with GET", Ref("TemplatePutResult"))},
                 {"400", Err("BadRequest")}, {"409", Err("Conflict")}, {"413", Err("TooLarge")},
                 {"422", Err("MigrationFailed")}, {"502", Err("Backend")}, {"503", Err("Unavailable")},
                 {"504", Err("Timeout")}});
  put["parameters"] = json::array({name, QueryFlag("wait", "wait for the build to end", true)});
  put["requestBody"] = Body("TemplateDefinition", true);
  p["/v1/templates/{name}"]["put"] = put;
  json get = Op("getTemplate", "templates", "One template: current build, pool, progress and every build",
                {{"200", Answer("the template", Ref("Template"))}, {"400", Err("BadRequest")},
                 {"404", Err("NotFound")}});
  get["parameters"] = json::array({name});
  p["/v1/templates/{name}"]["get"] = get;
  json drop = Op("deleteTemplate", "templates", "Drop a template (or only its old hashes)",
                 {{"200", Answer("what was dropped", Ref("DropResult"))}, {"400", Err("BadRequest")},
                  {"404", Err("NotFound")}, {"409", Err("Conflict")}});
  drop["parameters"] = json::array({name, QueryFlag("old_only", "keep the current hash", false)});
  p["/v1/templates/{name}"]["delete"] = drop;

  json lease = Op("createLease", "leases", "Lease a database cloned from the template",
                  {{"201", Answer("the lease: DSN, credentials, fencing token, expiry", Ref("Lease"))},
                   {"400", Err("BadRequest")}, {"404", Err("NotFound")}, {"413", Err("TooLarge")},
                   {"503", Err("Unavailable")}});
  lease["parameters"] = json::array({name});
  lease["requestBody"] = Body("LeaseRequest", false);
  p["/v1/templates/{name}/leases"]["post"] = lease;

  json get_lease = Op("getLease", "leases", "One lease (also one that ended, for a while)",
                      {{"200", Answer("the lease", Ref("Lease"))}, {"404", Err("NotFound")}});
  get_lease["parameters"] = json::array({id});
  p["/v1/leases/{id}"]["get"] = get_lease;
  json release = Op("releaseLease", "leases", "End the lease; idempotent (releasing again is also 204)",
                    {{"204", {{"description", "released"}}}, {"404", Err("NotFound")}, {"503", Err("Unavailable")}});
  release["parameters"] = json::array({id});
  p["/v1/leases/{id}"]["delete"] = release;
  json renew = Op("renewLease", "leases", "Extend the lease: it then expires ttl_s from now",
                  {{"200", Answer("the lease with its new expires_at", Ref("Lease"))}, {"400", Err("BadRequest")},
                   {"404", Err("NotFound")}, {"410", Err("Gone")}, {"413", Err("TooLarge")},
                   {"503", Err("Unavailable")}});
  renew["parameters"] = json::array({id});
  renew["requestBody"] = Body("RenewRequest", false);
  p["/v1/leases/{id}/renew"]["post"] = renew;
  json reset = Op("resetLease", "leases",
                  "Restore the leased database in place (same DSN) to the template's state, or to a checkpoint "
                  "(`to`); the checkpoints saved after it are dropped",
                  {{"200", Answer("the lease", Ref("Lease"))}, {"400", Err("BadRequest")},
                   {"404", Err("NotFound")}, {"410", Err("Gone")}, {"413", Err("TooLarge")},
                   {"502", Err("Backend")}, {"503", Err("Unavailable")}, {"504", Err("Timeout")}});
  reset["parameters"] = json::array({id});
  reset["requestBody"] = Body("ResetRequest", false);
  p["/v1/leases/{id}/reset"]["post"] = reset;
  json checkpoint = Op("createCheckpoint", "leases",
                       "Save the leased database's committed state under a name, to reset to later. Clone mode: a "
                       "database cloned from the lease's (its sessions are ended first); rollback mode: a savepoint "
                       "(waits up to 10 s for a transaction a client has open). Checkpoints end with the lease",
                       {{"201", Answer("the checkpoint and the lease's checkpoints now", Ref("Checkpoint"))},
                        {"400", Err("BadRequest")}, {"404", Err("NotFound")}, {"409", Err("Conflict")},
                        {"410", Err("Gone")}, {"413", Err("TooLarge")}, {"502", Err("Backend")},
                        {"503", Err("Unavailable")}, {"504", Err("Timeout")}});
  checkpoint["parameters"] = json::array({id});
  checkpoint["requestBody"] = Body("CheckpointRequest", true);
  p["/v1/leases/{id}/checkpoints"]["post"] = checkpoint;
  RecordPaths(p);
  BuilderPaths(p);
  return p;
}

// What each route's scope (the route table's column) means for its operation: the open ones
// need no token; the others may answer 401, the admin ones 403. `x-testpool-scope` names it.
void ApplyScopes(json& paths) {
  for (const Route& route : Routes()) {
    std::string method(route.method);
    for (char& c : method) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    json& op = paths[std::string(route.path)][method];
    op["x-testpool-scope"] = std::string(ScopeName(route.scope));
    if (route.scope == Scope::kOpen) {
      op["security"] = json::array();  // overrides the document's default
      continue;
    }
    op["responses"]["401"] = Err("Unauthorized");
    if (route.scope == Scope::kAdmin) op["responses"]["403"] = Err("Forbidden");
  }
}

json Build() {
  json paths = Paths();
  ApplyScopes(paths);
  return {{"openapi", "3.0.3"},
          {"info", {{"title", "testpool"},
                    {"version", TESTPOOL_VERSION},
                    {"description", "Isolated, pre-migrated PostgreSQL databases for parallel tests: templates "
                                    "built from migrations, warm pools, leases with TTL and per-lease roles; "
                                    "record pools: rows of a shared database claimed one at a time; builders: fresh, "
                                    "domain-valid rows from recipes, removed again by namespace or lease. "
                                    "Every error answers {\"error\":{\"code\",\"message\",\"details\"}}. "
                                    "A daemon started with token files needs `Authorization: Bearer <token>` on "
                                    "every route but /healthz; `x-testpool-scope` says which token: a worker "
                                    "token or an admin token (templates and record pools: defining one runs code "
                                    "as a superuser); an admin token may call every route. Without token files "
                                    "(loopback only) every route is open."}}},
          {"servers", json::array({{{"url", "http://127.0.0.1:7432"}}})},
          {"security", json::array({{{"bearer", json::array()}}})},
          {"paths", paths},
          {"components", {{"schemas", Schemas()},
                          {"responses", Responses()},
                          {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"},
                                                           {"description", "a token from the daemon's --token-file "
                                                                           "(worker) or --admin-token-file (admin)"}}}}}}}};
}

}  // namespace

const json& OpenApiDocument() {
  static const json document = Build();
  return document;
}

void GetOpenApi(const Services&, const httplib::Request&, httplib::Response& res) {
  static const std::string text = Dump(OpenApiDocument());
  res.status = 200;
  res.set_content(text, "application/json");
}

}  // namespace testpool::api
