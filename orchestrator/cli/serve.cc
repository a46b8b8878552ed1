// `testpool serve`: wires a backend, the control store, the template service, the pools, the
// record pools, the builders and the HTTP API, and runs until SIGINT/SIGTERM.
//
// Stopping drains: on SIGINT/SIGTERM the pools take no new leases (503 `draining` with
// Retry-After, also to requests already waiting for a slot) while the API keeps answering
// everything else (renew, reset, release, claims, builds), until no request is in progress or
// --drain-timeout passes (a second signal cuts it short); then the listener closes, the requests
// still in progress finish, and the pools stop. Leases stay in the control database: the next
// start serves them again (same id, same DSN).
#include <arpa/inet.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <thread>

#include "orchestrator/proxy/proxy.h"
#include "orchestrator/api/auth.h"
#include "orchestrator/api/server.h"
#include "orchestrator/backend/docker_backend.h"
#include "orchestrator/backend/external_backend.h"
#include "orchestrator/backend/local_backend.h"
#include "orchestrator/cli/cli.h"
#include "orchestrator/cli/command.h"
#include "orchestrator/builders/builders.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/fault_points.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/integresql/service.h"
#include "orchestrator/records/record_pools.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/util/clock.h"
#include "orchestrator/util/crypto.h"
#include "orchestrator/util/log.h"

namespace po = boost::program_options;

