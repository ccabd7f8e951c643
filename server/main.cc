// tenancyd: the multi-tenant key-value, cache and jobs server over the
// tenancy library (server/README.md is its reference).
//
//   tenancyd --data-dir DIR [--listen HOST:PORT] [--config FILE] ...
//            [--cluster-etcd URL --node-id ID --advertise URL]
//
// Prints "tenancyd listening on HOST:PORT" once it accepts connections.
// SIGTERM / SIGINT: stop accepting, finish requests in flight, flush, exit 0.
// SIGHUP: re-read and apply the tenants file (--config) at once.
//
// Flags are Abseil flags, spelled on the command line with dashes
// (--data-dir for the flag data_dir). tenancyd walks argv itself rather than
// calling absl::ParseCommandLine, which knows only the underscore spelling
// and exits 1 on an unknown flag or a bad value, where tenancyd has always
// exited 2: each argument is resolved with absl::FindCommandLineFlag and
// parsed with CommandLineFlag::ParseFrom, so every value is checked by its
// flag's type. --help and --version print to stdout and exit 0; a usage
// error prints one line naming the flag (and, for an unknown one, the
// usage) to stderr and exits 2.

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "admin_key.h"
#include "cluster_directory.h"
#include "http_server.h"
#include "http_transport.h"
#include "tenancy/config_file.h"
#include "tenancy/engine.h"
#include "tenant_mover.h"

// Flag value types. Abseil finds AbslParseFlag / AbslUnparseFlag by
// argument-dependent lookup, so each lives in its type's namespace.
namespace tenancy {

bool AbslParseFlag(absl::string_view text, AuthMode* mode, std::string* error) {
  if (text == "api-key") {
    *mode = AuthMode::kApiKey;
  } else if (text == "trusted") {
    *mode = AuthMode::kTrusted;
  } else {
    *error = "must be api-key or trusted";
    return false;
  }
  return true;
}

std::string AbslUnparseFlag(AuthMode mode) {
  return mode == AuthMode::kTrusted ? "trusted" : "api-key";
}

}  // namespace tenancy

namespace {

// --listen: HOST:PORT, the host possibly in brackets ([::1]:8080).
struct ListenAddress {
  std::string host;
  int port = 0;
};

bool AbslParseFlag(absl::string_view text, ListenAddress* out, std::string* error) {
  *error = "wants HOST:PORT with PORT in [0, 65535]";
  const size_t colon = text.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = text.substr(0, colon);
  const absl::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (port.empty() || port.size() > 5) return false;
  int value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > 65535) return false;
  out->host = std::string(host);
  out->port = value;
  return true;
}

std::string AbslUnparseFlag(const ListenAddress& a) {
  const bool v6 = a.host.find(':') != std::string::npos;
  return absl::StrCat(v6 ? "[" : "", a.host, v6 ? "]" : "", ":", a.port);
}

// A whole number in [kMin, kMax]; the bounds are part of the flag's type, so
// a value outside them is refused as it is parsed, with the range named.
template <int64_t kMin, int64_t kMax>
struct Count {
  int64_t value = kMin;
};

template <int64_t kMin, int64_t kMax>
bool AbslParseFlag(absl::string_view text, Count<kMin, kMax>* out, std::string* error) {
  int64_t value = 0;
  // Digits only: SimpleAtoi alone would take "+8" and " 8".
  const bool digits = !text.empty() && std::all_of(text.begin(), text.end(),
                                                   [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || !absl::SimpleAtoi(text, &value) || value < kMin || value > kMax) {
    *error = absl::StrCat("must be a whole number in [", kMin, ", ", kMax, "]");
    return false;
  }
  out->value = value;
  return true;
}

template <int64_t kMin, int64_t kMax>
std::string AbslUnparseFlag(const Count<kMin, kMax>& count) {
  return absl::StrCat(count.value);
}

using ThreadCount = Count<1, 1024>;
using ConnectionCount = Count<1, int64_t{1} << 20>;

// --tenant-header NAME, repeatable. Abseil keeps only the last occurrence of
// a flag, so each occurrence's parse appends to the names parsed before it
// (flags are parsed once, on the main thread, before anything else runs).
struct TenantHeaders {
  std::vector<std::string> names;
};

bool AbslParseFlag(absl::string_view text, TenantHeaders* out, std::string* error) {
  static std::vector<std::string> given;
  if (!tenancy::internal::IsHttpFieldName(std::string_view(text.data(), text.size()))) {
    *error = "wants an HTTP header name, such as X-SS-Tenant-ID";
    return false;
  }
  given.emplace_back(text);
  out->names = given;
  return true;
}

std::string AbslUnparseFlag(const TenantHeaders& headers) {
  return absl::StrJoin(headers.names, ",");
}

}  // namespace

