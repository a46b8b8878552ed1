// A small client of the Docker Engine API: only what testpool's `docker` backend needs (ping,
// version, images by inspect/commit/import, containers by create/start/inspect/stop/remove/list,
// exec). It talks HTTP/1.1 over the engine's unix socket or TCP through cpp-httplib; it never runs
// the `docker` CLI.
//
// DockerApi is the seam (DESIGN.md: core/ receives it, tests wrap it to break one call);
// DockerClient is the real one.
//
// API version: the first call asks `GET /version` (unversioned) and from then on prefixes every
// path with `/v<min(engine's ApiVersion, kMaxDockerApiVersion)>`; an engine whose MinAPIVersion is
// above that is refused (Error kBackend). The result is kept for the client's lifetime.
//
// Errors, for every method: the engine's answers 4xx/5xx carry `{"message": "…"}`, which becomes
// the message of a testpool::Error: 404 → kNotFound, 409 → kConflict, any other → kBackend. An
// engine that cannot be reached (no socket, connection refused, connection dropped) → kUnavailable,
// naming the address and saying what to run; a call that runs out of its time → kTimeout. An
// answer that is not the JSON the API documents → kBackend. An empty container id or image name →
// kInvalidArgument (a programming slip that would otherwise address another endpoint). Nothing else
// is thrown.
//
// Thread safety: DockerClient may be used from any number of threads at once: every call opens its
// own connection (cheap on a unix socket); the negotiated version is guarded by a mutex.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace testpool::backend {

// The highest Engine API version whose semantics this client was written against (Docker 27).
// Debian 12's docker.io (20.10) speaks 1.41, which is what the tests run against.
inline constexpr std::string_view kMaxDockerApiVersion = "1.47";

// Where an engine listens, as DOCKER_HOST spells it: `unix:///path/to.sock` or `tcp://host:port`.
struct DockerAddress {
  enum class Kind { kUnix, kTcp };
  Kind kind = Kind::kUnix;
  std::string socket_path = "/var/run/docker.sock";  // kUnix
  std::string host;                                  // kTcp
  int port = 2375;                                   // kTcp

  // Parses a DOCKER_HOST value. A bare absolute path is taken as a unix socket; `tcp://host` without
  // a port means 2375. Throws Error(kInvalidArgument) for anything else (ssh://, npipe://, a bad port).
  static DockerAddress Parse(std::string_view docker_host);
  // The address in DOCKER_HOST form ("unix:///run/x.sock", "tcp://10.0.0.2:2375").
  std::string ToString() const;
};

struct DockerClientOptions {
  DockerAddress address;
  // Time allowed to open a connection to the engine.
  std::chrono::milliseconds connect_timeout{3000};
  // Time allowed for one call's request and answer, unless the method takes its own.
  std::chrono::milliseconds call_timeout{30000};
};

struct DockerVersion {
  std::string engine_version;   // "20.10.24+dfsg1"
  std::string api_version;      // the engine's highest, "1.41"
  std::string min_api_version;  // the engine's lowest, "1.12"
  std::string os, arch, kernel_version;
};

struct DockerImage {
  std::string id;  // "sha256:…"
  std::vector<std::string> repo_tags;
  std::string created;  // RFC 3339
  std::int64_t size_bytes = 0;
  std::map<std::string, std::string> labels;  // Config.Labels
};

// One port published by the engine (where a bridge exists): container_port/tcp → host_ip:host_port.
struct DockerPortBinding {
  int container_port = 0;
  int host_port = 0;
  std::string host_ip = "127.0.0.1";
};

struct DockerContainerSpec {
  std::string name;  // empty: the engine picks one
  std::string image;
  std::vector<std::string> cmd;         // empty: the image's
  std::vector<std::string> entrypoint;  // empty: the image's
  std::vector<std::string> env;         // "KEY=value"
  std::map<std::string, std::string> labels;
  std::string user;         // empty: the image's
  std::string working_dir;  // empty: the image's
  // Networking: true shares the host's network namespace (NetworkMode "host"; what testpool uses
  // where the engine runs with --bridge=none); false uses the engine's default network and
  // publishes `ports`.
  bool host_network = true;
  std::vector<DockerPortBinding> ports;
  std::vector<std::string> binds;  // "/host/path:/container/path[:ro]"
  // Bytes of /dev/shm (0: the engine's default, 64 MiB).
  std::int64_t shm_size_bytes = 0;
  // The signal `stop` sends first ("SIGINT"); empty: the image's (SIGTERM by default).
  std::string stop_signal;
};

