#include "orchestrator/api/integresql_routes.h"

#include <httplib.h>

#include <charconv>
#include <nlohmann/json.hpp>

#include "orchestrator/api/client_probe.h"
#include "orchestrator/integresql/service.h"
#include "orchestrator/util/log.h"

namespace testpool::api {
namespace {

using nlohmann::json;

void Answer(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

json ConfigJson(const std::string& hash, const integresql::DatabaseConfig& c) {
  return {{"templateHash", hash},
          {"config", {{"host", c.host}, {"port", c.port}, {"username", c.username}, {"password", c.password},
                      {"database", c.database}}}};
}

std::string HashParam(const httplib::Request& req) { return req.matches[1]; }

int IdParam(const httplib::Request& req) {
  const std::string text = req.matches[2];
  int id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc() || end != text.data() + text.size() || id < 0) {
    throw Error(ErrorCode::kInvalidArgument, "invalid test database ID");
  }
  return id;
}

void Initialize(integresql::Service& s, const httplib::Request& req, httplib::Response& res) {
  json body = json::parse(req.body.empty() ? "{}" : req.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) throw Error(ErrorCode::kInvalidArgument, "body must be a JSON object");
  const json& hash = body.contains("hash") ? body["hash"] : json();
  if (!hash.is_string() || hash.get<std::string>().empty()) throw Error(ErrorCode::kInvalidArgument, "hash is required");
  Answer(res, 200, {{"database", ConfigJson(hash, s.Initialize(hash))}});
}

void Finalize(integresql::Service& s, const httplib::Request& req, httplib::Response& res) {
  s.Finalize(HashParam(req));
  res.status = 204;
}

void Discard(integresql::Service& s, const httplib::Request& req, httplib::Response& res) {
  s.Discard(HashParam(req));
  res.status = 204;
}

void DiscardAll(integresql::Service& s, const httplib::Request&, httplib::Response& res) {
  s.DiscardAll();
  res.status = 204;
}

void GetTest(integresql::Service& s, const httplib::Request& req, httplib::Response& res) {
  const std::string hash = HashParam(req);
  ClientProbe probe(req);
  integresql::TestDatabase t = s.GetTestDatabase(hash, [&probe] { return probe.Gone(); });
  Answer(res, 200, {{"id", t.id}, {"database", ConfigJson(hash, t.config)}});
}

void Unlock(integresql::Service& s, const httplib::Request& req, httplib::Response& res) {
  s.Return(HashParam(req), IdParam(req), false);
  res.status = 204;
}

void Recreate(integresql::Service& s, const httplib::Request& req, httplib::Response& res) {
  s.Return(HashParam(req), IdParam(req), true);
  res.status = 204;
}

int StatusOf(const Error& e) {
  if (const auto* refused = dynamic_cast<const integresql::Refused*>(&e)) return refused->status();
  switch (e.code()) {
    case ErrorCode::kInvalidArgument:
    case ErrorCode::kInvalidName: return 400;
    case ErrorCode::kUnauthorized: return 401;
    case ErrorCode::kForbidden: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kConflict: return 423;
    case ErrorCode::kPoolExhausted: return 507;
    case ErrorCode::kDraining:
    case ErrorCode::kUnavailable:
    case ErrorCode::kTimeout: return 503;
    default: return 500;
  }
}

}  // namespace

const std::vector<IntegresqlRoute>& IntegresqlRoutes() {
  static const std::vector<IntegresqlRoute> routes = {
      // method   scope           path (as PathMatches reads it)              cpp-httplib regex
      {"POST",   Scope::kWorker, "/api/v1/templates",                        R"(/api/v1/templates/?)", Initialize},
      {"PUT",    Scope::kWorker, "/api/v1/templates/{hash}",                 R"(/api/v1/templates/([^/]+)/?)", Finalize},
      {"DELETE", Scope::kWorker, "/api/v1/templates/{hash}",                 R"(/api/v1/templates/([^/]+)/?)", Discard},
      {"GET",    Scope::kWorker, "/api/v1/templates/{hash}/tests",           R"(/api/v1/templates/([^/]+)/tests/?)", GetTest},
      {"POST",   Scope::kWorker, "/api/v1/templates/{hash}/tests/{id}/unlock",
       R"(/api/v1/templates/([^/]+)/tests/([^/]+)/unlock/?)", Unlock},
      {"DELETE", Scope::kWorker, "/api/v1/templates/{hash}/tests/{id}",      R"(/api/v1/templates/([^/]+)/tests/([^/]+)/?)", Unlock},
      {"POST",   Scope::kWorker, "/api/v1/templates/{hash}/tests/{id}/recreate",
       R"(/api/v1/templates/([^/]+)/tests/([^/]+)/recreate/?)", Recreate},
      {"DELETE", Scope::kAdmin,  "/api/v1/admin/templates",                  R"(/api/v1/admin/templates/?)", DiscardAll},
  };
  return routes;
}

void RunIntegresqlRoute(const IntegresqlRoute& route, integresql::Service& service, const httplib::Request& req,
                        httplib::Response& res) {
  try {
    route.handler(service, req, res);
  } catch (const Error& e) {
    Answer(res, StatusOf(e), {{"message", e.what()}});
  } catch (const std::exception& e) {
    log::Error("integresql.internal_error", {{"method", req.method}, {"path", req.path}, {"error", e.what()}});
    Answer(res, 500, {{"message", std::string("internal error: ") + e.what()}});
  }
}

}  // namespace testpool::api
