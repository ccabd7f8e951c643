// The child of adopt_test's crash case: opens the engine at argv[1] adopting
// into tenant argv[2], with a logger that copies each message to stdout and
// stops the adoption for good at its first progress line, so the parent can
// kill it half way through.

#include <unistd.h>

#include <iostream>
#include <string>

#include "tenancy/engine.h"

namespace {

class StopAtProgress final : public tenancy::Logger {
 public:
  void Log(tenancy::LogLevel, std::string_view message) override {
    std::cout << message << std::endl;
    if (message.find("progress:") != std::string_view::npos) {
      for (;;) pause();
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  tenancy::EngineOptions options;
  options.path = argv[1];
  options.adopt_existing_data = argv[2];
  options.logger = std::make_shared<StopAtProgress>();
  auto engine = tenancy::Engine::Open(options);
  std::cout << (engine.ok() ? "opened" : engine.status().ToString()) << std::endl;
  return engine.ok() ? 0 : 1;
}
