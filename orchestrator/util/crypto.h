// Hashing and randomness through OpenSSL's libcrypto. Thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace testpool::util {

// Incremental SHA-256. Update() may be called any number of times before HexDigest().
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);
  // Feeds the length (8 bytes, big-endian) and then the bytes: fields framed this way can never
  // be confused with each other, whatever they contain.
  void UpdateFramed(std::string_view bytes);
  // The 64-character lower-case hex digest. Finalises: call once.
  std::string HexDigest();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

// `n` bytes from the CSPRNG as lower-case hex (2n characters). Throws Error(kInternal) if the
// generator fails (it does not, on a sane system).
std::string RandomHex(size_t n);

// An unguessable token of `n` random bytes in URL-safe base32-ish alphabet [a-z2-7] — safe in
// URLs, role names and passwords alike without quoting.
std::string RandomToken(size_t n);

// Standard base64 (RFC 4648, with padding).
std::string Base64(std::string_view bytes);

// A PostgreSQL SCRAM-SHA-256 secret ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
// RFC 5802/7677 as pg_authid stores it) for `password`, with a random 16-byte salt: given to
// CREATE/ALTER ROLE … PASSWORD, the server stores it as is. `password` must be ASCII without
// control characters or spaces (SASLprep leaves it unchanged then), else Error(kInvalidArgument).
// The iteration count is the caller's choice: key stretching protects guessable passwords, and
// every client pays it again on each connect — for random tokens of 100+ bits a low count loses
// nothing.
std::string ScramSha256Secret(std::string_view password, int iterations);
// The same with a given salt (for tests against known values).
std::string ScramSha256Secret(std::string_view password, std::string_view salt, int iterations);

}  // namespace testpool::util
