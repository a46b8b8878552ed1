// In-memory doors for the pool manager (core/pool_io.h), for its unit tests: no server, no control
// database. MemoryWork keeps the set of databases and roles a server would have (and the peak
// number of slot databases, to check the global cap); MemoryRows keeps slot and lease rows the way
// SlotStore's statements change them. Both are shared between managers, so a test can "restart"
// the daemon on the same state. MemoryBackend is a shared-server backend that serves nothing.
//
// Thread-safe: one mutex per object. Header-only (tests only).
#pragma once

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "orchestrator/backend/backend.h"
#include "orchestrator/core/pool_io.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/error.h"

namespace testpool::testing {

class MemoryWork final : public core::SlotWork {
 public:
  // A template database the pools clone from.
  void AddDatabase(const std::string& db) {
    std::lock_guard<std::mutex> lock(mu_);
    dbs_.insert(db);
  }
  void AddRole(const std::string& role) {
    std::lock_guard<std::mutex> lock(mu_);
    roles_[role] = Role{};
  }
  // A lease wrote to `db`: its counters move.
  void Write(const std::string& db) {
    std::lock_guard<std::mutex> lock(mu_);
    ++writes_[db];
  }
  std::set<std::string> Databases(const std::string& prefix = "tp_s_") const {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> out;
    for (const std::string& d : dbs_) {
      if (d.rfind(prefix, 0) == 0) out.insert(d);
    }
    return out;
  }
  std::set<std::string> Roles(const std::string& prefix = "tp_r_") const {
    std::lock_guard<std::mutex> lock(mu_);
    std::set<std::string> out;
    for (const auto& [r, role] : roles_) {
      if (r.rfind(prefix, 0) == 0) out.insert(r);
    }
    return out;
  }
  // Whether `role` exists and may log in with a password.
  bool CanLogIn(const std::string& role) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = roles_.find(role);
    return it != roles_.end() && it->second.login && !it->second.password.empty();
  }
  // The most slot databases that existed at once.
  int PeakSlotDatabases() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }
  // Real start times of every CloneDatabase call.
  std::vector<util::MonoTime> CloneTimes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return clone_times_;
  }

  // A gate before every CloneDatabase: the next `n` calls wait for one another and then go on
  // together (in flight at once, as when a server goes away under several warms); every later call
  // waits at the gate until OpenClones().
  void GateClones(int n) {
    std::lock_guard<std::mutex> lock(mu_);
    gate_ = n;
    gated_ = true;
  }
  void OpenClones() {
    std::lock_guard<std::mutex> lock(mu_);
    gated_ = false;
    gate_cv_.notify_all();
  }

  void CloneDatabase(const std::string& db, const std::string& template_db) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (gated_ && gate_ > 0) {
      --gate_;
      gate_cv_.notify_all();
      gate_cv_.wait(lock, [&] { return gate_ == 0 || !gated_; });
    } else if (gated_) {
      gate_cv_.wait(lock, [&] { return !gated_; });
    }
    clone_times_.push_back(util::RealMonoNow());
    if (!dbs_.count(template_db)) throw Error(ErrorCode::kInternal, "template " + template_db + " does not exist");
    if (!dbs_.insert(db).second) throw Error(ErrorCode::kInternal, "database " + db + " already exists");
    writes_.erase(db);
    int n = 0;
    for (const std::string& d : dbs_) n += d.rfind("tp_s_", 0) == 0 ? 1 : 0;
    peak_ = std::max(peak_, n);
  }
  void PrepareRole(const std::string& db, const std::string& role, const std::string& password) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dbs_.count(db)) throw Error(ErrorCode::kInternal, "database " + db + " does not exist");
    roles_[role] = Role{true, password, db};
  }
  void HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                const std::string& password) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!roles_.count(old_role) || roles_.count(role)) throw Error(ErrorCode::kInternal, "hand-over refused");
    roles_.erase(old_role);
    roles_[role] = Role{true, password, db};
  }
  void CutOff(const std::string& role) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = roles_.find(role);
    if (it == roles_.end()) return;
    it->second.login = false;
    it->second.password.clear();
  }
  std::string Counters(const std::string& db) override {
    std::lock_guard<std::mutex> lock(mu_);
    return std::to_string(writes_[db]) + ":0:0";
  }
  void EndSessions(const std::string&) override {}
  std::string SequenceDigest(const std::string& db) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!dbs_.count(db)) throw Error(ErrorCode::kInternal, "database " + db + " does not exist");
    return "0000000000000000";
  }
  bool Unchanged(const std::string& db, const core::WriteMarks& baseline) override {
    if (baseline.empty() || Counters(db) != baseline.counters) return false;
    return SequenceDigest(db) == baseline.sequences;
  }
  void DropDatabase(const std::string& db) override {
    std::lock_guard<std::mutex> lock(mu_);
    dbs_.erase(db);
  }
  void DropRole(const std::string& role) override {
    std::lock_guard<std::mutex> lock(mu_);
    roles_.erase(role);
  }
  std::vector<std::string> ListDatabases(const std::string& prefix) override {
    const auto s = Databases(prefix);
    return {s.begin(), s.end()};
  }
  std::vector<std::string> ListRoles(const std::string& prefix) override {
    const auto s = Roles(prefix);
    return {s.begin(), s.end()};
  }

 private:
  struct Role {
    bool login = false;
    std::string password, db;
  };
  mutable std::mutex mu_;
  std::set<std::string> dbs_;
  std::map<std::string, Role> roles_;
  std::map<std::string, int> writes_;
  std::vector<util::MonoTime> clone_times_;
  int peak_ = 0;
  bool gated_ = false;
  int gate_ = 0;  // clones still to arrive before the gathered ones go on together
  std::condition_variable gate_cv_;
};

