#include "orchestrator/core/sql_script.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <optional>

#include "orchestrator/util/error.h"

namespace testpool::core {
namespace {

using pg::SqlToken;
using pg::SqlTokenKind;

constexpr size_t kNpos = std::string_view::npos;
constexpr std::string_view kNoTransactionDirective = "testpool:no-transaction";

// How the errors of SplitSqlScript name what was left open.
std::string_view OpenConstructName(SqlTokenKind kind) {
  switch (kind) {
    case SqlTokenKind::kQuotedIdentifier:
    case SqlTokenKind::kUnicodeIdentifier:
      return "quoted identifier";
    case SqlTokenKind::kDollarString:
      return "dollar-quoted string";
    case SqlTokenKind::kComment:
      return "block comment";
    default:
      return "quoted string";
  }
}

// One pass over a script's tokens, collecting statements.
class Splitter {
 public:
  Splitter(std::string_view script, bool keep_tokens) : s_(script), keep_tokens_(keep_tokens) {}

  std::vector<LexedSqlStatement> Run() {
    std::vector<LexedSqlStatement> out;
    pg::SqlLexer lexer(s_);
    while (true) {
      const SqlToken t = lexer.Next();
      switch (t.kind) {
        case SqlTokenKind::kEnd:
          Emit(out);
          return out;
        case SqlTokenKind::kUnterminated: {
          const std::string line = std::to_string(t.line);
          throw Error(ErrorCode::kInvalidArgument,
                      "unterminated " + std::string(OpenConstructName(t.unterminated)) +
                          " starting at line " + line,
                      {{"line", line}});
        }
        case SqlTokenKind::kOperator:
          if (t.text == ";" && paren_depth_ == 0 && begin_depth_ == 0) {
            Emit(out);
            continue;
          }
          if (t.text == "\\") {
            throw Error(ErrorCode::kInvalidArgument,
                        "psql meta-commands such as \\connect are not supported (line " +
                            std::to_string(t.line) + ")",
                        {{"line", std::to_string(t.line)}});
          }
          if (t.text == "(") ++paren_depth_;
          if (t.text == ")" && paren_depth_ > 0) --paren_depth_;
          break;
        case SqlTokenKind::kIdentifier:
          OnWord(t);
          break;
        default:
          break;
      }
      if (!first_) first_ = t;
      end_ = t.offset + t.text.size();
      if (keep_tokens_) tokens_.push_back(t);
    }
  }

 private:
  // Tracks psql's BEGIN … END heuristic for SQL-standard routine bodies.
  void OnWord(const SqlToken& word) {
    if (word_count_ < first_words_.size()) first_words_[word_count_] = word;
    ++word_count_;
    if (!InRoutineDefinition() || paren_depth_ > 0) return;
    if (pg::IsKeyword(word, "begin")) {
      ++begin_depth_;
    } else if (pg::IsKeyword(word, "case")) {
      if (begin_depth_ > 0) ++begin_depth_;  // CASE … END matters only inside a body
    } else if (pg::IsKeyword(word, "end")) {
      if (begin_depth_ > 0) --begin_depth_;
    }
  }

  // Whether the current statement began CREATE [OR REPLACE] FUNCTION|PROCEDURE.
  bool InRoutineDefinition() const {
    auto routine = [](const SqlToken& w) {
      return pg::IsKeyword(w, "function") || pg::IsKeyword(w, "procedure");
    };
    const auto& w = first_words_;
    return pg::IsKeyword(w[0], "create") &&
           (routine(w[1]) ||
            (pg::IsKeyword(w[1], "or") && pg::IsKeyword(w[2], "replace") && routine(w[3])));
  }

  void Emit(std::vector<LexedSqlStatement>& out) {
    if (first_) {
      LexedSqlStatement lexed;
      SqlStatement& stmt = lexed.statement;
      stmt.text = std::string(s_.substr(first_->offset, end_ - first_->offset));
      stmt.line = first_->line;
      stmt.column = first_->column;
      stmt.offset = first_->offset;
      lexed.tokens = std::move(tokens_);
      out.push_back(std::move(lexed));
    }
    first_.reset();
    end_ = 0;
    tokens_.clear();
    paren_depth_ = 0;
    begin_depth_ = 0;
    word_count_ = 0;
    first_words_ = {};
  }

  const std::string_view s_;
  const bool keep_tokens_;
  // The statement being collected.
  std::optional<SqlToken> first_;  // its first token, none before one
  size_t end_ = 0;                 // offset just past its last token so far
  std::vector<SqlToken> tokens_;   // its tokens, when keep_tokens_
  int paren_depth_ = 0;
  int begin_depth_ = 0;
  size_t word_count_ = 0;
  std::array<SqlToken, 4> first_words_;  // its first identifiers
};

// Whether `ch` continues a word around the directive (so "testpool:no-transactional" is none).
bool IsDirectiveWordByte(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_' || ch == '$' || ch == '-' || static_cast<unsigned char>(ch) >= 0x80;
}

bool HasDirective(std::string_view comment) {
  for (size_t at = comment.find(kNoTransactionDirective); at != kNpos;
       at = comment.find(kNoTransactionDirective, at + 1)) {
    const size_t after = at + kNoTransactionDirective.size();
    const bool starts_word = at == 0 || !IsDirectiveWordByte(comment[at - 1]);
    const bool ends_word = after == comment.size() || !IsDirectiveWordByte(comment[after]);
    if (starts_word && ends_word) return true;
  }
  return false;
}

}  // namespace

std::vector<SqlStatement> SplitSqlScript(std::string_view script) {
  std::vector<SqlStatement> out;
  for (LexedSqlStatement& lexed : Splitter(script, /*keep_tokens=*/false).Run()) {
    out.push_back(std::move(lexed.statement));
  }
  return out;
}

std::vector<LexedSqlStatement> SplitLexedSqlScript(std::string_view script) {
  return Splitter(script, /*keep_tokens=*/true).Run();
}

int LineOfPosition(std::string_view script, const SqlStatement& stmt, int position) {
  assert(stmt.offset + stmt.text.size() <= script.size());
  assert(script.substr(stmt.offset, stmt.text.size()) == stmt.text);
  // Find the byte where character number `position` starts (UTF-8: continuation bytes are
  // 10xxxxxx and do not start a character); clamp to the first and last character.
  size_t byte = 0;
  int chars = 0;
  for (size_t i = 0; i < stmt.text.size(); ++i) {
    if ((static_cast<unsigned char>(stmt.text[i]) & 0xC0) == 0x80) continue;
    byte = i;
    if (++chars >= position) break;
  }
  size_t end = std::min(stmt.offset + byte, script.size());
  return 1 + static_cast<int>(std::count(script.begin(), script.begin() + end, '\n'));
}

bool ScriptWantsNoTransaction(std::string_view script) {
  pg::SqlLexer lexer(script, pg::SqlLexer::Comments::kReturn);
  while (true) {
    const SqlToken t = lexer.Next();
    // A block comment the script ends inside still counts; SplitSqlScript reports it.
    const bool comment = t.kind == SqlTokenKind::kComment ||
                         (t.kind == SqlTokenKind::kUnterminated &&
                          t.unterminated == SqlTokenKind::kComment);
    if (!comment) return false;  // the first statement starts here (or the script ends)
    if (HasDirective(t.text)) return true;
  }
}

}  // namespace testpool::core
