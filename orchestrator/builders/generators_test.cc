// Tests of the builder value generators.
//
// Every generator is run for kValuesPerGenerator values (several seeds and namespaces) and every
// value is checked by a validator written here from the public specifications (ISO 13616 and the
// national BBAN rules, the Luhn formula and card IIN ranges, postal-code formats, E.164 numbering
// plans, RFC 5321/2606), sharing no code with generators.cc. Each validator is first shown to
// reject known-bad examples, so a passing run means something.
#include "orchestrator/builders/generators.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <charconv>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "orchestrator/util/error.h"

namespace testpool::builders {
namespace {

using nlohmann::json;

constexpr int kValuesPerGenerator = 100000;

// ---- Independent validators -----------------------------------------------------------------

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsUpper(char c) { return c >= 'A' && c <= 'Z'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool AllDigits(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), IsDigit); }
bool AnyOf(char c, std::string_view set) { return set.find(c) != std::string_view::npos; }

int64_t ToInt(std::string_view digits) {
  int64_t v = 0;
  for (char c : digits) v = v * 10 + (c - '0');
  return v;
}

// Luhn (ISO/IEC 7812-1): from the right, every second digit doubled (minus 9 when above 9); the
// sum of all must be a multiple of 10.
bool LuhnValid(std::string_view number) {
  if (!AllDigits(number)) return false;
  int sum = 0;
  for (size_t i = 0; i < number.size(); ++i) {
    int d = number[number.size() - 1 - i] - '0';
    if (i % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return sum % 10 == 0;
}

// The card brand from its IIN range and length, "" when none matches.
std::string BrandOf(std::string_view n) {
  if (!AllDigits(n)) return "";
  auto first = [&](size_t k) { return ToInt(n.substr(0, k)); };
  if (n.size() == 16 && n[0] == '4') return "visa";
  if (n.size() == 16 && ((first(2) >= 51 && first(2) <= 55) || (first(4) >= 2221 && first(4) <= 2720))) {
    return "mastercard";
  }
  if (n.size() == 15 && (first(2) == 34 || first(2) == 37)) return "amex";
  if (n.size() == 16 && (first(4) == 6011 || (first(3) >= 644 && first(3) <= 649) || first(2) == 65)) {
    return "discover";
  }
  return "";
}

// ISO 13616: move the first four characters to the end, replace each letter by two digits
// (A = 10 … Z = 35), and the resulting integer mod 97 must be 1. Computed piecewise on the digit
// string, nine digits at a time, as the standard describes.
int IbanMod97(std::string_view iban) {
  std::string moved = std::string(iban.substr(4)) + std::string(iban.substr(0, 4));
  std::string digits;
  for (char c : moved) digits += IsUpper(c) ? std::to_string(c - 'A' + 10) : std::string(1, c);
  int64_t remainder = 0;
  size_t pos = 0;
  while (pos < digits.size()) {
    std::string chunk = std::to_string(remainder);
    const size_t take = std::min(digits.size() - pos, 9 - chunk.size());
    chunk += digits.substr(pos, take);
    pos += take;
    remainder = ToInt(chunk) % 97;
  }
  return static_cast<int>(remainder);
}

// The two check digits that make `country` + cd + `bban` valid (for building bad examples).
std::string IbanCheckDigits(std::string_view country, std::string_view bban) {
  const int r = IbanMod97(std::string(country) + "00" + std::string(bban));
  const int cd = 98 - r;
  return std::string(1, static_cast<char>('0' + cd / 10)) + static_cast<char>('0' + cd % 10);
}

// Pattern letters: n digit, a upper-case letter, c upper-case letter or digit.
bool MatchesPattern(std::string_view s, std::string_view pattern) {
  if (s.size() != pattern.size()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool ok = pattern[i] == 'n'   ? IsDigit(s[i])
                    : pattern[i] == 'a' ? IsUpper(s[i])
                                        : IsDigit(s[i]) || IsUpper(s[i]);
    if (!ok) return false;
  }
  return true;
}

// French RIB: letters of the account become digits (A–I → 1–9, J–R → 1–9, S–Z → 2–9); the 23
// digits bank(5) branch(5) account(11) key(2), read as one number, are a multiple of 97.
bool FrenchRibValid(std::string_view rib23) {
  int remainder = 0;
  for (char c : rib23) {
    int d = 0;
    if (IsDigit(c)) {
      d = c - '0';
    } else if (c >= 'A' && c <= 'I') {
      d = c - 'A' + 1;
    } else if (c >= 'J' && c <= 'R') {
      d = c - 'J' + 1;
    } else if (c >= 'S' && c <= 'Z') {
      d = c - 'S' + 2;
    } else {
      return false;
    }
    remainder = (remainder * 10 + d) % 97;
  }
  return remainder == 0;
}

// Spanish "dígitos de control": for ten digits, weights 2^i mod 11 (1 2 4 8 5 10 9 7 3 6);
// 11 − (sum mod 11), where 11 becomes 0 and 10 becomes 1. The first is over "00" + bank +
// branch, the second over the account.
int SpanishControl(std::string_view ten) {
  int sum = 0, weight = 1;
  for (char c : ten) {
    sum += (c - '0') * weight;
    weight = weight * 2 % 11;
  }
  const int d = 11 - sum % 11;
  return d == 11 ? 0 : d == 10 ? 1 : d;
}

// "" when valid, else the reason.
std::string IbanProblem(std::string_view iban) {
  static const std::map<std::string, std::string, std::less<>> kBban = {{"DE", "nnnnnnnnnnnnnnnnnn"},
                                                                        {"GB", "aaaannnnnnnnnnnnnn"},
                                                                        {"NL", "aaaannnnnnnnnn"},
                                                                        {"FR", "nnnnnnnnnncccccccccccnn"},
                                                                        {"ES", "nnnnnnnnnnnnnnnnnnnn"}};
  if (iban.size() < 5 || !IsUpper(iban[0]) || !IsUpper(iban[1])) return "no country code";
  auto it = kBban.find(iban.substr(0, 2));
  if (it == kBban.end()) return "unexpected country";
  if (!IsDigit(iban[2]) || !IsDigit(iban[3])) return "check digits not digits";
  const std::string_view bban = iban.substr(4);
  if (!MatchesPattern(bban, it->second)) return "BBAN does not match " + it->second;
  const int64_t cd = ToInt(iban.substr(2, 2));
  if (cd < 2 || cd > 98) return "check digits out of 02..98";
  if (IbanMod97(iban) != 1) return "mod 97 is not 1";
  if (it->first == "FR" && !FrenchRibValid(bban)) return "bad RIB key";
  if (it->first == "ES") {
    if (SpanishControl("00" + std::string(bban.substr(0, 8))) != bban[8] - '0') return "bad first ES control digit";
    if (SpanishControl(bban.substr(10)) != bban[9] - '0') return "bad second ES control digit";
  }
  return "";
}

bool GbPostcodeValid(std::string_view s) {
  const size_t space = s.find(' ');
  if (space == std::string_view::npos) return false;
  std::string_view out = s.substr(0, space), in = s.substr(space + 1);
  // Inward: digit, then two letters other than C I K M O V.
  if (in.size() != 3 || !IsDigit(in[0])) return false;
  for (char c : in.substr(1)) {
    if (!IsUpper(c) || AnyOf(c, "CIKMOV")) return false;
  }
  // Outward: A9 A99 AA9 AA99 A9A AA9A.
  if (out.size() < 2 || out.size() > 4 || !IsUpper(out[0]) || AnyOf(out[0], "QVX")) return false;
  std::string shape;
  for (char c : out) shape += IsDigit(c) ? '9' : IsUpper(c) ? 'A' : '?';
  if (shape == "A9" || shape == "A99") return true;
  if (shape == "AA9" || shape == "AA99") return !AnyOf(out[1], "IJZ");
  if (shape == "A9A") return AnyOf(out[2], "ABCDEFGHJKPSTUW");
  if (shape == "AA9A") return !AnyOf(out[1], "IJZ") && AnyOf(out[3], "ABEHMNPRVWXY");
  return false;
}

bool PostalValid(std::string_view country, std::string_view s) {
  if (country == "US") {
    if (s.size() != 5 && s.size() != 10) return false;
    if (!AllDigits(s.substr(0, 5)) || s.substr(0, 5) == "00000") return false;
    return s.size() == 5 || (s[5] == '-' && AllDigits(s.substr(6)));
  }
  if (country == "CA") {
    if (s.size() != 7 || s[3] != ' ') return false;
    for (size_t i : {0, 2, 5}) {
      if (!IsUpper(s[i]) || AnyOf(s[i], "DFIOQU")) return false;
    }
    for (size_t i : {1, 4, 6}) {
      if (!IsDigit(s[i])) return false;
    }
    return !AnyOf(s[0], "WZ");
  }
  if (country == "GB") return GbPostcodeValid(s);
  if (country == "DE") return s.size() == 5 && AllDigits(s) && ToInt(s) >= 1001 && ToInt(s) <= 99998;
  if (country == "FR") {
    if (s.size() != 5 || !AllDigits(s)) return false;
    const int64_t dept = ToInt(s.substr(0, 2));
    if (dept == 97) return AnyOf(s[2], "12346");  // Guadeloupe, Martinique, Guyane, Réunion, Mayotte
    if (dept == 20) return AnyOf(s[2], "0126");   // Corsica (2A, 2B)
    return dept >= 1 && dept <= 95;
  }
  if (country == "NL") {
    if (s.size() != 7 || !AllDigits(s.substr(0, 4)) || s[0] == '0' || s[4] != ' ') return false;
    if (!IsUpper(s[5]) || !IsUpper(s[6])) return false;
    const std::string_view letters = s.substr(5);
    return letters != "SA" && letters != "SD" && letters != "SS";
  }
  if (country == "ES")
    return s.size() == 5 && AllDigits(s) && ToInt(s.substr(0, 2)) >= 1 && ToInt(s.substr(0, 2)) <= 52;
  if (country == "JP") {
    return s.size() == 8 && AllDigits(s.substr(0, 3)) && s[3] == '-' && AllDigits(s.substr(4)) &&
           s.substr(0, 3) != "000";
  }
  return false;
}

// E.164: '+', the country code, the national significant number, 15 digits at most; then the
// national plan of each country as far as the generator claims to follow it.
bool PhoneValid(std::string_view country, std::string_view s) {
  if (s.size() < 2 || s[0] != '+' || !AllDigits(s.substr(1)) || s[1] == '0' || s.size() - 1 > 15) return false;
  const std::string_view d = s.substr(1);
  auto nanp = [](std::string_view n) {  // NPA NXX XXXX, N = 2–9, neither code N11
    auto n11 = [](std::string_view code) { return code[1] == '1' && code[2] == '1'; };
    return n.size() == 10 && n[0] >= '2' && n[3] >= '2' && !n11(n.substr(0, 3)) && !n11(n.substr(3, 3));
  };
  if (country == "US" || country == "CA") return d[0] == '1' && nanp(d.substr(1));
  if (country == "GB") return d.substr(0, 2) == "44" && d.size() == 12 && d[2] == '7';
  if (country == "DE") {
    return d.substr(0, 2) == "49" && (d.size() == 12 || d.size() == 13) && d[2] == '1' && AnyOf(d[3], "567");
  }
  if (country == "FR") return d.substr(0, 2) == "33" && d.size() == 11 && d[2] != '0';
  if (country == "NL") return d.substr(0, 2) == "31" && d.size() == 11 && d[2] == '6';
  if (country == "ES") return d.substr(0, 2) == "34" && d.size() == 11 && AnyOf(d[2], "6789");
  if (country == "JP") return d.substr(0, 2) == "81" && d.size() == 12 && AnyOf(d[2], "789") && d[3] == '0';
  return false;
}

// RFC 5321 Mailbox with a lower-case dot-atom local part (≤ 64 octets) and a domain reserved by
// RFC 2606/6761 (example.com/.net/.org or below, or under .test/.example/.invalid).
bool EmailValid(std::string_view e) {
  const size_t at = e.rfind('@');
  if (at == std::string_view::npos || e.size() > 254) return false;
  const std::string_view local = e.substr(0, at), domain = e.substr(at + 1);
  if (local.empty() || local.size() > 64 || local.front() == '.' || local.back() == '.') return false;
  if (local.find("..") != std::string_view::npos) return false;
  for (char c : local) {
    if (!(IsLower(c) || IsDigit(c) || c == '.' || AnyOf(c, "!#$%&'*+-/=?^_`{|}~"))) return false;
  }
  auto under = [&](std::string_view base) {
    // (Not ends_with("." + std::string(base)): GCC 12 -O2 warns falsely (-Wrestrict) on that.)
    return domain == base || (domain.size() > base.size() + 1 && domain.ends_with(base) &&
                              domain[domain.size() - base.size() - 1] == '.');
  };
  return under("example.com") || under("example.net") || under("example.org") ||
         (domain.size() > 5 && domain.ends_with(".test")) || (domain.size() > 8 && domain.ends_with(".example")) ||
         (domain.size() > 8 && domain.ends_with(".invalid"));
}

bool IsLeap(int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

bool DateValid(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return false;
  if (!AllDigits(s.substr(0, 4)) || !AllDigits(s.substr(5, 2)) || !AllDigits(s.substr(8, 2))) return false;
  const int64_t y = ToInt(s.substr(0, 4)), m = ToInt(s.substr(5, 2)), d = ToInt(s.substr(8, 2));
  const int64_t month_days[] = {31, IsLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= month_days[m - 1];
}

// YYYY-MM-DDTHH:MM:SS, then `precision` fractional digits, then Z when `zone`.
bool TimestampValid(std::string_view s, int precision, bool zone) {
  const size_t expected = 19 + (precision > 0 ? 1 + precision : 0) + (zone ? 1 : 0);
  if (s.size() != expected || !DateValid(s.substr(0, 10)) || s[10] != 'T' || s[13] != ':' || s[16] != ':') {
    return false;
  }
  if (!AllDigits(s.substr(11, 2)) || !AllDigits(s.substr(14, 2)) || !AllDigits(s.substr(17, 2))) return false;
  if (ToInt(s.substr(11, 2)) > 23 || ToInt(s.substr(14, 2)) > 59 || ToInt(s.substr(17, 2)) > 59) return false;
  if (precision > 0 && (s[19] != '.' || !AllDigits(s.substr(20, precision)))) return false;
  return !zone || s.back() == 'Z';
}

// A canonical integer ("-12", "0", never "012" or "-0").
std::optional<int64_t> CanonicalInt(std::string_view s) {
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || std::to_string(v) != s) return std::nullopt;
  return v;
}

// A decimal with exactly `scale` digits after the point, as an integer count of 10^-scale units.
std::optional<int64_t> DecimalUnits(std::string_view s, int scale) {
  const bool negative = !s.empty() && s[0] == '-';
  std::string_view body = negative ? s.substr(1) : s;
  const size_t dot = body.find('.');
  std::string_view whole = scale == 0 ? body : body.substr(0, dot);
  if (scale > 0 && (dot == std::string_view::npos || body.size() - dot - 1 != static_cast<size_t>(scale))) {
    return std::nullopt;
  }
  std::string_view fraction = scale == 0 ? std::string_view() : body.substr(dot + 1);
  if (!AllDigits(whole) || (whole.size() > 1 && whole[0] == '0') || (scale > 0 && !AllDigits(fraction))) {
    return std::nullopt;
  }
  const int64_t units = ToInt(std::string(whole) + std::string(fraction));
  if (negative && units == 0) return std::nullopt;  // "-0.00"
  return negative ? -units : units;
}

bool NameLike(std::string_view s) {  // "de Jong", "O'Brien", "Smith-Jones"
  if (s.size() < 2 || s.size() > 40 || s.front() == ' ' || s.back() == ' ') return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return IsUpper(c) || IsLower(c) || AnyOf(c, " '-"); }) &&
         std::any_of(s.begin(), s.end(), IsUpper);
}

bool StreetValid(std::string_view s) {  // "12 Oak Street"
  const size_t space = s.find(' ');
  if (space == std::string_view::npos || !AllDigits(s.substr(0, space)) || s[0] == '0') return false;
  const std::string_view rest = s.substr(space + 1);
  return NameLike(rest) && rest.find(' ') != std::string_view::npos && IsUpper(rest[0]);
}

const std::set<std::string, std::less<>> kAllCountries = {"US", "CA", "GB", "DE", "FR", "NL", "ES", "JP"};

// The demo shop's SKU format (migrations/0002_products.sql): ^[A-Z]{3}-[0-9]{4,8}$.
bool SkuValid(std::string_view s) {
  if (s.size() < 8 || s.size() > 12 || s[3] != '-') return false;
  return std::all_of(s.begin(), s.begin() + 3, IsUpper) && AllDigits(s.substr(4));
}

// The number the last `n` characters of `s` spell in decimal, or -1 when they are not n digits.
int64_t TrailingNumber(std::string_view s, size_t n) {
  if (s.size() < n || !AllDigits(s.substr(s.size() - n))) return -1;
  return ToInt(s.substr(s.size() - n));
}

// ---- The validators can fail ----------------------------------------------------------------

TEST(Validators, LuhnAcceptsPublishedTestNumbersAndRejectsAChangedDigit) {
  EXPECT_TRUE(LuhnValid("4111111111111111"));
  EXPECT_TRUE(LuhnValid("5555555555554444"));
  EXPECT_TRUE(LuhnValid("378282246310005"));
  EXPECT_TRUE(LuhnValid("6011111111111117"));
  EXPECT_FALSE(LuhnValid("4111111111111112"));
  EXPECT_FALSE(LuhnValid("378282246310006"));
  EXPECT_FALSE(LuhnValid("41111111111111a1"));
  EXPECT_EQ(BrandOf("4111111111111111"), "visa");
  EXPECT_EQ(BrandOf("2221000000000009"), "mastercard");
  EXPECT_EQ(BrandOf("378282246310005"), "amex");
  EXPECT_EQ(BrandOf("6445644564456445"), "discover");
  EXPECT_EQ(BrandOf("411111111111111"), "");   // Visa with 15 digits
  EXPECT_EQ(BrandOf("2721000000000000"), "");  // just past the Mastercard 2-series
  EXPECT_EQ(BrandOf("6500000000000"), "");     // Discover too short
}

TEST(Validators, IbanAcceptsPublishedSamplesAndRejectsBrokenOnes) {
  for (const char* good : {"DE89370400440532013000", "GB82WEST12345698765432", "FR1420041010050500013M02606",
                           "NL91ABNA0417164300", "ES9121000418450200051332"}) {
    EXPECT_EQ(IbanProblem(good), "") << good;
  }
  EXPECT_EQ(IbanProblem("DE89370400440532013001"), "mod 97 is not 1");
  EXPECT_EQ(IbanProblem("GB82WEST12345698765423"), "mod 97 is not 1");  // two digits swapped
  EXPECT_NE(IbanProblem("DE8937040044053201300"), "");                  // one digit short
  EXPECT_NE(IbanProblem("NL91ABNA04171643001"), "");
  EXPECT_NE(IbanProblem("GB82W3ST12345698765432"), "");  // digit in the bank code
  EXPECT_NE(IbanProblem("US64SVBKUS6S3300958879"), "");
  // Valid mod 97 but a wrong national check: the RIB key 07 instead of 06, the ES control
  // digits 46 instead of 45.
  const std::string fr_bban = "20041010050500013M02607";
  EXPECT_EQ(IbanProblem("FR" + IbanCheckDigits("FR", fr_bban) + fr_bban), "bad RIB key");
  const std::string es_bban = "21000418460200051332";
  EXPECT_EQ(IbanProblem("ES" + IbanCheckDigits("ES", es_bban) + es_bban), "bad second ES control digit");
  const std::string es_bban2 = "21000418550200051332";
  EXPECT_EQ(IbanProblem("ES" + IbanCheckDigits("ES", es_bban2) + es_bban2), "bad first ES control digit");
}

TEST(Validators, PostalCodesAcceptRealShapesAndRejectBrokenOnes) {
  for (const char* good : {"SW1A 1AA", "M1 1AE", "B33 8TH", "CR2 6XH", "DN55 1PT", "EC1A 1BB", "W1A 0AX"}) {
    EXPECT_TRUE(PostalValid("GB", good)) << good;
  }
  for (const char* bad : {"SW1A 1CA", "QA1 1AA", "AI1 1AA", "W1L 1AA", "SW1C 1AA", "SW1A1AA", "SW1A 1A"}) {
    EXPECT_FALSE(PostalValid("GB", bad)) << bad;
  }
  EXPECT_TRUE(PostalValid("US", "12345"));
  EXPECT_TRUE(PostalValid("US", "12345-6789"));
  EXPECT_FALSE(PostalValid("US", "00000"));
  EXPECT_FALSE(PostalValid("US", "1234"));
  EXPECT_FALSE(PostalValid("US", "12345 6789"));
  EXPECT_TRUE(PostalValid("CA", "K1A 0B1"));
  EXPECT_FALSE(PostalValid("CA", "D1A 0B1"));
  EXPECT_FALSE(PostalValid("CA", "W1A 0B1"));
  EXPECT_FALSE(PostalValid("CA", "K1A 0O1"));
  EXPECT_TRUE(PostalValid("DE", "01001"));
  EXPECT_FALSE(PostalValid("DE", "01000"));
  EXPECT_FALSE(PostalValid("DE", "99999"));
  for (const char* good : {"75011", "20000", "20600", "97100", "97600", "01000", "95000"}) {
    EXPECT_TRUE(PostalValid("FR", good)) << good;
  }
  for (const char* bad : {"96000", "97500", "00100", "20300", "9710"}) EXPECT_FALSE(PostalValid("FR", bad)) << bad;
  EXPECT_TRUE(PostalValid("NL", "1234 AB"));
  EXPECT_FALSE(PostalValid("NL", "0123 AB"));
  EXPECT_FALSE(PostalValid("NL", "1234 SS"));
  EXPECT_FALSE(PostalValid("NL", "1234AB"));
  EXPECT_TRUE(PostalValid("ES", "28013"));
  EXPECT_FALSE(PostalValid("ES", "53000"));
  EXPECT_TRUE(PostalValid("JP", "100-0001"));
  EXPECT_FALSE(PostalValid("JP", "1000001"));
  EXPECT_FALSE(PostalValid("JP", "000-0001"));
}

TEST(Validators, PhonesFollowE164AndTheNationalPlans) {
  EXPECT_TRUE(PhoneValid("US", "+12125550100"));
  EXPECT_FALSE(PhoneValid("US", "+11125550100"));  // area code starting 1
  EXPECT_FALSE(PhoneValid("US", "+12121550100"));  // exchange starting 1
  EXPECT_FALSE(PhoneValid("US", "+12119110100"));  // N11 area code
  EXPECT_FALSE(PhoneValid("US", "+1212555010"));   // too short
  EXPECT_TRUE(PhoneValid("GB", "+447700900123"));
  EXPECT_FALSE(PhoneValid("GB", "+4407700900123"));  // trunk 0 kept
  EXPECT_TRUE(PhoneValid("DE", "+4915112345678"));
  EXPECT_TRUE(PhoneValid("FR", "+33612345678"));
  EXPECT_FALSE(PhoneValid("FR", "+33012345678"));
  EXPECT_TRUE(PhoneValid("NL", "+31612345678"));
  EXPECT_FALSE(PhoneValid("NL", "+31512345678"));
  EXPECT_TRUE(PhoneValid("ES", "+34612345678"));
  EXPECT_FALSE(PhoneValid("ES", "+34512345678"));
  EXPECT_TRUE(PhoneValid("JP", "+819012345678"));
  EXPECT_FALSE(PhoneValid("JP", "+81 9012345678"));
  EXPECT_FALSE(PhoneValid("DE", "+4915112345678901"));  // 16 digits
}

TEST(Validators, EmailsNeedADotAtomAndAReservedDomain) {
  EXPECT_TRUE(EmailValid("a.b@example.com"));
  EXPECT_TRUE(EmailValid("x_y-1@mail.example.test"));
  EXPECT_FALSE(EmailValid("A.b@example.com"));
  EXPECT_FALSE(EmailValid("a..b@example.com"));
  EXPECT_FALSE(EmailValid(".a@example.com"));
  EXPECT_FALSE(EmailValid("a@gmail.com"));
  EXPECT_FALSE(EmailValid("a@notexample.com"));
  EXPECT_FALSE(EmailValid(std::string(65, 'a') + "@example.com"));
  EXPECT_FALSE(EmailValid("a b@example.com"));
}

TEST(Validators, SkusFollowTheShopsFormat) {
  EXPECT_TRUE(SkuValid("KBD-1001"));
  EXPECT_TRUE(SkuValid("MON-30030"));
  EXPECT_TRUE(SkuValid("QZK-48100042"));
  for (const char* bad : {"KB-1001", "KBDX-1001", "kbd-1001", "KBD-100", "KBD-123456789", "KBD1001", "KBD-10a1",
                          "KBD_1001", "K1D-1001", ""}) {
    EXPECT_FALSE(SkuValid(bad)) << bad;
  }
  EXPECT_EQ(TrailingNumber("QZK-48100042", 5), 42);
  EXPECT_EQ(TrailingNumber("QZK-481000A2", 5), -1);
}

TEST(Validators, DatesAndNumbersRejectWhatIsNotCanonical) {
  EXPECT_TRUE(DateValid("2024-02-29"));
  EXPECT_FALSE(DateValid("2023-02-29"));
  EXPECT_FALSE(DateValid("1900-02-29"));
  EXPECT_TRUE(DateValid("2000-02-29"));
  EXPECT_FALSE(DateValid("2024-04-31"));
  EXPECT_TRUE(TimestampValid("2024-01-02T03:04:05Z", 0, true));
  EXPECT_FALSE(TimestampValid("2024-01-02T24:04:05Z", 0, true));
  EXPECT_TRUE(TimestampValid("2024-01-02T03:04:05.123", 3, false));
  EXPECT_FALSE(CanonicalInt("012").has_value());
  EXPECT_FALSE(CanonicalInt("-0").has_value());
  EXPECT_EQ(DecimalUnits("-12.50", 2), -1250);
  EXPECT_FALSE(DecimalUnits("12.5", 2).has_value());
  EXPECT_FALSE(DecimalUnits("-0.00", 2).has_value());
  EXPECT_FALSE(DecimalUnits("01.00", 2).has_value());
}

// ---- Running generators ---------------------------------------------------------------------

struct Batch {
  uint64_t seed;
  std::string ns;
};
// kValuesPerGenerator values are spread over these (seed, namespace) pairs.
const std::vector<Batch>& Batches() {
  static const std::vector<Batch> batches = {
      {1, "alpha"}, {42, "ci-worker_7"}, {0xdeadbeefcafef00dull, "q7k2m4x9p3r5t6v8w2y4z6a3b5"}, {~0ull, "z"}};
  return batches;
}

// Counts failures and reports only the first few, so that a broken generator does not print
// 100,000 lines.
class Failures {
 public:
  // Call only on failure, so that passing values cost no message.
  void Add(const std::string& what) {
    if (++count_ <= 5) ADD_FAILURE() << what;
  }
  ~Failures() { EXPECT_EQ(count_, 0) << "values that failed validation"; }

 private:
  int count_ = 0;
};

// Generates kValuesPerGenerator values of one field and hands each to `check` with its batch and
// row index; returns how many were checked.
int ForEachValue(const json& spec, const std::function<void(const FieldValue&, const Batch&, uint64_t)>& check) {
  const FieldGenerator gen("f", spec);
  const int per_batch = kValuesPerGenerator / static_cast<int>(Batches().size());
  int checked = 0;
  for (const Batch& batch : Batches()) {
    for (uint64_t i = 0; i < static_cast<uint64_t>(per_batch); ++i) {
      Rng rng = Rng::ForField(batch.seed, "f", i);
      check(gen.Generate({&rng, batch.ns, i, nullptr}), batch, i);
      ++checked;
    }
  }
  return checked;
}

// The same for generators whose values must pass `valid`; returns the distinct values seen.
std::set<std::string> CheckAll(const json& spec, const std::function<bool(const std::string&)>& valid) {
  Failures failures;
  std::set<std::string> distinct;
  const int n = ForEachValue(spec, [&](const FieldValue& v, const Batch&, uint64_t) {
    if (!v || !valid(*v)) failures.Add(spec.dump() + " gave " + v.value_or("NULL"));
    if (v && distinct.size() < 1000) distinct.insert(*v);
  });
  EXPECT_EQ(n, kValuesPerGenerator);
  return distinct;
}

// ---- Rng --------------------------------------------------------------------------------------

TEST(Rng, MatchesTheReferenceAlgorithms) {
  // Reference values from an independent implementation of splitmix64, xoshiro256** and FNV-1a.
  uint64_t state = 0;
  EXPECT_EQ(SplitMix64(&state), 0xe220a8397b1dcdafull);
  EXPECT_EQ(Fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(Fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  Rng zero(0);
  EXPECT_EQ(zero.Next(), 0x99ec5f36cb75f2b4ull);
  EXPECT_EQ(zero.Next(), 0xbf6e1f784956452aull);
  EXPECT_EQ(zero.Next(), 0x1a5f849d4933e6e0ull);
  Rng forty_two(42);
  EXPECT_EQ(forty_two.Next(), 0x15780b2e0c2ec716ull);
  Rng field = Rng::ForField(7, "email", 3);
  EXPECT_EQ(field.Next(), 0xfc16bda2de590a8eull);
  EXPECT_EQ(field.Next(), 0x590e5efe5c45aab9ull);
}

TEST(Rng, BelowIsUniformOverSmallBounds) {
  Rng rng(5);
  int counts[6] = {};
  for (int i = 0; i < 60000; ++i) ++counts[rng.Below(6)];
  for (int c : counts) EXPECT_NEAR(c, 10000, 500);
}

TEST(Rng, UniformCoversItsWholeClosedRange) {
  Rng rng(9);
  std::set<int64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const int64_t v = rng.Uniform(-3, 3);
    ASSERT_GE(v, -3);
    ASSERT_LE(v, 3);
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), 7u);
  EXPECT_EQ(rng.Uniform(5, 5), 5);
  const int64_t lo = std::numeric_limits<int64_t>::min(), hi = std::numeric_limits<int64_t>::max();
  std::set<bool> signs;
  for (int i = 0; i < 100; ++i) signs.insert(rng.Uniform(lo, hi) < 0);
  EXPECT_EQ(signs.size(), 2u);
}

TEST(Rng, ChanceHonoursItsProbability) {
  Rng rng(11);
  int hits = 0;
  for (int i = 0; i < 100000; ++i) hits += rng.Chance(0.3) ? 1 : 0;
  EXPECT_NEAR(hits, 30000, 600);
  EXPECT_FALSE(rng.Chance(0));
  EXPECT_TRUE(rng.Chance(1));
}

// ---- Each generator, 100,000 values, each validated -----------------------------------------

TEST(Generators, UniqueIdsEmbedNamespaceAndIndexAndNeverRepeat) {
  Failures failures;
  std::unordered_set<std::string> seen;
  const int n = ForEachValue({{"gen", "unique_id"}, {"prefix", "usr_"}, {"max_length", 60}},
                             [&](const FieldValue& v, const Batch& batch, uint64_t i) {
                               const std::string expected = "usr_" + batch.ns + "-" + std::to_string(i);
                               if (v != expected) failures.Add("got " + v.value_or("NULL") + ", want " + expected);
                               if (!seen.insert(*v).second) failures.Add("repeated " + *v);
                             });
  EXPECT_EQ(n, kValuesPerGenerator);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kValuesPerGenerator));
}

