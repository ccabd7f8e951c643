// tenancyctl: the operator's command line for tenancyd, a client of its admin
// API (server/README.md has the routes it calls).
//
// Human tables by default; --json prints the API's JSON as the server sent
// it. Exit status: 0 on success; 1 when the server refused (its message on
// stderr) or cannot be reached (one line naming the URL); 2 on bad usage
// (the usage on stderr). The admin key comes from --admin-key-file or
// TENANCY_ADMIN_KEY, never from a flag's value, which `ps` would show.
//
// export and import stream the archive between the server and a file (it
// is never held whole in memory); they, and backups, draw a progress line on
// a terminal and nothing extra otherwise.

#include <httplib.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "admin_key.h"
#include "json.h"
#include "request_target.h"
#include "simdjson.h"
#include "tenancy/archive.h"
#include "tenancyctl_metrics.h"
#include "tenancyctl_output.h"

namespace tenancy::ctl {
namespace {

constexpr char kProgram[] = "tenancyctl";
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    R"(usage: tenancyctl [--server URL] [--admin-key-file FILE] [--json] COMMAND
  # URL default $TENANCY_URL or http://127.0.0.1:8080; key default $TENANCY_ADMIN_KEY
  tenants list | get ID | create ID [--quota-mb N] | apply ID SPEC.json
  tenants disable ID | enable ID | purge ID [--archive]
  keys add ID | keys revoke ID KEY_ID
  stats [ID]                       # table: tenant, state, used/quota (with a bar), keys, calls today, last active
  top                              # live per-tenant req/s, 429s, 507s, p99; refreshed each second
                                   #   (with --json: one JSON line a second)
  export ID -o FILE | import FILE [--as ID] [--replace]
  backups create | list | delete BACKUP_ID | restore ID --backup BACKUP_ID
Human tables by default, the API's JSON with --json; a progress bar on a terminal for
export, import and backups; exit 0 on success, 1 with the server's error message, 2 on
bad usage.
)";

[[noreturn]] void UsageError(const std::string& message) {
  std::cerr << kProgram << ": " << message << "\n" << kUsage;
  std::exit(kExitUsage);
}

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << kProgram << ": " << message << "\n";
  std::exit(kExitError);
}

// ---- the command line -------------------------------------------------------

struct CommandLine {
  std::string server;
  std::string admin_key;
  bool json = false;
  std::vector<std::string> words;              // the command and its arguments
  std::map<std::string, std::string> options;  // command options: --as ID -> {"as", "ID"}
  std::set<std::string> switches;              // command switches: --archive, --replace
};

// Options of commands: those that take a value, and switches.
const std::set<std::string> kValueOptions = {"quota-mb", "o", "output", "as", "backup"};
const std::set<std::string> kSwitches = {"archive", "replace"};

CommandLine ParseCommandLine(int argc, char** argv) {
  CommandLine cl;
  std::string key_file;
  const char* url = std::getenv("TENANCY_URL");
  cl.server = url != nullptr && *url != '\0' ? url : "http://127.0.0.1:8080";
  bool only_words = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (only_words || arg.size() < 2 || arg[0] != '-' || arg == "-") {
      cl.words.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_words = true;
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    auto take_value = [&]() -> std::string {
      if (value.has_value()) return *value;
      if (i + 1 >= argc) UsageError(arg + " needs a value");
      return argv[++i];
    };
    if (name == "h" || name == "help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (name == "json") {
      if (value.has_value()) UsageError("--json takes no value");
      cl.json = true;
    } else if (name == "server") {
      cl.server = take_value();
    } else if (name == "admin-key-file") {
      key_file = take_value();
    } else if (name == "admin-key") {
      UsageError(
          "--admin-key is not accepted: a key in the command line shows in ps; use "
          "--admin-key-file FILE or TENANCY_ADMIN_KEY");
    } else if (kValueOptions.count(name) != 0) {
      cl.options[name == "output" ? "o" : name] = take_value();
    } else if (kSwitches.count(name) != 0) {
      if (value.has_value()) UsageError("--" + name + " takes no value");
      cl.switches.insert(name);
    } else {
      UsageError("unknown option " + arg);
    }
  }
  if (cl.server.rfind("http://", 0) != 0) {
    UsageError("--server must be an http:// URL, not \"" + cl.server + "\"");
  }
  while (cl.server.size() > 7 && cl.server.back() == '/') cl.server.pop_back();
  if (!key_file.empty()) {
    auto key = internal::ReadAdminKeyFile(key_file);
    if (!key.ok()) UsageError(std::string(key.status().message()));
    cl.admin_key = *std::move(key);
  } else if (const char* env = std::getenv("TENANCY_ADMIN_KEY"); env != nullptr) {
    cl.admin_key = env;
  }
  if (cl.words.empty()) UsageError("no command");
  return cl;
}

// ---- the admin API ------------------------------------------------------------

struct Reply {
  int status = 0;
  std::string body;
};

