// The PostgreSQL frontend/backend protocol v3, as bytes: framing, reading and writing the
// messages the proxy inspects or synthesises. No sockets here: everything works on byte spans, so
// it is tested on byte arrays (split at every offset).
//
// Framing: after start-up every message is a type byte, an int32 length (counting itself but not
// the type byte) and length-4 body bytes. The first packets a client sends (StartupMessage,
// SSLRequest, GSSENCRequest, CancelRequest) have no type byte: an int32 length, then the body,
// whose first int32 tells which it is.
//
// All integers on the wire are big-endian. Strings are NUL-terminated ("CString").
//
// Thread safety: none needed; objects are used by one connection at a time. All functions are
// pure. Malformed input throws ProtocolError with a message naming what was wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "orchestrator/proxy/protocol_error.h"

namespace testpool::proxy {

// Largest message accepted from either side (PostgreSQL's own limit for a message is 1 GB).
inline constexpr size_t kMaxMessageBytes = size_t{1} << 30;
// Largest start-up packet accepted (PostgreSQL: 10000 bytes).
inline constexpr size_t kMaxStartupBytes = 10000;

// One whole message inside a FrameReader's buffer. The views stay valid until the next call of
// Feed() or Next() on the reader that returned it.
struct MessageView {
  char type = 0;          // 0 for an untyped start-up packet
  std::string_view body;  // the bytes after the length field
  std::string_view raw;   // the whole frame (type byte if any, length, body): forward as is
};

// Cuts a byte stream into messages.
class FrameReader {
 public:
  // `startup`: the first packet expected is untyped (a client's first packet). A server's stream
  // and a client's stream after start-up are typed.
  explicit FrameReader(bool startup = false) : untyped_next_(startup) {}

  // Appends bytes read from the socket.
  void Feed(std::string_view bytes);
  // The next whole message, or nullopt when more bytes are needed. Throws ProtocolError when a
  // length is below 4, or above kMaxMessageBytes (for an untyped packet: below 8, since its body
  // holds at least the int32 code, or above kMaxStartupBytes). The length is checked as soon as it
  // has arrived, before its body. Reading stays untyped until ExpectTyped() is called.
  std::optional<MessageView> Next();
  // The next message's type (0 for an untyped packet) and length field, as soon as those bytes
  // have arrived, before its body has: lets the caller refuse a message by its type or declared
  // size without buffering it. nullopt while fewer bytes are buffered. The length is not checked.
  struct Header {
    char type = 0;
    size_t length = 0;
  };
  std::optional<Header> Peek() const;
  // The next packet is untyped again (a client that got 'N' to its SSLRequest sends a
  // StartupMessage next).
  void ExpectUntyped() { untyped_next_ = true; }
  // From now on packets are typed (the proxy calls this after a StartupMessage).
  void ExpectTyped() { untyped_next_ = false; }
  // Bytes fed but not yet returned by Next().
  size_t buffered() const { return buffer_.size() - consumed_; }

 private:
  std::string buffer_;
  size_t consumed_ = 0;  // bytes of buffer_ already returned; compacted lazily
  bool untyped_next_;
};

// Reads the fields of one message body in order. Every read past the end throws ProtocolError.
class BodyReader {
 public:
  explicit BodyReader(std::string_view body) : body_(body) {}
  uint8_t Byte();
  int16_t Int16();
  int32_t Int32();
  std::string_view CString();  // up to the next NUL, which is consumed; none → ProtocolError
  std::string_view Bytes(size_t n);
  std::string_view Rest();  // everything left
  bool AtEnd() const { return pos_ == body_.size(); }
  size_t position() const { return pos_; }

 private:
  std::string_view body_;
  size_t pos_ = 0;
};

// Builds one typed message: MessageBuilder b('Z'); b.Byte('I'); out += b.Finish();
class MessageBuilder {
 public:
  explicit MessageBuilder(char type);
  // An untyped start-up packet (StartupMessage, CancelRequest, SSLRequest).
  static MessageBuilder Untyped();
  MessageBuilder& Byte(uint8_t v);
  MessageBuilder& Int16(int16_t v);
  MessageBuilder& Int32(int32_t v);
  MessageBuilder& CString(std::string_view s);  // s must not contain NUL (asserted)
  MessageBuilder& Bytes(std::string_view s);
  // The whole frame with its length filled in. Call once.
  std::string Finish();

