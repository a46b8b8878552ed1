#include "orchestrator/core/generators.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cmath>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <span>

#include <nlohmann/json.hpp>

#include "orchestrator/core/generator_domains.h"
#include "orchestrator/util/error.h"

namespace testpool::core {

using nlohmann::json;

// ---- Namespaces -----------------------------------------------------------------------------

bool IsValidNamespace(std::string_view ns) {
  if (ns.empty() || ns.size() > kMaxNamespaceLength) return false;
  return std::all_of(ns.begin(), ns.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; });
}

// ---- The generators -------------------------------------------------------------------------

class FieldGenerator::Impl {
 public:
  explicit Impl(std::string field) : field_(std::move(field)) {}
  virtual ~Impl() = default;
  virtual FieldValue Make(const GenContext& ctx, Rng& rng) const = 0;

 protected:
  [[noreturn]] void Fail(const std::string& problem) const {
    throw Error(ErrorCode::kInvalidArgument, "field '" + field_ + "': " + problem, {{"field", field_}});
  }
  void CheckNamespace(std::string_view ns) const {
    if (!IsValidNamespace(ns)) {
      Fail("namespace '" + std::string(ns.substr(0, 60)) + "' is not 1 to 40 characters of [a-z0-9_-]");
    }
  }

  const std::string field_;
};

namespace {

using Impl = FieldGenerator::Impl;
using ImplPtr = std::shared_ptr<const Impl>;

// -- Built-in tables. Changing one changes generated values: bump kGeneratorsVersion. The name,
// address and national tables are in generator_domains.cc.

constexpr std::string_view kDefaultEmailDomains[] = {"example.com", "example.net", "example.org"};

// -- Small helpers.

std::string Join(std::span<const std::string_view> items) {
  std::string out;
  for (std::string_view s : items) out += (out.empty() ? "" : ", ") + std::string(s);
  return out;
}

// Letters of `name`, lower-cased; everything else dropped ("O'Brien" → "obrien").
std::string LowerLetters(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') out.push_back(static_cast<char>(c - 'A' + 'a'));
    if (c >= 'a' && c <= 'z') out.push_back(c);
  }
  return out;
}

std::string ScalarText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();  // numbers
}

// Reads a spec's parameters with type checks, remembering which keys were asked for so that any
// other key can be reported as unknown.
class SpecReader {
 public:
  SpecReader(const std::string& field, const json& spec) : field_(field), spec_(spec) {}

  [[noreturn]] void Fail(const std::string& problem) const {
    throw Error(ErrorCode::kInvalidArgument, "field '" + field_ + "': " + problem, {{"field", field_}});
  }
  [[noreturn]] void WrongType(const std::string& key, const std::string& wanted, const json& got) const {
    Fail("parameter '" + key + "' must be " + wanted + ", got " + got.type_name() + " " + got.dump().substr(0, 40));
  }

  const std::string& field() const { return field_; }

  const json* Get(const std::string& key) {
    known_.insert(key);
    auto it = spec_.find(key);
    return it == spec_.end() ? nullptr : &*it;
  }

