// /v1/templates/{name}/leases, /v1/leases/{id}… (reset, checkpoints) and /v1/status: the pools, through PoolManager.
#include "orchestrator/api/client_probe.h"
#include "orchestrator/api/handlers.h"
#include "orchestrator/api/json_io.h"

namespace testpool::api {

using nlohmann::json;

void CreateLease(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string name = TemplateNameParam(req);
  core::LeaseRequest request = LeaseRequestFromJson(name, OptionalJsonBody(req));
  ClientProbe probe(req);
  request.abandoned = [&probe] { return probe.Gone(); };
  try {
    Reply(res, 201, LeaseJson(s.pools.Acquire(request)));
  } catch (const Error& e) {
    // Nothing was free within wait_s, or the daemon is draining (its successor answers soon):
    // tell the client when trying again makes sense.
    if (e.code() == ErrorCode::kPoolExhausted || e.code() == ErrorCode::kDraining) res.set_header("Retry-After", "1");
    throw;
  }
}

void GetLease(const Services& s, const httplib::Request& req, httplib::Response& res) {
  Reply(res, 200, LeaseJson(s.pools.GetLease(LeaseIdParam(req))));
}

void RenewLease(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string id = LeaseIdParam(req);
  std::chrono::seconds ttl = RenewTtlFromJson(OptionalJsonBody(req));
  Reply(res, 200, LeaseJson(s.pools.Renew(id, ttl)));
}

void ResetLease(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string id = LeaseIdParam(req);
  std::string to = ResetTargetFromJson(OptionalJsonBody(req));
  Reply(res, 200, LeaseJson(s.pools.Reset(id, to)));
}

void CreateCheckpoint(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string id = LeaseIdParam(req);
  std::string name = CheckpointNameFromJson(OptionalJsonBody(req));
  Reply(res, 201, CheckpointJson(s.pools.Checkpoint(id, name)));
}

void ReleaseLease(const Services& s, const httplib::Request& req, httplib::Response& res) {
  s.pools.Release(LeaseIdParam(req));
  res.status = 204;  // no body; a second release is also 204
}

void GetStatus(const Services& s, const httplib::Request&, httplib::Response& res) {
  Reply(res, 200, StatusJson(s.pools.Status()));
}

}  // namespace testpool::api
