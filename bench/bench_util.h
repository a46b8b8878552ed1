// Small helpers shared by the benchmarks: sample collection, percentiles, table printing, and a
// PostgreSQL to measure against (TESTPOOL_BENCH_DSN, else a local backend in a temp directory).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "orchestrator/backend/external_backend.h"
#include "orchestrator/backend/local_backend.h"

namespace testpool::bench {

struct Samples {
  std::vector<double> ms;
  void Add(double v) { ms.push_back(v); }
  double Percentile(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> s = ms;
    std::sort(s.begin(), s.end());
    size_t i = static_cast<size_t>(p * static_cast<double>(s.size() - 1) + 0.5);
    return s[std::min(i, s.size() - 1)];
  }
  double Mean() const { return ms.empty() ? 0 : std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size()); }
};

template <typename F>
double TimeMs(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

inline void PrintHeader() {
  std::printf("%-44s %6s %9s %9s %9s %9s\n", "measurement", "n", "p50 ms", "p95 ms", "mean ms", "max ms");
}
inline void PrintRow(const std::string& what, const Samples& s) {
  std::printf("%-44s %6zu %9.2f %9.2f %9.2f %9.2f\n", what.c_str(), s.ms.size(), s.Percentile(0.5), s.Percentile(0.95),
              s.Mean(), s.Percentile(1.0));
}

// Latency rows with p99 as well (the daemon benchmarks).
inline void PrintLatencyHeader() {
  std::printf("%-46s %6s %9s %9s %9s %9s %9s\n", "measurement", "n", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms");
}
inline void PrintLatencyRow(const std::string& what, const Samples& s) {
  std::printf("%-46s %6zu %9.3f %9.3f %9.3f %9.3f %9.3f\n", what.c_str(), s.ms.size(), s.Percentile(0.5),
              s.Percentile(0.95), s.Percentile(0.99), s.Mean(), s.Percentile(1.0));
}

// `v` through a printf format with one double, e.g. Fmt("%.3f ms", 0.52).
inline std::string Fmt(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// "1/37" when `value` is the smaller, else "2.4x"; "-" when either is not positive.
inline std::string RatioText(double value, double raw) {
  if (value <= 0 || raw <= 0) return "-";
  if (value >= raw) return Fmt("%.1fx", value / raw);
  return "1/" + Fmt(raw / value < 10 ? "%.1f" : "%.0f", raw / value);
}

// The figures table: a figure, what was measured, the raw primitive of the same run, their ratio,
// the target and a verdict ("-" for a target in parentheses, i.e. none).
inline void PrintFigureHeader() {
  std::printf("%-40s %-16s %-26s %-9s %-13s %s\n", "figure", "measured", "raw primitive (same run)", "ratio", "target",
              "verdict");
}
inline void PrintFigure(const std::string& figure, const std::string& measured, const std::string& raw,
                        const std::string& ratio, const std::string& target, bool met) {
  std::printf("%-40s %-16s %-26s %-9s %-13s %s\n", figure.c_str(), measured.c_str(), raw.c_str(), ratio.c_str(),
              target.c_str(), target.rfind('(', 0) == 0 ? "-" : met ? "met" : "MISSED");
}

// The server under measurement: TESTPOOL_BENCH_DSN (external) or a fresh local backend.
class BenchServer {
 public:
  BenchServer() {
    if (const char* dsn = std::getenv("TESTPOOL_BENCH_DSN"); dsn && *dsn) {
      backend_ = std::make_unique<backend::ExternalBackend>(dsn);
    } else {
      char tmpl[] = "/tmp/testpool-bench-XXXXXX";
      dir_ = ::mkdtemp(tmpl);
      std::filesystem::permissions(dir_, std::filesystem::perms(0755));
      backend::LocalBackendOptions o;
      o.state_dir = dir_;
      backend_ = std::make_unique<backend::LocalBackend>(o);
    }
    backend_->Start();
  }
  ~BenchServer() {
    backend_->Stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  backend::Backend& backend() { return *backend_; }

 private:
  std::filesystem::path dir_;
  std::unique_ptr<backend::Backend> backend_;
};

}  // namespace testpool::bench
