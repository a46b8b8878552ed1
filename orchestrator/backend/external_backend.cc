#include "orchestrator/backend/external_backend.h"

#include "orchestrator/pg/connection.h"
#include "orchestrator/util/log.h"

namespace testpool::backend {
namespace {
pg::ConnInfo WithoutDb(pg::ConnInfo info) {
  info.Erase("dbname");
  return info;
}
}  // namespace

ExternalBackend::ExternalBackend(const std::string& dsn)
    : admin_(WithoutDb(pg::ConnInfo::Parse(dsn))), dbname_(pg::ConnInfo::Parse(dsn).Get("dbname", "postgres")) {}

void ExternalBackend::Start() {
  pg::ConnInfo info = admin_;
  info.Set("dbname", dbname_);
  pg::Connection conn = pg::Connection::Open(info);
  pg::Result r = conn.Exec(
      "SELECT rolsuper OR (rolcreatedb AND rolcreaterole) FROM pg_roles WHERE rolname = current_user");
  if (r.rows() != 1 || r.Get(0, 0) != "t") {
    throw Error(ErrorCode::kBackend,
                "the external server's role needs SUPERUSER (or CREATEDB and CREATEROLE): " + admin_.Redacted());
  }
  log::Info("backend.external.ready", {{"server", admin_.Redacted()},
                                       {"version", std::to_string(conn.ServerVersion())}});
}

pg::ConnInfo ExternalBackend::AdminConnInfo() const { return admin_; }

pg::ConnInfo ExternalBackend::ClientConnInfo() const {
  pg::ConnInfo out;
  out.Set("host", admin_.Get("host", "127.0.0.1"));
  out.Set("port", admin_.Get("port", "5432"));
  return out;
}

}  // namespace testpool::backend
