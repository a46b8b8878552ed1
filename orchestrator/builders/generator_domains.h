// Domain-specific value makers behind the generators of generators.h: card numbers, IBANs,
// postal codes, phone numbers, person names, streets and cities.
//
// Internal to builders/: only generators.cc uses this header. Nothing here reads a spec or reports a
// user error; generators.cc checks parameters and countries first, and a bad argument here is a
// programmer error (asserted). The recipe-facing description of every format is in generators.h.
//
// Determinism. Each maker draws from `rng` in a fixed, documented-by-code order (one draw per
// statement, or inside a braced list, which C++ evaluates left to right), so the same stream
// gives the same value everywhere. The draw order and the built-in tables are part of the
// generated values: changing either changes output, so bump kGeneratorsVersion (generators.h).
//
// Pure code: no I/O, no clock, no global mutable state; safe to call from several threads with
// different Rngs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "orchestrator/builders/rng.h"

namespace testpool::builders {

// ---- Text helpers shared with generators.cc --------------------------------------------------

// Appends `value` in decimal, left-padded with zeros to at least `width` digits.
void AppendPadded(std::string* out, uint64_t value, int width);
// `value` in decimal, left-padded with zeros to at least `width` digits.
std::string Padded(uint64_t value, int width);

// ---- card_number ------------------------------------------------------------------------------

// The brands MakeCardNumber knows, in the order card_number picks them from.
inline constexpr std::string_view kCardBrands[] = {"visa", "mastercard", "amex", "discover"};

// A card number of `brand` (one of kCardBrands, asserted): one of the brand's IIN prefixes, random
// digits up to the brand's length, and a valid Luhn check digit.
std::string MakeCardNumber(std::string_view brand, Rng& rng);

// ---- iban -------------------------------------------------------------------------------------

// An IBAN of `country` (DE, GB, FR, NL or ES, asserted) in electronic form, with a national
// BBAN whose own check digits are valid (the French RIB key, the Spanish control digits) and
// valid ISO 13616 mod-97 check digits.
std::string MakeIban(std::string_view country, Rng& rng);

// `iban` in print form: groups of four characters separated by single spaces.
std::string IbanPrintForm(std::string_view iban);

// ---- postal_code ------------------------------------------------------------------------------

// A postal code of `country` (US CA GB DE FR NL ES JP, asserted) in the format generators.h
// lists; `zip_plus4` adds a "-NNNN" extension to US codes and is ignored elsewhere.
std::string MakePostalCode(std::string_view country, bool zip_plus4, Rng& rng);

// ---- phone ------------------------------------------------------------------------------------

// An E.164 phone number of `country` (US CA GB DE FR NL ES JP, asserted), a mobile number where
// the country's plan distinguishes them.
std::string MakePhoneNumber(std::string_view country, Rng& rng);

// ---- Names, streets, cities -------------------------------------------------------------------

// Entries of the built-in ASCII lists (static storage).
std::string_view PickFirstName(Rng& rng);
std::string_view PickLastName(Rng& rng);
// "First Last".
std::string MakeFullName(Rng& rng);
// "12 Oak Street": a house number in [1, 999], a street name and a kind of street.
std::string MakeStreetAddress(Rng& rng);
// A city of `country` (static storage), or "" when there is no list for it (every country of
// kCountries has one).
std::string_view PickCity(std::string_view country, Rng& rng);

}  // namespace testpool::builders
