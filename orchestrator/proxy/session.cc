// Session: internal operations (pin, reset, release), clients coming and going, and who holds the
// server (dispatch, interleaving). Client messages are in session_client.cc, server responses in
// session_server.cc, statement rewriting in session_rewrite.cc.
#include "orchestrator/proxy/session.h"

#include <algorithm>
#include <cstdlib>

#include "orchestrator/proxy/session_internal.h"
#include "orchestrator/util/log.h"

namespace testpool::proxy {

using namespace session_internal;  // NOLINT(google-build-using-namespace): private names of this class

// ---- client state -----------------------------------------------------------------------------

const char* ToString(ClientState s) {
  switch (s) {
    case ClientState::kReady:
      return "Ready";
    case ClientState::kSwitching:
      return "Switching";
    case ClientState::kUnitOpen:
      return "UnitOpen";
    case ClientState::kUnitOpenCopyIn:
      return "UnitOpenCopyIn";
    case ClientState::kInFlight:
      return "InFlight";
    case ClientState::kInFlightCopyIn:
      return "InFlightCopyIn";
    case ClientState::kInterleaved:
      return "Interleaved";
  }
  return "?";
}

// The table of session.h, one case per source state.
bool ClientTransitionAllowed(ClientState from, ClientState to) {
  using S = ClientState;
  switch (from) {
    case S::kReady:
      return to == S::kSwitching || to == S::kUnitOpen || to == S::kInterleaved;
    case S::kSwitching:
      return to == S::kReady;
    case S::kUnitOpen:
      return to == S::kUnitOpenCopyIn || to == S::kInFlight;
    case S::kUnitOpenCopyIn:
      return to == S::kUnitOpen || to == S::kInFlightCopyIn;
    case S::kInFlight:
      return to == S::kInFlightCopyIn || to == S::kReady;
    case S::kInFlightCopyIn:
      return to == S::kInFlight || to == S::kReady;
    case S::kInterleaved:
      return to == S::kReady;
  }
  return false;
}

void CheckClientTransition(ClientState from, ClientState to, uint64_t client) {
  if (ClientTransitionAllowed(from, to)) return;
  log::Error("proxy.client_state_impossible",
             {{"client", std::to_string(client)}, {"from", ToString(from)}, {"to", ToString(to)}});
  std::abort();
}

void Session::SetState(Client& c, ClientState to) {
  CheckClientTransition(c.state, to, c.id);
  c.state = to;
}

void Session::UnitSent(Client& c) {
  if (c.in_flight()) return;
  SetState(c, c.state == ClientState::kUnitOpenCopyIn ? ClientState::kInFlightCopyIn : ClientState::kInFlight);
}

void Session::CopyStarted(Client& c) {
  using S = ClientState;
  // Any other state stays as it is, which the table does not list: SetState aborts.
  SetState(c, c.state == S::kUnitOpen ? S::kUnitOpenCopyIn : c.state == S::kInFlight ? S::kInFlightCopyIn : c.state);
}

void Session::CopyEnded(Client& c) {
  if (c.state == ClientState::kUnitOpenCopyIn) SetState(c, ClientState::kUnitOpen);
  if (c.state == ClientState::kInFlightCopyIn) SetState(c, ClientState::kInFlight);
}

bool Session::Waiting(ClientId id) const {
  return std::any_of(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.client == id; });
}

Session::Session(Options options, Hooks hooks) : options_(std::move(options)), hooks_(std::move(hooks)) {}

Session::Client* Session::Find(ClientId id) {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : &it->second;
}

bool Session::HoldsServer(const Client& c) {
  return c.state != ClientState::kReady || c.tx == Tx::kBlock || c.tx == Tx::kFailed;
}

// ---- internal operations ----------------------------------------------------------------------

void Session::RunInternal(std::string sql, std::string recovery, std::function<void(const InternalResult&)> done) {
  Entry e;
  e.kind = Entry::Kind::kQuery;
  e.done = std::move(done);
  e.recovery = std::move(recovery);
  unnamed_owner_ = 0;  // a simple query drops the unnamed statement
  SendEntry(EncodeQuery(sql), std::move(e));
}

