#include "orchestrator/integresql/service.h"

#include <algorithm>
#include <vector>

#include "orchestrator/core/slot_store.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

namespace testpool::integresql {
namespace {

constexpr size_t kMaxHashBytes = 1024;
constexpr const char* kNamePrefix = "isql_";
constexpr const char* kHolder = "integresql";  // the holder of every lease this service hands out

void CheckHash(const std::string& hash) {
  if (hash.empty()) throw Error(ErrorCode::kInvalidArgument, "hash is required");
  if (hash.size() > kMaxHashBytes) {
    throw Error(ErrorCode::kInvalidArgument, "hash longer than " + std::to_string(kMaxHashBytes) + " bytes");
  }
}

// testpool's hash of an IntegreSQL template: what it is built from is the client's business, so
// the client's hash stands for the files, on this server build.
std::string TestpoolHash(const std::string& hash, const std::string& server) {
  util::Sha256 h;
  h.UpdateFramed("integresql");
  h.UpdateFramed(server);
  h.UpdateFramed(hash);
  return h.HexDigest();
}

// 30 bits of the slot's id (RandomToken: [a-z2-7], 5 bits a character) as a non-negative int:
// what the clients' int (Go, .NET) and number (JS) hold.
int TestId(const std::string& slot_id) {
  int id = 0;
  for (size_t i = 0; i < 6 && i < slot_id.size(); ++i) {
    char c = slot_id[i];
    int v = (c >= 'a' && c <= 'z') ? c - 'a' : (c >= '2' && c <= '7') ? 26 + (c - '2') : 0;
    id = (id << 5) | v;
  }
  return id;
}

std::string Key(const std::string& name, int id) { return name + "/" + std::to_string(id); }

}  // namespace

Service::Service(core::TemplateService& templates, core::PoolManager& pools, const backend::Backend& backend,
                 Options options)
    : templates_(templates), pools_(pools), backend_(backend), options_(options) {}

Service::~Service() { Stop(); }

void Service::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (monitor_.joinable()) return;
  stop_ = false;
  Adopt();
  monitor_ = std::thread(&Service::Monitor, this);
}

// Called with mu_ held, before the monitor runs.
void Service::Adopt() {
  const auto steady_now = std::chrono::steady_clock::now();
  const auto wall_now = std::chrono::system_clock::now();
  std::map<std::string, Use> sessions;
  std::vector<core::LeaseRow> rows;
  try {
    rows = core::SlotStore(templates_.store()).LoadActiveLeases();
    sessions = SessionsPerDatabase();
  } catch (const Error& e) {
    log::Error("integresql.adopt_failed", {{"error", e.what()}});
    return;
  }
  for (const core::LeaseRow& row : rows) {
    if (row.holder != kHolder || row.template_name.rfind(kNamePrefix, 0) != 0) continue;
    core::LeaseInfo lease;
    try {
      lease = pools_.GetLease(row.id);
    } catch (const Error& e) {
      log::Warn("integresql.adopt_skipped", {{"lease", row.id}, {"error", e.what()}});
      continue;
    }
    // Whether it was used before the restart is unknown: it is treated as handed out unused
    // whose TTL is what is left of its lease's, so it is taken back no earlier than the lease
    // would have ended by itself, and earlier only once a session came and went.
    const auto left = std::chrono::duration_cast<std::chrono::steady_clock::duration>(row.expires_at - wall_now);
    Handed& h = handed_[Key(row.template_name, TestId(row.slot_id))];
    h.name = row.template_name;
    h.lease_id = row.id;
    h.database = lease.database;
    h.handed_at = h.renewed_at = steady_now + left - options_.unused_ttl;
    h.last_connected = steady_now;
    h.used = false;
    h.sessions_at_handout = sessions[lease.database].sessions;
    log::Info("integresql.test_adopted", {{"template", row.template_name},
                                          {"id", std::to_string(TestId(row.slot_id))},
                                          {"lease", row.id},
                                          {"database", lease.database}});
  }
}