// Parses a JSON body; a body that is not JSON is the server's fault.
simdjson::dom::element ParseJson(simdjson::dom::parser& parser, const std::string& body) {
  simdjson::dom::element root;
  if (parser.parse(body).get(root) != simdjson::SUCCESS) {
    Fail("the server answered with a body that is not JSON");
  }
  return root;
}

std::string Str(simdjson::dom::element e, std::string_view field) {
  std::string_view s;
  if (e[field].get(s) != simdjson::SUCCESS) return "";
  return std::string(s);
}

double Num(simdjson::dom::element e, std::string_view field) {
  simdjson::dom::element v;
  if (e[field].get(v) != simdjson::SUCCESS) return 0;
  double d = 0;
  if (v.get_double().get(d) == simdjson::SUCCESS) return d;
  uint64_t u = 0;
  if (v.get_uint64().get(u) == simdjson::SUCCESS) return static_cast<double>(u);
  int64_t i = 0;
  if (v.get_int64().get(i) == simdjson::SUCCESS) return static_cast<double>(i);
  return 0;
}

uint64_t Uint(simdjson::dom::element e, std::string_view field) {
  return static_cast<uint64_t>(Num(e, field));
}

class AdminApi {
 public:
  AdminApi(const std::string& url, const std::string& admin_key)
      : url_(url), client_(url), key_(admin_key) {
    client_.set_connection_timeout(std::chrono::seconds(5));
    client_.set_read_timeout(std::chrono::seconds(300));
    client_.set_write_timeout(std::chrono::seconds(300));
    client_.set_url_encode(false);  // paths are encoded here
    client_.set_keep_alive(true);
  }

  httplib::Headers Headers() const {
    httplib::Headers h;
    if (!key_.empty()) h.emplace("X-Admin-Key", key_);
    return h;
  }

  // One request; exits 1 with the server's message on an error status or
  // with the URL when the server cannot be reached.
  // One request; exits 1 with the server's message on an error status or
  // with the URL when the server cannot be reached.
  Reply Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return Check(Send(method, path, body));
  }

  httplib::Result Send(const std::string& method, const std::string& path,
                       const std::string& body = "") {
    if (method == "GET") return client_.Get(path, Headers());
    if (method == "DELETE") return client_.Delete(path, Headers());
    if (method == "PUT") return client_.Put(path, Headers(), body, "application/json");
    return client_.Post(path, Headers(), body, "application/json");
  }

  Reply Check(const httplib::Result& r, const std::string* error_body = nullptr) {
    if (!r) Unreachable(r.error());
    Reply reply{r->status, error_body != nullptr ? *error_body : r->body};
    if (reply.status < 200 || reply.status >= 300) FailWith(reply);
    return reply;
  }

  [[noreturn]] void Unreachable(httplib::Error error) const {
    std::string why;
    switch (error) {
      case httplib::Error::Connection:
        why = "connection refused or no route";
        break;
      case httplib::Error::ConnectionTimeout:
        why = "connection timed out";
        break;
      case httplib::Error::Read:
        why = "the connection closed before an answer";
        break;
      case httplib::Error::Write:
        why = "the connection closed while sending";
        break;
      default:
        why = httplib::to_string(error);
        break;
    }
    Fail("cannot reach tenancyd at " + url_ + " (" + why + ")");
  }

  // The server's message ("wrong admin key"), else the status.
  [[noreturn]] static void FailWith(const Reply& reply) {
    simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view message;
    if (parser.parse(reply.body).get(root) == simdjson::SUCCESS &&
        root["error"]["message"].get(message) == simdjson::SUCCESS) {
      Fail(std::string(message));
    }
    Fail(absl::StrFormat("the server answered HTTP %d", reply.status));
  }

  httplib::Client& client() { return client_; }
  const std::string& url() const { return url_; }

 private:
  const std::string url_;
  httplib::Client client_;
  const std::string key_;
};

std::string TenantPath(const std::string& id, std::string_view rest = "") {
  return "/admin/tenants/" + internal::PercentEncode(id) + std::string(rest);
}

// ---- commands -----------------------------------------------------------------

class Commands {
 public:
  explicit Commands(CommandLine cl) : cl_(std::move(cl)), api_(cl_.server, cl_.admin_key) {}

  int Run();

 private:
  std::optional<std::string> Option(const std::string& name) const {
    auto it = cl_.options.find(name);
    if (it == cl_.options.end()) return std::nullopt;
    return it->second;
  }

  // With --json, prints the answer as the server sent it and returns false;
  // else parses it into *out for a table.
  bool ForPeople(const Reply& reply, simdjson::dom::element* out) {
    if (cl_.json) {
      PrintJson(reply.body);
      return false;
    }
    *out = ParseJson(parser_, reply.body);
    return true;
  }

  // Prints the body as the server sent it (with a final newline).
  void PrintJson(const std::string& body) {
    std::cout << body;
    if (!body.empty() && body.back() != '\n') std::cout << '\n';
  }

