// One client of the chaos driver (bench/chaos_bench.cc), run as a process of its own so that the
// driver can SIGKILL it mid-lease. It loops until SIGTERM:
//   POST /v1/templates/{template}/leases (holder "chaos-<id>")
//   → connect to the lease's DSN → the chaos_marker table must hold no row of another lease (only
//     the template's seed row) → INSERT its own marker (lease id, client id, fencing token) → read
//     it back: exactly one marker, its own → now and then renew the lease → hold it a random moment
//     → its marker must still be there (a daemon restarted meanwhile kept the lease)
//   → close the connection → DELETE /v1/leases/{id} (retried until 204).
// Every grant, renew, end of use, release, expected error and violation is one line in its event
// log (chaos_log.h); the driver checks them across clients afterwards (chaos_check.h).
//
// Expected failures — the daemon or its PostgreSQL down or restarting, a 503 — are logged as
// errors by kind and retried with a short, capped, jittered back-off. Violations are logged and
// the client goes on: a foreign marker in a freshly leased database, a marker that does not read
// back, a lease whose credentials are refused (or whose database is gone) before it ended, a renew
// answered "expired" within the lease's TTL.
//
// SIGTERM (and SIGINT) only set a flag: the lease in hand is finished and released first, so a
// stop takes at most about wait_s plus one release. The client dies with its driver
// (PR_SET_PDEATHSIG). The process is single-threaded.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

namespace testpool::bench::chaos {

// The table every chaos template holds, and the one row its seed puts there.
inline constexpr const char* kMarkerTable = "chaos_marker";
inline constexpr const char* kSeedLease = "seed";

struct ClientOptions {
  int id = 0;
  int port = 0;                        // the daemon's HTTP port on 127.0.0.1 (kept across restarts)
  std::string template_name;
  std::filesystem::path log;           // the event log, appended to
  std::chrono::seconds ttl{15};        // ttl_s of every lease and renew
  std::chrono::seconds wait{20};       // wait_s of every lease request
  std::chrono::milliseconds max_hold{100};  // a lease is held 0…max_hold after its marker is verified
  int renew_every = 8;                 // every n-th lease is renewed once (0: never)
  int driver_pid = 0;                  // the process that started this one
};

// Runs the loop above until SIGTERM or SIGINT; returns the process's exit code (0; 2 when the
// event log cannot be opened).
int RunClient(const ClientOptions& options);

}  // namespace testpool::bench::chaos
