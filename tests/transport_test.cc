// tenancyd's transport on its own: fair queues across lanes, per-lane caps,
// the control lane, background workers, and the FairQueue underneath. A head
// handler of the test's own puts each request in the lane its X-Lane header
// names; the request handler blocks where the test says, so what runs at
// once is observed, not timed. Streamed exchanges (bodies read by the
// handler, chunked responses written by it) are checked byte for byte by a
// client that decodes the framing itself.

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "fair_queue.h"
#include "http_transport.h"
#include "server_fixture.h"

namespace tenancy::testing {
namespace {

using internal::Exchange;
using internal::FairQueue;
using internal::HeadDecision;
using internal::HttpTransport;
using internal::Lane;
using internal::RequestHead;
using internal::TransportOptions;
using std::chrono::milliseconds;

// What the handlers saw, and a gate that /block requests wait on.
class Observed {
 public:
  void Start(uint64_t lane, const std::string& what, int nice) {
    absl::MutexLock lock(&mu_);
    int& now = running_[lane];
    ++now;
    if (now > max_running_[lane]) max_running_[lane] = now;
    order_.emplace_back(lane, what);
    nice_[what] = nice;
    changed_.SignalAll();
  }
  void Finish(uint64_t lane) {
    absl::MutexLock lock(&mu_);
    --running_[lane];
    changed_.SignalAll();
  }
  void WaitForGate() {
    absl::MutexLock lock(&mu_);
    while (!open_) gate_.Wait(&mu_);
  }
  void OpenGate() {
    absl::MutexLock lock(&mu_);
    open_ = true;
    gate_.SignalAll();
  }
  // Waits until `lane` runs `n` requests at once (20 s at most).
  bool WaitRunning(uint64_t lane, int n) {
    absl::MutexLock lock(&mu_);
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (running_[lane] != n) {
      if (changed_.WaitWithDeadline(&mu_, deadline)) return running_[lane] == n;
    }
    return true;
  }
  int MaxRunning(uint64_t lane) {
    absl::MutexLock lock(&mu_);
    return max_running_[lane];
  }
  std::vector<std::pair<uint64_t, std::string>> Order() {
    absl::MutexLock lock(&mu_);
    return order_;
  }
  int Nice(const std::string& what) {
    absl::MutexLock lock(&mu_);
    return nice_[what];
  }

 private:
  absl::Mutex mu_;
  absl::CondVar changed_;
  absl::CondVar gate_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  std::map<uint64_t, int> running_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, int> max_running_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<uint64_t, std::string>> order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> nice_ ABSL_GUARDED_BY(mu_);
};

class Context final : public internal::ExchangeContext {
 public:
  explicit Context(Lane lane) : lane(lane) {}
  Lane lane;
};

int ThreadNice() { return ::getpriority(PRIO_PROCESS, static_cast<id_t>(::syscall(SYS_gettid))); }

TransportOptions WithThreads(int threads) {
  TransportOptions options;
  options.worker_threads = threads;
  return options;
}

struct TransportFixture {
  explicit TransportFixture(int threads) : TransportFixture(WithThreads(threads)) {}
  explicit TransportFixture(const TransportOptions& options) {
    transport = std::make_unique<HttpTransport>(options);
    transport->set_head_handler([](const RequestHead& head) {
      HeadDecision decision;
      auto lane = head.Header("X-Lane");
      decision.lane.key = lane.has_value() ? std::stoull(std::string(*lane)) : 0;
      decision.lane.background = head.Header("X-Background").has_value();
      decision.context = std::make_unique<Context>(decision.lane);
      return decision;
    });
    transport->set_request_handler([this](Exchange& ex) {
      auto context = ex.TakeContext();
      const Lane lane = static_cast<Context*>(context.get())->lane;
      const std::string target(ex.target());
      observed.Start(lane.key, target, ThreadNice());
      if (target.rfind("/long-wait", 0) == 0) ex.BeginLongWait();
      if (target.rfind("/block", 0) == 0 || target.rfind("/long-wait", 0) == 0) {
        observed.WaitForGate();
      }
      observed.Finish(lane.key);
      ex.response().status = 200;
      ex.response().body = target;
    });
    auto bound = transport->Bind("127.0.0.1", 0);
    if (!bound.ok()) throw std::runtime_error(bound.status().ToString());
    port = *bound;
    if (!transport->Start().ok()) throw std::runtime_error("start");
  }
  ~TransportFixture() {
    observed.OpenGate();
    transport->Stop();
  }

