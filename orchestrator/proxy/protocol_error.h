// The one error type of the wire proxy's codec and session code.
//
// A ProtocolError means a peer broke the PostgreSQL frontend/backend protocol (a length out of
// range, a message cut short, a message type not allowed in the current state). The proxy answers
// it by closing that one connection with a FATAL error naming the reason (SQLSTATE 08P01,
// protocol_violation); it never affects the lease's other connections.
#pragma once

#include <stdexcept>
#include <string>

namespace testpool::proxy {

class ProtocolError : public std::runtime_error {
 public:
  explicit ProtocolError(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace testpool::proxy
