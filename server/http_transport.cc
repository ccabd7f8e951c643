#include "http_transport.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "text.h"
#include "http_status.h"

// Ownership protocol. A Connection is owned by exactly one of: the reactor
// (registered and armed in epoll, or being read by the reactor), the ready
// queue, or one worker. Only the owner touches its buffers; ownership changes
// under mu_, which also gives ThreadSanitizer (and the memory model) the
// happens-before edge between the old owner's writes and the new owner's
// reads. Every fd is registered in epoll with EPOLLONESHOT for its whole life:
// arming it (ArmLocked, under mu_) is what hands it to the reactor, and it
// fires once.

namespace tenancy::internal {

using Clock = std::chrono::steady_clock;

struct Connection {
  enum class Owner { kReactor, kQueued, kWorker };
  enum class Phase { kIdle, kHead, kDraining };

  int fd = -1;
  Owner owner = Owner::kReactor;  // protected by HttpTransport::mu_

  // Touched only by the owner.
  Phase phase = Phase::kIdle;
  Clock::time_point deadline;
  std::string in;           // received bytes; [in_off, size) not consumed
  size_t in_off = 0;
  size_t scan_from = 0;     // where the search for the end of the head resumes
  bool peer_closed = false;  // EOF read
  size_t served = 0;
  size_t drained = 0;
  uint64_t body_bytes = 0;      // of the request in the buffer, once ready
  bool transfer_encoding = false;
  size_t head_bytes = 0;
  // The head handler has decided on the request at the front of the buffer,
  // and admitted it with this context.
  bool head_decided = false;
  std::unique_ptr<ExchangeContext> context;

  // Constant after accept.
  std::string remote_ip;
  int remote_port = 0;
  std::string local_ip;
  int local_port = 0;
};

struct HttpTransport::Frame {
  // kNeedMore: no complete head yet. kHead: the head is complete, the body
  // the reactor buffers is not. kReady: the request is complete in memory.
  enum class Kind { kNeedMore, kHead, kReady, kError };
  Kind kind = Kind::kNeedMore;
  size_t head_bytes = 0;
  uint64_t body_bytes = 0;
  bool transfer_encoding = false;
  bool expect_continue = false;
  int status = 0;
  std::string_view code;
  std::string_view message;
};

class HttpTransport::Worker {
 public:
  std::thread thread;
  int wake_fd = -1;  // eventfd: "stop lingering, others need a worker"
  // Protected by HttpTransport::mu_: set when taken off lingering_ by a
  // dispatcher (who then writes wake_fd).
  bool signaled = false;
};

namespace {

thread_local Exchange* tls_exchange = nullptr;

char kListenTag;
char kWakeTag;

int64_t MillisUntil(Clock::time_point deadline) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - Clock::now())
                .count();
  return ms < 0 ? 0 : ms;
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
      (c >= '0' && c <= '9')) {
    return true;
  }
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

void AddressOf(const sockaddr_storage& addr, std::string* ip, int* port) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    *port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
    *port = ntohs(in6->sin6_port);
  }
  *ip = buf;
}

std::string CannedResponse(int status, std::string_view code,
                           std::string_view message) {
  std::string body = ErrorBody(code, message);
  return Cat("HTTP/1.1 ", status, " ", ReasonPhrase(status),
                      "\r\nContent-Type: application/json\r\nContent-Length: ",
                      body.size(), "\r\nConnection: close\r\n\r\n", body);
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

// Inspects the bytes of one request (the buffer after blank lines). Finds the
// end of its head, checks the head against the limits and the grammar that
// matters for framing (CRLF line ends, no control bytes, no obs-fold, one
// Content-Length), and says whether the request is complete in memory.
// *scan_from remembers how far the search for the end of the head got.
HttpTransport::Frame InspectRequest(std::string_view data,
                                    const TransportOptions& o,
                                    size_t* scan_from);

}  // namespace

// ---------------------------------------------------------------------------
// The stream httplib reads the request from and writes the response to.

