#include "http_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <tuple>

#include "http_framing.h"
#include "http_status.h"
#include "str_cat.h"

// Ownership protocol. A Connection is owned by exactly one of: the reactor
// (armed in epoll, in the reactor's ready list, or being worked on by the
// reactor), a ready queue, or one worker. Only the owner touches its buffers;
// ownership changes under mu_, which also gives ThreadSanitizer (and the
// memory model) the happens-before edge between the old owner's writes and
// the new owner's reads. Every fd is registered in epoll with EPOLLONESHOT
// for its whole life: arming it (ArmLocked, under mu_) is what hands it to
// the reactor, and it fires once.
//
// Between requests a keep-alive connection is held by a keep-alive worker
// instead (Hold): owned by that worker, registered in the worker's own epoll
// set (level-triggered) as well, and disarmed in the reactor's. Only the
// holder serves it; it leaves the set (Detach) before it is handed on.
//
// A request's life: the owner reads its head (Advance), asks the head
// handler, and for an admitted request reserves its body in the lane's
// buffer budget and reads the body (the reactor, or the worker holding the
// connection while it arrives at once); complete, it is dispatched to the
// lane's queue (or
// run at once by a worker that already holds the connection, when the
// scheduler allows). A worker runs it and writes the response without
// waiting; what the client does not take at once is finished by the
// reactor. Then the next request on the connection.
//
// A streamed request is dispatched as soon as its head is admitted; the
// worker holding it reads the rest of its body, and writes a streamed
// response, on the fd itself (the connection is the worker's throughout, so
// nothing else reads or writes it meanwhile).

namespace tenancy::internal {

using Clock = std::chrono::steady_clock;

struct Peer {
  std::string ip;
  std::vector<Connection*> connections;  // protected by HttpTransport::mu_
};

struct Connection {
  enum class Owner { kReactor, kQueued, kWorker };
  enum class Phase { kIdle, kHead, kBody, kWriting, kDraining };

  int fd = -1;
  Owner owner = Owner::kReactor;  // protected by HttpTransport::mu_
  Peer* peer = nullptr;           // constant after accept

  // Touched only by the owner.
  Phase phase = Phase::kIdle;
  Clock::time_point deadline;
  Clock::time_point idle_since;
  std::string in;  // received bytes; [in_off, size) not consumed
  size_t in_off = 0;
  size_t scan_from = 0;      // where the search for the end of the head resumes
  bool peer_closed = false;  // EOF read
  size_t served = 0;
  size_t drained = 0;
  int refusals_this_turn = 0;

  // The request at the front of `in` (from offset 0 once inspected).
  bool head_decided = false;
  size_t head_bytes = 0;
  uint64_t body_bytes = 0;  // Content-Length
  bool keep_alive = true;   // as the client asked (HTTP version, Connection)
  bool http10 = false;
  bool takes_body = false;    // admitted with a body the route reads
  bool streams_body = false;  // admitted with a body the handler reads itself
  bool unread_body = false;   // a body the route does not take: close after
  Lane lane;
  std::unique_ptr<ExchangeContext> context;
  int64_t body_reserved = 0;  // in lane.key's buffer budget
  bool body_pending = false;  // counted in HttpTransport::bodies_pending_

  // A response the reactor is finishing.
  std::string out_head;
  std::string out_body;
  size_t out_off = 0;  // over out_head then out_body
  uint64_t out_lane = 0;
  int64_t out_reserved = 0;  // in out_lane's buffer budget
  bool close_after_write = false;
  // The response in out_* waits in the background queue for a background
  // worker to send it (not a request).
  bool write_task = false;

  // Constant after accept.
  std::string remote_ip;

  // The keep-alive worker whose epoll set holds `fd` (see Hold), or nullptr.
  // Written under HttpTransport::mu_.
  HttpTransport::Worker* holder = nullptr;
  // When the holder last served it (its linger runs from here); the
  // holder's alone once it holds it.
  Clock::time_point held_since;

  size_t buffered() const { return in.size() - in_off; }
  size_t out_remaining() const { return out_head.size() + out_body.size() - out_off; }
};

class HttpTransport::Worker {
 public:
  std::thread thread;
  bool background = false;  // constant after Start
  int wake_fd = -1;         // eventfd: "a request waits for a worker"
  // A keep-alive worker's epoll set: its held connections and wake_fd.
  // Constant after Start; -1 for the other workers.
  int epoll_fd = -1;
  // Protected by HttpTransport::mu_: set when taken off polling_ by a
  // dispatcher (who then writes wake_fd).
  bool signaled = false;
  // Protected by HttpTransport::mu_: the connections in epoll_fd.
  std::vector<Connection*> held;
  // Protected by HttpTransport::mu_: counted in busy_workers_.
  bool busy = false;
  // Protected by HttpTransport::mu_: the request a keep-alive worker runs
  // (its connection), and since when; what it holds waits meanwhile.
  Connection* serving = nullptr;
  Clock::time_point serving_since;
  // Protected by HttpTransport::mu_: the request it runs waits on something
  // other than CPU (ReleaseHeld: a long wait, a stream), so it is given no
  // connection to hold until that request ends.
  bool waiting = false;
  // Under HttpTransport::mu_: the worker is about to run c's request.
  void StartServing(Connection* c) {
    if (epoll_fd < 0) return;  // holds nothing that could wait
    serving = c;
    serving_since = Clock::now();
  }
  // Set under HttpTransport::mu_ when the worker's held connections were
  // taken from it (TakeHeldLocked) while it ran a request; read by the
  // worker after the lock that ends the request: the rest of the batch of
  // epoll events it is serving names connections no longer its.
  bool released_held = false;
};

namespace {

char kListenTag;
char kWakeTag;

constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// The most one send() hands the kernel: on a kernel built without
// preemption (PREEMPT_NONE, common on servers) a send of megabytes copies and
// segments them in one stretch that nothing on that CPU can interrupt.
constexpr size_t kMaxSendBytes = 64 << 10;

// How long a background worker waits for a client to take more of a
// response before it hands the rest to the reactor.
constexpr int kBackgroundSendWaitMs = 50;

// Responses at least this large are sent by a background worker.
constexpr size_t kBackgroundResponseBytes = 256 << 10;

// sched_setattr(2): glibc 2.36 has no wrapper.
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};

// Asks for a scheduler slice of `slice` for the calling thread, keeping its
// policy and nice value. Best effort: kernels before 6.12 ignore the slice,
// and a refusal changes nothing.
void RequestSchedulerSlice(std::chrono::microseconds slice) {
  if (slice.count() <= 0) return;
  SchedAttr attr{};
  attr.size = sizeof(attr);
  attr.sched_policy = SCHED_OTHER;
  errno = 0;
  const int nice = ::getpriority(PRIO_PROCESS, 0);
  if (errno != 0) return;
  attr.sched_nice = nice;
  attr.sched_runtime = static_cast<uint64_t>(slice.count()) * 1000;
  ::syscall(SYS_sched_setattr, 0, &attr, 0);
}

// What a transfer of `bytes` may take: io_timeout plus the bytes at the
// minimum rate (without overflow for any Content-Length).
Clock::duration TransferTime(uint64_t bytes, const TransportOptions& o) {
  const uint64_t rate = std::max<uint64_t>(1, o.min_transfer_bytes_per_second);
  const uint64_t ms =
      std::min<uint64_t>(bytes / rate, uint64_t{1} << 32) * 1000 + (bytes % rate) * 1000 / rate;
  return o.io_timeout + std::chrono::milliseconds(ms);
}

// A poll() timeout that ends at `deadline` (rounded up, so that a wait does
// not spin through its last millisecond); 0 once it has passed.
int PollMillisUntil(Clock::time_point deadline) {
  const Clock::duration left = deadline - Clock::now();
  if (left <= Clock::duration::zero()) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
  return static_cast<int>(std::min<int64_t>(ms, INT32_MAX));
}

int64_t MillisUntil(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return ms < 0 ? 0 : ms;
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (Lower(a[i]) != Lower(b[i])) return false;
  }
  return true;
}

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// True if the comma-separated header value lists `token` (case-insensitive).
bool ListsToken(std::string_view value, std::string_view token) {
  while (!value.empty()) {
    size_t comma = value.find(',');
    std::string_view item = TrimOws(value.substr(0, comma));
    if (EqualsIgnoreCase(item, token)) return true;
    if (comma == std::string_view::npos) break;
    value.remove_prefix(comma + 1);
  }
  return false;
}

