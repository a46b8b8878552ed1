#include "orchestrator/builders/builders.h"

#include <chrono>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/lease.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/builders/rng.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/json_field.h"
#include "orchestrator/util/log.h"
#include "orchestrator/util/names.h"

namespace testpool::builders {

using core::ControlStore;
using core::LeaseInfo;
using core::LeaseState;
using core::LeaseLookup;
namespace {

using nlohmann::json;

constexpr int64_t kMaxCount = 1000000;

Error Invalid(const std::string& m) { return Error(ErrorCode::kInvalidArgument, m); }

// What a build creates in its target: the record of every row it made, for the clean-up.
constexpr const char* kCreatedSchema = R"sql(
CREATE SCHEMA IF NOT EXISTS testpool;
CREATE TABLE IF NOT EXISTS testpool.created (
  seq         bigserial PRIMARY KEY,
  ns          text NOT NULL,
  lease_id    text,
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  key_column  text NOT NULL,
  key         text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS created_ns ON testpool.created (ns, schema_name, table_name);
CREATE INDEX IF NOT EXISTS created_lease ON testpool.created (lease_id) WHERE lease_id IS NOT NULL;
)sql";

std::string StringField(const json& j, const char* key, const std::string& where, bool required,
                        const std::string& fallback = "") {
  auto it = j.find(key);
  if (it == j.end()) {
    if (required) throw Invalid(where + ": '" + key + "' is required");
    return fallback;
  }
  return util::NonEmptyStringValue(*it, {where + ": '" + key + "'"});
}

Recipe ParseRecipe(const json& j, const std::string& where) {
  if (!j.is_object()) throw Invalid(where + ": a recipe must be a JSON object");
  for (const auto& [k, v] : j.items()) {
    static const std::set<std::string> known = {"name", "table", "schema", "key", "fields", "refs", "description"};
    if (!known.count(k)) throw Invalid(where + ": unknown field '" + k + "'");
  }
  Recipe r;
  r.name = StringField(j, "name", where, true);
  util::CheckName(r.name, "recipe name");
  r.table = StringField(j, "table", where, true);
  r.schema = StringField(j, "schema", where, false, "public");
  r.key = StringField(j, "key", where, true);
  if (!j.contains("fields")) throw Invalid(where + ": 'fields' is required");
  try {
    r.fields = RowGenerator::FromJson(j["fields"]);
  } catch (const Error& e) {
    throw Invalid(where + ": " + e.what());
  }
  if (j.contains("refs")) {
    if (!j["refs"].is_array()) throw Invalid(where + ": 'refs' must be an array");
    for (const json& ref : j["refs"]) {
      if (!ref.is_object()) throw Invalid(where + ": each ref must be an object {\"column\",\"recipe\"}");
      r.refs.push_back({StringField(ref, "column", where + " ref", true), StringField(ref, "recipe", where + " ref", true)});
    }
  }
  return r;
}

// {"a","b\"c"} — a text[] literal.
std::string ArrayLiteral(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ',';
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

}  // namespace

// ---- recipes ---------------------------------------------------------------------------------

RecipeBook RecipeBook::FromJson(const std::vector<json>& recipes) {
  std::vector<std::string> where;
  for (size_t i = 0; i < recipes.size(); ++i) where.push_back("recipe #" + std::to_string(i + 1));
  return FromNamed(recipes, where);
}

RecipeBook RecipeBook::FromNamed(const std::vector<json>& recipes, const std::vector<std::string>& where) {
  RecipeBook book;
  for (size_t i = 0; i < recipes.size(); ++i) {
    Recipe r = ParseRecipe(recipes[i], where[i]);
    const std::string name = r.name;
    if (!book.recipes_.emplace(name, std::move(r)).second) throw Invalid("two recipes are named '" + name + "'");
  }
  for (const auto& [name, r] : book.recipes_) {
    for (const RecipeRef& ref : r.refs) {
      if (!book.recipes_.count(ref.recipe)) {
        throw Invalid("recipe '" + name + "' refers to '" + ref.recipe + "', which no recipe defines");
      }
    }
  }
  for (const auto& [name, r] : book.recipes_) book.DependencyOrder(name);  // throws on a cycle
  return book;
}

RecipeBook RecipeBook::LoadDir(const std::filesystem::path& dir) {
  std::vector<json> parsed;
  std::vector<std::string> where;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return FromJson(parsed);
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f);
    std::stringstream text;
    text << in.rdbuf();
    json j = json::parse(text.str(), nullptr, false);
    if (j.is_discarded()) throw Invalid(f.string() + ": not valid JSON");
    parsed.push_back(std::move(j));
    where.push_back(f.string());
  }
  return FromNamed(parsed, where);
}

