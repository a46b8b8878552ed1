#include "orchestrator/util/names.h"

#include <gtest/gtest.h>

#include "orchestrator/util/error.h"

namespace testpool::util {
namespace {

TEST(IsValidName, AcceptsLowerCaseLettersDigitsAndUnderscore) {
  for (const char* ok : {"a", "app", "app_v2", "a1", "z_9_"}) EXPECT_TRUE(IsValidName(ok)) << ok;
  EXPECT_TRUE(IsValidName(std::string(40, 'a')));
}

TEST(IsValidName, RejectsEverythingElse) {
  for (const char* bad : {"", "A", "_a", "1a", "a-b", "a.b", "a b", "a\"b", "a'b", "a;b", "é"}) {
    EXPECT_FALSE(IsValidName(bad)) << bad;
  }
  EXPECT_FALSE(IsValidName(std::string(41, 'a')));
  EXPECT_FALSE(IsValidName(std::string("a\0b", 3)));
}

TEST(CheckName, ThrowsInvalidNameWithTheRule) {
  try {
    CheckName("Bad", "template name");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidName);
    EXPECT_NE(std::string(e.what()).find("lower-case letter"), std::string::npos);
  }
}

}  // namespace
}  // namespace testpool::util