namespace {

// The setval() statements that put every sequence back as kSequencesSql's rows found it; nullopt
// when a row is not what that query returns. Values are the server's own integers (checked), so
// they are spliced as literals.
std::optional<std::string> SequenceRestoreSql(const std::vector<Row>& rows) {
  std::string sql;
  size_t in_select = 0;
  for (const Row& row : rows) {
    if (row.size() != 3 || !row[0] || !row[1] || !IsInteger(*row[0]) || !IsInteger(*row[1]) ||
        (row[2] && !IsInteger(*row[2]))) {
      return std::nullopt;
    }
    sql += in_select == 0 ? "SELECT " : ", ";
    sql += "pg_catalog.setval(" + *row[0] + "::pg_catalog.regclass, " + (row[2] ? *row[2] : *row[1]) + ", " +
           (row[2] ? "true" : "false") + ")";
    if (++in_select == 500) {
      sql += "; ";
      in_select = 0;
    }
  }
  if (in_select > 0) sql += "; ";
  return sql;
}

InternalResult Failed(std::string_view sqlstate, const std::string& message) {
  InternalResult r;
  r.ok = false;
  r.error = MakeFields("ERROR", sqlstate, message);
  return r;
}

}  // namespace

std::optional<std::string> Session::SequencesOf(const InternalResult& r, const char* what,
                                                const std::function<void(const InternalResult&)>& done) {
  if (!r.ok) {
    Break(std::string(what) + ": " + std::string(r.error.Get('M')));
    done(r);
    return std::nullopt;
  }
  std::optional<std::string> restore = SequenceRestoreSql(r.rows);
  if (!restore) {
    Break("unexpected sequence row from the server");
    done(Failed("XX000", "unexpected sequence row from the server"));
  }
  return restore;
}

void Session::Pin(std::function<void(const InternalResult&)> done) {
  Waiter w;
  w.fail = done;
  w.run = [this, done] {
    RunInternal(std::string(kPinSql) + kSequencesSql, "", [this, done](const InternalResult& r) {
      std::optional<std::string> restore = SequencesOf(r, "the pinned transaction could not be opened", done);
      if (!restore) return;
      restore_sql_ = std::move(*restore);
      for (const auto& [name, sql] : kInternalStatements) {
        Entry p;
        p.kind = Entry::Kind::kParse;
        SendEntry(EncodeParse(name, sql, std::string_view("\0\0", 2)), std::move(p));
      }
      Entry sync;
      sync.kind = Entry::Kind::kSync;
      SendEntry(EncodeSync(), std::move(sync));
      RunInternal("SAVEPOINT testpool_i", "", done);
    });
  };
  Enqueue(std::move(w));
}

void Session::Checkpoint(const std::string& name, std::function<void(const InternalResult&)> done) {
  if (broken_) {
    done(Failed("08006", broken_reason_));
    return;
  }
  Waiter w;  // not preempt: a checkpoint records committed work, so it waits for open blocks to end
  w.fail = done;
  w.deadline = Clock::now() + kResetWait;
  w.run = [this, name, done] {
    // testpool_i holds the work of the units since the last checkpoint (or the base): released
    // into the enclosing savepoint, so the new checkpoint's savepoint sits above it. A name taken
    // already is replaced: releasing its savepoint releases every later one too.
    auto same = std::find_if(checkpoints_.begin(), checkpoints_.end(), [&](const Saved& k) { return k.name == name; });
    std::string sql = "RELEASE SAVEPOINT " + (same == checkpoints_.end() ? std::string("testpool_i") : same->savepoint);
    checkpoints_.erase(same, checkpoints_.end());
    const std::string savepoint = "testpool_k" + std::to_string(++savepoints_made_);
    sql += "; SAVEPOINT " + savepoint + "; " + kSequencesSql + "; SAVEPOINT testpool_i";
    stale_ = false;
    RunInternal(std::move(sql), "", [this, name, savepoint, done](const InternalResult& r) {
      std::optional<std::string> restore = SequencesOf(r, "checkpoint failed", done);
      if (!restore) return;
      checkpoints_.push_back(Saved{name, savepoint, std::move(*restore)});
      done(r);
    });
  };
  Enqueue(std::move(w));
}

std::vector<std::string> Session::checkpoints() const {
  std::vector<std::string> out;
  for (const Saved& k : checkpoints_) out.push_back(k.name);
  return out;
}

