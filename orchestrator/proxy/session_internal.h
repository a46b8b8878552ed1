// Private to session*.cc: the names of the pinned transaction's parts and small helpers shared by
// the session's files. Nothing else includes it.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "orchestrator/proxy/codec.h"

namespace testpool::proxy::session_internal {

// The transaction's fixed parts (see session.h). Client statement names are renamed to
// "c<id>_<name>", so these never collide with them.
constexpr const char* kReleaseI = "testpool_release_i";
constexpr const char* kSavepointI = "testpool_savepoint_i";
constexpr const char* kSavepointC = "testpool_savepoint_c";
constexpr const char* kReleaseC = "testpool_release_c";
constexpr const char* kRollbackC = "testpool_rollback_c";
constexpr const char* kSavepointX = "testpool_savepoint_x";
constexpr const char* kReleaseX = "testpool_release_x";
constexpr const char* kRollbackX = "testpool_rollback_x";

inline const std::pair<const char*, const char*> kInternalStatements[] = {
    {kReleaseI, "RELEASE SAVEPOINT testpool_i"},
    {kSavepointI, "SAVEPOINT testpool_i"},
    {kSavepointC, "SAVEPOINT testpool_c"},
    {kReleaseC, "RELEASE SAVEPOINT testpool_c"},
    {kRollbackC, "ROLLBACK TO SAVEPOINT testpool_c"},
    {kSavepointX, "SAVEPOINT testpool_x"},
    {kReleaseX, "RELEASE SAVEPOINT testpool_x"},
    {kRollbackX, "ROLLBACK TO SAVEPOINT testpool_x"},
};

// Messages that touch prepared statements only, never a portal or a transaction: Parse,
// Describe and Close of a statement, Flush, Sync.
inline bool IsStatementOnly(const std::string& raw) {
  switch (raw[0]) {
    case 'P':
    case 'H':
    case 'S':
      return true;
    case 'D':
    case 'C':
      return raw.size() > 5 && raw[5] == 'S';
    default:
      return false;
  }
}

// BEGIN and the base savepoint (then kSequencesSql).
constexpr const char* kPinSql = "BEGIN; SAVEPOINT testpool_base; ";
// Every sequence's state, for the setval() that restores it (sequences are not transactional):
// at the pin for the base, at each checkpoint for that checkpoint. pg_sequence_last_value is NULL
// until the first nextval. Temporary sequences of other sessions are not ours to restore.
constexpr const char* kSequencesSql =
    "SELECT c.oid::pg_catalog.int8, s.seqstart, pg_catalog.pg_sequence_last_value(c.oid) "
    "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_sequence s ON s.seqrelid = c.oid "
    "WHERE c.relpersistence <> 't'";

inline bool IsInteger(const std::string& s) {
  if (s.empty() || s.size() > 20) return false;
  size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
  }
  return true;
}

inline std::vector<std::optional<std::string>> ParseDataRow(std::string_view body) {
  BodyReader r(body);
  int16_t n = r.Int16();
  std::vector<std::optional<std::string>> row;
  for (int i = 0; i < n; ++i) {
    int32_t len = r.Int32();
    if (len < 0) {
      row.emplace_back(std::nullopt);
    } else {
      row.emplace_back(std::string(r.Bytes(static_cast<size_t>(len))));
    }
  }
  return row;
}

inline bool IsExtended(char type) {
  return type == 'P' || type == 'B' || type == 'D' || type == 'E' || type == 'C' || type == 'H' || type == 'S';
}

}  // namespace testpool::proxy::session_internal
