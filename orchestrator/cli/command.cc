#include "orchestrator/cli/command.h"

#include <iostream>

#include "orchestrator/cli/cli.h"

namespace testpool::cli {

namespace po = boost::program_options;

po::variables_map ParseArgs(const std::vector<std::string>& args, const po::options_description& opts,
                            const char* positional, const char* second) {
  po::positional_options_description pos;
  if (positional != nullptr) pos.add(positional, 1);
  if (positional != nullptr && second != nullptr) pos.add(second, 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).positional(pos).run(), vm);
  po::notify(vm);
  return vm;
}

int Failed(const std::string& command, const ApiReply& reply) {
  std::cerr << "testpool " << command << ": " << DescribeError(reply) << "\n";
  return kExitFailed;
}

int Usage(const std::string& command, const std::string& problem, const char* usage) {
  std::cerr << "testpool " << command << ": " << problem << "\n" << usage;
  return kExitUsage;
}

std::string Str(const nlohmann::json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

}  // namespace testpool::cli
