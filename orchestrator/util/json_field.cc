#include "orchestrator/util/json_field.h"

#include <limits>

namespace testpool::util {

using nlohmann::json;

void ThrowMustBe(const JsonWhat& what, std::string_view wanted, const json& got) {
  std::string message = what.name + " must be " + std::string(wanted);
  if (what.show_value) message += std::string(", got ") + got.type_name() + " " + got.dump().substr(0, 40);
  throw Error(ErrorCode::kInvalidArgument, message, what.details);
}

const json* FindMember(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string StringValue(const json& v, const JsonWhat& what) {
  if (!v.is_string()) ThrowMustBe(what, "a string", v);
  return v.get<std::string>();
}

std::string NonEmptyStringValue(const json& v, const JsonWhat& what) {
  if (!v.is_string() || v.get_ref<const std::string&>().empty()) ThrowMustBe(what, "a non-empty string", v);
  return v.get<std::string>();
}

bool BoolValue(const json& v, const JsonWhat& what) {
  if (!v.is_boolean()) ThrowMustBe(what, "true or false", v);
  return v.get<bool>();
}

int64_t Int64Value(const json& v, const JsonWhat& what) {
  if (!v.is_number_integer()) ThrowMustBe(what, "an integer", v);
  if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
    throw Error(ErrorCode::kInvalidArgument, what.name + " is beyond the int64 range", what.details);
  }
  return v.get<int64_t>();
}

std::vector<std::string> StringsValue(const json& v, const JsonWhat& what) {
  if (!v.is_array() || v.empty()) ThrowMustBe(what, "a non-empty array of strings", v);
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string()) ThrowMustBe(what, "a non-empty array of strings", v);
    out.push_back(e.get<std::string>());
  }
  return out;
}

}  // namespace testpool::util
