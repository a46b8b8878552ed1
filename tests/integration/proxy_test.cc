// The `rollback` recycle mode end to end: a PoolManager whose pinned sessions live in a real
// wire proxy, against a real PostgreSQL, driven by real clients — libpq (through pg::Connection),
// psql, Python's psycopg (Debian's python3-psycopg) and pgbench.
//
// Every case builds its own template (random name, recycle "rollback") and leases from it.
#include "orchestrator/proxy/proxy.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/pg/error.h"
#include "orchestrator/proxy/codec.h"
#include "orchestrator/proxy/scram.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "tests/support/process.h"
#include "tests/support/test_server.h"

namespace testpool::proxy {
namespace {

using namespace std::chrono_literals;
using core::LeaseInfo;

// The Debian interpreter: psycopg is a Debian package, not in whatever python3 PATH finds first.
constexpr const char* kPython = "/usr/bin/python3";

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds deadline = 60s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

// Runs `sql`; the SQLSTATE of the error it raised, or "" when it ran.
std::string SqlStateOf(pg::Connection& c, const std::string& sql) {
  try {
    c.Exec(sql);
    return "";
  } catch (const pg::PgError& e) {
    return e.sqlstate();
  }
}

// One backend message as a RawClient received it.
struct RawMessage {
  char type = 0;
  std::string body;
};

// A frontend that speaks the wire protocol by hand over the proxy's unix socket, so a test can
// send what libpq never would (a malformed message, a pipeline cut where it likes). Every read
// waits for the proxy's bytes up to a deadline: a proxy that never answers fails the test
// instead of hanging it.
class RawClient {
 public:
  // Connects and logs in with SCRAM-SHA-256 as the lease's role, up to the first ReadyForQuery.
  RawClient(const std::filesystem::path& socket_dir, int port, const LeaseInfo& l) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = (socket_dir / (".s.PGSQL." + std::to_string(port))).string();
    if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
    }
    StartupMessage startup;
    startup.protocol = kProtocolV3;
    startup.params = {{"user", l.user}, {"database", l.database}};
    Send(EncodeStartupMessage(startup));
    ScramClient scram(l.password, MakeScramNonce());
    for (;;) {
      std::optional<RawMessage> m = Next();
      if (!m) throw std::runtime_error("the proxy did not finish the login");
      if (m->type == 'E') throw std::runtime_error("login refused: " + std::string(ParseFields(m->body).Get('M')));
      if (m->type == 'Z') return;
      if (m->type != 'R') continue;
      Authentication a = ParseAuthentication(m->body);
      if (a.code == 10) Send(EncodeSaslInitialResponse("SCRAM-SHA-256", scram.ClientFirst()));
      if (a.code == 11) Send(EncodeSaslResponse(scram.HandleServerFirst(a.data)));
      if (a.code == 12) scram.VerifyServerFinal(a.data);
    }
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;
  ~RawClient() { ::close(fd_); }

  void Send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error("send: " + std::string(std::strerror(errno)));
      bytes.remove_prefix(static_cast<size_t>(n));
    }
  }

  // The next message; nullopt when the proxy closed the connection (then eof() is true) or sent
  // nothing whole within `deadline`.
  std::optional<RawMessage> Next(std::chrono::milliseconds deadline = 30s) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      if (std::optional<MessageView> m = reader_.Next()) return RawMessage{m->type, std::string(m->body)};
      if (eof_) return std::nullopt;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return std::nullopt;
      char buf[8192];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
        continue;
      }
      reader_.Feed(std::string_view(buf, static_cast<size_t>(n)));
    }
  }

  // Messages up to and including ReadyForQuery; what came so far when it does not come (the test
  // then sees no 'Z' last).
  std::vector<RawMessage> UntilReady(std::chrono::milliseconds deadline = 30s) {
    std::vector<RawMessage> out;
    while (std::optional<RawMessage> m = Next(deadline)) {
      out.push_back(std::move(*m));
      if (out.back().type == 'Z') break;
    }
    return out;
  }

  // A simple query's answer, up to ReadyForQuery.
  std::vector<RawMessage> Query(std::string_view sql) {
    Send(EncodeQuery(sql));
    return UntilReady();
  }

  bool eof() const { return eof_; }

 private:
  int fd_ = -1;
  FrameReader reader_{false};
  bool eof_ = false;
};

