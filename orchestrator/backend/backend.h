// Where PostgreSQL servers come from. The seam between core/ and the outside world's servers:
// `local` runs initdb/postgres itself, `external` uses a server given by DSN, and `docker`
// runs a container per slot. core/ only ever sees this interface.
//
// Thread safety: Start() and Stop() are called by one thread (the daemon's main thread);
// AdminConnInfo()/ClientConnInfo() may be called from any thread after Start() returned.
#pragma once

#include <string_view>

#include "orchestrator/backend/slot_servers.h"
#include "orchestrator/pg/conninfo.h"

namespace testpool::backend {

class Backend {
 public:
  virtual ~Backend() = default;

  // "local", "external", …
  virtual std::string_view Kind() const = 0;

  // Makes the server available and returns once it accepts connections as superuser.
  // local: runs initdb on first use, then starts (or adopts an already running) postgres and
  // supervises it. external: connects once to check the DSN and superuser rights.
  // Throws Error(kBackend) when the server cannot be made available (initdb or postgres failed,
  // binaries missing), Error(kUnavailable) when it cannot be reached, with a message that says
  // what to do.
  virtual void Start() = 0;

  // Undoes Start(): local stops its postgres with a fast shutdown and waits for it; external does
  // nothing. Idempotent; never throws.
  virtual void Stop() noexcept = 0;

  // Superuser connection parameters for this server (no dbname set: callers add theirs).
  // Valid after Start().
  virtual pg::ConnInfo AdminConnInfo() const = 0;

  // host and port that test workers use to reach this server; what handed-out DSNs contain.
  // Valid after Start().
  virtual pg::ConnInfo ClientConnInfo() const = 0;

  // Lowers the CPU priority of the server process serving one of our sessions (`server_pid`, its
  // pg_backend_pid()), for sessions that do background work (clones, recycles): on a busy machine
  // they then yield to the sessions on the lease path. local: setpriority() on that process;
  // others cannot reach the server's processes and do nothing. Never throws; failure is harmless.
  virtual void Deprioritize(int server_pid) const noexcept { (void)server_pid; }

  // Backends that give each slot a server of its own (docker) return them here; then the server
  // above (AdminConnInfo) only holds the control database. Shared-server backends: nullptr.
  virtual SlotServers* slot_servers() { return nullptr; }
};

}  // namespace testpool::backend
