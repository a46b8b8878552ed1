#include "orchestrator/api/request_bodies.h"

#include "orchestrator/core/pool_manager.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/json_field.h"

namespace testpool::api {

using nlohmann::json;

namespace bodies {
namespace {

constexpr const char* kLeaseIdPattern = "^[a-z2-7]{1,64}$";
constexpr const char* kCheckpointPattern = "^[A-Za-z0-9_.:-]{1,64}$";  // core checks it: PoolManager
constexpr const char* kNamespacePattern = "^[a-z0-9_-]{1,40}$";
constexpr const char* kDsnDescription = "the target database (keyword form or postgresql:// URI)";
constexpr const char* kSeedDescription =
    "replays the same values; 0 or absent: a random one (the answer carries it)";
constexpr int64_t kMaxHolder = 200;  // core checks it: PoolManager, RecordPools
constexpr int64_t kMaxBuildCount = 1000000;
const int64_t kMaxLeaseTtl = core::PoolOptions{}.max_ttl.count();
const int64_t kMaxLeaseWait = core::PoolOptions{}.max_wait.count();

// The fields both build bodies share.
BodyField Recipe() { return {.name = "recipe", .required = true, .example = "order"}; }
BodyField Count() {
  return {.name = "count", .type = FieldType::kInteger, .minimum = 1, .maximum = kMaxBuildCount,
          .range_checked = true, .fallback = 1,
          .must_be = "an integer from 1 to " + std::to_string(kMaxBuildCount)};
}
BodyField Overrides() { return {.name = "overrides", .type = FieldType::kObject, .shape = &kBuildOverrides}; }
BodyField Seed() {
  return {.name = "seed", .type = FieldType::kInteger, .minimum = 0, .range_checked = true, .fallback = 0,
          .format = "int64", .description = kSeedDescription,
          .must_be = "a non-negative integer (0: a random one)"};
}

}  // namespace

const BodyShape kSqlFile{
    .schema = "SqlFile",
    .fields = {{.name = "name", .required = true, .example = "0001_init.sql"},
               {.name = "sql", .required = true}},
    .must_be = R"(an object with "name" and "sql")",
};

const BodyShape kPoolConfig{
    .schema = "PoolConfig",
    .fields = {{.name = "min_ready", .type = FieldType::kInteger, .minimum = 0, .fallback = 2},
               {.name = "max", .type = FieldType::kInteger, .minimum = 1, .maximum = 1000, .fallback = 10}},
    .must_be = "an object with min_ready and max",
};

const BodyShape kMatchValues{
    .schema = "MatchValues",
    .column_values = true,
    .must_be = "an object of column: string, number or boolean",
    .description = "column: value; a row matches when each column equals its value (compared as the column's type)",
    .example = {{"tier", "premium"}, {"active", true}},
};

const BodyShape kBuildOverrides{
    .schema = "BuildOverrides",
    .column_values = true,
    .must_be = "an object of column: string, number or boolean",
    .description =
        "column: value set on every row of the recipe built (a ref column given here builds no referenced row)",
    .example = {{"status", "paid"}},
};

const BodyShape kTemplateDefinition{
    .schema = "TemplateDefinition",
    .where = "the template definition",
    .fields = {{.name = "migrations", .type = FieldType::kArray, .required = true, .shape = &kSqlFile,
                .minimum = 1, .must_be = R"(an array of {"name","sql"} objects)"},
               {.name = "seed", .type = FieldType::kArray, .shape = &kSqlFile,
                .must_be = R"(an array of {"name","sql"} objects)"},
               {.name = "pool", .type = FieldType::kObject, .shape = &kPoolConfig},
               {.name = "recycle", .one_of = {"clone", "rollback"}, .fallback = "clone"},
               {.name = "name", .description = "when present, must equal the URL's name"},
               {.name = "description"}},
    .must_be = "a JSON object",
};

const BodyShape kLeaseRequest{
    .schema = "LeaseRequest",
    .where = "the lease request",
    .fields = {{.name = "ttl_s", .type = FieldType::kInteger, .minimum = 1, .maximum = kMaxLeaseTtl,
                .fallback = 600},
               {.name = "wait_s", .type = FieldType::kInteger, .minimum = 0, .maximum = kMaxLeaseWait,
                .fallback = 30, .description = "how long to wait for a free slot before 503 pool_exhausted"},
               {.name = "holder", .max_length = kMaxHolder, .fallback = "",
                .description = "free text naming who holds the lease (a CI worker)"}},
};

const BodyShape kRenewRequest{
    .schema = "RenewRequest",
    .where = "the renew request",
    .fields = {{.name = "ttl_s", .type = FieldType::kInteger, .minimum = 1, .maximum = kMaxLeaseTtl,
                .fallback = 600, .description = "the lease then expires ttl_s seconds from now"}},
};

const BodyShape kResetRequest{
    .schema = "ResetRequest",
    .where = "the reset request",
    .fields = {{.name = "to", .pattern = kCheckpointPattern,
                .description = "a checkpoint of the lease to go back to; absent: the template's state"}},
};

const BodyShape kCheckpointRequest{
    .schema = "CheckpointRequest",
    .where = "the checkpoint request",
    .fields = {{.name = "name", .required = true, .pattern = kCheckpointPattern,
                .description = "a name taken already is replaced (and the checkpoints saved after it dropped)",
                .example = "module_orders"}},
};

const BodyShape kRecordPoolDefinition{
    .schema = "RecordPoolDefinition",
    .where = "the record pool definition",
    .fields = {{.name = "dsn", .description = kDsnDescription},
               {.name = "lease", .pattern = kLeaseIdPattern,
                .description = "a lease whose database holds the table; the pool is dropped when the lease ends"},
               {.name = "schema", .fallback = "public"},
               {.name = "table", .required = true, .example = "users"},
               {.name = "key", .required = true,
                .description = "a unique column (primary key or single-column unique index)", .example = "id"},
               {.name = "match", .type = FieldType::kObject, .shape = &kMatchValues},
               {.name = "name", .description = "when present, must equal the URL's name"}},
    .must_be = R"(a JSON object ({"dsn"|"lease","table","key","schema","match"}))",
    .exactly_one_of = {"dsn", "lease"},
    .description = "exactly one of dsn and lease",
};

const BodyShape kClaimRequest{
    .schema = "ClaimRequest",
    .where = "the claim request",
    .fields = {{.name = "match", .type = FieldType::kObject, .shape = &kMatchValues},
               {.name = "ttl_s", .type = FieldType::kInteger, .minimum = 1, .maximum = 86400, .fallback = 300},
               {.name = "wait_s", .type = FieldType::kInteger, .minimum = 0, .maximum = 600, .fallback = 0,
                .description = "how long to wait for a free matching row before 503 pool_exhausted"},
               {.name = "holder", .max_length = kMaxHolder, .fallback = ""},
               {.name = "lease", .pattern = kLeaseIdPattern, .description = "the claim ends when this lease ends"}},
};

const BodyShape kClaimRenewRequest{
    .schema = "ClaimRenewRequest",
    .where = "the renew request",
    .fields = {{.name = "ttl_s", .type = FieldType::kInteger, .minimum = 1, .maximum = 86400, .fallback = 300,
                .description = "the claim then expires ttl_s seconds from now"}},
};

const BodyShape kLeaseBuildRequest{
    .schema = "LeaseBuildRequest",
    .where = "the build request",
    .fields = {Recipe(), Count(), Overrides(), Seed(),
               {.name = "namespace", .pattern = kNamespacePattern,
                .description = "goes into unique ids and e-mails; default: the lease id"}},
};

const BodyShape kDsnBuildRequest{
    .schema = "DsnBuildRequest",
    .where = "the build request",
    .fields = {{.name = "dsn", .required = true, .description = kDsnDescription},
               {.name = "namespace", .required = true, .pattern = kNamespacePattern,
                .description = "the rows are removed again with DELETE /v1/namespaces/{ns}"},
               Recipe(), Count(), Overrides(), Seed(),
               {.name = "lease", .pattern = kLeaseIdPattern, .description = "the rows are removed when this lease ends"}},
};

}  // namespace bodies

const std::vector<const BodyShape*>& AllBodyShapes() {
  using namespace bodies;
  static const std::vector<const BodyShape*> all = {
      &kSqlFile,           &kPoolConfig,        &kMatchValues,     &kBuildOverrides,
      &kTemplateDefinition, &kLeaseRequest,     &kRenewRequest,    &kResetRequest,
      &kCheckpointRequest, &kRecordPoolDefinition, &kClaimRequest,   &kClaimRenewRequest, &kLeaseBuildRequest,
      &kDsnBuildRequest};
  return all;
}

// ---- BodyShape ---------------------------------------------------------------------------------

const BodyField* BodyShape::Find(std::string_view name) const {
  for (const BodyField& f : fields) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

std::string BodyShape::MustBe() const {
  if (!must_be.empty()) return must_be;
  std::string names;
  bool any_required = false;
  for (const BodyField& f : fields) {
    names += (names.empty() ? "\"" : ",\"") + f.name + "\"";
    any_required = any_required || f.required;
  }
  std::string out = "a JSON object ({" + names + "}";
  if (!any_required && !fields.empty()) out += fields.size() == 1 ? ", optional" : ", each optional";
  return out + ")";
}

// ---- the schemas -------------------------------------------------------------------------------

namespace {

json Ref(const BodyShape& shape) { return {{"$ref", "#/components/schemas/" + shape.schema}}; }

json FieldSchema(const BodyField& f) {
  if (f.type == FieldType::kObject) return Ref(*f.shape);  // a reference stands alone
  json out;
  switch (f.type) {
    case FieldType::kString: out["type"] = "string"; break;
    case FieldType::kInteger: out["type"] = "integer"; break;
    case FieldType::kArray: out = {{"type", "array"}, {"items", Ref(*f.shape)}}; break;
    case FieldType::kObject: break;
  }
  if (f.minimum) out[f.type == FieldType::kArray ? "minItems" : "minimum"] = *f.minimum;
  if (f.maximum) out["maximum"] = *f.maximum;
  if (f.max_length) out["maxLength"] = *f.max_length;
  if (!f.pattern.empty()) out["pattern"] = f.pattern;
  if (!f.one_of.empty()) out["enum"] = f.one_of;
  if (!f.fallback.is_null()) out["default"] = f.fallback;
  if (!f.format.empty()) out["format"] = f.format;
  if (!f.description.empty()) out["description"] = f.description;
  if (!f.example.is_null()) out["example"] = f.example;
  return out;
}

json ShapeSchema(const BodyShape& shape) {
  json out = {{"type", "object"}};
  if (shape.column_values) {
    const json any = json::array({json{{"type", "string"}}, json{{"type", "number"}}, json{{"type", "boolean"}}});
    out["additionalProperties"] = {{"oneOf", any}};
  } else {
    out["additionalProperties"] = false;
    json properties = json::object(), required = json::array();
    for (const BodyField& f : shape.fields) {
      properties[f.name] = FieldSchema(f);
      if (f.required) required.push_back(f.name);
    }
    out["properties"] = properties;
    if (!required.empty()) out["required"] = required;
  }
  if (!shape.description.empty()) out["description"] = shape.description;
  if (!shape.example.is_null()) out["example"] = shape.example;
  return out;
}

}  // namespace

json RequestSchemas() {
  json out = json::object();
  for (const BodyShape* shape : AllBodyShapes()) out[shape->schema] = ShapeSchema(*shape);
  return out;
}

// ---- BodyReader --------------------------------------------------------------------------------

namespace {

Error Bad(const std::string& message) { return Error(ErrorCode::kInvalidArgument, message); }

// Whether the integer `v` is within [minimum, maximum] (an absent bound does not limit). JSON text's
// non-negative integers parse as unsigned, negative ones as signed.
bool InRange(const json& v, std::optional<int64_t> minimum, std::optional<int64_t> maximum) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return !(minimum && *minimum > 0 && u < uint64_t(*minimum)) &&
           !(maximum && (*maximum < 0 || u > uint64_t(*maximum)));
  }
  const int64_t n = v.get<int64_t>();
  return !(minimum && n < *minimum) && !(maximum && n > *maximum);
}

}  // namespace