// The message types of `ms`, in order ("CZ"), and the SQLSTATE of each ErrorResponse after a '/'.
std::string Types(const std::vector<RawMessage>& ms) {
  std::string out;
  for (const RawMessage& m : ms) {
    out += m.type;
    if (m.type == 'E') out += "/" + std::string(ParseFields(m.body).Get('C')) + "/";
    if (m.type == 'Z') out += m.body;
  }
  return out;
}

// The first column of the first DataRow in `ms`, or "(no row)".
std::string FirstValue(const std::vector<RawMessage>& ms) {
  for (const RawMessage& m : ms) {
    if (m.type != 'D') continue;
    BodyReader r(m.body);
    r.Int16();
    int32_t len = r.Int32();
    return len < 0 ? "NULL" : std::string(r.Bytes(static_cast<size_t>(len)));
  }
  return "(no row)";
}

// A template with an identity column, a plain sequence and seed rows: enough to see that data
// and sequences come back.
constexpr const char* kSchemaSql =
    "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text NOT NULL UNIQUE);\n"
    "CREATE SEQUENCE counter START 100;\n"
    "CREATE TABLE big (n int);\n";
constexpr const char* kSeedSql = "INSERT INTO items (label) VALUES ('seed-a'), ('seed-b');\n";

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = core::ControlStore::Open(testing::Server().AdminConnInfo());
    builder_ = std::make_unique<core::TemplateBuilder>(*store_, clock_);
    service_ = std::make_unique<core::TemplateService>(*store_, *builder_);
    ProxyOptions po;
    po.port = 0;
    po.socket_dir = dir_.path();
    const pg::ConnInfo admin = testing::Server().AdminConnInfo();
    po.server_host = admin.Get("host");
    po.server_port = std::stoi(admin.Get("port"));
    po.client_wait = 2s;
    proxy_ = std::make_unique<Proxy>(po);
    proxy_->Start();
    core::PoolOptions o;
    o.max_databases = 20;
    o.recycler_threads = 2;
    o.reaper_interval = 100ms;
    pools_ = std::make_unique<core::PoolManager>(*store_, testing::Server(), clock_, o);
    pools_->SetPinnedSessions(proxy_.get());
    pools_->Start();
    service_->SetListener(pools_.get());
    name_ = "rb_" + util::RandomToken(6);
    core::TemplateSpec spec;
    spec.name = name_;
    spec.migrations = {{"0001_schema.sql", kSchemaSql}};
    spec.seed = {{"seed.sql", kSeedSql}};
    spec.pool.min_ready = 2;
    spec.pool.max = 4;
    spec.recycle = "rollback";
    service_->Put(spec, true);
  }

  void TearDown() override {
    for (const std::string& id : leases_) {
      try {
        pools_->Release(id);
      } catch (const std::exception&) {
      }
    }
    try {
      service_->Drop(name_, false);
    } catch (const std::exception&) {
    }
    pools_->Stop();
    service_.reset();
    pools_.reset();
    proxy_.reset();
    builder_.reset();
    store_.reset();
  }

  LeaseInfo Lease() {
    core::LeaseRequest r;
    r.template_name = name_;
    r.wait = 60s;
    r.ttl = 600s;
    LeaseInfo l = pools_->Acquire(r);
    leases_.push_back(l.id);
    return l;
  }

  static pg::Connection Connect(const LeaseInfo& l) { return pg::Connection::Open(l.dsn, 10s); }

  static std::string One(pg::Connection& c, const std::string& sql) { return std::string(c.Exec(sql).Get(0, 0)); }

  // Environment for psql/pgbench/psycopg: the lease's PG* variables, over the unix socket or TCP.
  std::map<std::string, std::string> PgEnv(const LeaseInfo& l, bool unix_socket = false) const {
    return {{"PGHOST", unix_socket ? dir_.path().string() : l.host},
            {"PGPORT", std::to_string(l.port)},
            {"PGUSER", l.user},
            {"PGPASSWORD", l.password},
            {"PGDATABASE", l.database},
            {"PGSSLMODE", "prefer"},
            {"PGCONNECT_TIMEOUT", "10"}};
  }

  core::PoolCounters Counters() { return pools_->Status().counters; }

  testing::TempDir dir_{"testpool-proxy"};
  const util::Clock& clock_ = util::RealClock();
  std::unique_ptr<core::ControlStore> store_;
  std::unique_ptr<core::TemplateBuilder> builder_;
  std::unique_ptr<core::TemplateService> service_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<core::PoolManager> pools_;
  std::string name_;
  std::vector<std::string> leases_;
};