TEST(Generators, UniqueIdsAndEmailsOfTwoNamespacesAreDisjoint) {
  for (const char* gen : {"unique_id", "email"}) {
    const FieldGenerator g("f", {{"gen", gen}});
    std::unordered_set<std::string> all;
    for (std::string_view ns : {"lease-a", "lease-b"}) {
      for (uint64_t i = 0; i < static_cast<uint64_t>(kValuesPerGenerator); ++i) {
        Rng rng = Rng::ForField(1, "f", i);  // the same seed: only the namespace differs
        all.insert(*g.Generate({&rng, ns, i, nullptr}));
      }
    }
    EXPECT_EQ(all.size(), 2u * kValuesPerGenerator) << gen;
  }
}

TEST(Generators, EmailsAreValidUniqueAndCarryTheNamespace) {
  Failures failures;
  std::unordered_set<std::string> seen;
  std::set<std::string> domains;
  const int n = ForEachValue({{"gen", "email"}}, [&](const FieldValue& v, const Batch& batch, uint64_t i) {
    if (!v || !EmailValid(*v)) failures.Add("invalid e-mail " + v.value_or("NULL"));
    const std::string tail = "." + batch.ns + "." + std::to_string(i) + "@";
    if (v->find(tail) == std::string::npos && !v->starts_with(batch.ns + "."))
      failures.Add(*v + " does not carry " + tail);
    if (!seen.insert(*v).second) failures.Add("repeated " + *v);
    domains.insert(v->substr(v->find('@') + 1));
  });
  EXPECT_EQ(n, kValuesPerGenerator);
  EXPECT_EQ(domains, (std::set<std::string>{"example.com", "example.net", "example.org"}));
}

