#include "orchestrator/builders/generator_spec.h"

#include "orchestrator/util/error.h"
#include "orchestrator/util/json_field.h"

namespace testpool::builders {

using nlohmann::json;

// ---- FieldGenerator::Impl -------------------------------------------------------------------

void FieldGenerator::Impl::Fail(const std::string& problem) const {
  throw Error(ErrorCode::kInvalidArgument, "field '" + field_ + "': " + problem, {{"field", field_}});
}

void FieldGenerator::Impl::CheckNamespace(std::string_view ns) const {
  if (!IsValidNamespace(ns)) {
    Fail("namespace '" + std::string(ns.substr(0, 60)) + "' is not 1 to 40 characters of [a-z0-9_-]");
  }
}

namespace generator_internal {

std::string Join(std::span<const std::string_view> items) {
  std::string out;
  for (std::string_view s : items) out += (out.empty() ? "" : ", ") + std::string(s);
  return out;
}

// ---- SpecReader -----------------------------------------------------------------------------

void SpecReader::Fail(const std::string& problem) const {
  throw Error(ErrorCode::kInvalidArgument, "field '" + field_ + "': " + problem, {{"field", field_}});
}

// How util's getters name a parameter: "field '<field>': parameter '<key>'", showing the value.
util::JsonWhat Param(const std::string& field, const std::string& key) {
  return {"field '" + field + "': parameter '" + key + "'", true, {{"field", field}}};
}

void SpecReader::WrongType(const std::string& key, const std::string& wanted, const json& got) const {
  util::ThrowMustBe(Param(field_, key), wanted, got);
}

const json* SpecReader::Get(const std::string& key) {
  known_.insert(key);
  auto it = spec_.find(key);
  return it == spec_.end() ? nullptr : &*it;
}

std::optional<std::string> SpecReader::String(const std::string& key) {
  const json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  return util::StringValue(*v, Param(field_, key));
}

std::optional<int64_t> SpecReader::Int(const std::string& key) {
  const json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  return util::Int64Value(*v, Param(field_, key));
}

std::optional<bool> SpecReader::Bool(const std::string& key) {
  const json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  return util::BoolValue(*v, Param(field_, key));
}

std::optional<double> SpecReader::Ratio(const std::string& key) {
  const json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  if (!v->is_number()) WrongType(key, "a number in [0, 1]", *v);
  double d = v->get<double>();
  if (!(d >= 0 && d <= 1)) Fail("parameter '" + key + "' must be in [0, 1], got " + v->dump());
  return d;
}

std::optional<std::vector<std::string>> SpecReader::Strings(const std::string& key) {
  const json* v = Get(key);
  if (v == nullptr) return std::nullopt;
  return util::StringsValue(*v, Param(field_, key));
}

std::optional<std::vector<std::string>> SpecReader::OneOrMany(const std::string& one, const std::string& many) {
  std::optional<std::string> single = String(one);
  std::optional<std::vector<std::string>> several = Strings(many);
  if (single && several) Fail("give '" + one + "' or '" + many + "', not both");
  if (single) return std::vector<std::string>{*single};
  return several;
}

void SpecReader::CheckNoUnknownKeys(const std::string& gen) const {
  for (const auto& item : spec_.items()) {
    if (known_.count(item.key()) == 0) {
      std::string accepted;
      for (const std::string& k : known_) accepted += (accepted.empty() ? "" : ", ") + k;
      Fail("unknown parameter '" + item.key() + "' for gen '" + gen + "' (accepted: " + accepted + ")");
    }
  }
}

// ---- CountrySource --------------------------------------------------------------------------

CountrySource::CountrySource(SpecReader& r, std::span<const std::string_view> supported, std::string_view what,
                             Meta* meta)
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

std::string_view CountrySource::Resolve(const GenContext& ctx, Rng& rng, const std::string& field,
                                        std::string_view what) const {
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

std::string_view CountrySource::Canonical(const std::string& c, SpecReader& r, std::string_view what) const {
  for (std::string_view s : supported_) {
    if (s == c) return s;
  }
  r.Fail("country '" + c.substr(0, 40) + "' is not supported by " + std::string(what) +
         " (supported: " + Join(supported_) + ")");
}

}  // namespace generator_internal
}  // namespace testpool::builders
