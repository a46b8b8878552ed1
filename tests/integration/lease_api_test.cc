// The lease routes, /v1/status, /metrics and /openapi.json over real HTTP, in front of a real
// PoolManager on a real PostgreSQL.
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "orchestrator/api/routes.h"
#include "orchestrator/api/server.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/api_harness.h"
#include "tests/support/test_server.h"

namespace testpool::api {
namespace {

using nlohmann::json;

class LeaseApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { api_ = new testing::InProcessApi(/*with_pools=*/true, /*max_databases=*/20); }
  static void TearDownTestSuite() { delete api_; }

  httplib::Client Client() { return api_->Client(); }
  static json Body(const httplib::Result& r) { return json::parse(r->body, nullptr, false); }
  static std::string ErrorCodeOf(const httplib::Result& r) { return testing::InProcessApi::ErrorCodeOf(r); }
  static std::string MessageOf(const httplib::Result& r) {
    json b = Body(r);
    return b.is_object() && b.contains("error") ? b["error"].value("message", "") : "";
  }

  static std::string Fresh(const std::string& stem) { return stem + "_" + util::RandomToken(6); }

  // Defines and builds a small template with the given pool; returns its name.
  std::string MakeTemplate(const std::string& stem, int min_ready, int max) {
    std::string name = Fresh(stem);
    // The name in a comment gives each template a hash of its own (same files, same hash).
    const std::string sql = "-- " + name + "\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n";
    json body = {{"migrations", {{{"name", "0001_t.sql"}, {"sql", sql}}}},
                 {"pool", {{"min_ready", min_ready}, {"max", max}}}};
    auto r = Client().Put(("/v1/templates/" + name).c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r && (r->status == 201 || r->status == 200)) << (r ? r->body : "no answer");
    return name;
  }

  httplib::Result PostLease(const std::string& name, const json& body) {
    return Client().Post(("/v1/templates/" + name + "/leases").c_str(), body.dump(), "application/json");
  }

  static testing::InProcessApi* api_;
};

testing::InProcessApi* LeaseApiTest::api_;

// "2026-11-24T21:30:00.123Z" (std::regex is avoided: GCC 12 warns inside it under the sanitizers).
bool IsIsoUtcMs(const std::string& s) {
  const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
  if (s.size() != shape.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i]) return false;
  }
  return true;
}

bool IsLabelName(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isalnum(c) || c == '_'; });
}

// The {parameters} of an OpenAPI path template, in order.
std::vector<std::string> PathParams(std::string_view path) {
  std::vector<std::string> out;
  for (size_t open = path.find('{'); open != std::string_view::npos; open = path.find('{', open + 1)) {
    size_t close = path.find('}', open);
    if (close == std::string_view::npos) break;
    out.emplace_back(path.substr(open + 1, close - open - 1));
  }
  return out;
}

// The path template with every {parameter} replaced by `value`.
std::string ExamplePath(std::string_view path, const std::string& value) {
  std::string out;
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '{') {
      out += value;
      i = path.find('}', i);
    } else {
      out.push_back(path[i]);
    }
  }
  return out;
}

// ---- bad input: each a clear JSON 4xx -----------------------------------------------------------

