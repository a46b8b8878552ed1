// testpool::client — a small C++ client of testpool's HTTP API v1, for test programs of other
// projects: lease a pre-migrated PostgreSQL database cut from a template, renew, reset and release
// it; claim shared rows from a record pool; build rows with the daemon's builders.
//
// Depends on cpp-httplib and nlohmann_json only (not on the daemon's own libraries).
//
// Configuration: the daemon's base URL comes from the constructor, else $TESTPOOL_URL, else
// http://127.0.0.1:7432; the bearer token from the constructor, else $TESTPOOL_TOKEN (none when
// both are empty: a daemon on loopback without token files needs none).
//
// Connections: one kept-alive HTTP connection per Client, opened at the first request (the
// constructor does no I/O) and reopened when the daemon closed it while idle.
//
// Threading: a Client is thread-safe; its requests are serialised on one mutex (one connection).
// A thread that must not wait behind another's slow request (a renewer) uses its own Client.
//
// Errors: every request throws testpool::client::Error — with http_status() 0 and code()
// "unreachable" when no HTTP answer came back (the message names the URL and says how to start
// the daemon), else the daemon's status, its error code ("not_found", "pool_exhausted",
// "lease_expired", …) and message. A 2xx answer whose body is not what the API documents is an
// Error with code "bad_response". Lease and claim requests are never retried by the client.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace testpool::client {

// A failed API request. what(): "<code>: <message> (HTTP <status>)", or for an unreachable daemon
// the message alone.
class Error : public std::runtime_error {
 public:
  Error(int http_status, std::string code, std::string message);

  int http_status() const { return http_status_; }     // 0: no HTTP answer
  const std::string& code() const { return code_; }    // the API's error code
  const std::string& message() const { return message_; }
  bool unreachable() const { return http_status_ == 0; }

 private:
  int http_status_;
  std::string code_;
  std::string message_;
};

// A database leased to the caller until it is released or its TTL ends.
struct Lease {
  std::string id;
  std::string dsn;           // libpq keyword form, ready for PQconnectdb
  std::string host;
  int port = 0;
  std::string user;
  std::string password;
  std::string database;
  int64_t token = 0;         // fencing token: strictly increasing per slot
  std::string expires_at;    // ISO 8601 UTC, as the daemon wrote it
  std::string holder;
  std::string template_name;
  nlohmann::json raw;        // the whole answer (fields added later by the daemon are here)
};

struct LeaseOptions {
  std::chrono::seconds ttl{600};  // the lease ends this long after the last grant or renewal
  std::chrono::seconds wait{30};  // how long the daemon may wait for a free database (then 503)
  std::string holder{};           // free text naming the holder (a CI worker, a test shard)
};

// A row of a record pool, held until unclaimed or its TTL ends.
struct Claim {
  std::string id;
  std::string pool;
  std::string key;           // the row's key, as text
  int64_t token = 0;         // fencing token
  std::string expires_at;
  nlohmann::json row;        // the row as a JSON object (column: value)
  nlohmann::json raw;
};

struct ClaimOptions {
  nlohmann::json match = nlohmann::json::object();  // column: value the row must have
  std::chrono::seconds ttl{300};
  std::chrono::seconds wait{0};  // how long to wait for a free matching row (then 503)
  std::string holder{};
  std::string lease{};           // when set, the claim ends when this lease ends
};

struct BuildOptions {
  int64_t count = 1;
  nlohmann::json overrides = nlohmann::json::object();  // column: value set on every built row
  uint64_t seed = 0;             // 0: a random one (the result carries it)
  std::string ns{};              // namespace for unique values; "": the lease id
};

struct BuildResult {
  std::string recipe;
  std::string ns;
  uint64_t seed = 0;
  nlohmann::json keys;       // recipe: [key, …] for every recipe built (references included)
  nlohmann::json counts;     // recipe: rows built
  bool truncated = false;    // keys lists only some of the rows (counts has them all)
  nlohmann::json raw;
};

class Client {
 public:
  // `base_url` ("http://host:port"; "" : $TESTPOOL_URL or the default); token from $TESTPOOL_TOKEN.
  // Throws std::invalid_argument when the URL does not start with http://.
  explicit Client(std::string base_url = "");
  // As above with an explicit bearer token ("" : none).
  Client(std::string base_url, std::string token);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // POST /v1/templates/{name}/leases. Errors: "not_found" (no such template), "pool_exhausted"
  // (nothing free within options.wait), "draining", "invalid_argument".
  Lease Acquire(const std::string& template_name, const LeaseOptions& options = {});
  // POST /v1/leases/{id}/renew: the lease now ends `ttl` from now. "lease_expired" or
  // "not_found" when it has ended.
  Lease Renew(const std::string& lease_id, std::chrono::seconds ttl);
  // POST /v1/leases/{id}/reset: the database back to the template's state, or (`to`) to one of
  // the lease's checkpoints; the checkpoints saved after it are dropped. Clone mode: sessions to
  // it are ended, and the daemon only checks when nothing was written since. Returns the lease as
  // it is now. "not_found" for an unknown checkpoint.
  Lease Reset(const std::string& lease_id, const std::string& to = "");
  // POST /v1/leases/{id}/checkpoints: saves the database's committed state as `name` (1–64 of
  // A-Z a-z 0-9 _ . : -; a name taken already is replaced). Clone mode ends the lease's sessions;
  // rollback mode waits for an open transaction. Returns the daemon's answer
  // ({"lease","name","mode","ms","checkpoints"}).
  nlohmann::json Checkpoint(const std::string& lease_id, const std::string& name);
  // DELETE /v1/leases/{id}. Releasing a lease that has already ended is no error.
  void Release(const std::string& lease_id);

  // POST /v1/record-pools/{pool}/claims. "pool_exhausted" when no matching row is free.
  Claim ClaimRow(const std::string& pool, const ClaimOptions& options = {});
  // DELETE /v1/claims/{id}.
  void Unclaim(const std::string& claim_id);

  // POST /v1/leases/{id}/build: `options.count` rows of `recipe` (and the rows they reference)
  // in the lease's database. "not_found" for an unknown recipe or lease.
  BuildResult Build(const std::string& lease_id, const std::string& recipe, const BuildOptions& options = {});

  // GET /v1/status: the daemon's pools and counters, as it answers them.
  nlohmann::json Status();

  const std::string& base_url() const { return base_url_; }

 private:
  nlohmann::json Request(const std::string& method, const std::string& path, const nlohmann::json* body);

  struct Http;
  const std::string base_url_;
  std::mutex mu_;
  std::unique_ptr<Http> http_;  // guarded by mu_
};

// $TESTPOOL_URL, or http://127.0.0.1:7432.
std::string DefaultUrl();

// `text` percent-encoded as one URL path segment (all but [A-Za-z0-9_~-]).
std::string PathSegment(const std::string& text);

}  // namespace testpool::client
