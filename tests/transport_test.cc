// tenancyd's transport on its own: fair queues across lanes, per-lane caps,
// the control lane, background workers, and the FairQueue underneath. A head
// handler of the test's own puts each request in the lane its X-Lane header
// names; the request handler blocks where the test says, so what runs at
// once is observed, not timed.

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

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

struct TransportFixture {
  explicit TransportFixture(int threads) {
    TransportOptions options;
    options.worker_threads = threads;
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
      if (target.rfind("/block", 0) == 0) observed.WaitForGate();
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

}  // namespace
}  // namespace tenancy::testing