void Service::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  changed_.notify_all();
  if (monitor_.joinable()) monitor_.join();
}

std::string Service::TemplateName(const std::string& hash) {
  CheckHash(hash);
  util::Sha256 h;
  h.Update(hash);
  return kNamePrefix + h.HexDigest().substr(0, 16);
}

DatabaseConfig Service::Initialize(const std::string& hash) {
  const std::string name = TemplateName(hash);
  const std::string tp_hash = TestpoolHash(hash, templates_.ServerIdentity());
  std::optional<core::TemplateService::ClientBuild> build =
      templates_.BeginClientBuild(name, tp_hash, "integresql:" + hash);
  if (!build) throw Refused(423, "template is already initialized");
  {
    std::lock_guard<std::mutex> lock(mu_);
    discarded_.erase(hash);
  }
  const pg::ConnInfo client = backend_.ClientConnInfo();
  log::Info("integresql.initialized", {{"template", name}, {"database", build->database}});
  return DatabaseConfig{client.Get("host"), std::atoi(client.Get("port").c_str()), build->role, build->password,
                        build->database};
}

void Service::Finalize(const std::string& hash) {
  const std::string name = TemplateName(hash);
  templates_.FinishClientBuild(name, TestpoolHash(hash, templates_.ServerIdentity()), options_.pool);
  changed_.notify_all();
  log::Info("integresql.finalized", {{"template", name}});
}

void Service::Discard(const std::string& hash) {
  const std::string name = TemplateName(hash);
  std::optional<core::TemplateBuildRow> row = templates_.store().FindBuild(name, TestpoolHash(hash, templates_.ServerIdentity()));
  if (!row) throw Error(ErrorCode::kNotFound, "template not found");
  if (row->state == "building") {
    templates_.AbandonClientBuild(name, row->hash);
  } else {
    templates_.Drop(name, false);  // its pool first: waiting leases wake, handed-out ones end at release
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    discarded_[hash] = name;
    finalized_.erase(name);
    for (auto it = handed_.begin(); it != handed_.end();) {
      it = it->second.name == name ? handed_.erase(it) : std::next(it);
    }
  }
  changed_.notify_all();
  log::Info("integresql.discarded", {{"template", name}});
}

