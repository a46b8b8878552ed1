// A pinned session: one server connection held inside one transaction, shared by every client
// connection of one rollback-mode lease (DESIGN.md, "Recycle", savepoint mode).
//
// The transaction on the server is nested like this:
//   BEGIN                                   opened when the session is pinned
//     SAVEPOINT testpool_base               what a reset or a release goes back to
//       SAVEPOINT testpool_k1 … kN          checkpoints, each inside the one before; what follows
//                                           sits inside the last (none at first)
//       SAVEPOINT testpool_i                the implicit transaction of an idle client
//         SAVEPOINT testpool_c              a client's BEGIN … COMMIT block
//           (the client's own savepoints)
// A client that is idle (no block) sends a unit — a Query, or extended-protocol messages up to
// Sync — that runs inside testpool_i. When the unit succeeds, the next unit first refreshes the
// savepoint (RELEASE + SAVEPOINT, pipelined with the client's first message: no extra round
// trip); when it fails, the proxy rolls back to testpool_i, as a real server ends a failed
// implicit transaction, and the client sees ReadyForQuery 'I'. A client's BEGIN becomes
// SAVEPOINT testpool_c, its COMMIT a RELEASE, its ROLLBACK a ROLLBACK TO + RELEASE; the replies
// carry the tags the client expects ("BEGIN", "COMMIT", "ROLLBACK") and the ReadyForQuery status
// byte of the client's own view ('I', 'T', 'E'). The server's status byte is the truth about the
// server's transaction; the proxy's view of each client follows from it.
//
// One client at a time: a unit is relayed whole (every message as it arrives, pipelined), and a
// client inside a block keeps the server until the block ends; others wait in FIFO order, up to
// `client_wait`, then get an error naming the reason (never a silent deadlock). Named prepared
// statements and portals are renamed per client ("c<id>_<name>") and closed when the client
// leaves. Statements PostgreSQL refuses inside a transaction block are answered with an error
// naming rollback mode, raised by the server itself (a DO block), so every protocol detail — the
// error's place in a pipeline, the skip to Sync, the status byte — is the server's own.
//
// Session is pure logic: it never touches a socket. The proxy feeds it whole messages
// (OnServerMessage, OnClientMessage) and it answers through Hooks. It is driven by one thread
// (the proxy's I/O thread); nothing here is thread-safe.
//
// Each client has one ClientState: where it is in the exchange of units with the server (below).
// It changes only through Session::SetState, which checks the move against the table below and
// aborts the process (in every build) on one the table does not list. Three things are kept
// beside it because they vary independently of it: the client's transaction as it sees it (Tx:
// a unit runs in any of them and moves it as it goes), whether its connection is still there
// (a client that leaves mid-unit stays in its state until the unit's ReadyForQuery drains), and
// whether its next messages are dropped up to a Sync (after an error the proxy raised itself).
// Whether a client waits for the server is not stored: it is its entry in the wait queue.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/sql_classify.h"

