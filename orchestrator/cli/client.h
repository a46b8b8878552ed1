// The CLI's side of the API: a small HTTP client for the daemon at TESTPOOL_URL
// (default http://127.0.0.1:7432), sending the bearer token from TESTPOOL_TOKEN (or the file
// TESTPOOL_TOKEN_FILE) when there is one.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace testpool::cli {

struct ApiReply {
  int status = 0;
  nlohmann::json body;  // parsed JSON, or null when the body was empty or not JSON
};

// Thrown when the daemon cannot be reached at all (the CLI exits 3).
struct Unreachable : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class ApiClient {
 public:
  // `base_url` like "http://127.0.0.1:7432". `token`: sent as `Authorization: Bearer <token>`
  // on every request ("" : no header). Throws std::invalid_argument when the URL is malformed.
  ApiClient(const std::string& base_url, const std::string& token);
  ~ApiClient();

  // Each throws Unreachable when no HTTP answer came back.
  ApiReply Get(const std::string& path);
  ApiReply Put(const std::string& path, const nlohmann::json& body);
  ApiReply Post(const std::string& path, const nlohmann::json& body);
  ApiReply Delete(const std::string& path);

  // Aborts the request in flight (from another thread): it throws Unreachable. Later requests
  // work again.
  void Stop();

  const std::string& base_url() const { return base_url_; }

 private:
  struct Impl;
  std::string base_url_;
  std::unique_ptr<Impl> impl_;
};

// TESTPOOL_URL or the default.
std::string DefaultUrl();

// The bearer token for the daemon: $TESTPOOL_TOKEN, else the first token of the file
// $TESTPOOL_TOKEN_FILE (same format and mode 600 as serve's token files, api/auth.h), else ""
// (a daemon without token files needs none). Throws testpool::Error when that file cannot be used.
std::string DefaultToken();

// "code: message" from an error reply (or a generic line for a non-JSON one); for 401 and 403
// with a hint about TESTPOOL_TOKEN.
std::string DescribeError(const ApiReply& reply);

// `text` percent-encoded for one URL path segment (everything but [A-Za-z0-9_~-], so not "." either), so a name
// or id a user typed cannot change the path.
std::string PathSegment(std::string_view text);

// Runs a client command's body and maps what escapes it to the CLI's exit codes: Unreachable → 3,
// Boost.Program_options errors → 2 (with `usage`), testpool::Error and other exceptions → 1.
// Messages go to stderr prefixed with "testpool <command>: ".
int RunCommand(const std::string& command, const char* usage, const std::function<int()>& body);

}  // namespace testpool::cli