TEST_F(ProxyTest, LeaseDsnPointsAtTheProxyAndConnectsFirstTry) {
  LeaseInfo l = Lease();
  EXPECT_EQ(l.port, proxy_->port());
  pg::Connection c = Connect(l);
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "2");
  EXPECT_EQ(One(c, "SELECT current_user"), l.user);
  EXPECT_EQ(c.TransactionStatus(), 'I');
}

TEST_F(ProxyTest, ResetDropsWrittenDataAndRestoresSequencesKeepingConnectionsOpen) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  c.Exec("INSERT INTO items (label) VALUES ('mine')");
  c.Exec("CREATE TABLE scratch (x int)");
  EXPECT_EQ(One(c, "SELECT nextval('counter')"), "100");
  EXPECT_EQ(One(c, "SELECT nextval('counter')"), "101");
  c.Exec("SELECT pg_advisory_lock(42)");
  pools_->Reset(l.id);
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "2");
  EXPECT_EQ(One(c, "SELECT to_regclass('scratch') IS NULL"), "t");
  EXPECT_EQ(One(c, "SELECT nextval('counter')"), "100");
  EXPECT_EQ(One(c, "INSERT INTO items (label) VALUES ('again') RETURNING id"), "3");
  EXPECT_EQ(One(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"), "0");
  EXPECT_EQ(Counters().resets, 1u);
  EXPECT_EQ(Counters().reset.count, 1u);
}

TEST_F(ProxyTest, TwoConnectionsOfOneLeaseSeeEachOthersCommittedWork) {
  LeaseInfo l = Lease();
  pg::Connection a = Connect(l), b = Connect(l);
  a.Exec("INSERT INTO items (label) VALUES ('from-a')");
  EXPECT_EQ(One(b, "SELECT count(*) FROM items WHERE label = 'from-a'"), "1");
  b.Exec("BEGIN");
  b.Exec("INSERT INTO items (label) VALUES ('from-b')");
  b.Exec("COMMIT");
  EXPECT_EQ(One(a, "SELECT count(*) FROM items"), "4");
}

TEST_F(ProxyTest, NestedTransactionsBehaveAsOnARealServer) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  c.Exec("BEGIN");
  EXPECT_EQ(c.TransactionStatus(), 'T');
  c.Exec("INSERT INTO items (label) VALUES ('kept')");
  c.Exec("SAVEPOINT s1");
  c.Exec("INSERT INTO items (label) VALUES ('undone')");
  c.Exec("ROLLBACK TO SAVEPOINT s1");
  c.Exec("RELEASE SAVEPOINT s1");
  c.Exec("COMMIT");
  EXPECT_EQ(c.TransactionStatus(), 'I');
  EXPECT_EQ(One(c, "SELECT string_agg(label, ',' ORDER BY id) FROM items"), "seed-a,seed-b,kept");

  c.Exec("BEGIN");
  c.Exec("INSERT INTO items (label) VALUES ('rolled-back')");
  c.Exec("ROLLBACK");
  EXPECT_EQ(One(c, "SELECT count(*) FROM items WHERE label = 'rolled-back'"), "0");

  // An error inside a block fails the block until it ends, as on a server.
  c.Exec("BEGIN");
  c.Exec("INSERT INTO items (label) VALUES ('doomed')");
  EXPECT_EQ(SqlStateOf(c, "INSERT INTO items (label) VALUES ('kept')"), "23505");
  EXPECT_EQ(c.TransactionStatus(), 'E');
  EXPECT_EQ(SqlStateOf(c, "SELECT 1"), "25P02");
  c.Exec("COMMIT");  // commits nothing: the block failed
  EXPECT_EQ(c.TransactionStatus(), 'I');
  EXPECT_EQ(One(c, "SELECT count(*) FROM items WHERE label = 'doomed'"), "0");

  // Transaction control outside a block: warnings, not errors; savepoints: the server's error.
  c.ClearNotices();
  c.Exec("COMMIT");
  ASSERT_FALSE(c.notices().empty());
  EXPECT_NE(c.notices().back().message.find("no transaction in progress"), std::string::npos);
  EXPECT_EQ(SqlStateOf(c, "SAVEPOINT nowhere"), "25P01");
  EXPECT_EQ(SqlStateOf(c, "BEGIN; SAVEPOINT testpool_i"), "3B001");
  c.Exec("ROLLBACK");
  EXPECT_EQ(c.TransactionStatus(), 'I');
}

