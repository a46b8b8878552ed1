// Recognising the SQL statements the proxy must treat specially in rollback recycle mode.
//
// In that mode every connection of a lease runs inside ONE server transaction that testpool rolls
// back when the lease ends. So the proxy rewrites a client's transaction control into savepoints
// (BEGIN becomes SAVEPOINT, COMMIT becomes RELEASE, ROLLBACK becomes ROLLBACK TO, …), and it
// answers statements PostgreSQL refuses inside a transaction block (VACUUM, CREATE INDEX
// CONCURRENTLY, …) with an error that names rollback mode, instead of letting the server fail
// with "cannot run inside a transaction block" and the client wonder which block.
//
// The classifier reads just enough of PostgreSQL 15's grammar to be exact for those statements:
// it lexes the statement as the server does, with pg/sql_lexer.h (standard_conforming_strings on:
// -- and nested /* */ comments, '…' and E'…' and U&'…' strings, "…" and U&"…" identifiers, dollar
// quotes, case-folding of unquoted words, identifiers truncated to 63 bytes) and matches keywords,
// never text, so
// "SELECT 'BEGIN'", a column named begin_date or a VACUUM inside a comment are just statements.
// A transaction-control statement is recognised only when it is complete and valid; a malformed
// one (a misspelt isolation level, a reserved word as a savepoint name, an unterminated quote) is
// kNone, so it goes to the server, which reports the syntax error. (So is a statement using
// UESCAPE after a U& literal, which the lexer does not implement.)
//
// What a statement needs cannot always be seen in its text. PostgreSQL also refuses REINDEX and
// CLUSTER of a partitioned table inside a block; without the catalog those are kNone and fail at
// the server. DROP SUBSCRIPTION is refused only when the subscription has a replication slot, the
// usual case, which is assumed.
//
// Pure and thread-safe.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "orchestrator/pg/sql_lexer.h"

namespace testpool::proxy {

enum class TxCommand {
  kNone,                // anything else (including malformed transaction control)
  kBegin,               // BEGIN [WORK|TRANSACTION] [modes]; START TRANSACTION [modes]
  kCommit,              // COMMIT|END [WORK|TRANSACTION] [AND [NO] CHAIN]
  kRollback,            // ROLLBACK|ABORT [WORK|TRANSACTION] [AND [NO] CHAIN]
  kSavepoint,           // SAVEPOINT name
  kRelease,             // RELEASE [SAVEPOINT] name
  kRollbackTo,          // ROLLBACK [WORK|TRANSACTION] TO [SAVEPOINT] name
  kPrepareTransaction,  // PREPARE TRANSACTION 'gid'
  kCommitPrepared,      // COMMIT PREPARED 'gid' (also refused inside a block)
  kRollbackPrepared,    // ROLLBACK PREPARED 'gid' (also refused inside a block)
  kNotInBlock,          // a statement PostgreSQL refuses inside a transaction block; see `what`
};

struct StatementClass {
  TxCommand command = TxCommand::kNone;
  // kCommit, kRollback: AND CHAIN was given (AND NO CHAIN, or nothing, is false).
  bool chain = false;
  // kSavepoint, kRelease, kRollbackTo: the name as PostgreSQL folds it — unquoted names
  // lower-cased (ASCII letters only, as the server does for UTF-8), quoted ones kept as written
  // with "" read as ", both truncated to 63 bytes at a character boundary.
  std::string savepoint;
  // kBegin: the transaction modes, normalised — upper-case keywords, single spaces, items joined
  // by ", " (e.g. "ISOLATION LEVEL SERIALIZABLE, READ ONLY"), or "" when there are none. Only
  // valid modes are accepted, so this is safe to put in a SET TRANSACTION statement.
  std::string modes;
  // kNotInBlock: the command as PostgreSQL's own error names it, "<what> cannot run inside a
  // transaction block": "VACUUM", "CLUSTER", "CREATE INDEX CONCURRENTLY", "DROP INDEX
  // CONCURRENTLY", "REINDEX CONCURRENTLY", "REINDEX SCHEMA", "REINDEX DATABASE", "REINDEX
  // SYSTEM", "CREATE DATABASE", "DROP DATABASE", "ALTER DATABASE SET TABLESPACE", "CREATE
  // TABLESPACE", "DROP TABLESPACE", "ALTER SYSTEM", "DISCARD ALL", "ALTER TABLE ... DETACH
  // CONCURRENTLY", "CREATE SUBSCRIPTION ... WITH (create_slot = true)", "DROP SUBSCRIPTION",
  // "ALTER SUBSCRIPTION ... REFRESH", "ALTER SUBSCRIPTION with refresh".
  std::string what;

  bool operator==(const StatementClass&) const = default;
};

// Classifies `sql`, which must be ONE statement as the client sent it: whitespace and comments
// may come before, between and after its words, and ';' may end it. Text with a ';' between two
// statements is kNone (split a multi-statement Query first). Keywords are case-insensitive.
// Never throws.
//
// kNotInBlock covers every statement PostgreSQL 15 refuses inside a block: VACUUM (any form;
// ANALYZE alone is allowed); CLUSTER without a table (CLUSTER, CLUSTER VERBOSE); CREATE [UNIQUE]
// INDEX CONCURRENTLY; DROP INDEX CONCURRENTLY; REINDEX with CONCURRENTLY (as a keyword or the
// option "(CONCURRENTLY [true])"); REINDEX SCHEMA|DATABASE|SYSTEM; CREATE DATABASE; DROP
// DATABASE; ALTER DATABASE that moves it to a tablespace; CREATE TABLESPACE; DROP TABLESPACE;
// ALTER SYSTEM; DISCARD ALL; ALTER TABLE … DETACH PARTITION … CONCURRENTLY; CREATE SUBSCRIPTION
// unless WITH (connect = false) or (create_slot = false); DROP SUBSCRIPTION; ALTER SUBSCRIPTION …
// REFRESH PUBLICATION, and … SET|ADD|DROP PUBLICATION unless WITH (refresh = false).
// ALTER TYPE … ADD VALUE is allowed in a block since PostgreSQL 12 and is kNone.
StatementClass ClassifyStatement(std::string_view sql);

// ClassifyStatement for a statement already lexed: `tokens` are its tokens as pg::SqlLexer gave
// them (views into text that must still be alive; comments, if any, are ignored), such as
// core::LexedSqlStatement::tokens. The result is the same as ClassifyStatement of the text they
// span; a kUnterminated token makes it kNone. Never throws.
StatementClass ClassifyTokens(std::span<const pg::SqlToken> tokens);

}  // namespace testpool::proxy