  std::optional<std::string> String(const std::string& key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) WrongType(key, "a string", *v);
    return v->get<std::string>();
  }

  std::optional<int64_t> Int(const std::string& key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number_integer()) WrongType(key, "an integer", *v);
    if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t{std::numeric_limits<int64_t>::max()}) {
      Fail("parameter '" + key + "' is beyond the int64 range");
    }
    return v->get<int64_t>();
  }

  std::optional<bool> Bool(const std::string& key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) WrongType(key, "true or false", *v);
    return v->get<bool>();
  }

  std::optional<double> Ratio(const std::string& key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) WrongType(key, "a number in [0, 1]", *v);
    double d = v->get<double>();
    if (!(d >= 0 && d <= 1)) Fail("parameter '" + key + "' must be in [0, 1], got " + v->dump());
    return d;
  }

  std::optional<std::vector<std::string>> Strings(const std::string& key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_array() || v->empty()) WrongType(key, "a non-empty array of strings", *v);
    std::vector<std::string> out;
    for (const json& e : *v) {
      if (!e.is_string()) WrongType(key, "a non-empty array of strings", *v);
      out.push_back(e.get<std::string>());
    }
    return out;
  }

  // "a" or ["a","b"] under two names; at most one of them.
  std::optional<std::vector<std::string>> OneOrMany(const std::string& one, const std::string& many) {
    std::optional<std::string> single = String(one);
    std::optional<std::vector<std::string>> several = Strings(many);
    if (single && several) Fail("give '" + one + "' or '" + many + "', not both");
    if (single) return std::vector<std::string>{*single};
    return several;
  }

  void CheckNoUnknownKeys(const std::string& gen) const {
    for (const auto& item : spec_.items()) {
      if (known_.count(item.key()) == 0) {
        std::string accepted;
        for (const std::string& k : known_) accepted += (accepted.empty() ? "" : ", ") + k;
        Fail("unknown parameter '" + item.key() + "' for gen '" + gen + "' (accepted: " + accepted + ")");
      }
    }
  }

 private:
  const std::string& field_;
  const json& spec_;
  std::set<std::string> known_{"gen"};
};

// What FieldGenerator exposes beside the Impl.
struct Meta {
  std::string country_field;
  std::vector<std::string> accepted_countries;
  std::vector<std::string> produced_countries;
};

// -- Country parameters shared by iban, postal_code, phone and city.

class CountrySource {
 public:
  CountrySource(SpecReader& r, std::span<const std::string_view> supported, std::string_view what, Meta* meta)
      : supported_(supported.begin(), supported.end()) {
    std::optional<std::string> one = r.String("country");
    std::optional<std::vector<std::string>> many = r.Strings("countries");
    std::optional<std::string> field = r.String("country_field");
    if ((one ? 1 : 0) + (many ? 1 : 0) + (field ? 1 : 0) > 1) {
      r.Fail("give at most one of 'country', 'countries' and 'country_field'");
    }
    if (one) many = std::vector<std::string>{*one};
    if (field) {
      if (field->empty()) r.Fail("parameter 'country_field' must name a field");
      field_ = *field;
      meta->country_field = *field;
      meta->accepted_countries.assign(supported.begin(), supported.end());
    } else if (many) {
      for (const std::string& c : *many) fixed_.push_back(Canonical(c, r, what));
    } else {
      fixed_ = supported_;
    }
  }

  // The country of this value, as one of the `supported` string_views (static storage). Throws
  // Error(kInvalidArgument) naming `field` when the country_field's value is unusable.
  std::string_view Resolve(const GenContext& ctx, Rng& rng, const std::string& field, std::string_view what) const {
    if (field_.empty()) return rng.Pick(fixed_);
    const FieldValue* found = nullptr;
    if (ctx.row != nullptr) {
      for (const NamedValue& nv : *ctx.row) {
        if (nv.name == field_) found = &nv.value;
      }
    }
    std::string problem;
    if (found == nullptr) {
      problem = "country_field '" + field_ + "' has no value in this row (it must come earlier)";
    } else if (!found->has_value()) {
      problem = "country_field '" + field_ + "' is NULL";
    } else {
      for (std::string_view s : supported_) {
        if (s == **found) return s;
      }
      problem = "country '" + (*found)->substr(0, 40) + "' from field '" + field_ + "' is not supported by " +
                std::string(what) + " (supported: " + Join(supported_) + ")";
    }
    throw Error(ErrorCode::kInvalidArgument, "field '" + field + "': " + problem, {{"field", field}});
  }

 private:
  std::string_view Canonical(const std::string& c, SpecReader& r, std::string_view what) const {
    for (std::string_view s : supported_) {
      if (s == c) return s;
    }
    r.Fail("country '" + c.substr(0, 40) + "' is not supported by " + std::string(what) +
           " (supported: " + Join(supported_) + ")");
  }

  std::vector<std::string_view> supported_;
  std::vector<std::string_view> fixed_;
  std::string field_;
};

