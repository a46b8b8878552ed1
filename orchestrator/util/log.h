// One log line per event: `<UTC time> <level> <event> key=value …`, e.g.
//   2026-11-24T21:30:00.123Z info template.built template=app hash=3f2a9c… ms=412.7
// Values containing spaces, quotes or '=' are double-quoted with C-style escapes, so every line
// stays machine-splittable. Thread-safe: each line is written with a single write(2) to stderr.
//
// No secret reaches a log line: every value goes through Redact() (so an error message quoting a
// connection string or an SQL statement loses its password), and a field whose key names a
// password or secret is written as "***". Passwords of leases are never given to Write() at all;
// Redact() is the net under that rule, not the rule.
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

// `text` with the secrets it may quote replaced by "***": the value after `password=` (libpq's
// keyword form, quoted or not, a URI's query, an environment entry such as PGPASSWORD=…), the
// password in a URI's user information (`postgresql://user:***@host/db`), the literal after SQL's
// PASSWORD (`ALTER ROLE x PASSWORD '***'`, E'…' too) and a JSON "password" member's string. The
// keyword "password" is matched in any case. Everything else is left as it is.
std::string Redact(std::string_view text);

// Formats a duration in milliseconds with 0.1 ms resolution ("12.3").
std::string Ms(double ms);

}  // namespace testpool::log