void Session::Reset(const std::string& to, std::function<void(const InternalResult&)> done) {
  if (broken_) {
    done(Failed("08006", broken_reason_));
    return;
  }
  if (!to.empty() && std::none_of(checkpoints_.begin(), checkpoints_.end(), [&](const Saved& k) { return k.name == to; })) {
    done(Failed("42704", "lease " + options_.lease_id + " has no checkpoint named " + to));
    return;
  }
  Waiter w;
  w.preempt = true;
  w.fail = done;
  w.deadline = Clock::now() + kResetWait;
  w.run = [this, to, done] {
    // Looked up again: a checkpoint queued before this reset may have replaced it.
    auto target = std::find_if(checkpoints_.begin(), checkpoints_.end(), [&](const Saved& k) { return k.name == to; });
    if (!to.empty() && target == checkpoints_.end()) {
      done(Failed("42704", "lease " + options_.lease_id + " has no checkpoint named " + to));
      return;
    }
    const std::string reason = to.empty() ? "testpool reset lease " + options_.lease_id
                                          : "testpool restored lease " + options_.lease_id + " to checkpoint " + to;
    for (auto& [id, c] : clients_) {
      // A block open across the reset is gone with everything else; its client learns it at its
      // next statement, as in an aborted transaction.
      if (c.tx == Tx::kBlock || c.tx == Tx::kFailed) {
        c.tx = c.predicted = Tx::kDiscarded;
        c.discard_reason = reason + " while this transaction was open";
      }
      c.portals.clear();  // portals made since the savepoint are gone
      c.virtual_portals.clear();
    }
    params_of_ = 0;  // settings made since the savepoint are rolled back too
    params_key_.clear();
    params_now_.clear();
    stale_ = false;
    // Back to the savepoint (which stays); the checkpoints above it go with what they saved.
    std::string savepoint = "testpool_base", restore = restore_sql_;
    if (target != checkpoints_.end()) {
      savepoint = target->savepoint;
      restore = target->restore_sql;
      checkpoints_.erase(target + 1, checkpoints_.end());
    } else {
      checkpoints_.clear();
    }
    RunInternal("ROLLBACK TO SAVEPOINT " + savepoint +
                    "; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD SEQUENCES; " + restore +
                    "SAVEPOINT testpool_i",
                "", [this, done](const InternalResult& r) {
                  if (!r.ok) Break("reset failed: " + std::string(r.error.Get('M')));
                  done(r);
                });
  };
  Enqueue(std::move(w));
}

void Session::Release(const std::string& reason, std::function<void(const InternalResult&)> done) {
  released_ = true;
  std::vector<ClientId> ids;
  for (const auto& [id, c] : clients_) ids.push_back(id);
  for (ClientId id : ids) CloseClient(id, "57P01", "terminating connection: " + reason);
  owner_ = 0;
  // Internal operations still queued (a reset) will not run now.
  std::deque<Waiter> dropped;
  dropped.swap(waiters_);
  InternalResult gone;
  gone.ok = false;
  gone.error = MakeFields("ERROR", "57P01", reason);
  for (Waiter& w : dropped) {
    if (w.client == 0 && w.fail) w.fail(gone);
  }
  if (broken_) {
    done(gone);
    return;
  }
  if (!entries_.empty()) hooks_.cancel_server();  // a statement still running: stop it
  Waiter w;
  w.fail = done;
  w.run = [this, done] {
    // After ROLLBACK the sequences are set outside any transaction (setval is not transactional
    // anyway), so even an aborted transaction cannot stop the restore.
    RunInternal("ROLLBACK; " + restore_sql_, "", done);
  };
  Enqueue(std::move(w));
}

// ---- clients ----------------------------------------------------------------------------------

std::string Session::Attach(ClientId id, std::vector<std::pair<std::string, std::string>> params) {
  Client c;
  c.id = id;
  std::sort(params.begin(), params.end());
  for (const auto& [k, v] : params) c.params_key += k + '\x1f' + v + '\x1e';
  c.params = std::move(params);
  std::map<std::string, std::string> reported = server_params_;
  for (const auto& [name, value] : c.params) {
    for (auto& [rname, rvalue] : reported) {
      if (rname.size() == name.size() && std::equal(rname.begin(), rname.end(), name.begin(), [](char a, char b) {
            return std::tolower(a) == std::tolower(b);
          })) {
        rvalue = value;
      }
    }
  }
  std::string out;
  for (const auto& [name, value] : reported) out += EncodeParameterStatus(name, value);
  clients_.emplace(id, std::move(c));
  return out;
}

void Session::Detach(ClientId id) { Leave(id, true); }

