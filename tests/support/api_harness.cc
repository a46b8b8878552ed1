#include "tests/support/api_harness.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "orchestrator/api/server.h"
#include "orchestrator/builders/builders.h"
#include "orchestrator/core/control_store.h"
#include "orchestrator/core/pool_manager.h"
#include "orchestrator/records/record_pools.h"
#include "orchestrator/core/template_builder.h"
#include "orchestrator/core/template_service.h"
#include "tests/support/test_server.h"

namespace testpool::testing {

struct InProcessApi::Impl {
  std::unique_ptr<core::ControlStore> store;
  std::unique_ptr<core::TemplateBuilder> builder;
  std::unique_ptr<core::PoolManager> pools;
  std::unique_ptr<records::RecordPools> records;
  std::unique_ptr<builders::RecipeBook> recipes;
  std::unique_ptr<builders::BuildService> builds;
  std::unique_ptr<core::TemplateService> service;
  std::unique_ptr<api::ApiServer> server;
  std::thread thread;
  int port = 0;
};

InProcessApi::InProcessApi(bool with_pools, int max_databases, api::ApiServerOptions server_options)
    : impl_(std::make_unique<Impl>()) {
  impl_->store = core::ControlStore::Open(Server().AdminConnInfo());
  impl_->builder = std::make_unique<core::TemplateBuilder>(*impl_->store, util::RealClock());
  core::PoolOptions options;
  options.max_databases = max_databases;
  impl_->pools = std::make_unique<core::PoolManager>(*impl_->store, Server(), util::RealClock(), options);
  impl_->records = std::make_unique<records::RecordPools>(*impl_->store, *impl_->pools, util::RealClock());
  impl_->recipes = std::make_unique<builders::RecipeBook>(
      builders::RecipeBook::LoadDir(SourceDir() / "templates" / "builders"));
  impl_->builds = std::make_unique<builders::BuildService>(*impl_->store, *impl_->pools, *impl_->recipes);
  impl_->service = std::make_unique<core::TemplateService>(*impl_->store, *impl_->builder);
  if (with_pools) {
    impl_->service->SetListener(impl_->pools.get());
    records::RecordPools* records = impl_->records.get();
    builders::BuildService* builds = impl_->builds.get();
    impl_->pools->SetLeaseEndedListener([records, builds](const std::string& id) {
      records->LeaseEnded(id);
      builds->LeaseEnded(id);
    });
    impl_->pools->Start();
  }
  impl_->server = std::make_unique<api::ApiServer>(*impl_->service, *impl_->pools, *impl_->records,
                                                   *impl_->builds, api::ServerInfo{"local", "test"}, std::move(server_options));
  impl_->port = impl_->server->Bind("127.0.0.1", 0);
  impl_->thread = std::thread([this] { impl_->server->Run(); });
}

InProcessApi::~InProcessApi() {
  impl_->server->Stop();
  impl_->thread.join();
  impl_->server.reset();
  impl_->pools->Stop();
  impl_->service.reset();  // waits for builds, which may still tell the pools
  impl_->records.reset();  // the pools stopped: they call it no more
  impl_->builds.reset();
  impl_->pools.reset();
}

int InProcessApi::port() const { return impl_->port; }

httplib::Client InProcessApi::Client() const {
  httplib::Client c("127.0.0.1", impl_->port);
  c.set_read_timeout(std::chrono::seconds(120));
  return c;
}

std::string InProcessApi::ErrorCodeOf(const httplib::Result& r) {
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json");
  nlohmann::json b = nlohmann::json::parse(r->body, nullptr, false);
  EXPECT_TRUE(b.is_object() && b.contains("error")) << r->body;
  if (!b.is_object() || !b.contains("error")) return "";
  EXPECT_TRUE(b["error"]["message"].is_string() && !b["error"]["message"].get<std::string>().empty());
  return b["error"]["code"].get<std::string>();
}

}  // namespace testpool::testing
