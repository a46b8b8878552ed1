// DockerClient against a real engine: testpool's own dockerd (scripts/start-dockerd.sh), found
// through $DOCKER_HOST or its socket /run/testpool-docker.sock. An engine that cannot be reached
// fails every test, saying what to run; nothing is skipped.
//
// There is no registry: the suite imports a tiny image of its own (Debian's static busybox, from
// busybox-static) from a tar it writes, and removes it, and every container it made, at the end.
#include "orchestrator/backend/docker_api.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "orchestrator/util/error.h"
#include "tests/support/test_server.h"

namespace testpool::backend {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using namespace std::chrono_literals;

constexpr char kDefaultHost[] = "unix:///run/testpool-docker.sock";
constexpr char kTestLabel[] = "testpool.test";  // value: this run's id

std::string RandomSuffix() {
  std::random_device rd;
  std::string s;
  for (int i = 0; i < 8; ++i) s += "0123456789abcdef"[rd() % 16];
  return s;
}

DockerAddress EngineAddress() {
  const char* env = std::getenv("DOCKER_HOST");
  return DockerAddress::Parse(env != nullptr && *env != '\0' ? env : kDefaultHost);
}

std::unique_ptr<DockerClient> MakeClient(DockerAddress address) {
  DockerClientOptions options;
  options.address = std::move(address);
  options.call_timeout = 60s;
  return std::make_unique<DockerClient>(options);
}

// A minimal POSIX ustar archive: enough for a root file system of a few files and links.
class TarWriter {
 public:
  explicit TarWriter(const std::filesystem::path& path) : out_(path, std::ios::binary) {}
  void Dir(const std::string& name) { Header(name + "/", '5', 0755, 0, ""); }
  void Symlink(const std::string& name, const std::string& target) { Header(name, '2', 0777, 0, target); }
  void File(const std::string& name, const std::filesystem::path& from, int mode) {
    std::ifstream in(from, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Header(name, '0', mode, data.size(), "");
    out_.write(data.data(), static_cast<std::streamsize>(data.size()));
    Pad(data.size());
  }
  bool Finish() {
    std::string zeros(1024, '\0');
    out_.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
    out_.close();
    return !out_.fail();
  }

 private:
  void Header(const std::string& name, char type, int mode, std::size_t size, const std::string& link) {
    char h[512] = {};
    std::snprintf(h, 100, "%s", name.c_str());
    std::snprintf(h + 100, 8, "%07o", mode);
    std::snprintf(h + 108, 8, "%07o", 0);
    std::snprintf(h + 116, 8, "%07o", 0);
    std::snprintf(h + 124, 12, "%011llo", static_cast<unsigned long long>(size));
    std::snprintf(h + 136, 12, "%011o", 0);
    h[156] = type;
    std::snprintf(h + 157, 100, "%s", link.c_str());
    std::memcpy(h + 257,
                "ustar\0"
                "00",
                8);
    std::memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    std::snprintf(h + 148, 8, "%06o", sum);
    out_.write(h, sizeof h);
  }
  void Pad(std::size_t size) {
    std::string pad((512 - size % 512) % 512, '\0');
    out_.write(pad.data(), static_cast<std::streamsize>(pad.size()));
  }
  std::ofstream out_;
};

// Removes a container whatever the test did.
struct ContainerGuard {
  DockerApi* api;
  std::string id;
  ~ContainerGuard() {
    if (id.empty()) return;
    try {
      api->RemoveContainer(id, /*force=*/true, /*volumes=*/true);
    } catch (const Error&) {
      // already gone
    }
  }
};

class DockerApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_id_ = RandomSuffix();
    image_ = "testpool-test/busybox:" + run_id_;
    try {
      auto client = MakeClient(EngineAddress());
      client->Ping();
      testing::TempDir dir("testpool-docker-image");
      const std::filesystem::path tar = dir.path() / "rootfs.tar";
      std::filesystem::path busybox = "/bin/busybox";
      if (!std::filesystem::exists(busybox)) {
        setup_error_ = "no /bin/busybox: install Debian's busybox-static (scripts/install-deps.sh)";
        return;
      }
      TarWriter w(tar);
      for (const char* d : {"bin", "etc", "tmp", "proc", "sys", "dev"}) w.Dir(d);
      w.File("bin/busybox", busybox, 0755);
      for (const char* applet : {"sh", "echo", "cat", "sleep", "touch", "ls"}) {
        w.Symlink(std::string("bin/") + applet, "busybox");
      }
      if (!w.Finish()) {
        setup_error_ = "cannot write " + tar.string();
        return;
      }
      image_id_ =
          client->ImportImage(tar, "testpool-test/busybox", run_id_, {"CMD [\"/bin/sh\"]", "ENV PATH=/bin"}, 120s);
    } catch (const Error& e) {
      setup_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    if (image_id_.empty()) return;  // no image, so no test ran far enough to leave anything
    try {
      auto client = MakeClient(EngineAddress());
      for (const auto& c : client->ListContainers({{kTestLabel, run_id_}}, true)) {
        client->RemoveContainer(c.id, true, true);
      }
      for (const std::string& ref : images_to_remove_) {
        if (client->InspectImage(ref)) client->RemoveImage(ref, /*force=*/true);
      }
      client->RemoveImage(image_, /*force=*/true);
    } catch (const Error& e) {
      ADD_FAILURE() << "clean-up failed: " << e.what();
    }
  }

