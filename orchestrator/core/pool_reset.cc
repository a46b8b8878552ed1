// A lease's database back to a known state in place: Reset (to the template, or to a checkpoint)
// and Checkpoint (save the current state). Clone mode keeps each checkpoint as a database cloned
// from the lease's; rollback mode as a savepoint in the pinned session (pinned_sessions.h).
//
// Server work on a slot is serialised by the slot's `io` mutex, held across the whole operation
// (so two checkpoints or a checkpoint and a reset of one lease never interleave); the results are
// written back under mu while the lease still holds the slot.
#include <algorithm>

#include "orchestrator/core/pool_manager_impl.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::core {
namespace {

void CheckCheckpointName(const std::string& name) {
  const bool ok = !name.empty() && name.size() <= 64 && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
           c == ':' || c == '-';
  });
  if (!ok) {
    throw Error(ErrorCode::kInvalidArgument,
                "a checkpoint name is 1 to 64 of the characters A-Z a-z 0-9 _ . : - (got '" + name.substr(0, 80) + "')");
  }
}

std::vector<Slot::Checkpoint>::iterator FindCheckpoint(Slot& s, const std::string& name) {
  return std::find_if(s.checkpoints.begin(), s.checkpoints.end(),
                      [&](const Slot::Checkpoint& k) { return k.name == name; });
}

std::vector<std::string> Names(const Slot& s) {
  std::vector<std::string> out;
  for (const Slot::Checkpoint& k : s.checkpoints) out.push_back(k.name);
  return out;
}

Error NoCheckpoint(const std::string& lease_id, const std::string& name, const Slot& s) {
  std::string have;
  for (const std::string& n : Names(s)) have += (have.empty() ? "" : ", ") + n;
  return Error(ErrorCode::kNotFound, "lease " + lease_id + " has no checkpoint named '" + name + "' (it has " +
                                         (have.empty() ? std::string("none") : have) +
                                         "; a reset to the template or to an earlier checkpoint drops later ones)");
}

}  // namespace

PoolManager::Impl::LeasedSlot PoolManager::Impl::ForLease(const std::string& lease_id) {
  std::unique_lock<std::mutex> lock(mu);
  auto it = leases.find(lease_id);
  if (it == leases.end()) {
    lock.unlock();
    throw UnknownLease(lease_id);
  }
  if (it->second.state != LeaseState::kActive || ending.count(lease_id)) {
    throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
  }
  LeasedSlot out;
  out.lease = it->second;
  out.slot = slots.at(out.lease.slot_id);
  out.template_db = pools.at(out.slot.pool).template_db;
  out.mode = ModeOf(out.slot);
  return out;
}

std::string PoolManager::Impl::RecloneInPlace(Slot* s, SlotWork& ops, const Slot::Checkpoint& source,
                                              RecycleMode mode) {
  std::string marks;
  try {
    ops.CutOff(s->role);
    ops.DropDatabase(s->database);
    ops.CloneDatabase(s->database, source.database);
    // Before the role logs in again: nothing but the clone is in these marks.
    marks = WriteMarks{ops.Counters(s->database), source.sequences}.Encode();
  } catch (...) {
    // The lease keeps its credentials whatever happened (its database may be gone: its next
    // connection says so, and a reset or the lease's end repairs it).
    try {
      ops.PrepareRole(s->database, s->role, ServerPassword(*s, mode));
    } catch (const std::exception&) {
    }
    throw;
  }
  ops.PrepareRole(s->database, s->role, ServerPassword(*s, mode));
  return marks;
}

void PoolManager::Impl::DropCheckpoints(Slot* s, SlotWork& ops, size_t first) {
  while (s->checkpoints.size() > first) {
    if (!s->checkpoints.back().database.empty()) ops.DropDatabase(s->checkpoints.back().database);
    s->checkpoints.pop_back();
  }
}

void PoolManager::Impl::KeepLeasedResults(const Slot& s, const std::string& lease_id) {
  auto live = slots.find(s.id);
  if (live == slots.end() || live->second.lease_id != lease_id) return;
  live->second.baseline = s.baseline;
  live->second.checkpoints = s.checkpoints;
  live->second.checkpoints_made = s.checkpoints_made;
  live->second.at_checkpoint = s.at_checkpoint;
  live->second.checkpoint_marks = s.checkpoint_marks;
}

