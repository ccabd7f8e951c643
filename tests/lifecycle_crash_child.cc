// A child for lifecycle_test: imports an archive file (as tenant "target",
// created, or replacing "source" under its own id) and prints "halfway" once
// half of the file has been read, so that the parent can SIGKILL it in the
// middle of writing SST files.
//
//   lifecycle_crash_child DB_PATH ARCHIVE create|replace

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "tenancy/archive.h"
#include "tenancy/engine.h"
#include "tenancy/lifecycle.h"

namespace {

class HalfwaySource final : public tenancy::ArchiveSource {
 public:
  HalfwaySource(std::unique_ptr<tenancy::FileArchiveSource> file, size_t size)
      : file_(std::move(file)), half_(size / 2) {}
  absl::StatusOr<size_t> Read(char* buffer, size_t capacity) override {
    if (read_ >= half_ && !said_) {
      said_ = true;
      if (write(STDOUT_FILENO, "halfway\n", 8) != 8) _exit(3);
      usleep(20000);  // the parent kills meanwhile; if not, go on
    }
    absl::StatusOr<size_t> n = file_->Read(buffer, std::min<size_t>(capacity, 64 << 10));
    if (n.ok()) read_ += *n;
    return n;
  }

 private:
  std::unique_ptr<tenancy::FileArchiveSource> file_;
  size_t half_;
  size_t read_ = 0;
  bool said_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  tenancy::EngineOptions options;
  options.path = argv[1];
  options.logger = tenancy::NewNullLogger();
  auto engine = tenancy::Engine::Open(options);
  if (!engine.ok()) return 1;
  struct stat st;
  if (stat(argv[2], &st) != 0) return 1;
  auto file = tenancy::FileArchiveSource::Open(argv[2]);
  if (!file.ok()) return 1;
  HalfwaySource source(std::move(*file), static_cast<size_t>(st.st_size));
  tenancy::ImportOptions import;
  if (std::string(argv[3]) == "replace") {
    import.mode = tenancy::ImportMode::kReplace;
  } else {
    import.tenant_id = "target";
  }
  auto result = (*engine)->lifecycle().Import(source, import);
  return result.ok() ? 0 : 1;
}
