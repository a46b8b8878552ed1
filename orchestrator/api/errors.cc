#include "orchestrator/api/errors.h"

namespace testpool::api {

int HttpStatus(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return 400;
    case ErrorCode::kInvalidName: return 400;
    case ErrorCode::kUnauthorized: return 401;
    case ErrorCode::kForbidden: return 403;
    case ErrorCode::kNotFound: return 404;
    case ErrorCode::kConflict: return 409;
    case ErrorCode::kLeaseExpired: return 410;
    case ErrorCode::kMigrationFailed: return 422;
    case ErrorCode::kInternal: return 500;
    case ErrorCode::kBackend: return 502;
    case ErrorCode::kPoolExhausted: return 503;
    case ErrorCode::kDraining: return 503;
    case ErrorCode::kUnavailable: return 503;
    case ErrorCode::kTimeout: return 504;
  }
  return 500;
}

nlohmann::json ErrorBody(const Error& error) {
  nlohmann::json e = {{"code", std::string(ErrorCodeName(error.code()))}, {"message", error.what()}};
  if (!error.details().empty()) e["details"] = error.details();
  return {{"error", e}};
}

}  // namespace testpool::api
