// The `docker` backend end to end: real `testpool serve --backend docker` daemons against testpool's
// own dockerd ($DOCKER_HOST, else /run/testpool-docker.sock), running the offline base image
// ($TESTPOOL_DOCKER_IMAGE, else testpool/base:pg15-bookworm, built by scripts/build-base-image.sh),
// talked to over real HTTP and real libpq connections. An engine or image that is missing fails
// every test, saying what to run; nothing is skipped.
//
// Each daemon has a state directory of its own, hence a control server of its own, hence an owner
// of its own: the tests look only at containers labelled with their daemon's owner, and remove
// them (and the template images they made) at the end.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/backend/docker_api.h"
#include "orchestrator/backend/docker_backend.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/error.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;
using testing::CliResult;
using testing::Daemon;
using namespace std::chrono_literals;

std::string EngineHost() {
  const char* env = std::getenv("DOCKER_HOST");
  return env != nullptr && *env != '\0' ? env : "unix:///run/testpool-docker.sock";
}

std::string BaseImage() {
  const char* env = std::getenv("TESTPOOL_DOCKER_IMAGE");
  return env != nullptr && *env != '\0' ? env : backend::kDefaultDockerImage;
}

backend::DockerClient& Engine() {
  static auto* client = [] {
    backend::DockerClientOptions o;
    o.address = backend::DockerAddress::Parse(EngineHost());
    o.call_timeout = 60s;
    return new backend::DockerClient(o);
  }();
  return *client;
}

// Polls `done` every 100 ms until it holds or `timeout` passes; returns whether it held.
bool Eventually(const std::function<bool()>& done, std::chrono::seconds timeout = 60s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return done();
}

// Every template image the tests made, removed when the binary ends (also after a failed test).
std::set<std::pair<std::string, std::string>>& MadeImages() {
  static auto* made = new std::set<std::pair<std::string, std::string>>();
  return *made;
}

// A docker-backend daemon with a state directory of its own (which survives the daemon, so that a
// restart finds its control database, its owner and its containers).
class DockerDaemon {
 public:
  explicit DockerDaemon(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    ::setenv("DOCKER_HOST", EngineHost().c_str(), /*overwrite=*/0);  // the daemon finds the engine the tests use
    std::filesystem::permissions(state_.path(), std::filesystem::perms(0755));
    Start();
  }
  ~DockerDaemon() {
    daemon_.reset();  // SIGKILL if still running
    // Whatever this daemon's owner left (a killed daemon leaves its containers by design).
    if (!owner_.empty()) {
      for (const auto& c : Engine().ListContainers({{"testpool.owner", owner_}}, true)) {
        try {
          Engine().RemoveContainer(c.id, true, true);
        } catch (const Error&) {
        }
      }
    }
  }

  void Start() {
    std::vector<std::string> args = {"--backend", "docker", "--state-dir", state_.path().string(), "--docker-image",
                                     BaseImage()};
    args.insert(args.end(), extra_.begin(), extra_.end());
    daemon_ = std::make_unique<Daemon>(args);
    ASSERT_TRUE(daemon_->ready()) << daemon_->Log();
    if (owner_.empty()) {
      // The log names the owner: "docker.started … owner=<id> …".
      const std::string log = daemon_->Log();
      auto at = log.find(" owner=");
      ASSERT_NE(at, std::string::npos) << log;
      owner_ = log.substr(at + 7, log.find(' ', at + 7) - at - 7);
    }
  }
  // SIGKILL: nothing is cleaned up.
  void Kill() { daemon_.reset(); }
  int Terminate() { return daemon_->Terminate(); }
  void SetExtra(std::vector<std::string> extra) { extra_ = std::move(extra); }

  Daemon& d() { return *daemon_; }
  const std::string& owner() const { return owner_; }
  const std::filesystem::path& state() const { return state_.path(); }

