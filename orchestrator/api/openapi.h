// GET /openapi.json: the OpenAPI 3.0.3 description of the HTTP API.
//
// The operations are written out here by hand (summary, parameters, response schemas, error
// answers); they are not generated from the route table, so that a test comparing this document
// with api/routes.h in both directions catches a route added without its description, or a
// description left behind by a removed route. The request bodies' schemas are generated from the
// tables the parsers read them with (api/request_bodies.h).
#pragma once

#include <nlohmann/json.hpp>

namespace testpool::api {

// The document (built once; thread-safe).
const nlohmann::json& OpenApiDocument();

}  // namespace testpool::api
