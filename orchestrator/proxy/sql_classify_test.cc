#include "orchestrator/proxy/sql_classify.h"

#include <gtest/gtest.h>

#include "orchestrator/pg/sql_lexer.h"

#include <string>
#include <vector>

namespace testpool::proxy {
namespace {

StatementClass Expect(TxCommand command, bool chain = false) {
  StatementClass c;
  c.command = command;
  c.chain = chain;
  return c;
}

StatementClass Begin(const std::string& modes = "") {
  StatementClass c;
  c.command = TxCommand::kBegin;
  c.modes = modes;
  return c;
}

StatementClass Named(TxCommand command, const std::string& savepoint) {
  StatementClass c;
  c.command = command;
  c.savepoint = savepoint;
  return c;
}

StatementClass NotInBlock(const std::string& what) {
  StatementClass c;
  c.command = TxCommand::kNotInBlock;
  c.what = what;
  return c;
}

std::string Describe(const StatementClass& c) {
  return "command " + std::to_string(static_cast<int>(c.command)) + " chain " + std::to_string(c.chain) +
         " savepoint [" + c.savepoint + "] modes [" + c.modes + "] what [" + c.what + "]";
}

struct Case {
  std::string sql;
  StatementClass expected;
};

void ExpectAll(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    const StatementClass got = ClassifyStatement(c.sql);
    EXPECT_EQ(got, c.expected) << "sql: " << c.sql << "\n got: " << Describe(got)
                               << "\n want: " << Describe(c.expected);
  }
}

void ExpectNone(const std::vector<std::string>& statements) {
  for (const std::string& sql : statements) {
    const StatementClass got = ClassifyStatement(sql);
    EXPECT_EQ(got, StatementClass{}) << "sql: " << sql << "\n got: " << Describe(got);
  }
}

// --- BEGIN ---

TEST(ClassifyStatement, BeginInItsSpellings) {
  ExpectAll({
      {"BEGIN", Begin()},
      {"begin", Begin()},
      {"BeGiN;", Begin()},
      {"  BEGIN  ;  ", Begin()},
      {"BEGIN;;", Begin()},
      {"BEGIN WORK", Begin()},
      {"begin transaction;", Begin()},
      {"START TRANSACTION", Begin()},
      {"start\ntransaction ;", Begin()},
      {"/* opening */ BEGIN -- the block\n", Begin()},
      {"BEGIN /* a /* nested */ comment */ WORK", Begin()},
      {"BEGIN;\n-- trailing comment", Begin()},
  });
}

TEST(ClassifyStatement, BeginKeepsItsModesNormalised) {
  ExpectAll({
      {"BEGIN ISOLATION LEVEL SERIALIZABLE", Begin("ISOLATION LEVEL SERIALIZABLE")},
      {"begin transaction isolation level repeatable read, read only",
       Begin("ISOLATION LEVEL REPEATABLE READ, READ ONLY")},
      {"START TRANSACTION READ WRITE NOT DEFERRABLE", Begin("READ WRITE, NOT DEFERRABLE")},
      {"BEGIN WORK isolation level read committed", Begin("ISOLATION LEVEL READ COMMITTED")},
      {"BEGIN ISOLATION LEVEL READ UNCOMMITTED,DEFERRABLE;", Begin("ISOLATION LEVEL READ UNCOMMITTED, DEFERRABLE")},
      {"BEGIN\n  ISOLATION -- why not\n  LEVEL /* strict */ SERIALIZABLE;", Begin("ISOLATION LEVEL SERIALIZABLE")},
  });
}

TEST(ClassifyStatement, MalformedBeginIsLeftToTheServer) {
  ExpectNone({
      "BEGIN ISOLATION LEVEL",
      "BEGIN ISOLATION LEVEL SNAPSHOT",
      "BEGIN ISOLATION SERIALIZABLE",
      "BEGIN ISOLATION LEVEL REPEATABLE",
      "BEGIN READ",
      "BEGIN NOT",
      "BEGIN , READ ONLY",
      "BEGIN READ ONLY,",
      "BEGIN READ ONLY,, DEFERRABLE",
      "BEGIN WORK WORK",
      "BEGIN TRANSACTION WORK",
      "START",
      "START WORK",
      "BEGIN; SELECT 1",
      "BEGIN READ ONLY; DROP TABLE t",
  });
}

// --- COMMIT, ROLLBACK ---

TEST(ClassifyStatement, CommitInItsSpellings) {
  ExpectAll({
      {"COMMIT", Expect(TxCommand::kCommit)},
      {"commit work;", Expect(TxCommand::kCommit)},
      {"Commit Transaction", Expect(TxCommand::kCommit)},
      {"END", Expect(TxCommand::kCommit)},
      {"end transaction;", Expect(TxCommand::kCommit)},
      {"COMMIT AND CHAIN", Expect(TxCommand::kCommit, true)},
      {"COMMIT AND NO CHAIN", Expect(TxCommand::kCommit, false)},
      {"END WORK AND CHAIN;", Expect(TxCommand::kCommit, true)},
      {"commit -- done\n;", Expect(TxCommand::kCommit)},
      {"COMMIT/**/AND/**/CHAIN", Expect(TxCommand::kCommit, true)},
  });
}

TEST(ClassifyStatement, RollbackInItsSpellings) {
  ExpectAll({
      {"ROLLBACK", Expect(TxCommand::kRollback)},
      {"rollback work", Expect(TxCommand::kRollback)},
      {"ABORT", Expect(TxCommand::kRollback)},
      {"abort transaction;", Expect(TxCommand::kRollback)},
      {"ROLLBACK TRANSACTION AND CHAIN", Expect(TxCommand::kRollback, true)},
      {"ABORT AND NO CHAIN", Expect(TxCommand::kRollback, false)},
      {"\n\tROLLBACK\n", Expect(TxCommand::kRollback)},
  });
}

TEST(ClassifyStatement, MalformedCommitAndRollbackAreLeftToTheServer) {
  ExpectNone({
      "COMMIT AND",
      "COMMIT CHAIN",
      "COMMIT AND NO",
      "COMMIT NO CHAIN",
      "COMMIT WORK TRANSACTION",
      "END IF",
      "END LOOP",
      "ROLLBACK AND CHAIN TO s",
      "ABORT TO s",  // ABORT has no TO form
      "ABORT TO SAVEPOINT s",
      "COMMIT; COMMIT",
  });
}

// --- savepoints ---

TEST(ClassifyStatement, SavepointNamesAreFoldedAsTheServerFoldsThem) {
  ExpectAll({
      {"SAVEPOINT a", Named(TxCommand::kSavepoint, "a")},
      {"savepoint Sp_1;", Named(TxCommand::kSavepoint, "sp_1")},
      {"SAVEPOINT \"Quoted Name\"", Named(TxCommand::kSavepoint, "Quoted Name")},
      {"SAVEPOINT \"a\"\"b\"", Named(TxCommand::kSavepoint, "a\"b")},
      {"SAVEPOINT \"select\"", Named(TxCommand::kSavepoint, "select")},
      {"SAVEPOINT work", Named(TxCommand::kSavepoint, "work")},  // unreserved keywords are names
      {"SAVEPOINT savepoint", Named(TxCommand::kSavepoint, "savepoint")},
      {"SAVEPOINT a$b", Named(TxCommand::kSavepoint, "a$b")},
      {"SAVEPOINT ÄBC", Named(TxCommand::kSavepoint, "Äbc")},  // only ASCII letters fold
      {"SAVEPOINT U&\"d\\0061t\\+000061\"", Named(TxCommand::kSavepoint, "data")},
      {"SAVEPOINT u&\"\\D83D\\DE00\"", Named(TxCommand::kSavepoint, "\xF0\x9F\x98\x80")},
      {"SAVEPOINT /* c */ -- c\n s", Named(TxCommand::kSavepoint, "s")},
  });
}

TEST(ClassifyStatement, SavepointNamesAreTruncatedTo63Bytes) {
  const std::string long_name(70, 'A');
  EXPECT_EQ(ClassifyStatement("SAVEPOINT " + long_name).savepoint, std::string(63, 'a'));
  EXPECT_EQ(ClassifyStatement("SAVEPOINT \"" + long_name + "\"").savepoint, std::string(63, 'A'));
  // 62 bytes and a 2-byte character: the character does not fit and is not cut in half.
  const std::string accented = std::string(62, 'a') + "\xC3\xA9";
  EXPECT_EQ(ClassifyStatement("SAVEPOINT " + accented).savepoint, std::string(62, 'a'));
  // Bytes that start no UTF-8 character count as one each: the name is never cut to nothing
  // (found by fuzz/sql_classify_fuzz: a savepoint with an empty name).
  const StatementClass odd = ClassifyStatement("SAVEPOINT \"" + std::string(70, '\x8B') + "\"");
  EXPECT_EQ(odd.command, TxCommand::kSavepoint);
  EXPECT_EQ(odd.savepoint, std::string(63, '\x8B'));
}

TEST(ClassifyStatement, ReleaseAndRollbackTo) {
  ExpectAll({
      {"RELEASE a", Named(TxCommand::kRelease, "a")},
      {"RELEASE SAVEPOINT a;", Named(TxCommand::kRelease, "a")},
      {"release savepoint \"X\"", Named(TxCommand::kRelease, "X")},
      {"RELEASE savepoint", Named(TxCommand::kRelease, "savepoint")},
      {"RELEASE SAVEPOINT savepoint", Named(TxCommand::kRelease, "savepoint")},
      {"ROLLBACK TO s", Named(TxCommand::kRollbackTo, "s")},
      {"ROLLBACK TO SAVEPOINT S1", Named(TxCommand::kRollbackTo, "s1")},
      {"rollback work to savepoint \"MyPoint\";", Named(TxCommand::kRollbackTo, "MyPoint")},
      {"ROLLBACK TRANSACTION TO sp", Named(TxCommand::kRollbackTo, "sp")},
      {"ROLLBACK TO savepoint", Named(TxCommand::kRollbackTo, "savepoint")},
      {"ROLLBACK/**/TO/**/SAVEPOINT/**/a", Named(TxCommand::kRollbackTo, "a")},
      {"ROLLBACK\nTO -- where\nSAVEPOINT\n\"p\"\n;", Named(TxCommand::kRollbackTo, "p")},
  });
}

TEST(ClassifyStatement, MalformedSavepointCommandsAreLeftToTheServer) {
  ExpectNone({
      "SAVEPOINT",
      "SAVEPOINT select",   // reserved
      "SAVEPOINT verbose",  // type_func_name keyword
      "SAVEPOINT a b",
      "SAVEPOINT 'a'",
      "SAVEPOINT \"\"",  // zero-length identifier
      "SAVEPOINT \"unterminated",
      "SAVEPOINT U&\"x\" UESCAPE '!'",
      "SAVEPOINT U&\"\\00\"",    // a short escape
      "SAVEPOINT U&\"\\DE00\"",  // a lone low surrogate
      "RELEASE",
      "RELEASE SAVEPOINT a b",
      "ROLLBACK TO",
      "ROLLBACK TO select",
      "ROLLBACK TO a b",
      "SAVEPOINT a; RELEASE a",
  });
}

// --- two-phase commit ---

TEST(ClassifyStatement, TwoPhaseCommands) {
  ExpectAll({
      {"PREPARE TRANSACTION 'foo'", Expect(TxCommand::kPrepareTransaction)},
      {"prepare transaction $$x;y$$;", Expect(TxCommand::kPrepareTransaction)},
      {"COMMIT PREPARED 'x'", Expect(TxCommand::kCommitPrepared)},
      {"commit prepared E'it\\'s'", Expect(TxCommand::kCommitPrepared)},
      {"COMMIT PREPARED 'a'\n'b'", Expect(TxCommand::kCommitPrepared)},  // one literal, continued
      {"ROLLBACK PREPARED 'x';", Expect(TxCommand::kRollbackPrepared)},
      {"rollback /* c */ prepared $tag$x$tag$", Expect(TxCommand::kRollbackPrepared)},
  });
  ExpectNone({
      "PREPARE TRANSACTION foo",
      "PREPARE TRANSACTION",
      "PREPARE transaction AS SELECT 1",  // a prepared statement named "transaction"
      "PREPARE q AS SELECT 1",
      "COMMIT PREPARED",
      "COMMIT PREPARED 'x' 'y'",   // two literals on one line are not one
      "COMMIT PREPARED 'it\\'s'",  // standard strings have no backslash escapes: unterminated
      "END PREPARED 'x'",
  });
}

// --- statements refused inside a transaction block ---

TEST(ClassifyStatement, StatementsRefusedInsideABlock) {
  const std::string sub = "CREATE SUBSCRIPTION s CONNECTION 'host=pub dbname=app' PUBLICATION p";
  const std::string create_sub = "CREATE SUBSCRIPTION ... WITH (create_slot = true)";
  ExpectAll({
      {"VACUUM", NotInBlock("VACUUM")},
      {"vacuum full verbose t;", NotInBlock("VACUUM")},
      {"VACUUM (ANALYZE, VERBOSE) t", NotInBlock("VACUUM")},
      {"VACUUM ANALYZE", NotInBlock("VACUUM")},
      {"/* maintenance */ Vacuum -- everything\n", NotInBlock("VACUUM")},
      {"CLUSTER", NotInBlock("CLUSTER")},
      {"cluster verbose;", NotInBlock("CLUSTER")},
      {"CREATE INDEX CONCURRENTLY i ON t (x)", NotInBlock("CREATE INDEX CONCURRENTLY")},
      {"create unique index concurrently if not exists i on t(x)", NotInBlock("CREATE INDEX CONCURRENTLY")},
      {"CREATE /* c */ INDEX\nCONCURRENTLY ON t (x);", NotInBlock("CREATE INDEX CONCURRENTLY")},
      {"DROP INDEX CONCURRENTLY i", NotInBlock("DROP INDEX CONCURRENTLY")},
      {"drop index concurrently if exists s.i restrict", NotInBlock("DROP INDEX CONCURRENTLY")},
      {"REINDEX TABLE CONCURRENTLY t", NotInBlock("REINDEX CONCURRENTLY")},
      {"REINDEX (CONCURRENTLY) INDEX i", NotInBlock("REINDEX CONCURRENTLY")},
      {"REINDEX (VERBOSE, CONCURRENTLY true) TABLE t", NotInBlock("REINDEX CONCURRENTLY")},
      {"reindex (concurrently on) table t", NotInBlock("REINDEX CONCURRENTLY")},
      {"REINDEX SCHEMA CONCURRENTLY s", NotInBlock("REINDEX CONCURRENTLY")},
      {"REINDEX SCHEMA s", NotInBlock("REINDEX SCHEMA")},
      {"reindex database app", NotInBlock("REINDEX DATABASE")},
      {"REINDEX (VERBOSE) SYSTEM app", NotInBlock("REINDEX SYSTEM")},
      {"CREATE DATABASE d", NotInBlock("CREATE DATABASE")},
      {"create database \"D\" template t strategy file_copy", NotInBlock("CREATE DATABASE")},
      {"DROP DATABASE d", NotInBlock("DROP DATABASE")},
      {"DROP DATABASE IF EXISTS d WITH (FORCE)", NotInBlock("DROP DATABASE")},
      {"ALTER DATABASE d SET TABLESPACE ts", NotInBlock("ALTER DATABASE SET TABLESPACE")},
      {"ALTER DATABASE d TABLESPACE ts", NotInBlock("ALTER DATABASE SET TABLESPACE")},
      {"alter database d with tablespace = ts", NotInBlock("ALTER DATABASE SET TABLESPACE")},
      {"CREATE TABLESPACE ts LOCATION '/srv/ts'", NotInBlock("CREATE TABLESPACE")},
      {"DROP TABLESPACE IF EXISTS ts", NotInBlock("DROP TABLESPACE")},
      {"ALTER SYSTEM SET work_mem = '1MB'", NotInBlock("ALTER SYSTEM")},
      {"alter system reset all;", NotInBlock("ALTER SYSTEM")},
      {"DISCARD ALL", NotInBlock("DISCARD ALL")},
      {"discard /* everything */ all;", NotInBlock("DISCARD ALL")},
      {"ALTER TABLE pt DETACH PARTITION p CONCURRENTLY", NotInBlock("ALTER TABLE ... DETACH CONCURRENTLY")},
      {"alter table if exists s.pt detach partition s.p concurrently;",
       NotInBlock("ALTER TABLE ... DETACH CONCURRENTLY")},
      {sub, NotInBlock(create_sub)},
      {sub + " WITH (copy_data = false)", NotInBlock(create_sub)},
      {sub + " WITH (create_slot = true, connect)", NotInBlock(create_sub)},
      {sub + " WITH (create_slot)", NotInBlock(create_sub)},
      {"DROP SUBSCRIPTION s", NotInBlock("DROP SUBSCRIPTION")},
      {"drop subscription if exists s cascade", NotInBlock("DROP SUBSCRIPTION")},
      {"ALTER SUBSCRIPTION s REFRESH PUBLICATION", NotInBlock("ALTER SUBSCRIPTION ... REFRESH")},
      {"ALTER SUBSCRIPTION s REFRESH PUBLICATION WITH (copy_data = false)",
       NotInBlock("ALTER SUBSCRIPTION ... REFRESH")},
      {"ALTER SUBSCRIPTION s SET PUBLICATION p", NotInBlock("ALTER SUBSCRIPTION with refresh")},
      {"ALTER SUBSCRIPTION s ADD PUBLICATION p2 WITH (copy_data = false)",
       NotInBlock("ALTER SUBSCRIPTION with refresh")},
      {"ALTER SUBSCRIPTION s DROP PUBLICATION p2 WITH (refresh = true)", NotInBlock("ALTER SUBSCRIPTION with refresh")},
  });
}

TEST(ClassifyStatement, SimilarStatementsThatMayRunInsideABlock) {
  const std::string sub = "CREATE SUBSCRIPTION s CONNECTION 'host=pub dbname=app' PUBLICATION p";
  ExpectNone({
      "CREATE INDEX idx ON t(x)",
      "CREATE UNIQUE INDEX idx ON t (x)",
      "DROP INDEX idx",
      "ANALYZE t",
      "ANALYZE",
      "analyse verbose t",
      "CLUSTER t",
      "CLUSTER t USING idx",
      "CLUSTER VERBOSE t USING idx",
      "CLUSTER idx ON t",
      "CLUSTER (VERBOSE)",  // a syntax error in PostgreSQL 15
      "REINDEX TABLE t",
      "REINDEX INDEX i",
      "REINDEX (VERBOSE) TABLE t",
      "REINDEX (CONCURRENTLY false) TABLE t",
      "REINDEX (CONCURRENTLY off) TABLE t",
      "REINDEX SYSTEM",  // the name is required in PostgreSQL 15
      "REINDEX DATABASE",
      "DISCARD TEMP",
      "DISCARD PLANS",
      "DISCARD SEQUENCES",
      "ALTER TYPE mood ADD VALUE 'b'",
      "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'b' BEFORE 'a'",
      "ALTER DATABASE d SET work_mem = '1MB'",
      "ALTER DATABASE d SET search_path TO public",
      "ALTER DATABASE d CONNECTION LIMIT 5",
      "ALTER DATABASE d WITH ALLOW_CONNECTIONS true TABLESPACE ts",  // refused, but not for the block
      "ALTER DATABASE d RESET ALL",
      "ALTER DATABASE d RENAME TO e",
      "ALTER DATABASE d OWNER TO u",
      "ALTER DATABASE d REFRESH COLLATION VERSION",
      "ALTER TABLESPACE ts SET (seq_page_cost = 1)",
      "ALTER TABLE pt DETACH PARTITION p",
      "ALTER TABLE pt DETACH PARTITION p FINALIZE",
      "ALTER TABLE t ADD COLUMN concurrently_flag int",
      sub + " WITH (connect = false)",
      sub + " WITH (create_slot = false)",
      sub + " WITH (CREATE_SLOT = 'off', slot_name = NONE)",
      sub + " WITH (\"create_slot\" = 0)",
      "ALTER SUBSCRIPTION s SET PUBLICATION p WITH (refresh = false)",
      "ALTER SUBSCRIPTION s ENABLE",
      "ALTER SUBSCRIPTION s SET (slot_name = NONE)",
      "ALTER SUBSCRIPTION s CONNECTION 'host=x'",
      "REFRESH MATERIALIZED VIEW CONCURRENTLY mv",
      "CREATE TABLE vacuum_log (at timestamptz)",
      "DROP TABLE vacuum_log",
  });
}

// --- text that only looks like those statements ---

TEST(ClassifyStatement, KeywordsInsideLiteralsCommentsAndLongerWordsDoNotCount) {
  ExpectNone({
      "",
      ";",
      "  -- only a comment\n",
      "/* BEGIN */",
      "SELECT 1",
      "SELECT 'BEGIN'",
      "SELECT $$COMMIT$$",
      "SELECT E'\\'; COMMIT; --'",
      "SELECT begin_date FROM t",
      "BEGINNING",
      "begin_date",
      "ENDPOINT",
      "COMMITTED",
      "ROLLBACKS",
      "ABORTED",
      "SAVEPOINTS a",
      "VACUUMED",
      "\"BEGIN\"",
      "\"VACUUM\"",
      "-- VACUUM\nSELECT 1",
      "/* VACUUM */ SELECT 1",
      "SELECT 1 -- VACUUM",
      "COMMENT ON TABLE t IS 'VACUUM'",
      "COMMENT ON TABLE t IS 'COMMIT'",
      "DO $$BEGIN COMMIT; END$$",
      "DO $body$ BEGIN VACUUM; END $body$",
      "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN ROLLBACK; END $$",
      "CALL p()",
      "EXPLAIN ANALYZE SELECT 1",
      "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
      "LOCK TABLE t",
  });
}

TEST(ClassifyStatement, MoreThanOneStatementIsNotClassified) {
  ExpectNone({"VACUUM; VACUUM", "COMMIT; BEGIN", "SELECT 1; VACUUM", "BEGIN;SELECT 1;COMMIT"});
}

TEST(ClassifyStatement, TextThatDoesNotLexIsNotClassified) {
  ExpectNone({
      "COMMIT /* never closed",
      "COMMIT /* nested /* only one */ closed",
      "VACUUM 'unterminated",
      "VACUUM E'ends in a backslash\\",
      "VACUUM $$unterminated",
      "VACUUM \"unterminated",
  });
}

TEST(ClassifyStatement, LexesLikeTheServerAroundTheKeywords) {
  ExpectAll({
      // An operator runs up to a comment, not into it.
      {"VACUUM t+-- c\n", NotInBlock("VACUUM")},
      // Parameters and dollar quotes are told apart; '$' continues an identifier.
      {"SAVEPOINT a$1", Named(TxCommand::kSavepoint, "a$1")},
      {"COMMIT PREPARED $a$ x $a$", Expect(TxCommand::kCommitPrepared)},
      // A string continues over a newline and a comment; its ';' is not a separator.
      {"PREPARE TRANSACTION 'a;' -- more\n  'b;'", Expect(TxCommand::kPrepareTransaction)},
      // An E prefix only counts when it touches the quote.
      {"PREPARE TRANSACTION E'\\\\'", Expect(TxCommand::kPrepareTransaction)},
      {"PREPARE TRANSACTION U&'\\0041'", Expect(TxCommand::kPrepareTransaction)},
      {"PREPARE TRANSACTION X'1F'", Expect(TxCommand::kPrepareTransaction)},
  });
  ExpectNone({"PREPARE TRANSACTION e 'x'", "PREPARE TRANSACTION $1"});
}

// --- statements already lexed ---

std::vector<pg::SqlToken> Lexed(std::string_view sql, pg::SqlLexer::Comments comments) {
  std::vector<pg::SqlToken> tokens;
  pg::SqlLexer lexer(sql, comments);
  for (pg::SqlToken t = lexer.Next(); t.kind != pg::SqlTokenKind::kEnd; t = lexer.Next()) tokens.push_back(t);
  return tokens;
}

TEST(ClassifyTokens, ClassifiesTheTokensAsTheText) {
  const std::vector<Case> cases = {
      {"BEGIN /* c */ ISOLATION LEVEL SERIALIZABLE;", Begin("ISOLATION LEVEL SERIALIZABLE")},
      {"rollback -- c\n to \"P\"", Named(TxCommand::kRollbackTo, "P")},
      {"SAVEPOINT U&\"x\" /* c */ UESCAPE '!'", StatementClass{}},
      {"COMMIT PREPARED 'a'\n'b'", Expect(TxCommand::kCommitPrepared)},
      {"VACUUM; VACUUM", StatementClass{}},
      {"SELECT 1", StatementClass{}},
  };
  for (const Case& c : cases) {
    for (auto comments : {pg::SqlLexer::Comments::kSkip, pg::SqlLexer::Comments::kReturn}) {
      const std::vector<pg::SqlToken> tokens = Lexed(c.sql, comments);
      const StatementClass got = ClassifyTokens(tokens);
      EXPECT_EQ(got, c.expected) << "sql: " << c.sql << "\n got: " << Describe(got);
      EXPECT_EQ(got, ClassifyStatement(c.sql)) << "sql: " << c.sql;
    }
  }
}

TEST(ClassifyTokens, AnUnterminatedTokenIsNotClassified) {
  const std::vector<pg::SqlToken> tokens = Lexed("COMMIT /* never closed", pg::SqlLexer::Comments::kSkip);
  ASSERT_EQ(tokens.back().kind, pg::SqlTokenKind::kUnterminated);
  EXPECT_EQ(ClassifyTokens(tokens), StatementClass{});
  EXPECT_EQ(ClassifyTokens(std::span(tokens).first(1)), Expect(TxCommand::kCommit));
}

}  // namespace
}  // namespace testpool::proxy
