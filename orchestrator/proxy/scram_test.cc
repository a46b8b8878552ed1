#include "orchestrator/proxy/scram.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"

namespace testpool::proxy {
namespace {

// RFC 7677 section 3's example: user "user", password "pencil", 4096 iterations.
constexpr char kPassword[] = "pencil";
constexpr char kSaltB64[] = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr char kClientNonce[] = "rOprNGfwEbeRWgbNEkqO";
constexpr char kServerNonce[] = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr char kBothNonces[] = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

ScramSecret PencilSecret() {
  return ParseScramSecret(util::ScramSha256Secret(kPassword, util::Base64Decode(kSaltB64), 4096));
}

// Runs `client` against a server holding `secret`, up to the server's answer to the proof.
std::optional<std::string> Exchange(ScramClient& client, const ScramSecret& secret) {
  ScramServer server(secret, MakeScramNonce());
  const std::string server_first = server.HandleClientFirst(client.ClientFirst());
  return server.HandleClientFinal(client.HandleServerFirst(server_first));
}

// --- ParseScramSecret ---

TEST(ParseScramSecret, DecodesPostgresqlsVerifier) {
  const ScramSecret s = ParseScramSecret(
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
      "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
  EXPECT_EQ(s.iterations, 4096);
  EXPECT_EQ(util::Base64(s.salt), kSaltB64);
  EXPECT_EQ(util::Base64(s.stored_key), "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=");
  EXPECT_EQ(util::Base64(s.server_key), "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
}

TEST(ParseScramSecret, RejectsMalformedVerifiers) {
  const std::string keys = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  for (const std::string& bad : std::vector<std::string>{
           std::string(""),
           "md5c4ca4238a0b923820dcc509a6f75849b",
           "SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,
           "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==",                 // no keys
           "SCRAM-SHA-256$4096W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,          // no ':' after the count
           "SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,            // zero iterations
           "SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,           // negative
           "SCRAM-SHA-256$+4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,        // a sign
           "SCRAM-SHA-256$99999999999:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys,  // overflows int
           "SCRAM-SHA-256$4096:$" + keys,                                 // empty salt
           "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$" + keys,          // bad base64
           "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$Zm9v:Zm9v",       // keys too short
           "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys + ":Zm9v",
           "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$" + keys + "$x",
       }) {
    try {
      ParseScramSecret(bad);
      ADD_FAILURE() << "accepted: " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(MakeScramNonce, IsPrintableWithoutCommasAndFresh) {
  const std::string a = MakeScramNonce();
  EXPECT_EQ(a.size(), 24u);
  EXPECT_EQ(a.find(','), std::string::npos);
  for (char c : a) EXPECT_TRUE(c > 0x20 && c < 0x7f) << a;
  EXPECT_NE(a, MakeScramNonce());
}

// --- the two sides together ---

TEST(Scram, ClientAndServerAgreeOnTheRightPassword) {
  ScramClient client(kPassword, MakeScramNonce());
  const std::optional<std::string> server_final = Exchange(client, PencilSecret());
  ASSERT_TRUE(server_final.has_value());
  EXPECT_NO_THROW(client.VerifyServerFinal(*server_final));
}

TEST(Scram, AWrongPasswordIsRefusedWithoutAnError) {
  for (const char* wrong : {"pencil2", "Pencil", ""}) {
    ScramClient client(wrong, MakeScramNonce());
    EXPECT_EQ(Exchange(client, PencilSecret()), std::nullopt) << wrong;
  }
}

TEST(Scram, AClientAuthenticatesAgainstTheSecretTestpoolStores) {
  // util::ScramSha256Secret is what testpool gives CREATE ROLE … PASSWORD; the proxy checks
  // clients against the same text.
  const std::string password = util::RandomToken(26);
  const ScramSecret secret = ParseScramSecret(util::ScramSha256Secret(password, 16));
  ScramClient client(password, MakeScramNonce());
  const std::optional<std::string> server_final = Exchange(client, secret);
  ASSERT_TRUE(server_final.has_value());
  EXPECT_NO_THROW(client.VerifyServerFinal(*server_final));

  ScramClient wrong(password + "x", MakeScramNonce());
  EXPECT_EQ(Exchange(wrong, secret), std::nullopt);
}

// --- RFC 7677's test vector ---

TEST(ScramServer, ReproducesTheRfc7677Exchange) {
  // The RFC's client names its user ("n=user"); the server ignores the name but signs the
  // message as sent, so the RFC's proof and signature hold.
  ScramServer server(PencilSecret(), kServerNonce);
  EXPECT_EQ(server.HandleClientFirst(std::string("n,,n=user,r=") + kClientNonce),
            std::string("r=") + kBothNonces + ",s=" + kSaltB64 + ",i=4096");
  EXPECT_EQ(server.HandleClientFinal(std::string("c=biws,r=") + kBothNonces +
                                     ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

TEST(ScramClient, ComputesTheRfc7677ProofForAnEmptyUserName) {
  // The RFC's exchange with PostgreSQL's "n=" instead of "n=user": the proof and signature were
  // computed with Python's hashlib/hmac, not with this code.
  ScramClient client(kPassword, kClientNonce);
  EXPECT_EQ(client.ClientFirst(), std::string("n,,n=,r=") + kClientNonce);
  EXPECT_EQ(client.HandleServerFirst(std::string("r=") + kBothNonces + ",s=" + kSaltB64 + ",i=4096"),
            std::string("c=biws,r=") + kBothNonces + ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=");
  EXPECT_NO_THROW(client.VerifyServerFinal("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="));
}

TEST(ScramServer, AcceptsThePostgresqlClientsEmptyUserName) {
  ScramServer server(PencilSecret(), kServerNonce);
  server.HandleClientFirst(std::string("n,,n=,r=") + kClientNonce);
  EXPECT_EQ(server.HandleClientFinal(std::string("c=biws,r=") + kBothNonces +
                                     ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k="),
            "v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg=");
}

// --- the server against bad clients ---

// A server that has answered client-first "n,,n=,r=<kClientNonce>".
class ScramServerFinalTest : public ::testing::Test {
 protected:
  void SetUp() override { server_.HandleClientFirst(std::string("n,,n=,r=") + kClientNonce); }
  ScramServer server_{PencilSecret(), kServerNonce};
  const std::string good_proof_ = "p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k=";
};

TEST_F(ScramServerFinalTest, RejectsATamperedNonce) {
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces + "x," + good_proof_), ScramError);
}

TEST_F(ScramServerFinalTest, RejectsOnlyTheClientsHalfOfTheNonce) {
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kClientNonce + "," + good_proof_), ScramError);
}

TEST_F(ScramServerFinalTest, RejectsAChannelBindingThatIsNotTheGs2Header) {
  // "eSws" is base64("y,,"), but the client said "n,,".
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=eSws,r=") + kBothNonces + "," + good_proof_), ScramError);
}

TEST_F(ScramServerFinalTest, RejectsAProofThatIsNotBase64) {
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces +
                                         ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9k"),
               ScramError);
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces + ",p=qvT2SWdE!5Q0"), ScramError);
}

TEST_F(ScramServerFinalTest, RejectsAProofOfTheWrongLength) {
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces + ",p=Zm9vYmFy"), ScramError);
}

TEST_F(ScramServerFinalTest, TreatsAFlippedProofBitAsAWrongPassword) {
  EXPECT_EQ(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces +
                                      ",p=qvT2SWdEH5Q06albL+hjSYuUhCG7VndFyzIb7CK4n9g="),
            std::nullopt);
}

TEST_F(ScramServerFinalTest, RejectsAttributesOutOfOrderOrAfterTheProof) {
  EXPECT_THROW(server_.HandleClientFinal(std::string("r=") + kBothNonces + ",c=biws," + good_proof_), ScramError);
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces + "," + good_proof_ + ",x=1"),
               ScramError);
}

