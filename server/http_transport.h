// HttpTransport: tenancyd's HTTP/1.1 connections, threads and fairness.
//
// It frames requests and writes responses itself (cpp-httplib is not on the
// server path), so nothing it does is decided by a library default: no
// `Range` handling, no response compression, no header map nobody reads, one
// parse of each head.
//
// Threads and who owns a connection:
//   - one reactor thread (epoll) accepts connections, reads request heads,
//     asks the head handler about each head as soon as it is complete (before
//     any body byte is waited for), reads admitted bodies into memory, and
//     finishes responses that the client does not take at once. Slow or idle
//     clients therefore hold no worker, only bounded memory;
//   - foreground workers run requests whose bodies are in memory (or
//     streamed, below). About one per CPU of them are keep-alive workers:
//     between requests a connection stays with one of them, in that
//     worker's own epoll set, for worker_linger; the worker serves every
//     request ready on its connections from one wakeup, as an event loop
//     does (no hand-off between threads, and no sleep per request while
//     clients keep it busy). One that runs a request for max_held_wait, or
//     starts a long wait or a stream, gives its other connections to the
//     reactor, which hands their requests to the other workers;
//   - background workers, at a lower OS priority (nice), run the requests the
//     head handler marks heavy (large batches and scans), and send their
//     responses (and any response of 256 KiB or more) while the client keeps
//     up, so that a small request
//     of another tenant runs next instead of after them. The reactor and the
//     foreground workers ask the kernel for a short scheduler slice, so their
//     wakeups preempt such work; every send is at most 64 KiB, so that no
//     single system call holds a CPU for long on a kernel without
//     preemption.
//
// Isolation (one tenant, or one client, never takes the server):
//   - connections: at most max_connections in all and
//     max_connections_per_peer per client address. At either cap the oldest
//     idle keep-alive connection (of that peer, or of anyone) is closed to
//     make room; only when none is idle is the new one refused (503,
//     Retry-After);
//   - workers: admitted requests wait in a FairQueue per lane (tenant) and
//     workers take them round-robin across lanes; a lane runs at most
//     max_running_per_lane requests at once, and tenant work never takes the
//     last foreground worker, which stays for the control lane (admin
//     requests), served first;
//   - memory: request heads are bounded in bytes, lines and time; bodies and
//     unsent responses count against a per-lane buffer budget and a total
//     one (over either: 503 for a body, the connection closed for a
//     response); a response that has started is finished or its connection
//     closed, never cut short silently, and counted;
//   - time: heads, bodies and responses each have a deadline that allows
//     min_transfer_bytes_per_second; a client too slow is closed (408 when
//     nothing was answered yet).
//
// Streamed exchanges (tenant export and import): a head handler may set
// HeadDecision::streams_body. Such a request is dispatched as soon as its
// head is admitted, its body is neither read into memory nor counted against
// the buffer budgets, and the handler reads it with Exchange::ReadBody.
// Any handler may answer with a streamed response (chunked transfer
// encoding): Exchange::StartStreamedResponse, WriteChunk, and
// FinishStreamedResponse write straight from the worker, waiting for the
// client with the same deadlines as above (per body, and per chunk). A
// stream that fails (a client too slow or gone), a body left unread, or a
// response not finished closes the connection after the handler: a client
// never sees a cut-short exchange as a whole one. While a handler streams it
// holds its worker and its lane's running slot, so the caller (the router)
// must cap how many requests stream at once, and should put them on the
// background workers (Lane::background); the mechanism works on either.
//
// Thread safety: Bind, Start and Stop are called from one thread; Counters()
// is safe from any thread. Handlers are called concurrently.

#ifndef TENANCY_SERVER_HTTP_TRANSPORT_H_
#define TENANCY_SERVER_HTTP_TRANSPORT_H_

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
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "fair_queue.h"

namespace tenancy::internal {

// True if `name` is an HTTP field name (a token, RFC 9110 5.1).
bool IsHttpFieldName(std::string_view name);

struct TransportOptions {
  // Performance

