// What every fuzz target shares: a check that stays on in every build, and the report for an
// exception a parser's header does not allow.
//
// A target feeds one input to the parsers it covers, catches exactly the errors their headers
// document, and checks the promises that are cheap to check (round trips, offsets, "never
// throws"). Any broken promise aborts, which libFuzzer reports as a crash and saves the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>
#include <typeinfo>

namespace testpool::fuzz {

// Aborts with `what` when `ok` is false (unlike assert, also under NDEBUG).
inline void Check(bool ok, const char* what, const char* file, int line) {
  if (ok) return;
  std::fprintf(stderr, "%s:%d: contract broken: %s\n", file, line, what);
  std::abort();
}

// An exception the code under test must not throw here: reported with its type, then abort.
[[noreturn]] inline void Unexpected(const char* where, const std::exception& e) {
  std::fprintf(stderr, "%s threw an undocumented %s: %s\n", where, typeid(e).name(), e.what());
  std::abort();
}

inline std::string_view AsText(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace testpool::fuzz

#define FUZZ_CHECK(cond) ::testpool::fuzz::Check(static_cast<bool>(cond), #cond, __FILE__, __LINE__)