class HttpTransport::ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(HttpTransport* transport, Connection* c)
      : transport_(transport), c_(c) {}
  ~ConnectionStream() override {
    if (slow_slot_) transport_->ReleaseSlowIo();
  }

  // Result of Receive() when no slow-I/O slot is free.
  static constexpr ssize_t kBusy = -2;

  bool is_readable() const override {
    if (c_->in_off < c_->in.size()) return true;
    pollfd p{c_->fd, POLLIN, 0};
    return ::poll(&p, 1, static_cast<int>(transport_->options_.io_timeout.count())) > 0;
  }
  bool is_writable() const override { return true; }

  // Serves the buffered request; reading past it (which httplib never does,
  // since the handlers read bodies through Exchange) has a deadline.
  ssize_t read(char* ptr, size_t size) override {
    if (c_->in_off < c_->in.size()) {
      size_t n = std::min(size, c_->in.size() - c_->in_off);
      std::memcpy(ptr, c_->in.data() + c_->in_off, n);
      c_->in_off += n;
      return static_cast<ssize_t>(n);
    }
    return Receive(ptr, size, Clock::now() + transport_->options_.io_timeout);
  }

  ssize_t write(const char* ptr, size_t size) override {
    out_.append(ptr, size);
    if (out_.size() >= kFlushAt && !Flush()) return -1;
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_->remote_ip;
    port = c_->remote_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_->local_ip;
    port = c_->local_port;
  }
  socket_t socket() const override { return c_->fd; }

  // Reads from the socket (never the buffer) until `deadline`; a wait of
  // more than io_timeout without a byte fails too. Pending output is sent
  // first (a "100 Continue" must reach the client before it sends).
  // Returns bytes read, 0 on EOF, -1 on timeout or error, kBusy if it would
  // have to wait and no slow-I/O slot is free.
  ssize_t Receive(char* ptr, size_t size, Clock::time_point deadline) {
    if (!Flush()) return -1;
    for (;;) {
      ssize_t n = ::recv(c_->fd, ptr, size, MSG_DONTWAIT);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
      if (!TakeSlowSlot()) return kBusy;
      int64_t wait = std::min<int64_t>(MillisUntil(deadline),
                                       transport_->options_.io_timeout.count());
      if (wait <= 0) return -1;
      pollfd p{c_->fd, POLLIN, 0};
      int rc = ::poll(&p, 1, static_cast<int>(wait));
      if (rc == 0) return -1;
      if (rc < 0 && errno != EINTR) return -1;
    }
  }

  // Sends everything written so far. False if the client does not take it
  // fast enough (io_timeout without progress, or below the minimum rate).
  bool Flush() {
    if (out_.empty()) return true;
    const TransportOptions& o = transport_->options_;
    Clock::time_point deadline =
        Clock::now() + o.io_timeout +
        std::chrono::milliseconds(out_.size() * 1000 /
                                  std::max<uint64_t>(1, o.min_transfer_bytes_per_second));
    std::string_view data = out_;
    while (!data.empty()) {
      ssize_t n = ::send(c_->fd, data.data(), data.size(),
                         MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        data.remove_prefix(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
        out_.clear();
        return false;
      }
      if (!TakeSlowSlot()) {
        out_.clear();
        return false;
      }
      int64_t wait = std::min<int64_t>(MillisUntil(deadline), o.io_timeout.count());
      pollfd p{c_->fd, POLLOUT, 0};
      if (wait <= 0 || ::poll(&p, 1, static_cast<int>(wait)) <= 0) {
        out_.clear();
        return false;
      }
    }
    out_.clear();
    return true;
  }

 private:
  static constexpr size_t kFlushAt = 64 << 10;

  // A worker about to wait on its client takes a slot first, and keeps it
  // for the rest of the request.
  bool TakeSlowSlot() {
    if (!slow_slot_) slow_slot_ = transport_->TryAcquireSlowIo();
    return slow_slot_;
  }

  HttpTransport* const transport_;
  Connection* const c_;
  std::string out_;
  bool slow_slot_ = false;
};