  // Foreground threads that run requests. Default: 8. Fixed after Start.
  int worker_threads = 8;
  // Background threads for heavy requests. 0: max(1, worker_threads / 4).
  int background_threads = 0;
  // Added to the nice value of background threads (Linux, per thread).
  // Default: 10 (a nice-0 thread then gets about 90% of a contended core).
  int background_nice = 10;
  // The scheduler slice asked for the reactor and the foreground workers
  // (Linux 6.12 and later: sched_setattr's sched_runtime for a fair task;
  // earlier kernels ignore it). A thread with a shorter slice than the one
  // running may preempt it on wakeup, where the kernel would otherwise let
  // the running thread finish its slice (3 ms by default) first: a small
  // request then does not wait behind heavy work or a busy neighbour
  // process. 0: the kernel's default. Default: 100 us.
  std::chrono::microseconds foreground_slice{100};
  // How long a keep-alive connection stays with a keep-alive worker (below)
  // after its last request before it goes back to the reactor. 0: every
  // connection goes back to the reactor after each response. Default: 100 ms.
  std::chrono::milliseconds worker_linger{100};
  // Foreground workers that keep connections between requests, each in its
  // own epoll set, and serve every request ready on them in one wakeup (as
  // an event loop does) instead of a sleep and a wakeup per request.
  // 0: as many as the machine has CPUs (at most worker_threads). Fixed after
  // Start.
  int keep_alive_workers = 0;
  // Connections one keep-alive worker holds at most; more go back to the
  // reactor between requests. Bounds how many ready requests one worker
  // serves in a row (a request waits for at most this many others).
  // Default: 32.
  size_t max_held_per_worker = 32;
  // A keep-alive worker that has run one request this long gives its other
  // connections to the reactor, which hands their requests to other
  // workers: a slow request (a write stall, a cold read) holds up no other
  // connection for much longer than this. Default: 2 ms.
  std::chrono::milliseconds max_held_wait{2};
  // listen() backlog. Default: 1024.
  int listen_backlog = 1024;

  // Fairness

  // Requests one lane (tenant) may run at once on the foreground workers.
  // 0: max(1, worker_threads / 2). On the background workers:
  // max(1, background_threads / 2).
  int max_running_per_lane = 0;

  // Limits

  // Open connections in all, and per client address; see "Isolation".
  // Defaults: 1024 and 64.
  size_t max_connections = 1024;
  size_t max_connections_per_peer = 64;
  // Request line, in bytes; longer is 414. Default: 8 KiB.
  size_t max_request_line_bytes = 8 << 10;
  // Request line and headers together, in bytes; more is 431.
  // Default: 16 KiB.
  size_t max_head_bytes = 16 << 10;
  // Header lines; more is 431. Default: 100.
  size_t max_header_count = 100;
  // Requests served on one connection before it is closed. Default: 1000.
  size_t keep_alive_max_requests = 1000;
  // Bytes of request bodies being received and of responses waiting for a
  // slow client, per lane and in all. Default: 64 MiB and 512 MiB.
  size_t max_buffered_bytes_per_lane = size_t{64} << 20;
  size_t max_buffered_bytes = size_t{512} << 20;
  // Requests refused on their head that one connection may have answered in
  // one turn before others get theirs (a client pipelining refusals).
  // Default: 16.
  int max_refusals_per_turn = 16;

  // Timeouts

