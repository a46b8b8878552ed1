#include "orchestrator/core/lease.h"

namespace testpool::core {

const char* ToString(LeaseState state) {
  switch (state) {
    case LeaseState::kActive: return "active";
    case LeaseState::kReleased: return "released";
    case LeaseState::kExpired: return "expired";
    case LeaseState::kLost: return "lost";
  }
  return "expired";  // not reached: every state is listed above
}

std::optional<LeaseState> ParseLeaseState(std::string_view text) {
  for (LeaseState s : {LeaseState::kActive, LeaseState::kReleased, LeaseState::kExpired, LeaseState::kLost}) {
    if (text == ToString(s)) return s;
  }
  return std::nullopt;
}

}  // namespace testpool::core