// A generator that reads a country: Resolve() with this generator's error prefix.
class CountryAwareImpl : public Impl {
 public:
  CountryAwareImpl(SpecReader& r, std::span<const std::string_view> supported, std::string_view what, Meta* meta)
      : Impl(r.field()), countries_(r, supported, what, meta), what_(what) {}

 protected:
  std::string_view Country(const GenContext& ctx, Rng& rng) const {
    return countries_.Resolve(ctx, rng, field_, what_);
  }

 private:
  CountrySource countries_;
  std::string_view what_;
};

// -- unique_id and sequence.

class UniqueIdImpl : public Impl {
 public:
  explicit UniqueIdImpl(SpecReader& r) : Impl(r.field()) {
    prefix_ = r.String("prefix").value_or("");
    if (prefix_.size() > 64 || !std::all_of(prefix_.begin(), prefix_.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                 c == ':' || c == '-';
        })) {
      r.Fail("parameter 'prefix' must be at most 64 characters of [A-Za-z0-9_.:-]");
    }
    max_length_ = r.Int("max_length").value_or(0);
    if (r.Get("max_length") != nullptr && max_length_ < static_cast<int64_t>(prefix_.size()) + 3) {
      r.Fail("max_length " + std::to_string(max_length_) + " cannot hold prefix '" + prefix_ +
             "' + a namespace + '-' + an index (at least " + std::to_string(prefix_.size() + 3) + ")");
    }
  }

  FieldValue Make(const GenContext& ctx, Rng&) const override {
    CheckNamespace(ctx.ns);
    std::string id = prefix_;
    id.append(ctx.ns).push_back('-');
    AppendPadded(&id, ctx.row_index, 1);
    if (max_length_ > 0 && static_cast<int64_t>(id.size()) > max_length_) {
      Fail("id '" + id + "' is " + std::to_string(id.size()) + " characters, over max_length " +
           std::to_string(max_length_) + ": use a shorter namespace or prefix");
    }
    return id;
  }

 private:
  std::string prefix_;
  int64_t max_length_ = 0;  // 0: no limit
};

class SequenceImpl : public Impl {
 public:
  explicit SequenceImpl(SpecReader& r) : Impl(r.field()) {
    start_ = r.Int("start").value_or(1);
    step_ = r.Int("step").value_or(1);
    if (step_ == 0) r.Fail("parameter 'step' must not be 0");
  }

  FieldValue Make(const GenContext& ctx, Rng&) const override {
    int64_t v = 0;
    if (ctx.row_index > uint64_t{std::numeric_limits<int64_t>::max()} ||
        __builtin_mul_overflow(static_cast<int64_t>(ctx.row_index), step_, &v) ||
        __builtin_add_overflow(v, start_, &v)) {
      Fail("sequence value for row " + std::to_string(ctx.row_index) + " overflows int64");
    }
    return std::to_string(v);
  }

 private:
  int64_t start_ = 1;
  int64_t step_ = 1;
};

// -- email.

// A reserved domain: example.com/.net/.org or below them, or under .test/.example/.invalid, made
// of LDH labels (lower case) of 1–63 characters.
bool IsReservedDomain(std::string_view d) {
  if (d.empty() || d.size() > 189) return false;
  size_t start = 0;
  while (start <= d.size()) {
    size_t dot = d.find('.', start);
    std::string_view label = d.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    }
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  auto is_or_under = [d](std::string_view base) {
    return d == base || (d.size() > base.size() && d.ends_with(base) && d[d.size() - base.size() - 1] == '.');
  };
  for (std::string_view base : {"example.com", "example.net", "example.org"}) {
    if (is_or_under(base)) return true;
  }
  for (std::string_view tld : {".test", ".example", ".invalid"}) {
    if (d.size() > tld.size() && d.ends_with(tld)) return true;
  }
  return false;
}

