// The proxy's statement classifier (proxy/sql_classify.h) over the SQL a lease holder sends in a
// Query or Parse message, read as the proxy reads it: the text split into statements by
// core::SplitLexedSqlScript, each statement's tokens classified by ClassifyTokens; and the whole
// text classified by ClassifyStatement.
//
// Input: the SQL text.
//
// Checked: ClassifyStatement and ClassifyTokens never throw; ClassifyTokens of a split statement's
// tokens equals ClassifyStatement of its text, and ClassifyTokens of the whole text's tokens
// (comments included) equals ClassifyStatement of the whole text; a comment before the statement
// and a newline and ';' after it change nothing; each field is set only for its commands; a
// savepoint name is 1 to 63 bytes and comes back the same from "SAVEPOINT <name quoted>" (and
// RELEASE, ROLLBACK TO); BEGIN's normalised modes come back the same from "BEGIN <modes>" and
// "START TRANSACTION <modes>".
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "orchestrator/core/sql_script.h"
#include "orchestrator/pg/sql_lexer.h"
#include "orchestrator/proxy/sql_classify.h"
#include "orchestrator/util/error.h"

namespace testpool::proxy {
namespace {

using fuzz::Unexpected;

StatementClass Classify(std::string_view sql) {
  try {
    return ClassifyStatement(sql);
  } catch (const std::exception& e) {
    Unexpected("ClassifyStatement", e);
  }
}

StatementClass ClassifyLexed(std::span<const pg::SqlToken> tokens) {
  try {
    return ClassifyTokens(tokens);
  } catch (const std::exception& e) {
    Unexpected("ClassifyTokens", e);
  }
}

std::string QuoteIdentifier(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    out.push_back(c);
    if (c == '"') out.push_back('"');
  }
  return out + "\"";
}

void CheckFields(const StatementClass& c) {
  const TxCommand cmd = c.command;
  if (cmd != TxCommand::kCommit && cmd != TxCommand::kRollback) FUZZ_CHECK(!c.chain);
  if (cmd != TxCommand::kBegin) FUZZ_CHECK(c.modes.empty());
  FUZZ_CHECK((cmd == TxCommand::kNotInBlock) == !c.what.empty());
  const bool named = cmd == TxCommand::kSavepoint || cmd == TxCommand::kRelease || cmd == TxCommand::kRollbackTo;
  FUZZ_CHECK(named == !c.savepoint.empty());
  FUZZ_CHECK(c.savepoint.size() <= 63);
}

void CheckRoundTrips(const StatementClass& c) {
  if (!c.savepoint.empty()) {
    const std::string quoted = QuoteIdentifier(c.savepoint);
    const StatementClass savepoint = Classify("SAVEPOINT " + quoted);
    FUZZ_CHECK(savepoint.command == TxCommand::kSavepoint && savepoint.savepoint == c.savepoint);
    const StatementClass release = Classify("RELEASE SAVEPOINT " + quoted);
    FUZZ_CHECK(release.command == TxCommand::kRelease && release.savepoint == c.savepoint);
    const StatementClass rollback_to = Classify("ROLLBACK TO " + quoted);
    FUZZ_CHECK(rollback_to.command == TxCommand::kRollbackTo && rollback_to.savepoint == c.savepoint);
  }
  if (c.command == TxCommand::kBegin) {
    const StatementClass begin = Classify("BEGIN " + c.modes);
    FUZZ_CHECK(begin.command == TxCommand::kBegin && begin.modes == c.modes);
    const StatementClass start = Classify("START TRANSACTION " + c.modes);
    FUZZ_CHECK(start.command == TxCommand::kBegin && start.modes == c.modes);
  }
}

}  // namespace
}  // namespace testpool::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace testpool;
  using namespace testpool::proxy;
  const std::string_view sql = fuzz::AsText(data, size);

  // The whole text as one statement (a Parse message's query).
  const StatementClass whole = Classify(sql);
  CheckFields(whole);
  CheckRoundTrips(whole);
  {
    std::vector<pg::SqlToken> tokens;
    pg::SqlLexer lexer(sql, pg::SqlLexer::Comments::kReturn);
    for (pg::SqlToken t = lexer.Next(); t.kind != pg::SqlTokenKind::kEnd; t = lexer.Next()) tokens.push_back(t);
    FUZZ_CHECK(ClassifyLexed(tokens) == whole);
  }
  FUZZ_CHECK(Classify("/* before */ " + std::string(sql)) == whole);
  FUZZ_CHECK(Classify(std::string(sql) + "\n;") == whole);

  // The text as a Query: split, then each statement classified from its tokens.
  std::vector<core::LexedSqlStatement> statements;
  try {
    statements = core::SplitLexedSqlScript(sql);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == ErrorCode::kInvalidArgument);
    return 0;
  } catch (const std::exception& e) {
    fuzz::Unexpected("SplitLexedSqlScript", e);
  }
  for (const core::LexedSqlStatement& s : statements) {
    const StatementClass c = ClassifyLexed(s.tokens);
    CheckFields(c);
    FUZZ_CHECK(c == Classify(s.statement.text));
  }
  return 0;
}
