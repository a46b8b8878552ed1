// RAII over libpq. The only place in testpool that includes libpq-fe.h.
//
// A Connection opens in Open() and closes in its destructor (which never throws); it is
// move-only and not thread-safe: one thread uses it at a time. A Result owns its PGresult.
// Statements that take values take them as parameters (PQexecParams); identifiers go through
// QuoteIdent() (PQescapeIdentifier), after the caller validated them.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/pg/conninfo.h"
#include "orchestrator/pg/error.h"

struct pg_conn;
struct pg_result;

namespace testpool::pg {

using Param = std::optional<std::string>;  // std::nullopt is SQL NULL
using Params = std::vector<Param>;

// A statement's result: rows of text values. Move-only.
class Result {
 public:
  Result() = default;
  explicit Result(pg_result* res) : res_(res) {}
  Result(Result&& other) noexcept : res_(other.res_) { other.res_ = nullptr; }
  Result& operator=(Result&& other) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  ~Result();

  int rows() const;
  int columns() const;
  bool IsNull(int row, int col) const;
  // The text of a value; "" for NULL (check IsNull where it matters).
  std::string_view Get(int row, int col) const;
  std::optional<std::string> GetOptional(int row, int col) const;
  // Column index by name; -1 when absent.
  int Column(const char* name) const;
  // Rows affected by INSERT/UPDATE/DELETE…, 0 when not applicable.
  long Affected() const;

 private:
  pg_result* res_ = nullptr;
};

struct Notice {
  std::string severity;
  std::string sqlstate;
  std::string message;
};

class Connection {
 public:
  // Connects with `conninfo` (keyword form or URI). The connect is bounded by `timeout`
  // (libpq's connect_timeout, at least 2 s). Throws PgError (kUnavailable) when the server
  // cannot be reached or refuses us; the message is libpq's.
  static Connection Open(const ConnInfo& conninfo,
                         std::chrono::seconds timeout = std::chrono::seconds(10));
  static Connection Open(const std::string& conninfo,
                         std::chrono::seconds timeout = std::chrono::seconds(10));

  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // Runs `sql` through the simple query protocol (several statements allowed; the last one's
  // result is returned). Throws PgError carrying the server's diagnostics on failure.
  Result Exec(std::string_view sql);
  // Runs one statement with `params` as $1, $2, … (text format). Throws PgError on failure.
  Result Exec(std::string_view sql, const Params& params);
  // As Exec(sql, params), but the statement is parsed and planned once per connection, under
  // `name` (the caller keeps one text per name), and executed by name afterwards: for the
  // statements of a hot path. Throws PgError on failure.
  Result ExecPrepared(const std::string& name, std::string_view sql, const Params& params);

  // Runs `copy_sql` (a COPY … FROM STDIN) and streams `data` to it — text format, one row per
  // line, as CopyText() encodes values — then ends the copy. Returns rows copied. Throws PgError
  // (the server's error, e.g. a CHECK that a row violates) on failure.
  long CopyIn(std::string_view copy_sql, std::string_view data);

  // "name" → "\"name\"" with any embedded quotes doubled, per the connection's encoding.
  std::string QuoteIdent(std::string_view identifier) const;
  // A string literal per the connection's settings (E'' form when it contains backslashes).
  std::string QuoteLiteral(std::string_view text) const;

  // Notices (NOTICE, WARNING, …) received since the last ClearNotices(), in order.
  const std::vector<Notice>& notices() const;
  void ClearNotices();

  int ServerVersion() const;   // e.g. 150018
  int BackendPid() const;
  bool IsOk() const;           // false once the connection broke
  // For a pool about to hand out an idle connection: reads whatever the server sent unasked
  // (without blocking) and returns IsOk(). False when the server has closed the connection
  // meanwhile — say every backend ended when a postmaster died — so it is not handed out only to
  // fail its first statement. Call only between statements.
  bool StillOpen();
  std::string Database() const;

  // Asks the server to cancel the statement running on this connection; safe to call from
  // another thread. Returns false when the request could not be sent.
  bool Cancel() const;
  // The server's transaction status as of the last ReadyForQuery: 'I' idle, 'T' in a block,
  // 'E' in a failed block ('A' while a command runs, 'U' when the connection is bad).
  char TransactionStatus() const;

 private:
  struct State;
  explicit Connection(std::unique_ptr<State> state);
  Result Check(pg_result* res, std::string_view sql);

  std::unique_ptr<State> state_;
};

// Rolls back unless Commit() was called. Not copyable; the connection must outlive it.
class Transaction {
 public:
  explicit Transaction(Connection& conn, std::string_view begin = "BEGIN");
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  void Commit();

 private:
  Connection& conn_;
  bool done_ = false;
};

// Appends `value` to `line` in COPY's text format: backslash, tab, newline and carriage return
// escaped; std::nullopt as \N.
void AppendCopyText(std::string* line, const Param& value);

// Runs `ddl`, a script of CREATE … IF NOT EXISTS statements, once more if it lost a race with a
// concurrent creator of the same object (PostgreSQL's IF NOT EXISTS is not atomic against another
// session's CREATE: the loser sees 23505, 42P06 or 42P07). Throws PgError as Exec otherwise, or
// when the second attempt fails too.
void ExecCreateIfNotExists(Connection& conn, const std::string& ddl);

// True when a server at `conninfo` accepts connections (PQping; no authentication is done).
bool Ping(const ConnInfo& conninfo);

// Quotes an identifier without a connection: wraps in double quotes and doubles embedded ones.
// Correct for UTF-8 and every server-safe encoding; prefer Connection::QuoteIdent where one exists.
std::string QuoteIdentUtf8(std::string_view identifier);

}  // namespace testpool::pg
