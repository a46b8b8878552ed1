// `testpool template create|list|show|drop`: thin client of /v1/templates.
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "orchestrator/cli/cli.h"
#include "orchestrator/cli/command.h"
#include "orchestrator/cli/client.h"
#include "orchestrator/core/template_spec.h"
#include "orchestrator/util/error.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace testpool::cli {
namespace {

const char* kTemplateUsage = R"(usage:
  testpool template create NAME --migrations DIR [--seed FILE]… [--min-ready N] [--max N] [--no-wait] [--json]
  testpool template create --file DEFINITION.json [NAME] [--no-wait] [--json]
  testpool template list [--json]
  testpool template show NAME [--json]
  testpool template drop NAME [--old-only]
)";

json FilesJson(const std::vector<core::SqlFile>& files) {
  json out = json::array();
  for (const auto& f : files) out.push_back({{"name", f.name}, {"sql", f.sql}});
  return out;
}

// Reads a definition file (templates/app.json): paths inside are relative to the file.
json BodyFromDefinition(const std::filesystem::path& file, std::string* name) {
  std::ifstream in(file);
  if (!in) throw Error(ErrorCode::kInvalidArgument, "cannot read " + file.string());
  json def = json::parse(in, nullptr, false);
  if (def.is_discarded() || !def.is_object()) throw Error(ErrorCode::kInvalidArgument, file.string() + " is not a JSON object");
  std::filesystem::path base = file.parent_path();
  if (name->empty()) {
    if (!def.contains("name") || !def["name"].is_string()) {
      throw Error(ErrorCode::kInvalidArgument, file.string() + " has no \"name\"; give NAME on the command line");
    }
    *name = def["name"].get<std::string>();
  }
  if (!def.contains("migrations") || !def["migrations"].is_string()) {
    throw Error(ErrorCode::kInvalidArgument, file.string() + ": \"migrations\" must name a directory");
  }
  json body = {{"migrations", FilesJson(core::LoadMigrationsDir(base / def["migrations"].get<std::string>()))}};
  std::vector<core::SqlFile> seed;
  if (def.contains("seed")) {
    if (!def["seed"].is_array()) throw Error(ErrorCode::kInvalidArgument, file.string() + ": \"seed\" must be a list of files");
    for (const auto& s : def["seed"]) {
      if (!s.is_string()) throw Error(ErrorCode::kInvalidArgument, file.string() + ": \"seed\" must be a list of files");
      seed.push_back(core::LoadSqlFile(base / s.get<std::string>()));
    }
  }
  body["seed"] = FilesJson(seed);
  if (def.contains("pool")) body["pool"] = def["pool"];
  if (def.contains("recycle")) body["recycle"] = def["recycle"];
  return body;
}

