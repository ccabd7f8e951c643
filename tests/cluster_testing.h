// What the cluster tests share: how soon a change must be live on every
// node, waiting for it, and skipping a test that needs etcd when the etcd
// binary is absent (tests/etcd_process.h).

#ifndef TENANCY_TESTS_CLUSTER_TESTING_H_
#define TENANCY_TESTS_CLUSTER_TESTING_H_

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <thread>

#include "etcd_process.h"

// Opens a test that needs a real etcd: without the binary it warns (saying
// what to install) and returns, and the test passes having run nothing.
#define TENANCY_SKIP_WITHOUT_ETCD()                      \
  do {                                                   \
    if (!::tenancy::testing::EtcdProcess::Available()) { \
      WARN(::tenancy::testing::EtcdProcess::kMissing);   \
      return;                                            \
    }                                                    \
  } while (false)

namespace tenancy::testing {

// "Live on every node within 1 s" (issue 16); sanitizers slow every step
// several times, so they get more.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr std::chrono::milliseconds kLiveWithin{5000};
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
inline constexpr std::chrono::milliseconds kLiveWithin{5000};
#else
inline constexpr std::chrono::milliseconds kLiveWithin{1000};
#endif
#else
inline constexpr std::chrono::milliseconds kLiveWithin{1000};
#endif

// True once `done` holds, asked every 10 ms until `within` has passed.
inline bool Eventually(const std::function<bool()>& done,
                       std::chrono::milliseconds within = kLiveWithin) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace tenancy::testing

#endif  // TENANCY_TESTS_CLUSTER_TESTING_H_
