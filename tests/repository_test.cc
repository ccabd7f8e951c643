// The repository stands alone: no file of it points at files outside it, so
// that a user who clones it can follow every pointer.

#include <catch2/catch.hpp>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "source_tree.h"

namespace tenancy::testing {
namespace {

namespace fs = std::filesystem;

// The repository's files: git's tracked files when it is a git checkout, else
// every file but the build's and git's.
std::vector<fs::path> RepositoryFiles() {
  std::vector<fs::path> files;
  auto [listed, ok] = Run("git -C '" + kSourceDir.string() + "' ls-files 2>/dev/null");
  if (ok && !listed.empty()) {
    for (const std::string& line : Lines(listed)) files.push_back(kSourceDir / line);
    return files;
  }
  for (auto it = fs::recursive_directory_iterator(kSourceDir);
       it != fs::recursive_directory_iterator(); ++it) {
    const std::string name = it->path().filename().string();
    if (it->is_directory() && (name == ".git" || name.rfind("build", 0) == 0 || name == "data")) {
      it.disable_recursion_pending();
    } else if (it->is_regular_file()) {
      files.push_back(it->path());
    }
  }
  return files;
}

TEST_CASE("Repository: no file of it points outside it", "[repository]") {
  // Built here so that this file does not contain them.
  const std::string parent = std::string("..") + "/shared";
  const std::string absolute = "/" + std::string("shared") + "/";
  std::vector<fs::path> files = RepositoryFiles();
  REQUIRE(files.size() > 10);
  for (const fs::path& file : files) {
    if (!fs::is_regular_file(file)) continue;  // deleted but still tracked
    const std::string text = ReadFile(file);
    INFO(fs::relative(file, kSourceDir).string());
    CHECK(text.find(parent) == std::string::npos);
    CHECK(text.find(absolute) == std::string::npos);
  }
}

TEST_CASE("Repository: every Markdown file it names is in it", "[repository]") {
  // "server/README.md", "bench/README.md": relative to the repository's root
  // or to the naming file's directory. A name of a file that is not in the
  // repository (a design note kept elsewhere) is a pointer a user cannot
  // follow.
  static const std::regex kMarkdown(R"([A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md\b)");
  for (const fs::path& file : RepositoryFiles()) {
    if (!fs::is_regular_file(file)) continue;
    const std::string text = ReadFile(file);
    for (std::sregex_iterator it(text.begin(), text.end(), kMarkdown), end; it != end; ++it) {
      const std::string named = it->str();
      INFO(fs::relative(file, kSourceDir).string() << " names " << named);
      CHECK((fs::exists(kSourceDir / named) || fs::exists(file.parent_path() / named)));
    }
  }
}

}  // namespace
}  // namespace tenancy::testing
