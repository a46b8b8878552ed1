// Value generators for builders: fresh, domain-valid column values from a declarative JSON spec.
//
// A builder recipe names, for each column, a generator and its parameters ("a unique e-mail", "a
// Visa or Mastercard number", "a postal code of the row's country"). This module turns one such
// spec into a FieldGenerator and produces the values; it is pure code (no I/O, no clock, no global
// state). Reading recipes, resolving references between them and COPYing rows are done elsewhere.
//
// Values are text as PostgreSQL's COPY would take it (before COPY's own escaping, which is the
// writer's job: `choice` and `const` pass user text through unchanged), or SQL NULL (nullopt).
//
// Determinism. Every random choice comes from Rng (rng.h), a hand-written xoshiro256** seeded
// through splitmix64 — never from std:: distributions, whose output differs between standard
// libraries — and ratios are turned into integer thresholds exactly, so the same inputs give the
// same values on every platform. RowGenerator gives each field of each row its own stream,
// Rng::ForField(seed, field name, row index): row i is a function of (seed, namespace, i, specs)
// alone, whatever was generated before it, and adding, removing or reordering a field changes no
// other field's values (except fields that read it through `country_field` or `derive`). The
// namespace takes no part in the random stream; it only appears inside the values of `unique_id`,
// `email` and `unique_code`.
// So a failing test prints the recipe seed (and its namespace); replaying that seed, even under
// another namespace, gives the same values except for the namespace text inside ids and e-mails.
// Give workers different seeds if their random columns (card numbers, IBANs) should differ.
// Changing a table (below, or the built-in ones in generator_domains.cc) or the derivation
// changes values: kGeneratorsVersion says which.
//
// Uniqueness without coordination. `unique_id` and `email` embed the namespace (a lease id or an
// explicit name, [a-z0-9_-]{1,40}) and the row index in a form that decodes back to both, so two
// workers with different namespaces never produce the same value and one namespace never repeats
// one. `unique_code` must fit a fixed shape too short to spell a namespace out: it embeds a hash
// of the namespace and the row index, so one namespace never repeats a code within its capacity
// (and fails past it), and two namespaces share codes only if their hashes share a slot — see
// its entry for the odds. Every other generator is random and may repeat (`sequence` is unique
// within one build).
//
// Thread safety: FieldGenerator and RowGenerator are immutable after construction and may be
// shared between threads; all mutable state lives in the Rng and GenContext the caller owns.
//
// ---------------------------------------------------------------------------------------------
// The spec language. A spec is a JSON object {"gen": NAME, params…}. Every generator also takes
// "null_ratio" (number in [0,1], default 0): the share of SQL NULLs. Unknown parameters, missing
// required ones and ill-typed values are errors, caught when the spec is built. Countries are
// ISO 3166 alpha-2 codes from kCountries: US CA GB DE FR NL ES JP.
//
//   unique_id    "{prefix}{namespace}-{row index}", e.g. "usr_lease7-42". Params: "prefix"
//                ([A-Za-z0-9_.:-]{0,64}, default ""), "max_length" (int ≥ prefix+3): generation
//                fails if a value would be longer (a shorter namespace or prefix is needed).
//   unique_code  a fixed-shape code for a column whose format is fixed, such as a SKU
//                (products.sku ~ '^[A-Z]{3}-[0-9]{4,8}$'): {"gen": "unique_code", "pattern":
//                "[A-Z]{3}-[0-9]{8}", "index_chars": 5} gives codes like "QZK-48100042" (row 42).
//                "pattern" (required): literal characters and the classes [A-Z], [a-z], [0-9] or a
//                union of them ([A-Z0-9]), each optionally repeated an exact number of times {n}
//                (1–64), optionally inside ^…$, 64 characters at most; a backslash makes a special
//                character ([ ] { } ( ) \ ^ $ . * + ? |) literal, so "TST-[0-9]{8}" fixes a prefix.
//                "index_chars" (required, 1 … class characters − 1): the last index_chars class
//                characters hold the row index (most significant first: with digits, it reads as
//                a zero-padded number); the class characters before them hold a slot derived from
//                the namespace (splitmix64 of its FNV-1a 64 hash, mod the number of slots).
//                Capacity: the row index must stay below the product of the alphabet sizes of the
//                index characters (10^5 for five digits) — per namespace and table, since a build
//                continues the index of that namespace's earlier builds into the table; beyond it
//                generation fails naming the capacity, never wrapping around to repeat a code.
//                Namespaces in different slots never share a code; with S slots (the product of
//                the namespace characters' alphabet sizes: 26^3 × 10^3 = 17,576,000 for the SKU
//                above) two given namespaces share a slot with probability 1/S, any two of n with
//                about n(n−1)/2S (20 workers: 1 in 92,500 for the SKU above). A shared slot repeats
//                the same codes, so a UNIQUE column refuses the second build (nothing is kept and
//                the error names the seed); a fixed prefix or more index_chars leave fewer slots.
//   derive       a value computed from an earlier field of the same row: "field" (required) names
//                it; exactly one of "first" or "last" (1–64) keeps that many characters of its
//                value from the start or the end — {"gen": "derive", "field": "card_number",
//                "last": 4} for card_last4. NULL when the field is NULL; generation fails when the
//                value is shorter. The field must be declared before this one (checked when the
//                recipe is loaded: unknown, later or the field itself are errors).
//   sequence     integer "start + row index × step" ("start" default 1, "step" default 1, ≠ 0).
//                Unique within one build only: meant for a leased database, which is private.
//   email        "{first}.{last}.{namespace}.{index}@{domain}", lower case, RFC 5321 dot-atom;
//                the name part is dropped when the local part would pass 64 characters.
//                "domain" (string) or "domains" (array): reserved names only — example.com/.net/
//                .org or a subdomain of them, or anything under .test, .example or .invalid
//                (RFC 2606/6761). Default: one of example.com, example.net, example.org.
//   card_number  digits with a valid Luhn check digit. "brand" (string) or "brands" (array) of
//                visa (4…, 16 digits), mastercard (51–55, 2221–2720; 16), amex (34, 37; 15),
//                discover (6011, 644–649, 65; 16). Default: all four, brand picked uniformly.
//   iban         ISO 13616 IBAN with valid mod-97 check digits and national BBAN: DE (22: 8-digit
//                bank code, 10-digit account), GB (22: 4-letter bank, 6-digit sort code, 8-digit
//                account), FR (27: 5+5 digits, 11 alphanumerics, valid 2-digit RIB key), NL (18:
//                4 letters, 10 digits), ES (24: 4+4 digits, 2 valid control digits, 10 digits).
//                Country params (below) over those five. "format": "electronic" (default,
//                "DE89370400440532013000") or "print" (groups of four: "DE89 3704 0044 …").
//   postal_code  US "12345" (00501–99950; "zip_plus4": true adds "-6789"), CA "K1A 0B1", GB
//                "SW1A 1AA" (real area letters, districts 1–29 and London's lettered ones), DE
//                "01001"–"99998", FR "75011" (département 01–95, Corsica 200xx–202xx/206xx,
//                overseas 971–974/976), NL "1234 AB", ES "28013" (province 01–52), JP "123-4567".
//                Country params (below).
//   phone        E.164: US "+1NXXNXXXXXX" (N = 2–9, no N11), CA the same with a Canadian area
//                code, GB "+447" mobile (10 digits after 44), DE "+49" 15x/16x/17x mobile (11
//                digits after 49), FR "+33[1-9]" + 8, NL "+316" + 8, ES "+34[6-9]" + 8, JP
//                "+81[789]0" + 8. Country params (below).
//   first_name, last_name, full_name ("First Last"), street ("12 Oak Street"): built-in ASCII
//                lists; no params.
//   city         a city of the country (country params, below), or of any supported country.
//   country      an alpha-2 code; "countries" (array) restricts the set (default all).
//   int          integer in ["min","max"] (defaults 0 and 2147483647), min ≤ max.
//   decimal      "min", "max" (numbers, or strings for exact decimals such as "19.99"; default 0
//                and 1000), "scale" (digits after the point, 0–18, default 2): text with exactly
//                `scale` decimals ("-12.50"); min is rounded up and max down to the scale.
//   date         "YYYY-MM-DD" in ["min","max"] (default "2000-01-01" to "2029-12-31").
//   timestamp    "YYYY-MM-DDTHH:MM:SS[.f…]Z" in ["min","max"], UTC (each "YYYY-MM-DD", meaning
//                its midnight, or "YYYY-MM-DDTHH:MM:SS", optionally ending in "Z"; default
//                2000-01-01 to 2029-12-31T23:59:59), "precision" 0–6 fractional digits (default
//                0), "with_zone" (default true; false drops the "Z", for timestamp without time
//                zone).
//   bool         "true"/"false"; "true_ratio" (default 0.5).
//   choice       one of "values" (non-empty array of strings, numbers, booleans or null = SQL
//                NULL); optional "weights" (same length, numbers in [0, 1e12], not all zero;
//                relative, counted in millionths).
//   const        always "value" (string, number, boolean or null).
//
// Country params (iban, postal_code, phone, city) — at most one of:
//   "country": "DE"              always this country;
//   "countries": ["DE","FR"]     one of these, picked uniformly;
//   "country_field": "country"   the value of that earlier field of the same row.
// Default: any country the generator supports, picked uniformly.
// ---------------------------------------------------------------------------------------------
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/builders/rng.h"  // Rng, SplitMix64, Fnv1a64: part of this module's interface

