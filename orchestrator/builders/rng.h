// Deterministic random numbers for the value generators (generators.h).
//
// Generated test data must be reproducible from a seed on every platform, so nothing here uses
// std:: distributions or engines, whose output differs between standard libraries: Rng is a
// hand-written xoshiro256** seeded through splitmix64, and every derived quantity (a bounded
// integer, a coin flip) is computed with exact integer arithmetic. Changing any of it changes
// generated values: bump kGeneratorsVersion (generators.h).
//
// Pure code: no I/O, no clock, no global state.
#pragma once

#include <cassert>
#include <cstdint>
#include <iterator>
#include <string_view>

namespace testpool::builders {

// splitmix64 (Steele, Lea, Flood 2014): advances *state by 0x9e3779b97f4a7c15 and returns a
// well-mixed 64-bit value of it. Used to seed Rng and to derive per-field seeds.
uint64_t SplitMix64(uint64_t* state);

// 64-bit FNV-1a of the bytes (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
uint64_t Fnv1a64(std::string_view bytes);

// xoshiro256** (Blackman, Vigna 2018), its 256-bit state filled from four splitmix64 outputs of
// the seed. Fast, not cryptographic; the same seed gives the same stream everywhere. A value
// type: copy it to fork a stream. Not thread-safe (one per thread or per field).
class Rng {
 public:
  explicit Rng(uint64_t seed);

  // The stream RowGenerator gives field `field_name` of row `row_index`: Rng(k) with
  //   k = splitmix64 of (seed ^ splitmix64 of Fnv1a64(field_name)), then
  //   k = splitmix64 of (k ^ row_index)
  // where "splitmix64 of x" is SplitMix64 applied to a state holding x.
  static Rng ForField(uint64_t seed, std::string_view field_name, uint64_t row_index);

  // The next 64 random bits.
  uint64_t Next();

  // Uniform in [0, bound) without modulo bias (draws below 2^64 mod bound are rejected and
  // redrawn). `bound` must be > 0 (asserted).
  uint64_t Below(uint64_t bound);

  // Uniform in [lo, hi], both included, over the whole int64 range. lo ≤ hi (asserted).
  int64_t Uniform(int64_t lo, int64_t hi);

  // True with probability p (clamped to [0,1]): the top 53 bits of a draw compared with
  // p × 2^53, which is exact in binary floating point, so platform-independent.
  bool Chance(double p);

  // A uniformly chosen element of a non-empty random-access container (asserted).
  template <typename Container>
  const auto& Pick(const Container& items) {
    assert(std::size(items) > 0);
    return items[Below(std::size(items))];
  }

 private:
  uint64_t s_[4];
};

}  // namespace testpool::builders
