#include "orchestrator/api/json_io.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "orchestrator/api/request_bodies.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/json_field.h"
#include "orchestrator/util/time_format.h"

namespace testpool::api {
namespace {

using nlohmann::json;

Error Bad(const std::string& message) { return Error(ErrorCode::kInvalidArgument, message); }

// An integer the reader checked, at most ±1e9 (pool sizes; their range is core's to check).
int Int(const json& v, const std::string& what) {
  constexpr int64_t kLimit = 1000000000;
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{kLimit}) throw Bad(what + " is out of range");
  const int64_t n = util::Int64Value(v, {what});
  if (n < -kLimit || n > kLimit) throw Bad(what + " is out of range");
  return static_cast<int>(n);
}

// An integer the reader checked, of any size, clamped to ±(2^31 - 1): the range check is core's.
int Clamped(const json& v) {
  constexpr int64_t kLimit = INT32_MAX;
  if (v.is_number_unsigned()) return static_cast<int>(std::min<uint64_t>(v.get<uint64_t>(), kLimit));
  return static_cast<int>(std::clamp<int64_t>(v.get<int64_t>(), -kLimit, kLimit));
}

// A ttl_s of a renew body (absent: `fallback`).
std::chrono::seconds Ttl(const json& body, const BodyShape& shape, std::chrono::seconds fallback) {
  const BodyReader b(body, shape);
  if (const json* v = b.Get("ttl_s")) return std::chrono::seconds(Clamped(*v));
  return fallback;
}

// The migrations or seed files (none when absent); `what` names the field.
std::vector<core::SqlFile> Files(const json* v, const std::string& what) {
  std::vector<core::SqlFile> out;
  if (v == nullptr) return out;
  for (size_t i = 0; i < v->size(); ++i) {
    const BodyReader f((*v)[i], bodies::kSqlFile, what + "[" + std::to_string(i) + "]");
    out.push_back(core::SqlFile{f.RequiredString("name"), f.RequiredString("sql")});
  }
  return out;
}

void CheckUrlName(const BodyReader& b, const std::string& name) {
  if (auto given = b.String("name"); given && *given != name) {
    throw Bad("the body's name '" + given->substr(0, 60) + "' differs from the URL's '" + name + "'");
  }
}

}  // namespace

json ParseBody(const std::string& body) {
  // nlohmann's parser keeps its stack on the heap, so depth does not overflow ours, but every
  // level costs memory (a 96 MiB body of '[' would take gigabytes): refused as soon as the
  // parser reaches the limit.
  auto limit_depth = [](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw Bad("request body nests arrays and objects deeper than " + std::to_string(kMaxJsonDepth) + " levels");
    }
    return true;
  };
  try {
    return json::parse(body, limit_depth);
  } catch (const json::parse_error& e) {
    throw Bad(std::string("request body is not valid JSON: ") + e.what());
  } catch (const json::out_of_range& e) {  // a number past double's range, such as 1e999
    throw Bad(std::string("request body holds a number out of range: ") + e.what());
  }
}

core::TemplateSpec TemplateSpecFromJson(const std::string& name, const json& body) {
  const BodyReader b(body, bodies::kTemplateDefinition);
  core::TemplateSpec spec;
  spec.name = name;
  CheckUrlName(b, name);
  b.Get("description");
  spec.migrations = Files(b.Get("migrations"), "migrations");
  spec.seed = Files(b.Get("seed"), "seed");
  if (const json* pool = b.Get("pool")) {
    const BodyReader p(*pool, bodies::kPoolConfig, "pool");
    if (const json* v = p.Get("min_ready")) spec.pool.min_ready = Int(*v, p.PathOf("min_ready"));
    if (const json* v = p.Get("max")) spec.pool.max = Int(*v, p.PathOf("max"));
  }
  if (auto v = b.String("recycle")) spec.recycle = *v;
  return spec;
}

