// Session: dispatch of client units, relaying of server responses, internal operations (pin,
// reset, release). Statement rewriting lives in session_rewrite.cc.
#include "orchestrator/proxy/session.h"

#include <algorithm>

namespace testpool::proxy {
namespace {

// The transaction's fixed parts (see session.h). Client statement names are renamed to
// "c<id>_<name>", so these never collide with them.
constexpr const char* kReleaseI = "testpool_release_i";
constexpr const char* kSavepointI = "testpool_savepoint_i";
constexpr const char* kSavepointC = "testpool_savepoint_c";
constexpr const char* kReleaseC = "testpool_release_c";
constexpr const char* kRollbackC = "testpool_rollback_c";
constexpr const char* kSavepointX = "testpool_savepoint_x";
constexpr const char* kReleaseX = "testpool_release_x";
constexpr const char* kRollbackX = "testpool_rollback_x";

const std::pair<const char*, const char*> kInternalStatements[] = {
    {kReleaseI, "RELEASE SAVEPOINT testpool_i"},
    {kSavepointI, "SAVEPOINT testpool_i"},
    {kSavepointC, "SAVEPOINT testpool_c"},
    {kReleaseC, "RELEASE SAVEPOINT testpool_c"},
    {kRollbackC, "ROLLBACK TO SAVEPOINT testpool_c"},
    {kSavepointX, "SAVEPOINT testpool_x"},
    {kReleaseX, "RELEASE SAVEPOINT testpool_x"},
    {kRollbackX, "ROLLBACK TO SAVEPOINT testpool_x"},
};

// Messages that touch prepared statements only, never a portal or a transaction: Parse,
// Describe and Close of a statement, Flush, Sync.
bool IsStatementOnly(const std::string& raw) {
  switch (raw[0]) {
    case 'P':
    case 'H':
    case 'S':
      return true;
    case 'D':
    case 'C':
      return raw.size() > 5 && raw[5] == 'S';
    default:
      return false;
  }
}

// BEGIN; the base savepoint; every sequence's state (pg_sequence_last_value is NULL until the
// first nextval). Temporary sequences of other sessions are not ours to restore.
constexpr const char* kPinSql =
    "BEGIN; SAVEPOINT testpool_base; "
    "SELECT c.oid::pg_catalog.int8, s.seqstart, pg_catalog.pg_sequence_last_value(c.oid) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid "
    "WHERE c.relpersistence <> 't'";

bool IsInteger(const std::string& s) {
  if (s.empty() || s.size() > 20) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

std::vector<std::optional<std::string>> ParseDataRow(std::string_view body) {
  BodyReader r(body);
  int16_t n = r.Int16();
  std::vector<std::optional<std::string>> row;
  for (int i = 0; i < n; ++i) {
    int32_t len = r.Int32();
    if (len < 0) {
      row.emplace_back(std::nullopt);
    } else {
      row.emplace_back(std::string(r.Bytes(static_cast<size_t>(len))));
    }
  }
  return row;
}

bool IsExtended(char type) {
  return type == 'P' || type == 'B' || type == 'D' || type == 'E' || type == 'C' || type == 'H' || type == 'S';
}

}  // namespace

Session::Session(Options options, Hooks hooks) : options_(std::move(options)), hooks_(std::move(hooks)) {}

Session::Client* Session::Find(ClientId id) {
  auto it = clients_.find(id);
  return it == clients_.end() ? nullptr : &it->second;
}

bool Session::HoldsServer(const Client& c) {
  return c.in_flight || c.unit_open || c.switching || c.tx == Tx::kBlock || c.tx == Tx::kFailed;
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

void Session::Pin(std::function<void(const InternalResult&)> done) {
  Waiter w;
  w.fail = done;
  w.run = [this, done] {
    RunInternal(kPinSql, "", [this, done](const InternalResult& r) {
      if (!r.ok) {
        Break("the pinned transaction could not be opened: " + std::string(r.error.Get('M')));
        done(r);
        return;
      }
      restore_sql_.clear();
      size_t in_select = 0;
      for (const Row& row : r.rows) {
        if (row.size() != 3 || !row[0] || !row[1] || !IsInteger(*row[0]) || !IsInteger(*row[1]) ||
            (row[2] && !IsInteger(*row[2]))) {
          Break("unexpected sequence row from the server");
          InternalResult bad;
          bad.ok = false;
          bad.error = MakeFields("ERROR", "XX000", "unexpected sequence row from the server");
          done(bad);
          return;
        }
        // Values are the server's own integers (checked above), so they are spliced as literals.
        restore_sql_ += in_select == 0 ? "SELECT " : ", ";
        restore_sql_ += "pg_catalog.setval(" + *row[0] + "::pg_catalog.regclass, " + (row[2] ? *row[2] : *row[1]) +
                        ", " + (row[2] ? "true" : "false") + ")";
        if (++in_select == 500) {
          restore_sql_ += "; ";
          in_select = 0;
        }
      }
      if (in_select > 0) restore_sql_ += "; ";
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

void Session::Reset(std::function<void(const InternalResult&)> done) {
  if (broken_) {
    InternalResult r;
    r.ok = false;
    r.error = MakeFields("ERROR", "08006", broken_reason_);
    done(r);
    return;
  }
  Waiter w;
  w.preempt = true;
  w.fail = done;
  w.deadline = Clock::now() + kResetWait;
  w.run = [this, done] {
    for (auto& [id, c] : clients_) {
      // A block open across the reset is gone with everything else; its client learns it at its
      // next statement, as in an aborted transaction.
      if (c.tx == Tx::kBlock || c.tx == Tx::kFailed) {
        c.tx = c.predicted = Tx::kDiscarded;
        c.discard_reason = "testpool reset lease " + options_.lease_id + " while this transaction was open";
      }
      c.portals.clear();  // portals made since the base savepoint are gone
      c.virtual_portals.clear();
    }
    params_of_ = 0;  // settings made since the base savepoint are rolled back too
    params_key_.clear();
    params_now_.clear();
    stale_ = false;
    RunInternal("ROLLBACK TO SAVEPOINT testpool_base; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD SEQUENCES; " +
                    restore_sql_ + "SAVEPOINT testpool_i",
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

void Session::Detach(ClientId id) {
  Client* c = Find(id);
  if (c == nullptr) return;
  c->attached = false;
  c->pending.clear();
  if (c->waiting) {
    waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.client == id; }),
                   waiters_.end());
    c->waiting = false;
  }
  if (broken_) {
    clients_.erase(id);
    return;
  }
  if (c->copy_in) {
    hooks_.to_server(EncodeCopyFail("the client disconnected"));
    c->copy_in = false;
  }
  if (c->unit_open && !c->in_flight) {
    // End its half-sent extended unit so the server answers and the cleanup can follow.
    Entry sync;
    sync.kind = Entry::Kind::kSync;
    sync.client = id;
    hooks_.to_server(EncodeSync());
    entries_.push_back(std::move(sync));
    skip_to_sync_ = false;
    c->unit_open = false;
    c->in_flight = true;
  }
  if (c->in_flight) {
    hooks_.cancel_server();  // nobody waits for that result any more
    return;                  // FinishUnit cleans up when the unit's ReadyForQuery arrives
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

bool Session::Running(ClientId id) const {
  auto it = clients_.find(id);
  return it != clients_.end() && owner_ == id && it->second.in_flight;
}

void Session::OnClientMessage(ClientId id, const MessageView& m) {
  Client* c = Find(id);
  if (c == nullptr || broken_) return;
  if (m.type == 'X') {
    Detach(id);
    return;
  }
  if (c->skipping) {
    // After an error the proxy raised itself in an extended unit: as a server does, drop
    // everything up to Sync, then say ready.
    if (m.type == 'S') {
      c->skipping = false;
      char status = c->tx == Tx::kIdle ? 'I' : c->tx == Tx::kBlock ? 'T' : 'E';
      hooks_.to_client(id, EncodeReadyForQuery(status));
    }
    return;
  }
  c->pending.emplace_back(m.raw);
  if (owner_ == id) {
    Pump(*c);
    return;
  }
  if (holder_ == id) return;  // its block is on hold for an interleaved unit: it resumes after it
  if (TryInterleave(*c)) return;
  if (c->tx == Tx::kDiscarded && !c->in_flight) {
    // Its block was discarded by a reset: answered by the proxy alone, no server needed.
    while (!c->pending.empty() && Find(id) != nullptr) {
      std::string raw = std::move(c->pending.front());
      c->pending.pop_front();
      Handle(*c, raw);
      c = Find(id);
      if (c == nullptr || c->tx != Tx::kDiscarded) break;
    }
    if (c == nullptr || c->pending.empty()) return;
  }
  if (!c->waiting) {
    c->waiting = true;
    c->wait_deadline = Clock::now() + options_.client_wait;
    Waiter w;
    w.client = id;
    Enqueue(std::move(w));
  }
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
    if (c != nullptr && !preempt && !c->in_flight && !c->unit_open && !c->switching && holder_ == 0) {
      // The owner idles inside a block: statement-only units of waiting clients may still run.
      for (const Waiter& w : waiters_) {
        Client* wc = w.client != 0 ? Find(w.client) : nullptr;
        if (wc != nullptr && TryInterleave(*wc)) return;
      }
    }
    if (c != nullptr && (!preempt || c->in_flight || c->unit_open || c->switching)) return;
    owner_ = 0;
    if (c != nullptr && !c->pending.empty() && !c->waiting) {
      c->waiting = true;
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
    c->waiting = false;
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
    if (cp->switching) return;
    if (cp->in_flight) {
      char t = cp->pending.front()[0];
      if (!(cp->copy_in && (t == 'd' || t == 'c' || t == 'f'))) return;
    }
    std::string raw = std::move(cp->pending.front());
    cp->pending.pop_front();
    Handle(*cp, raw);
    cp = Find(id);
  }
  if (cp != nullptr && owner_ == id && !HoldsServer(*cp) && cp->pending.empty()) {
    ReleaseOwner();
  } else if (cp != nullptr && owner_ == id && !cp->in_flight && !cp->unit_open && !waiters_.empty()) {
    Dispatch();  // idle inside a block: let waiting statement-only units through
  }
}

// A client whose pending messages are one whole statement-only unit (PQprepare: Parse + Sync)
// need not wait for another client's block: prepared statements are not transactional. It runs
// now, inside a savepoint of its own so an error cannot fail the holder's block, and the holder
// resumes after it.
bool Session::TryInterleave(Client& c) {
  if (owner_ == 0 || holder_ != 0 || internal_owner_ || !entries_.empty() || broken_) return false;
  if (c.tx != Tx::kIdle || c.switching || c.pending.empty() || c.pending.back()[0] != 'S') return false;
  if (!std::all_of(c.pending.begin(), c.pending.end(), IsStatementOnly)) return false;
  Client* holder = Find(owner_);
  if (holder == nullptr || holder->in_flight || holder->unit_open || holder->switching) return false;
  if (c.waiting) {
    const ClientId id = c.id;
    waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.client == id; }),
                   waiters_.end());
    c.waiting = false;
  }
  holder_ = owner_;
  owner_ = c.id;
  c.interleaved = true;
  Entry b;
  b.kind = Entry::Kind::kBind;
  b.client = c.id;
  b.hide = true;
  SendEntry(EncodeSimpleBind("", kSavepointX), std::move(b));
  Entry x;
  x.kind = Entry::Kind::kExecute;
  x.client = c.id;
  x.hide = true;
  x.steps.push_back(CcStep{true, "", Effect::kNone});
  SendEntry(EncodeExecute("", 0), std::move(x));
  c.unit_open = true;
  while (!c.pending.empty()) {
    std::string raw = std::move(c.pending.front());
    c.pending.pop_front();
    Handle(c, raw);
  }
  return true;
}

// The end of an interleaved unit: its savepoint goes (rolled back first when the unit failed),
// and the block's holder has the server again.
void Session::EndInterleave(Client& c, char server_status) {
  c.interleaved = false;
  for (const char* stmt :
       server_status == 'E' ? std::vector<const char*>{kRollbackX, kReleaseX} : std::vector<const char*>{kReleaseX}) {
    Entry b;
    b.kind = Entry::Kind::kBind;
    SendEntry(EncodeSimpleBind("", stmt), std::move(b));
    Entry x;
    x.kind = Entry::Kind::kExecute;
    x.steps.push_back(CcStep{true, "", Effect::kNone});
    SendEntry(EncodeExecute("", 0), std::move(x));
  }
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
  c.failed_unit = false;
  if (c.tx != Tx::kIdle) {
    c.unit_open = true;
    return true;
  }
  if (params_key_ != c.params_key) {
    // Another client's parameters are on the server: apply this one's first, below the implicit
    // savepoint (so a failed unit does not undo them), and wait for the answer: a value the
    // server refuses ends this client, as at a real server's start-up.
    c.switching = true;
    const ClientId id = c.id;
    const std::string key = c.params_key;
    RunInternal("RELEASE SAVEPOINT testpool_i; SAVEPOINT testpool_p; " + SetParamsSql(c) +
                    "; RELEASE SAVEPOINT testpool_p; SAVEPOINT testpool_i",
                "ROLLBACK TO SAVEPOINT testpool_p; RELEASE SAVEPOINT testpool_p; SAVEPOINT testpool_i",
                [this, id, key](const InternalResult& r) {
                  Client* cl = Find(id);
                  if (cl == nullptr) return;
                  cl->switching = false;
                  if (!r.ok) {
                    params_key_.clear();
                    CloseClient(id, r.error.Get('C').empty() ? "22023" : r.error.Get('C'),
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
  c.unit_open = true;
  if (stale_) {
    // The last unit's work joins the base level; a fresh implicit savepoint for this one.
    // Pipelined ahead of the client's messages: no extra round trip.
    if (extended) {
      for (const char* stmt : {kReleaseI, kSavepointI}) {
        Entry b;
        b.kind = Entry::Kind::kBind;
        b.client = c.id;
        b.hide = true;
        SendEntry(EncodeSimpleBind("", stmt), std::move(b));
        Entry x;
        x.kind = Entry::Kind::kExecute;
        x.client = c.id;
        x.hide = true;
        x.steps.push_back(CcStep{true, "", Effect::kNone});
        SendEntry(EncodeExecute("", 0), std::move(x));
      }
    } else {
      RunInternal("RELEASE SAVEPOINT testpool_i; SAVEPOINT testpool_i", "", nullptr);
    }
    stale_ = false;
  }
  return true;
}

void Session::Handle(Client& c, const std::string& raw) {
  MessageView m{raw[0], std::string_view(raw).substr(5), raw};
  if (c.tx == Tx::kDiscarded) {
    HandleDiscarded(c, m);
    return;
  }
  if (!c.unit_open && !c.in_flight && (m.type == 'Q' || m.type == 'F' || IsExtended(m.type))) {
    if (!StartUnit(c, m.type != 'Q' && m.type != 'F')) {
      c.pending.push_front(raw);
      return;
    }
  }
  try {
    switch (m.type) {
      case 'Q':
        HandleQuery(c, ParseQuery(m.body).text, raw);
        break;
      case 'P':
        HandleParse(c, ParseParse(m.body));
        break;
      case 'B':
        HandleBind(c, ParseBind(m.body));
        break;
      case 'D':
        HandleDescribe(c, ParseDescribe(m.body));
        break;
      case 'E':
        HandleExecute(c, ParseExecute(m.body));
        break;
      case 'C':
        HandleClose(c, ParseClose(m.body));
        break;
      case 'H':
        if (!skip_to_sync_) hooks_.to_server(raw);
        break;
      case 'S': {
        Entry e;
        e.kind = Entry::Kind::kSync;
        e.client = c.id;
        skip_to_sync_ = false;
        SendEntry(raw, std::move(e));
        c.unit_open = false;
        c.in_flight = true;
        break;
      }
      case 'F': {
        Entry e;
        e.kind = Entry::Kind::kQuery;  // FunctionCall: answered up to ReadyForQuery like a query
        e.client = c.id;
        SendEntry(raw, std::move(e));
        c.unit_open = false;
        c.in_flight = true;
        break;
      }
      case 'd':
      case 'c':
      case 'f':
        if (c.copy_in) hooks_.to_server(raw);  // outside COPY a server ignores these too
        break;
      default:
        CloseClient(c.id, "08P01", std::string("invalid frontend message type '") + m.type + "'");
    }
  } catch (const ProtocolError& e) {
    CloseClient(c.id, "08P01", e.what());
  }
}

void Session::SendEntry(std::string bytes, Entry e) {
  using K = Entry::Kind;
  if (skip_to_sync_ && (e.kind == K::kParse || e.kind == K::kBind || e.kind == K::kDescribe || e.kind == K::kExecute ||
                        e.kind == K::kClose)) {
    return;  // the server skips these after an error in the unit: nothing to send or await
  }
  hooks_.to_server(bytes);
  entries_.push_back(std::move(e));
}

void Session::Synthetic(Client& c, std::string bytes) {
  if (skip_to_sync_) return;
  if (entries_.empty()) {
    hooks_.to_client(c.id, bytes);
    return;
  }
  Entry e;
  e.kind = Entry::Kind::kSynthetic;
  e.client = c.id;
  e.synthetic = std::move(bytes);
  entries_.push_back(std::move(e));
}

void Session::HandleQuery(Client& c, std::string_view text, const std::string& raw) {
  c.unnamed_parse.clear();
  c.virtual_statements.erase("");
  c.virtual_portals.erase("");
  unnamed_owner_ = 0;
  Rewritten rw = RewriteQuery(c, text);
  Entry e;
  e.kind = Entry::Kind::kQuery;
  e.client = c.id;
  e.steps = std::move(rw.steps);
  SendEntry(rw.changed ? EncodeQuery(rw.sql) : raw, std::move(e));
  c.unit_open = false;
  c.in_flight = true;
}

void Session::HandleParse(Client& c, const Parse& p) {
  const std::string name(p.statement);
  c.virtual_statements.erase(name);
  StatementClass cls = ClassifyStatement(p.query);
  if (cls.command == TxCommand::kBegin || cls.command == TxCommand::kCommit || cls.command == TxCommand::kRollback) {
    // Transaction control is decided when it runs (the client's state then), not when parsed.
    c.virtual_statements[name] = cls;
    if (name.empty()) c.unnamed_parse.clear();
    Synthetic(c, EncodeParseComplete());
    return;
  }
  Rewritten rw;
  RewriteStatement(c, p.query, &rw);
  std::string msg = EncodeParse(ServerName(c, name), rw.changed ? std::string_view(rw.sql) : p.query, p.param_types);
  if (name.empty()) {
    c.unnamed_parse = msg;
    unnamed_owner_ = c.id;
  } else {
    c.statements.insert(name);
  }
  Entry e;
  e.kind = Entry::Kind::kParse;
  e.client = c.id;
  SendEntry(std::move(msg), std::move(e));
}

// The server's unnamed statement may be another client's by now (or gone with a simple query):
// parse this client's again first.
void Session::EnsureUnnamed(Client& c) {
  if (unnamed_owner_ == c.id || c.unnamed_parse.empty()) return;
  Entry e;
  e.kind = Entry::Kind::kParse;
  e.client = c.id;
  e.hide = true;
  SendEntry(c.unnamed_parse, std::move(e));
  unnamed_owner_ = c.id;
}

void Session::HandleBind(Client& c, const Bind& b) {
  const std::string portal(b.portal);
  c.virtual_portals.erase(portal);
  auto v = c.virtual_statements.find(std::string(b.statement));
  if (v != c.virtual_statements.end()) {
    c.virtual_portals[portal] = v->second;
    Synthetic(c, EncodeBindComplete());
    return;
  }
  if (b.statement.empty()) EnsureUnnamed(c);
  if (!portal.empty()) c.portals.insert(portal);
  Entry e;
  e.kind = Entry::Kind::kBind;
  e.client = c.id;
  SendEntry(EncodeBind(ServerName(c, b.portal), ServerName(c, b.statement), b.rest), std::move(e));
}

void Session::HandleDescribe(Client& c, const Target& t) {
  if (t.kind == 'S') {
    if (c.virtual_statements.count(std::string(t.name))) {
      Synthetic(c, EncodeEmptyParameterDescription() + EncodeNoData());
      return;
    }
    if (t.name.empty()) EnsureUnnamed(c);
  } else if (c.virtual_portals.count(std::string(t.name))) {
    Synthetic(c, EncodeNoData());
    return;
  }
  Entry e;
  e.kind = Entry::Kind::kDescribe;
  e.client = c.id;
  SendEntry(EncodeDescribe(t.kind, ServerName(c, t.name)), std::move(e));
}

void Session::InjectExecute(Client& c, const char* statement, CcStep step) {
  Entry b;
  b.kind = Entry::Kind::kBind;
  b.client = c.id;
  b.hide = true;
  SendEntry(EncodeSimpleBind("", statement), std::move(b));
  Entry x;
  x.kind = Entry::Kind::kExecute;
  x.client = c.id;
  x.steps.push_back(std::move(step));
  SendEntry(EncodeExecute("", 0), std::move(x));
}

void Session::HandleExecute(Client& c, const Execute& ex) {
  auto v = c.virtual_portals.find(std::string(ex.portal));
  if (v == c.virtual_portals.end()) {
    Entry e;
    e.kind = Entry::Kind::kExecute;
    e.client = c.id;
    SendEntry(EncodeExecute(ServerName(c, ex.portal), ex.max_rows), std::move(e));
    return;
  }
  const StatementClass cls = v->second;
  const Tx t = c.predicted;
  auto notice = [](std::string_view sqlstate, std::string_view message) {
    return EncodeNoticeResponse(MakeFields("WARNING", sqlstate, message));
  };
  switch (cls.command) {
    case TxCommand::kBegin:
      if (t == Tx::kBlock) {
        Synthetic(c, notice("25001", "there is already a transaction in progress") + EncodeCommandComplete("BEGIN"));
      } else {
        // Failed: the server refuses the savepoint with the usual "current transaction is aborted".
        InjectExecute(c, kSavepointC, CcStep{false, "BEGIN", Effect::kEnterBlock});
        if (t == Tx::kIdle) c.predicted = Tx::kBlock;
      }
      break;
    case TxCommand::kCommit:
    case TxCommand::kRollback: {
      const bool commit = cls.command == TxCommand::kCommit;
      if (t == Tx::kIdle) {
        Synthetic(c, notice("25P01", "there is no transaction in progress") +
                         EncodeCommandComplete(commit ? "COMMIT" : "ROLLBACK"));
      } else if (commit && t == Tx::kBlock) {
        if (cls.chain) {
          InjectExecute(c, kReleaseC, CcStep{true, "", Effect::kNone});
          InjectExecute(c, kSavepointC, CcStep{false, "COMMIT", Effect::kStayBlock});
        } else {
          InjectExecute(c, kReleaseC, CcStep{false, "COMMIT", Effect::kLeaveBlock});
          c.predicted = Tx::kIdle;
        }
      } else if (cls.chain) {  // ROLLBACK AND CHAIN, or COMMIT AND CHAIN of a failed block
        InjectExecute(c, kRollbackC, CcStep{false, "ROLLBACK", Effect::kStayBlock});
        c.predicted = Tx::kBlock;
      } else {  // ROLLBACK, or COMMIT of a failed block (which rolls back, as on a server)
        InjectExecute(c, kRollbackC, CcStep{true, "", Effect::kNone});
        InjectExecute(c, kReleaseC, CcStep{false, "ROLLBACK", Effect::kLeaveBlock});
        c.predicted = Tx::kIdle;
      }
      break;
    }
    default:
      break;
  }
}

void Session::HandleClose(Client& c, const Target& t) {
  const std::string name(t.name);
  if (t.kind == 'S' ? c.virtual_statements.erase(name) > 0 : c.virtual_portals.erase(name) > 0) {
    Synthetic(c, EncodeCloseComplete());
    return;
  }
  (t.kind == 'S' ? c.statements : c.portals).erase(name);
  Entry e;
  e.kind = Entry::Kind::kClose;
  e.client = c.id;
  SendEntry(EncodeClose(t.kind, ServerName(c, t.name)), std::move(e));
}

// A client whose block a reset discarded: everything but ending the block fails as in an
// aborted transaction; ending it (COMMIT or ROLLBACK) answers ROLLBACK. No server involved.
void Session::HandleDiscarded(Client& c, const MessageView& m) {
  const ClientId id = c.id;
  auto aborted = [&] {
    Fields f =
        MakeFields("ERROR", "25P02", "current transaction is aborted, commands ignored until end of transaction block",
                   c.discard_reason);
    return EncodeErrorResponse(f);
  };
  auto ends_block = [](const StatementClass& cls) {
    return cls.command == TxCommand::kCommit || cls.command == TxCommand::kRollback;
  };
  try {
    switch (m.type) {
      case 'Q': {
        StatementClass cls = ClassifyStatement(ParseQuery(m.body).text);
        if (ends_block(cls)) {
          c.tx = c.predicted = Tx::kIdle;
          hooks_.to_client(id, EncodeCommandComplete("ROLLBACK") + EncodeReadyForQuery('I'));
        } else {
          hooks_.to_client(id, aborted() + EncodeReadyForQuery('E'));
        }
        return;
      }
      case 'P': {
        Parse p = ParseParse(m.body);
        StatementClass cls = ClassifyStatement(p.query);
        if (ends_block(cls) || cls.command == TxCommand::kBegin) {
          c.virtual_statements[std::string(p.statement)] = cls;
          hooks_.to_client(id, EncodeParseComplete());
          return;
        }
        break;
      }
      case 'B': {
        Bind b = ParseBind(m.body);
        auto v = c.virtual_statements.find(std::string(b.statement));
        if (v != c.virtual_statements.end()) {
          c.virtual_portals[std::string(b.portal)] = v->second;
          hooks_.to_client(id, EncodeBindComplete());
          return;
        }
        break;
      }
      case 'D': {
        Target t = ParseDescribe(m.body);
        if (t.kind == 'S' ? c.virtual_statements.count(std::string(t.name)) > 0
                          : c.virtual_portals.count(std::string(t.name)) > 0) {
          hooks_.to_client(id, (t.kind == 'S' ? EncodeEmptyParameterDescription() : std::string()) + EncodeNoData());
          return;
        }
        break;
      }
      case 'E': {
        auto v = c.virtual_portals.find(std::string(ParseExecute(m.body).portal));
        if (v != c.virtual_portals.end() && ends_block(v->second)) {
          c.tx = c.predicted = Tx::kIdle;
          hooks_.to_client(id, EncodeCommandComplete("ROLLBACK"));
          return;
        }
        break;
      }
      case 'C':
        hooks_.to_client(id, EncodeCloseComplete());  // its server-side names go when it leaves
        return;
      case 'H':
        return;
      case 'S':
        hooks_.to_client(id, EncodeReadyForQuery(c.tx == Tx::kIdle ? 'I' : 'E'));
        return;
      case 'd':
      case 'c':
      case 'f':
        return;
      default:
        CloseClient(id, "08P01", std::string("invalid frontend message type '") + m.type + "'");
        return;
    }
  } catch (const ProtocolError& e) {
    CloseClient(id, "08P01", e.what());
    return;
  }
  hooks_.to_client(id, aborted());
  c.skipping = true;
}

void Session::FailWaiting(Client& c, const std::string& message) {
  Fields f = MakeFields("ERROR", "55P03", message, "",
                        "End the other connection's transaction sooner, or give the daemon a longer --proxy-wait.");
  // Drop the unit that could not run, as a server drops a failed unit.
  bool ended = false;
  while (!c.pending.empty() && !ended) {
    char t = c.pending.front()[0];
    ended = t == 'Q' || t == 'S' || t == 'F';
    c.pending.pop_front();
  }
  std::string out = EncodeErrorResponse(f);
  if (ended) {
    out += EncodeReadyForQuery(c.tx == Tx::kIdle ? 'I' : 'E');
  } else {
    c.skipping = true;
  }
  hooks_.to_client(c.id, out);
  if (!c.pending.empty()) {
    c.waiting = true;
    c.wait_deadline = Clock::now() + options_.client_wait;
    Waiter w;
    w.client = c.id;
    waiters_.push_back(std::move(w));
  }
}

void Session::Tick(Clock::time_point now) {
  if (broken_) return;
  std::vector<ClientId> late;
  std::vector<std::function<void(const InternalResult&)>> late_ops;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->client != 0) {
      Client* c = Find(it->client);
      if (c != nullptr && c->wait_deadline <= now) {
        late.push_back(it->client);
        c->waiting = false;
        it = waiters_.erase(it);
        continue;
      }
    } else if (it->deadline <= now) {
      if (it->fail) late_ops.push_back(it->fail);
      it = waiters_.erase(it);
      continue;
    }
    ++it;
  }
  for (ClientId id : late) {
    Client* c = Find(id);
    if (c == nullptr) continue;
    FailWaiting(*c, "another connection of lease " + options_.lease_id + " held the lease's one server session in a " +
                        "transaction for " + std::to_string(options_.client_wait.count() / 1000) +
                        " s; in rollback mode a lease runs one transaction at a time");
  }
  InternalResult timeout;
  timeout.ok = false;
  timeout.error = MakeFields("ERROR", "57014", "a statement of the lease kept its session busy for too long");
  for (auto& fail : late_ops) fail(timeout);
}

// ---- server responses -------------------------------------------------------------------------

void Session::PopFront() {
  entries_.pop_front();
  DrainSynthetic();
}

void Session::DrainSynthetic() {
  while (!entries_.empty() && entries_.front().kind == Entry::Kind::kSynthetic) {
    Entry e = std::move(entries_.front());
    entries_.pop_front();
    if (Client* c = Find(e.client); c != nullptr && c->attached) hooks_.to_client(e.client, e.synthetic);
  }
}

void Session::Emit(const Entry& e, std::string_view raw) {
  if (e.client == 0 || e.hide) return;
  if (Client* c = Find(e.client); c != nullptr && c->attached) hooks_.to_client(e.client, raw);
}

void Session::ApplyEffect(Client& c, Effect e) {
  switch (e) {
    case Effect::kNone:
      break;
    case Effect::kEnterBlock:
    case Effect::kStayBlock:
      c.tx = Tx::kBlock;
      break;
    case Effect::kLeaveBlock:
      c.tx = Tx::kIdle;
      break;
  }
}

void Session::OnServerMessage(const MessageView& m) {
  if (broken_) return;
  try {
    // Messages that may come at any time belong to whoever the head entry serves.
    if (m.type == 'N' || m.type == 'S' || m.type == 'A') {
      if (m.type == 'S') {
        ParameterStatus ps = ParseParameterStatus(m.body);
        server_params_[std::string(ps.name)] = std::string(ps.value);
      }
      if (!entries_.empty() && entries_.front().kind != Entry::Kind::kSynthetic) Emit(entries_.front(), m.raw);
      return;
    }
    DrainSynthetic();
    if (entries_.empty()) {
      // Unasked, the server only speaks to end the session (FATAL: terminated, shut down).
      Break(m.type == 'E' ? "the server ended it: " + std::string(ParseFields(m.body).Get('M'))
                          : std::string("the server sent an unexpected message '") + m.type + "'");
      return;
    }
    Entry& h = entries_.front();
    using K = Entry::Kind;
    switch (m.type) {
      case 'E':
        OnError(m.raw);
        return;
      case 'Z':
        OnReady(ParseReadyForQuery(m.body));
        return;
      case '1':
      case '2':
      case '3': {
        K want = m.type == '1' ? K::kParse : m.type == '2' ? K::kBind : K::kClose;
        if (h.kind != want) break;
        Emit(h, m.raw);
        PopFront();
        return;
      }
      case 't':
        if (h.kind != K::kDescribe) break;
        Emit(h, m.raw);
        return;
      case 'n':
        if (h.kind != K::kDescribe) break;
        Emit(h, m.raw);
        PopFront();
        return;
      case 'T':
        Emit(h, m.raw);
        if (h.kind == K::kDescribe) PopFront();
        return;
      case 'D':
        if (h.client == 0) {
          internal_.rows.push_back(ParseDataRow(m.body));
        } else {
          Emit(h, m.raw);
        }
        return;
      case 'C': {
        CcStep step;
        if (!h.steps.empty()) {
          step = std::move(h.steps.front());
          h.steps.pop_front();
        }
        if (Client* c = Find(h.client); c != nullptr) {
          c->copy_in = false;
          ApplyEffect(*c, step.effect);
        }
        if (!step.hide) {
          if (step.tag.empty()) {
            Emit(h, m.raw);
          } else {
            Emit(h, EncodeCommandComplete(step.tag));
          }
        }
        if (h.kind == K::kExecute) PopFront();
        return;
      }
      case 'I':
      case 's':
        Emit(h, m.raw);
        if (h.kind == K::kExecute) PopFront();
        return;
      case 'G':
        if (Client* c = Find(h.client); c != nullptr) c->copy_in = true;
        Emit(h, m.raw);
        if (h.client == 0 || Find(h.client) == nullptr || !Find(h.client)->attached) {
          hooks_.to_server(EncodeCopyFail("nobody sends this COPY's data"));
        }
        return;
      case 'H':
      case 'd':
      case 'c':
      case 'V':
        Emit(h, m.raw);
        return;
      default:
        break;
    }
    Break(std::string("the server's message '") + m.type + "' does not fit what was sent");
  } catch (const ProtocolError& e) {
    Break(std::string("malformed message from the server: ") + e.what());
  }
}

void Session::OnError(std::string_view raw) {
  Entry& h = entries_.front();
  using K = Entry::Kind;
  if (Client* c = Find(h.client); c != nullptr) {
    c->copy_in = false;
    c->failed_unit = true;
  }
  if (h.client == 0) {
    internal_.ok = false;
    internal_.error = ParseFields(raw.substr(5));
  } else if (Client* c = Find(h.client); c != nullptr && c->attached) {
    hooks_.to_client(h.client, raw);
  }
  if (h.kind == K::kQuery || h.kind == K::kSync) return;  // ReadyForQuery follows
  if (h.client == 0) {
    Break("an internal statement failed: " + std::string(internal_.error.Get('M')));
    return;
  }
  // Extended protocol: the server now skips everything up to Sync, answering none of it.
  while (!entries_.empty() && entries_.front().kind != K::kSync) entries_.pop_front();
  if (entries_.empty()) skip_to_sync_ = true;
}

void Session::OnReady(char status) {
  using K = Entry::Kind;
  Entry h = std::move(entries_.front());
  entries_.pop_front();
  if (h.kind != K::kQuery && h.kind != K::kSync) {
    Break("ReadyForQuery came before the answers to what was sent");
    return;
  }
  skip_to_sync_ = false;
  if (status == 'I' && !released_) {
    Break("the pinned transaction ended on the server");
    if (h.done) {
      InternalResult r;
      r.ok = false;
      r.error = MakeFields("ERROR", "08006", broken_reason_);
      h.done(r);
    }
    return;
  }
  if (h.client == 0) {
    InternalResult r = std::move(internal_);
    internal_ = InternalResult{};
    if (status == 'E') {
      if (!h.recovery.empty()) {
        RunInternal(h.recovery, "", [this](const InternalResult& rr) {
          if (!rr.ok) Break("recovering from a failed internal statement failed: " + std::string(rr.error.Get('M')));
        });
      } else if (!h.done) {
        Break("an internal statement failed: " + std::string(r.error.Get('M')));
        return;
      }
      if (r.ok) {  // the failure was not reported as an error (cannot happen): still a failure
        r.ok = false;
        r.error = MakeFields("ERROR", "XX000", "the transaction failed");
      }
    }
    if (h.done) h.done(r);
    DrainSynthetic();
    if (entries_.empty() && !broken_) {
      internal_owner_ = false;
      Dispatch();
    }
    return;
  }
  Client* c = Find(h.client);
  if (c == nullptr) {
    DrainSynthetic();
    if (entries_.empty()) Dispatch();
    return;
  }
  FinishUnit(*c, status);
}

void Session::FinishUnit(Client& c, char server_status) {
  const ClientId id = c.id;
  c.in_flight = false;
  c.unit_open = false;
  c.copy_in = false;
  if (c.interleaved) {
    DrainSynthetic();
    EndInterleave(c, server_status);
    if (!c.attached) {
      Waiter w;
      w.run = [this, id] { Cleanup(id); };
      Enqueue(std::move(w));
    }
    return;
  }
  char client_status;
  if (c.tx == Tx::kIdle) {
    if (server_status == 'E') {
      // A failed implicit transaction: undo it, as the server would have.
      RunInternal("ROLLBACK TO SAVEPOINT testpool_i", "", [this](const InternalResult& r) {
        if (!r.ok) Break("rolling back a failed statement failed: " + std::string(r.error.Get('M')));
      });
    } else {
      stale_ = true;
    }
    client_status = 'I';
  } else if (c.tx == Tx::kDiscarded) {
    client_status = 'E';
  } else {
    c.tx = server_status == 'E' ? Tx::kFailed : Tx::kBlock;
    client_status = server_status == 'E' ? 'E' : 'T';
  }
  c.predicted = c.tx;
  c.failed_unit = false;
  DrainSynthetic();
  if (!c.attached) {
    owner_ = 0;
    internal_owner_ = true;
    Cleanup(id);
    if (entries_.empty()) internal_owner_ = false;
    Dispatch();
    return;
  }
  hooks_.to_client(id, EncodeReadyForQuery(client_status));
  if (std::any_of(waiters_.begin(), waiters_.end(), [](const Waiter& w) { return w.preempt; })) {
    Dispatch();  // a reset waits for exactly this moment
    if (owner_ != id) return;
  }
  Pump(c);
}

void Session::OnServerLost(const std::string& why) { Break("the server connection was lost: " + why); }

void Session::Break(const std::string& why) {
  if (broken_) return;
  broken_ = true;
  broken_reason_ = "testpool lost the pinned server session of lease " + options_.lease_id + " (" + why +
                   "); the lease's data is gone: release the lease and take a new one";
  std::vector<ClientId> ids;
  for (const auto& [id, c] : clients_) ids.push_back(id);
  for (ClientId id : ids) CloseClient(id, "08006", broken_reason_);
  InternalResult r;
  r.ok = false;
  r.error = MakeFields("ERROR", "08006", broken_reason_);
  std::deque<Entry> entries;
  entries.swap(entries_);
  std::deque<Waiter> waiters;
  waiters.swap(waiters_);
  for (Entry& e : entries) {
    if (e.done) e.done(r);
  }
  for (Waiter& w : waiters) {
    if (w.fail) w.fail(r);
  }
}

}  // namespace testpool::proxy
