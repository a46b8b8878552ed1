// Whether the HTTP client behind a request is still there, for handlers that
// wait (a lease request may wait up to wait_s for a slot). cpp-httplib (0.11)
// gives a handler no handle on its connection, so the probe finds the
// connection's socket by its addresses (the one socket of this process whose
// local and peer address and port are the request's), once, on first use.
//
// Not thread-safe: one handler thread uses it, while the request is being
// handled (the socket stays open, and so keeps its number, until the handler
// returns).
#pragma once

#include <httplib.h>

#include <string>

namespace testpool::api {

class ClientProbe {
 public:
  explicit ClientProbe(const httplib::Request& req);

  // True once the client closed its connection (an orderly close or a reset).
  // False while it is open, and always when the socket cannot be found (then
  // the request just runs its course). A system call or two; finding the socket
  // (first call only) reads /proc/self/fd.
  bool Gone();

 private:
  int Find() const;

  std::string local_addr_, remote_addr_;
  int local_port_ = -1, remote_port_ = -1;
  int fd_ = -2;  // -2 not looked for yet, -1 not found
};

}  // namespace testpool::api