namespace testpool::builders {

// Bumped whenever the same (seed, namespace, spec) starts to give different values.
inline constexpr int kGeneratorsVersion = 1;

// The countries the country-aware generators know, in this order.
inline constexpr std::string_view kCountries[] = {"US", "CA", "GB", "DE", "FR", "NL", "ES", "JP"};
// The subset with IBANs.
inline constexpr std::string_view kIbanCountries[] = {"DE", "GB", "FR", "NL", "ES"};

// ---- Fields ---------------------------------------------------------------------------------

// A generated value: text, or nullopt for SQL NULL.
using FieldValue = std::optional<std::string>;

struct NamedValue {
  std::string name;
  FieldValue value;
};
// The fields of one row generated so far, in field order.
using RowValues = std::vector<NamedValue>;

// A namespace: [a-z0-9_-]{1,40} (a lease id from util::RandomToken fits).
inline constexpr size_t kMaxNamespaceLength = 40;
bool IsValidNamespace(std::string_view ns);

// What one value is generated from. Nothing is owned; all must outlive the Generate call.
struct GenContext {
  Rng* rng = nullptr;              // advanced by Generate; required
  std::string_view ns;             // the namespace, see IsValidNamespace
  uint64_t row_index = 0;          // the row's index within the build, from 0
  const RowValues* row = nullptr;  // the row's earlier fields; null means none
};

class FieldGenerator {
 public:
  // Builds the generator for field `field_name` (used in error messages) from `spec`, checking
  // all of it. Throws Error(kInvalidArgument) whose message starts "field '<name>': " and names
  // the problem: spec not an object, "gen" missing or unknown, an unknown parameter, a missing
  // required one, a wrong type, a value out of range (min > max, a ratio outside [0,1], …), an
  // unsupported country or brand, a non-reserved e-mail domain, an empty field name.
  FieldGenerator(std::string field_name, const nlohmann::json& spec);

