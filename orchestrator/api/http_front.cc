#include "orchestrator/api/http_front.h"

#include <netdb.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

// clang-format off
#include <utility>  // Boost 1.74's Asio uses std::exchange without including <utility>
#include <boost/asio.hpp>
// clang-format on

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <optional>

#include "orchestrator/api/errors.h"
#include "orchestrator/api/handlers.h"
#include "orchestrator/util/log.h"

namespace testpool::api {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

// 20 CI workers connecting at the same moment must not lose SYNs to a short queue (each lost one
// costs its client a 1 s retransmit); the kernel caps it at net.core.somaxconn.
constexpr int kListenBacklog = 1024;
constexpr std::size_t kReadChunk = 16u << 10;
// How often the I/O thread looks for connections past their deadline.
constexpr std::chrono::milliseconds kSweepInterval{250};

// The numeric host and port of an address, spelled as cpp-httplib spells them in a Request (and
// as ClientProbe looks for them).
void Describe(const sockaddr_storage& addr, socklen_t len, std::string* host, int* port) {
  char h[NI_MAXHOST], s[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&addr), len, h, sizeof h, s, sizeof s,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
    *host = h;
    *port = std::atoi(s);
  }
}

int Millis(Clock::duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return static_cast<int>(std::clamp<decltype(ms)>(ms, 0, 1 << 30));
}

// One client connection. While it waits for a request head it belongs to the I/O thread; while a
// worker handles a request it belongs to that worker (the hand-over is a post, never shared).
struct Conn {
  Conn(tcp::socket s, std::atomic<std::size_t>& live) : socket(std::move(s)), live_(live) {
    live_.fetch_add(1);
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getsockname(socket.native_handle(), reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      Describe(a, len, &local_ip, &local_port);
    }
    len = sizeof a;
    if (::getpeername(socket.native_handle(), reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      Describe(a, len, &remote_ip, &remote_port);
    }
  }
  ~Conn() { live_.fetch_sub(1); }

  std::size_t Unread() const { return in.size() - pos; }
  // Index just past the blank line that ends the request head starting at `pos`; npos while
  // the head is incomplete. A search resumes where the last one stopped (a head trickling in
  // byte by byte costs linear time, not quadratic).
  std::size_t HeadEnd() {
    if (head_end != std::string::npos && head_end > pos) return head_end;
    const std::size_t from = std::max(pos, scanned < 3 ? 0 : scanned - 3);
    const std::size_t at = in.find("\r\n\r\n", from);
    if (at == std::string::npos) {
      scanned = in.size();
      return at;
    }
    head_end = scanned = at + 4;
    return head_end;
  }
  // Drops consumed bytes (all of them when nothing is left unread, else when they are many).
  void Compact() {
    if (pos == in.size()) {
      in.clear();
      pos = scanned = 0;
      head_end = std::string::npos;
    } else if (pos > (256u << 10)) {
      in.erase(0, pos);
      scanned = scanned > pos ? scanned - pos : 0;
      head_end = head_end != std::string::npos && head_end > pos ? head_end - pos : std::string::npos;
      pos = 0;
    }
  }

  tcp::socket socket;
  std::string local_ip, remote_ip;
  int local_port = -1, remote_port = -1;
  std::string in;            // bytes received; those before `pos` are consumed
  std::size_t pos = 0;
  std::size_t scanned = 0;   // HeadEnd() searched up to here
  std::size_t head_end = std::string::npos;  // the last head end HeadEnd() found
  // I/O thread only:
  Clock::time_point since;   // waiting since (idle), or first byte of the head (head_started)
  bool head_started = false;
  bool expired = false;      // the sweep closed it: its deadline passed
  bool waiting = false;      // in Impl::waiting (at `place`)
  std::list<std::shared_ptr<Conn>>::iterator place;
  std::array<char, kReadChunk> chunk{};

 private:
  std::atomic<std::size_t>& live_;
};

// The stream cpp-httplib parses one request from and writes its answer to: the connection's
// buffered bytes first, then the socket, with the body's minimum rate and the I/O timeout.
class RequestStream final : public httplib::Stream {
 public:
  RequestStream(Conn& c, const HttpLimits& limits) : c_(c), limits_(limits), start_(Clock::now()) {}

  bool is_readable() const override { return c_.Unread() > 0; }
  bool is_writable() const override { return !failed_; }

