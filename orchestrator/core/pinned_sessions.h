// The seam between the pool manager and the wire proxy, for slots whose template recycles in
// `rollback` mode (savepoint mode).
//
// In that mode a slot has one *pinned session*: a server connection, held by the proxy, inside
// one transaction opened while the slot warms (BEGIN, the sequences' values recorded, a base
// savepoint). A lease on such a slot gets a DSN that points at the proxy; every client connection
// of the lease is served over the pinned session, so nothing the lease does is ever committed.
// Resetting rolls back to the base savepoint and restores the sequences (about a millisecond);
// ending the lease rolls the whole transaction back, and the slot is ready again without a clone.
//
// The server login of a pinned session is the slot's role with a password only the daemon knows;
// clients authenticate to the proxy with the lease's own password instead, so a lease's DSN never
// reaches the server directly (no write can bypass the pinned transaction).
//
// Implemented by proxy::Proxy; core only sees this interface. Every method is thread-safe and may
// be called from any thread; Pin, Reset and Release block until the proxy has done the work.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace testpool::core {

class PinnedSessions {
 public:
  virtual ~PinnedSessions() = default;

  struct Target {
    std::string slot_id;
    std::string database;  // the slot's database
    std::string role;      // the server login: the slot's current role …
    std::string password;  // … and its server-side password (never handed to clients)
    // The slot's own server (backends with a server per slot); empty host: the proxy's server.
    std::string host;
    int port = 0;
  };
  // Opens the slot's pinned session (replacing any previous one of the slot, which is closed).
  // Throws Error(kUnavailable) when the server cannot be reached or refuses the login,
  // Error(kInternal) on an unexpected answer.
  virtual void Pin(const Target& target) = 0;

  // Lets a lease's clients in: from now on a client that connects to the proxy as `user` to the
  // slot's database with `password` is served by the slot's pinned session. In memory only (fast:
  // called on the lease handout path). Throws Error(kUnavailable) when the slot has no healthy
  // pinned session.
  virtual void Admit(const std::string& slot_id, const std::string& lease_id, const std::string& user,
                     const std::string& password) = 0;

  // Puts the slot's database back in the template's state (`to` empty) or in the state saved as
  // checkpoint `to`, in place: rolls back to that savepoint, restores the sequences, releases
  // advisory locks; the checkpoints saved after it are gone (all of them for the template); open
  // client connections stay connected (a client caught inside a transaction finds it aborted).
  // Returns how long it took. Throws Error(kNotFound) when the slot has no pinned session or no
  // such checkpoint, Error(kUnavailable) when the session was lost (the lease's data is gone;
  // the slot will be recycled by clone), Error(kTimeout) when a client's statement kept the
  // session busy past the reset's wait.
  virtual std::chrono::microseconds Reset(const std::string& slot_id, const std::string& to) = 0;

  // Saves the slot's committed state as checkpoint `name` (a savepoint inside the pinned
  // transaction, and the sequences' values); a name taken already is replaced and the
  // checkpoints after it forgotten. Waits for a transaction a client has open to end. Returns how
  // long it took. Throws as Reset does (kTimeout: a client kept a transaction open past the wait).
  virtual std::chrono::microseconds Checkpoint(const std::string& slot_id, const std::string& name) = 0;

  // Ends the lease's use of the slot: its client connections are closed (each told why), the
  // sequences restored and the whole transaction rolled back, and the pinned session closed.
  // Returns true when the database is back in the template's state (the session stayed healthy
  // to the end): the slot needs no clone. False: recycle by clone. Never throws. A slot without a
  // session returns false.
  virtual bool Release(const std::string& slot_id) = 0;

  // Where clients connect: the proxy's TCP host and port.
  virtual std::string host() const = 0;
  virtual int port() const = 0;

  struct Stats {
    uint64_t sessions = 0;             // pinned sessions open now
    uint64_t client_connections = 0;   // client connections open now
    uint64_t connections_total = 0;    // accepted and authenticated since start
    uint64_t connections_refused = 0;  // failed authentication, unknown lease, bad start-up
    uint64_t sessions_lost = 0;        // pinned sessions whose server connection died
  };
  virtual Stats stats() const = 0;
};

}  // namespace testpool::core