const Recipe& RecipeBook::Get(const std::string& name) const {
  auto it = recipes_.find(name);
  if (it == recipes_.end()) throw Error(ErrorCode::kNotFound, "no recipe named '" + name + "'");
  return it->second;
}

std::vector<std::string> RecipeBook::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, r] : recipes_) out.push_back(name);
  return out;
}

std::vector<std::string> RecipeBook::DependencyOrder(const std::string& name) const {
  std::vector<std::string> order;
  std::set<std::string> done, visiting;
  std::function<void(const std::string&)> visit = [&](const std::string& n) {
    if (done.count(n)) return;
    if (!visiting.insert(n).second) throw Invalid("recipes refer to each other in a cycle through '" + n + "'");
    for (const RecipeRef& ref : Get(n).refs) visit(ref.recipe);
    visiting.erase(n);
    done.insert(n);
    order.push_back(n);
  };
  visit(name);
  return order;
}

// ---- builds ----------------------------------------------------------------------------------

struct Builders::Impl {
  explicit Impl(const RecipeBook& r) : recipes(r) {}
  const RecipeBook& recipes;

  static void EnsureSchema(pg::Connection& c) { pg::ExecCreateIfNotExists(c, kCreatedSchema); }

  static std::set<std::string> Columns(pg::Connection& c, const Recipe& r) {
    pg::Result cols = c.Exec(
        "SELECT a.attname FROM pg_attribute a JOIN pg_class t ON t.oid = a.attrelid JOIN pg_namespace n ON "
        "n.oid = t.relnamespace WHERE n.nspname = $1 AND t.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
        {r.schema, r.table});
    if (cols.rows() == 0) throw Invalid("recipe '" + r.name + "': no table " + r.schema + "." + r.table + " in the target");
    std::set<std::string> out;
    for (int i = 0; i < cols.rows(); ++i) out.insert(std::string(cols.Get(i, 0)));
    return out;
  }