  ssize_t read(char* ptr, std::size_t size) override {
    if (c_.Unread() == 0 && !Fill()) return failed_ ? -1 : 0;
    const std::size_t n = std::min(size, c_.Unread());
    std::memcpy(ptr, c_.in.data() + c_.pos, n);
    c_.pos += n;
    consumed_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    std::size_t done = 0;
    while (done < size && !failed_) {
      ssize_t n = ::send(c_.socket.native_handle(), ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (!Wait(POLLOUT, Clock::now() + limits_.io_timeout)) failed_ = true;
      } else {
        failed_ = true;
      }
    }
    return failed_ ? -1 : static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.remote_ip;
    port = c_.remote_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.local_ip;
    port = c_.local_port;
  }
  // Debian's cpp-httplib is built for poll(): it does not refuse descriptors past FD_SETSIZE.
  socket_t socket() const override { return c_.socket.native_handle(); }

  std::size_t consumed() const { return consumed_; }
  bool failed() const { return failed_; }

 private:
  // Reads more bytes from the socket into the (fully consumed) buffer. False at the end of the
  // stream (the client closed), or on an error or a deadline (failed_).
  bool Fill() {
    c_.Compact();
    // The body's deadline: a grace of head_timeout, plus a second per body_min_rate bytes.
    const auto deadline = start_ + limits_.head_timeout +
                          std::chrono::seconds(received_ / std::max<std::size_t>(limits_.body_min_rate, 1));
    if (!Wait(POLLIN, std::min(deadline, Clock::now() + limits_.io_timeout))) {
      failed_ = true;
      return false;
    }
    const std::size_t old = c_.in.size();
    c_.in.resize(old + kReadChunk);
    ssize_t n;
    do {
      n = ::recv(c_.socket.native_handle(), c_.in.data() + old, kReadChunk, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    c_.in.resize(old + static_cast<std::size_t>(std::max<ssize_t>(n, 0)));
    if (n <= 0) failed_ = n < 0;
    received_ += static_cast<std::size_t>(std::max<ssize_t>(n, 0));
    return n > 0;
  }

  // Waits until the socket is ready for `events` or `deadline` passes.
  bool Wait(short events, Clock::time_point deadline) {
    for (;;) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return false;
      pollfd p{c_.socket.native_handle(), events, 0};
      int r = ::poll(&p, 1, Millis(left));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) return false;
    }
  }

  Conn& c_;
  const HttpLimits& limits_;
  const Clock::time_point start_;
  std::size_t consumed_ = 0;
  std::size_t received_ = 0;
  bool failed_ = false;
};

std::size_t OpenFileCap(std::size_t wanted) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return wanted;
  return std::max<std::size_t>(16, std::min<std::size_t>(wanted, r.rlim_cur / 2));
}

}  // namespace

struct HttpFront::Impl {
  Impl(HttpLimits l, Process p) : limits(l), process(std::move(p)) {
    limits.max_connections = OpenFileCap(limits.max_connections);
  }

  // ---- I/O thread ------------------------------------------------------------------------------

  void Accept() {
    acceptor.async_accept([this](boost::system::error_code ec, tcp::socket s) {
      if (stopping.load()) return;
      if (ec) {
        if (ec == asio::error::operation_aborted) return;
        // Out of descriptors (EMFILE/ENFILE) or a transient error: try again shortly, not in a loop.
        // Closing the connection waiting longest frees a descriptor for the next try.
        log::Warn("http.accept_failed", {{"error", ec.message()}});
        Evict();
        retry.expires_after(std::chrono::milliseconds(100));
        retry.async_wait([this](boost::system::error_code e) {
          if (!e) Accept();
        });
        return;
      }
      boost::system::error_code ignored;
      s.set_option(tcp::no_delay(true), ignored);  // small answers: no Nagle delay
      auto c = std::make_shared<Conn>(std::move(s), live);
      if (live.load() > limits.max_connections && !Evict()) {
        log::Warn("http.connection_refused", {{"reason", "every connection has a request in progress"},
                                             {"max_connections", std::to_string(limits.max_connections)}});
        c->socket.close(ignored);
      } else {
        Wait(c);
      }
      Accept();
    });
  }

  // Closes the connection that has been waiting longest, to make room. False when none waits.
  bool Evict() {
    if (waiting_list.empty()) return false;
    std::shared_ptr<Conn> oldest = waiting_list.front();
    log::Debug("http.connection_evicted", {{"remote", oldest->remote_ip + ":" + std::to_string(oldest->remote_port)}});
    Leave(*oldest);
    boost::system::error_code ignored;
    oldest->socket.close(ignored);  // its pending read ends with an error and drops it
    return true;
  }

  void Leave(Conn& c) {
    if (!c.waiting) return;
    waiting_list.erase(c.place);
    c.waiting = false;
  }

