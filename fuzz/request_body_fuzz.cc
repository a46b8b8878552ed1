// The API's JSON request bodies (api/json_io.h over api/request_bodies.h and util/json_field.h),
// read as the routes read them: the text parsed (ParseBody; for the routes whose body is
// optional, blank text is {}), then the route's parser; a template definition then validated and
// hashed as the template service does.
//
// Input: one byte naming the route's body, then the body text:
//   't' PUT /v1/templates/{name}      'l' POST …/leases           'r' POST /v1/leases/{id}/renew
//   'x' POST /v1/leases/{id}/reset    'p' PUT /v1/record-pools/…  'c' POST …/claims
//   'n' POST /v1/claims/{id}/renew    'b' POST /v1/leases/{id}/build   'd' POST /v1/builds
//   'k' POST /v1/leases/{id}/checkpoints
// (any other byte picks one of them by its value).
//
// Checked: the only error is Error(kInvalidArgument) (kInternal would mean a parser out of step
// with its table; anything else, a library exception that escaped), and its answer body
// serialises; an accepted body has no member its table lacks and every member its table requires;
// what is parsed agrees with the body (counts of files, clamped integers, ranges).
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_check.h"
#include "orchestrator/api/errors.h"
#include "orchestrator/api/json_io.h"
#include "orchestrator/api/request_bodies.h"
#include "orchestrator/core/template_spec.h"
#include "orchestrator/util/error.h"

namespace testpool::api {
namespace {

using nlohmann::json;

constexpr std::string_view kRoutes = "tlrxpcnbdk";
const std::string kUrlName = "fuzzname";

// An accepted body holds only the table's members and all of the required ones.
void CheckShape(const json& body, const BodyShape& shape) {
  FUZZ_CHECK(body.is_object());
  if (shape.column_values) return;
  for (const auto& item : body.items()) FUZZ_CHECK(shape.Find(item.key()) != nullptr);
  for (const BodyField& f : shape.fields) {
    if (f.required) FUZZ_CHECK(body.contains(f.name));
  }
}

bool InSeconds(std::chrono::seconds s) {
  return s.count() >= -int64_t{INT32_MAX} && s.count() <= int64_t{INT32_MAX};
}

void Route(char route, const json& body) {
  switch (route) {
    case 't': {
      core::TemplateSpec spec = TemplateSpecFromJson(kUrlName, body);
      CheckShape(body, bodies::kTemplateDefinition);
      FUZZ_CHECK(spec.migrations.size() == (body.contains("migrations") ? body["migrations"].size() : 0));
      FUZZ_CHECK(spec.seed.size() == (body.contains("seed") ? body["seed"].size() : 0));
      core::ValidateSpec(&spec);  // what the template service does next (throws kInvalid*)
      FUZZ_CHECK(core::TemplateHash(spec, 15).size() == 64);
      break;
    }
    case 'l': {
      const core::LeaseRequest request = LeaseRequestFromJson(kUrlName, body);
      CheckShape(body, bodies::kLeaseRequest);
      FUZZ_CHECK(InSeconds(request.ttl) && InSeconds(request.wait));
      break;
    }
    case 'r':
      FUZZ_CHECK(InSeconds(RenewTtlFromJson(body)));
      CheckShape(body, bodies::kRenewRequest);
      break;
    case 'x': {
      const std::string to = ResetTargetFromJson(body);
      CheckShape(body, bodies::kResetRequest);
      // Absent: the template (""); present: a name, never empty.
      FUZZ_CHECK(body.contains("to") ? !to.empty() && to == body["to"].get<std::string>() : to.empty());
      break;
    }
    case 'k': {
      const std::string name = CheckpointNameFromJson(body);
      CheckShape(body, bodies::kCheckpointRequest);
      FUZZ_CHECK(name == body["name"].get<std::string>());
      break;
    }
    case 'p': {
      const records::RecordPoolSpec spec = RecordPoolSpecFromJson(kUrlName, body);
      CheckShape(body, bodies::kRecordPoolDefinition);
      // Exactly one of the two members (an empty value is RecordPools' to refuse).
      FUZZ_CHECK(body.contains("dsn") != body.contains("lease"));
      FUZZ_CHECK(spec.dsn == body.value("dsn", "") && spec.lease_id == body.value("lease", ""));
      break;
    }
    case 'c': {
      const records::ClaimRequest request = ClaimRequestFromJson(kUrlName, body);
      CheckShape(body, bodies::kClaimRequest);
      FUZZ_CHECK(InSeconds(request.ttl) && InSeconds(request.wait));
      break;
    }
    case 'n':
      FUZZ_CHECK(InSeconds(ClaimRenewTtlFromJson(body)));
      CheckShape(body, bodies::kClaimRenewRequest);
      break;
    case 'b': {
      const builders::BuildRequest request = LeaseBuildRequestFromJson(body);
      CheckShape(body, bodies::kLeaseBuildRequest);
      FUZZ_CHECK(request.count >= 1 && request.count <= 1000000);
      break;
    }
    default: {
      std::string dsn;
      const builders::BuildRequest request = DsnBuildRequestFromJson(body, &dsn);
      CheckShape(body, bodies::kDsnBuildRequest);
      FUZZ_CHECK(request.count >= 1 && request.count <= 1000000 && !request.ns.empty());
      break;
    }
  }
}

}  // namespace
}  // namespace testpool::api

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace testpool;
  using namespace testpool::api;
  if (size == 0) return 0;
  char route = static_cast<char>(data[0]);
  if (kRoutes.find(route) == std::string_view::npos) route = kRoutes[data[0] % kRoutes.size()];
  const std::string text(fuzz::AsText(data + 1, size - 1));
  // Routes whose body is optional read blank text as {} (handlers.cc's OptionalJsonBody).
  const bool optional = std::string_view("lrxcnk").find(route) != std::string_view::npos;
  try {
    const nlohmann::json body = optional && text.find_first_not_of(" \t\r\n") == std::string::npos
                                    ? nlohmann::json::object()
                                    : ParseBody(text);
    Route(route, body);
  } catch (const Error& e) {
    // kInvalidName only from ValidateSpec (the URL's name is valid: never here).
    FUZZ_CHECK(e.code() == ErrorCode::kInvalidArgument);
    FUZZ_CHECK(HttpStatus(e.code()) == 400);
    ErrorBody(e).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } catch (const std::exception& e) {
    fuzz::Unexpected("a request body parser", e);
  }
  return 0;
}
