// Wall times as text and as numbers, the one way testpool writes them: ISO 8601 UTC with
// milliseconds for people and the API ("2026-11-24T21:30:00.123Z"), milliseconds since the Unix
// epoch for storage (the control database keeps them as bigint and to_timestamp(ms / 1000)).
//
// Pure functions of their argument: thread-safe, no errors.
#pragma once

#include <cstdint>
#include <string>

#include "orchestrator/util/clock.h"

namespace testpool::util {

// Whole milliseconds since 1970-01-01T00:00:00Z, rounded down (towards the past, also before 1970).
int64_t EpochMs(WallTime t);

// The inverse of EpochMs: the instant `ms` milliseconds after the epoch.
WallTime FromEpochMs(int64_t ms);

// "YYYY-MM-DDTHH:MM:SS.mmmZ" in UTC; the milliseconds are EpochMs(t)'s, so a time is never shown
// later than it is.
std::string IsoUtcMs(WallTime t);

}  // namespace testpool::util
