// The one mapping from testpool's errors to HTTP: each ErrorCode has one status, and every error
// answer has the body {"error":{"code":"…","message":"…","details":{…}}} ("details" only when the
// error carries some).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "orchestrator/util/error.h"

namespace testpool::api {

int HttpStatus(ErrorCode code);

// The one status that does not come from an ErrorCode: a body larger than the route accepts
// (api/routes.h) is refused with 413 and code invalid_argument, before any handler runs.
inline constexpr int kHttpPayloadTooLarge = 413;

nlohmann::json ErrorBody(const Error& error);

}  // namespace testpool::api
