#include "orchestrator/api/json_io.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <vector>

#include "orchestrator/util/error.h"
#include "orchestrator/util/json_field.h"
#include "orchestrator/util/time_format.h"

namespace testpool::api {
namespace {

using nlohmann::json;

Error Bad(const std::string& message) { return Error(ErrorCode::kInvalidArgument, message); }

void OnlyFields(const json& obj, const std::string& where, std::initializer_list<const char*> allowed) {
  for (const auto& [key, value] : obj.items()) {
    bool known = false;
    for (const char* a : allowed) known = known || key == a;
    if (!known) throw Bad("unknown field '" + key.substr(0, 60) + "' in " + where);
  }
}

const json& Field(const json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end()) throw Bad("missing field '" + std::string(key) + "' in " + where);
  return *it;
}

std::string String(const json& v, const std::string& what) { return util::StringValue(v, {what}); }

int Int(const json& v, const std::string& what) {
  constexpr int64_t kLimit = 1000000000;
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{kLimit}) throw Bad(what + " is out of range");
  const int64_t n = util::Int64Value(v, {what});
  if (n < -kLimit || n > kLimit) throw Bad(what + " is out of range");
  return static_cast<int>(n);
}

// An integer of any size, clamped to ±(2^31 - 1): the range check is the caller's.
int ClampedInt(const json& v, const std::string& what) {
  constexpr int64_t kLimit = INT32_MAX;
  if (!v.is_number_integer()) util::ThrowMustBe({what}, "an integer", v);
  if (v.is_number_unsigned()) return static_cast<int>(std::min<uint64_t>(v.get<uint64_t>(), kLimit));
  return static_cast<int>(std::clamp<int64_t>(v.get<int64_t>(), -kLimit, kLimit));
}

const json& ObjectBody(const json& body, const std::string& what) {
  if (!body.is_object()) throw Bad("the body must be a JSON object (" + what + ")");
  return body;
}

std::vector<core::SqlFile> Files(const json& v, const std::string& what) {
  if (!v.is_array()) throw Bad(what + " must be an array of {\"name\",\"sql\"} objects");
  std::vector<core::SqlFile> out;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string where = what + "[" + std::to_string(i) + "]";
    const json& f = v[i];
    if (!f.is_object()) throw Bad(where + " must be an object with \"name\" and \"sql\"");
    OnlyFields(f, where, {"name", "sql"});
    out.push_back(core::SqlFile{String(Field(f, "name", where), where + ".name"),
                                String(Field(f, "sql", where), where + ".sql")});
  }
  return out;
}

}  // namespace

json ParseBody(const std::string& body) {
  try {
    return json::parse(body);
  } catch (const json::parse_error& e) {
    throw Bad(std::string("request body is not valid JSON: ") + e.what());
  }
}

core::TemplateSpec TemplateSpecFromJson(const std::string& name, const json& body) {
  if (!body.is_object()) throw Bad("the body must be a JSON object");
  OnlyFields(body, "the template definition", {"migrations", "seed", "pool", "recycle", "name", "description"});
  core::TemplateSpec spec;
  spec.name = name;
  if (auto it = body.find("name"); it != body.end() && String(*it, "name") != name) {
    throw Bad("the body's name '" + it->get<std::string>().substr(0, 60) + "' differs from the URL's '" + name + "'");
  }
  if (auto it = body.find("description"); it != body.end()) String(*it, "description");
  spec.migrations = Files(Field(body, "migrations", "the template definition"), "migrations");
  if (auto it = body.find("seed"); it != body.end()) spec.seed = Files(*it, "seed");
  if (auto it = body.find("pool"); it != body.end()) {
    if (!it->is_object()) throw Bad("pool must be an object with min_ready and max");
    OnlyFields(*it, "pool", {"min_ready", "max"});
    if (auto m = it->find("min_ready"); m != it->end()) spec.pool.min_ready = Int(*m, "pool.min_ready");
    if (auto m = it->find("max"); m != it->end()) spec.pool.max = Int(*m, "pool.max");
  }
  if (auto it = body.find("recycle"); it != body.end()) spec.recycle = String(*it, "recycle");
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
  ObjectBody(body, "{\"ttl_s\",\"wait_s\",\"holder\"}, each optional");
  OnlyFields(body, "the lease request", {"ttl_s", "wait_s", "holder"});
  core::LeaseRequest request;
  request.template_name = name;
  if (auto it = body.find("ttl_s"); it != body.end()) request.ttl = std::chrono::seconds(ClampedInt(*it, "ttl_s"));
  if (auto it = body.find("wait_s"); it != body.end()) request.wait = std::chrono::seconds(ClampedInt(*it, "wait_s"));
  if (auto it = body.find("holder"); it != body.end()) request.holder = String(*it, "holder");
  return request;
}

