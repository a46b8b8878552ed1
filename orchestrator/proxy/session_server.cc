// Session: the server's responses, routed to the entry (client or internal operation) they answer.
#include <algorithm>

#include "orchestrator/proxy/session.h"
#include "orchestrator/proxy/session_internal.h"

namespace testpool::proxy {

using namespace session_internal;  // NOLINT(google-build-using-namespace): private names of this class

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
          CopyEnded(*c);
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
        if (Client* c = Find(h.client); c != nullptr) CopyStarted(*c);
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
  if (Client* c = Find(h.client); c != nullptr) CopyEnded(*c);
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
  // A unit its client left before its Sync ends as a failed one: rolled back.
  FinishUnit(*c, h.undo ? 'E' : status);
}

void Session::FinishUnit(Client& c, char server_status) {
  const ClientId id = c.id;
  const bool interleaved = c.state == ClientState::kInterleaved;
  // Already kReady only for a second Sync of an interleaved unit (its first ended the unit).
  if (c.state != ClientState::kReady) SetState(c, ClientState::kReady);
  if (interleaved) {
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
