// SCRAM-SHA-256 authentication (RFC 5802 with RFC 7677's hash) as PostgreSQL speaks it, both
// ends: the proxy is the server for a test's clients (it checks their password against the
// lease's secret) and a client of the real PostgreSQL server (it logs in with the lease's
// password). Pure: these classes turn one SASL message into the next; the session moves the
// bytes (SASLInitialResponse, SASLResponse, AuthenticationSASLContinue, AuthenticationSASLFinal).
//
// The messages, as PostgreSQL sends them (no channel binding: the proxy does not speak TLS):
//   client-first   "n,,n=,r=<client nonce>"
//   server-first   "r=<client nonce><server nonce>,s=<salt base64>,i=<iterations>"
//   client-final   "c=biws,r=<both nonces>,p=<ClientProof base64>"
//   server-final   "v=<ServerSignature base64>"   or "e=<reason>"
// PostgreSQL leaves the user name in client-first empty (the startup packet's user counts), and
// applies SASLprep to passwords; for ASCII passwords, which are all testpool creates, SASLprep
// changes nothing, so it is not implemented here.
//
// Each object serves one authentication exchange and is not thread-safe; distinct objects are
// independent. Calling the steps out of order is a programmer error (asserted); anything a peer
// sent that breaks the protocol throws ScramError, whose message says what was wrong (for the
// proxy's FATAL reply or log, never containing secrets).
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace testpool::proxy {

// A peer sent a malformed or inconsistent SCRAM message, or the server refused us ("e=…").
class ScramError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What PostgreSQL stores for a SCRAM role (pg_authid.rolpassword), decoded: enough to check a
// client's proof without knowing its password. All byte fields are raw, not base64.
struct ScramSecret {
  int iterations = 0;
  std::string salt;
  std::string stored_key;  // H(HMAC(SaltedPassword, "Client Key")), 32 bytes
  std::string server_key;  // HMAC(SaltedPassword, "Server Key"), 32 bytes
};

// Parses PostgreSQL's verifier "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
// (base64 fields; util::ScramSha256Secret makes them). Throws Error(kInvalidArgument) when it is
// not one: another mechanism or shape, iterations not a positive decimal int, a field that is not
// canonical base64, an empty salt, or keys that are not 32 bytes.
ScramSecret ParseScramSecret(std::string_view verifier);

// A fresh nonce: 18 random bytes in base64 (24 printable characters, never ','), as PostgreSQL
// makes its own. Throws Error(kInternal) if the random generator fails.
std::string MakeScramNonce();

// The server's side of one exchange: HandleClientFirst, then HandleClientFinal, once each.
class ScramServer {
 public:
  // `server_nonce` is appended to the client's nonce; it must be non-empty printable ASCII
  // without ',' (asserted) and unpredictable — use MakeScramNonce().
  ScramServer(ScramSecret secret, std::string server_nonce);

  // Takes the client-first-message (the data of SASLInitialResponse) and returns the
  // server-first-message. The GS2 header must be "n,," or "y,," (the client cannot or would not
  // bind the channel; there is no TLS to bind to). Throws ScramError for channel binding
  // ("p=…"), an authorization identity ("a=…"), a mandatory extension ("m=…"), a missing or
  // empty nonce, a nonce with characters outside printable ASCII or with ',', or any other
  // malformation. The user name in "n=" is ignored, as PostgreSQL ignores it.
  std::string HandleClientFirst(std::string_view client_first);

  // Takes the client-final-message and returns the server-final-message ("v=<signature>") when
  // the client's proof shows it knows the password, or nullopt when it does not (a wrong
  // password: the caller answers "password authentication failed"). Throws ScramError when the
  // message is malformed (attributes missing or out of order, bad base64, a proof that is not 32
  // bytes, anything after the proof), when the channel-binding echo "c=" is not the GS2 header of
  // client-first, or when "r=" is not exactly the client's nonce followed by ours.
  std::optional<std::string> HandleClientFinal(std::string_view client_final);

 private:
  enum class Step { kClientFirst, kClientFinal, kDone };

  const ScramSecret secret_;
  const std::string server_nonce_;
  Step step_ = Step::kClientFirst;
  std::string gs2_header_;         // "n,," or "y,,", as the client sent it
  std::string client_first_bare_;  // client-first without the GS2 header
  std::string server_first_;
  std::string nonce_;  // client nonce + server nonce
};

// The client's side of one exchange: ClientFirst, HandleServerFirst, VerifyServerFinal, in order,
// once each.
class ScramClient {
 public:
  // The most PBKDF2 iterations a server may ask for; more is refused rather than spending
  // seconds of CPU on one login (PostgreSQL's default is 4096; testpool's own roles use fewer).
  static constexpr int kMaxIterations = 1'000'000;

  // `password` is used as is (see SASLprep above); `client_nonce` must be non-empty printable
  // ASCII without ',' (asserted) and unpredictable — use MakeScramNonce().
  ScramClient(std::string password, std::string client_nonce);

  // The client-first-message: "n,,n=,r=<client nonce>".
  std::string ClientFirst();

  // Takes the server-first-message and returns the client-final-message with the proof. Throws
  // ScramError when the message is malformed or has a mandatory extension ("m=…"), when the
  // server's nonce does not start with ours or adds nothing to it, when the salt is not canonical
  // base64 or empty, or when the iteration count is not a decimal in [1, kMaxIterations].
  std::string HandleServerFirst(std::string_view server_first);

  // Checks the server-final-message: "v=<signature>" must be the signature only a server that
  // holds the role's secret can make, else ScramError (the server is not who it claims to be).
  // "e=<reason>" throws ScramError naming the server's reason; anything else is malformed and
  // throws ScramError too.
  void VerifyServerFinal(std::string_view server_final);

 private:
  enum class Step { kClientFirst, kServerFirst, kServerFinal, kDone };

  const std::string password_;
  const std::string client_nonce_;
  Step step_ = Step::kClientFirst;
  std::string expected_server_signature_;  // raw, known once the proof is computed
};

}  // namespace testpool::proxy
