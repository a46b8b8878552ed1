// The `external` backend: an existing PostgreSQL server given by DSN (a CI service container, a
// cloud instance). Nothing is started or stopped; databases are cloned inside it.
#pragma once

#include <string>

#include "orchestrator/backend/backend.h"

namespace testpool::backend {

class ExternalBackend final : public Backend {
 public:
  // `dsn`: keyword form or URI of a superuser (or a role with CREATEDB and CREATEROLE).
  // Throws Error(kInvalidArgument) if the DSN does not parse.
  explicit ExternalBackend(const std::string& dsn);

  std::string_view Kind() const override { return "external"; }
  // Connects once; throws Error(kUnavailable) if unreachable, Error(kBackend) if the role lacks
  // the rights testpool needs.
  void Start() override;
  void Stop() noexcept override {}
  pg::ConnInfo AdminConnInfo() const override;
  pg::ConnInfo ClientConnInfo() const override;

 private:
  const pg::ConnInfo admin_;  // as given, minus dbname
  const std::string dbname_;  // the DSN's database, used to reach the server the first time
};

}  // namespace testpool::backend