struct DockerContainer {
  std::string id;
  std::string name;    // without the leading '/'
  std::string image;   // the image id it runs
  std::string status;  // "created", "running", "paused", "restarting", "removing", "exited", "dead"
  bool running = false;
  int pid = 0;
  int exit_code = 0;
  bool oom_killed = false;
  std::string error;        // State.Error
  std::string started_at;   // RFC 3339 with nanoseconds; "0001-01-01T00:00:00Z" when never started
  std::string finished_at;  // idem
  std::map<std::string, std::string> labels;
};

// One row of ListContainers.
struct DockerContainerSummary {
  std::string id;
  std::vector<std::string> names;  // without the leading '/'
  std::string image;
  std::string state;   // "running", "exited", …
  std::string status;  // human text: "Up 3 seconds"
  std::map<std::string, std::string> labels;
};

struct DockerExecResult {
  int exit_code = 0;
  std::string stdout_text;
  std::string stderr_text;
};

struct DockerCommitOptions {
  std::string comment;
  // Changes to the image's config: labels merged in, env replaced when non-empty, cmd replaced
  // when non-empty.
  std::map<std::string, std::string> labels;
  std::vector<std::string> env;
  std::vector<std::string> cmd;
  // Pause the container while it is committed (the engine's default).
  bool pause = true;
};

// The seam. Every method may throw the errors listed in the file comment; a method lists only
// the particular ones its callers need to tell apart.
class DockerApi {
 public:
  virtual ~DockerApi() = default;

  // The DOCKER_HOST form of the engine's address, for messages.
  virtual std::string Address() const = 0;

  // `GET /_ping`: returns when the engine answers "OK".
  virtual void Ping() = 0;

  // `GET /version` (unversioned). Throws Error(kBackend) when the engine is too new for this client.
  virtual DockerVersion Version() = 0;

  // The API version every other call uses ("1.41"), negotiating it on first use.
  virtual std::string ApiVersion() = 0;

  // The image named `ref` (a "repo:tag" or an id), or nullopt when the engine has none.
  virtual std::optional<DockerImage> InspectImage(const std::string& ref) = 0;

  // Creates image `repo:tag` from the files of a tar archive (`POST /images/create?fromSrc=-`,
  // the body streamed from the file), with `changes` applied ("CMD [\"/bin/sh\"]",
  // "ENV K=V", …: Dockerfile instructions). Returns the image id ("sha256:…").
  // Throws Error(kInvalidArgument) if `tar` cannot be read; the engine's refusal as kBackend.
  virtual std::string ImportImage(const std::filesystem::path& tar, const std::string& repo, const std::string& tag,
                                  const std::vector<std::string>& changes, std::chrono::milliseconds timeout) = 0;

  // Commits container `container` as image `repo:tag` (`POST /commit`). Returns the image id.
  // Throws Error(kNotFound) when the container does not exist.
  virtual std::string CommitContainer(const std::string& container, const std::string& repo, const std::string& tag,
                                      const DockerCommitOptions& options, std::chrono::milliseconds timeout) = 0;

  // Removes an image. Throws Error(kNotFound) when there is none, Error(kConflict) when a
  // container uses it and `force` is false.
  virtual void RemoveImage(const std::string& ref, bool force) = 0;

  // Creates a container (not started). Returns its id.
  // Throws Error(kNotFound) when the image does not exist (there is no pull), Error(kConflict)
  // when the name is taken.
  virtual std::string CreateContainer(const DockerContainerSpec& spec) = 0;

  // Starts a created or stopped container; nothing when it already runs.
  // Throws Error(kNotFound) when there is no such container.
  virtual void StartContainer(const std::string& id) = 0;

  // The container's state. Throws Error(kNotFound) when there is no such container.
  virtual DockerContainer InspectContainer(const std::string& id) = 0;

