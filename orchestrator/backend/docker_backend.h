// The `docker` backend: warm pools of PostgreSQL containers through the Docker Engine API.
//
// Two kinds of server:
//   - the control server, which holds only the control database: the embedded `local` server
//     (or an `external` one), given to the constructor and started/stopped with this backend;
//   - one container per slot (SlotServers), run from a template image.
//
// Images. `image` is any PostgreSQL image whose filesystem has the server programs (in PATH,
// /usr/lib/postgresql/*/bin or /usr/local/bin) and a `postgres` user whose home,
// /var/lib/postgresql, it can write: testpool's offline base image (scripts/build-base-image.sh,
// Debian bookworm + postgresql-15) or an official `postgres:NN` where a registry is reachable.
// testpool always runs its own command in it (no entrypoint script): initdb when the data
// directory is empty, then `postgres` with the test-friendly settings. For each template hash
// BeginTemplate() starts a builder container from `image` (initdb with a random superuser
// password), the template builder applies the migrations through it, and Commit() stops it with a
// fast shutdown and commits it as `testpool/tpl-<name>:<hash12>`, labelled with the template, the
// hash, the base image and the superuser password (anyone who can read the engine's image labels
// can run code in its containers anyway: the engine's socket is root's). Slots start from that
// image by id, so a tag moved by another daemon never mixes passwords.
//
// Networking: host networking (the engine may run without a bridge), each container's server
// listening on a port this backend picks below the kernel's ephemeral range; a port another
// process takes in between makes the server exit, and the start is retried on another port.
// Against a remote engine (DOCKER_HOST=tcp://host:port) servers listen on every address and DSNs
// name that host.
//
// Ownership: every container carries `testpool.owner=<owner>`, where the owner is the control
// server's system identifier (stable across restarts; different for every state directory), plus
// `testpool.role` (slot | builder), `testpool.slot`, `testpool.template`, `testpool.hash`,
// `testpool.port`. Start() removes builder containers a crashed build left behind; the pool
// manager removes slot containers no slot row owns. Shutdown() removes every slot container
// unless `keep` (then the next start adopts them).
//
// Thread safety: Start/Stop from one thread; everything else from any thread after Start().
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "orchestrator/backend/backend.h"
#include "orchestrator/backend/docker_api.h"
#include "orchestrator/backend/slot_servers.h"

namespace testpool::backend {

inline constexpr const char* kDefaultDockerImage = "testpool/base:pg15-bookworm";
inline constexpr const char* kTemplateImageRepoPrefix = "testpool/tpl-";

struct DockerBackendOptions {
  DockerAddress address;  // the engine (DOCKER_HOST)
  std::string image = kDefaultDockerImage;
  // Stop() leaves the slot containers running; the next start adopts those a slot row owns.
  bool keep = false;
  // Server settings (`-c key=value`) after the test-friendly defaults, for every container.
  std::vector<std::pair<std::string, std::string>> settings;
  // How long a container's server may take to accept connections (a builder runs initdb first).
  std::chrono::seconds start_timeout{120};
};

class DockerBackend final : public Backend, public SlotServers {
 public:
  // `control` holds the control database. `api` defaults to a DockerClient at options.address.
  // Throws Error(kInvalidArgument) when a setting's name is not [A-Za-z0-9_.]+.
  DockerBackend(std::unique_ptr<Backend> control, DockerBackendOptions options, std::unique_ptr<DockerApi> api = nullptr);
  ~DockerBackend() override;
  DockerBackend(const DockerBackend&) = delete;
  DockerBackend& operator=(const DockerBackend&) = delete;

  std::string_view Kind() const override { return "docker"; }
  // Checks the engine (Error kUnavailable naming the address and what to run when it does not
  // answer) and the image (Error kBackend saying how to build it when missing), starts the control
  // server, learns the owner, and removes builder containers an earlier crash left.
  void Start() override;
  // Stops the control server. Containers are left to Shutdown().
  void Stop() noexcept override;
  pg::ConnInfo AdminConnInfo() const override { return control_->AdminConnInfo(); }
  pg::ConnInfo ClientConnInfo() const override { return control_->ClientConnInfo(); }
  void Deprioritize(int server_pid) const noexcept override { control_->Deprioritize(server_pid); }
  SlotServers* slot_servers() override { return this; }

  // ---- SlotServers ------------------------------------------------------------------------
  std::string ServerIdentity() override;
  bool HasTemplate(const std::string& name, const std::string& hash) override;
  std::unique_ptr<TemplateSite> BeginTemplate(const std::string& name, const std::string& hash) override;
  void DropTemplate(const std::string& name, const std::string& hash) override;
  SlotServer StartSlot(const std::string& slot_id, const std::string& name, const std::string& hash) override;
  std::vector<SlotServer> ListSlots() override;
  void RemoveSlot(const std::string& slot_id) override;
  void Shutdown() override;

  // The owner label's value (valid after Start()).
  const std::string& owner() const { return owner_; }
  DockerApi& api() { return *api_; }
  // "testpool/tpl-<name>:<hash12>", and its two parts.
  static std::string TemplateImage(const std::string& name, const std::string& hash);
  static std::string TemplateImageRepo(const std::string& name);
  static std::string TemplateImageTag(const std::string& hash) { return hash.substr(0, 12); }

 private:
  class Site;
  struct Started {
    std::string container;
    int port = 0;
  };
  struct ImageInfo {
    std::string id;
    std::string password;
  };

  // Creates and starts a container running `image`'s server on a fresh port and waits until it
  // accepts connections; retries on another port when the server could not bind its own.
  // Removes the container on failure.
  Started Run(const std::string& what, const std::string& image, const std::map<std::string, std::string>& labels,
              const std::vector<std::string>& env, const std::string& name_prefix);
  // Waits until `container`'s server on `port` accepts connections. Throws with the container's
  // log when it exits or time runs out.
  void WaitReady(const std::string& what, const std::string& container, int port);
  // Superuser and client conninfo for a server on `port` with `password`.
  pg::ConnInfo Admin(int port, const std::string& password) const;
  pg::ConnInfo Client(int port) const;
  // The template image's id and superuser password (cached by id), or nullopt when missing.
  std::optional<ImageInfo> TemplateInfo(const std::string& ref);
  std::vector<std::string> ServerArgs(int port) const;
  // Removes a template image; false when containers still run it.
  bool TryRemoveImage(const std::string& image);
  int TakePort();
  void FreePort(int port);
  std::map<std::string, std::string> OwnerLabels(const char* role) const;

  std::unique_ptr<Backend> control_;
  const DockerBackendOptions options_;
  std::unique_ptr<DockerApi> api_;
  std::string owner_;           // set by Start()
  std::string base_identity_;   // set by Start()
  std::string base_image_id_;   // set by Start()

  std::mutex mu_;
  std::set<int> ports_;                          // taken by containers we are starting or run; guarded by mu_
  std::map<std::string, ImageInfo> image_info_;  // by image id or tag; guarded by mu_
  std::set<std::string> doomed_images_;          // dropped templates' images still in use; guarded by mu_
};

}  // namespace testpool::backend