  // Holds `c` until a whole request head is buffered, then hands it to a worker.
  void Wait(const std::shared_ptr<Conn>& c) {
    if (!c->waiting) {
      c->place = waiting_list.insert(waiting_list.end(), c);
      c->waiting = true;
      c->since = Clock::now();
      c->head_started = false;
    }
    const std::size_t end = c->HeadEnd();
    if (end != std::string::npos || c->Unread() > limits.max_head_bytes) {
      Leave(*c);
      if (end == std::string::npos || end - c->pos > limits.max_head_bytes) {
        Refuse(*c, 431, "Request Header Fields Too Large", ErrorCode::kInvalidArgument,
               "request head (request line and headers) larger than " + std::to_string(limits.max_head_bytes >> 10) +
                   " KiB");
        return;
      }
      serving.fetch_add(1);
      asio::post(*workers, [this, c] {
        Serve(c);
        serving.fetch_sub(1);
      });
      return;
    }
    if (c->Unread() > 0 && !c->head_started) {
      c->head_started = true;
      c->since = Clock::now();
    }
    c->socket.async_read_some(asio::buffer(c->chunk), [this, c](boost::system::error_code ec, std::size_t n) {
      if (!ec) {
        c->Compact();
        c->in.append(c->chunk.data(), n);
      }
      // `expired` also when the read completed just before the sweep cancelled it: the deadline
      // passed all the same, and no later sweep would cancel the next read.
      if (!ec && !stopping.load() && !c->expired) {
        Wait(c);
        return;
      }
      const bool timed_out = c->expired;
      Leave(*c);
      if (timed_out && c->Unread() > 0) {
        Refuse(*c, 408, "Request Timeout", ErrorCode::kTimeout,
               "request head not complete within " + std::to_string(limits.head_timeout.count()) + " s");
      }
      // Otherwise: the client closed, an error, idle too long, evicted, or stopping. `c` goes.
    });
  }

  // Reads and drops what the client still sends after its answer, until it closes, for at most
  // head_timeout (the sweep cuts it), then closes.
  void Drain(const std::shared_ptr<Conn>& c) {
    if (stopping.load()) return;
    if (!c->waiting) {
      c->place = waiting_list.insert(waiting_list.end(), c);
      c->waiting = true;
      c->since = Clock::now();
      c->head_started = true;  // swept at head_timeout
      c->expired = false;
    }
    c->socket.async_read_some(asio::buffer(c->chunk), [this, c](boost::system::error_code ec, std::size_t) {
      if (!ec && !stopping.load() && !c->expired) {
        Drain(c);
        return;
      }
      Leave(*c);  // closed by the client, swept, evicted, or stopping: `c` goes
    });
  }

