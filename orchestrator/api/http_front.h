// The API server's connections: accepting them, waiting for each request's head, and the worker
// threads that parse, route and answer complete requests.
//
// Why not cpp-httplib's own loop: cpp-httplib 0.11 gives a connection a worker thread from accept
// to close, and its read timeout bounds each read, not a request. More slow clients than workers
// (half a request sent, then a byte now and then: slowloris), or many idle keep-alive
// connections, hold every worker, and nobody else is answered. Here one I/O thread (Boost.Asio)
// holds every connection while it is idle or while its request head is arriving, each against a
// deadline; only a connection whose head has arrived whole goes to a worker, which runs
// cpp-httplib's parser and router on it (`process`), reads the body at a minimum rate, writes the
// answer, and gives the connection back (or takes the next pipelined request at once).
//
// What a client meets (HttpLimits gives the figures):
// - idle for `idle_timeout` with no request started: closed quietly;
// - a request head not complete `head_timeout` after its first byte: 408, code `timeout`, closed;
// - a head larger than `max_head_bytes`: 431, code `invalid_argument`, closed;
// - a body arriving slower than `body_min_rate` bytes/s (after a grace of `head_timeout`), or an
//   answer the client does not read for `io_timeout`: the connection is closed;
// - more than `max_connections` connections open: the one waiting longest (idle, or sending a
//   head) is closed to make room; when every connection has a request being handled, the new
//   one is closed.
// A connection is kept for the next request only when its request was read to its exact end
// (a request refused before its body was read, e.g. 401, closes it).
//
// Threading: Bind() then Run() (blocks; it runs the I/O thread and starts the workers) on one
// thread; Stop() from any thread, before or during Run(). Run() returns once every request in
// progress has been answered (a lease waiting for a slot included). `process` runs on the
// workers, concurrently.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

namespace testpool::api {

struct HttpLimits {
  // Requests handled at once. A request that waits (a lease waiting for a slot, a template build)
  // holds one; idle and half-sent connections hold none.
  std::size_t workers = 256;
  std::chrono::seconds idle_timeout{30};  // a kept-alive connection with no request started
  std::chrono::seconds head_timeout{10};  // first byte of a request to the end of its head
  std::size_t max_head_bytes = 64u << 10;  // request line and headers
  std::chrono::seconds io_timeout{60};     // a body read or an answer write with no progress
  std::size_t body_min_rate = 64u << 10;   // bytes/s a body must average after head_timeout
  // Open connections; further capped at half the process's open-file limit (RLIMIT_NOFILE).
  std::size_t max_connections = 4096;
};

class HttpFront {
 public:
  // Handles one request whose head is buffered in `stream` (cpp-httplib's
  // Server::process_request): reads the body, routes, writes the answer. Returns false when the
  // connection cannot be used again; sets `connection_closed` when the client asked to close.
  // `setup` is called with the parsed request before it is routed.
  using Process = std::function<bool(httplib::Stream& stream, bool close_connection, bool& connection_closed,
                                     const std::function<void(httplib::Request&)>& setup)>;

  HttpFront(HttpLimits limits, Process process);
  ~HttpFront();  // Stop(); waits for Run() to return if it runs
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // Binds `host`:`port` (port 0: any free port) and listens. Returns the bound port. Throws
  // Error(kUnavailable) naming the address when it cannot.
  int Bind(const std::string& host, int port);
  // Serves until Stop(). Call after Bind().
  void Run();
  // Stops accepting, closes idle and half-sent connections; requests in progress finish.
  // Idempotent.
  void Stop();

  // Requests being handled by a worker now (read, routed or answered), from any thread.
  std::size_t InProgress() const;

  // The limits in force (max_connections after the open-file cap).
  const HttpLimits& limits() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::api