  // Builds `count` rows of recipe `name` (and, first, the rows its refs need); returns their keys.
  std::vector<std::string> BuildRecipe(pg::Connection& c, const std::string& name, int64_t count,
                                       const std::map<std::string, std::string>& overrides, const BuildRequest& req,
                                       BuildResult* result, int* stage_counter) {
    const Recipe& r = recipes.Get(name);
    const std::set<std::string> columns = Columns(c, r);
    if (!columns.count(r.key)) throw Invalid("recipe '" + r.name + "': table " + r.table + " has no column '" + r.key + "'");
    for (const auto& [col, value] : overrides) {
      if (!columns.count(col)) throw Invalid("override '" + col + "': table " + r.table + " has no such column");
    }
    // Referenced rows first, one per row, unless the caller supplied the column.
    std::vector<std::pair<std::string, std::vector<std::string>>> ref_keys;
    for (const RecipeRef& ref : r.refs) {
      if (!columns.count(ref.column)) {
        throw Invalid("recipe '" + r.name + "': table " + r.table + " has no column '" + ref.column + "'");
      }
      if (overrides.count(ref.column)) continue;
      ref_keys.emplace_back(ref.column, BuildRecipe(c, ref.recipe, count, {}, req, result, stage_counter));
    }
    std::vector<size_t> generated;  // indexes of generated fields that go in (not overridden)
    std::vector<std::string> cols;
    for (size_t i = 0; i < r.fields.fields().size(); ++i) {
      const std::string& f = r.fields.fields()[i].name();
      if (overrides.count(f)) continue;
      if (!columns.count(f)) throw Invalid("recipe '" + r.name + "': table " + r.table + " has no column '" + f + "'");
      generated.push_back(i);
      cols.push_back(f);
    }
    for (const auto& [col, keys] : ref_keys) cols.push_back(col);
    for (const auto& [col, value] : overrides) cols.push_back(col);
    if (cols.empty()) throw Invalid("recipe '" + r.name + "' sets no column");

    // Row indexes continue from what this namespace already built into the table, so a second
    // build never repeats a first one's unique values, and a build replayed after a clean-up
    // (same seed, same namespace) gives the same values.
    const int64_t base = std::stoll(std::string(
        c.Exec("SELECT count(*) FROM testpool.created WHERE ns = $1 AND schema_name = $2 AND table_name = $3",
               {req.ns, r.schema, r.table})
            .Get(0, 0)));
    const uint64_t seed = req.seed ^ Fnv1a64(r.name);
    std::string data;
    for (int64_t i = 0; i < count; ++i) {
      // Overridden fields take the override, so fields derived from them agree with it.
      RowValues row = r.fields.Generate(seed, req.ns, static_cast<uint64_t>(base + i), overrides);
      bool first = true;
      auto put = [&](const pg::Param& v) {
        if (!first) data += '\t';
        first = false;
        pg::AppendCopyText(&data, v);
      };
      for (size_t g : generated) put(row[g].value);
      for (const auto& [col, keys] : ref_keys) put(keys[static_cast<size_t>(i)]);
      for (const auto& [col, value] : overrides) put(value);
      data += '\n';
    }
    std::string quoted_cols, target = c.QuoteIdent(r.schema) + "." + c.QuoteIdent(r.table);
    for (const std::string& col : cols) quoted_cols += (quoted_cols.empty() ? "" : ", ") + c.QuoteIdent(col);
    const std::string stage = "tp_stage_" + std::to_string((*stage_counter)++);
    c.Exec("CREATE TEMP TABLE " + stage + " ON COMMIT DROP AS SELECT " + quoted_cols + " FROM " + target + " WITH NO DATA");
    c.CopyIn("COPY " + stage + " (" + quoted_cols + ") FROM STDIN", data);
    pg::Result inserted = c.Exec("INSERT INTO " + target + " (" + quoted_cols + ") SELECT " + quoted_cols + " FROM " +
                                 stage + " RETURNING " + c.QuoteIdent(r.key) + "::text");
    std::vector<std::string> keys;
    keys.reserve(static_cast<size_t>(inserted.rows()));
    for (int i = 0; i < inserted.rows(); ++i) keys.emplace_back(inserted.Get(i, 0));
    c.Exec("INSERT INTO testpool.created (ns, lease_id, schema_name, table_name, key_column, key) "
           "SELECT $1, $2, $3, $4, $5, k FROM unnest($6::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
           {req.ns, req.lease_id.empty() ? pg::Param() : pg::Param(req.lease_id), r.schema, r.table, r.key,
            ArrayLiteral(keys)});
    auto& all = result->keys[r.name];
    all.insert(all.end(), keys.begin(), keys.end());
    return keys;
  }

  // Deletes the rows `where` selects from testpool.created (children first), then their records.
  static int64_t Drop(const pg::ConnInfo& target, const std::string& where, const std::string& value) {
    pg::Connection c = pg::Connection::Open(target);
    if (c.Exec("SELECT to_regclass('testpool.created') IS NOT NULL").Get(0, 0) != "t") return 0;
    pg::Transaction tx(c);
    // Children were created after the rows they reference: the table whose first row came last
    // goes first.
    pg::Result groups = c.Exec(
        "SELECT schema_name, table_name, key_column, array_agg(key)::text FROM testpool.created WHERE " + where +
            " = $1 GROUP BY 1, 2, 3 ORDER BY min(seq) DESC",
        {value});
    int64_t n = 0;
    for (int i = 0; i < groups.rows(); ++i) {
      const std::string table = c.QuoteIdent(groups.Get(i, 0)) + "." + c.QuoteIdent(groups.Get(i, 1));
      n += c.Exec("DELETE FROM " + table + " WHERE " + c.QuoteIdent(groups.Get(i, 2)) + "::text = ANY($1::text[])",
                  {std::string(groups.Get(i, 3))})
               .Affected();
    }
    c.Exec("DELETE FROM testpool.created WHERE " + where + " = $1", {value});
    tx.Commit();
    return n;
  }
};

Builders::Builders(const RecipeBook& recipes) : impl_(std::make_unique<Impl>(recipes)) {}
Builders::~Builders() = default;

