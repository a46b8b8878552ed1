#include "orchestrator/backend/docker_backend.h"

#include <algorithm>
#include <cctype>
#include <thread>

#include "orchestrator/backend/local_host.h"
#include "orchestrator/backend/process_util.h"
#include "orchestrator/pg/connection.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/error.h"
#include "orchestrator/util/log.h"

namespace testpool::backend {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kLabelOwner = "testpool.owner";
constexpr const char* kLabelRole = "testpool.role";
constexpr const char* kLabelSlot = "testpool.slot";
constexpr const char* kLabelTemplate = "testpool.template";
constexpr const char* kLabelHash = "testpool.hash";
constexpr const char* kLabelPort = "testpool.port";
constexpr const char* kLabelImage = "testpool.image";
constexpr const char* kLabelBase = "testpool.base";
constexpr const char* kLabelPassword = "testpool.superuser_password";
constexpr const char* kLabelBaseInputs = "testpool.base_inputs";  // set by scripts/build-base-image.sh

constexpr const char* kDataDir = "/var/lib/postgresql/testpool";
constexpr int kBindAttempts = 4;
constexpr auto kReadyPoll = 10ms;
constexpr auto kStateCheckEvery = 200ms;
constexpr auto kStopGrace = 60s;
constexpr auto kCommitTimeout = 300s;

// The container's command, for any PostgreSQL image: find the server programs, create the cluster
// when the data directory is empty (the superuser's password from the environment, through a
// file removed at once; local connections trusted: only `docker exec` reaches them), then become
// the server with the arguments given ("$@").
constexpr const char* kServerScript = R"(set -e
for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
  if [ -x "$d/postgres" ]; then PATH="$d:$PATH"; break; fi
done
export PATH
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  umask 077
  printf '%s\n' "$TESTPOOL_SUPERUSER_PASSWORD" > /tmp/.testpool-pw
  initdb -D "$PGDATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 \
    --pwfile=/tmp/.testpool-pw --no-sync --no-instructions
  rm -f /tmp/.testpool-pw
fi
exec postgres -D "$PGDATA" "$@"
)";

bool ValidSettingName(const std::string& name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.';
  });
}

bool BindFailed(const std::string& log) {
  return log.find("could not bind") != std::string::npos || log.find("Address already in use") != std::string::npos ||
         log.find("could not create any TCP/IP sockets") != std::string::npos;
}

}  // namespace

// A builder container for one template hash.
class DockerBackend::Site final : public TemplateSite {
 public:
  Site(DockerBackend& backend, std::string name, std::string hash, std::string container, int port,
       std::string password)
      : b_(backend),
        name_(std::move(name)),
        hash_(std::move(hash)),
        container_(std::move(container)),
        port_(port),
        password_(std::move(password)) {}

  ~Site() override {
    if (committed_) return;
    try {
      b_.api_->RemoveContainer(container_, /*force=*/true, /*volumes=*/true);
    } catch (const std::exception& e) {
      log::Warn("docker.builder_kept", {{"container", container_.substr(0, 12)}, {"error", e.what()}});
    }
    b_.FreePort(port_);
  }

  pg::ConnInfo admin() const override { return b_.Admin(port_, password_); }

