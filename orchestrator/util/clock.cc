#include "orchestrator/util/clock.h"

namespace testpool::util {

const Clock& RealClock() {
  static const SystemClock clock;
  return clock;
}

}  // namespace testpool::util
