#include "orchestrator/builders/generator_domains.h"

#include <cassert>
#include <vector>

namespace testpool::builders {

namespace {

// -- Built-in tables. Changing one changes generated values: bump kGeneratorsVersion.

constexpr std::string_view kFirstNames[] = {
    "James", "Mary",   "Olivia", "Liam",   "Emma",   "Noah",  "Sophie", "Lucas", "Hannah",    "Leon",  "Mia",
    "Louis", "Chloe",  "Hugo",   "Lea",    "Daan",   "Julia", "Sem",    "Lucia", "Mateo",     "Sofia", "Hiroshi",
    "Yuki",  "Haruto", "Aoi",    "Oliver", "Amelia", "Jack",  "Isla",   "Ethan", "Charlotte", "Zoe"};
constexpr std::string_view kLastNames[] = {
    "Smith",  "Johnson",  "Brown",   "Williams",  "Taylor",    "Wilson", "Tremblay", "Roy",
    "Gagnon", "Mueller",  "Schmidt", "Schneider", "Fischer",   "Weber",  "Martin",   "Bernard",
    "Dubois", "Durand",   "de Jong", "Jansen",    "de Vries",  "Bakker", "Garcia",   "Fernandez",
    "Lopez",  "Martinez", "Sato",    "Suzuki",    "Takahashi", "Tanaka", "O'Brien",  "Smith-Jones"};
constexpr std::string_view kStreetNames[] = {
    "Oak",     "Maple",    "Cedar",  "Elm",      "Pine",   "Lake",   "Hill",   "Park",    "Church", "Mill",
    "Station", "Victoria", "King",   "Queen",    "High",   "Bridge", "River",  "Forest",  "Garden", "Meadow",
    "Spring",  "Sunset",   "Willow", "Chestnut", "Harbor", "Market", "Castle", "Orchard", "Valley", "Main"};
constexpr std::string_view kStreetKinds[] = {"Street", "Road",  "Avenue", "Lane",      "Drive",
                                             "Way",    "Court", "Place",  "Boulevard", "Terrace"};

struct CountryCities {
  std::string_view country;
  std::string_view cities[8];
};
constexpr CountryCities kCities[] = {
    {"US", {"New York", "Chicago", "Houston", "Phoenix", "Seattle", "Denver", "Boston", "Austin"}},
    {"CA", {"Toronto", "Montreal", "Vancouver", "Calgary", "Ottawa", "Edmonton", "Winnipeg", "Halifax"}},
    {"GB", {"London", "Manchester", "Birmingham", "Leeds", "Glasgow", "Liverpool", "Bristol", "Edinburgh"}},
    {"DE", {"Berlin", "Hamburg", "Munich", "Cologne", "Frankfurt", "Stuttgart", "Leipzig", "Dresden"}},
    {"FR", {"Paris", "Lyon", "Marseille", "Toulouse", "Nice", "Nantes", "Bordeaux", "Lille"}},
    {"NL", {"Amsterdam", "Rotterdam", "Utrecht", "Eindhoven", "Groningen", "Tilburg", "Almere", "Breda"}},
    {"ES", {"Madrid", "Barcelona", "Valencia", "Sevilla", "Zaragoza", "Malaga", "Bilbao", "Granada"}},
    {"JP", {"Tokyo", "Osaka", "Yokohama", "Nagoya", "Sapporo", "Kobe", "Kyoto", "Fukuoka"}},
};

// Real UK postcode areas (a subset), and London districts whose outward code ends in a letter.
constexpr std::string_view kGbAreas[] = {
    "B",  "E",  "G",  "L",  "M",  "N",  "S",  "W",  "AB", "AL", "BA", "BB", "BD", "BH", "BL", "BN", "BR",
    "BS", "BT", "CA", "CB", "CF", "CH", "CM", "CO", "CR", "CT", "CV", "CW", "DA", "DD", "DE", "DH", "DL",
    "DN", "DT", "DY", "EH", "EN", "EX", "FK", "FY", "GL", "GU", "HA", "HD", "HG", "HP", "HU", "HX", "IG",
    "IP", "IV", "KA", "KT", "KY", "LA", "LE", "LN", "LS", "LU", "ME", "MK", "NE", "NG", "NN", "NP", "NR",
    "NW", "OX", "PE", "PL", "PO", "PR", "RG", "RH", "RM", "SE", "SG", "SK", "SL", "SN", "SO", "SR", "SS",
    "ST", "SW", "TN", "TQ", "TS", "TW", "UB", "WA", "WD", "WF", "WN", "WR", "WS", "WV", "YO", "ZE"};
constexpr std::string_view kGbLetteredDistricts[] = {
    "W1A",  "W1B",  "W1C",  "W1D",  "W1F",  "W1G",  "W1H",  "W1J",  "W1K",  "W1S",  "W1T",  "W1U",
    "W1W",  "SW1A", "SW1E", "SW1H", "SW1P", "SW1V", "SW1W", "SW1X", "SW1Y", "EC1A", "EC1M", "EC1N",
    "EC1R", "EC1V", "EC1Y", "EC2A", "EC2M", "EC2N", "EC2R", "EC2V", "EC2Y", "EC3A", "EC3M", "EC3N",
    "EC3R", "EC3V", "EC4A", "EC4M", "EC4N", "EC4R", "EC4V", "EC4Y", "WC1A", "WC1B", "WC1E", "WC1H",
    "WC1N", "WC1R", "WC1V", "WC1X", "WC2A", "WC2B", "WC2E", "WC2H", "WC2N", "WC2R", "E1W",  "N1C"};
constexpr std::string_view kGbInwardLetters = "ABDEFGHJLNPQRSTUWXYZ";  // no C I K M O V
constexpr std::string_view kCaFirstLetters = "ABCEGHJKLMNPRSTVXY";     // no D F I O Q U W Z
constexpr std::string_view kCaOtherLetters = "ABCEGHJKLMNPRSTVWXYZ";   // no D F I O Q U
constexpr std::string_view kUpperLetters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr std::string_view kFrOverseas[] = {"971", "972", "973", "974", "976"};

constexpr std::string_view kCaAreaCodes[] = {"204", "226", "236", "249", "250", "289", "306", "343", "365", "403",
                                             "416", "418", "431", "437", "438", "450", "506", "514", "519", "548",
                                             "579", "581", "587", "604", "613", "639", "647", "705", "709", "778",
                                             "780", "782", "807", "819", "825", "867", "873", "902", "905"};
constexpr std::string_view kDeMobilePrefixes[] = {"151", "152", "157", "159", "160", "162", "163", "170", "171",
                                                  "172", "173", "174", "175", "176", "177", "178", "179"};

struct PrefixRange {
  int lo, hi, digits;
};
struct CardBrand {
  std::string_view name;
  int length;
  std::vector<PrefixRange> prefixes;
};
// In the order of kCardBrands.
const std::vector<CardBrand>& CardBrands() {
  static const std::vector<CardBrand> brands = {
      {"visa", 16, {{4, 4, 1}}},
      {"mastercard", 16, {{51, 55, 2}, {2221, 2720, 4}}},
      {"amex", 15, {{34, 34, 2}, {37, 37, 2}}},
      {"discover", 16, {{6011, 6011, 4}, {644, 649, 3}, {65, 65, 2}}},
  };
  return brands;
}

// -- Small helpers.

void AppendDigits(std::string* out, Rng& rng, int n) {
  for (int i = 0; i < n; ++i) out->push_back(static_cast<char>('0' + rng.Below(10)));
}

char Digit(Rng& rng) { return static_cast<char>('0' + rng.Below(10)); }

char PickChar(Rng& rng, std::string_view alphabet) { return alphabet[rng.Below(alphabet.size())]; }

// -- Check digits.

char LuhnCheckDigit(std::string_view payload) {
  int sum = 0;
  bool twice = true;  // the digit next to the check digit is doubled
  for (auto it = payload.rbegin(); it != payload.rend(); ++it) {
    int d = *it - '0';
    if (twice) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
    twice = !twice;
  }
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

// ISO 7064 MOD 97-10 of an alphanumeric string, letters counting as 10..35.
int Mod97(std::string_view s) {
  int r = 0;
  for (char c : s) {
    if (c >= '0' && c <= '9') {
      r = (r * 10 + (c - '0')) % 97;
    } else {
      r = (r * 100 + (c - 'A' + 10)) % 97;
    }
  }
  return r;
}

// The French RIB key of bank (5 digits), branch (5) and account (11 alphanumerics; a letter
// counts as its digit in the RIB table A,J→1 B,K,S→2 … I,R,Z→9).
int RibKey(std::string_view bank, std::string_view branch, std::string_view account) {
  constexpr std::string_view kRibLetterDigits = "12345678912345678923456789";  // A..Z
  auto number = [&](std::string_view s) {
    uint64_t v = 0;
    for (char c : s) v = v * 10 + static_cast<uint64_t>(c >= 'A' ? kRibLetterDigits[c - 'A'] - '0' : c - '0');
    return v;
  };
  uint64_t sum = 89 * number(bank) + 15 * number(branch) + 3 * number(account);
  return 97 - static_cast<int>(sum % 97);
}

// A Spanish "dígito de control" over 10 digits (the bank+branch one is over "00"+8 digits).
char EsControlDigit(std::string_view ten_digits) {
  constexpr int kWeights[10] = {1, 2, 4, 8, 5, 10, 9, 7, 3, 6};
  int sum = 0;
  for (int i = 0; i < 10; ++i) sum += (ten_digits[i] - '0') * kWeights[i];
  int d = 11 - sum % 11;
  return static_cast<char>('0' + (d == 11 ? 0 : d == 10 ? 1 : d));
}

// A NANP area code (NPA: [2-9][0-8][0-9]) or exchange (NXX: [2-9][0-9][0-9]), never N11.
std::string NanpCode(Rng& rng, bool area) {
  for (;;) {
    std::string c = {PickChar(rng, "23456789"), PickChar(rng, area ? "012345678" : "0123456789"),
                     PickChar(rng, "0123456789")};
    if (!(c[1] == '1' && c[2] == '1')) return c;
  }
}

}  // namespace

// ---- Text helpers -----------------------------------------------------------------------------

void AppendPadded(std::string* out, uint64_t value, int width) {
  char buf[24];
  int n = 0;
  do {
    buf[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  for (int i = n; i < width; ++i) out->push_back('0');
  while (n > 0) out->push_back(buf[--n]);
}

std::string Padded(uint64_t value, int width) {
  std::string s;
  AppendPadded(&s, value, width);
  return s;
}

// ---- card_number ------------------------------------------------------------------------------

std::string MakeCardNumber(std::string_view brand_name, Rng& rng) {
  const CardBrand* brand = nullptr;
  for (const CardBrand& b : CardBrands()) {
    if (b.name == brand_name) brand = &b;
  }
  assert(brand != nullptr);
  const PrefixRange& p = rng.Pick(brand->prefixes);
  std::string number = Padded(static_cast<uint64_t>(rng.Uniform(p.lo, p.hi)), p.digits);
  AppendDigits(&number, rng, brand->length - 1 - static_cast<int>(number.size()));
  number.push_back(LuhnCheckDigit(number));
  return number;
}

// ---- iban -------------------------------------------------------------------------------------

std::string MakeIban(std::string_view cc, Rng& rng) {
  std::string bban;
  if (cc == "DE") {
    bban.push_back(static_cast<char>('1' + rng.Below(8)));  // bank codes start with 1–8
    AppendDigits(&bban, rng, 7 + 10);
  } else if (cc == "GB") {
    for (int i = 0; i < 4; ++i) bban.push_back(PickChar(rng, kUpperLetters));
    AppendDigits(&bban, rng, 6 + 8);
  } else if (cc == "NL") {
    for (int i = 0; i < 4; ++i) bban.push_back(PickChar(rng, kUpperLetters));
    AppendDigits(&bban, rng, 10);
  } else if (cc == "FR") {
    std::string bank, branch, account;
    AppendDigits(&bank, rng, 5);
    AppendDigits(&branch, rng, 5);
    AppendDigits(&account, rng, 11);
    if (rng.Chance(0.25)) {  // some accounts hold a letter
      const size_t at = rng.Below(11);
      account[at] = PickChar(rng, kUpperLetters);
    }
    bban = bank + branch + account + Padded(static_cast<uint64_t>(RibKey(bank, branch, account)), 2);
  } else {
    assert(cc == "ES");
    std::string bank_branch, account;
    AppendDigits(&bank_branch, rng, 8);
    AppendDigits(&account, rng, 10);
    bban = bank_branch + EsControlDigit("00" + bank_branch) + EsControlDigit(account) + account;
  }
  std::string iban(cc);
  iban += Padded(static_cast<uint64_t>(98 - Mod97(bban + std::string(cc) + "00")), 2);
  iban += bban;
  return iban;
}

std::string IbanPrintForm(std::string_view iban) {
  std::string grouped;
  for (size_t i = 0; i < iban.size(); ++i) {
    if (i > 0 && i % 4 == 0) grouped.push_back(' ');
    grouped.push_back(iban[i]);
  }
  return grouped;
}

// ---- postal_code ------------------------------------------------------------------------------

std::string MakePostalCode(std::string_view cc, bool zip_plus4, Rng& rng) {
  std::string s;
  if (cc == "US") {
    AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(501, 99950)), 5);
    if (zip_plus4) {
      s.push_back('-');
      AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(1, 9999)), 4);
    }
  } else if (cc == "CA") {
    s = {PickChar(rng, kCaFirstLetters), Digit(rng), PickChar(rng, kCaOtherLetters), ' ', Digit(rng),
         PickChar(rng, kCaOtherLetters), Digit(rng)};
  } else if (cc == "GB") {
    if (rng.Below(16) == 0) {
      s = rng.Pick(kGbLetteredDistricts);
    } else {
      s = rng.Pick(kGbAreas);
      AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(1, 29)), 1);
    }
    s += {' ', Digit(rng), PickChar(rng, kGbInwardLetters), PickChar(rng, kGbInwardLetters)};
  } else if (cc == "DE") {
    AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(1001, 99998)), 5);
  } else if (cc == "FR") {
    // 94 metropolitan départements (01–95 but 20), Corsica's two, five overseas: uniformly.
    const int64_t d = rng.Uniform(1, 101);
    if (d <= 94) {
      AppendPadded(&s, static_cast<uint64_t>(d < 20 ? d : d + 1), 2);
      AppendDigits(&s, rng, 3);
    } else if (d == 95) {  // 2A, Corse-du-Sud: 200xx, 201xx
      s = rng.Chance(0.5) ? "200" : "201";
      AppendDigits(&s, rng, 2);
    } else if (d == 96) {  // 2B, Haute-Corse: 202xx, 206xx
      s = rng.Chance(0.5) ? "202" : "206";
      AppendDigits(&s, rng, 2);
    } else {
      s = kFrOverseas[d - 97];
      AppendDigits(&s, rng, 2);
    }
  } else if (cc == "NL") {
    AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(1000, 9999)), 4);
    std::string letters;
    do {
      letters = {PickChar(rng, kUpperLetters), PickChar(rng, kUpperLetters)};
    } while (letters == "SA" || letters == "SD" || letters == "SS");
    s += " " + letters;
  } else if (cc == "ES") {
    AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(1, 52)), 2);
    AppendDigits(&s, rng, 3);
  } else {
    assert(cc == "JP");
    AppendPadded(&s, static_cast<uint64_t>(rng.Uniform(1, 999)), 3);
    s.push_back('-');
    AppendDigits(&s, rng, 4);
  }
  return s;
}