TEST_F(ProxyTest, AnErrorInAnImplicitTransactionIsReportedAndTheSessionGoesOn) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  c.Exec("INSERT INTO items (label) VALUES ('before')");
  EXPECT_EQ(SqlStateOf(c, "INSERT INTO items (label) VALUES ('x'); SELECT 1/0"), "22012");
  EXPECT_EQ(c.TransactionStatus(), 'I');
  EXPECT_EQ(One(c, "SELECT count(*) FROM items WHERE label IN ('before', 'x')"), "1");  // 'x' went with the error
  c.Exec("INSERT INTO items (label) VALUES ('after')");
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "4");
}

TEST_F(ProxyTest, StatementsThatCannotRunInATransactionBlockGetAClearError) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  for (const char* sql : {"VACUUM", "CREATE DATABASE nope", "CREATE INDEX CONCURRENTLY i ON items (label)",
                          "ALTER SYSTEM SET work_mem = '8MB'"}) {
    try {
      c.Exec(sql);
      ADD_FAILURE() << sql << " ran";
    } catch (const pg::PgError& e) {
      EXPECT_EQ(e.sqlstate(), "25001") << sql;
      EXPECT_NE(std::string(e.what()).find("rollback"), std::string::npos) << e.what();
    }
    EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "2");  // the session goes on
  }
}

TEST_F(ProxyTest, PreparedStatementsOfTheSameNameFromTwoConnectionsDoNotCollide) {
  LeaseInfo l = Lease();
  pg::Connection a = Connect(l), b = Connect(l);
  EXPECT_EQ(std::string(a.ExecPrepared("q", "SELECT $1::int + 1", {"1"}).Get(0, 0)), "2");
  EXPECT_EQ(std::string(b.ExecPrepared("q", "SELECT label FROM items WHERE id = $1", {"1"}).Get(0, 0)), "seed-a");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(std::string(a.ExecPrepared("q", "SELECT $1::int + 1", {"41"}).Get(0, 0)), "42");
    EXPECT_EQ(std::string(b.ExecPrepared("q", "SELECT label FROM items WHERE id = $1", {"2"}).Get(0, 0)), "seed-b");
  }
}

