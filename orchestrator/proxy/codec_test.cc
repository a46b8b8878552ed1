#include "orchestrator/proxy/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <variant>
#include <vector>

namespace testpool::proxy {
namespace {

using namespace std::string_literals;  // wire bytes hold NULs: "Z\0\0\0\x05I"s
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;

// One message out of a FrameReader, copied so it outlives the reader's buffer.
struct Frame {
  char type = 0;
  std::string body;
  std::string raw;
  bool operator==(const Frame&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Frame& f) {
  return os << "Frame{type=" << static_cast<int>(f.type) << ", " << f.raw.size() << " raw bytes}";
}

// The one message `wire` holds; fails the test when it holds more, less, or something else.
Frame ReadOne(std::string_view wire, bool startup = false) {
  FrameReader reader(startup);
  reader.Feed(wire);
  std::optional<MessageView> m = reader.Next();
  if (!m) {
    ADD_FAILURE() << "no whole message in " << wire.size() << " bytes";
    return {};
  }
  Frame f{m->type, std::string(m->body), std::string(m->raw)};
  EXPECT_EQ(f.raw, wire);
  EXPECT_EQ(reader.buffered(), 0u);
  EXPECT_FALSE(reader.Next().has_value());
  return f;
}

// The message of the ProtocolError `f` throws; fails the test when it throws none.
std::string ProtocolErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const ProtocolError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ProtocolError";
  return "";
}

// Takes every whole message out of `reader` into `out`, switching to typed reading after a
// StartupMessage (and back to untyped after an SSLRequest) as the proxy's session does.
void Drain(FrameReader& reader, std::vector<Frame>& out) {
  while (std::optional<MessageView> m = reader.Next()) {
    out.push_back(Frame{m->type, std::string(m->body), std::string(m->raw)});
    if (m->type != 0) continue;
    StartupPacket packet = ParseStartupPacket(m->body);
    if (std::holds_alternative<StartupMessage>(packet)) {
      reader.ExpectTyped();
    } else if (std::holds_alternative<SslRequest>(packet)) {
      reader.ExpectUntyped();  // the proxy answered 'N'; a StartupMessage comes next
    }
  }
}

std::string EncodeSslRequest() { return MessageBuilder::Untyped().Int32(kSslRequestCode).Finish(); }

std::string EncodeDataRow(std::string_view value) {
  return MessageBuilder('D').Int16(1).Int32(static_cast<int32_t>(value.size())).Bytes(value).Finish();
}

StartupMessage SampleStartup() {
  StartupMessage m;
  m.protocol = kProtocolV3;
  m.params = {{"user", "alice"}, {"database", "shop"}, {"application_name", "psql"}};
  return m;
}

// A client's whole conversation: SSLRequest, StartupMessage, then a mix of typed messages of
// every kind the codec writes, including empty bodies and one message long enough to span many
// of the split points.
std::vector<std::string> ClientStream() {
  return {EncodeSslRequest(),
          EncodeStartupMessage(SampleStartup()),
          EncodeSaslInitialResponse("SCRAM-SHA-256", "n,,n=,r=rOprNGfwEbeRWgbNEkqO"),
          EncodeSaslResponse("c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="),
          EncodeQuery("BEGIN"),
          EncodeParse("s1", "SELECT $1::int", ""),
          EncodeDescribe('S', "s1"),
          EncodeSimpleBind("", "s1"),
          EncodeExecute("", 0),
          EncodeClose('P', ""),
          EncodeSync(),
          EncodeFlush(),
          EncodeQuery(std::string(300, 'x')),
          EncodeCopyFail("aborted"),
          EncodeTerminate()};
}

// A server's answer stream: typed from its first byte.
std::vector<std::string> ServerStream() {
  return {EncodeAuthenticationSasl({"SCRAM-SHA-256"}),
          EncodeAuthentication(11, "r=abc,s=c2FsdA==,i=4096"),
          EncodeAuthentication(0),
          EncodeParameterStatus("server_version", "15.4"),
          EncodeBackendKeyData(4242, -17),
          EncodeReadyForQuery('I'),
          EncodeParseComplete(),
          EncodeEmptyParameterDescription(),
          EncodeNoData(),
          EncodeBindComplete(),
          EncodeDataRow(std::string(200, 'v')),
          EncodeCommandComplete("SELECT 1"),
          EncodeCloseComplete(),
          EncodeEmptyQueryResponse(),
          EncodeNoticeResponse(MakeFields("WARNING", "01000", "careful")),
          EncodeErrorResponse(MakeFields("ERROR", "42P01", "relation \"x\" does not exist")),
          EncodeReadyForQuery('E')};
}

std::string Concat(const std::vector<std::string>& parts) {
  std::string all;
  for (const std::string& p : parts) all += p;
  return all;
}

// What a reader must yield for `messages`: each frame with its type (0 for the untyped ones,
// the first `untyped` messages) and body.
std::vector<Frame> Expected(const std::vector<std::string>& messages, size_t untyped) {
  std::vector<Frame> frames;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& m = messages[i];
    const size_t header = i < untyped ? 4 : 5;
    frames.push_back(Frame{i < untyped ? '\0' : m[0], m.substr(header), m});
  }
  return frames;
}

// A typed frame header with the given raw length field.
std::string Header(char type, uint32_t length) {
  std::string h(1, type);
  for (int shift = 24; shift >= 0; shift -= 8) h.push_back(static_cast<char>(length >> shift));
  return h;
}

// --- Byte-exact encodings ----------------------------------------------------------------------

TEST(CodecEncodingTest, ReadyForQuery) {
  EXPECT_EQ(EncodeReadyForQuery('I'), "Z\0\0\0\x05I"s);
  EXPECT_EQ(EncodeReadyForQuery('T'), "Z\0\0\0\x05T"s);
  EXPECT_EQ(EncodeReadyForQuery('E'), "Z\0\0\0\x05"s + "E");
}

TEST(CodecEncodingTest, CommandComplete) { EXPECT_EQ(EncodeCommandComplete("SELECT 1"), "C\0\0\0\x0dSELECT 1\0"s); }

TEST(CodecEncodingTest, MessagesWithoutBody) {
  EXPECT_EQ(EncodeSync(), "S\0\0\0\x04"s);
  EXPECT_EQ(EncodeFlush(), "H\0\0\0\x04"s);
  EXPECT_EQ(EncodeTerminate(), "X\0\0\0\x04"s);
  EXPECT_EQ(EncodeParseComplete(), "1\0\0\0\x04"s);
  EXPECT_EQ(EncodeBindComplete(), "2\0\0\0\x04"s);
  EXPECT_EQ(EncodeCloseComplete(), "3\0\0\0\x04"s);
  EXPECT_EQ(EncodeNoData(), "n\0\0\0\x04"s);
  EXPECT_EQ(EncodeEmptyQueryResponse(), "I\0\0\0\x04"s);
}

TEST(CodecEncodingTest, EmptyParameterDescription) { EXPECT_EQ(EncodeEmptyParameterDescription(), "t\0\0\0\x06\0\0"s); }

TEST(CodecEncodingTest, Authentication) {
  EXPECT_EQ(EncodeAuthentication(0), "R\0\0\0\x08\0\0\0\0"s);
  EXPECT_EQ(EncodeAuthentication(5, "\x01\x02\x03\x04"), "R\0\0\0\x0c\0\0\0\x05\x01\x02\x03\x04"s);
  EXPECT_EQ(EncodeAuthenticationSasl({"SCRAM-SHA-256"}), "R\0\0\0\x17\0\0\0\x0aSCRAM-SHA-256\0\0"s);
}

TEST(CodecEncodingTest, SslRequestAndCancelRequest) {
  EXPECT_EQ(EncodeSslRequest(), "\0\0\0\x08\x04\xd2\x16\x2f"s);
  EXPECT_EQ(EncodeCancelRequest({.pid = 1, .key = 2}), "\0\0\0\x10\x04\xd2\x16\x2e\0\0\0\x01\0\0\0\x02"s);
}

TEST(CodecEncodingTest, StartupMessage) {
  StartupMessage m;
  m.protocol = kProtocolV3;
  m.params = {{"user", "u"}};
  EXPECT_EQ(EncodeStartupMessage(m), "\0\0\0\x10\0\x03\0\0user\0u\0\0"s);
}

TEST(CodecEncodingTest, ExtendedQueryMessages) {
  EXPECT_EQ(EncodeParse("", "SELECT 1", ""), "P\0\0\0\x10\0SELECT 1\0\0\0"s);
  EXPECT_EQ(EncodeSimpleBind("", ""), "B\0\0\0\x0c\0\0\0\0\0\0\0\0"s);
  EXPECT_EQ(EncodeDescribe('S', "s1"), "D\0\0\0\x08Ss1\0"s);
  EXPECT_EQ(EncodeClose('P', ""), "C\0\0\0\x06P\0"s);
  EXPECT_EQ(EncodeExecute("", 0), "E\0\0\0\x09\0\0\0\0\0"s);
}

TEST(CodecEncodingTest, ErrorResponse) {
  EXPECT_EQ(EncodeErrorResponse(MakeFields("ERROR", "42P01", "x")), "E\0\0\0\x1dSERROR\0VERROR\0C42P01\0Mx\0\0"s);
}

TEST(CodecEncodingTest, NegativeIntegersAreTwosComplementBigEndian) {
  EXPECT_EQ(MessageBuilder('x').Int16(-2).Int32(-3).Finish(), "x\0\0\0\x0a\xff\xfe\xff\xff\xff\xfd"s);
}

// --- Round trips: encode, frame, parse ---------------------------------------------------------

TEST(CodecRoundTripTest, Query) {
  Frame f = ReadOne(EncodeQuery("SELECT 'a'; SELECT 2"));
  EXPECT_EQ(f.type, 'Q');
  EXPECT_EQ(ParseQuery(f.body).text, "SELECT 'a'; SELECT 2");
  EXPECT_EQ(ParseQuery(ReadOne(EncodeQuery("")).body).text, "");
}

TEST(CodecRoundTripTest, ParseWithParameterTypes) {
  const std::string types = "\0\x02\0\0\0\x17\0\0\0\x19"s;  // 2 types: int4 (23), text (25)
  Frame f = ReadOne(EncodeParse("stmt", "SELECT $1, $2", types));
  EXPECT_EQ(f.type, 'P');
  Parse p = ParseParse(f.body);
  EXPECT_EQ(p.statement, "stmt");
  EXPECT_EQ(p.query, "SELECT $1, $2");
  EXPECT_EQ(p.param_types, types);
}

TEST(CodecRoundTripTest, ParseWithoutParameterTypesHasCountZero) {
  const Frame f = ReadOne(EncodeParse("", "BEGIN", ""));
  Parse p = ParseParse(f.body);
  EXPECT_EQ(p.statement, "");
  EXPECT_EQ(p.query, "BEGIN");
  EXPECT_EQ(p.param_types, "\0\0"s);
}

TEST(CodecRoundTripTest, BindKeepsTheRestRaw) {
  // One text format code, one parameter "42", one result format code (binary).
  const std::string rest = "\0\x01\0\0\0\x01\0\0\0\x02"s + "42" + "\0\x01\0\x01"s;
  Frame f = ReadOne(EncodeBind("portal", "stmt", rest));
  EXPECT_EQ(f.type, 'B');
  Bind b = ParseBind(f.body);
  EXPECT_EQ(b.portal, "portal");
  EXPECT_EQ(b.statement, "stmt");
  EXPECT_EQ(b.rest, rest);
}

TEST(CodecRoundTripTest, SimpleBind) {
  const Frame f = ReadOne(EncodeSimpleBind("p", "s"));
  Bind b = ParseBind(f.body);
  EXPECT_EQ(b.portal, "p");
  EXPECT_EQ(b.statement, "s");
  EXPECT_EQ(b.rest, "\0\0\0\0\0\0"s);
}

TEST(CodecRoundTripTest, DescribeAndClose) {
  for (char kind : {'S', 'P'}) {
    Frame d = ReadOne(EncodeDescribe(kind, "name"));
    EXPECT_EQ(d.type, 'D');
    Target t = ParseDescribe(d.body);
    EXPECT_EQ(t.kind, kind);
    EXPECT_EQ(t.name, "name");

    Frame c = ReadOne(EncodeClose(kind, ""));
    EXPECT_EQ(c.type, 'C');
    t = ParseClose(c.body);
    EXPECT_EQ(t.kind, kind);
    EXPECT_EQ(t.name, "");
  }
}

TEST(CodecRoundTripTest, Execute) {
  for (int32_t max_rows : {0, 1, 100, std::numeric_limits<int32_t>::max()}) {
    Frame f = ReadOne(EncodeExecute("cur", max_rows));
    EXPECT_EQ(f.type, 'E');
    Execute e = ParseExecute(f.body);
    EXPECT_EQ(e.portal, "cur");
    EXPECT_EQ(e.max_rows, max_rows);
  }
}

TEST(CodecRoundTripTest, SyncFlushTerminateHaveEmptyBodies) {
  const std::vector<std::pair<std::string, char>> messages = {
      {EncodeSync(), 'S'}, {EncodeFlush(), 'H'}, {EncodeTerminate(), 'X'}};
  for (const auto& [wire, type] : messages) {
    Frame f = ReadOne(wire);
    EXPECT_EQ(f.type, type);
    EXPECT_EQ(f.body, "");
  }
}

TEST(CodecRoundTripTest, CopyFail) {
  Frame f = ReadOne(EncodeCopyFail("client gave up"));
  EXPECT_EQ(f.type, 'f');
  BodyReader r(f.body);
  EXPECT_EQ(r.CString(), "client gave up");
  EXPECT_TRUE(r.AtEnd());
}

TEST(CodecRoundTripTest, SaslInitialResponse) {
  Frame f = ReadOne(EncodeSaslInitialResponse("SCRAM-SHA-256", "n,,n=,r=nonce"));
  EXPECT_EQ(f.type, 'p');
  SaslInitialResponse s = ParseSaslInitialResponse(f.body);
  EXPECT_EQ(s.mechanism, "SCRAM-SHA-256");
  EXPECT_EQ(s.data, "n,,n=,r=nonce");
}

TEST(CodecRoundTripTest, SaslInitialResponseWithoutData) {
  const Frame empty = ReadOne(EncodeSaslInitialResponse("PLAIN", ""));
  SaslInitialResponse s = ParseSaslInitialResponse(empty.body);
  EXPECT_EQ(s.mechanism, "PLAIN");
  EXPECT_EQ(s.data, "");
  // -1 is the protocol's "no data at all".
  const Frame none = ReadOne(MessageBuilder('p').CString("M").Int32(-1).Finish());
  s = ParseSaslInitialResponse(none.body);
  EXPECT_EQ(s.mechanism, "M");
  EXPECT_EQ(s.data, "");
}

TEST(CodecRoundTripTest, SaslResponseBodyIsTheData) {
  const std::string data = "c=biws,r=abc,p=\0\xff"s;
  Frame f = ReadOne(EncodeSaslResponse(data));
  EXPECT_EQ(f.type, 'p');
  EXPECT_EQ(f.body, data);
}

TEST(CodecRoundTripTest, Authentication) {
  const Frame ok_frame = ReadOne(EncodeAuthentication(0));
  Authentication ok = ParseAuthentication(ok_frame.body);
  EXPECT_EQ(ok.code, 0);
  EXPECT_EQ(ok.data, "");

  Frame md5 = ReadOne(EncodeAuthentication(5, "\x00\x7f\x80\xff"s));
  EXPECT_EQ(md5.type, 'R');
  Authentication a = ParseAuthentication(md5.body);
  EXPECT_EQ(a.code, 5);
  EXPECT_EQ(a.data, "\x00\x7f\x80\xff"s);

  const Frame final_frame = ReadOne(EncodeAuthentication(12, "v=signature"));
  a = ParseAuthentication(final_frame.body);
  EXPECT_EQ(a.code, 12);
  EXPECT_EQ(a.data, "v=signature");
}

TEST(CodecRoundTripTest, AuthenticationSaslListsTheMechanisms) {
  const Frame f = ReadOne(EncodeAuthenticationSasl({"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"}));
  Authentication a = ParseAuthentication(f.body);
  EXPECT_EQ(a.code, 10);
  BodyReader r(a.data);
  std::vector<std::string> mechanisms;
  for (std::string_view m = r.CString(); !m.empty(); m = r.CString()) mechanisms.emplace_back(m);
  EXPECT_TRUE(r.AtEnd());
  EXPECT_THAT(mechanisms, ElementsAre("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"));
}

TEST(CodecRoundTripTest, ParameterStatus) {
  Frame f = ReadOne(EncodeParameterStatus("TimeZone", "UTC"));
  EXPECT_EQ(f.type, 'S');
  ParameterStatus p = ParseParameterStatus(f.body);
  EXPECT_EQ(p.name, "TimeZone");
  EXPECT_EQ(p.value, "UTC");
  EXPECT_EQ(ParseParameterStatus(ReadOne(EncodeParameterStatus("application_name", "")).body).value, "");
}

TEST(CodecRoundTripTest, BackendKeyData) {
  Frame f = ReadOne(EncodeBackendKeyData(123456, -987654321));
  EXPECT_EQ(f.type, 'K');
  BackendKeyData k = ParseBackendKeyData(f.body);
  EXPECT_EQ(k.pid, 123456);
  EXPECT_EQ(k.key, -987654321);
}

TEST(CodecRoundTripTest, ReadyForQueryEveryStatus) {
  for (char status : {'I', 'T', 'E'}) {
    Frame f = ReadOne(EncodeReadyForQuery(status));
    EXPECT_EQ(f.type, 'Z');
    EXPECT_EQ(ParseReadyForQuery(f.body), status);
  }
}

TEST(CodecRoundTripTest, CommandComplete) {
  for (std::string_view tag : {"INSERT 0 1", "SELECT 1", "BEGIN", "SAVEPOINT"}) {
    Frame f = ReadOne(EncodeCommandComplete(tag));
    EXPECT_EQ(f.type, 'C');
    EXPECT_EQ(ParseCommandComplete(f.body), tag);
  }
}

TEST(CodecRoundTripTest, ResponsesWithoutFields) {
  EXPECT_EQ(ReadOne(EncodeParseComplete()).type, '1');
  EXPECT_EQ(ReadOne(EncodeBindComplete()).type, '2');
  EXPECT_EQ(ReadOne(EncodeCloseComplete()).type, '3');
  EXPECT_EQ(ReadOne(EncodeNoData()).type, 'n');
  EXPECT_EQ(ReadOne(EncodeEmptyQueryResponse()).type, 'I');
  Frame t = ReadOne(EncodeEmptyParameterDescription());
  EXPECT_EQ(t.type, 't');
  BodyReader r(t.body);
  EXPECT_EQ(r.Int16(), 0);
  EXPECT_TRUE(r.AtEnd());
}

TEST(CodecRoundTripTest, ErrorResponseAndNoticeResponse) {
  Fields f = MakeFields("FATAL", "08P01", "bad message", "length 3", "reconnect");
  f.Set('P', "17");
  Frame e = ReadOne(EncodeErrorResponse(f));
  EXPECT_EQ(e.type, 'E');
  EXPECT_EQ(ParseFields(e.body).fields, f.fields);
  Frame n = ReadOne(EncodeNoticeResponse(f));
  EXPECT_EQ(n.type, 'N');
  EXPECT_EQ(ParseFields(n.body).fields, f.fields);
  EXPECT_THAT(ParseFields(ReadOne(EncodeErrorResponse(Fields{})).body).fields, IsEmpty());
}

TEST(CodecRoundTripTest, StartupMessage) {
  Frame f = ReadOne(EncodeStartupMessage(SampleStartup()), /*startup=*/true);
  EXPECT_EQ(f.type, 0);
  StartupPacket packet = ParseStartupPacket(f.body);
  ASSERT_TRUE(std::holds_alternative<StartupMessage>(packet));
  const auto& m = std::get<StartupMessage>(packet);
  EXPECT_EQ(m.protocol, kProtocolV3);
  EXPECT_THAT(m.params, ElementsAre(Pair("user", "alice"), Pair("database", "shop"), Pair("application_name", "psql")));
}

TEST(CodecRoundTripTest, StartupMessageWithoutParams) {
  StartupMessage empty;
  empty.protocol = kProtocolV3;
  auto m = std::get<StartupMessage>(ParseStartupPacket(ReadOne(EncodeStartupMessage(empty), true).body));
  EXPECT_EQ(m.protocol, kProtocolV3);
  EXPECT_THAT(m.params, IsEmpty());
}

TEST(CodecRoundTripTest, SslGssEncAndCancelRequests) {
  EXPECT_TRUE(std::holds_alternative<SslRequest>(ParseStartupPacket(ReadOne(EncodeSslRequest(), true).body)));
  const std::string gss = MessageBuilder::Untyped().Int32(kGssEncRequestCode).Finish();
  EXPECT_TRUE(std::holds_alternative<GssEncRequest>(ParseStartupPacket(ReadOne(gss, true).body)));
  StartupPacket cancel = ParseStartupPacket(ReadOne(EncodeCancelRequest({.pid = 77, .key = -5}), true).body);
  ASSERT_TRUE(std::holds_alternative<CancelRequest>(cancel));
  EXPECT_EQ(std::get<CancelRequest>(cancel).pid, 77);
  EXPECT_EQ(std::get<CancelRequest>(cancel).key, -5);
}

TEST(CodecRoundTripTest, StartupMessageOtherProtocolIsReturnedAsIs) {
  // 3.2 is still a 3.x StartupMessage: parsed in full, the caller negotiates or refuses.
  StartupMessage m = SampleStartup();
  m.protocol = 3 << 16 | 2;
  auto parsed = std::get<StartupMessage>(ParseStartupPacket(ReadOne(EncodeStartupMessage(m), true).body));
  EXPECT_EQ(parsed.protocol, m.protocol);
  EXPECT_EQ(parsed.params, m.params);
  // 2.0 had another layout after the version (fixed-size fields): only the version is decoded.
  const std::string v2 = MessageBuilder::Untyped().Int32(2 << 16).Bytes(std::string(64, 'z')).Finish();
  parsed = std::get<StartupMessage>(ParseStartupPacket(ReadOne(v2, true).body));
  EXPECT_EQ(parsed.protocol, 2 << 16);
  EXPECT_THAT(parsed.params, IsEmpty());
}

// --- StartupMessage::Param, Fields, MakeFields -------------------------------------------------

TEST(StartupMessageTest, ParamFindsTheValueByName) {
  StartupMessage m = SampleStartup();
  EXPECT_EQ(m.Param("database"), "shop");
  EXPECT_EQ(m.Param("user"), "alice");
  EXPECT_EQ(m.Param("options"), std::nullopt);
  EXPECT_EQ(m.Param("User"), std::nullopt);  // names are case-sensitive
}

TEST(FieldsTest, GetReturnsTheValueOrEmpty) {
  Fields f;
  f.fields = {{'S', "ERROR"}, {'M', "boom"}};
  EXPECT_EQ(f.Get('M'), "boom");
  EXPECT_EQ(f.Get('S'), "ERROR");
  EXPECT_EQ(f.Get('D'), "");
}

TEST(FieldsTest, SetReplacesInPlaceOrAppends) {
  Fields f;
  f.fields = {{'S', "ERROR"}, {'M', "boom"}};
  f.Set('S', "FATAL");
  f.Set('H', "try again");
  EXPECT_THAT(f.fields, ElementsAre(Pair('S', "FATAL"), Pair('M', "boom"), Pair('H', "try again")));
}

TEST(FieldsTest, MakeFieldsFillsSeverityTwiceAndSkipsEmptyDetailAndHint) {
  Fields f = MakeFields("ERROR", "25P02", "current transaction is aborted");
  EXPECT_THAT(f.fields, ElementsAre(Pair('S', "ERROR"), Pair('V', "ERROR"), Pair('C', "25P02"),
                                    Pair('M', "current transaction is aborted")));
  f = MakeFields("FATAL", "08P01", "m", "d", "h");
  EXPECT_THAT(f.fields, ElementsAre(Pair('S', "FATAL"), Pair('V', "FATAL"), Pair('C', "08P01"), Pair('M', "m"),
                                    Pair('D', "d"), Pair('H', "h")));
  f = MakeFields("WARNING", "01000", "m", "", "h");
  EXPECT_EQ(f.Get('D'), "");
  EXPECT_EQ(f.Get('H'), "h");
  EXPECT_EQ(f.fields.size(), 5u);
}

// --- BodyReader and MessageBuilder -------------------------------------------------------------

TEST(BodyReaderTest, ReadsFieldsInOrder) {
  const std::string body = "\x7f\xff\xfe\x80\0\0\x01name\0tail"s;
  BodyReader r(body);
  EXPECT_EQ(r.Byte(), 0x7f);
  EXPECT_EQ(r.Int16(), -2);
  EXPECT_EQ(r.Int32(), static_cast<int32_t>(0x80000001u));
  EXPECT_EQ(r.position(), 7u);
  EXPECT_EQ(r.CString(), "name");
  EXPECT_FALSE(r.AtEnd());
  EXPECT_EQ(r.Bytes(2), "ta");
  EXPECT_EQ(r.Rest(), "il");
  EXPECT_TRUE(r.AtEnd());
  EXPECT_EQ(r.Rest(), "");
  EXPECT_EQ(r.Bytes(0), "");
}

TEST(BodyReaderTest, ReadsPastTheEndThrow) {
  EXPECT_THAT(ProtocolErrorOf([] { BodyReader("").Byte(); }), HasSubstr("cut short"));
  EXPECT_THAT(ProtocolErrorOf([] { BodyReader("a").Int16(); }), HasSubstr("cut short"));
  EXPECT_THAT(ProtocolErrorOf([] { BodyReader("abc").Int32(); }), HasSubstr("cut short"));
  EXPECT_THAT(ProtocolErrorOf([] { BodyReader("abc").Bytes(4); }), HasSubstr("cut short"));
  EXPECT_THAT(ProtocolErrorOf([] { BodyReader("abc").CString(); }), HasSubstr("no terminating NUL"));
  EXPECT_THAT(ProtocolErrorOf([] { BodyReader("").CString(); }), HasSubstr("no terminating NUL"));
}

TEST(BodyReaderTest, FailedReadConsumesNothing) {
  BodyReader r("ab");
  EXPECT_THROW(r.Int32(), ProtocolError);
  EXPECT_EQ(r.position(), 0u);
  EXPECT_EQ(r.Int16(), 0x6162);
}

TEST(BodyReaderTest, HugeByteCountDoesNotOverflow) {
  BodyReader r("abc");
  r.Byte();
  EXPECT_THROW(r.Bytes(std::numeric_limits<size_t>::max()), ProtocolError);
}

TEST(MessageBuilderTest, UntypedPacketHasNoTypeByte) {
  EXPECT_EQ(MessageBuilder::Untyped().Int32(kProtocolV3).Byte(0).Finish(), "\0\0\0\x09\0\x03\0\0\0"s);
}

// --- FrameReader: framing ----------------------------------------------------------------------

TEST(FrameReaderTest, EmptyReaderHasNothing) {
  FrameReader reader;
  EXPECT_FALSE(reader.Next().has_value());
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReaderTest, WaitsForTheWholeHeaderAndBody) {
  const std::string wire = EncodeCommandComplete("SELECT 1");
  FrameReader reader;
  for (size_t i = 0; i + 1 < wire.size(); ++i) {
    reader.Feed(wire.substr(i, 1));
    EXPECT_FALSE(reader.Next().has_value()) << "after " << i + 1 << " bytes";
    EXPECT_EQ(reader.buffered(), i + 1);
  }
  reader.Feed(wire.substr(wire.size() - 1));
  std::optional<MessageView> m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->raw, wire);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReaderTest, ManyMessagesInOneFeed) {
  std::string wire;
  for (int i = 0; i < 1000; ++i) wire += EncodeCommandComplete("INSERT 0 " + std::to_string(i));
  FrameReader reader;
  reader.Feed(wire);
  for (int i = 0; i < 1000; ++i) {
    std::optional<MessageView> m = reader.Next();
    ASSERT_TRUE(m.has_value()) << i;
    EXPECT_EQ(ParseCommandComplete(m->body), "INSERT 0 " + std::to_string(i));
  }
  EXPECT_FALSE(reader.Next().has_value());
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReaderTest, BufferedCountsBytesNotYetReturned) {
  const std::string a = EncodeSync();
  const std::string b = EncodeQuery("SELECT 1");
  FrameReader reader;
  reader.Feed(a + b.substr(0, 3));
  EXPECT_EQ(reader.buffered(), a.size() + 3);
  ASSERT_TRUE(reader.Next().has_value());
  EXPECT_EQ(reader.buffered(), 3u);
  EXPECT_FALSE(reader.Next().has_value());
  reader.Feed(b.substr(3));
  ASSERT_TRUE(reader.Next().has_value());
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReaderTest, PeekShowsTheHeaderBeforeTheBody) {
  FrameReader reader(/*startup=*/true);
  const std::string startup = EncodeStartupMessage(SampleStartup());
  reader.Feed(startup.substr(0, 3));
  EXPECT_FALSE(reader.Peek().has_value());
  reader.Feed(startup.substr(3, 1));
  ASSERT_TRUE(reader.Peek().has_value());
  EXPECT_EQ(reader.Peek()->type, 0);
  EXPECT_EQ(reader.Peek()->length, startup.size());
  reader.Feed(startup.substr(4));
  ASSERT_TRUE(reader.Next().has_value());
  reader.ExpectTyped();
  EXPECT_FALSE(reader.Peek().has_value());
  reader.Feed("Q\x7f\xff\xff\xff"s);  // a length far above the limit: Peek reports it as is
  ASSERT_TRUE(reader.Peek().has_value());
  EXPECT_EQ(reader.Peek()->type, 'Q');
  EXPECT_EQ(reader.Peek()->length, 0x7fffffffu);
  EXPECT_EQ(reader.buffered(), 5u);  // Peek consumes nothing
}