std::chrono::seconds RenewTtlFromJson(const json& body) {
  ObjectBody(body, "{\"ttl_s\"}, optional");
  OnlyFields(body, "the renew request", {"ttl_s"});
  if (auto it = body.find("ttl_s"); it != body.end()) return std::chrono::seconds(ClampedInt(*it, "ttl_s"));
  return core::LeaseRequest{}.ttl;
}

void CheckResetBody(const json& body) {
  ObjectBody(body, "a reset takes no fields");
  OnlyFields(body, "the reset request", {});
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
          {"state", l.state},
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
                     {"waiting", p.waiting}, {"recycle", p.recycle}});
  }
  const core::PoolCounters& c = status.counters;
  json counters = {{"leases_granted", c.leases_granted},     {"leases_released", c.leases_released},
                   {"leases_expired", c.leases_expired},     {"leases_exhausted", c.leases_exhausted},
                   {"leases_abandoned", c.leases_abandoned}, {"recycles_cloned", c.recycles_cloned},
                   {"recycles_skipped", c.recycles_skipped},  {"recycles_rolled_back", c.recycles_rolled_back},
                   {"resets", c.resets},                     {"slots_broken", c.slots_broken},
                   {"lease_wait", HistogramJson(c.wait)},    {"recycle", HistogramJson(c.recycle)},
                   {"reset", HistogramJson(c.reset)}};
  const core::PinnedSessions::Stats& x = status.proxy;
  json proxy = {{"sessions", x.sessions},
                {"client_connections", x.client_connections},
                {"connections_total", x.connections_total},
                {"connections_refused", x.connections_refused},
                {"sessions_lost", x.sessions_lost}};
  return {{"pools", pools}, {"databases", status.databases}, {"max_databases", status.max_databases},
          {"counters", counters}, {"proxy", proxy}};
}

// ---- record pools and claims -------------------------------------------------------------------

namespace {

// {"column": "text" | number | bool, …} → column → text form. `what` names the field ("match").
std::map<std::string, std::string> Match(const json& v, const std::string& what) {
  if (!v.is_object()) throw Bad(what + " must be an object of column: string, number or boolean");
  std::map<std::string, std::string> out;
  for (const auto& [column, value] : v.items()) {
    const std::string where = what + "." + column.substr(0, 60);
    if (value.is_string()) {
      out[column] = value.get<std::string>();
    } else if (value.is_boolean()) {
      out[column] = value.get<bool>() ? "true" : "false";
    } else if (value.is_number()) {
      out[column] = value.dump();  // integers as written; floats in the shortest form that round-trips
    } else {
      throw Bad(where + " must be a string, number or boolean");
    }
  }
  return out;
}

json MatchJson(const std::map<std::string, std::string>& match) {
  json out = json::object();
  for (const auto& [column, value] : match) out[column] = value;
  return out;
}

}  // namespace

core::RecordPoolSpec RecordPoolSpecFromJson(const std::string& name, const json& body) {
  const std::string where = "the record pool definition";
  ObjectBody(body, "{\"dsn\"|\"lease\",\"table\",\"key\",\"schema\",\"match\"}");
  OnlyFields(body, where, {"name", "dsn", "lease", "schema", "table", "key", "match"});
  if (auto it = body.find("name"); it != body.end() && String(*it, "name") != name) {
    throw Bad("the body's name '" + it->get<std::string>().substr(0, 60) + "' differs from the URL's '" + name + "'");
  }
  core::RecordPoolSpec spec;
  spec.name = name;
  const bool has_dsn = body.contains("dsn"), has_lease = body.contains("lease");
  if (has_dsn == has_lease) {
    throw Bad("give exactly one of \"dsn\" (the target database) and \"lease\" (a lease whose database holds the "
              "table) in " + where);
  }
  if (has_dsn) spec.dsn = String(body.at("dsn"), "dsn");
  if (has_lease) spec.lease_id = String(body.at("lease"), "lease");
  if (auto it = body.find("schema"); it != body.end()) spec.schema = String(*it, "schema");
  spec.table = String(Field(body, "table", where), "table");
  spec.key = String(Field(body, "key", where), "key");
  if (auto it = body.find("match"); it != body.end()) spec.match = Match(*it, "match");
  return spec;
}

