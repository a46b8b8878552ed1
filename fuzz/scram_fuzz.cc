// SCRAM-SHA-256 (proxy/scram.h): the proxy's server side, which reads what any lease holder's
// client sends, and its client side and verifier parser, which read what a server stores or sends.
//
// Input: a mode byte, then text; "A\nB" below means the text cut at its first '\n' (B may be
// absent). The password, salt, iteration count and both nonces are fixed, so an input replays.
//   's' (and any byte not listed): A is the client-first-message, B the client-final-message.
//   'h': A is the client-first-message; the final message is the one an honest client who knows
//        the password sends, with B inserted as extensions before the proof when not empty.
//   'c': the client side: A is the server-first-message, B the server-final-message ("" means
//        the one the real server would send). Iteration counts above 4096 are skipped (PBKDF2's
//        cost, not a parser's).
//   'v': the whole text is a stored verifier for ParseScramSecret.
//
// Checked: only ScramError leaves the exchanges (ParseScramSecret: only Error(kInvalidArgument));
// the server-first-message extends the client's nonce with ours and carries our salt and count;
// the server accepts a client-final-message exactly when its proof is the one RFC 5802 computes
// from the password (recomputed here from the formulas, not through ScramServer), and then signs
// with the right ServerSignature; an honest client is accepted unless its extensions are
// malformed; the client accepts exactly the right server signature; a parsed verifier encodes
// back to one that parses to the same secret.
#include <optional>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "orchestrator/proxy/scram.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"

