// Opens an engine through the installed headers and library; exits 0 when a
// tenant can write and read back its value.
#include <cstdio>

#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/tenant_registry.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  tenancy::EngineOptions options;
  options.path = argv[1];
  options.logger = tenancy::NewNullLogger();
  auto engine = tenancy::Engine::Open(options);
  if (!engine.ok()) return 1;
  tenancy::TenantSpec spec;
  spec.id = "consumer";
  if (!(*engine)->registry().Create(spec).ok()) return 1;
  auto tenant = (*engine)->GetTenant("consumer");
  if (!tenant.ok() || !tenant->kv().Put("k", "v").ok()) return 1;
  auto value = tenant->kv().Get("k");
  if (!value.ok() || *value != "v") return 1;
  std::puts("consumer ok");
  return 0;
}