namespace testpool::proxy {

using ClientId = uint64_t;
using Clock = std::chrono::steady_clock;

// Where one client of a session is in the exchange of units with the server. Session-start
// (SSL negotiation, SCRAM) happens in the proxy before Attach; a client gone is forgotten, not a
// state. Every client starts kReady.
//   kReady           no unit of its own on the server: it may be idle, idle inside its block
//                    (then it holds the server), waiting in the queue, or answered by the proxy
//                    alone (a block discarded by a reset)
//   kSwitching       it holds the server while its start-up parameters are applied; its unit waits
//   kUnitOpen        its unit's messages are being forwarded; the unit's Sync not yet
//   kUnitOpenCopyIn  as kUnitOpen, and the server awaits its COPY data
//   kInFlight        its unit's end (Sync, Query, FunctionCall) is forwarded: awaiting ReadyForQuery
//   kInFlightCopyIn  as kInFlight, and the server awaits its COPY data
//   kInterleaved     its statement-only unit runs (in flight) inside another client's idle block
// The transitions (anything else aborts):
//   kReady           -> kSwitching (its parameters differ from the server's), kUnitOpen (a unit
//                       starts), kInterleaved (a statement-only unit slips into another's block)
//   kSwitching       -> kReady (parameters applied; its unit starts next)
//   kUnitOpen        -> kUnitOpenCopyIn (CopyInResponse), kInFlight (Sync/Query/FunctionCall)
//   kUnitOpenCopyIn  -> kUnitOpen (COPY ended: CommandComplete, error, CopyFail on a leave),
//                       kInFlightCopyIn (Sync)
//   kInFlight        -> kInFlightCopyIn (CopyInResponse), kReady (ReadyForQuery)
//   kInFlightCopyIn  -> kInFlight (COPY ended), kReady (ReadyForQuery)
//   kInterleaved     -> kReady (ReadyForQuery)
enum class ClientState { kReady, kSwitching, kUnitOpen, kUnitOpenCopyIn, kInFlight, kInFlightCopyIn, kInterleaved };
inline constexpr ClientState kAllClientStates[] = {
    ClientState::kReady,    ClientState::kSwitching,       ClientState::kUnitOpen,    ClientState::kUnitOpenCopyIn,
    ClientState::kInFlight, ClientState::kInFlightCopyIn, ClientState::kInterleaved,
};
// The enumerator's name without the k ("InFlight").
const char* ToString(ClientState s);
// Whether the table above lists from -> to. These three are pure: callable from any thread.
bool ClientTransitionAllowed(ClientState from, ClientState to);
// Returns when ClientTransitionAllowed(from, to); otherwise logs both states (event
// proxy.client_state_impossible, with `client`) and aborts: a move the table does not list is a
// bug in the session, and running on with a client in a state nobody planned for is worse.
void CheckClientTransition(ClientState from, ClientState to, uint64_t client = 0);

// A row of an internal query's result: text values, nullopt for NULL.
using Row = std::vector<std::optional<std::string>>;

// What an internal operation (pin, reset, release) got back.
struct InternalResult {
  bool ok = true;
  Fields error;           // when !ok
  std::vector<Row> rows;  // DataRows of the operation, in order
};

class Session {
 public:
  struct Hooks {
    // Bytes for the server connection (queued in order; the proxy writes them).
    std::function<void(std::string_view bytes)> to_server;
    // Bytes for one client connection.
    std::function<void(ClientId client, std::string_view bytes)> to_client;
    // Sends `bytes` (a FATAL ErrorResponse) to the client, then closes its connection. The
    // session sends that client nothing more: it has forgotten it, or (a client closed for a
    // protocol error) keeps it detached only until its work on the server is undone, ignoring
    // whatever else arrives from it; a later Detach of it is harmless.
    std::function<void(ClientId client, std::string bytes)> close_client;
    // Ask the server to cancel what it is running (a CancelRequest on a new connection). What
    // the session sends after it must not reach the server before the request has (the proxy
    // holds it back), or a cancel that lands late stops that instead.
    std::function<void()> cancel_server;
  };

  struct Options {
    std::string lease_id;                          // for messages and logs
    std::chrono::milliseconds client_wait{30000};  // how long a unit waits for another client's block
  };

