// The machinery the generators of generators.h are built on: reading a field's JSON spec with
// type checks, the generator base class FieldGenerator::Impl, and the country parameters shared
// by iban, postal_code, phone and city.
//
// Internal to builders/: only generators.cc, generator_scalars.cc and generator_codes.cc include this
// header, and everything but FieldGenerator::Impl lives in namespace generator_internal. The
// recipe-facing description of every generator and parameter is in generators.h.
//
// Errors. Everything that reports a user error throws Error(kInvalidArgument) whose message
// starts "field '<name>': " and whose details carry {"field": name}, as FieldGenerator promises.
//
// Thread safety. A SpecReader is used by one thread while one FieldGenerator is built. An Impl
// (and a CountrySource inside one) is immutable after construction, so Make may be called from
// several threads at once, each with its own Rng and GenContext.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchestrator/builders/generators.h"

namespace testpool::builders {

// The base of every generator: one subclass per "gen", built from the spec by the factory in
// generators.cc and shared, immutable, by copies of its FieldGenerator.
class FieldGenerator::Impl {
 public:
  explicit Impl(std::string field) : field_(std::move(field)) {}
  virtual ~Impl() = default;

  // One value of this field (nullopt for NULL), drawing from `rng` in a fixed order. Throws
  // Error(kInvalidArgument) when ctx makes the value impossible (see FieldGenerator::Generate).
  virtual FieldValue Make(const GenContext& ctx, Rng& rng) const = 0;

 protected:
  // Throws Error(kInvalidArgument) "field '<field_>': <problem>".
  [[noreturn]] void Fail(const std::string& problem) const;
  // Fails unless IsValidNamespace(ns).
  void CheckNamespace(std::string_view ns) const;

  const std::string field_;
};

namespace generator_internal {

using Impl = FieldGenerator::Impl;
using ImplPtr = std::shared_ptr<const Impl>;

// The items separated by ", " ("US, CA, GB").
std::string Join(std::span<const std::string_view> items);

// Reads a spec's parameters with type checks, remembering which keys were asked for so that any
// other key can be reported as unknown. Every getter returns nullopt (nullptr for Get) when the
// key is absent and throws Error(kInvalidArgument) when it is present with the wrong type or
// outside its range. Holds references: `field` and `spec` must outlive the reader.
class SpecReader {
 public:
  SpecReader(const std::string& field, const nlohmann::json& spec) : field_(field), spec_(spec) {}

  // Throws Error(kInvalidArgument) "field '<field>': <problem>".
  [[noreturn]] void Fail(const std::string& problem) const;
  // Fails with "parameter '<key>' must be <wanted>, got <type> <value>".
  [[noreturn]] void WrongType(const std::string& key, const std::string& wanted, const nlohmann::json& got) const;

  const std::string& field() const { return field_; }

  // The raw value of `key`, or nullptr; no type check.
  const nlohmann::json* Get(const std::string& key);
  std::optional<std::string> String(const std::string& key);
  // An integer within the int64 range.
  std::optional<int64_t> Int(const std::string& key);
  std::optional<bool> Bool(const std::string& key);
  // A number in [0, 1].
  std::optional<double> Ratio(const std::string& key);
  // A non-empty array of strings.
  std::optional<std::vector<std::string>> Strings(const std::string& key);
  // "a" under `one` or ["a","b"] under `many`; fails when both are given.
  std::optional<std::vector<std::string>> OneOrMany(const std::string& one, const std::string& many);

  // Fails naming the first key of the spec that no getter asked for (nor "gen"), and listing the
  // accepted ones; `gen` names the generator in the message.
  void CheckNoUnknownKeys(const std::string& gen) const;

 private:
  const std::string& field_;
  const nlohmann::json& spec_;
  std::set<std::string> known_{"gen"};
};

// What FieldGenerator exposes beside the Impl (see its accessors of the same names).
struct Meta {
  std::string country_field;
  std::string derived_from;
  std::vector<std::string> accepted_countries;
  std::vector<std::string> produced_countries;
};

// The country parameters shared by iban, postal_code, phone and city: at most one of "country"
// (one code), "countries" (several) and "country_field" (an earlier field of the row); none means
// every supported country. `supported` must have static storage (kCountries, kIbanCountries).
class CountrySource {
 public:
  // Reads the parameters from `r`, failing on a country not in `supported` (`what` names the
  // generator in the message). With a country_field, records it and the supported countries in
  // *meta for RowGenerator's checks.
  CountrySource(SpecReader& r, std::span<const std::string_view> supported, std::string_view what, Meta* meta);

  // The country of this value, as one of the `supported` string_views (static storage): drawn
  // from the fixed list, or read from the country_field in ctx.row. Throws
  // Error(kInvalidArgument) naming `field` when the country_field's value is missing, NULL or
  // not supported.
  std::string_view Resolve(const GenContext& ctx, Rng& rng, const std::string& field, std::string_view what) const;

 private:
  std::string_view Canonical(const std::string& c, SpecReader& r, std::string_view what) const;

  std::vector<std::string_view> supported_;
  std::vector<std::string_view> fixed_;
  std::string field_;  // the country_field, or "" when the country is drawn from fixed_
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

// ---- The scalar generators (generator_scalars.cc) -------------------------------------------
//
// Each reads its parameters from `r` (failing as FieldGenerator's constructor documents) and
// returns the generator; the parameters and formats are described in generators.h.

ImplPtr NewIntGenerator(SpecReader& r);        // "int"
ImplPtr NewDecimalGenerator(SpecReader& r);    // "decimal"
ImplPtr NewDateGenerator(SpecReader& r);       // "date"
ImplPtr NewTimestampGenerator(SpecReader& r);  // "timestamp"
ImplPtr NewBoolGenerator(SpecReader& r);       // "bool"
ImplPtr NewChoiceGenerator(SpecReader& r);     // "choice"
ImplPtr NewConstGenerator(SpecReader& r);      // "const"

// ---- Codes (generator_codes.cc) ------------------------------------------------------------

ImplPtr NewUniqueCodeGenerator(SpecReader& r);  // "unique_code"

}  // namespace generator_internal
}  // namespace testpool::builders
