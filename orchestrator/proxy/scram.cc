#include "orchestrator/proxy/scram.h"

#include <cassert>
#include <climits>
#include <utility>
#include <vector>

#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"

namespace testpool::proxy {
namespace {

constexpr size_t kKeyLength = 32;  // SHA-256 output: keys, proofs and signatures

// The message split at ','. SCRAM values never hold a ',' (user names escape it as "=2C",
// base64 and nonces exclude it), so this is exact; "n,,n=,r=x" gives {"n", "", "n=", "r=x"}.
std::vector<std::string_view> SplitAttributes(std::string_view message) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t comma = message.find(',', start);
    if (comma == std::string_view::npos) {
      parts.push_back(message.substr(start));
      return parts;
    }
    parts.push_back(message.substr(start, comma - start));
    start = comma + 1;
  }
}

// The value of attribute `name` in `part` ("r=abc" → "abc"), or nullopt when `part` is another
// attribute or not one at all.
std::optional<std::string_view> AttributeValue(std::string_view part, char name) {
  if (part.size() < 2 || part[0] != name || part[1] != '=') return std::nullopt;
  return part.substr(2);
}

// RFC 5802's extensions: any attribute "x=…" with a letter for a name. Unknown optional
// extensions are ignored, as the RFC and PostgreSQL ask.
bool IsExtension(std::string_view part) {
  const char c = part.empty() ? '\0' : part[0];
  return part.size() >= 2 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) && part[1] == '=';
}

// RFC 5802's "printable": ASCII 0x21–0x7E except ','.
bool IsPrintableNonce(std::string_view nonce) {
  if (nonce.empty()) return false;
  for (char c : nonce) {
    if (c < 0x21 || c > 0x7e || c == ',') return false;
  }
  return true;
}

// A decimal in [1, max] without sign, spaces or anything else; nullopt otherwise.
std::optional<int> ParsePositive(std::string_view digits, int max) {
  if (digits.empty()) return std::nullopt;
  long long value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
    if (value > max) return std::nullopt;
  }
  if (value < 1) return std::nullopt;
  return static_cast<int>(value);
}

// Base64Decode for what a peer sent: a bad encoding is the peer's protocol error.
std::string DecodeFromPeer(std::string_view text, const char* what) {
  try {
    return util::Base64Decode(text);
  } catch (const Error&) {
    throw ScramError(std::string("the SCRAM ") + what + " is not valid base64");
  }
}

std::string Xor(std::string_view a, std::string_view b) {
  assert(a.size() == b.size());
  std::string out(a.size(), '\0');
  for (size_t i = 0; i < a.size(); ++i) out[i] = static_cast<char>(a[i] ^ b[i]);
  return out;
}

// RFC 5802's AuthMessage, which both proof and signature sign.
std::string AuthMessage(std::string_view client_first_bare, std::string_view server_first,
                        std::string_view client_final_without_proof) {
  std::string out(client_first_bare);
  out += ',';
  out += server_first;
  out += ',';
  out += client_final_without_proof;
  return out;
}

}  // namespace

ScramSecret ParseScramSecret(std::string_view verifier) {
  auto invalid = [](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument, "not a PostgreSQL SCRAM-SHA-256 secret: " + why);
  };
  // The verifier itself is never quoted in errors: with its keys a listener could impersonate
  // the server or attack the password offline.
  constexpr std::string_view kPrefix = "SCRAM-SHA-256$";
  if (verifier.substr(0, kPrefix.size()) != kPrefix) throw invalid("it does not start with " + std::string(kPrefix));
  const std::string_view rest = verifier.substr(kPrefix.size());
  const size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) throw invalid("the keys are missing");
  const std::string_view params = rest.substr(0, dollar), keys = rest.substr(dollar + 1);
  const size_t colon1 = params.find(':'), colon2 = keys.find(':');
  if (colon1 == std::string_view::npos || colon2 == std::string_view::npos) {
    throw invalid("expected <iterations>:<salt>$<StoredKey>:<ServerKey>");
  }
  ScramSecret secret;
  const std::optional<int> iterations = ParsePositive(params.substr(0, colon1), INT_MAX);
  if (!iterations) throw invalid("the iteration count is not a positive integer");
  secret.iterations = *iterations;
  try {
    secret.salt = util::Base64Decode(params.substr(colon1 + 1));
    secret.stored_key = util::Base64Decode(keys.substr(0, colon2));
    secret.server_key = util::Base64Decode(keys.substr(colon2 + 1));
  } catch (const Error&) {
    throw invalid("a field is not valid base64");  // a ':' or '$' too many lands here as well
  }
  if (secret.salt.empty()) throw invalid("the salt is empty");
  if (secret.stored_key.size() != kKeyLength || secret.server_key.size() != kKeyLength) {
    throw invalid("the keys are not 32 bytes");
  }
  return secret;
}

