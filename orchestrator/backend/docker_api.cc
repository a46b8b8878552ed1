#include "orchestrator/backend/docker_api.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>

#include "orchestrator/util/error.h"
#include "orchestrator/util/url.h"

namespace testpool::backend {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// --- small helpers -----------------------------------------------------------------------------

// A container id or name, or an image reference, as one path segment ('/' and ':' kept: the
// engine's router takes image names with slashes).
std::string Segment(const std::string& s) {
  if (s.empty()) throw Error(ErrorCode::kInvalidArgument, "docker: empty container or image name");
  return util::PercentEncode(s, "/:@");
}

std::string Str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t Int(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<std::int64_t>() : 0;
}

bool Bool(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() && it->get<bool>();
}

const json& Obj(const json& j, const char* key) {
  static const json kEmpty = json::object();
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

std::vector<std::string> Strings(const json& j, const char* key) {
  std::vector<std::string> out;
  auto it = j.find(key);
  if (it == j.end() || !it->is_array()) return out;
  for (const json& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

std::map<std::string, std::string> Labels(const json& j) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : Obj(j, "Labels").items()) {
    if (v.is_string()) out[k] = v.get<std::string>();
  }
  return out;
}

std::string StripSlash(std::string_view name) {
  if (name.starts_with('/')) name.remove_prefix(1);
  return std::string(name);
}

// "1.41" → {1, 41}; {-1, -1} when it is not that shape.
std::pair<int, int> ParseVersion(std::string_view v) {
  auto dot = v.find('.');
  if (dot == v.npos) return {-1, -1};
  int major = -1, minor = -1;
  auto r1 = std::from_chars(v.data(), v.data() + dot, major);
  auto r2 = std::from_chars(v.data() + dot + 1, v.data() + v.size(), minor);
  if (r1.ec != std::errc() || r1.ptr != v.data() + dot || r2.ec != std::errc() || r2.ptr != v.data() + v.size()) {
    return {-1, -1};
  }
  return {major, minor};
}

// The engine's answer to a failed call: its `message`, else the raw body.
std::string EngineMessage(const std::string& body) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_object()) {
    std::string m = Str(j, "message");
    if (!m.empty()) return m;
  }
  std::string raw = body.substr(0, 300);
  while (!raw.empty() && (raw.back() == '\n' || raw.back() == '\r')) raw.pop_back();
  return raw.empty() ? "(no message)" : raw;
}

}  // namespace

// --- addresses and versions --------------------------------------------------------------------

DockerAddress DockerAddress::Parse(std::string_view docker_host) {
  DockerAddress a;
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::kInvalidArgument, "bad Docker address '" + std::string(docker_host) + "' (" + why +
                                                  "); expected unix:///path/to/docker.sock or tcp://host:port");
  };
  if (docker_host.starts_with("unix://")) {
    a.kind = Kind::kUnix;
    a.socket_path = std::string(docker_host.substr(7));
    if (a.socket_path.empty() || a.socket_path[0] != '/') throw bad("the socket path must be absolute");
    return a;
  }
  if (!docker_host.empty() && docker_host[0] == '/') {
    a.kind = Kind::kUnix;
    a.socket_path = std::string(docker_host);
    return a;
  }
  if (docker_host.starts_with("tcp://") || docker_host.starts_with("http://")) {
    a.kind = Kind::kTcp;
    std::string_view rest = docker_host.substr(docker_host.find("://") + 3);
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    std::string_view port;
    if (!rest.empty() && rest[0] == '[') {  // [v6]:port
      auto close = rest.find(']');
      if (close == rest.npos) throw bad("unclosed '['");
      a.host = std::string(rest.substr(1, close - 1));
      if (close + 1 < rest.size()) {
        if (rest[close + 1] != ':') throw bad("junk after ']'");
        port = rest.substr(close + 2);
      }
    } else {
      auto colon = rest.rfind(':');
      a.host = std::string(rest.substr(0, colon));
      if (colon != rest.npos) port = rest.substr(colon + 1);
    }
    if (a.host.empty()) throw bad("no host");
    if (a.host.find('/') != std::string::npos) throw bad("a path is not supported");
    a.port = 2375;
    if (!port.empty()) {
      auto r = std::from_chars(port.data(), port.data() + port.size(), a.port);
      if (r.ec != std::errc() || r.ptr != port.data() + port.size() || a.port < 1 || a.port > 65535) {
        throw bad("bad port");
      }
    }
    return a;
  }
  throw bad("unsupported scheme");
}

