#include "orchestrator/util/thread.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace testpool::util {

void LowerThreadPriority(int nice) {
  const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int current = ::getpriority(PRIO_PROCESS, tid);
  if (errno == 0 && current >= nice) return;
  ::setpriority(PRIO_PROCESS, tid, nice);
}

}  // namespace testpool::util
