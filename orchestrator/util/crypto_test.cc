#include "orchestrator/util/crypto.h"

#include <gtest/gtest.h>

#include <set>

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
  for (unsigned char c : {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e, 0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa,
                          0x81}) {
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
