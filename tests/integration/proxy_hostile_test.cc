// Hostile clients before they are logged in: malformed, truncated and oversized start-up
// packets, unknown protocol versions, encryption requests followed by garbage, wrong SCRAM
// proofs, clients that say nothing, a thousand idle connections, more connections than the proxy
// serves. Each gets a clean FATAL or a close; after each, another lease's clients are still
// served (within a generous bound, never a timing assertion) and the proxy's descriptors return
// to what they were. After login: proxy_hostile_session_test.cc.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/scram.h"
#include "tests/support/proxy_harness.h"

namespace testpool::testing {
namespace {

using namespace std::chrono_literals;
using proxy::MessageBuilder;

// An untyped packet of `length` (as sent, whatever it claims) followed by `body`.
std::string Packet(uint32_t length, std::string_view body) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(length >> (24 - 8 * i));
  out.append(body);
  return out;
}

std::string Int32(int32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(static_cast<uint32_t>(v) >> (24 - 8 * i));
  return out;
}

TEST_F(HostileProxyTest, TruncatedStartupPacketsThenCloseLeaveNothingBehind) {
  const std::string startup = Startup();
  for (size_t cut : {size_t{1}, size_t{3}, size_t{4}, size_t{8}, startup.size() - 1}) {
    RawSocket tcp = Connect();
    RawSocket local = RawSocket::Unix(dir_.path(), proxy_->port());
    ASSERT_TRUE(tcp.Send(startup.substr(0, cut)));
    ASSERT_TRUE(local.Send(startup.substr(0, cut)));
  }  // closed here, mid-packet
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
  ExpectHostileLeaseServes();
}

TEST_F(HostileProxyTest, StartupLengthsOutOfRangeGetAProtocolErrorAndAClose) {
  // Below the 8 bytes a packet needs, above the 10000 PostgreSQL allows, 2^31-1, and negative.
  for (uint32_t length : {0u, 3u, 7u, 10001u, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    SCOPED_TRACE("length " + std::to_string(length));
    RawSocket s = Connect();
    ASSERT_TRUE(s.Send(Packet(length, Int32(proxy::kProtocolV3))));  // nothing more of the body
    EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
  }
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

TEST_F(HostileProxyTest, UnknownProtocolVersionsAreRefused) {
  RawSocket v2 = Connect();  // 2.0: another layout, refused before it is read
  ASSERT_TRUE(v2.Send(Packet(16, Int32(2 << 16) + std::string(8, 'x'))));
  EXPECT_EQ(v2.UntilClosed(), "E/0A000/|closed");
  RawSocket v4 = Connect();  // 4.0, well-formed
  ASSERT_TRUE(v4.Send(Packet(9, Int32(4 << 16) + std::string(1, '\0'))));
  EXPECT_EQ(v4.UntilClosed(), "E/0A000/|closed");
  RawSocket code = Connect();  // an unknown request code (1234.5679) with nothing after it
  ASSERT_TRUE(code.Send(Packet(8, Int32(80877105))));
  EXPECT_EQ(code.UntilClosed(), "E/08P01/|closed");
  RawSocket cancel = Connect();  // a CancelRequest one int short
  ASSERT_TRUE(cancel.Send(Packet(12, Int32(proxy::kCancelRequestCode) + Int32(1))));
  EXPECT_EQ(cancel.UntilClosed(), "E/08P01/|closed");
  for (RawSocket* r : {&v2, &v4, &code, &cancel}) r->Close();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

TEST_F(HostileProxyTest, EncryptionRequestsThenGarbageGetAProtocolError) {
  const std::string tls_hello = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + std::string(64, '\x5a');
  for (int32_t request : {proxy::kSslRequestCode, proxy::kGssEncRequestCode}) {
    SCOPED_TRACE("request " + std::to_string(request));
    RawSocket s = Connect();
    ASSERT_TRUE(s.Send(Packet(8, Int32(request))));
    EXPECT_EQ(s.ReadByte(), 'N');
    ASSERT_TRUE(s.Send(tls_hello));  // a TLS ClientHello, as if 'N' had been 'S'
    EXPECT_EQ(s.UntilClosed(), "E/08P01/|closed");
  }
  RawSocket twice = Connect();  // the same request again: no endless exchange of 'N's
  ASSERT_TRUE(twice.Send(Packet(8, Int32(proxy::kSslRequestCode))));
  EXPECT_EQ(twice.ReadByte(), 'N');
  ASSERT_TRUE(twice.Send(Packet(8, Int32(proxy::kSslRequestCode))));
  EXPECT_EQ(twice.UntilClosed(), "E/08P01/|closed");
  RawSocket both = Connect();  // GSS then SSL, as libpq may ask, then a real login: still fine
  ASSERT_TRUE(both.Send(Packet(8, Int32(proxy::kGssEncRequestCode))));
  EXPECT_EQ(both.ReadByte(), 'N');
  ASSERT_TRUE(both.Send(Packet(8, Int32(proxy::kSslRequestCode))));
  EXPECT_EQ(both.ReadByte(), 'N');
  EXPECT_NO_THROW(both.Login(hostile_.user, hostile_.database, hostile_.password));
  twice.Close();
  both.Close();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

TEST_F(HostileProxyTest, WrongScramProofsAreRefusedAndTheLeaseStillServesItsPassword) {
  for (int i = 0; i < 3; ++i) {
    RawSocket s = Connect();
    EXPECT_THROW(s.Login(hostile_.user, hostile_.database, "not-the-password"), std::runtime_error);
    EXPECT_EQ(s.UntilClosed(), "|closed");  // the FATAL was the login's answer
  }
  // The FATAL itself: a correct first message, then a final message with a forged proof.
  RawSocket forged = Connect();
  ASSERT_TRUE(forged.Send(Startup()));
  std::optional<RawMessage> sasl = forged.Next();
  ASSERT_TRUE(sasl);
  ASSERT_EQ(sasl->type, 'R');
  proxy::ScramClient scram("not-the-password", proxy::MakeScramNonce());
  ASSERT_TRUE(forged.Send(proxy::EncodeSaslInitialResponse("SCRAM-SHA-256", scram.ClientFirst())));
  std::optional<RawMessage> cont = forged.Next();
  ASSERT_TRUE(cont);
  const std::string client_final = scram.HandleServerFirst(proxy::ParseAuthentication(cont->body).data);
  ASSERT_TRUE(forged.Send(proxy::EncodeSaslResponse(client_final)));
  EXPECT_EQ(forged.UntilClosed(), "E/28P01/|closed");
  // Garbage where SCRAM's messages go, another message type, and an oversized SASL message.
  RawSocket garbage = Connect();
  ASSERT_TRUE(garbage.Send(Startup() + proxy::EncodeSaslInitialResponse("SCRAM-SHA-256", "not scram at all")));
  EXPECT_EQ(garbage.UntilClosed(), "RE/28P01/|closed");
  RawSocket query = Connect();
  ASSERT_TRUE(query.Send(Startup() + proxy::EncodeQuery("SELECT 1")));
  EXPECT_EQ(query.UntilClosed(), "RE/08P01/|closed");
  RawSocket huge = Connect();
  ASSERT_TRUE(huge.Send(Startup() + "p" + Int32(1 << 20)));  // declares 1 MB, sends none of it
  EXPECT_EQ(huge.UntilClosed(), "RE/08P01/|closed");
  for (RawSocket* r : {&forged, &garbage, &query, &huge}) r->Close();
  ExpectHostileLeaseServes();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

// The proxy's bound on logging in, set short here: connections that say nothing, stop inside
// their start-up packet, or stop half-way through SCRAM are closed, with PostgreSQL's FATAL.
class AuthTimeoutTest : public HostileProxyTest {
 protected:
  void Tune(proxy::ProxyOptions& o) override { o.auth_timeout = 5s; }
};

TEST_F(AuthTimeoutTest, ClientsThatStopBeforeLoggingInAreClosed) {
  std::vector<RawSocket> silent;
  for (int i = 0; i < 30; ++i) {
    silent.push_back(Connect());
    if (i % 3 == 1) {
      ASSERT_TRUE(silent.back().Send(Startup().substr(0, 10)));
    }
    if (i % 3 == 2) {
      proxy::ScramClient scram(hostile_.password, proxy::MakeScramNonce());
      const std::string first = proxy::EncodeSaslInitialResponse("SCRAM-SHA-256", scram.ClientFirst());
      ASSERT_TRUE(silent.back().Send(Startup() + first));
    }
  }
  for (size_t i = 0; i < silent.size(); ++i) {
    EXPECT_EQ(silent[i].UntilClosed(), i % 3 == 2 ? "RRE/57014/|closed" : "E/57014/|closed") << "client " << i;
  }
  silent.clear();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
  ExpectHostileLeaseServes();
}

TEST_F(HostileProxyTest, AThousandIdleConnectionsLeaveOtherLeasesServedAndGoAwayCleanly) {
  // Each connection costs two descriptors here (the test's end and the proxy's): raise the soft
  // limit if it is lower, or use fewer connections when the hard limit forbids it.
  const size_t limit = RaiseFdLimit(2 * 1000 + 200);
  const size_t n = limit >= 2 * 1000 + 200 ? 1000 : (limit - 200) / 2;
  if (n < 1000) std::fprintf(stderr, "only %zu connections: the open-file limit is %zu\n", n, limit);
  const uint64_t logged_in_before = proxy_->stats().client_connections;
  const size_t rss_before = RssBytes();
  std::vector<RawSocket> idle;
  idle.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (i % 2 == 0) {
      idle.push_back(Connect());  // connected, saying nothing (the proxy waits for its login)
    } else {
      idle.push_back(LoggedIn());  // logged in on the hostile lease, idle
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  ExpectOthersServed();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  std::fprintf(stderr,
               "%zu idle connections: %zu descriptors open (%zu before; the test's ends and the proxy's), "
               "RSS +%.1f MB (test and proxy), the other lease answered in %lld ms\n",
               n, OpenFds(), baseline_fds_, static_cast<double>(RssBytes() - rss_before) / (1 << 20),
               static_cast<long long>(took.count()));
  // (The new connection ExpectOthersServed opened may still be counted until the proxy sees it go.)
  EXPECT_TRUE(WaitFor([&] { return proxy_->stats().client_connections == logged_in_before + n / 2; }))
      << proxy_->stats().client_connections << " clients logged in";
  // The idle ones are still served too.
  ASSERT_TRUE(idle[1].Send(proxy::EncodeQuery("SELECT 1")));
  EXPECT_EQ(Types(idle[1].UntilReady()), "TDCZI");
  idle.clear();
  ExpectFdsBackToBaseline();
  std::fprintf(stderr, "closed: %zu descriptors open\n", OpenFds());
  EXPECT_TRUE(WaitFor([&] { return proxy_->stats().client_connections == logged_in_before; }));
  ExpectOthersServed();
  ExpectHostileLeaseServes();
}

// The proxy's cap on connections, set low here.
class ConnectionCapTest : public HostileProxyTest {
 protected:
  static constexpr size_t kCap = 20;
  void Tune(proxy::ProxyOptions& o) override { o.max_client_connections = kCap; }
};

TEST_F(ConnectionCapTest, ConnectionsPastTheCapAreRefusedAndServedAgainOnceOthersLeave) {
  // The victim's open connection is one of the kCap; the hostile ones take the rest.
  std::vector<RawSocket> held;
  for (size_t i = 0; i + 1 < kCap; ++i) held.push_back(Connect());
  RawSocket one_more = Connect();
  EXPECT_EQ(one_more.UntilClosed(), "E/53300/|closed");
  EXPECT_EQ(victim_conn_->Value("SELECT 1"), "1");  // connections already in are served
  held.pop_back();
  // Once the proxy has seen one leave, a new connection gets in again.
  std::string got;
  EXPECT_TRUE(WaitFor([&] { return (got = ValueOnNewConnection(victim_.dsn, "SELECT 1")) == "1"; })) << got;
  held.clear();
  one_more.Close();
  ExpectFdsBackToBaseline();
  ExpectOthersServed();
}

}  // namespace
}  // namespace testpool::testing