BodyReader::BodyReader(const json& value, const BodyShape& shape, std::string path)
    : value_(value), shape_(shape), path_(std::move(path)) {
  if (!value_.is_object()) throw Bad((path_.empty() ? "the body" : path_) + " must be " + shape_.MustBe());
  if (shape_.column_values) return;
  for (const auto& item : value_.items()) {
    if (shape_.Find(item.key()) == nullptr) {
      throw Bad("unknown field '" + item.key().substr(0, 60) + "' in " + Where());
    }
  }
}

const BodyField& BodyReader::FieldOf(std::string_view name) const {
  const BodyField* f = shape_.Find(name);
  if (f == nullptr) {
    throw Error(ErrorCode::kInternal, "the table of " + shape_.schema + " has no field '" + std::string(name) + "'");
  }
  return *f;
}

std::string BodyReader::PathOf(std::string_view name) const {
  return path_.empty() ? std::string(name) : path_ + "." + std::string(name);
}

const json* BodyReader::Get(std::string_view name) const {
  const BodyField& f = FieldOf(name);
  const json* v = util::FindMember(value_, name);
  if (v == nullptr) {
    if (f.required) throw Bad("missing field '" + f.name + "' in " + Where());
    return nullptr;
  }
  // The table's words for a wrong value, else the type's.
  auto fail = [&](const std::string& plain) {
    util::ThrowMustBe({PathOf(name)}, f.must_be.empty() ? plain : f.must_be, *v);
  };
  switch (f.type) {
    case FieldType::kString:
      if (!v->is_string()) fail("a string");
      break;
    case FieldType::kInteger:
      if (!v->is_number_integer()) fail("an integer");
      if (f.range_checked && !InRange(*v, f.minimum, f.maximum)) fail("an integer in range");
      break;
    case FieldType::kArray:
      if (!v->is_array()) fail("an array");
      break;
    case FieldType::kObject:
      if (!v->is_object()) fail(f.shape->MustBe());
      break;
  }
  return v;
}