class EmailImpl : public Impl {
 public:
  explicit EmailImpl(SpecReader& r) : Impl(r.field()) {
    std::optional<std::vector<std::string>> domains = r.OneOrMany("domain", "domains");
    if (domains) {
      for (const std::string& d : *domains) {
        if (!IsReservedDomain(d)) {
          r.Fail("e-mail domain '" + d.substr(0, 60) +
                 "' is not reserved for testing: use example.com, example.net, example.org (or a subdomain), "
                 "or a lower-case name under .test, .example or .invalid");
        }
      }
      domains_ = *domains;
    } else {
      domains_.assign(std::begin(kDefaultEmailDomains), std::end(kDefaultEmailDomains));
    }
  }

  FieldValue Make(const GenContext& ctx, Rng& rng) const override {
    CheckNamespace(ctx.ns);
    std::string first = LowerLetters(PickFirstName(rng));
    std::string last = LowerLetters(PickLastName(rng));
    std::string tail(ctx.ns);  // namespace '.' index: unique, and decodable from the end
    tail.push_back('.');
    AppendPadded(&tail, ctx.row_index, 1);
    std::string local = first + "." + last + "." + tail;
    if (local.size() > 64) local = tail;  // RFC 5321: local part ≤ 64 octets (tail ≤ 61)
    return local + "@" + rng.Pick(domains_);
  }

 private:
  std::vector<std::string> domains_;
};

// -- card_number.

class CardImpl : public Impl {
 public:
  explicit CardImpl(SpecReader& r) : Impl(r.field()) {
    std::optional<std::vector<std::string>> names = r.OneOrMany("brand", "brands");
    for (std::string_view b : kCardBrands) {
      if (!names || std::find(names->begin(), names->end(), b) != names->end()) brands_.push_back(b);
    }
    if (names) {
      for (const std::string& n : *names) {
        if (std::find(brands_.begin(), brands_.end(), n) == brands_.end()) {
          r.Fail("unknown card brand '" + n.substr(0, 40) + "' (known: " + Join(kCardBrands) + ")");
        }
      }
    }
  }

  FieldValue Make(const GenContext&, Rng& rng) const override { return MakeCardNumber(rng.Pick(brands_), rng); }

 private:
  std::vector<std::string_view> brands_;  // in the order of kCardBrands
};

// -- iban, postal_code, phone.

class IbanImpl : public CountryAwareImpl {
 public:
  IbanImpl(SpecReader& r, Meta* meta) : CountryAwareImpl(r, kIbanCountries, "iban", meta) {
    std::string format = r.String("format").value_or("electronic");
    if (format != "electronic" && format != "print") {
      r.Fail("parameter 'format' must be \"electronic\" or \"print\", got \"" + format.substr(0, 40) + "\"");
    }
    print_ = format == "print";
  }

  FieldValue Make(const GenContext& ctx, Rng& rng) const override {
    const std::string_view cc = Country(ctx, rng);
    std::string iban = MakeIban(cc, rng);
    return print_ ? IbanPrintForm(iban) : iban;
  }

 private:
  bool print_ = false;
};

class PostalImpl : public CountryAwareImpl {
 public:
  PostalImpl(SpecReader& r, Meta* meta) : CountryAwareImpl(r, kCountries, "postal_code", meta) {
    zip_plus4_ = r.Bool("zip_plus4").value_or(false);
  }

  FieldValue Make(const GenContext& ctx, Rng& rng) const override {
    const std::string_view cc = Country(ctx, rng);
    return MakePostalCode(cc, zip_plus4_, rng);
  }

 private:
  bool zip_plus4_ = false;
};

class PhoneImpl : public CountryAwareImpl {
 public:
  PhoneImpl(SpecReader& r, Meta* meta) : CountryAwareImpl(r, kCountries, "phone", meta) {}

  FieldValue Make(const GenContext& ctx, Rng& rng) const override {
    const std::string_view cc = Country(ctx, rng);
    return MakePhoneNumber(cc, rng);
  }
};

// -- Names, streets, cities, countries.

class NameImpl : public Impl {
 public:
  enum class Kind { kFirst, kLast, kFull, kStreet };
  NameImpl(SpecReader& r, Kind kind) : Impl(r.field()), kind_(kind) {}