json ProgressJson(const core::BuildProgress& p) {
  json steps = json::array();
  for (const auto& s : p.steps) steps.push_back({{"file", s.file}, {"ms", s.ms}});
  json out = {{"hash", p.hash}, {"state", p.state}, {"step", p.step}, {"of", p.of}, {"steps", steps}};
  if (p.state == "ready") {
    out["built"] = p.built;
    out["build_ms"] = p.build_ms;
  }
  if (!p.error_json.empty()) out["error"] = json::parse(p.error_json);
  return out;
}

json BuildJson(const core::TemplateBuildRow& b) {
  json out = {{"hash", b.hash},
              {"state", b.state},
              {"database", b.database},
              {"current", b.current},
              {"migrations", json::parse(b.migrations_json)},
              {"seed", json::parse(b.seed_json)},
              {"builds", b.builds},
              {"created_at", b.created_at}};
  if (b.state == "ready") {
    out["build_ms"] = b.build_ms;
    out["built_at"] = b.built_at;
  }
  if (!b.error_json.empty()) out["error"] = json::parse(b.error_json);
  return out;
}

json TemplateJson(const std::string& name, const std::optional<core::TemplateRow>& row,
                  const std::vector<core::TemplateBuildRow>& builds,
                  const std::optional<core::BuildProgress>& progress, bool with_builds) {
  // The build to show: the current one, else the newest attempt.
  const core::TemplateBuildRow* shown = nullptr;
  for (const auto& b : builds) {
    if (b.current) shown = &b;
  }
  if (shown == nullptr && !builds.empty()) shown = &builds.front();
  json out = {{"name", name}};
  if (shown != nullptr) {
    out["hash"] = shown->hash;
    out["state"] = shown->state;
    out["database"] = shown->database;
    if (shown->state == "ready") out["build_ms"] = shown->build_ms;
    if (!shown->error_json.empty()) out["error"] = json::parse(shown->error_json);
  } else if (progress) {
    out["hash"] = progress->hash;
    out["state"] = progress->state;
  }
  if (row) {
    out["pool"] = {{"min_ready", row->pool.min_ready}, {"max", row->pool.max}};
    out["recycle"] = row->recycle;
    out["updated_at"] = row->updated_at;
  }
  if (progress) out["build"] = ProgressJson(*progress);
  if (with_builds) {
    json all = json::array();
    for (const auto& b : builds) all.push_back(BuildJson(b));
    out["builds"] = all;
  }
  return out;
}

core::LeaseRequest LeaseRequestFromJson(const std::string& name, const json& body) {
  const BodyReader b(body, bodies::kLeaseRequest);
  core::LeaseRequest request;
  request.template_name = name;
  if (const json* v = b.Get("ttl_s")) request.ttl = std::chrono::seconds(Clamped(*v));
  if (const json* v = b.Get("wait_s")) request.wait = std::chrono::seconds(Clamped(*v));
  if (auto v = b.String("holder")) request.holder = *v;
  return request;
}

std::chrono::seconds RenewTtlFromJson(const json& body) {
  return Ttl(body, bodies::kRenewRequest, core::LeaseRequest{}.ttl);
}

std::string ResetTargetFromJson(const json& body) {
  const BodyReader b(body, bodies::kResetRequest);
  std::optional<std::string> to = b.String("to");
  if (to && to->empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "the reset request's to must name a checkpoint of the lease; leave it out to go back to the template");
  }
  return to.value_or("");
}

std::string CheckpointNameFromJson(const json& body) {
  const BodyReader b(body, bodies::kCheckpointRequest);
  return b.String("name").value_or("");
}

json CheckpointJson(const core::CheckpointInfo& c) {
  return {{"lease", c.lease_id}, {"name", c.name}, {"mode", c.mode}, {"ms", c.ms}, {"checkpoints", c.checkpoints}};
}

json LeaseJson(const core::LeaseInfo& l) {
  return {{"id", l.id},
          {"dsn", l.dsn},
          {"host", l.host},
          {"port", l.port},
          {"user", l.user},
          {"password", l.password},
          {"database", l.database},
          {"token", l.token},
          {"expires_at", util::IsoUtcMs(l.expires_at)},
          {"created_at", util::IsoUtcMs(l.created_at)},
          {"holder", l.holder},
          {"template", l.template_name},
          {"hash", l.hash},
          {"slot", l.slot_id},
          {"state", core::ToString(l.state)},
          {"wait_ms", l.wait_ms}};
}