TEST_F(ScramServerFinalTest, RejectsAMissingProof) {
  EXPECT_THROW(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces), ScramError);
}

TEST_F(ScramServerFinalTest, IgnoresExtensionsBeforeTheProof) {
  // The extension is part of the signed message, so the RFC vector's proof no longer fits: a
  // wrong password, not a malformed message.
  EXPECT_EQ(server_.HandleClientFinal(std::string("c=biws,r=") + kBothNonces + ",x=whatever," + good_proof_),
            std::nullopt);
}

TEST(ScramServer, AcceptsAClientThatCouldBindButThinksWeCannot) {
  // "y,," with its echo "eSws" (base64 of "y,,"); proof and signature computed with Python.
  ScramServer server(PencilSecret(), kServerNonce);
  server.HandleClientFirst(std::string("y,,n=,r=") + kClientNonce);
  EXPECT_EQ(server.HandleClientFinal(std::string("c=eSws,r=") + kBothNonces +
                                     ",p=VpuC5DGQa5ro9tXE9MnKs69NH1nxnuregZZcclqIGfM="),
            "v=FOmOj9BpTGwvnzwBtWQjBaPmVxT9I8IeHBOhcIPu3us=");
}

TEST(ScramServer, RejectsAnEchoOfNoBindingAfterAYHeader) {
  ScramServer server(PencilSecret(), kServerNonce);
  server.HandleClientFirst(std::string("y,,n=,r=") + kClientNonce);
  EXPECT_THROW(server.HandleClientFinal(std::string("c=biws,r=") + kBothNonces +
                                        ",p=VpuC5DGQa5ro9tXE9MnKs69NH1nxnuregZZcclqIGfM="),
               ScramError);
}

