#include "orchestrator/util/names.h"

#include "orchestrator/util/error.h"

namespace testpool::util {

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (name[0] < 'a' || name[0] > 'z') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

void CheckName(std::string_view name, std::string_view what) {
  if (IsValidName(name)) return;
  std::string shown(name.substr(0, 80));
  throw Error(ErrorCode::kInvalidName,
              std::string(what) + " '" + shown + "' is invalid: names are a lower-case letter followed by up to 39 lower-case letters, digits or '_'",
              {{"name", shown}});
}

}  // namespace testpool::util
