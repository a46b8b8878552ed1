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