TEST(FrameReaderTest, ViewsSurviveSwitchingBetweenTypedAndUntyped) {
  FrameReader reader(/*startup=*/true);
  reader.Feed(EncodeStartupMessage(SampleStartup()) + EncodeQuery("SELECT 1"));
  std::optional<MessageView> startup = reader.Next();
  ASSERT_TRUE(startup.has_value());
  reader.ExpectTyped();
  EXPECT_EQ(std::get<StartupMessage>(ParseStartupPacket(startup->body)).Param("user"), "alice");
  std::optional<MessageView> query = reader.Next();
  ASSERT_TRUE(query.has_value());
  EXPECT_EQ(ParseQuery(query->body).text, "SELECT 1");
}

// --- FrameReader: the start-up phase -----------------------------------------------------------

TEST(FrameReaderStartupTest, DefaultReaderIsTyped) {
  FrameReader reader;
  reader.Feed(EncodeSync());
  std::optional<MessageView> m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, 'S');
}

TEST(FrameReaderStartupTest, SslRequestThenStartupMessageThenTypedMessages) {
  const std::string ssl = EncodeSslRequest();
  const std::string startup = EncodeStartupMessage(SampleStartup());
  const std::string query = EncodeQuery("SELECT 1");
  FrameReader reader(/*startup=*/true);
  reader.Feed(ssl + startup + query + EncodeTerminate());

  std::optional<MessageView> m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, 0);
  EXPECT_EQ(m->raw, ssl);
  EXPECT_TRUE(std::holds_alternative<SslRequest>(ParseStartupPacket(m->body)));
  reader.ExpectUntyped();  // answered 'N'

  m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, 0);
  EXPECT_EQ(m->raw, startup);
  EXPECT_TRUE(std::holds_alternative<StartupMessage>(ParseStartupPacket(m->body)));
  reader.ExpectTyped();

  m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, 'Q');
  EXPECT_EQ(m->raw, query);
  m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, 'X');
  EXPECT_FALSE(reader.Next().has_value());
}

