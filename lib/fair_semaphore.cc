#include "fair_semaphore.h"

#include <iterator>

#include "absl/time/time.h"

namespace tenancy::internal {

bool FairSemaphore::Acquire(const void* owner, std::chrono::steady_clock::time_point deadline) {
  absl::MutexLock lock(&mu_);
  if (rotation_.empty()) {
    // Nobody queued: a free slot may be taken directly (racing only with the
    // fast path, which is just as entitled to it).
    uint64_t word = word_.load(std::memory_order_relaxed);
    while (InUse(word) < limit_.load(std::memory_order_relaxed)) {
      if (word_.compare_exchange_weak(word, word + 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
  }
  if (std::chrono::steady_clock::now() >= deadline) return false;

  Waiter self(owner);
  PushLocked(&self);
  // From here on the fast path is closed and every release comes to mu_.
  word_.fetch_add(kOneWaiter, std::memory_order_relaxed);
  // A slot freed between the check above and the registration was given back
  // by a release that saw no waiter: hand it out now, or it would sit idle.
  GrantLocked();
  while (!self.granted) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    // WaitWithDeadline, not WaitWithTimeout: the same thing in this Abseil
    // (a timeout becomes a deadline on absl::Now() inside), and the only one
    // of the two that tsan_absl_mutex.cc annotates exactly once. The loop
    // re-checks the steady deadline, so a wall-clock step only wakes us early.
    self.cv.WaitWithDeadline(&mu_, absl::Now() + absl::FromChrono(deadline - now));
  }
  if (self.granted) {
    // The granter counted the slot and dropped us from the waiter count.
    return true;
  }
  RemoveLocked(&self);
  word_.fetch_sub(kOneWaiter, std::memory_order_relaxed);
  return false;
}

void FairSemaphore::GrantAfterRelease() {
  absl::MutexLock lock(&mu_);
  GrantLocked();
}

void FairSemaphore::ReleaseSlow() {
  // Registered while our slot is still held (see Quiescent()).
  slow_releasers_.fetch_add(1, std::memory_order_seq_cst);
  {
    absl::MutexLock lock(&mu_);
    word_.fetch_sub(1, std::memory_order_seq_cst);
    GrantLocked();
  }
  // The last touch of *this.
  slow_releasers_.fetch_sub(1, std::memory_order_seq_cst);
}

void FairSemaphore::SetLimit(int64_t limit) {
  limit_.store(limit, std::memory_order_relaxed);
  absl::MutexLock lock(&mu_);
  GrantLocked();
}

void FairSemaphore::GrantLocked() {
  while (!rotation_.empty()) {
    const int64_t limit = limit_.load(std::memory_order_relaxed);
    uint64_t word = word_.load(std::memory_order_relaxed);
    do {
      if (InUse(word) >= limit) return;
      // One slot more in use, one waiter fewer, in one step: the fast path
      // stays closed while anybody else is queued.
    } while (!word_.compare_exchange_weak(word, word + 1 - kOneWaiter, std::memory_order_acq_rel,
                                          std::memory_order_relaxed));
    Waiter* next = PopLocked();
    next->granted = true;
    next->cv.Signal();
  }
}

void FairSemaphore::PushLocked(Waiter* waiter) {
  auto [it, inserted] = owners_.try_emplace(waiter->owner);
  if (inserted) {
    // A newcomer joins the rotation behind every owner already waiting.
    rotation_.push_back(OwnerQueue{waiter->owner, {}});
    it->second = std::prev(rotation_.end());
  }
  std::list<Waiter*>& waiters = it->second->waiters;
  waiter->position = waiters.insert(waiters.end(), waiter);
}

FairSemaphore::Waiter* FairSemaphore::PopLocked() {
  auto head = rotation_.begin();
  Waiter* waiter = head->waiters.front();
  head->waiters.pop_front();
  if (head->waiters.empty()) {
    owners_.erase(head->owner);
    rotation_.erase(head);
  } else {
    // Served once: to the back of the rotation (iterators stay valid).
    rotation_.splice(rotation_.end(), rotation_, head);
  }
  return waiter;
}

void FairSemaphore::RemoveLocked(Waiter* waiter) {
  auto it = owners_.find(waiter->owner);
  it->second->waiters.erase(waiter->position);
  if (it->second->waiters.empty()) {
    rotation_.erase(it->second);
    owners_.erase(it);
  }
}

}  // namespace tenancy::internal