TEST(Generators, EmailsWithALongNamespaceStillFitTheLocalPartLimit) {
  const FieldGenerator g("f", {{"gen", "email"}, {"domain", "mail.example.test"}});
  const std::string ns(40, 'n');
  Rng rng(1);
  const FieldValue v = g.Generate({&rng, ns, 18446744073709551615ull, nullptr});
  ASSERT_TRUE(v.has_value());
  EXPECT_TRUE(EmailValid(*v)) << *v;
  EXPECT_EQ(*v, ns + ".18446744073709551615@mail.example.test");
}

TEST(Generators, CardNumbersPassLuhnAndMatchTheirBrand) {
  std::map<std::string, int> brands;
  CheckAll({{"gen", "card_number"}}, [&](const std::string& v) {
    const std::string brand = BrandOf(v);
    ++brands[brand];
    return !brand.empty() && LuhnValid(v);
  });
  for (const char* b : {"visa", "mastercard", "amex", "discover"}) EXPECT_NEAR(brands[b], 25000, 1000) << b;
  CheckAll({{"gen", "card_number"}, {"brands", {"amex", "mastercard"}}},
           [](const std::string& v) { return (BrandOf(v) == "amex" || BrandOf(v) == "mastercard") && LuhnValid(v); });
}

TEST(Generators, IbansAreValidForEveryCountry) {
  std::map<std::string, int> countries;
  bool saw_letter_in_fr_account = false;
  CheckAll({{"gen", "iban"}}, [&](const std::string& v) {
    ++countries[v.substr(0, 2)];
    if (v.starts_with("FR") && std::any_of(v.begin() + 14, v.begin() + 25, IsUpper)) saw_letter_in_fr_account = true;
    return IbanProblem(v).empty();
  });
  EXPECT_EQ(countries.size(), 5u);
  EXPECT_TRUE(saw_letter_in_fr_account);
  CheckAll({{"gen", "iban"}, {"country", "FR"}, {"format", "print"}}, [](const std::string& v) {
    std::string electronic;
    for (size_t i = 0; i < v.size(); ++i) {
      if (i % 5 == 4) {
        if (v[i] != ' ') return false;
      } else {
        electronic.push_back(v[i]);
      }
    }
    return electronic.starts_with("FR") && IbanProblem(electronic).empty();
  });
}