TEST(FrameReaderStartupTest, StaysUntypedUntilExpectTyped) {
  FrameReader reader(/*startup=*/true);
  reader.Feed(EncodeStartupMessage(SampleStartup()) + EncodeQuery("SELECT 1"));
  ASSERT_TRUE(reader.Next().has_value());
  // Read as untyped, "Q\0\0\0" is a length of 0x51000000: far above the start-up limit.
  EXPECT_THAT(ProtocolErrorOf([&] { reader.Next(); }), HasSubstr("start-up packet length"));
}

TEST(FrameReaderStartupTest, ExpectUntypedOnATypedReader) {
  FrameReader reader;
  reader.ExpectUntyped();
  reader.Feed(EncodeCancelRequest({.pid = 1, .key = 2}));
  std::optional<MessageView> m = reader.Next();
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(m->type, 0);
  EXPECT_TRUE(std::holds_alternative<CancelRequest>(ParseStartupPacket(m->body)));
}

// --- FrameReader: streams split at every offset ------------------------------------------------

class SplitStreamTest : public ::testing::TestWithParam<bool> {
 protected:
  // The client stream (first two packets untyped) or the server stream (all typed).
  bool client() const { return GetParam(); }
  std::vector<std::string> Messages() const { return client() ? ClientStream() : ServerStream(); }
  std::vector<Frame> ExpectedFrames() const { return Expected(Messages(), client() ? 2 : 0); }
};

