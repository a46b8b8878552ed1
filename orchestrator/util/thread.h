// Small helpers for the daemon's own threads.
#pragma once

namespace testpool::util {

// Lowers the calling thread's CPU priority to `nice` (Linux schedules threads individually):
// for threads that do background work (recycling), so that on a busy machine the threads on the
// lease path win. Only raises niceness, which needs no privilege; failure is harmless and ignored.
void LowerThreadPriority(int nice);

}  // namespace testpool::util
