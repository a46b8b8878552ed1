#include "orchestrator/proxy/codec.h"

#include <cassert>
#include <limits>

namespace testpool::proxy {
namespace {

uint32_t GetU32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return uint32_t{u[0]} << 24 | uint32_t{u[1]} << 16 | uint32_t{u[2]} << 8 | uint32_t{u[3]};
}

void PutU32(char* p, uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

// A type byte as it reads in an error message: 'Q', or its code when it is not printable.
std::string ShowType(char type) {
  const auto u = static_cast<unsigned char>(type);
  if (u >= 0x20 && u < 0x7f) return std::string("'") + type + "'";
  return "0x" + std::string(1, "0123456789abcdef"[u >> 4]) + "0123456789abcdef"[u & 0xf];
}

// Runs `parse` over `body`, requires it to consume every byte (as PostgreSQL's pq_getmsgend
// does: trailing bytes mean the peer and we disagree about the format), and prefixes any error
// with the message's name so the FATAL the client gets says which message was malformed.
template <typename F>
auto ParseWhole(const char* what, std::string_view body, F&& parse) {
  try {
    BodyReader r(body);
    auto result = parse(r);
    if (!r.AtEnd()) {
      throw ProtocolError(std::to_string(body.size() - r.position()) + " unexpected byte(s) after the last field");
    }
    return result;
  } catch (const ProtocolError& e) {
    throw ProtocolError(std::string(what) + ": " + e.what());
  }
}

Target ParseTarget(const char* what, std::string_view body) {
  return ParseWhole(what, body, [](BodyReader& r) {
    Target t;
    t.kind = static_cast<char>(r.Byte());
    if (t.kind != 'S' && t.kind != 'P') {
      throw ProtocolError("kind " + ShowType(t.kind) + " is neither 'S' (statement) nor 'P' (portal)");
    }
    t.name = r.CString();
    return t;
  });
}

std::string EncodeTarget(char type, char kind, std::string_view name) {
  assert(kind == 'S' || kind == 'P');
  return MessageBuilder(type).Byte(static_cast<uint8_t>(kind)).CString(name).Finish();
}

std::string EncodeFields(char type, const Fields& f) {
  MessageBuilder b(type);
  for (const auto& [code, value] : f.fields) {
    assert(code != 0);  // a zero code is the list's terminator
    b.Byte(static_cast<uint8_t>(code)).CString(value);
  }
  return b.Byte(0).Finish();
}

}  // namespace

// ---- FrameReader ----

void FrameReader::Feed(std::string_view bytes) {
  // Compact before appending (views may be invalidated by Feed): when everything was consumed the
  // buffer is simply emptied, keeping its capacity; otherwise the unread tail is moved to the
  // front only when the consumed prefix is at least as long as it, so each byte is moved at most
  // a constant number of times on average, however the stream is cut.
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 0 && consumed_ >= buffer_.size() - consumed_) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes);
}

std::optional<MessageView> FrameReader::Next() {
  const size_t available = buffered();
  const char* frame = buffer_.data() + consumed_;
  const size_t length_at = untyped_next_ ? 0 : 1;
  if (available < length_at + 4) return std::nullopt;

  // The length is checked as soon as it has arrived, before the body: a bogus length is refused
  // at once instead of making us buffer up to a gigabyte first.
  const size_t length = GetU32(frame + length_at);
  if (untyped_next_) {
    // A start-up packet's body holds at least the int32 telling which packet it is.
    if (length < 8) {
      throw ProtocolError("start-up packet length " + std::to_string(length) + " is below the minimum of 8");
    }
    if (length > kMaxStartupBytes) {
      throw ProtocolError("start-up packet length " + std::to_string(length) + " exceeds the limit of " +
                          std::to_string(kMaxStartupBytes) + " bytes");
    }
  } else {
    if (length < 4) {
      throw ProtocolError("message " + ShowType(frame[0]) + " has length " + std::to_string(length) +
                          ", below the minimum of 4 (the length counts itself)");
    }
    if (length > kMaxMessageBytes) {
      throw ProtocolError("message " + ShowType(frame[0]) + " has length " + std::to_string(length) +
                          ", above the limit of " + std::to_string(kMaxMessageBytes) + " bytes");
    }
  }
  const size_t frame_size = length_at + length;
  if (available < frame_size) return std::nullopt;

  MessageView view;
  view.type = untyped_next_ ? 0 : frame[0];
  view.body = std::string_view(frame + length_at + 4, length - 4);
  view.raw = std::string_view(frame, frame_size);
  consumed_ += frame_size;
  return view;
}

