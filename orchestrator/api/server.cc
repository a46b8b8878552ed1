#include "orchestrator/api/server.h"

#include <httplib.h>

#include <chrono>

#include "orchestrator/api/errors.h"
#include "orchestrator/api/json_io.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"

namespace testpool::api {
namespace {

using nlohmann::json;

constexpr size_t kMaxBodyBytes = 96u << 20;  // migrations (64 MiB of SQL) plus JSON escaping
constexpr size_t kWorkerThreads = 64;

// Serialises for the wire. Invalid UTF-8 (a name or SQL a client sent, echoed in a message) is
// replaced rather than thrown on: an answer must always go out.
std::string Dump(const json& body) { return body.dump(-1, ' ', false, json::error_handler_t::replace); }

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void ReplyError(httplib::Response& res, const Error& e) { Reply(res, HttpStatus(e.code()), ErrorBody(e)); }

// Reads ?name=true|false; absent → fallback.
bool BoolParam(const httplib::Request& req, const char* name, bool fallback) {
  if (!req.has_param(name)) return fallback;
  std::string v = req.get_param_value(name);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw Error(ErrorCode::kInvalidArgument, std::string("query parameter '") + name + "' must be true or false");
}

std::string TemplateName(const httplib::Request& req) {
  std::string name = req.matches[1];
  util::CheckName(name, "template name");
  return name;
}

}  // namespace

struct ApiServer::Impl {
  Impl(core::TemplateService& t, ServerInfo i) : templates(t), info(std::move(i)) {}

  // Wraps a route: every Error becomes its JSON answer; anything else a 500.
  template <typename F>
  httplib::Server::Handler Route(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res) {
      auto t0 = std::chrono::steady_clock::now();
      try {
        f(req, res);
      } catch (const Error& e) {
        ReplyError(res, e);
      } catch (const json::exception& e) {
        ReplyError(res, Error(ErrorCode::kInvalidArgument, std::string("bad JSON value: ") + e.what()));
      } catch (const std::exception& e) {
        log::Error("http.internal_error", {{"method", req.method}, {"path", req.path}, {"error", e.what()}});
        ReplyError(res, Error(ErrorCode::kInternal, std::string("internal error: ") + e.what()));
      }
      double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      auto level = (req.method == "GET" && res.status < 500) ? log::Level::kDebug : log::Level::kInfo;
      log::Write(level, "http.request", {{"method", req.method}, {"path", req.path},
                                         {"status", std::to_string(res.status)}, {"ms", log::Ms(ms)}});
    };
  }

  void Routes() {
    http.Get("/healthz", Route([this](const httplib::Request&, httplib::Response& res) {
               Reply(res, 200, {{"status", "ok"}, {"backend", info.backend}, {"daemon", info.daemon_id},
                                {"version", TESTPOOL_VERSION}});
             }));

    http.Put(R"(/v1/templates/([^/]+))", Route([this](const httplib::Request& req, httplib::Response& res) {
               std::string name = TemplateName(req);
               bool wait = BoolParam(req, "wait", true);
               core::TemplateSpec spec = TemplateSpecFromJson(name, ParseBody(req.body));
               size_t files = spec.migrations.size() + spec.seed.size();
               core::PutOutcome out = templates.Put(std::move(spec), wait);
               json body = {{"name", name}, {"hash", out.hash}, {"state", out.state},
                            {"database", out.database}, {"built", out.built}, {"files", files}};
               if (out.state == "ready") body["build_ms"] = out.build_ms;
               int status = out.state != "ready" ? 202 : (out.built ? 201 : 200);
               Reply(res, status, body);
             }));

    http.Get("/v1/templates", Route([this](const httplib::Request&, httplib::Response& res) {
               core::ControlStore& store = templates.store();
               json list = json::array();
               for (const std::string& name : store.ListNames()) {
                 list.push_back(TemplateJson(name, store.FindTemplate(name), store.ListBuilds(name),
                                             templates.Progress(name), false));
               }
               Reply(res, 200, {{"templates", list}});
             }));

    http.Get(R"(/v1/templates/([^/]+))", Route([this](const httplib::Request& req, httplib::Response& res) {
               std::string name = TemplateName(req);
               core::ControlStore& store = templates.store();
               auto builds = store.ListBuilds(name);
               auto progress = templates.Progress(name);
               if (builds.empty() && !progress) {
                 throw Error(ErrorCode::kNotFound, "no template named '" + name + "'");
               }
               Reply(res, 200, TemplateJson(name, store.FindTemplate(name), builds, progress, true));
             }));

    http.Delete(R"(/v1/templates/([^/]+))", Route([this](const httplib::Request& req, httplib::Response& res) {
                  std::string name = TemplateName(req);
                  bool old_only = BoolParam(req, "old_only", false);
                  auto dropped = templates.Drop(name, old_only);
                  Reply(res, 200, {{"name", name}, {"dropped", dropped}});
                }));

    // Unknown routes and methods answer in the API's error shape too.
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;  // a route already answered
      ErrorCode code = res.status == 404 ? ErrorCode::kNotFound : ErrorCode::kInvalidArgument;
      std::string message = res.status == 404 ? "no such endpoint: " + req.method + " " + req.path
                            : res.status == 413 ? "request body larger than " + std::to_string(kMaxBodyBytes >> 20) + " MiB"
                                                : "bad request (HTTP " + std::to_string(res.status) + ")";
      res.set_content(Dump(ErrorBody(Error(code, message))), "application/json");
    });
  }

  core::TemplateService& templates;
  const ServerInfo info;
  httplib::Server http;
};

ApiServer::ApiServer(core::TemplateService& templates, ServerInfo info)
    : impl_(std::make_unique<Impl>(templates, std::move(info))) {
  impl_->http.new_task_queue = [] { return new httplib::ThreadPool(kWorkerThreads); };
  impl_->http.set_payload_max_length(kMaxBodyBytes);
  impl_->http.set_read_timeout(std::chrono::seconds(60));
  impl_->http.set_write_timeout(std::chrono::seconds(60));
  impl_->http.set_keep_alive_timeout(30);
  impl_->Routes();
}

ApiServer::~ApiServer() { Stop(); }

int ApiServer::Bind(const std::string& host, int port) {
  int bound = port == 0 ? impl_->http.bind_to_any_port(host) : (impl_->http.bind_to_port(host, port) ? port : -1);
  if (bound < 0) {
    throw Error(ErrorCode::kUnavailable, "cannot listen on " + host + ":" + std::to_string(port) +
                                             " (in use, or not a local address); pick another with --listen");
  }
  return bound;
}

void ApiServer::Run() { impl_->http.listen_after_bind(); }

void ApiServer::Stop() { impl_->http.stop(); }

}  // namespace testpool::api
