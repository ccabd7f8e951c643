// tenancyctl as an operator runs it: the binary against a tenancyd child on
// port 0, every command as a table and as --json, usage errors (exit 2), a
// wrong key and an unreachable server (exit 1).
// REQUIRES: TENANCY_TENANCYD and TENANCY_TENANCYCTL are the binaries' paths.

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "server_fixture.h"
#include "simdjson.h"
#include "temp_dir.h"
#include "tenancyd_process.h"

namespace tenancy::testing {
namespace {

namespace fs = std::filesystem;

struct CtlResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// In a forked child: becomes tenancyctl with `args`.
[[noreturn]] void ExecCtl(std::vector<std::string> args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(TENANCY_TENANCYCTL));
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(TENANCY_TENANCYCTL, argv.data());
  ::_exit(127);
}

// A tenancyctl child; its stdout and stderr are read through pipes.
class CtlProcess {
 public:
  // `env`: variables set (an empty value unsets one) over the test's own.
  CtlProcess(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
    int out[2], err[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      int null = ::open("/dev/null", O_RDONLY);
      if (null >= 0) ::dup2(null, STDIN_FILENO);
      for (const auto& [name, value] : env) {
        if (value.empty()) {
          ::unsetenv(name.c_str());
        } else {
          ::setenv(name.c_str(), value.c_str(), 1);
        }
      }
      ExecCtl(args);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  CtlProcess(const CtlProcess&) = delete;
  CtlProcess& operator=(const CtlProcess&) = delete;
  ~CtlProcess() {
    if (pid_ > 0 && !exited_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
    ::close(err_);
  }

  // Reads what is there within `timeout`; false once both pipes are closed.
  bool Pump(std::chrono::milliseconds timeout) {
    pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    int open = 0;
    for (pollfd& q : p) {
      if (q.fd < 0) continue;
      ++open;
    }
    if (open == 0) return false;
    if (::poll(p, 2, static_cast<int>(timeout.count())) <= 0) return true;
    for (int i = 0; i < 2; ++i) {
      if ((p[i].revents & (POLLIN | POLLHUP)) == 0) continue;
      char buf[4096];
      ssize_t n = ::read(p[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        (i == 0 ? out_eof_ : err_eof_) = true;
      } else {
        (i == 0 ? result_.out : result_.err).append(buf, static_cast<size_t>(n));
      }
    }
    return !(out_eof_ && err_eof_);
  }

  // How many times stdout held `text` so far (what has been read).
  int Seen(const std::string& text) {
    Pump(std::chrono::milliseconds(0));
    int seen = 0;
    for (size_t at = result_.out.find(text); at != std::string::npos;
         at = result_.out.find(text, at + 1)) {
      ++seen;
    }
    return seen;
  }

  // Reads until stdout holds `text` `count` times; false after a minute.
  bool WaitForOutput(const std::string& text, int count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Seen(text) >= count) return true;
      if (!Pump(std::chrono::milliseconds(100)) && out_eof_) return false;
    }
    return false;
  }

  void Signal(int sig) { ::kill(pid_, sig); }

  // Reads to the end and waits for the exit (at most a minute).
  CtlResult Finish() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline && Pump(std::chrono::milliseconds(100)) &&
           !(out_eof_ && err_eof_)) {
    }
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_) {
      exited_ = true;
      result_.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    return result_;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
  bool out_eof_ = false;
  bool err_eof_ = false;
  bool exited_ = false;
  CtlResult result_;
};

// Runs tenancyctl on a pseudo-terminal (its stdout and stderr a terminal,
// as an operator's are); returns what the terminal showed and the exit code.
CtlResult RunOnTerminal(const std::vector<std::string>& args,
                        const std::map<std::string, std::string>& env) {
  int master = -1;
  winsize size{};
  size.ws_row = 40;
  size.ws_col = 120;
  pid_t pid = ::forkpty(&master, nullptr, nullptr, &size);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (const auto& [name, value] : env) ::setenv(name.c_str(), value.c_str(), 1);
    ExecCtl(args);
  }
  CtlResult result;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(master, buf, sizeof(buf));
    if (n <= 0) break;  // EIO once the child has exited
    result.out.append(buf, static_cast<size_t>(n));
  }
  ::close(master);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

// A tenancyd child on a free port, and tenancyctl runs against it.
class Operator {
 public:
  Operator()
      : server_({"--data-dir", (dir_.path() / "data").string(), "--listen", "127.0.0.1:0",
                 "--backup-dir", (dir_.path() / "backups").string()},
                dir_.path() / "tenancyd.log") {
    port_ = server_.WaitListening();
    REQUIRE(port_ > 0);
    url_ = "http://127.0.0.1:" + std::to_string(port_);
  }

