// `testpool build`, `testpool namespace drop` and `testpool recipes`: thin clients of
// /v1/leases/{id}/build, /v1/builds, /v1/namespaces/{ns} and /v1/recipes.
#include <boost/program_options.hpp>
#include <cstdio>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "orchestrator/cli/cli.h"
#include "orchestrator/cli/client.h"
#include "orchestrator/cli/command.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace testpool::cli {
namespace {

const char* kBuildUsage = R"(usage:
  testpool build RECIPE --lease ID [--namespace NS] [--count N] [--set COLUMN=VALUE]… [--seed S] [--json]
                        fresh rows in the lease's database (they go with it)
  testpool build RECIPE --dsn DSN --namespace NS [--lease ID] [--count N] [--set COLUMN=VALUE]… [--seed S] [--json]
                        fresh rows in a shared database; removed by `testpool namespace drop NS`,
                        or when the lease ends if --lease is given
  prints the seed (replay with --seed), the namespace, and per recipe the rows built and the first keys
)";

const char* kNamespaceUsage = R"(usage:
  testpool namespace drop NS    delete every row built under NS in shared databases
)";

const char* kRecipesUsage = R"(usage:
  testpool recipes [--json]     the recipes the daemon loaded (serve --recipes DIR)
)";

// Keys printed per recipe (the daemon's answer has up to every one of them).
constexpr size_t kKeysShown = 5;


// "42" → 42; false for anything but a non-negative decimal integer that fits 64 bits.
bool ParseSeed(const std::string& text, unsigned long long* seed) {
  if (text.empty() || text.size() > 20) return false;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
  }
  try {
    *seed = std::stoull(text);
    return true;
  } catch (const std::exception&) {
    return false;  // past 2^64 - 1
  }
}

void PrintBuild(const json& b) {
  std::printf("seed      %s\n", b.contains("seed") ? b["seed"].dump().c_str() : "?");
  std::printf("namespace %s\n", Str(b, "namespace").c_str());
  const json counts = b.value("counts", json::object()), keys = b.value("keys", json::object());
  for (const auto& [recipe, count] : counts.items()) {
    std::string first;
    const json list = keys.value(recipe, json::array());
    for (size_t i = 0; i < list.size() && i < kKeysShown; ++i) {
      first += (i ? ", " : "") + (list[i].is_string() ? list[i].get<std::string>() : list[i].dump());
    }
    const long long n = count.is_number_integer() ? count.get<long long>() : 0;
    std::printf("%-20s %8lld rows  %s%s\n", recipe.c_str(), n, first.c_str(),
                n > static_cast<long long>(kKeysShown) ? ", …" : "");
  }
  if (b.contains("ms") && b["ms"].is_number()) std::printf("took      %.1f ms\n", b["ms"].get<double>());
}

