#include "orchestrator/cli/cli.h"

int main(int argc, char** argv) { return testpool::cli::Main(argc, argv); }
