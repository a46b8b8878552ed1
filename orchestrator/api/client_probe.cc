#include "orchestrator/api/client_probe.h"

#include <dirent.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>

namespace testpool::api {
namespace {

// The numeric host and port of an address, as cpp-httplib spells them in a Request.
bool Describe(const sockaddr_storage& addr, socklen_t len, std::string* host, int* port) {
  char h[NI_MAXHOST], s[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, h, sizeof h, s, sizeof s,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return false;
  }
  *host = h;
  *port = std::atoi(s);
  return true;
}

}  // namespace

ClientProbe::ClientProbe(const httplib::Request& req)
    : local_addr_(req.local_addr),
      remote_addr_(req.remote_addr),
      local_port_(req.local_port),
      remote_port_(req.remote_port) {}

int ClientProbe::Find() const {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return -1;
  int found = -1;
  while (const dirent* e = ::readdir(dir)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir)) continue;
    struct stat st {};
    if (::fstat(static_cast<int>(fd), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &local_len) != 0 ||
        ::getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) {
      continue;  // not connected (a listening socket, say)
    }
    std::string lh, ph;
    int lp = -1, pp = -1;
    if (Describe(peer, peer_len, &ph, &pp) && pp == remote_port_ && ph == remote_addr_ &&
        Describe(local, local_len, &lh, &lp) && lp == local_port_ && lh == local_addr_) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(dir);
  return found;
}

bool ClientProbe::Gone() {
  if (fd_ == -2) fd_ = Find();
  if (fd_ < 0) return false;
  char byte;
  const ssize_t n = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0)
    return false;           // more bytes from the client (a pipelined request): still
                            // there
  if (n == 0) return true;  // it closed its side: nobody reads our answer
  return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;  // reset, or worse
}

}  // namespace testpool::api
