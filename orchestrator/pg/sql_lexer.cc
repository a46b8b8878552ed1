#include "orchestrator/pg/sql_lexer.h"

#include <cassert>
#include <cstdint>

namespace testpool::pg {
namespace {

constexpr size_t kNpos = std::string_view::npos;
constexpr size_t kMaxIdentifierBytes = 63;  // NAMEDATALEN - 1

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool IsNewline(char c) { return c == '\n' || c == '\r'; }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsHexDigit(char c) {
  return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
// PostgreSQL's ident_start: letters, '_' and every byte of a multi-byte character.
bool IsIdentStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}
// PostgreSQL's ident_cont: '$' may continue an identifier.
bool IsIdentCont(char c) { return IsIdentStart(c) || IsDigit(c) || c == '$'; }
// Dollar-quote tags, and the digits and letters after a parameter's '$': no '$'.
bool IsTagCont(char c) { return IsIdentStart(c) || IsDigit(c); }
bool IsOpChar(char c) { return std::string_view("~!@#^&|`?+-*/%<>=").find(c) != kNpos; }
char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool At(std::string_view s, size_t p, std::string_view text) {
  return s.substr(p, text.size()) == text;
}

// The position of the newline ending the -- comment at `p`, or s.size().
size_t LineCommentEnd(std::string_view s, size_t p) {
  const size_t nl = s.find_first_of("\r\n", p);
  return nl == kNpos ? s.size() : nl;
}

// Just past the "*/" closing the block comment at `p` (they nest), or kNpos.
size_t BlockCommentEnd(std::string_view s, size_t p) {
  int depth = 0;
  while (p + 1 < s.size()) {
    if (At(s, p, "/*")) {
      ++depth;
      p += 2;
    } else if (At(s, p, "*/")) {
      p += 2;
      if (--depth == 0) return p;
    } else {
      ++p;
    }
  }
  return kNpos;
}

// The quote continuing a string closed just before `p`, or kNpos: PostgreSQL joins literals
// separated by whitespace that holds a newline (and -- comments).
size_t ContinuationQuote(std::string_view s, size_t p) {
  bool newline = false;
  while (p < s.size()) {
    if (IsNewline(s[p])) {
      newline = true;
      ++p;
    } else if (IsSpace(s[p])) {
      ++p;
    } else if (At(s, p, "--")) {
      p = LineCommentEnd(s, p);
    } else {
      break;
    }
  }
  return newline && p < s.size() && s[p] == '\'' ? p : kNpos;
}

// The string whose opening quote is at `p`: returns the position just past its last closing quote
// (continuations included), or kNpos when `s` ends inside it. With `body`, appends the value.
size_t ScanString(std::string_view s, size_t p, bool backslash_escapes, std::string* body) {
  ++p;
  while (true) {
    if (p >= s.size()) return kNpos;
    const char c = s[p];
    if (backslash_escapes && c == '\\') {
      if (p + 1 >= s.size()) return kNpos;
      const char e = s[p + 1];
      if (body != nullptr) {
        body->push_back(e == 'n'   ? '\n'
                        : e == 't' ? '\t'
                        : e == 'r' ? '\r'
                        : e == 'b' ? '\b'
                        : e == 'f' ? '\f'
                                   : e);
      }
      p += 2;
    } else if (c != '\'') {
      if (body != nullptr) body->push_back(c);
      ++p;
    } else if (p + 1 < s.size() && s[p + 1] == '\'') {
      if (body != nullptr) body->push_back('\'');
      p += 2;
    } else {
      ++p;
      const size_t continuation = ContinuationQuote(s, p);
      if (continuation == kNpos) return p;
      p = continuation + 1;
    }
  }
}

// The quoted identifier whose opening quote is at `p`: returns the position just past its closing
// quote, or kNpos. With `body`, appends the name with "" read as ".
size_t ScanQuotedIdentifier(std::string_view s, size_t p, std::string* body) {
  ++p;
  while (true) {
    const size_t quote = s.find('"', p);
    if (quote == kNpos) return kNpos;
    if (body != nullptr) body->append(s.substr(p, quote - p));
    p = quote + 1;
    if (p < s.size() && s[p] == '"') {
      if (body != nullptr) body->push_back('"');
      ++p;
    } else {
      return p;
    }
  }
}

// Length of the dollar-quote delimiter ("$$" or "$tag$") starting at `p`, or 0 when the '$'
// there opens none.
size_t DollarTagLength(std::string_view s, size_t p) {
  size_t q = p + 1;
  if (q < s.size() && IsIdentStart(s[q])) {
    while (q < s.size() && IsTagCont(s[q])) ++q;
  }
  return q < s.size() && s[q] == '$' ? q - p + 1 : 0;
}

// Identifiers longer than NAMEDATALEN - 1 bytes are truncated by the server, at a character
// boundary: it steps over characters by the length their first byte announces (pg_mbcliplen with
// pg_utf_mblen, where a byte that starts no UTF-8 sequence counts as one character), so the
// result is never empty, whatever the bytes.
void TruncateIdentifier(std::string& ident) {
  if (ident.size() <= kMaxIdentifierBytes) return;
  size_t len = 0;
  while (true) {
    const auto lead = static_cast<unsigned char>(ident[len]);
    const size_t n = (lead & 0xE0) == 0xC0 ? 2 : (lead & 0xF0) == 0xE0 ? 3 : (lead & 0xF8) == 0xF0 ? 4 : 1;
    if (len + n > kMaxIdentifierBytes) break;
    len += n;
  }
  ident.resize(len);
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Decodes the body of U&"…" or U&'…' (escape character '\'): \XXXX and \+XXXXXX are code points,
// a UTF-16 surrogate pair may be written as two of them, \\ is a backslash. nullopt when an
// escape is malformed, as the server would refuse it.
std::optional<std::string> DecodeUnicodeEscapes(std::string_view body) {
  std::string out;
  uint32_t high_surrogate = 0;
  size_t i = 0;
  while (i < body.size()) {
    if (body[i] != '\\') {
      if (high_surrogate != 0) return std::nullopt;
      out.push_back(body[i++]);
      continue;
    }
    if (i + 1 < body.size() && body[i + 1] == '\\') {
      if (high_surrogate != 0) return std::nullopt;
      out.push_back('\\');
      i += 2;
      continue;
    }
    size_t digits = 4, start = i + 1;
    if (start < body.size() && body[start] == '+') {
      digits = 6;
      ++start;
    }
    if (start + digits > body.size()) return std::nullopt;
    uint32_t cp = 0;
    for (size_t k = start; k < start + digits; ++k) {
      if (!IsHexDigit(body[k])) return std::nullopt;
      const char c = Lower(body[k]);
      cp = cp * 16 + static_cast<uint32_t>(IsDigit(c) ? c - '0' : c - 'a' + 10);
    }
    i = start + digits;
    if (high_surrogate != 0) {
      if (cp < 0xDC00 || cp > 0xDFFF) return std::nullopt;
      cp = 0x10000 + ((high_surrogate - 0xD800) << 10) + (cp - 0xDC00);
      high_surrogate = 0;
    } else if (cp >= 0xD800 && cp <= 0xDBFF) {
      high_surrogate = cp;
      continue;
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
      return std::nullopt;
    }
    if (cp == 0 || cp > 0x10FFFF) return std::nullopt;
    AppendUtf8(out, cp);
  }
  if (high_surrogate != 0) return std::nullopt;
  return out;
}

// The name of a (complete) quoted identifier token; `quote` is the offset of its opening quote.
std::optional<std::string> IdentifierValue(std::string_view text, size_t quote, bool unicode) {
  std::string body;
  ScanQuotedIdentifier(text, quote, &body);
  if (unicode) {
    std::optional<std::string> decoded = DecodeUnicodeEscapes(body);
    if (!decoded) return std::nullopt;
    body = std::move(*decoded);
  }
  if (body.empty()) return std::nullopt;  // a zero-length identifier: an error
  TruncateIdentifier(body);
  return body;
}

}  // namespace

SqlToken SqlLexer::Next() {
  while (!done_) {
    while (pos_ < s_.size() && IsSpace(s_[pos_])) ++pos_;
    if (pos_ >= s_.size()) break;
    const size_t begin = pos_;
    if (At(s_, begin, "--")) {
      pos_ = LineCommentEnd(s_, begin);
    } else if (At(s_, begin, "/*")) {
      const size_t end = BlockCommentEnd(s_, begin);
      if (end == kNpos) return Unterminated(SqlTokenKind::kComment, begin);
      pos_ = end;
    } else {
      return Scan(begin);
    }
    if (comments_ == Comments::kReturn) return Make(SqlTokenKind::kComment, begin, pos_);
  }
  done_ = true;
  return Make(SqlTokenKind::kEnd, s_.size(), s_.size());
}

// `begin` is neither whitespace nor the start of a comment.
SqlToken SqlLexer::Scan(size_t begin) {
  const char c = s_[begin];
  const char next = begin + 1 < s_.size() ? s_[begin + 1] : '\0';
  const char lc = Lower(c);
  auto string = [&](SqlTokenKind kind, size_t quote, bool backslash_escapes) {
    const size_t end = ScanString(s_, quote, backslash_escapes, nullptr);
    return end == kNpos ? Unterminated(kind, begin) : Make(kind, begin, end);
  };
  auto identifier = [&](SqlTokenKind kind, size_t quote) {
    const size_t end = ScanQuotedIdentifier(s_, quote, nullptr);
    return end == kNpos ? Unterminated(kind, begin) : Make(kind, begin, end);
  };
  // Prefixed literals: the prefix and the quote must touch.
  if (lc == 'e' && next == '\'') return string(SqlTokenKind::kEscapeString, begin + 1, true);
  if ((lc == 'b' || lc == 'x' || lc == 'n') && next == '\'') {
    return string(SqlTokenKind::kString, begin + 1, false);
  }
  if (lc == 'u' && next == '&' && begin + 2 < s_.size()) {
    if (s_[begin + 2] == '\'') return string(SqlTokenKind::kUnicodeString, begin + 2, false);
    if (s_[begin + 2] == '"') return identifier(SqlTokenKind::kUnicodeIdentifier, begin + 2);
  }
  if (c == '\'') return string(SqlTokenKind::kString, begin, false);
  if (c == '"') return identifier(SqlTokenKind::kQuotedIdentifier, begin);
  size_t p = begin + 1;
  if (c == '$') {
    if (IsDigit(next)) {
      while (p < s_.size() && IsTagCont(s_[p])) ++p;
      return Make(SqlTokenKind::kParameter, begin, p);
    }
    const size_t tag_length = DollarTagLength(s_, begin);
    if (tag_length == 0) return Make(SqlTokenKind::kOperator, begin, p);  // a lone '$'
    const size_t close = s_.find(s_.substr(begin, tag_length), begin + tag_length);
    if (close == kNpos) return Unterminated(SqlTokenKind::kDollarString, begin);
    return Make(SqlTokenKind::kDollarString, begin, close + tag_length);
  }
  if (IsIdentStart(c)) {
    while (p < s_.size() && IsIdentCont(s_[p])) ++p;
    return Make(SqlTokenKind::kIdentifier, begin, p);
  }
  if (IsDigit(c) || (c == '.' && IsDigit(next))) {
    while (p < s_.size() && (IsDigit(s_[p]) || IsIdentStart(s_[p]) || s_[p] == '.')) ++p;
    return Make(SqlTokenKind::kNumber, begin, p);
  }
  if (IsOpChar(c)) {
    // An operator runs on over operator characters, but never into a comment.
    while (p < s_.size() && IsOpChar(s_[p]) && !At(s_, p, "--") && !At(s_, p, "/*")) ++p;
  }
  return Make(SqlTokenKind::kOperator, begin, p);
}

SqlToken SqlLexer::Make(SqlTokenKind kind, size_t begin, size_t end) {
  for (; counted_ < begin; ++counted_) {
    if (s_[counted_] == '\n') {
      ++line_;
      line_start_ = counted_ + 1;
    }
  }
  pos_ = end;
  SqlToken token;
  token.kind = kind;
  token.text = s_.substr(begin, end - begin);
  token.offset = begin;
  token.line = line_;
  token.column = static_cast<int>(begin - line_start_) + 1;
  return token;
}

SqlToken SqlLexer::Unterminated(SqlTokenKind what, size_t begin) {
  SqlToken token = Make(SqlTokenKind::kUnterminated, begin, s_.size());
  token.unterminated = what;
  done_ = true;
  return token;
}

bool IsKeyword(const SqlToken& token, std::string_view keyword) {
  if (token.kind != SqlTokenKind::kIdentifier || token.text.size() != keyword.size()) return false;
  for (size_t i = 0; i < keyword.size(); ++i) {
    if (Lower(token.text[i]) != keyword[i]) return false;
  }
  return true;
}

std::optional<std::string> SqlTokenValue(const SqlToken& token) {
  const std::string_view text = token.text;
  switch (token.kind) {
    case SqlTokenKind::kIdentifier: {
      std::string word(text);
      for (char& ch : word) ch = Lower(ch);
      TruncateIdentifier(word);
      return word;
    }
    case SqlTokenKind::kQuotedIdentifier:
      return IdentifierValue(text, 0, /*unicode=*/false);
    case SqlTokenKind::kUnicodeIdentifier:
      return IdentifierValue(text, 2, /*unicode=*/true);
    case SqlTokenKind::kString:
    case SqlTokenKind::kEscapeString: {
      std::string body;
      const size_t quote = text.find('\'');
      ScanString(text, quote, token.kind == SqlTokenKind::kEscapeString, &body);
      return body;
    }
    case SqlTokenKind::kUnicodeString: {
      std::string body;
      ScanString(text, 2, /*backslash_escapes=*/false, &body);
      return DecodeUnicodeEscapes(body);
    }
    case SqlTokenKind::kDollarString: {
      const size_t tag_length = DollarTagLength(text, 0);
      assert(tag_length > 0 && text.size() >= 2 * tag_length);
      return std::string(text.substr(tag_length, text.size() - 2 * tag_length));
    }
    case SqlTokenKind::kNumber:
    case SqlTokenKind::kParameter:
    case SqlTokenKind::kOperator:
    case SqlTokenKind::kComment:
      return std::string(text);
    case SqlTokenKind::kEnd:
    case SqlTokenKind::kUnterminated:
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace testpool::pg
