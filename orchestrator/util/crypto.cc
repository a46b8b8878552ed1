#include "orchestrator/util/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cassert>
#include <cstdint>

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

std::string RandomBytes(size_t n) {
  std::string buf(n, '\0');
  if (n > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(buf.data()), static_cast<int>(n)) != 1) {
    throw Error(ErrorCode::kInternal, "the random generator failed");
  }
  return buf;
}

std::string RandomHex(size_t n) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (char c : RandomBytes(n)) {
    const auto b = static_cast<unsigned char>(c);
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
// The 6-bit value of a base64 character, or -1. (EVP_DecodeBlock is too lenient for input from
// the network: it skips whitespace and returns the padding as zero bytes.)
int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string Base64Decode(std::string_view text) {
  auto invalid = [](const char* why) {
    return Error(ErrorCode::kInvalidArgument, std::string("invalid base64: ") + why);
  };
  if (text.size() % 4 != 0) throw invalid("the length is not a multiple of 4");
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t bits = 0;
  const size_t data_chars = text.size() - padding;
  for (size_t i = 0; i < data_chars; ++i) {
    const int v = Base64Value(text[i]);
    if (v < 0) throw invalid(text[i] == '=' ? "padding before the end" : "a character outside the alphabet");
    bits = (bits << 6) | static_cast<uint32_t>(v);
    if (i % 4 == 3) {
      out.push_back(static_cast<char>((bits >> 16) & 0xff));
      out.push_back(static_cast<char>((bits >> 8) & 0xff));
      out.push_back(static_cast<char>(bits & 0xff));
      bits = 0;
    }
  }
  // The last group: 3 characters hold 2 bytes and 2 spare bits, 2 characters 1 byte and 4 bits.
  if (padding == 1) {
    if ((bits & 0x3) != 0) throw invalid("non-zero unused bits");
    out.push_back(static_cast<char>((bits >> 10) & 0xff));
    out.push_back(static_cast<char>((bits >> 2) & 0xff));
  } else if (padding == 2) {
    if ((bits & 0xf) != 0) throw invalid("non-zero unused bits");
    out.push_back(static_cast<char>((bits >> 4) & 0xff));
  }
  return out;
}

std::string Sha256Bytes(std::string_view bytes) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return std::string(reinterpret_cast<char*>(digest), sizeof digest);
}

std::string HmacSha256(std::string_view key, std::string_view message) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &len) == nullptr) {
    throw Error(ErrorCode::kInternal, "HMAC-SHA-256 failed");
  }
  return std::string(reinterpret_cast<char*>(digest), len);
}

std::string Pbkdf2Sha256(std::string_view password, std::string_view salt, int iterations) {
  assert(iterations >= 1);
  unsigned char out[SHA256_DIGEST_LENGTH];
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()), static_cast<int>(salt.size()), iterations,
                        EVP_sha256(), sizeof out, out) != 1) {
    throw Error(ErrorCode::kInternal, "PBKDF2-HMAC-SHA-256 failed");
  }
  return std::string(reinterpret_cast<char*>(out), sizeof out);
}

bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && (a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0);
}

std::string ScramSha256Secret(std::string_view password, std::string_view salt, int iterations) {
  assert(iterations >= 1);
  for (char c : password) {
    if (c <= 0x20 || c >= 0x7f) {  // SASLprep would change it; we do not implement it
      throw Error(ErrorCode::kInvalidArgument, "a SCRAM password here must be printable ASCII without spaces");
    }
  }
  const std::string salted_password = Pbkdf2Sha256(password, salt, iterations);
  const std::string stored_key = Sha256Bytes(HmacSha256(salted_password, "Client Key"));
  const std::string server_key = HmacSha256(salted_password, "Server Key");
  return "SCRAM-SHA-256$" + std::to_string(iterations) + ":" + Base64(salt) + "$" + Base64(stored_key) + ":" +
         Base64(server_key);
}

std::string ScramSha256Secret(std::string_view password, int iterations) {
  return ScramSha256Secret(password, RandomBytes(16), iterations);
}

std::string RandomToken(size_t n) {
  static const char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz234567";
  std::string out;
  out.reserve(n);
  for (char c : RandomBytes(n)) out.push_back(kAlphabet[static_cast<unsigned char>(c) & 31]);
  return out;
}

}  // namespace testpool::util
