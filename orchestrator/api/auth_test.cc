#include "orchestrator/api/auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"

namespace testpool::api {
namespace {

const std::string kWorker = std::string(32, 'w');
const std::string kAdmin = "admin-" + std::string(40, 'a');

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("testpool-auth-" + util::RandomToken(8));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::filesystem::path Write(const std::string& text, mode_t mode = 0600) {
    auto p = dir_ / ("tokens-" + util::RandomToken(4));
    std::ofstream(p) << text;
    ::chmod(p.c_str(), mode);
    return p;
  }
  // The message of the Error ReadTokenFile throws, "" when it throws none.
  std::string ErrorOf(const std::filesystem::path& p) {
    try {
      ReadTokenFile(p);
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
      return e.what();
    }
    return "";
  }

  std::filesystem::path dir_;
};

TEST_F(TokenFileTest, ReadsOneTokenPerLineSkippingBlanksAndComments) {
  auto p = Write("# CI workers\n\n  " + kWorker + "  \r\n# rotated in on Monday\n" + kAdmin + "\n");
  EXPECT_EQ(ReadTokenFile(p), (std::vector<std::string>{kWorker, kAdmin}));
}

TEST_F(TokenFileTest, RefusesAFileGroupOrOthersMayRead) {
  for (mode_t mode : {0640, 0604, 0660, 0602}) {
    auto p = Write(kWorker + "\n", mode);
    std::string message = ErrorOf(p);
    EXPECT_NE(message.find("chmod 600"), std::string::npos) << std::oct << mode << ": " << message;
    EXPECT_EQ(message.find(kWorker), std::string::npos) << "a message must not show a token";
  }
}

TEST_F(TokenFileTest, RefusesShortOrMalformedTokensNamingTheLineNotTheToken) {
  const std::string short_token = std::string(31, 's');
  std::string message = ErrorOf(Write("# ok\n" + kWorker + "\n" + short_token + "\n"));
  EXPECT_NE(message.find("line 3"), std::string::npos) << message;
  EXPECT_NE(message.find("32"), std::string::npos) << message;
  EXPECT_EQ(message.find(short_token), std::string::npos) << message;
  message = ErrorOf(Write(std::string(20, 'x') + " " + std::string(20, 'y') + "\n"));
  EXPECT_NE(message.find("without spaces"), std::string::npos) << message;
  EXPECT_NE(ErrorOf(Write(std::string(kMaxTokenChars + 1, 'l') + "\n")), "");
}

TEST_F(TokenFileTest, RefusesAnEmptyFileAMissingOneAndADirectory) {
  EXPECT_NE(ErrorOf(Write("# nothing yet\n\n")).find("holds no token"), std::string::npos);
  EXPECT_NE(ErrorOf(dir_ / "absent"), "");
  ::chmod(dir_.c_str(), 0700);
  EXPECT_NE(ErrorOf(dir_).find("not a regular file"), std::string::npos);
}

TEST(AccessControlTest, WithoutTokensEverythingIsGranted) {
  AccessControl open;
  EXPECT_FALSE(open.enabled());
  EXPECT_EQ(open.Grant(""), Scope::kAdmin);
}

TEST(AccessControlTest, GrantsTheScopeOfTheTokensFile) {
  AccessControl access({kWorker}, {kAdmin});
  EXPECT_TRUE(access.enabled());
  EXPECT_EQ(access.Grant("Bearer " + kWorker), Scope::kWorker);
  EXPECT_EQ(access.Grant("Bearer " + kAdmin), Scope::kAdmin);
  EXPECT_EQ(access.Grant("bearer  " + kAdmin), Scope::kAdmin) << "the scheme is case-insensitive";
}

TEST(AccessControlTest, RefusesMissingMalformedAndUnknownTokens) {
  AccessControl access({kWorker}, {kAdmin});
  for (const std::string& header : {std::string(), std::string("Bearer"), std::string("Bearer "), kWorker,
                                    "Basic " + kWorker, "Bearer " + kWorker + "x", "Bearer " + kWorker.substr(1),
                                    "Bearer " + std::string(32, 'W'), "Token " + kAdmin}) {
    EXPECT_EQ(access.Grant(header), std::nullopt) << header;
  }
}

TEST(AccessControlTest, AnAdminFileOnlyStillRequiresTokens) {
  AccessControl access({}, {kAdmin});
  EXPECT_TRUE(access.enabled());
  EXPECT_EQ(access.Grant(""), std::nullopt);
  EXPECT_EQ(access.Grant("Bearer " + kAdmin), Scope::kAdmin);
}

TEST(AccessControlTest, ReplaceRotatesTheTokensAtOnce) {
  AccessControl access({kWorker}, {});
  const std::string next = std::string(48, 'n');
  access.Replace({kWorker, next}, {});
  EXPECT_EQ(access.Grant("Bearer " + next), Scope::kWorker);
  EXPECT_EQ(access.Grant("Bearer " + kWorker), Scope::kWorker);
  access.Replace({next}, {});
  EXPECT_EQ(access.Grant("Bearer " + kWorker), std::nullopt) << "a removed token stops working";
  access.Replace({}, {});
  EXPECT_TRUE(access.enabled()) << "once on, tokens stay required";
  EXPECT_EQ(access.Grant("Bearer " + next), std::nullopt);
}

}  // namespace
}  // namespace testpool::api