TEST_F(ProxyTest, CopyInAndOut) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  std::string data;
  for (int i = 0; i < 20000; ++i) data += std::to_string(i) + "\n";
  EXPECT_EQ(c.CopyIn("COPY big (n) FROM STDIN", data), 20000);
  EXPECT_EQ(One(c, "SELECT sum(n) FROM big"), "199990000");
  testing::CliResult r =
      testing::RunCommand({"psql", "-X", "-q", "-c", "COPY (SELECT n FROM big ORDER BY n) TO STDOUT"}, PgEnv(l));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, data);
}

TEST_F(ProxyTest, CancelStopsALongQueryAndTheSessionGoesOn) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  std::thread canceller([&c] {
    std::this_thread::sleep_for(300ms);
    c.Cancel();
  });
  std::string code = SqlStateOf(c, "SELECT pg_sleep(30)");
  canceller.join();
  EXPECT_EQ(code, "57014");
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "2");
}

TEST_F(ProxyTest, WrongPasswordAndUnknownLeaseAreRefused) {
  LeaseInfo l = Lease();
  pg::ConnInfo bad = pg::ConnInfo::Parse(l.dsn);
  bad.Set("password", "not-the-password");
  try {
    pg::Connection::Open(bad, 10s);
    ADD_FAILURE() << "connected with a wrong password";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("password authentication failed"), std::string::npos) << e.what();
  }
  pg::ConnInfo unknown = pg::ConnInfo::Parse(l.dsn);
  unknown.Set("user", "tp_r_nobody_1");
  try {
    pg::Connection::Open(unknown, 10s);
    ADD_FAILURE() << "connected as an unknown role";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("no testpool lease"), std::string::npos) << e.what();
  }
  // The lease's DSN never reaches the server directly: the role's server password is another.
  pg::ConnInfo direct = pg::ConnInfo::Parse(l.dsn);
  const pg::ConnInfo server = testing::Server().ClientConnInfo();
  direct.Set("host", server.Get("host")).Set("port", server.Get("port"));
  EXPECT_THROW(pg::Connection::Open(direct, 10s), std::exception);
  EXPECT_GE(proxy_->stats().connections_refused, 2u);
}

TEST_F(ProxyTest, AKilledClientDoesNotBreakTheLease) {
  LeaseInfo l = Lease();
  // psql opens a block, writes, and is killed before it ends the block.
  testing::CliResult r = testing::RunCommand(
      {"psql", "-X", "-q", "-c", "BEGIN; INSERT INTO items (label) VALUES ('orphan'); SELECT pg_sleep(30)"}, PgEnv(l),
      "", 2s);
  EXPECT_EQ(r.exit_code, -1);  // killed by the timeout, mid-block
  pg::Connection c = Connect(l);
  ASSERT_TRUE(WaitFor([&] { return One(c, "SELECT count(*) FROM items WHERE label = 'orphan'") == "0"; }, 30s));
  c.Exec("INSERT INTO items (label) VALUES ('fine')");
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "3");
}

TEST_F(ProxyTest, AClientWaitsForAnotherClientsBlockThenGetsAClearError) {
  LeaseInfo l = Lease();
  pg::Connection a = Connect(l), b = Connect(l);
  a.Exec("BEGIN");
  a.Exec("INSERT INTO items (label) VALUES ('in-a-block')");
  EXPECT_EQ(SqlStateOf(b, "SELECT 1"), "55P03");  // client_wait is 2 s here
  a.Exec("COMMIT");
  EXPECT_EQ(One(b, "SELECT count(*) FROM items"), "3");
}

