#include "orchestrator/core/fault_points.h"

#include <csignal>
#include <cstdio>
#include <type_traits>
#include <unistd.h>

#include "orchestrator/pg/error.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::core {

const std::vector<std::string> kFaultPoints = {
    // SlotWork
    "clone_database", "prepare_role", "hand_over", "cut_off", "counters", "end_sessions", "sequence_digest",
    "unchanged", "drop_database", "drop_role", "list_databases", "list_roles",
    // PoolRows
    "insert_warming", "mark_ready", "set_state", "delete_slot", "grant", "end_lease", "renew", "forget_baseline",
    "load_slots", "load_active_leases", "find_lease", "expire_stray_leases", "pooled_templates", "take_ownership",
    "release_ownership"};

namespace {

bool KnownPoint(const std::string& point) {
  for (const char* suffix : {".before", ".after"}) {
    const std::string_view s(suffix);
    if (point.size() > s.size() && point.compare(point.size() - s.size(), s.size(), s) == 0) {
      const std::string method = point.substr(0, point.size() - s.size());
      for (const std::string& m : kFaultPoints) {
        if (m == method) return true;
      }
    }
  }
  return false;
}

[[noreturn]] void Crash(const std::string& point) {
  log::Error("fault.crash", {{"point", point}, {"pid", std::to_string(::getpid())}});
  std::fflush(nullptr);
  ::raise(SIGKILL);
  std::_Exit(137);  // not reached
}

}  // namespace

std::shared_ptr<FaultPlan> FaultPlan::Parse(std::string_view spec) {
  auto plan = std::make_shared<FaultPlan>();
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    if (comma == std::string_view::npos) comma = spec.size();
    const std::string rule(spec.substr(start, comma - start));
    start = comma + 1;
    if (rule.empty()) continue;
    const size_t eq = rule.find('=');
    const auto bad = [&](const std::string& why) {
      return Error(ErrorCode::kInvalidArgument, "fault rule '" + rule + "': " + why +
                                                    " (expected <point>=fail|crash[@<n>|@*])");
    };
    if (eq == std::string::npos) throw bad("no '='");
    const std::string point = rule.substr(0, eq);
    std::string action = rule.substr(eq + 1);
    int nth = 1;
    if (const size_t at = action.find('@'); at != std::string::npos) {
      const std::string n = action.substr(at + 1);
      action.resize(at);
      if (n == "*") {
        nth = 0;
      } else {
        if (n.empty() || n.size() > 6 || n.find_first_not_of("0123456789") != std::string::npos) {
          throw bad("the call number must be 1 to 999999 or *");
        }
        nth = std::stoi(n);
        if (nth < 1) throw bad("the call number must be 1 to 999999 or *");
      }
    }
    Action a;
    if (action == "fail") {
      a = Action::kFail;
    } else if (action == "crash") {
      a = Action::kCrash;
    } else {
      throw bad("unknown action '" + action + "'");
    }
    if (!KnownPoint(point)) throw bad("unknown point '" + point + "'");
    plan->Add(point, a, nth);
  }
  return plan;
}

void FaultPlan::Add(const std::string& point, Action action, int nth) {
  if (!KnownPoint(point)) throw Error(ErrorCode::kInvalidArgument, "unknown fault point '" + point + "'");
  std::lock_guard<std::mutex> lock(mu_);
  rules_[point] = Rule{action, nth};
}

void FaultPlan::Clear() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
}

bool FaultPlan::empty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rules_.empty();
}

int FaultPlan::Count(const std::string& point) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = counts_.find(point);
  return it == counts_.end() ? 0 : it->second;
}

void FaultPlan::Hit(const std::string& point) {
  Action action;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const int n = ++counts_[point];
    auto it = rules_.find(point);
    if (it == rules_.end() || (it->second.nth != 0 && it->second.nth != n)) return;
    action = it->second.action;
  }
  if (action == Action::kCrash) Crash(point);
  log::Warn("fault.fail", {{"point", point}});
  throw pg::PgError("injected fault at " + point, pg::ServerDiagnostics{}, /*connection_lost=*/true);
}

namespace {

// Runs `call` between the points "<name>.before" and "<name>.after".
template <typename Call>
auto Around(FaultPlan& plan, const char* name, Call&& call) {
  const std::string n(name);
  plan.Hit(n + ".before");
  if constexpr (std::is_void_v<decltype(call())>) {
    call();
    plan.Hit(n + ".after");
  } else {
    auto result = call();
    plan.Hit(n + ".after");
    return result;
  }
}

class FaultyWork final : public SlotWork {
 public:
  FaultyWork(std::shared_ptr<SlotWork> inner, std::shared_ptr<FaultPlan> plan)
      : in_(std::move(inner)), plan_(std::move(plan)) {}