std::optional<FrameReader::Header> FrameReader::Peek() const {
  const size_t length_at = untyped_next_ ? 0 : 1;
  if (buffered() < length_at + 4) return std::nullopt;
  const char* frame = buffer_.data() + consumed_;
  return Header{untyped_next_ ? '\0' : frame[0], GetU32(frame + length_at)};
}

// ---- BodyReader ----

uint8_t BodyReader::Byte() { return static_cast<uint8_t>(Bytes(1)[0]); }

int16_t BodyReader::Int16() {
  const std::string_view b = Bytes(2);
  const auto hi = static_cast<unsigned char>(b[0]);
  const auto lo = static_cast<unsigned char>(b[1]);
  return static_cast<int16_t>(static_cast<uint16_t>(hi << 8 | lo));
}

int32_t BodyReader::Int32() { return static_cast<int32_t>(GetU32(Bytes(4).data())); }

std::string_view BodyReader::CString() {
  const size_t nul = body_.find('\0', pos_);
  if (nul == std::string_view::npos) {
    throw ProtocolError("string at offset " + std::to_string(pos_) + " has no terminating NUL");
  }
  const std::string_view s = body_.substr(pos_, nul - pos_);
  pos_ = nul + 1;
  return s;
}

std::string_view BodyReader::Bytes(size_t n) {
  if (n > body_.size() - pos_) {
    throw ProtocolError("message cut short: " + std::to_string(n) + " byte(s) needed at offset " +
                        std::to_string(pos_) + " of a " + std::to_string(body_.size()) + "-byte body");
  }
  const std::string_view s = body_.substr(pos_, n);
  pos_ += n;
  return s;
}

std::string_view BodyReader::Rest() { return Bytes(body_.size() - pos_); }

// ---- MessageBuilder ----

MessageBuilder::MessageBuilder(char type) : out_(1, type), length_at_(1) { out_.append(4, '\0'); }

MessageBuilder MessageBuilder::Untyped() {
  MessageBuilder b(0);
  b.out_.assign(4, '\0');
  b.length_at_ = 0;
  return b;
}

MessageBuilder& MessageBuilder::Byte(uint8_t v) {
  out_.push_back(static_cast<char>(v));
  return *this;
}

MessageBuilder& MessageBuilder::Int16(int16_t v) {
  const auto u = static_cast<uint16_t>(v);
  out_.push_back(static_cast<char>(u >> 8));
  out_.push_back(static_cast<char>(u));
  return *this;
}

MessageBuilder& MessageBuilder::Int32(int32_t v) {
  char b[4];
  PutU32(b, static_cast<uint32_t>(v));
  out_.append(b, 4);
  return *this;
}

MessageBuilder& MessageBuilder::CString(std::string_view s) {
  assert(s.find('\0') == std::string_view::npos);
  out_.append(s);
  out_.push_back('\0');
  return *this;
}

MessageBuilder& MessageBuilder::Bytes(std::string_view s) {
  out_.append(s);
  return *this;
}

std::string MessageBuilder::Finish() {
  const size_t length = out_.size() - length_at_;
  assert(length <= kMaxMessageBytes);
  PutU32(out_.data() + length_at_, static_cast<uint32_t>(length));
  return std::move(out_);
}

// ---- Start-up packets ----

std::optional<std::string> StartupMessage::Param(std::string_view name) const {
  for (const auto& [n, v] : params) {
    if (n == name) return v;
  }
  return std::nullopt;
}

StartupPacket ParseStartupPacket(std::string_view body) {
  return ParseWhole("start-up packet", body, [](BodyReader& r) -> StartupPacket {
    const int32_t code = r.Int32();
    switch (code) {
      case kSslRequestCode:
        return SslRequest{};
      case kGssEncRequestCode:
        return GssEncRequest{};
      case kCancelRequestCode: {
        CancelRequest c;
        c.pid = r.Int32();
        c.key = r.Int32();
        return c;
      }
      default:
        break;
    }
    StartupMessage m;
    m.protocol = code;
    // Before 3.0 the rest of the packet had another layout; PostgreSQL refuses such a version
    // before reading further, and so must our caller, which needs only the number for that.
    if ((code >> 16) < 3) {
      r.Rest();
      return m;
    }
    while (true) {
      const std::string_view name = r.CString();
      if (name.empty()) break;
      const std::string_view value = r.CString();
      m.params.emplace_back(std::string(name), std::string(value));
    }
    return m;
  });
}

