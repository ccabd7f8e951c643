// peer_bench: tenancyd against Redis on the same machine, in one run.
//
// Both servers run as child processes of this one: the real tenancyd binary
// (default flags, one tenant from a tenants file) and Debian's redis-server,
// two instances: persistence off for GET, AOF with `appendfsync everysec` for
// SET (tenancyd writes its WAL on every write without syncing, which is the
// closest Redis setting). Same keep-alive connections, same 100-byte values,
// same key space (uniformly random over --keys keys, loaded first):
//
//   tenancyd  wrk -t2 -cC, GET /v1/kv/k:N and PUT /v1/kv/k:N
//   Redis     redis-benchmark -cC --threads 2 -P 1, GET key:N and SET key:N
//
// Rounds alternate which server goes first. Each side's server CPU (user +
// system, every thread, from /proc/PID/stat) over its requests is the figure;
// each side reports the median over the rounds. Targets: CPU per GET <= 2.5x
// Redis's, per PUT <= 3x Redis's SET. req/s and p99 are printed beside them
// (the load generators differ, so those are context, not figures).
//
//   peer_bench [--rounds N] [--seconds S] [--connections C] [--keys K]
//              [--tenancyd PATH] [--redis-server PATH] [--redis-benchmark PATH]
//              [--wrk PATH] [--only get|put]
//
// Exit status: 0 when every figure passed, 1 when one failed, 2 when the run
// could not be made (a server did not start, a client failed).

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "bench_http.h"
#include "bench_util.h"