  // The commands of kCommands; `args` are the words after the command's.
 public:
  using Args = std::vector<std::string>;
  int TenantsList(const Args& args);
  int TenantsGet(const Args& args);
  int TenantsCreate(const Args& args);
  int TenantsApply(const Args& args);
  int TenantsDisable(const Args& args) { return TenantsState(args[0], false); }
  int TenantsEnable(const Args& args) { return TenantsState(args[0], true); }
  int TenantsPurge(const Args& args);
  int KeysAdd(const Args& args);
  int KeysRevoke(const Args& args);
  int Stats(const Args& args);
  int Top(const Args& args);
  int Export(const Args& args);
  int Import(const Args& args);
  int BackupsCreate(const Args& args);
  int BackupsList(const Args& args);
  int BackupsDelete(const Args& args);
  int BackupsRestore(const Args& args);

 private:
  int TenantsState(const std::string& id, bool enable);

  // Every tenant, page by page: the raw page bodies.
  std::vector<std::string> ListPages();
  // Runs `request` while a progress line ticks (on a terminal).
  // Runs `request` while a progress line ticks (on a terminal), then checks
  // its answer as AdminApi::Call does.
  Reply WithTicker(const std::string& label, const std::function<httplib::Result()>& request);

  CommandLine cl_;
  AdminApi api_;
  simdjson::dom::parser parser_;
};

// One command: its words, how many arguments follow them, the command
// options it takes, and what runs it.
struct CommandSpec {
  std::string_view words;
  size_t min_args;
  size_t max_args;
  std::set<std::string> options;
  int (Commands::*run)(const std::vector<std::string>& args);
};

const CommandSpec kCommands[] = {
    {"tenants list", 0, 0, {}, &Commands::TenantsList},
    {"tenants get", 1, 1, {}, &Commands::TenantsGet},
    {"tenants create", 1, 1, {"quota-mb"}, &Commands::TenantsCreate},
    {"tenants apply", 2, 2, {}, &Commands::TenantsApply},
    {"tenants disable", 1, 1, {}, &Commands::TenantsDisable},
    {"tenants enable", 1, 1, {}, &Commands::TenantsEnable},
    {"tenants purge", 1, 1, {"archive"}, &Commands::TenantsPurge},
    {"keys add", 1, 1, {}, &Commands::KeysAdd},
    {"keys revoke", 2, 2, {}, &Commands::KeysRevoke},
    {"stats", 0, 1, {}, &Commands::Stats},
    {"top", 0, 0, {}, &Commands::Top},
    {"export", 1, 1, {"o"}, &Commands::Export},
    {"import", 1, 1, {"as", "replace"}, &Commands::Import},
    {"backups create", 0, 0, {}, &Commands::BackupsCreate},
    {"backups list", 0, 0, {}, &Commands::BackupsList},
    {"backups delete", 1, 1, {}, &Commands::BackupsDelete},
    {"backups restore", 1, 1, {"backup"}, &Commands::BackupsRestore},
};

int Commands::Run() {
  const std::vector<std::string>& w = cl_.words;
  for (const CommandSpec& spec : kCommands) {
    // "tenants list" matches the first two words, "stats" the first.
    const size_t n = spec.words.find(' ') == std::string_view::npos ? 1 : 2;
    if (w.size() < n) continue;
    if (spec.words != (n == 1 ? w[0] : w[0] + " " + w[1])) continue;
    std::vector<std::string> args(w.begin() + static_cast<std::ptrdiff_t>(n), w.end());
    if (args.size() < spec.min_args || args.size() > spec.max_args) {
      UsageError(absl::StrFormat("%s takes %s argument%s", spec.words,
                                 spec.min_args == spec.max_args
                                     ? std::to_string(spec.min_args)
                                     : absl::StrFormat("%d to %d", spec.min_args, spec.max_args),
                                 spec.max_args == 1 ? "" : "s"));
    }
    for (const auto& [name, value] : cl_.options) {
      if (spec.options.count(name) == 0) {
        UsageError(absl::StrFormat("%s does not take --%s", spec.words, name));
      }
    }
    for (const std::string& name : cl_.switches) {
      if (spec.options.count(name) == 0) {
        UsageError(absl::StrFormat("%s does not take --%s", spec.words, name));
      }
    }
    return (this->*spec.run)(args);
  }
  for (std::string_view group : {"tenants", "keys", "backups"}) {
    if (w[0] != group) continue;
    UsageError(w.size() == 1 ? std::string(group) + " needs a subcommand"
                             : "unknown command " + w[0] + " " + w[1]);
  }
  UsageError("unknown command " + w[0]);
}

std::vector<std::string> Commands::ListPages() {
  std::vector<std::string> pages;
  std::string start_after;
  do {
    std::string path = "/admin/tenants?limit=1000";
    if (!start_after.empty()) path += "&start_after=" + internal::PercentEncode(start_after);
    pages.push_back(api_.Call("GET", path).body);
    simdjson::dom::element page = ParseJson(parser_, pages.back());
    start_after = Str(page, "next_start_after");
  } while (!start_after.empty());
  return pages;
}

