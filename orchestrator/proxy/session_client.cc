// Session: a client's messages — what each becomes on the pinned session — and its waits.
#include <algorithm>

#include "orchestrator/proxy/session.h"
#include "orchestrator/proxy/session_internal.h"

namespace testpool::proxy {

using namespace session_internal;  // NOLINT(google-build-using-namespace): private names of this class

void Session::Handle(Client& c, const std::string& raw) {
  MessageView m{raw[0], std::string_view(raw).substr(5), raw};
  if (c.skipping) {
    // Queued before the error that started the skip (a pipelined unit): skipped the same way.
    Skip(c, m.type);
    return;
  }
  if (c.tx == Tx::kDiscarded) {
    HandleDiscarded(c, m);
    return;
  }
  if (!c.in_unit() && (m.type == 'Q' || m.type == 'F' || IsExtended(m.type))) {
    if (!StartUnit(c, m.type != 'Q' && m.type != 'F')) {
      c.pending.PushFront(raw);
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
        UnitSent(c);
        break;
      }
      case 'F': {
        Entry e;
        e.kind = Entry::Kind::kQuery;  // FunctionCall: answered up to ReadyForQuery like a query
        e.client = c.id;
        SendEntry(raw, std::move(e));
        UnitSent(c);
        break;
      }
      case 'd':
      case 'c':
      case 'f':
        if (c.copy_in()) hooks_.to_server(raw);  // outside COPY a server ignores these too
        break;
      default:
        DropClient(c.id, "08P01", std::string("invalid frontend message type '") + m.type + "'");
    }
  } catch (const ProtocolError& e) {
    DropClient(c.id, "08P01", e.what());
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
  UnitSent(c);
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
  RewriteStatement(c, cls, &rw);
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

void Session::InjectExecute(ClientId client, const char* statement, CcStep step) {
  Entry b;
  b.kind = Entry::Kind::kBind;
  b.client = client;
  b.hide = true;
  SendEntry(EncodeSimpleBind("", statement), std::move(b));
  Entry x;
  x.kind = Entry::Kind::kExecute;
  x.client = client;
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
        InjectExecute(c.id, kSavepointC, CcStep{false, "BEGIN", Effect::kEnterBlock});
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
          InjectExecute(c.id, kReleaseC, CcStep{true, "", Effect::kNone});
          InjectExecute(c.id, kSavepointC, CcStep{false, "COMMIT", Effect::kStayBlock});
        } else {
          InjectExecute(c.id, kReleaseC, CcStep{false, "COMMIT", Effect::kLeaveBlock});
          c.predicted = Tx::kIdle;
        }
      } else if (cls.chain) {  // ROLLBACK AND CHAIN, or COMMIT AND CHAIN of a failed block
        InjectExecute(c.id, kRollbackC, CcStep{false, "ROLLBACK", Effect::kStayBlock});
        c.predicted = Tx::kBlock;
      } else {  // ROLLBACK, or COMMIT of a failed block (which rolls back, as on a server)
        InjectExecute(c.id, kRollbackC, CcStep{true, "", Effect::kNone});
        InjectExecute(c.id, kReleaseC, CcStep{false, "ROLLBACK", Effect::kLeaveBlock});
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
        DropClient(id, "08P01", std::string("invalid frontend message type '") + m.type + "'");
        return;
    }
  } catch (const ProtocolError& e) {
    DropClient(id, "08P01", e.what());
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
    char t = c.pending.PopFront()[0];
    ended = t == 'Q' || t == 'S' || t == 'F';
  }
  std::string out = EncodeErrorResponse(f);
  if (ended) {
    out += EncodeReadyForQuery(c.tx == Tx::kIdle ? 'I' : 'E');
  } else {
    c.skipping = true;
  }
  hooks_.to_client(c.id, out);
  if (!c.pending.empty()) {
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

}  // namespace testpool::proxy