namespace testpool::proxy {
namespace {

using fuzz::Unexpected;

constexpr std::string_view kPassword = "fuzz-password";
constexpr std::string_view kSalt = "0123456789abcdef";
constexpr int kIterations = 16;
constexpr std::string_view kServerNonce = "fuzzServerNonceAAAAAAAAA";
constexpr std::string_view kClientNonce = "fuzzClientNonceBBBBBBBBB";

const ScramSecret& Secret() {
  static const ScramSecret secret = ParseScramSecret(util::ScramSha256Secret(kPassword, kSalt, kIterations));
  return secret;
}

// RFC 5802's keys for `password`, computed from the formulas.
struct Keys {
  std::string client_key, stored_key, server_key;
};
Keys KeysFor(std::string_view password, std::string_view salt, int iterations) {
  const std::string salted = util::Pbkdf2Sha256(password, salt, iterations);
  Keys k;
  k.client_key = util::HmacSha256(salted, "Client Key");
  k.stored_key = util::Sha256Bytes(k.client_key);
  k.server_key = util::HmacSha256(salted, "Server Key");
  return k;
}

std::string Xor(std::string_view a, std::string_view b) {
  std::string out(a);
  for (size_t i = 0; i < out.size() && i < b.size(); ++i) out[i] = static_cast<char>(out[i] ^ b[i]);
  return out;
}

std::string ProofFor(const Keys& k, std::string_view auth_message) {
  return util::Base64(Xor(k.client_key, util::HmacSha256(k.stored_key, auth_message)));
}

// The server's exchange. `final_extensions`: nullopt → `second` is the client-final-message as
// is; else the harness writes the honest final message with these extensions.
void ServerExchange(std::string_view client_first, std::optional<std::string_view> client_final,
                    std::optional<std::string_view> honest_extensions) {
  ScramServer server(Secret(), std::string(kServerNonce));
  std::string server_first;
  try {
    server_first = server.HandleClientFirst(client_first);
  } catch (const ScramError&) {
    return;
  } catch (const std::exception& e) {
    Unexpected("HandleClientFirst", e);
  }
  // "r=<client nonce><server nonce>,s=<salt>,i=<count>"
  const std::string tail = std::string(kServerNonce) + ",s=" + util::Base64(kSalt) + ",i=" + std::to_string(kIterations);
  FUZZ_CHECK(server_first.size() > 2 + tail.size() && server_first.substr(0, 2) == "r=");
  FUZZ_CHECK(server_first.substr(server_first.size() - tail.size()) == tail);
  const std::string nonce = server_first.substr(2, server_first.size() - tail.size() - 2) + std::string(kServerNonce);
  FUZZ_CHECK(client_first.find(",r=" + nonce.substr(0, nonce.size() - kServerNonce.size())) != std::string_view::npos);
  for (char ch : nonce) FUZZ_CHECK(ch >= 0x21 && ch <= 0x7e && ch != ',');

  const Keys keys = KeysFor(kPassword, kSalt, kIterations);
  const std::string gs2(client_first.substr(0, 3));
  FUZZ_CHECK(gs2 == "n,," || gs2 == "y,,");
  const std::string_view client_first_bare = client_first.substr(3);
  std::string final_message;
  if (honest_extensions) {
    std::string without_proof = "c=" + util::Base64(gs2) + ",r=" + nonce;
    if (!honest_extensions->empty()) without_proof += "," + std::string(*honest_extensions);
    const std::string auth = std::string(client_first_bare) + "," + server_first + "," + without_proof;
    final_message = without_proof + ",p=" + ProofFor(keys, auth);
  } else {
    if (!client_final) return;
    final_message = std::string(*client_final);
  }

  std::optional<std::string> server_final;
  try {
    server_final = server.HandleClientFinal(final_message);
  } catch (const ScramError&) {
    // An honest client is refused only for the extensions it was given.
    FUZZ_CHECK(!honest_extensions || !honest_extensions->empty());
    return;
  } catch (const std::exception& e) {
    Unexpected("HandleClientFinal", e);
  }
  if (!server_final) {
    FUZZ_CHECK(!honest_extensions);
    return;
  }
  // Accepted: the proof must be RFC 5802's for our password over this exchange, and the answer
  // the matching server signature.
  const size_t proof_at = final_message.rfind(",p=");
  FUZZ_CHECK(proof_at != std::string::npos);
  const std::string without_proof = final_message.substr(0, proof_at);
  const std::string auth = std::string(client_first_bare) + "," + server_first + "," + without_proof;
  FUZZ_CHECK(final_message.substr(proof_at + 3) == ProofFor(keys, auth));
  FUZZ_CHECK(*server_final == "v=" + util::Base64(util::HmacSha256(keys.server_key, auth)));
}

// The value of attribute `name` ("s=…") among the ','-separated parts of `message`, or nullopt.
std::optional<std::string_view> Attribute(std::string_view message, std::string_view name) {
  size_t start = 0;
  while (start <= message.size()) {
    size_t comma = message.find(',', start);
    if (comma == std::string_view::npos) comma = message.size();
    const std::string_view part = message.substr(start, comma - start);
    if (part.substr(0, name.size()) == name) return part.substr(name.size());
    start = comma + 1;
  }
  return std::nullopt;
}

void ClientExchange(std::string_view server_first, std::optional<std::string_view> server_final) {
  // PBKDF2 over a large count costs seconds: not what this target is for.
  if (std::optional<std::string_view> i = Attribute(server_first, "i=")) {
    if (i->size() > 4 || (i->size() == 4 && *i > "4096")) return;
  }
  ScramClient client{std::string(kPassword), std::string(kClientNonce)};
  const std::string client_first = client.ClientFirst();
  FUZZ_CHECK(client_first == "n,,n=,r=" + std::string(kClientNonce));
  std::string client_final;
  try {
    client_final = client.HandleServerFirst(server_first);
  } catch (const ScramError&) {
    return;
  } catch (const std::exception& e) {
    Unexpected("HandleServerFirst", e);
  }
  // Accepted: it carried our nonce extended, a salt and a count; recompute what the real server
  // would sign.
  const std::optional<std::string_view> nonce = Attribute(server_first, "r=");
  const std::optional<std::string_view> salt_b64 = Attribute(server_first, "s=");
  const std::optional<std::string_view> count = Attribute(server_first, "i=");
  FUZZ_CHECK(nonce && salt_b64 && count);
  FUZZ_CHECK(nonce->size() > kClientNonce.size() && nonce->substr(0, kClientNonce.size()) == kClientNonce);
  const std::string without_proof = "c=biws,r=" + std::string(*nonce);
  FUZZ_CHECK(client_final.substr(0, without_proof.size() + 3) == without_proof + ",p=");
  const Keys keys = KeysFor(kPassword, util::Base64Decode(*salt_b64), std::stoi(std::string(*count)));
  const std::string auth = "n=,r=" + std::string(kClientNonce) + "," + std::string(server_first) + "," + without_proof;
  FUZZ_CHECK(client_final.substr(without_proof.size() + 3) == ProofFor(keys, auth));
  const std::string right = "v=" + util::Base64(util::HmacSha256(keys.server_key, auth));

  const std::string final_message = server_final && !server_final->empty() ? std::string(*server_final) : right;
  try {
    client.VerifyServerFinal(final_message);
  } catch (const ScramError&) {
    FUZZ_CHECK(final_message != right);
    return;
  } catch (const std::exception& e) {
    Unexpected("VerifyServerFinal", e);
  }
  FUZZ_CHECK(final_message == right);
}

void Verifier(std::string_view text) {
  ScramSecret secret;
  try {
    secret = ParseScramSecret(text);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == ErrorCode::kInvalidArgument);
    return;
  } catch (const std::exception& e) {
    Unexpected("ParseScramSecret", e);
  }
  FUZZ_CHECK(secret.iterations >= 1 && !secret.salt.empty());
  FUZZ_CHECK(secret.stored_key.size() == 32 && secret.server_key.size() == 32);
  const std::string again = "SCRAM-SHA-256$" + std::to_string(secret.iterations) + ":" + util::Base64(secret.salt) +
                            "$" + util::Base64(secret.stored_key) + ":" + util::Base64(secret.server_key);
  const ScramSecret reparsed = ParseScramSecret(again);
  FUZZ_CHECK(reparsed.iterations == secret.iterations && reparsed.salt == secret.salt &&
             reparsed.stored_key == secret.stored_key && reparsed.server_key == secret.server_key);
}

}  // namespace
}  // namespace testpool::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace testpool::proxy;
  if (size == 0) return 0;
  const char mode = static_cast<char>(data[0]);
  const std::string_view text = testpool::fuzz::AsText(data + 1, size - 1);
  if (mode == 'v') {
    Verifier(text);
    return 0;
  }
  const size_t newline = text.find('\n');
  const std::string_view first = text.substr(0, newline);
  std::optional<std::string_view> second;
  if (newline != std::string_view::npos) second = text.substr(newline + 1);
  if (mode == 'c') {
    ClientExchange(first, second);
  } else if (mode == 'h') {
    ServerExchange(first, std::nullopt, second.value_or(""));
  } else {
    ServerExchange(first, second, std::nullopt);
  }
  return 0;
}