core::ClaimRequest ClaimRequestFromJson(const std::string& pool, const json& body) {
  ObjectBody(body, "{\"match\",\"ttl_s\",\"wait_s\",\"holder\",\"lease\"}, each optional");
  OnlyFields(body, "the claim request", {"match", "ttl_s", "wait_s", "holder", "lease"});
  core::ClaimRequest request;
  request.pool = pool;
  if (auto it = body.find("match"); it != body.end()) request.match = Match(*it, "match");
  if (auto it = body.find("ttl_s"); it != body.end()) request.ttl = std::chrono::seconds(ClampedInt(*it, "ttl_s"));
  if (auto it = body.find("wait_s"); it != body.end()) request.wait = std::chrono::seconds(ClampedInt(*it, "wait_s"));
  if (auto it = body.find("holder"); it != body.end()) request.holder = String(*it, "holder");
  if (auto it = body.find("lease"); it != body.end()) request.lease_id = String(*it, "lease");
  return request;
}

std::chrono::seconds ClaimRenewTtlFromJson(const json& body) {
  ObjectBody(body, "{\"ttl_s\"}, optional");
  OnlyFields(body, "the renew request", {"ttl_s"});
  if (auto it = body.find("ttl_s"); it != body.end()) return std::chrono::seconds(ClampedInt(*it, "ttl_s"));
  return core::ClaimRequest{}.ttl;
}

json RecordPoolJson(const core::RecordPoolInfo& p) {
  json out = {{"name", p.spec.name},   {"schema", p.spec.schema},   {"table", p.spec.table},
              {"key", p.spec.key},     {"match", MatchJson(p.spec.match)},
              {"rows", p.rows},        {"claimed", p.claimed},      {"expired", p.expired},
              {"free", p.free()}};
  if (!p.spec.lease_id.empty()) out["lease"] = p.spec.lease_id;
  if (!p.spec.dsn.empty()) out["dsn"] = p.spec.dsn;  // RecordPools removed its password
  return out;
}

json ClaimJson(const core::ClaimInfo& c) {
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

constexpr int64_t kMaxBuildCount = 1000000;

// The fields both build routes share; `extra` are the route's own (checked by the caller).
core::BuildRequest BuildRequestFields(const json& body, const std::string& where,
                                      std::initializer_list<const char*> allowed) {
  OnlyFields(body, where, allowed);
  core::BuildRequest request;
  request.recipe = String(Field(body, "recipe", where), "recipe");
  if (auto it = body.find("count"); it != body.end()) {
    const std::string range = "count must be an integer from 1 to " + std::to_string(kMaxBuildCount);
    if (!it->is_number_integer()) throw Bad(range);
    if (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(kMaxBuildCount)) throw Bad(range);
    request.count = it->get<int64_t>();
    if (request.count < 1 || request.count > kMaxBuildCount) throw Bad(range);
  }
  if (auto it = body.find("overrides"); it != body.end()) request.overrides = Match(*it, "overrides");
  if (auto it = body.find("seed"); it != body.end()) {
    // Positive integers parse as unsigned; a negative one is signed, a fraction a float.
    if (!it->is_number_unsigned()) throw Bad("seed must be a non-negative integer (0: a random one)");
    request.seed = it->get<uint64_t>();
  }
  if (auto it = body.find("namespace"); it != body.end()) {
    request.ns = String(*it, "namespace");
    if (!core::IsValidNamespace(request.ns)) throw Bad("namespace must be 1 to 40 of [a-z0-9_-]");
  }
  return request;
}

}  // namespace

core::BuildRequest LeaseBuildRequestFromJson(const json& body) {
  ObjectBody(body, "{\"recipe\",\"count\",\"overrides\",\"seed\",\"namespace\"}");
  return BuildRequestFields(body, "the build request", {"recipe", "count", "overrides", "seed", "namespace"});
}

core::BuildRequest DsnBuildRequestFromJson(const json& body, std::string* dsn) {
  const std::string where = "the build request";
  ObjectBody(body, "{\"dsn\",\"namespace\",\"recipe\",\"count\",\"overrides\",\"seed\",\"lease\"}");
  core::BuildRequest request =
      BuildRequestFields(body, where, {"dsn", "namespace", "lease", "recipe", "count", "overrides", "seed"});
  *dsn = String(Field(body, "dsn", where), "dsn");
  Field(body, "namespace", where);  // a shared database needs one: it is how the rows are found again
  if (auto it = body.find("lease"); it != body.end()) request.lease_id = String(*it, "lease");
  return request;
}

json BuildResultJson(const core::BuildRequest& request, const core::BuildResult& result) {
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

json RecipeJson(const core::Recipe& r) {
  json refs = json::array(), fields = json::array();
  for (const core::RecipeRef& ref : r.refs) refs.push_back({{"column", ref.column}, {"recipe", ref.recipe}});
  for (const core::FieldGenerator& f : r.fields.fields()) fields.push_back(f.name());
  return {{"name", r.name}, {"table", r.table}, {"schema", r.schema}, {"key", r.key}, {"refs", refs},
          {"fields", fields}};
}

}  // namespace testpool::api