// The pages as one list document: the page itself when there is one.
std::string MergePages(const std::vector<std::string>& pages) {
  if (pages.size() == 1) return pages[0];
  simdjson::dom::parser parser;
  std::string out = "{\"tenants\":[";
  bool first = true;
  double fraction = 0;
  for (const std::string& body : pages) {
    simdjson::dom::element page = ParseJson(parser, body);
    fraction = Num(page, "quota_warning_fraction");
    simdjson::dom::array tenants;
    if (page["tenants"].get(tenants) != simdjson::SUCCESS) continue;
    for (simdjson::dom::element t : tenants) {
      if (!first) out += ',';
      first = false;
      out += simdjson::minify(t);
    }
  }
  internal::JsonWriter w;
  w.Double(fraction);
  out += "],\"next_start_after\":null,\"quota_warning_fraction\":" + std::string(w.view()) + "}";
  return out;
}

// A key made by the server ({"key_id","api_key"}): its secret is shown once.
void PrintNewKey(simdjson::dom::element key) {
  std::cout << "key id   " << Str(key, "key_id") << "\n"
            << "api key  " << Str(key, "api_key") << "\n"
            << "The API key is shown this once: store it now.\n";
}

std::string QuotaText(double quota_mb) {
  if (quota_mb <= 0) return "none";
  return HumanBytes(static_cast<uint64_t>(quota_mb * 1048576.0));
}

std::string UsageText(uint64_t used, double quota_mb) {
  if (quota_mb <= 0) return "no quota";
  return UsageBar(static_cast<double>(used) / (quota_mb * 1048576.0));
}

int Commands::TenantsList(const Args&) {
  std::vector<std::string> pages = ListPages();
  if (cl_.json) {
    PrintJson(MergePages(pages));
    return 0;
  }
  Table table({"TENANT", "STATE", "PLACEMENT", "USED", "QUOTA", "KEYS", "API KEYS", "CREATED"});
  table.AlignRight(3).AlignRight(4).AlignRight(5).AlignRight(6);
  for (const std::string& body : pages) {
    simdjson::dom::array tenants;
    if (ParseJson(parser_, body)["tenants"].get(tenants) != simdjson::SUCCESS) continue;
    for (simdjson::dom::element t : tenants) {
      table.AddRow({Str(t, "tenant_id"), Str(t, "state"), Str(t, "placement"),
                    HumanBytes(Uint(t, "storage_used_bytes")), QuotaText(Num(t, "quota_mb")),
                    std::to_string(Uint(t, "keys")), std::to_string(Uint(t, "api_keys")),
                    HumanTime(Str(t, "created_at"))});
    }
  }
  std::cout << table.Render();
  return 0;
}

int Commands::TenantsGet(const Args& args) {
  const std::string& id = args[0];
  Reply r = api_.Call("GET", TenantPath(id));
  simdjson::dom::element t;
  if (!ForPeople(r, &t)) return 0;
  simdjson::dom::element spec = t["spec"];
  simdjson::dom::element quota = spec["quota"];
  simdjson::dom::element usage = t["usage"];
  simdjson::dom::element requests = t["requests"];
  const double quota_mb = Num(quota, "storage_mb");
  const uint64_t used = Uint(usage, "storage_used_bytes");
  Table facts({"", ""});
  facts.AddRow({"tenant", Str(t, "tenant_id")});
  facts.AddRow({"state", Str(t, "state")});
  facts.AddRow({"placement", Str(spec, "placement")});
  facts.AddRow({"storage", HumanBytes(used) + " of " + QuotaText(quota_mb) + "  " +
                               UsageText(used, quota_mb)});
  facts.AddRow({"keys", std::to_string(Uint(usage, "keys"))});
  facts.AddRow({"calls today", std::to_string(Uint(requests, "calls_today"))});
  facts.AddRow({"last active", HumanTime(Str(requests, "last_active"))});
  std::string quota_line;
  for (auto field : {"max_keys", "max_value_bytes", "requests_per_second", "burst",
                     "max_queued_jobs", "cache_mb"}) {
    if (!quota_line.empty()) quota_line += ", ";
    quota_line += std::string(field) + " " + HumanNumber(Num(quota, field));
  }
  facts.AddRow({"quota", quota_line});
  std::string labels;
  simdjson::dom::object label_object;
  if (spec["labels"].get(label_object) == simdjson::SUCCESS) {
    for (auto [name, value] : label_object) {
      std::string_view v;
      if (value.get(v) != simdjson::SUCCESS) continue;
      labels += (labels.empty() ? "" : ", ") + std::string(name) + "=" + std::string(v);
    }
  }
  facts.AddRow({"labels", labels.empty() ? "none" : labels});
  facts.AddRow({"created", HumanTime(Str(t, "created_at"))});
  facts.AddRow({"updated", HumanTime(Str(t, "updated_at"))});
  // The facts table has no header line.
  std::string text = facts.Render();
  std::cout << text.substr(text.find('\n') + 1);

  std::cout << "\nAPI keys\n";
  Table keys({"KEY ID", "PREFIX", "CREATED"});
  simdjson::dom::array key_array;
  if (t["keys"].get(key_array) == simdjson::SUCCESS) {
    for (simdjson::dom::element k : key_array) {
      keys.AddRow({Str(k, "key_id"), Str(k, "prefix"), HumanTime(Str(k, "created_at"))});
    }
  }
  std::cout << keys.Render();

  std::cout << "\nEffective limits\n";
  Table limits({"CLASS", "LIMIT"});
  limits.AlignRight(1);
  simdjson::dom::element effective = t["effective_limits"];
  simdjson::dom::object concurrency;
  if (effective["concurrency"].get(concurrency) == simdjson::SUCCESS) {
    for (auto [name, value] : concurrency) {
      int64_t n = 0;
      if (value.get(n) != simdjson::SUCCESS) continue;
      limits.AddRow({std::string(name), std::to_string(n)});
    }
  }
  const double rps = Num(effective, "requests_per_second");
  limits.AddRow({"requests per second", rps > 0 ? HumanNumber(rps) + " (burst " +
                                                      HumanNumber(Num(effective, "burst")) + ")"
                                                : "no limit"});
  std::cout << limits.Render();
  return 0;
}