  void Commit() override {
    const std::string image = TemplateImage(name_, hash_);
    {
      // Lease roles may connect to their own database only (as on the local backend).
      pg::ConnInfo c = admin();
      c.Set("dbname", "postgres");
      pg::Connection conn = pg::Connection::Open(c);
      conn.Exec("REVOKE CONNECT, TEMPORARY ON DATABASE postgres, template1 FROM PUBLIC");
    }
    // A fast shutdown (SIGINT, the container's stop signal) leaves a clean data directory: slots
    // start from it without recovery.
    b_.api_->StopContainer(container_, kStopGrace);
    DockerContainer state = b_.api_->InspectContainer(container_);
    if (state.exit_code != 0) {
      throw Error(ErrorCode::kBackend, "the builder container of template '" + name_ + "' stopped with exit code " +
                                           std::to_string(state.exit_code) + ": " +
                                           Tail(b_.api_->Logs(container_, 20), 10));
    }
    DockerCommitOptions o;
    o.comment = "testpool template " + name_ + " " + hash_;
    o.labels = {{kLabelTemplate, name_},         {kLabelHash, hash_},           {kLabelBase, b_.base_identity_},
                {kLabelPassword, password_},     {kLabelRole, "template"}};
    // Replaces the builder's environment: the password does not stay in the image's Env.
    o.env = {std::string("PGDATA=") + kDataDir, "LANG=C.UTF-8"};
    o.pause = false;  // it is stopped
    const auto t0 = SteadyClock::now();
    std::string id = b_.api_->CommitContainer(container_, TemplateImageRepo(name_), TemplateImageTag(hash_), o,
                                              kCommitTimeout);
    log::Info("docker.template_committed",
              {{"template", name_}, {"hash", hash_.substr(0, 12)}, {"image", image}, {"id", id.substr(7, 12)},
               {"ms", log::Ms(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count())}});
    committed_ = true;
    try {
      b_.api_->RemoveContainer(container_, /*force=*/true, /*volumes=*/true);
    } catch (const std::exception& e) {
      log::Warn("docker.builder_kept", {{"container", container_.substr(0, 12)}, {"error", e.what()}});
    }
    b_.FreePort(port_);
  }

 private:
  DockerBackend& b_;
  const std::string name_, hash_, container_;
  const int port_;
  const std::string password_;
  bool committed_ = false;
};

DockerBackend::DockerBackend(std::unique_ptr<Backend> control, DockerBackendOptions options,
                             std::unique_ptr<DockerApi> api)
    : control_(std::move(control)), options_(std::move(options)), api_(std::move(api)) {
  if (!api_) api_ = std::make_unique<DockerClient>(DockerClientOptions{options_.address});
  for (const auto& [key, value] : options_.settings) {
    if (!ValidSettingName(key)) throw Error(ErrorCode::kInvalidArgument, "bad server setting name '" + key + "'");
  }
}

DockerBackend::~DockerBackend() { Stop(); }

std::string DockerBackend::TemplateImageRepo(const std::string& name) {
  return kTemplateImageRepoPrefix + name;  // template names are [a-z0-9_]: valid in an image name
}

std::string DockerBackend::TemplateImage(const std::string& name, const std::string& hash) {
  return TemplateImageRepo(name) + ":" + TemplateImageTag(hash);
}

void DockerBackend::Start() {
  const auto t0 = SteadyClock::now();
  DockerVersion v;
  try {
    api_->Ping();
    v = api_->Version();
    api_->ApiVersion();
  } catch (const Error& e) {
    throw Error(e.code() == ErrorCode::kUnavailable ? ErrorCode::kUnavailable : ErrorCode::kBackend,
                std::string("docker backend: ") + e.what());
  }
  auto image = api_->InspectImage(options_.image);
  if (!image) {
    throw Error(ErrorCode::kBackend, "docker backend: the engine at " + api_->Address() + " has no image '" +
                                         options_.image +
                                         "' (no registry is used): build testpool's base image with "
                                         "scripts/build-base-image.sh, or give --docker-image");
  }
  base_image_id_ = image->id;
  auto inputs = image->labels.find(kLabelBaseInputs);
  base_identity_ = options_.image + "@" + (inputs != image->labels.end() ? inputs->second : image->id);
  control_->Start();
  {
    pg::ConnInfo c = control_->AdminConnInfo();
    c.Set("dbname", "postgres");
    pg::Connection conn = pg::Connection::Open(c);
    owner_ = std::string(conn.Exec("SELECT system_identifier::text FROM pg_control_system()").Get(0, 0));
  }
  // Builders are short-lived: one left now was interrupted by a crash.
  for (const DockerContainerSummary& c : api_->ListContainers(OwnerLabels("builder"), /*all=*/true)) {
    log::Info("docker.stale_builder_removed", {{"container", c.id.substr(0, 12)}});
    try {
      api_->RemoveContainer(c.id, true, true);
    } catch (const Error& e) {
      log::Warn("docker.stale_builder_kept", {{"container", c.id.substr(0, 12)}, {"error", e.what()}});
    }
  }
  log::Info("docker.started",
            {{"engine", api_->Address()}, {"version", v.engine_version}, {"api", api_->ApiVersion()},
             {"image", options_.image}, {"image_id", base_image_id_.substr(7, 12)}, {"owner", owner_},
             {"keep", options_.keep ? "true" : "false"},
             {"ms", log::Ms(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count())}});
}

