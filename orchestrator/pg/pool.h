// A small thread-safe pool of connections to one database, so a request does not pay for a
// connect (and a SCRAM exchange) each time.
//
// Acquire() hands out an idle connection (one the server has closed meanwhile — a restarted
// server closes them all — is dropped, not handed out) or opens a new one; the handle gives it back when it
// goes out of scope, unless the connection broke (then it is closed) or the pool already keeps
// `max_idle` idle ones. There is no cap on connections in use: callers bound their own
// concurrency. The pool must outlive every handle it gave out.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <vector>

#include "orchestrator/pg/connection.h"

namespace testpool::pg {

class ConnectionPool {
 public:
  class Handle {
   public:
    Handle(ConnectionPool* pool, Connection conn) : pool_(pool), conn_(std::move(conn)) {}
    Handle(Handle&& other) noexcept = default;
    Handle& operator=(Handle&&) = delete;
    Handle(const Handle&) = delete;
    ~Handle();
    Connection& operator*() { return conn_; }
    Connection* operator->() { return &conn_; }

   private:
    ConnectionPool* pool_;
    Connection conn_;
  };

  // `on_open`, when set, runs on every connection the pool opens, before first use (it must not
  // throw).
  ConnectionPool(ConnInfo info, size_t max_idle, std::chrono::seconds connect_timeout = std::chrono::seconds(10),
                 std::function<void(Connection&)> on_open = nullptr);

  // Throws PgError (kUnavailable) when a new connection cannot be opened.
  Handle Acquire();
  // Opens connections until `count` are idle (at most max_idle), so that a burst of callers does
  // not pay for connects (and SCRAM exchanges) all at once. Throws as Acquire().
  void Prefill(size_t count);

  const ConnInfo& conninfo() const { return info_; }

 private:
  void Release(Connection conn);

  const ConnInfo info_;
  const size_t max_idle_;
  const std::chrono::seconds connect_timeout_;
  const std::function<void(Connection&)> on_open_;
  std::mutex mu_;
  std::vector<Connection> idle_;  // guarded by mu_
};

}  // namespace testpool::pg