  // SIGTERM (or the image's stop signal), then SIGKILL after `grace`; returns once it stopped.
  // Nothing when it is not running. Throws Error(kNotFound) when there is no such container.
  virtual void StopContainer(const std::string& id, std::chrono::seconds grace) = 0;

  // Removes the container; `force` kills it first if it runs, `volumes` removes its anonymous
  // volumes. Throws Error(kNotFound) when there is no such container, Error(kConflict) when it
  // runs and `force` is false.
  virtual void RemoveContainer(const std::string& id, bool force, bool volumes) = 0;

  // Containers (running or not when `all`) carrying every label of `labels`; an empty value
  // matches any value of that label.
  virtual std::vector<DockerContainerSummary> ListContainers(const std::map<std::string, std::string>& labels,
                                                             bool all) = 0;

  // The last `tail` lines the container wrote to stdout and stderr, interleaved as written.
  // Throws Error(kNotFound) when there is no such container.
  virtual std::string Logs(const std::string& id, int tail) = 0;

  // Runs `cmd` inside the running container (no tty, no stdin) as `user` (empty: the
  // container's) and waits for it, returning its exit code and output.
  // Throws Error(kNotFound) when there is no such container, Error(kConflict) when it is not
  // running, Error(kTimeout) when the command outlives `timeout` (the command keeps running).
  // The exit code is read from `GET /exec/{id}/json` once the output stream ends; the engine sets it
  // a moment later, so that read is retried (1 ms doubling to 50 ms, within `timeout`).
  virtual DockerExecResult Exec(const std::string& id, const std::vector<std::string>& cmd, const std::string& user,
                                std::chrono::milliseconds timeout) = 0;
};

// The real DockerApi over HTTP. Does not connect until the first call.
class DockerClient final : public DockerApi {
 public:
  explicit DockerClient(DockerClientOptions options);
  ~DockerClient() override;
  DockerClient(const DockerClient&) = delete;
  DockerClient& operator=(const DockerClient&) = delete;

  std::string Address() const override;
  void Ping() override;
  DockerVersion Version() override;
  std::string ApiVersion() override;
  std::optional<DockerImage> InspectImage(const std::string& ref) override;
  std::string ImportImage(const std::filesystem::path& tar, const std::string& repo, const std::string& tag,
                          const std::vector<std::string>& changes, std::chrono::milliseconds timeout) override;
  std::string CommitContainer(const std::string& container, const std::string& repo, const std::string& tag,
                              const DockerCommitOptions& options, std::chrono::milliseconds timeout) override;
  void RemoveImage(const std::string& ref, bool force) override;
  std::string CreateContainer(const DockerContainerSpec& spec) override;
  void StartContainer(const std::string& id) override;
  DockerContainer InspectContainer(const std::string& id) override;
  void StopContainer(const std::string& id, std::chrono::seconds grace) override;
  void RemoveContainer(const std::string& id, bool force, bool volumes) override;
  std::vector<DockerContainerSummary> ListContainers(const std::map<std::string, std::string>& labels,
                                                     bool all) override;
  std::string Logs(const std::string& id, int tail) override;
  DockerExecResult Exec(const std::string& id, const std::vector<std::string>& cmd, const std::string& user,
                        std::chrono::milliseconds timeout) override;

 private:
  struct Http;  // one request over a fresh connection (docker_api.cc)

  // The "/v1.xx" prefix, negotiating on first use.
  std::string Prefix();

  const DockerClientOptions options_;
  std::mutex mu_;
  std::optional<std::string> api_version_;  // guarded by mu_
};

// min(engine_max, client_max) of two "1.xx" versions. Throws Error(kBackend) when that is below
// `engine_min` (the engine no longer speaks any version this client knows).
std::string NegotiateDockerApiVersion(std::string_view engine_max, std::string_view engine_min,
                                      std::string_view client_max = kMaxDockerApiVersion);

// Splits the multiplexed stream of a non-tty attach or exec (frames of an 8-byte header: stream
// 1 = stdout or 2 = stderr, three zero bytes, a big-endian 32-bit length; then that many bytes)
// into `out` and `err` (stdin frames are dropped). Returns false when `stream` ends inside a frame
// (what was complete is still appended).
bool DemuxDockerStream(std::string_view stream, std::string& out, std::string& err);

}  // namespace testpool::backend
