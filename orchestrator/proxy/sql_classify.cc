#include "orchestrator/proxy/sql_classify.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <optional>
#include <vector>

namespace testpool::proxy {
namespace {

constexpr size_t kNpos = std::string_view::npos;
constexpr size_t kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

// ---------------------------------------------------------------------------------------------
// Lexing

enum class TokenKind {
  kWord,         // an unquoted identifier or keyword; text lower-cased
  kQuotedIdent,  // "…" or U&"…"; text decoded
  kString,       // '…', E'…', U&'…', B'…', X'…', N'…', $tag$…$tag$; text decoded as far as needed
  kNumber,
  kParam,  // $1
  kOp,     // an operator or punctuation: "(", ",", ";", "=", "<>", …
};

struct Token {
  TokenKind kind;
  std::string text;
};

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
// PostgreSQL's ident_start: letters, '_' and every byte of a multi-byte character.
bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
bool IsIdentCont(char c) { return IsIdentStart(c) || IsDigit(c) || c == '$'; }
bool IsOpChar(char c) { return std::string_view("~!@#^&|`?+-*/%<>=").find(c) != kNpos; }

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// Identifiers longer than NAMEDATALEN - 1 bytes are truncated by the server, at a character
// boundary (UTF-8 continuation bytes are 10xxxxxx).
void TruncateIdentifier(std::string& ident) {
  if (ident.size() <= kMaxIdentifierBytes) return;
  size_t len = kMaxIdentifierBytes;
  while (len > 0 && (static_cast<unsigned char>(ident[len]) & 0xC0) == 0x80) --len;
  ident.resize(len);
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the body of U&"…" or U&'…' (escape character '\'): \XXXX and \+XXXXXX are code points,
// a UTF-16 surrogate pair may be written as two of them, \\ is a backslash. nullopt when an
// escape is malformed, as the server would refuse it.
std::optional<std::string> DecodeUnicodeEscapes(std::string_view body) {
  std::string out;
  uint32_t high_surrogate = 0;
  size_t i = 0;
  while (i < body.size()) {
    if (body[i] != '\\') {
      if (high_surrogate != 0) return std::nullopt;
      out.push_back(body[i++]);
      continue;
    }
    if (i + 1 < body.size() && body[i + 1] == '\\') {
      if (high_surrogate != 0) return std::nullopt;
      out.push_back('\\');
      i += 2;
      continue;
    }
    size_t digits = 4, start = i + 1;
    if (start < body.size() && body[start] == '+') {
      digits = 6;
      ++start;
    }
    if (start + digits > body.size()) return std::nullopt;
    uint32_t cp = 0;
    for (size_t k = start; k < start + digits; ++k) {
      if (!IsHexDigit(body[k])) return std::nullopt;
      const char c = Lower(body[k]);
      cp = cp * 16 + static_cast<uint32_t>(IsDigit(c) ? c - '0' : c - 'a' + 10);
    }
    i = start + digits;
    if (high_surrogate != 0) {
      if (cp < 0xDC00 || cp > 0xDFFF) return std::nullopt;
      cp = 0x10000 + ((high_surrogate - 0xD800) << 10) + (cp - 0xDC00);
      high_surrogate = 0;
    } else if (cp >= 0xD800 && cp <= 0xDBFF) {
      high_surrogate = cp;
      continue;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return std::nullopt;
    }
    if (cp == 0 || cp > 0x10FFFF) return std::nullopt;
    AppendUtf8(out, cp);
  }
  if (high_surrogate != 0) return std::nullopt;
  return out;
}

// Cuts a statement into tokens the way PostgreSQL's scanner does, for standard_conforming_strings
// on. Fails (nullopt) where the server would raise a lexical error: an unterminated quote or
// comment, a zero-length "" identifier, a bad Unicode escape. A UESCAPE clause after U&"…" is
// also reported as a failure: it is never used in practice, and the server still judges it.
class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  std::optional<std::vector<Token>> Run() {
    std::vector<Token> out;
    while (true) {
      pos_ = SkipSpaceAndComments(pos_);
      if (pos_ == kNpos) return std::nullopt;  // an unterminated block comment
      if (pos_ >= s_.size()) return out;
      std::optional<Token> token = Next();
      if (!token) return std::nullopt;
      out.push_back(std::move(*token));
    }
  }

 private:
  // The first position at or after `p` that is neither whitespace nor in a comment; kNpos for
  // an unterminated block comment.
  size_t SkipSpaceAndComments(size_t p) const {
    while (p < s_.size()) {
      if (IsSpace(s_[p])) {
        ++p;
      } else if (At(p, "--")) {
        p = LineEnd(p);
      } else if (At(p, "/*")) {
        p = BlockCommentEnd(p);
        if (p == kNpos) return kNpos;
      } else {
        break;
      }
    }
    return p;
  }

  bool At(size_t p, std::string_view text) const { return s_.substr(p, text.size()) == text; }

  size_t LineEnd(size_t p) const {
    const size_t nl = s_.find_first_of("\r\n", p);
    return nl == kNpos ? s_.size() : nl;
  }

  // Just past the "*/" that closes the block comment starting at `p` (they nest), or kNpos.
  size_t BlockCommentEnd(size_t p) const {
    int depth = 0;
    while (p + 1 < s_.size()) {
      if (At(p, "/*")) {
        ++depth;
        p += 2;
      } else if (At(p, "*/")) {
        p += 2;
        if (--depth == 0) return p;
      } else {
        ++p;
      }
    }
    return kNpos;
  }

  std::optional<Token> Next() {
    const char c = s_[pos_];
    const char next = pos_ + 1 < s_.size() ? s_[pos_ + 1] : '\0';
    const char lc = Lower(c);
    // Prefixed literals: the prefix and the quote must touch ("e 'x'" is a word and a string).
    if ((lc == 'e' || lc == 'b' || lc == 'x' || lc == 'n') && next == '\'') {
      ++pos_;
      return QuotedString(/*backslash_escapes=*/lc == 'e');
    }
    if (lc == 'u' && next == '&' && pos_ + 2 < s_.size() && (s_[pos_ + 2] == '\'' || s_[pos_ + 2] == '"')) {
      pos_ += 2;
      return UnicodeQuoted();
    }
    if (c == '\'') return QuotedString(/*backslash_escapes=*/false);
    if (c == '"') return QuotedIdentifier();
    if (c == '$') return Dollar();
    if (IsIdentStart(c)) {
      const size_t start = pos_;
      while (pos_ < s_.size() && IsIdentCont(s_[pos_])) ++pos_;
      Token t{TokenKind::kWord, std::string(s_.substr(start, pos_ - start))};
      for (char& ch : t.text) ch = Lower(ch);  // ASCII only, as the server does for UTF-8
      TruncateIdentifier(t.text);
      return t;
    }
    if (IsDigit(c) || (c == '.' && IsDigit(next))) {
      const size_t start = pos_;
      while (pos_ < s_.size() && (IsDigit(s_[pos_]) || IsIdentStart(s_[pos_]) || s_[pos_] == '.')) ++pos_;
      return Token{TokenKind::kNumber, std::string(s_.substr(start, pos_ - start))};
    }
    if (IsOpChar(c)) {
      // An operator runs on over operator characters, but never into a comment.
      const size_t start = pos_;
      while (pos_ < s_.size() && IsOpChar(s_[pos_]) && !(pos_ > start && (At(pos_, "--") || At(pos_, "/*")))) ++pos_;
      return Token{TokenKind::kOp, std::string(s_.substr(start, pos_ - start))};
    }
    ++pos_;
    return Token{TokenKind::kOp, std::string(1, c)};
  }

  // The body of a '…' literal starting at pos_ (the quote), with '' read as ' and, for E'…',
  // backslash escapes honoured; a continuation ('a'<newline>'b') joins the next segment.
  // Escapes beyond \' \\ and the letters are kept as written: string values are only ever
  // compared with words such as "false".
  std::optional<std::string> StringBody(bool backslash_escapes) {
    std::string body;
    ++pos_;
    while (true) {
      if (pos_ >= s_.size()) return std::nullopt;
      const char c = s_[pos_];
      if (backslash_escapes && c == '\\') {
        if (pos_ + 1 >= s_.size()) return std::nullopt;
        const char e = s_[pos_ + 1];
        body.push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e);
        pos_ += 2;
      } else if (c != '\'') {
        body.push_back(c);
        ++pos_;
      } else if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '\'') {
        body.push_back('\'');
        pos_ += 2;
      } else {
        ++pos_;
        const size_t continuation = ContinuationQuote(pos_);
        if (continuation == kNpos) return body;
        pos_ = continuation + 1;
      }
    }
  }

