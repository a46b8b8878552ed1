#include "orchestrator/builders/generators.h"

// The generators of generators.h but the scalar ones (generator_scalars.cc), the factory that
// picks one by "gen", FieldGenerator and RowGenerator. The spec reader, the Impl base class and
// the country parameters are in generator_spec.{h,cc}.
#include <algorithm>
#include <cassert>
#include <functional>
#include <iterator>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "orchestrator/builders/generator_domains.h"
#include "orchestrator/builders/generator_spec.h"
#include "orchestrator/util/error.h"

namespace testpool::builders {

using nlohmann::json;

// ---- Namespaces -----------------------------------------------------------------------------

bool IsValidNamespace(std::string_view ns) {
  if (ns.empty() || ns.size() > kMaxNamespaceLength) return false;
  return std::all_of(ns.begin(), ns.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; });
}

// ---- The generators -------------------------------------------------------------------------

namespace {

using generator_internal::CountryAwareImpl;
using generator_internal::Impl;
using generator_internal::ImplPtr;
using generator_internal::Join;
using generator_internal::Meta;
using generator_internal::SpecReader;

// -- Built-in tables. Changing one changes generated values: bump kGeneratorsVersion. The name,
// address and national tables are in generator_domains.cc.

constexpr std::string_view kDefaultEmailDomains[] = {"example.com", "example.net", "example.org"};

// Letters of `name`, lower-cased; everything else dropped ("O'Brien" → "obrien").
std::string LowerLetters(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c >= 'A' && c <= 'Z') out.push_back(static_cast<char>(c - 'A' + 'a'));
    if (c >= 'a' && c <= 'z') out.push_back(c);
  }
  return out;
}

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

// -- derive.

// The byte offset where code point `n` of UTF-8 text `v` starts, counting from its start
// (from_end false) or from its end (from_end true: the start of the n-th code point from the
// end); nullopt when `v` has fewer than n code points. Continuation bytes are 10xxxxxx.
std::optional<size_t> CodePointOffset(std::string_view v, size_t n, bool from_end) {
  auto starts = [&](size_t i) { return (static_cast<unsigned char>(v[i]) & 0xC0) != 0x80; };
  size_t seen = 0;
  if (from_end) {
    for (size_t i = v.size(); i-- > 0;) {
      if (starts(i) && ++seen == n) return i;
    }
    return std::nullopt;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    if (starts(i) && seen++ == n) return i;
  }
  return seen == n ? std::optional<size_t>(v.size()) : std::nullopt;
}

class DeriveImpl : public Impl {
 public:
  DeriveImpl(SpecReader& r, Meta* meta) : Impl(r.field()) {
    std::optional<std::string> source = r.String("field");
    if (!source || source->empty()) {
      r.Fail("gen 'derive' needs 'field': the earlier field of the same row it is derived from");
    }
    source_ = *source;
    meta->derived_from = source_;
    const std::optional<int64_t> first = r.Int("first"), last = r.Int("last");
    if (first.has_value() == last.has_value()) {
      r.Fail("gen 'derive' needs exactly one of 'first' and 'last' (how many characters of the field to keep)");
    }
    from_end_ = last.has_value();
    const int64_t count = from_end_ ? *last : *first;
    if (count < 1 || count > 64) {
      r.Fail(std::string("parameter '") + (from_end_ ? "last" : "first") + "' must be in [1, 64]");
    }
    count_ = static_cast<size_t>(count);
  }

  FieldValue Make(const GenContext& ctx, Rng&) const override {
    const FieldValue* found = nullptr;
    if (ctx.row != nullptr) {
      for (const NamedValue& nv : *ctx.row) {
        if (nv.name == source_) found = &nv.value;
      }
    }
    if (found == nullptr) Fail("field '" + source_ + "' has no value in this row (it must come earlier)");
    if (!found->has_value()) return std::nullopt;  // NULL in, NULL out
    const std::string& v = **found;
    const std::optional<size_t> cut = CodePointOffset(v, count_, from_end_);
    if (!cut) {
      Fail("the value of field '" + source_ + "' (\"" + v.substr(0, 40) + "\") has fewer than " +
           std::to_string(count_) + " characters");
    }
    return from_end_ ? v.substr(*cut) : v.substr(0, *cut);
  }

 private:
  std::string source_;
  size_t count_ = 0;
  bool from_end_ = false;
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
// For the generators whose classes are private to generator_scalars.cc and generator_codes.cc.
Factory Scalar(ImplPtr (*make)(SpecReader&)) {
  return [make](SpecReader& r, Meta*) { return make(r); };
}
Factory Named(NameImpl::Kind kind) {
  return [kind](SpecReader& r, Meta*) { return std::make_shared<const NameImpl>(r, kind); };
}

const std::map<std::string, Factory, std::less<>>& Factories() {
  static const std::map<std::string, Factory, std::less<>> factories = {
      {"unique_id", Simple<UniqueIdImpl>()},
      {"unique_code", Scalar(&generator_internal::NewUniqueCodeGenerator)},
      {"derive", WithMeta<DeriveImpl>()},
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
      {"int", Scalar(&generator_internal::NewIntGenerator)},
      {"decimal", Scalar(&generator_internal::NewDecimalGenerator)},
      {"date", Scalar(&generator_internal::NewDateGenerator)},
      {"timestamp", Scalar(&generator_internal::NewTimestampGenerator)},
      {"bool", Scalar(&generator_internal::NewBoolGenerator)},
      {"choice", Scalar(&generator_internal::NewChoiceGenerator)},
      {"const", Scalar(&generator_internal::NewConstGenerator)},
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
  derived_from_ = std::move(meta.derived_from);
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
    if (!f.derived_from().empty()) CheckDerivedFrom(i);
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

void RowGenerator::CheckDerivedFrom(size_t i) const {
  const FieldGenerator& f = fields_[i];
  const std::string prefix = "field '" + f.name() + "': derives from '" + f.derived_from() + "', ";
  if (f.derived_from() == f.name()) Invalid(prefix + "itself");
  auto source = std::find_if(fields_.begin(), fields_.end(),
                             [&](const FieldGenerator& g) { return g.name() == f.derived_from(); });
  if (source == fields_.end()) Invalid(prefix + "which is not a field of this row");
  if (source > fields_.begin() + static_cast<std::ptrdiff_t>(i)) {
    Invalid(prefix + "which is declared after it: a field can only derive from an earlier one (move '" +
            f.derived_from() + "' above '" + f.name() + "')");
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

RowValues RowGenerator::Generate(uint64_t seed, std::string_view ns, uint64_t row_index,
                                 const std::map<std::string, std::string>& fixed) const {
  if (!IsValidNamespace(ns)) {
    Invalid("namespace '" + std::string(ns.substr(0, 60)) + "' is not 1 to 40 characters of [a-z0-9_-]");
  }
  RowValues row;
  row.reserve(fields_.size());
  for (const FieldGenerator& f : fields_) {
    if (auto it = fixed.find(f.name()); it != fixed.end()) {
      row.push_back({f.name(), it->second});
      continue;
    }
    Rng rng = Rng::ForField(seed, f.name(), row_index);
    GenContext ctx{&rng, ns, row_index, &row};
    FieldValue v = f.Generate(ctx);
    row.push_back({f.name(), std::move(v)});
  }
  return row;
}

}  // namespace testpool::builders