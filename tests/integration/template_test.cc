// Templates built on a real PostgreSQL (started by the test harness through the local backend).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "tests/support/test_server.h"

namespace testpool::core {
namespace {

using testing::Admin;

class TemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = ControlStore::Open(testing::Server().AdminConnInfo());
    builder_ = std::make_unique<TemplateBuilder>(*store_, util::RealClock());
    service_ = std::make_unique<TemplateService>(*store_, *builder_);
  }
  void TearDown() override {
    service_.reset();
    for (const std::string& name : created_) {
      try {
        TemplateService(*store_, *builder_).Drop(name, false);
      } catch (const Error&) {
      }
    }
  }

  // A fresh template name per test (the server is shared by all tests of the binary).
  std::string Name(const std::string& stem) {
    std::string n = stem + "_" + util::RandomToken(6);
    created_.push_back(n);
    return n;
  }

  TemplateSpec Demo(const std::string& name) {
    TemplateSpec s;
    s.name = name;
    s.migrations = LoadMigrationsDir(testing::SourceDir() / "migrations");
    s.seed = {LoadSqlFile(testing::SourceDir() / "templates" / "seed" / "app_seed.sql")};
    return s;
  }

  TemplateSpec Small(const std::string& name, const std::string& extra = "") {
    TemplateSpec s;
    s.name = name;
    s.migrations = {{"0001_items.sql", "CREATE TABLE items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, label text);\n"},
                    {"0002_seed.sql", "INSERT INTO items (label) VALUES ('a'), ('b');\n" + extra}};
    return s;
  }

  std::string Oid(const std::string& database) {
    pg::Connection c = pg::Connection::Open(Admin());
    pg::Result r = c.Exec("SELECT oid FROM pg_database WHERE datname = $1", {database});
    return r.rows() ? std::string(r.Get(0, 0)) : "";
  }

  // Clones `database` and runs `sql` in the clone, returning the first value.
  std::string QueryClone(const std::string& database, const std::string& sql) {
    pg::Connection admin = pg::Connection::Open(Admin());
    std::string clone = "tp_testclone_" + util::RandomToken(8);
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(clone) + " TEMPLATE " + admin.QuoteIdent(database));
    std::string value;
    {
      pg::Connection c = pg::Connection::Open(Admin(clone));
      value = c.Exec(sql).Get(0, 0);
    }
    admin.Exec("DROP DATABASE " + admin.QuoteIdent(clone));
    return value;
  }

  std::unique_ptr<ControlStore> store_;
  std::unique_ptr<TemplateBuilder> builder_;
  std::unique_ptr<TemplateService> service_;
  std::vector<std::string> created_;
};

TEST_F(TemplateTest, BuildsTheDemoTemplateAsAnUnconnectableTemplateDatabase) {
  PutOutcome out = service_->Put(Demo(Name("demo")), true);
  EXPECT_TRUE(out.built);
  EXPECT_EQ(out.state, "ready");
  pg::Connection c = pg::Connection::Open(Admin());
  pg::Result r = c.Exec("SELECT datistemplate, datallowconn FROM pg_database WHERE datname = $1", {out.database});
  ASSERT_EQ(r.rows(), 1);
  EXPECT_EQ(r.Get(0, 0), "t");
  EXPECT_EQ(r.Get(0, 1), "f");
  // What the migrations and the seed made is in it.
  EXPECT_EQ(QueryClone(out.database, "SELECT count(*) FROM products WHERE sku = 'LST-0001' AND stock = 1"), "1");
  // 0005 (no-transaction) built its indexes concurrently, and they are valid.
  EXPECT_EQ(QueryClone(out.database, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                                     "WHERE c.relname IN ('orders_customer_id_idx', 'order_items_product_id_idx') "
                                     "AND i.indisvalid"),
            "2");
}

