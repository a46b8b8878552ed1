#include "orchestrator/pg/pool.h"

#include <algorithm>
#include <optional>

namespace testpool::pg {

ConnectionPool::Handle::~Handle() {
  if (pool_ != nullptr) pool_->Release(std::move(conn_));
}

ConnectionPool::ConnectionPool(ConnInfo info, size_t max_idle, std::chrono::seconds connect_timeout,
                               std::function<void(Connection&)> on_open)
    : info_(std::move(info)), max_idle_(max_idle), connect_timeout_(connect_timeout), on_open_(std::move(on_open)) {}

ConnectionPool::Handle ConnectionPool::Acquire() {
  for (;;) {
    std::optional<Connection> conn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (idle_.empty()) break;
      conn.emplace(std::move(idle_.back()));
      idle_.pop_back();
    }
    if (conn->StillOpen()) return Handle(this, std::move(*conn));  // else the server closed it: drop it
  }
  Connection conn = Connection::Open(info_, connect_timeout_);
  if (on_open_) on_open_(conn);
  return Handle(this, std::move(conn));
}

void ConnectionPool::Prefill(size_t count) {
  count = std::min(count, max_idle_);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (idle_.size() >= count) return;
    }
    Connection conn = Connection::Open(info_, connect_timeout_);
    if (on_open_) on_open_(conn);
    Release(std::move(conn));
  }
}

void ConnectionPool::Release(Connection conn) {
  // A moved-from handle holds a moved-from connection: IsOk() is false and it is dropped.
  if (!conn.IsOk()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < max_idle_) idle_.push_back(std::move(conn));
}

}  // namespace testpool::pg