void Service::DiscardAll() {
  std::vector<std::string> hashes;
  for (const std::string& name : templates_.store().ListNames()) {
    if (name.rfind(kNamePrefix, 0) != 0) continue;
    for (const core::TemplateBuildRow& b : templates_.store().ListBuilds(name)) {
      if (b.state == "building") {
        templates_.AbandonClientBuild(name, b.hash);
      }
    }
    try {
      templates_.Drop(name, false);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound) throw;
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  handed_.clear();
  finalized_.clear();
  changed_.notify_all();
}

TestDatabase Service::GetTestDatabase(const std::string& hash, std::function<bool()> abandoned) {
  const std::string name = TemplateName(hash);
  const std::string tp_hash = TestpoolHash(hash, templates_.ServerIdentity());
  const auto deadline = std::chrono::steady_clock::now() + options_.finalize_wait;
  // Wait for the finalize: a client that got 423 on initialise asks before the winner finalised.
  // Once seen finalised, a name is remembered (until discarded): handouts then cost no lookup.
  bool finalized = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (discarded_.count(hash)) throw Refused(410, "template was just discarded");
    finalized = finalized_.count(name) > 0;
  }
  for (bool logged = false; !finalized; logged = true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (discarded_.count(hash)) throw Refused(410, "template was just discarded");
    }
    std::optional<core::TemplateBuildRow> row = templates_.store().FindBuild(name, tp_hash);
    if (!row) throw Error(ErrorCode::kNotFound, "template not found");
    if (row->state == "ready") {
      std::lock_guard<std::mutex> lock(mu_);
      if (!discarded_.count(hash)) finalized_.insert(name);
      break;
    }
    if (row->state == "failed") throw Error(ErrorCode::kConflict, "template could not be finalized");
    if (!logged) log::Info("integresql.awaiting_finalize", {{"template", name}});
    if (abandoned && abandoned()) throw Error(ErrorCode::kTimeout, "the client went away");
    std::unique_lock<std::mutex> lock(mu_);
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(ErrorCode::kTimeout, "template was not finalized within " +
                                           std::to_string(options_.finalize_wait.count()) + " s");
    }
    changed_.wait_for(lock, std::chrono::milliseconds(200));
  }
  core::LeaseRequest request;
  request.template_name = name;
  request.ttl = options_.unused_ttl;
  request.wait = options_.lease_wait;
  request.holder = kHolder;
  request.abandoned = std::move(abandoned);
  // A finalize marks the build ready a moment before its pool is configured: until then the pool
  // answers kNotFound, which here only means "not yet".
  core::LeaseInfo lease;
  for (;;) {
    try {
      lease = pools_.Acquire(request);
      break;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound || std::chrono::steady_clock::now() >= deadline) throw;
    }
    // Dropped behind this API's back (DELETE /v1/templates/{name}): not found, and forgotten.
    if (!templates_.store().FindBuild(name, tp_hash)) {
      std::lock_guard<std::mutex> lock(mu_);
      finalized_.erase(name);
      throw Error(ErrorCode::kNotFound, "template not found");
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (discarded_.count(hash)) throw Refused(410, "template was just discarded");
    changed_.wait_for(lock, std::chrono::milliseconds(20));
  }
  const int id = TestId(lease.slot_id);
  int64_t sessions_at_handout = 0;
  try {
    sessions_at_handout = SessionsOf(lease.database).sessions;
  } catch (const Error& e) {
    log::Warn("integresql.sessions_unread", {{"lease", lease.id}, {"error", e.what()}});
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Handed& h = handed_[Key(name, id)];
    h.name = name;
    h.lease_id = lease.id;
    h.database = lease.database;
    h.handed_at = h.last_connected = h.renewed_at = std::chrono::steady_clock::now();
    h.used = false;
    h.sessions_at_handout = sessions_at_handout;
  }
  log::Info("integresql.test_handed_out",
            {{"template", name}, {"id", std::to_string(id)}, {"lease", lease.id}, {"database", lease.database}});
  return TestDatabase{id, DatabaseConfig{lease.host, lease.port, lease.user, lease.password, lease.database}};
}

void Service::Return(const std::string& hash, int id, bool recreate) {
  const std::string name = TemplateName(hash);
  Handed h;
  bool out = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = handed_.find(Key(name, id));
    if (it != handed_.end()) {
      h = it->second;
      out = true;
    }
  }
  if (!out) {
    if (!templates_.store().FindBuild(name, TestpoolHash(hash, templates_.ServerIdentity()))) {
      throw Error(ErrorCode::kNotFound, "template not found");
    }
    return;  // back already (returned, or taken back)
  }
  if (SessionsOf(h.database).connected > 0) throw Refused(423, "test database is in use");
  {
    std::lock_guard<std::mutex> lock(mu_);
    handed_.erase(Key(name, id));
  }
  if (recreate) pools_.Reset(h.lease_id);  // re-cloned now unless nothing was written
  pools_.Release(h.lease_id);
  log::Info(recreate ? "integresql.test_recreated" : "integresql.test_returned",
            {{"template", name}, {"id", std::to_string(id)}, {"lease", h.lease_id}});
}

size_t Service::Outstanding() const {
  std::lock_guard<std::mutex> lock(mu_);
  return handed_.size();
}