// The defaults are ServerOptions' own, so that the flags and the library say
// the same. A back-quoted word in a help text names the flag's value in
// --help (as Go's flag package does).
ABSL_FLAG(std::string, data_dir, "", "the RocksDB directory `DIR` (required); created if missing");
ABSL_FLAG(ListenAddress, listen,
          (ListenAddress{tenancy::ServerOptions().host, tenancy::ServerOptions().port}),
          "the `HOST:PORT` to listen on; port 0 picks a free port");
ABSL_FLAG(std::string, backup_dir, "",
          "the directory `DIR` of backups and of archives of purged tenants; "
          "default: the data directory's path + \".backups\"");
ABSL_FLAG(std::string, config, "",
          "the tenants file `FILE` (tenants, keys, limits): applied at start, "
          "re-applied when it changes and on SIGHUP");
ABSL_FLAG(std::string, adopt_existing_data, "",
          "move the keys of a plain RocksDB directory (its default column "
          "family) into tenant `ID` at start, creating it if absent; resumes "
          "after a crash and does nothing once done");
ABSL_FLAG(std::string, admin_key_file, "",
          "a `FILE` holding the admin key (else the environment variable "
          "TENANCY_ADMIN_KEY); with neither, every admin route answers 403");
ABSL_FLAG(tenancy::AuthMode, auth, tenancy::ServerOptions().auth,
          "how a tenant request finds its tenant, `api-key|trusted`: with "
          "api-key, by its Bearer API key; with trusted (behind a gateway that "
          "authenticates), by /t/{id}/, X-Tenant-ID, the Host (--host-suffix) "
          "or --default-tenant");
ABSL_FLAG(ThreadCount, threads, ThreadCount{tenancy::ServerOptions().threads},
          "the number `N` of worker threads that run requests; the per-tenant "
          "limit classes follow it");
ABSL_FLAG(std::string, default_tenant, tenancy::ServerOptions().default_tenant,
          "trusted mode: the tenant `ID` of requests that name none");
ABSL_FLAG(TenantHeaders, tenant_header, TenantHeaders{tenancy::ServerOptions().tenant_headers},
          "the header `NAME` that names the tenant (trusted mode; in api-key "
          "mode one naming another tenant than the key's is 403); repeatable, "
          "and two naming different tenants is 400");
ABSL_FLAG(std::string, host_suffix, "",
          "trusted mode: with a `SUFFIX`, Host ID.SUFFIX is tenant ID and Host "
          "SUFFIX the default tenant; any other Host is 400");
ABSL_FLAG(bool, metrics_public, tenancy::ServerOptions().metrics_public,
          "serve GET /metrics without the admin key");
ABSL_FLAG(std::string, cluster_etcd, "",
          "join the cluster whose registry is in the etcd at `URL` (http://HOST:PORT); "
          "needs --node-id and --advertise");
ABSL_FLAG(std::string, node_id, "",
          "cluster mode: this node's `ID`, a DNS label unique in the cluster");
ABSL_FLAG(std::string, advertise, "",
          "cluster mode: the `URL` (http://HOST:PORT) the other nodes reach this one at");
ABSL_FLAG(ConnectionCount, max_connections,
          ConnectionCount{static_cast<int64_t>(tenancy::ServerOptions().transport.max_connections)},
          "at most `N` open connections in all; at the cap the oldest idle one "
          "is closed first, else a new one is refused (503)");
ABSL_FLAG(ConnectionCount, max_connections_per_peer,
          ConnectionCount{
              static_cast<int64_t>(tenancy::ServerOptions().transport.max_connections_per_peer)},
          "at most `N` open connections per client address; at the cap that "
          "address's oldest idle one is closed first, else a new one is "
          "refused (503)");

namespace {

constexpr char kProgram[] = "tenancyd";

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << kProgram << ": " << message << "\n";
  std::exit(2);
}

// --data-dir for the flag data_dir.
std::string CommandLineName(absl::string_view flag_name) {
  std::string name(flag_name);
  std::replace(name.begin(), name.end(), '_', '-');
  return "--" + name;
}