  std::vector<backend::DockerContainerSummary> Containers(const std::map<std::string, std::string>& more = {},
                                                          bool all = false) {
    std::map<std::string, std::string> labels = {{"testpool.owner", owner_}, {"testpool.role", "slot"}};
    labels.insert(more.begin(), more.end());
    return Engine().ListContainers(labels, all);
  }
  // The running slot container whose server listens on `port`.
  std::string ContainerOnPort(int port) {
    auto list = Containers({{"testpool.port", std::to_string(port)}});
    return list.size() == 1 ? list[0].id : "";
  }

  // ---- the API ----
  httplib::Result Send(const std::string& method, const std::string& path, const json& body = nullptr) {
    httplib::Client c("127.0.0.1", daemon_->port());
    c.set_read_timeout(300, 0);
    if (method == "GET") return c.Get(path.c_str());
    if (method == "DELETE") return c.Delete(path.c_str());
    if (method == "PUT") return c.Put(path.c_str(), body.dump(), "application/json");
    return c.Post(path.c_str(), body.is_null() ? "{}" : body.dump(), "application/json");
  }
  json Put(const std::string& name, const std::string& sql, int min_ready, int max, const std::string& recycle = "clone") {
    json body = {{"migrations", {{{"name", "0001_init.sql"}, {"sql", sql}}}},
                 {"pool", {{"min_ready", min_ready}, {"max", max}}},
                 {"recycle", recycle}};
    auto r = Send("PUT", "/v1/templates/" + name, body);
    EXPECT_TRUE(r && (r->status == 200 || r->status == 201)) << (r ? r->body : "no answer") << daemon_->Log();
    json out = r ? json::parse(r->body, nullptr, false) : json();
    if (out.contains("hash")) MadeImages().emplace(name, out["hash"]);
    return out;
  }
  json Lease(const std::string& name) {
    auto r = Send("POST", "/v1/templates/" + name + "/leases", {{"ttl_s", 600}, {"wait_s", 60}});
    EXPECT_TRUE(r && r->status == 201) << (r ? r->body : "no answer") << daemon_->Log();
    return r ? json::parse(r->body, nullptr, false) : json();
  }
  void Release(const std::string& id) {
    auto r = Send("DELETE", "/v1/leases/" + id);
    EXPECT_TRUE(r && r->status == 204) << (r ? r->body : "no answer");
  }
  json Status() {
    auto r = Send("GET", "/v1/status");
    return r ? json::parse(r->body, nullptr, false) : json();
  }
  json Pool(const std::string& name) {
    const json status = Status();  // named: a temporary's member would dangle in the loop
    for (const json& p : status["pools"]) {
      if (p["template"] == name && p["current"] == true) return p;
    }
    return json();
  }
  uint64_t Counter(const std::string& name) { return Status()["counters"][name].get<uint64_t>(); }
  bool WaitReady(const std::string& name, int n, std::chrono::seconds timeout = 90s) {
    return Eventually([&] {
      json p = Pool(name);
      return !p.is_null() && p["ready"].get<int>() >= n;
    }, timeout);
  }

  // The TCP port of this daemon's embedded server (the control database's).
  std::string ControlPort() {
    std::ifstream port(state_.path() / "pg" / "port");
    std::string p;
    port >> p;
    return p;
  }

  // Superuser connection to this daemon's control database (the embedded server).
  pg::Connection Control() {
    std::ifstream pw(state_.path() / "pg" / "superuser.password"), port(state_.path() / "pg" / "port");
    std::string password, p;
    pw >> password;
    port >> p;
    pg::ConnInfo c;
    c.Set("host", (state_.path() / "pg" / "run").string()).Set("port", p).Set("user", "postgres");
    c.Set("password", password).Set("dbname", "testpool");
    return pg::Connection::Open(c);
  }

 private:
  testing::TempDir state_{"testpool-docker"};
  std::vector<std::string> extra_;
  std::unique_ptr<Daemon> daemon_;
  std::string owner_;
};

pg::Connection Connect(const json& lease) { return pg::Connection::Open(lease["dsn"].get<std::string>()); }

std::string StartedAt(const std::string& container) { return Engine().InspectContainer(container).started_at; }

