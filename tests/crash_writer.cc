// The child of crash_test: opens the engine at argv[1] and writes under load
// until killed. Each acknowledged (synced) write to tenant "journal" is
// reported on stdout as a 4-byte sequence number.

#include <unistd.h>

#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tenancy/engine.h"
#include "tenancy/kv_store.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  tenancy::EngineOptions options;
  options.path = argv[1];
  options.logger = tenancy::NewNullLogger();
  options.sync_writes = true;  // acknowledged means on disk
  options.memtable_budget_bytes = 8 << 20;
  auto engine = tenancy::Engine::Open(options);
  if (!engine.ok()) return 2;
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t + getpid());
      tenancy::KvStore kv = (*engine)->GetTenant(t == 0 ? "alpha" : "beta")->kv();
      for (;;) {
        std::string key = "k" + std::to_string(rng() % 200);
        if (rng() % 3 == 0) {
          (void)kv.Delete(key);
        } else if (rng() % 5 == 0) {
          tenancy::WriteBatch batch;
          for (int i = 0; i < 20; ++i) {
            batch.Put("b" + std::to_string(rng() % 300), std::string(rng() % 50, 'b'));
          }
          (void)kv.Write(batch);
        } else {
          (void)kv.Put(key, std::string(rng() % 200, 'v'));
        }
      }
    });
  }
  tenancy::KvStore journal = (*engine)->GetTenant("journal")->kv();
  for (uint32_t seq = 0;; ++seq) {
    if (!journal.Put("seq" + std::to_string(seq), "x").ok()) _exit(3);
    if (write(STDOUT_FILENO, &seq, sizeof(seq)) != sizeof(seq)) _exit(4);
  }
}
