#include "orchestrator/util/json_field.h"

#include <gtest/gtest.h>

namespace testpool::util {
namespace {

using nlohmann::json;

// The message of the Error `read` throws ("" when it throws none), checking it is invalid_argument.
template <typename F>
std::string MessageOf(F read) {
  try {
    read();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  return "";
}

TEST(JsonFieldTest, GettersReturnValuesOfTheirType) {
  EXPECT_EQ(StringValue(json("a"), {"x"}), "a");
  EXPECT_EQ(NonEmptyStringValue(json("a"), {"x"}), "a");
  EXPECT_TRUE(BoolValue(json(true), {"x"}));
  EXPECT_EQ(Int64Value(json::parse("-5"), {"x"}), -5);
  EXPECT_EQ(Int64Value(json::parse("9223372036854775807"), {"x"}), INT64_MAX);
  EXPECT_EQ(StringsValue(json::parse(R"(["a","b"])"), {"x"}), (std::vector<std::string>{"a", "b"}));
}

TEST(JsonFieldTest, WrongTypesAreNamedWithTheWordsOfEachGetter) {
  EXPECT_EQ(MessageOf([] { StringValue(json(1), {"ttl_s"}); }), "ttl_s must be a string");
  EXPECT_EQ(MessageOf([] { NonEmptyStringValue(json(""), {"r: 'name'"}); }), "r: 'name' must be a non-empty string");
  EXPECT_EQ(MessageOf([] { BoolValue(json(1), {"x"}); }), "x must be true or false");
  EXPECT_EQ(MessageOf([] { Int64Value(json(1.5), {"x"}); }), "x must be an integer");
  EXPECT_EQ(MessageOf([] { Int64Value(json::parse("9223372036854775808"), {"x"}); }), "x is beyond the int64 range");
  EXPECT_EQ(MessageOf([] { StringsValue(json::array(), {"x"}); }), "x must be a non-empty array of strings");
  EXPECT_EQ(MessageOf([] { StringsValue(json::parse(R"(["a",1])"), {"x"}); }),
            "x must be a non-empty array of strings");
}

TEST(JsonFieldTest, ShowValueAddsTheValueAndDetailsTravelWithTheError) {
  const JsonWhat what{"p", true, {{"field", "f"}}};
  EXPECT_EQ(MessageOf([&] { StringValue(json(12), what); }), "p must be a string, got number 12");
  const json long_array(std::vector<int>(100, 7));
  EXPECT_EQ(MessageOf([&] { StringValue(long_array, {"p", true}); }),
            "p must be a string, got array " + long_array.dump().substr(0, 40));
  try {
    Int64Value(json("1"), what);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.details(), what.details);
  }
}

TEST(JsonFieldTest, FindMemberIsNullWhenAbsentOrNotAnObject) {
  const json obj = {{"a", 1}};
  ASSERT_NE(FindMember(obj, "a"), nullptr);
  EXPECT_EQ(*FindMember(obj, "a"), 1);
  EXPECT_EQ(FindMember(obj, "b"), nullptr);
  EXPECT_EQ(FindMember(json::array({1}), "a"), nullptr);
}

}  // namespace
}  // namespace testpool::util
