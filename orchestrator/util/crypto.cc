#include "orchestrator/util/crypto.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cassert>
#include <vector>

#include "orchestrator/util/error.h"

namespace testpool::util {

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr) != 1) {
    throw Error(ErrorCode::kInternal, "cannot initialise SHA-256");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_)); }

void Sha256::Update(std::string_view bytes) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), bytes.data(), bytes.size());
}

void Sha256::UpdateFramed(std::string_view bytes) {
  unsigned char len[8];
  uint64_t n = bytes.size();
  for (int i = 7; i >= 0; --i) {
    len[i] = static_cast<unsigned char>(n & 0xff);
    n >>= 8;
  }
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), len, sizeof len);
  Update(bytes);
}

std::string Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &len);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned int i = 0; i < len; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 0xf]);
  }
  return out;
}

namespace {
std::vector<unsigned char> RandomBytes(size_t n) {
  std::vector<unsigned char> buf(n);
  if (n > 0 && RAND_bytes(buf.data(), static_cast<int>(n)) != 1) {
    throw Error(ErrorCode::kInternal, "the random generator failed");
  }
  return buf;
}
}  // namespace

std::string RandomHex(size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (unsigned char b : RandomBytes(n)) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::string Base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

namespace {

std::string HmacSha256(std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(message.data()),
           message.size(), digest, &len) == nullptr) {
    throw Error(ErrorCode::kInternal, "HMAC-SHA-256 failed");
  }
  return std::string(reinterpret_cast<char*>(digest), len);
}

std::string Sha256Bytes(std::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
}

}  // namespace

std::string ScramSha256Secret(std::string_view password, std::string_view salt, int iterations) {
  assert(iterations >= 1);
  for (char c : password) {
    if (c <= 0x20 || c >= 0x7f) {  // SASLprep would change it; we do not implement it
      throw Error(ErrorCode::kInvalidArgument, "a SCRAM password here must be printable ASCII without spaces");
    }
  }
  unsigned char salted[SHA256_DIGEST_LENGTH];
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iterations,
                        EVP_sha256(), sizeof salted, salted) != 1) {
    throw Error(ErrorCode::kInternal, "PBKDF2-HMAC-SHA-256 failed");
  }
  const std::string salted_password(reinterpret_cast<char*>(salted), sizeof salted);
  const std::string stored_key = Sha256Bytes(HmacSha256(salted_password, "Client Key"));
  const std::string server_key = HmacSha256(salted_password, "Server Key");
  return "SCRAM-SHA-256$" + std::to_string(iterations) + ":" + Base64(salt) + "$" + Base64(stored_key) + ":" +
         Base64(server_key);
}

std::string ScramSha256Secret(std::string_view password, int iterations) {
  const std::vector<unsigned char> salt = RandomBytes(16);
  return ScramSha256Secret(password, std::string_view(reinterpret_cast<const char*>(salt.data()), salt.size()),
                           iterations);
}

std::string RandomToken(size_t n) {
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  out.reserve(n);
  for (unsigned char b : RandomBytes(n)) out.push_back(kAlphabet[b & 31]);
  return out;
}

}  // namespace testpool::util