// A statement-only unit (PQprepare's Parse … Sync) of one client runs inside another client's
// idle block. When it breaks the protocol half-way, that client alone is closed (FATAL 08P01);
// the block's holder gets the server back for its next statement, and the closed client's
// prepared statement is closed on the server once the block ends.
TEST_F(ProxyTest, AProtocolErrorInsideAnInterleavedUnitClosesThatClientAndTheBlockGoesOn) {
  LeaseInfo l = Lease();
  RawClient a(dir_.path(), proxy_->port(), l), b(dir_.path(), proxy_->port(), l);
  EXPECT_EQ(Types(a.Query("BEGIN")), "CZT");
  EXPECT_EQ(Types(a.Query("INSERT INTO items (label) VALUES ('held')")), "CZT");
  MessageBuilder truncated('P');  // a Parse whose body ends after the statement name
  truncated.CString("broken");
  b.Send(EncodeParse("fine", "SELECT 1", {}) + truncated.Finish() + EncodeSync());
  std::vector<RawMessage> got = b.UntilReady();
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(Types({got.back()}), "E/08P01/");
  EXPECT_FALSE(b.Next());
  EXPECT_TRUE(b.eof());
  ASSERT_EQ(Types(a.Query("INSERT INTO items (label) VALUES ('after')")), "CZT");  // the server came back
  EXPECT_EQ(Types(a.Query("COMMIT")), "CZI");
  EXPECT_EQ(FirstValue(a.Query("SELECT count(*) FROM items WHERE label IN ('held', 'after')")), "2");
  EXPECT_EQ(FirstValue(a.Query("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'c%\\_fine'")), "0");
}

TEST_F(ProxyTest, ABlockOpenAcrossAResetIsDiscarded) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  c.Exec("BEGIN");
  c.Exec("INSERT INTO items (label) VALUES ('gone')");
  pools_->Reset(l.id);
  EXPECT_EQ(SqlStateOf(c, "SELECT 1"), "25P02");
  c.Exec("ROLLBACK");
  EXPECT_EQ(c.TransactionStatus(), 'I');
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "2");
}

TEST_F(ProxyTest, ReleaseHandsTheSlotOutAgainInTemplateStateWithoutAClone) {
  const core::PoolCounters before = Counters();
  LeaseInfo first = Lease();
  std::string slot = first.slot_id;
  {
    pg::Connection c = Connect(first);
    c.Exec("INSERT INTO items (label) VALUES ('first-lease')");
    c.Exec("SELECT nextval('counter')");
    c.Exec("SELECT nextval('counter')");
  }
  pools_->Release(first.id);
  EXPECT_THROW(pg::Connection::Open(first.dsn, 5s), std::exception);  // its credentials are gone
  ASSERT_TRUE(WaitFor([&] { return Counters().recycles_rolled_back > before.recycles_rolled_back; }));
  // Lease every ready slot until the released one comes back.
  std::vector<LeaseInfo> taken;
  LeaseInfo again;
  for (int i = 0; i < 4 && again.id.empty(); ++i) {
    LeaseInfo l = Lease();
    (l.slot_id == slot ? again : taken.emplace_back()) = l;
  }
  ASSERT_FALSE(again.id.empty());
  EXPECT_GT(again.token, first.token);
  EXPECT_NE(again.user, first.user);
  pg::Connection c = Connect(again);
  EXPECT_EQ(One(c, "SELECT count(*) FROM items"), "2");
  EXPECT_EQ(One(c, "SELECT nextval('counter')"), "100");
  EXPECT_EQ(Counters().recycles_cloned, before.recycles_cloned);
}

TEST_F(ProxyTest, ALostPinnedSessionIsReportedAndTheSlotIsRecycledByClone) {
  LeaseInfo l = Lease();
  pg::Connection c = Connect(l);
  c.Exec("INSERT INTO items (label) VALUES ('lost')");
  pg::Connection admin = pg::Connection::Open(testing::Admin());
  admin.Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", {l.user});
  ASSERT_TRUE(WaitFor([&] { return proxy_->stats().sessions_lost >= 1; }, 30s));
  try {
    c.Exec("SELECT 1");
    ADD_FAILURE() << "the lease's connection still works";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("lost the pinned server session"), std::string::npos) << e.what();
  }
  const core::PoolCounters before = Counters();
  pools_->Release(l.id);
  ASSERT_TRUE(WaitFor([&] { return Counters().recycles_cloned > before.recycles_cloned; }));
}

