// HttpTransport: connections, threads and timeouts for tenancyd, with
// cpp-httplib 0.11.4 doing the HTTP parsing and response writing.
//
// Why not httplib's own listen loop. As Debian compiles it, httplib::Server
// listens with a backlog of 5, gives each connection a worker thread for its
// whole life (idle keep-alive included), and bounds reads only per recv()
// call, so a client sending one byte a second holds a worker forever: a few
// slow clients stop the server. Header count is unbounded too. The compiled
// library's limits (CPPHTTPLIB_*) cannot be changed from here.
//
// What this does instead:
//   - one reactor thread (epoll) accepts connections and reads each request's
//     head (request line and headers, and a small body) without a worker. A
//     connection reaches a worker only when its request is complete in
//     memory, so slow or idle clients never hold a worker; their heads are
//     bounded in bytes, header lines and time, and refused with 400/408/414/
//     431 (JSON error body, connection closed) when they break a bound;
//   - a fixed pool of workers runs httplib's Server::process_request on the
//     buffered request through a Stream of ours, so every read has a
//     deadline and writes are coalesced into one send();
//   - a head handler (the router's admission: route, credentials, limits)
//     decides on each request as soon as its head has arrived, before any
//     body byte is waited for, on whichever thread owns the connection. A
//     refusal is written right there, without httplib and without waking a
//     worker; an admitted request carries the handler's context (its permit)
//     to the worker that runs it;
//   - the request's handler (httplib's pre-routing handler, see
//     http_server.cc) reads larger bodies itself through Exchange::ReadBody,
//     under a deadline that allows min_transfer_bytes_per_second;
//   - after a response, a worker waits briefly (worker_linger) for the next
//     request on the same connection, which keeps keep-alive clients on one
//     thread as httplib does, but gives the connection back to the reactor
//     at once when another connection is waiting for a worker;
//   - a connection whose request body was not read (a refusal in
//     pre-routing) is closed after the response, with a bounded "lingering
//     close" in the reactor so the client reads the response before the
//     socket is reset.
//
// Thread safety: Bind, Start and Stop are called from one thread. Current()
// is for the worker thread serving a request. Counters() is safe from any
// thread.