namespace tenancy::bench {
namespace {

constexpr char kAdminKey[] = "peer-bench-admin-key";
constexpr char kTenantKey[] = "tk_peer_bench_key_0123456789abcdef";
constexpr size_t kValueBytes = 100;

struct Config {
  int rounds = 5;
  int seconds = 4;
  int connections = 8;
  int keys = 10000;
  std::string tenancyd = TENANCY_TENANCYD;
  std::string redis_server = "redis-server";
  std::string redis_benchmark = "redis-benchmark";
  std::string wrk = "wrk";
  std::string only;
};

// One side's run: what the client saw and what the server spent.
struct Run {
  double requests = 0;
  double rps = 0;
  double p99_ms = 0;
  double server_cpu_s = 0;
  double errors = 0;
  double CpuPerRequestUs() const { return requests > 0 ? server_cpu_s * 1e6 / requests : 0; }
};

Server StartRedis(const Config& config, const std::filesystem::path& dir, bool aof) {
  std::filesystem::create_directories(dir);
  const int port = FreePort();
  if (port == 0) Die("no free port");
  pid_t pid = ::fork();
  if (pid == 0) {
    const std::string p = std::to_string(port), d = dir.string(),
                      log = (dir / "redis.log").string();
    std::vector<const char*> args = {config.redis_server.c_str(),
                                     "--port",
                                     p.c_str(),
                                     "--bind",
                                     "127.0.0.1",
                                     "--dir",
                                     d.c_str(),
                                     "--logfile",
                                     log.c_str(),
                                     "--save",
                                     "",
                                     "--appendonly",
                                     aof ? "yes" : "no",
                                     "--appendfsync",
                                     "everysec",
                                     nullptr};
    ::execvp(args[0], const_cast<char* const*>(args.data()));
    std::_Exit(127);
  }
  g_children.push_back(pid);
  // Ready once it answers PING.
  for (int i = 0; i < 500; ++i) {
    Connection c(port, "127.0.0.1");
    if (c.ok() && c.Send("PING\r\n")) {
      char reply[16] = {0};
      if (::recv(c.fd(), reply, sizeof(reply) - 1, 0) > 0 && std::string(reply) == "+PONG\r\n") {
        return Server{pid, port};
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  Die("redis-server did not start (is Debian's redis-server installed?); log: " +
      (dir / "redis.log").string());
}

// wrk against tenancyd; `script` sets the method, key and headers.
Run RunWrk(const Config& config, const Server& server, const std::string& script, int seconds) {
  const std::string command = config.wrk + " -t2 -c" + std::to_string(config.connections) + " -d" +
                              std::to_string(seconds) + "s --latency -s " + script +
                              " http://127.0.0.1:" + std::to_string(server.port);
  const double cpu0 = ProcessCpuSeconds(server.pid);
  const std::string out = RunCommand(command);
  Run r;
  r.server_cpu_s = ProcessCpuSeconds(server.pid) - cpu0;
  const WrkOutput wrk = ParseWrkOutput(out);
  r.rps = wrk.rps;
  r.p99_ms = wrk.p99_ms;
  r.errors = wrk.non_2xx;
  r.requests = wrk.requests;
  if (r.requests <= 0 || r.errors > 0) Die("wrk run failed or got errors:\n" + out);
  return r;
}

// redis-benchmark against Redis: `requests` requests of `test` (get or set).
Run RunRedisBenchmark(const Config& config, const Server& server, const std::string& test,
                      long requests) {
  const std::string command = config.redis_benchmark + " -h 127.0.0.1 -p " +
                              std::to_string(server.port) + " -c " +
                              std::to_string(config.connections) + " --threads 2 -P 1 -d " +
                              std::to_string(kValueBytes) + " -r " + std::to_string(config.keys) +
                              " -n " + std::to_string(requests) + " -t " + test + " --csv";
  const double cpu0 = ProcessCpuSeconds(server.pid);
  const std::string out = RunCommand(command);
  Run r;
  r.server_cpu_s = ProcessCpuSeconds(server.pid) - cpu0;
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
  // "p95_latency_ms","p99_latency_ms","max_latency_ms"
  size_t row = out.find("\n\"");
  if (row == std::string::npos) Die("redis-benchmark output not understood:\n" + out);
  std::vector<double> cells;
  for (size_t at = out.find(',', row); at != std::string::npos && at < out.find('\n', row + 1);
       at = out.find(',', at + 1)) {
    cells.push_back(std::atof(out.c_str() + at + 2));  // skip ,"
  }
  if (cells.size() < 6) Die("redis-benchmark output not understood:\n" + out);
  r.rps = cells[0];
  r.p99_ms = cells[5];
  r.requests = static_cast<double>(requests);
  return r;
}

std::string WriteScript(const std::filesystem::path& dir, const std::string& name,
                        const std::string& method, const Config& config) {
  const std::string path = (dir / name).string();
  std::ofstream out(path);
  out << "wrk.headers[\"Authorization\"] = \"Bearer " << kTenantKey << "\"\n";
  if (method == "PUT") {
    out << "wrk.body = string.rep(\"v\", " << kValueBytes << ")\n";
  }
  out << "request = function()\n"
      << "  return wrk.format(\"" << method << "\", \"/v1/kv/k:\" .. math.random(0, "
      << config.keys - 1 << "))\n"
      << "end\n"
      // A refused request fails the run (RunWrk): print the first few.
      << "local refused = 0\n"
      << "response = function(status, headers, body)\n"
      << "  if status >= 300 and refused < 3 then\n"
      << "    refused = refused + 1\n"
      << "    print(\"refused: \" .. status .. \" \" .. body)\n"
      << "  end\n"
      << "end\n";
  return path;
}

int Main(int argc, char** argv) {
  Config config;
  if (!ParseBenchFlags(argc, argv,
                       {{"--rounds", &config.rounds},
                        {"--seconds", &config.seconds},
                        {"--connections", &config.connections},
                        {"--keys", &config.keys},
                        {"--tenancyd", nullptr, &config.tenancyd},
                        {"--redis-server", nullptr, &config.redis_server},
                        {"--redis-benchmark", nullptr, &config.redis_benchmark},
                        {"--wrk", nullptr, &config.wrk},
                        {"--only", nullptr, &config.only}},
                       "peer_bench [--rounds N] [--seconds S] [--connections C] [--keys K] "
                       "[--tenancyd PATH] [--redis-server PATH] [--redis-benchmark PATH] "
                       "[--wrk PATH] [--only get|put]")) {
    return 2;
  }
  if (config.rounds < 1 || config.seconds < 1 || config.connections < 1 || config.keys < 1) {
    Die("--rounds, --seconds, --connections and --keys must be positive");
  }
  ::signal(SIGPIPE, SIG_IGN);
  g_on_die = StopChildren;
  ScratchDir dir("peer-bench");
  const std::filesystem::path root = dir.path();

  // tenancyd with one tenant, no limits beyond the defaults.
  const std::filesystem::path tenants = root / "tenants.json";
  std::ofstream(tenants) << R"({"tenants":[{"id":"bench","api_key":")" << kTenantKey << "\"}]}\n";
  std::filesystem::create_directories(root / "tenancyd");
  const Server tenancyd =
      StartTenancyd(config.tenancyd, root / "tenancyd", kAdminKey, {"--config", tenants.string()});
  g_children.push_back(tenancyd.pid);
  const Server redis_get = StartRedis(config, root / "redis-get", /*aof=*/false);
  const Server redis_set = StartRedis(config, root / "redis-set", /*aof=*/true);
  const std::string get_script = WriteScript(root, "get.lua", "GET", config);
  const std::string put_script = WriteScript(root, "put.lua", "PUT", config);

  // Load every key on both sides, then warm up (a PUT and a SET round), and
  // size the Redis runs to about --seconds from a first timed run.
  {
    auto loader = std::make_unique<Connection>(tenancyd.port, "127.0.0.1");
    const std::string value(kValueBytes, 'v');
    for (int i = 0; i < config.keys; ++i) {
      // The server closes a keep-alive connection after so many requests.
      if (!loader->ok()) loader = std::make_unique<Connection>(tenancyd.port, "127.0.0.1");
      if (!loader->Send(Request("PUT", "/v1/kv/k:" + std::to_string(i), kTenantKey, value)) ||
          loader->Read() / 100 != 2) {
        Die("loading tenancyd failed at key " + std::to_string(i));
      }
    }
  }
  RunWrk(config, tenancyd, put_script, 2);
  RunRedisBenchmark(config, redis_get, "set", 20L * config.keys);
  RunRedisBenchmark(config, redis_set, "set", 20L * config.keys);
  auto requests_for = [&](const Run& warm) {
    return std::max(10000L, static_cast<long>(warm.rps * config.seconds));
  };
  const long get_requests = requests_for(RunRedisBenchmark(config, redis_get, "get", 100000));
  const long set_requests = requests_for(RunRedisBenchmark(config, redis_set, "set", 100000));

  struct Side {
    std::vector<Run> tenancyd, redis;
  };
  Side get, put;
  for (int round = 0; round < config.rounds; ++round) {
    const bool tenancyd_first = round % 2 == 0;
    auto measure = [&](Side& side, const std::string& script, const Server& redis,
                       const std::string& test, long requests) {
      for (int turn = 0; turn < 2; ++turn) {
        if ((turn == 0) == tenancyd_first) {
          side.tenancyd.push_back(RunWrk(config, tenancyd, script, config.seconds));
        } else {
          side.redis.push_back(RunRedisBenchmark(config, redis, test, requests));
        }
      }
    };
    if (config.only != "put") measure(get, get_script, redis_get, "get", get_requests);
    if (config.only != "get") measure(put, put_script, redis_set, "set", set_requests);
    std::fprintf(stderr, "round %d of %d done\n", round + 1, config.rounds);
  }
  StopChildren();

  auto median = [](const std::vector<Run>& runs, double (*field)(const Run&)) {
    std::vector<double> v;
    for (const Run& r : runs) v.push_back(field(r));
    return Median(v);
  };
  auto cpu = [](const Run& r) { return r.CpuPerRequestUs(); };
  auto rps = [](const Run& r) { return r.rps; };
  auto p99 = [](const Run& r) { return r.p99_ms; };

  std::printf(
      "peer_bench: %d rounds of %d s, %d keep-alive connections, %zu-byte values, %d keys\n",
      config.rounds, config.seconds, config.connections, kValueBytes, config.keys);
  std::vector<Figure> figures;
  auto report = [&](const char* what, const char* redis_what, const Side& side, double target) {
    if (side.tenancyd.empty()) return;
    const double t = median(side.tenancyd, cpu), r = median(side.redis, cpu);
    std::printf(
        "info: %-4s tenancyd %7.0f req/s, p99 %.3f ms, server CPU %5.1f us/request | Redis %-3s "
        "%7.0f req/s, p99 %.3f ms, server CPU %5.1f us/request\n",
        what, median(side.tenancyd, rps), median(side.tenancyd, p99), t, redis_what,
        median(side.redis, rps), median(side.redis, p99), r);
    figures.push_back({std::string("server CPU per ") + what + ": tenancyd vs Redis " + redis_what,
                       Fmt("%.1f us", t), Fmt("%.1f us", r), t / r, Fmt("<= %.1fx", target),
                       t / r <= target});
  };
  report("GET", "GET", get, 2.5);
  report("PUT", "SET", put, 3.0);
  PrintFigures("peer_bench figures (medians over the rounds)", figures);
  for (const Figure& f : figures) {
    if (!f.pass) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tenancy::bench

int main(int argc, char** argv) { return tenancy::bench::Main(argc, argv); }