// ---------------------------------------------------------------------------
// Exchange

absl::Status Exchange::ReadBody(std::string* out) {
  if (body_read_) return absl::FailedPreconditionError("body already read");
  body_read_ = true;
  out->clear();
  out->reserve(body_length_);
  Connection* c = connection_;
  size_t buffered = std::min<uint64_t>(body_length_, c->in.size() - c->in_off);
  out->append(c->in, c->in_off, buffered);
  c->in_off += buffered;
  body_from_buffer_ = buffered;
  uint64_t remaining = body_length_ - buffered;
  if (remaining > 0) {
    const TransportOptions& o = transport_->options_;
    Clock::time_point deadline =
        Clock::now() + o.io_timeout +
        std::chrono::milliseconds(remaining * 1000 /
                                  std::max<uint64_t>(1, o.min_transfer_bytes_per_second));
    auto* stream = static_cast<HttpTransport::ConnectionStream*>(stream_);
    char buf[64 << 10];
    while (remaining > 0) {
      ssize_t n = stream->Receive(buf, std::min<uint64_t>(remaining, sizeof(buf)),
                                  deadline);
      if (n == 0) {
        return absl::UnavailableError("the client closed the connection");
      }
      if (n == HttpTransport::ConnectionStream::kBusy) {
        return absl::ResourceExhaustedError(
            "the server is busy waiting on other slow clients; retry");
      }
      if (n < 0) {
        return absl::DeadlineExceededError("request body: client too slow");
      }
      out->append(buf, static_cast<size_t>(n));
      remaining -= static_cast<uint64_t>(n);
    }
  }
  body_complete_ = true;
  return absl::OkStatus();
}

const std::string& Exchange::remote_ip() const { return connection_->remote_ip; }

