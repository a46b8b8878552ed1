#include "orchestrator/core/slot_ops.h"

#include <thread>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::core {

SlotOps::SlotOps(ControlStore& store) : store_(store), admin_(store.AdminConnInfo("postgres"), /*max_idle=*/8) {}

void SlotOps::CloneDatabase(const std::string& db, const std::string& template_db) {
  auto conn = admin_.Acquire();
  std::string q = conn->QuoteIdent(db);
  conn->Exec("CREATE DATABASE " + q + " TEMPLATE " + conn->QuoteIdent(template_db) + " STRATEGY FILE_COPY");
  conn->Exec("REVOKE ALL ON DATABASE " + q + " FROM PUBLIC");
}

void SlotOps::PrepareRole(const std::string& db, const std::string& role, const std::string& password) {
  {
    auto conn = admin_.Acquire();
    std::string r = conn->QuoteIdent(role);
    bool exists = conn->Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}).rows() == 1;
    // CREATE/ALTER ROLE take no parameters: the password goes as a quoted literal.
    conn->Exec(std::string(exists ? "ALTER ROLE " : "CREATE ROLE ") + r + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD " +
               conn->QuoteLiteral(password));
    conn->Exec("GRANT CONNECT, TEMPORARY ON DATABASE " + conn->QuoteIdent(db) + " TO " + r);
  }
  pg::Connection conn = pg::Connection::Open(store_.AdminConnInfo(db));
  std::string r = conn.QuoteIdent(role);
  conn.Exec(std::string("REASSIGN OWNED BY ") + kTemplateOwnerRole + " TO " + r);
  conn.Exec("GRANT ALL ON SCHEMA public TO " + r);
}

void SlotOps::HandOver(const std::string& db, const std::string& old_role, const std::string& role,
                       const std::string& password) {
  {
    auto conn = admin_.Acquire();
    conn->Exec("CREATE ROLE " + conn->QuoteIdent(role) + " LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD " +
               conn->QuoteLiteral(password));
    conn->Exec("GRANT CONNECT, TEMPORARY ON DATABASE " + conn->QuoteIdent(db) + " TO " + conn->QuoteIdent(role));
  }
  {
    pg::Connection conn = pg::Connection::Open(store_.AdminConnInfo(db));
    std::string from = conn.QuoteIdent(old_role), to = conn.QuoteIdent(role);
    conn.Exec("REASSIGN OWNED BY " + from + " TO " + to);
    conn.Exec("GRANT ALL ON SCHEMA public TO " + to);
    conn.Exec("DROP OWNED BY " + from);  // its remaining grants, here and on the database
  }
  DropRole(old_role);
}

void SlotOps::WaitNoSessions(const char* column, const std::string& value) {
  auto conn = admin_.Acquire();
  // Terminate on every round, not only once: a connection that was mid-handshake when we looked
  // can finish authenticating after the first terminate.
  const std::string terminate = std::string("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ") + column +
                                " = $1 AND pid <> pg_backend_pid()";
  const std::string count = std::string("SELECT count(*) FROM pg_stat_activity WHERE ") + column +
                            " = $1 AND pid <> pg_backend_pid()";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    conn->Exec(terminate, {value});
    if (conn->Exec(count, {value}).Get(0, 0) == "0") return;
    if (std::chrono::steady_clock::now() > deadline) {
      throw Error(ErrorCode::kTimeout, std::string("sessions of ") + column + " '" + value + "' did not end within 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

void SlotOps::CutOff(const std::string& role) {
  {
    auto conn = admin_.Acquire();
    if (conn->Exec("SELECT 1 FROM pg_roles WHERE rolname = $1", {role}).rows() == 0) return;
    // NOLOGIN alone is not enough: a handshake reads the stored password before it checks
    // rolcanlogin, so one that straddles a later "LOGIN PASSWORD new" would get in with the old
    // password. With no password stored, no handshake can succeed until a new one is set.
    conn->Exec("ALTER ROLE " + conn->QuoteIdent(role) + " NOLOGIN PASSWORD NULL");
  }
  WaitNoSessions("usename", role);
}

std::string SlotOps::Fingerprint(const std::string& db) {
  std::string sequences;
  {
    pg::Connection conn = pg::Connection::Open(store_.AdminConnInfo(db));
    pg::Result r = conn.Exec(
        "SELECT string_agg(format('%I.%I=%s', schemaname, sequencename, coalesce(last_value::text, '-')), ',' "
        "ORDER BY schemaname, sequencename) FROM pg_sequences");
    sequences = r.IsNull(0, 0) ? "" : std::string(r.Get(0, 0));
  }
  // Our own session wrote nothing. Any other session (a superuser's) is ended: the slot is between
  // holders. Every session must be gone, and so have flushed its statistics (a backend reports
  // them as it exits, before it leaves pg_stat_activity), before the counters are read.
  WaitNoSessions("datname", db);
  auto conn = admin_.Acquire();
  pg::Result r = conn->Exec(
      "SELECT coalesce(tup_inserted, 0), coalesce(tup_updated, 0), coalesce(tup_deleted, 0) "
      "FROM pg_stat_database WHERE datname = $1",
      {db});
  std::string counters = r.rows() ? std::string(r.Get(0, 0)) + ":" + std::string(r.Get(0, 1)) + ":" + std::string(r.Get(0, 2))
                                  : "0:0:0";
  util::Sha256 h;
  h.Update(sequences);
  return "tup=" + counters + ";seq=" + h.HexDigest().substr(0, 16);
}

void SlotOps::DropDatabase(const std::string& db) {
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
