#include "orchestrator/core/sql_script.h"

#include <algorithm>
#include <array>
#include <cassert>

#include "orchestrator/util/error.h"

namespace testpool::core {
namespace {

constexpr size_t kNpos = std::string_view::npos;
constexpr std::string_view kNoTransactionDirective = "testpool:no-transaction";

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
// PostgreSQL's ident_start: letters, '_' and every byte of a multi-byte character.
bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
// PostgreSQL's ident_cont: '$' may continue an identifier (so "a$b$" is one identifier).
bool IsIdentCont(char c) { return IsIdentStart(c) || IsDigit(c) || c == '$'; }
// Dollar-quote tags are identifiers without '$'.
bool IsTagCont(char c) { return IsIdentStart(c) || IsDigit(c); }

bool StartsWith(std::string_view s, size_t at, std::string_view prefix) {
  return s.substr(at, prefix.size()) == prefix;
}

// Position of the '\n' ending the `--` comment that starts at `at`, or s.size().
size_t LineCommentEnd(std::string_view s, size_t at) {
  size_t nl = s.find('\n', at);
  return nl == kNpos ? s.size() : nl;
}

// Position just past the "*/" closing the (nesting) block comment that starts at `at`, or kNpos
// when the script ends first.
size_t BlockCommentEnd(std::string_view s, size_t at) {
  int depth = 0;
  size_t p = at;
  while (p + 1 < s.size()) {
    if (s[p] == '/' && s[p + 1] == '*') {
      ++depth;
      p += 2;
    } else if (s[p] == '*' && s[p + 1] == '/') {
      p += 2;
      if (--depth == 0) return p;
    } else {
      ++p;
    }
  }
  return kNpos;
}

// Length of the dollar-quote delimiter ("$$" or "$tag$") starting at `at`, or 0 when the '$'
// there does not open one (a parameter such as $1, or a lone '$').
size_t DollarTagLength(std::string_view s, size_t at) {
  size_t p = at + 1;
  if (p < s.size() && s[p] == '$') return 2;
  if (p >= s.size() || !IsIdentStart(s[p])) return 0;
  while (p < s.size() && IsTagCont(s[p])) ++p;
  return p < s.size() && s[p] == '$' ? p - at + 1 : 0;
}

std::string Lower(std::string_view word) {
  std::string out(word);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// One pass over a script. Lines are looked up from a table of line starts built once.
class Splitter {
 public:
  explicit Splitter(std::string_view script) : s_(script) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < s_.size(); ++i) {
      if (s_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  std::vector<SqlStatement> Run() {
    std::vector<SqlStatement> out;
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      char next = pos_ + 1 < s_.size() ? s_[pos_ + 1] : '\0';
      if (IsSpace(c)) {
        ++pos_;
      } else if (c == '-' && next == '-') {
        pos_ = LineCommentEnd(s_, pos_);
      } else if (c == '/' && next == '*') {
        size_t end = BlockCommentEnd(s_, pos_);
        if (end == kNpos) Unterminated("block comment", pos_);
        pos_ = end;
      } else if (c == ';' && paren_depth_ == 0 && begin_depth_ == 0) {
        Emit(out);
        ++pos_;
      } else if (c == '\\') {
        int line = LineAt(pos_);
        throw Error(ErrorCode::kInvalidArgument,
                    "psql meta-commands such as \\connect are not supported (line " +
                        std::to_string(line) + ")",
                    {{"line", std::to_string(line)}});
      } else {
        if (stmt_start_ == kNpos) stmt_start_ = pos_;
        ScanToken();
        stmt_end_ = pos_;
      }
    }
    Emit(out);
    return out;
  }

 private:
  // Consumes one token (or one byte of an operator) starting at pos_, which is not whitespace,
  // a comment, a splitting ';' or a backslash.
  void ScanToken() {
    char c = s_[pos_];
    if (c == '\'') {
      SkipQuotedString(/*extended=*/false);
    } else if (c == '"') {
      SkipQuotedIdentifier();
    } else if (c == '$') {
      size_t tag_length = DollarTagLength(s_, pos_);
      if (tag_length > 0) {
        SkipDollarQuoted(tag_length);
      } else {
        ++pos_;  // a parameter: its digits follow as a number
      }
    } else if (IsIdentStart(c)) {
      size_t start = pos_;
      while (pos_ < s_.size() && IsIdentCont(s_[pos_])) ++pos_;
      std::string_view word = s_.substr(start, pos_ - start);
      if ((word == "e" || word == "E") && pos_ < s_.size() && s_[pos_] == '\'') {
        SkipQuotedString(/*extended=*/true);
      } else {
        OnWord(word);
      }
    } else if (IsDigit(c)) {
      // Numbers (and junk like 1abc) never contain quotes or '$' openers of their own.
      while (pos_ < s_.size() && (IsDigit(s_[pos_]) || IsTagCont(s_[pos_]))) ++pos_;
    } else {
      if (c == '(') ++paren_depth_;
      if (c == ')' && paren_depth_ > 0) --paren_depth_;
      ++pos_;
    }
  }

  // pos_ is at the opening quote. With `extended` (E'…'), backslash escapes the next byte and a
  // continuation segment ('…' after whitespace holding a newline) is part of the same string.
  void SkipQuotedString(bool extended) {
    size_t begin = pos_;
    ++pos_;
    while (true) {
      if (pos_ >= s_.size()) Unterminated("quoted string", begin);
      char c = s_[pos_];
      if (extended && c == '\\') {
        pos_ += 2;
      } else if (c != '\'') {
        ++pos_;
      } else if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '\'') {
        pos_ += 2;
      } else {
        ++pos_;
        size_t continuation = extended ? ContinuationQuote(pos_) : kNpos;
        if (continuation == kNpos) return;
        pos_ = continuation + 1;
      }
    }
  }

  // The position of the quote that continues a string closed just before `at` (PostgreSQL's
  // quotecontinue: whitespace and -- comments including at least one newline), or kNpos.
  size_t ContinuationQuote(size_t at) const {
    bool saw_newline = false;
    size_t p = at;
    while (p < s_.size()) {
      if (s_[p] == '\n') {
        saw_newline = true;
        ++p;
      } else if (IsSpace(s_[p])) {
        ++p;
      } else if (StartsWith(s_, p, "--")) {
        p = LineCommentEnd(s_, p);
      } else {
        break;
      }
    }
    return saw_newline && p < s_.size() && s_[p] == '\'' ? p : kNpos;
  }

  void SkipQuotedIdentifier() {
    size_t begin = pos_;
    ++pos_;
    while (true) {
      size_t quote = s_.find('"', pos_);
      if (quote == kNpos) Unterminated("quoted identifier", begin);
      pos_ = quote + 1;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        ++pos_;  // "" inside the identifier
      } else {
        return;
      }
    }
  }

