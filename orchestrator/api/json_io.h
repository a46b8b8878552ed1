// JSON in and out for the API's bodies: strict parsing (wrong types, unknown fields and missing
// fields are Error(kInvalidArgument) naming the field), and the shapes the API answers with.
// Each parser reads its body through that body's table in request_bodies.h, the table the
// OpenAPI schema is generated from.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "orchestrator/builders/builders.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/records/record_pools.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/core/template_spec.h"
#include "orchestrator/util/clock.h"

namespace testpool::api {

// How deep arrays and objects may nest in a request body (every body the API takes is 3 deep).
inline constexpr int kMaxJsonDepth = 64;

// Parses text as JSON; throws Error(kInvalidArgument) with the parser's position on failure
// (invalid UTF-8 in a string included), or naming kMaxJsonDepth when the body nests deeper.
nlohmann::json ParseBody(const std::string& body);

// The PUT /v1/templates/{name} body:
// {"migrations":[{"name","sql"}…], "seed":[{"name","sql"}…], "pool":{"min_ready","max"}, "recycle":"clone"}
core::TemplateSpec TemplateSpecFromJson(const std::string& name, const nlohmann::json& body);

nlohmann::json ProgressJson(const core::BuildProgress& p);
nlohmann::json BuildJson(const core::TemplateBuildRow& b);
// One template: its current build (or, when none succeeded yet, its latest), pool settings,
// the last build job's progress when this daemon ran one, and every build when `with_builds`.
nlohmann::json TemplateJson(const std::string& name, const std::optional<core::TemplateRow>& row,
                            const std::vector<core::TemplateBuildRow>& builds,
                            const std::optional<core::BuildProgress>& progress, bool with_builds);

// ---- leases ------------------------------------------------------------------------------------
// Bodies are strict like the template's (unknown fields and wrong types are Error(kInvalidArgument)
// naming the field) but check only shape: the ranges (ttl 1 s … max_ttl, wait 0 … max_wait, holder
// length) are PoolManager's, which answers with its own Error. Integers beyond ±2^31 are clamped
// on the way, so they still reach it as out of range.

// POST /v1/templates/{name}/leases: {"ttl_s","wait_s","holder"}, each optional (the defaults are
// core::LeaseRequest's: 600 s, 30 s, ""). An empty body is an empty object.
core::LeaseRequest LeaseRequestFromJson(const std::string& name, const nlohmann::json& body);
// POST /v1/leases/{id}/renew: {"ttl_s"}, optional (default: core::LeaseRequest's ttl).
std::chrono::seconds RenewTtlFromJson(const nlohmann::json& body);
// POST /v1/leases/{id}/reset: {"to"}, optional: the checkpoint to go back to ("" : the
// template's state). An empty body is an empty object.
std::string ResetTargetFromJson(const nlohmann::json& body);
// POST /v1/leases/{id}/checkpoints: {"name"}, required.
std::string CheckpointNameFromJson(const nlohmann::json& body);
// {"lease","name","mode","ms","checkpoints"}
nlohmann::json CheckpointJson(const core::CheckpointInfo& checkpoint);

// {"id","dsn","host","port","user","password","database","token","expires_at","created_at",
//  "holder","template","hash","slot","state","wait_ms"}
nlohmann::json LeaseJson(const core::LeaseInfo& lease);
// {"pools":[{"template","hash","current","min_ready","max","warming","ready","leased",
//  "recycling","broken","waiting"}…],"databases","max_databases","counters":{…}}
nlohmann::json StatusJson(const core::ManagerStatus& status);

// ---- record pools and claims -------------------------------------------------------------------
// Strict like the lease bodies, and like them they check shape only: names (schema, table,
// columns) and ranges (ttl, wait, holder) are RecordPools' to check. A match is an object of
// column → string, number or boolean; each value goes on in its text form ("42", "1.5", "true").

// PUT /v1/record-pools/{name}: {"dsn"} or {"lease"} (exactly one), "table", "key", optional
// "schema" and "match", and "name" (when present, equal to the URL's).
records::RecordPoolSpec RecordPoolSpecFromJson(const std::string& name, const nlohmann::json& body);
// POST /v1/record-pools/{name}/claims: {"match","ttl_s","wait_s","holder","lease"}, each optional
// (the defaults are records::ClaimRequest's: 300 s, 0 s). An empty body is an empty object.
records::ClaimRequest ClaimRequestFromJson(const std::string& pool, const nlohmann::json& body);
// POST /v1/claims/{id}/renew: {"ttl_s"}, optional (default: records::ClaimRequest's ttl).
std::chrono::seconds ClaimRenewTtlFromJson(const nlohmann::json& body);

// {"name","schema","table","key","match","lease" (when on a lease),"dsn" (when given one, without
//  its password),"rows","claimed","expired","free"}
nlohmann::json RecordPoolJson(const records::RecordPoolInfo& pool);
// {"id","pool","key","row":{…} (when `claim` carries it: a new claim does),"token","expires_at",
//  "holder","state","lease" (when tied to one)}. Error(kInternal) when the row is not a JSON object.
nlohmann::json ClaimJson(const records::ClaimInfo& claim);

// ---- builders ----------------------------------------------------------------------------------
// Strict like the others; they check shape and the ranges of count (1 … 1,000,000) and seed (a
// non-negative integer; 0 or absent: BuildService picks one) and the namespace's form. Whether the
// recipe, lease and columns exist is BuildService's to say. Overrides are column → string, number
// or boolean, each in its text form, like a record pool's match.

// POST /v1/leases/{id}/build: {"recipe","count","overrides","seed","namespace"}; only "recipe"
// is required (count defaults to 1, the namespace to the lease id).
builders::BuildRequest LeaseBuildRequestFromJson(const nlohmann::json& body);
// POST /v1/builds: the same plus "dsn" (required, returned in `dsn`) and "lease" (optional: the
// rows go when that lease ends); "namespace" is required here.
builders::BuildRequest DsnBuildRequestFromJson(const nlohmann::json& body, std::string* dsn);

// An answer lists every key up to this many in all; past it, only the first
// kTruncatedKeysPerRecipe of each recipe (and "truncated": true). "counts" is always exact.
inline constexpr size_t kMaxKeysInAnswer = 10000;
inline constexpr size_t kTruncatedKeysPerRecipe = 100;

// {"recipe","count","namespace","seed","ms","keys":{recipe:[key…]},"counts":{recipe:n},
//  "truncated","lease" (when the rows go with a lease in a shared database)}
nlohmann::json BuildResultJson(const builders::BuildRequest& request, const builders::BuildResult& result);
// {"name","table","schema","key","refs":[{"column","recipe"}…],"fields":[name…]}
nlohmann::json RecipeJson(const builders::Recipe& recipe);

}  // namespace testpool::api
