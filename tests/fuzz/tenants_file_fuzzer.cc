// tenants_file_fuzzer: ParseTenantsFile (tenancy/config_file.h), the reader
// of the tenants file tenancyd loads at start and on every change.
//
// Invariants checked, for a file the reader accepts:
//   - tenant ids are distinct, every key hash is 64 lower-case hex digits
//     and none is listed twice, limits are within [0, 1e9];
//   - the file written back (JsonWriter: exact byte counts, the keys as
//     hashes) reads back equal: tenants, defaults, global limits and
//     reload_on_change.

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "json.h"
#include "spec_writer.h"
#include "tenancy/config_file.h"

namespace tenancy::internal {
namespace {

void CheckLimits(const ConcurrencyLimits& limits) {
  for (const auto& [name, limit] : limits) {
    FUZZ_CHECK(!name.empty());
    FUZZ_CHECK(limit >= 0 && limit <= 1'000'000'000);
  }
}

void WriteLimits(JsonWriter& w, const ConcurrencyLimits& limits) {
  w.BeginObject();
  for (const auto& [name, limit] : limits) w.Key(name).Int(limit);
  w.EndObject();
}

void Run(std::string_view text) {
  auto config = ParseTenantsFile(text);
  if (!config.ok()) return;

  std::set<std::string> ids;
  std::set<std::string> hashes;
  for (const TenantsFileEntry& entry : config->tenants) {
    FUZZ_CHECK(ids.insert(entry.spec.id).second);
    CheckLimits(entry.spec.limits);
    for (const std::string& hash : entry.api_key_sha256) {
      FUZZ_CHECK(hash.size() == 64);
      for (char c : hash) FUZZ_CHECK((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
      FUZZ_CHECK(hashes.insert(hash).second);
    }
  }
  CheckLimits(config->default_limits);
  CheckLimits(config->global_limits);

  JsonWriter w;
  w.BeginObject().Key("tenants").BeginArray();
  for (const TenantsFileEntry& entry : config->tenants) {
    w.BeginObject();
    WriteSpecFields(w, entry.spec);
    if (!entry.api_key_sha256.empty()) {
      w.Key("api_key_sha256").BeginArray();
      for (const std::string& hash : entry.api_key_sha256) w.String(hash);
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  w.Key("defaults").BeginObject().Key("limits");
  WriteLimits(w, config->default_limits);
  w.EndObject();
  w.Key("global_limits");
  WriteLimits(w, config->global_limits);
  w.Key("reload_on_change").Bool(config->reload_on_change);
  w.EndObject();
  const std::string written = w.Release();

  auto again = ParseTenantsFile(written);
  if (!again.ok()) {
    std::fprintf(stderr, "written back: %s\nrefused: %s\n", written.c_str(),
                 again.status().ToString().c_str());
  }
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->tenants == config->tenants);
  FUZZ_CHECK(again->default_limits == config->default_limits);
  FUZZ_CHECK(again->global_limits == config->global_limits);
  FUZZ_CHECK(again->reload_on_change == config->reload_on_change);
}

}  // namespace
}  // namespace tenancy::internal

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  tenancy::internal::Run(std::string_view(reinterpret_cast<const char*>(bytes), size));
  return 0;
}