TEST(Generators, PostalCodesFollowEachCountrysFormat) {
  for (const std::string& country : kAllCountries) {
    const std::set<std::string> distinct = CheckAll({{"gen", "postal_code"}, {"country", country}},
                                                    [&](const std::string& v) { return PostalValid(country, v); });
    EXPECT_GT(distinct.size(), 500u) << country;
  }
  CheckAll({{"gen", "postal_code"}, {"country", "US"}, {"zip_plus4", true}},
           [](const std::string& v) { return v.size() == 10 && PostalValid("US", v); });
}

TEST(Generators, PhonesAreE164ForEachCountry) {
  for (const std::string& country : kAllCountries) {
    CheckAll({{"gen", "phone"}, {"country", country}}, [&](const std::string& v) { return PhoneValid(country, v); });
  }
}

TEST(Generators, FieldsFollowTheCountryOfTheirRow) {
  const RowGenerator rows = RowGenerator::FromJson(json::parse(R"([
    {"name": "country", "gen": "country"},
    {"name": "zip", "gen": "postal_code", "country_field": "country"},
    {"name": "phone", "gen": "phone", "country_field": "country"},
    {"name": "city", "gen": "city", "country_field": "country"},
    {"name": "bank_country", "gen": "country", "countries": ["DE", "GB", "FR", "NL", "ES"]},
    {"name": "iban", "gen": "iban", "country_field": "bank_country"}
  ])"));
  Failures failures;
  std::map<std::string, int> countries;
  std::map<std::string, std::set<std::string>> cities;
  const int per_batch = kValuesPerGenerator / static_cast<int>(Batches().size());
  for (const Batch& batch : Batches()) {
    for (uint64_t i = 0; i < static_cast<uint64_t>(per_batch); ++i) {
      const RowValues row = rows.Generate(batch.seed, batch.ns, i);
      ASSERT_EQ(row.size(), 6u);
      const std::string& country = *row[0].value;
      ++countries[country];
      if (kAllCountries.count(country) != 1) failures.Add("country " + country);
      if (!PostalValid(country, *row[1].value)) failures.Add(country + " postal code " + *row[1].value);
      if (!PhoneValid(country, *row[2].value)) failures.Add(country + " phone " + *row[2].value);
      if (!NameLike(*row[3].value)) failures.Add("city " + *row[3].value);
      cities[country].insert(*row[3].value);
      if (!row[5].value->starts_with(*row[4].value)) failures.Add("iban " + *row[5].value + " for " + *row[4].value);
      if (!IbanProblem(*row[5].value).empty()) failures.Add("iban " + *row[5].value);
    }
  }
  EXPECT_EQ(countries.size(), kAllCountries.size());
  // No city is shared between countries: each country has its own list.
  std::set<std::string> all_cities;
  size_t total = 0;
  for (const auto& [country, names] : cities) {
    total += names.size();
    all_cities.insert(names.begin(), names.end());
  }
  EXPECT_EQ(all_cities.size(), total);
}