std::string AddressOf(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

// A response the transport writes itself, always followed by a close.
std::string CannedResponse(int status, std::string_view code, std::string_view message,
                           bool retry_after = false) {
  std::string body = ErrorBody(code, message);
  return StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                "\r\nContent-Type: application/json\r\nContent-Length: ", body.size(),
                retry_after ? "\r\nRetry-After: 1" : "", "\r\nConnection: close\r\n\r\n", body);
}

// Best effort: the socket may not take it all at once; the client of a
// refused request gets what fits.
bool SendNow(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Sends what the socket takes now of the concatenation of `parts` (at most
// four: a head and a body, or a chunk's size line, data and CRLF) from
// offset `off`, up to `budget` bytes, each send at most kMaxSendBytes.
// Returns the new offset, or -1 on a connection error.
int64_t SendParts(int fd, std::span<const std::string_view> parts, size_t off,
                  size_t budget = SIZE_MAX) {
  size_t total = 0;
  for (std::string_view part : parts) total += part.size();
  total = std::min(total, budget > SIZE_MAX - off ? SIZE_MAX : off + budget);
  while (off < total) {
    iovec iov[4];
    size_t count = 0;
    size_t room = std::min(kMaxSendBytes, total - off);
    size_t skip = off;
    for (std::string_view part : parts) {
      if (skip >= part.size()) {
        skip -= part.size();
        continue;
      }
      const size_t take = std::min(part.size() - skip, room);
      iov[count++] = {const_cast<char*>(part.data()) + skip, take};
      skip = 0;
      room -= take;
      if (room == 0 || count == 4) break;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = count;
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return -1;
  }
  return static_cast<int64_t>(off);
}

// SendParts of a response: its head, then its body.
int64_t SendSome(int fd, std::string_view head, std::string_view body, size_t off,
                 size_t budget = SIZE_MAX) {
  const std::string_view parts[2] = {head, body};
  return SendParts(fd, parts, off, budget);
}

bool HasNoBody(int status) { return status < 200 || status == 204 || status == 304; }

// The status line and headers of `response`.
std::string ResponseHead(const HttpResponse& response, bool close, bool http10) {
  std::string out =
      StrCat("HTTP/1.1 ", response.status, " ", ReasonPhrase(response.status), "\r\n");
  for (const auto& [name, value] : response.headers) {
    out += StrCat(name, ": ", value, "\r\n");
  }
  if (!HasNoBody(response.status)) {
    out += StrCat("Content-Length: ", response.body.size(), "\r\n");
  }
  if (close) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  return out;
}

// Inspects the bytes of one request (the buffer after blank lines). Finds the
// end of its head, checks the head against the limits and the grammar that
// matters for framing (CRLF line ends, no control bytes, no obs-fold, one
// Content-Length, HTTP/1.x), and reads what framing needs from it.
// *scan_from remembers how far the search for the end of the head got.
FramedHead InspectRequest(std::string_view data, const TransportOptions& o, size_t* scan_from);

}  // namespace

bool IsHttpFieldName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), IsTokenChar);
}

// ---------------------------------------------------------------------------
// Exchange and header lookup

void Exchange::BeginLongWait() {
  if (lane_released_ || transport_ == nullptr) return;
  lane_released_ = true;
  auto* w = static_cast<HttpTransport::Worker*>(worker_);
  transport_->ReleaseLane(w, connection_);
  // Nor do the worker's other connections wait for it.
  transport_->ReleaseHeld(w, connection_);
}

absl::StatusOr<size_t> Exchange::ReadBody(char* buffer, size_t capacity) {
  if (!body_error_.ok()) return body_error_;
  if (body_left() == 0) return 0;
  if (capacity == 0) return absl::InvalidArgumentError("ReadBody: no room in the buffer");
  // What arrived with the head goes first: it is the start of the body.
  if (!body_buffered_.empty()) {
    const size_t n = std::min(capacity, body_buffered_.size());
    std::memcpy(buffer, body_buffered_.data(), n);
    body_buffered_.remove_prefix(n);
    return n;
  }
  const int fd = connection_->fd;
  // Never past the body: what follows is the next request's.
  const auto want = static_cast<size_t>(std::min<uint64_t>(capacity, body_unreceived_));
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, want, MSG_DONTWAIT);
    if (n > 0) {
      body_unreceived_ -= static_cast<uint64_t>(n);
      return static_cast<size_t>(n);
    }
    if (n == 0) {
      body_error_ =
          absl::UnavailableError(StrCat("the client closed the connection with ", body_unreceived_,
                                        " bytes of the request body unsent"));
      break;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      body_error_ =
          absl::UnavailableError(StrCat("receiving the request body: ", std::strerror(errno)));
      break;
    }
    const int wait = PollMillisUntil(body_deadline_);
    if (wait == 0) {
      transport_->body_timeouts_total_.fetch_add(1, std::memory_order_relaxed);
      body_error_ = absl::DeadlineExceededError(
          StrCat("the request body did not arrive in time (", body_unreceived_, " bytes missing)"));
      break;
    }
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    ::poll(&p, 1, wait);
  }
  return body_error_;
}

absl::Status Exchange::StartStreamedResponse(
    int status, std::vector<std::pair<std::string, std::string>> headers) {
  if (stream_ != Stream::kNone) {
    return absl::FailedPreconditionError("the streamed response has already started");
  }
  if (status < 200 || status > 599 || HasNoBody(status)) {
    return absl::InvalidArgumentError(StrCat("status ", status, " has no body to stream"));
  }
  const Connection* c = connection_;
  // Streaming waits on this client: the worker's other connections do not.
  if (transport_ != nullptr) {
    transport_->ReleaseHeld(static_cast<HttpTransport::Worker*>(worker_), connection_);
  }
  std::string head = StrCat("HTTP/1.1 ", status, " ", ReasonPhrase(status), "\r\n");
  for (const auto& [name, value] : headers) {
    // Framing and the connection are the transport's.
    if (!IsHttpFieldName(name) || EqualsIgnoreCase(name, "content-length") ||
        EqualsIgnoreCase(name, "transfer-encoding") || EqualsIgnoreCase(name, "connection") ||
        value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return absl::InvalidArgumentError(StrCat("response header not allowed: ", name));
    }
    head += StrCat(name, ": ", value, "\r\n");
  }
  // HTTP/1.0 has no chunked encoding: the close delimits the body.
  stream_chunked_ = !c->http10;
  stream_head_only_ = method_ == "HEAD";
  stream_closes_ = close_after_ || c->http10 || !c->keep_alive || c->peer_closed ||
                   c->served + 1 >= transport_->options_.keep_alive_max_requests ||
                   transport_->stopping();
  if (stream_chunked_) head += "Transfer-Encoding: chunked\r\n";
  if (stream_closes_) head += "Connection: close\r\n";
  head += "\r\n";
  stream_ = Stream::kOpen;
  return SendStreamed(head);
}

absl::Status Exchange::WriteChunk(std::string_view data) {
  if (stream_ == Stream::kFailed) return stream_error_;
  if (stream_ != Stream::kOpen) {
    return absl::FailedPreconditionError("no streamed response is open");
  }
  // An empty chunk would be the terminating one.
  if (data.empty() || stream_head_only_) return absl::OkStatus();
  if (!stream_chunked_) return SendStreamed(data);
  char size_line[24];
  const int n = std::snprintf(size_line, sizeof(size_line), "%zx\r\n", data.size());
  return SendStreamed(std::string_view(size_line, static_cast<size_t>(n)), data, "\r\n");
}

absl::Status Exchange::FinishStreamedResponse() {
  if (stream_ == Stream::kFailed) return stream_error_;
  if (stream_ != Stream::kOpen) {
    return absl::FailedPreconditionError("no streamed response is open");
  }
  if (stream_chunked_ && !stream_head_only_) {
    if (absl::Status s = SendStreamed("0\r\n\r\n"); !s.ok()) return s;
  }
  stream_ = Stream::kFinished;
  return absl::OkStatus();
}

absl::Status Exchange::SendStreamed(std::string_view a, std::string_view b, std::string_view c) {
  const std::string_view parts[3] = {a, b, c};
  const size_t total = a.size() + b.size() + c.size();
  const Clock::time_point deadline = Clock::now() + TransferTime(total, transport_->options_);
  const int fd = connection_->fd;
  size_t off = 0;
  for (;;) {
    const int64_t sent = SendParts(fd, parts, off);
    if (sent < 0) {
      stream_error_ =
          absl::UnavailableError("the client closed the connection during a streamed response");
      break;
    }
    off = static_cast<size_t>(sent);
    if (off == total) return absl::OkStatus();
    const int wait = PollMillisUntil(deadline);
    if (wait == 0) {
      stream_error_ = absl::DeadlineExceededError(
          StrCat("the client did not take the streamed response in time (", total - off, " of ",
                 total, " bytes unsent)"));
      break;
    }
    pollfd p{fd, POLLOUT, 0};
    ::poll(&p, 1, wait);
  }
  stream_ = Stream::kFailed;
  transport_->aborted_responses_total_.fetch_add(1, std::memory_order_relaxed);
  return stream_error_;
}