  FieldValue Make(const GenContext&, Rng& rng) const override {
    switch (kind_) {
      case Kind::kFirst:
        return std::string(PickFirstName(rng));
      case Kind::kLast:
        return std::string(PickLastName(rng));
      case Kind::kFull:
        return MakeFullName(rng);
      case Kind::kStreet:
        return MakeStreetAddress(rng);
    }
    return std::string();  // not reached: the switch covers every Kind
  }

 private:
  Kind kind_;
};

class CityImpl : public CountryAwareImpl {
 public:
  CityImpl(SpecReader& r, Meta* meta) : CountryAwareImpl(r, kCountries, "city", meta) {}

  FieldValue Make(const GenContext& ctx, Rng& rng) const override {
    const std::string_view cc = Country(ctx, rng);
    const std::string_view city = PickCity(cc, rng);
    if (city.empty()) Fail("no cities for " + std::string(cc));  // not reached: every supported country has cities
    return std::string(city);
  }
};

class CountryImpl : public Impl {
 public:
  CountryImpl(SpecReader& r, Meta* meta) : Impl(r.field()) {
    std::optional<std::vector<std::string>> only = r.Strings("countries");
    if (only) {
      for (const std::string& c : *only) {
        if (std::find(std::begin(kCountries), std::end(kCountries), c) == std::end(kCountries)) {
          r.Fail("country '" + c.substr(0, 40) + "' is not supported (supported: " + Join(kCountries) + ")");
        }
        countries_.push_back(c);
      }
    } else {
      countries_.assign(std::begin(kCountries), std::end(kCountries));
    }
    meta->produced_countries = countries_;
  }

  FieldValue Make(const GenContext&, Rng& rng) const override { return rng.Pick(countries_); }

 private:
  std::vector<std::string> countries_;
};

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

// -- The factory.

using Factory = std::function<ImplPtr(SpecReader&, Meta*)>;

template <typename T>
Factory Simple() {
  return [](SpecReader& r, Meta*) { return std::make_shared<const T>(r); };
}
template <typename T>
Factory WithMeta() {
  return [](SpecReader& r, Meta* m) { return std::make_shared<const T>(r, m); };
}
Factory Named(NameImpl::Kind kind) {
  return [kind](SpecReader& r, Meta*) { return std::make_shared<const NameImpl>(r, kind); };
}

const std::map<std::string, Factory, std::less<>>& Factories() {
  static const std::map<std::string, Factory, std::less<>> factories = {
      {"unique_id", Simple<UniqueIdImpl>()},
      {"sequence", Simple<SequenceImpl>()},
      {"email", Simple<EmailImpl>()},
      {"card_number", Simple<CardImpl>()},
      {"iban", WithMeta<IbanImpl>()},
      {"postal_code", WithMeta<PostalImpl>()},
      {"phone", WithMeta<PhoneImpl>()},
      {"first_name", Named(NameImpl::Kind::kFirst)},
      {"last_name", Named(NameImpl::Kind::kLast)},
      {"full_name", Named(NameImpl::Kind::kFull)},
      {"street", Named(NameImpl::Kind::kStreet)},
      {"city", WithMeta<CityImpl>()},
      {"country", WithMeta<CountryImpl>()},
      {"int", Simple<IntImpl>()},
      {"decimal", Simple<DecimalImpl>()},
      {"date", Simple<DateImpl>()},
      {"timestamp", Simple<TimestampImpl>()},
      {"bool", Simple<BoolImpl>()},
      {"choice", Simple<ChoiceImpl>()},
      {"const", Simple<ConstImpl>()},
  };
  return factories;
}

[[noreturn]] void Invalid(const std::string& message) { throw Error(ErrorCode::kInvalidArgument, message); }

}  // namespace

// ---- FieldGenerator and RowGenerator --------------------------------------------------------