TEST(Generators, NamesStreetsCitiesAndCountriesAreWellFormed) {
  EXPECT_GE(CheckAll({{"gen", "first_name"}}, NameLike).size(), 25u);
  EXPECT_GE(CheckAll({{"gen", "last_name"}}, NameLike).size(), 25u);
  CheckAll({{"gen", "full_name"}},
           [](const std::string& v) { return NameLike(v) && v.find(' ') != std::string::npos; });
  CheckAll({{"gen", "street"}}, StreetValid);
  CheckAll({{"gen", "city"}}, NameLike);
  EXPECT_EQ(CheckAll({{"gen", "country"}}, [](const std::string& v) { return kAllCountries.count(v) == 1; }).size(),
            kAllCountries.size());
  EXPECT_EQ(CheckAll({{"gen", "country"}, {"countries", {"NL", "JP"}}},
                     [](const std::string& v) { return v == "NL" || v == "JP"; })
                .size(),
            2u);
}

TEST(Generators, IntsStayInTheirRangeAndReachBothEnds) {
  const std::set<std::string> distinct = CheckAll({{"gen", "int"}, {"min", -5}, {"max", 5}}, [](const std::string& v) {
    const std::optional<int64_t> n = CanonicalInt(v);
    return n && *n >= -5 && *n <= 5;
  });
  EXPECT_EQ(distinct.size(), 11u);
  CheckAll({{"gen", "int"}, {"min", std::numeric_limits<int64_t>::min()}, {"max", std::numeric_limits<int64_t>::max()}},
           [](const std::string& v) { return CanonicalInt(v).has_value(); });
}

TEST(Generators, SequencesCountFromStartByStep) {
  Failures failures;
  ForEachValue({{"gen", "sequence"}, {"start", 1000}, {"step", -3}},
               [&](const FieldValue& v, const Batch&, uint64_t i) {
                 if (v != std::to_string(1000 - 3 * static_cast<int64_t>(i)))
                   failures.Add("sequence gave " + v.value_or("NULL"));
               });
}

TEST(Generators, DecimalsHaveTheirScaleAndStayInRange) {
  std::set<int64_t> ends;
  CheckAll({{"gen", "decimal"}, {"min", -1.5}, {"max", "2.25"}, {"scale", 2}}, [&](const std::string& v) {
    const std::optional<int64_t> units = DecimalUnits(v, 2);
    if (units && (*units == -150 || *units == 225)) ends.insert(*units);
    return units && *units >= -150 && *units <= 225;
  });
  EXPECT_EQ(ends.size(), 2u);
  CheckAll({{"gen", "decimal"}, {"min", 0.001}, {"max", 0.019}, {"scale", 2}}, [](const std::string& v) {
    return v == "0.01";  // 0.001 rounds up, 0.019 down: only 0.01 remains
  });
  CheckAll({{"gen", "decimal"}, {"min", 10}, {"max", 99}, {"scale", 0}}, [](const std::string& v) {
    const std::optional<int64_t> units = DecimalUnits(v, 0);
    return units && *units >= 10 && *units <= 99;
  });
}

TEST(Generators, DatesAreRealCalendarDaysInRange) {
  const std::set<std::string> distinct =
      CheckAll({{"gen", "date"}, {"min", "2023-12-30"}, {"max", "2024-03-01"}},
               [](const std::string& v) { return DateValid(v) && v >= "2023-12-30" && v <= "2024-03-01"; });
  EXPECT_EQ(distinct.size(), 63u);  // 2 + 31 + 29 + 1 days
  EXPECT_TRUE(distinct.count("2024-02-29"));
  CheckAll({{"gen", "date"}},
           [](const std::string& v) { return DateValid(v) && v >= "2000-01-01" && v <= "2029-12-31"; });
}

TEST(Generators, TimestampsAreIso8601InRange) {
  CheckAll({{"gen", "timestamp"}, {"min", "1969-12-31T23:59:58Z"}, {"max", "1970-01-01T00:00:01Z"}, {"precision", 3}},
           [](const std::string& v) {
             return TimestampValid(v, 3, true) && v >= "1969-12-31T23:59:58.000Z" && v <= "1970-01-01T00:00:01.000Z";
           });
  CheckAll({{"gen", "timestamp"}, {"with_zone", false}}, [](const std::string& v) {
    return TimestampValid(v, 0, false) && v >= "2000-01-01T00:00:00" && v <= "2029-12-31T23:59:59";
  });
}

TEST(Generators, BoolsFollowTheirRatio) {
  int trues = 0;
  CheckAll({{"gen", "bool"}, {"true_ratio", 0.2}}, [&](const std::string& v) {
    trues += v == "true" ? 1 : 0;
    return v == "true" || v == "false";
  });
  EXPECT_NEAR(trues, 20000, 600);
}

TEST(Generators, ChoicesFollowTheirWeights) {
  std::map<std::string, int> counts;
  int nulls = 0;
  ForEachValue({{"gen", "choice"}, {"values", {"standard", "premium", 7, nullptr}}, {"weights", {6, 3, 1, 0}}},
               [&](const FieldValue& v, const Batch&, uint64_t) { v ? ++counts[*v] : ++nulls; });
  EXPECT_EQ(nulls, 0);  // weight 0
  EXPECT_EQ(counts.size(), 3u);
  EXPECT_NEAR(counts["standard"], 60000, 800);
  EXPECT_NEAR(counts["premium"], 30000, 800);
  EXPECT_NEAR(counts["7"], 10000, 600);
  const std::set<std::string> uniform =
      CheckAll({{"gen", "choice"}, {"values", {"a", "b", true}}},
               [](const std::string& v) { return v == "a" || v == "b" || v == "true"; });
  EXPECT_EQ(uniform.size(), 3u);
}

TEST(Generators, ConstAndNullRatio) {
  CheckAll({{"gen", "const"}, {"value", "x y"}}, [](const std::string& v) { return v == "x y"; });
  int nulls = 0;
  ForEachValue({{"gen", "email"}, {"null_ratio", 0.25}},
               [&](const FieldValue& v, const Batch&, uint64_t) { nulls += v ? 0 : 1; });
  EXPECT_NEAR(nulls, 25000, 600);
  Failures failures;
  ForEachValue({{"gen", "const"}, {"value", nullptr}}, [&](const FieldValue& v, const Batch&, uint64_t) {
    if (v.has_value()) failures.Add("not NULL");
  });
}

// The products recipe's SKU (templates/builders/product.json).
const json kSkuSpec = {{"gen", "unique_code"}, {"pattern", "^[A-Z]{3}-[0-9]{8}$"}, {"index_chars", 5}};

TEST(Generators, UniqueCodesMatchTheSkuFormatAndCarryTheRowIndex) {
  Failures failures;
  std::unordered_set<std::string> seen;
  std::map<std::string, std::set<std::string>> heads;  // namespace → the codes' first 7 characters
  const int n = ForEachValue(kSkuSpec, [&](const FieldValue& v, const Batch& batch, uint64_t i) {
    if (!v || v->size() != 12 || !SkuValid(*v)) return failures.Add("invalid SKU " + v.value_or("NULL"));
    if (TrailingNumber(*v, 5) != static_cast<int64_t>(i)) {
      failures.Add(*v + " does not end in row " + std::to_string(i));
    }
    if (!seen.insert(*v).second) failures.Add("repeated " + *v);
    heads[batch.ns].insert(v->substr(0, 7));
  });
  EXPECT_EQ(n, kValuesPerGenerator);
  EXPECT_EQ(seen.size(), static_cast<size_t>(kValuesPerGenerator)) << "unique within and across the namespaces";
  std::set<std::string> distinct_heads;
  for (const auto& [ns, h] : heads) {
    EXPECT_EQ(h.size(), 1u) << ns << ": one namespace, one slot";
    distinct_heads.insert(h.begin(), h.end());
  }
  EXPECT_EQ(distinct_heads.size(), Batches().size()) << "each namespace in a slot of its own";
}

