// /v1/recipes, /v1/leases/{id}/build, /v1/builds and /v1/namespaces/{ns}: builders, through
// BuildService.
#include "orchestrator/api/handlers.h"
#include "orchestrator/api/json_io.h"
#include "orchestrator/builders/generators.h"

namespace testpool::api {
namespace {

using nlohmann::json;

// The namespace captured by the route's first group. One that cannot have been used (not
// [a-z0-9_-]{1,40}) is Error(kNotFound), like an unknown one.
std::string NamespaceParam(const httplib::Request& req) {
  std::string ns = req.matches[1];
  if (!builders::IsValidNamespace(ns)) {
    // Not echoed: it is not a namespace, and may be anything a client sent.
    throw Error(ErrorCode::kNotFound, "no such namespace (namespaces are 1 to 40 of [a-z0-9_-])");
  }
  return ns;
}

}  // namespace

void ListRecipes(const Services& s, const httplib::Request&, httplib::Response& res) {
  const builders::RecipeBook& book = s.builds.recipes();
  json list = json::array();
  for (const std::string& name : book.Names()) list.push_back(RecipeJson(book.Get(name)));
  Reply(res, 200, {{"recipes", list}});
}

void BuildInLease(const Services& s, const httplib::Request& req, httplib::Response& res) {
  const std::string lease = LeaseIdParam(req);
  builders::BuildRequest request = LeaseBuildRequestFromJson(ParseBody(req.body));
  s.builds.recipes().Get(request.recipe);  // an unknown recipe is 404 before anything is touched
  builders::BuildResult result = s.builds.BuildInLease(lease, request);
  Reply(res, 201, BuildResultJson(request, result));
}

void BuildInDsn(const Services& s, const httplib::Request& req, httplib::Response& res) {
  std::string dsn;
  builders::BuildRequest request = DsnBuildRequestFromJson(ParseBody(req.body), &dsn);
  // Before BuildService remembers the namespace: an unknown recipe leaves no trace.
  s.builds.recipes().Get(request.recipe);
  builders::BuildResult result = s.builds.BuildInDsn(dsn, request);
  Reply(res, 201, BuildResultJson(request, result));
}

void DropNamespace(const Services& s, const httplib::Request& req, httplib::Response& res) {
  const std::string ns = NamespaceParam(req);
  const int64_t deleted = s.builds.DropNamespace(ns);
  Reply(res, 200, {{"namespace", ns}, {"deleted", deleted}});
}

}  // namespace testpool::api
