#include "orchestrator/builders/rng.h"

#include <limits>

namespace testpool::builders {

uint64_t SplitMix64(uint64_t* state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace {

uint64_t Mix(uint64_t x) { return SplitMix64(&x); }
uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

Rng::Rng(uint64_t seed) {
  for (uint64_t& s : s_) s = SplitMix64(&seed);
}

Rng Rng::ForField(uint64_t seed, std::string_view field_name, uint64_t row_index) {
  uint64_t k = Mix(seed ^ Mix(Fnv1a64(field_name)));
  return Rng(Mix(k ^ row_index));
}

uint64_t Rng::Next() {
  const uint64_t result = Rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = Rotl(s_[3], 45);
  return result;
}

uint64_t Rng::Below(uint64_t bound) {
  assert(bound > 0);
  // Draws in [0, 2^64 mod bound) would make the low residues likelier; 2^64 mod bound is
  // (2^64 - bound) mod bound, computed without 128-bit arithmetic.
  const uint64_t reject_below = (0 - bound) % bound;
  for (;;) {
    const uint64_t r = Next();
    if (r >= reject_below) return r % bound;
  }
}

int64_t Rng::Uniform(int64_t lo, int64_t hi) {
  assert(lo <= hi);
  const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
  if (span == std::numeric_limits<uint64_t>::max()) return static_cast<int64_t>(Next());
  return static_cast<int64_t>(static_cast<uint64_t>(lo) + Below(span + 1));
}

bool Rng::Chance(double p) {
  if (!(p > 0)) return false;  // also NaN
  if (p >= 1) return true;
  const auto threshold = static_cast<uint64_t>(p * 9007199254740992.0);  // p × 2^53, exact
  return (Next() >> 11) < threshold;
}

}  // namespace testpool::builders
