#include "orchestrator/core/pool_manager.h"

#include "orchestrator/util/error.h"

namespace testpool::core {

struct PoolManager::Impl {};

namespace {
[[noreturn]] void NotYet() { throw Error(ErrorCode::kInternal, "pools are not implemented yet"); }
}  // namespace

PoolManager::PoolManager(ControlStore&, backend::Backend&, const util::Clock&, PoolOptions) : impl_(std::make_unique<Impl>()) {}
PoolManager::~PoolManager() = default;
void PoolManager::Start() {}
void PoolManager::Stop() {}
void PoolManager::TemplateReady(const std::string&, const std::string&, const std::string&, const PoolConfig&) {}
void PoolManager::TemplateDropped(const std::string&) {}
LeaseInfo PoolManager::Acquire(const LeaseRequest&) { NotYet(); }
LeaseInfo PoolManager::Renew(const std::string&, std::chrono::seconds) { NotYet(); }
void PoolManager::Release(const std::string&) { NotYet(); }
LeaseInfo PoolManager::Reset(const std::string&) { NotYet(); }
LeaseInfo PoolManager::GetLease(const std::string&) { NotYet(); }
ManagerStatus PoolManager::Status() const { return {}; }

}  // namespace testpool::core