constexpr const char* kSchema =
    "CREATE TABLE item (id serial PRIMARY KEY, name text UNIQUE NOT NULL);\n"
    "INSERT INTO item (name) VALUES ('template row');\n";

// A template name of this run (images are named after templates; runs must not share them).
std::string Fresh(const std::string& stem) {
  static const std::string run = [] {
    std::string s;
    std::random_device rd;
    for (int i = 0; i < 6; ++i) s += "abcdefghijklmnopqrstuvwxyz"[rd() % 26];
    return s;
  }();
  return stem + "_" + run;
}

// Removes a template image this run made (by name and hash), whoever uses it.
void RemoveImage(const std::string& name, const std::string& hash) {
  try {
    Engine().RemoveImage(backend::DockerBackend::TemplateImage(name, hash), /*force=*/true);
  } catch (const Error&) {
  }
}

class DockerPoolTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    try {
      Engine().Ping();
    } catch (const Error& e) {
      FAIL() << "no Docker engine at " << EngineHost() << ": " << e.what()
             << " — run scripts/start-dockerd.sh (scripts/test.sh does)";
    }
    ASSERT_TRUE(Engine().InspectImage(BaseImage()).has_value())
        << "no image " << BaseImage() << ": run scripts/build-base-image.sh (scripts/test.sh does)";
    daemon_ = new DockerDaemon();
  }
  static void TearDownTestSuite() { delete daemon_; }
  // A template on the suite's daemon; its image is removed at the end.
  json Template(const std::string& stem, int min_ready, int max, const std::string& recycle = "clone",
                const std::string& sql = kSchema) {
    const std::string name = Fresh(stem);
    return daemon_->Put(name, "-- " + name + "\n" + sql, min_ready, max, recycle);
  }

  static DockerDaemon* daemon_;
};
DockerDaemon* DockerPoolTest::daemon_;

class RemoveMadeImages : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& [name, hash] : MadeImages()) RemoveImage(name, hash);
  }
};
const auto* const kRemoveMadeImages = ::testing::AddGlobalTestEnvironment(new RemoveMadeImages);

TEST_F(DockerPoolTest, APoolOfFourContainersWarmsEachLabelledAndHoldingTheTemplate) {
  json t = Template("four", 4, 4);
  const std::string name = t["name"], hash = t["hash"];
  auto image = Engine().InspectImage(backend::DockerBackend::TemplateImage(name, hash));
  ASSERT_TRUE(image.has_value());
  EXPECT_EQ(image->labels["testpool.hash"], hash);
  ASSERT_TRUE(daemon_->WaitReady(name, 4)) << daemon_->Status().dump() << daemon_->d().Log();
  auto containers = daemon_->Containers({{"testpool.template", name}});
  ASSERT_EQ(containers.size(), 4u);
  std::set<std::string> slots, ports;
  for (const auto& c : containers) {
    EXPECT_EQ(c.state, "running");
    EXPECT_EQ(c.labels.at("testpool.hash"), hash);
    slots.insert(c.labels.at("testpool.slot"));
    ports.insert(c.labels.at("testpool.port"));
    const int port = std::stoi(c.labels.at("testpool.port"));
    EXPECT_GE(port, 20000);  // below the kernel's ephemeral range
    EXPECT_LT(port, 32768);
  }
  EXPECT_EQ(slots.size(), 4u);
  EXPECT_EQ(ports.size(), 4u);
}

