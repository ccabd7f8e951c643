// tenancyd: the multi-tenant key-value server (API.md is its contract).
//
//   tenancyd --data-dir DIR [--listen HOST:PORT] [--config FILE]
//            [--admin-key-file FILE] [--auth api-key|trusted] [--threads N]
//            [--default-tenant ID] [--host-suffix SUFFIX] [--metrics-public]
//            [--max-connections N] [--max-connections-per-peer N]
//
// Prints "tenancyd listening on HOST:PORT" once it accepts connections.
// SIGTERM / SIGINT: stop accepting, finish requests in flight, flush, exit 0.
// SIGHUP: re-read and apply the tenants file (--config) at once.

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/synchronization/mutex.h"
#include "http_server.h"
#include "tenancy/config_file.h"
#include "tenancy/engine.h"

namespace {

constexpr char kUsage[] =
    "usage: tenancyd --data-dir DIR [--listen HOST:PORT] [--config FILE]\n"
    "                [--admin-key-file FILE] [--auth api-key|trusted] [--threads N]\n"
    "                [--default-tenant ID] [--host-suffix SUFFIX] [--metrics-public]\n"
    "                [--max-connections N] [--max-connections-per-peer N]\n"
    "\n"
    "  --data-dir DIR         RocksDB directory; created if missing\n"
    "  --listen HOST:PORT     default 127.0.0.1:8080; port 0 picks a free port\n"
    "  --config FILE          tenants file (tenants, keys, limits); applied at\n"
    "                         start, re-applied when it changes and on SIGHUP\n"
    "  --admin-key-file FILE  the admin key (or env TENANCY_ADMIN_KEY); without\n"
    "                         one, every admin route answers 403\n"
    "  --auth MODE            api-key (default): the Bearer key picks the tenant;\n"
    "                         trusted: /t/{id}/, X-Tenant-ID, Host or default\n"
    "  --threads N            HTTP worker threads (default 8)\n"
    "  --default-tenant ID    trusted mode: tenant of requests naming none\n"
    "  --host-suffix SUFFIX   trusted mode: Host acme.SUFFIX is tenant acme\n"
    "  --metrics-public       serve GET /metrics without the admin key\n"
    "  --max-connections N    open connections in all (default 1024)\n"
    "  --max-connections-per-peer N\n"
    "                         open connections per client address (default 64);\n"
    "                         at either cap the oldest idle one is closed first\n";

[[noreturn]] void Fail(const std::string& message) {
  std::cerr << "tenancyd: " << message << "\n";
  std::exit(2);
}

// A whole number in [min, max], or Fail naming the flag.
long ParseCount(std::string_view flag, const std::string& text, long min, long max) {
  char* end = nullptr;
  errno = 0;
  long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || end == text.c_str() || *end != '\0' || errno != 0 || value < min ||
      value > max) {
    Fail(std::string(flag) + " must be a whole number in [" + std::to_string(min) + ", " +
         std::to_string(max) + "]");
  }
  return value;
}

bool ParseHostPort(std::string_view text, std::string* host, int* port) {
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return false;
  std::string_view h = text.substr(0, colon);
  std::string_view p = text.substr(colon + 1);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') {
    h = h.substr(1, h.size() - 2);
  }
  if (p.empty() || p.size() > 5) return false;
  int value = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + (c - '0');
  }
  if (value > 65535) return false;
  *host = std::string(h);
  *port = value;
  return true;
}

std::string ReadAdminKeyFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Fail("cannot read --admin-key-file " + path + ": " + std::strerror(errno));
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string key = buffer.str();
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r' ||
                          key.back() == ' ' || key.back() == '\t')) {
    key.pop_back();
  }
  if (key.empty()) Fail("--admin-key-file " + path + " is empty");
  return key;
}

}  // namespace

int main(int argc, char** argv) {
  // Abseil's mutex deadlock detector (on in Debian's build) takes a global
  // lock around every lock operation to maintain its graph: a debugging aid
  // the tests keep, not something a server pays for on every request.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  tenancy::ServerOptions options;
  std::string data_dir;
  std::string admin_key_file;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string_view flag) -> std::string {
      if (i + 1 >= argc) Fail(std::string(flag) + " needs a value");
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (arg == "--data-dir") {
      data_dir = value(arg);
    } else if (arg == "--listen") {
      std::string listen = value(arg);
      if (!ParseHostPort(listen, &options.host, &options.port)) {
        Fail("--listen wants HOST:PORT, got \"" + listen + "\"");
      }
    } else if (arg == "--config") {
      config_path = value(arg);
    } else if (arg == "--admin-key-file") {
      admin_key_file = value(arg);
    } else if (arg == "--auth") {
      std::string mode = value(arg);
      if (mode == "api-key") {
        options.auth = tenancy::AuthMode::kApiKey;
      } else if (mode == "trusted") {
        options.auth = tenancy::AuthMode::kTrusted;
      } else {
        Fail("--auth must be api-key or trusted");
      }
    } else if (arg == "--threads") {
      options.threads = static_cast<int>(ParseCount(arg, value(arg), 1, 1024));
    } else if (arg == "--max-connections") {
      options.transport.max_connections =
          static_cast<size_t>(ParseCount(arg, value(arg), 1, 1 << 20));
    } else if (arg == "--max-connections-per-peer") {
      options.transport.max_connections_per_peer =
          static_cast<size_t>(ParseCount(arg, value(arg), 1, 1 << 20));
    } else if (arg == "--default-tenant") {
      options.default_tenant = value(arg);
    } else if (arg == "--host-suffix") {
      options.host_suffix = value(arg);
    } else if (arg == "--metrics-public") {
      options.metrics_public = true;
    } else {
      std::cerr << kUsage;
      Fail("unknown argument \"" + std::string(arg) + "\"");
    }
  }
  if (data_dir.empty()) {
    std::cerr << kUsage;
    Fail("--data-dir is required");
  }
  if (!admin_key_file.empty()) {
    options.admin_key = ReadAdminKeyFile(admin_key_file);
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
      std::cerr << "tenancyd: --config " << config_path << ": " << opened.status()
                << "\n";
      return 1;
    }
    config = *std::move(opened);
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
  const std::string& host = (*server)->host();
  std::string shown = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::cout << "tenancyd listening on " << shown << ":" << (*server)->port()
            << std::endl;

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
                          std::string("tenancyd: ") + strsignal(signal_number) +
                              ": draining");
  (*server)->Shutdown();
  config_metrics.Remove();
  server->reset();
  config.reset();
  absl::Status flushed = (*engine)->Flush();
  if (!flushed.ok()) {
    std::cerr << "tenancyd: flush: " << flushed << "\n";
    return 1;
  }
  engine->reset();
  return 0;
}