  const fs::path& dir() const { return dir_.path(); }
  int port() const { return port_; }
  const std::string& url() const { return url_; }

  // The environment of a run: the server's URL and the admin key.
  std::map<std::string, std::string> Env(const std::string& key = kAdminKey) const {
    return {{"TENANCY_URL", url_}, {"TENANCY_ADMIN_KEY", key}};
  }

  CtlResult Run(const std::vector<std::string>& args) { return RunWith(args, Env()); }
  CtlResult RunWith(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env) {
    CtlProcess p(args, env);
    return p.Finish();
  }

  // Runs a command that must succeed; returns its stdout.
  std::string Ok(const std::vector<std::string>& args) {
    CtlResult r = Run(args);
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  }

 private:
  TempDir dir_;
  TenancydProcess server_;
  int port_ = -1;
  std::string url_;
};

simdjson::dom::element ParseJson(simdjson::dom::parser& parser, const std::string& text) {
  simdjson::dom::element root;
  INFO(text);
  REQUIRE(parser.parse(text).get(root) == simdjson::SUCCESS);
  return root;
}

std::string StringField(simdjson::dom::element e, std::string_view field) {
  std::string_view s;
  if (e[field].get(s) != simdjson::SUCCESS) return "<missing>";
  return std::string(s);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The line of a table that starts with `first` (a row's first cell), or "".
std::string Row(const std::string& table, const std::string& first) {
  for (const std::string& line : Lines(table)) {
    if (line.rfind(first + " ", 0) == 0) return line;
  }
  return "";
}

// Puts `bytes` bytes under `key` as tenant `api_key`.
void PutValue(int port, const std::string& api_key, const std::string& key, size_t bytes) {
  TestClient c(port);
  REQUIRE(c.Put("/v1/kv/" + key, std::string(bytes, 'v'), Bearer(api_key)).status == 204);
}

std::string CreateTenant(Operator& op, const std::string& id, const std::string& quota_mb) {
  simdjson::dom::parser parser;
  std::string out = op.Ok({"--json", "tenants", "create", id, "--quota-mb", quota_mb});
  simdjson::dom::element created = ParseJson(parser, out);
  REQUIRE(StringField(created, "tenant_id") == id);
  return StringField(created, "api_key");
}

TEST_CASE("tenancyctl: tenants create, list, get, apply, disable, enable and purge", "[ctl]") {
  Operator op;
  simdjson::dom::parser parser;

  std::string created = op.Ok({"tenants", "create", "acme", "--quota-mb", "10"});
  CHECK(created.find("created tenant acme (active)") != std::string::npos);
  CHECK(created.find("api key  tk_") != std::string::npos);
  const std::string key = CreateTenant(op, "globex", "1");
  CHECK(key.rfind("tk_", 0) == 0);

  // list: a table, and the API's JSON unchanged.
  std::string table = op.Ok({"tenants", "list"});
  CHECK(table.rfind("TENANT  STATE   PLACEMENT", 0) == 0);
  CHECK(Row(table, "acme").find("active") != std::string::npos);
  CHECK(Row(table, "acme").find("10.0 MiB") != std::string::npos);
  CHECK(Row(table, "globex").find("1.0 MiB") != std::string::npos);
  std::string json = op.Ok({"tenants", "list", "--json"});
  TestClient c(op.port());
  Reply api = c.Get("/admin/tenants?limit=1000", Admin());
  CHECK(json == api.body + "\n");

  // get
  std::string detail = op.Ok({"tenants", "get", "acme"});
  CHECK(detail.find("tenant       acme") != std::string::npos);
  CHECK(detail.find("Effective limits") != std::string::npos);
  CHECK(detail.find("requests/writes") != std::string::npos);
  simdjson::dom::element got = ParseJson(parser, op.Ok({"--json", "tenants", "get", "acme"}));
  CHECK(StringField(got, "state") == "active");

  // apply: the spec of a file, live at once.
  const fs::path spec = op.dir() / "acme.json";
  std::ofstream(spec) << R"({"quota_mb": 20, "labels": {"plan": "pro"}})";
  std::string applied = op.Ok({"tenants", "apply", "acme", spec.string()});
  CHECK(applied.find("to tenant acme (active)") != std::string::npos);
  CHECK(op.Ok({"tenants", "get", "acme"}).find("plan=pro") != std::string::npos);
  simdjson::dom::element put =
      ParseJson(parser, op.Ok({"--json", "tenants", "apply", "acme", spec.string()}));
  double quota = 0;
  CHECK(put["spec"]["quota"]["storage_mb"].get(quota) == simdjson::SUCCESS);
  CHECK(quota == 20);

  // disable, enable
  CHECK(op.Ok({"tenants", "disable", "globex"}) == "tenant globex: disabled\n");
  CHECK(c.Get("/v1/usage", Bearer(key)).status == 403);
  CHECK(op.Ok({"tenants", "enable", "globex"}) == "tenant globex: active\n");
  CHECK(c.Get("/v1/usage", Bearer(key)).status == 200);
  simdjson::dom::element disabled =
      ParseJson(parser, op.Ok({"--json", "tenants", "disable", "globex"}));
  CHECK(StringField(disabled, "status") == "disabled");
  simdjson::dom::element enabled =
      ParseJson(parser, op.Ok({"--json", "tenants", "enable", "globex"}));
  CHECK(StringField(enabled, "status") == "active");

  // purge, and purge --archive
  CHECK(op.Ok({"tenants", "purge", "globex"}) == "tenant globex: purged\n");
  CHECK(c.Get("/admin/tenants/globex", Admin()).status == 404);
  std::string archived = op.Ok({"tenants", "purge", "acme", "--archive"});
  CHECK(archived.find("tenant acme: purged, archived as acme-") != std::string::npos);
  CreateTenant(op, "initech", "1");
  simdjson::dom::element purged =
      ParseJson(parser, op.Ok({"--json", "tenants", "purge", "initech"}));
  CHECK(StringField(purged, "status") == "purged");
  CHECK(Row(op.Ok({"tenants", "list"}), "acme").empty());
}

TEST_CASE("tenancyctl: keys add and revoke, and stats with a usage bar", "[ctl]") {
  Operator op;
  simdjson::dom::parser parser;
  const std::string key = CreateTenant(op, "acme", "1");
  CreateTenant(op, "globex", "0");
  // 0.75 MiB of a 1 MiB quota: 75 %, a bar of 8 cells of 10 (rounded).
  PutValue(op.port(), key, "a", 3 * 262144 - 1);

  std::string stats = op.Ok({"stats"});
  CHECK(stats.rfind("TENANT  STATE", 0) == 0);
  CHECK(Lines(stats)[0].find("USAGE") != std::string::npos);
  const std::string acme = Row(stats, "acme");
  CHECK(acme.find("████████░░  75 %") != std::string::npos);
  CHECK(acme.find("1.0 MiB") != std::string::npos);
  CHECK(Row(stats, "globex").find("no quota") != std::string::npos);
  std::string one = op.Ok({"stats", "acme"});
  CHECK(Row(one, "acme").find("████████░░  75 %") != std::string::npos);
  CHECK(Row(one, "acme").find("active") != std::string::npos);
  TestClient c(op.port());
  CHECK(op.Ok({"--json", "stats", "acme"}) ==
        c.Get("/admin/tenants/acme/stats", Admin()).body + "\n");
  simdjson::dom::element all = ParseJson(parser, op.Ok({"--json", "stats"}));
  simdjson::dom::array tenants;
  REQUIRE(all["tenants"].get(tenants) == simdjson::SUCCESS);
  CHECK(tenants.size() == 2);

  // keys add: a working key, shown once; revoke: it stops working.
  std::string added = op.Ok({"keys", "add", "acme"});
  CHECK(added.find("new API key for tenant acme") != std::string::npos);
  simdjson::dom::element k = ParseJson(parser, op.Ok({"--json", "keys", "add", "acme"}));
  const std::string secret = StringField(k, "api_key");
  const std::string key_id = StringField(k, "key_id");
  CHECK(c.Get("/v1/usage", Bearer(secret)).status == 200);
  CHECK(op.Ok({"keys", "revoke", "acme", key_id}) == "revoked key " + key_id + " of tenant acme\n");
  CHECK(c.Get("/v1/usage", Bearer(secret)).status == 401);
  CtlResult again = op.Run({"keys", "revoke", "acme", key_id});
  CHECK(again.exit_code == 1);
  CHECK(again.err == "tenancyctl: tenant \"acme\": no api key \"" + key_id + "\"\n");
  simdjson::dom::element k2 = ParseJson(parser, op.Ok({"--json", "keys", "add", "acme"}));
  CHECK(op.Ok({"--json", "keys", "revoke", "acme", StringField(k2, "key_id")}).empty());
}

TEST_CASE("tenancyctl: export, import and backups move a tenant's data", "[ctl]") {
  Operator op;
  simdjson::dom::parser parser;
  const std::string key = CreateTenant(op, "acme", "10");
  PutValue(op.port(), key, "a", 300000);
  PutValue(op.port(), key, "b", 1000);

  // export streams to a file; stdout is not a terminal: no progress line.
  const fs::path archive = op.dir() / "acme.tnca";
  std::string exported = op.Ok({"export", "acme", "-o", archive.string()});
  CHECK(exported.rfind("exported tenant acme to " + archive.string(), 0) == 0);
  CHECK(exported.find('\r') == std::string::npos);
  CHECK(fs::file_size(archive) > 301000);
  CHECK_FALSE(fs::exists(archive.string() + ".partial"));

  // import under another id (a clone), as a table and as JSON.
  std::string imported = op.Ok({"import", archive.string(), "--as", "clone"});
  CHECK(imported.find("as tenant clone (created): 2 keys") != std::string::npos);
  CHECK(imported.find("new api key  tk_") != std::string::npos);
  simdjson::dom::element replaced = ParseJson(
      parser, op.Ok({"--json", "import", archive.string(), "--as", "clone", "--replace"}));
  CHECK(StringField(replaced, "tenant_id") == "clone");
  // Without --as: the archive's own tenant, which exists (409).
  CtlResult exists = op.Run({"import", archive.string()});
  CHECK(exists.exit_code == 1);
  CHECK(exists.err.find("acme") != std::string::npos);
  // A failed export leaves no file behind.
  CtlResult missing = op.Run({"export", "nope", "-o", (op.dir() / "nope.tnca").string()});
  CHECK(missing.exit_code == 1);
  CHECK_FALSE(fs::exists(op.dir() / "nope.tnca"));
  CHECK_FALSE(fs::exists(op.dir() / "nope.tnca.partial"));

  // backups: create, list, restore a tenant from one, delete.
  std::string backup = op.Ok({"backups", "create"});
  CHECK(backup.rfind("created backup 1 at ", 0) == 0);
  simdjson::dom::element second = ParseJson(parser, op.Ok({"--json", "backups", "create"}));
  uint64_t second_id = 0;
  CHECK(second["backup_id"].get(second_id) == simdjson::SUCCESS);
  CHECK(second_id == 2);
  std::string list = op.Ok({"backups", "list"});
  CHECK(list.find("BACKUP ID") != std::string::npos);
  CHECK(Lines(list).size() == 3);
  TestClient c(op.port());
  CHECK(op.Ok({"--json", "backups", "list"}) == c.Get("/admin/backups", Admin()).body + "\n");
  REQUIRE(c.Delete("/v1/kv/a", Bearer(key)).status == 204);
  std::string restored = op.Ok({"backups", "restore", "acme", "--backup", "1"});
  CHECK(restored.find("restored tenant acme from backup 1: 2 keys") != std::string::npos);
  CHECK(c.Get("/v1/kv/a", Bearer(key)).status == 200);
  simdjson::dom::element again =
      ParseJson(parser, op.Ok({"--json", "backups", "restore", "acme", "--backup", "2"}));
  CHECK(StringField(again, "tenant_id") == "acme");
  CHECK(op.Ok({"backups", "delete", "1"}) == "deleted backup 1\n");
  CHECK(op.Ok({"--json", "backups", "delete", "2"}).empty());
  CHECK(Lines(op.Ok({"backups", "list"})).size() == 1);
}

TEST_CASE("tenancyctl: export, import and backups draw a progress bar on a terminal only",
          "[ctl]") {
  Operator op;
  const std::string key = CreateTenant(op, "acme", "10");
  PutValue(op.port(), key, "a", 2000000);
  const fs::path archive = op.dir() / "acme.tnca";
  CtlResult exported = RunOnTerminal({"export", "acme", "-o", archive.string()}, op.Env());
  INFO(exported.out);
  CHECK(exported.exit_code == 0);
  // The line redrawn in place: the bar, bytes and a rate, then the result.
  CHECK(exported.out.find("\r\x1b[2Kexport acme") != std::string::npos);
  CHECK(exported.out.find("█") != std::string::npos);
  CHECK(exported.out.find("/s") != std::string::npos);
  CHECK(exported.out.find("exported tenant acme to ") != std::string::npos);
  CtlResult imported = RunOnTerminal({"import", archive.string(), "--as", "clone"}, op.Env());
  INFO(imported.out);
  CHECK(imported.exit_code == 0);
  CHECK(imported.out.find("\r\x1b[2Kimport clone") != std::string::npos);
  CHECK(imported.out.find("100 %") != std::string::npos);
  CtlResult backup = RunOnTerminal({"backups", "create"}, op.Env());
  INFO(backup.out);
  CHECK(backup.exit_code == 0);
  CHECK(backup.out.find("created backup 1") != std::string::npos);
  // Not on a terminal: the result line only.
  CtlResult plain = op.Run({"export", "acme", "-o", archive.string()});
  CHECK(plain.exit_code == 0);
  CHECK(plain.out.find('\r') == std::string::npos);
  CHECK(plain.out.find("█") == std::string::npos);
  CHECK(Lines(plain.out).size() == 1);
  CHECK(plain.err.empty());
}

TEST_CASE("tenancyctl: top shows per-tenant rates each second until interrupted, exit 0", "[ctl]") {
  Operator op;
  const std::string key = CreateTenant(op, "acme", "1");
  TestClient c(op.port());
  // A 507 and some reads for acme before and while top runs.
  CtlProcess top({"top"}, op.Env());
  REQUIRE(top.WaitForOutput("TENANT", 1));
  for (int i = 0; i < 20; ++i) REQUIRE(c.Get("/v1/usage", Bearer(key)).status == 200);
  REQUIRE(c.Put("/v1/kv/big", std::string(1100000, 'x'), Bearer(key)).status == 507);
  // The requests are in the refresh after the one on screen, or the next
  // (they may take longer than a second under a sanitizer on a busy machine).
  REQUIRE(top.WaitForOutput("TENANT", top.Seen("TENANT") + 2));
  top.Signal(SIGINT);
  CtlResult r = top.Finish();
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("TENANT  REQ/S  429/S  507/S") != std::string::npos);
  // Some refresh saw acme's requests and its 507 (a rate over 0).
  bool busy = false;
  bool rejected = false;
  for (const std::string& line : Lines(r.out)) {
    if (line.rfind("acme ", 0) != 0) continue;
    std::istringstream cells(line.substr(5));
    std::string rps, r429, r507;
    cells >> rps >> r429 >> r507;
    busy = busy || rps != "0";
    rejected = rejected || r507 != "0";
  }
  CHECK(busy);
  CHECK(rejected);

  // --json: a JSON line a second.
  CtlProcess json({"--json", "top"}, op.Env());
  REQUIRE(c.Get("/v1/usage", Bearer(key)).status == 200);
  REQUIRE(json.WaitForOutput("\n", 2));
  json.Signal(SIGINT);
  CtlResult j = json.Finish();
  CHECK(j.exit_code == 0);
  simdjson::dom::parser parser;
  for (const std::string& line : Lines(j.out)) {
    simdjson::dom::element tick = ParseJson(parser, line);
    simdjson::dom::array tenants;
    REQUIRE(tick["tenants"].get(tenants) == simdjson::SUCCESS);
    REQUIRE(tenants.size() == 1);
    CHECK(StringField(tenants.at(0), "tenant_id") == "acme");
  }
}

TEST_CASE("tenancyctl: bad usage prints the usage and exits 2", "[ctl]") {
  const std::vector<std::vector<std::string>> cases = {
      {},
      {"frobnicate"},
      {"tenants"},
      {"tenants", "get"},
      {"tenants", "get", "a", "b"},
      {"tenants", "create", "acme", "--archive"},
      {"tenants", "create", "acme", "--quota-mb", "lots"},
      {"keys", "revoke", "acme"},
      {"stats", "a", "b"},
      {"export", "acme"},
      {"backups", "restore", "acme"},
      {"backups", "restore", "acme", "--backup", "x"},
      {"--bogus", "tenants", "list"},
      {"--server", "ftp://example", "tenants", "list"},
      {"--admin-key", "secret", "tenants", "list"},
      {"--admin-key=secret", "tenants", "list"},
  };
  // No server is needed: usage is checked before anything is sent.
  for (const auto& args : cases) {
    std::string shown;
    for (const std::string& a : args) shown += a + " ";
    INFO("tenancyctl " << shown);
    CtlProcess p(args, {{"TENANCY_URL", "http://127.0.0.1:1"}});
    CtlResult r = p.Finish();
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("usage: tenancyctl") != std::string::npos);
    CHECK(r.out.empty());
  }
  // The refusal of a key in the command line says why.
  CtlProcess p({"--admin-key", "secret", "stats"}, {});
  CHECK(p.Finish().err.find("shows in ps") != std::string::npos);
  CtlProcess help({"--help"}, {});
  CtlResult h = help.Finish();
  CHECK(h.exit_code == 0);
  CHECK(h.out.find("backups create | list") != std::string::npos);
}

TEST_CASE("tenancyctl: a wrong or missing key exits 1 with the server's message", "[ctl]") {
  Operator op;
  CtlResult wrong = op.RunWith({"tenants", "list"}, op.Env("not-the-admin-key"));
  CHECK(wrong.exit_code == 1);
  CHECK(wrong.err == "tenancyctl: wrong admin key\n");
  CHECK(wrong.out.empty());
  CtlResult none = op.RunWith({"stats"}, {{"TENANCY_URL", op.url()}, {"TENANCY_ADMIN_KEY", ""}});
  CHECK(none.exit_code == 1);
  CHECK(none.err == "tenancyctl: admin key required (X-Admin-Key or Bearer)\n");
  // Another refusal: the server's message, exit 1.
  CtlResult missing = op.Run({"tenants", "get", "nope"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err == "tenancyctl: tenant \"nope\": not found\n");
}

TEST_CASE("tenancyctl: the admin key comes from --admin-key-file or TENANCY_ADMIN_KEY", "[ctl]") {
  Operator op;
  const fs::path file = op.dir() / "admin.key";
  std::ofstream(file) << kAdminKey << "\n";
  CtlResult r = op.RunWith({"--admin-key-file", file.string(), "tenants", "list"},
                           {{"TENANCY_URL", op.url()}, {"TENANCY_ADMIN_KEY", ""}});
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("TENANT", 0) == 0);
  // --server wins over TENANCY_URL.
  CtlResult flag =
      op.RunWith({"--server", op.url(), "tenants", "list"},
                 {{"TENANCY_URL", "http://127.0.0.1:1"}, {"TENANCY_ADMIN_KEY", kAdminKey}});
  CHECK(flag.exit_code == 0);
  CtlResult unreadable =
      op.RunWith({"--admin-key-file", (op.dir() / "none").string(), "stats"}, op.Env());
  CHECK(unreadable.exit_code == 2);
}

TEST_CASE("tenancyctl: an unreachable server is one line naming the URL, exit 1", "[ctl]") {
  // A port nothing listens on: bound, never listened to.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  socklen_t len = sizeof(addr);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  for (const std::vector<std::string>& args : {std::vector<std::string>{"tenants", "list"},
                                               {"stats", "acme"},
                                               {"top"},
                                               {"backups", "create"}}) {
    INFO(args[0]);
    CtlProcess p(args, {{"TENANCY_URL", url}, {"TENANCY_ADMIN_KEY", kAdminKey}});
    CtlResult r = p.Finish();
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(Lines(r.err).size() == 1);
    CHECK(r.err.find(url) != std::string::npos);
  }
  ::close(fd);
}

}  // namespace
}  // namespace tenancy::testing