  // From the first byte of a request to its complete head; later is 408.
  // Default: 5 s.
  std::chrono::milliseconds head_timeout{5000};
  // An idle keep-alive connection is closed after this. Default: 5 s.
  std::chrono::milliseconds keep_alive_timeout{5000};
  // A body or response gets io_timeout plus its size at
  // min_transfer_bytes_per_second; later, the connection is closed.
  // Defaults: 1 s, 1 MiB/s.
  std::chrono::milliseconds io_timeout{1000};
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
  int64_t buffered_bytes = 0;  // bodies being received, responses unsent
  uint64_t accepted_total = 0;
  uint64_t refused_connections_total = 0;       // at max_connections
  uint64_t refused_peer_connections_total = 0;  // at max_connections_per_peer
  uint64_t evicted_idle_total = 0;              // idle keep-alive closed to make room
  uint64_t head_timeouts_total = 0;             // 408 before the head was complete
  uint64_t bad_heads_total = 0;                 // 400, 414, 431 from the reactor
  uint64_t body_timeouts_total = 0;             // 408: a body arrived too slowly
  uint64_t buffer_refusals_total = 0;           // 503: over a buffer budget
  uint64_t aborted_responses_total = 0;         // started, then the connection closed
};

// Finds header `name` (case-insensitive) in a raw request head (request line
// and CRLF-separated header lines, as the transport checked them). Returns
// its value with surrounding whitespace trimmed, or nullopt. *repeated is set
// when the header appears more than once (the first value is returned).
std::optional<std::string_view> FindRawHeader(std::string_view raw_head, std::string_view name,
                                              bool* repeated = nullptr);

// A request whose head has arrived, as the head handler sees it. Valid only
// during the call.
struct RequestHead {
  // Request line and headers exactly as received (header values are never
  // decoded, so credentials are compared byte for byte).
  std::string_view raw;
  std::string_view method;
  std::string_view target;
  uint64_t body_length = 0;  // Content-Length (0 if none)
  bool has_transfer_encoding = false;
  // An immediate answer to this request closes the connection: its body
  // would be unread, or the server is stopping.
  bool refusal_closes = false;
  const std::string* remote_ip = nullptr;

  std::optional<std::string_view> Header(std::string_view name, bool* repeated = nullptr) const {
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

// Where an admitted request waits for a worker. Intentionally copyable.
struct Lane {
  // Admin requests: served first, never capped.
  static constexpr uint64_t kControl = 0;
  // kControl, or a tenant's number + 1 (TenantLane).
  uint64_t key = kControl;
  // Heavy work: runs on the background workers.
  bool background = false;

  static uint64_t TenantLane(uint64_t tenant_number) { return tenant_number + 1; }
};

// What a head handler decided.
struct HeadDecision {
  // Non-empty: the complete HTTP response, written at once without a worker
  // (a refusal, or a constant answer), with "Connection: close" when
  // RequestHead::refusal_closes.
  std::string immediate;
  // Admitted: handed to the request's Exchange.
  std::unique_ptr<ExchangeContext> context;
  Lane lane;
  // The route reads a request body. A body it does not take is never read:
  // the connection closes after the response.
  bool takes_body = true;
  // The handler reads the body itself (Exchange::ReadBody) instead of the
  // transport reading it into memory first; overrides takes_body. Needs a
  // Content-Length: a body framed otherwise is not taken.
  bool streams_body = false;
};

// Called once per request, as soon as its head has arrived. Must not block
// (it runs on the reactor thread too) and must be thread-safe.
using HeadHandler = std::function<HeadDecision(const RequestHead& head)>;

// A response, as the request handler fills it in. Content-Length and the
// connection headers are the transport's. Intentionally copyable.
struct HttpResponse {
  int status = 200;
  std::string body;
  // Other header lines, in order ("Content-Type", "Retry-After", ...).
  std::vector<std::pair<std::string, std::string>> headers;

  void set_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
  }
};

struct Connection;
struct Peer;
class HttpTransport;
struct FramedHead;  // http_framing.h

// One admitted request, as the request handler sees it, on the worker thread
// serving it. Valid during the call; its methods are called from one thread
// at a time.
class Exchange {
 public:
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  std::string_view method() const { return method_; }
  std::string_view target() const { return target_; }
  // The request's head exactly as received (request line and headers).
  std::string_view raw_head() const { return raw_head_; }
  // The value of header `name` in the raw head (see FindRawHeader).
  std::optional<std::string_view> RawHeader(std::string_view name, bool* repeated = nullptr) const {
    return FindRawHeader(raw_head_, name, repeated);
  }
  // The whole body (empty if the route takes none, or streams it).
  std::string_view body() const { return body_; }
  // Reads the next bytes of the body into `buffer` (what arrived with the
  // head first): how many, 0 at its end. The whole body must arrive within
  // TransportOptions::io_timeout plus its size at
  // min_transfer_bytes_per_second from when the handler started, or
  // DEADLINE_EXCEEDED; UNAVAILABLE if the client closed the connection
  // before its end. After an error the connection closes once the handler
  // returns (the error is returned again). For a body in memory, hands out
  // body(). INVALID_ARGUMENT if capacity is 0.
  absl::StatusOr<size_t> ReadBody(char* buffer, size_t capacity);
  // The body's bytes not handed out by ReadBody yet.
  uint64_t body_left() const { return body_buffered_.size() + body_unreceived_; }
  const std::string& remote_ip() const { return *remote_ip_; }