 private:
  std::string out_;
  size_t length_at_;
};

// ---- Start-up packets (client → proxy, untyped) ----
inline constexpr int32_t kProtocolV3 = 196608;  // 3.0
inline constexpr int32_t kSslRequestCode = 80877103;
inline constexpr int32_t kGssEncRequestCode = 80877104;
inline constexpr int32_t kCancelRequestCode = 80877102;

struct StartupMessage {
  int32_t protocol = 0;                                     // major << 16 | minor
  std::vector<std::pair<std::string, std::string>> params;  // in order: user, database, options, …
  // The value of `name`, or nullopt.
  std::optional<std::string> Param(std::string_view name) const;
};
struct SslRequest {};
struct GssEncRequest {};
struct CancelRequest {
  int32_t pid = 0;
  int32_t key = 0;
};
using StartupPacket = std::variant<StartupMessage, SslRequest, GssEncRequest, CancelRequest>;

// Decodes an untyped packet's body. A protocol other than 3.x in a StartupMessage is returned as
// is (the caller refuses it); below 3.0 the rest of the packet has another layout, so it is not
// read and `params` is empty. A body that does not parse (including bytes after the terminator,
// or an SSLRequest/CancelRequest of the wrong size) throws ProtocolError.
StartupPacket ParseStartupPacket(std::string_view body);
std::string EncodeStartupMessage(const StartupMessage& m);
std::string EncodeCancelRequest(const CancelRequest& m);

// ---- Frontend messages (client → server) ----
// Every Parse* function below takes a message body and throws ProtocolError when it is cut short,
// holds bytes after its last field, or has a value out of range. Returned views point into it.

// 'Q'
struct Query {
  std::string_view text;
};
Query ParseQuery(std::string_view body);
std::string EncodeQuery(std::string_view text);

// 'P' Parse
struct Parse {
  std::string_view statement;  // "" = the unnamed statement
  std::string_view query;
  std::string_view param_types;  // int16 count + int32 OIDs, raw (forwarded unchanged)
};
Parse ParseParse(std::string_view body);
// `param_types` as ParseParse returns it; "" stands for no types (written as a count of 0).
std::string EncodeParse(std::string_view statement, std::string_view query, std::string_view param_types);

// 'B' Bind: only the names are decoded; the parameter formats and values are kept raw.
struct Bind {
  std::string_view portal;
  std::string_view statement;
  std::string_view rest;  // everything after the two names, forwarded unchanged
};
Bind ParseBind(std::string_view body);
std::string EncodeBind(std::string_view portal, std::string_view statement, std::string_view rest);
// A Bind of `statement` into `portal` with no parameters and default (text) result formats.
std::string EncodeSimpleBind(std::string_view portal, std::string_view statement);

// 'D' Describe and 'C' Close: kind 'S' (statement) or 'P' (portal); anything else throws.
struct Target {
  char kind = 0;
  std::string_view name;
};
Target ParseDescribe(std::string_view body);
Target ParseClose(std::string_view body);
std::string EncodeDescribe(char kind, std::string_view name);
std::string EncodeClose(char kind, std::string_view name);

// 'E' Execute
struct Execute {
  std::string_view portal;
  int32_t max_rows = 0;  // 0 = all
};
Execute ParseExecute(std::string_view body);
std::string EncodeExecute(std::string_view portal, int32_t max_rows);

std::string EncodeSync();                              // 'S'
std::string EncodeFlush();                             // 'H'
std::string EncodeTerminate();                         // 'X'
std::string EncodeCopyFail(std::string_view message);  // 'f'

// 'p' in the SASL exchange. SASLInitialResponse: mechanism name, int32 length (-1: none), data.
struct SaslInitialResponse {
  std::string_view mechanism;
  std::string_view data;
};
SaslInitialResponse ParseSaslInitialResponse(std::string_view body);
std::string EncodeSaslInitialResponse(std::string_view mechanism, std::string_view data);
// SASLResponse: the body is the data. PasswordMessage: a CString.
std::string EncodeSaslResponse(std::string_view data);

// ---- Backend messages (server → client) ----
// 'R' Authentication*: code 0 Ok, 3 CleartextPassword, 5 MD5Password (data = salt), 10 SASL (data
// = NUL-terminated mechanism names then a NUL), 11 SASLContinue, 12 SASLFinal (data = SASL bytes).
struct Authentication {
  int32_t code = 0;
  std::string_view data;
};
Authentication ParseAuthentication(std::string_view body);
std::string EncodeAuthentication(int32_t code, std::string_view data = {});
// AuthenticationSASL offering exactly the given mechanisms.
std::string EncodeAuthenticationSasl(const std::vector<std::string>& mechanisms);

// 'S' ParameterStatus
struct ParameterStatus {
  std::string_view name;
  std::string_view value;
};
ParameterStatus ParseParameterStatus(std::string_view body);
std::string EncodeParameterStatus(std::string_view name, std::string_view value);

// 'K' BackendKeyData
struct BackendKeyData {
  int32_t pid = 0;
  int32_t key = 0;
};
BackendKeyData ParseBackendKeyData(std::string_view body);
std::string EncodeBackendKeyData(int32_t pid, int32_t key);

// 'Z' ReadyForQuery: the transaction status byte 'I' (idle), 'T' (in a block), 'E' (failed block).
char ParseReadyForQuery(std::string_view body);  // anything but I/T/E throws
std::string EncodeReadyForQuery(char status);

// 'C' CommandComplete
std::string_view ParseCommandComplete(std::string_view body);  // the tag, e.g. "INSERT 0 1"
std::string EncodeCommandComplete(std::string_view tag);

std::string EncodeParseComplete();       // '1'
std::string EncodeBindComplete();        // '2'
std::string EncodeCloseComplete();       // '3'
std::string EncodeNoData();              // 'n'
std::string EncodeEmptyQueryResponse();  // 'I'
// 't' ParameterDescription with no parameters.
std::string EncodeEmptyParameterDescription();

// 'E' ErrorResponse and 'N' NoticeResponse: a list of (field code, value), e.g. 'S' severity
// (localised), 'V' severity (never localised), 'C' SQLSTATE, 'M' message, 'D' detail, 'H' hint,
// 'P' position.
struct Fields {
  std::vector<std::pair<char, std::string>> fields;
  // The value of field `code`, or "" when absent.
  std::string_view Get(char code) const;
  void Set(char code, std::string value);  // replaces or appends
};
Fields ParseFields(std::string_view body);
std::string EncodeErrorResponse(const Fields& f);
std::string EncodeNoticeResponse(const Fields& f);
// Fields for a message the proxy itself raises: S and V = severity ("ERROR", "FATAL",
// "WARNING"), C = sqlstate, M = message, and D/H when not empty.
Fields MakeFields(std::string_view severity, std::string_view sqlstate, std::string_view message,
                  std::string_view detail = {}, std::string_view hint = {});

}  // namespace testpool::proxy
