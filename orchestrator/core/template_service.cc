#include "orchestrator/core/template_service.h"

#include <nlohmann/json.hpp>

#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::core {

TemplateService::TemplateService(ControlStore& store, TemplateBuilder& builder) : store_(store), builder_(builder) {}

TemplateService::~TemplateService() {
  // Build threads are detached and use `this` until they end: wait for them.
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return active_ == 0; });
}

PutOutcome TemplateService::Put(TemplateSpec spec, bool wait) {
  ValidateSpec(&spec);
  const std::string hash = TemplateHash(spec, builder_.ServerIdentity());

  // Already built: point the name at it (its pool settings may have changed) and answer.
  if (auto row = store_.FindBuild(spec.name, hash); row && row->state == "ready") {
    BuildOutcome outcome = builder_.Ensure(spec, hash, nullptr);  // verifies the database exists
    store_.SetCurrent(spec, hash);
    if (listener_) listener_->TemplateReady(spec.name, hash, outcome.database, spec.pool);
    return PutOutcome{hash, outcome.database, "ready", outcome.built, outcome.build_ms};
  }

  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = running_.find(hash);
    if (it != running_.end()) {
      job = it->second;
    } else {
      job = std::make_shared<Job>();
      job->progress.name = spec.name;
      job->progress.hash = hash;
      job->progress.state = "building";
      job->progress.of = static_cast<int>(spec.migrations.size() + spec.seed.size());
      job->database = TemplateDatabaseName(spec.name, hash);
      running_[hash] = job;
      ++active_;
      std::thread(&TemplateService::RunJob, this, job, std::move(spec)).detach();
    }
    last_[job->progress.name] = job;
  }
  if (wait) return Wait(job);
  std::lock_guard<std::mutex> lock(job->mu);
  return PutOutcome{hash, job->database, job->done ? job->progress.state : "building", job->progress.built,
                    job->progress.build_ms};
}

PutOutcome TemplateService::Wait(const std::shared_ptr<Job>& job) {
  std::unique_lock<std::mutex> lock(job->mu);
  job->done_cv.wait(lock, [&] { return job->done; });
  if (job->error) std::rethrow_exception(job->error);
  return PutOutcome{job->progress.hash, job->database, "ready", job->progress.built, job->progress.build_ms};
}

void TemplateService::RunJob(std::shared_ptr<Job> job, TemplateSpec spec) {
  const std::string hash = job->progress.hash;
  auto progress = [&job](const BuildEvent& e) {
    std::lock_guard<std::mutex> lock(job->mu);
    switch (e.kind) {
      case BuildEvent::Kind::kWaitingForLock: job->progress.state = "waiting"; break;
      case BuildEvent::Kind::kStarted: job->progress.state = "building"; break;
      case BuildEvent::Kind::kFileDone:
        job->progress.step = e.index;
        job->progress.steps.push_back(BuildStep{e.file, e.ms});
        break;
      case BuildEvent::Kind::kFinishing: break;
    }
  };
  std::exception_ptr error;
  BuildOutcome outcome;
  try {
    outcome = builder_.Ensure(spec, hash, progress);
    store_.SetCurrent(spec, hash);
    if (listener_) listener_->TemplateReady(spec.name, hash, outcome.database, spec.pool);
  } catch (const Error&) {
    error = std::current_exception();
  } catch (const std::exception& e) {
    error = std::make_exception_ptr(Error(ErrorCode::kInternal, std::string("template build failed: ") + e.what()));
  }
  {
    // Leave the running set before anyone is told the build ended: a caller that drops the
    // template right after its Put() returned must not find the build still "running".
    std::lock_guard<std::mutex> lock(mu_);
    running_.erase(hash);
  }
  {
    std::lock_guard<std::mutex> lock(job->mu);
    job->done = true;
    job->error = error;
    if (error) {
      job->progress.state = "failed";
      try {
        std::rethrow_exception(error);
      } catch (const Error& e) {
        nlohmann::json j = {{"code", ErrorCodeName(e.code())}, {"message", e.what()}};
        for (const auto& [k, v] : e.details()) j["details"][k] = v;
        job->progress.error_json = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
      }
    } else {
      job->progress.state = "ready";
      job->progress.built = outcome.built;
      job->progress.build_ms = outcome.build_ms;
      job->progress.step = job->progress.of;
    }
  }
  job->done_cv.notify_all();
  std::lock_guard<std::mutex> lock(mu_);
  if (--active_ == 0) idle_cv_.notify_all();
}

