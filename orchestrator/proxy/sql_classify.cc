#include "orchestrator/proxy/sql_classify.h"

#include <algorithm>
#include <iterator>
#include <optional>
#include <vector>

namespace testpool::proxy {
namespace {

// ---------------------------------------------------------------------------------------------
// Tokens: pg::SqlLexer's, with their values as the server reads them (pg::SqlTokenValue).

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

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// The statement's tokens with their values; nullopt where the server would raise a lexical error
// (an unterminated quote or comment, a zero-length "" identifier, a bad Unicode escape). A UESCAPE
// clause after U&"…" or U&'…' is also a failure: the lexer does not implement it (it is never
// used in practice), and the server still judges it.
std::optional<std::vector<Token>> Decode(std::span<const pg::SqlToken> tokens) {
  using pg::SqlTokenKind;
  std::vector<Token> out;
  out.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    const pg::SqlToken& t = tokens[i];
    TokenKind kind = TokenKind::kOp;
    switch (t.kind) {
      case SqlTokenKind::kIdentifier:
        kind = TokenKind::kWord;
        break;
      case SqlTokenKind::kQuotedIdentifier:
      case SqlTokenKind::kUnicodeIdentifier:
        kind = TokenKind::kQuotedIdent;
        break;
      case SqlTokenKind::kString:
      case SqlTokenKind::kEscapeString:
      case SqlTokenKind::kUnicodeString:
      case SqlTokenKind::kDollarString:
        kind = TokenKind::kString;
        break;
      case SqlTokenKind::kNumber:
        kind = TokenKind::kNumber;
        break;
      case SqlTokenKind::kParameter:
        kind = TokenKind::kParam;
        break;
      case SqlTokenKind::kOperator:
        kind = TokenKind::kOp;
        break;
      case SqlTokenKind::kComment:
      case SqlTokenKind::kEnd:
        continue;
      case SqlTokenKind::kUnterminated:
        return std::nullopt;
    }
    if (t.kind == SqlTokenKind::kUnicodeIdentifier || t.kind == SqlTokenKind::kUnicodeString) {
      size_t next = i + 1;
      while (next < tokens.size() && tokens[next].kind == SqlTokenKind::kComment) ++next;
      if (next < tokens.size() && pg::IsKeyword(tokens[next], "uescape")) return std::nullopt;
    }
    std::optional<std::string> value = pg::SqlTokenValue(t);
    if (!value) return std::nullopt;
    out.push_back(Token{kind, std::move(*value)});
  }
  return out;
}

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
  std::vector<pg::SqlToken> tokens;
  pg::SqlLexer lexer(sql);
  for (pg::SqlToken t = lexer.Next(); t.kind != pg::SqlTokenKind::kEnd; t = lexer.Next()) {
    tokens.push_back(t);
  }
  return ClassifyTokens(tokens);
}

StatementClass ClassifyTokens(std::span<const pg::SqlToken> lexed) {
  std::optional<std::vector<Token>> tokens = Decode(lexed);
  if (!tokens) return {};
  auto is_semicolon = [](const Token& t) { return t.kind == TokenKind::kOp && t.text == ";"; };
  while (!tokens->empty() && is_semicolon(tokens->back())) tokens->pop_back();
  // A ';' left inside means more than one statement: the caller must split them first.
  if (std::any_of(tokens->begin(), tokens->end(), is_semicolon)) return {};
  return Classify(*tokens);
}

}  // namespace testpool::proxy