  // The quote continuing a string closed just before `p`, or kNpos: PostgreSQL joins literals
  // separated by whitespace that holds a newline (and -- comments).
  size_t ContinuationQuote(size_t p) const {
    bool newline = false;
    while (p < s_.size()) {
      if (s_[p] == '\n' || s_[p] == '\r') {
        newline = true;
        ++p;
      } else if (IsSpace(s_[p])) {
        ++p;
      } else if (At(p, "--")) {
        p = LineEnd(p);
      } else {
        break;
      }
    }
    return newline && p < s_.size() && s_[p] == '\'' ? p : kNpos;
  }

  std::optional<Token> QuotedString(bool backslash_escapes) {
    std::optional<std::string> body = StringBody(backslash_escapes);
    if (!body) return std::nullopt;
    return Token{TokenKind::kString, std::move(*body)};
  }

  // The body of "…" starting at pos_, with "" read as ".
  std::optional<std::string> IdentifierBody() {
    std::string body;
    ++pos_;
    while (true) {
      const size_t quote = s_.find('"', pos_);
      if (quote == kNpos) return std::nullopt;
      body += s_.substr(pos_, quote - pos_);
      pos_ = quote + 1;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        body.push_back('"');
        ++pos_;
      } else {
        return body;
      }
    }
  }