std::string EncodeStartupMessage(const StartupMessage& m) {
  MessageBuilder b = MessageBuilder::Untyped();
  b.Int32(m.protocol);
  for (const auto& [name, value] : m.params) {
    assert(!name.empty());  // an empty name ends the list
    b.CString(name).CString(value);
  }
  return b.Byte(0).Finish();
}

std::string EncodeCancelRequest(const CancelRequest& m) {
  return MessageBuilder::Untyped().Int32(kCancelRequestCode).Int32(m.pid).Int32(m.key).Finish();
}

// ---- Frontend messages ----

Query ParseQuery(std::string_view body) {
  return ParseWhole("Query", body, [](BodyReader& r) { return Query{r.CString()}; });
}

std::string EncodeQuery(std::string_view text) { return MessageBuilder('Q').CString(text).Finish(); }

Parse ParseParse(std::string_view body) {
  return ParseWhole("Parse", body, [body](BodyReader& r) {
    Parse p;
    p.statement = r.CString();
    p.query = r.CString();
    // The types are forwarded raw, but checked here so a forwarded Parse is always well formed.
    const size_t types_at = r.position();
    const int16_t count = r.Int16();
    if (count < 0) throw ProtocolError("negative parameter type count " + std::to_string(count));
    r.Bytes(size_t{4} * static_cast<size_t>(count));
    p.param_types = body.substr(types_at, r.position() - types_at);
    return p;
  });
}

std::string EncodeParse(std::string_view statement, std::string_view query, std::string_view param_types) {
  MessageBuilder b('P');
  b.CString(statement).CString(query);
  if (param_types.empty()) {
    b.Int16(0);
  } else {
    b.Bytes(param_types);
  }
  return b.Finish();
}

Bind ParseBind(std::string_view body) {
  return ParseWhole("Bind", body, [](BodyReader& r) {
    Bind b;
    b.portal = r.CString();
    b.statement = r.CString();
    b.rest = r.Rest();
    return b;
  });
}

std::string EncodeBind(std::string_view portal, std::string_view statement, std::string_view rest) {
  return MessageBuilder('B').CString(portal).CString(statement).Bytes(rest).Finish();
}

std::string EncodeSimpleBind(std::string_view portal, std::string_view statement) {
  // No parameter format codes, no parameters, no result format codes (all text).
  return MessageBuilder('B').CString(portal).CString(statement).Int16(0).Int16(0).Int16(0).Finish();
}

Target ParseDescribe(std::string_view body) { return ParseTarget("Describe", body); }
Target ParseClose(std::string_view body) { return ParseTarget("Close", body); }
std::string EncodeDescribe(char kind, std::string_view name) { return EncodeTarget('D', kind, name); }
std::string EncodeClose(char kind, std::string_view name) { return EncodeTarget('C', kind, name); }

Execute ParseExecute(std::string_view body) {
  return ParseWhole("Execute", body, [](BodyReader& r) {
    Execute e;
    e.portal = r.CString();
    e.max_rows = r.Int32();
    return e;
  });
}

std::string EncodeExecute(std::string_view portal, int32_t max_rows) {
  return MessageBuilder('E').CString(portal).Int32(max_rows).Finish();
}

std::string EncodeSync() { return MessageBuilder('S').Finish(); }
std::string EncodeFlush() { return MessageBuilder('H').Finish(); }
std::string EncodeTerminate() { return MessageBuilder('X').Finish(); }
std::string EncodeCopyFail(std::string_view message) { return MessageBuilder('f').CString(message).Finish(); }

SaslInitialResponse ParseSaslInitialResponse(std::string_view body) {
  return ParseWhole("SASLInitialResponse", body, [](BodyReader& r) {
    SaslInitialResponse s;
    s.mechanism = r.CString();
    const int32_t length = r.Int32();
    if (length < -1) throw ProtocolError("negative data length " + std::to_string(length));
    if (length >= 0) s.data = r.Bytes(static_cast<size_t>(length));
    return s;
  });
}

std::string EncodeSaslInitialResponse(std::string_view mechanism, std::string_view data) {
  assert(data.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()));
  return MessageBuilder('p').CString(mechanism).Int32(static_cast<int32_t>(data.size())).Bytes(data).Finish();
}

std::string EncodeSaslResponse(std::string_view data) { return MessageBuilder('p').Bytes(data).Finish(); }

// ---- Backend messages ----