// ---- phone ------------------------------------------------------------------------------------

std::string MakePhoneNumber(std::string_view cc, Rng& rng) {
  std::string s = "+";
  if (cc == "US" || cc == "CA") {
    s += "1";
    s += cc == "CA" ? std::string(rng.Pick(kCaAreaCodes)) : NanpCode(rng, /*area=*/true);
    s += NanpCode(rng, /*area=*/false);
    AppendDigits(&s, rng, 4);
  } else if (cc == "GB") {
    s += "447";
    s.push_back(PickChar(rng, "12345789"));  // 076 is pagers, 070 personal numbers
    AppendDigits(&s, rng, 8);
  } else if (cc == "DE") {
    s += "49";
    s += rng.Pick(kDeMobilePrefixes);
    AppendDigits(&s, rng, 8);
  } else if (cc == "FR") {
    s += "33";
    s.push_back(PickChar(rng, "123456789"));
    AppendDigits(&s, rng, 8);
  } else if (cc == "NL") {
    s += "316";
    s.push_back(PickChar(rng, "12345"));
    AppendDigits(&s, rng, 7);
  } else if (cc == "ES") {
    s += "34";
    s.push_back(PickChar(rng, "6789"));
    AppendDigits(&s, rng, 8);
  } else {  // JP mobile: 070, 080, 090 without the trunk 0
    assert(cc == "JP");
    s += "81";
    s.push_back(PickChar(rng, "789"));
    s.push_back('0');
    AppendDigits(&s, rng, 8);
  }
  return s;
}

// ---- Names, streets, cities -------------------------------------------------------------------

std::string_view PickFirstName(Rng& rng) { return rng.Pick(kFirstNames); }

std::string_view PickLastName(Rng& rng) { return rng.Pick(kLastNames); }

// One draw per statement in the two below: the operands of + are not sequenced, and the order of
// draws must not depend on the compiler.

std::string MakeFullName(Rng& rng) {
  std::string s(rng.Pick(kFirstNames));
  s += ' ';
  s += rng.Pick(kLastNames);
  return s;
}

std::string MakeStreetAddress(Rng& rng) {
  std::string s = std::to_string(rng.Uniform(1, 999));
  s += ' ';
  s += rng.Pick(kStreetNames);
  s += ' ';
  s += rng.Pick(kStreetKinds);
  return s;
}

std::string_view PickCity(std::string_view country, Rng& rng) {
  for (const CountryCities& c : kCities) {
    if (c.country == country) return rng.Pick(c.cities);
  }
  return {};
}

}  // namespace testpool::builders
