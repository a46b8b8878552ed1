#include "tests/support/proxy_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "orchestrator/proxy/scram.h"
#include "orchestrator/util/crypto.h"

namespace testpool::testing {
namespace {

using namespace std::chrono_literals;
using Steady = std::chrono::steady_clock;

int MillisLeft(Steady::time_point until) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Steady::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// Waits for `events` on `fd` until `until`; true when they came.
bool PollUntil(int fd, short events, Steady::time_point until) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, MillisLeft(until));
    if (r < 0 && errno == EINTR) continue;
    return r > 0;
  }
}

// The template every test leases from: a table with seed rows, so a test can see that what a
// hostile client did was undone (or not).
constexpr const char* kSchemaSql = "CREATE TABLE items (id serial PRIMARY KEY, label text NOT NULL);\n";
constexpr const char* kSeedSql = "INSERT INTO items (label) VALUES ('seed-a'), ('seed-b');\n";

}  // namespace

bool WaitFor(const std::function<bool()>& done, std::chrono::milliseconds bound) {
  const auto until = Steady::now() + bound;
  while (!done()) {
    if (Steady::now() >= until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

size_t OpenFds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n - 1;  // the iterator's own descriptor
}

size_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<size_t>(::sysconf(_SC_PAGESIZE));
}

size_t RaiseFdLimit(size_t want) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur != RLIM_INFINITY && r.rlim_cur < want) {
    r.rlim_cur = r.rlim_max == RLIM_INFINITY ? want : std::min<rlim_t>(want, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
    ::getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur == RLIM_INFINITY ? SIZE_MAX : static_cast<size_t>(r.rlim_cur);
}

// ---- RawSocket --------------------------------------------------------------------------------

RawSocket RawSocket::Tcp(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  RawSocket s(fd);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return s;
}

RawSocket RawSocket::Unix(const std::filesystem::path& dir, int port) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  RawSocket s(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  const std::string path = (dir / (".s.PGSQL." + std::to_string(port))).string();
  if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
  }
  return s;
}

RawSocket::RawSocket(RawSocket&& other) noexcept
    : fd_(other.fd_), reader_(std::move(other.reader_)), closed_(other.closed_) {
  other.fd_ = -1;
}

RawSocket& RawSocket::operator=(RawSocket&& other) noexcept {
  if (this != &other) {
    Close();
    fd_ = other.fd_;
    reader_ = std::move(other.reader_);
    closed_ = other.closed_;
    other.fd_ = -1;
  }
  return *this;
}

RawSocket::~RawSocket() { Close(); }

void RawSocket::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void RawSocket::ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

bool RawSocket::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

size_t RawSocket::SendUntilStalled(std::string_view bytes, std::chrono::milliseconds stall) {
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;  // closed by the proxy
    if (!PollUntil(fd_, POLLOUT, Steady::now() + stall)) break;   // it stopped reading
  }
  return sent;
}

char RawSocket::ReadByte(std::chrono::milliseconds bound) {
  if (!PollUntil(fd_, POLLIN, Steady::now() + bound)) return 0;
  char c = 0;
  return ::recv(fd_, &c, 1, 0) == 1 ? c : 0;
}

std::optional<RawMessage> RawSocket::Next(std::chrono::milliseconds bound) {
  const auto until = Steady::now() + bound;
  for (;;) {
    if (std::optional<proxy::MessageView> m = reader_.Next()) return RawMessage{m->type, std::string(m->body)};
    if (closed_) return std::nullopt;
    if (!PollUntil(fd_, POLLIN, until)) return std::nullopt;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      closed_ = true;  // EOF, or reset by a proxy that closed with our bytes unread
      continue;
    }
    reader_.Feed(std::string_view(buf, static_cast<size_t>(n)));
  }
}

std::vector<RawMessage> RawSocket::UntilReady(std::chrono::milliseconds bound) {
  std::vector<RawMessage> out;
  while (std::optional<RawMessage> m = Next(bound)) {
    out.push_back(std::move(*m));
    if (out.back().type == 'Z') break;
  }
  return out;
}