void DockerBackend::Stop() noexcept { control_->Stop(); }

void DockerBackend::Shutdown() {
  if (owner_.empty()) return;
  if (options_.keep) {
    log::Info("docker.containers_kept", {{"owner", owner_}});
    return;
  }
  try {
    auto list = api_->ListContainers(OwnerLabels("slot"), /*all=*/true);
    for (const DockerContainerSummary& c : list) {
      try {
        api_->RemoveContainer(c.id, /*force=*/true, /*volumes=*/true);
      } catch (const Error& e) {
        log::Warn("docker.container_kept", {{"container", c.id.substr(0, 12)}, {"error", e.what()}});
      }
    }
    log::Info("docker.containers_removed", {{"owner", owner_}, {"count", std::to_string(list.size())}});
  } catch (const std::exception& e) {
    log::Warn("docker.shutdown_failed", {{"owner", owner_}, {"error", e.what()}});
  }
}

std::map<std::string, std::string> DockerBackend::OwnerLabels(const char* role) const {
  return {{kLabelOwner, owner_}, {kLabelRole, role}};
}

std::string DockerBackend::ServerIdentity() { return "docker:" + base_identity_; }

pg::ConnInfo DockerBackend::Admin(int port, const std::string& password) const {
  pg::ConnInfo c = Client(port);
  c.Set("user", "postgres").Set("password", password);
  return c;
}

pg::ConnInfo DockerBackend::Client(int port) const {
  pg::ConnInfo c;
  const bool remote = options_.address.kind == DockerAddress::Kind::kTcp;
  c.Set("host", remote ? options_.address.host : "127.0.0.1").Set("port", std::to_string(port));
  return c;
}

std::vector<std::string> DockerBackend::ServerArgs(int port) const {
  std::vector<std::string> args = {"sh", "-c", kServerScript, "testpool-postgres", "-p", std::to_string(port),
                                   "-c", "unix_socket_directories=/tmp"};
  const bool remote = options_.address.kind == DockerAddress::Kind::kTcp;
  for (const auto& list : {TestServerSettings(), options_.settings}) {
    for (const auto& [key, value] : list) {
      args.push_back("-c");
      args.push_back(key + "=" + (key == "listen_addresses" && remote ? "*" : value));
    }
  }
  return args;
}

int DockerBackend::TakePort() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int port = PickFreePort(kServerPortLow, kServerPortHigh);
    if (port == 0) break;
    std::lock_guard lock(mu_);
    if (ports_.insert(port).second) return port;
  }
  throw Error(ErrorCode::kBackend, "docker backend: no free TCP port between " + std::to_string(kServerPortLow) +
                                       " and " + std::to_string(kServerPortHigh));
}

void DockerBackend::FreePort(int port) {
  std::lock_guard lock(mu_);
  ports_.erase(port);
}

void DockerBackend::WaitReady(const std::string& what, const std::string& container, int port) {
  pg::ConnInfo probe = Client(port);
  probe.Set("dbname", "postgres").Set("connect_timeout", "2");
  const auto start = SteadyClock::now();
  const auto deadline = start + options_.start_timeout;
  auto next_check = start + kStateCheckEvery;
  for (;;) {
    if (pg::Ping(probe)) return;
    const auto now = SteadyClock::now();
    if (now >= next_check || now >= deadline) {
      next_check = now + kStateCheckEvery;
      DockerContainer c = api_->InspectContainer(container);
      if (!c.running || now >= deadline) {
        std::string log = api_->Logs(container, 40);
        std::string why = !c.running ? "exited with code " + std::to_string(c.exit_code) +
                                           (c.oom_killed ? " (killed: out of memory)" : "")
                                     : "did not accept connections within " +
                                           std::to_string(options_.start_timeout.count()) + " s";
        throw Error(!c.running ? (BindFailed(log) ? ErrorCode::kConflict : ErrorCode::kBackend) : ErrorCode::kTimeout,
                    "docker backend: the " + what + " container " + container.substr(0, 12) + " (port " +
                        std::to_string(port) + ") " + why + "; its log ends: " + Tail(log, 8));
      }
    }
    std::this_thread::sleep_for(kReadyPoll);
  }
}