// tenancyd's own flags (those defined in this file, not any a library may
// register), sorted by name.
std::vector<absl::CommandLineFlag*> OwnFlags() {
  const std::string file = absl::FindCommandLineFlag("data_dir")->Filename();
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->Filename() == file) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  return flags;
}

// The flag of a command-line name ("data-dir"), or nullptr if tenancyd has
// none. The underscore spelling is not one of them.
absl::CommandLineFlag* FindOwnFlag(absl::string_view name) {
  if (name.empty() || name.find('_') != absl::string_view::npos) return nullptr;
  std::string flag_name(name);
  std::replace(flag_name.begin(), flag_name.end(), '-', '_');
  for (absl::CommandLineFlag* flag : OwnFlags()) {
    if (flag->Name() == flag_name) return flag;
  }
  return nullptr;
}

// The back-quoted value name of a help text ("DIR"), or one from its type.
std::string ValueName(const absl::CommandLineFlag& flag) {
  const std::string help = flag.Help();
  const size_t open = help.find('`');
  const size_t close = open == std::string::npos ? std::string::npos : help.find('`', open + 1);
  if (close != std::string::npos) return help.substr(open + 1, close - open - 1);
  return flag.IsOfType<bool>() ? "" : "VALUE";
}

// `--data-dir DIR`, `--metrics-public`.
std::string Synopsis(const absl::CommandLineFlag& flag) {
  std::string value = ValueName(flag);
  return CommandLineName(flag.Name()) + (value.empty() ? "" : " " + value);
}

// Words of `text` wrapped at 78 columns, each line indented by `indent`.
std::string Wrap(std::string_view text, size_t indent) {
  std::string out;
  std::string line(indent, ' ');
  std::istringstream words{std::string(text)};
  std::string word;
  while (words >> word) {
    if (line.size() > indent && line.size() + 1 + word.size() > 78) {
      out += line + "\n";
      line.assign(indent, ' ');
    }
    if (line.size() > indent) line += ' ';
    line += word;
  }
  if (line.size() > indent) out += line + "\n";
  return out;
}

// "usage: tenancyd --data-dir DIR [--admin-key-file FILE] ...", wrapped.
std::string UsageLines() {
  std::vector<std::string> pieces = {"usage: tenancyd --data-dir DIR"};
  for (const absl::CommandLineFlag* flag : OwnFlags()) {
    if (flag->Name() != "data_dir") pieces.push_back("[" + Synopsis(*flag) + "]");
  }
  std::string out;
  std::string line;
  for (const std::string& piece : pieces) {
    if (!line.empty() && line.size() + 1 + piece.size() > 78) {
      out += line + "\n";
      line.assign(15, ' ');  // under the flags, after "usage: tenancyd"
    }
    if (!line.empty()) line += ' ';
    line += piece;
  }
  return out + line + "\n";
}

// What a usage error prints after its one line.
std::string Usage() { return UsageLines() + "Run \"tenancyd --help\" for what each flag does.\n"; }

// --help: every flag, what it does and its default.
std::string Help() {
  std::string out = UsageLines() + "\n";
  out += Wrap(
      "tenancyd serves the tenancy library over HTTP: a key-value store, a "
      "cache and job queues per tenant, with API keys, quotas, limits and "
      "Prometheus metrics. Its reference (routes, errors, the tenants file, "
      "metrics, limits) is server/README.md in the source tree.",
      0);
  out += "\nFlags:\n";
  for (const absl::CommandLineFlag* flag : OwnFlags()) {
    std::string help = flag->Help();
    help.erase(std::remove(help.begin(), help.end(), '`'), help.end());
    std::string value = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) {
      value = value.empty() ? "none" : "\"" + value + "\"";
    }
    out += "  " + Synopsis(*flag) + "\n" + Wrap(help, 6) + "      default: " + value + "\n";
  }
  out += "  --help\n" + Wrap("print this help and exit", 6);
  out += "  --version\n" + Wrap("print the version and exit", 6);
  out += "\n" + Wrap(
                    "Signals: SIGTERM and SIGINT stop accepting, finish the "
                    "requests in flight, flush and exit 0; SIGHUP re-applies "
                    "the tenants file.",
                    0);
  return out;
}

