// Session driven by hand, with no socket: the test plays the server (it answers what the session
// sent, message by message) and the clients, so an order of events a real server makes unlikely
// can be forced exactly. What a real server and real clients do is tests/integration/proxy_test.
#include "orchestrator/proxy/session.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <string>
#include <vector>

namespace testpool::proxy {
namespace {

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() : session_(Options(), Hooks()) {}

  Session::Options Options() {
    Session::Options o;
    o.lease_id = "test";
    return o;
  }

  Session::Hooks Hooks() {
    Session::Hooks h;
    h.to_server = [this](std::string_view bytes) { to_server_.append(bytes); };
    h.to_client = [this](ClientId id, std::string_view bytes) { to_client_[id].append(bytes); };
    h.close_client = [this](ClientId id, std::string bytes) {
      to_client_[id] += bytes;
      closed_.insert(id);
    };
    h.cancel_server = [] {};
    return h;
  }

  // Feeds the session what the server sends.
  void Server(const std::string& bytes) {
    FrameReader r;
    r.Feed(bytes);
    while (std::optional<MessageView> m = r.Next()) session_.OnServerMessage(*m);
  }

  // Feeds the session what client `id` sends, one message at a time as the proxy does.
  void Client(ClientId id, const std::string& bytes) {
    FrameReader r;
    r.Feed(bytes);
    while (std::optional<MessageView> m = r.Next()) session_.OnClientMessage(id, *m);
  }

  // The types of the messages client `id` got since the last call ("CZT": CommandComplete,
  // ReadyForQuery 'T'), an ErrorResponse as E/<sqlstate>/; then forgets them.
  std::string Got(ClientId id) {
    std::string out;
    FrameReader r;
    r.Feed(to_client_[id]);
    while (std::optional<MessageView> m = r.Next()) {
      out += m->type;
      if (m->type == 'E') out += "/" + std::string(ParseFields(m->body).Get('C')) + "/";
      if (m->type == 'Z') out += m->body;
      if (m->type == 'C') out += "(" + std::string(ParseCommandComplete(m->body)) + ")";
    }
    to_client_.erase(id);
    return out;
  }

  // The types of the messages sent to the server since the last call; then forgets them.
  std::string Sent() {
    std::string out;
    FrameReader r;
    r.Feed(to_server_);
    while (std::optional<MessageView> m = r.Next()) out += m->type;
    to_server_.clear();
    return out;
  }

  // The text of the one Query sent to the server since the last call (kept in sent_query_ for
  // messages); then forgets what was sent. "" when there is not exactly one Query.
  std::string QueryText() {
    FrameReader r;
    r.Feed(to_server_);
    to_server_.clear();
    sent_query_.clear();
    int queries = 0;
    while (std::optional<MessageView> m = r.Next()) {
      if (m->type != 'Q') continue;
      ++queries;
      sent_query_ = std::string(m->body.substr(0, m->body.find('\0')));
    }
    return queries == 1 ? sent_query_ : "";
  }

  static std::string Complete(std::string_view tag) { return EncodeCommandComplete(tag); }
  static std::string Ready(char status) { return EncodeReadyForQuery(status); }

  // Pins the session, answering as a server does: the pin query (BEGIN, SAVEPOINT, no sequences),
  // the internal Parses and their Sync, then SAVEPOINT testpool_i.
  void Pin() {
    bool pinned = false;
    session_.Pin([&](const InternalResult& r) { pinned = r.ok; });
    ASSERT_EQ(Sent(), "Q");
    Server(Complete("BEGIN") + Complete("SAVEPOINT") + Complete("SELECT 0") + Ready('T'));
    ASSERT_EQ(Sent(), "PPPPPPPPSQ");
    std::string parsed;
    for (int i = 0; i < 8; ++i) parsed += EncodeParseComplete();
    Server(parsed + Ready('T') + Complete("SAVEPOINT") + Ready('T'));
    ASSERT_TRUE(pinned);
  }