TEST_F(DockerPoolTest, LeasesAreIsolatedPerContainer) {
  json t = Template("isolated", 2, 3);
  const std::string name = t["name"];
  json a = daemon_->Lease(name), b = daemon_->Lease(name);
  ASSERT_TRUE(a.contains("dsn") && b.contains("dsn"));
  EXPECT_NE(a["port"], b["port"]);
  const std::string ca = daemon_->ContainerOnPort(a["port"]), cb = daemon_->ContainerOnPort(b["port"]);
  ASSERT_FALSE(ca.empty());
  ASSERT_FALSE(cb.empty());
  EXPECT_NE(ca, cb);

  pg::Connection x = Connect(a), y = Connect(b);
  x.Exec("INSERT INTO item (name) VALUES ('only in a')");
  EXPECT_EQ(std::string(y.Exec("SELECT count(*) FROM item WHERE name = 'only in a'").Get(0, 0)), "0");
  EXPECT_EQ(std::string(x.Exec("SELECT count(*) FROM item").Get(0, 0)), "2");
  // A lease's credentials open its own database only: not the other container's, not `postgres`.
  pg::ConnInfo other = pg::ConnInfo::Parse(a["dsn"]);
  other.Set("port", std::to_string(b["port"].get<int>()));
  EXPECT_THROW(pg::Connection::Open(other), Error);
  pg::ConnInfo maintenance = pg::ConnInfo::Parse(a["dsn"]);
  maintenance.Set("dbname", "postgres");
  EXPECT_THROW(pg::Connection::Open(maintenance), Error);
  // Nor the template (inside every container), template1, or the control database (on the
  // daemon's own server).
  for (const std::string& db : std::vector<std::string>{t["database"].get<std::string>(), "template1"}) {
    pg::ConnInfo other_db = pg::ConnInfo::Parse(a["dsn"]);
    other_db.Set("dbname", db);
    EXPECT_THROW(pg::Connection::Open(other_db), Error) << db;
  }
  pg::ConnInfo control = pg::ConnInfo::Parse(a["dsn"]);
  control.Set("host", "127.0.0.1").Set("port", daemon_->ControlPort()).Set("dbname", "testpool");
  EXPECT_THROW(pg::Connection::Open(control), Error);
  daemon_->Release(a["id"]);
  daemon_->Release(b["id"]);
}

TEST_F(DockerPoolTest, RecycleKeepsTheContainerRunningAndRestoresTheTemplateState) {
  json t = Template("recycle", 1, 1);
  const std::string name = t["name"];
  json first = daemon_->Lease(name);
  const std::string container = daemon_->ContainerOnPort(first["port"]);
  ASSERT_FALSE(container.empty());
  const std::string started = StartedAt(container);
  {
    pg::Connection c = Connect(first);
    c.Exec("INSERT INTO item (name) VALUES ('written by the first lease')");
    c.Exec("CREATE TABLE scratch (x int)");
  }
  const uint64_t cloned = daemon_->Counter("recycles_cloned"), skipped = daemon_->Counter("recycles_skipped");
  daemon_->Release(first["id"]);

  // The pool has one slot: the next lease waits for its recycle and gets the same container.
  json second = daemon_->Lease(name);
  EXPECT_EQ(second["port"], first["port"]);
  EXPECT_EQ(daemon_->ContainerOnPort(second["port"]), container);
  EXPECT_EQ(StartedAt(container), started) << "the container was restarted";
  EXPECT_NE(second["user"], first["user"]);
  EXPECT_GT(daemon_->Counter("recycles_cloned"), cloned);
  {
    pg::Connection c = Connect(second);
    EXPECT_EQ(std::string(c.Exec("SELECT string_agg(name, ',') FROM item").Get(0, 0)), "template row");
    EXPECT_EQ(c.Exec("SELECT 1 FROM pg_tables WHERE tablename = 'scratch'").rows(), 0);
    EXPECT_EQ(std::string(c.Exec("SELECT nextval('item_id_seq')").Get(0, 0)), "2");
  }
  daemon_->Release(second["id"]);
  // Only read: skipped (the nextval above wrote a sequence, so one more clean round trip).
  json third = daemon_->Lease(name);
  daemon_->Release(third["id"]);
  json fourth = daemon_->Lease(name);
  { Connect(fourth).Exec("SELECT count(*) FROM item"); }
  daemon_->Release(fourth["id"]);
  EXPECT_TRUE(Eventually([&] { return daemon_->Counter("recycles_skipped") > skipped; }, 30s));
  EXPECT_EQ(StartedAt(container), started);
}

