#include "orchestrator/cli/cli.h"

#include <cstdlib>
#include <iostream>
#include <string>

#include "orchestrator/util/log.h"

namespace testpool::cli {

namespace {

const char* kUsage = R"(testpool — isolated, pre-migrated PostgreSQL databases for parallel tests

usage: testpool <command> [options]

commands:
  serve                         run the daemon (default: embedded local PostgreSQL)
  template create NAME --migrations DIR [--seed FILE]…
  template create --file templates/app.json
  template list | show NAME | drop NAME [--old-only]
  lease NAME [--ttl S] [--wait S] [--holder H] [--json]
                                lease a database; prints its DSN (or the whole lease)
  renew ID [--ttl S]            push the lease's expiry to ttl seconds from now (default 600)
  release ID                    end the lease (a second release is fine)
  reset ID [--to CHECKPOINT]    restore the leased database to its template (or a checkpoint), same DSN
  checkpoint ID NAME            save the leased database's state as NAME, for reset --to NAME
  status [--json]               pools (slots by state, waiting requests) and counters
  run --template NAME [--ttl S] [--wait S] [--holder H] -- CMD [ARG…]
                                lease, run CMD with DATABASE_URL and PG* set, renew while it runs,
                                release whatever happens; exits with CMD's status
  record-pool define NAME (--dsn DSN | --lease ID) --table T --key K [--schema S] [--match COL=V]…
  record-pool list | show NAME | drop NAME
                                rows of a shared table that tests claim one at a time
  claim POOL [--match COL=V]… [--ttl S] [--wait S] [--holder H] [--lease ID] [--json]
                                claim a free matching row; prints the claim id, key and row
  unclaim ID                    end the claim (a second unclaim is fine)
  build RECIPE (--lease ID | --dsn DSN --namespace NS [--lease ID]) [--count N] [--set COL=V]…
        [--seed S] [--json]     fresh domain-valid rows from a recipe; prints the seed, the
                                namespace and per recipe the rows built and the first keys
  namespace drop NS             delete every row built under NS in shared databases
  recipes [--json]              the recipes the daemon loaded
  version

The client commands talk to the daemon at $TESTPOOL_URL (default http://127.0.0.1:7432), with the
bearer token in $TESTPOOL_TOKEN (or the file $TESTPOOL_TOKEN_FILE) when the daemon requires one.
Run `testpool <command> --help` for a command's options.
)";

}  // namespace

int Main(int argc, char** argv) {
  if (const char* level = std::getenv("TESTPOOL_LOG_LEVEL")) {
    log::Level l;
    if (log::ParseLevel(level, &l)) log::SetLevel(l);
  }
  if (argc < 2) {
    std::cerr << kUsage;
    return kExitUsage;
  }
  std::string command = argv[1];
  if (command == "serve") return Serve(argc - 1, argv + 1);
  if (command == "template") return Template(argc - 1, argv + 1);
  if (command == "lease") return Lease(argc - 1, argv + 1);
  if (command == "renew") return Renew(argc - 1, argv + 1);
  if (command == "release") return Release(argc - 1, argv + 1);
  if (command == "reset") return Reset(argc - 1, argv + 1);
  if (command == "checkpoint") return Checkpoint(argc - 1, argv + 1);
  if (command == "status") return Status(argc - 1, argv + 1);
  if (command == "run") return Run(argc - 1, argv + 1);
  if (command == "record-pool") return RecordPool(argc - 1, argv + 1);
  if (command == "claim") return Claim(argc - 1, argv + 1);
  if (command == "unclaim") return Unclaim(argc - 1, argv + 1);
  if (command == "build") return Build(argc - 1, argv + 1);
  if (command == "namespace") return Namespace(argc - 1, argv + 1);
  if (command == "recipes") return Recipes(argc - 1, argv + 1);
  if (command == "version" || command == "--version") {
    std::cout << "testpool " << TESTPOOL_VERSION << "\n";
    return kExitOk;
  }
  if (command == "help" || command == "--help" || command == "-h") {
    std::cout << kUsage;
    return kExitOk;
  }
  std::cerr << "testpool: unknown command '" << command << "'\n\n" << kUsage;
  return kExitUsage;
}

}  // namespace testpool::cli
