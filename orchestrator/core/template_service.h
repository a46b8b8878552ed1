// Templates as the API sees them: define (PUT), inspect, list, drop.
//
// Put() validates and hashes a spec; when that hash is ready it only points the name at it.
// Otherwise it starts a build job on a thread of its own — or joins the job already running for
// that hash, so N concurrent requests make one build — and either waits for it or returns at
// once, leaving the caller to watch Progress(). A job's progress (phase, file i of n, each file's
// time) is kept in memory after it ends, for whoever polls.
//
// Thread-safe. The destructor waits for running builds to finish.
#pragma once

#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/template_builder.h"

namespace testpool::core {

struct BuildStep {
  std::string file;
  double ms = 0;
};

// A snapshot of one build job.
struct BuildProgress {
  std::string name;
  std::string hash;
  std::string state;  // "waiting" (for another process' build lock), "building", "ready", "failed"
  int step = 0;       // files applied so far
  int of = 0;         // files in all
  std::vector<BuildStep> steps;
  bool built = false;       // when ready: this job ran the build (false: it found it built)
  double build_ms = 0;
  std::string error_json;   // when failed: {"code","message","details"}
};

struct PutOutcome {
  std::string hash;
  std::string database;
  std::string state;  // "ready" or, when not waiting, "building"
  bool built = false; // a build ran for this request
  double build_ms = 0;
};

class TemplateService {
 public:
  TemplateService(ControlStore& store, TemplateBuilder& builder);
  ~TemplateService();
  TemplateService(const TemplateService&) = delete;
  TemplateService& operator=(const TemplateService&) = delete;

  // Validates `spec` (throws Error kInvalidName/kInvalidArgument), then as described above.
  // With `wait`, returns once the build ended and rethrows its Error (kMigrationFailed, …).
  PutOutcome Put(TemplateSpec spec, bool wait);

  // The last job for `name` (running or ended) since this daemon started, if any.
  std::optional<BuildProgress> Progress(const std::string& name) const;

  // Drops a template: every hash's database and row (old_only: all but the current hash).
  // Throws Error(kNotFound) for an unknown name, Error(kConflict) while one of its builds runs.
  // Returns the databases dropped.
  std::vector<std::string> Drop(const std::string& name, bool old_only);

  // ---- templates their client builds (the IntegreSQL API) -------------------------------------
  // The database and the credentials a client builds template (name, hash) with.
  struct ClientBuild {
    std::string database, role, password;
  };
  // Starts a client build of (name, hash) on the control server: a build row in state "building"
  // (its one "migration" is `label`, naming where it came from, with no SQL) and a database the
  // client owns (TemplateBuilder::BeginClientBuild). nullopt, and nothing done, when (name, hash)
  // is building or ready already: someone else initialises it, or it is built. Errors as
  // TemplateBuilder::BeginClientBuild (the row is then marked failed).
  std::optional<ClientBuild> BeginClientBuild(const std::string& name, const std::string& hash, const std::string& label);
  // Seals a client build (TemplateBuilder::FinishClientBuild), marks it ready, points the name at
  // it with `pool`'s settings, and tells the listener (its pool warms). A build that is ready
  // already: nothing to do. kNotFound when (name, hash) has no build row, kConflict when it failed.
  void FinishClientBuild(const std::string& name, const std::string& hash, const PoolConfig& pool);
  // Drops a client build that was never finalised: its database, its role and its build row.
  // Idempotent.
  void AbandonClientBuild(const std::string& name, const std::string& hash);
  // What template hashes depend on besides their files (TemplateBuilder::ServerIdentity).
  std::string ServerIdentity() { return builder_.ServerIdentity(); }
  // The role a client build of `hash` runs as ("tp_i_" and the hash's first 12 digits).
  static std::string ClientBuildRole(const std::string& hash);

  ControlStore& store() { return store_; }

  // Told whenever a hash of a template becomes its current, ready one (after a build, or when a
  // PUT finds it built), and when a template is dropped. Set once, before the first Put().
  struct Listener {
    virtual ~Listener() = default;
    virtual void TemplateReady(const std::string& name, const std::string& hash, const std::string& database,
                               const PoolConfig& pool) = 0;
    virtual void TemplateDropped(const std::string& name) = 0;
  };
  void SetListener(Listener* listener) { listener_ = listener; }

 private:
  struct Job {
    mutable std::mutex mu;
    std::condition_variable done_cv;
    BuildProgress progress;           // guarded by mu
    bool done = false;                // guarded by mu
    std::exception_ptr error;         // guarded by mu
    std::string database;             // guarded by mu
  };

  void RunJob(std::shared_ptr<Job> job, TemplateSpec spec);
  PutOutcome Wait(const std::shared_ptr<Job>& job);

  ControlStore& store_;
  TemplateBuilder& builder_;
  Listener* listener_ = nullptr;  // set before use; not owned

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> running_;  // by hash; guarded by mu_
  std::map<std::string, std::shared_ptr<Job>> last_;     // by name; guarded by mu_
  int active_ = 0;                  // build threads still running; guarded by mu_
  std::condition_variable idle_cv_; // signalled when active_ drops to 0
  std::mutex client_finish_mu_;     // one FinishClientBuild at a time: the second finds it ready
};

}  // namespace testpool::core
