// The scalar generators: int, decimal, date, timestamp, bool, choice and const. Declared in
// generator_spec.h; their parameters and formats are described in generators.h.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "orchestrator/builders/generator_domains.h"
#include "orchestrator/builders/generator_spec.h"

namespace testpool::builders::generator_internal {

using nlohmann::json;

namespace {

// -- int and decimal.

class IntImpl : public Impl {
 public:
  explicit IntImpl(SpecReader& r) : Impl(r.field()) {
    min_ = r.Int("min").value_or(0);
    max_ = r.Int("max").value_or(2147483647);
    if (min_ > max_) r.Fail("min " + std::to_string(min_) + " is greater than max " + std::to_string(max_));
  }
  FieldValue Make(const GenContext&, Rng& rng) const override { return std::to_string(rng.Uniform(min_, max_)); }

 private:
  int64_t min_, max_;
};

// `text` (a decimal number, optionally with an exponent) × 10^scale as an integer, rounded up or
// down; nullopt when `text` is not a number or the result is beyond ±(2^63 − 1).
std::optional<int64_t> ScaledUnits(std::string_view text, int scale, bool round_up) {
  size_t i = 0;
  bool negative = false;
  if (i < text.size() && (text[i] == '-' || text[i] == '+')) negative = text[i++] == '-';
  std::string digits;
  int64_t exponent = 0;
  bool any_digit = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, any_digit = true) digits.push_back(text[i]);
  if (i < text.size() && text[i] == '.') {
    for (++i; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, any_digit = true) {
      digits.push_back(text[i]);
      --exponent;
    }
  }
  if (!any_digit) return std::nullopt;
  if (i < text.size() && (text[i] == 'e' || text[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < text.size() && (text[i] == '-' || text[i] == '+')) exp_negative = text[i++] == '-';
    int64_t e = 0;
    size_t first = i;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9' && i - first < 6; ++i) e = e * 10 + (text[i] - '0');
    if (i == first) return std::nullopt;
    exponent += exp_negative ? -e : e;
  }
  if (i != text.size()) return std::nullopt;
  digits.erase(0, std::min(digits.find_first_not_of('0'), digits.size()));
  if (digits.empty()) return 0;
  // value = digits × 10^(exponent + scale) in units
  const int64_t shift = exponent + scale;
  std::string head = digits;
  bool remainder = false;
  if (shift >= 0) {
    if (shift > 19) return std::nullopt;
    head.append(static_cast<size_t>(shift), '0');
  } else {
    const size_t cut = static_cast<size_t>(-shift) >= digits.size() ? 0 : digits.size() - static_cast<size_t>(-shift);
    remainder = digits.find_first_not_of('0', cut) != std::string::npos;
    head = digits.substr(0, cut);
  }
  if (head.size() > 19) return std::nullopt;
  uint64_t magnitude = 0;
  for (char c : head) magnitude = magnitude * 10 + static_cast<uint64_t>(c - '0');
  if (remainder && round_up != negative) ++magnitude;  // ceil for min, floor for max
  if (magnitude > uint64_t{std::numeric_limits<int64_t>::max()}) return std::nullopt;
  return negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
}

class DecimalImpl : public Impl {
 public:
  explicit DecimalImpl(SpecReader& r) : Impl(r.field()) {
    scale_ = static_cast<int>(Clamp(r, "scale", r.Int("scale").value_or(2), 0, 18));
    min_ = Bound(r, "min", "0", /*round_up=*/true);
    max_ = Bound(r, "max", "1000", /*round_up=*/false);
    if (min_ > max_) {
      r.Fail("no number with " + std::to_string(scale_) + " decimals lies in [min, max] (is min greater than max?)");
    }
  }

  FieldValue Make(const GenContext&, Rng& rng) const override {
    const int64_t units = rng.Uniform(min_, max_);
    const uint64_t magnitude = units < 0 ? 0 - static_cast<uint64_t>(units) : static_cast<uint64_t>(units);
    std::string digits = Padded(magnitude, scale_ + 1);
    if (scale_ > 0) digits.insert(digits.size() - static_cast<size_t>(scale_), 1, '.');
    return units < 0 ? "-" + digits : digits;
  }

 private:
  static int64_t Clamp(SpecReader& r, const std::string& key, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) {
      r.Fail("parameter '" + key + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    }
    return v;
  }
  int64_t Bound(SpecReader& r, const std::string& key, const char* fallback, bool round_up) const {
    const json* v = r.Get(key);
    std::string text = fallback;
    if (v != nullptr) {
      if (!v->is_number() && !v->is_string()) r.WrongType(key, "a number or a decimal string", *v);
      text = v->is_string() ? v->get<std::string>() : v->dump();
    }
    std::optional<int64_t> units = ScaledUnits(text, scale_, round_up);
    if (!units) r.Fail("parameter '" + key + "' (" + text.substr(0, 40) + ") is not a number that fits the scale");
    return *units;
  }

