// The wire proxy's codec (proxy/codec.h) over the bytes a peer sends: a lease holder's client
// stream (start-up packets, then typed frontend messages) or a server's stream (typed backend
// messages).
//
// Input: one byte of options, then the stream. Bit 0 of the options: 1 for a client's stream (the
// first packet untyped, as the proxy reads it), 0 for a server's. Bits 1-3 pick how the stream is
// cut into reads (1 to 8 bytes per Feed, cycling), so partial headers and bodies are exercised.
//
// Checked:
//  - FrameReader: the same messages (and the same ProtocolError, at the same message) whether
//    the stream arrives whole or in small pieces; each frame's raw bytes hold its type, its length
//    and its body; buffered() counts what was fed but not returned;
//  - every Parse* function the message's type byte can mean (either direction) throws nothing but
//    ProtocolError, and what it parses encodes back to the very frame it came from (Encode*);
//  - start-up packets: a 3.x StartupMessage and a CancelRequest encode back to the same packet.
#include <algorithm>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "orchestrator/proxy/codec.h"

namespace testpool::proxy {
namespace {

using fuzz::Unexpected;

// Runs `parse`; a ProtocolError is the peer's mistake and ends the check, anything else aborts.
template <typename F>
void Try(const char* what, F&& parse) {
  try {
    parse();
  } catch (const ProtocolError&) {
  } catch (const std::exception& e) {
    Unexpected(what, e);
  }
}

void CheckStartupPacket(const MessageView& m, bool* typed, bool* stop) {
  Try("ParseStartupPacket", [&] {
    const StartupPacket packet = ParseStartupPacket(m.body);
    if (std::holds_alternative<SslRequest>(packet) || std::holds_alternative<GssEncRequest>(packet)) {
      FUZZ_CHECK(m.body.size() == 4);  // the code alone
    } else if (const auto* cancel = std::get_if<CancelRequest>(&packet)) {
      FUZZ_CHECK(EncodeCancelRequest(*cancel) == m.raw);
      *stop = true;  // the proxy closes the connection after a CancelRequest
    } else {
      const auto& startup = std::get<StartupMessage>(packet);
      if ((startup.protocol >> 16) < 3) {
        FUZZ_CHECK(startup.params.empty());
        *stop = true;  // refused
        return;
      }
      FUZZ_CHECK(EncodeStartupMessage(startup) == m.raw);
      for (const auto& [name, value] : startup.params) {
        FUZZ_CHECK(!name.empty());
        FUZZ_CHECK(startup.Param(name).has_value());
      }
      *typed = true;  // the proxy reads typed messages after a StartupMessage
    }
  });
}

// Every parser the type byte can select, frontend or backend, each checked to encode back to
// the same frame.
void CheckTypedMessage(const MessageView& m) {
  const std::string_view raw = m.raw;
  switch (m.type) {
    case 'Q':
      Try("ParseQuery", [&] { FUZZ_CHECK(EncodeQuery(ParseQuery(m.body).text) == raw); });
      break;
    case 'P':
      Try("ParseParse", [&] {
        const Parse p = ParseParse(m.body);
        FUZZ_CHECK(p.param_types.size() >= 2 && (p.param_types.size() - 2) % 4 == 0);
        FUZZ_CHECK(EncodeParse(p.statement, p.query, p.param_types) == raw);
      });
      break;
    case 'B':
      Try("ParseBind", [&] {
        const Bind b = ParseBind(m.body);
        FUZZ_CHECK(EncodeBind(b.portal, b.statement, b.rest) == raw);
      });
      break;
    case 'D':
      Try("ParseDescribe", [&] {
        const Target t = ParseDescribe(m.body);
        FUZZ_CHECK(EncodeDescribe(t.kind, t.name) == raw);
      });
      break;
    case 'C':
      Try("ParseClose", [&] {
        const Target t = ParseClose(m.body);
        FUZZ_CHECK(EncodeClose(t.kind, t.name) == raw);
      });
      Try("ParseCommandComplete", [&] { FUZZ_CHECK(EncodeCommandComplete(ParseCommandComplete(m.body)) == raw); });
      break;
    case 'E':
      Try("ParseExecute", [&] {
        const Execute e = ParseExecute(m.body);
        FUZZ_CHECK(EncodeExecute(e.portal, e.max_rows) == raw);
      });
      Try("ParseFields", [&] {
        const Fields f = ParseFields(m.body);
        FUZZ_CHECK(EncodeErrorResponse(f) == raw);
        for (const auto& [code, value] : f.fields) FUZZ_CHECK(code != 0 && f.Get(code).data() != nullptr);
      });
      break;
    case 'N':
      Try("ParseFields", [&] { FUZZ_CHECK(EncodeNoticeResponse(ParseFields(m.body)) == raw); });
      break;
    case 'p':
      // SASLInitialResponse (SASLResponse and PasswordMessage share the type; their bodies are
      // raw, so only the initial response has a parser).
      Try("ParseSaslInitialResponse", [&] {
        const SaslInitialResponse s = ParseSaslInitialResponse(m.body);
        const std::string encoded = EncodeSaslInitialResponse(s.mechanism, s.data);
        if (encoded != raw) {
          // Only "no data" (length -1) encodes differently: as an empty one (length 0).
          FUZZ_CHECK(s.data.empty());
          FUZZ_CHECK(raw.substr(raw.size() - 4) == std::string_view("\xff\xff\xff\xff", 4));
        }
      });
      break;
    case 'R':
      Try("ParseAuthentication", [&] {
        const Authentication a = ParseAuthentication(m.body);
        FUZZ_CHECK(EncodeAuthentication(a.code, a.data) == raw);
      });
      break;
    case 'S':
      if (m.body.empty()) FUZZ_CHECK(EncodeSync() == raw);
      Try("ParseParameterStatus", [&] {
        const ParameterStatus p = ParseParameterStatus(m.body);
        FUZZ_CHECK(EncodeParameterStatus(p.name, p.value) == raw);
      });
      break;
    case 'K':
      Try("ParseBackendKeyData", [&] {
        const BackendKeyData k = ParseBackendKeyData(m.body);
        FUZZ_CHECK(EncodeBackendKeyData(k.pid, k.key) == raw);
      });
      break;
    case 'Z':
      Try("ParseReadyForQuery", [&] { FUZZ_CHECK(EncodeReadyForQuery(ParseReadyForQuery(m.body)) == raw); });
      break;
    case 'H':
      if (m.body.empty()) FUZZ_CHECK(EncodeFlush() == raw);
      break;
    case 'X':
      if (m.body.empty()) FUZZ_CHECK(EncodeTerminate() == raw);
      break;
    default:
      break;
  }
}

// What one pass over the stream saw: every frame (type and raw bytes) and the error, if any.
struct Pass {
  std::vector<std::pair<char, std::string>> frames;
  std::string error;  // the ProtocolError's message; "" when none
};

// Reads `stream` through a FrameReader fed `cut` bytes at a time (0: all at once), parsing each
// message as the proxy would.
Pass Read(std::string_view stream, bool client, unsigned cut) {
  Pass pass;
  FrameReader reader(client);
  bool typed = !client;
  size_t fed = 0, returned = 0;
  unsigned step = 0;
  try {
    while (true) {
      std::optional<MessageView> m = reader.Next();
      if (!m) {
        FUZZ_CHECK(reader.buffered() == fed - returned);
        if (fed == stream.size()) break;
        const size_t n = cut == 0 ? stream.size() : std::min<size_t>(1 + (step++ + cut) % 8, stream.size() - fed);
        reader.Feed(stream.substr(fed, n));
        fed += n;
        continue;
      }
      returned += m->raw.size();
      FUZZ_CHECK(returned <= fed);
      const size_t header = typed ? 5 : 4;
      FUZZ_CHECK(m->raw.size() == header + m->body.size());
      FUZZ_CHECK(m->raw.substr(header) == m->body);
      FUZZ_CHECK(m->type == (typed ? m->raw[0] : 0));
      pass.frames.emplace_back(m->type, std::string(m->raw));
      if (typed) {
        FUZZ_CHECK(m->raw.size() <= kMaxMessageBytes + 1);
        CheckTypedMessage(*m);
      } else {
        FUZZ_CHECK(m->raw.size() <= kMaxStartupBytes);
        bool stop = false;
        CheckStartupPacket(*m, &typed, &stop);
        if (stop) break;
        if (typed) reader.ExpectTyped();
      }
    }
  } catch (const ProtocolError& e) {
    pass.error = e.what();
    FUZZ_CHECK(!pass.error.empty());
  } catch (const std::exception& e) {
    Unexpected("FrameReader", e);
  }
  return pass;
}

}  // namespace
}  // namespace testpool::proxy

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace testpool::proxy;
  if (size == 0) return 0;
  const bool client = (data[0] & 1) != 0;
  const unsigned cut = 1 + ((data[0] >> 1) & 7);
  const std::string_view stream = testpool::fuzz::AsText(data + 1, size - 1);
  const Pass whole = Read(stream, client, 0);
  const Pass pieces = Read(stream, client, cut);
  FUZZ_CHECK(whole.frames == pieces.frames);
  FUZZ_CHECK(whole.error == pieces.error);
  return 0;
}