std::optional<std::string_view> FindRawHeader(std::string_view raw_head,
                                              std::string_view name,
                                              bool* repeated) {
  std::optional<std::string_view> found;
  if (repeated != nullptr) *repeated = false;
  size_t pos = raw_head.find("\r\n");  // skip the request line
  while (pos != std::string_view::npos && pos + 2 < raw_head.size()) {
    pos += 2;
    size_t eol = raw_head.find("\r\n", pos);
    std::string_view line = raw_head.substr(
        pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol;
    size_t colon = line.find(':');
    if (colon == std::string_view::npos ||
        !EqualsIgnoreCase(line.substr(0, colon), name)) {
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

bool Exchange::WillClose() const {
  return close_after_ || !handled_ || has_transfer_encoding_ ||
         transport_->stopping() ||
         (body_length_ > 0 && !body_complete_);
}

// ---------------------------------------------------------------------------
// HttpTransport

HttpTransport::HttpTransport(TransportOptions options)
    : options_(std::move(options)) {
  // httplib advertises these in its Keep-Alive header.
  set_keep_alive_max_count(options_.keep_alive_max_requests);
  set_keep_alive_timeout(std::max<time_t>(
      1, std::chrono::duration_cast<std::chrono::seconds>(options_.keep_alive_timeout)
             .count()));
  // A response that is followed by a close says so.
  set_post_routing_handler([](const httplib::Request&, httplib::Response& res) {
    Exchange* ex = Current();
    if (ex != nullptr && ex->WillClose()) {
      res.headers.erase("Keep-Alive");
      if (res.get_header_value("Connection") != "close") {
        res.set_header("Connection", "close");
      }
    }
  });
}

HttpTransport::~HttpTransport() {
  Stop();
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

Exchange* HttpTransport::Current() { return tls_exchange; }

bool HttpTransport::process_and_close_socket(socket_t sock) {
  ::close(sock);
  return false;
}

absl::StatusOr<int> HttpTransport::Bind(const std::string& host, int port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(),
                         &hints, &result);
  if (rc != 0) {
    return absl::UnavailableError(
        Cat("resolve ", host, ": ", gai_strerror(rc)));
  }
  std::string last_error = "no address";
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                      ai->ai_protocol);
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
    return absl::UnavailableError(
        Cat("bind ", host, ":", port, ": ", last_error));
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  std::string ip;
  int bound_port = 0;
  AddressOf(addr, &ip, &bound_port);
  return bound_port;
}

absl::Status HttpTransport::Start() {
  if (listen_fd_ < 0) return absl::FailedPreconditionError("not bound");
  if (started_) return absl::FailedPreconditionError("already started");
  epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd_ < 0 || wake_fd_ < 0) {
    return absl::InternalError(Cat("epoll/eventfd: ", std::strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = &kListenTag;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &ev);
  ev.data.ptr = &kWakeTag;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);

  int n = std::max(1, options_.worker_threads);
  slow_io_limit_ = options_.max_slow_io_workers > 0 ? options_.max_slow_io_workers
                                                    : std::max(1, n - 1);
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    w->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->wake_fd < 0) {
      return absl::InternalError(Cat("eventfd: ", std::strerror(errno)));
    }
    workers_.push_back(std::move(w));
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
    work_cv_.SignalAll();
    for (Worker* w : lingering_) {
      w->signaled = true;
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(w->wake_fd, &one, sizeof(one));
    }
    lingering_.clear();
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof(one));
  // The reactor first: it stops accepting and dispatching and closes what it
  // owns; then the workers serve every request already queued and exit.
  reactor_.join();
  for (auto& w : workers_) w->thread.join();
  std::vector<Connection*> left;
  {
    absl::MutexLock lock(&mu_);
    left.assign(connections_.begin(), connections_.end());
  }
  for (Connection* c : left) Close(c);
  for (auto& w : workers_) ::close(w->wake_fd);
  ::close(epoll_fd_);
  ::close(wake_fd_);
  ::close(listen_fd_);
  listen_fd_ = -1;
}

bool HttpTransport::TryAcquireSlowIo() {
  int in_use = slow_io_in_use_.load(std::memory_order_relaxed);
  while (in_use < slow_io_limit_) {
    if (slow_io_in_use_.compare_exchange_weak(in_use, in_use + 1,
                                              std::memory_order_acquire)) {
      return true;
    }
  }
  slow_io_refusals_total_.fetch_add(1, std::memory_order_relaxed);
  return false;
}

void HttpTransport::ReleaseSlowIo() {
  slow_io_in_use_.fetch_sub(1, std::memory_order_release);
}

TransportCounters HttpTransport::Counters() const {
  TransportCounters c;
  {
    absl::MutexLock lock(&mu_);
    c.open_connections = static_cast<int64_t>(connections_.size());
    c.queued_requests = static_cast<int64_t>(ready_.size());
  }
  c.busy_workers = busy_workers_.load(std::memory_order_relaxed);
  c.accepted_total = accepted_total_.load(std::memory_order_relaxed);
  c.refused_connections_total =
      refused_connections_total_.load(std::memory_order_relaxed);
  c.head_timeouts_total = head_timeouts_total_.load(std::memory_order_relaxed);
  c.bad_heads_total = bad_heads_total_.load(std::memory_order_relaxed);
  c.slow_io_refusals_total = slow_io_refusals_total_.load(std::memory_order_relaxed);
  return c;
}

// ---------------------------------------------------------------------------
// Reactor

void HttpTransport::ReactorLoop() {
  constexpr auto kSweepEvery = std::chrono::milliseconds(100);
  epoll_event events[128];
  Clock::time_point next_sweep = Clock::now() + kSweepEvery;
  for (;;) {
    int timeout = static_cast<int>(MillisUntil(next_sweep));
    int n = ::epoll_wait(epoll_fd_, events, 128, timeout);
    for (int i = 0; i < n; ++i) {
      void* p = events[i].data.ptr;
      if (p == &kListenTag) {
        AcceptAll();
      } else if (p == &kWakeTag) {
        // Stop requested; checked below.
      } else {
        OnReadable(static_cast<Connection*>(p));
      }
    }
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    Clock::time_point now = Clock::now();
    if (now >= next_sweep) {
      if (accept_paused_) {
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
  // Stopping: no new connections; close every connection the reactor owns
  // (idle, half-received or draining). Queued ones are the workers' now.
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
  std::vector<Connection*> mine;
  {
    absl::MutexLock lock(&mu_);
    for (Connection* c : connections_) {
      if (c->owner == Connection::Owner::kReactor) mine.push_back(c);
    }
  }
  for (Connection* c : mine) Close(c);
}

void HttpTransport::AcceptAll() {
  for (;;) {
    sockaddr_storage addr{};
    socklen_t len = sizeof(addr);
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len,
                       SOCK_CLOEXEC);
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
    size_t open;
    {
      absl::MutexLock lock(&mu_);
      open = connections_.size();
    }
    if (open >= options_.max_connections) {
      refused_connections_total_.fetch_add(1, std::memory_order_relaxed);
      SendNow(fd, CannedResponse(503, "unavailable", "too many connections"));
      ::shutdown(fd, SHUT_RDWR);
      ::close(fd);
      continue;
    }
    int yes = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof(yes));
    auto* c = new Connection;
    c->fd = fd;
    AddressOf(addr, &c->remote_ip, &c->remote_port);
    sockaddr_storage local{};
    socklen_t local_len = sizeof(local);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len);
    AddressOf(local, &c->local_ip, &c->local_port);
    c->phase = Connection::Phase::kIdle;
    c->deadline = Clock::now() + options_.head_timeout;
    absl::MutexLock lock(&mu_);
    connections_.insert(c);
    c->owner = Connection::Owner::kReactor;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev);
  }
}

