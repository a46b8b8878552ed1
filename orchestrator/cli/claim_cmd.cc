// `testpool claim|unclaim` and `testpool record-pool define|list|show|drop`: thin clients of
// /v1/record-pools… and /v1/claims/{id}….
#include <boost/program_options.hpp>
#include <cstdio>
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

const char* kClaimUsage = R"(usage:
  testpool claim POOL [--match COLUMN=VALUE]… [--ttl S] [--wait S] [--holder H] [--lease ID] [--json]
                       prints the claim id, the row's key and the row as JSON, one per line
  testpool unclaim ID  end the claim (a second unclaim is fine)
)";

const char* kRecordPoolUsage = R"(usage:
  testpool record-pool define NAME (--dsn DSN | --lease ID) --table T --key K [--schema S]
                                   [--match COLUMN=VALUE]… [--json]
  testpool record-pool list [--json]
  testpool record-pool show NAME [--json]
  testpool record-pool drop NAME
)";


long long Count(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_number_integer() ? it->get<long long>() : 0;
}

// --match COLUMN=VALUE… → {"COLUMN":"VALUE",…} (the daemon compares as the column's type). Sets
// `problem` and returns null on a malformed one.
json MatchFromOptions(const po::variables_map& vm, std::string* problem) {
  json match = json::object();
  if (!vm.count("match")) return match;
  for (const std::string& kv : vm["match"].as<std::vector<std::string>>()) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      *problem = "--match must be COLUMN=VALUE (got '" + kv + "')";
      return nullptr;
    }
    match[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return match;
}

// "tier=premium, active=true" (or "-").
std::string MatchText(const json& match) {
  std::string out;
  if (match.is_object()) {
    for (const auto& [column, value] : match.items()) {
      if (!out.empty()) out += ", ";
      out += column + "=" + (value.is_string() ? value.get<std::string>() : value.dump());
    }
  }
  return out.empty() ? "-" : out;
}

std::string TargetText(const json& pool) {
  if (!Str(pool, "lease").empty()) return "lease " + Str(pool, "lease");
  return "dsn " + Str(pool, "dsn");
}

void PrintPool(const json& pool) {
  std::printf("record pool %s\n", Str(pool, "name").c_str());
  std::printf("  table    %s.%s (key %s)\n", Str(pool, "schema").c_str(), Str(pool, "table").c_str(),
              Str(pool, "key").c_str());
  std::printf("  match    %s\n", MatchText(pool.value("match", json::object())).c_str());
  std::printf("  target   %s\n", TargetText(pool).c_str());
  std::printf("  rows     %lld: %lld claimed, %lld expired, %lld free\n", Count(pool, "rows"), Count(pool, "claimed"),
              Count(pool, "expired"), Count(pool, "free"));
}

// ---- claim, unclaim ----------------------------------------------------------------------------

