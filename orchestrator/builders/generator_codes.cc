// The unique_code generator: fixed-shape codes (a SKU "QZK-48100042") that are unique within a
// namespace and carry the namespace in their leading characters. Declared in generator_spec.h;
// the recipe-facing description (pattern syntax, capacity, collisions) is in generators.h.
//
// A code is a pattern of literal characters and class characters. The class characters, read
// left to right, are one mixed-radix number: the last `index_chars` of them hold the row index,
// the ones before them a slot derived from the namespace. Both parts are written most significant
// first, so a code decodes back to (slot, row index) and the index reads as a plain number when
// its characters are digits.
#include <algorithm>
#include <limits>

#include "orchestrator/builders/generator_spec.h"

namespace testpool::builders::generator_internal {

namespace {

constexpr size_t kMaxCodeLength = 64;
constexpr int64_t kMaxRepeat = 64;

constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kUpper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr std::string_view kLower = "abcdefghijklmnopqrstuvwxyz";

// Characters that mean something in a regular expression: literal only after a backslash.
constexpr std::string_view kSpecial = "[]{}()\\^$.*+?|";

// One character of a code: a literal, or a class (its alphabet, in ASCII order).
struct Position {
  char literal = 0;
  std::string alphabet;  // empty for a literal
};

// a * b, or nullopt past uint64.
std::optional<uint64_t> Times(uint64_t a, uint64_t b) {
  uint64_t out = 0;
  if (__builtin_mul_overflow(a, b, &out)) return std::nullopt;
  return out;
}

class UniqueCodeImpl : public Impl {
 public:
  explicit UniqueCodeImpl(SpecReader& r) : Impl(r.field()) {
    const std::optional<std::string> pattern = r.String("pattern");
    if (!pattern) r.Fail("gen 'unique_code' needs 'pattern', e.g. \"[A-Z]{3}-[0-9]{8}\"");
    pattern_ = *pattern;
    Parse(r);
    const std::optional<int64_t> index_chars = r.Int("index_chars");
    if (!index_chars) {
      r.Fail("gen 'unique_code' needs 'index_chars': how many of the last class characters hold the row index");
    }
    const int64_t classes = static_cast<int64_t>(class_positions_.size());
    if (classes < 2) {
      r.Fail("pattern '" + Shown() + "' has " + std::to_string(classes) +
             " class character(s): it needs at least 2, one for the namespace and one for the row index");
    }
    if (*index_chars < 1 || *index_chars >= classes) {
      r.Fail("parameter 'index_chars' must be in [1, " + std::to_string(classes - 1) + "] for pattern '" + Shown() +
             "' (at least one class character must be left for the namespace)");
    }
    index_chars_ = static_cast<size_t>(*index_chars);
    // Capacities, saturated: nullopt means "more than 2^64 - 1", i.e. no limit that matters.
    ns_slots_ = 1;
    capacity_ = 1;
    const size_t first_index = class_positions_.size() - index_chars_;
    for (size_t i = 0; i < class_positions_.size(); ++i) {
      const uint64_t radix = positions_[class_positions_[i]].alphabet.size();
      std::optional<uint64_t>& product = i < first_index ? ns_slots_ : capacity_;
      if (product) product = Times(*product, radix);
    }
  }

  FieldValue Make(const GenContext& ctx, Rng&) const override {
    CheckNamespace(ctx.ns);
    if (capacity_ && ctx.row_index >= *capacity_) {
      Fail("row index " + std::to_string(ctx.row_index) + " is beyond the capacity of pattern '" + Shown() +
           "' with index_chars " + std::to_string(index_chars_) + " (" + std::to_string(*capacity_) +
           " codes per namespace and table): use a larger index_chars or another namespace");
    }
    uint64_t hash_state = Fnv1a64(ctx.ns);
    const uint64_t hash = SplitMix64(&hash_state);
    uint64_t slot = ns_slots_ ? hash % *ns_slots_ : hash;
    uint64_t index = ctx.row_index;
    std::string code(positions_.size(), '\0');
    // Least significant first: the row index in the last index_chars class characters, then the
    // namespace's slot in the ones before them.
    for (size_t k = class_positions_.size(); k-- > 0;) {
      const std::string& alphabet = positions_[class_positions_[k]].alphabet;
      uint64_t& value = k + index_chars_ >= class_positions_.size() ? index : slot;
      code[class_positions_[k]] = alphabet[value % alphabet.size()];
      value /= alphabet.size();
    }
    for (size_t i = 0; i < positions_.size(); ++i) {
      if (positions_[i].alphabet.empty()) code[i] = positions_[i].literal;
    }
    return code;
  }

 private:
  std::string Shown() const { return pattern_.substr(0, 80); }