void HttpTransport::ArmLocked(Connection* c) {
  c->owner = Connection::Owner::kReactor;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT;
  ev.data.ptr = c;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, c->fd, &ev);
}

bool HttpTransport::ReadAvailable(Connection* c) {
  const size_t cap = options_.max_head_bytes + options_.prebuffer_body_bytes + 4096;
  char buf[16 << 10];
  while (c->in.size() - c->in_off < cap) {
    size_t want = std::min(sizeof(buf), cap - (c->in.size() - c->in_off));
    ssize_t n = ::recv(c->fd, buf, want, MSG_DONTWAIT);
    if (n > 0) {
      c->in.append(buf, static_cast<size_t>(n));
      if (static_cast<size_t>(n) < want) return true;
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

HttpTransport::Frame HttpTransport::InspectBuffered(Connection* c) {
  // Blank lines before a request line are ignored (RFC 9112 section 2.2).
  while (c->in_off < c->in.size() &&
         (c->in[c->in_off] == '\r' || c->in[c->in_off] == '\n')) {
    ++c->in_off;
    c->scan_from = 0;
  }
  if (c->in_off == c->in.size()) {
    c->in.clear();
    c->in_off = 0;
    c->scan_from = 0;
    return Frame{};
  }
  if (c->in_off > 0) {
    c->in.erase(0, c->in_off);
    c->in_off = 0;
    c->scan_from = 0;
  }
  Frame f = InspectRequest(c->in, options_, &c->scan_from);
  if (f.kind == Frame::Kind::kReady || f.kind == Frame::Kind::kHead) {
    c->head_bytes = f.head_bytes;
    c->body_bytes = f.body_bytes;
    c->transfer_encoding = f.transfer_encoding;
  }
  return f;
}

HttpTransport::Step HttpTransport::Advance(Connection* c) {
  for (;;) {
    Frame f = InspectBuffered(c);
    if (f.kind == Frame::Kind::kError) {
      bad_heads_total_.fetch_add(1, std::memory_order_relaxed);
      RefuseAndDrain(c, f.status, f.code, f.message);
      return Step::kGone;
    }
    if (f.kind == Frame::Kind::kNeedMore) return Step::kNeedMore;
    if (!c->head_decided && head_handler_) {
      const std::string_view raw = std::string_view(c->in).substr(0, f.head_bytes - 2);
      RequestHead head;
      head.raw = raw;
      size_t sp1 = raw.find(' ');
      size_t sp2 = raw.find(' ', sp1 + 1);
      head.method = raw.substr(0, sp1);
      head.target = raw.substr(sp1 + 1, sp2 - sp1 - 1);
      head.body_length = f.body_bytes;
      head.has_transfer_encoding = f.transfer_encoding;
      const bool body_pending = f.body_bytes > 0 || f.transfer_encoding;
      const bool last = c->served + 1 >= options_.keep_alive_max_requests;
      head.refusal_closes = body_pending || last || c->peer_closed || stopping();
      head.remote_ip = &c->remote_ip;
      HeadDecision decision = head_handler_(head);
      if (!decision.refusal.empty()) {
        const bool sent = SendNow(c->fd, decision.refusal);
        ++c->served;
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
      c->context = std::move(decision.context);
    }
    c->head_decided = true;
    return f.kind == Frame::Kind::kReady ? Step::kReady : Step::kNeedMore;
  }
}

void HttpTransport::OnReadable(Connection* c) {
  {
    // Pairs with the lock the previous owner held when it armed `c`.
    absl::MutexLock lock(&mu_);
  }
  if (c->phase == Connection::Phase::kDraining) {
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
  if (!ReadAvailable(c)) {
    Close(c);
    return;
  }
  switch (Advance(c)) {
    case Step::kReady: {
      absl::MutexLock lock(&mu_);
      DispatchLocked(c);
      return;
    }
    case Step::kGone:
      return;
    case Step::kNeedMore:
      break;
  }
  if (c->peer_closed) {
    Close(c);
    return;
  }
  if (c->phase == Connection::Phase::kIdle && !c->in.empty()) {
    c->phase = Connection::Phase::kHead;
    c->deadline = Clock::now() + options_.head_timeout;
  }
  absl::MutexLock lock(&mu_);
  ArmLocked(c);
}

void HttpTransport::Sweep(Clock::time_point now) {
  std::vector<Connection*> expired;
  {
    absl::MutexLock lock(&mu_);
    for (Connection* c : connections_) {
      if (c->owner == Connection::Owner::kReactor && c->deadline <= now) {
        expired.push_back(c);
      }
    }
  }
  for (Connection* c : expired) {
    if (c->phase == Connection::Phase::kHead) {
      head_timeouts_total_.fetch_add(1, std::memory_order_relaxed);
      SendNow(c->fd, CannedResponse(408, "request_timeout",
                                    "the request was not received in time"));
    }
    Close(c);
  }
}

// ---------------------------------------------------------------------------
// Hand-offs

void HttpTransport::DispatchLocked(Connection* c) {
  c->owner = Connection::Owner::kQueued;
  ready_.push_back(c);
  if (idle_workers_ > 0) {
    work_cv_.Signal();
  } else if (!lingering_.empty()) {
    Worker* w = lingering_.back();
    lingering_.pop_back();
    w->signaled = true;
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(w->wake_fd, &one, sizeof(one));
  }
}

void HttpTransport::HandBack(Connection* c) {
  if (c->in_off < c->in.size()) {
    c->phase = Connection::Phase::kHead;
    c->deadline = Clock::now() + options_.head_timeout;
  } else {
    c->phase = Connection::Phase::kIdle;
    c->deadline = Clock::now() + options_.keep_alive_timeout;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      ArmLocked(c);
      return;
    }
  }
  Close(c);
}

void HttpTransport::Requeue(Connection* c) {
  absl::MutexLock lock(&mu_);
  DispatchLocked(c);
}

void HttpTransport::StartDraining(Connection* c) {
  ::shutdown(c->fd, SHUT_WR);
  c->phase = Connection::Phase::kDraining;
  c->deadline = Clock::now() + options_.drain_timeout;
  c->drained = 0;
  c->in.clear();
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

void HttpTransport::RefuseAndDrain(Connection* c, int status,
                                   std::string_view code,
                                   std::string_view message) {
  SendNow(c->fd, CannedResponse(status, code, message));
  StartDraining(c);
}

void HttpTransport::Close(Connection* c) {
  {
    absl::MutexLock lock(&mu_);
    connections_.erase(c);
  }
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, c->fd, nullptr);
  ::close(c->fd);
  delete c;
}

// ---------------------------------------------------------------------------
// Workers

void HttpTransport::WorkerLoop(Worker* w) {
  for (;;) {
    Connection* c = nullptr;
    {
      absl::MutexLock lock(&mu_);
      while (ready_.empty() && !stopping_) {
        ++idle_workers_;
        work_cv_.Wait(&mu_);
        --idle_workers_;
      }
      if (ready_.empty()) return;
      c = ready_.front();
      ready_.pop_front();
      c->owner = Connection::Owner::kWorker;
    }
    busy_workers_.fetch_add(1, std::memory_order_relaxed);
    Serve(w, c);
    busy_workers_.fetch_sub(1, std::memory_order_relaxed);
  }
}

void HttpTransport::Serve(Worker* w, Connection* c) {
  for (;;) {
    ServeResult result = ServeOne(c);
    ++c->served;
    if (result == ServeResult::kClose) {
      Close(c);
      return;
    }
    if (result == ServeResult::kDrainAndClose) {
      StartDraining(c);
      return;
    }
    c->head_decided = false;
    c->context.reset();
    Step step = Advance(c);
    if (step == Step::kGone) return;
    if (step == Step::kReady) {
      // A pipelined request: serve it here unless others wait for a worker.
      bool others;
      {
        absl::MutexLock lock(&mu_);
        others = !ready_.empty();
      }
      if (others) {
        Requeue(c);
        return;
      }
      continue;
    }
    if (c->peer_closed) {
      Close(c);
      return;
    }
    if (!c->in.empty()) {  // part of the next request: the reactor waits
      HandBack(c);
      return;
    }
    if (!Linger(w, c)) return;
  }
}

bool HttpTransport::Linger(Worker* w, Connection* c) {
  // Each round waits up to worker_linger for the next request. Requests
  // refused on their head are answered here too (a refusing client does not
  // get to bounce its connection through the reactor each time); a partial
  // head goes to the reactor, which waits for slow clients without a worker.
  for (;;) {
    bool linger = options_.worker_linger.count() > 0;
    if (linger) {
      absl::MutexLock lock(&mu_);
      // Someone waiting for a worker needs this one more.
      linger = ready_.empty() && !stopping_;
      if (linger) {
        w->signaled = false;
        lingering_.push_back(w);
      }
    }
    if (!linger) {
      HandBack(c);
      return false;
    }
    pollfd fds[2] = {{c->fd, POLLIN | POLLRDHUP, 0}, {w->wake_fd, POLLIN, 0}};
    int rc = ::poll(fds, 2, static_cast<int>(options_.worker_linger.count()));
    bool signaled;
    {
      absl::MutexLock lock(&mu_);
      signaled = w->signaled;
      if (!signaled) {
        lingering_.erase(std::find(lingering_.begin(), lingering_.end(), w));
      }
    }
    if (signaled) {
      uint64_t value;
      [[maybe_unused]] ssize_t n = ::read(w->wake_fd, &value, sizeof(value));
      HandBack(c);
      return false;
    }
    if (rc <= 0 ||
        (fds[0].revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) == 0) {
      HandBack(c);  // quiet: the reactor keeps it
      return false;
    }
    if (!ReadAvailable(c)) {
      Close(c);
      return false;
    }
    switch (Advance(c)) {
      case Step::kReady:
        return true;
      case Step::kGone:
        return false;
      case Step::kNeedMore:
        break;
    }
    if (c->peer_closed) {
      Close(c);
      return false;
    }
    if (!c->in.empty()) {
      HandBack(c);
      return false;
    }
    // Everything received was answered (refusals): wait for more.
  }
}

HttpTransport::ServeResult HttpTransport::ServeOne(Connection* c) {
  const size_t start = c->in_off;
  ConnectionStream stream(this, c);
  Exchange exchange(this, c, &stream,
                    std::string_view(c->in).substr(start, c->head_bytes),
                    c->body_bytes, c->transfer_encoding, std::move(c->context));
  bool close_connection = c->peer_closed ||
                          c->served + 1 >= options_.keep_alive_max_requests;
  {
    absl::MutexLock lock(&mu_);
    close_connection = close_connection || stopping_;
  }
  if (close_connection) exchange.CloseAfterResponse();
  bool connection_closed = false;
  tls_exchange = &exchange;
  bool ok = process_request(stream, close_connection, connection_closed, nullptr);
  tls_exchange = nullptr;
  ok = stream.Flush() && ok;
  if (!ok) return ServeResult::kClose;
  // httplib must have consumed exactly the head we framed (and the handler
  // the body it read from the buffer); anything else means the two parsers
  // disagree about where this request ends, and the connection cannot be
  // trusted for another request.
  const size_t consumed = c->in_off - start;
  const bool in_sync = consumed == c->head_bytes + exchange.body_from_buffer_;
  if (exchange.WillClose() || !in_sync) {
    return c->in_off < c->in.size() || !exchange.body_complete_
               ? ServeResult::kDrainAndClose
               : ServeResult::kClose;
  }
  if (connection_closed) return ServeResult::kClose;
  return ServeResult::kKeepAlive;
}

// ---------------------------------------------------------------------------
// Request framing

namespace {

HttpTransport::Frame Refuse(int status, std::string_view code,
                            std::string_view message) {
  HttpTransport::Frame f;
  f.kind = HttpTransport::Frame::Kind::kError;
  f.status = status;
  f.code = code;
  f.message = message;
  return f;
}

HttpTransport::Frame InspectRequest(std::string_view data,
                                    const TransportOptions& o,
                                    size_t* scan_from) {
  using Frame = HttpTransport::Frame;
  const size_t start = *scan_from >= 3 ? *scan_from - 3 : 0;
  const size_t end = data.find("\r\n\r\n", start);
  if (end == std::string_view::npos) {
    // Incomplete: refuse early what can never become a valid head.
    size_t eol = data.find('\n');
    size_t line = eol == std::string_view::npos ? data.size() : eol;
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
    return Frame{};
  }
  *scan_from = end;
  const size_t head_bytes = end + 4;
  const std::string_view head = data.substr(0, end);

  Frame f;
  bool have_length = false;
  uint64_t length = 0;
  size_t headers = 0;
  size_t pos = 0;
  bool request_line = true;
  while (pos <= head.size()) {
    size_t eol = head.find("\r\n", pos);
    if (eol == std::string_view::npos) eol = head.size();
    std::string_view line = head.substr(pos, eol - pos);
    pos = eol + 2;
    for (char ch : line) {
      auto u = static_cast<unsigned char>(ch);
      if ((u < 0x20 && ch != '\t') || u == 0x7F) {
        return Refuse(400, "invalid_argument",
                      "control character in request head");
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
    }
  }
  if (head_bytes > o.max_head_bytes) {
    return Refuse(431, "too_large", "request headers too large");
  }
  if (f.transfer_encoding && have_length) {
    return Refuse(400, "invalid_argument",
                  "both Content-Length and Transfer-Encoding");
  }
  f.head_bytes = head_bytes;
  f.body_bytes = length;
  // Small bodies are read here, so a slow small upload holds no worker; a
  // client that waits for "100 Continue" must get a worker's answer first.
  f.kind = !f.transfer_encoding && !f.expect_continue && length > 0 &&
                   length <= o.prebuffer_body_bytes &&
                   data.size() < head_bytes + length
               ? Frame::Kind::kHead
               : Frame::Kind::kReady;
  return f;
}

}  // namespace

}  // namespace tenancy::internal
