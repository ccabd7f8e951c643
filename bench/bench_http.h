// What the bench targets that drive a tenancyd child process share: a
// blocking HTTP/1.1 client on a raw socket, starting the real binary, and
// reading a process's CPU time from /proc.

#ifndef TENANCY_BENCH_BENCH_HTTP_H_
#define TENANCY_BENCH_BENCH_HTTP_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace tenancy::bench {

// A blocking HTTP/1.1 client on a raw socket: enough for fixed requests and
// Content-Length responses.

class Connection {
 public:
  Connection(int port, const char* source, int receive_buffer = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (receive_buffer > 0) {
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof(receive_buffer));
    }
    int yes = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&from), sizeof(from));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(static_cast<uint16_t>(port));
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0;
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection() { ::close(fd_); }

  bool ok() const { return ok_; }
  int fd() const { return fd_; }

  bool Send(std::string_view data) {
    while (ok_ && !data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) ok_ = false;
      if (n > 0) data.remove_prefix(static_cast<size_t>(n));
    }
    return ok_;
  }

  // Reads one response; returns its status (0 when the connection failed).
  // With `read_slowly`, the body is read 4 KiB at a time every 50 ms. A
  // response with "Connection: close" leaves ok() false: reconnect.
  int Read(std::string* body = nullptr, bool read_slowly = false) {
    size_t end;
    while ((end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return 0;
    }
    const int status = std::atoi(buffer_.c_str() + 9);
    size_t close = buffer_.find("Connection: close\r\n");
    if (close != std::string::npos && close < end) ok_ = false;
    size_t length = 0;
    size_t at = buffer_.find("Content-Length: ");
    if (at != std::string::npos && at < end)
      length = std::strtoul(buffer_.c_str() + at + 16, nullptr, 10);
    buffer_.erase(0, end + 4);
    while (buffer_.size() < length) {
      if (read_slowly) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (!Fill(read_slowly ? 4096 : sizeof(chunk_))) return 0;
    }
    if (body != nullptr) body->assign(buffer_, 0, length);
    buffer_.erase(0, length);
    return status;
  }

 private:
  bool Fill(size_t at_most = sizeof(chunk_)) {
    ssize_t n = ::recv(fd_, chunk_, std::min(at_most, sizeof(chunk_)), 0);
    if (n <= 0) {
      ok_ = false;
      return false;
    }
    buffer_.append(chunk_, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  bool ok_ = false;
  std::string buffer_;
  char chunk_[64 << 10];
};

inline std::string Request(const std::string& method, const std::string& target,
                           const std::string& key, const std::string& body = "") {
  std::string out = method + " " + target + " HTTP/1.1\r\nHost: bench\r\n";
  if (!key.empty()) out += "Authorization: Bearer " + key + "\r\n";
  if (!body.empty() || method == "PUT" || method == "POST") {
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return out + "\r\n" + body;
}

// One request on a fresh connection (setup only).
inline int Call(int port, const std::string& request, std::string* body = nullptr) {
  Connection c(port, "127.0.0.1");
  if (!c.Send(request)) return 0;
  return c.Read(body);
}

inline std::string JsonField(const std::string& body, const std::string& field) {
  size_t at = body.find("\"" + field + "\":\"");
  if (at == std::string::npos) return "";
  at += field.size() + 4;
  return body.substr(at, body.find('"', at) - at);
}

// A child server process and the port it listens on.
struct Server {
  pid_t pid = -1;
  int port = 0;
};

// Starts `binary` on 127.0.0.1, port 0, over `dir`/data, with the admin key
// in its environment; returns once it has printed its listening line.
inline Server StartTenancyd(const std::string& binary, const std::filesystem::path& dir,
                            const std::string& admin_key, const std::vector<std::string>& extra) {
  int out[2];
  if (::pipe(out) != 0) std::exit(2);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::setenv("TENANCY_ADMIN_KEY", admin_key.c_str(), 1);
    const std::string data = (dir / "data").string();
    std::vector<const char*> args = {binary.c_str(), "--data-dir", data.c_str(), "--listen",
                                     "127.0.0.1:0"};
    for (const std::string& a : extra) args.push_back(a.c_str());
    args.push_back(nullptr);
    ::execv(binary.c_str(), const_cast<char* const*>(args.data()));
    std::_Exit(127);
  }
  ::close(out[1]);
  std::string line;
  char ch;
  while (::read(out[0], &ch, 1) == 1 && ch != '\n') line += ch;
  ::close(out[0]);
  Server s;
  s.pid = pid;
  size_t colon = line.rfind(':');
  s.port = colon == std::string::npos ? 0 : std::atoi(line.c_str() + colon + 1);
  if (s.port == 0) {
    std::fprintf(stderr, "tenancyd did not start: %s\n", line.c_str());
    std::exit(2);
  }
  return s;
}

// The CPU time (user + system, every thread) process `pid` has used so far.
inline double ProcessCpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  std::vector<std::string> fields;
  size_t pos = paren + 2;
  while (pos < stat.size()) {
    size_t end = stat.find(' ', pos);
    fields.push_back(stat.substr(pos, end - pos));
    if (end == std::string::npos) break;
    pos = end + 1;
  }
  // Fields after the comm: state is [0]; utime [11], stime [12].
  const double ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return (std::atof(fields[11].c_str()) + std::atof(fields[12].c_str())) / ticks;
}

// What wrk printed (run with --latency): the figures the benches read.
// Intentionally copyable.
struct WrkOutput {
  double requests = 0;  // "N requests in ..."
  double rps = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double non_2xx = 0;  // "Non-2xx or 3xx responses: N"
};

// "1.23ms", "456.00us", "1.2s" in milliseconds.
inline double WrkDurationMs(const std::string& text) {
  const double v = std::atof(text.c_str());
  if (text.find("us") != std::string::npos) return v / 1000;
  if (text.find("ms") != std::string::npos) return v;
  if (text.find('s') != std::string::npos) return v * 1000;
  return v;
}

inline WrkOutput ParseWrkOutput(const std::string& out) {
  auto after = [&](const std::string& label) -> std::string {
    size_t at = out.find(label);
    if (at == std::string::npos) return "";
    at += label.size();
    while (at < out.size() && out[at] == ' ') ++at;
    return out.substr(at, out.find_first_of(" \n", at) - at);
  };
  WrkOutput r;
  r.rps = std::atof(after("Requests/sec:").c_str());
  r.p50_ms = WrkDurationMs(after("50%"));
  r.p99_ms = WrkDurationMs(after("99%"));
  r.non_2xx = std::atof(after("Non-2xx or 3xx responses:").c_str());
  const size_t in = out.find(" requests in ");
  if (in != std::string::npos) {
    const size_t line = out.rfind('\n', in);
    r.requests = std::atof(out.c_str() + (line == std::string::npos ? 0 : line + 1));
  }
  return r;
}

// A loopback port nobody listens on now (bound and released), for a server
// that must be told its port (Redis, etcd, a cluster node's --advertise).
inline int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool bound = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                     ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  return bound ? ntohs(addr.sin_port) : 0;
}

}  // namespace tenancy::bench

#endif  // TENANCY_BENCH_BENCH_HTTP_H_
