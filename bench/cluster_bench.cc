// cluster_bench: the cost of a cluster (issue 16), in one run.
//
// A real etcd (Debian's etcd-server) and two tenancyd nodes as child
// processes, on loopback:
//
//   forwarding  wrk GETs of one tenant's keys, sent to its owner and sent to
//               the other node, which forwards each to the owner: CPU per
//               request (both nodes' CPU together, over the requests) and
//               median latency, forwarded against served by the owner.
//   move        a tenant of --move-keys keys (100-byte values) moved to the
//               other node while a client writes to it through the other
//               node as fast as it is answered: the move's time against an
//               export of the same tenant (GET .../export, the part of a
//               move that reads every key), and the write unavailability
//               window (from the first write refused to the first acknowledged
//               after it, as the client saw it) against the move's time.
//
// Rounds alternate which side of the forwarding figure goes first; each side
// reports its median over the rounds. The move is made once per round, back
// and forth.
//
//   cluster_bench [--rounds N] [--seconds S] [--connections C] [--keys K]
//                 [--move-keys K] [--tenancyd PATH] [--etcd PATH] [--wrk PATH]
//
// Exit status: 0 when every figure passed, 1 when one failed, 2 when the run
// could not be made (a server did not start, a client failed).

#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_http.h"
#include "bench_util.h"

