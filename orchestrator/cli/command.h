// Pieces every client command shares: argument parsing, the error and usage lines, JSON fields.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchestrator/cli/client.h"

namespace testpool::cli {

// Parses `args` (the command's own arguments) with up to two optional positional arguments
// `positional` and then `second` (nullptr: none). Throws Boost.Program_options errors (RunCommand
// makes them exit 2).
boost::program_options::variables_map ParseArgs(const std::vector<std::string>& args,
                                                const boost::program_options::options_description& opts,
                                                const char* positional, const char* second = nullptr);

// Prints "testpool COMMAND: code: message" for an error reply; returns kExitFailed.
int Failed(const std::string& command, const ApiReply& reply);

// Prints "testpool COMMAND: PROBLEM" and `usage`; returns kExitUsage.
int Usage(const std::string& command, const std::string& problem, const char* usage);

// obj[key] when it is a string, else "".
std::string Str(const nlohmann::json& obj, const char* key);

}  // namespace testpool::cli
