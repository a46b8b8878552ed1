#include "orchestrator/util/url.h"

#include <gtest/gtest.h>

namespace testpool::util {
namespace {

TEST(PercentEncode, KeepsUnreservedCharacters) {
  EXPECT_EQ(PercentEncode("AZaz09-._~"), "AZaz09-._~");
}

TEST(PercentEncode, EncodesEverythingElseAsUpperCaseHex) {
  EXPECT_EQ(PercentEncode("a b/c:@%"), "a%20b%2Fc%3A%40%25");
  EXPECT_EQ(PercentEncode(std::string_view("\0\xff", 2)), "%00%FF");
}

TEST(PercentEncode, KeepsTheCharactersAskedFor) {
  EXPECT_EQ(PercentEncode("testpool/tpl-app:abc@x y", "/:@"), "testpool/tpl-app:abc@x%20y");
}

}  // namespace
}  // namespace testpool::util