  // Sends GET `target` in `lane` on a connection of its own.
  std::unique_ptr<RawConnection> Send(const std::string& target, uint64_t lane,
                                      bool background = false) {
    auto c = std::make_unique<RawConnection>(port);
    c->Send("GET " + target + " HTTP/1.1\r\nHost: t\r\nX-Lane: " + std::to_string(lane) +
            (background ? "\r\nX-Background: 1" : "") + "\r\n\r\n");
    return c;
  }
  bool WaitQueued(int64_t n) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (transport->Counters().queued_requests != n) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(milliseconds(1));
    }
    return true;
  }

  Observed observed;
  std::unique_ptr<HttpTransport> transport;
  int port = 0;
};

TEST_CASE(
    "Transport: a lane runs at most its share of the workers, and other "
    "lanes and the control lane still run",
    "[transport][fair]") {
  // 4 workers: a lane runs at most 2 requests, tenant lanes at most 3 in all,
  // and the last worker is the control lane's.
  TransportFixture f(4);
  std::vector<std::unique_ptr<RawConnection>> blocked;
  for (int i = 0; i < 6; ++i) blocked.push_back(f.Send("/block" + std::to_string(i), 5));
  REQUIRE(f.observed.WaitRunning(5, 2));
  REQUIRE(f.WaitQueued(4));

  // Another lane is served while lane 5 waits behind its cap.
  auto fast = f.Send("/fast", 7);
  CHECK(fast->ReadResponse().status == 200);
  // A third tenant lane blocks the last tenant slot...
  auto third = f.Send("/block-third", 8);
  REQUIRE(f.observed.WaitRunning(8, 1));
  // ...and an admin request still runs, on the worker kept for it.
  auto admin = f.Send("/admin", Lane::kControl);
  CHECK(admin->ReadResponse().status == 200);
  auto waiting = f.Send("/queued", 9);
  REQUIRE(f.WaitQueued(5));

  f.observed.OpenGate();
  for (auto& c : blocked) CHECK(c->ReadResponse().status == 200);
  CHECK(third->ReadResponse().status == 200);
  CHECK(waiting->ReadResponse().status == 200);
  CHECK(f.observed.MaxRunning(5) == 2);
}

TEST_CASE("Transport: queued requests of different lanes are served in turn", "[transport][fair]") {
  // 2 workers: one runs tenant work, one lane at a time.
  TransportFixture f(2);
  auto blocker = f.Send("/block", 1);
  REQUIRE(f.observed.WaitRunning(1, 1));
  std::vector<std::unique_ptr<RawConnection>> queued;
  for (int i = 0; i < 5; ++i) {
    queued.push_back(f.Send("/deep" + std::to_string(i), 1));
    REQUIRE(f.WaitQueued(i + 1));
  }
  queued.push_back(f.Send("/shallow", 2));
  REQUIRE(f.WaitQueued(6));
  f.observed.OpenGate();
  for (auto& c : queued) CHECK(c->ReadResponse().status == 200);
  auto order = f.observed.Order();
  REQUIRE(order.size() == 7);
  // The blocker, then lane 2's single request (lane 1 was at its cap while
  // lane 2 waited), then lane 1's in their order: not sixth in line.
  CHECK(order[0].second == "/block");
  CHECK(order[1].second == "/shallow");
  for (int i = 0; i < 5; ++i) CHECK(order[2 + i].second == "/deep" + std::to_string(i));
}

TEST_CASE(
    "Transport: background requests run on their own threads at a "
    "lower priority",
    "[transport][background]") {
  TransportFixture f(2);
  const int base = ::getpriority(PRIO_PROCESS, 0);
  // Background work waits behind background work only: a blocked background
  // request leaves the foreground workers free.
  auto heavy = f.Send("/block-heavy", 3, /*background=*/true);
  REQUIRE(f.observed.WaitRunning(3, 1));
  auto light = f.Send("/light", 3);
  CHECK(light->ReadResponse().status == 200);
  f.observed.OpenGate();
  CHECK(heavy->ReadResponse().status == 200);
  CHECK(f.observed.Nice("/light") == base);
  CHECK(f.observed.Nice("/block-heavy") == std::min(19, base + 10));
}