std::optional<std::string_view> FindRawHeader(std::string_view raw_head, std::string_view name,
                                              bool* repeated) {
  std::optional<std::string_view> found;
  if (repeated != nullptr) *repeated = false;
  size_t pos = raw_head.find("\r\n");  // skip the request line
  while (pos != std::string_view::npos && pos + 2 < raw_head.size()) {
    pos += 2;
    size_t eol = raw_head.find("\r\n", pos);
    std::string_view line =
        raw_head.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || !EqualsIgnoreCase(line.substr(0, colon), name)) {
      continue;
    }
    if (found.has_value()) {
      if (repeated != nullptr) *repeated = true;
      continue;
    }
    found = TrimOws(line.substr(colon + 1));
  }
  return found;
}

// ---------------------------------------------------------------------------
// HttpTransport: setup and shutdown

HttpTransport::HttpTransport(TransportOptions options) : options_(std::move(options)) {}

HttpTransport::~HttpTransport() {
  Stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

absl::StatusOr<int> HttpTransport::Bind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::UnavailableError(StrCat("resolve ", host, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        ::listen(fd, options_.listen_backlog) != 0) {
      last_error = std::strerror(errno);
      ::close(fd);
      continue;
    }
    listen_fd_ = fd;
    break;
  }
  ::freeaddrinfo(result);
  if (listen_fd_ < 0) {
    return absl::UnavailableError(StrCat("bind ", host, ":", port, ": ", last_error));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  if (addr.ss_family == AF_INET6) {
    return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  }
  return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

absl::Status HttpTransport::Start() {
  if (listen_fd_ < 0) return absl::FailedPreconditionError("not bound");
  if (started_) return absl::FailedPreconditionError("already started");
  if (!head_handler_ || !request_handler_) {
    return absl::FailedPreconditionError("handlers not set");
  }
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return absl::InternalError(StrCat("epoll/eventfd: ", std::strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &kListenTag;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.ptr = &kWakeTag;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);

  foreground_threads_ = std::max(1, options_.worker_threads);
  background_threads_ = options_.background_threads > 0 ? options_.background_threads
                                                        : std::max(1, foreground_threads_ / 4);
  const int per_lane = options_.max_running_per_lane > 0 ? options_.max_running_per_lane
                                                         : std::max(1, foreground_threads_ / 2);
  // Tenant work never takes the last foreground worker: it is the control
  // lane's (admin requests) whatever the tenants do.
  const int tenant_total = std::max(1, foreground_threads_ - 1);
  {
    absl::MutexLock lock(&mu_);
    foreground_ =
        std::make_unique<FairQueue<Connection*>>(std::min(per_lane, tenant_total), tenant_total);
    background_ = std::make_unique<FairQueue<Connection*>>(std::max(1, background_threads_ / 2),
                                                           background_threads_);
  }
  for (int i = 0; i < foreground_threads_ + background_threads_; ++i) {
    auto w = std::make_unique<Worker>();
    w->background = i >= foreground_threads_;
    w->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0) {
      return absl::InternalError(StrCat("eventfd: ", std::strerror(errno)));
    }
    workers_.push_back(std::move(w));
  }
  // Keep-alive workers: the first N foreground ones, about one per CPU, so a
  // busy server has about as many threads serving connections as it has
  // CPUs to run them (fewer sleeps, and fewer writers in RocksDB's write
  // group at once); the other workers take queued requests.
  const int cpus = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int keep_alive = options_.worker_linger.count() <= 0 ? 0
                         : options_.keep_alive_workers > 0
                             ? std::min(options_.keep_alive_workers, foreground_threads_)
                             : std::min(cpus, foreground_threads_);
  for (int i = 0; i < keep_alive; ++i) {
    Worker* w = workers_[static_cast<size_t>(i)].get();
    w->epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (w->epoll_fd < 0) {
      return absl::InternalError(StrCat("epoll: ", std::strerror(errno)));
    }
    epoll_event wake{};
    wake.events = EPOLLIN;
    wake.data.ptr = &kWakeTag;
    ::epoll_ctl(w->epoll_fd, EPOLL_CTL_ADD, w->wake_fd, &wake);
    keep_alive_workers_.push_back(w);
  }
  started_ = true;
  for (auto& w : workers_) {
    Worker* raw = w.get();
    w->thread = std::thread([this, raw] { WorkerLoop(raw); });
  }
  reactor_ = std::thread([this] { ReactorLoop(); });
  return absl::OkStatus();
}

void HttpTransport::Stop() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  stopping_flag_.store(true, std::memory_order_release);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    foreground_cv_.SignalAll();
    background_cv_.SignalAll();
    for (Worker* w : polling_) {
      w->signaled = true;
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(w->wake_fd, &one, sizeof(one));
    }
    polling_.clear();
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  // The workers serve every request already queued and exit; the reactor
  // stops accepting, closes what is idle or half-received, finishes the
  // responses it writes (the workers' last ones included), then exits.
  for (auto& w : workers_) w->thread.join();
  n = ::write(wake_fd_, &one, sizeof(one));
  reactor_.join();
  std::vector<Connection*> left;
  {
    absl::MutexLock lock(&mu_);
    left.assign(connections_.begin(), connections_.end());
  }
  for (Connection* c : left) Close(c);
  for (auto& w : workers_) {
    ::close(w->wake_fd);
    if (w->epoll_fd >= 0) ::close(w->epoll_fd);
  }
  ::close(epoll_fd_);
  ::close(wake_fd_);
  ::close(listen_fd_);
  listen_fd_ = -1;
}

TransportCounters HttpTransport::Counters() const {
  TransportCounters c;
  {
    absl::MutexLock lock(&mu_);
    c.open_connections = static_cast<int64_t>(connections_.size());
    c.queued_requests =
        static_cast<int64_t>(control_.size() + (foreground_ ? foreground_->queued() : 0) +
                             (background_ ? background_->queued() : 0));
    c.busy_workers = busy_workers_;
    c.buffered_bytes = buffered_;
  }
  c.accepted_total = accepted_total_.load(std::memory_order_relaxed);
  c.refused_connections_total = refused_connections_total_.load(std::memory_order_relaxed);
  c.refused_peer_connections_total =
      refused_peer_connections_total_.load(std::memory_order_relaxed);
  c.evicted_idle_total = evicted_idle_total_.load(std::memory_order_relaxed);
  c.head_timeouts_total = head_timeouts_total_.load(std::memory_order_relaxed);
  c.bad_heads_total = bad_heads_total_.load(std::memory_order_relaxed);
  c.body_timeouts_total = body_timeouts_total_.load(std::memory_order_relaxed);
  c.buffer_refusals_total = buffer_refusals_total_.load(std::memory_order_relaxed);
  c.aborted_responses_total = aborted_responses_total_.load(std::memory_order_relaxed);
  return c;
}

// ---------------------------------------------------------------------------
// Budgets

bool HttpTransport::ReserveBufferLocked(uint64_t lane, int64_t bytes) {
  if (bytes <= 0) return true;
  int64_t& mine = buffered_by_lane_[lane];
  if (mine + bytes > static_cast<int64_t>(options_.max_buffered_bytes_per_lane) ||
      buffered_ + bytes > static_cast<int64_t>(options_.max_buffered_bytes)) {
    if (mine == 0) buffered_by_lane_.erase(lane);
    buffer_refusals_total_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  mine += bytes;
  buffered_ += bytes;
  return true;
}

void HttpTransport::ReleaseBufferLocked(uint64_t lane, int64_t bytes) {
  if (bytes <= 0) return;
  auto it = buffered_by_lane_.find(lane);
  if (it != buffered_by_lane_.end() && (it->second -= bytes) <= 0) {
    buffered_by_lane_.erase(it);
  }
  buffered_ -= bytes;
}

void HttpTransport::ReleaseAllBuffers(Connection* c) {
  if (c->body_reserved == 0 && c->out_reserved == 0) return;
  absl::MutexLock lock(&mu_);
  ReleaseBufferLocked(c->lane.key, c->body_reserved);
  ReleaseBufferLocked(c->out_lane, c->out_reserved);
  c->body_reserved = 0;
  c->out_reserved = 0;
}

// ---------------------------------------------------------------------------
// Reactor

void HttpTransport::ReactorLoop() {
  RequestSchedulerSlice(options_.foreground_slice);
  constexpr auto kSweepEvery = std::chrono::milliseconds(100);
  epoll_event events[128];
  Clock::time_point next_sweep = Clock::now() + kSweepEvery;
  bool listening = true;
  std::vector<Connection*> ready;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      ready.swap(reactor_ready_);
    }
    for (Connection* c : ready) Process(c);
    ready.clear();
    bool more_ready, holding = false;
    {
      absl::MutexLock lock(&mu_);
      more_ready = !reactor_ready_.empty();
      // A keep-alive worker that has run one request for max_held_wait lets
      // go of its other connections: their requests are not held up behind
      // a slow one (a write stall, a cold read); the reactor dispatches them
      // to the other workers.
      const Clock::time_point now = Clock::now();
      for (Worker* k : keep_alive_workers_) {
        if (k->held.empty()) continue;
        holding = true;
        if (k->serving != nullptr && now - k->serving_since >= options_.max_held_wait) {
          TakeHeldLocked(k, k->serving);
        }
      }
    }
    int64_t timeout_ms = MillisUntil(next_sweep);
    if (holding) timeout_ms = std::min<int64_t>(timeout_ms, options_.max_held_wait.count());
    int timeout = more_ready ? 0 : static_cast<int>(timeout_ms);
    int n = ::epoll_wait(epoll_fd_, events, 128, timeout);
    for (int i = 0; i < n; ++i) {
      void* p = events[i].data.ptr;
      if (p == &kListenTag) {
        AcceptAll();
      } else if (p == &kWakeTag) {
        uint64_t value;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_, &value, sizeof(value));
      } else {
        OnEvent(static_cast<Connection*>(p), events[i].events);
      }
    }
    bool stopping, done;
    {
      absl::MutexLock lock(&mu_);
      stopping = stopping_;
      done = stopping && busy_workers_ == 0 && writing_ == 0 && bodies_pending_ == 0 &&
             control_.empty() && foreground_->queued() == 0 && background_->queued() == 0 &&
             reactor_ready_.empty();
    }
    if (stopping && listening) {
      // No new connections; close every connection the reactor owns that is
      // not finishing a response (idle, half-received or draining).
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
      listening = false;
    }
    if (stopping) {
      std::vector<Connection*> mine;
      {
        absl::MutexLock lock(&mu_);
        for (Connection* c : connections_) {
          if (c->owner == Connection::Owner::kReactor && c->phase != Connection::Phase::kWriting &&
              !c->body_pending) {
            mine.push_back(c);
          }
        }
        // Connections in the ready list are closed here too.
        reactor_ready_.clear();
      }
      for (Connection* c : mine) Close(c);
      if (done) break;
    }
    Clock::time_point now = Clock::now();
    if (now >= next_sweep) {
      if (accept_paused_ && listening) {
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = &kListenTag;
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
        accept_paused_ = false;
      }
      Sweep(now);
      next_sweep = now + kSweepEvery;
    }
  }
}