  Session(Options options, Hooks hooks);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // ---- life cycle (internal operations) -----------------------------------------------------
  // Opens the pinned transaction on a freshly authenticated, idle server connection: BEGIN, the
  // base savepoint, the sequences' values (for restores), the internal prepared statements.
  // `done` runs when the server answered; ok=false leaves the session broken.
  void Pin(std::function<void(const InternalResult&)> done);
  // Saves the lease's committed state as checkpoint `name`: a savepoint above everything done so
  // far, and the sequences' values. A name taken already is replaced, and the checkpoints saved
  // after it are forgotten (their savepoints released). Waits (up to kResetWait) for a client's
  // unit in flight or open block to end: uncommitted work is not saved. `done` gets ok=false when
  // the session is broken, the server refused (the session then breaks) or the wait ran out
  // (57014).
  void Checkpoint(const std::string& name, std::function<void(const InternalResult&)> done);
  // Back to the savepoint of checkpoint `to` ("" : the base, the template's state) with sequences
  // restored, advisory locks released; the checkpoints saved after it are gone (all of them for
  // the base). Waits for a client unit in flight to finish; a client idle inside a block finds
  // its block discarded (its next statement fails as in an aborted transaction, until it ends the
  // block). `done` gets ok=false when the session is broken, the server refused, the wait ran out
  // (57014) or there is no such checkpoint (42704).
  void Reset(const std::string& to, std::function<void(const InternalResult&)> done);
  // The checkpoints' names, oldest first.
  std::vector<std::string> checkpoints() const;
  // Ends the session: every client is closed with `reason` (FATAL, SQLSTATE 57P01), sequences are
  // restored and the transaction rolled back. `done(ok)`: ok means the database is back in the
  // template's state. The proxy then closes the server connection.
  void Release(const std::string& reason, std::function<void(const InternalResult&)> done);

  // ---- clients --------------------------------------------------------------------------------
  // A client authenticated for this session's lease, with its start-up parameters (user,
  // database and protocol options removed; "options" -c settings expanded). Returns the
  // ParameterStatus messages to send it: the server's, with the client's own values where it set
  // them. Its parameters are applied on the server before its first unit (and again whenever
  // the server last served a client with other parameters); a value the server refuses closes
  // the client with the server's error, as a real server refuses it at start-up.
  std::string Attach(ClientId client, std::vector<std::pair<std::string, std::string>> params);
  // The client's connection is gone: its unit in flight is drained (and the server asked to
  // cancel it), its block rolled back, its prepared statements and portals closed. Calling it
  // again, or for a client the session already closed, does nothing.
  void Detach(ClientId client);
  // One typed message from a client (after start-up).
  void OnClientMessage(ClientId client, const MessageView& m);
  // True while the client's unit is running on the server (what a CancelRequest may interrupt).
  bool Running(ClientId client) const;
  // What the client's messages not yet processed hold in memory (they wait for the server, or
  // for the client's own unit in flight to end); 0 for a client the session does not know. The
  // proxy stops reading a client whose backlog is above its bound, as a server reads nothing
  // while it runs a statement.
  size_t PendingBytes(ClientId client) const;
  // The proxy refused the client's stream where it reads it (a message type or length no
  // frontend may send): as a protocol error inside a message, the client is told why (FATAL,
  // `sqlstate`) and closed; its unit in flight runs to its end without a cancel, and its work is
  // undone as when it hangs up. Does nothing for a client the session does not know.
  void Drop(ClientId client, std::string_view sqlstate, const std::string& message);

  // ---- server ---------------------------------------------------------------------------------
  void OnServerMessage(const MessageView& m);
  // The server connection failed or closed: the session is broken.
  void OnServerLost(const std::string& why);

  // Times out waiting clients and internal operations; call every ~100 ms.
  void Tick(Clock::time_point now);
  // How long a reset may wait for a client's unit in flight before it fails.
  static constexpr std::chrono::seconds kResetWait{10};

  bool broken() const { return broken_; }
  const std::string& broken_reason() const { return broken_reason_; }
  size_t clients() const { return clients_.size(); }
  // The server's reported parameters (ParameterStatus), kept current.
  const std::map<std::string, std::string>& server_params() const { return server_params_; }
  void SetServerParam(const std::string& name, const std::string& value) { server_params_[name] = value; }

 private:
  // A client's transaction as it sees it: none (its units run in testpool_i), inside its block
  // (testpool_c), inside a failed block, or inside a block a reset discarded (answered by the
  // proxy alone, as an aborted transaction, until the client ends it).
  enum class Tx { kIdle, kBlock, kFailed, kDiscarded };
  enum class Effect { kNone, kEnterBlock, kLeaveBlock, kStayBlock };