  void SkipDollarQuoted(size_t tag_length) {
    std::string_view tag = s_.substr(pos_, tag_length);
    size_t close = s_.find(tag, pos_ + tag_length);
    if (close == kNpos) Unterminated("dollar-quoted string", pos_);
    pos_ = close + tag_length;
  }

  // Tracks psql's BEGIN … END heuristic for SQL-standard routine bodies.
  void OnWord(std::string_view word) {
    std::string lower = Lower(word);
    if (word_count_ < first_words_.size()) first_words_[word_count_] = lower;
    ++word_count_;
    if (!InRoutineDefinition() || paren_depth_ > 0) return;
    if (lower == "begin") {
      ++begin_depth_;
    } else if (lower == "case") {
      if (begin_depth_ > 0) ++begin_depth_;  // CASE … END matters only inside a body
    } else if (lower == "end") {
      if (begin_depth_ > 0) --begin_depth_;
    }
  }

  // Whether the current statement began CREATE [OR REPLACE] FUNCTION|PROCEDURE.
  bool InRoutineDefinition() const {
    auto routine = [](const std::string& w) { return w == "function" || w == "procedure"; };
    const auto& w = first_words_;
    return w[0] == "create" &&
           (routine(w[1]) || (w[1] == "or" && w[2] == "replace" && routine(w[3])));
  }

  void Emit(std::vector<SqlStatement>& out) {
    if (stmt_start_ != kNpos) {
      SqlStatement stmt;
      stmt.text = std::string(s_.substr(stmt_start_, stmt_end_ - stmt_start_));
      stmt.line = LineAt(stmt_start_);
      stmt.column = static_cast<int>(stmt_start_ - line_starts_[stmt.line - 1]) + 1;
      stmt.offset = stmt_start_;
      out.push_back(std::move(stmt));
    }
    stmt_start_ = kNpos;
    stmt_end_ = 0;
    paren_depth_ = 0;
    begin_depth_ = 0;
    word_count_ = 0;
    first_words_ = {};
  }

  int LineAt(size_t offset) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    return static_cast<int>(it - line_starts_.begin());
  }

  [[noreturn]] void Unterminated(const std::string& kind, size_t begin) const {
    std::string line = std::to_string(LineAt(begin));
    throw Error(ErrorCode::kInvalidArgument, "unterminated " + kind + " starting at line " + line,
                {{"line", line}});
  }

  const std::string_view s_;
  std::vector<size_t> line_starts_;  // offset of the first byte of each line
  size_t pos_ = 0;
  // The statement being collected.
  size_t stmt_start_ = kNpos;  // offset of its first token, kNpos before one
  size_t stmt_end_ = 0;        // offset just past its last token so far
  int paren_depth_ = 0;
  int begin_depth_ = 0;
  size_t word_count_ = 0;
  std::array<std::string, 4> first_words_;  // its first words, lower-cased
};

}  // namespace

std::vector<SqlStatement> SplitSqlScript(std::string_view script) {
  return Splitter(script).Run();
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
  auto has_directive = [](std::string_view comment) {
    for (size_t at = comment.find(kNoTransactionDirective); at != kNpos;
         at = comment.find(kNoTransactionDirective, at + 1)) {
      size_t after = at + kNoTransactionDirective.size();
      bool starts_word = at == 0 || !(IsIdentCont(comment[at - 1]) || comment[at - 1] == '-');
      bool ends_word =
          after == comment.size() || !(IsIdentCont(comment[after]) || comment[after] == '-');
      if (starts_word && ends_word) return true;
    }
    return false;
  };
  size_t p = 0;
  while (p < script.size()) {
    size_t end;
    if (IsSpace(script[p])) {
      end = p + 1;
    } else if (StartsWith(script, p, "--")) {
      end = LineCommentEnd(script, p);
    } else if (StartsWith(script, p, "/*")) {
      end = BlockCommentEnd(script, p);
      if (end == kNpos) end = script.size();
    } else {
      return false;  // the first statement starts here
    }
    if (end > p + 1 && has_directive(script.substr(p, end - p))) return true;
    p = end;
  }
  return false;
}

}  // namespace testpool::core