TEST_F(DockerPoolTest, RollbackModeResetsAndRecyclesInsideTheContainer) {
  json t = Template("rollback", 1, 1, "rollback");
  const std::string name = t["name"];
  ASSERT_TRUE(daemon_->WaitReady(name, 1));
  auto containers = daemon_->Containers({{"testpool.template", name}});
  ASSERT_EQ(containers.size(), 1u);
  const std::string container = containers[0].id, started = StartedAt(container);
  const uint64_t rolled_back = daemon_->Counter("recycles_rolled_back");

  json lease = daemon_->Lease(name);
  // The DSN points at the wire proxy, not at the container's server.
  EXPECT_NE(std::to_string(lease["port"].get<int>()), containers[0].labels.at("testpool.port"));
  {
    pg::Connection c = Connect(lease);
    c.Exec("INSERT INTO item (name) VALUES ('rolled back')");
    EXPECT_EQ(std::string(c.Exec("SELECT count(*) FROM item").Get(0, 0)), "2");
    auto r = daemon_->Send("POST", "/v1/leases/" + lease["id"].get<std::string>() + "/reset");
    ASSERT_TRUE(r && r->status == 200) << (r ? r->body : "");
    EXPECT_EQ(std::string(c.Exec("SELECT count(*) FROM item").Get(0, 0)), "1");
    c.Exec("INSERT INTO item (name) VALUES ('rolled back at release')");
  }
  daemon_->Release(lease["id"]);
  EXPECT_TRUE(Eventually([&] { return daemon_->Counter("recycles_rolled_back") > rolled_back; }, 30s));
  json next = daemon_->Lease(name);
  {
    pg::Connection c = Connect(next);
    EXPECT_EQ(std::string(c.Exec("SELECT count(*) FROM item").Get(0, 0)), "1");
  }
  daemon_->Release(next["id"]);
  EXPECT_EQ(StartedAt(container), started) << "the container was restarted";
}

TEST_F(DockerPoolTest, AContainerKilledUnderALeaseIsReplacedAndItsHolderToldOnRenew) {
  json t = Template("killed", 1, 2);
  const std::string name = t["name"];
  json lease = daemon_->Lease(name);
  const std::string container = daemon_->ContainerOnPort(lease["port"]);
  ASSERT_FALSE(container.empty());
  Engine().StopContainer(container, 0s);  // SIGKILL at once

  const std::string renew = "/v1/leases/" + lease["id"].get<std::string>() + "/renew";
  int status = 0;
  std::string body;
  ASSERT_TRUE(Eventually([&] {
    auto r = daemon_->Send("POST", renew, {{"ttl_s", 600}});
    status = r ? r->status : 0;
    body = r ? r->body : "";
    return status == 410;
  }, 30s)) << status << " " << body << daemon_->d().Log();
  json error = json::parse(body, nullptr, false);
  EXPECT_EQ(error["error"]["code"], "lease_expired");
  EXPECT_THAT(error["error"]["message"].get<std::string>(), HasSubstr("lost"));
  // The dead container is gone and the pool is whole again, from new containers.
  EXPECT_TRUE(Eventually([&] {
    auto list = daemon_->Containers({{"testpool.template", name}}, /*all=*/true);
    bool dead_gone = std::none_of(list.begin(), list.end(), [&](const auto& c) { return c.id == container; });
    return dead_gone && daemon_->Pool(name)["ready"].get<int>() >= 1;
  }, 60s)) << daemon_->d().Log();
  json again = daemon_->Lease(name);
  { EXPECT_EQ(std::string(Connect(again).Exec("SELECT count(*) FROM item").Get(0, 0)), "1"); }
  daemon_->Release(again["id"]);
}

