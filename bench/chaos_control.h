// The chaos driver's checks of the daemon's final state (bench/chaos_bench.cc), made with the local
// server's superuser connection (daemon_harness.h AdminConnection) once every lease has ended and
// the daemon has restarted (reconciled):
// - orphans: every tp_s_ database and tp_r_ role on the server belongs to a slot row of the control
//   database `testpool`, every tp_tpl_ database to a template build; every slot row's database
//   exists; no active lease lacks its slot (the local backend has no containers to check);
// - leases: none is still active, no slot's fencing token went to two leases, every lease a client
//   heard it was granted has its row; and figures (rows by state, grants nobody heard of, leases
//   released by their client but recorded as expired, leases of killed clients recorded released).
// Throws pg::PgError when the server cannot be read, BenchFailure when its files cannot.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "bench/chaos_check.h"

namespace testpool::bench::chaos {

struct ControlCheck {
  int orphan_databases = 0, orphan_roles = 0, orphan_templates = 0, lost_databases = 0;
  int active_leases = 0, leases_without_slot = 0, shared_tokens = 0, grants_without_row = 0;
  int killed_released = 0, released_recorded_expired = 0;  // figures, not violations
  int64_t rows = 0, rows_released = 0, rows_expired = 0, unheard = 0;
  std::vector<std::string> problems;  // one line each, the first 25
  int Orphans() const { return orphan_databases + orphan_roles + orphan_templates; }
  bool ok() const {
    return Orphans() == 0 && lost_databases == 0 && active_leases == 0 && leases_without_slot == 0 &&
           shared_tokens == 0 && grants_without_row == 0;
  }
};

ControlCheck CheckControlState(const std::filesystem::path& state_dir, const std::vector<ClientHistory>& histories);

}  // namespace testpool::bench::chaos