// One keep-alive worker holds both connections of these tests between
// requests (it serves every request ready on them from one epoll wait); the
// other workers are free.
TransportOptions OneKeepAliveWorker() {
  TransportOptions options;
  options.worker_threads = 4;
  options.keep_alive_workers = 1;
  options.worker_linger = std::chrono::seconds(30);
  return options;
}

// Connections `a` and `b`, each having had one request answered: both held.
std::pair<std::unique_ptr<RawConnection>, std::unique_ptr<RawConnection>> TwoHeldConnections(
    TransportFixture& f) {
  auto a = f.Send("/first-a", 1);
  auto b = f.Send("/first-b", 2);
  REQUIRE(a->ReadResponse().status == 200);
  REQUIRE(b->ReadResponse().status == 200);
  return {std::move(a), std::move(b)};
}

std::string Get(const std::string& target, uint64_t lane) {
  return "GET " + target + " HTTP/1.1\r\nHost: t\r\nX-Lane: " + std::to_string(lane) + "\r\n\r\n";
}

TEST_CASE(
    "Transport: a keep-alive worker stuck in one request lets go of its other "
    "connections within max_held_wait",
    "[transport][keep-alive]") {
  TransportOptions options = OneKeepAliveWorker();
  options.max_held_wait = milliseconds(2);
  TransportFixture f(options);
  auto [a, b] = TwoHeldConnections(f);
  // a's request blocks the worker holding both connections...
  REQUIRE(a->Send(Get("/block-a", 1)));
  REQUIRE(f.observed.WaitRunning(1, 1));
  // ...and b's is answered by another worker while it still does.
  REQUIRE(b->Send(Get("/after-b", 2)));
  CHECK(b->ReadResponse(std::chrono::seconds(5)).status == 200);
  CHECK(f.observed.WaitRunning(1, 1));
  // b goes on being served, and a is answered once its request ends.
  REQUIRE(b->Send(Get("/again-b", 2)));
  CHECK(b->ReadResponse(std::chrono::seconds(5)).status == 200);
  f.observed.OpenGate();
  CHECK(a->ReadResponse().status == 200);
  REQUIRE(a->Send(Get("/next-a", 1)));
  CHECK(a->ReadResponse().status == 200);
}

TEST_CASE(
    "Transport: a request that begins a long wait hands its worker's other "
    "connections on at once",
    "[transport][keep-alive]") {
  TransportOptions options = OneKeepAliveWorker();
  options.max_held_wait = std::chrono::seconds(60);  // only BeginLongWait lets go
  TransportFixture f(options);
  auto [a, b] = TwoHeldConnections(f);
  REQUIRE(a->Send(Get("/long-wait-a", 1)));
  REQUIRE(f.observed.WaitRunning(1, 1));
  REQUIRE(b->Send(Get("/after-b", 2)));
  CHECK(b->ReadResponse(std::chrono::seconds(5)).status == 200);
  f.observed.OpenGate();
  CHECK(a->ReadResponse().status == 200);
}

TEST_CASE(
    "Transport: held connections past max_held_per_worker, and past their "
    "linger, are served from the reactor and time out there",
    "[transport][keep-alive]") {
  TransportOptions options = OneKeepAliveWorker();
  options.max_held_per_worker = 1;
  options.worker_linger = milliseconds(50);
  options.keep_alive_timeout = milliseconds(400);
  TransportFixture f(options);
  std::vector<std::unique_ptr<RawConnection>> connections;
  for (int i = 0; i < 3; ++i) connections.push_back(f.Send("/first", 3));
  for (int round = 0; round < 5; ++round) {
    for (auto& c : connections) {
      REQUIRE(c->ReadResponse().status == 200);
      REQUIRE(c->Send(Get("/round" + std::to_string(round), 3)));
    }
  }
  for (auto& c : connections) CHECK(c->ReadResponse().status == 200);
  // Idle: each leaves its worker after the linger, and the reactor closes it
  // after keep_alive_timeout (a held connection never outlives it).
  for (auto& c : connections) CHECK(c->ClosedByPeer(std::chrono::seconds(5)));
}

