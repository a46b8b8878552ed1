#include "orchestrator/util/time_format.h"

#include <gtest/gtest.h>

namespace testpool::util {
namespace {

using std::chrono::milliseconds;
using std::chrono::microseconds;

TEST(TimeFormatTest, IsoUtcMsWritesUtcWithMilliseconds) {
  EXPECT_EQ(IsoUtcMs(FromEpochMs(1795555800123)), "2026-11-24T21:30:00.123Z");
  EXPECT_EQ(IsoUtcMs(WallTime{}), "1970-01-01T00:00:00.000Z");
}

TEST(TimeFormatTest, IsoUtcMsRoundsDownBeforeTheEpochToo) {
  EXPECT_EQ(IsoUtcMs(WallTime(microseconds(1999))), "1970-01-01T00:00:00.001Z");
  EXPECT_EQ(IsoUtcMs(WallTime(milliseconds(-1))), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(IsoUtcMs(WallTime(microseconds(-1))), "1969-12-31T23:59:59.999Z");
}

TEST(TimeFormatTest, EpochMsRoundsDownAndFromEpochMsInvertsIt) {
  EXPECT_EQ(EpochMs(WallTime(microseconds(1999))), 1);
  EXPECT_EQ(EpochMs(WallTime(microseconds(-1))), -1);
  EXPECT_EQ(EpochMs(FromEpochMs(1795555800123)), 1795555800123);
}

}  // namespace
}  // namespace testpool::util
