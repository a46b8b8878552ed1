#include "bench/chaos_client.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <optional>
#include <random>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "bench/chaos_log.h"
#include "bench/daemon_harness.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/pg/error.h"

namespace testpool::bench::chaos {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

volatile std::sig_atomic_t g_stop = 0;
void OnStop(int) { g_stop = 1; }

bool Stopping() { return g_stop != 0; }

struct Lease {
  std::string id, dsn, database;
  int64_t token = 0;
};

// A failed connect or statement, by kind: the server going away or coming back is expected while
// the driver kills it; credentials refused or a database gone mean the lease was ended under us.
struct DbFailure {
  std::string kind;
  bool lease_gone = false;
};
DbFailure ClassifyDb(const std::string& what) {
  auto has = [&what](const char* s) { return what.find(s) != std::string::npos; };
  if (has("password authentication failed") || has("not permitted to log in") || has("permission denied for database")) {
    return {"db: credentials refused", true};
  }
  if (has("does not exist")) return {"db: database or role does not exist", true};
  if (has("Connection refused") || has("No such file or directory")) return {"db: connection refused", false};
  if (has("starting up") || has("recovery mode") || has("not yet accepting") || has("shutting down")) {
    return {"db: server starting or recovering", false};
  }
  if (has("server closed the connection") || has("terminating connection") || has("no connection to the server") ||
      has("could not receive data") || has("could not send data") || has("connection to server") ||
      has("unexpected postmaster exit")) {
    return {"db: connection lost", false};
  }
  if (has("timeout expired")) return {"db: connect timed out", false};
  return {"db: " + what.substr(0, 80), false};
}

class Client {
 public:
  Client(const ClientOptions& o, EventWriter& log)
      : o_(o), log_(log), rng_(std::random_device{}() ^ static_cast<unsigned>(o.id * 7919)),
        http_(MakeClient(o.port, o.wait + 30s)) {}

  void Loop() {
    log_.Write(At(EventKind::kStart, nullptr));
    for (int n = 0; !Stopping(); ++n) {
      std::optional<Lease> lease = Acquire();
      if (!lease) continue;
      Use(*lease, o_.renew_every > 0 && n % o_.renew_every == o_.id % o_.renew_every);
      Release(*lease);
    }
  }

 private:
  // An event about `lease` (none when null), stamped now unless `t_us` is given.
  static Event At(EventKind kind, const Lease* lease, std::string detail = "", int64_t t0_us = 0, int64_t t_us = 0) {
    Event e;
    e.kind = kind;
    e.t_us = t_us != 0 ? t_us : MonotonicMicros();
    if (lease != nullptr) {
      e.lease = lease->id;
      e.database = lease->database;
      e.token = lease->token;
    }
    e.t0_us = t0_us;
    e.detail = std::move(detail);
    return e;
  }

  void Error(const std::string& kind, const Lease* lease = nullptr) {
    log_.Write(At(EventKind::kError, lease, kind));
  }
  void Violation(const Lease& lease, const std::string& what) {
    log_.Write(At(EventKind::kViolation, &lease, what));
  }

