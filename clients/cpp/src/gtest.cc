#include "testpool/gtest.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace testpool::client {
namespace {

Environment* g_instance = nullptr;  // the last AddEnvironment; set before RUN_ALL_TESTS

std::string Getenv(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : "";
}

EnvironmentOptions WithDefaults(EnvironmentOptions o) {
  if (o.template_name.empty()) o.template_name = Getenv("TESTPOOL_TEMPLATE");
  if (o.url.empty()) o.url = DefaultUrl();
  if (o.ttl < std::chrono::seconds(3)) o.ttl = std::chrono::seconds(3);  // renewed every ttl/3: at least 1 s
  return o;
}

}  // namespace

std::string HolderName() {
  std::error_code ec;
  std::string binary = std::filesystem::read_symlink("/proc/self/exe", ec).filename().string();
  if (ec || binary.empty()) binary = "test";
  std::string out = "gtest " + binary + " ";
  const std::string index = Getenv("GTEST_SHARD_INDEX"), total = Getenv("GTEST_TOTAL_SHARDS");
  if (!index.empty() && !total.empty()) out += "shard " + index + "/" + total + " ";
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  out += "pid " + std::to_string(getpid()) + " on " + (host[0] != '\0' ? host : "?");
  return out.substr(0, 200);  // the API's limit
}

Environment::Environment(EnvironmentOptions options)
    : options_(WithDefaults(std::move(options))), holder_(HolderName()) {}

Environment::~Environment() { StopRenewer(); }

Environment* Environment::Instance() { return g_instance; }

Environment* AddEnvironment(EnvironmentOptions options) {
  auto* env = new Environment(std::move(options));
  ::testing::AddGlobalTestEnvironment(env);  // GoogleTest owns it
  g_instance = env;
  return env;
}

void Environment::SetUp() {
  if (options_.template_name.empty()) {
    GTEST_FAIL() << "testpool: no template to lease (set TESTPOOL_TEMPLATE or EnvironmentOptions::template_name)";
  }
  try {
    client_ = std::make_unique<Client>(options_.url);
    lease_ = client_->Acquire(options_.template_name,
                              {.ttl = options_.ttl, .wait = options_.wait, .holder = holder_});
  } catch (const std::exception& e) {
    GTEST_FAIL() << "testpool: cannot lease a database of template '" << options_.template_name << "' from "
                 << options_.url << ": " << e.what();
  }
  leased_ = true;
  dirty_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  renewer_ = std::thread([this] { Renew(); });
}

void Environment::Renew() {
  // Its own client: a renewal never waits behind the main thread's request.
  Client renewing(options_.url);
  const std::string id = lease_.id;  // lease_ is the main thread's; the id never changes
  const auto period = options_.ttl / 3;
  std::unique_lock<std::mutex> lock(mu_);
  while (!wake_.wait_for(lock, period, [this] { return stop_; })) {
    lock.unlock();
    std::string lost;
    bool renewed = false;
    try {
      renewing.Renew(id, options_.ttl);
      renewed = true;
    } catch (const Error& e) {
      // Unreachable: try again next period (the TTL leaves two more). An answer: it has ended.
      if (!e.unreachable()) lost = e.what();
    }
    lock.lock();
    if (renewed) ++renewals_;
    if (!lost.empty()) {
      lost_ = "lease " + id + " could not be renewed: " + lost;
      return;
    }
  }
}

int Environment::renewals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return renewals_;
}

void Environment::StopRenewer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (renewer_.joinable()) renewer_.join();
}

void Environment::TearDown() {
  StopRenewer();
  if (!leased_) return;
  leased_ = false;
  try {
    client_->Release(lease_.id);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "testpool: cannot release lease " << lease_.id << " (it ends by its TTL): " << e.what();
  }
}

const Lease& Environment::Use() {
  if (!leased_) throw Error(0, "no_lease", "testpool: the Environment holds no lease (did its SetUp fail?)");
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lost_.empty()) throw Error(410, "lease_lost", lost_);
  }
  const std::string base = checkpoints_.empty() ? std::string() : checkpoints_.back();
  if (dirty_ || at_ != base) {
    lease_ = client_->Reset(lease_.id, base);
    at_ = base;
    ++resets_;
  }
  dirty_ = true;
  ++uses_;
  return lease_;
}

void Environment::PushCheckpoint(const std::string& name, const std::function<void(PGconn*)>& setup) {
  Use();
  PGconn* c = PQconnectdb(lease_.dsn.c_str());
  if (PQstatus(c) != CONNECTION_OK) {
    std::string why = c != nullptr ? PQerrorMessage(c) : "out of memory";
    PQfinish(c);
    throw std::runtime_error("testpool: cannot connect to leased database " + lease_.database + ": " + why);
  }
  try {
    setup(c);
  } catch (...) {
    PQfinish(c);
    throw;
  }
  PQfinish(c);  // before the checkpoint: clone mode ends the lease's sessions
  client_->Checkpoint(lease_.id, name);
  checkpoints_.push_back(name);
  at_ = name;
  dirty_ = false;
}

void Environment::PopCheckpoint() {
  if (!checkpoints_.empty()) checkpoints_.pop_back();
}

// ---- DatabaseTest --------------------------------------------------------------------------------

DatabaseTest::~DatabaseTest() {
  if (conn_ != nullptr) PQfinish(conn_);
}

void DatabaseTest::SetUp() {
  env_ = Environment::Instance();
  if (env_ == nullptr) {
    GTEST_FAIL() << "testpool: no Environment; call testpool::client::AddEnvironment() before RUN_ALL_TESTS";
  }
  // Its SetUp failed (and said why, once): GoogleTest 1.12 runs the tests anyway; they skip
  // rather than add one more failure each.
  if (!env_->leased()) GTEST_SKIP() << "testpool: no database (the Environment's SetUp failed)";
}

void DatabaseTest::TearDown() {
  if (conn_ != nullptr) PQfinish(conn_);
  conn_ = nullptr;
  lease_ = nullptr;
}

const Lease& DatabaseTest::lease() {
  if (lease_ == nullptr) {
    if (env_ == nullptr) throw Error(0, "no_lease", "testpool: DatabaseTest::SetUp did not run");
    lease_ = &env_->Use();
  }
  return *lease_;
}

PGconn* DatabaseTest::conn() {
  if (conn_ == nullptr) {
    PGconn* c = PQconnectdb(dsn().c_str());
    if (PQstatus(c) != CONNECTION_OK) {
      std::string why = c != nullptr ? PQerrorMessage(c) : "out of memory";
      PQfinish(c);
      throw std::runtime_error("testpool: cannot connect to leased database " + lease().database + ": " + why);
    }
    conn_ = c;
  }
  return conn_;
}

BuildResult DatabaseTest::Build(const std::string& recipe, const BuildOptions& options) {
  const std::string id = lease().id;
  return client().Build(id, recipe, options);
}

Client& DatabaseTest::client() {
  if (env_ == nullptr || !env_->leased()) throw Error(0, "no_lease", "testpool: the Environment holds no lease");
  return env_->client();
}

}  // namespace testpool::client