std::string DockerAddress::ToString() const {
  if (kind == Kind::kUnix) return "unix://" + socket_path;
  bool v6 = host.find(':') != std::string::npos;
  return "tcp://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string NegotiateDockerApiVersion(std::string_view engine_max, std::string_view engine_min,
                                      std::string_view client_max) {
  auto emax = ParseVersion(engine_max);
  auto cmax = ParseVersion(client_max);
  if (emax.first < 0) {
    throw Error(ErrorCode::kBackend,
                "the Docker engine reports an API version that is not 1.xx: '" + std::string(engine_max) + "'");
  }
  auto chosen = std::min(emax, cmax);
  auto emin = ParseVersion(engine_min);
  if (emin.first >= 0 && chosen < emin) {
    throw Error(ErrorCode::kBackend, "the Docker engine speaks API " + std::string(engine_min) + " to " +
                                         std::string(engine_max) + ", but testpool knows API versions up to " +
                                         std::string(client_max) + " only");
  }
  return std::to_string(chosen.first) + "." + std::to_string(chosen.second);
}

bool DemuxDockerStream(std::string_view stream, std::string& out, std::string& err) {
  while (!stream.empty()) {
    if (stream.size() < 8) return false;
    auto type = static_cast<unsigned char>(stream[0]);
    std::uint32_t len = 0;
    for (int i = 4; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(stream[i]);
    stream.remove_prefix(8);
    bool whole = stream.size() >= len;
    std::string_view payload = stream.substr(0, len);
    if (type == 1) out.append(payload);
    if (type == 2) err.append(payload);
    if (!whole) return false;
    stream.remove_prefix(len);
  }
  return true;
}

// --- one HTTP request --------------------------------------------------------------------------

struct DockerClient::Http {
  struct Answer {
    int status = 0;
    std::string body;
  };

  // Sends `req` over a fresh connection with `timeout` for the whole call. Throws kUnavailable,
  // kTimeout or kBackend as the file comment of docker_api.h says; any HTTP status is returned.
  static Answer Send(const DockerClientOptions& o, httplib::Request req, std::chrono::milliseconds timeout) {
    auto client = Connect(o, timeout);
    if (!req.has_header("Host")) req.headers.emplace("Host", "docker");
    // A receiver of our own enforces the whole call's deadline (the read timeout is per read).
    Answer answer;
    const auto deadline = Clock::now() + timeout;
    bool past_deadline = false;
    req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
      if (Clock::now() > deadline) {
        past_deadline = true;
        return false;
      }
      answer.body.append(data, len);
      return true;
    };
    const std::string what = req.method + " " + req.path.substr(0, req.path.find('?'));
    const auto start = Clock::now();
    errno = 0;
    httplib::Result r = client->send(req);
    const int saved_errno = errno;
    return Finish(o, what, std::move(r), saved_errno, Clock::now() - start, timeout, past_deadline, std::move(answer));
  }

  // POSTs `size` bytes from `provider` (never wholly in memory) to `path`.
  static Answer Upload(const DockerClientOptions& o, const std::string& path, const std::string& content_type,
                       size_t size, httplib::ContentProvider provider, std::chrono::milliseconds timeout) {
    auto client = Connect(o, timeout);
    const auto start = Clock::now();
    errno = 0;
    httplib::Result r =
        client->Post(path, httplib::Headers{{"Host", "docker"}}, size, std::move(provider), content_type);
    const int saved_errno = errno;
    Answer answer;
    if (r) answer.body = r->body;
    return Finish(o, "POST " + path.substr(0, path.find('?')), std::move(r), saved_errno, Clock::now() - start, timeout,
                  false, std::move(answer));
  }

  static std::unique_ptr<httplib::Client> Connect(const DockerClientOptions& o, std::chrono::milliseconds timeout) {
    std::unique_ptr<httplib::Client> client;
    if (o.address.kind == DockerAddress::Kind::kUnix) {
      client = std::make_unique<httplib::Client>(o.address.socket_path);
      client->set_address_family(AF_UNIX);
    } else {
      client = std::make_unique<httplib::Client>(o.address.host, o.address.port);
    }
    client->set_connection_timeout(o.connect_timeout);
    client->set_read_timeout(timeout);
    client->set_write_timeout(timeout);
    client->set_keep_alive(false);
    return client;
  }

  // The answer when `r` succeeded, else the Error its failure means.
  static Answer Finish(const DockerClientOptions& o, const std::string& what, httplib::Result r, int saved_errno,
                       Clock::duration elapsed, std::chrono::milliseconds timeout, bool past_deadline, Answer answer) {
    if (r) {
      answer.status = r->status;
      return answer;
    }
    const httplib::Error e = r.error();
    if (past_deadline || e == httplib::Error::Canceled ||
        ((e == httplib::Error::Read || e == httplib::Error::Write) && elapsed >= timeout)) {
      throw Error(ErrorCode::kTimeout, "the Docker engine at " + o.address.ToString() + " did not finish " + what +
                                           " within " + std::to_string(timeout.count()) + " ms");
    }
    std::string why;
    switch (e) {
      case httplib::Error::Connection:
        why = "cannot connect";
        if (saved_errno != 0) why += std::string(": ") + std::strerror(saved_errno);
        if (o.address.kind == DockerAddress::Kind::kUnix) {
          std::error_code ec;
          if (!std::filesystem::exists(o.address.socket_path, ec)) why = "no socket at " + o.address.socket_path;
        }
        break;
      case httplib::Error::ConnectionTimeout:
        why = "no connection within " + std::to_string(o.connect_timeout.count()) + " ms";
        break;
      case httplib::Error::Read:
        why = "the connection broke while reading the answer";
        break;
      case httplib::Error::Write:
        why = "the connection broke while sending the request";
        break;
      default:
        throw Error(ErrorCode::kBackend, "Docker engine call " + what + " failed: " + httplib::to_string(e));
    }
    throw Error(ErrorCode::kUnavailable, "cannot reach the Docker engine at " + o.address.ToString() + " (" + what +
                                             ": " + why +
                                             "); is dockerd running? (testpool's own: scripts/start-dockerd.sh; "
                                             "or set DOCKER_HOST)");
  }

  static httplib::Request Make(const std::string& method, const std::string& path) {
    httplib::Request req;
    req.method = method;
    req.path = path;
    return req;
  }

  static httplib::Request MakeJson(const std::string& method, const std::string& path, const json& body) {
    httplib::Request req = Make(method, path);
    req.body = body.dump();
    req.headers.emplace("Content-Type", "application/json");
    return req;
  }

  // Throws the mapped Error unless `a.status` is one of `ok`.
  static void Expect(const Answer& a, std::initializer_list<int> ok, const std::string& what) {
    for (int s : ok) {
      if (a.status == s) return;
    }
    std::string msg =
        "Docker engine: " + what + ": " + EngineMessage(a.body) + " (HTTP " + std::to_string(a.status) + ")";
    switch (a.status) {
      case 404:
        throw Error(ErrorCode::kNotFound, msg);
      case 409:
        throw Error(ErrorCode::kConflict, msg);
      default:
        throw Error(ErrorCode::kBackend, msg);
    }
  }

  static json Parse(const Answer& a, const std::string& what) {
    json j = json::parse(a.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !(j.is_object() || j.is_array())) {
      throw Error(ErrorCode::kBackend,
                  "Docker engine: " + what + ": an answer that is not JSON: " + a.body.substr(0, 200));
    }
    return j;
  }
};

