// The one mapping from testpool's errors to HTTP: each ErrorCode has one status, and every error
// answer has the body {"error":{"code":"…","message":"…","details":{…}}} ("details" only when the
// error carries some).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "orchestrator/util/error.h"

namespace testpool::api {

int HttpStatus(ErrorCode code);

nlohmann::json ErrorBody(const Error& error);

}  // namespace testpool::api