TEST(Generators, UniqueCodesOfTwoNamespacesAreDisjointUpToTheirCapacity) {
  const FieldGenerator g("sku", kSkuSpec);
  std::unordered_set<std::string> all;
  for (std::string_view ns : {"lease-a", "lease-b"}) {
    for (uint64_t i = 0; i < 100000; ++i) {  // the whole capacity of five index digits
      Rng rng = Rng::ForField(1, "sku", i);
      const FieldValue v = g.Generate({&rng, ns, i, nullptr});
      ASSERT_TRUE(v && SkuValid(*v)) << v.value_or("NULL");
      all.insert(*v);
    }
  }
  EXPECT_EQ(all.size(), 200000u);
}

TEST(Generators, UniqueCodesFailBeyondTheirCapacityInsteadOfRepeating) {
  const FieldGenerator g("sku", kSkuSpec);
  Rng rng(1);
  EXPECT_EQ(TrailingNumber(*g.Generate({&rng, "ns", 99999, nullptr}), 5), 99999);
  try {
    g.Generate({&rng, "ns", 100000, nullptr});
    FAIL() << "no error past the capacity";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(std::string(e.what()).find("field 'sku': row index 100000 is beyond the capacity"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("100000 codes per namespace"), std::string::npos) << e.what();
  }
}

TEST(Generators, UniqueCodesFollowOtherPatterns) {
  // A fixed prefix, escaped specials, and letters and digits mixed in one class.
  const std::set<std::string> prefixed =
      CheckAll({{"gen", "unique_code"}, {"pattern", "TST-[0-9]{8}"}, {"index_chars", 5}},
               [](const std::string& v) { return SkuValid(v) && v.starts_with("TST-") && v.size() == 12; });
  EXPECT_EQ(prefixed.size(), 1000u);
  CheckAll({{"gen", "unique_code"}, {"pattern", R"(ord\.[a-z]{2}\$[A-Z0-9]{6})"}, {"index_chars", 4}},
           [](const std::string& v) {
             return v.size() == 13 && v.starts_with("ord.") && IsLower(v[4]) && IsLower(v[5]) && v[6] == '$' &&
                    std::all_of(v.begin() + 7, v.end(), [](char c) { return IsUpper(c) || IsDigit(c); });
           });
  // Four alphanumeric index characters count in base 36 (digits before letters): 36^4 codes.
  const FieldGenerator g("c", {{"gen", "unique_code"}, {"pattern", "[A-Z0-9]{6}"}, {"index_chars", 4}});
  Rng rng(1);
  EXPECT_EQ(g.Generate({&rng, "ns", 36, nullptr})->substr(2), "0010");
  EXPECT_EQ(g.Generate({&rng, "ns", 36 * 36 * 36 * 36 - 1, nullptr})->substr(2), "ZZZZ");
  EXPECT_THROW(g.Generate({&rng, "ns", 36 * 36 * 36 * 36, nullptr}), Error);
}

TEST(Generators, UniqueCodesOfNamespacesThatShareASlotCollideAsDocumented) {
  // Ten slots ("[0-9]" before the index digit): of eleven namespaces, two must share one, and
  // then they give the same codes — the reason the header states the odds for real patterns.
  const FieldGenerator g("c", {{"gen", "unique_code"}, {"pattern", "[0-9]{2}"}, {"index_chars", 1}});
  std::map<std::string, std::string> by_slot;
  bool shared = false;
  for (int k = 0; k < 11 && !shared; ++k) {
    const std::string ns = "worker" + std::to_string(k);
    Rng rng(1);
    const std::string slot = g.Generate({&rng, ns, 0, nullptr})->substr(0, 1);
    if (auto it = by_slot.find(slot); it != by_slot.end()) {
      shared = true;
      for (uint64_t i = 0; i < 10; ++i) {
        EXPECT_EQ(g.Generate({&rng, ns, i, nullptr}), g.Generate({&rng, it->second, i, nullptr}));
      }
    }
    by_slot[slot] = ns;
  }
  EXPECT_TRUE(shared);
}

TEST(Generators, DerivedFieldsKeepTheEndsOfAnEarlierField) {
  // Card payments: card_last4 must equal the card number's last four digits (0006's CHECK).
  const RowGenerator rows = RowGenerator::FromJson(json::parse(R"([
    {"name": "card_number", "gen": "card_number"},
    {"name": "card_last4", "gen": "derive", "field": "card_number", "last": 4},
    {"name": "iban", "gen": "iban"},
    {"name": "iban_country", "gen": "derive", "field": "iban", "first": 2}
  ])"));
  Failures failures;
  const int per_batch = kValuesPerGenerator / static_cast<int>(Batches().size());
  for (const Batch& batch : Batches()) {
    for (uint64_t i = 0; i < static_cast<uint64_t>(per_batch); ++i) {
      const RowValues row = rows.Generate(batch.seed, batch.ns, i);
      const std::string& card = *row[0].value;
      const std::string& last4 = *row[1].value;
      if (!LuhnValid(card) || last4.size() != 4 || !AllDigits(last4) || card.compare(card.size() - 4, 4, last4) != 0) {
        failures.Add("card " + card + " with last4 " + last4);
      }
      const std::string& iban = *row[2].value;
      const std::string& country = *row[3].value;
      if (!IbanProblem(iban).empty() || country.size() != 2 || iban.rfind(country, 0) != 0) {
        failures.Add("iban " + iban + " with country " + country);
      }
    }
  }
}

TEST(Generators, DerivedFieldsAreNullExactlyWhenTheirSourceIs) {
  const RowGenerator rows = RowGenerator::FromJson(json::parse(R"([
    {"name": "card_number", "gen": "card_number", "null_ratio": 0.3},
    {"name": "card_last4", "gen": "derive", "field": "card_number", "last": 4}])"));
  int nulls = 0;
  for (uint64_t i = 0; i < 10000; ++i) {
    const RowValues row = rows.Generate(5, "ns", i);
    ASSERT_EQ(row[0].value.has_value(), row[1].value.has_value()) << i;
    nulls += row[0].value ? 0 : 1;
  }
  EXPECT_NEAR(nulls, 3000, 200);
}

TEST(Generators, DerivedFieldsCountCharactersNotBytes) {
  const RowGenerator rows = RowGenerator::FromJson(json::parse(R"([
    {"name": "name", "gen": "const", "value": "Müller"},
    {"name": "head", "gen": "derive", "field": "name", "first": 2},
    {"name": "tail", "gen": "derive", "field": "name", "last": 5},
    {"name": "all", "gen": "derive", "field": "name", "last": 6}])"));
  const RowValues row = rows.Generate(1, "ns", 0);
  EXPECT_EQ(row[1].value, "Mü");
  EXPECT_EQ(row[2].value, "üller");
  EXPECT_EQ(row[3].value, "Müller");
}

TEST(Generators, FixedValuesReplaceAFieldAndFeedTheFieldsThatReadIt) {
  const RowGenerator rows = RowGenerator::FromJson(json::parse(R"([
    {"name": "country", "gen": "country"},
    {"name": "zip", "gen": "postal_code", "country_field": "country"},
    {"name": "card_number", "gen": "card_number"},
    {"name": "card_last4", "gen": "derive", "field": "card_number", "last": 4},
    {"name": "amount", "gen": "int"}])"));
  for (uint64_t i = 0; i < 1000; ++i) {
    const RowValues free = rows.Generate(3, "ns", i);
    const RowValues fixed = rows.Generate(3, "ns", i, {{"country", "NL"}, {"card_number", "4111111111111111"}});
    EXPECT_EQ(fixed[0].value, "NL");
    EXPECT_TRUE(PostalValid("NL", *fixed[1].value)) << *fixed[1].value;
    EXPECT_EQ(fixed[2].value, "4111111111111111");
    EXPECT_EQ(fixed[3].value, "1111");
    EXPECT_EQ(fixed[4].value, free[4].value) << "a field that reads no fixed one keeps its value";
  }
}

// ---- Determinism ------------------------------------------------------------------------------

const std::vector<json>& EverySpec() {
  static const std::vector<json> specs = {{{"gen", "unique_id"}},
                                          kSkuSpec,
                                          {{"gen", "sequence"}},
                                          {{"gen", "email"}},
                                          {{"gen", "card_number"}},
                                          {{"gen", "iban"}},
                                          {{"gen", "postal_code"}},
                                          {{"gen", "phone"}},
                                          {{"gen", "first_name"}},
                                          {{"gen", "last_name"}},
                                          {{"gen", "full_name"}},
                                          {{"gen", "street"}},
                                          {{"gen", "city"}},
                                          {{"gen", "country"}},
                                          {{"gen", "int"}},
                                          {{"gen", "decimal"}},
                                          {{"gen", "date"}},
                                          {{"gen", "timestamp"}},
                                          {{"gen", "bool"}},
                                          {{"gen", "choice"}, {"values", {"a", "b", "c"}}},
                                          {{"gen", "const"}, {"value", 1}}};
  return specs;
}

std::vector<FieldValue> Sample(const json& spec, uint64_t seed, std::string_view ns) {
  const FieldGenerator g("f", spec);
  std::vector<FieldValue> out;
  for (uint64_t i = 0; i < 200; ++i) {
    Rng rng = Rng::ForField(seed, "f", i);
    out.push_back(g.Generate({&rng, ns, i, nullptr}));
  }
  return out;
}

TEST(Determinism, TheSameSeedGivesTheSameValues) {
  for (const json& spec : EverySpec()) EXPECT_EQ(Sample(spec, 77, "ns"), Sample(spec, 77, "ns")) << spec.dump();
}

TEST(Determinism, ADifferentSeedGivesDifferentRandomValues) {
  for (const json& spec : EverySpec()) {
    const std::string gen = spec["gen"];
    const bool random = gen != "unique_id" && gen != "unique_code" && gen != "sequence" && gen != "const";
    EXPECT_EQ(Sample(spec, 77, "ns") != Sample(spec, 78, "ns"), random) << spec.dump();
  }
}

TEST(Determinism, TheNamespaceChangesOnlyIdsCodesAndEmails) {
  for (const json& spec : EverySpec()) {
    const std::string gen = spec["gen"];
    const bool namespaced = gen == "unique_id" || gen == "unique_code" || gen == "email";
    EXPECT_EQ(Sample(spec, 77, "one") != Sample(spec, 77, "two"), namespaced) << spec.dump();
  }
}

TEST(Determinism, ARowDependsOnlyOnSeedNamespaceAndIndex) {
  const RowGenerator a = RowGenerator::FromJson(json::parse(R"([
    {"name": "id", "gen": "unique_id"}, {"name": "card", "gen": "card_number"}])"));
  const RowGenerator b = RowGenerator::FromJson(json::parse(R"([
    {"name": "card", "gen": "card_number"}, {"name": "extra", "gen": "int"}, {"name": "id", "gen": "unique_id"}])"));
  for (uint64_t i : {0ull, 5ull, 99999ull}) {
    const RowValues ra = a.Generate(3, "ns", i), rb = b.Generate(3, "ns", i);
    EXPECT_EQ(ra[1].value, rb[0].value);  // reordering and adding fields leaves the card alone
    EXPECT_EQ(ra[0].value, rb[2].value);
    EXPECT_EQ(a.Generate(3, "ns", i)[1].value, ra[1].value);  // no hidden state between calls
  }
}

TEST(Determinism, GoldenValuesPinTheGeneratorsVersion) {
  // If this fails, the same (seed, namespace, spec) now gives other values: recipes replayed from
  // a printed seed would not reproduce. Bump kGeneratorsVersion and update the expectations.
  static_assert(kGeneratorsVersion == 1);
  const RowGenerator rows = RowGenerator::FromJson(json::parse(R"([
    {"name": "id", "gen": "unique_id", "prefix": "usr_"},
    {"name": "email", "gen": "email"},
    {"name": "country", "gen": "country"},
    {"name": "zip", "gen": "postal_code", "country_field": "country"},
    {"name": "phone", "gen": "phone", "country_field": "country"},
    {"name": "card", "gen": "card_number"},
    {"name": "iban", "gen": "iban", "format": "print"},
    {"name": "price", "gen": "decimal", "min": "0.99", "max": 99.99},
    {"name": "born", "gen": "date"},
    {"name": "at", "gen": "timestamp", "precision": 3},
    {"name": "tier", "gen": "choice", "values": ["standard", "premium", null], "weights": [0.7, 0.2, 0.1]}
  ])"));
  std::vector<std::string> got;
  for (const NamedValue& nv : rows.Generate(2024, "lease-q7k2m4", 0)) got.push_back(nv.value.value_or("NULL"));
  const std::vector<std::string> want = {"usr_lease-q7k2m4-0",
                                         "ethan.fischer.lease-q7k2m4.0@example.net",
                                         "JP",
                                         "956-6833",
                                         "+819035685639",
                                         "374216016497794",
                                         "GB41 ZIMI 9521 1923 3649 27",
                                         "97.46",
                                         "2023-01-20",
                                         "2018-05-26T07:44:34.893Z",
                                         "standard"};
  EXPECT_EQ(got, want);
  // The namespace's slot in a unique_code: splitmix64 of FNV-1a 64 of "lease-q7k2m4", mod 26^3 × 10^3
  // (computed apart from generators.cc), in the letters and first three digits; the row in the rest.
  const FieldGenerator sku("sku", kSkuSpec);
  Rng rng(1);
  EXPECT_EQ(sku.Generate({&rng, "lease-q7k2m4", 42, nullptr}), "RLL-10500042");
}

// ---- Spec errors ------------------------------------------------------------------------------

// The message of the Error(kInvalidArgument) that building `spec` throws, or "no error".
std::string SpecError(const json& spec) {
  try {
    FieldGenerator("price", spec);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("field 'price': ", 0), 0u) << e.what();
    return e.what();
  }
  return "no error";
}

