#include "orchestrator/pg/conninfo.h"

#include <libpq-fe.h>

#include <memory>

#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/url.h"

namespace testpool::pg {
namespace {

// `text` with every "…"-quoted piece replaced by "…".
std::string WithoutQuotedPieces(const std::string& text) {
  std::string out;
  bool inside = false;
  for (char c : text) {
    if (c == '"') {
      if (!inside) out += "\"…\"";
      inside = !inside;
    } else if (!inside) {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

ConnInfo ConnInfo::Parse(const std::string& text) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(text.c_str(), &err);
  if (opts == nullptr) {
    std::string message = err ? err : "out of memory";
    if (err) PQfreemem(err);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    // libpq quotes the piece it could not parse, and that piece may be (part of) the password
    // (`invalid percent-encoded token: "pa%zzss"`): when the text holds a password, the quoted
    // pieces go. The message reaches logs and API answers.
    if (log::Redact(text) != text) message = WithoutQuotedPieces(message);
    throw Error(ErrorCode::kInvalidArgument, "invalid connection string: " + message);
  }
  std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> guard(opts, &PQconninfoFree);
  ConnInfo info;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val != nullptr) info.params_[o->keyword] = o->val;
  }
  return info;
}

ConnInfo& ConnInfo::Set(const std::string& key, const std::string& value) {
  params_[key] = value;
  return *this;
}

std::string ConnInfo::Get(const std::string& key, const std::string& fallback) const {
  auto it = params_.find(key);
  return it == params_.end() ? fallback : it->second;
}

namespace {
std::string QuoteKeywordValue(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('\'');
  return out;
}
}  // namespace

std::string ConnInfo::ToKeywordString() const {
  std::string out;
  for (const auto& [key, value] : params_) {
    if (!out.empty()) out.push_back(' ');
    out += key + "=" + QuoteKeywordValue(value);
  }
  return out;
}

std::string ConnInfo::Redacted() const {
  ConnInfo copy = *this;
  if (copy.Has("password")) copy.Set("password", "***");
  return copy.ToKeywordString();
}

std::string ConnInfo::ToUri() const {
  std::string out = "postgresql://";
  std::string user = Get("user"), password = Get("password"), host = Get("host"), port = Get("port");
  if (!user.empty()) {
    out += util::PercentEncode(user);
    if (!password.empty()) out += ":" + util::PercentEncode(password);
    out += "@";
  }
  bool socket_host = !host.empty() && host[0] == '/';
  // An IPv6 address is written in brackets (RFC 3986 §3.2.2), or its colons would read as the port's.
  bool ipv6 = host.find(':') != std::string::npos && host.front() != '[';
  if (!host.empty() && !socket_host) out += ipv6 ? "[" + host + "]" : host;
  if (!port.empty() && !socket_host) out += ":" + port;
  out += "/" + util::PercentEncode(Get("dbname"));
  std::string query;
  for (const auto& [key, value] : params_) {
    if (key == "user" || key == "password" || key == "dbname") continue;
    if ((key == "host" || key == "port") && !socket_host) continue;
    query += (query.empty() ? "?" : "&") + key + "=" + util::PercentEncode(value);
  }
  return out + query;
}

}  // namespace testpool::pg