TEST_F(LeaseApiTest, MalformedLeaseBodiesAre400NamingTheProblem) {
  struct Case {
    std::string body;
    std::string mentions;
  } cases[] = {
      {"{\"ttl_s\": ", "not valid JSON"},
      {"[]", "JSON object"},
      {"\"gw3\"", "JSON object"},
      {R"({"ttl_s": "600"})", "ttl_s must be an integer"},
      {R"({"ttl_s": 600.5})", "ttl_s must be an integer"},
      {R"({"wait_s": true})", "wait_s must be an integer"},
      {R"({"wait_s": null})", "wait_s must be an integer"},
      {R"({"holder": 3})", "holder must be a string"},
      {R"({"ttl": 600})", "unknown field 'ttl'"},
      {R"({"ttl_s": 600, "priority": "high"})", "unknown field 'priority'"},
  };
  for (const auto& c : cases) {
    auto r = Client().Post("/v1/templates/any_template/leases", c.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << c.body;
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << c.body << " → " << MessageOf(r);
  }
}

TEST_F(LeaseApiTest, BadTemplateNameInTheLeaseUrlIs400) {
  for (const std::string bad : {"Bad", "1abc", "a-b", "x%27%3B%20DROP"}) {
    auto r = Client().Post(("/v1/templates/" + bad + "/leases").c_str(), "{}", "application/json");
    EXPECT_EQ(r->status, 400) << bad;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_name") << bad;
  }
}

TEST_F(LeaseApiTest, OversizedBodiesAre413) {
  json big = {{"holder", std::string(65u << 10, 'h')}};
  auto lease = PostLease("any_template", big);
  ASSERT_TRUE(lease);
  EXPECT_EQ(lease->status, 413);
  EXPECT_EQ(ErrorCodeOf(lease), "invalid_argument");
  EXPECT_NE(MessageOf(lease).find("64 KiB"), std::string::npos) << MessageOf(lease);
  auto renew = Client().Post("/v1/leases/abcdefgh/renew", big.dump(), "application/json");
  EXPECT_EQ(renew->status, 413);
  EXPECT_EQ(ErrorCodeOf(renew), "invalid_argument");
}

TEST_F(LeaseApiTest, RenewAndResetBodiesAreStrict) {
  struct Case {
    std::string path, body, mentions;
  } cases[] = {
      {"/v1/leases/abcdefgh/renew", R"({"ttl_s": "60"})", "ttl_s must be an integer"},
      {"/v1/leases/abcdefgh/renew", R"({"ttl": 60})", "unknown field 'ttl'"},
      {"/v1/leases/abcdefgh/renew", "{", "not valid JSON"},
      {"/v1/leases/abcdefgh/reset", R"({"hard": true})", "unknown field 'hard'"},
      {"/v1/leases/abcdefgh/reset", "[1]", "JSON object"},
  };
  for (const auto& c : cases) {
    auto r = Client().Post(c.path.c_str(), c.body, "application/json");
    EXPECT_EQ(r->status, 400) << c.path << " " << c.body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument");
    EXPECT_NE(MessageOf(r).find(c.mentions), std::string::npos) << MessageOf(r);
  }
}

TEST_F(LeaseApiTest, MalformedLeaseIdsAre404NeverAnError500) {
  const std::vector<std::string> bad_ids = {"ABC", "a-b", "0189", "a.b", std::string(65, 'a'), "a%20b", "%FF%FE",
                                            "x%27%3B%20DROP", "%00"};
  for (const std::string& id : bad_ids) {
    auto c = Client();
    const std::string path = "/v1/leases/" + id;
    std::vector<std::pair<std::string, httplib::Result>> answers;
    answers.emplace_back("GET", c.Get(path.c_str()));
    answers.emplace_back("DELETE", c.Delete(path.c_str()));
    answers.emplace_back("renew", c.Post((path + "/renew").c_str(), "{}", "application/json"));
    answers.emplace_back("reset", c.Post((path + "/reset").c_str(), "{}", "application/json"));
    for (auto& [what, r] : answers) {
      ASSERT_TRUE(r) << what << " " << id;
      EXPECT_EQ(r->status, 404) << what << " " << id << " → " << r->body;
      EXPECT_EQ(ErrorCodeOf(r), "not_found") << what << " " << id;
    }
  }
}

// Needs the pools: the ranges are PoolManager's to check.
TEST_F(LeaseApiTest, OutOfRangeTtlAndWaitAre400) {
  std::string name = MakeTemplate("ranges", 0, 1);
  const std::vector<json> bodies = {
      {{"ttl_s", 0}},       {{"ttl_s", -5}},      {{"ttl_s", 86401}},       {{"ttl_s", 1000000000000LL}},
      {{"ttl_s", UINT64_MAX}}, {{"wait_s", 601}},  {{"wait_s", -1}},         {{"wait_s", 9000000000LL}},
      {{"holder", std::string(201, 'h')}},
  };
  for (const json& body : bodies) {
    auto r = PostLease(name, body);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << body << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "invalid_argument") << body;
    if (r->status == 201) Client().Delete(("/v1/leases/" + Body(r).value("id", "x")).c_str());
  }
  Client().Delete(("/v1/templates/" + name).c_str());
}

// Needs the pools.
TEST_F(LeaseApiTest, UnknownLeaseIdIs404OnEveryRoute) {
  const std::string path = "/v1/leases/" + util::RandomToken(16);  // well-shaped, never issued
  auto c = Client();
  std::vector<std::pair<std::string, httplib::Result>> answers;
  answers.emplace_back("GET", c.Get(path.c_str()));
  answers.emplace_back("DELETE", c.Delete(path.c_str()));
  answers.emplace_back("renew", c.Post((path + "/renew").c_str(), R"({"ttl_s": 60})", "application/json"));
  answers.emplace_back("reset", c.Post((path + "/reset").c_str(), "", "application/json"));
  for (auto& [what, r] : answers) {
    ASSERT_TRUE(r) << what;
    EXPECT_EQ(r->status, 404) << what << " → " << r->body;
    EXPECT_EQ(ErrorCodeOf(r), "not_found") << what;
  }
}