  std::optional<Token> QuotedIdentifier() {
    std::optional<std::string> body = IdentifierBody();
    if (!body || body->empty()) return std::nullopt;  // "" is a zero-length identifier: an error
    TruncateIdentifier(*body);
    return Token{TokenKind::kQuotedIdent, std::move(*body)};
  }

  // pos_ is at the quote after "U&".
  std::optional<Token> UnicodeQuoted() {
    const bool identifier = s_[pos_] == '"';
    std::optional<std::string> raw = identifier ? IdentifierBody() : StringBody(/*backslash_escapes=*/false);
    if (!raw) return std::nullopt;
    const size_t after = SkipSpaceAndComments(pos_);
    if (after != kNpos && after + 7 <= s_.size()) {
      std::string word(s_.substr(after, 7));
      for (char& ch : word) ch = Lower(ch);
      if (word == "uescape" && (after + 7 == s_.size() || !IsIdentCont(s_[after + 7]))) return std::nullopt;
    }
    std::optional<std::string> text = DecodeUnicodeEscapes(*raw);
    if (!text) return std::nullopt;
    if (!identifier) return Token{TokenKind::kString, std::move(*text)};
    if (text->empty()) return std::nullopt;
    TruncateIdentifier(*text);
    return Token{TokenKind::kQuotedIdent, std::move(*text)};
  }

  // '$' opens a parameter ($1), a dollar-quoted string ($$…$$, $tag$…$tag$), or is an operator
  // character of its own.
  std::optional<Token> Dollar() {
    const size_t start = pos_;
    size_t p = pos_ + 1;
    if (p < s_.size() && IsDigit(s_[p])) {
      while (p < s_.size() && IsDigit(s_[p])) ++p;
      pos_ = p;
      return Token{TokenKind::kParam, std::string(s_.substr(start, p - start))};
    }
    if (p < s_.size() && IsIdentStart(s_[p])) {
      while (p < s_.size() && (IsIdentStart(s_[p]) || IsDigit(s_[p]))) ++p;
    }
    if (p >= s_.size() || s_[p] != '$') {
      ++pos_;
      return Token{TokenKind::kOp, "$"};
    }
    const std::string_view tag = s_.substr(start, p - start + 1);
    const size_t close = s_.find(tag, p + 1);
    if (close == kNpos) return std::nullopt;
    pos_ = close + tag.size();
    return Token{TokenKind::kString, std::string(s_.substr(p + 1, close - p - 1))};
  }