std::string MakeScramNonce() { return util::Base64(util::RandomBytes(18)); }

// ---------------------------------------------------------------------------------------------
// Server

ScramServer::ScramServer(ScramSecret secret, std::string server_nonce)
    : secret_(std::move(secret)), server_nonce_(std::move(server_nonce)) {
  assert(IsPrintableNonce(server_nonce_));
  assert(secret_.iterations >= 1 && secret_.stored_key.size() == kKeyLength && secret_.server_key.size() == kKeyLength);
}

std::string ScramServer::HandleClientFirst(std::string_view client_first) {
  assert(step_ == Step::kClientFirst);
  const std::vector<std::string_view> parts = SplitAttributes(client_first);
  // gs2-header: cbind-flag "," [authzid] ","
  const std::string_view flag = parts[0];
  if (flag.substr(0, 2) == "p=") {
    throw ScramError("the client asked for SCRAM channel binding, which needs TLS; this connection has none");
  }
  if (flag != "n" && flag != "y") throw ScramError("malformed SCRAM client-first-message (GS2 header)");
  if (parts.size() < 4) throw ScramError("malformed SCRAM client-first-message");
  if (!parts[1].empty()) {
    if (AttributeValue(parts[1], 'a')) throw ScramError("SCRAM authorization identities are not supported");
    throw ScramError("malformed SCRAM client-first-message (GS2 header)");
  }
  // client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions]
  if (AttributeValue(parts[2], 'm')) throw ScramError("the client requires an unsupported SCRAM extension");
  if (!AttributeValue(parts[2], 'n')) throw ScramError("SCRAM client-first-message without a user name attribute");
  const std::optional<std::string_view> client_nonce = AttributeValue(parts[3], 'r');
  if (!client_nonce) throw ScramError("SCRAM client-first-message without a nonce");
  if (!IsPrintableNonce(*client_nonce)) throw ScramError("the client's SCRAM nonce is empty or not printable");
  for (size_t i = 4; i < parts.size(); ++i) {
    if (!IsExtension(parts[i])) throw ScramError("malformed SCRAM client-first-message (after the nonce)");
  }

  gs2_header_ = std::string(flag) + ",,";
  client_first_bare_ = std::string(client_first.substr(gs2_header_.size()));
  nonce_ = std::string(*client_nonce) + server_nonce_;
  server_first_ = "r=" + nonce_ + ",s=" + util::Base64(secret_.salt) + ",i=" + std::to_string(secret_.iterations);
  step_ = Step::kClientFinal;
  return server_first_;
}

std::optional<std::string> ScramServer::HandleClientFinal(std::string_view client_final) {
  assert(step_ == Step::kClientFinal);
  step_ = Step::kDone;
  // channel-binding "," nonce ["," extensions] "," proof — the proof last, as PostgreSQL wants.
  const std::vector<std::string_view> parts = SplitAttributes(client_final);
  if (parts.size() < 3) throw ScramError("malformed SCRAM client-final-message");
  const std::optional<std::string_view> binding = AttributeValue(parts[0], 'c');
  const std::optional<std::string_view> nonce = AttributeValue(parts[1], 'r');
  const std::optional<std::string_view> proof_b64 = AttributeValue(parts.back(), 'p');
  if (!binding || !nonce || !proof_b64) {
    throw ScramError("malformed SCRAM client-final-message (expected c=…,r=…,p=… with the proof last)");
  }
  for (size_t i = 2; i + 1 < parts.size(); ++i) {
    if (!IsExtension(parts[i])) throw ScramError("malformed SCRAM client-final-message (extensions)");
  }
  if (DecodeFromPeer(*binding, "channel binding") != gs2_header_) {
    throw ScramError("the SCRAM channel binding does not match the client-first-message");
  }
  if (*nonce != nonce_) throw ScramError("the SCRAM nonce does not match");
  const std::string proof = DecodeFromPeer(*proof_b64, "client proof");
  if (proof.size() != kKeyLength) throw ScramError("the SCRAM client proof is not 32 bytes");

  const std::string_view without_proof = client_final.substr(0, client_final.size() - parts.back().size() - 1);
  const std::string auth_message = AuthMessage(client_first_bare_, server_first_, without_proof);
  // The proof is ClientKey XOR HMAC(StoredKey, AuthMessage); recover ClientKey and check that it
  // hashes to StoredKey. Only someone who knows the password can produce it.
  const std::string client_key = Xor(proof, util::HmacSha256(secret_.stored_key, auth_message));
  if (!util::ConstantTimeEquals(util::Sha256Bytes(client_key), secret_.stored_key)) return std::nullopt;
  return "v=" + util::Base64(util::HmacSha256(secret_.server_key, auth_message));
}

