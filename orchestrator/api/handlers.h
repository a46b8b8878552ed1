// The route handlers (one per row of api/routes.h) and the small helpers they share.
// Internal to api/: only routes.cc and the routes_*.cc files include this.
#pragma once

#include <httplib.h>

#include <string>

#include <nlohmann/json.hpp>

#include "orchestrator/api/routes.h"
#include "orchestrator/util/error.h"

namespace testpool::api {

// ---- helpers ---------------------------------------------------------------------------------

// Serialises for the wire. Invalid UTF-8 (a name a client sent, echoed in a message) is replaced
// rather than thrown on: an answer must always go out.
std::string Dump(const nlohmann::json& body);
void Reply(httplib::Response& res, int status, const nlohmann::json& body);
void ReplyError(httplib::Response& res, const Error& error);

// ?name=true|false (also 1|0); absent → fallback. Error(kInvalidArgument) otherwise.
bool BoolParam(const httplib::Request& req, const char* name, bool fallback);
// The template name captured by the route's first group; Error(kInvalidName) when invalid.
std::string TemplateNameParam(const httplib::Request& req);
// The lease id captured by the route's first group. An id that cannot have been issued
// (not [a-z2-7]{1,64}) is Error(kNotFound), like an unknown one.
std::string LeaseIdParam(const httplib::Request& req);
// The body as JSON; an empty body is an empty object.
nlohmann::json OptionalJsonBody(const httplib::Request& req);

// ---- handlers (routes_templates.cc) ----------------------------------------------------------
void Healthz(const Services& s, const httplib::Request& req, httplib::Response& res);
void PutTemplate(const Services& s, const httplib::Request& req, httplib::Response& res);
void ListTemplates(const Services& s, const httplib::Request& req, httplib::Response& res);
void GetTemplate(const Services& s, const httplib::Request& req, httplib::Response& res);
void DeleteTemplate(const Services& s, const httplib::Request& req, httplib::Response& res);

// ---- handlers (routes_leases.cc) -------------------------------------------------------------
void CreateLease(const Services& s, const httplib::Request& req, httplib::Response& res);
void GetLease(const Services& s, const httplib::Request& req, httplib::Response& res);
void RenewLease(const Services& s, const httplib::Request& req, httplib::Response& res);
void ResetLease(const Services& s, const httplib::Request& req, httplib::Response& res);
void CreateCheckpoint(const Services& s, const httplib::Request& req, httplib::Response& res);
void ReleaseLease(const Services& s, const httplib::Request& req, httplib::Response& res);
void GetStatus(const Services& s, const httplib::Request& req, httplib::Response& res);

// ---- handlers (routes_records.cc) ------------------------------------------------------------
void PutRecordPool(const Services& s, const httplib::Request& req, httplib::Response& res);
void ListRecordPools(const Services& s, const httplib::Request& req, httplib::Response& res);
void GetRecordPool(const Services& s, const httplib::Request& req, httplib::Response& res);
void DropRecordPool(const Services& s, const httplib::Request& req, httplib::Response& res);
void CreateClaim(const Services& s, const httplib::Request& req, httplib::Response& res);
void RenewClaim(const Services& s, const httplib::Request& req, httplib::Response& res);
void ReleaseClaim(const Services& s, const httplib::Request& req, httplib::Response& res);

// ---- handlers (routes_builders.cc) -----------------------------------------------------------
void ListRecipes(const Services& s, const httplib::Request& req, httplib::Response& res);
void BuildInLease(const Services& s, const httplib::Request& req, httplib::Response& res);
void BuildInDsn(const Services& s, const httplib::Request& req, httplib::Response& res);
void DropNamespace(const Services& s, const httplib::Request& req, httplib::Response& res);

// ---- handlers (metrics.cc, openapi.cc) -------------------------------------------------------
void GetMetrics(const Services& s, const httplib::Request& req, httplib::Response& res);
void GetOpenApi(const Services& s, const httplib::Request& req, httplib::Response& res);

}  // namespace testpool::api