  const std::string_view s_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Parsing

// PostgreSQL 15's reserved and type_func_name keywords (pg_get_keywords() categories R and T),
// sorted: the words that cannot name a savepoint unquoted (ColId allows the other categories).
// clang-format off
constexpr std::string_view kNotColId[] = {
    "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "authorization", "binary", "both",
    "case", "cast", "check", "collate", "collation", "column", "concurrently", "constraint", "create", "cross",
    "current_catalog", "current_date", "current_role", "current_schema", "current_time", "current_timestamp",
    "current_user", "default", "deferrable", "desc", "distinct", "do", "else", "end", "except", "false", "fetch",
    "for", "foreign", "freeze", "from", "full", "grant", "group", "having", "ilike", "in", "initially", "inner",
    "intersect", "into", "is", "isnull", "join", "lateral", "leading", "left", "like", "limit", "localtime",
    "localtimestamp", "natural", "not", "notnull", "null", "offset", "on", "only", "or", "order", "outer", "overlaps",
    "placing", "primary", "references", "returning", "right", "select", "session_user", "similar", "some",
    "symmetric", "table", "tablesample", "then", "to", "trailing", "true", "union", "unique", "user", "using",
    "variadic", "verbose", "when", "where", "window", "with",
};
// clang-format on
static_assert(std::is_sorted(std::begin(kNotColId), std::end(kNotColId)), "IsColIdWord searches it by halves");

bool IsColIdWord(const std::string& word) {
  return !std::binary_search(std::begin(kNotColId), std::end(kNotColId), std::string_view(word));
}

// One option of a parenthesised list, "name [=] [value]" (both the utility-option form of
// REINDEX/VACUUM and the definition form of WITH (…) of subscriptions).
struct Option {
  std::string name;                 // folded as an identifier
  std::vector<const Token*> value;  // empty when the option has no value
};

// A cursor over a statement's tokens, with the final ';' already removed.
class Cursor {
 public:
  explicit Cursor(const std::vector<Token>& tokens) : t_(tokens) {}

  bool AtEnd() const { return i_ == t_.size(); }
  size_t Remaining() const { return t_.size() - i_; }
  const Token* Peek(size_t ahead = 0) const { return i_ + ahead < t_.size() ? &t_[i_ + ahead] : nullptr; }
  const Token* Next() { return i_ < t_.size() ? &t_[i_++] : nullptr; }

  bool IsWord(std::string_view keyword, size_t ahead = 0) const {
    const Token* t = Peek(ahead);
    return t != nullptr && t->kind == TokenKind::kWord && t->text == keyword;
  }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    const Token* t = Peek(ahead);
    return t != nullptr && t->kind == TokenKind::kOp && t->text == op;
  }
  // Consumes the next token when it is the (unquoted) keyword.
  bool Accept(std::string_view keyword) {
    if (!IsWord(keyword)) return false;
    ++i_;
    return true;
  }
  bool AcceptOp(std::string_view op) {
    if (!IsOp(op)) return false;
    ++i_;
    return true;
  }

  // Moves to just past the first top-level (outside parentheses) occurrence of `keyword`; false,
  // at the end, when there is none.
  bool SkipPast(std::string_view keyword) {
    int depth = 0;
    while (!AtEnd()) {
      if (IsOp("(")) ++depth;
      if (IsOp(")")) --depth;
      if (depth == 0 && Accept(keyword)) return true;
      ++i_;
    }
    return false;
  }

  // Whether the words `first` `second` come next to each other somewhere ahead.
  bool HasWordPair(std::string_view first, std::string_view second) const {
    for (size_t k = 0; k + 1 < Remaining(); ++k) {
      if (IsWord(first, k) && IsWord(second, k + 1)) return true;
    }
    return false;
  }

