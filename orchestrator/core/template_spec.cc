#include "orchestrator/core/template_spec.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/names.h"

namespace testpool::core {
namespace {

// NNNN_name.sql → the number; -1 when the name does not follow the pattern.
long MigrationNumber(std::string_view name) {
  size_t i = 0;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
  if (i == 0 || i > 18 || i >= name.size() || name[i] != '_') return -1;
  std::string_view rest = name.substr(i + 1);
  if (rest.size() <= 4 || rest.substr(rest.size() - 4) != ".sql") return -1;
  for (char c : rest.substr(0, rest.size() - 4)) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-';
    if (!ok) return -1;
  }
  return std::stol(std::string(name.substr(0, i)));
}

Error Invalid(const std::string& message) { return Error(ErrorCode::kInvalidArgument, message); }

}  // namespace

const char* RecycleModeName(RecycleMode mode) { return mode == RecycleMode::kRollback ? "rollback" : "clone"; }

void ValidateSpec(TemplateSpec* spec) {
  util::CheckName(spec->name, "template name");
  if (spec->migrations.empty()) throw Invalid("template '" + spec->name + "' has no migrations");
  if (spec->migrations.size() > kMaxMigrations) {
    throw Invalid("too many migrations (" + std::to_string(spec->migrations.size()) + "; at most " +
                  std::to_string(kMaxMigrations) + ")");
  }
  size_t bytes = 0;
  std::set<long> numbers;
  for (const SqlFile& m : spec->migrations) {
    long n = MigrationNumber(m.name);
    if (n < 0) {
      throw Invalid("migration name '" + m.name.substr(0, 100) +
                    "' is invalid: expected NNNN_name.sql (digits, '_', letters/digits/._-, '.sql')");
    }
    if (!numbers.insert(n).second) {
      throw Invalid("two migrations share the number " + std::to_string(n) + " (" + m.name + ")");
    }
    bytes += m.sql.size();
  }
  for (const SqlFile& s : spec->seed) {
    if (s.name.empty() || s.name.size() > 200) throw Invalid("every seed file needs a name of 1 to 200 characters");
    bytes += s.sql.size();
  }
  if (bytes > kMaxTotalSqlBytes) {
    throw Invalid("migrations and seed hold " + std::to_string(bytes) + " bytes; at most " +
                  std::to_string(kMaxTotalSqlBytes) + " are accepted");
  }
  if (spec->pool.max < 1 || spec->pool.max > 1000) throw Invalid("pool.max must be between 1 and 1000");
  if (spec->pool.min_ready < 0 || spec->pool.min_ready > spec->pool.max) {
    throw Invalid("pool.min_ready must be between 0 and pool.max (" + std::to_string(spec->pool.max) + ")");
  }
  if (spec->recycle == "clone") {
    spec->pool.recycle = RecycleMode::kClone;
  } else if (spec->recycle == "rollback") {
    spec->pool.recycle = RecycleMode::kRollback;
  } else {
    throw Invalid("recycle mode '" + spec->recycle.substr(0, 40) + "' is not supported; use \"clone\" or \"rollback\"");
  }
  std::stable_sort(spec->migrations.begin(), spec->migrations.end(),
                   [](const SqlFile& a, const SqlFile& b) { return MigrationNumber(a.name) < MigrationNumber(b.name); });
}

SqlFile LoadSqlFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Invalid("cannot read " + path.string());
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) throw Invalid("cannot read " + path.string());
  return SqlFile{path.filename().string(), buf.str()};
}

std::vector<SqlFile> LoadMigrationsDir(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) throw Invalid("cannot read migrations directory " + dir.string() + ": " + ec.message());
  std::vector<SqlFile> out;
  for (const auto& entry : it) {
    if (!entry.is_regular_file() || entry.path().extension() != ".sql") continue;
    std::string name = entry.path().filename().string();
    if (MigrationNumber(name) < 0) {
      throw Invalid("migration file " + entry.path().string() + " is misnamed: expected NNNN_name.sql");
    }
    out.push_back(LoadSqlFile(entry.path()));
  }
  if (out.empty()) throw Invalid("no migrations (*.sql) in " + dir.string());
  std::sort(out.begin(), out.end(),
            [](const SqlFile& a, const SqlFile& b) { return MigrationNumber(a.name) < MigrationNumber(b.name); });
  return out;
}

std::string TemplateHash(const TemplateSpec& spec, int server_major) {
  return TemplateHash(spec, std::to_string(server_major));
}

std::string TemplateHash(const TemplateSpec& spec, std::string_view server) {
  util::Sha256 h;
  h.UpdateFramed("testpool-template");
  h.UpdateFramed(std::to_string(kTemplateFormatVersion));
  h.UpdateFramed(server);
  h.UpdateFramed("migrations:" + std::to_string(spec.migrations.size()));
  for (const SqlFile& m : spec.migrations) {
    h.UpdateFramed(m.name);
    h.UpdateFramed(m.sql);
  }
  h.UpdateFramed("seed:" + std::to_string(spec.seed.size()));
  for (const SqlFile& s : spec.seed) {
    h.UpdateFramed(s.name);
    h.UpdateFramed(s.sql);
  }
  return h.HexDigest();
}

std::string TemplateDatabaseName(std::string_view name, std::string_view hash) {
  return "tp_tpl_" + std::string(name) + "_" + std::string(hash.substr(0, 12));
}

}  // namespace testpool::core