  int scale_ = 2;
  int64_t min_ = 0, max_ = 0;  // in units of 10^-scale
};

// -- date and timestamp.

using Days = std::chrono::sys_days;

// "YYYY-MM-DD", years 0001–9999.
std::optional<Days> ParseDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  int parts[3] = {0, 0, 0};
  const int widths[3] = {4, 2, 2};
  size_t pos = 0;
  for (int p = 0; p < 3; ++p, ++pos) {
    for (int k = 0; k < widths[p]; ++k, ++pos) {
      if (s[pos] < '0' || s[pos] > '9') return std::nullopt;
      parts[p] = parts[p] * 10 + (s[pos] - '0');
    }
  }
  std::chrono::year_month_day ymd{std::chrono::year{parts[0]}, std::chrono::month{static_cast<unsigned>(parts[1])},
                                  std::chrono::day{static_cast<unsigned>(parts[2])}};
  if (parts[0] < 1 || !ymd.ok()) return std::nullopt;
  return Days(ymd);
}

void AppendDate(std::string* out, Days days) {
  const std::chrono::year_month_day ymd(days);
  AppendPadded(out, static_cast<uint64_t>(static_cast<int>(ymd.year())), 4);
  out->push_back('-');
  AppendPadded(out, static_cast<unsigned>(ymd.month()), 2);
  out->push_back('-');
  AppendPadded(out, static_cast<unsigned>(ymd.day()), 2);
}

class DateImpl : public Impl {
 public:
  explicit DateImpl(SpecReader& r) : Impl(r.field()) {
    min_ = Read(r, "min", "2000-01-01");
    max_ = Read(r, "max", "2029-12-31");
    if (min_ > max_) r.Fail("min date is after max date");
  }

  FieldValue Make(const GenContext&, Rng& rng) const override {
    std::string s;
    AppendDate(&s, min_ + std::chrono::days(rng.Uniform(0, (max_ - min_).count())));
    return s;
  }

 private:
  static Days Read(SpecReader& r, const std::string& key, const std::string& fallback) {
    std::string text = r.String(key).value_or(fallback);
    std::optional<Days> d = ParseDate(text);
    if (!d) r.Fail("parameter '" + key + "' (\"" + text.substr(0, 40) + "\") is not a date YYYY-MM-DD (0001–9999)");
    return *d;
  }

  Days min_, max_;
};

class TimestampImpl : public Impl {
 public:
  explicit TimestampImpl(SpecReader& r) : Impl(r.field()) {
    const int64_t precision = r.Int("precision").value_or(0);
    if (precision < 0 || precision > 6) r.Fail("parameter 'precision' must be in [0, 6]");
    precision_ = static_cast<int>(precision);
    for (int i = 0; i < precision_; ++i) units_per_second_ *= 10;
    with_zone_ = r.Bool("with_zone").value_or(true);
    min_ = Read(r, "min", "2000-01-01T00:00:00") * units_per_second_;
    max_ = Read(r, "max", "2029-12-31T23:59:59") * units_per_second_;
    if (min_ > max_) r.Fail("min timestamp is after max timestamp");
  }

  FieldValue Make(const GenContext&, Rng& rng) const override {
    const int64_t units = rng.Uniform(min_, max_);
    int64_t seconds = units / units_per_second_;
    int64_t fraction = units % units_per_second_;
    if (fraction < 0) {  // floor division for instants before 1970
      fraction += units_per_second_;
      --seconds;
    }
    int64_t days = seconds / 86400;
    int64_t second_of_day = seconds % 86400;
    if (second_of_day < 0) {
      second_of_day += 86400;
      --days;
    }
    std::string s;
    AppendDate(&s, Days(std::chrono::days(days)));
    s.push_back('T');
    AppendPadded(&s, static_cast<uint64_t>(second_of_day / 3600), 2);
    s.push_back(':');
    AppendPadded(&s, static_cast<uint64_t>(second_of_day / 60 % 60), 2);
    s.push_back(':');
    AppendPadded(&s, static_cast<uint64_t>(second_of_day % 60), 2);
    if (precision_ > 0) {
      s.push_back('.');
      AppendPadded(&s, static_cast<uint64_t>(fraction), precision_);
    }
    if (with_zone_) s.push_back('Z');
    return s;
  }

