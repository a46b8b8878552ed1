#include "orchestrator/util/log.h"

#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>

#include "orchestrator/util/time_format.h"

namespace testpool::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug: return "debug";
    case Level::kInfo: return "info";
    case Level::kWarn: return "warn";
    case Level::kError: return "error";
  }
  return "info";
}

bool NeedsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  return false;
}

void AppendValue(std::string* out, std::string_view v) {
  if (!NeedsQuotes(v)) {
    out->append(v);
    return;
  }
  out->push_back('"');
  for (char c : v) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(c));
          out->append(buf);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Index just past the quoted string starting at `at` (text[at] is the quote). Backslash escapes
// when `backslash`; a doubled quote stands for one when `doubled` (SQL). Unterminated: the end.
size_t SkipQuoted(std::string_view text, size_t at, bool backslash, bool doubled) {
  const char q = text[at];
  for (size_t i = at + 1; i < text.size(); ++i) {
    if (backslash && text[i] == '\\') {
      ++i;
    } else if (text[i] == q) {
      if (doubled && i + 1 < text.size() && text[i + 1] == q) {
        ++i;
      } else {
        return i + 1;
      }
    }
  }
  return text.size();
}

bool StartsWithNoCase(std::string_view text, size_t at, std::string_view word) {
  if (text.size() - at < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(text[at + i])) != word[i]) return false;
  }
  return true;
}

bool ContainsNoCase(std::string_view text, std::string_view word) {
  for (size_t i = 0; i + word.size() <= text.size(); ++i) {
    if (StartsWithNoCase(text, i, word)) return true;
  }
  return false;
}

// URIs: scheme://user:password@host → scheme://user:***@host.
std::string RedactUserinfo(std::string_view text) {
  std::string out;
  size_t copied = 0;
  for (size_t sep = text.find("://"); sep != std::string_view::npos; sep = text.find("://", sep + 3)) {
    const size_t start = sep + 3;
    size_t end = start;
    while (end < text.size() && !IsSpace(text[end]) && std::string_view("/?#\"'").find(text[end]) == std::string_view::npos) {
      ++end;
    }
    const size_t at = text.rfind('@', end == 0 ? 0 : end - 1);
    if (at == std::string_view::npos || at < start) continue;
    const size_t colon = text.find(':', start);
    if (colon == std::string_view::npos || colon > at) continue;
    out.append(text.substr(copied, colon + 1 - copied)).append("***");
    copied = at;
  }
  out.append(text.substr(copied));
  return out;
}

}  // namespace

std::string Redact(std::string_view input) {
  const std::string uri_redacted = RedactUserinfo(input);
  const std::string_view text = uri_redacted;
  constexpr std::string_view kWord = "password";
  std::string out;
  size_t copied = 0;
  for (size_t i = 0; i + kWord.size() <= text.size(); ++i) {
    if (!StartsWithNoCase(text, i, kWord)) continue;
    size_t j = i + kWord.size();
    size_t value = std::string_view::npos, value_end = 0;
    std::string mask;
    if (j < text.size() && text[j] == '"') {  // "password": "…"
      size_t k = j + 1;
      while (k < text.size() && IsSpace(text[k])) ++k;
      if (k < text.size() && text[k] == ':') {
        ++k;
        while (k < text.size() && IsSpace(text[k])) ++k;
        if (k < text.size() && text[k] == '"') {
          value = k;
          value_end = SkipQuoted(text, k, true, false);
          mask = "\"***\"";
        }
      }
    } else {
      while (j < text.size() && IsSpace(text[j])) ++j;
      if (j < text.size() && text[j] == '=') {  // password=…, password = '…'
        ++j;
        while (j < text.size() && IsSpace(text[j])) ++j;
        value = j;
        if (j < text.size() && (text[j] == '\'' || text[j] == '"')) {
          value_end = SkipQuoted(text, j, true, true);  // libpq escapes with '\'; SQL doubles
          mask = std::string(1, text[j]) + "***" + text[j];
        } else {
          value_end = j;
          while (value_end < text.size() && !IsSpace(text[value_end]) && text[value_end] != '&') ++value_end;
          mask = "***";
        }
      } else if (j < text.size() && text[j] == '\'') {  // SQL: PASSWORD '…'
        value = j;
        value_end = SkipQuoted(text, j, false, true);
        mask = "'***'";
      } else if (j + 1 < text.size() && (text[j] == 'E' || text[j] == 'e') && text[j + 1] == '\'') {  // E'…'
        value = j;
        value_end = SkipQuoted(text, j + 1, true, true);
        mask = "E'***'";
      }
    }
    if (value == std::string_view::npos || value_end <= value) continue;
    out.append(text.substr(copied, value - copied)).append(mask);
    copied = value_end;
    i = value_end - 1;
  }
  out.append(text.substr(copied));
  return out;
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }

bool ParseLevel(std::string_view text, Level* level) {
  if (text == "debug") *level = Level::kDebug;
  else if (text == "info") *level = Level::kInfo;
  else if (text == "warn") *level = Level::kWarn;
  else if (text == "error") *level = Level::kError;
  else return false;
  return true;
}

void Write(Level level, std::string_view event, std::initializer_list<Field> fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  std::string line;
  line.reserve(128);
  line.append(util::IsoUtcMs(std::chrono::system_clock::now())).push_back(' ');
  line.append(LevelName(level)).push_back(' ');
  line.append(event);
  for (const auto& [key, value] : fields) {
    line.push_back(' ');
    line.append(key).push_back('=');
    const bool secret = ContainsNoCase(key, "password") || ContainsNoCase(key, "secret");
    AppendValue(&line, secret ? std::string("***") : Redact(value));
  }
  line.push_back('\n');
  // One write per line keeps lines whole when several threads log at once.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n <= 0) break;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

std::string Ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", ms);
  return buf;
}

}  // namespace testpool::log