// The local backend's server runs with synchronous_commit=off (test data); the control rows must
// not: a grant the daemon answered has to survive a postmaster crash.
TEST_F(TemplateTest, ControlConnectionsCommitDurably) {
  auto conn = store_->Connect();
  EXPECT_EQ(conn->Exec("SHOW synchronous_commit").Get(0, 0), "on");
  auto admin = pg::Connection::Open(testing::Server().AdminConnInfo());
  EXPECT_EQ(admin.Exec("SHOW synchronous_commit").Get(0, 0), "off") << "the test server is not set up as the local backend's";
}

TEST_F(TemplateTest, SameFilesDoNotRebuild) {
  std::string name = Name("same");
  PutOutcome first = service_->Put(Small(name), true);
  std::string oid = Oid(first.database);
  PutOutcome second = service_->Put(Small(name), true);
  EXPECT_TRUE(first.built);
  EXPECT_FALSE(second.built);
  EXPECT_EQ(first.hash, second.hash);
  EXPECT_EQ(Oid(second.database), oid);
  EXPECT_EQ(store_->FindBuild(name, first.hash)->builds, 1);
}

TEST_F(TemplateTest, OneChangedByteMakesANewHashAndKeepsTheOldTemplate) {
  std::string name = Name("byte");
  PutOutcome a = service_->Put(Small(name), true);
  PutOutcome b = service_->Put(Small(name, " "), true);
  EXPECT_NE(a.hash, b.hash);
  EXPECT_TRUE(b.built);
  EXPECT_NE(Oid(a.database), "");
  EXPECT_NE(Oid(b.database), "");
  EXPECT_EQ(store_->FindTemplate(name)->current_hash, b.hash);
}

TEST_F(TemplateTest, FailingMigrationLeavesNoHalfBuiltTemplateAndNamesFileAndLine) {
  std::string name = Name("fail");
  TemplateSpec s = Small(name);
  s.migrations.push_back({"0003_broken.sql", "CREATE TABLE ok_table (id int);\n\nINSERT INTO\n  missing_table VALUES (1);\n"});
  try {
    service_->Put(s, true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kMigrationFailed);
    EXPECT_EQ(e.details().at("file"), "0003_broken.sql");
    EXPECT_EQ(e.details().at("line"), "4");  // the server's position points at missing_table
    EXPECT_EQ(e.details().at("sqlstate"), "42P01");
    EXPECT_NE(e.details().at("server_message").find("missing_table"), std::string::npos);
  }
  std::string hash = TemplateHash([&] { ValidateSpec(&s); return s; }(), builder_->ServerMajor());
  EXPECT_EQ(Oid(TemplateDatabaseName(name, hash)), "") << "a half-built database was left behind";
  auto row = store_->FindBuild(name, hash);
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->state, "failed");
  EXPECT_NE(row->error_json.find("0003_broken.sql"), std::string::npos);
  EXPECT_FALSE(store_->FindTemplate(name).has_value()) << "a failed build became current";
}

TEST_F(TemplateTest, RuntimeErrorNamesTheStatementLine) {
  std::string name = Name("runtime");
  TemplateSpec s = Small(name);
  s.migrations.push_back({"0003_div.sql", "SELECT 1;\n-- a comment\nSELECT 1 / 0;\n"});
  try {
    service_->Put(s, true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.details().at("line"), "3");
    EXPECT_EQ(e.details().at("sqlstate"), "22012");
  }
}

TEST_F(TemplateTest, NoTransactionDirectiveAllowsConcurrentIndexBuilds) {
  std::string name = Name("notx");
  TemplateSpec s = Small(name);
  s.migrations.push_back({"0003_idx.sql", "-- testpool:no-transaction\nCREATE INDEX CONCURRENTLY items_label ON items (label);\n"});
  PutOutcome out = service_->Put(s, true);
  EXPECT_EQ(QueryClone(out.database, "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_label'"), "1");
}

TEST_F(TemplateTest, MigrationsRunInATransactionWithoutTheDirective) {
  TemplateSpec s = Small(Name("tx"));
  s.migrations.push_back({"0003_idx.sql", "CREATE INDEX CONCURRENTLY items_label ON items (label);\n"});
  try {
    service_->Put(s, true);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.details().at("sqlstate"), "25001");
  }
}