std::string RawSocket::UntilClosed(std::chrono::milliseconds bound) {
  const auto until = Steady::now() + bound;
  std::vector<RawMessage> got;
  while (!closed_ && Steady::now() < until) {
    if (std::optional<RawMessage> m = Next(std::chrono::milliseconds(MillisLeft(until)))) got.push_back(std::move(*m));
  }
  return Types(got) + (closed_ ? "|closed" : "|open");
}

void RawSocket::Login(const std::string& user, const std::string& database, const std::string& password) {
  proxy::StartupMessage startup;
  startup.protocol = proxy::kProtocolV3;
  startup.params = {{"user", user}, {"database", database}};
  Send(proxy::EncodeStartupMessage(startup));
  proxy::ScramClient scram(password, proxy::MakeScramNonce());
  for (;;) {
    std::optional<RawMessage> m = Next();
    if (!m) throw std::runtime_error("the proxy did not finish the login");
    if (m->type == 'E') {
      throw std::runtime_error("login refused: " + std::string(proxy::ParseFields(m->body).Get('M')));
    }
    if (m->type == 'Z') return;
    if (m->type != 'R') continue;
    proxy::Authentication a = proxy::ParseAuthentication(m->body);
    if (a.code == 10) Send(proxy::EncodeSaslInitialResponse("SCRAM-SHA-256", scram.ClientFirst()));
    if (a.code == 11) Send(proxy::EncodeSaslResponse(scram.HandleServerFirst(a.data)));
    if (a.code == 12) scram.VerifyServerFinal(a.data);
  }
}

std::string Types(const std::vector<RawMessage>& ms) {
  std::string out;
  for (const RawMessage& m : ms) {
    out += m.type;
    if (m.type == 'E') out += "/" + std::string(proxy::ParseFields(m.body).Get('C')) + "/";
    if (m.type == 'Z') out += m.body;
  }
  return out;
}

// ---- PgProbe ----------------------------------------------------------------------------------

PgProbe::PgProbe(const std::string& conninfo, std::chrono::milliseconds bound) {
  const auto until = Steady::now() + bound;
  conn_ = PQconnectStart(conninfo.c_str());
  if (conn_ == nullptr) throw std::runtime_error("PQconnectStart: out of memory");
  if (PQstatus(conn_) == CONNECTION_BAD) {
    std::string why = PQerrorMessage(conn_);
    PQfinish(conn_);
    throw std::runtime_error(why);
  }
  for (PostgresPollingStatusType st = PGRES_POLLING_WRITING;;) {
    if (st == PGRES_POLLING_OK) return;
    const short want = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (st == PGRES_POLLING_FAILED || !PollUntil(PQsocket(conn_), want, until)) {
      std::string why = st == PGRES_POLLING_FAILED ? PQerrorMessage(conn_) : "timed out";
      PQfinish(conn_);
      throw std::runtime_error(why);
    }
    st = PQconnectPoll(conn_);
  }
}

PgProbe::~PgProbe() { PQfinish(conn_); }

std::string PgProbe::Value(const std::string& sql, std::chrono::milliseconds bound) {
  const auto until = Steady::now() + bound;
  if (PQsendQuery(conn_, sql.c_str()) != 1) return std::string("ERROR send: ") + PQerrorMessage(conn_);
  std::string value, error;
  for (;;) {
    if (PQflush(conn_) < 0) return std::string("ERROR flush: ") + PQerrorMessage(conn_);
    while (PQisBusy(conn_) == 0) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) return error.empty() ? value : error;
      if (PQresultStatus(r) == PGRES_FATAL_ERROR) {
        const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        error = "ERROR " + std::string(state ? state : "?????") + ": " + PQresultErrorMessage(r);
      } else if (PQntuples(r) > 0 && PQnfields(r) > 0) {
        value = PQgetvalue(r, 0, 0);
      }
      PQclear(r);
    }
    if (!PollUntil(PQsocket(conn_), POLLIN, until)) return "TIMEOUT";
    if (PQconsumeInput(conn_) != 1) return std::string("ERROR read: ") + PQerrorMessage(conn_);
  }
}