TEST_F(ProxyTest, PsqlScriptWithTransactionsAndErrors) {
  LeaseInfo l = Lease();
  const std::string script =
      "\\set ON_ERROR_STOP 0\n"
      "BEGIN;\nINSERT INTO items (label) VALUES ('p1');\nSAVEPOINT a;\nSELECT 1/0;\nROLLBACK TO a;\n"
      "INSERT INTO items (label) VALUES ('p2');\nCOMMIT;\n"
      "SELECT string_agg(label, ',' ORDER BY id) FROM items;\n";
  for (bool unix_socket : {false, true}) {
    testing::CliResult r = testing::RunCommand({"psql", "-X", "-A", "-t", "-q"}, PgEnv(l, unix_socket), script);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("division by zero"), std::string::npos) << r.err;
    if (!unix_socket) {
      EXPECT_EQ(r.out, "seed-a,seed-b,p1,p2\n");
    }
    pools_->Reset(l.id);
  }
}

TEST_F(ProxyTest, PsycopgTransactionsPreparedStatementsAndCopy) {
  LeaseInfo l = Lease();
  const std::string script = R"py(
import os, psycopg
dsn = os.environ["LEASE_DSN"]
with psycopg.connect(dsn) as conn:              # not autocommit: psycopg sends BEGIN itself
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items (label) VALUES (%s)", ("py-1",))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    conn.commit()
    assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.cursor() as cur:
        cur.execute("INSERT INTO items (label) VALUES (%s)", ("py-rolled-back",))
    conn.rollback()
    try:
        with conn.transaction():
            conn.execute("INSERT INTO items (label) VALUES ('seed-a')")
    except psycopg.errors.UniqueViolation:
        pass
    for i in range(10):                          # prepared server-side after 5 executions
        conn.execute("SELECT label FROM items WHERE id = %s", (1,), prepare=True).fetchone()
    with conn.cursor() as cur:
        with cur.copy("COPY big (n) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i,))
    conn.commit()
with psycopg.connect(dsn, autocommit=True) as conn:
    labels = [r[0] for r in conn.execute("SELECT label FROM items ORDER BY id")]
    assert labels == ["seed-a", "seed-b", "py-1"], labels
    assert conn.execute("SELECT count(*) FROM big").fetchone()[0] == 1000
    with conn.pipeline():
        for i in range(5):
            conn.execute("SELECT %s::int", (i,))
print("ok")
)py";
  testing::CliResult r = testing::RunCommand({kPython, "-c", script}, {{"LEASE_DSN", l.dsn}});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ok\n") << r.err;
}

TEST_F(ProxyTest, PgbenchSeveralClientsOnOneLeaseInEveryQueryMode) {
  LeaseInfo l = Lease();
  // -I dtgp: no vacuum (it cannot run in a transaction block), no foreign keys.
  testing::CliResult init = testing::RunCommand({"pgbench", "-i", "-I", "dtgp", "-s", "1", "-q"}, PgEnv(l));
  ASSERT_EQ(init.exit_code, 0) << init.err;
  for (const char* mode : {"simple", "extended", "prepared"}) {
    testing::CliResult r =
        testing::RunCommand({"pgbench", "-n", "-M", mode, "-c", "4", "-j", "2", "-t", "50"}, PgEnv(l));
    EXPECT_EQ(r.exit_code, 0) << mode << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("number of transactions actually processed: 200/200"), std::string::npos) << mode << r.out;
  }
  pools_->Reset(l.id);
  pg::Connection c = Connect(l);
  EXPECT_EQ(One(c, "SELECT to_regclass('pgbench_accounts') IS NULL"), "t");
}

}  // namespace
}  // namespace testpool::proxy
