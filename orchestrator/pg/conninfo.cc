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

namespace {

// How ToUri can write a host. libpq cuts the URI's authority at ',', ':', '/', '@' and '['
// before it decodes %XX (so percent-encoding cannot protect those there), and cannot tell an
// empty part from an absent one; so the authority holds only a host that reads back unchanged.
enum class HostForm {
  kQuery,  // anything else (a socket directory, a list of hosts, a zone id, ""): ?host=…
  kName,   // a name or IPv4 address of RFC 3986's unreserved characters, written as is
  kIpv6,   // hex digits, ':' and '.', at least one ':': written in brackets (RFC 3986 §3.2.2)
};

HostForm HostFormOf(const std::string& host) {
  if (host.empty()) return HostForm::kQuery;
  bool name = true, ipv6 = host.find(':') != std::string::npos;
  for (char c : host) {
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    name = name && (alnum || c == '-' || c == '.' || c == '_' || c == '~');
    ipv6 = ipv6 && (hex || c == ':' || c == '.');
  }
  return name ? HostForm::kName : ipv6 ? HostForm::kIpv6 : HostForm::kQuery;
}

bool IsDigits(const std::string& s) {
  return !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

std::string ConnInfo::ToUri() const {
  std::string out = "postgresql://";
  const std::string user = Get("user"), password = Get("password"), host = Get("host"), port = Get("port");
  // What the authority and path hold; every other parameter (an empty one too) goes in the query.
  const bool user_in_authority = !user.empty();
  const bool password_in_authority = user_in_authority && !password.empty();
  const HostForm host_form = HostFormOf(host);
  const bool port_in_authority = host_form != HostForm::kQuery && IsDigits(port);
  const bool dbname_in_path = !Get("dbname").empty();
  if (user_in_authority) {
    out += util::PercentEncode(user);
    if (password_in_authority) out += ":" + util::PercentEncode(password);
    out += "@";
  }
  if (host_form == HostForm::kName) out += host;
  if (host_form == HostForm::kIpv6) out += "[" + host + "]";
  if (port_in_authority) out += ":" + port;
  out += "/";
  if (dbname_in_path) out += util::PercentEncode(Get("dbname"));
  std::string query;
  for (const auto& [key, value] : params_) {
    if ((key == "user" && user_in_authority) || (key == "password" && password_in_authority) ||
        (key == "host" && host_form != HostForm::kQuery) || (key == "port" && port_in_authority) ||
        (key == "dbname" && dbname_in_path)) {
      continue;
    }
    query += (query.empty() ? "?" : "&") + util::PercentEncode(key) + "=" + util::PercentEncode(value);
  }
  return out + query;
}

}  // namespace testpool::pg