  // What to do with one CommandComplete of a rewritten statement, in order.
  struct CcStep {
    bool hide = false;  // an internal helper statement's completion
    std::string tag;    // replacement tag; "" keeps the server's
    Effect effect = Effect::kNone;
  };

  // One request sent to the server, awaiting its response(s); or a synthetic reply queued in order.
  struct Entry {
    enum class Kind { kQuery, kParse, kBind, kDescribe, kExecute, kClose, kSync, kSynthetic };
    Kind kind = Kind::kQuery;
    ClientId client = 0;                              // 0: internal (every response is kept from clients)
    bool hide = false;                                // hide successful completions from the client (proxy-injected)
    std::string synthetic;                            // kSynthetic: bytes for the client when this entry is reached
    std::deque<CcStep> steps;                         // CommandComplete handling (kQuery: per statement; kExecute: one)
    std::function<void(const InternalResult&)> done;  // internal kQuery/kSync: at ReadyForQuery
    std::string recovery;                             // internal: SQL that repairs the transaction if this one fails
    bool startup = false;  // a client's parameter set-up: its ParameterStatus goes to the client
    // kSync the proxy sent for a client that left mid-unit: the unit is undone when it ends, as
    // a server rolls back an implicit transaction whose Sync never came.
    bool undo = false;
  };

  // A client's raw messages not yet processed, in order, and what they cost in memory (so the
  // proxy can stop reading a client that runs too far ahead: PendingBytes).
  class Pending {
   public:
    void PushBack(std::string_view raw) {
      q_.emplace_back(raw);
      bytes_ += Cost(raw.size());
    }
    void PushFront(std::string raw) {
      bytes_ += Cost(raw.size());
      q_.push_front(std::move(raw));
    }
    std::string PopFront() {
      std::string raw = std::move(q_.front());
      q_.pop_front();
      bytes_ -= Cost(raw.size());
      return raw;
    }
    void Clear() {
      q_.clear();
      bytes_ = 0;
    }
    const std::string& front() const { return q_.front(); }
    const std::string& back() const { return q_.back(); }
    bool empty() const { return q_.empty(); }
    std::deque<std::string>::const_iterator begin() const { return q_.begin(); }
    std::deque<std::string>::const_iterator end() const { return q_.end(); }
    size_t bytes() const { return bytes_; }

   private:
    // A message's bytes and its bookkeeping: a flood of 15-byte queries costs about three times
    // its wire size.
    static size_t Cost(size_t n) { return n + sizeof(std::string); }
    std::deque<std::string> q_;
    size_t bytes_ = 0;
  };

  // One client. Members are touched only by the thread driving the session (see the top).
  struct Client {
    ClientId id = 0;
    ClientState state = ClientState::kReady;  // only through SetState
    // The transaction as the client sees it; beside `state`, not in it: a unit runs in any of
    // these and moves it as its statements complete.
    Tx tx = Tx::kIdle;                // confirmed (by CommandCompletes and ReadyForQuery)
    Tx predicted = Tx::kIdle;         // as of what was sent (decisions for what comes next)
    Pending pending;  // raw messages not yet processed
    // A filter on what the client sends next (drop up to Sync, then answer ReadyForQuery), set
    // when the proxy itself raised an error in its extended unit; it applies to messages already
    // queued as to those still to come (Skip). Beside `state`, not in it: it filters messages,
    // whatever exchange with the server they would otherwise start.
    bool skipping = false;
    // False: the connection is gone (or being closed by DropClient), cleanup pending. Beside
    // `state`: a client leaves in any state, and a unit in flight still runs to its
    // ReadyForQuery before the cleanup.
    bool attached = true;
    Clock::time_point wait_deadline;  // while it has an entry in waiters_
    std::string discard_reason;  // kDiscarded: why
    std::vector<std::pair<std::string, std::string>> params;
    std::string params_key;
    std::map<std::string, StatementClass> virtual_statements;  // client name → BEGIN/COMMIT/ROLLBACK
    std::map<std::string, StatementClass> virtual_portals;
    std::set<std::string> statements, portals;  // named ones created on the server (client names)
    std::string unnamed_parse;                  // the client's last Parse of the unnamed statement, as sent

