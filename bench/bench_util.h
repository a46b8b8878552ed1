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
