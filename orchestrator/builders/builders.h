// Builders: fresh, domain-valid rows made from declarative recipes, unique across workers without
// coordination, and removed again without leaving orphans.
//
// A recipe (templates/builders/<name>.json) describes one entity:
//   {"name": "order", "table": "orders", "schema": "public", "key": "id",
//    "fields": [{"name": "status", "gen": "choice", "values": ["pending", "paid"]}, …],
//    "refs": [{"column": "customer_id", "recipe": "customer"}]}
// `fields` are generators (builders/generators.h: unique ids and e-mails carry the build's namespace,
// card numbers pass Luhn, IBANs mod-97, postal codes their country's format, …); `refs` are
// foreign keys: unless the caller supplies the column (an override), one row of the referenced
// recipe is built first for each row, in dependency order, and its key fills the column. `key` is
// the column whose value identifies a created row (an identity column the database fills in is
// fine: rows go in through INSERT … RETURNING).
//
// Bulk path: rows are generated in memory, COPYed into a temporary staging table shaped like the
// target's columns, and moved with one INSERT … SELECT … RETURNING key; the whole build (every
// recipe it needed) is one transaction, so a row the schema rejects (a CHECK, a foreign key)
// leaves nothing behind and the error names the recipe and the seed to replay it with.
//
// No orphans: every created row is recorded in the target, in `testpool.created` (namespace,
// lease, table, key, order of creation). DropNamespace() deletes a namespace's rows in reverse
// order of creation (children before the rows they reference) and forgets them; LeaseEnded()
// does it for rows built under a lease in a shared database.
//
// Thread-safe; builds into different targets or namespaces run in parallel.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchestrator/builders/generators.h"
#include "orchestrator/pg/conninfo.h"

namespace testpool::core {
class ControlStore;
class LeaseLookup;
}  // namespace testpool::core

namespace testpool::builders {

struct RecipeRef {
  std::string column;  // the foreign-key column in this recipe's table
  std::string recipe;  // the recipe that builds the referenced row
};

struct Recipe {
  std::string name;
  std::string schema = "public";
  std::string table;
  std::string key;
  RowGenerator fields{std::vector<FieldGenerator>{}};
  std::vector<RecipeRef> refs;
};

// The recipes a daemon knows, by name. Immutable after loading; thread-safe to share.
class RecipeBook {
 public:
  // Every *.json in `dir` (none is fine). Throws Error(kInvalidArgument) naming the file and the
  // problem: malformed JSON, a bad name or field spec, a duplicate name, a ref to an unknown
  // recipe, a cycle of refs.
  static RecipeBook LoadDir(const std::filesystem::path& dir);
  // From parsed recipes (tests). Same checks.
  static RecipeBook FromJson(const std::vector<nlohmann::json>& recipes);

  // kNotFound when unknown.
  const Recipe& Get(const std::string& name) const;
  std::vector<std::string> Names() const;
  // `name` and everything it refers to, each after what it refers to.
  std::vector<std::string> DependencyOrder(const std::string& name) const;

 private:
  // `where[i]` names recipe i in messages (its file).
  static RecipeBook FromNamed(const std::vector<nlohmann::json>& recipes, const std::vector<std::string>& where);

  std::map<std::string, Recipe> recipes_;
};

struct BuildRequest {
  std::string recipe;
  int64_t count = 1;                                 // 1 … 1,000,000
  std::map<std::string, std::string> overrides;      // column → value for every row (text form);
                                                     // fields that read an overridden field
                                                     // (derive, country_field) see the override
  uint64_t seed = 0;                                 // replays the same values
  std::string ns;                                    // namespace: [a-z0-9_-]{1,40}
  std::string lease_id;                              // optional: the rows go when the lease ends
};

struct BuildResult {
  std::map<std::string, std::vector<std::string>> keys;  // recipe → keys of the rows it created
  uint64_t seed = 0;
  std::string ns;
  double ms = 0;
};

class Builders {
 public:
  explicit Builders(const RecipeBook& recipes);
  ~Builders();
  Builders(const Builders&) = delete;
  Builders& operator=(const Builders&) = delete;

  // Builds `request.count` rows of `request.recipe` (and what they refer to) in the database at
  // `target` (superuser or the table owner's rights: it creates schema testpool there if missing).
  // Errors: kNotFound (recipe), kInvalidArgument (count, namespace, an override column the table
  // lacks, a recipe field the table lacks, or the database rejected a row: the message names the
  // recipe, the constraint and the seed; also a target that refuses the login, has no such
  // database, or whose role may not create schema testpool or write the recipe's tables: the
  // message says which), kUnavailable (target unreachable).
  BuildResult Build(const pg::ConnInfo& target, const BuildRequest& request);

  // Deletes every row built under namespace `ns` in `target`, children first; returns how many.
  int64_t DropNamespace(const pg::ConnInfo& target, const std::string& ns);
  // The same for every row built under `lease_id`.
  int64_t DropLease(const pg::ConnInfo& target, const std::string& lease_id);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What the daemon offers on top of Builders: builds into a leased database (reached as the
// server's superuser; the recycle removes the rows with the database) or into any database given
// by DSN (a shared one), where every namespace used is remembered in the control database so
// that DropNamespace() can find its rows again, and rows built under a lease are removed when the
// lease ends. Thread-safe.
class BuildService {
 public:
  // `store`, `leases` and `recipes` must outlive the service.
  BuildService(core::ControlStore& store, core::LeaseLookup& leases, const RecipeBook& recipes);
  ~BuildService();

  // Into the lease's own database; the namespace defaults to the lease id. kNotFound (lease or
  // recipe), kLeaseExpired (the lease ended), and as Builders::Build.
  BuildResult BuildInLease(const std::string& lease_id, BuildRequest request);
  // Into the database at `dsn`; `request.ns` is required (kInvalidArgument). With
  // `request.lease_id`, the rows go when that lease ends. As Builders::Build otherwise; a build
  // that fails leaves no record of the namespace behind when it was the namespace's first there.
  BuildResult BuildInDsn(const std::string& dsn, BuildRequest request);
  // Removes every row built under `ns` in every shared database it was used in; returns how many.
  // kNotFound when no build ever used it.
  int64_t DropNamespace(const std::string& ns);
  // Removes the rows built under `lease_id` in shared databases. Never throws (logs failures).
  void LeaseEnded(const std::string& lease_id) noexcept;

  const RecipeBook& recipes() const;

 private:
  core::ControlStore& store_;
  core::LeaseLookup& leases_;
  const RecipeBook& recipes_;
  Builders builders_;
};

}  // namespace testpool::builders
