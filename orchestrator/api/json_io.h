// JSON in and out for the API's bodies: strict parsing (wrong types, unknown fields and missing
// fields are Error(kInvalidArgument) naming the field), and the shapes the API answers with.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "orchestrator/core/control_store.h"
#include "orchestrator/core/template_service.h"
#include "orchestrator/core/template_spec.h"

namespace testpool::api {

// Parses text as JSON; throws Error(kInvalidArgument) with the parser's position on failure.
nlohmann::json ParseBody(const std::string& body);

// The PUT /v1/templates/{name} body:
// {"migrations":[{"name","sql"}…], "seed":[{"name","sql"}…], "pool":{"min_ready","max"}, "recycle":"clone"}
core::TemplateSpec TemplateSpecFromJson(const std::string& name, const nlohmann::json& body);

nlohmann::json ProgressJson(const core::BuildProgress& p);
nlohmann::json BuildJson(const core::TemplateBuildRow& b);
// One template: its current build (or, when none succeeded yet, its latest), pool settings,
// the last build job's progress when this daemon ran one, and every build when `with_builds`.
nlohmann::json TemplateJson(const std::string& name, const std::optional<core::TemplateRow>& row,
                            const std::vector<core::TemplateBuildRow>& builds,
                            const std::optional<core::BuildProgress>& progress, bool with_builds);

}  // namespace testpool::api
