// The API's request bodies, each written once as a table of its fields (BodyShape). Both sides of
// the API read these tables: openapi.cc generates the request schemas of /openapi.json from them
// (RequestSchemas), and every parser in json_io.cc reads its body through a BodyReader over the
// same table, which rejects members the table lacks, reports the missing ones it requires and
// checks each one's JSON type. So the document and the parsers cannot disagree on a field's name,
// type, nesting or whether it is required; request_bodies_test.cc feeds every table's valid and
// invalid bodies to the parsers to prove it.
//
// Ranges. A field's minimum/maximum/max_length are documentation unless `range_checked`, when the
// BodyReader rejects values outside them; the others (ttl_s, wait_s, holder, pool sizes) are
// checked by core/, whose errors name the field, and are written here from the same figures.
//
// The tables are immutable globals: thread-safe to read; use them at run time (not from another
// global's initialiser).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace testpool::api {

enum class FieldType {
  kString,
  kInteger,
  kObject,  // an object of another shape (its schema is referenced)
  kArray,   // an array whose items are objects of another shape
};

struct BodyShape;

struct BodyField {
  std::string name;
  FieldType type = FieldType::kString;
  bool required = false;
  const BodyShape* shape = nullptr;    // kObject: the value's shape; kArray: each item's
  std::optional<int64_t> minimum{};    // kInteger: the least value; kArray: the fewest items
  std::optional<int64_t> maximum{};    // kInteger
  bool range_checked = false;          // the BodyReader rejects an integer outside [minimum, maximum]
  std::optional<int64_t> max_length{};  // kString
  std::string pattern{};               // kString: a regular expression the value matches
  std::vector<std::string> one_of{};   // kString: the accepted values ("enum")
  nlohmann::json fallback{};           // the value when absent ("default"); null: none shown
  std::string format{};                // "int64"
  std::string description{};
  nlohmann::json example{};            // null: none
  std::string must_be{};               // how a wrong value is described when not by its type alone
};

struct BodyShape {
  std::string schema;                  // the OpenAPI component ("LeaseRequest")
  std::string where{};                 // how messages name a whole body ("the lease request")
  std::vector<BodyField> fields{};
  bool column_values = false;          // no fields: every member is column: string, number or boolean
  std::string must_be{};               // how a value that is not such an object is described;
                                       // empty: "a JSON object ({"a","b"}, each optional)"
  std::vector<std::string> exactly_one_of{};  // fields of which a valid body has exactly one
  std::string description{};
  nlohmann::json example{};

  // The field named `name`, or nullptr.
  const BodyField* Find(std::string_view name) const;
  // must_be, or the words derived from the fields when it is empty.
  std::string MustBe() const;
};

// The shapes (the nested ones first).
namespace bodies {
extern const BodyShape kSqlFile, kPoolConfig, kMatchValues, kBuildOverrides;
extern const BodyShape kTemplateDefinition, kLeaseRequest, kRenewRequest, kResetRequest;
extern const BodyShape kCheckpointRequest;
extern const BodyShape kRecordPoolDefinition, kClaimRequest, kClaimRenewRequest;
extern const BodyShape kLeaseBuildRequest, kDsnBuildRequest;
}  // namespace bodies

// Every shape above, nested ones included.
const std::vector<const BodyShape*>& AllBodyShapes();

// {schema name: JSON schema} for every shape, as /openapi.json's components.schemas holds them.
nlohmann::json RequestSchemas();

// Reads one JSON object through its shape; the only way json_io.cc reads a request body. Holds
// references: `value` and `shape` must outlive the reader. Every error is
// Error(kInvalidArgument) except where said.
class BodyReader {
 public:
  // `path` names the object in messages: empty for a whole body (messages then say "the body"
  // and the shape's `where`), else its place ("pool", "migrations[2]"). Throws
  // "<the body|path> must be <shape.MustBe()>" when `value` is not an object and
  // "unknown field '<key>' in <where|path>" for a member the shape has no field for.
  BodyReader(const nlohmann::json& value, const BodyShape& shape, std::string path = "");

  // The field's value, its type checked against the table ("<PathOf(name)> must be <words>"), and
  // its range when range_checked; nullptr when absent and optional. Throws "missing field
  // '<name>' in <where|path>" when absent and required, and Error(kInternal) when the shape has no
  // such field (a parser out of step with its table).
  const nlohmann::json* Get(std::string_view name) const;
  // Whether the member is present (no check of its value); Error(kInternal) as Get.
  bool Has(std::string_view name) const;
  // Get, as a string; nullopt when absent. Error(kInternal) when the field is not a kString.
  std::optional<std::string> String(std::string_view name) const;
  // String, for a field the table requires (so never absent here); Error(kInternal) when the
  // table does not require it.
  std::string RequiredString(std::string_view name) const;
  // Get, for a field whose shape is column_values: column → the value's text form ("42", "1.5",
  // "true"); nullopt when absent. Throws "<PathOf(name)>.<column> must be a string, number or
  // boolean" for any other value; Error(kInternal) when the field's shape is not column_values.
  std::optional<std::map<std::string, std::string>> ColumnValues(std::string_view name) const;

  // How messages name a field: "ttl_s", "pool.max", "migrations[0].name".
  std::string PathOf(std::string_view name) const;
  // Where the object is, for messages: the shape's `where` for a whole body, else the path.
  const std::string& Where() const { return path_.empty() ? shape_.where : path_; }

 private:
  const BodyField& FieldOf(std::string_view name) const;

  const nlohmann::json& value_;
  const BodyShape& shape_;
  const std::string path_;
};

}  // namespace testpool::api
