// The one SQL lexer: cuts SQL text into tokens by PostgreSQL's lexical rules, so that every part
// of testpool that must see where a statement ends, or which keywords it starts with, agrees with
// the server (core/sql_script splits migration scripts into statements; proxy/sql_classify finds
// transaction control in what clients send).
//
// The rules are those of PostgreSQL's scanner (and psql's) with standard_conforming_strings on,
// the server's default since 9.1:
//  - whitespace: space, \t, \n, \r, \f, \v;
//  - comments: `--` up to the end of the line (\n or \r); `/* */`, which nest;
//  - identifiers: a letter, '_' or any byte >= 0x80 (a byte of a multi-byte character), then
//    those, digits and '$' (so a$b$ is one identifier, never a dollar quote);
//  - quoted identifiers "…" with "" for a quote, and U&"…";
//  - strings '…' with '' for a quote, where a backslash is an ordinary character; E'…' (e'…'),
//    where a backslash also escapes the byte after it; U&'…', B'…', X'…', N'…', lexed as '…'. A
//    prefix counts only when it touches the quote (`e 'x'` is an identifier and a string); a
//    prefix ending a longer identifier is none (`date'x'` is an identifier and a string). A
//    string followed by whitespace holding a newline (and -- comments), then another '…', is
//    one token with it (PostgreSQL's continuation), under the rules of its first segment;
//  - dollar quotes $$…$$ and $tag$…$tag$ (a tag is an identifier without '$'), which hold
//    anything up to the same tag, other tags included;
//  - parameters: '$', a digit, then digits, letters and '_' ($1; junk such as $1abc is one token);
//  - numbers: a digit, or '.' and a digit, then digits, letters and '.' (1, 1.5e3, .5; junk such
//    as 1abc is one token: the server refuses it, nothing here judges it);
//  - operators: a run of ~ ! @ # ^ & | ` ? + - * / % < > =, cut before a -- or /* inside it;
//  - any other byte is a one-byte kOperator token: ( ) , ; [ ] . : and bytes that mean nothing
//    to SQL, such as '\' (which starts psql's meta-commands) or a lone '$'.
// Not implemented: UESCAPE after U&"…" / U&'…' (the caller sees an identifier "uescape" next);
// psql variables (:name is ':' and an identifier). The text is assumed to be UTF-8 or another
// ASCII-compatible encoding; nothing is validated beyond these rules.
//
// Errors: a quoted string, quoted identifier, dollar-quoted string or block comment that the text
// ends inside becomes one kUnterminated token, from its opening (prefix included) to the end of
// the text; it is the last token. Nothing throws. Judging tokens (a zero-length "", a reserved
// word, a malformed number) is left to the caller and the server.
//
// Tokens are views into the lexed text: they are valid while its bytes are. A SqlLexer is a small
// value used by one thread; the free functions are pure and thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace testpool::pg {

enum class SqlTokenKind {
  kEnd,                // after the last token; Next() keeps returning it
  kIdentifier,         // an unquoted identifier or keyword, as written: Select, a$b, Äbc
  kQuotedIdentifier,   // "…"
  kUnicodeIdentifier,  // U&"…"
  kString,             // '…', B'…', X'…', N'…'
  kEscapeString,       // E'…'
  kUnicodeString,      // U&'…'
  kDollarString,       // $$…$$, $tag$…$tag$
  kNumber,             // 42, 1.5e3, .5 (and junk such as 1abc)
  kParameter,          // $1
  kOperator,           // an operator run (<=, ||) or any other single byte: ( ) , ; \ …
  kComment,            // -- … or /* … */; only from a lexer built with Comments::kReturn
  kUnterminated,       // see `unterminated`; always the last token before kEnd
};

struct SqlToken {
  SqlTokenKind kind = SqlTokenKind::kEnd;
  // For kUnterminated: what the text ends inside — kString, kEscapeString, kUnicodeString,
  // kQuotedIdentifier, kUnicodeIdentifier, kDollarString or kComment (a block comment).
  SqlTokenKind unterminated = SqlTokenKind::kEnd;
  // The token's bytes as written: prefix, quotes and continued segments included; for kEnd an
  // empty view at the end of the text.
  std::string_view text;
  size_t offset = 0;  // byte offset of text[0] in the lexed text
  int line = 1;       // 1-based line of text[0]; lines are counted by '\n' (CRLF counts once)
  int column = 1;     // 1-based column of text[0], in bytes
};

// Hands out the tokens of one text, in order, skipping whitespace (and comments, unless asked).
class SqlLexer {
 public:
  enum class Comments { kSkip, kReturn };

  // `sql` must outlive the lexer and the tokens it returns.
  explicit SqlLexer(std::string_view sql, Comments comments = Comments::kSkip)
      : s_(sql), comments_(comments) {}

  // The next token: kEnd at the end of the text and on every call after it; kUnterminated (then
  // kEnd) when the text ends inside a quote or a block comment.
  SqlToken Next();

 private:
  SqlToken Make(SqlTokenKind kind, size_t begin, size_t end);
  SqlToken Unterminated(SqlTokenKind what, size_t begin);
  SqlToken Scan(size_t begin);

  const std::string_view s_;
  const Comments comments_;
  size_t pos_ = 0;          // where the next token's search starts
  bool done_ = false;       // kEnd or kUnterminated was returned
  size_t counted_ = 0;      // lines are counted up to this offset
  int line_ = 1;            // the line at `counted_`
  size_t line_start_ = 0;   // offset of that line's first byte
};

// True when `token` is an unquoted identifier spelling `keyword` (given in lower case) in any
// ASCII case: IsKeyword(t, "begin") for BEGIN, Begin, begin; never for "begin" or begin_date.
bool IsKeyword(const SqlToken& token, std::string_view keyword);

// The value of `token` as the server reads it:
//  - kIdentifier: lower-cased (ASCII letters only, as the server does for UTF-8) and truncated to
//    63 bytes (NAMEDATALEN - 1) at a character boundary;
//  - kQuotedIdentifier, kUnicodeIdentifier: without its quotes, "" read as ", U& escapes
//    decoded, truncated like an identifier; nullopt when zero-length ("" is an error);
//  - kString, kEscapeString, kUnicodeString: the body, '' read as ', continued segments joined;
//    in E'…', \n \t \r \b \f are decoded and any other escaped byte stands for itself (so octal,
//    hex and Unicode escapes are not decoded: callers compare values with words, never bytes);
//    in U&'…', \XXXX, \+XXXXXX (UTF-16 surrogate pairs as two) and \\ are decoded;
//  - kDollarString: the text between the tags;
//  - kNumber, kParameter, kOperator, kComment: the text as written.
// nullopt also for a malformed U& escape (the server refuses it), kEnd and kUnterminated.
std::optional<std::string> SqlTokenValue(const SqlToken& token);

}  // namespace testpool::pg