  std::string to_server_;
  std::string sent_query_;
  std::map<ClientId, std::string> to_client_;
  std::set<ClientId> closed_;  // by close_client
  Session session_;
};

// A checkpoint saves committed work only: it waits for a client's open block to end, then puts a
// savepoint above everything so far. A restore goes back to that savepoint (not the base) and
// forgets the checkpoints after it; an unknown name fails at once; a reset to the template
// forgets them all.
TEST_F(SessionTest, ACheckpointWaitsForAnOpenBlockAndARestoreGoesBackToIt) {
  Pin();
  session_.Attach(1, {});
  Client(1, EncodeQuery("BEGIN"));
  ASSERT_EQ(Sent(), "Q");
  Server(Complete("SAVEPOINT") + Ready('T'));
  ASSERT_EQ(Got(1), "C(BEGIN)ZT");
  bool saved = false;
  session_.Checkpoint("k", [&](const InternalResult& r) { saved = r.ok; });
  EXPECT_EQ(Sent(), "") << "the checkpoint must wait for the open block";
  Client(1, EncodeQuery("COMMIT"));
  ASSERT_EQ(Sent(), "Q");
  Server(Complete("RELEASE") + Ready('T'));
  ASSERT_EQ(Got(1), "C(COMMIT)ZI");
  EXPECT_EQ(QueryText().rfind("RELEASE SAVEPOINT testpool_i; SAVEPOINT testpool_k1; SELECT ", 0), 0u) << sent_query_;
  Server(Complete("RELEASE") + Complete("SAVEPOINT") + Complete("SELECT 0") + Complete("SAVEPOINT") + Ready('T'));
  ASSERT_TRUE(saved);
  EXPECT_EQ(session_.checkpoints(), std::vector<std::string>{"k"});

  bool restored = false;
  session_.Reset("k", [&](const InternalResult& r) { restored = r.ok; });
  EXPECT_EQ(QueryText().rfind("ROLLBACK TO SAVEPOINT testpool_k1; ", 0), 0u) << sent_query_;
  Server(Complete("ROLLBACK") + Complete("SELECT 1") + Complete("DISCARD SEQUENCES") + Complete("SAVEPOINT") +
         Ready('T'));
  ASSERT_TRUE(restored);
  EXPECT_EQ(session_.checkpoints(), std::vector<std::string>{"k"}) << "a restored checkpoint stays";

  std::string error;
  session_.Reset("nope", [&](const InternalResult& r) { error = r.ok ? "ok" : std::string(r.error.Get('C')); });
  EXPECT_EQ(error, "42704");
  EXPECT_EQ(Sent(), "");

  session_.Reset("", [&](const InternalResult& r) { restored = r.ok; });
  EXPECT_EQ(QueryText().rfind("ROLLBACK TO SAVEPOINT testpool_base; ", 0), 0u) << sent_query_;
  Server(Complete("ROLLBACK") + Complete("SELECT 1") + Complete("DISCARD SEQUENCES") + Complete("SAVEPOINT") +
         Ready('T'));
  EXPECT_TRUE(session_.checkpoints().empty());
}

// A block a reset discarded is answered by the proxy alone. When the client had pipelined an
// extended unit behind its last statement, that unit is answered as PostgreSQL answers an error
// in an extended unit: one ErrorResponse, the rest skipped up to Sync, then ReadyForQuery; and
// the client's next unit is answered, not dropped.
TEST_F(SessionTest, AQueuedExtendedUnitOfADiscardedBlockGetsOneErrorAndTheNextUnitRuns) {
  Pin();
  session_.Attach(1, {});
  Client(1, EncodeQuery("BEGIN"));
  ASSERT_EQ(Sent(), "Q");  // SAVEPOINT testpool_c
  Server(Complete("SAVEPOINT") + Ready('T'));
  ASSERT_EQ(Got(1), "C(BEGIN)ZT");
  // A statement in flight, an extended unit queued behind it, and a reset waiting for it.
  Client(1, EncodeQuery("SELECT 1"));
  ASSERT_EQ(Sent(), "Q");
  Client(1, EncodeParse("", "SELECT 2", {}) + EncodeSimpleBind("", "") + EncodeExecute("", 0) + EncodeSync());
  bool reset = false;
  session_.Reset("", [&](const InternalResult& r) { reset = r.ok; });
  ASSERT_EQ(Sent(), "");
  Server(Complete("SELECT 1") + Ready('T'));
  ASSERT_EQ(Got(1), "C(SELECT 1)ZT");
  ASSERT_EQ(Sent(), "Q");  // the reset, ahead of the queued unit
  Server(Complete("ROLLBACK") + Complete("SELECT 1") + Complete("DISCARD SEQUENCES") + Complete("SAVEPOINT") +
         Ready('T'));
  ASSERT_TRUE(reset);
  EXPECT_EQ(Got(1), "E/25P02/ZE");
  Client(1, EncodeQuery("ROLLBACK"));
  EXPECT_EQ(Got(1), "C(ROLLBACK)ZI");
  EXPECT_EQ(Sent(), "");  // all of it answered by the proxy
}

// A statement-only unit of client 2 runs inside client 1's idle block. Client 2 breaks the
// protocol half-way: it alone is closed, its unit still ends on the server (the proxy sends its
// Sync), the block's savepoint for it is released, client 1 has the server again, and client 2's
// prepared statement is closed once the block ends.
TEST_F(SessionTest, AClientDroppedInsideItsInterleavedUnitGivesTheServerBackToTheBlock) {
  Pin();
  session_.Attach(1, {});
  session_.Attach(2, {});
  Client(1, EncodeQuery("BEGIN"));
  ASSERT_EQ(Sent(), "Q");
  Server(Complete("SAVEPOINT") + Ready('T'));
  ASSERT_EQ(Got(1), "C(BEGIN)ZT");
  MessageBuilder truncated('P');  // ends after the statement name
  truncated.CString("broken");
  Client(2, EncodeParse("fine", "SELECT 1", {}) + truncated.Finish() + EncodeSync());
  EXPECT_EQ(closed_.count(2), 1u);
  EXPECT_EQ(Got(2), "E/08P01/");
  ASSERT_EQ(Sent(), "BEPS");  // SAVEPOINT testpool_x, its Parse, the Sync it never sent
  Server(EncodeBindComplete() + Complete("SAVEPOINT") + EncodeParseComplete() + Ready('T'));
  EXPECT_EQ(Got(2), "");
  ASSERT_EQ(Sent(), "BES");  // RELEASE SAVEPOINT testpool_x
  Server(EncodeBindComplete() + Complete("RELEASE") + Ready('T'));
  Client(1, EncodeQuery("SELECT 2"));
  ASSERT_EQ(Sent(), "Q");
  Server(Complete("SELECT 1") + Ready('T'));
  EXPECT_EQ(Got(1), "C(SELECT 1)ZT");
  Client(1, EncodeQuery("COMMIT"));
  ASSERT_EQ(Sent(), "Q");
  Server(Complete("RELEASE") + Ready('T'));
  EXPECT_EQ(Got(1), "C(COMMIT)ZI");
  EXPECT_EQ(Sent(), "CS");  // client 2's statement closed
  Server(EncodeCloseComplete() + Ready('T'));
  EXPECT_EQ(session_.clients(), 1u);
}

// PostgreSQL runs an Execute at once but ends the implicit transaction only at Sync: a client
// whose connection ends before its Sync leaves nothing behind. The proxy ends such a unit for
// it, then rolls it back instead of keeping it for the lease.
TEST_F(SessionTest, AUnitWhoseClientLeavesBeforeItsSyncIsRolledBack) {
  Pin();
  session_.Attach(1, {});
  Client(1, EncodeParse("", "INSERT INTO t VALUES (1)", {}) + EncodeSimpleBind("", "") + EncodeExecute("", 0));
  ASSERT_EQ(Sent(), "PBE");
  session_.Detach(1);
  ASSERT_EQ(Sent(), "S");  // the Sync it never sent
  Server(EncodeParseComplete() + EncodeBindComplete() + Complete("INSERT 0 1") + Ready('T'));
  EXPECT_NE(to_server_.find("ROLLBACK TO SAVEPOINT testpool_i"), std::string::npos);
  ASSERT_EQ(Sent(), "Q");
  Server(Complete("ROLLBACK") + Ready('T'));
  EXPECT_EQ(session_.clients(), 0u);
  EXPECT_EQ(Got(1), "");
}

// What a client sent while its unit runs waits in the session; PendingBytes says how much, so
// the proxy can stop reading a client that runs ahead.
TEST_F(SessionTest, PendingBytesCountWhatWaitsForTheServer) {
  Pin();
  session_.Attach(1, {});
  EXPECT_EQ(session_.PendingBytes(1), 0u);
  const std::string q = EncodeQuery("SELECT 1");
  Client(1, q + q + q);
  ASSERT_EQ(Sent(), "Q");
  const size_t two = session_.PendingBytes(1);
  EXPECT_GE(two, 2 * q.size());
  Server(Complete("SELECT 1") + Ready('T'));
  ASSERT_EQ(Sent(), "QQ");  // the implicit savepoint's refresh, then the next query
  EXPECT_EQ(session_.PendingBytes(1), two / 2);
  Server(Complete("RELEASE") + Complete("SAVEPOINT") + Ready('T') + Complete("SELECT 1") + Ready('T'));
  Server(Complete("RELEASE") + Complete("SAVEPOINT") + Ready('T') + Complete("SELECT 1") + Ready('T'));
  EXPECT_EQ(Got(1), "C(SELECT 1)ZIC(SELECT 1)ZIC(SELECT 1)ZI");
  EXPECT_EQ(session_.PendingBytes(1), 0u);
  EXPECT_EQ(session_.PendingBytes(42), 0u);  // a client it does not know
}

}  // namespace
}  // namespace testpool::proxy