TEST_F(DockerPoolTest, AContainerNoSlotOwnsIsRemovedWhileTheDaemonRuns) {
  json t = Template("sweep", 1, 1);
  const std::string name = t["name"];
  ASSERT_TRUE(daemon_->WaitReady(name, 1));
  const std::string owned = daemon_->Containers({{"testpool.template", name}}).at(0).id;
  backend::DockerContainerSpec orphan;
  orphan.image = BaseImage();
  orphan.cmd = {"sleep", "600"};
  orphan.labels = {{"testpool.owner", daemon_->owner()}, {"testpool.role", "slot"}, {"testpool.slot", "orphan01"}};
  const std::string orphan_id = Engine().CreateContainer(orphan);
  Engine().StartContainer(orphan_id);
  // The sweep runs every 30 s.
  EXPECT_TRUE(Eventually([&] {
    auto list = daemon_->Containers({{"testpool.slot", "orphan01"}}, /*all=*/true);
    return list.empty();
  }, 75s)) << daemon_->d().Log();
  EXPECT_EQ(Engine().InspectContainer(owned).status, "running");
}

TEST_F(DockerPoolTest, DroppingATemplateRemovesItsContainersAndThenItsImage) {
  json t = Template("dropped", 3, 3);
  const std::string name = t["name"], hash = t["hash"];
  ASSERT_TRUE(daemon_->WaitReady(name, 3));
  auto r = daemon_->Send("DELETE", "/v1/templates/" + name);
  ASSERT_TRUE(r && r->status < 300) << (r ? r->body : "no answer");
  // The containers go in the background; the image, which they run, goes after the last of them.
  EXPECT_TRUE(Eventually([&] {
    return daemon_->Containers({{"testpool.template", name}}, /*all=*/true).empty() &&
           !Engine().InspectImage(backend::DockerBackend::TemplateImage(name, hash)).has_value();
  }, 60s)) << daemon_->d().Log();
}

TEST(DockerBackend, TemplateImageIsBuiltOncePerHashAndReusedAcrossRestarts) {
  const std::string name = Fresh("once");
  const std::string sql = std::string("-- ") + name + "\n" + kSchema;
  std::string hash, image_id;
  {
    DockerDaemon d;
    json first = d.Put(name, sql, 0, 1);
    hash = first["hash"];
    EXPECT_TRUE(first["built"].get<bool>());
    auto image = Engine().InspectImage(backend::DockerBackend::TemplateImage(name, hash));
    ASSERT_TRUE(image.has_value());
    image_id = image->id;
    EXPECT_FALSE(d.Put(name, sql, 0, 1)["built"].get<bool>());
    ASSERT_EQ(d.Terminate(), 0);
    d.Start();  // same state directory: same control database
    EXPECT_FALSE(d.Put(name, sql, 0, 1)["built"].get<bool>());
    // Leases work from the kept image.
    d.Put(name, sql, 1, 1);
    json lease = d.Lease(name);
    { EXPECT_EQ(std::string(Connect(lease).Exec("SELECT count(*) FROM item").Get(0, 0)), "1"); }
  }
  {
    DockerDaemon other;  // another state directory: the image is adopted, not rebuilt
    EXPECT_FALSE(other.Put(name, sql, 0, 1)["built"].get<bool>());
  }
  EXPECT_EQ(Engine().InspectImage(backend::DockerBackend::TemplateImage(name, hash))->id, image_id);
}

