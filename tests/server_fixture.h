// A tenancyd HttpServer on an Engine in a temporary directory, listening on a
// free loopback port, and the clients the server tests talk to it with: an
// httplib::Client for ordinary requests and a raw socket for bytes no
// well-behaved client would send.

#ifndef TENANCY_TESTS_SERVER_FIXTURE_H_
#define TENANCY_TESTS_SERVER_FIXTURE_H_

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "http_server.h"
#include "sigpipe_block.h"
#include "simdjson.h"
#include "temp_dir.h"
#include "tenancy/engine.h"
#include "tenancy/kv_store.h"
#include "tenancy/logger.h"
#include "tenancy/tenant_registry.h"

namespace tenancy::testing {

inline constexpr char kAdminKey[] = "test-admin-key-0123456789";

// One HTTP response, as the tests look at it.
struct Reply {
  int status = 0;  // 0: no response (connection error)
  std::string body;
  httplib::Headers headers;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }

  // A top-level field of a JSON object body, or nullopt.
  std::optional<simdjson::dom::element> Json(std::string_view field) const {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::element root;
    if (parser.parse(body).get(root)) return std::nullopt;
    simdjson::dom::element value;
    if (root[field].get(value)) return std::nullopt;
    return value;
  }
  std::string JsonString(std::string_view field) const {
    auto v = Json(field);
    std::string_view s;
    if (!v.has_value() || v->get_string().get(s)) return "<missing>";
    return std::string(s);
  }
  double JsonNumber(std::string_view field) const {
    auto v = Json(field);
    double d = -1;
    if (!v.has_value() || v->get_double().get(d)) return -1;
    return d;
  }
  // The "code" of an error body {"error":{"code":...}}.
  std::string ErrorCode() const {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::element root;
    std::string_view code;
    if (parser.parse(body).get(root) || root["error"]["code"].get(code)) {
      return "<no error body>";
    }
    return std::string(code);
  }
};

class TestClient {
 public:
  explicit TestClient(int port) : client_("127.0.0.1", port) {
    client_.set_connection_timeout(std::chrono::seconds(5));
    client_.set_read_timeout(std::chrono::seconds(30));
    client_.set_write_timeout(std::chrono::seconds(30));
    client_.set_keep_alive(true);
    client_.set_url_encode(false);  // paths are sent exactly as written
    client_.set_tcp_nodelay(true);  // as curl does; else Nagle adds 40 ms
  }

  // For a request that may wait behind others (a sanitizer build on a busy
  // machine runs them several times slower).
  void set_read_timeout(std::chrono::seconds timeout) { client_.set_read_timeout(timeout); }

  Reply Get(const std::string& path, const httplib::Headers& headers = {}) {
    return Call([&] { return client_.Get(path, headers); });
  }
  Reply Put(const std::string& path, const std::string& body, const httplib::Headers& headers = {},
            const std::string& type = "application/octet-stream") {
    return Call([&] { return client_.Put(path, headers, body, type); });
  }
  Reply Post(const std::string& path, const std::string& body,
             const httplib::Headers& headers = {}) {
    return Call([&] { return client_.Post(path, headers, body, "application/json"); });
  }
  Reply Delete(const std::string& path, const httplib::Headers& headers = {}) {
    return Call([&] { return client_.Delete(path, headers); });
  }

 private:
  // httplib writes without MSG_NOSIGNAL: a server that closes a connection
  // (a refusal, a keep-alive timeout) must fail the call, not end the test
  // binary by SIGPIPE.
  template <typename Request>
  static Reply Call(Request request) {
    internal::SigpipeBlock no_sigpipe;
    const httplib::Result r = request();
    Reply reply;
    if (!r) return reply;
    reply.status = r->status;
    reply.body = r->body;
    reply.headers = r->headers;
    return reply;
  }

  httplib::Client client_;
};

inline httplib::Headers Bearer(const std::string& key) {
  return {{"Authorization", "Bearer " + key}};
}
inline httplib::Headers Admin() { return {{"X-Admin-Key", kAdminKey}}; }

