// /v1/record-pools… and /v1/claims/{id}…: record pools and their claims, through RecordPools.
#include "orchestrator/api/client_probe.h"
#include "orchestrator/api/handlers.h"
#include "orchestrator/api/json_io.h"
#include "orchestrator/util/names.h"

namespace testpool::api {
namespace {

using nlohmann::json;

// The record pool name captured by the route's first group; Error(kInvalidName) when invalid.
std::string PoolNameParam(const httplib::Request& req) {
  std::string name = req.matches[1];
  util::CheckName(name, "record pool name");
  return name;
}

// "<pool name>.<token>": a valid pool name, a dot, then what util::RandomToken produces
// ([a-z2-7]), with room to spare in length.
bool IsClaimIdShape(const std::string& id) {
  const size_t dot = id.find('.');
  if (dot == std::string::npos || !util::IsValidName(std::string_view(id).substr(0, dot))) return false;
  const std::string_view token = std::string_view(id).substr(dot + 1);
  if (token.empty() || token.size() > 64) return false;
  for (char c : token) {
    if (!((c >= 'a' && c <= 'z') || (c >= '2' && c <= '7'))) return false;
  }
  return true;
}

// The claim id captured by the route's first group. An id that cannot have been issued is
// Error(kNotFound), like an unknown one.
std::string ClaimIdParam(const httplib::Request& req) {
  std::string id = req.matches[1];
  if (!IsClaimIdShape(id)) {
    // Not echoed: it is not an id, and may be anything a client sent.
    throw Error(ErrorCode::kNotFound, "no such claim (claim ids are <pool name>.<1 to 64 characters of [a-z2-7]>)");
  }
  return id;
}

}  // namespace

void PutRecordPool(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string name = PoolNameParam(req);
  records::RecordPoolSpec spec = RecordPoolSpecFromJson(name, ParseBody(req.body));
  bool created = false;
  records::RecordPoolInfo pool = s.records.Define(spec, &created);
  Reply(res, created ? 201 : 200, RecordPoolJson(pool));
}

void ListRecordPools(const Services& s, const httplib::Request&, httplib::Response& res) {
  json list = json::array();
  for (const records::RecordPoolInfo& pool : s.records.List()) list.push_back(RecordPoolJson(pool));
  Reply(res, 200, {{"record_pools", list}});
}

void GetRecordPool(const Services& s, const httplib::Request& req, httplib::Response& res) {
  Reply(res, 200, RecordPoolJson(s.records.Get(PoolNameParam(req))));
}

void DropRecordPool(const Services& s, const httplib::Request& req, httplib::Response& res) {
  s.records.Drop(PoolNameParam(req));
  res.status = 204;
}

void CreateClaim(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string pool = PoolNameParam(req);
  records::ClaimRequest request = ClaimRequestFromJson(pool, OptionalJsonBody(req));
  ClientProbe probe(req);
  request.abandoned = [&probe] { return probe.Gone(); };
  try {
    Reply(res, 201, ClaimJson(s.records.Claim(request)));
  } catch (const Error& e) {
    // Nothing matching was free within wait_s: tell the client when trying again makes sense.
    if (e.code() == ErrorCode::kPoolExhausted) res.set_header("Retry-After", "1");
    throw;
  }
}

void RenewClaim(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string id = ClaimIdParam(req);
  std::chrono::seconds ttl = ClaimRenewTtlFromJson(OptionalJsonBody(req));
  Reply(res, 200, ClaimJson(s.records.Renew(id, ttl)));
}

void ReleaseClaim(const Services& s, const httplib::Request& req, httplib::Response& res) {
  s.records.Release(ClaimIdParam(req));
  res.status = 204;  // no body; a second release is also 204
}

}  // namespace testpool::api
