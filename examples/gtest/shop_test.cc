// Each test starts from the template "app" (testpool's demo shop): what one test writes, the next
// does not see. Run with TESTPOOL_URL pointing at `testpool serve` (and TESTPOOL_TOKEN if needed).
#include <libpq-fe.h>

#include <string>

#include "testpool/gtest.h"

static auto* const testpool_env = testpool::client::AddEnvironment({.template_name = "app"});

class ShopTest : public testpool::client::DatabaseTest {
 protected:
  std::string Count(const char* table) {
    PGresult* r = PQexec(conn(), ("SELECT count(*) FROM " + std::string(table)).c_str());
    std::string n = PQresultStatus(r) == PGRES_TUPLES_OK ? PQgetvalue(r, 0, 0) : PQresultErrorMessage(r);
    PQclear(r);
    return n;
  }
};

TEST_F(ShopTest, DeletingCustomersStaysInThisTest) {
  PQclear(PQexec(conn(), "TRUNCATE customers CASCADE"));
  EXPECT_EQ(Count("customers"), "0");
}

TEST_F(ShopTest, TheNextTestSeesTheTemplateAgain) { EXPECT_NE(Count("customers"), "0"); }