std::optional<std::string> BodyReader::String(std::string_view name) const {
  if (FieldOf(name).type != FieldType::kString) {
    throw Error(ErrorCode::kInternal, "field '" + std::string(name) + "' of " + shape_.schema + " is not a string");
  }
  const json* v = Get(name);
  if (v == nullptr) return std::nullopt;
  return v->get<std::string>();
}

std::string BodyReader::RequiredString(std::string_view name) const {
  if (!FieldOf(name).required) {
    throw Error(ErrorCode::kInternal, "field '" + std::string(name) + "' of " + shape_.schema + " is not required");
  }
  return *String(name);  // present: Get throws when a required field is absent
}

bool BodyReader::Has(std::string_view name) const {
  FieldOf(name);
  return util::FindMember(value_, name) != nullptr;
}

std::optional<std::map<std::string, std::string>> BodyReader::ColumnValues(std::string_view name) const {
  const BodyField& f = FieldOf(name);
  if (f.type != FieldType::kObject || !f.shape->column_values) {
    throw Error(ErrorCode::kInternal, "field '" + std::string(name) + "' of " + shape_.schema + " is no column values");
  }
  const json* v = Get(name);
  if (v == nullptr) return std::nullopt;
  std::map<std::string, std::string> out;
  for (const auto& [column, value] : v->items()) {
    if (value.is_string()) {
      out[column] = value.get<std::string>();
    } else if (value.is_boolean()) {
      out[column] = value.get<bool>() ? "true" : "false";
    } else if (value.is_number()) {
      out[column] = value.dump();  // integers as written; floats in the shortest form that round-trips
    } else {
      throw Bad(PathOf(name) + "." + column.substr(0, 60) + " must be a string, number or boolean");
    }
  }
  return out;
}

}  // namespace testpool::api