std::optional<BuildProgress> TemplateService::Progress(const std::string& name) const {
  std::shared_ptr<Job> job;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = last_.find(name);
    if (it == last_.end()) return std::nullopt;
    job = it->second;
  }
  std::lock_guard<std::mutex> lock(job->mu);
  return job->progress;
}

std::vector<std::string> TemplateService::Drop(const std::string& name, bool old_only) {
  std::vector<TemplateBuildRow> builds = store_.ListBuilds(name);
  if (builds.empty()) throw Error(ErrorCode::kNotFound, "no template named '" + name + "'");
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const TemplateBuildRow& b : builds) {
      if (running_.count(b.hash)) {
        throw Error(ErrorCode::kConflict, "template '" + name + "' is being built; drop it when the build ends");
      }
    }
  }
  // Pools first: they stop leasing and warming before the databases they clone from go away.
  if (!old_only && listener_) listener_->TemplateDropped(name);
  std::vector<std::string> dropped;
  for (const TemplateBuildRow& b : builds) {
    if (old_only && b.current) continue;
    builder_.DropTemplate(name, b.hash, b.database);
    if (old_only) store_.DeleteBuild(name, b.hash);
    dropped.push_back(b.database);
  }
  if (!old_only) {
    store_.DeleteTemplate(name);
    std::lock_guard<std::mutex> lock(mu_);
    last_.erase(name);
  }
  log::Info("template.dropped", {{"template", name}, {"databases", std::to_string(dropped.size())},
                                 {"old_only", old_only ? "true" : "false"}});
  return dropped;
}

std::string TemplateService::ClientBuildRole(const std::string& hash) { return "tp_i_" + hash.substr(0, 12); }

namespace {
TemplateSpec ClientSpec(const std::string& name, const std::string& label, const PoolConfig& pool) {
  TemplateSpec spec;
  spec.name = name;
  spec.migrations.push_back(SqlFile{label, ""});
  spec.pool = pool;
  spec.recycle = RecycleModeName(pool.recycle);
  return spec;
}
}  // namespace

std::optional<TemplateService::ClientBuild> TemplateService::BeginClientBuild(const std::string& name,
                                                                              const std::string& hash,
                                                                              const std::string& label) {
  const std::string database = TemplateDatabaseName(name, hash);
  if (!store_.BeginClientBuild(ClientSpec(name, label, PoolConfig{}), hash, database)) return std::nullopt;
  ClientBuild build{database, ClientBuildRole(hash), util::RandomToken(20)};
  try {
    builder_.BeginClientBuild(build.database, build.role, build.password);
  } catch (const Error& e) {
    nlohmann::json j = {{"code", ErrorCodeName(e.code())}, {"message", e.what()}};
    store_.MarkFailed(name, hash, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    throw;
  }
  log::Info("template.client_build_begun", {{"template", name}, {"hash", hash.substr(0, 12)}, {"database", database}});
  return build;
}

void TemplateService::AbandonClientBuild(const std::string& name, const std::string& hash) {
  builder_.AbandonClientBuild(TemplateDatabaseName(name, hash), ClientBuildRole(hash));
  store_.DeleteBuild(name, hash);
  log::Info("template.client_build_abandoned", {{"template", name}, {"hash", hash.substr(0, 12)}});
}

void TemplateService::FinishClientBuild(const std::string& name, const std::string& hash, const PoolConfig& pool) {
  std::lock_guard<std::mutex> finishing(client_finish_mu_);
  std::optional<TemplateBuildRow> row = store_.FindBuild(name, hash);
  if (!row) throw Error(ErrorCode::kNotFound, "template '" + name + "' is not being built by its client");
  if (row->state == "failed") throw Error(ErrorCode::kConflict, "the client build of template '" + name + "' failed");
  if (row->state == "building") {
    double ms = builder_.FinishClientBuild(row->database, ClientBuildRole(hash));
    store_.MarkReady(name, hash, ms);
  }
  TemplateSpec spec = ClientSpec(name, "", pool);
  store_.SetCurrent(spec, hash);
  if (listener_) listener_->TemplateReady(name, hash, row->database, pool);
}

}  // namespace testpool::core
