// GET /metrics: the pools' figures in the Prometheus text exposition format, version 0.0.4.
//
// Every family has its # HELP and # TYPE lines, then its samples `name{label="value",…} value`.
// Counters: testpool_leases_{granted,released,expired,exhausted}_total,
// testpool_recycles_total{mode="clone"|"skip"|"rollback"}, testpool_resets_total,
// testpool_slots_broken_total, testpool_proxy_connections_total,
// testpool_proxy_connections_refused_total, testpool_proxy_sessions_lost_total.
// Gauges: testpool_slots{template,hash,state} (hash: its first 12 hex digits; one sample per state
// warming|ready|leased|recycling|broken), testpool_waiting{template}, testpool_databases,
// testpool_max_databases, testpool_proxy_sessions, testpool_proxy_client_connections.
// Histograms (seconds): testpool_lease_wait_seconds, testpool_recycle_seconds,
// testpool_reset_seconds, with cumulative _bucket{le="…"} samples ending at le="+Inf", _sum and
// _count.
#pragma once

#include <string>
#include <string_view>

#include "orchestrator/core/pool_manager.h"

namespace testpool::api {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4";

// The whole exposition for one status snapshot. Pure: no I/O.
std::string MetricsText(const core::ManagerStatus& status);

// A label value escaped for the format: backslash, double quote and newline as \\, \" and \n.
std::string EscapeLabelValue(std::string_view value);

// A sample value: integers without a fraction, others in the shortest form that reads back
// exactly; "+Inf", "-Inf", "NaN" for the special values.
std::string FormatSampleValue(double value);

}  // namespace testpool::api
