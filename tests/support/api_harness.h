// The daemon's HTTP API in-process, for integration tests: control store, template service, pool
// manager, record pools, builders (the repository's recipes, <source dir>/templates/builders) and
// ApiServer on a free port, in front of the shared test server (test_server.h).
#pragma once

#include <httplib.h>

#include <memory>
#include <string>

#include "orchestrator/api/server.h"

namespace testpool::testing {

class InProcessApi {
 public:
  // `with_pools`: the pool manager is started, told about templates (lease routes work) and tells
  // the record pools and the builders when a lease ends; otherwise it is never started and the
  // lease routes have nothing to hand out (the record pool and DSN build routes work either way).
  // `options`: the server's (connection limits, access tokens).
  explicit InProcessApi(bool with_pools, int max_databases = 20, api::ApiServerOptions options = {});
  ~InProcessApi();  // stops the server, then the pools, then waits for builds
  InProcessApi(const InProcessApi&) = delete;
  InProcessApi& operator=(const InProcessApi&) = delete;

  int port() const;
  // A client with a read timeout long enough for a template build.
  httplib::Client Client() const;

  // Checks the API's error shape (JSON content type, an error object with a non-empty message)
  // with test expectations, and returns its code ("" when the shape is wrong).
  static std::string ErrorCodeOf(const httplib::Result& r);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace testpool::testing