DockerBackend::Started DockerBackend::Run(const std::string& what, const std::string& image,
                                          const std::map<std::string, std::string>& labels,
                                          const std::vector<std::string>& env, const std::string& name_prefix) {
  for (int attempt = 1;; ++attempt) {
    const int port = TakePort();
    DockerContainerSpec spec;
    spec.name = name_prefix + "-" + util::RandomToken(6);
    spec.image = image;
    spec.cmd = ServerArgs(port);
    spec.env = env;
    spec.env.push_back(std::string("PGDATA=") + kDataDir);
    spec.labels = labels;
    spec.labels[kLabelPort] = std::to_string(port);
    spec.user = "postgres";
    spec.host_network = true;
    spec.stop_signal = "SIGINT";  // fast shutdown
    std::string id;
    try {
      id = api_->CreateContainer(spec);
      api_->StartContainer(id);
      WaitReady(what, id, port);
      return Started{id, port};
    } catch (const Error& e) {
      if (!id.empty()) {
        try {
          api_->RemoveContainer(id, true, true);
        } catch (const Error& rm) {
          log::Warn("docker.container_kept", {{"container", id.substr(0, 12)}, {"error", rm.what()}});
        }
      }
      FreePort(port);
      // Another process took the port between our check and the server's bind: another port.
      if (e.code() != ErrorCode::kConflict || id.empty() || attempt >= kBindAttempts) throw;
      log::Info("docker.port_taken", {{"port", std::to_string(port)}, {"attempt", std::to_string(attempt)}});
    }
  }
}

std::optional<DockerBackend::ImageInfo> DockerBackend::TemplateInfo(const std::string& ref) {
  {
    std::lock_guard lock(mu_);
    auto it = image_info_.find(ref);
    if (it != image_info_.end() && ref.starts_with("sha256:")) return it->second;  // ids never change
  }
  auto image = api_->InspectImage(ref);
  if (!image) return std::nullopt;
  auto pw = image->labels.find(kLabelPassword);
  if (pw == image->labels.end() || pw->second.empty()) return std::nullopt;
  ImageInfo info{image->id, pw->second};
  std::lock_guard lock(mu_);
  image_info_[image->id] = info;
  return info;
}

bool DockerBackend::HasTemplate(const std::string& name, const std::string& hash) {
  const std::string tag = TemplateImage(name, hash);
  auto image = api_->InspectImage(tag);
  if (!image) return false;
  auto h = image->labels.find(kLabelHash);
  auto pw = image->labels.find(kLabelPassword);
  const bool usable = h != image->labels.end() && h->second == hash && pw != image->labels.end() && !pw->second.empty();
  if (usable) {
    std::lock_guard lock(mu_);
    doomed_images_.erase(tag);  // wanted again: a drop still pending is off
  }
  return usable;
}

std::unique_ptr<TemplateSite> DockerBackend::BeginTemplate(const std::string& name, const std::string& hash) {
  const auto t0 = SteadyClock::now();
  const std::string password = util::RandomToken(32);
  std::map<std::string, std::string> labels = OwnerLabels("builder");
  labels[kLabelTemplate] = name;
  labels[kLabelHash] = hash;
  log::Info("docker.builder_starting", {{"template", name}, {"hash", hash.substr(0, 12)}, {"image", options_.image}});
  Started s = Run("template builder", base_image_id_, labels, {"TESTPOOL_SUPERUSER_PASSWORD=" + password},
                  "testpool-build-" + hash.substr(0, 12));
  log::Info("docker.builder_ready",
            {{"template", name}, {"hash", hash.substr(0, 12)}, {"container", s.container.substr(0, 12)},
             {"port", std::to_string(s.port)},
             {"ms", log::Ms(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count())}});
  return std::make_unique<Site>(*this, name, hash, s.container, s.port, password);
}

