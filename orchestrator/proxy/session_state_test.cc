// The proxy client's state table (session.h): every listed move passes, every other one aborts
// the process with both states logged. The table is written out again here on purpose: a change
// to the code's table must be made twice, once as a decision.
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <tuple>
#include <utility>

#include "orchestrator/proxy/session.h"

namespace testpool::proxy {
namespace {

using S = ClientState;

const std::set<std::pair<S, S>>& Allowed() {
  static const std::set<std::pair<S, S>> allowed = {
      {S::kReady, S::kSwitching},
      {S::kReady, S::kUnitOpen},
      {S::kReady, S::kInterleaved},
      {S::kSwitching, S::kReady},
      {S::kUnitOpen, S::kUnitOpenCopyIn},
      {S::kUnitOpen, S::kInFlight},
      {S::kUnitOpenCopyIn, S::kUnitOpen},
      {S::kUnitOpenCopyIn, S::kInFlightCopyIn},
      {S::kInFlight, S::kInFlightCopyIn},
      {S::kInFlight, S::kReady},
      {S::kInFlightCopyIn, S::kInFlight},
      {S::kInFlightCopyIn, S::kReady},
      {S::kInterleaved, S::kReady},
  };
  return allowed;
}

class ClientTransitionTest : public ::testing::TestWithParam<std::tuple<S, S>> {};

TEST_P(ClientTransitionTest, PassesWhenListedAndAbortsOtherwise) {
  const auto [from, to] = GetParam();
  if (Allowed().count({from, to}) > 0) {
    EXPECT_TRUE(ClientTransitionAllowed(from, to));
    CheckClientTransition(from, to, 7);  // returns
  } else {
    EXPECT_FALSE(ClientTransitionAllowed(from, to));
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    const std::string logged = std::string("proxy.client_state_impossible client=7 from=") + ToString(from) +
                               " to=" + ToString(to) + "\n";
    EXPECT_DEATH(CheckClientTransition(from, to, 7), logged);
  }
}

INSTANTIATE_TEST_SUITE_P(AllPairs, ClientTransitionTest,
                         ::testing::Combine(::testing::ValuesIn(kAllClientStates), ::testing::ValuesIn(kAllClientStates)),
                         [](const ::testing::TestParamInfo<std::tuple<S, S>>& pair) {
                           return std::string(ToString(std::get<0>(pair.param))) + "_to_" +
                                  ToString(std::get<1>(pair.param));
                         });

TEST(ClientStateTest, NoStateMayStayPut) {
  // A move to the same state is a bug hidden as a no-op (a second CopyInResponse, say).
  for (S s : kAllClientStates) EXPECT_FALSE(ClientTransitionAllowed(s, s)) << ToString(s);
}

TEST(ClientStateTest, EveryStateHasAName) {
  std::set<std::string> names;
  for (S s : kAllClientStates) names.insert(ToString(s));
  EXPECT_EQ(names.size(), std::size(kAllClientStates));
  EXPECT_EQ(names.count("?"), 0u);
}

}  // namespace
}  // namespace testpool::proxy