  // A short pause after a failure: 50 ms doubling to 500 ms, jittered; reset by a success.
  void BackOff() {
    std::uniform_int_distribution<int> jitter(0, backoff_ms_ / 2);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms_ + jitter(rng_)));
    backoff_ms_ = std::min(backoff_ms_ * 2, 500);
  }

  std::optional<Lease> Acquire() {
    const json body = {{"ttl_s", o_.ttl.count()}, {"wait_s", o_.wait.count()}, {"holder", "chaos-" + std::to_string(o_.id)}};
    const int64_t t0 = MonotonicMicros();
    auto r = http_->Post("/v1/templates/" + o_.template_name + "/leases", body.dump(), "application/json");
    const int64_t t1 = MonotonicMicros();
    if (!r || r->status != 201) {
      Error("lease: " + Describe(r));
      BackOff();
      return std::nullopt;
    }
    json j = json::parse(r->body, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string() || !j.contains("dsn") ||
        !j["dsn"].is_string() || !j.contains("database") || !j["database"].is_string() || !j.contains("token") ||
        !j["token"].is_number_integer()) {
      Error("lease: malformed 201 answer");
      BackOff();
      return std::nullopt;
    }
    backoff_ms_ = 50;
    Lease l{j["id"].get<std::string>(), j["dsn"].get<std::string>(), j["database"].get<std::string>(),
            j["token"].get<int64_t>()};
    log_.Write(At(EventKind::kGrant, &l, "", t0, t1));
    ttl_base_us_ = t0;
    return l;
  }

  // The marker round trip, retried through a server restart until half the TTL is gone; then the
  // renew (when asked) and the hold. Logs the end of use.
  void Use(const Lease& lease, bool renew) {
    const int64_t give_up_us = ttl_base_us_ + std::chrono::duration_cast<std::chrono::microseconds>(o_.ttl).count() / 2;
    std::string outcome;
    for (int attempt = 0; outcome.empty(); ++attempt) {
      try {
        pg::Connection conn = pg::Connection::Open(lease.dsn, 5s);
        if (MarkerRoundTrip(conn, lease)) {
          if (renew) Renew(lease);
          std::uniform_int_distribution<int> hold(0, static_cast<int>(o_.max_hold.count()));
          std::this_thread::sleep_for(std::chrono::milliseconds(hold(rng_)));  // the holder's work, not a wait
          // Still ours after the hold (a daemon restarted meanwhile must have kept the lease).
          const std::string table = conn.QuoteIdent(kMarkerTable);
          if (conn.Exec("SELECT 1 FROM " + table + " WHERE lease_id = $1", {lease.id}).rows() != 1) {
            Violation(lease, "own marker gone after the hold");
          }
        }
        outcome = "ok";
      } catch (const pg::PgError& e) {
        const DbFailure f = ClassifyDb(e.what());
        if (f.lease_gone) {
          Violation(lease, "lease unusable before it ended (" + f.kind + "): " + std::string(e.what()).substr(0, 160));
          outcome = "gave up: " + f.kind;
        } else {
          Error(f.kind, &lease);
          if (MonotonicMicros() > give_up_us) {
            outcome = "gave up: " + f.kind;
          } else {
            BackOff();
          }
        }
      } catch (const std::exception& e) {  // a result shaped unlike the table's: the template is wrong
        Violation(lease, std::string("marker round trip failed: ") + e.what());
        outcome = "gave up: unexpected error";
      }
    }
    backoff_ms_ = 50;
    log_.Write(At(EventKind::kUsed, &lease, outcome));
  }

  // True when the marker checks passed (violations are logged either way). Throws PgError.
  bool MarkerRoundTrip(pg::Connection& conn, const Lease& lease) {
    const std::string table = conn.QuoteIdent(kMarkerTable);
    pg::Result seen = conn.Exec("SELECT lease_id, client, fencing FROM " + table + " WHERE lease_id <> $1", {kSeedLease});
    bool mine = false, ok = true;
    for (int i = 0; i < seen.rows(); ++i) {
      if (seen.Get(i, 0) == lease.id) {
        mine = true;  // an earlier attempt's INSERT went through before the connection broke
        continue;
      }
      Violation(lease, "marker of lease " + std::string(seen.Get(i, 0)) + " (client " + std::string(seen.Get(i, 1)) +
                           ", token " + std::string(seen.Get(i, 2)) + ") in a freshly leased database");
      ok = false;
    }
    if (!mine) {
      conn.Exec("INSERT INTO " + table + " (lease_id, client, fencing) VALUES ($1, $2, $3)",
                {lease.id, std::to_string(o_.id), std::to_string(lease.token)});
    }
    pg::Result back = conn.Exec("SELECT count(*) FILTER (WHERE lease_id = $1 AND fencing = $2), "
                                "count(*) FILTER (WHERE lease_id <> $3) FROM " + table,
                                {lease.id, std::to_string(lease.token), kSeedLease});
    if (back.Get(0, 0) != "1" || back.Get(0, 1) != "1") {
      Violation(lease, "marker read back: " + std::string(back.Get(0, 0)) + " own, " + std::string(back.Get(0, 1)) +
                           " in all (want 1 and 1)");
      ok = false;
    }
    return ok;
  }

  void Renew(const Lease& lease) {
    const json body = {{"ttl_s", o_.ttl.count()}};
    const int64_t t0 = MonotonicMicros();
    auto r = http_->Post("/v1/leases/" + lease.id + "/renew", body.dump(), "application/json");
    if (r && r->status == 200) {
      ttl_base_us_ = t0;
      log_.Write(At(EventKind::kRenew, &lease, "", t0));
      return;
    }
    const int64_t ttl_us = std::chrono::duration_cast<std::chrono::microseconds>(o_.ttl).count();
    if (r && r->status == 410 && t0 < ttl_base_us_ + ttl_us - 1000000) {
      Violation(lease, "renew answered " + Describe(r) + " within the lease's TTL");
    } else {
      Error("renew: " + Describe(r), &lease);
    }
  }

  // DELETE until 204, through daemon restarts; gives up a minute past the lease's TTL (it has
  // expired by then anyway).
  void Release(const Lease& lease) {
    const int64_t t0 = MonotonicMicros();
    log_.Write(At(EventKind::kReleasing, &lease, "", 0, t0));  // from here the daemon may end it
    const int64_t give_up_us = ttl_base_us_ + std::chrono::duration_cast<std::chrono::microseconds>(o_.ttl + 60s).count();
    for (;;) {
      auto r = http_->Delete("/v1/leases/" + lease.id);
      if (r && r->status == 204) {
        backoff_ms_ = 50;
        log_.Write(At(EventKind::kRelease, &lease, "", t0));
        return;
      }
      Error("release: " + Describe(r), &lease);
      if (MonotonicMicros() > give_up_us) return;
      BackOff();
    }
  }

  const ClientOptions& o_;
  EventWriter& log_;
  std::mt19937 rng_;
  std::unique_ptr<httplib::Client> http_;
  int backoff_ms_ = 50;
  int64_t ttl_base_us_ = 0;  // the current lease's last lease or renew request
};

}  // namespace

int RunClient(const ClientOptions& options) {
  // A driver killed outright (a test's timeout) takes its clients with it.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != options.driver_pid) return 0;  // it died before the line above
  struct sigaction sa {};
  sa.sa_handler = OnStop;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  try {
    EventWriter log(options.log, options.id);
    Client(options, log).Loop();
  } catch (const BenchFailure& e) {
    std::fprintf(stderr, "chaos client %d: %s\n", options.id, e.what());
    return 2;
  }
  return 0;
}

}  // namespace testpool::bench::chaos