// --- DockerClient ------------------------------------------------------------------------------

DockerClient::DockerClient(DockerClientOptions options) : options_(std::move(options)) {}

DockerClient::~DockerClient() = default;

std::string DockerClient::Address() const { return options_.address.ToString(); }

void DockerClient::Ping() {
  auto a = Http::Send(options_, Http::Make("GET", "/_ping"), options_.call_timeout);
  Http::Expect(a, {200}, "ping");
  if (a.body != "OK") throw Error(ErrorCode::kBackend, "Docker engine: ping answered '" + a.body.substr(0, 100) + "'");
}

DockerVersion DockerClient::Version() {
  auto a = Http::Send(options_, Http::Make("GET", "/version"), options_.call_timeout);
  Http::Expect(a, {200}, "version");
  json j = Http::Parse(a, "version");
  DockerVersion v;
  v.engine_version = Str(j, "Version");
  v.api_version = Str(j, "ApiVersion");
  v.min_api_version = Str(j, "MinAPIVersion");
  v.os = Str(j, "Os");
  v.arch = Str(j, "Arch");
  v.kernel_version = Str(j, "KernelVersion");
  return v;
}

std::string DockerClient::ApiVersion() {
  {
    std::lock_guard lock(mu_);
    if (api_version_) return *api_version_;
  }
  // Asked without the lock (it is I/O); two threads racing both ask and agree.
  DockerVersion v = Version();
  std::string chosen = NegotiateDockerApiVersion(v.api_version, v.min_api_version);
  std::lock_guard lock(mu_);
  if (!api_version_) api_version_ = chosen;
  return *api_version_;
}