namespace {
json HistogramJson(const core::PoolCounters::Histogram& h) {
  return {{"count", h.count}, {"sum_ms", h.sum_ms}, {"mean_ms", h.count > 0 ? h.sum_ms / double(h.count) : 0.0}};
}
}  // namespace

json StatusJson(const core::ManagerStatus& status) {
  json pools = json::array();
  for (const core::PoolStatus& p : status.pools) {
    pools.push_back({{"template", p.template_name}, {"hash", p.hash}, {"current", p.current},
                     {"min_ready", p.min_ready}, {"max", p.max}, {"warming", p.warming}, {"ready", p.ready},
                     {"leased", p.leased}, {"recycling", p.recycling}, {"broken", p.broken},
                     {"waiting", p.waiting}, {"warm_failures", p.warm_failures}, {"recycle", p.recycle}});
  }
  const core::PoolCounters& c = status.counters;
  json counters = {{"leases_granted", c.leases_granted},     {"leases_released", c.leases_released},
                   {"leases_expired", c.leases_expired},     {"leases_exhausted", c.leases_exhausted},
                   {"leases_abandoned", c.leases_abandoned}, {"recycles_cloned", c.recycles_cloned},
                   {"recycles_skipped", c.recycles_skipped},  {"recycles_rolled_back", c.recycles_rolled_back},
                   {"resets", c.resets},                     {"resets_skipped", c.resets_skipped},
                   {"slots_broken", c.slots_broken},
                   {"lease_wait", HistogramJson(c.wait)},    {"recycle", HistogramJson(c.recycle)},
                   {"reset", HistogramJson(c.reset)}};
  const core::PinnedSessions::Stats& x = status.proxy;
  json proxy = {{"sessions", x.sessions},
                {"client_connections", x.client_connections},
                {"connections_total", x.connections_total},
                {"connections_refused", x.connections_refused},
                {"sessions_lost", x.sessions_lost}};
  return {{"pools", pools}, {"databases", status.databases}, {"max_databases", status.max_databases},
          {"draining", status.draining}, {"counters", counters}, {"proxy", proxy}};
}

// ---- record pools and claims -------------------------------------------------------------------

namespace {

json MatchJson(const std::map<std::string, std::string>& match) {
  json out = json::object();
  for (const auto& [column, value] : match) out[column] = value;
  return out;
}

}  // namespace

records::RecordPoolSpec RecordPoolSpecFromJson(const std::string& name, const json& body) {
  const BodyReader b(body, bodies::kRecordPoolDefinition);
  CheckUrlName(b, name);
  records::RecordPoolSpec spec;
  spec.name = name;
  if (b.Has("dsn") == b.Has("lease")) {
    throw Bad("give exactly one of \"dsn\" (the target database) and \"lease\" (a lease whose database holds the "
              "table) in " + b.Where());
  }
  if (auto v = b.String("dsn")) spec.dsn = *v;
  if (auto v = b.String("lease")) spec.lease_id = *v;
  if (auto v = b.String("schema")) spec.schema = *v;
  spec.table = b.RequiredString("table");
  spec.key = b.RequiredString("key");
  if (auto v = b.ColumnValues("match")) spec.match = *v;
  return spec;
}

records::ClaimRequest ClaimRequestFromJson(const std::string& pool, const json& body) {
  const BodyReader b(body, bodies::kClaimRequest);
  records::ClaimRequest request;
  request.pool = pool;
  if (auto v = b.ColumnValues("match")) request.match = *v;
  if (const json* v = b.Get("ttl_s")) request.ttl = std::chrono::seconds(Clamped(*v));
  if (const json* v = b.Get("wait_s")) request.wait = std::chrono::seconds(Clamped(*v));
  if (auto v = b.String("holder")) request.holder = *v;
  if (auto v = b.String("lease")) request.lease_id = *v;
  return request;
}

std::chrono::seconds ClaimRenewTtlFromJson(const json& body) {
  return Ttl(body, bodies::kClaimRenewRequest, records::ClaimRequest{}.ttl);
}

