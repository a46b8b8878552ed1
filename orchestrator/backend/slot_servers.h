// Backends whose slots each get a PostgreSQL server of their own — `docker`: one container per
// slot — as opposed to the shared-server backends (`local`, `external`) whose slots are databases
// in one server. core/ reaches it through Backend::slot_servers() and uses it for three things:
//
//   templates  a template hash is built in a server of its own (BeginTemplate) with the same code
//              as on a shared server, then kept as that server's frozen data (docker: an image
//              `testpool/tpl-<name>:<hash12>`), reused for as long as it exists, across restarts;
//   slots      each slot's server starts from its template's data (StartSlot) and holds the
//              template database; the slot's database is cloned inside it and recycled there
//              (re-cloned, skipped, or rolled back) with the very same SlotOps as on a shared
//              server: the server is never restarted for a recycle;
//   ownership  every server carries the owner's mark (docker: labels `testpool.owner`,
//              `testpool.template`, `testpool.hash`, `testpool.slot`), so ListSlots() finds them all
//              after any crash, and whatever no slot row owns is removed.
//
// Thread safety: every method may be called from any thread once the backend has started.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "orchestrator/pg/conninfo.h"

namespace testpool::backend {

// One slot's server as the backend sees it.
struct SlotServer {
  std::string slot_id;
  std::string name;        // the template's name and hash it was started from
  std::string hash;
  std::string container;   // the engine's id
  pg::ConnInfo admin;      // superuser (no dbname): what SlotOps and the template builder use
  pg::ConnInfo client;     // host and port that handed-out DSNs (and the wire proxy) use
  bool running = false;
};

// A server started to build one template hash in. Destroying a site that was not committed
// removes it and everything in it.
class TemplateSite {
 public:
  virtual ~TemplateSite() = default;
  // Superuser conninfo (no dbname) of the build server; it accepts connections.
  virtual pg::ConnInfo admin() const = 0;
  // Stops the build server cleanly and keeps its data as the template of (name, hash) (docker:
  // commits the image). Every connection to it must be closed first. Throws Error(kBackend).
  virtual void Commit() = 0;
};

class SlotServers {
 public:
  virtual ~SlotServers() = default;

  // What a template's hash depends on besides its files: the server build slots run (docker:
  // the base image's id and PostgreSQL major version). Read once; stable while the backend runs.
  virtual std::string ServerIdentity() = 0;

  // True when the template of (name, hash) is kept and can start slots.
  virtual bool HasTemplate(const std::string& name, const std::string& hash) = 0;
  // Starts a fresh build server for (name, hash). Throws Error(kBackend / kUnavailable).
  virtual std::unique_ptr<TemplateSite> BeginTemplate(const std::string& name, const std::string& hash) = 0;
  // Forgets the template of (name, hash) (docker: removes the image — once the last slot server
  // running it is removed, when some still run). Idempotent; HasTemplate() true again cancels it.
  virtual void DropTemplate(const std::string& name, const std::string& hash) = 0;

  // Starts slot `slot_id`'s server from the template of (name, hash) and returns once it accepts
  // connections. Throws Error(kNotFound) when the template is not kept, Error(kBackend /
  // kUnavailable / kTimeout) when the server cannot be started (a container that exits: with the
  // tail of its log).
  virtual SlotServer StartSlot(const std::string& slot_id, const std::string& name, const std::string& hash) = 0;
  // Every slot server of this owner, running or not.
  virtual std::vector<SlotServer> ListSlots() = 0;
  // Stops and removes slot `slot_id`'s server with its data. Idempotent.
  virtual void RemoveSlot(const std::string& slot_id) = 0;
  // Called by the pool manager that owned the slots as it stops: removes every slot server,
  // unless the backend was told to keep them for the next start to adopt. Never throws.
  virtual void Shutdown() = 0;
};

}  // namespace testpool::backend