TEST_CASE("FairQueue: round robin across lanes, within each lane's cap", "[transport][fair]") {
  FairQueue<int> q(/*per_lane_cap=*/2, /*total_cap=*/3);
  for (int i = 0; i < 4; ++i) q.Push(1, 10 + i);
  q.Push(2, 20);
  q.Push(3, 30);
  uint64_t lane;
  int item;
  std::vector<int> got;
  while (q.Pop(&lane, &item)) got.push_back(item);
  // One from each lane in turn, until the total cap of 3 is reached.
  CHECK(got == std::vector<int>{10, 20, 30});
  CHECK(q.running() == 3);
  CHECK_FALSE(q.HasRunnable());
  q.Done(2);
  REQUIRE(q.Pop(&lane, &item));
  CHECK(item == 11);
  // Lane 1 is at its cap of 2: nothing else may run from it.
  q.Done(3);
  CHECK_FALSE(q.Pop(&lane, &item));
  CHECK_FALSE(q.TryRunInline(1));
  CHECK(q.TryRunInline(4));  // another lane may
  q.Done(4);
  q.Done(1);
  REQUIRE(q.Pop(&lane, &item));
  CHECK(item == 12);
  // Nothing runs inline while something queued could run instead.
  q.Done(1);
  CHECK(q.HasRunnable());
  CHECK_FALSE(q.TryRunInline(5));
  CHECK(q.queued() == 1);
}

// ---------------------------------------------------------------------------
// Streamed exchanges

// FNV-1a, to compare bodies of megabytes.
constexpr uint64_t kFnvBasis = 14695981039346656037ull;
uint64_t Fnv(uint64_t h, std::string_view data) {
  for (char ch : data) {
    h ^= static_cast<unsigned char>(ch);
    h *= 1099511628211ull;
  }
  return h;
}

// Bytes that differ at every offset, so a lost or repeated piece shows.
std::string Pattern(size_t n, uint32_t seed) {
  std::string out(n, '\0');
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    out[i] = static_cast<char>(x);
  }
  return out;
}

// What a streaming handler ended with, collected on the worker and checked
// on the main thread.
struct Outcome {
  std::string target;
  absl::Status status;
  milliseconds took{0};
  uint64_t bytes = 0;
};

class Outcomes {
 public:
  void Add(Outcome o) {
    absl::MutexLock lock(&mu_);
    all_.push_back(std::move(o));
    added_.SignalAll();
  }
  // The n-th outcome (from 0), waiting up to 20 s for it.
  std::optional<Outcome> Wait(size_t n) {
    absl::MutexLock lock(&mu_);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (all_.size() <= n && !added_.WaitWithDeadline(&mu_, deadline)) {
    }
    if (all_.size() <= n) return std::nullopt;
    return all_[n];
  }

 private:
  absl::Mutex mu_;
  absl::CondVar added_;
  std::vector<Outcome> all_ ABSL_GUARDED_BY(mu_);
};

// The value of query parameter `name` in `target` (0 if absent).
size_t QueryNumber(std::string_view target, std::string_view name) {
  const std::string key = std::string(name) + "=";
  const size_t at = target.find(key);
  if (at == std::string_view::npos) return 0;
  return std::stoul(std::string(target.substr(at + key.size())));
}

// A transport whose routes stream: POST /sum reads its body with ReadBody
// and answers its length and hash; GET /stream?bytes=N&chunk=M answers N
// pattern bytes in chunks of about M; GET /unfinished starts a stream and
// returns; GET /flood writes until the client stops taking it; anything else
// answers "hello" (without reading a body streamed with X-Stream). X-Lane
// and X-Background as in TransportFixture.
struct StreamFixture {
  explicit StreamFixture(TransportOptions options) {
    transport = std::make_unique<HttpTransport>(options);
    transport->set_head_handler([](const RequestHead& head) {
      HeadDecision decision;
      auto lane = head.Header("X-Lane");
      decision.lane.key = lane.has_value() ? std::stoull(std::string(*lane)) : 1;
      decision.lane.background = head.Header("X-Background").has_value();
      decision.streams_body = head.target == "/sum" || head.Header("X-Stream").has_value();
      return decision;
    });
    transport->set_request_handler([this](Exchange& ex) { Handle(ex); });
    auto bound = transport->Bind("127.0.0.1", 0);
    if (!bound.ok()) throw std::runtime_error(bound.status().ToString());
    port = *bound;
    if (!transport->Start().ok()) throw std::runtime_error("start");
  }
  ~StreamFixture() { transport->Stop(); }