void DockerBackend::DropTemplate(const std::string& name, const std::string& hash) {
  const std::string image = TemplateImage(name, hash);
  if (TryRemoveImage(image)) return;
  // Slot containers still run it (the pools remove them in the background): removed when the
  // last of ours goes (RemoveSlot). One that another daemon's slots run stays.
  std::lock_guard lock(mu_);
  doomed_images_.insert(image);
}

bool DockerBackend::TryRemoveImage(const std::string& image) {
  try {
    api_->RemoveImage(image, /*force=*/false);
    log::Info("docker.template_image_removed", {{"image", image}});
    return true;
  } catch (const Error& e) {
    if (e.code() == ErrorCode::kNotFound) return true;
    log::Info("docker.template_image_in_use", {{"image", image}, {"error", e.what()}});
    return false;
  }
}

SlotServer DockerBackend::StartSlot(const std::string& slot_id, const std::string& name, const std::string& hash) {
  const std::string tag = TemplateImage(name, hash);
  auto info = TemplateInfo(tag);
  if (!info) {
    throw Error(ErrorCode::kNotFound, "docker backend: no template image " + tag + " (template '" + name +
                                          "' must be built again)");
  }
  std::map<std::string, std::string> labels = OwnerLabels("slot");
  labels[kLabelSlot] = slot_id;
  labels[kLabelTemplate] = name;
  labels[kLabelHash] = hash;
  labels[kLabelImage] = info->id;
  Started s = Run("slot " + slot_id, info->id, labels, {}, "testpool-" + slot_id);
  SlotServer out;
  out.slot_id = slot_id;
  out.name = name;
  out.hash = hash;
  out.container = s.container;
  out.admin = Admin(s.port, info->password);
  out.client = Client(s.port);
  out.running = true;
  return out;
}

std::vector<SlotServer> DockerBackend::ListSlots() {
  std::vector<SlotServer> out;
  for (const DockerContainerSummary& c : api_->ListContainers(OwnerLabels("slot"), /*all=*/true)) {
    auto label = [&](const char* key) {
      auto it = c.labels.find(key);
      return it == c.labels.end() ? std::string() : it->second;
    };
    SlotServer s;
    s.slot_id = label(kLabelSlot);
    s.name = label(kLabelTemplate);
    s.hash = label(kLabelHash);
    s.container = c.id;
    s.running = c.state == "running";
    const std::optional<int> port = ParseInt(label(kLabelPort));
    std::optional<ImageInfo> info;
    if (!label(kLabelImage).empty()) info = TemplateInfo(label(kLabelImage));
    if (port && info) {
      s.admin = Admin(*port, info->password);
      s.client = Client(*port);
      std::lock_guard lock(mu_);
      ports_.insert(*port);
    } else {
      s.running = false;  // unusable: nothing to connect with; its owner removes it
    }
    out.push_back(std::move(s));
  }
  return out;
}

void DockerBackend::RemoveSlot(const std::string& slot_id) {
  auto labels = OwnerLabels("slot");
  labels[kLabelSlot] = slot_id;
  for (const DockerContainerSummary& c : api_->ListContainers(labels, /*all=*/true)) {
    try {
      api_->RemoveContainer(c.id, /*force=*/true, /*volumes=*/true);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kNotFound) throw;
    }
    auto port = c.labels.find(kLabelPort);
    if (port != c.labels.end()) {
      if (auto p = ParseInt(port->second)) FreePort(*p);
    }
    log::Info("docker.slot_removed", {{"slot", slot_id}, {"container", c.id.substr(0, 12)}});
    auto name = c.labels.find(kLabelTemplate), hash = c.labels.find(kLabelHash);
    if (name == c.labels.end() || hash == c.labels.end()) continue;
    const std::string image = TemplateImage(name->second, hash->second);
    bool doomed;
    {
      std::lock_guard lock(mu_);
      doomed = doomed_images_.count(image) > 0;
    }
    if (doomed && TryRemoveImage(image)) {
      std::lock_guard lock(mu_);
      doomed_images_.erase(image);
    }
  }
}

}  // namespace testpool::backend
