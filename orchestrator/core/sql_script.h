// Splitting migration scripts into statements.
//
// Migrations are sent to the server one statement at a time: an error can then name the line of
// the statement that failed, and a script marked `testpool:no-transaction` can run statements
// PostgreSQL refuses inside a multi-statement simple query (CREATE INDEX CONCURRENTLY, VACUUM).
//
// The splitter lexes the script with pg/sql_lexer.h (PostgreSQL's and psql's rules, with
// standard_conforming_strings on: comments, '…' and E'…' strings, "…" identifiers, dollar
// quotes). A ';' ends a statement unless it is inside one of those, inside parentheses, or inside a
// BEGIN … END body of CREATE [OR REPLACE] FUNCTION/PROCEDURE (psql's heuristic: in such a
// statement, outside parentheses, BEGIN opens, CASE opens when already inside BEGIN, and END
// closes).
//
// All functions are pure and thread-safe; the script is assumed to be UTF-8 (or any
// ASCII-compatible encoding for the splitter itself).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/pg/sql_lexer.h"

namespace testpool::core {

struct SqlStatement {
  // The statement as sent to the server: from its first token through its last token, without
  // the terminating ';'. Whitespace and comments before the first token or after the last one
  // are dropped; comments between tokens are kept. Always equal to
  // script.substr(offset, text.size()).
  std::string text;
  int line = 0;       // 1-based line of the statement's first token in the script
  int column = 0;     // 1-based column, in bytes, of that token
  size_t offset = 0;  // byte offset of text[0] in the script
};

// Splits `script` into its statements, in order. Statements made only of whitespace and comments
// are dropped (";;" gives nothing, an empty script gives an empty vector); a final statement
// without ';' is returned too. Lines are counted by '\n', so CRLF scripts number lines as usual.
//
// Throws Error(kInvalidArgument), with details {"line": N}, when the script has
//  - an unterminated quoted string, quoted identifier, block comment or dollar-quoted string:
//    "unterminated dollar-quoted string starting at line 12" (the line where it opens; for a
//    string continued over lines, 'a' newline 'b…, where its first segment opens);
//  - a psql meta-command, i.e. a backslash outside any quote or comment, such as a line
//    "\connect db": "psql meta-commands such as \connect are not supported (line 3)".
std::vector<SqlStatement> SplitSqlScript(std::string_view script);

// One statement of SplitLexedSqlScript: the statement and its tokens (comments excluded, the
// terminating ';' excluded), as pg::SqlLexer gives them: views into the script, valid while its
// bytes are.
struct LexedSqlStatement {
  SqlStatement statement;
  std::vector<pg::SqlToken> tokens;
};

// SplitSqlScript for a caller that goes on to read each statement's tokens (the proxy classifies
// every statement of a Query): the script is lexed once. Same statements, same errors.
std::vector<LexedSqlStatement> SplitLexedSqlScript(std::string_view script);

// Maps `position`, a 1-based character position inside stmt.text (PostgreSQL's error position,
// which counts characters, not bytes; UTF-8 aware), to the 1-based line of the whole script
// where that character is. A position before the first character counts as the first, one past
// the last as the last. `stmt` must come from SplitSqlScript(script) (asserted).
int LineOfPosition(std::string_view script, const SqlStatement& stmt, int position);

// True when the comments before the script's first statement contain the directive
// `testpool:no-transaction` (case-sensitive, as a whole word), e.g. a first line
// "-- testpool:no-transaction" or a "/* … */" header holding it. The directive after the first
// statement's first token does not count. Never throws: a malformed script is reported by
// SplitSqlScript.
bool ScriptWantsNoTransaction(std::string_view script);

}  // namespace testpool::core