  // A parenthesised option list at the cursor; nullopt when there is none or it is malformed.
  std::optional<std::vector<Option>> OptionList() {
    if (!AcceptOp("(")) return std::nullopt;
    std::vector<Option> out;
    while (true) {
      const Token* name = Next();
      if (name == nullptr || (name->kind != TokenKind::kWord && name->kind != TokenKind::kQuotedIdent)) {
        return std::nullopt;
      }
      Option option{name->text, {}};
      AcceptOp("=");
      int depth = 0;
      while (!AtEnd() && !(depth == 0 && (IsOp(",") || IsOp(")")))) {
        if (IsOp("(")) ++depth;
        if (IsOp(")")) --depth;
        option.value.push_back(Next());
      }
      out.push_back(std::move(option));
      if (AcceptOp(")")) return out;
      if (!AcceptOp(",")) return std::nullopt;
    }
  }

 private:
  const std::vector<Token>& t_;
  size_t i_ = 0;
};

// The value of a boolean option as the server reads it (defGetBoolean): no value is true; 1 and
// 0; true/false/on/off in any case, as a word or a string. nullopt for anything else.
std::optional<bool> BoolValue(const Option& option) {
  if (option.value.empty()) return true;
  if (option.value.size() != 1) return std::nullopt;
  const Token& t = *option.value[0];
  if (t.kind == TokenKind::kNumber) {
    if (t.text == "1") return true;
    if (t.text == "0") return false;
    return std::nullopt;
  }
  if (t.kind != TokenKind::kWord && t.kind != TokenKind::kString) return std::nullopt;
  std::string v = t.text;
  for (char& c : v) c = Lower(c);
  if (v == "true" || v == "on") return true;
  if (v == "false" || v == "off") return false;
  return std::nullopt;
}

// The boolean option `name` of the WITH (…) clause at the cursor's level, `fallback` when the
// statement has no such option (or no WITH at all).
bool WithOption(Cursor c, std::string_view name, bool fallback) {
  if (!c.SkipPast("with")) return fallback;
  std::optional<std::vector<Option>> options = c.OptionList();
  if (!options) return fallback;
  bool value = fallback;
  for (const Option& option : *options) {
    if (option.name == name) value = BoolValue(option).value_or(true);
  }
  return value;
}

StatementClass Classified(TxCommand command) {
  StatementClass out;
  out.command = command;
  return out;
}

StatementClass NotInBlock(std::string what) {
  StatementClass out;
  out.command = TxCommand::kNotInBlock;
  out.what = std::move(what);
  return out;
}

// opt_transaction: an optional WORK or TRANSACTION.
void SkipWorkOrTransaction(Cursor& c) {
  if (!c.Accept("work")) c.Accept("transaction");
}

