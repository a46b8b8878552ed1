// Who may call which route: bearer tokens in two scopes.
//
// A daemon started with a token file (`serve --token-file`, `--admin-token-file`) answers every
// route but the open ones (/healthz) only to a request carrying `Authorization: Bearer <token>`
// with a token from one of its files; without any token file every route is open (the loopback
// default). A *worker* token may use everything a CI worker needs (leases, claims, builds, reading
// status); an *admin* token may also define and drop templates and record pools — a template's
// migrations run as a superuser, so defining one is running code on the server. An admin token
// may do everything a worker token may. Which route needs which scope is the `scope` column of
// the route table (api/routes.h).
//
// Token files: one token per line; blank lines and lines starting with '#' are ignored, as are
// spaces around a token; several tokens may be valid at once (rotation: add the new one, move
// clients over, remove the old one). A token is 32 to 512 printable ASCII characters without
// spaces (`openssl rand -hex 32` makes one). The file must be a regular file that neither group
// nor others may read or write (chmod 600), and must hold at least one token.
//
// Tokens are kept only as SHA-256 digests, and a presented token is compared with every digest
// in constant time (CRYPTO_memcmp), so neither the time taken nor its length tells anything about
// the valid tokens.
#pragma once

#include <array>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace testpool::api {

// What a route needs (kOpen: nothing) or what a token grants (kWorker or kAdmin).
enum class Scope { kOpen, kWorker, kAdmin };

std::string_view ScopeName(Scope scope);  // "open", "worker", "admin"

inline constexpr std::size_t kMinTokenChars = 32;
inline constexpr std::size_t kMaxTokenChars = 512;

// The tokens of a token file (see above). Throws Error(kInvalidArgument) with a message naming
// the file (and the line) when it cannot be read, is group/world accessible, holds a malformed
// or short token, or holds none. The message never contains a token.
std::vector<std::string> ReadTokenFile(const std::filesystem::path& path);

// The set of valid tokens. Thread-safe: Grant() from the server's workers while Replace() runs
// (a reload on SIGHUP).
class AccessControl {
 public:
  // No tokens: enabled() is false and every request is granted kAdmin.
  AccessControl() = default;
  AccessControl(const std::vector<std::string>& worker_tokens, const std::vector<std::string>& admin_tokens);

  // Replaces the valid tokens (the old ones stop working at once). Enables the control when
  // either list is non-empty.
  void Replace(const std::vector<std::string>& worker_tokens, const std::vector<std::string>& admin_tokens);

  // Whether tokens are required (some token file was given).
  bool enabled() const;

  // What a request with this Authorization header value may do: kAdmin or kWorker; nullopt when
  // the header is missing (""), is not "Bearer <token>", or names no valid token. Always kAdmin
  // when !enabled().
  std::optional<Scope> Grant(std::string_view authorization) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  static Digest DigestOf(std::string_view token);

  mutable std::mutex mu_;
  std::vector<Digest> worker_;  // guarded by mu_
  std::vector<Digest> admin_;   // guarded by mu_
  bool enabled_ = false;        // guarded by mu_
};

}  // namespace testpool::api
