// Connections from the proxy to the PostgreSQL server: log in (start-up, SCRAM-SHA-256) and
// send CancelRequests. Coroutines on the proxy's io_context.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "orchestrator/proxy/asio.h"
#include "orchestrator/proxy/codec.h"

namespace testpool::proxy {

// Where the server listens: `host` is a directory (its unix socket .s.PGSQL.<port> is there) or
// a host name or address for TCP.
struct ServerAddress {
  std::string host;
  int port = 5432;
};

struct ServerLogin {
  ServerAddress address;
  std::string user;
  std::string password;
  std::string database;
};

// What the server told the new session at start-up.
struct ServerHello {
  std::vector<std::pair<std::string, std::string>> parameters;  // ParameterStatus, in order
  int32_t pid = 0;
  int32_t key = 0;
};

// Connects, logs in (SCRAM-SHA-256; trust and cleartext are accepted too, md5 is not) and reads
// up to the first ReadyForQuery. Bytes after it stay in `reader`. Throws Error(kUnavailable)
// naming the reason (cannot connect, refused login, the server's FATAL) and Error(kTimeout) past
// `timeout`.
asio::awaitable<Socket> ConnectServer(ServerLogin login, ServerHello* hello, FrameReader* reader,
                                      std::chrono::milliseconds timeout);

// Asks the server to cancel what backend (pid, key) runs. Returns once the server has closed the
// request's connection (it has then signalled the backend), or on an error. Best effort: errors
// are logged only.
asio::awaitable<void> SendCancel(ServerAddress address, int32_t pid, int32_t key);

}  // namespace testpool::proxy
