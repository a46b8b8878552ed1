// Typed reads of user-written JSON (nlohmann::json) with errors that name the value: the one set
// of getters behind every parser of such JSON (the API's request bodies, recipes, generator specs).
//
// A JsonWhat says how an error names the value and what it carries; the wording around it is the
// caller's ("ttl_s", "recipe #2: 'table'", "field 'email': parameter 'domain'").
//
// Errors. Each getter returns the value when it has the type asked for and otherwise throws
// Error(ErrorCode::kInvalidArgument, "<name> must be <the words in its comment>", what.details),
// the message ending ", got <type> <value>" (the value's first 40 characters) when
// what.show_value. Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchestrator/util/error.h"

namespace testpool::util {

struct JsonWhat {
  std::string name;           // how the message names the value
  bool show_value = false;    // end a wrong-type message with ", got <type> <value>"
  Error::Details details{};   // carried by every error thrown
};

// Throws the wrong-type error described above: "<name> must be <wanted>[, got <type> <value>]".
[[noreturn]] void ThrowMustBe(const JsonWhat& what, std::string_view wanted, const nlohmann::json& got);

// The member `key` of `obj`, or nullptr when it has none (also when `obj` is not an object).
const nlohmann::json* FindMember(const nlohmann::json& obj, std::string_view key);

std::string StringValue(const nlohmann::json& v, const JsonWhat& what);          // "a string"
std::string NonEmptyStringValue(const nlohmann::json& v, const JsonWhat& what);  // "a non-empty string"
bool BoolValue(const nlohmann::json& v, const JsonWhat& what);                   // "true or false"
// "an integer"; an integer past the int64 range throws "<name> is beyond the int64 range".
int64_t Int64Value(const nlohmann::json& v, const JsonWhat& what);
// "a non-empty array of strings" (the whole array is the value shown).
std::vector<std::string> StringsValue(const nlohmann::json& v, const JsonWhat& what);

}  // namespace testpool::util