std::string DockerClient::Prefix() { return "/v" + ApiVersion(); }

std::optional<DockerImage> DockerClient::InspectImage(const std::string& ref) {
  auto a =
      Http::Send(options_, Http::Make("GET", Prefix() + "/images/" + Segment(ref) + "/json"), options_.call_timeout);
  if (a.status == 404) return std::nullopt;
  Http::Expect(a, {200}, "inspect image " + ref);
  json j = Http::Parse(a, "inspect image " + ref);
  DockerImage img;
  img.id = Str(j, "Id");
  img.repo_tags = Strings(j, "RepoTags");
  img.created = Str(j, "Created");
  img.size_bytes = Int(j, "Size");
  img.labels = Labels(Obj(j, "Config"));
  return img;
}

std::string DockerClient::ImportImage(const std::filesystem::path& tar, const std::string& repo, const std::string& tag,
                                      const std::vector<std::string>& changes, std::chrono::milliseconds timeout) {
  const std::string what = "import " + tar.string() + " as " + repo + ":" + tag;
  auto file = std::make_shared<std::ifstream>(tar, std::ios::binary);
  std::error_code ec;
  const auto size = std::filesystem::file_size(tar, ec);
  if (!*file || ec) throw Error(ErrorCode::kInvalidArgument, "docker: cannot read " + tar.string());

  std::string path = Prefix() + "/images/create?fromSrc=-&repo=" + util::PercentEncode(repo) + "&tag=" + util::PercentEncode(tag);
  for (const std::string& c : changes) path += "&changes=" + util::PercentEncode(c);
  auto provider = [file](size_t offset, size_t length, httplib::DataSink& sink) {
    char buf[64 * 1024];
    file->seekg(static_cast<std::streamoff>(offset));
    file->read(buf, static_cast<std::streamsize>(std::min(length, sizeof buf)));
    const auto n = file->gcount();
    return n > 0 && sink.write(buf, static_cast<size_t>(n));
  };
  auto a = Http::Upload(options_, path, "application/x-tar", size, provider, timeout);
  Http::Expect(a, {200}, what);
  // A stream of JSON progress objects; a failure arrives as {"error": …} even with status 200.
  std::string id;
  std::size_t pos = 0;
  while (pos < a.body.size()) {
    std::size_t end = a.body.find('\n', pos);
    if (end == std::string::npos) end = a.body.size();
    std::string line = a.body.substr(pos, end - pos);
    pos = end + 1;
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) continue;
    if (j.contains("error")) {
      std::string m = Str(Obj(j, "errorDetail"), "message");
      throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": " + (m.empty() ? Str(j, "error") : m));
    }
    std::string status = Str(j, "status");
    if (status.starts_with("sha256:")) id = status;
  }
  if (id.empty())
    throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": no image id in " + a.body.substr(0, 200));
  return id;
}

std::string DockerClient::CommitContainer(const std::string& container, const std::string& repo, const std::string& tag,
                                          const DockerCommitOptions& options, std::chrono::milliseconds timeout) {
  const std::string what = "commit " + container + " as " + repo + ":" + tag;
  json config = json::object();
  if (!options.labels.empty()) config["Labels"] = options.labels;
  if (!options.env.empty()) config["Env"] = options.env;
  if (!options.cmd.empty()) config["Cmd"] = options.cmd;
  std::string path = Prefix() + "/commit?container=" + util::PercentEncode(container) + "&repo=" + util::PercentEncode(repo) +
                     "&tag=" + util::PercentEncode(tag) + "&pause=" + (options.pause ? "true" : "false");
  if (!options.comment.empty()) path += "&comment=" + util::PercentEncode(options.comment);
  auto a = Http::Send(options_, Http::MakeJson("POST", path, config), timeout);
  Http::Expect(a, {200, 201}, what);
  std::string id = Str(Http::Parse(a, what), "Id");
  if (id.empty()) throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": no image id in the answer");
  return id;
}

