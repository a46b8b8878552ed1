// Connection strings (pg/conninfo.h, through libpq's PQconninfoParse) and the percent-encoding
// that writes them as URIs (util/url.h): a record pool's or a build's "dsn" comes from an API
// client, in either form.
//
// Input: the connection string, keyword form ("host=… dbname=…") or URI ("postgresql://…").
//
// Checked: Parse throws nothing but Error(kInvalidArgument); what it parses comes back the same
// from ToKeywordString() and from ToUri() ("passwords with any characters survive"); Redacted()
// parses back with the password replaced and nothing else changed; PercentEncode of the input
// decodes back to it and writes only unreserved characters and %XX.
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz/fuzz_check.h"
#include "orchestrator/pg/conninfo.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/url.h"

namespace testpool {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // PercentEncode writes upper-case hex only
}

void CheckPercentEncode(std::string_view text) {
  const std::string encoded = util::PercentEncode(text);
  std::string decoded;
  for (size_t i = 0; i < encoded.size(); ++i) {
    const char c = encoded[i];
    if (c != '%') {
      const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                              c == '-' || c == '.' || c == '_' || c == '~';
      FUZZ_CHECK(unreserved);
      decoded.push_back(c);
      continue;
    }
    FUZZ_CHECK(i + 2 < encoded.size());
    const int hi = HexValue(encoded[i + 1]), lo = HexValue(encoded[i + 2]);
    FUZZ_CHECK(hi >= 0 && lo >= 0);
    decoded.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  FUZZ_CHECK(decoded == text);
}

// Parse, which may throw only the documented error; nullopt then.
std::optional<pg::ConnInfo> Parse(const std::string& text) {
  try {
    return pg::ConnInfo::Parse(text);
  } catch (const Error& e) {
    FUZZ_CHECK(e.code() == ErrorCode::kInvalidArgument);
    return std::nullopt;
  } catch (const std::exception& e) {
    fuzz::Unexpected("ConnInfo::Parse", e);
  }
}

// Prints both parameter maps when they differ, then fails.
void CheckSame(const char* form, const std::string& written, const std::map<std::string, std::string>& want,
               const std::optional<pg::ConnInfo>& got) {
  if (got && got->params() == want) return;
  std::fprintf(stderr, "%s form does not parse back to the same parameters: %s\n", form, written.c_str());
  for (const auto& [k, v] : want) std::fprintf(stderr, "  want %s=[%s]\n", k.c_str(), v.c_str());
  if (got) {
    for (const auto& [k, v] : got->params()) std::fprintf(stderr, "  got  %s=[%s]\n", k.c_str(), v.c_str());
  }
  FUZZ_CHECK(!"round trip");
}

}  // namespace
}  // namespace testpool

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace testpool;
  const std::string_view input = fuzz::AsText(data, size);
  CheckPercentEncode(input);
  // A C string ends at its first NUL: libpq never sees what follows, nor would a client's DSN.
  const std::string text(input.substr(0, input.find('\0')));
  const std::optional<pg::ConnInfo> info = Parse(text);
  if (!info) return 0;
  const std::map<std::string, std::string>& params = info->params();

  const std::string keyword = info->ToKeywordString();
  CheckSame("keyword", keyword, params, Parse(keyword));
  const std::string uri = info->ToUri();
  CheckSame("URI", uri, params, Parse(uri));

  const std::optional<pg::ConnInfo> redacted = Parse(info->Redacted());
  FUZZ_CHECK(redacted.has_value());
  std::map<std::string, std::string> want = params;
  if (want.count("password")) want["password"] = "***";
  FUZZ_CHECK(redacted->params() == want);
  return 0;
}