TEST(SpecErrors, NameTheProblem) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("email")", "must be a JSON object"},
      {R"({})", "no \"gen\""},
      {R"({"gen": 3})", "parameter 'gen' must be a string"},
      {R"({"gen": "emial"})", "unknown generator 'emial' (known: bool, card_number, choice"},
      {R"({"gen": "int", "mni": 1})", "unknown parameter 'mni' for gen 'int' (accepted: gen, max, min, null_ratio)"},
      {R"({"gen": "int", "min": 5, "max": 1})", "min 5 is greater than max 1"},
      {R"({"gen": "int", "min": "1"})", "parameter 'min' must be an integer, got string"},
      {R"({"gen": "int", "max": 1.5})", "parameter 'max' must be an integer"},
      {R"({"gen": "int", "max": 18446744073709551615})", "beyond the int64 range"},
      {R"({"gen": "email", "null_ratio": 2})", "parameter 'null_ratio' must be in [0, 1]"},
      {R"({"gen": "email", "domain": "gmail.com"})", "e-mail domain 'gmail.com' is not reserved"},
      {R"({"gen": "email", "domain": "Example.com"})", "is not reserved"},
      {R"({"gen": "email", "domain": "a.test", "domains": ["b.test"]})", "give 'domain' or 'domains', not both"},
      {R"({"gen": "card_number", "brand": "diners"})", "unknown card brand 'diners'"},
      {R"({"gen": "card_number", "brands": []})", "must be a non-empty array of strings"},
      {R"({"gen": "iban", "country": "US"})", "country 'US' is not supported by iban (supported: DE, GB, FR, NL, ES)"},
      {R"({"gen": "iban", "format": "pretty"})", "parameter 'format' must be \"electronic\" or \"print\""},
      {R"({"gen": "iban", "country": "DE", "country_field": "c"})", "at most one of 'country', 'countries'"},
      {R"({"gen": "postal_code", "countries": ["DE", "XX"]})", "country 'XX' is not supported by postal_code"},
      {R"({"gen": "phone", "country_field": ""})", "'country_field' must name a field"},
      {R"({"gen": "country", "countries": ["UK"]})", "country 'UK' is not supported"},
      {R"({"gen": "choice"})", "needs 'values'"},
      {R"({"gen": "choice", "values": []})", "parameter 'values' must be a non-empty array"},
      {R"({"gen": "choice", "values": [[1]]})", "must be a string, number, boolean or null"},
      {R"({"gen": "choice", "values": ["a", "b"], "weights": [1]})", "'weights' must be an array of 2 numbers"},
      {R"({"gen": "choice", "values": ["a"], "weights": [-1]})", "every weight must be a number in [0, 1e12]"},
      {R"({"gen": "choice", "values": ["a", "b"], "weights": [0, 0]})", "must not all be zero"},
      {R"({"gen": "const"})", "needs 'value'"},
      {R"({"gen": "decimal", "min": 5, "max": 1})", "no number with 2 decimals lies in [min, max]"},
      {R"({"gen": "decimal", "min": 0.001, "max": 0.009})", "no number with 2 decimals"},
      {R"({"gen": "decimal", "scale": 19})", "parameter 'scale' must be in [0, 18]"},
      {R"({"gen": "decimal", "max": "12,5"})", "parameter 'max' (12,5) is not a number"},
      {R"({"gen": "decimal", "max": 1e30})", "is not a number that fits the scale"},
      {R"({"gen": "date", "min": "2023-02-29"})", "parameter 'min' (\"2023-02-29\") is not a date"},
      {R"({"gen": "date", "min": "2024-01-02", "max": "2024-01-01"})", "min date is after max date"},
      {R"({"gen": "timestamp", "max": "2024-01-01T24:00:00"})", "parameter 'max' (\"2024-01-01T24:00:00\")"},
      {R"({"gen": "timestamp", "precision": 7})", "parameter 'precision' must be in [0, 6]"},
      {R"({"gen": "bool", "true_ratio": 1.5})", "parameter 'true_ratio' must be in [0, 1]"},
      {R"({"gen": "sequence", "step": 0})", "parameter 'step' must not be 0"},
      {R"({"gen": "unique_id", "prefix": "a b"})", "'prefix' must be at most 64 characters of [A-Za-z0-9_.:-]"},
      {R"({"gen": "unique_id", "prefix": "abcdef", "max_length": 8})", "max_length 8 cannot hold prefix 'abcdef'"},
      {R"({"gen": "first_name", "country": "DE"})", "unknown parameter 'country' for gen 'first_name'"},
      {R"({"gen": "unique_code", "index_chars": 4})", "gen 'unique_code' needs 'pattern'"},
      {R"({"gen": "unique_code", "pattern": "[A-Z]{3}-[0-9]{8}"})", "gen 'unique_code' needs 'index_chars'"},
      {R"({"gen": "unique_code", "pattern": "[A-Z]{3}-[0-9]{8}", "index_chars": 11})",
       "parameter 'index_chars' must be in [1, 10]"},
      {R"({"gen": "unique_code", "pattern": "[A-Z]{3}-[0-9]{8}", "index_chars": 0})", "must be in [1, 10]"},
      {R"({"gen": "unique_code", "pattern": "[A-Z]{3}-[0-9]{4,8}", "index_chars": 4})",
       "'{4,8}': give an exact count {n}"},
      {R"({"gen": "unique_code", "pattern": "[A-F]{3}", "index_chars": 1})", "'[A-F]' is not a supported class"},
      {R"({"gen": "unique_code", "pattern": "[A-Z0-9A-Z]{3}", "index_chars": 1})", "is not a supported class"},
      {R"({"gen": "unique_code", "pattern": "[A-Z{3}", "index_chars": 1})", "a '[' is never closed"},
      {R"({"gen": "unique_code", "pattern": "[A-Z]{0}", "index_chars": 1})", "a count must be from 1 to 64"},
      {R"({"gen": "unique_code", "pattern": "[A-Z]{x}", "index_chars": 1})", "is not a count from 1 to 64"},
      {R"({"gen": "unique_code", "pattern": "[0-9]{40}[A-Z]{40}", "index_chars": 1})", "at most 64 characters"},
      {R"({"gen": "unique_code", "pattern": "SKU-[0-9]+", "index_chars": 1})", "'+' is not supported here"},
      {R"({"gen": "unique_code", "pattern": "ABC-[0-9]", "index_chars": 1})", "has 1 class character(s)"},
      {R"({"gen": "unique_code", "pattern": "", "index_chars": 1})", "it is empty"},
      {R"({"gen": "unique_code", "pattern": "^$", "index_chars": 1})", "it is empty"},
      {R"({"gen": "derive", "last": 4})", "gen 'derive' needs 'field'"},
      {R"({"gen": "derive", "field": "", "last": 4})", "gen 'derive' needs 'field'"},
      {R"({"gen": "derive", "field": "card_number"})", "needs exactly one of 'first' and 'last'"},
      {R"({"gen": "derive", "field": "card_number", "first": 2, "last": 4})", "needs exactly one of"},
      {R"({"gen": "derive", "field": "card_number", "last": 0})", "parameter 'last' must be in [1, 64]"},
      {R"({"gen": "derive", "field": "card_number", "first": 65})", "parameter 'first' must be in [1, 64]"},
      {R"({"gen": "derive", "field": "card_number", "last": "4"})", "parameter 'last' must be an integer"},
      {R"({"gen": "derive", "field": "card_number", "last": 4, "digits": 4})", "unknown parameter 'digits'"},
  };
  for (const auto& [spec, message] : cases) {
    const std::string got = SpecError(json::parse(spec));
    EXPECT_NE(got.find(message), std::string::npos) << spec << "\n  gave: " << got << "\n  want: " << message;
  }
}

