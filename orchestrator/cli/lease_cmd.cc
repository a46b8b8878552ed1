// `testpool lease|renew|release|reset|checkpoint|status`: thin clients of /v1/templates/{name}/leases,
// /v1/leases/{id}… and /v1/status.
#include <boost/program_options.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>

#include "orchestrator/cli/cli.h"
#include "orchestrator/cli/client.h"
#include "orchestrator/cli/command.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace testpool::cli {
namespace {

const char* kLeaseUsage = R"(usage:
  testpool lease NAME [--ttl S] [--wait S] [--holder H] [--json]   prints the DSN (or the whole lease)
  testpool renew ID [--ttl S] [--json]
  testpool release ID
  testpool reset ID [--to CHECKPOINT] [--json]
  testpool checkpoint ID NAME [--json]
  testpool status [--json]
)";

// The command's own arguments (argv[0] is its name).
std::vector<std::string> OwnArgs(int argc, char** argv) { return std::vector<std::string>(argv + 1, argv + argc); }

int Usage(const std::string& command, const std::string& problem) { return cli::Usage(command, problem, kLeaseUsage); }

int LeaseBody(int argc, char** argv) {
  po::options_description opts("testpool lease options");
  opts.add_options()("help,h", "show this help")
      ("name", po::value<std::string>(), "template name")
      ("ttl", po::value<int>(), "seconds until the lease expires unless renewed (daemon default 600)")
      ("wait", po::value<int>(), "seconds to wait for a free database (daemon default 30)")
      ("holder", po::value<std::string>(), "who holds the lease, shown in status (a CI worker's name)")
      ("json", "print the whole lease as JSON");
  po::variables_map vm = ParseArgs(OwnArgs(argc, argv), opts, "name");
  if (vm.count("help")) {
    std::cout << kLeaseUsage << opts;
    return kExitOk;
  }
  if (!vm.count("name")) return Usage("lease", "NAME is required");
  json body = json::object();
  if (vm.count("ttl")) body["ttl_s"] = vm["ttl"].as<int>();
  if (vm.count("wait")) body["wait_s"] = vm["wait"].as<int>();
  if (vm.count("holder")) body["holder"] = vm["holder"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Post("/v1/templates/" + PathSegment(vm["name"].as<std::string>()) + "/leases", body);
  if (r.status != 201 || !r.body.is_object()) return Failed("lease", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::cout << Str(r.body, "dsn") << "\n";
  }
  return kExitOk;
}

int RenewBody(int argc, char** argv) {
  po::options_description opts("testpool renew options");
  opts.add_options()("help,h", "show this help")
      ("id", po::value<std::string>(), "lease id")
      ("ttl", po::value<int>(), "the lease then expires this many seconds from now (default 600)")
      ("json", "print the whole lease as JSON");
  po::variables_map vm = ParseArgs(OwnArgs(argc, argv), opts, "id");
  if (vm.count("help")) {
    std::cout << kLeaseUsage << opts;
    return kExitOk;
  }
  if (!vm.count("id")) return Usage("renew", "ID is required");
  json body = json::object();
  if (vm.count("ttl")) body["ttl_s"] = vm["ttl"].as<int>();
  const std::string id = vm["id"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Post("/v1/leases/" + PathSegment(id) + "/renew", body);
  if (r.status != 200 || !r.body.is_object()) return Failed("renew", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::printf("lease %s expires at %s\n", id.c_str(), Str(r.body, "expires_at").c_str());
  }
  return kExitOk;
}

int ReleaseBody(int argc, char** argv) {
  po::options_description opts("testpool release options");
  opts.add_options()("help,h", "show this help")("id", po::value<std::string>(), "lease id");
  po::variables_map vm = ParseArgs(OwnArgs(argc, argv), opts, "id");
  if (vm.count("help")) {
    std::cout << kLeaseUsage << opts;
    return kExitOk;
  }
  if (!vm.count("id")) return Usage("release", "ID is required");
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Delete("/v1/leases/" + PathSegment(vm["id"].as<std::string>()));
  if (r.status != 204) return Failed("release", r);
  return kExitOk;
}

int ResetBody(int argc, char** argv) {
  po::options_description opts("testpool reset options");
  opts.add_options()("help,h", "show this help")("id", po::value<std::string>(), "lease id")
      ("to", po::value<std::string>(), "a checkpoint of the lease to go back to (default: the template)")
      ("json", "print the whole lease as JSON");
  po::variables_map vm = ParseArgs(OwnArgs(argc, argv), opts, "id");
  if (vm.count("help")) {
    std::cout << kLeaseUsage << opts;
    return kExitOk;
  }
  if (!vm.count("id")) return Usage("reset", "ID is required");
  const std::string id = vm["id"].as<std::string>();
  json body = json::object();
  if (vm.count("to")) body["to"] = vm["to"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Post("/v1/leases/" + PathSegment(id) + "/reset", body);
  if (r.status != 200 || !r.body.is_object()) return Failed("reset", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else if (vm.count("to")) {
    std::printf("lease %s: database %s is back at checkpoint %s\n", id.c_str(), Str(r.body, "database").c_str(),
                vm["to"].as<std::string>().c_str());
  } else {
    std::printf("lease %s: database %s is back at template %s (%s)\n", id.c_str(), Str(r.body, "database").c_str(),
                Str(r.body, "template").c_str(), Str(r.body, "hash").substr(0, 12).c_str());
  }
  return kExitOk;
}

int CheckpointBody(int argc, char** argv) {
  po::options_description opts("testpool checkpoint options");
  opts.add_options()("help,h", "show this help")("id", po::value<std::string>(), "lease id")
      ("name", po::value<std::string>(), "the checkpoint's name (A-Z a-z 0-9 _ . : -, up to 64)")
      ("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(OwnArgs(argc, argv), opts, "id", "name");
  if (vm.count("help")) {
    std::cout << kLeaseUsage << opts;
    return kExitOk;
  }
  if (!vm.count("id") || !vm.count("name")) return Usage("checkpoint", "ID and NAME are required");
  const std::string id = vm["id"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Post("/v1/leases/" + PathSegment(id) + "/checkpoints", {{"name", vm["name"].as<std::string>()}});
  if (r.status != 201 || !r.body.is_object()) return Failed("checkpoint", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::printf("lease %s: checkpoint %s saved (%s mode, %.1f ms); restore it with `testpool reset %s --to %s`\n",
                id.c_str(), Str(r.body, "name").c_str(), Str(r.body, "mode").c_str(), r.body.value("ms", 0.0),
                id.c_str(), Str(r.body, "name").c_str());
  }
  return kExitOk;
}

int Int(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? it->get<int>() : 0;
}

void PrintStatus(const json& status) {
  const json pools = status.value("pools", json::array());
  size_t width = 8;
  for (const auto& p : pools) width = std::max(width, Str(p, "template").size() + 6);
  const int w = static_cast<int>(width);
  std::printf("%-*s %-12s %5s %6s %7s %9s %6s %7s %4s %4s\n", w, "TEMPLATE", "HASH", "READY", "LEASED", "WARMING",
              "RECYCLING", "BROKEN", "WAITING", "MIN", "MAX");
  for (const auto& p : pools) {
    // An old hash of a template drains: no new leases, its slots go as they are released.
    std::string name = Str(p, "template") + (p.value("current", true) ? "" : " (old)");
    std::printf("%-*s %-12s %5d %6d %7d %9d %6d %7d %4d %4d\n", w, name.c_str(), Str(p, "hash").substr(0, 12).c_str(),
                Int(p, "ready"), Int(p, "leased"), Int(p, "warming"), Int(p, "recycling"), Int(p, "broken"),
                Int(p, "waiting"), Int(p, "min_ready"), Int(p, "max"));
  }
  if (pools.empty()) std::printf("(no pools yet: create a template with `testpool template create`)\n");
  const json c = status.value("counters", json::object());
  auto n = [&c](const char* key) { return c.value(key, uint64_t{0}); };
  std::printf("\ndatabases %d of %d\n", Int(status, "databases"), Int(status, "max_databases"));
  std::printf("leases    granted %llu, released %llu, expired %llu, exhausted %llu\n",
              static_cast<unsigned long long>(n("leases_granted")), static_cast<unsigned long long>(n("leases_released")),
              static_cast<unsigned long long>(n("leases_expired")), static_cast<unsigned long long>(n("leases_exhausted")));
  std::printf("recycles  clone %llu, skip %llu; resets %llu; broken slots %llu\n",
              static_cast<unsigned long long>(n("recycles_cloned")), static_cast<unsigned long long>(n("recycles_skipped")),
              static_cast<unsigned long long>(n("resets")), static_cast<unsigned long long>(n("slots_broken")));
  const json wait = c.value("lease_wait", json::object()), recycle = c.value("recycle", json::object());
  std::printf("timings   lease wait %.1f ms mean over %llu; recycle %.1f ms mean over %llu\n", wait.value("mean_ms", 0.0),
              static_cast<unsigned long long>(wait.value("count", uint64_t{0})), recycle.value("mean_ms", 0.0),
              static_cast<unsigned long long>(recycle.value("count", uint64_t{0})));
}

int StatusBody(int argc, char** argv) {
  po::options_description opts("testpool status options");
  opts.add_options()("help,h", "show this help")("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(OwnArgs(argc, argv), opts, nullptr);
  if (vm.count("help")) {
    std::cout << kLeaseUsage << opts;
    return kExitOk;
  }
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Get("/v1/status");
  if (r.status != 200 || !r.body.is_object()) return Failed("status", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    PrintStatus(r.body);
  }
  return kExitOk;
}

}  // namespace

int Lease(int argc, char** argv) { return RunCommand("lease", kLeaseUsage, [&] { return LeaseBody(argc, argv); }); }
int Renew(int argc, char** argv) { return RunCommand("renew", kLeaseUsage, [&] { return RenewBody(argc, argv); }); }
int Release(int argc, char** argv) {
  return RunCommand("release", kLeaseUsage, [&] { return ReleaseBody(argc, argv); });
}
int Reset(int argc, char** argv) { return RunCommand("reset", kLeaseUsage, [&] { return ResetBody(argc, argv); }); }
int Checkpoint(int argc, char** argv) {
  return RunCommand("checkpoint", kLeaseUsage, [&] { return CheckpointBody(argc, argv); });
}
int Status(int argc, char** argv) { return RunCommand("status", kLeaseUsage, [&] { return StatusBody(argc, argv); }); }

}  // namespace testpool::cli