  void CloneDatabase(const std::string& db, const std::string& template_db) override {
    Around(*plan_, "clone_database", [&] { in_->CloneDatabase(db, template_db); });
  }
  void PrepareRole(const std::string& db, const std::string& role, const std::string& password) override {
    Around(*plan_, "prepare_role", [&] { in_->PrepareRole(db, role, password); });
  }
  void HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                const std::string& password) override {
    Around(*plan_, "hand_over", [&] { in_->HandOver(db, old_role, role, password); });
  }
  void CutOff(const std::string& role) override {
    Around(*plan_, "cut_off", [&] { in_->CutOff(role); });
  }
  std::string Counters(const std::string& db) override {
    return Around(*plan_, "counters", [&] { return in_->Counters(db); });
  }
  void EndSessions(const std::string& db) override {
    Around(*plan_, "end_sessions", [&] { in_->EndSessions(db); });
  }
  std::string SequenceDigest(const std::string& db) override {
    return Around(*plan_, "sequence_digest", [&] { return in_->SequenceDigest(db); });
  }
  bool Unchanged(const std::string& db, const WriteMarks& baseline) override {
    return Around(*plan_, "unchanged", [&] { return in_->Unchanged(db, baseline); });
  }
  void DropDatabase(const std::string& db) override {
    Around(*plan_, "drop_database", [&] { in_->DropDatabase(db); });
  }
  void DropRole(const std::string& role) override {
    Around(*plan_, "drop_role", [&] { in_->DropRole(role); });
  }
  std::vector<std::string> ListDatabases(const std::string& prefix) override {
    return Around(*plan_, "list_databases", [&] { return in_->ListDatabases(prefix); });
  }
  std::vector<std::string> ListRoles(const std::string& prefix) override {
    return Around(*plan_, "list_roles", [&] { return in_->ListRoles(prefix); });
  }

 private:
  const std::shared_ptr<SlotWork> in_;
  const std::shared_ptr<FaultPlan> plan_;
};

class FaultyRows final : public PoolRows {
 public:
  FaultyRows(std::shared_ptr<PoolRows> inner, std::shared_ptr<FaultPlan> plan)
      : in_(std::move(inner)), plan_(std::move(plan)) {}

  void InsertWarming(const SlotRow& slot) override {
    Around(*plan_, "insert_warming", [&] { in_->InsertWarming(slot); });
  }
  void MarkReady(const SlotRow& slot) override {
    Around(*plan_, "mark_ready", [&] { in_->MarkReady(slot); });
  }
  void SetState(const std::string& slot_id, const std::string& state) override {
    Around(*plan_, "set_state", [&] { in_->SetState(slot_id, state); });
  }
  void Delete(const std::string& slot_id) override {
    Around(*plan_, "delete_slot", [&] { in_->Delete(slot_id); });
  }
  void Grant(const LeaseRow& lease) override {
    Around(*plan_, "grant", [&] { in_->Grant(lease); });
  }
  void End(const std::string& lease_id, const std::string& slot_id, LeaseState how) override {
    Around(*plan_, "end_lease", [&] { in_->End(lease_id, slot_id, how); });
  }
  void Renew(const std::string& lease_id, util::WallTime expires_at) override {
    Around(*plan_, "renew", [&] { in_->Renew(lease_id, expires_at); });
  }
  void ForgetBaseline(const std::string& slot_id) override {
    Around(*plan_, "forget_baseline", [&] { in_->ForgetBaseline(slot_id); });
  }
  std::vector<SlotRow> LoadSlots() override {
    return Around(*plan_, "load_slots", [&] { return in_->LoadSlots(); });
  }
  std::vector<LeaseRow> LoadActiveLeases() override {
    return Around(*plan_, "load_active_leases", [&] { return in_->LoadActiveLeases(); });
  }
  std::optional<LeaseRow> FindLease(const std::string& lease_id) override {
    return Around(*plan_, "find_lease", [&] { return in_->FindLease(lease_id); });
  }
  void ExpireStrayLeases() override {
    Around(*plan_, "expire_stray_leases", [&] { in_->ExpireStrayLeases(); });
  }
  std::vector<PooledTemplate> PooledTemplates() override {
    return Around(*plan_, "pooled_templates", [&] { return in_->PooledTemplates(); });
  }
  bool TakeOwnership() override {
    return Around(*plan_, "take_ownership", [&] { return in_->TakeOwnership(); });
  }
  void ReleaseOwnership() override {
    Around(*plan_, "release_ownership", [&] { in_->ReleaseOwnership(); });
  }

 private:
  const std::shared_ptr<PoolRows> in_;
  const std::shared_ptr<FaultPlan> plan_;
};

}  // namespace

PoolIo WithFaults(PoolIo io, std::shared_ptr<FaultPlan> plan) {
  PoolIo out;
  out.rows = std::make_shared<FaultyRows>(std::move(io.rows), plan);
  if (io.shared) out.shared = std::make_shared<FaultyWork>(std::move(io.shared), plan);
  if (io.work_for) {
    out.work_for = [inner = std::move(io.work_for), plan](const pg::ConnInfo& server) -> std::shared_ptr<SlotWork> {
      return std::make_shared<FaultyWork>(inner(server), plan);
    };
  }
  return out;
}

}  // namespace testpool::core