TEST_F(TemplateTest, EachFileStartsWithAFreshSession) {
  std::string name = Name("session");
  TemplateSpec s = Small(name);
  s.migrations.push_back({"0003_path.sql", "CREATE SCHEMA other;\nSET search_path = other;\n"});
  s.migrations.push_back({"0004_table.sql", "CREATE TABLE where_am_i (id int);\n"});
  PutOutcome out = service_->Put(s, true);
  EXPECT_EQ(QueryClone(out.database, "SELECT table_schema FROM information_schema.tables WHERE table_name = 'where_am_i'"),
            "public");
}

TEST_F(TemplateTest, EightThreadsOnOneHashBuildOnce) {
  std::string name = Name("race");
  TemplateSpec s = Small(name);
  ValidateSpec(&s);
  std::string hash = TemplateHash(s, builder_->ServerMajor());
  std::atomic<int> built{0}, failed{0};
  std::vector<std::thread> threads;
  // Straight at the builder (no in-process job sharing): only the advisory lock keeps them apart.
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      try {
        if (builder_->Ensure(s, hash, nullptr).built) ++built;
      } catch (const Error&) {
        ++failed;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(built.load(), 1);
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(store_->FindBuild(name, hash)->builds, 1);
}

TEST_F(TemplateTest, ConcurrentPutsShareOneJob) {
  std::string name = Name("jobs");
  std::atomic<int> built{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (service_->Put(Small(name), true).built) ++built;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GE(built.load(), 1);  // every joiner of the one job reports it as built
  TemplateSpec s = Small(name);
  ValidateSpec(&s);
  EXPECT_EQ(store_->FindBuild(name, TemplateHash(s, builder_->ServerMajor()))->builds, 1);
}

TEST_F(TemplateTest, ABuildInterruptedByACrashIsRebuilt) {
  std::string name = Name("crash");
  TemplateSpec s = Small(name);
  ValidateSpec(&s);
  std::string hash = TemplateHash(s, builder_->ServerMajor());
  std::string db = TemplateDatabaseName(name, hash);
  // What a daemon killed mid-build leaves: a "building" row and a half-made database.
  store_->MarkBuilding(s, hash, db);
  {
    pg::Connection admin = pg::Connection::Open(Admin());
    admin.Exec("CREATE DATABASE " + admin.QuoteIdent(db));
  }
  PutOutcome out = service_->Put(s, true);
  EXPECT_TRUE(out.built);
  EXPECT_EQ(QueryClone(db, "SELECT count(*) FROM items"), "2");
}

TEST_F(TemplateTest, ProgressReportsEachFile) {
  std::string name = Name("progress");
  PutOutcome out = service_->Put(Demo(name), false);
  EXPECT_EQ(out.state, "building");
  service_->Put(Demo(name), true);  // joins the running job or finds it ready
  auto p = service_->Progress(name);
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(p->state, "ready");
  EXPECT_EQ(p->step, p->of);
  EXPECT_EQ(p->steps.size(), static_cast<size_t>(p->of));
  EXPECT_EQ(p->steps.front().file, "0001_customers.sql");
}

TEST_F(TemplateTest, DropOldOnlyKeepsTheCurrentHash) {
  std::string name = Name("drop");
  PutOutcome a = service_->Put(Small(name), true);
  PutOutcome b = service_->Put(Small(name, " "), true);
  auto dropped = service_->Drop(name, true);
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0], a.database);
  EXPECT_EQ(Oid(a.database), "");
  EXPECT_NE(Oid(b.database), "");
  service_->Drop(name, false);
  EXPECT_EQ(Oid(b.database), "");
  EXPECT_TRUE(store_->ListBuilds(name).empty());
}

TEST_F(TemplateTest, DropUnknownIsNotFound) {
  try {
    service_->Drop("no_such_template", false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
  }
}

}  // namespace
}  // namespace testpool::core
