// The HTTP API (v1, DESIGN.md): routes, JSON in and out, errors through api/errors.h.
//
// The routes are the rows of api/routes.h (the same table /openapi.json describes).
//
// Bind() then Run() (blocks) on one thread; Stop() from any thread makes Run() return. Requests
// are served by a pool of worker threads; a request that waits (a template build with wait, a
// lease waiting for a free slot, a claim waiting for a free row, a large build) holds one worker, and so does an
// idle keep-alive connection, so the pool is sized for concurrent clients, not for cores.
#pragma once

#include <memory>
#include <string>

#include "orchestrator/builders/builders.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/records/record_pools.h"
#include "orchestrator/core/template_service.h"

namespace testpool::api {

struct ServerInfo {
  std::string backend;     // "local", "external"
  std::string daemon_id;
};

class ApiServer {
 public:
  // `templates`, `pools`, `records` and `builds` must outlive the server (and stay usable until
  // Run() returned).
  ApiServer(core::TemplateService& templates, core::PoolManager& pools, records::RecordPools& records,
            builders::BuildService& builds, ServerInfo info);
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Binds `host`:`port` (port 0: any free port). Throws Error(kUnavailable) when it cannot.
  // Returns the bound port.
  int Bind(const std::string& host, int port);
  // Serves until Stop(). Call after Bind().
  void Run();
  void Stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::api