LeaseInfo PoolManager::Reset(const std::string& lease_id, const std::string& to) {
  if (!to.empty()) CheckCheckpointName(to);
  std::shared_ptr<std::mutex> io = impl_->ForLease(lease_id).slot.io;
  std::lock_guard<std::mutex> io_lock(*io);
  Impl::LeasedSlot ls = impl_->ForLease(lease_id);  // again, now that no other work on it runs
  Slot& s = ls.slot;
  auto target = FindCheckpoint(s, to);
  if (!to.empty() && target == s.checkpoints.end()) throw NoCheckpoint(lease_id, to, s);
  const size_t keep = to.empty() ? 0 : static_cast<size_t>(target - s.checkpoints.begin()) + 1;

  const util::Stopwatch took;
  RecycleOutcome mode = RecycleOutcome::kClone;
  if (s.pinned && impl_->pinned != nullptr) {
    // Rollback mode: back to the savepoint in place; the clients stay connected.
    mode = RecycleOutcome::kRollback;
    impl_->pinned->Reset(s.id, to);
    s.checkpoints.resize(keep);
  } else {
    std::shared_ptr<SlotWork> ops = impl_->Ops(s);
    // The lease's sessions end first either way (Unchanged ends them, as the re-clone's cut-off
    // does): an open transaction's uncommitted rows, and counters a live session has not reported
    // yet, must not pass for clean. A database nothing was written to since it was made from the
    // state asked for is in that state already: the role and the database stay, no clone.
    const bool same_state = s.at_checkpoint == to;
    const std::string& marks = to.empty() ? s.baseline : s.checkpoint_marks;
    if (same_state && ls.mode == RecycleMode::kClone && ops->Unchanged(s.database, WriteMarks::Decode(marks))) {
      mode = RecycleOutcome::kSkip;
    } else if (to.empty()) {
      ops->CutOff(s.role);
      ops->DropDatabase(s.database);
      impl_->CloneAndPrepare(&s, ls.template_db, ls.mode);  // same credentials
    } else {
      s.checkpoint_marks = impl_->RecloneInPlace(&s, *ops, *target, ls.mode);
    }
    s.at_checkpoint = to;
    if (!to.empty()) s.baseline.clear();
    // Dropped after the database left them: until then a crash finds the slot's row dirty anyway.
    Impl::DropCheckpoints(&s, *ops, keep);
  }
  const double ms = took.ElapsedMs();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->KeepLeasedResults(s, lease_id);
    ++impl_->counters.resets;
    if (mode == RecycleOutcome::kSkip) ++impl_->counters.resets_skipped;
    Observe(&impl_->counters.reset, ms);
  }
  log::Info("lease.reset", {{"lease", lease_id},
                            {"slot", s.id},
                            {"to", to.empty() ? std::string("template") : "checkpoint:" + to},
                            {"mode", ToString(mode)},
                            {"ms", log::Ms(ms)}});
  return ls.lease;
}

CheckpointInfo PoolManager::Checkpoint(const std::string& lease_id, const std::string& name) {
  CheckCheckpointName(name);
  std::shared_ptr<std::mutex> io = impl_->ForLease(lease_id).slot.io;
  std::lock_guard<std::mutex> io_lock(*io);
  Impl::LeasedSlot ls = impl_->ForLease(lease_id);
  Slot& s = ls.slot;
  auto same = FindCheckpoint(s, name);
  const size_t keep = static_cast<size_t>(same - s.checkpoints.begin());  // those before a replaced one
  if (keep >= PoolManager::kMaxCheckpoints) {
    throw Error(ErrorCode::kConflict, "lease " + lease_id + " has " + std::to_string(keep) +
                                          " checkpoints, the most a lease may have; restore an earlier one or "
                                          "reset to the template to drop the later ones");
  }

  const util::Stopwatch took;
  CheckpointInfo info;
  info.lease_id = lease_id;
  info.name = name;
  if (s.pinned && impl_->pinned != nullptr) {
    info.mode = "rollback";
    impl_->pinned->Checkpoint(s.id, name);
    s.checkpoints.resize(keep);
    s.checkpoints.push_back(Slot::Checkpoint{name, "", ""});
  } else {
    info.mode = "clone";
    std::shared_ptr<SlotWork> ops = impl_->Ops(s);
    // From now on the database may differ from the template with nothing written after a
    // restore: the row must never let a recycle (after a restart too) pass it for clean.
    impl_->rows->ForgetBaseline(s.id);
    s.baseline.clear();
    Impl::DropCheckpoints(&s, *ops, keep);
    const std::string database = s.database + "_k" + std::to_string(s.checkpoints_made + 1);
    if (database.size() > 63) {
      throw Error(ErrorCode::kInternal, "checkpoint database name " + database + " is longer than 63 bytes");
    }
    try {
      ops->CutOff(s.role);  // the lease's sessions end: CREATE DATABASE copies an idle database
      ops->CloneDatabase(database, s.database);
      ++s.checkpoints_made;
      const WriteMarks marks{ops->Counters(s.database), ops->SequenceDigest(s.database)};
      s.checkpoints.push_back(Slot::Checkpoint{name, database, marks.sequences});
      s.checkpoint_marks = marks.Encode();
      s.at_checkpoint = name;
    } catch (...) {
      try {
        ops->PrepareRole(s.database, s.role, ServerPassword(s, ls.mode));
      } catch (const std::exception&) {
      }
      std::lock_guard<std::mutex> lock(impl_->mu);
      impl_->KeepLeasedResults(s, lease_id);
      throw;
    }
    ops->PrepareRole(s.database, s.role, ServerPassword(s, ls.mode));
  }
  info.ms = took.ElapsedMs();
  info.checkpoints = Names(s);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->KeepLeasedResults(s, lease_id);
  }
  log::Info("lease.checkpoint", {{"lease", lease_id},
                                 {"slot", s.id},
                                 {"checkpoint", name},
                                 {"mode", info.mode},
                                 {"ms", log::Ms(info.ms)}});
  return info;
}

}  // namespace testpool::core