TEST(ScramServer, RejectsMalformedClientFirstMessages) {
  for (const std::string& bad : std::vector<std::string>{
           std::string(""), "n,,", "n,,n=", "n,,n=,",
           "n,,n=,r=",                          // empty nonce
           "n,,r=abc",                          // no user name
           "n,,n=,x=abc",                       // no nonce
           "x,,n=,r=abc",                       // unknown GS2 flag
           "n,n=,r=abc",                        // GS2 header cut short
           "p=tls-server-end-point,,n=,r=abc",  // channel binding without TLS
           "n,a=admin,n=,r=abc",                // authorization identity
           "n,,m=ext,n=,r=abc",                 // mandatory extension
           "n,,n=,r=ab c",                      // space in the nonce
           "n,,n=,r=abc,",                      // a trailing comma
           "n,,n=,r=abc,1=x",                   // an extension needs a letter
           std::string("n,,n=,r=ab\x01", 11),   // control character
       }) {
    ScramServer server(PencilSecret(), kServerNonce);
    EXPECT_THROW(server.HandleClientFirst(bad), ScramError) << bad;
  }
}

TEST(ScramServer, IgnoresTheUserNameAndOptionalExtensions) {
  ScramServer server(PencilSecret(), kServerNonce);
  EXPECT_EQ(server.HandleClientFirst("n,,n=some=2Cone,r=abc,x=ext"),
            std::string("r=abc") + kServerNonce + ",s=" + kSaltB64 + ",i=4096");
}

// --- the client against bad servers ---

class ScramClientTest : public ::testing::Test {
 protected:
  void SetUp() override { client_.ClientFirst(); }
  std::string ServerFirst(const std::string& nonce, const std::string& salt, const std::string& iterations) {
    return "r=" + nonce + ",s=" + salt + ",i=" + iterations;
  }
  ScramClient client_{kPassword, kClientNonce};
};

TEST_F(ScramClientTest, RejectsANonceThatDoesNotExtendOurs) {
  EXPECT_THROW(client_.HandleServerFirst(ServerFirst("XOprNGfwEbeRWgbNEkqO%hvY", kSaltB64, "4096")), ScramError);
}

TEST_F(ScramClientTest, RejectsANonceTheServerAddedNothingTo) {
  EXPECT_THROW(client_.HandleServerFirst(ServerFirst(kClientNonce, kSaltB64, "4096")), ScramError);
}

TEST_F(ScramClientTest, RejectsIterationCountsOutOfRange) {
  for (const char* count : {"0", "-1", "", "4096x", "1000001", "99999999999999999999"}) {
    ScramClient client(kPassword, kClientNonce);
    client.ClientFirst();
    EXPECT_THROW(client.HandleServerFirst(ServerFirst(kBothNonces, kSaltB64, count)), ScramError) << count;
  }
}

TEST_F(ScramClientTest, RejectsASaltThatIsNotBase64OrEmpty) {
  EXPECT_THROW(client_.HandleServerFirst(ServerFirst(kBothNonces, "W22ZaJ0SNY7soEsUEjb6gQ=", "4096")), ScramError);
  ScramClient client(kPassword, kClientNonce);
  client.ClientFirst();
  EXPECT_THROW(client.HandleServerFirst(ServerFirst(kBothNonces, "", "4096")), ScramError);
}

TEST_F(ScramClientTest, RejectsMalformedServerFirstMessages) {
  for (const std::string& bad : std::vector<std::string>{
           std::string(""),
           std::string("m=ext,r=") + kBothNonces + ",s=" + kSaltB64 + ",i=4096",
           std::string("s=") + kSaltB64 + ",r=" + kBothNonces + ",i=4096",
           std::string("r=") + kBothNonces + ",s=" + kSaltB64,
           std::string("r=") + kBothNonces + ",s=" + kSaltB64 + ",i=4096,",
       }) {
    ScramClient client(kPassword, kClientNonce);
    client.ClientFirst();
    EXPECT_THROW(client.HandleServerFirst(bad), ScramError) << bad;
  }
}

TEST_F(ScramClientTest, RejectsAWrongServerSignature) {
  client_.HandleServerFirst(ServerFirst(kBothNonces, kSaltB64, "4096"));
  // The RFC's signature is for "n=user", not our "n=": a server that did not see our message.
  EXPECT_THROW(client_.VerifyServerFinal("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="), ScramError);
}

TEST_F(ScramClientTest, ReportsTheServersReason) {
  client_.HandleServerFirst(ServerFirst(kBothNonces, kSaltB64, "4096"));
  try {
    client_.VerifyServerFinal("e=invalid-proof");
    FAIL() << "no exception";
  } catch (const ScramError& e) {
    EXPECT_NE(std::string(e.what()).find("invalid-proof"), std::string::npos) << e.what();
  }
}

TEST_F(ScramClientTest, RejectsAMalformedServerFinal) {
  client_.HandleServerFirst(ServerFirst(kBothNonces, kSaltB64, "4096"));
  EXPECT_THROW(client_.VerifyServerFinal("x=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg="), ScramError);
}

TEST_F(ScramClientTest, RejectsASignatureThatIsNotBase64) {
  client_.HandleServerFirst(ServerFirst(kBothNonces, kSaltB64, "4096"));
  EXPECT_THROW(client_.VerifyServerFinal("v=3HO6Qt1M4MKJrmlKaoOqLAI0/0TV0HZe7J9H3MBtSOg"), ScramError);
}

}  // namespace
}  // namespace testpool::proxy