std::string ValueOnNewConnection(const std::string& conninfo, const std::string& sql) {
  try {
    PgProbe p(conninfo);
    return p.Value(sql);
  } catch (const std::exception& e) {
    return std::string("CONNECT: ") + e.what();
  }
}

// ---- HostileProxyTest -------------------------------------------------------------------------

void HostileProxyTest::SetUp() {
  store_ = core::ControlStore::Open(Server().AdminConnInfo());
  builder_ = std::make_unique<core::TemplateBuilder>(*store_, clock_);
  service_ = std::make_unique<core::TemplateService>(*store_, *builder_);
  proxy::ProxyOptions po;
  po.port = 0;
  po.socket_dir = dir_.path();
  const pg::ConnInfo admin = Server().AdminConnInfo();
  po.server_host = admin.Get("host");
  po.server_port = std::stoi(admin.Get("port"));
  po.client_wait = client_wait_;
  Tune(po);
  client_wait_ = po.client_wait;
  proxy_ = std::make_unique<proxy::Proxy>(po);
  proxy_->Start();
  core::PoolOptions o;
  o.max_databases = 20;
  o.recycler_threads = 1;
  pools_ = std::make_unique<core::PoolManager>(*store_, Server(), clock_, o);
  pools_->SetPinnedSessions(proxy_.get());
  pools_->Start();
  service_->SetListener(pools_.get());
  name_ = "hostile_" + util::RandomToken(6);
  core::TemplateSpec spec;
  spec.name = name_;
  spec.migrations = {{"0001_schema.sql", kSchemaSql}};
  spec.seed = {{"seed.sql", kSeedSql}};
  spec.pool.min_ready = 2;
  spec.pool.max = 2;  // both leased below: no slot warms while a test counts descriptors
  spec.recycle = "rollback";
  service_->Put(spec, true);
  core::LeaseRequest r;
  r.template_name = name_;
  r.wait = 60s;
  hostile_ = pools_->Acquire(r);
  victim_ = pools_->Acquire(r);
  victim_conn_ = std::make_unique<PgProbe>(victim_.dsn);
  ASSERT_EQ(victim_conn_->Value("SELECT 1"), "1");
  baseline_fds_ = OpenFds();
}

void HostileProxyTest::TearDown() {
  victim_conn_.reset();
  for (const core::LeaseInfo* l : {&hostile_, &victim_}) {
    try {
      if (!l->id.empty()) pools_->Release(l->id);
    } catch (const std::exception&) {
    }
  }
  try {
    service_->Drop(name_, false);
  } catch (const std::exception&) {
  }
  if (pools_) pools_->Stop();
  service_.reset();
  pools_.reset();
  proxy_.reset();
  builder_.reset();
  store_.reset();
}

void HostileProxyTest::ExpectOthersServed() {
  EXPECT_EQ(victim_conn_->Value("SELECT 1"), "1") << "the other lease's open connection was not served";
  EXPECT_EQ(ValueOnNewConnection(victim_.dsn, "SELECT 1"), "1") << "a new connection of the other lease was not served";
}

void HostileProxyTest::ExpectHostileLeaseServes() {
  EXPECT_EQ(ValueOnNewConnection(hostile_.dsn, "SELECT string_agg(label, ',' ORDER BY id) FROM items"),
            "seed-a,seed-b");
}

void HostileProxyTest::ExpectFdsBackToBaseline() {
  size_t now = 0;
  EXPECT_TRUE(WaitFor([&] { return (now = OpenFds()) <= baseline_fds_; }))
      << now << " descriptors open, " << baseline_fds_ << " before the test's hostile clients";
}

RawSocket HostileProxyTest::LoggedIn() const {
  RawSocket s = Connect();
  s.Login(hostile_.user, hostile_.database, hostile_.password);
  return s;
}

std::string HostileProxyTest::Startup() const {
  proxy::StartupMessage m;
  m.protocol = proxy::kProtocolV3;
  m.params = {{"user", hostile_.user}, {"database", hostile_.database}};
  return proxy::EncodeStartupMessage(m);
}

}  // namespace testpool::testing