    // Derived from `state`.
    bool switching() const { return state == ClientState::kSwitching; }
    // A unit of its own is on the server (forwarding or awaiting ReadyForQuery).
    bool in_unit() const { return state != ClientState::kReady && state != ClientState::kSwitching; }
    // The unit's messages are still being forwarded (its end not yet).
    bool unit_open() const { return state == ClientState::kUnitOpen || state == ClientState::kUnitOpenCopyIn; }
    // The unit's end is forwarded: what a CancelRequest may interrupt.
    bool in_flight() const {
      return state == ClientState::kInFlight || state == ClientState::kInFlightCopyIn ||
             state == ClientState::kInterleaved;
    }
    // The server awaits this client's COPY data.
    bool copy_in() const {
      return state == ClientState::kUnitOpenCopyIn || state == ClientState::kInFlightCopyIn;
    }
  };

  struct Waiter {
    ClientId client = 0;                              // 0: an internal operation
    std::function<void()> run;                        // internal: starts the operation
    std::function<void(const InternalResult&)> fail;  // internal: told when it cannot run
    bool preempt = false;                             // internal: may take the server from a client idle in a block
    Clock::time_point deadline = Clock::time_point::max();  // internal: give up waiting then
  };

  // ---- client state ----
  // The only writer of Client::state: CheckClientTransition(c.state, to), then the move.
  static void SetState(Client& c, ClientState to);
  // The unit's end (Sync, Query, FunctionCall) is forwarded: kUnitOpen -> kInFlight, a COPY in
  // progress kept. A unit already in flight stays so (an interleaved unit may hold several Syncs).
  static void UnitSent(Client& c);
  // CopyInResponse (start) and CommandComplete or an error (end) for the client's unit.
  static void CopyStarted(Client& c);
  static void CopyEnded(Client& c);
  // The client has an entry in waiters_ (waits for the server).
  bool Waiting(ClientId id) const;

  // ---- dispatch ----
  // A message of a client that is `skipping`: dropped, as a server drops the rest of a failed
  // extended unit; its Sync ends the skip and gets ReadyForQuery with the client's status.
  void Skip(Client& c, char type);
  void Enqueue(Waiter w);
  void Dispatch();
  bool ServerFree() const { return entries_.empty(); }
  void Pump(Client& c);  // process the client's pending messages while it owns the server
  void Handle(Client& c, const std::string& raw);
  // Before a unit of an idle client: its parameters, the implicit savepoint. False: the unit
  // must wait (the parameters are being applied first).
  bool StartUnit(Client& c, bool extended);
  static bool HoldsServer(const Client& c);
  bool TryInterleave(Client& c);
  void EndInterleave(Client& c, char server_status);
  Client* Find(ClientId id);
  void PopFront();  // the head entry is answered; synthetic replies behind it go out
  void HandleQuery(Client& c, std::string_view text, const std::string& raw);
  void HandleParse(Client& c, const Parse& p);
  void HandleBind(Client& c, const Bind& b);
  void HandleDescribe(Client& c, const Target& t);
  void HandleExecute(Client& c, const Execute& e);
  // Bind + Execute of one of the internal prepared statements in the unnamed portal, for `client`'s
  // unit (0: an internal operation): its BindComplete is hidden, its CommandComplete handled by
  // `step`; an error reaches the client as the server sent it.
  void InjectExecute(ClientId client, const char* statement, CcStep step);
  void HandleClose(Client& c, const Target& t);
  void HandleDiscarded(Client& c, const MessageView& m);
  void EnsureUnnamed(Client& c);
  void Synthetic(Client& c, std::string bytes);
  void SendEntry(std::string bytes, Entry e);
  void FailWaiting(Client& c, const std::string& message);
  void FinishUnit(Client& c, char server_status);
  void ReleaseOwner();
  void Cleanup(ClientId id);
  // The whole session ends (Release, Break): tells the client why and forgets it at once; the
  // server's transaction ends with the session, nothing is undone client by client.
  void CloseClient(ClientId id, std::string_view sqlstate, const std::string& message);
  // One client must go (a protocol error, a refused parameter) while the session goes on: tells
  // it why and closes its connection, then it leaves as if it had hung up (Leave, no cancel).
  // Its record stays, detached, until its unit on the server has ended and its work is undone,
  // so a caller holding `Client&` may go on reading it; it must not send for it any more.
  void DropClient(ClientId id, std::string_view sqlstate, const std::string& message);
  // Detach's work: `cancel` asks the server to stop the client's unit in flight.
  void Leave(ClientId id, bool cancel);
  void ApplyEffect(Client& c, Effect e);