void DockerClient::RemoveImage(const std::string& ref, bool force) {
  auto a = Http::Send(
      options_, Http::Make("DELETE", Prefix() + "/images/" + Segment(ref) + "?force=" + (force ? "true" : "false")),
      options_.call_timeout);
  Http::Expect(a, {200}, "remove image " + ref);
}

std::string DockerClient::CreateContainer(const DockerContainerSpec& spec) {
  const std::string what = "create a container from " + spec.image;
  json body = {{"Image", spec.image}, {"Labels", spec.labels}, {"Tty", false}, {"OpenStdin", false}};
  if (!spec.cmd.empty()) body["Cmd"] = spec.cmd;
  if (!spec.entrypoint.empty()) body["Entrypoint"] = spec.entrypoint;
  if (!spec.env.empty()) body["Env"] = spec.env;
  if (!spec.user.empty()) body["User"] = spec.user;
  if (!spec.working_dir.empty()) body["WorkingDir"] = spec.working_dir;
  if (!spec.stop_signal.empty()) body["StopSignal"] = spec.stop_signal;
  json host = json::object();
  if (spec.host_network) {
    host["NetworkMode"] = "host";
  } else {
    json exposed = json::object(), bindings = json::object();
    for (const DockerPortBinding& p : spec.ports) {
      const std::string key = std::to_string(p.container_port) + "/tcp";
      exposed[key] = json::object();
      bindings[key].push_back({{"HostIp", p.host_ip}, {"HostPort", std::to_string(p.host_port)}});
    }
    if (!spec.ports.empty()) {
      body["ExposedPorts"] = exposed;
      host["PortBindings"] = bindings;
    }
  }
  if (!spec.binds.empty()) host["Binds"] = spec.binds;
  if (spec.shm_size_bytes > 0) host["ShmSize"] = spec.shm_size_bytes;
  body["HostConfig"] = host;
  std::string path = Prefix() + "/containers/create";
  if (!spec.name.empty()) path += "?name=" + util::PercentEncode(spec.name);
  auto a = Http::Send(options_, Http::MakeJson("POST", path, body), options_.call_timeout);
  Http::Expect(a, {201}, what);
  std::string id = Str(Http::Parse(a, what), "Id");
  if (id.empty()) throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": no container id in the answer");
  return id;
}

void DockerClient::StartContainer(const std::string& id) {
  auto a = Http::Send(options_, Http::Make("POST", Prefix() + "/containers/" + Segment(id) + "/start"),
                      options_.call_timeout);
  Http::Expect(a, {204, 304}, "start container " + id);
}

DockerContainer DockerClient::InspectContainer(const std::string& id) {
  const std::string what = "inspect container " + id;
  auto a =
      Http::Send(options_, Http::Make("GET", Prefix() + "/containers/" + Segment(id) + "/json"), options_.call_timeout);
  Http::Expect(a, {200}, what);
  json j = Http::Parse(a, what);
  const json& state = Obj(j, "State");
  DockerContainer c;
  c.id = Str(j, "Id");
  c.name = StripSlash(Str(j, "Name"));
  c.image = Str(j, "Image");
  c.status = Str(state, "Status");
  c.running = Bool(state, "Running");
  c.pid = static_cast<int>(Int(state, "Pid"));
  c.exit_code = static_cast<int>(Int(state, "ExitCode"));
  c.oom_killed = Bool(state, "OOMKilled");
  c.error = Str(state, "Error");
  c.started_at = Str(state, "StartedAt");
  c.finished_at = Str(state, "FinishedAt");
  c.labels = Labels(Obj(j, "Config"));
  return c;
}

void DockerClient::StopContainer(const std::string& id, std::chrono::seconds grace) {
  auto a = Http::Send(
      options_,
      Http::Make("POST", Prefix() + "/containers/" + Segment(id) + "/stop?t=" + std::to_string(grace.count())),
      options_.call_timeout + grace);
  Http::Expect(a, {204, 304}, "stop container " + id);
}

