#include "orchestrator/pg/conninfo.h"

#include <gtest/gtest.h>

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/error.h"

namespace testpool::pg {
namespace {

TEST(ConnInfo, ParsesKeywordForm) {
  ConnInfo c = ConnInfo::Parse("host=/tmp port=5433 user=u dbname=d");
  EXPECT_EQ(c.Get("host"), "/tmp");
  EXPECT_EQ(c.Get("port"), "5433");
  EXPECT_EQ(c.Get("dbname"), "d");
}

TEST(ConnInfo, ParsesUriForm) {
  ConnInfo c = ConnInfo::Parse("postgresql://u:p%40ss@127.0.0.1:5432/db?sslmode=disable");
  EXPECT_EQ(c.Get("user"), "u");
  EXPECT_EQ(c.Get("password"), "p@ss");
  EXPECT_EQ(c.Get("dbname"), "db");
  EXPECT_EQ(c.Get("sslmode"), "disable");
}

TEST(ConnInfo, RejectsMalformedText) {
  try {
    ConnInfo::Parse("host=");  // fine for libpq; but an unterminated quote is not
    ConnInfo::Parse("host='unterminated");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

TEST(ConnInfo, KeywordFormRoundTripsAwkwardPasswords) {
  ConnInfo c;
  c.Set("host", "127.0.0.1").Set("user", "u").Set("password", "a b'c\\d=e");
  ConnInfo back = ConnInfo::Parse(c.ToKeywordString());
  EXPECT_EQ(back.Get("password"), "a b'c\\d=e");
}

TEST(ConnInfo, UriRoundTripsAwkwardPasswords) {
  ConnInfo c;
  c.Set("host", "127.0.0.1").Set("port", "5432").Set("user", "u").Set("password", "p@:/?#%&=").Set("dbname", "d b");
  std::string uri = c.ToUri();
  EXPECT_EQ(uri.rfind("postgresql://u:", 0), 0u) << uri;
  ConnInfo back = ConnInfo::Parse(uri);
  EXPECT_EQ(back.Get("password"), "p@:/?#%&=");
  EXPECT_EQ(back.Get("dbname"), "d b");
  EXPECT_EQ(back.Get("host"), "127.0.0.1");
}

TEST(ConnInfo, UriPutsASocketDirectoryInTheQuery) {
  ConnInfo c;
  c.Set("host", "/var/run/x").Set("port", "6000").Set("dbname", "d");
  ConnInfo back = ConnInfo::Parse(c.ToUri());
  EXPECT_EQ(back.Get("host"), "/var/run/x");
  EXPECT_EQ(back.Get("port"), "6000");
}

TEST(ConnInfo, UriBracketsAnIpv6Host) {
  ConnInfo c;
  c.Set("host", "::1").Set("port", "5433").Set("user", "u").Set("dbname", "d");
  EXPECT_EQ(c.ToUri(), "postgresql://u@[::1]:5433/d");
  ConnInfo back = ConnInfo::Parse(c.ToUri());
  EXPECT_EQ(back.Get("host"), "::1");
  EXPECT_EQ(back.Get("port"), "5433");
}

// Parse(ToUri()) gives back every parameter, values included (found by fuzz/conninfo_fuzz: libpq
// cuts the URI's authority at ',' ':' '/' '@' before it decodes %XX, and cannot tell an empty
// part from an absent one).
void ExpectUriRoundTrip(const ConnInfo& c) {
  EXPECT_EQ(ConnInfo::Parse(c.ToUri()).params(), c.params()) << c.ToUri();
}

TEST(ConnInfo, UriRoundTripsHostsThatAreNoPlainName) {
  ExpectUriRoundTrip(ConnInfo().Set("host", "localhos%").Set("port", "5432").Set("dbname", "app"));
  ExpectUriRoundTrip(ConnInfo().Set("host", "db1,db2").Set("port", "5432,5433").Set("user", "u"));
  ExpectUriRoundTrip(ConnInfo().Set("host", "fe80::1%eth0").Set("port", "5432"));
  ExpectUriRoundTrip(ConnInfo().Set("host", "[::1]").Set("port", "5432"));
  ExpectUriRoundTrip(ConnInfo().Set("host", "a@b/c?d").Set("port", "x"));
}

TEST(ConnInfo, UriKeepsAPasswordWithoutAUser) {
  ExpectUriRoundTrip(ConnInfo().Set("host", "h").Set("password", "secret"));
}

TEST(ConnInfo, UriKeepsEmptyValues) {
  ExpectUriRoundTrip(ConnInfo().Set("host", "").Set("user", "").Set("dbname", "").Set("port", ""));
}

TEST(ConnInfo, RedactedHidesThePassword) {
  ConnInfo c;
  c.Set("user", "u").Set("password", "secret");
  EXPECT_EQ(c.Redacted().find("secret"), std::string::npos);
}

TEST(QuoteIdentUtf8, DoublesEmbeddedQuotes) {
  EXPECT_EQ(QuoteIdentUtf8("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(QuoteIdentUtf8("Robert'); DROP TABLE x;--"), "\"Robert'); DROP TABLE x;--\"");
}

}  // namespace
}  // namespace testpool::pg