namespace tenancy::bench {
namespace {

constexpr char kAdminKey[] = "cluster-bench-admin-key";
constexpr size_t kValueBytes = 100;

struct Config {
  int rounds = 3;
  int seconds = 4;
  int connections = 8;
  int keys = 10000;
  int move_keys = 100000;
  std::string tenancyd = TENANCY_TENANCYD;
  std::string etcd = "etcd";
  std::string wrk = "wrk";
};

// What the client saw and what the servers spent.
struct Run {
  double requests = 0;
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double server_cpu_s = 0;
  double CpuPerRequestUs() const { return requests > 0 ? server_cpu_s * 1e6 / requests : 0; }
};

// etcd on free loopback ports; its client URL once it answers.
std::string StartEtcd(const Config& config, const std::filesystem::path& dir) {
  const int client_port = FreePort();
  const int peer_port = FreePort();
  if (client_port == 0 || peer_port == 0) Die("no free port");
  const std::string client = "http://127.0.0.1:" + std::to_string(client_port);
  const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port);
  pid_t pid = ::fork();
  if (pid == 0) {
    const std::string log = (dir / "etcd.log").string();
    FILE* out = std::freopen(log.c_str(), "w", stderr);
    (void)out;
    const std::vector<std::string> args = {config.etcd,
                                           "--name=bench",
                                           "--data-dir=" + (dir / "etcd").string(),
                                           "--listen-client-urls=" + client,
                                           "--advertise-client-urls=" + client,
                                           "--listen-peer-urls=" + peer,
                                           "--initial-advertise-peer-urls=" + peer,
                                           "--initial-cluster=bench=" + peer,
                                           "--log-level=error"};
    std::vector<const char*> argv;
    for (const std::string& a : args) argv.push_back(a.c_str());
    argv.push_back(nullptr);
    ::execvp(argv[0], const_cast<char* const*>(argv.data()));
    std::_Exit(127);
  }
  g_children.push_back(pid);
  for (int i = 0; i < 1000; ++i) {
    std::string body;
    if (Call(client_port, "GET /health HTTP/1.1\r\nHost: etcd\r\n\r\n", &body) == 200 &&
        body.find("\"true\"") != std::string::npos) {
      return client;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  Die("etcd did not start (is Debian's etcd-server installed?); log: " +
      (dir / "etcd.log").string());
}

Server StartNode(const Config& config, const std::filesystem::path& dir, const std::string& id,
                 const std::string& etcd) {
  std::filesystem::create_directories(dir);
  const int port = FreePort();
  if (port == 0) Die("no free port");
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  Server s = StartTenancyd(config.tenancyd, dir, kAdminKey,
                           {"--listen", "127.0.0.1:" + std::to_string(port), "--cluster-etcd", etcd,
                            "--node-id", id, "--advertise", url});
  g_children.push_back(s.pid);
  return s;
}

// One admin or tenant request; dies unless it answers `expect`.
std::string MustCall(int port, const std::string& method, const std::string& target,
                     const std::string& key, const std::string& body, int expect) {
  std::string answer;
  const int status = Call(port, Request(method, target, key, body), &answer);
  if (status != expect) {
    Die(method + " " + target + ": " + std::to_string(status) + " " + answer.substr(0, 300));
  }
  return answer;
}

// Creates `id`; its API key.
std::string CreateTenant(int port, const std::string& id) {
  const std::string body = MustCall(port, "POST", "/admin/tenants", kAdminKey,
                                    R"({"tenant_id":")" + id + R"(","quota_mb":10000})", 201);
  return JsonField(body, "api_key");
}

// The node (0 or 1) that owns `id`, from GET /admin/cluster.
int OwnerOf(const std::vector<Server>& nodes, const std::string& id) {
  const std::string body = MustCall(nodes[0].port, "GET", "/admin/cluster", kAdminKey, "", 200);
  const size_t at = body.find("\"" + id + "\"");
  const size_t n2 = body.find("\"id\":\"n2\"");
  if (at == std::string::npos || n2 == std::string::npos) Die("no owner: " + body);
  return at > n2 ? 1 : 0;
}

void Load(int port, const std::string& key, int count) {
  Connection c(port, "127.0.0.1");
  const std::string value(kValueBytes, 'v');
  for (int start = 0; start < count; start += 500) {
    std::string body = R"({"ops":[)";
    for (int i = start; i < std::min(count, start + 500); ++i) {
      if (i > start) body += ",";
      body += R"({"op":"put","key":"k:)" + std::to_string(i) + R"(","value":")" + value + "\"}";
    }
    body += "]}";
    std::string answer;
    if (!c.Send(Request("POST", "/v1/batch", key, body)) || c.Read(&answer) != 200) {
      Die("loading failed at key " + std::to_string(start) + ": " + answer.substr(0, 200));
    }
  }
}

Run RunWrk(const Config& config, const std::vector<Server>& nodes, int target,
           const std::string& script, int seconds) {
  const std::string command = config.wrk + " -t2 -c" + std::to_string(config.connections) + " -d" +
                              std::to_string(seconds) + "s --latency -s " + script +
                              " http://127.0.0.1:" + std::to_string(nodes[target].port);
  auto cpu = [&] { return ProcessCpuSeconds(nodes[0].pid) + ProcessCpuSeconds(nodes[1].pid); };
  const double cpu0 = cpu();
  const std::string out = RunCommand(command);
  Run r;
  r.server_cpu_s = cpu() - cpu0;
  const WrkOutput wrk = ParseWrkOutput(out);
  r.p50_ms = wrk.p50_ms;
  r.p99_ms = wrk.p99_ms;
  r.rps = wrk.rps;
  r.requests = wrk.requests;
  if (r.requests <= 0 || wrk.non_2xx > 0) Die("wrk run failed or got errors:\n" + out);
  return r;
}

std::string WriteScript(const std::filesystem::path& dir, const std::string& key,
                        const Config& config) {
  const std::string path = (dir / "get.lua").string();
  std::ofstream out(path);
  out << "wrk.headers[\"Authorization\"] = \"Bearer " << key << "\"\n"
      << "request = function()\n"
      << "  return wrk.format(\"GET\", \"/v1/kv/k:\" .. math.random(0, " << config.keys - 1
      << "))\n"
      << "end\n";
  return path;
}

// A move while a client writes through `via`: what the move answered and
// what the client saw.
struct Move {
  double total_s = 0;         // the POST's time, as the caller saw it
  double export_s = 0;        // an export of the same tenant, just before
  double window_s = 0;        // first refused write to the next acknowledged
  double writes_held_ms = 0;  // the owner's own measure (fence to switch)
  int refused = 0;
};

Move MoveOnce(const std::vector<Server>& nodes, const std::string& key, int from) {
  const int to = 1 - from;
  Move m;
  {
    // The export streams chunked: curl reads it to the end.
    const Clock::time_point start = Clock::now();
    RunCommand("curl -sf -o /dev/null -H 'X-Admin-Key: " + std::string(kAdminKey) +
               "' http://127.0.0.1:" + std::to_string(nodes[from].port) +
               "/admin/tenants/big/export");
    m.export_s = Seconds(start);
  }
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0};
  Clock::time_point first_refused{}, acked_after{};
  std::thread writer([&] {
    auto c = std::make_unique<Connection>(nodes[to].port, "127.0.0.1");
    const std::string value(kValueBytes, 'w');
    bool seen_refusal = false;
    for (int i = 0; !stop.load(); ++i) {
      if (!c->ok()) c = std::make_unique<Connection>(nodes[to].port, "127.0.0.1");
      if (!c->Send(Request("PUT", "/v1/kv/w:" + std::to_string(i), key, value))) continue;
      const int status = c->Read();
      const Clock::time_point now = Clock::now();
      if (status == 503) {
        if (!seen_refusal) first_refused = now;
        seen_refusal = true;
        refused.fetch_add(1);
      } else if (status == 204 && seen_refusal && acked_after == Clock::time_point{}) {
        acked_after = now;
      } else if (status != 204) {
        Die("a write during the move answered " + std::to_string(status));
      }
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const Clock::time_point start = Clock::now();
  const std::string answer =
      MustCall(nodes[from].port, "POST", "/admin/tenants/big/move", kAdminKey,
               std::string(R"({"to":"n)") + std::to_string(to + 1) + "\"}", 200);
  m.total_s = Seconds(start);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  writer.join();
  m.refused = refused.load();
  if (m.refused > 0) {
    if (acked_after == Clock::time_point{}) Die("no write was acknowledged after the move");
    m.window_s = std::chrono::duration<double>(acked_after - first_refused).count();
  }
  const size_t held = answer.find("\"writes_held_ms\":");
  if (held != std::string::npos) m.writes_held_ms = std::atof(answer.c_str() + held + 17);
  return m;
}

int Main(int argc, char** argv) {
  Config config;
  if (!ParseBenchFlags(argc, argv,
                       {{"--rounds", &config.rounds},
                        {"--seconds", &config.seconds},
                        {"--connections", &config.connections},
                        {"--keys", &config.keys},
                        {"--move-keys", &config.move_keys},
                        {"--tenancyd", nullptr, &config.tenancyd},
                        {"--etcd", nullptr, &config.etcd},
                        {"--wrk", nullptr, &config.wrk}},
                       "cluster_bench [--rounds N] [--seconds S] [--connections C] [--keys K] "
                       "[--move-keys K] [--tenancyd PATH] [--etcd PATH] [--wrk PATH]")) {
    return 2;
  }
  if (config.rounds < 1 || config.seconds < 1 || config.connections < 1 || config.keys < 1 ||
      config.move_keys < 1) {
    Die("--rounds, --seconds, --connections, --keys and --move-keys must be positive");
  }
  ::signal(SIGPIPE, SIG_IGN);
  g_on_die = StopChildren;
  ScratchDir dir("cluster-bench");
  const std::filesystem::path root = dir.path();
  const std::string etcd = StartEtcd(config, root);
  std::vector<Server> nodes;
  nodes.push_back(StartNode(config, root / "n1", "n1", etcd));
  nodes.push_back(StartNode(config, root / "n2", "n2", etcd));
  // Both alive in each other's copy before tenants are placed.
  for (int i = 0; i < 500; ++i) {
    std::string body;
    Call(nodes[0].port, Request("GET", "/admin/cluster", kAdminKey), &body);
    if (body.find("\"id\":\"n2\",\"advertise_url\":\"http") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  // Forwarding.
  const std::string key = CreateTenant(nodes[0].port, "reads");
  const int owner = OwnerOf(nodes, "reads");
  Load(nodes[owner].port, key, config.keys);
  const std::string script = WriteScript(root, key, config);
  RunWrk(config, nodes, 1 - owner, script, 2);  // warm both, and the peer's pool
  RunWrk(config, nodes, owner, script, 2);
  std::vector<Run> direct, forwarded;
  for (int round = 0; round < config.rounds; ++round) {
    for (int turn = 0; turn < 2; ++turn) {
      if ((turn == 0) == (round % 2 == 0)) {
        direct.push_back(RunWrk(config, nodes, owner, script, config.seconds));
      } else {
        forwarded.push_back(RunWrk(config, nodes, 1 - owner, script, config.seconds));
      }
    }
    std::fprintf(stderr, "forwarding: round %d of %d done\n", round + 1, config.rounds);
  }

  // Moves.
  const std::string big_key = CreateTenant(nodes[0].port, "big");
  int big_owner = OwnerOf(nodes, "big");
  Load(nodes[big_owner].port, big_key, config.move_keys);
  std::vector<Move> moves;
  for (int round = 0; round < config.rounds; ++round) {
    moves.push_back(MoveOnce(nodes, big_key, big_owner));
    big_owner = 1 - big_owner;
    std::fprintf(stderr, "move: round %d of %d done (%.0f ms, window %.0f ms)\n", round + 1,
                 config.rounds, moves.back().total_s * 1e3, moves.back().window_s * 1e3);
  }
  StopChildren();

  auto median = [](const auto& runs, auto field) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(field(r));
    return Median(v);
  };
  const double cpu_direct = median(direct, [](const Run& r) { return r.CpuPerRequestUs(); });
  const double cpu_forwarded = median(forwarded, [](const Run& r) { return r.CpuPerRequestUs(); });
  const double p50_direct = median(direct, [](const Run& r) { return r.p50_ms; });
  const double p50_forwarded = median(forwarded, [](const Run& r) { return r.p50_ms; });
  std::printf(
      "cluster_bench: %d rounds; forwarding: %d s of wrk GETs, %d connections, %d keys; "
      "move: %d keys of %zu bytes\n",
      config.rounds, config.seconds, config.connections, config.keys, config.move_keys,
      kValueBytes);
  std::printf("info: GET served by the owner %7.0f req/s, p50 %.3f ms, p99 %.3f ms, CPU %.1f us\n",
              median(direct, [](const Run& r) { return r.rps; }), p50_direct,
              median(direct, [](const Run& r) { return r.p99_ms; }), cpu_direct);
  std::printf("info: GET forwarded      %7.0f req/s, p50 %.3f ms, p99 %.3f ms, CPU %.1f us\n",
              median(forwarded, [](const Run& r) { return r.rps; }), p50_forwarded,
              median(forwarded, [](const Run& r) { return r.p99_ms; }), cpu_forwarded);
  const double move_s = median(moves, [](const Move& m) { return m.total_s; });
  const double export_s = median(moves, [](const Move& m) { return m.export_s; });
  const double window_s = median(moves, [](const Move& m) { return m.window_s; });
  const double held_ms = median(moves, [](const Move& m) { return m.writes_held_ms; });
  std::printf(
      "info: move of %d keys: %.0f ms (export alone %.0f ms); writes refused for %.0f ms "
      "as the client saw it, %.0f ms as the owner measured (fence to switch); %d writes "
      "refused in the last move\n",
      config.move_keys, move_s * 1e3, export_s * 1e3, window_s * 1e3, held_ms,
      moves.back().refused);
  // The issue sets no target for these: they are reported, and pass. (The
  // forwarding figures are read in bench/README.md, "cluster_bench".)
  std::vector<Figure> figures;
  figures.push_back({"server CPU per GET: forwarded vs served by the owner",
                     Fmt("%.1f us", cpu_forwarded), Fmt("%.1f us", cpu_direct),
                     cpu_forwarded / cpu_direct, "report", true});
  figures.push_back({"median GET latency: forwarded vs served by the owner",
                     Fmt("%.3f ms", p50_forwarded), Fmt("%.3f ms", p50_direct),
                     p50_forwarded / p50_direct, "report", true});
  figures.push_back({"move time vs an export of the same tenant", Fmt("%.0f ms", move_s * 1e3),
                     Fmt("%.0f ms", export_s * 1e3), move_s / export_s, "report", true});
  // Writes wait from the fence to the switch (the whole move but its
  // checks), plus the time for the client's node to see the switch.
  figures.push_back({"write unavailability window vs the move's time",
                     Fmt("%.0f ms", window_s * 1e3), Fmt("%.0f ms", move_s * 1e3),
                     window_s / move_s, "<= 1.2x", window_s / move_s <= 1.2});
  PrintFigures("cluster_bench figures (medians over the rounds)", figures);
  for (const Figure& f : figures) {
    if (!f.pass) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace tenancy::bench

int main(int argc, char** argv) { return tenancy::bench::Main(argc, argv); }
