#include "orchestrator/api/handlers.h"

#include "orchestrator/api/errors.h"
#include "orchestrator/api/json_io.h"
#include "orchestrator/util/names.h"

namespace testpool::api {

using nlohmann::json;

std::string Dump(const json& body) { return body.dump(-1, ' ', false, json::error_handler_t::replace); }

void Reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(Dump(body), "application/json");
}

void ReplyError(httplib::Response& res, const Error& error) {
  Reply(res, HttpStatus(error.code()), ErrorBody(error));
}

bool BoolParam(const httplib::Request& req, const char* name, bool fallback) {
  if (!req.has_param(name)) return fallback;
  std::string v = req.get_param_value(name);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw Error(ErrorCode::kInvalidArgument, std::string("query parameter '") + name + "' must be true or false");
}

std::string TemplateNameParam(const httplib::Request& req) {
  std::string name = req.matches[1];
  util::CheckName(name, "template name");
  return name;
}

namespace {
// What util::RandomToken produces ([a-z2-7]), with room to spare in length.
bool IsLeaseIdShape(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) return false;
  }
  return true;
}
}  // namespace

std::string LeaseIdParam(const httplib::Request& req) {
  std::string id = req.matches[1];
  if (!IsLeaseIdShape(id)) {
    // Not echoed: it is not an id, and may be anything a client sent.
    throw Error(ErrorCode::kNotFound, "no such lease (lease ids are 1 to 64 characters of [a-z2-7])");
  }
  return id;
}

json OptionalJsonBody(const httplib::Request& req) {
  if (req.body.find_first_not_of(" \t\r\n") == std::string::npos) return json::object();
  return ParseBody(req.body);
}

}  // namespace testpool::api