// Needs the pools.
TEST_F(LeaseApiTest, UnknownTemplateIs404) {
  auto r = PostLease("never_defined_" + util::RandomToken(4), {{"wait_s", 0}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  EXPECT_EQ(ErrorCodeOf(r), "not_found");
}

// ---- the round trip (needs the pools) -------------------------------------------------------------

TEST_F(LeaseApiTest, LeaseConnectRenewReleaseRoundTrip) {
  std::string name = MakeTemplate("trip", 1, 2);
  auto c = Client();
  auto granted = PostLease(name, {{"ttl_s", 60}, {"wait_s", 30}, {"holder", "gw3"}});
  ASSERT_TRUE(granted);
  ASSERT_EQ(granted->status, 201) << granted->body;
  json lease = Body(granted);
  for (const char* field : {"id", "dsn", "host", "port", "user", "password", "database", "token", "expires_at",
                            "created_at", "holder", "template", "hash", "slot", "state", "wait_ms"}) {
    EXPECT_TRUE(lease.contains(field)) << field << " missing from " << lease;
  }
  EXPECT_EQ(lease["holder"], "gw3");
  EXPECT_EQ(lease["template"], name);
  EXPECT_EQ(lease["state"], "active");
  EXPECT_TRUE(IsIsoUtcMs(lease.value("expires_at", ""))) << lease["expires_at"];
  EXPECT_TRUE(IsIsoUtcMs(lease.value("created_at", ""))) << lease["created_at"];
  const std::string id = lease["id"];

  // The DSN connects on the first try, as the lease's own role, into a copy of the template.
  {
    pg::Connection db = pg::Connection::Open(lease["dsn"].get<std::string>());
    EXPECT_EQ(db.Database(), lease["database"]);
    EXPECT_EQ(db.Exec("SELECT count(*) FROM t").Get(0, 0), "1");
    EXPECT_EQ(db.Exec("SELECT current_user").Get(0, 0), lease["user"]);
  }

  auto got = c.Get(("/v1/leases/" + id).c_str());
  EXPECT_EQ(got->status, 200);
  EXPECT_EQ(Body(got)["dsn"], lease["dsn"]);

  auto renewed = c.Post(("/v1/leases/" + id + "/renew").c_str(), R"({"ttl_s": 120})", "application/json");
  ASSERT_EQ(renewed->status, 200) << renewed->body;
  EXPECT_GT(Body(renewed)["expires_at"].get<std::string>(), lease["expires_at"].get<std::string>());

  auto released = c.Delete(("/v1/leases/" + id).c_str());
  EXPECT_EQ(released->status, 204);
  EXPECT_TRUE(released->body.empty());
  EXPECT_EQ(c.Delete(("/v1/leases/" + id).c_str())->status, 204) << "a second release is also 204";

  auto late = c.Post(("/v1/leases/" + id + "/renew").c_str(), R"({"ttl_s": 60})", "application/json");
  EXPECT_EQ(late->status, 410) << late->body;
  EXPECT_EQ(ErrorCodeOf(late), "lease_expired");
  EXPECT_EQ(Body(c.Get(("/v1/leases/" + id).c_str()))["state"], "released");
  c.Delete(("/v1/templates/" + name).c_str());
}

TEST_F(LeaseApiTest, ResetRestoresTheTemplateStateUnderTheSameDsn) {
  std::string name = MakeTemplate("reset", 1, 1);
  auto granted = PostLease(name, {{"wait_s", 30}});
  ASSERT_EQ(granted->status, 201) << granted->body;
  json lease = Body(granted);
  {
    pg::Connection db = pg::Connection::Open(lease["dsn"].get<std::string>());
    db.Exec("INSERT INTO t VALUES (2), (3)");
  }
  auto reset = Client().Post(("/v1/leases/" + lease["id"].get<std::string>() + "/reset").c_str(), "",
                             "application/json");
  ASSERT_EQ(reset->status, 200) << reset->body;
  EXPECT_EQ(Body(reset)["dsn"], lease["dsn"]);
  {
    pg::Connection db = pg::Connection::Open(lease["dsn"].get<std::string>());
    EXPECT_EQ(db.Exec("SELECT count(*) FROM t").Get(0, 0), "1");
  }
  EXPECT_EQ(Client().Delete(("/v1/leases/" + lease["id"].get<std::string>()).c_str())->status, 204);
  Client().Delete(("/v1/templates/" + name).c_str());
}

TEST_F(LeaseApiTest, ExhaustedPoolIs503WithRetryAfter) {
  std::string name = MakeTemplate("exhaust", 1, 1);
  auto first = PostLease(name, {{"wait_s", 30}});
  ASSERT_EQ(first->status, 201) << first->body;
  auto second = PostLease(name, {{"wait_s", 0}});
  ASSERT_TRUE(second);
  EXPECT_EQ(second->status, 503) << second->body;
  EXPECT_EQ(second->get_header_value("Retry-After"), "1");
  EXPECT_EQ(ErrorCodeOf(second), "pool_exhausted");
  EXPECT_NE(MessageOf(second).find(name), std::string::npos) << "the message names the template: " << MessageOf(second);
  EXPECT_EQ(Client().Delete(("/v1/leases/" + Body(first)["id"].get<std::string>()).c_str())->status, 204);

  json status = Body(Client().Get("/v1/status"));
  EXPECT_GE(status["counters"]["leases_exhausted"].get<int>(), 1) << status;
  Client().Delete(("/v1/templates/" + name).c_str());
}

// A client that gives up waiting (its own timeout, a killed CI job) must not leave a ghost in the
// queue: the next slot would go to nobody and sit out its TTL while live clients starve.
TEST_F(LeaseApiTest, AWaiterWhoseClientLeftNeverTakesTheSlot) {
  std::string name = MakeTemplate("ghost", 1, 1);
  auto held = PostLease(name, {{"wait_s", 30}});
  ASSERT_TRUE(held && held->status == 201) << (held ? held->body : "no answer");
  auto abandoned_count = [&] {
    return Body(Client().Get("/v1/status"))["counters"]["leases_abandoned"].get<int>();
  };
  const int abandoned_before = abandoned_count();
  {
    httplib::Client ghost("127.0.0.1", api_->port());
    ghost.set_read_timeout(0, 300000);  // gives up after 0.3 s; its socket closes with it
    json body = {{"wait_s", 30}, {"holder", "ghost"}};
    auto r = ghost.Post(("/v1/templates/" + name + "/leases").c_str(), body.dump(), "application/json");
    EXPECT_FALSE(r) << "the pool has nothing free: the ghost's request must still be waiting";
  }
  // The daemon notices within its poll interval and drops the waiter (bounded: 60 s).
  for (int i = 0; i < 600 && abandoned_count() == abandoned_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(abandoned_count(), abandoned_before + 1);
  EXPECT_EQ(Client().Delete(("/v1/leases/" + Body(held)["id"].get<std::string>()).c_str())->status, 204);
  // The released slot goes to the live client, not to the ghost (which would hold it for its TTL).
  auto live = PostLease(name, {{"wait_s", 10}, {"holder", "live"}});
  ASSERT_TRUE(live);
  EXPECT_EQ(live->status, 201) << live->body;
  if (live->status == 201) Client().Delete(("/v1/leases/" + Body(live)["id"].get<std::string>()).c_str());
  Client().Delete(("/v1/templates/" + name).c_str());
}

// ---- status, metrics, openapi -----------------------------------------------------------------------

TEST_F(LeaseApiTest, StatusHasPoolsDatabasesAndCounters) {
  auto r = Client().Get("/v1/status");
  ASSERT_EQ(r->status, 200) << r->body;
  json s = Body(r);
  EXPECT_TRUE(s["pools"].is_array()) << s;
  EXPECT_TRUE(s["databases"].is_number_integer());
  EXPECT_EQ(s["max_databases"], 20) << s;
  for (const char* c : {"leases_granted", "leases_released", "leases_expired", "leases_exhausted", "leases_abandoned", "recycles_cloned",
                        "recycles_skipped", "resets", "slots_broken"}) {
    EXPECT_TRUE(s["counters"][c].is_number_integer()) << c;
  }
  EXPECT_TRUE(s["counters"]["lease_wait"]["count"].is_number_integer());
}

// One sample line: name{labels} value. Returns false when the line is not one.
bool ParseSample(const std::string& line, std::string* name, std::map<std::string, std::string>* labels,
                 double* value) {
  size_t i = 0;
  while (i < line.size() && (std::isalnum(static_cast<unsigned char>(line[i])) || line[i] == '_' || line[i] == ':')) ++i;
  if (i == 0 || std::isdigit(static_cast<unsigned char>(line[0]))) return false;
  *name = line.substr(0, i);
  labels->clear();
  if (i < line.size() && line[i] == '{') {
    ++i;
    while (i < line.size() && line[i] != '}') {
      size_t eq = line.find("=\"", i);
      if (eq == std::string::npos) return false;
      std::string key = line.substr(i, eq - i);
      if (!IsLabelName(key)) return false;
      std::string v;
      size_t j = eq + 2;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\') {
          if (++j >= line.size()) return false;
          char e = line[j];
          if (e == 'n') v.push_back('\n');
          else if (e == '\\' || e == '"') v.push_back(e);
          else return false;
        } else {
          v.push_back(line[j]);
        }
      }
      if (j >= line.size()) return false;
      (*labels)[key] = v;
      i = j + 1;
      if (i < line.size() && line[i] == ',') ++i;
    }
    if (i >= line.size()) return false;
    ++i;  // '}'
  }
  if (i >= line.size() || line[i] != ' ') return false;
  std::string text = line.substr(i + 1);
  if (text == "+Inf") *value = INFINITY;
  else if (text == "-Inf") *value = -INFINITY;
  else if (text == "NaN") *value = NAN;
  else {
    char* end = nullptr;
    *value = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') return false;
  }
  return true;
}

TEST_F(LeaseApiTest, MetricsParseLineByLineAndEveryFamilyHasHelpAndType) {
  auto r = Client().Get("/metrics");
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/plain; version=0.0.4");
  std::map<std::string, std::string> types;  // family → type
  std::set<std::string> helped;
  std::map<std::string, int> samples;        // family → samples seen
  std::map<std::string, double> last_bucket, inf_bucket, counts;
  std::istringstream in(r->body);
  std::string line;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty()) << "blank line in the exposition";
    if (line.rfind("# HELP ", 0) == 0) {
      std::string rest = line.substr(7);
      helped.insert(rest.substr(0, rest.find(' ')));
      continue;
    }
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream t(line.substr(7));
      std::string family, type;
      t >> family >> type;
      EXPECT_TRUE(type == "counter" || type == "gauge" || type == "histogram") << line;
      EXPECT_TRUE(helped.count(family)) << "TYPE before HELP for " << family;
      types[family] = type;
      continue;
    }
    ASSERT_NE(line[0], '#') << line;
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0;
    ASSERT_TRUE(ParseSample(line, &name, &labels, &value)) << "not `name{labels} value`: " << line;
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
          types.count(name.substr(0, name.size() - s.size())) &&
          types[name.substr(0, name.size() - s.size())] == "histogram") {
        family = name.substr(0, name.size() - s.size());
      }
    }
    ASSERT_TRUE(types.count(family)) << "sample before its # TYPE: " << line;
    ASSERT_TRUE(helped.count(family)) << "sample without # HELP: " << line;
    if (types[family] == "counter") {
      EXPECT_TRUE(family.size() > 6 && family.substr(family.size() - 6) == "_total") << family;
      EXPECT_GE(value, 0) << line;
    }
    if (types[family] == "histogram" && name == family + "_bucket") {
      ASSERT_TRUE(labels.count("le")) << line;
      EXPECT_GE(value, last_bucket[family]) << "buckets are cumulative: " << line;
      last_bucket[family] = value;
      if (labels["le"] == "+Inf") inf_bucket[family] = value;
    }
    if (types[family] == "histogram" && name == family + "_count") counts[family] = value;
    ++samples[family];
  }
  for (const char* family : {"testpool_leases_granted_total", "testpool_leases_released_total",
                             "testpool_leases_expired_total", "testpool_leases_exhausted_total", "testpool_leases_abandoned_total",
                             "testpool_recycles_total", "testpool_resets_total", "testpool_slots_broken_total",
                             "testpool_databases", "testpool_max_databases"}) {
    EXPECT_GT(samples[family], 0) << family << " has no sample";
  }
  for (const char* family : {"testpool_slots", "testpool_waiting"}) EXPECT_EQ(types[family], "gauge") << family;
  for (const char* family : {"testpool_lease_wait_seconds", "testpool_recycle_seconds"}) {
    EXPECT_EQ(types[family], "histogram") << family;
    EXPECT_TRUE(inf_bucket.count(family)) << family << " has no +Inf bucket";
    EXPECT_EQ(inf_bucket[family], counts[family]) << family << ": +Inf bucket and _count differ";
  }
  EXPECT_NE(r->body.find("testpool_recycles_total{mode=\"clone\"}"), std::string::npos);
  EXPECT_NE(r->body.find("testpool_recycles_total{mode=\"skip\"}"), std::string::npos);
  EXPECT_NE(r->body.find("testpool_max_databases 20\n"), std::string::npos);
}

