// The request bodies' tables against the parsers that read them (json_io.h) and the document that
// shows them (openapi.h): every body a route takes has a table and a parser, and each parser
// accepts what its table describes and rejects, naming the field, what the table excludes (a field
// of the wrong type, a required one missing, an unknown one, an integer out of a checked range).
// The bodies are generated from the tables, so a field added to one side only fails here.
#include "orchestrator/api/request_bodies.h"

#include <gtest/gtest.h>

#include <functional>
#include <set>

#include "orchestrator/api/json_io.h"
#include "orchestrator/api/openapi.h"
#include "orchestrator/util/error.h"

namespace testpool::api {
namespace {

using nlohmann::json;

constexpr const char* kUrlName = "abc";  // the {name} in the URL; a "name" field's sample equals it

struct Parser {
  const BodyShape* shape;
  std::function<void(const json&)> parse;
};

const std::vector<Parser>& Parsers() {
  static const std::vector<Parser> parsers = {
      {&bodies::kTemplateDefinition, [](const json& b) { TemplateSpecFromJson(kUrlName, b); }},
      {&bodies::kLeaseRequest, [](const json& b) { LeaseRequestFromJson(kUrlName, b); }},
      {&bodies::kRenewRequest, [](const json& b) { RenewTtlFromJson(b); }},
      {&bodies::kResetRequest, [](const json& b) { ResetTargetFromJson(b); }},
      {&bodies::kCheckpointRequest, [](const json& b) { CheckpointNameFromJson(b); }},
      {&bodies::kRecordPoolDefinition, [](const json& b) { RecordPoolSpecFromJson(kUrlName, b); }},
      {&bodies::kClaimRequest, [](const json& b) { ClaimRequestFromJson(kUrlName, b); }},
      {&bodies::kClaimRenewRequest, [](const json& b) { ClaimRenewTtlFromJson(b); }},
      {&bodies::kLeaseBuildRequest, [](const json& b) { LeaseBuildRequestFromJson(b); }},
      {&bodies::kDsnBuildRequest, [](const json& b) {
         std::string dsn;
         DsnBuildRequestFromJson(b, &dsn);
       }},
  };
  return parsers;
}

// "" when `parse` accepts `body`, else the message of its Error (which must be invalid_argument).
std::string Verdict(const Parser& p, const json& body) {
  try {
    p.parse(body);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << p.shape->schema << " " << body.dump() << ": " << e.what();
    return std::string("rejected: ") + e.what();
  }
}

json Minimal(const BodyShape& shape);

// A valid value of `f`.
json Sample(const BodyField& f) {
  switch (f.type) {
    case FieldType::kString:
      if (f.example.is_string()) return f.example;
      if (!f.one_of.empty()) return f.one_of.front();
      return kUrlName;  // fits every pattern in the tables ([a-z2-7], [a-z0-9_-])
    case FieldType::kInteger:
      if (f.fallback.is_number_integer()) return f.fallback;
      return f.minimum.value_or(1);
    case FieldType::kArray: return json::array({Minimal(*f.shape)});
    case FieldType::kObject: return Minimal(*f.shape);
  }
  return nullptr;
}

// A value of `f` of another JSON type than the table's.
json WrongType(const BodyField& f) { return f.type == FieldType::kString ? json(5) : json("5"); }

// Whether `f` belongs to the body's exactly-one-of group, but not as its first member (which the
// minimal body carries).
bool IsAlternative(const BodyShape& shape, const BodyField& f) {
  for (size_t i = 1; i < shape.exactly_one_of.size(); ++i) {
    if (shape.exactly_one_of[i] == f.name) return true;
  }
  return false;
}

// The smallest valid body: the required fields and the first of an exactly-one-of group.
json Minimal(const BodyShape& shape) {
  json out = json::object();
  if (shape.column_values) return {{"tier", "gold"}, {"n", 1.5}, {"active", true}};
  for (const BodyField& f : shape.fields) {
    const bool first_of_group = !shape.exactly_one_of.empty() && shape.exactly_one_of.front() == f.name;
    if (f.required || first_of_group) out[f.name] = Sample(f);
  }
  return out;
}

// One generated body and what the parser must make of it.
struct Case {
  std::string what;
  json body;
  std::string error;  // "" to be accepted; else a part of the error's message
};

// Bodies for `shape` (nested at `path`: "" at the top, else "pool", "migrations[0]").
std::vector<Case> Cases(const BodyShape& shape, const std::string& path) {
  const json minimal = Minimal(shape);
  const auto at = [&](const std::string& name) { return path.empty() ? name : path + "." + name; };
  const std::string where = path.empty() ? shape.where : path;
  std::vector<Case> out = {{"the minimal body", minimal, ""},
                           {"a list", json::array({minimal}), (path.empty() ? "the body" : path) + " must be "}};
  if (shape.column_values) {
    for (const json& v : {json(nullptr), json::array({1}), json::object()}) {
      out.push_back({"a column of " + v.dump(), {{"tier", v}}, at("tier") + " must be a string, number or boolean"});
    }
    return out;
  }
  json unknown = minimal;
  unknown["no_such_field"] = 1;
  out.push_back({"an unknown field", unknown, "unknown field 'no_such_field' in " + where});
  for (const BodyField& f : shape.fields) {
    json body = minimal;
    if (IsAlternative(shape, f)) body.erase(shape.exactly_one_of.front());
    body[f.name] = Sample(f);
    out.push_back({f.name + " given", body, ""});
    body[f.name] = WrongType(f);
    out.push_back({f.name + " of the wrong type", body, at(f.name) + " must be "});
    if (f.type == FieldType::kInteger) {
      body[f.name] = 1.5;
      out.push_back({f.name + " a fraction", body, at(f.name) + " must be "});
    }
    if (f.required) {
      json missing = minimal;
      missing.erase(f.name);
      out.push_back({f.name + " missing", missing, "missing field '" + f.name + "' in " + where});
    }
    if (f.range_checked) {
      for (std::optional<int64_t> bound : {f.minimum, f.maximum}) {
        if (!bound) continue;
        body[f.name] = *bound;
        out.push_back({f.name + " at its bound " + std::to_string(*bound), body, ""});
        body[f.name] = *bound + (bound == f.minimum ? -1 : 1);
        out.push_back({f.name + " past its bound " + std::to_string(*bound), body, at(f.name) + " must be "});
      }
    }
    if (f.shape != nullptr) {  // the nested shape's own cases, in place of this field's sample
      const std::string inner = at(f.name) + (f.type == FieldType::kArray ? "[0]" : "");
      for (Case c : Cases(*f.shape, inner)) {
        json nested = minimal;
        if (IsAlternative(shape, f)) nested.erase(shape.exactly_one_of.front());
        nested[f.name] = f.type == FieldType::kArray ? json::array({c.body}) : c.body;
        out.push_back({inner + ": " + c.what, nested, c.error});
      }
    }
  }
  if (shape.exactly_one_of.size() > 1) {
    json none = minimal, all = minimal;
    none.erase(shape.exactly_one_of.front());
    for (const BodyField& f : shape.fields) {
      if (IsAlternative(shape, f)) all[f.name] = Sample(f);
    }
    out.push_back({"none of the exactly-one group", none, "give exactly one of"});
    out.push_back({"all of the exactly-one group", all, "give exactly one of"});
  }
  return out;
}

TEST(RequestBodiesTest, EveryParserAcceptsAndRejectsWhatItsTableSays) {
  for (const Parser& p : Parsers()) {
    for (const Case& c : Cases(*p.shape, "")) {
      const std::string verdict = Verdict(p, c.body);
      if (c.error.empty()) {
        EXPECT_EQ(verdict, "") << p.shape->schema << ", " << c.what << ": " << c.body.dump();
      } else {
        EXPECT_NE(verdict.find(c.error), std::string::npos)
            << p.shape->schema << ", " << c.what << ": " << c.body.dump() << " wants \"" << c.error << "\", got \""
            << verdict << "\"";
      }
    }
  }
}

TEST(RequestBodiesTest, EveryRequestBodyOfTheDocumentIsATableWithAParser) {
  std::set<std::string> referenced, parsed;
  for (const auto& [path, operations] : OpenApiDocument()["paths"].items()) {
    for (const auto& [method, op] : operations.items()) {
      if (!op.contains("requestBody")) continue;
      const std::string ref = op["requestBody"]["content"]["application/json"]["schema"].value("$ref", "");
      referenced.insert(ref.substr(ref.rfind('/') + 1));
    }
  }
  for (const Parser& p : Parsers()) parsed.insert(p.shape->schema);
  EXPECT_EQ(referenced, parsed);
  const json& schemas = OpenApiDocument()["components"]["schemas"];
  for (const BodyShape* shape : AllBodyShapes()) {
    ASSERT_TRUE(schemas.contains(shape->schema)) << shape->schema;
    EXPECT_EQ(schemas[shape->schema], RequestSchemas()[shape->schema]) << shape->schema;
  }
}

TEST(RequestBodiesTest, TheSchemaOfABodyShowsItsTable) {
  const json s = RequestSchemas()["DsnBuildRequest"];
  EXPECT_EQ(s["additionalProperties"], false);
  EXPECT_EQ(s["required"], json({"dsn", "namespace", "recipe"}));
  EXPECT_EQ(s["properties"]["count"], json::parse(R"({"type": "integer", "minimum": 1, "maximum": 1000000,
                                                       "default": 1})"));
  EXPECT_EQ(s["properties"]["overrides"], json::parse(R"({"$ref": "#/components/schemas/BuildOverrides"})"));
  EXPECT_EQ(RequestSchemas()["TemplateDefinition"]["properties"]["migrations"],
            json::parse(R"({"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/SqlFile"}})"));
}

TEST(RequestBodiesTest, ABodyWithANumberPastDoublesRangeIsInvalidArgument) {
  // nlohmann_json throws out_of_range, not parse_error, for it (found by fuzz/request_body_fuzz).
  try {
    ParseBody(R"({"ttl_s": 1840000e17013})");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_NE(std::string(e.what()).find("out of range"), std::string::npos) << e.what();
  }
}

TEST(RequestBodiesTest, AReaderAskedForAFieldItsTableLacksIsAnInternalError) {
  const BodyReader reader(json::object(), bodies::kRenewRequest);
  try {
    reader.Get("wait_s");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInternal) << e.what();
  }
}

}  // namespace
}  // namespace testpool::api
