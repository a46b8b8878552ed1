// Validation of the names users give us. A valid name can be embedded in database and role names
// and in URLs; it is still always quoted with PQescapeIdentifier when it reaches SQL.
#pragma once

#include <string>
#include <string_view>

namespace testpool::util {

// Template (and pool) names: [a-z][a-z0-9_]{0,39}. At most 40 characters so that
// "tp_tpl_" + name + "_" + hash12 fits PostgreSQL's 63-byte identifier limit.
inline constexpr size_t kMaxNameLength = 40;
bool IsValidName(std::string_view name);

// Throws Error(kInvalidName) naming `what` ("template name") and the rule when `name` is invalid.
void CheckName(std::string_view name, std::string_view what);

}  // namespace testpool::util