void Session::Leave(ClientId id, bool cancel) {
  Client* c = Find(id);
  if (c == nullptr || !c->attached) return;
  c->attached = false;
  c->pending.Clear();
  waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.client == id; }),
                 waiters_.end());
  if (broken_) {
    clients_.erase(id);
    return;
  }
  if (c->copy_in()) {
    hooks_.to_server(EncodeCopyFail("the client disconnected"));
    CopyEnded(*c);
  }
  if (c->unit_open()) {
    // End its half-sent extended unit so the server answers and the cleanup can follow; what
    // the unit did is undone (a server undoes it when the connection ends before the Sync).
    Entry sync;
    sync.kind = Entry::Kind::kSync;
    sync.client = id;
    sync.undo = true;
    hooks_.to_server(EncodeSync());
    entries_.push_back(std::move(sync));
    skip_to_sync_ = false;
    UnitSent(*c);
  }
  if (c->in_flight()) {
    if (cancel) hooks_.cancel_server();  // nobody waits for that result any more
    return;                              // FinishUnit cleans up when the unit's ReadyForQuery arrives
  }
  if (owner_ == id) {
    owner_ = 0;
    internal_owner_ = true;
    Cleanup(id);
    if (entries_.empty()) internal_owner_ = false;
    Dispatch();
    return;
  }
  Waiter w;
  w.run = [this, id] { Cleanup(id); };
  Enqueue(std::move(w));
}

// Rolls back a gone client's block and closes its statements and portals; forgets it. Runs while
// the server is free for it (internal ownership).
void Session::Cleanup(ClientId id) {
  Client* c = Find(id);
  if (c == nullptr) return;
  if (c->tx == Tx::kBlock || c->tx == Tx::kFailed) {
    RunInternal("ROLLBACK TO SAVEPOINT testpool_c; RELEASE SAVEPOINT testpool_c", "", [this](const InternalResult& r) {
      if (!r.ok) Break("rolling back a closed connection's transaction failed: " + std::string(r.error.Get('M')));
    });
  }
  if (!c->statements.empty() || !c->portals.empty()) {
    for (const std::string& s : c->statements) {
      Entry e;
      e.kind = Entry::Kind::kClose;
      SendEntry(EncodeClose('S', ServerName(*c, s)), std::move(e));
    }
    for (const std::string& p : c->portals) {
      Entry e;
      e.kind = Entry::Kind::kClose;
      SendEntry(EncodeClose('P', ServerName(*c, p)), std::move(e));
    }
    Entry sync;
    sync.kind = Entry::Kind::kSync;
    SendEntry(EncodeSync(), std::move(sync));
  }
  if (unnamed_owner_ == id) unnamed_owner_ = 0;
  if (params_of_ == id) params_of_ = 0;  // the parameters stay; their key still says whose
  clients_.erase(id);
}

void Session::CloseClient(ClientId id, std::string_view sqlstate, const std::string& message) {
  if (Find(id) == nullptr) return;
  clients_.erase(id);
  waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.client == id; }),
                 waiters_.end());
  if (owner_ == id) owner_ = 0;
  hooks_.close_client(id, EncodeErrorResponse(MakeFields("FATAL", sqlstate, message)));
}

void Session::DropClient(ClientId id, std::string_view sqlstate, const std::string& message) {
  Client* c = Find(id);
  if (c == nullptr || !c->attached) return;
  hooks_.close_client(id, EncodeErrorResponse(MakeFields("FATAL", sqlstate, message)));
  // No cancel: what it sent before the error is valid and short of a unit's end, and a cancel
  // that lands late would stop whichever statement runs then, perhaps another client's.
  Leave(id, false);
}

size_t Session::PendingBytes(ClientId id) const {
  auto it = clients_.find(id);
  return it == clients_.end() ? 0 : it->second.pending.bytes();
}

void Session::Drop(ClientId id, std::string_view sqlstate, const std::string& message) {
  DropClient(id, sqlstate, message);
}

bool Session::Running(ClientId id) const {
  auto it = clients_.find(id);
  return it != clients_.end() && owner_ == id && it->second.in_flight();
}