void DockerClient::RemoveContainer(const std::string& id, bool force, bool volumes) {
  auto a =
      Http::Send(options_,
                 Http::Make("DELETE", Prefix() + "/containers/" + Segment(id) + "?force=" + (force ? "true" : "false") +
                                          "&v=" + (volumes ? "true" : "false")),
                 options_.call_timeout);
  Http::Expect(a, {204}, "remove container " + id);
}

std::vector<DockerContainerSummary> DockerClient::ListContainers(const std::map<std::string, std::string>& labels,
                                                                 bool all) {
  json label_filter = json::array();
  for (const auto& [k, v] : labels) label_filter.push_back(v.empty() ? k : k + "=" + v);
  std::string path = Prefix() + "/containers/json?all=" + (all ? "true" : "false");
  if (!label_filter.empty()) path += "&filters=" + util::PercentEncode(json{{"label", label_filter}}.dump());
  auto a = Http::Send(options_, Http::Make("GET", path), options_.call_timeout);
  Http::Expect(a, {200}, "list containers");
  json j = Http::Parse(a, "list containers");
  std::vector<DockerContainerSummary> out;
  for (const json& row : j) {
    DockerContainerSummary s;
    s.id = Str(row, "Id");
    for (std::string n : Strings(row, "Names")) s.names.push_back(StripSlash(std::move(n)));
    s.image = Str(row, "Image");
    s.state = Str(row, "State");
    s.status = Str(row, "Status");
    s.labels = Labels(row);
    out.push_back(std::move(s));
  }
  return out;
}

std::string DockerClient::Logs(const std::string& id, int tail) {
  const std::string what = "read the log of container " + id;
  auto a = Http::Send(options_,
                      Http::Make("GET", Prefix() + "/containers/" + Segment(id) +
                                            "/logs?stdout=true&stderr=true&tail=" + std::to_string(std::max(tail, 0))),
                      options_.call_timeout);
  Http::Expect(a, {200}, what);
  // Both streams into one text, in the order written (a container without a tty multiplexes them).
  std::string text;
  if (!DemuxDockerStream(a.body, text, text)) {
    throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": the stream ended inside a frame");
  }
  return text;
}

DockerExecResult DockerClient::Exec(const std::string& id, const std::vector<std::string>& cmd, const std::string& user,
                                    std::chrono::milliseconds timeout) {
  const std::string what = "exec in container " + id;
  const auto deadline = Clock::now() + timeout;
  auto left = [&] {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (ms.count() <= 0) {
      throw Error(ErrorCode::kTimeout, "Docker engine: " + what + ": the command did not finish within " +
                                           std::to_string(timeout.count()) + " ms");
    }
    return ms;
  };
  json create = {{"AttachStdin", false}, {"AttachStdout", true}, {"AttachStderr", true}, {"Tty", false}, {"Cmd", cmd}};
  if (!user.empty()) create["User"] = user;
  auto a = Http::Send(options_, Http::MakeJson("POST", Prefix() + "/containers/" + Segment(id) + "/exec", create),
                      std::min(left(), options_.call_timeout));
  Http::Expect(a, {201}, what);
  const std::string exec_id = Str(Http::Parse(a, what), "Id");
  if (exec_id.empty()) throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": no exec id in the answer");

  // Not detached: the answer is the command's multiplexed output, until it exits.
  a = Http::Send(options_,
                 Http::MakeJson("POST", Prefix() + "/exec/" + Segment(exec_id) + "/start",
                                json{{"Detach", false}, {"Tty", false}}),
                 left());
  Http::Expect(a, {200}, what);
  DockerExecResult result;
  if (!DemuxDockerStream(a.body, result.stdout_text, result.stderr_text)) {
    throw Error(ErrorCode::kBackend, "Docker engine: " + what + ": the output stream ended inside a frame");
  }

  // The stream ends when the process does; its exit code lands a moment later.
  for (auto pause = std::chrono::milliseconds(1);; pause = std::min(pause * 2, std::chrono::milliseconds(50))) {
    auto b = Http::Send(options_, Http::Make("GET", Prefix() + "/exec/" + Segment(exec_id) + "/json"),
                        std::min(left(), options_.call_timeout));
    Http::Expect(b, {200}, what);
    json j = Http::Parse(b, what);
    if (!Bool(j, "Running") && j.contains("ExitCode") && j["ExitCode"].is_number()) {
      result.exit_code = j["ExitCode"].get<int>();
      return result;
    }
    left();
    std::this_thread::sleep_for(pause);
  }
}

}  // namespace testpool::backend
