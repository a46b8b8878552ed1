#include "orchestrator/util/error.h"

namespace testpool {

std::string_view ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument: return "invalid_argument";
    case ErrorCode::kInvalidName: return "invalid_name";
    case ErrorCode::kUnauthorized: return "unauthorized";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kNotFound: return "not_found";
    case ErrorCode::kConflict: return "conflict";
    case ErrorCode::kMigrationFailed: return "migration_failed";
    case ErrorCode::kPoolExhausted: return "pool_exhausted";
    case ErrorCode::kDraining: return "draining";
    case ErrorCode::kLeaseExpired: return "lease_expired";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kTimeout: return "timeout";
    case ErrorCode::kBackend: return "backend_error";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

}  // namespace testpool