  void Handle(Exchange& ex) {
    const auto start = std::chrono::steady_clock::now();
    const std::string target(ex.target());
    Outcome o;
    o.target = target;
    auto took = [&start] {
      return std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - start);
    };
    if (target == "/sum") {
      // An odd buffer size, so reads do not line up with the client's sends.
      char buf[7001];
      uint64_t hash = kFnvBasis;
      for (;;) {
        absl::StatusOr<size_t> n = ex.ReadBody(buf, sizeof(buf));
        if (!n.ok()) {
          o.status = n.status();
          break;
        }
        if (*n == 0) break;
        hash = Fnv(hash, std::string_view(buf, *n));
        o.bytes += *n;
      }
      o.took = took();
      ex.response().status = o.status.ok() ? 200 : 408;
      ex.response().body = std::to_string(o.bytes) + " " + std::to_string(hash);
    } else if (target.rfind("/stream", 0) == 0) {
      const size_t bytes = QueryNumber(target, "bytes");
      const size_t chunk = QueryNumber(target, "chunk");
      const std::string data = Pattern(bytes, 7);
      o.status = ex.StartStreamedResponse(200, {{"Content-Type", "application/octet-stream"}});
      // Chunks of varying sizes around `chunk`, from 1 byte up.
      for (size_t at = 0, i = 0; o.status.ok() && at < bytes; ++i) {
        const size_t n = std::min(bytes - at, i % 7 == 0 ? 1 + i % 3 : chunk + i * 97 % 4096);
        o.status = ex.WriteChunk(std::string_view(data).substr(at, n));
        at += n;
        o.bytes = at;
      }
      if (o.status.ok()) o.status = ex.FinishStreamedResponse();
      o.took = took();
    } else if (target == "/unfinished") {
      o.status = ex.StartStreamedResponse(200);
      if (o.status.ok()) o.status = ex.WriteChunk("partial");
      o.took = took();
    } else if (target == "/flood") {
      const std::string data = Pattern(256 << 10, 3);
      o.status = ex.StartStreamedResponse(200);
      while (o.status.ok() && o.bytes < (size_t{1} << 30)) {
        o.status = ex.WriteChunk(data);
        if (o.status.ok()) o.bytes += data.size();
      }
      o.took = took();
    } else {
      ex.response().body = "hello";
      return;
    }
    outcomes.Add(std::move(o));
  }

  Outcomes outcomes;
  std::unique_ptr<HttpTransport> transport;
  int port = 0;
};

// Reads responses off a connection, decoding chunked bodies itself.
class ResponseReader {
 public:
  explicit ResponseReader(int fd) : fd_(fd) {}

  struct Head {
    int status = 0;                              // 0: none
    std::map<std::string, std::string> headers;  // names in lower case
    std::string Header(const std::string& name) const {
      auto it = headers.find(name);
      return it == headers.end() ? std::string() : it->second;
    }
  };

  Head ReadHead() {
    Head head;
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill()) return head;
    }
    const std::string text = buf_.substr(0, end);
    buf_.erase(0, end + 4);
    if (text.size() < 12) return head;
    head.status = std::stoi(text.substr(9, 3));
    size_t pos = text.find("\r\n");
    while (pos != std::string::npos) {
      pos += 2;
      const size_t eol = text.find("\r\n", pos);
      const std::string line = text.substr(pos, eol == std::string::npos ? eol : eol - pos);
      pos = eol;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      size_t v = colon + 1;
      while (v < line.size() && line[v] == ' ') ++v;
      head.headers[name] = line.substr(v);
    }
    return head;
  }

  bool ReadExact(size_t n, std::string* out) {
    while (buf_.size() < n) {
      if (!Fill()) return false;
    }
    out->append(buf_, 0, n);
    buf_.erase(0, n);
    return true;
  }

  // Appends a chunked body to *body; true if its terminating chunk arrived
  // (false: the connection ended first, or the framing is wrong).
  bool ReadChunked(std::string* body) {
    for (;;) {
      size_t eol;
      while ((eol = buf_.find("\r\n")) == std::string::npos) {
        if (!Fill()) return false;
      }
      const std::string line = buf_.substr(0, eol);
      buf_.erase(0, eol + 2);
      if (line.empty() || line.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
        return false;
      }
      const size_t size = std::stoul(line, nullptr, 16);
      std::string crlf;
      if (size == 0) return ReadExact(2, &crlf) && crlf == "\r\n";
      if (!ReadExact(size, body) || !ReadExact(2, &crlf) || crlf != "\r\n") return false;
    }
  }

  // True if the server closed the connection, with nothing more to read.
  bool AtEof() { return buf_.empty() && !Fill(); }

 private:
  bool Fill() {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 10000) <= 0) return false;
    char buf[64 << 10];
    const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
    if (n <= 0) return false;
    buf_.append(buf, static_cast<size_t>(n));
    return true;
  }

  int fd_;
  std::string buf_;
};

