// The clock seam. core/ never calls now() itself: it receives a Clock and asks it, so tests can
// drive time (a TTL of ten minutes expires in a microsecond under a FakeClock).
//
// Monotonic time (MonoTime) measures durations and deadlines; wall time (WallTime) is only for
// what is shown to people or stored (expires_at). The two never mix: they are different types.
#pragma once

#include <chrono>

namespace testpool::util {

using MonoTime = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual MonoTime Now() const = 0;
  virtual WallTime WallNow() const = 0;
};

// The real clocks. Thread-safe; a process-wide instance is returned by RealClock().
class SystemClock final : public Clock {
 public:
  MonoTime Now() const override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const override { return std::chrono::system_clock::now(); }
};

const Clock& RealClock();

// Milliseconds between two monotonic instants, as a double (for logs and figures).
inline double MsBetween(MonoTime from, MonoTime to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

}  // namespace testpool::util
