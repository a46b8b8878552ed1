#include "orchestrator/api/json_io.h"

#include "orchestrator/util/error.h"

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

std::string String(const json& v, const std::string& what) {
  if (!v.is_string()) throw Bad(what + " must be a string");
  return v.get<std::string>();
}

int Int(const json& v, const std::string& what) {
  if (!v.is_number_integer()) throw Bad(what + " must be an integer");
  long long n = v.get<long long>();
  if (n < -1000000000LL || n > 1000000000LL) throw Bad(what + " is out of range");
  return static_cast<int>(n);
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

}  // namespace testpool::api