std::string Post(const std::string& target, size_t length, const std::string& extra = "") {
  return "POST " + target + " HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(length) +
         "\r\n" + extra + "\r\n";
}

TEST_CASE(
    "Transport: a streamed request body reaches the handler whole and in "
    "order, and the connection goes on",
    "[transport][stream]") {
  TransportOptions options;
  options.worker_threads = 2;
  StreamFixture f(options);
  RawConnection conn(f.port);
  ResponseReader reader(conn.fd());
  const std::string body = Pattern((5 << 20) + 12345, 1);
  const std::string expected =
      std::to_string(body.size()) + " " + std::to_string(Fnv(kFnvBasis, body));
  // The start of the body comes with the head, so the transport holds some
  // of it before the handler reads the rest from the socket.
  REQUIRE(conn.Send(Post("/sum", body.size()) + body.substr(0, 100000)));
  for (size_t at = 100000; at < body.size(); at += 65536) {
    REQUIRE(conn.Send(std::string_view(body).substr(at, 65536)));
  }
  auto head = reader.ReadHead();
  CHECK(head.status == 200);
  std::string got;
  CHECK(reader.ReadExact(std::stoul(head.Header("content-length")), &got));
  CHECK(got == expected);
  auto outcome = f.outcomes.Wait(0);
  REQUIRE(outcome.has_value());
  CHECK(outcome->status.ok());
  CHECK(outcome->bytes == body.size());

  // A small streamed body pipelined with the next request: the handler gets
  // exactly its body, and the next request is served after it.
  const std::string small = Pattern(100, 2);
  REQUIRE(conn.Send(Post("/sum", small.size()) + small + "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"));
  head = reader.ReadHead();
  CHECK(head.status == 200);
  got.clear();
  CHECK(reader.ReadExact(std::stoul(head.Header("content-length")), &got));
  CHECK(got == "100 " + std::to_string(Fnv(kFnvBasis, small)));
  head = reader.ReadHead();
  CHECK(head.status == 200);
  got.clear();
  CHECK(reader.ReadExact(std::stoul(head.Header("content-length")), &got));
  CHECK(got == "hello");
  CHECK(f.transport->Counters().buffered_bytes == 0);
}

TEST_CASE(
    "Transport: a streamed request body that stops arriving fails within its "
    "deadline and closes the connection",
    "[transport][stream]") {
  TransportOptions options;
  options.worker_threads = 2;
  options.io_timeout = milliseconds(200);
  StreamFixture f(options);
  // 1 MiB at 1 MiB/s plus 200 ms: about 1.2 s.
  const size_t length = 1 << 20;
  {
    RawConnection conn(f.port);
    REQUIRE(conn.Send(Post("/sum", length) + Pattern(1000, 4)));
    auto outcome = f.outcomes.Wait(0);
    REQUIRE(outcome.has_value());
    CHECK(outcome->status.code() == absl::StatusCode::kDeadlineExceeded);
    CHECK(outcome->bytes == 1000);
    CHECK(outcome->took >= milliseconds(1100));
    CHECK(outcome->took < milliseconds(5000));
    Reply reply = conn.ReadResponse();
    CHECK(reply.status == 408);
    CHECK(reply.Header("Connection") == "close");
    CHECK(conn.ClosedByPeer());
    CHECK(f.transport->Counters().body_timeouts_total == 1);
  }
  {
    // The client goes away in the middle of the body.
    RawConnection conn(f.port);
    REQUIRE(conn.Send(Post("/sum", length) + Pattern(1000, 5)));
    conn.ShutdownWrite();
    auto outcome = f.outcomes.Wait(1);
    REQUIRE(outcome.has_value());
    CHECK(outcome->status.code() == absl::StatusCode::kUnavailable);
    CHECK(outcome->took < milliseconds(1000));
    CHECK(conn.ClosedByPeer());
  }
  {
    // A handler that stops reading: the rest of the body is never taken for
    // a request.
    RawConnection conn(f.port);
    REQUIRE(conn.Send(Post("/other", 20, "X-Stream: 1\r\n") + std::string(20, 'x') +
                      "GET /hello HTTP/1.1\r\n\r\n"));
    Reply reply = conn.ReadResponse();
    CHECK(reply.status == 200);
    CHECK(reply.Header("Connection") == "close");
    CHECK(conn.ClosedByPeer());
    CHECK(conn.ReadResponse(milliseconds(100)).status == 0);
  }
}

