#include "bench/chaos_log.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <charconv>
#include <cstring>

#include "bench/daemon_harness.h"

namespace testpool::bench::chaos {
namespace {

constexpr std::array<std::pair<EventKind, std::string_view>, 8> kKinds = {{
    {EventKind::kGrant, "grant"},
    {EventKind::kRenew, "renew"},
    {EventKind::kUsed, "used"},
    {EventKind::kReleasing, "releasing"},
    {EventKind::kRelease, "release"},
    {EventKind::kError, "error"},
    {EventKind::kViolation, "violation"},
    {EventKind::kStart, "start"},
}};

std::string Field(const std::string& s) {
  if (s.empty()) return "-";
  std::string out = s;
  for (char& c : out) {
    if (c == ' ' || c == '\n' || c == '\r') c = '_';
  }
  return out;
}

template <typename Int>
bool ParseNumber(std::string_view s, Int* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

int64_t MonotonicMicros() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000 + ts.tv_nsec / 1000;
}

std::string_view ToString(EventKind kind) {
  for (const auto& [k, name] : kKinds) {
    if (k == kind) return name;
  }
  return "?";
}

std::string FormatEvent(const Event& e) {
  std::string detail = e.detail;
  for (char& c : detail) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  std::string line = std::string(ToString(e.kind)) + " " + std::to_string(e.client) + " " + std::to_string(e.t_us) +
                     " " + Field(e.lease) + " " + Field(e.database) + " " + std::to_string(e.token) + " " +
                     std::to_string(e.t0_us) + " " + (detail.empty() ? "-" : detail) + "\n";
  return line;
}

std::optional<Event> ParseEvent(std::string_view line) {
  std::vector<std::string_view> f;
  size_t pos = 0;
  while (f.size() < 7) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string_view::npos) return std::nullopt;
    f.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
  Event e;
  bool known = false;
  for (const auto& [k, name] : kKinds) {
    if (f[0] == name) {
      e.kind = k;
      known = true;
    }
  }
  if (!known || !ParseNumber(f[1], &e.client) || !ParseNumber(f[2], &e.t_us) || !ParseNumber(f[5], &e.token) ||
      !ParseNumber(f[6], &e.t0_us)) {
    return std::nullopt;
  }
  e.lease = f[3] == "-" ? "" : std::string(f[3]);
  e.database = f[4] == "-" ? "" : std::string(f[4]);
  std::string_view rest = line.substr(pos);
  e.detail = rest == "-" ? "" : std::string(rest);
  return e;
}

EventWriter::EventWriter(const std::filesystem::path& path, int client) : client_(client) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) Fail("cannot open " + path.string() + ": " + std::strerror(errno));
}

EventWriter::~EventWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void EventWriter::Write(Event e) {
  e.client = client_;
  const std::string line = FormatEvent(e);
  // One write of a short line to a regular file opened O_APPEND: whole or not at all.
  [[maybe_unused]] ssize_t n = ::write(fd_, line.data(), line.size());
}

EventTail::~EventTail() {
  if (fd_ >= 0) ::close(fd_);
}

std::vector<Event> EventTail::Poll() {
  std::vector<Event> out;
  if (fd_ < 0) fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return out;  // not written yet
  char buf[65536];
  for (ssize_t n; (n = ::pread(fd_, buf, sizeof buf, static_cast<off_t>(offset_))) > 0;) {
    offset_ += static_cast<uint64_t>(n);
    partial_.append(buf, static_cast<size_t>(n));
  }
  size_t start = 0;
  for (size_t nl; (nl = partial_.find('\n', start)) != std::string::npos; start = nl + 1) {
    if (auto e = ParseEvent(std::string_view(partial_).substr(start, nl - start))) out.push_back(std::move(*e));
  }
  partial_.erase(0, start);
  return out;
}

}  // namespace testpool::bench::chaos
