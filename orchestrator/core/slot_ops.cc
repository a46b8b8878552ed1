#include "orchestrator/core/slot_ops.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::core {
namespace {

constexpr const char* kLeaseRoleAttributes = " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE INHERIT PASSWORD ";

// SCRAM iterations in a lease role's secret. A lease password is a 160-bit random token: key
// stretching (PostgreSQL's default is 4096) cannot make guessing it any harder, but its cost is
// paid by the daemon for every role and by the test worker on every connect (≈ 3 ms of CPU each
// at 4096 on this class of machine).
constexpr int kLeaseScramIterations = 16;

std::string LeaseSecret(const std::string& password) {
  return util::ScramSha256Secret(password, kLeaseScramIterations);
}

}  // namespace

std::string WriteMarks::Encode() const { return "tup=" + counters + ";seq=" + sequences; }

WriteMarks WriteMarks::Decode(const std::string& text) {
  const auto semi = text.find(";seq=");
  if (text.rfind("tup=", 0) != 0 || semi == std::string::npos) return {};
  return WriteMarks{text.substr(4, semi - 4), text.substr(semi + 5)};
}

SlotOps::SlotOps(const pg::ConnInfo& server, std::function<void(int)> background, int max_idle)
    : server_(server),
      background_(std::move(background)),
      max_readers_(max_idle),
      admin_(At("postgres"), max_idle, std::chrono::seconds(10),
             [this](pg::Connection& c) { background_(c.BackendPid()); }) {}

pg::ConnInfo SlotOps::At(const std::string& db) const {
  pg::ConnInfo c = server_;
  c.Set("dbname", db);
  return c;
}

void SlotOps::CloneDatabase(const std::string& db, const std::string& template_db) {
  TakeReader(template_db).reset();  // the source must have no other session (a lease's, for a checkpoint)
  auto conn = admin_.Acquire();
  std::string q = conn->QuoteIdent(db);
  // CREATE DATABASE cannot share a query string (an implicit transaction) with anything else.
  conn->Exec("CREATE DATABASE " + q + " TEMPLATE " + conn->QuoteIdent(template_db) + " STRATEGY FILE_COPY");
  conn->Exec("REVOKE ALL ON DATABASE " + q + " FROM PUBLIC");
}

void SlotOps::PrepareRole(const std::string& db, const std::string& role, const std::string& password) {
  auto conn = admin_.Acquire();
  const std::string r = conn->QuoteIdent(role);
  // CREATE/ALTER ROLE take no parameters: the verifier goes as a quoted literal.
  const std::string verifier = conn->QuoteLiteral(LeaseSecret(password));
  const std::string grant = "; GRANT CONNECT, TEMPORARY ON DATABASE " + conn->QuoteIdent(db) + " TO " + r;
  // CREATE or ALTER decided up front rather than by trying CREATE: the server writes a failed
  // statement to its log whole (log_min_error_statement), and this one holds the role's SCRAM
  // verifier. The role exists when left by a daemon that stopped between creating it and
  // recording the slot ready, or when a reset re-clones the slot under the same role.
  if (conn->Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}).rows() == 0) {
    conn->Exec("CREATE ROLE " + r + kLeaseRoleAttributes + verifier + " IN ROLE " + kSlotOwnerRole + grant);
  } else {
    conn->Exec("ALTER ROLE " + r + kLeaseRoleAttributes + verifier + "; GRANT " + kSlotOwnerRole + " TO " + r + grant);
  }
}

void SlotOps::HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                       const std::string& password) {
  auto conn = admin_.Acquire();
  const std::string from = conn->QuoteIdent(old_role), to = conn->QuoteIdent(role), d = conn->QuoteIdent(db);
  const std::string verifier = conn->QuoteLiteral(LeaseSecret(password));
  // One query string is one transaction: the new role exists exactly when the old one is gone.
  conn->Exec("CREATE ROLE " + to + kLeaseRoleAttributes + verifier + " IN ROLE " + kSlotOwnerRole +
             "; GRANT CONNECT, TEMPORARY ON DATABASE " + d + " TO " + to + "; REVOKE ALL ON DATABASE " + d + " FROM " +
             from + "; DROP ROLE " + from);
}

void SlotOps::WaitNoSessions(const char* column, const std::string& value, int except_pid) {
  auto conn = admin_.Acquire();
  // Terminate on every round, not only once: a connection that was mid-handshake when we looked
  // can finish authenticating after the first terminate. One statement per round: it terminates
  // what it sees and says how many it saw.
  const std::string sql = std::string("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE ") + column +
                          " = $1 AND pid <> pg_backend_pid() AND pid <> $2::int";
  const util::MonoTime deadline = util::RealMonoNow() + std::chrono::seconds(30);  // a real wait (util/clock.h)
  // A terminated backend is gone within a fraction of a millisecond on an idle server: look again
  // soon, then less and less often (a reset's clean check waits here).
  for (auto pause = std::chrono::microseconds(100);; pause = std::min(pause * 2, std::chrono::microseconds(2000))) {
    if (conn->ExecPrepared(std::string("tp_wait_") + column, sql, {value, std::to_string(except_pid)}).Get(0, 0) == "0") {
      return;
    }
    if (util::RealMonoNow() > deadline) {
      throw Error(ErrorCode::kTimeout, std::string("sessions of ") + column + " '" + value + "' did not end within 30 s");
    }
    std::this_thread::sleep_for(pause);
  }
}

