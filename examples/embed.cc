// Embedding tenancy in a host program: open an engine, provision tenants
// (idempotently, so running this twice is fine), and read and write through
// tenant handles. Each tenant sees only its own keys; quotas are exact.
//
//   embed [DATA_DIR]     (default ./data)

#include <cstdio>
#include <string>

#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/status.h"
#include "tenancy/tenant_registry.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "embed: %s\n", status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  tenancy::EngineOptions options;
  options.path = argc > 1 ? argv[1] : "data";
  auto engine = tenancy::Engine::Open(options);
  if (!engine.ok()) return Fail(engine.status());

  // Provisioning is idempotent: an identical spec for an existing tenant is OK.
  for (const char* id : {"acme", "globex"}) {
    tenancy::TenantSpec spec;
    spec.id = id;
    spec.quota.storage_bytes = 1 << 20;  // 1 MiB
    spec.labels["example"] = "embed";
    auto info = (*engine)->registry().Create(spec);
    if (!info.ok()) return Fail(info.status());
  }

  auto acme = (*engine)->GetTenant("acme");
  auto globex = (*engine)->GetTenant("globex");
  if (!acme.ok()) return Fail(acme.status());
  if (!globex.ok()) return Fail(globex.status());

  // The same key in two tenants: two different values, never mixed.
  if (auto s = acme->kv().Put("greeting", "hello from acme"); !s.ok()) return Fail(s);
  if (auto s = globex->kv().Put("greeting", "hello from globex"); !s.ok()) return Fail(s);
  for (const tenancy::Tenant* tenant : {&*acme, &*globex}) {
    auto value = tenant->kv().Get("greeting");
    if (!value.ok()) return Fail(value.status());
    tenancy::Usage usage = tenant->usage();
    std::printf("%-7s greeting=%-18s usage: %llu bytes in %llu keys\n", tenant->id().c_str(),
                value->c_str(), static_cast<unsigned long long>(usage.bytes),
                static_cast<unsigned long long>(usage.keys));
  }

  // A write that would pass the quota is refused before anything is written.
  absl::Status too_big = acme->kv().Put("blob", std::string(2 << 20, 'x'));
  if (tenancy::IsQuotaExceeded(too_big) ||
      tenancy::GetErrorReason(too_big) == tenancy::ErrorReason::kTooLarge) {
    std::printf("acme    2 MiB write refused: %s\n", too_big.ToString().c_str());
  }

  // An API key is shown once; only its hash is stored.
  auto key = (*engine)->registry().CreateApiKey("acme");
  if (!key.ok()) return Fail(key.status());
  auto resolved = (*engine)->ResolveApiKey(key->secret);
  if (!resolved.ok()) return Fail(resolved.status());
  std::printf("new key %s... resolves to tenant %s\n", key->prefix.c_str(), resolved->id().c_str());
  return 0;
}