  // Reads pattern_ into positions_: [^] (literal | \c | class) ({n})? … [$].
  void Parse(SpecReader& r) {
    std::string_view p = pattern_;
    if (p.starts_with('^')) p.remove_prefix(1);
    if (p.ends_with('$') && !p.ends_with("\\$")) p.remove_suffix(1);
    if (p.empty()) PatternFail(r, "it is empty");
    size_t i = 0;
    while (i < p.size()) {
      Position pos;
      const char c = p[i];
      if (c == '[') {
        const size_t close = p.find(']', i);
        if (close == std::string_view::npos) PatternFail(r, "a '[' is never closed");
        pos.alphabet = Class(r, p.substr(i + 1, close - i - 1));
        i = close + 1;
      } else if (c == '\\') {
        if (i + 1 >= p.size() || p[i + 1] < 0x20 || p[i + 1] > 0x7e) {
          PatternFail(r, "'\\' must be followed by a printable character");
        }
        pos.literal = p[i + 1];
        i += 2;
      } else if (c < 0x20 || c > 0x7e) {
        PatternFail(r, "only printable ASCII characters are allowed");
      } else if (kSpecial.find(c) != std::string_view::npos) {
        PatternFail(
            r, std::string("'") + c +
                   "' is not supported here: use literal characters, [A-Z], [a-z], [0-9] (or unions such as [A-Z0-9]) "
                   "with an exact count {n}, and \\ before a literal special character");
      } else {
        pos.literal = c;
        ++i;
      }
      int64_t repeat = 1;
      if (i < p.size() && p[i] == '{') {
        const size_t close = p.find('}', i);
        if (close == std::string_view::npos) PatternFail(r, "a '{' is never closed");
        const std::string_view count = p.substr(i + 1, close - i - 1);
        if (count.find(',') != std::string_view::npos) {
          PatternFail(r, "'{" + std::string(count) + "}': give an exact count {n}, a code has a fixed length");
        }
        if (count.empty() || count.size() > 2 ||
            !std::all_of(count.begin(), count.end(), [](char d) { return d >= '0' && d <= '9'; })) {
          PatternFail(
              r, "'{" + std::string(count.substr(0, 10)) + "}' is not a count from 1 to " + std::to_string(kMaxRepeat));
        }
        repeat = std::stoll(std::string(count));
        if (repeat < 1 || repeat > kMaxRepeat) {
          PatternFail(r, "a count must be from 1 to " + std::to_string(kMaxRepeat));
        }
        i = close + 1;
      }
      for (int64_t k = 0; k < repeat; ++k) {
        if (positions_.size() == kMaxCodeLength) {
          PatternFail(r, "codes may be at most " + std::to_string(kMaxCodeLength) + " characters");
        }
        if (!pos.alphabet.empty()) class_positions_.push_back(positions_.size());
        positions_.push_back(pos);
      }
    }
  }

  [[noreturn]] void PatternFail(SpecReader& r, const std::string& why) const {
    r.Fail("pattern '" + Shown() + "': " + why);
  }

  // The alphabet of a bracket's inside: one or more of A-Z, a-z, 0-9, each at most once.
  std::string Class(SpecReader& r, std::string_view inside) const {
    bool digits = false, upper = false, lower = false;
    const std::string bad = "'[" + std::string(inside.substr(0, 20)) +
                            "]' is not a supported class: use [A-Z], [a-z], [0-9] or a union such as [A-Z0-9]";
    if (inside.empty() || inside.size() % 3 != 0) PatternFail(r, bad);
    for (size_t k = 0; k < inside.size(); k += 3) {
      const std::string_view range = inside.substr(k, 3);
      bool* seen = range == "0-9" ? &digits : range == "A-Z" ? &upper : range == "a-z" ? &lower : nullptr;
      if (seen == nullptr || *seen) PatternFail(r, bad);
      *seen = true;
    }
    std::string alphabet;
    if (digits) alphabet += kDigits;
    if (upper) alphabet += kUpper;
    if (lower) alphabet += kLower;
    return alphabet;
  }

  std::string pattern_;
  std::vector<Position> positions_;
  std::vector<size_t> class_positions_;  // indexes into positions_ of the class characters
  size_t index_chars_ = 0;
  std::optional<uint64_t> ns_slots_;  // the namespace part's size; nullopt: beyond 2^64 - 1
  std::optional<uint64_t> capacity_;  // codes per namespace; nullopt: beyond 2^64 - 1
};

}  // namespace

ImplPtr NewUniqueCodeGenerator(SpecReader& r) { return std::make_shared<const UniqueCodeImpl>(r); }

}  // namespace testpool::builders::generator_internal