void SlotOps::CutOff(const std::string& role) {
  {
    auto conn = admin_.Acquire();
    try {
      // NOLOGIN alone is not enough: a handshake reads the stored password before it checks
      // rolcanlogin, so one that straddled a later "LOGIN PASSWORD new" would get in with the old
      // password. With no password stored, no handshake can succeed any more.
      conn->Exec("ALTER ROLE " + conn->QuoteIdent(role) + " NOLOGIN PASSWORD NULL");
    } catch (const pg::PgError& e) {
      if (e.sqlstate() == pg::sqlstate::kUndefinedObject) return;  // already gone
      throw;
    }
  }
  WaitNoSessions("usename", role);
}

void SlotOps::EndSessions(const std::string& db) { WaitNoSessions("datname", db, ReaderPid(db)); }

std::string SlotOps::Counters(const std::string& db) {
  WaitNoSessions("datname", db, ReaderPid(db));
  auto conn = admin_.Acquire();
  // The server's start time goes with the counters: a server that restarted after a crash has
  // discarded every statistic, so counters from before and after it must never compare equal
  // (a lease's writes would otherwise pass for none, and the next lease would get them).
  pg::Result r = conn->ExecPrepared("tp_counters_since",
                                    "SELECT coalesce(d.tup_inserted, 0), coalesce(d.tup_updated, 0), "
                                    "coalesce(d.tup_deleted, 0), extract(epoch FROM pg_postmaster_start_time()) "
                                    "FROM (SELECT 1) one LEFT JOIN pg_stat_database d ON d.datname = $1",
                                    {db});
  return std::string(r.Get(0, 0)) + ":" + std::string(r.Get(0, 1)) + ":" + std::string(r.Get(0, 2)) + "@" +
         std::string(r.Get(0, 3));
}

std::unique_ptr<pg::Connection> SlotOps::TakeReader(const std::string& db) {
  std::lock_guard<std::mutex> lock(readers_mu_);
  auto it = readers_.find(db);
  if (it == readers_.end()) return nullptr;
  std::unique_ptr<pg::Connection> conn = std::move(it->second.conn);
  readers_.erase(it);
  return conn;
}

void SlotOps::KeepReader(const std::string& db, std::unique_ptr<pg::Connection> conn) {
  std::unique_ptr<pg::Connection> evicted;  // closed outside the lock
  std::lock_guard<std::mutex> lock(readers_mu_);
  if (max_readers_ <= 0) return;
  if (readers_.size() >= static_cast<size_t>(max_readers_) && !readers_.count(db)) {
    auto oldest = std::min_element(readers_.begin(), readers_.end(), [](const auto& a, const auto& b) {
      return a.second.last_used < b.second.last_used;
    });
    evicted = std::move(oldest->second.conn);
    readers_.erase(oldest);
  }
  const int pid = conn->BackendPid();
  readers_[db] = Reader{std::move(conn), pid, ++reader_uses_};
}

int SlotOps::ReaderPid(const std::string& db) {
  std::lock_guard<std::mutex> lock(readers_mu_);
  auto it = readers_.find(db);
  return it == readers_.end() ? 0 : it->second.pid;
}

std::string SlotOps::SequenceDigest(const std::string& db) {
  static constexpr const char* kSql =
      "SELECT string_agg(format('%I.%I=%s', schemaname, sequencename, coalesce(last_value::text, '-')), ',' "
      "ORDER BY schemaname, sequencename) FROM pg_sequences";
  std::unique_ptr<pg::Connection> conn = TakeReader(db);
  std::optional<pg::Result> read;
  if (conn) {
    try {
      read = conn->ExecPrepared("tp_sequences", kSql, {});
    } catch (const pg::PgError&) {
      conn.reset();  // ended meanwhile (a terminate, a restart): a fresh one below
    }
  }
  if (!conn) {
    conn = std::make_unique<pg::Connection>(pg::Connection::Open(At(db)));
    background_(conn->BackendPid());
    read = conn->ExecPrepared("tp_sequences", kSql, {});
  }
  const pg::Result& r = *read;
  util::Sha256 h;
  h.Update(r.IsNull(0, 0) ? std::string_view() : r.Get(0, 0));
  std::string digest = h.HexDigest().substr(0, 16);
  KeepReader(db, std::move(conn));
  return digest;
}

bool SlotOps::Unchanged(const std::string& db, const WriteMarks& baseline) {
  if (baseline.empty() || Counters(db) != baseline.counters) return false;
  return SequenceDigest(db) == baseline.sequences;
}

void SlotOps::DropDatabase(const std::string& db) {
  TakeReader(db).reset();
  auto conn = admin_.Acquire();
  conn->Exec("DROP DATABASE IF EXISTS " + conn->QuoteIdent(db) + " WITH (FORCE)");
}

void SlotOps::DropRole(const std::string& role) {
  auto conn = admin_.Acquire();
  if (conn->Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}).rows() == 0) return;
  conn->Exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", {role});
  conn->Exec("DROP ROLE IF EXISTS " + conn->QuoteIdent(role));
}

std::vector<std::string> SlotOps::ListDatabases(const std::string& prefix) {
  auto conn = admin_.Acquire();
  pg::Result r = conn->Exec("SELECT datname FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1", {prefix});
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

std::vector<std::string> SlotOps::ListRoles(const std::string& prefix) {
  auto conn = admin_.Acquire();
  pg::Result r = conn->Exec("SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1", {prefix});
  std::vector<std::string> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.Get(i, 0));
  return out;
}

}  // namespace testpool::core
