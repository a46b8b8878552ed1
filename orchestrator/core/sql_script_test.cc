#include "orchestrator/core/sql_script.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "orchestrator/util/error.h"

namespace testpool::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::vector<std::string> Texts(std::string_view script) {
  std::vector<std::string> texts;
  for (const SqlStatement& stmt : SplitSqlScript(script)) texts.push_back(stmt.text);
  return texts;
}

// The message of the Error that splitting `script` throws; fails the test if it does not throw
// one with kInvalidArgument.
std::string SplitError(std::string_view script) {
  try {
    SplitSqlScript(script);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << script;
  return "";
}

// --- Basic splitting ---------------------------------------------------------------------------

TEST(SplitSqlScriptTest, EmptyScriptGivesNoStatements) {
  EXPECT_THAT(SplitSqlScript(""), IsEmpty());
}

TEST(SplitSqlScriptTest, WhitespaceAndCommentsOnlyGiveNoStatements) {
  EXPECT_THAT(SplitSqlScript(" \n\t\r\n-- note\n/* block */\n"), IsEmpty());
}

TEST(SplitSqlScriptTest, SplitsOnSemicolons) {
  EXPECT_THAT(Texts("SELECT 1; SELECT 2;\nSELECT 3;"),
              ElementsAre("SELECT 1", "SELECT 2", "SELECT 3"));
}

TEST(SplitSqlScriptTest, EmptyStatementsAreDropped) {
  EXPECT_THAT(Texts(";;\n ; -- c\n;SELECT 1;;"), ElementsAre("SELECT 1"));
}

TEST(SplitSqlScriptTest, FinalStatementWithoutSemicolonIsReturned) {
  EXPECT_THAT(Texts("SELECT 1;\nSELECT 2\n"), ElementsAre("SELECT 1", "SELECT 2"));
}

TEST(SplitSqlScriptTest, TextStartsAtFirstTokenAfterLeadingComments) {
  EXPECT_THAT(Texts("-- header\n/* more */  SELECT 1;"), ElementsAre("SELECT 1"));
}

TEST(SplitSqlScriptTest, TextKeepsCommentsBetweenTokens) {
  EXPECT_THAT(Texts("SELECT 1 -- one\n  + /* two */ 2;"),
              ElementsAre("SELECT 1 -- one\n  + /* two */ 2"));
}

TEST(SplitSqlScriptTest, TextEndsAtLastTokenDroppingTrailingWhitespaceAndComments) {
  EXPECT_THAT(Texts("SELECT 1   -- trailing\n ;SELECT 2 /* c */ \n"),
              ElementsAre("SELECT 1", "SELECT 2"));
}

TEST(SplitSqlScriptTest, ReportsLineColumnAndOffsetOfFirstToken) {
  std::string script = "SELECT 1;\n\n  -- c\n    SELECT\n 2;";
  std::vector<SqlStatement> stmts = SplitSqlScript(script);
  ASSERT_EQ(stmts.size(), 2u);
  EXPECT_EQ(stmts[0].line, 1);
  EXPECT_EQ(stmts[0].column, 1);
  EXPECT_EQ(stmts[0].offset, 0u);
  EXPECT_EQ(stmts[1].line, 4);
  EXPECT_EQ(stmts[1].column, 5);
  EXPECT_EQ(stmts[1].offset, script.find("SELECT\n"));
  EXPECT_EQ(stmts[1].text, "SELECT\n 2");
}

TEST(SplitSqlScriptTest, SecondStatementOnSameLineHasItsColumn) {
  std::vector<SqlStatement> stmts = SplitSqlScript("SELECT 1;  SELECT 2;");
  ASSERT_EQ(stmts.size(), 2u);
  EXPECT_EQ(stmts[1].line, 1);
  EXPECT_EQ(stmts[1].column, 12);
  EXPECT_EQ(stmts[1].offset, 11u);
}

TEST(SplitSqlScriptTest, CrlfLineEndingsNumberLinesByNewline) {
  std::string script = "SELECT 1;\r\n\r\nSELECT\r\n  2;\r\n";
  std::vector<SqlStatement> stmts = SplitSqlScript(script);
  ASSERT_EQ(stmts.size(), 2u);
  EXPECT_EQ(stmts[0].text, "SELECT 1");
  EXPECT_EQ(stmts[1].text, "SELECT\r\n  2");
  EXPECT_EQ(stmts[1].line, 3);
  EXPECT_EQ(stmts[1].column, 1);
}

// --- Semicolons that do not split -------------------------------------------------------------

TEST(SplitSqlScriptTest, SemicolonInsideSingleQuotedStringDoesNotSplit) {
  EXPECT_THAT(Texts("SELECT 'a;b'; SELECT 2;"), ElementsAre("SELECT 'a;b'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, DoubledQuoteStaysInsideString) {
  EXPECT_THAT(Texts("SELECT 'it''s; fine'; SELECT 2;"),
              ElementsAre("SELECT 'it''s; fine'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, BackslashIsOrdinaryInPlainString) {
  // standard_conforming_strings: 'C:\' is a complete string.
  EXPECT_THAT(Texts("SELECT 'C:\\'; SELECT 2;"), ElementsAre("SELECT 'C:\\'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, BackslashEscapesQuoteInEString) {
  EXPECT_THAT(Texts("SELECT E'it\\'s; fine'; SELECT 2;"),
              ElementsAre("SELECT E'it\\'s; fine'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, LowercaseEPrefixStartsEString) {
  EXPECT_THAT(Texts("SELECT e'\\\\'; SELECT e'\\';'"),
              ElementsAre("SELECT e'\\\\'", "SELECT e'\\';'"));
}

TEST(SplitSqlScriptTest, EStringAfterParenthesisAndOperator) {
  EXPECT_THAT(Texts("SELECT (E'\\';'),'x'||E'\\';'; SELECT 2"),
              ElementsAre("SELECT (E'\\';'),'x'||E'\\';'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, EEndingAnIdentifierIsNotAnEPrefix) {
  // date'…' is a typed literal with a plain string: its backslash does not escape.
  EXPECT_THAT(Texts("SELECT date'C:\\'; SELECT 2;"),
              ElementsAre("SELECT date'C:\\'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, EStringContinuationKeepsBackslashEscapes) {
  EXPECT_THAT(Texts("SELECT E'a'\n  'b\\';c'; SELECT 2;"),
              ElementsAre("SELECT E'a'\n  'b\\';c'", "SELECT 2"));
}

TEST(SplitSqlScriptTest, SemicolonInsideQuotedIdentifierDoesNotSplit) {
  EXPECT_THAT(Texts("CREATE TABLE \"a;\"\"b\" (x int); SELECT 2;"),
              ElementsAre("CREATE TABLE \"a;\"\"b\" (x int)", "SELECT 2"));
}

TEST(SplitSqlScriptTest, SemicolonInsideDollarQuoteDoesNotSplit) {
  EXPECT_THAT(Texts("SELECT $$a;'b$$; SELECT 2;"), ElementsAre("SELECT $$a;'b$$", "SELECT 2"));
}

TEST(SplitSqlScriptTest, TaggedDollarQuoteContainsOtherTags) {
  EXPECT_THAT(Texts("SELECT $fn$ $$; $x$; $f$ $fn$; SELECT 2;"),
              ElementsAre("SELECT $fn$ $$; $x$; $f$ $fn$", "SELECT 2"));
}

TEST(SplitSqlScriptTest, PositionalParameterIsNotADollarQuote) {
  EXPECT_THAT(Texts("PREPARE q(int) AS SELECT $1;SELECT $$;$$;"),
              ElementsAre("PREPARE q(int) AS SELECT $1", "SELECT $$;$$"));
}

TEST(SplitSqlScriptTest, DollarInsideIdentifierIsNotADollarQuote) {
  EXPECT_THAT(Texts("SELECT a$b$c; SELECT 2;"), ElementsAre("SELECT a$b$c", "SELECT 2"));
}

TEST(SplitSqlScriptTest, SemicolonInsideLineCommentDoesNotSplit) {
  EXPECT_THAT(Texts("SELECT 1 -- a; b\n + 1;"), ElementsAre("SELECT 1 -- a; b\n + 1"));
}

TEST(SplitSqlScriptTest, SemicolonInsideBlockCommentDoesNotSplit) {
  EXPECT_THAT(Texts("SELECT /* a; b */ 1;"), ElementsAre("SELECT /* a; b */ 1"));
}

TEST(SplitSqlScriptTest, BlockCommentsNest) {
  EXPECT_THAT(Texts("/* outer /* inner */ still; comment */ SELECT 1;"),
              ElementsAre("SELECT 1"));
}

TEST(SplitSqlScriptTest, SemicolonInsideParenthesesDoesNotSplit) {
  EXPECT_THAT(Texts("CREATE RULE r AS ON INSERT TO t DO INSTEAD (INSERT INTO a VALUES (1); "
                    "INSERT INTO b VALUES (2)); SELECT 2;"),
              ElementsAre("CREATE RULE r AS ON INSERT TO t DO INSTEAD (INSERT INTO a VALUES (1); "
                          "INSERT INTO b VALUES (2))",
                          "SELECT 2"));
}

TEST(SplitSqlScriptTest, BeginAtomicBodyDoesNotSplit) {
  std::string fn =
      "CREATE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\n"
      "BEGIN ATOMIC\n"
      "  SELECT a + b;\n"
      "END";
  EXPECT_THAT(Texts(fn + ";\nSELECT 1;"), ElementsAre(fn, "SELECT 1"));
}

TEST(SplitSqlScriptTest, CaseEndInsideBeginAtomicBodyKeepsBodyOpen) {
  std::string fn =
      "create or replace procedure p(x int) language sql\n"
      "begin atomic\n"
      "  insert into t values (case when x > 0 then 1 else 0 end);\n"
      "  select case when x > 0 then 1 end;\n"
      "  insert into t values (2);\n"
      "end";
  EXPECT_THAT(Texts(fn + ";\nSELECT 1;"), ElementsAre(fn, "SELECT 1"));
}

TEST(SplitSqlScriptTest, TransactionBeginIsNotARoutineBody) {
  EXPECT_THAT(Texts("BEGIN; CREATE TABLE t (); END;"),
              ElementsAre("BEGIN", "CREATE TABLE t ()", "END"));
}

TEST(SplitSqlScriptTest, CaseOutsideRoutineBodyDoesNotNest) {
  EXPECT_THAT(Texts("SELECT CASE WHEN true THEN 1 END; SELECT 2;"),
              ElementsAre("SELECT CASE WHEN true THEN 1 END", "SELECT 2"));
}

TEST(SplitSqlScriptTest, BeginInsideDollarQuotedBodyIsIgnored) {
  std::string fn =
      "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM 1; END $$";
  EXPECT_THAT(Texts(fn + "; SELECT 1;"), ElementsAre(fn, "SELECT 1"));
}

TEST(SplitSqlScriptTest, BackslashInsideStringIsNotAMetaCommand) {
  EXPECT_THAT(Texts("SELECT '\n\\connect db\n';"), ElementsAre("SELECT '\n\\connect db\n'"));
}

// --- Errors ------------------------------------------------------------------------------------

TEST(SplitSqlScriptTest, UnterminatedStringNamesItsLine) {
  EXPECT_EQ(SplitError("SELECT 1;\nSELECT 'abc;\n"),
            "unterminated quoted string starting at line 2");
}

TEST(SplitSqlScriptTest, EStringEndingInEscapedQuoteIsUnterminated) {
  EXPECT_EQ(SplitError("\n\nSELECT E'abc\\';"), "unterminated quoted string starting at line 3");
}

TEST(SplitSqlScriptTest, UnterminatedQuotedIdentifierNamesItsLine) {
  EXPECT_EQ(SplitError("SELECT \"a\"\"b;\nSELECT 2;"),
            "unterminated quoted identifier starting at line 1");
}

TEST(SplitSqlScriptTest, UnterminatedBlockCommentNamesItsLine) {
  EXPECT_EQ(SplitError("SELECT 1;\n\n/* a /* nested */ still open\nSELECT 2;"),
            "unterminated block comment starting at line 3");
}

TEST(SplitSqlScriptTest, UnterminatedDollarQuoteNamesItsLine) {
  std::string script(11, '\n');
  script += "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$;";
  EXPECT_EQ(SplitError(script), "unterminated dollar-quoted string starting at line 12");
}

TEST(SplitSqlScriptTest, UnterminatedContinuedStringNamesTheLineWhereItStarts) {
  EXPECT_EQ(SplitError("SELECT 1;\nSELECT 'a'\n  'b;\n"),
            "unterminated quoted string starting at line 2");
}

TEST(SplitSqlScriptTest, LineCommentEndsAtABareCarriageReturn) {
  EXPECT_THAT(Texts("-- c\rSELECT 1;\rSELECT 2 -- d\r;"), ElementsAre("SELECT 1", "SELECT 2"));
}

TEST(SplitSqlScriptTest, ErrorCarriesLineInDetails) {
  try {
    SplitSqlScript("\n'x");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.details().at("line"), "2");
  }
}

TEST(SplitSqlScriptTest, MetaCommandLineIsRejected) {
  EXPECT_EQ(SplitError("SELECT 1;\n  \\connect other\nSELECT 2;"),
            "psql meta-commands such as \\connect are not supported (line 2)");
}

TEST(SplitSqlScriptTest, MetaCommandInsideStatementIsRejected) {
  EXPECT_EQ(SplitError("SELECT 1\n\\gset\n"),
            "psql meta-commands such as \\connect are not supported (line 2)");
}

// --- LineOfPosition ----------------------------------------------------------------------------

TEST(LineOfPositionTest, FirstCharacterIsOnStatementLine) {
  std::string script = "\n\nSELECT 1;";
  SqlStatement stmt = SplitSqlScript(script).at(0);
  EXPECT_EQ(LineOfPosition(script, stmt, 1), 3);
}

TEST(LineOfPositionTest, PositionOnLaterLineOfStatement) {
  std::string script = "SELECT 1;\nSELECT a,\n  b,\n  bogus;";
  SqlStatement stmt = SplitSqlScript(script).at(1);
  int position = static_cast<int>(stmt.text.find("bogus")) + 1;
  EXPECT_EQ(LineOfPosition(script, stmt, position), 4);
  EXPECT_EQ(LineOfPosition(script, stmt, position - 3), 3);  // the '\n' ending line 3
}

TEST(LineOfPositionTest, CountsUtf8CharactersNotBytes) {
  // 'ü€😀' is 3 characters but 9 bytes; in bytes the position of "x" would land past line 2.
  std::string script = "SELECT '\xC3\xBC\xE2\x82\xAC\xF0\x9F\x98\x80', 1,\n2,\nx,\ny;";
  SqlStatement stmt = SplitSqlScript(script).at(0);
  // Characters: "SELECT '" (8) + 3 + "', 1,\n" (6) + "2,\n" (3) → "x" is character 21.
  EXPECT_EQ(LineOfPosition(script, stmt, 21), 3);
  EXPECT_EQ(LineOfPosition(script, stmt, 20), 2);
}

TEST(LineOfPositionTest, PositionsOutOfRangeAreClamped) {
  std::string script = "SELECT 1;\n\nSELECT\n2;";
  SqlStatement stmt = SplitSqlScript(script).at(1);
  EXPECT_EQ(LineOfPosition(script, stmt, 0), 3);
  EXPECT_EQ(LineOfPosition(script, stmt, 1000), 4);
}

TEST(LineOfPositionTest, CrlfLinesAreCountedOnce) {
  std::string script = "SELECT 1;\r\nSELECT a,\r\n  bogus;\r\n";
  SqlStatement stmt = SplitSqlScript(script).at(1);
  int position = static_cast<int>(stmt.text.find("bogus")) + 1;
  EXPECT_EQ(LineOfPosition(script, stmt, position), 3);
}

// --- ScriptWantsNoTransaction ------------------------------------------------------------------

TEST(ScriptWantsNoTransactionTest, TrueForDirectiveInLeadingLineComment) {
  EXPECT_TRUE(ScriptWantsNoTransaction(
      "-- Build the index without locking writes.\n-- testpool:no-transaction\n"
      "CREATE INDEX CONCURRENTLY i ON t (x);"));
}

TEST(ScriptWantsNoTransactionTest, TrueForDirectiveInLeadingBlockComment) {
  EXPECT_TRUE(ScriptWantsNoTransaction("/*\n * testpool:no-transaction\n */\nVACUUM t;"));
}

TEST(ScriptWantsNoTransactionTest, FalseWithoutDirective) {
  EXPECT_FALSE(ScriptWantsNoTransaction("-- adds users\nCREATE TABLE users (id int);"));
}

TEST(ScriptWantsNoTransactionTest, FalseWhenDirectiveFollowsFirstStatement) {
  EXPECT_FALSE(ScriptWantsNoTransaction(
      "CREATE TABLE t (x int);\n-- testpool:no-transaction\nVACUUM t;"));
}

TEST(ScriptWantsNoTransactionTest, FalseWhenDirectiveIsInsideStatementString) {
  EXPECT_FALSE(ScriptWantsNoTransaction("SELECT '-- testpool:no-transaction';"));
}

TEST(ScriptWantsNoTransactionTest, FalseForLongerWord) {
  EXPECT_FALSE(ScriptWantsNoTransaction("-- testpool:no-transactional\nSELECT 1;"));
}

// --- Whole scripts -----------------------------------------------------------------------------

TEST(SplitSqlScriptTest, RealisticMigrationSplitsIntoItsStatements) {
  std::string script = R"sql(-- 0001_init.sql: accounts and their audit trail.
CREATE TABLE accounts (
  id bigserial PRIMARY KEY,
  name text NOT NULL CHECK (name <> ''),  -- no empty names; ever
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION touch_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'x;y' THEN
    RAISE EXCEPTION 'bad name: %', NEW.name;
  END IF;
  NEW.created_at := now();
  RETURN NEW;
END;
$$;

CREATE TRIGGER accounts_touch BEFORE INSERT ON accounts
  FOR EACH ROW EXECUTE FUNCTION touch_account();

/* Seed data. */
INSERT INTO accounts (name) VALUES ('O''Brien; Ltd'), (E'tab\there');
INSERT INTO accounts (name) VALUES ($q$it's $$ fine; really$q$);
)sql";
  std::vector<SqlStatement> stmts = SplitSqlScript(script);
  ASSERT_EQ(stmts.size(), 5u);
  EXPECT_TRUE(stmts[0].text.starts_with("CREATE TABLE accounts ("));
  EXPECT_TRUE(stmts[0].text.ends_with(")"));
  EXPECT_EQ(stmts[0].line, 2);
  EXPECT_TRUE(stmts[1].text.starts_with("CREATE FUNCTION touch_account()"));
  EXPECT_TRUE(stmts[1].text.ends_with("END;\n$$"));
  EXPECT_EQ(stmts[1].line, 8);
  EXPECT_EQ(stmts[2].line, 18);
  EXPECT_EQ(stmts[2].text,
            "CREATE TRIGGER accounts_touch BEFORE INSERT ON accounts\n"
            "  FOR EACH ROW EXECUTE FUNCTION touch_account()");
  EXPECT_EQ(stmts[3].line, 22);
  EXPECT_EQ(stmts[3].text,
            "INSERT INTO accounts (name) VALUES ('O''Brien; Ltd'), (E'tab\\there')");
  EXPECT_EQ(stmts[4].line, 23);
  EXPECT_EQ(stmts[4].text, "INSERT INTO accounts (name) VALUES ($q$it's $$ fine; really$q$)");
  EXPECT_FALSE(ScriptWantsNoTransaction(script));
}

TEST(SplitSqlScriptTest, JoinedStatementsSplitBackIntoThemselves) {
  const std::vector<std::string> statements = {
      "SELECT 1",
      "SELECT 'a;b', E'c\\';d', \"e;\"\"f\"",
      "SELECT $$;$$, $t$ $$ ; $t$, $1",
      "SELECT /* x; /* y; */ z; */ 2 -- w;\n + 3",
      "CREATE TABLE t (a int, b text DEFAULT ';')",
      "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END",
      "INSERT INTO t VALUES (1, '\xC3\xA9;')",
      "SELECT CASE WHEN true THEN 1 END",
      "BEGIN",
      "COMMIT",
  };
  std::string script;
  for (const std::string& stmt : statements) script += stmt + ";\n";
  std::vector<SqlStatement> split = SplitSqlScript(script);
  ASSERT_EQ(split.size(), statements.size());
  for (size_t i = 0; i < split.size(); ++i) {
    EXPECT_EQ(split[i].text, statements[i]);
    EXPECT_EQ(script.substr(split[i].offset, split[i].text.size()), split[i].text);
    EXPECT_EQ(split[i].column, 1);
  }
}

}  // namespace
}  // namespace testpool::core
