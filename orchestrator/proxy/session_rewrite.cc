// Session: what a client's statements become on the pinned session (see session.h). Pure text
// work; the replies are mapped back through the CcSteps each rewrite leaves behind.
#include <cctype>

#include "orchestrator/core/sql_script.h"
#include "orchestrator/proxy/session.h"

namespace testpool::proxy {
namespace {

// An E'…' literal: safe whatever standard_conforming_strings the session has.
std::string Literal(std::string_view text) {
  std::string out = "E'";
  for (char ch : text) {
    if (ch == '\'' || ch == '\\') out += ch;
    out += ch;
  }
  out += '\'';
  return out;
}

bool IsReserved(const std::string& savepoint) { return savepoint.rfind("testpool_", 0) == 0; }

bool IsParamName(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  for (char ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.') return false;
  }
  return !std::isdigit(static_cast<unsigned char>(name[0]));
}

}  // namespace

std::string Session::RaiseSql(std::string_view severity, std::string_view sqlstate, std::string_view message,
                              std::string_view hint) {
  std::string sql = "DO $testpool$BEGIN RAISE ";
  sql += severity == "ERROR" ? "EXCEPTION" : std::string(severity);
  sql += " USING ERRCODE = " + Literal(sqlstate) + ", MESSAGE = " + Literal(message);
  if (!hint.empty()) sql += ", HINT = " + Literal(hint);
  sql += "; END$testpool$";
  return sql;
}

std::string Session::ServerName(const Client& c, std::string_view name) const {
  if (name.empty()) return "";
  std::string out = "c";
  out += std::to_string(c.id);
  out += '_';
  out.append(name);
  return out;
}

std::string Session::SetParamsSql(const Client& c) const {
  std::string sql;
  // What the previous client set and this one does not goes back to the server's default.
  for (const auto& [name, value] : params_now_) {
    bool kept = false;
    for (const auto& [n, v] : c.params) kept = kept || n == name;
    if (!kept && IsParamName(name)) sql += "RESET " + name + "; ";
  }
  sql += "SELECT 1";
  for (const auto& [name, value] : c.params) {
    sql += ", pg_catalog.set_config(" + Literal(name) + ", " + Literal(value) + ", false)";
  }
  return sql;
}

Session::Rewritten Session::RewriteQuery(Client& c, std::string_view text) {
  Rewritten out;
  std::vector<core::LexedSqlStatement> lexed;
  try {
    lexed = core::SplitLexedSqlScript(text);
  } catch (const std::exception&) {
    return out;  // unterminated quote and the like: the server reports it as is
  }
  // Each statement classified once, from the tokens the split already made.
  std::vector<StatementClass> classes;
  classes.reserve(lexed.size());
  bool any = false;
  for (const core::LexedSqlStatement& l : lexed) {
    classes.push_back(ClassifyTokens(l.tokens));
    any = any || classes.back().command != TxCommand::kNone;
  }
  if (!any) return out;  // sent byte for byte, replies relayed as they come
  for (size_t i = 0; i < lexed.size(); ++i) {
    const core::SqlStatement& s = lexed[i].statement;
    if (!out.sql.empty()) out.sql += ";\n";
    Rewritten one;
    RewriteStatement(c, classes[i], &one);
    out.sql += one.changed ? one.sql : s.text;
    if (one.steps.empty()) one.steps.push_back(CcStep{});
    for (CcStep& step : one.steps) out.steps.push_back(std::move(step));
  }
  out.changed = true;
  return out;
}

void Session::RewriteStatement(Client& c, const StatementClass& cls, Rewritten* out) {
  const Tx t = c.predicted;
  auto replace = [&](std::string sql, std::deque<CcStep> steps) {
    out->sql = std::move(sql);
    out->steps = std::move(steps);
    out->changed = true;
  };
  auto raise = [&](std::string_view sqlstate, const std::string& message, std::string_view hint = {}) {
    replace(RaiseSql("ERROR", sqlstate, message, hint), {CcStep{}});
  };
  auto warn = [&](std::string_view sqlstate, std::string_view message, std::string tag) {
    replace(RaiseSql("WARNING", sqlstate, message), {CcStep{false, std::move(tag), Effect::kNone}});
  };
  switch (cls.command) {
    case TxCommand::kNone:
      return;
    case TxCommand::kBegin:
      if (t == Tx::kBlock) {
        warn("25001", "there is already a transaction in progress", "BEGIN");
      } else {
        // Failed: the server refuses the savepoint ("current transaction is aborted").
        replace("SAVEPOINT testpool_c", {CcStep{false, "BEGIN", Effect::kEnterBlock}});
        if (t == Tx::kIdle) c.predicted = Tx::kBlock;
      }
      return;
    case TxCommand::kCommit:
    case TxCommand::kRollback: {
      const bool commit = cls.command == TxCommand::kCommit;
      if (t == Tx::kIdle) {
        warn("25P01", "there is no transaction in progress", commit ? "COMMIT" : "ROLLBACK");
      } else if (commit && t == Tx::kBlock) {
        if (cls.chain) {
          replace("RELEASE SAVEPOINT testpool_c; SAVEPOINT testpool_c",
                  {CcStep{true, "", Effect::kNone}, CcStep{false, "COMMIT", Effect::kStayBlock}});
        } else {
          replace("RELEASE SAVEPOINT testpool_c", {CcStep{false, "COMMIT", Effect::kLeaveBlock}});
          c.predicted = Tx::kIdle;
        }
      } else if (cls.chain) {
        replace("ROLLBACK TO SAVEPOINT testpool_c", {CcStep{false, "ROLLBACK", Effect::kStayBlock}});
        c.predicted = Tx::kBlock;
      } else {
        replace("ROLLBACK TO SAVEPOINT testpool_c; RELEASE SAVEPOINT testpool_c",
                {CcStep{true, "", Effect::kNone}, CcStep{false, "ROLLBACK", Effect::kLeaveBlock}});
        c.predicted = Tx::kIdle;
      }
      return;
    }
    case TxCommand::kSavepoint:
    case TxCommand::kRelease:
    case TxCommand::kRollbackTo: {
      const char* what = cls.command == TxCommand::kSavepoint ? "SAVEPOINT"
                         : cls.command == TxCommand::kRelease ? "RELEASE SAVEPOINT"
                                                              : "ROLLBACK TO SAVEPOINT";
      if (IsReserved(cls.savepoint)) {
        raise("3B001", "savepoint names starting with \"testpool_\" are reserved for testpool's rollback mode");
      } else if (t == Tx::kIdle) {
        raise("25P01", std::string(what) + " can only be used in transaction blocks");
      }
      return;  // inside a block: the client's own savepoints nest inside testpool_c
    }
    case TxCommand::kPrepareTransaction:
    case TxCommand::kCommitPrepared:
    case TxCommand::kRollbackPrepared:
      raise("0A000", "two-phase commit is not available through testpool's rollback mode",
            "Nothing a rollback-mode lease does is ever committed; use the clone recycle mode for this template.");
      return;
    case TxCommand::kNotInBlock:
      raise("25001",
            cls.what +
                " cannot run in testpool's rollback recycle mode: every statement of the lease runs inside "
                "one pinned transaction",
            "Use the clone recycle mode (\"recycle\": \"clone\") for templates whose tests run " + cls.what + ".");
      return;
  }
}

}  // namespace testpool::proxy
