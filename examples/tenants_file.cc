// A host program configured by a tenants file, as tenancyd is with --config:
// the file is applied at start (tenants, their keys by hash, default and
// global limits), and an edit is applied while the program runs, without a
// restart. A file that does not validate is refused with the place of the
// error, and the configuration in force stays.
//
//   tenants_file [DATA_DIR]     (default ./data-tenants-file)
//
// It writes its own file, DATA_DIR.tenants.json, so that it can edit it.

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "tenancy/config_file.h"
#include "tenancy/engine.h"
#include "tenancy/status.h"
#include "tenancy/tenant_registry.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "tenants_file: %s\n", status.ToString().c_str());
  return 1;
}

bool Write(const std::string& path, const std::string& text) {
  // Written beside and renamed over, as an editor or a deploy would: a
  // reader never sees half a file.
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp, std::ios::trunc) << text;
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

void Show(tenancy::Engine& engine, const char* when) {
  std::printf("%s:\n", when);
  auto page = engine.registry().List(tenancy::ListOptions{});
  if (!page.ok()) return;
  for (const tenancy::TenantInfo& t : page->tenants) {
    // The tenant's own limits over the file's defaults.
    const tenancy::ConcurrencyLimits limits = engine.limiter().EffectiveTenantLimits(t.spec.limits);
    const auto llm = limits.find("llm");
    std::printf("  %-8s %-8s storage quota %llu MiB, llm limit %lld\n", t.spec.id.c_str(),
                t.spec.enabled ? "enabled" : "disabled",
                static_cast<unsigned long long>(t.spec.quota.storage_bytes >> 20),
                static_cast<long long>(llm == limits.end() ? 0 : llm->second));
  }
}

}  // namespace

int main(int argc, char** argv) {
  tenancy::EngineOptions options;
  options.path = argc > 1 ? argv[1] : "data-tenants-file";
  const std::string file = options.path + ".tenants.json";
  auto engine = tenancy::Engine::Open(options);
  if (!engine.ok()) return Fail(engine.status());

  if (!Write(file, R"({
  "defaults": {"limits": {"llm": 30, "llm/student": 2, "llm/teacher": 10, "ocr": 5}},
  "tenants": [
    {"tenant_id": "school", "quota": {"storage_mb": 100}, "limits": {"llm": 40}},
    {"tenant_id": "clinic", "quota": {"storage_mb": 10}}
  ]
})")) {
    return Fail(absl::InternalError("cannot write " + file));
  }
  tenancy::ConfigFileOptions config_options;
  config_options.path = file;
  config_options.poll_interval = std::chrono::milliseconds(100);
  auto config = tenancy::ConfigFile::Open(engine->get(), config_options);
  if (!config.ok()) return Fail(config.status());
  Show(**engine, "applied at start");

  // An edit: clinic's quota grows, school is removed from the file (so it
  // is disabled, never purged: its data stays). The watcher applies it.
  const uint64_t version = (*config)->state().version;
  if (!Write(file, R"({
  "defaults": {"limits": {"llm": 30, "llm/student": 2, "llm/teacher": 10, "ocr": 5}},
  "tenants": [
    {"tenant_id": "clinic", "quota": {"storage_mb": 20}}
  ]
})")) {
    return Fail(absl::InternalError("cannot write " + file));
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while ((*config)->state().version == version && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if ((*config)->state().version == version) {
    return Fail(absl::DeadlineExceededError("the edit was not applied within 5 s"));
  }
  Show(**engine, "after the edit (no restart)");

  // A broken edit is refused; what is in force stays.
  if (!Write(file, R"({"tenants": [{"tenant_id": "Not A Slug"}]})")) {
    return Fail(absl::InternalError("cannot write " + file));
  }
  absl::Status refused = (*config)->Reload();
  std::printf("a broken file is refused: %s\n", refused.ToString().c_str());
  Show(**engine, "still in force");
  return refused.ok() ? 1 : 0;
}