void HttpTransport::AcceptAll() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno == EMFILE || errno == ENFILE) {
        // Out of descriptors: the listen socket would stay readable and spin
        // the reactor. Stop watching it until the next sweep.
        ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        accept_paused_ = true;
      }
      return;  // EAGAIN: done
    }
    accepted_total_.fetch_add(1, std::memory_order_relaxed);
    std::string ip = AddressOf(addr);
    size_t from_peer = 0, open = 0;
    {
      absl::MutexLock lock(&mu_);
      auto it = peers_.find(ip);
      if (it != peers_.end()) from_peer = it->second->connections.size();
      open = connections_.size();
    }
    if (from_peer >= options_.max_connections_per_peer && !EvictIdle(&ip)) {
      refused_peer_connections_total_.fetch_add(1, std::memory_order_relaxed);
      SendNow(fd, CannedResponse(503, "unavailable", "too many connections from this address",
                                 /*retry_after=*/true));
      ::close(fd);
      continue;
    }
    if (open >= options_.max_connections && !EvictIdle(nullptr)) {
      refused_connections_total_.fetch_add(1, std::memory_order_relaxed);
      SendNow(fd, CannedResponse(503, "unavailable", "too many connections",
                                 /*retry_after=*/true));
      ::close(fd);
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    auto* c = new Connection;
    c->fd = fd;
    c->remote_ip = std::move(ip);
    c->phase = Connection::Phase::kIdle;
    c->idle_since = Clock::now();
    c->deadline = c->idle_since + options_.head_timeout;
    absl::MutexLock lock(&mu_);
    auto& slot = peers_[c->remote_ip];
    if (slot == nullptr) {
      slot = std::make_unique<Peer>();
      slot->ip = c->remote_ip;
    }
    c->peer = slot.get();
    c->peer->connections.push_back(c);
    connections_.insert(c);
    c->owner = Connection::Owner::kReactor;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

bool HttpTransport::EvictIdle(const std::string* peer_ip) {
  // Only the reactor takes connections from itself, and this is the reactor,
  // so a connection found idle here stays so until it is closed below. (One
  // with a request waiting in reactor_ready_ has bytes buffered: not idle.)
  Connection* oldest = nullptr;
  {
    absl::MutexLock lock(&mu_);
    auto consider = [&oldest](Connection* c) {
      if (c->owner == Connection::Owner::kReactor && c->phase == Connection::Phase::kIdle &&
          c->buffered() == 0 && (oldest == nullptr || c->idle_since < oldest->idle_since)) {
        oldest = c;
      }
    };
    if (peer_ip != nullptr) {
      auto it = peers_.find(*peer_ip);
      if (it != peers_.end()) {
        for (Connection* c : it->second->connections) consider(c);
      }
    } else {
      for (Connection* c : connections_) consider(c);
    }
  }
  if (oldest == nullptr) return false;
  evicted_idle_total_.fetch_add(1, std::memory_order_relaxed);
  Close(oldest);
  return true;
}

void HttpTransport::ArmLocked(Connection* c, bool for_write) {
  c->owner = Connection::Owner::kReactor;
  epoll_event ev{};
  ev.events = (for_write ? EPOLLOUT : EPOLLIN) | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = c;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
}

void HttpTransport::OnEvent(Connection* c, uint32_t events) {
  {
    // Pairs with the lock the previous owner held when it armed `c`.
    absl::MutexLock lock(&mu_);
  }
  c->refusals_this_turn = 0;
  switch (c->phase) {
    case Connection::Phase::kDraining: {
      char buf[16 << 10];
      for (;;) {
        ssize_t n = ::recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
          c->drained += static_cast<size_t>(n);
          if (c->drained >= options_.drain_max_bytes) break;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          absl::MutexLock lock(&mu_);
          ArmLocked(c);
          return;
        }
        break;  // EOF or error
      }
      Close(c);
      return;
    }
    case Connection::Phase::kWriting: {
      // A turn of at most 1 MiB, so that one fast reader of a large response
      // does not hold the reactor from everyone else's events.
      int64_t off = SendSome(c->fd, c->out_head, c->out_body, c->out_off, 1 << 20);
      if (off < 0) {
        aborted_responses_total_.fetch_add(1, std::memory_order_relaxed);
        Close(c);
        return;
      }
      {
        absl::MutexLock lock(&mu_);
        const int64_t sent = off - static_cast<int64_t>(c->out_off);
        const int64_t release = std::min(sent, c->out_reserved);
        ReleaseBufferLocked(c->out_lane, release);
        c->out_reserved -= release;
        c->out_off = static_cast<size_t>(off);
        if (c->out_remaining() > 0) {
          ArmLocked(c, /*for_write=*/true);
          return;
        }
        --writing_;
      }
      FinishWrite(c);
      return;
    }
    default:
      break;
  }
  (void)events;
  if (!ReadAvailable(c)) {
    Close(c);
    return;
  }
  Process(c);
}

bool HttpTransport::EndResponse(Connection* c) {
  c->out_head.clear();
  c->out_head.shrink_to_fit();
  c->out_body.clear();
  c->out_body.shrink_to_fit();
  c->out_off = 0;
  ReleaseAllBuffers(c);
  if (!c->close_after_write) return true;
  if (c->unread_body) {
    StartDraining(c);
  } else {
    Close(c);
  }
  return false;
}

void HttpTransport::FinishWrite(Connection* c) {
  if (!EndResponse(c)) return;
  c->phase = Connection::Phase::kIdle;
  Process(c);
}

