#include "orchestrator/util/time_format.h"

#include <time.h>

#include <cstdio>

namespace testpool::util {

int64_t EpochMs(WallTime t) {
  return std::chrono::floor<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

WallTime FromEpochMs(int64_t ms) { return WallTime(std::chrono::milliseconds(ms)); }

std::string IsoUtcMs(WallTime t) {
  const int64_t ms = EpochMs(t);
  const int64_t secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);  // floor, like EpochMs
  const int millis = static_cast<int>(ms - secs * 1000);
  const auto whole = static_cast<time_t>(secs);
  std::tm tm{};
  gmtime_r(&whole, &tm);
  char out[96];  // room for any int the compiler imagines in each field
  std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  return out;
}

}  // namespace testpool::util