  // The head handler's context; TakeContext hands it over to the caller.
  ExchangeContext* context() const { return context_.get(); }
  std::unique_ptr<ExchangeContext> TakeContext() { return std::move(context_); }

  // The response, written by the transport once the handler returns.
  // Ignored once a streamed response has started.
  HttpResponse& response() { return response_; }
  // Close the connection after the response.
  void CloseAfterResponse() { close_after_ = true; }

  // A streamed response: writes the status line and `headers` (not
  // Content-Length, Transfer-Encoding or Connection: the transport's), with
  // "Transfer-Encoding: chunked" (an HTTP/1.0 client gets the body
  // delimited by the connection's close instead). FAILED_PRECONDITION if
  // already started; INVALID_ARGUMENT for a status without a body (1xx,
  // 204, 304) or a malformed header. Each write waits for the client up to
  // io_timeout plus its size at min_transfer_bytes_per_second:
  // DEADLINE_EXCEEDED past that, UNAVAILABLE if the client is gone; after an
  // error every later call returns it and the connection closes once the
  // handler returns. Without FinishStreamedResponse the connection closes
  // with no terminating chunk. For HEAD, only the head is written.
  absl::Status StartStreamedResponse(int status,
                                     std::vector<std::pair<std::string, std::string>> headers = {});
  // One chunk; empty data writes nothing. REQUIRES: started, not finished.
  absl::Status WriteChunk(std::string_view data);
  // The terminating chunk; the connection then goes on to its next request.
  absl::Status FinishStreamedResponse();
  bool streamed_response_started() const { return stream_ != Stream::kNone; }

  // The handler is about to wait for something other than CPU (a claim
  // waiting for a job): its lane stops counting it as running, so the
  // tenant's other requests are not held up behind it. The worker stays
  // busy. Idempotent.
  void BeginLongWait();

 private:
  friend class HttpTransport;
  Exchange() = default;

  std::string_view method_;
  std::string_view target_;
  std::string_view raw_head_;
  std::string_view body_;
  const std::string* remote_ip_ = nullptr;
  std::unique_ptr<ExchangeContext> context_;
  HttpResponse response_;
  bool close_after_ = false;
  // ReadBody: received bytes not handed out yet, bytes still to receive.
  std::string_view body_buffered_;
  uint64_t body_unreceived_ = 0;
  std::chrono::steady_clock::time_point body_deadline_;
  absl::Status body_error_;
  // The streamed response.
  enum class Stream { kNone, kOpen, kFinished, kFailed };
  // Writes a, b and c whole, waiting for the client up to io_timeout plus
  // their size at the minimum rate; on failure the stream is kFailed.
  absl::Status SendStreamed(std::string_view a, std::string_view b = {}, std::string_view c = {});
  Stream stream_ = Stream::kNone;
  bool stream_chunked_ = true;     // false: HTTP/1.0, delimited by the close
  bool stream_head_only_ = false;  // HEAD
  bool stream_closes_ = false;     // "Connection: close" was sent
  absl::Status stream_error_;
  // For BeginLongWait: who runs the request, and whether its lane let go.
  HttpTransport* transport_ = nullptr;
  void* worker_ = nullptr;  // HttpTransport::Worker
  Connection* connection_ = nullptr;
  bool lane_released_ = false;
};

// Called on a worker for each admitted request. Must fill in the response.
using RequestHandler = std::function<void(Exchange& exchange)>;

class HttpTransport final {
 public:
  explicit HttpTransport(TransportOptions options);
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;
  // Stops if still running.
  ~HttpTransport();

  // Binds and listens on host:port (port 0 picks a free port); returns the
  // port. UNAVAILABLE if the address cannot be bound.
  absl::StatusOr<int> Bind(const std::string& host, int port);

  // REQUIRES: called before Start.
  void set_head_handler(HeadHandler handler) { head_handler_ = std::move(handler); }
  void set_request_handler(RequestHandler handler) { request_handler_ = std::move(handler); }

  // Starts the reactor and the workers. REQUIRES: Bind succeeded, both
  // handlers set.
  absl::Status Start();

