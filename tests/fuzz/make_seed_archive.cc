// Writes small real tenant archives for corpus/archive_fuzzer: an engine in a
// temporary directory, a tenant with a few keys (one binary, one empty),
// jobs in several states and an API key, and an empty tenant, exported with
// Engine::lifecycle().Export. Each archive is written as two corpus files:
// the fuzzer's flag byte (archive_fuzzer.cc) and then the archive, read
// whole ("-whole") and in pieces ("-pieces"). They are committed; run this
// again only when the archive format changes:
//
//   make_seed_archive tests/fuzz/corpus/archive_fuzzer

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "absl/time/time.h"
#include "tenancy/archive.h"
#include "tenancy/engine.h"
#include "tenancy/jobs.h"
#include "tenancy/kv_store.h"
#include "tenancy/lifecycle.h"
#include "tenancy/tenant_registry.h"

namespace {

int Fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "make_seed_archive: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

// Keeps what is appended, after a first byte.
class StringSink final : public tenancy::ArchiveSink {
 public:
  absl::Status Append(std::string_view data) override {
    out.append(data);
    return absl::OkStatus();
  }
  std::string out;
};

// Exports tenant `id` of `engine` to `path` + "-whole" and "-pieces", each
// after the fuzzer's flag byte.
absl::Status ExportTo(tenancy::Engine& engine, const std::string& id, const std::string& path) {
  StringSink sink;
  auto summary = engine.lifecycle().Export(id, sink);
  if (!summary.ok()) return summary.status();
  // 0x00: checksums as written, one Read. 0x06: v = 3, Reads of 48 bytes.
  for (const auto& [suffix, flags] :
       {std::pair<const char*, char>{"-whole", 0x00}, {"-pieces", 0x06}}) {
    std::FILE* f = std::fopen((path + suffix).c_str(), "wb");
    if (f == nullptr) return absl::UnavailableError("cannot create " + path + suffix);
    bool ok = std::fputc(flags, f) != EOF &&
              std::fwrite(sink.out.data(), 1, sink.out.size(), f) == sink.out.size();
    ok = std::fclose(f) == 0 && ok;
    if (!ok) return absl::UnavailableError("cannot write " + path + suffix);
  }
  return absl::OkStatus();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seed_archive <output directory>\n");
    return 2;
  }
  const std::filesystem::path out = argv[1];
  std::string dir = (std::filesystem::temp_directory_path() / "tenancy-seed-XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) return 1;
  int rc = 0;
  {
    tenancy::EngineOptions options;
    options.path = dir;
    auto engine = tenancy::Engine::Open(options);
    if (!engine.ok()) return Fail("open", engine.status());
    tenancy::Engine& e = **engine;

    // An empty tenant: header, metadata and end chunks only.
    if (auto s = e.registry().Create({.id = "empty"}); !s.ok()) return Fail("create", s.status());
    // A tenant with a bit of everything the archive holds.
    auto created = e.registry().CreateWithKey({.id = "acme", .labels = {{"plan", "seed"}}});
    if (!created.ok()) return Fail("create", created.status());
    auto acme = e.GetTenant("acme");
    if (!acme.ok()) return Fail("tenant", acme.status());
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"greeting", "hello"},
                                     {"user/1", "{\"name\":\"ada\"}"},
                                     {"user/2", "{\"name\":\"grace\"}"},
                                     {std::string("bin\0\xff", 5), std::string("\x00\x01\x02", 3)},
                                     {"empty", ""}}) {
      if (auto s = acme->kv().Put(key, value); !s.ok()) return Fail("put", s);
    }
    for (const char* payload : {"first", "second", "third"}) {
      auto job = acme->jobs().Enqueue({.type = "email", .payload = payload});
      if (!job.ok()) return Fail("enqueue", job.status());
    }
    auto delayed = acme->jobs().Enqueue({.type = "report", .delay = absl::Hours(1)});
    if (!delayed.ok()) return Fail("enqueue", delayed.status());
    auto claimed = acme->jobs().Claim({.type = "email", .lease = absl::Minutes(5)});
    if (!claimed.ok()) return Fail("claim", claimed.status());

    for (const char* id : {"acme", "empty"}) {
      const std::string path = (out / id).string();
      if (auto s = ExportTo(e, id, path); !s.ok()) {
        rc = Fail("export", s);
        break;
      }
      std::printf("%s\n", path.c_str());
    }
  }
  std::error_code ignored;
  std::filesystem::remove_all(dir, ignored);
  return rc;
}
