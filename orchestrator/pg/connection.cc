#include "orchestrator/pg/connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cstdlib>
#include <set>

#include "orchestrator/util/log.h"

namespace testpool::pg {

// ---- Result ---------------------------------------------------------------------------------

Result& Result::operator=(Result&& other) noexcept {
  if (this != &other) {
    if (res_) PQclear(res_);
    res_ = other.res_;
    other.res_ = nullptr;
  }
  return *this;
}

Result::~Result() {
  if (res_) PQclear(res_);
}

int Result::rows() const { return res_ ? PQntuples(res_) : 0; }
int Result::columns() const { return res_ ? PQnfields(res_) : 0; }
bool Result::IsNull(int row, int col) const { return PQgetisnull(res_, row, col) != 0; }

std::string_view Result::Get(int row, int col) const {
  return std::string_view(PQgetvalue(res_, row, col), static_cast<size_t>(PQgetlength(res_, row, col)));
}

std::optional<std::string> Result::GetOptional(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return std::string(Get(row, col));
}

int Result::Column(const char* name) const { return res_ ? PQfnumber(res_, name) : -1; }

long Result::Affected() const {
  const char* n = res_ ? PQcmdTuples(res_) : "";
  return (n && *n) ? std::strtol(n, nullptr, 10) : 0;
}

// ---- Connection -----------------------------------------------------------------------------

struct Connection::State {
  PGconn* conn = nullptr;
  std::vector<Notice> notices;
  std::set<std::string> prepared;  // statement names prepared on this connection
  ~State() {
    if (conn) PQfinish(conn);
  }
};

namespace {

std::string Trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::string Field(const PGresult* res, int code) {
  const char* v = PQresultErrorField(res, code);
  return v ? v : "";
}

void ReceiveNotice(void* arg, const PGresult* res) {
  auto* notices = static_cast<std::vector<Notice>*>(arg);
  if (notices->size() >= 1000) return;  // bounded: a chatty migration cannot eat memory
  notices->push_back(Notice{Field(res, PG_DIAG_SEVERITY_NONLOCALIZED), Field(res, PG_DIAG_SQLSTATE),
                            Field(res, PG_DIAG_MESSAGE_PRIMARY)});
}

}  // namespace

Connection::Connection(std::unique_ptr<State> state) : state_(std::move(state)) {}
Connection::Connection(Connection&& other) noexcept = default;
Connection& Connection::operator=(Connection&& other) noexcept = default;
Connection::~Connection() = default;

Connection Connection::Open(const std::string& conninfo, std::chrono::seconds timeout) {
  return Open(ConnInfo::Parse(conninfo), timeout);
}

Connection Connection::Open(const ConnInfo& conninfo, std::chrono::seconds timeout) {
  ConnInfo info = conninfo;
  info.Set("connect_timeout", std::to_string(std::max<long>(2, timeout.count())));
  if (!info.Has("application_name")) info.Set("application_name", "testpool");
  auto state = std::make_unique<State>();
  state->conn = PQconnectdb(info.ToKeywordString().c_str());
  if (state->conn == nullptr) throw PgError("out of memory connecting to PostgreSQL", {}, true);
  if (PQstatus(state->conn) != CONNECTION_OK) {
    std::string message = Trim(PQerrorMessage(state->conn));
    ServerDiagnostics diag;
    diag.message = message;
    throw PgError("cannot connect to PostgreSQL (" + info.Redacted() + "): " + message, diag, true);
  }
  PQsetNoticeReceiver(state->conn, &ReceiveNotice, &state->notices);
  return Connection(std::move(state));
}

Result Connection::Check(PGresult* res, std::string_view sql) {
  ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY ||
      status == PGRES_COPY_IN || status == PGRES_COPY_OUT) {
    return Result(res);
  }
  Result guard(res);
  ServerDiagnostics diag;
  if (res) {
    diag.sqlstate = Field(res, PG_DIAG_SQLSTATE);
    diag.severity = Field(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    diag.message = Field(res, PG_DIAG_MESSAGE_PRIMARY);
    diag.detail = Field(res, PG_DIAG_MESSAGE_DETAIL);
    diag.hint = Field(res, PG_DIAG_MESSAGE_HINT);
    diag.context = Field(res, PG_DIAG_CONTEXT);
    std::string pos = Field(res, PG_DIAG_STATEMENT_POSITION);
    diag.position = pos.empty() ? 0 : std::atoi(pos.c_str());
  }
  if (diag.message.empty()) diag.message = Trim(PQerrorMessage(state_->conn));
  bool lost = PQstatus(state_->conn) != CONNECTION_OK;
  // The statement's head, without the secrets it may hold (a role's PASSWORD literal): the
  // message reaches logs and API answers.
  std::string head = log::Redact(sql.substr(0, 4096)).substr(0, 120);
  std::replace(head.begin(), head.end(), '\n', ' ');
  throw PgError(diag.message + (diag.sqlstate.empty() ? "" : " (SQLSTATE " + diag.sqlstate + ")") +
                    " in: " + head + (sql.size() > 120 ? "…" : ""),
                diag, lost);
}

Result Connection::Exec(std::string_view sql) {
  std::string text(sql);
  return Check(PQexec(state_->conn, text.c_str()), sql);
}

Result Connection::Exec(std::string_view sql, const Params& params) {
  std::string text(sql);
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return Check(PQexecParams(state_->conn, text.c_str(), static_cast<int>(values.size()), nullptr,
                            values.data(), nullptr, nullptr, 0),
               sql);
}

long Connection::CopyIn(std::string_view copy_sql, std::string_view data) {
  Check(PQexec(state_->conn, std::string(copy_sql).c_str()), copy_sql);  // PGRES_COPY_IN
  constexpr size_t kChunk = 1 << 16;
  for (size_t at = 0; at < data.size(); at += kChunk) {
    const size_t n = std::min(kChunk, data.size() - at);
    if (PQputCopyData(state_->conn, data.data() + at, static_cast<int>(n)) != 1) break;  // the end reports it
  }
  if (PQputCopyEnd(state_->conn, nullptr) != 1) {
    throw PgError("COPY could not be ended: " + Trim(PQerrorMessage(state_->conn)), {},
                  PQstatus(state_->conn) != CONNECTION_OK);
  }
  long rows = 0;
  // The COPY's own result, then nothing: Check() throws on the first error.
  while (PGresult* res = PQgetResult(state_->conn)) {
    Result r = Check(res, copy_sql);
    rows += r.Affected();
  }
  return rows;
}

void AppendCopyText(std::string* line, const Param& value) {
  if (!value) {
    line->append("\\N");
    return;
  }
  for (char c : *value) {
    switch (c) {
      case '\\': line->append("\\\\"); break;
      case '\t': line->append("\\t"); break;
      case '\n': line->append("\\n"); break;
      case '\r': line->append("\\r"); break;
      default: line->push_back(c);
    }
  }
}

Result Connection::ExecPrepared(const std::string& name, std::string_view sql, const Params& params) {
  if (!state_->prepared.count(name)) {
    std::string text(sql);
    Check(PQprepare(state_->conn, name.c_str(), text.c_str(), static_cast<int>(params.size()), nullptr), sql);
    state_->prepared.insert(name);
  }
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  return Check(PQexecPrepared(state_->conn, name.c_str(), static_cast<int>(values.size()), values.data(), nullptr,
                              nullptr, 0),
               sql);
}

std::string Connection::QuoteIdent(std::string_view identifier) const {
  char* q = PQescapeIdentifier(state_->conn, identifier.data(), identifier.size());
  if (q == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "cannot quote identifier: " + Trim(PQerrorMessage(state_->conn)));
  }
  std::string out(q);
  PQfreemem(q);
  return out;
}