// Every "$ref" in `node` points into `doc`.
void ExpectRefsResolve(const json& doc, const json& node) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if (key == "$ref") {
        std::string ref = value.get<std::string>();
        ASSERT_EQ(ref.rfind("#/", 0), 0u) << ref;
        EXPECT_TRUE(doc.contains(json::json_pointer(ref.substr(1)))) << "dangling $ref " << ref;
      } else {
        ExpectRefsResolve(doc, value);
      }
    }
  } else if (node.is_array()) {
    for (const auto& v : node) ExpectRefsResolve(doc, v);
  }
}

TEST_F(LeaseApiTest, OpenApiDescribesExactlyTheRouteTable) {
  auto r = Client().Get("/openapi.json");
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  json doc = json::parse(r->body, nullptr, false);
  ASSERT_FALSE(doc.is_discarded()) << "openapi.json does not parse";
  EXPECT_EQ(doc.value("openapi", ""), "3.0.3");
  EXPECT_TRUE(doc["info"].is_object() && doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
  ASSERT_TRUE(doc["paths"].is_object());
  ASSERT_TRUE(doc["components"]["schemas"].contains("Error"));

  std::set<std::pair<std::string, std::string>> routes;  // (method, path)
  for (const Route& route : Routes()) {
    std::string method(route.method), path(route.path);
    std::transform(method.begin(), method.end(), method.begin(), [](unsigned char c) { return std::tolower(c); });
    EXPECT_TRUE(routes.emplace(method, path).second) << "route listed twice: " << method << " " << path;
    // The route's regex is registered and matches its path template: a request to it never meets
    // the router's "no such endpoint". ("X" is no valid name or id: nothing is touched.)
    auto probe = Client().send([&] {
      httplib::Request req;
      req.method = std::string(route.method);
      req.path = ExamplePath(path, "X");
      return req;
    }());
    ASSERT_TRUE(probe) << method << " " << path;
    EXPECT_EQ(MessageOf(probe).rfind("no such endpoint", 0), std::string::npos)
        << route.pattern << " does not match " << ExamplePath(path, "X") << ": " << probe->body;
    ASSERT_TRUE(doc["paths"].contains(path)) << path << " is not in openapi.json";
    ASSERT_TRUE(doc["paths"][path].contains(method)) << method << " " << path << " is not in openapi.json";
    const json& op = doc["paths"][path][method];
    EXPECT_TRUE(op["responses"].is_object() && !op["responses"].empty()) << method << " " << path;
    EXPECT_TRUE(op["operationId"].is_string()) << method << " " << path;
    // Each {param} of the path is declared.
    for (const std::string& param : PathParams(path)) {
      bool declared = false;
      for (const auto& p : op.value("parameters", json::array())) {
        declared = declared || (p["in"] == "path" && p["name"] == param && p["required"] == true);
      }
      EXPECT_TRUE(declared) << method << " " << path << " does not declare {" << param << "}";
    }
    // Every error answer is the error schema; every body-taking route describes its body.
    for (const auto& [status, answer] : op["responses"].items()) {
      if (status[0] == '4' || status[0] == '5') {
        json resolved = answer.contains("$ref") ? doc.at(json::json_pointer(answer["$ref"].get<std::string>().substr(1)))
                                                : answer;
        EXPECT_EQ(resolved["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error")
            << method << " " << path << " " << status;
      }
    }
    if (method == "put" || method == "post") {
      EXPECT_TRUE(op.contains("requestBody")) << method << " " << path;
    }
  }
  for (const auto& [path, item] : doc["paths"].items()) {
    for (const auto& [method, op] : item.items()) {
      if (method == "parameters") continue;
      EXPECT_TRUE(routes.count({method, path})) << "openapi.json describes " << method << " " << path
                                                << ", which is not in the route table";
    }
  }
  ExpectRefsResolve(doc, doc);
}

}  // namespace
}  // namespace testpool::api
