// What a template is made of, and the identity derived from it.
//
// A TemplateSpec is a name, an ordered list of migrations (files named NNNN_name.sql) and an
// optional ordered list of seed files, plus how its pool should be run. Its hash — sha256 over
// the template format version, the server's major version, and each migration's and seed file's
// name and bytes, every field length-framed — is the template's identity: same hash, same
// template, on every machine. Pool settings are not part of the hash: resizing a pool does not
// change what is in its databases.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace testpool::core {

// Bumped whenever the way a template is built changes what ends up in it.
// 2: migrations run as the owner role kTemplateOwnerRole, so their objects belong to it.
// 3: the finished template's objects belong to kSlotOwnerRole (clones inherit that), and it may
//    CREATE in schema public.
inline constexpr int kTemplateFormatVersion = 3;

// The NOLOGIN superuser role migrations run as (SET ROLE): every object they create is owned by
// it while the template is built (a migration may need superuser rights: CREATE EXTENSION, …).
inline constexpr const char* kTemplateOwnerRole = "tp_migrator";

// The NOLOGIN, non-superuser role that owns every object of a finished template, hence of every
// database cloned from it. Each lease's login role is a member of it (INHERIT), so inside its own
// database a lease can do all the migrations' author could, with no per-clone REASSIGN; outside,
// it can do nothing: this role has CONNECT on no database, and a lease role has CONNECT on its
// own database alone, so owning objects in other databases gives it no way in.
inline constexpr const char* kSlotOwnerRole = "tp_owner";

struct SqlFile {
  std::string name;  // "0001_init.sql"
  std::string sql;
};

// How a slot comes back after a lease (DESIGN.md, "Recycle"). Clone mode also skips the clone
// when dirty tracking shows nothing was written.
enum class RecycleMode {
  kClone,     // re-clone from the template in the background
  kRollback,  // savepoint mode: the lease ran inside one pinned transaction; roll it back
};
// "clone" / "rollback".
const char* RecycleModeName(RecycleMode mode);

struct PoolConfig {
  int min_ready = 2;  // databases kept warm ahead of demand
  int max = 10;       // databases in all
  RecycleMode recycle = RecycleMode::kClone;  // from TemplateSpec::recycle (ValidateSpec)
};

struct TemplateSpec {
  std::string name;
  std::vector<SqlFile> migrations;  // applied in this order
  std::vector<SqlFile> seed;        // applied after the migrations, in this order
  PoolConfig pool;
  std::string recycle = "clone";  // "clone" or "rollback"; ValidateSpec sets pool.recycle from it
};

// Limits that keep one request from exhausting the daemon.
inline constexpr size_t kMaxMigrations = 10000;
inline constexpr size_t kMaxTotalSqlBytes = 64u << 20;

// Checks the spec and sorts its migrations by their numeric prefix. Throws Error:
// kInvalidName for a bad template name; kInvalidArgument for no migrations, a migration whose
// name is not NNNN_name.sql (digits, '_', then [A-Za-z0-9_.-]+, ".sql"), two migrations with the
// same number, an empty seed name, pool sizes out of range (0 ≤ min_ready ≤ max, 1 ≤ max ≤ 1000),
// an unknown recycle mode, or more SQL than the limits above. Sets spec->pool.recycle.
void ValidateSpec(TemplateSpec* spec);

// Reads every *.sql file of `dir` (not recursive) as a migration, ordered by number. Other files
// are ignored. Throws Error(kInvalidArgument) when the directory cannot be read, holds no .sql
// file, or a .sql file is misnamed.
std::vector<SqlFile> LoadMigrationsDir(const std::filesystem::path& dir);

// Reads one file as a SqlFile named by its file name. Throws Error(kInvalidArgument).
SqlFile LoadSqlFile(const std::filesystem::path& path);

// The 64-hex-digit template hash (see above). `server` names the server build templates run on:
// its major version ("15") for a shared server, or what a backend with servers of its own says
// (SlotServers::ServerIdentity: the docker image). The int form is TemplateHash(spec, "15").
std::string TemplateHash(const TemplateSpec& spec, std::string_view server);
std::string TemplateHash(const TemplateSpec& spec, int server_major);

// "tp_tpl_<name>_<first 12 hex digits of hash>"; at most 60 bytes for a valid name.
std::string TemplateDatabaseName(std::string_view name, std::string_view hash);

// The prefix every database testpool creates starts with ("tp_").
inline constexpr std::string_view kDatabasePrefix = "tp_";

}  // namespace testpool::core