TEST_P(SplitStreamTest, WholeStreamAtOnce) {
  const std::string stream = Concat(Messages());
  FrameReader reader(client());
  reader.Feed(stream);
  std::vector<Frame> got;
  Drain(reader, got);
  EXPECT_EQ(got, ExpectedFrames());
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST_P(SplitStreamTest, OneByteAtATime) {
  const std::string stream = Concat(Messages());
  FrameReader reader(client());
  std::vector<Frame> got;
  for (char c : stream) {
    reader.Feed(std::string_view(&c, 1));
    Drain(reader, got);
  }
  EXPECT_EQ(got, ExpectedFrames());
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST_P(SplitStreamTest, EveryTwoWaySplit) {
  const std::string stream = Concat(Messages());
  const std::vector<Frame> expected = ExpectedFrames();
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    FrameReader reader(client());
    std::vector<Frame> got;
    reader.Feed(std::string_view(stream).substr(0, cut));
    Drain(reader, got);
    reader.Feed(std::string_view(stream).substr(cut));
    Drain(reader, got);
    ASSERT_EQ(got, expected) << "cut at " << cut;
    ASSERT_EQ(reader.buffered(), 0u) << "cut at " << cut;
  }
}

TEST_P(SplitStreamTest, RandomChunksRepeatedManyTimes) {
  // The stream is sent 20 times over one reader in chunks of random size, so the reader's
  // compaction runs with partial messages of every length left at the front.
  const std::string stream = Concat(Messages());
  std::vector<Frame> expected;
  std::string all;
  FrameReader reader(client());
  std::vector<Frame> got;
  std::mt19937 rng(12345);
  for (int round = 0; round < 20; ++round) {
    // After the first round the reader is typed: later rounds resend only the typed messages.
    std::vector<std::string> messages = Messages();
    size_t untyped = client() ? 2 : 0;
    if (round > 0 && client()) {
      messages.erase(messages.begin(), messages.begin() + 2);
      untyped = 0;
    }
    for (const Frame& f : Expected(messages, untyped)) expected.push_back(f);
    all += Concat(messages);
  }
  std::uniform_int_distribution<size_t> chunk(1, 97);
  for (size_t at = 0; at < all.size();) {
    const size_t n = std::min(chunk(rng), all.size() - at);
    reader.Feed(std::string_view(all).substr(at, n));
    at += n;
    Drain(reader, got);
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST_P(SplitStreamTest, RawFramesConcatenateToTheStream) {
  // Forwarding every `raw` unchanged reproduces the input exactly.
  const std::string stream = Concat(Messages());
  FrameReader reader(client());
  std::vector<Frame> got;
  for (size_t at = 0; at < stream.size(); at += 7) {
    reader.Feed(std::string_view(stream).substr(at, 7));
    Drain(reader, got);
  }
  std::string forwarded;
  for (const Frame& f : got) forwarded += f.raw;
  EXPECT_EQ(forwarded, stream);
}

INSTANTIATE_TEST_SUITE_P(ClientAndServer, SplitStreamTest, ::testing::Values(true, false),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Client" : "Server"; });

// --- FrameReader: large messages ---------------------------------------------------------------

TEST(FrameReaderLargeTest, OneMegabyteDataRowAtOnce) {
  std::string value(1 << 20, '\0');
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 31 + 7);
  const std::string row = EncodeDataRow(value);
  Frame f = ReadOne(row);
  EXPECT_EQ(f.type, 'D');
  BodyReader r(f.body);
  EXPECT_EQ(r.Int16(), 1);
  EXPECT_EQ(r.Int32(), 1 << 20);
  EXPECT_EQ(r.Rest(), value);
}

TEST(FrameReaderLargeTest, OneMegabyteDataRowOneByteAtATimeBetweenSmallMessages) {
  const std::string value(1 << 20, 'r');
  const std::string stream = EncodeReadyForQuery('T') + EncodeDataRow(value) + EncodeCommandComplete("SELECT 1");
  FrameReader reader;
  std::vector<Frame> got;
  for (char c : stream) {
    reader.Feed(std::string_view(&c, 1));
    Drain(reader, got);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].type, 'Z');
  EXPECT_EQ(got[1].type, 'D');
  EXPECT_EQ(got[1].raw, EncodeDataRow(value));
  EXPECT_EQ(got[2].type, 'C');
  EXPECT_EQ(reader.buffered(), 0u);
}

TEST(FrameReaderLargeTest, ManyLargeMessagesInOddChunks) {
  std::vector<std::string> messages;
  for (int i = 0; i < 8; ++i)
    messages.push_back(EncodeDataRow(std::string(200000 + i * 1001, static_cast<char>('a' + i))));
  const std::string stream = Concat(messages);
  FrameReader reader;
  std::vector<Frame> got;
  for (size_t at = 0; at < stream.size(); at += 65521) {
    reader.Feed(std::string_view(stream).substr(at, 65521));
    Drain(reader, got);
  }
  EXPECT_EQ(got, Expected(messages, 0));
}

TEST(FrameReaderLargeTest, LengthAtTheLimitWaitsForTheBody) {
  FrameReader reader;
  reader.Feed(Header('D', kMaxMessageBytes));
  EXPECT_FALSE(reader.Next().has_value());
}

// --- Malformed input ---------------------------------------------------------------------------

TEST(FrameReaderErrorTest, TypedLengthBelowFour) {
  for (uint32_t length : {0u, 1u, 3u}) {
    FrameReader reader;
    reader.Feed(Header('Q', length));
    EXPECT_THAT(ProtocolErrorOf([&] { reader.Next(); }), HasSubstr("'Q' has length " + std::to_string(length)));
  }
}

TEST(FrameReaderErrorTest, TypedLengthAboveTheLimitFailsBeforeTheBody) {
  for (uint32_t length : {uint32_t{kMaxMessageBytes} + 1, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    FrameReader reader;
    reader.Feed(Header('D', length));
    EXPECT_THAT(ProtocolErrorOf([&] { reader.Next(); }), HasSubstr("above the limit")) << length;
  }
}

TEST(FrameReaderErrorTest, UnprintableTypeIsShownAsHex) {
  FrameReader reader;
  reader.Feed(Header('\x01', 2));
  EXPECT_THAT(ProtocolErrorOf([&] { reader.Next(); }), HasSubstr("0x01"));
}

TEST(FrameReaderErrorTest, StartupLengthBelowEight) {
  for (uint32_t length : {0u, 4u, 7u}) {
    FrameReader reader(/*startup=*/true);
    reader.Feed(Header('Q', length).substr(1));
    EXPECT_THAT(ProtocolErrorOf([&] { reader.Next(); }), HasSubstr("below the minimum of 8"));
  }
}

TEST(FrameReaderErrorTest, StartupLengthAboveTheLimit) {
  FrameReader reader(/*startup=*/true);
  reader.Feed(Header('Q', kMaxStartupBytes + 1).substr(1));
  EXPECT_THAT(ProtocolErrorOf([&] { reader.Next(); }), HasSubstr("exceeds the limit of 10000"));

  FrameReader at_limit(/*startup=*/true);
  at_limit.Feed(Header('Q', kMaxStartupBytes).substr(1));
  EXPECT_FALSE(at_limit.Next().has_value());
}

TEST(FrameReaderErrorTest, ErrorAfterGoodMessagesReturnsThemFirst) {
  FrameReader reader;
  reader.Feed(EncodeSync() + Header('Q', 2));
  ASSERT_TRUE(reader.Next().has_value());
  EXPECT_THROW(reader.Next(), ProtocolError);
}

// A parser of one kind of body, named for failure messages.
struct BodyParser {
  const char* name;
  std::function<void(std::string_view)> parse;
  std::string wire;  // a valid message of that kind
};

// Messages whose every field is needed: any shorter body and any extra byte must throw.
std::vector<BodyParser> FixedLayoutParsers() {
  return {
      {"Query", [](std::string_view b) { ParseQuery(b); }, EncodeQuery("SELECT 1")},
      {"Parse", [](std::string_view b) { ParseParse(b); }, EncodeParse("s", "SELECT $1", "\0\x01\0\0\0\x17"s)},
      {"Describe", [](std::string_view b) { ParseDescribe(b); }, EncodeDescribe('P', "p")},
      {"Close", [](std::string_view b) { ParseClose(b); }, EncodeClose('S', "s")},
      {"Execute", [](std::string_view b) { ParseExecute(b); }, EncodeExecute("p", 5)},
      {"SaslInitialResponse", [](std::string_view b) { ParseSaslInitialResponse(b); },
       EncodeSaslInitialResponse("SCRAM-SHA-256", "n,,n=,r=x")},
      {"ParameterStatus", [](std::string_view b) { ParseParameterStatus(b); }, EncodeParameterStatus("a", "b")},
      {"BackendKeyData", [](std::string_view b) { ParseBackendKeyData(b); }, EncodeBackendKeyData(1, 2)},
      {"ReadyForQuery", [](std::string_view b) { ParseReadyForQuery(b); }, EncodeReadyForQuery('T')},
      {"CommandComplete", [](std::string_view b) { ParseCommandComplete(b); }, EncodeCommandComplete("BEGIN")},
      {"Fields", [](std::string_view b) { ParseFields(b); }, EncodeErrorResponse(MakeFields("ERROR", "XX000", "m"))},
  };
}

TEST(CodecParseErrorTest, EveryTruncatedBodyThrows) {
  for (const BodyParser& p : FixedLayoutParsers()) {
    const std::string body = p.wire.substr(5);
    ASSERT_NO_THROW(p.parse(body)) << p.name;
    for (size_t n = 0; n < body.size(); ++n) {
      EXPECT_THROW(p.parse(body.substr(0, n)), ProtocolError) << p.name << " cut to " << n << " bytes";
    }
  }
}

TEST(CodecParseErrorTest, TrailingBytesThrow) {
  for (const BodyParser& p : FixedLayoutParsers()) {
    EXPECT_THAT(ProtocolErrorOf([&] { p.parse(p.wire.substr(5) + "x"); }), HasSubstr("1 unexpected byte")) << p.name;
  }
}

TEST(CodecParseErrorTest, ErrorsNameTheMessage) {
  EXPECT_THAT(ProtocolErrorOf([] { ParseQuery("no nul"); }), HasSubstr("Query: string at offset 0 has no"));
  EXPECT_THAT(ProtocolErrorOf([] { ParseBackendKeyData("\0\0"s); }), HasSubstr("BackendKeyData: message cut short"));
}

TEST(CodecParseErrorTest, BindAndAuthenticationNeedTheirFixedPart) {
  EXPECT_THROW(ParseBind("portal\0stmt"s), ProtocolError);
  EXPECT_THROW(ParseBind("portal"), ProtocolError);
  EXPECT_THROW(ParseBind(""), ProtocolError);
  EXPECT_THROW(ParseAuthentication("\0\0\0"s), ProtocolError);
  EXPECT_THROW(ParseAuthentication(""), ProtocolError);
}

TEST(CodecParseErrorTest, UnknownDescribeOrCloseKind) {
  EXPECT_THAT(ProtocolErrorOf([] { ParseDescribe("Xname\0"s); }), HasSubstr("Describe: kind 'X'"));
  EXPECT_THAT(ProtocolErrorOf([] { ParseClose("\0name\0"s); }), HasSubstr("Close: kind 0x00"));
  EXPECT_THROW(ParseDescribe("sname\0"s), ProtocolError);  // lower case is not a kind
}

TEST(CodecParseErrorTest, BadReadyForQueryStatus) {
  for (const std::string& body : {"Q"s, "i"s, "\0"s}) {
    EXPECT_THAT(ProtocolErrorOf([&] { ParseReadyForQuery(body); }), HasSubstr("ReadyForQuery: transaction status"));
  }
}

TEST(CodecParseErrorTest, ParseWithNegativeOrShortTypeCount) {
  EXPECT_THAT(ProtocolErrorOf([] { ParseParse("\0q\0\xff\xff"s); }), HasSubstr("negative parameter type count"));
  EXPECT_THROW(ParseParse("\0q\0\0\x02\0\0\0\x17"s), ProtocolError);  // 2 types announced, 1 sent
}

TEST(CodecParseErrorTest, SaslInitialResponseBadLength) {
  const std::string head = "SCRAM-SHA-256\0"s;
  EXPECT_THAT(ProtocolErrorOf([&] { ParseSaslInitialResponse(head + "\xff\xff\xff\xfe"s); }),
              HasSubstr("negative data length -2"));
  EXPECT_THROW(ParseSaslInitialResponse(head + "\0\0\0\x0a"s + "abc"), ProtocolError);
  EXPECT_THROW(ParseSaslInitialResponse(head + "\xff\xff\xff\xff"s + "x"), ProtocolError);
}

TEST(CodecParseErrorTest, FieldsWithoutTerminator) {
  EXPECT_THROW(ParseFields("SERROR\0"s), ProtocolError);
  EXPECT_THROW(ParseFields("SERROR"), ProtocolError);
  EXPECT_THROW(ParseFields(""), ProtocolError);
}

// --- Malformed start-up packets ----------------------------------------------------------------

std::string Body(const std::string& untyped_packet) { return untyped_packet.substr(4); }

TEST(StartupPacketErrorTest, BodyShorterThanTheCode) {
  EXPECT_THAT(ProtocolErrorOf([] { ParseStartupPacket("\0\x03\0"s); }), HasSubstr("start-up packet: message cut"));
}

TEST(StartupPacketErrorTest, SslAndGssEncRequestsHaveNothingAfterTheCode) {
  EXPECT_THROW(ParseStartupPacket(Body(EncodeSslRequest()) + "x"), ProtocolError);
  EXPECT_THROW(ParseStartupPacket(Body(MessageBuilder::Untyped().Int32(kGssEncRequestCode).Int32(0).Finish())),
               ProtocolError);
}

TEST(StartupPacketErrorTest, CancelRequestOfTheWrongSize) {
  const std::string body = Body(EncodeCancelRequest({.pid = 1, .key = 2}));
  EXPECT_THROW(ParseStartupPacket(body.substr(0, body.size() - 1)), ProtocolError);
  EXPECT_THROW(ParseStartupPacket(body.substr(0, 4)), ProtocolError);
  EXPECT_THROW(ParseStartupPacket(body + "\0"s), ProtocolError);
}

TEST(StartupPacketErrorTest, StartupMessageLayoutErrors) {
  const std::string v3 = "\0\x03\0\0"s;
  EXPECT_THROW(ParseStartupPacket(v3), ProtocolError);                             // no terminator
  EXPECT_THROW(ParseStartupPacket(v3 + "user\0alice\0"s), ProtocolError);          // no terminator
  EXPECT_THROW(ParseStartupPacket(v3 + "user\0"s), ProtocolError);                 // name without value
  EXPECT_THROW(ParseStartupPacket(v3 + "user\0alice"s), ProtocolError);            // value without NUL
  EXPECT_THAT(ProtocolErrorOf([&] { ParseStartupPacket(v3 + "user\0a\0\0x"s); }),  // after the terminator
              HasSubstr("unexpected byte"));
  EXPECT_NO_THROW(ParseStartupPacket(v3 + "user\0alice\0\0"s));
}

TEST(StartupPacketErrorTest, EveryTruncatedStartupMessageThrows) {
  const std::string body = Body(EncodeStartupMessage(SampleStartup()));
  for (size_t n = 0; n < body.size(); ++n) {
    EXPECT_THROW(ParseStartupPacket(body.substr(0, n)), ProtocolError) << "cut to " << n;
  }
}

}  // namespace
}  // namespace testpool::proxy
