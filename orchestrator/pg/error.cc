#include "orchestrator/pg/error.h"

namespace testpool::pg {

ErrorCode CodeForSqlState(const std::string& state) {
  if (state.size() != 5) return ErrorCode::kUnavailable;  // no SQLSTATE: libpq-side failure
  if (state.compare(0, 2, "08") == 0) return ErrorCode::kUnavailable;
  if (state == "57P01" || state == "57P02" || state == "57P03") return ErrorCode::kUnavailable;
  if (state == sqlstate::kQueryCanceled) return ErrorCode::kTimeout;
  if (state.compare(0, 2, "53") == 0) return ErrorCode::kUnavailable;
  return ErrorCode::kInternal;
}

PgError::PgError(const std::string& what, ServerDiagnostics diag, bool connection_lost)
    : Error(connection_lost ? ErrorCode::kUnavailable : CodeForSqlState(diag.sqlstate), what,
            diag.sqlstate.empty() ? Details{} : Details{{"sqlstate", diag.sqlstate}}),
      diag_(std::move(diag)),
      connection_lost_(connection_lost) {}

}  // namespace testpool::pg