void Session::OnClientMessage(ClientId id, const MessageView& m) {
  Client* c = Find(id);
  if (c == nullptr || !c->attached || broken_) return;
  if (m.type == 'X') {
    Detach(id);
    return;
  }
  if (c->skipping) {
    Skip(*c, m.type);
    return;
  }
  c->pending.PushBack(m.raw);
  if (owner_ == id) {
    Pump(*c);
    return;
  }
  if (holder_ == id) return;  // its block is on hold for an interleaved unit: it resumes after it
  if (TryInterleave(*c)) return;
  if (c->tx == Tx::kDiscarded && !c->in_flight()) {
    // Its block was discarded by a reset: answered by the proxy alone, no server needed.
    while (!c->pending.empty() && Find(id) != nullptr) {
      std::string raw = c->pending.PopFront();
      Handle(*c, raw);
      c = Find(id);
      if (c == nullptr || c->tx != Tx::kDiscarded) break;
    }
    if (c == nullptr || c->pending.empty()) return;
  }
  if (!Waiting(id)) {
    c->wait_deadline = Clock::now() + options_.client_wait;
    Waiter w;
    w.client = id;
    Enqueue(std::move(w));
  }
}

void Session::Skip(Client& c, char type) {
  if (type != 'S') return;
  c.skipping = false;
  hooks_.to_client(c.id, EncodeReadyForQuery(c.tx == Tx::kIdle ? 'I' : c.tx == Tx::kBlock ? 'T' : 'E'));
}

void Session::Enqueue(Waiter w) {
  waiters_.push_back(std::move(w));
  Dispatch();
}

void Session::Dispatch() {
  if (broken_ || !entries_.empty() || internal_owner_) return;
  if (owner_ != 0) {
    // A reset may take the server from a client idle inside a block (never from a unit in flight).
    Client* c = Find(owner_);
    bool preempt = std::any_of(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return w.preempt; });
    if (c != nullptr && !preempt && c->state == ClientState::kReady && holder_ == 0) {
      // The owner idles inside a block: statement-only units of waiting clients may still run.
      for (const Waiter& w : waiters_) {
        Client* wc = w.client != 0 ? Find(w.client) : nullptr;
        if (wc != nullptr && TryInterleave(*wc)) return;
      }
    }
    if (c != nullptr && (!preempt || c->state != ClientState::kReady)) return;
    owner_ = 0;
    if (c != nullptr && !c->pending.empty() && !Waiting(c->id)) {
      c->wait_deadline = Clock::now() + options_.client_wait;
      Waiter w;
      w.client = c->id;
      waiters_.push_back(std::move(w));
    }
    // The preempting operation goes first.
    auto it = std::find_if(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return w.preempt; });
    if (it != waiters_.end() && it != waiters_.begin()) {
      Waiter w = std::move(*it);
      waiters_.erase(it);
      waiters_.push_front(std::move(w));
    }
  }
  while (!waiters_.empty() && owner_ == 0 && !internal_owner_ && entries_.empty() && !broken_) {
    Waiter w = std::move(waiters_.front());
    waiters_.pop_front();
    if (w.client == 0) {
      internal_owner_ = true;
      w.run();
      if (entries_.empty()) internal_owner_ = false;
      continue;
    }
    Client* c = Find(w.client);
    if (c == nullptr) continue;
    owner_ = c->id;
    Pump(*c);
  }
}

void Session::ReleaseOwner() {
  owner_ = 0;
  Dispatch();
}

void Session::Pump(Client& c) {
  const ClientId id = c.id;
  Client* cp = &c;
  while (cp != nullptr && !cp->pending.empty() && !broken_ && owner_ == id) {
    if (cp->switching()) return;
    if (cp->in_flight()) {
      char t = cp->pending.front()[0];
      if (!(cp->copy_in() && (t == 'd' || t == 'c' || t == 'f'))) return;
    }
    std::string raw = cp->pending.PopFront();
    Handle(*cp, raw);
    cp = Find(id);
  }
  if (cp != nullptr && owner_ == id && !HoldsServer(*cp) && cp->pending.empty()) {
    ReleaseOwner();
  } else if (cp != nullptr && owner_ == id && !cp->in_unit() && !waiters_.empty()) {
    Dispatch();  // idle inside a block: let waiting statement-only units through
  }
}

