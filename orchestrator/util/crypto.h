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

// `n` bytes from the CSPRNG, raw. Throws Error(kInternal) if the generator fails (it does not,
// on a sane system).
std::string RandomBytes(size_t n);

// `n` bytes from the CSPRNG as lower-case hex (2n characters). Throws as RandomBytes.
std::string RandomHex(size_t n);

// An unguessable token of `n` random bytes in URL-safe base32-ish alphabet [a-z2-7] — safe in
// URLs, role names and passwords alike without quoting.
std::string RandomToken(size_t n);

// Standard base64 (RFC 4648, with padding).
std::string Base64(std::string_view bytes);

// The bytes that Base64() encodes as `text`. Strict, because it reads what a network peer sent:
// the standard alphabet only, no whitespace, a length that is a multiple of 4, padding only at
// the end and unused bits zero — so exactly the canonical encodings decode ("" decodes to "").
// Anything else throws Error(kInvalidArgument).
std::string Base64Decode(std::string_view text);

// The raw 32-byte SHA-256 digest of `bytes` (Sha256 above gives hex, for names and hashes).
std::string Sha256Bytes(std::string_view bytes);

// The raw 32-byte HMAC-SHA-256 (RFC 2104) of `message` under `key`. Throws Error(kInternal) if
// libcrypto fails.
std::string HmacSha256(std::string_view key, std::string_view message);

// PBKDF2 (RFC 8018) with HMAC-SHA-256 and a 32-byte output: SCRAM's Hi(password, salt, i).
// `iterations` must be at least 1 (asserted). Throws Error(kInternal) if libcrypto fails.
std::string Pbkdf2Sha256(std::string_view password, std::string_view salt, int iterations);

// Whether `a` and `b` are equal, in a time that depends on their lengths only and not on where
// they first differ: for checking a proof or signature a peer sent against the expected one,
// whose length is public anyway.
bool ConstantTimeEquals(std::string_view a, std::string_view b);

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