int Commands::TenantsCreate(const Args& args) {
  const std::string& id = args[0];
  internal::JsonWriter w;
  w.BeginObject().Key("tenant_id").String(id);
  if (auto quota = Option("quota-mb"); quota.has_value()) {
    char* end = nullptr;
    const double mb = std::strtod(quota->c_str(), &end);
    if (quota->empty() || *end != '\0' || !(mb >= 0)) {
      UsageError("--quota-mb must be a number of MB, not \"" + *quota + "\"");
    }
    w.Key("quota_mb").Double(mb);
  }
  w.EndObject();
  Reply r = api_.Call("POST", "/admin/tenants", std::string(w.view()));
  simdjson::dom::element c;
  if (!ForPeople(r, &c)) return 0;
  std::cout << "created tenant " << Str(c, "tenant_id") << " (" << Str(c, "status") << ")\n";
  PrintNewKey(c);
  return 0;
}

int Commands::TenantsApply(const Args& args) {
  const std::string& id = args[0];
  const std::string& file = args[1];
  std::ifstream in(file, std::ios::binary);
  if (!in) Fail("cannot read " + file);
  std::string spec((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  Reply r = api_.Call("PUT", TenantPath(id), spec);
  simdjson::dom::element t;
  if (!ForPeople(r, &t)) return 0;
  std::cout << "applied " << file << " to tenant " << Str(t, "tenant_id") << " (" << Str(t, "state")
            << ")\n";
  return 0;
}

int Commands::TenantsState(const std::string& id, bool enable) {
  Reply r =
      enable ? api_.Call("POST", TenantPath(id, "/enable")) : api_.Call("DELETE", TenantPath(id));
  simdjson::dom::element s;
  if (!ForPeople(r, &s)) return 0;
  std::cout << "tenant " << Str(s, "tenant_id") << ": " << Str(s, "status") << "\n";
  return 0;
}

int Commands::TenantsPurge(const Args& args) {
  const std::string& id = args[0];
  const bool archive = cl_.switches.count("archive") != 0;
  std::string path = TenantPath(id, "/purge");
  if (archive) path += "?archive=true";
  Reply r = archive ? WithTicker("purge " + id, [&] { return api_.Send("POST", path); })
                    : api_.Call("POST", path);
  simdjson::dom::element s;
  if (!ForPeople(r, &s)) return 0;
  std::cout << "tenant " << id << ": purged";
  if (archive) std::cout << ", archived as " << Str(s, "archive");
  std::cout << "\n";
  return 0;
}

int Commands::KeysAdd(const Args& args) {
  const std::string& id = args[0];
  Reply r = api_.Call("POST", TenantPath(id, "/keys"));
  simdjson::dom::element k;
  if (!ForPeople(r, &k)) return 0;
  std::cout << "new API key for tenant " << id << "\n";
  PrintNewKey(k);
  return 0;
}

int Commands::KeysRevoke(const Args& args) {
  const std::string& id = args[0];
  const std::string& key_id = args[1];
  Reply r = api_.Call("DELETE", TenantPath(id, "/keys/" + internal::PercentEncode(key_id)));
  if (cl_.json) {
    PrintJson(r.body);  // 204: no body
    return 0;
  }
  std::cout << "revoked key " << key_id << " of tenant " << id << "\n";
  return 0;
}

int Commands::Stats(const Args& args) {
  const std::optional<std::string> id =
      args.empty() ? std::nullopt : std::optional<std::string>(args[0]);
  Table table({"TENANT", "STATE", "USED", "QUOTA", "USAGE", "KEYS", "CALLS TODAY", "LAST ACTIVE"});
  table.AlignRight(2).AlignRight(3).AlignRight(5).AlignRight(6);
  if (id.has_value()) {
    Reply r = api_.Call("GET", TenantPath(*id, "/stats"));
    if (cl_.json) {
      PrintJson(r.body);
      return 0;
    }
    // The stats have no state: the tenant's report has.
    const std::string state =
        Str(ParseJson(parser_, api_.Call("GET", TenantPath(*id)).body), "state");
    simdjson::dom::element s = ParseJson(parser_, r.body);
    const uint64_t used = Uint(s, "storage_used_bytes");
    const double quota_mb = Num(s, "quota_mb");
    table.AddRow({Str(s, "tenant_id"), state, HumanBytes(used), QuotaText(quota_mb),
                  UsageText(used, quota_mb), std::to_string(Uint(s, "keys")),
                  std::to_string(Uint(s, "api_calls_today")), HumanTime(Str(s, "last_active"))});
    std::cout << table.Render();
    return 0;
  }
  std::vector<std::string> pages = ListPages();
  if (cl_.json) {
    PrintJson(MergePages(pages));
    return 0;
  }
  for (const std::string& body : pages) {
    simdjson::dom::array tenants;
    if (ParseJson(parser_, body)["tenants"].get(tenants) != simdjson::SUCCESS) continue;
    for (simdjson::dom::element t : tenants) {
      const uint64_t used = Uint(t, "storage_used_bytes");
      const double quota_mb = Num(t, "quota_mb");
      table.AddRow({Str(t, "tenant_id"), Str(t, "state"), HumanBytes(used), QuotaText(quota_mb),
                    UsageText(used, quota_mb), std::to_string(Uint(t, "keys")),
                    std::to_string(Uint(t, "api_calls_today")), HumanTime(Str(t, "last_active"))});
    }
  }
  std::cout << table.Render();
  return 0;
}

// ---- top --------------------------------------------------------------------------

std::atomic<bool> g_interrupted{false};

void OnInterrupt(int) { g_interrupted.store(true); }

std::string P99Text(double seconds) {
  if (seconds < 0) return "-";
  if (seconds < 1) return absl::StrFormat("%.1f ms", seconds * 1000);
  return absl::StrFormat("%.2f s", seconds);
}

std::string RateText(double per_second) {
  if (per_second == 0) return "0";
  if (per_second < 10) return absl::StrFormat("%.1f", per_second);
  return absl::StrFormat("%.0f", per_second);
}

int Commands::Top(const Args&) {
  struct sigaction action = {};
  action.sa_handler = OnInterrupt;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto scrape = [&] { return ParseTenantCounts(api_.Call("GET", "/metrics").body); };
  // Sleeps until `until`, or returns false at once on Ctrl-C.
  auto wait = [](std::chrono::steady_clock::time_point until) {
    while (std::chrono::steady_clock::now() < until) {
      if (g_interrupted.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return !g_interrupted.load();
  };
  if (tty && !cl_.json) std::cout << "\x1b[?25l" << std::flush;  // hide the cursor
  auto before = scrape();
  auto then = std::chrono::steady_clock::now();
  auto next = then + std::chrono::seconds(1);
  while (wait(next)) {
    auto after = scrape();
    auto now = std::chrono::steady_clock::now();
    std::vector<TenantRates> rates =
        RatesBetween(before, after, std::chrono::duration<double>(now - then).count());
    before = std::move(after);
    then = now;
    next += std::chrono::seconds(1);
    if (cl_.json) {
      // One JSON line a second (the rates are tenancyctl's own: the API has
      // no such document).
      internal::JsonWriter w;
      w.BeginObject().Key("tenants").BeginArray();
      for (const TenantRates& r : rates) {
        w.BeginObject().Key("tenant_id").String(r.tenant);
        w.Key("requests_per_second").Double(r.requests_per_second);
        w.Key("rejected_429_per_second").Double(r.rejected_429_per_second);
        w.Key("rejected_507_per_second").Double(r.rejected_507_per_second);
        w.Key("p99_seconds");
        if (r.p99 < 0) {
          w.Null();
        } else {
          w.Double(r.p99);
        }
        w.EndObject();
      }
      w.EndArray().EndObject();
      std::cout << w.view() << "\n" << std::flush;
      continue;
    }
    size_t max_rows = rates.size();
    if (tty) {
      winsize ws{};
      if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 4) {
        max_rows = std::min<size_t>(max_rows, ws.ws_row - 4);
      }
    }
    Table table({"TENANT", "REQ/S", "429/S", "507/S", "P99"});
    table.AlignRight(1).AlignRight(2).AlignRight(3).AlignRight(4);
    for (size_t i = 0; i < max_rows; ++i) {
      const TenantRates& r = rates[i];
      table.AddRow({r.tenant, RateText(r.requests_per_second), RateText(r.rejected_429_per_second),
                    RateText(r.rejected_507_per_second), P99Text(r.p99)});
    }
    const std::time_t wall = std::time(nullptr);
    char clock[16];
    std::strftime(clock, sizeof(clock), "%H:%M:%S", std::localtime(&wall));
    std::string screen = absl::StrFormat("tenancyctl top  %s  %s  %d tenants  (Ctrl-C quits)\n\n",
                                         api_.url(), clock, rates.size());
    screen += table.Render();
    if (tty) {
      std::cout << "\x1b[H\x1b[2J" << screen << std::flush;
    } else {
      std::cout << screen << "\n" << std::flush;
    }
  }
  if (tty && !cl_.json) std::cout << "\x1b[?25h" << std::flush;  // the cursor again
  return 0;
}

// ---- export, import, backups ----------------------------------------------------------

bool ShowProgress() { return ::isatty(STDOUT_FILENO) == 1; }

std::string RateOf(uint64_t bytes, double seconds) {
  return HumanBytes(static_cast<uint64_t>(static_cast<double>(bytes) / std::max(seconds, 1e-3))) +
         "/s";
}

int Commands::Export(const Args& args) {
  const std::string& id = args[0];
  std::optional<std::string> file = Option("o");
  if (!file.has_value() || file->empty()) UsageError("export needs -o FILE");
  const bool to_stdout = *file == "-";
  // Written beside the target and renamed over it once complete, so that a
  // failed export leaves no partial archive under the name asked for.
  const std::string partial = *file + ".partial";
  FILE* out = to_stdout ? stdout : std::fopen(partial.c_str(), "wb");
  if (out == nullptr) Fail("cannot write " + partial + ": " + std::strerror(errno));
  Progress progress("export " + id, 0, ShowProgress() && !to_stdout);
  int status = 0;
  uint64_t bytes = 0;
  std::string error_body;
  bool write_failed = false;
  httplib::Result r = api_.client().Get(
      TenantPath(id, "/export"), api_.Headers(),
      [&](const httplib::Response& res) {
        status = res.status;
        return true;
      },
      [&](const char* data, size_t n) {
        if (status != 200) {
          if (error_body.size() < (64 << 10)) error_body.append(data, n);
          return true;
        }
        if (std::fwrite(data, 1, n, out) != n) {
          write_failed = true;
          return false;
        }
        bytes += n;
        progress.Update(bytes);
        return true;
      });
  progress.Finish();
  const bool closed = to_stdout ? std::fflush(out) == 0 : std::fclose(out) == 0;
  auto discard = [&] {
    if (!to_stdout) std::filesystem::remove(partial);
  };
  if (write_failed || !closed) {
    discard();
    Fail("cannot write " + (to_stdout ? std::string("stdout") : partial) + ": " +
         std::strerror(errno));
  }
  if (!r) {
    discard();
    api_.Unreachable(r.error());
  }
  if (r->status != 200) {
    discard();
    AdminApi::FailWith({r->status, error_body});
  }
  if (!to_stdout) {
    std::error_code ec;
    std::filesystem::rename(partial, *file, ec);
    if (ec) Fail("cannot rename " + partial + " to " + *file + ": " + ec.message());
  }
  const double secs = progress.seconds();
  if (cl_.json) {
    internal::JsonWriter w;
    w.BeginObject().Key("tenant_id").String(id).Key("file").String(*file).Key("bytes").Uint(bytes);
    w.EndObject();
    if (!to_stdout) PrintJson(std::string(w.view()));
  } else if (!to_stdout) {
    std::cout << "exported tenant " << id << " to " << *file << ": " << HumanBytes(bytes) << " in "
              << absl::StrFormat("%.1f s", secs) << " (" << RateOf(bytes, secs) << ")\n";
  }
  return 0;
}

int Commands::Import(const Args& args) {
  const std::string& file = args[0];
  auto source = FileArchiveSource::Open(file);
  if (!source.ok()) Fail(std::string(source.status().message()));
  std::string id;
  if (auto as = Option("as"); as.has_value()) {
    id = *as;
  } else {
    // The archive's own tenant (a move or a restore).
    auto header = ReadArchiveHeader(**source);
    if (!header.ok()) Fail(file + ": " + std::string(header.status().message()));
    id = header->tenant_id;
  }
  source->reset();
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(file, ec);
  if (ec) Fail("cannot read " + file + ": " + ec.message());
  std::ifstream in(file, std::ios::binary);
  if (!in) Fail("cannot read " + file);
  const bool replace = cl_.switches.count("replace") != 0;
  const std::string path = TenantPath(id, "/import") + (replace ? "?mode=replace" : "?mode=create");
  Progress progress("import " + id, size, ShowProgress());
  std::vector<char> buffer(256 << 10);
  bool read_failed = false;
  httplib::Result r = api_.client().Post(
      path, api_.Headers(), size,
      [&](size_t offset, size_t length, httplib::DataSink& sink) {
        const size_t n = std::min(length, buffer.size());
        in.seekg(static_cast<std::streamoff>(offset));
        in.read(buffer.data(), static_cast<std::streamsize>(n));
        if (static_cast<size_t>(in.gcount()) != n) {
          read_failed = true;
          return false;
        }
        sink.write(buffer.data(), n);
        progress.Update(offset + n);
        return true;
      },
      "application/octet-stream");
  progress.Finish();
  if (read_failed) Fail("cannot read " + file + " (did it change while it was sent?)");
  Reply reply = api_.Check(r);
  simdjson::dom::element s;
  if (!ForPeople(reply, &s)) return 0;
  const double secs = progress.seconds();
  std::cout << "imported " << file << " as tenant " << Str(s, "tenant_id") << " ("
            << (replace ? "replaced" : "created") << "): " << Uint(s, "keys") << " keys, "
            << HumanBytes(Uint(s, "bytes")) << ", " << Uint(s, "jobs") << " jobs; sent "
            << HumanBytes(size) << " in " << absl::StrFormat("%.1f s", secs) << " ("
            << RateOf(size, secs) << ")\n";
  if (std::string key = Str(s, "api_key"); !key.empty()) {
    std::cout << "new api key  " << key << "  (shown this once: store it now)\n";
  }
  return 0;
}

Reply Commands::WithTicker(const std::string& label,
                           const std::function<httplib::Result()>& request) {
  if (!ShowProgress()) return api_.Check(request());
  Progress progress(label, 0, true);
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  std::thread ticker([&] {
    std::unique_lock<std::mutex> lock(mu);
    while (!done) {
      progress.Update(0);
      cv.wait_for(lock, std::chrono::milliseconds(100));
    }
  });
  httplib::Result result = request();
  {
    std::lock_guard<std::mutex> lock(mu);
    done = true;
  }
  cv.notify_all();
  ticker.join();
  progress.Finish();
  // Checked once the ticker is gone: an error exits the process.
  return api_.Check(result);
}

int Commands::BackupsCreate(const Args&) {
  Reply r = WithTicker("backup", [&] { return api_.Send("POST", "/admin/backups"); });
  simdjson::dom::element b;
  if (!ForPeople(r, &b)) return 0;
  std::cout << "created backup " << Uint(b, "backup_id") << " at "
            << HumanTime(Str(b, "created_at")) << ": " << HumanBytes(Uint(b, "size_bytes")) << "\n";
  return 0;
}

int Commands::BackupsList(const Args&) {
  Reply r = api_.Call("GET", "/admin/backups");
  if (cl_.json) {
    PrintJson(r.body);
    return 0;
  }
  Table table({"BACKUP ID", "CREATED", "SIZE", "FILES"});
  table.AlignRight(0).AlignRight(2).AlignRight(3);
  simdjson::dom::array backups;
  if (ParseJson(parser_, r.body)["backups"].get(backups) == simdjson::SUCCESS) {
    for (simdjson::dom::element b : backups) {
      table.AddRow({std::to_string(Uint(b, "backup_id")), HumanTime(Str(b, "created_at")),
                    HumanBytes(Uint(b, "size_bytes")), std::to_string(Uint(b, "files"))});
    }
  }
  std::cout << table.Render();
  return 0;
}

int Commands::BackupsDelete(const Args& args) {
  const std::string& backup_id = args[0];
  Reply r = api_.Call("DELETE", "/admin/backups/" + internal::PercentEncode(backup_id));
  if (cl_.json) {
    PrintJson(r.body);  // 204: no body
    return 0;
  }
  std::cout << "deleted backup " << backup_id << "\n";
  return 0;
}

int Commands::BackupsRestore(const Args& args) {
  const std::string& id = args[0];
  std::optional<std::string> backup = Option("backup");
  if (!backup.has_value()) UsageError("backups restore needs --backup BACKUP_ID");
  uint64_t backup_id = 0;
  bool digits = !backup->empty() && backup->size() <= 19;
  for (char c : *backup) {
    digits = digits && c >= '0' && c <= '9';
    if (digits) backup_id = backup_id * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!digits) UsageError("--backup must be a backup id (a number), not \"" + *backup + "\"");
  internal::JsonWriter w;
  w.BeginObject().Key("backup_id").Uint(backup_id).EndObject();
  const std::string body(w.view());
  Reply r = WithTicker("restore " + id,
                       [&] { return api_.Send("POST", TenantPath(id, "/restore"), body); });
  simdjson::dom::element s;
  if (!ForPeople(r, &s)) return 0;
  std::cout << "restored tenant " << Str(s, "tenant_id") << " from backup " << backup_id << ": "
            << Uint(s, "keys") << " keys, " << HumanBytes(Uint(s, "bytes")) << ", "
            << Uint(s, "jobs") << " jobs\n";
  return 0;
}

}  // namespace
}  // namespace tenancy::ctl

int main(int argc, char** argv) {
  // cpp-httplib writes without MSG_NOSIGNAL: a server that answers an upload
  // early (401, 413) and closes would end this process by SIGPIPE before it
  // could print the answer. The write fails with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  tenancy::ctl::CommandLine cl = tenancy::ctl::ParseCommandLine(argc, argv);
  tenancy::ctl::Commands commands(std::move(cl));
  return commands.Run();
}
