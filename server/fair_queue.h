// FairQueue: requests that are ready to run, queued per lane (a tenant) and
// handed to workers round-robin across lanes, so that a tenant with 100
// queued requests and a tenant with one each get the next free worker in
// turn. Each lane may run at most `per_lane_cap` requests at once, and all
// lanes together at most `total_cap`; a lane at its cap leaves the rotation
// until one of its requests is done.
//
// This is deficit round robin with a quantum of one request: request costs
// are not known before they run, and the costly kinds (large batches and
// scans) are sent to a queue of their own by the caller.
//
// Memory: a lane exists only while it has queued or running requests.
//
// Thread safety: not thread-safe; the transport calls it under its lock.

#ifndef TENANCY_SERVER_FAIR_QUEUE_H_
#define TENANCY_SERVER_FAIR_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>

#include "absl/container/flat_hash_map.h"

namespace tenancy::internal {

template <typename T>
class FairQueue {
 public:
  // REQUIRES: per_lane_cap >= 1, total_cap >= 1.
  FairQueue(int per_lane_cap, int total_cap) : per_lane_cap_(per_lane_cap), total_cap_(total_cap) {}
  FairQueue(const FairQueue&) = delete;
  FairQueue& operator=(const FairQueue&) = delete;

  // Queues `item` at the back of `lane`.
  void Push(uint64_t lane, T item) {
    Lane& l = lanes_[lane];
    l.queue.push_back(std::move(item));
    ++queued_;
    Rotate(lane, l);
  }

  // Takes the next item in rotation, if a lane below its cap has one and the
  // total is below its cap: the item's lane counts it as running until
  // Done(lane). False when nothing may run now.
  bool Pop(uint64_t* lane, T* item) {
    if (running_ >= total_cap_ || rotation_.empty()) return false;
    const uint64_t key = rotation_.front();
    rotation_.pop_front();
    Lane& l = lanes_[key];
    l.in_rotation = false;
    *item = std::move(l.queue.front());
    l.queue.pop_front();
    --queued_;
    ++l.running;
    ++running_;
    Rotate(key, l);
    *lane = key;
    return true;
  }

  // A worker holding `lane`'s next request (the next one on its keep-alive
  // connection) may run it at once, without queueing, when no queued request
  // could run instead and the caps allow. Counts it as running when true.
  bool TryRunInline(uint64_t lane) {
    if (running_ >= total_cap_ || !rotation_.empty()) return false;
    Lane& l = lanes_[lane];
    if (l.running >= per_lane_cap_) {
      ForgetIfEmpty(lane, l);
      return false;
    }
    ++l.running;
    ++running_;
    return true;
  }

  // A running request of `lane` is done (or no longer counts: it waits for
  // something other than CPU).
  void Done(uint64_t lane) {
    auto it = lanes_.find(lane);
    if (it == lanes_.end() || it->second.running == 0) return;
    Lane& l = it->second;
    --l.running;
    --running_;
    Rotate(lane, l);
    ForgetIfEmpty(lane, l);
  }

  // True if Pop would return an item.
  bool HasRunnable() const { return running_ < total_cap_ && !rotation_.empty(); }
  size_t queued() const { return queued_; }
  int running() const { return running_; }
  // Lanes with queued or running requests.
  size_t lanes() const { return lanes_.size(); }

  // Removes and returns every queued item (shutdown).
  template <typename Fn>
  void DrainAll(Fn&& fn) {
    for (auto& [key, l] : lanes_) {
      for (T& item : l.queue) fn(key, std::move(item));
      l.queue.clear();
      l.in_rotation = false;
    }
    rotation_.clear();
    queued_ = 0;
  }

 private:
  struct Lane {
    std::deque<T> queue;
    int running = 0;
    bool in_rotation = false;
  };

  // Keeps the invariant: a lane is in the rotation iff it has queued items
  // and is below its cap.
  void Rotate(uint64_t key, Lane& l) {
    if (!l.in_rotation && !l.queue.empty() && l.running < per_lane_cap_) {
      rotation_.push_back(key);
      l.in_rotation = true;
    }
  }
  void ForgetIfEmpty(uint64_t key, const Lane& l) {
    if (l.queue.empty() && l.running == 0) lanes_.erase(key);
  }

  const int per_lane_cap_;
  const int total_cap_;
  absl::flat_hash_map<uint64_t, Lane> lanes_;
  std::deque<uint64_t> rotation_;
  size_t queued_ = 0;
  int running_ = 0;
};

}  // namespace tenancy::internal

#endif  // TENANCY_SERVER_FAIR_QUEUE_H_