class MemoryRows final : public core::PoolRows {
 public:
  void AddTemplate(const core::PooledTemplate& t) {
    std::lock_guard<std::mutex> lock(mu_);
    templates_.push_back(t);
  }
  // Rows as they are now (tests).
  std::map<std::string, core::SlotRow> Slots() const {
    std::lock_guard<std::mutex> lock(mu_);
    return slots_;
  }
  std::map<std::string, core::LeaseRow> Leases() const {
    std::lock_guard<std::mutex> lock(mu_);
    return leases_;
  }
  void PutSlot(const core::SlotRow& s) {
    std::lock_guard<std::mutex> lock(mu_);
    slots_[s.id] = s;
  }

  void InsertWarming(const core::SlotRow& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (slots_.count(s.id)) throw Error(ErrorCode::kInternal, "slot " + s.id + " exists");
    core::SlotRow row = s;
    row.state = "warming";
    slots_[s.id] = row;
  }
  void MarkReady(const core::SlotRow& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = slots_.find(s.id);
    if (it == slots_.end()) return;
    core::SlotRow& row = it->second;
    row.state = "ready";
    row.role = s.role;
    row.password = s.password;
    row.baseline = s.baseline;
    row.token = s.token;
    row.lease_id.clear();
  }
  void SetState(const std::string& slot_id, const std::string& state) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = slots_.find(slot_id); it != slots_.end()) it->second.state = state;
  }
  void Delete(const std::string& slot_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    slots_.erase(slot_id);
  }
  void Grant(const core::LeaseRow& l) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (leases_.count(l.id)) throw Error(ErrorCode::kInternal, "lease " + l.id + " exists");
    if (auto it = slots_.find(l.slot_id); it != slots_.end()) {
      it->second.state = "leased";
      it->second.token = l.token;
      it->second.lease_id = l.id;
    }
    leases_[l.id] = l;
    leases_[l.id].state = core::LeaseState::kActive;
  }
  void End(const std::string& lease_id, const std::string& slot_id, core::LeaseState how) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = slots_.find(slot_id); it != slots_.end() && it->second.lease_id == lease_id) {
      it->second.state = "recycling";
      it->second.lease_id.clear();
    }
    auto l = leases_.find(lease_id);
    if (l != leases_.end() && l->second.state == core::LeaseState::kActive) {
      l->second.state = how == core::LeaseState::kLost ? core::LeaseState::kExpired : how;
    }
  }
  void Renew(const std::string& lease_id, util::WallTime expires_at) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = leases_.find(lease_id); it != leases_.end()) it->second.expires_at = expires_at;
  }
  void ForgetBaseline(const std::string& slot_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = slots_.find(slot_id); it != slots_.end()) it->second.baseline.clear();
  }
  std::vector<core::SlotRow> LoadSlots() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<core::SlotRow> out;
    for (const auto& [id, s] : slots_) out.push_back(s);
    return out;
  }
  std::vector<core::LeaseRow> LoadActiveLeases() override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<core::LeaseRow> out;
    for (const auto& [id, l] : leases_) {
      if (l.state == core::LeaseState::kActive) out.push_back(l);
    }
    return out;
  }
  std::optional<core::LeaseRow> FindLease(const std::string& lease_id) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(lease_id);
    if (it == leases_.end()) return std::nullopt;
    return it->second;
  }
  void ExpireStrayLeases() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [id, l] : leases_) {
      if (l.state != core::LeaseState::kActive) continue;
      auto s = slots_.find(l.slot_id);
      if (s == slots_.end() || s->second.state != "leased" || s->second.lease_id != id) {
        l.state = core::LeaseState::kExpired;
      }
    }
  }
  std::vector<core::PooledTemplate> PooledTemplates() override {
    std::lock_guard<std::mutex> lock(mu_);
    return templates_;
  }
  bool TakeOwnership() override {
    std::lock_guard<std::mutex> lock(mu_);
    if (owned_) return false;
    owned_ = true;
    return true;
  }
  void ReleaseOwnership() override {
    std::lock_guard<std::mutex> lock(mu_);
    owned_ = false;
  }

 private:
  mutable std::mutex mu_;
  std::vector<core::PooledTemplate> templates_;
  std::map<std::string, core::SlotRow> slots_;
  std::map<std::string, core::LeaseRow> leases_;
  bool owned_ = false;
};

class MemoryBackend final : public backend::Backend {
 public:
  std::string_view Kind() const override { return "memory"; }
  void Start() override {}
  void Stop() noexcept override {}
  pg::ConnInfo AdminConnInfo() const override { return pg::ConnInfo().Set("host", "memory").Set("port", "1"); }
  pg::ConnInfo ClientConnInfo() const override { return AdminConnInfo(); }
};

}  // namespace testpool::testing
