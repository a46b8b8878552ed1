// Time in testpool, and the seam tests drive it through.
//
// What the seam covers. core/ (and records/ and builders/ above it) receive a util::Clock in their
// constructors and ask it, never std::chrono's clocks, for:
//   - wall time: everything stored or shown to people (a lease's created_at and expires_at, a
//     renewal's new expires_at), and every comparison against such a time (is a lease expired?);
//   - the TTLs and retention periods a test fakes: lease expiry (wall time, above), and how long
//     ended leases stay in memory (monotonic, Clock::Now()).
// So a test with a FakeClock expires a ten-minute lease in a microsecond.
//
// What it does not cover: real elapsed time, read through RealMonoNow() or a Stopwatch below (in
// core/, records/ and builders/ never through std::chrono's clocks directly, so a grep finds every
// reading), for
//   - figures for logs and metrics (a lease's wait_ms and write_ms, warm, recycle, reset and
//     server-start durations): they report what really happened, under a fake clock too;
//   - deadlines of real waits and the pacing of background work: a condition-variable wait
//     (Acquire's wait_s), a wait on a server (sessions to end), a warm's back-off after failures,
//     the reaper's server checks. A fake clock could not make those waits end sooner.
// A test that needs one of these to pass quickly shortens the duration it passes in (wait_s 0).
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

// Real monotonic time, outside the seam: only for the uses listed at the top (figures, real
// waits). Thread-safe.
inline MonoTime RealMonoNow() { return std::chrono::steady_clock::now(); }

// Real elapsed time since construction, for a figure in a log line or a metric. A value.
class Stopwatch {
 public:
  Stopwatch() : start_(RealMonoNow()) {}
  MonoTime start() const { return start_; }
  double ElapsedMs() const { return MsBetween(start_, RealMonoNow()); }

 private:
  MonoTime start_;
};

}  // namespace testpool::util