namespace testpool::cli {
namespace {

// $XDG_STATE_HOME/testpool, else ~/.local/state/testpool. As root (without XDG_STATE_HOME),
// /var/lib/testpool: postgres runs as an unprivileged user that cannot enter /root.
std::filesystem::path DefaultStateDir() {
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg) return std::filesystem::path(xdg) / "testpool";
  if (geteuid() == 0) return "/var/lib/testpool";
  if (const char* home = std::getenv("HOME"); home && *home) {
    return std::filesystem::path(home) / ".local" / "state" / "testpool";
  }
  return std::filesystem::current_path() / ".testpool-state";
}

bool SplitHostPort(const std::string& text, std::string* host, int* port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  *host = text.substr(0, colon);
  try {
    size_t used = 0;
    *port = std::stoi(text.substr(colon + 1), &used);
    return used == text.size() - colon - 1 && *port >= 0 && *port <= 65535;
  } catch (...) {
    return false;
  }
}

// Whether `host` is a loopback address (127.0.0.0/8, ::1, localhost): only this machine reaches it.
bool IsLoopback(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (::inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  std::string bare = host.size() > 2 && host.front() == '[' && host.back() == ']' ? host.substr(1, host.size() - 2) : host;
  return ::inet_pton(AF_INET6, bare.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

// The token files given to serve, and (re)loading them into the API's access control.
struct TokenFiles {
  std::string worker, admin;  // "" when not given

  bool any() const { return !worker.empty() || !admin.empty(); }
  // Reads both files and replaces the valid tokens. Throws Error(kInvalidArgument) naming the
  // file when one cannot be used; the tokens in force are then left as they were.
  void LoadInto(api::AccessControl& access) const {
    std::vector<std::string> w = worker.empty() ? std::vector<std::string>{} : api::ReadTokenFile(worker);
    std::vector<std::string> a = admin.empty() ? std::vector<std::string>{} : api::ReadTokenFile(admin);
    access.Replace(w, a);
    log::Info("daemon.tokens_loaded", {{"worker_tokens", std::to_string(w.size())}, {"admin_tokens", std::to_string(a.size())}});
  }
};

// SIGHUP: the token files again; a file that cannot be used leaves the tokens in force.
void ReloadTokens(const TokenFiles& files, api::AccessControl& access) {
  if (!files.any()) {
    log::Info("daemon.signal", {{"signal", "SIGHUP"}, {"effect", "none: no token files to re-read"}});
    return;
  }
  try {
    files.LoadInto(access);
  } catch (const Error& e) {
    log::Error("daemon.tokens_reload_failed", {{"error", e.what()}, {"effect", "the previous tokens stay valid"}});
  }
}

// The drain after the first SIGINT/SIGTERM (see the top of this file): the pools refuse new
// leases; the API answers on until no request is in progress, `timeout` passes, or a second
// SIGINT/SIGTERM comes. Runs on the signal thread, with `signals` blocked everywhere.
void Drain(int sig, const sigset_t& signals, core::PoolManager& pools, const api::ApiServer& api,
           std::chrono::seconds timeout, const TokenFiles& token_files, api::AccessControl& access) {
  const auto start = std::chrono::steady_clock::now();
  const char* name = sig == SIGINT ? "SIGINT" : "SIGTERM";
  log::Info("daemon.draining", {{"signal", name}, {"in_progress", std::to_string(api.InProgress())},
                                {"timeout_s", std::to_string(timeout.count())}});
  pools.Drain();
  const auto deadline = start + timeout;
  std::string ended = "idle";
  while (api.InProgress() > 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      ended = "timeout";
      break;
    }
    timespec slice{0, 20'000'000};  // the poll for InProgress(); signals end it at once
    const int next = sigtimedwait(&signals, nullptr, &slice);
    if (next == SIGHUP) ReloadTokens(token_files, access);
    if (next == SIGINT || next == SIGTERM) {
      ended = "second signal";
      break;
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  log::Info("daemon.drained", {{"ended_by", ended}, {"ms", log::Ms(ms)},
                               {"in_progress", std::to_string(api.InProgress())}});
}

}  // namespace

int Serve(int argc, char** argv) {
  po::options_description opts("testpool serve options");
  opts.add_options()
      ("help,h", "show this help")
      ("listen", po::value<std::string>()->default_value("127.0.0.1:7432"),
       "HTTP address to listen on (host:port); any but a loopback address needs --token-file")
      ("token-file", po::value<std::string>(),
       "file of worker tokens (one per line, mode 600): every route but /healthz then needs "
       "`Authorization: Bearer <token>`; re-read on SIGHUP")
      ("admin-token-file", po::value<std::string>(),
       "file of admin tokens, which may also define and drop templates and record pools; re-read on SIGHUP")
      ("backend", po::value<std::string>()->default_value("local"),
       "where PostgreSQL comes from: local | external | docker (a container per slot)")
      ("dsn", po::value<std::string>(),
       "superuser DSN of the server (external backend; or $TESTPOOL_DSN); with docker: of the control server "
       "(default: the embedded local one)")
      ("docker-image", po::value<std::string>()->default_value(backend::kDefaultDockerImage),
       "docker backend: the PostgreSQL image templates and slots run (scripts/build-base-image.sh builds the default)")
      ("keep", "docker backend: leave the slot containers running at shutdown (the next start adopts them)")
      ("state-dir", po::value<std::string>(), "state directory (local backend's cluster lives here)")
      ("pg-bin", po::value<std::string>(), "directory with initdb and postgres (default: pg_config --bindir)")
      ("pg-port", po::value<int>()->default_value(0), "TCP port of the local postgres (0: chosen once, then kept)")
      ("pg-setting", po::value<std::vector<std::string>>()->composing(), "postgres setting key=value (repeatable)")
      ("proxy-listen", po::value<std::string>()->default_value("127.0.0.1:7433"),
       "address of the wire proxy that serves rollback-mode leases (host:port; port 0: any free)")
      ("drain-timeout", po::value<int>()->default_value(10),
       "seconds SIGTERM keeps the API answering (new leases get 503 draining) while requests are in progress")
      ("proxy-wait", po::value<int>()->default_value(30),
       "seconds a rollback-mode client waits while another connection of its lease holds a transaction")
      ("max-databases", po::value<int>()->default_value(core::PoolOptions{}.max_databases),
       "cap on pooled databases across all templates")
      ("recipes", po::value<std::string>(),
       "directory of builder recipes (*.json; default: templates/builders here, when it exists)")
      ("integresql-listen", po::value<std::string>(),
       "also serve IntegreSQL's API alone, with no token, on host:port (its clients default to port 5000); it is "
       "always served under /api/v1 on --listen too")
      ("integresql-min-ready", po::value<int>()->default_value(integresql::Options{}.pool.min_ready),
       "databases kept warm for each IntegreSQL template")
      ("integresql-max", po::value<int>()->default_value(integresql::Options{}.pool.max),
       "databases at most for each IntegreSQL template")
      ("integresql-idle", po::value<int>()->default_value(integresql::Options{}.idle_take_back.count()),
       "seconds after its last session ends that a test database handed out through IntegreSQL's API is taken back")
      ("integresql-wait", po::value<int>()->default_value(integresql::Options{}.lease_wait.count()),
       "seconds IntegreSQL's GET …/tests waits for the template's finalize, and again for a free database")
      ("log-level", po::value<std::string>(), "debug | info | warn | error");
  po::variables_map vm;
  try {
    vm = ParseArgs(std::vector<std::string>(argv + 1, argv + argc), opts, nullptr);
  } catch (const po::error& e) {
    std::cerr << "testpool serve: " << e.what() << "\n" << opts;
    return kExitUsage;
  }
  if (vm.count("help")) {
    std::cout << opts;
    return kExitOk;
  }
  if (vm.count("log-level")) {
    log::Level level;
    if (!log::ParseLevel(vm["log-level"].as<std::string>(), &level)) {
      std::cerr << "testpool serve: --log-level must be debug, info, warn or error\n";
      return kExitUsage;
    }
    log::SetLevel(level);
  }
  integresql::Options integresql_options;
  integresql_options.pool.min_ready = vm["integresql-min-ready"].as<int>();
  integresql_options.pool.max = vm["integresql-max"].as<int>();
  integresql_options.idle_take_back = std::chrono::seconds(vm["integresql-idle"].as<int>());
  integresql_options.finalize_wait = integresql_options.lease_wait = std::chrono::seconds(vm["integresql-wait"].as<int>());
  if (integresql_options.pool.min_ready < 0 || integresql_options.pool.max < 1 ||
      integresql_options.pool.min_ready > integresql_options.pool.max || integresql_options.pool.max > 1000 ||
      integresql_options.idle_take_back.count() < 1 || integresql_options.lease_wait.count() < 0 ||
      integresql_options.lease_wait.count() > 600) {
    std::cerr << "testpool serve: --integresql-min-ready and --integresql-max need 0 <= min-ready <= max <= 1000, "
                 "max >= 1, --integresql-idle at least 1 s and --integresql-wait 0 to 600 s\n";
    return kExitUsage;
  }
  std::string integresql_host;
  int integresql_port = -1;
  if (vm.count("integresql-listen") &&
      !SplitHostPort(vm["integresql-listen"].as<std::string>(), &integresql_host, &integresql_port)) {
    std::cerr << "testpool serve: --integresql-listen must be host:port (got '"
              << vm["integresql-listen"].as<std::string>() << "')\n";
    return kExitUsage;
  }
  core::PoolOptions pool_options;
  pool_options.max_databases = vm["max-databases"].as<int>();
  if (pool_options.max_databases < 1) {
    std::cerr << "testpool serve: --max-databases must be at least 1\n";
    return kExitUsage;
  }
  std::string host;
  int port = 0;
  if (!SplitHostPort(vm["listen"].as<std::string>(), &host, &port)) {
    std::cerr << "testpool serve: --listen must be host:port (got '" << vm["listen"].as<std::string>() << "')\n";
    return kExitUsage;
  }

  const TokenFiles token_files{vm.count("token-file") ? vm["token-file"].as<std::string>() : "",
                               vm.count("admin-token-file") ? vm["admin-token-file"].as<std::string>() : ""};
  if (!IsLoopback(host) && !token_files.any()) {
    std::cerr << "testpool serve: --listen " << host << ":" << port
              << " is not a loopback address, so other machines could lease databases and define templates "
                 "(which run SQL as a superuser): give --token-file FILE (worker tokens) and/or "
                 "--admin-token-file FILE, one token per line, mode 600 (see README, Threat model)\n";
    return kExitUsage;
  }
  auto access = std::make_shared<api::AccessControl>();
  try {
    if (token_files.any()) token_files.LoadInto(*access);
  } catch (const Error& e) {
    std::cerr << "testpool serve: " << e.what() << "\n";
    return kExitFailed;
  }

  std::string proxy_host;
  int proxy_port = 0;
  if (!SplitHostPort(vm["proxy-listen"].as<std::string>(), &proxy_host, &proxy_port)) {
    std::cerr << "testpool serve: --proxy-listen must be host:port (got '" << vm["proxy-listen"].as<std::string>()
              << "')\n";
    return kExitUsage;
  }
  if (vm["drain-timeout"].as<int>() < 0 || vm["drain-timeout"].as<int>() > 3600) {
    std::cerr << "testpool serve: --drain-timeout must be between 0 and 3600 seconds\n";
    return kExitUsage;
  }
  const std::chrono::seconds drain_timeout(vm["drain-timeout"].as<int>());
  if (vm["proxy-wait"].as<int>() < 1 || vm["proxy-wait"].as<int>() > 3600) {
    std::cerr << "testpool serve: --proxy-wait must be between 1 and 3600 seconds\n";
    return kExitUsage;
  }

  // The recipes, before anything starts: a bad one stops the daemon here, naming file and problem.
  std::filesystem::path recipes_dir;
  if (vm.count("recipes")) {
    recipes_dir = vm["recipes"].as<std::string>();
    std::error_code ec;
    if (!std::filesystem::is_directory(recipes_dir, ec)) {
      std::cerr << "testpool serve: --recipes " << recipes_dir.string() << " is not a directory\n";
      return kExitUsage;
    }
  } else if (std::error_code ec; std::filesystem::is_directory("templates/builders", ec)) {
    recipes_dir = std::filesystem::current_path() / "templates" / "builders";
  }
  std::unique_ptr<builders::RecipeBook> recipes;
  try {
    recipes = std::make_unique<builders::RecipeBook>(recipes_dir.empty() ? builders::RecipeBook::FromJson({})
                                                                     : builders::RecipeBook::LoadDir(recipes_dir));
  } catch (const Error& e) {
    std::cerr << "testpool serve: bad recipe: " << e.what() << "\n";
    return kExitFailed;
  } catch (const std::exception& e) {  // the directory cannot be read
    std::cerr << "testpool serve: cannot read recipes in " << recipes_dir.string() << ": " << e.what() << "\n";
    return kExitFailed;
  }

  // SIGINT/SIGTERM (stop) and SIGHUP (re-read the token files) are taken by one thread with
  // sigwait; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::unique_ptr<backend::Backend> server;
  std::filesystem::path proxy_socket_dir;
  const std::string kind = vm["backend"].as<std::string>();
  if (kind != "local" && kind != "external" && kind != "docker") {
    std::cerr << "testpool serve: --backend must be local, external or docker (got '" << kind << "')\n";
    return kExitUsage;
  }
  std::vector<std::pair<std::string, std::string>> settings;
  if (vm.count("pg-setting")) {
    for (const std::string& kv : vm["pg-setting"].as<std::vector<std::string>>()) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        std::cerr << "testpool serve: --pg-setting must be key=value (got '" << kv << "')\n";
        return kExitUsage;
      }
      settings.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
    }
  }
  std::string dsn = vm.count("dsn") ? vm["dsn"].as<std::string>() : "";
  if (dsn.empty()) {
    if (const char* env = std::getenv("TESTPOOL_DSN")) dsn = env;
  }
  if (kind == "external" && dsn.empty()) {
    std::cerr << "testpool serve: --backend external needs --dsn (or $TESTPOOL_DSN)\n";
    return kExitUsage;
  }
  if (kind != "docker" && (vm.count("keep") || !vm["docker-image"].defaulted())) {
    std::cerr << "testpool serve: --keep and --docker-image are for --backend docker\n";
    return kExitUsage;
  }
  try {
    // The control server: the embedded one (local, and docker without --dsn) or the DSN's.
    if (kind == "external" || (kind == "docker" && !dsn.empty())) {
      server = std::make_unique<backend::ExternalBackend>(dsn);
    } else {
      backend::LocalBackendOptions o;
      o.state_dir = vm.count("state-dir") ? std::filesystem::path(vm["state-dir"].as<std::string>()) : DefaultStateDir();
      if (vm.count("pg-bin")) o.bin_dir = vm["pg-bin"].as<std::string>();
      o.port = vm["pg-port"].as<int>();
      if (kind == "local") o.settings = settings;  // with docker, the settings are the containers'
      proxy_socket_dir = o.state_dir / "proxy";
      server = std::make_unique<backend::LocalBackend>(std::move(o));
    }
    if (kind == "docker") {
      backend::DockerBackendOptions o;
      const char* docker_host = std::getenv("DOCKER_HOST");
      o.address = backend::DockerAddress::Parse(docker_host != nullptr && *docker_host ? docker_host
                                                                                        : "unix:///var/run/docker.sock");
      o.image = vm["docker-image"].as<std::string>();
      o.keep = vm.count("keep") > 0;
      o.settings = settings;
      server = std::make_unique<backend::DockerBackend>(std::move(server), std::move(o));
    }

    const std::string daemon_id = util::RandomToken(10);
    log::Info("daemon.starting", {{"daemon", daemon_id}, {"backend", kind},
                                  {"listen", host + ":" + std::to_string(port)},
                                  {"access", token_files.any() ? "bearer tokens" : "open (no token files)"},
                                  {"recipes", std::to_string(recipes->Names().size())}});
    server->Start();
    auto store = core::ControlStore::Open(server->AdminConnInfo());
    core::TemplateBuilder builder(*store, util::RealClock(), server->slot_servers());
    auto templates = std::make_unique<core::TemplateService>(*store, builder);
    // Declared after the template service, yet the service is destroyed first (below), so every
    // listener call it makes finds the pools alive (a build ending after pools.Stop() still calls
    // TemplateReady, on a stopped manager).
    // The wire proxy for rollback-mode templates. Declared before the pools, so it outlives them.
    proxy::ProxyOptions proxy_options;
    proxy_options.listen_host = proxy_host;
    proxy_options.port = proxy_port;
    proxy_options.client_wait = std::chrono::seconds(vm["proxy-wait"].as<int>());
    if (!proxy_socket_dir.empty()) {
      std::filesystem::create_directories(proxy_socket_dir);
      proxy_options.socket_dir = proxy_socket_dir;
    }
    const pg::ConnInfo admin = server->AdminConnInfo();
    proxy_options.server_host = admin.Get("host", "localhost");
    proxy_options.server_port = std::stoi(admin.Get("port", "5432"));
    proxy::Proxy wire_proxy(proxy_options);
    wire_proxy.Start();
    // TESTPOOL_FAULTS (crash tests only, core/fault_points.h): the pool's doors fail or stop the
    // process at the named points. Parsed before anything starts, so a typo stops the daemon.
    core::PoolIo pool_io = core::RealPoolIo(*store, *server);
    if (const char* faults = std::getenv("TESTPOOL_FAULTS"); faults != nullptr && *faults != '\0') {
      pool_io = core::WithFaults(std::move(pool_io), core::FaultPlan::Parse(faults));
      log::Warn("daemon.faults_armed", {{"daemon", daemon_id}, {"faults", faults}});
    }
    core::PoolManager pools(std::move(pool_io), *server, util::RealClock(), pool_options);
    pools.SetPinnedSessions(&wire_proxy);
    templates->SetListener(&pools);
    // The pools tell the record pools and the builders of every lease that ends (its claims end,
    // pools defined on its database go, rows built under it in shared databases are deleted).
    // However this scope is left, the pools stop (and so stop calling) before `records` and
    // `builds` are destroyed.
    records::RecordPools records(*store, pools, util::RealClock());
    builders::BuildService builds(*store, pools, *recipes);
    pools.SetLeaseEndedListener([&records, &builds](const std::string& id) {
      records.LeaseEnded(id);
      builds.LeaseEnded(id);
    });
    struct StopPoolsFirst {
      core::PoolManager& pools;
      ~StopPoolsFirst() { pools.Stop(); }
    } stop_pools_first{pools};
    pools.Start();
    integresql::Service integresql_service(*templates, pools, *server, integresql_options);
    integresql_service.Start();
    api::ApiServerOptions api_options;
    api_options.access = access;
    api_options.integresql = &integresql_service;
    api::ApiServer api(*templates, pools, records, builds, api::ServerInfo{kind, daemon_id}, api_options);
    int bound = api.Bind(host, port);
    // IntegreSQL's API alone on a listener of its own (no tokens: its clients send none).
    std::unique_ptr<api::ApiServer> integresql_api;
    std::thread integresql_thread;
    struct StopIntegresqlApi {  // however this scope is left
      std::unique_ptr<api::ApiServer>& server;
      std::thread& thread;
      ~StopIntegresqlApi() {
        if (server) server->Stop();
        if (thread.joinable()) thread.join();
      }
    } stop_integresql_api{integresql_api, integresql_thread};
    if (integresql_port >= 0) {
      api::ApiServerOptions only;
      only.integresql = &integresql_service;
      only.integresql_only = true;
      integresql_api = std::make_unique<api::ApiServer>(*templates, pools, records, builds,
                                                        api::ServerInfo{kind, daemon_id}, only);
      int integresql_bound = integresql_api->Bind(integresql_host, integresql_port);
      integresql_thread = std::thread([&integresql_api] { integresql_api->Run(); });
      log::Info("daemon.integresql_listening",
                {{"daemon", daemon_id}, {"url", "http://" + integresql_host + ":" + std::to_string(integresql_bound)}});
    }

    std::atomic<bool> run_returned{false};
    std::thread signal_thread([&] {
      for (;;) {
        int sig = 0;
        sigwait(&signals, &sig);
        if (run_returned.load()) return;  // woken by the main thread below
        if (sig == SIGHUP) {
          ReloadTokens(token_files, *access);
          continue;
        }
        Drain(sig, signals, pools, api, drain_timeout, token_files, *access);
        api.Stop();
        return;
      }
    });
    pg::ConnInfo client = server->ClientConnInfo();
    log::Info("daemon.ready", {{"daemon", daemon_id}, {"url", "http://" + host + ":" + std::to_string(bound)},
                               {"backend", kind}, {"postgres", client.Get("host") + ":" + client.Get("port")}});
    api.Run();
    // Run() returns after Stop(): either from the signal thread, or because listening failed.
    run_returned.store(true);
    pthread_kill(signal_thread.native_handle(), SIGTERM);  // wakes sigwait if no signal came
    signal_thread.join();
    // Shutdown in dependency order: no more requests, then no more pool work, then no more
    // builds (the service's destructor waits for them), then the server.
    api.Stop();
    if (integresql_api) integresql_api->Stop();
    if (integresql_thread.joinable()) integresql_thread.join();
    integresql_service.Stop();
    pools.Stop();
    wire_proxy.Stop();
    templates.reset();
    server->Stop();
    log::Info("daemon.stopped", {{"daemon", daemon_id}});
    return kExitOk;
  } catch (const Error& e) {
    log::Error("daemon.failed", {{"error", e.what()}});
    std::cerr << "testpool serve: " << log::Redact(e.what()) << "\n";
    if (server) server->Stop();
    return kExitFailed;
  }
}

}  // namespace testpool::cli