// transaction_mode_list_or_empty, normalised; nullopt when it is not a valid list.
std::optional<std::string> TransactionModes(Cursor& c) {
  std::string out;
  while (!c.AtEnd()) {
    if (!out.empty()) c.AcceptOp(",");  // items are separated by commas or just by spaces
    std::string item;
    if (c.Accept("isolation")) {
      if (!c.Accept("level")) return std::nullopt;
      if (c.Accept("serializable")) {
        item = "ISOLATION LEVEL SERIALIZABLE";
      } else if (c.Accept("repeatable")) {
        if (!c.Accept("read")) return std::nullopt;
        item = "ISOLATION LEVEL REPEATABLE READ";
      } else if (c.Accept("read")) {
        if (c.Accept("committed")) {
          item = "ISOLATION LEVEL READ COMMITTED";
        } else if (c.Accept("uncommitted")) {
          item = "ISOLATION LEVEL READ UNCOMMITTED";
        } else {
          return std::nullopt;
        }
      } else {
        return std::nullopt;
      }
    } else if (c.Accept("read")) {
      if (c.Accept("only")) {
        item = "READ ONLY";
      } else if (c.Accept("write")) {
        item = "READ WRITE";
      } else {
        return std::nullopt;
      }
    } else if (c.Accept("deferrable")) {
      item = "DEFERRABLE";
    } else if (c.Accept("not") && c.Accept("deferrable")) {
      item = "NOT DEFERRABLE";
    } else {
      return std::nullopt;
    }
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

StatementClass Begin(Cursor& c) {
  std::optional<std::string> modes = TransactionModes(c);
  if (!modes) return {};
  StatementClass out = Classified(TxCommand::kBegin);
  out.modes = std::move(*modes);
  return out;
}

// opt_transaction_chain, then the end of the statement.
StatementClass EndWithChain(Cursor& c, TxCommand command) {
  StatementClass out = Classified(command);
  if (c.Accept("and")) {
    out.chain = !c.Accept("no");
    if (!c.Accept("chain")) return {};
  }
  return c.AtEnd() ? out : StatementClass{};
}

// A savepoint name (ColId), then the end of the statement.
StatementClass EndWithName(Cursor& c, TxCommand command) {
  const Token* t = c.Next();
  if (t == nullptr || c.Remaining() != 0) return {};
  if (t->kind != TokenKind::kQuotedIdent && !(t->kind == TokenKind::kWord && IsColIdWord(t->text))) return {};
  StatementClass out = Classified(command);
  out.savepoint = t->text;
  return out;
}

// The optional SAVEPOINT keyword before a name: "RELEASE savepoint" names a savepoint
// "savepoint", as in the server's grammar.
void SkipSavepointKeyword(Cursor& c) {
  if (c.IsWord("savepoint") && c.Remaining() >= 2) c.Next();
}

// A transaction identifier (a string literal), then the end of the statement.
StatementClass EndWithGid(Cursor& c, TxCommand command) {
  const Token* t = c.Next();
  if (t == nullptr || t->kind != TokenKind::kString || !c.AtEnd()) return {};
  return Classified(command);
}

StatementClass Reindex(Cursor& c) {
  bool concurrently = false;
  if (c.IsOp("(")) {
    std::optional<std::vector<Option>> options = c.OptionList();
    if (!options) return {};
    for (const Option& option : *options) {
      if (option.name == "concurrently") concurrently = BoolValue(option).value_or(true);
    }
  }
  const Token* target = c.Next();
  if (target == nullptr || target->kind != TokenKind::kWord) return {};
  const std::string& kind = target->text;
  if (kind != "index" && kind != "table" && kind != "schema" && kind != "database" && kind != "system") return {};
  if (c.Accept("concurrently")) concurrently = true;
  if (c.AtEnd()) return {};  // the name is required
  if (concurrently) return NotInBlock("REINDEX CONCURRENTLY");
  if (kind == "schema") return NotInBlock("REINDEX SCHEMA");
  if (kind == "database") return NotInBlock("REINDEX DATABASE");
  if (kind == "system") return NotInBlock("REINDEX SYSTEM");
  return {};
}

StatementClass Create(Cursor& c) {
  if (c.Accept("database")) return NotInBlock("CREATE DATABASE");
  if (c.Accept("tablespace")) return NotInBlock("CREATE TABLESPACE");
  if (c.Accept("subscription")) {
    // A replication slot is created unless connect = false (which implies no slot) or
    // create_slot = false.
    if (!WithOption(c, "connect", true) || !WithOption(c, "create_slot", true)) return {};
    return NotInBlock("CREATE SUBSCRIPTION ... WITH (create_slot = true)");
  }
  c.Accept("unique");
  if (c.Accept("index") && c.Accept("concurrently")) return NotInBlock("CREATE INDEX CONCURRENTLY");
  return {};
}

StatementClass Drop(Cursor& c) {
  if (c.Accept("database")) return NotInBlock("DROP DATABASE");
  if (c.Accept("tablespace")) return NotInBlock("DROP TABLESPACE");
  if (c.Accept("subscription")) return NotInBlock("DROP SUBSCRIPTION");
  if (c.Accept("index") && c.Accept("concurrently")) return NotInBlock("DROP INDEX CONCURRENTLY");
  return {};
}

StatementClass Alter(Cursor& c) {
  if (c.Accept("system")) return NotInBlock("ALTER SYSTEM");
  if (c.Accept("database")) {
    if (c.Next() == nullptr) return {};  // the database's name
    if (c.Accept("set")) {
      // SET TABLESPACE name moves the database; SET parameter … is a setting.
      if (c.Accept("tablespace") && c.Remaining() == 1) return NotInBlock("ALTER DATABASE SET TABLESPACE");
      return {};
    }
    // [WITH] TABLESPACE [=] name, which the server accepts only as the one option.
    c.Accept("with");
    if (c.Accept("tablespace")) {
      c.AcceptOp("=");
      if (c.Remaining() == 1) return NotInBlock("ALTER DATABASE SET TABLESPACE");
    }
    return {};
  }
  if (c.Accept("table")) {
    // ALTER TABLE … DETACH PARTITION name CONCURRENTLY (FINALIZE, or nothing, may run in a block).
    if (c.AtEnd()) return {};
    const Token* last = c.Peek(c.Remaining() - 1);
    if (c.HasWordPair("detach", "partition") && last != nullptr && last->kind == TokenKind::kWord &&
        last->text == "concurrently") {
      return NotInBlock("ALTER TABLE ... DETACH CONCURRENTLY");
    }
    return {};
  }
  if (c.Accept("subscription")) {
    if (c.Next() == nullptr) return {};  // the subscription's name
    if (c.Accept("refresh")) {
      return c.IsWord("publication") ? NotInBlock("ALTER SUBSCRIPTION ... REFRESH") : StatementClass{};
    }
    if ((c.Accept("set") || c.Accept("add") || c.Accept("drop")) && c.IsWord("publication")) {
      if (WithOption(c, "refresh", true)) return NotInBlock("ALTER SUBSCRIPTION with refresh");
    }
    return {};
  }
  return {};
}

StatementClass Classify(const std::vector<Token>& tokens) {
  Cursor c(tokens);
  const Token* first = c.Next();
  if (first == nullptr || first->kind != TokenKind::kWord) return {};
  const std::string& kw = first->text;

  if (kw == "begin") {
    SkipWorkOrTransaction(c);
    return Begin(c);
  }
  if (kw == "start") return c.Accept("transaction") ? Begin(c) : StatementClass{};
  if (kw == "commit" || kw == "end") {
    if (kw == "commit" && c.Accept("prepared")) return EndWithGid(c, TxCommand::kCommitPrepared);
    SkipWorkOrTransaction(c);
    return EndWithChain(c, TxCommand::kCommit);
  }
  if (kw == "rollback") {
    if (c.Accept("prepared")) return EndWithGid(c, TxCommand::kRollbackPrepared);
    SkipWorkOrTransaction(c);
    if (c.Accept("to")) {
      SkipSavepointKeyword(c);
      return EndWithName(c, TxCommand::kRollbackTo);
    }
    return EndWithChain(c, TxCommand::kRollback);
  }
  if (kw == "abort") {  // ROLLBACK's synonym, without a TO form
    SkipWorkOrTransaction(c);
    return EndWithChain(c, TxCommand::kRollback);
  }
  if (kw == "savepoint") return EndWithName(c, TxCommand::kSavepoint);
  if (kw == "release") {
    SkipSavepointKeyword(c);
    return EndWithName(c, TxCommand::kRelease);
  }
  if (kw == "prepare") {  // PREPARE TRANSACTION 'gid'; PREPARE name AS … is a prepared statement
    return c.Accept("transaction") ? EndWithGid(c, TxCommand::kPrepareTransaction) : StatementClass{};
  }

  if (kw == "vacuum") return NotInBlock("VACUUM");  // any form; ANALYZE alone is allowed
  if (kw == "cluster") {
    c.Accept("verbose");  // without a table, CLUSTER reclusters every table: one transaction each
    return c.AtEnd() ? NotInBlock("CLUSTER") : StatementClass{};
  }
  if (kw == "reindex") return Reindex(c);
  if (kw == "discard") return c.Accept("all") && c.AtEnd() ? NotInBlock("DISCARD ALL") : StatementClass{};
  if (kw == "create") return Create(c);
  if (kw == "drop") return Drop(c);
  if (kw == "alter") return Alter(c);
  return {};
}

}  // namespace

StatementClass ClassifyStatement(std::string_view sql) {
  std::optional<std::vector<Token>> tokens = Lexer(sql).Run();
  if (!tokens) return {};
  auto is_semicolon = [](const Token& t) { return t.kind == TokenKind::kOp && t.text == ";"; };
  while (!tokens->empty() && is_semicolon(tokens->back())) tokens->pop_back();
  // A ';' left inside means more than one statement: the caller must split them first.
  if (std::any_of(tokens->begin(), tokens->end(), is_semicolon)) return {};
  return Classify(*tokens);
}

}  // namespace testpool::proxy