  void SetUp() override {
    if (!setup_error_.empty()) {
      GTEST_FAIL() << "the Docker engine at " << EngineAddress().ToString() << " is not usable: " << setup_error_
                   << "\n  start testpool's own engine as root: ./scripts/start-dockerd.sh"
                      " (after ./scripts/install-deps.sh), or point DOCKER_HOST at one";
    }
    api_ = MakeClient(EngineAddress());
  }

  // A running container of the test image (sleeping), labelled with this run's id.
  std::string StartSleeper(const std::string& role, const std::string& image = "") {
    DockerContainerSpec spec;
    spec.image = image.empty() ? image_ : image;
    spec.cmd = {"/bin/sleep", "600"};
    spec.labels = {{kTestLabel, run_id_}, {"testpool.test.role", role}};
    spec.host_network = true;
    std::string id = api_->CreateContainer(spec);
    api_->StartContainer(id);
    return id;
  }

  static inline std::string run_id_;
  static inline std::string image_;     // "testpool-test/busybox:<run id>"
  static inline std::string image_id_;  // its id once imported
  static inline std::string setup_error_;
  static inline std::vector<std::string> images_to_remove_;
  std::unique_ptr<DockerClient> api_;
};

TEST(DockerAddressTest, ParsesUnixAndTcpForms) {
  DockerAddress a = DockerAddress::Parse("unix:///run/testpool-docker.sock");
  EXPECT_EQ(a.kind, DockerAddress::Kind::kUnix);
  EXPECT_EQ(a.socket_path, "/run/testpool-docker.sock");
  EXPECT_EQ(a.ToString(), "unix:///run/testpool-docker.sock");
  EXPECT_EQ(DockerAddress::Parse("/var/run/docker.sock").socket_path, "/var/run/docker.sock");
  DockerAddress t = DockerAddress::Parse("tcp://10.1.2.3:2376");
  EXPECT_EQ(t.kind, DockerAddress::Kind::kTcp);
  EXPECT_EQ(t.host, "10.1.2.3");
  EXPECT_EQ(t.port, 2376);
  EXPECT_EQ(DockerAddress::Parse("tcp://engine").port, 2375);
  EXPECT_EQ(DockerAddress::Parse("tcp://[::1]:2375").host, "::1");
  EXPECT_EQ(DockerAddress::Parse("tcp://[::1]:2375").ToString(), "tcp://[::1]:2375");
  for (const char* bad :
       {"ssh://me@host", "unix://relative.sock", "tcp://host:99999", "tcp://:2375", "", "npipe:////./pipe/x"}) {
    try {
      DockerAddress::Parse(bad);
      ADD_FAILURE() << "parsed '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kInvalidArgument) << bad;
    }
  }
}

TEST(DockerApiVersionTest, NegotiatesTheLowerOfEngineAndClient) {
  EXPECT_EQ(NegotiateDockerApiVersion("1.47", "1.24", "1.41"), "1.41");
  EXPECT_EQ(NegotiateDockerApiVersion("1.40", "1.12", "1.41"), "1.40");
  EXPECT_EQ(NegotiateDockerApiVersion("1.9", "1.0", "1.41"), "1.9");  // numeric, not text, order
  try {
    NegotiateDockerApiVersion("1.50", "1.44", "1.41");
    ADD_FAILURE() << "negotiated below the engine's minimum";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kBackend);
    EXPECT_THAT(e.what(), HasSubstr("1.44"));
  }
}