void HttpTransport::Process(Connection* c) {
  if (stopping() && !c->head_decided) {
    Close(c);  // no new requests once stopping
    return;
  }
  switch (Advance(c, options_.max_refusals_per_turn)) {
    case Step::kReady: {
      bool queued;
      {
        absl::MutexLock lock(&mu_);
        queued = DispatchLocked(c);
      }
      if (!queued) Close(c);
      return;
    }
    case Step::kGone:
      return;
    case Step::kYield: {
      absl::MutexLock lock(&mu_);
      c->owner = Connection::Owner::kReactor;
      reactor_ready_.push_back(c);
      return;
    }
    case Step::kNeedMore:
      break;
  }
  if (c->peer_closed) {
    Close(c);
    return;
  }
  HandBack(c);
}

void HttpTransport::Sweep(Clock::time_point now) {
  std::vector<Connection*> expired;
  {
    absl::MutexLock lock(&mu_);
    for (Connection* c : connections_) {
      if (c->owner == Connection::Owner::kReactor && c->deadline <= now &&
          std::find(reactor_ready_.begin(), reactor_ready_.end(), c) == reactor_ready_.end()) {
        expired.push_back(c);
      }
    }
  }
  for (Connection* c : expired) {
    switch (c->phase) {
      case Connection::Phase::kHead:
        head_timeouts_total_.fetch_add(1, std::memory_order_relaxed);
        SendNow(c->fd,
                CannedResponse(408, "request_timeout", "the request was not received in time"));
        break;
      case Connection::Phase::kBody:
        body_timeouts_total_.fetch_add(1, std::memory_order_relaxed);
        SendNow(c->fd, CannedResponse(408, "request_timeout",
                                      "the request body was not received in time"));
        break;
      case Connection::Phase::kWriting:
        // The client did not take the response in time: it cannot be
        // finished, so the connection closes and the client sees a short
        // body (its Content-Length says so).
        aborted_responses_total_.fetch_add(1, std::memory_order_relaxed);
        break;
      default:
        break;
    }
    Close(c);
  }
}

// ---------------------------------------------------------------------------
// Reading and framing

bool HttpTransport::ReadAvailable(Connection* c) {
  // How much the current request may hold: its head (and a little of the
  // next pipelined one), or exactly its head and body once admitted.
  const size_t want = c->head_decided ? c->head_bytes + (c->takes_body ? c->body_bytes : 0)
                                      : c->in_off + options_.max_head_bytes + 4096;
  char buf[64 << 10];
  while (c->in.size() < want) {
    size_t room = std::min(sizeof(buf), want - c->in.size());
    ssize_t n = ::recv(c->fd, buf, room, MSG_DONTWAIT);
    if (n > 0) {
      c->in.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < room) return true;
      continue;
    }
    if (n == 0) {
      c->peer_closed = true;
      return true;
    }
    if (errno == EINTR) continue;
    return errno == EAGAIN || errno == EWOULDBLOCK;
  }
  return true;
}

FramedHead HttpTransport::InspectBuffered(Connection* c) {
  // Blank lines before a request line are ignored (RFC 9112 section 2.2).
  while (c->in_off < c->in.size() && (c->in[c->in_off] == '\r' || c->in[c->in_off] == '\n')) {
    ++c->in_off;
    c->scan_from = 0;
  }
  if (c->in_off == c->in.size()) {
    c->in.clear();
    c->in_off = 0;
    c->scan_from = 0;
    return FramedHead{};
  }
  if (c->in_off > 0) {
    c->in.erase(0, c->in_off);
    c->in_off = 0;
    c->scan_from = 0;
  }
  return InspectRequest(c->in, options_, &c->scan_from);
}

HttpTransport::Step HttpTransport::Advance(Connection* c, int max_refusals) {
  for (;;) {
    if (!c->head_decided) {
      FramedHead f = InspectBuffered(c);
      if (f.kind == FramedHead::Kind::kError) {
        bad_heads_total_.fetch_add(1, std::memory_order_relaxed);
        RefuseAndDrain(c, f.status, f.code, f.message);
        return Step::kGone;
      }
      if (f.kind == FramedHead::Kind::kNeedMore) return Step::kNeedMore;
      if (c->refusals_this_turn >= max_refusals) {
        return Step::kYield;
      }
      const std::string_view raw = std::string_view(c->in).substr(0, f.head_bytes - 2);
      RequestHead head;
      head.raw = raw;
      const size_t sp1 = raw.find(' ');
      const size_t sp2 = raw.find(' ', sp1 + 1);
      head.method = raw.substr(0, sp1);
      head.target = raw.substr(sp1 + 1, sp2 - sp1 - 1);
      head.body_length = f.body_bytes;
      head.has_transfer_encoding = f.transfer_encoding;
      const bool body_pending = f.body_bytes > 0 || f.transfer_encoding;
      const bool last = c->served + 1 >= options_.keep_alive_max_requests;
      head.refusal_closes = body_pending || last || !f.keep_alive || c->peer_closed || stopping();
      head.remote_ip = &c->remote_ip;
      HeadDecision decision = head_handler_(head);
      if (!decision.immediate.empty()) {
        const bool sent = SendNow(c->fd, decision.immediate);
        ++c->served;
        ++c->refusals_this_turn;
        if (!sent || head.refusal_closes) {
          if (body_pending) {
            StartDraining(c);
          } else {
            Close(c);
          }
          return Step::kGone;
        }
        c->in_off = f.head_bytes;  // on to the next pipelined request
        continue;
      }
      c->head_decided = true;
      c->head_bytes = f.head_bytes;
      c->body_bytes = f.body_bytes;
      c->keep_alive = f.keep_alive;
      c->http10 = f.http10;
      c->lane = decision.lane;
      c->context = std::move(decision.context);
      c->streams_body = decision.streams_body && f.body_bytes > 0;
      c->takes_body = !c->streams_body && decision.takes_body && f.body_bytes > 0;
      c->unread_body = body_pending && !c->takes_body && !c->streams_body;
      // A streamed body is the handler's to read: ready at once, outside the
      // buffer budgets.
      if (c->streams_body && f.expect_continue && c->in.size() < f.head_bytes + f.body_bytes) {
        SendNow(c->fd, kContinue);
      }
      if (c->takes_body) {
        const bool complete = c->in.size() >= f.head_bytes + f.body_bytes;
        bool reserved;
        {
          absl::MutexLock lock(&mu_);
          reserved = ReserveBufferLocked(c->lane.key, static_cast<int64_t>(f.body_bytes));
          if (reserved && !complete) {
            c->body_pending = true;
            ++bodies_pending_;
          }
        }
        if (!reserved) {
          c->context.reset();
          RefuseAndDrain(c, 503, "unavailable",
                         "too many request bodies in flight for this tenant; retry");
          return Step::kGone;
        }
        c->body_reserved = static_cast<int64_t>(f.body_bytes);
        c->in.reserve(f.head_bytes + f.body_bytes);
        if (f.expect_continue && !complete) SendNow(c->fd, kContinue);
        c->phase = Connection::Phase::kBody;
        c->deadline = Clock::now() + options_.io_timeout +
                      std::chrono::milliseconds(
                          f.body_bytes * 1000 /
                          std::max<uint64_t>(1, options_.min_transfer_bytes_per_second));
      }
    }
    const size_t needed = c->head_bytes + (c->takes_body ? c->body_bytes : 0);
    return c->in.size() >= needed ? Step::kReady : Step::kNeedMore;
  }
}

// ---------------------------------------------------------------------------
// Hand-offs

void HttpTransport::SettleBodyLocked(Connection* c) {
  if (!c->body_pending) return;
  c->body_pending = false;
  if (--bodies_pending_ == 0 && stopping_) {
    foreground_cv_.SignalAll();
    background_cv_.SignalAll();
  }
}

bool HttpTransport::DispatchLocked(Connection* c) {
  // Stopping, the workers stay while a body is pending or a queue is not
  // empty, so only a request that was not in flight can find them gone.
  if (stopping_ && !c->body_pending && WorkerMayExitLocked(nullptr)) return false;
  DetachLocked(c);
  SettleBodyLocked(c);
  c->owner = Connection::Owner::kQueued;
  if (c->lane.key == Lane::kControl && !c->lane.background) {
    control_.push_back(c);
    WakeLocked(/*background=*/false);
    return true;
  }
  FairQueue<Connection*>& queue = c->lane.background ? *background_ : *foreground_;
  queue.Push(c->lane.key, c);
  if (queue.HasRunnable()) WakeLocked(c->lane.background);
  return true;
}

