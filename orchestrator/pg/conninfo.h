// Connection parameters as keyword/value pairs, convertible to libpq's keyword form and to a
// postgresql:// URI. Parsing accepts both forms (through PQconninfoParse). Values are quoted or
// percent-encoded as each form requires, so passwords with any characters survive.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace testpool::pg {

class ConnInfo {
 public:
  ConnInfo() = default;

  // Parses "host=… port=…" or "postgresql://…". Throws Error(kInvalidArgument) with libpq's
  // message when the text is malformed (without the pieces of the text libpq quotes in it, when
  // the text holds a password: they may be the password).
  static ConnInfo Parse(const std::string& text);

  ConnInfo& Set(const std::string& key, const std::string& value);
  // The value of `key`, or `fallback` when unset.
  std::string Get(const std::string& key, const std::string& fallback = "") const;
  bool Has(const std::string& key) const { return params_.count(key) > 0; }
  void Erase(const std::string& key) { params_.erase(key); }

  // "dbname='x' host='/run/…' …" — every value single-quoted and escaped.
  std::string ToKeywordString() const;
  // "postgresql://user:password@host:port/dbname?…" with percent-encoding, which Parse reads
  // back to the same parameters. A host goes in the authority only when it is a plain name or
  // IPv4 address, or an IPv6 address (bracketed: [::1]:5432), and the port only with such a host
  // and when it is digits; anything else (a unix-socket directory, a list of hosts), and any
  // empty value, goes in the query string (host=%2Ftmp).
  std::string ToUri() const;
  // The keyword form without the password, for logs.
  std::string Redacted() const;

  const std::map<std::string, std::string>& params() const { return params_; }

 private:
  std::map<std::string, std::string> params_;
};

}  // namespace testpool::pg