BuildResult Builders::Build(const pg::ConnInfo& target, const BuildRequest& req) {
  const Recipe& top = impl_->recipes.Get(req.recipe);  // kNotFound first
  if (req.count < 1 || req.count > kMaxCount) throw Invalid("count must be between 1 and " + std::to_string(kMaxCount));
  if (!IsValidNamespace(req.ns)) throw Invalid("namespace must be 1 to 40 of [a-z0-9_-]");
  BuildRequest request = req;
  if (request.seed == 0) request.seed = std::stoull(util::RandomHex(7), nullptr, 16) | 1;  // printed for replay
  const util::Stopwatch took;
  BuildResult result;
  result.seed = request.seed;
  result.ns = request.ns;
  // What the target itself refuses (its login, its database, its role's rights) is the caller's
  // to fix: a 4xx naming it, not an internal error.
  auto refused = [&](const pg::PgError& e, const std::string& doing) {
    const std::string& st = e.sqlstate();
    // libpq gives a failed connection no SQLSTATE: the server's FATAL is in the message.
    const std::string what = e.what();
    const bool login_refused = st.empty() && (what.find("authentication failed") != std::string::npos ||
                                              what.find("does not exist") != std::string::npos ||
                                              what.find("pg_hba.conf") != std::string::npos);
    if (login_refused || st.rfind("28", 0) == 0 || st == "3D000" || st.rfind("42", 0) == 0) {
      return Invalid("building '" + req.recipe + "' in database " + target.Get("dbname") + " as role " +
                     target.Get("user") + ": " + doing + " was refused: " + e.diagnostics().message +
                     " (a DSN build needs a role that may create schema testpool and write the recipe's tables; "
                     "a lease's own database: POST /v1/leases/{id}/build)");
    }
    return Error(e.code(), e.what());
  };
  std::optional<pg::Connection> conn;
  try {
    conn.emplace(pg::Connection::Open(target));
    Impl::EnsureSchema(*conn);
  } catch (const pg::PgError& e) {
    throw refused(e, conn ? "creating schema testpool" : "the login");
  }
  pg::Connection& c = *conn;
  try {
    pg::Transaction tx(c);
    // One build per namespace at a time in a target: row indexes continue from the last build's.
    c.Exec("SELECT pg_advisory_xact_lock(hashtextextended($1::text || $2::text, 0))", {core::kBuildNamespaceLockPrefix, request.ns});
    int stage_counter = 0;
    impl_->BuildRecipe(c, top.name, request.count, request.overrides, request, &result, &stage_counter);
    tx.Commit();
  } catch (const pg::PgError& e) {
    const std::string& st = e.sqlstate();
    if (st.rfind("23", 0) == 0 || st.rfind("22", 0) == 0) {  // integrity / data: the schema refused a row
      throw Invalid("building '" + req.recipe + "' (seed " + std::to_string(request.seed) + ", namespace " + request.ns +
                    ") was refused by the database, nothing was kept: " + e.diagnostics().message +
                    (e.diagnostics().detail.empty() ? "" : " (" + e.diagnostics().detail + ")"));
    }
    if (st.rfind("42", 0) == 0) throw refused(e, "writing its rows");
    throw;
  }
  result.ms = took.ElapsedMs();
  size_t rows = 0;
  for (const auto& [name, keys] : result.keys) rows += keys.size();
  log::Info("builder.built", {{"recipe", req.recipe}, {"count", std::to_string(req.count)}, {"rows", std::to_string(rows)},
                              {"ns", request.ns}, {"seed", std::to_string(request.seed)}, {"ms", log::Ms(result.ms)}});
  return result;
}

int64_t Builders::DropNamespace(const pg::ConnInfo& target, const std::string& ns) {
  if (!IsValidNamespace(ns)) throw Invalid("namespace must be 1 to 40 of [a-z0-9_-]");
  int64_t n = Impl::Drop(target, "ns", ns);
  log::Info("builder.namespace_dropped", {{"ns", ns}, {"rows", std::to_string(n)}});
  return n;
}

int64_t Builders::DropLease(const pg::ConnInfo& target, const std::string& lease_id) {
  int64_t n = Impl::Drop(target, "lease_id", lease_id);
  log::Info("builder.lease_rows_dropped", {{"lease", lease_id}, {"rows", std::to_string(n)}});
  return n;
}

// ---- the daemon's service ---------------------------------------------------------------------

BuildService::BuildService(ControlStore& store, LeaseLookup& leases, const RecipeBook& recipes)
    : store_(store), leases_(leases), recipes_(recipes), builders_(recipes) {}
BuildService::~BuildService() = default;

