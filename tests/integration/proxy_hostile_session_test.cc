// Hostile clients once logged in: message types no frontend sends, lengths above the limits,
// units cut short by a Terminate or a protocol error, COPY messages outside COPY, a client that
// never reads its results, one that pipelines without end, and two hundred rounds of the lot.
// Each gets a clean FATAL, a close, or what PostgreSQL itself would answer; the lease's own
// other clients go on where the protocol allows it; another lease's clients are always served
// (within a generous bound, never a timing assertion); descriptors return to what they were and
// memory stays bounded. Before login: proxy_hostile_test.cc.
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "orchestrator/pg/conninfo.h"
#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/scram.h"
#include "tests/support/proxy_harness.h"

namespace testpool::testing {
namespace {

using namespace std::chrono_literals;
using proxy::MessageBuilder;

std::string Int32(uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (24 - 8 * i));
  return out;
}

// A header alone: `type` and a length field of `length`, no body.
std::string Header(char type, uint32_t length) { return std::string(1, type) + Int32(length); }

bool EndsWith(const std::string& s, std::string_view tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

double Mb(size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// Parse, Bind and Execute of `sql` in the unnamed statement and portal: a unit without its Sync.
std::string UnsyncedUnit(const std::string& sql) {
  return proxy::EncodeParse("", sql, {}) + proxy::EncodeBind("", "", std::string("\0\0\0\0\0\0", 6)) +
         proxy::EncodeExecute("", 0);
}

TEST_F(HostileProxyTest, MessageTypesNoFrontendSendsGetAProtocolErrorAndTheLeaseGoesOn) {
  RawSocket neighbour = LoggedIn();  // another client of the same lease, there all along
  for (char type : {'z', '\0', 'p', 'R', 'Z', '\xff'}) {
    SCOPED_TRACE(std::string("type ") + std::to_string(static_cast<unsigned char>(type)));
    RawSocket s = LoggedIn();
    ASSERT_TRUE(s.Send(Header(type, 4)));
    EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
  }
  RawSocket huge = LoggedIn();  // refused by its type before a byte of its 2 GB body arrives
  ASSERT_TRUE(huge.Send(Header('z', 0x7fffffff)));
  EXPECT_EQ(huge.UntilClosed(), "E/08P01/|closed");
  ASSERT_TRUE(neighbour.Send(proxy::EncodeQuery("SELECT 1")));
  EXPECT_EQ(Types(neighbour.UntilReady()), "TDCZI");
  neighbour.Close();
  huge.Close();
  ExpectOthersServed();
  ExpectFdsBackToBaseline();
}

TEST_F(HostileProxyTest, MessagesDeclaringMoreThanTheirLimitAreRefusedBeforeTheirBody) {
  // A Query past 1 GB, 2^31-1, negative, below the minimum; a Sync past PostgreSQL's 10000 bytes.
  for (const std::string& header : {Header('Q', (1u << 30) + 1), Header('Q', 0x7fffffff), Header('Q', 0xffffffff),
                                    Header('Q', 3), Header('S', 100000)}) {
    RawSocket s = LoggedIn();
    ASSERT_TRUE(s.Send(header));
    EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
  }
  // A Query declaring just 1 GB is allowed (PostgreSQL's own limit); this one sends 1 MB of it
  // and leaves: what the proxy buffered goes with it.
  {
    RawSocket s = LoggedIn();
    ASSERT_TRUE(s.Send(Header('Q', 1u << 30) + std::string(1 << 20, ' ')));
  }
  ExpectHostileLeaseServes();
  ExpectOthersServed();
  ExpectFdsBackToBaseline();
}

// PostgreSQL runs an extended unit's Execute at once but ends its implicit transaction only at
// Sync: a client that leaves before the Sync (Terminate, or a protocol error) leaves nothing
// behind. The proxy ends such a unit for it and must undo it, not keep it for the lease.
TEST_F(HostileProxyTest, AUnitCutShortByATerminateOrAProtocolErrorIsUndone) {
  {
    RawSocket s = LoggedIn();
    ASSERT_TRUE(s.Send(UnsyncedUnit("INSERT INTO items (label) VALUES ('terminated')") + proxy::EncodeTerminate()));
    s.ShutdownWrite();
    EXPECT_TRUE(EndsWith(s.UntilClosed(), "|closed"));  // the proxy has read the Terminate
  }
  {
    RawSocket s = LoggedIn();
    MessageBuilder truncated('B');  // a Bind whose body ends inside the portal name
    truncated.Bytes("x");
    ASSERT_TRUE(s.Send(UnsyncedUnit("INSERT INTO items (label) VALUES ('broken')") + truncated.Finish()));
    EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
  }
  {
    RawSocket s = LoggedIn();
    ASSERT_TRUE(s.Send(UnsyncedUnit("INSERT INTO items (label) VALUES ('garbage')") + Header('z', 4)));
    EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
  }
  EXPECT_EQ(ValueOnNewConnection(hostile_.dsn, "SELECT count(*) FROM items"), "2");
  ExpectHostileLeaseServes();
  ExpectOthersServed();
  ExpectFdsBackToBaseline();
}

TEST_F(HostileProxyTest, CopyMessagesOutsideCopyAreIgnoredAsByAServer) {
  RawSocket s = LoggedIn();
  ASSERT_TRUE(s.Send(MessageBuilder('d').Bytes("1\tstray\n").Finish() + MessageBuilder('c').Finish() +
                     proxy::EncodeCopyFail("no copy here")));
  ASSERT_TRUE(s.Send(proxy::EncodeQuery("SELECT count(*) FROM items")));
  std::vector<RawMessage> got = s.UntilReady();
  EXPECT_EQ(Types(got), "TDCZI");
  ASSERT_TRUE(s.Send(proxy::EncodeSync()));  // a Sync alone: just ReadyForQuery
  EXPECT_EQ(Types(s.UntilReady()), "ZI");
  ExpectOthersServed();
}

// The pinned server session of the hostile lease, blocked writing a result to the proxy: the
// proxy stopped reading it because the client stopped reading (back-pressure).
class StalledReaderTest : public HostileProxyTest {
 protected:
  // About 100 MB of result.
  static constexpr const char* kBigQuery = "SELECT repeat('x', 1000) FROM generate_series(1, 100000)";

  bool ServerBlockedWriting() {
    PgProbe admin(Server().AdminConnInfo().ToKeywordString());
    return admin.Value(
               "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'ClientWrite' "
               "AND query LIKE '%generate_series(1, 100000)%' AND pid <> pg_backend_pid()") == "1";
  }
};

TEST_F(StalledReaderTest, AClientThatNeverReadsItsResultsHoldsOnlyItsOwnLease) {
  const size_t rss_before = RssBytes();
  RawSocket s = LoggedIn();
  ASSERT_TRUE(s.Send(proxy::EncodeQuery(kBigQuery) + proxy::EncodeQuery(kBigQuery)));  // and never reads
  ASSERT_TRUE(WaitFor([&] { return ServerBlockedWriting(); })) << "the proxy kept reading the server";
  const size_t grown = RssBytes() - rss_before;
  std::fprintf(stderr, "stalled reader: RSS +%.1f MB for a 100 MB result\n", Mb(grown));
  EXPECT_LT(grown, size_t{48} << 20) << "the proxy buffers what its client does not read";
  ExpectOthersServed();
  // The lease's other clients wait for it up to the proxy's client_wait, then hear why.
  EXPECT_EQ(ValueOnNewConnection(hostile_.dsn, "SELECT 1").substr(0, 11), "ERROR 55P03");
  s.Close();
  ExpectHostileLeaseServes();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

TEST_F(StalledReaderTest, ReleasingALeaseWhoseClientStoppedReadingClosesIt) {
  RawSocket s = LoggedIn();
  ASSERT_TRUE(s.Send(proxy::EncodeQuery(kBigQuery)));
  ASSERT_TRUE(WaitFor([&] { return ServerBlockedWriting(); })) << "the proxy kept reading the server";
  ExpectOthersServed();
  pools_->Release(hostile_.id);  // bounded by the proxy's op_timeout
  hostile_.id.clear();
  EXPECT_TRUE(EndsWith(s.UntilClosed(), "|closed"));
  s.Close();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

TEST_F(HostileProxyTest, AClientThatPipelinesWithoutEndIsHeldBackByTcp) {
  // Holds the lease's session in a block: the flood must wait.
  auto holder = std::make_unique<PgProbe>(hostile_.dsn);
  ASSERT_EQ(holder->Value("BEGIN"), "");
  RawSocket s = LoggedIn();
  const std::string one = proxy::EncodeQuery("SELECT 1");
  std::string flood;
  flood.reserve(size_t{256} << 20);
  while (flood.size() < (size_t{256} << 20)) flood += one;
  const size_t rss_before = RssBytes();
  // Sends until the proxy has not read for 3 s: waiting for an event, not a delay (a proxy that
  // reads on takes the whole 256 MB, and the test fails).
  const size_t sent = s.SendUntilStalled(flood, 3s);
  const size_t grown = RssBytes() - rss_before;
  std::fprintf(stderr, "pipelining client: %.1f MB taken before the proxy stopped reading, RSS +%.1f MB\n", Mb(sent),
               Mb(grown));
  EXPECT_LT(sent, flood.size());
  EXPECT_LT(grown, size_t{48} << 20);
  ExpectOthersServed();
  s.Close();
  EXPECT_EQ(holder->Value("COMMIT"), "");
  holder.reset();
  ExpectHostileLeaseServes();
  ExpectFdsBackToBaseline();
}

// Each hostile pattern of these tests, 200 times: a leak of anything per connection (a
// coroutine, a buffer, a session record) shows as memory growing with the rounds. Warm-up rounds
// first, so the allocator's pools and the proxy's maps have their working size.
TEST_F(HostileProxyTest, TwoHundredRoundsOfHostileClientsDoNotGrowMemory) {
  auto round = [&] {
    {
      RawSocket s = Connect();  // a start-up length out of range
      s.Send(Int32(0x7fffffff));
      EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
    }
    {
      RawSocket s = Connect();  // a wrong password
      EXPECT_THROW(s.Login(hostile_.user, hostile_.database, "wrong"), std::runtime_error);
    }
    {
      RawSocket s = LoggedIn();  // a message type no frontend sends
      s.Send(Header('z', 4));
      EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
    }
    {
      RawSocket s = Connect();  // a start-up packet cut short
      s.Send(Startup().substr(0, 12));
    }
    {
      RawSocket s = LoggedIn();  // a unit cut short by a Terminate
      s.Send(UnsyncedUnit("INSERT INTO items (label) VALUES ('round')") + proxy::EncodeTerminate());
      s.ShutdownWrite();
      s.UntilClosed();
    }
  };
  const uint64_t logged_in_before = proxy_->stats().client_connections;
  for (int i = 0; i < 20; ++i) round();
  ExpectFdsBackToBaseline();
  const size_t rss_before = RssBytes();
  for (int i = 0; i < 200 && !HasFailure(); ++i) round();
  ExpectFdsBackToBaseline();
  const size_t rss_after = RssBytes();
  const double grown = rss_after > rss_before ? Mb(rss_after - rss_before) : 0.0;
  std::fprintf(stderr, "200 rounds (1000 hostile connections): RSS %.1f MB -> %.1f MB (+%.1f MB)\n", Mb(rss_before),
               Mb(rss_after), grown);
#if !defined(__SANITIZE_ADDRESS__)
  // 2 MB over 1000 connections: more than 2 KB kept per hostile connection fails (a leaked
  // connection keeps at least its session record, its reader and the pages of its read buffer it
  // used); the allocator's own drift measured here is under 0.1 MB. (Under ASan freed memory sits
  // in quarantine, so RSS says nothing there; LeakSanitizer checks at exit instead.) Smaller leaks
  // of a logged-in client show in the proxy's count of them, checked below.
  EXPECT_LT(grown, 2.0) << "memory grows with hostile connections";
#endif
  EXPECT_TRUE(WaitFor([&] { return proxy_->stats().client_connections == logged_in_before; }))
      << proxy_->stats().client_connections << " clients logged in, " << logged_in_before << " before";
  EXPECT_EQ(ValueOnNewConnection(hostile_.dsn, "SELECT count(*) FROM items"), "2");
  ExpectOthersServed();
}

}  // namespace
}  // namespace testpool::testing