json RecordPoolJson(const records::RecordPoolInfo& p) {
  json out = {{"name", p.spec.name},   {"schema", p.spec.schema},   {"table", p.spec.table},
              {"key", p.spec.key},     {"match", MatchJson(p.spec.match)},
              {"rows", p.rows},        {"claimed", p.claimed},      {"expired", p.expired},
              {"free", p.free()},      {"waiting", p.waiting}};
  if (!p.spec.lease_id.empty()) out["lease"] = p.spec.lease_id;
  if (!p.spec.dsn.empty()) out["dsn"] = p.spec.dsn;  // RecordPools removed its password
  return out;
}

json ClaimJson(const records::ClaimInfo& c) {
  json out = {{"id", c.id},       {"pool", c.pool},     {"key", c.key},     {"token", c.token},
              {"expires_at", util::IsoUtcMs(c.expires_at)}, {"holder", c.holder}, {"state", c.state}};
  if (!c.row_json.empty()) {
    json row = json::parse(c.row_json, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object()) throw Error(ErrorCode::kInternal, "claim " + c.id + ": its row is not a JSON object");
    out["row"] = std::move(row);
  }
  if (!c.lease_id.empty()) out["lease"] = c.lease_id;
  return out;
}

// ---- builders ----------------------------------------------------------------------------------

namespace {

// The fields both build bodies share; the ranges of count and seed are the reader's to check.
builders::BuildRequest BuildRequestFields(const BodyReader& b) {
  builders::BuildRequest request;
  request.recipe = b.RequiredString("recipe");
  if (const json* v = b.Get("count")) request.count = v->get<int64_t>();
  if (auto v = b.ColumnValues("overrides")) request.overrides = *v;
  if (const json* v = b.Get("seed")) request.seed = v->get<uint64_t>();
  if (auto v = b.String("namespace")) {
    request.ns = *v;
    if (!builders::IsValidNamespace(request.ns)) throw Bad("namespace must be 1 to 40 of [a-z0-9_-]");
  }
  return request;
}

}  // namespace

builders::BuildRequest LeaseBuildRequestFromJson(const json& body) {
  return BuildRequestFields(BodyReader(body, bodies::kLeaseBuildRequest));
}

builders::BuildRequest DsnBuildRequestFromJson(const json& body, std::string* dsn) {
  const BodyReader b(body, bodies::kDsnBuildRequest);
  builders::BuildRequest request = BuildRequestFields(b);
  *dsn = b.RequiredString("dsn");
  b.Get("namespace");  // required: a shared database needs one, it is how the rows are found again
  if (auto v = b.String("lease")) request.lease_id = *v;
  return request;
}

json BuildResultJson(const builders::BuildRequest& request, const builders::BuildResult& result) {
  size_t total = 0;
  for (const auto& [recipe, keys] : result.keys) total += keys.size();
  const bool truncated = total > kMaxKeysInAnswer;
  json keys = json::object(), counts = json::object();
  for (const auto& [recipe, all] : result.keys) {
    counts[recipe] = all.size();
    const size_t shown = truncated ? std::min(all.size(), kTruncatedKeysPerRecipe) : all.size();
    keys[recipe] = std::vector<std::string>(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(shown));
  }
  json out = {{"recipe", request.recipe}, {"count", request.count}, {"namespace", result.ns},
              {"seed", result.seed},      {"ms", result.ms},        {"keys", keys},
              {"counts", counts},         {"truncated", truncated}};
  if (!request.lease_id.empty()) out["lease"] = request.lease_id;
  return out;
}

json RecipeJson(const builders::Recipe& r) {
  json refs = json::array(), fields = json::array();
  for (const builders::RecipeRef& ref : r.refs) refs.push_back({{"column", ref.column}, {"recipe", ref.recipe}});
  for (const builders::FieldGenerator& f : r.fields.fields()) fields.push_back(f.name());
  return {{"name", r.name}, {"table", r.table}, {"schema", r.schema}, {"key", r.key}, {"refs", refs},
          {"fields", fields}};
}

}  // namespace testpool::api