TEST(DockerStreamTest, DemuxSplitsStdoutAndStderrFrames) {
  auto frame = [](char stream, const std::string& payload) {
    std::string h(8, '\0');
    h[0] = stream;
    h[6] = static_cast<char>(payload.size() >> 8);
    h[7] = static_cast<char>(payload.size() & 0xff);
    return h + payload;
  };
  std::string big(300, 'x');
  std::string stream = frame(1, "hi\n") + frame(2, "oops\n") + frame(1, big);
  std::string out, err;
  EXPECT_TRUE(DemuxDockerStream(stream, out, err));
  EXPECT_EQ(out, "hi\n" + big);
  EXPECT_EQ(err, "oops\n");

  out.clear();
  err.clear();
  EXPECT_FALSE(DemuxDockerStream(stream.substr(0, stream.size() - 1), out, err));
  EXPECT_FALSE(DemuxDockerStream(stream.substr(0, 5), out, err));
  EXPECT_TRUE(DemuxDockerStream("", out, err));
}

TEST_F(DockerApiTest, PingsAndNegotiatesTheApiVersion) {
  api_->Ping();
  DockerVersion v = api_->Version();
  EXPECT_FALSE(v.engine_version.empty());
  EXPECT_EQ(v.os, "linux");
  std::string chosen = api_->ApiVersion();
  EXPECT_EQ(chosen, NegotiateDockerApiVersion(v.api_version, v.min_api_version));
  std::cout << "engine " << v.engine_version << " API " << v.api_version << " (min " << v.min_api_version
            << "), talking " << chosen << " at " << api_->Address() << "\n";
}

TEST_F(DockerApiTest, ImportedImageIsInspectable) {
  auto img = api_->InspectImage(image_);
  ASSERT_TRUE(img.has_value());
  EXPECT_EQ(img->id, image_id_);
  EXPECT_THAT(img->repo_tags, Contains(image_));
  EXPECT_GT(img->size_bytes, 0);
  EXPECT_FALSE(api_->InspectImage("testpool-test/no-such-image:" + run_id_).has_value());
}

