// A counting semaphore with a lock-free fast path and a fair slow path, the
// building block of the limiter's tiers.
//
// One 64-bit atomic word holds both the slots in use (low 32 bits) and the
// number of queued waiters (high 32 bits). Keeping them in one word is what
// makes the fast paths single atomic operations without lost wake-ups:
//   - TryAcquire() is one compare-and-swap that succeeds only while nobody is
//     queued and a slot is free, so a newcomer never overtakes a waiter;
//   - Release() is one fetch_sub whose result says whether anybody is
//     queued; only then does it take the mutex to hand the slot on.
//     ReleaseReclaimable() is the same with a compare-and-swap, for
//     semaphores that may be destroyed as soon as they are quiescent.
// A waiter registers itself in the word (under the mutex) before it sleeps,
// and re-checks for a free slot after registering, so a release racing with
// the registration is either seen by the waiter or sees the waiter.
//
// Waiters are served in rotation by owner (the limiter passes the tenant):
// the owner at the head of the rotation gets one slot, then goes to the back
// if it has more waiters. Within one owner, first come, first served. A slot
// freed while waiters are queued is granted to the next of them directly (the
// count never drops, so no thread outside the queue can take it).
//
// Thread safety: safe for concurrent access from multiple threads without any
// external synchronization.

#ifndef TENANCY_LIB_FAIR_SEMAPHORE_H_
#define TENANCY_LIB_FAIR_SEMAPHORE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <list>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace tenancy::internal {

class FairSemaphore {
 public:
  static constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max();

  explicit FairSemaphore(int64_t limit = kUnlimited) : limit_(limit) {}
  FairSemaphore(const FairSemaphore&) = delete;
  FairSemaphore& operator=(const FairSemaphore&) = delete;
  // REQUIRES: no slot held, nobody waiting.
  ~FairSemaphore() = default;

  // Takes a slot if one is free and nobody is queued. Never blocks.
  bool TryAcquire() {
    const int64_t limit = limit_.load(std::memory_order_relaxed);
    uint64_t word = word_.load(std::memory_order_relaxed);
    if (limit == kUnlimited && Waiters(word) == 0) {
      // Nothing to compare against: one unconditional add, which (unlike a
      // compare-and-swap) never retries when threads collide.
      word_.fetch_add(1, std::memory_order_acquire);
      return true;
    }
    while (Waiters(word) == 0 && InUse(word) < limit) {
      if (word_.compare_exchange_weak(word, word + 1, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }

  // Takes a slot, waiting in the rotation under `owner` until `deadline`.
  // Returns false if the deadline passed first (at once if it already has
  // and no slot is free).
  bool Acquire(const void* owner, std::chrono::steady_clock::time_point deadline);

  // Gives a slot back with one fetch_sub, whose result says whether anybody
  // is queued (only then is the mutex taken). It may touch the semaphore
  // after the slot is given back, so it is for semaphores that outlive every
  // caller (the limiter's global tier).
  // REQUIRES: the caller holds a slot.
  void Release() {
    const uint64_t old = word_.fetch_sub(1, std::memory_order_release);
    if (Waiters(old) != 0) GrantAfterRelease();
  }

  // Gives a slot back, for semaphores whose owner destroys them once
  // Quiescent() (the limiter's tenant tier, after RemoveTenant). Its last
  // touch of the semaphore is either its successful compare-and-swap (nobody
  // queued) or the final decrement of slow_releasers_, never anything after.
  // REQUIRES: the caller holds a slot.
  void ReleaseReclaimable() {
    uint64_t word = word_.load(std::memory_order_relaxed);
    while (Waiters(word) == 0) {
      if (word_.compare_exchange_weak(word, word - 1, std::memory_order_release,
                                      std::memory_order_relaxed)) {
        return;
      }
    }
    ReleaseSlow();
  }

  // True if no slot is held, nobody waits and no release is still running,
  // so that nothing but a new acquisition can touch the semaphore again.
  bool Quiescent() const {
    // Order matters: a release registers in slow_releasers_ while it still
    // holds its slot, so seeing its slot gone means seeing it registered.
    return word_.load(std::memory_order_seq_cst) == 0 &&
           slow_releasers_.load(std::memory_order_seq_cst) == 0;
  }

  // Changes the limit. Slots already held stay held; new slots freed by a
  // raise go to the queued waiters first.
  void SetLimit(int64_t limit);

  int64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  int64_t in_use() const { return InUse(word_.load(std::memory_order_relaxed)); }
  int64_t waiters() const {
    return static_cast<int64_t>(Waiters(word_.load(std::memory_order_relaxed)));
  }

 private:
  static constexpr uint64_t kOneWaiter = uint64_t{1} << 32;

  static int64_t InUse(uint64_t word) { return static_cast<int64_t>(word & (kOneWaiter - 1)); }
  static uint64_t Waiters(uint64_t word) { return word >> 32; }

  // A thread blocked in Acquire(). Lives on that thread's stack; all fields
  // but `owner` are protected by the semaphore's mu_.
  struct Waiter {
    explicit Waiter(const void* o) : owner(o) {}
    const void* const owner;
    bool granted = false;
    absl::CondVar cv;
    std::list<Waiter*>::iterator position;
  };

  // The waiters of one owner, first come first served.
  struct OwnerQueue {
    const void* owner;
    std::list<Waiter*> waiters;
  };

  void ReleaseSlow();
  void GrantAfterRelease();
  // Hands free slots to queued waiters in rotation order.
  void GrantLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PushLocked(Waiter* waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Waiter* PopLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveLocked(Waiter* waiter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // In use (low 32 bits) | queued waiters (high 32 bits). The waiter count is
  // changed only under mu_ and always equals the number of queued waiters.
  std::atomic<uint64_t> word_{0};
  std::atomic<int64_t> limit_;
  // Releases between their registration (slot still held) and their last
  // touch of this object; see Quiescent().
  std::atomic<int32_t> slow_releasers_{0};

  absl::Mutex mu_;
  // Owners with queued waiters, in the order they will be served.
  std::list<OwnerQueue> rotation_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const void*, std::list<OwnerQueue>::iterator> owners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tenancy::internal

#endif  // TENANCY_LIB_FAIR_SEMAPHORE_H_