// A client whose pending messages are one whole statement-only unit (PQprepare: Parse + Sync)
// need not wait for another client's block: prepared statements are not transactional. It runs
// now, inside a savepoint of its own so an error cannot fail the holder's block, and the holder
// resumes after it.
bool Session::TryInterleave(Client& c) {
  if (owner_ == 0 || holder_ != 0 || internal_owner_ || !entries_.empty() || broken_) return false;
  if (c.tx != Tx::kIdle || c.switching() || c.pending.empty() || c.pending.back()[0] != 'S') return false;
  if (!std::all_of(c.pending.begin(), c.pending.end(), IsStatementOnly)) return false;
  Client* holder = Find(owner_);
  if (holder == nullptr || holder->state != ClientState::kReady) return false;
  const ClientId id = c.id;
  waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.client == id; }),
                 waiters_.end());
  holder_ = owner_;
  owner_ = c.id;
  InjectExecute(c.id, kSavepointX, CcStep{true, "", Effect::kNone});
  SetState(c, ClientState::kInterleaved);
  // A message may drop the client (a protocol error): looked up again after each one, and the
  // loop stops there, its remaining messages cleared.
  bool synced = false;
  for (Client* cp = &c; cp != nullptr && cp->attached && !cp->pending.empty(); cp = Find(id)) {
    std::string raw = cp->pending.PopFront();
    synced = raw[0] == 'S';
    Handle(*cp, raw);
  }
  if (!synced && !broken_) {
    // Dropped before its Sync: the unit still ends, so the server answers it and EndInterleave
    // gives the block back to its holder (FinishUnit then cleans the dropped client up).
    Entry sync;
    sync.kind = Entry::Kind::kSync;
    sync.client = id;
    skip_to_sync_ = false;
    SendEntry(EncodeSync(), std::move(sync));
  }
  return true;
}

// The end of an interleaved unit: its savepoint goes (rolled back first when the unit failed),
// and the block's holder has the server again.
void Session::EndInterleave(Client& c, char server_status) {
  if (server_status == 'E') InjectExecute(0, kRollbackX, CcStep{true, "", Effect::kNone});
  InjectExecute(0, kReleaseX, CcStep{true, "", Effect::kNone});
  Entry sync;
  sync.kind = Entry::Kind::kSync;
  SendEntry(EncodeSync(), std::move(sync));
  owner_ = holder_;
  holder_ = 0;
  if (c.attached) hooks_.to_client(c.id, EncodeReadyForQuery('I'));
  Client* h = Find(owner_);
  if (h == nullptr || !h->attached) {
    owner_ = 0;  // the holder left meanwhile: its cleanup is queued
    Dispatch();
  } else if (!h->pending.empty()) {
    Pump(*h);
  }
}

bool Session::StartUnit(Client& c, bool extended) {
  if (c.tx != Tx::kIdle) {
    SetState(c, ClientState::kUnitOpen);
    return true;
  }
  if (params_key_ != c.params_key) {
    // Another client's parameters are on the server: apply this one's first, below the implicit
    // savepoint (so a failed unit does not undo them), and wait for the answer: a value the
    // server refuses ends this client, as at a real server's start-up.
    SetState(c, ClientState::kSwitching);
    const ClientId id = c.id;
    const std::string key = c.params_key;
    RunInternal("RELEASE SAVEPOINT testpool_i; SAVEPOINT testpool_p; " + SetParamsSql(c) +
                    "; RELEASE SAVEPOINT testpool_p; SAVEPOINT testpool_i",
                "ROLLBACK TO SAVEPOINT testpool_p; RELEASE SAVEPOINT testpool_p; SAVEPOINT testpool_i",
                [this, id, key](const InternalResult& r) {
                  Client* cl = Find(id);
                  if (cl == nullptr) return;
                  SetState(*cl, ClientState::kReady);
                  if (!r.ok) {
                    params_key_.clear();
                    DropClient(id, r.error.Get('C').empty() ? "22023" : r.error.Get('C'),
                                std::string(r.error.Get('M')));
                    return;
                  }
                  params_of_ = id;
                  params_key_ = key;
                  params_now_ = cl->params;
                  stale_ = false;
                  Pump(*cl);
                });
    return false;
  }
  params_of_ = c.id;
  SetState(c, ClientState::kUnitOpen);
  if (stale_) {
    // The last unit's work joins the base level; a fresh implicit savepoint for this one.
    // Pipelined ahead of the client's messages: no extra round trip.
    if (extended) {
      for (const char* stmt : {kReleaseI, kSavepointI}) InjectExecute(c.id, stmt, CcStep{true, "", Effect::kNone});
    } else {
      RunInternal("RELEASE SAVEPOINT testpool_i; SAVEPOINT testpool_i", "", nullptr);
    }
    stale_ = false;
  }
  return true;
}

}  // namespace testpool::proxy
