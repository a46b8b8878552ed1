// What a call threw, as a word a test can compare: the testpool error code's API name
// ("not_found", …), "no error", or "std::exception: <what>" for anything foreign.
#pragma once

#include <functional>
#include <string>

#include "orchestrator/util/error.h"

namespace testpool::testing {

inline std::string CodeOf(const std::function<void()>& call, std::string* message = nullptr) {
  try {
    call();
  } catch (const Error& e) {
    if (message) *message = e.what();
    return std::string(ErrorCodeName(e.code()));
  } catch (const std::exception& e) {
    if (message) *message = e.what();
    return std::string("std::exception: ") + e.what();
  }
  return "no error";
}

}  // namespace testpool::testing