  // Stops accepting, closes idle and half-received connections, lets the
  // workers finish every request already received (answered with
  // "Connection: close") and the reactor finish the responses it is
  // writing (within their deadlines), and joins every thread. Idempotent.
  void Stop();

  // True once Stop() has begun.
  bool stopping() const { return stopping_flag_.load(std::memory_order_acquire); }

  TransportCounters Counters() const;

 private:
  class Worker;
  enum class Step { kReady, kNeedMore, kYield, kGone };

  void ReactorLoop();
  void AcceptAll();
  // Makes room for one more connection: closes the oldest idle connection
  // of `peer_ip` (of anyone's when nullptr). False if none is idle.
  bool EvictIdle(const std::string* peer_ip);
  void OnEvent(Connection* c, uint32_t events);
  // The reactor moves `c` along after reading or writing: dispatches a ready
  // request, re-arms for more bytes, or closes.
  void Process(Connection* c);
  // A response the reactor was finishing is out: next request, or close.
  // After a response is sent whole: frees its buffers, then closes (or
  // drains) a connection that ends with it. True if the connection goes on.
  bool EndResponse(Connection* c);
  void FinishWrite(Connection* c);
  void Sweep(std::chrono::steady_clock::time_point now);

  void WorkerLoop(Worker* w);
  // Serves `c`'s ready request on `w`, then the connection's next requests
  // while the scheduler lets it keep them.
  void Serve(Worker* w, Connection* c);
  // Runs the request at the front of c's buffer and writes its response.
  // False if the connection is gone or handed to the reactor.
  bool ServeOne(Worker* w, Connection* c);
  // Keep-alive between requests: `c` (idle, nothing buffered) joins the
  // epoll set of the keep-alive worker holding the fewest connections (`w`
  // on a tie, or when `c` is already its), or goes back to the reactor.
  void Hold(Worker* w, Connection* c);
  // A keep-alive worker's wait: for a request on a held connection (each
  // one ready is served in turn), for a wakeup (a request in a queue), or
  // for the first held connection's linger to end.
  void ServeHeld(Worker* w, int timeout_ms);
  // `c` leaves the epoll set of the worker holding it (if any). Called by
  // the thread that owns `c` before handing it on.
  void Detach(Connection* c);
  void DetachLocked(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Worker `w` is about to wait on something other than its connections (a
  // long request, a stream): what it holds, but `keep`, goes to the reactor.
  void ReleaseHeld(Worker* w, Connection* keep);
  // What `w` holds, but `keep`, goes to the reactor (marks the worker's
  // batch of events stale).
  void TakeHeldLocked(Worker* w, Connection* keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A held connection becomes the reactor's, idle.
  void GiveToReactorLocked(Connection* c, std::chrono::steady_clock::time_point now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After a request on `c` is done (on worker `w`): moves on to the next
  // request in its buffer. True if `w` may run it now.
  bool Continue(Worker* w, Connection* c);
  // A large response a foreground worker produced goes to the background
  // queue to be sent (false when stopping: the caller gives it to the
  // reactor), and a background worker sends it: true if the connection is
  // still the worker's, ready for its next request.
  bool DispatchWriteLocked(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SendWriteTask(Worker* w, Connection* c);

  // Reads what is available without blocking, up to what the current phase
  // needs. False on EOF or error.
  bool ReadAvailable(Connection* c);
  // Skips blank lines before a request and inspects the buffer.
  FramedHead InspectBuffered(Connection* c);

  // Moves the request at the front of c's buffer along: checks its head,
  // asks the head handler once, answers immediate responses (and goes on to
  // the next pipelined request, at most `max_refusals` of them in this
  // turn), reserves the admitted body's buffer.
  // kReady: an admitted request is complete in memory. kNeedMore: more bytes
  // are needed (the caller still owns c). kYield: this connection had its
  // share of refusals for one turn (the caller still owns c). kGone: c was
  // closed or handed on to drain; the caller must not touch it.
  Step Advance(Connection* c, int max_refusals);

  // Ownership hand-offs (see the .cc for the protocol).
  // Queue `c`'s ready request for a worker. False when stopping (the workers
  // may be gone): the caller closes `c` instead.
  bool DispatchLocked(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // `c`'s admitted request is no longer waiting for its body (it is ready,
  // or gone): it leaves bodies_pending_.
  void SettleBodyLocked(Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HandBack(Connection* c);
  void StartDraining(Connection* c);
  void StartWriting(Connection* c);
  void RefuseAndDrain(Connection* c, int status, std::string_view code, std::string_view message);
  void Close(Connection* c);
  void ArmLocked(Connection* c, bool for_write = false) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The lane budget (TransportOptions::max_buffered_bytes_per_lane).
  bool ReserveBufferLocked(uint64_t lane, int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseBufferLocked(uint64_t lane, int64_t bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseAllBuffers(Connection* c);
  // The scheduler: the next request `w` may run, or nullptr.
  Connection* NextLocked(Worker* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool MayRunInlineLocked(Worker* w, const Lane& lane) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DoneLocked(Worker* w, Connection* c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Exchange::BeginLongWait: the request on `c` stops counting in its lane.
  void ReleaseLane(Worker* w, Connection* c);
  friend class Exchange;
  friend struct Connection;  // names the Worker holding it
  void WakeLocked(bool background) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stopping, and nothing left for worker `w`'s kind to run.
  bool WorkerMayExitLocked(const Worker* w) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction / Start.
  const TransportOptions options_;
  HeadHandler head_handler_;
  RequestHandler request_handler_;
  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: tells the reactor to look at stopping_
  std::thread reactor_;
  std::vector<std::unique_ptr<Worker>> workers_;
  int foreground_threads_ = 1;
  int background_threads_ = 1;
  bool started_ = false;
  bool stopped_ = false;
  bool accept_paused_ = false;  // reactor thread only

  mutable absl::Mutex mu_;
  absl::CondVar foreground_cv_;
  absl::CondVar background_cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<Connection*> connections_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  // Requests ready to run: admin first, then tenants fairly.
  std::deque<Connection*> control_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<FairQueue<Connection*>> foreground_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<FairQueue<Connection*>> background_ ABSL_GUARDED_BY(mu_);
  int idle_foreground_ ABSL_GUARDED_BY(mu_) = 0;
  int idle_background_ ABSL_GUARDED_BY(mu_) = 0;
  int busy_workers_ ABSL_GUARDED_BY(mu_) = 0;
  // Keep-alive workers waiting in epoll_wait on their connections: a
  // request in the foreground queues wakes one (Worker::wake_fd).
  std::vector<Worker*> polling_ ABSL_GUARDED_BY(mu_);
  // The keep-alive workers (constant after Start).
  std::vector<Worker*> keep_alive_workers_;
  // Buffer budgets: bytes reserved per lane (only while > 0), and in all.
  absl::flat_hash_map<uint64_t, int64_t> buffered_by_lane_ ABSL_GUARDED_BY(mu_);
  int64_t buffered_ ABSL_GUARDED_BY(mu_) = 0;
  // Connections the reactor owns with a complete request head it has not
  // looked at yet (a connection that had its turn of refusals): not armed in
  // epoll, looked at on the reactor's next round.
  std::vector<Connection*> reactor_ready_ ABSL_GUARDED_BY(mu_);
  // Connections the reactor is writing a response to.
  int writing_ ABSL_GUARDED_BY(mu_) = 0;
  // Admitted requests whose bodies are still arriving: in flight, so the
  // workers stay for them when stopping.
  int bodies_pending_ ABSL_GUARDED_BY(mu_) = 0;

  std::atomic<bool> stopping_flag_{false};  // mirrors stopping_, lock-free
  std::atomic<uint64_t> accepted_total_{0};
  std::atomic<uint64_t> refused_connections_total_{0};
  std::atomic<uint64_t> refused_peer_connections_total_{0};
  std::atomic<uint64_t> evicted_idle_total_{0};
  std::atomic<uint64_t> head_timeouts_total_{0};
  std::atomic<uint64_t> bad_heads_total_{0};
  std::atomic<uint64_t> body_timeouts_total_{0};
  std::atomic<uint64_t> buffer_refusals_total_{0};
  std::atomic<uint64_t> aborted_responses_total_{0};
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_HTTP_TRANSPORT_H_
