// Percent-encoding (RFC 3986 §2.1) for the two places testpool writes URIs: PostgreSQL connection
// URIs (pg/conninfo) and the Docker Engine API's paths and query strings (backend/docker_api).
// Pure functions; thread-safe; never throw (beyond std::bad_alloc).
#pragma once

#include <string>
#include <string_view>

namespace testpool::util {

// Every byte of `text` but RFC 3986's unreserved characters (A–Z a–z 0–9 - . _ ~) and those listed
// in `keep` becomes %XX (upper-case hex), so any byte string survives as one URI component.
std::string PercentEncode(std::string_view text, std::string_view keep = "");

}  // namespace testpool::util