FieldGenerator::FieldGenerator(std::string field_name, const json& spec) : name_(std::move(field_name)) {
  if (name_.empty()) Invalid("every field needs a non-empty name");
  SpecReader r(name_, spec);
  if (!spec.is_object()) {
    r.Fail(std::string("the spec must be a JSON object such as {\"gen\":\"email\"}, got ") + spec.type_name());
  }
  std::optional<std::string> gen = r.String("gen");
  if (!gen) r.Fail("the spec has no \"gen\" (which generator to use)");
  gen_ = *gen;
  auto it = Factories().find(gen_);
  if (it == Factories().end()) {
    std::string known;
    for (const auto& [name, factory] : Factories()) known += (known.empty() ? "" : ", ") + name;
    r.Fail("unknown generator '" + gen_.substr(0, 40) + "' (known: " + known + ")");
  }
  null_ratio_ = r.Ratio("null_ratio").value_or(0);
  Meta meta;
  impl_ = it->second(r, &meta);
  r.CheckNoUnknownKeys(gen_);
  country_field_ = std::move(meta.country_field);
  accepted_countries_ = std::move(meta.accepted_countries);
  produced_countries_ = std::move(meta.produced_countries);
}

FieldValue FieldGenerator::Generate(const GenContext& ctx) const {
  assert(ctx.rng != nullptr);
  if (null_ratio_ > 0 && ctx.rng->Chance(null_ratio_)) return std::nullopt;
  return impl_->Make(ctx, *ctx.rng);
}

RowGenerator::RowGenerator(std::vector<FieldGenerator> fields) : fields_(std::move(fields)) {
  for (size_t i = 0; i < fields_.size(); ++i) {
    const FieldGenerator& f = fields_[i];
    for (size_t j = 0; j < i; ++j) {
      if (fields_[j].name() == f.name()) Invalid("two fields are named '" + f.name() + "'");
    }
    if (f.country_field().empty()) continue;
    const std::string prefix = "field '" + f.name() + "': country_field '" + f.country_field() + "' ";
    auto source = std::find_if(fields_.begin(), fields_.begin() + static_cast<std::ptrdiff_t>(i),
                               [&](const FieldGenerator& g) { return g.name() == f.country_field(); });
    if (source == fields_.begin() + static_cast<std::ptrdiff_t>(i)) {
      Invalid(prefix + "does not name an earlier field");
    }
    if (source->null_ratio() > 0) Invalid(prefix + "can be NULL (its null_ratio is not 0)");
    for (const std::string& c : source->produced_countries()) {
      if (std::find(f.accepted_countries().begin(), f.accepted_countries().end(), c) == f.accepted_countries().end()) {
        Invalid(prefix + "can produce '" + c + "', which gen '" + f.gen() +
                "' does not support: restrict that field's \"countries\"");
      }
    }
  }
}

RowGenerator RowGenerator::FromJson(const json& fields) {
  if (!fields.is_array()) Invalid("the fields must be a JSON array of specs");
  std::vector<FieldGenerator> built;
  for (const json& spec : fields) {
    if (!spec.is_object() || !spec.contains("name") || !spec["name"].is_string() ||
        spec["name"].get<std::string>().empty()) {
      Invalid("every field spec must be an object with a non-empty string \"name\": " + spec.dump().substr(0, 80));
    }
    json rest = spec;
    rest.erase("name");
    built.emplace_back(spec["name"].get<std::string>(), rest);
  }
  return RowGenerator(std::move(built));
}

RowValues RowGenerator::Generate(uint64_t seed, std::string_view ns, uint64_t row_index) const {
  if (!IsValidNamespace(ns)) {
    Invalid("namespace '" + std::string(ns.substr(0, 60)) + "' is not 1 to 40 characters of [a-z0-9_-]");
  }
  RowValues row;
  row.reserve(fields_.size());
  for (const FieldGenerator& f : fields_) {
    Rng rng = Rng::ForField(seed, f.name(), row_index);
    GenContext ctx{&rng, ns, row_index, &row};
    FieldValue v = f.Generate(ctx);
    row.push_back({f.name(), std::move(v)});
  }
  return row;
}

}  // namespace testpool::core