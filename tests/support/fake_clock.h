// A util::Clock that tests drive by hand.
//
// Now() and WallNow() start at the real monotonic and wall times of construction and then stand
// still: they only move when the test calls Advance(d), by exactly d, both together. A TTL of ten
// minutes therefore expires in a microsecond, and nothing expires by itself while a slow machine
// runs the test. Thread-safe: Advance() may race with readers on any thread (one atomic offset).
#pragma once

#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdint>

#include "orchestrator/util/clock.h"

namespace testpool::testing {

class FakeClock final : public util::Clock {
 public:
  FakeClock() : mono_start_(std::chrono::steady_clock::now()), wall_start_(std::chrono::system_clock::now()) {}

  util::MonoTime Now() const override {
    return mono_start_ + std::chrono::duration_cast<util::MonoTime::duration>(Offset());
  }
  util::WallTime WallNow() const override {
    return wall_start_ + std::chrono::duration_cast<util::WallTime::duration>(Offset());
  }

  // Moves both clocks forward by `d` (never backward: monotonic time does not go back).
  void Advance(std::chrono::nanoseconds d) {
    assert(d.count() >= 0);
    offset_ns_.fetch_add(d.count(), std::memory_order_acq_rel);
  }

 private:
  std::chrono::nanoseconds Offset() const { return std::chrono::nanoseconds(offset_ns_.load(std::memory_order_acquire)); }

  const util::MonoTime mono_start_;
  const util::WallTime wall_start_;
  std::atomic<int64_t> offset_ns_{0};
};

}  // namespace testpool::testing
