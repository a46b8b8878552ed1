// The chaos driver's event log (bench/chaos_bench.cc): every client process appends one line per
// event to a file of its own, and the parent reads all of them, during the run (to see who holds a
// lease and when leases flow again) and afterwards (the checks of chaos_check.h).
//
// A line is `KIND CLIENT T_US LEASE DATABASE TOKEN T0_US DETAIL…`, fields separated by one space,
// "-" for an empty field, DETAIL the rest of the line (newlines replaced by spaces). Times are
// CLOCK_MONOTONIC microseconds, the same clock in every process of the machine, so lines of
// different clients compare. What T_US and T0_US mean depends on the kind (see EventKind).
//
// EventWriter appends each line with one write(2) on an O_APPEND descriptor: a client killed with
// SIGKILL leaves whole lines only. A writer belongs to one thread; ReadEvents and the free
// functions are reentrant.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace testpool::bench::chaos {

// CLOCK_MONOTONIC now, in microseconds.
int64_t MonotonicMicros();

enum class EventKind {
  kGrant,      // a 201 for POST …/leases: T0 = request sent, T = answer read
  kRenew,      // a 200 for POST /v1/leases/{id}/renew: T0 = request sent, T = answer read
  kUsed,       // the client is done with the database (its connection closed): T = then;
               // DETAIL "ok", or what went wrong ("gave up: …")
  kReleasing,  // the first DELETE /v1/leases/{id} is about to be sent: T = then
  kRelease,    // DELETE /v1/leases/{id} answered 204: T0 = the first DELETE sent, T = the 204 read
  kError,      // an expected failure (daemon or server down, …): DETAIL is its kind
  kViolation,  // something that must never happen (a stale marker, a lease cut off early): DETAIL says what
  kStart,      // the client process started: T = then
};
std::string_view ToString(EventKind kind);

struct Event {
  EventKind kind = EventKind::kError;
  int client = 0;
  int64_t t_us = 0;
  std::string lease;     // "" when none
  std::string database;  // "" when none
  int64_t token = 0;
  int64_t t0_us = 0;
  std::string detail;
};

// The line for `e`, newline included.
std::string FormatEvent(const Event& e);
// The event of one line (without its newline); nullopt when it is not one (a torn or foreign line).
std::optional<Event> ParseEvent(std::string_view line);

// Appends events to one file. Throws BenchFailure when the file cannot be opened.
class EventWriter {
 public:
  EventWriter(const std::filesystem::path& path, int client);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  // Stamps `e` with this writer's client and appends it (a failed write is ignored: the log is
  // evidence, not control flow).
  void Write(Event e);

 private:
  const int client_;
  int fd_ = -1;
};

// Reads a growing event file piece by piece: each Poll() returns the whole lines appended since
// the last one (a line still being written stays for the next call).
// The file is opened at the first Poll() that finds it and kept open.
class EventTail {
 public:
  explicit EventTail(std::filesystem::path path) : path_(std::move(path)) {}
  ~EventTail();
  EventTail(const EventTail&) = delete;
  EventTail& operator=(const EventTail&) = delete;
  std::vector<Event> Poll();

 private:
  const std::filesystem::path path_;
  int fd_ = -1;
  uint64_t offset_ = 0;
  std::string partial_;
};

}  // namespace testpool::bench::chaos