 private:
  // Seconds since 1970-01-01T00:00:00Z of "YYYY-MM-DD[(T| )HH:MM:SS][Z]".
  static int64_t Read(SpecReader& r, const std::string& key, const std::string& fallback) {
    const std::string text = r.String(key).value_or(fallback);
    std::string_view s = text;
    if (s.ends_with('Z')) s.remove_suffix(1);
    std::optional<Days> day = ParseDate(s.substr(0, 10));
    int64_t second_of_day = 0;
    bool ok = day.has_value() && (s.size() == 10 || s.size() == 19);
    if (ok && s.size() == 19) {
      ok = (s[10] == 'T' || s[10] == ' ') && s[13] == ':' && s[16] == ':';
      int hms[3] = {0, 0, 0};
      for (int p = 0; p < 3 && ok; ++p) {
        for (size_t k = 11 + 3 * static_cast<size_t>(p); k < 13 + 3 * static_cast<size_t>(p); ++k) {
          ok = ok && s[k] >= '0' && s[k] <= '9';
          hms[p] = hms[p] * 10 + (s[k] - '0');
        }
      }
      ok = ok && hms[0] <= 23 && hms[1] <= 59 && hms[2] <= 59;
      second_of_day = hms[0] * 3600 + hms[1] * 60 + hms[2];
    }
    if (!ok) {
      r.Fail("parameter '" + key + "' (\"" + text.substr(0, 40) +
             "\") is not a timestamp YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS, optionally ending in Z");
    }
    return int64_t{day->time_since_epoch().count()} * 86400 + second_of_day;
  }

  int precision_ = 0;
  int64_t units_per_second_ = 1;
  bool with_zone_ = true;
  int64_t min_ = 0, max_ = 0;  // in units of 10^-precision s since the epoch
};

// -- bool, choice, const.

class BoolImpl : public Impl {
 public:
  explicit BoolImpl(SpecReader& r) : Impl(r.field()), true_ratio_(r.Ratio("true_ratio").value_or(0.5)) {}
  FieldValue Make(const GenContext&, Rng& rng) const override {
    return std::string(rng.Chance(true_ratio_) ? "true" : "false");
  }

 private:
  double true_ratio_;
};

std::string ScalarText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();  // numbers
}

FieldValue ScalarValue(SpecReader& r, const std::string& key, const json& v) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_string() && !v.is_number() && !v.is_boolean()) r.WrongType(key, "a string, number, boolean or null", v);
  return ScalarText(v);
}

class ChoiceImpl : public Impl {
 public:
  explicit ChoiceImpl(SpecReader& r) : Impl(r.field()) {
    const json* values = r.Get("values");
    if (values == nullptr) r.Fail("gen 'choice' needs 'values', a non-empty array");
    if (!values->is_array() || values->empty()) r.WrongType("values", "a non-empty array", *values);
    for (const json& v : *values) values_.push_back(ScalarValue(r, "values", v));
    const json* weights = r.Get("weights");
    if (weights == nullptr) return;
    if (!weights->is_array() || weights->size() != values_.size()) {
      r.Fail("parameter 'weights' must be an array of " + std::to_string(values_.size()) + " numbers, one per value");
    }
    uint64_t total = 0;
    for (const json& w : *weights) {
      if (!w.is_number() || !(w.get<double>() >= 0 && w.get<double>() <= 1e12)) {
        r.Fail("every weight must be a number in [0, 1e12], got " + w.dump().substr(0, 40));
      }
      total += static_cast<uint64_t>(std::llround(w.get<double>() * 1e6));  // resolution 1e-6
      cumulative_.push_back(total);
    }
    if (total == 0) r.Fail("the weights must not all be zero");
  }

  FieldValue Make(const GenContext&, Rng& rng) const override {
    if (cumulative_.empty()) return rng.Pick(values_);
    const uint64_t x = rng.Below(cumulative_.back());
    const size_t i =
        static_cast<size_t>(std::upper_bound(cumulative_.begin(), cumulative_.end(), x) - cumulative_.begin());
    return values_[i];
  }

 private:
  std::vector<FieldValue> values_;
  std::vector<uint64_t> cumulative_;  // running sums of the weights in millionths; empty: uniform
};

class ConstImpl : public Impl {
 public:
  explicit ConstImpl(SpecReader& r) : Impl(r.field()) {
    const json* v = r.Get("value");
    if (v == nullptr) r.Fail("gen 'const' needs 'value'");
    value_ = ScalarValue(r, "value", *v);
  }
  FieldValue Make(const GenContext&, Rng&) const override { return value_; }

 private:
  FieldValue value_;
};

}  // namespace

ImplPtr NewIntGenerator(SpecReader& r) { return std::make_shared<const IntImpl>(r); }
ImplPtr NewDecimalGenerator(SpecReader& r) { return std::make_shared<const DecimalImpl>(r); }
ImplPtr NewDateGenerator(SpecReader& r) { return std::make_shared<const DateImpl>(r); }
ImplPtr NewTimestampGenerator(SpecReader& r) { return std::make_shared<const TimestampImpl>(r); }
ImplPtr NewBoolGenerator(SpecReader& r) { return std::make_shared<const BoolImpl>(r); }
ImplPtr NewChoiceGenerator(SpecReader& r) { return std::make_shared<const ChoiceImpl>(r); }
ImplPtr NewConstGenerator(SpecReader& r) { return std::make_shared<const ConstImpl>(r); }

}  // namespace testpool::builders::generator_internal
