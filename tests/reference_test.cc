// server/README.md, the HTTP reference, against the server it documents: its
// route table (route_table.h), its flags (`tenancyd --help`) and the error
// codes it can answer with (http_status.h, and every status and code written
// together in server/).
//
// The reference's format, as these tests read it:
//   - a route row is a Markdown table row whose first cell is a code span
//     "METHOD /path" (the path as the route table writes it, "{key}" for a
//     parameter) and whose second cell is a code span with the route's name;
//   - a flag row is a table row whose first cell is a code span that starts
//     with "--name";
//   - an error row is a table row "| status | `code` | when |".
// Other rows (and route-like text outside tables) are not read.

#include <catch2/catch.hpp>
#include <filesystem>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "http_status.h"
#include "route_table.h"
#include "source_tree.h"

namespace tenancy::internal {
namespace {

namespace fs = std::filesystem;
using testing::kSourceDir;
using testing::Lines;
using testing::ReadFile;
using testing::Run;

// The cells of a Markdown table row, trimmed; empty if `line` is not a row.
std::vector<std::string> Cells(const std::string& line) {
  std::vector<std::string> cells;
  if (line.rfind("| ", 0) != 0) return cells;
  std::string cell;
  // "\|" inside a cell is a literal '|'.
  for (size_t i = 1; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (line[i] == '|') {
      const size_t first = cell.find_first_not_of(' ');
      const size_t last = cell.find_last_not_of(' ');
      cells.push_back(first == std::string::npos ? std::string()
                                                 : cell.substr(first, last - first + 1));
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  return cells;
}

// The text of a cell that is one code span ("`x`" -> "x"), else "".
std::string CodeSpan(const std::string& cell) {
  if (cell.size() < 2 || cell.front() != '`' || cell.back() != '`') return "";
  return cell.substr(1, cell.size() - 2);
}

struct DocumentedRoute {
  std::string method;
  std::string path;
  std::string name;
  bool operator<(const DocumentedRoute& o) const {
    return std::tie(method, path, name) < std::tie(o.method, o.path, o.name);
  }
};

// What server/README.md documents (see the format at the top).
struct Reference {
  std::vector<DocumentedRoute> routes;
  std::set<std::string> flags;
  std::set<std::pair<int, std::string>> errors;
};

Reference ParseReference(const std::string& text) {
  static const std::regex kRoute(R"(^(GET|HEAD|PUT|POST|DELETE|PATCH|OPTIONS) (/\S*)$)");
  static const std::regex kFlag(R"(^(--[a-z][a-z-]*)( .*)?$)");
  static const std::regex kStatus(R"(^[1-5][0-9][0-9]$)");
  Reference ref;
  for (const std::string& line : Lines(text)) {
    std::vector<std::string> cells = Cells(line);
    if (cells.size() < 2) continue;
    const std::string first = CodeSpan(cells[0]);
    std::smatch m;
    if (std::regex_match(first, m, kRoute)) {
      ref.routes.push_back({m[1], m[2], CodeSpan(cells[1])});
    } else if (std::regex_match(first, m, kFlag)) {
      ref.flags.insert(m[1]);
    } else if (std::regex_match(cells[0], kStatus) && !CodeSpan(cells[1]).empty()) {
      ref.errors.emplace(std::stoi(cells[0]), CodeSpan(cells[1]));
    }
  }
  return ref;
}

Reference ServerReadme() { return ParseReference(ReadFile(kSourceDir / "server" / "README.md")); }

TEST_CASE("Reference: the parser reads routes, flags and errors from table rows only",
          "[reference]") {
  Reference ref = ParseReference(
      "| `GET /v1/kv/{key}` | `kv_get` | read | 200 |\n"
      "| `--auth api-key\\|trusted` | `api-key` | mode |\n"
      "| 404 | `not_found` | no such thing |\n"
      "GET /v1/elsewhere in prose, `POST /v1/jobs` in a code span\n"
      "- `DELETE /v1/cache?prefix=` in a list\n"
      "| metric | `tenancy_keys` | not a route |\n");
  REQUIRE(ref.routes.size() == 1);
  CHECK(ref.routes[0].method == "GET");
  CHECK(ref.routes[0].path == "/v1/kv/{key}");
  CHECK(ref.routes[0].name == "kv_get");
  CHECK(ref.flags == std::set<std::string>{"--auth"});
  CHECK(ref.errors == std::set<std::pair<int, std::string>>{{404, "not_found"}});
}

TEST_CASE(
    "Reference: every route of the server is in server/README.md, by method, "
    "path and name",
    "[reference]") {
  Reference ref = ServerReadme();
  for (const RouteInfo& route : Routes()) {
    INFO(route.method << " " << route.path);
    bool found = false;
    for (const DocumentedRoute& doc : ref.routes) {
      if (doc.method == route.method && doc.path == route.path) {
        found = true;
        CHECK(doc.name == route.name);
      }
    }
    CHECK(found);
  }
}

TEST_CASE("Reference: server/README.md names no route the server does not have", "[reference]") {
  Reference ref = ServerReadme();
  REQUIRE_FALSE(ref.routes.empty());
  std::set<DocumentedRoute> seen;
  for (const DocumentedRoute& doc : ref.routes) {
    INFO(doc.method << " " << doc.path);
    CHECK(seen.insert(doc).second);  // documented once
    bool served = false;
    for (const RouteInfo& route : Routes()) {
      served = served || (doc.method == route.method && doc.path == route.path);
    }
    CHECK(served);
  }
}

TEST_CASE("Reference: the flags of tenancyd --help are those of server/README.md", "[reference]") {
  auto [help, ok] = Run(std::string("'") + TENANCY_TENANCYD + "' --help");
  REQUIRE(ok);
  std::set<std::string> flags;
  static const std::regex kFlagLine(R"(^  (--[a-z][a-z-]*)( .*)?$)");
  for (const std::string& line : Lines(help)) {
    std::smatch m;
    if (std::regex_match(line, m, kFlagLine)) flags.insert(m[1]);
  }
  REQUIRE(flags.count("--data-dir") == 1);
  const std::set<std::string> documented = ServerReadme().flags;
  for (const std::string& flag : flags) {
    INFO(flag << " is in --help");
    CHECK(documented.count(flag) == 1);
  }
  for (const std::string& flag : documented) {
    INFO(flag << " is in server/README.md");
    CHECK(flags.count(flag) == 1);
  }
}

TEST_CASE(
    "Reference: the error table of server/README.md is every status and code "
    "the server answers with",
    "[reference]") {
  std::set<std::pair<int, std::string>> exported;
  for (const HttpErrorCode& e : HttpErrorCodes()) {
    CHECK(exported.emplace(e.status, std::string(e.code)).second);
  }
  const std::set<std::pair<int, std::string>> documented = ServerReadme().errors;
  for (const auto& [status, code] : exported) {
    INFO(status << " " << code << " is exported");
    CHECK(documented.count({status, code}) == 1);
  }
  for (const auto& [status, code] : documented) {
    INFO(status << " " << code << " is in server/README.md");
    CHECK(exported.count({status, code}) == 1);
  }
}

TEST_CASE(
    "Reference: every status and code written together in server/ is exported "
    "by HttpErrorCodes, and every one exported is used",
    "[reference]") {
  std::set<std::pair<int, std::string>> exported;
  for (const HttpErrorCode& e : HttpErrorCodes()) {
    exported.emplace(e.status, std::string(e.code));
  }
  // MakeHttpError(404, "not_found", ...), Refuse(431, "too_large", ...),
  // CannedResponse(503, "unavailable", ...), and the like.
  static const std::regex kPair(R"(\b([1-5][0-9][0-9]),\s*"([a-z_]+)\")");
  std::set<std::pair<int, std::string>> used;
  for (const fs::directory_entry& entry : fs::directory_iterator(kSourceDir / "server")) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".cc" && ext != ".h") continue;
    const std::string text = ReadFile(entry.path());
    for (std::sregex_iterator it(text.begin(), text.end(), kPair), end; it != end; ++it) {
      std::pair<int, std::string> pair{std::stoi((*it)[1]), (*it)[2]};
      INFO(entry.path().filename().string() << ": " << pair.first << " " << pair.second);
      CHECK(exported.count(pair) == 1);
      used.insert(pair);
    }
  }
  for (const auto& [status, code] : exported) {
    INFO(status << " " << code << " is exported");
    CHECK(used.count({status, code}) == 1);
  }
}

}  // namespace
}  // namespace tenancy::internal