void HttpTransport::WakeLocked(bool background) {
  if (background) {
    if (idle_background_ > 0) background_cv_.Signal();
    return;
  }
  if (idle_foreground_ > 0) {
    foreground_cv_.Signal();
  } else if (!polling_.empty()) {
    Worker* w = polling_.back();
    polling_.pop_back();
    w->signaled = true;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(w->wake_fd, &one, sizeof(one));
  }
}

void HttpTransport::HandBack(Connection* c) {
  Detach(c);
  const Clock::time_point now = Clock::now();
  if (c->head_decided) {
    c->phase = Connection::Phase::kBody;  // deadline set when admitted
  } else if (c->buffered() > 0) {
    if (c->phase != Connection::Phase::kHead) {
      c->phase = Connection::Phase::kHead;
      c->deadline = now + options_.head_timeout;
    }
  } else {
    c->phase = Connection::Phase::kIdle;
    c->idle_since = now;
    c->deadline = now + options_.keep_alive_timeout;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_ || c->body_pending) {  // a request in flight is finished
      ArmLocked(c);
      return;
    }
  }
  Close(c);
}

void HttpTransport::StartDraining(Connection* c) {
  Detach(c);
  ::shutdown(c->fd, SHUT_WR);
  ReleaseAllBuffers(c);
  c->context.reset();
  c->phase = Connection::Phase::kDraining;
  c->deadline = Clock::now() + options_.drain_timeout;
  c->drained = 0;
  c->in.clear();
  c->in.shrink_to_fit();
  c->in_off = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      ArmLocked(c);
      return;
    }
  }
  Close(c);
}

void HttpTransport::StartWriting(Connection* c) {
  Detach(c);
  c->phase = Connection::Phase::kWriting;
  c->deadline =
      Clock::now() + options_.io_timeout +
      std::chrono::milliseconds(c->out_remaining() * 1000 /
                                std::max<uint64_t>(1, options_.min_transfer_bytes_per_second));
  absl::MutexLock lock(&mu_);
  ++writing_;
  ArmLocked(c, /*for_write=*/true);
}

void HttpTransport::RefuseAndDrain(Connection* c, int status, std::string_view code,
                                   std::string_view message) {
  SendNow(c->fd, CannedResponse(status, code, message, status == 503));
  StartDraining(c);
}

void HttpTransport::Close(Connection* c) {
  {
    absl::MutexLock lock(&mu_);
    DetachLocked(c);
    ReleaseBufferLocked(c->lane.key, c->body_reserved);
    ReleaseBufferLocked(c->out_lane, c->out_reserved);
    if (c->phase == Connection::Phase::kWriting) --writing_;
    SettleBodyLocked(c);
    connections_.erase(c);
    std::vector<Connection*>& mine = c->peer->connections;
    mine.erase(std::find(mine.begin(), mine.end(), c));
    if (mine.empty()) {
      const std::string ip = c->peer->ip;
      peers_.erase(ip);
    }
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  delete c;
}

// ---------------------------------------------------------------------------
// Workers and the scheduler

Connection* HttpTransport::NextLocked(Worker* w) {
  Connection* c = nullptr;
  uint64_t lane = 0;
  if (w->background) {
    if (!background_->Pop(&lane, &c)) return nullptr;
  } else if (!control_.empty()) {
    c = control_.front();
    control_.pop_front();
  } else if (!foreground_->Pop(&lane, &c)) {
    return nullptr;
  }
  c->owner = Connection::Owner::kWorker;
  if (!w->busy) {
    w->busy = true;
    ++busy_workers_;
  }
  w->StartServing(c);
  return c;
}

bool HttpTransport::MayRunInlineLocked(Worker* w, const Lane& lane) {
  if (lane.background != w->background) return false;
  if (w->background) return background_->TryRunInline(lane.key);
  if (!control_.empty()) return false;  // admin requests go first
  if (lane.key == Lane::kControl) return true;
  return foreground_->TryRunInline(lane.key);
}

void HttpTransport::DoneLocked(Worker* w, Connection* c) {
  if (c->lane.key == Lane::kControl && !c->lane.background) return;
  FairQueue<Connection*>& queue = c->lane.background ? *background_ : *foreground_;
  queue.Done(c->lane.key);
  if (queue.HasRunnable()) WakeLocked(c->lane.background);
}

bool HttpTransport::WorkerMayExitLocked(const Worker* w) const {
  if (!stopping_ || bodies_pending_ > 0) return false;
  const size_t background = background_->queued();
  const size_t foreground = control_.size() + foreground_->queued();
  if (w == nullptr) return background == 0 && foreground == 0;
  return (w->background ? background : foreground) == 0;
}

void HttpTransport::ReleaseLane(Worker* w, Connection* c) {
  absl::MutexLock lock(&mu_);
  DoneLocked(w, c);
}

void HttpTransport::WorkerLoop(Worker* w) {
  if (!w->background) RequestSchedulerSlice(options_.foreground_slice);
  if (w->background && options_.background_nice > 0) {
    // Linux keeps a nice value per thread; raising it needs no privilege.
    const auto tid = static_cast<id_t>(::syscall(SYS_gettid));
    errno = 0;
    int now = ::getpriority(PRIO_PROCESS, tid);
    if (errno == 0) ::setpriority(PRIO_PROCESS, tid, now + options_.background_nice);
  }
  absl::CondVar& cv = w->background ? background_cv_ : foreground_cv_;
  int& idle = w->background ? idle_background_ : idle_foreground_;
  for (;;) {
    Connection* c = nullptr;
    int timeout_ms = -1;
    {
      absl::MutexLock lock(&mu_);
      if (w->busy) {
        w->busy = false;
        --busy_workers_;
      }
      // Queued requests first (admin ones first of all), then the held
      // connections: a request waiting in a queue has waited longer.
      while ((c = NextLocked(w)) == nullptr) {
        // A keep-alive worker waits in its epoll set, even with nothing held
        // yet: a connection given to it (Hold) then wakes it.
        if (!w->held.empty() || (w->epoll_fd >= 0 && !stopping_)) {
          const Clock::time_point now = Clock::now();
          Clock::time_point first_end = Clock::time_point::max();
          for (size_t i = w->held.size(); i-- > 0;) {
            Connection* h = w->held[i];
            const Clock::time_point end = h->held_since + options_.worker_linger;
            if (stopping_ || end <= now) {
              GiveToReactorLocked(h, now);  // quiet for its linger
            } else {
              first_end = std::min(first_end, end);
            }
          }
          if (w->held.empty() && stopping_) continue;
          timeout_ms = first_end == Clock::time_point::max() ? -1 : PollMillisUntil(first_end);
          w->signaled = false;
          polling_.push_back(w);
          break;
        }
        if (WorkerMayExitLocked(w)) return;
        ++idle;
        cv.Wait(&mu_);
        --idle;
      }
    }
    if (c != nullptr) {
      Serve(w, c);
    } else {
      ServeHeld(w, timeout_ms);
    }
  }
}

void HttpTransport::ServeHeld(Worker* w, int timeout_ms) {
  epoll_event events[64];
  const int n = ::epoll_wait(w->epoll_fd, events, 64, timeout_ms);
  bool signaled;
  {
    absl::MutexLock lock(&mu_);
    signaled = w->signaled;
    if (!signaled) polling_.erase(std::find(polling_.begin(), polling_.end(), w));
    if (n > 0 && !w->busy) {
      w->busy = true;
      ++busy_workers_;
    }
  }
  w->released_held = false;
  for (int i = 0; i < n && !w->released_held; ++i) {
    if (events[i].data.ptr == &kWakeTag) {
      // A dispatcher (signaled) or Hold woke it; level-triggered, so reset.
      uint64_t value;
      [[maybe_unused]] ssize_t r = ::read(w->wake_fd, &value, sizeof(value));
      continue;
    }
    auto* c = static_cast<Connection*>(events[i].data.ptr);
    if (!ReadAvailable(c)) {
      Close(c);
      continue;
    }
    if (Continue(w, c)) {
      while (ServeOne(w, c) && Continue(w, c)) {
      }
    }
  }
}

void HttpTransport::Hold(Worker* w, Connection* c) {
  if (c->holder != nullptr) {
    // Still in this worker's set (only the holder serves it, and only the
    // holder reads held_since): no lock on the way to the next request.
    c->held_since = Clock::now();
    return;
  }
  Worker* to = nullptr;
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      // The one holding the fewest, among those not running another's
      // request if any; `w` on a tie.
      auto rank = [w](const Worker* k) {
        return std::make_tuple(k->serving != nullptr && k != w, k->held.size(), k != w);
      };
      for (Worker* k : keep_alive_workers_) {
        if (k->held.size() >= options_.max_held_per_worker || k->waiting) continue;
        if (to == nullptr || rank(k) < rank(to)) to = k;
      }
    }
    if (to != nullptr) {
      // Registered under the lock, with the bookkeeping: `to` (expiring it,
      // stopping) or the reactor (TakeHeldLocked) may detach `c` as soon as
      // the lock is let go, and must find it in the set. From here `c` is
      // `to`'s, and may be served before this call returns.
      c->holder = to;
      c->held_since = Clock::now();
      to->held.push_back(c);
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLRDHUP;
      ev.data.ptr = c;
      ::epoll_ctl(to->epoll_fd, EPOLL_CTL_ADD, c->fd, &ev);
      if (to != w && to->held.size() == 1) {
        // `to` held nothing, so it waits with no timeout: wake it to time
        // this connection's linger.
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(to->wake_fd, &one, sizeof(one));
      }
      return;
    }
  }
  HandBack(c);
}

