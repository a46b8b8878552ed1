#include "orchestrator/pg/sql_lexer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace testpool::pg {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using K = SqlTokenKind;

struct Tok {
  K kind;
  std::string text;
  bool operator==(const Tok&) const = default;
};

void PrintTo(const Tok& t, std::ostream* os) {
  *os << "{" << static_cast<int>(t.kind) << ", \"" << t.text << "\"}";
}

std::vector<SqlToken> Lex(std::string_view sql,
                          SqlLexer::Comments comments = SqlLexer::Comments::kSkip) {
  std::vector<SqlToken> out;
  SqlLexer lexer(sql, comments);
  for (SqlToken t = lexer.Next(); t.kind != K::kEnd; t = lexer.Next()) out.push_back(t);
  return out;
}

std::vector<Tok> Toks(std::string_view sql,
                      SqlLexer::Comments comments = SqlLexer::Comments::kSkip) {
  std::vector<Tok> out;
  for (const SqlToken& t : Lex(sql, comments)) out.push_back({t.kind, std::string(t.text)});
  return out;
}

// The value of the only token of `sql`.
std::optional<std::string> Value(std::string_view sql) {
  std::vector<SqlToken> tokens = Lex(sql);
  EXPECT_EQ(tokens.size(), 1u) << sql;
  return tokens.empty() ? std::nullopt : SqlTokenValue(tokens[0]);
}

// --- whitespace and comments --------------------------------------------------------------------

TEST(SqlLexerTest, EmptyTextAndWhitespaceGiveNoTokens) {
  EXPECT_THAT(Toks(""), IsEmpty());
  EXPECT_THAT(Toks(" \t\n\r\f\v"), IsEmpty());
}

TEST(SqlLexerTest, EndRepeatsAtTheEndOfTheText) {
  SqlLexer lexer("x  ");
  EXPECT_EQ(lexer.Next().kind, K::kIdentifier);
  SqlToken end = lexer.Next();
  EXPECT_EQ(end.kind, K::kEnd);
  EXPECT_EQ(end.offset, 3u);
  EXPECT_EQ(lexer.Next().kind, K::kEnd);
}

TEST(SqlLexerTest, CommentsAreSkippedUnlessAsked) {
  const std::string sql = "a -- one; two\nb /* three */ c";
  EXPECT_THAT(Toks(sql), ElementsAre(Tok{K::kIdentifier, "a"}, Tok{K::kIdentifier, "b"},
                                     Tok{K::kIdentifier, "c"}));
  EXPECT_THAT(Toks(sql, SqlLexer::Comments::kReturn),
              ElementsAre(Tok{K::kIdentifier, "a"}, Tok{K::kComment, "-- one; two"},
                          Tok{K::kIdentifier, "b"}, Tok{K::kComment, "/* three */"},
                          Tok{K::kIdentifier, "c"}));
}

TEST(SqlLexerTest, LineCommentEndsAtCarriageReturnOrNewline) {
  EXPECT_THAT(Toks("-- c\rx -- d\r\ny"),
              ElementsAre(Tok{K::kIdentifier, "x"}, Tok{K::kIdentifier, "y"}));
  EXPECT_THAT(Toks("x --", SqlLexer::Comments::kReturn),
              ElementsAre(Tok{K::kIdentifier, "x"}, Tok{K::kComment, "--"}));
}

TEST(SqlLexerTest, BlockCommentsNest) {
  EXPECT_THAT(Toks("/* a /* b */ c; */ x", SqlLexer::Comments::kReturn),
              ElementsAre(Tok{K::kComment, "/* a /* b */ c; */"}, Tok{K::kIdentifier, "x"}));
}

// --- identifiers and keywords -------------------------------------------------------------------

TEST(SqlLexerTest, IdentifiersTakeDollarsDigitsAndMultiByteCharacters) {
  EXPECT_THAT(Toks("a$b$c _x1 \xC3\x84"
                   "bc begin_date"),
              ElementsAre(Tok{K::kIdentifier, "a$b$c"}, Tok{K::kIdentifier, "_x1"},
                          Tok{K::kIdentifier, "\xC3\x84"
                                              "bc"},
                          Tok{K::kIdentifier, "begin_date"}));
}

TEST(SqlLexerTest, IsKeywordMatchesUnquotedWordsInAnyCase) {
  std::vector<SqlToken> t = Lex("BeGiN begin_date \"begin\" 'begin'");
  ASSERT_EQ(t.size(), 4u);
  EXPECT_TRUE(IsKeyword(t[0], "begin"));
  EXPECT_FALSE(IsKeyword(t[0], "beg"));
  EXPECT_FALSE(IsKeyword(t[1], "begin"));
  EXPECT_FALSE(IsKeyword(t[2], "begin"));
  EXPECT_FALSE(IsKeyword(t[3], "begin"));
}

