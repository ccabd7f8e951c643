// The source tree as tests read it: files, lines, and the output of a
// command. TENANCY_SOURCE_DIR is the repository's root.

#ifndef TENANCY_TESTS_SOURCE_TREE_H_
#define TENANCY_TESTS_SOURCE_TREE_H_

#include <stdio.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace tenancy::testing {

inline const std::filesystem::path kSourceDir = TENANCY_SOURCE_DIR;

inline std::string ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The stdout of a shell command, and whether it exited 0.
inline std::pair<std::string, bool> Run(const std::string& command) {
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = ::fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  return {out, ::pclose(pipe) == 0};
}

inline std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_SOURCE_TREE_H_
