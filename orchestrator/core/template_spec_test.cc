#include "orchestrator/core/template_spec.h"

#include <gtest/gtest.h>

#include <fstream>

#include "orchestrator/util/error.h"

namespace testpool::core {
namespace {

TemplateSpec Spec() {
  TemplateSpec s;
  s.name = "app";
  s.migrations = {{"0001_init.sql", "CREATE TABLE t (id int);"}, {"0002_more.sql", "ALTER TABLE t ADD x int;"}};
  return s;
}

ErrorCode CodeOf(TemplateSpec s) {
  try {
    ValidateSpec(&s);
  } catch (const Error& e) {
    return e.code();
  }
  return ErrorCode::kInternal;  // "no error" marker for the tests below
}

TEST(TemplateHash, IsStableForTheSameInput) { EXPECT_EQ(TemplateHash(Spec(), 15), TemplateHash(Spec(), 15)); }

TEST(TemplateHash, IsSixtyFourHexDigits) {
  std::string h = TemplateHash(Spec(), 15);
  ASSERT_EQ(h.size(), 64u);
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(TemplateHash, ChangesWhenOneByteOfAMigrationChanges) {
  TemplateSpec s = Spec();
  s.migrations[1].sql.back() = ' ';
  EXPECT_NE(TemplateHash(s, 15), TemplateHash(Spec(), 15));
}

TEST(TemplateHash, ChangesWhenAMigrationIsRenamed) {
  TemplateSpec s = Spec();
  s.migrations[0].name = "0001_start.sql";
  EXPECT_NE(TemplateHash(s, 15), TemplateHash(Spec(), 15));
}

TEST(TemplateHash, ChangesWithTheServerMajorVersion) { EXPECT_NE(TemplateHash(Spec(), 15), TemplateHash(Spec(), 16)); }

TEST(TemplateHash, ChangesWithTheSeed) {
  TemplateSpec s = Spec();
  s.seed = {{"seed.sql", "INSERT INTO t VALUES (1);"}};
  EXPECT_NE(TemplateHash(s, 15), TemplateHash(Spec(), 15));
}

TEST(TemplateHash, DistinguishesMovingBytesBetweenFiles) {
  // Without framing, "ab"+"c" and "a"+"bc" would hash alike.
  TemplateSpec a = Spec(), b = Spec();
  a.migrations = {{"0001_a.sql", "ab"}, {"0002_b.sql", "c"}};
  b.migrations = {{"0001_a.sql", "a"}, {"0002_b.sql", "bc"}};
  EXPECT_NE(TemplateHash(a, 15), TemplateHash(b, 15));
}

TEST(TemplateHash, DistinguishesASeedFileFromAMigration) {
  TemplateSpec a = Spec(), b = Spec();
  a.migrations.push_back({"0003_x.sql", "SELECT 1;"});
  b.seed.push_back({"0003_x.sql", "SELECT 1;"});
  EXPECT_NE(TemplateHash(a, 15), TemplateHash(b, 15));
}

TEST(TemplateHash, IgnoresPoolSettings) {
  TemplateSpec s = Spec();
  s.pool = {7, 70};
  EXPECT_EQ(TemplateHash(s, 15), TemplateHash(Spec(), 15));
}

TEST(TemplateDatabaseName, UsesNameAndTwelveHashDigits) {
  EXPECT_EQ(TemplateDatabaseName("app", "0123456789abcdef0123"), "tp_tpl_app_0123456789ab");
}

TEST(TemplateDatabaseName, FitsPostgresIdentifierLimitForTheLongestName) {
  EXPECT_LE(TemplateDatabaseName(std::string(40, 'a'), std::string(64, 'f')).size(), 63u);
}

TEST(ValidateSpec, OrdersMigrationsByNumberNotByText) {
  TemplateSpec s = Spec();
  s.migrations = {{"10_c.sql", ""}, {"0002_b.sql", ""}, {"1_a.sql", ""}};
  ValidateSpec(&s);
  EXPECT_EQ(s.migrations[0].name, "1_a.sql");
  EXPECT_EQ(s.migrations[1].name, "0002_b.sql");
  EXPECT_EQ(s.migrations[2].name, "10_c.sql");
}

TEST(ValidateSpec, RejectsTwoMigrationsWithOneNumber) {
  TemplateSpec s = Spec();
  s.migrations = {{"0001_a.sql", ""}, {"001_b.sql", ""}};
  EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument);
}

TEST(ValidateSpec, RejectsMisnamedMigrations) {
  for (const char* bad : {"init.sql", "0001init.sql", "0001_.sql", "0001_a.txt", "0001_a b.sql", "../0001_a.sql",
                          "0001_a/b.sql", "_0001_a.sql"}) {
    TemplateSpec s = Spec();
    s.migrations = {{bad, "SELECT 1;"}};
    EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument) << bad;
  }
}

TEST(ValidateSpec, RejectsNoMigrations) {
  TemplateSpec s = Spec();
  s.migrations.clear();
  EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument);
}

TEST(ValidateSpec, RejectsBadNames) {
  for (const char* bad : {"", "App", "1app", "a-b", "a b", "a;drop", "\"x\"", "ä"}) {
    TemplateSpec s = Spec();
    s.name = bad;
    EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidName) << bad;
  }
  TemplateSpec s = Spec();
  s.name = std::string(41, 'a');
  EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidName);
}

TEST(ValidateSpec, RejectsPoolSizesOutOfRange) {
  for (PoolConfig p : {PoolConfig{-1, 10}, PoolConfig{11, 10}, PoolConfig{0, 0}, PoolConfig{1, 1001}}) {
    TemplateSpec s = Spec();
    s.pool = p;
    EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument) << p.min_ready << "/" << p.max;
  }
}

TEST(ValidateSpec, RejectsUnknownRecycleMode) {
  TemplateSpec s = Spec();
  s.recycle = "magic";
  EXPECT_EQ(CodeOf(s), ErrorCode::kInvalidArgument);
}

TEST(ValidateSpec, AcceptsAGoodSpec) { EXPECT_EQ(CodeOf(Spec()), ErrorCode::kInternal); }

TEST(LoadMigrationsDir, ReadsSqlFilesInNumericOrderAndIgnoresOthers) {
  auto dir = std::filesystem::temp_directory_path() / ("tp-mig-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "10_last.sql") << "SELECT 10;";
  std::ofstream(dir / "2_second.sql") << "SELECT 2;";
  std::ofstream(dir / "README.md") << "not a migration";
  auto files = LoadMigrationsDir(dir);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files[0].name, "2_second.sql");
  EXPECT_EQ(files[0].sql, "SELECT 2;");
  EXPECT_EQ(files[1].name, "10_last.sql");
}

TEST(LoadMigrationsDir, RejectsAMissingDirectory) {
  EXPECT_THROW(LoadMigrationsDir("/nonexistent/testpool/migrations"), Error);
}

}  // namespace
}  // namespace testpool::core