TEST(SqlLexerTest, IdentifierValuesAreFoldedAndTruncated) {
  EXPECT_EQ(Value("Sp_1"), "sp_1");
  EXPECT_EQ(Value("\xC3\x84"
                  "BC"),
            "\xC3\x84"
            "bc");  // only ASCII letters fold
  EXPECT_EQ(Value(std::string(70, 'A')), std::string(63, 'a'));
  // 62 bytes and a 2-byte character: the character does not fit and is not cut in half.
  EXPECT_EQ(Value(std::string(62, 'a') + "\xC3\xA9"), std::string(62, 'a'));
  // A byte that starts no UTF-8 character counts as one, as the server counts it: a name of such
  // bytes is cut to 63 of them, never to nothing (found by fuzz/sql_script_fuzz).
  EXPECT_EQ(Value("F" + std::string(70, '\xB6')), "f" + std::string(62, '\xB6'));
}

TEST(SqlLexerTest, QuotedIdentifiers) {
  EXPECT_THAT(Toks("\"a;\"\"b\" U&\"x\" u&\"y\""),
              ElementsAre(Tok{K::kQuotedIdentifier, "\"a;\"\"b\""},
                          Tok{K::kUnicodeIdentifier, "U&\"x\""},
                          Tok{K::kUnicodeIdentifier, "u&\"y\""}));
  EXPECT_EQ(Value("\"Quoted Name\""), "Quoted Name");
  EXPECT_EQ(Value("\"a\"\"b\""), "a\"b");
  EXPECT_EQ(Value("\"" + std::string(70, 'A') + "\""), std::string(63, 'A'));
  EXPECT_EQ(Value("\"" + std::string(70, '\x8B') + "\""), std::string(63, '\x8B'));
  EXPECT_EQ(Value("\"\""), std::nullopt);  // zero-length
  EXPECT_EQ(Value("U&\"d\\0061t\\+000061\""), "data");
  EXPECT_EQ(Value("U&\"\\D83D\\DE00\""), "\xF0\x9F\x98\x80");
  EXPECT_EQ(Value("U&\"\\\\\""), "\\");
  EXPECT_EQ(Value("U&\"\\00\""), std::nullopt);    // a short escape
  EXPECT_EQ(Value("U&\"\\DE00\""), std::nullopt);  // a lone low surrogate
  EXPECT_EQ(Value("U&\"\\D83Dx\""), std::nullopt);  // a high surrogate alone
  EXPECT_EQ(Value("U&\"\\0000\""), std::nullopt);  // no NUL
  EXPECT_EQ(Value("U&\"\""), std::nullopt);
}

// --- strings ------------------------------------------------------------------------------------

TEST(SqlLexerTest, StandardStringsDoubleQuotesAndKeepBackslashes) {
  EXPECT_THAT(Toks("'it''s; fine' 'C:\\' x"),
              ElementsAre(Tok{K::kString, "'it''s; fine'"}, Tok{K::kString, "'C:\\'"},
                          Tok{K::kIdentifier, "x"}));
  EXPECT_EQ(Value("'it''s'"), "it's");
  EXPECT_EQ(Value("'C:\\'"), "C:\\");
}

TEST(SqlLexerTest, EStringsHonourBackslashEscapes) {
  EXPECT_THAT(Toks("E'it\\'s;' e'\\\\' x"),
              ElementsAre(Tok{K::kEscapeString, "E'it\\'s;'"}, Tok{K::kEscapeString, "e'\\\\'"},
                          Tok{K::kIdentifier, "x"}));
  EXPECT_EQ(Value("E'it\\'s'"), "it's");
  EXPECT_EQ(Value("E'a\\nb\\tc\\\\d\\x'"), "a\nb\tc\\dx");
  EXPECT_EQ(Value("E'it''s'"), "it's");
}

TEST(SqlLexerTest, APrefixCountsOnlyWhenItTouchesTheQuote) {
  EXPECT_THAT(Toks("e 'a\\' date'C:\\' (E'\\';')"),
              ElementsAre(Tok{K::kIdentifier, "e"}, Tok{K::kString, "'a\\'"},
                          Tok{K::kIdentifier, "date"}, Tok{K::kString, "'C:\\'"},
                          Tok{K::kOperator, "("}, Tok{K::kEscapeString, "E'\\';'"},
                          Tok{K::kOperator, ")"}));
}

