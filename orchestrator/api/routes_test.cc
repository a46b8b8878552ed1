#include "orchestrator/api/routes.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "orchestrator/api/integresql_routes.h"

namespace testpool::api {
namespace {

const Route& RouteOf(std::string_view method, std::string_view path) {
  for (const Route& route : Routes()) {
    if (route.method == method && route.path == path) return route;
  }
  ADD_FAILURE() << "no route " << method << " " << path;
  return Routes().front();
}

TEST(PathMatches, LiteralPathsMatchExactly) {
  const Route& status = RouteOf("GET", "/v1/status");
  EXPECT_TRUE(PathMatches(status, "/v1/status"));
  EXPECT_FALSE(PathMatches(status, "/v1/status/"));
  EXPECT_FALSE(PathMatches(status, "/v1/statusx"));
  EXPECT_FALSE(PathMatches(status, "/v1"));
  EXPECT_FALSE(PathMatches(status, "v1/status"));
  EXPECT_FALSE(PathMatches(status, ""));
  EXPECT_FALSE(PathMatches(RouteOf("GET", "/openapi.json"), "/openapi_json"));  // a regex's '.' would
}

TEST(PathMatches, ParametersMatchOneNonEmptySegment) {
  const Route& put = RouteOf("PUT", "/v1/templates/{name}");
  EXPECT_TRUE(PathMatches(put, "/v1/templates/app"));
  EXPECT_TRUE(PathMatches(put, "/v1/templates/a.b-c_d"));
  EXPECT_FALSE(PathMatches(put, "/v1/templates/"));
  EXPECT_FALSE(PathMatches(put, "/v1/templates"));
  EXPECT_FALSE(PathMatches(put, "/v1/templates/app/leases"));  // a different route
  EXPECT_FALSE(PathMatches(put, "/v1/templates//"));
  const Route& lease = RouteOf("POST", "/v1/templates/{name}/leases");
  EXPECT_TRUE(PathMatches(lease, "/v1/templates/app/leases"));
  EXPECT_FALSE(PathMatches(lease, "/v1/templates//leases"));
  EXPECT_FALSE(PathMatches(lease, "/v1/templates/app/leases/x"));
  EXPECT_FALSE(PathMatches(lease, "/v1/templates/a/b/leases"));
}

// Every row's documented template, with each parameter filled in, matches that row; the access
// check (which uses PathMatches) and the router (the row's regex) agree on what a route is.
TEST(PathMatches, EveryRouteMatchesItsOwnTemplate) {
  for (const Route& route : Routes()) {
    std::string example;  // every {param} replaced by "x1"
    bool in_param = false;
    for (char c : route.path) {
      if (c == '{') { in_param = true; example += "x1"; continue; }
      if (c == '}') { in_param = false; continue; }
      if (!in_param) example += c;
    }
    EXPECT_TRUE(PathMatches(route, example)) << route.method << " " << route.path << " vs " << example;
  }
}

// IntegreSQL's routes: the access check's template and the router's regex agree, with and
// without the trailing slash, and the template names exactly one row per method.
TEST(PathMatches, EveryIntegresqlRouteAgreesWithItsRegex) {
  for (const IntegresqlRoute& route : IntegresqlRoutes()) {
    std::string example;
    bool in_param = false;
    for (char c : route.path) {
      if (c == '{') { in_param = true; example += "h-1"; continue; }
      if (c == '}') { in_param = false; continue; }
      if (!in_param) example += c;
    }
    const std::regex regex{std::string(route.pattern)};
    for (const std::string& path : {example, example + "/"}) {
      EXPECT_TRUE(std::regex_match(path, regex)) << route.pattern << " vs " << path;
    }
    EXPECT_TRUE(PathMatches(route.path, example)) << route.path;
    int same = 0;
    for (const IntegresqlRoute& other : IntegresqlRoutes()) {
      same += other.method == route.method && PathMatches(other.path, example);
    }
    EXPECT_EQ(same, 1) << route.method << " " << route.path;
  }
}

}  // namespace
}  // namespace testpool::api