void HttpTransport::Detach(Connection* c) {
  if (c->holder == nullptr) return;
  absl::MutexLock lock(&mu_);
  DetachLocked(c);
}

void HttpTransport::DetachLocked(Connection* c) {
  Worker* h = c->holder;
  if (h == nullptr) return;
  ::epoll_ctl(h->epoll_fd, EPOLL_CTL_DEL, c->fd, nullptr);
  h->held.erase(std::find(h->held.begin(), h->held.end(), c));
  c->holder = nullptr;
}

void HttpTransport::ReleaseHeld(Worker* w, Connection* keep) {
  if (w->epoll_fd < 0) return;
  absl::MutexLock lock(&mu_);
  w->waiting = true;
  TakeHeldLocked(w, keep);
}

void HttpTransport::TakeHeldLocked(Worker* w, Connection* keep) {
  const Clock::time_point now = Clock::now();
  for (size_t i = w->held.size(); i-- > 0;) {
    Connection* h = w->held[i];
    if (h == keep) continue;
    GiveToReactorLocked(h, now);
    w->released_held = true;
  }
}

void HttpTransport::GiveToReactorLocked(Connection* c, Clock::time_point now) {
  // Held connections are idle, with nothing buffered (Hold).
  DetachLocked(c);
  c->phase = Connection::Phase::kIdle;
  c->idle_since = now;
  c->deadline = now + options_.keep_alive_timeout;
  ArmLocked(c);
}

void HttpTransport::Serve(Worker* w, Connection* c) {
  if (c->write_task && !(SendWriteTask(w, c) && Continue(w, c))) return;
  while (ServeOne(w, c) && Continue(w, c)) {
  }
}

bool HttpTransport::DispatchWriteLocked(Connection* c) {
  if (stopping_ && WorkerMayExitLocked(nullptr)) return false;
  DetachLocked(c);
  c->write_task = true;
  c->lane.background = true;
  c->owner = Connection::Owner::kQueued;
  background_->Push(c->lane.key, c);
  if (background_->HasRunnable()) WakeLocked(/*background=*/true);
  return true;
}

bool HttpTransport::SendWriteTask(Worker* w, Connection* c) {
  c->write_task = false;
  const size_t total = c->out_head.size() + c->out_body.size();
  int64_t off = static_cast<int64_t>(c->out_off);
  for (;;) {
    off = SendSome(c->fd, c->out_head, c->out_body, static_cast<size_t>(off));
    if (off < 0 || static_cast<size_t>(off) == total) break;
    pollfd p{c->fd, POLLOUT, 0};
    if (::poll(&p, 1, kBackgroundSendWaitMs) <= 0) break;
  }
  {
    absl::MutexLock lock(&mu_);
    DoneLocked(w, c);
    if (off >= 0) {
      const int64_t release =
          std::min<int64_t>(off - static_cast<int64_t>(c->out_off), c->out_reserved);
      ReleaseBufferLocked(c->out_lane, release);
      c->out_reserved -= release;
      c->out_off = static_cast<size_t>(off);
    }
  }
  if (off < 0) {
    aborted_responses_total_.fetch_add(1, std::memory_order_relaxed);
    Close(c);
    return false;
  }
  if (c->out_remaining() > 0) {
    StartWriting(c);  // the client stalled: the reactor waits for it
    return false;
  }
  return EndResponse(c);
}

bool HttpTransport::ServeOne(Worker* w, Connection* c) {
  // A streamed body waits on this client: the worker's other connections
  // do not.
  if (c->streams_body) ReleaseHeld(w, c);
  Exchange ex;
  const std::string_view raw = std::string_view(c->in).substr(0, c->head_bytes - 2);
  const size_t sp1 = raw.find(' ');
  const size_t sp2 = raw.find(' ', sp1 + 1);
  ex.method_ = raw.substr(0, sp1);
  ex.target_ = raw.substr(sp1 + 1, sp2 - sp1 - 1);
  ex.raw_head_ = raw;
  if (c->takes_body) ex.body_ = std::string_view(c->in).substr(c->head_bytes, c->body_bytes);
  ex.body_buffered_ = ex.body_;
  // Where the request's bytes in c->in end.
  size_t request_end = c->head_bytes + (c->takes_body ? c->body_bytes : 0);
  if (c->streams_body) {
    // What arrived with the head is handed out first, the rest read from the
    // socket; the deadline runs from now, not from while it was queued.
    request_end =
        static_cast<size_t>(std::min<uint64_t>(c->in.size(), c->head_bytes + c->body_bytes));
    ex.body_buffered_ = std::string_view(c->in).substr(c->head_bytes, request_end - c->head_bytes);
    ex.body_unreceived_ = c->body_bytes - ex.body_buffered_.size();
    ex.body_deadline_ = Clock::now() + TransferTime(c->body_bytes, options_);
  }
  ex.remote_ip_ = &c->remote_ip;
  ex.context_ = std::move(c->context);
  ex.transport_ = this;
  ex.worker_ = w;
  ex.connection_ = c;
  request_handler_(ex);
  ex.context_.reset();  // the permit goes back before the response is sent
  {
    absl::MutexLock lock(&mu_);
    w->serving = nullptr;
    w->waiting = false;
    if (!ex.lane_released_) DoneLocked(w, c);
    ReleaseBufferLocked(c->lane.key, c->body_reserved);
    c->body_reserved = 0;
  }

  // A streamed body read in part is never parsed as the next request: the
  // connection ends after the response (drained, as a body not taken; one
  // that failed is closed).
  const bool body_failed = !ex.body_error_.ok();
  if (c->streams_body && !body_failed && ex.body_left() > 0) c->unread_body = true;
  c->streams_body = false;
  const bool head_request = ex.method_ == "HEAD";
  const bool close = ex.close_after_ || c->unread_body || body_failed || !c->keep_alive ||
                     c->peer_closed || c->served + 1 >= options_.keep_alive_max_requests ||
                     stopping();
  if (ex.stream_ != Exchange::Stream::kNone) {
    // The handler wrote its response itself.
    c->in_off = request_end;
    c->head_decided = false;
    ++c->served;
    if (ex.stream_ != Exchange::Stream::kFinished) {
      // Failed (counted then) or left unfinished: closed with no terminating
      // chunk, so the client cannot take it for a whole response.
      if (ex.stream_ == Exchange::Stream::kOpen) {
        aborted_responses_total_.fetch_add(1, std::memory_order_relaxed);
      }
      Close(c);
      return false;
    }
    if (close || ex.stream_closes_) {
      if (c->unread_body) {
        StartDraining(c);
      } else {
        Close(c);
      }
      return false;
    }
    return true;
  }
  HttpResponse& response = ex.response_;
  std::string head = ResponseHead(response, close, c->http10);
  std::string_view body =
      head_request || HasNoBody(response.status) ? std::string_view() : response.body;
  // The request's bytes are done with (ex's views point into them).
  c->in_off = request_end;
  c->head_decided = false;
  ++c->served;
  const size_t total = head.size() + body.size();
  // A large response (a big value, a job with a big payload) is copied into
  // the socket by a background worker: that copy is heavy work too, whoever
  // asked for it.
  const bool hand_off = !w->background && body.size() >= kBackgroundResponseBytes;
  int64_t off = hand_off ? 0 : SendSome(c->fd, head, body, 0);
  // Heavy work's response goes out at the heavy work's priority while the
  // client keeps up; one that stalls is the reactor's.
  while (w->background && off >= 0 && static_cast<size_t>(off) < total) {
    pollfd p{c->fd, POLLOUT, 0};
    if (::poll(&p, 1, kBackgroundSendWaitMs) <= 0) break;
    off = SendSome(c->fd, head, body, static_cast<size_t>(off));
  }
  if (off < 0) {
    Close(c);
    return false;
  }
  if (static_cast<size_t>(off) < total) {
    // The client does not take it all now: the reactor finishes it, within
    // the lane's buffer budget, while this worker moves on.
    const auto remaining = static_cast<int64_t>(total - static_cast<size_t>(off));
    bool reserved;
    {
      absl::MutexLock lock(&mu_);
      reserved = ReserveBufferLocked(c->lane.key, remaining);
    }
    if (!reserved) {
      aborted_responses_total_.fetch_add(1, std::memory_order_relaxed);
      Close(c);
      return false;
    }
    c->out_lane = c->lane.key;
    c->out_reserved = remaining;
    c->out_head = std::move(head);
    if (head_request || HasNoBody(response.status)) {
      c->out_body.clear();
    } else {
      c->out_body = std::move(response.body);
    }
    c->out_off = static_cast<size_t>(off);
    c->close_after_write = close;
    if (hand_off) {
      bool queued;
      {
        absl::MutexLock lock(&mu_);
        queued = DispatchWriteLocked(c);
      }
      if (queued) return false;
    }
    StartWriting(c);
    return false;
  }
  if (close) {
    if (c->unread_body) {
      StartDraining(c);
    } else {
      Close(c);
    }
    return false;
  }
  return true;
}

