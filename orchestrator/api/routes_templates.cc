// /healthz and /v1/templates: define, list, inspect and drop templates.
#include "orchestrator/api/handlers.h"
#include "orchestrator/api/json_io.h"

namespace testpool::api {

using nlohmann::json;

void Healthz(const Services& s, const httplib::Request&, httplib::Response& res) {
  Reply(res, 200, {{"status", "ok"}, {"backend", s.info.backend}, {"daemon", s.info.daemon_id},
                   {"version", TESTPOOL_VERSION}});
}

void PutTemplate(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string name = TemplateNameParam(req);
  bool wait = BoolParam(req, "wait", true);
  core::TemplateSpec spec = TemplateSpecFromJson(name, ParseBody(req.body));
  size_t files = spec.migrations.size() + spec.seed.size();
  core::PutOutcome out = s.templates.Put(std::move(spec), wait);
  json body = {{"name", name}, {"hash", out.hash}, {"state", out.state},
               {"database", out.database}, {"built", out.built}, {"files", files}};
  if (out.state == "ready") body["build_ms"] = out.build_ms;
  int status = out.state != "ready" ? 202 : (out.built ? 201 : 200);
  Reply(res, status, body);
}

void ListTemplates(const Services& s, const httplib::Request&, httplib::Response& res) {
  core::ControlStore& store = s.templates.store();
  json list = json::array();
  for (const std::string& name : store.ListNames()) {
    list.push_back(TemplateJson(name, store.FindTemplate(name), store.ListBuilds(name), s.templates.Progress(name),
                                false));
  }
  Reply(res, 200, {{"templates", list}});
}

void GetTemplate(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string name = TemplateNameParam(req);
  core::ControlStore& store = s.templates.store();
  auto builds = store.ListBuilds(name);
  auto progress = s.templates.Progress(name);
  if (builds.empty() && !progress) throw Error(ErrorCode::kNotFound, "no template named '" + name + "'");
  Reply(res, 200, TemplateJson(name, store.FindTemplate(name), builds, progress, true));
}

void DeleteTemplate(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string name = TemplateNameParam(req);
  bool old_only = BoolParam(req, "old_only", false);
  auto dropped = s.templates.Drop(name, old_only);
  Reply(res, 200, {{"name", name}, {"dropped", dropped}});
}

}  // namespace testpool::api