  // One value. Throws Error(kInvalidArgument) when the inputs of this one value make it
  // impossible: `ctx.ns` is not a valid namespace (unique_id, email and unique_code only); a
  // unique_id would pass max_length; a unique_code's row index is beyond its capacity; `sequence`
  // overflows int64; the `country_field` is missing from ctx.row, is NULL, or holds a country this
  // generator does not support; a derive's field is missing from ctx.row or its value is shorter
  // than the characters to keep.
  FieldValue Generate(const GenContext& ctx) const;

  const std::string& name() const { return name_; }
  const std::string& gen() const { return gen_; }  // "email", "iban", …
  // The earlier field this one reads ("country_field"), or "" when none.
  const std::string& country_field() const { return country_field_; }
  // For gen "derive": the field it is derived from ("field"); "" for every other generator.
  const std::string& derived_from() const { return derived_from_; }
  // The countries this generator accepts from its country_field (empty when it has none).
  const std::vector<std::string>& accepted_countries() const { return accepted_countries_; }
  // For gen "country": the codes it can produce; empty for every other generator.
  const std::vector<std::string>& produced_countries() const { return produced_countries_; }
  // The "null_ratio" of the spec.
  double null_ratio() const { return null_ratio_; }

  class Impl;  // one subclass per generator, in generators.cc, generator_scalars.cc, generator_codes.cc

 private:
  std::string name_;
  std::string gen_;
  std::string country_field_;
  std::string derived_from_;
  std::vector<std::string> accepted_countries_;
  std::vector<std::string> produced_countries_;
  double null_ratio_ = 0;
  std::shared_ptr<const Impl> impl_;  // immutable, shared by copies
};

// The fields of one table's rows, generated in order.
class RowGenerator {
 public:
  // Throws Error(kInvalidArgument) when two fields share a name, a field's country_field does
  // not name an earlier field, names one that can be NULL, or names a "country" field that can
  // produce a country the reader does not support (e.g. an iban reading a country that can be
  // "US": restrict that field's "countries"), or a "derive" field's "field" names no field of the
  // row, a later one, or the derive field itself.
  explicit RowGenerator(std::vector<FieldGenerator> fields);

  // From a JSON array of specs, each with its field's "name": [{"name":"id","gen":"unique_id"},
  // …]. Throws Error(kInvalidArgument) as above and as FieldGenerator does, or when `fields` is
  // not an array of objects with a non-empty string "name".
  static RowGenerator FromJson(const nlohmann::json& fields);

  // Row `row_index` of the build with this seed and namespace; field i is generated with
  // Rng::ForField(seed, name_i, row_index). A field named in `fixed` takes that value instead of
  // being generated (a build's override), and later fields that read it (country_field, derive)
  // see that value; the other fields' values do not change. Throws Error(kInvalidArgument) for an
  // invalid namespace and as FieldGenerator::Generate does.
  RowValues Generate(uint64_t seed, std::string_view ns, uint64_t row_index,
                     const std::map<std::string, std::string>& fixed = {}) const;

  const std::vector<FieldGenerator>& fields() const { return fields_; }

 private:
  // Throws as the constructor says for fields_[i]'s "derive" source.
  void CheckDerivedFrom(size_t i) const;

  std::vector<FieldGenerator> fields_;
};

}  // namespace testpool::builders