TEST_F(DockerApiTest, ContainerLifecycleWithExecListStopAndRemove) {
  ContainerGuard guard{api_.get(), StartSleeper("lifecycle")};
  const std::string& id = guard.id;

  DockerContainer c = api_->InspectContainer(id);
  EXPECT_EQ(c.id, id);
  EXPECT_TRUE(c.running);
  EXPECT_EQ(c.status, "running");
  EXPECT_GT(c.pid, 0);
  EXPECT_FALSE(c.started_at.starts_with("0001-")) << c.started_at;
  EXPECT_EQ(c.labels.at(kTestLabel), run_id_);
  EXPECT_EQ(c.labels.at("testpool.test.role"), "lifecycle");
  api_->StartContainer(id);  // already running: nothing

  DockerExecResult hi = api_->Exec(id, {"echo", "hi"}, "", 30s);
  EXPECT_EQ(hi.exit_code, 0);
  EXPECT_EQ(hi.stdout_text, "hi\n");
  EXPECT_EQ(hi.stderr_text, "");

  DockerExecResult fail = api_->Exec(id, {"sh", "-c", "echo oops >&2; exit 3"}, "", 30s);
  EXPECT_EQ(fail.exit_code, 3);
  EXPECT_EQ(fail.stdout_text, "");
  EXPECT_EQ(fail.stderr_text, "oops\n");

  auto found = api_->ListContainers({{kTestLabel, run_id_}, {"testpool.test.role", "lifecycle"}}, false);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].id, id);
  EXPECT_EQ(found[0].state, "running");
  EXPECT_EQ(found[0].labels.at("testpool.test.role"), "lifecycle");
  EXPECT_EQ(api_->ListContainers({{kTestLabel, run_id_}, {"testpool.test.role", "nobody"}}, true).size(), 0u);
  EXPECT_EQ(api_->ListContainers({{kTestLabel, run_id_}, {"testpool.test.role", ""}}, true).size(), 1u);

  // sleep as PID 1 ignores SIGTERM: the engine kills it after the grace period.
  api_->StopContainer(id, 1s);
  c = api_->InspectContainer(id);
  EXPECT_FALSE(c.running);
  EXPECT_EQ(c.status, "exited");
  EXPECT_FALSE(c.finished_at.starts_with("0001-")) << c.finished_at;
  api_->StopContainer(id, 1s);  // already stopped: nothing
  EXPECT_TRUE(api_->ListContainers({{kTestLabel, run_id_}, {"testpool.test.role", "lifecycle"}}, false).empty());
  try {
    api_->Exec(id, {"echo", "hi"}, "", 10s);
    ADD_FAILURE() << "exec in a stopped container";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConflict) << e.what();
  }

  api_->RemoveContainer(id, /*force=*/false, /*volumes=*/true);
  try {
    api_->InspectContainer(id);
    ADD_FAILURE() << "a removed container is still there";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << e.what();
  }
}

TEST_F(DockerApiTest, LogsHoldBothStreamsAndTheStopSignalIsTheSpecs) {
  DockerContainerSpec spec;
  spec.image = image_;
  // A shell that says which signal stopped it: SIGINT (the spec's stop signal), not SIGTERM.
  spec.cmd = {"/bin/sh", "-c",
              "trap 'echo got INT; exit 0' INT; trap 'echo got TERM; exit 0' TERM; echo to stdout; "
              "echo to stderr >&2; while :; do sleep 0.05; done"};
  spec.labels = {{kTestLabel, run_id_}, {"testpool.test.role", "logs"}};
  spec.stop_signal = "SIGINT";
  ContainerGuard guard{api_.get(), api_->CreateContainer(spec)};
  api_->StartContainer(guard.id);
  std::string log;
  for (int i = 0; i < 100 && log.find("to stderr") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
    log = api_->Logs(guard.id, 10);
  }
  EXPECT_THAT(log, HasSubstr("to stdout\n"));
  EXPECT_THAT(log, HasSubstr("to stderr\n"));
  api_->StopContainer(guard.id, 10s);
  log = api_->Logs(guard.id, 1);
  EXPECT_EQ(log, "got INT\n");
  EXPECT_EQ(api_->InspectContainer(guard.id).exit_code, 0);
  try {
    api_->Logs("testpool-no-such-container-" + run_id_, 5);
    ADD_FAILURE() << "logs of a container that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << e.what();
  }
}

TEST_F(DockerApiTest, InspectOfAMissingContainerIsNotFound) {
  try {
    api_->InspectContainer("testpool-no-such-container-" + run_id_);
    FAIL() << "inspected a container that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound);
    EXPECT_THAT(e.what(), HasSubstr("No such container"));
  }
}

