// What the local backend needs from the host besides processes: PostgreSQL's server programs,
// free TCP ports, and the small files under its state directory, written safely.
//
// Thread safety: every function may be called from any thread.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "orchestrator/backend/process_util.h"

namespace testpool::backend {

// True when `dir` holds executable `initdb` and `postgres`.
bool HasServerBinaries(const std::filesystem::path& dir);

// `configured` when set (it must hold the programs), else `pg_config --bindir` (when pg_config
// exists and its answer holds them), else the highest /usr/lib/postgresql/N/bin that does.
// Throws Error(kBackend) saying where it looked and what to install or set.
std::filesystem::path FindServerBinaries(const std::filesystem::path& configured);

// Ports testpool picks for the servers it starts: below the kernel's ephemeral range
// (32768-60999), because a port polled there can connect to itself (and then block the
// server's bind for a minute).
inline constexpr int kServerPortLow = 20000;
inline constexpr int kServerPortHigh = 32767;

// The settings every server testpool starts runs with (before the user's own, which override
// them): test data need no durability (fsync, synchronous_commit and full-page writes off), many
// connections, the log on stderr with a prefix naming process, user and database.
std::vector<std::pair<std::string, std::string>> TestServerSettings();

// True when nothing listens on 127.0.0.1:`port` (checked by binding it, with SO_REUSEADDR as
// postgres does). A port can still be taken between this check and its use.
bool PortIsFree(int port);
// A random free port in [low, high]; 0 when 200 tries found none.
int PickFreePort(int low, int high);

// The file's content without trailing newlines and spaces; nullopt when it cannot be read.
std::optional<std::string> ReadTrimmed(const std::filesystem::path& path);
// The decimal integer `text`, nothing else; nullopt otherwise.
std::optional<int> ParseInt(std::string_view text);

// Replaces `path` with `content` (mode `mode`) through a fresh temporary file and rename(2): never
// follows a link planted in a directory another user owns, and readers see the old content or the
// new, never half. Throws Error(kBackend) naming the file.
void WriteFileAtomically(const std::filesystem::path& path, const std::string& content, mode_t mode);

// Creates `dir` with `mode` if missing and, when `owner.switch_user`, gives it to that user.
// Throws Error(kBackend) naming the directory.
void MakeDir(const std::filesystem::path& dir, mode_t mode, const RunAs& owner);

}  // namespace testpool::backend