bool HttpTransport::Continue(Worker* w, Connection* c) {
  c->context.reset();
  c->refusals_this_turn = 0;
  for (;;) {
    // A keep-alive worker answers one refusal per turn, then gives the
    // connection to the reactor: the requests of the other connections it
    // holds do not wait behind a client pipelining refused requests.
    switch (Advance(c, w->epoll_fd >= 0 ? 1 : options_.max_refusals_per_turn)) {
      case Step::kGone:
        return false;
      case Step::kReady: {
        bool queued;
        {
          absl::MutexLock lock(&mu_);
          if (MayRunInlineLocked(w, c->lane)) {
            SettleBodyLocked(c);
            w->StartServing(c);
            return true;
          }
          queued = DispatchLocked(c);
        }
        if (!queued) Close(c);
        return false;
      }
      case Step::kYield: {
        absl::MutexLock lock(&mu_);
        DetachLocked(c);
        c->owner = Connection::Owner::kReactor;
        reactor_ready_.push_back(c);
        uint64_t one = 1;
        [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
        return false;
      }
      case Step::kNeedMore:
        break;
    }
    if (c->peer_closed) {
      Close(c);
      return false;
    }
    if (c->buffered() > 0 || w->background) {
      // Part of the next request, or a background worker (which does not
      // wait on clients): the reactor takes it from here.
      HandBack(c);
      return false;
    }
    Hold(w, c);
    return false;
  }
}

// ---------------------------------------------------------------------------
// Request framing

namespace {

FramedHead Refuse(int status, std::string_view code, std::string_view message) {
  FramedHead f;
  f.kind = FramedHead::Kind::kError;
  f.status = status;
  f.code = code;
  f.message = message;
  return f;
}

FramedHead InspectRequest(std::string_view data, const TransportOptions& o, size_t* scan_from) {
  const size_t start = *scan_from >= 3 ? *scan_from - 3 : 0;
  const size_t end = data.find("\r\n\r\n", start);
  if (end == std::string_view::npos) {
    // Incomplete: refuse early what can never become a valid head.
    size_t eol = data.find('\n');
    size_t line = eol == std::string_view::npos ? data.size() : eol;
    // The CR of the line's CRLF (or a last byte that may become one) is not
    // part of the request line, as the complete head counts it below.
    // Counting it refused a request line of exactly the limit with 414 when
    // it arrived before the end of its head, and accepted it when the whole
    // head came in one read (found by tests/fuzz/http_head_fuzzer).
    if (line > 0 && data[line - 1] == '\r') --line;
    if (line > o.max_request_line_bytes) {
      return Refuse(414, "too_large", "request line too long");
    }
    if (data.size() > o.max_head_bytes) {
      return Refuse(431, "too_large", "request headers too large");
    }
    for (size_t i = start; i < data.size(); ++i) {
      char ch = data[i];
      if (ch == '\0') return Refuse(400, "invalid_argument", "NUL byte in request head");
      if (ch == '\n' && (i == 0 || data[i - 1] != '\r')) {
        return Refuse(400, "invalid_argument", "bare LF in request head");
      }
    }
    *scan_from = data.size();
    return FramedHead{};
  }
  *scan_from = end;
  const size_t head_bytes = end + 4;
  const std::string_view head = data.substr(0, end);

  FramedHead f;
  bool have_length = false;
  uint64_t length = 0;
  size_t headers = 0;
  size_t pos = 0;
  bool request_line = true;
  std::optional<std::string_view> connection;
  while (pos <= head.size()) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    for (char ch : line) {
      auto u = static_cast<unsigned char>(ch);
      if ((u < 0x20 && ch != '\t') || u == 0x7F) {
        return Refuse(400, "invalid_argument", "control character in request head");
      }
    }
    if (request_line) {
      request_line = false;
      if (line.size() > o.max_request_line_bytes) {
        return Refuse(414, "too_large", "request line too long");
      }
      size_t sp1 = line.find(' ');
      size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
      if (sp1 == 0 || sp2 == std::string_view::npos || sp2 == sp1 + 1 ||
          line.find(' ', sp2 + 1) != std::string_view::npos ||
          line.find('\t') != std::string_view::npos) {
        return Refuse(400, "invalid_argument", "malformed request line");
      }
      for (char ch : line.substr(0, sp1)) {
        if (!IsTokenChar(ch)) return Refuse(400, "invalid_argument", "malformed method");
      }
      std::string_view version = line.substr(sp2 + 1);
      if (version == "HTTP/1.1") {
        f.http10 = false;
      } else if (version == "HTTP/1.0") {
        f.http10 = true;
      } else {
        return Refuse(400, "invalid_argument", "only HTTP/1.1 and HTTP/1.0 are served");
      }
      continue;
    }
    if (++headers > o.max_header_count) {
      return Refuse(431, "too_large", "too many request headers");
    }
    if (line.empty() || line[0] == ' ' || line[0] == '\t') {
      return Refuse(400, "invalid_argument", "folded or empty header line");
    }
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return Refuse(400, "invalid_argument", "malformed header line");
    }
    std::string_view name = line.substr(0, colon);
    for (char ch : name) {
      if (!IsTokenChar(ch)) {
        return Refuse(400, "invalid_argument", "malformed header name");
      }
    }
    std::string_view value = TrimOws(line.substr(colon + 1));
    if (EqualsIgnoreCase(name, "content-length")) {
      if (have_length) {
        return Refuse(400, "invalid_argument", "more than one Content-Length");
      }
      if (value.empty() || value.size() > 18) {
        return Refuse(400, "invalid_argument", "bad Content-Length");
      }
      for (char ch : value) {
        if (ch < '0' || ch > '9') {
          return Refuse(400, "invalid_argument", "bad Content-Length");
        }
        length = length * 10 + static_cast<uint64_t>(ch - '0');
      }
      have_length = true;
    } else if (EqualsIgnoreCase(name, "transfer-encoding")) {
      f.transfer_encoding = true;
    } else if (EqualsIgnoreCase(name, "expect")) {
      f.expect_continue = EqualsIgnoreCase(value, "100-continue");
    } else if (EqualsIgnoreCase(name, "connection")) {
      if (connection.has_value()) {
        return Refuse(400, "invalid_argument", "more than one Connection header");
      }
      connection = value;
    }
  }
  if (head_bytes > o.max_head_bytes) {
    return Refuse(431, "too_large", "request headers too large");
  }
  if (f.transfer_encoding && have_length) {
    return Refuse(400, "invalid_argument", "both Content-Length and Transfer-Encoding");
  }
  f.keep_alive = f.http10 ? connection.has_value() && ListsToken(*connection, "keep-alive")
                          : !(connection.has_value() && ListsToken(*connection, "close"));
  f.kind = FramedHead::Kind::kHead;
  f.head_bytes = head_bytes;
  f.body_bytes = length;
  return f;
}

}  // namespace

FramedHead InspectRequestHead(std::string_view data, const TransportOptions& options,
                              size_t* scan_from) {
  return InspectRequest(data, options, scan_from);
}

}  // namespace tenancy::internal