// ---------------------------------------------------------------------------------------------
// Client

ScramClient::ScramClient(std::string password, std::string client_nonce)
    : password_(std::move(password)), client_nonce_(std::move(client_nonce)) {
  assert(IsPrintableNonce(client_nonce_));
}

std::string ScramClient::ClientFirst() {
  assert(step_ == Step::kClientFirst);
  step_ = Step::kServerFirst;
  return "n,,n=,r=" + client_nonce_;
}

std::string ScramClient::HandleServerFirst(std::string_view server_first) {
  assert(step_ == Step::kServerFirst);
  step_ = Step::kServerFinal;
  // [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
  const std::vector<std::string_view> parts = SplitAttributes(server_first);
  if (AttributeValue(parts[0], 'm')) throw ScramError("the server requires an unsupported SCRAM extension");
  if (parts.size() < 3) throw ScramError("malformed SCRAM server-first-message");
  const std::optional<std::string_view> nonce = AttributeValue(parts[0], 'r');
  const std::optional<std::string_view> salt_b64 = AttributeValue(parts[1], 's');
  const std::optional<std::string_view> iterations_text = AttributeValue(parts[2], 'i');
  if (!nonce || !salt_b64 || !iterations_text) {
    throw ScramError("malformed SCRAM server-first-message (expected r=…,s=…,i=…)");
  }
  for (size_t i = 3; i < parts.size(); ++i) {
    if (!IsExtension(parts[i])) throw ScramError("malformed SCRAM server-first-message (extensions)");
  }
  // The server must extend our nonce: that ties its answer to this exchange, not a replayed one.
  if (nonce->size() <= client_nonce_.size() || nonce->substr(0, client_nonce_.size()) != client_nonce_ ||
      !IsPrintableNonce(*nonce)) {
    throw ScramError("the server's SCRAM nonce does not extend ours");
  }
  const std::string salt = DecodeFromPeer(*salt_b64, "salt");
  if (salt.empty()) throw ScramError("the server sent an empty SCRAM salt");
  const std::optional<int> iterations = ParsePositive(*iterations_text, kMaxIterations);
  if (!iterations) {
    throw ScramError("the server's SCRAM iteration count is not an integer from 1 to " +
                     std::to_string(kMaxIterations));
  }

  const std::string salted_password = util::Pbkdf2Sha256(password_, salt, *iterations);
  const std::string client_key = util::HmacSha256(salted_password, "Client Key");
  const std::string stored_key = util::Sha256Bytes(client_key);
  const std::string server_key = util::HmacSha256(salted_password, "Server Key");
  // "biws" is base64("n,,"): no channel binding, as our GS2 header said.
  const std::string without_proof = "c=biws,r=" + std::string(*nonce);
  const std::string auth_message = AuthMessage("n=,r=" + client_nonce_, server_first, without_proof);
  const std::string proof = Xor(client_key, util::HmacSha256(stored_key, auth_message));
  expected_server_signature_ = util::HmacSha256(server_key, auth_message);
  return without_proof + ",p=" + util::Base64(proof);
}

void ScramClient::VerifyServerFinal(std::string_view server_final) {
  assert(step_ == Step::kServerFinal);
  step_ = Step::kDone;
  if (const std::optional<std::string_view> reason = AttributeValue(server_final, 'e')) {
    throw ScramError("the server refused SCRAM authentication: " + std::string(*reason));
  }
  const std::optional<std::string_view> signature_b64 = AttributeValue(server_final, 'v');
  if (!signature_b64) throw ScramError("malformed SCRAM server-final-message");
  const std::string signature = DecodeFromPeer(*signature_b64, "server signature");
  if (!util::ConstantTimeEquals(signature, expected_server_signature_)) {
    throw ScramError("the server's SCRAM signature is wrong: it does not hold the role's secret");
  }
}

}  // namespace testpool::proxy