  // Every kSweepInterval: cancels the reads of connections past their deadline.
  void Sweep() {
    sweep.expires_after(kSweepInterval);
    sweep.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping.load()) return;
      const auto now = Clock::now();
      for (const std::shared_ptr<Conn>& c : waiting_list) {
        const auto limit = c->head_started ? limits.head_timeout : limits.idle_timeout;
        if (!c->expired && now - c->since > limit) {
          c->expired = true;
          boost::system::error_code ignored;
          c->socket.cancel(ignored);
        }
      }
      Sweep();
    });
  }

  // Answers with the API's error shape and closes (best effort: one non-blocking send).
  void Refuse(Conn& c, int status, const char* reason, ErrorCode code, const std::string& message) {
    log::Info("http.refused", {{"status", std::to_string(status)}, {"reason", message},
                               {"remote", c.remote_ip + ":" + std::to_string(c.remote_port)}});
    const std::string body = Dump(ErrorBody(Error(code, message)));
    const std::string answer = "HTTP/1.1 " + std::to_string(status) + " " + reason +
                               "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
                               "\r\nConnection: close\r\n\r\n" + body;
    (void)::send(c.socket.native_handle(), answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    boost::system::error_code ignored;
    c.socket.shutdown(tcp::socket::shutdown_both, ignored);
    c.socket.close(ignored);
  }

  void StopOnIoThread() {
    boost::system::error_code ignored;
    acceptor.close(ignored);
    retry.cancel();
    sweep.cancel();
    while (!waiting_list.empty()) {
      std::shared_ptr<Conn> c = waiting_list.front();
      Leave(*c);
      c->socket.close(ignored);
    }
    work.reset();
  }

  // ---- workers -----------------------------------------------------------------------------------

  // Handles the requests buffered in `c`, one after the other, then gives it back to the I/O
  // thread to wait for the next one (or closes it).
  void Serve(const std::shared_ptr<Conn>& c) {
    for (;;) {
      const std::size_t head_start = c->pos;
      const std::size_t head_len = c->HeadEnd() - head_start;
      std::optional<std::size_t> body_len;  // none: not known (chunked, or a malformed length)
      RequestStream stream(*c, limits);
      bool closed = false;
      const bool ok = process(stream, stopping.load(), closed, [&body_len](httplib::Request& req) {
        if (req.has_header("Transfer-Encoding")) return;
        if (!req.has_header("Content-Length")) {
          body_len = 0;
          return;
        }
        try {
          std::size_t used = 0;
          const std::string v = req.get_header_value("Content-Length");
          const unsigned long long n = std::stoull(v, &used);
          if (used == v.size()) body_len = static_cast<std::size_t>(n);
        } catch (const std::exception&) {
        }
      });
      if (!ok || stream.failed()) {
        Close(c);
        return;
      }
      // Reusable only when the request was read to its exact end: otherwise what follows in the
      // stream is the rest of a body, not a request. Its answer must still reach a client that
      // is busy sending that body, so the rest is read and dropped for a while (a lingering
      // close, RFC 9112 §9.6) instead of resetting the connection under the client.
      if (!body_len || stream.consumed() != head_len + *body_len) {
        ::shutdown(c->socket.native_handle(), SHUT_WR);
        asio::post(io, [this, c] { Drain(c); });
        return;
      }
      if (closed || stopping.load()) {
        Close(c);
        return;
      }
      c->Compact();
      if (c->HeadEnd() == std::string::npos || c->Unread() > limits.max_head_bytes) break;  // pipelined: go on
    }
    asio::post(io, [this, c] {
      if (stopping.load()) return;  // `c` goes
      c->expired = false;
      Wait(c);
    });
  }

  void Close(const std::shared_ptr<Conn>& c) {
    ::shutdown(c->socket.native_handle(), SHUT_RDWR);
    // The socket object is the I/O thread's to destroy (it is registered with its reactor).
    asio::post(io, [c] {});
  }

  std::atomic<std::size_t> live{0};  // open connections (first: a Conn may outlive the rest of Impl in `io`)
  HttpLimits limits;
  const Process process;
  asio::io_context io;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  tcp::acceptor acceptor{io};
  asio::steady_timer retry{io}, sweep{io};
  std::optional<asio::thread_pool> workers;  // created by Run()
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> serving{0};  // connections handed to a worker (a request in progress)
  std::list<std::shared_ptr<Conn>> waiting_list;  // I/O thread only: waiting for a head, oldest first
};

HttpFront::HttpFront(HttpLimits limits, Process process)
    : impl_(std::make_unique<Impl>(std::move(limits), std::move(process))) {}

HttpFront::~HttpFront() { Stop(); }

int HttpFront::Bind(const std::string& host, int port) {
  Impl& m = *impl_;
  auto fail = [&](const std::string& why) {
    return Error(ErrorCode::kUnavailable, "cannot listen on " + host + ":" + std::to_string(port) + " (" + why +
                                              "); pick another with --listen");
  };
  boost::system::error_code ec;
  tcp::resolver resolver(m.io);
  auto endpoints = resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || endpoints.empty()) throw fail(ec ? ec.message() : "no address");
  std::string why;
  for (const auto& e : endpoints) {
    boost::system::error_code step;
    m.acceptor.open(e.endpoint().protocol(), step);
    if (!step) m.acceptor.set_option(tcp::acceptor::reuse_address(true), step);
    if (!step) m.acceptor.bind(e.endpoint(), step);
    if (!step) m.acceptor.listen(kListenBacklog, step);
    if (!step) return m.acceptor.local_endpoint().port();
    why = step.message();
    boost::system::error_code ignored;
    m.acceptor.close(ignored);
  }
  throw fail(why);
}

void HttpFront::Run() {
  Impl& m = *impl_;
  m.workers.emplace(m.limits.workers);
  if (!m.stopping.load() && m.acceptor.is_open()) {
    m.Accept();
    m.Sweep();
  }
  m.io.run();
  m.workers->join();  // requests in progress finish; their connections close (stopping)
}

void HttpFront::Stop() {
  Impl& m = *impl_;
  if (m.stopping.exchange(true)) return;
  asio::post(m.io, [&m] { m.StopOnIoThread(); });
}

const HttpLimits& HttpFront::limits() const { return impl_->limits; }

std::size_t HttpFront::InProgress() const { return impl_->serving.load(); }

}  // namespace testpool::api
