// The one SQL lexer (pg/sql_lexer.h) and the migration-script splitter on it
// (core/sql_script.h), over SQL as a client sends it in a template's migrations or in a Query.
//
// Input: the script.
//
// Checked, the lexer (both comment modes): tokens come in order without overlapping; each
// token's text is the script's bytes at its offset; line and column match the offset; only
// whitespace lies between tokens (comments too, when skipped); a kUnterminated token is the last
// and runs to the end; kEnd repeats; skipping comments gives the same tokens minus the comments;
// SqlTokenValue never throws.
// The splitter: only Error(kInvalidArgument) with a "line" detail within the script; each
// statement's text is script.substr(offset, size), not empty, at its line and column, in order;
// between and around statements lie only whitespace, comments and ';'; a statement split again
// on its own is that one statement; SplitLexedSqlScript gives the same statements (and errors),
// whose tokens span each statement exactly; LineOfPosition stays within the statement's lines;
// ScriptWantsNoTransaction never throws and is true only when the directive is in the text.
#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "orchestrator/core/sql_script.h"
#include "orchestrator/pg/sql_lexer.h"
#include "orchestrator/util/error.h"

namespace testpool {
namespace {

using fuzz::Unexpected;
using pg::SqlLexer;
using pg::SqlToken;
using pg::SqlTokenKind;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

// Line and column of every offset of one text, by the offsets of its '\n's.
class Lines {
 public:
  explicit Lines(std::string_view s) {
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n') newlines_.push_back(i);
    }
  }
  // 1-based, lines counted by '\n'.
  int Line(size_t offset) const {
    return 1 + static_cast<int>(std::lower_bound(newlines_.begin(), newlines_.end(), offset) - newlines_.begin());
  }
  // 1-based, in bytes.
  int Column(size_t offset) const {
    const int line = Line(offset);
    const size_t start = line == 1 ? 0 : newlines_[static_cast<size_t>(line) - 2] + 1;
    return static_cast<int>(offset - start) + 1;
  }

 private:
  std::vector<size_t> newlines_;
};

std::vector<SqlToken> Lex(std::string_view s, SqlLexer::Comments comments) {
  const Lines lines(s);
  std::vector<SqlToken> out;
  SqlLexer lexer(s, comments);
  size_t end = 0;
  while (true) {
    const SqlToken t = lexer.Next();
    if (t.kind == SqlTokenKind::kEnd) {
      FUZZ_CHECK(t.text.empty() && t.offset == s.size());
      FUZZ_CHECK(lexer.Next().kind == SqlTokenKind::kEnd);
      break;
    }
    FUZZ_CHECK(!out.empty() ? out.back().kind != SqlTokenKind::kUnterminated : true);
    FUZZ_CHECK(!t.text.empty());
    FUZZ_CHECK(t.offset >= end && t.offset + t.text.size() <= s.size());
    FUZZ_CHECK(s.substr(t.offset, t.text.size()) == t.text);
    for (size_t i = end; i < t.offset; ++i) {
      // Comments are tokens of their own when returned, so only whitespace is left between.
      if (comments == SqlLexer::Comments::kReturn) FUZZ_CHECK(IsSpace(s[i]));
    }
    FUZZ_CHECK(t.line == lines.Line(t.offset) && t.column == lines.Column(t.offset));
    if (t.kind == SqlTokenKind::kUnterminated) {
      FUZZ_CHECK(t.offset + t.text.size() == s.size());
      FUZZ_CHECK(t.unterminated != SqlTokenKind::kEnd && t.unterminated != SqlTokenKind::kUnterminated);
    } else {
      FUZZ_CHECK(t.unterminated == SqlTokenKind::kEnd);
    }
    if (t.kind == SqlTokenKind::kComment) {
      FUZZ_CHECK(comments == SqlLexer::Comments::kReturn);
      FUZZ_CHECK(t.text.substr(0, 2) == "--" || t.text.substr(0, 2) == "/*");
    }
    try {
      const std::optional<std::string> value = pg::SqlTokenValue(t);
      if (t.kind == SqlTokenKind::kIdentifier) FUZZ_CHECK(value && !value->empty() && value->size() <= 63);
      if (t.kind == SqlTokenKind::kUnterminated) FUZZ_CHECK(!value);
    } catch (const std::exception& e) {
      Unexpected("SqlTokenValue", e);
    }
    end = t.offset + t.text.size();
    out.push_back(t);
  }
  for (size_t i = end; i < s.size(); ++i) {
    if (comments == SqlLexer::Comments::kReturn) FUZZ_CHECK(IsSpace(s[i]));
  }
  return out;
}

void CheckLexer(std::string_view s) {
  const std::vector<SqlToken> with_comments = Lex(s, SqlLexer::Comments::kReturn);
  const std::vector<SqlToken> without = Lex(s, SqlLexer::Comments::kSkip);
  size_t k = 0;
  for (const SqlToken& t : with_comments) {
    if (t.kind == SqlTokenKind::kComment) continue;
    FUZZ_CHECK(k < without.size());
    FUZZ_CHECK(without[k].kind == t.kind && without[k].offset == t.offset && without[k].text == t.text);
    ++k;
  }
  FUZZ_CHECK(k == without.size());
}

// Only whitespace, comments and ';' in `gap`.
bool IsSeparator(std::string_view gap) {
  SqlLexer lexer(gap, SqlLexer::Comments::kReturn);
  for (SqlToken t = lexer.Next(); t.kind != SqlTokenKind::kEnd; t = lexer.Next()) {
    if (t.kind == SqlTokenKind::kComment) continue;
    if (t.kind == SqlTokenKind::kOperator && t.text == ";") continue;
    return false;
  }
  return true;
}

// SplitSqlScript, or the error's message (prefixed "!") when it throws the documented error.
template <typename F>
auto Split(std::string_view script, const Lines& lines, F&& split, std::string* error) -> decltype(split(script)) {
  try {
    return split(script);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == ErrorCode::kInvalidArgument);
    const auto line = e.details().find("line");
    FUZZ_CHECK(line != e.details().end());
    const int n = std::stoi(line->second);
    FUZZ_CHECK(n >= 1 && n <= lines.Line(script.size()));
    *error = e.what();
    FUZZ_CHECK(!error->empty());
    return {};
  } catch (const std::exception& e) {
    Unexpected("SplitSqlScript", e);
  }
}