Authentication ParseAuthentication(std::string_view body) {
  return ParseWhole("Authentication", body, [](BodyReader& r) {
    Authentication a;
    a.code = r.Int32();
    a.data = r.Rest();
    return a;
  });
}

std::string EncodeAuthentication(int32_t code, std::string_view data) {
  return MessageBuilder('R').Int32(code).Bytes(data).Finish();
}

std::string EncodeAuthenticationSasl(const std::vector<std::string>& mechanisms) {
  MessageBuilder b('R');
  b.Int32(10);
  for (const std::string& m : mechanisms) {
    assert(!m.empty());  // an empty name ends the list
    b.CString(m);
  }
  return b.Byte(0).Finish();
}

ParameterStatus ParseParameterStatus(std::string_view body) {
  return ParseWhole("ParameterStatus", body, [](BodyReader& r) {
    ParameterStatus p;
    p.name = r.CString();
    p.value = r.CString();
    return p;
  });
}

std::string EncodeParameterStatus(std::string_view name, std::string_view value) {
  return MessageBuilder('S').CString(name).CString(value).Finish();
}

BackendKeyData ParseBackendKeyData(std::string_view body) {
  return ParseWhole("BackendKeyData", body, [](BodyReader& r) {
    BackendKeyData k;
    k.pid = r.Int32();
    k.key = r.Int32();
    return k;
  });
}

std::string EncodeBackendKeyData(int32_t pid, int32_t key) {
  return MessageBuilder('K').Int32(pid).Int32(key).Finish();
}

char ParseReadyForQuery(std::string_view body) {
  return ParseWhole("ReadyForQuery", body, [](BodyReader& r) {
    const auto status = static_cast<char>(r.Byte());
    if (status != 'I' && status != 'T' && status != 'E') {
      throw ProtocolError("transaction status " + ShowType(status) + " is none of 'I', 'T', 'E'");
    }
    return status;
  });
}

std::string EncodeReadyForQuery(char status) {
  assert(status == 'I' || status == 'T' || status == 'E');
  return MessageBuilder('Z').Byte(static_cast<uint8_t>(status)).Finish();
}

std::string_view ParseCommandComplete(std::string_view body) {
  return ParseWhole("CommandComplete", body, [](BodyReader& r) { return r.CString(); });
}

std::string EncodeCommandComplete(std::string_view tag) { return MessageBuilder('C').CString(tag).Finish(); }

std::string EncodeParseComplete() { return MessageBuilder('1').Finish(); }
std::string EncodeBindComplete() { return MessageBuilder('2').Finish(); }
std::string EncodeCloseComplete() { return MessageBuilder('3').Finish(); }
std::string EncodeNoData() { return MessageBuilder('n').Finish(); }
std::string EncodeEmptyQueryResponse() { return MessageBuilder('I').Finish(); }
std::string EncodeEmptyParameterDescription() { return MessageBuilder('t').Int16(0).Finish(); }

// ---- ErrorResponse / NoticeResponse ----

std::string_view Fields::Get(char code) const {
  for (const auto& [c, value] : fields) {
    if (c == code) return value;
  }
  return {};
}

void Fields::Set(char code, std::string value) {
  for (auto& [c, v] : fields) {
    if (c == code) {
      v = std::move(value);
      return;
    }
  }
  fields.emplace_back(code, std::move(value));
}

Fields ParseFields(std::string_view body) {
  return ParseWhole("ErrorResponse/NoticeResponse", body, [](BodyReader& r) {
    Fields f;
    while (true) {
      const auto code = static_cast<char>(r.Byte());
      if (code == 0) break;
      f.fields.emplace_back(code, std::string(r.CString()));
    }
    return f;
  });
}

std::string EncodeErrorResponse(const Fields& f) { return EncodeFields('E', f); }
std::string EncodeNoticeResponse(const Fields& f) { return EncodeFields('N', f); }

Fields MakeFields(std::string_view severity, std::string_view sqlstate, std::string_view message,
                  std::string_view detail, std::string_view hint) {
  Fields f;
  f.fields.emplace_back('S', std::string(severity));
  f.fields.emplace_back('V', std::string(severity));
  f.fields.emplace_back('C', std::string(sqlstate));
  f.fields.emplace_back('M', std::string(message));
  if (!detail.empty()) f.fields.emplace_back('D', std::string(detail));
  if (!hint.empty()) f.fields.emplace_back('H', std::string(hint));
  return f;
}

}  // namespace testpool::proxy