// Polls the template until the build of `hash` ends, printing each file as it is applied.
// Returns the final build object.
json FollowBuild(ApiClient& api, const std::string& name, const std::string& hash, bool quiet) {
  size_t printed = 0;
  bool said_waiting = false;
  for (;;) {
    ApiReply r = api.Get("/v1/templates/" + name);
    if (r.status != 200) return json{{"state", "failed"}, {"error", r.body.is_object() ? r.body["error"] : json()}};
    const json& build = r.body.contains("build") ? r.body["build"] : json();
    if (!build.is_object() || build.value("hash", "") != hash) {
      // The daemon restarted and lost the job: the build row is the truth.
      for (const auto& b : r.body.value("builds", json::array())) {
        if (b.value("hash", "") == hash && b.value("state", "") != "building") return b;
      }
    } else {
      const json& steps = build["steps"];
      for (; printed < steps.size(); ++printed) {
        if (quiet) continue;
        std::printf("  [%zu/%d] %-40s %8.1f ms\n", printed + 1, build.value("of", 0),
                    steps[printed].value("file", "").c_str(), steps[printed].value("ms", 0.0));
        std::fflush(stdout);
      }
      std::string state = build.value("state", "");
      if (state == "waiting" && !said_waiting && !quiet) {
        std::printf("  waiting: another process is building this hash\n");
        std::fflush(stdout);
        said_waiting = true;
      }
      if (state == "ready" || state == "failed") return build;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

int Create(const std::vector<std::string>& args) {
  po::options_description opts("testpool template create options");
  opts.add_options()("help,h", "show this help")
      ("name", po::value<std::string>(), "template name")
      ("migrations", po::value<std::string>(), "directory of NNNN_name.sql migrations")
      ("seed", po::value<std::vector<std::string>>()->composing(), "seed SQL file, applied after the migrations (repeatable)")
      ("file", po::value<std::string>(), "a template definition (templates/app.json)")
      ("min-ready", po::value<int>(), "databases kept warm")
      ("max", po::value<int>(), "databases in all")
      ("recycle", po::value<std::string>(), "clone (default) | rollback: savepoint mode through the wire proxy")
      ("no-wait", "return as soon as the build started")
      ("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(args, opts, "name");
  if (vm.count("help")) {
    std::cout << opts;
    return kExitOk;
  }
  std::string name = vm.count("name") ? vm["name"].as<std::string>() : "";
  json body;
  if (vm.count("file")) {
    body = BodyFromDefinition(vm["file"].as<std::string>(), &name);
  } else {
    if (name.empty() || !vm.count("migrations")) {
      std::cerr << "testpool template create: NAME and --migrations DIR are required (or --file)\n" << kTemplateUsage;
      return kExitUsage;
    }
    body["migrations"] = FilesJson(core::LoadMigrationsDir(vm["migrations"].as<std::string>()));
    std::vector<core::SqlFile> seed;
    if (vm.count("seed")) {
      for (const auto& f : vm["seed"].as<std::vector<std::string>>()) seed.push_back(core::LoadSqlFile(f));
    }
    body["seed"] = FilesJson(seed);
  }
  if (vm.count("min-ready")) body["pool"]["min_ready"] = vm["min-ready"].as<int>();
  if (vm.count("max")) body["pool"]["max"] = vm["max"].as<int>();
  if (vm.count("recycle")) body["recycle"] = vm["recycle"].as<std::string>();
  const bool as_json = vm.count("json") > 0;
  const bool wait = vm.count("no-wait") == 0;

  ApiClient api(DefaultUrl(), DefaultToken());
  auto t0 = std::chrono::steady_clock::now();
  // Start the build without waiting, then follow its progress.
  ApiReply put = api.Put("/v1/templates/" + name + "?wait=false", body);
  if (put.status >= 400) {
    std::cerr << "testpool template create: " << DescribeError(put) << "\n";
    return kExitFailed;
  }
  const std::string hash = put.body.value("hash", "");
  if (!as_json) {
    std::printf("template %s: hash %s (%zu migrations, %zu seed files)\n", name.c_str(), hash.substr(0, 12).c_str(),
                body["migrations"].size(), body["seed"].size());
  }
  json result = put.body;
  if (put.status == 202 && wait) {
    if (!as_json) std::printf("  building %s\n", put.body.value("database", "").c_str());
    json build = FollowBuild(api, name, hash, as_json);
    if (build.value("state", "") != "ready") {
      const json& err = build.contains("error") ? build["error"] : json();
      std::cerr << "testpool template create: "
                << (err.is_object() ? err.value("code", "error") + ": " + err.value("message", "") : "the build failed")
                << "\n";
      if (as_json) std::cout << build.dump(2) << "\n";
      return kExitFailed;
    }
    result["state"] = "ready";
    result["built"] = build.value("built", true);
    result["build_ms"] = build.value("build_ms", 0.0);
  }
  double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (as_json) {
    std::cout << result.dump(2) << "\n";
  } else if (result.value("state", "") != "ready") {
    std::printf("  build started (follow it with `testpool template show %s`)\n", name.c_str());
  } else if (result.value("built", false)) {
    std::printf("template %s ready: database %s, built in %.1f ms\n", name.c_str(),
                result.value("database", "").c_str(), result.value("build_ms", 0.0));
  } else {
    std::printf("template %s ready: database %s, unchanged since it was built (no rebuild; %.1f ms)\n", name.c_str(),
                result.value("database", "").c_str(), wall_ms);
  }
  return kExitOk;
}

int List(const std::vector<std::string>& args) {
  bool as_json = !args.empty() && args[0] == "--json";
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Get("/v1/templates");
  if (r.status != 200) {
    std::cerr << "testpool template list: " << DescribeError(r) << "\n";
    return kExitFailed;
  }
  if (as_json) {
    std::cout << r.body.dump(2) << "\n";
    return kExitOk;
  }
  std::printf("%-24s %-14s %-9s %-10s %s\n", "NAME", "HASH", "STATE", "BUILD_MS", "DATABASE");
  for (const auto& t : r.body["templates"]) {
    std::printf("%-24s %-14s %-9s %-10.1f %s\n", t.value("name", "").c_str(), t.value("hash", "").substr(0, 12).c_str(),
                t.value("state", "").c_str(), t.value("build_ms", 0.0), t.value("database", "").c_str());
  }
  return kExitOk;
}

int Show(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << kTemplateUsage;
    return kExitUsage;
  }
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Get("/v1/templates/" + args[0]);
  if (r.status != 200) {
    std::cerr << "testpool template show: " << DescribeError(r) << "\n";
    return kExitFailed;
  }
  std::cout << r.body.dump(2) << "\n";
  return kExitOk;
}

int Drop(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << kTemplateUsage;
    return kExitUsage;
  }
  bool old_only = args.size() > 1 && args[1] == "--old-only";
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Delete("/v1/templates/" + args[0] + (old_only ? "?old_only=true" : ""));
  if (r.status != 200) {
    std::cerr << "testpool template drop: " << DescribeError(r) << "\n";
    return kExitFailed;
  }
  for (const auto& db : r.body["dropped"]) std::printf("dropped %s\n", db.get<std::string>().c_str());
  return kExitOk;
}

}  // namespace

int Template(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kTemplateUsage;
    return kExitUsage;
  }
  std::string sub = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (sub == "create") return Create(args);
    if (sub == "list") return List(args);
    if (sub == "show") return Show(args);
    if (sub == "drop") return Drop(args);
  } catch (const po::error& e) {
    std::cerr << "testpool template " << sub << ": " << e.what() << "\n" << kTemplateUsage;
    return kExitUsage;
  } catch (const Unreachable& e) {
    std::cerr << "testpool: " << e.what() << "\n";
    return kExitUnreachable;
  } catch (const Error& e) {
    std::cerr << "testpool template " << sub << ": " << e.what() << "\n";
    return kExitFailed;
  } catch (const std::exception& e) {
    std::cerr << "testpool template " << sub << ": " << e.what() << "\n";
    return kExitFailed;
  }
  std::cerr << "testpool template: unknown subcommand '" << sub << "'\n" << kTemplateUsage;
  return kExitUsage;
}

}  // namespace testpool::cli