// A raw TCP connection to the server.
class RawConnection {
 public:
  // From `source` (a loopback address such as "127.0.0.2", so that the
  // server sees another peer) when given; with a receive buffer of
  // `receive_buffer` bytes when > 0 (a client that reads slowly fills it).
  explicit RawConnection(int port, const char* source = nullptr, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    if (source != nullptr) {
      sockaddr_in from{};
      from.sin_family = AF_INET;
      ::inet_pton(AF_INET, source, &from.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from)) != 0) {
        ::close(fd_);
        throw std::runtime_error("bind source address");
      }
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      throw std::runtime_error("connect");
    }
    int yes = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }

  // False if the peer is gone.
  bool Send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

  // Reads one response (head, then Content-Length bytes of body). status 0
  // if none arrived within `timeout`.
  Reply ReadResponse(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    Reply reply;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    size_t head_end;
    while ((head_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(deadline)) return reply;
    }
    std::string head = buffer_.substr(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string status_line = head.substr(0, line_end);
    if (status_line.size() < 12) return reply;
    reply.status = std::stoi(status_line.substr(9, 3));
    size_t pos = line_end == std::string::npos ? head.size() : line_end + 2;
    while (pos < head.size()) {
      size_t eol = head.find("\r\n", pos);
      if (eol == std::string::npos) eol = head.size();
      std::string line = head.substr(pos, eol - pos);
      size_t colon = line.find(':');
      if (colon != std::string::npos) {
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        reply.headers.emplace(line.substr(0, colon), value);
      }
      pos = eol + 2;
    }
    buffer_.erase(0, head_end + 4);
    std::string length = reply.Header("Content-Length");
    if (!length.empty()) {
      size_t n = std::stoul(length);
      while (buffer_.size() < n) {
        if (!Fill(deadline)) break;
      }
      reply.body = buffer_.substr(0, std::min(n, buffer_.size()));
      buffer_.erase(0, reply.body.size());
    } else if (reply.status != 100 && reply.status != 204) {
      while (Fill(deadline)) {
      }
      reply.body = std::move(buffer_);
      buffer_.clear();
    }
    return reply;
  }

  // True once the server has closed the connection (EOF) within `timeout`.
  bool ClosedByPeer(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return true;
      buffer_.append(buf, static_cast<size_t>(n));
    }
    return false;
  }

  int fd() const { return fd_; }

 private:
  bool Fill(std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
    char buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buffer_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buffer_;
};

struct ServerFixture {
  TempDir dir;
  std::unique_ptr<Engine> engine;
  std::unique_ptr<HttpServer> server;

  explicit ServerFixture(ServerOptions options = DefaultOptions(),
                         EngineOptions engine_options = DefaultEngineOptions()) {
    engine_options.path = (dir.path() / "db").string();
    auto opened = Engine::Open(engine_options);
    if (!opened.ok()) throw std::runtime_error(opened.status().ToString());
    engine = std::move(*opened);
    options.host = "127.0.0.1";
    options.port = 0;
    auto started = HttpServer::Start(options, engine.get());
    if (!started.ok()) throw std::runtime_error(started.status().ToString());
    server = std::move(*started);
  }
  ~ServerFixture() {
    server.reset();
    engine.reset();
  }

  static ServerOptions DefaultOptions() {
    ServerOptions o;
    o.admin_key = kAdminKey;
    o.threads = 4;
    o.logger = NewNullLogger();
    return o;
  }
  static EngineOptions DefaultEngineOptions() {
    EngineOptions o;
    o.logger = NewNullLogger();
    o.memtable_budget_bytes = 32 << 20;
    o.block_cache_bytes = 8 << 20;
    o.max_value_bytes = 1 << 20;
    return o;
  }

  int port() const { return server->port(); }
  TestClient Client() const { return TestClient(port()); }

  // Creates a tenant through the admin API; returns its API key.
  std::string CreateTenant(const std::string& id, const std::string& extra = "") {
    TestClient c = Client();
    std::string body = "{\"tenant_id\":\"" + id + "\"" + (extra.empty() ? "" : "," + extra) + "}";
    Reply r = c.Post("/admin/tenants", body, Admin());
    if (r.status != 201) {
      throw std::runtime_error("create " + id + ": " + std::to_string(r.status) + " " + r.body);
    }
    return r.JsonString("api_key");
  }
};

// The value of one series in a Prometheus exposition, name and labels
// exactly as exposed (`tenancy_api_calls_total{tenant="a",method="GET"}`),
// or -1.
inline double MetricValue(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while ((pos = text.find(series + " ", pos)) != std::string::npos) {
    if (pos == 0 || text[pos - 1] == '\n') {
      return std::stod(text.substr(pos + series.size() + 1));
    }
    pos += series.size();
  }
  return -1;
}

// One series of the fixture's /metrics, scraped on a connection of its own.
inline double Metric(ServerFixture& f, const std::string& series) {
  TestClient c = f.Client();
  Reply r = c.Get("/metrics", Admin());
  return MetricValue(r.body, series);
}

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_SERVER_FIXTURE_H_
