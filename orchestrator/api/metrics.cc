#include "orchestrator/api/metrics.h"

#include <charconv>
#include <cmath>
#include <map>

#include "orchestrator/api/handlers.h"

namespace testpool::api {
namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Builds the exposition one family at a time.
class Exposition {
 public:
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }

  void Sample(std::string_view name, const Labels& labels, double value) {
    out_.append(name);
    if (!labels.empty()) {
      out_.push_back('{');
      for (size_t i = 0; i < labels.size(); ++i) {
        if (i > 0) out_.push_back(',');
        out_.append(labels[i].first).append("=\"").append(EscapeLabelValue(labels[i].second)).append("\"");
      }
      out_.push_back('}');
    }
    out_.push_back(' ');
    out_.append(FormatSampleValue(value)).push_back('\n');
  }

  // A histogram kept in milliseconds, exposed in seconds.
  void Histogram(std::string_view name, std::string_view help, const core::PoolCounters::Histogram& h) {
    Family(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    size_t n = std::min(h.bounds_ms.size(), h.cumulative.size());
    for (size_t i = 0; i < n; ++i) {
      Sample(bucket, {{"le", FormatSampleValue(h.bounds_ms[i] / 1000.0)}}, static_cast<double>(h.cumulative[i]));
    }
    Sample(bucket, {{"le", "+Inf"}}, static_cast<double>(h.count));
    Sample(std::string(name) + "_sum", {}, h.sum_ms / 1000.0);
    Sample(std::string(name) + "_count", {}, static_cast<double>(h.count));
  }

  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

void Counter(Exposition& e, std::string_view name, std::string_view help, uint64_t value) {
  e.Family(name, "counter", help);
  e.Sample(name, {}, static_cast<double>(value));
}

}  // namespace

std::string EscapeLabelValue(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out.push_back(c);
  }
  return out;
}

std::string FormatSampleValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  // Plain decimals ("0.0005", not "5e-04") where they stay short; exponents for the extremes.
  const double magnitude = std::fabs(value);
  const bool plain = magnitude == 0 || (magnitude >= 1e-9 && magnitude < 1e15);
  auto [end, ec] = plain ? std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed)
                         : std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

std::string MetricsText(const core::ManagerStatus& status) {
  const core::PoolCounters& c = status.counters;
  Exposition e;
  Counter(e, "testpool_leases_granted_total", "Leases handed out since the daemon started.", c.leases_granted);
  Counter(e, "testpool_leases_released_total", "Leases ended by their holder.", c.leases_released);
  Counter(e, "testpool_leases_expired_total", "Leases ended by the reaper because their TTL ran out.",
          c.leases_expired);
  Counter(e, "testpool_leases_exhausted_total", "Lease requests refused because nothing was free within wait_s.",
          c.leases_exhausted);
  Counter(e, "testpool_leases_abandoned_total",
          "Lease requests whose client went away while they waited (no slot kept for them).", c.leases_abandoned);
  e.Family("testpool_recycles_total", "counter",
           "Slots made ready again after a lease, by how (clone, skip, or rollback of the pinned transaction).");
  e.Sample("testpool_recycles_total", {{"mode", "clone"}}, static_cast<double>(c.recycles_cloned));
  e.Sample("testpool_recycles_total", {{"mode", "skip"}}, static_cast<double>(c.recycles_skipped));
  e.Sample("testpool_recycles_total", {{"mode", "rollback"}}, static_cast<double>(c.recycles_rolled_back));
  Counter(e, "testpool_resets_total", "Leased databases restored to their template in place.", c.resets);
  Counter(e, "testpool_resets_skipped_total",
          "Clone-mode resets that found nothing written since the clone (sessions ended, no re-clone).",
          c.resets_skipped);
  Counter(e, "testpool_slots_broken_total", "Slots found broken (then destroyed and replaced).", c.slots_broken);

  e.Family("testpool_slots", "gauge", "Slots by template, template hash (first 12 hex digits) and state.");
  std::map<std::string, int> waiting;  // by template: a name's pools (one per hash) summed
  for (const core::PoolStatus& p : status.pools) {
    const std::string hash12 = p.hash.substr(0, 12);
    const std::pair<const char*, int> states[] = {{"warming", p.warming}, {"ready", p.ready}, {"leased", p.leased},
                                                  {"recycling", p.recycling}, {"broken", p.broken}};
    for (const auto& [state, count] : states) {
      e.Sample("testpool_slots", {{"template", p.template_name}, {"hash", hash12}, {"state", state}}, count);
    }
    waiting[p.template_name] += p.waiting;
  }
  e.Family("testpool_waiting", "gauge", "Lease requests queued for a free slot, by template.");
  for (const auto& [name, count] : waiting) e.Sample("testpool_waiting", {{"template", name}}, count);
  e.Family("testpool_databases", "gauge", "Slot databases across all pools.");
  e.Sample("testpool_databases", {}, status.databases);
  e.Family("testpool_max_databases", "gauge", "The cap on slot databases across all pools.");
  e.Sample("testpool_max_databases", {}, status.max_databases);
  e.Family("testpool_draining", "gauge", "1 once the daemon got SIGTERM: it takes no new leases and stops soon.");
  e.Sample("testpool_draining", {}, status.draining ? 1 : 0);

  e.Histogram("testpool_lease_wait_seconds", "Time from a lease request to its grant.", c.wait);
  e.Histogram("testpool_recycle_seconds", "Time from a lease's end to its slot being ready again.", c.recycle);
  e.Histogram("testpool_reset_seconds", "Time to restore a leased database in place (rollback or re-clone).",
              c.reset);
  const core::PinnedSessions::Stats& x = status.proxy;
  e.Family("testpool_proxy_sessions", "gauge", "Pinned server sessions held by the wire proxy (rollback mode).");
  e.Sample("testpool_proxy_sessions", {}, static_cast<double>(x.sessions));
  e.Family("testpool_proxy_client_connections", "gauge", "Client connections open through the wire proxy.");
  e.Sample("testpool_proxy_client_connections", {}, static_cast<double>(x.client_connections));
  Counter(e, "testpool_proxy_connections_total", "Client connections the wire proxy authenticated.",
          x.connections_total);
  Counter(e, "testpool_proxy_connections_refused_total",
          "Client connections the wire proxy refused (unknown lease, wrong password, bad start-up).",
          x.connections_refused);
  Counter(e, "testpool_proxy_sessions_lost_total", "Pinned sessions whose server connection died.", x.sessions_lost);
  return e.Take();
}

void GetMetrics(const Services& s, const httplib::Request&, httplib::Response& res) {
  res.status = 200;
  res.set_content(MetricsText(s.pools.Status()), kMetricsContentType);
}

}  // namespace testpool::api