TEST(DockerBackend, AfterSigkillTheRestartAdoptsItsContainersAndRemovesOrphans) {
  DockerDaemon d;
  const std::string name = Fresh("sigkill");
  d.Put(name, std::string("-- ") + name + "\n" + kSchema, 2, 3);
  ASSERT_TRUE(d.WaitReady(name, 2));
  json lease = d.Lease(name);
  { Connect(lease).Exec("INSERT INTO item (name) VALUES ('kept across the restart')"); }
  std::set<std::string> before;
  for (const auto& c : d.Containers()) before.insert(c.id);

  d.Kill();
  // An orphan: a container with the owner's labels that no slot row owns.
  backend::DockerContainerSpec orphan;
  orphan.image = BaseImage();
  orphan.cmd = {"sleep", "600"};
  orphan.labels = {{"testpool.owner", d.owner()}, {"testpool.role", "slot"}, {"testpool.slot", "orphan00"}};
  const std::string orphan_id = Engine().CreateContainer(orphan);
  Engine().StartContainer(orphan_id);

  d.Start();
  ASSERT_TRUE(Eventually([&] {
    auto list = d.Containers({}, /*all=*/true);
    return std::none_of(list.begin(), list.end(), [&](const auto& c) { return c.id == orphan_id; });
  }, 30s)) << d.d().Log();
  // The lease survived with its data; once the pool settles (two ready beside the lease), every
  // container is one a slot row owns, and the reverse.
  ASSERT_TRUE(d.WaitReady(name, 2));
  { EXPECT_EQ(std::string(Connect(lease).Exec("SELECT count(*) FROM item").Get(0, 0)), "2"); }
  std::set<std::string> after, labelled_slots;
  for (const auto& c : d.Containers()) {
    after.insert(c.id);
    labelled_slots.insert(c.labels.at("testpool.slot"));
  }
  for (const std::string& id : before) EXPECT_TRUE(after.count(id)) << "container " << id << " was not adopted";
  std::set<std::string> rows;
  pg::Connection control = d.Control();
  pg::Result r = control.Exec("SELECT id FROM slots");
  for (int i = 0; i < r.rows(); ++i) rows.insert(std::string(r.Get(i, 0)));
  EXPECT_EQ(labelled_slots, rows);
  d.Release(lease["id"]);
  ASSERT_EQ(d.Terminate(), 0);
  EXPECT_TRUE(d.Containers({}, /*all=*/true).empty()) << "a clean shutdown leaves no container";
}

TEST(DockerBackend, KeepLeavesTheContainersForTheNextStartToAdopt) {
  DockerDaemon d({"--keep"});
  const std::string name = Fresh("keep");
  d.Put(name, std::string("-- ") + name + "\n" + kSchema, 1, 1);
  ASSERT_TRUE(d.WaitReady(name, 1));
  auto kept = d.Containers();
  ASSERT_EQ(kept.size(), 1u);
  ASSERT_EQ(d.Terminate(), 0);
  auto still = d.Containers();
  ASSERT_EQ(still.size(), 1u);
  EXPECT_EQ(still[0].id, kept[0].id);
  const std::string started = StartedAt(kept[0].id);

  d.SetExtra({});
  d.Start();
  ASSERT_TRUE(d.WaitReady(name, 1));
  json lease = d.Lease(name);
  EXPECT_EQ(d.ContainerOnPort(lease["port"]), kept[0].id);
  EXPECT_EQ(StartedAt(kept[0].id), started);
  d.Release(lease["id"]);
  ASSERT_EQ(d.Terminate(), 0);
  EXPECT_TRUE(d.Containers({}, /*all=*/true).empty());
}

TEST(DockerBackend, AnUnreachableEngineStopsTheDaemonAtStartWithAClearError) {
  testing::TempDir state;
  std::filesystem::permissions(state.path(), std::filesystem::perms(0755));
  CliResult r = testing::RunCli({"serve", "--backend", "docker", "--state-dir", state.path().string(), "--listen",
                                 "127.0.0.1:0"},
                                {{"DOCKER_HOST", "unix://" + (state.path() / "no-such-docker.sock").string()}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("cannot reach the Docker engine"));
  EXPECT_THAT(r.err, HasSubstr("no-such-docker.sock"));
}

TEST(DockerBackend, AMissingImageStopsTheDaemonAtStartSayingHowToBuildIt) {
  testing::TempDir state;
  std::filesystem::permissions(state.path(), std::filesystem::perms(0755));
  CliResult r = testing::RunCli({"serve", "--backend", "docker", "--state-dir", state.path().string(), "--listen",
                                 "127.0.0.1:0", "--docker-image", "testpool/no-such-image:1"},
                                {{"DOCKER_HOST", EngineHost()}});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no image 'testpool/no-such-image:1'"));
  EXPECT_THAT(r.err, HasSubstr("build-base-image.sh"));
}

}  // namespace
}  // namespace testpool