TEST_CASE(
    "Transport: a streamed response of many chunks arrives whole, and the "
    "connection goes on",
    "[transport][stream]") {
  TransportOptions options;
  options.worker_threads = 2;
  StreamFixture f(options);
  const size_t bytes = (6 << 20) + 777;
  const std::string expected = Pattern(bytes, 7);
  for (const bool background : {false, true}) {
    RawConnection conn(f.port);
    ResponseReader reader(conn.fd());
    const std::string lane = background ? "X-Background: 1\r\n" : "";
    for (int round = 0; round < 2; ++round) {
      REQUIRE(conn.Send("GET /stream?bytes=" + std::to_string(bytes) +
                        "&chunk=60000 HTTP/1.1\r\nHost: t\r\n" + lane + "\r\n"));
      auto head = reader.ReadHead();
      CHECK(head.status == 200);
      CHECK(head.Header("transfer-encoding") == "chunked");
      CHECK(head.Header("content-length").empty());
      CHECK(head.Header("content-type") == "application/octet-stream");
      std::string body;
      CHECK(reader.ReadChunked(&body));
      CHECK(body.size() == bytes);
      CHECK(body == expected);
    }
    // The same connection serves the next request.
    REQUIRE(conn.Send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"));
    auto head = reader.ReadHead();
    CHECK(head.status == 200);
    std::string body;
    CHECK(reader.ReadExact(5, &body));
    CHECK(body == "hello");
  }
  // A client library decodes it too.
  httplib::Client client("127.0.0.1", f.port);
  auto res = client.Get("/stream?bytes=" + std::to_string(bytes) + "&chunk=100000");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body == expected);
  for (size_t i = 0; i < 5; ++i) {
    auto outcome = f.outcomes.Wait(i);
    REQUIRE(outcome.has_value());
    CHECK(outcome->status.ok());
  }
  CHECK(f.transport->Counters().aborted_responses_total == 0);
}

TEST_CASE(
    "Transport: a streamed response the handler does not finish ends with "
    "the connection and no terminating chunk",
    "[transport][stream]") {
  TransportOptions options;
  options.worker_threads = 2;
  StreamFixture f(options);
  RawConnection conn(f.port);
  ResponseReader reader(conn.fd());
  REQUIRE(conn.Send("GET /unfinished HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto head = reader.ReadHead();
  CHECK(head.status == 200);
  CHECK(head.Header("transfer-encoding") == "chunked");
  std::string body;
  CHECK_FALSE(reader.ReadChunked(&body));
  CHECK(body == "partial");
  CHECK(reader.AtEof());
  CHECK(f.transport->Counters().aborted_responses_total == 1);
}

TEST_CASE(
    "Transport: a client that does not read a streamed response fails the "
    "write within its deadline and frees the worker",
    "[transport][stream]") {
  TransportOptions options;
  options.worker_threads = 2;  // one worker for tenant work
  options.io_timeout = milliseconds(200);
  StreamFixture f(options);
  RawConnection stalled(f.port, nullptr, /*receive_buffer=*/4096);
  REQUIRE(stalled.Send("GET /flood HTTP/1.1\r\nHost: t\r\n\r\n"));
  auto outcome = f.outcomes.Wait(0);
  REQUIRE(outcome.has_value());
  CHECK(outcome->status.code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(outcome->bytes < (size_t{1} << 30));
  CHECK(outcome->took < milliseconds(15000));
  // The lane's only worker is free again.
  RawConnection next(f.port);
  REQUIRE(next.Send("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"));
  Reply reply = next.ReadResponse();
  CHECK(reply.status == 200);
  CHECK(reply.body == "hello");
  CHECK(f.transport->Counters().aborted_responses_total == 1);
  CHECK(stalled.ClosedByPeer(std::chrono::seconds(20)));
}

}  // namespace
}  // namespace tenancy::testing