std::string Connection::QuoteLiteral(std::string_view text) const {
  char* q = PQescapeLiteral(state_->conn, text.data(), text.size());
  if (q == nullptr) {
    throw Error(ErrorCode::kInvalidArgument, "cannot quote literal: " + Trim(PQerrorMessage(state_->conn)));
  }
  std::string out(q);
  PQfreemem(q);
  return out;
}

const std::vector<Notice>& Connection::notices() const { return state_->notices; }
void Connection::ClearNotices() { state_->notices.clear(); }
int Connection::ServerVersion() const { return PQserverVersion(state_->conn); }
int Connection::BackendPid() const { return PQbackendPID(state_->conn); }
bool Connection::IsOk() const { return state_ && PQstatus(state_->conn) == CONNECTION_OK; }

bool Connection::StillOpen() {
  if (!IsOk()) return false;
  // Nothing waiting: open as far as anyone can tell without a round trip. Something waiting on
  // an idle connection: a harmless NOTICE, or a FATAL and then the end of the stream — which
  // libpq sees only on a read after the one that took the FATAL's bytes, hence the loop.
  for (int reads = 0; reads < 8; ++reads) {
    pollfd p{PQsocket(state_->conn), POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    if (PQconsumeInput(state_->conn) == 0 || !IsOk()) return false;
  }
  return IsOk();
}
std::string Connection::Database() const { return PQdb(state_->conn); }

char Connection::TransactionStatus() const {
  switch (PQtransactionStatus(state_->conn)) {
    case PQTRANS_IDLE: return 'I';
    case PQTRANS_INTRANS: return 'T';
    case PQTRANS_INERROR: return 'E';
    case PQTRANS_ACTIVE: return 'A';
    default: return 'U';
  }
}

bool Connection::Cancel() const {
  PGcancel* cancel = PQgetCancel(state_->conn);
  if (cancel == nullptr) return false;
  char err[256];
  bool ok = PQcancel(cancel, err, sizeof err) == 1;
  PQfreeCancel(cancel);
  return ok;
}

// ---- Transaction ----------------------------------------------------------------------------

Transaction::Transaction(Connection& conn, std::string_view begin) : conn_(conn) { conn_.Exec(begin); }

Transaction::~Transaction() {
  if (done_ || !conn_.IsOk()) return;
  try {
    conn_.Exec("ROLLBACK");
  } catch (...) {
    // A destructor never throws; a connection that cannot roll back is broken and the
    // server aborts the transaction when it closes.
  }
}

void Transaction::Commit() {
  conn_.Exec("COMMIT");
  done_ = true;
}

void ExecCreateIfNotExists(Connection& conn, const std::string& ddl) {
  for (int attempt = 0;; ++attempt) {
    try {
      conn.Exec(ddl);
      return;
    } catch (const PgError& e) {
      const std::string& st = e.sqlstate();
      const bool lost_race = st == sqlstate::kUniqueViolation || st == sqlstate::kDuplicateSchema ||
                             st == sqlstate::kDuplicateTable;
      if (attempt > 0 || !lost_race) throw;
    }
  }
}

bool Ping(const ConnInfo& conninfo) {
  ConnInfo info = conninfo;
  if (!info.Has("connect_timeout")) info.Set("connect_timeout", "2");
  return PQping(info.ToKeywordString().c_str()) == PQPING_OK;
}

std::string QuoteIdentUtf8(std::string_view identifier) {
  std::string out = "\"";
  for (char c : identifier) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

}  // namespace testpool::pg