int ClaimBody(int argc, char** argv) {
  po::options_description opts("testpool claim options");
  opts.add_options()("help,h", "show this help")
      ("pool", po::value<std::string>(), "record pool name")
      ("match", po::value<std::vector<std::string>>()->composing(),
       "COLUMN=VALUE the row must have, on top of the pool's own match (repeatable)")
      ("ttl", po::value<int>(), "seconds until the claim expires unless renewed (daemon default 300)")
      ("wait", po::value<int>(), "seconds to wait for a free matching row (daemon default 0)")
      ("holder", po::value<std::string>(), "who holds the claim (a CI worker's name)")
      ("lease", po::value<std::string>(), "a lease id: the claim ends when that lease ends")
      ("json", "print the whole claim as JSON");
  po::variables_map vm = ParseArgs(std::vector<std::string>(argv + 1, argv + argc), opts, "pool");
  if (vm.count("help")) {
    std::cout << kClaimUsage << opts;
    return kExitOk;
  }
  if (!vm.count("pool")) return Usage("claim", "POOL is required", kClaimUsage);
  std::string problem;
  json match = MatchFromOptions(vm, &problem);
  if (match.is_null()) return Usage("claim", problem, kClaimUsage);
  json body = json::object();
  if (!match.empty()) body["match"] = match;
  if (vm.count("ttl")) body["ttl_s"] = vm["ttl"].as<int>();
  if (vm.count("wait")) body["wait_s"] = vm["wait"].as<int>();
  if (vm.count("holder")) body["holder"] = vm["holder"].as<std::string>();
  if (vm.count("lease")) body["lease"] = vm["lease"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Post("/v1/record-pools/" + PathSegment(vm["pool"].as<std::string>()) + "/claims", body);
  if (r.status != 201 || !r.body.is_object()) return Failed("claim", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::cout << Str(r.body, "id") << "\n"
              << Str(r.body, "key") << "\n"
              << r.body.value("row", json::object()).dump() << "\n";
  }
  return kExitOk;
}

int UnclaimBody(int argc, char** argv) {
  po::options_description opts("testpool unclaim options");
  opts.add_options()("help,h", "show this help")("id", po::value<std::string>(), "claim id");
  po::variables_map vm = ParseArgs(std::vector<std::string>(argv + 1, argv + argc), opts, "id");
  if (vm.count("help")) {
    std::cout << kClaimUsage << opts;
    return kExitOk;
  }
  if (!vm.count("id")) return Usage("unclaim", "ID is required", kClaimUsage);
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Delete("/v1/claims/" + PathSegment(vm["id"].as<std::string>()));
  if (r.status != 204) return Failed("unclaim", r);
  return kExitOk;
}

// ---- record-pool define|list|show|drop ---------------------------------------------------------

int Define(const std::vector<std::string>& args) {
  po::options_description opts("testpool record-pool define options");
  opts.add_options()("help,h", "show this help")
      ("name", po::value<std::string>(), "record pool name")
      ("dsn", po::value<std::string>(), "the target database (keyword form or postgresql:// URI)")
      ("lease", po::value<std::string>(), "a lease whose database holds the table (the pool goes with the lease)")
      ("schema", po::value<std::string>(), "the table's schema (default public)")
      ("table", po::value<std::string>(), "the table whose rows are claimed")
      ("key", po::value<std::string>(), "a unique column of the table (primary key or single-column unique index)")
      ("match", po::value<std::vector<std::string>>()->composing(),
       "COLUMN=VALUE every claimed row must have (repeatable)")
      ("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(args, opts, "name");
  if (vm.count("help")) {
    std::cout << kRecordPoolUsage << opts;
    return kExitOk;
  }
  const std::string command = "record-pool define";
  if (!vm.count("name")) return Usage(command, "NAME is required", kRecordPoolUsage);
  if (vm.count("dsn") == vm.count("lease")) {
    return Usage(command, "give exactly one of --dsn and --lease", kRecordPoolUsage);
  }
  if (!vm.count("table") || !vm.count("key")) return Usage(command, "--table and --key are required", kRecordPoolUsage);
  std::string problem;
  json match = MatchFromOptions(vm, &problem);
  if (match.is_null()) return Usage(command, problem, kRecordPoolUsage);
  json body = {{"table", vm["table"].as<std::string>()}, {"key", vm["key"].as<std::string>()}, {"match", match}};
  if (vm.count("dsn")) body["dsn"] = vm["dsn"].as<std::string>();
  if (vm.count("lease")) body["lease"] = vm["lease"].as<std::string>();
  if (vm.count("schema")) body["schema"] = vm["schema"].as<std::string>();
  const std::string name = vm["name"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Put("/v1/record-pools/" + PathSegment(name), body);
  if ((r.status != 200 && r.status != 201) || !r.body.is_object()) return Failed(command, r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    std::printf("record pool %s %s: %s.%s (key %s), %lld rows, %lld free\n", name.c_str(),
                r.status == 201 ? "created" : "replaced", Str(r.body, "schema").c_str(), Str(r.body, "table").c_str(),
                Str(r.body, "key").c_str(), Count(r.body, "rows"), Count(r.body, "free"));
  }
  return kExitOk;
}

int List(const std::vector<std::string>& args) {
  po::options_description opts("testpool record-pool list options");
  opts.add_options()("help,h", "show this help")("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(args, opts, nullptr);
  if (vm.count("help")) {
    std::cout << kRecordPoolUsage << opts;
    return kExitOk;
  }
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Get("/v1/record-pools");
  if (r.status != 200 || !r.body.is_object()) return Failed("record-pool list", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
    return kExitOk;
  }
  const json pools = r.body.value("record_pools", json::array());
  std::printf("%-24s %-32s %-16s %7s %7s %7s %7s  %s\n", "NAME", "TABLE", "KEY", "ROWS", "CLAIMED", "EXPIRED", "FREE",
              "MATCH");
  for (const auto& p : pools) {
    std::printf("%-24s %-32s %-16s %7lld %7lld %7lld %7lld  %s\n", Str(p, "name").c_str(),
                (Str(p, "schema") + "." + Str(p, "table")).c_str(), Str(p, "key").c_str(), Count(p, "rows"),
                Count(p, "claimed"), Count(p, "expired"), Count(p, "free"),
                MatchText(p.value("match", json::object())).c_str());
  }
  if (pools.empty()) std::printf("(no record pools yet: define one with `testpool record-pool define`)\n");
  return kExitOk;
}

int Show(const std::vector<std::string>& args) {
  po::options_description opts("testpool record-pool show options");
  opts.add_options()("help,h", "show this help")("name", po::value<std::string>(), "record pool name")
      ("json", "print the daemon's JSON answer");
  po::variables_map vm = ParseArgs(args, opts, "name");
  if (vm.count("help")) {
    std::cout << kRecordPoolUsage << opts;
    return kExitOk;
  }
  if (!vm.count("name")) return Usage("record-pool show", "NAME is required", kRecordPoolUsage);
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Get("/v1/record-pools/" + PathSegment(vm["name"].as<std::string>()));
  if (r.status != 200 || !r.body.is_object()) return Failed("record-pool show", r);
  if (vm.count("json")) {
    std::cout << r.body.dump(2) << "\n";
  } else {
    PrintPool(r.body);
  }
  return kExitOk;
}

int Drop(const std::vector<std::string>& args) {
  po::options_description opts("testpool record-pool drop options");
  opts.add_options()("help,h", "show this help")("name", po::value<std::string>(), "record pool name");
  po::variables_map vm = ParseArgs(args, opts, "name");
  if (vm.count("help")) {
    std::cout << kRecordPoolUsage << opts;
    return kExitOk;
  }
  if (!vm.count("name")) return Usage("record-pool drop", "NAME is required", kRecordPoolUsage);
  const std::string name = vm["name"].as<std::string>();
  ApiClient api(DefaultUrl(), DefaultToken());
  ApiReply r = api.Delete("/v1/record-pools/" + PathSegment(name));
  if (r.status != 204) return Failed("record-pool drop", r);
  std::printf("dropped record pool %s (its claim rows stay in the target database)\n", name.c_str());
  return kExitOk;
}

int RecordPoolBody(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kRecordPoolUsage;
    return kExitUsage;
  }
  const std::string sub = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  if (sub == "define") return Define(args);
  if (sub == "list") return List(args);
  if (sub == "show") return Show(args);
  if (sub == "drop") return Drop(args);
  if (sub == "--help" || sub == "-h" || sub == "help") {
    std::cout << kRecordPoolUsage;
    return kExitOk;
  }
  return Usage("record-pool", "unknown subcommand '" + sub + "'", kRecordPoolUsage);
}

}  // namespace

int Claim(int argc, char** argv) { return RunCommand("claim", kClaimUsage, [&] { return ClaimBody(argc, argv); }); }
int Unclaim(int argc, char** argv) {
  return RunCommand("unclaim", kClaimUsage, [&] { return UnclaimBody(argc, argv); });
}
int RecordPool(int argc, char** argv) {
  return RunCommand("record-pool", kRecordPoolUsage, [&] { return RecordPoolBody(argc, argv); });
}

}  // namespace testpool::cli