#ifndef TENANCY_SERVER_HTTP_TRANSPORT_H_
#define TENANCY_SERVER_HTTP_TRANSPORT_H_

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace tenancy::internal {

struct TransportOptions {
  // Performance

  // Threads that run requests. Default: 8. Fixed after Start.
  int worker_threads = 8;
  // How long a worker waits for the next request on a keep-alive connection
  // before handing it to the reactor (at once if another connection waits
  // for a worker). Default: 100 ms.
  std::chrono::milliseconds worker_linger{100};
  // listen() backlog. Default: 1024.
  int listen_backlog = 1024;
  // Workers that may wait on a slow client at once: reading a body that is
  // not in memory yet, or writing a response the client does not take. A
  // request that would exceed it is refused (503, or the connection closed
  // for a response), so that at least one worker always serves clients that
  // keep up. 0: worker_threads - 1 (at least 1).
  int max_slow_io_workers = 0;

  // Limits

  // Open connections; more are answered 503 and closed. Default: 1024.
  size_t max_connections = 1024;
  // Request line, in bytes; longer is 414. Default: 8 KiB.
  size_t max_request_line_bytes = 8 << 10;
  // Request line and headers together, in bytes; more is 431.
  // Default: 16 KiB.
  size_t max_head_bytes = 16 << 10;
  // Header lines; more is 431. Default: 100.
  size_t max_header_count = 100;
  // Bodies up to this size are read by the reactor before the request goes
  // to a worker, so that a slow small upload holds no worker.
  // Default: 64 KiB.
  size_t prebuffer_body_bytes = 64 << 10;
  // Requests served on one connection before it is closed. Default: 1000.
  size_t keep_alive_max_requests = 1000;

  // Timeouts

  // From the first byte of a request to its complete head (and prebuffered
  // body); later is 408. Default: 5 s.
  std::chrono::milliseconds head_timeout{5000};
  // An idle keep-alive connection is closed after this. Default: 5 s.
  std::chrono::milliseconds keep_alive_timeout{5000};
  // A body read or response write that makes no progress for this long
  // fails. Default: 1 s.
  std::chrono::milliseconds io_timeout{1000};
  // A body or response must move at least this fast on average (on top of
  // io_timeout), or it fails. Default: 1 MiB/s.
  uint64_t min_transfer_bytes_per_second = uint64_t{1} << 20;
  // After a refusal with an unread body, the reactor discards what the client
  // still sends for at most this long and this many bytes, then closes.
  // Default: 1 s, 1 MiB.
  std::chrono::milliseconds drain_timeout{1000};
  size_t drain_max_bytes = 1 << 20;
};

// Counters for /metrics. Intentionally copyable.
struct TransportCounters {
  int64_t open_connections = 0;
  int64_t queued_requests = 0;  // complete requests waiting for a worker
  int64_t busy_workers = 0;
  uint64_t accepted_total = 0;
  uint64_t refused_connections_total = 0;  // over max_connections
  uint64_t head_timeouts_total = 0;        // 408
  uint64_t bad_heads_total = 0;            // 400, 414, 431 from the reactor
  uint64_t slow_io_refusals_total = 0;     // max_slow_io_workers reached
};

struct Connection;
class HttpTransport;

// Finds header `name` (case-insensitive) in a raw request head (request line
// and CRLF-separated header lines, as the transport checked them). Returns
// its value with surrounding whitespace trimmed, or nullopt. *repeated is set
// when the header appears more than once (the first value is returned).
std::optional<std::string_view> FindRawHeader(std::string_view raw_head,
                                              std::string_view name,
                                              bool* repeated = nullptr);

// A request whose head has arrived, as the head handler sees it. Valid only
// during the call.
struct RequestHead {
  // Request line and headers exactly as received. httplib 0.11.4
  // percent-decodes the header values it hands out ("key%00" becomes "key"),
  // so credentials are read from here.
  std::string_view raw;
  std::string_view method;
  std::string_view target;
  uint64_t body_length = 0;  // Content-Length (0 if none)
  bool has_transfer_encoding = false;
  // A refusal of this request closes the connection: its body would be
  // unread, or the server is stopping.
  bool refusal_closes = false;
  const std::string* remote_ip = nullptr;

  std::optional<std::string_view> Header(std::string_view name,
                                         bool* repeated = nullptr) const {
    return FindRawHeader(raw, name, repeated);
  }
};

// State a head handler attaches to an admitted request (the router's
// prepared call, holding the request's permit). Destroyed when the request
// is done.
class ExchangeContext {
 public:
  ExchangeContext() = default;
  ExchangeContext(const ExchangeContext&) = delete;
  ExchangeContext& operator=(const ExchangeContext&) = delete;
  virtual ~ExchangeContext() = default;
};

// What a head handler decided.
struct HeadDecision {
  // Empty: admitted. Otherwise the complete HTTP response of the refusal,
  // written as is (with "Connection: close" when RequestHead::refusal_closes).
  std::string refusal;
  // Admitted: handed to the request's Exchange.
  std::unique_ptr<ExchangeContext> context;
};

// Called once per request, as soon as its head has arrived. Must not block
// (it runs on the reactor thread too) and must be thread-safe.
using HeadHandler = std::function<HeadDecision(const RequestHead& head)>;

// What the request handler sees of the request's connection. Valid during the
// request, on the worker thread serving it.
class Exchange {
 public:
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Content-Length of the request (0 if none).
  uint64_t body_length() const { return body_length_; }
  // True if the request has a Transfer-Encoding (tenancyd refuses them).
  bool has_transfer_encoding() const { return has_transfer_encoding_; }

  // Reads the whole body (body_length() bytes) into *out. Call at most once,
  // after the request is admitted. DEADLINE_EXCEEDED if the client is too
  // slow, UNAVAILABLE if it goes away, RESOURCE_EXHAUSTED if the body is not
  // in memory yet and max_slow_io_workers workers already wait on clients.
  absl::Status ReadBody(std::string* out);

  // The handler has taken the request over (set by the pre-routing handler):
  // without it the transport assumes httplib refused the request itself and
  // closes the connection.
  void MarkHandled() { handled_ = true; }
  // Close the connection after the response (a protocol error, a refusal).
  void CloseAfterResponse() { close_after_ = true; }

  // The peer's address, as text.
  const std::string& remote_ip() const;

  // The request's head exactly as received (request line and headers, CRLF
  // line ends). httplib 0.11.4 percent-decodes header values ("key%00"
  // becomes "key", "%0d%0a" a line break), so credentials are read from here.
  std::string_view raw_head() const { return raw_head_; }

  // The value of header `name` in the raw head (see FindRawHeader).
  std::optional<std::string_view> RawHeader(std::string_view name,
                                            bool* repeated = nullptr) const {
    return FindRawHeader(raw_head_, name, repeated);
  }

  // The head handler's context for this request, or nullptr; TakeContext
  // hands it over to the caller.
  ExchangeContext* context() const { return context_.get(); }
  std::unique_ptr<ExchangeContext> TakeContext() { return std::move(context_); }

  // True if the connection will be closed after this response.
  bool WillClose() const;

 private:
  friend class HttpTransport;
  Exchange(HttpTransport* transport, Connection* connection,
           httplib::Stream* stream, std::string_view raw_head,
           uint64_t body_length, bool has_transfer_encoding,
           std::unique_ptr<ExchangeContext> context)
      : transport_(transport),
        connection_(connection),
        stream_(stream),
        raw_head_(raw_head),
        body_length_(body_length),
        has_transfer_encoding_(has_transfer_encoding),
        context_(std::move(context)) {}

  HttpTransport* const transport_;
  Connection* const connection_;
  httplib::Stream* const stream_;
  const std::string_view raw_head_;
  const uint64_t body_length_;
  const bool has_transfer_encoding_;
  bool handled_ = false;
  bool close_after_ = false;
  bool body_read_ = false;
  bool body_complete_ = false;
  size_t body_from_buffer_ = 0;  // body bytes taken from the read buffer
  std::unique_ptr<ExchangeContext> context_;
};

class HttpTransport final : public httplib::Server {
 public:
  explicit HttpTransport(TransportOptions options);
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;
  // Stops if still running.
  ~HttpTransport() override;

  // Binds and listens on host:port (port 0 picks a free port); returns the
  // port. UNAVAILABLE if the address cannot be bound.
  absl::StatusOr<int> Bind(const std::string& host, int port);

  // Installs the head handler. REQUIRES: called before Start.
  void set_head_handler(HeadHandler handler) { head_handler_ = std::move(handler); }

  // Starts the reactor and the workers. REQUIRES: Bind succeeded.
  absl::Status Start();

  // Stops accepting, closes idle and half-received connections, lets the
  // workers finish every request already received (answered with
  // "Connection: close"), and joins every thread. Idempotent.
  void Stop();

  // The exchange of the request the calling thread is serving, or nullptr.
  static Exchange* Current();

  // True once Stop() has begun.
  bool stopping() const { return stopping_flag_.load(std::memory_order_acquire); }

  TransportCounters Counters() const;

  // What the reactor knows about the request at the front of a buffer.
  struct Frame;

 private:
  friend class Exchange;
  class Worker;
  class ConnectionStream;

  enum class ServeResult { kKeepAlive, kClose, kDrainAndClose };

  // httplib::Server's per-connection entry point; not used (we accept
  // ourselves), but overridden so nothing can reach httplib's thread pool.
  bool process_and_close_socket(socket_t sock) override;

  void ReactorLoop();
  void AcceptAll();
  void OnReadable(Connection* c);
  void Sweep(std::chrono::steady_clock::time_point now);
  void WorkerLoop(Worker* w);
  void Serve(Worker* w, Connection* c);
  ServeResult ServeOne(Connection* c);
  // Waits for the next request on `c`; true if one is ready in c's buffer
  // (the worker keeps c), false if `c` was handed on or closed.
  bool Linger(Worker* w, Connection* c);

  // Reads what is available without blocking. False on EOF or error.
  bool ReadAvailable(Connection* c);
  // Skips blank lines before a request and inspects the buffer.
  Frame InspectBuffered(Connection* c);

  // Moves the request at the front of c's buffer along: checks its head,
  // asks the head handler once, answers refusals (and goes on to the next
  // pipelined request). kReady: an admitted request is complete in memory.
  // kNeedMore: more bytes are needed (the caller still owns c). kGone: c was
  // closed or handed to the reactor to drain; the caller must not touch it.
  enum class Step { kReady, kNeedMore, kGone };
  Step Advance(Connection* c);

  // Ownership hand-offs (see the .cc for the protocol).
  void DispatchLocked(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandBack(Connection* c);
  void Requeue(Connection* c);
  void StartDraining(Connection* c);
  void RefuseAndDrain(Connection* c, int status, std::string_view code,
                      std::string_view message);
  void Close(Connection* c);
  void ArmLocked(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool TryAcquireSlowIo();
  void ReleaseSlowIo();

  // Constant after construction / Start.
  const TransportOptions options_;
  HeadHandler head_handler_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: tells the reactor to stop
  std::thread reactor_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool started_ = false;
  bool stopped_ = false;
  bool accept_paused_ = false;  // reactor thread only

  mutable absl::Mutex mu_;
  absl::CondVar work_cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<Connection*> connections_ ABSL_GUARDED_BY(mu_);
  std::deque<Connection*> ready_ ABSL_GUARDED_BY(mu_);
  int idle_workers_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Worker*> lingering_ ABSL_GUARDED_BY(mu_);

  std::atomic<bool> stopping_flag_{false};  // mirrors stopping_, lock-free
  std::atomic<int64_t> busy_workers_{0};
  std::atomic<uint64_t> accepted_total_{0};
  std::atomic<uint64_t> refused_connections_total_{0};
  std::atomic<uint64_t> head_timeouts_total_{0};
  std::atomic<uint64_t> bad_heads_total_{0};
  std::atomic<uint64_t> slow_io_refusals_total_{0};
  int slow_io_limit_ = 1;  // constant after Start
  std::atomic<int> slow_io_in_use_{0};
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_HTTP_TRANSPORT_H_
