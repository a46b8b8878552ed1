// One log line per event: `<UTC time> <level> <event> key=value …`, e.g.
//   2026-11-24T21:30:00.123Z info template.built template=app hash=3f2a9c… ms=412.7
// Values containing spaces, quotes or '=' are double-quoted with C-style escapes, so every line
// stays machine-splittable. Thread-safe: each line is written with a single write(2) to stderr.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace testpool::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

using Field = std::pair<std::string_view, std::string>;

// Lines below `level` are dropped. Default kInfo; TESTPOOL_LOG_LEVEL=debug|info|warn|error
// is read once by main() and passed here.
void SetLevel(Level level);
bool ParseLevel(std::string_view text, Level* level);

void Write(Level level, std::string_view event, std::initializer_list<Field> fields = {});

inline void Debug(std::string_view e, std::initializer_list<Field> f = {}) { Write(Level::kDebug, e, f); }
inline void Info(std::string_view e, std::initializer_list<Field> f = {}) { Write(Level::kInfo, e, f); }
inline void Warn(std::string_view e, std::initializer_list<Field> f = {}) { Write(Level::kWarn, e, f); }
inline void Error(std::string_view e, std::initializer_list<Field> f = {}) { Write(Level::kError, e, f); }

// Formats a duration in milliseconds with 0.1 ms resolution ("12.3").
std::string Ms(double ms);

}  // namespace testpool::log