int BuildBody(int argc, char** argv) {
  po::options_description opts("testpool build options");
  opts.add_options()("help,h", "show this help")
      ("recipe", po::value<std::string>(), "the recipe to build (see `testpool recipes`)")
      ("lease", po::value<std::string>(), "a lease: build in its database, or (with --dsn) tie the rows to it")
      ("dsn", po::value<std::string>(), "a shared database to build in (needs --namespace)")
      ("namespace", po::value<std::string>(), "1 to 40 of [a-z0-9_-]: goes into unique ids; names the rows for removal")
      ("count", po::value<long long>(), "rows of RECIPE to build, 1 to 1000000 (default 1)")
      ("set", po::value<std::vector<std::string>>()->composing(), "COLUMN=VALUE for every row (repeatable)")
      ("seed", po::value<std::string>(), "replay the values of an earlier build (default: a random seed)")
      ("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(std::vector<std::string>(argv + 1, argv + argc), opts, "recipe");
  if (vm.count("help")) {
    std::cout << kBuildUsage << opts;
    return kExitOk;
  }
  if (!vm.count("recipe")) return Usage("build", "RECIPE is required", kBuildUsage);
  const bool shared = vm.count("dsn") > 0;
  if (!shared && !vm.count("lease")) return Usage("build", "give --lease ID, or --dsn DSN --namespace NS", kBuildUsage);
  if (shared && !vm.count("namespace")) return Usage("build", "--dsn needs --namespace", kBuildUsage);
  json body = {{"recipe", vm["recipe"].as<std::string>()}};
  if (vm.count("count")) body["count"] = vm["count"].as<long long>();
  if (vm.count("seed")) {
    unsigned long long seed = 0;
    if (!ParseSeed(vm["seed"].as<std::string>(), &seed)) {
      return Usage("build", "--seed must be a non-negative integer (got '" + vm["seed"].as<std::string>() + "')",
                   kBuildUsage);
    }
    body["seed"] = seed;
  }
  if (vm.count("set")) {
    json overrides = json::object();
    for (const std::string& kv : vm["set"].as<std::vector<std::string>>()) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        return Usage("build", "--set must be COLUMN=VALUE (got '" + kv + "')", kBuildUsage);
      }
      overrides[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    body["overrides"] = overrides;
  }
  if (vm.count("namespace")) body["namespace"] = vm["namespace"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r;
  if (shared) {
    body["dsn"] = vm["dsn"].as<std::string>();
    if (vm.count("lease")) body["lease"] = vm["lease"].as<std::string>();
    r = api.Post("/v1/builds", body);
  } else {
    r = api.Post("/v1/leases/" + PathSegment(vm["lease"].as<std::string>()) + "/build", body);
  }
  if (r.status != 201 || !r.body.is_object()) return Failed("build", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    PrintBuild(r.body);
  }
  return kExitOk;
}

int NamespaceBody(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kNamespaceUsage;
    return kExitUsage;
  }
  const std::string sub = argv[1];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::cout << kNamespaceUsage;
    return kExitOk;
  }
  if (sub != "drop") return Usage("namespace", "unknown subcommand '" + sub + "'", kNamespaceUsage);
  po::options_description opts("testpool namespace drop options");
  opts.add_options()("help,h", "show this help")("ns", po::value<std::string>(), "namespace");
  po::variables_map vm = ParseArgs(std::vector<std::string>(argv + 2, argv + argc), opts, "ns");
  if (vm.count("help")) {
    std::cout << kNamespaceUsage << opts;
    return kExitOk;
  }
  if (!vm.count("ns")) return Usage("namespace drop", "NS is required", kNamespaceUsage);
  const std::string ns = vm["ns"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Delete("/v1/namespaces/" + PathSegment(ns));
  if (r.status != 200 || !r.body.is_object()) return Failed("namespace drop", r);
  const long long deleted = r.body.value("deleted", 0LL);
  std::printf("dropped namespace %s: %lld rows deleted\n", ns.c_str(), deleted);
  return kExitOk;
}

std::string Join(const json& list, const std::function<std::string(const json&)>& item) {
  std::string out;
  if (list.is_array()) {
    for (const json& v : list) out += (out.empty() ? "" : ", ") + item(v);
  }
  return out.empty() ? "-" : out;
}

int RecipesBody(int argc, char** argv) {
  po::options_description opts("testpool recipes options");
  opts.add_options()("help,h", "show this help")("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(std::vector<std::string>(argv + 1, argv + argc), opts, nullptr);
  if (vm.count("help")) {
    std::cout << kRecipesUsage << opts;
    return kExitOk;
  }
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Get("/v1/recipes");
  if (r.status != 200 || !r.body.is_object()) return Failed("recipes", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
    return kExitOk;
  }
  const json recipes = r.body.value("recipes", json::array());
  std::printf("%-20s %-32s %-12s %-28s %s\n", "NAME", "TABLE", "KEY", "REFS", "FIELDS");
  for (const json& rec : recipes) {
    const std::string refs = Join(rec.value("refs", json::array()),
                                  [](const json& ref) { return Str(ref, "column") + "→" + Str(ref, "recipe"); });
    const std::string fields = Join(rec.value("fields", json::array()),
                                    [](const json& f) { return f.is_string() ? f.get<std::string>() : f.dump(); });
    std::printf("%-20s %-32s %-12s %-28s %s\n", Str(rec, "name").c_str(),
                (Str(rec, "schema") + "." + Str(rec, "table")).c_str(), Str(rec, "key").c_str(), refs.c_str(),
                fields.c_str());
  }
  if (recipes.empty()) {
    std::printf("(no recipes: start the daemon with --recipes DIR, or where templates/builders is)\n");
  }
  return kExitOk;
}

}  // namespace

int Build(int argc, char** argv) { return RunCommand("build", kBuildUsage, [&] { return BuildBody(argc, argv); }); }
int Namespace(int argc, char** argv) {
  return RunCommand("namespace", kNamespaceUsage, [&] { return NamespaceBody(argc, argv); });
}
int Recipes(int argc, char** argv) {
  return RunCommand("recipes", kRecipesUsage, [&] { return RecipesBody(argc, argv); });
}

}  // namespace testpool::cli