// Reads argv into the flags. Exits 0 after --help or --version, 2 on a usage
// error.
void ParseFlags(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::cout << Help();
      std::exit(0);
    }
    if (arg == "--version") {
      std::cout << kProgram << " " << TENANCY_VERSION_STRING << "\n";
      std::exit(0);
    }
    if (arg.substr(0, 2) != "--" || arg == "--") {
      std::cerr << kProgram << ": unexpected argument \"" << arg << "\"\n" << Usage();
      std::exit(2);
    }
    const size_t eq = arg.find('=');
    const std::string_view name = arg.substr(2, eq == arg.npos ? arg.npos : eq - 2);
    absl::CommandLineFlag* flag = FindOwnFlag(absl::string_view(name.data(), name.size()));
    if (flag == nullptr) {
      std::cerr << kProgram << ": unknown flag --" << name << "\n" << Usage();
      std::exit(2);
    }
    const std::string shown = CommandLineName(flag->Name());
    std::string value;
    if (eq != arg.npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (flag->IsOfType<bool>()) {
      value = "true";
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      Fail(shown + " needs a value");
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      // Abseil's message names the flag by its C++ name; its reason (after
      // "; ", from the flag's type) is what tenancyd shows.
      const size_t at = error.find("; ");
      std::string reason = at == std::string::npos ? "" : error.substr(at + 2);
      if (reason.empty() && flag->IsOfType<bool>()) reason = "must be true or false";
      Fail(shown + ": bad value \"" + value + "\"" + (reason.empty() ? "" : ": " + reason));
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  // Abseil's mutex deadlock detector (on in Debian's build) takes a global
  // lock around every lock operation to maintain its graph: a debugging aid
  // the tests keep, not something a server pays for on every request.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ParseFlags(argc, argv);
  const std::string data_dir = absl::GetFlag(FLAGS_data_dir);
  if (data_dir.empty()) {
    std::cerr << kProgram << ": --data-dir is required\n" << Usage();
    return 2;
  }
  tenancy::ServerOptions options;
  const ListenAddress listen = absl::GetFlag(FLAGS_listen);
  options.host = listen.host;
  options.port = listen.port;
  options.auth = absl::GetFlag(FLAGS_auth);
  options.threads = static_cast<int>(absl::GetFlag(FLAGS_threads).value);
  options.default_tenant = absl::GetFlag(FLAGS_default_tenant);
  options.host_suffix = absl::GetFlag(FLAGS_host_suffix);
  options.tenant_headers = absl::GetFlag(FLAGS_tenant_header).names;
  options.metrics_public = absl::GetFlag(FLAGS_metrics_public);
  options.transport.max_connections =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_connections).value);
  options.transport.max_connections_per_peer =
      static_cast<size_t>(absl::GetFlag(FLAGS_max_connections_per_peer).value);
  const std::string config_path = absl::GetFlag(FLAGS_config);
  // Cluster mode: the three flags go together, and the registry is etcd's
  // (a tenants file or a trusted-mode default tenant would be a second one).
  tenancy::internal::ClusterOptions cluster_options;
  cluster_options.etcd_url = absl::GetFlag(FLAGS_cluster_etcd);
  cluster_options.node_id = absl::GetFlag(FLAGS_node_id);
  cluster_options.advertise_url = absl::GetFlag(FLAGS_advertise);
  const bool cluster_mode = !cluster_options.etcd_url.empty();
  if (cluster_mode) {
    if (cluster_options.node_id.empty() || cluster_options.advertise_url.empty()) {
      Fail("--cluster-etcd needs --node-id and --advertise");
    }
    if (auto url = tenancy::internal::ParseHttpUrl(cluster_options.etcd_url); !url.ok()) {
      Fail("--cluster-etcd: " + std::string(url.status().message()));
    }
    if (auto url = tenancy::internal::ParseHttpUrl(cluster_options.advertise_url); !url.ok()) {
      Fail("--advertise: " + std::string(url.status().message()));
    }
    if (!tenancy::ValidateTenantId(cluster_options.node_id).ok()) {
      Fail("--node-id: bad value \"" + cluster_options.node_id +
           "\": a DNS label (1 to 63 of [a-z0-9-], not starting or ending with '-')");
    }
    if (!config_path.empty()) Fail("--config cannot be used with --cluster-etcd");
    if (options.auth != tenancy::AuthMode::kApiKey) {
      Fail("--auth trusted cannot be used with --cluster-etcd");
    }
  } else if (!cluster_options.node_id.empty() || !cluster_options.advertise_url.empty()) {
    Fail("--node-id and --advertise need --cluster-etcd");
  }
  if (const std::string file = absl::GetFlag(FLAGS_admin_key_file); !file.empty()) {
    auto key = tenancy::internal::ReadAdminKeyFile(file);
    if (!key.ok()) Fail(std::string(key.status().message()));
    options.admin_key = *std::move(key);
  } else if (const char* env = std::getenv("TENANCY_ADMIN_KEY"); env != nullptr) {
    options.admin_key = env;
  }

  // Signals are taken by sigwait() below, so every thread (RocksDB's and the
  // server's, created after this) must have them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  tenancy::EngineOptions engine_options;
  engine_options.path = data_dir;
  engine_options.backup_dir = absl::GetFlag(FLAGS_backup_dir);
  engine_options.adopt_existing_data = absl::GetFlag(FLAGS_adopt_existing_data);
  auto engine = tenancy::Engine::Open(engine_options);
  if (!engine.ok()) {
    std::cerr << "tenancyd: open " << data_dir << ": " << engine.status() << "\n";
    return 1;
  }
  // The tenants file is applied before the server accepts anything, so its
  // tenants and keys work from the first request; a file that is refused at
  // start stops tenancyd (the reason is in the log).
  std::unique_ptr<tenancy::ConfigFile> config;
  if (!config_path.empty()) {
    tenancy::ConfigFileOptions config_options;
    config_options.path = config_path;
    auto opened = tenancy::ConfigFile::Open(engine->get(), config_options);
    if (!opened.ok()) {
      std::cerr << "tenancyd: --config " << config_path << ": " << opened.status() << "\n";
      return 1;
    }
    config = *std::move(opened);
  }
  // Joined before the server starts, so that the first request sees the
  // cluster's registry applied here.
  std::unique_ptr<tenancy::internal::ClusterDirectory> cluster;
  std::unique_ptr<tenancy::internal::TenantMover> mover;
  if (cluster_mode) {
    auto joined = tenancy::internal::ClusterDirectory::Join(engine->get(), cluster_options);
    if (!joined.ok()) {
      std::cerr << "tenancyd: --cluster-etcd " << cluster_options.etcd_url << ": "
                << joined.status() << "\n";
      return 1;
    }
    cluster = *std::move(joined);
    options.cluster = cluster.get();
    // Archives on their way to another node are written beside the backups.
    mover = std::make_unique<tenancy::internal::TenantMover>(
        engine->get(), cluster.get(), (*engine)->lifecycle().backup_dir() + "/moves");
    // A move a crash stopped after its switch left a copy here.
    mover->ClearStaleCopies();
    options.mover = mover.get();
  }
  auto server = tenancy::HttpServer::Start(options, engine->get());
  if (!server.ok()) {
    std::cerr << "tenancyd: " << server.status() << "\n";
    return 1;
  }
  tenancy::CollectorHandle config_metrics;
  if (config != nullptr) {
    config_metrics = (*server)->metrics().AddCollector(
        [file = config.get()](tenancy::MetricSink& sink) { file->CollectMetrics(sink); });
  }
  tenancy::CollectorHandle cluster_metrics;
  if (cluster != nullptr) {
    cluster_metrics = (*server)->metrics().AddCollector(
        [node = cluster.get()](tenancy::MetricSink& sink) { node->CollectMetrics(sink); });
  }
  const std::string& host = (*server)->host();
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::cout << "tenancyd listening on " << shown << ":" << (*server)->port() << std::endl;

  int signal_number = 0;
  while (true) {
    if (sigwait(&signals, &signal_number) != 0) continue;
    if (signal_number != SIGHUP) break;
    if (config == nullptr) {
      (*engine)->logger().Log(tenancy::LogLevel::kWarning,
                              "tenancyd: SIGHUP: no --config to reload");
      continue;
    }
    (*engine)->logger().Log(tenancy::LogLevel::kInfo,
                            "tenancyd: SIGHUP: reloading the tenants file");
    config->Reload().IgnoreError();  // logged, counted; the last good one stays
  }
  (*engine)->logger().Log(tenancy::LogLevel::kInfo,
                          std::string("tenancyd: ") + strsignal(signal_number) + ": draining");
  // A move waiting on etcd gives up first, or the drain would wait for it.
  if (mover != nullptr) mover->Stop();
  (*server)->Shutdown();
  config_metrics.Remove();
  cluster_metrics.Remove();
  server->reset();
  mover.reset();
  cluster.reset();  // leaves the cluster: the other nodes see it at once
  config.reset();
  absl::Status flushed = (*engine)->Flush();
  if (!flushed.ok()) {
    std::cerr << "tenancyd: flush: " << flushed << "\n";
    return 1;
  }
  engine->reset();
  return 0;
}
