// LeaseState's strings are stored in the control database and printed by the API: pin them.
#include "orchestrator/core/lease.h"

#include <gtest/gtest.h>

namespace testpool::core {
namespace {

TEST(LeaseStateTest, EachStateHasItsFixedString) {
  EXPECT_STREQ(ToString(LeaseState::kActive), "active");
  EXPECT_STREQ(ToString(LeaseState::kReleased), "released");
  EXPECT_STREQ(ToString(LeaseState::kExpired), "expired");
  EXPECT_STREQ(ToString(LeaseState::kLost), "lost");
}

TEST(LeaseStateTest, ParseReadsBackEveryString) {
  for (LeaseState s : {LeaseState::kActive, LeaseState::kReleased, LeaseState::kExpired, LeaseState::kLost}) {
    std::optional<LeaseState> parsed = ParseLeaseState(ToString(s));
    ASSERT_TRUE(parsed.has_value()) << ToString(s);
    EXPECT_EQ(*parsed, s) << ToString(s);
  }
}

TEST(LeaseStateTest, ParseRejectsUnknownText) {
  EXPECT_FALSE(ParseLeaseState("").has_value());
  EXPECT_FALSE(ParseLeaseState("Active").has_value());
  EXPECT_FALSE(ParseLeaseState("active ").has_value());
  EXPECT_FALSE(ParseLeaseState("ended").has_value());
}

}  // namespace
}  // namespace testpool::core
