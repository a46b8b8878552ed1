#include "orchestrator/backend/local_host.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <random>
#include <system_error>

#include "orchestrator/util/error.h"

namespace testpool::backend {
namespace {

namespace fs = std::filesystem;

Error BackendError(const std::string& message) { return Error(ErrorCode::kBackend, message); }

}  // namespace

std::optional<std::string> ReadTrimmed(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::optional<int> ParseInt(std::string_view text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

void WriteFileAtomically(const fs::path& path, const std::string& content, mode_t mode) {
  const fs::path tmp = path.string() + ".tmp";
  ::unlink(tmp.c_str());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
  bool ok = fd >= 0 && ::fchmod(fd, mode) == 0 &&
            ::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  if (fd >= 0) ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw BackendError("cannot write " + path.string() + ": " + why);
  }
}

void MakeDir(const fs::path& dir, mode_t mode, const RunAs& owner) {
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    throw BackendError("cannot create " + dir.string() + ": " + std::strerror(errno));
  }
  if (owner.switch_user && ::chown(dir.c_str(), owner.uid, owner.gid) != 0) {
    throw BackendError("cannot give " + dir.string() + " to user " + owner.name + ": " + std::strerror(errno));
  }
}

bool HasServerBinaries(const fs::path& dir) {
  return ::access((dir / "initdb").c_str(), X_OK) == 0 && ::access((dir / "postgres").c_str(), X_OK) == 0;
}

fs::path FindServerBinaries(const fs::path& configured) {
  if (!configured.empty()) {
    if (HasServerBinaries(configured)) return configured;
    throw BackendError("bin_dir " + configured.string() +
                       " does not contain the PostgreSQL server programs initdb and postgres; "
                       "point it at the directory that has them (e.g. /usr/lib/postgresql/15/bin)");
  }
  if (const fs::path pg_config = SearchPath("pg_config"); !pg_config.empty()) {
    try {
      Outcome out = RunAndCapture(Command{pg_config, {"--bindir"}, {}, CurrentUser()});
      while (!out.output.empty() && std::isspace(static_cast<unsigned char>(out.output.back()))) out.output.pop_back();
      if (out.ok() && HasServerBinaries(out.output)) return out.output;
    } catch (const Error&) {
      // pg_config is optional: fall through to the well-known location.
    }
  }
  fs::path best;
  int best_version = -1;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::optional<int> version = ParseInt(entry.path().filename().string());
    if (version && *version > best_version && HasServerBinaries(entry.path() / "bin")) {
      best = entry.path() / "bin";
      best_version = *version;
    }
  }
  if (best.empty()) {
    throw BackendError("no PostgreSQL server programs found (looked at `pg_config --bindir` and "
                       "/usr/lib/postgresql/*/bin); install the server package (e.g. apt-get install postgresql) "
                       "or set bin_dir");
  }
  return best;
}

std::vector<std::pair<std::string, std::string>> TestServerSettings() {
  return {{"listen_addresses", "127.0.0.1"}, {"fsync", "off"},
          {"synchronous_commit", "off"},     {"full_page_writes", "off"},
          {"max_connections", "300"},        {"logging_collector", "off"},
          {"log_line_prefix", "%m [%p] %q%u@%d "}};
}

int PickFreePort(int low, int high) {
  std::mt19937 rng(std::random_device{}());
  std::uniform_int_distribution<int> pick(low, high);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int candidate = pick(rng);
    if (PortIsFree(candidate)) return candidate;
  }
  return 0;
}

bool PortIsFree(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // as postgres itself binds
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool free = ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return free;
}

}  // namespace testpool::backend
