#include "bench/chaos_check.h"

#include <algorithm>
#include <cstdio>

namespace testpool::bench::chaos {
namespace {

std::string At(int64_t t_us, int64_t origin_us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "+%.3fs", static_cast<double>(t_us - origin_us) / 1e6);
  return buf;
}

std::string Describe(const GrantRecord& g, int64_t origin_us) {
  return "lease " + g.lease + " (client " + std::to_string(g.client) + ", token " + std::to_string(g.token) +
         ", granted " + At(g.granted_us, origin_us) + ")";
}

}  // namespace

std::vector<GrantRecord> CollectGrants(const std::vector<ClientHistory>& histories) {
  std::vector<GrantRecord> out;
  for (const ClientHistory& h : histories) {
    std::map<std::string, size_t> by_lease;  // index into out, this client's leases
    for (const Event& e : h.events) {
      if (e.kind == EventKind::kGrant) {
        GrantRecord g;
        g.lease = e.lease;
        g.database = e.database;
        g.client = h.client;
        g.token = e.token;
        g.requested_us = e.t0_us;
        g.granted_us = e.t_us;
        g.ttl_base_us = e.t0_us;
        by_lease[e.lease] = out.size();
        out.push_back(g);
        continue;
      }
      auto it = by_lease.find(e.lease);
      if (it == by_lease.end()) continue;
      GrantRecord& g = out[it->second];
      if (e.kind == EventKind::kRenew) g.ttl_base_us = std::max(g.ttl_base_us, e.t0_us);
      if (e.kind == EventKind::kUsed) {
        g.used_us = e.t_us;
        g.used_ok = e.detail == "ok";
      }
      if (e.kind == EventKind::kReleasing && !g.first_delete_us) g.first_delete_us = e.t_us;
      if (e.kind == EventKind::kRelease) {
        if (!g.first_delete_us) g.first_delete_us = e.t0_us;
        g.released = true;
      }
    }
  }
  return out;
}

CheckResult CheckHistories(const std::vector<ClientHistory>& histories, std::chrono::seconds ttl,
                           std::chrono::milliseconds ttl_slack, int64_t t_origin_us) {
  CheckResult r;
  auto problem = [&r](std::string text) {
    if (r.problems.size() < CheckResult::kMaxProblems) r.problems.push_back(std::move(text));
  };
  for (const ClientHistory& h : histories) {
    for (const Event& e : h.events) {
      if (e.kind == EventKind::kError) ++r.errors[e.detail];
      if (e.kind == EventKind::kViolation) {
        ++r.client_violations;
        ++r.violations[e.detail];
        problem("client " + std::to_string(h.client) + " at " + At(e.t_us, t_origin_us) + ", lease " + e.lease +
                " on " + e.database + ": " + e.detail);
      }
    }
  }

  std::vector<GrantRecord> grants = CollectGrants(histories);
  const int64_t ttl_us = std::chrono::duration_cast<std::chrono::microseconds>(ttl).count();
  const int64_t slack_us = std::chrono::duration_cast<std::chrono::microseconds>(ttl_slack).count();
  std::map<std::string, std::vector<const GrantRecord*>> by_db;
  for (const GrantRecord& g : grants) {
    ++r.grants;
    if (g.released) ++r.releases;
    if (g.used_ok) ++r.used_ok;
    by_db[g.database].push_back(&g);
  }
  for (auto& [db, list] : by_db) {
    std::sort(list.begin(), list.end(),
              [](const GrantRecord* a, const GrantRecord* b) { return a->granted_us < b->granted_us; });
    const GrantRecord* holder = nullptr;  // the earlier grant that may be held longest
    int64_t held_until = 0;
    int64_t max_token = 0;
    const GrantRecord* max_token_grant = nullptr;
    for (const GrantRecord* g : list) {
      if (holder != nullptr && g->granted_us < held_until) {
        ++r.double_grants;
        problem("double grant on " + db + ": " + Describe(*g, t_origin_us) + " while " + Describe(*holder, t_origin_us) +
                " could still be held until " + At(held_until, t_origin_us));
      }
      if (max_token_grant != nullptr && g->token <= max_token) {
        ++r.token_regressions;
        problem("fencing token did not increase on " + db + ": " + Describe(*g, t_origin_us) + " after " +
                Describe(*max_token_grant, t_origin_us));
      }
      const int64_t by_ttl = g->ttl_base_us + ttl_us - slack_us;
      const int64_t until = g->first_delete_us ? std::min(*g->first_delete_us, by_ttl) : by_ttl;
      if (until > held_until) {
        held_until = until;
        holder = g;
      }
      if (max_token_grant == nullptr || g->token > max_token) {
        max_token = g->token;
        max_token_grant = g;
      }
    }
  }
  return r;
}

std::string TallyText(const std::map<std::string, int>& tally) {
  std::vector<std::pair<std::string, int>> items(tally.begin(), tally.end());
  std::sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::string s;
  for (const auto& [kind, n] : items) s += (s.empty() ? "" : ", ") + std::to_string(n) + "× " + kind;
  return s.empty() ? "none" : s;
}

}  // namespace testpool::bench::chaos