// Connected: the lease roles' sessions (not the daemon's own). Ever used: the database's session
// count, which a session too short for any poll to see still raises when it ends. The catalog
// functions, not the pg_stat_* views: those join more than this needs (a few ms a call).
Service::Use Service::SessionsOf(const std::string& database) {
  auto conn = templates_.store().Connect();
  pg::Result r = conn->Exec(
      "SELECT (SELECT count(*) FROM pg_stat_get_activity(NULL) a JOIN pg_roles r ON r.oid = a.usesysid "
      "WHERE a.datid = d.oid AND r.rolname LIKE 'tp\\_r\\_%'), pg_stat_get_db_sessions(d.oid) "
      "FROM pg_database d WHERE d.datname = $1",
      {database});
  if (r.rows() == 0) return Use{};
  return Use{std::atoi(std::string(r.Get(0, 0)).c_str()), std::atoll(std::string(r.Get(0, 1)).c_str())};
}

std::map<std::string, Service::Use> Service::SessionsPerDatabase() {
  std::map<std::string, Use> out;
  auto conn = templates_.store().Connect();
  pg::Result r = conn->Exec(
      "SELECT d.datname, count(r.oid), pg_stat_get_db_sessions(d.oid) FROM pg_database d "
      "LEFT JOIN pg_stat_get_activity(NULL) a ON a.datid = d.oid "
      "LEFT JOIN pg_roles r ON r.oid = a.usesysid AND r.rolname LIKE 'tp\\_r\\_%' "
      "WHERE d.datname LIKE 'tp\\_s\\_%' GROUP BY d.oid, d.datname");
  for (int i = 0; i < r.rows(); ++i) {
    out[std::string(r.Get(i, 0))] = Use{std::atoi(std::string(r.Get(i, 1)).c_str()),
                                        std::atoll(std::string(r.Get(i, 2)).c_str())};
  }
  return out;
}

void Service::TakeBack(const std::string& key, const Handed& h, const char* why) {
  try {
    pools_.Release(h.lease_id);
    log::Info("integresql.test_taken_back", {{"key", key}, {"lease", h.lease_id}, {"why", why}});
  } catch (const Error& e) {
    log::Error("integresql.take_back_failed", {{"key", key}, {"lease", h.lease_id}, {"error", e.what()}});
  }
}

void Service::Monitor() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    changed_.wait_for(lock, options_.poll);
    if (stop_ || handed_.empty()) continue;
    lock.unlock();
    std::map<std::string, Use> sessions;
    try {
      sessions = SessionsPerDatabase();
    } catch (const Error& e) {
      log::Error("integresql.monitor_failed", {{"error", e.what()}});
      lock.lock();
      continue;
    }
    const auto now = std::chrono::steady_clock::now();
    std::vector<std::pair<std::string, Handed>> back, renew;
    lock.lock();
    for (auto it = handed_.begin(); it != handed_.end();) {
      Handed& h = it->second;
      const Use use = sessions[h.database];
      if (use.sessions > h.sessions_at_handout) h.used = true;
      if (use.connected > 0) {
        h.used = true;
        h.last_connected = now;
        // Renewed well before its TTL runs out: a connected database is never taken back.
        if (now - h.renewed_at >= options_.unused_ttl / 2) {
          h.renewed_at = now;
          renew.emplace_back(it->first, h);
        }
      } else if (h.used && now - h.last_connected >= options_.idle_take_back) {
        back.emplace_back(it->first, h);
        it = handed_.erase(it);
        continue;
      } else if (!h.used && now - h.handed_at >= options_.unused_ttl) {
        back.emplace_back(it->first, h);
        it = handed_.erase(it);
        continue;
      }
      ++it;
    }
    lock.unlock();
    for (const auto& [key, h] : back) TakeBack(key, h, h.used ? "idle" : "never used");
    for (const auto& [key, h] : renew) {
      try {
        pools_.Renew(h.lease_id, options_.unused_ttl);
      } catch (const Error& e) {
        log::Error("integresql.renew_failed", {{"key", key}, {"lease", h.lease_id}, {"error", e.what()}});
      }
    }
    lock.lock();
  }
}

}  // namespace testpool::integresql
