// The `testpool` command line: one binary, the daemon (`serve`) and its client commands.
//
// Exit codes: 0 success; 1 the operation failed (the daemon answered with an error, or the
// daemon could not start); 2 usage error; 3 the daemon could not be reached. `testpool run` exits
// with its command's status instead once the command started (see run_cmd.cc).
#pragma once

namespace testpool::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitUnreachable = 3;

int Main(int argc, char** argv);

// Subcommands; each gets the arguments after its own name.
int Serve(int argc, char** argv);
int Template(int argc, char** argv);
int Lease(int argc, char** argv);
int Renew(int argc, char** argv);
int Release(int argc, char** argv);
int Reset(int argc, char** argv);
int Checkpoint(int argc, char** argv);
int Status(int argc, char** argv);
int Run(int argc, char** argv);
int Claim(int argc, char** argv);       // claim_cmd.cc: record pools
int Unclaim(int argc, char** argv);
int RecordPool(int argc, char** argv);
int Build(int argc, char** argv);       // build_cmd.cc: builders
int Namespace(int argc, char** argv);
int Recipes(int argc, char** argv);

}  // namespace testpool::cli
