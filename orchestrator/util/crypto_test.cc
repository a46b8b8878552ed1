#include "orchestrator/util/crypto.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <string_view>

#include "orchestrator/util/error.h"

namespace testpool::util {
namespace {

TEST(Sha256, MatchesTheKnownDigestOfAbc) {
  Sha256 h;
  h.Update("abc");
  EXPECT_EQ(h.HexDigest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(RandomToken, HasTheAskedLengthAndAlphabet) {
  std::string t = RandomToken(32);
  EXPECT_EQ(t.size(), 32u);
  EXPECT_EQ(t.find_first_not_of("abcdefghijklmnopqrstuvwxyz234567"), std::string::npos);
}

TEST(RandomToken, DoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(seen.insert(RandomToken(16)).second);
}

TEST(RandomHex, IsTwiceTheByteCount) { EXPECT_EQ(RandomHex(8).size(), 16u); }

}  // namespace
}  // namespace testpool::util

namespace testpool::util {
namespace {

TEST(Base64, EncodesWithPadding) {
  EXPECT_EQ(Base64(""), "");
  EXPECT_EQ(Base64("f"), "Zg==");
  EXPECT_EQ(Base64("fo"), "Zm8=");
  EXPECT_EQ(Base64("foo"), "Zm9v");
  EXPECT_EQ(Base64("foobar"), "Zm9vYmFy");
}

TEST(ScramSha256Secret, MatchesAnIndependentComputation) {
  // RFC 7677's example user ("pencil", this salt, 4096 iterations); the expected secret was
  // computed with Python's hashlib/hmac, not with this code.
  std::string salt;
  for (unsigned char c :
       {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81}) {
    salt.push_back(static_cast<char>(c));
  }
  ASSERT_EQ(Base64(salt), "W22ZaJ0SNY7soEsUEjb6gQ==");
  EXPECT_EQ(ScramSha256Secret("pencil", salt, 4096),
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=");
}

TEST(ScramSha256Secret, RandomSaltEachTime) {
  const std::string a = ScramSha256Secret("pencil", 16), b = ScramSha256Secret("pencil", 16);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.rfind("SCRAM-SHA-256$16:", 0), 0u) << a;
}

}  // namespace
}  // namespace testpool::util

namespace testpool::util {
namespace {

// Lower-case hex of raw bytes, to compare digests with published vectors.
std::string Hex(std::string_view bytes) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
    out.push_back(kHex[static_cast<unsigned char>(c) & 0xf]);
  }
  return out;
}

TEST(RandomBytes, HasTheAskedLengthAndDoesNotRepeat) {
  EXPECT_EQ(RandomBytes(0), "");
  const std::string a = RandomBytes(18);
  EXPECT_EQ(a.size(), 18u);
  EXPECT_NE(a, RandomBytes(18));
}

TEST(Base64Decode, InvertsBase64) {
  for (std::string_view s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    EXPECT_EQ(Base64Decode(Base64(s)), s) << s;
  }
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  EXPECT_EQ(Base64Decode(Base64(all)), all);
}

TEST(Base64Decode, RejectsAWrongLength) {
  EXPECT_THROW(Base64Decode("Zm9"), Error);
  EXPECT_THROW(Base64Decode("Zg"), Error);
  EXPECT_THROW(Base64Decode("Zm9vY"), Error);
}

TEST(Base64Decode, RejectsCharactersOutsideTheAlphabet) {
  EXPECT_THROW(Base64Decode("Zm9v YmFy"), Error);
  EXPECT_THROW(Base64Decode("Zm9v\nYmFy"), Error);
  EXPECT_THROW(Base64Decode("Zm9-"), Error);  // the URL-safe alphabet is another encoding
  EXPECT_THROW(Base64Decode("Zm9_"), Error);
  EXPECT_THROW(Base64Decode(std::string("Zm\0v", 4)), Error);
}

TEST(Base64Decode, RejectsMisplacedPadding) {
  EXPECT_THROW(Base64Decode("===="), Error);
  EXPECT_THROW(Base64Decode("Z==="), Error);
  EXPECT_THROW(Base64Decode("Zg==Zg=="), Error);
  EXPECT_THROW(Base64Decode("Z=g="), Error);
}

TEST(Base64Decode, RejectsNonZeroUnusedBits) {
  EXPECT_THROW(Base64Decode("Zh=="), Error);  // "Zg==" is the canonical 'f'
  EXPECT_THROW(Base64Decode("Zm9="), Error);  // "Zm8=" is the canonical "fo"
}

TEST(Base64Decode, ThrowsInvalidArgument) {
  try {
    Base64Decode("!!!!");
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

TEST(Sha256Bytes, IsTheRawFormOfTheHexDigest) {
  Sha256 h;
  h.Update("abc");
  const std::string raw = Sha256Bytes("abc");
  EXPECT_EQ(raw.size(), 32u);
  EXPECT_EQ(Hex(raw), h.HexDigest());
}

TEST(HmacSha256, MatchesRfc4231TestCase2) {
  EXPECT_EQ(Hex(HmacSha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(Pbkdf2Sha256, MatchesKnownOutputs) {
  // Outputs computed with Python's hashlib.pbkdf2_hmac, not with this code.
  EXPECT_EQ(Hex(Pbkdf2Sha256("password", "salt", 1)),
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
  EXPECT_EQ(Hex(Pbkdf2Sha256("password", "salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
}

TEST(ConstantTimeEquals, ComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
  EXPECT_TRUE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

}  // namespace
}  // namespace testpool::util