  // ---- server responses ----
  void Emit(const Entry& e, std::string_view raw);  // to the entry's client unless internal/hidden
  void DrainSynthetic();
  void OnReady(char status);
  void OnError(std::string_view raw);
  void Break(const std::string& why);
  void RunInternal(std::string sql, std::string recovery, std::function<void(const InternalResult&)> done);
  // The setval() statements restoring the sequences an internal operation read (kSequencesSql),
  // or nullopt once the session is broken and `done` told why (`what` failed on the server, or a
  // row was not what that query returns).
  std::optional<std::string> SequencesOf(const InternalResult& r, const char* what,
                                         const std::function<void(const InternalResult&)>& done);

  // ---- rewriting (session_rewrite.cc) ----
  struct Rewritten {
    std::string sql;           // what to send
    std::deque<CcStep> steps;  // one per CommandComplete the server will send
    bool changed = false;      // sql differs from the client's text
  };
  // A client's simple query, with its transaction control turned into savepoints.
  Rewritten RewriteQuery(Client& c, std::string_view text);
  // One statement's replacement (and the CommandCompletes it produces), from its class as the
  // caller already computed it (ClassifyTokens of its tokens, or ClassifyStatement of its text):
  // the statement is lexed once. `out` is left unchanged when the statement stays as it is.
  void RewriteStatement(Client& c, const StatementClass& cls, Rewritten* out);
  // A DO block that raises `message` with `sqlstate` on the server (and its one CommandComplete).
  static std::string RaiseSql(std::string_view severity, std::string_view sqlstate, std::string_view message,
                              std::string_view hint = {});
  std::string SetParamsSql(const Client& c) const;
  std::vector<std::pair<std::string, std::string>> params_now_;  // the parameters the server has now
  std::string ServerName(const Client& c, std::string_view name) const;

  const Options options_;
  const Hooks hooks_;

  // Everything below: the one thread driving the session (the proxy's I/O thread), no lock.
  std::map<ClientId, Client> clients_;
  std::deque<Entry> entries_;  // requests sent, in order
  std::deque<Waiter> waiters_;
  ClientId owner_ = 0;           // the client holding the server (0: none or internal)
  ClientId holder_ = 0;          // a block's owner, on hold while an interleaved unit runs
  bool internal_owner_ = false;  // an internal operation holds the server
  bool stale_ = false;           // testpool_i holds work of a finished unit: refresh first
  ClientId params_of_ = 0;       // whose start-up parameters the server has now
  std::string params_key_;       // … and their key
  ClientId unnamed_owner_ = 0;   // whose Parse the server's unnamed statement is
  bool skip_to_sync_ = false;    // the server reported an error in an extended unit
  InternalResult internal_;      // being collected for the internal entry at the head
  std::map<std::string, std::string> server_params_;
  std::string restore_sql_;  // setval() of every sequence, as at Pin
  // A checkpoint: its savepoint (testpool_k<n>, above the base and every older checkpoint) and
  // the setval() of every sequence as it saved them.
  struct Saved {
    std::string name, savepoint, restore_sql;
  };
  std::vector<Saved> checkpoints_;  // oldest first, nested in this order on the server
  uint64_t savepoints_made_ = 0;
  bool broken_ = false;
  std::string broken_reason_;
  bool released_ = false;
};

}  // namespace testpool::proxy