const RecipeBook& BuildService::recipes() const { return recipes_; }

BuildResult BuildService::BuildInLease(const std::string& lease_id, BuildRequest request) {
  LeaseInfo lease = leases_.GetLease(lease_id);
  if (lease.state != LeaseState::kActive) throw Error(ErrorCode::kLeaseExpired, "lease " + lease_id + " has ended");
  if (request.ns.empty()) request.ns = lease_id;
  request.lease_id.clear();  // the recycle removes these rows with the database
  return builders_.Build(store_.AdminConnInfo(lease.database), request);
}

BuildResult BuildService::BuildInDsn(const std::string& dsn, BuildRequest request) {
  if (request.ns.empty()) throw Invalid("a build into a shared database needs a namespace");
  if (!IsValidNamespace(request.ns)) throw Invalid("namespace must be 1 to 40 of [a-z0-9_-]");
  const pg::ConnInfo target = pg::ConnInfo::Parse(dsn);
  if (!request.lease_id.empty()) {
    LeaseInfo lease = leases_.GetLease(request.lease_id);
    if (lease.state != LeaseState::kActive) throw Error(ErrorCode::kLeaseExpired, "lease " + request.lease_id + " has ended");
  }
  // Remembered before the build: a daemon that dies mid-build still knows where to clean up.
  bool first = false;  // the namespace's first build into this DSN
  {
    auto conn = store_.Connect();
    first = conn->Exec("INSERT INTO build_targets (ns, dsn, lease_id) VALUES ($1, $2, $3) ON CONFLICT (ns, dsn) DO "
                       "UPDATE SET lease_id = coalesce(EXCLUDED.lease_id, build_targets.lease_id) "
                       "RETURNING xmax = 0",
                       {request.ns, dsn, request.lease_id.empty() ? pg::Param() : pg::Param(request.lease_id)})
                .Get(0, 0) == "t";
  }
  try {
    return builders_.Build(target, request);
  } catch (const Error&) {
    // Nothing of a failed build is kept (one transaction); a namespace it alone named is forgotten.
    if (first) {
      try {
        store_.Connect()->Exec("DELETE FROM build_targets WHERE ns = $1 AND dsn = $2", {request.ns, dsn});
      } catch (const std::exception& e) {
        log::Warn("builder.forget_failed", {{"ns", request.ns}, {"error", e.what()}});
      }
    }
    throw;
  }
}

int64_t BuildService::DropNamespace(const std::string& ns) {
  if (!IsValidNamespace(ns)) throw Error(ErrorCode::kNotFound, "no namespace " + ns);
  std::vector<std::string> dsns;
  {
    auto conn = store_.Connect();
    pg::Result r = conn->Exec("SELECT dsn FROM build_targets WHERE ns = $1", {ns});
    for (int i = 0; i < r.rows(); ++i) dsns.emplace_back(r.Get(i, 0));
  }
  if (dsns.empty()) throw Error(ErrorCode::kNotFound, "no build used namespace '" + ns + "'");
  int64_t n = 0;
  for (const std::string& dsn : dsns) n += builders_.DropNamespace(pg::ConnInfo::Parse(dsn), ns);
  auto conn = store_.Connect();
  conn->Exec("DELETE FROM build_targets WHERE ns = $1", {ns});
  return n;
}

void BuildService::LeaseEnded(const std::string& lease_id) noexcept {
  try {
    std::vector<std::string> dsns;
    {
      auto conn = store_.Connect();
      pg::Result r = conn->Exec("SELECT DISTINCT dsn FROM build_targets WHERE lease_id = $1", {lease_id});
      for (int i = 0; i < r.rows(); ++i) dsns.emplace_back(r.Get(i, 0));
    }
    for (const std::string& dsn : dsns) {
      try {
        builders_.DropLease(pg::ConnInfo::Parse(dsn), lease_id);
      } catch (const std::exception& e) {
        log::Warn("builder.lease_cleanup_failed", {{"lease", lease_id}, {"error", e.what()}});
      }
    }
    if (!dsns.empty()) {
      auto conn = store_.Connect();
      conn->Exec("UPDATE build_targets SET lease_id = NULL WHERE lease_id = $1", {lease_id});
    }
  } catch (const std::exception& e) {
    log::Warn("builder.lease_cleanup_failed", {{"lease", lease_id}, {"error", e.what()}});
  }
}

}  // namespace testpool::builders
