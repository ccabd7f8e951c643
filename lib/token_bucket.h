// A lock-free token bucket for the limiter, in the form of the generic cell
// rate algorithm (GCRA): instead of a token count refilled by a timer, the
// bucket keeps one number, the theoretical arrival time (TAT) of the next
// request at the sustained rate. A request at `now` is admitted when
//   max(TAT, now) + interval - now <= burst * interval,
// and then moves TAT to max(TAT, now) + interval. This admits `burst` requests
// at once after an idle period and one per `interval` after that, so over any
// interval T at most rate * T + burst requests pass. One compare-and-swap per
// admission; the refusal knows exactly how long until a token (Retry-After).
//
// Thread safety: safe for concurrent use. Set() may race with TryTake(): a
// racing request is judged by the old or the new numbers (possibly one of
// each), which is the best any live change can promise.

#ifndef TENANCY_LIB_TOKEN_BUCKET_H_
#define TENANCY_LIB_TOKEN_BUCKET_H_

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

namespace tenancy::internal {

class TokenBucket {
 public:
  TokenBucket() = default;
  TokenBucket(const TokenBucket&) = delete;
  TokenBucket& operator=(const TokenBucket&) = delete;

  // Limits the bucket to `per_second` with `burst`. Tokens already spent stay
  // spent: lowering a rate never hands out a fresh burst.
  // REQUIRES: 0 < per_second <= 1e9, 1 <= burst <= 1e9 (validated by callers).
  void Set(double per_second, double burst) {
    // Clamped so that tolerance never overflows, whatever the inputs.
    const double interval = std::clamp(1e9 / per_second, 1.0, kMaxNanos);
    const double tolerance = std::clamp(interval * burst, interval, kMaxNanos);
    per_second_.store(per_second, std::memory_order_relaxed);
    burst_.store(burst, std::memory_order_relaxed);
    tolerance_ns_.store(static_cast<int64_t>(std::llround(tolerance)), std::memory_order_relaxed);
    interval_ns_.store(static_cast<int64_t>(std::llround(interval)), std::memory_order_relaxed);
  }

  // Removes the limit: every request passes.
  void Clear() { interval_ns_.store(0, std::memory_order_relaxed); }

  bool limited() const { return interval_ns_.load(std::memory_order_relaxed) != 0; }
  double per_second() const { return per_second_.load(std::memory_order_relaxed); }
  double burst() const { return burst_.load(std::memory_order_relaxed); }

  // Takes a token at `now_ns`. Returns 0 if it did (and stores in *charged the
  // amount to give back with Refund()), else the nanoseconds until a token
  // will be there (> 0). An unlimited bucket always admits with *charged = 0.
  int64_t TryTake(int64_t now_ns, int64_t* charged) {
    *charged = 0;
    const int64_t interval = interval_ns_.load(std::memory_order_relaxed);
    if (interval == 0) return 0;
    const int64_t tolerance = tolerance_ns_.load(std::memory_order_relaxed);
    int64_t tat = tat_ns_.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t next = std::max(tat, now_ns) + interval;
      if (next - now_ns > tolerance) return next - tolerance - now_ns;
      if (tat_ns_.compare_exchange_weak(tat, next, std::memory_order_relaxed)) {
        *charged = interval;
        return 0;
      }
    }
  }

  // The nanoseconds until a token will be there at `now_ns`; 0 if one is.
  int64_t WaitNeeded(int64_t now_ns) const {
    const int64_t interval = interval_ns_.load(std::memory_order_relaxed);
    if (interval == 0) return 0;
    const int64_t tolerance = tolerance_ns_.load(std::memory_order_relaxed);
    const int64_t next = std::max(tat_ns_.load(std::memory_order_relaxed), now_ns) + interval;
    return std::max<int64_t>(0, next - tolerance - now_ns);
  }

  // Gives back a token taken by TryTake() for a request that was then refused
  // elsewhere, so a refusal does not cost the caller rate.
  void Refund(int64_t charged) {
    if (charged != 0) tat_ns_.fetch_sub(charged, std::memory_order_relaxed);
  }

 private:
  static constexpr double kMaxNanos = 1e18;

  // 1e9 / per_second; 0 means unlimited.
  std::atomic<int64_t> interval_ns_{0};
  // burst * interval: how far TAT may run ahead of now.
  std::atomic<int64_t> tolerance_ns_{0};
  // Far in the past, so a new bucket starts full; also far from overflow.
  std::atomic<int64_t> tat_ns_{std::numeric_limits<int64_t>::min() / 4};
  // As configured, for messages and counters only.
  std::atomic<double> per_second_{0};
  std::atomic<double> burst_{0};
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_TOKEN_BUCKET_H_
