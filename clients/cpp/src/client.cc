#include "testpool/client.h"

#include <httplib.h>

#include <cstdlib>
#include <utility>

namespace testpool::client {

using nlohmann::json;

Error::Error(int http_status, std::string code, std::string message)
    : std::runtime_error(http_status == 0 ? message
                                          : code + ": " + message + " (HTTP " + std::to_string(http_status) + ")"),
      http_status_(http_status),
      code_(std::move(code)),
      message_(std::move(message)) {}

std::string DefaultUrl() {
  const char* url = std::getenv("TESTPOOL_URL");
  return (url != nullptr && *url != '\0') ? url : "http://127.0.0.1:7432";
}

std::string PathSegment(const std::string& text) {
  static const char* const kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '~' ||
        c == '-') {
      out.push_back(static_cast<char>(c));
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct Client::Http {
  Http(const std::string& url, const std::string& token) : http(url) {
    if (!token.empty()) http.set_bearer_token_auth(token);
    http.set_keep_alive(true);
    http.set_tcp_nodelay(true);
    http.set_connection_timeout(std::chrono::seconds(5));
    // A lease or claim may wait up to its wait_s (at most 600 s) on the daemon's side.
    http.set_read_timeout(std::chrono::seconds(660));
    http.set_write_timeout(std::chrono::seconds(60));
  }
  httplib::Client http;
};

namespace {

std::string CheckedUrl(std::string url) {
  if (url.empty()) url = DefaultUrl();
  while (url.size() > 7 && url.back() == '/') url.pop_back();
  if (url.rfind("http://", 0) != 0) {
    throw std::invalid_argument("the testpool URL must start with http:// (got '" + url + "')");
  }
  return url;
}

std::string EnvToken() {
  const char* token = std::getenv("TESTPOOL_TOKEN");
  return token != nullptr ? token : "";
}

// The members of a 2xx answer the API documents; a missing or mistyped one is "bad_response".
template <typename T>
T Field(const json& body, const char* name, int status) {
  const auto it = body.find(name);
  if (it == body.end()) throw Error(status, "bad_response", std::string("the answer has no '") + name + "'");
  try {
    return it->get<T>();
  } catch (const json::exception& e) {
    throw Error(status, "bad_response", std::string("'") + name + "' in the answer: " + e.what());
  }
}

Lease LeaseFrom(const json& body) {
  Lease l;
  l.id = Field<std::string>(body, "id", 200);
  l.dsn = Field<std::string>(body, "dsn", 200);
  l.host = Field<std::string>(body, "host", 200);
  l.port = Field<int>(body, "port", 200);
  l.user = Field<std::string>(body, "user", 200);
  l.password = Field<std::string>(body, "password", 200);
  l.database = Field<std::string>(body, "database", 200);
  l.token = Field<int64_t>(body, "token", 200);
  l.expires_at = Field<std::string>(body, "expires_at", 200);
  l.holder = body.value("holder", "");
  l.template_name = body.value("template", "");
  l.raw = body;
  return l;
}

}  // namespace

Client::Client(std::string base_url) : Client(std::move(base_url), EnvToken()) {}

Client::Client(std::string base_url, std::string token)
    : base_url_(CheckedUrl(std::move(base_url))), http_(std::make_unique<Http>(base_url_, token)) {}

Client::~Client() = default;

json Client::Request(const std::string& method, const std::string& path, const json* body) {
  const std::string text = body != nullptr ? body->dump() : "";
  const httplib::Result r = [&] {
    std::lock_guard<std::mutex> lock(mu_);
    httplib::Client& h = http_->http;
    if (method == "GET") return h.Get(path.c_str());
    if (method == "DELETE") return h.Delete(path.c_str());
    return h.Post(path.c_str(), text, "application/json");
  }();
  if (!r) {
    throw Error(0, "unreachable",
                "cannot reach the testpool daemon at " + base_url_ + " (" + httplib::to_string(r.error()) + " on " +
                    method + " " + path + "); is `testpool serve` running there? Set TESTPOOL_URL to point elsewhere");
  }
  json answer = r->body.empty() ? json() : json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (r->status >= 200 && r->status < 300) {
    if (answer.is_discarded() || (!answer.is_null() && !answer.is_object())) {
      throw Error(r->status, "bad_response", "the answer to " + method + " " + path + " is not a JSON object");
    }
    return answer;
  }
  if (answer.is_object() && answer.contains("error") && answer["error"].is_object()) {
    const json& e = answer["error"];
    std::string message = e.value("message", "");
    if (r->status == 401) message += " (set TESTPOOL_TOKEN to one of the daemon's tokens)";
    throw Error(r->status, e.value("code", "error"), message);
  }
  throw Error(r->status, "http_error", "HTTP " + std::to_string(r->status) + " from " + base_url_ + " on " + method +
                                           " " + path);
}

Lease Client::Acquire(const std::string& template_name, const LeaseOptions& options) {
  const json body = {{"ttl_s", options.ttl.count()}, {"wait_s", options.wait.count()}, {"holder", options.holder}};
  return LeaseFrom(Request("POST", "/v1/templates/" + PathSegment(template_name) + "/leases", &body));
}

Lease Client::Renew(const std::string& lease_id, std::chrono::seconds ttl) {
  const json body = {{"ttl_s", ttl.count()}};
  return LeaseFrom(Request("POST", "/v1/leases/" + PathSegment(lease_id) + "/renew", &body));
}

Lease Client::Reset(const std::string& lease_id, const std::string& to) {
  json body = json::object();
  if (!to.empty()) body["to"] = to;
  return LeaseFrom(Request("POST", "/v1/leases/" + PathSegment(lease_id) + "/reset", &body));
}

json Client::Checkpoint(const std::string& lease_id, const std::string& name) {
  const json body = {{"name", name}};
  return Request("POST", "/v1/leases/" + PathSegment(lease_id) + "/checkpoints", &body);
}

void Client::Release(const std::string& lease_id) { Request("DELETE", "/v1/leases/" + PathSegment(lease_id), nullptr); }

Claim Client::ClaimRow(const std::string& pool, const ClaimOptions& options) {
  json body = {{"match", options.match},
               {"ttl_s", options.ttl.count()},
               {"wait_s", options.wait.count()},
               {"holder", options.holder}};
  if (!options.lease.empty()) body["lease"] = options.lease;
  const json answer = Request("POST", "/v1/record-pools/" + PathSegment(pool) + "/claims", &body);
  Claim c;
  c.id = Field<std::string>(answer, "id", 201);
  c.pool = Field<std::string>(answer, "pool", 201);
  c.key = Field<std::string>(answer, "key", 201);
  c.token = Field<int64_t>(answer, "token", 201);
  c.expires_at = Field<std::string>(answer, "expires_at", 201);
  c.row = answer.value("row", json::object());
  c.raw = answer;
  return c;
}

void Client::Unclaim(const std::string& claim_id) {
  Request("DELETE", "/v1/claims/" + PathSegment(claim_id), nullptr);
}

BuildResult Client::Build(const std::string& lease_id, const std::string& recipe, const BuildOptions& options) {
  json body = {{"recipe", recipe}, {"count", options.count}, {"overrides", options.overrides}};
  if (options.seed != 0) body["seed"] = options.seed;
  if (!options.ns.empty()) body["namespace"] = options.ns;
  const json answer = Request("POST", "/v1/leases/" + PathSegment(lease_id) + "/build", &body);
  BuildResult b;
  b.recipe = Field<std::string>(answer, "recipe", 201);
  b.ns = Field<std::string>(answer, "namespace", 201);
  b.seed = Field<uint64_t>(answer, "seed", 201);
  b.keys = answer.value("keys", json::object());
  b.counts = answer.value("counts", json::object());
  b.truncated = answer.value("truncated", false);
  b.raw = answer;
  return b;
}

json Client::Status() { return Request("GET", "/v1/status", nullptr); }

}  // namespace testpool::client