TEST(SqlLexerTest, OtherPrefixedStringsLexAsStandardStrings) {
  EXPECT_THAT(Toks("B'01' x'1F' N'n\\' U&'\\0041' u&'a'"),
              ElementsAre(Tok{K::kString, "B'01'"}, Tok{K::kString, "x'1F'"},
                          Tok{K::kString, "N'n\\'"}, Tok{K::kUnicodeString, "U&'\\0041'"},
                          Tok{K::kUnicodeString, "u&'a'"}));
  EXPECT_EQ(Value("X'1F'"), "1F");
  EXPECT_EQ(Value("U&'\\0041\\+01F600'"), "A\xF0\x9F\x98\x80");
  EXPECT_EQ(Value("U&'\\zz'"), std::nullopt);
  // U& not touching a quote is an identifier and an operator.
  EXPECT_THAT(Toks("U& 'a'"), ElementsAre(Tok{K::kIdentifier, "U"}, Tok{K::kOperator, "&"},
                                          Tok{K::kString, "'a'"}));
}

TEST(SqlLexerTest, StringsContinueOverANewline) {
  // Whitespace holding a newline (CR or LF), and -- comments, join two literals into one token.
  EXPECT_THAT(Toks("'a;' -- more\n  'b;' 'c'"),
              ElementsAre(Tok{K::kString, "'a;' -- more\n  'b;'"}, Tok{K::kString, "'c'"}));
  EXPECT_THAT(Toks("'a'\r'b'"), ElementsAre(Tok{K::kString, "'a'\r'b'"}));
  EXPECT_EQ(Value("'a;' -- it's\n  'b;'"), "a;b;");
  // The continuation keeps the E rules of the first segment.
  EXPECT_THAT(Toks("E'a'\n  'b\\';c' x"),
              ElementsAre(Tok{K::kEscapeString, "E'a'\n  'b\\';c'"}, Tok{K::kIdentifier, "x"}));
  EXPECT_EQ(Value("E'a'\n'\\''"), "a'");
}

// --- dollar quotes and parameters ---------------------------------------------------------------

TEST(SqlLexerTest, DollarQuotesHoldOtherTagsAndQuotes) {
  EXPECT_THAT(Toks("$$a;'b$$ $fn$ $$; $x$; $f$ $fn$ $_1$x$_1$"),
              ElementsAre(Tok{K::kDollarString, "$$a;'b$$"},
                          Tok{K::kDollarString, "$fn$ $$; $x$; $f$ $fn$"},
                          Tok{K::kDollarString, "$_1$x$_1$"}));
  EXPECT_EQ(Value("$$a;'b$$"), "a;'b");
  EXPECT_EQ(Value("$t$ $$ $t$"), " $$ ");
  EXPECT_EQ(Value("$$$$"), "");
}

TEST(SqlLexerTest, ParametersAndLoneDollarsAreNotDollarQuotes) {
  EXPECT_THAT(Toks("$1;$$;$$ $12 $ a $1abc'x\\'"),
              ElementsAre(Tok{K::kParameter, "$1"}, Tok{K::kOperator, ";"},
                          Tok{K::kDollarString, "$$;$$"}, Tok{K::kParameter, "$12"},
                          Tok{K::kOperator, "$"}, Tok{K::kIdentifier, "a"},
                          Tok{K::kParameter, "$1abc"}, Tok{K::kString, "'x\\'"}));
  EXPECT_THAT(Toks("$1$"), ElementsAre(Tok{K::kParameter, "$1"}, Tok{K::kOperator, "$"}));
}

// --- numbers and operators ----------------------------------------------------------------------

TEST(SqlLexerTest, Numbers) {
  EXPECT_THAT(Toks("1 1.5e3 .5 1abc 1$$x$$"),
              ElementsAre(Tok{K::kNumber, "1"}, Tok{K::kNumber, "1.5e3"}, Tok{K::kNumber, ".5"},
                          Tok{K::kNumber, "1abc"}, Tok{K::kNumber, "1"},
                          Tok{K::kDollarString, "$$x$$"}));
}

TEST(SqlLexerTest, OperatorsRunUpToACommentAndPunctuationIsOneByte) {
  EXPECT_THAT(Toks("a<=b||c +-- c\n *-/* c */ (x,y);[1]::t.z"),
              ElementsAre(Tok{K::kIdentifier, "a"}, Tok{K::kOperator, "<="},
                          Tok{K::kIdentifier, "b"}, Tok{K::kOperator, "||"},
                          Tok{K::kIdentifier, "c"}, Tok{K::kOperator, "+"},
                          Tok{K::kOperator, "*-"}, Tok{K::kOperator, "("},
                          Tok{K::kIdentifier, "x"}, Tok{K::kOperator, ","},
                          Tok{K::kIdentifier, "y"}, Tok{K::kOperator, ")"},
                          Tok{K::kOperator, ";"}, Tok{K::kOperator, "["}, Tok{K::kNumber, "1"},
                          Tok{K::kOperator, "]"}, Tok{K::kOperator, ":"},
                          Tok{K::kOperator, ":"}, Tok{K::kIdentifier, "t"},
                          Tok{K::kOperator, "."}, Tok{K::kIdentifier, "z"}));
}

