// Errors from the PostgreSQL server or from libpq, carrying what the server said.
#pragma once

#include <string>

#include "orchestrator/util/error.h"

namespace testpool::pg {

// What the server reported with an error (PQresultErrorField). Empty strings where absent;
// `position` is the 1-based character offset into the statement, 0 when none was given.
struct ServerDiagnostics {
  std::string sqlstate;
  std::string severity;
  std::string message;
  std::string detail;
  std::string hint;
  std::string context;
  int position = 0;
};

// A failed connect or statement. Its ErrorCode is derived from the SQLSTATE class once, here:
// 08 (connection) and 57P01-03 (shutdown) → kUnavailable; 57014 (cancelled) → kTimeout;
// 53 (insufficient resources) → kUnavailable; everything else → kInternal. Callers that know
// better (a migration failing) catch it and throw their own Error.
class PgError : public Error {
 public:
  PgError(const std::string& what, ServerDiagnostics diag, bool connection_lost);

  const ServerDiagnostics& diagnostics() const noexcept { return diag_; }
  const std::string& sqlstate() const noexcept { return diag_.sqlstate; }
  // True when the connection can no longer be used (it broke, or never opened).
  bool connection_lost() const noexcept { return connection_lost_; }

 private:
  ServerDiagnostics diag_;
  bool connection_lost_;
};

ErrorCode CodeForSqlState(const std::string& sqlstate);

// Well-known SQLSTATEs we test for by name.
namespace sqlstate {
inline constexpr const char* kUniqueViolation = "23505";
inline constexpr const char* kDuplicateDatabase = "42P04";
inline constexpr const char* kDuplicateObject = "42710";
inline constexpr const char* kDuplicateSchema = "42P06";
inline constexpr const char* kDuplicateTable = "42P07";
inline constexpr const char* kUndefinedObject = "42704";   // e.g. role does not exist
inline constexpr const char* kInvalidCatalogName = "3D000";  // database does not exist
inline constexpr const char* kObjectInUse = "55006";
inline constexpr const char* kQueryCanceled = "57014";
inline constexpr const char* kActiveSqlTransaction = "25001";  // cannot run inside a transaction block
}  // namespace sqlstate

}  // namespace testpool::pg
