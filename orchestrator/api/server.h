// The HTTP API (v1, DESIGN.md): routes, JSON in and out, errors through api/errors.h.
//
// Bind() then Run() (blocks) on one thread; Stop() from any thread makes Run() return. Requests
// are served by a pool of worker threads; a request that waits (a template build with wait) holds
// one worker, so the pool is sized for waiting requests, not for cores.
#pragma once

#include <memory>
#include <string>

#include "orchestrator/core/template_service.h"

namespace testpool::api {

struct ServerInfo {
  std::string backend;     // "local", "external"
  std::string daemon_id;
};

class ApiServer {
 public:
  ApiServer(core::TemplateService& templates, ServerInfo info);
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