TEST(SqlLexerTest, BackslashOutsideQuotesIsAOneByteOperator) {
  EXPECT_THAT(Toks("+\\connect '\\'"),
              ElementsAre(Tok{K::kOperator, "+"}, Tok{K::kOperator, "\\"},
                          Tok{K::kIdentifier, "connect"}, Tok{K::kString, "'\\'"}));
}

// --- positions ----------------------------------------------------------------------------------

TEST(SqlLexerTest, TokensCarryOffsetLineAndColumn) {
  const std::string sql = "SELECT 1;\r\n\r\n  /* a\n b */ x\n'y\nz' w";
  std::vector<SqlToken> t = Lex(sql);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[0].offset, 0u);
  EXPECT_EQ(t[0].line, 1);
  EXPECT_EQ(t[0].column, 1);
  EXPECT_EQ(t[2].text, ";");
  EXPECT_EQ(t[2].column, 9);
  EXPECT_EQ(t[3].text, "x");
  EXPECT_EQ(t[3].offset, sql.find('x'));
  EXPECT_EQ(t[3].line, 4);  // CRLF counts once; the comment's newline counts
  EXPECT_EQ(t[3].column, 7);
  EXPECT_EQ(t[4].line, 5);
  EXPECT_EQ(t[5].text, "w");
  EXPECT_EQ(t[5].line, 6);
  EXPECT_EQ(t[5].column, 4);
}

// --- errors -------------------------------------------------------------------------------------

TEST(SqlLexerTest, UnterminatedConstructsEndTheTokens) {
  struct Case {
    std::string sql;
    SqlTokenKind what;
    std::string text;
  };
  const std::vector<Case> cases = {
      {"x 'abc;\n", K::kString, "'abc;\n"},
      {"x 'a''", K::kString, "'a''"},
      {"x 'a'\n'b", K::kString, "'a'\n'b"},  // a continued literal starts at its first segment
      {"x E'abc\\';", K::kEscapeString, "E'abc\\';"},
      {"x E'ends in a backslash\\", K::kEscapeString, "E'ends in a backslash\\"},
      {"x U&'a", K::kUnicodeString, "U&'a"},
      {"x \"a\"\"b;", K::kQuotedIdentifier, "\"a\"\"b;"},
      {"x U&\"a", K::kUnicodeIdentifier, "U&\"a"},
      {"x $body$ SELECT 1; $$;", K::kDollarString, "$body$ SELECT 1; $$;"},
      {"x $$", K::kDollarString, "$$"},
      {"x /* a /* nested */ still open", K::kComment, "/* a /* nested */ still open"},
      {"x /*/", K::kComment, "/*/"},
  };
  for (const Case& c : cases) {
    SqlLexer lexer(c.sql);
    SqlToken first = lexer.Next();
    SqlToken t = lexer.Next();
    EXPECT_EQ(first.kind, K::kIdentifier) << c.sql;
    EXPECT_EQ(t.kind, K::kUnterminated) << c.sql;
    EXPECT_EQ(t.unterminated, c.what) << c.sql;
    EXPECT_EQ(t.text, c.text) << c.sql;
    EXPECT_EQ(t.offset + t.text.size(), c.sql.size()) << c.sql;
    EXPECT_EQ(SqlTokenValue(t), std::nullopt) << c.sql;
    EXPECT_EQ(lexer.Next().kind, K::kEnd) << c.sql;
    EXPECT_EQ(lexer.Next().kind, K::kEnd) << c.sql;
  }
}

TEST(SqlLexerTest, BackslashBeforeAQuoteOfAStandardStringDoesNotEscapeIt) {
  EXPECT_THAT(Toks("'it\\'s'"), ElementsAre(Tok{K::kString, "'it\\'"}, Tok{K::kIdentifier, "s"},
                                            Tok{K::kUnterminated, "'"}));
}

TEST(SqlLexerTest, UnterminatedTokenNamesTheLineItOpensOn) {
  std::vector<SqlToken> t = Lex("SELECT 1;\n\n/* open\nSELECT 2;");
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t.back().kind, K::kUnterminated);
  EXPECT_EQ(t.back().line, 3);
}

}  // namespace
}  // namespace testpool::pg