void CheckSplitter(std::string_view script) {
  const Lines lines(script);
  std::string error, lexed_error;
  const std::vector<core::SqlStatement> statements =
      Split(script, lines, [](std::string_view s) { return core::SplitSqlScript(s); }, &error);
  const std::vector<core::LexedSqlStatement> lexed =
      Split(script, lines, [](std::string_view s) { return core::SplitLexedSqlScript(s); }, &lexed_error);
  FUZZ_CHECK(error == lexed_error);
  FUZZ_CHECK(statements.size() == lexed.size());
  if (!error.empty()) return;

  size_t end = 0;
  for (size_t i = 0; i < statements.size(); ++i) {
    const core::SqlStatement& st = statements[i];
    FUZZ_CHECK(!st.text.empty());
    FUZZ_CHECK(st.offset >= end && st.offset + st.text.size() <= script.size());
    FUZZ_CHECK(script.substr(st.offset, st.text.size()) == st.text);
    FUZZ_CHECK(st.line == lines.Line(st.offset) && st.column == lines.Column(st.offset));
    FUZZ_CHECK(IsSeparator(script.substr(end, st.offset - end)));
    end = st.offset + st.text.size();

    const core::LexedSqlStatement& l = lexed[i];
    FUZZ_CHECK(l.statement.text == st.text && l.statement.offset == st.offset && l.statement.line == st.line &&
               l.statement.column == st.column);
    FUZZ_CHECK(!l.tokens.empty() && l.tokens.front().offset == st.offset);
    FUZZ_CHECK(l.tokens.back().offset + l.tokens.back().text.size() == end);
    for (const SqlToken& t : l.tokens) FUZZ_CHECK(t.kind != SqlTokenKind::kComment);

    // On its own, a statement is one statement: itself.
    const std::vector<core::SqlStatement> again = core::SplitSqlScript(st.text);
    FUZZ_CHECK(again.size() == 1 && again[0].text == st.text && again[0].offset == 0);

    if (i >= 16) continue;  // LineOfPosition counts lines from the script's start: keep it linear
    const int last_line = lines.Line(end - 1);
    for (int position : {-1, 0, 1, 2, static_cast<int>(st.text.size()), static_cast<int>(st.text.size()) + 3}) {
      const int line = core::LineOfPosition(script, st, position);
      FUZZ_CHECK(line >= st.line && line <= last_line);
    }
  }
  FUZZ_CHECK(IsSeparator(script.substr(end)));
}

}  // namespace
}  // namespace testpool

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace testpool;
  const std::string_view script = fuzz::AsText(data, size);
  CheckLexer(script);
  CheckSplitter(script);
  bool wants = false;
  try {
    wants = core::ScriptWantsNoTransaction(script);
  } catch (const std::exception& e) {
    fuzz::Unexpected("ScriptWantsNoTransaction", e);
  }
  if (wants) FUZZ_CHECK(script.find("testpool:no-transaction") != std::string_view::npos);
  return 0;
}
