// testpool's one error type.
//
// Inside core/, backend/ and pg/ failures are reported by throwing testpool::Error (or pg::PgError,
// which derives from it). Each error carries exactly one ErrorCode; api/errors.h maps that code to
// one HTTP status and one stable snake_case string, and the CLI prints `message` and exits non-zero.
// `details` holds structured, user-facing facts (the failing file, line, SQLSTATE, …) that the API
// returns beside the message. Programmer errors are asserts, not Errors.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace testpool {

enum class ErrorCode {
  kInvalidArgument,   // malformed input: bad JSON, wrong types, missing fields, bad values
  kInvalidName,       // a name that is not [a-z][a-z0-9_]{0,39}
  kUnauthorized,      // no valid bearer token, where the daemon requires one
  kForbidden,         // a valid token whose scope does not allow the route (a worker token on an admin route)
  kNotFound,          // unknown template, lease, …
  kConflict,          // the request contradicts current state
  kMigrationFailed,   // a template's migration or seed failed on the server
  kPoolExhausted,     // nothing free before the wait ran out
  kDraining,          // the daemon is stopping (SIGTERM) and takes no new leases; ask again after Retry-After
  kLeaseExpired,      // the lease ended before the call
  kUnavailable,       // the backend/server cannot be reached right now
  kTimeout,           // an operation ran out of time
  kBackend,           // the backend failed (initdb, postgres start, engine error)
  kInternal,          // a bug or an unexpected server answer
};

// The stable snake_case name of a code, as used in API errors ("invalid_name").
std::string_view ErrorCodeName(ErrorCode code);

class Error : public std::runtime_error {
 public:
  using Details = std::map<std::string, std::string>;

  Error(ErrorCode code, const std::string& message, Details details = {})
      : std::runtime_error(message), code_(code), details_(std::move(details)) {}

  ErrorCode code() const noexcept { return code_; }
  const Details& details() const noexcept { return details_; }

 private:
  ErrorCode code_;
  Details details_;
};

}  // namespace testpool
