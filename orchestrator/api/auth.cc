#include "orchestrator/api/auth.h"

#include <openssl/crypto.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"

namespace testpool::api {
namespace {

Error Bad(const std::filesystem::path& path, const std::string& why) {
  return Error(ErrorCode::kInvalidArgument, "token file " + path.string() + ": " + why);
}

std::string_view Trim(std::string_view s) {
  const char* space = " \t\r\n\f\v";
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(space) - first + 1);
}

bool IsTokenChar(char c) { return c > 0x20 && c < 0x7f; }

}  // namespace

std::string_view ScopeName(Scope scope) {
  switch (scope) {
    case Scope::kOpen: return "open";
    case Scope::kWorker: return "worker";
    case Scope::kAdmin: return "admin";
  }
  return "admin";
}

std::vector<std::string> ReadTokenFile(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Bad(path, std::strerror(errno));
  if (!S_ISREG(st.st_mode)) throw Bad(path, "not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw Bad(path, std::string("group or others may access it (mode ") + mode + "); run chmod 600 " + path.string());
  }
  std::ifstream in(path);
  if (!in) throw Bad(path, "cannot be read");
  std::vector<std::string> tokens;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const std::string_view token = Trim(line);
    if (token.empty() || token.front() == '#') continue;
    const std::string where = "line " + std::to_string(number) + ": ";
    for (char c : token) {
      if (!IsTokenChar(c)) throw Bad(path, where + "a token is printable ASCII without spaces");
    }
    if (token.size() < kMinTokenChars || token.size() > kMaxTokenChars) {
      throw Bad(path, where + "a token is " + std::to_string(kMinTokenChars) + " to " + std::to_string(kMaxTokenChars) +
                          " characters (this one has " + std::to_string(token.size()) +
                          "; `openssl rand -hex 32` makes one)");
    }
    tokens.emplace_back(token);
  }
  if (in.bad()) throw Bad(path, "cannot be read");
  if (tokens.empty()) throw Bad(path, "holds no token (one per line; '#' starts a comment)");
  return tokens;
}

AccessControl::AccessControl(const std::vector<std::string>& worker_tokens,
                             const std::vector<std::string>& admin_tokens) {
  Replace(worker_tokens, admin_tokens);
}

AccessControl::Digest AccessControl::DigestOf(std::string_view token) {
  const std::string raw = util::Sha256Bytes(token);
  Digest d{};
  std::memcpy(d.data(), raw.data(), d.size());
  return d;
}

void AccessControl::Replace(const std::vector<std::string>& worker_tokens,
                            const std::vector<std::string>& admin_tokens) {
  std::vector<Digest> worker, admin;
  for (const std::string& t : worker_tokens) worker.push_back(DigestOf(t));
  for (const std::string& t : admin_tokens) admin.push_back(DigestOf(t));
  std::lock_guard lock(mu_);
  worker_ = std::move(worker);
  admin_ = std::move(admin);
  enabled_ = enabled_ || !worker_.empty() || !admin_.empty();
}

bool AccessControl::enabled() const {
  std::lock_guard lock(mu_);
  return enabled_;
}

std::optional<Scope> AccessControl::Grant(std::string_view authorization) const {
  {
    std::lock_guard lock(mu_);
    if (!enabled_) return Scope::kAdmin;
  }
  // "Bearer <token>": the scheme is case-insensitive (RFC 9110 §11.1).
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) return std::nullopt;
  }
  const std::string_view token = Trim(authorization.substr(kScheme.size()));
  if (token.empty()) return std::nullopt;
  const Digest presented = DigestOf(token);
  // Every digest is compared, whichever matches: the time does not depend on which one did.
  bool admin = false, worker = false;
  std::lock_guard lock(mu_);
  for (const Digest& d : admin_) admin |= CRYPTO_memcmp(d.data(), presented.data(), d.size()) == 0;
  for (const Digest& d : worker_) worker |= CRYPTO_memcmp(d.data(), presented.data(), d.size()) == 0;
  if (admin) return Scope::kAdmin;
  if (worker) return Scope::kWorker;
  return std::nullopt;
}

}  // namespace testpool::api