TEST_F(DockerApiTest, CreateErrorsAreTyped) {
  DockerContainerSpec spec;
  spec.image = "testpool-test/no-such-image:" + run_id_;
  spec.labels = {{kTestLabel, run_id_}};
  try {
    api_->CreateContainer(spec);
    FAIL() << "created a container from a missing image";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << e.what();
  }
  spec.image = image_;
  spec.cmd = {"/bin/sleep", "600"};
  spec.name = "testpool-test-" + run_id_;
  ContainerGuard guard{api_.get(), api_->CreateContainer(spec)};
  try {
    api_->CreateContainer(spec);
    FAIL() << "created two containers of one name";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConflict) << e.what();
  }
  try {
    api_->StartContainer(guard.id);
    ASSERT_TRUE(api_->InspectContainer(guard.id).running);
    api_->RemoveContainer(guard.id, /*force=*/false, false);
    FAIL() << "removed a running container without force";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kConflict) << e.what();
  }
}

TEST_F(DockerApiTest, ExecThatOutlivesItsTimeoutIsATimeout) {
  ContainerGuard guard{api_.get(), StartSleeper("timeout")};
  const auto start = std::chrono::steady_clock::now();
  try {
    api_->Exec(guard.id, {"sleep", "5"}, "", 500ms);
    FAIL() << "exec outlived its timeout without an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kTimeout) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(DockerApiTest, UnreachableEngineIsUnavailableWithAClearMessage) {
  testing::TempDir dir("testpool-docker-none");
  const std::string sock = (dir.path() / "docker.sock").string();
  auto none = MakeClient(DockerAddress::Parse("unix://" + sock));
  try {
    none->Ping();
    FAIL() << "pinged an engine that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_THAT(e.what(), HasSubstr("unix://" + sock));
    EXPECT_THAT(e.what(), HasSubstr("start-dockerd.sh"));
  }
  // Through the version negotiation of any versioned call, too; and over TCP (nothing listens on
  // port 1).
  try {
    none->InspectContainer("x");
    FAIL() << "inspected through an engine that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
  }
  auto tcp = MakeClient(DockerAddress::Parse("tcp://127.0.0.1:1"));
  try {
    tcp->Ping();
    FAIL() << "pinged an engine on port 1";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kUnavailable);
    EXPECT_THAT(e.what(), HasSubstr("tcp://127.0.0.1:1"));
  }
}

TEST_F(DockerApiTest, CommitMakesAnImageHoldingTheContainersFiles) {
  ContainerGuard source{api_.get(), StartSleeper("commit-source")};
  ASSERT_EQ(api_->Exec(source.id, {"sh", "-c", "echo baked > /tmp/marker"}, "", 30s).exit_code, 0);

  const std::string tag = "testpool-test/committed:" + run_id_;
  images_to_remove_.push_back(tag);
  DockerCommitOptions options;
  options.comment = "docker_api_test";
  options.labels = {{"testpool.test.committed", "yes"}};
  const std::string image_id = api_->CommitContainer(source.id, "testpool-test/committed", run_id_, options, 120s);
  EXPECT_TRUE(image_id.starts_with("sha256:")) << image_id;

  auto img = api_->InspectImage(tag);
  ASSERT_TRUE(img.has_value());
  EXPECT_EQ(img->id, image_id);
  EXPECT_EQ(img->labels.at("testpool.test.committed"), "yes");

  ContainerGuard copy{api_.get(), StartSleeper("commit-copy", tag)};
  DockerExecResult r = api_->Exec(copy.id, {"cat", "/tmp/marker"}, "", 30s);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_text, "baked\n");

  try {
    api_->CommitContainer("testpool-no-such-container-" + run_id_, "testpool-test/committed", "never", {}, 30s);
    FAIL() << "committed a container that does not exist";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::kNotFound) << e.what();
  }
}

}  // namespace
}  // namespace testpool::backend
