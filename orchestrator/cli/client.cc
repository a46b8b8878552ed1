#include "orchestrator/cli/client.h"

#include <httplib.h>

#include <boost/program_options/errors.hpp>
#include <cctype>
#include <cstdlib>
#include <iostream>

#include "orchestrator/api/auth.h"
#include "orchestrator/cli/cli.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/url.h"

namespace testpool::cli {

struct ApiClient::Impl {
  Impl(const std::string& url, const std::string& token) : http(url) {
    if (!token.empty()) http.set_bearer_token_auth(token);
    http.set_connection_timeout(std::chrono::seconds(5));
    http.set_tcp_nodelay(true);  // small requests: no Nagle delay
    http.set_read_timeout(std::chrono::seconds(900));  // a template build with wait can take long
    http.set_write_timeout(std::chrono::seconds(60));
  }
  httplib::Client http;
};

ApiClient::ApiClient(const std::string& base_url, const std::string& token) : base_url_(base_url) {
  if (base_url.rfind("http://", 0) != 0) {
    throw std::invalid_argument("TESTPOOL_URL must start with http:// (got '" + base_url + "')");
  }
  impl_ = std::make_unique<Impl>(base_url, token);
}

ApiClient::~ApiClient() = default;

namespace {
ApiReply ToReply(const httplib::Result& r, const std::string& base, const std::string& path) {
  if (!r) {
    throw Unreachable("cannot reach the testpool daemon at " + base + " (" + httplib::to_string(r.error()) +
                      " on " + path + "); is `testpool serve` running? Set TESTPOOL_URL to point elsewhere");
  }
  ApiReply reply;
  reply.status = r->status;
  reply.body = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  if (reply.body.is_discarded()) reply.body = nullptr;
  return reply;
}
}  // namespace

ApiReply ApiClient::Get(const std::string& path) { return ToReply(impl_->http.Get(path), base_url_, path); }

ApiReply ApiClient::Put(const std::string& path, const nlohmann::json& body) {
  return ToReply(impl_->http.Put(path, body.dump(), "application/json"), base_url_, path);
}

ApiReply ApiClient::Post(const std::string& path, const nlohmann::json& body) {
  return ToReply(impl_->http.Post(path, body.dump(), "application/json"), base_url_, path);
}

ApiReply ApiClient::Delete(const std::string& path) { return ToReply(impl_->http.Delete(path), base_url_, path); }

void ApiClient::Stop() { impl_->http.stop(); }

std::string DefaultUrl() {
  const char* url = std::getenv("TESTPOOL_URL");
  return (url && *url) ? url : "http://127.0.0.1:7432";
}

std::string DefaultToken() {
  if (const char* token = std::getenv("TESTPOOL_TOKEN"); token && *token) return token;
  if (const char* file = std::getenv("TESTPOOL_TOKEN_FILE"); file && *file) {
    return api::ReadTokenFile(file).front();  // ReadTokenFile never returns an empty list
  }
  return "";
}

std::string DescribeError(const ApiReply& reply) {
  std::string out = "HTTP " + std::to_string(reply.status) + " from the daemon";
  if (reply.body.is_object() && reply.body.contains("error") && reply.body["error"].is_object()) {
    const auto& e = reply.body["error"];
    out = e.value("code", "error") + ": " + e.value("message", "");
  }
  const bool have_token = (std::getenv("TESTPOOL_TOKEN") && *std::getenv("TESTPOOL_TOKEN")) ||
                          (std::getenv("TESTPOOL_TOKEN_FILE") && *std::getenv("TESTPOOL_TOKEN_FILE"));
  if (reply.status == 401) {
    out += have_token ? " (the token in TESTPOOL_TOKEN or TESTPOOL_TOKEN_FILE is not one of the daemon's)"
                      : " (set TESTPOOL_TOKEN to a token from the daemon's --token-file)";
  } else if (reply.status == 403) {
    out += " (use a token from the daemon's --admin-token-file)";
  }
  return out;
}

std::string PathSegment(std::string_view text) {
  // '.' too, so that no name can make a "." or ".." segment.
  std::string out;
  for (char c : util::PercentEncode(text)) {
    if (c == '.') {
      out += "%2E";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

int RunCommand(const std::string& command, const char* usage, const std::function<int()>& body) {
  try {
    return body();
  } catch (const boost::program_options::error& e) {
    std::cerr << "testpool " << command << ": " << e.what() << "\n" << usage;
    return kExitUsage;
  } catch (const Unreachable& e) {
    std::cerr << "testpool: " << e.what() << "\n";
    return kExitUnreachable;
  } catch (const std::exception& e) {
    std::cerr << "testpool " << command << ": " << e.what() << "\n";
    return kExitFailed;
  }
}

}  // namespace testpool::cli