TEST(SpecErrors, AFieldNeedsAName) {
  try {
    FieldGenerator("", {{"gen", "int"}});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument);
  }
}

std::string RowError(const char* fields) {
  try {
    RowGenerator::FromJson(json::parse(fields));
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  return "no error";
}

TEST(SpecErrors, RowsCheckNamesAndCountryFieldsUpFront) {
  EXPECT_NE(RowError(R"({"name": "a", "gen": "int"})").find("must be a JSON array"), std::string::npos);
  EXPECT_NE(RowError(R"([{"gen": "int"}])").find("non-empty string \"name\""), std::string::npos);
  EXPECT_NE(RowError(R"([{"name": "a", "gen": "int"}, {"name": "a", "gen": "int"}])").find("two fields are named 'a'"),
            std::string::npos);
  EXPECT_NE(
      RowError(R"([{"name": "zip", "gen": "postal_code", "country_field": "c"}, {"name": "c", "gen": "country"}])")
          .find("field 'zip': country_field 'c' does not name an earlier field"),
      std::string::npos);
  EXPECT_NE(RowError(R"([{"name": "c", "gen": "country", "null_ratio": 0.1},
                         {"name": "zip", "gen": "postal_code", "country_field": "c"}])")
                .find("can be NULL"),
            std::string::npos);
  EXPECT_NE(RowError(R"([{"name": "c", "gen": "country"}, {"name": "iban", "gen": "iban", "country_field": "c"}])")
                .find("can produce 'US', which gen 'iban' does not support"),
            std::string::npos);
  EXPECT_EQ(RowError(R"([{"name": "c", "gen": "country", "countries": ["DE", "NL"]},
                         {"name": "iban", "gen": "iban", "country_field": "c"}])"),
            "no error");
}

TEST(SpecErrors, RowsCheckWhatADerivedFieldReadsUpFront) {
  EXPECT_EQ(RowError(R"([{"name": "card_number", "gen": "card_number"},
                         {"name": "card_last4", "gen": "derive", "field": "card_nubmer", "last": 4}])"),
            "field 'card_last4': derives from 'card_nubmer', which is not a field of this row");
  EXPECT_EQ(RowError(R"([{"name": "card_last4", "gen": "derive", "field": "card_number", "last": 4},
                         {"name": "card_number", "gen": "card_number"}])"),
            "field 'card_last4': derives from 'card_number', which is declared after it: a field can only derive "
            "from an earlier one (move 'card_number' above 'card_last4')");
  EXPECT_EQ(RowError(R"([{"name": "x", "gen": "derive", "field": "x", "first": 1}])"),
            "field 'x': derives from 'x', itself");
  EXPECT_EQ(RowError(R"([{"name": "card_number", "gen": "card_number"},
                         {"name": "card_last4", "gen": "derive", "field": "card_number", "last": 4}])"),
            "no error");
}

// The message of the Error(kInvalidArgument) that generating row 0 throws, or "no error".
std::string GenerateError(const RowGenerator& rows, std::string_view ns, uint64_t index = 0) {
  try {
    rows.Generate(1, ns, index);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << e.what();
    return e.what();
  }
  return "no error";
}

TEST(GenerateErrors, NameTheFieldAndTheProblem) {
  const RowGenerator ids =
      RowGenerator::FromJson(json::parse(R"([{"name": "id", "gen": "unique_id", "max_length": 12}])"));
  EXPECT_EQ(GenerateError(ids, "abcde", 100000), "no error");  // "abcde-100000" is 12 characters
  EXPECT_NE(GenerateError(ids, "abcdef", 100000).find("field 'id': id 'abcdef-100000' is 13 characters"),
            std::string::npos);
  EXPECT_NE(GenerateError(ids, "abcdefgh", 1000).find("over max_length 12"), std::string::npos);
  EXPECT_NE(GenerateError(ids, "Bad.NS").find("namespace 'Bad.NS' is not 1 to 40 characters"), std::string::npos);
  EXPECT_NE(GenerateError(ids, "").find("namespace"), std::string::npos);
  EXPECT_NE(GenerateError(ids, std::string(41, 'a')).find("namespace"), std::string::npos);

  // A country_field whose value the reader cannot use is only known when generating.
  const RowGenerator iban = RowGenerator::FromJson(json::parse(R"([
    {"name": "c", "gen": "const", "value": "US"}, {"name": "iban", "gen": "iban", "country_field": "c"}])"));
  EXPECT_NE(GenerateError(iban, "ns").find("field 'iban': country 'US' from field 'c' is not supported by iban"),
            std::string::npos);
  const RowGenerator null_country = RowGenerator::FromJson(json::parse(R"([
    {"name": "c", "gen": "const", "value": null}, {"name": "zip", "gen": "postal_code", "country_field": "c"}])"));
  EXPECT_NE(GenerateError(null_country, "ns").find("country_field 'c' is NULL"), std::string::npos);

  const FieldGenerator alone("zip", {{"gen", "postal_code"}, {"country_field", "country"}});
  Rng rng(1);
  try {
    alone.Generate({&rng, "ns", 0, nullptr});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has no value in this row"), std::string::npos) << e.what();
  }

  // A derived field whose source is too short, or missing when generated alone.
  const RowGenerator short_source = RowGenerator::FromJson(json::parse(R"([
    {"name": "code", "gen": "const", "value": "12"}, {"name": "last4", "gen": "derive", "field": "code", "last": 4}])"));
  EXPECT_NE(
      GenerateError(short_source, "ns").find("field 'last4': the value of field 'code' (\"12\") has fewer than 4"),
      std::string::npos)
      << GenerateError(short_source, "ns");
  const FieldGenerator orphan("last4", {{"gen", "derive"}, {"field", "card_number"}, {"last", 4}});
  try {
    orphan.Generate({&rng, "ns", 0, nullptr});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("field 'card_number' has no value in this row"), std::string::npos)
        << e.what();
  }

  const FieldGenerator seq("n", {{"gen", "sequence"}, {"start", std::numeric_limits<int64_t>::max()}});
  try {
    seq.Generate({&rng, "ns", 1, nullptr});
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overflows int64"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace testpool::builders
