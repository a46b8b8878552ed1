#include "orchestrator/util/log.h"

#include <gtest/gtest.h>

namespace testpool::log {
namespace {

TEST(RedactTest, MasksConninfoPasswordsQuotedOrNot) {
  EXPECT_EQ(Redact("host=db port=5432 password=s3cret dbname=x"), "host=db port=5432 password=*** dbname=x");
  EXPECT_EQ(Redact("dbname='a' password='it''s \\' odd' user='u'"), "dbname='a' password='***' user='u'");
  EXPECT_EQ(Redact("PASSWORD = 'x y'"), "PASSWORD = '***'");
  EXPECT_EQ(Redact("env PGPASSWORD=abc TESTPOOL_SUPERUSER_PASSWORD=def"), "env PGPASSWORD=*** TESTPOOL_SUPERUSER_PASSWORD=***");
}

TEST(RedactTest, MasksTheUserinfoPasswordOfUris) {
  EXPECT_EQ(Redact("cannot connect to postgresql://tp_r_1:abc%40def@127.0.0.1:5432/tp_s_1 (refused)"),
            "cannot connect to postgresql://tp_r_1:***@127.0.0.1:5432/tp_s_1 (refused)");
  EXPECT_EQ(Redact("a postgres://u:p@h/d and http://x:y@z/"), "a postgres://u:***@h/d and http://x:***@z/");
  EXPECT_EQ(Redact("postgresql://h:5432/db?password=zz&sslmode=disable"), "postgresql://h:5432/db?password=***&sslmode=disable");
  EXPECT_EQ(Redact("postgresql://user@host/db"), "postgresql://user@host/db");
}

TEST(RedactTest, MasksSqlPasswordLiterals) {
  EXPECT_EQ(Redact("role already exists in: CREATE ROLE \"tp_r_x_1\" LOGIN PASSWORD 'SCRAM-SHA-256$16:salt$a:b' IN ROLE x"),
            "role already exists in: CREATE ROLE \"tp_r_x_1\" LOGIN PASSWORD '***' IN ROLE x");
  EXPECT_EQ(Redact("ALTER ROLE postgres password E'x\\'y' VALID UNTIL 'infinity'"),
            "ALTER ROLE postgres password E'***' VALID UNTIL 'infinity'");
  EXPECT_EQ(Redact("ALTER ROLE r PASSWORD NULL"), "ALTER ROLE r PASSWORD NULL");
}

TEST(RedactTest, MasksJsonPasswordMembers) {
  EXPECT_EQ(Redact(R"({"user":"u","password":"p\"q","port":5})"), R"({"user":"u","password":"***","port":5})");
  EXPECT_EQ(Redact(R"({"password" : "p"})"), R"({"password" : "***"})");
}

TEST(RedactTest, LeavesEverythingElseAlone) {
  for (const char* text : {"lease.granted lease=abc slot=x token=4", "the password is wrong", "passwords", "",
                           "password", "password=", "no such file: /x/superuser.password"}) {
    EXPECT_EQ(Redact(text), text);
  }
}

}  // namespace
}  // namespace testpool::log
